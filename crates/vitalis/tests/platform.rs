//! Operational surface: health, readiness, metrics, the OpenAPI document and docs page,
//! CORS and request ids.

mod common;

use common::{Backend, TestApp};
use serde_json::Value;

backend_tests!(health_and_readiness, |app: TestApp| async move {
    let health: Value = app.http.get(app.url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let ready: Value = app.http.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(
        ready["database"],
        match app.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    );
});

backend_tests!(readiness_fails_when_the_database_is_gone, |app: TestApp| async move {
    app.store.close().await;
    let response = app.http.get(app.url("/readyz")).send().await.unwrap();
    common::expect_error(response, 503, "unavailable").await;
});

backend_tests!(metrics_count_requests_tokens_and_pool, |app: TestApp| async move {
    let token = app.server_token("users:read").await;
    assert_eq!(app.http.get(app.url("/users")).bearer_auth(&token).send().await.unwrap().status(), 200);
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("vitalis_http_requests_total{method=\"GET\",route=\"/users\",status=\"200\"}"), "{text}");
    assert!(text.contains("vitalis_http_request_duration_seconds_bucket{method=\"GET\",route=\"/users\""), "{text}");
    assert!(text.contains("vitalis_tokens_issued_total{principal_type=\"client\"}"), "{text}");
    assert!(text.contains("vitalis_db_pool_connections{state=\"open\"}"), "{text}");
    // Route templates, never raw ids, become labels.
    assert_eq!(app.http.get(app.url("/users/someone")).bearer_auth(&token).send().await.unwrap().status(), 404);
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("route=\"/users/{user_id}\"") && !text.contains("someone"), "{text}");
});

backend_tests!(every_route_is_in_the_openapi_document, |app: TestApp| async move {
    let doc: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let expected = [
        ("post", "/v1/projects/{project_id}/auth/server"),
        ("post", "/oauth/token"),
        ("get", "/.well-known/jwks.json"),
        ("get", "/.well-known/oauth-authorization-server"),
        ("get", "/.well-known/openid-configuration"),
        ("post", "/users"),
        ("get", "/users"),
        ("get", "/users/{user_id}"),
        ("patch", "/users/{user_id}"),
        ("put", "/users/{user_id}"),
        ("delete", "/users/{user_id}"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("post", "/v1/projects/{project_id}/auth/sdk"),
        ("post", "/oauth/revoke"),
        ("post", "/oauth/introspect"),
        ("post", "/v1/projects/{project_id}/oauth_clients"),
        ("get", "/v1/projects/{project_id}/oauth_clients"),
        ("get", "/v1/projects/{project_id}/oauth_clients/{client_id}"),
        ("patch", "/v1/projects/{project_id}/oauth_clients/{client_id}"),
        ("post", "/v1/projects/{project_id}/oauth_clients/{client_id}/rotate_secret"),
        ("post", "/v1/projects/{project_id}/oauth_clients/{client_id}/revoke"),
        ("post", "/v1/projects/{project_id}/identity_providers"),
        ("get", "/v1/projects/{project_id}/identity_providers"),
        ("get", "/v1/projects/{project_id}/identity_providers/{idp_id}"),
        ("patch", "/v1/projects/{project_id}/identity_providers/{idp_id}"),
        ("delete", "/v1/projects/{project_id}/identity_providers/{idp_id}"),
        ("post", "/users/{user_id}/keys"),
        ("get", "/users/{user_id}/keys"),
        ("delete", "/users/{user_id}/keys/{key_id}"),
        ("post", "/users/{user_id}/assertions"),
        ("post", "/v1/projects/{project_id}/webhooks"),
        ("get", "/v1/projects/{project_id}/webhooks"),
        ("get", "/v1/projects/{project_id}/webhooks/{webhook_id}"),
        ("patch", "/v1/projects/{project_id}/webhooks/{webhook_id}"),
        ("delete", "/v1/projects/{project_id}/webhooks/{webhook_id}"),
        ("post", "/v1/projects/{project_id}/webhooks/{webhook_id}/rotate_secret"),
        ("post", "/v1/projects/{project_id}/webhooks/{webhook_id}/test"),
        ("get", "/v1/projects/{project_id}/webhooks/{webhook_id}/deliveries"),
        ("get", "/v1/projects/{project_id}/webhooks/{webhook_id}/deliveries/{delivery_id}"),
        ("post", "/v1/projects/{project_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"),
        ("post", "/v1/projects/{project_id}/webhooks/{webhook_id}/redeliver"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    for (method, path) in expected {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} missing from /openapi.json");
    }
    assert_eq!(documented, expected.len(), "a documented route is not in this test's list");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Every documented route really answers (no 404 from the router for a documented path).
    let token = app.server_token("").await;
    for (method, path) in expected {
        let url = app.url(
            &path
                .replace("{project_id}", &app.project_id)
                .replace("{user_id}", "nobody")
                .replace("{client_id}", "nobody")
                .replace("{idp_id}", "nobody")
                .replace("{key_id}", "nobody")
                .replace("{webhook_id}", "nobody")
                .replace("{delivery_id}", "nobody"),
        );
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = app.http.request(method.clone(), url).bearer_auth(&token).send().await.unwrap();
        let body = response.text().await.unwrap();
        assert!(!body.contains("\"route not found\""), "{method} {path} is documented but not routed");
    }
});

backend_tests!(docs_page_works_offline, |app: TestApp| async move {
    let page = app.http.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(!html.contains("cdn."), "the docs page must not load assets from a CDN");
    let bundle = app.http.get(app.url("/docs/swagger-ui-bundle.js")).send().await.unwrap();
    assert_eq!(bundle.status(), 200);
    assert!(bundle.bytes().await.unwrap().len() > 100_000);
    let init = app.http.get(app.url("/docs/swagger-initializer.js")).send().await.unwrap().text().await.unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
});

backend_tests!(request_ids_are_returned_and_propagated, |app: TestApp| async move {
    let response = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert!(response.headers().get("x-request-id").is_some());
    let response = app.http.get(app.url("/healthz")).header("x-request-id", "trace-me-42").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_only_configured_origins() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| config.cors_allowed_origins = vec!["https://app.example".into()]).await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url(&format!("/v1/projects/{}/auth/server", app.project_id)))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example");
    let denied = preflight("https://evil.example").await.unwrap();
    assert!(denied.headers().get("access-control-allow-origin").is_none());
}

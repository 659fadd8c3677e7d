//! User tokens and the token lifecycle, against a simulated OIDC provider over real HTTP,
//! on SQLite and PostgreSQL: token exchange, refresh rotation and reuse detection,
//! revocation, introspection, client and provider administration, x-jwt assertions,
//! brute-force limits.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::idp::{FakeIdp, SigningKey};
use common::{Backend, TestApp, expect_error, expect_oauth_error};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use vitalis_core::timefmt::now_secs;

fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

/// Trusts `idp` in the test project and creates the public client `sdk`.
async fn trust(app: &TestApp, idp: &FakeIdp, create_users: bool) {
    let admin = app.server_token("").await;
    let response = app
        .http
        .post(app.url(&format!("/v1/projects/{}/identity_providers", app.project_id)))
        .bearer_auth(&admin)
        .json(&json!({"id": "fake", "issuer": idp.issuer, "discovery_url": idp.discovery_url(), "audiences": [idp.audience],
                      "user_id_prefix": "idp_", "create_users": create_users}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let response = app
        .http
        .post(app.url(&format!("/v1/projects/{}/oauth_clients", app.project_id)))
        .bearer_auth(&admin)
        .json(&json!({"client_id": "sdk", "name": "Mobile app", "kind": "public", "allowed_scopes": "users:read users:update"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

async fn sdk(app: &TestApp, grant: &str, token: &str) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/v1/projects/{}/auth/sdk", app.project_id)))
        .json(&json!({"grant": grant, "token": token, "client_id": "sdk"}))
        .send()
        .await
        .unwrap()
}

async fn exchange_ok(app: &TestApp, id_token: &str) -> (String, String) {
    let response = sdk(app, "exchange", id_token).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let body = json_of(response).await;
    (body["access_token"].as_str().unwrap().to_owned(), body["refresh_token"].as_str().unwrap().to_owned())
}

async fn get(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.http.get(app.url(path)).bearer_auth(token).send().await.unwrap()
}

async fn form(app: &TestApp, path: &str, basic: Option<(&str, &str)>, params: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.http.post(app.url(path)).form(params);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    request.send().await.unwrap()
}

backend_tests!(exchange_issues_user_tokens_for_rs256_and_es256, |app: TestApp| async move {
    let idp = FakeIdp::start().await;
    trust(&app, &idp, true).await;
    for (kid, sub) in [("rsa-1", "alice"), ("ec-1", "bob")] {
        let response = sdk(&app, "exchange", &idp.id_token(kid, sub)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body = json_of(response).await;
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        assert!(body["refresh_token"].as_str().unwrap().starts_with("vrt_"));
        let claims = claims_of(body["access_token"].as_str().unwrap());
        let user_id = format!("idp_{sub}");
        assert_eq!(claims["principal_type"], "user");
        assert_eq!(claims["user_id"], user_id);
        assert_eq!(claims["sub"], user_id);
        assert_eq!(claims["scope"], "users:read users:update");
        // The user was created on first exchange and the token reaches it, and only it.
        let token = body["access_token"].as_str().unwrap();
        let me = json_of(get(&app, &format!("/users/{user_id}"), token).await).await;
        assert_eq!(me["id"], user_id);
        let list = json_of(get(&app, "/users", token).await).await;
        assert_eq!(list["users"].as_array().unwrap().len(), 1);
        assert_eq!(list["users"][0]["id"], user_id);
    }
    // Users reach only themselves, and cannot create users.
    let (alice, _) = exchange_ok(&app, &idp.id_token("rsa-1", "alice")).await;
    expect_error(get(&app, "/users/idp_bob", &alice).await, 404, "not_found").await;
    let created = app.http.post(app.url("/users")).bearer_auth(&alice).json(&json!({"id": "x"})).send().await.unwrap();
    expect_error(created, 403, "insufficient_scope").await;
    // The canonical endpoint does the same exchange (RFC 8693).
    let subject = idp.id_token("ec-1", "carol");
    let response = form(
        &app,
        "/oauth/token",
        None,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", &subject),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:id_token"),
            ("client_id", "sdk"),
            ("scope", "users:read"),
            ("resource", &format!("urn:vitalis:project:{}", app.project_id)),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let body = json_of(response).await;
    assert_eq!(body["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    assert_eq!(body["scope"], "users:read");
    assert_eq!(claims_of(body["access_token"].as_str().unwrap())["user_id"], "idp_carol");
});

backend_tests!(exchange_refusals, |app: TestApp| async move {
    let idp = FakeIdp::start().await;
    trust(&app, &idp, true).await;
    let now = now_secs();
    let rsa = idp.key("rsa-1");
    let refused = |token: String| {
        let app = &app;
        async move { expect_oauth_error(sdk(app, "exchange", &token).await, 400, "invalid_request").await }
    };
    let mut wrong_issuer = idp.claims("u");
    wrong_issuer["iss"] = json!("https://evil.example");
    refused(rsa.sign(&wrong_issuer)).await;
    let mut wrong_audience = idp.claims("u");
    wrong_audience["aud"] = json!("someone-else");
    refused(rsa.sign(&wrong_audience)).await;
    let mut expired = idp.claims("u");
    expired["exp"] = json!(now - 3600);
    expired["iat"] = json!(now - 4000);
    let body = refused(rsa.sign(&expired)).await;
    assert!(body["error_description"].as_str().unwrap().contains("expired"));
    let mut not_yet = idp.claims("u");
    not_yet["nbf"] = json!(now + 3600);
    refused(rsa.sign(&not_yet)).await;
    let mut future_iat = idp.claims("u");
    future_iat["iat"] = json!(now + 3600);
    refused(rsa.sign(&future_iat)).await;
    // A key the provider never published (unknown kid).
    refused(SigningKey::rsa("rogue").sign(&idp.claims("u"))).await;
    // A rogue key under a published kid: bad signature.
    refused(SigningKey::rsa("rsa-1").sign(&idp.claims("u"))).await;
    // alg: none.
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": "rsa-1"}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(idp.claims("u").to_string());
    refused(format!("{header}.{payload}.")).await;
    // HS256 "signed" with the provider's public key material.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("rsa-1".into());
    let public = serde_json::to_string(&rsa.jwk).unwrap();
    refused(jsonwebtoken::encode(&hs, &idp.claims("u"), &EncodingKey::from_secret(public.as_bytes())).unwrap()).await;
    // An ES256 header over the RSA key: the algorithm must match the key.
    let mut es = Header::new(Algorithm::ES256);
    es.kid = Some("rsa-1".into());
    refused(jsonwebtoken::encode(&es, &idp.claims("u"), &idp.key("ec-1").encoding).unwrap()).await;
    // Garbage.
    refused("not-a-jwt".into()).await;
    // A token of another project's provider.
    let other_idp = FakeIdp::start().await;
    refused(other_idp.id_token("rsa-1", "u")).await;
    // An unknown public client, and a client without the grant.
    let response = app
        .http
        .post(app.url(&format!("/v1/projects/{}/auth/sdk", app.project_id)))
        .json(&json!({"grant": "exchange", "token": idp.id_token("rsa-1", "u"), "client_id": "nobody"}))
        .send()
        .await
        .unwrap();
    expect_oauth_error(response, 401, "invalid_client").await;
    let response = app
        .http
        .post(app.url(&format!("/v1/projects/{}/auth/sdk", app.project_id)))
        .json(&json!({"grant": "fly", "token": "x", "client_id": "sdk"}))
        .send()
        .await
        .unwrap();
    expect_oauth_error(response, 400, "invalid_request").await;
    // Nothing was created by the refusals.
    let admin = app.server_token("users:read").await;
    assert_eq!(json_of(get(&app, "/users", &admin).await).await["users"].as_array().unwrap().len(), 0);
});

backend_tests!(unknown_users_are_refused_unless_the_provider_creates_them, |app: TestApp| async move {
    let idp = FakeIdp::start().await;
    trust(&app, &idp, false).await;
    expect_oauth_error(sdk(&app, "exchange", &idp.id_token("rsa-1", "dave")).await, 400, "invalid_request").await;
    let admin = app.server_token("").await;
    let response = app.http.post(app.url("/users")).bearer_auth(&admin).json(&json!({"id": "idp_dave"})).send().await.unwrap();
    assert_eq!(response.status(), 201);
    exchange_ok(&app, &idp.id_token("rsa-1", "dave")).await;
});

backend_tests!(provider_key_rotation_is_picked_up_and_the_hot_path_is_offline, |app: TestApp| async move {
    let idp = FakeIdp::start().await;
    trust(&app, &idp, true).await;
    exchange_ok(&app, &idp.id_token("rsa-1", "erin")).await;
    let fetches = idp.jwks_fetches();
    for _ in 0..5 {
        exchange_ok(&app, &idp.id_token("ec-1", "erin")).await;
    }
    assert_eq!(idp.jwks_fetches(), fetches, "cached keys: no outbound call per exchange");
    // The provider rotates; a token with the new kid triggers one re-fetch.
    let new_key = idp.rotate_in(SigningKey::ec("ec-2"));
    exchange_ok(&app, &new_key.sign(&idp.claims("erin"))).await;
    assert_eq!(idp.jwks_fetches(), fetches + 1);
});

backend_tests!(refresh_rotates_and_grace_reuse_is_refused_without_revoking, |app: TestApp| async move {
    let idp = FakeIdp::start().await;
    trust(&app, &idp, true).await;
    let (_, first) = exchange_ok(&app, &idp.id_token("rsa-1", "frank")).await;
    let response = sdk(&app, "refresh", &first).await;
    assert_eq!(response.status(), 200);
    let body = json_of(response).await;
    let second = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(claims_of(body["access_token"].as_str().unwrap())["user_id"], "idp_frank");
    // Replaying the predecessor right away (within the grace window) is refused...
    expect_oauth_error(sdk(&app, "refresh", &first).await, 400, "invalid_grant").await;
    // ...but the family survives: the current token still rotates.
    let third = json_of(sdk(&app, "refresh", &second).await).await["refresh_token"].as_str().unwrap().to_owned();
    // The canonical endpoint refreshes too, and may narrow the scope.
    let response = form(
        &app,
        "/oauth/token",
        None,
        &[("grant_type", "refresh_token"), ("refresh_token", &third), ("client_id", "sdk"), ("scope", "users:read")],
    )
    .await;
    assert_eq!(response.status(), 200);
    let body = json_of(response).await;
    assert_eq!(body["scope"], "users:read");
    let fourth = body["refresh_token"].as_str().unwrap().to_owned();
    let widened = form(
        &app,
        "/oauth/token",
        None,
        &[("grant_type", "refresh_token"), ("refresh_token", &fourth), ("client_id", "sdk"), ("scope", "users:delete")],
    )
    .await;
    expect_oauth_error(widened, 400, "invalid_scope").await;
    // Another client cannot use this family's token.
    expect_oauth_error(
        form(&app, "/oauth/token", Some(("server", &app.client_secret)), &[("grant_type", "refresh_token"), ("refresh_token", &fourth)])
            .await,
        400,
        "unauthorized_client",
    )
    .await;
    assert_eq!(sdk(&app, "refresh", &fourth).await.status(), 200);
    expect_oauth_error(sdk(&app, "refresh", "vrt_unknown").await, 400, "invalid_grant").await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_after_the_grace_window_revokes_the_family_sqlite() {
    reuse_revokes_family(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_after_the_grace_window_revokes_the_family_postgres() {
    reuse_revokes_family(Backend::Postgres).await;
}

async fn reuse_revokes_family(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.refresh_token_reuse_grace_secs = 0).await;
    let idp = FakeIdp::start().await;
    trust(&app, &idp, true).await;
    let (first_access, first) = exchange_ok(&app, &idp.id_token("rsa-1", "gina")).await;
    let body = json_of(sdk(&app, "refresh", &first).await).await;
    let (second_access, second) = (body["access_token"].as_str().unwrap().to_owned(), body["refresh_token"].as_str().unwrap().to_owned());
    assert_eq!(get(&app, "/users/idp_gina", &second_access).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // Theft: the rotated token comes back. The whole family dies, access tokens included.
    expect_oauth_error(sdk(&app, "refresh", &first).await, 400, "invalid_grant").await;
    expect_oauth_error(sdk(&app, "refresh", &second).await, 400, "invalid_grant").await;
    for token in [&first_access, &second_access] {
        let body = expect_error(get(&app, "/users/idp_gina", token).await, 401, "unauthorized").await;
        assert!(body["error"]["message"].as_str().unwrap().contains("revoked"), "{body}");
    }
    // A new login starts a new family.
    exchange_ok(&app, &idp.id_token("rsa-1", "gina")).await;
}

backend_tests!(concurrent_refreshes_have_exactly_one_winner, |app: TestApp| async move {
    let idp = FakeIdp::start().await;
    trust(&app, &idp, true).await;
    let (_, token) = exchange_ok(&app, &idp.id_token("rsa-1", "hank")).await;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let http = app.http.clone();
        let url = app.url(&format!("/v1/projects/{}/auth/sdk", app.project_id));
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            http.post(url).json(&json!({"grant": "refresh", "token": token, "client_id": "sdk"})).send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 11, "{statuses:?}");
});

backend_tests!(revocation_and_introspection_round_trips, |app: TestApp| async move {
    let idp = FakeIdp::start().await;
    trust(&app, &idp, true).await;
    let server = ("server", app.client_secret.as_str());
    let introspect = |token: String| {
        let app = &app;
        async move { json_of(form(app, "/oauth/introspect", Some(server), &[("token", &token)]).await).await }
    };
    let (access, refresh) = exchange_ok(&app, &idp.id_token("ec-1", "ivy")).await;
    let info = introspect(access.clone()).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["token_type"], "access_token");
    assert_eq!(info["user_id"], "idp_ivy");
    assert_eq!(info["principal_type"], "user");
    let info = introspect(refresh.clone()).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["token_type"], "refresh_token");
    assert_eq!(info["client_id"], "sdk");
    assert_eq!(introspect("garbage".into()).await, json!({"active": false}));
    // Public clients may not introspect.
    expect_oauth_error(form(&app, "/oauth/introspect", None, &[("token", &access), ("client_id", "sdk")]).await, 401, "invalid_client")
        .await;
    // Revoke the access token (the app itself, as a public client).
    let response = form(&app, "/oauth/revoke", None, &[("token", &access), ("client_id", "sdk")]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(introspect(access.clone()).await, json!({"active": false}));
    expect_error(get(&app, "/users/idp_ivy", &access).await, 401, "unauthorized").await;
    // Revoke the refresh token: its family is gone.
    assert_eq!(
        form(&app, "/oauth/revoke", None, &[("token", &refresh), ("client_id", "sdk"), ("token_type_hint", "refresh_token")])
            .await
            .status(),
        200
    );
    assert_eq!(introspect(refresh.clone()).await, json!({"active": false}));
    expect_oauth_error(sdk(&app, "refresh", &refresh).await, 400, "invalid_grant").await;
    // Unknown tokens revoke fine (RFC 7009); bad client credentials do not.
    assert_eq!(form(&app, "/oauth/revoke", Some(server), &[("token", "whatever")]).await.status(), 200);
    expect_oauth_error(form(&app, "/oauth/revoke", Some(("server", "wrong")), &[("token", "whatever")]).await, 401, "invalid_client").await;
    // A server token can be revoked by its client too.
    let server_token = app.server_token("users:read").await;
    assert_eq!(introspect(server_token.clone()).await["client_id"], "server");
    assert_eq!(form(&app, "/oauth/revoke", Some(server), &[("token", &server_token)]).await.status(), 200);
    expect_error(get(&app, "/users", &server_token).await, 401, "unauthorized").await;
});

backend_tests!(deleting_a_user_invalidates_its_tokens, |app: TestApp| async move {
    let idp = FakeIdp::start().await;
    trust(&app, &idp, true).await;
    let (access, refresh) = exchange_ok(&app, &idp.id_token("rsa-1", "jack")).await;
    let admin = app.server_token("").await;
    assert_eq!(app.http.delete(app.url("/users/idp_jack")).bearer_auth(&admin).send().await.unwrap().status(), 204);
    expect_error(get(&app, "/users/idp_jack", &access).await, 401, "unauthorized").await;
    expect_oauth_error(sdk(&app, "refresh", &refresh).await, 400, "invalid_grant").await;
});

backend_tests!(client_administration, |app: TestApp| async move {
    let admin = app.server_token("").await;
    let base = format!("/v1/projects/{}/oauth_clients", app.project_id);
    // A limited administrator cannot hand out more than it holds.
    let limited = app.server_token("admin.oauth_clients:create users:read").await;
    let response = app
        .http
        .post(app.url(&base))
        .bearer_auth(&limited)
        .json(&json!({"name": "x", "allowed_scopes": "users:delete"}))
        .send()
        .await
        .unwrap();
    expect_error(response, 403, "forbidden").await;
    let response =
        app.http.post(app.url(&base)).bearer_auth(&limited).json(&json!({"client_id": "narrow", "name": "x"})).send().await.unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(json_of(response).await["allowed_scopes"], "admin.oauth_clients:create users:read");
    // Create, secret once.
    let response = app
        .http
        .post(app.url(&base))
        .bearer_auth(&admin)
        .json(&json!({"client_id": "worker", "name": "Worker", "allowed_scopes": "users:read"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created = json_of(response).await;
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(created["kind"], "confidential");
    let listed = json_of(get(&app, &base, &admin).await).await;
    assert!(!listed.to_string().contains("secret"), "{listed}");
    assert_eq!(json_of(get(&app, &format!("{base}/worker"), &admin).await).await["name"], "Worker");
    expect_error(get(&app, &format!("{base}/nobody"), &admin).await, 404, "not_found").await;
    // Another project's administration is invisible.
    let (other_project, _) = app.second_project().await;
    expect_error(get(&app, &format!("/v1/projects/{other_project}/oauth_clients"), &admin).await, 404, "not_found").await;
    // Update scopes, rotate the secret.
    let patched = app
        .http
        .patch(app.url(&format!("{base}/worker")))
        .bearer_auth(&admin)
        .json(&json!({"allowed_scopes": "users:read users:create"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(patched).await["allowed_scopes"], "users:create users:read");
    let bad = app
        .http
        .patch(app.url(&format!("{base}/worker")))
        .bearer_auth(&admin)
        .json(&json!({"allowed_grants": "password"}))
        .send()
        .await
        .unwrap();
    expect_error(bad, 422, "validation_failed").await;
    let rotated = json_of(app.http.post(app.url(&format!("{base}/worker/rotate_secret"))).bearer_auth(&admin).send().await.unwrap()).await;
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    let token_request = |secret: String| {
        let app = &app;
        async move {
            app.http
                .post(app.url(&format!("/v1/projects/{}/auth/server", app.project_id)))
                .basic_auth("worker", Some(secret))
                .json(&json!({}))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(token_request(secret).await.status(), 401);
    let worker_token = json_of(token_request(new_secret.clone()).await).await["access_token"].as_str().unwrap().to_owned();
    assert_eq!(get(&app, "/users", &worker_token).await.status(), 200);
    // Revoke: no new tokens, and the outstanding one stops working.
    let revoked = json_of(app.http.post(app.url(&format!("{base}/worker/revoke"))).bearer_auth(&admin).send().await.unwrap()).await;
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(token_request(new_secret).await.status(), 401);
    expect_error(get(&app, "/users", &worker_token).await, 401, "unauthorized").await;
    // Scope enforcement on the admin routes.
    let reader = app.server_token("users:read").await;
    expect_error(get(&app, &base, &reader).await, 403, "insufficient_scope").await;
});

backend_tests!(identity_provider_administration, |app: TestApp| async move {
    let admin = app.server_token("").await;
    let base = format!("/v1/projects/{}/identity_providers", app.project_id);
    let invalid = app
        .http
        .post(app.url(&base))
        .bearer_auth(&admin)
        .json(&json!({"id": "x", "issuer": "https://a", "audiences": ["a"]}))
        .send()
        .await
        .unwrap();
    expect_error(invalid, 422, "validation_failed").await;
    let created = app
        .http
        .post(app.url(&base))
        .bearer_auth(&admin)
        .json(&json!({"id": "google", "issuer": "https://accounts.google.com", "jwks_url": "https://www.googleapis.com/oauth2/v3/certs", "audiences": ["my-app"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let body = json_of(created).await;
    assert_eq!(body["user_id_claim"], "sub");
    assert_eq!(body["create_users"], false);
    let duplicate = app
        .http
        .post(app.url(&base))
        .bearer_auth(&admin)
        .json(&json!({"id": "google2", "issuer": "https://accounts.google.com", "jwks_url": "https://x.example/jwks", "audiences": ["my-app"]}))
        .send()
        .await
        .unwrap();
    expect_error(duplicate, 409, "conflict").await;
    let patched = app
        .http
        .patch(app.url(&format!("{base}/google")))
        .bearer_auth(&admin)
        .json(&json!({"create_users": true, "user_id_prefix": "google_"}))
        .send()
        .await
        .unwrap();
    let patched = json_of(patched).await;
    assert_eq!(patched["create_users"], true);
    assert_eq!(patched["jwks_url"], "https://www.googleapis.com/oauth2/v3/certs");
    assert_eq!(json_of(get(&app, &base, &admin).await).await["identity_providers"].as_array().unwrap().len(), 1);
    assert_eq!(app.http.delete(app.url(&format!("{base}/google"))).bearer_auth(&admin).send().await.unwrap().status(), 204);
    expect_error(get(&app, &format!("{base}/google"), &admin).await, 404, "not_found").await;
});

fn assertion(secret: &str, user_id: &str, lifetime: i64, iat_offset: i64) -> String {
    let now = now_secs() + iat_offset;
    let claims = json!({"id": user_id, "iss": "vitalis", "aud": "vitalis", "iat": now, "exp": now + lifetime});
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

backend_tests!(per_user_assertions, |app: TestApp| async move {
    let admin = app.server_token("").await;
    for id in ["kim", "lee"] {
        let response = app.http.post(app.url("/users")).bearer_auth(&admin).json(&json!({"id": id})).send().await.unwrap();
        assert_eq!(response.status(), 201);
    }
    let key = json_of(app.http.post(app.url("/users/kim/keys")).bearer_auth(&admin).send().await.unwrap()).await;
    let secret = key["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("vuk_"));
    let listed = json_of(get(&app, "/users/kim/keys", &admin).await).await;
    assert!(listed["keys"][0].get("secret").is_none());
    let server = app.server_token("users:read users:update users:create").await;
    let with_jwt = |path: &'static str, jwt: String| {
        let app = &app;
        let server = server.clone();
        async move { app.http.get(app.url(path)).bearer_auth(server).header("x-jwt", jwt).send().await.unwrap() }
    };
    // Acts as kim: sees kim only.
    let response = with_jwt("/users", assertion(&secret, "kim", 300, 0)).await;
    assert_eq!(response.status(), 200);
    let ids: Vec<String> =
        json_of(response).await["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, ["kim"]);
    expect_error(with_jwt("/users/lee", assertion(&secret, "kim", 300, 0)).await, 404, "not_found").await;
    // Narrowed scopes: no creating users while acting as one.
    let create = app
        .http
        .post(app.url("/users"))
        .bearer_auth(&server)
        .header("x-jwt", assertion(&secret, "kim", 300, 0))
        .json(&json!({"id": "z"}))
        .send()
        .await
        .unwrap();
    expect_error(create, 403, "insufficient_scope").await;
    // Refusals: wrong key, expired, another user's id, too long a lifetime, wrong audience.
    expect_error(with_jwt("/users", assertion("vuk_wrong", "kim", 300, 0)).await, 401, "unauthorized").await;
    expect_error(with_jwt("/users", assertion(&secret, "kim", 300, -4000)).await, 401, "unauthorized").await;
    expect_error(with_jwt("/users", assertion(&secret, "lee", 300, 0)).await, 401, "unauthorized").await;
    expect_error(with_jwt("/users", assertion(&secret, "kim", 7200, 0)).await, 401, "unauthorized").await;
    let now = now_secs();
    let wrong_aud = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"id": "kim", "iss": "vitalis", "aud": "other", "iat": now, "exp": now + 60}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    expect_error(with_jwt("/users", wrong_aud).await, 401, "unauthorized").await;
    // The server can mint one.
    let minted =
        json_of(app.http.post(app.url("/users/kim/assertions")).bearer_auth(&admin).json(&json!({"expires_in": 60})).send().await.unwrap())
            .await;
    assert_eq!(minted["expires_in"], 60);
    assert_eq!(with_jwt("/users/kim", minted["assertion"].as_str().unwrap().to_owned()).await.status(), 200);
    let no_key = app.http.post(app.url("/users/lee/assertions")).bearer_auth(&admin).json(&json!({})).send().await.unwrap();
    expect_error(no_key, 409, "conflict").await;
    // Revoking the key ends it.
    let key_id = key["key_id"].as_str().unwrap();
    assert_eq!(app.http.delete(app.url(&format!("/users/kim/keys/{key_id}"))).bearer_auth(&admin).send().await.unwrap().status(), 204);
    expect_error(with_jwt("/users", assertion(&secret, "kim", 300, 0)).await, 401, "unauthorized").await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_client_authentications_are_rate_limited() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| config.auth_failures_per_minute = 3).await;
    let attempt = |secret: &'static str| {
        let app = &app;
        async move {
            app.http
                .post(app.url(&format!("/v1/projects/{}/auth/server", app.project_id)))
                .basic_auth("server", Some(secret))
                .json(&json!({}))
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..4 {
        assert_eq!(attempt("vcs_wrong").await.status(), 401);
    }
    let blocked = attempt("vcs_wrong").await;
    assert_eq!(blocked.status(), 429);
    let retry_after: u64 = blocked.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    // Even the right secret waits while the address is blocked.
    let right = app
        .http
        .post(app.url(&format!("/v1/projects/{}/auth/server", app.project_id)))
        .basic_auth("server", Some(&app.client_secret))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 429);
}

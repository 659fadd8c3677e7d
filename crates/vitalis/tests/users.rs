//! The users API end to end: the quickstart flow, CRUD, validation, pagination, the error
//! shape for malformed requests, on SQLite and PostgreSQL.

mod common;

use common::{TestApp, expect_error};
use serde_json::{Value, json};

async fn create(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.http.post(app.url("/users")).bearer_auth(token).json(&body).send().await.unwrap()
}

backend_tests!(quickstart_flow, |app: TestApp| async move {
    // Exactly the seed quickstart: scope string, user body, list with limit=10.
    let token = app.server_token("users:create users:read").await;
    let response = create(&app, &token, json!({"id": "user_123", "firstname": "Avery", "lastname": "Smith", "language": "en", "measurement_unit": "metric", "tz_offset": 3600})).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/users/user_123");
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["id"], "user_123");
    assert_eq!(user["firstname"], "Avery");
    assert_eq!(user["tz_offset"], 3600);
    assert_eq!(user["data_syncs"], json!([]));
    assert!(user["created_at"].as_str().unwrap().ends_with('Z'));
    let list: Value = app.http.get(app.url("/users?limit=10")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["users"].as_array().unwrap().len(), 1);
    assert_eq!(list["users"][0], user);
    assert_eq!(list["pagination"], json!({"page": null, "limit": 10, "next_page": null}));
});

backend_tests!(crud_round_trip, |app: TestApp| async move {
    let token = app.server_token("").await;
    let full = json!({"id": "u-full", "language": "de-CH", "tz_offset": -18000, "firstname": "Jo", "lastname": "Doe",
        "measurement_unit": "imperial", "gender": "other", "birthday": "1990-04-12", "height": 180.5, "weight": 75,
        "thresholds": {"ftp": 250, "lthr": 165, "mhr": 190}, "location": {"lat": 47.37, "lon": 8.54}, "coach_config": {"enabled": true}});
    let created: Value = create(&app, &token, full.clone()).await.json().await.unwrap();
    for (key, value) in full.as_object().unwrap() {
        if key != "weight" && key != "thresholds" {
            assert_eq!(&created[key], value, "{key}");
        }
    }
    assert_eq!(created["weight"], 75.0);
    let fetched: Value = app.http.get(app.url("/users/u-full")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(fetched, created);

    // PATCH is a merge patch: absent stays, null clears, nested objects merge.
    let response = app
        .http
        .patch(app.url("/users/u-full"))
        .bearer_auth(&token)
        .header("content-type", "application/merge-patch+json")
        .body(json!({"firstname": "Joanna", "lastname": null, "thresholds": {"ftp": 260}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let patched: Value = response.json().await.unwrap();
    assert_eq!(patched["firstname"], "Joanna");
    assert_eq!(patched["lastname"], Value::Null);
    assert_eq!(patched["thresholds"], json!({"ftp": 260.0, "lthr": 165.0, "mhr": 190.0}));
    assert_eq!(patched["created_at"], created["created_at"]);

    // PUT replaces: absent fields are cleared; the id may be repeated but not changed.
    let replaced: Value = app
        .http
        .put(app.url("/users/u-full"))
        .bearer_auth(&token)
        .json(&json!({"id": "u-full", "language": "fr"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replaced["language"], "fr");
    assert_eq!(replaced["firstname"], Value::Null);
    assert_eq!(replaced["measurement_unit"], "metric");
    let body = expect_error(
        app.http.put(app.url("/users/u-full")).bearer_auth(&token).json(&json!({"id": "other"})).send().await.unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(body["error"]["fields"][0]["path"], "id");
    expect_error(app.http.put(app.url("/users/missing")).bearer_auth(&token).json(&json!({})).send().await.unwrap(), 404, "not_found")
        .await;

    // DELETE, then it is gone.
    let response = app.http.delete(app.url("/users/u-full")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 204);
    expect_error(app.http.get(app.url("/users/u-full")).bearer_auth(&token).send().await.unwrap(), 404, "not_found").await;
    expect_error(app.http.delete(app.url("/users/u-full")).bearer_auth(&token).send().await.unwrap(), 404, "not_found").await;
});

backend_tests!(duplicates_and_validation, |app: TestApp| async move {
    let token = app.server_token("").await;
    assert_eq!(create(&app, &token, json!({"id": "dup"})).await.status(), 201);
    expect_error(create(&app, &token, json!({"id": "dup", "firstname": "again"})).await, 409, "conflict").await;
    let cases = [
        (json!({"id": "v", "tz_offset": 100000}), "tz_offset"),
        (json!({"id": "v", "birthday": "12/04/1990"}), "birthday"),
        (json!({"id": "v", "gender": "x"}), "gender"),
        (json!({"id": "v", "location": {"lat": 0, "lon": 181}}), "location.lon"),
        (json!({"id": "v", "unknown_field": 1}), "unknown_field"),
        (json!({"id": "has space"}), "id"),
        (json!({"firstname": "no id"}), "id"),
    ];
    for (body, path) in cases {
        let error = expect_error(create(&app, &token, body.clone()).await, 422, "validation_failed").await;
        assert_eq!(error["error"]["fields"][0]["path"], path, "{body}");
    }
    // Nothing half-written: the invalid creates left no rows.
    let list: Value = app.http.get(app.url("/users")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["users"].as_array().unwrap().len(), 1);
    let error = expect_error(
        app.http.patch(app.url("/users/dup")).bearer_auth(&token).json(&json!({"height": -1})).send().await.unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(error["error"]["fields"][0]["path"], "height");
});

backend_tests!(malformed_requests_get_the_error_shape, |app: TestApp| async move {
    let token = app.server_token("").await;
    let raw = |body: &'static str, content_type: &'static str| {
        app.http.post(app.url("/users")).bearer_auth(&token).header("content-type", content_type).body(body).send()
    };
    expect_error(raw("{\"id\": ", "application/json").await.unwrap(), 400, "malformed_json").await;
    expect_error(raw("id=u", "application/x-www-form-urlencoded").await.unwrap(), 415, "unsupported_media_type").await;
    expect_error(app.http.post(app.url("/users")).bearer_auth(&token).body("{}").send().await.unwrap(), 415, "unsupported_media_type")
        .await;
    expect_error(raw("[1, 2]", "application/json").await.unwrap(), 422, "validation_failed").await;
    let huge = format!("{{\"id\": \"big\", \"firstname\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    // A client of its own: the server closes a connection whose oversized body it refused.
    let response = reqwest::Client::new()
        .post(app.url("/users"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    expect_error(response, 413, "payload_too_large").await;
    expect_error(app.http.get(app.url("/users?limit=abc")).bearer_auth(&token).send().await.unwrap(), 400, "invalid_query").await;
    expect_error(app.http.get(app.url("/users?limit=0")).bearer_auth(&token).send().await.unwrap(), 422, "validation_failed").await;
    expect_error(app.http.get(app.url("/users?limit=1001")).bearer_auth(&token).send().await.unwrap(), 422, "validation_failed").await;
    let body =
        expect_error(app.http.get(app.url("/users?page=garbage")).bearer_auth(&token).send().await.unwrap(), 422, "validation_failed")
            .await;
    assert_eq!(body["error"]["fields"][0]["path"], "page");
    expect_error(app.http.get(app.url("/nowhere")).send().await.unwrap(), 404, "not_found").await;
    expect_error(app.http.put(app.url("/users")).bearer_auth(&token).send().await.unwrap(), 405, "method_not_allowed").await;
});

backend_tests!(cursor_pagination_walks_every_user_once, |app: TestApp| async move {
    let token = app.server_token("").await;
    let mut expected: Vec<String> = (0..25).map(|i| format!("user_{i:02}")).collect();
    for id in expected.iter().rev() {
        assert_eq!(create(&app, &token, json!({"id": id})).await.status(), 201);
    }
    expected.sort();
    let mut seen = Vec::new();
    let mut page: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &page {
            Some(p) => app.url(&format!("/users?limit=10&page={p}")),
            None => app.url("/users?limit=10"),
        };
        let body: Value = app.http.get(url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        pages += 1;
        assert_eq!(body["pagination"]["limit"], 10);
        assert_eq!(body["pagination"]["page"], page.clone().map_or(Value::Null, Value::String));
        seen.extend(body["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_owned()));
        match body["pagination"]["next_page"].as_str() {
            Some(next) => page = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);
    // Default limit is 100.
    let body: Value = app.http.get(app.url("/users")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["pagination"]["limit"], 100);
    assert_eq!(body["users"].as_array().unwrap().len(), 25);
});

backend_tests!(concurrent_patches_all_land, |app: TestApp| async move {
    let token = app.server_token("").await;
    assert_eq!(create(&app, &token, json!({"id": "racer", "thresholds": {}})).await.status(), 201);
    // Three writers each set a different field at the same time; optimistic concurrency
    // must keep all three (no lost update).
    let fields = [("ftp", 200), ("lthr", 160), ("mhr", 185)];
    let mut tasks = Vec::new();
    for (field, value) in fields {
        let http = app.http.clone();
        let url = app.url("/users/racer");
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            http.patch(url).bearer_auth(token).json(&json!({"thresholds": {field: value}})).send().await.unwrap().status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let user: Value = app.http.get(app.url("/users/racer")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(user["thresholds"], json!({"ftp": 200.0, "lthr": 160.0, "mhr": 185.0}));
});

backend_tests!(scopes_are_enforced_per_route, |app: TestApp| async move {
    let setup = app.server_token("").await;
    assert_eq!(create(&app, &setup, json!({"id": "target"})).await.status(), 201);
    let read_only = app.server_token("users:read").await;
    assert_eq!(app.http.get(app.url("/users/target")).bearer_auth(&read_only).send().await.unwrap().status(), 200);
    expect_error(create(&app, &read_only, json!({"id": "x"})).await, 403, "insufficient_scope").await;
    expect_error(
        app.http.patch(app.url("/users/target")).bearer_auth(&read_only).json(&json!({})).send().await.unwrap(),
        403,
        "insufficient_scope",
    )
    .await;
    expect_error(
        app.http.put(app.url("/users/target")).bearer_auth(&read_only).json(&json!({})).send().await.unwrap(),
        403,
        "insufficient_scope",
    )
    .await;
    expect_error(app.http.delete(app.url("/users/target")).bearer_auth(&read_only).send().await.unwrap(), 403, "insufficient_scope").await;
    let create_only = app.server_token("users:create").await;
    expect_error(app.http.get(app.url("/users")).bearer_auth(&create_only).send().await.unwrap(), 403, "insufficient_scope").await;
    expect_error(app.http.get(app.url("/users/target")).bearer_auth(&create_only).send().await.unwrap(), 403, "insufficient_scope").await;
});

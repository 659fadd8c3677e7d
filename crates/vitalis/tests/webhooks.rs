//! Signed outbound webhooks end to end, with a real receiver over HTTP, on SQLite and
//! PostgreSQL: signatures (both schemes), batching, retries, 410, dead letters and replay,
//! rolled-back changes, SSRF refusals, the delivery log.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::receiver::{Receiver, events_of};
use common::{Backend, TestApp, expect_error};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const WAIT: Duration = Duration::from_secs(15);

/// A test app in dev mode (http to loopback allowed) with fast retries.
async fn app(backend: Backend, customize: impl FnOnce(&mut vitalis::config::Config)) -> TestApp {
    TestApp::spawn_with(backend, |config| {
        config.dev = true;
        config.webhook_poll_interval_ms = 50;
        config.webhook_batch_window_ms = 20;
        config.webhook_retry_schedule_ms = vec![100, 100, 100];
        customize(config);
    })
    .await
}

async fn add_endpoint(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.http.post(app.url(&format!("/v1/projects/{}/webhooks", app.project_id))).bearer_auth(token).json(&body).send().await.unwrap()
}

async fn endpoint(app: &TestApp, token: &str, receiver: &Receiver, events: &[&str]) -> Value {
    let response = add_endpoint(app, token, json!({"url": receiver.url, "events": events, "hmac_secret": "a-very-secret-key-123"})).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

async fn create_user(app: &TestApp, token: &str, id: &str) -> u16 {
    app.http.post(app.url("/users")).bearer_auth(token).json(&json!({"id": id})).send().await.unwrap().status().as_u16()
}

async fn get_json(app: &TestApp, token: &str, url: &str) -> Value {
    app.http.get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap()
}

/// Calls `probe` every 20 ms until `done` holds for its result or `WAIT` passes; returns the
/// last result (the caller asserts on it).
async fn eventually(mut probe: impl AsyncFnMut() -> Value, done: impl Fn(&Value) -> bool) -> Value {
    let start = std::time::Instant::now();
    loop {
        let value = probe().await;
        if done(&value) || start.elapsed() > WAIT {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

async fn run_both(test: impl AsyncFn(Backend)) {
    test(Backend::Sqlite).await;
    test(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_with_both_schemes() {
    run_both(async |backend| {
        let app = app(backend, |_| {}).await;
        let receiver = Receiver::start().await;
        let token = app.server_token("").await;
        endpoint(&app, &token, &receiver, &["users:*"]).await;
        assert_eq!(create_user(&app, &token, "signed").await, 201);
        let received = receiver.wait_for(WAIT, |r| !r.is_empty()).await;
        let delivery = &received[0];
        let body = delivery.json();
        // The documented envelope.
        assert!(body["id"].as_str().unwrap().starts_with("wh_"));
        assert_eq!(body["project_id"], app.project_id);
        assert_eq!(body["org_id"], app.org_id);
        assert_eq!(body["api_version"], 1);
        assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(body["events"], json!([{"name": "users:created", "user_id": "signed", "data": {"id": "signed"}}]));
        // X-Webhook-*: sha256=<hex HMAC-SHA256 of the raw body>, keyed with the secret.
        assert_eq!(delivery.header("x-webhook-id"), body["id"].as_str().unwrap());
        let expected: String = hmac(b"a-very-secret-key-123", &delivery.body).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(delivery.header("x-webhook-signature"), format!("sha256={expected}"));
        let timestamp: i64 = delivery.header("x-webhook-timestamp").parse().unwrap();
        assert!((timestamp - vitalis_core::timefmt::now_secs()).abs() < 60);
        // Standard Webhooks: v1,<base64 HMAC(id.timestamp.body)>.
        let id = delivery.header("webhook-id");
        assert_eq!(id, delivery.header("x-webhook-id"));
        let signed = [id.as_bytes(), b".", delivery.header("webhook-timestamp").as_bytes(), b".", &delivery.body].concat();
        assert_eq!(delivery.header("webhook-signature"), format!("v1,{}", STANDARD.encode(hmac(b"a-very-secret-key-123", &signed))));

        // A generated secret is shown once and is a Standard Webhooks `whsec_` key.
        let second = Receiver::start().await;
        let created: Value =
            add_endpoint(&app, &token, json!({"url": second.url, "events": ["users:deleted"]})).await.json().await.unwrap();
        let secret = created["hmac_secret"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("whsec_"));
        let listed = app
            .http
            .get(app.url(&format!("/v1/projects/{}/webhooks", app.project_id)))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!listed.contains(&secret) && !listed.contains("hmac_secret"));
        assert_eq!(app.http.delete(app.url("/users/signed")).bearer_auth(&token).send().await.unwrap().status(), 204);
        let got = second.wait_for(WAIT, |r| !r.is_empty()).await;
        let key = STANDARD.decode(secret.trim_start_matches("whsec_")).unwrap();
        let signed =
            [got[0].header("webhook-id").as_bytes(), b".", got[0].header("webhook-timestamp").as_bytes(), b".", &got[0].body].concat();
        assert_eq!(got[0].header("webhook-signature"), format!("v1,{}", STANDARD.encode(hmac(&key, &signed))));
        assert_eq!(events_of(&got), [("users:deleted".to_owned(), "signed".to_owned())]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_five_events_arrive_as_three_deliveries() {
    run_both(async |backend| {
        // Only a wake-up starts a pass, and it waits 3 s so all 25 share it even on a busy machine.
        let app = app(backend, |c| {
            c.webhook_poll_interval_ms = 60_000;
            c.webhook_batch_window_ms = 3000;
        })
        .await;
        let receiver = Receiver::start().await;
        let token = app.server_token("").await;
        endpoint(&app, &token, &receiver, &["users:created"]).await;
        for i in 0..25 {
            assert_eq!(create_user(&app, &token, &format!("batch_{i:02}")).await, 201);
        }
        let received = receiver.wait_for(WAIT, |r| events_of(r).len() >= 25).await;
        assert_eq!(received.len(), 3, "25 events in batches of at most 10");
        let mut sizes: Vec<usize> = received.iter().map(|r| r.json()["events"].as_array().unwrap().len()).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [5, 10, 10]);
        let mut ids: Vec<String> = events_of(&received).into_iter().map(|(_, id)| id).collect();
        let in_order = ids.clone();
        ids.sort();
        assert_eq!(in_order, ids, "events keep their creation order");
    })
    .await;
}

async fn deliveries(app: &TestApp, token: &str, webhook: &str, query: &str) -> Value {
    app.http
        .get(app.url(&format!("/v1/projects/{}/webhooks/{webhook}/deliveries{query}", app.project_id)))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_after_500_and_429_honouring_retry_after() {
    run_both(async |backend| {
        let app = app(backend, |_| {}).await;
        let receiver = Receiver::start().await;
        receiver.respond(&[(500, None), (429, Some(1))]);
        let token = app.server_token("").await;
        let hook = endpoint(&app, &token, &receiver, &["users:created"]).await;
        assert_eq!(create_user(&app, &token, "retry").await, 201);
        let received = receiver.wait_for(WAIT, |r| r.len() >= 3).await;
        let ids: Vec<String> = received.iter().map(|r| r.header("x-webhook-id")).collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "a retry keeps the delivery id");
        assert!(received[2].at - received[1].at >= Duration::from_millis(950), "Retry-After: 1 was honoured");
        // The delivery log shows the three attempts.
        let webhook = hook["id"].as_str().unwrap();
        let detail = async || -> Value {
            app.http
                .get(app.url(&format!("/v1/projects/{}/webhooks/{webhook}/deliveries/{}", app.project_id, ids[0])))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        };
        let view = eventually(detail, |v| v["status"] == "succeeded").await;
        assert_eq!(view["status"], "succeeded");
        let codes: Vec<i64> = view["delivery_attempts"].as_array().unwrap().iter().map(|a| a["status_code"].as_i64().unwrap()).collect();
        assert_eq!(codes, [500, 429, 200]);
        assert_eq!(view["payload"]["events"][0]["name"], "users:created");
        let list = deliveries(&app, &token, webhook, "?status=succeeded").await;
        assert_eq!(list["deliveries"].as_array().unwrap().len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_endpoint() {
    run_both(async |backend| {
        let app = app(backend, |_| {}).await;
        let receiver = Receiver::start().await;
        receiver.set_default_status(410);
        let token = app.server_token("").await;
        let hook = endpoint(&app, &token, &receiver, &["users:created"]).await;
        let webhook = hook["id"].as_str().unwrap();
        assert_eq!(create_user(&app, &token, "gone1").await, 201);
        receiver.wait_for(WAIT, |r| !r.is_empty()).await;
        let url = app.url(&format!("/v1/projects/{}/webhooks/{webhook}", app.project_id));
        let state = eventually(async || get_json(&app, &token, &url).await, |s| s["enabled"] == false).await;
        assert_eq!(state["enabled"], false);
        assert!(state["disabled_reason"].as_str().unwrap().contains("410"));
        // Nothing more is sent to it.
        assert_eq!(create_user(&app, &token, "gone2").await, 201);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(receiver.received().len(), 1);
        assert_eq!(deliveries(&app, &token, webhook, "?status=dead").await["deliveries"].as_array().unwrap().len(), 1);
        // Re-enabling clears the reason.
        let enabled: Value =
            app.http.patch(&url).bearer_auth(&token).json(&json!({"enabled": true})).send().await.unwrap().json().await.unwrap();
        assert_eq!(enabled["enabled"], true);
        assert_eq!(enabled["disabled_reason"], Value::Null);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_can_be_replayed_with_the_same_id() {
    run_both(async |backend| {
        let app = app(backend, |_| {}).await;
        let receiver = Receiver::start().await;
        receiver.set_default_status(503);
        let token = app.server_token("").await;
        let hook = endpoint(&app, &token, &receiver, &["users:created"]).await;
        let webhook = hook["id"].as_str().unwrap().to_owned();
        assert_eq!(create_user(&app, &token, "dead").await, 201);
        // One attempt plus three retries, then dead.
        receiver.wait_for(WAIT, |r| r.len() >= 4).await;
        let dead = eventually(
            async || deliveries(&app, &token, &webhook, "?status=dead").await,
            |d| !d["deliveries"].as_array().unwrap().is_empty(),
        )
        .await;
        let delivery = dead["deliveries"][0].clone();
        assert_eq!(delivery["attempts"], 4);
        assert_eq!(delivery["last_status"], 503);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(receiver.received().len(), 4, "no attempt after the last one");
        // The receiver recovers; replay the dead letter.
        receiver.set_default_status(200);
        let id = delivery["id"].as_str().unwrap();
        let replay = app
            .http
            .post(app.url(&format!("/v1/projects/{}/webhooks/{webhook}/deliveries/{id}/redeliver", app.project_id)))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(replay.status(), 202);
        let received = receiver.wait_for(WAIT, |r| r.len() >= 5).await;
        assert_eq!(received[4].header("x-webhook-id"), id);
        // A range replay of succeeded deliveries works the same way.
        let since = "2000-01-01T00:00:00Z";
        let range = app.url(&format!("/v1/projects/{}/webhooks/{webhook}/redeliver", app.project_id));
        let count = eventually(
            async || app.http.post(&range).bearer_auth(&token).json(&json!({"since": since})).send().await.unwrap().json().await.unwrap(),
            |c| c["redelivered"] == 1,
        )
        .await;
        assert_eq!(count["redelivered"], 1);
        receiver.wait_for(WAIT, |r| r.len() >= 6).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_changes_emit_nothing() {
    run_both(async |backend| {
        let app = app(backend, |_| {}).await;
        let receiver = Receiver::start().await;
        let token = app.server_token("").await;
        endpoint(&app, &token, &receiver, &["users:*"]).await;
        assert_eq!(create_user(&app, &token, "once").await, 201);
        assert_eq!(create_user(&app, &token, "once").await, 409);
        let invalid =
            app.http.post(app.url("/users")).bearer_auth(&token).json(&json!({"id": "bad", "tz_offset": 99999999})).send().await.unwrap();
        assert_eq!(invalid.status(), 422);
        assert_eq!(app.http.delete(app.url("/users/nobody")).bearer_auth(&token).send().await.unwrap().status(), 404);
        let patched = app.http.patch(app.url("/users/once")).bearer_auth(&token).json(&json!({"firstname": "Ada"})).send().await.unwrap();
        assert_eq!(patched.status(), 200);
        receiver.wait_for(WAIT, |r| events_of(r).len() >= 2).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            events_of(&receiver.received()),
            [("users:created".to_owned(), "once".to_owned()), ("users:updated".to_owned(), "once".to_owned())]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_are_checked_for_ssrf_at_configuration_and_delivery() {
    run_both(async |backend| {
        // Not in dev mode: no plain http, no private targets.
        let app = TestApp::spawn_with(backend, |c| {
            c.webhook_poll_interval_ms = 50;
            c.webhook_retry_schedule_ms = vec![];
        })
        .await;
        let token = app.server_token("").await;
        for url in [
            "http://127.0.0.1:9/hook",
            "https://127.0.0.1/hook",
            "https://10.0.0.1/hook",
            "https://169.254.169.254/latest",
            "https://localhost/hook",
            "https://[::1]/x",
            "ftp://example.com/x",
        ] {
            let body =
                expect_error(add_endpoint(&app, &token, json!({"url": url, "events": ["users:created"]})).await, 422, "validation_failed")
                    .await;
            assert_eq!(body["error"]["fields"][0]["path"], "url", "{url}");
        }
        expect_error(
            add_endpoint(&app, &token, json!({"url": "https://example.com/hook", "events": ["users:exploded"]})).await,
            422,
            "validation_failed",
        )
        .await;
        expect_error(
            add_endpoint(&app, &token, json!({"url": "https://example.com/hook", "events": ["users:*"], "hmac_secret": "short"})).await,
            422,
            "validation_failed",
        )
        .await;
        // At delivery time too: a target that now points at a private address is refused
        // without a request being made.
        let created: Value = add_endpoint(&app, &token, json!({"url": "https://93.184.216.34/hook", "events": ["users:created"]}))
            .await
            .json()
            .await
            .unwrap();
        let webhook = created["id"].as_str().unwrap();
        let mut record = app.store.get_webhook_endpoint(&app.project_id, webhook).await.unwrap().unwrap();
        record.url = "https://10.1.2.3/hook".into();
        app.store.update_webhook_endpoint(&record).await.unwrap();
        assert_eq!(create_user(&app, &token, "ssrf").await, 201);
        let list = eventually(
            async || deliveries(&app, &token, webhook, "?status=dead").await,
            |d| !d["deliveries"].as_array().unwrap().is_empty(),
        )
        .await;
        let error = list["deliveries"][0]["last_error"].as_str().unwrap().to_owned();
        assert!(error.contains("target refused"), "{error}");
        // Scopes.
        let reader = app.server_token("users:read").await;
        expect_error(
            add_endpoint(&app, &reader, json!({"url": "https://example.com", "events": ["users:*"]})).await,
            403,
            "insufficient_scope",
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_events_and_secret_rotation() {
    run_both(async |backend| {
        let app = app(backend, |_| {}).await;
        let receiver = Receiver::start().await;
        let token = app.server_token("").await;
        let hook = endpoint(&app, &token, &receiver, &["meals:*"]).await;
        let webhook = hook["id"].as_str().unwrap();
        let base = format!("/v1/projects/{}/webhooks/{webhook}", app.project_id);
        let rotated: Value = app
            .http
            .post(app.url(&format!("{base}/rotate_secret")))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let secret = rotated["hmac_secret"].as_str().unwrap().to_owned();
        let queued = app.http.post(app.url(&format!("{base}/test"))).bearer_auth(&token).send().await.unwrap();
        assert_eq!(queued.status(), 202);
        let received = receiver.wait_for(WAIT, |r| !r.is_empty()).await;
        assert_eq!(received[0].json()["events"][0]["name"], "webhooks:test");
        let expected: String = hmac(secret.as_bytes(), &received[0].body).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(received[0].header("x-webhook-signature"), format!("sha256={expected}"), "signed with the rotated secret");
        // Users events do not reach a meals-only endpoint.
        assert_eq!(create_user(&app, &token, "ignored").await, 201);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(receiver.received().len(), 1);
        assert_eq!(app.http.delete(app.url(&base)).bearer_auth(&token).send().await.unwrap().status(), 204);
        expect_error(app.http.get(app.url(&base)).bearer_auth(&token).send().await.unwrap(), 404, "not_found").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_does_not_delay_the_others() {
    let app = app(Backend::Sqlite, |c| c.webhook_request_timeout_secs = 5).await;
    let (slow, fast) = (Receiver::start().await, Receiver::start().await);
    slow.set_delay(Duration::from_secs(3));
    let token = app.server_token("").await;
    endpoint(&app, &token, &slow, &["users:created"]).await;
    endpoint(&app, &token, &fast, &["users:created"]).await;
    let started = std::time::Instant::now();
    for i in 0..5 {
        assert_eq!(create_user(&app, &token, &format!("slow_{i}")).await, 201);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    fast.wait_for(WAIT, |r| events_of(r).len() >= 5).await;
    assert!(started.elapsed() < Duration::from_secs(2), "the fast endpoint got everything while the slow one was stuck");
    assert!(slow.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_failing_too_long_are_disabled() {
    run_both(async |backend| {
        let app = app(backend, |c| c.webhook_disable_after_secs = 0).await;
        let receiver = Receiver::start().await;
        receiver.set_default_status(500);
        let token = app.server_token("").await;
        let hook = endpoint(&app, &token, &receiver, &["users:created"]).await;
        assert_eq!(create_user(&app, &token, "failing").await, 201);
        let url = app.url(&format!("/v1/projects/{}/webhooks/{}", app.project_id, hook["id"].as_str().unwrap()));
        let state = eventually(async || get_json(&app, &token, &url).await, |s| s["enabled"] == false).await;
        assert_eq!(state["enabled"], false);
        assert!(state["disabled_reason"].as_str().unwrap().contains("kept failing"), "{state}");
    })
    .await;
}

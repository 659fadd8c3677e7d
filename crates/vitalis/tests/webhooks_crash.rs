//! Crash safety and scale-out of webhook delivery with the real binary: `kill -9` in the
//! middle of writes and deliveries loses no event; two processes on one PostgreSQL share
//! the work without sending a batch twice.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::Backend;
use common::process::ServerProcess;
use common::receiver::{Receiver, events_of};
use serde_json::{Value, json};

fn fast_webhook_env() -> Vec<(&'static str, String)> {
    vec![
        ("VITALIS_WEBHOOK_POLL_INTERVAL_MS", "50".into()),
        ("VITALIS_WEBHOOK_BATCH_WINDOW_MS", "5".into()),
        ("VITALIS_WEBHOOK_REQUEST_TIMEOUT_SECS", "2".into()),
        ("VITALIS_WEBHOOK_LEASE_SECS", "3".into()),
        ("VITALIS_WEBHOOK_RETRY_SCHEDULE_MS", "[200, 200, 200, 200, 200, 200, 200, 200]".into()),
    ]
}

async fn token(http: &reqwest::Client, base: &str, project: &str, secret: &str) -> String {
    let response = http
        .post(format!("{base}/v1/projects/{project}/auth/server"))
        .basic_auth("server", Some(secret))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn kill_minus_nine_loses_nothing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let log = dir.path().join("server.log");
    let mut env = fast_webhook_env();
    if backend == Backend::Postgres {
        env.push(("VITALIS_DATABASE_URL", common::fresh_database(backend, dir.path()).await));
    }
    let receiver = Receiver::start().await;
    // Slow answers keep deliveries in flight when the process dies.
    receiver.set_delay(Duration::from_millis(150));
    let http = reqwest::Client::new();

    let server = ServerProcess::start(&data_dir, &["--dev"], &env, &log);
    let (project, secret) = (server.field("project_id").unwrap(), server.field("client_secret").unwrap());
    let token = token(&http, &server.base_url, &project, &secret).await;
    let created = http
        .post(format!("{}/v1/projects/{project}/webhooks", server.base_url))
        .bearer_auth(&token)
        .json(&json!({"url": receiver.url, "events": ["users:created"], "hmac_secret": "crash-test-secret-0001"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    // Write users from a background task and kill the server while it runs.
    let writer = {
        let (http, base, token) = (http.clone(), server.base_url.clone(), token.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..200 {
                let id = format!("crash_{i:03}");
                match http.post(format!("{base}/users")).bearer_auth(&token).json(&json!({"id": id})).send().await {
                    Ok(response) if response.status() == 201 => acknowledged.push(id),
                    _ => break,
                }
            }
            acknowledged
        })
    };
    receiver.wait_for(Duration::from_secs(20), |r| r.len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.kill_hard();
    let acknowledged = writer.await.unwrap();
    assert!(acknowledged.len() > 3, "the server answered some writes before it died");

    // Restart: every acknowledged user's event arrives at least once.
    receiver.set_delay(Duration::ZERO);
    let server = ServerProcess::start(&data_dir, &["--dev"], &env, &log);
    let expected: HashSet<String> = acknowledged.iter().cloned().collect();
    let received = receiver
        .wait_for(Duration::from_secs(30), |r| {
            let seen: HashSet<String> = events_of(r).into_iter().map(|(_, id)| id).collect();
            expected.is_subset(&seen)
        })
        .await;
    // A redelivery carries the same id and the same body.
    let mut bodies: HashMap<String, axum::body::Bytes> = HashMap::new();
    for r in &received {
        let previous = bodies.insert(r.header("x-webhook-id"), r.body.clone());
        if let Some(previous) = previous {
            assert_eq!(previous, r.body, "a redelivery is byte-identical");
        }
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_loses_no_event_sqlite() {
    kill_minus_nine_loses_nothing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_loses_no_event_postgres() {
    kill_minus_nine_loses_nothing(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_postgres_share_deliveries_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = common::fresh_database(Backend::Postgres, dir.path()).await;
    let master = vitalis_auth::MasterKey::generate().to_base64();
    let mut env = fast_webhook_env();
    env.push(("VITALIS_DATABASE_URL", database_url));
    env.push(("VITALIS_MASTER_KEY", master));
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_millis(20));
    let http = reqwest::Client::new();
    let a = ServerProcess::start(&dir.path().join("a"), &["--dev"], &env, &dir.path().join("a.log"));
    let b = ServerProcess::start(&dir.path().join("b"), &["--dev"], &env, &dir.path().join("b.log"));
    let (project, secret) = (a.field("project_id").unwrap(), a.field("client_secret").unwrap());
    let token = token(&http, &a.base_url, &project, &secret).await;
    let created = http
        .post(format!("{}/v1/projects/{project}/webhooks", b.base_url))
        .bearer_auth(&token)
        .json(&json!({"url": receiver.url, "events": ["users:*"], "hmac_secret": "two-nodes-secret-0001"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    for i in 0..60 {
        let base = if i % 2 == 0 { &a.base_url } else { &b.base_url };
        let response =
            http.post(format!("{base}/users")).bearer_auth(&token).json(&json!({"id": format!("node_{i:02}")})).send().await.unwrap();
        assert_eq!(response.status(), 201);
    }
    let received = receiver.wait_for(Duration::from_secs(30), |r| events_of(r).len() >= 60).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received().len().max(received.len());
    let all = receiver.received();
    let ids: Vec<String> = all.iter().map(|r| r.header("x-webhook-id")).collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no batch was sent twice ({received} requests)");
    let events: HashSet<String> = events_of(&all).into_iter().map(|(_, id)| id).collect();
    assert_eq!(events.len(), 60);
}

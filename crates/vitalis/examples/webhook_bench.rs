//! Webhook delivery benchmark driver for `scripts/bench-webhooks.sh`: runs a receiver,
//! registers one endpoint per project (read from `projects.txt`: `project_id client_secret`
//! lines), creates users at a fixed rate spread over the projects, and reports events/s
//! delivered, the latency from the API's 2xx to the receiver's receipt (p50, p99), and loss.
//!
//!     cargo run --release --example webhook_bench -- BASE_URL projects.txt RATE SECONDS

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde_json::{Value, json};

type Times = Arc<Mutex<HashMap<String, Instant>>>;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args.get(1).expect("BASE_URL").clone();
    let projects: Vec<(String, String)> = std::fs::read_to_string(args.get(2).expect("projects file"))
        .expect("read projects")
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(p, s)| (p.to_owned(), s.to_owned())))
        .collect();
    let rate: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(10);

    // The receiver: records when each event (by user id) first arrives.
    let received: Times = Arc::default();
    let deliveries = Arc::new(Mutex::new(0u64));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_url = format!("http://{}", listener.local_addr().unwrap());
    {
        let (received, deliveries) = (received.clone(), deliveries.clone());
        let app = axum::Router::new().route(
            "/hook/{n}",
            axum::routing::post(move |body: Bytes| {
                let (received, deliveries) = (received.clone(), deliveries.clone());
                async move {
                    let now = Instant::now();
                    let envelope: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    *deliveries.lock().unwrap() += 1;
                    let mut received = received.lock().unwrap();
                    for event in envelope["events"].as_array().into_iter().flatten() {
                        if let Some(id) = event["data"]["id"].as_str() {
                            received.entry(id.to_owned()).or_insert(now);
                        }
                    }
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }

    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let mut tokens = Vec::new();
    for (i, (project, secret)) in projects.iter().enumerate() {
        let response: Value = http
            .post(format!("{base}/v1/projects/{project}/auth/server"))
            .basic_auth("server", Some(secret))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = response["access_token"].as_str().expect("token").to_owned();
        let created = http
            .post(format!("{base}/v1/projects/{project}/webhooks"))
            .bearer_auth(&token)
            .json(&json!({"url": format!("{receiver_url}/hook/{i}"), "events": ["users:created"], "hmac_secret": "benchmark-secret-0001"}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
        tokens.push(token);
    }

    // Load: `rate` user creations per second, round-robin over the projects.
    let acknowledged: Times = Arc::default();
    let errors = Arc::new(Mutex::new(0u64));
    let total = rate * seconds;
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        ticker.tick().await;
        let (http, base, token) = (http.clone(), base.clone(), tokens[n as usize % tokens.len()].clone());
        let (acknowledged, errors) = (acknowledged.clone(), errors.clone());
        tasks.spawn(async move {
            let id = format!("bench_{n:07}");
            match http.post(format!("{base}/users")).bearer_auth(token).json(&json!({"id": id})).send().await {
                Ok(response) if response.status() == 201 => {
                    acknowledged.lock().unwrap().insert(id, Instant::now());
                }
                _ => *errors.lock().unwrap() += 1,
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let load_elapsed = started.elapsed();

    // Drain: wait until every acknowledged event arrived (or 30 s).
    let drain_start = Instant::now();
    loop {
        let missing = {
            let received = received.lock().unwrap();
            acknowledged.lock().unwrap().keys().filter(|id| !received.contains_key(*id)).count()
        };
        if missing == 0 || drain_start.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered_elapsed = started.elapsed();

    let acknowledged = acknowledged.lock().unwrap();
    let received = received.lock().unwrap();
    let mut latencies: Vec<f64> = acknowledged
        .iter()
        .filter_map(|(id, acked)| received.get(id).map(|got| got.saturating_duration_since(*acked).as_secs_f64() * 1000.0))
        .collect();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let percentile =
        |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).copied().unwrap_or(f64::NAN);
    let lost = acknowledged.len() - latencies.len();
    println!("endpoints: {}  target rate: {rate} events/s for {seconds} s", projects.len());
    println!(
        "API: {} acknowledged in {:.1} s ({:.0}/s), {} errors",
        acknowledged.len(),
        load_elapsed.as_secs_f64(),
        acknowledged.len() as f64 / load_elapsed.as_secs_f64(),
        errors.lock().unwrap()
    );
    println!(
        "delivered: {} events in {} POSTs, {:.0} events/s over the run",
        latencies.len(),
        deliveries.lock().unwrap(),
        latencies.len() as f64 / delivered_elapsed.as_secs_f64()
    );
    println!(
        "latency 2xx -> receipt: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        percentile(0.50),
        percentile(0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    println!("lost: {lost}");
}

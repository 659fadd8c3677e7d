//! A webhook receiver for tests: records every request (headers and raw body) and answers
//! from a script of statuses (then 200), optionally after a delay.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Script {
    /// Status and optional Retry-After for the next requests; 200 when empty.
    responses: VecDeque<(u16, Option<u64>)>,
    /// Answer every request with this status once the script is empty.
    default_status: u16,
    delay: Duration,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(Script { default_status: 200, ..Script::default() }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (r, s) = (received.clone(), script.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (received, script) = (r.clone(), s.clone());
                async move {
                    let (status, retry_after, delay) = {
                        let mut script = script.lock().unwrap();
                        let (status, retry_after) = script.responses.pop_front().unwrap_or((script.default_status, None));
                        (status, retry_after, script.delay)
                    };
                    tokio::time::sleep(delay).await;
                    received.lock().unwrap().push(Received { headers, body, at: Instant::now() });
                    let mut response = StatusCode::from_u16(status).unwrap().into_response();
                    if let Some(seconds) = retry_after {
                        response.headers_mut().insert("retry-after", HeaderValue::from(seconds));
                    }
                    response
                }
            }),
        );
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, received, script }
    }

    pub fn respond(&self, responses: &[(u16, Option<u64>)]) {
        self.script.lock().unwrap().responses.extend(responses.iter().copied());
    }

    pub fn set_default_status(&self, status: u16) {
        self.script.lock().unwrap().default_status = status;
    }

    pub fn set_delay(&self, delay: Duration) {
        self.script.lock().unwrap().delay = delay;
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `check` holds for what arrived (or panics after `timeout`).
    pub async fn wait_for(&self, timeout: Duration, check: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let received = self.received();
            if check(&received) {
                return received;
            }
            assert!(start.elapsed() < timeout, "timed out waiting for webhook deliveries; got {} requests", received.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Every event (name, data.id) in what arrived.
pub fn events_of(received: &[Received]) -> Vec<(String, String)> {
    received
        .iter()
        .flat_map(|r| {
            r.json()["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e["name"].as_str().unwrap().to_owned(), e["data"]["id"].as_str().unwrap_or_default().to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

//! The dispatcher: fans committed outbox events out into batched deliveries (at most 10
//! events per POST, per endpoint, in creation order), claims due deliveries under a lease
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several nodes share the work), sends each
//! in its own task (a slow endpoint only occupies its own slots) and records the attempt.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use std::sync::Mutex;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use vitalis_auth::MasterKey;
use vitalis_core::ids::new_id;
use vitalis_core::timefmt::{now_millis, now_secs};
use vitalis_store::{AttemptOutcome, DeliveryRecord, NewDelivery, OutboxEventRecord, Store, StoreError, WebhookEndpointRecord};

use crate::admin::{DELIVERY_PREFIX, endpoint_secret, envelope};
use crate::events::matches;
use crate::retry::{AttemptResult, Verdict, parse_retry_after, verdict};
use crate::signing::{documented_signature, standard_signature};
use crate::ssrf::{GuardedResolver, TargetPolicy};

/// At most this many events per POST.
pub const MAX_EVENTS_PER_DELIVERY: usize = 10;
const FAN_OUT_BATCH: i64 = 500;

#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// How often to look for work when not woken (other nodes' events, due retries).
    pub poll_interval: Duration,
    /// After a wake-up, wait this long so events committed together share deliveries.
    pub batch_window: Duration,
    /// Pauses between attempts; its length is the number of retries.
    pub retry_schedule: Vec<Duration>,
    pub request_timeout: Duration,
    /// How long a claimed delivery stays reserved for this node.
    pub lease: Duration,
    pub max_in_flight: usize,
    /// An endpoint failing continuously this long is disabled.
    pub disable_after: Duration,
    pub policy: TargetPolicy,
}

type Queued = (DeliveryRecord, OwnedSemaphorePermit);
/// Released once the attempt is committed, so in-flight work stays bounded.
type Recorded = Option<OwnedSemaphorePermit>;

/// An endpoint and its decrypted secret (`None` if it cannot be decrypted).
type EndpointWithSecret = (WebhookEndpointRecord, Option<String>);
/// (project id, endpoint id) -> when it was read, and what was found.
type EndpointCache = HashMap<(String, String), (Instant, Option<EndpointWithSecret>)>;

/// How long an endpoint's settings and secret are reused between deliveries.
const ENDPOINT_CACHE_TTL: Duration = Duration::from_secs(1);
const MAX_RECORD_BATCH: usize = 256;
/// Deliveries waiting behind one endpoint's current delivery, at most.
const MAX_QUEUED_PER_ENDPOINT: usize = 16;

pub struct Dispatcher {
    store: Store,
    master: MasterKey,
    http: reqwest::Client,
    config: DispatcherConfig,
    slots: Arc<Semaphore>,
    /// One sequential worker per endpoint with work: deliveries to an endpoint go out in
    /// creation order, and a slow endpoint only holds up itself.
    workers: Mutex<HashMap<(String, String), mpsc::Sender<Queued>>>,
    /// Attempt results, group-committed by one writer task.
    results: mpsc::UnboundedSender<(String, AttemptOutcome, Recorded)>,
    endpoints: Mutex<EndpointCache>,
}

/// Groups events per matching endpoint into envelopes of at most 10 events.
pub fn plan_deliveries(
    events: &[OutboxEventRecord],
    endpoints: &[WebhookEndpointRecord],
    orgs: &HashMap<String, String>,
) -> Vec<NewDelivery> {
    let now = now_millis();
    let mut deliveries = Vec::new();
    for endpoint in endpoints.iter().filter(|e| e.enabled) {
        let matching: Vec<Value> = events
            .iter()
            .filter(|event| event.project_id == endpoint.project_id && matches(&endpoint.events, &event.name))
            .map(|event| serde_json::json!({"name": event.name, "user_id": event.user_id, "data": serde_json::from_str::<Value>(&event.data).unwrap_or(Value::Null)}))
            .collect();
        for chunk in matching.chunks(MAX_EVENTS_PER_DELIVERY) {
            let id = new_id(DELIVERY_PREFIX);
            let org_id = orgs.get(&endpoint.project_id).map(String::as_str).unwrap_or_default();
            deliveries.push(NewDelivery {
                body: envelope(&id, now, &endpoint.project_id, org_id, chunk),
                id,
                project_id: endpoint.project_id.clone(),
                endpoint_id: endpoint.id.clone(),
                event_count: chunk.len() as i64,
            });
        }
    }
    deliveries
}

fn jitter() -> f64 {
    let [byte] = vitalis_auth::secrets::random_bytes::<1>();
    f64::from(byte) / 256.0
}

impl Dispatcher {
    pub fn new(store: Store, master: MasterKey, config: DispatcherConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(GuardedResolver(config.policy))
            .user_agent("Vitalis-Webhooks/1")
            .build()
            .expect("the webhook HTTP client builds");
        let slots = Arc::new(Semaphore::new(config.max_in_flight));
        let results = start_result_writer(store.clone());
        Self { store, master, http, config, slots, workers: Mutex::new(HashMap::new()), results, endpoints: Mutex::new(HashMap::new()) }
    }

    /// Runs until `shutdown` resolves; in-flight deliveries are then given a few seconds to
    /// finish (an unfinished one is claimed again after its lease).
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = self.store.outbox_written() => tokio::time::sleep(self.config.batch_window).await,
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
            if let Err(err) = self.pass().await {
                tracing::warn!(error = %err, "webhook dispatch pass failed");
                tokio::time::sleep(self.config.poll_interval).await;
            }
        }
        // Let deliveries in flight finish (all slots free again), briefly.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.slots.acquire_many(self.config.max_in_flight as u32)).await;
    }

    /// One pass: fan out every committed event, then hand due deliveries (as many as there
    /// are free slots) to their endpoints' workers.
    pub async fn pass(self: &Arc<Self>) -> Result<(), StoreError> {
        while self.store.fan_out_outbox(FAN_OUT_BATCH, plan_deliveries).await? as i64 == FAN_OUT_BATCH {}
        let free = self.slots.available_permits();
        if free == 0 {
            return Ok(());
        }
        let claimed = self.store.claim_due_deliveries(now_millis(), self.config.lease.as_millis() as i64, free as i64).await?;
        for delivery in claimed {
            let permit = self.slots.clone().acquire_owned().await.expect("the semaphore is never closed");
            self.enqueue(delivery, permit);
        }
        Ok(())
    }

    fn enqueue(self: &Arc<Self>, delivery: DeliveryRecord, permit: OwnedSemaphorePermit) {
        let key = (delivery.project_id.clone(), delivery.endpoint_id.clone());
        let mut workers = self.workers.lock().expect("worker map lock");
        let item = match workers.get(&key) {
            Some(queue) => match queue.try_send((delivery, permit)) {
                Ok(()) => return,
                // A slow endpoint already has a backlog here: leave this one claimed; it is
                // picked up again when its lease expires, and other endpoints keep the slot.
                Err(mpsc::error::TrySendError::Full(_)) => return,
                Err(mpsc::error::TrySendError::Closed(item)) => item,
            },
            None => (delivery, permit),
        };
        let (queue, mut jobs) = mpsc::channel(MAX_QUEUED_PER_ENDPOINT);
        queue.try_send(item).expect("a new queue has room");
        workers.insert(key.clone(), queue);
        let dispatcher = self.clone();
        tokio::spawn(async move {
            loop {
                let next = match jobs.try_recv() {
                    Ok(job) => Some(job),
                    Err(_) => {
                        // Re-check under the lock so nothing is queued to a worker that left.
                        let mut workers = dispatcher.workers.lock().expect("worker map lock");
                        match jobs.try_recv() {
                            Ok(job) => Some(job),
                            Err(_) => {
                                workers.remove(&key);
                                None
                            }
                        }
                    }
                };
                let Some((delivery, permit)) = next else { break };
                dispatcher.deliver(delivery, permit).await;
            }
        });
    }

    async fn deliver(&self, delivery: DeliveryRecord, permit: OwnedSemaphorePermit) {
        let permit = Some(permit);
        let started_at = now_millis();
        let clock = Instant::now();
        let (endpoint, secret) = match self.endpoint(&delivery).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                return self.finish(&delivery, permit, started_at, None, 0, Some("endpoint deleted".into()), "dead", started_at).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "loading a webhook endpoint failed; the lease will expire and the delivery be retried");
                return;
            }
        };
        if !endpoint.enabled {
            let reason = endpoint.disabled_reason.clone().unwrap_or_else(|| "endpoint disabled".into());
            return self.finish(&delivery, permit, started_at, None, 0, Some(reason), "dead", started_at).await;
        }
        let Some(secret) = secret else {
            return self
                .finish(&delivery, permit, started_at, None, 0, Some("the endpoint secret cannot be decrypted".into()), "dead", started_at)
                .await;
        };
        let (result, error) = match self.config.policy.check_url(&endpoint.url) {
            Err(reason) => (AttemptResult::Failed, Some(format!("target refused: {reason}"))),
            Ok(url) => self.post(url, &delivery, &secret).await,
        };
        let latency_ms = clock.elapsed().as_millis() as i64;
        let code = match &result {
            AttemptResult::Status { code, .. } => Some(i64::from(*code)),
            AttemptResult::Failed => None,
        };
        let attempt = delivery.attempts as usize + 1;
        let outcome = verdict(&result, attempt, &self.config.retry_schedule, jitter());
        metrics::counter!("vitalis_webhook_attempts_total", "result" => match outcome {
            Verdict::Delivered => "delivered",
            Verdict::RetryAfter(_) => "retry",
            Verdict::Gone => "gone",
            Verdict::Dead => "dead",
        })
        .increment(1);
        let (status, next, error) = match outcome {
            Verdict::Delivered => ("succeeded", started_at, None),
            Verdict::RetryAfter(wait) => {
                ("pending", now_millis() + wait.as_millis() as i64, error.or_else(|| code.map(|c| format!("status {c}"))))
            }
            Verdict::Gone => ("dead", started_at, Some("410 Gone: endpoint disabled".to_owned())),
            Verdict::Dead => ("dead", started_at, error.or_else(|| code.map(|c| format!("status {c}")))),
        };
        self.finish(&delivery, permit, started_at, code, latency_ms, error, status, next).await;
        self.track_endpoint(endpoint, outcome).await;
    }

    async fn post(&self, url: reqwest::Url, delivery: &DeliveryRecord, secret: &str) -> (AttemptResult, Option<String>) {
        let timestamp = now_secs();
        let body = delivery.body.as_bytes();
        let request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("x-webhook-id", &delivery.id)
            .header("x-webhook-timestamp", timestamp.to_string())
            .header("x-webhook-signature", documented_signature(secret, body))
            .header("webhook-id", &delivery.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", standard_signature(secret, &delivery.id, timestamp, body))
            .body(delivery.body.clone());
        match request.send().await {
            Ok(response) => {
                let retry_after = parse_retry_after(response.headers().get("retry-after").and_then(|v| v.to_str().ok()));
                (AttemptResult::Status { code: response.status().as_u16(), retry_after }, None)
            }
            Err(err) => {
                let reason = if err.is_timeout() { "timed out".to_owned() } else { format!("request failed: {}", error_chain(&err)) };
                (AttemptResult::Failed, Some(reason))
            }
        }
    }

    /// Hands the attempt to the result writer; its slot is released once the outcome is
    /// committed (the next delivery to this endpoint does not wait for that).
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        delivery: &DeliveryRecord,
        permit: Recorded,
        started_at: i64,
        status_code: Option<i64>,
        latency_ms: i64,
        error: Option<String>,
        status: &'static str,
        next_attempt_at: i64,
    ) {
        let outcome = AttemptOutcome { started_at, status_code, latency_ms, error, status, next_attempt_at };
        let _ = self.results.send((delivery.id.clone(), outcome, permit));
    }

    /// The endpoint and its secret, from a short-lived cache (settings changes apply within
    /// a second).
    async fn endpoint(&self, delivery: &DeliveryRecord) -> Result<Option<EndpointWithSecret>, StoreError> {
        let key = (delivery.project_id.clone(), delivery.endpoint_id.clone());
        if let Some((at, cached)) = self.endpoints.lock().expect("endpoint cache lock").get(&key)
            && at.elapsed() < ENDPOINT_CACHE_TTL
        {
            return Ok(cached.clone());
        }
        let found = self.store.get_webhook_endpoint(&delivery.project_id, &delivery.endpoint_id).await?.map(|endpoint| {
            let secret = endpoint_secret(&self.master, &endpoint);
            (endpoint, secret)
        });
        self.endpoints.lock().expect("endpoint cache lock").insert(key, (Instant::now(), found.clone()));
        Ok(found)
    }

    /// Keeps the endpoint's failure record: success clears it; 410 or days of failures disable it.
    async fn track_endpoint(&self, mut endpoint: WebhookEndpointRecord, outcome: Verdict) {
        let now = now_millis();
        let disable = match outcome {
            Verdict::Delivered if endpoint.failing_since.is_some() => {
                endpoint.failing_since = None;
                None
            }
            Verdict::Delivered => return,
            Verdict::Gone => Some("the endpoint answered 410 Gone".to_owned()),
            Verdict::RetryAfter(_) | Verdict::Dead => {
                let since = *endpoint.failing_since.get_or_insert(now);
                (now - since > self.config.disable_after.as_millis() as i64)
                    .then(|| "deliveries kept failing; disabled automatically".to_owned())
            }
        };
        self.endpoints.lock().expect("endpoint cache lock").remove(&(endpoint.project_id.clone(), endpoint.id.clone()));
        if let Some(reason) = &disable {
            endpoint.enabled = false;
            endpoint.disabled_reason = Some(reason.clone());
            tracing::warn!(endpoint = %endpoint.id, reason, "webhook endpoint disabled");
        }
        if let Err(err) = self.store.update_webhook_endpoint(&endpoint).await {
            tracing::warn!(error = %err, "updating a webhook endpoint failed");
        }
        if let Some(reason) = disable
            && let Err(err) = self.store.dead_letter_pending(&endpoint.project_id, &endpoint.id, &reason).await
        {
            tracing::warn!(error = %err, "dead-lettering a disabled endpoint's deliveries failed");
        }
    }
}

/// Group-commits attempt results: whatever is queued is written in one transaction.
fn start_result_writer(store: Store) -> mpsc::UnboundedSender<(String, AttemptOutcome, Recorded)> {
    let (results, mut queue) = mpsc::unbounded_channel::<(String, AttemptOutcome, Recorded)>();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_RECORD_BATCH);
        while queue.recv_many(&mut batch, MAX_RECORD_BATCH).await > 0 {
            let mut rows = Vec::with_capacity(batch.len());
            let mut acks = Vec::with_capacity(batch.len());
            for (id, outcome, ack) in batch.drain(..) {
                rows.push((id, outcome));
                acks.push(ack);
            }
            if let Err(err) = store.record_attempts(&rows).await {
                // The leases expire and the deliveries are attempted again: at least once.
                tracing::warn!(error = %err, batch = rows.len(), "recording webhook attempts failed");
            }
            drop(acks);
        }
    });
    results
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

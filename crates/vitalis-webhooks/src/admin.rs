//! Endpoint administration: the documented validation (`url` HTTPS, known `events`,
//! `hmac_secret` of at least 16 characters, generated when omitted and never shown again),
//! SSRF checks on the target, secret rotation and test events.

use serde_json::{Value, json};
use vitalis_auth::MasterKey;
use vitalis_core::ValidationErrors;
use vitalis_core::ids::new_id;
use vitalis_core::timefmt::{now_millis, rfc3339_from_millis};
use vitalis_store::{NewDelivery, Store, StoreError, WebhookEndpointRecord};

use crate::events::{TEST_EVENT, validate_subscriptions};
use crate::signing::generate_secret;
use crate::ssrf::TargetPolicy;

pub const ENDPOINT_PREFIX: &str = "whep_";
pub const DELIVERY_PREFIX: &str = "wh_";

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("{0}")]
    Invalid(ValidationErrors),
    #[error("webhook endpoint not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ValidationErrors> for EndpointError {
    fn from(errors: ValidationErrors) -> Self {
        EndpointError::Invalid(errors)
    }
}

/// Fields an administrator sets; `None` keeps the current value (or the default on create).
#[derive(Debug, Clone, Default)]
pub struct EndpointInput {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub hmac_secret: Option<String>,
}

fn secret_context(project_id: &str, endpoint_id: &str) -> String {
    format!("webhook/{project_id}/{endpoint_id}")
}

/// The endpoint's HMAC secret in clear (for signing).
pub fn endpoint_secret(master: &MasterKey, endpoint: &WebhookEndpointRecord) -> Option<String> {
    master
        .decrypt(&endpoint.secret_enc, &secret_context(&endpoint.project_id, &endpoint.id))
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

fn check_secret(secret: &str) -> Result<(), ValidationErrors> {
    let length = secret.chars().count();
    if !(16..=256).contains(&length) || secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ValidationErrors::single("hmac_secret", "must be 16 to 256 characters without spaces"));
    }
    Ok(())
}

async fn check_url(policy: &TargetPolicy, url: &str) -> Result<(), ValidationErrors> {
    policy.check_target(url).await.map(|_| ()).map_err(|reason| ValidationErrors::single("url", reason))
}

/// Creates an endpoint. Returns it and the secret when the server generated it (a secret
/// the caller chose is not echoed back).
pub async fn create_endpoint(
    store: &Store,
    master: &MasterKey,
    policy: &TargetPolicy,
    project_id: &str,
    input: EndpointInput,
) -> Result<(WebhookEndpointRecord, Option<String>), EndpointError> {
    let url = input.url.ok_or_else(|| ValidationErrors::single("url", "is required"))?;
    check_url(policy, &url).await?;
    let events = validate_subscriptions(&input.events.ok_or_else(|| ValidationErrors::single("events", "is required"))?)?;
    let (secret, generated) = match input.hmac_secret {
        Some(secret) => {
            check_secret(&secret)?;
            (secret, false)
        }
        None => (generate_secret(), true),
    };
    let id = new_id(ENDPOINT_PREFIX);
    let record = WebhookEndpointRecord {
        secret_enc: master.encrypt(secret.as_bytes(), &secret_context(project_id, &id)),
        project_id: project_id.to_owned(),
        id,
        url,
        events,
        enabled: input.enabled.unwrap_or(true),
        disabled_reason: None,
        failing_since: None,
        created_at: now_millis(),
        updated_at: now_millis(),
    };
    store.insert_webhook_endpoint(&record).await?;
    Ok((record, generated.then_some(secret)))
}

/// Changes url, events or enabled state. Re-enabling clears the failure record.
pub async fn update_endpoint(
    store: &Store,
    policy: &TargetPolicy,
    project_id: &str,
    id: &str,
    input: EndpointInput,
) -> Result<WebhookEndpointRecord, EndpointError> {
    let mut record = store.get_webhook_endpoint(project_id, id).await?.ok_or(EndpointError::NotFound)?;
    if input.hmac_secret.is_some() {
        return Err(ValidationErrors::single("hmac_secret", "change the secret with the rotate_secret action").into());
    }
    if let Some(url) = input.url {
        check_url(policy, &url).await?;
        record.url = url;
    }
    if let Some(events) = input.events {
        record.events = validate_subscriptions(&events)?;
    }
    if let Some(enabled) = input.enabled {
        if enabled && !record.enabled {
            record.disabled_reason = None;
            record.failing_since = None;
        }
        if !enabled && record.enabled {
            record.disabled_reason = Some("disabled by an administrator".into());
        }
        record.enabled = enabled;
    }
    store.update_webhook_endpoint(&record).await?;
    Ok(record)
}

/// Replaces the secret (with `new_secret`, or a generated one); returns it, shown once.
pub async fn rotate_secret(
    store: &Store,
    master: &MasterKey,
    project_id: &str,
    id: &str,
    new_secret: Option<String>,
) -> Result<String, EndpointError> {
    let secret = match new_secret {
        Some(secret) => {
            check_secret(&secret)?;
            secret
        }
        None => generate_secret(),
    };
    store.get_webhook_endpoint(project_id, id).await?.ok_or(EndpointError::NotFound)?;
    store.set_webhook_secret(project_id, id, &master.encrypt(secret.as_bytes(), &secret_context(project_id, id))).await?;
    Ok(secret)
}

/// The documented envelope: routing metadata plus up to 10 events.
pub fn envelope(delivery_id: &str, created_at: i64, project_id: &str, org_id: &str, events: &[Value]) -> String {
    json!({
        "id": delivery_id,
        "created_at": rfc3339_from_millis(created_at),
        "project_id": project_id,
        "org_id": org_id,
        "api_version": 1,
        "events": events,
    })
    .to_string()
}

/// Queues a `webhooks:test` delivery to one endpoint (even if it does not subscribe to it).
pub async fn send_test_event(store: &Store, project_id: &str, id: &str) -> Result<String, EndpointError> {
    let endpoint = store.get_webhook_endpoint(project_id, id).await?.ok_or(EndpointError::NotFound)?;
    let org_id = store.get_project(project_id).await?.map(|p| p.org_id).unwrap_or_default();
    let delivery_id = new_id(DELIVERY_PREFIX);
    let event = json!({"name": TEST_EVENT, "user_id": null, "data": {"id": endpoint.id, "message": "This is a test event from Vitalis."}});
    let body = envelope(&delivery_id, now_millis(), project_id, &org_id, &[event]);
    store
        .insert_delivery(&NewDelivery {
            id: delivery_id.clone(),
            project_id: project_id.to_owned(),
            endpoint_id: endpoint.id,
            body,
            event_count: 1,
        })
        .await?;
    store.signal_outbox();
    Ok(delivery_id)
}

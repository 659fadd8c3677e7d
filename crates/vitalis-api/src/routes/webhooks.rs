//! Webhook endpoints of a project and their delivery log, under
//! `/v1/projects/{project_id}/webhooks`, guarded by `admin.webhooks:read|write`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vitalis_core::ValidationErrors;
use vitalis_core::page::{decode_page_token, encode_page_token, resolve_limit};
use vitalis_core::timefmt::rfc3339_from_millis;
use vitalis_core::user::deserialize_with_paths;
use vitalis_store::{DeliveryRecord, WebhookEndpointRecord};
use vitalis_webhooks::admin::{self, EndpointError, EndpointInput};

use crate::error::{ApiError, ApiResult, BearerErrors, ErrorBody, JsonBodyErrors};
use crate::extract::{ApiPath, ApiQuery, Authorized, JsonBody, WebhooksRead, WebhooksWrite};
use crate::routes::users::Pagination;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(rotate_webhook_secret))
        .routes(routes!(send_test_event))
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(redeliver_one))
        .routes(routes!(redeliver_range))
}

fn endpoint_error(err: EndpointError) -> ApiError {
    match err {
        EndpointError::Invalid(errors) => ApiError::Validation(errors),
        EndpointError::NotFound => ApiError::NotFound("webhook endpoint"),
        EndpointError::Store(err) => err.into(),
    }
}

/// A webhook endpoint (its secret is never shown after creation or rotation).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    /// Event names and `family:*` patterns.
    pub events: Vec<String>,
    pub enabled: bool,
    /// Why it was disabled (by an administrator, a 410, or days of failures).
    pub disabled_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Only when the server generated the secret, in the creating response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hmac_secret: Option<String>,
}

fn endpoint_view(endpoint: WebhookEndpointRecord, hmac_secret: Option<String>) -> WebhookEndpoint {
    WebhookEndpoint {
        id: endpoint.id,
        url: endpoint.url,
        events: endpoint.events.split(' ').filter(|e| !e.is_empty()).map(str::to_owned).collect(),
        enabled: endpoint.enabled,
        disabled_reason: endpoint.disabled_reason,
        created_at: rfc3339_from_millis(endpoint.created_at),
        updated_at: rfc3339_from_millis(endpoint.updated_at),
        hmac_secret,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// HTTPS URL (plain http only to loopback in dev mode); must not resolve to a private address.
    #[schema(example = "https://customer.example/webhooks/vitalis")]
    pub url: Option<String>,
    /// Known event names or `family:*` patterns, e.g. `["users:created", "daily_records:*"]`.
    pub events: Option<Vec<String>>,
    /// Deliveries are sent only when enabled (default true).
    pub enabled: Option<bool>,
    /// At least 16 characters; generated (and returned once) when omitted. Create only.
    pub hmac_secret: Option<String>,
}

impl From<WebhookRequest> for EndpointInput {
    fn from(request: WebhookRequest) -> Self {
        EndpointInput { url: request.url, events: request.events, enabled: request.enabled, hmac_secret: request.hmac_secret }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointList {
    pub webhooks: Vec<WebhookEndpoint>,
}

/// Configure a webhook endpoint.
#[utoipa::path(post, path = "/v1/projects/{project_id}/webhooks", tag = "webhooks",
    params(("project_id" = String, Path)), request_body = WebhookRequest, security(("bearer" = ["admin.webhooks:write"])),
    responses((status = 201, body = WebhookEndpoint), (status = 404, body = ErrorBody), BearerErrors, JsonBodyErrors))]
async fn create_webhook(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<WebhooksWrite>,
    ApiPath(project_id): ApiPath<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<WebhookEndpoint>)> {
    principal.administers(&project_id)?;
    let request: WebhookRequest = deserialize_with_paths(body)?;
    let (endpoint, secret) =
        admin::create_endpoint(state.store(), state.authority().master(), &state.http().webhook_targets, &project_id, request.into())
            .await
            .map_err(endpoint_error)?;
    Ok((StatusCode::CREATED, Json(endpoint_view(endpoint, secret))))
}

/// List the project's webhook endpoints.
#[utoipa::path(get, path = "/v1/projects/{project_id}/webhooks", tag = "webhooks",
    params(("project_id" = String, Path)), security(("bearer" = ["admin.webhooks:read"])),
    responses((status = 200, body = WebhookEndpointList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), BearerErrors))]
async fn list_webhooks(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<WebhooksRead>,
    ApiPath(project_id): ApiPath<String>,
) -> ApiResult<Json<WebhookEndpointList>> {
    principal.administers(&project_id)?;
    let endpoints = state.store().list_webhook_endpoints(&project_id).await?;
    Ok(Json(WebhookEndpointList { webhooks: endpoints.into_iter().map(|e| endpoint_view(e, None)).collect() }))
}

async fn load(state: &AppState, project_id: &str, id: &str) -> ApiResult<WebhookEndpointRecord> {
    state.store().get_webhook_endpoint(project_id, id).await?.ok_or(ApiError::NotFound("webhook endpoint"))
}

/// Get one webhook endpoint.
#[utoipa::path(get, path = "/v1/projects/{project_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("project_id" = String, Path), ("webhook_id" = String, Path)), security(("bearer" = ["admin.webhooks:read"])),
    responses((status = 200, body = WebhookEndpoint), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), BearerErrors))]
async fn get_webhook(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<WebhooksRead>,
    ApiPath((project_id, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<WebhookEndpoint>> {
    principal.administers(&project_id)?;
    Ok(Json(endpoint_view(load(&state, &project_id, &id).await?, None)))
}

/// Change an endpoint's url, events or enabled state (re-enabling clears its failure record).
#[utoipa::path(patch, path = "/v1/projects/{project_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("project_id" = String, Path), ("webhook_id" = String, Path)), request_body = WebhookRequest, security(("bearer" = ["admin.webhooks:write"])),
    responses((status = 200, body = WebhookEndpoint), (status = 404, body = ErrorBody), BearerErrors, JsonBodyErrors))]
async fn update_webhook(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<WebhooksWrite>,
    ApiPath((project_id, id)): ApiPath<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<WebhookEndpoint>> {
    principal.administers(&project_id)?;
    let request: WebhookRequest = deserialize_with_paths(body)?;
    let endpoint = admin::update_endpoint(state.store(), &state.http().webhook_targets, &project_id, &id, request.into())
        .await
        .map_err(endpoint_error)?;
    Ok(Json(endpoint_view(endpoint, None)))
}

/// Delete an endpoint; its undelivered deliveries are dead-lettered.
#[utoipa::path(delete, path = "/v1/projects/{project_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("project_id" = String, Path), ("webhook_id" = String, Path)), security(("bearer" = ["admin.webhooks:write"])),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), BearerErrors))]
async fn delete_webhook(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<WebhooksWrite>,
    ApiPath((project_id, id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    principal.administers(&project_id)?;
    if state.store().delete_webhook_endpoint(&project_id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("webhook endpoint"))
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretRequest {
    /// The new secret (at least 16 characters); generated when omitted.
    pub hmac_secret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecret {
    pub id: String,
    /// Shown once.
    pub hmac_secret: String,
}

/// Replace an endpoint's HMAC secret; the new one signs every following attempt.
#[utoipa::path(post, path = "/v1/projects/{project_id}/webhooks/{webhook_id}/rotate_secret", tag = "webhooks",
    params(("project_id" = String, Path), ("webhook_id" = String, Path)), request_body(content = RotateSecretRequest, content_type = "application/json"),
    security(("bearer" = ["admin.webhooks:write"])),
    responses((status = 200, body = RotatedSecret), (status = 404, body = ErrorBody), BearerErrors, JsonBodyErrors))]
async fn rotate_webhook_secret(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<WebhooksWrite>,
    ApiPath((project_id, id)): ApiPath<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<RotatedSecret>> {
    principal.administers(&project_id)?;
    let request: RotateSecretRequest = deserialize_with_paths(body)?;
    let secret = admin::rotate_secret(state.store(), state.authority().master(), &project_id, &id, request.hmac_secret)
        .await
        .map_err(endpoint_error)?;
    Ok(Json(RotatedSecret { id, hmac_secret: secret }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedDelivery {
    pub delivery_id: String,
}

/// Queue a `webhooks:test` event to this endpoint.
#[utoipa::path(post, path = "/v1/projects/{project_id}/webhooks/{webhook_id}/test", tag = "webhooks",
    params(("project_id" = String, Path), ("webhook_id" = String, Path)), security(("bearer" = ["admin.webhooks:write"])),
    responses((status = 202, body = QueuedDelivery), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), BearerErrors))]
async fn send_test_event(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<WebhooksWrite>,
    ApiPath((project_id, id)): ApiPath<(String, String)>,
) -> ApiResult<(StatusCode, Json<QueuedDelivery>)> {
    principal.administers(&project_id)?;
    let delivery_id = admin::send_test_event(state.store(), &project_id, &id).await.map_err(endpoint_error)?;
    Ok((StatusCode::ACCEPTED, Json(QueuedDelivery { delivery_id })))
}

/// A delivery: one signed POST of up to 10 events, retried under the same id.
#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    /// Equals the envelope `id` and the `X-Webhook-ID` header.
    pub id: String,
    pub webhook_id: String,
    /// `pending` (queued or awaiting a retry), `succeeded` or `dead`.
    pub status: String,
    pub event_count: i64,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The exact body sent (in the single-delivery view).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_attempts: Option<Vec<Attempt>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Attempt {
    pub attempt: i64,
    pub started_at: String,
    /// The receiver's status, absent when no response arrived.
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

fn delivery_view(delivery: DeliveryRecord) -> Delivery {
    Delivery {
        next_attempt_at: (delivery.status == "pending").then(|| rfc3339_from_millis(delivery.next_attempt_at)),
        id: delivery.id,
        webhook_id: delivery.endpoint_id,
        status: delivery.status,
        event_count: delivery.event_count,
        attempts: delivery.attempts,
        last_status: delivery.last_status,
        last_error: delivery.last_error,
        created_at: rfc3339_from_millis(delivery.created_at),
        updated_at: rfc3339_from_millis(delivery.updated_at),
        payload: None,
        delivery_attempts: None,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryListParams {
    /// `pending`, `succeeded` or `dead`.
    status: Option<String>,
    page: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
    pub pagination: Pagination,
}

/// An endpoint's deliveries, newest first.
#[utoipa::path(get, path = "/v1/projects/{project_id}/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    params(("project_id" = String, Path), ("webhook_id" = String, Path), DeliveryListParams), security(("bearer" = ["admin.webhooks:read"])),
    responses((status = 200, body = DeliveryList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), BearerErrors))]
async fn list_deliveries(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<WebhooksRead>,
    ApiPath((project_id, id)): ApiPath<(String, String)>,
    ApiQuery(params): ApiQuery<DeliveryListParams>,
) -> ApiResult<Json<DeliveryList>> {
    principal.administers(&project_id)?;
    load(&state, &project_id, &id).await?;
    let limit = resolve_limit(params.limit)?;
    if let Some(status) = &params.status
        && !["pending", "succeeded", "dead"].contains(&status.as_str())
    {
        return Err(ValidationErrors::single("status", "must be pending, succeeded or dead").into());
    }
    let before = match &params.page {
        Some(token) => {
            let key = decode_page_token(token)?;
            let (at, delivery_id) =
                key.split_once(':').ok_or_else(|| ValidationErrors::single("page", "is not a page token returned by this API"))?;
            Some((
                at.parse::<i64>().map_err(|_| ValidationErrors::single("page", "is not a page token returned by this API"))?,
                delivery_id.to_owned(),
            ))
        }
        None => None,
    };
    let mut records = state.store().list_deliveries(&project_id, &id, params.status.as_deref(), before, i64::from(limit) + 1).await?;
    let next_page = if records.len() > limit as usize {
        records.truncate(limit as usize);
        records.last().map(|r| encode_page_token(&format!("{}:{}", r.created_at, r.id)))
    } else {
        None
    };
    Ok(Json(DeliveryList {
        deliveries: records.into_iter().map(delivery_view).collect(),
        pagination: Pagination { page: params.page, limit, next_page },
    }))
}

async fn load_delivery(state: &AppState, project_id: &str, webhook_id: &str, delivery_id: &str) -> ApiResult<DeliveryRecord> {
    state.store().get_delivery(project_id, delivery_id).await?.filter(|d| d.endpoint_id == webhook_id).ok_or(ApiError::NotFound("delivery"))
}

/// One delivery with its payload and every attempt (status, latency, error).
#[utoipa::path(get, path = "/v1/projects/{project_id}/webhooks/{webhook_id}/deliveries/{delivery_id}", tag = "webhooks",
    params(("project_id" = String, Path), ("webhook_id" = String, Path), ("delivery_id" = String, Path)), security(("bearer" = ["admin.webhooks:read"])),
    responses((status = 200, body = Delivery), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), BearerErrors))]
async fn get_delivery(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<WebhooksRead>,
    ApiPath((project_id, id, delivery_id)): ApiPath<(String, String, String)>,
) -> ApiResult<Json<Delivery>> {
    principal.administers(&project_id)?;
    let record = load_delivery(&state, &project_id, &id, &delivery_id).await?;
    let attempts = state.store().list_attempts(&record.id).await?;
    let payload = serde_json::from_str(&record.body).ok();
    let mut view = delivery_view(record);
    view.payload = payload;
    view.delivery_attempts = Some(
        attempts
            .into_iter()
            .map(|a| Attempt {
                attempt: a.attempt,
                started_at: rfc3339_from_millis(a.started_at),
                status_code: a.status_code,
                latency_ms: a.latency_ms,
                error: a.error,
            })
            .collect(),
    );
    Ok(Json(view))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Redelivered {
    /// How many deliveries were queued again (same ids).
    pub redelivered: u64,
}

/// Queue a finished (succeeded or dead-lettered) delivery again, with the same id.
#[utoipa::path(post, path = "/v1/projects/{project_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", tag = "webhooks",
    params(("project_id" = String, Path), ("webhook_id" = String, Path), ("delivery_id" = String, Path)), security(("bearer" = ["admin.webhooks:write"])),
    responses((status = 202, body = Redelivered), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "Still pending", body = ErrorBody), BearerErrors))]
async fn redeliver_one(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<WebhooksWrite>,
    ApiPath((project_id, id, delivery_id)): ApiPath<(String, String, String)>,
) -> ApiResult<(StatusCode, Json<Redelivered>)> {
    principal.administers(&project_id)?;
    let record = load_delivery(&state, &project_id, &id, &delivery_id).await?;
    let count = state.store().redeliver(&project_id, &id, Some(&record.id), i64::MIN, i64::MAX).await?;
    if count == 0 {
        return Err(ApiError::Conflict("the delivery is still pending".into()));
    }
    state.store().signal_outbox();
    Ok((StatusCode::ACCEPTED, Json(Redelivered { redelivered: count })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeliverRange {
    /// RFC 3339; deliveries created at or after.
    pub since: String,
    /// RFC 3339; deliveries created at or before (default: now).
    pub until: Option<String>,
}

fn parse_time(field: &str, value: &str) -> Result<i64, ValidationErrors> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| ValidationErrors::single(field, "must be an RFC 3339 date-time"))
}

/// Queue every finished delivery of this endpoint created in a time range again.
#[utoipa::path(post, path = "/v1/projects/{project_id}/webhooks/{webhook_id}/redeliver", tag = "webhooks",
    params(("project_id" = String, Path), ("webhook_id" = String, Path)), request_body = RedeliverRange, security(("bearer" = ["admin.webhooks:write"])),
    responses((status = 202, body = Redelivered), (status = 404, body = ErrorBody), BearerErrors, JsonBodyErrors))]
async fn redeliver_range(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<WebhooksWrite>,
    ApiPath((project_id, id)): ApiPath<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Redelivered>)> {
    principal.administers(&project_id)?;
    load(&state, &project_id, &id).await?;
    let request: RedeliverRange = deserialize_with_paths(body)?;
    let since = parse_time("since", &request.since)?;
    let until = match &request.until {
        Some(until) => parse_time("until", until)?,
        None => i64::MAX,
    };
    let count = state.store().redeliver(&project_id, &id, None, since, until).await?;
    state.store().signal_outbox();
    Ok((StatusCode::ACCEPTED, Json(Redelivered { redelivered: count })))
}

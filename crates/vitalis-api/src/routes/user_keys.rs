//! Per-user secret keys and signed assertions (`x-jwt`): a backend holding a server token
//! issues a user a key (shown once), then either signs its own HS256 assertions with it or
//! asks the server to mint one. A request with the server token plus `x-jwt` acts as that
//! user, confined to that user's data.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vitalis_auth::assertions;
use vitalis_core::timefmt::rfc3339_from_millis;
use vitalis_core::user::deserialize_with_paths;
use vitalis_store::StoreError;

use crate::error::{ApiError, ApiResult, BearerErrors, ErrorBody, JsonBodyErrors};
use crate::extract::{ApiPath, Authorized, JsonBody, Principal, UserKeysCreate, UserKeysRead, UserKeysRevoke};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_key, list_keys)).routes(routes!(revoke_key)).routes(routes!(mint_assertion))
}

/// Keys are managed by the backend only, never by a user acting for itself.
fn check_backend(principal: &Principal) -> ApiResult<()> {
    if principal.own_user_id().is_none() { Ok(()) } else { Err(ApiError::Forbidden("user tokens cannot manage keys".into())) }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserKey {
    pub key_id: String,
    pub user_id: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// The HS256 secret (its UTF-8 bytes are the HMAC key). Only in the creating response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserKeyList {
    pub keys: Vec<UserKey>,
}

/// Issue a secret key for a user; the secret is shown once.
#[utoipa::path(post, path = "/users/{user_id}/keys", tag = "user-keys",
    params(("user_id" = String, Path)), security(("bearer" = ["user_keys:create"])),
    responses((status = 201, body = UserKey), (status = 400, body = ErrorBody), (status = 404, description = "No such user", body = ErrorBody), BearerErrors))]
async fn create_key(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<UserKeysCreate>,
    ApiPath(user_id): ApiPath<String>,
) -> ApiResult<(StatusCode, Json<UserKey>)> {
    check_backend(&principal)?;
    let (record, secret) = assertions::create_user_key(state.store(), state.authority().master(), principal.project_id(), &user_id)
        .await
        .map_err(|err| match err {
        StoreError::NotFound(what) => ApiError::NotFound(what),
        other => other.into(),
    })?;
    let key = UserKey {
        key_id: record.key_id,
        user_id: record.user_id,
        created_at: rfc3339_from_millis(record.created_at),
        revoked_at: None,
        secret: Some(secret),
    };
    Ok((StatusCode::CREATED, Json(key)))
}

/// List a user's keys (without secrets).
#[utoipa::path(get, path = "/users/{user_id}/keys", tag = "user-keys",
    params(("user_id" = String, Path)), security(("bearer" = ["user_keys:read"])),
    responses((status = 200, body = UserKeyList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), BearerErrors))]
async fn list_keys(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<UserKeysRead>,
    ApiPath(user_id): ApiPath<String>,
) -> ApiResult<Json<UserKeyList>> {
    check_backend(&principal)?;
    if state.store().get_user(principal.project_id(), &user_id).await?.is_none() {
        return Err(ApiError::NotFound("user"));
    }
    let keys = state.store().list_user_keys(principal.project_id(), &user_id).await?;
    let keys = keys
        .into_iter()
        .map(|k| UserKey {
            key_id: k.key_id,
            user_id: k.user_id,
            created_at: rfc3339_from_millis(k.created_at),
            revoked_at: k.revoked_at.map(rfc3339_from_millis),
            secret: None,
        })
        .collect();
    Ok(Json(UserKeyList { keys }))
}

/// Revoke a user's key; assertions signed with it stop working at once.
#[utoipa::path(delete, path = "/users/{user_id}/keys/{key_id}", tag = "user-keys",
    params(("user_id" = String, Path), ("key_id" = String, Path)), security(("bearer" = ["user_keys:revoke"])),
    responses((status = 204, description = "Revoked"), (status = 400, body = ErrorBody), (status = 404, description = "No such live key", body = ErrorBody), BearerErrors))]
async fn revoke_key(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<UserKeysRevoke>,
    ApiPath((user_id, key_id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    check_backend(&principal)?;
    if state.store().revoke_user_key(principal.project_id(), &user_id, &key_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("key"))
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintAssertionRequest {
    /// Lifetime in seconds (default and maximum: the configured maximum, 3600 by default).
    pub expires_in: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Assertion {
    /// Send as the `x-jwt` header together with the server token.
    pub assertion: String,
    pub expires_in: u64,
}

/// Mint an `x-jwt` assertion for a user with its newest active key.
#[utoipa::path(post, path = "/users/{user_id}/assertions", tag = "user-keys",
    params(("user_id" = String, Path)), request_body(content = MintAssertionRequest, content_type = "application/json"), security(("bearer" = ["user_keys:create"])),
    responses((status = 201, body = Assertion), (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "The user has no active key", body = ErrorBody), BearerErrors, JsonBodyErrors))]
async fn mint_assertion(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<UserKeysCreate>,
    ApiPath(user_id): ApiPath<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Assertion>)> {
    check_backend(&principal)?;
    let request: MintAssertionRequest = deserialize_with_paths(body)?;
    let config = &state.authority().config().assertions;
    let max = config.max_lifetime.as_secs();
    let lifetime = match request.expires_in {
        None => max,
        Some(n) if (1..=max).contains(&n) => n,
        Some(_) => return Err(vitalis_core::ValidationErrors::single("expires_in", format!("must be between 1 and {max} seconds")).into()),
    };
    if state.store().get_user(principal.project_id(), &user_id).await?.is_none() {
        return Err(ApiError::NotFound("user"));
    }
    let assertion = assertions::mint_assertion(
        state.store(),
        state.authority().master(),
        config,
        principal.project_id(),
        &user_id,
        Duration::from_secs(lifetime),
    )
    .await?
    .ok_or_else(|| ApiError::Conflict("the user has no active key; create one with POST /users/{user_id}/keys".into()))?;
    Ok((StatusCode::CREATED, Json(Assertion { assertion, expires_in: lifetime })))
}

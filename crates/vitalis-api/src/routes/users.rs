//! `/users`: customer-supplied ids, unique per project; the project comes from the token.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vitalis_core::page::{decode_page_token, encode_page_token, resolve_limit};
use vitalis_core::timefmt::now_millis;
use vitalis_core::timefmt::rfc3339_from_millis;
use vitalis_core::user::{self, CreateUserRequest, DataSync, ReplaceUserRequest, User, UserProfile};
use vitalis_store::{RevocationKind, UserRecord};

use crate::error::{ApiError, ApiResult, BearerErrors, ErrorBody, JsonBodyErrors};
use crate::extract::{ApiPath, ApiQuery, Authorized, JsonBody, Principal, UsersCreate, UsersDelete, UsersRead, UsersUpdate};
use crate::state::AppState;

/// Optimistic-concurrency retries for read-modify-write updates before answering 409.
const UPDATE_ATTEMPTS: usize = 5;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_user, list_users)).routes(routes!(get_user, patch_user, put_user, delete_user))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListUsersParams {
    /// Opaque token from a previous response's `pagination.next_page`.
    page: Option<String>,
    /// Page size, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Pagination {
    /// The token that produced this page (`null` for the first page).
    pub page: Option<String>,
    pub limit: u32,
    /// Pass as `page` to get the next window; `null` at the end.
    pub next_page: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<User>,
    pub pagination: Pagination,
}

fn user_from_record(record: UserRecord) -> ApiResult<User> {
    let profile: UserProfile = serde_json::from_str(&record.profile).map_err(ApiError::internal)?;
    let data_syncs: Vec<DataSync> = serde_json::from_str(&record.data_syncs).map_err(ApiError::internal)?;
    Ok(User {
        id: record.id,
        profile,
        data_syncs,
        created_at: rfc3339_from_millis(record.created_at),
        updated_at: rfc3339_from_millis(record.updated_at),
    })
}

fn profile_json(profile: &UserProfile) -> String {
    serde_json::to_string(profile).expect("a profile serializes")
}

/// User principals reach only themselves; for anyone else the user does not exist.
fn check_user_access(principal: &Principal, user_id: &str) -> ApiResult<()> {
    if principal.may_access_user(user_id) { Ok(()) } else { Err(ApiError::NotFound("user")) }
}

/// Create a user.
#[utoipa::path(post, path = "/users", tag = "users",
    request_body = CreateUserRequest,
    security(("bearer" = ["users:create"])),
    responses(
        (status = 201, description = "Created", body = User, headers(("Location" = String, description = "URL of the new user"))),
        (status = 409, description = "A user with this id exists in the project", body = ErrorBody),
        BearerErrors, JsonBodyErrors,
    ))]
async fn create_user(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<UsersCreate>,
    JsonBody(body): JsonBody,
) -> ApiResult<impl IntoResponse> {
    let (user_id, profile) = user::parse_new_user(body)?;
    if principal.own_user_id().is_some() {
        return Err(ApiError::Forbidden("user tokens cannot create users".into()));
    }
    let record = state.store().insert_user(principal.project_id(), &user_id, &profile_json(&profile)).await.map_err(|err| match err {
        vitalis_store::StoreError::Conflict(_) => ApiError::Conflict(format!("a user with id `{user_id}` already exists")),
        other => other.into(),
    })?;
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/users/{}", record.id)) {
        headers.insert(header::LOCATION, location);
    }
    Ok((StatusCode::CREATED, headers, Json(user_from_record(record)?)))
}

/// List users, ordered by id, with cursor pagination.
#[utoipa::path(get, path = "/users", tag = "users", operation_id = "listUsers",
    params(ListUsersParams),
    security(("bearer" = ["users:read"])),
    responses(
        (status = 200, description = "A page of users", body = UserList),
        (status = 400, description = "Malformed query string", body = ErrorBody),
        (status = 422, description = "Invalid `limit` or `page`", body = ErrorBody),
        BearerErrors,
    ))]
async fn list_users(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<UsersRead>,
    ApiQuery(params): ApiQuery<ListUsersParams>,
) -> ApiResult<Json<UserList>> {
    let limit = resolve_limit(params.limit)?;
    let after = params.page.as_deref().map(decode_page_token).transpose()?;
    let mut records = match principal.own_user_id() {
        // A user token lists exactly its own user.
        Some(own) => state
            .store()
            .get_user(principal.project_id(), own)
            .await?
            .into_iter()
            .filter(|r| after.as_deref().is_none_or(|a| r.id.as_str() > a))
            .collect(),
        None => state.store().list_users(principal.project_id(), after.as_deref(), limit + 1).await?,
    };
    let next_page = if records.len() > limit as usize {
        records.truncate(limit as usize);
        records.last().map(|r| encode_page_token(&r.id))
    } else {
        None
    };
    let users = records.into_iter().map(user_from_record).collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(UserList { users, pagination: Pagination { page: params.page, limit, next_page } }))
}

/// Get one user.
#[utoipa::path(get, path = "/users/{user_id}", tag = "users",
    params(("user_id" = String, Path, description = "The customer-supplied user id")),
    security(("bearer" = ["users:read"])),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 400, description = "Malformed path", body = ErrorBody),
        (status = 404, description = "No such user in this project", body = ErrorBody),
        BearerErrors,
    ))]
async fn get_user(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<UsersRead>,
    ApiPath(user_id): ApiPath<String>,
) -> ApiResult<Json<User>> {
    check_user_access(&principal, &user_id)?;
    let record = state.store().get_user(principal.project_id(), &user_id).await?.ok_or(ApiError::NotFound("user"))?;
    Ok(Json(user_from_record(record)?))
}

/// Update some fields of a user (JSON merge patch: absent fields stay, `null` clears).
#[utoipa::path(patch, path = "/users/{user_id}", tag = "users",
    params(("user_id" = String, Path, description = "The customer-supplied user id")),
    request_body(content = UserProfile, content_type = "application/json"),
    security(("bearer" = ["users:update"])),
    responses(
        (status = 200, description = "The updated user", body = User),
        (status = 404, description = "No such user in this project", body = ErrorBody),
        (status = 409, description = "Concurrent updates kept conflicting; retry", body = ErrorBody),
        BearerErrors, JsonBodyErrors,
    ))]
async fn patch_user(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<UsersUpdate>,
    ApiPath(user_id): ApiPath<String>,
    JsonBody(patch): JsonBody,
) -> ApiResult<Json<User>> {
    check_user_access(&principal, &user_id)?;
    update_with_retry(&state, &principal, &user_id, |current| user::apply_merge_patch(&user_id, current, patch.clone())).await
}

/// Replace a user's profile; absent fields are cleared.
#[utoipa::path(put, path = "/users/{user_id}", tag = "users",
    params(("user_id" = String, Path, description = "The customer-supplied user id")),
    request_body = ReplaceUserRequest,
    security(("bearer" = ["users:update"])),
    responses(
        (status = 200, description = "The replaced user", body = User),
        (status = 404, description = "No such user in this project", body = ErrorBody),
        (status = 409, description = "Concurrent updates kept conflicting; retry", body = ErrorBody),
        BearerErrors, JsonBodyErrors,
    ))]
async fn put_user(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<UsersUpdate>,
    ApiPath(user_id): ApiPath<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<User>> {
    check_user_access(&principal, &user_id)?;
    let profile = user::parse_replacement(&user_id, body)?;
    update_with_retry(&state, &principal, &user_id, |_| Ok(profile.clone())).await
}

/// Reads the user, computes the new profile and writes it if nobody changed the row in
/// between (version check); retries a few times under contention.
async fn update_with_retry(
    state: &AppState,
    principal: &Principal,
    user_id: &str,
    next: impl Fn(&UserProfile) -> Result<UserProfile, vitalis_core::ValidationErrors>,
) -> ApiResult<Json<User>> {
    let store = state.store();
    for _ in 0..UPDATE_ATTEMPTS {
        let record = store.get_user(principal.project_id(), user_id).await?.ok_or(ApiError::NotFound("user"))?;
        let current: UserProfile = serde_json::from_str(&record.profile).map_err(ApiError::internal)?;
        let updated = next(&current)?;
        if let Some(saved) = store.update_user_profile(principal.project_id(), user_id, record.version, &profile_json(&updated)).await? {
            return Ok(Json(user_from_record(saved)?));
        }
    }
    Err(ApiError::Conflict("the user was changed concurrently; retry the request".into()))
}

/// Delete a user.
#[utoipa::path(delete, path = "/users/{user_id}", tag = "users",
    params(("user_id" = String, Path, description = "The customer-supplied user id")),
    security(("bearer" = ["users:delete"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed path", body = ErrorBody),
        (status = 404, description = "No such user in this project", body = ErrorBody),
        BearerErrors,
    ))]
async fn delete_user(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<UsersDelete>,
    ApiPath(user_id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    check_user_access(&principal, &user_id)?;
    let authority = state.authority();
    let until = authority.revocation_horizon();
    if !state.store().delete_user(principal.project_id(), &user_id, until).await? {
        return Err(ApiError::NotFound("user"));
    }
    // The user's tokens stop working on this node at once (other nodes on their next reload).
    authority.revocations().record(RevocationKind::User, principal.project_id(), &user_id, now_millis(), until);
    Ok(StatusCode::NO_CONTENT)
}

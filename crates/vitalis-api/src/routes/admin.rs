//! Project administration: OAuth clients and trusted identity providers, under
//! `/v1/projects/{project_id}/...`, guarded by `admin.oauth_clients:*` and
//! `admin.identity_providers:*`. The token must belong to the project in the path, and an
//! administrator can only grant scopes its own token carries.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vitalis_auth::admin::{self, AdminError, ClientSpec, ClientUpdate, IdentityProviderSpec};
use vitalis_core::timefmt::{now_millis, rfc3339_from_millis};
use vitalis_core::user::deserialize_with_paths;
use vitalis_store::{ClientKind, ClientRecord, IdentityProviderRecord, RevocationKind, StoreError};

use crate::error::{ApiError, ApiResult, BearerErrors, ErrorBody, JsonBodyErrors};
use crate::extract::{
    ApiPath, Authorized, ClientsCreate, ClientsRead, ClientsRevoke, ClientsUpdate, IdpsCreate, IdpsRead, IdpsRevoke, IdpsUpdate, JsonBody,
    Principal,
};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_client, list_clients))
        .routes(routes!(get_client, update_client))
        .routes(routes!(rotate_client_secret))
        .routes(routes!(revoke_client))
        .routes(routes!(create_idp, list_idps))
        .routes(routes!(get_idp, update_idp, delete_idp))
}

fn admin_error(err: AdminError) -> ApiError {
    match err {
        AdminError::Invalid(message) => ApiError::Validation(vitalis_core::ValidationErrors::single("", message)),
        AdminError::Store(StoreError::NotFound(what)) => ApiError::NotFound(what),
        AdminError::Store(other) => other.into(),
    }
}

/// Refuses to hand out scopes the caller's own token lacks.
fn check_grantable(principal: &Principal, scopes: Option<&str>) -> ApiResult<()> {
    let Some(scopes) = scopes else { return Ok(()) };
    let beyond = admin::scopes_beyond_caller(&principal.scopes, scopes).map_err(admin_error)?;
    if beyond.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!("you cannot grant scopes your token lacks: {}", beyond.join(" "))))
    }
}

/// An OAuth client as the API shows it (never its secret or hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthClient {
    pub client_id: String,
    pub name: String,
    /// `confidential` or `public`.
    pub kind: String,
    pub allowed_scopes: String,
    pub default_scopes: String,
    pub allowed_grants: String,
    pub created_at: String,
    pub updated_at: String,
    pub revoked_at: Option<String>,
    /// Only in the response that created the client or rotated its secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

fn client_view(client: ClientRecord, client_secret: Option<String>) -> OAuthClient {
    OAuthClient {
        client_id: client.client_id,
        name: client.name,
        kind: client.kind,
        allowed_scopes: client.allowed_scopes,
        default_scopes: client.default_scopes,
        allowed_grants: client.allowed_grants,
        created_at: rfc3339_from_millis(client.created_at),
        updated_at: rfc3339_from_millis(client.updated_at),
        revoked_at: client.revoked_at.map(rfc3339_from_millis),
        client_secret,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClientRequest {
    /// Client id (letters, digits, `_ - . : @ |`); generated when omitted.
    pub client_id: Option<String>,
    pub name: String,
    /// `confidential` (default) or `public`.
    pub kind: Option<String>,
    /// Space-separated; default: every scope the caller holds.
    pub allowed_scopes: Option<String>,
    pub default_scopes: Option<String>,
    /// Space-separated grant types.
    pub allowed_grants: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateClientRequest {
    pub name: Option<String>,
    pub allowed_scopes: Option<String>,
    pub default_scopes: Option<String>,
    pub allowed_grants: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthClientList {
    pub clients: Vec<OAuthClient>,
}

/// Create an OAuth client; a confidential client's secret is in this response only.
#[utoipa::path(post, path = "/v1/projects/{project_id}/oauth_clients", tag = "admin",
    params(("project_id" = String, Path)), request_body = CreateClientRequest, security(("bearer" = ["admin.oauth_clients:create"])),
    responses((status = 201, body = OAuthClient), (status = 404, description = "Not the token's project", body = ErrorBody),
        (status = 409, description = "Client id taken", body = ErrorBody), BearerErrors, JsonBodyErrors))]
async fn create_client(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<ClientsCreate>,
    ApiPath(project_id): ApiPath<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<OAuthClient>)> {
    principal.administers(&project_id)?;
    let request: CreateClientRequest = deserialize_with_paths(body)?;
    let kind = match request.kind.as_deref() {
        None | Some("confidential") => ClientKind::Confidential,
        Some("public") => ClientKind::Public,
        Some(_) => return Err(vitalis_core::ValidationErrors::single("kind", "must be `confidential` or `public`").into()),
    };
    let allowed = request.allowed_scopes.clone().unwrap_or_else(|| principal.scopes.to_string());
    check_grantable(&principal, Some(&allowed))?;
    let spec = ClientSpec {
        client_id: request.client_id,
        name: request.name,
        kind,
        allowed_scopes: Some(allowed),
        default_scopes: request.default_scopes,
        allowed_grants: request.allowed_grants,
    };
    let created = admin::create_client(state.store(), &project_id, spec).await.map_err(admin_error)?;
    Ok((StatusCode::CREATED, Json(client_view(created.client, created.client_secret))))
}

/// List the project's OAuth clients.
#[utoipa::path(get, path = "/v1/projects/{project_id}/oauth_clients", tag = "admin",
    params(("project_id" = String, Path)), security(("bearer" = ["admin.oauth_clients:read"])),
    responses((status = 200, body = OAuthClientList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), BearerErrors))]
async fn list_clients(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<ClientsRead>,
    ApiPath(project_id): ApiPath<String>,
) -> ApiResult<Json<OAuthClientList>> {
    principal.administers(&project_id)?;
    let clients = state.store().list_clients(&project_id).await?;
    Ok(Json(OAuthClientList { clients: clients.into_iter().map(|c| client_view(c, None)).collect() }))
}

async fn load_client(state: &AppState, project_id: &str, client_id: &str) -> ApiResult<ClientRecord> {
    state.store().get_client(project_id, client_id).await?.ok_or(ApiError::NotFound("client"))
}

/// Get one OAuth client.
#[utoipa::path(get, path = "/v1/projects/{project_id}/oauth_clients/{client_id}", tag = "admin",
    params(("project_id" = String, Path), ("client_id" = String, Path)), security(("bearer" = ["admin.oauth_clients:read"])),
    responses((status = 200, body = OAuthClient), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), BearerErrors))]
async fn get_client(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<ClientsRead>,
    ApiPath((project_id, client_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<OAuthClient>> {
    principal.administers(&project_id)?;
    Ok(Json(client_view(load_client(&state, &project_id, &client_id).await?, None)))
}

/// Change a client's name, allowed scopes, default scopes or grants.
#[utoipa::path(patch, path = "/v1/projects/{project_id}/oauth_clients/{client_id}", tag = "admin",
    params(("project_id" = String, Path), ("client_id" = String, Path)), request_body = UpdateClientRequest, security(("bearer" = ["admin.oauth_clients:update"])),
    responses((status = 200, body = OAuthClient), (status = 404, body = ErrorBody), BearerErrors, JsonBodyErrors))]
async fn update_client(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<ClientsUpdate>,
    ApiPath((project_id, client_id)): ApiPath<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<OAuthClient>> {
    principal.administers(&project_id)?;
    let request: UpdateClientRequest = deserialize_with_paths(body)?;
    check_grantable(&principal, request.allowed_scopes.as_deref())?;
    let update = ClientUpdate {
        name: request.name,
        allowed_scopes: request.allowed_scopes,
        default_scopes: request.default_scopes,
        allowed_grants: request.allowed_grants,
    };
    let client = admin::update_client(state.store(), &project_id, &client_id, update).await.map_err(admin_error)?;
    Ok(Json(client_view(client, None)))
}

/// Replace a confidential client's secret; the new one is in this response only.
#[utoipa::path(post, path = "/v1/projects/{project_id}/oauth_clients/{client_id}/rotate_secret", tag = "admin",
    params(("project_id" = String, Path), ("client_id" = String, Path)), security(("bearer" = ["admin.oauth_clients:update"])),
    responses((status = 200, body = OAuthClient), (status = 400, body = ErrorBody), (status = 404, description = "No such live confidential client", body = ErrorBody), BearerErrors))]
async fn rotate_client_secret(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<ClientsUpdate>,
    ApiPath((project_id, client_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<OAuthClient>> {
    principal.administers(&project_id)?;
    let secret = admin::rotate_client_secret(state.store(), &project_id, &client_id).await.map_err(admin_error)?;
    Ok(Json(client_view(load_client(&state, &project_id, &client_id).await?, Some(secret))))
}

/// Revoke a client: it can no longer obtain tokens, and its outstanding tokens stop working.
#[utoipa::path(post, path = "/v1/projects/{project_id}/oauth_clients/{client_id}/revoke", tag = "admin",
    params(("project_id" = String, Path), ("client_id" = String, Path)), security(("bearer" = ["admin.oauth_clients:revoke"])),
    responses((status = 200, body = OAuthClient), (status = 400, body = ErrorBody), (status = 404, description = "No such live client", body = ErrorBody), BearerErrors))]
async fn revoke_client(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<ClientsRevoke>,
    ApiPath((project_id, client_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<OAuthClient>> {
    principal.administers(&project_id)?;
    let authority = state.authority();
    let until = authority.revocation_horizon();
    state.store().revoke_client(&project_id, &client_id, until).await.map_err(|err| match err {
        StoreError::NotFound(what) => ApiError::NotFound(what),
        other => other.into(),
    })?;
    authority.revocations().record(RevocationKind::Client, &project_id, &client_id, now_millis(), until);
    authority.revocations().reload().await.map_err(ApiError::internal)?;
    Ok(Json(client_view(load_client(&state, &project_id, &client_id).await?, None)))
}

/// A trusted upstream OIDC provider.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityProvider {
    pub id: String,
    /// The `iss` its ID tokens carry.
    pub issuer: String,
    pub jwks_url: Option<String>,
    pub discovery_url: Option<String>,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// The claim that identifies the user (default `sub`).
    pub user_id_claim: String,
    /// Prepended to the claim's value to form the user id (e.g. `google_`).
    pub user_id_prefix: String,
    /// Whether an unknown user is created on first exchange.
    pub create_users: bool,
    pub created_at: String,
    pub updated_at: String,
}

fn idp_view(idp: IdentityProviderRecord) -> IdentityProvider {
    IdentityProvider {
        id: idp.id,
        issuer: idp.issuer,
        jwks_url: idp.jwks_url,
        discovery_url: idp.discovery_url,
        audiences: idp.audiences.split(' ').filter(|a| !a.is_empty()).map(str::to_owned).collect(),
        user_id_claim: idp.user_id_claim,
        user_id_prefix: idp.user_id_prefix,
        create_users: idp.create_users,
        created_at: rfc3339_from_millis(idp.created_at),
        updated_at: rfc3339_from_millis(idp.updated_at),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityProviderRequest {
    /// Your name for it, e.g. `google` (create only; ignored on update).
    pub id: Option<String>,
    pub issuer: Option<String>,
    /// The provider's JWKS URL (or give `discovery_url`).
    pub jwks_url: Option<String>,
    /// The provider's `/.well-known/openid-configuration` URL.
    pub discovery_url: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub user_id_claim: Option<String>,
    pub user_id_prefix: Option<String>,
    pub create_users: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityProviderList {
    pub identity_providers: Vec<IdentityProvider>,
}

/// Trust an upstream OIDC provider for token exchange.
#[utoipa::path(post, path = "/v1/projects/{project_id}/identity_providers", tag = "admin",
    params(("project_id" = String, Path)), request_body = IdentityProviderRequest, security(("bearer" = ["admin.identity_providers:create"])),
    responses((status = 201, body = IdentityProvider), (status = 404, body = ErrorBody), (status = 409, description = "Id or issuer already configured", body = ErrorBody), BearerErrors, JsonBodyErrors))]
async fn create_idp(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<IdpsCreate>,
    ApiPath(project_id): ApiPath<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<IdentityProvider>)> {
    principal.administers(&project_id)?;
    let request: IdentityProviderRequest = deserialize_with_paths(body)?;
    let spec = IdentityProviderSpec {
        id: request.id.ok_or_else(|| vitalis_core::ValidationErrors::single("id", "is required"))?,
        issuer: request.issuer.ok_or_else(|| vitalis_core::ValidationErrors::single("issuer", "is required"))?,
        jwks_url: request.jwks_url,
        discovery_url: request.discovery_url,
        audiences: request.audiences.unwrap_or_default(),
        user_id_claim: request.user_id_claim,
        user_id_prefix: request.user_id_prefix,
        create_users: request.create_users.unwrap_or(false),
    };
    let record = admin::identity_provider_record(&project_id, spec).map_err(admin_error)?;
    state.store().insert_identity_provider(&record).await?;
    let saved = state.store().get_identity_provider(&project_id, &record.id).await?.ok_or(ApiError::NotFound("identity provider"))?;
    Ok((StatusCode::CREATED, Json(idp_view(saved))))
}

/// List the project's trusted identity providers.
#[utoipa::path(get, path = "/v1/projects/{project_id}/identity_providers", tag = "admin",
    params(("project_id" = String, Path)), security(("bearer" = ["admin.identity_providers:read"])),
    responses((status = 200, body = IdentityProviderList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), BearerErrors))]
async fn list_idps(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<IdpsRead>,
    ApiPath(project_id): ApiPath<String>,
) -> ApiResult<Json<IdentityProviderList>> {
    principal.administers(&project_id)?;
    let list = state.store().list_identity_providers(&project_id).await?;
    Ok(Json(IdentityProviderList { identity_providers: list.into_iter().map(idp_view).collect() }))
}

async fn load_idp(state: &AppState, project_id: &str, id: &str) -> ApiResult<IdentityProviderRecord> {
    state.store().get_identity_provider(project_id, id).await?.ok_or(ApiError::NotFound("identity provider"))
}

/// Get one identity provider.
#[utoipa::path(get, path = "/v1/projects/{project_id}/identity_providers/{idp_id}", tag = "admin",
    params(("project_id" = String, Path), ("idp_id" = String, Path)), security(("bearer" = ["admin.identity_providers:read"])),
    responses((status = 200, body = IdentityProvider), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), BearerErrors))]
async fn get_idp(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<IdpsRead>,
    ApiPath((project_id, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<IdentityProvider>> {
    principal.administers(&project_id)?;
    Ok(Json(idp_view(load_idp(&state, &project_id, &id).await?)))
}

/// Change an identity provider; absent fields keep their value.
#[utoipa::path(patch, path = "/v1/projects/{project_id}/identity_providers/{idp_id}", tag = "admin",
    params(("project_id" = String, Path), ("idp_id" = String, Path)), request_body = IdentityProviderRequest, security(("bearer" = ["admin.identity_providers:update"])),
    responses((status = 200, body = IdentityProvider), (status = 404, body = ErrorBody), (status = 409, description = "Issuer already configured", body = ErrorBody), BearerErrors, JsonBodyErrors))]
async fn update_idp(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<IdpsUpdate>,
    ApiPath((project_id, id)): ApiPath<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<IdentityProvider>> {
    principal.administers(&project_id)?;
    let request: IdentityProviderRequest = deserialize_with_paths(body)?;
    let current = load_idp(&state, &project_id, &id).await?;
    // Naming one key source replaces the other.
    let (jwks_url, discovery_url) = match (request.jwks_url, request.discovery_url) {
        (None, None) => (current.jwks_url.clone(), current.discovery_url.clone()),
        given => given,
    };
    let spec = IdentityProviderSpec {
        id: current.id.clone(),
        issuer: request.issuer.unwrap_or_else(|| current.issuer.clone()),
        jwks_url,
        discovery_url,
        audiences: request.audiences.unwrap_or_else(|| current.audiences.split(' ').map(str::to_owned).collect()),
        user_id_claim: Some(request.user_id_claim.unwrap_or_else(|| current.user_id_claim.clone())),
        user_id_prefix: Some(request.user_id_prefix.unwrap_or_else(|| current.user_id_prefix.clone())),
        create_users: request.create_users.unwrap_or(current.create_users),
    };
    let record = admin::identity_provider_record(&project_id, spec).map_err(admin_error)?;
    state.store().update_identity_provider(&record).await?;
    state.authority().upstream().forget(&current);
    Ok(Json(idp_view(load_idp(&state, &project_id, &id).await?)))
}

/// Stop trusting an identity provider (refresh tokens already issued stay valid).
#[utoipa::path(delete, path = "/v1/projects/{project_id}/identity_providers/{idp_id}", tag = "admin",
    params(("project_id" = String, Path), ("idp_id" = String, Path)), security(("bearer" = ["admin.identity_providers:revoke"])),
    responses((status = 204, description = "Removed"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), BearerErrors))]
async fn delete_idp(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<IdpsRevoke>,
    ApiPath((project_id, id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    principal.administers(&project_id)?;
    let current = load_idp(&state, &project_id, &id).await?;
    state.store().delete_identity_provider(&project_id, &id).await?;
    state.authority().upstream().forget(&current);
    Ok(StatusCode::NO_CONTENT)
}

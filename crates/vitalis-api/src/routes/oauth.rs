//! The token endpoints: `POST /v1/projects/{project_id}/auth/server` (JSON, HTTP Basic),
//! `POST /v1/projects/{project_id}/auth/sdk` (JSON, token exchange or refresh), the canonical
//! form-encoded `POST /oauth/token`, and RFC 7009 revocation and RFC 7662 introspection.
//! The JSON routes and `/oauth/token` call the same grant implementations in `vitalis-auth`
//! and answer errors in the RFC 6749 shape. Every route here is behind the brute-force
//! limits of [`crate::limits`].

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vitalis_auth::authority::{GRANT_CLIENT_CREDENTIALS, GRANT_REFRESH_TOKEN, GRANT_TOKEN_EXCHANGE};
use vitalis_auth::{Introspection, IssuedUserTokens, OAuthError};
use vitalis_core::ids::is_valid_project_id;

use crate::extract::{PeerAddr, is_json_content_type};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(server_token))
        .routes(routes!(sdk_token))
        .routes(routes!(token))
        .routes(routes!(revoke))
        .routes(routes!(introspect))
}

const TOKEN_TYPE_ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// RFC 6749 section 5.2 error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthErrorBody {
    #[schema(example = "invalid_client")]
    pub error: String,
    pub error_description: String,
}

/// Documented error answers shared by every token endpoint.
#[derive(utoipa::IntoResponses)]
pub enum OAuthErrors {
    /// `invalid_request`, `invalid_grant`, `invalid_scope`, `invalid_target`, `unsupported_grant_type` or `unauthorized_client`.
    #[response(status = 400)]
    BadRequest(OAuthErrorBody),
    /// `invalid_client`: unknown, revoked or wrong-project client, or a wrong secret (with `WWW-Authenticate: Basic`).
    #[response(status = 401)]
    InvalidClient(OAuthErrorBody),
    /// Too many failed client authentications from this address or for this client (`Retry-After`).
    #[response(status = 429)]
    RateLimited(OAuthErrorBody),
}

/// Renders an [`OAuthError`] with `Cache-Control: no-store` and, for client authentication
/// failures, a `WWW-Authenticate: Basic` challenge; or a 429 with `Retry-After`.
pub enum OAuthErrorResponse {
    Error(OAuthError),
    RateLimited(Duration),
}

impl From<OAuthError> for OAuthErrorResponse {
    fn from(err: OAuthError) -> Self {
        Self::Error(err)
    }
}

impl IntoResponse for OAuthErrorResponse {
    fn into_response(self) -> Response {
        let err = match self {
            OAuthErrorResponse::Error(err) => err,
            OAuthErrorResponse::RateLimited(wait) => {
                let seconds = wait.as_secs().max(1);
                let body = OAuthErrorBody {
                    error: "temporarily_unavailable".into(),
                    error_description: format!("too many failed attempts; retry after {seconds} seconds"),
                };
                let mut response = (StatusCode::TOO_MANY_REQUESTS, no_store_headers(), Json(body)).into_response();
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                return response;
            }
        };
        let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let body = OAuthErrorBody { error: err.code().to_owned(), error_description: err.to_string() };
        let mut response = (status, no_store_headers(), Json(body)).into_response();
        if matches!(err, OAuthError::InvalidClient(_)) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"vitalis\""));
        }
        response
    }
}

/// RFC 6749 section 5.1: token responses must not be cached.
fn no_store_headers() -> [(header::HeaderName, HeaderValue); 2] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store")), (header::PRAGMA, HeaderValue::from_static("no-cache"))]
}

type OAuthResult<T> = Result<T, OAuthErrorResponse>;

/// Body of `POST /v1/projects/{project_id}/auth/server`; may be empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ServerTokenRequest {
    /// Space-separated scopes; omitted means the client's default scopes.
    #[schema(example = "users:create users:read")]
    pub scope: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServerTokenResponse {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    #[schema(example = 900)]
    pub expires_in: u64,
}

/// Exchange confidential client credentials (HTTP Basic) for a project access token.
#[utoipa::path(post, path = "/v1/projects/{project_id}/auth/server", tag = "auth",
    params(("project_id" = String, Path, description = "The project, e.g. `proj_...`")),
    request_body(content = ServerTokenRequest, content_type = "application/json"),
    security(("basic" = [])),
    responses(
        (status = 200, description = "An access token (no refresh token)", body = ServerTokenResponse),
        OAuthErrors,
    ))]
async fn server_token(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> OAuthResult<Response> {
    let ip = client_ip(&state, &headers, peer);
    let basic = basic_credentials(&headers)?;
    let client_id = basic.as_ref().map(|(id, _)| id.clone());
    guarded(&state, ip, client_id.as_deref(), async {
        let (client_id, secret) = basic.clone().ok_or_else(OAuthError::client_authentication_failed)?;
        let request = parse_server_token_body(&headers, body)?;
        let issued = state.authority().client_credentials(&project_id, &client_id, &secret, request.scope.as_deref()).await?;
        let body = ServerTokenResponse { access_token: issued.access_token, token_type: "Bearer", expires_in: issued.expires_in };
        Ok((no_store_headers(), Json(body)).into_response())
    })
    .await
}

/// The address the request came from (`X-Forwarded-For`'s first hop when configured).
fn client_ip(state: &AppState, headers: &HeaderMap, peer: Option<IpAddr>) -> IpAddr {
    if state.http().trust_forwarded_for
        && let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return ip;
    }
    peer.unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// Runs a token-endpoint operation behind the brute-force limits: refused with 429 while
/// the address or client is blocked; a failed client authentication spends budget.
async fn guarded<T>(
    state: &AppState,
    ip: IpAddr,
    client_id: Option<&str>,
    operation: impl Future<Output = Result<T, OAuthError>>,
) -> OAuthResult<T> {
    state.limits().admit(ip, client_id).map_err(OAuthErrorResponse::RateLimited)?;
    let result = operation.await;
    if let Err(OAuthError::InvalidClient(_)) = &result {
        state.limits().record_failure(ip, client_id);
    }
    result.map_err(OAuthErrorResponse::Error)
}

/// Body of `POST /v1/projects/{project_id}/auth/sdk`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SdkTokenRequest {
    /// `exchange`: `token` is an upstream OIDC ID token; `refresh`: `token` is a Vitalis refresh token.
    pub grant: SdkGrant,
    pub token: String,
    /// The app's (usually public) client id, e.g. `sdk`.
    #[schema(example = "sdk")]
    pub client_id: String,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SdkGrant {
    Exchange,
    Refresh,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserTokenResponse {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    #[schema(example = 900)]
    pub expires_in: u64,
    /// Opaque; rotated on every use.
    pub refresh_token: String,
}

/// Exchange an upstream OIDC ID token, or rotate a refresh token, for a user access token.
#[utoipa::path(post, path = "/v1/projects/{project_id}/auth/sdk", tag = "auth",
    params(("project_id" = String, Path, description = "The project, e.g. `proj_...`")),
    request_body(content = SdkTokenRequest, content_type = "application/json"),
    security((), ("basic" = [])),
    responses(
        (status = 200, description = "A user access token and a new refresh token", body = UserTokenResponse),
        OAuthErrors,
        (status = 500, description = "`server_error`: the identity provider's keys could not be fetched", body = OAuthErrorBody),
    ))]
async fn sdk_token(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> OAuthResult<Response> {
    let ip = client_ip(&state, &headers, peer);
    let request: SdkTokenRequest = parse_json_body(&headers, body, "a JSON object with `grant`, `token` and `client_id`")?;
    guarded(&state, ip, Some(&request.client_id), async {
        // A confidential client (a backend for frontend) may use the same route with Basic.
        let secret = match basic_credentials(&headers)? {
            Some((id, _)) if id != request.client_id => {
                return Err(OAuthError::InvalidRequest("the Basic client id differs from `client_id`".into()));
            }
            Some((_, secret)) => Some(secret),
            None => None,
        };
        let authority = state.authority();
        let issued = match request.grant {
            SdkGrant::Exchange => {
                authority.token_exchange(&project_id, &request.client_id, secret.as_deref(), &request.token, None).await?
            }
            SdkGrant::Refresh => authority.refresh(Some(&project_id), &request.client_id, secret.as_deref(), &request.token, None).await?,
        };
        let body = UserTokenResponse {
            access_token: issued.access.access_token,
            token_type: "Bearer",
            expires_in: issued.access.expires_in,
            refresh_token: issued.refresh_token,
        };
        Ok((no_store_headers(), Json(body)).into_response())
    })
    .await
}

fn parse_server_token_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<ServerTokenRequest, OAuthError> {
    match body {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(ServerTokenRequest::default()),
        body => parse_json_body(headers, body, "a JSON object with an optional string `scope`"),
    }
}

fn parse_json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    expected: &str,
) -> Result<T, OAuthError> {
    let body = body.map_err(|_| OAuthError::InvalidRequest("the request body could not be read or is too large".into()))?;
    if !is_json_content_type(headers.get(header::CONTENT_TYPE)) {
        return Err(OAuthError::InvalidRequest("the body must be JSON (Content-Type: application/json)".into()));
    }
    serde_json::from_slice(&body).map_err(|err| OAuthError::InvalidRequest(format!("the body must be {expected}: {err}")))
}

/// Form parameters of `POST /oauth/token`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenRequest {
    /// `client_credentials`, `urn:ietf:params:oauth:grant-type:token-exchange` or `refresh_token`.
    #[schema(example = "client_credentials")]
    pub grant_type: String,
    /// Token exchange: the upstream OIDC ID token.
    pub subject_token: Option<String>,
    /// Token exchange: `urn:ietf:params:oauth:token-type:id_token` or `...:jwt`.
    pub subject_token_type: Option<String>,
    /// Token exchange: only `urn:ietf:params:oauth:token-type:access_token`.
    pub requested_token_type: Option<String>,
    /// Refresh: the refresh token.
    pub refresh_token: Option<String>,
    /// Space-separated scopes; omitted means the client's default scopes.
    pub scope: Option<String>,
    /// The project as `urn:vitalis:project:{project_id}` (RFC 8707).
    pub resource: Option<String>,
    /// Same as `resource`.
    pub audience: Option<String>,
    /// The project id, as an alternative to `resource`.
    pub project_id: Option<String>,
    /// For `client_secret_post` authentication, or to identify a public client.
    pub client_id: Option<String>,
    /// For `client_secret_post` authentication (instead of HTTP Basic).
    pub client_secret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    #[schema(example = 900)]
    pub expires_in: u64,
    /// The scopes granted.
    pub scope: String,
    /// Token exchange and refresh: the new refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Token exchange (RFC 8693): always `urn:ietf:params:oauth:token-type:access_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
}

/// The canonical OAuth 2.0 token endpoint (form-encoded).
#[utoipa::path(post, path = "/oauth/token", tag = "auth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    security((), ("basic" = [])),
    responses(
        (status = 200, description = "An access token (and, for user grants, a refresh token)", body = TokenResponse),
        OAuthErrors,
        (status = 500, description = "`server_error`: the identity provider's keys could not be fetched", body = OAuthErrorBody),
    ))]
async fn token(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> OAuthResult<Response> {
    let FormCall { ip, params, identity } = FormCall::parse(&state, &headers, peer, body)?;
    guarded(&state, ip, identity.as_ref().ok().map(|(id, _)| id.as_str()), async {
        let grant_type = params.get("grant_type").ok_or_else(|| OAuthError::InvalidRequest("`grant_type` is required".into()))?;
        if ![GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE, GRANT_REFRESH_TOKEN].contains(&grant_type) {
            return Err(OAuthError::UnsupportedGrantType(format!("grant_type `{grant_type}` is not supported")));
        }
        let (client_id, secret) = identity.clone()?;
        let authority = state.authority();
        let body = match grant_type {
            GRANT_CLIENT_CREDENTIALS => {
                let secret = secret.ok_or_else(OAuthError::client_authentication_failed)?;
                let project_id = resolve_project(&state, &params, &client_id).await?;
                let issued = authority.client_credentials(&project_id, &client_id, &secret, params.get("scope")).await?;
                TokenResponse {
                    access_token: issued.access_token,
                    token_type: "Bearer",
                    expires_in: issued.expires_in,
                    scope: issued.scope.to_string(),
                    refresh_token: None,
                    issued_token_type: None,
                }
            }
            GRANT_TOKEN_EXCHANGE => {
                let subject_token =
                    params.get("subject_token").ok_or_else(|| OAuthError::InvalidRequest("`subject_token` is required".into()))?;
                match params.get("subject_token_type") {
                    Some(TOKEN_TYPE_ID_TOKEN | TOKEN_TYPE_JWT) => {}
                    Some(other) => {
                        return Err(OAuthError::InvalidRequest(format!("subject_token_type `{other}` is not supported (use an ID token)")));
                    }
                    None => return Err(OAuthError::InvalidRequest("`subject_token_type` is required".into())),
                }
                if params.get("requested_token_type").is_some_and(|t| t != TOKEN_TYPE_ACCESS) {
                    return Err(OAuthError::InvalidRequest("only access tokens can be requested".into()));
                }
                if params.get("actor_token").is_some() {
                    return Err(OAuthError::InvalidRequest("delegation (actor_token) is not supported".into()));
                }
                let project_id = resolve_project(&state, &params, &client_id).await?;
                let issued =
                    authority.token_exchange(&project_id, &client_id, secret.as_deref(), subject_token, params.get("scope")).await?;
                user_token_response(issued, Some(TOKEN_TYPE_ACCESS))
            }
            _ => {
                let refresh_token =
                    params.get("refresh_token").ok_or_else(|| OAuthError::InvalidRequest("`refresh_token` is required".into()))?;
                let project_id = requested_project(&state, &params)?;
                let issued =
                    authority.refresh(project_id.as_deref(), &client_id, secret.as_deref(), refresh_token, params.get("scope")).await?;
                user_token_response(issued, None)
            }
        };
        Ok((no_store_headers(), Json(body)).into_response())
    })
    .await
}

fn user_token_response(issued: IssuedUserTokens, issued_token_type: Option<&'static str>) -> TokenResponse {
    TokenResponse {
        access_token: issued.access.access_token,
        token_type: "Bearer",
        expires_in: issued.access.expires_in,
        scope: issued.access.scope.to_string(),
        refresh_token: Some(issued.refresh_token),
        issued_token_type,
    }
}

/// The project named in the request, or else the one project the client id exists in.
async fn resolve_project(state: &AppState, params: &FormParams, client_id: &str) -> Result<String, OAuthError> {
    match requested_project(state, params)? {
        Some(project_id) => Ok(project_id),
        None => sole_project_of(state, client_id).await,
    }
}

/// Form parameters of `POST /oauth/revoke` (RFC 7009).
#[derive(Debug, Serialize, ToSchema)]
pub struct RevocationRequest {
    /// An access token or a refresh token.
    pub token: String,
    /// `access_token` or `refresh_token` (a hint; both are tried).
    pub token_type_hint: Option<String>,
    /// Public clients identify themselves; confidential ones authenticate (Basic or post).
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// The project (optional when the client id exists in one project only).
    pub resource: Option<String>,
}

/// Revoke an access token (until it expires) or a refresh token (with its whole family).
#[utoipa::path(post, path = "/oauth/revoke", tag = "auth",
    request_body(content = RevocationRequest, content_type = "application/x-www-form-urlencoded"),
    security((), ("basic" = [])),
    responses(
        (status = 200, description = "Revoked, or the token was already invalid (RFC 7009)"),
        OAuthErrors,
    ))]
async fn revoke(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> OAuthResult<Response> {
    let FormCall { ip, params, identity } = FormCall::parse(&state, &headers, peer, body)?;
    guarded(&state, ip, identity.as_ref().ok().map(|(id, _)| id.as_str()), async {
        let (client_id, secret) = identity.clone()?;
        let token = params.get("token").ok_or_else(|| OAuthError::InvalidRequest("`token` is required".into()))?;
        let project_id = resolve_project(&state, &params, &client_id).await?;
        let client = state.authority().authenticate_client(&project_id, &client_id, secret.as_deref()).await?;
        state.authority().revoke(&client, token).await?;
        Ok((StatusCode::OK, no_store_headers()).into_response())
    })
    .await
}

/// Form parameters of `POST /oauth/introspect` (RFC 7662).
#[derive(Debug, Serialize, ToSchema)]
pub struct IntrospectionRequest {
    pub token: String,
    pub token_type_hint: Option<String>,
    /// For `client_secret_post` authentication (instead of HTTP Basic).
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// The project (optional when the client id exists in one project only).
    pub resource: Option<String>,
}

/// RFC 7662 introspection response.
#[derive(Debug, Serialize, ToSchema)]
pub struct IntrospectionResponse {
    pub active: bool,
    /// `access_token` or `refresh_token`.
    pub token_type: Option<String>,
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub sub: Option<String>,
    pub exp: Option<i64>,
    pub iat: Option<i64>,
    pub nbf: Option<i64>,
    pub iss: Option<String>,
    pub aud: Option<String>,
    pub jti: Option<String>,
    pub project_id: Option<String>,
    /// `client` or `user`.
    pub principal_type: Option<String>,
    pub user_id: Option<String>,
}

/// Whether a token is active, for confidential clients of the token's project.
#[utoipa::path(post, path = "/oauth/introspect", tag = "auth",
    request_body(content = IntrospectionRequest, content_type = "application/x-www-form-urlencoded"),
    security(("basic" = [])),
    responses(
        (status = 200, description = "`{\"active\": false}` for unknown, expired, revoked or other-project tokens", body = IntrospectionResponse),
        OAuthErrors,
    ))]
async fn introspect(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> OAuthResult<Response> {
    let FormCall { ip, params, identity } = FormCall::parse(&state, &headers, peer, body)?;
    guarded(&state, ip, identity.as_ref().ok().map(|(id, _)| id.as_str()), async {
        let (client_id, secret) = identity.clone()?;
        let secret = secret.ok_or_else(OAuthError::client_authentication_failed)?;
        let token = params.get("token").ok_or_else(|| OAuthError::InvalidRequest("`token` is required".into()))?;
        let project_id = resolve_project(&state, &params, &client_id).await?;
        let client = state.authority().authenticate_client(&project_id, &client_id, Some(&secret)).await?;
        if !client.is_confidential() {
            return Err(OAuthError::client_authentication_failed());
        }
        let result: Introspection = state.authority().introspect(&project_id, token).await?;
        Ok((no_store_headers(), Json(result)).into_response())
    })
    .await
}

/// Who the client says it is: HTTP Basic, `client_id` + `client_secret` in the body, or a
/// public client's bare `client_id`. Two methods at once is `invalid_request`.
fn client_identity(headers: &HeaderMap, params: &FormParams) -> Result<(String, Option<String>), OAuthError> {
    let basic = basic_credentials(headers)?;
    match (basic, params.get("client_id"), params.get("client_secret")) {
        (Some(_), _, Some(_)) => {
            Err(OAuthError::InvalidRequest("use one client authentication method, not HTTP Basic and client_secret together".into()))
        }
        (Some((id, _)), Some(body_id), None) if id != body_id => {
            Err(OAuthError::InvalidRequest("the Basic client id differs from `client_id`".into()))
        }
        (Some((id, secret)), _, None) => Ok((id, Some(secret))),
        (None, Some(id), secret) => Ok((id.to_owned(), secret.map(str::to_owned))),
        (None, None, _) => Err(OAuthError::client_authentication_failed()),
    }
}

/// A form-encoded token-endpoint request: where it came from, its parameters, and the
/// client it names (or why it names none).
struct FormCall {
    ip: IpAddr,
    params: FormParams,
    identity: Result<(String, Option<String>), OAuthError>,
}

impl FormCall {
    fn parse(state: &AppState, headers: &HeaderMap, peer: Option<IpAddr>, body: Result<Bytes, BytesRejection>) -> Result<Self, OAuthError> {
        let params = FormParams::parse(headers, body)?;
        let identity = client_identity(headers, &params);
        Ok(Self { ip: client_ip(state, headers, peer), params, identity })
    }
}

/// Form parameters with RFC 6749's rule that none may repeat.
struct FormParams(Vec<(String, String)>);

impl FormParams {
    fn parse(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Self, OAuthError> {
        let media = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        if media.as_deref() != Some("application/x-www-form-urlencoded") {
            return Err(OAuthError::InvalidRequest("the body must be application/x-www-form-urlencoded".into()));
        }
        let body = body.map_err(|_| OAuthError::InvalidRequest("the request body could not be read or is too large".into()))?;
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&body).map_err(|_| OAuthError::InvalidRequest("the body is not valid form encoding".into()))?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(earlier, _)| earlier == name) {
                return Err(OAuthError::InvalidRequest(format!("parameter `{name}` is repeated")));
            }
        }
        Ok(Self(pairs))
    }

    /// A parameter's value; empty values count as absent (RFC 6749 section 3.1).
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }
}

/// The project named by `resource`, `audience` or `project_id`; they must agree.
fn requested_project(state: &AppState, params: &FormParams) -> Result<Option<String>, OAuthError> {
    let mut found: Option<String> = None;
    for name in ["resource", "audience"] {
        if let Some(value) = params.get(name) {
            let project = state.authority().project_from_audience(value).ok_or_else(|| {
                OAuthError::InvalidTarget(format!("`{name}` must be {}{{project_id}}", state.authority().config().audience_prefix))
            })?;
            agree(&mut found, project)?;
        }
    }
    if let Some(project) = params.get("project_id") {
        if !is_valid_project_id(project) {
            return Err(OAuthError::InvalidTarget("`project_id` is not a project id".into()));
        }
        agree(&mut found, project)?;
    }
    Ok(found)
}

fn agree(found: &mut Option<String>, project: &str) -> Result<(), OAuthError> {
    match found {
        Some(existing) if existing != project => {
            Err(OAuthError::InvalidTarget("`resource`, `audience` and `project_id` name different projects".into()))
        }
        _ => {
            *found = Some(project.to_owned());
            Ok(())
        }
    }
}

/// Without a project parameter, a client id that exists in exactly one project names it.
async fn sole_project_of(state: &AppState, client_id: &str) -> Result<String, OAuthError> {
    let projects = state.store().projects_with_client(client_id).await.map_err(|err| {
        tracing::error!(error = %err, "client lookup failed");
        OAuthError::ServerError("the authorization server failed to process the request".into())
    })?;
    match projects.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(OAuthError::client_authentication_failed()),
        _ => Err(OAuthError::InvalidRequest("this client id exists in several projects: name one with `resource`".into())),
    }
}

/// HTTP Basic credentials, form-url-decoded as RFC 6749 section 2.3.1 requires.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || OAuthError::InvalidRequest("the Authorization header is not valid HTTP Basic".into());
    let value = value.to_str().map_err(|_| malformed())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(malformed());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::client_authentication_failed());
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let unescape =
        |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8().map(|c| c.into_owned()).map_err(|_| malformed());
    let (id, secret) = (unescape(id)?, unescape(secret)?);
    if id.is_empty() {
        return Err(malformed());
    }
    Ok(Some((id, secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn basic_credentials_are_decoded() {
        let headers = headers_with(header::AUTHORIZATION, &format!("Basic {}", STANDARD.encode("server:s%3Acret")));
        assert_eq!(basic_credentials(&headers).unwrap(), Some(("server".into(), "s:cret".into())));
        assert!(basic_credentials(&headers_with(header::AUTHORIZATION, "Basic !!!")).is_err());
        assert!(basic_credentials(&HeaderMap::new()).unwrap().is_none());
    }

    #[test]
    fn repeated_form_parameters_are_refused() {
        let headers = headers_with(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        let err = FormParams::parse(&headers, Ok(Bytes::from_static(b"grant_type=a&grant_type=b"))).err().unwrap();
        assert_eq!(err.code(), "invalid_request");
        let ok = FormParams::parse(&headers, Ok(Bytes::from_static(b"grant_type=client_credentials&scope="))).unwrap();
        assert_eq!(ok.get("grant_type"), Some("client_credentials"));
        assert_eq!(ok.get("scope"), None);
    }
}

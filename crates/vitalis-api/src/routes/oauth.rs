//! The token endpoints: `POST /v1/projects/{project_id}/auth/server` (JSON, HTTP Basic) and
//! the canonical form-encoded `POST /oauth/token`. Both call the same grant implementation
//! in `vitalis-auth` and answer errors in the RFC 6749 shape.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vitalis_auth::OAuthError;
use vitalis_auth::authority::GRANT_CLIENT_CREDENTIALS;
use vitalis_core::ids::is_valid_project_id;

use crate::extract::is_json_content_type;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(server_token)).routes(routes!(token))
}

/// RFC 6749 section 5.2 error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthErrorBody {
    #[schema(example = "invalid_client")]
    pub error: String,
    pub error_description: String,
}

/// Renders an [`OAuthError`] with `Cache-Control: no-store` and, for client authentication
/// failures, a `WWW-Authenticate: Basic` challenge.
pub struct OAuthErrorResponse(pub OAuthError);

impl From<OAuthError> for OAuthErrorResponse {
    fn from(err: OAuthError) -> Self {
        Self(err)
    }
}

impl IntoResponse for OAuthErrorResponse {
    fn into_response(self) -> Response {
        let err = self.0;
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
        (status = 400, description = "`invalid_request`, `invalid_scope` or `unauthorized_client`", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`: unknown, revoked or wrong-project client, or wrong secret", body = OAuthErrorBody),
    ))]
async fn server_token(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> OAuthResult<Response> {
    let (client_id, secret) = basic_credentials(&headers)?.ok_or_else(OAuthError::client_authentication_failed)?;
    let request = parse_server_token_body(&headers, body)?;
    let issued = state.authority().client_credentials(&project_id, &client_id, &secret, request.scope.as_deref()).await?;
    let body = ServerTokenResponse { access_token: issued.access_token, token_type: "Bearer", expires_in: issued.expires_in };
    Ok((no_store_headers(), Json(body)).into_response())
}

fn parse_server_token_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<ServerTokenRequest, OAuthError> {
    let body = body.map_err(|_| OAuthError::InvalidRequest("the request body could not be read or is too large".into()))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ServerTokenRequest::default());
    }
    if !is_json_content_type(headers.get(header::CONTENT_TYPE)) {
        return Err(OAuthError::InvalidRequest("the body must be JSON (Content-Type: application/json)".into()));
    }
    serde_json::from_slice(&body)
        .map_err(|err| OAuthError::InvalidRequest(format!("the body must be a JSON object with an optional string `scope`: {err}")))
}

/// Form parameters of `POST /oauth/token`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenRequest {
    /// `client_credentials`.
    #[schema(example = "client_credentials")]
    pub grant_type: String,
    /// Space-separated scopes; omitted means the client's default scopes.
    pub scope: Option<String>,
    /// The project as `urn:vitalis:project:{project_id}` (RFC 8707).
    pub resource: Option<String>,
    /// Same as `resource`.
    pub audience: Option<String>,
    /// The project id, as an alternative to `resource`.
    pub project_id: Option<String>,
    /// For `client_secret_post` authentication (instead of HTTP Basic).
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
}

/// The canonical OAuth 2.0 token endpoint (form-encoded).
#[utoipa::path(post, path = "/oauth/token", tag = "auth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    security((), ("basic" = [])),
    responses(
        (status = 200, description = "An access token", body = TokenResponse),
        (status = 400, description = "`invalid_request`, `unsupported_grant_type`, `invalid_scope`, `invalid_target` or `unauthorized_client`", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`", body = OAuthErrorBody),
    ))]
async fn token(State(state): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> OAuthResult<Response> {
    let params = FormParams::parse(&headers, body)?;
    let grant_type = params.get("grant_type").ok_or_else(|| OAuthError::InvalidRequest("`grant_type` is required".into()))?;
    match grant_type {
        GRANT_CLIENT_CREDENTIALS => {
            let (client_id, secret) = client_authentication(&headers, &params)?;
            let project_id = match requested_project(&state, &params)? {
                Some(project_id) => project_id,
                None => sole_project_of(&state, &client_id).await?,
            };
            let issued = state.authority().client_credentials(&project_id, &client_id, &secret, params.get("scope")).await?;
            let body = TokenResponse {
                access_token: issued.access_token,
                token_type: "Bearer",
                expires_in: issued.expires_in,
                scope: issued.scope.to_string(),
            };
            Ok((no_store_headers(), Json(body)).into_response())
        }
        other => Err(OAuthError::UnsupportedGrantType(format!("grant_type `{other}` is not supported")).into()),
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

/// `client_secret_basic` or `client_secret_post`, never both (RFC 6749 section 2.3).
fn client_authentication(headers: &HeaderMap, params: &FormParams) -> Result<(String, String), OAuthError> {
    let basic = basic_credentials(headers)?;
    let post = match (params.get("client_id"), params.get("client_secret")) {
        (Some(id), Some(secret)) => Some((id.to_owned(), secret.to_owned())),
        _ => None,
    };
    match (basic, post) {
        (Some(_), Some(_)) => {
            Err(OAuthError::InvalidRequest("use one client authentication method, not HTTP Basic and client_secret together".into()))
        }
        (Some(credentials), None) | (None, Some(credentials)) => Ok(credentials),
        (None, None) => Err(OAuthError::client_authentication_failed()),
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

//! `GET /.well-known/jwks.json` and RFC 8414 metadata (also served as
//! `/.well-known/openid-configuration` for clients that only look there).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vitalis_core::scope::KNOWN_SCOPES;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(jwks)).routes(routes!(authorization_server_metadata)).routes(routes!(openid_configuration))
}

/// A JSON Web Key Set (RFC 7517).
#[derive(Serialize, ToSchema)]
pub struct JwksDocument {
    /// Public keys; `kid` matches the access token header.
    #[schema(value_type = Vec<Object>)]
    pub keys: serde_json::Value,
}

/// The public keys that verify access tokens, including recently rotated ones.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery",
    responses((status = 200, description = "JWK Set", body = JwksDocument)))]
async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    let set = state.authority().keys().jwks();
    // Short cache: a rotation must reach verifiers well before old tokens expire.
    ([(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"))], Json(set.as_ref().clone()))
}

/// RFC 8414 authorization server metadata.
#[derive(Serialize, ToSchema)]
pub struct ServerMetadata {
    pub issuer: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub revocation_endpoint: String,
    pub introspection_endpoint: String,
    pub grant_types_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub response_types_supported: Vec<&'static str>,
    pub scopes_supported: Vec<&'static str>,
    pub service_documentation: String,
    /// Format of the `resource`/`audience` parameter and of the `aud` claim.
    pub vitalis_audience_format: String,
}

fn metadata(state: &AppState) -> ServerMetadata {
    let config = state.authority().config();
    let base = config.issuer.trim_end_matches('/');
    ServerMetadata {
        issuer: config.issuer.clone(),
        token_endpoint: format!("{base}/oauth/token"),
        jwks_uri: format!("{base}/.well-known/jwks.json"),
        revocation_endpoint: format!("{base}/oauth/revoke"),
        introspection_endpoint: format!("{base}/oauth/introspect"),
        grant_types_supported: vec!["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange", "refresh_token"],
        token_endpoint_auth_methods_supported: vec!["client_secret_basic", "client_secret_post", "none"],
        response_types_supported: vec![],
        scopes_supported: KNOWN_SCOPES.to_vec(),
        service_documentation: format!("{base}/docs"),
        vitalis_audience_format: format!("{}{{project_id}}", config.audience_prefix),
    }
}

/// Authorization server metadata (RFC 8414).
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery",
    responses((status = 200, description = "Metadata", body = ServerMetadata)))]
async fn authorization_server_metadata(State(state): State<AppState>) -> Json<ServerMetadata> {
    Json(metadata(&state))
}

/// The same metadata under the OpenID discovery path.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "discovery",
    responses((status = 200, description = "Metadata", body = ServerMetadata)))]
async fn openid_configuration(State(state): State<AppState>) -> Json<ServerMetadata> {
    Json(metadata(&state))
}

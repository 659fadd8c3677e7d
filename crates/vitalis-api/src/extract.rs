//! Extractors that turn every malformed request into the JSON error shape, and the bearer
//! principal with the required scope in its type: `Authorized<UsersRead>` documents and
//! enforces a route's requirement in its signature.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;
use vitalis_auth::{AccessClaims, PrincipalType};
use vitalis_core::scope::{self, ScopeSet};

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body, parsed but not yet interpreted (domain functions validate it with field
/// paths). Requires `application/json` or a `+json` media type.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType("the body must be JSON (Content-Type: application/json)".into()));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_rejection)?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|err| ApiError::BadRequest { code: "malformed_json", message: format!("the body is not valid JSON: {err}") })?;
        Ok(JsonBody(value))
    }
}

pub fn is_json_content_type(value: Option<&header::HeaderValue>) -> bool {
    let Some(media) = value.and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()) else {
        return false;
    };
    let media = media.trim().to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

pub fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::BadRequest { code: "unreadable_body", message: "the request body could not be read".into() }
    }
}

/// The TCP peer's address, when the server was started with connect info.
pub struct PeerAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())))
    }
}

/// Query string parameters; a parse failure is a 400 in the JSON shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|err: QueryRejection| ApiError::BadRequest { code: "invalid_query", message: err.body_text() })
    }
}

/// Path parameters; a parse failure is a 400 in the JSON shape.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|err: PathRejection| ApiError::BadRequest { code: "invalid_path", message: err.body_text() })
    }
}

/// The verified caller of a resource route. Verification is local (signature and claims),
/// with no database access.
#[derive(Debug, Clone)]
pub struct Principal {
    pub claims: Arc<AccessClaims>,
    pub scopes: ScopeSet,
    /// Set when a server token carried a valid `x-jwt` assertion: the user it acts as.
    pub acting_user: Option<String>,
}

impl Principal {
    /// The tenant every query of this request is confined to.
    pub fn project_id(&self) -> &str {
        &self.claims.project_id
    }

    /// For a user principal, the only user it may reach; `None` for clients (whole project).
    pub fn own_user_id(&self) -> Option<&str> {
        match self.claims.principal_type {
            PrincipalType::User => self.claims.user_id.as_deref(),
            PrincipalType::Client => self.acting_user.as_deref(),
        }
    }

    /// Project administration is confined to the token's own project (and never to a user
    /// acting for itself): other projects do not exist for it.
    pub fn administers(&self, project_id: &str) -> Result<(), ApiError> {
        if self.project_id() == project_id && self.own_user_id().is_none() { Ok(()) } else { Err(ApiError::NotFound("project")) }
    }

    /// Whether this principal may touch `user_id`'s data.
    pub fn may_access_user(&self, user_id: &str) -> bool {
        self.own_user_id().is_none_or(|own| own == user_id)
    }
}

/// Extracts the `Bearer` credential (scheme case-insensitive, RFC 7235).
fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("a bearer token is required (Authorization: Bearer <access_token>)".into()))?;
    let value = value.to_str().map_err(|_| ApiError::Unauthorized("the Authorization header is malformed".into()))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(token.trim()),
        _ => Err(ApiError::Unauthorized("the Authorization header must use the Bearer scheme".into())),
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?;
        let claims = state.authority().verify(token).await.map_err(|err| {
            tracing::debug!(reason = %err, "bearer token refused");
            ApiError::Unauthorized(err.to_string())
        })?;
        let scopes = ScopeSet::parse(&claims.scope).map_err(|_| ApiError::Unauthorized("the token's scope claim is malformed".into()))?;
        let Some(assertion) = parts.headers.get("x-jwt") else { return Ok(Principal { claims, scopes, acting_user: None }) };
        // A server token plus a per-user assertion acts as that user, with the token's
        // scopes narrowed to what a user may do with its own data.
        if claims.principal_type != PrincipalType::Client {
            return Err(ApiError::Unauthorized("x-jwt can only accompany a server (client) token".into()));
        }
        let assertion = assertion.to_str().map_err(|_| ApiError::Unauthorized("the x-jwt header is malformed".into()))?;
        let authority = state.authority();
        let user_id = vitalis_auth::assertions::verify_assertion(
            state.store(),
            authority.master(),
            &authority.config().assertions,
            &claims.project_id,
            assertion,
        )
        .await
        .map_err(|err| ApiError::Unauthorized(err.to_string()))?;
        let scopes = scopes.intersection(&ScopeSet::user_grantable());
        Ok(Principal { claims, scopes, acting_user: Some(user_id) })
    }
}

/// A scope a route requires, as a type.
pub trait RequiredScope {
    const SCOPE: &'static str;
}

macro_rules! required_scopes {
    ($($name:ident => $scope:expr),* $(,)?) => {$(
        #[doc = concat!("Requires `", stringify!($scope), "`.")]
        pub struct $name;
        impl RequiredScope for $name {
            const SCOPE: &'static str = $scope;
        }
    )*};
}

required_scopes! {
    UsersRead => scope::USERS_READ,
    UsersCreate => scope::USERS_CREATE,
    UsersUpdate => scope::USERS_UPDATE,
    UsersDelete => scope::USERS_DELETE,
    UserKeysRead => scope::USER_KEYS_READ,
    UserKeysCreate => scope::USER_KEYS_CREATE,
    UserKeysRevoke => scope::USER_KEYS_REVOKE,
    ClientsRead => scope::CLIENTS_READ,
    ClientsCreate => scope::CLIENTS_CREATE,
    ClientsUpdate => scope::CLIENTS_UPDATE,
    ClientsRevoke => scope::CLIENTS_REVOKE,
    IdpsRead => scope::IDPS_READ,
    IdpsCreate => scope::IDPS_CREATE,
    IdpsUpdate => scope::IDPS_UPDATE,
    IdpsRevoke => scope::IDPS_REVOKE,
    WebhooksRead => scope::WEBHOOKS_READ,
    WebhooksWrite => scope::WEBHOOKS_WRITE,
}

/// A principal holding scope `S`; 403 `insufficient_scope` otherwise.
pub struct Authorized<S>(pub Principal, pub PhantomData<S>);

impl<S: RequiredScope + Send + Sync> FromRequestParts<AppState> for Authorized<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if !principal.scopes.contains(S::SCOPE) {
            return Err(ApiError::InsufficientScope(S::SCOPE));
        }
        Ok(Authorized(principal, PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn json_media_types() {
        let ok = |v: &'static str| is_json_content_type(Some(&HeaderValue::from_static(v)));
        assert!(ok("application/json"));
        assert!(ok("application/json; charset=utf-8"));
        assert!(ok("application/merge-patch+json"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/x-www-form-urlencoded"));
        assert!(!is_json_content_type(None));
    }
}

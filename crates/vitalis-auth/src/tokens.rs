//! Access-token claims and the reasons a bearer token is refused.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalType {
    /// A confidential client acting for itself (client credentials).
    Client,
    /// An end user of a customer app.
    User,
}

/// Exactly the documented claims: `iss aud exp iat nbf jti project_id sub principal_type
/// scope`, plus `user_id` when `principal_type` is `user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub project_id: String,
    pub sub: String,
    pub principal_type: PrincipalType,
    /// Space-separated scopes.
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// Why a bearer token was refused. The HTTP layer answers 401 `invalid_token` for all of
/// them; the variant is logged and put in the description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    UnsupportedAlgorithm,
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    #[error("the token is not meant for this project")]
    WrongAudience,
    #[error("the token's claims are invalid")]
    BadClaims,
    #[error("the token has been revoked")]
    Revoked,
}

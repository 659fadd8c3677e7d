//! RFC 6749 section 5.2 errors, the only error shape the token endpoints speak.

/// An OAuth error: a registered `error` code and a human description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(String),
    /// Client authentication failed. Always answered with 401 and `WWW-Authenticate`.
    #[error("{0}")]
    InvalidClient(String),
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    UnauthorizedClient(String),
    #[error("{0}")]
    UnsupportedGrantType(String),
    #[error("{0}")]
    InvalidScope(String),
    /// RFC 8707: the requested resource (project) is malformed.
    #[error("{0}")]
    InvalidTarget(String),
    /// An internal failure; the description is generic, the cause is logged.
    #[error("{0}")]
    ServerError(String),
}

impl OAuthError {
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient(_) => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType(_) => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::InvalidTarget(_) => "invalid_target",
            OAuthError::ServerError(_) => "server_error",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            OAuthError::InvalidClient(_) => 401,
            OAuthError::ServerError(_) => 500,
            _ => 400,
        }
    }

    /// The one description given for every client-authentication failure, so responses do
    /// not reveal whether a client id exists, is revoked, or belongs to another project.
    pub fn client_authentication_failed() -> Self {
        OAuthError::InvalidClient("client authentication failed".to_owned())
    }
}

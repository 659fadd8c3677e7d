//! The shared application state: a cheap-to-clone handle on the store, the authorization
//! server and HTTP settings, built once by the binary (or a test) and handed to the router.

use std::sync::Arc;
use std::time::Duration;

use vitalis_auth::Authority;
use vitalis_store::Store;

use vitalis_webhooks::ssrf::TargetPolicy;

use crate::limits::{LimitSettings, TokenEndpointLimits};

/// HTTP-level settings taken from the configuration.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Origins allowed to call the API from a browser; empty disables CORS.
    pub cors_allowed_origins: Vec<String>,
    pub request_timeout: Duration,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    pub limits: LimitSettings,
    /// Which webhook URLs administrators may configure.
    pub webhook_targets: TargetPolicy,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            cors_allowed_origins: Vec::new(),
            request_timeout: Duration::from_secs(30),
            body_limit: 1024 * 1024,
            trust_forwarded_for: false,
            limits: LimitSettings::default(),
            webhook_targets: TargetPolicy::default(),
        }
    }
}

struct Inner {
    store: Store,
    authority: Arc<Authority>,
    http: HttpSettings,
    limits: TokenEndpointLimits,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(store: Store, authority: Arc<Authority>, http: HttpSettings) -> Self {
        let limits = TokenEndpointLimits::new(http.limits);
        Self(Arc::new(Inner { store, authority, http, limits }))
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn authority(&self) -> &Authority {
        &self.0.authority
    }

    pub fn http(&self) -> &HttpSettings {
        &self.0.http
    }

    pub fn limits(&self) -> &TokenEndpointLimits {
        &self.0.limits
    }
}

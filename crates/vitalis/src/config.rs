//! Configuration: built-in defaults, then an optional TOML file, then `VITALIS_*`
//! environment variables, then command-line flags. Validated once at startup.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Every setting, with defaults that work out of the box on one machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Where the embedded database and the dev master key live.
    pub data_dir: PathBuf,
    /// `sqlite:...` or `postgres://...`; default: `sqlite://{data_dir}/vitalis.db`.
    pub database_url: Option<String>,
    /// Public base URL; the token issuer (`iss`). Default: `http://{listen}`.
    pub public_url: Option<String>,
    /// `aud` of tokens is this prefix plus the project id.
    pub audience_prefix: String,
    /// Base64 of 32 bytes; encrypts signing keys at rest. Required outside dev mode
    /// (or a key file `master.key` in the data directory).
    pub master_key: Option<String>,
    /// Development mode: generates a master key and a demo tenant on first start.
    pub dev: bool,
    pub access_token_ttl_secs: u64,
    pub token_leeway_secs: u64,
    /// Browser origins allowed by CORS, e.g. `["https://app.example.com"]`.
    pub cors_allowed_origins: Vec<String>,
    pub db_max_connections: u32,
    pub request_timeout_secs: u64,
    pub body_limit_bytes: usize,
    /// How often each node re-reads signing keys (picks up rotations made elsewhere).
    pub key_reload_secs: u64,
    /// A refresh token unused this long expires (each rotation restarts the clock).
    pub refresh_token_idle_ttl_secs: u64,
    /// A login (refresh-token family) ends this long after the exchange.
    pub refresh_token_absolute_ttl_secs: u64,
    /// Replaying the previous refresh token within this many seconds is refused without
    /// revoking the family (a client retry racing its own rotation); at most 10.
    pub refresh_token_reuse_grace_secs: u64,
    /// How often upstream identity providers' JWKS are re-fetched in the background.
    pub idp_jwks_refresh_secs: u64,
    /// An unknown upstream `kid` triggers a re-fetch at most this often.
    pub idp_jwks_min_refetch_secs: u64,
    /// How often each node re-reads revocations made by other nodes.
    pub revocation_reload_secs: u64,
    /// `iss` and `aud` that `x-jwt` assertions must carry.
    pub assertion_issuer: String,
    pub assertion_audience: String,
    /// The longest `exp - iat` accepted for an `x-jwt` assertion.
    pub assertion_max_lifetime_secs: u64,
    /// Failed client authentications per minute allowed per address and per client before
    /// the token endpoints answer 429 (0 disables).
    pub auth_failures_per_minute: u32,
    /// Token endpoint requests per second per address / per client (0: unlimited).
    pub token_requests_per_second_per_ip: u32,
    pub token_requests_per_second_per_client: u32,
    /// Take client addresses from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Run the webhook dispatcher in this process (turn off for API-only nodes).
    pub webhook_dispatcher: bool,
    /// How often the dispatcher looks for work it was not woken for (other nodes' events, retries).
    pub webhook_poll_interval_ms: u64,
    /// After a wake-up, how long to wait so events committed together share deliveries.
    pub webhook_batch_window_ms: u64,
    /// Pauses between delivery attempts, in milliseconds; its length is the number of retries.
    pub webhook_retry_schedule_ms: Vec<u64>,
    pub webhook_request_timeout_secs: u64,
    /// How long a claimed delivery stays reserved for one node.
    pub webhook_lease_secs: u64,
    pub webhook_max_in_flight: usize,
    /// An endpoint whose deliveries keep failing this long is disabled.
    pub webhook_disable_after_secs: u64,
    /// Allow webhook targets on private, loopback or link-local addresses.
    pub webhook_allow_private_targets: bool,
    /// `text` or `json`.
    pub log_format: String,
    /// A tracing filter such as `info` or `vitalis=debug,info`.
    pub log_level: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("data"),
            database_url: None,
            public_url: None,
            audience_prefix: "urn:vitalis:project:".into(),
            master_key: None,
            dev: false,
            access_token_ttl_secs: 900,
            token_leeway_secs: 30,
            cors_allowed_origins: Vec::new(),
            db_max_connections: 16,
            request_timeout_secs: 30,
            body_limit_bytes: 1024 * 1024,
            key_reload_secs: 60,
            refresh_token_idle_ttl_secs: 30 * 86_400,
            refresh_token_absolute_ttl_secs: 90 * 86_400,
            refresh_token_reuse_grace_secs: 2,
            idp_jwks_refresh_secs: 300,
            idp_jwks_min_refetch_secs: 30,
            revocation_reload_secs: 2,
            assertion_issuer: "vitalis".into(),
            assertion_audience: "vitalis".into(),
            assertion_max_lifetime_secs: 3600,
            auth_failures_per_minute: 20,
            token_requests_per_second_per_ip: 0,
            token_requests_per_second_per_client: 0,
            trust_forwarded_for: false,
            webhook_dispatcher: true,
            webhook_poll_interval_ms: 250,
            webhook_batch_window_ms: 5,
            webhook_retry_schedule_ms: vitalis_webhooks::retry::default_schedule().iter().map(|d| d.as_millis() as u64).collect(),
            webhook_request_timeout_secs: 10,
            webhook_lease_secs: 60,
            webhook_max_in_flight: 256,
            webhook_disable_after_secs: 5 * 86_400,
            webhook_allow_private_targets: false,
            log_format: "text".into(),
            log_level: "info".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Defaults, then `file` (or `vitalis.toml` if present), then `VITALIS_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.exists() => {
                return Err(ConfigError(format!("config file {} does not exist", path.display())));
            }
            Some(path) => figment = figment.merge(Toml::file(path)),
            None => figment = figment.merge(Toml::file("vitalis.toml")),
        }
        let config: Config = figment.merge(Env::prefixed("VITALIS_")).extract().map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that would otherwise fail later, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError(format!("listen: `{}` is not an address like 127.0.0.1:8080", self.listen)));
        }
        if !(60..=86_400).contains(&self.access_token_ttl_secs) {
            return Err(ConfigError("access_token_ttl_secs: must be between 60 and 86400".into()));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError("log_format: must be `text` or `json`".into()));
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError("database_url: must start with sqlite: or postgres://".into()));
        }
        if self.refresh_token_reuse_grace_secs > 10 {
            return Err(ConfigError("refresh_token_reuse_grace_secs: must be at most 10".into()));
        }
        if self.refresh_token_idle_ttl_secs == 0
            || self.refresh_token_absolute_ttl_secs < self.refresh_token_idle_ttl_secs.min(self.refresh_token_absolute_ttl_secs)
            || self.refresh_token_absolute_ttl_secs == 0
        {
            return Err(ConfigError("refresh_token_idle_ttl_secs and refresh_token_absolute_ttl_secs: must be positive".into()));
        }
        if self.assertion_max_lifetime_secs == 0 || self.assertion_max_lifetime_secs > 86_400 {
            return Err(ConfigError("assertion_max_lifetime_secs: must be between 1 and 86400".into()));
        }
        if self.idp_jwks_refresh_secs == 0 || self.revocation_reload_secs == 0 || self.key_reload_secs == 0 {
            return Err(ConfigError("idp_jwks_refresh_secs, revocation_reload_secs and key_reload_secs: must be positive".into()));
        }
        if self.webhook_poll_interval_ms == 0 || self.webhook_max_in_flight == 0 || self.webhook_request_timeout_secs == 0 {
            return Err(ConfigError(
                "webhook_poll_interval_ms, webhook_max_in_flight and webhook_request_timeout_secs: must be positive".into(),
            ));
        }
        if self.webhook_lease_secs <= self.webhook_request_timeout_secs {
            return Err(ConfigError("webhook_lease_secs: must exceed webhook_request_timeout_secs".into()));
        }
        if self.body_limit_bytes < 1024 {
            return Err(ConfigError("body_limit_bytes: must be at least 1024".into()));
        }
        Ok(())
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("vitalis.db").display()))
    }

    pub fn uses_embedded_database(&self) -> bool {
        self.database_url().starts_with("sqlite:")
    }

    pub fn issuer(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.listen)).trim_end_matches('/').to_owned()
    }

    pub fn master_key_file(&self) -> PathBuf {
        self.data_dir.join("master.key")
    }

    pub fn webhook_targets(&self) -> vitalis_webhooks::ssrf::TargetPolicy {
        vitalis_webhooks::ssrf::TargetPolicy { allow_private: self.webhook_allow_private_targets, dev: self.dev }
    }

    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_embedded() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(config.database_url(), "sqlite://data/vitalis.db");
        assert_eq!(config.issuer(), "http://127.0.0.1:8080");
    }

    #[test]
    fn bad_values_name_their_key() {
        let config = Config { listen: "nowhere".into(), ..Config::default() };
        assert!(config.validate().unwrap_err().0.starts_with("listen"));
        let config = Config { database_url: Some("mysql://x".into()), ..Config::default() };
        assert!(config.validate().unwrap_err().0.starts_with("database_url"));
    }
}

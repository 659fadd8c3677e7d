//! Upstream identity providers: verifying a customer's OIDC ID token locally against the
//! provider's published keys. JWKS documents are cached per URL and refreshed in the
//! background; an unknown `kid` triggers one re-fetch (rate-limited), so the exchange hot
//! path makes no outbound call.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use vitalis_core::ids::is_valid_external_id;
use vitalis_core::timefmt::now_secs;
use vitalis_store::{IdentityProviderRecord, Store};

use crate::error::OAuthError;

/// Upstream algorithms we accept (as the provider publishes them); never `none` or HS*.
const ACCEPTED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("fetching {url} failed: {reason}")]
    Http { url: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

struct CachedJwks {
    keys: HashMap<String, (DecodingKey, Vec<Algorithm>)>,
    fetched_at: Instant,
}

/// Caches provider key sets by URL.
pub struct UpstreamKeys {
    http: reqwest::Client,
    jwks: RwLock<HashMap<String, Arc<CachedJwks>>>,
    /// discovery URL -> `jwks_uri` it names.
    discovered: RwLock<HashMap<String, String>>,
    min_refetch: Duration,
    leeway: Duration,
}

/// A verified upstream identity.
#[derive(Debug, Clone)]
pub struct UpstreamIdentity {
    pub provider: IdentityProviderRecord,
    pub user_id: String,
    pub claims: Map<String, Value>,
}

fn invalid(message: impl Into<String>) -> OAuthError {
    OAuthError::InvalidRequest(message.into())
}

impl UpstreamKeys {
    pub fn new(min_refetch: Duration, leeway: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("vitalis")
            .build()
            .expect("the HTTP client builds");
        Self { http, jwks: RwLock::new(HashMap::new()), discovered: RwLock::new(HashMap::new()), min_refetch, leeway }
    }

    async fn get_json(&self, url: &str) -> Result<Value, FetchError> {
        let fail = |reason: String| FetchError::Http { url: url.to_owned(), reason };
        let response = self.http.get(url).send().await.map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("status {}", response.status())));
        }
        response.json().await.map_err(|e| fail(e.to_string()))
    }

    /// The JWKS URL of a provider: configured directly, or read from its discovery document.
    async fn jwks_url(&self, provider: &IdentityProviderRecord) -> Result<String, FetchError> {
        if let Some(url) = &provider.jwks_url {
            return Ok(url.clone());
        }
        let discovery = provider
            .discovery_url
            .as_deref()
            .ok_or_else(|| FetchError::Invalid("the provider has neither jwks_url nor discovery_url".into()))?;
        if let Some(url) = self.discovered.read().expect("discovery cache").get(discovery) {
            return Ok(url.clone());
        }
        let document = self.get_json(discovery).await?;
        let url = document
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| FetchError::Invalid(format!("{discovery} has no jwks_uri")))?
            .to_owned();
        self.discovered.write().expect("discovery cache").insert(discovery.to_owned(), url.clone());
        Ok(url)
    }

    /// Fetches and caches the key set at `url`.
    async fn fetch(&self, url: &str) -> Result<Arc<CachedJwks>, FetchError> {
        let document = self.get_json(url).await?;
        let set: JwkSet = serde_json::from_value(document).map_err(|e| FetchError::Invalid(format!("{url} is not a JWK Set: {e}")))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else { continue };
            let Some(algorithms) = algorithms_for(jwk) else { continue };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, (key, algorithms));
            }
        }
        let cached = Arc::new(CachedJwks { keys, fetched_at: Instant::now() });
        self.jwks.write().expect("jwks cache").insert(url.to_owned(), cached.clone());
        Ok(cached)
    }

    /// The key `kid` of `provider`, from the cache or (once per `min_refetch`) a fresh fetch.
    async fn key(&self, provider: &IdentityProviderRecord, kid: &str) -> Result<Option<(DecodingKey, Vec<Algorithm>)>, FetchError> {
        let url = self.jwks_url(provider).await?;
        let cached = self.jwks.read().expect("jwks cache").get(&url).cloned();
        if let Some(cached) = &cached {
            if let Some(found) = cached.keys.get(kid) {
                return Ok(Some(found.clone()));
            }
            if cached.fetched_at.elapsed() < self.min_refetch {
                return Ok(None);
            }
        }
        let fresh = self.fetch(&url).await?;
        Ok(fresh.keys.get(kid).cloned())
    }

    /// Re-fetches every provider's keys (run in the background).
    pub async fn refresh_all(&self, store: &Store) {
        let providers = match store.list_all_identity_providers().await {
            Ok(providers) => providers,
            Err(err) => {
                tracing::warn!(error = %err, "listing identity providers failed");
                return;
            }
        };
        let mut urls = Vec::new();
        for provider in &providers {
            match self.jwks_url(provider).await {
                Ok(url) if !urls.contains(&url) => urls.push(url),
                Ok(_) => {}
                Err(err) => tracing::warn!(provider = %provider.id, error = %err, "resolving a provider's JWKS URL failed"),
            }
        }
        for url in urls {
            if let Err(err) = self.fetch(&url).await {
                tracing::warn!(error = %err, "refreshing a provider JWKS failed");
            }
        }
    }

    /// Spawns the background refresh, first right away (warms the cache at startup).
    pub fn spawn_refresh(self: &Arc<Self>, store: Store, every: Duration) -> tokio::task::JoinHandle<()> {
        let keys = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(keys) = keys.upgrade() else { break };
                keys.refresh_all(&store).await;
            }
        })
    }

    /// Forgets cached documents of a provider being changed or removed.
    pub fn forget(&self, provider: &IdentityProviderRecord) {
        if let Some(url) = &provider.jwks_url {
            self.jwks.write().expect("jwks cache").remove(url);
        }
        if let Some(discovery) = &provider.discovery_url
            && let Some(url) = self.discovered.write().expect("discovery cache").remove(discovery)
        {
            self.jwks.write().expect("jwks cache").remove(&url);
        }
    }

    /// Verifies an upstream ID token for `project_id`: the provider is chosen by the token's
    /// `iss` among the project's trusted providers; signature with the provider's key,
    /// `iss`, `aud`, `exp`, `nbf` and `iat` are checked; the user id is derived from the
    /// configured claim. Errors are RFC 8693 `invalid_request` with a description.
    pub async fn verify(&self, store: &Store, project_id: &str, token: &str) -> Result<UpstreamIdentity, OAuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("subject_token is not a well-formed JWT"))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(invalid("subject_token uses an algorithm that is not accepted"));
        }
        let unverified: Map<String, Value> =
            jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| invalid("subject_token has malformed claims"))?;
        let issuer = unverified.get("iss").and_then(Value::as_str).ok_or_else(|| invalid("subject_token has no iss claim"))?;
        let provider = store
            .find_identity_provider_by_issuer(project_id, issuer)
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "identity provider lookup failed");
                OAuthError::ServerError("the authorization server failed to process the request".into())
            })?
            .ok_or_else(|| invalid("subject_token was issued by an issuer this project does not trust"))?;
        let kid = header.kid.as_deref().ok_or_else(|| invalid("subject_token has no kid"))?;
        let (key, algorithms) = self
            .key(&provider, kid)
            .await
            .map_err(|err| {
                tracing::warn!(provider = %provider.id, error = %err, "fetching provider keys failed");
                OAuthError::ServerError("the identity provider's keys could not be fetched".into())
            })?
            .ok_or_else(|| invalid("subject_token was signed with a key the identity provider does not publish"))?;
        if !algorithms.contains(&header.alg) {
            return Err(invalid("subject_token's algorithm does not match the provider's key"));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&provider.issuer]);
        let audiences: Vec<&str> = provider.audiences.split(' ').filter(|a| !a.is_empty()).collect();
        validation.set_audience(&audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|err| {
                use jsonwebtoken::errors::ErrorKind;
                invalid(match err.kind() {
                    ErrorKind::ExpiredSignature => "subject_token has expired",
                    ErrorKind::ImmatureSignature => "subject_token is not valid yet (nbf)",
                    ErrorKind::InvalidAudience => "subject_token is not meant for this project (aud)",
                    ErrorKind::InvalidIssuer => "subject_token has the wrong issuer",
                    ErrorKind::InvalidSignature => "subject_token's signature is invalid",
                    _ => "subject_token is invalid",
                })
            })?
            .claims;
        match claims.get("iat").and_then(Value::as_i64) {
            Some(iat) if iat <= now_secs() + self.leeway.as_secs() as i64 => {}
            Some(_) => return Err(invalid("subject_token was issued in the future (iat)")),
            None => return Err(invalid("subject_token has no iat claim")),
        }
        let raw_id = match claims.get(&provider.user_id_claim) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(invalid(format!("subject_token has no `{}` claim to identify the user", provider.user_id_claim))),
        };
        let user_id = format!("{}{raw_id}", provider.user_id_prefix);
        if !is_valid_external_id(&user_id) {
            return Err(invalid("the identity provider's user identifier does not form a valid user id"));
        }
        Ok(UpstreamIdentity { provider, user_id, claims })
    }
}

/// The algorithms a published key may verify; `None` for keys we cannot use for signatures.
fn algorithms_for(jwk: &Jwk) -> Option<Vec<Algorithm>> {
    if let Some(use_) = &jwk.common.public_key_use
        && *use_ != jsonwebtoken::jwk::PublicKeyUse::Signature
    {
        return None;
    }
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => {
            vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512]
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
        _ => return None,
    };
    match jwk.common.key_algorithm.and_then(|a| a.to_string().parse::<Algorithm>().ok()) {
        Some(declared) if by_type.contains(&declared) => Some(vec![declared]),
        Some(_) => None,
        None => Some(by_type),
    }
}

//! The authorization server: issues access tokens for grants and verifies bearer tokens.
//! Issuing a client-credentials token reads the client (one indexed lookup) and signs;
//! it writes nothing, so throughput is bounded by signing, not by the database.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Header, Validation};
use sha2::{Digest, Sha256};
use ulid::Ulid;
use vitalis_core::ids::is_valid_project_id;
use vitalis_core::scope::ScopeSet;
use vitalis_core::timefmt::now_secs;
use vitalis_store::Store;

use crate::error::OAuthError;
use crate::keyring::{KeyRing, SIGNING_ALGORITHM};
use crate::secrets::{hash_secret, verify_secret};
use crate::tokens::{AccessClaims, PrincipalType, TokenError};

pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";

/// Tokens whose signature was verified, so a client sending the same bearer token on every
/// request pays for Ed25519 verification once. Bounded: cleared when full (a few MB at most).
const VERIFIED_CACHE_CAPACITY: usize = 10_000;

/// Names and lifetimes; only `issuer` and `audience_prefix` differ between deployments.
#[derive(Debug, Clone)]
pub struct AuthorityConfig {
    /// `iss` of every token, also the RFC 8414 issuer (the public base URL).
    pub issuer: String,
    /// `aud` is this prefix followed by the project id, e.g. `urn:vitalis:project:`.
    pub audience_prefix: String,
    pub access_token_ttl: Duration,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

/// A freshly signed access token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
    pub scope: ScopeSet,
}

pub struct Authority {
    store: Store,
    keys: Arc<KeyRing>,
    config: AuthorityConfig,
    validation: Validation,
    /// SHA-256 of the whole token (never the token itself) -> its verified claims.
    verified: RwLock<HashMap<[u8; 32], Arc<AccessClaims>>>,
}

impl Authority {
    pub fn new(store: Store, keys: Arc<KeyRing>, config: AuthorityConfig) -> Self {
        let mut validation = Validation::new(SIGNING_ALGORITHM);
        validation.leeway = config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&config.issuer]);
        // The audience depends on the project claim, so it is checked after decoding.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Self { store, keys, config, validation, verified: RwLock::new(HashMap::new()) }
    }

    pub fn config(&self) -> &AuthorityConfig {
        &self.config
    }

    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    pub fn audience_for(&self, project_id: &str) -> String {
        format!("{}{project_id}", self.config.audience_prefix)
    }

    /// The project named by a `resource`/`audience` value, if it has our prefix.
    pub fn project_from_audience<'a>(&self, audience: &'a str) -> Option<&'a str> {
        audience.strip_prefix(self.config.audience_prefix.as_str()).filter(|p| is_valid_project_id(p))
    }

    /// The client-credentials grant (RFC 6749 section 4.4) for one project.
    /// `requested_scope` of `None` or empty means the client's default scopes.
    pub async fn client_credentials(
        &self,
        project_id: &str,
        client_id: &str,
        secret: &str,
        requested_scope: Option<&str>,
    ) -> Result<IssuedToken, OAuthError> {
        let client = if is_valid_project_id(project_id) {
            self.store.get_client(project_id, client_id).await.map_err(|err| {
                tracing::error!(error = %err, "client lookup failed");
                OAuthError::ServerError("the authorization server failed to process the request".to_owned())
            })?
        } else {
            None
        };
        // Compare against a dummy hash when there is no usable client, so timing does not
        // tell which client ids exist.
        let stored_hash = client.as_ref().and_then(|c| c.secret_hash.clone()).unwrap_or_else(|| hash_secret("vitalis:no-such-client"));
        let secret_ok = verify_secret(secret, &stored_hash);
        let Some(client) = client.filter(|c| secret_ok && c.revoked_at.is_none() && c.is_confidential()) else {
            tracing::warn!(project_id, client_id, "client authentication failed");
            return Err(OAuthError::client_authentication_failed());
        };
        if !client.allows_grant(GRANT_CLIENT_CREDENTIALS) {
            return Err(OAuthError::UnauthorizedClient("this client may not use the client_credentials grant".to_owned()));
        }
        let allowed = ScopeSet::parse(&client.allowed_scopes).unwrap_or_default();
        let scope = resolve_scope(requested_scope, &client.default_scopes, &allowed)?;
        self.issue(project_id, client_id, PrincipalType::Client, None, scope)
    }

    fn issue(
        &self,
        project_id: &str,
        sub: &str,
        principal_type: PrincipalType,
        user_id: Option<String>,
        scope: ScopeSet,
    ) -> Result<IssuedToken, OAuthError> {
        let now = now_secs();
        let ttl = self.config.access_token_ttl.as_secs();
        let claims = AccessClaims {
            iss: self.config.issuer.clone(),
            aud: self.audience_for(project_id),
            exp: now + ttl as i64,
            iat: now,
            nbf: now,
            jti: Ulid::generate().to_string(),
            project_id: project_id.to_owned(),
            sub: sub.to_owned(),
            principal_type,
            scope: scope.to_string(),
            user_id,
        };
        let access_token = self.sign(&claims).map_err(|err| {
            tracing::error!(error = %err, "signing an access token failed");
            OAuthError::ServerError("the authorization server failed to issue a token".to_owned())
        })?;
        metrics::counter!("vitalis_tokens_issued_total", "principal_type" => match principal_type { PrincipalType::Client => "client", PrincipalType::User => "user" }).increment(1);
        Ok(IssuedToken { access_token, expires_in: ttl, scope })
    }

    /// Signs `claims` with the active key (`kid` in the header).
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, crate::keyring::KeyRingError> {
        let keys = self.keys.snapshot();
        let active = keys.active.as_ref().ok_or(crate::keyring::KeyRingError::NoActiveKey)?;
        let mut header = Header::new(SIGNING_ALGORITHM);
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(active.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &active.encoding)?)
    }

    /// Verifies a bearer token: our algorithm only, a known `kid`, the signature, `exp` and
    /// `nbf` with leeway, our issuer, and `aud` matching the `project_id` claim.
    pub async fn verify(&self, token: &str) -> Result<Arc<AccessClaims>, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self.verified.read().expect("verified-token cache lock").get(&digest).cloned();
        if let Some(claims) = cached {
            // The signature and issuer were checked when it was cached; time moves on.
            let now = now_secs();
            let leeway = self.config.leeway.as_secs() as i64;
            if now > claims.exp + leeway {
                self.verified.write().expect("verified-token cache lock").remove(&digest);
                return Err(TokenError::Expired);
            }
            if claims.nbf > now + leeway {
                return Err(TokenError::NotYetValid);
            }
            return Ok(claims);
        }
        let claims = Arc::new(self.verify_uncached(token).await?);
        let mut verified = self.verified.write().expect("verified-token cache lock");
        if verified.len() >= VERIFIED_CACHE_CAPACITY {
            verified.clear();
        }
        verified.insert(digest, claims.clone());
        Ok(claims)
    }

    async fn verify_uncached(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != SIGNING_ALGORITHM {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self.keys.decoding_key(&kid).await.ok_or(TokenError::UnknownKey)?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key, &self.validation).map_err(|err| match err.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::InvalidAlgorithm => TokenError::UnsupportedAlgorithm,
            ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => TokenError::Malformed,
            _ => TokenError::BadClaims,
        })?;
        let claims = data.claims;
        if claims.aud != self.audience_for(&claims.project_id) {
            return Err(TokenError::WrongAudience);
        }
        if claims.principal_type == PrincipalType::User && claims.user_id.is_none() {
            return Err(TokenError::BadClaims);
        }
        Ok(claims)
    }
}

/// The scopes to grant: the request (or the client's defaults when none is given), which
/// must be a non-empty subset of what the client is allowed.
pub fn resolve_scope(requested: Option<&str>, default_scopes: &str, allowed: &ScopeSet) -> Result<ScopeSet, OAuthError> {
    let requested = requested.map(str::trim).filter(|s| !s.is_empty());
    let wanted = ScopeSet::parse(requested.unwrap_or(default_scopes)).map_err(|err| OAuthError::InvalidScope(err.to_string()))?;
    if wanted.is_empty() {
        return Err(OAuthError::InvalidScope("no scope was requested and the client has no default scopes".to_owned()));
    }
    if let Some(extra) = wanted.missing_from(allowed).next() {
        return Err(OAuthError::InvalidScope(format!("scope `{extra}` is not allowed for this client")));
    }
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MasterKey;
    use vitalis_store::StoreOptions;

    async fn authority(leeway: Duration) -> Authority {
        let store = Store::connect("sqlite::memory:", &StoreOptions { max_connections: 1, ..StoreOptions::default() }).await.unwrap();
        store.migrate().await.unwrap();
        let keys = Arc::new(KeyRing::load(store.clone(), MasterKey::generate(), Duration::from_secs(60)).await.unwrap());
        let config = AuthorityConfig {
            issuer: "https://issuer.test".into(),
            audience_prefix: "urn:vitalis:project:".into(),
            access_token_ttl: Duration::from_secs(900),
            leeway,
        };
        Authority::new(store, keys, config)
    }

    fn claims(exp_in: i64) -> AccessClaims {
        let now = now_secs();
        AccessClaims {
            iss: "https://issuer.test".into(),
            aud: "urn:vitalis:project:proj_a".into(),
            exp: now + exp_in,
            iat: now,
            nbf: now,
            jti: "j".into(),
            project_id: "proj_a".into(),
            sub: "server".into(),
            principal_type: PrincipalType::Client,
            scope: "users:read".into(),
            user_id: None,
        }
    }

    #[tokio::test]
    async fn cached_verification_still_enforces_expiry() {
        let authority = authority(Duration::ZERO).await;
        let token = authority.sign(&claims(1)).unwrap();
        assert_eq!(authority.verify(&token).await.unwrap().sub, "server");
        assert_eq!(authority.verify(&token).await.unwrap().sub, "server", "served from the cache");
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(authority.verify(&token).await.unwrap_err(), TokenError::Expired);
    }

    #[tokio::test]
    async fn a_tampered_token_never_hits_the_cache_of_the_original() {
        let authority = authority(Duration::from_secs(30)).await;
        let token = authority.sign(&claims(600)).unwrap();
        authority.verify(&token).await.unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1].insert(5, 'A');
        assert!(authority.verify(&parts.join(".")).await.is_err());
    }

    #[test]
    fn scope_resolution() {
        let allowed = ScopeSet::parse("users:read users:create").unwrap();
        assert_eq!(resolve_scope(None, "users:read", &allowed).unwrap().to_string(), "users:read");
        assert_eq!(resolve_scope(Some("  "), "users:read", &allowed).unwrap().to_string(), "users:read");
        assert_eq!(resolve_scope(Some("users:create"), "users:read", &allowed).unwrap().to_string(), "users:create");
        assert!(matches!(resolve_scope(Some("users:delete"), "", &allowed), Err(OAuthError::InvalidScope(_))));
        assert!(matches!(resolve_scope(Some("bad scope!"), "", &allowed), Err(OAuthError::InvalidScope(_))));
        assert!(matches!(resolve_scope(None, "", &allowed), Err(OAuthError::InvalidScope(_))));
    }
}

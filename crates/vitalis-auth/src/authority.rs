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
use vitalis_core::timefmt::{now_millis, now_secs};
use vitalis_store::{AccessTokenRef, ClientRecord, RefreshFamilyRecord, RefreshOp, RefreshOutcome, RevocationKind, Store};

use crate::assertions::AssertionConfig;
use crate::error::OAuthError;
use crate::idp::UpstreamKeys;
use crate::keyring::{KeyRing, SIGNING_ALGORITHM};
use crate::master_key::MasterKey;
use crate::refresh::RefreshWriter;
use crate::revocation::RevocationList;
use crate::secrets::{hash_secret, verify_secret};
use crate::tokens::{AccessClaims, PrincipalType, TokenError};

pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
/// Prefix that makes a leaked Vitalis refresh token recognisable.
pub const REFRESH_TOKEN_PREFIX: &str = "vrt_";

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
    /// A refresh token unused this long expires (each rotation restarts it).
    pub refresh_idle_ttl: Duration,
    /// A login (refresh family) ends this long after the exchange, however it is used.
    pub refresh_absolute_ttl: Duration,
    /// Replaying the immediate predecessor within this window is refused without revoking
    /// the family (a client's retry racing its own rotation).
    pub refresh_reuse_grace: Duration,
    /// An unknown upstream `kid` re-fetches the provider's JWKS at most this often.
    pub idp_jwks_min_refetch: Duration,
    pub assertions: AssertionConfig,
}

/// Who an access token is for.
#[derive(Debug, Clone, Copy)]
enum Subject<'a> {
    /// A confidential client acting for itself.
    Client(&'a str),
    /// An end user.
    User(&'a str),
}

/// A freshly signed access token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
    pub scope: ScopeSet,
}

/// A user access token and the refresh token that goes with it.
#[derive(Debug, Clone)]
pub struct IssuedUserTokens {
    pub access: IssuedToken,
    pub refresh_token: String,
    pub user_id: String,
}

/// RFC 7662 introspection result.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_type: Option<PrincipalType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

pub struct Authority {
    store: Store,
    keys: Arc<KeyRing>,
    master: MasterKey,
    config: AuthorityConfig,
    validation: Validation,
    /// SHA-256 of the whole token (never the token itself) -> its verified claims.
    verified: RwLock<HashMap<[u8; 32], Arc<AccessClaims>>>,
    revocations: Arc<RevocationList>,
    refresh: RefreshWriter,
    upstream: Arc<UpstreamKeys>,
}

fn server_error(err: impl std::fmt::Display) -> OAuthError {
    tracing::error!(error = %err, "authorization server failure");
    OAuthError::ServerError("the authorization server failed to process the request".to_owned())
}

impl Authority {
    /// Builds the authority and starts its refresh-token writer on the current runtime.
    pub async fn start(
        store: Store,
        keys: Arc<KeyRing>,
        master: MasterKey,
        config: AuthorityConfig,
    ) -> Result<Self, vitalis_store::StoreError> {
        let mut validation = Validation::new(SIGNING_ALGORITHM);
        validation.leeway = config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&config.issuer]);
        // The audience depends on the project claim, so it is checked after decoding.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        let revocations = Arc::new(RevocationList::load(store.clone()).await?);
        let refresh = RefreshWriter::start(store.clone(), config.refresh_reuse_grace.as_millis() as i64);
        let upstream = Arc::new(UpstreamKeys::new(config.idp_jwks_min_refetch, config.leeway));
        Ok(Self { store, keys, master, config, validation, verified: RwLock::new(HashMap::new()), revocations, refresh, upstream })
    }

    pub fn config(&self) -> &AuthorityConfig {
        &self.config
    }

    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    pub fn revocations(&self) -> &Arc<RevocationList> {
        &self.revocations
    }

    pub fn upstream(&self) -> &Arc<UpstreamKeys> {
        &self.upstream
    }

    pub fn audience_for(&self, project_id: &str) -> String {
        format!("{}{project_id}", self.config.audience_prefix)
    }

    /// The project named by a `resource`/`audience` value, if it has our prefix.
    pub fn project_from_audience<'a>(&self, audience: &'a str) -> Option<&'a str> {
        audience.strip_prefix(self.config.audience_prefix.as_str()).filter(|p| is_valid_project_id(p))
    }

    /// Until when a client or user revocation must be remembered: every token issued before
    /// it has expired by then.
    pub fn revocation_horizon(&self) -> i64 {
        now_millis() + (self.config.access_token_ttl + self.config.leeway).as_millis() as i64
    }

    /// Authenticates a client of `project_id`: confidential clients by secret, public
    /// clients by id alone (and never with a secret). Revoked or unknown: `invalid_client`.
    pub async fn authenticate_client(&self, project_id: &str, client_id: &str, secret: Option<&str>) -> Result<ClientRecord, OAuthError> {
        let client =
            if is_valid_project_id(project_id) { self.store.get_client(project_id, client_id).await.map_err(server_error)? } else { None };
        // Compare against a dummy hash when there is no usable client, so timing does not
        // tell which client ids exist.
        let stored_hash = client.as_ref().and_then(|c| c.secret_hash.clone()).unwrap_or_else(|| hash_secret("vitalis:no-such-client"));
        let secret_ok = verify_secret(secret.unwrap_or_default(), &stored_hash);
        let authenticated =
            client.filter(|c| c.revoked_at.is_none() && if c.is_confidential() { secret.is_some() && secret_ok } else { secret.is_none() });
        authenticated.ok_or_else(|| {
            tracing::warn!(project_id, client_id, "client authentication failed");
            OAuthError::client_authentication_failed()
        })
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
        let client = self.authenticate_client(project_id, client_id, Some(secret)).await?;
        if !client.is_confidential() {
            return Err(OAuthError::client_authentication_failed());
        }
        if !client.allows_grant(GRANT_CLIENT_CREDENTIALS) {
            return Err(OAuthError::UnauthorizedClient("this client may not use the client_credentials grant".to_owned()));
        }
        let allowed = ScopeSet::parse(&client.allowed_scopes).unwrap_or_default();
        let scope = resolve_scope(requested_scope, &client.default_scopes, &allowed)?;
        let (token, _) = self.issue(project_id, Subject::Client(client_id), scope)?;
        Ok(token)
    }

    /// Token exchange (RFC 8693): an upstream OIDC ID token of a trusted provider becomes a
    /// user access token and a refresh token.
    pub async fn token_exchange(
        &self,
        project_id: &str,
        client_id: &str,
        secret: Option<&str>,
        subject_token: &str,
        requested_scope: Option<&str>,
    ) -> Result<IssuedUserTokens, OAuthError> {
        let client = self.authenticate_client(project_id, client_id, secret).await?;
        if !client.allows_grant(GRANT_TOKEN_EXCHANGE) {
            return Err(OAuthError::UnauthorizedClient("this client may not use token exchange".to_owned()));
        }
        let identity = self.upstream.verify(&self.store, project_id, subject_token).await?;
        self.ensure_user(project_id, &identity.user_id, identity.provider.create_users).await?;
        let allowed = ScopeSet::parse(&client.allowed_scopes).unwrap_or_default().intersection(&ScopeSet::user_grantable());
        let defaults = ScopeSet::parse(&client.default_scopes).unwrap_or_default().intersection(&allowed).to_string();
        let scope = resolve_scope(requested_scope, &defaults, &allowed)?;
        let (access, access_ref) = self.issue(project_id, Subject::User(&identity.user_id), scope.clone())?;
        let refresh_token = new_refresh_token();
        let now = now_millis();
        let family = RefreshFamilyRecord {
            id: Ulid::generate().to_string(),
            project_id: project_id.to_owned(),
            client_id: client_id.to_owned(),
            user_id: identity.user_id.clone(),
            scope: scope.to_string(),
            created_at: now,
            expires_at: now + self.config.refresh_absolute_ttl.as_millis() as i64,
            revoked_at: None,
        };
        let idle_expires_at = (now + self.config.refresh_idle_ttl.as_millis() as i64).min(family.expires_at);
        let op = RefreshOp::Issue { family, token_hash: hash_secret(&refresh_token), access: access_ref, idle_expires_at };
        match self.refresh.apply(op).await.map_err(server_error)? {
            RefreshOutcome::Issued => Ok(IssuedUserTokens { access, refresh_token, user_id: identity.user_id }),
            other => Err(server_error(format!("unexpected refresh outcome {other:?}"))),
        }
    }

    async fn ensure_user(&self, project_id: &str, user_id: &str, create: bool) -> Result<(), OAuthError> {
        if self.store.get_user(project_id, user_id).await.map_err(server_error)?.is_some() {
            return Ok(());
        }
        if !create {
            return Err(OAuthError::InvalidRequest(
                "the user does not exist in this project and the identity provider does not create users".to_owned(),
            ));
        }
        let profile = serde_json::json!({"measurement_unit": "metric"}).to_string();
        match self.store.insert_user(project_id, user_id, &profile).await {
            Ok(_) | Err(vitalis_store::StoreError::Conflict(_)) => Ok(()),
            Err(err) => Err(server_error(err)),
        }
    }

    /// The refresh grant: rotates the refresh token (reuse of a rotated one revokes its
    /// whole family) and issues a new access token.
    pub async fn refresh(
        &self,
        project_id: Option<&str>,
        client_id: &str,
        secret: Option<&str>,
        refresh_token: &str,
        requested_scope: Option<&str>,
    ) -> Result<IssuedUserTokens, OAuthError> {
        let invalid_grant = || OAuthError::InvalidGrant("the refresh token is invalid, expired or revoked".to_owned());
        let token_hash = hash_secret(refresh_token);
        let requested = requested_scope.map(str::trim).filter(|s| !s.is_empty());
        // The family's scope (and project) is needed up front only to narrow the scope or
        // to find the project; the common path goes straight to the rotation.
        let state = if requested.is_some() || project_id.is_none() {
            self.store.refresh_token_state(&token_hash).await.map_err(server_error)?
        } else {
            None
        };
        let project_id = match (project_id, &state) {
            (Some(p), _) => p.to_owned(),
            (None, Some(state)) => state.project_id.clone(),
            // An unknown token names no project to authenticate the client in.
            (None, None) => return Err(invalid_grant()),
        };
        let client = self.authenticate_client(&project_id, client_id, secret).await?;
        if !client.allows_grant(GRANT_REFRESH_TOKEN) {
            return Err(OAuthError::UnauthorizedClient("this client may not use the refresh_token grant".to_owned()));
        }
        let narrowed = match (requested, &state) {
            (Some(requested), Some(state)) => {
                let family_scope = ScopeSet::parse(&state.scope).unwrap_or_default();
                Some(resolve_scope(Some(requested), "", &family_scope)?)
            }
            (Some(_), None) => return Err(invalid_grant()),
            _ => None,
        };
        let jti = Ulid::generate().to_string();
        let now = now_secs();
        let access_ref = AccessTokenRef { jti: jti.clone(), expires_at: (now + self.config.access_token_ttl.as_secs() as i64) * 1000 };
        let new_refresh = new_refresh_token();
        let op = RefreshOp::Rotate {
            token_hash,
            project_id: project_id.clone(),
            client_id: client_id.to_owned(),
            new_token_hash: hash_secret(&new_refresh),
            access: access_ref,
            idle_ttl_ms: self.config.refresh_idle_ttl.as_millis() as i64,
        };
        match self.refresh.apply(op).await.map_err(server_error)? {
            RefreshOutcome::Rotated { user_id, scope, .. } => {
                let scope = narrowed.unwrap_or_else(|| ScopeSet::parse(&scope).unwrap_or_default());
                let access = self.sign_new(&project_id, Subject::User(&user_id), scope, jti, now)?;
                Ok(IssuedUserTokens { access, refresh_token: new_refresh, user_id })
            }
            RefreshOutcome::ReuseDetected => {
                tracing::warn!(project_id, client_id, "refresh token reuse detected; the token family is revoked");
                metrics::counter!("vitalis_refresh_reuse_detected_total").increment(1);
                let _ = self.revocations.reload().await;
                Err(invalid_grant())
            }
            RefreshOutcome::ReusedWithinGrace | RefreshOutcome::Invalid | RefreshOutcome::Revoked | RefreshOutcome::Issued => {
                Err(invalid_grant())
            }
        }
    }

    /// Signs a token for `subject`; returns it with the reference kept alongside refresh tokens.
    fn issue(&self, project_id: &str, subject: Subject<'_>, scope: ScopeSet) -> Result<(IssuedToken, AccessTokenRef), OAuthError> {
        let jti = Ulid::generate().to_string();
        let now = now_secs();
        let token = self.sign_new(project_id, subject, scope, jti.clone(), now)?;
        let expires_at = (now + token.expires_in as i64) * 1000;
        Ok((token, AccessTokenRef { jti, expires_at }))
    }

    fn sign_new(&self, project_id: &str, subject: Subject<'_>, scope: ScopeSet, jti: String, now: i64) -> Result<IssuedToken, OAuthError> {
        let ttl = self.config.access_token_ttl.as_secs();
        // A user token's `sub` is the user id, and it also carries `user_id`.
        let (sub, principal_type, user_id) = match subject {
            Subject::Client(client_id) => (client_id, PrincipalType::Client, None),
            Subject::User(user_id) => (user_id, PrincipalType::User, Some(user_id.to_owned())),
        };
        let claims = AccessClaims {
            iss: self.config.issuer.clone(),
            aud: self.audience_for(project_id),
            exp: now + ttl as i64,
            iat: now,
            nbf: now,
            jti,
            project_id: project_id.to_owned(),
            sub: sub.to_owned(),
            principal_type,
            scope: scope.to_string(),
            user_id,
        };
        let access_token = self.sign(&claims).map_err(server_error)?;
        let label = match principal_type {
            PrincipalType::Client => "client",
            PrincipalType::User => "user",
        };
        metrics::counter!("vitalis_tokens_issued_total", "principal_type" => label).increment(1);
        Ok(IssuedToken { access_token, expires_in: ttl, scope })
    }

    /// RFC 7009 revocation by an authenticated client of `project_id`. Access tokens go on
    /// the denylist until they expire; refresh tokens revoke their whole family. Unknown or
    /// invalid tokens are not an error (the client's goal is met).
    pub async fn revoke(&self, client: &ClientRecord, token: &str) -> Result<(), OAuthError> {
        if token.split('.').count() == 3 {
            if let Ok(claims) = self.verify_uncached(token).await
                && claims.project_id == client.project_id
            {
                let now = now_millis();
                self.store
                    .insert_revocation(RevocationKind::Jti, &claims.project_id, &claims.jti, now, claims.exp * 1000)
                    .await
                    .map_err(server_error)?;
                self.revocations.record(RevocationKind::Jti, &claims.project_id, &claims.jti, now, claims.exp * 1000);
            }
            return Ok(());
        }
        let Some(state) = self.store.refresh_token_state(&hash_secret(token)).await.map_err(server_error)? else { return Ok(()) };
        if state.project_id != client.project_id {
            return Ok(());
        }
        if state.client_id != client.client_id && !client.is_confidential() {
            return Err(OAuthError::UnauthorizedClient("this refresh token was issued to another client".to_owned()));
        }
        self.store.revoke_refresh_family(&state.family_id, &state.project_id, now_millis()).await.map_err(server_error)?;
        self.revocations.reload().await.map_err(server_error)?;
        Ok(())
    }

    /// RFC 7662 introspection for a confidential client of `project_id`: tokens of other
    /// projects are reported inactive.
    pub async fn introspect(&self, project_id: &str, token: &str) -> Result<Introspection, OAuthError> {
        if token.split('.').count() == 3 {
            return Ok(match self.verify(token).await {
                Ok(claims) if claims.project_id == project_id => Introspection {
                    active: true,
                    token_type: Some("access_token"),
                    scope: Some(claims.scope.clone()),
                    client_id: (claims.principal_type == PrincipalType::Client).then(|| claims.sub.clone()),
                    sub: Some(claims.sub.clone()),
                    exp: Some(claims.exp),
                    iat: Some(claims.iat),
                    nbf: Some(claims.nbf),
                    iss: Some(claims.iss.clone()),
                    aud: Some(claims.aud.clone()),
                    jti: Some(claims.jti.clone()),
                    project_id: Some(claims.project_id.clone()),
                    principal_type: Some(claims.principal_type),
                    user_id: claims.user_id.clone(),
                },
                _ => Introspection::default(),
            });
        }
        let now = now_millis();
        let state = self.store.refresh_token_state(&hash_secret(token)).await.map_err(server_error)?;
        Ok(match state {
            Some(s)
                if s.project_id == project_id
                    && s.used_at.is_none()
                    && s.family_revoked_at.is_none()
                    && s.idle_expires_at > now
                    && s.family_expires_at > now =>
            {
                Introspection {
                    active: true,
                    token_type: Some("refresh_token"),
                    scope: Some(s.scope),
                    client_id: Some(s.client_id),
                    sub: Some(s.user_id.clone()),
                    exp: Some(s.idle_expires_at.min(s.family_expires_at) / 1000),
                    project_id: Some(s.project_id),
                    principal_type: Some(PrincipalType::User),
                    user_id: Some(s.user_id),
                    ..Introspection::default()
                }
            }
            _ => Introspection::default(),
        })
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
    /// `nbf` with leeway, our issuer, `aud` matching the `project_id` claim, and not revoked.
    pub async fn verify(&self, token: &str) -> Result<Arc<AccessClaims>, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self.verified.read().expect("verified-token cache lock").get(&digest).cloned();
        let claims = match cached {
            Some(claims) => {
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
                claims
            }
            None => {
                let claims = Arc::new(self.verify_uncached(token).await?);
                let mut verified = self.verified.write().expect("verified-token cache lock");
                if verified.len() >= VERIFIED_CACHE_CAPACITY {
                    verified.clear();
                }
                verified.insert(digest, claims.clone());
                claims
            }
        };
        if self.revocations.is_revoked(&claims) {
            return Err(TokenError::Revoked);
        }
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

/// A new opaque refresh token: prefix plus 256 random bits. Stored only as its SHA-256.
fn new_refresh_token() -> String {
    use base64::Engine;
    format!("{REFRESH_TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::secrets::random_bytes::<32>()))
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
            refresh_idle_ttl: Duration::from_secs(3600),
            refresh_absolute_ttl: Duration::from_secs(7200),
            refresh_reuse_grace: Duration::from_secs(2),
            idp_jwks_min_refetch: Duration::from_secs(30),
            assertions: AssertionConfig {
                issuer: "vitalis".into(),
                audience: "vitalis".into(),
                max_lifetime: Duration::from_secs(3600),
                leeway,
            },
        };
        Authority::start(store, keys, MasterKey::generate(), config).await.unwrap()
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

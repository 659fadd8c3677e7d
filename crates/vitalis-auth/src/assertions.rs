//! Per-user signed assertions (the `x-jwt` pattern): a project issues a user a secret key
//! (shown once, stored encrypted); a backend holding a server token signs a short HS256 JWT
//! with it to act as that user. The secret's UTF-8 bytes are the HMAC key, as in
//! `new SignJWT(...).sign(Buffer.from(secretKey))`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use vitalis_core::ids::new_id;
use vitalis_core::timefmt::now_secs;
use vitalis_store::{Store, StoreError, UserKeyRecord};

use crate::master_key::MasterKey;
use crate::secrets::random_bytes;

pub const USER_KEY_PREFIX: &str = "ukey_";
pub const USER_SECRET_PREFIX: &str = "vuk_";

/// `iss`/`aud` the assertions must carry, and the longest lifetime accepted.
#[derive(Debug, Clone)]
pub struct AssertionConfig {
    pub issuer: String,
    pub audience: String,
    pub max_lifetime: Duration,
    pub leeway: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("x-jwt is not a well-formed HS256 JWT")]
    Malformed,
    #[error("x-jwt does not name a user (claim `id`, `user_id` or `sub`)")]
    NoUser,
    #[error("x-jwt is not signed by an active key of that user")]
    BadSignature,
    #[error("x-jwt has expired")]
    Expired,
    #[error("x-jwt has the wrong iss or aud")]
    WrongIssuerOrAudience,
    #[error("x-jwt lives longer than allowed or has no iat/exp")]
    BadLifetime,
    #[error("x-jwt could not be checked")]
    Unavailable,
}

#[derive(Debug, Serialize, Deserialize)]
struct AssertionClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
}

/// A new key for a user: the stored record and the secret (returned once).
pub async fn create_user_key(
    store: &Store,
    master: &MasterKey,
    project_id: &str,
    user_id: &str,
) -> Result<(UserKeyRecord, String), StoreError> {
    let key_id = new_id(USER_KEY_PREFIX);
    let secret = format!("{USER_SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()));
    let sealed = master.encrypt(secret.as_bytes(), &format!("{project_id}/{key_id}"));
    let record = store.insert_user_key(project_id, user_id, &key_id, &sealed).await?;
    Ok((record, secret))
}

fn open(master: &MasterKey, key: &UserKeyRecord) -> Option<Vec<u8>> {
    master.decrypt(&key.secret_enc, &format!("{}/{}", key.project_id, key.key_id)).ok()
}

/// Verifies an assertion for `project_id`; returns the user it speaks for.
pub async fn verify_assertion(
    store: &Store,
    master: &MasterKey,
    config: &AssertionConfig,
    project_id: &str,
    token: &str,
) -> Result<String, AssertionError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| AssertionError::Malformed)?;
    if header.alg != Algorithm::HS256 {
        return Err(AssertionError::Malformed);
    }
    let unverified: AssertionClaims = jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| AssertionError::Malformed)?;
    let user_id = unverified.id.or(unverified.user_id).or(unverified.sub).ok_or(AssertionError::NoUser)?;
    let keys = store.list_user_keys(project_id, &user_id).await.map_err(|_| AssertionError::Unavailable)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = config.leeway.as_secs();
    validation.set_issuer(&[&config.issuer]);
    validation.set_audience(&[&config.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let candidates = keys.iter().filter(|k| k.revoked_at.is_none()).filter(|k| header.kid.as_deref().is_none_or(|kid| kid == k.key_id));
    let mut outcome = Err(AssertionError::BadSignature);
    for key in candidates {
        let Some(secret) = open(master, key) else { continue };
        match jsonwebtoken::decode::<AssertionClaims>(token, &DecodingKey::from_secret(&secret), &validation) {
            Ok(data) => {
                let lifetime = data.claims.exp - data.claims.iat;
                if lifetime <= 0
                    || lifetime > config.max_lifetime.as_secs() as i64
                    || data.claims.iat > now_secs() + config.leeway.as_secs() as i64
                {
                    return Err(AssertionError::BadLifetime);
                }
                return Ok(user_id);
            }
            Err(err) => {
                use jsonwebtoken::errors::ErrorKind;
                match err.kind() {
                    ErrorKind::InvalidSignature => continue,
                    ErrorKind::ExpiredSignature => outcome = Err(AssertionError::Expired),
                    ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => outcome = Err(AssertionError::WrongIssuerOrAudience),
                    ErrorKind::MissingRequiredClaim(_) | ErrorKind::Json(_) => outcome = Err(AssertionError::BadLifetime),
                    _ => outcome = Err(AssertionError::Malformed),
                }
                break;
            }
        }
    }
    outcome
}

/// Mints an assertion for `user_id` with its newest active key, valid for `lifetime`.
pub async fn mint_assertion(
    store: &Store,
    master: &MasterKey,
    config: &AssertionConfig,
    project_id: &str,
    user_id: &str,
    lifetime: Duration,
) -> Result<Option<String>, StoreError> {
    let keys = store.list_user_keys(project_id, user_id).await?;
    let Some(key) = keys.iter().find(|k| k.revoked_at.is_none()) else { return Ok(None) };
    let secret = open(master, key).ok_or_else(|| StoreError::Corrupt(format!("user key {} cannot be decrypted", key.key_id)))?;
    let now = now_secs();
    let claims = AssertionClaims {
        id: Some(user_id.to_owned()),
        user_id: None,
        sub: None,
        iss: config.issuer.clone(),
        aud: config.audience.clone(),
        iat: now,
        exp: now + lifetime.as_secs() as i64,
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key.key_id.clone());
    let token =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Some(token))
}

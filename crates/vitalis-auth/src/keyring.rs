//! Token signing keys: Ed25519 (aws-lc signs about 100k/s per core; RS256 would cap us at a
//! few thousand). The ring holds the active key, every key that may still verify a live
//! token, and the JWKS document. It reloads from the store periodically and on an unknown
//! `kid` (rate-limited), so a `keys rotate` run on another node or from the CLI is picked up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use vitalis_core::timefmt::now_millis;
use vitalis_store::{SigningKeyRecord, Store, StoreError};

use crate::master_key::{MasterKey, MasterKeyError};
use crate::secrets::random_bytes;

/// The one algorithm we sign access tokens with.
pub const SIGNING_ALGORITHM: Algorithm = Algorithm::EdDSA;
const ALG_NAME: &str = "EdDSA";
/// PKCS#8 v1 header for a raw 32-byte Ed25519 seed (RFC 8410).
const ED25519_PKCS8_PREFIX: [u8; 16] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
/// An unknown `kid` triggers at most one reload per this interval.
const FORCED_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
    #[error("signing key error: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    #[error("stored signing key {0} is unusable")]
    Corrupt(String),
    #[error("no active signing key: run `vitalis keys rotate`")]
    NoActiveKey,
}

/// The key that signs new tokens.
pub struct ActiveKey {
    pub kid: String,
    pub encoding: EncodingKey,
}

/// One consistent snapshot of the keys.
pub struct KeySet {
    pub active: Option<ActiveKey>,
    verifying: HashMap<String, DecodingKey>,
    jwks: Arc<JwkSet>,
}

impl KeySet {
    pub fn decoding_key(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifying.get(kid)
    }
}

pub struct KeyRing {
    store: Store,
    master: MasterKey,
    /// How long a retired key keeps verifying: the longest token lifetime plus leeway.
    verify_retired_for: Duration,
    current: RwLock<Arc<KeySet>>,
    last_forced_reload: Mutex<Option<Instant>>,
}

/// Generates a new Ed25519 key, its public JWK (kid = RFC 7638 thumbprint) and the encrypted row.
pub fn generate_signing_key(master: &MasterKey) -> Result<SigningKeyRecord, KeyRingError> {
    let seed = random_bytes::<32>();
    let der = pkcs8_from_seed(&seed);
    let encoding = EncodingKey::from_ed_der(&der);
    let mut jwk = Jwk::from_encoding_key(&encoding, SIGNING_ALGORITHM)?;
    let kid = jwk.thumbprint(ThumbprintHash::SHA256)?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(KeyAlgorithm::EdDSA);
    Ok(SigningKeyRecord {
        private_key_enc: master.encrypt(&seed, &kid),
        public_jwk: serde_json::to_string(&jwk).expect("a JWK serializes"),
        kid,
        alg: ALG_NAME.to_owned(),
        created_at: now_millis(),
        retired_at: None,
    })
}

/// Makes a new key the active one; older keys keep verifying until their tokens expire.
pub async fn rotate_signing_key(store: &Store, master: &MasterKey) -> Result<SigningKeyRecord, KeyRingError> {
    let record = generate_signing_key(master)?;
    store.insert_active_signing_key(&record).await?;
    Ok(record)
}

fn pkcs8_from_seed(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    der.extend_from_slice(seed);
    der
}

impl KeyRing {
    /// Loads the keys, creating the first one if the store has none.
    pub async fn load(store: Store, master: MasterKey, verify_retired_for: Duration) -> Result<Self, KeyRingError> {
        let ring = Self {
            store,
            master,
            verify_retired_for,
            current: RwLock::new(Arc::new(KeySet { active: None, verifying: HashMap::new(), jwks: Arc::new(JwkSet { keys: vec![] }) })),
            last_forced_reload: Mutex::new(None),
        };
        ring.reload().await?;
        if ring.snapshot().active.is_none() {
            rotate_signing_key(&ring.store, &ring.master).await?;
            ring.reload().await?;
        }
        Ok(ring)
    }

    /// Re-reads the keys from the store and swaps the snapshot.
    pub async fn reload(&self) -> Result<(), KeyRingError> {
        let cutoff = now_millis() - self.verify_retired_for.as_millis() as i64;
        let records = self.store.list_signing_keys(cutoff).await?;
        let mut verifying = HashMap::new();
        let mut jwks = Vec::new();
        let mut active = None;
        for record in records {
            if record.alg != ALG_NAME {
                return Err(KeyRingError::Corrupt(record.kid));
            }
            let jwk: Jwk = serde_json::from_str(&record.public_jwk).map_err(|_| KeyRingError::Corrupt(record.kid.clone()))?;
            verifying.insert(record.kid.clone(), DecodingKey::from_jwk(&jwk)?);
            jwks.push(jwk);
            if record.retired_at.is_none() && active.is_none() {
                let seed = self.master.decrypt(&record.private_key_enc, &record.kid)?;
                let seed: [u8; 32] = seed.try_into().map_err(|_| KeyRingError::Corrupt(record.kid.clone()))?;
                active = Some(ActiveKey { kid: record.kid.clone(), encoding: EncodingKey::from_ed_der(&pkcs8_from_seed(&seed)) });
            }
        }
        let set = KeySet { active, verifying, jwks: Arc::new(JwkSet { keys: jwks }) };
        *self.current.write().expect("key ring lock") = Arc::new(set);
        Ok(())
    }

    pub fn snapshot(&self) -> Arc<KeySet> {
        self.current.read().expect("key ring lock").clone()
    }

    pub fn jwks(&self) -> Arc<JwkSet> {
        self.snapshot().jwks.clone()
    }

    /// The verification key for `kid`, reloading once (rate-limited) if it is unknown.
    pub async fn decoding_key(&self, kid: &str) -> Option<DecodingKey> {
        if let Some(key) = self.snapshot().decoding_key(kid) {
            return Some(key.clone());
        }
        let may_reload = {
            let mut last = self.last_forced_reload.lock().expect("reload lock");
            let due = last.is_none_or(|at| at.elapsed() >= FORCED_RELOAD_INTERVAL);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if may_reload && let Err(err) = self.reload().await {
            tracing::warn!(error = %err, "reloading signing keys failed");
        }
        self.snapshot().decoding_key(kid).cloned()
    }

    /// Spawns a task that reloads the ring every `every` (picks up rotations on other nodes).
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let ring = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(ring) = ring.upgrade() else { break };
                if let Err(err) = ring.reload().await {
                    tracing::warn!(error = %err, "periodic signing key reload failed");
                }
            }
        })
    }
}

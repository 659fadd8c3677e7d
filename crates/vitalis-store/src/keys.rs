//! Signing keys for access tokens. Private keys arrive here already encrypted with the
//! master key; the store never sees them in clear.

use crate::{Store, StoreError, StoreResult, with_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub alg: String,
    /// Encrypted PKCS#8 private key (base64 of nonce and ciphertext).
    pub private_key_enc: String,
    /// The public JWK as JSON, exactly as published in the JWKS.
    pub public_jwk: String,
    pub created_at: i64,
    /// When the key stopped signing; it still verifies until the last token it signed expires.
    pub retired_at: Option<i64>,
}

impl Store {
    /// Inserts `key` as the active key and retires every other active key, atomically.
    pub async fn insert_active_signing_key(&self, key: &SigningKeyRecord) -> StoreResult<()> {
        with_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
                .bind(key.created_at).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO signing_keys (kid, alg, private_key_enc, public_jwk, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&key.kid).bind(&key.alg).bind(&key.private_key_enc).bind(&key.public_jwk).bind(key.created_at)
                .execute(&mut *tx).await.map_err(|e| StoreError::unique(e, "signing key"))?;
            tx.commit().await?;
            Ok::<_, StoreError>(())
        }.await)
    }

    /// Keys that still matter: the active one and those retired after `retired_after`
    /// (tokens they signed may still be valid). Newest first.
    pub async fn list_signing_keys(&self, retired_after: i64) -> StoreResult<Vec<SigningKeyRecord>> {
        Ok(with_pool!(self, pool => sqlx::query_as::<_, SigningKeyRecord>(
            "SELECT kid, alg, private_key_enc, public_jwk, created_at, retired_at FROM signing_keys
             WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at DESC, kid DESC")
            .bind(retired_after).fetch_all(pool).await)?)
    }
}

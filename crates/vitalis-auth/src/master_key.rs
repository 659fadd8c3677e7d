//! The master key encrypts signing keys at rest (AES-256-GCM, the key id as associated data,
//! so a ciphertext cannot be swapped onto another key's row).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::secrets::random_bytes;

#[derive(Clone)]
pub struct MasterKey([u8; 32]);

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("the master key must be 32 bytes, base64-encoded (44 characters)")]
    BadFormat,
    #[error("cannot decrypt a stored key: wrong master key, or the data was altered")]
    Decrypt,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        Self(random_bytes::<32>())
    }

    pub fn from_base64(value: &str) -> Result<Self, MasterKeyError> {
        let bytes = STANDARD.decode(value.trim()).map_err(|_| MasterKeyError::BadFormat)?;
        Ok(Self(bytes.try_into().map_err(|_| MasterKeyError::BadFormat)?))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    fn key(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("32-byte AES key"))
    }

    /// base64(nonce || ciphertext || tag).
    pub fn encrypt(&self, plaintext: &[u8], context: &str) -> String {
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let mut in_out = plaintext.to_vec();
        self.key()
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::from(context.as_bytes()), &mut in_out)
            .expect("AES-GCM sealing cannot fail for in-memory buffers");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&in_out);
        STANDARD.encode(out)
    }

    pub fn decrypt(&self, sealed: &str, context: &str) -> Result<Vec<u8>, MasterKeyError> {
        let bytes = STANDARD.decode(sealed).map_err(|_| MasterKeyError::Decrypt)?;
        if bytes.len() < NONCE_LEN {
            return Err(MasterKeyError::Decrypt);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| MasterKeyError::Decrypt)?;
        let mut in_out = ciphertext.to_vec();
        let plain = self.key().open_in_place(nonce, Aad::from(context.as_bytes()), &mut in_out).map_err(|_| MasterKeyError::Decrypt)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let key = MasterKey::generate();
        let sealed = key.encrypt(b"private key bytes", "kid1");
        assert_eq!(key.decrypt(&sealed, "kid1").unwrap(), b"private key bytes");
        assert!(key.decrypt(&sealed, "kid2").is_err(), "context is bound");
        assert!(MasterKey::generate().decrypt(&sealed, "kid1").is_err(), "other key");
        let back = MasterKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(back.decrypt(&sealed, "kid1").unwrap(), b"private key bytes");
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
    }
}

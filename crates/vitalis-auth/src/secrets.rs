//! Random secrets. Client secrets carry 256 bits of entropy, so a fast hash (SHA-256) is
//! the right storage form: slow password hashes protect low-entropy human passwords and
//! would cap token throughput at a few hundred per second for no gain.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix that makes a leaked Vitalis client secret recognisable to secret scanners.
pub const CLIENT_SECRET_PREFIX: &str = "vcs_";

/// `n` bytes from the operating system's CSPRNG (via aws-lc).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).expect("the OS random number generator is available");
    bytes
}

/// A fresh client secret: prefix plus 32 random bytes, base64url.
pub fn generate_client_secret() -> String {
    format!("{CLIENT_SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// Storage form of a secret: lowercase hex SHA-256.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares `presented` with a stored hash in constant time.
pub fn verify_secret(presented: &str, stored_hash: &str) -> bool {
    hash_secret(presented).as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_verify() {
        let a = generate_client_secret();
        let b = generate_client_secret();
        assert_ne!(a, b);
        assert!(a.starts_with(CLIENT_SECRET_PREFIX));
        assert_eq!(a.len(), CLIENT_SECRET_PREFIX.len() + 43);
        let stored = hash_secret(&a);
        assert!(verify_secret(&a, &stored));
        assert!(!verify_secret(&b, &stored));
        assert!(!verify_secret("", &stored));
    }
}

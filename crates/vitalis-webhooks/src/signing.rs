//! Webhook signatures. Two schemes on every delivery:
//! - the documented one: `X-Webhook-Signature: sha256=<hex HMAC-SHA256(raw body)>` keyed with
//!   the endpoint's `hmac_secret` (its UTF-8 bytes), plus `X-Webhook-ID` and
//!   `X-Webhook-Timestamp` (Unix seconds);
//! - Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256(id.timestamp.body)>`, so
//!   receivers can use the official verifiers and reject replays by timestamp. As those
//!   libraries do, a `whsec_` secret's key is the base64 after the prefix; any other secret's
//!   key is its UTF-8 bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const SECRET_PREFIX: &str = "whsec_";

/// A new secret in Standard Webhooks form: `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(vitalis_auth::secrets::random_bytes::<32>()))
}

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// `sha256=<hex>` of the raw body.
pub fn documented_signature(secret: &str, body: &[u8]) -> String {
    let digest = mac(secret.as_bytes(), &[body]);
    format!("sha256={}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The Standard Webhooks key for a secret.
pub fn standard_key(secret: &str) -> Vec<u8> {
    secret.strip_prefix(SECRET_PREFIX).and_then(|b64| STANDARD.decode(b64).ok()).unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// `v1,<base64>` over `{id}.{timestamp}.{body}`.
pub fn standard_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = mac(&standard_key(secret), &[id.as_bytes(), b".", timestamp.to_string().as_bytes(), b".", body]);
    format!("v1,{}", STANDARD.encode(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_signature_is_hex_hmac_of_the_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            documented_signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn standard_signature_matches_the_spec_example() {
        // The example in the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            standard_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn generated_secrets_use_the_standard_prefix() {
        let secret = generate_secret();
        assert!(secret.starts_with(SECRET_PREFIX));
        assert_eq!(standard_key(&secret).len(), 32);
    }
}

//! Cursor pagination: `limit` (1-1000, default 100) and an opaque `page` token that
//! encodes the last key of the previous window. Clients never decode it; we version it
//! so the format can change without breaking links held by clients.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::ValidationErrors;

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

#[derive(Serialize, Deserialize)]
struct Cursor {
    v: u8,
    after: String,
}

/// Encodes the key after which the next window starts.
pub fn encode_page_token(after_key: &str) -> String {
    let json = serde_json::to_vec(&Cursor { v: 1, after: after_key.to_owned() }).expect("cursor serializes");
    URL_SAFE_NO_PAD.encode(json)
}

/// Decodes a token made by [`encode_page_token`]; anything else is a validation error on `page`.
pub fn decode_page_token(token: &str) -> Result<String, ValidationErrors> {
    let invalid = || ValidationErrors::single("page", "is not a page token returned by this API");
    if token.len() > 2048 {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if cursor.v != 1 {
        return Err(invalid());
    }
    Ok(cursor.after)
}

/// Checks `limit` against 1..=1000, applying the default when absent.
pub fn resolve_limit(limit: Option<i64>) -> Result<u32, ValidationErrors> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=i64::from(MAX_LIMIT)).contains(&n) => Ok(n as u32),
        Some(_) => Err(ValidationErrors::single("limit", "must be between 1 and 1000")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_token_round_trips() {
        let token = encode_page_token("user_123");
        assert_eq!(decode_page_token(&token).unwrap(), "user_123");
    }

    #[test]
    fn garbage_page_tokens_are_refused() {
        for bad in ["", "!!!", "eyJ4IjoxfQ", &"a".repeat(3000)] {
            assert!(decode_page_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limit_bounds() {
        assert_eq!(resolve_limit(None).unwrap(), 100);
        assert_eq!(resolve_limit(Some(1)).unwrap(), 1);
        assert_eq!(resolve_limit(Some(1000)).unwrap(), 1000);
        assert!(resolve_limit(Some(0)).is_err());
        assert!(resolve_limit(Some(1001)).is_err());
    }
}

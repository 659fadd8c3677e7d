//! Server-generated identifiers carry a type prefix (`org_`, `proj_`), as in the reference API,
//! followed by a ULID so that they sort by creation time.

use ulid::Ulid;

/// Prefix for organisation ids.
pub const ORG_PREFIX: &str = "org_";
/// Prefix for project ids.
pub const PROJECT_PREFIX: &str = "proj_";
/// Prefix for server-generated OAuth client ids.
pub const CLIENT_PREFIX: &str = "cli_";

/// A new prefixed id, e.g. `proj_01JD...`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", Ulid::generate().to_string().to_ascii_lowercase())
}

/// Whether `value` looks like a customer-visible id: 1 to 128 characters of
/// letters, digits and `_ - . : @ |`, starting with a letter or digit.
/// The same grammar serves user ids and client ids, which customers choose.
pub fn is_valid_external_id(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@' | b'|'))
}

/// Whether `value` is a well-formed project id (`proj_` followed by 1-64 id characters).
pub fn is_valid_project_id(value: &str) -> bool {
    value
        .strip_prefix(PROJECT_PREFIX)
        .is_some_and(|rest| !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_prefix_and_sort_by_time() {
        let a = new_id(PROJECT_PREFIX);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id(PROJECT_PREFIX);
        assert!(a.starts_with("proj_") && is_valid_project_id(&a));
        assert!(a < b);
    }

    #[test]
    fn external_id_grammar() {
        assert!(is_valid_external_id("user_123"));
        assert!(is_valid_external_id("google_104940819145861640201"));
        assert!(is_valid_external_id("a@b.c"));
        assert!(!is_valid_external_id(""));
        assert!(!is_valid_external_id("_leading"));
        assert!(!is_valid_external_id("has space"));
        assert!(!is_valid_external_id("slash/inside"));
        assert!(!is_valid_external_id(&"x".repeat(129)));
    }

    #[test]
    fn project_id_grammar() {
        assert!(is_valid_project_id("proj_your_project"));
        assert!(!is_valid_project_id("proj_"));
        assert!(!is_valid_project_id("project_1"));
        assert!(!is_valid_project_id("proj_a/b"));
    }
}

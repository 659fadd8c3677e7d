//! OAuth scopes, `resource[.namespace]:action` (e.g. `users:read`, `admin.oauth_clients:revoke`).
//! A [`ScopeSet`] is what a client may be granted and what a token carries.

use std::collections::BTreeSet;
use std::fmt;

/// Every scope this server understands. A client can only be granted scopes from this list,
/// so a typo in an admin command is caught instead of silently granting nothing.
pub const KNOWN_SCOPES: &[&str] = &[
    "users:read",
    "users:create",
    "users:update",
    "users:delete",
    "user_keys:read",
    "user_keys:create",
    "user_keys:revoke",
    "admin.oauth_clients:read",
    "admin.oauth_clients:create",
    "admin.oauth_clients:update",
    "admin.oauth_clients:revoke",
    "admin.identity_providers:read",
    "admin.identity_providers:create",
    "admin.identity_providers:update",
    "admin.identity_providers:revoke",
    "admin.webhooks:read",
    "admin.webhooks:write",
];

/// Scopes an end user's token may carry: its own data only, never creation of other users,
/// keys or administration.
pub const USER_GRANTABLE_SCOPES: &[&str] = &["users:read", "users:update", "users:delete"];

pub const USERS_READ: &str = "users:read";
pub const USERS_CREATE: &str = "users:create";
pub const USERS_UPDATE: &str = "users:update";
pub const USERS_DELETE: &str = "users:delete";
pub const USER_KEYS_READ: &str = "user_keys:read";
pub const USER_KEYS_CREATE: &str = "user_keys:create";
pub const USER_KEYS_REVOKE: &str = "user_keys:revoke";
pub const CLIENTS_READ: &str = "admin.oauth_clients:read";
pub const CLIENTS_CREATE: &str = "admin.oauth_clients:create";
pub const CLIENTS_UPDATE: &str = "admin.oauth_clients:update";
pub const CLIENTS_REVOKE: &str = "admin.oauth_clients:revoke";
pub const IDPS_READ: &str = "admin.identity_providers:read";
pub const IDPS_CREATE: &str = "admin.identity_providers:create";
pub const IDPS_UPDATE: &str = "admin.identity_providers:update";
pub const IDPS_REVOKE: &str = "admin.identity_providers:revoke";
pub const WEBHOOKS_READ: &str = "admin.webhooks:read";
pub const WEBHOOKS_WRITE: &str = "admin.webhooks:write";

/// Why a scope string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope `{0}` is not of the form resource:action")]
    Malformed(String),
    #[error("scope `{0}` is not a scope this server knows")]
    Unknown(String),
}

/// A set of scopes, kept sorted so its string form is stable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(BTreeSet<String>);

fn is_well_formed(scope: &str) -> bool {
    let Some((resource, action)) = scope.rsplit_once(':') else {
        return false;
    };
    let segment_ok = |s: &str| {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= 64
            && b[0].is_ascii_lowercase()
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
    };
    segment_ok(action) && resource.split(['.', ':']).all(segment_ok)
}

impl ScopeSet {
    /// Parses a space-separated scope list (RFC 6749 section 3.3), checking the grammar only.
    pub fn parse(value: &str) -> Result<Self, ScopeError> {
        let mut set = BTreeSet::new();
        for scope in value.split(' ').filter(|s| !s.is_empty()) {
            if !is_well_formed(scope) {
                return Err(ScopeError::Malformed(scope.to_owned()));
            }
            set.insert(scope.to_owned());
        }
        Ok(Self(set))
    }

    /// Parses and also requires every scope to be in [`KNOWN_SCOPES`].
    pub fn parse_known(value: &str) -> Result<Self, ScopeError> {
        let set = Self::parse(value)?;
        match set.0.iter().find(|s| !KNOWN_SCOPES.contains(&s.as_str())) {
            Some(unknown) => Err(ScopeError::Unknown(unknown.clone())),
            None => Ok(set),
        }
    }

    /// All scopes this server knows.
    pub fn all_known() -> Self {
        Self(KNOWN_SCOPES.iter().map(|s| (*s).to_owned()).collect())
    }

    /// Scopes an end user's token may carry.
    pub fn user_grantable() -> Self {
        Self(USER_GRANTABLE_SCOPES.iter().map(|s| (*s).to_owned()).collect())
    }

    /// The scopes in both sets.
    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        Self(self.0.intersection(&other.0).cloned().collect())
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The scopes of `self` that `other` lacks.
    pub fn missing_from<'a>(&'a self, other: &'a ScopeSet) -> impl Iterator<Item = &'a str> {
        self.0.difference(&other.0).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined: Vec<&str> = self.iter().collect();
        f.write_str(&joined.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let set = ScopeSet::parse("users:read  users:create users:read").unwrap();
        assert_eq!(set.to_string(), "users:create users:read");
        assert!(ScopeSet::parse("").unwrap().is_empty());
    }

    #[test]
    fn grammar() {
        for ok in ["users:read", "admin.oauth_clients:revoke", "daily_records:create", "a:b:c"] {
            assert!(ScopeSet::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["users", ":read", "users:", "Users:read", "users:re ad:", "users:read\n", "a..b:c", "users:*"] {
            assert!(ScopeSet::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn known_scopes_only() {
        assert!(ScopeSet::parse_known("users:read users:delete").is_ok());
        assert_eq!(ScopeSet::parse_known("users:fly"), Err(ScopeError::Unknown("users:fly".into())));
    }

    #[test]
    fn subset() {
        let granted = ScopeSet::parse("users:read users:create").unwrap();
        let asked = ScopeSet::parse("users:read").unwrap();
        assert!(asked.is_subset(&granted));
        assert!(!granted.is_subset(&asked));
        assert_eq!(granted.missing_from(&asked).collect::<Vec<_>>(), vec!["users:create"]);
    }
}

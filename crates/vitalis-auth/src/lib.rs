//! The authorization server's core: client secrets, the master key that encrypts signing
//! keys at rest, the key ring behind the JWKS, access-token issuance and verification,
//! and the grants. Everything here is plain async functions over the store, so the HTTP
//! layer stays a thin translation and the rules are unit-testable.

pub mod admin;
pub mod assertions;
pub mod authority;
pub mod error;
pub mod idp;
pub mod keyring;
pub mod master_key;
pub mod refresh;
pub mod revocation;
pub mod secrets;
pub mod tokens;

pub use authority::{Authority, AuthorityConfig, Introspection, IssuedToken, IssuedUserTokens};
pub use error::OAuthError;
pub use keyring::KeyRing;
pub use master_key::MasterKey;
pub use tokens::{AccessClaims, PrincipalType, TokenError};

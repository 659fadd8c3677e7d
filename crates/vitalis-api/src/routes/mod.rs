//! One module per resource family, each exposing `router()`.

pub mod admin;
pub mod discovery;
pub mod health;
pub mod oauth;
pub mod user_keys;
pub mod users;
pub mod webhooks;

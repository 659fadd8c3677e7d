//! One module per resource family, each exposing `router()`.

pub mod discovery;
pub mod health;
pub mod oauth;
pub mod users;

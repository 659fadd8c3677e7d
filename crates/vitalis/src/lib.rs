//! The `vitalis` binary's library half: configuration, server wiring and the admin
//! commands, so integration tests start the real server in-process on an ephemeral port.

pub mod cli;
pub mod config;
pub mod server;

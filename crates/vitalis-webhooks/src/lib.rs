//! Signed outbound webhooks. Resource changes write outbox events in their own transaction
//! (`vitalis-store`); the [`dispatcher::Dispatcher`] fans them out into batched deliveries
//! per endpoint, signs them (the documented `X-Webhook-Signature` and Standard Webhooks),
//! sends them through an SSRF-guarded client, and retries with backoff until delivered or
//! dead-lettered. Every step is a database state change, so a crash loses nothing.

pub mod admin;
pub mod dispatcher;
pub mod events;
pub mod retry;
pub mod signing;
pub mod ssrf;

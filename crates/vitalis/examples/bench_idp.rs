//! A simulated OIDC provider for `scripts/bench.sh`: the same one the integration tests use
//! (discovery document, JWKS, RS256/ES256 keys). Prints its issuer, discovery URL, audience
//! and a one-hour RS256 ID token, then serves until killed.
//!
//!     cargo run --release --example bench_idp

use std::io::Write;

#[path = "../tests/common/idp.rs"]
mod idp;

#[tokio::main]
async fn main() {
    let provider = idp::FakeIdp::start().await;
    let mut claims = provider.claims("bench_user");
    claims["exp"] = serde_json::json!(vitalis_core::timefmt::now_secs() + 3600);
    let token = provider.key("rsa-1").sign(&claims);
    println!("issuer: {}", provider.issuer);
    println!("discovery_url: {}", provider.discovery_url());
    println!("audience: {}", provider.audience);
    println!("id_token: {token}");
    std::io::stdout().flush().expect("stdout");
    std::future::pending::<()>().await;
}

//! Brute-force protection for the token endpoints. Failed client authentications are
//! counted per source address and per client id; once a budget is spent, every token
//! request from that address or for that client gets 429 with `Retry-After` until it
//! refills, so guessing secrets is throttled without slowing down healthy clients.
//! Optional overall quotas per address and per client cap request rates as well.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Limits from the configuration; 0 disables a limit.
#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    /// Failed client authentications allowed per minute, per address and per client.
    pub auth_failures_per_minute: u32,
    /// Token requests per second per source address (0: unlimited).
    pub requests_per_second_per_ip: u32,
    /// Token requests per second per client id (0: unlimited).
    pub requests_per_second_per_client: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self { auth_failures_per_minute: 20, requests_per_second_per_ip: 0, requests_per_second_per_client: 0 }
    }
}

/// A keyed limiter plus the keys that exhausted their failure budget.
struct Budget<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    blocked_until: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> Budget<K> {
    fn new(quota: Quota) -> Self {
        Self { limiter: RateLimiter::keyed(quota), blocked_until: Mutex::new(HashMap::new()) }
    }

    fn blocked(&self, key: &K) -> Option<Duration> {
        let mut blocked = self.blocked_until.lock().expect("limiter lock");
        let until = *blocked.get(key)?;
        let now = Instant::now();
        if until > now {
            Some(until - now)
        } else {
            blocked.remove(key);
            None
        }
    }

    /// Spends one unit; when the budget is gone, blocks the key until it refills.
    fn spend(&self, key: &K) {
        if let Err(not_until) = self.limiter.check_key(key) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut blocked = self.blocked_until.lock().expect("limiter lock");
            if blocked.len() > 100_000 {
                let now = Instant::now();
                blocked.retain(|_, until| *until > now);
            }
            blocked.insert(key.clone(), Instant::now() + wait.max(Duration::from_secs(1)));
        }
    }

    /// A plain rate check (for quotas): `Err(wait)` when over.
    fn check(&self, key: &K) -> Result<(), Duration> {
        self.limiter.check_key(key).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

pub struct TokenEndpointLimits {
    failures_by_ip: Option<Budget<IpAddr>>,
    failures_by_client: Option<Budget<String>>,
    quota_by_ip: Option<Budget<IpAddr>>,
    quota_by_client: Option<Budget<String>>,
}

fn per_minute(n: u32) -> Option<Quota> {
    NonZeroU32::new(n).map(|n| Quota::per_minute(n).allow_burst(n))
}

fn per_second(n: u32) -> Option<Quota> {
    NonZeroU32::new(n).map(|n| Quota::per_second(n).allow_burst(n))
}

impl TokenEndpointLimits {
    pub fn new(settings: LimitSettings) -> Self {
        Self {
            failures_by_ip: per_minute(settings.auth_failures_per_minute).map(Budget::new),
            failures_by_client: per_minute(settings.auth_failures_per_minute).map(Budget::new),
            quota_by_ip: per_second(settings.requests_per_second_per_ip).map(Budget::new),
            quota_by_client: per_second(settings.requests_per_second_per_client).map(Budget::new),
        }
    }

    /// Whether a request from `ip` for `client` may proceed; `Err(retry_after)` if not.
    pub fn admit(&self, ip: IpAddr, client: Option<&str>) -> Result<(), Duration> {
        if let Some(wait) = self.failures_by_ip.as_ref().and_then(|b| b.blocked(&ip)) {
            return Err(wait);
        }
        if let (Some(budget), Some(client)) = (&self.failures_by_client, client)
            && let Some(wait) = budget.blocked(&client.to_owned())
        {
            return Err(wait);
        }
        if let Some(quota) = &self.quota_by_ip {
            quota.check(&ip)?;
        }
        if let (Some(quota), Some(client)) = (&self.quota_by_client, client) {
            quota.check(&client.to_owned())?;
        }
        Ok(())
    }

    /// Counts a failed client authentication against the address and the client id.
    pub fn record_failure(&self, ip: IpAddr, client: Option<&str>) {
        if let Some(budget) = &self.failures_by_ip {
            budget.spend(&ip);
        }
        if let (Some(budget), Some(client)) = (&self.failures_by_client, client) {
            budget.spend(&client.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_block_the_address_and_the_client() {
        let limits = TokenEndpointLimits::new(LimitSettings { auth_failures_per_minute: 3, ..LimitSettings::default() });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(limits.admit(ip, Some("c")).is_ok());
            limits.record_failure(ip, Some("c"));
        }
        limits.record_failure(ip, Some("c"));
        let wait = limits.admit(ip, Some("other")).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60));
        // The client is blocked from any address, too.
        assert!(limits.admit("10.0.0.2".parse().unwrap(), Some("c")).is_err());
        assert!(limits.admit("10.0.0.2".parse().unwrap(), Some("fine")).is_ok());
    }

    #[test]
    fn quotas_cap_request_rates() {
        let limits = TokenEndpointLimits::new(LimitSettings {
            auth_failures_per_minute: 0,
            requests_per_second_per_ip: 2,
            requests_per_second_per_client: 0,
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(limits.admit(ip, None).is_ok());
        assert!(limits.admit(ip, None).is_ok());
        assert!(limits.admit(ip, None).is_err());
    }
}

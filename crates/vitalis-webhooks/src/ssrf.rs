//! Server-side request forgery guards. A webhook URL is checked when configured (scheme,
//! host, what it resolves to) and again at delivery: the HTTP client resolves names through
//! [`GuardedResolver`], which drops private, loopback and link-local addresses unless the
//! configuration allows them, so DNS rebinding between the two checks gains nothing.

use std::net::{IpAddr, SocketAddr};

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which targets are allowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct TargetPolicy {
    /// Allow private, loopback and link-local addresses (internal receivers).
    pub allow_private: bool,
    /// Development mode: plain `http://` and loopback targets are allowed.
    pub dev: bool,
}

/// Whether `ip` is a public unicast address.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

impl TargetPolicy {
    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip) || (self.dev && ip.is_loopback())
    }

    /// Checks a URL's form: `https://` (or `http://` to loopback in dev mode), a host, no
    /// credentials. Returns the parsed URL.
    pub fn check_url(&self, url: &str) -> Result<Url, String> {
        if url.len() > 2048 {
            return Err("must be at most 2048 characters".into());
        }
        let parsed = Url::parse(url).map_err(|_| "must be an absolute URL".to_owned())?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("must not contain credentials".into());
        }
        let host = parsed.host_str().ok_or_else(|| "must name a host".to_owned())?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.dev && is_loopback_host(host) => {}
            "http" => return Err("must use https (plain http is allowed only to loopback in dev mode)".into()),
            _ => return Err("must use https".into()),
        }
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>()
            && !self.ip_allowed(ip)
        {
            return Err("must not target a private, loopback or link-local address".into());
        }
        Ok(parsed)
    }

    /// Checks the URL and everything its host resolves to.
    pub async fn check_target(&self, url: &str) -> Result<Url, String> {
        let parsed = self.check_url(url)?;
        let host = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        if host.parse::<IpAddr>().is_ok() {
            return Ok(parsed);
        }
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addresses: Vec<SocketAddr> =
            tokio::net::lookup_host((host.as_str(), port)).await.map_err(|_| "the host does not resolve".to_owned())?.collect();
        if addresses.is_empty() {
            return Err("the host does not resolve".into());
        }
        if addresses.iter().any(|a| !self.ip_allowed(a.ip())) {
            return Err("the host resolves to a private, loopback or link-local address".into());
        }
        Ok(parsed)
    }
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A resolver for the delivery client that only returns allowed addresses.
pub struct GuardedResolver(pub TargetPolicy);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found.into_iter().filter(|a| policy.ip_allowed(a.ip())).collect();
            if allowed.is_empty() {
                return Err("webhook target resolves only to disallowed (private, loopback or link-local) addresses".into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let prod = TargetPolicy::default();
        assert!(prod.check_url("https://hooks.example.com/onvy").is_ok());
        for bad in [
            "http://hooks.example.com",
            "ftp://x",
            "https://user:pw@x.example",
            "https://127.0.0.1/x",
            "https://10.1.2.3/",
            "https://[::1]/",
            "https://169.254.169.254/latest",
            "nonsense",
        ] {
            assert!(prod.check_url(bad).is_err(), "{bad}");
        }
        let dev = TargetPolicy { dev: true, allow_private: false };
        assert!(dev.check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(dev.check_url("http://localhost:9000/hook").is_ok());
        assert!(dev.check_url("http://hooks.example.com").is_err());
        assert!(dev.check_url("https://10.0.0.5/").is_err());
        let internal = TargetPolicy { dev: false, allow_private: true };
        assert!(internal.check_url("https://10.0.0.5/").is_ok());
    }

    #[test]
    fn addresses() {
        let prod = TargetPolicy::default();
        for private in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!prod.ip_allowed(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"] {
            assert!(prod.ip_allowed(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        let prod = TargetPolicy::default();
        assert!(prod.check_target("https://localhost/hook").await.is_err());
    }
}

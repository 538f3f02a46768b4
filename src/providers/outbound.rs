//! Outbound HTTP, built one way: rustls with ring and the webpki roots (the one TLS stack of
//! the binary), plus the operator's extra trust anchors (`WALLETI_EXTRA_CA_CERTS`, a PEM
//! bundle), a total timeout and a connect timeout on every client, and no redirects followed.
//! Merchant webhook endpoints are URLs chosen by merchants, so their client also refuses, at
//! connect time, every address that is not on the public internet (`PublicOnlyResolver`, plus
//! the same check for IP-literal hosts, which no resolver sees): loopback, private, link-local,
//! unique-local, unspecified, multicast, documentation and other special ranges. Checking the
//! addresses the connection will use, rather than the name, defeats DNS rebinding.

use anyhow::{Context, bail};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// No outbound connection waits longer than this to be established.
pub const CONNECT_TIMEOUT_SECONDS: u64 = 5;

/// The settings every outbound client shares; cheap to clone.
#[derive(Clone, Default)]
pub struct Outbound {
    extra_roots: Arc<Vec<reqwest::Certificate>>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "Outbound {{ extra_roots: {} }}",
            self.extra_roots.len()
        )
    }
}

impl Outbound {
    /// Trusts the certificates of a PEM bundle besides the webpki roots.
    pub fn with_extra_ca_pem(pem: &[u8]) -> anyhow::Result<Outbound> {
        let roots = reqwest::Certificate::from_pem_bundle(pem).context("parse the PEM bundle")?;
        if roots.is_empty() {
            bail!("the PEM bundle holds no certificate");
        }
        Ok(Outbound {
            extra_roots: Arc::new(roots),
        })
    }

    /// Reads `WALLETI_EXTRA_CA_CERTS` (a path); `None`: the webpki roots only.
    pub fn from_extra_ca_file(path: Option<&str>) -> anyhow::Result<Outbound> {
        match path {
            None => Ok(Outbound::default()),
            Some(path) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("read WALLETI_EXTRA_CA_CERTS file {path}"))?;
                Outbound::with_extra_ca_pem(&pem)
                    .with_context(|| format!("WALLETI_EXTRA_CA_CERTS file {path}"))
            }
        }
    }

    /// A client builder with the shared TLS setup, `timeout` for a whole request, and no
    /// redirects.
    pub fn builder(&self, timeout: Duration) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(CONNECT_TIMEOUT_SECONDS)))
            .redirect(reqwest::redirect::Policy::none());
        for root in self.extra_roots.iter() {
            builder = builder.add_root_certificate(root.clone());
        }
        builder
    }

    /// A client for a provider walleti's operator configured.
    pub fn client(&self, timeout: Duration) -> anyhow::Result<reqwest::Client> {
        self.builder(timeout)
            .build()
            .context("build an outbound HTTP client")
    }

    /// A client for URLs chosen by others (merchant webhook endpoints): unless
    /// `allow_private_networks`, it connects only to public addresses.
    pub fn untrusted_client(
        &self,
        timeout: Duration,
        allow_private_networks: bool,
    ) -> anyhow::Result<reqwest::Client> {
        let mut builder = self.builder(timeout);
        if !allow_private_networks {
            builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
        }
        builder.build().context("build the webhook HTTP client")
    }
}

/// Why a destination was refused.
#[derive(Debug, thiserror::Error)]
#[error("{host} has no public address")]
pub struct DestinationRefused {
    pub host: String,
}

/// Resolves with the system resolver, then keeps only public addresses; none left is an
/// error, so the connection is never attempted.
pub struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = resolved
                .filter(|address| is_public_address(address.ip()))
                .collect();
            if public.is_empty() {
                return Err(Box::new(DestinationRefused { host }) as _);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// `Err` when `url`'s host is an IP literal that is not public (names go through the
/// resolver instead).
pub fn check_literal_host(url: &reqwest::Url) -> Result<(), DestinationRefused> {
    let Some(host) = url.host_str() else {
        return Err(DestinationRefused {
            host: String::new(),
        });
    };
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<IpAddr>() {
        Ok(ip) if !is_public_address(ip) => Err(DestinationRefused {
            host: literal.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Whether `ip` is a unicast address on the public internet.
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240; // reserved
    !special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    // Addresses that carry an IPv4 address are judged by it.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let embedded_v4 = |high: u16, low: u16| {
        Ipv4Addr::new(
            (high >> 8) as u8,
            (high & 0xff) as u8,
            (low >> 8) as u8,
            (low & 0xff) as u8,
        )
    };
    if segments[0] == 0x0064 && segments[1] == 0xff9b {
        // NAT64 (64:ff9b::/96 and the local-use 64:ff9b:1::/48).
        return segments[2] == 0 && is_public_v4(embedded_v4(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        // 6to4.
        return is_public_v4(embedded_v4(segments[1], segments[2]));
    }
    let special = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || segments[..6] == [0; 6] // IPv4-compatible (deprecated) and other ::/96
        || (segments[0] & 0xfe00) == 0xfc00 // unique local
        || (segments[0] & 0xffc0) == 0xfe80 // link-local
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || (segments[0] == 0x2001 && segments[1] == 0x0000) // Teredo
        || (segments[0] == 0x0100 && segments[1..4] == [0; 3]); // discard-only
    !special
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public_address(text.parse().expect("an address"))
    }

    #[test]
    fn only_public_unicast_addresses_pass() {
        for refused in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2001:db8::1",
            "2001::1",
        ] {
            assert!(!public(refused), "{refused} must be refused");
        }
        for allowed in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(public(allowed), "{allowed} must be allowed");
        }
    }

    #[test]
    fn ip_literal_hosts_are_checked_without_resolving() {
        let url = |text: &str| reqwest::Url::parse(text).expect("url");
        assert!(check_literal_host(&url("http://127.0.0.1:8080/hook")).is_err());
        assert!(check_literal_host(&url("http://[::1]/hook")).is_err());
        assert!(check_literal_host(&url("http://169.254.169.254/latest")).is_err());
        assert!(check_literal_host(&url("https://8.8.8.8/hook")).is_ok());
        assert!(check_literal_host(&url("https://hooks.example.com/x")).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_that_resolve_to_loopback() {
        let name: Name = "localhost".parse().expect("name");
        let resolved = PublicOnlyResolver.resolve(name).await;
        assert!(resolved.is_err());
    }
}

//! Event delivery from the transactional outbox. Every money movement already writes its
//! events to the `outbox` table in the same transaction (see `store::ledger`); the relay that
//! publishes them (Redis Streams through fred, or in-process) is delivered by the events issue.
//! Until then the outbox table is the durable queue and nothing reads it.
//!
//! What lives here now is the readiness probe for Redis when `REDIS_URL` is configured.

use anyhow::{Context, bail};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REDIS_PING_TIMEOUT: Duration = Duration::from_secs(2);
const REDIS_DEFAULT_PORT: u16 = 6379;

/// `redis://[user[:password]@]host[:port][/db]` → (host:port, password).
fn redis_address(url: &str) -> anyhow::Result<(String, Option<String>)> {
    let rest = url
        .strip_prefix("redis://")
        .with_context(|| format!("REDIS_URL must start with redis:// (got {url})"))?;
    let (credentials, host) = match rest.rsplit_once('@') {
        Some((credentials, host)) => (Some(credentials), host),
        None => (None, rest),
    };
    let host = host.split('/').next().unwrap_or_default();
    if host.is_empty() {
        bail!("REDIS_URL has no host");
    }
    let address = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:{REDIS_DEFAULT_PORT}")
    };
    let password = credentials
        .map(|credentials| {
            credentials
                .rsplit_once(':')
                .map_or(credentials, |(_, password)| password)
                .to_owned()
        })
        .filter(|password| !password.is_empty());
    Ok((address, password))
}

/// Sends `PING` (after `AUTH` when the URL has a password) and expects `+PONG`.
pub async fn ping_redis(url: &str) -> anyhow::Result<()> {
    let (address, password) = redis_address(url)?;
    tokio::time::timeout(REDIS_PING_TIMEOUT, async {
        let mut stream = tokio::net::TcpStream::connect(&address).await?;
        if let Some(password) = password {
            let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n", password.len());
            stream.write_all(auth.as_bytes()).await?;
            let mut reply = [0_u8; 64];
            let read = stream.read(&mut reply).await?;
            if !reply[..read].starts_with(b"+OK") {
                bail!("redis refused AUTH");
            }
        }
        stream.write_all(b"*1\r\n$4\r\nPING\r\n").await?;
        let mut reply = [0_u8; 16];
        let read = stream.read(&mut reply).await?;
        if !reply[..read].starts_with(b"+PONG") {
            bail!("unexpected reply to PING");
        }
        anyhow::Ok(())
    })
    .await
    .context("redis did not answer in time")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_urls() {
        assert_eq!(
            redis_address("redis://127.0.0.1:6379").ok(),
            Some(("127.0.0.1:6379".into(), None))
        );
        assert_eq!(
            redis_address("redis://redis").ok(),
            Some(("redis:6379".into(), None))
        );
        assert_eq!(
            redis_address("redis://:secret@cache:6380/2").ok(),
            Some(("cache:6380".into(), Some("secret".into())))
        );
        assert!(redis_address("http://nope").is_err());
    }
}

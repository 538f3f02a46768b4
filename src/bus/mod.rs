//! Event delivery from the transactional outbox: one trait, two implementations. Every money
//! movement writes its events to the `outbox` table in the same transaction (see
//! `store::ledger`); the `OutboxRelay` actor hands each unpublished row to the `EventBus`:
//!
//! - `InProcessBus` (no `REDIS_URL`, in `actors::outbox_relay`): delivers to the consumers (the notifier and the merchant
//!   webhook dispatcher) directly; the outbox table is the durable queue, a failing event is
//!   retried and dead-lettered in the table after a bound.
//! - `redis::RedisBus` (with `REDIS_URL`): `XADD`s the event to a Redis stream (capped with
//!   `MAXLEN ~`); each consumer is a `StreamConsumer` actor in its own consumer group
//!   (`XREADGROUP`, `XACK` after handling, `XAUTOCLAIM` of messages left by dead consumers, a
//!   dead-letter stream after a bounded number of deliveries).
//!
//! Either way delivery is at least once; every consumer is idempotent by event id.
//! `ping_redis` is the readiness probe for Redis.

pub mod redis;
pub mod revocations;

use crate::store::entities::outbox;
use std::future::Future;
use std::pin::Pin;

/// What publishing one event came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publish {
    /// Durable on the bus (Redis), or handled by every consumer (in-process).
    Delivered,
    /// A consumer refused it: counts towards the event's dead-lettering.
    Failed(String),
    /// The bus could not take it now (Redis down, a consumer busy): try again later; this
    /// does not count against the event.
    Unavailable(String),
    /// In-process only: some consumers handled the event now, the others did not (the inner
    /// `Failed` or `Unavailable` says why). The relay records the ones that did, so a retry
    /// asks only the others.
    Partly(Handled, Box<Publish>),
}

/// Which in-process consumers have handled an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Handled {
    pub notifier: bool,
    pub dispatcher: bool,
}

/// One `Publish` per event, in order.
pub type PublishFuture<'a> = Pin<Box<dyn Future<Output = Vec<Publish>> + Send + 'a>>;

/// Where the outbox relay publishes events, a batch (the oldest unpublished, in order) at a
/// time.
pub trait EventBus: Send + Sync {
    fn publish<'a>(&'a self, events: &'a [outbox::Model]) -> PublishFuture<'a>;

    /// In-process: `Delivered` means every consumer handled the event, and failed events are
    /// counted and dead-lettered in the outbox table. On Redis the stream's consumer groups do
    /// both.
    fn is_in_process(&self) -> bool;
}

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

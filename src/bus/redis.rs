//! Redis through fred: the events stream (`XADD … MAXLEN ~`), the consumer-group operations the
//! `StreamConsumer` actors use (`XGROUP CREATE … MKSTREAM`, `XREADGROUP`, `XACK`,
//! `XAUTOCLAIM`, `XPENDING`, `XINFO GROUPS`), the dead-letter stream, and the GCRA rate limit
//! as one Lua script (atomic, on Redis's clock, so every node shares one limit).
//!
//! The client reconnects on its own (exponential backoff) and never blocks start-up: with
//! Redis down, commands fail after `COMMAND_TIMEOUT`, events wait in the outbox table, and
//! rate limits fall back to the in-process limiter.

use super::{EventBus, Publish, PublishFuture};
use crate::store::entities::outbox;
use fred::prelude::*;
use fred::types::streams::XPendingArgs;
use std::collections::HashMap;
use std::time::Duration;

/// A command waits this long (including while reconnecting) before it fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RECONNECT_DELAY_MIN_MS: u32 = 100;
const RECONNECT_DELAY_MAX_MS: u32 = 2_000;
/// Entries kept in the events stream (approximately: `MAXLEN ~`).
pub const STREAM_LENGTH_MAX: u64 = 100_000;

/// The events stream and where its consumers' hopeless messages go.
#[derive(Debug, Clone)]
pub struct StreamNames {
    pub events: String,
}

impl StreamNames {
    pub fn dead_letters(&self) -> String {
        format!("{}:dead", self.events)
    }
}

/// A connected (or reconnecting) client. Start-up does not wait for Redis.
pub fn connect(url: &str) -> anyhow::Result<Client> {
    let client = builder(url)?.build()?;
    client.connect();
    Ok(client)
}

/// walleti's Redis client settings: never fail fast, short command timeouts, reconnect with
/// exponential backoff.
pub fn builder(url: &str) -> anyhow::Result<Builder> {
    let mut config = Config::from_url(url)?;
    config.fail_fast = false;
    let mut builder = Builder::from_config(config);
    builder
        .with_performance_config(|performance| {
            performance.default_command_timeout = COMMAND_TIMEOUT;
        })
        .with_connection_config(|connection| {
            connection.connection_timeout = CONNECT_TIMEOUT;
            connection.internal_command_timeout = COMMAND_TIMEOUT;
            connection.max_command_attempts = 1;
        })
        .set_policy(ReconnectPolicy::new_exponential(
            0,
            RECONNECT_DELAY_MIN_MS,
            RECONNECT_DELAY_MAX_MS,
            2,
        ));
    Ok(builder)
}

/// One event as a stream entry's fields: its id only. Consumers read the event itself from
/// the outbox table, so whoever can write to Redis cannot choose what walleti signs with a
/// merchant's secret or tells a user; at most they can name an event that exists.
fn entry_fields(event: &outbox::Model) -> Vec<(&'static str, String)> {
    vec![("id", event.id.clone())]
}

/// The outbox event id a stream entry names.
pub fn event_id_from_fields(fields: &HashMap<String, String>) -> Option<&str> {
    fields
        .get("id")
        .map(String::as_str)
        .filter(|id| !id.is_empty() && id.len() <= EVENT_ID_LENGTH_MAX)
}

/// Outbox ids are UUIDs; anything much longer is not one.
const EVENT_ID_LENGTH_MAX: usize = 64;

/// With Redis: publishing is `XADD` to the events stream.
pub struct RedisBus {
    pub client: Client,
    pub streams: StreamNames,
}

impl EventBus for RedisBus {
    fn publish<'a>(&'a self, events: &'a [outbox::Model]) -> PublishFuture<'a> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(events.len());
            for event in events {
                // In order: after the first failure the rest wait for the next pass.
                if results.iter().any(|result| *result != Publish::Delivered)
                    || !self.client.is_connected()
                {
                    results.push(Publish::Unavailable("redis is not reachable".into()));
                    continue;
                }
                let added: Result<String, Error> = self
                    .client
                    .xadd(
                        self.streams.events.as_str(),
                        false,
                        ("MAXLEN", "~", STREAM_LENGTH_MAX as i64),
                        "*",
                        entry_fields(event),
                    )
                    .await;
                results.push(match added {
                    Ok(_) => Publish::Delivered,
                    Err(error) => Publish::Unavailable(error.to_string()),
                });
            }
            results
        })
    }

    fn is_in_process(&self) -> bool {
        false
    }
}

/// One message read from the stream.
#[derive(Debug, Clone)]
pub struct StreamMessage {
    pub id: String,
    pub fields: HashMap<String, String>,
}

/// A consumer group's handle on the events stream.
#[derive(Clone)]
pub struct Group {
    pub client: Client,
    pub streams: StreamNames,
    pub group: String,
    pub consumer: String,
}

impl Group {
    /// Creates the group (from the start of the stream) unless it exists.
    pub async fn ensure(&self) -> Result<(), Error> {
        let created: Result<Value, Error> = self
            .client
            .xgroup_create(self.streams.events.as_str(), self.group.as_str(), "0", true)
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(error) if error.details().contains("BUSYGROUP") => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// New messages for this consumer (`XREADGROUP … >`), without blocking.
    pub async fn read_new(&self, count: u64) -> Result<Vec<StreamMessage>, Error> {
        let value: Value = self
            .client
            .xreadgroup(
                self.group.as_str(),
                self.consumer.as_str(),
                Some(count),
                None,
                false,
                self.streams.events.as_str(),
                ">",
            )
            .await?;
        // [[stream, [[id, [field, value, …]], …]]] (or a map of stream → entries).
        let mut messages = Vec::new();
        for (_, entries) in stream_entries_by_key(value) {
            messages.extend(parse_entries(entries));
        }
        Ok(messages)
    }

    /// Takes over messages idle for at least `min_idle` (their consumer died or failed them).
    pub async fn claim_idle(
        &self,
        min_idle: Duration,
        count: u64,
    ) -> Result<Vec<StreamMessage>, Error> {
        let value: Value = self
            .client
            .xautoclaim(
                self.streams.events.as_str(),
                self.group.as_str(),
                self.consumer.as_str(),
                u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX),
                "0-0",
                Some(count),
                false,
            )
            .await?;
        // [next-start, [[id, [field, value, …]], …], [deleted ids]] (Redis 7).
        let parts = value.into_array();
        Ok(parts
            .into_iter()
            .nth(1)
            .map(parse_entries)
            .unwrap_or_default())
    }

    /// How many times the message was delivered (`XPENDING key group id id 1`).
    pub async fn deliveries(&self, id: &str) -> Result<u64, Error> {
        let value: Value = self
            .client
            .xpending(
                self.streams.events.as_str(),
                self.group.as_str(),
                XPendingArgs::from((id, id, 1_u64)),
            )
            .await?;
        // [[id, consumer, idle ms, deliveries]]
        Ok(value
            .into_array()
            .into_iter()
            .next()
            .map(Value::into_array)
            .and_then(|entry| entry.into_iter().nth(3))
            .and_then(|count| count.as_u64())
            .unwrap_or(1))
    }

    pub async fn ack(&self, id: &str) -> Result<(), Error> {
        let _: Value = self
            .client
            .xack(self.streams.events.as_str(), self.group.as_str(), id)
            .await?;
        Ok(())
    }

    /// Moves a message to the dead-letter stream (with why) and acknowledges it.
    pub async fn dead_letter(
        &self,
        message: &StreamMessage,
        deliveries: u64,
        reason: &str,
    ) -> Result<(), Error> {
        let mut fields: Vec<(String, String)> = message
            .fields
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        fields.push(("group".into(), self.group.clone()));
        fields.push(("stream_id".into(), message.id.clone()));
        fields.push(("deliveries".into(), deliveries.to_string()));
        fields.push(("reason".into(), reason.to_owned()));
        let _: Value = self
            .client
            .xadd(
                self.streams.dead_letters(),
                false,
                ("MAXLEN", "~", STREAM_LENGTH_MAX as i64),
                "*",
                fields,
            )
            .await?;
        self.ack(&message.id).await
    }

    /// (lag, pending) of this group: entries not yet delivered to it, and delivered but not
    /// acknowledged.
    pub async fn lag_and_pending(&self) -> Result<(i64, i64), Error> {
        let value: Value = self
            .client
            .xinfo_groups(self.streams.events.as_str())
            .await?;
        for group in value.into_array() {
            let info = flat_map(group);
            if info.get("name").and_then(Value::as_string).as_deref() == Some(self.group.as_str()) {
                let number = |key: &str| info.get(key).and_then(Value::as_i64).unwrap_or(0);
                return Ok((number("lag"), number("pending")));
            }
        }
        Ok((0, 0))
    }
}

/// `[k1, v1, k2, v2, …]` or a map, as a map with string keys.
fn flat_map(value: Value) -> HashMap<String, Value> {
    match value {
        Value::Map(map) => map
            .inner()
            .into_iter()
            .filter_map(|(key, value)| key.into_string().map(|key| (key, value)))
            .collect(),
        other => {
            let items = other.into_array();
            let mut map = HashMap::new();
            let mut iter = items.into_iter();
            while let (Some(key), Some(value)) = (iter.next(), iter.next()) {
                if let Some(key) = key.as_string() {
                    map.insert(key, value);
                }
            }
            map
        }
    }
}

/// `XREADGROUP`'s reply as (stream, entries) pairs, whichever shape RESP gives it.
fn stream_entries_by_key(value: Value) -> Vec<(String, Value)> {
    match value {
        Value::Null => Vec::new(),
        Value::Map(map) => map
            .inner()
            .into_iter()
            .filter_map(|(key, entries)| key.into_string().map(|key| (key, entries)))
            .collect(),
        other => other
            .into_array()
            .into_iter()
            .filter_map(|pair| {
                let mut parts = pair.into_array().into_iter();
                let key = parts.next()?.as_string()?;
                Some((key, parts.next()?))
            })
            .collect(),
    }
}

/// `[[id, [field, value, …]], …]` as messages; entries deleted by trimming (nil fields) are
/// skipped.
fn parse_entries(entries: Value) -> Vec<StreamMessage> {
    entries
        .into_array()
        .into_iter()
        .filter_map(|entry| {
            let mut parts = entry.into_array().into_iter();
            let id = parts.next()?.as_string()?;
            let fields = flat_map(parts.next()?)
                .into_iter()
                .filter_map(|(key, value)| value.as_string().map(|value| (key, value)))
                .collect();
            Some(StreamMessage { id, fields })
        })
        .collect()
}

/// GCRA on Redis: KEYS[1] = the key; ARGV = emission interval and tolerance in microseconds.
/// Returns 0 when admitted, else the microseconds to wait.
const GCRA_SCRIPT: &str = r#"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local arrival = tonumber(redis.call('GET', KEYS[1]) or now)
if arrival < now then arrival = now end
local earliest = arrival - tolerance
if now < earliest then return earliest - now end
local next_arrival = arrival + emission
redis.call('SET', KEYS[1], next_arrival, 'PX', math.ceil((next_arrival - now) / 1000) + 1000)
return 0
"#;

/// Admits one request for `key` (`Ok(None)`) or says how long to wait (`Ok(Some(wait))`).
pub async fn gcra(
    client: &Client,
    key: &str,
    emission_interval: Duration,
    tolerance: Duration,
) -> Result<Option<Duration>, Error> {
    let micros = |duration: Duration| i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
    let wait: i64 = client
        .eval(
            GCRA_SCRIPT,
            vec![key.to_owned()],
            vec![micros(emission_interval), micros(tolerance)],
        )
        .await?;
    Ok((wait > 0).then(|| Duration::from_micros(wait.unsigned_abs())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_entries_carry_the_event_id_only() {
        let event = outbox::Model {
            id: "evt".into(),
            event_type: "transfer.completed".into(),
            aggregate_type: "transfer".into(),
            aggregate_id: "t1".into(),
            payload: r#"{"id":"evt"}"#.into(),
            created_at: chrono::Utc::now(),
            published_at: None,
            attempts: 0,
            last_error: None,
            dead_lettered_at: None,
            notified_at: None,
            dispatched_at: None,
        };
        let fields: HashMap<String, String> = entry_fields(&event)
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
        assert_eq!(fields.len(), 1);
        assert_eq!(event_id_from_fields(&fields), Some("evt"));
        assert_eq!(event_id_from_fields(&HashMap::new()), None);
    }
}

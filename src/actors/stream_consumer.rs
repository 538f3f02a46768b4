//! `StreamConsumer`: one consumer group on the Redis events stream, feeding one actor (the
//! notifier or the merchant webhook dispatcher). Each pass it first takes over messages left
//! idle by a dead or failing consumer (`XAUTOCLAIM`), then reads new ones (`XREADGROUP`),
//! hands each to its target and acknowledges it (`XACK`) only once the target handled it. A
//! message delivered `deliveries_max` times without success goes to the dead-letter stream and
//! is acknowledged, so it never blocks the others. Targets are idempotent by event id: a
//! message handled but not acknowledged (the consumer died in between) is handled again,
//! harmlessly. A stream entry carries only the event's id: the event itself is read from the
//! outbox table, so Redis never decides what is sent or signed; an id with no outbox row is
//! dead-lettered at once.

use crate::bus::redis::{Group, StreamMessage, event_id_from_fields};
use crate::metrics::Metrics;
use crate::store::entities::outbox;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const KIND: &str = "stream_consumer";
/// Messages taken per read.
const READ_COUNT: u64 = 64;
/// Lag and pending gauges are refreshed at most this often.
const GAUGE_REFRESH: Duration = Duration::from_secs(1);
/// Waiting between passes grows to this while Redis fails.
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(2);

pub type HandlerFuture = Pin<Box<dyn Future<Output = Vec<Result<(), String>>> + Send>>;
/// Hands a batch of events to the consumer's target; one result per event, in order. `Err`
/// leaves that message pending.
pub type Handler = Arc<dyn Fn(Vec<outbox::Model>) -> HandlerFuture + Send + Sync>;

/// How the consumer claims and gives up on messages.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerLimits {
    /// Pause between passes when there was nothing to read.
    pub poll_interval: Duration,
    /// A message pending this long is taken over by whoever polls next.
    pub claim_idle: Duration,
    /// Deliveries before a message is dead-lettered.
    pub deliveries_max: u64,
}

impl Default for ConsumerLimits {
    fn default() -> ConsumerLimits {
        ConsumerLimits {
            poll_interval: Duration::from_millis(50),
            claim_idle: Duration::from_secs(30),
            deliveries_max: 5,
        }
    }
}

pub struct ConsumerArgs {
    pub group: Group,
    /// Where the events named on the stream are read.
    pub store: crate::store::Store,
    pub handler: Handler,
    pub metrics: Arc<Metrics>,
    pub limits: ConsumerLimits,
    /// Test fault: when set, the next handled message kills the consumer before its `XACK`.
    pub die_before_ack: Arc<AtomicBool>,
}

pub struct ConsumerState {
    group: Group,
    store: crate::store::Store,
    handler: Handler,
    metrics: Arc<Metrics>,
    limits: ConsumerLimits,
    die_before_ack: Arc<AtomicBool>,
    group_ready: bool,
    backoff: Duration,
    gauges_refreshed: Option<Instant>,
}

pub enum ConsumerMsg {
    Poll,
}

pub struct StreamConsumer;

/// The consumer died between handling a message and acknowledging it (a test fault).
#[derive(Debug, thiserror::Error)]
#[error("consumer {0} stopped before acknowledging {1}")]
pub struct DiedBeforeAck(String, String);

impl Actor for StreamConsumer {
    type Msg = ConsumerMsg;
    type State = ConsumerState;
    type Arguments = ConsumerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ConsumerMsg>,
        args: ConsumerArgs,
    ) -> Result<ConsumerState, ActorProcessingErr> {
        args.metrics.actors_live.with_label_values(&[KIND]).inc();
        myself.send_message(ConsumerMsg::Poll)?;
        Ok(ConsumerState {
            group: args.group,
            store: args.store,
            handler: args.handler,
            metrics: args.metrics,
            limits: args.limits,
            die_before_ack: args.die_before_ack,
            group_ready: false,
            backoff: args.limits.poll_interval,
            gauges_refreshed: None,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ConsumerMsg>,
        state: &mut ConsumerState,
    ) -> Result<(), ActorProcessingErr> {
        state.metrics.actors_live.with_label_values(&[KIND]).dec();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ConsumerMsg>,
        _message: ConsumerMsg,
        state: &mut ConsumerState,
    ) -> Result<(), ActorProcessingErr> {
        let metrics = Arc::clone(&state.metrics);
        let _timer = metrics.actor_message(KIND);
        match consume(state).await {
            Ok(handled) => {
                state.backoff = state.limits.poll_interval;
                if handled > 0 {
                    myself.send_message(ConsumerMsg::Poll)?;
                } else {
                    myself.send_after(state.limits.poll_interval, || ConsumerMsg::Poll);
                }
                Ok(())
            }
            Err(PassError::Redis(error)) => {
                // Redis is down or failing: wait longer each time, never give up.
                tracing::warn!(group = %state.group.group, %error, "stream consumer pass failed");
                metrics.record_actor_error(KIND, error.to_string());
                state.backoff = (state.backoff * 2).min(ERROR_BACKOFF_MAX);
                myself.send_after(state.backoff, || ConsumerMsg::Poll);
                Ok(())
            }
            Err(PassError::Store(error)) => {
                tracing::warn!(group = %state.group.group, %error, "stream consumer could not read events");
                metrics.record_actor_error(KIND, error.clone());
                state.backoff = (state.backoff * 2).min(ERROR_BACKOFF_MAX);
                myself.send_after(state.backoff, || ConsumerMsg::Poll);
                Ok(())
            }
            Err(PassError::Died(died)) => Err(Box::new(died)),
        }
    }
}

enum PassError {
    Redis(fred::error::Error),
    /// The events could not be read from the database; the messages stay pending.
    Store(String),
    Died(DiedBeforeAck),
}

impl From<fred::error::Error> for PassError {
    fn from(error: fred::error::Error) -> PassError {
        PassError::Redis(error)
    }
}

/// One pass: reclaim, read, handle. Returns how many messages it went through.
async fn consume(state: &mut ConsumerState) -> Result<usize, PassError> {
    if !state.group_ready {
        state.group.ensure().await?;
        state.group_ready = true;
    }
    refresh_gauges(state).await;
    let reclaimed = state
        .group
        .claim_idle(state.limits.claim_idle, READ_COUNT)
        .await?;
    let mut retry = Vec::with_capacity(reclaimed.len());
    for message in reclaimed {
        let deliveries = state.group.deliveries(&message.id).await?;
        if deliveries > state.limits.deliveries_max {
            dead_letter(state, &message, deliveries, "too many deliveries").await?;
        } else {
            retry.push(message);
        }
    }
    let mut handled = deliver(state, retry).await?;
    let fresh = state.group.read_new(READ_COUNT).await?;
    handled += deliver(state, fresh).await?;
    Ok(handled)
}

async fn dead_letter(
    state: &ConsumerState,
    message: &StreamMessage,
    deliveries: u64,
    reason: &str,
) -> Result<(), PassError> {
    tracing::error!(group = %state.group.group, stream_id = %message.id, event_id = ?message.fields.get("id"), deliveries, reason, "event dead-lettered");
    state.group.dead_letter(message, deliveries, reason).await?;
    count(state, "dead_lettered");
    Ok(())
}

/// Hands the messages' events to the target as one batch; acknowledges each one it handled.
/// Returns how many messages it went through.
async fn deliver(state: &ConsumerState, messages: Vec<StreamMessage>) -> Result<usize, PassError> {
    let total = messages.len();
    let ids: Vec<String> = messages
        .iter()
        .filter_map(|message| event_id_from_fields(&message.fields).map(str::to_owned))
        .collect();
    let stored: std::collections::HashMap<String, outbox::Model> = state
        .store
        .outbox_events(&ids)
        .await
        .map_err(|error| PassError::Store(error.to_string()))?
        .into_iter()
        .map(|event| (event.id.clone(), event))
        .collect();
    let mut readable = Vec::with_capacity(total);
    for message in messages {
        let event = event_id_from_fields(&message.fields).and_then(|id| stored.get(id).cloned());
        match event {
            Some(event) => readable.push((message, event)),
            None => dead_letter(state, &message, 1, "no such outbox event").await?,
        }
    }
    if readable.is_empty() {
        return Ok(total);
    }
    let events: Vec<outbox::Model> = readable.iter().map(|(_, event)| event.clone()).collect();
    let results = (state.handler)(events).await;
    let now = chrono::Utc::now();
    for ((message, event), result) in readable.iter().zip(results) {
        match result {
            Ok(()) => {
                if state.die_before_ack.swap(false, Ordering::SeqCst) {
                    return Err(PassError::Died(DiedBeforeAck(
                        state.group.consumer.clone(),
                        message.id.clone(),
                    )));
                }
                state.group.ack(&message.id).await?;
                count(state, "delivered");
                let latency = (now - event.created_at).to_std().unwrap_or_default();
                state
                    .metrics
                    .event_delivery_seconds
                    .with_label_values(&[state.group.group.as_str()])
                    .observe(latency.as_secs_f64());
            }
            Err(error) => {
                // Left pending: reclaimed after `claim_idle`, dead-lettered after the bound.
                tracing::warn!(group = %state.group.group, stream_id = %message.id, %error, "event handling failed");
                count(state, "failed");
            }
        }
    }
    Ok(total)
}

fn count(state: &ConsumerState, outcome: &str) {
    state
        .metrics
        .stream_events_total
        .with_label_values(&[state.group.group.as_str(), outcome])
        .inc();
}

async fn refresh_gauges(state: &mut ConsumerState) {
    if state
        .gauges_refreshed
        .is_some_and(|at| at.elapsed() < GAUGE_REFRESH)
    {
        return;
    }
    state.gauges_refreshed = Some(Instant::now());
    match state.group.lag_and_pending().await {
        Ok((lag, pending)) => {
            let group = state.group.group.as_str();
            state
                .metrics
                .stream_lag
                .with_label_values(&[group])
                .set(lag);
            state
                .metrics
                .stream_pending
                .with_label_values(&[group])
                .set(pending);
        }
        Err(error) => tracing::debug!(%error, "read consumer group info"),
    }
}

//! `OutboxRelay`: publishes outbox events, at least once, through the `EventBus`. Each pass
//! takes the oldest unpublished rows in order and marks each published once the bus has it.
//! With the in-process bus (`InProcessBus`, below) publishing means every consumer (the notifier
//! and the merchant webhook dispatcher) handled the event; a failing event is counted and, after
//! `DELIVERY_ATTEMPTS_MAX` attempts, moved to the dead letters (`dead_lettered_at`) without
//! blocking the events behind it. With Redis, publishing is an `XADD` and the consumers are
//! `StreamConsumer` actors; while Redis is down the pass stops at the first event and tries
//! again later, so events wait in the outbox table, uncounted.

use super::notifier::NotifierMsg;
use super::webhook_dispatcher::DispatcherMsg;
use crate::bus::{EventBus, Publish, PublishFuture};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::entities::outbox;
use crate::store::notifications::OUTBOX_BATCH_MAX;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

pub const KIND: &str = "outbox_relay";
/// Attempts before an event is dead-lettered (in-process bus).
pub const DELIVERY_ATTEMPTS_MAX: i32 = 5;
/// How long a consumer may take with one event before the attempt counts as unanswered.
const HANDLE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct RelayArgs {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub bus: Arc<dyn EventBus>,
    pub poll_interval: Duration,
}

pub struct RelayState {
    store: Store,
    metrics: Arc<Metrics>,
    bus: Arc<dyn EventBus>,
    timer: Option<JoinHandle<()>>,
}

pub enum RelayMsg {
    Relay,
}

pub struct OutboxRelay;

impl Actor for OutboxRelay {
    type Msg = RelayMsg;
    type State = RelayState;
    type Arguments = RelayArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RelayMsg>,
        args: RelayArgs,
    ) -> Result<RelayState, ActorProcessingErr> {
        let timer = myself.send_interval(args.poll_interval, || RelayMsg::Relay);
        args.metrics.actors_live.with_label_values(&[KIND]).inc();
        Ok(RelayState {
            store: args.store,
            metrics: args.metrics,
            bus: args.bus,
            timer: Some(timer),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<RelayMsg>,
        state: &mut RelayState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        state.metrics.actors_live.with_label_values(&[KIND]).dec();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RelayMsg>,
        _message: RelayMsg,
        state: &mut RelayState,
    ) -> Result<(), ActorProcessingErr> {
        let metrics = Arc::clone(&state.metrics);
        let _timer = metrics.actor_message(KIND);
        // Failures are logged and retried next pass: the relay itself never fails.
        match relay(state).await {
            // A full batch published: more may be waiting, so go on without waiting for the
            // timer (which alone would cap delivery at one batch per poll interval).
            Ok(published) if published >= OUTBOX_BATCH_MAX as usize => {
                myself.send_message(RelayMsg::Relay)?;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "outbox relay pass"),
        }
        Ok(())
    }
}

/// One pass; returns how many events were published.
async fn relay(state: &RelayState) -> anyhow::Result<usize> {
    let events = state.store.unpublished_outbox().await?;
    let results = state.bus.publish(&events).await;
    let now = chrono::Utc::now();
    let mut published = Vec::with_capacity(events.len());
    for (event, result) in events.iter().zip(results) {
        match result {
            Publish::Delivered => {
                published.push(event.id.clone());
                if state.bus.is_in_process() {
                    let latency = (now - event.created_at).to_std().unwrap_or_default();
                    state
                        .metrics
                        .event_delivery_seconds
                        .with_label_values(&["in_process"])
                        .observe(latency.as_secs_f64());
                }
            }
            Publish::Failed(error) if state.bus.is_in_process() => {
                let dead = event.attempts + 1 >= DELIVERY_ATTEMPTS_MAX;
                if dead {
                    tracing::error!(event_id = %event.id, %error, "event dead-lettered");
                    state.metrics.outbox_dead_letters_total.inc();
                }
                state
                    .store
                    .record_outbox_failure(&event.id, &error, dead, now)
                    .await?;
            }
            Publish::Failed(error) | Publish::Unavailable(error) => {
                // The bus cannot take events now: they wait, in order, for the next pass.
                tracing::debug!(event_id = %event.id, %error, "event not published yet");
            }
        }
    }
    // One statement for the whole batch.
    state.store.mark_outbox_published(&published, now).await?;
    let count = published.len();
    let (backlog, oldest) = state.store.outbox_backlog_and_oldest().await?;
    state.metrics.outbox_backlog.set(backlog);
    let age = oldest
        .map(|created_at| (chrono::Utc::now() - created_at).num_milliseconds() as f64 / 1000.0)
        .unwrap_or(0.0);
    state
        .metrics
        .outbox_oldest_unpublished_age_seconds
        .set(age.max(0.0));
    Ok(count)
}

/// Without Redis: hands each event to every consumer and waits for them.
pub struct InProcessBus {
    pub notifier: ActorRef<NotifierMsg>,
    pub dispatcher: ActorRef<DispatcherMsg>,
}

impl EventBus for InProcessBus {
    fn publish<'a>(&'a self, events: &'a [outbox::Model]) -> PublishFuture<'a> {
        Box::pin(async move {
            if events.is_empty() {
                return Vec::new();
            }
            // Both consumers are idempotent per event, so a retry after a partial failure
            // (the notifier handled it, the dispatcher did not) is safe. They are asked at the
            // same time, so one slow consumer does not add its delay to the other's.
            let (notified, dispatched) = tokio::join!(
                self.notifier.call(
                    |reply| NotifierMsg::Handle(events.to_vec(), reply),
                    Some(HANDLE_TIMEOUT),
                ),
                self.dispatcher.call(
                    |reply| DispatcherMsg::Handle(events.to_vec(), reply),
                    Some(HANDLE_TIMEOUT),
                )
            );
            let (Ok(CallResult::Success(notified)), Ok(CallResult::Success(dispatched))) =
                (notified, dispatched)
            else {
                let busy = Publish::Unavailable("a consumer did not answer in time".into());
                return vec![busy; events.len()];
            };
            notified
                .into_iter()
                .zip(dispatched)
                .map(|results| match results {
                    (Ok(()), Ok(())) => Publish::Delivered,
                    (Err(error), _) | (_, Err(error)) => Publish::Failed(error),
                })
                .collect()
        })
    }

    fn is_in_process(&self) -> bool {
        true
    }
}

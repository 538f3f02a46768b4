//! `OutboxRelay`: delivers outbox events, at least once, to their consumers (the notifier and
//! the merchant webhook dispatcher). This is the in-process bus: the outbox table is the
//! durable queue; an event is marked published only after both consumers have handled it, a failing one is retried on the next passes and moved to
//! the dead letters (`dead_lettered_at`) after `DELIVERY_ATTEMPTS_MAX` attempts, without
//! blocking the events behind it. (Redis Streams with consumer groups: the rest of the events
//! issue.)

use super::notifier::NotifierMsg;
use super::webhook_dispatcher::DispatcherMsg;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::entities::outbox;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

pub const KIND: &str = "outbox_relay";
/// Attempts before an event is dead-lettered.
pub const DELIVERY_ATTEMPTS_MAX: i32 = 5;
const HANDLE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct RelayArgs {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub notifier: ActorRef<NotifierMsg>,
    pub dispatcher: ActorRef<DispatcherMsg>,
    pub poll_interval: Duration,
}

pub struct RelayState {
    store: Store,
    metrics: Arc<Metrics>,
    notifier: ActorRef<NotifierMsg>,
    dispatcher: ActorRef<DispatcherMsg>,
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
            notifier: args.notifier,
            dispatcher: args.dispatcher,
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
        _myself: ActorRef<RelayMsg>,
        _message: RelayMsg,
        state: &mut RelayState,
    ) -> Result<(), ActorProcessingErr> {
        let metrics = Arc::clone(&state.metrics);
        let _timer = metrics.actor_message(KIND);
        let events = match state.store.unpublished_outbox().await {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(%error, "read outbox");
                return Ok(());
            }
        };
        for event in events {
            let id = event.id.clone();
            let attempts = event.attempts;
            let outcome = deliver(state, event).await;
            let now = chrono::Utc::now();
            let recorded = match outcome {
                Some(Ok(())) => state.store.mark_outbox_published(&id, now).await,
                Some(Err(error)) => {
                    let dead = attempts + 1 >= DELIVERY_ATTEMPTS_MAX;
                    if dead {
                        tracing::error!(event_id = %id, %error, "event dead-lettered");
                        state.metrics.outbox_dead_letters_total.inc();
                    }
                    state
                        .store
                        .record_outbox_failure(&id, &error, dead, now)
                        .await
                }
                // A consumer is busy or gone: leave the event for the next pass.
                None => Ok(()),
            };
            if let Err(error) = recorded {
                tracing::warn!(%error, event_id = %id, "record outbox delivery");
            }
        }
        Ok(())
    }
}

/// Hands the event to every consumer: the notifier (people) and the webhook dispatcher
/// (merchants). Both are idempotent per event, so a retry after a partial failure is safe.
/// `None`: a consumer did not answer in time.
async fn deliver(state: &RelayState, event: outbox::Model) -> Option<Result<(), String>> {
    let for_dispatcher = Box::new(event.clone());
    let notified = state
        .notifier
        .call(
            |reply| NotifierMsg::Handle(Box::new(event), reply),
            Some(HANDLE_TIMEOUT),
        )
        .await;
    match notified {
        Ok(CallResult::Success(Ok(()))) => {}
        Ok(CallResult::Success(Err(error))) => return Some(Err(error)),
        _ => return None,
    }
    match state
        .dispatcher
        .call(
            |reply| DispatcherMsg::Handle(for_dispatcher, reply),
            Some(HANDLE_TIMEOUT),
        )
        .await
    {
        Ok(CallResult::Success(result)) => Some(result),
        _ => None,
    }
}

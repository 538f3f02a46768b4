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
use crate::bus::{EventBus, Handled, Publish, PublishFuture};
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
    let mut events = state.store.unpublished_outbox().await?;
    if state.bus.is_in_process() && events.len() >= OUTBOX_BATCH_MAX as usize {
        // A full batch that one consumer has already handled entirely (the other keeps
        // failing or timing out on it) would keep that consumer from newer events: it gets
        // its own oldest waiting events too.
        for (consumer, handled) in [
            (
                outbox::Column::NotifiedAt,
                events.iter().all(|event| event.notified_at.is_some()),
            ),
            (
                outbox::Column::DispatchedAt,
                events.iter().all(|event| event.dispatched_at.is_some()),
            ),
        ] {
            if handled {
                for event in state.store.outbox_waiting_for(consumer).await? {
                    if !events.iter().any(|known| known.id == event.id) {
                        events.push(event);
                    }
                }
            }
        }
    }
    let results = state.bus.publish(&events).await;
    let now = chrono::Utc::now();
    let mut published = Vec::with_capacity(events.len());
    let (mut notified, mut dispatched) = (Vec::new(), Vec::new());
    for (event, result) in events.iter().zip(results) {
        // Consumers that handled the event while another did not are recorded either way.
        let result = match result {
            Publish::Partly(handled, rest) => {
                if handled.notifier {
                    notified.push(event.id.clone());
                }
                if handled.dispatcher {
                    dispatched.push(event.id.clone());
                }
                *rest
            }
            other => other,
        };
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
            // The bus never nests its answers.
            Publish::Partly(_, rest) => {
                tracing::debug!(event_id = %event.id, ?rest, "event not published yet");
            }
        }
    }
    state
        .store
        .mark_outbox_handled(&notified, &dispatched, now)
        .await?;
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

/// Without Redis: hands each event to every consumer that has not handled it yet, and waits
/// for their answers. Each consumer is acknowledged on its own (`Publish::Partly`): one that
/// refuses an event, or does not answer within `HANDLE_TIMEOUT`, is asked again later, alone,
/// while the other's work on it is done and recorded.
pub struct InProcessBus {
    pub notifier: ActorRef<NotifierMsg>,
    pub dispatcher: ActorRef<DispatcherMsg>,
}

/// What one consumer did with one event in this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Handled before this pass (recorded in the outbox row).
    Before,
    Handled,
    Refused(String),
    Unanswered,
}

/// One consumer's answers for `events`, `None` for the events it was not asked about; all
/// `Unanswered` when it did not answer in time.
fn outcomes(
    asked: &[bool],
    answer: Result<CallResult<Vec<Result<(), String>>>, ractor::MessagingErr<impl Sized>>,
) -> Vec<Outcome> {
    let mut answers = match answer {
        Ok(CallResult::Success(answers)) => Some(answers.into_iter()),
        _ => None,
    };
    asked
        .iter()
        .map(|&asked| {
            if !asked {
                return Outcome::Before;
            }
            match answers.as_mut().and_then(Iterator::next) {
                Some(Ok(())) => Outcome::Handled,
                Some(Err(error)) => Outcome::Refused(error),
                None => Outcome::Unanswered,
            }
        })
        .collect()
}

/// One event's result from its two consumers' outcomes.
fn combine(notifier: Outcome, dispatcher: Outcome) -> Publish {
    let done = |outcome: &Outcome| matches!(outcome, Outcome::Before | Outcome::Handled);
    if done(&notifier) && done(&dispatcher) {
        return Publish::Delivered;
    }
    let rest = match (&notifier, &dispatcher) {
        (Outcome::Refused(error), _) | (_, Outcome::Refused(error)) => {
            Publish::Failed(error.clone())
        }
        _ => Publish::Unavailable("a consumer did not answer in time".into()),
    };
    let handled = Handled {
        notifier: notifier == Outcome::Handled,
        dispatcher: dispatcher == Outcome::Handled,
    };
    if handled == Handled::default() {
        rest
    } else {
        Publish::Partly(handled, Box::new(rest))
    }
}

impl EventBus for InProcessBus {
    fn publish<'a>(&'a self, events: &'a [outbox::Model]) -> PublishFuture<'a> {
        Box::pin(async move {
            if events.is_empty() {
                return Vec::new();
            }
            let to_notify: Vec<bool> = events.iter().map(|e| e.notified_at.is_none()).collect();
            let to_dispatch: Vec<bool> = events.iter().map(|e| e.dispatched_at.is_none()).collect();
            let pick = |asked: &[bool]| -> Vec<outbox::Model> {
                events
                    .iter()
                    .zip(asked)
                    .filter(|(_, asked)| **asked)
                    .map(|(event, _)| event.clone())
                    .collect()
            };
            let (for_notifier, for_dispatcher) = (pick(&to_notify), pick(&to_dispatch));
            // Both consumers are idempotent per event and are asked at the same time, so one
            // slow consumer does not add its delay to the other's; a consumer with nothing to
            // do is not asked.
            let (notified, dispatched) = tokio::join!(
                async {
                    if for_notifier.is_empty() {
                        return Ok(CallResult::Success(Vec::new()));
                    }
                    self.notifier
                        .call(
                            |reply| NotifierMsg::Handle(for_notifier, reply),
                            Some(HANDLE_TIMEOUT),
                        )
                        .await
                },
                async {
                    if for_dispatcher.is_empty() {
                        return Ok(CallResult::Success(Vec::new()));
                    }
                    self.dispatcher
                        .call(
                            |reply| DispatcherMsg::Handle(for_dispatcher, reply),
                            Some(HANDLE_TIMEOUT),
                        )
                        .await
                }
            );
            outcomes(&to_notify, notified)
                .into_iter()
                .zip(outcomes(&to_dispatch, dispatched))
                .map(|(notifier, dispatcher)| combine(notifier, dispatcher))
                .collect()
        })
    }

    fn is_in_process(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ActiveValue::Set, EntityTrait};
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[test]
    fn each_consumer_is_acknowledged_on_its_own() {
        use Outcome::*;
        let refused = || Refused("no".into());
        let notifier_only = crate::bus::Handled {
            notifier: true,
            dispatcher: false,
        };
        assert_eq!(combine(Handled, Handled), Publish::Delivered);
        assert_eq!(combine(Before, Handled), Publish::Delivered);
        assert_eq!(
            combine(Handled, refused()),
            Publish::Partly(notifier_only, Box::new(Publish::Failed("no".into())))
        );
        assert!(matches!(
            combine(Handled, Unanswered),
            Publish::Partly(handled, rest)
                if handled == notifier_only && matches!(*rest, Publish::Unavailable(_))
        ));
        assert_eq!(combine(Before, refused()), Publish::Failed("no".into()));
        assert!(matches!(
            combine(Unanswered, Before),
            Publish::Unavailable(_)
        ));
        assert_eq!(combine(refused(), Unanswered), Publish::Failed("no".into()));
    }

    /// Counts how often each event reached it; refuses the events in `refuse`.
    struct FakeNotifier;
    struct Seen {
        counts: Arc<Mutex<HashMap<String, usize>>>,
        refuse: &'static [&'static str],
    }

    fn answer(seen: &Seen, events: &[outbox::Model]) -> Vec<Result<(), String>> {
        let mut counts = seen.counts.lock().expect("counts");
        events
            .iter()
            .map(|event| {
                *counts.entry(event.id.clone()).or_default() += 1;
                if seen.refuse.contains(&event.id.as_str())
                    || seen.refuse.contains(&event.aggregate_id.as_str())
                {
                    Err("refused".to_owned())
                } else {
                    Ok(())
                }
            })
            .collect()
    }

    impl Actor for FakeNotifier {
        type Msg = NotifierMsg;
        type State = Seen;
        type Arguments = Seen;
        async fn pre_start(
            &self,
            _: ActorRef<NotifierMsg>,
            seen: Seen,
        ) -> Result<Seen, ActorProcessingErr> {
            Ok(seen)
        }
        async fn handle(
            &self,
            _: ActorRef<NotifierMsg>,
            message: NotifierMsg,
            seen: &mut Seen,
        ) -> Result<(), ActorProcessingErr> {
            if let NotifierMsg::Handle(events, reply) = message {
                let _ = reply.send(answer(seen, &events));
            }
            Ok(())
        }
    }

    struct FakeDispatcher;
    impl Actor for FakeDispatcher {
        type Msg = DispatcherMsg;
        type State = Seen;
        type Arguments = Seen;
        async fn pre_start(
            &self,
            _: ActorRef<DispatcherMsg>,
            seen: Seen,
        ) -> Result<Seen, ActorProcessingErr> {
            Ok(seen)
        }
        async fn handle(
            &self,
            _: ActorRef<DispatcherMsg>,
            message: DispatcherMsg,
            seen: &mut Seen,
        ) -> Result<(), ActorProcessingErr> {
            if let DispatcherMsg::Handle(events, reply) = message {
                let _ = reply.send(answer(seen, &events));
            }
            Ok(())
        }
    }

    fn event(id: &str) -> outbox::ActiveModel {
        outbox::ActiveModel {
            id: Set(id.to_owned()),
            event_type: Set("transfer.completed".into()),
            aggregate_type: Set("transfer".into()),
            aggregate_id: Set(id.to_owned()),
            payload: Set("{}".into()),
            created_at: Set(chrono::Utc::now()),
            published_at: Set(None),
            attempts: Set(0),
            last_error: Set(None),
            dead_lettered_at: Set(None),
            notified_at: Set(None),
            dispatched_at: Set(None),
        }
    }

    async fn relay_with_fakes(
        refused_by_dispatcher: &'static [&'static str],
    ) -> (
        RelayState,
        std::path::PathBuf,
        [Arc<Mutex<HashMap<String, usize>>>; 2],
    ) {
        let path = std::env::temp_dir().join(format!(
            "walleti-relay-{}.db",
            uuid::Uuid::now_v7().simple()
        ));
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .expect("store");
        store.migrate().await.expect("migrate");
        let (notified, dispatched) = (Arc::default(), Arc::default());
        let (notifier, _) = Actor::spawn(
            None,
            FakeNotifier,
            Seen {
                counts: Arc::clone(&notified),
                refuse: &[],
            },
        )
        .await
        .expect("notifier");
        let (dispatcher, _) = Actor::spawn(
            None,
            FakeDispatcher,
            Seen {
                counts: Arc::clone(&dispatched),
                refuse: refused_by_dispatcher,
            },
        )
        .await
        .expect("dispatcher");
        let state = RelayState {
            store,
            metrics: Metrics::new(),
            bus: Arc::new(InProcessBus {
                notifier,
                dispatcher,
            }),
            timer: None,
        };
        (state, path, [notified, dispatched])
    }

    /// A full batch of events the notifier has handled and the dispatcher keeps refusing does
    /// not keep a newer event from the notifier.
    #[tokio::test]
    async fn a_stuck_batch_of_one_consumer_does_not_starve_the_other() {
        const STUCK: &[&str] = &["stuck"];
        let (state, path, [notified, _]) = relay_with_fakes(STUCK).await;
        let stuck: Vec<outbox::ActiveModel> = (0..OUTBOX_BATCH_MAX)
            .map(|index| {
                let mut event = event(&format!("a{index:04}"));
                event.aggregate_id = Set("stuck".into());
                event.notified_at = Set(Some(chrono::Utc::now()));
                event
            })
            .collect();
        outbox::Entity::insert_many(stuck)
            .exec(state.store.writer())
            .await
            .expect("stuck events");
        outbox::Entity::insert(event("b-new"))
            .exec(state.store.writer())
            .await
            .expect("new event");
        relay(&state).await.expect("pass");
        let seen = notified.lock().expect("counts").clone();
        assert_eq!(
            seen.get("b-new"),
            Some(&1),
            "the new event reached the notifier"
        );
        assert_eq!(seen.len(), 1, "and nothing it had handled before");
        let _ = std::fs::remove_file(path);
    }

    /// The dispatcher refuses one event every time: it is retried with the dispatcher alone
    /// until it is dead-lettered, and the notifier, which handled it the first time, is never
    /// asked again.
    #[tokio::test]
    async fn a_consumer_that_refuses_an_event_is_retried_alone() {
        let (state, path, [notified, dispatched]) = relay_with_fakes(&["b"]).await;
        let store = state.store.clone();
        outbox::Entity::insert_many([event("a"), event("b")])
            .exec(store.writer())
            .await
            .expect("events");
        for pass in 0..DELIVERY_ATTEMPTS_MAX + 2 {
            let published = relay(&state).await.expect("pass");
            assert_eq!(published, usize::from(pass == 0), "pass {pass}");
        }
        let count = |counts: &Arc<Mutex<HashMap<String, usize>>>, id: &str| {
            counts.lock().expect("counts").get(id).copied().unwrap_or(0)
        };
        assert_eq!(count(&notified, "a"), 1);
        assert_eq!(count(&dispatched, "a"), 1);
        assert_eq!(count(&notified, "b"), 1, "the notifier handled it once");
        assert_eq!(
            count(&dispatched, "b"),
            DELIVERY_ATTEMPTS_MAX as usize,
            "the dispatcher was asked until the event was dead-lettered"
        );
        let rows = outbox::Entity::find()
            .all(store.reader())
            .await
            .expect("rows");
        let row = |id: &str| rows.iter().find(|row| row.id == id).expect("row").clone();
        assert!(row("a").published_at.is_some());
        let b = row("b");
        assert!(b.published_at.is_none());
        assert!(b.notified_at.is_some(), "the notifier's part is recorded");
        assert!(b.dispatched_at.is_none());
        assert!(b.dead_lettered_at.is_some());
        assert_eq!(b.attempts, DELIVERY_ATTEMPTS_MAX);
        let _ = std::fs::remove_file(path);
    }
}

//! `LedgerWriter`: group commit, one per node and database. Wallets plan their batches in
//! memory and hand them here; the writer commits everything that arrived while its previous
//! transaction was in flight as ONE transaction of multi-row statements
//! (`Store::commit_group`), then answers each wallet with its own batch's result.
//!
//! Grouping uses the same self-sent `Flush` as the wallet: a batch is buffered and, if no
//! flush is pending, the writer sends itself `Flush`; every batch queued before that `Flush`
//! joins the group. At low load a group is one batch with no added wait; under load the batches
//! that queued up during one commit all ride the next. A group is bounded by
//! `LedgerLimits` (batches, movements, bytes); what does not fit waits for the next one.
//!
//! Only one ledger transaction is in flight per node, so a wallet account is never written by
//! two transactions of this node at once. On SQLite the writer is the user of the single writer
//! connection for money. Each batch's result goes back to its wallet: a conflict (stale version,
//! failed guard) fails only that batch; the wallet is dropped and reloads from the database,
//! and its callers retry as replays.

use super::notifier::{Clients, InlineNotifier, NotifierMsg};
use crate::domain::{AccountId, TransferKind, UserId};
use crate::metrics::{MailboxTicket, Metrics};
use crate::store::group_commit::{GroupPath, PlannedBatch};
use crate::store::ledger::Effect;
use crate::store::notifications::NotifyInline;
use crate::store::transfers::Party;
use crate::store::{Store, StoreError, StoreResult};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub const KIND: &str = "ledger_writer";

/// The phases of the writer's cycle (`walleti_ledger_writer_busy_seconds_total`).
pub const PHASES: [&str; 5] = [
    "notifying",
    "building",
    "connecting",
    "executing",
    "answering",
];

/// Bounds of one group commit.
#[derive(Debug, Clone, Copy)]
pub struct LedgerLimits {
    /// Wallet batches per transaction at most.
    pub group_batches_max: usize,
    /// Movements (wallet ops) per transaction at most; a single larger batch goes alone.
    pub group_movements_max: usize,
    /// Estimated row bytes per transaction at most (`PlannedBatch::approximate_bytes`).
    pub group_bytes_max: usize,
}

impl Default for LedgerLimits {
    fn default() -> LedgerLimits {
        LedgerLimits {
            group_batches_max: 512,
            group_movements_max: 4096,
            group_bytes_max: 8 * 1024 * 1024,
        }
    }
}

pub struct LedgerWriterArgs {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub limits: LedgerLimits,
    /// With the in-process bus: the notifier's channel clients, so that a group writes the
    /// notifications of the P2P transfers it completes (`InlineNotifier`). `None` (Redis: the
    /// events' consumers may be on other nodes) leaves every event to the relay.
    pub notify_inline: Option<Clients>,
    /// The notifier, told when deliveries written inline wait to be sent (set once it runs),
    /// unless it was told already and has not started on them (`NotifierArgs::deliveries_due`).
    pub notifier: Arc<OnceLock<ActorRef<NotifierMsg>>>,
    pub deliveries_due: Arc<AtomicBool>,
}

pub struct LedgerWriterState {
    store: Store,
    metrics: Arc<Metrics>,
    limits: LedgerLimits,
    notify_inline: Option<Clients>,
    notifier: Arc<OnceLock<ActorRef<NotifierMsg>>>,
    deliveries_due: Arc<AtomicBool>,
    buffer: Vec<(PlannedBatch, RpcReplyPort<StoreResult<()>>)>,
    flush_pending: bool,
}

pub enum LedgerWriterMsg {
    Commit(
        Box<PlannedBatch>,
        RpcReplyPort<StoreResult<()>>,
        MailboxTicket,
    ),
    Flush,
}

pub struct LedgerWriter;

impl Actor for LedgerWriter {
    type Msg = LedgerWriterMsg;
    type State = LedgerWriterState;
    type Arguments = LedgerWriterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<LedgerWriterMsg>,
        args: LedgerWriterArgs,
    ) -> Result<LedgerWriterState, ActorProcessingErr> {
        assert!(args.limits.group_batches_max > 0 && args.limits.group_movements_max > 0);
        args.metrics.actors_live.with_label_values(&[KIND]).inc();
        Ok(LedgerWriterState {
            store: args.store,
            metrics: args.metrics,
            limits: args.limits,
            notify_inline: args.notify_inline,
            notifier: args.notifier,
            deliveries_due: args.deliveries_due,
            buffer: Vec::new(),
            flush_pending: false,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<LedgerWriterMsg>,
        state: &mut LedgerWriterState,
    ) -> Result<(), ActorProcessingErr> {
        state.metrics.actors_live.with_label_values(&[KIND]).dec();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<LedgerWriterMsg>,
        message: LedgerWriterMsg,
        state: &mut LedgerWriterState,
    ) -> Result<(), ActorProcessingErr> {
        let metrics = Arc::clone(&state.metrics);
        let _timer = metrics.actor_message(KIND);
        match message {
            LedgerWriterMsg::Commit(batch, reply, ticket) => {
                drop(ticket);
                state.buffer.push((*batch, reply));
                if !state.flush_pending {
                    state.flush_pending = true;
                    myself.send_message(LedgerWriterMsg::Flush)?;
                }
            }
            LedgerWriterMsg::Flush => {
                state.flush_pending = false;
                commit_next_group(state).await;
                // No yield to the wallets just answered before the next group: giving them the
                // runtime first (3 yields) lengthened every cycle by ≈0.5 ms and measured 7 %
                // slower uniform, no better hot (docs/performance.md, 2026-12-07 night).
                // What did not fit goes next, after whatever queued meanwhile has joined it.
                if !state.buffer.is_empty() {
                    state.flush_pending = true;
                    myself.send_message(LedgerWriterMsg::Flush)?;
                }
            }
        }
        Ok(())
    }
}

/// Takes the longest prefix of the buffer within the limits (at least one batch), commits it
/// and answers every batch's wallet.
async fn commit_next_group(state: &mut LedgerWriterState) {
    let take = group_length(&state.buffer, state.limits);
    if take == 0 {
        return;
    }
    let group: Vec<_> = state.buffer.drain(..take).collect();
    let (batches, replies) = merge_chained(group);
    let movements: usize = batches.iter().map(|batch| batch.movements.len()).sum();
    let notifying = Instant::now();
    let inline = inline_notifier(state, &batches).await;
    let started = Instant::now();
    busy(&state.metrics, "notifying", started - notifying);
    let outcome = state
        .store
        .commit_group_notifying(
            &batches,
            chrono::Utc::now(),
            inline.as_ref().map(|inline| inline as &dyn NotifyInline),
        )
        .await;
    let answering = Instant::now();
    let path = outcome.path.as_str();
    let metrics = &state.metrics;
    let timings = outcome.timings;
    busy(metrics, "building", timings.building);
    busy(metrics, "connecting", timings.connecting);
    let executing = (answering - started).saturating_sub(timings.building + timings.connecting);
    busy(metrics, "executing", executing);
    // The combined way wrote what the inline notifier gave (the savepoint way wrote none of it).
    let committed = outcome.results.iter().any(Result::is_ok);
    if let Some(inline) = inline
        && outcome.path == GroupPath::Combined
        && committed
    {
        let written = inline.written.into_inner().unwrap_or_default();
        for (channel, status) in &written {
            metrics
                .notifications_total
                .with_label_values(&[channel, status])
                .inc();
        }
        // Handled at their commit, as far as the relay's delivery latency goes.
        let events = inline.events.into_inner();
        let delivery = metrics
            .event_delivery_seconds
            .with_label_values(&["in_process"]);
        for _ in 0..events {
            delivery.observe(0.0);
        }
        if InlineNotifier::sends_due(&written)
            && let Some(notifier) = state.notifier.get()
            && !state.deliveries_due.swap(true, Ordering::AcqRel)
        {
            let _ = notifier.send_message(NotifierMsg::DeliverDue);
        }
    }
    metrics
        .ledger_commit_seconds
        .with_label_values(&[path])
        .observe((answering - started).as_secs_f64());
    metrics
        .ledger_group_batches
        .with_label_values(&[path])
        .observe(batches.len() as f64);
    metrics.ledger_group_movements.observe(movements as f64);
    debug_assert_eq!(outcome.results.len(), replies.len());
    for (result, replies) in outcome.results.into_iter().zip(replies) {
        let label = if result.is_ok() {
            "committed"
        } else {
            "conflict"
        };
        metrics
            .ledger_batches_total
            .with_label_values(&[label])
            .inc_by(replies.len() as u64);
        for reply in replies {
            let result = match &result {
                Ok(()) => Ok(()),
                Err(error) => Err(StoreError::Conflict(error.to_string())),
            };
            // A wallet that gave up waiting has failed its batch anyway and will reload.
            let _ = reply.send(result);
        }
    }
    busy(metrics, "answering", answering.elapsed());
}

/// Counts time the writer spent in one phase of its cycle.
fn busy(metrics: &Metrics, phase: &str, spent: Duration) {
    metrics
        .ledger_writer_busy_seconds_total
        .with_label_values(&[phase])
        .inc_by(spent.as_secs_f64());
}

/// The notifier for the P2P transfers this group completes, with their users' channel choices
/// (cached; a read for those not cached). Without it (Redis, no such transfer, the read failed)
/// their events go the relay's way.
async fn inline_notifier(
    state: &LedgerWriterState,
    batches: &[PlannedBatch],
) -> Option<InlineNotifier> {
    let clients = state.notify_inline?;
    let mut users: Vec<UserId> = batches
        .iter()
        .flat_map(|batch| &batch.movements)
        .filter_map(|movement| match &movement.effect {
            Effect::CompleteTransfer(transfer) if transfer.kind == TransferKind::P2p => {
                Some([transfer.from, transfer.to])
            }
            _ => None,
        })
        .flatten()
        .filter_map(|party| match party {
            Party::User(user) => Some(user),
            Party::Merchant(_) => None,
        })
        .collect();
    if users.is_empty() {
        return None;
    }
    users.sort_unstable();
    users.dedup();
    match state.store.cached_channel_choices(&users).await {
        Ok(channels) => Some(InlineNotifier::new(clients, channels)),
        Err(error) => {
            tracing::debug!(%error, "channel choices unread; the relay notifies this group");
            None
        }
    }
}

/// The group's batches with each wallet's batches planned on top of one another (a wallet plans
/// its next batch while one is in flight, `wallet::InFlight`) written as one: the first one's
/// place, version and balance checked, the last one's balance, every movement in order. The
/// accounts' update of a group takes one row per account. Each written batch keeps the replies
/// of the batches it carries; they share its result.
fn merge_chained(
    group: Vec<(PlannedBatch, BatchReply)>,
) -> (Vec<PlannedBatch>, Vec<Vec<BatchReply>>) {
    let mut batches: Vec<PlannedBatch> = Vec::with_capacity(group.len());
    let mut replies: Vec<Vec<BatchReply>> = Vec::with_capacity(group.len());
    let mut written: HashMap<AccountId, usize> = HashMap::with_capacity(group.len());
    for (batch, reply) in group {
        if let Some(&index) = written.get(&batch.account.account)
            && let Some(write) = batches[index].account.then(batch.account)
        {
            batches[index].account = write;
            batches[index].movements.extend(batch.movements);
            replies[index].push(reply);
            continue;
        }
        // Not planned on the one before (never seen): written apart, where the version check
        // of the later one fails it.
        written.insert(batch.account.account, batches.len());
        batches.push(batch);
        replies.push(vec![reply]);
    }
    (batches, replies)
}

/// Where a batch's result goes.
type BatchReply = RpcReplyPort<StoreResult<()>>;

/// How many batches from the front of the buffer the next group takes.
fn group_length(
    buffer: &[(PlannedBatch, RpcReplyPort<StoreResult<()>>)],
    limits: LedgerLimits,
) -> usize {
    let mut movements = 0;
    let mut bytes = 0;
    for (index, (batch, _)) in buffer.iter().enumerate() {
        movements += batch.movements.len();
        bytes += batch.approximate_bytes();
        let over = index >= limits.group_batches_max
            || movements > limits.group_movements_max
            || bytes > limits.group_bytes_max;
        if over {
            return index.max(1);
        }
    }
    buffer.len()
}

/// The handle wallets commit through.
#[derive(Clone)]
pub struct Ledger {
    writer: ActorRef<LedgerWriterMsg>,
    metrics: Arc<Metrics>,
    call_timeout: Duration,
}

impl Ledger {
    pub fn new(
        writer: ActorRef<LedgerWriterMsg>,
        metrics: Arc<Metrics>,
        call_timeout: Duration,
    ) -> Ledger {
        Ledger {
            writer,
            metrics,
            call_timeout,
        }
    }

    /// Hands the batch to the writer now (a batch handed over later joins this one's group or
    /// a later one, never an earlier one) and returns what waits for its commit, with whatever
    /// else is ready: `Err` if it was not committed (or its outcome is unknown: a timeout).
    pub fn submit(
        &self,
        batch: PlannedBatch,
    ) -> impl std::future::Future<Output = StoreResult<()>> + use<> {
        let ticket = self.metrics.mailbox_ticket(KIND);
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = self.writer.send_message(LedgerWriterMsg::Commit(
            Box::new(batch),
            RpcReplyPort::from(reply),
            ticket,
        ));
        let call_timeout = self.call_timeout;
        async move {
            let stopped = || StoreError::Conflict("the ledger writer stopped".into());
            if sent.is_err() {
                return Err(stopped());
            }
            match tokio::time::timeout(call_timeout, answer).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(stopped()),
                Err(_) => Err(StoreError::Conflict(
                    "the ledger writer did not answer in time".into(),
                )),
            }
        }
    }

    pub fn actor(&self) -> &ActorRef<LedgerWriterMsg> {
        &self.writer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ledger::AccountWrite;

    fn batch() -> PlannedBatch {
        write(AccountId::generate(), 0, 0, 0)
    }

    fn write(account: AccountId, version: i64, from: i64, to: i64) -> PlannedBatch {
        PlannedBatch {
            account: AccountWrite {
                account,
                expected_version: version,
                expected_available: from,
                expected_locked: 0,
                available: to,
                locked: 0,
                steps: 1,
            },
            movements: Vec::new(),
        }
    }

    #[test]
    fn a_wallets_chained_batches_are_written_as_one_and_others_apart() {
        let (ada, bob) = (AccountId::generate(), AccountId::generate());
        let mut group = Vec::new();
        for batch in [
            write(ada, 4, 100, 90),
            write(bob, 1, 0, 10),
            // Planned on ada's first batch: merged into it.
            write(ada, 5, 90, 70),
            // Not planned on what ada's batches leave (a stale plan): written apart.
            write(ada, 5, 90, 60),
        ] {
            let (sender, _receiver) = tokio::sync::oneshot::channel();
            group.push((batch, RpcReplyPort::from(sender)));
        }
        let (batches, replies) = merge_chained(group);
        assert_eq!(batches.len(), 3);
        let merged = batches[0].account;
        assert_eq!(merged.account, ada);
        assert_eq!(
            (merged.expected_version, merged.expected_available),
            (4, 100)
        );
        assert_eq!((merged.available, merged.steps), (70, 2));
        assert_eq!(batches[1].account.account, bob);
        assert_eq!(
            (
                batches[2].account.expected_version,
                batches[2].account.available
            ),
            (5, 60)
        );
        assert_eq!(
            replies.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 1, 1]
        );
    }

    #[test]
    fn a_group_takes_at_most_the_batch_limit_and_always_one() {
        let limits = LedgerLimits {
            group_batches_max: 3,
            ..LedgerLimits::default()
        };
        let (sender, _receiver) = tokio::sync::oneshot::channel();
        let mut buffer = vec![(batch(), RpcReplyPort::from(sender))];
        for _ in 0..4 {
            let (sender, _receiver) = tokio::sync::oneshot::channel();
            buffer.push((batch(), RpcReplyPort::from(sender)));
        }
        assert_eq!(group_length(&buffer, limits), 3);
        assert_eq!(group_length(&buffer[..2], limits), 2);
        let tiny = LedgerLimits {
            group_bytes_max: 0,
            ..limits
        };
        assert_eq!(group_length(&buffer, tiny), 1, "a group always takes one");
    }
}

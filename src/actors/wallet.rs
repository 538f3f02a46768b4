//! Wallets: each account's balance has a single writer, which validates each op against the
//! in-memory balance in arrival order and persists through the node's `LedgerWriter`.
//!
//! A wallet is hosted by one `WalletShard`, a supervised actor that owns the wallets whose
//! account ids hash to it (`WALLETI_WALLET_SHARDS` of them per node). The shard's mailbox is the
//! wallet's: every op for an account goes through the same shard, in arrival order, so the
//! wallet is still the only writer of its balance. A shard rather than one actor per wallet
//! because an idle ractor actor costs ~7.2 KiB (`examples/actor_memory`) and a hosted wallet
//! a few hundred bytes: 100,000 live wallets fit in a small server.
//!
//! Batching: an op is buffered on its wallet and, if no flush is pending, the shard sends
//! itself `Flush`. Every op that arrives before that `Flush` is dequeued joins its wallet's
//! buffer, so when `Flush` runs every wallet with buffered ops plans them against its
//! in-memory balance and hands them, as one batch per wallet, to the `LedgerWriter`, which
//! commits them together with other shards' batches (group commit); every caller is answered
//! when its batch's commit is (`WalletMsg::Committed`). At low load a batch is one op with no
//! added wait; under load a hot wallet commits many ops per batch and many wallets' batches
//! share one transaction.
//!
//! Pipelining: the shard does not wait for a commit. While a wallet's batch is in flight, the
//! wallet may plan its next batch on top of it (the balance and version that batch leaves) and
//! hand it on, so that a P2P credit arriving at a busy recipient, or a second transfer of a
//! busy payer, rides the next group instead of waiting for this one's answer. Only P2P legs
//! that are first attempts are planned that way (`pipelinable`): they read nothing, and the
//! guards they need are checked by the commit itself. Everything else, and a batch that would
//! refuse an op for lack of funds, waits until every batch in flight is answered. A later batch
//! expects exactly the version and balance the earlier one leaves (`AccountWrite`), so if the
//! earlier one fails the later one fails too; the wallet then waits for all its batches in
//! flight to be answered and reloads from the database. Two batches of one wallet in one group
//! are written as one (`ledger_writer`).
//!
//! Business rejections go back in the reply. An infrastructure failure of one wallet (a
//! database error, a failed version check because another writer touched the account) drops
//! that wallet's state and its batch without answering, as if its actor had died: the callers
//! retry (ops are idempotent by op key) and the next op reloads the account from the database.
//! The failure is counted as a wallet restart. The shard and its other wallets go on.

use super::ledger_writer::Ledger;
use super::wallet_supervisor::{WalletError, WalletShards};
use crate::domain::{
    AccountId, Balance, BalanceOp, Bucket, HoldId, HoldState, IntentSnapshot, OnrampId,
    OnrampStatus, PaymentIntentId, Posting, Rejection, TransferId, TransferState,
};
use crate::metrics::{MailboxTicket, Metrics};
use crate::store::Store;
use crate::store::accounts::AccountRecord;
use crate::store::group_commit::PlannedBatch;
use crate::store::idempotency::{ClaimRow, IdempotencyWrite};
use crate::store::ledger::{
    AccountWrite, AppliedMovement, Effect, IntentAction, JournalSpec, Reference,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const KIND: &str = "wallet";

/// Limits of wallets and their shards.
#[derive(Debug, Clone, Copy)]
pub struct WalletLimits {
    /// Ops of one wallet committed in one batch at most; a full buffer flushes at once.
    pub flush_batch_max: usize,
    /// A wallet with no op for this long is dropped from memory (passivated); the next op
    /// loads it from the database again.
    pub idle_timeout: Duration,
    /// Shard actors hosting this node's wallets (`WALLETI_WALLET_SHARDS`).
    pub shards: usize,
}

impl Default for WalletLimits {
    fn default() -> WalletLimits {
        WalletLimits {
            flush_batch_max: 512,
            idle_timeout: Duration::from_secs(300),
            shards: 1024,
        }
    }
}

/// Live (loaded) wallets per shard, shared with the supervisor so that the live-wallet gauge
/// can be corrected when a shard dies with its wallets.
pub type LiveWallets = Arc<[AtomicUsize]>;

pub struct ShardArgs {
    pub index: usize,
    pub store: Store,
    pub ledger: Ledger,
    pub metrics: Arc<Metrics>,
    pub limits: WalletLimits,
    pub live: LiveWallets,
    /// Every shard of the node, for the ops a planned op sends on (`Chained`).
    pub shards: WalletShards,
}

/// What every wallet of a shard uses.
struct Shared {
    /// This shard, which the writer's answers are sent back to.
    myself: ActorRef<WalletMsg>,
    index: usize,
    store: Store,
    ledger: Ledger,
    metrics: Arc<Metrics>,
    limits: WalletLimits,
    live: LiveWallets,
    shards: WalletShards,
}

pub struct ShardState {
    shared: Shared,
    wallets: HashMap<AccountId, Wallet>,
    flush_pending: bool,
}

/// Numbers the batches a shard hands to the writer (`InFlight::seq`).
static BATCH_SEQ: AtomicU64 = AtomicU64::new(0);

pub type OpReply = RpcReplyPort<Result<OpOutcome, WalletError>>;
type BalanceReply = RpcReplyPort<Result<Balance, WalletError>>;

/// An op for another wallet, sent on by the wallet that plans the op it is chained to, as soon
/// as that op is applied to the in-memory balance and its batch is handed to the ledger writer:
/// a P2P transfer's credit, which then usually joins its debit's group commit instead of
/// waiting a whole commit for it (`group_commit::add_rows` writes the pair as one completed
/// transfer). Dropped, unsent, when the op it is chained to is not applied (refused, already
/// applied, or its wallet failed): its requester learns that from the dropped reply.
///
/// Safe whatever happens to the debit: the credit of a P2P transfer is a guarded completion
/// (its transfer must be `debited`, or be opened in the same group), and the writer takes
/// batches in the order they were handed to it, the debit's first. If the debit's batch fails,
/// the credit's fails with it and both wallets reload.
pub struct Chained {
    pub account: AccountId,
    pub op: WalletOp,
    pub reply: OpReply,
}

/// How an op is linked to another wallet's op.
pub enum Chain {
    None,
    /// Send this op on once this one is applied and handed to the ledger writer.
    Then(Box<Chained>),
    /// This op was sent on by the wallet of the op it is chained to.
    SentOn,
}

/// An op waiting in its wallet's buffer.
struct Pending {
    op: WalletOp,
    reply: OpReply,
    chain: Chain,
}

/// One hosted wallet: its account as last committed, and what waits for the next flush.
struct Wallet {
    /// `None` until the next flush loads it.
    account: Option<AccountRecord>,
    buffer: Vec<Pending>,
    balance_waiters: Vec<BalanceReply>,
    last_activity: Instant,
    /// Batches handed to the ledger writer and not answered yet, oldest first.
    in_flight: VecDeque<InFlight>,
    /// A batch failed (why): once none is in flight the wallet reloads, or plans the failed
    /// batches' own ops again (`retry_without_sent_on`).
    failed: Option<String>,
    /// The failed batches' ops, unanswered.
    failed_ops: Vec<Pending>,
}

/// A batch handed to the ledger writer, with what its commit makes of the wallet and whom it
/// answers.
struct InFlight {
    seq: u64,
    /// The account's balance and version once this batch is committed.
    balance: Balance,
    version: i64,
    batch: Vec<Pending>,
    outcomes: Vec<OpOutcome>,
    movements: usize,
    /// The writer's answer, once it came (answers are taken in order).
    result: Option<crate::store::StoreResult<()>>,
}

impl Wallet {
    fn new() -> Wallet {
        Wallet {
            account: None,
            buffer: Vec::new(),
            balance_waiters: Vec::new(),
            last_activity: Instant::now(),
            in_flight: VecDeque::new(),
            failed: None,
            failed_ops: Vec::new(),
        }
    }

    fn has_work(&self) -> bool {
        !self.buffer.is_empty() || !self.balance_waiters.is_empty()
    }

    /// Its buffered ops may be planned now: nothing is in flight, or they may ride on top of
    /// what is (`pipelinable`) and no batch of it has failed.
    fn may_plan(&self) -> bool {
        self.in_flight.is_empty()
            || self.failed.is_none() && self.buffer.iter().all(|pending| pipelinable(&pending.op))
    }

    /// The account as the last batch in flight leaves it (as committed if none is).
    fn planned(&self, committed: &AccountRecord) -> AccountRecord {
        let mut planned = committed.clone();
        if let Some(last) = self.in_flight.back() {
            planned.balance = last.balance;
            planned.version = last.version;
        }
        planned
    }
}

/// An op a wallet may plan on top of a batch still in flight: a first attempt of a P2P
/// transfer's leg. It reads nothing before it is planned (its guards are checked by the
/// commit), and its balance check is against the balance the batches in flight leave.
fn pipelinable(op: &WalletOp) -> bool {
    !op.replay
        && op.counterpart.is_none()
        && match &op.effect {
            Effect::OpenTransfer(transfer) | Effect::CompleteTransfer(transfer) => {
                transfer.kind == crate::domain::TransferKind::P2p
            }
            _ => false,
        }
}

/// One balance change requested of a wallet, with everything its commit must write.
#[derive(Debug, Clone)]
pub struct WalletOp {
    /// Unique per account: the same op sent twice is applied once.
    pub op_key: String,
    /// Entry kind shown to users (`transfer_debit`, `adjustment`, …).
    pub kind: &'static str,
    pub balance_op: BalanceOp,
    pub journal: JournalSpec,
    pub reference: Reference,
    /// A system account that takes the opposite side in the same transaction.
    pub counterpart: Option<AccountId>,
    pub effect: Effect,
    /// The op may have been committed before (a retry, a resumed saga): look its op key and
    /// saga state up before applying it. A first attempt skips those reads; if it was not a
    /// first attempt after all, the unique op key or the saga's guarded update makes the
    /// commit fail, the wallet reloads, and the retry (marked `replay`) sees the truth.
    pub replay: bool,
    /// The request's idempotency claim (written with this op) or response (stored with it).
    pub idempotency: IdempotencyWrite,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutcome {
    Applied {
        balance: Balance,
    },
    /// An op with this key was committed before; nothing new was written.
    AlreadyApplied,
    Rejected(Rejection),
}

pub enum WalletMsg {
    /// Apply the op; once it is applied and handed to the ledger writer, send `Chained` on.
    Apply(AccountId, Box<WalletOp>, OpReply, MailboxTicket, Chain),
    /// The committed balance as the wallet holds it (advisory: ops in flight may change it).
    Balance(AccountId, BalanceReply),
    Flush,
    /// Sent by the supervisor every half idle timeout: wallets idle that long are dropped.
    IdleCheck,
    /// The ledger writer's answer to a wallet's batch (`InFlight::seq`).
    Committed(AccountId, u64, crate::store::StoreResult<()>),
}

/// Hosts the wallets whose account ids hash to it (see the module's documentation).
pub struct WalletShard;

impl Actor for WalletShard {
    type Msg = WalletMsg;
    type State = ShardState;
    type Arguments = ShardArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<WalletMsg>,
        args: ShardArgs,
    ) -> Result<ShardState, ActorProcessingErr> {
        Ok(ShardState {
            shared: Shared {
                myself,
                index: args.index,
                store: args.store,
                ledger: args.ledger,
                metrics: args.metrics,
                limits: args.limits,
                live: args.live,
                shards: args.shards,
            },
            wallets: HashMap::new(),
            flush_pending: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<WalletMsg>,
        message: WalletMsg,
        state: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        let metrics = Arc::clone(&state.shared.metrics);
        let _timer = metrics.actor_message(KIND);
        match message {
            WalletMsg::Apply(account, op, reply, ticket, chain) => {
                drop(ticket);
                let wallet = state.wallets.entry(account).or_insert_with(Wallet::new);
                wallet.last_activity = Instant::now();
                wallet.buffer.push(Pending {
                    op: *op,
                    reply,
                    chain,
                });
                if wallet.buffer.len() < state.shared.limits.flush_batch_max {
                    request_flush(&myself, state)?;
                } else {
                    Box::pin(flush_shard(state)).await;
                }
            }
            WalletMsg::Flush => {
                state.flush_pending = false;
                Box::pin(flush_shard(state)).await;
            }
            WalletMsg::Balance(account, reply) => {
                let wallet = state.wallets.entry(account).or_insert_with(Wallet::new);
                match &wallet.account {
                    Some(loaded) => {
                        let _ = reply.send(Ok(loaded.balance));
                    }
                    None => {
                        wallet.balance_waiters.push(reply);
                        request_flush(&myself, state)?;
                    }
                }
            }
            WalletMsg::Committed(account, seq, result) => {
                if committed(state, account, seq, result).await {
                    request_flush(&myself, state)?;
                }
            }
            WalletMsg::IdleCheck => {
                let idle_timeout = state.shared.limits.idle_timeout;
                let before = state.wallets.len();
                state.wallets.retain(|_, wallet| {
                    wallet.has_work()
                        || !wallet.in_flight.is_empty()
                        || wallet.last_activity.elapsed() < idle_timeout
                });
                let dropped = before - state.wallets.len();
                if dropped > 0 {
                    // Wallets with no work are loaded ones (an unloaded wallet has work).
                    state.shared.unload(dropped);
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<WalletMsg>,
        state: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        let loaded = state
            .wallets
            .values()
            .filter(|wallet| wallet.account.is_some())
            .count();
        state.shared.unload(loaded);
        Ok(())
    }
}

impl Shared {
    /// Sends a chained op to its wallet's shard; if it cannot be sent, its reply is dropped
    /// and its requester goes the ordinary way.
    fn send_on(&self, then: Chained) {
        let Chained { account, op, reply } = then;
        if let Some(shard) = self.shards.of(account) {
            let ticket = self.metrics.mailbox_ticket(KIND);
            let _ = shard.send_message(WalletMsg::Apply(
                account,
                Box::new(op),
                reply,
                ticket,
                Chain::SentOn,
            ));
        }
    }

    fn loaded(&self) {
        self.live[self.index].fetch_add(1, Ordering::Relaxed);
        self.metrics.actors_live.with_label_values(&[KIND]).inc();
    }

    fn unload(&self, wallets: usize) {
        self.live[self.index].fetch_sub(wallets, Ordering::Relaxed);
        self.metrics
            .actors_live
            .with_label_values(&[KIND])
            .sub(wallets as i64);
    }
}

fn request_flush(
    myself: &ActorRef<WalletMsg>,
    state: &mut ShardState,
) -> Result<(), ActorProcessingErr> {
    if !state.flush_pending {
        state.flush_pending = true;
        myself.send_message(WalletMsg::Flush)?;
    }
    Ok(())
}

/// Flushes every wallet of the shard that has work, all at once (their batches join the same
/// group commits). A wallet that fails is dropped, its callers left unanswered (they retry).
/// Ops left in a buffer wait for their wallet's batches in flight (`committed` flushes again).
async fn flush_shard(state: &mut ShardState) {
    let ShardState {
        shared, wallets, ..
    } = state;
    let shared: &Shared = shared;
    let flushes = wallets
        .iter_mut()
        .filter(|(_, wallet)| wallet.has_work())
        .map(|(account, wallet)| async move { (*account, flush(shared, *account, wallet).await) });
    let results = futures_util::future::join_all(flushes).await;
    for (account, result) in results {
        match result {
            Ok(Flushed::Done) => {}
            Ok(Flushed::Missing) => {
                wallets.remove(&account);
            }
            Err(error) => {
                if let Some(wallet) = wallets.get_mut(&account)
                    && !wallet.in_flight.is_empty()
                {
                    // It reloads once its batches in flight are answered (`committed`).
                    wallet.failed = Some(error.to_string());
                    continue;
                }
                let was_loaded = wallets
                    .remove(&account)
                    .is_some_and(|wallet| wallet.account.is_some());
                if !was_loaded {
                    tracing::warn!(account_id = %account, %error, "wallet load failed");
                    continue;
                }
                shared.unload(1);
                tracing::warn!(account_id = %account, %error, "wallet failed; it reloads on its next op");
                shared
                    .metrics
                    .record_restart(KIND, format!("account {account}: {error}"));
            }
        }
    }
}

enum Flushed {
    /// Planned and handed on, or nothing to do, or waiting for the batches in flight.
    Done,
    /// The account does not exist; its callers were told.
    Missing,
}

/// Loads the wallet if needed, then validates and commits every buffered op in one batch and
/// answers the callers.
async fn flush(
    shared: &Shared,
    account_id: AccountId,
    wallet: &mut Wallet,
) -> Result<Flushed, ActorProcessingErr> {
    if wallet.account.is_none() {
        if !wallet.in_flight.is_empty() {
            // Failed: it reloads once its batches in flight are answered.
            return Ok(Flushed::Done);
        }
        // Boxed: the shard's task keeps room for its largest future while it lives.
        match Box::pin(shared.store.load_account(account_id)).await? {
            Some(account) => {
                assert_loaded_invariants(&account);
                wallet.account = Some(account);
                shared.loaded();
            }
            None => {
                for pending in wallet.buffer.drain(..) {
                    let _ = pending.reply.send(Err(WalletError::AccountNotFound));
                }
                for reply in wallet.balance_waiters.drain(..) {
                    let _ = reply.send(Err(WalletError::AccountNotFound));
                }
                return Ok(Flushed::Missing);
            }
        }
    }
    let Some(account) = wallet.account.as_ref() else {
        return Ok(Flushed::Done);
    };
    let balance = account.balance;
    if !wallet.buffer.is_empty() && wallet.may_plan() {
        let batch = std::mem::take(&mut wallet.buffer);
        match commit_batch(shared, wallet, batch).await? {
            Planned::HandedOn | Planned::Answered => {}
            Planned::Wait(batch) => wallet.buffer = batch,
        }
    }
    for reply in wallet.balance_waiters.drain(..) {
        let _ = reply.send(Ok(balance));
    }
    Ok(Flushed::Done)
}

/// What became of a wallet's buffered ops.
enum Planned {
    /// Handed to the ledger writer: answered when its commit is.
    HandedOn,
    /// Nothing to write: answered already.
    Answered,
    /// Back to the buffer until the batches in flight are answered (an op would be refused
    /// for lack of funds that a batch in flight may yet give back, by failing).
    Wait(Vec<Pending>),
}

/// The writer's answer to one of a wallet's batches. Answers are taken in the order the
/// batches were handed on. A committed batch moves the wallet's account on and answers its
/// callers. A failed one leaves them unanswered and fails the wallet's later batches in flight
/// with it (they expect what it would have left). Once none is in flight, a failure that came
/// from credits sent on by other wallets (their debits failed in the same group) while nothing
/// of this wallet moved plans the failed batches' other ops again (`retry_without_sent_on`);
/// any other makes the wallet reload from the database, its failed callers retrying as
/// replays. True if the wallet has ops to plan now.
async fn committed(
    state: &mut ShardState,
    account_id: AccountId,
    seq: u64,
    result: crate::store::StoreResult<()>,
) -> bool {
    let ShardState {
        shared, wallets, ..
    } = state;
    let Some(wallet) = wallets.get_mut(&account_id) else {
        return false;
    };
    let Some(slot) = wallet.in_flight.iter_mut().find(|batch| batch.seq == seq) else {
        return false;
    };
    slot.result = Some(result);
    while wallet
        .in_flight
        .front()
        .is_some_and(|batch| batch.result.is_some())
    {
        let Some(done) = wallet.in_flight.pop_front() else {
            break;
        };
        match done.result {
            Some(Ok(())) => {
                if wallet.failed.is_none()
                    && let Some(account) = wallet.account.as_mut()
                {
                    account.balance = done.balance;
                    account.version = done.version;
                    tracing::debug!(account_id = %account.id, ops = done.movements, version = account.version, "wallet batch committed");
                }
                shared
                    .metrics
                    .wallet_batch_size
                    .with_label_values(&["committed"])
                    .observe(done.movements as f64);
                for (pending, outcome) in done.batch.into_iter().zip(done.outcomes) {
                    // A caller that timed out is gone; its op is committed and a retry will
                    // see that.
                    let _ = pending.reply.send(Ok(outcome));
                }
            }
            Some(Err(error)) => {
                if wallet.failed.is_none() {
                    wallet.failed = Some(error.to_string());
                }
                wallet.failed_ops.extend(done.batch);
            }
            None => unreachable!("only answered batches are taken"),
        }
    }
    if wallet.in_flight.is_empty()
        && let Some(failure) = wallet.failed.take()
    {
        let failed_ops = std::mem::take(&mut wallet.failed_ops);
        let again = match wallet.account.as_ref() {
            Some(account) => retry_without_sent_on(shared, account, failed_ops, &failure).await,
            None => None,
        };
        match again {
            Some(again) => {
                // Planned again first, before whatever queued meanwhile.
                let queued = std::mem::replace(&mut wallet.buffer, again);
                wallet.buffer.extend(queued);
            }
            None => {
                tracing::warn!(account_id = %account_id, %failure, "wallet failed; it reloads on its next op");
                shared
                    .metrics
                    .record_restart(KIND, format!("account {account_id}: {failure}"));
                if wallet.account.take().is_some() {
                    shared.unload(1);
                }
            }
        }
    }
    wallet.has_work() && wallet.may_plan()
}

/// Validates one wallet's buffered ops in one batch against the balance its batches in flight
/// leave, and hands the batch to the ledger writer (its callers are answered when it commits,
/// `committed`), or answers them now if it writes nothing.
async fn commit_batch(
    shared: &Shared,
    wallet: &mut Wallet,
    mut batch: Vec<Pending>,
) -> Result<Planned, ActorProcessingErr> {
    let Some(committed) = wallet.account.as_ref() else {
        return Ok(Planned::Wait(batch));
    };
    let account = &wallet.planned(committed);
    let store = &shared.store;
    let ops = || batch.iter().map(|pending| &pending.op);
    let op_keys: Vec<&str> = ops()
        .filter(|op| op.replay)
        .map(|op| op.op_key.as_str())
        .collect();
    let existing = store.existing_op_keys(account.id, &op_keys).await?;
    let guarded: Vec<TransferId> = ops()
        .filter(|op| op.replay)
        .filter_map(|op| op.effect.guarded_transfer())
        .collect();
    let transfer_states: HashMap<TransferId, TransferState> =
        store.transfer_states(&guarded).await?.into_iter().collect();

    let guarded_onramps: Vec<OnrampId> = ops()
        .filter(|op| op.replay)
        .filter_map(|op| op.effect.guarded_onramp())
        .collect();
    let onramp_states: HashMap<OnrampId, OnrampStatus> = store
        .onramp_states(&guarded_onramps)
        .await?
        .into_iter()
        .collect();
    // Holds and payment intents are read for every op that touches them, first attempt or
    // not: races on them (capture against cancel against expiry, two users confirming one
    // intent) are normal, and the version check on this account makes the read safe.
    let hold_ids: Vec<HoldId> = ops().filter_map(|op| op.effect.guarded_hold()).collect();
    let holds = store.hold_states(&hold_ids).await?;
    let intent_ids: Vec<PaymentIntentId> = ops()
        .filter_map(|op| op.effect.intent_action().map(|(intent, _)| intent))
        .collect();
    let intents = store.intent_snapshots(&intent_ids).await?;
    // A replayed op whose request's idempotency key another request holds is refused (its
    // first attempt lost the claim in the commit: the key belongs to someone else).
    let replayed_claims: Vec<&ClaimRow> = ops()
        .filter(|op| op.replay)
        .filter_map(|op| op.idempotency.claim())
        .collect();
    let claims_taken = store.claims_taken_by_others(&replayed_claims).await?;
    let guards = Guards {
        claims_taken: &claims_taken,
        existing: &existing,
        transfers: &transfer_states,
        onramps: &onramp_states,
        holds: &holds,
        intents: &intents,
    };
    let plan = plan_batch(account, ops(), &guards);
    if plan.refused_for_balance && !wallet.in_flight.is_empty() {
        return Ok(Planned::Wait(batch));
    }
    // The ops to send on: those chained to an applied op (the others are dropped below).
    let chained: Vec<Box<Chained>> = batch
        .iter_mut()
        .zip(&plan.outcomes)
        .filter(|(_, outcome)| matches!(outcome, OpOutcome::Applied { .. }))
        .filter_map(
            |(pending, _)| match std::mem::replace(&mut pending.chain, Chain::None) {
                Chain::Then(then) => Some(then),
                other => {
                    pending.chain = other;
                    None
                }
            },
        )
        .collect();
    if !plan.movements.is_empty() {
        let write = AccountWrite {
            account: account.id,
            expected_version: account.version,
            expected_available: account.balance.available,
            expected_locked: account.balance.locked,
            available: plan.balance.available,
            locked: plan.balance.locked,
            steps: 1,
        };
        let movements = plan.movements.len();
        let committing = shared.ledger.submit(PlannedBatch {
            account: write,
            movements: plan.movements,
        });
        // Handed to the writer first: a chained op's batch always queues behind this one.
        for then in chained {
            shared.send_on(*then);
        }
        let seq = BATCH_SEQ.fetch_add(1, Ordering::Relaxed);
        wallet.in_flight.push_back(InFlight {
            seq,
            balance: plan.balance,
            version: account.version + 1,
            batch,
            outcomes: plan.outcomes,
            movements,
            result: None,
        });
        let shard = shared.myself.clone();
        let account_id = account.id;
        tokio::spawn(async move {
            let result = committing.await;
            let _ = shard.send_message(WalletMsg::Committed(account_id, seq, result));
        });
        return Ok(Planned::HandedOn);
    } else if plan.refused_for_balance {
        // Nothing was written, so no version check ran: before refusing for lack of funds,
        // make sure no other writer (another node) changed the account since we loaded it.
        let current = store.account_version(account.id).await?;
        if current != Some(account.version) {
            return Err(Box::new(StaleAccount(account.id)));
        }
    }
    for (pending, outcome) in batch.into_iter().zip(plan.outcomes) {
        let _ = pending.reply.send(Ok(outcome));
    }
    Ok(Planned::Answered)
}

/// The batch did not commit. If it holds ops sent on by other wallets (P2P credits chained to
/// their debits), the likeliest cause is one of those debits failing in the same group, which
/// fails the credit's guarded completion and with it this innocent batch. When the account is
/// still at the version this wallet holds, nothing of the batch committed and the wallet's
/// state is right: the sent-on ops are dropped (their sagas credit again the ordinary way,
/// once their debits stand) and the others are planned again, as replays, in the next flush.
/// Otherwise (or on a second failure, with no sent-on op left) the wallet fails: `None`.
async fn retry_without_sent_on(
    shared: &Shared,
    account: &AccountRecord,
    batch: Vec<Pending>,
    error: &str,
) -> Option<Vec<Pending>> {
    let sent_on = batch
        .iter()
        .any(|pending| matches!(pending.chain, Chain::SentOn));
    if !sent_on {
        return None;
    }
    match shared.store.account_version(account.id).await {
        Ok(Some(version)) if version == account.version => {}
        _ => return None,
    }
    tracing::debug!(account_id = %account.id, %error, "batch with sent-on credits failed; planning the rest again");
    Some(
        batch
            .into_iter()
            .filter(|pending| !matches!(pending.chain, Chain::SentOn))
            .map(|mut pending| {
                pending.op.replay = true;
                pending
            })
            .collect(),
    )
}

/// What was read before applying a batch: op keys already committed, and the states of the
/// sagas and on-ramps that replayed ops require.
struct Guards<'a> {
    claims_taken: &'a HashSet<(String, String)>,
    existing: &'a HashSet<String>,
    transfers: &'a HashMap<TransferId, TransferState>,
    onramps: &'a HashMap<OnrampId, OnrampStatus>,
    holds: &'a HashMap<HoldId, HoldState>,
    intents: &'a HashMap<PaymentIntentId, IntentSnapshot>,
}

struct BatchPlan {
    balance: Balance,
    movements: Vec<AppliedMovement>,
    outcomes: Vec<OpOutcome>,
    /// Some op was refused because of the in-memory balance (which may be stale).
    refused_for_balance: bool,
}

/// Another writer changed the account: the wallet must reload.
#[derive(Debug, thiserror::Error)]
#[error("account {0} changed under its wallet")]
pub struct StaleAccount(pub AccountId);

/// Pure: applies the ops in order to the in-memory balance.
fn plan_batch<'a>(
    account: &AccountRecord,
    batch: impl ExactSizeIterator<Item = &'a WalletOp>,
    guards: &Guards<'_>,
) -> BatchPlan {
    let mut balance = account.balance;
    let mut movements = Vec::new();
    let mut outcomes: Vec<OpOutcome> = Vec::with_capacity(batch.len());
    let mut first_with_key: HashMap<&str, usize> = HashMap::new();
    let mut moved_transfers: HashSet<TransferId> = HashSet::new();
    let mut moved_onramps: HashSet<OnrampId> = HashSet::new();
    let mut holds = guards.holds.clone();
    let mut intents = guards.intents.clone();
    let mut refused_for_balance = false;
    for (index, op) in batch.enumerate() {
        if guards.existing.contains(&op.op_key) {
            outcomes.push(OpOutcome::AlreadyApplied);
            continue;
        }
        if let Some(first) = first_with_key.get(op.op_key.as_str()) {
            let outcome = match &outcomes[*first] {
                OpOutcome::Applied { .. } => OpOutcome::AlreadyApplied,
                other => other.clone(),
            };
            outcomes.push(outcome);
            continue;
        }
        first_with_key.insert(op.op_key.as_str(), index);
        if let Some(claim) = op.idempotency.claim()
            && guards
                .claims_taken
                .contains(&(claim.caller.clone(), claim.key.clone()))
        {
            outcomes.push(OpOutcome::Rejected(Rejection::IdempotencyKeyClaimed));
            continue;
        }
        if let Some(transfer) = op.effect.guarded_transfer() {
            // A first attempt is checked by the guarded update in the commit instead.
            let debited =
                !op.replay || guards.transfers.get(&transfer) == Some(&TransferState::Debited);
            if !debited || !moved_transfers.insert(transfer) {
                outcomes.push(OpOutcome::Rejected(Rejection::InvalidTransition));
                continue;
            }
        }
        if let Some(onramp) = op.effect.guarded_onramp() {
            let processing =
                !op.replay || guards.onramps.get(&onramp) == Some(&OnrampStatus::Processing);
            if !processing || !moved_onramps.insert(onramp) {
                outcomes.push(OpOutcome::Rejected(Rejection::InvalidTransition));
                continue;
            }
        }
        let hold = op.effect.guarded_hold();
        if let Some(hold) = hold
            && holds.get(&hold) != Some(&HoldState::Held)
        {
            outcomes.push(OpOutcome::Rejected(Rejection::HoldAlreadyResolved));
            continue;
        }
        let mut intent_after = None;
        if let Some((intent, action)) = op.effect.intent_action() {
            let Some(mut snapshot) = intents.get(&intent).copied() else {
                outcomes.push(OpOutcome::Rejected(Rejection::PaymentIntentUnexpectedState));
                continue;
            };
            let checked = match action {
                IntentAction::Confirm { manual } => snapshot.confirm(manual),
                IntentAction::Refund(amount) => snapshot.refund(amount),
            };
            if let Err(rejection) = checked {
                outcomes.push(OpOutcome::Rejected(rejection));
                continue;
            }
            intent_after = Some((intent, snapshot));
        }
        match balance.apply(op.balance_op, account.solvency()) {
            Ok((after, postings)) => {
                if let Some(hold) = hold {
                    holds.insert(hold, HoldState::Captured);
                }
                if let Some((intent, snapshot)) = intent_after {
                    intents.insert(intent, snapshot);
                }
                movements.push(applied_movement(op, balance, &postings));
                balance = after;
                outcomes.push(OpOutcome::Applied { balance: after });
            }
            Err(rejection) => {
                if let Some(transfer) = op.effect.guarded_transfer() {
                    moved_transfers.remove(&transfer);
                }
                if let Some(onramp) = op.effect.guarded_onramp() {
                    moved_onramps.remove(&onramp);
                }
                refused_for_balance |= matches!(rejection, Rejection::InsufficientFunds);
                outcomes.push(OpOutcome::Rejected(rejection));
            }
        }
    }
    if account.solvency() == crate::domain::Solvency::NonNegative {
        assert!(
            balance.available >= 0 && balance.locked >= 0,
            "wallet {} would go negative",
            account.id
        );
    }
    BatchPlan {
        balance,
        movements,
        outcomes,
        refused_for_balance,
    }
}

fn applied_movement(op: &WalletOp, before: Balance, postings: &[Posting]) -> AppliedMovement {
    let mut running = before;
    let postings = postings
        .iter()
        .map(|posting| {
            let bucket = match posting.bucket {
                Bucket::Available => &mut running.available,
                Bucket::Locked => &mut running.locked,
            };
            *bucket += posting.amount;
            (*posting, *bucket)
        })
        .collect();
    AppliedMovement {
        op_key: op.op_key.clone(),
        kind: op.kind,
        journal: op.journal.clone(),
        reference: op.reference.clone(),
        postings,
        counterpart: op.counterpart,
        effect: op.effect.clone(),
        idempotency: op.idempotency.clone(),
    }
}

/// What we read back must satisfy what we wrote: a wallet is never negative.
fn assert_loaded_invariants(account: &AccountRecord) {
    assert!(
        account.balance.locked >= 0,
        "account {} has negative locked balance",
        account.id
    );
    if account.solvency() == crate::domain::Solvency::NonNegative {
        assert!(
            account.balance.available >= 0,
            "wallet {} loaded negative",
            account.id
        );
    }
    assert!(
        account.version >= 0,
        "account {} has a negative version",
        account.id
    );
}

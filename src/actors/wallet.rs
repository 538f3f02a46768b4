//! `WalletActor`: the single writer of one account's balance. It validates each op against its
//! in-memory balance in arrival order and persists through `store::ledger`.
//!
//! Batching: an op is buffered and, if no flush is pending, the actor sends itself `Flush`.
//! Every op that arrives before that `Flush` is dequeued joins the buffer, so when `Flush` runs
//! the whole buffer is planned against the in-memory balance and handed, as one batch, to the
//! node's `LedgerWriter`, which commits it together with other wallets' batches (group commit);
//! then every caller is answered. At low load a batch is one op with no added wait; under load
//! a hot wallet commits many ops per batch and many wallets' batches share one transaction.
//!
//! Business rejections go back in the reply. Infrastructure failures (database errors, a
//! failed version check because another writer touched the account) return `Err`, which kills
//! the actor without answering: its callers retry (ops are idempotent by op key) and the
//! supervisor restarts the actor, which reloads the account from the database.

use super::ledger_writer::Ledger;
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
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const KIND: &str = "wallet";

/// Limits of one wallet actor.
#[derive(Debug, Clone, Copy)]
pub struct WalletLimits {
    /// Ops committed in one transaction at most; a full buffer flushes at once.
    pub flush_batch_max: usize,
    /// An actor with no op for this long stops; the next op respawns it from the database.
    pub idle_timeout: Duration,
}

impl Default for WalletLimits {
    fn default() -> WalletLimits {
        WalletLimits {
            flush_batch_max: 512,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

pub struct WalletArgs {
    pub account: AccountId,
    pub store: Store,
    pub ledger: Ledger,
    pub metrics: Arc<Metrics>,
    pub limits: WalletLimits,
}

pub struct WalletState {
    account: AccountRecord,
    store: Store,
    ledger: Ledger,
    metrics: Arc<Metrics>,
    limits: WalletLimits,
    buffer: Vec<(WalletOp, RpcReplyPort<OpOutcome>)>,
    flush_pending: bool,
    last_activity: Instant,
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
    /// commit fail, the actor restarts, and the retry (marked `replay`) sees the truth.
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
    Apply(Box<WalletOp>, RpcReplyPort<OpOutcome>, MailboxTicket),
    /// The committed balance as this actor holds it (advisory: ops in flight may change it).
    Balance(RpcReplyPort<Balance>),
    Flush,
    /// Sent by the supervisor every half idle timeout: an actor idle that long stops.
    IdleCheck,
}

/// The account to start does not exist.
#[derive(Debug, thiserror::Error)]
#[error("account {0} not found")]
pub struct AccountMissing(pub AccountId);

pub struct WalletActor;

impl Actor for WalletActor {
    type Msg = WalletMsg;
    type State = WalletState;
    type Arguments = WalletArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<WalletMsg>,
        args: WalletArgs,
    ) -> Result<WalletState, ActorProcessingErr> {
        // Boxed: an actor's task keeps room for its largest future for as long as it lives, and
        // a wallet actor is mostly idle; the database futures are allocated only while used.
        let account = Box::pin(args.store.load_account(args.account))
            .await?
            .ok_or(AccountMissing(args.account))?;
        assert_loaded_invariants(&account);
        let _ = myself;
        Ok(WalletState {
            account,
            store: args.store,
            ledger: args.ledger,
            metrics: args.metrics,
            limits: args.limits,
            buffer: Vec::new(),
            flush_pending: false,
            last_activity: Instant::now(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<WalletMsg>,
        message: WalletMsg,
        state: &mut WalletState,
    ) -> Result<(), ActorProcessingErr> {
        let metrics = Arc::clone(&state.metrics);
        let _timer = metrics.actor_message(KIND);
        match message {
            WalletMsg::Apply(op, reply, ticket) => {
                drop(ticket);
                state.last_activity = Instant::now();
                state.buffer.push((*op, reply));
                if state.buffer.len() >= state.limits.flush_batch_max {
                    return Box::pin(flush(state)).await;
                }
                if !state.flush_pending {
                    state.flush_pending = true;
                    myself.send_message(WalletMsg::Flush)?;
                }
                Ok(())
            }
            WalletMsg::Flush => {
                state.flush_pending = false;
                Box::pin(flush(state)).await
            }
            WalletMsg::Balance(reply) => {
                let _ = reply.send(state.account.balance);
                Ok(())
            }
            WalletMsg::IdleCheck => {
                if state.buffer.is_empty()
                    && state.last_activity.elapsed() >= state.limits.idle_timeout
                {
                    myself.stop(Some("idle".into()));
                }
                Ok(())
            }
        }
    }
}

/// Validates and commits every buffered op in one transaction, then answers their callers.
async fn flush(state: &mut WalletState) -> Result<(), ActorProcessingErr> {
    if state.buffer.is_empty() {
        return Ok(());
    }
    let batch = std::mem::take(&mut state.buffer);
    let op_keys: Vec<&str> = batch
        .iter()
        .filter(|(op, _)| op.replay)
        .map(|(op, _)| op.op_key.as_str())
        .collect();
    let existing = state
        .store
        .existing_op_keys(state.account.id, &op_keys)
        .await?;
    let guarded: Vec<TransferId> = batch
        .iter()
        .filter(|(op, _)| op.replay)
        .filter_map(|(op, _)| op.effect.guarded_transfer())
        .collect();
    let transfer_states: HashMap<TransferId, TransferState> = state
        .store
        .transfer_states(&guarded)
        .await?
        .into_iter()
        .collect();

    let guarded_onramps: Vec<OnrampId> = batch
        .iter()
        .filter(|(op, _)| op.replay)
        .filter_map(|(op, _)| op.effect.guarded_onramp())
        .collect();
    let onramp_states: HashMap<OnrampId, OnrampStatus> = state
        .store
        .onramp_states(&guarded_onramps)
        .await?
        .into_iter()
        .collect();
    // Holds and payment intents are read for every op that touches them, first attempt or
    // not: races on them (capture against cancel against expiry, two users confirming one
    // intent) are normal, and the version check on this account makes the read safe.
    let hold_ids: Vec<HoldId> = batch
        .iter()
        .filter_map(|(op, _)| op.effect.guarded_hold())
        .collect();
    let holds = state.store.hold_states(&hold_ids).await?;
    let intent_ids: Vec<PaymentIntentId> = batch
        .iter()
        .filter_map(|(op, _)| op.effect.intent_action().map(|(intent, _)| intent))
        .collect();
    let intents = state.store.intent_snapshots(&intent_ids).await?;
    // A replayed op whose request's idempotency key another request holds is refused (its
    // first attempt lost the claim in the commit: the key belongs to someone else).
    let replayed_claims: Vec<&ClaimRow> = batch
        .iter()
        .filter(|(op, _)| op.replay)
        .filter_map(|(op, _)| op.idempotency.claim())
        .collect();
    let claims_taken = state.store.claims_taken_by_others(&replayed_claims).await?;
    let guards = Guards {
        claims_taken: &claims_taken,
        existing: &existing,
        transfers: &transfer_states,
        onramps: &onramp_states,
        holds: &holds,
        intents: &intents,
    };
    let plan = plan_batch(&state.account, &batch, &guards);
    if !plan.movements.is_empty() {
        let write = AccountWrite {
            account: state.account.id,
            expected_version: state.account.version,
            available: plan.balance.available,
            locked: plan.balance.locked,
        };
        let ops = plan.movements.len();
        state
            .ledger
            .commit(PlannedBatch {
                account: write,
                movements: plan.movements,
            })
            .await?;
        state.account.balance = plan.balance;
        state.account.version += 1;
        state
            .metrics
            .wallet_batch_size
            .with_label_values(&["committed"])
            .observe(ops as f64);
        tracing::debug!(account_id = %state.account.id, ops, version = state.account.version, "wallet batch committed");
    } else if plan.refused_for_balance {
        // Nothing was written, so no version check ran: before refusing for lack of funds,
        // make sure no other writer (another node) changed the account since we loaded it.
        let current = state.store.account_version(state.account.id).await?;
        if current != Some(state.account.version) {
            return Err(Box::new(StaleAccount(state.account.id)));
        }
    }
    for ((_, reply), outcome) in batch.into_iter().zip(plan.outcomes) {
        // A caller that timed out is gone; its op is committed and a retry will see that.
        let _ = reply.send(outcome);
    }
    Ok(())
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

/// Another writer changed the account: the actor must reload (its supervisor restarts it).
#[derive(Debug, thiserror::Error)]
#[error("account {0} changed under its wallet actor")]
pub struct StaleAccount(pub AccountId);

/// Pure: applies the ops in order to the in-memory balance.
fn plan_batch(
    account: &AccountRecord,
    batch: &[(WalletOp, RpcReplyPort<OpOutcome>)],
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
    for (index, (op, _)) in batch.iter().enumerate() {
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

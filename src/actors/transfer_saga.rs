//! `TransferSaga`: one actor per transfer in flight. It moves money between two wallets
//! in steps, each step one atomic transaction that also records the saga's state:
//! debit source (transfer becomes `debited`) → credit target (`completed`), or, if the credit
//! is refused, refund source (`failed`). Steps carry op keys, so re-sending a step that was
//! already committed changes nothing: a saga resumed after a crash just re-sends its step.
//! Unfinished sagas are found and resumed at start-up and periodically (`resume_unfinished`).

use super::wallet::{Chained, OpOutcome, WalletOp};
use super::wallet_supervisor::{WalletError, Wallets};
use crate::domain::{Amount, BalanceOp, HoldId, Rejection, TransferKind, TransferState};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::idempotency::{ClaimRow, CompletionRow, IdempotencyWrite};
use crate::store::ledger::{Effect, JournalSpec, Reference};
use crate::store::payments::RefundRecord;
use crate::store::transfers::TransferRecord;
use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use tokio::sync::oneshot;

pub const KIND: &str = "transfer_saga";

/// What the saga's dependencies are.
#[derive(Clone)]
pub struct SagaContext {
    pub wallets: Wallets,
    pub store: Store,
    pub metrics: Arc<Metrics>,
}

pub enum SagaStart {
    /// A new transfer: debit first. The record is what the debit step will insert. `replay`:
    /// an earlier attempt (an idempotency takeover) may already have sent the debit.
    New {
        transfer: TransferRecord,
        replay: bool,
        opening: Opening,
        /// The request's idempotency key, claimed by the debit and answered by the last step.
        keyed: Option<Box<SagaKeyed>>,
    },
    /// A transfer already debited: continue from its current step.
    Resume(TransferRecord),
}

/// A saga started by an idempotent request: the debit writes the key's claim, and the step that
/// settles the transfer stores the response `render` makes of it, in the same transactions.
#[derive(Debug, Clone)]
pub struct SagaKeyed {
    pub claim: ClaimRow,
    /// The response body for the settled transfer (status 201), byte for byte what the
    /// requester is answered.
    pub render: fn(&TransferRecord) -> String,
}

impl SagaKeyed {
    fn completion(&self, settled: &TransferRecord) -> IdempotencyWrite {
        IdempotencyWrite::Complete(Box::new(CompletionRow {
            caller: self.claim.caller.clone(),
            key: self.claim.key.clone(),
            status: 201,
            body: (self.render)(settled),
        }))
    }
}

/// What the saga's first step takes from the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// Debit `available` (P2P transfers, automatic payments).
    Debit,
    /// Capture a hold: the transfer's amount leaves `locked`, the rest of the hold returns to
    /// `available`.
    Capture { hold: HoldId, held: Amount },
    /// Debit the merchant for this refund.
    Refund(Box<RefundRecord>),
}

/// How the saga ended, from its requester's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SagaOutcome {
    /// The debit was refused; no transfer exists.
    Rejected(Rejection),
    /// This run's own step settled the transfer (`completed` or `failed`); with a keyed
    /// request, that step stored the response.
    Settled(TransferRecord),
    /// The transfer as the database has it (another run settled it, or it is still
    /// `debited` because a later step could not run yet and will be resumed).
    Found(TransferRecord),
    /// The debit's outcome is unknown (timeout, database unavailable).
    Unavailable(String),
}

pub struct SagaArgs {
    pub context: SagaContext,
    pub start: SagaStart,
    pub reply: Option<oneshot::Sender<SagaOutcome>>,
}

pub struct SagaState {
    context: SagaContext,
    start: Option<SagaStart>,
    reply: Option<oneshot::Sender<SagaOutcome>>,
}

pub enum SagaMsg {
    Run,
}

pub struct TransferSaga;

impl Actor for TransferSaga {
    type Msg = SagaMsg;
    type State = SagaState;
    type Arguments = SagaArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SagaMsg>,
        args: SagaArgs,
    ) -> Result<SagaState, ActorProcessingErr> {
        args.context
            .metrics
            .actors_live
            .with_label_values(&[KIND])
            .inc();
        myself.send_message(SagaMsg::Run)?;
        Ok(SagaState {
            context: args.context,
            start: Some(args.start),
            reply: args.reply,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SagaMsg>,
        state: &mut SagaState,
    ) -> Result<(), ActorProcessingErr> {
        state
            .context
            .metrics
            .actors_live
            .with_label_values(&[KIND])
            .dec();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SagaMsg>,
        message: SagaMsg,
        state: &mut SagaState,
    ) -> Result<(), ActorProcessingErr> {
        let SagaMsg::Run = message;
        let Some(start) = state.start.take() else {
            return Ok(());
        };
        let metrics = Arc::clone(&state.context.metrics);
        let _timer = metrics.actor_message(KIND);
        let outcome = run(&state.context, start).await;
        metrics
            .transfers_total
            .with_label_values(&[outcome_label(&outcome)])
            .inc();
        if let SagaOutcome::Settled(transfer) = &outcome
            && transfer.state == TransferState::Completed
        {
            metrics
                .transfers_amount_minor_units_total
                .with_label_values(&[transfer.currency.code()])
                .inc_by(transfer.amount.minor_units().unsigned_abs());
        }
        if let Some(reply) = state.reply.take() {
            // The requester may have timed out; the saga's work stands regardless.
            let _ = reply.send(outcome);
        }
        myself.stop(None);
        Ok(())
    }
}

/// Starts a saga; `reply` receives its outcome.
pub async fn start(
    context: &SagaContext,
    start: SagaStart,
    reply: Option<oneshot::Sender<SagaOutcome>>,
) -> Result<(), ActorProcessingErr> {
    let args = SagaArgs {
        context: context.clone(),
        start,
        reply,
    };
    Actor::spawn(None, TransferSaga, args).await?;
    Ok(())
}

/// Why a saga a requester waited for gave no transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SagaFailure {
    /// The first step was refused; no transfer exists.
    Rejected(Rejection),
    /// The first step's outcome is unknown (timeout, database unavailable).
    Unavailable(String),
}

/// The one way to run a saga for a requester: starts it and waits up to `wait_timeout`.
/// `Ok(None)`: it is still running (it finishes on its own, or the resumer finishes it).
pub async fn start_and_wait(
    context: &SagaContext,
    start: SagaStart,
    wait_timeout: std::time::Duration,
) -> Result<Option<TransferRecord>, SagaFailure> {
    Ok(start_and_wait_settlement(context, start, wait_timeout)
        .await?
        .map(|settlement| settlement.transfer))
}

/// A transfer as a saga left it for its requester.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub transfer: TransferRecord,
    /// The requester's own run settled it (so a keyed request's response is stored).
    pub settled_by_this_run: bool,
}

/// `start_and_wait`, telling whether this run settled the transfer itself.
pub async fn start_and_wait_settlement(
    context: &SagaContext,
    start: SagaStart,
    wait_timeout: std::time::Duration,
) -> Result<Option<Settlement>, SagaFailure> {
    let (reply, outcome) = oneshot::channel();
    self::start(context, start, Some(reply))
        .await
        .map_err(|error| SagaFailure::Unavailable(format!("could not start the saga: {error}")))?;
    match tokio::time::timeout(wait_timeout, outcome).await {
        Ok(Ok(SagaOutcome::Settled(transfer))) => Ok(Some(Settlement {
            transfer,
            settled_by_this_run: true,
        })),
        Ok(Ok(SagaOutcome::Found(transfer))) => Ok(Some(Settlement {
            transfer,
            settled_by_this_run: false,
        })),
        Ok(Ok(SagaOutcome::Rejected(rejection))) => Err(SagaFailure::Rejected(rejection)),
        Ok(Ok(SagaOutcome::Unavailable(error))) => Err(SagaFailure::Unavailable(error)),
        Ok(Err(_)) | Err(_) => Ok(None),
    }
}

/// Resumes every saga still `debited` whose last step is older than `updated_before`, each
/// after leasing it (so concurrent resumers, here or on other nodes, do not pile up).
/// Returns how many were started.
pub async fn resume_unfinished(
    context: &SagaContext,
    updated_before: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let unfinished = context.store.unfinished_transfers(updated_before).await?;
    resume(context, unfinished, updated_before).await
}

/// Resumes the given stuck transfers, each after leasing it. Returns how many were started.
pub async fn resume(
    context: &SagaContext,
    transfers: Vec<TransferRecord>,
    updated_before: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let mut started = 0;
    for transfer in transfers {
        if !context
            .store
            .lease_stuck_transfer(transfer.id, Utc::now(), updated_before)
            .await?
        {
            continue;
        }
        tracing::info!(transfer_id = %transfer.id, "resuming unfinished transfer saga");
        match start(context, SagaStart::Resume(transfer), None).await {
            Ok(()) => started += 1,
            Err(error) => tracing::error!(%error, "could not spawn a transfer saga"),
        }
    }
    Ok(started)
}

async fn run(context: &SagaContext, start: SagaStart) -> SagaOutcome {
    let mut keyed_request = None;
    let mut chained_credit = None;
    let (transfer, replay) = match start {
        SagaStart::New {
            transfer,
            replay,
            opening,
            keyed,
        } => {
            // A first P2P attempt sends its credit along with its debit: the source's wallet
            // passes it on once the debit is planned, so both usually share one group commit.
            let then = (!replay && opening == Opening::Debit && transfer.kind == TransferKind::P2p)
                .then(|| {
                    let (credit, reply) = ChainedCredit::new(&transfer, keyed.as_deref());
                    chained_credit = Some(credit);
                    reply
                });
            let claim = match &keyed {
                Some(keyed) => IdempotencyWrite::Claim(Box::new(keyed.claim.clone())),
                None => IdempotencyWrite::None,
            };
            keyed_request = keyed;
            let debit = debit_op(&transfer, opening, replay, claim);
            match context
                .wallets
                .apply_chained(transfer.source_account, debit, then)
                .await
            {
                Ok(OpOutcome::Applied { .. }) => (transfer, replay),
                // Debited by an earlier attempt, which may have gone further: continue from the
                // stored transfer, not from this attempt's copy of it.
                Ok(OpOutcome::AlreadyApplied) => {
                    match context.store.find_transfer(transfer.id).await {
                        Ok(Some(stored)) => (stored, true),
                        Ok(None) => {
                            return SagaOutcome::Unavailable(format!(
                                "transfer {} vanished",
                                transfer.id
                            ));
                        }
                        Err(error) => return SagaOutcome::Unavailable(error.to_string()),
                    }
                }
                Ok(OpOutcome::Rejected(rejection)) => return SagaOutcome::Rejected(rejection),
                Err(WalletError::AccountNotFound) => {
                    return SagaOutcome::Rejected(Rejection::AccountNotFound);
                }
                Err(error) => return SagaOutcome::Unavailable(error.to_string()),
            }
        }
        SagaStart::Resume(transfer) => (transfer, true),
    };
    if transfer.state == TransferState::Debited
        && let Some(settled) = finish(
            context,
            &transfer,
            replay,
            keyed_request.as_deref(),
            chained_credit,
        )
        .await
    {
        return SagaOutcome::Settled(settled);
    }
    // The outcome is not known here (another run finished it, or a step must be resumed):
    // the database says where the transfer stands.
    match context.store.find_transfer(transfer.id).await {
        Ok(Some(current)) => SagaOutcome::Found(current),
        Ok(None) => SagaOutcome::Unavailable(format!(
            "transfer {} not found after its debit",
            transfer.id
        )),
        Err(error) => SagaOutcome::Unavailable(error.to_string()),
    }
}

/// A P2P credit sent along with its debit (`wallet::Chained`), and where its outcome arrives.
struct ChainedCredit {
    /// The transfer as the credit completes it (the stored response renders this record).
    completed: TransferRecord,
    outcome: oneshot::Receiver<Result<OpOutcome, WalletError>>,
}

impl ChainedCredit {
    fn new(transfer: &TransferRecord, keyed: Option<&SagaKeyed>) -> (ChainedCredit, Chained) {
        let completed = settled(transfer, TransferState::Completed, None);
        let response = keyed.map_or(IdempotencyWrite::None, |keyed| keyed.completion(&completed));
        let (reply, outcome) = oneshot::channel();
        let then = Chained {
            account: transfer.target_account,
            op: credit_op(transfer, false, response),
            reply: reply.into(),
        };
        (ChainedCredit { completed, outcome }, then)
    }
}

/// Credits the target (or takes the outcome of the credit sent along with the debit); if the
/// credit is refused, refunds the source. Returns the transfer as this run left it when this
/// run's own step decided it; infrastructure errors leave the saga `debited` for the resumer.
async fn finish(
    context: &SagaContext,
    transfer: &TransferRecord,
    replay: bool,
    keyed: Option<&SagaKeyed>,
    chained: Option<ChainedCredit>,
) -> Option<TransferRecord> {
    let (completed, sent_along) = match chained {
        Some(chained) => {
            let outcome = tokio::time::timeout(context.wallets.call_timeout(), chained.outcome);
            (chained.completed, Some(outcome.await))
        }
        None => (settled(transfer, TransferState::Completed, None), None),
    };
    let credited = match sent_along {
        Some(Ok(Ok(Ok(outcome)))) => Ok(outcome),
        Some(Ok(Ok(Err(WalletError::AccountNotFound)))) => Err(WalletError::AccountNotFound),
        // Not sent (the debit's wallet failed before passing it on), its wallet failed, or no
        // answer in time: credit the ordinary way, as a replay (it may have committed).
        sent_along => {
            let response =
                keyed.map_or(IdempotencyWrite::None, |keyed| keyed.completion(&completed));
            let replay = replay || sent_along.is_some();
            context
                .wallets
                .apply(
                    transfer.target_account,
                    credit_op(transfer, replay, response),
                )
                .await
        }
    };
    let refusal = match credited {
        Ok(OpOutcome::Applied { .. }) => return Some(completed),
        // Already completed or refunded by another run of this saga.
        Ok(OpOutcome::AlreadyApplied | OpOutcome::Rejected(Rejection::InvalidTransition)) => {
            return None;
        }
        Ok(OpOutcome::Rejected(rejection)) => rejection,
        Err(WalletError::AccountNotFound) => Rejection::AccountNotFound,
        Err(error) => {
            tracing::warn!(transfer_id = %transfer.id, %error, "transfer credit failed; will resume");
            return None;
        }
    };
    tracing::info!(transfer_id = %transfer.id, reason = %refusal, "transfer credit refused; refunding");
    let failed = settled(transfer, TransferState::Failed, Some(refusal));
    let response = keyed.map_or(IdempotencyWrite::None, |keyed| keyed.completion(&failed));
    match context
        .wallets
        .apply(
            transfer.source_account,
            refund_op(transfer, refusal, replay, response),
        )
        .await
    {
        Ok(OpOutcome::Applied { .. }) => Some(failed),
        Ok(OpOutcome::AlreadyApplied) => None,
        Ok(OpOutcome::Rejected(rejection)) => {
            tracing::warn!(transfer_id = %transfer.id, reason = %rejection, "transfer refund refused");
            None
        }
        Err(error) => {
            tracing::warn!(transfer_id = %transfer.id, %error, "transfer refund failed; will resume");
            None
        }
    }
}

/// The transfer after this run's step committed it into `state`.
fn settled(
    transfer: &TransferRecord,
    state: TransferState,
    failure_code: Option<Rejection>,
) -> TransferRecord {
    TransferRecord {
        state,
        failure_code,
        updated_at: chrono::Utc::now(),
        ..transfer.clone()
    }
}

/// The saga's steps: `debit`, `credit` and the compensating `refund`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Debit,
    Credit,
    Refund,
}

/// The entry kind users see for a step of a saga of this kind.
fn entry_kind(kind: TransferKind, step: Step) -> &'static str {
    match (kind, step) {
        (TransferKind::P2p, Step::Debit) => "transfer_debit",
        (TransferKind::P2p, Step::Credit) => "transfer_credit",
        (TransferKind::P2p, Step::Refund) => "transfer_refund",
        (TransferKind::Payment, Step::Debit) => "payment_debit",
        (TransferKind::Payment, Step::Credit) => "payment_credit",
        (TransferKind::Payment, Step::Refund) => "payment_reversal",
        (TransferKind::Capture, Step::Debit) => "capture_debit",
        (TransferKind::Capture, Step::Credit) => "capture_credit",
        (TransferKind::Capture, Step::Refund) => "capture_reversal",
        (TransferKind::Refund, Step::Debit) => "refund_debit",
        (TransferKind::Refund, Step::Credit) => "refund_credit",
        (TransferKind::Refund, Step::Refund) => "refund_reversal",
    }
}

/// What the entries of a saga point at: the transfer, or the payment object it serves.
fn reference(transfer: &TransferRecord) -> Reference {
    let kind = match transfer.kind {
        TransferKind::P2p => "transfer",
        TransferKind::Payment | TransferKind::Capture => "payment_intent",
        TransferKind::Refund => "refund",
    };
    let id = match (transfer.kind, &transfer.reference_id) {
        (TransferKind::P2p, _) | (_, None) => transfer.id.to_string(),
        (_, Some(id)) => id.clone(),
    };
    Reference { kind, id }
}

fn step(
    transfer: &TransferRecord,
    step: Step,
    balance_op: BalanceOp,
    effect: Effect,
    replay: bool,
    idempotency: IdempotencyWrite,
) -> WalletOp {
    let name = match step {
        Step::Debit => "debit",
        Step::Credit => "credit",
        Step::Refund => "refund",
    };
    WalletOp {
        idempotency,
        op_key: format!("transfer:{}:{name}", transfer.id),
        kind: entry_kind(transfer.kind, step),
        balance_op,
        journal: JournalSpec {
            id: transfer.journal_id,
            kind: transfer.kind.as_str(),
            is_new: step == Step::Debit,
        },
        reference: reference(transfer),
        counterpart: None,
        effect,
        replay,
    }
}

fn debit_op(
    transfer: &TransferRecord,
    opening: Opening,
    replay: bool,
    claim: IdempotencyWrite,
) -> WalletOp {
    let opened = Box::new(TransferRecord {
        state: TransferState::Debited,
        ..transfer.clone()
    });
    let (balance_op, effect) = match opening {
        Opening::Debit => (
            BalanceOp::Debit(transfer.amount),
            Effect::OpenTransfer(opened),
        ),
        Opening::Capture { hold, held } => (
            BalanceOp::Capture {
                held,
                captured: transfer.amount,
            },
            Effect::OpenCapture(opened, hold),
        ),
        Opening::Refund(refund) => (
            BalanceOp::Debit(transfer.amount),
            Effect::OpenRefund(opened, refund),
        ),
    };
    step(transfer, Step::Debit, balance_op, effect, replay, claim)
}

fn credit_op(transfer: &TransferRecord, replay: bool, response: IdempotencyWrite) -> WalletOp {
    step(
        transfer,
        Step::Credit,
        BalanceOp::Credit(transfer.amount),
        Effect::CompleteTransfer(Box::new(transfer.clone())),
        replay,
        response,
    )
}

fn refund_op(
    transfer: &TransferRecord,
    reason: Rejection,
    replay: bool,
    response: IdempotencyWrite,
) -> WalletOp {
    step(
        transfer,
        Step::Refund,
        BalanceOp::Credit(transfer.amount),
        Effect::FailTransfer(Box::new(transfer.clone()), reason),
        replay,
        response,
    )
}

fn outcome_label(outcome: &SagaOutcome) -> &'static str {
    match outcome {
        SagaOutcome::Rejected(_) => "rejected",
        SagaOutcome::Settled(transfer) | SagaOutcome::Found(transfer) => {
            transfer.state.api_status()
        }
        SagaOutcome::Unavailable(_) => "unavailable",
    }
}

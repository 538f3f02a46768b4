//! Merchant payments as wallet ops and sagas: confirm (pay or authorise), capture, cancel,
//! expire, refund, pay out and settle a payout. Each function builds the ops, sends them to
//! the wallet that owns the money (so every decision about one wallet's holds is taken
//! by that wallet's single writer), and reports the outcome. Holds follow the two-phase shape:
//! a hold resolves exactly once, whichever of capture, cancel and expiry gets to the wallet
//! actor first; the others are refused with `hold_already_resolved`.
//!
//! `HoldKeeper` is the background actor that releases expired authorisations, (re)submits
//! payouts the bank has not accepted yet, and asks the bank about top-ups and payouts whose
//! webhook never came (a lost webhook must not leave money stuck): what the bank says becomes
//! an inbox event the bank ingestor processes with the same checks as a webhook.

use super::transfer_saga::{self, Opening, SagaContext, SagaFailure, SagaStart};
use super::wallet::{OpOutcome, WalletOp};
use super::wallet_supervisor::WalletError;
use crate::domain::Clock;
use crate::domain::{
    AccountId, Amount, BalanceOp, CaptureMethod, HoldId, HoldState, JournalId, PaymentIntentStatus,
    PayoutId, PayoutStatus, RefundId, RefundStatus, Rejection, TransferId, TransferKind,
    TransferState, UserId,
};
use crate::metrics::Metrics;
use crate::providers::bank::{BankClient, PayoutRequest};
use crate::store::Store;
use crate::store::accounts::{Owner, SystemAccount};
use crate::store::idempotency::IdempotencyWrite;
use crate::store::ledger::{Effect, JournalSpec, Reference};
use crate::store::payments::{
    HoldPurpose, HoldRecord, HoldReference, PaymentIntentRecord, PayoutRecord, RefundRecord,
};
use crate::store::transfers::{Party, TransferRecord};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Why a payment action did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentError {
    /// A business rule refused it; nothing changed.
    Rejected(Rejection),
    /// The outcome is unknown (database or actor unavailable); retry with the same key.
    Unavailable(String),
}

impl From<crate::store::StoreError> for PaymentError {
    fn from(error: crate::store::StoreError) -> PaymentError {
        PaymentError::Unavailable(error.to_string())
    }
}

pub type PaymentResult<T> = Result<T, PaymentError>;

/// What payment actions need.
#[derive(Clone)]
pub struct Payments {
    pub sagas: SagaContext,
    /// `None`: no bank is configured (payouts are refused before they lock anything).
    pub bank: Option<BankClient>,
    /// Where the bank reports payouts.
    pub bank_callback_url: String,
    /// How long a manual intent's authorisation holds the funds.
    pub hold_lifetime: Duration,
    /// How long a request waits for a saga before answering with the state so far.
    pub wait_timeout: Duration,
    pub clock: Arc<dyn Clock>,
}

impl Payments {
    fn store(&self) -> &Store {
        &self.sagas.store
    }

    async fn apply(&self, account: AccountId, op: WalletOp) -> PaymentResult<OpOutcome> {
        match self.sagas.wallets.apply(account, op).await {
            Ok(outcome) => Ok(outcome),
            Err(WalletError::AccountNotFound) => {
                Err(PaymentError::Rejected(Rejection::AccountNotFound))
            }
            Err(error) => Err(PaymentError::Unavailable(error.to_string())),
        }
    }

    async fn reread(&self, intent: &PaymentIntentRecord) -> PaymentResult<PaymentIntentRecord> {
        self.store()
            .find_payment_intent(intent.id)
            .await?
            .ok_or_else(|| {
                PaymentError::Unavailable(format!("payment intent {} vanished", intent.id))
            })
    }

    /// Starts a saga and waits for it up to the wait timeout. `Ok(None)`: still running.
    async fn run_saga(&self, start: SagaStart) -> PaymentResult<Option<TransferRecord>> {
        transfer_saga::start_and_wait(&self.sagas, start, self.wait_timeout)
            .await
            .map_err(|failure| match failure {
                SagaFailure::Rejected(rejection) => PaymentError::Rejected(rejection),
                SagaFailure::Unavailable(error) => PaymentError::Unavailable(error),
            })
    }

    /// A user pays (automatic) or authorises (manual) the intent from their wallet in the
    /// intent's currency. `attempt` identifies this confirmation across retries.
    pub async fn confirm(
        &self,
        intent: &PaymentIntentRecord,
        user: UserId,
        attempt: TransferId,
        replay: bool,
    ) -> PaymentResult<PaymentIntentRecord> {
        if intent.status != PaymentIntentStatus::RequiresConfirmation {
            // A retry of this user's own confirmation sees its result.
            if replay && intent.customer_user_id == Some(user) {
                return Ok(intent.clone());
            }
            return Err(PaymentError::Rejected(
                Rejection::PaymentIntentUnexpectedState,
            ));
        }
        let source = self
            .store()
            .find_account(&Owner::User(user), intent.currency)
            .await?
            .ok_or(PaymentError::Rejected(Rejection::InsufficientFunds))?;
        if source.balance.available < intent.amount.minor_units() {
            return Err(PaymentError::Rejected(Rejection::InsufficientFunds));
        }
        match intent.capture_method {
            CaptureMethod::Automatic => {
                let target = self
                    .store()
                    .open_account(&Owner::Merchant(intent.merchant_id), intent.currency)
                    .await?;
                let transfer = self.transfer_record(
                    attempt,
                    TransferKind::Payment,
                    Party::User(user),
                    Party::Merchant(intent.merchant_id),
                    (source.id, target.id),
                    intent.amount,
                    intent,
                    intent.id.to_string(),
                );
                let start = SagaStart::New {
                    transfer,
                    keyed: None,
                    replay,
                    opening: Opening::Debit,
                };
                self.run_saga(start).await?;
            }
            CaptureMethod::Manual => {
                let now = self.clock.now();
                let hold = HoldRecord {
                    id: HoldId::from(attempt.as_uuid()),
                    account_id: source.id,
                    amount: intent.amount,
                    currency: intent.currency,
                    state: HoldState::Held,
                    reference: HoldReference::PaymentIntent(intent.id),
                    expires_at: Some(
                        now + chrono::Duration::from_std(self.hold_lifetime).unwrap_or_default(),
                    ),
                    created_at: now,
                };
                let purpose = HoldPurpose::Authorize {
                    intent: intent.id,
                    customer: user,
                };
                let op = open_hold_op(&hold, purpose, "payment_intent", intent.id.to_string());
                match self.apply(source.id, op).await? {
                    OpOutcome::Applied { .. } | OpOutcome::AlreadyApplied => {}
                    OpOutcome::Rejected(rejection) => {
                        return Err(PaymentError::Rejected(rejection));
                    }
                }
            }
        }
        self.reread(intent).await
    }

    /// The merchant captures `amount` (default: all) of the authorisation; the rest returns
    /// to the user.
    pub async fn capture(
        &self,
        intent: &PaymentIntentRecord,
        amount: Option<Amount>,
        attempt: TransferId,
        replay: bool,
    ) -> PaymentResult<PaymentIntentRecord> {
        if intent.status != PaymentIntentStatus::RequiresCapture {
            if replay && intent.status != PaymentIntentStatus::RequiresConfirmation {
                return Ok(intent.clone());
            }
            return Err(PaymentError::Rejected(match intent.status {
                PaymentIntentStatus::Canceled | PaymentIntentStatus::Succeeded
                    if intent.hold_id.is_some() =>
                {
                    Rejection::HoldAlreadyResolved
                }
                _ => Rejection::PaymentIntentUnexpectedState,
            }));
        }
        let (hold, customer) = self.hold_of(intent).await?;
        let captured = amount.unwrap_or(hold.amount);
        if captured > hold.amount {
            return Err(PaymentError::Rejected(Rejection::CaptureExceedsHold));
        }
        let target = self
            .store()
            .open_account(&Owner::Merchant(intent.merchant_id), intent.currency)
            .await?;
        let transfer = self.transfer_record(
            attempt,
            TransferKind::Capture,
            Party::User(customer),
            Party::Merchant(intent.merchant_id),
            (hold.account_id, target.id),
            captured,
            intent,
            intent.id.to_string(),
        );
        let start = SagaStart::New {
            transfer,
            keyed: None,
            replay,
            opening: Opening::Capture {
                hold: hold.id,
                held: hold.amount,
            },
        };
        self.run_saga(start).await?;
        self.reread(intent).await
    }

    async fn hold_of(&self, intent: &PaymentIntentRecord) -> PaymentResult<(HoldRecord, UserId)> {
        let corrupt =
            || PaymentError::Unavailable(format!("payment intent {} has no hold", intent.id));
        let hold_id = intent.hold_id.ok_or_else(corrupt)?;
        let customer = intent.customer_user_id.ok_or_else(corrupt)?;
        let hold = self.store().find_hold(hold_id).await?.ok_or_else(corrupt)?;
        Ok((hold, customer))
    }

    /// The merchant cancels: an unconfirmed intent simply ends; an authorised one releases
    /// its hold in full.
    pub async fn cancel(
        &self,
        intent: &PaymentIntentRecord,
        replay: bool,
    ) -> PaymentResult<PaymentIntentRecord> {
        match intent.status {
            PaymentIntentStatus::RequiresConfirmation => {
                if self
                    .store()
                    .cancel_unconfirmed_intent(intent.id, self.clock.now())
                    .await?
                {
                    return self.reread(intent).await;
                }
                // Confirmed meanwhile: cancel what it is now.
                let current = self.reread(intent).await?;
                if current.status == PaymentIntentStatus::RequiresConfirmation {
                    return Err(PaymentError::Unavailable("cancel raced; retry".into()));
                }
                Box::pin(self.cancel(&current, replay)).await
            }
            PaymentIntentStatus::RequiresCapture => {
                let (hold, _) = self.hold_of(intent).await?;
                match self.release(&hold, HoldState::Voided).await? {
                    OpOutcome::Applied { .. } | OpOutcome::AlreadyApplied => {
                        self.reread(intent).await
                    }
                    OpOutcome::Rejected(rejection) => Err(PaymentError::Rejected(rejection)),
                }
            }
            PaymentIntentStatus::Canceled if replay => Ok(intent.clone()),
            PaymentIntentStatus::Canceled | PaymentIntentStatus::Succeeded
                if intent.hold_id.is_some() =>
            {
                Err(PaymentError::Rejected(Rejection::HoldAlreadyResolved))
            }
            _ => Err(PaymentError::Rejected(
                Rejection::PaymentIntentUnexpectedState,
            )),
        }
    }

    /// Returns a hold to `available` in full: `voided` (cancel, failed payout) or `expired`.
    pub async fn release(&self, hold: &HoldRecord, to: HoldState) -> PaymentResult<OpOutcome> {
        let (reference_kind, reference_id) = hold_reference(hold);
        let op = WalletOp {
            idempotency: IdempotencyWrite::None,
            // One key per outcome: a void and an expiry of the same hold are different ops,
            // so the second is refused by the hold's state, never mistaken for a retry.
            op_key: format!("hold:{}:{}", hold.id, to.as_str()),
            kind: if to == HoldState::Expired {
                "hold_expired"
            } else {
                "hold_released"
            },
            balance_op: BalanceOp::Void(hold.amount),
            journal: JournalSpec {
                id: JournalId::generate(),
                kind: "hold",
                is_new: true,
            },
            reference: Reference {
                kind: reference_kind,
                id: reference_id,
            },
            counterpart: None,
            effect: Effect::ReleaseHold(Box::new(hold.clone()), to),
            replay: false,
        };
        self.apply(hold.account_id, op).await
    }

    /// The merchant refunds `amount` (default: what is left) of a succeeded intent to the
    /// user who paid it.
    pub async fn refund(
        &self,
        intent: &PaymentIntentRecord,
        amount: Option<Amount>,
        refund_id: RefundId,
        replay: bool,
    ) -> PaymentResult<RefundRecord> {
        if replay && let Some(existing) = self.store().find_refund(refund_id).await? {
            // A retry after a crash: finish the saga the first attempt started.
            if existing.status == RefundStatus::Pending
                && let Some(transfer) = self
                    .store()
                    .find_transfer(TransferId::from(refund_id.as_uuid()))
                    .await?
                && transfer.state == TransferState::Debited
            {
                self.run_saga(SagaStart::Resume(transfer)).await?;
            }
            return self.reread_refund(refund_id).await;
        }
        if intent.status != PaymentIntentStatus::Succeeded {
            return Err(PaymentError::Rejected(
                Rejection::PaymentIntentUnexpectedState,
            ));
        }
        let remaining = intent.amount_received - intent.amount_refunded;
        let amount = match amount {
            Some(amount) => amount,
            None => Amount::new(remaining)
                .map_err(|_| PaymentError::Rejected(Rejection::RefundExceedsCaptured))?,
        };
        if amount.minor_units() > remaining {
            return Err(PaymentError::Rejected(Rejection::RefundExceedsCaptured));
        }
        let (Some(customer), Some(customer_account)) =
            (intent.customer_user_id, intent.customer_account_id)
        else {
            return Err(PaymentError::Unavailable(format!(
                "payment intent {} has no customer",
                intent.id
            )));
        };
        let source = self
            .store()
            .find_account(&Owner::Merchant(intent.merchant_id), intent.currency)
            .await?
            .ok_or(PaymentError::Rejected(Rejection::InsufficientFunds))?;
        let now = self.clock.now();
        let refund = RefundRecord {
            id: refund_id,
            merchant_id: intent.merchant_id,
            payment_intent_id: intent.id,
            user_id: customer,
            amount,
            currency: intent.currency,
            status: RefundStatus::Pending,
            failure_code: None,
            created_at: now,
        };
        let transfer = self.transfer_record(
            TransferId::from(refund_id.as_uuid()),
            TransferKind::Refund,
            Party::Merchant(intent.merchant_id),
            Party::User(customer),
            (source.id, customer_account),
            amount,
            intent,
            refund_id.to_string(),
        );
        let start = SagaStart::New {
            transfer,
            keyed: None,
            replay,
            opening: Opening::Refund(Box::new(refund)),
        };
        self.run_saga(start).await?;
        self.reread_refund(refund_id).await
    }

    async fn reread_refund(&self, id: RefundId) -> PaymentResult<RefundRecord> {
        self.store().find_refund(id).await?.ok_or_else(|| {
            PaymentError::Unavailable(format!("refund {id} not found after its debit"))
        })
    }

    /// Locks `amount` on the owner's account for a payout, then asks the bank to pay it.
    pub async fn pay_out(
        &self,
        owner: Party,
        amount: Amount,
        currency: crate::domain::Currency,
        payout_id: PayoutId,
        replay: bool,
    ) -> PaymentResult<PayoutRecord> {
        if replay && let Some(existing) = self.store().find_payout(payout_id).await? {
            if existing.status == PayoutStatus::Pending {
                self.submit_payout(&existing).await;
            }
            return self.reread_payout(payout_id).await;
        }
        let account = self
            .store()
            .find_account(&Owner::from(owner), currency)
            .await?
            .ok_or(PaymentError::Rejected(Rejection::InsufficientFunds))?;
        let now = self.clock.now();
        let hold = HoldRecord {
            id: HoldId::from(payout_id.as_uuid()),
            account_id: account.id,
            amount,
            currency,
            state: HoldState::Held,
            reference: HoldReference::Payout(payout_id),
            expires_at: None,
            created_at: now,
        };
        let payout = PayoutRecord {
            id: payout_id,
            owner,
            account_id: account.id,
            hold_id: hold.id,
            amount,
            currency,
            status: PayoutStatus::Pending,
            bank_reference: None,
            failure_code: None,
            created_at: now,
        };
        let op = open_hold_op(
            &hold,
            HoldPurpose::Payout(Box::new(payout.clone())),
            "payout",
            payout_id.to_string(),
        );
        match self.apply(account.id, op).await? {
            OpOutcome::Applied { .. } | OpOutcome::AlreadyApplied => {}
            OpOutcome::Rejected(rejection) => return Err(PaymentError::Rejected(rejection)),
        }
        self.submit_payout(&payout).await;
        self.reread_payout(payout_id).await
    }

    #[allow(clippy::too_many_arguments)]
    fn transfer_record(
        &self,
        id: TransferId,
        kind: TransferKind,
        from: Party,
        to: Party,
        (source_account, target_account): (AccountId, AccountId),
        amount: Amount,
        intent: &PaymentIntentRecord,
        reference_id: String,
    ) -> TransferRecord {
        let now = self.clock.now();
        TransferRecord {
            id,
            journal_id: JournalId::from(id.as_uuid()),
            from,
            to,
            kind,
            reference_id: Some(reference_id),
            source_account,
            target_account,
            amount,
            currency: intent.currency,
            note: intent.description.clone(),
            state: TransferState::Debited,
            failure_code: None,
            created_at: now,
            updated_at: now,
        }
    }

    async fn reread_payout(&self, id: PayoutId) -> PaymentResult<PayoutRecord> {
        self.store().find_payout(id).await?.ok_or_else(|| {
            PaymentError::Unavailable(format!("payout {id} not found after its hold"))
        })
    }

    /// Asks the bank to pay the payout (idempotent by payout id at the bank). A failure leaves
    /// it `pending` for the `HoldKeeper` to submit again.
    pub async fn submit_payout(&self, payout: &PayoutRecord) {
        let id = payout.id.to_string();
        let request = PayoutRequest {
            reference: &id,
            amount: payout.amount.minor_units(),
            currency: payout.currency.code(),
            callback_url: &self.bank_callback_url,
        };
        let Some(bank) = &self.bank else {
            tracing::warn!(payout_id = %payout.id, "no bank is configured; the payout waits");
            return;
        };
        match bank.create_payout(request).await {
            Ok(bank_payout) => {
                if let Err(error) = self
                    .store()
                    .mark_payout_submitted(payout.id, &bank_payout.id, self.clock.now())
                    .await
                {
                    tracing::warn!(payout_id = %payout.id, %error, "record payout submission");
                }
            }
            Err(error) => {
                tracing::warn!(payout_id = %payout.id, %error, "bank did not take the payout; will retry");
            }
        }
    }

    /// The bank's verdict on a payout: paid (the locked funds leave to `payout_clearing`) or
    /// failed (released). Returns the outcome label for the webhook metrics.
    pub async fn settle_payout(
        &self,
        payout_id: PayoutId,
        paid: bool,
    ) -> PaymentResult<&'static str> {
        let Some(payout) = self.store().find_payout(payout_id).await? else {
            return Ok("unknown_payout");
        };
        let Some(hold) = self.store().find_hold(payout.hold_id).await? else {
            return Err(PaymentError::Unavailable(format!(
                "payout {payout_id} has no hold"
            )));
        };
        if hold.state != HoldState::Held {
            return Ok("already_final");
        }
        let outcome = if paid {
            let clearing = self
                .store()
                .find_account(
                    &Owner::System(SystemAccount::PayoutClearing),
                    payout.currency,
                )
                .await?
                .ok_or_else(|| {
                    PaymentError::Unavailable("payout clearing account missing".into())
                })?;
            let op = WalletOp {
                idempotency: IdempotencyWrite::None,
                op_key: format!("hold:{}:capture", hold.id),
                kind: "payout",
                balance_op: BalanceOp::Capture {
                    held: hold.amount,
                    captured: hold.amount,
                },
                journal: JournalSpec {
                    id: JournalId::from(payout_id.as_uuid()),
                    kind: "payout",
                    is_new: true,
                },
                reference: Reference {
                    kind: "payout",
                    id: payout_id.to_string(),
                },
                counterpart: Some(clearing.id),
                effect: Effect::PayOut(Box::new(hold.clone())),
                replay: true,
            };
            self.apply(hold.account_id, op).await?
        } else {
            self.release(&hold, HoldState::Voided).await?
        };
        Ok(match outcome {
            OpOutcome::Applied { .. } if paid => "paid",
            OpOutcome::Applied { .. } => "failed",
            OpOutcome::AlreadyApplied => "already_final",
            OpOutcome::Rejected(Rejection::HoldAlreadyResolved) => "already_final",
            OpOutcome::Rejected(rejection) => {
                return Err(PaymentError::Unavailable(format!(
                    "payout {payout_id} refused: {rejection}"
                )));
            }
        })
    }
}

fn open_hold_op(
    hold: &HoldRecord,
    purpose: HoldPurpose,
    reference_kind: &'static str,
    reference_id: String,
) -> WalletOp {
    WalletOp {
        idempotency: IdempotencyWrite::None,
        op_key: format!("hold:{}:open", hold.id),
        kind: "hold",
        balance_op: BalanceOp::Hold(hold.amount),
        journal: JournalSpec {
            id: JournalId::from(hold.id.as_uuid()),
            kind: "hold",
            is_new: true,
        },
        reference: Reference {
            kind: reference_kind,
            id: reference_id,
        },
        counterpart: None,
        effect: Effect::OpenHold(Box::new(hold.clone()), Box::new(purpose)),
        // Opening is retried after timeouts: look for an earlier commit first.
        replay: true,
    }
}

fn hold_reference(hold: &HoldRecord) -> (&'static str, String) {
    match hold.reference {
        HoldReference::PaymentIntent(intent) => ("payment_intent", intent.to_string()),
        HoldReference::Payout(payout) => ("payout", payout.to_string()),
    }
}

/// Whose intent: a merchant sees its own, a user the ones they confirmed.
pub fn visible_to(intent: &PaymentIntentRecord, viewer: Party) -> bool {
    match viewer {
        Party::Merchant(merchant) => intent.merchant_id == merchant,
        Party::User(user) => intent.customer_user_id == Some(user),
    }
}

// ---------------------------------------------------------------------------------------------
// HoldKeeper

pub const KEEPER_KIND: &str = "hold_keeper";
/// Holds expired and payouts submitted per pass.
const KEEPER_BATCH_MAX: u64 = 200;
/// A payout not accepted by the bank after this long is submitted again.
const PAYOUT_RESUBMIT_AFTER_SECONDS: i64 = 10;

/// Top-ups and payouts asked about per poll.
const BANK_POLL_BATCH_MAX: u64 = 100;

pub struct KeeperArgs {
    pub payments: Payments,
    pub metrics: Arc<Metrics>,
    pub interval: Duration,
    /// A top-up or payout without the bank's webhook for this long is asked about.
    pub bank_poll_after: Duration,
    /// The bank is asked at most this often.
    pub bank_poll_interval: Duration,
}

pub struct KeeperState {
    payments: Payments,
    metrics: Arc<Metrics>,
    timer: Option<JoinHandle<()>>,
    bank_poll_after: Duration,
    bank_poll_interval: Duration,
    bank_polled_at: Option<std::time::Instant>,
}

pub enum KeeperMsg {
    Tick,
}

/// Releases expired authorisations, resubmits payouts, and exports the hold and payment
/// intent gauges.
pub struct HoldKeeper;

impl Actor for HoldKeeper {
    type Msg = KeeperMsg;
    type State = KeeperState;
    type Arguments = KeeperArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<KeeperMsg>,
        args: KeeperArgs,
    ) -> Result<KeeperState, ActorProcessingErr> {
        args.metrics
            .actors_live
            .with_label_values(&[KEEPER_KIND])
            .inc();
        let timer = myself.send_interval(args.interval, || KeeperMsg::Tick);
        Ok(KeeperState {
            payments: args.payments,
            metrics: args.metrics,
            timer: Some(timer),
            bank_poll_after: args.bank_poll_after,
            bank_poll_interval: args.bank_poll_interval,
            bank_polled_at: None,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<KeeperMsg>,
        state: &mut KeeperState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        state
            .metrics
            .actors_live
            .with_label_values(&[KEEPER_KIND])
            .dec();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<KeeperMsg>,
        _message: KeeperMsg,
        state: &mut KeeperState,
    ) -> Result<(), ActorProcessingErr> {
        let metrics = Arc::clone(&state.metrics);
        let _timer = metrics.actor_message(KEEPER_KIND);
        // Errors are logged and retried next tick: the keeper itself never fails.
        if let Err(error) = keep(state).await {
            metrics.record_actor_error(KEEPER_KIND, error.to_string());
            tracing::warn!(%error, "hold keeper pass");
        }
        let due = state
            .bank_polled_at
            .is_none_or(|polled| polled.elapsed() >= state.bank_poll_interval);
        if due {
            state.bank_polled_at = Some(std::time::Instant::now());
            if let Err(error) = poll_bank(state).await {
                metrics.record_actor_error(KEEPER_KIND, error.to_string());
                tracing::warn!(%error, "bank poll");
            }
        }
        Ok(())
    }
}

async fn keep(state: &KeeperState) -> anyhow::Result<()> {
    let store = state.payments.store();
    let now = state.payments.clock.now();
    for hold in store.expired_holds(now, KEEPER_BATCH_MAX).await? {
        match state.payments.release(&hold, HoldState::Expired).await {
            Ok(OpOutcome::Applied { .. }) => {
                tracing::info!(hold_id = %hold.id, "authorisation expired and released");
                state.metrics.holds_expired_total.inc();
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(hold_id = %hold.id, ?error, "expire hold"),
        }
    }
    let before = now - chrono::Duration::seconds(PAYOUT_RESUBMIT_AFTER_SECONDS);
    for payout in store.unsubmitted_payouts(before, KEEPER_BATCH_MAX).await? {
        state.payments.submit_payout(&payout).await;
    }
    state.metrics.holds_outstanding_count.reset();
    state.metrics.holds_outstanding_amount.reset();
    for (currency, count, amount) in store.outstanding_holds().await? {
        state
            .metrics
            .holds_outstanding_count
            .with_label_values(&[currency.as_str()])
            .set(count);
        state
            .metrics
            .holds_outstanding_amount
            .with_label_values(&[currency.as_str()])
            .set(amount);
    }
    for status in PaymentIntentStatus::ALL {
        state
            .metrics
            .payment_intents
            .with_label_values(&[status.as_str()])
            .set(0);
    }
    for (status, count) in store.payment_intent_counts().await? {
        state
            .metrics
            .payment_intents
            .with_label_values(&[status.as_str()])
            .set(count);
    }
    Ok(())
}

/// Asks the bank about top-ups and payouts whose webhook is overdue, and stores what it says
/// as bank inbox events (`poll_{bank id}_{status}`, so a repeated answer is stored once).
async fn poll_bank(state: &KeeperState) -> anyhow::Result<()> {
    let Some(bank) = &state.payments.bank else {
        return Ok(());
    };
    let store = state.payments.store();
    let overdue = state.payments.clock.now()
        - chrono::Duration::from_std(state.bank_poll_after).unwrap_or_default();
    for onramp in store
        .stale_bank_onramps(overdue, BANK_POLL_BATCH_MAX)
        .await?
    {
        let Some(payment_id) = onramp.provider_reference.as_deref() else {
            continue;
        };
        let event_type = match bank.record("payments", payment_id).await {
            Ok(record) if record.reference == onramp.id.to_string() => {
                match record.status.as_str() {
                    "approved" => Some(("payment.succeeded", record)),
                    "declined" => Some(("payment.failed", record)),
                    _ => None,
                }
            }
            Ok(record) => {
                tracing::error!(onramp_id = %onramp.id, bank_reference = %record.reference, "the bank's payment names another on-ramp");
                None
            }
            Err(error) => {
                tracing::warn!(onramp_id = %onramp.id, %error, "ask the bank about a top-up");
                None
            }
        };
        if let Some((event_type, record)) = event_type {
            store_polled_event(state, event_type, &record).await?;
        }
    }
    for payout in store
        .stale_payouts_in_transit(overdue, BANK_POLL_BATCH_MAX)
        .await?
    {
        let Some(bank_id) = payout.bank_reference.as_deref() else {
            continue;
        };
        match bank.record("payouts", bank_id).await {
            Ok(record) if record.reference == payout.id.to_string() => {
                let event_type = match record.status.as_str() {
                    "paid" => "payout.paid",
                    "failed" => "payout.failed",
                    _ => continue,
                };
                store_polled_event(state, event_type, &record).await?;
            }
            Ok(record) => {
                tracing::error!(payout_id = %payout.id, bank_reference = %record.reference, "the bank's payout names another payout");
            }
            Err(error) => {
                tracing::warn!(payout_id = %payout.id, %error, "ask the bank about a payout");
            }
        }
    }
    Ok(())
}

/// Stores what the bank said as if it had sent it: the bank ingestor checks and applies it.
async fn store_polled_event(
    state: &KeeperState,
    event_type: &str,
    record: &crate::providers::bank::BankRecord,
) -> anyhow::Result<()> {
    let now = state.payments.clock.now();
    let event_id = format!("poll_{}_{}", record.id, record.status);
    let payload = serde_json::json!({
        "id": event_id, "type": event_type, "created": now.timestamp(),
        "data": {"reference": record.reference, "amount": record.amount,
                 "currency": record.currency, "payment_id": record.id},
    })
    .to_string();
    let stored = state
        .payments
        .store()
        .store_inbox_event(
            &crate::store::onramps::InboxEvent {
                provider: crate::domain::OnrampProvider::Bank,
                event_id: &event_id,
                event_type,
                payload: &payload,
            },
            now,
        )
        .await?;
    if stored {
        tracing::info!(%event_id, event_type, "bank webhook overdue: stored what the bank says");
        state
            .metrics
            .webhook_events_total
            .with_label_values(&["bank", event_type, "polled"])
            .inc();
    }
    Ok(())
}

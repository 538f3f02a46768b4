//! `WebhookIngestor`: one per provider (bank, Stripe), processes that provider's events from
//! the webhook inbox. The HTTP handler only verifies, stores and acknowledges; this actor
//! (nudged after each store, and on a timer so nothing stored before a crash is forgotten)
//! turns each unprocessed event into its effect. Bank: `payment.succeeded` credits the
//! on-ramp's wallet from `bank_clearing` through its wallet (on-ramp → `succeeded` in the
//! same transaction); `payment.failed` fails the on-ramp. Stripe: on
//! `checkout.session.completed` / `async_payment_succeeded` the session is retrieved from the
//! Stripe API and what Stripe says is credited from `stripe_clearing` (only when `paid`);
//! `async_payment_failed` and `expired` fail the on-ramp.
//! Every step is idempotent (op key `onramp:{id}:credit`, guarded status changes), so an event
//! processed twice, or events arriving out of order, credit at most once and never move a
//! terminal on-ramp.

use super::wallet::{OpOutcome, WalletOp};
use super::wallet_supervisor::{WalletError, Wallets};
use crate::domain::{BalanceOp, JournalId, OnrampId, OnrampProvider, Rejection};
use crate::metrics::Metrics;
use crate::providers::stripe::StripeCheckout;
use crate::store::Store;
use crate::store::accounts::{Owner, SystemAccount};
use crate::store::entities::webhook_inbox;
use crate::store::idempotency::IdempotencyWrite;
use crate::store::ledger::{Effect, JournalSpec, Reference};
use crate::store::onramps::OnrampRecord;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The actor kind in metrics, per provider.
pub fn kind(provider: OnrampProvider) -> &'static str {
    match provider {
        OnrampProvider::Bank => "bank_ingestor",
        OnrampProvider::Stripe => "stripe_ingestor",
    }
}

pub struct IngestorArgs {
    pub provider: OnrampProvider,
    pub stripe: Option<StripeCheckout>,
    pub store: Store,
    pub wallets: Wallets,
    pub metrics: Arc<Metrics>,
    pub poll_interval: Duration,
    /// Settles payouts (`payout.paid` / `payout.failed` from the bank).
    pub payments: Option<super::payments::Payments>,
}

pub struct IngestorState {
    provider: OnrampProvider,
    stripe: Option<StripeCheckout>,
    store: Store,
    wallets: Wallets,
    metrics: Arc<Metrics>,
    timer: Option<JoinHandle<()>>,
    payments: Option<super::payments::Payments>,
}

pub enum IngestorMsg {
    /// Process every unprocessed bank event now.
    Process,
}

/// A bank event as the bank sends it (docs/api.md, On-ramps).
#[derive(Debug, Deserialize)]
pub struct BankEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: BankEventData,
}

#[derive(Debug, Deserialize)]
pub struct BankEventData {
    pub reference: String,
    pub amount: i64,
    pub currency: String,
    /// The bank's own id of the payment (or payout), when the bank sends it: it must be the
    /// one the bank gave walleti for this reference.
    #[serde(default)]
    pub payment_id: Option<String>,
}

/// How one event ended. `retry`: an infrastructure failure; the event stays unprocessed.
struct Outcome {
    label: &'static str,
    detail: Option<String>,
    retry: bool,
}

impl Outcome {
    fn done(label: &'static str) -> Outcome {
        Outcome {
            label,
            detail: None,
            retry: false,
        }
    }

    fn with_detail(label: &'static str, detail: String) -> Outcome {
        Outcome {
            label,
            detail: Some(detail),
            retry: false,
        }
    }

    fn retry(detail: String) -> Outcome {
        Outcome {
            label: "error",
            detail: Some(detail),
            retry: true,
        }
    }
}

pub struct WebhookIngestor;

impl Actor for WebhookIngestor {
    type Msg = IngestorMsg;
    type State = IngestorState;
    type Arguments = IngestorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<IngestorMsg>,
        args: IngestorArgs,
    ) -> Result<IngestorState, ActorProcessingErr> {
        // Also at start-up: events stored before a crash are processed now.
        myself.send_message(IngestorMsg::Process)?;
        let timer = myself.send_interval(args.poll_interval, || IngestorMsg::Process);
        args.metrics
            .actors_live
            .with_label_values(&[kind(args.provider)])
            .inc();
        Ok(IngestorState {
            provider: args.provider,
            stripe: args.stripe,
            store: args.store,
            wallets: args.wallets,
            metrics: args.metrics,
            timer: Some(timer),
            payments: args.payments,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<IngestorMsg>,
        state: &mut IngestorState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        state
            .metrics
            .actors_live
            .with_label_values(&[kind(state.provider)])
            .dec();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<IngestorMsg>,
        message: IngestorMsg,
        state: &mut IngestorState,
    ) -> Result<(), ActorProcessingErr> {
        let IngestorMsg::Process = message;
        let metrics = Arc::clone(&state.metrics);
        let _timer = metrics.actor_message(kind(state.provider));
        // Nudges pile up while a pass runs; one pass handles everything stored so far.
        loop {
            let events = match state.store.unprocessed_inbox(state.provider).await {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(%error, provider = state.provider.as_str(), "read webhook inbox");
                    return Ok(());
                }
            };
            let mut progressed = false;
            for event in &events {
                progressed |= process_and_record(state, event).await;
            }
            if events.len() < crate::store::onramps::INBOX_BATCH_MAX as usize || !progressed {
                break;
            }
        }
        if let Ok(backlog) = state.store.inbox_backlog(OnrampProvider::Bank).await {
            state
                .metrics
                .webhook_inbox_backlog
                .with_label_values(&["bank"])
                .set(backlog as i64);
        }
        Ok(())
    }
}

/// Processes one inbox row and records its outcome; returns whether it is now processed.
async fn process_and_record(state: &IngestorState, event: &webhook_inbox::Model) -> bool {
    let started = Instant::now();
    let outcome = match state.provider {
        OnrampProvider::Bank => process_bank(state, event).await,
        OnrampProvider::Stripe => process_stripe(state, event).await,
    };
    let provider = state.provider.as_str();
    state
        .metrics
        .webhook_processing_seconds
        .with_label_values(&[provider])
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .webhook_events_total
        .with_label_values(&[provider, event.event_type.as_str(), outcome.label])
        .inc();
    if outcome.retry {
        state.metrics.record_actor_error(
            kind(state.provider),
            format!(
                "event {}: {}",
                event.event_id,
                outcome.detail.clone().unwrap_or_default()
            ),
        );
        tracing::warn!(provider, event_id = %event.event_id, detail = ?outcome.detail, "webhook event will be retried");
    }
    let recorded = state
        .store
        .record_inbox_outcome(
            &event.id,
            outcome.label,
            outcome.detail,
            !outcome.retry,
            chrono::Utc::now(),
        )
        .await;
    if let Err(error) = recorded {
        tracing::warn!(%error, provider, event_id = %event.event_id, "record webhook event outcome");
        return false;
    }
    !outcome.retry
}

async fn process_bank(state: &IngestorState, row: &webhook_inbox::Model) -> Outcome {
    let event: BankEvent = match serde_json::from_str(&row.payload) {
        Ok(event) => event,
        Err(error) => return Outcome::with_detail("malformed", error.to_string()),
    };
    let succeeded = match event.kind.as_str() {
        "payment.succeeded" => true,
        "payment.failed" => false,
        "payout.paid" | "payout.failed" => return settle_payout(state, &event).await,
        // Other types are stored and acknowledged.
        _ => return Outcome::done("ignored"),
    };
    let Ok(onramp_id) = event.data.reference.parse::<OnrampId>() else {
        return Outcome::with_detail("unknown_reference", event.data.reference.clone());
    };
    let onramp = match state.store.find_onramp(onramp_id).await {
        Ok(Some(onramp)) => onramp,
        Ok(None) => return Outcome::with_detail("unknown_reference", event.data.reference.clone()),
        Err(error) => return Outcome::retry(error.to_string()),
    };
    if let Err(outcome) = check_bank_onramp(&onramp, &event) {
        return outcome;
    }
    if onramp.status.is_terminal() {
        return Outcome::with_detail("already_final", onramp.status.as_str().to_owned());
    }
    if event.data.amount != onramp.amount.minor_units()
        || event.data.currency != onramp.currency.code()
    {
        let detail = format!(
            "event {} {}, on-ramp {} {}",
            event.data.amount,
            event.data.currency,
            onramp.amount.minor_units(),
            onramp.currency.code()
        );
        tracing::error!(onramp_id = %onramp.id, %detail, "bank event does not match its on-ramp; not crediting");
        return Outcome::with_detail("amount_mismatch", detail);
    }
    if succeeded {
        credit(state, &onramp, SystemAccount::BankClearing).await
    } else {
        fail(state, &onramp, "bank_declined").await
    }
}

/// A bank event may only move an on-ramp the bank was asked to collect: a bank on-ramp
/// with a bank payment, and (when the event names it) that very payment. Anything else, a
/// Stripe on-ramp above all, credits nothing and is recorded as `provider_mismatch`.
fn check_bank_onramp(onramp: &OnrampRecord, event: &BankEvent) -> Result<(), Outcome> {
    if onramp.provider != OnrampProvider::Bank {
        tracing::error!(onramp_id = %onramp.id, provider = onramp.provider.as_str(), "bank event for an on-ramp of another provider; not crediting");
        return Err(Outcome::with_detail(
            "provider_mismatch",
            format!("on-ramp provider {}", onramp.provider.as_str()),
        ));
    }
    let Some(bank_payment) = onramp.provider_reference.as_deref() else {
        return Err(Outcome::with_detail(
            "provider_mismatch",
            "no bank payment was requested for this on-ramp".to_owned(),
        ));
    };
    match event.data.payment_id.as_deref() {
        Some(payment_id) if payment_id != bank_payment => Err(Outcome::with_detail(
            "provider_mismatch",
            format!("bank payment {payment_id}, on-ramp's {bank_payment}"),
        )),
        _ => Ok(()),
    }
}

/// The bank paid (or failed) a payout: its locked funds leave or return.
async fn settle_payout(state: &IngestorState, event: &BankEvent) -> Outcome {
    let Some(payments) = &state.payments else {
        return Outcome::retry("payouts are not configured on this ingestor".into());
    };
    let Ok(payout_id) = event.data.reference.parse::<crate::domain::PayoutId>() else {
        return Outcome::with_detail("unknown_reference", event.data.reference.clone());
    };
    match state.store.find_payout(payout_id).await {
        Ok(Some(payout))
            if payout.amount.minor_units() != event.data.amount
                || payout.currency.code() != event.data.currency =>
        {
            let detail = format!(
                "event {} {}, payout {} {}",
                event.data.amount,
                event.data.currency,
                payout.amount.minor_units(),
                payout.currency.code()
            );
            tracing::error!(%payout_id, %detail, "bank payout event does not match the payout");
            return Outcome::with_detail("amount_mismatch", detail);
        }
        Ok(Some(payout)) => {
            // The bank's payout id, when the event names it, must be the one the bank gave.
            let named = event.data.payment_id.as_deref();
            let recorded = payout.bank_reference.as_deref();
            if let (Some(named), Some(recorded)) = (named, recorded)
                && named != recorded
            {
                return Outcome::with_detail(
                    "provider_mismatch",
                    format!("bank payout {named}, payout's {recorded}"),
                );
            }
        }
        Ok(None) => {}
        Err(error) => return Outcome::retry(error.to_string()),
    }
    match payments
        .settle_payout(payout_id, event.kind == "payout.paid")
        .await
    {
        Ok("unknown_payout") => {
            Outcome::with_detail("unknown_reference", event.data.reference.clone())
        }
        Ok(label) => Outcome::done(label),
        Err(error) => Outcome::retry(format!("{error:?}")),
    }
}

/// The on-ramp a Stripe session belongs to; it must be a Stripe on-ramp of that very session.
async fn stripe_onramp(
    state: &IngestorState,
    reference: Option<&str>,
    session_id: &str,
) -> Result<OnrampRecord, Outcome> {
    let reference = reference.unwrap_or_default();
    let Ok(onramp_id) = reference.parse::<OnrampId>() else {
        return Err(Outcome::with_detail(
            "unknown_reference",
            reference.to_owned(),
        ));
    };
    let onramp = match state.store.find_onramp(onramp_id).await {
        Ok(Some(onramp)) => onramp,
        Ok(None) => {
            return Err(Outcome::with_detail(
                "unknown_reference",
                reference.to_owned(),
            ));
        }
        Err(error) => return Err(Outcome::retry(error.to_string())),
    };
    if onramp.provider != OnrampProvider::Stripe
        || onramp.provider_reference.as_deref() != Some(session_id)
    {
        return Err(Outcome::with_detail(
            "session_mismatch",
            session_id.to_owned(),
        ));
    }
    if onramp.status.is_terminal() {
        return Err(Outcome::with_detail(
            "already_final",
            onramp.status.as_str().to_owned(),
        ));
    }
    Ok(onramp)
}

async fn process_stripe(state: &IngestorState, row: &webhook_inbox::Model) -> Outcome {
    let payload: serde_json::Value = match serde_json::from_str(&row.payload) {
        Ok(payload) => payload,
        Err(error) => return Outcome::with_detail("malformed", error.to_string()),
    };
    let session = &payload["data"]["object"];
    let Some(session_id) = session["id"].as_str() else {
        return Outcome::done("ignored");
    };
    match row.event_type.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            credit_stripe_session(state, session_id).await
        }
        "checkout.session.async_payment_failed" | "checkout.session.expired" => {
            let reference = session["client_reference_id"].as_str();
            let onramp = match stripe_onramp(state, reference, session_id).await {
                Ok(onramp) => onramp,
                Err(outcome) => return outcome,
            };
            let code = if row.event_type.ends_with("expired") {
                "stripe_session_expired"
            } else {
                "stripe_payment_failed"
            };
            fail(state, &onramp, code).await
        }
        // Stored and acknowledged; nothing to do.
        _ => Outcome::done("ignored"),
    }
}

/// Credits what Stripe says about the session now, not what the event payload said.
async fn credit_stripe_session(state: &IngestorState, session_id: &str) -> Outcome {
    let Some(stripe) = &state.stripe else {
        return Outcome::retry("stripe is not configured".into());
    };
    let facts = match stripe.retrieve_session(session_id).await {
        Ok(facts) => facts,
        Err(error) => return Outcome::retry(error.to_string()),
    };
    let onramp = match stripe_onramp(state, facts.client_reference_id.as_deref(), &facts.id).await {
        Ok(onramp) => onramp,
        Err(outcome) => return outcome,
    };
    if !facts.paid {
        return Outcome::done("awaiting_payment");
    }
    let matches = facts.amount_total == Some(onramp.amount.minor_units())
        && facts.currency.as_deref() == Some(onramp.currency.code());
    if !matches {
        let detail = format!(
            "stripe {:?} {:?}, on-ramp {} {}",
            facts.amount_total,
            facts.currency,
            onramp.amount.minor_units(),
            onramp.currency.code()
        );
        tracing::error!(onramp_id = %onramp.id, %detail, "stripe session does not match its on-ramp; not crediting");
        return Outcome::with_detail("amount_mismatch", detail);
    }
    credit(state, &onramp, SystemAccount::StripeClearing).await
}

async fn credit(state: &IngestorState, onramp: &OnrampRecord, clearing: SystemAccount) -> Outcome {
    let clearing = match state
        .store
        .find_account(&Owner::System(clearing), onramp.currency)
        .await
    {
        Ok(Some(account)) => account,
        Ok(None) => return Outcome::retry("clearing account missing".into()),
        Err(error) => return Outcome::retry(error.to_string()),
    };
    let op = WalletOp {
        idempotency: IdempotencyWrite::None,
        op_key: format!("onramp:{}:credit", onramp.id),
        kind: "onramp_credit",
        balance_op: BalanceOp::Credit(onramp.amount),
        journal: JournalSpec {
            id: JournalId::from(onramp.id.as_uuid()),
            kind: "onramp",
            is_new: true,
        },
        reference: Reference {
            kind: "onramp",
            id: onramp.id.to_string(),
        },
        counterpart: Some(clearing.id),
        effect: Effect::SucceedOnramp(Box::new(onramp.clone())),
        // An event may be processed again after a crash: always check first.
        replay: true,
    };
    match state.wallets.apply(onramp.account_id, op).await {
        Ok(OpOutcome::Applied { .. }) => Outcome::done("credited"),
        Ok(OpOutcome::AlreadyApplied) => Outcome::done("already_credited"),
        Ok(OpOutcome::Rejected(Rejection::InvalidTransition)) => Outcome::done("already_final"),
        Ok(OpOutcome::Rejected(rejection)) => {
            // The wallet cannot take the money (e.g. it would overflow): the on-ramp fails.
            fail(state, onramp, rejection.code()).await
        }
        Err(WalletError::AccountNotFound) => {
            fail(state, onramp, Rejection::AccountNotFound.code()).await
        }
        Err(error) => Outcome::retry(error.to_string()),
    }
}

async fn fail(state: &IngestorState, onramp: &OnrampRecord, failure_code: &str) -> Outcome {
    match state
        .store
        .fail_onramp(onramp, failure_code, chrono::Utc::now())
        .await
    {
        Ok(true) => Outcome::done("failed"),
        Ok(false) => Outcome::done("already_final"),
        Err(error) => Outcome::retry(error.to_string()),
    }
}

//! `BankIngestor`: processes the bank's events from the webhook inbox. The HTTP handler only
//! verifies, stores and acknowledges; this actor (nudged after each store, and on a timer so
//! nothing stored before a crash is forgotten) turns each unprocessed event into its effect:
//! `payment.succeeded` credits the on-ramp's wallet from `bank_clearing` through its wallet
//! actor (on-ramp → `succeeded` in the same transaction); `payment.failed` fails the on-ramp.
//! Every step is idempotent (op key `onramp:{id}:credit`, guarded status changes), so an event
//! processed twice, or events arriving out of order, credit at most once and never move a
//! terminal on-ramp.

use super::wallet::{OpOutcome, WalletOp};
use super::wallet_supervisor::{WalletError, Wallets};
use crate::domain::{BalanceOp, JournalId, OnrampId, OnrampProvider, Rejection};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::accounts::{Owner, SystemAccount};
use crate::store::entities::webhook_inbox;
use crate::store::ledger::{Effect, JournalSpec, Reference};
use crate::store::onramps::OnrampRecord;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

pub const KIND: &str = "bank_ingestor";

pub struct IngestorArgs {
    pub store: Store,
    pub wallets: Wallets,
    pub metrics: Arc<Metrics>,
    pub poll_interval: Duration,
}

pub struct IngestorState {
    store: Store,
    wallets: Wallets,
    metrics: Arc<Metrics>,
    timer: Option<JoinHandle<()>>,
}

pub enum IngestorMsg {
    /// Process every unprocessed bank event now.
    Process,
}

/// A bank event as the bank sends it (API.md, On-ramps).
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

pub struct BankIngestor;

impl Actor for BankIngestor {
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
        args.metrics.actors_live.with_label_values(&[KIND]).inc();
        Ok(IngestorState {
            store: args.store,
            wallets: args.wallets,
            metrics: args.metrics,
            timer: Some(timer),
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
        state.metrics.actors_live.with_label_values(&[KIND]).dec();
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
        let _timer = metrics.actor_message(KIND);
        // Nudges pile up while a pass runs; one pass handles everything stored so far.
        loop {
            let events = match state.store.unprocessed_inbox(OnrampProvider::Bank).await {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(%error, "read bank inbox");
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
    let outcome = process(state, event).await;
    state
        .metrics
        .webhook_processing_seconds
        .with_label_values(&["bank"])
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .webhook_events_total
        .with_label_values(&["bank", event.event_type.as_str(), outcome.label])
        .inc();
    if outcome.retry {
        tracing::warn!(event_id = %event.event_id, detail = ?outcome.detail, "bank event will be retried");
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
        tracing::warn!(%error, event_id = %event.event_id, "record bank event outcome");
        return false;
    }
    !outcome.retry
}

async fn process(state: &IngestorState, row: &webhook_inbox::Model) -> Outcome {
    let event: BankEvent = match serde_json::from_str(&row.payload) {
        Ok(event) => event,
        Err(error) => return Outcome::with_detail("malformed", error.to_string()),
    };
    let succeeded = match event.kind.as_str() {
        "payment.succeeded" => true,
        "payment.failed" => false,
        // Payouts belong to the merchants issue; other types are stored and acknowledged.
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
        credit(state, &onramp).await
    } else {
        fail(state, &onramp, "bank_declined").await
    }
}

async fn credit(state: &IngestorState, onramp: &OnrampRecord) -> Outcome {
    let clearing = match state
        .store
        .find_account(&Owner::System(SystemAccount::BankClearing), onramp.currency)
        .await
    {
        Ok(Some(account)) => account,
        Ok(None) => return Outcome::retry("bank_clearing account missing".into()),
        Err(error) => return Outcome::retry(error.to_string()),
    };
    let op = WalletOp {
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

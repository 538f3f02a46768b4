//! `Reconciler`: proves the books balance, on a schedule and on demand, and stores a report.
//! Ledger checks (every account equals the sum of its entries; every finished journal sums to
//! zero; every entry's account and journal exist; Σ all accounts + Σ in flight = 0 per
//! currency; no wallet negative; every hold resolved at most once, its locked entries matching
//! its state), saga checks (transfers stuck past a threshold are resumed and reported), and
//! external checks (bank on-ramps against the bank's settlement statement). Runs are
//! serialised by the actor.

use super::transfer_saga::{self, SagaContext};
use crate::domain::OnrampStatus;
use crate::metrics::Metrics;
use crate::providers::bank::BankClient;
use crate::providers::stripe::{SessionFacts, StripeCheckout};

/// External checks look at on-ramps created within this window.
pub const EXTERNAL_WINDOW: chrono::Duration = chrono::Duration::days(7);
use crate::store::reconciliation::ReconciliationRow;
use crate::store::{Store, StoreResult};
use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

pub const KIND: &str = "reconciler";
/// Discrepancies kept in a stored report (all are counted).
pub const DISCREPANCIES_STORED_MAX: usize = 1_000;

/// Every kind of discrepancy, so metrics show zeros for a clean run.
pub const DISCREPANCY_KINDS: [&str; 11] = [
    "hold_mismatch",
    "status_mismatch",
    "balance_mismatch",
    "journal_unbalanced",
    "orphan_entry",
    "ledger_not_zero",
    "negative_wallet",
    "stuck_saga",
    "missing_in_ledger",
    "missing_at_provider",
    "amount_mismatch",
];

/// What a run needs.
#[derive(Clone)]
pub struct ReconcilerContext {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub bank: Option<BankClient>,
    pub stripe: Option<StripeCheckout>,
    /// Resume stuck sagas (the server); `None` only reports them (`walleti reconcile`).
    pub sagas: Option<SagaContext>,
    pub saga_stale_after: Duration,
}

pub struct ReconcilerArgs {
    pub context: ReconcilerContext,
    /// `None`: only on demand.
    pub interval: Option<Duration>,
}

pub struct ReconcilerState {
    context: ReconcilerContext,
    timer: Option<JoinHandle<()>>,
}

pub enum ReconcilerMsg {
    Run {
        trigger: &'static str,
        reply: Option<RpcReplyPort<Result<ReconciliationRow, String>>>,
    },
}

pub struct Reconciler;

impl Actor for Reconciler {
    type Msg = ReconcilerMsg;
    type State = ReconcilerState;
    type Arguments = ReconcilerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ReconcilerMsg>,
        args: ReconcilerArgs,
    ) -> Result<ReconcilerState, ActorProcessingErr> {
        let timer = args.interval.map(|interval| {
            myself.send_interval(interval, || ReconcilerMsg::Run {
                trigger: "schedule",
                reply: None,
            })
        });
        args.context
            .metrics
            .actors_live
            .with_label_values(&[KIND])
            .inc();
        Ok(ReconcilerState {
            context: args.context,
            timer,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ReconcilerMsg>,
        state: &mut ReconcilerState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
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
        _myself: ActorRef<ReconcilerMsg>,
        message: ReconcilerMsg,
        state: &mut ReconcilerState,
    ) -> Result<(), ActorProcessingErr> {
        let ReconcilerMsg::Run { trigger, reply } = message;
        let metrics = Arc::clone(&state.context.metrics);
        let _timer = metrics.actor_message(KIND);
        let result = reconcile(&state.context, trigger)
            .await
            .map_err(|error| error.to_string());
        if let Err(error) = &result {
            tracing::error!(%error, "reconciliation failed");
            metrics.record_actor_error(KIND, error.clone());
        }
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
        Ok(())
    }
}

/// Everything one run found.
#[derive(Default)]
struct Findings {
    counts: BTreeMap<&'static str, i64>,
    discrepancies: Vec<Value>,
}

impl Findings {
    fn add(&mut self, kind: &'static str, reference_type: &str, reference_id: &str, detail: Value) {
        *self.counts.entry(kind).or_default() += 1;
        if self.discrepancies.len() < DISCREPANCIES_STORED_MAX {
            self.discrepancies.push(json!({
                "kind": kind,
                "reference": {"type": reference_type, "id": reference_id},
                "detail": detail,
            }));
        }
    }
}

/// Runs every check once, stores the report, updates the metrics.
pub async fn reconcile(
    context: &ReconcilerContext,
    trigger: &'static str,
) -> anyhow::Result<ReconciliationRow> {
    let started_at = Utc::now();
    let started = Instant::now();
    let mut findings = Findings::default();
    check_balances(&context.store, &mut findings).await?;
    check_journals(&context.store, &mut findings).await?;
    check_orphan_entries(&context.store, &mut findings).await?;
    check_totals(context, &mut findings).await?;
    check_negative_wallets(&context.store, &mut findings).await?;
    check_holds(&context.store, &mut findings).await?;
    check_sagas(context, &mut findings).await?;
    if let Some(bank) = &context.bank {
        check_bank_settlements(&context.store, bank, &mut findings).await?;
        check_bank_payouts(&context.store, bank, &mut findings).await?;
    }
    if let Some(stripe) = &context.stripe {
        check_stripe_sessions(&context.store, stripe, &mut findings).await?;
    }
    let total: i64 = findings.counts.values().sum();
    let mut counts = serde_json::Map::new();
    for kind in DISCREPANCY_KINDS {
        let count = findings.counts.get(kind).copied().unwrap_or(0);
        counts.insert(kind.to_owned(), json!(count));
        context
            .metrics
            .reconciliation_discrepancies
            .with_label_values(&[kind])
            .set(count);
    }
    let row = ReconciliationRow {
        id: uuid::Uuid::now_v7().to_string(),
        status: if total == 0 { "clean" } else { "discrepancies" }.to_owned(),
        trigger: trigger.to_owned(),
        started_at,
        finished_at: Utc::now(),
        duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        counts: Value::Object(counts),
        discrepancies: Value::Array(findings.discrepancies),
        discrepancy_count: total,
    };
    context.store.save_reconciliation(&row).await?;
    context
        .metrics
        .reconciliation_runs_total
        .with_label_values(&[row.status.as_str()])
        .inc();
    context
        .metrics
        .reconciliation_duration_seconds
        .observe(started.elapsed().as_secs_f64());
    tracing::info!(reconciliation_id = %row.id, status = %row.status, discrepancies = total, "reconciliation finished");
    Ok(row)
}

async fn check_balances(store: &Store, findings: &mut Findings) -> StoreResult<()> {
    let mut after = String::new();
    loop {
        let (mismatches, last) = store.balance_mismatches_page(&after).await?;
        for mismatch in mismatches {
            findings.add(
                "balance_mismatch",
                "account",
                &mismatch.account_id,
                json!({
                    "stored": {"available": mismatch.available, "locked": mismatch.locked},
                    "entries": {"available": mismatch.entries_available, "locked": mismatch.entries_locked},
                }),
            );
        }
        match last {
            Some(last) => after = last,
            None => return Ok(()),
        }
    }
}

async fn check_journals(store: &Store, findings: &mut Findings) -> StoreResult<()> {
    for (journal, total) in store.unbalanced_journals().await? {
        findings.add(
            "journal_unbalanced",
            "journal",
            &journal,
            json!({"sum": total}),
        );
    }
    Ok(())
}

async fn check_orphan_entries(store: &Store, findings: &mut Findings) -> StoreResult<()> {
    for orphan in store.orphan_entries().await? {
        findings.add(
            "orphan_entry",
            "entry",
            &orphan.entry_id,
            json!({"missing_account": orphan.missing_account, "missing_journal": orphan.missing_journal}),
        );
    }
    Ok(())
}

async fn check_totals(context: &ReconcilerContext, findings: &mut Findings) -> StoreResult<()> {
    for (currency, total, in_flight) in context.store.ledger_totals().await? {
        if total.checked_add(in_flight) != Some(0) {
            findings.add(
                "ledger_not_zero",
                "currency",
                &currency,
                json!({"accounts_total": total, "in_flight": in_flight}),
            );
        }
    }
    for (state, count) in context.store.saga_counts().await? {
        context
            .metrics
            .sagas
            .with_label_values(&[state.as_str()])
            .set(count);
    }
    for (currency, total) in context.store.wallet_totals().await? {
        context
            .metrics
            .ledger_wallet_balance
            .with_label_values(&[currency.as_str()])
            .set(total as f64);
    }
    Ok(())
}

async fn check_negative_wallets(store: &Store, findings: &mut Findings) -> StoreResult<()> {
    for (account, available, locked) in store.negative_wallets().await? {
        findings.add(
            "negative_wallet",
            "account",
            &account,
            json!({"available": available, "locked": locked}),
        );
    }
    Ok(())
}

/// Every hold resolved at most once: its locked entries net to its amount while it is held,
/// and to zero once it is captured, voided or expired.
async fn check_holds(store: &Store, findings: &mut Findings) -> StoreResult<()> {
    for (hold, status, amount, locked_net) in store.hold_mismatches().await? {
        findings.add(
            "hold_mismatch",
            "hold",
            &hold,
            json!({"status": status, "amount": amount, "locked_in_ledger": locked_net}),
        );
    }
    Ok(())
}

async fn check_sagas(context: &ReconcilerContext, findings: &mut Findings) -> anyhow::Result<()> {
    let stale_after = chrono::Duration::from_std(context.saga_stale_after).unwrap_or_default();
    let cutoff = Utc::now() - stale_after;
    let stuck = context.store.unfinished_transfers(cutoff).await?;
    for transfer in &stuck {
        let age_seconds = (Utc::now() - transfer.updated_at).num_seconds();
        findings.add(
            "stuck_saga",
            "transfer",
            &transfer.id.to_string(),
            json!({"state": transfer.state.as_str(), "amount": transfer.amount.minor_units(),
                   "currency": transfer.currency.code(), "stuck_seconds": age_seconds,
                   "action": if context.sagas.is_some() { "resumed" } else { "reported" }}),
        );
    }
    if let Some(sagas) = &context.sagas
        && !stuck.is_empty()
    {
        transfer_saga::resume(sagas, stuck, cutoff).await?;
    }
    Ok(())
}

/// Bank on-ramps against the bank's statement of what it paid.
async fn check_bank_settlements(
    store: &Store,
    bank: &BankClient,
    findings: &mut Findings,
) -> anyhow::Result<()> {
    let settlements = bank.settlements().await?;
    let mut paid: HashMap<String, (i64, String)> = HashMap::new();
    for settlement in &settlements {
        paid.insert(
            settlement.reference.clone(),
            (settlement.amount, settlement.currency.clone()),
        );
    }
    let mut after = String::new();
    loop {
        let page = store
            .onramps_page("bank", Utc::now() - EXTERNAL_WINDOW, &after)
            .await?;
        for onramp in &page {
            let succeeded = onramp.status == OnrampStatus::Succeeded.as_str();
            match paid.remove(&onramp.id) {
                None if succeeded => findings.add(
                    "missing_at_provider",
                    "onramp",
                    &onramp.id,
                    json!({"amount": onramp.amount, "currency": onramp.currency}),
                ),
                None => {}
                Some((amount, currency))
                    if amount != onramp.amount || currency != onramp.currency =>
                {
                    findings.add(
                        "amount_mismatch",
                        "onramp",
                        &onramp.id,
                        json!({"ledger": {"amount": onramp.amount, "currency": onramp.currency},
                           "bank": {"amount": amount, "currency": currency}}),
                    )
                }
                Some(_) if !succeeded => findings.add(
                    "missing_in_ledger",
                    "onramp",
                    &onramp.id,
                    json!({"status": onramp.status, "bank": "paid"}),
                ),
                Some(_) => {}
            }
        }
        match page.last() {
            Some(last) if page.len() as u64 == crate::store::reconciliation::ACCOUNTS_PAGE_SIZE => {
                after = last.id.clone()
            }
            _ => break,
        }
    }
    // Paid by the bank for an on-ramp walleti has never heard of.
    for (reference, (amount, currency)) in paid {
        findings.add(
            "missing_in_ledger",
            "onramp",
            &reference,
            json!({"amount": amount, "currency": currency, "bank": "paid"}),
        );
    }
    Ok(())
}

/// Payouts of the window against the bank's payout statement: walleti settled a payout as paid
/// that the bank never paid (`missing_at_provider`), the bank paid one walleti has not settled
/// or never heard of (`missing_in_ledger`), or they disagree on the amount.
async fn check_bank_payouts(
    store: &Store,
    bank: &BankClient,
    findings: &mut Findings,
) -> anyhow::Result<()> {
    let mut paid: HashMap<String, (i64, String)> = bank
        .payout_settlements()
        .await?
        .into_iter()
        .map(|settlement| {
            (
                settlement.reference,
                (settlement.amount, settlement.currency),
            )
        })
        .collect();
    let mut after = String::new();
    loop {
        let page = store
            .payouts_page(Utc::now() - EXTERNAL_WINDOW, &after)
            .await?;
        for payout in &page {
            let settled = payout.status == crate::domain::PayoutStatus::Paid.as_str();
            match paid.remove(&payout.id) {
                None if settled => findings.add(
                    "missing_at_provider",
                    "payout",
                    &payout.id,
                    json!({"amount": payout.amount, "currency": payout.currency}),
                ),
                None => {}
                Some((amount, currency))
                    if amount != payout.amount || currency != payout.currency =>
                {
                    findings.add(
                        "amount_mismatch",
                        "payout",
                        &payout.id,
                        json!({"ledger": {"amount": payout.amount, "currency": payout.currency},
                           "bank": {"amount": amount, "currency": currency}}),
                    )
                }
                Some(_) if !settled => findings.add(
                    "missing_in_ledger",
                    "payout",
                    &payout.id,
                    json!({"status": payout.status, "bank": "paid"}),
                ),
                Some(_) => {}
            }
        }
        match page.last() {
            Some(last) if page.len() as u64 == crate::store::reconciliation::ACCOUNTS_PAGE_SIZE => {
                after = last.id.clone()
            }
            _ => break,
        }
    }
    for (reference, (amount, currency)) in paid {
        findings.add(
            "missing_in_ledger",
            "payout",
            &reference,
            json!({"amount": amount, "currency": currency, "bank": "paid"}),
        );
    }
    Ok(())
}

/// Stripe on-ramps of the window against the Checkout Sessions Stripe lists for it.
async fn check_stripe_sessions(
    store: &Store,
    stripe: &StripeCheckout,
    findings: &mut Findings,
) -> anyhow::Result<()> {
    let since = Utc::now() - EXTERNAL_WINDOW;
    let mut by_reference: HashMap<String, SessionFacts> = HashMap::new();
    for session in stripe.sessions_created_since(since.timestamp()).await? {
        if let Some(reference) = session.client_reference_id.clone() {
            by_reference.insert(reference, session);
        }
    }
    let mut after = String::new();
    loop {
        let page = store.onramps_page("stripe", since, &after).await?;
        for onramp in &page {
            compare_stripe_onramp(onramp, by_reference.remove(&onramp.id), findings);
        }
        match page.last() {
            Some(last) if page.len() as u64 == crate::store::reconciliation::ACCOUNTS_PAGE_SIZE => {
                after = last.id.clone()
            }
            _ => break,
        }
    }
    // Stripe was paid for an on-ramp walleti has no record of.
    for (reference, session) in by_reference {
        if session.paid {
            findings.add(
                "missing_in_ledger",
                "onramp",
                &reference,
                json!({"session": session.id, "amount": session.amount_total, "currency": session.currency}),
            );
        }
    }
    Ok(())
}

fn compare_stripe_onramp(
    onramp: &crate::store::entities::onramps::Model,
    session: Option<SessionFacts>,
    findings: &mut Findings,
) {
    let succeeded = onramp.status == OnrampStatus::Succeeded.as_str();
    let Some(session) = session else {
        if succeeded {
            findings.add(
                "missing_at_provider",
                "onramp",
                &onramp.id,
                json!({"amount": onramp.amount, "currency": onramp.currency}),
            );
        }
        return;
    };
    let stripe_state = if session.paid {
        "paid"
    } else if session.expired {
        "expired"
    } else {
        "unpaid"
    };
    if session.paid != succeeded {
        findings.add(
            "status_mismatch",
            "onramp",
            &onramp.id,
            json!({"ledger": onramp.status, "stripe": stripe_state, "session": session.id}),
        );
    } else if succeeded
        && (session.amount_total != Some(onramp.amount)
            || session.currency.as_deref() != Some(onramp.currency.as_str()))
    {
        findings.add(
            "amount_mismatch",
            "onramp",
            &onramp.id,
            json!({"ledger": {"amount": onramp.amount, "currency": onramp.currency},
                   "stripe": {"amount": session.amount_total, "currency": session.currency}, "session": session.id}),
        );
    }
}

//! The one place money is written. `write_batch` writes a wallet's batch of movements inside
//! ONE transaction (`group_commit` writes many batches at once with the same pieces): the
//! optimistic version check on the account, the entries, the journals,
//! the counterpart entries on system accounts, the saga/adjustment rows the movements carry,
//! and the outbox events — all or nothing.

use super::entities::{accounts, adjustments, entries, journals, outbox, transfers};
use super::idempotency::{
    ClaimRow, CompletionRow, IdempotencyWrite, complete_claims, insert_claims,
};
use super::payments::{HoldPurpose, HoldRecord, RefundRecord};
use super::transfers::TransferRecord;
use super::{Store, StoreError, StoreResult, payments};
use crate::domain::{
    AccountId, AdjustmentId, Bucket, Currency, EntryId, JournalId, OutboxId, Posting, Rejection,
    SignedAmount, TransferId, TransferKind, TransferState,
};
use crate::domain::{HoldId, HoldState, PaymentIntentId, RefundId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction,
    EntityTrait, QueryFilter,
};
use serde_json::json;
use std::collections::BTreeMap;

/// What a movement refers to (shown to users as `reference: {type, id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub kind: &'static str,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSpec {
    pub id: JournalId,
    pub kind: &'static str,
    /// The first movement of a journal creates its row; later ones only reference it.
    pub is_new: bool,
}

/// An operator adjustment, recorded with who and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustmentRecord {
    pub id: AdjustmentId,
    pub account_id: AccountId,
    pub amount: SignedAmount,
    pub currency: Currency,
    pub reason: String,
    pub operator: String,
    pub journal_id: JournalId,
    pub created_at: DateTime<Utc>,
}

/// The rows a movement writes besides entries, in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Step 1 of a transfer saga: the transfer comes into existence as `debited` (a payment's
    /// also moves its intent to `processing`).
    OpenTransfer(Box<TransferRecord>),
    /// Step 1 of a capture saga: the hold is consumed (the captured part is in flight, the rest
    /// released) and the intent is `processing`.
    OpenCapture(Box<TransferRecord>, HoldId),
    /// Step 1 of a refund saga: the refund exists and counts against the intent.
    OpenRefund(Box<TransferRecord>, Box<RefundRecord>),
    /// `available` → `locked` for what the hold secures.
    OpenHold(Box<HoldRecord>, Box<HoldPurpose>),
    /// The hold returns to `available` in full (`voided` or `expired`).
    ReleaseHold(Box<HoldRecord>, HoldState),
    /// A payout's hold leaves to `payout_clearing`: the payout is `paid`.
    PayOut(Box<HoldRecord>),
    /// Step 2: `debited` → `completed`.
    CompleteTransfer(Box<TransferRecord>),
    /// Compensation: `debited` → `failed`.
    FailTransfer(Box<TransferRecord>, Rejection),
    RecordAdjustment(Box<AdjustmentRecord>),
    /// An on-ramp's credit: `processing` → `succeeded`.
    SucceedOnramp(Box<super::onramps::OnrampRecord>),
}

impl Effect {
    /// The on-ramp this movement requires to be `processing` when it commits.
    pub fn guarded_onramp(&self) -> Option<crate::domain::OnrampId> {
        match self {
            Effect::SucceedOnramp(onramp) => Some(onramp.id),
            _ => None,
        }
    }

    /// The hold this movement resolves: it must still be `held`.
    pub fn guarded_hold(&self) -> Option<HoldId> {
        match self {
            Effect::OpenCapture(_, hold) => Some(*hold),
            Effect::ReleaseHold(hold, _) | Effect::PayOut(hold) => Some(hold.id),
            _ => None,
        }
    }

    /// The payment intent this movement changes, and how.
    pub fn intent_action(&self) -> Option<(PaymentIntentId, IntentAction)> {
        match self {
            Effect::OpenTransfer(transfer) if transfer.kind == TransferKind::Payment => {
                let intent = transfer.reference_id.as_deref()?.parse().ok()?;
                Some((intent, IntentAction::Confirm { manual: false }))
            }
            Effect::OpenHold(_, purpose) => match purpose.as_ref() {
                HoldPurpose::Authorize { intent, .. } => {
                    Some((*intent, IntentAction::Confirm { manual: true }))
                }
                HoldPurpose::Payout(_) => None,
            },
            Effect::OpenRefund(_, refund) => Some((
                refund.payment_intent_id,
                IntentAction::Refund(refund.amount.minor_units()),
            )),
            _ => None,
        }
    }

    /// The transfer whose state this movement requires to be `debited` when it commits.
    pub fn guarded_transfer(&self) -> Option<TransferId> {
        match self {
            Effect::CompleteTransfer(transfer) | Effect::FailTransfer(transfer, _) => {
                Some(transfer.id)
            }
            _ => None,
        }
    }
}

/// What a movement does to a payment intent, checked by the wallet before it commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentAction {
    Confirm { manual: bool },
    Refund(i64),
}

/// A movement the wallet accepted, with the balance after each of its postings.
#[derive(Debug, Clone)]
pub struct AppliedMovement {
    pub op_key: String,
    pub kind: &'static str,
    pub journal: JournalSpec,
    pub reference: Reference,
    /// Each posting with the balance of its bucket right after it.
    pub postings: Vec<(Posting, i64)>,
    /// A system account that takes the opposite of this movement's net amount.
    pub counterpart: Option<AccountId>,
    pub effect: Effect,
    /// The request's idempotency claim (first step) or stored response (last step).
    pub idempotency: IdempotencyWrite,
}

/// The new state of the wallet after the batch, checked against the state it was planned
/// from: the account must still be at `expected_version` AND hold the expected balance.
///
/// The balance is checked as well as the version because a wallet may plan a batch on top of
/// one still in flight (`wallet::InFlight`): that batch expects the version and balance the one
/// before it leaves. Should the one before fail because another writer moved the account (a
/// stale owner of another node) to that same version, the version alone would let the later
/// batch overwrite the other writer's balance; with the balance checked it can only land on
/// exactly the state it was planned from, where its balances are right whoever wrote it.
#[derive(Debug, Clone, Copy)]
pub struct AccountWrite {
    pub account: AccountId,
    pub expected_version: i64,
    pub expected_available: i64,
    pub expected_locked: i64,
    pub available: i64,
    pub locked: i64,
    /// Versions the write moves the account on: one per wallet batch it carries (consecutive
    /// batches of one wallet in one group are written as one, `AccountWrite::then`).
    pub steps: i64,
}

impl AccountWrite {
    /// This write followed by `next`, planned on top of it, as one write; `None` if `next` was
    /// not planned from exactly what this one leaves.
    pub fn then(self, next: AccountWrite) -> Option<AccountWrite> {
        let chained = next.account == self.account
            && next.expected_version == self.expected_version + self.steps
            && next.expected_available == self.available
            && next.expected_locked == self.locked;
        chained.then_some(AccountWrite {
            available: next.available,
            locked: next.locked,
            steps: self.steps + next.steps,
            ..self
        })
    }
}

impl Store {
    pub async fn find_adjustment(
        &self,
        id: AdjustmentId,
    ) -> StoreResult<Option<adjustments::Model>> {
        Ok(adjustments::Entity::find_by_id(id.to_string())
            .one(self.reader())
            .await?)
    }

    pub async fn list_adjustments(
        &self,
        page: &super::accounts::PageRequest,
    ) -> StoreResult<(Vec<adjustments::Model>, bool)> {
        super::accounts::fetch_page(
            adjustments::Entity::find(),
            adjustments::Column::Id,
            page,
            self.reader(),
        )
        .await
    }

    /// The states of the given transfers, read through the writer (the saga guard).
    pub async fn transfer_states(
        &self,
        ids: &[TransferId],
    ) -> StoreResult<Vec<(TransferId, TransferState)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = transfers::Entity::find()
            .filter(transfers::Column::Id.is_in(ids.iter().map(ToString::to_string)))
            .all(self.writer())
            .await?;
        rows.into_iter()
            .map(|row| {
                let id = row
                    .id
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("transfer id {}", row.id)))?;
                let state = TransferState::parse(&row.state)
                    .ok_or_else(|| StoreError::Corrupt(format!("transfer {} state", row.id)))?;
                Ok((id, state))
            })
            .collect()
    }
}

/// Writes one wallet's batch inside `transaction` (or a savepoint of it): the version-checked
/// account, its journals and entries, the system counterparts and every effect.
pub(super) async fn write_batch(
    transaction: &DatabaseTransaction,
    account: AccountWrite,
    movements: &[AppliedMovement],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    debug_assert!(account.available >= 0 || movements.iter().all(|m| m.counterpart.is_none()));
    let claims: Vec<&ClaimRow> = movements
        .iter()
        .filter_map(|movement| movement.idempotency.claim())
        .collect();
    if !claims.is_empty() && insert_claims(transaction, &claims).await?.len() != claims.len() {
        return Err(StoreError::Conflict(
            "an idempotency key of this batch is claimed by another request".into(),
        ));
    }
    write_account(transaction, account).await?;
    insert_journals(transaction, movements.iter(), now).await?;
    insert_rows(transaction, entry_rows(account.account, movements, now)).await?;
    write_counterparts(transaction, movements.iter(), now).await?;
    for movement in movements {
        write_effect(transaction, &movement.effect, now).await?;
    }
    let completions: Vec<&CompletionRow> = movements
        .iter()
        .filter_map(|movement| movement.idempotency.completion())
        .collect();
    complete_claims(transaction, &completions).await?;
    Ok(())
}

async fn write_account(
    transaction: &DatabaseTransaction,
    account: AccountWrite,
) -> StoreResult<()> {
    let updated = accounts::Entity::update_many()
        .col_expr(accounts::Column::Available, Expr::value(account.available))
        .col_expr(accounts::Column::Locked, Expr::value(account.locked))
        .col_expr(
            accounts::Column::Version,
            Expr::value(account.expected_version + account.steps),
        )
        .filter(accounts::Column::Id.eq(account.account.to_string()))
        .filter(accounts::Column::Version.eq(account.expected_version))
        .filter(accounts::Column::Available.eq(account.expected_available))
        .filter(accounts::Column::Locked.eq(account.expected_locked))
        .exec(transaction)
        .await?;
    if updated.rows_affected != 1 {
        return Err(StoreError::Conflict(format!(
            "account {} is no longer at version {}",
            account.account, account.expected_version
        )));
    }
    Ok(())
}

pub(super) async fn insert_journals<'a>(
    transaction: &DatabaseTransaction,
    movements: impl Iterator<Item = &'a AppliedMovement>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let rows = journal_rows(movements, now);
    super::bulk::insert_rows(transaction, rows, Some(JOURNALS_CONFLICT)).await
}

/// A journal shared by several movements (a transfer's legs) is inserted by the first.
pub(super) const JOURNALS_CONFLICT: &str = "ON CONFLICT (\"id\") DO NOTHING";

/// The journals the movements open.
pub(super) fn journal_rows<'a>(
    movements: impl Iterator<Item = &'a AppliedMovement>,
    now: DateTime<Utc>,
) -> Vec<journals::ActiveModel> {
    movements
        .filter(|movement| movement.journal.is_new)
        .map(|movement| journals::ActiveModel {
            id: Set(movement.journal.id.to_string()),
            kind: Set(movement.journal.kind.to_owned()),
            reference_type: Set(movement.reference.kind.to_owned()),
            reference_id: Set(movement.reference.id.clone()),
            created_at: Set(now),
        })
        .collect()
}

/// Ids per `IN (…)` list on SQLite.
pub(super) const ROWS_PER_STATEMENT_MAX: usize = 500;

/// Inserts `rows` with bulk statements (`bulk::insert_rows`).
pub(super) async fn insert_rows<A>(
    transaction: &DatabaseTransaction,
    rows: Vec<A>,
) -> StoreResult<()>
where
    A: ActiveModelTrait + Send,
{
    super::bulk::insert_rows(transaction, rows, None).await
}

/// The entries of one wallet's movements.
pub(super) fn entry_rows(
    account: AccountId,
    movements: &[AppliedMovement],
    now: DateTime<Utc>,
) -> Vec<entries::ActiveModel> {
    movements
        .iter()
        .flat_map(|movement| {
            movement
                .postings
                .iter()
                .enumerate()
                .map(move |(index, (posting, balance_after))| {
                    entry_row(account, movement, index, *posting, *balance_after, now)
                })
        })
        .collect()
}

pub(super) fn entry_row(
    account: AccountId,
    movement: &AppliedMovement,
    index: usize,
    posting: Posting,
    balance_after: i64,
    now: DateTime<Utc>,
) -> entries::ActiveModel {
    // One op key per account and op; a multi-posting op (a hold) suffixes its later postings.
    let op_key = if index == 0 {
        movement.op_key.clone()
    } else {
        format!("{}#{index}", movement.op_key)
    };
    entries::ActiveModel {
        id: Set(EntryId::generate().to_string()),
        account_id: Set(account.to_string()),
        op_key: Set(op_key),
        bucket: Set(posting.bucket.as_str().to_owned()),
        amount: Set(posting.amount),
        balance_after: Set(balance_after),
        journal_id: Set(movement.journal.id.to_string()),
        kind: Set(movement.kind.to_owned()),
        reference_type: Set(movement.reference.kind.to_owned()),
        reference_id: Set(movement.reference.id.clone()),
        created_at: Set(now),
    }
}

/// System accounts are not owned by an actor: many wallets' batches touch them, so they move
/// by atomic increment (the row lock orders concurrent writers). Each system account is
/// updated once per batch, in account-id order so that two batches never lock two system
/// rows in opposite orders; `RETURNING` gives the final balance, from which every entry's
/// exact `balance_after` is worked out.
pub(super) async fn write_counterparts<'a>(
    transaction: &DatabaseTransaction,
    movements: impl Iterator<Item = &'a AppliedMovement>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut by_account: BTreeMap<String, Vec<(&AppliedMovement, i64)>> = BTreeMap::new();
    for movement in movements {
        let Some(system_account) = movement.counterpart else {
            continue;
        };
        let net: i64 = movement
            .postings
            .iter()
            .map(|(posting, _)| posting.amount)
            .sum();
        let delta = net
            .checked_neg()
            .ok_or_else(|| StoreError::Corrupt("counterpart overflow".into()))?;
        if delta != 0 {
            by_account
                .entry(system_account.to_string())
                .or_default()
                .push((movement, delta));
        }
    }
    for (system_account, deltas) in by_account {
        let total = deltas
            .iter()
            .try_fold(0_i64, |sum, (_, delta)| sum.checked_add(*delta))
            .ok_or_else(|| StoreError::Corrupt("counterpart overflow".into()))?;
        let statement = Query::update()
            .table(accounts::Entity)
            .value(
                accounts::Column::Available,
                Expr::col(accounts::Column::Available).add(total),
            )
            .value(
                accounts::Column::Version,
                Expr::col(accounts::Column::Version).add(1),
            )
            .and_where(Expr::col(accounts::Column::Id).eq(system_account.as_str()))
            .and_where(Expr::col(accounts::Column::OwnerType).eq("system"))
            .returning_col(accounts::Column::Available)
            .to_owned();
        let row = transaction.query_one(&statement).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("system account {system_account} missing"))
        })?;
        let balance_final: i64 = row.try_get("", "available")?;
        let account: AccountId = system_account
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("system account id {system_account}")))?;
        let mut running = balance_final - total;
        let mut rows = Vec::with_capacity(deltas.len());
        for (movement, delta) in deltas {
            running += delta;
            let posting = Posting {
                bucket: Bucket::Available,
                amount: delta,
            };
            rows.push(entry_row(account, movement, 0, posting, running, now));
        }
        debug_assert_eq!(running, balance_final);
        insert_rows(transaction, rows).await?;
    }
    Ok(())
}

pub(super) async fn write_effect(
    transaction: &DatabaseTransaction,
    effect: &Effect,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    match effect {
        Effect::None => Ok(()),
        Effect::OpenTransfer(transfer) => {
            transfers::Entity::insert(transfer.to_active_model())
                .exec_without_returning(transaction)
                .await?;
            if transfer.kind == TransferKind::Payment {
                let super::transfers::Party::User(customer) = transfer.from else {
                    return Err(StoreError::Corrupt(format!(
                        "payment {} not paid by a user",
                        transfer.id
                    )));
                };
                payments::start_payment(
                    transaction,
                    intent_of(transfer)?,
                    customer,
                    transfer.source_account,
                    &transfer.id.to_string(),
                    now,
                )
                .await?;
            }
            Ok(())
        }
        Effect::OpenCapture(transfer, hold) => {
            transfers::Entity::insert(transfer.to_active_model())
                .exec_without_returning(transaction)
                .await?;
            payments::start_capture(
                transaction,
                intent_of(transfer)?,
                *hold,
                transfer.amount.minor_units(),
                &transfer.id.to_string(),
                now,
            )
            .await
        }
        Effect::OpenRefund(transfer, refund) => {
            transfers::Entity::insert(transfer.to_active_model())
                .exec_without_returning(transaction)
                .await?;
            payments::open_refund(transaction, refund, now).await
        }
        Effect::OpenHold(hold, purpose) => {
            payments::open_hold(transaction, hold, purpose, now).await
        }
        Effect::ReleaseHold(hold, to) => payments::release_hold(transaction, hold, *to, now).await,
        Effect::PayOut(hold) => payments::pay_out(transaction, hold, now).await,
        Effect::CompleteTransfer(transfer) => {
            move_transfer(
                transaction,
                transfer.id,
                TransferState::Completed,
                None,
                now,
            )
            .await?;
            match transfer.kind {
                TransferKind::P2p => {
                    insert_event(
                        transaction,
                        "transfer.completed",
                        "transfer",
                        &transfer.id.to_string(),
                        transfer_event(transfer, TransferState::Completed, None),
                        now,
                    )
                    .await
                }
                TransferKind::Payment | TransferKind::Capture => {
                    payments::succeed_payment(
                        transaction,
                        intent_of(transfer)?,
                        transfer.amount.minor_units(),
                        now,
                    )
                    .await
                }
                TransferKind::Refund => {
                    payments::finish_refund(transaction, refund_of(transfer)?, None, now).await
                }
            }
        }
        Effect::FailTransfer(transfer, reason) => {
            move_transfer(
                transaction,
                transfer.id,
                TransferState::Failed,
                Some(*reason),
                now,
            )
            .await?;
            match transfer.kind {
                TransferKind::P2p => {
                    insert_event(
                        transaction,
                        "transfer.failed",
                        "transfer",
                        &transfer.id.to_string(),
                        transfer_event(transfer, TransferState::Failed, Some(*reason)),
                        now,
                    )
                    .await
                }
                TransferKind::Payment => {
                    payments::fail_payment(transaction, intent_of(transfer)?, *reason, now).await
                }
                TransferKind::Capture => {
                    payments::fail_capture(transaction, intent_of(transfer)?, *reason, now).await
                }
                TransferKind::Refund => {
                    payments::finish_refund(transaction, refund_of(transfer)?, Some(*reason), now)
                        .await
                }
            }
        }
        Effect::SucceedOnramp(onramp) => {
            let moved = super::onramps::move_onramp(
                transaction,
                onramp.id,
                crate::domain::OnrampStatus::Succeeded,
                None,
                now,
            )
            .await?;
            if !moved {
                return Err(StoreError::Conflict(format!(
                    "onramp {} is no longer processing",
                    onramp.id
                )));
            }
            let data = super::onramps::onramp_event(onramp, crate::domain::OnrampStatus::Succeeded);
            insert_event(
                transaction,
                "onramp.succeeded",
                "onramp",
                &onramp.id.to_string(),
                data,
                now,
            )
            .await
        }
        Effect::RecordAdjustment(adjustment) => {
            let row = adjustments::ActiveModel {
                id: Set(adjustment.id.to_string()),
                account_id: Set(adjustment.account_id.to_string()),
                amount: Set(adjustment.amount.minor_units()),
                currency: Set(adjustment.currency.code().to_owned()),
                reason: Set(adjustment.reason.clone()),
                operator: Set(adjustment.operator.clone()),
                journal_id: Set(adjustment.journal_id.to_string()),
                created_at: Set(adjustment.created_at),
            };
            adjustments::Entity::insert(row)
                .exec_without_returning(transaction)
                .await?;
            let payload = json!({
                "id": adjustment.id.to_string(),
                "account_id": adjustment.account_id.to_string(),
                "amount": adjustment.amount.minor_units(),
                "currency": adjustment.currency.code(),
                "reason": adjustment.reason,
            });
            insert_event(
                transaction,
                "adjustment.created",
                "adjustment",
                &adjustment.id.to_string(),
                payload,
                now,
            )
            .await
        }
    }
}

fn intent_of(transfer: &TransferRecord) -> StoreResult<PaymentIntentId> {
    transfer
        .reference_id
        .as_deref()
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| {
            StoreError::Corrupt(format!("transfer {} has no payment intent", transfer.id))
        })
}

fn refund_of(transfer: &TransferRecord) -> StoreResult<RefundId> {
    transfer
        .reference_id
        .as_deref()
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("transfer {} has no refund", transfer.id)))
}

async fn move_transfer(
    transaction: &DatabaseTransaction,
    id: TransferId,
    to: TransferState,
    failure: Option<Rejection>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let updated = transfers::Entity::update_many()
        .col_expr(transfers::Column::State, Expr::value(to.as_str()))
        .col_expr(
            transfers::Column::FailureCode,
            Expr::value(failure.map(|reason| reason.code().to_owned())),
        )
        .col_expr(transfers::Column::UpdatedAt, Expr::value(now))
        .filter(transfers::Column::Id.eq(id.to_string()))
        .filter(transfers::Column::State.eq(TransferState::Debited.as_str()))
        .exec(transaction)
        .await?;
    if updated.rows_affected != 1 {
        return Err(StoreError::Conflict(format!(
            "transfer {id} is no longer debited"
        )));
    }
    Ok(())
}

pub(super) fn transfer_event(
    transfer: &TransferRecord,
    state: TransferState,
    failure: Option<Rejection>,
) -> serde_json::Value {
    json!({
        "id": transfer.id.to_string(),
        "status": state.api_status(),
        "from_user": transfer.from.to_string(),
        "to_user": transfer.to.to_string(),
        "amount": transfer.amount.minor_units(),
        "currency": transfer.currency.code(),
        "failure_code": failure.map(Rejection::code),
    })
}

pub(super) async fn insert_event(
    transaction: &DatabaseTransaction,
    event_type: &str,
    aggregate_type: &str,
    aggregate_id: &str,
    data: serde_json::Value,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    outbox::Entity::insert(event_row(
        event_type,
        aggregate_type,
        aggregate_id,
        data,
        now,
    ))
    .exec_without_returning(transaction)
    .await?;
    Ok(())
}

/// An outbox event, ready to be inserted with the change it announces.
pub(super) fn event_row(
    event_type: &str,
    aggregate_type: &str,
    aggregate_id: &str,
    data: serde_json::Value,
    now: DateTime<Utc>,
) -> outbox::ActiveModel {
    let id = OutboxId::generate().to_string();
    let payload = json!({
        "id": id,
        "type": event_type,
        "created": now.to_rfc3339(),
        "data": data,
    });
    outbox::ActiveModel {
        id: Set(id),
        event_type: Set(event_type.to_owned()),
        aggregate_type: Set(aggregate_type.to_owned()),
        aggregate_id: Set(aggregate_id.to_owned()),
        payload: Set(payload.to_string()),
        created_at: Set(now),
        published_at: Set(None),
        attempts: Set(0),
        last_error: Set(None),
        dead_lettered_at: Set(None),
        notified_at: Set(None),
        dispatched_at: Set(None),
    }
}

//! Payment intents, holds, refunds and payouts: typed records, the API objects (which are also
//! the `data` of their outbox events, so a webhook shows exactly what the API shows), reads,
//! and the guarded state changes that the ledger (`ledger::write_effect`) makes in the same
//! transaction as the money movements they belong to.
//!
//! Every state change here is an `UPDATE … WHERE status = <expected>`: if the row moved on,
//! no row matches and the transaction fails with `StoreError::Conflict`, so two writers can
//! never both resolve the same hold or confirm the same intent.

use super::accounts::{PageRequest, fetch_page};
use super::entities::{holds, payment_intents, payouts, refunds};
use super::transfers::Party;
use super::{Store, StoreError, StoreResult};
use crate::domain::{
    AccountId, Amount, CancellationReason, CaptureMethod, Currency, HoldId, HoldState,
    IntentSnapshot, MerchantId, PaymentIntentId, PaymentIntentStatus, PayoutId, PayoutStatus,
    RefundId, RefundStatus, Rejection, UserId,
};
use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::Serialize;
use std::collections::HashMap;

fn corrupt(what: &str, id: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {id}"))
}

// ---------------------------------------------------------------------------------------------
// Records

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentIntentRecord {
    pub id: PaymentIntentId,
    pub merchant_id: MerchantId,
    pub amount: Amount,
    pub currency: Currency,
    pub capture_method: CaptureMethod,
    pub description: Option<String>,
    pub status: PaymentIntentStatus,
    pub customer_user_id: Option<UserId>,
    pub customer_account_id: Option<AccountId>,
    pub hold_id: Option<HoldId>,
    pub amount_capturable: i64,
    pub amount_received: i64,
    pub amount_refunded: i64,
    pub failure_code: Option<String>,
    pub cancellation_reason: Option<String>,
    pub canceled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The payment link's token: the page at `/pay/{link_token}` (128 random bits, hex).
    /// `None` for intents created before payment links had their own token.
    pub link_token: Option<String>,
}

/// A new payment link token: 128 random bits, hex (the intent's own id is time-ordered, so
/// partly predictable, and is not what the public page is reached by).
pub fn new_link_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

impl TryFrom<payment_intents::Model> for PaymentIntentRecord {
    type Error = StoreError;

    fn try_from(row: payment_intents::Model) -> StoreResult<PaymentIntentRecord> {
        let bad = |what: &str| corrupt(&format!("payment intent {what}"), &row.id);
        Ok(PaymentIntentRecord {
            id: row.id.parse().map_err(|_| bad("id"))?,
            merchant_id: row.merchant_id.parse().map_err(|_| bad("merchant"))?,
            amount: Amount::new(row.amount).map_err(|_| bad("amount"))?,
            currency: Currency::parse(&row.currency).map_err(|_| bad("currency"))?,
            capture_method: CaptureMethod::parse(&row.capture_method)
                .ok_or_else(|| bad("capture method"))?,
            description: row.description.clone(),
            status: PaymentIntentStatus::parse(&row.status).ok_or_else(|| bad("status"))?,
            customer_user_id: row
                .customer_user_id
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|_| bad("customer"))?,
            customer_account_id: row
                .customer_account_id
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|_| bad("customer account"))?,
            hold_id: row
                .hold_id
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|_| bad("hold"))?,
            amount_capturable: row.amount_capturable,
            amount_received: row.amount_received,
            amount_refunded: row.amount_refunded,
            failure_code: row.failure_code,
            cancellation_reason: row.cancellation_reason,
            canceled_at: row.canceled_at,
            created_at: row.created_at,
            link_token: row.link_token,
        })
    }
}

/// What a hold secures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReference {
    PaymentIntent(PaymentIntentId),
    Payout(PayoutId),
}

impl HoldReference {
    fn columns(self) -> (&'static str, String) {
        match self {
            HoldReference::PaymentIntent(id) => ("payment_intent", id.to_string()),
            HoldReference::Payout(id) => ("payout", id.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRecord {
    pub id: HoldId,
    pub account_id: AccountId,
    pub amount: Amount,
    pub currency: Currency,
    pub state: HoldState,
    pub reference: HoldReference,
    /// Payment authorisations expire; payout holds wait for the bank.
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<holds::Model> for HoldRecord {
    type Error = StoreError;

    fn try_from(row: holds::Model) -> StoreResult<HoldRecord> {
        let bad = |what: &str| corrupt(&format!("hold {what}"), &row.id);
        let reference = match row.reference_type.as_str() {
            "payment_intent" => HoldReference::PaymentIntent(
                row.reference_id.parse().map_err(|_| bad("reference"))?,
            ),
            "payout" => {
                HoldReference::Payout(row.reference_id.parse().map_err(|_| bad("reference"))?)
            }
            _ => return Err(bad("reference type")),
        };
        Ok(HoldRecord {
            id: row.id.parse().map_err(|_| bad("id"))?,
            account_id: row.account_id.parse().map_err(|_| bad("account"))?,
            amount: Amount::new(row.amount).map_err(|_| bad("amount"))?,
            currency: Currency::parse(&row.currency).map_err(|_| bad("currency"))?,
            state: HoldState::parse(&row.status).ok_or_else(|| bad("status"))?,
            reference,
            expires_at: row.expires_at,
            created_at: row.created_at,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRecord {
    pub id: RefundId,
    pub merchant_id: MerchantId,
    pub payment_intent_id: PaymentIntentId,
    pub user_id: UserId,
    pub amount: Amount,
    pub currency: Currency,
    pub status: RefundStatus,
    pub failure_code: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<refunds::Model> for RefundRecord {
    type Error = StoreError;

    fn try_from(row: refunds::Model) -> StoreResult<RefundRecord> {
        let bad = |what: &str| corrupt(&format!("refund {what}"), &row.id);
        Ok(RefundRecord {
            id: row.id.parse().map_err(|_| bad("id"))?,
            merchant_id: row.merchant_id.parse().map_err(|_| bad("merchant"))?,
            payment_intent_id: row.payment_intent_id.parse().map_err(|_| bad("intent"))?,
            user_id: row.user_id.parse().map_err(|_| bad("user"))?,
            amount: Amount::new(row.amount).map_err(|_| bad("amount"))?,
            currency: Currency::parse(&row.currency).map_err(|_| bad("currency"))?,
            status: RefundStatus::parse(&row.status).ok_or_else(|| bad("status"))?,
            failure_code: row.failure_code,
            created_at: row.created_at,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutRecord {
    pub id: PayoutId,
    pub owner: Party,
    pub account_id: AccountId,
    pub hold_id: HoldId,
    pub amount: Amount,
    pub currency: Currency,
    pub status: PayoutStatus,
    pub bank_reference: Option<String>,
    pub failure_code: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<payouts::Model> for PayoutRecord {
    type Error = StoreError;

    fn try_from(row: payouts::Model) -> StoreResult<PayoutRecord> {
        let bad = |what: &str| corrupt(&format!("payout {what}"), &row.id);
        let owner: uuid::Uuid = row.owner_id.parse().map_err(|_| bad("owner"))?;
        let owner = match row.owner_type.as_str() {
            "user" => Party::User(owner.into()),
            "merchant" => Party::Merchant(owner.into()),
            _ => return Err(bad("owner type")),
        };
        Ok(PayoutRecord {
            id: row.id.parse().map_err(|_| bad("id"))?,
            owner,
            account_id: row.account_id.parse().map_err(|_| bad("account"))?,
            hold_id: row.hold_id.parse().map_err(|_| bad("hold"))?,
            amount: Amount::new(row.amount).map_err(|_| bad("amount"))?,
            currency: Currency::parse(&row.currency).map_err(|_| bad("currency"))?,
            status: PayoutStatus::parse(&row.status).ok_or_else(|| bad("status"))?,
            bank_reference: row.bank_reference,
            failure_code: row.failure_code,
            created_at: row.created_at,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// API objects (also the `data` of the events)

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PaymentIntentObject {
    pub id: String,
    /// Always `payment_intent`.
    pub object: &'static str,
    pub merchant: String,
    pub amount: i64,
    pub currency: &'static str,
    /// `automatic` or `manual`.
    pub capture_method: &'static str,
    pub description: Option<String>,
    /// `requires_confirmation`, `processing`, `requires_capture`, `succeeded` or `canceled`.
    pub status: &'static str,
    /// The user who confirmed (paid or authorised) the intent.
    pub customer: Option<String>,
    pub amount_capturable: i64,
    pub amount_received: i64,
    pub amount_refunded: i64,
    /// Why the last payment attempt failed.
    pub failure_code: Option<String>,
    /// `requested_by_merchant`, `expired` or `capture_failed`.
    pub cancellation_reason: Option<String>,
    pub canceled_at: Option<String>,
    pub created_at: String,
    /// The payment page to send the customer to, as a path under walleti's public URL
    /// (`/pay/…`, an unguessable 128-bit token).
    pub payment_link: Option<String>,
}

impl From<&PaymentIntentRecord> for PaymentIntentObject {
    fn from(intent: &PaymentIntentRecord) -> PaymentIntentObject {
        PaymentIntentObject {
            id: intent.id.to_string(),
            object: "payment_intent",
            merchant: intent.merchant_id.to_string(),
            amount: intent.amount.minor_units(),
            currency: intent.currency.code(),
            capture_method: intent.capture_method.as_str(),
            description: intent.description.clone(),
            status: intent.status.as_str(),
            customer: intent.customer_user_id.map(|user| user.to_string()),
            amount_capturable: intent.amount_capturable,
            amount_received: intent.amount_received,
            amount_refunded: intent.amount_refunded,
            failure_code: intent.failure_code.clone(),
            cancellation_reason: intent.cancellation_reason.clone(),
            canceled_at: intent
                .canceled_at
                .map(|at| at.to_rfc3339_opts(SecondsFormat::Millis, true)),
            created_at: intent
                .created_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            payment_link: intent
                .link_token
                .as_ref()
                .map(|token| format!("/pay/{token}")),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RefundObject {
    pub id: String,
    /// Always `refund`.
    pub object: &'static str,
    pub merchant: String,
    pub payment_intent: String,
    /// The user the money goes back to.
    pub user: String,
    pub amount: i64,
    pub currency: &'static str,
    /// `pending`, `succeeded` or `failed`.
    pub status: &'static str,
    pub failure_code: Option<String>,
    pub created_at: String,
}

impl From<&RefundRecord> for RefundObject {
    fn from(refund: &RefundRecord) -> RefundObject {
        RefundObject {
            id: refund.id.to_string(),
            object: "refund",
            merchant: refund.merchant_id.to_string(),
            payment_intent: refund.payment_intent_id.to_string(),
            user: refund.user_id.to_string(),
            amount: refund.amount.minor_units(),
            currency: refund.currency.code(),
            status: refund.status.as_str(),
            failure_code: refund.failure_code.clone(),
            created_at: refund
                .created_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PayoutObject {
    pub id: String,
    /// Always `payout`.
    pub object: &'static str,
    /// Set when a merchant withdraws.
    pub merchant: Option<String>,
    /// Set when a user withdraws.
    pub user: Option<String>,
    pub amount: i64,
    pub currency: &'static str,
    /// `pending` (funds locked), `in_transit` (the bank accepted it), `paid` or `failed`.
    pub status: &'static str,
    pub failure_code: Option<String>,
    pub created_at: String,
}

impl From<&PayoutRecord> for PayoutObject {
    fn from(payout: &PayoutRecord) -> PayoutObject {
        let (merchant, user) = match payout.owner {
            Party::Merchant(merchant) => (Some(merchant.to_string()), None),
            Party::User(user) => (None, Some(user.to_string())),
        };
        PayoutObject {
            id: payout.id.to_string(),
            object: "payout",
            merchant,
            user,
            amount: payout.amount.minor_units(),
            currency: payout.currency.code(),
            status: payout.status.as_str(),
            failure_code: payout.failure_code.clone(),
            created_at: payout
                .created_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }
}

fn to_json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

// ---------------------------------------------------------------------------------------------
// Reads and non-monetary writes

impl Store {
    pub async fn create_payment_intent(&self, intent: &PaymentIntentRecord) -> StoreResult<()> {
        payment_intents::Entity::insert(payment_intents::ActiveModel {
            id: Set(intent.id.to_string()),
            merchant_id: Set(intent.merchant_id.to_string()),
            amount: Set(intent.amount.minor_units()),
            currency: Set(intent.currency.code().to_owned()),
            capture_method: Set(intent.capture_method.as_str().to_owned()),
            description: Set(intent.description.clone()),
            status: Set(intent.status.as_str().to_owned()),
            customer_user_id: Set(None),
            customer_account_id: Set(None),
            hold_id: Set(None),
            transfer_id: Set(None),
            amount_capturable: Set(0),
            amount_received: Set(0),
            amount_refunded: Set(0),
            failure_code: Set(None),
            cancellation_reason: Set(None),
            canceled_at: Set(None),
            created_at: Set(intent.created_at),
            updated_at: Set(intent.created_at),
            link_token: Set(intent.link_token.clone()),
        })
        .exec_without_returning(self.writer())
        .await?;
        Ok(())
    }

    /// The intent behind a payment link token.
    pub async fn find_payment_intent_by_link(
        &self,
        link_token: &str,
    ) -> StoreResult<Option<PaymentIntentRecord>> {
        payment_intents::Entity::find()
            .filter(payment_intents::Column::LinkToken.eq(link_token))
            .one(self.reader())
            .await?
            .map(PaymentIntentRecord::try_from)
            .transpose()
    }

    /// Through the writer: actions read back what they just committed.
    pub async fn find_payment_intent(
        &self,
        id: PaymentIntentId,
    ) -> StoreResult<Option<PaymentIntentRecord>> {
        payment_intents::Entity::find_by_id(id.to_string())
            .one(self.writer())
            .await?
            .map(PaymentIntentRecord::try_from)
            .transpose()
    }

    /// The merchant's intents, or the ones the user confirmed; newest first.
    pub async fn list_payment_intents(
        &self,
        viewer: Party,
        page: &PageRequest,
    ) -> StoreResult<(Vec<PaymentIntentRecord>, bool)> {
        let select = match viewer {
            Party::Merchant(merchant) => payment_intents::Entity::find()
                .filter(payment_intents::Column::MerchantId.eq(merchant.to_string())),
            Party::User(user) => payment_intents::Entity::find()
                .filter(payment_intents::Column::CustomerUserId.eq(user.to_string())),
        };
        let (rows, has_more) =
            fetch_page(select, payment_intents::Column::Id, page, self.reader()).await?;
        let records = rows
            .into_iter()
            .map(PaymentIntentRecord::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((records, has_more))
    }

    /// Cancels an intent nobody confirmed yet (no money is involved).
    pub async fn cancel_unconfirmed_intent(
        &self,
        id: PaymentIntentId,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let transaction = sea_orm::TransactionTrait::begin(self.writer()).await?;
        let updated = payment_intents::Entity::update_many()
            .col_expr(
                payment_intents::Column::Status,
                Expr::value(PaymentIntentStatus::Canceled.as_str()),
            )
            .col_expr(
                payment_intents::Column::CancellationReason,
                Expr::value(CancellationReason::RequestedByMerchant.as_str()),
            )
            .col_expr(payment_intents::Column::CanceledAt, Expr::value(now))
            .col_expr(payment_intents::Column::UpdatedAt, Expr::value(now))
            .filter(payment_intents::Column::Id.eq(id.to_string()))
            .filter(
                payment_intents::Column::Status
                    .eq(PaymentIntentStatus::RequiresConfirmation.as_str()),
            )
            .exec(&transaction)
            .await?;
        if updated.rows_affected != 1 {
            return Ok(false);
        }
        intent_event(&transaction, id, "payment_intent.canceled", now).await?;
        transaction.commit().await?;
        Ok(true)
    }

    pub async fn find_hold(&self, id: HoldId) -> StoreResult<Option<HoldRecord>> {
        holds::Entity::find_by_id(id.to_string())
            .one(self.writer())
            .await?
            .map(HoldRecord::try_from)
            .transpose()
    }

    /// The holds still held on `accounts`, newest first, at most `limit` (what a wallet's
    /// locked balance is made of).
    pub async fn held_holds(
        &self,
        accounts: &[AccountId],
        limit: u64,
    ) -> StoreResult<Vec<HoldRecord>> {
        let ids: Vec<String> = accounts.iter().map(ToString::to_string).collect();
        holds::Entity::find()
            .filter(holds::Column::AccountId.is_in(ids))
            .filter(holds::Column::Status.eq(HoldState::Held.as_str()))
            .order_by_desc(holds::Column::CreatedAt)
            .limit(limit)
            .all(self.reader())
            .await?
            .into_iter()
            .map(HoldRecord::try_from)
            .collect()
    }

    /// Payment authorisations still held whose expiry has passed, oldest first.
    pub async fn expired_holds(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<Vec<HoldRecord>> {
        holds::Entity::find()
            .filter(holds::Column::Status.eq(HoldState::Held.as_str()))
            .filter(holds::Column::ExpiresAt.lte(now))
            .order_by_asc(holds::Column::ExpiresAt)
            .limit(limit)
            .all(self.reader())
            .await?
            .into_iter()
            .map(HoldRecord::try_from)
            .collect()
    }

    /// Count and total amount of the holds still held, per currency.
    pub async fn outstanding_holds(&self) -> StoreResult<Vec<(String, i64, i64)>> {
        let rows = holds::Entity::find()
            .select_only()
            .column(holds::Column::Currency)
            .column_as(Expr::col(holds::Column::Id).count(), "count")
            .column_as(
                Expr::cust("CAST(COALESCE(SUM(amount), 0) AS BIGINT)"),
                "amount",
            )
            .filter(holds::Column::Status.eq(HoldState::Held.as_str()))
            .group_by(holds::Column::Currency)
            .into_tuple::<(String, i64, i64)>()
            .all(self.reader())
            .await?;
        Ok(rows)
    }

    /// Payment intents per status.
    pub async fn payment_intent_counts(&self) -> StoreResult<Vec<(String, i64)>> {
        Ok(payment_intents::Entity::find()
            .select_only()
            .column(payment_intents::Column::Status)
            .column_as(Expr::col(payment_intents::Column::Id).count(), "count")
            .group_by(payment_intents::Column::Status)
            .into_tuple::<(String, i64)>()
            .all(self.reader())
            .await?)
    }

    /// The holds' current states, read through the writer (the wallet's guard).
    pub async fn hold_states(&self, ids: &[HoldId]) -> StoreResult<HashMap<HoldId, HoldState>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = holds::Entity::find()
            .filter(holds::Column::Id.is_in(ids.iter().map(ToString::to_string)))
            .all(self.writer())
            .await?;
        rows.into_iter()
            .map(|row| {
                let id = row.id.parse().map_err(|_| corrupt("hold id", &row.id))?;
                let state =
                    HoldState::parse(&row.status).ok_or_else(|| corrupt("hold status", &row.id))?;
                Ok((id, state))
            })
            .collect()
    }

    /// What the wallet needs to know of these intents, read through the writer.
    pub async fn intent_snapshots(
        &self,
        ids: &[PaymentIntentId],
    ) -> StoreResult<HashMap<PaymentIntentId, IntentSnapshot>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = payment_intents::Entity::find()
            .filter(payment_intents::Column::Id.is_in(ids.iter().map(ToString::to_string)))
            .all(self.writer())
            .await?;
        rows.into_iter()
            .map(|row| {
                let id = row
                    .id
                    .parse()
                    .map_err(|_| corrupt("payment intent id", &row.id))?;
                let status = PaymentIntentStatus::parse(&row.status)
                    .ok_or_else(|| corrupt("payment intent status", &row.id))?;
                Ok((
                    id,
                    IntentSnapshot {
                        status,
                        amount_received: row.amount_received,
                        amount_refunded: row.amount_refunded,
                    },
                ))
            })
            .collect()
    }

    pub async fn find_refund(&self, id: RefundId) -> StoreResult<Option<RefundRecord>> {
        refunds::Entity::find_by_id(id.to_string())
            .one(self.writer())
            .await?
            .map(RefundRecord::try_from)
            .transpose()
    }

    /// The merchant's refunds, or the ones paid back to the user; newest first.
    pub async fn list_refunds(
        &self,
        viewer: Party,
        page: &PageRequest,
    ) -> StoreResult<(Vec<RefundRecord>, bool)> {
        let select = match viewer {
            Party::Merchant(merchant) => {
                refunds::Entity::find().filter(refunds::Column::MerchantId.eq(merchant.to_string()))
            }
            Party::User(user) => {
                refunds::Entity::find().filter(refunds::Column::UserId.eq(user.to_string()))
            }
        };
        let (rows, has_more) = fetch_page(select, refunds::Column::Id, page, self.reader()).await?;
        let records = rows
            .into_iter()
            .map(RefundRecord::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((records, has_more))
    }

    pub async fn find_payout(&self, id: PayoutId) -> StoreResult<Option<PayoutRecord>> {
        payouts::Entity::find_by_id(id.to_string())
            .one(self.writer())
            .await?
            .map(PayoutRecord::try_from)
            .transpose()
    }

    pub async fn list_payouts(
        &self,
        owner: Party,
        page: &PageRequest,
    ) -> StoreResult<(Vec<PayoutRecord>, bool)> {
        let (owner_type, owner_id) = party_columns(owner);
        let select = payouts::Entity::find().filter(
            Condition::all()
                .add(payouts::Column::OwnerType.eq(owner_type))
                .add(payouts::Column::OwnerId.eq(owner_id)),
        );
        let (rows, has_more) = fetch_page(select, payouts::Column::Id, page, self.reader()).await?;
        let records = rows
            .into_iter()
            .map(PayoutRecord::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((records, has_more))
    }

    /// Payouts whose funds are locked but which the bank has not accepted yet.
    pub async fn unsubmitted_payouts(
        &self,
        created_before: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<Vec<PayoutRecord>> {
        payouts::Entity::find()
            .filter(payouts::Column::Status.eq(PayoutStatus::Pending.as_str()))
            .filter(payouts::Column::CreatedAt.lt(created_before))
            .order_by_asc(payouts::Column::Id)
            .limit(limit)
            .all(self.reader())
            .await?
            .into_iter()
            .map(PayoutRecord::try_from)
            .collect()
    }

    /// Payouts the bank accepted before `created_before` and has not settled yet.
    pub async fn stale_payouts_in_transit(
        &self,
        created_before: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<Vec<PayoutRecord>> {
        payouts::Entity::find()
            .filter(payouts::Column::Status.eq(PayoutStatus::InTransit.as_str()))
            .filter(payouts::Column::CreatedAt.lt(created_before))
            .order_by_asc(payouts::Column::Id)
            .limit(limit)
            .all(self.reader())
            .await?
            .into_iter()
            .map(PayoutRecord::try_from)
            .collect()
    }

    /// The bank accepted the payout: `pending` → `in_transit` with the bank's reference.
    pub async fn mark_payout_submitted(
        &self,
        id: PayoutId,
        bank_reference: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        payouts::Entity::update_many()
            .col_expr(
                payouts::Column::Status,
                Expr::value(PayoutStatus::InTransit.as_str()),
            )
            .col_expr(payouts::Column::BankReference, Expr::value(bank_reference))
            .col_expr(payouts::Column::UpdatedAt, Expr::value(now))
            .filter(payouts::Column::Id.eq(id.to_string()))
            .filter(payouts::Column::Status.eq(PayoutStatus::Pending.as_str()))
            .exec(self.writer())
            .await?;
        Ok(())
    }
}

fn party_columns(party: Party) -> (&'static str, String) {
    match party {
        Party::User(user) => ("user", user.to_string()),
        Party::Merchant(merchant) => ("merchant", merchant.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Guarded changes made inside the ledger's transaction (`ledger::write_effect`)

fn conflict(what: String) -> StoreError {
    StoreError::Conflict(what)
}

async fn read_intent(
    transaction: &DatabaseTransaction,
    id: PaymentIntentId,
) -> StoreResult<PaymentIntentRecord> {
    payment_intents::Entity::find_by_id(id.to_string())
        .one(transaction)
        .await?
        .ok_or_else(|| conflict(format!("payment intent {id} vanished")))
        .and_then(PaymentIntentRecord::try_from)
}

async fn intent_event(
    transaction: &DatabaseTransaction,
    id: PaymentIntentId,
    event_type: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let intent = read_intent(transaction, id).await?;
    let data = to_json(&PaymentIntentObject::from(&intent));
    super::ledger::insert_event(
        transaction,
        event_type,
        "payment_intent",
        &id.to_string(),
        data,
        now,
    )
    .await
}

/// `UPDATE payment_intents SET … WHERE id = ? AND status = ?`; a miss is a conflict.
async fn move_intent(
    transaction: &DatabaseTransaction,
    id: PaymentIntentId,
    from: PaymentIntentStatus,
    to: PaymentIntentStatus,
    columns: Vec<(payment_intents::Column, sea_orm::Value)>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut update = payment_intents::Entity::update_many()
        .col_expr(payment_intents::Column::Status, Expr::value(to.as_str()))
        .col_expr(payment_intents::Column::UpdatedAt, Expr::value(now));
    for (column, value) in columns {
        update = update.col_expr(column, Expr::value(value));
    }
    let updated = update
        .filter(payment_intents::Column::Id.eq(id.to_string()))
        .filter(payment_intents::Column::Status.eq(from.as_str()))
        .exec(transaction)
        .await?;
    if updated.rows_affected != 1 {
        return Err(conflict(format!(
            "payment intent {id} is no longer {}",
            from.as_str()
        )));
    }
    Ok(())
}

/// A user's confirmation of an automatic intent: the payment saga's first step.
pub(super) async fn start_payment(
    transaction: &DatabaseTransaction,
    intent: PaymentIntentId,
    customer: UserId,
    customer_account: AccountId,
    transfer: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    use payment_intents::Column as C;
    move_intent(
        transaction,
        intent,
        PaymentIntentStatus::RequiresConfirmation,
        PaymentIntentStatus::Processing,
        vec![
            (C::CustomerUserId, customer.to_string().into()),
            (C::CustomerAccountId, customer_account.to_string().into()),
            (C::TransferId, transfer.to_owned().into()),
            (C::FailureCode, Option::<String>::None.into()),
        ],
        now,
    )
    .await
}

/// The merchant was credited: `processing` → `succeeded`.
pub(super) async fn succeed_payment(
    transaction: &DatabaseTransaction,
    intent: PaymentIntentId,
    received: i64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    move_intent(
        transaction,
        intent,
        PaymentIntentStatus::Processing,
        PaymentIntentStatus::Succeeded,
        vec![(payment_intents::Column::AmountReceived, received.into())],
        now,
    )
    .await?;
    intent_event(transaction, intent, "payment_intent.succeeded", now).await
}

/// An automatic payment whose merchant credit was refused: the user was refunded and the
/// intent can be confirmed again.
pub(super) async fn fail_payment(
    transaction: &DatabaseTransaction,
    intent: PaymentIntentId,
    reason: Rejection,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    use payment_intents::Column as C;
    move_intent(
        transaction,
        intent,
        PaymentIntentStatus::Processing,
        PaymentIntentStatus::RequiresConfirmation,
        vec![
            (C::CustomerUserId, Option::<String>::None.into()),
            (C::CustomerAccountId, Option::<String>::None.into()),
            (C::TransferId, Option::<String>::None.into()),
            (C::FailureCode, reason.code().to_owned().into()),
        ],
        now,
    )
    .await?;
    intent_event(transaction, intent, "payment_intent.payment_failed", now).await
}

/// A capture whose merchant credit was refused: the user got the money back; the intent is
/// over.
pub(super) async fn fail_capture(
    transaction: &DatabaseTransaction,
    intent: PaymentIntentId,
    reason: Rejection,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    use payment_intents::Column as C;
    move_intent(
        transaction,
        intent,
        PaymentIntentStatus::Processing,
        PaymentIntentStatus::Canceled,
        vec![
            (C::FailureCode, reason.code().to_owned().into()),
            (
                C::CancellationReason,
                CancellationReason::CaptureFailed.as_str().to_owned().into(),
            ),
            (C::CanceledAt, now.into()),
        ],
        now,
    )
    .await?;
    intent_event(transaction, intent, "payment_intent.canceled", now).await
}

/// Inserts the hold and records what it secures.
pub(super) async fn open_hold(
    transaction: &DatabaseTransaction,
    hold: &HoldRecord,
    purpose: &HoldPurpose,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let (reference_type, reference_id) = hold.reference.columns();
    holds::Entity::insert(holds::ActiveModel {
        id: Set(hold.id.to_string()),
        account_id: Set(hold.account_id.to_string()),
        amount: Set(hold.amount.minor_units()),
        currency: Set(hold.currency.code().to_owned()),
        status: Set(HoldState::Held.as_str().to_owned()),
        captured_amount: Set(None),
        reference_type: Set(reference_type.to_owned()),
        reference_id: Set(reference_id),
        expires_at: Set(hold.expires_at),
        resolved_at: Set(None),
        created_at: Set(hold.created_at),
    })
    .exec_without_returning(transaction)
    .await?;
    match purpose {
        HoldPurpose::Authorize { intent, customer } => {
            use payment_intents::Column as C;
            move_intent(
                transaction,
                *intent,
                PaymentIntentStatus::RequiresConfirmation,
                PaymentIntentStatus::RequiresCapture,
                vec![
                    (C::CustomerUserId, customer.to_string().into()),
                    (C::CustomerAccountId, hold.account_id.to_string().into()),
                    (C::HoldId, hold.id.to_string().into()),
                    (C::AmountCapturable, hold.amount.minor_units().into()),
                    (C::FailureCode, Option::<String>::None.into()),
                ],
                now,
            )
            .await?;
            intent_event(
                transaction,
                *intent,
                "payment_intent.amount_capturable_updated",
                now,
            )
            .await
        }
        HoldPurpose::Payout(payout) => {
            let (owner_type, owner_id) = party_columns(payout.owner);
            payouts::Entity::insert(payouts::ActiveModel {
                id: Set(payout.id.to_string()),
                owner_type: Set(owner_type.to_owned()),
                owner_id: Set(owner_id),
                account_id: Set(payout.account_id.to_string()),
                hold_id: Set(payout.hold_id.to_string()),
                amount: Set(payout.amount.minor_units()),
                currency: Set(payout.currency.code().to_owned()),
                status: Set(PayoutStatus::Pending.as_str().to_owned()),
                bank_reference: Set(None),
                failure_code: Set(None),
                created_at: Set(payout.created_at),
                updated_at: Set(payout.created_at),
            })
            .exec_without_returning(transaction)
            .await?;
            Ok(())
        }
    }
}

/// What a new hold secures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldPurpose {
    /// A manual payment intent's authorisation.
    Authorize {
        intent: PaymentIntentId,
        customer: UserId,
    },
    /// A payout's locked funds.
    Payout(Box<PayoutRecord>),
}

/// `held` → `to`; a hold resolves at most once: a second resolution finds no `held` row.
pub(super) async fn resolve_hold(
    transaction: &DatabaseTransaction,
    hold: HoldId,
    to: HoldState,
    captured: Option<i64>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let updated = holds::Entity::update_many()
        .col_expr(holds::Column::Status, Expr::value(to.as_str()))
        .col_expr(holds::Column::CapturedAmount, Expr::value(captured))
        .col_expr(holds::Column::ResolvedAt, Expr::value(now))
        .filter(holds::Column::Id.eq(hold.to_string()))
        .filter(holds::Column::Status.eq(HoldState::Held.as_str()))
        .exec(transaction)
        .await?;
    if updated.rows_affected != 1 {
        return Err(conflict(format!("hold {hold} is no longer held")));
    }
    Ok(())
}

/// The capture saga's first step: the hold is consumed and the intent is `processing`.
pub(super) async fn start_capture(
    transaction: &DatabaseTransaction,
    intent: PaymentIntentId,
    hold: HoldId,
    captured: i64,
    transfer: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    use payment_intents::Column as C;
    resolve_hold(transaction, hold, HoldState::Captured, Some(captured), now).await?;
    move_intent(
        transaction,
        intent,
        PaymentIntentStatus::RequiresCapture,
        PaymentIntentStatus::Processing,
        vec![
            (C::AmountCapturable, 0_i64.into()),
            (C::TransferId, transfer.to_owned().into()),
        ],
        now,
    )
    .await
}

/// A hold released in full: its intent is canceled, or its payout failed.
pub(super) async fn release_hold(
    transaction: &DatabaseTransaction,
    hold: &HoldRecord,
    to: HoldState,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    resolve_hold(transaction, hold.id, to, None, now).await?;
    match hold.reference {
        HoldReference::PaymentIntent(intent) => {
            use payment_intents::Column as C;
            let reason = if to == HoldState::Expired {
                CancellationReason::Expired
            } else {
                CancellationReason::RequestedByMerchant
            };
            move_intent(
                transaction,
                intent,
                PaymentIntentStatus::RequiresCapture,
                PaymentIntentStatus::Canceled,
                vec![
                    (C::AmountCapturable, 0_i64.into()),
                    (C::CancellationReason, reason.as_str().to_owned().into()),
                    (C::CanceledAt, now.into()),
                ],
                now,
            )
            .await?;
            intent_event(transaction, intent, "payment_intent.canceled", now).await
        }
        HoldReference::Payout(payout) => {
            finish_payout(transaction, payout, PayoutStatus::Failed, now).await
        }
    }
}

/// The bank paid the payout: the hold is captured in full to `payout_clearing`.
pub(super) async fn pay_out(
    transaction: &DatabaseTransaction,
    hold: &HoldRecord,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let HoldReference::Payout(payout) = hold.reference else {
        return Err(conflict(format!("hold {} is not a payout's", hold.id)));
    };
    resolve_hold(
        transaction,
        hold.id,
        HoldState::Captured,
        Some(hold.amount.minor_units()),
        now,
    )
    .await?;
    finish_payout(transaction, payout, PayoutStatus::Paid, now).await
}

async fn finish_payout(
    transaction: &DatabaseTransaction,
    id: PayoutId,
    to: PayoutStatus,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let failure = (to == PayoutStatus::Failed).then(|| "bank_rejected".to_owned());
    let updated = payouts::Entity::update_many()
        .col_expr(payouts::Column::Status, Expr::value(to.as_str()))
        .col_expr(payouts::Column::FailureCode, Expr::value(failure))
        .col_expr(payouts::Column::UpdatedAt, Expr::value(now))
        .filter(payouts::Column::Id.eq(id.to_string()))
        .filter(payouts::Column::Status.is_in([
            PayoutStatus::Pending.as_str(),
            PayoutStatus::InTransit.as_str(),
        ]))
        .exec(transaction)
        .await?;
    if updated.rows_affected != 1 {
        return Err(conflict(format!("payout {id} is already final")));
    }
    let payout = payouts::Entity::find_by_id(id.to_string())
        .one(transaction)
        .await?
        .ok_or_else(|| conflict(format!("payout {id} vanished")))
        .and_then(PayoutRecord::try_from)?;
    let event_type = if to == PayoutStatus::Paid {
        "payout.paid"
    } else {
        "payout.failed"
    };
    super::ledger::insert_event(
        transaction,
        event_type,
        "payout",
        &id.to_string(),
        to_json(&PayoutObject::from(&payout)),
        now,
    )
    .await
}

/// The refund saga's first step: the refund exists (`pending`) and counts against what the
/// intent received; the CHECK constraint and the `WHERE` keep the total within it.
pub(super) async fn open_refund(
    transaction: &DatabaseTransaction,
    refund: &RefundRecord,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    refunds::Entity::insert(refunds::ActiveModel {
        id: Set(refund.id.to_string()),
        merchant_id: Set(refund.merchant_id.to_string()),
        payment_intent_id: Set(refund.payment_intent_id.to_string()),
        user_id: Set(refund.user_id.to_string()),
        amount: Set(refund.amount.minor_units()),
        currency: Set(refund.currency.code().to_owned()),
        status: Set(RefundStatus::Pending.as_str().to_owned()),
        failure_code: Set(None),
        created_at: Set(refund.created_at),
        updated_at: Set(refund.created_at),
    })
    .exec_without_returning(transaction)
    .await?;
    let amount = refund.amount.minor_units();
    let updated = payment_intents::Entity::update_many()
        .col_expr(
            payment_intents::Column::AmountRefunded,
            Expr::col(payment_intents::Column::AmountRefunded).add(amount),
        )
        .col_expr(payment_intents::Column::UpdatedAt, Expr::value(now))
        .filter(payment_intents::Column::Id.eq(refund.payment_intent_id.to_string()))
        .filter(payment_intents::Column::Status.eq(PaymentIntentStatus::Succeeded.as_str()))
        .filter(
            Expr::col(payment_intents::Column::AmountRefunded)
                .add(amount)
                .lte(Expr::col(payment_intents::Column::AmountReceived)),
        )
        .exec(transaction)
        .await?;
    if updated.rows_affected != 1 {
        return Err(conflict(format!(
            "payment intent {} cannot take a refund of {amount}",
            refund.payment_intent_id
        )));
    }
    Ok(())
}

/// The refund saga ended: `succeeded`, or `failed` with the amount no longer counted.
pub(super) async fn finish_refund(
    transaction: &DatabaseTransaction,
    refund: RefundId,
    reason: Option<Rejection>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let (to, event_type) = match reason {
        None => (RefundStatus::Succeeded, "refund.succeeded"),
        Some(_) => (RefundStatus::Failed, "refund.failed"),
    };
    let updated = refunds::Entity::update_many()
        .col_expr(refunds::Column::Status, Expr::value(to.as_str()))
        .col_expr(
            refunds::Column::FailureCode,
            Expr::value(reason.map(|reason| reason.code().to_owned())),
        )
        .col_expr(refunds::Column::UpdatedAt, Expr::value(now))
        .filter(refunds::Column::Id.eq(refund.to_string()))
        .filter(refunds::Column::Status.eq(RefundStatus::Pending.as_str()))
        .exec(transaction)
        .await?;
    if updated.rows_affected != 1 {
        return Err(conflict(format!("refund {refund} is no longer pending")));
    }
    let record = refunds::Entity::find_by_id(refund.to_string())
        .one(transaction)
        .await?
        .ok_or_else(|| conflict(format!("refund {refund} vanished")))
        .and_then(RefundRecord::try_from)?;
    if reason.is_some() {
        payment_intents::Entity::update_many()
            .col_expr(
                payment_intents::Column::AmountRefunded,
                Expr::col(payment_intents::Column::AmountRefunded).sub(record.amount.minor_units()),
            )
            .col_expr(payment_intents::Column::UpdatedAt, Expr::value(now))
            .filter(payment_intents::Column::Id.eq(record.payment_intent_id.to_string()))
            .exec(transaction)
            .await?;
    }
    super::ledger::insert_event(
        transaction,
        event_type,
        "refund",
        &refund.to_string(),
        to_json(&RefundObject::from(&record)),
        now,
    )
    .await
}

//! On-ramps and the webhook inbox. A provider event is stored in the inbox (unique on
//! provider and event id) before it is acknowledged; the ingestor actor then processes
//! unprocessed rows, so an event acknowledged is never lost, and a duplicate is stored once.

use super::accounts::{PageRequest, fetch_page};
use super::entities::{onramps, webhook_inbox};
use super::ledger::insert_event;
use super::{Store, StoreError, StoreResult};
use crate::domain::{AccountId, Amount, Currency, OnrampId, OnrampProvider, OnrampStatus, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait, TryInsertResult,
};
use serde_json::json;

/// Inbox rows processed per pass.
pub const INBOX_BATCH_MAX: u64 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnrampRecord {
    pub id: OnrampId,
    pub user_id: UserId,
    pub account_id: AccountId,
    pub provider: OnrampProvider,
    pub amount: Amount,
    pub currency: Currency,
    pub status: OnrampStatus,
    pub redirect_url: Option<String>,
    pub provider_reference: Option<String>,
    pub failure_code: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn corrupt(id: &str, what: &str) -> StoreError {
    StoreError::Corrupt(format!("onramp {id}: {what}"))
}

impl TryFrom<onramps::Model> for OnrampRecord {
    type Error = StoreError;

    fn try_from(row: onramps::Model) -> StoreResult<OnrampRecord> {
        Ok(OnrampRecord {
            id: row.id.parse().map_err(|_| corrupt(&row.id, "id"))?,
            user_id: row.user_id.parse().map_err(|_| corrupt(&row.id, "user"))?,
            account_id: row
                .account_id
                .parse()
                .map_err(|_| corrupt(&row.id, "account"))?,
            provider: OnrampProvider::parse(&row.provider)
                .ok_or_else(|| corrupt(&row.id, "provider"))?,
            amount: Amount::new(row.amount).map_err(|_| corrupt(&row.id, "amount"))?,
            currency: Currency::parse(&row.currency).map_err(|_| corrupt(&row.id, "currency"))?,
            status: OnrampStatus::parse(&row.status).ok_or_else(|| corrupt(&row.id, "status"))?,
            redirect_url: row.redirect_url,
            provider_reference: row.provider_reference,
            failure_code: row.failure_code,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A provider event as the inbox holds it.
#[derive(Debug, Clone)]
pub struct InboxEvent<'a> {
    pub provider: OnrampProvider,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub payload: &'a str,
}

pub fn onramp_event(onramp: &OnrampRecord, status: OnrampStatus) -> serde_json::Value {
    json!({
        "id": onramp.id.to_string(),
        "user_id": onramp.user_id.to_string(),
        "provider": onramp.provider.as_str(),
        "status": status.as_str(),
        "amount": onramp.amount.minor_units(),
        "currency": onramp.currency.code(),
    })
}

impl Store {
    pub async fn create_onramp(&self, onramp: &OnrampRecord) -> StoreResult<()> {
        onramps::Entity::insert(onramps::ActiveModel {
            id: Set(onramp.id.to_string()),
            user_id: Set(onramp.user_id.to_string()),
            account_id: Set(onramp.account_id.to_string()),
            provider: Set(onramp.provider.as_str().to_owned()),
            amount: Set(onramp.amount.minor_units()),
            currency: Set(onramp.currency.code().to_owned()),
            status: Set(onramp.status.as_str().to_owned()),
            redirect_url: Set(onramp.redirect_url.clone()),
            provider_reference: Set(onramp.provider_reference.clone()),
            failure_code: Set(None),
            created_at: Set(onramp.created_at),
            updated_at: Set(onramp.updated_at),
        })
        .exec_without_returning(self.writer())
        .await?;
        Ok(())
    }

    /// Records where the provider sends the user, once the provider has answered.
    pub async fn set_onramp_redirect(
        &self,
        id: OnrampId,
        redirect_url: &str,
        provider_reference: &str,
    ) -> StoreResult<()> {
        onramps::Entity::update_many()
            .col_expr(
                onramps::Column::RedirectUrl,
                Expr::value(redirect_url.to_owned()),
            )
            .col_expr(
                onramps::Column::ProviderReference,
                Expr::value(provider_reference.to_owned()),
            )
            .filter(onramps::Column::Id.eq(id.to_string()))
            .exec(self.writer())
            .await?;
        Ok(())
    }

    pub async fn find_onramp(&self, id: OnrampId) -> StoreResult<Option<OnrampRecord>> {
        onramps::Entity::find_by_id(id.to_string())
            .one(self.writer())
            .await?
            .map(OnrampRecord::try_from)
            .transpose()
    }

    pub async fn list_onramps(
        &self,
        user: UserId,
        page: &PageRequest,
    ) -> StoreResult<(Vec<OnrampRecord>, bool)> {
        let select = onramps::Entity::find().filter(onramps::Column::UserId.eq(user.to_string()));
        let (rows, has_more) = fetch_page(select, onramps::Column::Id, page, self.reader()).await?;
        let records = rows
            .into_iter()
            .map(OnrampRecord::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((records, has_more))
    }

    /// Bank on-ramps still processing, created before `created_before`, that the bank was
    /// asked to collect (the bank poller asks the bank about them).
    pub async fn stale_bank_onramps(
        &self,
        created_before: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<Vec<OnrampRecord>> {
        onramps::Entity::find()
            .filter(onramps::Column::Provider.eq(OnrampProvider::Bank.as_str()))
            .filter(onramps::Column::Status.eq(OnrampStatus::Processing.as_str()))
            .filter(onramps::Column::ProviderReference.is_not_null())
            .filter(onramps::Column::CreatedAt.lt(created_before))
            .order_by_asc(onramps::Column::Id)
            .limit(limit)
            .all(self.reader())
            .await?
            .into_iter()
            .map(OnrampRecord::try_from)
            .collect()
    }

    /// `processing` → `failed` with its outbox event, in one transaction. Returns whether this
    /// call changed it (a terminal on-ramp never changes).
    pub async fn fail_onramp(
        &self,
        onramp: &OnrampRecord,
        failure_code: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let transaction = self.writer().begin().await?;
        let moved = move_onramp(
            &transaction,
            onramp.id,
            OnrampStatus::Failed,
            Some(failure_code),
            now,
        )
        .await?;
        if moved {
            let mut data = onramp_event(onramp, OnrampStatus::Failed);
            data["failure_code"] = json!(failure_code);
            insert_event(
                &transaction,
                "onramp.failed",
                "onramp",
                &onramp.id.to_string(),
                data,
                now,
            )
            .await?;
        }
        transaction.commit().await?;
        Ok(moved)
    }

    pub async fn onramp_states(
        &self,
        ids: &[OnrampId],
    ) -> StoreResult<Vec<(OnrampId, OnrampStatus)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = onramps::Entity::find()
            .filter(onramps::Column::Id.is_in(ids.iter().map(ToString::to_string)))
            .all(self.writer())
            .await?;
        rows.into_iter()
            .map(|row| {
                let record = OnrampRecord::try_from(row)?;
                Ok((record.id, record.status))
            })
            .collect()
    }

    /// Stores a provider event; `false` if this (provider, event id) was stored before.
    pub async fn store_inbox_event(
        &self,
        event: &InboxEvent<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let inserted = webhook_inbox::Entity::insert(webhook_inbox::ActiveModel {
            id: Set(uuid::Uuid::now_v7().to_string()),
            provider: Set(event.provider.as_str().to_owned()),
            event_id: Set(event.event_id.to_owned()),
            event_type: Set(event.event_type.to_owned()),
            payload: Set(event.payload.to_owned()),
            received_at: Set(now),
            processed_at: Set(None),
            outcome: Set(None),
            detail: Set(None),
            attempts: Set(0),
        })
        .on_conflict_do_nothing_on([
            webhook_inbox::Column::Provider,
            webhook_inbox::Column::EventId,
        ])
        .exec_without_returning(self.writer())
        .await?;
        Ok(matches!(inserted, TryInsertResult::Inserted(1)))
    }

    /// Unprocessed inbox rows of `provider`, oldest first.
    pub async fn unprocessed_inbox(
        &self,
        provider: OnrampProvider,
    ) -> StoreResult<Vec<webhook_inbox::Model>> {
        Ok(webhook_inbox::Entity::find()
            .filter(webhook_inbox::Column::Provider.eq(provider.as_str()))
            .filter(webhook_inbox::Column::ProcessedAt.is_null())
            .order_by_asc(webhook_inbox::Column::Id)
            .limit(INBOX_BATCH_MAX)
            .all(self.writer())
            .await?)
    }

    pub async fn inbox_backlog(&self, provider: OnrampProvider) -> StoreResult<u64> {
        Ok(webhook_inbox::Entity::find()
            .filter(webhook_inbox::Column::Provider.eq(provider.as_str()))
            .filter(webhook_inbox::Column::ProcessedAt.is_null())
            .count(self.reader())
            .await?)
    }

    /// Marks an inbox row processed with its outcome (or, with `processed` false, counts a
    /// failed attempt so it is retried).
    pub async fn record_inbox_outcome(
        &self,
        id: &str,
        outcome: &str,
        detail: Option<String>,
        processed: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut update = webhook_inbox::Entity::update_many()
            .col_expr(
                webhook_inbox::Column::Outcome,
                Expr::value(outcome.to_owned()),
            )
            .col_expr(webhook_inbox::Column::Detail, Expr::value(detail))
            .col_expr(
                webhook_inbox::Column::Attempts,
                Expr::col(webhook_inbox::Column::Attempts).add(1),
            );
        if processed {
            update = update.col_expr(webhook_inbox::Column::ProcessedAt, Expr::value(now));
        }
        update
            .filter(webhook_inbox::Column::Id.eq(id))
            .exec(self.writer())
            .await?;
        Ok(())
    }
}

/// The guarded state change: only a `processing` on-ramp moves. Returns whether it moved.
pub(super) async fn move_onramp(
    transaction: &DatabaseTransaction,
    id: OnrampId,
    to: OnrampStatus,
    failure_code: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let updated = onramps::Entity::update_many()
        .col_expr(onramps::Column::Status, Expr::value(to.as_str()))
        .col_expr(
            onramps::Column::FailureCode,
            Expr::value(failure_code.map(str::to_owned)),
        )
        .col_expr(onramps::Column::UpdatedAt, Expr::value(now))
        .filter(onramps::Column::Id.eq(id.to_string()))
        .filter(onramps::Column::Status.eq(OnrampStatus::Processing.as_str()))
        .exec(transaction)
        .await?;
    Ok(updated.rows_affected == 1)
}

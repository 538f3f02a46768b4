//! Merchants' webhook endpoints and the outgoing deliveries to them: one delivery per
//! (endpoint, event) — the unique key makes fan-out idempotent —, and one row per attempt
//! (status code, latency, error). A delivery is `pending` until an attempt gets a 2xx
//! (`succeeded`) or the retry schedule runs out (`failed`, and the endpoint is disabled with
//! the reason).

use super::accounts::{PageRequest, fetch_page};
use super::entities::{outbox, webhook_attempts, webhook_deliveries, webhook_endpoints};
use super::{Store, StoreResult};
use crate::domain::{MerchantId, WebhookDeliveryId, WebhookEndpointId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};

pub const ENDPOINT_ENABLED: &str = "enabled";
pub const ENDPOINT_DISABLED: &str = "disabled";
pub const DELIVERY_PENDING: &str = "pending";
pub const DELIVERY_SUCCEEDED: &str = "succeeded";
pub const DELIVERY_FAILED: &str = "failed";

/// The events merchants can subscribe to.
pub const MERCHANT_EVENT_TYPES: [&str; 8] = [
    "payment_intent.succeeded",
    "payment_intent.amount_capturable_updated",
    "payment_intent.canceled",
    "payment_intent.payment_failed",
    "refund.succeeded",
    "refund.failed",
    "payout.paid",
    "payout.failed",
];

/// Whether an endpoint subscribed to `events` (a JSON array) wants `event_type`.
pub fn subscribes(events: &str, event_type: &str) -> bool {
    serde_json::from_str::<Vec<String>>(events)
        .unwrap_or_default()
        .iter()
        .any(|wanted| wanted == "*" || wanted == event_type)
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    Succeeded,
    /// Failed; try again at this time.
    RetryAt(DateTime<Utc>),
    /// Failed and the schedule is exhausted: the endpoint is disabled for this reason.
    GaveUp(String),
    /// A manual re-send that failed: the delivery keeps its schedule.
    ManualFailed,
}

#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery: WebhookDeliveryId,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// `schedule` or `manual`.
    pub trigger: &'static str,
    pub at: DateTime<Utc>,
}

impl Store {
    /// Creates the endpoint unless the merchant already has `endpoints_max` (then `None`). The
    /// count and the insert are one transaction that holds the merchant's row lock on
    /// PostgreSQL (SQLite has one writer), so concurrent creations cannot pass the cap.
    pub async fn create_webhook_endpoint(
        &self,
        merchant: MerchantId,
        url: &str,
        events: &[String],
        secret: &str,
        endpoints_max: u64,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<webhook_endpoints::Model>> {
        use sea_orm::{PaginatorTrait, QuerySelect, TransactionTrait};
        let transaction = self.writer().begin().await?;
        if self.backend() == sea_orm::DbBackend::Postgres {
            super::entities::merchants::Entity::find_by_id(merchant.to_string())
                .lock_exclusive()
                .one(&transaction)
                .await?;
        }
        let existing = webhook_endpoints::Entity::find()
            .filter(webhook_endpoints::Column::MerchantId.eq(merchant.to_string()))
            .count(&transaction)
            .await?;
        if existing >= endpoints_max {
            return Ok(None);
        }
        let created = webhook_endpoints::ActiveModel {
            id: Set(WebhookEndpointId::generate().to_string()),
            merchant_id: Set(merchant.to_string()),
            url: Set(url.to_owned()),
            events: Set(serde_json::to_string(events).unwrap_or_else(|_| "[]".into())),
            secret: Set(secret.to_owned()),
            status: Set(ENDPOINT_ENABLED.to_owned()),
            disabled_reason: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&transaction)
        .await?;
        transaction.commit().await?;
        Ok(Some(created))
    }

    pub async fn find_webhook_endpoint(
        &self,
        id: WebhookEndpointId,
    ) -> StoreResult<Option<webhook_endpoints::Model>> {
        Ok(webhook_endpoints::Entity::find_by_id(id.to_string())
            .one(self.writer())
            .await?)
    }

    /// How many endpoints the merchant has (enabled or not).
    pub async fn list_webhook_endpoints(
        &self,
        merchant: MerchantId,
        page: &PageRequest,
    ) -> StoreResult<(Vec<webhook_endpoints::Model>, bool)> {
        let select = webhook_endpoints::Entity::find()
            .filter(webhook_endpoints::Column::MerchantId.eq(merchant.to_string()));
        fetch_page(select, webhook_endpoints::Column::Id, page, self.reader()).await
    }

    /// Changes what was given; enabling clears the reason it was disabled.
    pub async fn update_webhook_endpoint(
        &self,
        id: WebhookEndpointId,
        url: Option<&str>,
        events: Option<&[String]>,
        enabled: Option<bool>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut update = webhook_endpoints::Entity::update_many()
            .col_expr(webhook_endpoints::Column::UpdatedAt, Expr::value(now));
        if let Some(url) = url {
            update = update.col_expr(webhook_endpoints::Column::Url, Expr::value(url));
        }
        if let Some(events) = events {
            let events = serde_json::to_string(events).unwrap_or_else(|_| "[]".into());
            update = update.col_expr(webhook_endpoints::Column::Events, Expr::value(events));
        }
        if let Some(enabled) = enabled {
            let status = if enabled {
                ENDPOINT_ENABLED
            } else {
                ENDPOINT_DISABLED
            };
            update = update
                .col_expr(webhook_endpoints::Column::Status, Expr::value(status))
                .col_expr(
                    webhook_endpoints::Column::DisabledReason,
                    Expr::value(Option::<String>::None),
                );
        }
        update
            .filter(webhook_endpoints::Column::Id.eq(id.to_string()))
            .exec(self.writer())
            .await?;
        Ok(())
    }

    /// One pending delivery per enabled endpoint of `merchant` that subscribed to the event.
    /// Delivering the same event twice creates nothing new. Returns how many were created.
    pub async fn fan_out_event(
        &self,
        merchant: MerchantId,
        event: &outbox::Model,
        now: DateTime<Utc>,
    ) -> StoreResult<usize> {
        let endpoints = webhook_endpoints::Entity::find()
            .filter(webhook_endpoints::Column::MerchantId.eq(merchant.to_string()))
            .filter(webhook_endpoints::Column::Status.eq(ENDPOINT_ENABLED))
            .all(self.writer())
            .await?;
        let rows: Vec<webhook_deliveries::ActiveModel> = endpoints
            .iter()
            .filter(|endpoint| subscribes(&endpoint.events, &event.event_type))
            .map(|endpoint| webhook_deliveries::ActiveModel {
                id: Set(WebhookDeliveryId::generate().to_string()),
                endpoint_id: Set(endpoint.id.clone()),
                merchant_id: Set(merchant.to_string()),
                event_id: Set(event.id.clone()),
                event_type: Set(event.event_type.clone()),
                payload: Set(event.payload.clone()),
                status: Set(DELIVERY_PENDING.to_owned()),
                attempts: Set(0),
                next_attempt_at: Set(Some(now)),
                last_status_code: Set(None),
                last_error: Set(None),
                created_at: Set(now),
                delivered_at: Set(None),
            })
            .collect();
        let count = rows.len();
        if count > 0 {
            webhook_deliveries::Entity::insert_many(rows)
                .on_conflict_do_nothing_on([
                    webhook_deliveries::Column::EndpointId,
                    webhook_deliveries::Column::EventId,
                ])
                .exec_without_returning(self.writer())
                .await?;
        }
        Ok(count)
    }

    /// Pending deliveries due now to enabled endpoints, oldest first, with their endpoint.
    /// Up to `limit` pending deliveries due by `now`, oldest first, with their enabled
    /// endpoints; leaving out the deliveries `in_flight` and those of the `saturated`
    /// endpoints (so a busy endpoint's backlog does not hide everyone else's).
    pub async fn due_webhook_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u64,
        in_flight: &[String],
        saturated: &[String],
    ) -> StoreResult<Vec<(webhook_deliveries::Model, webhook_endpoints::Model)>> {
        let deliveries = webhook_deliveries::Entity::find()
            .filter(webhook_deliveries::Column::Status.eq(DELIVERY_PENDING))
            .filter(webhook_deliveries::Column::NextAttemptAt.lte(now))
            .filter(webhook_deliveries::Column::Id.is_not_in(in_flight.iter().cloned()))
            .filter(webhook_deliveries::Column::EndpointId.is_not_in(saturated.iter().cloned()))
            .order_by_asc(webhook_deliveries::Column::NextAttemptAt)
            .limit(limit)
            .all(self.reader())
            .await?;
        let mut due = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            if let Some(endpoint) =
                webhook_endpoints::Entity::find_by_id(delivery.endpoint_id.clone())
                    .one(self.reader())
                    .await?
                    .filter(|endpoint| endpoint.status == ENDPOINT_ENABLED)
            {
                due.push((delivery, endpoint));
            }
        }
        Ok(due)
    }

    pub async fn find_webhook_delivery(
        &self,
        id: WebhookDeliveryId,
    ) -> StoreResult<Option<webhook_deliveries::Model>> {
        Ok(webhook_deliveries::Entity::find_by_id(id.to_string())
            .one(self.writer())
            .await?)
    }

    pub async fn list_webhook_deliveries(
        &self,
        endpoint: WebhookEndpointId,
        page: &PageRequest,
    ) -> StoreResult<(Vec<webhook_deliveries::Model>, bool)> {
        let select = webhook_deliveries::Entity::find()
            .filter(webhook_deliveries::Column::EndpointId.eq(endpoint.to_string()));
        fetch_page(select, webhook_deliveries::Column::Id, page, self.reader()).await
    }

    /// Every attempt of the delivery, first first.
    pub async fn webhook_attempts(
        &self,
        delivery: WebhookDeliveryId,
    ) -> StoreResult<Vec<webhook_attempts::Model>> {
        Ok(webhook_attempts::Entity::find()
            .filter(webhook_attempts::Column::DeliveryId.eq(delivery.to_string()))
            .order_by_asc(webhook_attempts::Column::Id)
            .all(self.writer())
            .await?)
    }

    /// Records the attempt and what it means for the delivery (and, when the schedule is
    /// exhausted, for its endpoint), in one transaction.
    pub async fn record_webhook_attempt(
        &self,
        attempt: &AttemptRecord,
        endpoint: &str,
        result: &AttemptResult,
    ) -> StoreResult<()> {
        let transaction = self.writer().begin().await?;
        webhook_attempts::ActiveModel {
            id: Set(uuid::Uuid::now_v7().to_string()),
            delivery_id: Set(attempt.delivery.to_string()),
            attempt: Set(attempt.attempt),
            status_code: Set(attempt.status_code),
            latency_ms: Set(attempt.latency_ms),
            error: Set(attempt.error.clone()),
            trigger: Set(attempt.trigger.to_owned()),
            created_at: Set(attempt.at),
        }
        .insert(&transaction)
        .await?;
        let mut update = webhook_deliveries::Entity::update_many()
            .col_expr(
                webhook_deliveries::Column::LastStatusCode,
                Expr::value(attempt.status_code),
            )
            .col_expr(
                webhook_deliveries::Column::LastError,
                Expr::value(attempt.error.clone()),
            );
        if attempt.trigger == "schedule" {
            update = update.col_expr(
                webhook_deliveries::Column::Attempts,
                Expr::value(attempt.attempt),
            );
        }
        update = match result {
            AttemptResult::Succeeded => update
                .col_expr(
                    webhook_deliveries::Column::Status,
                    Expr::value(DELIVERY_SUCCEEDED),
                )
                .col_expr(
                    webhook_deliveries::Column::DeliveredAt,
                    Expr::value(attempt.at),
                )
                .col_expr(
                    webhook_deliveries::Column::NextAttemptAt,
                    Expr::value(Option::<DateTime<Utc>>::None),
                ),
            AttemptResult::RetryAt(at) => {
                update.col_expr(webhook_deliveries::Column::NextAttemptAt, Expr::value(*at))
            }
            AttemptResult::GaveUp(_) => update
                .col_expr(
                    webhook_deliveries::Column::Status,
                    Expr::value(DELIVERY_FAILED),
                )
                .col_expr(
                    webhook_deliveries::Column::NextAttemptAt,
                    Expr::value(Option::<DateTime<Utc>>::None),
                ),
            AttemptResult::ManualFailed => update,
        };
        update
            .filter(webhook_deliveries::Column::Id.eq(attempt.delivery.to_string()))
            .exec(&transaction)
            .await?;
        if let AttemptResult::GaveUp(reason) = result {
            webhook_endpoints::Entity::update_many()
                .col_expr(
                    webhook_endpoints::Column::Status,
                    Expr::value(ENDPOINT_DISABLED),
                )
                .col_expr(
                    webhook_endpoints::Column::DisabledReason,
                    Expr::value(reason.clone()),
                )
                .col_expr(
                    webhook_endpoints::Column::UpdatedAt,
                    Expr::value(attempt.at),
                )
                .filter(webhook_endpoints::Column::Id.eq(endpoint))
                .exec(&transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_subscribe_by_type_or_wildcard() {
        assert!(subscribes(r#"["refund.succeeded"]"#, "refund.succeeded"));
        assert!(!subscribes(r#"["refund.succeeded"]"#, "payout.paid"));
        assert!(subscribes(r#"["*"]"#, "payout.paid"));
        assert!(!subscribes("not json", "payout.paid"));
    }
}

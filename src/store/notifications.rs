//! Notifications and their delivery bookkeeping, users' channel preferences and push devices,
//! and the outbox reads/writes of the relay (publish, count a failed attempt, dead-letter).

use super::accounts::{PageRequest, fetch_page};
use super::bulk::{id_in, insert_rows, insert_rows_returning_ids};
use super::cache::CachedChannels;
use super::entities::{
    devices, notification_deliveries, notification_preferences, notifications, outbox,
};
use super::{Store, StoreError, StoreResult};
use crate::domain::UserId;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DbBackend, EntityTrait, IdenStatic,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use std::collections::{HashMap, HashSet};

/// Outbox rows handed to the relay per pass.
pub const OUTBOX_BATCH_MAX: u64 = 500;

/// A user's channel choices (all on until they say otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preferences {
    pub email: bool,
    pub sms: bool,
    pub push: bool,
}

impl Default for Preferences {
    fn default() -> Preferences {
        Preferences {
            email: true,
            sms: true,
            push: true,
        }
    }
}

/// The status of a delivery still to be attempted (it gets a `notification_deliveries` row).
const PENDING: &str = "pending";

/// The deliveries settled at once (not `pending`), as stored on the notification:
/// `channel=status,…`; `None` if there are none.
fn settled_deliveries(deliveries: &[(&'static str, &'static str)]) -> Option<String> {
    let settled: Vec<String> = deliveries
        .iter()
        .filter(|(_, status)| *status != PENDING)
        .map(|(channel, status)| format!("{channel}={status}"))
        .collect();
    (!settled.is_empty()).then(|| settled.join(","))
}

/// The settled deliveries of a notification, shaped like the rows of the others.
fn settled_delivery_models(
    notification: &notifications::Model,
) -> impl Iterator<Item = notification_deliveries::Model> + '_ {
    notification
        .settled_deliveries
        .iter()
        .flat_map(|settled| settled.split(','))
        .filter_map(|pair| pair.split_once('='))
        .map(|(channel, status)| notification_deliveries::Model {
            id: format!("{}:{channel}", notification.id),
            notification_id: notification.id.clone(),
            user_id: notification.user_id.clone(),
            channel: channel.to_owned(),
            status: status.to_owned(),
            attempts: 0,
            last_error: None,
            updated_at: notification.created_at,
            next_attempt_at: None,
            provider_reference: None,
        })
}

/// A notification to store, with the initial status of each channel's delivery.
#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    pub user: UserId,
    pub event_id: &'a str,
    pub kind: &'a str,
    pub title: String,
    pub body: String,
    pub deliveries: Vec<(&'static str, &'static str)>,
}

impl NewNotification<'_> {
    /// Its `notifications` row; its id is derived from its user and event.
    fn row(&self, now: DateTime<Utc>) -> notifications::ActiveModel {
        notifications::ActiveModel {
            id: Set(notification_id(self.event_id, &self.user.to_string())),
            user_id: Set(self.user.to_string()),
            event_id: Set(self.event_id.to_owned()),
            kind: Set(self.kind.to_owned()),
            title: Set(self.title.clone()),
            body: Set(self.body.clone()),
            created_at: Set(now),
            settled_deliveries: Set(settled_deliveries(&self.deliveries)),
        }
    }

    /// A row per delivery still to be attempted; the settled ones are on the notification
    /// (`settled_deliveries`).
    fn pending_delivery_rows(
        &self,
        notification_id: &str,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = notification_deliveries::ActiveModel> {
        self.deliveries
            .iter()
            .filter(|(_, status)| *status == PENDING)
            .map(
                move |(channel, status)| notification_deliveries::ActiveModel {
                    id: Set(uuid::Uuid::now_v7().to_string()),
                    notification_id: Set(notification_id.to_owned()),
                    user_id: Set(self.user.to_string()),
                    channel: Set((*channel).to_owned()),
                    status: Set((*status).to_owned()),
                    attempts: Set(0),
                    last_error: Set(None),
                    updated_at: Set(now),
                    next_attempt_at: Set(Some(now)),
                    provider_reference: Set(None),
                },
            )
    }
}

/// One notification of an event, before the event has an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventNotification {
    pub user: UserId,
    pub title: String,
    pub body: String,
    pub deliveries: Vec<(&'static str, &'static str)>,
}

/// The notifier's work on an event done in the transaction that writes the event, so that the
/// relay has nothing left to do with it: with the in-process bus, a P2P transfer's
/// `transfer.completed` (which no merchant webhook wants) gets its notifications and their
/// deliveries written in the group commit that completes it, and its outbox row is written
/// handled and published; the notifier sends the pending deliveries as it sends any others.
/// `None` leaves the event to the relay, as any other (a user whose channel choices are not at
/// hand, a malformed event).
pub trait NotifyInline: Sync {
    fn notifications(
        &self,
        event_type: &str,
        data: &serde_json::Value,
    ) -> Option<Vec<EventNotification>>;
}

/// The rows of notifications written with their event (`NotifyInline`), and of their pending
/// deliveries.
pub(super) fn inline_notification_rows(
    event_id: &str,
    event_type: &str,
    notifications: Vec<EventNotification>,
    now: DateTime<Utc>,
    deliveries: &mut Vec<notification_deliveries::ActiveModel>,
) -> Vec<notifications::ActiveModel> {
    notifications
        .into_iter()
        .map(|notification| {
            let notification = NewNotification {
                user: notification.user,
                event_id,
                kind: event_type,
                title: notification.title,
                body: notification.body,
                deliveries: notification.deliveries,
            };
            let row = notification.row(now);
            let id = row.id.try_as_ref().cloned().unwrap_or_default();
            deliveries.extend(notification.pending_delivery_rows(&id, now));
            row
        })
        .collect()
}

impl Store {
    pub async fn unpublished_outbox(&self) -> StoreResult<Vec<outbox::Model>> {
        Ok(outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .filter(outbox::Column::DeadLetteredAt.is_null())
            .order_by_asc(outbox::Column::Id)
            .limit(OUTBOX_BATCH_MAX)
            .all(self.writer())
            .await?)
    }

    /// The oldest unpublished events one in-process consumer has not handled yet
    /// (`outbox::Column::NotifiedAt` or `DispatchedAt`).
    pub async fn outbox_waiting_for(
        &self,
        consumer: outbox::Column,
    ) -> StoreResult<Vec<outbox::Model>> {
        Ok(outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .filter(outbox::Column::DeadLetteredAt.is_null())
            .filter(consumer.is_null())
            .order_by_asc(outbox::Column::Id)
            .limit(OUTBOX_BATCH_MAX)
            .all(self.writer())
            .await?)
    }

    /// The outbox events with these ids (those that exist), as the database holds them.
    pub async fn outbox_events(&self, ids: &[String]) -> StoreResult<Vec<outbox::Model>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(outbox::Entity::find()
            .filter(id_in(self.backend(), outbox::Column::Id, ids.to_vec()))
            .all(self.reader())
            .await?)
    }

    /// How many events wait to be published (dead letters excluded), and when the oldest was
    /// written.
    pub async fn outbox_backlog_and_oldest(&self) -> StoreResult<(i64, Option<DateTime<Utc>>)> {
        let waiting = || {
            outbox::Entity::find()
                .filter(outbox::Column::PublishedAt.is_null())
                .filter(outbox::Column::DeadLetteredAt.is_null())
        };
        let backlog = waiting().count(self.reader()).await?;
        let oldest = waiting()
            .order_by_asc(outbox::Column::Id)
            .one(self.reader())
            .await?
            .map(|event| event.created_at);
        Ok((i64::try_from(backlog).unwrap_or(i64::MAX), oldest))
    }

    /// Marks the events published, in one statement.
    pub async fn mark_outbox_published(
        &self,
        ids: &[String],
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.stamp_outbox(outbox::Column::PublishedAt, ids, now)
            .await
    }

    /// Records the in-process consumers that handled events the others have not handled yet
    /// (one statement per consumer with any).
    pub async fn mark_outbox_handled(
        &self,
        notified: &[String],
        dispatched: &[String],
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.stamp_outbox(outbox::Column::NotifiedAt, notified, now)
            .await?;
        self.stamp_outbox(outbox::Column::DispatchedAt, dispatched, now)
            .await
    }

    /// Sets `column` (a consumer's or the relay's time stamp) to `now` on these events, in one
    /// statement.
    ///
    /// On PostgreSQL the statement is planned for each execution (an unnamed statement) rather
    /// than once per pooled connection: the outbox grows from nothing, and a plan cached while
    /// it held a page or two (a sequential scan, cheaper then than the key's index) stays
    /// cached on the connection until an `ANALYZE` of the table invalidates it. In a 15 s run on
    /// a fresh database with 200 users the published mark took 67 ms a call (11.8 of the 15
    /// seconds, PostgreSQL's largest item by far, `pg_stat_statements`), each call reading the
    /// whole table; planned afresh it finds the ids by the primary key. Planning a statement
    /// this small costs well under a millisecond, a few times a second.
    async fn stamp_outbox(
        &self,
        column: outbox::Column,
        ids: &[String],
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        if self.backend() == DbBackend::Postgres {
            let sql = format!(
                "UPDATE outbox SET \"{}\" = $1 WHERE id = ANY($2)",
                column.as_str()
            );
            sea_orm::sqlx::query(sea_orm::sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(ids)
                .persistent(false)
                .execute(self.writer().get_postgres_connection_pool())
                .await
                .map_err(|error| {
                    StoreError::Database(sea_orm::DbErr::Exec(sea_orm::RuntimeErr::SqlxError(
                        std::sync::Arc::new(error),
                    )))
                })?;
            return Ok(());
        }
        outbox::Entity::update_many()
            .col_expr(column, Expr::value(now))
            .filter(id_in(self.backend(), outbox::Column::Id, ids.to_vec()))
            .exec(self.writer())
            .await?;
        Ok(())
    }

    /// Counts a failed delivery; with `dead_letter` the row leaves the queue for good.
    pub async fn record_outbox_failure(
        &self,
        id: &str,
        error: &str,
        dead_letter: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut update = outbox::Entity::update_many()
            .col_expr(
                outbox::Column::Attempts,
                Expr::col(outbox::Column::Attempts).add(1),
            )
            .col_expr(outbox::Column::LastError, Expr::value(error.to_owned()));
        if dead_letter {
            update = update.col_expr(outbox::Column::DeadLetteredAt, Expr::value(now));
        }
        update
            .filter(outbox::Column::Id.eq(id))
            .exec(self.writer())
            .await?;
        Ok(())
    }

    /// `channel_choices`, from the node's cache where it holds them (`Caches::channels`);
    /// the others are read, in one go, and cached.
    pub async fn cached_channel_choices(
        &self,
        users: &[UserId],
    ) -> StoreResult<HashMap<UserId, (Preferences, bool)>> {
        let cache = &self.caches().channels;
        let mut choices = HashMap::with_capacity(users.len());
        let mut missing = Vec::new();
        for user in users {
            match cache.get(user).filter(CachedChannels::is_usable) {
                Some(cached) => {
                    choices.insert(*user, (cached.preferences, cached.has_devices));
                }
                None => missing.push(*user),
            }
        }
        if missing.is_empty() {
            return Ok(choices);
        }
        // A change evicting an entry while this read is on its way keeps the read's (maybe
        // older) answer out of the cache.
        let generation = cache.generation();
        let cached_at = std::time::Instant::now();
        for (user, (preferences, has_devices)) in self.channel_choices(&missing).await? {
            let cached = CachedChannels {
                preferences,
                has_devices,
                cached_at,
            };
            cache.insert_unless_changed(user, cached, generation);
            choices.insert(user, (preferences, has_devices));
        }
        Ok(choices)
    }

    /// Each user's channel preferences and whether they have a push device, for a batch of
    /// users in two statements.
    pub async fn channel_choices(
        &self,
        users: &[UserId],
    ) -> StoreResult<HashMap<UserId, (Preferences, bool)>> {
        let mut choices: HashMap<UserId, (Preferences, bool)> = users
            .iter()
            .map(|user| (*user, (Preferences::default(), false)))
            .collect();
        if users.is_empty() {
            return Ok(choices);
        }
        let ids: Vec<String> = users.iter().map(ToString::to_string).collect();
        let preferences = notification_preferences::Entity::find()
            .filter(id_in(
                self.backend(),
                notification_preferences::Column::UserId,
                ids.clone(),
            ))
            .all(self.reader())
            .await?;
        for row in preferences {
            if let Some(choice) = row
                .user_id
                .parse()
                .ok()
                .and_then(|user: UserId| choices.get_mut(&user))
            {
                choice.0 = Preferences {
                    email: row.email,
                    sms: row.sms,
                    push: row.push,
                };
            }
        }
        let with_devices: Vec<String> = devices::Entity::find()
            .select_only()
            .column(devices::Column::UserId)
            .distinct()
            .filter(id_in(self.backend(), devices::Column::UserId, ids))
            .into_tuple()
            .all(self.reader())
            .await?;
        for user in with_devices {
            if let Some(choice) = user
                .parse()
                .ok()
                .and_then(|user: UserId| choices.get_mut(&user))
            {
                choice.1 = true;
            }
        }
        Ok(choices)
    }

    pub async fn preferences(&self, user: UserId) -> StoreResult<Preferences> {
        Ok(
            notification_preferences::Entity::find_by_id(user.to_string())
                .one(self.reader())
                .await?
                .map(|row| Preferences {
                    email: row.email,
                    sms: row.sms,
                    push: row.push,
                })
                .unwrap_or_default(),
        )
    }

    pub async fn set_preferences(
        &self,
        user: UserId,
        preferences: Preferences,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        notification_preferences::Entity::insert(notification_preferences::ActiveModel {
            user_id: Set(user.to_string()),
            email: Set(preferences.email),
            sms: Set(preferences.sms),
            push: Set(preferences.push),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(notification_preferences::Column::UserId)
                .update_columns([
                    notification_preferences::Column::Email,
                    notification_preferences::Column::Sms,
                    notification_preferences::Column::Push,
                    notification_preferences::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(self.writer())
        .await?;
        self.caches().channels.retain(|cached, _| *cached != user);
        Ok(())
    }

    /// Registers a push token for the user. A token is one app install: registered again by
    /// its user, it keeps its device record; registered by another user (the phone changed
    /// hands, or another account logged in on it), the previous user's record is deleted and
    /// the caller gets a new one, in one transaction. So the previous user's pushes stop going
    /// to it, and nothing of their record (its id, when it was registered) is handed over.
    pub async fn register_device(
        &self,
        user: UserId,
        token: &str,
        platform: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<devices::Model> {
        let transaction = self.writer().begin().await?;
        let existing = devices::Entity::find()
            .filter(devices::Column::Token.eq(token))
            .one(&transaction)
            .await?;
        if let Some(device) = existing {
            if device.user_id == user.to_string() {
                let mut device: devices::ActiveModel = device.into();
                device.platform = Set(platform.to_owned());
                let device = device.update(&transaction).await?;
                transaction.commit().await?;
                return Ok(device);
            }
            devices::Entity::delete_by_id(device.id)
                .exec(&transaction)
                .await?;
        }
        let device = devices::ActiveModel {
            id: Set(uuid::Uuid::now_v7().to_string()),
            user_id: Set(user.to_string()),
            token: Set(token.to_owned()),
            platform: Set(platform.to_owned()),
            created_at: Set(now),
        }
        .insert(&transaction)
        .await?;
        transaction.commit().await?;
        // Whoever held the token before may have no device left: forget every user's choices.
        self.caches().channels.retain(|_, _| false);
        Ok(device)
    }

    pub async fn find_device(&self, id: &str) -> StoreResult<Option<devices::Model>> {
        Ok(devices::Entity::find_by_id(id.to_owned())
            .one(self.reader())
            .await?)
    }

    pub async fn list_devices(
        &self,
        user: UserId,
        page: &PageRequest,
    ) -> StoreResult<(Vec<devices::Model>, bool)> {
        let select = devices::Entity::find().filter(devices::Column::UserId.eq(user.to_string()));
        fetch_page(select, devices::Column::Id, page, self.reader()).await
    }

    /// The user's push tokens (at most 100, newest first).
    pub async fn device_tokens(&self, user: UserId) -> StoreResult<Vec<String>> {
        Ok(devices::Entity::find()
            .filter(devices::Column::UserId.eq(user.to_string()))
            .order_by_desc(devices::Column::Id)
            .limit(100)
            .all(self.reader())
            .await?
            .into_iter()
            .map(|device| device.token)
            .collect())
    }

    /// Forgets a push token the provider reported as unregistered.
    pub async fn remove_device_token(&self, token: &str) -> StoreResult<()> {
        devices::Entity::delete_many()
            .filter(devices::Column::Token.eq(token))
            .exec(self.writer())
            .await?;
        self.caches().channels.retain(|_, _| false);
        Ok(())
    }

    /// Stores the notifications (one per user and event: a notification already stored is left
    /// alone) with a delivery per channel, all in ONE transaction. Returns, per notification,
    /// whether it was new.
    pub async fn create_notifications(
        &self,
        notifications: &[NewNotification<'_>],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<bool>> {
        if notifications.is_empty() {
            return Ok(Vec::new());
        }
        // A notification already stored (a redelivered event, another node) is left alone:
        // its id is derived from its user and event (`notification_id`), so the insert skips it
        // on the primary key and returns what it did insert; only those get deliveries. One
        // transaction, multi-row statements, no read first.
        let mut seen: HashSet<(String, String)> = HashSet::new();
        let mut rows = Vec::with_capacity(notifications.len());
        let mut ids: Vec<Option<String>> = Vec::with_capacity(notifications.len());
        for notification in notifications {
            let key = (
                notification.user.to_string(),
                notification.event_id.to_owned(),
            );
            if !seen.insert(key) {
                ids.push(None);
                continue;
            }
            let row = notification.row(now);
            ids.push(row.id.try_as_ref().cloned());
            rows.push(row);
        }
        let transaction = self.writer().begin().await?;
        // The key is `(user_id, id)` on PostgreSQL and `id` on SQLite: either way the one
        // unique index, and the id is derived from the user and event.
        let inserted =
            insert_rows_returning_ids(&transaction, rows, Some("ON CONFLICT DO NOTHING")).await?;
        let mut stored = Vec::with_capacity(notifications.len());
        let mut delivery_rows = Vec::new();
        for (notification, id) in notifications.iter().zip(&ids) {
            let Some(id) = id.as_ref().filter(|id| inserted.contains(*id)) else {
                stored.push(false);
                continue;
            };
            stored.push(true);
            delivery_rows.extend(notification.pending_delivery_rows(id, now));
        }
        insert_rows(&transaction, delivery_rows, None).await?;
        transaction.commit().await?;
        Ok(stored)
    }

    /// The user's notifications, newest first, each with its deliveries.
    pub async fn list_notifications(
        &self,
        user: UserId,
        page: &PageRequest,
    ) -> StoreResult<(
        Vec<(notifications::Model, Vec<notification_deliveries::Model>)>,
        bool,
    )> {
        let select = notifications::Entity::find()
            .filter(notifications::Column::UserId.eq(user.to_string()));
        let (rows, has_more) =
            fetch_page(select, notifications::Column::Id, page, self.reader()).await?;
        let ids: Vec<String> = rows.iter().map(|row| row.id.clone()).collect();
        let deliveries = if ids.is_empty() {
            Vec::new()
        } else {
            notification_deliveries::Entity::find()
                .filter(notification_deliveries::Column::NotificationId.is_in(ids))
                .order_by_asc(notification_deliveries::Column::Channel)
                .all(self.reader())
                .await?
        };
        let listed = rows
            .into_iter()
            .map(|row| {
                let mut mine: Vec<notification_deliveries::Model> = deliveries
                    .iter()
                    .filter(|d| d.notification_id == row.id)
                    .cloned()
                    .collect();
                mine.extend(settled_delivery_models(&row));
                mine.sort_by(|a, b| a.channel.cmp(&b.channel));
                (row, mine)
            })
            .collect();
        Ok((listed, has_more))
    }
}

/// The id of the notification of `event` to `user`: the same on every node and every
/// delivery of the event, so the primary key keeps one notification per user and event (no
/// index of its own for that). A UUID v7 in form: the event's time when its id is a UUID v7
/// (outbox events' are), so notifications list in the order of their events, then a SHA-256
/// of the event and the user.
pub fn notification_id(event: &str, user: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(event.as_bytes())
        .chain_update([0])
        .chain_update(user.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    if let Ok(event) = uuid::Uuid::parse_str(event)
        && event.get_version_num() == 7
    {
        bytes[..6].copy_from_slice(&event.as_bytes()[..6]);
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x70;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(bytes).to_string()
}

/// A pending delivery that is due, with what sending it needs.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub delivery: notification_deliveries::Model,
    pub notification: notifications::Model,
}

/// Due deliveries handled per pass.
pub const DUE_DELIVERIES_MAX: u64 = 100;

impl Store {
    /// Pending deliveries of `channel` whose next attempt is due.
    pub async fn due_deliveries(
        &self,
        channel: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<DueDelivery>> {
        let deliveries = notification_deliveries::Entity::find()
            .filter(notification_deliveries::Column::Channel.eq(channel))
            .filter(notification_deliveries::Column::Status.eq("pending"))
            .filter(notification_deliveries::Column::NextAttemptAt.lte(now))
            .order_by_asc(notification_deliveries::Column::NextAttemptAt)
            .limit(DUE_DELIVERIES_MAX)
            .all(self.writer())
            .await?;
        let mut due = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            // By the notification's key on PostgreSQL, `(user_id, id)`.
            if let Some(notification) = notifications::Entity::find()
                .filter(notifications::Column::UserId.eq(delivery.user_id.as_str()))
                .filter(notifications::Column::Id.eq(delivery.notification_id.as_str()))
                .one(self.writer())
                .await?
            {
                due.push(DueDelivery {
                    delivery,
                    notification,
                });
            }
        }
        Ok(due)
    }

    /// Records an attempt: `sent`, `failed`, or still `pending` until `next_attempt_at`;
    /// `provider_reference` is the provider's id for a sent message.
    pub async fn record_delivery_attempt(
        &self,
        id: &str,
        status: &str,
        last_error: Option<String>,
        next_attempt_at: Option<DateTime<Utc>>,
        provider_reference: Option<String>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        notification_deliveries::Entity::update_many()
            .col_expr(
                notification_deliveries::Column::ProviderReference,
                Expr::value(provider_reference),
            )
            .col_expr(
                notification_deliveries::Column::Status,
                Expr::value(status.to_owned()),
            )
            .col_expr(
                notification_deliveries::Column::Attempts,
                Expr::col(notification_deliveries::Column::Attempts).add(1),
            )
            .col_expr(
                notification_deliveries::Column::LastError,
                Expr::value(last_error),
            )
            .col_expr(
                notification_deliveries::Column::NextAttemptAt,
                Expr::value(next_attempt_at),
            )
            .col_expr(notification_deliveries::Column::UpdatedAt, Expr::value(now))
            .filter(notification_deliveries::Column::Id.eq(id))
            .filter(notification_deliveries::Column::Status.eq("pending"))
            .exec(self.writer())
            .await?;
        Ok(())
    }
}

impl Store {
    /// A provider's final word on a sent message (e.g. Twilio: delivered / failed). Only a
    /// `sent` delivery moves; returns whether one did.
    pub async fn record_delivery_outcome(
        &self,
        channel: &str,
        provider_reference: &str,
        status: &str,
        error: Option<String>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let updated = notification_deliveries::Entity::update_many()
            .col_expr(
                notification_deliveries::Column::Status,
                Expr::value(status.to_owned()),
            )
            .col_expr(
                notification_deliveries::Column::LastError,
                Expr::value(error),
            )
            .col_expr(notification_deliveries::Column::UpdatedAt, Expr::value(now))
            .filter(notification_deliveries::Column::Channel.eq(channel))
            .filter(notification_deliveries::Column::ProviderReference.eq(provider_reference))
            .filter(notification_deliveries::Column::Status.eq("sent"))
            .exec(self.writer())
            .await?;
        Ok(updated.rows_affected > 0)
    }
}

#[cfg(test)]
mod settled_tests {
    use super::*;

    #[test]
    fn settled_deliveries_live_on_the_notification_and_read_back_as_deliveries() {
        let deliveries = [
            ("in_app", "delivered"),
            ("email", "pending"),
            ("sms", "skipped"),
        ];
        let settled = settled_deliveries(&deliveries);
        assert_eq!(settled.as_deref(), Some("in_app=delivered,sms=skipped"));
        assert_eq!(settled_deliveries(&[("email", "pending")]), None);
        let notification = notifications::Model {
            id: "n1".into(),
            user_id: "u".into(),
            event_id: "e".into(),
            kind: "transfer.completed".into(),
            title: "t".into(),
            body: "b".into(),
            created_at: Utc::now(),
            settled_deliveries: settled,
        };
        let read: Vec<(String, String)> = settled_delivery_models(&notification)
            .map(|delivery| (delivery.channel, delivery.status))
            .collect();
        assert_eq!(
            read,
            vec![
                ("in_app".to_owned(), "delivered".to_owned()),
                ("sms".to_owned(), "skipped".to_owned())
            ]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::notification_id;

    #[test]
    fn a_notification_id_is_one_per_user_and_event_and_keeps_the_event_s_time() {
        let event = uuid::Uuid::now_v7().to_string();
        let ada = notification_id(&event, "ada");
        assert_eq!(
            ada,
            notification_id(&event, "ada"),
            "the same on every delivery"
        );
        assert_ne!(ada, notification_id(&event, "bob"));
        let later = uuid::Uuid::now_v7().to_string();
        assert_ne!(ada, notification_id(&later, "ada"));
        let parsed = uuid::Uuid::parse_str(&ada).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 7);
        assert_eq!(
            parsed.as_bytes()[..6],
            uuid::Uuid::parse_str(&event).expect("uuid").as_bytes()[..6]
        );
        // Any event id (a provider's, say) still gives one id per user and event.
        assert_eq!(
            notification_id("evt_123", "ada"),
            notification_id("evt_123", "ada")
        );
        assert_ne!(
            notification_id("evt_123", "ada"),
            notification_id("evt_124", "ada")
        );
    }
}

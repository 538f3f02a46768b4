//! One index entry fewer per notification, two per transfer. On PostgreSQL `notifications_pkey
//! (id)` and `notifications_user_id (user_id, id)` become one primary key `(user_id, id)`:
//! notifications are read by user (the list, newest first, in id order) and, for a delivery to
//! retry, by user and id. A notification's id is derived from its user and event and stays
//! unique on its own. So that a delivery finds its notification by that key, each delivery now
//! carries its notification's `user_id` (filled in here for the existing ones; a delivery
//! whose notification is gone keeps `''` and, as before, is never retried).
//!
//! Two notifications are written per transfer, in the same minutes as the ledger; with its
//! two indexes each took ~18 µs of PostgreSQL's time (`pg_stat_statements`), where dropping one
//! index before took it from 27.7 to 19.4 µs (`notifications_keyed_by_event`). SQLite cannot
//! change a table's primary key without rebuilding it: there both indexes stay.
//!
//! On a large PostgreSQL database the new key is built while the table is locked (a
//! maintenance window's work, once).

use crate::execute_by_backend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP_POSTGRES: [&str; 5] = [
    "ALTER TABLE notification_deliveries ADD COLUMN user_id varchar(64) NOT NULL DEFAULT ''",
    "UPDATE notification_deliveries d SET user_id = n.user_id FROM notifications n \
     WHERE n.id = d.notification_id",
    "ALTER TABLE notifications DROP CONSTRAINT notifications_pkey",
    "DROP INDEX notifications_user_id",
    "ALTER TABLE notifications ADD CONSTRAINT notifications_pkey PRIMARY KEY (user_id, id)",
];

const DOWN_POSTGRES: [&str; 4] = [
    "ALTER TABLE notifications DROP CONSTRAINT notifications_pkey",
    "ALTER TABLE notifications ADD CONSTRAINT notifications_pkey PRIMARY KEY (id)",
    "CREATE INDEX notifications_user_id ON notifications (user_id, id)",
    "ALTER TABLE notification_deliveries DROP COLUMN user_id",
];

const UP_SQLITE: [&str; 2] = [
    "ALTER TABLE notification_deliveries ADD COLUMN user_id varchar(64) NOT NULL DEFAULT ''",
    "UPDATE notification_deliveries SET user_id = COALESCE((SELECT n.user_id FROM notifications n \
     WHERE n.id = notification_deliveries.notification_id), '')",
];

const DOWN_SQLITE: [&str; 1] = ["ALTER TABLE notification_deliveries DROP COLUMN user_id"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_by_backend(manager, &UP_POSTGRES, &UP_SQLITE).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_by_backend(manager, &DOWN_POSTGRES, &DOWN_SQLITE).await
    }
}

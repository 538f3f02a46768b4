//! One index fewer on `notifications`: the unique `notifications_user_event (user_id,
//! event_id)` goes. It kept one notification per user and event (an event delivered twice, or
//! to two nodes); a notification's id is now derived from its user and event (`store::
//! notifications::notification_id`), so the primary key keeps them unique. Two notifications
//! are written per transfer, in the same hot minutes as the ledger, and each index was one
//! more b-tree insertion: the notifier's insert went from 27.7 to 19.4 µs of PostgreSQL's time
//! per row with one index fewer (`pg_stat_statements`, 15 s uniform load).
//!
//! Notifications stored before this migration keep their random ids: an event already
//! notified then and delivered again after it would be notified once more (a relay that crashed
//! between notifying and marking the event, exactly at the upgrade).

use crate::execute_all;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: [&str; 1] = ["DROP INDEX notifications_user_event"];

const DOWN: [&str; 1] =
    ["CREATE UNIQUE INDEX notifications_user_event ON notifications (user_id, event_id)"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(manager, &UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(manager, &DOWN).await
    }
}

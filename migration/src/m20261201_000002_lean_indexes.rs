//! Fewer index entries per transfer (every index entry is written in the money transaction or
//! right after it):
//! - `transfers_kind` served no query (transfers are listed by `from_user` / `to_user`);
//! - `transfers_state (state, id)` took an entry for every transfer, and another when its saga
//!   moved on; what reads by state only looks for sagas still `debited` (the resume pass, the
//!   reconciler), so `transfers_debited` holds just those;
//! - `outbox_unpublished (published_at, id)` took an entry per event and another when it was
//!   published; the relay and the backlog only look for events still waiting, so
//!   `outbox_waiting` holds just those;
//! - `notifications_event (event_id)` served the notifier's read of which notifications existed,
//!   which the insert's `ON CONFLICT (user_id, event_id) DO NOTHING` replaced (two notifications
//!   per transfer, each one index entry fewer).
//!
//! SQLite and PostgreSQL both have partial indexes, with the same syntax.

use crate::execute_all;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: [&str; 6] = [
    "DROP INDEX transfers_kind",
    "DROP INDEX transfers_state",
    "CREATE INDEX transfers_debited ON transfers (id) WHERE state = 'debited'",
    "DROP INDEX outbox_unpublished",
    "CREATE INDEX outbox_waiting ON outbox (id) WHERE published_at IS NULL AND dead_lettered_at IS NULL",
    "DROP INDEX notifications_event",
];

const DOWN: [&str; 6] = [
    "CREATE INDEX notifications_event ON notifications (event_id)",
    "DROP INDEX outbox_waiting",
    "CREATE INDEX outbox_unpublished ON outbox (published_at, id)",
    "DROP INDEX transfers_debited",
    "CREATE INDEX transfers_state ON transfers (state, id)",
    "CREATE INDEX transfers_kind ON transfers (kind)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(manager, &UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(manager, &DOWN).await
    }
}

//! Schema migrations for walleti. One file per change; a landed migration is never edited.
//! The same migrations run on SQLite (the embedded default) and PostgreSQL.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_core_ledger;
mod m20261124_000002_onramps;
mod m20261124_000003_reconciliations;
mod m20261124_000004_notifications;
mod m20261124_000005_delivery_retries;
mod m20261124_000006_delivery_references;
mod m20261124_000007_merchants;
mod m20261124_000008_notification_events;
mod m20261130_000001_contact_verification;
mod m20261130_000002_scopes_and_links;
mod m20261130_000003_settled_deliveries;
mod m20261201_000001_outbox_consumers;
mod m20261201_000002_lean_indexes;
mod m20261202_000001_update_room;
mod m20261203_000001_entries_keyed_by_account;
mod m20261204_000001_notifications_keyed_by_event;
mod m20261205_000001_entries_op_key_first;
mod m20261206_000001_entries_checked_by_the_writer;
mod m20261207_000001_notifications_keyed_by_user;
mod m20261208_000001_keys_collated_c;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_core_ledger::Migration),
            Box::new(m20261124_000002_onramps::Migration),
            Box::new(m20261124_000003_reconciliations::Migration),
            Box::new(m20261124_000004_notifications::Migration),
            Box::new(m20261124_000005_delivery_retries::Migration),
            Box::new(m20261124_000006_delivery_references::Migration),
            Box::new(m20261124_000007_merchants::Migration),
            Box::new(m20261124_000008_notification_events::Migration),
            Box::new(m20261130_000001_contact_verification::Migration),
            Box::new(m20261130_000002_scopes_and_links::Migration),
            Box::new(m20261130_000003_settled_deliveries::Migration),
            Box::new(m20261201_000001_outbox_consumers::Migration),
            Box::new(m20261201_000002_lean_indexes::Migration),
            Box::new(m20261202_000001_update_room::Migration),
            Box::new(m20261203_000001_entries_keyed_by_account::Migration),
            Box::new(m20261204_000001_notifications_keyed_by_event::Migration),
            Box::new(m20261205_000001_entries_op_key_first::Migration),
            Box::new(m20261206_000001_entries_checked_by_the_writer::Migration),
            Box::new(m20261207_000001_notifications_keyed_by_user::Migration),
            Box::new(m20261208_000001_keys_collated_c::Migration),
        ]
    }
}

/// Runs statements that sea-query's schema builder cannot say, in order.
pub(crate) async fn execute_all(
    manager: &SchemaManager<'_>,
    statements: &[&str],
) -> Result<(), DbErr> {
    for statement in statements {
        manager
            .get_connection()
            .execute_unprepared(statement)
            .await?;
    }
    Ok(())
}

/// Runs `postgres` on PostgreSQL and `other` on any other database (SQLite), in order: for the
/// migrations whose schema differs by backend (a key SQLite cannot change in place).
pub(crate) async fn execute_by_backend(
    manager: &SchemaManager<'_>,
    postgres: &[&str],
    other: &[&str],
) -> Result<(), DbErr> {
    match manager.get_database_backend() {
        sea_orm_migration::sea_orm::DbBackend::Postgres => execute_all(manager, postgres).await,
        _ => execute_all(manager, other).await,
    }
}

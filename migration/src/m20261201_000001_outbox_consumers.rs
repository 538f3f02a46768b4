//! Each in-process consumer of an outbox event (the notifier, the merchant webhook dispatcher)
//! is acknowledged on its own: `notified_at` / `dispatched_at` record the one that handled an
//! event while the other did not, so a retry asks only the consumer still missing.
//! `published_at` stays the mark that every consumer has it (and is set alone on the common
//! path, where both handle an event at once).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one column per ALTER TABLE.
        for column in [Outbox::NotifiedAt, Outbox::DispatchedAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Outbox::Table)
                        .add_column(ColumnDef::new(column).timestamp_with_time_zone().null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Outbox::NotifiedAt, Outbox::DispatchedAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Outbox::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Outbox {
    Table,
    NotifiedAt,
    DispatchedAt,
}

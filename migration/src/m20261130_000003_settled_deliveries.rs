//! Deliveries that are settled when the notification is written (in-app `delivered`, a channel
//! walleti has no client for `skipped`) are kept on the notification itself, as
//! `channel=status,…`, instead of one row each: most notifications have no other delivery, and
//! those rows cost more than the ledger's own entries under load. Rows stay for the deliveries
//! that are worked on (pending, then sent or failed).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Notifications::Table)
                    .add_column(
                        ColumnDef::new(Notifications::SettledDeliveries)
                            .text()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Notifications::Table)
                    .drop_column(Notifications::SettledDeliveries)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    SettledDeliveries,
}

//! When a pending notification delivery is next attempted (exponential backoff with jitter).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(NotificationDeliveries::Table)
                    .add_column(
                        ColumnDef::new(NotificationDeliveries::NextAttemptAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("notification_deliveries_due")
                    .table(NotificationDeliveries::Table)
                    .col(NotificationDeliveries::Status)
                    .col(NotificationDeliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(NotificationDeliveries::Table)
                    .drop_column(NotificationDeliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum NotificationDeliveries {
    Table,
    Status,
    NextAttemptAt,
}

//! The provider's id for a channel delivery (e.g. Twilio's message SID), so its delivery-status
//! callbacks can find the delivery they are about.

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
                        ColumnDef::new(NotificationDeliveries::ProviderReference)
                            .string_len(128)
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("notification_deliveries_provider_reference")
                    .table(NotificationDeliveries::Table)
                    .col(NotificationDeliveries::ProviderReference)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(NotificationDeliveries::Table)
                    .drop_column(NotificationDeliveries::ProviderReference)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum NotificationDeliveries {
    Table,
    ProviderReference,
}

//! Issue 12's low list: merchant API keys carry a scope (`full`, or `payments`: payment
//! intents only), and a payment intent's public payment link is a separate 128-bit random
//! token (the intent's own id is time-ordered and partly predictable).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ApiKeys::Table)
                    .add_column(
                        ColumnDef::new(ApiKeys::Scope)
                            .string_len(16)
                            .not_null()
                            .default("full"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(PaymentIntents::Table)
                    .add_column(
                        ColumnDef::new(PaymentIntents::LinkToken)
                            .string_len(64)
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("payment_intents_link_token")
                    .table(PaymentIntents::Table)
                    .col(PaymentIntents::LinkToken)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("payment_intents_link_token")
                    .table(PaymentIntents::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(PaymentIntents::Table)
                    .drop_column(PaymentIntents::LinkToken)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ApiKeys::Table)
                    .drop_column(ApiKeys::Scope)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Scope,
}

#[derive(DeriveIden)]
enum PaymentIntents {
    Table,
    LinkToken,
}

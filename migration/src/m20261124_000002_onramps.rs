//! On-ramps (money in from the bank or Stripe) and the webhook inbox: every provider event is
//! stored once, unique on (provider, event id), before it is acknowledged and processed.
//! Also gives idempotency claims a token, so only the request holding a claim can finish it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(IdempotencyKeys::Table)
                    .add_column(
                        ColumnDef::new(IdempotencyKeys::ClaimToken)
                            .string_len(64)
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Onramps::Table)
                    .col(
                        ColumnDef::new(Onramps::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Onramps::UserId).string_len(64).not_null())
                    .col(ColumnDef::new(Onramps::AccountId).string_len(64).not_null())
                    .col(ColumnDef::new(Onramps::Provider).string_len(16).not_null())
                    .col(ColumnDef::new(Onramps::Amount).big_integer().not_null())
                    .col(ColumnDef::new(Onramps::Currency).string_len(3).not_null())
                    .col(ColumnDef::new(Onramps::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Onramps::RedirectUrl).text().null())
                    .col(
                        ColumnDef::new(Onramps::ProviderReference)
                            .string_len(255)
                            .null(),
                    )
                    .col(ColumnDef::new(Onramps::FailureCode).string_len(64).null())
                    .col(
                        ColumnDef::new(Onramps::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Onramps::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .check((
                        Alias::new("onramps_amount_positive"),
                        Expr::cust("amount > 0"),
                    ))
                    .check((
                        Alias::new("onramps_status_known"),
                        Expr::cust("status IN ('processing', 'succeeded', 'failed')"),
                    ))
                    .check((
                        Alias::new("onramps_provider_known"),
                        Expr::cust("provider IN ('bank', 'stripe')"),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("onramps_user")
                    .table(Onramps::Table)
                    .col(Onramps::UserId)
                    .col(Onramps::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookInbox::Table)
                    .col(
                        ColumnDef::new(WebhookInbox::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(WebhookInbox::Provider)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookInbox::EventId)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookInbox::EventType)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(ColumnDef::new(WebhookInbox::Payload).text().not_null())
                    .col(
                        ColumnDef::new(WebhookInbox::ReceivedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookInbox::ProcessedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(WebhookInbox::Outcome).string_len(64).null())
                    .col(ColumnDef::new(WebhookInbox::Detail).text().null())
                    .col(
                        ColumnDef::new(WebhookInbox::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhook_inbox_provider_event")
                    .table(WebhookInbox::Table)
                    .col(WebhookInbox::Provider)
                    .col(WebhookInbox::EventId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhook_inbox_unprocessed")
                    .table(WebhookInbox::Table)
                    .col(WebhookInbox::ProcessedAt)
                    .col(WebhookInbox::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WebhookInbox::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Onramps::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(IdempotencyKeys::Table)
                    .drop_column(IdempotencyKeys::ClaimToken)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Onramps {
    Table,
    Id,
    UserId,
    AccountId,
    Provider,
    Amount,
    Currency,
    Status,
    RedirectUrl,
    ProviderReference,
    FailureCode,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookInbox {
    Table,
    Id,
    Provider,
    EventId,
    EventType,
    Payload,
    ReceivedAt,
    ProcessedAt,
    Outcome,
    Detail,
    Attempts,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    ClaimToken,
}

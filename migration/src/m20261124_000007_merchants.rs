//! Merchants: accounts with their own sessions and secret API keys; payment intents; holds on
//! wallets (the two-phase part of the ledger: a payment intent's authorisation, a payout's
//! locked funds); refunds; payouts; merchants' webhook endpoints with every delivery and every
//! attempt. Transfers gain a `kind` (p2p, payment, capture, refund) and the object they serve.
//!
//! CHECK constraints keep the money rules even if application code is wrong: a payment intent
//! never refunds more than it received nor receives more than its amount.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const ID_LENGTH: u32 = 64;

fn id(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .string_len(ID_LENGTH)
        .not_null()
        .to_owned()
}

fn id_null(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .string_len(ID_LENGTH)
        .null()
        .to_owned()
}

fn short(column: impl IntoIden, length: u32) -> ColumnDef {
    ColumnDef::new(column)
        .string_len(length)
        .not_null()
        .to_owned()
}

fn short_null(column: impl IntoIden, length: u32) -> ColumnDef {
    ColumnDef::new(column).string_len(length).null().to_owned()
}

fn text(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).text().not_null().to_owned()
}

fn text_null(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).text().null().to_owned()
}

fn money(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).big_integer().not_null().to_owned()
}

fn timestamp(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn timestamp_null(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

fn check(name: &str, condition: &str) -> (DynIden, Expr) {
    (
        Alias::new(name).into_iden(),
        Expr::cust(condition.to_owned()),
    )
}

fn index(name: &str, table: impl IntoIden, columns: &[&'static str]) -> IndexCreateStatement {
    let mut statement = Index::create();
    statement.name(name).table(table);
    for column in columns {
        statement.col(Alias::new(*column));
    }
    statement.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.create_table(merchants()).await?;
        manager.create_table(merchant_sessions()).await?;
        manager.create_table(api_keys()).await?;
        manager.create_table(payment_intents()).await?;
        manager.create_table(holds()).await?;
        manager.create_table(refunds()).await?;
        manager.create_table(payouts()).await?;
        manager.create_table(webhook_endpoints()).await?;
        manager.create_table(webhook_deliveries()).await?;
        manager.create_table(webhook_attempts()).await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Transfers::Table)
                    .add_column(short(Transfers::Kind, 16).default("p2p"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Transfers::Table)
                    .add_column(id_null(Transfers::ReferenceId))
                    .to_owned(),
            )
            .await?;
        for statement in [
            index("api_keys_merchant", ApiKeys::Table, &["merchant_id"]),
            index(
                "payment_intents_merchant",
                PaymentIntents::Table,
                &["merchant_id"],
            ),
            index(
                "payment_intents_customer",
                PaymentIntents::Table,
                &["customer_user_id"],
            ),
            index(
                "holds_status_expiry",
                Holds::Table,
                &["status", "expires_at"],
            ),
            index("holds_account", Holds::Table, &["account_id"]),
            index("refunds_merchant", Refunds::Table, &["merchant_id"]),
            index("refunds_intent", Refunds::Table, &["payment_intent_id"]),
            index("payouts_owner", Payouts::Table, &["owner_type", "owner_id"]),
            index("payouts_status", Payouts::Table, &["status"]),
            index(
                "webhook_endpoints_merchant",
                WebhookEndpoints::Table,
                &["merchant_id"],
            ),
            index(
                "webhook_deliveries_due",
                WebhookDeliveries::Table,
                &["status", "next_attempt_at"],
            ),
            index(
                "webhook_deliveries_endpoint",
                WebhookDeliveries::Table,
                &["endpoint_id"],
            ),
            index(
                "webhook_attempts_delivery",
                WebhookAttempts::Table,
                &["delivery_id"],
            ),
            index("transfers_kind", Transfers::Table, &["kind"]),
        ] {
            manager.create_index(statement).await?;
        }
        manager
            .create_index(
                index(
                    "webhook_deliveries_endpoint_event",
                    WebhookDeliveries::Table,
                    &["endpoint_id", "event_id"],
                )
                .unique()
                .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Transfers::ReferenceId, Transfers::Kind] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Transfers::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        for table in [
            WebhookAttempts::Table.into_iden(),
            WebhookDeliveries::Table.into_iden(),
            WebhookEndpoints::Table.into_iden(),
            Payouts::Table.into_iden(),
            Refunds::Table.into_iden(),
            Holds::Table.into_iden(),
            PaymentIntents::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            MerchantSessions::Table.into_iden(),
            Merchants::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

fn merchants() -> TableCreateStatement {
    Table::create()
        .table(Merchants::Table)
        .col(id(Merchants::Id).primary_key())
        .col(text(Merchants::Name))
        .col(short(Merchants::Email, 320).unique_key())
        .col(text(Merchants::PasswordHash))
        .col(timestamp(Merchants::CreatedAt))
        .to_owned()
}

fn merchant_sessions() -> TableCreateStatement {
    Table::create()
        .table(MerchantSessions::Table)
        .col(id(MerchantSessions::Id).primary_key())
        .col(id(MerchantSessions::TokenHash).unique_key())
        .col(id(MerchantSessions::MerchantId))
        .col(timestamp(MerchantSessions::ExpiresAt))
        .col(timestamp_null(MerchantSessions::RevokedAt))
        .col(timestamp(MerchantSessions::CreatedAt))
        .foreign_key(
            ForeignKey::create()
                .from(MerchantSessions::Table, MerchantSessions::MerchantId)
                .to(Merchants::Table, Merchants::Id),
        )
        .to_owned()
}

fn api_keys() -> TableCreateStatement {
    Table::create()
        .table(ApiKeys::Table)
        .col(id(ApiKeys::Id).primary_key())
        .col(id(ApiKeys::MerchantId))
        .col(id(ApiKeys::SecretHash).unique_key())
        .col(short(ApiKeys::Redacted, 32))
        .col(text_null(ApiKeys::Name))
        .col(timestamp(ApiKeys::CreatedAt))
        .col(timestamp_null(ApiKeys::LastUsedAt))
        .col(timestamp_null(ApiKeys::RevokedAt))
        .foreign_key(
            ForeignKey::create()
                .from(ApiKeys::Table, ApiKeys::MerchantId)
                .to(Merchants::Table, Merchants::Id),
        )
        .to_owned()
}

fn payment_intents() -> TableCreateStatement {
    Table::create()
        .table(PaymentIntents::Table)
        .col(id(PaymentIntents::Id).primary_key())
        .col(id(PaymentIntents::MerchantId))
        .col(money(PaymentIntents::Amount))
        .col(short(PaymentIntents::Currency, 3))
        .col(short(PaymentIntents::CaptureMethod, 16))
        .col(text_null(PaymentIntents::Description))
        .col(short(PaymentIntents::Status, 32))
        .col(id_null(PaymentIntents::CustomerUserId))
        .col(id_null(PaymentIntents::CustomerAccountId))
        .col(id_null(PaymentIntents::HoldId))
        .col(id_null(PaymentIntents::TransferId))
        .col(money(PaymentIntents::AmountCapturable).default(0))
        .col(money(PaymentIntents::AmountReceived).default(0))
        .col(money(PaymentIntents::AmountRefunded).default(0))
        .col(short_null(PaymentIntents::FailureCode, 64))
        .col(short_null(PaymentIntents::CancellationReason, 32))
        .col(timestamp_null(PaymentIntents::CanceledAt))
        .col(timestamp(PaymentIntents::CreatedAt))
        .col(timestamp(PaymentIntents::UpdatedAt))
        .foreign_key(
            ForeignKey::create()
                .from(PaymentIntents::Table, PaymentIntents::MerchantId)
                .to(Merchants::Table, Merchants::Id),
        )
        .check(check("payment_intents_amount_positive", "amount > 0"))
        .check(check(
            "payment_intents_status_known",
            "status IN ('requires_confirmation', 'processing', 'requires_capture', 'succeeded', 'canceled')",
        ))
        .check(check(
            "payment_intents_capture_method_known",
            "capture_method IN ('automatic', 'manual')",
        ))
        .check(check(
            "payment_intents_received_within_amount",
            "amount_received >= 0 AND amount_received <= amount",
        ))
        .check(check(
            "payment_intents_refunded_within_received",
            "amount_refunded >= 0 AND amount_refunded <= amount_received",
        ))
        .check(check(
            "payment_intents_capturable_within_amount",
            "amount_capturable >= 0 AND amount_capturable <= amount",
        ))
        .to_owned()
}

fn holds() -> TableCreateStatement {
    Table::create()
        .table(Holds::Table)
        .col(id(Holds::Id).primary_key())
        .col(id(Holds::AccountId))
        .col(money(Holds::Amount))
        .col(short(Holds::Currency, 3))
        .col(short(Holds::Status, 16))
        .col(ColumnDef::new(Holds::CapturedAmount).big_integer().null())
        .col(short(Holds::ReferenceType, 32))
        .col(id(Holds::ReferenceId))
        .col(timestamp_null(Holds::ExpiresAt))
        .col(timestamp_null(Holds::ResolvedAt))
        .col(timestamp(Holds::CreatedAt))
        .check(check("holds_amount_positive", "amount > 0"))
        .check(check(
            "holds_status_known",
            "status IN ('held', 'captured', 'voided', 'expired')",
        ))
        .check(check(
            "holds_captured_within_amount",
            "captured_amount IS NULL OR (captured_amount > 0 AND captured_amount <= amount)",
        ))
        .to_owned()
}

fn refunds() -> TableCreateStatement {
    Table::create()
        .table(Refunds::Table)
        .col(id(Refunds::Id).primary_key())
        .col(id(Refunds::MerchantId))
        .col(id(Refunds::PaymentIntentId))
        .col(id(Refunds::UserId))
        .col(money(Refunds::Amount))
        .col(short(Refunds::Currency, 3))
        .col(short(Refunds::Status, 16))
        .col(short_null(Refunds::FailureCode, 64))
        .col(timestamp(Refunds::CreatedAt))
        .col(timestamp(Refunds::UpdatedAt))
        .foreign_key(
            ForeignKey::create()
                .from(Refunds::Table, Refunds::PaymentIntentId)
                .to(PaymentIntents::Table, PaymentIntents::Id),
        )
        .check(check("refunds_amount_positive", "amount > 0"))
        .check(check(
            "refunds_status_known",
            "status IN ('pending', 'succeeded', 'failed')",
        ))
        .to_owned()
}

fn payouts() -> TableCreateStatement {
    Table::create()
        .table(Payouts::Table)
        .col(id(Payouts::Id).primary_key())
        .col(short(Payouts::OwnerType, 16))
        .col(id(Payouts::OwnerId))
        .col(id(Payouts::AccountId))
        .col(id(Payouts::HoldId))
        .col(money(Payouts::Amount))
        .col(short(Payouts::Currency, 3))
        .col(short(Payouts::Status, 16))
        .col(short_null(Payouts::BankReference, 128))
        .col(short_null(Payouts::FailureCode, 64))
        .col(timestamp(Payouts::CreatedAt))
        .col(timestamp(Payouts::UpdatedAt))
        .check(check("payouts_amount_positive", "amount > 0"))
        .check(check(
            "payouts_status_known",
            "status IN ('pending', 'in_transit', 'paid', 'failed')",
        ))
        .check(check(
            "payouts_owner_type_known",
            "owner_type IN ('user', 'merchant')",
        ))
        .to_owned()
}

fn webhook_endpoints() -> TableCreateStatement {
    Table::create()
        .table(WebhookEndpoints::Table)
        .col(id(WebhookEndpoints::Id).primary_key())
        .col(id(WebhookEndpoints::MerchantId))
        .col(text(WebhookEndpoints::Url))
        .col(text(WebhookEndpoints::Events))
        .col(text(WebhookEndpoints::Secret))
        .col(short(WebhookEndpoints::Status, 16))
        .col(text_null(WebhookEndpoints::DisabledReason))
        .col(timestamp(WebhookEndpoints::CreatedAt))
        .col(timestamp(WebhookEndpoints::UpdatedAt))
        .foreign_key(
            ForeignKey::create()
                .from(WebhookEndpoints::Table, WebhookEndpoints::MerchantId)
                .to(Merchants::Table, Merchants::Id),
        )
        .check(check(
            "webhook_endpoints_status_known",
            "status IN ('enabled', 'disabled')",
        ))
        .to_owned()
}

fn webhook_deliveries() -> TableCreateStatement {
    Table::create()
        .table(WebhookDeliveries::Table)
        .col(id(WebhookDeliveries::Id).primary_key())
        .col(id(WebhookDeliveries::EndpointId))
        .col(id(WebhookDeliveries::MerchantId))
        .col(id(WebhookDeliveries::EventId))
        .col(short(WebhookDeliveries::EventType, 64))
        .col(text(WebhookDeliveries::Payload))
        .col(short(WebhookDeliveries::Status, 16))
        .col(
            ColumnDef::new(WebhookDeliveries::Attempts)
                .integer()
                .not_null()
                .default(0),
        )
        .col(timestamp_null(WebhookDeliveries::NextAttemptAt))
        .col(
            ColumnDef::new(WebhookDeliveries::LastStatusCode)
                .integer()
                .null(),
        )
        .col(text_null(WebhookDeliveries::LastError))
        .col(timestamp(WebhookDeliveries::CreatedAt))
        .col(timestamp_null(WebhookDeliveries::DeliveredAt))
        .foreign_key(
            ForeignKey::create()
                .from(WebhookDeliveries::Table, WebhookDeliveries::EndpointId)
                .to(WebhookEndpoints::Table, WebhookEndpoints::Id),
        )
        .check(check(
            "webhook_deliveries_status_known",
            "status IN ('pending', 'succeeded', 'failed')",
        ))
        .to_owned()
}

fn webhook_attempts() -> TableCreateStatement {
    Table::create()
        .table(WebhookAttempts::Table)
        .col(id(WebhookAttempts::Id).primary_key())
        .col(id(WebhookAttempts::DeliveryId))
        .col(
            ColumnDef::new(WebhookAttempts::Attempt)
                .integer()
                .not_null(),
        )
        .col(ColumnDef::new(WebhookAttempts::StatusCode).integer().null())
        .col(money(WebhookAttempts::LatencyMs))
        .col(text_null(WebhookAttempts::Error))
        .col(short(WebhookAttempts::Trigger, 16))
        .col(timestamp(WebhookAttempts::CreatedAt))
        .foreign_key(
            ForeignKey::create()
                .from(WebhookAttempts::Table, WebhookAttempts::DeliveryId)
                .to(WebhookDeliveries::Table, WebhookDeliveries::Id),
        )
        .to_owned()
}

#[derive(DeriveIden)]
enum Merchants {
    Table,
    Id,
    Name,
    Email,
    PasswordHash,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MerchantSessions {
    Table,
    Id,
    TokenHash,
    MerchantId,
    ExpiresAt,
    RevokedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    MerchantId,
    SecretHash,
    Redacted,
    Name,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum PaymentIntents {
    Table,
    Id,
    MerchantId,
    Amount,
    Currency,
    CaptureMethod,
    Description,
    Status,
    CustomerUserId,
    CustomerAccountId,
    HoldId,
    TransferId,
    AmountCapturable,
    AmountReceived,
    AmountRefunded,
    FailureCode,
    CancellationReason,
    CanceledAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Holds {
    Table,
    Id,
    AccountId,
    Amount,
    Currency,
    Status,
    CapturedAmount,
    ReferenceType,
    ReferenceId,
    ExpiresAt,
    ResolvedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Refunds {
    Table,
    Id,
    MerchantId,
    PaymentIntentId,
    UserId,
    Amount,
    Currency,
    Status,
    FailureCode,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Payouts {
    Table,
    Id,
    OwnerType,
    OwnerId,
    AccountId,
    HoldId,
    Amount,
    Currency,
    Status,
    BankReference,
    FailureCode,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    Id,
    MerchantId,
    Url,
    Events,
    Secret,
    Status,
    DisabledReason,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    EndpointId,
    MerchantId,
    EventId,
    EventType,
    Payload,
    Status,
    Attempts,
    NextAttemptAt,
    LastStatusCode,
    LastError,
    CreatedAt,
    DeliveredAt,
}

#[derive(DeriveIden)]
enum WebhookAttempts {
    Table,
    Id,
    DeliveryId,
    Attempt,
    StatusCode,
    LatencyMs,
    Error,
    Trigger,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Transfers {
    Table,
    Kind,
    ReferenceId,
}

//! Contact verification (issue 12, item 9): when a user proved they receive mail at their
//! email and texts at their phone; the one-time codes that prove it (only their HMAC is
//! stored, with an expiry and an attempt count); and the SMS each user was sent per day, so
//! the daily SMS cap holds across restarts and nodes.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn timestamp_null(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

fn timestamp(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn short(column: impl IntoIden, length: u32) -> ColumnDef {
    ColumnDef::new(column)
        .string_len(length)
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per statement.
        for column in [Users::EmailVerifiedAt, Users::PhoneVerifiedAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .add_column(timestamp_null(column))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(ContactVerifications::Table)
                    .col(short(ContactVerifications::Id, 64).primary_key())
                    .col(short(ContactVerifications::UserId, 64))
                    .col(short(ContactVerifications::Channel, 16))
                    .col(short(ContactVerifications::Contact, 320))
                    .col(short(ContactVerifications::CodeHash, 64))
                    .col(
                        ColumnDef::new(ContactVerifications::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(timestamp(ContactVerifications::ExpiresAt))
                    .col(timestamp_null(ContactVerifications::ConsumedAt))
                    .col(timestamp(ContactVerifications::CreatedAt))
                    .check((
                        Alias::new("contact_verifications_channel").into_iden(),
                        Expr::cust("channel IN ('email', 'phone')"),
                    ))
                    .check((
                        Alias::new("contact_verifications_attempts").into_iden(),
                        Expr::cust("attempts >= 0"),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("contact_verifications_user_channel")
                    .table(ContactVerifications::Table)
                    .col(ContactVerifications::UserId)
                    .col(ContactVerifications::Channel)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SmsUsage::Table)
                    .col(short(SmsUsage::UserId, 64))
                    .col(short(SmsUsage::Day, 10))
                    .col(ColumnDef::new(SmsUsage::Sent).integer().not_null())
                    .primary_key(Index::create().col(SmsUsage::UserId).col(SmsUsage::Day))
                    .check((
                        Alias::new("sms_usage_sent").into_iden(),
                        Expr::cust("sent >= 0"),
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SmsUsage::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ContactVerifications::Table).to_owned())
            .await?;
        for column in [Users::EmailVerifiedAt, Users::PhoneVerifiedAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    EmailVerifiedAt,
    PhoneVerifiedAt,
}

#[derive(DeriveIden)]
enum ContactVerifications {
    Table,
    Id,
    UserId,
    Channel,
    Contact,
    CodeHash,
    Attempts,
    ExpiresAt,
    ConsumedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SmsUsage {
    Table,
    UserId,
    Day,
    Sent,
}

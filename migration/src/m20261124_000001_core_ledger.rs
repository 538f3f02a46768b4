//! The core ledger: users and sessions, accounts, journals and immutable entries, transfer
//! sagas, operator adjustments, idempotency keys and the transactional outbox.
//!
//! The CHECK constraints are the last line of defence: even if application code is wrong,
//! the database refuses a negative wallet balance or a non-positive movement.

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
        manager.create_table(users()).await?;
        manager.create_table(sessions()).await?;
        manager
            .create_index(index("sessions_user", Sessions::Table, &["user_id"]))
            .await?;
        manager.create_table(accounts()).await?;
        manager
            .create_index(
                index(
                    "accounts_owner_currency",
                    Accounts::Table,
                    &["owner_type", "owner_id", "currency"],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager.create_table(journals()).await?;
        manager.create_table(entries()).await?;
        manager
            .create_index(
                index(
                    "entries_account_op_key",
                    Entries::Table,
                    &["account_id", "op_key"],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "entries_account_id",
                Entries::Table,
                &["account_id", "id"],
            ))
            .await?;
        manager
            .create_index(index("entries_journal", Entries::Table, &["journal_id"]))
            .await?;
        manager.create_table(transfers()).await?;
        for (name, columns) in [
            ("transfers_from_user", ["from_user", "id"]),
            ("transfers_to_user", ["to_user", "id"]),
            ("transfers_state", ["state", "id"]),
        ] {
            manager
                .create_index(index(name, Transfers::Table, &columns))
                .await?;
        }
        manager.create_table(adjustments()).await?;
        manager.create_table(idempotency_keys()).await?;
        manager.create_table(outbox()).await?;
        manager
            .create_index(index(
                "outbox_unpublished",
                Outbox::Table,
                &["published_at", "id"],
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Outbox::Table.into_iden(),
            IdempotencyKeys::Table.into_iden(),
            Adjustments::Table.into_iden(),
            Transfers::Table.into_iden(),
            Entries::Table.into_iden(),
            Journals::Table.into_iden(),
            Accounts::Table.into_iden(),
            Sessions::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

fn users() -> TableCreateStatement {
    Table::create()
        .table(Users::Table)
        .col(id(Users::Id).primary_key())
        .col(
            ColumnDef::new(Users::Email)
                .string_len(320)
                .not_null()
                .unique_key(),
        )
        .col(
            ColumnDef::new(Users::Phone)
                .string_len(16)
                .not_null()
                .unique_key(),
        )
        .col(text(Users::Name))
        .col(text(Users::PasswordHash))
        .col(timestamp(Users::CreatedAt))
        .to_owned()
}

fn sessions() -> TableCreateStatement {
    Table::create()
        .table(Sessions::Table)
        .col(id(Sessions::Id).primary_key())
        .col(
            ColumnDef::new(Sessions::TokenHash)
                .string_len(ID_LENGTH)
                .not_null()
                .unique_key(),
        )
        .col(id(Sessions::UserId))
        .col(timestamp(Sessions::ExpiresAt))
        .col(timestamp_null(Sessions::RevokedAt))
        .col(timestamp(Sessions::CreatedAt))
        .foreign_key(
            ForeignKey::create()
                .from(Sessions::Table, Sessions::UserId)
                .to(Users::Table, Users::Id),
        )
        .to_owned()
}

fn accounts() -> TableCreateStatement {
    Table::create()
        .table(Accounts::Table)
        .col(id(Accounts::Id).primary_key())
        .col(
            ColumnDef::new(Accounts::OwnerType)
                .string_len(16)
                .not_null(),
        )
        .col(id(Accounts::OwnerId))
        .col(ColumnDef::new(Accounts::Currency).string_len(3).not_null())
        .col(money(Accounts::Available).default(0))
        .col(money(Accounts::Locked).default(0))
        .col(money(Accounts::Version).default(0))
        .col(timestamp(Accounts::CreatedAt))
        .check((
            Alias::new("accounts_wallet_available_non_negative"),
            Expr::cust("owner_type = 'system' OR available >= 0"),
        ))
        .check((
            Alias::new("accounts_locked_non_negative"),
            Expr::cust("locked >= 0"),
        ))
        .check((
            Alias::new("accounts_owner_type_known"),
            Expr::cust("owner_type IN ('user', 'merchant', 'system')"),
        ))
        .to_owned()
}

fn journals() -> TableCreateStatement {
    Table::create()
        .table(Journals::Table)
        .col(id(Journals::Id).primary_key())
        .col(ColumnDef::new(Journals::Kind).string_len(32).not_null())
        .col(
            ColumnDef::new(Journals::ReferenceType)
                .string_len(32)
                .not_null(),
        )
        .col(id(Journals::ReferenceId))
        .col(timestamp(Journals::CreatedAt))
        .to_owned()
}

fn entries() -> TableCreateStatement {
    Table::create()
        .table(Entries::Table)
        .col(id(Entries::Id).primary_key())
        .col(id(Entries::AccountId))
        .col(ColumnDef::new(Entries::OpKey).string_len(128).not_null())
        .col(ColumnDef::new(Entries::Bucket).string_len(16).not_null())
        .col(money(Entries::Amount))
        .col(money(Entries::BalanceAfter))
        .col(id(Entries::JournalId))
        .col(ColumnDef::new(Entries::Kind).string_len(32).not_null())
        .col(
            ColumnDef::new(Entries::ReferenceType)
                .string_len(32)
                .not_null(),
        )
        .col(id(Entries::ReferenceId))
        .col(timestamp(Entries::CreatedAt))
        .check((
            Alias::new("entries_amount_non_zero"),
            Expr::cust("amount <> 0"),
        ))
        .check((
            Alias::new("entries_bucket_known"),
            Expr::cust("bucket IN ('available', 'locked')"),
        ))
        .foreign_key(
            ForeignKey::create()
                .from(Entries::Table, Entries::AccountId)
                .to(Accounts::Table, Accounts::Id),
        )
        .foreign_key(
            ForeignKey::create()
                .from(Entries::Table, Entries::JournalId)
                .to(Journals::Table, Journals::Id),
        )
        .to_owned()
}

fn transfers() -> TableCreateStatement {
    Table::create()
        .table(Transfers::Table)
        .col(id(Transfers::Id).primary_key())
        .col(id(Transfers::FromUser))
        .col(id(Transfers::ToUser))
        .col(id(Transfers::SourceAccount))
        .col(id(Transfers::TargetAccount))
        .col(money(Transfers::Amount))
        .col(ColumnDef::new(Transfers::Currency).string_len(3).not_null())
        .col(text_null(Transfers::Note))
        .col(ColumnDef::new(Transfers::State).string_len(16).not_null())
        .col(ColumnDef::new(Transfers::FailureCode).string_len(64).null())
        .col(timestamp(Transfers::CreatedAt))
        .col(timestamp(Transfers::UpdatedAt))
        .check((
            Alias::new("transfers_amount_positive"),
            Expr::cust("amount > 0"),
        ))
        .check((
            Alias::new("transfers_state_known"),
            Expr::cust("state IN ('debited', 'completed', 'failed')"),
        ))
        .to_owned()
}

fn adjustments() -> TableCreateStatement {
    Table::create()
        .table(Adjustments::Table)
        .col(id(Adjustments::Id).primary_key())
        .col(id(Adjustments::AccountId))
        .col(money(Adjustments::Amount))
        .col(
            ColumnDef::new(Adjustments::Currency)
                .string_len(3)
                .not_null(),
        )
        .col(text(Adjustments::Reason))
        .col(text(Adjustments::Operator))
        .col(id(Adjustments::JournalId))
        .col(timestamp(Adjustments::CreatedAt))
        .check((
            Alias::new("adjustments_amount_non_zero"),
            Expr::cust("amount <> 0"),
        ))
        .to_owned()
}

fn idempotency_keys() -> TableCreateStatement {
    Table::create()
        .table(IdempotencyKeys::Table)
        .col(
            ColumnDef::new(IdempotencyKeys::Caller)
                .string_len(128)
                .not_null(),
        )
        .col(
            ColumnDef::new(IdempotencyKeys::Key)
                .string_len(255)
                .not_null(),
        )
        .col(
            ColumnDef::new(IdempotencyKeys::Fingerprint)
                .string_len(64)
                .not_null(),
        )
        .col(id(IdempotencyKeys::ResourceId))
        .col(
            ColumnDef::new(IdempotencyKeys::ResponseStatus)
                .integer()
                .null(),
        )
        .col(text_null(IdempotencyKeys::ResponseBody))
        .col(timestamp_null(IdempotencyKeys::LockedAt))
        .col(timestamp(IdempotencyKeys::CreatedAt))
        .primary_key(
            Index::create()
                .col(IdempotencyKeys::Caller)
                .col(IdempotencyKeys::Key),
        )
        .to_owned()
}

fn outbox() -> TableCreateStatement {
    Table::create()
        .table(Outbox::Table)
        .col(id(Outbox::Id).primary_key())
        .col(ColumnDef::new(Outbox::EventType).string_len(64).not_null())
        .col(
            ColumnDef::new(Outbox::AggregateType)
                .string_len(32)
                .not_null(),
        )
        .col(id(Outbox::AggregateId))
        .col(text(Outbox::Payload))
        .col(timestamp(Outbox::CreatedAt))
        .col(timestamp_null(Outbox::PublishedAt))
        .to_owned()
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    Phone,
    Name,
    PasswordHash,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    TokenHash,
    UserId,
    ExpiresAt,
    RevokedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    OwnerType,
    OwnerId,
    Currency,
    Available,
    Locked,
    Version,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Journals {
    Table,
    Id,
    Kind,
    ReferenceType,
    ReferenceId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Entries {
    Table,
    Id,
    AccountId,
    OpKey,
    Bucket,
    Amount,
    BalanceAfter,
    JournalId,
    Kind,
    ReferenceType,
    ReferenceId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Transfers {
    Table,
    Id,
    FromUser,
    ToUser,
    SourceAccount,
    TargetAccount,
    Amount,
    Currency,
    Note,
    State,
    FailureCode,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Adjustments {
    Table,
    Id,
    AccountId,
    Amount,
    Currency,
    Reason,
    Operator,
    JournalId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Caller,
    Key,
    Fingerprint,
    ResourceId,
    ResponseStatus,
    ResponseBody,
    LockedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    EventType,
    AggregateType,
    AggregateId,
    Payload,
    CreatedAt,
    PublishedAt,
}

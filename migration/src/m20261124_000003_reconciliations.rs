//! Reconciliation reports: what the reconciler checked, how long it took, and every
//! discrepancy it found (bounded), so operators can list and read past runs.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Reconciliations::Table)
                    .col(
                        ColumnDef::new(Reconciliations::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Reconciliations::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Reconciliations::Trigger)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Reconciliations::StartedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Reconciliations::FinishedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Reconciliations::DurationMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Reconciliations::Counts).text().not_null())
                    .col(
                        ColumnDef::new(Reconciliations::Discrepancies)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Reconciliations::DiscrepancyCount)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Reconciliations::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Reconciliations {
    Table,
    Id,
    Status,
    Trigger,
    StartedAt,
    FinishedAt,
    DurationMs,
    Counts,
    Discrepancies,
    DiscrepancyCount,
}

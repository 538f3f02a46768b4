//! Two index entries per ledger entry instead of four. Entries are written in the one
//! serial transaction every money movement waits for (the group commit), two per transfer, and
//! each index of `entries` is one more b-tree insertion (and WAL record) in it:
//! - `entries_journal (journal_id)` served no query: nothing reads entries by journal except
//!   the reconciler's check that every journal sums to zero, which reads all entries anyway;
//! - on PostgreSQL, `entries_pkey (id)` and `entries_account_id (account_id, id)` become one
//!   primary key `(account_id, id)`: entries are only ever read by account (the statement, the
//!   account's history, the op keys already applied), in id order; an entry's id is a UUID v7
//!   and stays unique on its own. SQLite cannot change a table's primary key without
//!   rebuilding the table, so there `entries_account_id` stays beside the key on `id`.
//!
//! On a large PostgreSQL ledger the new key is built while the table is locked (a
//! maintenance window's work, once).

use crate::execute_by_backend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP_POSTGRES: [&str; 4] = [
    "DROP INDEX entries_journal",
    "ALTER TABLE entries DROP CONSTRAINT entries_pkey",
    "DROP INDEX entries_account_id",
    "ALTER TABLE entries ADD CONSTRAINT entries_pkey PRIMARY KEY (account_id, id)",
];

const DOWN_POSTGRES: [&str; 4] = [
    "ALTER TABLE entries DROP CONSTRAINT entries_pkey",
    "ALTER TABLE entries ADD CONSTRAINT entries_pkey PRIMARY KEY (id)",
    "CREATE INDEX entries_account_id ON entries (account_id, id)",
    "CREATE INDEX entries_journal ON entries (journal_id)",
];

const UP_SQLITE: [&str; 1] = ["DROP INDEX entries_journal"];

const DOWN_SQLITE: [&str; 1] = ["CREATE INDEX entries_journal ON entries (journal_id)"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_by_backend(manager, &UP_POSTGRES, &UP_SQLITE).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_by_backend(manager, &DOWN_POSTGRES, &DOWN_SQLITE).await
    }
}

//! On PostgreSQL, `entries` loses its two foreign keys (`account_id` → `accounts`, `journal_id`
//! → `journals`). Each was an `AFTER INSERT` trigger per entry, run at the end of the group
//! commit's statement: a query through SPI that looks the key up and locks the row `FOR KEY
//! SHARE` (a WAL record of its own for each account and journal). Two entries per transfer made
//! four such queries in the one serial transaction every money movement waits for; they were
//! 11–12 % of PostgreSQL's CPU under uniform load (`perf record` of the postgres processes) and
//! PostgreSQL's CPU per transfer went from 273, 250 to 221, 222 µs without them.
//!
//! What they guarded is guarded where entries are written (`store::ledger`,
//! `store::group_commit`): an entry is only ever inserted in the transaction that moves its
//! account's balance, by a version-checked update of a wallet's account or a counted update of
//! a system account (a missing account fails the batch). A movement that opens a journal
//! inserts it in the same transaction as its entries; the only movements that write into a
//! journal opened earlier are a transfer's credit and refund steps, and those commit only if
//! the transfer is still `debited`, a row inserted with the journal by the debit. Accounts and
//! journals are never deleted. The reconciler proves it after the fact: an entry whose account
//! or journal does not exist is an `orphan_entry` discrepancy.
//!
//! Going down adds the keys back `NOT VALID` and then validates them: the validation reads
//! `entries` without blocking its writers (and fails on an orphan entry).
//!
//! SQLite keeps them: its checks are in-process index probes that cost nothing measurable
//! (2,404 and 2,314 transfers/s with them, 2,333 and 2,424 without, same runs), and dropping a
//! foreign key there means rebuilding the table.

use crate::execute_by_backend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP_POSTGRES: [&str; 2] = [
    "ALTER TABLE entries DROP CONSTRAINT entries_account_id_fkey",
    "ALTER TABLE entries DROP CONSTRAINT entries_journal_id_fkey",
];

const DOWN_POSTGRES: [&str; 4] = [
    "ALTER TABLE entries ADD CONSTRAINT entries_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts (id) NOT VALID",
    "ALTER TABLE entries ADD CONSTRAINT entries_journal_id_fkey FOREIGN KEY (journal_id) REFERENCES journals (id) NOT VALID",
    "ALTER TABLE entries VALIDATE CONSTRAINT entries_account_id_fkey",
    "ALTER TABLE entries VALIDATE CONSTRAINT entries_journal_id_fkey",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_by_backend(manager, &UP_POSTGRES, &[]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_by_backend(manager, &DOWN_POSTGRES, &[]).await
    }
}

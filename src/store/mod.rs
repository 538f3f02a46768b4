//! Persistence through SeaORM, one schema for SQLite (embedded default) and PostgreSQL.
//! Each submodule owns the queries of one part of the model; every money movement is written
//! by `ledger::commit_batch`, in one transaction together with its saga state and outbox rows.
//!
//! SQLite allows one writer at a time, so on SQLite all writes go through a pool of exactly one
//! connection (WAL mode, busy timeout) while reads use a separate pool; on PostgreSQL both
//! handles are the same pool.

pub mod accounts;
mod bulk;
pub mod cache;
pub mod entities;
pub mod group_commit;
pub mod idempotency;
pub mod ledger;
pub mod merchant_webhooks;
pub mod merchants;
pub mod notifications;
pub mod onramps;
pub mod payments;
pub mod reconciliation;
pub mod transfers;
pub mod users;
pub mod verifications;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend, DbErr, SqlErr};
use std::time::Duration;

/// Connections in the PostgreSQL pool and in SQLite's read pool.
const POOL_CONNECTIONS_MAX: u32 = 16;
const SQLITE_BUSY_TIMEOUT_MS: u64 = 10_000;
const ACQUIRE_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    /// The row changed under us (optimistic version check failed, or a saga moved on).
    #[error("concurrent modification: {0}")]
    Conflict(String),
    /// Data read back breaks an invariant the code relies on.
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(error) if is_unique_violation(error))
    }
}

pub fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Handles to the database: `writer` for transactions, `reader` for queries, and the node's
/// caches of what never changes behind its back (`cache`).
#[derive(Debug, Clone)]
pub struct Store {
    writer: DatabaseConnection,
    reader: DatabaseConnection,
    caches: std::sync::Arc<cache::Caches>,
}

impl Store {
    pub async fn connect(database_url: &str) -> anyhow::Result<Store> {
        if database_url.starts_with("sqlite:") {
            let writer = connect_sqlite(database_url, 1).await?;
            let reader = connect_sqlite(database_url, POOL_CONNECTIONS_MAX).await?;
            return Ok(Store {
                writer,
                reader,
                caches: std::sync::Arc::default(),
            });
        }
        let mut options = ConnectOptions::new(database_url);
        options
            .max_connections(POOL_CONNECTIONS_MAX)
            .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
            .sqlx_logging(false);
        let pool = Database::connect(options)
            .await
            .with_context(|| format!("connect to {}", redact(database_url)))?;
        Ok(Store {
            writer: pool.clone(),
            reader: pool,
            caches: std::sync::Arc::default(),
        })
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        Migrator::up(&self.writer, None)
            .await
            .context("run database migrations")
    }

    pub async fn ping(&self) -> StoreResult<()> {
        self.reader.ping().await?;
        Ok(())
    }

    pub fn backend(&self) -> DbBackend {
        self.writer.get_database_backend()
    }

    pub fn writer(&self) -> &DatabaseConnection {
        &self.writer
    }

    pub fn reader(&self) -> &DatabaseConnection {
        &self.reader
    }

    pub fn caches(&self) -> &cache::Caches {
        &self.caches
    }
}

async fn connect_sqlite(
    database_url: &str,
    connections: u32,
) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(database_url);
    options
        .max_connections(connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|options| {
            options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit that was acknowledged survives a power cut, not only a crash.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_millis(SQLITE_BUSY_TIMEOUT_MS))
                .foreign_keys(true)
        });
    Database::connect(options)
        .await
        .with_context(|| format!("open SQLite database {database_url}"))
}

/// Hides a password in a database URL before it reaches a log line.
pub fn redact(database_url: &str) -> String {
    match (database_url.find("://"), database_url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &database_url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!(
                    "{}{}:***{}",
                    &database_url[..scheme_end + 3],
                    user,
                    &database_url[at..]
                ),
                None => database_url.to_owned(),
            }
        }
        _ => database_url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://walleti:secret@db:5432/walleti"),
            "postgres://walleti:***@db:5432/walleti"
        );
        assert_eq!(
            super::redact("sqlite://walleti.db?mode=rwc"),
            "sqlite://walleti.db?mode=rwc"
        );
    }
}

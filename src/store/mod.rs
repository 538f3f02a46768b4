//! Persistence through SeaORM, one schema for SQLite (embedded default) and PostgreSQL.
//! Each submodule owns the queries of one part of the model; every money movement is written
//! by the ledger (`ledger`, `group_commit`), in one transaction together with its saga state and outbox rows.
//!
//! SQLite allows one writer at a time, so on SQLite all writes go through a pool of exactly one
//! connection (WAL mode, busy timeout) while reads use a separate pool; on PostgreSQL both
//! handles are the same pool.
//!
//! On SQLite the WAL is checkpointed (copied into the database file) by a background task on a
//! read connection (`Checkpointer`), not by the writer's commit that happens to cross SQLite's
//! threshold: the writer then spends its time on commits only, and the copying runs beside it
//! on the other core. Under a steady stream of commits a passive checkpoint never catches the
//! WAL's end, so the WAL grows until the writer's own threshold (10,000 pages, ~40 MiB), where
//! the writer checkpoints what little is left and starts the WAL over (+10–20 % transfers/s
//! measured against SQLite's default threshold of 1,000 pages checkpointed by the writer).

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
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, SqlErr,
};
use std::time::Duration;

/// Connections in the PostgreSQL pool and in SQLite's read pool.
const POOL_CONNECTIONS_MAX: u32 = 16;
const SQLITE_BUSY_TIMEOUT_MS: u64 = 10_000;
/// How often the background checkpointer copies the WAL into the SQLite database file.
const SQLITE_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);
/// WAL pages after which the SQLite writer checkpoints itself after all: a backstop for a
/// process without the background checkpointer running (SQLite's default is 1,000).
const SQLITE_WRITER_AUTOCHECKPOINT_PAGES: u32 = 10_000;
const ACQUIRE_TIMEOUT_MS: u64 = 10_000;
/// A PostgreSQL connection idle at least this long is pinged before the pool hands it out.
/// One that broke in busier use fails its statement, which is then handled as any lost
/// connection (the ledger writer's group: outcome unknown, its wallets reload, retries replay).
const POOL_TEST_IDLE_FOR: Duration = Duration::from_secs(1);

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
    /// SQLite's background checkpointer; it stops when the last handle is dropped.
    _checkpointer: Option<std::sync::Arc<Checkpointer>>,
}

/// Runs `PRAGMA wal_checkpoint(PASSIVE)` every `SQLITE_CHECKPOINT_INTERVAL` on a read
/// connection. PASSIVE copies what it can without waiting for readers or the writer, so it never
/// blocks a commit; once a pass has copied every frame, the writer's next transaction starts the
/// WAL over from its beginning, so the file stays small while the checkpointer keeps up.
#[derive(Debug)]
struct Checkpointer(tokio::task::JoinHandle<()>);

impl Checkpointer {
    fn spawn(reader: DatabaseConnection) -> Checkpointer {
        Checkpointer(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(SQLITE_CHECKPOINT_INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(error) = reader
                    .execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)")
                    .await
                {
                    tracing::warn!(%error, "SQLite WAL checkpoint failed; retrying");
                }
            }
        }))
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Store {
    pub async fn connect(database_url: &str) -> anyhow::Result<Store> {
        if database_url.starts_with("sqlite:") {
            let writer =
                connect_sqlite(database_url, 1, SQLITE_WRITER_AUTOCHECKPOINT_PAGES).await?;
            // Readers never write, so their own threshold never fires; SQLite's default.
            let reader = connect_sqlite(database_url, POOL_CONNECTIONS_MAX, 1_000).await?;
            let checkpointer = Checkpointer::spawn(reader.clone());
            return Ok(Store {
                writer,
                reader,
                caches: std::sync::Arc::default(),
                _checkpointer: Some(std::sync::Arc::new(checkpointer)),
            });
        }
        let database_url = plain_on_loopback(database_url);
        let mut options = ConnectOptions::new(database_url.as_str());
        options
            .max_connections(POOL_CONNECTIONS_MAX)
            .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
            .sqlx_logging(false)
            // Only a connection idle for a while is pinged before use: a dropped one is
            // replaced unnoticed; a busy one (the ledger writer's, under load) is spared a
            // round trip every group waited for. +13–15 % uniform, +9 % hot (docs/performance.md).
            .test_before_acquire_if_idle_for(POOL_TEST_IDLE_FOR);
        let pool = Database::connect(options)
            .await
            .with_context(|| format!("connect to {}", redact(&database_url)))?;
        Ok(Store {
            writer: pool.clone(),
            reader: pool,
            caches: std::sync::Arc::default(),
            _checkpointer: None,
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
    autocheckpoint_pages: u32,
) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(database_url);
    options
        .max_connections(connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(move |options| {
            options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit that was acknowledged survives a power cut, not only a crash.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_millis(SQLITE_BUSY_TIMEOUT_MS))
                .foreign_keys(true)
                .pragma("wal_autocheckpoint", autocheckpoint_pages.to_string())
                // Statement journals in memory: a multi-row statement that may fail halfway
                // keeps the pages it changed in a statement journal, which spills past 64 KiB
                // into a temporary file (created, written, deleted per statement): a group's
                // statements spilled nearly every time. +14–17 % transfers/s measured.
                .pragma("temp_store", "MEMORY")
        });
    Database::connect(options)
        .await
        .with_context(|| format!("open SQLite database {database_url}"))
}

/// Hides a password in a database URL before it reaches a log line.
/// A PostgreSQL URL to a loopback address that does not choose an `sslmode` gets
/// `sslmode=disable`. The driver's default (`prefer`) would negotiate TLS with a local server,
/// which protects nothing (the bytes never leave the kernel) and costs dearly: the driver (sqlx
/// 0.9.0, which leaves Nagle's algorithm on; fixed upstream in sqlx PR #4336, not yet released)
/// writes each 16 KiB TLS record with its own `send`, and on loopback each record is one
/// sub-MSS segment that waits for the server's delayed ACK, up to 40 ms per large statement: it
/// halved group-commit throughput. Any explicit `sslmode` is kept as given.
fn plain_on_loopback(database_url: &str) -> String {
    let Ok(parsed) = url::Url::parse(database_url) else {
        return database_url.to_owned();
    };
    let loopback = match parsed.host() {
        // Hosts of a `postgres:` URL stay opaque names: an address is parsed here.
        Some(url::Host::Domain(domain)) => {
            domain.eq_ignore_ascii_case("localhost")
                || domain
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|address| address.is_loopback())
        }
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        None => false,
    };
    let postgres = matches!(parsed.scheme(), "postgres" | "postgresql");
    let chosen = parsed.query_pairs().any(|(name, _)| name == "sslmode");
    if !postgres || !loopback || chosen {
        return database_url.to_owned();
    }
    let mut plain = parsed;
    plain.query_pairs_mut().append_pair("sslmode", "disable");
    plain.into()
}

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
    /// The WAL reaches the SQLite database file without any writer crossing its threshold:
    /// the background checkpointer copies it.
    #[tokio::test]
    async fn the_sqlite_wal_is_checkpointed_in_the_background() {
        use sea_orm::ConnectionTrait;
        let directory = std::env::temp_dir().join(format!(
            "walleti_checkpoint_{}",
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&directory).expect("directory");
        let file = directory.join("wal.db");
        let store = super::Store::connect(&format!("sqlite://{}?mode=rwc", file.display()))
            .await
            .expect("store");
        store
            .writer()
            .execute_unprepared("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
            .await
            .expect("create");
        // Let the checkpointer catch up with the table, then measure the database file.
        tokio::time::sleep(super::SQLITE_CHECKPOINT_INTERVAL * 3).await;
        let size = || std::fs::metadata(&file).map(|meta| meta.len()).unwrap_or(0);
        let before = size();
        // ~2 MiB: far below the writer's own threshold (10,000 pages, ~40 MiB).
        for _ in 0..20 {
            store
                .writer()
                .execute_unprepared(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
                     INSERT INTO t (body) SELECT printf('%.1000c', 'x') FROM n",
                )
                .await
                .expect("insert");
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while size() < before + 1_000_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {} bytes: nothing checkpointed the WAL",
                size()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&directory);
    }

    /// The writer keeps statement journals in memory (`temp_store = MEMORY`, reported as 2).
    #[tokio::test]
    async fn sqlite_connections_keep_temporary_data_in_memory() {
        use sea_orm::ConnectionTrait;
        let store = super::Store::connect("sqlite::memory:")
            .await
            .expect("store");
        for connection in [store.writer(), store.reader()] {
            let row = connection
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Sqlite,
                    "PRAGMA temp_store",
                ))
                .await
                .expect("pragma")
                .expect("a row");
            let value: i32 = row.try_get_by_index(0).expect("temp_store");
            assert_eq!(value, 2, "temp_store is not MEMORY");
        }
    }

    #[test]
    fn a_loopback_postgres_url_without_sslmode_connects_in_plain_text() {
        use super::plain_on_loopback;
        assert_eq!(
            plain_on_loopback("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
        );
        assert_eq!(
            plain_on_loopback("postgresql://u:p@localhost/db?application_name=w"),
            "postgresql://u:p@localhost/db?application_name=w&sslmode=disable"
        );
        assert_eq!(
            plain_on_loopback("postgres://u@[::1]/db"),
            "postgres://u@[::1]/db?sslmode=disable"
        );
        // An explicit choice, a remote server and SQLite are left alone.
        for kept in [
            "postgres://u@127.0.0.1/db?sslmode=require",
            "postgres://u@db.example.com/db",
            "postgres://u@10.0.0.5/db",
            "sqlite://walleti.db?mode=rwc",
        ] {
            assert_eq!(plain_on_loopback(kept), kept);
        }
    }

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

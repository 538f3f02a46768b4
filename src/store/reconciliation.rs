//! The reconciler's queries. Each check lets the database aggregate and returns only what is
//! wrong (bounded), or walks a table in keyset pages, so a run never loads whole tables.
//! The SQL is shared by both backends (`$n` placeholders become `?` on SQLite).

use super::accounts::{PageRequest, fetch_page};
use super::entities::{onramps, payouts, reconciliations};
use super::{Store, StoreResult};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, Value,
};

/// Accounts aggregated per page when comparing balances with their entries.
pub const ACCOUNTS_PAGE_SIZE: u64 = 500;
/// At most this many offending rows are read per check.
pub const FINDINGS_PER_CHECK_MAX: u64 = 1_000;

/// An account whose stored balance differs from the sum of its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceMismatch {
    pub account_id: String,
    pub available: i64,
    pub locked: i64,
    pub entries_available: i64,
    pub entries_locked: i64,
}

/// An entry pointing at an account or a journal that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanEntry {
    pub entry_id: String,
    pub missing_account: Option<String>,
    pub missing_journal: Option<String>,
}

/// A stored reconciliation run.
#[derive(Debug, Clone)]
pub struct ReconciliationRow {
    pub id: String,
    pub status: String,
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub counts: serde_json::Value,
    pub discrepancies: serde_json::Value,
    pub discrepancy_count: i64,
}

impl From<reconciliations::Model> for ReconciliationRow {
    fn from(row: reconciliations::Model) -> ReconciliationRow {
        ReconciliationRow {
            id: row.id,
            status: row.status,
            trigger: row.trigger,
            started_at: row.started_at,
            finished_at: row.finished_at,
            duration_ms: row.duration_ms,
            counts: serde_json::from_str(&row.counts).unwrap_or_default(),
            discrepancies: serde_json::from_str(&row.discrepancies).unwrap_or_default(),
            discrepancy_count: row.discrepancy_count,
        }
    }
}

fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = match backend {
        DbBackend::Sqlite => {
            let mut converted = sql.to_owned();
            for index in (1..=values.len()).rev() {
                converted = converted.replace(&format!("${index}"), "?");
            }
            converted
        }
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

impl Store {
    /// One page of accounts (ids after `after`) whose balances differ from their entries.
    /// Returns the mismatches and the last account id of the page (`None`: no more pages).
    pub async fn balance_mismatches_page(
        &self,
        after: &str,
    ) -> StoreResult<(Vec<BalanceMismatch>, Option<String>)> {
        let sql = "SELECT a.id AS id, a.available AS available, a.locked AS locked, \
             CAST(COALESCE(SUM(CASE WHEN e.bucket = 'available' THEN e.amount ELSE 0 END), 0) AS BIGINT) AS entries_available, \
             CAST(COALESCE(SUM(CASE WHEN e.bucket = 'locked' THEN e.amount ELSE 0 END), 0) AS BIGINT) AS entries_locked \
             FROM accounts a LEFT JOIN entries e ON e.account_id = a.id \
             WHERE a.id > $1 GROUP BY a.id, a.available, a.locked ORDER BY a.id LIMIT $2";
        let rows = self
            .reader()
            .query_all_raw(statement(
                self.backend(),
                sql,
                vec![after.into(), (ACCOUNTS_PAGE_SIZE as i64).into()],
            ))
            .await?;
        let last = if rows.len() as u64 == ACCOUNTS_PAGE_SIZE {
            rows.last()
                .map(|row| row.try_get::<String>("", "id"))
                .transpose()?
        } else {
            None
        };
        let mut mismatches = Vec::new();
        for row in rows {
            let mismatch = BalanceMismatch {
                account_id: row.try_get("", "id")?,
                available: row.try_get("", "available")?,
                locked: row.try_get("", "locked")?,
                entries_available: row.try_get("", "entries_available")?,
                entries_locked: row.try_get("", "entries_locked")?,
            };
            if mismatch.available != mismatch.entries_available
                || mismatch.locked != mismatch.entries_locked
            {
                mismatches.push(mismatch);
            }
        }
        Ok((mismatches, last))
    }

    /// Journals of finished movements whose entries do not sum to zero (transfers still in
    /// flight are excluded: their amount is legitimately between accounts).
    pub async fn unbalanced_journals(&self) -> StoreResult<Vec<(String, i64)>> {
        let sql = "SELECT e.journal_id AS journal_id, CAST(SUM(e.amount) AS BIGINT) AS total FROM entries e \
             WHERE e.journal_id NOT IN (SELECT t.id FROM transfers t WHERE t.state = 'debited') \
             GROUP BY e.journal_id HAVING SUM(e.amount) <> 0 ORDER BY e.journal_id LIMIT $1";
        let rows = self
            .reader()
            .query_all_raw(statement(
                self.backend(),
                sql,
                vec![(FINDINGS_PER_CHECK_MAX as i64).into()],
            ))
            .await?;
        rows.into_iter()
            .map(|row| Ok((row.try_get("", "journal_id")?, row.try_get("", "total")?)))
            .collect()
    }

    /// Entries whose account or journal does not exist (on PostgreSQL no foreign key refuses
    /// them: the writer guards them, migration `entries_checked_by_the_writer`), with the ids
    /// that are missing (`None`: that one exists).
    pub async fn orphan_entries(&self) -> StoreResult<Vec<OrphanEntry>> {
        let sql = "SELECT e.id AS id, \
             CASE WHEN a.id IS NULL THEN e.account_id END AS missing_account, \
             CASE WHEN j.id IS NULL THEN e.journal_id END AS missing_journal \
             FROM entries e LEFT JOIN accounts a ON a.id = e.account_id \
             LEFT JOIN journals j ON j.id = e.journal_id \
             WHERE a.id IS NULL OR j.id IS NULL ORDER BY e.id LIMIT $1";
        let rows = self
            .reader()
            .query_all_raw(statement(
                self.backend(),
                sql,
                vec![(FINDINGS_PER_CHECK_MAX as i64).into()],
            ))
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(OrphanEntry {
                    entry_id: row.try_get("", "id")?,
                    missing_account: row.try_get("", "missing_account")?,
                    missing_journal: row.try_get("", "missing_journal")?,
                })
            })
            .collect()
    }

    /// Per currency: Σ of every account (wallets and system accounts) and Σ in flight.
    pub async fn ledger_totals(&self) -> StoreResult<Vec<(String, i64, i64)>> {
        let accounts = self
            .reader()
            .query_all_raw(statement(
                self.backend(),
                "SELECT currency, CAST(SUM(available + locked) AS BIGINT) AS total FROM accounts GROUP BY currency",
                vec![],
            ))
            .await?;
        let in_flight = self
            .reader()
            .query_all_raw(statement(
                self.backend(),
                "SELECT currency, CAST(SUM(amount) AS BIGINT) AS total FROM transfers WHERE state = 'debited' GROUP BY currency",
                vec![],
            ))
            .await?;
        let mut in_flight_by_currency = std::collections::HashMap::new();
        for row in in_flight {
            in_flight_by_currency.insert(
                row.try_get::<String>("", "currency")?,
                row.try_get::<i64>("", "total")?,
            );
        }
        accounts
            .into_iter()
            .map(|row| {
                let currency: String = row.try_get("", "currency")?;
                let total: i64 = row.try_get("", "total")?;
                let flying = in_flight_by_currency.get(&currency).copied().unwrap_or(0);
                Ok((currency, total, flying))
            })
            .collect()
    }

    /// Σ of wallet balances (not system accounts) per currency, for the ledger metrics.
    pub async fn wallet_totals(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows = self
            .reader()
            .query_all_raw(statement(
                self.backend(),
                "SELECT currency, CAST(SUM(available + locked) AS BIGINT) AS total FROM accounts \
                 WHERE owner_type <> 'system' GROUP BY currency",
                vec![],
            ))
            .await?;
        rows.into_iter()
            .map(|row| Ok((row.try_get("", "currency")?, row.try_get("", "total")?)))
            .collect()
    }

    /// Transfer sagas per state.
    pub async fn saga_counts(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows = self
            .reader()
            .query_all_raw(statement(
                self.backend(),
                "SELECT state, CAST(COUNT(*) AS BIGINT) AS total FROM transfers GROUP BY state",
                vec![],
            ))
            .await?;
        rows.into_iter()
            .map(|row| Ok((row.try_get("", "state")?, row.try_get("", "total")?)))
            .collect()
    }

    /// Wallets with a negative bucket (the CHECK constraints should make this impossible).
    pub async fn negative_wallets(&self) -> StoreResult<Vec<(String, i64, i64)>> {
        let rows = self
            .reader()
            .query_all_raw(statement(
                self.backend(),
                "SELECT id, available, locked FROM accounts WHERE owner_type <> 'system' \
                 AND (available < 0 OR locked < 0) ORDER BY id LIMIT $1",
                vec![(FINDINGS_PER_CHECK_MAX as i64).into()],
            ))
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok((
                    row.try_get("", "id")?,
                    row.try_get("", "available")?,
                    row.try_get("", "locked")?,
                ))
            })
            .collect()
    }

    /// Holds whose locked entries disagree with their state: a hold still `held` must have
    /// its whole amount locked, a resolved one nothing (a hold resolved twice would show
    /// minus its amount, one never resolved its amount). Returns (hold, status, amount, net).
    pub async fn hold_mismatches(&self) -> StoreResult<Vec<(String, String, i64, i64)>> {
        let rows = self
            .reader()
            .query_all_raw(statement(
                self.backend(),
                "SELECT h.id, h.status, h.amount,                  CAST(COALESCE(SUM(e.amount), 0) AS BIGINT) AS locked_net                  FROM holds h LEFT JOIN entries e ON e.account_id = h.account_id                  AND e.reference_id = h.reference_id AND e.bucket = 'locked'                  GROUP BY h.id, h.status, h.amount                  HAVING COALESCE(SUM(e.amount), 0) <>                  CASE WHEN h.status = 'held' THEN h.amount ELSE 0 END                  ORDER BY h.id LIMIT $1",
                vec![(FINDINGS_PER_CHECK_MAX as i64).into()],
            ))
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok((
                    row.try_get("", "id")?,
                    row.try_get("", "status")?,
                    row.try_get("", "amount")?,
                    row.try_get("", "locked_net")?,
                ))
            })
            .collect()
    }

    /// One keyset page of a provider's on-ramps created since `since`, oldest first.
    pub async fn onramps_page(
        &self,
        provider: &str,
        since: DateTime<Utc>,
        after: &str,
    ) -> StoreResult<Vec<onramps::Model>> {
        Ok(onramps::Entity::find()
            .filter(onramps::Column::Provider.eq(provider))
            .filter(onramps::Column::CreatedAt.gte(since))
            .filter(onramps::Column::Id.gt(after))
            .order_by_asc(onramps::Column::Id)
            .limit(ACCOUNTS_PAGE_SIZE)
            .all(self.reader())
            .await?)
    }

    /// One keyset page of the payouts created since `since`, oldest first.
    pub async fn payouts_page(
        &self,
        since: DateTime<Utc>,
        after: &str,
    ) -> StoreResult<Vec<payouts::Model>> {
        Ok(payouts::Entity::find()
            .filter(payouts::Column::CreatedAt.gte(since))
            .filter(payouts::Column::Id.gt(after))
            .order_by_asc(payouts::Column::Id)
            .limit(ACCOUNTS_PAGE_SIZE)
            .all(self.reader())
            .await?)
    }

    pub async fn save_reconciliation(&self, row: &ReconciliationRow) -> StoreResult<()> {
        reconciliations::Entity::insert(reconciliations::ActiveModel {
            id: Set(row.id.clone()),
            status: Set(row.status.clone()),
            trigger: Set(row.trigger.clone()),
            started_at: Set(row.started_at),
            finished_at: Set(row.finished_at),
            duration_ms: Set(row.duration_ms),
            counts: Set(row.counts.to_string()),
            discrepancies: Set(row.discrepancies.to_string()),
            discrepancy_count: Set(row.discrepancy_count),
        })
        .exec_without_returning(self.writer())
        .await?;
        Ok(())
    }

    pub async fn find_reconciliation(&self, id: &str) -> StoreResult<Option<ReconciliationRow>> {
        Ok(reconciliations::Entity::find_by_id(id.to_owned())
            .one(self.reader())
            .await?
            .map(ReconciliationRow::from))
    }

    pub async fn list_reconciliations(
        &self,
        page: &PageRequest,
    ) -> StoreResult<(Vec<ReconciliationRow>, bool)> {
        let (rows, has_more) = fetch_page(
            reconciliations::Entity::find(),
            reconciliations::Column::Id,
            page,
            self.reader(),
        )
        .await?;
        Ok((
            rows.into_iter().map(ReconciliationRow::from).collect(),
            has_more,
        ))
    }
}

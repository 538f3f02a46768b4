//! Group commit: the planned batches of many wallets committed as ONE transaction of
//! multi-row statements (the `LedgerWriter` actor decides what goes into a group).
//!
//! The combined path writes every batch at once. On PostgreSQL it is ONE statement of
//! data-modifying CTEs (`commit_in_one_statement`: the idempotency claims, the wallets' balances
//! with one version-checked `UPDATE … FROM (unnest …) RETURNING`, journals, entries, P2P
//! transfers, outbox events, the stored idempotency responses and the guarded P2P completions,
//! each counted), then the system counterparts; a claim held by another request (a unique
//! violation: the claims are plain inserts there) or a stale account (a count) fails the
//! statement and the group goes the savepoint way below. On SQLite the statements go
//! one after the other: claims first, then balances; a batch whose claim was lost or whose
//! account version is stale is left out of the group (only it fails; if it won an idempotency
//! claim, the group goes the savepoint way so that the claim goes with it). Any other failure (a
//! unique op key hit by a replay that was not marked as one, a saga guard that matched nothing)
//! rolls the combined transaction back and the group is committed again with one savepoint per
//! batch, so that only the offending batch fails.

use super::bulk::{SqlType, Writes, execute_alone, id_in, row_sources};
use super::entities::transfers;
use super::idempotency::{
    AnsweredClaim, ClaimRow, ClaimTaken, CompletionRow, claim_statements, completion_statements,
    insert_claims,
};
use super::ledger::{
    AccountWrite, AppliedMovement, Effect, JOURNALS_CONFLICT, entry_rows, event_row, journal_rows,
    transfer_event, write_batch, write_counterparts, write_effect,
};
use super::notifications::{NotifyInline, inline_notification_rows};
use super::transfers::TransferRecord;
use super::{Store, StoreError, StoreResult};
use crate::domain::{TransferId, TransferKind, TransferState};
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Statement, TransactionTrait};
use sea_orm::{DbErr, RuntimeErr};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One wallet's planned batch: its account's new state and the movements to write.
#[derive(Debug, Clone)]
pub struct PlannedBatch {
    pub account: AccountWrite,
    pub movements: Vec<AppliedMovement>,
}

impl PlannedBatch {
    /// The idempotency claims this batch writes.
    pub fn claims(&self) -> impl Iterator<Item = &ClaimRow> {
        self.movements
            .iter()
            .filter_map(|movement| movement.idempotency.claim())
    }

    /// A cheap upper estimate of what the batch's rows weigh, for bounding a group.
    pub fn approximate_bytes(&self) -> usize {
        const ROW_OVERHEAD_BYTES: usize = 256;
        let movements: usize = self
            .movements
            .iter()
            .map(|movement| {
                let note = match &movement.effect {
                    Effect::OpenTransfer(transfer) | Effect::CompleteTransfer(transfer) => {
                        transfer.note.as_ref().map_or(0, String::len)
                    }
                    _ => 0,
                };
                ROW_OVERHEAD_BYTES * (2 + movement.postings.len())
                    + movement.op_key.len()
                    + movement.reference.id.len()
                    + note
            })
            .sum();
        ROW_OVERHEAD_BYTES + movements
    }
}

/// How a group reached the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupPath {
    /// Every batch in one transaction of multi-row statements.
    Combined,
    /// The combined attempt failed: one savepoint per batch, still one transaction.
    Isolated,
}

impl GroupPath {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupPath::Combined => "combined",
            GroupPath::Isolated => "isolated",
        }
    }
}

/// Each batch's result, in the order the batches were given, and how they were written.
#[derive(Debug)]
pub struct GroupOutcome {
    pub results: Vec<StoreResult<()>>,
    pub path: GroupPath,
    pub timings: GroupTimings,
}

/// Where a group's time went before the database had it, where that can be told apart
/// (PostgreSQL's one-statement path): the rest of the group's time is the database's.
#[derive(Debug, Default, Clone, Copy)]
pub struct GroupTimings {
    /// Building the group's statement and its parameters.
    pub building: Duration,
    /// Taking a connection from the pool (which checks it with a round trip first).
    pub connecting: Duration,
}

/// The combined attempt failed before its commit (nothing was written) or at it (unknown).
enum CombinedFailure {
    BeforeCommit(StoreError),
    AtCommit(StoreError),
}

impl Store {
    /// Commits the batches as one transaction; each batch gets its own result: a stale account
    /// version or a failed guard fails only the batch that caused it.
    pub async fn commit_group(&self, batches: &[PlannedBatch], now: DateTime<Utc>) -> GroupOutcome {
        self.commit_group_notifying(batches, now, None).await
    }

    /// `commit_group`, with the notifications of the P2P transfers it completes written in the
    /// same transaction where `inline` gives them (`NotifyInline`). Only the combined way does
    /// that: a group that goes the savepoint way leaves its events to the relay.
    pub async fn commit_group_notifying(
        &self,
        batches: &[PlannedBatch],
        now: DateTime<Utc>,
        inline: Option<&dyn NotifyInline>,
    ) -> GroupOutcome {
        // One batch too: its movements' rows still go in multi-row statements (a hot wallet's
        // batch carries many; one statement per movement made such a group the slowest).
        let mut timings = GroupTimings::default();
        match self
            .commit_combined(batches, now, inline, &mut timings)
            .await
        {
            Ok(results) => GroupOutcome {
                results,
                path: GroupPath::Combined,
                timings,
            },
            Err(CombinedFailure::BeforeCommit(error)) => {
                tracing::debug!(%error, batches = batches.len(), "combined group commit failed; one savepoint per batch");
                GroupOutcome {
                    results: self.commit_isolated(batches, now).await,
                    path: GroupPath::Isolated,
                    timings,
                }
            }
            // The commit itself failed: whether it landed is unknown, so every batch fails and
            // its wallet reloads; the ops' retries are replays and see what is there.
            Err(CombinedFailure::AtCommit(error)) => GroupOutcome {
                results: batches
                    .iter()
                    .map(|_| {
                        Err(StoreError::Conflict(format!(
                            "group commit failed: {error}"
                        )))
                    })
                    .collect(),
                path: GroupPath::Combined,
                timings,
            },
        }
    }

    async fn commit_combined(
        &self,
        batches: &[PlannedBatch],
        now: DateTime<Utc>,
        inline: Option<&dyn NotifyInline>,
        timings: &mut GroupTimings,
    ) -> Result<Vec<StoreResult<()>>, CombinedFailure> {
        let before = CombinedFailure::BeforeCommit;
        if self.backend() == DbBackend::Postgres {
            return commit_in_one_statement(self, batches, now, inline, timings).await;
        }
        let transaction = self
            .writer()
            .begin()
            .await
            .map_err(|error| before(error.into()))?;
        // Claims first: a batch whose request lost its idempotency key to another request is
        // left out like a stale account (unless it also won a claim, which must not stay).
        let claims: Vec<&ClaimRow> = batches.iter().flat_map(PlannedBatch::claims).collect();
        let claimed = insert_claims(&transaction, &claims).await.map_err(before)?;
        let mut claim_failed = vec![false; batches.len()];
        for (index, batch) in batches.iter().enumerate() {
            let (won, lost): (Vec<&ClaimRow>, Vec<&ClaimRow>) = batch
                .claims()
                .partition(|claim| claimed.contains(&(claim.caller.clone(), claim.key.clone())));
            if !lost.is_empty() {
                if !won.is_empty() {
                    return Err(before(StoreError::Conflict(
                        "a batch both won and lost idempotency claims".into(),
                    )));
                }
                claim_failed[index] = true;
            }
        }
        let contenders: Vec<AccountWrite> = batches
            .iter()
            .zip(&claim_failed)
            .filter(|(_, failed)| !**failed)
            .map(|(batch, _)| batch.account)
            .collect();
        let updated = update_accounts(&transaction, &contenders)
            .await
            .map_err(before)?;
        // A stale batch that won a claim must not leave it behind: the claim would say the
        // request's first money step committed when nothing of it did, and every retry of the
        // request would then lose its own claim. Rare (another node wrote the account), so the
        // group goes the savepoint way, where a batch's claim and balance stand or fall together.
        let stale_claimant = batches
            .iter()
            .zip(&claim_failed)
            .any(|(batch, lost_claim)| {
                !lost_claim
                    && batch.claims().next().is_some()
                    && !updated.contains(&batch.account.account.to_string())
            });
        if stale_claimant {
            return Err(before(StoreError::Conflict(
                "a stale batch won an idempotency claim".into(),
            )));
        }
        let mut results = Vec::with_capacity(batches.len());
        let mut live = Vec::with_capacity(batches.len());
        for (batch, lost_claim) in batches.iter().zip(claim_failed) {
            if lost_claim {
                results.push(Err(StoreError::Conflict(
                    "an idempotency key of this batch is claimed by another request".into(),
                )));
            } else if updated.contains(&batch.account.account.to_string()) {
                results.push(Ok(()));
                live.push(batch);
            } else {
                results.push(Err(StoreError::Conflict(format!(
                    "account {} is no longer at version {}",
                    batch.account.account, batch.account.expected_version
                ))));
            }
        }
        write_and_commit(transaction, &live, now, inline).await?;
        Ok(results)
    }
}

/// Writes the batches' rows after whatever `writes` holds, then commits.
async fn write_and_commit(
    transaction: DatabaseTransaction,
    batches: &[&PlannedBatch],
    now: DateTime<Utc>,
    inline: Option<&dyn NotifyInline>,
) -> Result<(), CombinedFailure> {
    let answered = HashSet::new();
    let rows = GroupRows {
        now,
        answered: &answered,
        inline,
    };
    write_rows(&transaction, batches, &rows, Writes::default())
        .await
        .map_err(CombinedFailure::BeforeCommit)?;
    transaction
        .commit()
        .await
        .map_err(|error| CombinedFailure::AtCommit(error.into()))
}

/// PostgreSQL: the claims, the balances and every row of every batch as ONE statement of
/// data-modifying CTEs (`bulk::Writes`). The statement checks what it did: a claim another
/// request holds (a unique violation), an account no longer at its planned version or a
/// transfer no longer `debited` (a count; all rare: a duplicate request on another node,
/// another node writing the account) fails the whole statement, and the group goes the
/// savepoint way, where only the batch concerned fails. A P2P transfer's debit and credit may
/// share a group (the credit is planned while the debit's group forms, `wallet::Chained`): then
/// the transfer is inserted `completed` and its request's key inserted answered (`add_rows`), so
/// no row is written twice.
///
/// When that statement is all the group writes (P2P transfers: no system account's side, no
/// hold, payment or on-ramp to move), it runs on its own, as its own transaction: one round trip
/// on the writer every transfer waits for, instead of BEGIN, statement, COMMIT. An error the
/// server answered means it rolled the statement back (nothing written); any other failure
/// (the connection lost on the way) leaves the outcome unknown, as a failed COMMIT does.
async fn commit_in_one_statement(
    store: &Store,
    batches: &[PlannedBatch],
    now: DateTime<Utc>,
    inline: Option<&dyn NotifyInline>,
    timings: &mut GroupTimings,
) -> Result<Vec<StoreResult<()>>, CombinedFailure> {
    let before = CombinedFailure::BeforeCommit;
    let building = Instant::now();
    let backend = DbBackend::Postgres;
    let mut writes = Writes::default();
    let claims: Vec<&ClaimRow> = batches.iter().flat_map(PlannedBatch::claims).collect();
    // A request whose claim and response are both in this group (its transfer's credit joined
    // its debit's group) gets its key inserted answered: in one statement the response's
    // UPDATE would not see the claim's INSERT.
    let responses: HashMap<(&str, &str), &CompletionRow> = batches
        .iter()
        .flat_map(|batch| batch.movements.iter())
        .filter_map(|movement| movement.idempotency.completion())
        .map(|completion| {
            (
                (completion.caller.as_str(), completion.key.as_str()),
                completion,
            )
        })
        .collect();
    let claims: Vec<AnsweredClaim<'_>> = claims
        .into_iter()
        .map(|claim| {
            let answer = responses.get(&(claim.caller.as_str(), claim.key.as_str()));
            (claim, answer.copied())
        })
        .collect();
    let answered: HashSet<(&str, &str)> = claims
        .iter()
        .filter(|(_, answer)| answer.is_some())
        .map(|(claim, _)| (claim.caller.as_str(), claim.key.as_str()))
        .collect();
    // A key another request holds fails the statement either way: by its count below, or
    // (without `ON CONFLICT`, cheaper) by the unique violation itself.
    for (sql, values) in claim_statements(backend, &claims, ClaimTaken::Fail).map_err(before)? {
        writes.push_checked(
            sql,
            values,
            claims.len(),
            "idempotency keys of this group are claimed by other requests".into(),
        );
    }
    let accounts: Vec<AccountWrite> = batches.iter().map(|batch| batch.account).collect();
    for (sql, values) in account_statements(backend, &accounts).map_err(before)? {
        writes.push_checked(
            sql,
            values,
            accounts.len(),
            "accounts of this group are no longer at their planned versions".into(),
        );
    }
    let all: Vec<&PlannedBatch> = batches.iter().collect();
    let simple = batches.iter().all(|batch| {
        batch.movements.iter().all(|movement| {
            movement.counterpart.is_none()
                && match &movement.effect {
                    Effect::None => true,
                    Effect::OpenTransfer(transfer) | Effect::CompleteTransfer(transfer) => {
                        transfer.kind == TransferKind::P2p
                    }
                    _ => false,
                }
        })
    });
    let rows = GroupRows {
        now,
        answered: &answered,
        inline,
    };
    if simple {
        let rest = add_rows(backend, &all, &rows, &mut writes).map_err(before)?;
        debug_assert!(
            rest.is_empty(),
            "a simple group leaves nothing for a transaction"
        );
        // A simple group always writes its accounts.
        if let Some(statement) = writes.combine() {
            timings.building = building.elapsed();
            let connecting = Instant::now();
            // Nothing was sent yet: the savepoint way may still write the group.
            let connection = store
                .writer()
                .get_postgres_connection_pool()
                .acquire()
                .await
                .map_err(|error| {
                    before(DbErr::Conn(RuntimeErr::SqlxError(Arc::new(error))).into())
                })?;
            timings.connecting = connecting.elapsed();
            execute_alone(connection, statement)
                .await
                .map_err(|error| {
                    if server_answered(&error) {
                        CombinedFailure::BeforeCommit(error)
                    } else {
                        CombinedFailure::AtCommit(error)
                    }
                })?;
        }
    } else {
        let transaction = store
            .writer()
            .begin()
            .await
            .map_err(|error| before(error.into()))?;
        write_rows(&transaction, &all, &rows, writes)
            .await
            .map_err(before)?;
        transaction
            .commit()
            .await
            .map_err(|error| CombinedFailure::AtCommit(error.into()))?;
    }
    Ok(batches.iter().map(|_| Ok(())).collect())
}

/// The database server answered the statement with an error (so it rolled the statement back),
/// rather than the statement's fate being unknown (the connection failed).
fn server_answered(error: &StoreError) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    match error {
        StoreError::Database(DbErr::Exec(RuntimeErr::SqlxError(error)))
        | StoreError::Database(DbErr::Query(RuntimeErr::SqlxError(error))) => {
            error.as_database_error().is_some()
        }
        StoreError::Conflict(_) | StoreError::Corrupt(_) => true,
        StoreError::Database(_) => false,
    }
}

impl Store {
    async fn commit_isolated(
        &self,
        batches: &[PlannedBatch],
        now: DateTime<Utc>,
    ) -> Vec<StoreResult<()>> {
        let transaction = match self.writer().begin().await {
            Ok(transaction) => transaction,
            Err(error) => return fail_all(batches, &error.into()),
        };
        let mut results = Vec::with_capacity(batches.len());
        for batch in batches {
            let savepoint = match transaction.begin().await {
                Ok(savepoint) => savepoint,
                Err(error) => return fail_all(batches, &error.into()),
            };
            match write_batch(&savepoint, batch.account, &batch.movements, now).await {
                Ok(()) => match savepoint.commit().await {
                    Ok(()) => results.push(Ok(())),
                    Err(error) => return fail_all(batches, &error.into()),
                },
                Err(error) => {
                    if let Err(rollback) = savepoint.rollback().await {
                        tracing::warn!(%rollback, "rollback to savepoint failed");
                        return fail_all(batches, &error);
                    }
                    results.push(Err(error));
                }
            }
        }
        match transaction.commit().await {
            Ok(()) => results,
            Err(error) => fail_all(batches, &error.into()),
        }
    }
}

fn fail_all(batches: &[PlannedBatch], error: &StoreError) -> Vec<StoreResult<()>> {
    batches
        .iter()
        .map(|_| {
            Err(StoreError::Conflict(format!(
                "group commit failed: {error}"
            )))
        })
        .collect()
}

/// Moves every batch's account to its planned balance if it is still at the version the plan
/// was made from. Returns the ids of the accounts that were updated.
async fn update_accounts(
    transaction: &DatabaseTransaction,
    writes: &[AccountWrite],
) -> StoreResult<HashSet<String>> {
    let backend = transaction.get_database_backend();
    let mut updated = HashSet::with_capacity(writes.len());
    for (sql, values) in account_statements(backend, writes)? {
        let returned = transaction
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        for row in returned {
            let id: String = row.try_get("", "id")?;
            updated.insert(id);
        }
    }
    Ok(updated)
}

/// The statements of `update_accounts` (one on PostgreSQL): each returns the ids of the
/// accounts it moved.
fn account_statements(
    backend: DbBackend,
    writes: &[AccountWrite],
) -> StoreResult<Vec<(String, Vec<sea_orm::Value>)>> {
    let rows = writes
        .iter()
        .map(|write| {
            debug_assert!(write.expected_version >= 0 && write.steps >= 1);
            vec![
                write.account.to_string().into(),
                write.available.into(),
                write.locked.into(),
                write.expected_version.into(),
                write.expected_available.into(),
                write.expected_locked.into(),
                write.steps.into(),
            ]
        })
        .collect();
    let columns = [
        ("id", SqlType::Text),
        ("available", SqlType::BigInt),
        ("locked", SqlType::BigInt),
        ("version", SqlType::BigInt),
        ("was_available", SqlType::BigInt),
        ("was_locked", SqlType::BigInt),
        ("steps", SqlType::BigInt),
    ];
    Ok(row_sources(backend, &columns, rows)?
        .into_iter()
        .map(|source| {
            let sql = format!(
                "WITH planned (id, available, locked, version, was_available, was_locked, steps) \
                 AS ({}) \
                 UPDATE accounts SET available = planned.available, locked = planned.locked, \
                 version = planned.version + planned.steps FROM planned \
                 WHERE accounts.id = planned.id AND accounts.version = planned.version \
                 AND accounts.available = planned.was_available \
                 AND accounts.locked = planned.was_locked \
                 RETURNING accounts.id",
                source.sql
            );
            (sql, source.values)
        })
        .collect())
}

/// Everything but the wallet balances, for every live batch, with multi-row statements.
async fn write_rows(
    transaction: &DatabaseTransaction,
    live: &[&PlannedBatch],
    rows: &GroupRows<'_>,
    mut writes: Writes,
) -> StoreResult<()> {
    let backend = transaction.get_database_backend();
    let now = rows.now;
    let rest = add_rows(backend, live, rows, &mut writes)?;
    if !rest.completed.is_empty() {
        complete_transfers(transaction, &rest.completed, now).await?;
    }
    writes.execute(transaction).await?;
    // What reads its answer, after the rows it may refer to.
    let movements = live.iter().flat_map(|batch| batch.movements.iter());
    write_counterparts(transaction, movements, now).await?;
    for effect in rest.others {
        write_effect(transaction, effect, now).await?;
    }
    Ok(())
}

/// What shapes a combined group's rows beyond its batches.
struct GroupRows<'a> {
    now: DateTime<Utc>,
    /// Requests whose claims carry their responses (`commit_in_one_statement`).
    answered: &'a HashSet<(&'a str, &'a str)>,
    /// Who writes a completed P2P transfer's notifications with it.
    inline: Option<&'a dyn NotifyInline>,
}

/// What `add_rows` left for statements of their own, whose answers are read.
struct Rest<'a> {
    /// Transfers to move `debited` → `completed` (SQLite: PostgreSQL checks them in `Writes`).
    completed: Vec<String>,
    /// Some movement takes a system account's opposite side (`write_counterparts`).
    counterparts: bool,
    /// Effects beyond opening and completing P2P transfers (`write_effect`).
    others: Vec<&'a Effect>,
}

impl Rest<'_> {
    fn is_empty(&self) -> bool {
        self.completed.is_empty() && !self.counterparts && self.others.is_empty()
    }
}

/// Adds the rows that need no answer to `writes` (after what it holds): journals, entries,
/// opened P2P transfers, their events, the idempotency completions (but those of `answered`,
/// which the claims carry) and, on PostgreSQL, the checked P2P completions.
///
/// A P2P transfer whose debit and credit are both in the group (the credit was planned while
/// the debit's group was still forming, see `wallet::Chained`) is inserted `completed`: no
/// `debited` row to update in the same breath, no completion to check. Both batches then stand
/// or fall together: a failure of either fails the statement, and the savepoint way writes
/// the debit first, so the credit's guarded completion still finds it.
fn add_rows<'a>(
    backend: DbBackend,
    live: &[&'a PlannedBatch],
    rows: &GroupRows<'_>,
    writes: &mut Writes,
) -> StoreResult<Rest<'a>> {
    let (now, answered) = (rows.now, rows.answered);
    let movements = || live.iter().flat_map(|batch| batch.movements.iter());
    // On PostgreSQL without `ON CONFLICT`: its speculative insertion cost every journal an
    // extra index probe and WAL record, for a conflict that only a replay of an op already
    // written could meet (and a replay finds its op written and writes nothing). Should one
    // come, the statement fails and the group goes the savepoint way, which keeps the clause.
    // A journal two movements of the group open is inserted once either way.
    let conflict = match backend {
        DbBackend::Postgres => None,
        _ => Some(JOURNALS_CONFLICT),
    };
    let mut journals_opened = HashSet::new();
    let openers = movements()
        .filter(|movement| movement.journal.is_new && journals_opened.insert(movement.journal.id));
    writes.insert(backend, journal_rows(openers, now), conflict)?;
    let entries: Vec<_> = live
        .iter()
        .flat_map(|batch| entry_rows(batch.account.account, &batch.movements, now))
        .collect();
    writes.insert(backend, entries, None)?;

    let p2p = |transfer: &TransferRecord| transfer.kind == TransferKind::P2p;
    let opening: HashSet<TransferId> = movements()
        .filter_map(|movement| match &movement.effect {
            Effect::OpenTransfer(transfer) if p2p(transfer) => Some(transfer.id),
            _ => None,
        })
        .collect();
    let completing: HashSet<TransferId> = movements()
        .filter_map(|movement| match &movement.effect {
            Effect::CompleteTransfer(transfer) if p2p(transfer) => Some(transfer.id),
            _ => None,
        })
        .collect();
    let mut opened = Vec::new();
    let mut completed = Vec::new();
    let mut events = Vec::new();
    let mut notifications = Vec::new();
    let mut deliveries = Vec::new();
    let mut others = Vec::new();
    for movement in movements() {
        match &movement.effect {
            Effect::None => {}
            Effect::OpenTransfer(transfer) if p2p(transfer) => {
                if completing.contains(&transfer.id) {
                    let settled = TransferRecord {
                        state: TransferState::Completed,
                        failure_code: None,
                        updated_at: now,
                        ..(**transfer).clone()
                    };
                    opened.push(settled.to_active_model());
                } else {
                    opened.push(transfer.to_active_model());
                }
            }
            Effect::CompleteTransfer(transfer) if p2p(transfer) => {
                if !opening.contains(&transfer.id) {
                    completed.push(transfer.id.to_string());
                }
                const COMPLETED: &str = "transfer.completed";
                let data = transfer_event(transfer, TransferState::Completed, None);
                let inline = rows
                    .inline
                    .and_then(|inline| inline.notifications(COMPLETED, &data));
                let mut event =
                    event_row(COMPLETED, "transfer", &transfer.id.to_string(), data, now);
                if let Some(inline) = inline {
                    // Nothing is left for the relay: the notifier's work is in this group and
                    // no merchant webhook wants a P2P transfer.
                    let id = event.id.try_as_ref().cloned().unwrap_or_default();
                    notifications.extend(inline_notification_rows(
                        &id,
                        COMPLETED,
                        inline,
                        now,
                        &mut deliveries,
                    ));
                    event.notified_at = Set(Some(now));
                    event.dispatched_at = Set(Some(now));
                    event.published_at = Set(Some(now));
                }
                events.push(event);
            }
            other => others.push(other),
        }
    }
    writes.insert(backend, opened, None)?;
    writes.insert(backend, events, None)?;
    // Their ids are new (derived from this group's new events and their users): no conflict.
    writes.insert(backend, notifications, None)?;
    writes.insert(backend, deliveries, None)?;
    let completions: Vec<&CompletionRow> = movements()
        .filter_map(|movement| movement.idempotency.completion())
        .filter(|completion| {
            !answered.contains(&(completion.caller.as_str(), completion.key.as_str()))
        })
        .collect();
    for (sql, values) in completion_statements(backend, &completions)? {
        writes.push(sql, values);
    }
    if backend == DbBackend::Postgres && !completed.is_empty() {
        // Checked in the same statement: every one of them must still be `debited`.
        let built = backend.build(
            completion_update(backend, &completed, now).returning_col(transfers::Column::Id),
        );
        writes.push_checked(
            built.sql,
            built.values.map(|values| values.0).unwrap_or_default(),
            completed.len(),
            "transfers are no longer debited".into(),
        );
        completed.clear();
    }
    Ok(Rest {
        completed,
        counterparts: movements().any(|movement| movement.counterpart.is_some()),
        others,
    })
}

/// `debited` → `completed` for these transfers (the guard: only those still `debited`).
///
/// The guard is written `(state = 'debited') IS TRUE` (the same for a NOT NULL column) so that
/// it cannot be an index condition: the rows are found by primary key, whatever the planner
/// believes of `state`. With a plain `state = 'debited'` PostgreSQL took the index on state
/// (then `transfers_state (state, id)`; statistics say few transfers are `debited`) and walked
/// every `debited` entry it still held, live or dead: each P2P transfer left one behind until
/// vacuum, so the statement grew with the table (2.2 of 3.1 ms of a group's combined statement
/// after 20,000 transfers, `auto_explain`).
pub fn completion_update(
    backend: DbBackend,
    ids: &[String],
    now: DateTime<Utc>,
) -> sea_orm::sea_query::UpdateStatement {
    sea_orm::sea_query::Query::update()
        .table(transfers::Entity)
        .value(transfers::Column::State, TransferState::Completed.as_str())
        .value(transfers::Column::FailureCode, None::<String>)
        .value(transfers::Column::UpdatedAt, now)
        .and_where(id_in(backend, transfers::Column::Id, ids.to_vec()))
        .and_where(Expr::cust(format!(
            "(\"state\" = '{}') IS TRUE",
            TransferState::Debited.as_str()
        )))
        .to_owned()
}

/// `debited` → `completed` for every given transfer; all of them must still be `debited`.
async fn complete_transfers(
    transaction: &DatabaseTransaction,
    ids: &[String],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    // PostgreSQL: one array parameter, one statement text whatever the count.
    let backend = transaction.get_database_backend();
    let chunk_length = match backend {
        DbBackend::Postgres => ids.len(),
        _ => super::ledger::ROWS_PER_STATEMENT_MAX,
    };
    for chunk in ids.chunks(chunk_length) {
        let updated = transaction
            .execute(&completion_update(backend, chunk, now))
            .await?;
        if updated.rows_affected() != chunk.len() as u64 {
            return Err(StoreError::Conflict(format!(
                "{} of {} transfers are no longer debited",
                chunk.len() as u64 - updated.rows_affected(),
                chunk.len()
            )));
        }
    }
    Ok(())
}

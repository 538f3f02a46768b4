//! Idempotency keys: the first request with a key claims it, stores its response when done,
//! and every later request with the same key and body gets that response replayed. The
//! `resource_id` chosen by the first attempt survives a crash, so a retry after a crash
//! resumes the same transfer instead of starting a second one.

use super::bulk::{SqlType, row_sources};
use super::entities::idempotency_keys;
use super::{Store, StoreResult};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend,
    EntityTrait, QueryFilter, Statement, TryInsertResult,
};
use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// This request owns the key: do the work for `resource_id`, then `complete` or `release`.
    /// `taken_over`: an earlier request claimed the key and never finished (it crashed or
    /// timed out), so its work on `resource_id` may be partly done.
    Claimed {
        resource_id: String,
        taken_over: bool,
        claim_token: String,
    },
    /// Done before: answer with the stored response.
    Replay { status: u16, body: String },
    /// The key was used with a different request.
    Mismatch,
    /// Another request with this key is being processed right now.
    InProgress,
}

#[derive(Debug, Clone, Copy)]
pub struct IdempotencyScope<'a> {
    pub caller: &'a str,
    pub key: &'a str,
}

/// Only the request whose claim this is may finish or release the key.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyClaimHeld<'a> {
    pub scope: IdempotencyScope<'a>,
    pub claim_token: &'a str,
}

impl Store {
    /// Claims the key for this request. A claim older than `stale_before` whose request never
    /// finished (the process died) is taken over.
    pub async fn claim_idempotency_key(
        &self,
        scope: IdempotencyScope<'_>,
        fingerprint: &str,
        new_resource_id: String,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> StoreResult<IdempotencyClaim> {
        let claim_token = uuid::Uuid::now_v7().to_string();
        let inserted = idempotency_keys::Entity::insert(idempotency_keys::ActiveModel {
            caller: Set(scope.caller.to_owned()),
            key: Set(scope.key.to_owned()),
            fingerprint: Set(fingerprint.to_owned()),
            resource_id: Set(new_resource_id.clone()),
            response_status: Set(None),
            response_body: Set(None),
            locked_at: Set(Some(now)),
            created_at: Set(now),
            claim_token: Set(Some(claim_token.clone())),
        })
        .on_conflict_do_nothing_on([
            idempotency_keys::Column::Caller,
            idempotency_keys::Column::Key,
        ])
        .exec_without_returning(self.writer())
        .await?;
        if matches!(inserted, TryInsertResult::Inserted(1)) {
            return Ok(IdempotencyClaim::Claimed {
                resource_id: new_resource_id,
                taken_over: false,
                claim_token,
            });
        }
        let Some(existing) =
            idempotency_keys::Entity::find_by_id((scope.caller.to_owned(), scope.key.to_owned()))
                .one(self.writer())
                .await?
        else {
            return Ok(IdempotencyClaim::InProgress);
        };
        if existing.fingerprint != fingerprint {
            return Ok(IdempotencyClaim::Mismatch);
        }
        if let (Some(status), Some(body)) = (existing.response_status, existing.response_body) {
            return Ok(IdempotencyClaim::Replay {
                status: u16::try_from(status).unwrap_or(500),
                body,
            });
        }
        let taken_over = idempotency_keys::Entity::update_many()
            .col_expr(idempotency_keys::Column::LockedAt, Expr::value(now))
            .col_expr(
                idempotency_keys::Column::ClaimToken,
                Expr::value(claim_token.clone()),
            )
            .filter(scope_filter(scope))
            .filter(idempotency_keys::Column::ResponseStatus.is_null())
            .filter(
                Condition::any()
                    .add(idempotency_keys::Column::LockedAt.is_null())
                    .add(idempotency_keys::Column::LockedAt.lt(stale_before)),
            )
            .exec(self.writer())
            .await?;
        if taken_over.rows_affected == 1 {
            return Ok(IdempotencyClaim::Claimed {
                resource_id: existing.resource_id,
                taken_over: true,
                claim_token,
            });
        }
        Ok(IdempotencyClaim::InProgress)
    }

    /// Stores the final response, if this request still holds the claim.
    pub async fn complete_idempotency_key(
        &self,
        claim: IdempotencyClaimHeld<'_>,
        status: u16,
        body: &str,
    ) -> StoreResult<bool> {
        let updated = idempotency_keys::Entity::update_many()
            .col_expr(
                idempotency_keys::Column::ResponseStatus,
                Expr::value(i32::from(status)),
            )
            .col_expr(
                idempotency_keys::Column::ResponseBody,
                Expr::value(body.to_owned()),
            )
            .col_expr(
                idempotency_keys::Column::LockedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                idempotency_keys::Column::ClaimToken,
                Expr::value(Option::<String>::None),
            )
            .filter(held_filter(claim))
            .exec(self.writer())
            .await?;
        Ok(updated.rows_affected == 1)
    }

    /// The response stored for the key, if any.
    pub async fn stored_idempotent_response(
        &self,
        scope: IdempotencyScope<'_>,
    ) -> StoreResult<Option<(u16, String)>> {
        Ok(self
            .idempotency_record(scope)
            .await?
            .and_then(|(_, stored)| stored))
    }

    /// The key's record as a retry sees it: the fingerprint of the request that claimed it and
    /// the response stored for it, if any. `None` when the key was never claimed.
    pub async fn idempotency_record(
        &self,
        scope: IdempotencyScope<'_>,
    ) -> StoreResult<Option<(String, Option<(u16, String)>)>> {
        let row =
            idempotency_keys::Entity::find_by_id((scope.caller.to_owned(), scope.key.to_owned()))
                .one(self.writer())
                .await?;
        Ok(row.map(|row| {
            let stored = match (row.response_status, row.response_body) {
                (Some(status), Some(body)) => Some((u16::try_from(status).unwrap_or(500), body)),
                _ => None,
            };
            (row.fingerprint, stored)
        }))
    }

    /// Gives the claim up without a stored response (the outcome was not final, e.g. a
    /// timeout): the next request with the key retries the same resource.
    pub async fn release_idempotency_key(
        &self,
        claim: IdempotencyClaimHeld<'_>,
    ) -> StoreResult<()> {
        idempotency_keys::Entity::update_many()
            .col_expr(
                idempotency_keys::Column::LockedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                idempotency_keys::Column::ClaimToken,
                Expr::value(Option::<String>::None),
            )
            .filter(held_filter(claim))
            .exec(self.writer())
            .await?;
        Ok(())
    }
}

fn held_filter(claim: IdempotencyClaimHeld<'_>) -> Condition {
    scope_filter(claim.scope)
        .add(idempotency_keys::Column::ClaimToken.eq(claim.claim_token))
        .add(idempotency_keys::Column::ResponseStatus.is_null())
}

fn scope_filter(scope: IdempotencyScope<'_>) -> Condition {
    Condition::all()
        .add(idempotency_keys::Column::Caller.eq(scope.caller))
        .add(idempotency_keys::Column::Key.eq(scope.key))
}

// Idempotency inside the money transaction (P2P transfers): the claim is written with the
// transfer's debit and the stored response with its last step, instead of two transactions of
// their own. A claim that loses to an existing row fails only its own batch (the group commit
// isolates it), and the wallet turns the retry into `Rejection::IdempotencyKeyClaimed`.

/// A claim to insert with the first money step of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRow {
    pub caller: String,
    pub key: String,
    pub fingerprint: String,
    pub resource_id: String,
    pub claim_token: String,
    pub now: DateTime<Utc>,
}

/// The final response, stored with the last money step of a request (if no response is
/// stored yet: a `pending` answer stored first stays the answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionRow {
    pub caller: String,
    pub key: String,
    pub status: u16,
    pub body: String,
}

/// What a money step writes to the idempotency table, in its own transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IdempotencyWrite {
    #[default]
    None,
    Claim(Box<ClaimRow>),
    Complete(Box<CompletionRow>),
}

impl IdempotencyWrite {
    pub fn claim(&self) -> Option<&ClaimRow> {
        match self {
            IdempotencyWrite::Claim(claim) => Some(claim),
            _ => None,
        }
    }

    pub fn completion(&self) -> Option<&CompletionRow> {
        match self {
            IdempotencyWrite::Complete(completion) => Some(completion),
            _ => None,
        }
    }
}

/// Inserts the claims that are free; returns the (caller, key) of those inserted.
pub(super) async fn insert_claims(
    transaction: &DatabaseTransaction,
    claims: &[&ClaimRow],
) -> StoreResult<HashSet<(String, String)>> {
    let backend = transaction.get_database_backend();
    let mut inserted = HashSet::with_capacity(claims.len());
    let unanswered: Vec<AnsweredClaim<'_>> = claims.iter().map(|claim| (*claim, None)).collect();
    for (sql, values) in claim_statements(backend, &unanswered, ClaimTaken::Skip)? {
        for row in transaction
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?
        {
            inserted.insert((row.try_get("", "caller")?, row.try_get("", "key")?));
        }
    }
    Ok(inserted)
}

/// A claim to insert, with the response its request's last step stores when that step is
/// written in the same statement (a P2P transfer whose credit joined its debit's group): the
/// key is then inserted already answered.
pub(super) type AnsweredClaim<'a> = (&'a ClaimRow, Option<&'a CompletionRow>);

/// What a claim statement does with a key another request holds already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClaimTaken {
    /// Leaves it out (`ON CONFLICT DO NOTHING`): the statement returns only the claims won.
    Skip,
    /// Fails the statement (a unique violation). For a statement that fails on any lost claim
    /// anyway (the group commit's combined statement): a plain insert, without the speculative
    /// insertion `ON CONFLICT` costs PostgreSQL for every row.
    Fail,
}

/// The statements of `insert_claims` (one on PostgreSQL): each returns the (caller, key) of
/// the claims it inserted.
pub(super) fn claim_statements(
    backend: DbBackend,
    claims: &[AnsweredClaim<'_>],
    taken: ClaimTaken,
) -> StoreResult<Vec<(String, Vec<sea_orm::Value>)>> {
    let on_conflict = match taken {
        ClaimTaken::Skip => "ON CONFLICT (caller, \"key\") DO NOTHING ",
        ClaimTaken::Fail => "",
    };
    let rows = claims
        .iter()
        .map(|(claim, answer)| {
            // Status 0: not answered yet (a response's status is never 0).
            let (status, body) = answer.map_or((0, String::new()), |answer| {
                (i32::from(answer.status), answer.body.clone())
            });
            vec![
                claim.caller.clone().into(),
                claim.key.clone().into(),
                claim.fingerprint.clone().into(),
                claim.resource_id.clone().into(),
                claim.now.into(),
                claim.claim_token.clone().into(),
                status.into(),
                body.into(),
            ]
        })
        .collect();
    let columns = [
        ("caller", SqlType::Text),
        ("key", SqlType::Text),
        ("fingerprint", SqlType::Text),
        ("resource_id", SqlType::Text),
        ("now", SqlType::Timestamp),
        ("claim_token", SqlType::Text),
        ("status", SqlType::Int),
        ("body", SqlType::Text),
    ];
    Ok(row_sources(backend, &columns, rows)?
        .into_iter()
        .map(|source| {
            // `WHERE true`: SQLite reads an INSERT … SELECT's ON CONFLICT only after a WHERE.
            let sql = format!(
                "WITH c (caller, \"key\", fingerprint, resource_id, \"now\", claim_token, status, body) AS ({}) \
                 INSERT INTO idempotency_keys (caller, \"key\", fingerprint, resource_id, locked_at, created_at, claim_token, response_status, response_body) \
                 SELECT caller, \"key\", fingerprint, resource_id, \
                 CASE WHEN status = 0 THEN \"now\" END, \"now\", CASE WHEN status = 0 THEN claim_token END, \
                 NULLIF(status, 0), CASE WHEN status <> 0 THEN body END FROM c WHERE true \
                 {on_conflict}RETURNING caller, \"key\"",
                source.sql
            );
            (sql, source.values)
        })
        .collect())
}

/// Stores each response unless one is stored already, with one statement (per chunk).
pub(super) async fn complete_claims(
    transaction: &DatabaseTransaction,
    completions: &[&CompletionRow],
) -> StoreResult<()> {
    let backend = transaction.get_database_backend();
    for (sql, values) in completion_statements(backend, completions)? {
        transaction
            .execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
    }
    Ok(())
}

/// The statements of `complete_claims`.
pub(super) fn completion_statements(
    backend: DbBackend,
    completions: &[&CompletionRow],
) -> StoreResult<Vec<(String, Vec<sea_orm::Value>)>> {
    let rows = completions
        .iter()
        .map(|completion| {
            vec![
                completion.caller.clone().into(),
                completion.key.clone().into(),
                i32::from(completion.status).into(),
                completion.body.clone().into(),
            ]
        })
        .collect();
    let columns = [
        ("caller", SqlType::Text),
        ("key", SqlType::Text),
        ("status", SqlType::Int),
        ("body", SqlType::Text),
    ];
    Ok(row_sources(backend, &columns, rows)?
        .into_iter()
        .map(|source| {
            let sql = format!(
                "WITH done (caller, \"key\", status, body) AS ({}) \
                 UPDATE idempotency_keys SET response_status = done.status, response_body = done.body, \
                 locked_at = NULL, claim_token = NULL FROM done \
                 WHERE idempotency_keys.caller = done.caller AND idempotency_keys.\"key\" = done.\"key\" \
                 AND idempotency_keys.response_status IS NULL",
                source.sql
            );
            (sql, source.values)
        })
        .collect())
}

impl Store {
    /// Of these claims, the ones whose key is held by another request (another claim token,
    /// or already answered). Read through the writer, for the wallet's replays.
    pub async fn claims_taken_by_others(
        &self,
        claims: &[&ClaimRow],
    ) -> StoreResult<HashSet<(String, String)>> {
        let mut taken = HashSet::new();
        for claim in claims {
            let row =
                idempotency_keys::Entity::find_by_id((claim.caller.clone(), claim.key.clone()))
                    .one(self.writer())
                    .await?;
            if let Some(row) = row
                && row.claim_token.as_deref() != Some(claim.claim_token.as_str())
            {
                taken.insert((claim.caller.clone(), claim.key.clone()));
            }
        }
        Ok(taken)
    }

    /// Stores a response for a key nobody has claimed yet (a request refused before any money
    /// step). `false`: the key exists (another request has it).
    pub async fn store_first_response(
        &self,
        scope: IdempotencyScope<'_>,
        fingerprint: &str,
        resource_id: String,
        status: u16,
        body: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let inserted = idempotency_keys::Entity::insert(idempotency_keys::ActiveModel {
            caller: Set(scope.caller.to_owned()),
            key: Set(scope.key.to_owned()),
            fingerprint: Set(fingerprint.to_owned()),
            resource_id: Set(resource_id),
            response_status: Set(Some(i32::from(status))),
            response_body: Set(Some(body.to_owned())),
            locked_at: Set(None),
            created_at: Set(now),
            claim_token: Set(None),
        })
        .on_conflict_do_nothing_on([
            idempotency_keys::Column::Caller,
            idempotency_keys::Column::Key,
        ])
        .exec_without_returning(self.writer())
        .await?;
        Ok(matches!(inserted, TryInsertResult::Inserted(1)))
    }
}

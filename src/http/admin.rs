//! Operator endpoints: manual adjustments, each a balanced journal against the `adjustments`
//! system account, recorded with who made it and why.

use super::AppState;
use super::auth;
use super::error::{ApiError, ErrorBody};
use super::idempotency::{JsonResponse, run_idempotent};
use super::request::page_request;
use super::request::{Fields, json_object, read_body};
use super::views::{
    ActorKindView, AdjustmentView, CreateAdjustmentRequest, ListView, ReconciliationView,
};
use crate::actors::{OpOutcome, WalletOp};
use crate::domain::{
    AccountId, AdjustmentId, BalanceOp, Currency, JournalId, Rejection, SignedAmount, UserId,
};
use crate::store::accounts::{AccountRecord, Owner, SystemAccount};
use crate::store::idempotency::IdempotencyWrite;
use crate::store::ledger::{AdjustmentRecord, Effect, JournalSpec, Reference};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use std::collections::HashMap;

const REASON_LENGTH_MAX: usize = 500;
const OPERATOR: &str = "operator";

enum Target {
    Account(AccountId),
    User(UserId),
}

struct AdjustmentOrder {
    target: Target,
    amount: SignedAmount,
    currency: Currency,
    reason: String,
}

fn parse_order(body: &[u8]) -> Result<AdjustmentOrder, ApiError> {
    let object = json_object(body)?;
    let fields = Fields(&object);
    let target =
        match (
            fields.optional_str("account_id")?,
            fields.optional_str("user_id")?,
        ) {
            (Some(account), None) => Target::Account(account.parse().map_err(|_| {
                ApiError::rejection(Rejection::AccountNotFound, Some("account_id"))
            })?),
            (None, Some(user)) => Target::User(
                user.parse()
                    .map_err(|_| ApiError::not_found("user").with_param("user_id"))?,
            ),
            _ => {
                return Err(ApiError::invalid_request(
                    "parameter_invalid",
                    "Give exactly one of account_id and user_id.",
                ));
            }
        };
    let amount = SignedAmount::from_json(object.get("amount").unwrap_or(&serde_json::Value::Null))
        .map_err(|rejection| ApiError::rejection(rejection, Some("amount")))?;
    let currency = fields.currency("currency")?;
    let reason = fields.required_str("reason")?.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > REASON_LENGTH_MAX {
        return Err(ApiError::invalid_param(
            "parameter_invalid",
            "reason",
            "reason must be 1 to 500 characters.",
        ));
    }
    Ok(AdjustmentOrder {
        target,
        amount,
        currency,
        reason,
    })
}

#[utoipa::path(post, path = "/v1/admin/adjustments", tag = "operators", security(("operator" = [])),
    request_body = CreateAdjustmentRequest,
    params(("Idempotency-Key" = String, Header, description = "Required, 1-255 characters")),
    responses((status = 201, body = AdjustmentView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_adjustment(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let operator = auth::operator(&request, &state)?;
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let order = parse_order(&body)?;
    // Each operator's idempotency keys are their own; the admin keeps the scope it always had.
    let scope = if operator == crate::config::ADMIN_OPERATOR_NAME {
        OPERATOR.to_owned()
    } else {
        format!("{OPERATOR}:{operator}")
    };
    run_idempotent(
        &state,
        &request,
        &scope,
        &body,
        AdjustmentId::generate(),
        |id, taken_over| execute_adjustment(&state, order, operator, id, taken_over),
    )
    .await
}

async fn execute_adjustment(
    state: &AppState,
    order: AdjustmentOrder,
    operator: String,
    id: AdjustmentId,
    taken_over: bool,
) -> Result<JsonResponse, ApiError> {
    let account = target_account(state, &order).await?;
    let system = state
        .store
        .open_account(&Owner::System(SystemAccount::Adjustments), order.currency)
        .await?;
    let record = AdjustmentRecord {
        id,
        account_id: account.id,
        amount: order.amount,
        currency: order.currency,
        reason: order.reason,
        operator,
        journal_id: JournalId::from(id.as_uuid()),
        created_at: state.clock.now(),
    };
    let balance_op = if order.amount.is_credit() {
        BalanceOp::Credit(order.amount.magnitude())
    } else {
        BalanceOp::Debit(order.amount.magnitude())
    };
    let op = WalletOp {
        idempotency: IdempotencyWrite::None,
        op_key: format!("adjustment:{id}"),
        kind: "adjustment",
        balance_op,
        journal: JournalSpec {
            id: record.journal_id,
            kind: "adjustment",
            is_new: true,
        },
        reference: Reference {
            kind: "adjustment",
            id: id.to_string(),
        },
        counterpart: Some(system.id),
        effect: Effect::RecordAdjustment(Box::new(record.clone())),
        replay: taken_over,
    };
    match state.wallets.apply(account.id, op).await? {
        OpOutcome::Applied { .. } => Ok(JsonResponse::new(
            StatusCode::CREATED,
            &AdjustmentView::from(&record),
        )),
        // An earlier attempt committed it: answer with what was stored.
        OpOutcome::AlreadyApplied => {
            let stored = state.store.find_adjustment(id).await?.ok_or_else(|| {
                ApiError::unavailable("adjustment committed but not readable yet")
            })?;
            Ok(JsonResponse::new(
                StatusCode::CREATED,
                &AdjustmentView::from(&stored),
            ))
        }
        OpOutcome::Rejected(rejection) => Err(ApiError::rejection(rejection, Some("amount"))),
    }
}

async fn target_account(
    state: &AppState,
    order: &AdjustmentOrder,
) -> Result<AccountRecord, ApiError> {
    match order.target {
        Target::Account(id) => {
            let account = state
                .store
                .load_account(id)
                .await?
                .filter(|account| account.owner_type != "system")
                .ok_or_else(|| {
                    ApiError::rejection(Rejection::AccountNotFound, Some("account_id"))
                })?;
            if account.currency != order.currency {
                return Err(ApiError::rejection(
                    Rejection::CurrencyMismatch,
                    Some("currency"),
                ));
            }
            Ok(account)
        }
        Target::User(user) => {
            if state.store.find_user(user).await?.is_none() {
                return Err(ApiError::not_found("user").with_param("user_id"));
            }
            Ok(state
                .store
                .open_account(&Owner::User(user), order.currency)
                .await?)
        }
    }
}

#[utoipa::path(get, path = "/v1/admin/adjustments/{id}", tag = "operators", security(("operator" = [])),
    params(("id" = String, Path, description = "Adjustment id")),
    responses((status = 200, body = AdjustmentView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_adjustment(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth::operator(&request, &state)?;
    let id: AdjustmentId = path
        .parse()
        .map_err(|_| ApiError::not_found("adjustment"))?;
    let adjustment = state
        .store
        .find_adjustment(id)
        .await?
        .ok_or_else(|| ApiError::not_found("adjustment"))?;
    Ok(HttpResponse::Ok().json(AdjustmentView::from(&adjustment)))
}

#[utoipa::path(get, path = "/v1/admin/adjustments", tag = "operators", security(("operator" = [])),
    params(
        ("limit" = Option<u64>, Query, description = "1 to 100, default 10"),
        ("starting_after" = Option<String>, Query, description = "Cursor: an adjustment id"),
        ("ending_before" = Option<String>, Query, description = "Cursor: an adjustment id"),
    ),
    responses((status = 200, body = ListView<AdjustmentView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_adjustments(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    auth::operator(&request, &state)?;
    let page = page_request(&query)?;
    let (adjustments, has_more) = state.store.list_adjustments(&page).await?;
    Ok(HttpResponse::Ok().json(ListView::new(
        adjustments.iter().map(AdjustmentView::from).collect(),
        has_more,
    )))
}

/// How long an on-demand reconciliation may take before the caller gets a 503.
const RECONCILIATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

#[utoipa::path(post, path = "/v1/admin/reconciliations", tag = "operators", security(("operator" = [])),
    responses((status = 201, body = ReconciliationView), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn run_reconciliation(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    auth::operator(&request, &state)?;
    let outcome = state
        .reconciler
        .call(
            |reply| crate::actors::reconciler::ReconcilerMsg::Run {
                trigger: "api",
                reply: Some(reply),
            },
            Some(RECONCILIATION_TIMEOUT),
        )
        .await;
    match outcome {
        Ok(ractor::rpc::CallResult::Success(Ok(report))) => {
            Ok(HttpResponse::Created().json(ReconciliationView::from(&report)))
        }
        Ok(ractor::rpc::CallResult::Success(Err(error))) => Err(ApiError::unavailable(format!(
            "The reconciliation failed: {error}"
        ))),
        _ => Err(ApiError::unavailable(
            "The reconciler did not answer in time.",
        )),
    }
}

#[utoipa::path(get, path = "/v1/admin/reconciliations/{id}", tag = "operators", security(("operator" = [])),
    params(("id" = String, Path, description = "Reconciliation id")),
    responses((status = 200, body = ReconciliationView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_reconciliation(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth::operator(&request, &state)?;
    let report = state
        .store
        .find_reconciliation(&path)
        .await?
        .ok_or_else(|| ApiError::not_found("reconciliation"))?;
    Ok(HttpResponse::Ok().json(ReconciliationView::from(&report)))
}

#[utoipa::path(get, path = "/v1/admin/reconciliations", tag = "operators", security(("operator" = [])),
    params(
        ("limit" = Option<u64>, Query, description = "1 to 100, default 10"),
        ("starting_after" = Option<String>, Query, description = "Cursor: a reconciliation id"),
        ("ending_before" = Option<String>, Query, description = "Cursor: a reconciliation id"),
    ),
    responses((status = 200, body = ListView<ReconciliationView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_reconciliations(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    auth::operator(&request, &state)?;
    let page = page_request(&query)?;
    let (reports, has_more) = state.store.list_reconciliations(&page).await?;
    Ok(HttpResponse::Ok().json(ListView::new(
        reports.iter().map(ReconciliationView::from).collect(),
        has_more,
    )))
}

use crate::metrics::ACTOR_KINDS;

#[utoipa::path(get, path = "/v1/admin/actors", tag = "operators", security(("operator" = [])),
    responses((status = 200, body = ListView<ActorKindView>), (status = 401, body = ErrorBody)))]
pub async fn list_actors(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    auth::operator(&request, &state)?;
    let metrics = &state.metrics;
    let data = ACTOR_KINDS
        .iter()
        .map(|kind| {
            let last_error = metrics.last_actor_error(kind);
            ActorKindView {
                object: "actor_kind",
                kind: (*kind).to_owned(),
                live: metrics.actors_live.with_label_values(&[*kind]).get(),
                mailbox_depth: metrics
                    .actor_mailbox_depth
                    .with_label_values(&[*kind])
                    .get(),
                messages_handled: metrics
                    .actor_messages_total
                    .with_label_values(&[*kind])
                    .get(),
                restarts: metrics
                    .actor_restarts_total
                    .with_label_values(&[*kind])
                    .get(),
                last_error: last_error.as_ref().map(|(message, _)| message.clone()),
                last_error_at: last_error.map(|(_, at)| super::views::timestamp(at)),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(ListView::new(data, false)))
}

//! P2P transfers: create (idempotent; runs a `TransferSaga` and waits for it up to a timeout),
//! read one, list the caller's sent and received transfers.

use super::AppState;
use super::auth::{self, CurrentUser};
use super::error::{ApiError, ErrorBody};
use super::idempotency::{JsonResponse, Keyed, respond, run_keyed};
use super::request::{Fields, json_object, page_request, read_body};
use super::views::{CreateTransferRequest, ListView, TransferView};
use crate::actors::transfer_saga::{self, Opening};
use crate::actors::{SagaOutcome, SagaStart};
use crate::domain::{
    Amount, Currency, Email, PhoneNumber, Rejection, TransferId, TransferKind, TransferState,
    UserId,
};
use crate::store::accounts::Owner;
use crate::store::transfers::{Party, TransferRecord};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use std::collections::HashMap;
use tokio::sync::oneshot;

const NOTE_LENGTH_MAX: usize = 500;

/// A validated transfer request.
struct TransferOrder {
    to: String,
    amount: Amount,
    currency: Currency,
    note: Option<String>,
}

fn parse_order(body: &[u8]) -> Result<TransferOrder, ApiError> {
    let object = json_object(body)?;
    let fields = Fields(&object);
    let to = fields.required_str("to")?.trim().to_owned();
    let amount = fields.amount("amount")?;
    let currency = fields.currency("currency")?;
    let note = fields.optional_str("note")?.map(str::to_owned);
    if note
        .as_ref()
        .is_some_and(|note| note.chars().count() > NOTE_LENGTH_MAX)
    {
        return Err(ApiError::invalid_param(
            "parameter_invalid",
            "note",
            "note must be at most 500 characters.",
        ));
    }
    Ok(TransferOrder {
        to,
        amount,
        currency,
        note,
    })
}

#[utoipa::path(post, path = "/v1/transfers", tag = "transfers", security(("bearer" = [])), request_body = CreateTransferRequest,
    params(("Idempotency-Key" = String, Header, description = "Required, 1-255 characters")),
    responses((status = 201, body = TransferView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create_transfer(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let user = auth::current_user(&request, &state).await?;
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let keyed = Keyed::from_request(&request, &body)?;
    Ok(respond(send(&state, user, &body, &keyed).await?))
}

/// `POST /v1/transfers` for an authenticated user: the API's and the web app's one path.
pub async fn send(
    state: &AppState,
    user: CurrentUser,
    body: &[u8],
    keyed: &Keyed,
) -> Result<(JsonResponse, bool), ApiError> {
    state
        .rate_limiter
        .admit(&format!("money:{}", user.user_id), state.limits.money_quota)
        .await?;
    let order = parse_order(body)?;
    let caller = user.caller();
    run_keyed(
        state,
        &caller,
        keyed,
        TransferId::generate(),
        |transfer_id, taken_over| execute_transfer(state, user, order, transfer_id, taken_over),
    )
    .await
}

async fn execute_transfer(
    state: &AppState,
    user: CurrentUser,
    order: TransferOrder,
    transfer_id: TransferId,
    taken_over: bool,
) -> Result<JsonResponse, ApiError> {
    // A retry after a crash: if the transfer exists, resume it instead of starting another.
    if taken_over && let Some(existing) = state.store.find_transfer(transfer_id).await? {
        return wait_for_saga(state, SagaStart::Resume(existing), transfer_id).await;
    }
    let recipient = resolve_recipient(state, &order.to).await?;
    if recipient == user.user_id {
        return Err(ApiError::rejection(Rejection::SelfTransfer, Some("to")));
    }
    let source = state
        .store
        .find_account(&Owner::User(user.user_id), order.currency)
        .await?
        .ok_or_else(|| ApiError::rejection(Rejection::InsufficientFunds, Some("amount")))?;
    // Refuse what the committed balance already cannot cover before opening the recipient's
    // account, so a refused transfer leaves nothing behind. The wallet actor still decides.
    if source.balance.available < order.amount.minor_units() {
        return Err(ApiError::rejection(
            Rejection::InsufficientFunds,
            Some("amount"),
        ));
    }
    let target = state
        .store
        .open_account(&Owner::User(recipient), order.currency)
        .await?;
    let now = state.clock.now();
    let transfer = TransferRecord {
        id: transfer_id,
        journal_id: crate::domain::JournalId::from(transfer_id.as_uuid()),
        from: Party::User(user.user_id),
        to: Party::User(recipient),
        kind: TransferKind::P2p,
        reference_id: None,
        source_account: source.id,
        target_account: target.id,
        amount: order.amount,
        currency: order.currency,
        note: order.note,
        state: TransferState::Debited,
        failure_code: None,
        created_at: now,
        updated_at: now,
    };
    let start = SagaStart::New {
        transfer,
        replay: taken_over,
        opening: Opening::Debit,
    };
    wait_for_saga(state, start, transfer_id).await
}

/// Starts the saga and waits for it up to the transfer timeout.
async fn wait_for_saga(
    state: &AppState,
    start: SagaStart,
    transfer_id: TransferId,
) -> Result<JsonResponse, ApiError> {
    let (reply, outcome) = oneshot::channel();
    transfer_saga::start(&state.sagas, start, Some(reply))
        .await
        .map_err(|error| ApiError::unavailable(format!("could not start the transfer: {error}")))?;
    let outcome = tokio::time::timeout(state.limits.transfer_wait_timeout, outcome).await;
    match outcome {
        Ok(Ok(SagaOutcome::Settled(transfer))) => Ok(JsonResponse::new(
            StatusCode::CREATED,
            &TransferView::from(&transfer),
        )),
        Ok(Ok(SagaOutcome::Rejected(rejection))) => {
            Err(ApiError::rejection(rejection, Some("amount")))
        }
        // Unknown outcome: if the debit committed, the transfer exists and will be finished.
        Ok(Ok(SagaOutcome::Unavailable(_))) | Ok(Err(_)) | Err(_) => {
            match state.store.find_transfer(transfer_id).await? {
                Some(transfer) => Ok(JsonResponse::new(
                    StatusCode::CREATED,
                    &TransferView::from(&transfer),
                )),
                None => Err(ApiError::unavailable(
                    "The transfer could not be started; retry with the same Idempotency-Key.",
                )),
            }
        }
    }
}

/// `to` is a user id, an email or an E.164 phone.
async fn resolve_recipient(state: &AppState, to: &str) -> Result<UserId, ApiError> {
    let not_found = || ApiError::rejection(Rejection::RecipientNotFound, Some("to"));
    let user = if let Ok(id) = to.parse::<UserId>() {
        state.store.find_user(id).await?
    } else if to.starts_with('+') {
        let phone = PhoneNumber::parse(to).map_err(|_| not_found())?;
        state.store.find_user_by_phone(&phone).await?
    } else {
        let email = Email::parse(to).map_err(|_| not_found())?;
        state.store.find_user_by_email(&email).await?
    };
    let user = user.ok_or_else(not_found)?;
    user.id.parse().map_err(|_| not_found())
}

#[utoipa::path(get, path = "/v1/transfers/{id}", tag = "transfers", security(("bearer" = [])),
    params(("id" = String, Path, description = "Transfer id")),
    responses((status = 200, body = TransferView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_transfer(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = auth::current_user(&request, &state).await?;
    let id: TransferId = path.parse().map_err(|_| ApiError::not_found("transfer"))?;
    let transfer = state
        .store
        .find_transfer(id)
        .await?
        .filter(|transfer| {
            transfer.kind == TransferKind::P2p
                && (transfer.from == Party::User(user.user_id)
                    || transfer.to == Party::User(user.user_id))
        })
        .ok_or_else(|| ApiError::not_found("transfer"))?;
    Ok(HttpResponse::Ok().json(TransferView::from(&transfer)))
}

#[utoipa::path(get, path = "/v1/transfers", tag = "transfers", security(("bearer" = [])),
    params(
        ("limit" = Option<u64>, Query, description = "1 to 100, default 10"),
        ("starting_after" = Option<String>, Query, description = "Cursor: a transfer id"),
        ("ending_before" = Option<String>, Query, description = "Cursor: a transfer id"),
    ),
    responses((status = 200, body = ListView<TransferView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_transfers(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let user = auth::current_user(&request, &state).await?;
    let page = page_request(&query)?;
    let (transfers, has_more) = state.store.list_transfers(user.user_id, &page).await?;
    let data = transfers.iter().map(TransferView::from).collect();
    Ok(HttpResponse::Ok().json(ListView::new(data, has_more)))
}

//! P2P transfers: create (idempotent; `actors::transfers::Transfers` runs the saga and waits for
//! it up to a timeout), read one, list the caller's sent and received transfers.

use super::AppState;
use super::auth::{self, CurrentUser};
use super::error::{ApiError, ErrorBody};
use super::idempotency::{JsonResponse, Keyed, respond, run_keyed};
use super::request::{Fields, json_object, page_request, read_body};
use super::views::{CreateTransferRequest, ListView, TransferView};
use crate::actors::transfers::{self, TransferError};
use crate::domain::{Amount, Currency, Rejection, TransferId, TransferKind};
use crate::store::transfers::Party;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use std::collections::HashMap;

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
    let order = transfers::TransferOrder {
        from: user.user_id,
        to: order.to,
        amount: order.amount,
        currency: order.currency,
        note: order.note,
    };
    match state.transfers.send(order, transfer_id, taken_over).await {
        Ok(transfer) => Ok(JsonResponse::new(
            StatusCode::CREATED,
            &TransferView::from(&transfer),
        )),
        Err(TransferError::Rejected(rejection)) => {
            let param = match rejection {
                Rejection::RecipientNotFound | Rejection::SelfTransfer => "to",
                _ => "amount",
            };
            Err(ApiError::rejection(rejection, Some(param)))
        }
        Err(TransferError::Unavailable(error)) => {
            tracing::warn!(transfer_id = %transfer_id, %error, "transfer not started");
            Err(ApiError::unavailable(
                "The transfer could not be started; retry with the same Idempotency-Key.",
            ))
        }
    }
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

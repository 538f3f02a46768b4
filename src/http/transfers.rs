//! P2P transfers: create (idempotent; `actors::transfers::Transfers` runs the saga and waits for
//! it up to a timeout), read one, list the caller's sent and received transfers.

use super::AppState;
use super::auth::{self, CurrentUser};
use super::error::{ApiError, ErrorBody};
use super::idempotency::{JsonResponse, Keyed, admit_money, respond, run_keyed};
use super::request::{Fields, json_object, page_request, read_body};
use super::views::{CreateTransferRequest, ListView, TransferView};
use crate::actors::transfer_saga::SagaKeyed;
use crate::actors::transfers::{self, TransferError};
use crate::domain::{Amount, Currency, Rejection, TransferId, TransferKind};
use crate::store::idempotency::{ClaimRow, IdempotencyClaimHeld, IdempotencyScope};
use crate::store::transfers::{Party, TransferRecord};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use std::collections::HashMap;

const NOTE_LENGTH_MAX: usize = 500;

/// A validated transfer request.
#[derive(Debug, Clone)]
struct TransferOrder {
    to: String,
    amount: Amount,
    currency: Currency,
    note: Option<String>,
}

impl TransferOrder {
    fn to_request(&self, user: CurrentUser) -> transfers::TransferOrder {
        transfers::TransferOrder {
            from: user.user_id,
            to: self.to.clone(),
            amount: self.amount,
            currency: self.currency,
            note: self.note.clone(),
        }
    }
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
///
/// Idempotency rides the money transactions: the first request with a key (on this node, the
/// only one; duplicates wait in `InFlightKeys`) claims the key in its debit's transaction and
/// stores its response in the transaction that settles the transfer. Any other case — the key
/// was used before, or is being used on another node, or the request was refused before a debit
/// — goes through the one idempotency path (`run_keyed`), which reads the stored record.
pub async fn send(
    state: &AppState,
    user: CurrentUser,
    body: &[u8],
    keyed: &Keyed,
) -> Result<(JsonResponse, bool), ApiError> {
    let caller = user.caller();
    if let Some(replay) = admit_money(state, user.user_id, &caller, keyed).await? {
        return Ok(replay);
    }
    let order = parse_order(body)?;
    let wait_max = state.limits.transfer_wait_timeout + IN_FLIGHT_WAIT_EXTRA;
    let Some(_in_flight) = state.in_flight.enter(&caller, &keyed.key, wait_max).await else {
        return send_classic(state, user, order, &caller, keyed).await;
    };
    let transfer_id = TransferId::generate();
    let claim = ClaimRow {
        caller: caller.clone(),
        key: keyed.key.clone(),
        fingerprint: keyed.fingerprint.clone(),
        resource_id: transfer_id.to_string(),
        claim_token: uuid::Uuid::now_v7().to_string(),
        now: state.clock.now(),
    };
    let saga_keyed = Box::new(SagaKeyed {
        claim: claim.clone(),
        render: render_transfer,
    });
    let outcome = state
        .transfers
        .send(order.to_request(user), transfer_id, false, Some(saga_keyed))
        .await;
    let scope = IdempotencyScope {
        caller: &caller,
        key: &keyed.key,
    };
    let held = IdempotencyClaimHeld {
        scope,
        claim_token: &claim.claim_token,
    };
    match outcome {
        // Its last step stored exactly this response.
        Ok(settlement) if settlement.settled_by_this_run => Ok((
            JsonResponse {
                status: StatusCode::CREATED,
                body: render_transfer(&settlement.transfer),
            },
            false,
        )),
        // Pending, or settled by another run: store the answer unless one is stored already.
        Ok(settlement) => {
            let body = render_transfer(&settlement.transfer);
            if state
                .store
                .complete_idempotency_key(held, StatusCode::CREATED.as_u16(), &body)
                .await?
            {
                return Ok((
                    JsonResponse {
                        status: StatusCode::CREATED,
                        body,
                    },
                    false,
                ));
            }
            match state.store.stored_idempotent_response(scope).await? {
                Some((status, body)) => Ok((
                    JsonResponse {
                        status: StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED),
                        body,
                    },
                    false,
                )),
                None => Err(ApiError::unavailable(
                    "The transfer's idempotency record is missing; retry with the same Idempotency-Key.",
                )),
            }
        }
        Err(TransferError::Rejected(Rejection::IdempotencyKeyClaimed)) => {
            send_classic(state, user, order, &caller, keyed).await
        }
        // Refused before any money step: nothing holds the key yet; store the refusal.
        Err(TransferError::Rejected(rejection)) => {
            let error = rejection_error(rejection);
            let stored = state
                .store
                .store_first_response(
                    scope,
                    &keyed.fingerprint,
                    transfer_id.to_string(),
                    error.status.as_u16(),
                    &error.body(),
                    state.clock.now(),
                )
                .await?;
            if stored {
                Err(error)
            } else {
                send_classic(state, user, order, &caller, keyed).await
            }
        }
        // The debit's outcome is unknown: give the claim up (if it was written) so that a
        // retry with the key resumes this transfer at once.
        Err(TransferError::Unavailable(error)) => {
            tracing::warn!(transfer_id = %transfer_id, %error, "transfer not started");
            state.store.release_idempotency_key(held).await?;
            Err(transfer_unavailable())
        }
    }
}

/// How much longer than the transfer itself a duplicate waits for the first request.
const IN_FLIGHT_WAIT_EXTRA: std::time::Duration = std::time::Duration::from_secs(5);

/// The idempotency path that reads the key's record first: replays, mismatches, keys in use
/// elsewhere, and takeovers of requests that never finished.
async fn send_classic(
    state: &AppState,
    user: CurrentUser,
    order: TransferOrder,
    caller: &str,
    keyed: &Keyed,
) -> Result<(JsonResponse, bool), ApiError> {
    run_keyed(
        state,
        caller,
        keyed,
        TransferId::generate(),
        |transfer_id, taken_over| execute_transfer(state, user, order, transfer_id, taken_over),
    )
    .await
}

/// The body of a 201 transfer response; also what is stored for its idempotency key.
fn render_transfer(transfer: &TransferRecord) -> String {
    serde_json::to_string(&TransferView::from(transfer)).unwrap_or_default()
}

fn rejection_error(rejection: Rejection) -> ApiError {
    let param = match rejection {
        Rejection::RecipientNotFound | Rejection::SelfTransfer => "to",
        _ => "amount",
    };
    ApiError::rejection(rejection, Some(param))
}

fn transfer_unavailable() -> ApiError {
    ApiError::unavailable("The transfer could not be started; retry with the same Idempotency-Key.")
}

async fn execute_transfer(
    state: &AppState,
    user: CurrentUser,
    order: TransferOrder,
    transfer_id: TransferId,
    taken_over: bool,
) -> Result<JsonResponse, ApiError> {
    match state
        .transfers
        .send(order.to_request(user), transfer_id, taken_over, None)
        .await
    {
        Ok(settlement) => Ok(JsonResponse {
            status: StatusCode::CREATED,
            body: render_transfer(&settlement.transfer),
        }),
        Err(TransferError::Rejected(rejection)) => Err(rejection_error(rejection)),
        Err(TransferError::Unavailable(error)) => {
            tracing::warn!(transfer_id = %transfer_id, %error, "transfer not started");
            Err(transfer_unavailable())
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

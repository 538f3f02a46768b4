//! Payment intents (create, confirm, capture, cancel, read, list), refunds and payouts. Every
//! POST that moves money, or may, takes an `Idempotency-Key`; the handlers parse, check who
//! may act on the object (others' objects are 404), and call `actors::payments`.

use super::AppState;
use super::auth;
use super::error::{ApiError, ErrorBody};
use super::idempotency::{JsonResponse, Keyed, admit_money, respond, run_keyed};
use super::request::{Fields, json_object, page_request, read_body};
use super::views::ListView;
use crate::actors::payments::{PaymentError, visible_to};
use crate::domain::{
    Amount, CaptureMethod, PaymentIntentId, PaymentIntentStatus, PayoutId, RefundId, TransferId,
};
use crate::store::payments::{
    PaymentIntentObject, PaymentIntentRecord, PayoutObject, RefundObject,
};
use crate::store::transfers::Party;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use std::collections::HashMap;
use utoipa::ToSchema;

const DESCRIPTION_LENGTH_MAX: usize = 1000;

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreatePaymentIntentRequest {
    pub amount: i64,
    pub currency: String,
    /// `automatic` (default) or `manual`.
    pub capture_method: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CaptureRequest {
    /// At most the authorised amount; the rest is released. Default: all of it.
    pub amount_to_capture: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateRefundRequest {
    /// The payment intent id.
    pub payment_intent: String,
    /// Default: what is left to refund.
    pub amount: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreatePayoutRequest {
    pub amount: i64,
    pub currency: String,
}

fn payment_error(error: PaymentError, param: Option<&str>) -> ApiError {
    match error {
        PaymentError::Rejected(rejection) => ApiError::rejection(rejection, param),
        PaymentError::Unavailable(detail) => {
            tracing::warn!(%detail, "payment action unavailable");
            ApiError::unavailable(
                "The payment service is unavailable; retry with the same Idempotency-Key.",
            )
        }
    }
}

fn intent_response(status: StatusCode, intent: &PaymentIntentRecord) -> JsonResponse {
    JsonResponse::new(status, &PaymentIntentObject::from(intent))
}

/// The intent, if `viewer` may see it (else 404, as if it did not exist).
async fn visible_intent(
    state: &AppState,
    id: &str,
    viewer: Party,
) -> Result<PaymentIntentRecord, ApiError> {
    let id: PaymentIntentId = id
        .parse()
        .map_err(|_| ApiError::not_found("payment intent"))?;
    state
        .store
        .find_payment_intent(id)
        .await?
        .filter(|intent| visible_to(intent, viewer))
        .ok_or_else(|| ApiError::not_found("payment intent"))
}

fn optional_amount(fields: &Fields<'_>, name: &str) -> Result<Option<Amount>, ApiError> {
    match fields.0.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(_) => fields.amount(name).map(Some),
    }
}

#[utoipa::path(post, path = "/v1/payment_intents", tag = "payments", security(("bearer" = [])),
    request_body = CreatePaymentIntentRequest,
    params(("Idempotency-Key" = String, Header, description = "Required, 1-255 characters")),
    responses((status = 201, body = PaymentIntentObject), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_payment_intent(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth::current_merchant(&request, &state).await?;
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let keyed = Keyed::from_request(&request, &body)?;
    Ok(respond(
        create_intent(&state, merchant, &body, &keyed).await?,
    ))
}

/// `POST /v1/payment_intents` for an authenticated merchant (the API's and the web app's).
pub async fn create_intent(
    state: &AppState,
    merchant: auth::CurrentMerchant,
    body: &[u8],
    keyed: &Keyed,
) -> Result<(JsonResponse, bool), ApiError> {
    let object = json_object(body)?;
    let fields = Fields(&object);
    let amount = fields.amount("amount")?;
    let currency = fields.currency("currency")?;
    let capture_method = match fields.optional_str("capture_method")? {
        None => CaptureMethod::Automatic,
        Some(text) => CaptureMethod::parse(text).ok_or_else(|| {
            ApiError::invalid_param(
                "parameter_invalid",
                "capture_method",
                "capture_method must be automatic or manual.",
            )
        })?,
    };
    let description = fields.optional_str("description")?.map(str::to_owned);
    if description
        .as_ref()
        .is_some_and(|text| text.chars().count() > DESCRIPTION_LENGTH_MAX)
    {
        return Err(ApiError::invalid_param(
            "parameter_invalid",
            "description",
            "description must be at most 1000 characters.",
        ));
    }
    run_keyed(
        state,
        &merchant.caller(),
        keyed,
        PaymentIntentId::generate(),
        |id: PaymentIntentId, taken_over| async move {
            if taken_over && let Some(existing) = state.store.find_payment_intent(id).await? {
                return Ok(intent_response(StatusCode::CREATED, &existing));
            }
            let intent = PaymentIntentRecord {
                id,
                merchant_id: merchant.merchant_id,
                amount,
                currency,
                capture_method,
                description,
                status: PaymentIntentStatus::RequiresConfirmation,
                customer_user_id: None,
                customer_account_id: None,
                hold_id: None,
                amount_capturable: 0,
                amount_received: 0,
                amount_refunded: 0,
                failure_code: None,
                cancellation_reason: None,
                canceled_at: None,
                created_at: state.clock.now(),
                link_token: Some(crate::store::payments::new_link_token()),
            };
            state.store.create_payment_intent(&intent).await?;
            Ok(intent_response(StatusCode::CREATED, &intent))
        },
    )
    .await
}

#[utoipa::path(get, path = "/v1/payment_intents/{id}", tag = "payments", security(("bearer" = [])),
    params(("id" = String, Path, description = "Payment intent id")),
    responses((status = 200, body = PaymentIntentObject), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_payment_intent(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let viewer = auth::current_principal(&request, &state).await?.party();
    let intent = visible_intent(&state, &path, viewer).await?;
    Ok(HttpResponse::Ok().json(PaymentIntentObject::from(&intent)))
}

#[utoipa::path(get, path = "/v1/payment_intents", tag = "payments", security(("bearer" = [])),
    params(
        ("limit" = Option<u64>, Query, description = "1 to 100, default 10"),
        ("starting_after" = Option<String>, Query, description = "Cursor: a payment intent id"),
        ("ending_before" = Option<String>, Query, description = "Cursor: a payment intent id"),
    ),
    responses((status = 200, body = ListView<PaymentIntentObject>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_payment_intents(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let viewer = auth::current_principal(&request, &state).await?.party();
    let page = page_request(&query)?;
    let (intents, has_more) = state.store.list_payment_intents(viewer, &page).await?;
    Ok(HttpResponse::Ok().json(ListView::new(
        intents.iter().map(PaymentIntentObject::from).collect(),
        has_more,
    )))
}

#[utoipa::path(post, path = "/v1/payment_intents/{id}/confirm", tag = "payments", security(("bearer" = [])),
    params(("id" = String, Path, description = "Payment intent id"),
        ("Idempotency-Key" = String, Header, description = "Required, 1-255 characters")),
    responses((status = 200, body = PaymentIntentObject, description = "succeeded (automatic), requires_capture (manual), or processing if the payment is still running"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn confirm_payment_intent(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let user = auth::current_user(&request, &state).await?;
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let keyed = Keyed::from_request(&request, &body)?;
    Ok(respond(confirm(&state, user, &path, &keyed).await?))
}

/// `POST /v1/payment_intents/{id}/confirm` for an authenticated user.
pub async fn confirm(
    state: &AppState,
    user: auth::CurrentUser,
    intent_id: &str,
    keyed: &Keyed,
) -> Result<(JsonResponse, bool), ApiError> {
    if let Some(replay) = admit_money(state, user.user_id, &user.caller(), keyed).await? {
        return Ok(replay);
    }
    // Anyone holding the intent's id (its payment link) may pay it.
    let id: PaymentIntentId = intent_id
        .parse()
        .map_err(|_| ApiError::not_found("payment intent"))?;
    run_keyed(
        state,
        &user.caller(),
        keyed,
        TransferId::generate(),
        |attempt: TransferId, taken_over| async move {
            let intent = state
                .store
                .find_payment_intent(id)
                .await?
                .ok_or_else(|| ApiError::not_found("payment intent"))?;
            let intent = state
                .payments
                .confirm(&intent, user.user_id, attempt, taken_over)
                .await
                .map_err(|error| payment_error(error, None))?;
            Ok(intent_response(StatusCode::OK, &intent))
        },
    )
    .await
}

/// The merchant's own intent, for capture and cancel (another's is 404).
async fn merchants_intent(
    state: &AppState,
    merchant: auth::CurrentMerchant,
    id: &str,
) -> Result<PaymentIntentId, ApiError> {
    let intent = visible_intent(state, id, Party::Merchant(merchant.merchant_id)).await?;
    Ok(intent.id)
}

#[utoipa::path(post, path = "/v1/payment_intents/{id}/capture", tag = "payments", security(("bearer" = [])),
    request_body = CaptureRequest,
    params(("id" = String, Path, description = "Payment intent id"),
        ("Idempotency-Key" = String, Header, description = "Required, 1-255 characters")),
    responses((status = 200, body = PaymentIntentObject), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn capture_payment_intent(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth::current_merchant(&request, &state).await?;
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let keyed = Keyed::from_request(&request, &body)?;
    Ok(respond(
        capture(&state, merchant, &path, &body, &keyed).await?,
    ))
}

/// `POST /v1/payment_intents/{id}/capture` for an authenticated merchant.
pub async fn capture(
    state: &AppState,
    merchant: auth::CurrentMerchant,
    intent_id: &str,
    body: &[u8],
    keyed: &Keyed,
) -> Result<(JsonResponse, bool), ApiError> {
    let id = merchants_intent(state, merchant, intent_id).await?;
    let amount = if body.is_empty() {
        None
    } else {
        let object = json_object(body)?;
        optional_amount(&Fields(&object), "amount_to_capture")?
    };
    run_keyed(
        state,
        &merchant.caller(),
        keyed,
        TransferId::generate(),
        |attempt: TransferId, taken_over| async move {
            let intent = state
                .store
                .find_payment_intent(id)
                .await?
                .ok_or_else(|| ApiError::not_found("payment intent"))?;
            let intent = state
                .payments
                .capture(&intent, amount, attempt, taken_over)
                .await
                .map_err(|error| payment_error(error, Some("amount_to_capture")))?;
            Ok(intent_response(StatusCode::OK, &intent))
        },
    )
    .await
}

#[utoipa::path(post, path = "/v1/payment_intents/{id}/cancel", tag = "payments", security(("bearer" = [])),
    params(("id" = String, Path, description = "Payment intent id"),
        ("Idempotency-Key" = String, Header, description = "Required, 1-255 characters")),
    responses((status = 200, body = PaymentIntentObject), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn cancel_payment_intent(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth::current_merchant(&request, &state).await?;
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let keyed = Keyed::from_request(&request, &body)?;
    Ok(respond(cancel(&state, merchant, &path, &keyed).await?))
}

/// `POST /v1/payment_intents/{id}/cancel` for an authenticated merchant.
pub async fn cancel(
    state: &AppState,
    merchant: auth::CurrentMerchant,
    intent_id: &str,
    keyed: &Keyed,
) -> Result<(JsonResponse, bool), ApiError> {
    let id = merchants_intent(state, merchant, intent_id).await?;
    run_keyed(
        state,
        &merchant.caller(),
        keyed,
        id,
        |id: PaymentIntentId, taken_over| async move {
            let intent = state
                .store
                .find_payment_intent(id)
                .await?
                .ok_or_else(|| ApiError::not_found("payment intent"))?;
            let intent = state
                .payments
                .cancel(&intent, taken_over)
                .await
                .map_err(|error| payment_error(error, None))?;
            Ok(intent_response(StatusCode::OK, &intent))
        },
    )
    .await
}

#[utoipa::path(post, path = "/v1/refunds", tag = "payments", security(("bearer" = [])),
    request_body = CreateRefundRequest,
    params(("Idempotency-Key" = String, Header, description = "Required, 1-255 characters")),
    responses((status = 201, body = RefundObject), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create_refund(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth::current_merchant(&request, &state).await?;
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let keyed = Keyed::from_request(&request, &body)?;
    Ok(respond(refund(&state, merchant, &body, &keyed).await?))
}

/// `POST /v1/refunds` for an authenticated merchant.
pub async fn refund(
    state: &AppState,
    merchant: auth::CurrentMerchant,
    body: &[u8],
    keyed: &Keyed,
) -> Result<(JsonResponse, bool), ApiError> {
    if let Some(replay) =
        admit_money(state, merchant.merchant_id, &merchant.caller(), keyed).await?
    {
        return Ok(replay);
    }
    let object = json_object(body)?;
    let fields = Fields(&object);
    let intent_id = fields.required_str("payment_intent")?.to_owned();
    let amount = optional_amount(&fields, "amount")?;
    let intent = visible_intent(state, &intent_id, Party::Merchant(merchant.merchant_id))
        .await
        .map_err(|error| error.with_param("payment_intent"))?;
    run_keyed(
        state,
        &merchant.caller(),
        keyed,
        RefundId::generate(),
        |refund_id: RefundId, taken_over| async move {
            let intent = state
                .store
                .find_payment_intent(intent.id)
                .await?
                .ok_or_else(|| ApiError::not_found("payment intent"))?;
            let refund = state
                .payments
                .refund(&intent, amount, refund_id, taken_over)
                .await
                .map_err(|error| payment_error(error, Some("amount")))?;
            Ok(JsonResponse::new(
                StatusCode::CREATED,
                &RefundObject::from(&refund),
            ))
        },
    )
    .await
}

#[utoipa::path(get, path = "/v1/refunds/{id}", tag = "payments", security(("bearer" = [])),
    params(("id" = String, Path, description = "Refund id")),
    responses((status = 200, body = RefundObject), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_refund(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let viewer = auth::current_principal(&request, &state).await?.party();
    let id: RefundId = path.parse().map_err(|_| ApiError::not_found("refund"))?;
    let refund = state
        .store
        .find_refund(id)
        .await?
        .filter(|refund| match viewer {
            Party::Merchant(merchant) => refund.merchant_id == merchant,
            Party::User(user) => refund.user_id == user,
        })
        .ok_or_else(|| ApiError::not_found("refund"))?;
    Ok(HttpResponse::Ok().json(RefundObject::from(&refund)))
}

#[utoipa::path(get, path = "/v1/refunds", tag = "payments", security(("bearer" = [])),
    params(
        ("limit" = Option<u64>, Query, description = "1 to 100, default 10"),
        ("starting_after" = Option<String>, Query, description = "Cursor: a refund id"),
        ("ending_before" = Option<String>, Query, description = "Cursor: a refund id"),
    ),
    responses((status = 200, body = ListView<RefundObject>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_refunds(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let viewer = auth::current_principal(&request, &state).await?.party();
    let page = page_request(&query)?;
    let (refunds, has_more) = state.store.list_refunds(viewer, &page).await?;
    Ok(HttpResponse::Ok().json(ListView::new(
        refunds.iter().map(RefundObject::from).collect(),
        has_more,
    )))
}

#[utoipa::path(post, path = "/v1/payouts", tag = "payments", security(("bearer" = [])),
    request_body = CreatePayoutRequest,
    params(("Idempotency-Key" = String, Header, description = "Required, 1-255 characters")),
    responses((status = 201, body = PayoutObject, description = "Funds locked; in_transit once the bank accepted it"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create_payout(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let principal = auth::current_principal(&request, &state).await?;
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let keyed = Keyed::from_request(&request, &body)?;
    Ok(respond(pay_out(&state, principal, &body, &keyed).await?))
}

/// `POST /v1/payouts` for an authenticated user or merchant.
pub async fn pay_out(
    state: &AppState,
    principal: auth::Principal,
    body: &[u8],
    keyed: &Keyed,
) -> Result<(JsonResponse, bool), ApiError> {
    let owner = principal.party();
    if let Some(replay) = admit_money(state, &owner, &principal.caller(), keyed).await? {
        return Ok(replay);
    }
    if state.bank.is_none() {
        return Err(super::onramps::provider_not_configured("The bank"));
    }
    let object = json_object(body)?;
    let fields = Fields(&object);
    let amount = fields.amount("amount")?;
    let currency = fields.currency("currency")?;
    run_keyed(
        state,
        &principal.caller(),
        keyed,
        PayoutId::generate(),
        |payout_id: PayoutId, taken_over| async move {
            let payout = state
                .payments
                .pay_out(owner, amount, currency, payout_id, taken_over)
                .await
                .map_err(|error| payment_error(error, Some("amount")))?;
            Ok(JsonResponse::new(
                StatusCode::CREATED,
                &PayoutObject::from(&payout),
            ))
        },
    )
    .await
}

#[utoipa::path(get, path = "/v1/payouts/{id}", tag = "payments", security(("bearer" = [])),
    params(("id" = String, Path, description = "Payout id")),
    responses((status = 200, body = PayoutObject), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_payout(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let owner = auth::current_principal(&request, &state).await?.party();
    let id: PayoutId = path.parse().map_err(|_| ApiError::not_found("payout"))?;
    let payout = state
        .store
        .find_payout(id)
        .await?
        .filter(|payout| payout.owner == owner)
        .ok_or_else(|| ApiError::not_found("payout"))?;
    Ok(HttpResponse::Ok().json(PayoutObject::from(&payout)))
}

#[utoipa::path(get, path = "/v1/payouts", tag = "payments", security(("bearer" = [])),
    params(
        ("limit" = Option<u64>, Query, description = "1 to 100, default 10"),
        ("starting_after" = Option<String>, Query, description = "Cursor: a payout id"),
        ("ending_before" = Option<String>, Query, description = "Cursor: a payout id"),
    ),
    responses((status = 200, body = ListView<PayoutObject>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_payouts(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let owner = auth::current_principal(&request, &state).await?.party();
    let page = page_request(&query)?;
    let (payouts, has_more) = state.store.list_payouts(owner, &page).await?;
    Ok(HttpResponse::Ok().json(ListView::new(
        payouts.iter().map(PayoutObject::from).collect(),
        has_more,
    )))
}

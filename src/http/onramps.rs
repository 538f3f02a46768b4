//! On-ramps: a user asks to top up from the bank (or Stripe); the answer carries the page to
//! approve the payment on. The money arrives later, through the provider's webhook.

use super::AppState;
use super::auth::{self, CurrentUser};
use super::error::{ApiError, ErrorBody, ErrorType};
use super::idempotency::{JsonResponse, Keyed, admit_money, respond, run_keyed};
use super::request::{Fields, json_object, page_request, read_body};
use super::views::{CreateOnrampRequest, ListView, OnrampView};
use crate::domain::{Amount, Currency, OnrampId, OnrampProvider, OnrampStatus};
use crate::providers::bank::PaymentRequest;
use crate::providers::stripe::CheckoutOrder;
use crate::store::accounts::Owner;
use crate::store::onramps::OnrampRecord;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use std::collections::HashMap;

struct OnrampOrder {
    provider: OnrampProvider,
    amount: Amount,
    currency: Currency,
}

fn parse_order(body: &[u8]) -> Result<OnrampOrder, ApiError> {
    let object = json_object(body)?;
    let fields = Fields(&object);
    let provider = OnrampProvider::parse(fields.required_str("provider")?).ok_or_else(|| {
        ApiError::invalid_param(
            "parameter_invalid",
            "provider",
            "provider must be bank or stripe.",
        )
    })?;
    Ok(OnrampOrder {
        provider,
        amount: fields.amount("amount")?,
        currency: fields.currency("currency")?,
    })
}

#[utoipa::path(post, path = "/v1/onramps", tag = "onramps", security(("bearer" = [])), request_body = CreateOnrampRequest,
    params(("Idempotency-Key" = String, Header, description = "Required, 1-255 characters")),
    responses((status = 201, body = OnrampView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn create_onramp(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let user = auth::current_user(&request, &state).await?;
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let keyed = Keyed::from_request(&request, &body)?;
    Ok(respond(top_up(&state, user, &body, &keyed).await?))
}

/// `POST /v1/onramps` for an authenticated user: the API's and the web app's one path.
pub async fn top_up(
    state: &AppState,
    user: CurrentUser,
    body: &[u8],
    keyed: &Keyed,
) -> Result<(JsonResponse, bool), ApiError> {
    if let Some(replay) = admit_money(state, user.user_id, &user.caller(), keyed).await? {
        return Ok(replay);
    }
    let order = parse_order(body)?;
    if order.provider == OnrampProvider::Stripe && state.stripe.is_none() {
        return Err(provider_not_configured("Stripe").with_param("provider"));
    }
    if order.provider == OnrampProvider::Bank && state.bank.is_none() {
        return Err(provider_not_configured("The bank").with_param("provider"));
    }
    let caller = user.caller();
    run_keyed(
        state,
        &caller,
        keyed,
        OnrampId::generate(),
        |id, taken_over| execute_onramp(state, user, order, id, taken_over),
    )
    .await
}

async fn execute_onramp(
    state: &AppState,
    user: CurrentUser,
    order: OnrampOrder,
    id: OnrampId,
    taken_over: bool,
) -> Result<JsonResponse, ApiError> {
    let existing = if taken_over {
        state.store.find_onramp(id).await?
    } else {
        None
    };
    let onramp = match existing {
        Some(onramp) => onramp,
        None => {
            let account = state
                .store
                .open_account(&Owner::User(user.user_id), order.currency)
                .await?;
            let now = state.clock.now();
            let onramp = OnrampRecord {
                id,
                user_id: user.user_id,
                account_id: account.id,
                provider: order.provider,
                amount: order.amount,
                currency: order.currency,
                status: OnrampStatus::Processing,
                redirect_url: None,
                provider_reference: None,
                failure_code: None,
                created_at: now,
                updated_at: now,
            };
            state.store.create_onramp(&onramp).await?;
            onramp
        }
    };
    if onramp.redirect_url.is_some() {
        return Ok(JsonResponse::new(
            StatusCode::CREATED,
            &OnrampView::from(&onramp),
        ));
    }
    let (redirect_url, provider_reference) = match onramp.provider {
        OnrampProvider::Bank => request_bank_payment(state, &onramp).await?,
        OnrampProvider::Stripe => request_stripe_session(state, &onramp).await?,
    };
    state
        .store
        .set_onramp_redirect(onramp.id, &redirect_url, &provider_reference)
        .await?;
    let onramp = OnrampRecord {
        redirect_url: Some(redirect_url),
        provider_reference: Some(provider_reference),
        ..onramp
    };
    Ok(JsonResponse::new(
        StatusCode::CREATED,
        &OnrampView::from(&onramp),
    ))
}

/// 503 `provider_not_configured` for a provider this walleti has no credentials for.
pub fn provider_not_configured(provider: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorType::ApiError,
        "provider_not_configured",
        format!("{provider} is not configured on this walleti."),
    )
}

/// Asks the bank to collect the money; returns (approval page, bank payment id).
async fn request_bank_payment(
    state: &AppState,
    onramp: &OnrampRecord,
) -> Result<(String, String), ApiError> {
    let callback_url = format!("{}/webhooks/bank", state.public_url);
    let reference = onramp.id.to_string();
    let bank = state
        .bank
        .as_ref()
        .ok_or_else(|| provider_not_configured("The bank"))?;
    let payment = bank
        .create_payment(PaymentRequest {
            reference: &reference,
            amount: onramp.amount.minor_units(),
            currency: onramp.currency.code(),
            callback_url: &callback_url,
        })
        .await
        .map_err(|error| {
            tracing::warn!(%error, onramp_id = %onramp.id, "bank payment request failed");
            ApiError::unavailable("The bank is unavailable; retry with the same Idempotency-Key.")
        })?;
    Ok((payment.redirect_url, payment.id))
}

/// Creates the Stripe Checkout Session; returns (checkout URL, session id).
async fn request_stripe_session(
    state: &AppState,
    onramp: &OnrampRecord,
) -> Result<(String, String), ApiError> {
    let stripe = state
        .stripe
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("Stripe is not configured on this walleti."))?;
    let session = stripe
        .create_session(CheckoutOrder {
            onramp: onramp.id,
            amount: onramp.amount.minor_units(),
            currency: onramp.currency.code(),
        })
        .await
        .map_err(|error| {
            tracing::warn!(%error, onramp_id = %onramp.id, "stripe checkout session failed");
            ApiError::unavailable("Stripe is unavailable; retry with the same Idempotency-Key.")
        })?;
    Ok((session.url, session.id))
}

#[utoipa::path(get, path = "/v1/onramps/{id}", tag = "onramps", security(("bearer" = [])),
    params(("id" = String, Path, description = "On-ramp id")),
    responses((status = 200, body = OnrampView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_onramp(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = auth::current_user(&request, &state).await?;
    let id: OnrampId = path.parse().map_err(|_| ApiError::not_found("onramp"))?;
    let onramp = state
        .store
        .find_onramp(id)
        .await?
        .filter(|onramp| onramp.user_id == user.user_id)
        .ok_or_else(|| ApiError::not_found("onramp"))?;
    Ok(HttpResponse::Ok().json(OnrampView::from(&onramp)))
}

#[utoipa::path(get, path = "/v1/onramps", tag = "onramps", security(("bearer" = [])),
    params(
        ("limit" = Option<u64>, Query, description = "1 to 100, default 10"),
        ("starting_after" = Option<String>, Query, description = "Cursor: an on-ramp id"),
        ("ending_before" = Option<String>, Query, description = "Cursor: an on-ramp id"),
    ),
    responses((status = 200, body = ListView<OnrampView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_onramps(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let user = auth::current_user(&request, &state).await?;
    let page = page_request(&query)?;
    let (onramps, has_more) = state.store.list_onramps(user.user_id, &page).await?;
    Ok(HttpResponse::Ok().json(ListView::new(
        onramps.iter().map(OnrampView::from).collect(),
        has_more,
    )))
}

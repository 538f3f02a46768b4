//! Merchants' webhook endpoints (register with an event filter, list, read, update, enable or
//! disable) and their deliveries with every attempt (list, read, re-send by hand). The secret
//! that signs an endpoint's webhooks is shown once, when the endpoint is created.

use super::AppState;
use super::auth::{self, CurrentMerchant};
use super::error::{ApiError, ErrorBody};
use super::request::{Fields, json_object, page_request, read_body};
use super::views::{ListView, timestamp};
use crate::actors::webhook_dispatcher::DispatcherMsg;
use crate::config::generate_token;
use crate::domain::{WebhookDeliveryId, WebhookEndpointId};
use crate::store::entities::{webhook_attempts, webhook_deliveries, webhook_endpoints};
use crate::store::merchant_webhooks::{ENDPOINT_ENABLED, MERCHANT_EVENT_TYPES};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use utoipa::ToSchema;

const URL_LENGTH_MAX: usize = 2048;
const RESEND_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointView {
    pub id: String,
    /// Always `webhook_endpoint`.
    pub object: &'static str,
    pub url: String,
    /// Event types sent to this endpoint; `*` is all of them.
    pub events: Vec<String>,
    /// Signs the webhooks (`Walleti-Signature`). Present only when the endpoint is created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `enabled` or `disabled`.
    pub status: String,
    /// Why walleti disabled the endpoint (its deliveries kept failing).
    pub disabled_reason: Option<String>,
    pub created_at: String,
}

impl From<&webhook_endpoints::Model> for WebhookEndpointView {
    fn from(endpoint: &webhook_endpoints::Model) -> WebhookEndpointView {
        WebhookEndpointView {
            id: endpoint.id.clone(),
            object: "webhook_endpoint",
            url: endpoint.url.clone(),
            events: serde_json::from_str(&endpoint.events).unwrap_or_default(),
            secret: None,
            status: endpoint.status.clone(),
            disabled_reason: endpoint.disabled_reason.clone(),
            created_at: timestamp(endpoint.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAttemptView {
    /// 1 for the first scheduled attempt.
    pub attempt: i32,
    /// `schedule` or `manual`.
    pub trigger: String,
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub created_at: String,
}

impl From<&webhook_attempts::Model> for WebhookAttemptView {
    fn from(attempt: &webhook_attempts::Model) -> WebhookAttemptView {
        WebhookAttemptView {
            attempt: attempt.attempt,
            trigger: attempt.trigger.clone(),
            status_code: attempt.status_code,
            latency_ms: attempt.latency_ms,
            error: attempt.error.clone(),
            created_at: timestamp(attempt.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDeliveryView {
    pub id: String,
    /// Always `webhook_delivery`.
    pub object: &'static str,
    pub endpoint: String,
    /// The event's id (the same in every attempt: receivers deduplicate on it).
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    /// Scheduled attempts made so far.
    pub attempts: i32,
    pub next_attempt_at: Option<String>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
    pub created_at: String,
    /// Every attempt, when one delivery is read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<WebhookAttemptView>>,
}

impl From<&webhook_deliveries::Model> for WebhookDeliveryView {
    fn from(delivery: &webhook_deliveries::Model) -> WebhookDeliveryView {
        WebhookDeliveryView {
            id: delivery.id.clone(),
            object: "webhook_delivery",
            endpoint: delivery.endpoint_id.clone(),
            event_id: delivery.event_id.clone(),
            event_type: delivery.event_type.clone(),
            status: delivery.status.clone(),
            attempts: delivery.attempts,
            next_attempt_at: delivery.next_attempt_at.map(timestamp),
            last_status_code: delivery.last_status_code,
            last_error: delivery.last_error.clone(),
            delivered_at: delivery.delivered_at.map(timestamp),
            created_at: timestamp(delivery.created_at),
            attempt_log: None,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateWebhookEndpointRequest {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Event types, or `["*"]` for all.
    pub events: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateWebhookEndpointRequest {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// `enabled` (also clears the reason it was disabled) or `disabled`.
    pub status: Option<String>,
}

/// Endpoints one merchant may have: each one multiplies the deliveries of every event.
pub const ENDPOINTS_PER_MERCHANT_MAX: u64 = 16;

/// Manual re-sends per merchant: each one is an outbound request the merchant triggers.
const RESEND_QUOTA: crate::config::Quota = crate::config::Quota {
    requests: 10,
    period: std::time::Duration::from_secs(60),
    burst: 10,
};

/// One manual re-send by `merchant` (the API's and the web app's): 429 past `RESEND_QUOTA`.
pub async fn admit_resend(
    state: &AppState,
    merchant: crate::domain::MerchantId,
) -> Result<(), ApiError> {
    state
        .rate_limiter
        .admit(&format!("resend:{merchant}"), RESEND_QUOTA)
        .await
}

/// Refuses, up front, an IP-literal URL that is not public (names are checked at connect
/// time, when they resolve).
fn check_destination(state: &AppState, url: &str) -> Result<(), ApiError> {
    if state.webhook_allow_private_networks {
        return Ok(());
    }
    let public = reqwest::Url::parse(url)
        .ok()
        .is_some_and(|url| crate::providers::outbound::check_literal_host(&url).is_ok());
    if public {
        Ok(())
    } else {
        Err(ApiError::invalid_param(
            "url_invalid",
            "url",
            "url must point to a public internet address.",
        ))
    }
}

fn parse_url(text: &str) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::invalid_param(
            "url_invalid",
            "url",
            "url must be an absolute http:// or https:// URL.",
        )
    };
    if text.len() > URL_LENGTH_MAX {
        return Err(invalid());
    }
    let url = reqwest::Url::parse(text).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid());
    }
    Ok(url.to_string())
}

fn parse_events(value: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let invalid = |message: String| ApiError::invalid_param("events_invalid", "events", message);
    let Some(Value::Array(items)) = value else {
        return Err(invalid(
            "events must be a non-empty array of event types.".into(),
        ));
    };
    let mut events = Vec::with_capacity(items.len());
    for item in items {
        let Some(event) = item.as_str() else {
            return Err(invalid("events must be strings.".into()));
        };
        if event != "*" && !MERCHANT_EVENT_TYPES.contains(&event) {
            return Err(invalid(format!(
                "Unknown event type {event}; expected * or one of {}.",
                MERCHANT_EVENT_TYPES.join(", ")
            )));
        }
        if !events.iter().any(|known| known == event) {
            events.push(event.to_owned());
        }
    }
    if events.is_empty() {
        return Err(invalid("events must not be empty.".into()));
    }
    Ok(events)
}

async fn own_endpoint(
    state: &AppState,
    merchant: &CurrentMerchant,
    id: &str,
) -> Result<webhook_endpoints::Model, ApiError> {
    let id: WebhookEndpointId = id
        .parse()
        .map_err(|_| ApiError::not_found("webhook endpoint"))?;
    state
        .store
        .find_webhook_endpoint(id)
        .await?
        .filter(|endpoint| endpoint.merchant_id == merchant.merchant_id.to_string())
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))
}

async fn own_delivery(
    state: &AppState,
    merchant: &CurrentMerchant,
    id: &str,
) -> Result<(WebhookDeliveryId, webhook_deliveries::Model), ApiError> {
    let id: WebhookDeliveryId = id
        .parse()
        .map_err(|_| ApiError::not_found("webhook delivery"))?;
    let delivery = state
        .store
        .find_webhook_delivery(id)
        .await?
        .filter(|delivery| delivery.merchant_id == merchant.merchant_id.to_string())
        .ok_or_else(|| ApiError::not_found("webhook delivery"))?;
    Ok((id, delivery))
}

async fn delivery_with_attempts(
    state: &AppState,
    id: WebhookDeliveryId,
    delivery: &webhook_deliveries::Model,
) -> Result<WebhookDeliveryView, ApiError> {
    let attempts = state.store.webhook_attempts(id).await?;
    Ok(WebhookDeliveryView {
        attempt_log: Some(attempts.iter().map(WebhookAttemptView::from).collect()),
        ..WebhookDeliveryView::from(delivery)
    })
}

#[utoipa::path(post, path = "/v1/webhook_endpoints", tag = "webhooks", security(("bearer" = [])),
    request_body = CreateWebhookEndpointRequest,
    responses((status = 201, body = WebhookEndpointView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_endpoint(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth::current_merchant(&request, &state).await?;
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    Ok(HttpResponse::Created().json(register(&state, merchant, &body).await?))
}

/// `POST /v1/webhook_endpoints`: the secret is in this answer only.
pub async fn register(
    state: &AppState,
    merchant: CurrentMerchant,
    body: &[u8],
) -> Result<WebhookEndpointView, ApiError> {
    let object = json_object(body)?;
    let url = parse_url(Fields(&object).required_str("url")?)?;
    check_destination(state, &url)?;
    let events = parse_events(object.get("events"))?;
    let secret = generate_token("whsec");
    let Some(endpoint) = state
        .store
        .create_webhook_endpoint(
            merchant.merchant_id,
            &url,
            &events,
            &secret,
            ENDPOINTS_PER_MERCHANT_MAX,
            state.clock.now(),
        )
        .await?
    else {
        return Err(ApiError::invalid_request(
            "webhook_endpoints_limit_reached",
            format!(
                "A merchant may have at most {ENDPOINTS_PER_MERCHANT_MAX} webhook endpoints; update or disable one instead."
            ),
        ));
    };
    Ok(WebhookEndpointView {
        secret: Some(secret),
        ..WebhookEndpointView::from(&endpoint)
    })
}

#[utoipa::path(get, path = "/v1/webhook_endpoints", tag = "webhooks", security(("bearer" = [])),
    params(
        ("limit" = Option<u64>, Query, description = "1 to 100, default 10"),
        ("starting_after" = Option<String>, Query, description = "Cursor: an endpoint id"),
        ("ending_before" = Option<String>, Query, description = "Cursor: an endpoint id"),
    ),
    responses((status = 200, body = ListView<WebhookEndpointView>), (status = 401, body = ErrorBody)))]
pub async fn list_endpoints(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth::current_merchant(&request, &state).await?;
    let page = page_request(&query)?;
    let (endpoints, has_more) = state
        .store
        .list_webhook_endpoints(merchant.merchant_id, &page)
        .await?;
    Ok(HttpResponse::Ok().json(ListView::new(
        endpoints.iter().map(WebhookEndpointView::from).collect(),
        has_more,
    )))
}

#[utoipa::path(get, path = "/v1/webhook_endpoints/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "Webhook endpoint id")),
    responses((status = 200, body = WebhookEndpointView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_endpoint(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth::current_merchant(&request, &state).await?;
    let endpoint = own_endpoint(&state, &merchant, &path).await?;
    Ok(HttpResponse::Ok().json(WebhookEndpointView::from(&endpoint)))
}

#[utoipa::path(post, path = "/v1/webhook_endpoints/{id}", tag = "webhooks", security(("bearer" = [])),
    request_body = UpdateWebhookEndpointRequest,
    params(("id" = String, Path, description = "Webhook endpoint id")),
    responses((status = 200, body = WebhookEndpointView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_endpoint(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth::current_merchant(&request, &state).await?;
    let endpoint = own_endpoint(&state, &merchant, &path).await?;
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let object = json_object(&body)?;
    let fields = Fields(&object);
    let url = fields.optional_str("url")?.map(parse_url).transpose()?;
    if let Some(url) = &url {
        check_destination(&state, url)?;
    }
    let events = match object.get("events") {
        None | Some(Value::Null) => None,
        value => Some(parse_events(value)?),
    };
    let enabled = match fields.optional_str("status")? {
        None => None,
        Some("enabled") => Some(true),
        Some("disabled") => Some(false),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "parameter_invalid",
                "status",
                "status must be enabled or disabled.",
            ));
        }
    };
    let id: WebhookEndpointId = endpoint
        .id
        .parse()
        .map_err(|_| ApiError::not_found("webhook endpoint"))?;
    state
        .store
        .update_webhook_endpoint(
            id,
            url.as_deref(),
            events.as_deref(),
            enabled,
            state.clock.now(),
        )
        .await?;
    let endpoint = own_endpoint(&state, &merchant, &path).await?;
    debug_assert!(enabled != Some(true) || endpoint.status == ENDPOINT_ENABLED);
    Ok(HttpResponse::Ok().json(WebhookEndpointView::from(&endpoint)))
}

#[utoipa::path(get, path = "/v1/webhook_endpoints/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "Webhook endpoint id"),
        ("limit" = Option<u64>, Query, description = "1 to 100, default 10"),
        ("starting_after" = Option<String>, Query, description = "Cursor: a delivery id"),
        ("ending_before" = Option<String>, Query, description = "Cursor: a delivery id"),
    ),
    responses((status = 200, body = ListView<WebhookDeliveryView>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_deliveries(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth::current_merchant(&request, &state).await?;
    let endpoint = own_endpoint(&state, &merchant, &path).await?;
    let page = page_request(&query)?;
    let id: WebhookEndpointId = endpoint
        .id
        .parse()
        .map_err(|_| ApiError::not_found("webhook endpoint"))?;
    let (deliveries, has_more) = state.store.list_webhook_deliveries(id, &page).await?;
    Ok(HttpResponse::Ok().json(ListView::new(
        deliveries.iter().map(WebhookDeliveryView::from).collect(),
        has_more,
    )))
}

#[utoipa::path(get, path = "/v1/webhook_deliveries/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "Webhook delivery id")),
    responses((status = 200, body = WebhookDeliveryView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_delivery(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth::current_merchant(&request, &state).await?;
    let (id, delivery) = own_delivery(&state, &merchant, &path).await?;
    Ok(HttpResponse::Ok().json(delivery_with_attempts(&state, id, &delivery).await?))
}

#[utoipa::path(post, path = "/v1/webhook_deliveries/{id}/resend", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "Webhook delivery id")),
    responses((status = 200, body = WebhookDeliveryView, description = "The delivery after the manual attempt"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn resend_delivery(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth::current_merchant(&request, &state).await?;
    let (id, _) = own_delivery(&state, &merchant, &path).await?;
    admit_resend(&state, merchant.merchant_id).await?;
    let sent = state
        .webhook_dispatcher
        .call(
            |reply| DispatcherMsg::Resend(id, reply),
            Some(RESEND_TIMEOUT),
        )
        .await;
    match sent {
        Ok(ractor::rpc::CallResult::Success(Ok(()))) => {}
        Ok(ractor::rpc::CallResult::Success(Err(error))) => {
            return Err(ApiError::unavailable(format!(
                "Could not re-send: {error}."
            )));
        }
        _ => {
            return Err(ApiError::unavailable(
                "The webhook dispatcher did not answer in time.",
            ));
        }
    }
    let (id, delivery) = own_delivery(&state, &merchant, &path).await?;
    Ok(HttpResponse::Ok().json(delivery_with_attempts(&state, id, &delivery).await?))
}

//! Incoming provider webhooks. The bank's: verify `Walleti-Signature` over the raw body (any
//! configured secret, constant time, 300 s tolerance). Stripe's: verify `Stripe-Signature` with
//! `stripe_webhook::Webhook::construct_event`. Then store the event in the inbox (unique on
//! provider and event id), answer 2xx, and nudge the provider's ingestor actor that processes
//! it. Anything that fails verification is a 400 and nothing is stored.

use super::AppState;
use super::error::ApiError;
use super::request::read_body;
use crate::actors::webhook_ingestor::IngestorMsg;
use crate::domain::OnrampProvider;
use crate::domain::signature;
use crate::store::onramps::InboxEvent;
use actix_web::{HttpRequest, HttpResponse, web};

pub const BANK_SIGNATURE_HEADER: &str = "Walleti-Signature";

pub async fn bank_webhook(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let header = request
        .headers()
        .get(BANK_SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok());
    let now = state.clock.now().timestamp();
    if let Err(error) = signature::verify(header, &body, &state.bank_webhook_secrets, now) {
        return Err(refuse(&state, OnrampProvider::Bank, &error));
    }
    let event: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::invalid_request("invalid_json", "The event is not valid JSON."))?;
    let (Some(event_id), Some(event_type)) = (event["id"].as_str(), event["type"].as_str()) else {
        return Err(ApiError::invalid_request(
            "invalid_event",
            "The event needs an id and a type.",
        ));
    };
    let text = String::from_utf8_lossy(&body);
    // Processing happens in the ingestor; if the nudge is lost its timer catches up.
    let event = InboxEvent {
        provider: OnrampProvider::Bank,
        event_id,
        event_type,
        payload: &text,
    };
    store_and_nudge(&state, &event, &state.bank_ingestor).await
}

pub const STRIPE_SIGNATURE_HEADER: &str = "Stripe-Signature";

pub async fn stripe_webhook(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (Some(ingestor), Some(secret)) = (&state.stripe_ingestor, &state.stripe_webhook_secret)
    else {
        return Err(ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            super::error::ErrorType::ApiError,
            "provider_not_configured",
            "Stripe webhooks are not configured on this walleti.",
        ));
    };
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::invalid_request("invalid_json", "The event is not UTF-8."))?;
    let header = request
        .headers()
        .get(STRIPE_SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| {
            refuse(
                &state,
                OnrampProvider::Stripe,
                &"the Stripe-Signature header is missing",
            )
        })?;
    let (event_id, event_type) =
        match stripe_webhook::Webhook::construct_event(text, header, secret) {
            Ok(event) => (event.id.to_string(), event.type_.to_string()),
            // The signature and timestamp were verified before parsing; an event async-stripe cannot
            // type (a newer API version, an object shape it does not know) is still Stripe's and is
            // stored, so that it is never lost to endless 400s.
            Err(stripe_webhook::WebhookError::BadParse(reason)) => {
                let event: serde_json::Value = serde_json::from_str(text).map_err(|_| {
                    ApiError::invalid_request("invalid_json", "The event is not valid JSON.")
                })?;
                let (Some(id), Some(kind)) = (event["id"].as_str(), event["type"].as_str()) else {
                    return Err(ApiError::invalid_request(
                        "invalid_event",
                        "The event needs an id and a type.",
                    ));
                };
                tracing::warn!(%reason, event_id = id, "stripe event stored untyped");
                (id.to_owned(), kind.to_owned())
            }
            Err(error) => return Err(refuse(&state, OnrampProvider::Stripe, &error)),
        };
    let event = InboxEvent {
        provider: OnrampProvider::Stripe,
        event_id: &event_id,
        event_type: &event_type,
        payload: text,
    };
    store_and_nudge(&state, &event, ingestor).await
}

/// Counts and logs a refused event; the sender gets a 400 and nothing is stored.
fn refuse(state: &AppState, provider: OnrampProvider, error: &dyn std::fmt::Display) -> ApiError {
    state
        .metrics
        .webhook_events_total
        .with_label_values(&[provider.as_str(), "unknown", "rejected"])
        .inc();
    tracing::warn!(provider = provider.as_str(), %error, "webhook refused");
    ApiError::invalid_request(
        "invalid_signature",
        format!("Webhook verification failed: {error}."),
    )
}

/// Stores a verified event once (unique on provider and event id), acknowledges it, and nudges
/// the provider's ingestor.
async fn store_and_nudge(
    state: &AppState,
    event: &InboxEvent<'_>,
    ingestor: &ractor::ActorRef<IngestorMsg>,
) -> Result<HttpResponse, ApiError> {
    let stored = state
        .store
        .store_inbox_event(event, state.clock.now())
        .await?;
    let outcome = if stored { "received" } else { "duplicate" };
    state
        .metrics
        .webhook_events_total
        .with_label_values(&[event.provider.as_str(), event.event_type, outcome])
        .inc();
    if stored {
        let _ = ingestor.cast(IngestorMsg::Process);
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({"received": true, "duplicate": !stored})))
}

/// Twilio's delivery-status callback for an SMS: verified with `X-Twilio-Signature` (constant
/// time) against the callback URL walleti gave Twilio; `delivered` / `failed` / `undelivered`
/// settle the delivery, other statuses (queued, sending, sent) are acknowledged.
pub async fn twilio_status(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Some(twilio) = &state.twilio else {
        return Err(ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            super::error::ErrorType::ApiError,
            "provider_not_configured",
            "Twilio is not configured on this walleti.",
        ));
    };
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let params: Vec<(String, String)> = url_decoded_pairs(&String::from_utf8_lossy(&body));
    let signature = request
        .headers()
        .get("X-Twilio-Signature")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !twilio.verify_callback(&twilio.status_callback_url, &params, signature) {
        tracing::warn!("twilio status callback refused");
        return Err(ApiError::invalid_request(
            "invalid_signature",
            "Webhook verification failed.",
        ));
    }
    let field = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let (Some(sid), Some(status)) = (field("MessageSid"), field("MessageStatus")) else {
        return Err(ApiError::invalid_request(
            "invalid_event",
            "MessageSid and MessageStatus are required.",
        ));
    };
    let outcome = match status.as_str() {
        "delivered" => Some(("delivered", None)),
        "failed" | "undelivered" => Some((
            "failed",
            Some(format!(
                "twilio {status} (error {})",
                field("ErrorCode").unwrap_or_default()
            )),
        )),
        _ => None,
    };
    if let Some((status, error)) = outcome {
        state
            .store
            .record_delivery_outcome("sms", &sid, status, error, state.clock.now())
            .await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Decodes `application/x-www-form-urlencoded` pairs.
fn url_decoded_pairs(body: &str) -> Vec<(String, String)> {
    fn decode(text: &str) -> String {
        let bytes = text.replace('+', " ").into_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut index = 0;
        while index < bytes.len() {
            let hex = (bytes[index] == b'%' && index + 2 < bytes.len())
                .then(|| {
                    std::str::from_utf8(&bytes[index + 1..index + 3])
                        .ok()
                        .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                })
                .flatten();
            match hex {
                Some(byte) => {
                    out.push(byte);
                    index += 3;
                }
                None => {
                    out.push(bytes[index]);
                    index += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => (decode(key), decode(value)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

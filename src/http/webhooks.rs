//! Incoming provider webhooks. The bank's: verify `Walleti-Signature` over the raw body (any
//! configured secret, constant time, 300 s tolerance), store the event in the inbox (unique on
//! provider and event id), answer 2xx, and nudge the ingestor actor that processes it.
//! Anything that fails verification is a 400 and nothing is stored.

use super::AppState;
use super::error::ApiError;
use super::request::read_body;
use crate::actors::bank_ingestor::IngestorMsg;
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
        state
            .metrics
            .webhook_events_total
            .with_label_values(&["bank", "unknown", "rejected"])
            .inc();
        tracing::warn!(%error, "bank webhook refused");
        return Err(ApiError::invalid_request(
            "invalid_signature",
            format!("Webhook signature verification failed: {error}."),
        ));
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
    let stored = state
        .store
        .store_inbox_event(
            &InboxEvent {
                provider: OnrampProvider::Bank,
                event_id,
                event_type,
                payload: &text,
            },
            state.clock.now(),
        )
        .await?;
    let outcome = if stored { "received" } else { "duplicate" };
    state
        .metrics
        .webhook_events_total
        .with_label_values(&["bank", event_type, outcome])
        .inc();
    if stored {
        // Processing happens in the ingestor; if this nudge is lost its timer catches up.
        let _ = state.bank_ingestor.cast(IngestorMsg::Process);
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({"received": true, "duplicate": !stored})))
}

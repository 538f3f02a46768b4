//! Operations endpoints: liveness, readiness (database reachable), Prometheus metrics, and the
//! OpenAPI document generated from the handlers' annotations.

use super::AppState;
use super::error::ErrorBody;
use super::views::*;
use actix_web::{HttpResponse, web};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(title = "walleti", description = "Digital wallet and payments platform. Amounts are integer minor units."),
    paths(
        super::users::create_user,
        super::users::create_session,
        super::users::delete_current_session,
        super::users::me,
        super::users::get_user,
        super::users::list_users,
        super::users::get_session,
        super::users::list_sessions,
        super::users::revoke_session,
        super::users::revoke_all_sessions,
        super::users::change_password,
        super::verifications::request_verification,
        super::verifications::confirm_verification,
        super::wallet::get_wallet,
        super::wallet::list_entries,
        super::transfers::create_transfer,
        super::transfers::get_transfer,
        super::transfers::list_transfers,
        super::onramps::create_onramp,
        super::onramps::get_onramp,
        super::onramps::list_onramps,
        super::admin::create_adjustment,
        super::admin::get_adjustment,
        super::admin::list_adjustments,
        super::notifications::list_notifications,
        super::notifications::set_preferences,
        super::notifications::get_preferences,
        super::notifications::register_device,
        super::notifications::list_devices,
        super::notifications::get_device,
        super::admin::run_reconciliation,
        super::admin::list_actors,
        super::admin::get_reconciliation,
        super::admin::list_reconciliations,
        super::merchants::create_merchant,
        super::merchants::create_merchant_session,
        super::merchants::delete_current_merchant_session,
        super::merchants::list_merchant_sessions,
        super::merchants::revoke_merchant_session,
        super::merchants::revoke_all_merchant_sessions,
        super::merchants::change_merchant_password,
        super::merchants::merchant_me,
        super::merchants::create_api_key,
        super::merchants::list_api_keys,
        super::merchants::get_api_key,
        super::merchants::revoke_api_key,
        super::payments::create_payment_intent,
        super::payments::get_payment_intent,
        super::payments::list_payment_intents,
        super::payments::confirm_payment_intent,
        super::payments::capture_payment_intent,
        super::payments::cancel_payment_intent,
        super::payments::create_refund,
        super::payments::get_refund,
        super::payments::list_refunds,
        super::payments::create_payout,
        super::payments::get_payout,
        super::payments::list_payouts,
        super::webhook_endpoints::create_endpoint,
        super::webhook_endpoints::list_endpoints,
        super::webhook_endpoints::get_endpoint,
        super::webhook_endpoints::update_endpoint,
        super::webhook_endpoints::list_deliveries,
        super::webhook_endpoints::get_delivery,
        super::webhook_endpoints::resend_delivery,
        health,
        ready,
        metrics,
    ),
    components(schemas(ErrorBody, UserView, SessionView, ChangePasswordRequest,
        super::verifications::RequestVerificationRequest, super::verifications::ConfirmVerificationRequest, super::verifications::VerificationView,
        WalletView, AccountView, EntryView, TransferView, AdjustmentView, OnrampView, ReconciliationView,
        super::merchants::MerchantView, super::merchants::MerchantSessionView, super::merchants::MerchantSessionSummaryView, super::merchants::ApiKeyView,
        crate::store::payments::PaymentIntentObject, crate::store::payments::RefundObject, crate::store::payments::PayoutObject,
        super::webhook_endpoints::WebhookEndpointView, super::webhook_endpoints::WebhookDeliveryView)),
    modifiers(&SecuritySchemes, &CommonResponses)
)]
pub struct ApiDoc;

/// Answers any route can give, added where a route's own list lacks them, so the document
/// lists every status the server returns: 503 wherever the database (or an actor) is asked;
/// 401 and 403 wherever credentials are needed (none, or a token of the wrong role); 400
/// wherever a body, a query or a header is read (malformed JSON, a bad `limit`, a missing
/// `Idempotency-Key`); 429 wherever a rate limit applies.
struct CommonResponses;

/// Rate-limited routes without an `Idempotency-Key` (every route with one moves money and is
/// rate limited too).
const RATE_LIMITED_PATHS: [&str; 7] = [
    "/v1/users",
    "/v1/merchants",
    "/v1/sessions",
    "/v1/merchants/sessions",
    "/v1/me/password",
    "/v1/merchants/me/password",
    "/v1/webhook_deliveries/{id}/resend",
];

/// Routes that answer without a dependency.
const DEPENDENCY_FREE_PATHS: [&str; 3] = ["/health", "/metrics", "/openapi.json"];

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                ("get", &mut item.get),
                ("post", &mut item.post),
                ("put", &mut item.put),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ];
            let post_limited = RATE_LIMITED_PATHS.contains(&path.as_str());
            for (method, operation) in operations {
                let Some(operation) = operation else {
                    continue;
                };
                let moves_money = operation
                    .parameters
                    .iter()
                    .flatten()
                    .any(|parameter| parameter.name.eq_ignore_ascii_case("Idempotency-Key"));
                let rate_limited = moves_money || (post_limited && method == "post");
                let responses = &mut operation.responses.responses;
                if rate_limited {
                    responses
                        .entry("429".to_owned())
                        .or_insert_with(|| error("Rate limited; retry after Retry-After seconds"));
                }
                if !DEPENDENCY_FREE_PATHS.contains(&path.as_str()) {
                    responses.entry("503".to_owned()).or_insert_with(|| {
                        error("A dependency is unavailable or timed out; retry later")
                    });
                }
                if operation
                    .security
                    .as_ref()
                    .is_some_and(|security| !security.is_empty())
                {
                    responses
                        .entry("401".to_owned())
                        .or_insert_with(|| error("No or bad credentials"));
                    responses
                        .entry("403".to_owned())
                        .or_insert_with(|| error("Credentials of the wrong role"));
                }
                let reads_input = operation.request_body.is_some()
                    || operation.parameters.iter().flatten().any(|parameter| {
                        !matches!(
                            parameter.parameter_in,
                            utoipa::openapi::path::ParameterIn::Path
                        )
                    });
                if reads_input {
                    responses
                        .entry("400".to_owned())
                        .or_insert_with(|| error("Malformed or invalid body"));
                }
            }
        }
    }
}

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for name in ["bearer", "operator"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, description = "The process is alive")))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "Dependencies answer"), (status = 503, description = "A dependency is down")))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let database = state.store.ping().await;
    let redis = match &state.redis_url {
        Some(url) => Some(crate::bus::ping_redis(url).await),
        None => None,
    };
    if let Err(error) = &database {
        tracing::warn!(%error, "readiness: database unreachable");
    }
    if let Some(Err(error)) = &redis {
        tracing::warn!(%error, "readiness: redis unreachable");
    }
    let ready = database.is_ok() && !matches!(redis, Some(Err(_)));
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "unavailable" },
        "database": if database.is_ok() { "ok" } else { "unreachable" },
        "redis": match redis { None => "not_configured", Some(Ok(())) => "ok", Some(Err(_)) => "unreachable" },
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(ApiDoc::openapi().to_json().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_the_answers_every_route_can_give() {
        let document = ApiDoc::openapi();
        let statuses = |path: &str, method: &str| -> Vec<String> {
            let item = &document.paths.paths[path];
            let operation = match method {
                "get" => item.get.as_ref(),
                "post" => item.post.as_ref(),
                _ => None,
            }
            .expect("operation");
            operation.responses.responses.keys().cloned().collect()
        };
        // The gaps schemathesis found.
        assert!(statuses("/v1/webhook_endpoints", "get").contains(&"403".to_owned()));
        assert!(statuses("/v1/refunds", "post").contains(&"403".to_owned()));
        assert!(statuses("/v1/sessions", "post").contains(&"400".to_owned()));
        assert!(statuses("/v1/merchants/sessions", "post").contains(&"400".to_owned()));
        assert!(statuses("/v1/sessions", "post").contains(&"429".to_owned()));
        assert!(statuses("/v1/transfers", "post").contains(&"429".to_owned()));
        for path in ["/v1/me/password", "/v1/merchants/me/password"] {
            for status in ["204", "400", "401", "429", "503"] {
                assert!(
                    statuses(path, "post").contains(&status.to_owned()),
                    "{path} {status}"
                );
            }
        }
        assert!(!statuses("/v1/transfers", "get").contains(&"429".to_owned()));
        // A database outage is a 503 everywhere the database is asked.
        for (path, item) in &document.paths.paths {
            for operation in [&item.get, &item.post, &item.put, &item.delete]
                .into_iter()
                .flatten()
            {
                let documented = operation.responses.responses.contains_key("503");
                assert_eq!(
                    documented,
                    !DEPENDENCY_FREE_PATHS.contains(&path.as_str()),
                    "{path}"
                );
            }
        }
    }
}

//! actix-web: the route table, the shared `AppState`, and the middleware that records HTTP
//! metrics. Handlers parse input into domain types, call actors (with timeouts) and map the
//! reply; they never write balances themselves.

pub mod admin;
pub mod auth;
pub mod docs;
pub mod error;
pub mod idempotency;
pub mod merchants;
pub mod notifications;
pub mod onramps;
pub mod operations;
pub mod payments;
pub mod rate_limit;
pub mod request;
pub mod transfers;
pub mod users;
pub mod verifications;
pub mod views;
pub mod wallet;
pub mod webapp;
pub mod webhook_endpoints;
pub mod webhooks;

use crate::actors::{SagaContext, Wallets};
use crate::config::Limits;
use crate::domain::{Clock, Currency};
use crate::metrics::Metrics;
use crate::store::Store;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::{HttpRequest, HttpResponse, web};
use error::ApiError;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// Everything a handler needs, shared by all workers.
pub struct AppState {
    /// The group-commit writer (stopped last, after the wallets).
    pub ledger: crate::actors::ledger_writer::Ledger,
    /// P2P transfers.
    pub transfers: crate::actors::transfers::Transfers,
    /// Idempotency keys being worked on by this node (duplicates wait on them).
    pub in_flight: idempotency::InFlightKeys,
    /// Credential revocations shared with other nodes (with Redis).
    pub revocations: Option<Arc<crate::bus::revocations::Revocations>>,
    pub store: Store,
    pub wallets: Wallets,
    pub sagas: SagaContext,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub admin_token: String,
    /// Named operators besides the admin (`WALLETI_OPERATORS`).
    pub operators: Vec<crate::config::Operator>,
    pub default_currency: Currency,
    pub limits: Limits,
    /// Base URL people and providers reach walleti at (webhook callbacks).
    pub public_url: String,
    /// `None`: no bank configured (bank on-ramps and payouts answer 503).
    pub bank: Option<crate::providers::bank::BankClient>,
    /// Payment intents, refunds and payouts.
    pub payments: crate::actors::payments::Payments,
    pub hold_keeper: ractor::ActorRef<crate::actors::payments::KeeperMsg>,
    pub webhook_dispatcher: ractor::ActorRef<crate::actors::webhook_dispatcher::DispatcherMsg>,
    /// Redis stream consumers (empty without Redis).
    pub stream_consumers: Vec<ractor::ActorRef<crate::actors::stream_consumer::ConsumerMsg>>,
    pub rate_limiter: rate_limit::RateLimiter,
    pub notifier: ractor::ActorRef<crate::actors::notifier::NotifierMsg>,
    /// Verifies Twilio's delivery-status callbacks when SMS is configured; sends phone
    /// verification codes.
    pub twilio: Option<crate::providers::sms::Twilio>,
    /// Sends email verification codes when SMTP is configured.
    pub mailer: Option<crate::providers::email::Mailer>,
    pub outbox_relay: ractor::ActorRef<crate::actors::outbox_relay::RelayMsg>,
    /// Checked by `/ready` when configured.
    pub redis_url: Option<String>,
    pub reconciler: ractor::ActorRef<crate::actors::reconciler::ReconcilerMsg>,
    pub bank_webhook_secrets: Vec<String>,
    pub bank_ingestor: ractor::ActorRef<crate::actors::webhook_ingestor::IngestorMsg>,
    /// The development bank simulator, mounted under `/bank-sim` only when allowed
    /// (`BankSimulatorMode::mounts`).
    pub bank_simulator: Option<crate::bank_sim::BankSimulator>,
    /// Stripe Checkout, when `STRIPE_SECRET_KEY` is set.
    pub stripe: Option<crate::providers::stripe::StripeCheckout>,
    pub stripe_ingestor: Option<ractor::ActorRef<crate::actors::webhook_ingestor::IngestorMsg>>,
    pub stripe_webhook_secret: Option<String>,
    /// Merchant webhook endpoints may name non-public addresses (development and tests).
    pub webhook_allow_private_networks: bool,
    /// `/metrics` is served on the main address (no `WALLETI_METRICS_BIND`).
    pub metrics_on_main: bool,
}

/// The route table.
pub fn routes(config: &mut web::ServiceConfig) {
    use web::{delete, get, post, put};
    config
        .route("/health", get().to(operations::health))
        .route("/ready", get().to(operations::ready))
        .route("/openapi.json", get().to(operations::openapi))
        .route("/v1/users", post().to(users::create_user))
        .route("/v1/users", get().to(users::list_users))
        .route("/v1/users/{id}", get().to(users::get_user))
        .route("/v1/sessions", post().to(users::create_session))
        .route("/v1/sessions", get().to(users::list_sessions))
        .route(
            "/v1/sessions/current",
            delete().to(users::delete_current_session),
        )
        .route("/v1/sessions", delete().to(users::revoke_all_sessions))
        .route("/v1/sessions/{id}", get().to(users::get_session))
        .route("/v1/sessions/{id}", delete().to(users::revoke_session))
        .route("/v1/me", get().to(users::me))
        .route("/v1/me/password", post().to(users::change_password))
        .route(
            "/v1/me/verifications",
            post().to(verifications::request_verification),
        )
        .route(
            "/v1/me/verifications/confirm",
            post().to(verifications::confirm_verification),
        )
        .route("/v1/wallet", get().to(wallet::get_wallet))
        .route("/v1/wallet/entries", get().to(wallet::list_entries))
        .route("/v1/transfers", post().to(transfers::create_transfer))
        .route("/v1/transfers", get().to(transfers::list_transfers))
        .route("/v1/transfers/{id}", get().to(transfers::get_transfer))
        .route("/v1/onramps", post().to(onramps::create_onramp))
        .route("/v1/onramps", get().to(onramps::list_onramps))
        .route("/v1/onramps/{id}", get().to(onramps::get_onramp))
        .route("/webhooks/bank", post().to(webhooks::bank_webhook))
        .route("/webhooks/stripe", post().to(webhooks::stripe_webhook))
        .route(
            "/webhooks/twilio/status",
            post().to(webhooks::twilio_status),
        )
        .route("/v1/merchants", post().to(merchants::create_merchant))
        .route(
            "/v1/merchants/sessions",
            post().to(merchants::create_merchant_session),
        )
        .route(
            "/v1/merchants/sessions",
            get().to(merchants::list_merchant_sessions),
        )
        .route(
            "/v1/merchants/sessions",
            delete().to(merchants::revoke_all_merchant_sessions),
        )
        .route(
            "/v1/merchants/sessions/current",
            delete().to(merchants::delete_current_merchant_session),
        )
        .route(
            "/v1/merchants/sessions/{id}",
            delete().to(merchants::revoke_merchant_session),
        )
        .route("/v1/merchants/me", get().to(merchants::merchant_me))
        .route(
            "/v1/merchants/me/password",
            post().to(merchants::change_merchant_password),
        )
        .route(
            "/v1/merchants/api_keys",
            post().to(merchants::create_api_key),
        )
        .route("/v1/merchants/api_keys", get().to(merchants::list_api_keys))
        .route(
            "/v1/merchants/api_keys/{id}",
            get().to(merchants::get_api_key),
        )
        .route(
            "/v1/merchants/api_keys/{id}",
            delete().to(merchants::revoke_api_key),
        )
        .route(
            "/v1/payment_intents",
            post().to(payments::create_payment_intent),
        )
        .route(
            "/v1/payment_intents",
            get().to(payments::list_payment_intents),
        )
        .route(
            "/v1/payment_intents/{id}",
            get().to(payments::get_payment_intent),
        )
        .route(
            "/v1/payment_intents/{id}/confirm",
            post().to(payments::confirm_payment_intent),
        )
        .route(
            "/v1/payment_intents/{id}/capture",
            post().to(payments::capture_payment_intent),
        )
        .route(
            "/v1/payment_intents/{id}/cancel",
            post().to(payments::cancel_payment_intent),
        )
        .route("/v1/refunds", post().to(payments::create_refund))
        .route("/v1/refunds", get().to(payments::list_refunds))
        .route("/v1/refunds/{id}", get().to(payments::get_refund))
        .route("/v1/payouts", post().to(payments::create_payout))
        .route("/v1/payouts", get().to(payments::list_payouts))
        .route("/v1/payouts/{id}", get().to(payments::get_payout))
        .route(
            "/v1/webhook_endpoints",
            post().to(webhook_endpoints::create_endpoint),
        )
        .route(
            "/v1/webhook_endpoints",
            get().to(webhook_endpoints::list_endpoints),
        )
        .route(
            "/v1/webhook_endpoints/{id}",
            get().to(webhook_endpoints::get_endpoint),
        )
        .route(
            "/v1/webhook_endpoints/{id}",
            post().to(webhook_endpoints::update_endpoint),
        )
        .route(
            "/v1/webhook_endpoints/{id}/deliveries",
            get().to(webhook_endpoints::list_deliveries),
        )
        .route(
            "/v1/webhook_deliveries/{id}",
            get().to(webhook_endpoints::get_delivery),
        )
        .route(
            "/v1/webhook_deliveries/{id}/resend",
            post().to(webhook_endpoints::resend_delivery),
        )
        .route("/v1/admin/adjustments", post().to(admin::create_adjustment))
        .route("/v1/admin/adjustments", get().to(admin::list_adjustments))
        .route(
            "/v1/notifications",
            get().to(notifications::list_notifications),
        )
        .route(
            "/v1/notification_preferences",
            put().to(notifications::set_preferences),
        )
        .route(
            "/v1/notification_preferences",
            get().to(notifications::get_preferences),
        )
        .route("/v1/devices", post().to(notifications::register_device))
        .route("/v1/devices", get().to(notifications::list_devices))
        .route("/v1/devices/{id}", get().to(notifications::get_device))
        .route("/v1/admin/actors", get().to(admin::list_actors))
        .route(
            "/v1/admin/adjustments/{id}",
            get().to(admin::get_adjustment),
        )
        .route(
            "/v1/admin/reconciliations",
            post().to(admin::run_reconciliation),
        )
        .route(
            "/v1/admin/reconciliations",
            get().to(admin::list_reconciliations),
        )
        .route(
            "/v1/admin/reconciliations/{id}",
            get().to(admin::get_reconciliation),
        );
}

/// Builds the actix application for `state`: routes, JSON errors for anything unmatched,
/// and request metrics by route pattern.
pub fn application(
    state: web::Data<AppState>,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = ServiceResponse<actix_web::body::BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let metrics = Arc::clone(&state.metrics);
    let bank_simulator = state.bank_simulator.clone();
    let metrics_on_main = state.metrics_on_main;
    let served_over_tls = state.public_url.starts_with("https://");
    actix_web::App::new()
        .app_data(state)
        .configure(move |config| {
            if let Some(simulator) = bank_simulator {
                config.service(
                    web::scope("/bank-sim")
                        .app_data(web::Data::new(simulator))
                        .configure(crate::bank_sim::routes),
                );
            }
        })
        .app_data(web::QueryConfig::default().error_handler(|error, _| {
            ApiError::invalid_request(
                "parameter_invalid",
                format!("Invalid query string: {error}."),
            )
            .into()
        }))
        .configure(routes)
        .configure(move |config| {
            if metrics_on_main {
                config.route("/metrics", web::get().to(operations::metrics));
            }
        })
        .configure(webapp::routes)
        .configure(docs::routes)
        .default_service(web::to(unmatched))
        .wrap(security_headers(served_over_tls))
        .wrap_fn(move |request, service| {
            let route = request
                .match_pattern()
                .unwrap_or_else(|| "unmatched".to_owned());
            let method = method_label(request.method()).to_owned();
            let request_id = request_id(&request);
            // The handler's own logs carry this span. Actor messages do not (ractor's span
            // propagation is off, Cargo.toml): wallet and saga logs name accounts and transfers.
            let span = tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);
            let started = Instant::now();
            let metrics = Arc::clone(&metrics);
            let response = {
                let _entered = span.enter();
                service.call(request)
            };
            async move {
                let mut response = response.instrument(span).await?;
                if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&request_id) {
                    response.headers_mut().insert(
                        actix_web::http::header::HeaderName::from_static(REQUEST_ID_HEADER),
                        value,
                    );
                }
                let status = response.status().as_u16().to_string();
                metrics
                    .http_requests_total
                    .with_label_values(&[method.as_str(), route.as_str(), status.as_str()])
                    .inc();
                metrics
                    .http_request_duration_seconds
                    .with_label_values(&[method.as_str(), route.as_str()])
                    .observe(started.elapsed().as_secs_f64());
                Ok(response)
            }
        })
}

/// The policy of every page walleti serves (the API reference at `/docs` has its own): scripts
/// and style sheets only from walleti's own `/static/` files — no inline script or style, no
/// `eval` — so markup an attacker slips into a page (a merchant's name, a note) cannot run
/// or restyle anything; requests only to walleti; no plugins; never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

/// Headers on every answer: a strict content policy (`CONTENT_SECURITY_POLICY`), no page of
/// walleti may be framed by another site (a payment confirmation under someone else's
/// overlay), no content type is guessed, and no URL leaks to other sites through `Referer`;
/// served over TLS, browsers are told to keep to it. A handler's own header wins.
fn security_headers(served_over_tls: bool) -> actix_web::middleware::DefaultHeaders {
    let headers = actix_web::middleware::DefaultHeaders::new()
        .add(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
        .add(("X-Frame-Options", "DENY"))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "same-origin"));
    if served_over_tls {
        headers.add(("Strict-Transport-Security", HSTS_VALUE))
    } else {
        headers
    }
}

/// One year, subdomains excluded (walleti does not own its parent domain's other hosts).
const HSTS_VALUE: &str = "max-age=31536000";

/// The HTTP method as a metric label: one of a fixed set, so a client inventing methods
/// cannot grow the metric families without bound.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The application serving only `/metrics` (on `WALLETI_METRICS_BIND`).
pub fn metrics_application(
    state: web::Data<AppState>,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = ServiceResponse<actix_web::body::BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    actix_web::App::new()
        .app_data(state)
        .route("/metrics", web::get().to(operations::metrics))
}

/// Request ids: the caller's `X-Request-Id` when it is sane, otherwise a new one.
const REQUEST_ID_HEADER: &str = "x-request-id";
const REQUEST_ID_LENGTH_MAX: usize = 128;

fn request_id(request: &actix_web::dev::ServiceRequest) -> String {
    request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= REQUEST_ID_LENGTH_MAX
                && id.chars().all(|c| c.is_ascii_graphic())
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

async fn unmatched(request: HttpRequest) -> HttpResponse {
    use actix_web::ResponseError;
    ApiError::new(
        actix_web::http::StatusCode::NOT_FOUND,
        error::ErrorType::InvalidRequestError,
        "route_not_found",
        format!("No route for {} {}.", request.method(), request.path()),
    )
    .error_response()
}

//! The bank simulator: a stand-in for a real bank, part of this repository. walleti asks it
//! to collect a payment; the user approves or declines on its page (or through its JSON API).
//! walleti also asks it to pay money out; it pays (or, when told to, fails) at once or waits
//! for `POST /api/payouts/{id}/pay|fail`. For each decision
//! it delivers a signed webhook (`Walleti-Signature`) to walleti, retrying with backoff
//! until it gets a 2xx. It can be told to duplicate, delay and reorder deliveries, and it
//! serves a settlement statement of what it paid. It runs inside walleti under `/bank-sim/`
//! (development only: see `app.rs` for when it is mounted) or as its own process
//! (`walleti bank-sim`). Its state is in memory.
//!
//! The simulator pays out of thin air, so it trusts nobody:
//! - its bank API (create payments and payouts, read and decide payouts, the settlement
//!   statement) answers only a bearer token it was given at construction (walleti's
//!   `WALLETI_BANK_API_TOKEN`; in embedded mode a per-process token and the operator token);
//! - embedded, it also asks walleti's database whether the reference is an on-ramp (bank,
//!   still processing) or a payout walleti created, with that amount and currency;
//! - every webhook goes to the one callback URL fixed at construction (walleti's
//!   `/webhooks/bank`), never to a URL taken from a request;
//! - the fault API answers only the fault tokens, and every fault parameter is bounded.
//!
//! The payer's side (the approval page and `POST /api/payments/{id}/approve|decline`) needs
//! only the payment id, which carries 128 random bits and is known to the payer alone.

use crate::domain::signature;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Extra copies of each webhook the fault API may ask for.
pub const FAULT_DUPLICATE_MAX: u32 = 10;
/// The longest delivery delay the fault API may ask for: 10 minutes.
pub const FAULT_DELAY_MS_MAX: u64 = 600_000;
/// Largest amount the simulator takes (docs/api.md: amounts are at most 10^12).
pub const AMOUNT_MAX: i64 = 1_000_000_000_000;
/// Longest reference the simulator takes (walleti's ids are far shorter).
pub const REFERENCE_LENGTH_MAX: usize = 64;
/// Largest request body the simulator reads.
const BODY_BYTES_MAX: usize = 16 * 1024;
/// How long one webhook delivery attempt may take.
const DELIVERY_TIMEOUT_SECONDS: u64 = 10;

/// Delivery attempts per webhook before the simulator gives up on it.
pub const DELIVERY_ATTEMPTS_MAX: u32 = 12;
const DELIVERY_BACKOFF_FIRST_MS: u64 = 100;
const DELIVERY_BACKOFF_MAX_MS: u64 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum PaymentStatus {
    Pending,
    Approved,
    Declined,
}

#[derive(Debug, Clone, Serialize)]
struct Payment {
    id: String,
    reference: String,
    amount: i64,
    currency: String,
    status: PaymentStatus,
    created_at: String,
    decided_at: Option<String>,
}

/// Fault injection for tests and demos; every parameter is bounded (`Faults::check`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Extra copies of every webhook (same event id).
    #[serde(default)]
    pub duplicate: u32,
    /// Wait this long before delivering.
    #[serde(default)]
    pub delay_ms: u64,
    /// Hold each webhook back and deliver it after the next one.
    #[serde(default)]
    pub reorder: bool,
    /// What happens to payouts: `pay` at once (the default), `fail` at once, or `manual`
    /// (wait for `POST /api/payouts/{id}/pay` or `/fail`).
    #[serde(default)]
    pub payouts: PayoutMode,
}

impl Faults {
    /// Refuses parameters past their named limits.
    pub fn check(&self) -> Result<(), String> {
        if self.duplicate > FAULT_DUPLICATE_MAX {
            return Err(format!("duplicate must be at most {FAULT_DUPLICATE_MAX}"));
        }
        if self.delay_ms > FAULT_DELAY_MS_MAX {
            return Err(format!("delay_ms must be at most {FAULT_DELAY_MS_MAX}"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PayoutMode {
    #[default]
    Pay,
    Fail,
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum PayoutStatus {
    Pending,
    Paid,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
struct Payout {
    id: String,
    reference: String,
    amount: i64,
    currency: String,
    status: PayoutStatus,
    created_at: String,
    decided_at: Option<String>,
}

#[derive(Default)]
struct SimState {
    payments: HashMap<String, Payment>,
    by_reference: HashMap<String, String>,
    faults: Faults,
    held: Vec<(String, String)>,
    payouts: HashMap<String, Payout>,
    payouts_by_reference: HashMap<String, String>,
}

/// What a reference names at the bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceKind {
    /// An on-ramp: the bank collects from the payer.
    Payment,
    /// A payout: the bank pays the owner.
    Payout,
}

/// A request the embedded simulator checks against walleti's records.
#[derive(Debug, Clone)]
pub struct ReferenceClaim {
    pub kind: ReferenceKind,
    pub reference: String,
    pub amount: i64,
    pub currency: String,
}

/// Answers whether walleti created the on-ramp or payout a request names, with that amount
/// and currency (`Err`: could not tell, e.g. the database is down).
pub type ReferenceCheck =
    Arc<dyn Fn(ReferenceClaim) -> BoxFuture<'static, Result<bool, String>> + Send + Sync>;

/// How a simulator is set up; fixed for its lifetime.
#[derive(Clone)]
pub struct SimulatorSettings {
    /// Where people and walleti reach the simulator (e.g. `http://host/bank-sim`).
    pub base_url: String,
    /// Signs every webhook (walleti's first `WALLETI_BANK_WEBHOOK_SECRET`).
    pub webhook_secret: String,
    /// walleti's `/webhooks/bank`: the only place webhooks go.
    pub callback_url: String,
    /// Bearer tokens accepted on the bank API.
    pub api_tokens: Vec<String>,
    /// Bearer tokens accepted on the fault API.
    pub fault_tokens: Vec<String>,
    /// Embedded: walleti's records, asked before a payment or payout is accepted.
    pub references: Option<ReferenceCheck>,
}

/// Shared simulator state; cheap to clone.
#[derive(Clone)]
pub struct BankSimulator {
    state: Arc<Mutex<SimState>>,
    http: reqwest::Client,
    base_url: String,
    webhook_secret: String,
    callback_url: String,
    api_tokens: Arc<Vec<String>>,
    fault_tokens: Arc<Vec<String>>,
    references: Option<ReferenceCheck>,
}

#[derive(Deserialize)]
struct CreatePayment {
    reference: String,
    amount: i64,
    currency: String,
}

impl CreatePayment {
    fn check(&self) -> Result<(), &'static str> {
        let currency_ok =
            self.currency.len() == 3 && self.currency.bytes().all(|b| b.is_ascii_lowercase());
        if self.amount <= 0 || self.amount > AMOUNT_MAX {
            return Err("amount must be between 1 and 10^12");
        }
        if self.reference.is_empty() || self.reference.len() > REFERENCE_LENGTH_MAX {
            return Err("reference must be set and short");
        }
        if !currency_ok {
            return Err("currency must be a lowercase ISO 4217 code");
        }
        Ok(())
    }
}

impl BankSimulator {
    pub fn new(settings: SimulatorSettings) -> anyhow::Result<BankSimulator> {
        anyhow::ensure!(
            settings.api_tokens.iter().all(|token| !token.is_empty()),
            "the bank simulator's API tokens must not be empty"
        );
        Ok(BankSimulator {
            state: Arc::new(Mutex::new(SimState::default())),
            http: crate::providers::outbound::Outbound::default()
                .client(Duration::from_secs(DELIVERY_TIMEOUT_SECONDS))?,
            base_url: settings.base_url.trim_end_matches('/').to_owned(),
            webhook_secret: settings.webhook_secret,
            callback_url: settings.callback_url,
            api_tokens: Arc::new(settings.api_tokens),
            fault_tokens: Arc::new(settings.fault_tokens),
            references: settings.references,
        })
    }

    /// Whether the request carries one of `tokens` as its bearer token.
    fn bearer_in(request: &HttpRequest, tokens: &[String]) -> bool {
        let Some(token) = request
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
        else {
            return false;
        };
        // Every token is compared, so timing does not say which one nearly matched.
        tokens.iter().fold(false, |found, expected| {
            crate::http::auth::constant_time_equal(token.as_bytes(), expected.as_bytes()) | found
        })
    }

    /// The refusal to send, if any: 401 without a bank API token.
    fn refuse_without_api_token(&self, request: &HttpRequest) -> Option<HttpResponse> {
        (!BankSimulator::bearer_in(request, &self.api_tokens)).then(|| {
            json_error(
                StatusCode::UNAUTHORIZED,
                "the bank API needs walleti's token",
            )
        })
    }

    /// Embedded: walleti must know the reference; the refusal to send, if any.
    async fn refuse_unknown_reference(&self, claim: ReferenceClaim) -> Option<HttpResponse> {
        let check = self.references.as_ref()?;
        match check(claim).await {
            Ok(true) => None,
            Ok(false) => Some(json_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "walleti has no such on-ramp or payout with that amount",
            )),
            Err(error) => {
                tracing::warn!(%error, "bank simulator could not check a reference");
                Some(json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "could not check the reference",
                ))
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn redirect_url(&self, id: &str) -> String {
        format!("{}/pay/{id}", self.base_url)
    }

    /// Decides a pending payment and sends its webhook. Deciding twice changes nothing.
    fn decide(&self, id: &str, approve: bool) -> Option<Payment> {
        let (payment, deliveries) = {
            let mut state = self.lock();
            let payment = state.payments.get_mut(id)?;
            if payment.status != PaymentStatus::Pending {
                return Some(payment.clone());
            }
            payment.status = if approve {
                PaymentStatus::Approved
            } else {
                PaymentStatus::Declined
            };
            payment.decided_at = Some(chrono::Utc::now().to_rfc3339());
            let payment = payment.clone();
            let event_type = if approve {
                "payment.succeeded"
            } else {
                "payment.failed"
            };
            let delivery = event_delivery(
                event_type,
                &payment.id,
                &payment.reference,
                payment.amount,
                &payment.currency,
                &self.callback_url,
            );
            (payment, schedule(&mut state, delivery))
        };
        self.send(deliveries);
        Some(payment)
    }

    /// Decides a pending payout and sends its webhook. Deciding twice changes nothing.
    fn decide_payout(&self, id: &str, paid: bool) -> Option<Payout> {
        let (payout, deliveries) = {
            let mut state = self.lock();
            let payout = state.payouts.get_mut(id)?;
            if payout.status != PayoutStatus::Pending {
                return Some(payout.clone());
            }
            payout.status = if paid {
                PayoutStatus::Paid
            } else {
                PayoutStatus::Failed
            };
            payout.decided_at = Some(chrono::Utc::now().to_rfc3339());
            let payout = payout.clone();
            let event_type = if paid { "payout.paid" } else { "payout.failed" };
            let delivery = event_delivery(
                event_type,
                &payout.id,
                &payout.reference,
                payout.amount,
                &payout.currency,
                &self.callback_url,
            );
            (payout, schedule(&mut state, delivery))
        };
        self.send(deliveries);
        Some(payout)
    }

    /// Delivers each event (with the configured duplicates and delay) in the background.
    fn send(&self, deliveries: Vec<(String, String)>) {
        let faults = self.lock().faults.clone();
        for (callback_url, event) in deliveries {
            for _ in 0..=faults.duplicate {
                let simulator = self.clone();
                let (callback_url, event) = (callback_url.clone(), event.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(faults.delay_ms)).await;
                    simulator.deliver(&callback_url, &event).await;
                });
            }
        }
    }

    /// POSTs a signed event until walleti answers 2xx (bounded attempts, exponential backoff).
    async fn deliver(&self, callback_url: &str, event: &str) {
        let mut backoff_ms = DELIVERY_BACKOFF_FIRST_MS;
        for attempt in 1..=DELIVERY_ATTEMPTS_MAX {
            let header = signature::sign(
                &self.webhook_secret,
                chrono::Utc::now().timestamp(),
                event.as_bytes(),
            );
            let sent = self
                .http
                .post(callback_url)
                .header("Walleti-Signature", header)
                .header("Content-Type", "application/json")
                .body(event.to_owned())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => return,
                Ok(response) => {
                    tracing::warn!(attempt, status = %response.status(), "bank webhook refused")
                }
                Err(error) => tracing::warn!(attempt, %error, "bank webhook delivery failed"),
            }
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(DELIVERY_BACKOFF_MAX_MS);
        }
        tracing::error!(
            callback_url,
            "bank webhook abandoned after {DELIVERY_ATTEMPTS_MAX} attempts"
        );
    }
}

/// A signed-to-be event for walleti: (callback URL, JSON body).
fn event_delivery(
    event_type: &str,
    payment_id: &str,
    reference: &str,
    amount: i64,
    currency: &str,
    callback_url: &str,
) -> (String, String) {
    let event = serde_json::json!({
        "id": format!("evt_{}", uuid::Uuid::now_v7().simple()),
        "type": event_type,
        "created": chrono::Utc::now().timestamp(),
        "data": {"reference": reference, "amount": amount, "currency": currency, "payment_id": payment_id},
    })
    .to_string();
    (callback_url.to_owned(), event)
}

/// What to deliver now, given the reorder fault: with it, this event is held back and the one
/// held before goes out in its place.
fn schedule(state: &mut SimState, delivery: (String, String)) -> Vec<(String, String)> {
    let mut deliveries = vec![delivery];
    if state.faults.reorder {
        std::mem::swap(&mut deliveries, &mut state.held);
    } else {
        deliveries.append(&mut state.held);
    }
    deliveries
}

/// The simulator's routes, relative to its base path. A body that does not parse (an
/// unknown field, a number out of its type's range) is a 400.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .app_data(
            web::JsonConfig::default()
                .limit(BODY_BYTES_MAX)
                .error_handler(|error, _| {
                    let message = format!("invalid body: {error}");
                    actix_web::error::InternalError::from_response(
                        error,
                        json_error(StatusCode::BAD_REQUEST, &message),
                    )
                    .into()
                }),
        )
        .route("/api/payments", web::post().to(create_payment))
        .route("/api/payments/{id}", web::get().to(get_payment))
        .route("/api/payments/{id}/approve", web::post().to(approve_json))
        .route("/api/payments/{id}/decline", web::post().to(decline_json))
        .route("/api/payouts", web::post().to(create_payout))
        .route("/api/payouts/{id}", web::get().to(get_payout))
        .route("/api/payouts/{id}/pay", web::post().to(pay_payout))
        .route("/api/payouts/{id}/fail", web::post().to(fail_payout))
        .route("/api/faults", web::post().to(set_faults))
        .route("/api/settlements", web::get().to(settlements))
        .route("/api/payout_settlements", web::get().to(payout_settlements))
        .route("/pay/{id}", web::get().to(payment_page))
        .route("/pay/{id}/approve", web::post().to(approve_form))
        .route("/pay/{id}/decline", web::post().to(decline_form));
}

fn json_error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({"error": {"message": message}}))
}

/// A new payment or payout id: 128 random bits, so only whoever was handed it knows it.
fn random_id(prefix: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    format!("{prefix}_{}", hex::encode(bytes))
}

async fn create_payment(
    simulator: web::Data<BankSimulator>,
    request: HttpRequest,
    body: web::Json<CreatePayment>,
) -> HttpResponse {
    if let Some(refusal) = simulator.refuse_without_api_token(&request) {
        return refusal;
    }
    if let Err(message) = body.check() {
        return json_error(StatusCode::BAD_REQUEST, message);
    }
    let claim = ReferenceClaim {
        kind: ReferenceKind::Payment,
        reference: body.reference.clone(),
        amount: body.amount,
        currency: body.currency.clone(),
    };
    if let Some(refusal) = simulator.refuse_unknown_reference(claim).await {
        return refusal;
    }
    let mut state = simulator.lock();
    // Idempotent by reference: asking again for the same on-ramp returns the same payment.
    if let Some(existing) = state
        .by_reference
        .get(&body.reference)
        .and_then(|id| state.payments.get(id))
    {
        let existing = existing.clone();
        return HttpResponse::Ok().json(serde_json::json!({
            "id": existing.id, "redirect_url": simulator.redirect_url(&existing.id), "status": existing.status,
        }));
    }
    let id = random_id("pay");
    let payment = Payment {
        id: id.clone(),
        reference: body.reference.clone(),
        amount: body.amount,
        currency: body.currency.clone(),
        status: PaymentStatus::Pending,
        created_at: chrono::Utc::now().to_rfc3339(),
        decided_at: None,
    };
    state
        .by_reference
        .insert(payment.reference.clone(), id.clone());
    state.payments.insert(id.clone(), payment);
    HttpResponse::Created().json(serde_json::json!({
        "id": id, "redirect_url": simulator.redirect_url(&id), "status": PaymentStatus::Pending,
    }))
}

async fn get_payment(simulator: web::Data<BankSimulator>, id: web::Path<String>) -> HttpResponse {
    match simulator.lock().payments.get(id.as_str()) {
        Some(payment) => HttpResponse::Ok().json(payment),
        None => json_error(StatusCode::NOT_FOUND, "no such payment"),
    }
}

async fn approve_json(simulator: web::Data<BankSimulator>, id: web::Path<String>) -> HttpResponse {
    decide_json(&simulator, &id, true)
}

async fn decline_json(simulator: web::Data<BankSimulator>, id: web::Path<String>) -> HttpResponse {
    decide_json(&simulator, &id, false)
}

fn decide_json(simulator: &BankSimulator, id: &str, approve: bool) -> HttpResponse {
    match simulator.decide(id, approve) {
        Some(payment) => HttpResponse::Ok().json(payment),
        None => json_error(StatusCode::NOT_FOUND, "no such payment"),
    }
}

/// Takes a payout (idempotent by reference); pays or fails it at once unless payouts are
/// `manual`.
async fn create_payout(
    simulator: web::Data<BankSimulator>,
    request: HttpRequest,
    body: web::Json<CreatePayment>,
) -> HttpResponse {
    if let Some(refusal) = simulator.refuse_without_api_token(&request) {
        return refusal;
    }
    if let Err(message) = body.check() {
        return json_error(StatusCode::BAD_REQUEST, message);
    }
    let claim = ReferenceClaim {
        kind: ReferenceKind::Payout,
        reference: body.reference.clone(),
        amount: body.amount,
        currency: body.currency.clone(),
    };
    if let Some(refusal) = simulator.refuse_unknown_reference(claim).await {
        return refusal;
    }
    let (payout, mode) = {
        let mut state = simulator.lock();
        if let Some(existing) = state
            .payouts_by_reference
            .get(&body.reference)
            .and_then(|id| state.payouts.get(id))
        {
            return HttpResponse::Ok().json(existing);
        }
        let payout = Payout {
            id: random_id("po"),
            reference: body.reference.clone(),
            amount: body.amount,
            currency: body.currency.clone(),
            status: PayoutStatus::Pending,
            created_at: chrono::Utc::now().to_rfc3339(),
            decided_at: None,
        };
        state
            .payouts_by_reference
            .insert(payout.reference.clone(), payout.id.clone());
        state.payouts.insert(payout.id.clone(), payout.clone());
        (payout, state.faults.payouts)
    };
    match mode {
        PayoutMode::Pay => {
            simulator.decide_payout(&payout.id, true);
        }
        PayoutMode::Fail => {
            simulator.decide_payout(&payout.id, false);
        }
        PayoutMode::Manual => {}
    }
    HttpResponse::Created().json(payout)
}

async fn get_payout(
    simulator: web::Data<BankSimulator>,
    request: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    if let Some(refusal) = simulator.refuse_without_api_token(&request) {
        return refusal;
    }
    match simulator.lock().payouts.get(id.as_str()) {
        Some(payout) => HttpResponse::Ok().json(payout),
        None => json_error(StatusCode::NOT_FOUND, "no such payout"),
    }
}

async fn pay_payout(
    simulator: web::Data<BankSimulator>,
    request: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    decide_payout_json(&simulator, &request, &id, true)
}

async fn fail_payout(
    simulator: web::Data<BankSimulator>,
    request: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    decide_payout_json(&simulator, &request, &id, false)
}

fn decide_payout_json(
    simulator: &BankSimulator,
    request: &HttpRequest,
    id: &str,
    paid: bool,
) -> HttpResponse {
    if let Some(refusal) = simulator.refuse_without_api_token(request) {
        return refusal;
    }
    match simulator.decide_payout(id, paid) {
        Some(payout) => HttpResponse::Ok().json(payout),
        None => json_error(StatusCode::NOT_FOUND, "no such payout"),
    }
}

/// Sets the faults: only for a fault token, and only within the named limits (400 past them).
async fn set_faults(
    simulator: web::Data<BankSimulator>,
    request: HttpRequest,
    faults: web::Json<Faults>,
) -> HttpResponse {
    if !BankSimulator::bearer_in(&request, &simulator.fault_tokens) {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "the fault API needs the operator's token",
        );
    }
    if let Err(message) = faults.check() {
        return json_error(StatusCode::BAD_REQUEST, &message);
    }
    let mut state = simulator.lock();
    state.faults = faults.into_inner();
    HttpResponse::Ok().json(&state.faults)
}

/// What the bank paid: every approved payment.
async fn settlements(simulator: web::Data<BankSimulator>, request: HttpRequest) -> HttpResponse {
    if let Some(refusal) = simulator.refuse_without_api_token(&request) {
        return refusal;
    }
    let state = simulator.lock();
    let mut paid: Vec<_> = state
        .payments
        .values()
        .filter(|payment| payment.status == PaymentStatus::Approved)
        .map(|payment| {
            serde_json::json!({
                "payment_id": payment.id, "reference": payment.reference, "amount": payment.amount,
                "currency": payment.currency, "paid_at": payment.decided_at,
            })
        })
        .collect();
    paid.sort_by(|a, b| a["payment_id"].as_str().cmp(&b["payment_id"].as_str()));
    HttpResponse::Ok().json(serde_json::json!({"object": "list", "data": paid, "has_more": false}))
}

/// What the bank paid out: every paid payout.
async fn payout_settlements(
    simulator: web::Data<BankSimulator>,
    request: HttpRequest,
) -> HttpResponse {
    if let Some(refusal) = simulator.refuse_without_api_token(&request) {
        return refusal;
    }
    let state = simulator.lock();
    let mut paid: Vec<_> = state
        .payouts
        .values()
        .filter(|payout| payout.status == PayoutStatus::Paid)
        .map(|payout| {
            serde_json::json!({
                "payment_id": payout.id, "reference": payout.reference, "amount": payout.amount,
                "currency": payout.currency, "paid_at": payout.decided_at,
            })
        })
        .collect();
    paid.sort_by(|a, b| a["payment_id"].as_str().cmp(&b["payment_id"].as_str()));
    HttpResponse::Ok().json(serde_json::json!({"object": "list", "data": paid, "has_more": false}))
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title></head>\
         <body><main><h1>{title}</h1>{body}</main></body></html>"
    ))
}

async fn payment_page(simulator: web::Data<BankSimulator>, id: web::Path<String>) -> HttpResponse {
    let Some(payment) = simulator.lock().payments.get(id.as_str()).cloned() else {
        return json_error(StatusCode::NOT_FOUND, "no such payment");
    };
    let amount = format!("{} {}", payment.amount, escape_html(&payment.currency));
    let id = escape_html(&payment.id);
    if payment.status != PaymentStatus::Pending {
        return page(
            "Walleti Bank",
            &format!(
                "<p>Payment {id} of {amount} (minor units): {:?}.</p>",
                payment.status
            ),
        );
    }
    page(
        "Walleti Bank",
        &format!(
            "<p>Approve a payment of <strong>{amount}</strong> (minor units) to walleti?</p>\
             <form method=\"post\" action=\"{id}/approve\"><button type=\"submit\">Approve</button></form>\
             <form method=\"post\" action=\"{id}/decline\"><button type=\"submit\">Decline</button></form>"
        ),
    )
}

async fn approve_form(simulator: web::Data<BankSimulator>, id: web::Path<String>) -> HttpResponse {
    decide_page(&simulator, &id, true)
}

async fn decline_form(simulator: web::Data<BankSimulator>, id: web::Path<String>) -> HttpResponse {
    decide_page(&simulator, &id, false)
}

fn decide_page(simulator: &BankSimulator, id: &str, approve: bool) -> HttpResponse {
    match simulator.decide(id, approve) {
        Some(payment) => page(
            "Walleti Bank",
            &format!(
                "<p>Payment {}: {:?}. You can close this page.</p>",
                escape_html(&payment.id),
                payment.status
            ),
        ),
        None => json_error(StatusCode::NOT_FOUND, "no such payment"),
    }
}

/// Serves a standalone simulator on `listener` (`walleti bank-sim`, and tests).
pub fn serve_standalone(
    simulator: BankSimulator,
    listener: std::net::TcpListener,
) -> std::io::Result<actix_web::dev::Server> {
    let simulator = web::Data::new(simulator);
    Ok(actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(simulator.clone())
            .configure(routes)
    })
    .listen(listener)?
    .run())
}

//! The bank simulator: a stand-in for a real bank, part of this repository. walleti asks it
//! to collect a payment; the user approves or declines on its page (or through its JSON API).
//! walleti also asks it to pay money out; it pays (or, when told to, fails) at once or waits
//! for `POST /api/payouts/{id}/pay|fail`. For each decision
//! it delivers a signed webhook (`Walleti-Signature`) to walleti, retrying with backoff
//! until it gets a 2xx. It can be told to duplicate, delay and reorder deliveries, and it
//! serves a settlement statement of what it paid. It runs inside walleti under `/bank-sim/`
//! (the embedded default) or as its own process (`walleti bank-sim`). Its state is in memory.

use crate::domain::signature;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    callback_url: String,
    status: PaymentStatus,
    created_at: String,
    decided_at: Option<String>,
}

/// Fault injection for tests and demos.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
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
    callback_url: String,
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

/// Shared simulator state; cheap to clone.
#[derive(Clone)]
pub struct BankSimulator {
    state: Arc<Mutex<SimState>>,
    http: reqwest::Client,
    base_url: String,
    webhook_secret: String,
}

#[derive(Deserialize)]
struct CreatePayment {
    reference: String,
    amount: i64,
    currency: String,
    callback_url: String,
}

impl BankSimulator {
    /// `base_url`: where people and walleti reach the simulator (e.g. `http://host/bank-sim`).
    pub fn new(base_url: String, webhook_secret: String) -> BankSimulator {
        BankSimulator {
            state: Arc::new(Mutex::new(SimState::default())),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            webhook_secret,
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
                &payment.reference,
                payment.amount,
                &payment.currency,
                &payment.callback_url,
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
                &payout.reference,
                payout.amount,
                &payout.currency,
                &payout.callback_url,
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
    reference: &str,
    amount: i64,
    currency: &str,
    callback_url: &str,
) -> (String, String) {
    let event = serde_json::json!({
        "id": format!("evt_{}", uuid::Uuid::now_v7().simple()),
        "type": event_type,
        "created": chrono::Utc::now().timestamp(),
        "data": {"reference": reference, "amount": amount, "currency": currency},
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

/// The simulator's routes, relative to its base path.
pub fn routes(config: &mut web::ServiceConfig) {
    config
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
        .route("/pay/{id}", web::get().to(payment_page))
        .route("/pay/{id}/approve", web::post().to(approve_form))
        .route("/pay/{id}/decline", web::post().to(decline_form));
}

fn json_error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({"error": {"message": message}}))
}

async fn create_payment(
    simulator: web::Data<BankSimulator>,
    body: web::Json<CreatePayment>,
) -> HttpResponse {
    if body.amount <= 0 || body.reference.is_empty() {
        return json_error(
            StatusCode::BAD_REQUEST,
            "amount must be positive and reference set",
        );
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
    let id = format!("pay_{}", uuid::Uuid::now_v7().simple());
    let payment = Payment {
        id: id.clone(),
        reference: body.reference.clone(),
        amount: body.amount,
        currency: body.currency.clone(),
        callback_url: body.callback_url.clone(),
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
    body: web::Json<CreatePayment>,
) -> HttpResponse {
    if body.amount <= 0 || body.reference.is_empty() {
        return json_error(
            StatusCode::BAD_REQUEST,
            "amount must be positive and reference set",
        );
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
            id: format!("po_{}", uuid::Uuid::now_v7().simple()),
            reference: body.reference.clone(),
            amount: body.amount,
            currency: body.currency.clone(),
            callback_url: body.callback_url.clone(),
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

async fn get_payout(simulator: web::Data<BankSimulator>, id: web::Path<String>) -> HttpResponse {
    match simulator.lock().payouts.get(id.as_str()) {
        Some(payout) => HttpResponse::Ok().json(payout),
        None => json_error(StatusCode::NOT_FOUND, "no such payout"),
    }
}

async fn pay_payout(simulator: web::Data<BankSimulator>, id: web::Path<String>) -> HttpResponse {
    decide_payout_json(&simulator, &id, true)
}

async fn fail_payout(simulator: web::Data<BankSimulator>, id: web::Path<String>) -> HttpResponse {
    decide_payout_json(&simulator, &id, false)
}

fn decide_payout_json(simulator: &BankSimulator, id: &str, paid: bool) -> HttpResponse {
    match simulator.decide_payout(id, paid) {
        Some(payout) => HttpResponse::Ok().json(payout),
        None => json_error(StatusCode::NOT_FOUND, "no such payout"),
    }
}

async fn set_faults(
    simulator: web::Data<BankSimulator>,
    faults: web::Json<Faults>,
) -> HttpResponse {
    let mut state = simulator.lock();
    state.faults = faults.into_inner();
    HttpResponse::Ok().json(&state.faults)
}

/// What the bank paid: every approved payment.
async fn settlements(simulator: web::Data<BankSimulator>) -> HttpResponse {
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

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
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

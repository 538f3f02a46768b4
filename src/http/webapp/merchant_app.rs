//! The merchant app (`/merchant`): sign up, log in and out, the dashboard (balance and
//! payments with capture / cancel / refund), payment links, payouts, API keys (created and
//! shown once, revoked), webhook endpoints with their delivery attempts and a re-send
//! button, and settings (sessions, each with a log-out button, log out everywhere, change
//! password). Every action goes through the same core as its API endpoint.

use super::{
    Action, Cell, Field, FormPage, Layout, ListPage, MERCHANT_COOKIE, Section, csrf_refusal,
    csrf_token, form_key, minor_units, money, outcome, page, redirect, set_cookie, web_merchant,
};
use crate::domain::{WebhookDeliveryId, WebhookEndpointId};
use crate::http::AppState;
use crate::http::auth::{CurrentMerchant, Principal};
use crate::http::idempotency::Keyed;
use crate::store::accounts::{Owner, PageRequest};
use crate::store::payments::PayoutObject;
use crate::store::transfers::Party;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use std::collections::HashMap;

type Form = web::Form<HashMap<String, String>>;

const HOME: &str = "/merchant";

pub fn routes(config: &mut web::ServiceConfig) {
    use web::{get, post};
    config
        .route("/merchant", get().to(dashboard))
        .route("/merchant/signup", get().to(signup_page))
        .route("/merchant/signup", post().to(signup))
        .route("/merchant/login", get().to(login_page))
        .route("/merchant/login", post().to(login))
        .route("/merchant/logout", post().to(logout))
        .route("/merchant/payment-links", get().to(new_link_page))
        .route("/merchant/payment-links", post().to(new_link))
        .route(
            "/merchant/payments/{id}/{action}",
            post().to(payment_action),
        )
        .route("/merchant/payouts", get().to(payouts_page))
        .route("/merchant/payouts", post().to(payout))
        .route("/merchant/api-keys", get().to(keys_page))
        .route("/merchant/api-keys", post().to(create_key))
        .route("/merchant/api-keys/{id}/revoke", post().to(revoke_key))
        .route("/merchant/settings", get().to(settings_page))
        .route("/merchant/settings/password", post().to(change_password))
        .route("/merchant/sessions/{id}/revoke", post().to(revoke_session))
        .route(
            "/merchant/sessions/revoke-all",
            post().to(revoke_all_sessions),
        )
        .route("/merchant/webhooks", get().to(webhooks_page))
        .route("/merchant/webhooks", post().to(create_webhook))
        .route("/merchant/webhooks/{id}", get().to(webhook_page))
        .route(
            "/merchant/webhook-deliveries/{id}/resend",
            post().to(resend_delivery),
        );
}

fn layout(title: &str, csrf: &str, signed_in: bool) -> Layout {
    let nav = if signed_in {
        [
            ("/merchant", "Payments"),
            ("/merchant/payment-links", "New payment link"),
            ("/merchant/payouts", "Payouts"),
            ("/merchant/api-keys", "API keys"),
            ("/merchant/webhooks", "Webhooks"),
            ("/merchant/settings", "Settings"),
        ]
        .iter()
        .map(|(href, label)| ((*href).to_owned(), (*label).to_owned()))
        .collect()
    } else {
        vec![
            ("/merchant/login".to_owned(), "Log in".to_owned()),
            ("/merchant/signup".to_owned(), "Sign up".to_owned()),
        ]
    };
    Layout {
        title: title.to_owned(),
        area: "merchant",
        home: HOME,
        nav,
        signed_in,
        csrf: csrf.to_owned(),
        error: None,
        notice: None,
    }
}

async fn require_merchant(
    request: &HttpRequest,
    state: &AppState,
) -> Result<CurrentMerchant, HttpResponse> {
    web_merchant(request, state)
        .await
        .ok_or_else(|| redirect("/merchant/login"))
}

fn text(form: &Form, name: &str) -> String {
    form.get(name)
        .map(|value| value.trim().to_owned())
        .unwrap_or_default()
}

fn form_page(layout: Layout, action: &str, fields: Vec<Field>, submit: &str) -> FormPage {
    FormPage {
        layout,
        intro: Vec::new(),
        secret: None,
        action: action.to_owned(),
        fields,
        submit: submit.to_owned(),
        links: Vec::new(),
        sections: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Sign up, log in, log out

fn auth_form(csrf: &str, signup: bool, form: Option<&Form>, error: Option<String>) -> FormPage {
    let value = |name: &str| form.map(|form| text(form, name)).unwrap_or_default();
    let title = if signup {
        "Create a merchant account"
    } else {
        "Merchant log in"
    };
    let mut layout = layout(title, csrf, false);
    layout.error = error;
    let mut fields = Vec::new();
    if signup {
        fields.push(
            Field::new("name", "Business name", "text", "organization").value(&value("name")),
        );
    }
    fields.push(Field::new("email", "Email", "email", "email").value(&value("email")));
    let password = if signup {
        "new-password"
    } else {
        "current-password"
    };
    let mut password = Field::new("password", "Password", "password", password);
    if signup {
        password = password.hint("At least 10 characters.");
    }
    fields.push(password);
    let (action, submit) = if signup {
        ("/merchant/signup", "Create account")
    } else {
        ("/merchant/login", "Log in")
    };
    let mut page = form_page(layout, action, fields, submit);
    page.links = if signup {
        vec![(
            "/merchant/login".into(),
            "Already have an account? Log in".into(),
        )]
    } else {
        vec![(
            "/merchant/signup".into(),
            "New merchant? Create an account".into(),
        )]
    };
    page
}

async fn signup_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let (csrf, new) = csrf_token(&request);
    page(
        &state,
        &auth_form(&csrf, true, None, None),
        new.then_some(csrf.as_str()),
    )
}

async fn login_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let (csrf, new) = csrf_token(&request);
    page(
        &state,
        &auth_form(&csrf, false, None, None),
        new.then_some(csrf.as_str()),
    )
}

async fn signup(state: web::Data<AppState>, request: HttpRequest, form: Form) -> HttpResponse {
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    let (csrf, _) = csrf_token(&request);
    let password = form.get("password").cloned().unwrap_or_default();
    let body =
        json!({"name": text(&form, "name"), "email": text(&form, "email"), "password": password});
    let client = request.peer_addr().map(|address| address.ip());
    if let Err(error) =
        crate::http::merchants::register(&state, client, body.to_string().as_bytes()).await
    {
        return page(
            &state,
            &auth_form(&csrf, true, Some(&form), Some(error.detail.message)),
            None,
        );
    }
    log_in(&state, &request, &csrf, &form, true).await
}

async fn login(state: web::Data<AppState>, request: HttpRequest, form: Form) -> HttpResponse {
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    let (csrf, _) = csrf_token(&request);
    log_in(&state, &request, &csrf, &form, false).await
}

async fn log_in(
    state: &AppState,
    request: &HttpRequest,
    csrf: &str,
    form: &Form,
    signup: bool,
) -> HttpResponse {
    let password = form.get("password").cloned().unwrap_or_default();
    let body = json!({"email": text(form, "email"), "password": password});
    match crate::http::merchants::log_in(
        state,
        request.peer_addr().map(|address| address.ip()),
        body.to_string().as_bytes(),
    )
    .await
    {
        Ok(session) => {
            let lifetime = state.limits.session_lifetime.as_secs() as i64;
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, HOME))
                .append_header((
                    header::SET_COOKIE,
                    set_cookie(state, MERCHANT_COOKIE, &session.token, lifetime),
                ))
                .finish()
        }
        Err(error) => page(
            state,
            &auth_form(csrf, signup, Some(form), Some(error.detail.message)),
            None,
        ),
    }
}

async fn logout(state: web::Data<AppState>, request: HttpRequest, form: Form) -> HttpResponse {
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    if let Some(merchant) = web_merchant(&request, &state).await
        && let Ok(session) = merchant.require_session()
        && let Err(error) = state
            .store
            .revoke_merchant_session(session, state.clock.now())
            .await
    {
        tracing::warn!(%error, "revoke merchant web session");
    }
    logged_out(&state)
}

/// Logged out here: the cookie goes and the login page comes.
fn logged_out(state: &AppState) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/merchant/login"))
        .append_header((
            header::SET_COOKIE,
            set_cookie(state, MERCHANT_COOKIE, "", 0),
        ))
        .finish()
}

// ---------------------------------------------------------------------------------------------
// Settings: sessions and password

/// Sessions listed on the settings page at most (newest first).
const SESSIONS_SHOWN_MAX: u64 = 100;

/// The settings page: the change-password form, then the live sessions (each with a log-out
/// button) and "log out everywhere". API keys are managed on their own page.
async fn settings_view(
    state: &AppState,
    request: &HttpRequest,
    merchant: CurrentMerchant,
    error: Option<String>,
    notice: Option<String>,
) -> HttpResponse {
    let (csrf, new) = csrf_token(request);
    let current = merchant.require_session().ok();
    let (sessions, _) = state
        .store
        .list_merchant_sessions(
            merchant.merchant_id,
            state.clock.now(),
            &PageRequest {
                limit: SESSIONS_SHOWN_MAX,
                cursor: None,
            },
        )
        .await
        .unwrap_or_default();
    let rows = sessions
        .iter()
        .map(|session| {
            let is_current = current.is_some_and(|current| session.id == current.to_string());
            vec![
                Cell::time(session.created_at.to_rfc3339()),
                Cell::time(session.expires_at.to_rfc3339()),
                Cell {
                    text: if is_current {
                        "this device".into()
                    } else {
                        String::new()
                    },
                    actions: vec![Action::new(
                        format!("/merchant/sessions/{}/revoke", session.id),
                        "Log out",
                    )],
                    ..Cell::default()
                },
            ]
        })
        .collect();
    let mut layout = layout("Settings", &csrf, true);
    layout.error = error;
    layout.notice = notice;
    let everywhere = Action::new("/merchant/sessions/revoke-all".into(), "Log out everywhere");
    let settings = FormPage {
        layout,
        intro: vec![
            "Change your password: every other session is logged out (API keys keep working; revoke them on the API keys page).".into(),
        ],
        secret: None,
        action: "/merchant/settings/password".into(),
        fields: vec![
            Field::new("current_password", "Current password", "password", "current-password"),
            Field::new("new_password", "New password", "password", "new-password")
                .hint("At least 10 characters."),
        ],
        submit: "Change password".into(),
        links: vec![("/merchant/api-keys".into(), "API keys".into())],
        sections: vec![
            Section {
                heading: "Sessions".into(),
                empty: "No sessions.".into(),
                columns: vec![
                    ("Logged in".into(), false),
                    ("Expires".into(), false),
                    ("Session".into(), false),
                ],
                rows,
                previous: None,
                next: None,
            },
            Section {
                heading: "Everywhere".into(),
                empty: String::new(),
                columns: vec![("Every device".into(), false)],
                rows: vec![vec![Cell {
                    text: "A session you do not recognise? Log out on every device, this one included, then change your password.".into(),
                    actions: vec![everywhere],
                    ..Cell::default()
                }]],
                previous: None,
                next: None,
            },
        ],
    };
    page(state, &settings, new.then_some(csrf.as_str()))
}

async fn settings_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    match require_merchant(&request, &state).await {
        Ok(merchant) => settings_view(&state, &request, merchant, None, None).await,
        Err(redirect) => redirect,
    }
}

async fn change_password(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: Form,
) -> HttpResponse {
    let merchant = match require_merchant(&request, &state).await {
        Ok(merchant) => merchant,
        Err(redirect) => return redirect,
    };
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    let changed = crate::http::merchants::replace_password(
        &state,
        merchant,
        form.get("current_password").cloned().unwrap_or_default(),
        form.get("new_password").cloned().unwrap_or_default(),
    )
    .await;
    match changed {
        Ok(()) => {
            let notice = "Password changed; every other session is logged out.".to_owned();
            settings_view(&state, &request, merchant, None, Some(notice)).await
        }
        Err(error) => {
            settings_view(&state, &request, merchant, Some(error.detail.message), None).await
        }
    }
}

async fn revoke_session(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let merchant = match require_merchant(&request, &state).await {
        Ok(merchant) => merchant,
        Err(redirect) => return redirect,
    };
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    if let Err(error) = crate::http::merchants::revoke_own_session(&state, merchant, &path).await {
        return settings_view(&state, &request, merchant, Some(error.detail.message), None).await;
    }
    let current = merchant.require_session().ok();
    if current.is_some_and(|current| path.as_str() == current.to_string()) {
        return logged_out(&state);
    }
    redirect("/merchant/settings")
}

async fn revoke_all_sessions(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: Form,
) -> HttpResponse {
    let merchant = match require_merchant(&request, &state).await {
        Ok(merchant) => merchant,
        Err(redirect) => return redirect,
    };
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    if let Err(error) = state
        .store
        .revoke_merchant_sessions(merchant.merchant_id, None, state.clock.now())
        .await
    {
        let message = crate::http::error::ApiError::from(error).detail.message;
        return settings_view(&state, &request, merchant, Some(message), None).await;
    }
    logged_out(&state)
}

// ---------------------------------------------------------------------------------------------
// Payments

async fn dashboard_page(
    state: &AppState,
    request: &HttpRequest,
    merchant: CurrentMerchant,
    error: Option<String>,
    notice: Option<String>,
) -> HttpResponse {
    let (csrf, new) = csrf_token(request);
    let accounts = state
        .store
        .list_accounts(&Owner::Merchant(merchant.merchant_id))
        .await
        .unwrap_or_default();
    let balances = accounts
        .iter()
        .map(|account| {
            let code = account.currency.code();
            vec![
                Cell::text(code.to_uppercase()),
                Cell::amount(money(account.balance.available, code)),
                Cell::amount(money(account.balance.locked, code)),
            ]
        })
        .collect();
    let (intents, _) = state
        .store
        .list_payment_intents(
            Party::Merchant(merchant.merchant_id),
            &PageRequest {
                limit: 50,
                cursor: None,
            },
        )
        .await
        .unwrap_or_default();
    let rows = intents
        .iter()
        .map(|intent| {
            let code = intent.currency.code();
            let base = format!("/merchant/payments/{}", intent.id);
            let mut actions = Vec::new();
            match intent.status {
                crate::domain::PaymentIntentStatus::RequiresCapture => {
                    let mut capture = Action::new(format!("{base}/capture"), "Capture");
                    capture.input = Some("Amount (blank: all)".into());
                    actions.push(capture);
                    actions.push(Action::new(format!("{base}/cancel"), "Cancel"));
                }
                crate::domain::PaymentIntentStatus::RequiresConfirmation => {
                    actions.push(Action::new(format!("{base}/cancel"), "Cancel"));
                }
                crate::domain::PaymentIntentStatus::Succeeded
                    if intent.amount_refunded < intent.amount_received =>
                {
                    let mut refund = Action::new(format!("{base}/refund"), "Refund");
                    refund.input = Some("Amount (blank: the rest)".into());
                    actions.push(refund);
                }
                _ => {}
            }
            vec![
                Cell::time(intent.created_at.to_rfc3339()),
                match &intent.link_token {
                    Some(token) => Cell::link(
                        intent
                            .description
                            .clone()
                            .unwrap_or_else(|| "Payment".into()),
                        format!("/pay/{token}"),
                    ),
                    None => Cell::text(
                        intent
                            .description
                            .clone()
                            .unwrap_or_else(|| "Payment".into()),
                    ),
                },
                Cell::amount(money(intent.amount.minor_units(), code)),
                Cell::text(intent.status.as_str().replace('_', " ")),
                Cell::amount(money(intent.amount_received, code)),
                Cell::amount(money(intent.amount_refunded, code)),
                Cell {
                    actions,
                    ..Cell::default()
                },
            ]
        })
        .collect();
    let mut layout = layout("Payments", &csrf, true);
    layout.error = error;
    layout.notice = notice;
    let charts = volume_chart(state, &accounts).await.into_iter().collect();
    let listing = ListPage {
        layout,
        charts,
        intro: Vec::new(),
        sections: vec![
            Section {
                heading: "Balance".into(),
                empty: "No accounts yet.".into(),
                columns: vec![
                    ("Currency".into(), false),
                    ("Available".into(), true),
                    ("On hold".into(), true),
                ],
                rows: balances,
                previous: None,
                next: None,
            },
            Section {
                heading: "Payments, newest first".into(),
                empty: "No payments yet: create a payment link.".into(),
                columns: vec![
                    ("Created".into(), false),
                    ("Payment link".into(), false),
                    ("Amount".into(), true),
                    ("Status".into(), false),
                    ("Received".into(), true),
                    ("Refunded".into(), true),
                    ("Actions".into(), false),
                ],
                rows,
                previous: None,
                next: None,
            },
        ],
        links: vec![(
            "/merchant/payment-links".into(),
            "Create a payment link".into(),
        )],
    };
    page(state, &listing, new.then_some(csrf.as_str()))
}

/// The money payments brought in per day over the last 30 days, in the main account's
/// currency (the default currency's, else the first).
async fn volume_chart(
    state: &AppState,
    accounts: &[crate::store::accounts::AccountRecord],
) -> Option<super::chart::Chart> {
    use super::chart;
    let account = accounts
        .iter()
        .find(|account| account.currency == state.default_currency)
        .or_else(|| accounts.first())?;
    let now = state.clock.now();
    let entries = state
        .store
        .entries_since(
            account.id,
            chart::window_start(now),
            chart::CHART_ENTRIES_MAX,
        )
        .await
        .ok()?;
    let received: Vec<_> = entries
        .iter()
        .filter(|entry| matches!(entry.kind.as_str(), "payment_credit" | "capture_credit"))
        .map(|entry| (entry.created_at, entry.amount))
        .collect();
    let totals = chart::daily_totals(now, &received);
    Some(chart::volume_chart(now, &totals, account.currency.code()))
}

async fn dashboard(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    match require_merchant(&request, &state).await {
        Ok(merchant) => dashboard_page(&state, &request, merchant, None, None).await,
        Err(redirect) => redirect,
    }
}

fn link_form(csrf: &str, form: Option<&Form>, error: Option<String>, currency: &str) -> FormPage {
    let value = |name: &str| form.map(|form| text(form, name)).unwrap_or_default();
    let mut layout = layout("New payment link", csrf, true);
    layout.error = error;
    let currencies = crate::domain::Currency::all()
        .map(|currency| (currency.code().to_owned(), currency.code().to_uppercase()))
        .collect();
    let chosen = form
        .map(|form| text(form, "currency"))
        .unwrap_or_else(|| currency.to_owned());
    let methods = vec![
        ("automatic".to_owned(), "Take the money at once".to_owned()),
        ("manual".to_owned(), "Hold it; capture later".to_owned()),
    ];
    let key = form
        .map(|form| text(form, "idempotency_key"))
        .filter(|key| !key.is_empty());
    form_page(
        layout,
        "/merchant/payment-links",
        vec![
            Field::new("description", "What it is for", "text", "off").value(&value("description")),
            Field::new("amount", "Amount", "text", "transaction-amount")
                .value(&value("amount"))
                .hint("In the currency's units, e.g. 12.50."),
            Field::select("currency", "Currency", currencies, &chosen),
            Field::select(
                "capture_method",
                "Capture",
                methods,
                &value("capture_method"),
            ),
            Field::hidden("idempotency_key", &key.unwrap_or_else(form_key)),
        ],
        "Create payment link",
    )
}

async fn new_link_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    if let Err(redirect) = require_merchant(&request, &state).await {
        return redirect;
    }
    let (csrf, new) = csrf_token(&request);
    let form = link_form(&csrf, None, None, state.default_currency.code());
    page(&state, &form, new.then_some(csrf.as_str()))
}

async fn new_link(state: web::Data<AppState>, request: HttpRequest, form: Form) -> HttpResponse {
    let merchant = match require_merchant(&request, &state).await {
        Ok(merchant) => merchant,
        Err(redirect) => return redirect,
    };
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    let (csrf, _) = csrf_token(&request);
    let fail = |error: String| {
        page(
            &state,
            &link_form(&csrf, Some(&form), Some(error), ""),
            None,
        )
    };
    let (amount, currency) = match minor_units(&text(&form, "amount"), &text(&form, "currency")) {
        Ok(parsed) => parsed,
        Err(error) => return fail(error),
    };
    let method = if text(&form, "capture_method") == "manual" {
        "manual"
    } else {
        "automatic"
    };
    let mut body = json!({"amount": amount, "currency": currency.code(), "capture_method": method});
    let description = text(&form, "description");
    if !description.is_empty() {
        body["description"] = json!(description);
    }
    let body = body.to_string();
    let keyed = Keyed::internal(
        &text(&form, "idempotency_key"),
        "/v1/payment_intents",
        body.as_bytes(),
    );
    match outcome(
        crate::http::payments::create_intent(&state, merchant, body.as_bytes(), &keyed).await,
    ) {
        Ok(intent) => {
            let link = intent["payment_link"].as_str().unwrap_or_default();
            let url = format!("{}{link}", state.public_url);
            let mut layout = layout("Payment link created", &csrf, true);
            layout.notice = Some(format!(
                "Send this link to your customer: they pay {} from their walleti.",
                money(amount, currency.code())
            ));
            let mut created = form_page(layout, "", Vec::new(), "");
            created.secret = Some(("Payment link".into(), url.clone()));
            created.links = vec![
                (url, "Open the payment page".into()),
                (HOME.into(), "Back to payments".into()),
            ];
            page(&state, &created, None)
        }
        Err(error) => fail(error),
    }
}

async fn payment_action(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    form: Form,
) -> HttpResponse {
    let merchant = match require_merchant(&request, &state).await {
        Ok(merchant) => merchant,
        Err(redirect) => return redirect,
    };
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    let (intent_id, action) = path.into_inner();
    let key = text(&form, "idempotency_key");
    let amount_text = text(&form, "amount");
    let intent = match intent_id.parse() {
        Ok(id) => state.store.find_payment_intent(id).await.ok().flatten(),
        Err(_) => None,
    }
    .filter(|intent| intent.merchant_id == merchant.merchant_id);
    let Some(intent) = intent else {
        return dashboard_page(
            &state,
            &request,
            merchant,
            Some("No such payment.".into()),
            None,
        )
        .await;
    };
    let amount = if amount_text.is_empty() {
        None
    } else {
        match minor_units(&amount_text, intent.currency.code()) {
            Ok((amount, _)) => Some(amount),
            Err(error) => {
                return dashboard_page(&state, &request, merchant, Some(error), None).await;
            }
        }
    };
    let result = match action.as_str() {
        "capture" => {
            let body = amount.map_or(String::new(), |amount| {
                json!({"amount_to_capture": amount}).to_string()
            });
            let path = format!("/v1/payment_intents/{intent_id}/capture");
            let keyed = Keyed::internal(&key, &path, body.as_bytes());
            crate::http::payments::capture(&state, merchant, &intent_id, body.as_bytes(), &keyed)
                .await
        }
        "cancel" => {
            let path = format!("/v1/payment_intents/{intent_id}/cancel");
            let keyed = Keyed::internal(&key, &path, b"");
            crate::http::payments::cancel(&state, merchant, &intent_id, &keyed).await
        }
        "refund" => {
            let mut body = json!({"payment_intent": intent_id});
            if let Some(amount) = amount {
                body["amount"] = json!(amount);
            }
            let body = body.to_string();
            let keyed = Keyed::internal(&key, "/v1/refunds", body.as_bytes());
            crate::http::payments::refund(&state, merchant, body.as_bytes(), &keyed).await
        }
        _ => {
            return dashboard_page(
                &state,
                &request,
                merchant,
                Some("Unknown action.".into()),
                None,
            )
            .await;
        }
    };
    match outcome(result) {
        Ok(object) => {
            let notice = match action.as_str() {
                "refund" => format!(
                    "Refunded {}.",
                    money(
                        object["amount"].as_i64().unwrap_or(0),
                        intent.currency.code()
                    )
                ),
                "capture" => format!(
                    "Captured {}.",
                    money(
                        object["amount_received"].as_i64().unwrap_or(0),
                        intent.currency.code()
                    )
                ),
                _ => "Payment canceled.".to_owned(),
            };
            dashboard_page(&state, &request, merchant, None, Some(notice)).await
        }
        Err(error) => dashboard_page(&state, &request, merchant, Some(error), None).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Payouts

async fn payouts_view(
    state: &AppState,
    request: &HttpRequest,
    merchant: CurrentMerchant,
    error: Option<String>,
    notice: Option<String>,
) -> HttpResponse {
    let (csrf, new) = csrf_token(request);
    let (payouts, _) = state
        .store
        .list_payouts(
            Party::Merchant(merchant.merchant_id),
            &PageRequest {
                limit: 50,
                cursor: None,
            },
        )
        .await
        .unwrap_or_default();
    let rows: Vec<Vec<Cell>> = payouts
        .iter()
        .map(|payout| {
            let object = PayoutObject::from(payout);
            vec![
                Cell::time(payout.created_at.to_rfc3339()),
                Cell::amount(payout.currency.format(payout.amount.minor_units())),
                Cell::text(object.status.replace('_', " ")),
            ]
        })
        .collect();
    let mut layout = layout("Payouts", &csrf, true);
    layout.error = error;
    layout.notice = notice;
    let currency = state.default_currency.code();
    let form = FormPage {
        layout,
        intro: vec![
            "Withdraw your balance to your bank: the amount is locked until the bank pays it."
                .into(),
        ],
        secret: None,
        action: "/merchant/payouts".into(),
        fields: vec![
            Field::new("amount", "Amount", "text", "transaction-amount"),
            Field::select(
                "currency",
                "Currency",
                crate::domain::Currency::all()
                    .map(|c| (c.code().to_owned(), c.code().to_uppercase()))
                    .collect(),
                currency,
            ),
            Field::hidden("idempotency_key", &form_key()),
        ],
        submit: "Withdraw".into(),
        links: Vec::new(),
        sections: vec![Section {
            heading: "Your payouts, newest first".into(),
            empty: "No payouts yet.".into(),
            columns: vec![
                ("Requested".into(), false),
                ("Amount".into(), true),
                ("Status".into(), false),
            ],
            rows,
            previous: None,
            next: None,
        }],
    };
    page(state, &form, new.then_some(csrf.as_str()))
}

async fn payouts_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    match require_merchant(&request, &state).await {
        Ok(merchant) => payouts_view(&state, &request, merchant, None, None).await,
        Err(redirect) => redirect,
    }
}

async fn payout(state: web::Data<AppState>, request: HttpRequest, form: Form) -> HttpResponse {
    let merchant = match require_merchant(&request, &state).await {
        Ok(merchant) => merchant,
        Err(redirect) => return redirect,
    };
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    let (amount, currency) = match minor_units(&text(&form, "amount"), &text(&form, "currency")) {
        Ok(parsed) => parsed,
        Err(error) => return payouts_view(&state, &request, merchant, Some(error), None).await,
    };
    let body = json!({"amount": amount, "currency": currency.code()}).to_string();
    let keyed = Keyed::internal(
        &text(&form, "idempotency_key"),
        "/v1/payouts",
        body.as_bytes(),
    );
    match outcome(
        crate::http::payments::pay_out(
            &state,
            Principal::Merchant(merchant),
            body.as_bytes(),
            &keyed,
        )
        .await,
    ) {
        Ok(_) => {
            let notice = format!("Payout of {} requested.", money(amount, currency.code()));
            payouts_view(&state, &request, merchant, None, Some(notice)).await
        }
        Err(error) => payouts_view(&state, &request, merchant, Some(error), None).await,
    }
}

// ---------------------------------------------------------------------------------------------
// API keys

async fn keys_view(
    state: &AppState,
    request: &HttpRequest,
    merchant: CurrentMerchant,
    secret: Option<String>,
) -> HttpResponse {
    let (csrf, new) = csrf_token(request);
    let (keys, _) = state
        .store
        .list_api_keys(
            merchant.merchant_id,
            &PageRequest {
                limit: 100,
                cursor: None,
            },
        )
        .await
        .unwrap_or_default();
    let rows = keys
        .iter()
        .map(|key| {
            let actions = if key.revoked_at.is_none() {
                vec![Action::new(
                    format!("/merchant/api-keys/{}/revoke", key.id),
                    "Revoke",
                )]
            } else {
                Vec::new()
            };
            vec![
                Cell::text(key.name.clone().unwrap_or_default()),
                Cell::text(key.redacted.clone()),
                Cell::time(key.created_at.to_rfc3339()),
                key.last_used_at
                    .map_or_else(|| Cell::text("never"), |at| Cell::time(at.to_rfc3339())),
                Cell {
                    text: if key.revoked_at.is_some() {
                        "revoked".into()
                    } else {
                        "active".into()
                    },
                    actions,
                    ..Cell::default()
                },
            ]
        })
        .collect();
    let mut layout = layout("API keys", &csrf, true);
    if secret.is_some() {
        layout.notice = Some("Copy the new key now: it is shown only once.".into());
    }
    let form = FormPage {
        layout,
        intro: vec!["Secret keys let your servers call the walleti API as this merchant.".into()],
        secret: secret.map(|secret| ("New secret key".to_owned(), secret)),
        action: "/merchant/api-keys".into(),
        fields: vec![Field::new("name", "Label for a new key", "text", "off").optional()],
        submit: "Create key".into(),
        links: Vec::new(),
        sections: vec![Section {
            heading: "Your keys".into(),
            empty: "No keys yet.".into(),
            columns: vec![
                ("Label".into(), false),
                ("Key".into(), false),
                ("Created".into(), false),
                ("Last used".into(), false),
                ("Status".into(), false),
            ],
            rows,
            previous: None,
            next: None,
        }],
    };
    page(state, &form, new.then_some(csrf.as_str()))
}

async fn keys_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    match require_merchant(&request, &state).await {
        Ok(merchant) => keys_view(&state, &request, merchant, None).await,
        Err(redirect) => redirect,
    }
}

async fn create_key(state: web::Data<AppState>, request: HttpRequest, form: Form) -> HttpResponse {
    let merchant = match require_merchant(&request, &state).await {
        Ok(merchant) => merchant,
        Err(redirect) => return redirect,
    };
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    let name = text(&form, "name");
    let body = if name.is_empty() {
        json!({})
    } else {
        json!({"name": name})
    };
    match crate::http::merchants::new_api_key(&state, merchant, body.to_string().as_bytes()).await {
        Ok(key) => keys_view(&state, &request, merchant, key.secret).await,
        Err(error) => {
            tracing::warn!(error = %error.detail.message, "create api key from the web");
            keys_view(&state, &request, merchant, None).await
        }
    }
}

async fn revoke_key(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let merchant = match require_merchant(&request, &state).await {
        Ok(merchant) => merchant,
        Err(redirect) => return redirect,
    };
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    if let Ok(id) = path.parse()
        && let Ok(Some(key)) = state.store.find_api_key(id).await
        && key.merchant_id == merchant.merchant_id.to_string()
        && let Err(error) = state.store.revoke_api_key(id, state.clock.now()).await
    {
        tracing::warn!(%error, "revoke api key from the web");
    }
    redirect("/merchant/api-keys")
}

// ---------------------------------------------------------------------------------------------
// Webhook endpoints and deliveries

async fn webhooks_view(
    state: &AppState,
    request: &HttpRequest,
    merchant: CurrentMerchant,
    secret: Option<String>,
    error: Option<String>,
) -> HttpResponse {
    let (csrf, new) = csrf_token(request);
    let (endpoints, _) = state
        .store
        .list_webhook_endpoints(
            merchant.merchant_id,
            &PageRequest {
                limit: 100,
                cursor: None,
            },
        )
        .await
        .unwrap_or_default();
    let mut layout = layout("Webhook endpoints", &csrf, true);
    layout.error = error;
    if secret.is_some() {
        layout.notice = Some("Copy the signing secret now: it is shown only once.".into());
    }
    let form = FormPage {
        layout,
        intro: vec![
            "walleti POSTs every event to your endpoints, signed with Walleti-Signature: \
             t=<unix seconds>,v1=<hex HMAC-SHA256 of \"{t}.{body}\" with the endpoint's secret>."
                .into(),
        ],
        secret: secret.map(|secret| ("Signing secret".to_owned(), secret)),
        action: "/merchant/webhooks".into(),
        fields: vec![
            Field::new("url", "Endpoint URL", "url", "url"),
            Field::new("events", "Events", "text", "off")
                .value("*")
                .hint("Comma-separated event types, or * for all of them."),
        ],
        submit: "Add endpoint".into(),
        sections: Vec::new(),
        links: endpoints
            .iter()
            .map(|endpoint| {
                let status = match &endpoint.disabled_reason {
                    Some(reason) => format!("disabled: {reason}"),
                    None => endpoint.status.clone(),
                };
                (
                    format!("/merchant/webhooks/{}", endpoint.id),
                    format!("{} ({status})", endpoint.url),
                )
            })
            .collect(),
    };
    page(state, &form, new.then_some(csrf.as_str()))
}

async fn webhooks_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    match require_merchant(&request, &state).await {
        Ok(merchant) => webhooks_view(&state, &request, merchant, None, None).await,
        Err(redirect) => redirect,
    }
}

async fn create_webhook(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: Form,
) -> HttpResponse {
    let merchant = match require_merchant(&request, &state).await {
        Ok(merchant) => merchant,
        Err(redirect) => return redirect,
    };
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    let events: Vec<String> = text(&form, "events")
        .split(',')
        .map(|event| event.trim().to_owned())
        .filter(|event| !event.is_empty())
        .collect();
    let body = json!({"url": text(&form, "url"), "events": events}).to_string();
    match crate::http::webhook_endpoints::register(&state, merchant, body.as_bytes()).await {
        Ok(endpoint) => webhooks_view(&state, &request, merchant, endpoint.secret, None).await,
        Err(error) => {
            webhooks_view(&state, &request, merchant, None, Some(error.detail.message)).await
        }
    }
}

async fn webhook_page(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let merchant = match require_merchant(&request, &state).await {
        Ok(merchant) => merchant,
        Err(redirect) => return redirect,
    };
    let (csrf, new) = csrf_token(&request);
    let endpoint = match path.parse::<WebhookEndpointId>() {
        Ok(id) => state.store.find_webhook_endpoint(id).await.ok().flatten(),
        Err(_) => None,
    }
    .filter(|endpoint| endpoint.merchant_id == merchant.merchant_id.to_string());
    let Some(endpoint) = endpoint else {
        return redirect("/merchant/webhooks");
    };
    let id: WebhookEndpointId = match endpoint.id.parse() {
        Ok(id) => id,
        Err(_) => return redirect("/merchant/webhooks"),
    };
    let (deliveries, _) = state
        .store
        .list_webhook_deliveries(
            id,
            &PageRequest {
                limit: 50,
                cursor: None,
            },
        )
        .await
        .unwrap_or_default();
    let mut rows = Vec::new();
    for delivery in &deliveries {
        let attempts = match delivery.id.parse::<WebhookDeliveryId>() {
            Ok(id) => state.store.webhook_attempts(id).await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let log = attempts
            .iter()
            .map(|attempt| {
                let result = match (attempt.status_code, &attempt.error) {
                    (Some(code), None) => format!("HTTP {code}"),
                    (_, Some(error)) => error.clone(),
                    (None, None) => "no answer".into(),
                };
                format!(
                    "#{} {} {} ms ({})",
                    attempt.attempt, result, attempt.latency_ms, attempt.trigger
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        rows.push(vec![
            Cell::time(delivery.created_at.to_rfc3339()),
            Cell::text(delivery.event_type.clone()),
            Cell::text(delivery.status.clone()),
            Cell::text(log),
            Cell {
                actions: vec![Action::new(
                    format!("/merchant/webhook-deliveries/{}/resend", delivery.id),
                    "Re-send",
                )],
                ..Cell::default()
            },
        ]);
    }
    let mut layout = layout(&format!("Webhook endpoint {}", endpoint.url), &csrf, true);
    if let Some(reason) = &endpoint.disabled_reason {
        layout.error = Some(format!("Disabled: {reason}"));
    }
    let listing = ListPage {
        layout,
        charts: Vec::new(),
        intro: vec![format!(
            "Status: {}. Events: {}.",
            endpoint.status,
            serde_json::from_str::<Vec<String>>(&endpoint.events)
                .unwrap_or_default()
                .join(", ")
        )],
        sections: vec![Section {
            heading: "Deliveries and their attempts".into(),
            empty: "Nothing delivered yet.".into(),
            columns: vec![
                ("Created".into(), false),
                ("Event".into(), false),
                ("Status".into(), false),
                ("Attempts".into(), false),
                ("".into(), false),
            ],
            rows,
            previous: None,
            next: None,
        }],
        links: vec![("/merchant/webhooks".into(), "All endpoints".into())],
    };
    page(&state, &listing, new.then_some(csrf.as_str()))
}

async fn resend_delivery(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let merchant = match require_merchant(&request, &state).await {
        Ok(merchant) => merchant,
        Err(redirect) => return redirect,
    };
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    let delivery = match path.parse::<WebhookDeliveryId>() {
        Ok(id) => state
            .store
            .find_webhook_delivery(id)
            .await
            .ok()
            .flatten()
            .map(|d| (id, d)),
        Err(_) => None,
    }
    .filter(|(_, delivery)| delivery.merchant_id == merchant.merchant_id.to_string());
    let Some((id, delivery)) = delivery else {
        return redirect("/merchant/webhooks");
    };
    if crate::http::webhook_endpoints::admit_resend(&state, merchant.merchant_id)
        .await
        .is_err()
    {
        // Rate limited: the page shows the attempts as they are.
        return redirect(&format!("/merchant/webhooks/{}", delivery.endpoint_id));
    }
    let _ = state
        .webhook_dispatcher
        .call(
            |reply| crate::actors::webhook_dispatcher::DispatcherMsg::Resend(id, reply),
            Some(std::time::Duration::from_secs(15)),
        )
        .await;
    redirect(&format!("/merchant/webhooks/{}", delivery.endpoint_id))
}

//! The user app (`/app`): sign up, log in and out, the dashboard (balances, what is on hold,
//! a 30-day balance chart, recent activity in plain words),
//! add money (the bank simulator in embedded mode), send money, history, notifications,
//! withdraw, payment links (`/pay/{intent}`), and settings (sessions, each with a log-out
//! button, log out everywhere, change password). Every action goes through the same core as
//! its API endpoint, with the same validation, errors and idempotency.

use super::{
    Action, Cell, Field, FormPage, Layout, ListPage, Section, StatusFragment, StatusPage,
    USER_COOKIE, activity, chart, csrf_refusal, csrf_token, form_key, minor_units, money, outcome,
    page, pages, redirect, safe_next, set_cookie, web_user,
};
use crate::domain::{OnrampId, TransferId};
use crate::http::AppState;
use crate::http::auth::{CurrentUser, Principal};
use crate::http::idempotency::Keyed;
use crate::store::accounts::{Cursor, Owner, PageRequest};
use crate::store::payments::PaymentIntentObject;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use std::collections::HashMap;

type Form = web::Form<HashMap<String, String>>;
type Query = web::Query<HashMap<String, String>>;

const HOME: &str = "/app";
const LIST_LIMIT: u64 = 20;

pub fn routes(config: &mut web::ServiceConfig) {
    use web::{get, post};
    config
        .route("/app", get().to(dashboard))
        .route("/app/signup", get().to(signup_page))
        .route("/app/signup", post().to(signup))
        .route("/app/login", get().to(login_page))
        .route("/app/login", post().to(login))
        .route("/app/logout", post().to(logout))
        .route("/app/add-money", get().to(add_money_page))
        .route("/app/add-money", post().to(add_money))
        .route("/app/onramps/{id}", get().to(onramp_page))
        .route("/app/onramps/{id}/status", get().to(onramp_status))
        .route("/app/send", get().to(send_page))
        .route("/app/send", post().to(send))
        .route("/app/transfers/{id}", get().to(transfer_page))
        .route("/app/history", get().to(history))
        .route("/app/notifications", get().to(notifications))
        .route("/app/withdraw", get().to(withdraw_page))
        .route("/app/withdraw", post().to(withdraw))
        .route("/app/settings", get().to(settings_page))
        .route("/app/settings/password", post().to(change_password))
        .route("/app/sessions/{id}/revoke", post().to(revoke_session))
        .route("/app/sessions/revoke-all", post().to(revoke_all_sessions))
        .route("/pay/{id}", get().to(pay_page))
        .route("/pay/{id}", post().to(pay));
}

pub(super) fn layout(title: &str, csrf: &str, signed_in: bool) -> Layout {
    let nav = if signed_in {
        [
            ("/app", "Dashboard"),
            ("/app/add-money", "Add money"),
            ("/app/send", "Send"),
            ("/app/history", "History"),
            ("/app/notifications", "Notifications"),
            ("/app/withdraw", "Withdraw"),
            ("/app/settings", "Settings"),
        ]
        .iter()
        .map(|(href, label)| ((*href).to_owned(), (*label).to_owned()))
        .collect()
    } else {
        vec![
            ("/app/login".to_owned(), "Log in".to_owned()),
            ("/app/signup".to_owned(), "Sign up".to_owned()),
        ]
    };
    Layout {
        title: title.to_owned(),
        area: "user",
        home: HOME,
        nav,
        signed_in,
        csrf: csrf.to_owned(),
        error: None,
        notice: None,
    }
}

/// The logged-in user, or a redirect to the login page that comes back here.
pub(super) async fn require_user(
    request: &HttpRequest,
    state: &AppState,
) -> Result<CurrentUser, HttpResponse> {
    match web_user(request, state).await {
        Some(user) => Ok(user),
        None => {
            let next = request.uri().path_and_query().map_or(HOME, |p| p.as_str());
            Err(redirect(&format!(
                "/app/login?next={}",
                utf8_percent_encode(next)
            )))
        }
    }
}

fn utf8_percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

fn form_page(
    layout: Layout,
    intro: Vec<String>,
    action: &str,
    fields: Vec<Field>,
    submit: &str,
) -> FormPage {
    FormPage {
        layout,
        intro,
        secret: None,
        action: action.to_owned(),
        fields,
        submit: submit.to_owned(),
        links: Vec::new(),
        sections: Vec::new(),
    }
}

fn text(form: &Form, name: &str) -> String {
    form.get(name)
        .map(|value| value.trim().to_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Sign up, log in, log out

fn signup_form(csrf: &str, form: Option<&Form>, error: Option<String>) -> FormPage {
    let value = |name: &str| form.map(|form| text(form, name)).unwrap_or_default();
    let mut layout = layout("Create your wallet", csrf, false);
    layout.error = error;
    let mut page = form_page(
        layout,
        vec!["Every new wallet starts with an account in the platform's currency.".into()],
        "/app/signup",
        vec![
            Field::new("name", "Your name", "text", "name").value(&value("name")),
            Field::new("email", "Email", "email", "email").value(&value("email")),
            Field::new("phone", "Mobile phone", "tel", "tel")
                .value(&value("phone"))
                .hint("International format, e.g. +14155550123."),
            Field::new("password", "Password", "password", "new-password")
                .hint("At least 10 characters."),
        ],
        "Create wallet",
    );
    page.links = vec![("/app/login".into(), "Already have a wallet? Log in".into())];
    page
}

async fn signup_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let (csrf, new) = csrf_token(&request);
    page(
        &state,
        &signup_form(&csrf, None, None),
        new.then_some(csrf.as_str()),
    )
}

async fn signup(state: web::Data<AppState>, request: HttpRequest, form: Form) -> HttpResponse {
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    let (csrf, _) = csrf_token(&request);
    let body = json!({
        "name": text(&form, "name"), "email": text(&form, "email"),
        "phone": text(&form, "phone"), "password": form.get("password").cloned().unwrap_or_default(),
    })
    .to_string();
    let client = request.peer_addr().map(|address| address.ip());
    if let Err(error) = crate::http::users::register(&state, client, body.as_bytes()).await {
        return page(
            &state,
            &signup_form(&csrf, Some(&form), Some(error.detail.message)),
            None,
        );
    }
    let login = json!({"login": text(&form, "email"), "password": form.get("password").cloned().unwrap_or_default()});
    match crate::http::users::log_in(
        &state,
        request.peer_addr().map(|address| address.ip()),
        login.to_string().as_bytes(),
    )
    .await
    {
        Ok((token, _, _)) => signed_in(&state, &token, HOME),
        Err(error) => page(
            &state,
            &signup_form(&csrf, Some(&form), Some(error.detail.message)),
            None,
        ),
    }
}

fn signed_in(state: &AppState, token: &str, next: &str) -> HttpResponse {
    let lifetime = state.limits.session_lifetime.as_secs() as i64;
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, next))
        .append_header((
            header::SET_COOKIE,
            set_cookie(state, USER_COOKIE, token, lifetime),
        ))
        .finish()
}

fn login_form(csrf: &str, login: &str, next: &str, error: Option<String>) -> FormPage {
    let mut layout = layout("Log in", csrf, false);
    layout.error = error;
    let mut page = form_page(
        layout,
        Vec::new(),
        "/app/login",
        vec![
            Field::new("login", "Email or phone", "text", "username").value(login),
            Field::new("password", "Password", "password", "current-password"),
            Field::hidden("next", next),
        ],
        "Log in",
    );
    page.links = vec![("/app/signup".into(), "New here? Create a wallet".into())];
    page
}

async fn login_page(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: Query,
) -> HttpResponse {
    let (csrf, new) = csrf_token(&request);
    let next = safe_next(query.get("next"), HOME);
    page(
        &state,
        &login_form(&csrf, "", &next, None),
        new.then_some(csrf.as_str()),
    )
}

async fn login(state: web::Data<AppState>, request: HttpRequest, form: Form) -> HttpResponse {
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    let (csrf, _) = csrf_token(&request);
    let next = safe_next(form.get("next"), HOME);
    let body = json!({"login": text(&form, "login"), "password": form.get("password").cloned().unwrap_or_default()});
    match crate::http::users::log_in(
        &state,
        request.peer_addr().map(|address| address.ip()),
        body.to_string().as_bytes(),
    )
    .await
    {
        Ok((token, _, _)) => signed_in(&state, &token, &next),
        Err(error) => page(
            &state,
            &login_form(
                &csrf,
                &text(&form, "login"),
                &next,
                Some(error.detail.message),
            ),
            None,
        ),
    }
}

async fn logout(state: web::Data<AppState>, request: HttpRequest, form: Form) -> HttpResponse {
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    if let Some(user) = web_user(&request, &state).await
        && let Err(error) = state
            .store
            .revoke_session(user.session_id, state.clock.now())
            .await
    {
        tracing::warn!(%error, "revoke web session");
    }
    logged_out(&state)
}

// ---------------------------------------------------------------------------------------------
// Settings: sessions and password

/// Sessions listed on the settings page at most (newest first).
const SESSIONS_SHOWN_MAX: u64 = 100;

/// The settings page: the change-password form, then the live sessions (each with a log-out
/// button) and "log out everywhere".
async fn settings_view(
    state: &AppState,
    request: &HttpRequest,
    user: CurrentUser,
    error: Option<String>,
    notice: Option<String>,
) -> HttpResponse {
    let (csrf, new) = csrf_token(request);
    let (sessions, _) = state
        .store
        .list_sessions(
            user.user_id,
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
            let current = session.id == user.session_id.to_string();
            vec![
                Cell::time(session.created_at.to_rfc3339()),
                Cell::time(session.expires_at.to_rfc3339()),
                Cell {
                    text: if current {
                        "this device".into()
                    } else {
                        String::new()
                    },
                    actions: vec![Action::new(
                        format!("/app/sessions/{}/revoke", session.id),
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
    let everywhere = Action::new("/app/sessions/revoke-all".into(), "Log out everywhere");
    let settings = FormPage {
        layout,
        intro: vec![
            "Change your password: every other session is logged out.".into(),
        ],
        secret: None,
        action: "/app/settings/password".into(),
        fields: vec![
            Field::new("current_password", "Current password", "password", "current-password"),
            Field::new("new_password", "New password", "password", "new-password")
                .hint("At least 10 characters."),
        ],
        submit: "Change password".into(),
        links: vec![("/app/verify".into(), "Verify your email and phone".into())],
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
    match require_user(&request, &state).await {
        Ok(user) => settings_view(&state, &request, user, None, None).await,
        Err(redirect) => redirect,
    }
}

async fn change_password(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: Form,
) -> HttpResponse {
    let user = match require_user(&request, &state).await {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    let changed = crate::http::users::replace_password(
        &state,
        user,
        form.get("current_password").cloned().unwrap_or_default(),
        form.get("new_password").cloned().unwrap_or_default(),
    )
    .await;
    match changed {
        Ok(()) => {
            let notice = "Password changed; every other session is logged out.".to_owned();
            settings_view(&state, &request, user, None, Some(notice)).await
        }
        Err(error) => settings_view(&state, &request, user, Some(error.detail.message), None).await,
    }
}

/// Logged out here: the cookie goes and the login page comes.
fn logged_out(state: &AppState) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/app/login"))
        .append_header((header::SET_COOKIE, set_cookie(state, USER_COOKIE, "", 0)))
        .finish()
}

async fn revoke_session(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let user = match require_user(&request, &state).await {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    if let Err(error) = crate::http::users::revoke_own_session(&state, user, &path).await {
        return settings_view(&state, &request, user, Some(error.detail.message), None).await;
    }
    if path.as_str() == user.session_id.to_string() {
        return logged_out(&state);
    }
    redirect("/app/settings")
}

async fn revoke_all_sessions(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: Form,
) -> HttpResponse {
    let user = match require_user(&request, &state).await {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    if let Err(error) = state
        .store
        .revoke_user_sessions(user.user_id, None, state.clock.now())
        .await
    {
        let message = crate::http::error::ApiError::from(error).detail.message;
        return settings_view(&state, &request, user, Some(message), None).await;
    }
    logged_out(&state)
}

// ---------------------------------------------------------------------------------------------
// Dashboard and history

fn activity_cells(row: activity::ActivityRow) -> Vec<Cell> {
    vec![
        Cell::time(row.created_at),
        Cell::text(row.description),
        Cell::amount(row.amount),
        Cell::amount(row.balance_after.unwrap_or_default()),
    ]
}

fn activity_columns() -> Vec<(String, bool)> {
    vec![
        ("When".into(), false),
        ("What".into(), false),
        ("Amount".into(), true),
        ("Balance after".into(), true),
    ]
}

/// Activity rows on the dashboard.
const RECENT_ROWS_MAX: u64 = 10;

/// Holds listed on the dashboard at most (the rest are in the locked total).
const HOLDS_SHOWN_MAX: u64 = 20;

async fn dashboard(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let user = match require_user(&request, &state).await {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    let (csrf, new) = csrf_token(&request);
    let owner = Owner::User(user.user_id);
    let accounts = state.store.list_accounts(&owner).await.unwrap_or_default();
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
    let account_ids: Vec<_> = accounts.iter().map(|account| account.id).collect();
    let holds = state
        .store
        .held_holds(&account_ids, HOLDS_SHOWN_MAX)
        .await
        .unwrap_or_default();
    let on_hold = activity::holds_explained(&state, &holds)
        .await
        .into_iter()
        .map(|(what, amount)| vec![Cell::text(what), Cell::amount(amount)])
        .collect();
    // Bookkeeping entries show no row: read more entries than the rows shown.
    let (mut recent, _) = history_rows(
        &state,
        &accounts,
        &PageRequest {
            limit: 2 * RECENT_ROWS_MAX,
            cursor: None,
        },
    )
    .await;
    recent.truncate(RECENT_ROWS_MAX as usize);
    let name = state
        .store
        .find_user(user.user_id)
        .await
        .ok()
        .flatten()
        .map(|user| user.name)
        .unwrap_or_default();
    let charts = balance_chart(&state, &accounts).await.into_iter().collect();
    let mut sections = vec![Section {
        heading: "Balances".into(),
        empty: "No accounts yet.".into(),
        columns: vec![
            ("Currency".into(), false),
            ("Available".into(), true),
            ("On hold".into(), true),
        ],
        rows: balances,
        previous: None,
        next: None,
    }];
    if !holds.is_empty() {
        sections.push(Section {
            heading: "On hold".into(),
            empty: String::new(),
            columns: vec![("Why".into(), false), ("Amount".into(), true)],
            rows: on_hold,
            previous: None,
            next: None,
        });
    }
    sections.push(Section {
        heading: "Recent activity".into(),
        empty: "Nothing yet: add money to get started.".into(),
        columns: activity_columns(),
        rows: recent,
        previous: None,
        next: None,
    });
    let listing = ListPage {
        layout: layout(&format!("Hello, {name}"), &csrf, true),
        charts,
        intro: Vec::new(),
        sections,
        links: vec![("/app/history".into(), "All activity".into())],
    };
    page(&state, &listing, new.then_some(csrf.as_str()))
}

/// The available balance of the main account (the default currency's, else the first) at the
/// end of each of the last 30 days.
async fn balance_chart(
    state: &AppState,
    accounts: &[crate::store::accounts::AccountRecord],
) -> Option<chart::Chart> {
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
    let available: Vec<_> = entries
        .iter()
        .filter(|entry| entry.bucket == "available")
        .map(|entry| (entry.created_at, entry.amount, entry.balance_after))
        .collect();
    let balances = chart::daily_balances(now, account.balance.available, &available);
    Some(chart::balance_chart(
        now,
        &balances,
        account.currency.code(),
    ))
}

async fn history_rows(
    state: &AppState,
    accounts: &[crate::store::accounts::AccountRecord],
    page_request: &PageRequest,
) -> (Vec<Vec<Cell>>, (Vec<String>, bool)) {
    let ids: Vec<_> = accounts.iter().map(|account| account.id).collect();
    if ids.is_empty() {
        return (Vec::new(), (Vec::new(), false));
    }
    let currencies: HashMap<String, &str> = accounts
        .iter()
        .map(|account| (account.id.to_string(), account.currency.code()))
        .collect();
    let (entries, has_more) = state
        .store
        .list_entries(&ids, page_request)
        .await
        .unwrap_or_default();
    let rows = activity::rows(state, &entries, &currencies)
        .await
        .into_iter()
        .map(activity_cells)
        .collect();
    // Pages are cut by entry ids, including the bookkeeping entries no row shows.
    let entry_ids = entries.iter().map(|entry| entry.id.clone()).collect();
    (rows, (entry_ids, has_more))
}

fn cursor(query: &Query) -> Option<Cursor> {
    let valid = |id: &String| id.parse::<uuid::Uuid>().is_ok();
    if let Some(id) = query.get("starting_after").filter(|id| valid(id)) {
        return Some(Cursor::StartingAfter(id.clone()));
    }
    query
        .get("ending_before")
        .filter(|id| valid(id))
        .map(|id| Cursor::EndingBefore(id.clone()))
}

async fn history(state: web::Data<AppState>, request: HttpRequest, query: Query) -> HttpResponse {
    let user = match require_user(&request, &state).await {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    let (csrf, new) = csrf_token(&request);
    let accounts = state
        .store
        .list_accounts(&Owner::User(user.user_id))
        .await
        .unwrap_or_default();
    let cursor = cursor(&query);
    let paging_back = matches!(cursor, Some(Cursor::EndingBefore(_)));
    let at_start = cursor.is_none();
    let (rows, (ids, has_more)) = history_rows(
        &state,
        &accounts,
        &PageRequest {
            limit: LIST_LIMIT,
            cursor,
        },
    )
    .await;
    let (previous, next) = pages(
        "/app/history",
        ids.first().map(String::as_str),
        ids.last().map(String::as_str),
        has_more,
        paging_back,
        at_start,
    );
    let listing = ListPage {
        layout: layout("History", &csrf, true),
        charts: Vec::new(),
        intro: Vec::new(),
        sections: vec![Section {
            heading: "Activity, newest first".into(),
            empty: "No activity yet.".into(),
            columns: activity_columns(),
            rows,
            previous,
            next,
        }],
        links: Vec::new(),
    };
    page(&state, &listing, new.then_some(csrf.as_str()))
}

async fn notifications(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let user = match require_user(&request, &state).await {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    let (csrf, new) = csrf_token(&request);
    let (rows, _) = state
        .store
        .list_notifications(
            user.user_id,
            &PageRequest {
                limit: 50,
                cursor: None,
            },
        )
        .await
        .unwrap_or_default();
    let listing = ListPage {
        layout: layout("Notifications", &csrf, true),
        charts: Vec::new(),
        intro: Vec::new(),
        sections: vec![Section {
            heading: "Newest first".into(),
            empty: "No notifications yet.".into(),
            columns: vec![
                ("When".into(), false),
                ("Title".into(), false),
                ("Message".into(), false),
            ],
            rows: rows
                .iter()
                .map(|(notification, _)| {
                    vec![
                        Cell::time(notification.created_at.to_rfc3339()),
                        Cell::text(notification.title.clone()),
                        Cell::text(notification.body.clone()),
                    ]
                })
                .collect(),
            previous: None,
            next: None,
        }],
        links: Vec::new(),
    };
    page(&state, &listing, new.then_some(csrf.as_str()))
}

// ---------------------------------------------------------------------------------------------
// Money: add, send, withdraw

async fn currency_options(state: &AppState, user: &CurrentUser) -> Vec<(String, String)> {
    let accounts = state
        .store
        .list_accounts(&Owner::User(user.user_id))
        .await
        .unwrap_or_default();
    let mut options: Vec<(String, String)> = accounts
        .iter()
        .map(|account| {
            let code = account.currency.code();
            (code.to_owned(), code.to_uppercase())
        })
        .collect();
    if options.is_empty() {
        let code = state.default_currency.code();
        options.push((code.to_owned(), code.to_uppercase()));
    }
    options
}

fn amount_field(value: &str) -> Field {
    Field::new("amount", "Amount", "text", "transaction-amount")
        .value(value)
        .hint("In the currency's units, e.g. 10.05.")
}

async fn add_money_form(
    state: &AppState,
    user: &CurrentUser,
    csrf: &str,
    form: Option<&Form>,
    error: Option<String>,
) -> FormPage {
    let value = |name: &str| form.map(|form| text(form, name)).unwrap_or_default();
    let mut layout = layout("Add money", csrf, true);
    layout.error = error;
    let mut providers = vec![("bank".to_owned(), "Bank transfer".to_owned())];
    if state.stripe.is_some() {
        providers.push(("stripe".to_owned(), "Card (Stripe Checkout)".to_owned()));
    }
    let currencies = currency_options(state, user).await;
    let currency = value("currency");
    let key = form
        .map(|form| text(form, "idempotency_key"))
        .filter(|key| !key.is_empty());
    form_page(
        layout,
        vec![
            "Your bank (or card) confirms the payment; the money arrives as soon as it does."
                .into(),
        ],
        "/app/add-money",
        vec![
            amount_field(&value("amount")),
            Field::select("currency", "Currency", currencies, &currency),
            Field::select("provider", "Pay with", providers, &value("provider")),
            Field::hidden("idempotency_key", &key.unwrap_or_else(form_key)),
        ],
        "Continue to payment",
    )
}

async fn add_money_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let user = match require_user(&request, &state).await {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    let (csrf, new) = csrf_token(&request);
    let form = add_money_form(&state, &user, &csrf, None, None).await;
    page(&state, &form, new.then_some(csrf.as_str()))
}

async fn add_money(state: web::Data<AppState>, request: HttpRequest, form: Form) -> HttpResponse {
    let user = match require_user(&request, &state).await {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    let (csrf, _) = csrf_token(&request);
    let fail = async |error: String| {
        page(
            &state,
            &add_money_form(&state, &user, &csrf, Some(&form), Some(error)).await,
            None,
        )
    };
    let (amount, currency) = match minor_units(&text(&form, "amount"), &text(&form, "currency")) {
        Ok(parsed) => parsed,
        Err(error) => return fail(error).await,
    };
    let provider = if text(&form, "provider") == "stripe" {
        "stripe"
    } else {
        "bank"
    };
    let body =
        json!({"provider": provider, "amount": amount, "currency": currency.code()}).to_string();
    let keyed = Keyed::internal(
        &text(&form, "idempotency_key"),
        "/v1/onramps",
        body.as_bytes(),
    );
    match outcome(crate::http::onramps::top_up(&state, user, body.as_bytes(), &keyed).await) {
        Ok(onramp) => {
            let id = onramp["id"].as_str().unwrap_or_default();
            redirect(&format!("/app/onramps/{id}"))
        }
        Err(error) => fail(error).await,
    }
}

async fn onramp_view(
    state: &AppState,
    user: &CurrentUser,
    id: &str,
) -> Option<(crate::store::onramps::OnrampRecord, StatusFragment)> {
    let id: OnrampId = id.parse().ok()?;
    let onramp = state.store.find_onramp(id).await.ok()??;
    if onramp.user_id != user.user_id {
        return None;
    }
    let amount = onramp.currency.format(onramp.amount.minor_units());
    let status = onramp.status.as_str().to_owned();
    let done = onramp.status.is_terminal();
    let mut details = vec![format!("Top-up of {amount}.")];
    if let Some(code) = &onramp.failure_code {
        details.push(format!("Reason: {}.", code.replace('_', " ")));
    }
    let poll = (!done).then(|| format!("/app/onramps/{id}/status"));
    Some((
        onramp,
        StatusFragment {
            status,
            details,
            poll,
        },
    ))
}

async fn onramp_page(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let user = match require_user(&request, &state).await {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    let (csrf, new) = csrf_token(&request);
    let Some((onramp, fragment)) = onramp_view(&state, &user, &path).await else {
        return not_found(&state, &csrf);
    };
    let mut links = Vec::new();
    if !onramp.status.is_terminal()
        && let Some(url) = &onramp.redirect_url
    {
        let label = match onramp.provider {
            crate::domain::OnrampProvider::Stripe => "Pay by card on Stripe Checkout",
            crate::domain::OnrampProvider::Bank => "Approve the payment at your bank",
        };
        links.push((url.clone(), label.to_owned()));
    }
    links.push(("/app".into(), "Back to your dashboard".into()));
    let status_page = StatusPage {
        layout: layout("Add money", &csrf, true),
        intro: vec!["This page updates by itself when your bank answers.".into()],
        status: fragment.status,
        details: fragment.details,
        poll: fragment.poll,
        links,
    };
    page(&state, &status_page, new.then_some(csrf.as_str()))
}

async fn onramp_status(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let Some(user) = web_user(&request, &state).await else {
        return HttpResponse::Unauthorized().finish();
    };
    match onramp_view(&state, &user, &path).await {
        Some((_, fragment)) => page(&state, &fragment, None),
        None => HttpResponse::NotFound().finish(),
    }
}

fn not_found(state: &AppState, csrf: &str) -> HttpResponse {
    let mut layout = layout("Not found", csrf, true);
    layout.error = Some("There is nothing here, or it is not yours.".into());
    let mut response = page(
        state,
        &form_page(layout, Vec::new(), "", Vec::new(), ""),
        None,
    );
    *response.status_mut() = actix_web::http::StatusCode::NOT_FOUND;
    response
}

async fn send_form(
    state: &AppState,
    user: &CurrentUser,
    csrf: &str,
    form: Option<&Form>,
    error: Option<String>,
) -> FormPage {
    let value = |name: &str| form.map(|form| text(form, name)).unwrap_or_default();
    let mut layout = layout("Send money", csrf, true);
    layout.error = error;
    let currencies = currency_options(state, user).await;
    let key = form
        .map(|form| text(form, "idempotency_key"))
        .filter(|key| !key.is_empty());
    form_page(
        layout,
        Vec::new(),
        "/app/send",
        vec![
            Field::new("to", "To (email or phone)", "text", "off")
                .value(&value("to"))
                .hint("The person's email, or their phone in international format."),
            amount_field(&value("amount")),
            Field::select("currency", "Currency", currencies, &value("currency")),
            Field::new("note", "Note", "text", "off")
                .value(&value("note"))
                .optional(),
            Field::hidden("idempotency_key", &key.unwrap_or_else(form_key)),
        ],
        "Send",
    )
}

async fn send_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let user = match require_user(&request, &state).await {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    let (csrf, new) = csrf_token(&request);
    let form = send_form(&state, &user, &csrf, None, None).await;
    page(&state, &form, new.then_some(csrf.as_str()))
}

async fn send(state: web::Data<AppState>, request: HttpRequest, form: Form) -> HttpResponse {
    let user = match require_user(&request, &state).await {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    let (csrf, _) = csrf_token(&request);
    let fail = async |error: String| {
        page(
            &state,
            &send_form(&state, &user, &csrf, Some(&form), Some(error)).await,
            None,
        )
    };
    let (amount, currency) = match minor_units(&text(&form, "amount"), &text(&form, "currency")) {
        Ok(parsed) => parsed,
        Err(error) => return fail(error).await,
    };
    let mut body = json!({"to": text(&form, "to"), "amount": amount, "currency": currency.code()});
    let note = text(&form, "note");
    if !note.is_empty() {
        body["note"] = json!(note);
    }
    let body = body.to_string();
    let keyed = Keyed::internal(
        &text(&form, "idempotency_key"),
        "/v1/transfers",
        body.as_bytes(),
    );
    match outcome(crate::http::transfers::send(&state, user, body.as_bytes(), &keyed).await) {
        Ok(transfer) => redirect(&format!(
            "/app/transfers/{}",
            transfer["id"].as_str().unwrap_or_default()
        )),
        Err(error) => fail(error).await,
    }
}

async fn transfer_page(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let user = match require_user(&request, &state).await {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    let (csrf, new) = csrf_token(&request);
    let transfer = match path.parse::<TransferId>() {
        Ok(id) => state.store.find_transfer(id).await.ok().flatten(),
        Err(_) => None,
    };
    let Some(transfer) = transfer.filter(|transfer| {
        transfer.from == crate::store::transfers::Party::User(user.user_id)
            || transfer.to == crate::store::transfers::Party::User(user.user_id)
    }) else {
        return not_found(&state, &csrf);
    };
    let amount = transfer.currency.format(transfer.amount.minor_units());
    let mut details = vec![format!("Amount: {amount}.")];
    if let Some(note) = &transfer.note {
        details.push(format!("Note: {note}"));
    }
    if let Some(code) = transfer.failure_code {
        details.push(code.message().to_owned());
    }
    let (direction, counterparty) =
        if transfer.from == crate::store::transfers::Party::User(user.user_id) {
            ("Sent to", transfer.to)
        } else {
            ("Received from", transfer.from)
        };
    let name = match counterparty {
        crate::store::transfers::Party::User(id) => state
            .store
            .find_user(id)
            .await
            .ok()
            .flatten()
            .map(|user| user.name),
        crate::store::transfers::Party::Merchant(id) => state
            .store
            .find_merchant(id)
            .await
            .ok()
            .flatten()
            .map(|merchant| merchant.name),
    }
    .unwrap_or_else(|| "someone".to_owned());
    let status_page = StatusPage {
        layout: layout(&format!("{direction} {name}"), &csrf, true),
        intro: Vec::new(),
        status: transfer.state.api_status().to_owned(),
        details,
        poll: None,
        links: vec![
            ("/app".into(), "Back to your dashboard".into()),
            ("/app/send".into(), "Send more".into()),
        ],
    };
    page(&state, &status_page, new.then_some(csrf.as_str()))
}

async fn withdraw_form(
    state: &AppState,
    user: &CurrentUser,
    csrf: &str,
    form: Option<&Form>,
    error: Option<String>,
) -> FormPage {
    let value = |name: &str| form.map(|form| text(form, name)).unwrap_or_default();
    let mut layout = layout("Withdraw to your bank", csrf, true);
    layout.error = error;
    let currencies = currency_options(state, user).await;
    let key = form
        .map(|form| text(form, "idempotency_key"))
        .filter(|key| !key.is_empty());
    form_page(
        layout,
        vec!["The amount is locked at once and leaves your wallet when the bank pays it.".into()],
        "/app/withdraw",
        vec![
            amount_field(&value("amount")),
            Field::select("currency", "Currency", currencies, &value("currency")),
            Field::hidden("idempotency_key", &key.unwrap_or_else(form_key)),
        ],
        "Withdraw",
    )
}

async fn withdraw_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let user = match require_user(&request, &state).await {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    let (csrf, new) = csrf_token(&request);
    let form = withdraw_form(&state, &user, &csrf, None, None).await;
    page(&state, &form, new.then_some(csrf.as_str()))
}

async fn withdraw(state: web::Data<AppState>, request: HttpRequest, form: Form) -> HttpResponse {
    let user = match require_user(&request, &state).await {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    let (csrf, _) = csrf_token(&request);
    let fail = async |error: String| {
        page(
            &state,
            &withdraw_form(&state, &user, &csrf, Some(&form), Some(error)).await,
            None,
        )
    };
    let (amount, currency) = match minor_units(&text(&form, "amount"), &text(&form, "currency")) {
        Ok(parsed) => parsed,
        Err(error) => return fail(error).await,
    };
    let body = json!({"amount": amount, "currency": currency.code()}).to_string();
    let keyed = Keyed::internal(
        &text(&form, "idempotency_key"),
        "/v1/payouts",
        body.as_bytes(),
    );
    match outcome(
        crate::http::payments::pay_out(&state, Principal::User(user), body.as_bytes(), &keyed)
            .await,
    ) {
        Ok(payout) => {
            let status_page = StatusPage {
                layout: layout("Withdrawal", &csrf, true),
                intro: vec![format!(
                    "Withdrawal of {} requested.",
                    money(payout["amount"].as_i64().unwrap_or(0), currency.code())
                )],
                status: payout["status"].as_str().unwrap_or("pending").to_owned(),
                details: Vec::new(),
                poll: None,
                links: vec![("/app".into(), "Back to your dashboard".into())],
            };
            page(&state, &status_page, None)
        }
        Err(error) => fail(error).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Payment links

async fn pay_view(
    state: &AppState,
    request: &HttpRequest,
    id: &str,
    error: Option<String>,
) -> HttpResponse {
    let (csrf, new) = csrf_token(request);
    let user = web_user(request, state).await;
    let Some(intent) = payment_link_intent(state, id).await else {
        return not_found(state, &csrf);
    };
    let merchant = state
        .store
        .find_merchant(intent.merchant_id)
        .await
        .ok()
        .flatten()
        .map(|merchant| merchant.name)
        .unwrap_or_else(|| "A merchant".into());
    let object = PaymentIntentObject::from(&intent);
    let amount = intent.currency.format(intent.amount.minor_units());
    let mut layout = layout(&format!("Pay {merchant}"), &csrf, user.is_some());
    layout.error = error;
    let mut intro = vec![format!("{merchant} asks you to pay {amount}.")];
    if let Some(description) = &intent.description {
        intro.push(format!("For: {description}"));
    }
    let payable = object.status == "requires_confirmation";
    let mut fields = Vec::new();
    let mut links = Vec::new();
    match (&user, payable) {
        (Some(_), true) => {
            if intent.capture_method == crate::domain::CaptureMethod::Manual {
                intro.push(
                    "The amount is held in your wallet until the merchant captures it.".into(),
                );
            }
            fields.push(Field::hidden("idempotency_key", &form_key()));
        }
        (None, true) => links.push((
            format!("/app/login?next=/pay/{id}"),
            "Log in to pay".to_owned(),
        )),
        _ => intro.push(format!("Status: {}.", object.status.replace('_', " "))),
    }
    if user.is_some() {
        links.push(("/app".into(), "Back to your dashboard".into()));
    }
    let form = FormPage {
        layout,
        intro,
        secret: None,
        action: format!("/pay/{id}"),
        fields,
        submit: format!("Pay {amount}"),
        links,
        sections: Vec::new(),
    };
    page(state, &form, new.then_some(csrf.as_str()))
}

/// The payment intent behind a payment link (`/pay/{token}`): by its 128-bit token only,
/// never by the intent's id.
async fn payment_link_intent(
    state: &AppState,
    token: &str,
) -> Option<crate::store::payments::PaymentIntentRecord> {
    let well_formed = token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit());
    if !well_formed {
        return None;
    }
    state
        .store
        .find_payment_intent_by_link(token)
        .await
        .ok()
        .flatten()
}

async fn pay_page(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    pay_view(&state, &request, &path, None).await
}

async fn pay(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let user = match require_user(&request, &state).await {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    let Some(intent) = payment_link_intent(&state, &path).await else {
        let (csrf, _) = csrf_token(&request);
        return not_found(&state, &csrf);
    };
    let intent_id = intent.id.to_string();
    let path_for_key = format!("/v1/payment_intents/{intent_id}/confirm");
    let keyed = Keyed::internal(&text(&form, "idempotency_key"), &path_for_key, b"");
    match outcome(crate::http::payments::confirm(&state, user, &intent_id, &keyed).await) {
        Ok(_) => redirect(&format!("/pay/{}", path.as_str())),
        Err(error) => pay_view(&state, &request, &path, Some(error)).await,
    }
}

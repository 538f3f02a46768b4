//! The two web apps walleti serves from the same binary, on top of the same API cores: the
//! user app under `/app` (and payment links at `/pay/{id}`), the merchant app under
//! `/merchant`. Pages are rendered on the server from compiled askama templates and work
//! without JavaScript; htmx (vendored, embedded, served at `/static/htmx.min.js`) only adds
//! live status updates.
//!
//! Web sessions are the API's session records: the bearer token lives in an `HttpOnly`,
//! `SameSite=Lax` cookie (`Secure` when walleti is served over TLS). Every form carries a CSRF
//! token bound to the session: with a session cookie, the token is derived from that session's
//! secret token (so it is worthless in another session, and a cookie planted by a sibling
//! site cannot forge it); before logging in, it must match the random `walleti_csrf` cookie
//! (double submit). Every money-moving form carries an idempotency key, so a double click never
//! pays twice.

pub mod activity;
pub mod chart;
pub mod merchant_app;
pub mod user_app;
pub mod verify;

use super::AppState;
use super::auth::{CurrentMerchant, CurrentUser, constant_time_equal, sha256_hex};
use super::error::ApiError;
use super::idempotency::JsonResponse;
use crate::store::merchants::MerchantCredential;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

pub const USER_COOKIE: &str = "walleti_user";
pub const MERCHANT_COOKIE: &str = "walleti_merchant";
pub const CSRF_COOKIE: &str = "walleti_csrf";
const HTMX: &str = include_str!("../../../static/vendor/htmx/htmx.min.js");
const APP_CSS: &str = include_str!("../../../static/app.css");
const APP_JS: &str = include_str!("../../../static/app.js");

/// The web routes.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/", web::get().to(|| async { redirect("/app") }))
        .route("/static/htmx.min.js", web::get().to(htmx))
        .route("/static/app.css", web::get().to(app_css))
        .route("/static/app.js", web::get().to(app_js));
    user_app::routes(config);
    verify::routes(config);
    merchant_app::routes(config);
}

async fn htmx() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(HTMX)
}

async fn app_css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(APP_CSS)
}

async fn app_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(APP_JS)
}

/// A cookie's value from the request.
pub fn cookie(request: &HttpRequest, name: &str) -> Option<String> {
    request
        .headers()
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty())
}

/// `Set-Cookie` for a web cookie: HttpOnly, SameSite=Lax, Path=/, Secure over TLS.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age_seconds: i64) -> String {
    let secure = if state.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_seconds}{secure}")
}

/// The session cookie the forms of the request's app are bound to: the merchant's under
/// `/merchant`, the user's elsewhere (`/app`, `/pay`).
fn session_cookie(request: &HttpRequest) -> Option<String> {
    let name = if request.path().starts_with("/merchant") {
        MERCHANT_COOKIE
    } else {
        USER_COOKIE
    };
    cookie(request, name)
}

/// The CSRF token of a session: derived from its secret bearer token, which only the server
/// and the browser holding the `HttpOnly` cookie know.
fn session_csrf(session_token: &str) -> String {
    sha256_hex(format!("walleti-csrf\n{session_token}").as_bytes())
}

/// The request's CSRF token, and whether it must be set as a cookie (first visit, before
/// logging in).
pub fn csrf_token(request: &HttpRequest) -> (String, bool) {
    if let Some(session) = session_cookie(request) {
        return (session_csrf(&session), false);
    }
    match cookie(request, CSRF_COOKIE) {
        Some(token) if token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()) => {
            (token, false)
        }
        _ => (hex::encode(rand::random::<[u8; 32]>()), true),
    }
}

/// `None` when the form's CSRF field is the session's token (or, before logging in, matches
/// the CSRF cookie); otherwise the refusal to answer.
pub fn csrf_refusal(request: &HttpRequest, form_token: Option<&String>) -> Option<HttpResponse> {
    let expected = match session_cookie(request) {
        Some(session) => Some(session_csrf(&session)),
        None => cookie(request, CSRF_COOKIE),
    };
    match (expected, form_token) {
        (Some(expected), Some(token))
            if constant_time_equal(expected.as_bytes(), token.as_bytes()) =>
        {
            None
        }
        _ => Some(
            HttpResponse::Forbidden()
                .content_type("text/html; charset=utf-8")
                .body(
                    "<!doctype html><title>Forbidden</title><p role=\"alert\">This form expired or \
                 did not come from walleti. Go back, reload the page and try again.</p>",
                ),
        ),
    }
}

/// Renders a page, setting the CSRF cookie on a first visit.
pub fn page(state: &AppState, template: &impl Template, new_csrf: Option<&str>) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response.content_type("text/html; charset=utf-8");
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(token) = new_csrf {
        response.append_header((
            header::SET_COOKIE,
            set_cookie(state, CSRF_COOKIE, token, 24 * 3600),
        ));
    }
    match template.render() {
        Ok(html) => response.body(html),
        Err(error) => {
            tracing::error!(%error, "render page");
            HttpResponse::InternalServerError().body("The page could not be rendered.")
        }
    }
}

/// 303 See Other to `location` (after a form POST).
pub fn redirect(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// The logged-in user behind the user cookie.
pub async fn web_user(request: &HttpRequest, state: &AppState) -> Option<CurrentUser> {
    let token = cookie(request, USER_COOKIE)?;
    let (user_id, session_id) = state
        .store
        .authenticate_user(&sha256_hex(token.as_bytes()), state.clock.now())
        .await
        .ok()??;
    Some(CurrentUser {
        user_id,
        session_id,
    })
}

/// The logged-in merchant behind the merchant cookie (a session, never an API key).
pub async fn web_merchant(request: &HttpRequest, state: &AppState) -> Option<CurrentMerchant> {
    let token = cookie(request, MERCHANT_COOKIE)?;
    let (merchant_id, credential) = state
        .store
        .authenticate_merchant(&sha256_hex(token.as_bytes()), false, state.clock.now())
        .await
        .ok()??;
    matches!(credential, MerchantCredential::Session(_)).then_some(CurrentMerchant {
        merchant_id,
        credential,
    })
}

/// What an API core answered, for a page: the JSON object, or the error's message.
pub fn outcome(
    result: Result<(JsonResponse, bool), ApiError>,
) -> Result<serde_json::Value, String> {
    match result {
        Ok((response, _)) if response.status.is_success() => {
            Ok(serde_json::from_str(&response.body).unwrap_or(serde_json::Value::Null))
        }
        Ok((response, _)) => Err(serde_json::from_str::<serde_json::Value>(&response.body)
            .ok()
            .and_then(|body| body["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "The request was refused.".to_owned())),
        Err(error) => Err(error.detail.message),
    }
}

/// A new idempotency key for a money-moving form.
pub fn form_key() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// An amount typed in major units, as the API's minor units (`10.05` usd → 1005).
pub fn minor_units(text: &str, currency: &str) -> Result<(i64, crate::domain::Currency), String> {
    let currency = crate::domain::Currency::parse(currency.trim())
        .map_err(|_| "Choose a supported currency.".to_owned())?;
    let amount = currency.parse_major_units(text).map_err(|_| {
        format!(
            "Enter an amount like {}, with at most {} decimals.",
            currency.format(1050_i64.min(10_i64.pow(currency.exponent()) * 10)),
            currency.exponent()
        )
    })?;
    Ok((amount.minor_units(), currency))
}

/// `minor_units` of `currency` for people (`$10.05`).
pub fn money(minor_units: i64, currency: &str) -> String {
    crate::domain::Currency::parse(currency)
        .map(|currency| currency.format(minor_units))
        .unwrap_or_else(|_| format!("{minor_units} {currency}"))
}

/// What every page shows around its content.
pub struct Layout {
    pub title: String,
    /// `user` or `merchant`.
    pub area: &'static str,
    pub home: &'static str,
    pub nav: Vec<(String, String)>,
    pub signed_in: bool,
    pub csrf: String,
    pub error: Option<String>,
    pub notice: Option<String>,
}

/// One form field.
pub struct Field {
    pub name: String,
    pub label: String,
    /// An input type (`text`, `email`, `password`, `tel`, `url`, `hidden`) or `select`.
    pub input: &'static str,
    pub value: String,
    pub options: Vec<(String, String)>,
    pub hint: Option<String>,
    pub required: bool,
    pub autocomplete: &'static str,
}

impl Field {
    pub fn new(name: &str, label: &str, input: &'static str, autocomplete: &'static str) -> Field {
        Field {
            name: name.to_owned(),
            label: label.to_owned(),
            input,
            value: String::new(),
            options: Vec::new(),
            hint: None,
            required: input != "hidden",
            autocomplete,
        }
    }

    pub fn hidden(name: &str, value: &str) -> Field {
        Field {
            value: value.to_owned(),
            ..Field::new(name, name, "hidden", "off")
        }
    }

    pub fn value(mut self, value: &str) -> Field {
        self.value = value.to_owned();
        self
    }

    pub fn hint(mut self, hint: &str) -> Field {
        self.hint = Some(hint.to_owned());
        self
    }

    pub fn optional(mut self) -> Field {
        self.required = false;
        self
    }

    pub fn select(name: &str, label: &str, options: Vec<(String, String)>, value: &str) -> Field {
        Field {
            options,
            value: value.to_owned(),
            ..Field::new(name, label, "select", "off")
        }
    }
}

#[derive(Template)]
#[template(path = "form.html")]
pub struct FormPage {
    pub layout: Layout,
    pub intro: Vec<String>,
    /// Something shown once (a new API key's secret): (what it is, the value).
    pub secret: Option<(String, String)>,
    pub action: String,
    pub fields: Vec<Field>,
    pub submit: String,
    pub links: Vec<(String, String)>,
    /// Tables shown after the form.
    pub sections: Vec<Section>,
}

/// A table cell: text, a link, a time, and forms acting on the row.
#[derive(Default)]
pub struct Cell {
    pub text: String,
    pub link: Option<String>,
    pub time: bool,
    pub numeric: bool,
    pub actions: Vec<Action>,
}

impl Cell {
    pub fn text(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            ..Cell::default()
        }
    }

    pub fn link(text: impl Into<String>, href: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            link: Some(href.into()),
            ..Cell::default()
        }
    }

    pub fn time(rfc3339: impl Into<String>) -> Cell {
        Cell {
            text: rfc3339.into(),
            time: true,
            ..Cell::default()
        }
    }

    pub fn amount(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            numeric: true,
            ..Cell::default()
        }
    }
}

/// A one-button form on a row (capture, cancel, refund with an amount, revoke, re-send).
pub struct Action {
    pub url: String,
    pub label: String,
    pub key: String,
    /// A text input named `amount`, with this label.
    pub input: Option<String>,
    pub id: String,
}

impl Action {
    pub fn new(url: String, label: &str) -> Action {
        Action {
            id: format!("action-{}", uuid::Uuid::now_v7().simple()),
            url,
            label: label.to_owned(),
            key: form_key(),
            input: None,
        }
    }
}

pub struct Section {
    pub heading: String,
    pub empty: String,
    /// (heading, numeric)
    pub columns: Vec<(String, bool)>,
    pub rows: Vec<Vec<Cell>>,
    pub previous: Option<String>,
    pub next: Option<String>,
}

#[derive(Template)]
#[template(path = "list.html")]
pub struct ListPage {
    pub layout: Layout,
    pub intro: Vec<String>,
    pub sections: Vec<Section>,
    /// Charts shown before the last section.
    pub charts: Vec<chart::Chart>,
    pub links: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "status.html")]
pub struct StatusPage {
    pub layout: Layout,
    pub intro: Vec<String>,
    pub status: String,
    pub details: Vec<String>,
    /// Where htmx polls for the live status fragment while it can still change.
    pub poll: Option<String>,
    pub links: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "status_fragment.html")]
pub struct StatusFragment {
    pub status: String,
    pub details: Vec<String>,
    pub poll: Option<String>,
}

/// Pagination links for a newest-first list page at `base` (which has no query yet).
pub fn pages(
    base: &str,
    first_id: Option<&str>,
    last_id: Option<&str>,
    has_more: bool,
    paging_back: bool,
    at_start: bool,
) -> (Option<String>, Option<String>) {
    let separator = if base.contains('?') { '&' } else { '?' };
    let newer = match (paging_back, has_more, at_start, first_id) {
        (true, true, _, Some(first)) | (false, _, false, Some(first)) => {
            Some(format!("{base}{separator}ending_before={first}"))
        }
        _ => None,
    };
    let older = match (paging_back, has_more, last_id) {
        (false, true, Some(last)) | (true, _, Some(last)) => {
            Some(format!("{base}{separator}starting_after={last}"))
        }
        _ => None,
    };
    (newer, older)
}

/// Longest `next` path kept after logging in.
const NEXT_LENGTH_MAX: usize = 512;

/// A local path to go back to after logging in (never another site): an absolute path that
/// starts with exactly one `/`, with no backslash, no control character and no
/// percent-encoded control character or backslash anywhere (browsers drop tabs and newlines
/// from URLs, so `/\t/evil.example` would become `//evil.example`).
pub fn safe_next(next: Option<&String>, fallback: &str) -> String {
    match next {
        Some(path) if is_local_path(path) => path.clone(),
        _ => fallback.to_owned(),
    }
}

fn is_local_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    let encoded_forbidden = bytes.windows(3).any(|window| {
        window[0] == b'%'
            && std::str::from_utf8(&window[1..])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .is_some_and(|byte| byte < 0x20 || byte == 0x7f || byte == b'\\')
    });
    path.len() < NEXT_LENGTH_MAX
        && bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/') | Some(b'\\'))
        && !path.contains('\\')
        && !path.chars().any(char::is_control)
        && !encoded_forbidden
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_accepts_only_same_origin_paths() {
        let next = |text: &str| safe_next(Some(&text.to_owned()), "/app");
        for local in ["/app/wallet", "/pay/pi_1?x=1", "/app/onramps/onr_1/done"] {
            assert_eq!(next(local), local);
        }
        for foreign in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/%09/evil.example",
            "/%0a/evil.example",
            "/%0D%0A/evil.example",
            "/%5c/evil.example",
            "/%7F/evil.example",
            "https://evil.example",
            "evil.example",
            "",
            "/\u{85}/evil.example",
        ] {
            assert_eq!(next(foreign), "/app", "{foreign:?}");
        }
        assert_eq!(next(&format!("/{}", "a".repeat(600))), "/app");
        assert_eq!(safe_next(None, "/app"), "/app");
    }
}

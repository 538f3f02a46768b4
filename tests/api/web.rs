//! The web apps at the HTTP level (the browser test drives them end to end): cookies are
//! HttpOnly and SameSite=Lax, forms without the CSRF token are refused, a resubmitted money form
//! moves money once, amounts typed in major units are exact, logging out revokes the session,
//! and someone else's objects are not shown.

use crate::helpers::{Backend, TestApp, spawn_app};
use reqwest::StatusCode;
use std::collections::HashMap;

/// A browser-like client: follows no redirects, keeps its cookies by hand.
pub(crate) struct WebClient {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
    /// The CSRF token of the last page that had a form.
    page_csrf: Option<String>,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    set_cookies: Vec<String>,
    html: String,
}

impl WebClient {
    fn new(app: &TestApp) -> WebClient {
        WebClient {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: app.address.clone(),
            cookies: HashMap::new(),
            page_csrf: None,
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let response = request
            .header("Cookie", self.cookie_header())
            .send()
            .await
            .expect("send");
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let set_cookies: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|value| value.to_str().ok().map(str::to_owned))
            .collect();
        for cookie in &set_cookies {
            if let Some((pair, _)) = cookie.split_once(';')
                && let Some((name, value)) = pair.split_once('=')
            {
                if value.is_empty() {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        let html = response.text().await.expect("html");
        let csrf = hidden_value(&html, "csrf");
        if !csrf.is_empty() {
            self.page_csrf = Some(csrf);
        }
        Page {
            status,
            location,
            set_cookies,
            html,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(request).await
    }

    /// The CSRF token the last page with a form carried (what a browser would submit).
    fn csrf(&self) -> String {
        self.page_csrf.clone().unwrap_or_default()
    }

    /// Signs up through the form and returns the session cookie.
    async fn sign_up(&mut self, name: &str, email: &str, phone: &str) {
        let form = self.get("/app/signup").await;
        assert_eq!(form.status, StatusCode::OK);
        let csrf = self.csrf();
        let created = self
            .post(
                "/app/signup",
                &[
                    ("csrf", &csrf),
                    ("name", name),
                    ("email", email),
                    ("phone", phone),
                    ("password", "correct horse battery"),
                ],
            )
            .await;
        assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.html);
        let session = created
            .set_cookies
            .iter()
            .find(|cookie| cookie.starts_with("walleti_user="))
            .expect("session cookie");
        assert!(
            session.contains("HttpOnly") && session.contains("SameSite=Lax"),
            "{session}"
        );
    }
}

fn hidden_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    html.split_once(&marker)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(value, _)| value.to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn web_forms_are_csrf_protected_idempotent_exact_and_private() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ada = WebClient::new(&app);
    ada.sign_up("Ada", "ada-web@example.com", "+14155550181")
        .await;
    let mut bob = WebClient::new(&app);
    bob.sign_up("Bob", "bob-web@example.com", "+14155550182")
        .await;
    let ada_id = {
        let me = ada.get("/app").await;
        assert!(me.html.contains("Hello, Ada"), "{}", me.html);
        app.state()
            .store
            .find_user_by_email(
                &walleti::domain::Email::parse("ada-web@example.com").expect("email"),
            )
            .await
            .expect("store")
            .expect("ada")
            .id
    };
    let funded = app.adjust(&ada_id, 5000, "usd").await;
    assert_eq!(funded.status, StatusCode::CREATED, "{}", funded.text);

    // Without the CSRF token, nothing happens.
    let forged = ada
        .post(
            "/app/send",
            &[
                ("to", "bob-web@example.com"),
                ("amount", "1.00"),
                ("currency", "usd"),
                ("idempotency_key", "k1"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    // The same form submitted twice (a double click) sends once; 10.05 is exactly 1005.
    let form = ada.get("/app/send").await;
    let key = hidden_value(&form.html, "idempotency_key");
    assert!(!key.is_empty(), "{}", form.html);
    let csrf = ada.csrf();
    let fields = [
        ("csrf", csrf.as_str()),
        ("to", "bob-web@example.com"),
        ("amount", "10.05"),
        ("currency", "usd"),
        ("note", ""),
        ("idempotency_key", key.as_str()),
    ];
    let first = ada.post("/app/send", &fields).await;
    let second = ada.post("/app/send", &fields).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.html);
    assert_eq!(
        first.location, second.location,
        "the replay shows the same transfer"
    );
    let wallet = app
        .state()
        .store
        .list_accounts(&walleti::store::accounts::Owner::User(
            ada_id.parse().expect("id"),
        ))
        .await
        .expect("accounts");
    assert_eq!(wallet[0].balance.available, 5000 - 1005);

    // Amounts that are not exact are refused with a clear message, nothing moves.
    let form = ada.get("/app/send").await;
    let key = hidden_value(&form.html, "idempotency_key");
    let refused = ada
        .post(
            "/app/send",
            &[
                ("csrf", &ada.csrf()),
                ("to", "bob-web@example.com"),
                ("amount", "1.005"),
                ("currency", "usd"),
                ("idempotency_key", &key),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::OK);
    assert!(
        refused.html.contains("role=\"alert\"") && refused.html.contains("at most 2 decimals"),
        "{}",
        refused.html
    );

    // Bob cannot see Ada's transfer page.
    let transfer = first.location.clone().expect("location");
    assert_eq!(ada.get(&transfer).await.status, StatusCode::OK);
    assert_eq!(
        bob.get(&transfer).await.status,
        StatusCode::OK,
        "Bob received it"
    );
    let mut carol = WebClient::new(&app);
    carol
        .sign_up("Carol", "carol-web@example.com", "+14155550183")
        .await;
    assert_eq!(carol.get(&transfer).await.status, StatusCode::NOT_FOUND);

    // Logging out revokes the session: the old cookie no longer works.
    let old_session = ada.cookies.get("walleti_user").cloned().expect("cookie");
    let csrf = ada.csrf();
    let out = ada.post("/app/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    ada.cookies
        .insert("walleti_user".into(), old_session.clone());
    let after = ada.get("/app").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert!(after.location.unwrap_or_default().starts_with("/app/login"));
    let api = app.get("/v1/me", &old_session).await;
    assert_eq!(
        api.status,
        StatusCode::UNAUTHORIZED,
        "web and API share session records"
    );

    // htmx is served from the binary.
    let htmx = app
        .client
        .get(format!("{}/static/htmx.min.js", app.address))
        .send()
        .await
        .expect("htmx");
    assert_eq!(htmx.status(), StatusCode::OK);
    assert!(htmx.text().await.expect("js").contains("htmx"));
}

/// Logs in through the API (`/v1/sessions` for users, `/v1/merchants/sessions` for merchants).
async fn api_log_in(
    app: &TestApp,
    path: &str,
    login: &str,
    password: &str,
) -> crate::helpers::Reply {
    let body = if path == "/v1/sessions" {
        serde_json::json!({"login": login, "password": password})
    } else {
        serde_json::json!({"email": login, "password": password})
    };
    app.post(path, None, None, &body).await
}

#[tokio::test]
async fn the_user_settings_page_kills_sessions_and_changes_the_password() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ada = WebClient::new(&app);
    ada.sign_up("Ada", "ada-settings@example.com", "+14155550191")
        .await;
    let log_in = |password: &'static str| {
        api_log_in(&app, "/v1/sessions", "ada-settings@example.com", password)
    };
    let phone = log_in("correct horse battery").await;
    let phone_token = phone.body["token"].as_str().expect("token").to_owned();
    let phone_id = phone.body["id"].as_str().expect("id").to_owned();
    for _ in 0..2 {
        assert_eq!(app.get("/v1/me", &phone_token).await.status, StatusCode::OK);
    }

    let settings = ada.get("/app/settings").await;
    assert_eq!(settings.status, StatusCode::OK);
    assert!(settings.html.contains("this device"), "{}", settings.html);
    assert!(settings.html.contains("Log out everywhere"));
    let revoke = format!("/app/sessions/{phone_id}/revoke");
    assert!(settings.html.contains(&revoke), "{}", settings.html);

    // Without the CSRF token nothing happens; with it, the phone's session is gone.
    assert_eq!(ada.post(&revoke, &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/v1/me", &phone_token).await.status, StatusCode::OK);
    let csrf = ada.csrf();
    let revoked = ada.post(&revoke, &[("csrf", &csrf)]).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.html);
    assert_eq!(
        app.get("/v1/me", &phone_token).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(ada.get("/app/settings").await.status, StatusCode::OK);

    // Changing the password logs every other session out, not this one.
    let other = log_in("correct horse battery").await;
    let other_token = other.body["token"].as_str().expect("token").to_owned();
    let wrong = ada
        .post(
            "/app/settings/password",
            &[
                ("csrf", &csrf),
                ("current_password", "not the password"),
                ("new_password", "a new passphrase"),
            ],
        )
        .await;
    assert!(wrong.html.contains("role=\"alert\""), "{}", wrong.html);
    assert_eq!(app.get("/v1/me", &other_token).await.status, StatusCode::OK);
    let changed = ada
        .post(
            "/app/settings/password",
            &[
                ("csrf", &csrf),
                ("current_password", "correct horse battery"),
                ("new_password", "a new passphrase"),
            ],
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK);
    assert!(
        changed.html.contains("Password changed"),
        "{}",
        changed.html
    );
    assert_eq!(
        app.get("/v1/me", &other_token).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        log_in("correct horse battery").await.status,
        StatusCode::UNAUTHORIZED
    );
    let fresh = log_in("a new passphrase").await;
    assert_eq!(fresh.status, StatusCode::CREATED, "{}", fresh.text);
    let fresh_token = fresh.body["token"].as_str().expect("token").to_owned();
    assert_eq!(ada.get("/app").await.status, StatusCode::OK);

    // Log out everywhere: this browser too.
    let web_token = ada.cookies.get("walleti_user").cloned().expect("cookie");
    let everywhere = ada
        .post("/app/sessions/revoke-all", &[("csrf", &csrf)])
        .await;
    assert_eq!(everywhere.status, StatusCode::SEE_OTHER);
    assert_eq!(everywhere.location.as_deref(), Some("/app/login"));
    for token in [&web_token, &fresh_token] {
        assert_eq!(
            app.get("/v1/me", token).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn the_merchant_settings_page_kills_sessions_and_changes_the_password() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut shop = WebClient::new(&app);
    shop.get("/merchant/signup").await;
    let csrf = shop.csrf();
    let email = "shop-settings@example.com";
    let created = shop
        .post(
            "/merchant/signup",
            &[
                ("csrf", &csrf),
                ("name", "Shop"),
                ("email", email),
                ("password", "merchant password 1"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.html);
    let log_in =
        |password: &'static str| api_log_in(&app, "/v1/merchants/sessions", email, password);
    let laptop = log_in("merchant password 1").await;
    let laptop_token = laptop.body["token"].as_str().expect("token").to_owned();
    let laptop_id = laptop.body["id"].as_str().expect("id").to_owned();
    for _ in 0..2 {
        assert_eq!(
            app.get("/v1/merchants/me", &laptop_token).await.status,
            StatusCode::OK
        );
    }

    let settings = shop.get("/merchant/settings").await;
    assert_eq!(settings.status, StatusCode::OK);
    assert!(settings.html.contains("this device"), "{}", settings.html);
    let revoke = format!("/merchant/sessions/{laptop_id}/revoke");
    assert!(settings.html.contains(&revoke), "{}", settings.html);
    // Logged in, the forms carry the session's own token, not the sign-up page's.
    assert_ne!(shop.csrf(), csrf);
    let stale = shop.post(&revoke, &[("csrf", &csrf)]).await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN);
    let csrf = shop.csrf();
    let revoked = shop.post(&revoke, &[("csrf", &csrf)]).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.html);
    assert_eq!(
        app.get("/v1/merchants/me", &laptop_token).await.status,
        StatusCode::UNAUTHORIZED
    );

    let other = log_in("merchant password 1").await;
    let other_token = other.body["token"].as_str().expect("token").to_owned();
    let changed = shop
        .post(
            "/merchant/settings/password",
            &[
                ("csrf", &csrf),
                ("current_password", "merchant password 1"),
                ("new_password", "a new passphrase"),
            ],
        )
        .await;
    assert!(
        changed.html.contains("Password changed"),
        "{}",
        changed.html
    );
    assert_eq!(
        app.get("/v1/merchants/me", &other_token).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(shop.get("/merchant").await.status, StatusCode::OK);
    let fresh = log_in("a new passphrase").await;
    assert_eq!(fresh.status, StatusCode::CREATED, "{}", fresh.text);
    let fresh_token = fresh.body["token"].as_str().expect("token").to_owned();

    let web_token = shop
        .cookies
        .get("walleti_merchant")
        .cloned()
        .expect("cookie");
    let everywhere = shop
        .post("/merchant/sessions/revoke-all", &[("csrf", &csrf)])
        .await;
    assert_eq!(everywhere.status, StatusCode::SEE_OTHER);
    assert_eq!(everywhere.location.as_deref(), Some("/merchant/login"));
    for token in [&web_token, &fresh_token] {
        assert_eq!(
            app.get("/v1/merchants/me", token).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn a_csrf_token_is_bound_to_its_session() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ada = WebClient::new(&app);
    ada.sign_up("Ada", "ada-csrf@example.com", "+14155550193")
        .await;
    let mut eve = WebClient::new(&app);
    eve.sign_up("Eve", "eve-csrf@example.com", "+14155550194")
        .await;
    eve.get("/app/settings").await;
    let eve_token = eve.csrf();

    // A CSRF cookie planted by another site (a sibling subdomain can set cookies), with the
    // same value in the form, is no longer enough: the token must be Ada's session's.
    let planted = "ab".repeat(32);
    ada.cookies.insert("walleti_csrf".into(), planted.clone());
    let forged = ada
        .post("/app/sessions/revoke-all", &[("csrf", &planted)])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    // Another session's token is refused too.
    let foreign = ada
        .post("/app/sessions/revoke-all", &[("csrf", &eve_token)])
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    let dashboard = ada.get("/app").await;
    assert!(dashboard.html.contains("Hello, Ada"), "still logged in");

    // Her own page's token works.
    ada.get("/app/settings").await;
    let own = ada.csrf();
    assert_ne!(own, eve_token);
    let out = ada
        .post("/app/sessions/revoke-all", &[("csrf", &own)])
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.html);
}

#[tokio::test]
async fn the_verify_page_sends_and_checks_a_code() {
    let (port, mails, _) = crate::email::smtp_server().await;
    let mut settings =
        crate::helpers::test_settings(&crate::helpers::fresh_database(Backend::Sqlite).await);
    settings.smtp = Some(walleti::config::SmtpSettings {
        url: format!("smtp://127.0.0.1:{port}"),
        from: "walleti <no-reply@walleti.test>".into(),
    });
    let app = crate::helpers::spawn_app_with(settings).await;
    let mut ada = WebClient::new(&app);
    ada.sign_up("Ada", "ada-verify@example.com", "+14155550195")
        .await;
    let settings_page = ada.get("/app/settings").await;
    assert!(
        settings_page.html.contains("/app/verify"),
        "linked from settings"
    );
    let page = ada.get("/app/verify").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("not verified"), "{}", page.html);
    assert!(page.html.contains("/app/verify/email/send"));
    assert!(page.html.contains("/app/verify/phone/send"));

    let csrf = ada.csrf();
    let refused = ada.post("/app/verify/email/send", &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let sent = ada.post("/app/verify/email/send", &[("csrf", &csrf)]).await;
    assert_eq!(sent.status, StatusCode::OK);
    assert!(
        sent.html.contains("We sent a code to a•••@example.com"),
        "{}",
        sent.html
    );
    // SMS is not configured here: the page says so instead of failing.
    let no_sms = ada.post("/app/verify/phone/send", &[("csrf", &csrf)]).await;
    assert!(no_sms.html.contains("not configured"), "{}", no_sms.html);

    let mut code = None;
    for _ in 0..250 {
        code = mails.lock().expect("lock").iter().find_map(|mail| {
            let (_, rest) = mail.data.split_once("code is ")?;
            Some(rest.chars().take(6).collect::<String>())
        });
        if code.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let code = code.expect("a mailed code");
    let wrong = ada
        .post(
            "/app/verify/confirm",
            &[("csrf", &csrf), ("channel", "email"), ("code", "12345x")],
        )
        .await;
    assert!(wrong.html.contains("no longer valid"), "{}", wrong.html);
    let verified = ada
        .post(
            "/app/verify/confirm",
            &[("csrf", &csrf), ("channel", "email"), ("code", &code)],
        )
        .await;
    assert!(
        verified.html.contains("Your email is verified."),
        "{}",
        verified.html
    );
    assert!(!verified.html.contains("/app/verify/email/send"));
}

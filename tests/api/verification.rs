//! Contact verification and the abuse limits around it (issue 12, item 9): one-time codes by
//! email and SMS (stored hashed, expiring, a bounded number of guesses, asking again rate
//! limited), `WALLETI_P2P_REQUIRE_VERIFIED`, login notices that never text, the daily SMS cap
//! counted in the database, and sign-ups limited per client address.

use crate::email::{Mail, smtp_server};
use crate::helpers::{
    Backend, TestApp, TestUser, backends, fresh_database, spawn_app_with, test_settings,
};
use crate::sms::{Sent, fake_twilio};
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use walleti::config::{SmtpSettings, TwilioSettings};
use walleti::store::entities::{contact_verifications, sms_usage};

struct Providers {
    mails: Arc<Mutex<Vec<Mail>>>,
    texts: Arc<Mutex<Vec<Sent>>>,
}

/// Settings with a fake SMTP server and a fake Twilio.
async fn settings_with_providers(backend: Backend) -> (walleti::config::Settings, Providers) {
    let (port, mails, _) = smtp_server().await;
    let (twilio_base, texts) = fake_twilio().await;
    let mut settings = test_settings(&fresh_database(backend).await);
    settings.smtp = Some(SmtpSettings {
        url: format!("smtp://127.0.0.1:{port}"),
        from: "walleti <no-reply@walleti.test>".into(),
    });
    settings.twilio = Some(TwilioSettings {
        account_sid: "AC0123456789abcdef".into(),
        auth_token: "twilio-test-auth-token".into(),
        from: "+15005550006".into(),
        api_base: twilio_base,
    });
    settings.limits.delivery_retry_interval = Duration::from_millis(20);
    (settings, Providers { mails, texts })
}

/// The 6 digits after "code is " in `text`.
fn code_in(text: &str) -> Option<String> {
    let (_, rest) = text.split_once("code is ")?;
    let code: String = rest.chars().take(6).collect();
    (code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())).then_some(code)
}

async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    for _ in 0..250 {
        if let Some(found) = probe() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The newest code mailed to `address`.
async fn mailed_code(providers: &Providers, address: &str) -> String {
    eventually("a mailed code", || {
        providers
            .mails
            .lock()
            .expect("lock")
            .iter()
            .rev()
            .filter(|mail| mail.to.iter().any(|to| to == address))
            .find_map(|mail| code_in(&mail.data))
    })
    .await
}

/// The texts sent to `phone` so far.
fn texts_to(providers: &Providers, phone: &str) -> Vec<String> {
    providers
        .texts
        .lock()
        .expect("lock")
        .iter()
        .filter(|sent| sent.form.get("To").map(String::as_str) == Some(phone))
        .filter_map(|sent| sent.form.get("Body").cloned())
        .collect()
}

async fn texted_code(providers: &Providers, phone: &str) -> String {
    eventually("a texted code", || {
        texts_to(providers, phone)
            .iter()
            .rev()
            .find_map(|body| code_in(body))
    })
    .await
}

async fn ask_code(app: &TestApp, user: &TestUser, channel: &str) -> crate::helpers::Reply {
    app.post(
        "/v1/me/verifications",
        Some(&user.token),
        None,
        &json!({"channel": channel}),
    )
    .await
}

async fn confirm(
    app: &TestApp,
    user: &TestUser,
    channel: &str,
    code: &str,
) -> crate::helpers::Reply {
    app.post(
        "/v1/me/verifications/confirm",
        Some(&user.token),
        None,
        &json!({"channel": channel, "code": code}),
    )
    .await
}

fn wrong(code: &str) -> String {
    if code == "000000" {
        "000001".into()
    } else {
        "000000".into()
    }
}

#[tokio::test]
async fn codes_verify_email_and_phone_are_stored_hashed_and_bounded() {
    for backend in backends() {
        let (settings, providers) = settings_with_providers(backend).await;
        let app = spawn_app_with(settings).await;
        let ada = app.user("ada").await;
        let me = app.get("/v1/me", &ada.token).await;
        assert_eq!(me.body["email_verified"], false, "{}", me.text);
        assert_eq!(me.body["phone_verified"], false, "{}", me.text);

        // Email: a code arrives by mail; only its HMAC is stored.
        let asked = ask_code(&app, &ada, "email").await;
        assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text);
        assert_eq!(asked.body["channel"], "email");
        let code = mailed_code(&providers, &ada.email).await;
        let rows = contact_verifications::Entity::find()
            .filter(contact_verifications::Column::UserId.eq(ada.id.clone()))
            .all(app.state().store.reader())
            .await
            .expect("rows");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].code_hash.len(), 64);
        assert!(!rows[0].code_hash.contains(&code), "the code is not stored");

        let refused = confirm(&app, &ada, "email", &wrong(&code)).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(refused.code(), "verification_failed");
        let verified = confirm(&app, &ada, "email", &code).await;
        assert_eq!(verified.status, StatusCode::OK, "{}", verified.text);
        assert_eq!(verified.body["object"], "user");
        assert_eq!(verified.body["email_verified"], true);
        assert_eq!(verified.body["phone_verified"], false);
        let again = confirm(&app, &ada, "email", &code).await;
        assert_eq!(again.code(), "verification_failed", "a code works once");

        // Phone: the code comes by SMS.
        assert_eq!(
            ask_code(&app, &ada, "phone").await.status,
            StatusCode::ACCEPTED
        );
        let code = texted_code(&providers, &ada.phone).await;
        let verified = confirm(&app, &ada, "phone", &code).await;
        assert_eq!(verified.status, StatusCode::OK, "{}", verified.text);
        assert_eq!(verified.body["phone_verified"], true);
        let me = app.get("/v1/me", &ada.token).await;
        assert_eq!(me.body["email_verified"], true);
        assert_eq!(me.body["phone_verified"], true);
        let listed = app.get("/v1/users", &ada.token).await;
        assert_eq!(listed.body["data"][0]["phone_verified"], true);

        // Five wrong guesses kill a code: the right one no longer works.
        let bob = app.user("bob").await;
        assert_eq!(
            ask_code(&app, &bob, "email").await.status,
            StatusCode::ACCEPTED
        );
        let code = mailed_code(&providers, &bob.email).await;
        for _ in 0..5 {
            let guess = confirm(&app, &bob, "email", &wrong(&code)).await;
            assert_eq!(guess.code(), "verification_failed");
        }
        let dead = confirm(&app, &bob, "email", &code).await;
        assert_eq!(dead.code(), "verification_failed", "{}", dead.text);
        assert_eq!(
            app.get("/v1/me", &bob.token).await.body["email_verified"],
            false
        );

        // An expired code fails.
        assert_eq!(
            ask_code(&app, &bob, "email").await.status,
            StatusCode::ACCEPTED
        );
        let code = eventually("a new code", || {
            let mails = providers.mails.lock().expect("lock");
            let codes: Vec<String> = mails
                .iter()
                .filter(|mail| mail.to.iter().any(|to| to == &bob.email))
                .filter_map(|mail| code_in(&mail.data))
                .collect();
            (codes.len() == 2).then(|| codes[1].clone())
        })
        .await;
        contact_verifications::Entity::update_many()
            .col_expr(
                contact_verifications::Column::ExpiresAt,
                sea_orm::sea_query::Expr::value(chrono::Utc::now() - chrono::Duration::seconds(1)),
            )
            .filter(contact_verifications::Column::UserId.eq(bob.id.clone()))
            .exec(app.state().store.writer())
            .await
            .expect("expire");
        let expired = confirm(&app, &bob, "email", &code).await;
        assert_eq!(expired.code(), "verification_failed", "{}", expired.text);

        // Asking again and again is rate limited (three at once, then one every 12 minutes).
        assert_eq!(
            ask_code(&app, &bob, "email").await.status,
            StatusCode::ACCEPTED
        );
        let limited = ask_code(&app, &bob, "email").await;
        assert_eq!(
            limited.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            limited.text
        );
        assert!(limited.headers.contains_key("retry-after"));

        // Bad input.
        let bad = ask_code(&app, &bob, "carrier-pigeon").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn transfers_to_unverified_contacts_are_refused_when_verification_is_required() {
    for backend in backends() {
        let (mut settings, providers) = settings_with_providers(backend).await;
        settings.p2p_require_verified = true;
        let app = spawn_app_with(settings).await;
        let (ada, bob) = (app.user("ada").await, app.user("bob").await);
        app.fund(&ada, 1_000).await;

        for to in [&bob.email, &bob.phone] {
            let refused = app
                .transfer(&ada, to, json!(100), &format!("unverified-{to}"))
                .await;
            assert_eq!(
                refused.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{}",
                refused.text
            );
            assert_eq!(refused.code(), "recipient_not_found");
        }
        let by_id = app.transfer(&ada, &bob.id, json!(100), "by-id").await;
        assert_eq!(by_id.status, StatusCode::CREATED, "{}", by_id.text);

        // Bob verifies his email: the cached "unverified" is dropped at once.
        assert_eq!(
            ask_code(&app, &bob, "email").await.status,
            StatusCode::ACCEPTED
        );
        let code = mailed_code(&providers, &bob.email).await;
        assert_eq!(
            confirm(&app, &bob, "email", &code).await.status,
            StatusCode::OK
        );
        let to_email = app
            .transfer(&ada, &bob.email, json!(100), "verified-email")
            .await;
        assert_eq!(to_email.status, StatusCode::CREATED, "{}", to_email.text);
        assert_eq!(to_email.body["to_user"], bob.id);
        let to_phone = app
            .transfer(&ada, &bob.phone, json!(100), "still-unverified")
            .await;
        assert_eq!(to_phone.code(), "recipient_not_found");
        assert_eq!(app.balance(&bob).await.0, 200);
    }
}

#[tokio::test]
async fn login_notices_never_text_and_sms_are_capped_per_user_per_day_across_nodes() {
    let (mut settings, providers) = settings_with_providers(Backend::Sqlite).await;
    settings.limits.sms_per_user_day_max = 2;
    let second_node = settings.clone();
    let app = spawn_app_with(settings).await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);

    // Logging in notifies by email (and push), never by SMS.
    let login = app
        .post(
            "/v1/sessions",
            None,
            None,
            &json!({"login": bob.email, "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(login.status, StatusCode::CREATED);
    // Bob's sign-up logged him in once, and now again: two notices, once the events are in.
    let mut logins: Vec<Value> = Vec::new();
    for _ in 0..250 {
        let notices = app.get("/v1/notifications?limit=100", &bob.token).await;
        logins = notices.body["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n["kind"] == "session.created")
            .collect();
        if logins.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(logins.len(), 2, "{logins:?}");
    for notice in &logins {
        let channels: Vec<&str> = notice["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .filter_map(|d| d["channel"].as_str())
            .collect();
        assert!(channels.contains(&"email"), "{channels:?}");
        assert!(!channels.contains(&"sms"), "{channels:?}");
    }

    // Three transfers to Bob: two texts, the third delivery fails on the cap.
    app.fund(&ada, 1_000).await;
    for index in 0..3 {
        let sent = app
            .transfer(&ada, &bob.id, json!(10), &format!("cap-{index}"))
            .await;
        assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
    }
    let mut statuses = Vec::new();
    for _ in 0..250 {
        statuses = sms_statuses(&app, &bob).await;
        if statuses.len() == 3 && !statuses.iter().any(|(status, _)| status == "pending") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = statuses
        .iter()
        .filter(|(status, _)| status == "sent")
        .count();
    let refused: Vec<&(String, String)> = statuses
        .iter()
        .filter(|(status, _)| status == "failed")
        .collect();
    assert_eq!((sent, refused.len()), (2, 1), "{statuses:?}");
    assert!(refused[0].1.contains("daily SMS limit"), "{statuses:?}");
    assert_eq!(
        texts_to(&providers, &bob.phone)
            .iter()
            .filter(|body| body.contains("received"))
            .count(),
        2
    );
    let counted = sms_usage::Entity::find()
        .filter(sms_usage::Column::UserId.eq(bob.id.clone()))
        .all(app.state().store.reader())
        .await
        .expect("usage");
    assert_eq!(counted.iter().map(|row| row.sent).sum::<i32>(), 2);

    // The count is in the database: another node (or this one restarted) knows it too, and a
    // code by SMS counts against the same cap.
    let node = spawn_app_with(second_node).await;
    let session = node
        .post(
            "/v1/sessions",
            None,
            None,
            &json!({"login": bob.email, "password": "correct horse battery"}),
        )
        .await;
    let bob_there = TestUser {
        token: session.body["token"].as_str().expect("token").to_owned(),
        ..bob
    };
    let refused = ask_code(&node, &bob_there, "phone").await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.text
    );
    assert!(refused.headers.contains_key("retry-after"));
    // Email codes do not count.
    assert_eq!(
        ask_code(&node, &bob_there, "email").await.status,
        StatusCode::ACCEPTED
    );
}

/// (status, last error) of each SMS delivery of the user's transfer notifications.
async fn sms_statuses(app: &TestApp, user: &TestUser) -> Vec<(String, String)> {
    let reply = app.get("/v1/notifications?limit=100", &user.token).await;
    reply.body["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|n| n["kind"] == "transfer.completed")
        .flat_map(|n| n["deliveries"].as_array().cloned().unwrap_or_default())
        .filter(|d| d["channel"] == "sms")
        .map(|d| {
            (
                d["status"].as_str().unwrap_or("").to_owned(),
                d["last_error"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn sign_ups_are_limited_per_client_address() {
    let mut settings = test_settings(&fresh_database(Backend::Sqlite).await);
    settings.limits.signup_address_quota = walleti::config::Quota {
        requests: 3,
        period: Duration::from_secs(3600),
        burst: 3,
    };
    let app = spawn_app_with(settings).await;
    let user = |index: u32| {
        json!({"email": format!("signup-{index}@example.com"), "phone": format!("+1415555{index:04}"),
            "name": "Sign Up", "password": "correct horse battery"})
    };
    for index in 0..3 {
        let created = app.post("/v1/users", None, None, &user(index)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    }
    let limited = app.post("/v1/users", None, None, &user(3)).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.text
    );
    assert_eq!(limited.code(), "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));

    // Merchant sign-ups have their own allowance under the same limit.
    let merchant = |index: u32| json!({"name": "Shop", "email": format!("shop-{index}@example.com"), "password": "correct horse battery"});
    for index in 0..3 {
        let created = app
            .post("/v1/merchants", None, None, &merchant(index))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    }
    let limited = app.post("/v1/merchants", None, None, &merchant(3)).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.text
    );

    // Both are documented.
    let openapi = app
        .request(reqwest::Method::GET, "/openapi.json", None, None, None)
        .await;
    for path in ["/v1/users", "/v1/merchants"] {
        assert!(
            openapi.body["paths"][path]["post"]["responses"]["429"].is_object(),
            "{path}"
        );
    }
    let request = &openapi.body["paths"]["/v1/me/verifications"]["post"]["responses"];
    for status in ["202", "400", "401", "429", "503"] {
        assert!(request[status].is_object(), "verifications {status}");
    }
    let confirm = &openapi.body["paths"]["/v1/me/verifications/confirm"]["post"]["responses"];
    for status in ["200", "400", "401", "422"] {
        assert!(confirm[status].is_object(), "confirm {status}");
    }
}

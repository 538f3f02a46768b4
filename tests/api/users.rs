use crate::helpers::{backends, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn sign_up_log_in_and_log_out() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let ada = app.user("ada").await;

        let me = app.get("/v1/me", &ada.token).await;
        assert_eq!(me.status, StatusCode::OK);
        assert_eq!(me.body["object"], "user");
        assert_eq!(me.body["email"], ada.email.as_str());
        assert_eq!(me.body["phone"], ada.phone.as_str());
        assert!(me.body["created_at"].as_str().is_some());
        assert!(me.body.get("password_hash").is_none());

        // Every new user has a wallet account in the default currency.
        let wallet = app.get("/v1/wallet", &ada.token).await;
        assert_eq!(wallet.body["accounts"][0]["currency"], "usd");
        assert_eq!(wallet.body["accounts"][0]["available"], 0);

        // Log in by phone works too.
        let by_phone = app
            .post(
                "/v1/sessions",
                None,
                None,
                &json!({"login": ada.phone, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(by_phone.status, StatusCode::CREATED, "{}", by_phone.text);

        let logout = app
            .request(
                Method::DELETE,
                "/v1/sessions/current",
                Some(&ada.token),
                None,
                None,
            )
            .await;
        assert_eq!(logout.status, StatusCode::NO_CONTENT);
        let after = app.get("/v1/me", &ada.token).await;
        assert_eq!(
            after.status,
            StatusCode::UNAUTHORIZED,
            "a revoked session stops working at once"
        );
        assert_eq!(after.body["error"]["type"], "authentication_error");
    }
}

#[tokio::test]
async fn duplicate_email_or_phone_is_a_conflict() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let ada = app.user("ada").await;
        let same_email = app
            .post("/v1/users", None, None, &json!({"email": ada.email.to_uppercase(), "phone": "+442071234567", "name": "X", "password": "0123456789ab"}))
            .await;
        assert_eq!(same_email.status, StatusCode::CONFLICT);
        assert_eq!(same_email.code(), "email_taken");
        let same_phone = app
            .post("/v1/users", None, None, &json!({"email": "other@example.com", "phone": ada.phone, "name": "X", "password": "0123456789ab"}))
            .await;
        assert_eq!(same_phone.status, StatusCode::CONFLICT);
        assert_eq!(same_phone.code(), "phone_taken");
    }
}

#[tokio::test]
async fn sign_up_validation() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let cases = [
        (
            json!({"email": "nope", "phone": "+14155550100", "name": "A", "password": "0123456789"}),
            "invalid_email",
        ),
        (
            json!({"email": "a@example.com", "phone": "4155550100", "name": "A", "password": "0123456789"}),
            "invalid_phone",
        ),
        (
            json!({"email": "a@example.com", "phone": "+14155550100", "name": "A", "password": "short"}),
            "password_too_short",
        ),
        (
            json!({"email": "a@example.com", "phone": "+14155550100", "password": "0123456789"}),
            "parameter_missing",
        ),
        (
            json!({"email": 5, "phone": "+14155550100", "name": "A", "password": "0123456789"}),
            "parameter_invalid",
        ),
    ];
    for (body, code) in cases {
        let reply = app.post("/v1/users", None, None, &body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.code(), code, "{body}");
    }
}

#[tokio::test]
async fn wrong_credentials_get_the_same_answer_whether_or_not_the_user_exists() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let ada = app.user("ada").await;
    let wrong_password = app
        .post(
            "/v1/sessions",
            None,
            None,
            &json!({"login": ada.email, "password": "wrong password"}),
        )
        .await;
    let no_user = app
        .post(
            "/v1/sessions",
            None,
            None,
            &json!({"login": "nobody@example.com", "password": "wrong password"}),
        )
        .await;
    assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_password.text, no_user.text);
    assert_eq!(wrong_password.code(), "invalid_credentials");
    let garbage = app.get("/v1/me", "sess_not_a_real_token").await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn created_objects_can_be_read_back_and_listed() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (ada, bob) = (app.user("ada").await, app.user("bob").await);

        let me = app.get(&format!("/v1/users/{}", ada.id), &ada.token).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.text);
        assert_eq!(me.body["email"], ada.email.as_str());
        let other = app.get(&format!("/v1/users/{}", bob.id), &ada.token).await;
        assert_eq!(other.status, StatusCode::NOT_FOUND, "another user is a 404");
        let mine = app.get("/v1/users", &ada.token).await;
        assert_eq!(mine.body["data"].as_array().map(Vec::len), Some(1));
        let everyone = app.get("/v1/users", crate::helpers::ADMIN_TOKEN).await;
        assert_eq!(everyone.body["data"].as_array().map(Vec::len), Some(2));
        let by_operator = app
            .get(
                &format!("/v1/users/{}", bob.id),
                crate::helpers::ADMIN_TOKEN,
            )
            .await;
        assert_eq!(by_operator.body["id"], bob.id.as_str());

        let sessions = app.get("/v1/sessions", &ada.token).await;
        assert_eq!(sessions.status, StatusCode::OK);
        let listed = sessions.body["data"].as_array().expect("data").clone();
        assert_eq!(listed.len(), 1);
        assert!(
            listed[0].get("token").is_none(),
            "a token is shown once, at creation"
        );
        let session_id = listed[0]["id"].as_str().expect("id");
        let session = app
            .get(&format!("/v1/sessions/{session_id}"), &ada.token)
            .await;
        assert_eq!(session.body["object"], "session");
        assert_eq!(session.body["revoked_at"], serde_json::Value::Null);
        let not_bobs = app
            .get(&format!("/v1/sessions/{session_id}"), &bob.token)
            .await;
        assert_eq!(not_bobs.status, StatusCode::NOT_FOUND);

        let adjustment = app.adjust(&ada.id, 500, "usd").await;
        let adjustment_id = adjustment.body["id"].as_str().expect("id");
        let read = app
            .get(
                &format!("/v1/admin/adjustments/{adjustment_id}"),
                crate::helpers::ADMIN_TOKEN,
            )
            .await;
        assert_eq!(read.status, StatusCode::OK);
        assert_eq!(read.body["amount"], 500);
        assert_eq!(read.body["operator"], "admin");
        let all = app
            .get("/v1/admin/adjustments", crate::helpers::ADMIN_TOKEN)
            .await;
        assert_eq!(all.body["data"][0]["id"], adjustment_id);
        let as_user = app.get("/v1/admin/adjustments", &ada.token).await;
        assert_eq!(as_user.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn logins_and_money_moving_requests_are_rate_limited() {
    let mut settings = crate::helpers::test_settings(
        &crate::helpers::fresh_database(crate::helpers::Backend::Sqlite).await,
    );
    settings.limits.money_quota = walleti::config::Quota {
        requests: 1,
        period: std::time::Duration::from_secs(60),
        burst: 2,
    };
    let app = crate::helpers::spawn_app_with(settings).await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    app.fund(&ada, 1_000).await;

    // One login already happened in `user`; nine more wrong attempts are answered normally...
    for _ in 0..9 {
        let wrong = app
            .post(
                "/v1/sessions",
                None,
                None,
                &json!({"login": ada.email, "password": "wrong password"}),
            )
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    }
    // ...then even the right password is refused until the quota refills.
    let limited = app
        .post(
            "/v1/sessions",
            None,
            None,
            &json!({"login": ada.email.to_uppercase(), "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.text
    );
    assert_eq!(limited.body["error"]["type"], "rate_limit_error");
    let retry_after: u64 = limited
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Another login identifier is unaffected.
    let bob_login = app
        .post(
            "/v1/sessions",
            None,
            None,
            &json!({"login": bob.email, "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(bob_login.status, StatusCode::CREATED);

    // Money-moving requests: a burst of 2, then 429 and nothing moves.
    let mut first_answers = Vec::new();
    for key in ["m-1", "m-2"] {
        let sent = app.transfer(&ada, &bob.email, json!(10), key).await;
        assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
        first_answers.push(sent.text);
    }
    let third = app.transfer(&ada, &bob.email, json!(10), "m-3").await;
    assert_eq!(
        third.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        third.text
    );
    assert!(third.headers.get("retry-after").is_some());
    assert_eq!(app.balance(&ada).await, (980, 0));
    // Over the quota, a retry of an answered request still gets its stored answer, byte for
    // byte (the contract: same key, same body, same response), and the same key with another
    // body is still 409; nothing moves either way.
    let retried = app.transfer(&ada, &bob.email, json!(10), "m-1").await;
    assert_eq!(retried.status, StatusCode::CREATED, "{}", retried.text);
    assert_eq!(retried.text, first_answers[0]);
    assert_eq!(
        retried
            .headers
            .get("idempotent-replayed")
            .and_then(|value| value.to_str().ok()),
        Some("true")
    );
    let reused = app.transfer(&ada, &bob.email, json!(11), "m-2").await;
    assert_eq!(reused.status, StatusCode::CONFLICT, "{}", reused.text);
    assert_eq!(reused.body["error"]["code"], "idempotency_key_reused");
    let still_limited = app.transfer(&ada, &bob.email, json!(10), "m-3").await;
    assert_eq!(still_limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(app.balance(&ada).await, (980, 0));
    // Bob's own quota is separate.
    assert_eq!(
        app.transfer(&bob, &ada.email, json!(5), "b-1").await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn logins_are_limited_per_client_address_and_in_all() {
    let slow = |burst: u32| walleti::config::Quota {
        requests: burst,
        period: std::time::Duration::from_secs(3600),
        burst,
    };
    let attempt = async |app: &crate::helpers::TestApp, index: usize| {
        let login = format!("nobody-{index}@example.com");
        app.post(
            "/v1/sessions",
            None,
            None,
            &json!({"login": login, "password": "wrong password"}),
        )
        .await
    };

    // Per address: three attempts on three different logins, then the fourth login is refused.
    let mut settings = crate::helpers::test_settings(
        &crate::helpers::fresh_database(crate::helpers::Backend::Sqlite).await,
    );
    settings.limits.login_address_quota = slow(3);
    let app = crate::helpers::spawn_app_with(settings).await;
    for index in 0..3 {
        assert_eq!(attempt(&app, index).await.status, StatusCode::UNAUTHORIZED);
    }
    let limited = attempt(&app, 3).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.text
    );
    assert!(limited.headers.get("retry-after").is_some());

    // In all: the same with a global bound (merchant logins have their own).
    let mut settings = crate::helpers::test_settings(
        &crate::helpers::fresh_database(crate::helpers::Backend::Sqlite).await,
    );
    settings.limits.login_global_quota = slow(2);
    let app = crate::helpers::spawn_app_with(settings).await;
    for index in 0..2 {
        assert_eq!(attempt(&app, index).await.status, StatusCode::UNAUTHORIZED);
    }
    let limited = attempt(&app, 2).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.text
    );
    let merchant = app
        .post(
            "/v1/merchants/sessions",
            None,
            None,
            &json!({"email": "nobody@shop.example.com", "password": "wrong password"}),
        )
        .await;
    assert_eq!(
        merchant.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        merchant.text
    );
}

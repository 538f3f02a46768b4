use crate::helpers::{Backend, fresh_database, percent_decode, spawn_app_with, test_settings};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use walleti::config::StripeSettings;

/// One request the fake Stripe received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    authorization: String,
    idempotency_key: String,
    form: HashMap<String, String>,
}

/// Sessions the fake Stripe knows: id -> (client_reference_id, amount, currency, paid).
type Sessions = Mutex<HashMap<String, (String, i64, String, bool)>>;

fn session_json(
    id: &str,
    reference: &str,
    amount: i64,
    currency: &str,
    paid: bool,
) -> serde_json::Value {
    json!({
        "id": id, "object": "checkout.session",
        "automatic_tax": {"enabled": false}, "created": 1_800_000_000, "custom_fields": [],
        "custom_text": {}, "expires_at": 1_800_086_400, "livemode": false, "mode": "payment",
        "payment_method_types": ["card"], "payment_status": if paid { "paid" } else { "unpaid" },
        "shipping_options": [], "status": if paid { "complete" } else { "open" },
        "client_reference_id": reference, "amount_total": amount, "currency": currency,
        "metadata": {"onramp_id": reference},
        "url": format!("https://checkout.stripe.com/c/pay/{id}"),
    })
}

async fn retrieve_session(id: web::Path<String>, sessions: web::Data<Sessions>) -> HttpResponse {
    match sessions.lock().expect("lock").get(id.as_str()) {
        Some((reference, amount, currency, paid)) => {
            HttpResponse::Ok().json(session_json(&id, reference, *amount, currency, *paid))
        }
        None => HttpResponse::NotFound()
            .json(json!({"error": {"type": "invalid_request_error", "message": "No such checkout.session"}})),
    }
}

async fn list_sessions(
    request: HttpRequest,
    sessions: web::Data<Sessions>,
    received: web::Data<Mutex<Vec<Received>>>,
) -> HttpResponse {
    let query: HashMap<String, String> = request
        .query_string()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (percent_decode(key), percent_decode(value)))
        .collect();
    received.lock().expect("lock").push(Received {
        path: format!("GET {}", request.path()),
        authorization: String::new(),
        idempotency_key: String::new(),
        form: query,
    });
    let data: Vec<serde_json::Value> = sessions
        .lock()
        .expect("lock")
        .iter()
        .map(|(id, (reference, amount, currency, paid))| {
            session_json(id, reference, *amount, currency, *paid)
        })
        .collect();
    HttpResponse::Ok().json(
        json!({"object": "list", "data": data, "has_more": false, "url": "/v1/checkout/sessions"}),
    )
}

async fn create_session(
    request: HttpRequest,
    body: web::Bytes,
    received: web::Data<Mutex<Vec<Received>>>,
    sessions: web::Data<Sessions>,
) -> HttpResponse {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let form: HashMap<String, String> = String::from_utf8_lossy(&body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (percent_decode(key), percent_decode(value)))
        .collect();
    let reference = form.get("client_reference_id").cloned().unwrap_or_default();
    received.lock().expect("lock").push(Received {
        path: request.path().to_owned(),
        authorization: header("authorization"),
        idempotency_key: header("idempotency-key"),
        form: form.clone(),
    });
    let amount = form
        .get("line_items[0][price_data][unit_amount]")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    let currency = form
        .get("line_items[0][price_data][currency]")
        .cloned()
        .unwrap_or_default();
    let mut sessions = sessions.lock().expect("lock");
    let id = format!("cs_test_{}", sessions.len() + 1);
    sessions.insert(
        id.clone(),
        (reference.clone(), amount, currency.clone(), false),
    );
    HttpResponse::Ok().json(session_json(&id, &reference, amount, &currency, false))
}

async fn fake_stripe() -> (String, Arc<Mutex<Vec<Received>>>, Arc<Sessions>) {
    let received = web::Data::new(Mutex::new(Vec::new()));
    let shared = received.clone().into_inner();
    let sessions: web::Data<Sessions> = web::Data::new(Mutex::new(HashMap::new()));
    let shared_sessions = sessions.clone().into_inner();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(received.clone())
            .app_data(sessions.clone())
            .route("/v1/checkout/sessions", web::post().to(create_session))
            .route("/v1/checkout/sessions", web::get().to(list_sessions))
            .route(
                "/v1/checkout/sessions/{id}",
                web::get().to(retrieve_session),
            )
    })
    .listen(listener)
    .expect("listen")
    .workers(1)
    .disable_signals()
    .run();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}/"), shared, shared_sessions)
}

const WEBHOOK_SECRET: &str = "whsec_test_walleti";

async fn stripe_app(
    backend: Backend,
) -> (
    crate::helpers::TestApp,
    Arc<Mutex<Vec<Received>>>,
    Arc<Sessions>,
) {
    let (stripe_base, received, sessions) = fake_stripe().await;
    let mut settings = test_settings(&fresh_database(backend).await);
    settings.stripe = Some(StripeSettings {
        secret_key: "sk_test_walleti".into(),
        webhook_secret: Some(WEBHOOK_SECRET.into()),
        api_base: stripe_base,
    });
    (spawn_app_with(settings).await, received, sessions)
}

#[tokio::test]
async fn a_stripe_top_up_creates_the_checkout_session_stripe_expects() {
    let (app, received, _sessions) = stripe_app(Backend::Sqlite).await;
    let ada = app.user("ada").await;
    let created = app
        .post(
            "/v1/onramps",
            Some(&ada.token),
            Some("stripe-1"),
            &json!({"provider": "stripe", "amount": 1999, "currency": "usd"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["provider"], "stripe");
    assert_eq!(created.body["status"], "processing");
    assert_eq!(
        created.body["redirect_url"],
        "https://checkout.stripe.com/c/pay/cs_test_1"
    );
    let id = created.body["id"].as_str().expect("id").to_owned();

    let requests = received.lock().expect("lock").clone();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path, "/v1/checkout/sessions");
    assert_eq!(request.authorization, "Bearer sk_test_walleti");
    assert_eq!(
        request.idempotency_key, id,
        "our on-ramp id is Stripe's idempotency key"
    );
    let form = &request.form;
    assert_eq!(form.get("mode").map(String::as_str), Some("payment"));
    assert_eq!(
        form.get("line_items[0][price_data][unit_amount]")
            .map(String::as_str),
        Some("1999")
    );
    assert_eq!(
        form.get("line_items[0][price_data][currency]")
            .map(String::as_str),
        Some("usd")
    );
    assert_eq!(
        form.get("line_items[0][quantity]").map(String::as_str),
        Some("1")
    );
    assert!(
        form.get("line_items[0][price_data][product_data][name]")
            .is_some()
    );
    assert_eq!(form.get("client_reference_id"), Some(&id));
    assert_eq!(form.get("metadata[onramp_id]"), Some(&id));
    assert!(form.get("success_url").is_some_and(|url| url.contains(&id)));
    assert!(form.get("cancel_url").is_some_and(|url| url.contains(&id)));
    // Both land on a page walleti serves (the log-in page first, then the on-ramp's page).
    for field in ["success_url", "cancel_url"] {
        let url = form.get(field).expect("return url");
        assert!(url.starts_with(&app.address), "{url}");
        let landing = app.client.get(url).send().await.expect("get");
        assert_eq!(landing.status(), StatusCode::OK, "{field} {url}");
    }

    // The idempotent retry replays without a second session.
    let again = app
        .post(
            "/v1/onramps",
            Some(&ada.token),
            Some("stripe-1"),
            &json!({"provider": "stripe", "amount": 1999, "currency": "usd"}),
        )
        .await;
    assert_eq!(again.text, created.text);
    assert_eq!(received.lock().expect("lock").len(), 1);
    let read = app.get(&format!("/v1/onramps/{id}"), &ada.token).await;
    assert_eq!(
        read.body["redirect_url"],
        "https://checkout.stripe.com/c/pay/cs_test_1"
    );
}

fn stripe_event(kind: &str, session: serde_json::Value) -> String {
    json!({
        "id": format!("evt_{}", uuid::Uuid::now_v7().simple()), "object": "event",
        "api_version": "2026-09-30.endive", "created": chrono::Utc::now().timestamp(),
        "data": {"object": session}, "livemode": false, "pending_webhooks": 1, "type": kind,
    })
    .to_string()
}

async fn send_stripe_event(
    app: &crate::helpers::TestApp,
    payload: &str,
    secret: &str,
    at: Option<i64>,
) -> StatusCode {
    let header = stripe_webhook::Webhook::generate_test_header(payload, secret, at);
    app.client
        .post(format!("{}/webhooks/stripe", app.address))
        .header("Stripe-Signature", header)
        .body(payload.to_owned())
        .send()
        .await
        .expect("send")
        .status()
}

async fn onramp_status(
    app: &crate::helpers::TestApp,
    user: &crate::helpers::TestUser,
    id: &str,
    want: &str,
) -> serde_json::Value {
    for _ in 0..250 {
        let reply = app.get(&format!("/v1/onramps/{id}"), &user.token).await;
        if reply.body["status"] == want {
            return reply.body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("on-ramp {id} never became {want}");
}

async fn outcomes(app: &crate::helpers::TestApp) -> Vec<Option<String>> {
    use sea_orm::EntityTrait;
    let database = sea_orm::Database::connect(app.database_url.as_str())
        .await
        .expect("connect");
    walleti::store::entities::webhook_inbox::Entity::find()
        .all(&database)
        .await
        .expect("inbox")
        .into_iter()
        .map(|row| row.outcome)
        .collect()
}

#[tokio::test]
async fn a_paid_checkout_credits_what_stripe_says_exactly_once() {
    for backend in crate::helpers::backends() {
        let (app, _received, sessions) = stripe_app(backend).await;
        let ada = app.user("ada").await;
        let created = app
            .post(
                "/v1/onramps",
                Some(&ada.token),
                Some("st-1"),
                &json!({"provider": "stripe", "amount": 3000, "currency": "usd"}),
            )
            .await;
        let id = created.body["id"].as_str().expect("id").to_owned();

        // Completed but not paid yet (an async payment method): nothing is credited.
        let unpaid = stripe_event(
            "checkout.session.completed",
            session_json("cs_test_1", &id, 3000, "usd", false),
        );
        assert_eq!(
            send_stripe_event(&app, &unpaid, WEBHOOK_SECRET, None).await,
            StatusCode::OK
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            app.get(&format!("/v1/onramps/{id}"), &ada.token).await.body["status"],
            "processing"
        );

        // Stripe now says paid. The payload claims a bigger amount: what Stripe says counts.
        sessions
            .lock()
            .expect("lock")
            .get_mut("cs_test_1")
            .expect("session")
            .3 = true;
        let paid = stripe_event(
            "checkout.session.async_payment_succeeded",
            session_json("cs_test_1", &id, 999_999, "usd", true),
        );
        let statuses = futures_util::future::join_all(
            (0..5).map(|_| send_stripe_event(&app, &paid, WEBHOOK_SECRET, None)),
        )
        .await;
        assert!(statuses.iter().all(|status| *status == StatusCode::OK));
        onramp_status(&app, &ada, &id, "succeeded").await;

        // Expired after completed: a terminal on-ramp never changes.
        let expired = stripe_event(
            "checkout.session.expired",
            session_json("cs_test_1", &id, 3000, "usd", false),
        );
        assert_eq!(
            send_stripe_event(&app, &expired, WEBHOOK_SECRET, None).await,
            StatusCode::OK
        );
        let unknown = stripe_event(
            "customer.created",
            json!({"id": "cus_1", "object": "customer"}),
        );
        assert_eq!(
            send_stripe_event(&app, &unknown, WEBHOOK_SECRET, None).await,
            StatusCode::OK
        );
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert_eq!(
            onramp_status(&app, &ada, &id, "succeeded").await["status"],
            "succeeded"
        );
        assert_eq!(app.balance(&ada).await, (3000, 0));
        assert_eq!(app.all_entries(&ada).await.len(), 1);
        {
            use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
            let database = sea_orm::Database::connect(app.database_url.as_str())
                .await
                .expect("connect");
            let clearing = walleti::store::entities::accounts::Entity::find()
                .filter(walleti::store::entities::accounts::Column::OwnerId.eq("stripe_clearing"))
                .filter(walleti::store::entities::accounts::Column::Currency.eq("usd"))
                .one(&database)
                .await
                .expect("query")
                .expect("stripe_clearing");
            assert_eq!(clearing.available, -3000, "Σ wallets = −Σ clearing");
        }
        let outcomes = outcomes(&app).await;
        assert_eq!(
            outcomes.len(),
            4,
            "three distinct events stored once each, plus the unknown type: {outcomes:?}"
        );
        assert!(outcomes.iter().all(Option::is_some), "{outcomes:?}");
    }
}

#[tokio::test]
async fn an_expired_or_failed_checkout_fails_the_onramp_and_forged_events_are_refused() {
    let (app, _received, _sessions) = stripe_app(Backend::Sqlite).await;
    let ada = app.user("ada").await;
    let first = app
        .post(
            "/v1/onramps",
            Some(&ada.token),
            Some("st-a"),
            &json!({"provider": "stripe", "amount": 500, "currency": "usd"}),
        )
        .await;
    let second = app
        .post(
            "/v1/onramps",
            Some(&ada.token),
            Some("st-b"),
            &json!({"provider": "stripe", "amount": 700, "currency": "usd"}),
        )
        .await;
    let (first, second) = (
        first.body["id"].as_str().expect("id").to_owned(),
        second.body["id"].as_str().expect("id").to_owned(),
    );

    let expired = stripe_event(
        "checkout.session.expired",
        session_json("cs_test_1", &first, 500, "usd", false),
    );
    let event = stripe_event(
        "checkout.session.async_payment_failed",
        session_json("cs_test_2", &second, 700, "usd", false),
    );
    // Forged, wrong secret, tampered, stale, missing header: 400 and nothing stored.
    assert_eq!(
        send_stripe_event(&app, &expired, "whsec_wrong", None).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send_stripe_event(
            &app,
            &expired,
            WEBHOOK_SECRET,
            Some(chrono::Utc::now().timestamp() - 301)
        )
        .await,
        StatusCode::BAD_REQUEST
    );
    let header = stripe_webhook::Webhook::generate_test_header(&expired, WEBHOOK_SECRET, None);
    let tampered = app
        .client
        .post(format!("{}/webhooks/stripe", app.address))
        .header("Stripe-Signature", header)
        .body(expired.replace("500", "50000"))
        .send()
        .await
        .expect("send");
    assert_eq!(tampered.status(), StatusCode::BAD_REQUEST);
    let missing = app
        .client
        .post(format!("{}/webhooks/stripe", app.address))
        .body(expired.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert!(outcomes(&app).await.is_empty());

    assert_eq!(
        send_stripe_event(&app, &expired, WEBHOOK_SECRET, None).await,
        StatusCode::OK
    );
    assert_eq!(
        send_stripe_event(&app, &event, WEBHOOK_SECRET, None).await,
        StatusCode::OK
    );
    assert_eq!(
        onramp_status(&app, &ada, &first, "failed").await["failure_code"],
        "stripe_session_expired"
    );
    assert_eq!(
        onramp_status(&app, &ada, &second, "failed").await["failure_code"],
        "stripe_payment_failed"
    );
    assert_eq!(app.balance(&ada).await, (0, 0));
}

#[tokio::test]
async fn reconciliation_compares_stripe_onramps_with_the_sessions_stripe_lists() {
    let (app, received, sessions) = stripe_app(Backend::Sqlite).await;
    let ada = app.user("ada").await;
    let mut ids = Vec::new();
    for index in 0..3 {
        let created = app
            .post(
                "/v1/onramps",
                Some(&ada.token),
                Some(&format!("rec-{index}")),
                &json!({"provider": "stripe", "amount": 1000 + index, "currency": "usd"}),
            )
            .await;
        ids.push(created.body["id"].as_str().expect("id").to_owned());
    }
    // 0: paid and credited through the webhook — consistent.
    sessions
        .lock()
        .expect("lock")
        .get_mut("cs_test_1")
        .expect("session")
        .3 = true;
    let paid = stripe_event(
        "checkout.session.completed",
        session_json("cs_test_1", &ids[0], 1000, "usd", true),
    );
    assert_eq!(
        send_stripe_event(&app, &paid, WEBHOOK_SECRET, None).await,
        StatusCode::OK
    );
    onramp_status(&app, &ada, &ids[0], "succeeded").await;
    let clean = app
        .post(
            "/v1/admin/reconciliations",
            Some(crate::helpers::ADMIN_TOKEN),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(clean.body["status"], "clean", "{}", clean.text);
    let listing = received
        .lock()
        .expect("lock")
        .iter()
        .rev()
        .find(|r| r.path == "GET /v1/checkout/sessions")
        .cloned()
        .expect("listed");
    assert!(
        listing.form.contains_key("created[gte]"),
        "the period is sent to Stripe: {:?}",
        listing.form
    );

    // 1: Stripe says paid, the ledger never heard (the webhook was lost).
    sessions
        .lock()
        .expect("lock")
        .get_mut("cs_test_2")
        .expect("session")
        .3 = true;
    // 2: the ledger says succeeded, Stripe has no such session.
    sessions.lock().expect("lock").remove("cs_test_3");
    {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        let database = sea_orm::Database::connect(app.database_url.as_str())
            .await
            .expect("connect");
        walleti::store::entities::onramps::Entity::update_many()
            .col_expr(
                walleti::store::entities::onramps::Column::Status,
                Expr::value("succeeded"),
            )
            .filter(walleti::store::entities::onramps::Column::Id.eq(ids[2].as_str()))
            .exec(&database)
            .await
            .expect("tamper");
    }
    // Stripe was paid for an on-ramp walleti does not know.
    sessions.lock().expect("lock").insert(
        "cs_test_9".into(),
        (
            "0194f1a0-0000-7000-8000-000000000009".into(),
            777,
            "usd".into(),
            true,
        ),
    );

    let report = app
        .post(
            "/v1/admin/reconciliations",
            Some(crate::helpers::ADMIN_TOKEN),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(report.status, StatusCode::CREATED, "{}", report.text);
    let counts = &report.body["counts"];
    assert_eq!(counts["status_mismatch"], 1, "{}", report.text);
    assert_eq!(counts["missing_at_provider"], 1, "{}", report.text);
    assert_eq!(counts["missing_in_ledger"], 1, "{}", report.text);
    let discrepancies = report.body["discrepancies"]
        .as_array()
        .expect("list")
        .clone();
    let find = |kind: &str| {
        discrepancies
            .iter()
            .find(|d| d["kind"] == kind)
            .cloned()
            .expect("kind present")
    };
    assert_eq!(find("status_mismatch")["reference"]["id"], ids[1].as_str());
    assert_eq!(find("status_mismatch")["detail"]["stripe"], "paid");
    assert_eq!(
        find("missing_at_provider")["reference"]["id"],
        ids[2].as_str()
    );
    assert_eq!(
        find("missing_in_ledger")["reference"]["id"],
        "0194f1a0-0000-7000-8000-000000000009"
    );
}

#[tokio::test]
async fn a_bank_event_for_a_stripe_onramp_credits_nothing() {
    let (app, _received, _sessions) = stripe_app(Backend::Sqlite).await;
    let ada = app.user("ada").await;
    let created = app
        .post(
            "/v1/onramps",
            Some(&ada.token),
            Some("stripe-not-bank"),
            &json!({"provider": "stripe", "amount": 2500, "currency": "usd"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_str().expect("id").to_owned();

    // A correctly signed bank event naming the unpaid Stripe on-ramp, amount and all.
    let body = json!({
        "id": "evt_bank_for_stripe", "type": "payment.succeeded",
        "created": chrono::Utc::now().timestamp(),
        "data": {"reference": id, "amount": 2500, "currency": "usd"},
    })
    .to_string();
    let signed = walleti::domain::signature::sign(
        crate::helpers::BANK_SECRET,
        chrono::Utc::now().timestamp(),
        body.as_bytes(),
    );
    let sent = app
        .client
        .post(format!("{}/webhooks/bank", app.address))
        .header("Walleti-Signature", signed)
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(sent.status(), StatusCode::OK);

    let mut recorded = Vec::new();
    for _ in 0..250 {
        recorded = outcomes(&app).await;
        if recorded.iter().any(Option::is_some) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(recorded, vec![Some("provider_mismatch".to_owned())]);
    assert_eq!(app.balance(&ada).await, (0, 0));
    let read = app.get(&format!("/v1/onramps/{id}"), &ada.token).await;
    assert_eq!(read.body["status"], "processing");
}

//! What an attacker who can reach walleti (or its bank simulator) must not be able to do:
//! mint money through the development bank simulator, use it as a signing oracle or to send
//! requests anywhere, or take the process down through its fault API.

use crate::helpers::{
    ADMIN_TOKEN, BANK_SECRET, Backend, TestApp, fresh_database, spawn_app, spawn_app_on,
    spawn_app_with, test_settings,
};
use actix_web::{App, HttpResponse, HttpServer, web};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use walleti::bank_sim::{BankSimulator, SimulatorSettings};
use walleti::config::BankSimulatorMode;

const BANK_API_TOKEN: &str = "test-bank-api-token-0123456789";

/// Bodies POSTed to a local receiver.
type Received = Arc<Mutex<Vec<String>>>;

async fn record(body: String, received: web::Data<Mutex<Vec<String>>>) -> HttpResponse {
    received.lock().expect("lock").push(body);
    HttpResponse::Ok().finish()
}

/// A local HTTP server that records every POST; returns its base URL.
fn receiver() -> (String, Received) {
    let received = web::Data::new(Mutex::new(Vec::new()));
    let shared = received.clone().into_inner();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(received.clone())
            .default_service(web::post().to(record))
    })
    .listen(listener)
    .expect("listen")
    .workers(1)
    .disable_signals()
    .run();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), shared)
}

/// A standalone simulator (as `walleti bank-sim` runs it) on a free port.
fn standalone_simulator(callback_url: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let simulator = BankSimulator::new(SimulatorSettings {
        base_url: base.clone(),
        webhook_secret: BANK_SECRET.to_owned(),
        callback_url,
        api_tokens: vec![BANK_API_TOKEN.to_owned()],
        fault_tokens: vec![BANK_API_TOKEN.to_owned()],
        references: None,
    })
    .expect("simulator");
    let server = walleti::bank_sim::serve_standalone(simulator, listener).expect("serve");
    tokio::spawn(server);
    base
}

async fn post_json(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    let mut request = client.post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("send");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn bank_onramp(app: &TestApp, token: &str, amount: i64, key: &str) -> crate::helpers::Reply {
    app.post(
        "/v1/onramps",
        Some(token),
        Some(key),
        &json!({"provider": "bank", "amount": amount, "currency": "usd"}),
    )
    .await
}

#[tokio::test]
async fn a_published_walleti_mounts_no_simulator_and_has_no_bank() {
    for mode in [BankSimulatorMode::Auto, BankSimulatorMode::Off] {
        let mut settings = test_settings(&fresh_database(Backend::Sqlite).await);
        settings.bank_simulator = mode;
        if mode == BankSimulatorMode::Auto {
            // Bound to loopback but published (a reverse proxy): not local.
            settings.public_url = Some("https://pay.example.com".to_owned());
        }
        let app = spawn_app_with(settings).await;
        let ada = app.user("ada").await;
        app.fund(&ada, 10_000).await;

        for path in [
            "/bank-sim/api/settlements",
            "/bank-sim/pay/pay_x",
            "/bank-sim/api/faults",
        ] {
            let reply = app
                .request(reqwest::Method::GET, path, Some(ADMIN_TOKEN), None, None)
                .await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{mode:?} {path}");
        }
        let (status, _) = post_json(
            &app.client,
            &format!("{}/bank-sim/api/payments", app.address),
            Some(ADMIN_TOKEN),
            &json!({"reference": "x", "amount": 100, "currency": "usd"}),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let onramp = bank_onramp(&app, &ada.token, 2_500, "bank-off").await;
        assert_eq!(
            onramp.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            onramp.text
        );
        assert_eq!(onramp.code(), "provider_not_configured");
        let payout = app
            .post(
                "/v1/payouts",
                Some(&ada.token),
                Some("payout-off"),
                &json!({"amount": 1_000, "currency": "usd"}),
            )
            .await;
        assert_eq!(
            payout.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            payout.text
        );
        assert_eq!(payout.code(), "provider_not_configured");
        assert_eq!(app.balance(&ada).await, (10_000, 0), "nothing was locked");
    }
}

#[tokio::test]
async fn the_embedded_simulator_takes_only_walletis_onramps_and_operator_faults() {
    let app = spawn_app(Backend::Sqlite).await;
    let ada = app.user("ada").await;
    let payments = format!("{}/bank-sim/api/payments", app.address);

    // Anonymous: no bank API at all (it was a signing oracle).
    let (status, _) = post_json(
        &app.client,
        &payments,
        None,
        &json!({"reference": "anything", "amount": 1_000_000_000_000_i64, "currency": "usd"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for path in ["/bank-sim/api/settlements"] {
        let reply = app
            .request(reqwest::Method::GET, path, None, None, None)
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }

    // Even the operator cannot have it collect for a reference walleti never created, or
    // for an amount other than the on-ramp's.
    let onramp = bank_onramp(&app, &ada.token, 2_500, "real-onramp").await;
    assert_eq!(onramp.status, StatusCode::CREATED, "{}", onramp.text);
    let onramp_id = onramp.body["id"].as_str().expect("id");
    for (reference, amount) in [
        ("onr_not_walletis", 2_500_i64),
        (onramp_id, 1_000_000_000_000),
        (onramp_id, 2_499),
    ] {
        let (status, body) = post_json(
            &app.client,
            &payments,
            Some(ADMIN_TOKEN),
            &json!({"reference": reference, "amount": amount, "currency": "usd"}),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{reference} {amount}: {body}"
        );
    }

    // Faults: only with the operator token, and only within bounds.
    let faults = format!("{}/bank-sim/api/faults", app.address);
    let (status, _) = post_json(&app.client, &faults, None, &json!({"duplicate": 1})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for too_much in [
        json!({"duplicate": 4_294_967_295_u64}),
        json!({"duplicate": walleti::bank_sim::FAULT_DUPLICATE_MAX + 1}),
        json!({"delay_ms": walleti::bank_sim::FAULT_DELAY_MS_MAX + 1}),
        json!({"delay_ms": -1}),
        json!({"reorder": "yes"}),
        json!({"unknown": 1}),
    ] {
        let (status, body) = post_json(&app.client, &faults, Some(ADMIN_TOKEN), &too_much).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{too_much}: {body}");
    }
    let (status, body) = post_json(
        &app.client,
        &faults,
        Some(ADMIN_TOKEN),
        &json!({"duplicate": walleti::bank_sim::FAULT_DUPLICATE_MAX, "delay_ms": 0, "reorder": false}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.balance(&ada).await, (0, 0));
}

#[tokio::test]
async fn the_standalone_simulator_answers_walleti_alone_and_calls_back_only_walleti() {
    let (elsewhere, received_elsewhere) = receiver();
    let (walleti_hooks, received_by_walleti) = receiver();
    let bank = standalone_simulator(format!("{walleti_hooks}/webhooks/bank"));
    let client = reqwest::Client::new();
    let order = json!({
        "reference": "onr_from_walleti", "amount": 700, "currency": "usd",
        "callback_url": format!("{elsewhere}/steal"),
    });

    for token in [None, Some("wrong-token-0123456789")] {
        let (status, _) = post_json(&client, &format!("{bank}/api/payments"), token, &order).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = post_json(&client, &format!("{bank}/api/faults"), None, &json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post_json(
        &client,
        &format!("{bank}/api/faults"),
        Some(BANK_API_TOKEN),
        &json!({"duplicate": 4_294_967_295_u64}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, payment) = post_json(
        &client,
        &format!("{bank}/api/payments"),
        Some(BANK_API_TOKEN),
        &order,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
    let id = payment["id"].as_str().expect("id");
    let approved = client
        .post(format!("{bank}/api/payments/{id}/approve"))
        .send()
        .await
        .expect("approve");
    assert_eq!(approved.status(), StatusCode::OK);
    for _ in 0..250 {
        if !received_by_walleti.lock().expect("lock").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = received_by_walleti.lock().expect("lock").clone();
    assert_eq!(delivered.len(), 1, "the webhook goes to walleti's URL");
    let event: Value = serde_json::from_str(&delivered[0]).expect("json");
    assert_eq!(event["data"]["reference"], "onr_from_walleti");
    assert_eq!(event["data"]["payment_id"], id);
    assert!(received_elsewhere.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn walleti_tops_up_through_a_standalone_simulator_with_its_token() {
    let walleti_listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let walleti_url = format!("http://{}", walleti_listener.local_addr().expect("addr"));
    let bank = standalone_simulator(format!("{walleti_url}/webhooks/bank"));
    let mut settings = test_settings(&fresh_database(Backend::Sqlite).await);
    settings.bank_url = Some(bank.clone());
    settings.bank_api_token = Some(BANK_API_TOKEN.to_owned());
    let app = spawn_app_on(settings, walleti_listener).await;
    let ada = app.user("ada").await;

    let onramp = bank_onramp(&app, &ada.token, 1_200, "standalone-1").await;
    assert_eq!(onramp.status, StatusCode::CREATED, "{}", onramp.text);
    let page = onramp.body["redirect_url"].as_str().expect("redirect_url");
    assert!(page.starts_with(&bank), "{page}");
    let payment = page.rsplit('/').next().expect("payment id");
    let approved = app
        .client
        .post(format!("{bank}/api/payments/{payment}/approve"))
        .send()
        .await
        .expect("approve");
    assert_eq!(approved.status(), StatusCode::OK);
    let id = onramp.body["id"].as_str().expect("id");
    for _ in 0..250 {
        let read = app.get(&format!("/v1/onramps/{id}"), &ada.token).await;
        if read.body["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.balance(&ada).await, (1_200, 0));
}

#[tokio::test]
async fn the_login_page_never_sends_people_to_another_site() {
    let app = spawn_app(Backend::Sqlite).await;
    for next in [
        "/%09/evil.example",
        "//evil.example",
        "/%5Cevil.example",
        "/%250a/evil.example",
        "https://evil.example/",
    ] {
        let page = app
            .request(
                reqwest::Method::GET,
                &format!("/app/login?next={next}"),
                None,
                None,
                None,
            )
            .await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.text.contains("evil.example"), "{next}: {}", page.text);
    }
    let page = app
        .request(
            reqwest::Method::GET,
            "/app/login?next=/app/onramps",
            None,
            None,
            None,
        )
        .await;
    assert!(page.text.contains("/app/onramps"));
}

#[tokio::test]
async fn metrics_label_methods_from_a_fixed_set_and_can_move_to_their_own_address() {
    let mut settings = test_settings(&fresh_database(Backend::Sqlite).await);
    settings.metrics_bind = Some("127.0.0.1:0".parse().expect("address"));
    let app = spawn_app_with(settings).await;
    let metrics_port = app
        .running
        .as_ref()
        .and_then(|running| running.metrics_port)
        .expect("a metrics port");

    let invented = reqwest::Method::from_bytes(b"WALLETIPROBE").expect("method");
    let reply = app.request(invented, "/health", None, None, None).await;
    assert!(reply.status.is_client_error() || reply.status.is_success());

    let on_main = app
        .request(reqwest::Method::GET, "/metrics", None, None, None)
        .await;
    assert_eq!(on_main.status, StatusCode::NOT_FOUND);
    let exported = app
        .client
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(exported.status(), StatusCode::OK);
    let text = exported.text().await.expect("text");
    assert!(text.contains("walleti_http_requests_total"), "{text}");
    assert!(!text.contains("WALLETIPROBE"));
    assert!(text.contains("method=\"other\""), "{text}");
}

async fn wait_for(app: &TestApp, token: &str, path: &str, status: &str) -> Value {
    for _ in 0..400 {
        let read = app.get(path, token).await;
        if read.body["status"] == status {
            return read.body;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{path} never became {status}");
}

#[tokio::test]
async fn a_bank_event_naming_another_bank_payout_settles_nothing() {
    let app = spawn_app(Backend::Sqlite).await;
    let ada = app.user("ada").await;
    app.fund(&ada, 5_000).await;
    let (status, _) = post_json(
        &app.client,
        &format!("{}/bank-sim/api/faults", app.address),
        Some(ADMIN_TOKEN),
        &json!({"payouts": "manual"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let payout = app
        .post(
            "/v1/payouts",
            Some(&ada.token),
            Some("payout-1"),
            &json!({"amount": 2_000, "currency": "usd"}),
        )
        .await;
    assert_eq!(payout.status, StatusCode::CREATED, "{}", payout.text);
    let id = payout.body["id"].as_str().expect("id").to_owned();
    wait_for(&app, &ada.token, &format!("/v1/payouts/{id}"), "in_transit").await;

    // Signed with the bank's secret, right reference and amount, another bank payout.
    let body = json!({
        "id": "evt_other_payout", "type": "payout.failed",
        "created": chrono::Utc::now().timestamp(),
        "data": {"reference": id, "amount": 2_000, "currency": "usd", "payment_id": "po_someone_elses"},
    })
    .to_string();
    let signed = walleti::domain::signature::sign(
        BANK_SECRET,
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
    let database = sea_orm::Database::connect(app.database_url.as_str())
        .await
        .expect("connect");
    let mut outcome = None;
    for _ in 0..200 {
        use sea_orm::EntityTrait;
        outcome = walleti::store::entities::webhook_inbox::Entity::find()
            .all(&database)
            .await
            .expect("inbox")
            .into_iter()
            .find_map(|row| row.outcome);
        if outcome.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(outcome.as_deref(), Some("provider_mismatch"));
    assert_eq!(
        app.balance(&ada).await,
        (3_000, 2_000),
        "still locked, not released"
    );
    let read = app.get(&format!("/v1/payouts/{id}"), &ada.token).await;
    assert_eq!(read.body["status"], "in_transit");
}

#[tokio::test]
async fn web_pages_run_no_inline_script_or_style() {
    let app = spawn_app(Backend::Sqlite).await;
    let ada = app.user("ada").await;
    let login = app
        .request(reqwest::Method::GET, "/app/login", None, None, None)
        .await;
    let policy = login
        .headers
        .get("content-security-policy")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    for directive in [
        "default-src 'none'",
        "script-src 'self';",
        "style-src 'self';",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert!(!policy.contains("unsafe"), "{policy}");
    // The signed-in dashboard too (its chart is inline SVG, which needs no style attribute).
    let dashboard = app
        .client
        .get(format!("{}/app", app.address))
        .header("Cookie", format!("walleti_user={}", ada.token))
        .send()
        .await
        .expect("dashboard")
        .text()
        .await
        .expect("body");
    assert!(dashboard.contains("Balance"), "{dashboard}");
    for page in [&login.text, &dashboard] {
        assert!(!page.contains("<style"), "{page}");
        assert!(!page.contains(" style="), "{page}");
        for script in page.split("<script").skip(1) {
            let tag = &script[..script.find('>').expect("tag end")];
            assert!(
                tag.contains(" src=\"/static/"),
                "an inline script: <script{tag}>"
            );
        }
    }
    // What the pages link is served, with the right types.
    for (path, kind) in [
        ("/static/app.css", "text/css"),
        ("/static/app.js", "text/javascript"),
        ("/static/htmx.min.js", "text/javascript"),
    ] {
        let file = app
            .request(reqwest::Method::GET, path, None, None, None)
            .await;
        assert_eq!(file.status, StatusCode::OK, "{path}");
        let content_type = file
            .headers
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert!(login.text.contains(path), "the page links {path}");
    }
}

#[tokio::test]
async fn pages_cannot_be_framed_by_other_sites() {
    let app = spawn_app(Backend::Sqlite).await;
    for path in ["/app/login", "/merchant", "/v1/me"] {
        let reply = app
            .request(reqwest::Method::GET, path, None, None, None)
            .await;
        let header = |name: &str| {
            reply
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert!(
            header("content-security-policy").contains("frame-ancestors 'none'"),
            "{path}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "same-origin", "{path}");
        assert_eq!(
            header("strict-transport-security"),
            "",
            "not over plain HTTP"
        );
    }
    // Served at an https public URL, browsers are told to stay on TLS.
    let mut settings = test_settings(&fresh_database(Backend::Sqlite).await);
    settings.public_url = Some("https://pay.example.com".to_owned());
    let published = spawn_app_with(settings).await;
    let reply = published
        .request(reqwest::Method::GET, "/app/login", None, None, None)
        .await;
    assert_eq!(
        reply
            .headers
            .get("strict-transport-security")
            .and_then(|value| value.to_str().ok()),
        Some("max-age=31536000")
    );
}

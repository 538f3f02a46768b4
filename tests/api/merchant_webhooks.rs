//! Outgoing merchant webhooks, checked by a receiver written from the documented scheme
//! (`Walleti-Signature: t=…,v1=…`, HMAC-SHA256 of `"{t}.{body}"` with the endpoint's secret):
//! retries until acknowledged, every attempt recorded, endpoints disabled after the schedule,
//! re-sent by hand.

use crate::helpers::{TestApp, fresh_database, spawn_app_with, test_settings};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::Mac;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Receiver {
    /// Answer 500 to this many requests before answering 200.
    fail_first: usize,
    /// Answer 500 to everything.
    always_fail: bool,
    /// Every request: (event id, event type, signature valid, answered 2xx).
    seen: Vec<(String, String, bool, bool)>,
    secret: String,
}

/// Verifies the header as a merchant would, from the documentation alone.
fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.push(value.to_owned()),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return false;
    };
    if (chrono::Utc::now().timestamp() - timestamp).abs() > 300 {
        return false;
    }
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    signatures.contains(&expected)
}

async fn receive(
    request: HttpRequest,
    body: web::Bytes,
    receiver: web::Data<Mutex<Receiver>>,
) -> HttpResponse {
    let header = request
        .headers()
        .get("walleti-signature")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut receiver = receiver.lock().expect("lock");
    let valid = verify(&receiver.secret, &header, &body);
    let failures_so_far = receiver.seen.iter().filter(|seen| !seen.3).count();
    let ok = valid && !receiver.always_fail && failures_so_far >= receiver.fail_first;
    receiver.seen.push((
        event["id"].as_str().unwrap_or("").to_owned(),
        event["type"].as_str().unwrap_or("").to_owned(),
        valid,
        ok,
    ));
    if ok {
        HttpResponse::Ok().finish()
    } else {
        HttpResponse::InternalServerError().finish()
    }
}

async fn start_receiver(receiver: Receiver) -> (String, Arc<Mutex<Receiver>>) {
    let data = web::Data::new(Mutex::new(receiver));
    let shared = data.clone().into_inner();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/hooks", web::post().to(receive))
    })
    .listen(listener)
    .expect("listen")
    .workers(1)
    .disable_signals()
    .run();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}/hooks"), shared)
}

async fn app_with_fast_retries() -> TestApp {
    let database_url = fresh_database(crate::helpers::Backend::Sqlite).await;
    let mut settings = test_settings(&database_url);
    settings.webhook_retry_schedule = vec![Duration::from_millis(100); 3];
    settings.limits.webhook_dispatch_interval = Duration::from_millis(25);
    spawn_app_with(settings).await
}

async fn wait_for_delivery(app: &TestApp, token: &str, endpoint: &str, status: &str) -> Value {
    for _ in 0..400 {
        let list = app
            .get(
                &format!("/v1/webhook_endpoints/{endpoint}/deliveries"),
                token,
            )
            .await;
        if let Some(found) = list.body["data"]
            .as_array()
            .and_then(|data| data.iter().find(|delivery| delivery["status"] == status))
        {
            let id = found["id"].as_str().expect("id");
            return app
                .get(&format!("/v1/webhook_deliveries/{id}"), token)
                .await
                .body;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no {status} delivery for endpoint {endpoint}");
}

#[tokio::test]
async fn signed_webhooks_are_retried_until_acknowledged_once_and_every_attempt_is_recorded() {
    let app = app_with_fast_retries().await;
    let shop = app.merchant("shop").await;
    let ada = app.user("ada").await;
    app.fund(&ada, 5000).await;
    let (url, receiver) = start_receiver(Receiver {
        fail_first: 2,
        ..Receiver::default()
    })
    .await;
    let created = app
        .post(
            "/v1/webhook_endpoints",
            Some(&shop.key),
            None,
            &json!({"url": url, "events": ["payment_intent.succeeded"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let endpoint = created.body["id"].as_str().expect("id").to_owned();
    let secret = created.body["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"));
    receiver.lock().expect("lock").secret = secret;
    let read_back = app
        .get(&format!("/v1/webhook_endpoints/{endpoint}"), &shop.key)
        .await;
    assert!(read_back.body.get("secret").is_none(), "{}", read_back.text);
    let unknown = app
        .post(
            "/v1/webhook_endpoints",
            Some(&shop.key),
            None,
            &json!({"url": url, "events": ["payment_intent.exploded"]}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.text);

    // A manual intent authorised (not subscribed) and an automatic one paid (subscribed).
    let manual = app.intent(&shop, 700, true).await;
    assert_eq!(
        app.confirm(&ada, manual["id"].as_str().expect("id"))
            .await
            .status,
        StatusCode::OK
    );
    let intent = app.intent(&shop, 1200, false).await;
    let paid = app.confirm(&ada, intent["id"].as_str().expect("id")).await;
    assert_eq!(paid.body["status"], "succeeded", "{}", paid.text);

    let delivery = wait_for_delivery(&app, &shop.key, &endpoint, "succeeded").await;
    assert_eq!(delivery["event_type"], "payment_intent.succeeded");
    assert_eq!(delivery["attempts"], 3, "{delivery}");
    let log = delivery["attempt_log"].as_array().expect("attempt log");
    let codes: Vec<i64> = log
        .iter()
        .map(|attempt| attempt["status_code"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(codes, vec![500, 500, 200], "{delivery}");
    assert!(log.iter().all(|attempt| attempt["latency_ms"].is_i64()));
    assert_eq!(log[0]["error"], "HTTP 500");

    let seen = receiver.lock().expect("lock").seen.clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|(id, kind, valid, _)| *valid
        && kind == "payment_intent.succeeded"
        && id == delivery["event_id"].as_str().unwrap_or("?")));
    assert_eq!(seen.iter().filter(|(_, _, _, ok)| *ok).count(), 1);

    // Nothing more arrives: the acknowledged event is not sent again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.lock().expect("lock").seen.len(), 3);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            "walleti_merchant_webhook_attempts_total{attempt=\"3\",outcome=\"succeeded\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_endpoint_that_keeps_failing_is_disabled_with_a_reason_and_can_be_resent_by_hand() {
    let app = app_with_fast_retries().await;
    let shop = app.merchant("shop").await;
    let ada = app.user("ada").await;
    app.fund(&ada, 5000).await;
    let (url, receiver) = start_receiver(Receiver {
        always_fail: true,
        ..Receiver::default()
    })
    .await;
    let created = app
        .post(
            "/v1/webhook_endpoints",
            Some(&shop.token),
            None,
            &json!({"url": url, "events": ["*"]}),
        )
        .await;
    let endpoint = created.body["id"].as_str().expect("id").to_owned();
    receiver.lock().expect("lock").secret =
        created.body["secret"].as_str().expect("secret").to_owned();
    let intent = app.intent(&shop, 900, false).await;
    let paid = app.confirm(&ada, intent["id"].as_str().expect("id")).await;
    // Delivery trouble never touches the payment.
    assert_eq!(paid.body["status"], "succeeded", "{}", paid.text);

    let failed = wait_for_delivery(&app, &shop.key, &endpoint, "failed").await;
    assert_eq!(failed["attempts"], 4, "{failed}");
    assert_eq!(failed["attempt_log"].as_array().map(Vec::len), Some(4));
    let disabled = app
        .get(&format!("/v1/webhook_endpoints/{endpoint}"), &shop.key)
        .await;
    assert_eq!(disabled.body["status"], "disabled", "{}", disabled.text);
    let reason = disabled.body["disabled_reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("4 failed attempts") && reason.contains("HTTP 500"),
        "{reason}"
    );

    // The merchant fixes the receiver, re-sends by hand, and re-enables the endpoint.
    receiver.lock().expect("lock").always_fail = false;
    let id = failed["id"].as_str().expect("id");
    let resent = app
        .post(
            &format!("/v1/webhook_deliveries/{id}/resend"),
            Some(&shop.key),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(resent.status, StatusCode::OK, "{}", resent.text);
    assert_eq!(resent.body["status"], "succeeded", "{}", resent.text);
    let log = resent.body["attempt_log"].as_array().expect("log");
    assert_eq!(
        log.last().map(|a| a["trigger"].clone()),
        Some(json!("manual"))
    );
    let enabled = app
        .post(
            &format!("/v1/webhook_endpoints/{endpoint}"),
            Some(&shop.key),
            None,
            &json!({"status": "enabled"}),
        )
        .await;
    assert_eq!(enabled.body["status"], "enabled", "{}", enabled.text);
    assert!(enabled.body["disabled_reason"].is_null());

    // Another merchant sees none of it.
    let other = app.merchant("other").await;
    assert_eq!(
        app.get(&format!("/v1/webhook_deliveries/{id}"), &other.key)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/v1/webhook_endpoints/{endpoint}"), &other.key)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

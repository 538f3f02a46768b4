use crate::helpers::{Backend, fresh_database, spawn_app_with, test_settings};
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

fn percent_decode(text: &str) -> String {
    let bytes = text.replace('+', " ").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("00");
            out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn create_session(
    request: HttpRequest,
    body: web::Bytes,
    received: web::Data<Mutex<Vec<Received>>>,
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
    HttpResponse::Ok().json(json!({
        "id": "cs_test_a1b2c3", "object": "checkout.session",
        "automatic_tax": {"enabled": false}, "created": 1_800_000_000, "custom_fields": [],
        "custom_text": {}, "expires_at": 1_800_086_400, "livemode": false, "mode": "payment",
        "payment_method_types": ["card"], "payment_status": "unpaid", "shipping_options": [],
        "status": "open", "client_reference_id": reference,
        "amount_total": form.get("line_items[0][price_data][unit_amount]").and_then(|v| v.parse::<i64>().ok()),
        "currency": form.get("line_items[0][price_data][currency]"),
        "url": "https://checkout.stripe.com/c/pay/cs_test_a1b2c3",
    }))
}

async fn fake_stripe() -> (String, Arc<Mutex<Vec<Received>>>) {
    let received = web::Data::new(Mutex::new(Vec::new()));
    let shared = received.clone().into_inner();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(received.clone())
            .route("/v1/checkout/sessions", web::post().to(create_session))
    })
    .listen(listener)
    .expect("listen")
    .workers(1)
    .disable_signals()
    .run();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}/"), shared)
}

#[tokio::test]
async fn a_stripe_top_up_creates_the_checkout_session_stripe_expects() {
    let (stripe_base, received) = fake_stripe().await;
    let mut settings = test_settings(&fresh_database(Backend::Sqlite).await);
    settings.stripe = Some(StripeSettings {
        secret_key: "sk_test_walleti".into(),
        webhook_secret: Some("whsec_test".into()),
        api_base: stripe_base,
    });
    let app = spawn_app_with(settings).await;
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
        "https://checkout.stripe.com/c/pay/cs_test_a1b2c3"
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
        "https://checkout.stripe.com/c/pay/cs_test_a1b2c3"
    );
}

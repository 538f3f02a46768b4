use crate::helpers::{
    Backend, TestApp, TestUser, fresh_database, percent_decode, spawn_app_with, test_settings,
};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use walleti::config::TwilioSettings;
use walleti::providers::sms::Twilio;

const SID: &str = "AC0123456789abcdef";
const TOKEN: &str = "twilio-test-auth-token";

#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub(crate) path: String,
    pub(crate) authorization: String,
    pub(crate) form: HashMap<String, String>,
}

async fn messages(
    request: HttpRequest,
    body: web::Bytes,
    sent: web::Data<Mutex<Vec<Sent>>>,
) -> HttpResponse {
    let form = String::from_utf8_lossy(&body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    let mut sent = sent.lock().expect("lock");
    sent.push(Sent {
        path: request.path().to_owned(),
        authorization: request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        form,
    });
    HttpResponse::Created().json(json!({"sid": format!("SM{}", sent.len()), "status": "queued"}))
}

pub(crate) async fn fake_twilio() -> (String, Arc<Mutex<Vec<Sent>>>) {
    let sent = web::Data::new(Mutex::new(Vec::new()));
    let shared = sent.clone().into_inner();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = HttpServer::new(move || {
        App::new().app_data(sent.clone()).route(
            "/2010-04-01/Accounts/{sid}/Messages.json",
            web::post().to(messages),
        )
    })
    .listen(listener)
    .expect("listen")
    .workers(1)
    .disable_signals()
    .run();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), shared)
}

/// The index (SID `SM{index+1}`) and request of the SMS to `phone` whose body mentions `word`.
fn find_sms(sent: &Mutex<Vec<Sent>>, phone: &str, word: &str) -> (usize, Sent) {
    sent.lock()
        .expect("lock")
        .iter()
        .enumerate()
        .find(|(_, s)| {
            s.form.get("To").map(String::as_str) == Some(phone)
                && s.form.get("Body").is_some_and(|b| b.contains(word))
        })
        .map(|(index, s)| (index, s.clone()))
        .expect("sms sent")
}

async fn sms_delivery(app: &TestApp, user: &TestUser) -> Option<Value> {
    let reply = app.get("/v1/notifications?limit=100", &user.token).await;
    let newest = reply.body["data"]
        .as_array()?
        .iter()
        .find(|n| n["kind"] == "transfer.completed")?
        .clone();
    newest["deliveries"]
        .as_array()?
        .iter()
        .find(|d| d["channel"] == "sms")
        .cloned()
}

async fn wait_for_sms_status(app: &TestApp, user: &TestUser, status: &str) -> Value {
    for _ in 0..250 {
        if let Some(delivery) = sms_delivery(app, user).await
            && delivery["status"] == status
        {
            return delivery;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "sms delivery never became {status}: {:?}",
        sms_delivery(app, user).await
    );
}

async fn callback(app: &TestApp, params: &[(&str, &str)], signature: &str) -> StatusCode {
    let body = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    app.client
        .post(format!("{}/webhooks/twilio/status", app.address))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signature)
        .body(body)
        .send()
        .await
        .expect("send")
        .status()
}

#[tokio::test]
async fn sms_goes_through_twilio_and_signed_status_callbacks_settle_it() {
    let (base, sent) = fake_twilio().await;
    let mut settings = test_settings(&fresh_database(Backend::Sqlite).await);
    settings.twilio = Some(TwilioSettings {
        account_sid: SID.into(),
        auth_token: TOKEN.into(),
        from: "+15005550006".into(),
        api_base: base,
    });
    let app = spawn_app_with(settings).await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    app.fund(&ada, 1_000).await;
    app.transfer(&ada, &bob.email, json!(250), "sms-1").await;

    wait_for_sms_status(&app, &bob, "sent").await;
    let (_, request) = find_sms(&sent, &bob.phone, "received");
    assert_eq!(
        request.path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
    assert_eq!(request.authorization, format!("Basic {basic}"));
    assert_eq!(
        request.form.get("From").map(String::as_str),
        Some("+15005550006")
    );
    assert!(
        request
            .form
            .get("Body")
            .is_some_and(|body| body.contains("You received 2.50 usd."))
    );
    let callback_url = format!("{}/webhooks/twilio/status", app.address);
    assert_eq!(request.form.get("StatusCallback"), Some(&callback_url));

    // Bob's delivery has Twilio's SID; Twilio reports it delivered.
    let sid = format!("SM{}", find_sms(&sent, &bob.phone, "received").0 + 1);
    let signer = Twilio::new(
        "http://unused",
        SID,
        TOKEN,
        "+15005550006",
        callback_url.clone(),
    );
    let params: Vec<(String, String)> = vec![
        ("MessageSid".into(), sid.clone()),
        ("MessageStatus".into(), "delivered".into()),
    ];
    // A forged callback is refused and changes nothing.
    assert_eq!(
        callback(
            &app,
            &[("MessageSid", &sid), ("MessageStatus", "delivered")],
            "Zm9yZ2Vk"
        )
        .await,
        StatusCode::BAD_REQUEST
    );
    let tampered = signer.sign_callback(
        &callback_url,
        &[
            ("MessageSid".into(), sid.clone()),
            ("MessageStatus".into(), "failed".into()),
        ],
    );
    assert_eq!(
        callback(
            &app,
            &[("MessageSid", &sid), ("MessageStatus", "delivered")],
            &tampered
        )
        .await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        sms_delivery(&app, &bob).await.expect("delivery")["status"],
        "sent"
    );
    let signature = signer.sign_callback(&callback_url, &params);
    assert_eq!(
        callback(
            &app,
            &[("MessageSid", &sid), ("MessageStatus", "delivered")],
            &signature
        )
        .await,
        StatusCode::NO_CONTENT
    );
    wait_for_sms_status(&app, &bob, "delivered").await;

    // Ada's message fails at the carrier.
    let ada_sid = format!("SM{}", find_sms(&sent, &ada.phone, "sent").0 + 1);
    let failed: Vec<(String, String)> = vec![
        ("ErrorCode".into(), "30003".into()),
        ("MessageSid".into(), ada_sid.clone()),
        ("MessageStatus".into(), "undelivered".into()),
    ];
    let signature = signer.sign_callback(&callback_url, &failed);
    assert_eq!(
        callback(
            &app,
            &[
                ("MessageSid", &ada_sid),
                ("MessageStatus", "undelivered"),
                ("ErrorCode", "30003")
            ],
            &signature
        )
        .await,
        StatusCode::NO_CONTENT
    );
    let delivery = wait_for_sms_status(&app, &ada, "failed").await;
    assert!(
        delivery["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("30003")),
        "{delivery}"
    );
}

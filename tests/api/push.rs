use crate::helpers::{Backend, TestApp, TestUser, fresh_database, spawn_app_with, test_settings};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use walleti::config::FcmSettings;

const PROJECT: &str = "walleti-test";

#[derive(Default)]
struct Google {
    token_requests: Vec<String>,
    sends: Vec<(String, Value)>,
}

async fn token(body: web::Bytes, google: web::Data<Mutex<Google>>) -> HttpResponse {
    google
        .lock()
        .expect("lock")
        .token_requests
        .push(String::from_utf8_lossy(&body).into_owned());
    HttpResponse::Ok().json(json!({"access_token": "ya29.test-access-token", "expires_in": 3600, "token_type": "Bearer"}))
}

async fn send(
    request: HttpRequest,
    body: web::Json<Value>,
    google: web::Data<Mutex<Google>>,
) -> HttpResponse {
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let device = body["message"]["token"].as_str().unwrap_or("").to_owned();
    google
        .lock()
        .expect("lock")
        .sends
        .push((authorization, body.into_inner()));
    if device == "dead-token" {
        return HttpResponse::NotFound().json(json!({"error": {"code": 404, "status": "NOT_FOUND", "message": "Requested entity was not found.",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}}));
    }
    HttpResponse::Ok().json(json!({"name": format!("projects/{PROJECT}/messages/0:1")}))
}

async fn fake_google() -> (String, Arc<Mutex<Google>>) {
    let google = web::Data::new(Mutex::new(Google::default()));
    let shared = google.clone().into_inner();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(google.clone())
            .route("/token", web::post().to(token))
            .route("/v1/projects/{project}/messages:send", web::post().to(send))
    })
    .listen(listener)
    .expect("listen")
    .workers(1)
    .disable_signals()
    .run();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), shared)
}

async fn push_delivery(app: &TestApp, user: &TestUser) -> Option<Value> {
    let reply = app.get("/v1/notifications?limit=100", &user.token).await;
    let newest = reply.body["data"]
        .as_array()?
        .iter()
        .find(|n| n["kind"] == "transfer.completed")?
        .clone();
    newest["deliveries"]
        .as_array()?
        .iter()
        .find(|d| d["channel"] == "push")
        .cloned()
}

#[tokio::test]
async fn push_goes_to_registered_devices_through_fcm_and_unregistered_tokens_are_removed() {
    let (base, google) = fake_google().await;
    let key = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/fcm-test-key.pem"
    ))
    .expect("test key");
    let service_account = json!({"type": "service_account", "client_email": "walleti@walleti-test.iam.gserviceaccount.com", "private_key": key}).to_string();
    let mut settings = test_settings(&fresh_database(Backend::Sqlite).await);
    settings.fcm = Some(FcmSettings {
        project_id: PROJECT.into(),
        service_account_json: service_account,
        api_base: base.clone(),
        token_url: Some(format!("{base}/token")),
    });
    let app = spawn_app_with(settings).await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    for token in ["good-token", "dead-token"] {
        let device = app
            .post(
                "/v1/devices",
                Some(&bob.token),
                None,
                &json!({"token": token, "platform": "android"}),
            )
            .await;
        assert_eq!(device.status, StatusCode::CREATED);
    }
    app.fund(&ada, 1_000).await;
    app.transfer(&ada, &bob.email, json!(250), "push-1").await;

    let mut delivery = None;
    for _ in 0..250 {
        delivery = push_delivery(&app, &bob).await;
        if delivery.as_ref().is_some_and(|d| d["status"] == "sent") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(delivery.expect("push delivery")["status"], "sent");

    {
        let google = google.lock().expect("lock");
        // The JWT-bearer grant: an RS256 assertion for the FCM scope, issued by the service account.
        let grant = google.token_requests.first().expect("token requested");
        assert!(
            grant.starts_with(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="
            ),
            "{grant}"
        );
        let assertion = grant.rsplit('=').next().expect("assertion");
        let parts: Vec<&str> = assertion.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |part: &str| -> Value {
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .expect("base64url"),
            )
            .expect("json")
        };
        assert_eq!(decode(parts[0])["alg"], "RS256");
        let claims = decode(parts[1]);
        assert_eq!(
            claims["iss"],
            "walleti@walleti-test.iam.gserviceaccount.com"
        );
        assert_eq!(
            claims["scope"],
            "https://www.googleapis.com/auth/firebase.messaging"
        );
        assert_eq!(claims["aud"], format!("{base}/token"));
        // Every send carried the access token; the unregistered token was tried once, then never
        // again (the login notice may reach it first), and the transfer notice reached the good one.
        assert!(
            google
                .sends
                .iter()
                .all(|(auth, _)| auth == "Bearer ya29.test-access-token")
        );
        let to_dead = google
            .sends
            .iter()
            .filter(|(_, body)| body["message"]["token"] == "dead-token")
            .count();
        assert_eq!(to_dead, 1, "{:?}", google.sends);
        assert!(
            google
                .sends
                .iter()
                .any(|(_, body)| body["message"]["token"] == "good-token"
                    && body["message"]["notification"]["body"] == "You received 2.50 usd.")
        );
    }
    // The token FCM reported as unregistered is gone.
    let devices = app.get("/v1/devices", &bob.token).await;
    let tokens: Vec<&str> = devices.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|d| d["token"].as_str())
        .collect();
    assert_eq!(tokens, ["good-token"]);
}

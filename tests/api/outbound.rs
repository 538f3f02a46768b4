//! Outbound HTTP as merchants and operators see it: deliveries over HTTPS to a server whose
//! certificate comes from an operator-trusted CA (`WALLETI_EXTRA_CA_CERTS`), and merchant
//! endpoint URLs that cannot make walleti call its own network.

use crate::helpers::{TestApp, fresh_database, spawn_app_with, test_settings};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// Bodies received by the TLS server.
type Received = Arc<Mutex<Vec<String>>>;

/// A test CA (PEM) and a TLS server on 127.0.0.1 with a `localhost` certificate it issued,
/// answering every HTTP/1.1 POST with 200. Returns (CA PEM, port, received bodies).
async fn tls_receiver() -> (String, u16, Received) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "walleti test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let received: Received = Arc::default();
    let shared = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, received) = (acceptor.clone(), Arc::clone(&received));
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                if let Some(body) = read_request_body(&mut tls).await {
                    received.lock().expect("lock").push(body);
                    let answer =
                        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    (ca.pem(), port, shared)
}

/// Reads one HTTP/1.1 request and returns its body.
async fn read_request_body(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<String> {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0);
        if buffer.len() >= end + 4 + length {
            return Some(String::from_utf8_lossy(&buffer[end + 4..end + 4 + length]).into_owned());
        }
    }
}

async fn fast_app(configure: impl FnOnce(&mut walleti::config::Settings)) -> TestApp {
    let mut settings = test_settings(&fresh_database(crate::helpers::Backend::Sqlite).await);
    settings.webhook_retry_schedule = vec![Duration::from_secs(3600)];
    settings.limits.webhook_dispatch_interval = Duration::from_millis(25);
    configure(&mut settings);
    spawn_app_with(settings).await
}

/// A merchant with an endpoint at `url` and one paid intent; returns (merchant key,
/// endpoint id), or the endpoint's refusal.
async fn merchant_with_paid_intent(app: &TestApp, url: &str) -> Result<(String, String), Value> {
    let shop = app.merchant("shop").await;
    let created = app
        .post(
            "/v1/webhook_endpoints",
            Some(&shop.key),
            None,
            &json!({"url": url, "events": ["payment_intent.succeeded"]}),
        )
        .await;
    if created.status != StatusCode::CREATED {
        return Err(created.body);
    }
    let ada = app.user("ada").await;
    app.fund(&ada, 5_000).await;
    let intent = app.intent(&shop, 1_200, false).await;
    let paid = app.confirm(&ada, intent["id"].as_str().expect("id")).await;
    assert_eq!(paid.body["status"], "succeeded", "{}", paid.text);
    Ok((
        shop.key,
        created.body["id"].as_str().expect("id").to_owned(),
    ))
}

/// The endpoint's first delivery once it has an attempt.
async fn attempted_delivery(app: &TestApp, key: &str, endpoint: &str) -> Value {
    for _ in 0..400 {
        let list = app
            .get(&format!("/v1/webhook_endpoints/{endpoint}/deliveries"), key)
            .await;
        let attempted = list.body["data"].as_array().and_then(|data| {
            data.iter()
                .find(|delivery| delivery["attempts"].as_i64().unwrap_or(0) > 0)
                .cloned()
        });
        if let Some(delivery) = attempted {
            let id = delivery["id"].as_str().expect("id");
            return app
                .get(&format!("/v1/webhook_deliveries/{id}"), key)
                .await
                .body;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no attempted delivery for endpoint {endpoint}");
}

#[tokio::test]
async fn webhooks_reach_an_https_endpoint_whose_ca_the_operator_trusts() {
    let (ca_pem, port, received) = tls_receiver().await;
    let url = format!("https://localhost:{port}/hooks");

    // Without the CA the handshake fails, and the merchant sees a coarse error.
    let untrusting = fast_app(|_| {}).await;
    let (key, endpoint) = merchant_with_paid_intent(&untrusting, &url)
        .await
        .expect("endpoint");
    let delivery = attempted_delivery(&untrusting, &key, &endpoint).await;
    let attempt = &delivery["attempt_log"][0];
    assert!(attempt["status_code"].is_null(), "{delivery}");
    assert!(
        ["connection failed", "request failed"].contains(&attempt["error"].as_str().unwrap_or("")),
        "{delivery}"
    );
    assert!(received.lock().expect("lock").is_empty());

    // With WALLETI_EXTRA_CA_CERTS naming the CA, the signed event arrives over TLS.
    let ca_file = std::env::temp_dir().join(format!("walleti-test-ca-{port}.pem"));
    std::fs::write(&ca_file, &ca_pem).expect("write CA");
    let trusting = fast_app(|settings| {
        settings.extra_ca_certs = Some(ca_file.display().to_string());
    })
    .await;
    let (key, endpoint) = merchant_with_paid_intent(&trusting, &url)
        .await
        .expect("endpoint");
    let delivery = attempted_delivery(&trusting, &key, &endpoint).await;
    assert_eq!(delivery["status"], "succeeded", "{delivery}");
    assert_eq!(delivery["attempt_log"][0]["status_code"], 200);
    let bodies = received.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 1);
    let event: Value = serde_json::from_str(&bodies[0]).expect("json");
    assert_eq!(event["type"], "payment_intent.succeeded");
    let _ = std::fs::remove_file(ca_file);
}

#[tokio::test]
async fn merchant_endpoints_cannot_reach_walletis_own_network() {
    let app = fast_app(|settings| settings.webhook_allow_private_networks = false).await;
    let shop = app.merchant("shop").await;
    for url in [
        format!("{}/v1/admin/actors", app.address),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/hooks".to_owned(),
        "http://[::1]:8080/hooks".to_owned(),
        "http://[::ffff:127.0.0.1]/hooks".to_owned(),
        "http://0.0.0.0:8080/hooks".to_owned(),
    ] {
        let created = app
            .post(
                "/v1/webhook_endpoints",
                Some(&shop.key),
                None,
                &json!({"url": url, "events": ["*"]}),
            )
            .await;
        assert_eq!(
            created.status,
            StatusCode::BAD_REQUEST,
            "{url}: {}",
            created.text
        );
        assert_eq!(created.code(), "url_invalid");
    }

    // A name is checked where it resolves, at connect time: `localhost` is loopback.
    let hits: Arc<Mutex<usize>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let counted = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((_stream, _)) = listener.accept().await {
            *counted.lock().expect("lock") += 1;
        }
    });
    let (key, endpoint) =
        merchant_with_paid_intent(&app, &format!("http://localhost:{port}/hooks"))
            .await
            .expect("a name is accepted when registered");
    let delivery = attempted_delivery(&app, &key, &endpoint).await;
    let attempt = &delivery["attempt_log"][0];
    assert_eq!(attempt["error"], "destination not allowed", "{delivery}");
    assert_eq!(*hits.lock().expect("lock"), 0, "no connection was made");

    // Manual re-sends are rate limited per merchant.
    let id = delivery["id"].as_str().expect("id");
    let mut statuses = Vec::new();
    for _ in 0..15 {
        let resent = app
            .post(
                &format!("/v1/webhook_deliveries/{id}/resend"),
                Some(&key),
                None,
                &json!({}),
            )
            .await;
        statuses.push(resent.status);
    }
    assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(*hits.lock().expect("lock"), 0);
}

/// A plain HTTP endpoint on 127.0.0.1: answers 200 at once, or (`hang`) accepts connections
/// and never answers. Returns (URL, connections accepted).
async fn plain_receiver(hang: bool) -> (String, Arc<Mutex<usize>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted: Arc<Mutex<usize>> = Arc::default();
    let counted = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            *counted.lock().expect("lock") += 1;
            tokio::spawn(async move {
                if hang {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                while read_request_body(&mut stream).await.is_some() {
                    let answer = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://127.0.0.1:{port}/hooks"), accepted)
}

#[tokio::test]
async fn a_slow_merchant_holds_a_few_slots_and_delays_nobody_else() {
    let app = fast_app(|_| {}).await;
    let (slow_url, slow_connections) = plain_receiver(true).await;
    let (fast_url, _) = plain_receiver(false).await;
    let ada = app.user("ada").await;
    app.fund(&ada, 100_000).await;
    let slow = app.merchant("slow").await;
    let fast = app.merchant("fast").await;
    for (merchant, url) in [(&slow, &slow_url), (&fast, &fast_url)] {
        let created = app
            .post(
                "/v1/webhook_endpoints",
                Some(&merchant.key),
                None,
                &json!({"url": url, "events": ["payment_intent.succeeded"]}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    }
    // Six events for the merchant whose endpoint never answers (each attempt hangs 10 s)...
    for _ in 0..6 {
        let intent = app.intent(&slow, 100, false).await;
        let paid = app.confirm(&ada, intent["id"].as_str().expect("id")).await;
        assert_eq!(paid.body["status"], "succeeded", "{}", paid.text);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...then one for another merchant: delivered at once, not after the slow attempts.
    let started = std::time::Instant::now();
    let intent = app.intent(&fast, 100, false).await;
    let paid = app.confirm(&ada, intent["id"].as_str().expect("id")).await;
    assert_eq!(paid.body["status"], "succeeded", "{}", paid.text);
    let endpoints = app.get("/v1/webhook_endpoints", &fast.key).await;
    let endpoint = endpoints.body["data"][0]["id"]
        .as_str()
        .expect("endpoint")
        .to_owned();
    let delivery = attempted_delivery(&app, &fast.key, &endpoint).await;
    assert_eq!(delivery["status"], "succeeded", "{delivery}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the fast merchant waited {:?}",
        started.elapsed()
    );
    let held = *slow_connections.lock().expect("lock");
    assert!(
        (1..=walleti::actors::webhook_dispatcher::ENDPOINT_ATTEMPTS_IN_FLIGHT_MAX).contains(&held),
        "the slow endpoint holds {held} attempts at once"
    );
    // A merchant's endpoints are bounded, also when the creations race (one exists already).
    let limit = walleti::http::webhook_endpoints::ENDPOINTS_PER_MERCHANT_MAX;
    let endpoint_body = json!({"url": fast_url, "events": ["*"]});
    let creations = (0..limit + 4).map(|_| {
        app.post(
            "/v1/webhook_endpoints",
            Some(&fast.key),
            None,
            &endpoint_body,
        )
    });
    let answers = futures_util::future::join_all(creations).await;
    let created = answers
        .iter()
        .filter(|answer| answer.status == StatusCode::CREATED)
        .count() as u64;
    assert_eq!(created, limit - 1, "one endpoint existed before");
    let refused = answers
        .iter()
        .find(|answer| answer.status != StatusCode::CREATED)
        .expect("a refusal");
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert_eq!(refused.code(), "webhook_endpoints_limit_reached");
    let listed = app.get("/v1/webhook_endpoints?limit=100", &fast.key).await;
    let listed = listed.body["data"].as_array().expect("endpoints").len() as u64;
    assert_eq!(listed, limit);
}

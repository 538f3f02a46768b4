use crate::helpers::{Backend, spawn_app};
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn health_ready_metrics_and_openapi() {
    let app = spawn_app(Backend::Sqlite).await;
    let health = app.request(Method::GET, "/health", None, None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert!(
        health.headers.get("x-request-id").is_some(),
        "every response carries a request id"
    );
    let echoed = app
        .client
        .get(format!("{}/health", app.address))
        .header("X-Request-Id", "trace-me-123")
        .send()
        .await
        .expect("send");
    assert_eq!(
        echoed
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("trace-me-123")
    );
    let ready = app.request(Method::GET, "/ready", None, None, None).await;
    assert_eq!(ready.status, StatusCode::OK);

    let ada = app.user("ada").await;
    app.fund(&ada, 100).await;
    let metrics = app.request(Method::GET, "/metrics", None, None, None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    for family in [
        "walleti_http_requests_total{method=\"POST\",route=\"/v1/users\",status=\"201\"}",
        "walleti_http_request_duration_seconds_bucket",
        "walleti_actor_messages_total{kind=\"wallet\"}",
        "walleti_actor_message_duration_seconds_bucket",
        "walleti_actors_live{kind=\"wallet\"} 1",
        "walleti_wallet_batch_size_bucket",
    ] {
        assert!(metrics.text.contains(family), "missing {family}");
    }

    let actors = app
        .get("/v1/admin/actors", crate::helpers::ADMIN_TOKEN)
        .await;
    assert_eq!(actors.status, StatusCode::OK, "{}", actors.text);
    let kind = |name: &str| {
        actors.body["data"]
            .as_array()
            .expect("kinds")
            .iter()
            .find(|k| k["kind"] == name)
            .cloned()
            .expect("kind")
    };
    assert_eq!(kind("wallet")["live"], 1);
    assert_eq!(
        kind("wallet")["mailbox_depth"],
        0,
        "nothing queued once idle"
    );
    assert!(
        kind("wallet")["messages_handled"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    assert_eq!(kind("wallet_supervisor")["live"], 1);
    assert_eq!(kind("bank_ingestor")["live"], 1);
    assert_eq!(kind("reconciler")["live"], 1);
    assert_eq!(kind("wallet")["restarts"], 0);
    assert_eq!(
        app.get("/v1/admin/actors", &ada.token).await.status,
        StatusCode::UNAUTHORIZED
    );
    let metrics = app.request(Method::GET, "/metrics", None, None, None).await;
    assert!(
        metrics
            .text
            .contains("walleti_actor_mailbox_depth{kind=\"wallet\"} 0")
    );

    let openapi = app
        .request(Method::GET, "/openapi.json", None, None, None)
        .await;
    assert_eq!(openapi.status, StatusCode::OK);
    assert!(
        openapi.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    for path in [
        "/v1/users",
        "/v1/sessions",
        "/v1/sessions/current",
        "/v1/me",
        "/v1/wallet",
        "/v1/wallet/entries",
        "/v1/transfers",
        "/v1/transfers/{id}",
        "/v1/admin/adjustments",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(
            openapi.body["paths"].get(path).is_some(),
            "openapi lacks {path}"
        );
    }

    // Every documented path is actually routed (a missing route answers `route_not_found`).
    let paths = openapi.body["paths"].as_object().expect("paths").clone();
    for (path, operations) in paths {
        let concrete = path.replace("{id}", "0194f1a0-0000-7000-8000-000000000000");
        for method in operations.as_object().expect("operations").keys() {
            let method =
                reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let reply = app
                .request(method.clone(), &concrete, None, None, Some("{}".into()))
                .await;
            assert_ne!(
                reply.code(),
                "route_not_found",
                "{method} {path} is documented but not routed"
            );
        }
    }
    for path in [
        "/v1/onramps",
        "/v1/onramps/{id}",
        "/v1/admin/reconciliations",
        "/v1/admin/reconciliations/{id}",
        "/v1/users/{id}",
        "/v1/sessions/{id}",
    ] {
        assert!(
            openapi.body["paths"].get(path).is_some(),
            "openapi lacks {path}"
        );
    }
}

#[tokio::test]
async fn ready_checks_a_configured_redis() {
    let database_url = crate::helpers::fresh_database(Backend::Sqlite).await;
    let mut settings = crate::helpers::test_settings(&database_url);
    // A port nothing listens on: Redis is configured but down.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    settings.redis_url = Some(format!("redis://127.0.0.1:{closed}"));
    let app = crate::helpers::spawn_app_with(settings).await;
    let down = app.request(Method::GET, "/ready", None, None, None).await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        down.text
    );
    assert_eq!(down.body["redis"], "unreachable");
    assert_eq!(
        app.request(Method::GET, "/health", None, None, None)
            .await
            .status,
        StatusCode::OK
    );

    if let Ok(redis_url) = std::env::var("WALLETI_TEST_REDIS_URL") {
        let mut settings =
            crate::helpers::test_settings(&crate::helpers::fresh_database(Backend::Sqlite).await);
        settings.redis_url = Some(redis_url);
        let app = crate::helpers::spawn_app_with(settings).await;
        let up = app.request(Method::GET, "/ready", None, None, None).await;
        assert_eq!(up.status, StatusCode::OK, "{}", up.text);
        assert_eq!(up.body["redis"], "ok");
    }
}

/// `/docs` is the interactive API reference, served from the binary with its viewer: the page,
/// the script it loads and the document it renders all come from walleti, under a policy that
/// lets scripts and requests reach nothing else.
#[tokio::test]
async fn the_api_reference_is_served_with_its_viewer() {
    let app = spawn_app(Backend::Sqlite).await;
    let page = app.request(Method::GET, "/docs", None, None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    let header = |name: &str| {
        page.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header("content-type").starts_with("text/html"));
    let policy = header("content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self';",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert!(!policy.contains("unsafe-eval"), "{policy}");
    assert!(
        page.text.contains("<rapi-doc spec-url=\"/openapi.json\""),
        "{}",
        page.text
    );
    // Every script the page loads is served by walleti itself.
    let scripts: Vec<&str> = page
        .text
        .match_indices("src=\"")
        .map(|(at, _)| {
            let rest = &page.text[at + 5..];
            &rest[..rest.find('"').unwrap_or(0)]
        })
        .collect();
    assert_eq!(scripts, vec!["/static/rapidoc-min.js"]);
    for script in scripts {
        let viewer = app.request(Method::GET, script, None, None, None).await;
        assert_eq!(viewer.status, StatusCode::OK);
        assert!(
            viewer.headers["content-type"]
                .to_str()
                .unwrap_or_default()
                .starts_with("text/javascript")
        );
        assert!(viewer.text.contains("RapiDoc 9.3.8"));
        assert!(viewer.text.len() > 500_000, "the whole viewer is embedded");
    }
    let document = app
        .request(Method::GET, "/openapi.json", None, None, None)
        .await;
    assert_eq!(document.status, StatusCode::OK);
    assert!(document.text.contains("\"/v1/transfers\""));
}

/// Connections the PostgreSQL server dropped while the node was idle (a restart, a proxy, a
/// firewall) are replaced unnoticed: the pool tests a connection idle for a second or more
/// before handing it out, and the next requests succeed.
#[tokio::test]
async fn connections_the_database_dropped_while_idle_are_replaced_before_use() {
    use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
    if !crate::helpers::backends().contains(&Backend::Postgres) {
        return;
    }
    let app = spawn_app(Backend::Postgres).await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    app.fund(&ada, 1_000).await;
    let first = app
        .transfer(&ada, &bob.email, serde_json::json!(100), "t-1")
        .await;
    assert_eq!(first.body["status"], "completed", "{}", first.text);

    let name = app
        .database_url
        .split('?')
        .next()
        .and_then(|base| base.rsplit('/').next())
        .expect("database name")
        .to_owned();
    let admin_url = std::env::var("WALLETI_TEST_DATABASE_URL").expect("admin url");
    let admin = Database::connect(admin_url.as_str())
        .await
        .expect("connect");
    let terminated = admin
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            [name.into()],
        ))
        .await
        .expect("terminate");
    assert!(!terminated.is_empty(), "the node had connections open");
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;

    for index in 2..5 {
        let sent = app
            .transfer(
                &ada,
                &bob.email,
                serde_json::json!(100),
                &format!("t-{index}"),
            )
            .await;
        assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
        assert_eq!(sent.body["status"], "completed", "{}", sent.text);
    }
    let wallet = app.get("/v1/wallet", &bob.token).await;
    assert_eq!(
        wallet.body["accounts"][0]["available"], 400,
        "{}",
        wallet.text
    );
}

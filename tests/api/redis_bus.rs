//! The Redis Streams bus, against real Redis (`WALLETI_TEST_REDIS_URL`; CI sets it): events
//! reach the notifier through a consumer group; a consumer killed between handling and `XACK`
//! gets its message redelivered and the user still receives one email; with Redis down,
//! transfers keep working and events wait in the outbox until Redis returns; a poison event is
//! dead-lettered after the bound without blocking the others; rate limits are shared.

use crate::email::smtp_server;
use crate::helpers::{Backend, TestApp, fresh_database, spawn_app_with, test_settings};
use fred::prelude::*;
use fred::types::Value as RedisValue;
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use walleti::config::{Settings, SmtpSettings};
use walleti::store::entities::outbox;

/// These tests are `#[ignore]`d (the summary says so) unless asked for with `--ignored`; then
/// Redis must be configured, or they fail rather than pass without running.
const NEEDS_REDIS: &str =
    "set WALLETI_TEST_REDIS_URL=redis://127.0.0.1:6379 to run the Redis tests";

fn redis_url() -> Option<String> {
    let url = std::env::var("WALLETI_TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty());
    assert!(url.is_some(), "{NEEDS_REDIS}");
    url
}

/// Settings for an app on the Redis bus, with its own stream.
fn redis_settings(database_url: &str, redis: &str, stream: &str) -> Settings {
    let mut settings = test_settings(database_url);
    settings.redis_url = Some(redis.to_owned());
    settings.redis_stream = stream.to_owned();
    settings.consumer_limits.poll_interval = Duration::from_millis(20);
    settings.consumer_limits.claim_idle = Duration::from_millis(300);
    settings.consumer_limits.deliveries_max = 3;
    settings
}

fn unique_stream() -> String {
    format!("walleti-test:{}", uuid::Uuid::now_v7().simple())
}

async fn redis_client(url: &str) -> Client {
    let client = Builder::from_config(Config::from_url(url).expect("url"))
        .build()
        .expect("client");
    client.init().await.expect("connect to redis");
    client
}

/// Removes the test's streams (the client has no `DEL` without the keys interface).
async fn delete_keys(client: &Client, keys: impl Into<Vec<String>>) {
    let keys: Vec<String> = keys.into();
    let _: Result<i64, _> = client
        .eval(
            "local n = 0 for _, key in ipairs(KEYS) do n = n + redis.call('DEL', key) end return n",
            keys,
            Vec::<String>::new(),
        )
        .await;
}

async fn wait_until<F: AsyncFn() -> bool>(what: &str, condition: F) {
    for _ in 0..400 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn notification_kinds(app: &TestApp, token: &str) -> Vec<String> {
    let reply = app.get("/v1/notifications?limit=100", token).await;
    reply.body["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n["kind"].as_str().map(str::to_owned))
        .collect()
}

async fn unpublished(database_url: &str) -> usize {
    let database = Database::connect(database_url).await.expect("connect");
    let rows = outbox::Entity::find()
        .filter(outbox::Column::PublishedAt.is_null())
        .all(&database)
        .await
        .expect("outbox");
    let _ = database.close().await;
    rows.len()
}

/// Events a consumer group handled and acknowledged, from the app's metrics.
async fn delivered(app: &TestApp, group: &str) -> i64 {
    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let series = format!("walleti_stream_events_total{{group=\"{group}\",outcome=\"delivered\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

/// Pending (delivered, unacknowledged) messages of a consumer group.
async fn pending(client: &Client, stream: &str, group: &str) -> i64 {
    let summary: RedisValue = client.xpending(stream, group, ()).await.expect("xpending");
    summary
        .into_array()
        .first()
        .and_then(RedisValue::as_i64)
        .unwrap_or(-1)
}

#[tokio::test]
#[ignore = "needs Redis: WALLETI_TEST_REDIS_URL=redis://… cargo test -- --ignored (.ci/run does)"]
async fn events_reach_the_notifier_through_a_consumer_group_and_limits_are_shared() {
    let Some(redis) = redis_url() else { return };
    let stream = unique_stream();
    let database_url = fresh_database(Backend::Sqlite).await;
    let app = spawn_app_with(redis_settings(&database_url, &redis, &stream)).await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    app.fund(&ada, 1000).await;
    let sent = app.transfer(&ada, &bob.email, json!(300), "redis-1").await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
    wait_until("bob hears of the transfer", async || {
        notification_kinds(&app, &bob.token)
            .await
            .contains(&"transfer.completed".to_owned())
    })
    .await;
    wait_until("the outbox is drained", async || {
        unpublished(&database_url).await == 0
    })
    .await;
    let client = redis_client(&redis).await;
    let length: i64 = client.xlen(stream.as_str()).await.expect("xlen");
    assert!(
        length >= 3,
        "session, adjustment and transfer events: {length}"
    );
    wait_until("every group acknowledged everything", async || {
        pending(&client, &stream, "notifier").await == 0
            && pending(&client, &stream, "webhook_dispatcher").await == 0
    })
    .await;
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
        metrics.contains("walleti_stream_events_total{group=\"notifier\",outcome=\"delivered\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("walleti_event_delivery_seconds_count{consumer=\"notifier\"}"));

    // Two nodes share one login limit through Redis (a slow limit, so that no allowance comes
    // back while the test runs): three attempts in all, whichever node takes them.
    let slow = walleti::config::Quota {
        requests: 3,
        period: Duration::from_secs(3600),
        burst: 3,
    };
    let mut first = redis_settings(&database_url, &redis, &stream);
    first.limits.login_quota = slow;
    let mut second = redis_settings(&database_url, &redis, &stream);
    second.limits.login_quota = slow;
    let (app, other) = (spawn_app_with(first).await, spawn_app_with(second).await);
    wait_until("both nodes reach Redis", async || {
        app.state().rate_limiter.redis_connected() && other.state().rate_limiter.redis_connected()
    })
    .await;
    let login = format!("nobody-{}@example.com", uuid::Uuid::now_v7().simple());
    let body = json!({"login": login, "password": "wrong password!"});
    for node in [&app, &other, &app] {
        let attempt = node.post("/v1/sessions", None, None, &body).await;
        assert_eq!(attempt.status, StatusCode::UNAUTHORIZED, "{}", attempt.text);
    }
    let limited = other.post("/v1/sessions", None, None, &body).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.text
    );
    assert!(limited.headers.get("retry-after").is_some());
    delete_keys(&client, vec![stream.clone()]).await;
}

#[tokio::test]
#[ignore = "needs Redis: WALLETI_TEST_REDIS_URL=redis://… cargo test -- --ignored (.ci/run does)"]
async fn a_consumer_killed_before_xack_gets_its_event_redelivered_and_the_user_one_email() {
    let Some(redis) = redis_url() else { return };
    let (port, mails, _) = smtp_server().await;
    let stream = unique_stream();
    let database_url = fresh_database(Backend::Sqlite).await;
    let with_smtp = |mut settings: Settings| {
        settings.smtp = Some(SmtpSettings {
            url: format!("smtp://127.0.0.1:{port}"),
            from: "walleti <no-reply@walleti.test>".into(),
        });
        settings
    };
    let first = with_smtp(redis_settings(&database_url, &redis, &stream));
    let app = spawn_app_with(first.clone()).await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    app.fund(&ada, 1000).await;
    wait_until("the outbox is drained", async || {
        unpublished(&database_url).await == 0
    })
    .await;
    let client = redis_client(&redis).await;
    // Every event so far was read and acknowledged by the notifier's group (pending alone
    // would not say whether the consumer has read everything yet).
    wait_until("earlier events are acknowledged", async || {
        let length: i64 = client.xlen(stream.as_str()).await.unwrap_or(-1);
        pending(&client, &stream, "notifier").await == 0
            && delivered(&app, "notifier").await == length
    })
    .await;

    // The notifier's consumer handles the transfer's event (emails go out), then dies.
    first
        .fault_consumer_dies_before_ack
        .store(true, Ordering::SeqCst);
    let sent = app
        .transfer(&ada, &bob.email, json!(300), "redis-kill")
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
    let emails_to_bob = || {
        mails
            .lock()
            .expect("lock")
            .iter()
            .filter(|mail| mail.to.contains(&bob.email) && mail.data.contains("Money received"))
            .count()
    };
    wait_until("bob's email went out", async || emails_to_bob() == 1).await;
    wait_until("the consumer died holding the message", async || {
        !first.fault_consumer_dies_before_ack.load(Ordering::SeqCst)
            && pending(&client, &stream, "notifier").await == 1
    })
    .await;

    // Another node's consumer takes the idle message over and handles it again.
    let second = spawn_app_with(with_smtp(redis_settings(&database_url, &redis, &stream))).await;
    wait_until("the message is redelivered and acknowledged", async || {
        pending(&client, &stream, "notifier").await == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(emails_to_bob(), 1, "the redelivery sent no second email");
    let kinds = notification_kinds(&second, &bob.token).await;
    assert_eq!(
        kinds
            .iter()
            .filter(|kind| *kind == "transfer.completed")
            .count(),
        1
    );
    delete_keys(&client, vec![stream.clone()]).await;
}

/// A TCP proxy in front of Redis that the test can take down (closing every connection and
/// refusing new ones) and bring back.
async fn redis_proxy(redis: &str) -> (String, Arc<AtomicBool>) {
    let target = redis
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("addr");
    let up = Arc::new(AtomicBool::new(true));
    let open: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
    let (accepting, watched) = (Arc::clone(&up), Arc::clone(&open));
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            if !accepting.load(Ordering::SeqCst) {
                continue;
            }
            let target = target.clone();
            let task = tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
            watched.lock().expect("lock").push(task);
        }
    });
    let (switch, connections) = (Arc::clone(&up), open);
    tokio::spawn(async move {
        // Down: cut every open connection as soon as the switch flips.
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if !switch.load(Ordering::SeqCst) {
                for task in connections.lock().expect("lock").drain(..) {
                    task.abort();
                }
            }
        }
    });
    (format!("redis://{address}"), up)
}

#[tokio::test]
#[ignore = "needs Redis: WALLETI_TEST_REDIS_URL=redis://… cargo test -- --ignored (.ci/run does)"]
async fn with_redis_down_transfers_work_and_events_wait_in_the_outbox_until_it_returns() {
    let Some(redis) = redis_url() else { return };
    let (proxied, up) = redis_proxy(&redis).await;
    let stream = unique_stream();
    let database_url = fresh_database(Backend::Sqlite).await;
    let app = spawn_app_with(redis_settings(&database_url, &proxied, &stream)).await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    app.fund(&ada, 1000).await;
    wait_until("the outbox is drained", async || {
        unpublished(&database_url).await == 0
    })
    .await;

    up.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for round in 0..3 {
        let sent = app
            .transfer(&ada, &bob.email, json!(100), &format!("down-{round}"))
            .await;
        assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
        assert_eq!(sent.body["status"], "completed");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        unpublished(&database_url).await >= 3,
        "events wait in the outbox"
    );
    assert!(
        !notification_kinds(&app, &bob.token)
            .await
            .contains(&"transfer.completed".to_owned())
    );
    let ready = app
        .client
        .get(format!("{}/ready", app.address))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    up.store(true, Ordering::SeqCst);
    wait_until("the events are published once Redis is back", async || {
        unpublished(&database_url).await == 0
    })
    .await;
    wait_until("bob hears of all three transfers", async || {
        notification_kinds(&app, &bob.token)
            .await
            .iter()
            .filter(|kind| *kind == "transfer.completed")
            .count()
            == 3
    })
    .await;
    let client = redis_client(&redis).await;
    delete_keys(&client, vec![stream.clone()]).await;
}

#[tokio::test]
#[ignore = "needs Redis: WALLETI_TEST_REDIS_URL=redis://… cargo test -- --ignored (.ci/run does)"]
async fn a_poison_event_is_dead_lettered_after_the_bound_and_blocks_nothing() {
    let Some(redis) = redis_url() else { return };
    let stream = unique_stream();
    let database_url = fresh_database(Backend::Sqlite).await;
    let app = spawn_app_with(redis_settings(&database_url, &redis, &stream)).await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    app.fund(&ada, 1000).await;
    // An event the notifier cannot read.
    let database = Database::connect(database_url.as_str())
        .await
        .expect("connect");
    let poison_id = uuid::Uuid::now_v7().to_string();
    outbox::Entity::insert(outbox::ActiveModel {
        id: sea_orm::ActiveValue::Set(poison_id.clone()),
        event_type: sea_orm::ActiveValue::Set("transfer.completed".into()),
        aggregate_type: sea_orm::ActiveValue::Set("transfer".into()),
        aggregate_id: sea_orm::ActiveValue::Set("poison".into()),
        payload: sea_orm::ActiveValue::Set("{not json".into()),
        created_at: sea_orm::ActiveValue::Set(chrono::Utc::now()),
        published_at: sea_orm::ActiveValue::Set(None),
        attempts: sea_orm::ActiveValue::Set(0),
        last_error: sea_orm::ActiveValue::Set(None),
        dead_lettered_at: sea_orm::ActiveValue::Set(None),
        ..Default::default()
    })
    .exec(&database)
    .await
    .expect("poison");
    let sent = app
        .transfer(&ada, &bob.email, json!(300), "after-poison")
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
    wait_until("the transfer behind the poison is delivered", async || {
        notification_kinds(&app, &bob.token)
            .await
            .contains(&"transfer.completed".to_owned())
    })
    .await;
    let client = redis_client(&redis).await;
    let dead_stream = format!("{stream}:dead");
    wait_until("the poison lands in the dead-letter stream", async || {
        client
            .xlen::<i64, _>(dead_stream.as_str())
            .await
            .unwrap_or(0)
            == 1
    })
    .await;
    let dead: RedisValue = client
        .xrange(dead_stream.as_str(), "-", "+", None)
        .await
        .expect("xrange");
    let text = format!("{dead:?}");
    assert!(
        text.contains(&poison_id) && text.contains("notifier"),
        "{text}"
    );
    assert!(text.contains("too many deliveries"), "{text}");
    wait_until("nothing is left pending", async || {
        pending(&client, &stream, "notifier").await == 0
    })
    .await;
    delete_keys(&client, vec![stream.clone(), dead_stream]).await;
}

#[tokio::test]
#[ignore = "needs Redis: WALLETI_TEST_REDIS_URL=redis://… cargo test -- --ignored (.ci/run does)"]
async fn a_session_revoked_on_one_node_is_refused_on_the_other_at_once() {
    let Some(redis) = redis_url() else {
        eprintln!("skipped: WALLETI_TEST_REDIS_URL is not set");
        return;
    };
    let database_url = fresh_database(Backend::Sqlite).await;
    let stream = unique_stream();
    let app = spawn_app_with(redis_settings(&database_url, &redis, &stream)).await;
    let other = spawn_app_with(redis_settings(&database_url, &redis, &stream)).await;
    let listening = |node: &TestApp| {
        node.state()
            .revocations
            .as_ref()
            .is_some_and(|revocations| revocations.listening())
    };
    wait_until("both nodes listen for revocations", async || {
        listening(&app) && listening(&other)
    })
    .await;
    let ada = app.user("ada").await;
    // The other node caches the session on first use.
    for _ in 0..2 {
        assert_eq!(other.get("/v1/me", &ada.token).await.status, StatusCode::OK);
    }
    let logout = app
        .request(
            reqwest::Method::DELETE,
            "/v1/sessions/current",
            Some(&ada.token),
            None,
            None,
        )
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT, "{}", logout.text);
    // Pub/sub is asynchronous: well within a second, far inside the 30 s cache age bound.
    wait_until("the other node refuses the revoked session", async || {
        other.get("/v1/me", &ada.token).await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    let client = redis_client(&redis).await;
    delete_keys(&client, vec![stream.clone()]).await;
}

#[tokio::test]
#[ignore = "needs Redis: WALLETI_TEST_REDIS_URL=redis://… cargo test -- --ignored (.ci/run does)"]
async fn log_out_everywhere_and_a_password_change_reach_the_other_node() {
    let Some(redis) = redis_url() else {
        eprintln!("skipped: WALLETI_TEST_REDIS_URL is not set");
        return;
    };
    let database_url = fresh_database(Backend::Sqlite).await;
    let stream = unique_stream();
    let app = spawn_app_with(redis_settings(&database_url, &redis, &stream)).await;
    let other = spawn_app_with(redis_settings(&database_url, &redis, &stream)).await;
    let listening = |node: &TestApp| {
        node.state()
            .revocations
            .as_ref()
            .is_some_and(|revocations| revocations.listening())
    };
    wait_until("both nodes listen for revocations", async || {
        listening(&app) && listening(&other)
    })
    .await;
    let ada = app.user("ada").await;
    let log_in = async || {
        let session = app
            .post(
                "/v1/sessions",
                None,
                None,
                &json!({"login": ada.email, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(session.status, StatusCode::CREATED, "{}", session.text);
        session.body["token"].as_str().expect("token").to_owned()
    };
    let warm = async |token: &str| {
        for _ in 0..2 {
            assert_eq!(other.get("/v1/me", token).await.status, StatusCode::OK);
        }
    };

    // A password change on one node: the other node refuses the other session.
    let stolen = log_in().await;
    warm(&stolen).await;
    warm(&ada.token).await;
    let changed = app
        .post(
            "/v1/me/password",
            Some(&ada.token),
            None,
            &json!({"current_password": "correct horse battery", "new_password": "a new passphrase"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text);
    wait_until("the other node refuses the other session", async || {
        other.get("/v1/me", &stolen).await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_eq!(other.get("/v1/me", &ada.token).await.status, StatusCode::OK);

    // Log out everywhere on one node: the other node refuses every session.
    let everywhere = app
        .request(
            reqwest::Method::DELETE,
            "/v1/sessions",
            Some(&ada.token),
            None,
            None,
        )
        .await;
    assert_eq!(
        everywhere.status,
        StatusCode::NO_CONTENT,
        "{}",
        everywhere.text
    );
    wait_until("the other node refuses every session", async || {
        other.get("/v1/me", &ada.token).await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    let client = redis_client(&redis).await;
    delete_keys(&client, vec![stream.clone()]).await;
}

#[tokio::test]
#[ignore = "needs Redis: WALLETI_TEST_REDIS_URL=redis://… cargo test -- --ignored (.ci/run does)"]
async fn a_forged_stream_entry_is_never_delivered_the_event_comes_from_the_database() {
    let Some(redis) = redis_url() else { return };
    let stream = unique_stream();
    let database_url = fresh_database(Backend::Sqlite).await;
    let app = spawn_app_with(redis_settings(&database_url, &redis, &stream)).await;
    let ada = app.user("ada").await;
    let client = redis_client(&redis).await;
    // Whoever can write to Redis adds an event walleti never wrote, payload and all.
    let forged_id = uuid::Uuid::now_v7().to_string();
    let forged_payload = json!({"id": forged_id, "type": "transfer.completed",
        "data": {"from_user": ada.id, "to_user": ada.id, "amount": 1_000_000, "currency": "usd"}})
    .to_string();
    let _: RedisValue = client
        .xadd(
            stream.as_str(),
            false,
            None,
            "*",
            vec![
                ("id", forged_id.clone()),
                ("type", "transfer.completed".to_owned()),
                ("aggregate_type", "transfer".to_owned()),
                ("aggregate_id", forged_id.clone()),
                ("payload", forged_payload),
                ("created_at", chrono::Utc::now().to_rfc3339()),
            ],
        )
        .await
        .expect("xadd");
    let dead_stream = format!("{stream}:dead");
    wait_until("both groups dead-letter the forged entry", async || {
        client
            .xlen::<i64, _>(dead_stream.as_str())
            .await
            .unwrap_or(0)
            == 2
    })
    .await;
    let dead: RedisValue = client
        .xrange(dead_stream.as_str(), "-", "+", None)
        .await
        .expect("xrange");
    let text = format!("{dead:?}");
    assert!(
        text.contains("no such outbox event") && text.contains(&forged_id),
        "{text}"
    );
    assert!(
        !notification_kinds(&app, &ada.token)
            .await
            .contains(&"transfer.completed".to_owned())
    );
    delete_keys(&client, vec![stream.clone(), dead_stream]).await;
}

/// Kills the password-protected Redis the test started, whatever happens to the test.
struct RedisProcess(std::process::Child);

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
#[ignore = "needs Redis: WALLETI_TEST_REDIS_URL=redis://… cargo test -- --ignored (.ci/run does)"]
async fn walleti_authenticates_to_a_redis_with_a_password() {
    // CI has Redis installed when it sets the variable; a private server is started here.
    if redis_url().is_none() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let password = "test-redis-password-0123456789";
    let _redis = RedisProcess(
        std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--requirepass",
                password,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server"),
    );
    let ready = |url: String| async move {
        let mut settings = test_settings(&fresh_database(Backend::Sqlite).await);
        settings.redis_url = Some(url);
        let app = spawn_app_with(settings).await;
        let mut status = StatusCode::SERVICE_UNAVAILABLE;
        for _ in 0..100 {
            status = app
                .request(reqwest::Method::GET, "/ready", None, None, None)
                .await
                .status;
            if status == StatusCode::OK {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        status
    };
    assert_eq!(
        ready(format!("redis://:{password}@127.0.0.1:{port}")).await,
        StatusCode::OK
    );
    assert_eq!(
        ready(format!("redis://:wrong-password@127.0.0.1:{port}")).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

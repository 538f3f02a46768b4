use crate::helpers::{
    BANK_SECRET, TestApp, TestUser, backends, spawn_app, spawn_app_with, test_settings,
};
use futures_util::future::join_all;
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use std::time::Duration;
use walleti::domain::signature;
use walleti::store::entities::{accounts, outbox, webhook_inbox};

async fn create_onramp(app: &TestApp, user: &TestUser, amount: i64, key: &str) -> Value {
    let reply = app
        .post(
            "/v1/onramps",
            Some(&user.token),
            Some(key),
            &json!({"provider": "bank", "amount": amount, "currency": "usd"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.body
}

/// The simulator's payment id, from the on-ramp's redirect URL.
fn payment_path(onramp: &Value) -> String {
    let url = onramp["redirect_url"].as_str().expect("redirect_url");
    let id = url.rsplit('/').next().expect("payment id");
    format!("/bank-sim/api/payments/{id}")
}

async fn wait_for_onramp(app: &TestApp, user: &TestUser, id: &str, status: &str) -> Value {
    for _ in 0..250 {
        let reply = app.get(&format!("/v1/onramps/{id}"), &user.token).await;
        if reply.body["status"] == status {
            return reply.body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("on-ramp {id} never became {status}");
}

async fn send_bank_event(
    app: &TestApp,
    event: &Value,
    secret: &str,
    at: i64,
) -> reqwest::StatusCode {
    let body = event.to_string();
    app.client
        .post(format!("{}/webhooks/bank", app.address))
        .header(
            "Walleti-Signature",
            signature::sign(secret, at, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .expect("send")
        .status()
}

fn bank_event(kind: &str, reference: &str, amount: i64) -> Value {
    json!({"id": format!("evt_{}", uuid::Uuid::now_v7().simple()), "type": kind, "created": 0,
           "data": {"reference": reference, "amount": amount, "currency": "usd"}})
}

async fn clearing_balance(app: &TestApp) -> i64 {
    let database = Database::connect(app.database_url.as_str())
        .await
        .expect("connect");
    accounts::Entity::find()
        .filter(accounts::Column::OwnerId.eq("bank_clearing"))
        .filter(accounts::Column::Currency.eq("usd"))
        .one(&database)
        .await
        .expect("query")
        .expect("bank_clearing")
        .available
}

#[tokio::test]
async fn a_bank_top_up_credits_the_wallet_once_from_bank_clearing() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let ada = app.user("ada").await;
        let onramp = create_onramp(&app, &ada, 5_000, "top-up-1").await;
        assert_eq!(onramp["object"], "onramp");
        assert_eq!(onramp["status"], "processing");
        let id = onramp["id"].as_str().expect("id").to_owned();

        // The approval page a person would see.
        let page = app
            .client
            .get(onramp["redirect_url"].as_str().expect("url"))
            .send()
            .await
            .expect("page");
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.text().await.expect("html").contains("Approve"));

        // Every webhook is delivered three times over (same event id).
        let faults = app
            .client
            .post(format!("{}/bank-sim/api/faults", app.address))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .json(&json!({"duplicate": 2}))
            .send()
            .await
            .expect("faults");
        assert_eq!(faults.status(), StatusCode::OK);
        let approved = app
            .client
            .post(format!("{}{}/approve", app.address, payment_path(&onramp)))
            .send()
            .await
            .expect("approve");
        assert_eq!(approved.status(), StatusCode::OK);

        let done = wait_for_onramp(&app, &ada, &id, "succeeded").await;
        assert_eq!(done["amount"], 5_000);
        tokio::time::sleep(Duration::from_millis(300)).await; // let the duplicates arrive
        assert_eq!(app.balance(&ada).await, (5_000, 0));
        assert_eq!(
            clearing_balance(&app).await,
            -5_000,
            "Σ wallets = −Σ clearing"
        );
        let entries = app.all_entries(&ada).await;
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["kind"], "onramp_credit");
        assert_eq!(entries[0]["reference"]["id"], id.as_str());

        let database = Database::connect(app.database_url.as_str())
            .await
            .expect("connect");
        let inbox = webhook_inbox::Entity::find()
            .all(&database)
            .await
            .expect("inbox");
        assert_eq!(inbox.len(), 1, "duplicates are stored once");
        assert_eq!(inbox[0].outcome.as_deref(), Some("credited"));
        let events: Vec<String> = outbox::Entity::find()
            .all(&database)
            .await
            .expect("outbox")
            .into_iter()
            .map(|e| e.event_type)
            .filter(|kind| kind != "session.created")
            .collect();
        assert_eq!(events, ["onramp.succeeded"]);

        let settlements = app
            .client
            .get(format!("{}/bank-sim/api/settlements", app.address))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .send()
            .await
            .expect("get");
        let settlements: Value = settlements.json().await.expect("json");
        assert_eq!(settlements["data"][0]["reference"], id.as_str());

        // Replaying the idempotent create returns the same on-ramp.
        let again = create_onramp(&app, &ada, 5_000, "top-up-1").await;
        assert_eq!(again["id"], id.as_str());
    }
}

#[tokio::test]
async fn a_declined_top_up_fails_and_credits_nothing() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let ada = app.user("ada").await;
    let onramp = create_onramp(&app, &ada, 700, "declined").await;
    let id = onramp["id"].as_str().expect("id");
    let declined = app
        .client
        .post(format!("{}{}/decline", app.address, payment_path(&onramp)))
        .send()
        .await
        .expect("decline");
    assert_eq!(declined.status(), StatusCode::OK);
    let failed = wait_for_onramp(&app, &ada, id, "failed").await;
    assert_eq!(failed["failure_code"], "bank_declined");
    assert_eq!(app.balance(&ada).await, (0, 0));
    let database = Database::connect(app.database_url.as_str())
        .await
        .expect("connect");
    let events: Vec<String> = outbox::Entity::find()
        .all(&database)
        .await
        .expect("outbox")
        .into_iter()
        .map(|e| e.event_type)
        .filter(|kind| kind != "session.created")
        .collect();
    assert_eq!(events, ["onramp.failed"], "written with the state change");
    // A late "succeeded" for the failed on-ramp changes nothing.
    assert_eq!(
        send_bank_event(
            &app,
            &bank_event("payment.succeeded", id, 700),
            BANK_SECRET,
            chrono::Utc::now().timestamp()
        )
        .await,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        wait_for_onramp(&app, &ada, id, "failed").await["status"],
        "failed"
    );
    assert_eq!(app.balance(&ada).await, (0, 0));
}

#[tokio::test]
async fn out_of_order_and_concurrent_duplicate_events_credit_exactly_once() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let ada = app.user("ada").await;
        let onramp = create_onramp(&app, &ada, 1_200, "ooo").await;
        let id = onramp["id"].as_str().expect("id");
        let now = chrono::Utc::now().timestamp();
        let succeeded = bank_event("payment.succeeded", id, 1_200);
        let statuses =
            join_all((0..8).map(|_| send_bank_event(&app, &succeeded, BANK_SECRET, now))).await;
        assert!(statuses.iter().all(|status| *status == StatusCode::OK));
        // A different succeeded event for the same on-ramp, then a failure after the success.
        assert_eq!(
            send_bank_event(
                &app,
                &bank_event("payment.succeeded", id, 1_200),
                BANK_SECRET,
                now
            )
            .await,
            StatusCode::OK
        );
        assert_eq!(
            send_bank_event(
                &app,
                &bank_event("payment.failed", id, 1_200),
                BANK_SECRET,
                now
            )
            .await,
            StatusCode::OK
        );
        wait_for_onramp(&app, &ada, id, "succeeded").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            wait_for_onramp(&app, &ada, id, "succeeded").await["status"],
            "succeeded"
        );
        assert_eq!(app.balance(&ada).await, (1_200, 0));
        assert_eq!(app.all_entries(&ada).await.len(), 1);
    }
}

#[tokio::test]
async fn forged_stale_or_tampered_webhooks_are_refused_and_store_nothing() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let ada = app.user("ada").await;
    let onramp = create_onramp(&app, &ada, 900, "forged").await;
    let id = onramp["id"].as_str().expect("id");
    let event = bank_event("payment.succeeded", id, 900);
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        send_bank_event(&app, &event, "wrong-secret", now).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send_bank_event(&app, &event, BANK_SECRET, now - 301).await,
        StatusCode::BAD_REQUEST
    );
    let body = event.to_string();
    let tampered = body.replace("900", "90000");
    let sent = app
        .client
        .post(format!("{}/webhooks/bank", app.address))
        .header(
            "Walleti-Signature",
            signature::sign(BANK_SECRET, now, body.as_bytes()),
        )
        .body(tampered)
        .send()
        .await
        .expect("send");
    assert_eq!(sent.status(), StatusCode::BAD_REQUEST);
    let missing = app
        .client
        .post(format!("{}/webhooks/bank", app.address))
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let forged = app
        .client
        .post(format!("{}/webhooks/bank", app.address))
        .header(
            "Walleti-Signature",
            format!("t={now},v1={}", "ab".repeat(32)),
        )
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);

    let database = Database::connect(app.database_url.as_str())
        .await
        .expect("connect");
    assert!(
        webhook_inbox::Entity::find()
            .all(&database)
            .await
            .expect("inbox")
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.balance(&ada).await, (0, 0));
    assert_eq!(
        app.get(&format!("/v1/onramps/{id}"), &ada.token).await.body["status"],
        "processing"
    );
}

#[tokio::test]
async fn a_mismatched_amount_is_recorded_and_not_credited_and_onramps_are_private() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let (ada, eve) = (app.user("ada").await, app.user("eve").await);
    let onramp = create_onramp(&app, &ada, 1_000, "mismatch").await;
    let id = onramp["id"].as_str().expect("id");
    let event = bank_event("payment.succeeded", id, 999_999);
    assert_eq!(
        send_bank_event(&app, &event, BANK_SECRET, chrono::Utc::now().timestamp()).await,
        StatusCode::OK
    );
    let database = Database::connect(app.database_url.as_str())
        .await
        .expect("connect");
    let mut outcome = None;
    for _ in 0..100 {
        let rows = webhook_inbox::Entity::find()
            .all(&database)
            .await
            .expect("inbox");
        outcome = rows.first().and_then(|row| row.outcome.clone());
        if outcome.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(outcome.as_deref(), Some("amount_mismatch"));
    assert_eq!(app.balance(&ada).await, (0, 0));
    assert_eq!(
        app.get(&format!("/v1/onramps/{id}"), &ada.token).await.body["status"],
        "processing"
    );
    assert_eq!(
        app.get(&format!("/v1/onramps/{id}"), &eve.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/v1/onramps", &eve.token).await.body["data"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    assert_eq!(
        app.get("/v1/onramps", &ada.token).await.body["data"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let stripe = app
        .post(
            "/v1/onramps",
            Some(&ada.token),
            Some("s-1"),
            &json!({"provider": "stripe", "amount": 100, "currency": "usd"}),
        )
        .await;
    assert_eq!(stripe.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(stripe.code(), "provider_not_configured");
}

#[tokio::test]
async fn an_event_stored_before_a_crash_is_processed_after_restart() {
    for backend in backends() {
        let mut app = spawn_app(backend).await;
        let ada = app.user("ada").await;
        let onramp = create_onramp(&app, &ada, 2_500, "crash").await;
        let id = onramp["id"].as_str().expect("id").to_owned();
        app.stop().await;

        // Stored and acknowledged, then the process died before the ingestor ran.
        let database = Database::connect(app.database_url.as_str())
            .await
            .expect("connect");
        let event = bank_event("payment.succeeded", &id, 2_500);
        webhook_inbox::Entity::insert(webhook_inbox::ActiveModel {
            id: sea_orm::ActiveValue::Set(uuid::Uuid::now_v7().to_string()),
            provider: sea_orm::ActiveValue::Set("bank".into()),
            event_id: sea_orm::ActiveValue::Set(event["id"].as_str().expect("id").to_owned()),
            event_type: sea_orm::ActiveValue::Set("payment.succeeded".into()),
            payload: sea_orm::ActiveValue::Set(event.to_string()),
            received_at: sea_orm::ActiveValue::Set(chrono::Utc::now()),
            processed_at: sea_orm::ActiveValue::Set(None),
            outcome: sea_orm::ActiveValue::Set(None),
            detail: sea_orm::ActiveValue::Set(None),
            attempts: sea_orm::ActiveValue::Set(0),
        })
        .exec(&database)
        .await
        .expect("seed inbox");

        let app = spawn_app_with(test_settings(&app.database_url)).await;
        wait_for_onramp(&app, &ada, &id, "succeeded").await;
        assert_eq!(app.balance(&ada).await, (2_500, 0));
    }
}

#[tokio::test]
async fn lost_bank_webhooks_are_made_good_by_asking_the_bank() {
    let mut settings =
        test_settings(&crate::helpers::fresh_database(crate::helpers::Backend::Sqlite).await);
    settings.limits.bank_poll_after = Duration::ZERO;
    settings.limits.bank_poll_interval = Duration::from_millis(100);
    settings.limits.hold_keeper_interval = Duration::from_millis(100);
    let app = spawn_app_with(settings).await;
    let ada = app.user("ada").await;
    // The bank's webhooks are delayed far beyond the test: as good as lost.
    let faults = app
        .client
        .post(format!("{}/bank-sim/api/faults", app.address))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .json(&json!({"delay_ms": 600_000}))
        .send()
        .await
        .expect("faults");
    assert_eq!(faults.status(), StatusCode::OK);

    let onramp = create_onramp(&app, &ada, 4_000, "lost-webhook").await;
    let id = onramp["id"].as_str().expect("id");
    let approved = app
        .client
        .post(format!("{}{}/approve", app.address, payment_path(&onramp)))
        .send()
        .await
        .expect("approve");
    assert_eq!(approved.status(), StatusCode::OK);
    wait_for_onramp(&app, &ada, id, "succeeded").await;
    assert_eq!(app.balance(&ada).await, (4_000, 0));

    // A payout the bank paid, whose webhook is lost too.
    let payout = app
        .post(
            "/v1/payouts",
            Some(&ada.token),
            Some("lost-payout"),
            &json!({"amount": 1_500, "currency": "usd"}),
        )
        .await;
    assert_eq!(payout.status, StatusCode::CREATED, "{}", payout.text);
    let payout_id = payout.body["id"].as_str().expect("id");
    let mut status = Value::Null;
    for _ in 0..250 {
        status = app
            .get(&format!("/v1/payouts/{payout_id}"), &ada.token)
            .await
            .body["status"]
            .clone();
        if status == "paid" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, "paid");
    assert_eq!(app.balance(&ada).await, (2_500, 0));
}

//! Issue 12's low list: named operators on adjustments, payment links by a 128-bit token,
//! push tokens that move to their new user without handing over the old record, and merchant
//! API keys scoped to payments.

use crate::helpers::{
    ADMIN_TOKEN, Backend, backends, fresh_database, spawn_app_with, test_settings,
};
use reqwest::StatusCode;
use serde_json::json;
use walleti::config::Operator;

const ALICE_TOKEN: &str = "alice-operator-token-0123456789";

fn key() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[tokio::test]
async fn adjustments_record_which_operator_made_them() {
    for backend in backends() {
        let mut settings = test_settings(&fresh_database(backend).await);
        settings.operators = vec![Operator {
            name: "alice".into(),
            token: ALICE_TOKEN.into(),
        }];
        let app = spawn_app_with(settings).await;
        let ada = app.user("ada").await;
        let adjust = |token: &'static str| {
            let app = &app;
            let ada_id = ada.id.clone();
            async move {
                app.post(
                    "/v1/admin/adjustments",
                    Some(token),
                    Some(&key()),
                    &json!({"user_id": ada_id, "amount": 500, "currency": "usd", "reason": "goodwill"}),
                )
                .await
            }
        };
        let by_alice = adjust(ALICE_TOKEN).await;
        assert_eq!(by_alice.status, StatusCode::CREATED, "{}", by_alice.text);
        assert_eq!(by_alice.body["operator"], "alice");
        let by_admin = adjust(ADMIN_TOKEN).await;
        assert_eq!(by_admin.status, StatusCode::CREATED, "{}", by_admin.text);
        assert_eq!(by_admin.body["operator"], "admin");
        let stranger = adjust("not-an-operator-token-0123456789").await;
        assert_eq!(stranger.status, StatusCode::UNAUTHORIZED);

        // The audit trail reads back who did what, for any operator.
        let id = by_alice.body["id"].as_str().expect("id");
        let read = app
            .get(&format!("/v1/admin/adjustments/{id}"), ADMIN_TOKEN)
            .await;
        assert_eq!(read.body["operator"], "alice", "{}", read.text);
        assert_eq!(read.body["reason"], "goodwill");
        let listed = app.get("/v1/admin/adjustments", ALICE_TOKEN).await;
        assert_eq!(listed.status, StatusCode::OK);
        assert_eq!(app.balance(&ada).await.0, 1000);

        // Operators' idempotency keys are their own.
        let shared = key();
        let body = json!({"user_id": ada.id, "amount": 1, "currency": "usd", "reason": "same key"});
        let first = app
            .post(
                "/v1/admin/adjustments",
                Some(ALICE_TOKEN),
                Some(&shared),
                &body,
            )
            .await;
        let second = app
            .post(
                "/v1/admin/adjustments",
                Some(ADMIN_TOKEN),
                Some(&shared),
                &body,
            )
            .await;
        assert_eq!(first.body["operator"], "alice");
        assert_eq!(second.body["operator"], "admin");
        assert_ne!(first.body["id"], second.body["id"]);
    }
}

#[tokio::test]
async fn payment_links_open_by_an_unguessable_token_only() {
    let app = spawn_app_with(test_settings(&fresh_database(Backend::Sqlite).await)).await;
    let shop = app.merchant("shop").await;
    let intent = app.intent(&shop, 1_250, false).await;
    let link = intent["payment_link"].as_str().expect("payment_link");
    let token = link.strip_prefix("/pay/").expect("a /pay/ path");
    assert_eq!(token.len(), 32, "128 bits in hex: {token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let id = intent["id"].as_str().expect("id");
    assert!(
        !token.contains(&id.replace('-', "")[..12]),
        "not derived from the id"
    );
    let other = app.intent(&shop, 1_250, false).await;
    assert_ne!(other["payment_link"], intent["payment_link"]);

    let page = app
        .client
        .get(format!("{}{link}", app.address))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("html").contains("12.50"));
    // The intent's id no longer opens its payment page.
    let by_id = app
        .client
        .get(format!("{}/pay/{id}", app.address))
        .send()
        .await
        .expect("page");
    assert_eq!(by_id.status(), StatusCode::NOT_FOUND);
    // The API gives the link back on read, too.
    let read = app
        .get(&format!("/v1/payment_intents/{id}"), &shop.key)
        .await;
    assert_eq!(read.body["payment_link"], link);
}

#[tokio::test]
async fn a_push_token_registered_by_another_user_moves_without_its_old_record() {
    for backend in backends() {
        let app = spawn_app_with(test_settings(&fresh_database(backend).await)).await;
        let (ada, eve) = (app.user("ada").await, app.user("eve").await);
        let register = |token: &str, user: &str| {
            let body = json!({"token": token, "platform": "android"});
            let user = user.to_owned();
            let app = &app;
            async move { app.post("/v1/devices", Some(&user), None, &body).await }
        };
        let ada_device = register("fcm-token-1", &ada.token).await;
        assert_eq!(
            ada_device.status,
            StatusCode::CREATED,
            "{}",
            ada_device.text
        );
        let ada_id = ada_device.body["id"].as_str().expect("id").to_owned();
        // Ada registering again keeps her record.
        let again = register("fcm-token-1", &ada.token).await;
        assert_eq!(again.body["id"], ada_id.as_str());

        // Eve registers the same token (the phone changed hands): a new record, Ada's is gone.
        let eve_device = register("fcm-token-1", &eve.token).await;
        assert_eq!(
            eve_device.status,
            StatusCode::CREATED,
            "{}",
            eve_device.text
        );
        assert_ne!(
            eve_device.body["id"],
            ada_id.as_str(),
            "Ada's record is not handed over"
        );
        let ada_devices = app.get("/v1/devices", &ada.token).await;
        assert_eq!(ada_devices.body["data"].as_array().map(Vec::len), Some(0));
        assert_eq!(
            app.get(&format!("/v1/devices/{ada_id}"), &ada.token)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            app.get(&format!("/v1/devices/{ada_id}"), &eve.token)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        let eve_devices = app.get("/v1/devices", &eve.token).await;
        assert_eq!(eve_devices.body["data"][0]["token"], "fcm-token-1");
        // The notifier pushes to the token for Eve only.
        let store = &app.state().store;
        let ada_user = ada.id.parse().expect("user id");
        let eve_user = eve.id.parse().expect("user id");
        assert!(
            store
                .device_tokens(ada_user)
                .await
                .expect("tokens")
                .is_empty()
        );
        assert_eq!(
            store.device_tokens(eve_user).await.expect("tokens"),
            vec!["fcm-token-1".to_owned()]
        );
    }
}

#[tokio::test]
async fn a_payments_key_can_take_payments_and_nothing_else() {
    for backend in backends() {
        let app = spawn_app_with(test_settings(&fresh_database(backend).await)).await;
        let shop = app.merchant("shop").await;
        let ada = app.user("ada").await;
        app.fund(&ada, 10_000).await;

        let bad = app
            .post(
                "/v1/merchants/api_keys",
                Some(&shop.token),
                None,
                &json!({"scope": "everything"}),
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(bad.body["error"]["param"], "scope");
        let listed = app.get("/v1/merchants/api_keys", &shop.token).await;
        assert_eq!(listed.body["data"][0]["scope"], "full", "the default");
        let created = app
            .post(
                "/v1/merchants/api_keys",
                Some(&shop.token),
                None,
                &json!({"name": "checkout", "scope": "payments"}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        assert_eq!(created.body["scope"], "payments");
        let payments_key = crate::merchants::TestMerchant {
            id: shop.id.clone(),
            token: shop.token.clone(),
            key: created.body["secret"].as_str().expect("secret").to_owned(),
        };

        // Payment intents: create, read, list, capture, cancel.
        let intent = app.intent(&payments_key, 2_000, true).await;
        let id = intent["id"].as_str().expect("id");
        assert_eq!(app.confirm(&ada, id).await.status, StatusCode::OK);
        let read = app
            .get(&format!("/v1/payment_intents/{id}"), &payments_key.key)
            .await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.text);
        let list = app.get("/v1/payment_intents", &payments_key.key).await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.text);
        let captured = app
            .intent_action(&payments_key, id, "capture", json!({}))
            .await;
        assert_eq!(captured.status, StatusCode::OK, "{}", captured.text);
        let other = app.intent(&payments_key, 500, false).await;
        let canceled = app
            .intent_action(
                &payments_key,
                other["id"].as_str().expect("id"),
                "cancel",
                json!({}),
            )
            .await;
        assert_eq!(canceled.status, StatusCode::OK, "{}", canceled.text);

        // Nothing else: refunds, payouts, webhook endpoints, balances, keys.
        let refused = [
            app.refund(&payments_key, id, Some(100)).await,
            app.post(
                "/v1/payouts",
                Some(&payments_key.key),
                Some(&key()),
                &json!({"amount": 100, "currency": "usd"}),
            )
            .await,
            app.post(
                "/v1/webhook_endpoints",
                Some(&payments_key.key),
                None,
                &json!({"url": "https://example.com/hook", "events": ["payment_intent.succeeded"]}),
            )
            .await,
            app.get("/v1/webhook_endpoints", &payments_key.key).await,
            app.get("/v1/wallet", &payments_key.key).await,
            app.get("/v1/refunds", &payments_key.key).await,
            app.get("/v1/payouts", &payments_key.key).await,
        ];
        for reply in &refused {
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
            assert_eq!(reply.code(), "insufficient_scope", "{}", reply.text);
            assert_eq!(reply.body["error"]["type"], "permission_error");
        }
        let keys = app
            .post(
                "/v1/merchants/api_keys",
                Some(&payments_key.key),
                None,
                &json!({}),
            )
            .await;
        assert_eq!(keys.status, StatusCode::FORBIDDEN);
        assert_eq!(app.merchant_balance(&shop).await.0, 2_000, "no refund left");

        // The full key still does all of it.
        let refund = app.refund(&shop, id, Some(100)).await;
        assert_eq!(refund.status, StatusCode::CREATED, "{}", refund.text);
        assert_eq!(
            app.get("/v1/wallet", &shop.key).await.status,
            StatusCode::OK
        );
    }
}

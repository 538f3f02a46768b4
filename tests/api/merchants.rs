//! Merchants: accounts, API keys and roles; payment intents (automatic and manual), capture,
//! cancel, refunds and payouts through the HTTP API, with the money checked on both sides.

use crate::helpers::{TestApp, TestUser, backends, spawn_app};
use crate::reconciliation::reconcile;
use reqwest::StatusCode;
use serde_json::{Value, json};

pub struct TestMerchant {
    pub id: String,
    /// A merchant session token.
    pub token: String,
    /// A secret API key (`sk_…`).
    pub key: String,
}

fn key() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl TestApp {
    /// Signs up a merchant, logs in and creates an API key.
    pub async fn merchant(&self, label: &str) -> TestMerchant {
        let unique: u64 = rand::random();
        let email = format!("{label}-{unique:x}@shop.example.com");
        let password = "merchant password 1";
        let created = self
            .post(
                "/v1/merchants",
                None,
                None,
                &json!({"name": label, "email": email, "password": password}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let session = self
            .post(
                "/v1/merchants/sessions",
                None,
                None,
                &json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(session.status, StatusCode::CREATED, "{}", session.text);
        let token = session.body["token"].as_str().expect("token").to_owned();
        let api_key = self
            .post("/v1/merchants/api_keys", Some(&token), None, &json!({}))
            .await;
        assert_eq!(api_key.status, StatusCode::CREATED, "{}", api_key.text);
        TestMerchant {
            id: created.body["id"].as_str().expect("id").to_owned(),
            token,
            key: api_key.body["secret"].as_str().expect("secret").to_owned(),
        }
    }

    pub async fn intent(&self, merchant: &TestMerchant, amount: i64, manual: bool) -> Value {
        let method = if manual { "manual" } else { "automatic" };
        let reply = self
            .post(
                "/v1/payment_intents",
                Some(&merchant.key),
                Some(&key()),
                &json!({"amount": amount, "currency": "usd", "capture_method": method, "description": "order"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        assert_eq!(reply.body["status"], "requires_confirmation");
        reply.body
    }

    pub async fn confirm(&self, user: &TestUser, intent: &str) -> crate::helpers::Reply {
        self.post(
            &format!("/v1/payment_intents/{intent}/confirm"),
            Some(&user.token),
            Some(&key()),
            &json!({}),
        )
        .await
    }

    pub async fn intent_action(
        &self,
        merchant: &TestMerchant,
        intent: &str,
        action: &str,
        body: Value,
    ) -> crate::helpers::Reply {
        self.post(
            &format!("/v1/payment_intents/{intent}/{action}"),
            Some(&merchant.key),
            Some(&key()),
            &body,
        )
        .await
    }

    pub async fn refund(
        &self,
        merchant: &TestMerchant,
        intent: &str,
        amount: Option<i64>,
    ) -> crate::helpers::Reply {
        let mut body = json!({"payment_intent": intent});
        if let Some(amount) = amount {
            body["amount"] = json!(amount);
        }
        self.post("/v1/refunds", Some(&merchant.key), Some(&key()), &body)
            .await
    }

    /// (available, locked) of the merchant's usd account.
    pub async fn merchant_balance(&self, merchant: &TestMerchant) -> (i64, i64) {
        let wallet = self.get("/v1/wallet", &merchant.key).await;
        assert_eq!(wallet.status, StatusCode::OK, "{}", wallet.text);
        wallet.body["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .find(|account| account["currency"] == "usd")
            .map(|account| {
                (
                    account["available"].as_i64().expect("i64"),
                    account["locked"].as_i64().expect("i64"),
                )
            })
            .unwrap_or((0, 0))
    }
}

#[tokio::test]
async fn merchants_sign_up_get_keys_and_roles_are_enforced() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let shop = app.merchant("shop").await;
    let user = app.user("ada").await;

    // The key is shown once, long and random; listing shows it redacted.
    assert!(
        shop.key.starts_with("sk_") && shop.key.len() >= 3 + 32,
        "{}",
        shop.key
    );
    let keys = app.get("/v1/merchants/api_keys", &shop.token).await;
    assert_eq!(keys.status, StatusCode::OK, "{}", keys.text);
    let listed = &keys.body["data"][0];
    assert!(listed.get("secret").is_none(), "{listed}");
    assert!(!keys.text.contains(&shop.key));

    // A key and a session both authenticate the merchant, who has a wallet.
    for credential in [&shop.key, &shop.token] {
        let me = app.get("/v1/merchants/me", credential).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.text);
        assert_eq!(me.body["id"], shop.id.as_str());
        let wallet = app.get("/v1/wallet", credential).await;
        assert_eq!(wallet.status, StatusCode::OK, "{}", wallet.text);
        assert_eq!(wallet.body["accounts"][0]["currency"], "usd");
    }
    let used = app
        .get(
            &format!(
                "/v1/merchants/api_keys/{}",
                listed["id"].as_str().expect("id")
            ),
            &shop.token,
        )
        .await;
    assert!(used.body["last_used_at"].is_string(), "{}", used.text);

    // Roles: a user cannot act as a merchant and a merchant cannot act as a user.
    let as_user = app
        .post(
            "/v1/payment_intents",
            Some(&user.token),
            Some(&key()),
            &json!({"amount": 100, "currency": "usd"}),
        )
        .await;
    assert_eq!(as_user.status, StatusCode::FORBIDDEN, "{}", as_user.text);
    assert_eq!(as_user.body["error"]["type"], "permission_error");
    let as_merchant = app
        .post(
            "/v1/transfers",
            Some(&shop.key),
            Some(&key()),
            &json!({"to": user.id, "amount": 100, "currency": "usd"}),
        )
        .await;
    assert_eq!(
        as_merchant.status,
        StatusCode::FORBIDDEN,
        "{}",
        as_merchant.text
    );
    let me_as_merchant = app.get("/v1/me", &shop.token).await;
    assert_eq!(me_as_merchant.status, StatusCode::FORBIDDEN);

    // Keys cannot mint keys; a revoked key stops working at once.
    let minted = app
        .post("/v1/merchants/api_keys", Some(&shop.key), None, &json!({}))
        .await;
    assert_eq!(minted.status, StatusCode::FORBIDDEN, "{}", minted.text);
    let revoked = app
        .request(
            reqwest::Method::DELETE,
            &format!(
                "/v1/merchants/api_keys/{}",
                listed["id"].as_str().expect("id")
            ),
            Some(&shop.token),
            None,
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    assert!(revoked.body["revoked_at"].is_string());
    assert_eq!(
        app.get("/v1/merchants/me", &shop.key).await.status,
        StatusCode::UNAUTHORIZED
    );

    // The email is unique; wrong passwords are 401.
    let again = app
        .post(
            "/v1/merchants",
            None,
            None,
            &json!({"name": "x", "email": app.get("/v1/merchants/me", &shop.token).await.body["email"], "password": "another password"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    let wrong = app
        .post(
            "/v1/merchants/sessions",
            None,
            None,
            &json!({"email": "nobody@shop.example.com", "password": "whatever it is"}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn automatic_payments_and_partial_refunds_move_money_exactly() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let shop = app.merchant("shop").await;
        let other_shop = app.merchant("other").await;
        let ada = app.user("ada").await;
        let bob = app.user("bob").await;
        app.fund(&ada, 5000).await;

        let intent = app.intent(&shop, 1000, false).await;
        let id = intent["id"].as_str().expect("id");
        // Before anyone confirms it, only its merchant sees it.
        assert_eq!(
            app.get(&format!("/v1/payment_intents/{id}"), &ada.token)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        let paid = app.confirm(&ada, id).await;
        assert_eq!(paid.status, StatusCode::OK, "{}", paid.text);
        assert_eq!(paid.body["status"], "succeeded");
        assert_eq!(paid.body["amount_received"], 1000);
        assert_eq!(paid.body["customer"], ada.id.as_str());
        assert_eq!(app.balance(&ada).await, (4000, 0));
        assert_eq!(app.merchant_balance(&shop).await, (1000, 0));
        // Confirming again (another key) is a conflict; nothing moves.
        let twice = app.confirm(&ada, id).await;
        assert_eq!(twice.status, StatusCode::CONFLICT, "{}", twice.text);
        assert_eq!(twice.code(), "payment_intent_unexpected_state");

        // Who sees what: the payer and the merchant; not another user, not another merchant.
        assert_eq!(
            app.get(&format!("/v1/payment_intents/{id}"), &ada.token)
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            app.get(&format!("/v1/payment_intents/{id}"), &bob.token)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            app.get(&format!("/v1/payment_intents/{id}"), &other_shop.key)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        for action in ["capture", "cancel"] {
            let reply = app.intent_action(&other_shop, id, action, json!({})).await;
            assert_eq!(
                reply.status,
                StatusCode::NOT_FOUND,
                "{action}: {}",
                reply.text
            );
        }
        let stolen = app.refund(&other_shop, id, Some(1)).await;
        assert_eq!(stolen.status, StatusCode::NOT_FOUND, "{}", stolen.text);
        let bobs_list = app.get("/v1/payment_intents", &bob.token).await;
        assert_eq!(bobs_list.body["data"].as_array().map(Vec::len), Some(0));
        let adas_list = app.get("/v1/payment_intents", &ada.token).await;
        assert_eq!(adas_list.body["data"][0]["id"], id);

        // Partial refunds, never more than what was received.
        let first = app.refund(&shop, id, Some(300)).await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
        assert_eq!(first.body["status"], "succeeded");
        assert_eq!(first.body["user"], ada.id.as_str());
        let too_much = app.refund(&shop, id, Some(701)).await;
        assert_eq!(
            too_much.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            too_much.text
        );
        assert_eq!(too_much.code(), "refund_exceeds_captured");
        let rest = app.refund(&shop, id, None).await;
        assert_eq!(rest.status, StatusCode::CREATED, "{}", rest.text);
        assert_eq!(rest.body["amount"], 700);
        let none_left = app.refund(&shop, id, Some(1)).await;
        assert_eq!(none_left.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(app.balance(&ada).await, (5000, 0));
        assert_eq!(app.merchant_balance(&shop).await, (0, 0));
        let refunded = app
            .get(&format!("/v1/payment_intents/{id}"), &shop.key)
            .await;
        assert_eq!(refunded.body["amount_refunded"], 1000);
        let refunds = app.get("/v1/refunds", &shop.key).await;
        assert_eq!(refunds.body["data"].as_array().map(Vec::len), Some(2));
        let adas_refunds = app.get("/v1/refunds", &ada.token).await;
        assert_eq!(adas_refunds.body["data"].as_array().map(Vec::len), Some(2));
        let report = reconcile(&app).await;
        assert_eq!(report["status"], "clean", "{report}");
    }
}

#[tokio::test]
async fn manual_intents_hold_then_capture_part_or_cancel() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let shop = app.merchant("shop").await;
        let ada = app.user("ada").await;
        app.fund(&ada, 5000).await;

        let intent = app.intent(&shop, 1000, true).await;
        let id = intent["id"].as_str().expect("id");
        let held = app.confirm(&ada, id).await;
        assert_eq!(held.status, StatusCode::OK, "{}", held.text);
        assert_eq!(held.body["status"], "requires_capture");
        assert_eq!(held.body["amount_capturable"], 1000);
        assert_eq!(app.balance(&ada).await, (4000, 1000));
        let over = app
            .intent_action(&shop, id, "capture", json!({"amount_to_capture": 1001}))
            .await;
        assert_eq!(
            over.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            over.text
        );
        assert_eq!(over.code(), "capture_exceeds_hold");
        let captured = app
            .intent_action(&shop, id, "capture", json!({"amount_to_capture": 600}))
            .await;
        assert_eq!(captured.status, StatusCode::OK, "{}", captured.text);
        assert_eq!(captured.body["status"], "succeeded");
        assert_eq!(captured.body["amount_received"], 600);
        assert_eq!(captured.body["amount_capturable"], 0);
        assert_eq!(app.balance(&ada).await, (4400, 0));
        assert_eq!(app.merchant_balance(&shop).await, (600, 0));
        for action in ["capture", "cancel"] {
            let late = app.intent_action(&shop, id, action, json!({})).await;
            assert_eq!(late.status, StatusCode::CONFLICT, "{action}: {}", late.text);
        }

        // Cancel releases the hold in full; an unconfirmed intent just ends.
        let second = app.intent(&shop, 2500, true).await;
        let second = second["id"].as_str().expect("id");
        assert_eq!(app.confirm(&ada, second).await.status, StatusCode::OK);
        assert_eq!(app.balance(&ada).await, (1900, 2500));
        let canceled = app.intent_action(&shop, second, "cancel", json!({})).await;
        assert_eq!(canceled.status, StatusCode::OK, "{}", canceled.text);
        assert_eq!(canceled.body["status"], "canceled");
        assert_eq!(
            canceled.body["cancellation_reason"],
            "requested_by_merchant"
        );
        assert_eq!(app.balance(&ada).await, (4400, 0));
        let unconfirmed = app.intent(&shop, 100, false).await;
        let unconfirmed = unconfirmed["id"].as_str().expect("id");
        let ended = app
            .intent_action(&shop, unconfirmed, "cancel", json!({}))
            .await;
        assert_eq!(ended.body["status"], "canceled", "{}", ended.text);
        let after = app.confirm(&ada, unconfirmed).await;
        assert_eq!(after.status, StatusCode::CONFLICT, "{}", after.text);

        // A payment in a currency the user does not hold cannot be confirmed.
        let euros = app
            .post(
                "/v1/payment_intents",
                Some(&shop.key),
                Some(&key()),
                &json!({"amount": 100, "currency": "eur"}),
            )
            .await;
        let euros = euros.body["id"].as_str().expect("id").to_owned();
        let refused = app.confirm(&ada, &euros).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            refused.text
        );
        assert_eq!(refused.code(), "insufficient_funds");
        let report = reconcile(&app).await;
        assert_eq!(report["status"], "clean", "{report}");
    }
}

#[tokio::test]
async fn the_reconciler_catches_a_hold_whose_ledger_disagrees_with_its_state() {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter};
    use walleti::store::entities::holds;
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let shop = app.merchant("shop").await;
    let ada = app.user("ada").await;
    app.fund(&ada, 5000).await;
    let intent = app.intent(&shop, 1000, true).await;
    let id = intent["id"].as_str().expect("id");
    assert_eq!(app.confirm(&ada, id).await.status, StatusCode::OK);
    assert_eq!(
        app.intent_action(&shop, id, "cancel", json!({}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(reconcile(&app).await["status"], "clean");
    // Pretend the released hold were still held: its unlocked ledger now disagrees.
    let database = Database::connect(app.database_url.as_str())
        .await
        .expect("connect");
    holds::Entity::update_many()
        .col_expr(holds::Column::Status, Expr::value("held"))
        .filter(holds::Column::ReferenceId.eq(id))
        .exec(&database)
        .await
        .expect("tamper");
    let report = reconcile(&app).await;
    assert_eq!(report["status"], "discrepancies", "{report}");
    assert_eq!(report["counts"]["hold_mismatch"], 1, "{report}");
}

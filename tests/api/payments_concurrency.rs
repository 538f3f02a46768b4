//! Merchant payments under concurrency: holds raced by capture, cancel and expiry; refunds
//! racing payouts on one merchant balance; a mixed load of payments, partial captures, refunds
//! and payouts that must conserve money (the reconciler proves it).

use crate::helpers::{Backend, TestApp, backends, fresh_database, spawn_app_with, test_settings};
use crate::reconciliation::reconcile;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

async fn app_with_short_holds(backend: Backend, hold_lifetime: Duration) -> TestApp {
    let database_url = fresh_database(backend).await;
    let mut settings = test_settings(&database_url);
    settings.limits.hold_lifetime = hold_lifetime;
    settings.limits.hold_keeper_interval = Duration::from_millis(20);
    spawn_app_with(settings).await
}

async fn wait_for_payout(app: &TestApp, token: &str, id: &str, status: &str) -> Value {
    for _ in 0..400 {
        let payout = app.get(&format!("/v1/payouts/{id}"), token).await;
        if payout.body["status"] == status {
            return payout.body;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("payout {id} never became {status}");
}

fn key() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[tokio::test]
async fn capture_cancel_and_expiry_racing_on_one_hold_resolve_it_exactly_once() {
    for backend in backends() {
        let app = app_with_short_holds(backend, Duration::from_millis(600)).await;
        let shop = app.merchant("shop").await;
        let ada = app.user("ada").await;
        app.fund(&ada, 100_000).await;
        let mut intents = Vec::new();
        for _ in 0..12 {
            let intent = app.intent(&shop, 1000, true).await;
            let id = intent["id"].as_str().expect("id").to_owned();
            let held = app.confirm(&ada, &id).await;
            assert_eq!(held.body["status"], "requires_capture", "{}", held.text);
            intents.push(id);
        }
        // Fire capture and cancel together, around the moment the holds expire.
        tokio::time::sleep(Duration::from_millis(540)).await;
        let races = intents.iter().map(|id| {
            let app = &app;
            let shop = &shop;
            async move {
                let capture =
                    app.intent_action(shop, id, "capture", json!({"amount_to_capture": 400}));
                let cancel = app.intent_action(shop, id, "cancel", json!({}));
                let (capture, cancel) = tokio::join!(capture, cancel);
                (id.clone(), capture, cancel)
            }
        });
        let outcomes = futures_util::future::join_all(races).await;
        // Let any hold nobody resolved expire.
        tokio::time::sleep(Duration::from_millis(500)).await;

        let mut captured_total = 0;
        let mut won_by = std::collections::BTreeMap::new();
        for (id, capture, cancel) in &outcomes {
            let winners = [capture, cancel]
                .iter()
                .filter(|reply| reply.status == StatusCode::OK)
                .count();
            assert!(
                winners <= 1,
                "both won on {id}: {} / {}",
                capture.text,
                cancel.text
            );
            for reply in [capture, cancel] {
                if reply.status != StatusCode::OK {
                    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
                    assert!(
                        ["hold_already_resolved", "payment_intent_unexpected_state"]
                            .contains(&reply.code()),
                        "{}",
                        reply.text
                    );
                }
            }
            let intent = app
                .get(&format!("/v1/payment_intents/{id}"), &shop.key)
                .await;
            let status = intent.body["status"].as_str().unwrap_or("");
            let winner = if capture.status == StatusCode::OK {
                "capture"
            } else if cancel.status == StatusCode::OK {
                "cancel"
            } else {
                "expiry"
            };
            *won_by.entry(winner).or_insert(0) += 1;
            if capture.status == StatusCode::OK {
                assert_eq!(status, "succeeded");
                assert_eq!(intent.body["amount_received"], 400);
                captured_total += 400;
            } else if cancel.status == StatusCode::OK {
                assert_eq!(status, "canceled");
                assert_eq!(intent.body["cancellation_reason"], "requested_by_merchant");
            } else {
                assert_eq!(status, "canceled", "{}", intent.text);
                assert_eq!(intent.body["cancellation_reason"], "expired");
            }
        }
        println!("{backend:?}: holds won by {won_by:?}");
        // One resolution per hold in the ledger: what was locked for it was unlocked once.
        let entries = app.all_entries(&ada).await;
        for id in &intents {
            let of_hold: Vec<&Value> = entries
                .iter()
                .filter(|entry| entry["reference"]["id"] == id.as_str())
                .collect();
            let locked_net: i64 = of_hold
                .iter()
                .filter(|entry| entry["bucket"] == "locked")
                .map(|entry| entry["amount"].as_i64().unwrap_or(0))
                .sum();
            assert_eq!(locked_net, 0, "hold of {id}: {of_hold:?}");
            let mut resolutions: Vec<&str> = of_hold
                .iter()
                .filter_map(|entry| entry["kind"].as_str())
                .filter(|kind| ["capture_debit", "hold_released", "hold_expired"].contains(kind))
                .collect();
            resolutions.dedup();
            assert_eq!(resolutions.len(), 1, "hold of {id}: {of_hold:?}");
        }
        assert_eq!(app.balance(&ada).await, (100_000 - captured_total, 0));
        assert_eq!(app.merchant_balance(&shop).await, (captured_total, 0));
        let report = reconcile(&app).await;
        assert_eq!(report["status"], "clean", "{report}");
    }
}

#[tokio::test]
async fn payouts_lock_funds_until_the_bank_pays_or_fails_them() {
    for backend in backends() {
        let app = app_with_short_holds(backend, Duration::from_secs(3600)).await;
        let ada = app.user("ada").await;
        app.fund(&ada, 5000).await;
        let too_much = app
            .post(
                "/v1/payouts",
                Some(&ada.token),
                Some(&key()),
                &json!({"amount": 5001, "currency": "usd"}),
            )
            .await;
        assert_eq!(
            too_much.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            too_much.text
        );
        assert_eq!(too_much.code(), "insufficient_funds");

        let payout_key = key();
        let body = json!({"amount": 1500, "currency": "usd"});
        let created = app
            .post("/v1/payouts", Some(&ada.token), Some(&payout_key), &body)
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        assert_eq!(created.body["object"], "payout");
        let id = created.body["id"].as_str().expect("id").to_owned();
        let replay = app
            .post("/v1/payouts", Some(&ada.token), Some(&payout_key), &body)
            .await;
        assert_eq!(replay.body["id"], id.as_str());
        assert_eq!(
            replay
                .headers
                .get("idempotent-replayed")
                .map(|v| v.to_str().unwrap_or("")),
            Some("true")
        );
        let paid = wait_for_payout(&app, &ada.token, &id, "paid").await;
        assert_eq!(paid["amount"], 1500);
        assert_eq!(app.balance(&ada).await, (3500, 0));

        // The bank fails the next one: the funds come back.
        let faults = app
            .client
            .post(format!("{}/bank-sim/api/faults", app.address))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .json(&json!({"payouts": "fail"}))
            .send()
            .await
            .expect("faults");
        assert!(faults.status().is_success());
        let failing = app
            .post(
                "/v1/payouts",
                Some(&ada.token),
                Some(&key()),
                &json!({"amount": 1000, "currency": "usd"}),
            )
            .await;
        let failing = failing.body["id"].as_str().expect("id").to_owned();
        let failed = wait_for_payout(&app, &ada.token, &failing, "failed").await;
        assert_eq!(failed["failure_code"], "bank_rejected");
        assert_eq!(app.balance(&ada).await, (3500, 0));
        let listed = app.get("/v1/payouts", &ada.token).await;
        assert_eq!(listed.body["data"].as_array().map(Vec::len), Some(2));
        let bob = app.user("bob").await;
        assert_eq!(
            app.get(&format!("/v1/payouts/{id}"), &bob.token)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        let report = reconcile(&app).await;
        assert_eq!(report["status"], "clean", "{report}");
    }
}

#[tokio::test]
async fn refunds_and_payouts_racing_on_one_merchant_balance_never_overdraw_it() {
    for backend in backends() {
        let app = app_with_short_holds(backend, Duration::from_secs(3600)).await;
        let shop = app.merchant("shop").await;
        let ada = app.user("ada").await;
        app.fund(&ada, 50_000).await;
        let mut intents = Vec::new();
        for _ in 0..6 {
            let intent = app.intent(&shop, 1000, false).await;
            let id = intent["id"].as_str().expect("id").to_owned();
            assert_eq!(app.confirm(&ada, &id).await.body["status"], "succeeded");
            intents.push(id);
        }
        // The merchant holds 6000; each race offers 1000 of refund and 1000 of payout
        // against what is left after the merchant withdrew 5000.
        let withdrawn = app
            .post(
                "/v1/payouts",
                Some(&shop.key),
                Some(&key()),
                &json!({"amount": 5000, "currency": "usd"}),
            )
            .await;
        assert_eq!(withdrawn.status, StatusCode::CREATED, "{}", withdrawn.text);
        let races = intents.iter().map(|id| {
            let app = &app;
            let shop = &shop;
            async move {
                let payout_key = key();
                let payout_body = json!({"amount": 1000, "currency": "usd"});
                let refund = app.refund(shop, id, Some(1000));
                let payout = app.post(
                    "/v1/payouts",
                    Some(&shop.key),
                    Some(&payout_key),
                    &payout_body,
                );
                tokio::join!(refund, payout)
            }
        });
        let outcomes = futures_util::future::join_all(races).await;
        let mut won = 0;
        for (refund, payout) in &outcomes {
            for reply in [refund, payout] {
                match reply.status {
                    StatusCode::CREATED => won += 1,
                    StatusCode::UNPROCESSABLE_ENTITY => {
                        assert_eq!(reply.code(), "insufficient_funds", "{}", reply.text);
                    }
                    other => panic!("unexpected {other}: {}", reply.text),
                }
            }
        }
        assert_eq!(won, 1, "only 1000 was left to move");
        let (available, locked) = app.merchant_balance(&shop).await;
        assert!(available >= 0 && locked >= 0);
        for _ in 0..200 {
            if app.merchant_balance(&shop).await == (0, 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(app.merchant_balance(&shop).await, (0, 0));
        let report = reconcile(&app).await;
        assert_eq!(report["status"], "clean", "{report}");
    }
}

#[tokio::test]
async fn mixed_concurrent_payments_captures_refunds_and_payouts_conserve_money() {
    for backend in backends() {
        let app = app_with_short_holds(backend, Duration::from_secs(3600)).await;
        let shops = [app.merchant("north").await, app.merchant("south").await];
        let mut users = Vec::new();
        for index in 0..6 {
            let user = app.user(&format!("user{index}")).await;
            app.fund(&user, 20_000).await;
            users.push(user);
        }
        let work = users.iter().enumerate().map(|(index, user)| {
            let app = &app;
            let shop = &shops[index % 2];
            async move {
                for round in 0..4_i64 {
                    let manual = round % 2 == 1;
                    let intent = app.intent(shop, 500 + round * 100, manual).await;
                    let id = intent["id"].as_str().expect("id").to_owned();
                    let confirmed = app.confirm(user, &id).await;
                    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text);
                    if manual {
                        let captured = app
                            .intent_action(shop, &id, "capture", json!({"amount_to_capture": 300}))
                            .await;
                        assert_eq!(captured.status, StatusCode::OK, "{}", captured.text);
                    }
                    let refund = app.refund(shop, &id, Some(100)).await;
                    assert!(
                        [StatusCode::CREATED, StatusCode::UNPROCESSABLE_ENTITY]
                            .contains(&refund.status),
                        "{}",
                        refund.text
                    );
                    let payout = app
                        .post(
                            "/v1/payouts",
                            Some(&user.token),
                            Some(&key()),
                            &json!({"amount": 250, "currency": "usd"}),
                        )
                        .await;
                    assert_eq!(payout.status, StatusCode::CREATED, "{}", payout.text);
                }
            }
        });
        futures_util::future::join_all(work).await;
        // Wait for every payout to settle at the bank.
        for user in &users {
            for _ in 0..200 {
                if app.balance(user).await.1 == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let (available, locked) = app.balance(user).await;
            assert!(available >= 0);
            assert_eq!(locked, 0);
        }
        let report = reconcile(&app).await;
        assert_eq!(report["status"], "clean", "{report}");
    }
}

#[tokio::test]
async fn users_racing_to_confirm_one_intent_pay_it_once() {
    for backend in backends() {
        let app = app_with_short_holds(backend, Duration::from_secs(3600)).await;
        let shop = app.merchant("shop").await;
        let mut users = Vec::new();
        for index in 0..5 {
            let user = app.user(&format!("payer{index}")).await;
            app.fund(&user, 5000).await;
            users.push(user);
        }
        for manual in [false, true] {
            let intent = app.intent(&shop, 1200, manual).await;
            let id = intent["id"].as_str().expect("id").to_owned();
            let replies =
                futures_util::future::join_all(users.iter().map(|user| app.confirm(user, &id)))
                    .await;
            let winners: Vec<usize> = replies
                .iter()
                .enumerate()
                .filter(|(_, reply)| reply.status == StatusCode::OK)
                .map(|(index, _)| index)
                .collect();
            assert_eq!(
                winners.len(),
                1,
                "manual={manual}: {:?}",
                replies.iter().map(|r| &r.text).collect::<Vec<_>>()
            );
            for (index, reply) in replies.iter().enumerate() {
                if index != winners[0] {
                    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
                    assert_eq!(reply.code(), "payment_intent_unexpected_state");
                }
            }
            let winner = &users[winners[0]];
            let intent = app
                .get(&format!("/v1/payment_intents/{id}"), &shop.key)
                .await;
            assert_eq!(intent.body["customer"], winner.id.as_str());
        }
        // Each intent took money from its one payer only.
        let mut debited = 0;
        for user in &users {
            let (available, locked) = app.balance(user).await;
            debited += 5000 - available - locked;
            assert!(locked == 0 || locked == 1200);
        }
        assert_eq!(debited, 1200, "only the automatic payment left the payers");
        assert_eq!(app.merchant_balance(&shop).await, (1200, 0));
        let report = reconcile(&app).await;
        assert_eq!(report["status"], "clean", "{report}");
    }
}

use crate::helpers::{backends, spawn_app};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_transfer_moves_money_and_shows_in_both_histories() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (ada, bob) = (app.user("ada").await, app.user("bob").await);
        app.fund(&ada, 10_000).await;

        let sent = app
            .post(
                "/v1/transfers",
                Some(&ada.token),
                Some("lunch-1"),
                &json!({"to": bob.email, "amount": 1050, "currency": "usd", "note": "lunch"}),
            )
            .await;
        assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
        assert_eq!(sent.body["object"], "transfer");
        assert_eq!(sent.body["status"], "completed");
        assert_eq!(sent.body["from_user"], ada.id.as_str());
        assert_eq!(sent.body["to_user"], bob.id.as_str());
        assert_eq!(sent.body["note"], "lunch");
        assert_eq!(sent.body["failure_code"], serde_json::Value::Null);

        assert_eq!(app.balance(&ada).await, (8_950, 0));
        assert_eq!(app.balance(&bob).await, (1_050, 0));

        // By phone and by user id too.
        let by_phone = app.transfer(&bob, &ada.phone, json!(50), "back-1").await;
        assert_eq!(by_phone.body["status"], "completed", "{}", by_phone.text);
        let by_id = app.transfer(&bob, &ada.id, json!(25), "back-2").await;
        assert_eq!(by_id.body["status"], "completed", "{}", by_id.text);
        assert_eq!(app.balance(&ada).await, (9_025, 0));
        assert_eq!(app.balance(&bob).await, (975, 0));

        let bob_entries = app.all_entries(&bob).await;
        let kinds: Vec<&str> = bob_entries
            .iter()
            .map(|entry| entry["kind"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            kinds,
            ["transfer_debit", "transfer_debit", "transfer_credit"]
        );
        assert_eq!(bob_entries[2]["reference"]["type"], "transfer");
        assert_eq!(bob_entries[2]["reference"]["id"], sent.body["id"]);
        assert_eq!(bob_entries[0]["balance_after"], 975);

        let ada_list = app.get("/v1/transfers", &ada.token).await;
        assert_eq!(ada_list.body["object"], "list");
        assert_eq!(
            ada_list.body["data"].as_array().map(Vec::len),
            Some(3),
            "sent and received"
        );
        assert_eq!(
            ada_list.body["data"][0]["id"], by_id.body["id"],
            "newest first"
        );
    }
}

#[tokio::test]
async fn the_recipients_account_in_a_new_currency_is_opened() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    let funded = app.adjust(&ada.id, 5_000, "eur").await;
    assert_eq!(funded.status, StatusCode::CREATED, "{}", funded.text);
    let sent = app
        .post(
            "/v1/transfers",
            Some(&ada.token),
            Some("eur-1"),
            &json!({"to": bob.email, "amount": 1_000, "currency": "eur"}),
        )
        .await;
    assert_eq!(sent.body["status"], "completed", "{}", sent.text);
    let wallet = app.get("/v1/wallet", &bob.token).await;
    let eur = wallet.body["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .find(|a| a["currency"] == "eur")
        .cloned();
    assert_eq!(
        eur.map(|account| account["available"].clone()),
        Some(json!(1_000))
    );
    let entries = app.get("/v1/wallet/entries?currency=eur", &bob.token).await;
    assert_eq!(entries.body["data"].as_array().map(Vec::len), Some(1));
    let usd_entries = app.get("/v1/wallet/entries?currency=usd", &bob.token).await;
    assert_eq!(usd_entries.body["data"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn two_transfers_racing_for_the_last_money_exactly_one_wins() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (ada, bob, cy) = (
            app.user("ada").await,
            app.user("bob").await,
            app.user("cy").await,
        );
        for round in 0..5 {
            app.fund(&ada, 100).await;
            let (key_a, key_b) = (format!("race-a-{round}"), format!("race-b-{round}"));
            let (first, second) = tokio::join!(
                app.transfer(&ada, &bob.email, json!(100), &key_a),
                app.transfer(&ada, &cy.email, json!(100), &key_b),
            );
            let mut statuses = [first.status.as_u16(), second.status.as_u16()];
            statuses.sort();
            assert_eq!(statuses, [201, 422], "{} / {}", first.text, second.text);
            let loser = if first.status == StatusCode::CREATED {
                &second
            } else {
                &first
            };
            assert_eq!(loser.code(), "insufficient_funds");
            assert_eq!(app.balance(&ada).await, (0, 0));
        }
        let (bob_balance, cy_balance) = (app.balance(&bob).await.0, app.balance(&cy).await.0);
        assert_eq!(bob_balance + cy_balance, 500);
    }
}

#[tokio::test]
async fn lists_paginate_newest_first() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    app.fund(&ada, 10_000).await;
    let mut ids = Vec::new();
    for index in 0..5 {
        let sent = app
            .transfer(
                &ada,
                &bob.email,
                json!(10 + index),
                &format!("page-{index}"),
            )
            .await;
        ids.push(sent.body["id"].as_str().expect("id").to_owned());
    }
    ids.reverse(); // newest first
    let first = app.get("/v1/transfers?limit=2", &ada.token).await;
    let page_ids = |reply: &crate::helpers::Reply| -> Vec<String> {
        reply.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|t| t["id"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(page_ids(&first), ids[0..2]);
    assert_eq!(first.body["has_more"], true);
    let second = app
        .get(
            &format!("/v1/transfers?limit=2&starting_after={}", ids[1]),
            &ada.token,
        )
        .await;
    assert_eq!(page_ids(&second), ids[2..4]);
    let last = app
        .get(
            &format!("/v1/transfers?limit=2&starting_after={}", ids[3]),
            &ada.token,
        )
        .await;
    assert_eq!(page_ids(&last), ids[4..5]);
    assert_eq!(last.body["has_more"], false);
    let before = app
        .get(
            &format!("/v1/transfers?limit=2&ending_before={}", ids[4]),
            &ada.token,
        )
        .await;
    assert_eq!(
        page_ids(&before),
        ids[2..4],
        "ending_before: the objects just newer, newest first"
    );
    assert_eq!(before.body["has_more"], true);
    for bad in ["limit=0", "limit=101", "limit=x", "starting_after=nope"] {
        let reply = app.get(&format!("/v1/transfers?{bad}"), &ada.token).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

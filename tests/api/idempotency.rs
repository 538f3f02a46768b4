use crate::helpers::{backends, spawn_app};
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_retried_transfer_moves_money_once_even_when_the_retries_are_concurrent() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (ada, bob) = (app.user("ada").await, app.user("bob").await);
        app.fund(&ada, 10_000).await;

        let replies =
            join_all((0..10).map(|_| app.transfer(&ada, &bob.email, json!(1_234), "same-key")))
                .await;
        for reply in &replies {
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
            assert_eq!(
                reply.text, replies[0].text,
                "every retry gets the first response byte for byte"
            );
        }
        let replayed = replies
            .iter()
            .filter(|reply| reply.headers.get("idempotent-replayed").is_some())
            .count();
        assert_eq!(replayed, 9);
        assert_eq!(app.balance(&ada).await, (10_000 - 1_234, 0));
        assert_eq!(app.balance(&bob).await, (1_234, 0));

        // A later sequential retry replays too.
        let again = app
            .transfer(&ada, &bob.email, json!(1_234), "same-key")
            .await;
        assert_eq!(again.text, replies[0].text);
        assert_eq!(
            again
                .headers
                .get("idempotent-replayed")
                .map(|v| v.to_str().unwrap_or("")),
            Some("true")
        );

        // Same key, different body: 409 and nothing moves.
        let different = app.transfer(&ada, &bob.email, json!(999), "same-key").await;
        assert_eq!(different.status, StatusCode::CONFLICT);
        assert_eq!(different.code(), "idempotency_key_reused");
        assert_eq!(different.body["error"]["type"], "idempotency_error");
        assert_eq!(app.balance(&ada).await, (10_000 - 1_234, 0));

        // Keys are scoped to their caller: bob may use the same key for his own transfer.
        let bobs = app.transfer(&bob, &ada.email, json!(34), "same-key").await;
        assert_eq!(bobs.status, StatusCode::CREATED, "{}", bobs.text);
        assert_ne!(bobs.body["id"], replies[0].body["id"]);
        assert_eq!(app.balance(&bob).await, (1_200, 0));
    }
}

#[tokio::test]
async fn a_stored_rejection_is_replayed_and_a_new_key_can_succeed() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    let broke = app.transfer(&ada, &bob.email, json!(500), "k-broke").await;
    assert_eq!(broke.status, StatusCode::UNPROCESSABLE_ENTITY);
    app.fund(&ada, 1_000).await;
    let replay = app.transfer(&ada, &bob.email, json!(500), "k-broke").await;
    assert_eq!(
        replay.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the first response is the answer for this key"
    );
    assert_eq!(replay.text, broke.text);
    let fresh = app.transfer(&ada, &bob.email, json!(500), "k-fresh").await;
    assert_eq!(fresh.status, StatusCode::CREATED);
}

#[tokio::test]
async fn adjustments_are_idempotent() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let ada = app.user("ada").await;
    let body = json!({"user_id": ada.id, "amount": 700, "currency": "usd", "reason": "goodwill"});
    let replies = join_all((0..5).map(|_| {
        app.post(
            "/v1/admin/adjustments",
            Some(crate::helpers::ADMIN_TOKEN),
            Some("adj-1"),
            &body,
        )
    }))
    .await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        assert_eq!(reply.text, replies[0].text);
    }
    assert_eq!(replies[0].body["object"], "adjustment");
    assert_eq!(replies[0].body["reason"], "goodwill");
    assert_eq!(app.balance(&ada).await, (700, 0));
}

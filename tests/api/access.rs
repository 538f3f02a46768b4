use crate::helpers::{backends, spawn_app};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn users_cannot_see_each_others_money() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (ada, bob, eve) = (
            app.user("ada").await,
            app.user("bob").await,
            app.user("eve").await,
        );
        app.fund(&ada, 5_000).await;
        let sent = app.transfer(&ada, &bob.email, json!(700), "k1").await;
        assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
        let id = sent.body["id"].as_str().expect("id");

        for user in [&ada, &bob] {
            let seen = app.get(&format!("/v1/transfers/{id}"), &user.token).await;
            assert_eq!(seen.status, StatusCode::OK);
            assert_eq!(seen.body["amount"], 700);
        }
        let hidden = app.get(&format!("/v1/transfers/{id}"), &eve.token).await;
        assert_eq!(
            hidden.status,
            StatusCode::NOT_FOUND,
            "another user's transfer is a 404"
        );
        let listed = app.get("/v1/transfers", &eve.token).await;
        assert_eq!(listed.body["data"].as_array().map(Vec::len), Some(0));
        assert!(app.all_entries(&eve).await.is_empty());
        assert_eq!(app.balance(&eve).await, (0, 0));

        // Nothing is readable without a session, and the operator token is not a user session.
        let anonymous = app
            .request(reqwest::Method::GET, "/v1/wallet", None, None, None)
            .await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
        let operator_as_user = app.get("/v1/wallet", crate::helpers::ADMIN_TOKEN).await;
        assert_eq!(operator_as_user.status, StatusCode::UNAUTHORIZED);
        // And a user session is not the operator token.
        let user_as_operator = app
            .post(
                "/v1/admin/adjustments",
                Some(&ada.token),
                Some("x"),
                &json!({"user_id": ada.id, "amount": 1, "currency": "usd", "reason": "x"}),
            )
            .await;
        assert_eq!(user_as_operator.status, StatusCode::UNAUTHORIZED);
    }
}

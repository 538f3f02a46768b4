use crate::helpers::{backends, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn bad_transfer_input_gets_a_documented_4xx_and_changes_nothing() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (ada, bob) = (app.user("ada").await, app.user("bob").await);
        app.fund(&ada, 1_000).await;
        let oversized = format!(
            r#"{{"to":"{}","amount":1,"currency":"usd","note":"{}"}}"#,
            bob.email,
            "x".repeat(70_000)
        );
        let cases: Vec<(String, u16, &str)> = vec![
            (json!({"to": bob.email, "amount": 0, "currency": "usd"}).to_string(), 400, "invalid_amount"),
            (json!({"to": bob.email, "amount": -5, "currency": "usd"}).to_string(), 400, "invalid_amount"),
            (json!({"to": bob.email, "amount": 10.5, "currency": "usd"}).to_string(), 400, "invalid_amount"),
            (json!({"to": bob.email, "amount": 10.0, "currency": "usd"}).to_string(), 400, "invalid_amount"),
            (json!({"to": bob.email, "amount": "10", "currency": "usd"}).to_string(), 400, "invalid_amount"),
            (json!({"to": bob.email, "currency": "usd"}).to_string(), 400, "invalid_amount"),
            (json!({"to": bob.email, "amount": null, "currency": "usd"}).to_string(), 400, "invalid_amount"),
            (json!({"to": bob.email, "amount": 1_000_000_000_001_i64, "currency": "usd"}).to_string(), 400, "invalid_amount"),
            (format!(r#"{{"to":"{}","amount":99999999999999999999999,"currency":"usd"}}"#, bob.email), 400, "invalid_amount"),
            (format!(r#"{{"to":"{}","amount":1e3,"currency":"usd"}}"#, bob.email), 400, "invalid_amount"),
            (json!({"to": bob.email, "amount": 1, "currency": "xyz"}).to_string(), 400, "invalid_currency"),
            (json!({"to": bob.email, "amount": 1, "currency": "USD"}).to_string(), 400, "invalid_currency"),
            (json!({"to": bob.email, "amount": 1}).to_string(), 400, "invalid_currency"),
            (r#"{"to": "#.to_owned(), 400, "invalid_json"),
            ("[1,2]".to_owned(), 400, "invalid_json"),
            ("".to_owned(), 400, "invalid_json"),
            (oversized, 413, "body_too_large"),
            (json!({"amount": 1, "currency": "usd"}).to_string(), 400, "parameter_missing"),
            (json!({"to": 42, "amount": 1, "currency": "usd"}).to_string(), 400, "parameter_invalid"),
            (json!({"to": "nobody@example.com", "amount": 1, "currency": "usd"}).to_string(), 422, "recipient_not_found"),
            (json!({"to": "+19999999999", "amount": 1, "currency": "usd"}).to_string(), 422, "recipient_not_found"),
            (json!({"to": "0194f1a0-0000-7000-8000-000000000000", "amount": 1, "currency": "usd"}).to_string(), 422, "recipient_not_found"),
            (json!({"to": ada.email, "amount": 1, "currency": "usd"}).to_string(), 422, "self_transfer"),
            (json!({"to": bob.email, "amount": 1_001, "currency": "usd"}).to_string(), 422, "insufficient_funds"),
            (json!({"to": bob.email, "amount": 1, "currency": "gbp"}).to_string(), 422, "insufficient_funds"),
        ];
        for (index, (body, status, code)) in cases.into_iter().enumerate() {
            let key = format!("bad-{index}");
            let reply = app
                .request(
                    Method::POST,
                    "/v1/transfers",
                    Some(&ada.token),
                    Some(&key),
                    Some(body.clone()),
                )
                .await;
            assert_eq!(
                reply.status.as_u16(),
                status,
                "{}: {}",
                &body[..body.len().min(120)],
                reply.text
            );
            assert_eq!(reply.code(), code, "{}", &body[..body.len().min(120)]);
            assert_eq!(reply.body["error"]["type"], "invalid_request_error");
        }
        assert_eq!(app.balance(&ada).await, (1_000, 0));
        assert_eq!(app.balance(&bob).await, (0, 0));
        assert_eq!(
            app.get("/v1/transfers", &ada.token).await.body["data"]
                .as_array()
                .map(Vec::len),
            Some(0)
        );
        assert_eq!(
            app.all_entries(&ada).await.len(),
            1,
            "only the funding entry"
        );
    }
}

#[tokio::test]
async fn missing_or_bad_idempotency_key_is_a_400() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    app.fund(&ada, 1_000).await;
    let body = json!({"to": bob.email, "amount": 1, "currency": "usd"});
    let missing = app
        .post("/v1/transfers", Some(&ada.token), None, &body)
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.code(), "idempotency_key_missing");
    let too_long = app
        .post(
            "/v1/transfers",
            Some(&ada.token),
            Some(&"k".repeat(256)),
            &body,
        )
        .await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_long.code(), "idempotency_key_invalid");
    assert_eq!(app.balance(&ada).await, (1_000, 0));
}

#[tokio::test]
async fn unknown_routes_and_bad_adjustments_are_4xx_json() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let ada = app.user("ada").await;
    let unknown = app.get("/v1/nothing-here", &ada.token).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.code(), "route_not_found");
    let admin = Some(crate::helpers::ADMIN_TOKEN);
    let cases = [
        (
            json!({"user_id": ada.id, "amount": 0, "currency": "usd", "reason": "x"}),
            400,
            "invalid_amount",
        ),
        (
            json!({"user_id": ada.id, "amount": 1.5, "currency": "usd", "reason": "x"}),
            400,
            "invalid_amount",
        ),
        (
            json!({"user_id": ada.id, "amount": 5, "currency": "usd"}),
            400,
            "parameter_missing",
        ),
        (
            json!({"amount": 5, "currency": "usd", "reason": "x"}),
            400,
            "parameter_invalid",
        ),
        (
            json!({"user_id": ada.id, "amount": -5, "currency": "usd", "reason": "x"}),
            422,
            "insufficient_funds",
        ),
        (
            json!({"account_id": "0194f1a0-0000-7000-8000-000000000000", "amount": 5, "currency": "usd", "reason": "x"}),
            404,
            "account_not_found",
        ),
    ];
    for (index, (body, status, code)) in cases.into_iter().enumerate() {
        let reply = app
            .post(
                "/v1/admin/adjustments",
                admin,
                Some(&format!("adj-{index}")),
                &body,
            )
            .await;
        assert_eq!(reply.status.as_u16(), status, "{body}: {}", reply.text);
        assert_eq!(reply.code(), code, "{body}");
    }
    assert_eq!(app.balance(&ada).await, (0, 0));
}

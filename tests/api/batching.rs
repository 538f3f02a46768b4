use crate::helpers::{ADMIN_TOKEN, backends, spawn_app};
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

const CREDITS: usize = 200;

#[tokio::test]
async fn concurrent_credits_to_one_wallet_commit_in_fewer_transactions() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let ada = app.user("ada").await;
        let (batches_before, ops_before) = app.state().metrics.committed_batches();

        let body =
            json!({"user_id": ada.id, "amount": 5, "currency": "usd", "reason": "batching test"});
        let replies = join_all((0..CREDITS).map(|index| {
            let key = format!("credit-{index}");
            let body = &body;
            let app = &app;
            async move {
                app.post("/v1/admin/adjustments", Some(ADMIN_TOKEN), Some(&key), body)
                    .await
            }
        }))
        .await;
        assert!(
            replies
                .iter()
                .all(|reply| reply.status == StatusCode::CREATED)
        );

        let (batches_after, ops_after) = app.state().metrics.committed_batches();
        let transactions = batches_after - batches_before;
        assert_eq!(
            ops_after - ops_before,
            CREDITS as f64,
            "every credit committed exactly once"
        );
        assert!(
            transactions < CREDITS as u64,
            "{CREDITS} concurrent credits took {transactions} transactions ({backend:?})"
        );
        assert_eq!(app.balance(&ada).await, (5 * CREDITS as i64, 0));
        assert_eq!(app.all_entries(&ada).await.len(), CREDITS);
        println!(
            "{backend:?}: {CREDITS} concurrent credits committed in {transactions} transactions"
        );
    }
}

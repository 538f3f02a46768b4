use crate::helpers::{TestApp, backends, fresh_database, spawn_app_with, test_settings};
use serde_json::json;
use std::time::Duration;

async fn wait_until<F: AsyncFn() -> bool>(what: &str, condition: F) {
    for _ in 0..250 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn live_wallets(app: &TestApp) -> usize {
    app.state().wallets.live_count().await.expect("live count")
}

#[tokio::test]
async fn idle_wallet_actors_stop_and_come_back_on_the_next_op() {
    for backend in backends() {
        let mut settings = test_settings(&fresh_database(backend).await);
        settings.limits.wallet.idle_timeout = Duration::from_millis(200);
        let app = spawn_app_with(settings).await;
        let (ada, bob) = (app.user("ada").await, app.user("bob").await);
        app.fund(&ada, 1_000).await;
        assert!(live_wallets(&app).await >= 1);

        wait_until("idle wallets stop", async || live_wallets(&app).await == 0).await;
        let gauge = app
            .state()
            .metrics
            .actors_live
            .with_label_values(&["wallet"])
            .get();
        assert_eq!(gauge, 0);

        let sent = app
            .transfer(&ada, &bob.email, json!(300), "after-idle")
            .await;
        assert_eq!(sent.body["status"], "completed", "{}", sent.text);
        assert_eq!(app.balance(&ada).await, (700, 0));
        assert_eq!(app.balance(&bob).await, (300, 0));
        assert_eq!(
            app.state()
                .metrics
                .actor_restarts_total
                .with_label_values(&["wallet"])
                .get(),
            0,
            "passivation is not a failure"
        );
    }
}

#[tokio::test]
async fn a_failed_wallet_reloads_while_the_wallets_beside_it_in_its_shard_go_on() {
    for backend in backends() {
        let mut settings = test_settings(&fresh_database(backend).await);
        // Every wallet in one shard: ada's failure must not disturb bob's or cy's.
        settings.limits.wallet.shards = 1;
        let app = spawn_app_with(settings).await;
        let (ada, bob, cy) = (
            app.user("ada").await,
            app.user("bob").await,
            app.user("cy").await,
        );
        app.fund(&ada, 1_000).await;
        app.fund(&bob, 1_000).await;
        let live_before = live_wallets(&app).await;
        let restarts = || {
            app.state()
                .metrics
                .actor_restarts_total
                .with_label_values(&["wallet"])
                .get()
        };
        assert_eq!(restarts(), 0);

        // Another writer moves ada's account on behind her (live) wallet's back.
        let ada_account = crate::crash_safety::usd_account(&app, &ada.token).await;
        crate::crash_safety::bump_version(&app, &ada_account, 3).await;

        let (from_ada, from_bob) = tokio::join!(
            app.transfer(&ada, &cy.email, json!(400), "ada-after-tamper"),
            app.transfer(&bob, &cy.email, json!(300), "bob-beside-ada"),
        );
        assert_eq!(from_ada.body["status"], "completed", "{}", from_ada.text);
        assert_eq!(from_bob.body["status"], "completed", "{}", from_bob.text);
        assert_eq!(restarts(), 1, "only ada's wallet failed, once");
        assert_eq!(app.balance(&ada).await, (600, 0));
        assert_eq!(app.balance(&bob).await, (700, 0));
        assert_eq!(app.balance(&cy).await, (700, 0));
        assert!(
            live_wallets(&app).await > live_before,
            "ada's wallet reloaded and cy's loaded; none was lost"
        );
    }
}

/// A transfer's credit travels with its debit (the source's wallet sends it on once the debit
/// is planned). When the target's wallet refuses it (here: no such account), the saga learns
/// it from that credit's answer and refunds the source, exactly as with a credit sent after
/// the debit.
#[tokio::test]
async fn a_credit_sent_on_with_its_debit_and_refused_is_refunded() {
    use walleti::actors::transfer_saga::{Opening, SagaStart, start_and_wait};
    use walleti::domain::{AccountId, Rejection, TransferState};
    for backend in backends() {
        let app = spawn_app_with(test_settings(&fresh_database(backend).await)).await;
        let (ada, bob) = (app.user("ada").await, app.user("bob").await);
        app.fund(&ada, 1_000).await;
        let ada_account = crate::crash_safety::usd_account(&app, &ada.token).await;
        // Not an account: the credit is refused.
        let missing = AccountId::generate().to_string();
        let transfer =
            crate::helpers::p2p_transfer((&ada.id, &ada_account), (&bob.id, &missing), 250);
        let id = transfer.id;
        let start = SagaStart::New {
            transfer,
            replay: false,
            opening: Opening::Debit,
            keyed: None,
        };
        let settled = start_and_wait(&app.state().sagas, start, Duration::from_secs(10))
            .await
            .expect("the debit stands")
            .expect("settled in time");
        assert_eq!(settled.state, TransferState::Failed, "{backend:?}");
        assert_eq!(settled.failure_code, Some(Rejection::AccountNotFound));
        let stored = app
            .state()
            .store
            .find_transfer(id)
            .await
            .expect("read")
            .expect("transfer");
        assert_eq!(stored.state, TransferState::Failed, "{backend:?}");
        assert_eq!(app.balance(&ada).await, (1_000, 0), "refunded");
        let kinds: Vec<String> = app
            .all_entries(&ada)
            .await
            .iter()
            .map(|entry| entry["kind"].as_str().unwrap_or("").to_owned())
            .collect();
        assert_eq!(kinds, ["transfer_refund", "transfer_debit", "adjustment"]);
        assert_eq!(
            crate::reconciliation::reconcile(&app).await["status"],
            "clean",
            "{backend:?}"
        );
    }
}

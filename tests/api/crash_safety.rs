use crate::helpers::{TestApp, backends, spawn_app, spawn_app_with, test_settings};
use chrono::Utc;
use reqwest::StatusCode;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, Database, DatabaseConnection, EntityTrait,
    QueryFilter,
};
use serde_json::json;
use std::time::Duration;
use walleti::store::entities::{accounts, entries, journals, transfers};

/// Another writer (another node) moves `account` on by `by` versions behind its wallet's back.
pub(crate) async fn bump_version(app: &TestApp, account: &str, by: i64) {
    app.state()
        .store
        .writer()
        .execute_unprepared(&format!(
            "UPDATE accounts SET version = version + {by} WHERE id = '{account}'"
        ))
        .await
        .expect("bump version");
}

pub(crate) async fn usd_account(app: &TestApp, token: &str) -> String {
    let wallet = app.get("/v1/wallet", token).await;
    wallet.body["accounts"][0]["id"]
        .as_str()
        .expect("account id")
        .to_owned()
}

/// Writes exactly what step 1 of a saga commits (debit entry, journal, `debited` transfer,
/// balance and version), as if the process died right after that commit.
pub(crate) async fn seed_debited_saga(
    database: &DatabaseConnection,
    from: (&str, &str),
    to: (&str, &str),
    amount: i64,
) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    let now = Utc::now();
    journals::Entity::insert(journals::ActiveModel {
        id: Set(id.clone()),
        kind: Set("transfer".into()),
        reference_type: Set("transfer".into()),
        reference_id: Set(id.clone()),
        created_at: Set(now),
    })
    .exec(database)
    .await
    .expect("journal");
    let source = accounts::Entity::find_by_id(from.1)
        .one(database)
        .await
        .expect("query")
        .expect("source");
    entries::Entity::insert(entries::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        account_id: Set(from.1.into()),
        op_key: Set(format!("transfer:{id}:debit")),
        bucket: Set("available".into()),
        amount: Set(-amount),
        balance_after: Set(source.available - amount),
        journal_id: Set(id.clone()),
        kind: Set("transfer_debit".into()),
        reference_type: Set("transfer".into()),
        reference_id: Set(id.clone()),
        created_at: Set(now),
    })
    .exec(database)
    .await
    .expect("entry");
    accounts::Entity::update_many()
        .col_expr(
            accounts::Column::Available,
            Expr::col(accounts::Column::Available).sub(amount),
        )
        .col_expr(
            accounts::Column::Version,
            Expr::col(accounts::Column::Version).add(1),
        )
        .filter(accounts::Column::Id.eq(from.1))
        .exec(database)
        .await
        .expect("debit");
    transfers::Entity::insert(transfers::ActiveModel {
        id: Set(id.clone()),
        from_user: Set(from.0.into()),
        to_user: Set(to.0.into()),
        source_account: Set(from.1.into()),
        target_account: Set(to.1.into()),
        amount: Set(amount),
        currency: Set("usd".into()),
        note: Set(None),
        state: Set("debited".into()),
        failure_code: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        kind: Set("p2p".into()),
        reference_id: Set(None),
    })
    .exec(database)
    .await
    .expect("transfer");
    id
}

async fn wait_for_status(app: &TestApp, token: &str, id: &str, status: &str) -> serde_json::Value {
    for _ in 0..200 {
        let reply = app.get(&format!("/v1/transfers/{id}"), token).await;
        if reply.body["status"] == status {
            return reply.body;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("transfer {id} never became {status}");
}

#[tokio::test]
async fn a_saga_left_in_its_middle_state_is_finished_or_compensated_at_start_up() {
    for backend in backends() {
        let mut app = spawn_app(backend).await;
        let (ada, bob) = (app.user("ada").await, app.user("bob").await);
        app.fund(&ada, 1_000).await;
        let (ada_account, bob_account) = (
            usd_account(&app, &ada.token).await,
            usd_account(&app, &bob.token).await,
        );
        app.stop().await;

        let database = Database::connect(app.database_url.as_str())
            .await
            .expect("connect");
        let finishable = seed_debited_saga(
            &database,
            (&ada.id, &ada_account),
            (&bob.id, &bob_account),
            300,
        )
        .await;
        // A target account that does not exist: the credit is refused, so the saga must refund.
        let missing_account = uuid::Uuid::now_v7().to_string();
        let refundable = seed_debited_saga(
            &database,
            (&ada.id, &ada_account),
            (&bob.id, &missing_account),
            200,
        )
        .await;
        let _ = database.close().await;

        let app = spawn_app_with(test_settings(&app.database_url)).await;
        let finished = wait_for_status(&app, &ada.token, &finishable, "completed").await;
        assert_eq!(finished["amount"], 300);
        let compensated = wait_for_status(&app, &ada.token, &refundable, "failed").await;
        assert_eq!(compensated["failure_code"], "account_not_found");
        assert_eq!(app.balance(&ada).await, (700, 0));
        assert_eq!(app.balance(&bob).await, (300, 0));
        let ada_kinds: Vec<String> = app
            .all_entries(&ada)
            .await
            .iter()
            .map(|e| e["kind"].as_str().unwrap_or("").to_owned())
            .collect();
        assert_eq!(
            ada_kinds,
            [
                "transfer_refund",
                "transfer_debit",
                "transfer_debit",
                "adjustment"
            ]
        );
    }
}

#[tokio::test]
async fn a_failed_wallet_actor_is_restarted_and_its_next_op_succeeds() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (ada, bob) = (app.user("ada").await, app.user("bob").await);
        app.fund(&ada, 1_000).await; // ada's wallet actor is now live
        let ada_account = usd_account(&app, &ada.token).await;
        let restarts = || {
            app.state()
                .metrics
                .actor_restarts_total
                .with_label_values(&["wallet"])
                .get()
        };
        assert_eq!(restarts(), 0);

        // Another writer bumps the version behind the actor's back: its next commit must be
        // rejected by the database, the actor must die, be restarted with fresh state, and the
        // op retried on the new actor must succeed.
        bump_version(&app, &ada_account, 5).await;

        let sent = app
            .transfer(&ada, &bob.email, json!(400), "after-crash")
            .await;
        assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
        assert_eq!(sent.body["status"], "completed");
        assert_eq!(
            restarts(),
            1,
            "the supervisor restarted the failed wallet actor once"
        );
        let actors = app
            .get("/v1/admin/actors", crate::helpers::ADMIN_TOKEN)
            .await;
        let wallet = actors.body["data"]
            .as_array()
            .expect("kinds")
            .iter()
            .find(|kind| kind["kind"] == "wallet")
            .cloned()
            .expect("wallet kind");
        assert_eq!(wallet["restarts"], 1);
        assert!(
            wallet["last_error"]
                .as_str()
                .is_some_and(|error| error.contains("no longer at version")),
            "{wallet}"
        );
        assert_eq!(app.balance(&ada).await, (600, 0));
        assert_eq!(app.balance(&bob).await, (400, 0));
        let again = app.transfer(&ada, &bob.email, json!(100), "next-op").await;
        assert_eq!(again.body["status"], "completed");
        assert_eq!(restarts(), 1);
    }
}

#[tokio::test]
async fn a_stuck_saga_is_resumed_periodically_while_the_app_runs() {
    for backend in backends() {
        let mut settings = test_settings(&crate::helpers::fresh_database(backend).await);
        settings.limits.saga_stale_after = Duration::from_millis(100);
        settings.limits.saga_resume_interval = Duration::from_millis(100);
        let app = spawn_app_with(settings).await;
        let (ada, bob) = (app.user("ada").await, app.user("bob").await);
        app.fund(&ada, 1_000).await;
        let (ada_account, bob_account) = (
            usd_account(&app, &ada.token).await,
            usd_account(&app, &bob.token).await,
        );

        // Seeded behind the running app's back, the way a node that died mid-saga leaves it.
        // The live wallet actor of Ada does not know about the debit, so its next write fails
        // the version check, it restarts and reloads: the ledger stays consistent either way.
        let database = Database::connect(app.database_url.as_str())
            .await
            .expect("connect");
        let stuck = seed_debited_saga(
            &database,
            (&ada.id, &ada_account),
            (&bob.id, &bob_account),
            150,
        )
        .await;
        let resumed = wait_for_status(&app, &bob.token, &stuck, "completed").await;
        assert_eq!(resumed["amount"], 150);
        assert_eq!(app.balance(&bob).await, (150, 0));
        let next = app
            .transfer(&ada, &bob.email, json!(50), "after-resume")
            .await;
        assert_eq!(next.body["status"], "completed", "{}", next.text);
        assert_eq!(app.balance(&ada).await, (800, 0));
    }
}

#[tokio::test]
async fn a_refusal_is_never_based_on_a_stale_balance() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (ada, bob) = (app.user("ada").await, app.user("bob").await);
        app.fund(&ada, 100).await; // Ada's actor is live and believes she has 100.
        let ada_account = usd_account(&app, &ada.token).await;

        // Another node credits Ada 900 (balance, version and the entry, as a commit would).
        let database = Database::connect(app.database_url.as_str())
            .await
            .expect("connect");
        let id = uuid::Uuid::now_v7().to_string();
        journals::Entity::insert(journals::ActiveModel {
            id: Set(id.clone()),
            kind: Set("adjustment".into()),
            reference_type: Set("adjustment".into()),
            reference_id: Set(id.clone()),
            created_at: Set(Utc::now()),
        })
        .exec(&database)
        .await
        .expect("journal");
        entries::Entity::insert(entries::ActiveModel {
            id: Set(uuid::Uuid::now_v7().to_string()),
            account_id: Set(ada_account.clone()),
            op_key: Set(format!("other-node:{id}")),
            bucket: Set("available".into()),
            amount: Set(900),
            balance_after: Set(1_000),
            journal_id: Set(id.clone()),
            kind: Set("adjustment".into()),
            reference_type: Set("adjustment".into()),
            reference_id: Set(id),
            created_at: Set(Utc::now()),
        })
        .exec(&database)
        .await
        .expect("entry");
        accounts::Entity::update_many()
            .col_expr(
                accounts::Column::Available,
                Expr::col(accounts::Column::Available).add(900),
            )
            .col_expr(
                accounts::Column::Version,
                Expr::col(accounts::Column::Version).add(1),
            )
            .filter(accounts::Column::Id.eq(ada_account.as_str()))
            .exec(&database)
            .await
            .expect("credit behind the actor's back");

        let sent = app
            .transfer(&ada, &bob.email, json!(500), "needs-fresh-balance")
            .await;
        assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
        assert_eq!(sent.body["status"], "completed");
        assert_eq!(app.balance(&ada).await, (500, 0));
    }
}

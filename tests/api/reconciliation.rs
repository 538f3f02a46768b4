use crate::crash_safety::{seed_debited_saga, usd_account};
use crate::helpers::{
    ADMIN_TOKEN, Backend, TestApp, TestUser, backends, fresh_database, spawn_app, spawn_app_with,
    test_settings,
};
use reqwest::StatusCode;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ColumnTrait, Database, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use std::time::Duration;
use walleti::store::entities::{accounts, entries, journals, onramps};

pub(crate) async fn reconcile(app: &TestApp) -> Value {
    let reply = app
        .post(
            "/v1/admin/reconciliations",
            Some(ADMIN_TOKEN),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.body
}

async fn bank_top_up(
    app: &TestApp,
    user: &TestUser,
    amount: i64,
    key: &str,
    approve: bool,
) -> (String, String) {
    let onramp = app
        .post(
            "/v1/onramps",
            Some(&user.token),
            Some(key),
            &json!({"provider": "bank", "amount": amount, "currency": "usd"}),
        )
        .await;
    let id = onramp.body["id"].as_str().expect("id").to_owned();
    let payment = onramp.body["redirect_url"]
        .as_str()
        .and_then(|u| u.rsplit('/').next())
        .expect("payment")
        .to_owned();
    if approve {
        app.client
            .post(format!(
                "{}/bank-sim/api/payments/{payment}/approve",
                app.address
            ))
            .send()
            .await
            .expect("approve");
    }
    (id, payment)
}

/// An entry written straight into the database, past the ledger.
fn forged_entry(
    account: &str,
    journal: &str,
    amount: i64,
    balance_after: i64,
) -> entries::ActiveModel {
    entries::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        account_id: Set(account.to_owned()),
        op_key: Set(format!("forged:{journal}")),
        bucket: Set("available".into()),
        amount: Set(amount),
        balance_after: Set(balance_after),
        journal_id: Set(journal.to_owned()),
        kind: Set("adjustment".into()),
        reference_type: Set("adjustment".into()),
        reference_id: Set(journal.to_owned()),
        created_at: Set(chrono::Utc::now()),
    }
}

async fn wait_for_balance(app: &TestApp, user: &TestUser, available: i64) {
    for _ in 0..250 {
        if app.balance(user).await.0 == available {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("balance never reached {available}");
}

#[tokio::test]
async fn a_clean_ledger_is_reported_clean_and_each_seeded_discrepancy_is_found() {
    for backend in backends() {
        let mut settings = test_settings(&fresh_database(backend).await);
        settings.limits.saga_stale_after = Duration::from_millis(50);
        settings.limits.saga_resume_interval = Duration::from_secs(3600);
        let app = spawn_app_with(settings).await;
        let (ada, bob) = (app.user("ada").await, app.user("bob").await);
        app.fund(&ada, 10_000).await;
        let (first_top_up, _) = bank_top_up(&app, &bob, 2_000, "bob-1", true).await;
        wait_for_balance(&app, &bob, 2_000).await;
        let sent = app.transfer(&ada, &bob.email, json!(1_500), "t-1").await;
        assert_eq!(sent.body["status"], "completed");

        // Clean, once the relay has published every event.
        let database = Database::connect(app.database_url.as_str())
            .await
            .expect("connect");
        for _ in 0..250 {
            let unpublished = walleti::store::entities::outbox::Entity::find()
                .filter(walleti::store::entities::outbox::Column::PublishedAt.is_null())
                .all(&database)
                .await
                .expect("outbox");
            if unpublished.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let clean = reconcile(&app).await;
        assert_eq!(clean["object"], "reconciliation");
        assert_eq!(clean["status"], "clean", "{clean}");
        assert_eq!(clean["discrepancy_count"], 0);
        assert_eq!(clean["counts"]["balance_mismatch"], 0);
        let read = app
            .get(
                &format!(
                    "/v1/admin/reconciliations/{}",
                    clean["id"].as_str().expect("id")
                ),
                ADMIN_TOKEN,
            )
            .await;
        assert_eq!(read.body["id"], clean["id"]);
        let metrics = app
            .request(reqwest::Method::GET, "/metrics", None, None, None)
            .await
            .text;
        assert!(
            metrics.contains("walleti_reconciliation_discrepancies{kind=\"balance_mismatch\"} 0")
        );
        assert!(
            metrics.contains("walleti_ledger_wallet_balance{currency=\"usd\"} 12000"),
            "wallets hold 10000 + 2000"
        );
        assert!(
            metrics.contains("walleti_sagas{state=\"completed\"} 1"),
            "one completed transfer saga"
        );
        let backlog: i64 = metrics
            .lines()
            .find_map(|line| line.strip_prefix("walleti_outbox_backlog "))
            .and_then(|value| value.trim().parse().ok())
            .expect("outbox backlog gauge");
        assert_eq!(backlog, 0, "the relay had published every event");

        // Seed one of each kind.
        let database = Database::connect(app.database_url.as_str())
            .await
            .expect("connect");
        let (ada_account, bob_account) = (
            usd_account(&app, &ada.token).await,
            usd_account(&app, &bob.token).await,
        );
        // 1. A balance row tampered with directly in the database.
        accounts::Entity::update_many()
            .col_expr(
                accounts::Column::Available,
                Expr::col(accounts::Column::Available).add(7),
            )
            .filter(accounts::Column::Id.eq(ada_account.as_str()))
            .exec(&database)
            .await
            .expect("tamper");
        // 2. A one-sided entry (bob's balance follows it, so only the journal is wrong).
        let journal = uuid::Uuid::now_v7().to_string();
        journals::Entity::insert(journals::ActiveModel {
            id: Set(journal.clone()),
            kind: Set("adjustment".into()),
            reference_type: Set("adjustment".into()),
            reference_id: Set(journal.clone()),
            created_at: Set(chrono::Utc::now()),
        })
        .exec(&database)
        .await
        .expect("journal");
        entries::Entity::insert(forged_entry(&bob_account, &journal, 5, 505))
            .exec(&database)
            .await
            .expect("entry");
        accounts::Entity::update_many()
            .col_expr(
                accounts::Column::Available,
                Expr::col(accounts::Column::Available).add(5),
            )
            .filter(accounts::Column::Id.eq(bob_account.as_str()))
            .exec(&database)
            .await
            .expect("follow");
        // 3. A saga stuck in its middle state.
        let stuck = seed_debited_saga(
            &database,
            (&ada.id, &ada_account),
            (&bob.id, &bob_account),
            100,
        )
        .await;
        // 4. The bank paid, but its webhook never arrived (delayed far beyond the test).
        app.client
            .post(format!("{}/bank-sim/api/faults", app.address))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .json(&json!({"delay_ms": 600_000}))
            .send()
            .await
            .expect("faults");
        let (unsettled, _) = bank_top_up(&app, &bob, 300, "bob-2", true).await;
        // 5. An on-ramp marked succeeded that the bank never paid.
        let (unpaid, _) = bank_top_up(&app, &bob, 400, "bob-3", false).await;
        onramps::Entity::update_many()
            .col_expr(onramps::Column::Status, Expr::value("succeeded"))
            .filter(onramps::Column::Id.eq(unpaid.as_str()))
            .exec(&database)
            .await
            .expect("mark");
        // 6. The ledger's record of a settled top-up disagrees with the bank's amount.
        onramps::Entity::update_many()
            .col_expr(onramps::Column::Amount, Expr::value(2_001))
            .filter(onramps::Column::Id.eq(first_top_up.as_str()))
            .exec(&database)
            .await
            .expect("tamper amount");
        tokio::time::sleep(Duration::from_millis(100)).await; // make the seeded saga stale

        let report = reconcile(&app).await;
        assert_eq!(report["status"], "discrepancies");
        let counts = &report["counts"];
        assert_eq!(counts["balance_mismatch"], 1, "{report}");
        assert_eq!(counts["journal_unbalanced"], 1, "{report}");
        assert_eq!(counts["ledger_not_zero"], 1, "{report}");
        assert_eq!(counts["stuck_saga"], 1, "{report}");
        assert_eq!(counts["missing_in_ledger"], 1, "{report}");
        assert_eq!(counts["missing_at_provider"], 1, "{report}");
        assert_eq!(counts["amount_mismatch"], 1, "{report}");
        assert_eq!(counts["status_mismatch"], 0, "{report}");
        let find = |kind: &str| -> Value {
            report["discrepancies"]
                .as_array()
                .expect("list")
                .iter()
                .find(|d| d["kind"] == kind)
                .cloned()
                .unwrap_or(Value::Null)
        };
        assert_eq!(
            find("balance_mismatch")["reference"]["id"],
            ada_account.as_str()
        );
        assert_eq!(
            find("journal_unbalanced")["reference"]["id"],
            journal.as_str()
        );
        assert_eq!(find("stuck_saga")["reference"]["id"], stuck.as_str());
        assert_eq!(find("stuck_saga")["detail"]["action"], "resumed");
        assert_eq!(
            find("missing_in_ledger")["reference"]["id"],
            unsettled.as_str()
        );
        assert_eq!(
            find("missing_at_provider")["reference"]["id"],
            unpaid.as_str()
        );
        let metrics = app
            .request(reqwest::Method::GET, "/metrics", None, None, None)
            .await
            .text;
        assert!(metrics.contains("walleti_reconciliation_discrepancies{kind=\"stuck_saga\"} 1"));

        // The stuck saga was resumed by the reconciler.
        for _ in 0..250 {
            if app
                .get(&format!("/v1/transfers/{stuck}"), &ada.token)
                .await
                .body["status"]
                == "completed"
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            app.get(&format!("/v1/transfers/{stuck}"), &ada.token)
                .await
                .body["status"],
            "completed"
        );
        let listed = app
            .get("/v1/admin/reconciliations?limit=1", ADMIN_TOKEN)
            .await;
        assert_eq!(listed.body["data"][0]["id"], report["id"]);
        assert_eq!(listed.body["has_more"], true);
        assert_eq!(
            app.get("/v1/admin/reconciliations", &ada.token)
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }
}

/// An entry must belong to an account and a journal that exist. SQLite's foreign keys refuse
/// any other; on PostgreSQL the writer is what guards it (migration
/// `entries_checked_by_the_writer`), and the reconciler finds an entry that got past it.
#[tokio::test]
async fn an_entry_without_its_account_or_journal_is_refused_or_found() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (ada, bob) = (app.user("ada").await, app.user("bob").await);
        app.fund(&ada, 1_000).await;
        let sent = app.transfer(&ada, &bob.email, json!(300), "t-1").await;
        assert_eq!(sent.body["status"], "completed");
        let bob_account = usd_account(&app, &bob.token).await;
        let clean = reconcile(&app).await;
        assert_eq!(clean["counts"]["orphan_entry"], 0, "{clean}");

        let database = Database::connect(app.database_url.as_str())
            .await
            .expect("connect");
        let entry = |account: &str, journal: &str| forged_entry(account, journal, 5, 5);
        let (no_account, no_journal) = (
            uuid::Uuid::now_v7().to_string(),
            uuid::Uuid::now_v7().to_string(),
        );
        // A journal that exists (the funding's or the transfer's) on an account that does
        // not, and an account that exists with a journal that does not.
        let transfer_journal: String = journals::Entity::find()
            .one(&database)
            .await
            .expect("journals")
            .expect("a journal")
            .id;
        let forged = [
            entry(&no_account, &transfer_journal),
            entry(&bob_account, &no_journal),
        ];
        let ids: Vec<String> = forged.iter().map(|row| row.id.clone().unwrap()).collect();
        for row in forged {
            let inserted = entries::Entity::insert(row).exec(&database).await;
            match backend {
                Backend::Sqlite => {
                    let error = inserted.expect_err("SQLite's foreign keys refuse it");
                    assert!(error.to_string().contains("FOREIGN KEY"), "{error}");
                }
                Backend::Postgres => {
                    inserted.expect("PostgreSQL has no foreign key on entries");
                }
            }
        }
        let report = reconcile(&app).await;
        match backend {
            Backend::Sqlite => assert_eq!(report["status"], "clean", "{report}"),
            Backend::Postgres => {
                assert_eq!(report["counts"]["orphan_entry"], 2, "{report}");
                let detail = |id: &str| -> Value {
                    report["discrepancies"]
                        .as_array()
                        .expect("list")
                        .iter()
                        .find(|finding| {
                            finding["kind"] == "orphan_entry" && finding["reference"]["id"] == id
                        })
                        .map(|finding| finding["detail"].clone())
                        .unwrap_or_else(|| panic!("entry {id} not found: {report}"))
                };
                assert_eq!(
                    detail(&ids[0]),
                    json!({"missing_account": no_account, "missing_journal": null})
                );
                assert_eq!(
                    detail(&ids[1]),
                    json!({"missing_account": null, "missing_journal": no_journal})
                );
            }
        }
    }
}

#[tokio::test]
async fn payouts_are_compared_with_the_banks_payout_statement() {
    let app = spawn_app_with(test_settings(
        &fresh_database(crate::helpers::Backend::Sqlite).await,
    ))
    .await;
    let ada = app.user("ada").await;
    app.fund(&ada, 10_000).await;
    let faults = |body: Value| {
        let app = &app;
        async move {
            let reply = app
                .client
                .post(format!("{}/bank-sim/api/faults", app.address))
                .bearer_auth(ADMIN_TOKEN)
                .json(&body)
                .send()
                .await
                .expect("faults");
            assert_eq!(reply.status(), StatusCode::OK);
        }
    };
    let payout = |key: &'static str| {
        let app = &app;
        let token = ada.token.clone();
        async move {
            let reply = app
                .post(
                    "/v1/payouts",
                    Some(&token),
                    Some(key),
                    &json!({"amount": 1_000, "currency": "usd"}),
                )
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
            let id = reply.body["id"].as_str().expect("id").to_owned();
            for _ in 0..250 {
                let read = app.get(&format!("/v1/payouts/{id}"), &token).await;
                if read.body["status"] != "pending" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            id
        }
    };
    // 1. Paid and settled: nothing to report.
    let settled = payout("payout-settled").await;
    for _ in 0..250 {
        if app
            .get(&format!("/v1/payouts/{settled}"), &ada.token)
            .await
            .body["status"]
            == "paid"
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reconcile(&app).await["status"], "clean");
    // 2. The bank paid, its webhook never came.
    faults(json!({"delay_ms": 600_000})).await;
    let unsettled = payout("payout-unsettled").await;
    // 3. walleti says paid, the bank never paid.
    faults(json!({"payouts": "manual"})).await;
    let unpaid = payout("payout-unpaid").await;
    let database = Database::connect(app.database_url.as_str())
        .await
        .expect("connect");
    walleti::store::entities::payouts::Entity::update_many()
        .col_expr(
            walleti::store::entities::payouts::Column::Status,
            Expr::value("paid"),
        )
        .filter(walleti::store::entities::payouts::Column::Id.eq(unpaid.as_str()))
        .exec(&database)
        .await
        .expect("seed");

    let report = reconcile(&app).await;
    let found = |kind: &str| -> Vec<String> {
        report["discrepancies"]
            .as_array()
            .expect("list")
            .iter()
            .filter(|d| d["kind"] == kind && d["reference"]["type"] == "payout")
            .map(|d| d["reference"]["id"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(found("missing_in_ledger"), vec![unsettled], "{report}");
    assert_eq!(found("missing_at_provider"), vec![unpaid], "{report}");
}

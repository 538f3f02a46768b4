//! Group commit (the `LedgerWriter`): many wallets' batches in one transaction, and a conflict
//! in one batch failing only that batch.

use crate::crash_safety::{bump_version, usd_account};
use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, TestUser, backends, spawn_app};
use crate::reconciliation::reconcile;
use futures_util::future::join_all;
use reqwest::StatusCode;
use sea_orm::sea_query::PostgresQueryBuilder;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;
use walleti::domain::{AccountId, Bucket, Currency, JournalId, Posting, TransferId, TransferState};
use walleti::store::accounts::{Owner, SystemAccount};
use walleti::store::group_commit::{GroupPath, PlannedBatch, completion_update};
use walleti::store::idempotency::{ClaimRow, CompletionRow, IdempotencyWrite};
use walleti::store::ledger::{AccountWrite, AppliedMovement, Effect, JournalSpec, Reference};

const CREDIT: i64 = 10;

/// A batch that credits `account` by `CREDIT` from the `adjustments` system account, planned
/// against the account as the database has it now (what a wallet actor would have planned).
async fn credit_batch(app: &TestApp, account: &str, op_key: &str) -> PlannedBatch {
    let store = &app.state().store;
    let id: AccountId = account.parse().expect("account id");
    let record = store
        .load_account(id)
        .await
        .expect("load")
        .expect("account exists");
    let usd = Currency::parse("usd").expect("usd");
    let adjustments = store
        .account_id(&Owner::System(SystemAccount::Adjustments), usd)
        .await
        .expect("read")
        .expect("system account");
    let after = record.balance.available + CREDIT;
    PlannedBatch {
        account: AccountWrite {
            account: id,
            expected_version: record.version,
            expected_available: record.balance.available,
            expected_locked: record.balance.locked,
            available: after,
            locked: record.balance.locked,
            steps: 1,
        },
        movements: vec![AppliedMovement {
            op_key: op_key.to_owned(),
            kind: "adjustment",
            journal: JournalSpec {
                id: JournalId::generate(),
                kind: "adjustment",
                is_new: true,
            },
            reference: Reference {
                kind: "adjustment",
                id: op_key.to_owned(),
            },
            postings: vec![(
                Posting {
                    bucket: Bucket::Available,
                    amount: CREDIT,
                },
                after,
            )],
            counterpart: Some(adjustments),
            effect: Effect::None,
            idempotency: Default::default(),
        }],
    }
}

async fn funded_users(app: &TestApp, count: usize) -> Vec<(TestUser, String)> {
    let mut users = Vec::new();
    for index in 0..count {
        let user = app.user(&format!("group{index}")).await;
        app.fund(&user, 1_000).await;
        let account = usd_account(app, &user.token).await;
        users.push((user, account));
    }
    users
}

/// Commits `offending` in one group with `bystander` (another wallet's batch): the combined
/// attempt fails, the group is written with one savepoint per batch, and only `offending` fails.
async fn commit_beside_bystander(
    app: &TestApp,
    offending: PlannedBatch,
    bystander: PlannedBatch,
    backend: Backend,
) {
    let outcome = app
        .state()
        .store
        .commit_group(&[offending, bystander], chrono::Utc::now())
        .await;
    assert_eq!(outcome.path, GroupPath::Isolated, "{backend:?}");
    assert!(outcome.results[0].is_err(), "the offending batch must fail");
    assert!(outcome.results[1].is_ok(), "{:?}", outcome.results[1]);
}

#[tokio::test]
async fn a_stale_account_fails_only_its_own_batch_and_its_wallet_recovers() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let users = funded_users(&app, 3).await;
        let mut batches = Vec::new();
        for (index, (_, account)) in users.iter().enumerate() {
            batches.push(credit_batch(&app, account, &format!("group-test:{index}")).await);
        }
        // Another writer (another node) moves the second account on after it was planned.
        bump_version(&app, &users[1].1, 1).await;

        let outcome = app
            .state()
            .store
            .commit_group(&batches, chrono::Utc::now())
            .await;

        // SQLite leaves the stale batch out of the combined transaction; PostgreSQL writes the
        // group as one statement, which counts one balance short, and goes the savepoint way.
        let expected = match backend {
            Backend::Sqlite => GroupPath::Combined,
            Backend::Postgres => GroupPath::Isolated,
        };
        assert_eq!(outcome.path, expected, "{backend:?}");
        assert!(outcome.results[0].is_ok(), "{:?}", outcome.results[0]);
        assert!(
            outcome.results[1].is_err(),
            "the stale batch must fail ({backend:?})"
        );
        assert!(outcome.results[2].is_ok(), "{:?}", outcome.results[2]);
        assert_eq!(app.balance(&users[0].0).await, (1_000 + CREDIT, 0));
        assert_eq!(
            app.balance(&users[1].0).await,
            (1_000, 0),
            "nothing written"
        );
        assert_eq!(app.balance(&users[2].0).await, (1_000 + CREDIT, 0));

        // Every wallet actor now holds a stale version; their next ops reload and succeed.
        for (from, to) in [(0, 1), (1, 2), (2, 0)] {
            let reply = app
                .transfer(
                    &users[from].0,
                    &users[to].0.id,
                    json!(7),
                    &format!("after-{from}"),
                )
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
            assert_eq!(reply.body["status"], "completed");
        }
        assert_eq!(app.balance(&users[1].0).await, (1_000, 0));
        assert_eq!(reconcile(&app).await["status"], "clean", "{backend:?}");
    }
}

#[tokio::test]
async fn a_duplicate_op_key_fails_only_its_own_batch() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let users = funded_users(&app, 2).await;
        let first = credit_batch(&app, &users[0].1, "group-test:dup").await;
        let outcome = app
            .state()
            .store
            .commit_group(std::slice::from_ref(&first), chrono::Utc::now())
            .await;
        assert!(outcome.results[0].is_ok());

        // The same op again (a retry not marked as a replay), grouped with another wallet's.
        let again = credit_batch(&app, &users[0].1, "group-test:dup").await;
        let other = credit_batch(&app, &users[1].1, "group-test:other").await;
        commit_beside_bystander(&app, again, other, backend).await;
        assert_eq!(
            app.balance(&users[0].0).await,
            (1_000 + CREDIT, 0),
            "credited once"
        );
        assert_eq!(app.balance(&users[1].0).await, (1_000 + CREDIT, 0));
        assert_eq!(reconcile(&app).await["status"], "clean", "{backend:?}");
    }
}

/// A group of one batch goes the same way as a larger one (its movements in multi-row
/// statements): committed when its account is where it was planned, failed and nothing written
/// when another writer moved the account on.
#[tokio::test]
async fn a_group_of_one_batch_is_written_like_any_group() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let users = funded_users(&app, 1).await;
        let batch = credit_batch(&app, &users[0].1, "group-test:alone").await;
        let outcome = app
            .state()
            .store
            .commit_group(&[batch], chrono::Utc::now())
            .await;
        assert_eq!(outcome.path, GroupPath::Combined, "{backend:?}");
        assert!(outcome.results[0].is_ok(), "{:?}", outcome.results[0]);
        assert_eq!(app.balance(&users[0].0).await, (1_000 + CREDIT, 0));

        let stale = credit_batch(&app, &users[0].1, "group-test:alone-stale").await;
        bump_version(&app, &users[0].1, 1).await;
        let outcome = app
            .state()
            .store
            .commit_group(&[stale], chrono::Utc::now())
            .await;
        assert!(
            outcome.results[0].is_err(),
            "the stale batch must fail ({backend:?})"
        );
        assert_eq!(
            app.balance(&users[0].0).await,
            (1_000 + CREDIT, 0),
            "nothing written ({backend:?})"
        );
    }
}

/// Asserts how many journal rows and entries the journal `id` has.
async fn assert_journal(app: &TestApp, id: JournalId, journals: i64, entries: i64) {
    let count = |table: &str, column: &str| {
        let database = app.state().store.writer();
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE {column} = '{id}'");
        async move {
            let row = database
                .query_one_raw(Statement::from_string(database.get_database_backend(), sql))
                .await
                .expect("read")
                .expect("a count");
            row.try_get_by_index::<i64>(0).expect("count")
        }
    };
    assert_eq!(count("journals", "id").await, journals, "journal {id}");
    assert_eq!(
        count("entries", "journal_id").await,
        entries,
        "entries of {id}"
    );
}

/// Journals are inserted without `ON CONFLICT` in PostgreSQL's combined statement (cheaper).
/// A journal two batches of one group open is still inserted once, the combined way; a journal
/// already in the database fails the combined statement there, and the savepoint way (which
/// skips a journal that is there) writes every batch.
#[tokio::test]
async fn a_journal_is_written_once_whoever_opens_it() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let users = funded_users(&app, 3).await;
        let first = credit_batch(&app, &users[0].1, "group-test:journal-a").await;
        let mut second = credit_batch(&app, &users[1].1, "group-test:journal-b").await;
        let shared = first.movements[0].journal.id;
        second.movements[0].journal.id = shared;
        let outcome = app
            .state()
            .store
            .commit_group(&[first, second], chrono::Utc::now())
            .await;
        assert_eq!(outcome.path, GroupPath::Combined, "{backend:?}");
        assert!(outcome.results.iter().all(Result::is_ok), "{outcome:?}");
        // Each credit has its entry and the adjustments account's counterpart.
        assert_journal(&app, shared, 1, 4).await;

        let mut late = credit_batch(&app, &users[2].1, "group-test:journal-c").await;
        late.movements[0].journal.id = shared;
        let bystander = credit_batch(&app, &users[0].1, "group-test:journal-d").await;
        let outcome = app
            .state()
            .store
            .commit_group(&[late, bystander], chrono::Utc::now())
            .await;
        let expected = match backend {
            Backend::Postgres => GroupPath::Isolated,
            Backend::Sqlite => GroupPath::Combined,
        };
        assert_eq!(outcome.path, expected, "{backend:?}");
        assert!(outcome.results.iter().all(Result::is_ok), "{outcome:?}");
        assert_journal(&app, shared, 1, 6).await;
        assert_eq!(app.balance(&users[2].0).await, (1_000 + CREDIT, 0));
        assert_eq!(app.balance(&users[0].0).await, (1_000 + 2 * CREDIT, 0));
        reconcile(&app).await;
    }
}

/// A stale batch that carries its request's idempotency claim fails together with the claim:
/// a claim left behind would say the request's first money step committed when none of it did,
/// and every retry of the request would lose its own claim to it.
#[tokio::test]
async fn a_stale_batch_leaves_no_idempotency_claim_behind() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let users = funded_users(&app, 2).await;
        let mut stale = credit_batch(&app, &users[0].1, "group-test:stale-claim").await;
        stale.movements[0].idempotency = IdempotencyWrite::Claim(Box::new(ClaimRow {
            caller: format!("user:{}", users[0].0.id),
            key: "stale-claim".into(),
            fingerprint: "0".repeat(64),
            resource_id: "stale-claim-resource".into(),
            claim_token: "stale-claim-token".into(),
            now: chrono::Utc::now(),
        }));
        let other = credit_batch(&app, &users[1].1, "group-test:beside-stale").await;
        // Another writer (another node) moves the account on after the batch was planned.
        bump_version(&app, &users[0].1, 1).await;

        commit_beside_bystander(&app, stale, other, backend).await;
        let database = app.state().store.writer();
        let left = database
            .query_one_raw(Statement::from_string(
                database.get_database_backend(),
                "SELECT COUNT(*) FROM idempotency_keys WHERE key = 'stale-claim'",
            ))
            .await
            .expect("count")
            .expect("row")
            .try_get_by_index::<i64>(0)
            .expect("count");
        assert_eq!(left, 0, "the stale batch's claim stayed ({backend:?})");
        assert_eq!(
            app.balance(&users[0].0).await,
            (1_000, 0),
            "nothing written"
        );
        assert_eq!(app.balance(&users[1].0).await, (1_000 + CREDIT, 0));
    }
}

/// A batch whose idempotency key another request already holds (a duplicate sent to another
/// node) fails alone: its balance is not written, the other request's claim is left as it was,
/// and the batch beside it commits.
#[tokio::test]
async fn a_claim_held_by_another_request_fails_only_its_own_batch() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let users = funded_users(&app, 2).await;
        let claim = |token: &str| ClaimRow {
            caller: format!("user:{}", users[0].0.id),
            key: "held-key".into(),
            fingerprint: "0".repeat(64),
            resource_id: format!("{token}-resource"),
            claim_token: token.into(),
            now: chrono::Utc::now(),
        };
        // The other request's first step committed with its claim.
        let mut first = credit_batch(&app, &users[0].1, "group-test:held-first").await;
        first.movements[0].idempotency = IdempotencyWrite::Claim(Box::new(claim("first")));
        let outcome = app
            .state()
            .store
            .commit_group(&[first], chrono::Utc::now())
            .await;
        assert!(outcome.results[0].is_ok(), "{:?}", outcome.results[0]);

        let mut duplicate = credit_batch(&app, &users[0].1, "group-test:held-second").await;
        duplicate.movements[0].idempotency = IdempotencyWrite::Claim(Box::new(claim("second")));
        let bystander = credit_batch(&app, &users[1].1, "group-test:beside-held").await;
        let outcome = app
            .state()
            .store
            .commit_group(&[duplicate, bystander], chrono::Utc::now())
            .await;
        assert!(
            outcome.results[0].is_err(),
            "the duplicate must fail ({backend:?})"
        );
        assert!(outcome.results[1].is_ok(), "{:?}", outcome.results[1]);
        assert_eq!(
            app.balance(&users[0].0).await,
            (1_000 + CREDIT, 0),
            "only the first request's credit ({backend:?})"
        );
        assert_eq!(app.balance(&users[1].0).await, (1_000 + CREDIT, 0));
        let database = app.state().store.writer();
        let token = database
            .query_one_raw(Statement::from_string(
                database.get_database_backend(),
                "SELECT claim_token FROM idempotency_keys WHERE key = 'held-key'",
            ))
            .await
            .expect("claim")
            .expect("row")
            .try_get_by_index::<String>(0)
            .expect("token");
        assert_eq!(token, "first", "{backend:?}");
    }
}

/// A P2P completion whose transfer is no longer `debited` (the saga guard matches nothing)
/// fails only its own batch; on PostgreSQL the guard's count comes back with the group's
/// combined statement.
#[tokio::test]
async fn a_completion_whose_transfer_is_not_debited_fails_only_its_own_batch() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let users = funded_users(&app, 3).await;
        let sent = app
            .transfer(&users[0].0, &users[1].0.email, json!(100), "guard-1")
            .await;
        assert_eq!(sent.body["status"], "completed", "{}", sent.text);
        let id = sent.body["id"].as_str().expect("transfer id");
        let completed = app
            .state()
            .store
            .find_transfer(id.parse().expect("id"))
            .await
            .expect("read")
            .expect("transfer");
        // Completing it again, as a confused saga would.
        let mut stale = credit_batch(&app, &users[1].1, "group-test:complete-again").await;
        stale.movements[0].effect = Effect::CompleteTransfer(Box::new(completed));
        let other = credit_batch(&app, &users[2].1, "group-test:bystander").await;
        commit_beside_bystander(&app, stale, other, backend).await;
        assert_eq!(app.balance(&users[1].0).await, (1_000 + 100, 0));
        assert_eq!(app.balance(&users[2].0).await, (1_000 + CREDIT, 0));
        assert_eq!(reconcile(&app).await["status"], "clean", "{backend:?}");
    }
}

/// One leg of a P2P move: `amount` (negative: a debit) on `account` with no system account on
/// the other side, as a transfer saga's steps are (the other leg is another wallet's batch).
/// The legs of one move share `journal`; the debit opens it.
async fn p2p_leg(
    app: &TestApp,
    account: &str,
    op_key: &str,
    amount: i64,
    journal: JournalId,
) -> PlannedBatch {
    let mut batch = credit_batch(app, account, op_key).await;
    batch.movements[0].journal.id = journal;
    batch.movements[0].journal.is_new = amount < 0;
    let after = batch.account.available - CREDIT + amount;
    batch.account.available = after;
    let movement = &mut batch.movements[0];
    movement.counterpart = None;
    movement.kind = "transfer_debit";
    movement.postings = vec![(
        Posting {
            bucket: Bucket::Available,
            amount,
        },
        after,
    )];
    batch
}

/// A group of P2P legs only (no system account's side, no other effect) is written as one
/// statement that is its own transaction (on PostgreSQL: no BEGIN, no COMMIT). One stale
/// account in it fails that statement as a whole (nothing of it stays) and the group goes the
/// savepoint way: only the stale batch fails, the move beside it commits, money is conserved.
#[tokio::test]
async fn a_group_of_p2p_legs_commits_alone_and_a_stale_leg_fails_only_itself() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let users = funded_users(&app, 4).await;
        // A move of 30 from the first user to the second, in one group.
        let journal = JournalId::generate();
        let debit = p2p_leg(&app, &users[0].1, "p2p-leg:debit", -30, journal).await;
        let credit = p2p_leg(&app, &users[1].1, "p2p-leg:credit", 30, journal).await;
        let outcome = app
            .state()
            .store
            .commit_group(&[debit, credit], chrono::Utc::now())
            .await;
        assert_eq!(outcome.path, GroupPath::Combined, "{backend:?}");
        assert!(outcome.results.iter().all(Result::is_ok), "{outcome:?}");

        // Another move (third → fourth) beside a stale debit of the first user.
        let stale = p2p_leg(
            &app,
            &users[0].1,
            "p2p-leg:stale",
            -5,
            JournalId::generate(),
        )
        .await;
        bump_version(&app, &users[0].1, 1).await;
        let journal = JournalId::generate();
        let debit = p2p_leg(&app, &users[2].1, "p2p-leg:debit-2", -40, journal).await;
        let credit = p2p_leg(&app, &users[3].1, "p2p-leg:credit-2", 40, journal).await;
        let outcome = app
            .state()
            .store
            .commit_group(&[debit, stale, credit], chrono::Utc::now())
            .await;
        let expected = match backend {
            Backend::Sqlite => GroupPath::Combined,
            Backend::Postgres => GroupPath::Isolated,
        };
        assert_eq!(outcome.path, expected, "{backend:?}");
        assert!(outcome.results[0].is_ok(), "{:?}", outcome.results[0]);
        assert!(outcome.results[1].is_err(), "the stale leg must fail");
        assert!(outcome.results[2].is_ok(), "{:?}", outcome.results[2]);
        assert_eq!(app.balance(&users[0].0).await, (1_000 - 30, 0));
        assert_eq!(app.balance(&users[1].0).await, (1_000 + 30, 0));
        assert_eq!(app.balance(&users[2].0).await, (1_000 - 40, 0));
        assert_eq!(app.balance(&users[3].0).await, (1_000 + 40, 0));
        assert_eq!(reconcile(&app).await["status"], "clean", "{backend:?}");
    }
}

/// A P2P transfer's two legs as its saga sends them: the debit opens the transfer and claims the
/// request's idempotency key, the credit completes it and stores the response.
async fn transfer_legs(
    app: &TestApp,
    from: &(TestUser, String),
    to: &(TestUser, String),
    amount: i64,
    key: &str,
) -> (PlannedBatch, PlannedBatch, TransferId) {
    let record = crate::helpers::p2p_transfer((&from.0.id, &from.1), (&to.0.id, &to.1), amount);
    let (id, journal, now) = (record.id, record.journal_id, record.created_at);
    let caller = format!("user:{}", from.0.id);
    let mut debit = p2p_leg(
        app,
        &from.1,
        &format!("transfer:{id}:debit"),
        -amount,
        journal,
    )
    .await;
    debit.movements[0].effect = Effect::OpenTransfer(Box::new(record.clone()));
    debit.movements[0].idempotency = IdempotencyWrite::Claim(Box::new(ClaimRow {
        caller: caller.clone(),
        key: key.into(),
        fingerprint: "0".repeat(64),
        resource_id: id.to_string(),
        claim_token: format!("{key}-token"),
        now,
    }));
    let mut credit = p2p_leg(
        app,
        &to.1,
        &format!("transfer:{id}:credit"),
        amount,
        journal,
    )
    .await;
    credit.movements[0].kind = "transfer_credit";
    credit.movements[0].effect = Effect::CompleteTransfer(Box::new(record));
    credit.movements[0].idempotency = IdempotencyWrite::Complete(Box::new(CompletionRow {
        caller,
        key: key.into(),
        status: 201,
        body: format!("{{\"id\":\"{id}\"}}"),
    }));
    (debit, credit, id)
}

/// The idempotency row of `key`: (response status, response body, claim token, locked).
async fn idempotency_row(
    app: &TestApp,
    key: &str,
) -> Option<(Option<i32>, Option<String>, Option<String>, bool)> {
    let database = app.state().store.writer();
    let row = database
        .query_one_raw(Statement::from_string(
            database.get_database_backend(),
            format!(
                "SELECT response_status, response_body, claim_token, locked_at IS NOT NULL \
                 FROM idempotency_keys WHERE key = '{key}'"
            ),
        ))
        .await
        .expect("read")?;
    Some((
        row.try_get_by_index(0).expect("status"),
        row.try_get_by_index(1).expect("body"),
        row.try_get_by_index(2).expect("token"),
        row.try_get_by_index(3).expect("locked"),
    ))
}

/// A transfer's credit can join its debit's group (the source's wallet sends it on as soon as
/// the debit is planned). The pair is then written as one completed transfer in the combined
/// way: the transfer inserted `completed` and the request's key inserted with its response
/// (in PostgreSQL's one statement the completion's UPDATE could not see the debit's INSERT).
#[tokio::test]
async fn a_transfer_whose_legs_share_a_group_is_written_completed_at_once() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let users = funded_users(&app, 2).await;
        let (debit, credit, id) = transfer_legs(&app, &users[0], &users[1], 30, "legs-1").await;
        let outcome = app
            .state()
            .store
            .commit_group(&[debit, credit], chrono::Utc::now())
            .await;
        assert_eq!(outcome.path, GroupPath::Combined, "{backend:?}");
        assert!(outcome.results.iter().all(Result::is_ok), "{outcome:?}");
        let stored = app
            .state()
            .store
            .find_transfer(id)
            .await
            .expect("read")
            .expect("transfer");
        assert_eq!(stored.state, TransferState::Completed, "{backend:?}");
        let (status, body, token, locked) =
            idempotency_row(&app, "legs-1").await.expect("key stored");
        assert_eq!(status, Some(201), "{backend:?}");
        assert_eq!(body, Some(format!("{{\"id\":\"{id}\"}}")));
        assert_eq!(
            (token, locked),
            (None, false),
            "the key is answered, not held"
        );
        assert_eq!(app.balance(&users[0].0).await, (1_000 - 30, 0));
        assert_eq!(app.balance(&users[1].0).await, (1_000 + 30, 0));
        assert_eq!(reconcile(&app).await["status"], "clean", "{backend:?}");
    }
}

/// A debit that fails (its account moved on: another node wrote it) takes the credit chained
/// to it in the same group down with it, and nothing else: no transfer, no claimed key, no
/// money moved, and the batch beside them commits.
#[tokio::test]
async fn a_failed_debit_fails_the_credit_in_its_group_and_nothing_else() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let users = funded_users(&app, 3).await;
        let (debit, credit, id) = transfer_legs(&app, &users[0], &users[1], 30, "legs-2").await;
        bump_version(&app, &users[0].1, 1).await;
        let bystander = credit_batch(&app, &users[2].1, "group-test:beside-legs").await;
        let outcome = app
            .state()
            .store
            .commit_group(&[debit, credit, bystander], chrono::Utc::now())
            .await;
        assert_eq!(outcome.path, GroupPath::Isolated, "{backend:?}");
        assert!(outcome.results[0].is_err(), "the stale debit must fail");
        assert!(outcome.results[1].is_err(), "its credit must fail with it");
        assert!(outcome.results[2].is_ok(), "{:?}", outcome.results[2]);
        let stored = app.state().store.find_transfer(id).await.expect("read");
        assert!(stored.is_none(), "{backend:?}: {stored:?}");
        assert_eq!(idempotency_row(&app, "legs-2").await, None, "{backend:?}");
        assert_eq!(app.balance(&users[0].0).await, (1_000, 0));
        assert_eq!(app.balance(&users[1].0).await, (1_000, 0));
        assert_eq!(app.balance(&users[2].0).await, (1_000 + CREDIT, 0));
        assert_eq!(reconcile(&app).await["status"], "clean", "{backend:?}");
    }
}

/// The guarded P2P completion finds its transfers by id, whatever PostgreSQL's statistics say:
/// with `state = 'debited'` as an index condition it walked every `debited` entry of the index
/// on state, live or dead (each completed transfer leaves one until vacuum), because
/// statistics say few transfers are `debited`. The old index is recreated here: the guard must
/// not depend on which indexes exist.
#[tokio::test]
async fn the_p2p_completion_looks_its_transfers_up_by_primary_key() {
    if !backends().contains(&Backend::Postgres) {
        return;
    }
    let app = spawn_app(Backend::Postgres).await;
    let db = app.state().store.writer();
    // 5,000 transfers that were debited and then completed, as a busy ledger has them.
    for statement in [
        "INSERT INTO transfers (id, from_user, to_user, source_account, target_account, amount, \
         currency, state, created_at, updated_at, kind) \
         SELECT 't' || n, 'u1', 'u2', 'a1', 'a2', 1, 'usd', 'debited', now(), now(), 'p2p' \
         FROM generate_series(1, 5000) AS n",
        "UPDATE transfers SET state = 'completed'",
        "INSERT INTO transfers (id, from_user, to_user, source_account, target_account, amount, \
         currency, state, created_at, updated_at, kind) \
         SELECT 'd' || n, 'u1', 'u2', 'a1', 'a2', 1, 'usd', 'debited', now(), now(), 'p2p' \
         FROM generate_series(1, 3) AS n",
        "CREATE INDEX transfers_by_state ON transfers (state, id)",
        "ANALYZE transfers",
    ] {
        db.execute_unprepared(statement).await.expect(statement);
    }
    let ids: Vec<String> = (1..=3).map(|n| format!("d{n}")).collect();
    let update = completion_update(DbBackend::Postgres, &ids, chrono::Utc::now())
        .to_string(PostgresQueryBuilder);
    let plan: Vec<String> = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("EXPLAIN {update}"),
        ))
        .await
        .expect("explain")
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).expect("plan line"))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("transfers_pkey"), "{plan}");
    assert!(!plan.contains("transfers_by_state"), "{plan}");
    // And it still is a guard: only the `debited` ones move.
    let updated = db
        .execute_raw(Statement::from_string(
            DbBackend::Postgres,
            completion_update(
                DbBackend::Postgres,
                &["d1".to_owned(), "t1".to_owned()],
                chrono::Utc::now(),
            )
            .to_string(PostgresQueryBuilder),
        ))
        .await
        .expect("update");
    assert_eq!(updated.rows_affected(), 1);
}

/// On PostgreSQL the rows a transfer inserts and then updates moments later have room for the
/// new version on their page (migration `update_room`), and the migration goes down and up.
#[tokio::test]
async fn the_rows_a_transfer_updates_have_room_on_their_page() {
    use migration::{Migrator, MigratorTrait};
    if !backends().contains(&Backend::Postgres) {
        return;
    }
    let app = spawn_app(Backend::Postgres).await;
    let db = app.state().store.writer();
    let options = async || -> Vec<String> {
        let mut found = Vec::new();
        for table in ["idempotency_keys", "transfers"] {
            let row = db
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    format!(
                        "SELECT COALESCE(array_to_string(reloptions, ','), '') FROM pg_class \
                         WHERE relname = '{table}'"
                    ),
                ))
                .await
                .expect("reloptions")
                .expect("table");
            found.push(format!(
                "{table}:{}",
                row.try_get_by_index::<String>(0).expect("text")
            ));
        }
        found
    };
    let room = ["idempotency_keys:fillfactor=70", "transfers:fillfactor=70"];
    assert_eq!(options().await, room);
    // `update_room` and the migrations after it.
    crate::helpers::migrate_down_through(db, "m20261202_000001_update_room").await;
    assert_eq!(options().await, ["idempotency_keys:", "transfers:"]);
    Migrator::up(db, None).await.expect("up");
    assert_eq!(options().await, room);
}

/// Each ledger entry takes two index entries (migration `entries_keyed_by_account`): on
/// PostgreSQL its key is `(account_id, id)` and the unique op key per account; on SQLite the
/// key on `id` stays beside `(account_id, id)`. Nothing indexes entries by journal. The op key
/// is indexed op key first (migration `entries_op_key_first`), so new entries land at the end
/// of their operation's range, not of their account's. Both migrations go down and up.
/// (`a_duplicate_op_key_fails_only_its_own_batch` shows the op key still unique per account.)
#[tokio::test]
async fn a_ledger_entry_takes_two_index_entries() {
    use migration::{Migrator, MigratorTrait};
    for backend in backends() {
        let app = spawn_app(backend).await;
        let db = app.state().store.writer();
        let (sql, expected, account_first, before): (&str, &[&str], &[&str], &[&str]) =
            match backend {
                Backend::Postgres => (
                    "SELECT indexdef FROM pg_indexes WHERE tablename = 'entries' ORDER BY indexname",
                    &[
                        "CREATE UNIQUE INDEX entries_op_key_account ON public.entries USING btree (op_key, account_id)",
                        "CREATE UNIQUE INDEX entries_pkey ON public.entries USING btree (account_id, id)",
                    ],
                    &[
                        "CREATE UNIQUE INDEX entries_account_op_key ON public.entries USING btree (account_id, op_key)",
                        "CREATE UNIQUE INDEX entries_pkey ON public.entries USING btree (account_id, id)",
                    ],
                    &[
                        "CREATE INDEX entries_account_id ON public.entries USING btree (account_id, id)",
                        "CREATE UNIQUE INDEX entries_account_op_key ON public.entries USING btree (account_id, op_key)",
                        "CREATE INDEX entries_journal ON public.entries USING btree (journal_id)",
                        "CREATE UNIQUE INDEX entries_pkey ON public.entries USING btree (id)",
                    ],
                ),
                Backend::Sqlite => (
                    "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'entries' \
                     AND sql IS NOT NULL ORDER BY name",
                    &[
                        r#"CREATE INDEX "entries_account_id" ON "entries" ("account_id", "id")"#,
                        "CREATE UNIQUE INDEX entries_op_key_account ON entries (op_key, account_id)",
                    ],
                    &[
                        r#"CREATE INDEX "entries_account_id" ON "entries" ("account_id", "id")"#,
                        "CREATE UNIQUE INDEX entries_account_op_key ON entries (account_id, op_key)",
                    ],
                    &[
                        r#"CREATE INDEX "entries_account_id" ON "entries" ("account_id", "id")"#,
                        "CREATE UNIQUE INDEX entries_account_op_key ON entries (account_id, op_key)",
                        "CREATE INDEX entries_journal ON entries (journal_id)",
                    ],
                ),
            };
        let indexes = async || -> Vec<String> { crate::helpers::text_column(db, sql).await };
        assert_eq!(indexes().await, expected, "{backend:?}");
        // `entries_op_key_first` (and what came after it, which changed no index).
        crate::helpers::migrate_down_through(db, "m20261205_000001_entries_op_key_first").await;
        assert_eq!(indexes().await, account_first, "{backend:?}");
        // And `entries_keyed_by_account`, `notifications_keyed_by_event` after it.
        crate::helpers::migrate_down_through(db, "m20261203_000001_entries_keyed_by_account").await;
        assert_eq!(indexes().await, before, "{backend:?}");
        Migrator::up(db, None).await.expect("up");
        assert_eq!(indexes().await, expected, "{backend:?}");
    }
}

#[tokio::test]
async fn concurrent_transfers_between_many_wallets_share_commits() {
    const USERS: usize = 24;
    const TRANSFERS: usize = 240;
    for backend in backends() {
        let app = spawn_app(backend).await;
        let users = funded_users(&app, USERS).await;
        let metrics = &app.state().metrics;
        let groups = |path: &str| {
            let histogram = metrics.ledger_group_batches.with_label_values(&[path]);
            (histogram.get_sample_count(), histogram.get_sample_sum())
        };
        let (combined_before, batches_before) = groups("combined");
        let (isolated_before, _) = groups("isolated");
        let busy = |phase: &str| {
            metrics
                .ledger_writer_busy_seconds_total
                .with_label_values(&[phase])
                .get()
        };
        let phases = walleti::actors::ledger_writer::PHASES;
        let busy_before: Vec<f64> = phases.iter().map(|phase| busy(phase)).collect();
        let started = std::time::Instant::now();

        let users_ref = &users;
        let replies = join_all((0..TRANSFERS).map(|index| {
            let from_index = index % USERS;
            let to_index = (from_index + 1 + (index / USERS) % (USERS - 1)) % USERS;
            let from = &users_ref[from_index].0;
            let to = &users_ref[to_index].0;
            let app = &app;
            async move {
                app.transfer(from, &to.id, json!(3), &format!("many-{index}"))
                    .await
            }
        }))
        .await;
        for reply in &replies {
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
            assert_eq!(reply.body["status"], "completed", "{}", reply.text);
        }

        let elapsed = started.elapsed().as_secs_f64();
        let spent: Vec<f64> = phases
            .iter()
            .zip(&busy_before)
            .map(|(phase, before)| busy(phase) - before)
            .collect();
        // The writer's phases follow each other: together they cannot exceed the time that
        // passed (give or take the group that was under way at the start).
        let sum: f64 = spent.iter().sum();
        assert!(
            sum > 0.0 && sum <= elapsed + 0.5,
            "writer busy {sum} s in {elapsed} s ({backend:?}): {spent:?}"
        );
        for (phase, spent) in phases.iter().zip(&spent) {
            // SQLite's statements are all `executing` (their building is interleaved).
            let timed = match *phase {
                "building" | "connecting" => backend == Backend::Postgres,
                "notifying" | "executing" | "answering" => true,
                other => panic!("unknown phase {other}"),
            };
            assert_eq!(*spent > 0.0, timed, "{phase} {spent} s ({backend:?})");
        }
        let (combined_after, batches_after) = groups("combined");
        let combined = combined_after - combined_before;
        let batches = batches_after - batches_before;
        assert!(
            combined > 0 && batches > combined as f64,
            "no transaction carried more than one wallet's batch ({backend:?})"
        );
        // Nothing here conflicts: a group that fell back to one savepoint per batch means the
        // combined statements failed (the fallback would hide e.g. SQL the database refuses).
        assert_eq!(
            groups("isolated").0,
            isolated_before,
            "a group commit fell back to savepoints ({backend:?})"
        );
        let mut total = 0;
        for (user, _) in &users {
            total += app.balance(user).await.0;
        }
        assert_eq!(total, 1_000 * USERS as i64, "conservation ({backend:?})");
        assert_eq!(reconcile(&app).await["status"], "clean", "{backend:?}");
        println!(
            "{backend:?}: {TRANSFERS} transfers, {combined} combined commits carried {batches} wallet batches"
        );
        if backend == Backend::Postgres {
            // Each credit is sent on with its debit: under this load most pairs share a group
            // (the transfer row was inserted by the debit's transaction, never updated).
            let database = app.state().store.writer();
            let settled_at_once = database
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT COUNT(*) FROM transfers t JOIN entries e \
                     ON e.reference_type = 'transfer' AND e.reference_id = t.id \
                     AND e.kind = 'transfer_debit' \
                     WHERE t.xmin = e.xmin AND t.state = 'completed'",
                ))
                .await
                .expect("count")
                .expect("row")
                .try_get_by_index::<i64>(0)
                .expect("count");
            println!("{settled_at_once} of {TRANSFERS} transfers settled in their debit's commit");
            assert!(
                settled_at_once > 0,
                "no transfer's credit joined its debit's group commit"
            );
        }
    }
}

/// Rows travel to PostgreSQL as typed arrays, a nullable column beside its NULL flags: in one
/// group, transfers with a note, with an empty note and with none each keep theirs.
#[tokio::test]
async fn nullable_columns_keep_null_and_empty_apart_in_one_group() {
    const TRANSFERS: usize = 30;
    for backend in backends() {
        let app = spawn_app(backend).await;
        let users = funded_users(&app, 6).await;
        let note = |index: usize| match index % 3 {
            0 => json!(format!("note {index}")),
            1 => json!(""),
            _ => serde_json::Value::Null,
        };
        let users_ref = &users;
        let replies = join_all((0..TRANSFERS).map(|index| {
            let (from, to) = (&users_ref[index % 6].0, &users_ref[(index + 1) % 6].0);
            let app = &app;
            let mut body = json!({"to": to.id, "amount": 1, "currency": "usd"});
            if index % 3 != 2 {
                body["note"] = note(index);
            }
            async move {
                app.post(
                    "/v1/transfers",
                    Some(&from.token),
                    Some(&format!("notes-{index}")),
                    &body,
                )
                .await
            }
        }))
        .await;
        for (index, reply) in replies.iter().enumerate() {
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
            let id = reply.body["id"].as_str().expect("id");
            let stored = app
                .get(&format!("/v1/transfers/{id}"), &users[index % 6].0.token)
                .await;
            assert_eq!(stored.status, StatusCode::OK, "{}", stored.text);
            assert_eq!(
                stored.body["note"],
                note(index),
                "{backend:?} transfer {index}"
            );
            assert_eq!(stored.body["failure_code"], serde_json::Value::Null);
            assert_eq!(stored.body["status"], "completed");
        }
    }
}

#[tokio::test]
async fn a_revoked_credential_is_refused_on_the_next_request() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let ada = app.user("ada").await;
        // Warm the credential cache, then revoke.
        assert_eq!(app.get("/v1/me", &ada.token).await.status, StatusCode::OK);
        assert_eq!(app.get("/v1/me", &ada.token).await.status, StatusCode::OK);
        let logout = app
            .request(
                reqwest::Method::DELETE,
                "/v1/sessions/current",
                Some(&ada.token),
                None,
                None,
            )
            .await;
        assert_eq!(logout.status, StatusCode::NO_CONTENT, "{}", logout.text);
        assert_eq!(
            app.get("/v1/me", &ada.token).await.status,
            StatusCode::UNAUTHORIZED
        );

        // A merchant's API key: used (cached), revoked, refused.
        let merchant = app
            .post(
                "/v1/merchants",
                None,
                None,
                &json!({"name": "Shop", "email": "shop@example.com", "password": "merchant-password-1"}),
            )
            .await;
        assert_eq!(merchant.status, StatusCode::CREATED, "{}", merchant.text);
        let session = app
            .post(
                "/v1/merchants/sessions",
                None,
                None,
                &json!({"email": "shop@example.com", "password": "merchant-password-1"}),
            )
            .await;
        let merchant_token = session.body["token"].as_str().expect("token").to_owned();
        let key = app
            .post(
                "/v1/merchants/api_keys",
                Some(&merchant_token),
                None,
                &json!({}),
            )
            .await;
        assert_eq!(key.status, StatusCode::CREATED, "{}", key.text);
        let secret = key.body["secret"].as_str().expect("secret").to_owned();
        let key_id = key.body["id"].as_str().expect("id").to_owned();
        assert_eq!(app.get("/v1/wallet", &secret).await.status, StatusCode::OK);
        let revoked = app
            .request(
                reqwest::Method::DELETE,
                &format!("/v1/merchants/api_keys/{key_id}"),
                Some(&merchant_token),
                None,
                None,
            )
            .await;
        assert!(revoked.status.is_success(), "{}", revoked.text);
        assert_eq!(
            app.get("/v1/wallet", &secret).await.status,
            StatusCode::UNAUTHORIZED
        );
        let _ = ADMIN_TOKEN;
    }
}

#[tokio::test]
async fn one_idempotency_key_sent_to_two_nodes_at_once_moves_money_once() {
    for backend in backends() {
        let database_url = crate::helpers::fresh_database(backend).await;
        let first =
            crate::helpers::spawn_app_with(crate::helpers::test_settings(&database_url)).await;
        let second =
            crate::helpers::spawn_app_with(crate::helpers::test_settings(&database_url)).await;
        let ada = first.user("ada").await;
        let bob = first.user("bob").await;
        let cy = first.user("cy").await;
        first.fund(&ada, 10_000).await;
        first.fund(&cy, 10_000).await;

        for round in 0..5 {
            let key = format!("both-nodes-{round}");
            // The same request on both nodes, while other transfers share the second node's
            // group commits: only the duplicate that lost the claim may fail.
            let (cy, bob_id, second) = (&cy, &bob.id, &second);
            let others = (0..6).map(|index| async move {
                let key = format!("other-{round}-{index}");
                second.transfer(cy, bob_id, json!(1), &key).await
            });
            let (one, two, others) = tokio::join!(
                first.transfer(&ada, &bob.id, json!(100), &key),
                second.transfer(&ada, &bob.id, json!(100), &key),
                join_all(others)
            );
            for reply in [&one, &two] {
                assert_eq!(
                    reply.status,
                    StatusCode::CREATED,
                    "{backend:?}: {}",
                    reply.text
                );
            }
            assert_eq!(
                one.text, two.text,
                "{backend:?}: both nodes answer the same"
            );
            for reply in others {
                assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
                assert_eq!(reply.body["status"], "completed");
            }
        }
        assert_eq!(
            first.balance(&ada).await,
            (10_000 - 5 * 100, 0),
            "{backend:?}: each key moved money once"
        );
        assert_eq!(first.balance(&bob).await, (5 * 100 + 5 * 6, 0));
        assert_eq!(reconcile(&first).await["status"], "clean", "{backend:?}");
    }
}

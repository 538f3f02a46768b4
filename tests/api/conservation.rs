use crate::helpers::{Backend, TestApp, TestUser, backends, spawn_app};
use futures_util::StreamExt;
use rand::{Rng, SeedableRng};
use sea_orm::{Database, EntityTrait};
use serde_json::json;
use walleti::store::entities::{accounts, transfers};

const USERS: usize = 30;
const FUNDING_PER_USER: i64 = 10_000;
const TRANSFERS: usize = 2_000;
const IN_FLIGHT: usize = 64;

#[tokio::test]
async fn money_is_conserved_under_thousands_of_concurrent_transfers() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let mut users = Vec::new();
        for index in 0..USERS {
            let user = app.user(&format!("u{index}")).await;
            // Half the money comes in from the bank, half from operator adjustments.
            if index % 2 == 0 {
                top_up_from_bank(&app, &user, FUNDING_PER_USER).await;
            } else {
                app.fund(&user, FUNDING_PER_USER).await;
            }
            users.push(user);
        }
        let mut random = rand::rngs::StdRng::seed_from_u64(7);
        let plan: Vec<(usize, usize, i64)> = (0..TRANSFERS)
            .map(|_| {
                let from = random.random_range(0..USERS);
                let to = (from + random.random_range(1..USERS)) % USERS;
                (from, to, random.random_range(1..=3_000))
            })
            .collect();
        let outcomes: Vec<(u16, String)> = futures_util::stream::iter(plan.into_iter().enumerate())
            .map(|(index, (from, to, amount))| {
                let app = &app;
                let users = &users;
                async move {
                    let reply = app
                        .transfer(
                            &users[from],
                            &users[to].id,
                            json!(amount),
                            &format!("c-{index}"),
                        )
                        .await;
                    (
                        reply.status.as_u16(),
                        reply.body["status"]
                            .as_str()
                            .unwrap_or(reply.code())
                            .to_owned(),
                    )
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let completed = outcomes
            .iter()
            .filter(|(status, what)| *status == 201 && what == "completed")
            .count();
        let refused = outcomes
            .iter()
            .filter(|(status, what)| *status == 422 && what == "insufficient_funds")
            .count();
        assert_eq!(
            completed + refused,
            TRANSFERS,
            "unexpected outcomes: {:?}",
            outcomes
                .iter()
                .filter(|(s, _)| *s != 201 && *s != 422)
                .take(5)
                .collect::<Vec<_>>()
        );
        assert!(
            completed > TRANSFERS / 2,
            "most transfers should succeed ({completed})"
        );

        assert_books_balance(&app, &users, backend).await;
    }
}

async fn top_up_from_bank(app: &TestApp, user: &TestUser, amount: i64) {
    let key = format!("bank-{}", user.id);
    let onramp = app
        .post(
            "/v1/onramps",
            Some(&user.token),
            Some(&key),
            &json!({"provider": "bank", "amount": amount, "currency": "usd"}),
        )
        .await;
    assert_eq!(onramp.status.as_u16(), 201, "{}", onramp.text);
    let payment = onramp.body["redirect_url"]
        .as_str()
        .and_then(|url| url.rsplit('/').next())
        .expect("payment id");
    let approved = app
        .client
        .post(format!(
            "{}/bank-sim/api/payments/{payment}/approve",
            app.address
        ))
        .send()
        .await
        .expect("approve");
    assert!(approved.status().is_success());
    for _ in 0..250 {
        if app.balance(user).await.0 == amount {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("top-up of {} never arrived", user.email);
}

async fn assert_books_balance(app: &TestApp, users: &[TestUser], backend: Backend) {
    let mut total = 0;
    for user in users {
        let (available, locked) = app.balance(user).await;
        assert!(available >= 0 && locked >= 0, "no wallet is negative");
        let entries = app.all_entries(user).await;
        let entry_sum: i64 = entries
            .iter()
            .map(|entry| entry["amount"].as_i64().unwrap_or(0))
            .sum();
        assert_eq!(
            entry_sum,
            available + locked,
            "{}: balance equals the sum of its entries",
            user.email
        );
        total += available + locked;
    }
    assert_eq!(
        total,
        FUNDING_PER_USER * USERS as i64,
        "Σ balances unchanged ({backend:?})"
    );

    // Every account, system ones included, sums to zero, and no money is left in flight.
    let database = Database::connect(app.database_url.as_str())
        .await
        .expect("connect");
    let all_accounts = accounts::Entity::find()
        .all(&database)
        .await
        .expect("accounts");
    let grand_total: i64 = all_accounts
        .iter()
        .map(|account| account.available + account.locked)
        .sum();
    assert_eq!(
        grand_total, 0,
        "Σ wallets = −Σ system accounts (adjustments and bank_clearing)"
    );
    let bank_clearing: i64 = all_accounts
        .iter()
        .filter(|a| a.owner_id == "bank_clearing")
        .map(|a| a.available)
        .sum();
    assert_eq!(bank_clearing, -FUNDING_PER_USER * (USERS as i64 / 2));
    let in_flight = transfers::Entity::find()
        .all(&database)
        .await
        .expect("transfers")
        .iter()
        .filter(|transfer| transfer.state == "debited")
        .count();
    assert_eq!(in_flight, 0);
}

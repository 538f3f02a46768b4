//! `walleti demo`: the seeder fills a fresh walleti through its own HTTP API. Every demo login
//! works, the people's and the shop's dashboards show the activity in plain words, the money
//! adds up, seeding again adds nothing, and a database holding anything else is refused.

use crate::helpers::{
    ADMIN_TOKEN, Backend, TestApp, backends, fresh_database, spawn_app, spawn_app_with,
    test_settings,
};
use reqwest::StatusCode;
use serde_json::json;
use walleti::demo::{DEMO_PASSWORD, PEOPLE, SHOP, Seeded, seed};

/// Logs in through the web app's form (as a browser would) and returns the page at `page`.
async fn web_page(app: &TestApp, area: &str, login_field: &str, login: &str, page: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let form = http
        .get(format!("{}{area}/login", app.address))
        .send()
        .await
        .expect("login page");
    let csrf = cookie(&form, "walleti_csrf").expect("csrf cookie");
    let logged_in = http
        .post(format!("{}{area}/login", app.address))
        .header("Cookie", format!("walleti_csrf={csrf}"))
        .form(&[
            ("csrf", csrf.as_str()),
            (login_field, login),
            ("password", DEMO_PASSWORD),
        ])
        .send()
        .await
        .expect("log in");
    assert_eq!(logged_in.status(), StatusCode::SEE_OTHER, "{login} logs in");
    let session_cookie = if area == "/app" {
        "walleti_user"
    } else {
        "walleti_merchant"
    };
    let session = cookie(&logged_in, session_cookie).expect("session cookie");
    let page = http
        .get(format!("{}{page}", app.address))
        .header(
            "Cookie",
            format!("walleti_csrf={csrf}; {session_cookie}={session}"),
        )
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    page.text().await.expect("html")
}

fn cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next()?.split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

fn assert_shows(html: &str, who: &str, labels: &[&str]) {
    for label in labels {
        assert!(
            html.contains(label),
            "{who}'s page lacks {label:?}:\n{html}"
        );
    }
}

#[tokio::test]
async fn the_demo_seeds_a_fresh_walleti_that_people_can_log_into() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let seeded = seed(&app.address, ADMIN_TOKEN)
            .await
            .expect("seed the demo");
        assert!(
            matches!(&seeded, Seeded::Fresh { shop_api_key } if shop_api_key.starts_with("sk_"))
        );

        // Every login the demo prints works.
        for (_, email, _) in PEOPLE {
            let session = app
                .post(
                    "/v1/sessions",
                    None,
                    None,
                    &json!({"login": email, "password": DEMO_PASSWORD}),
                )
                .await;
            assert_eq!(
                session.status,
                StatusCode::CREATED,
                "{email}: {}",
                session.text
            );
        }
        let shop = app
            .post(
                "/v1/merchants/sessions",
                None,
                None,
                &json!({"email": SHOP.1, "password": DEMO_PASSWORD}),
            )
            .await;
        assert_eq!(shop.status, StatusCode::CREATED, "{}", shop.text);

        // Ada: topped up 250.00, sent 12.50 and 8.00, got 45.00, paid 32.00 of a 40.00
        // authorisation, got 5.00 back, and 9.00 is still on hold.
        let ada = web_page(&app, "/app", "login", "ada@example.com", "/app").await;
        assert_shows(
            &ada,
            "Ada",
            &[
                "Refund from Corner Shop",
                "On hold for Corner Shop until",
                "$238.50",
                "$9.00",
                "Balance, last 30 days",
            ],
        );
        let history = web_page(&app, "/app", "login", "ada@example.com", "/app/history").await;
        assert_shows(
            &history,
            "Ada",
            &[
                "Top-up from bank",
                "Sent to Bob · lunch",
                "Received from Chloe · rent",
                "Sent to Chloe · coffee",
                "Payment to Corner Shop · Order 1042",
                "Returned from an authorisation · Corner Shop took less",
            ],
        );
        for ledger_word in ["capture debit", "Bucket", "transfer credit"] {
            assert!(!history.contains(ledger_word), "{history}");
        }
        let bob = web_page(&app, "/app", "login", "+14155550102", "/app/history").await;
        assert_shows(
            &bob,
            "Bob",
            &[
                "Payment to Corner Shop · Groceries",
                "Received from Ada · lunch",
                "Sent to Chloe · concert tickets",
                "Payout to bank",
            ],
        );
        let chloe = web_page(&app, "/app", "login", "chloe@example.com", "/app").await;
        assert_shows(
            &chloe,
            "Chloe",
            &["Returned from an authorisation · Corner Shop cancelled it"],
        );
        let notifications = web_page(
            &app,
            "/app",
            "login",
            "ada@example.com",
            "/app/notifications",
        )
        .await;
        assert_shows(
            &notifications,
            "Ada",
            &["Money received", "Refund received"],
        );
        let merchant = web_page(&app, "/merchant", "email", SHOP.1, "/merchant").await;
        assert_shows(
            &merchant,
            "the shop",
            &[
                "Groceries",
                "Order 1042",
                "Order 1043",
                "Order 1044",
                "requires capture",
                "Daily volume, last 30 days",
            ],
        );

        // Seeding the same database again adds nothing.
        let users_before = app.get("/v1/users?limit=100", ADMIN_TOKEN).await;
        assert_eq!(
            seed(&app.address, ADMIN_TOKEN).await.expect("seed again"),
            Seeded::Already
        );
        let users_after = app.get("/v1/users?limit=100", ADMIN_TOKEN).await;
        assert_eq!(users_before.body["data"], users_after.body["data"]);
        assert_eq!(users_after.body["data"].as_array().map(Vec::len), Some(3));
    }
}

#[tokio::test]
async fn the_demo_seeds_a_walleti_that_pays_only_verified_contacts() {
    let mut settings = test_settings(&fresh_database(Backend::Sqlite).await);
    settings.p2p_require_verified = true;
    let app = spawn_app_with(settings).await;
    let seeded = seed(&app.address, ADMIN_TOKEN)
        .await
        .expect("seed the demo");
    assert!(matches!(seeded, Seeded::Fresh { .. }));
    let ada = app
        .post(
            "/v1/sessions",
            None,
            None,
            &json!({"login": PEOPLE[0].1, "password": DEMO_PASSWORD}),
        )
        .await;
    let transfers = app
        .get(
            "/v1/transfers?limit=10",
            ada.body["token"].as_str().expect("token"),
        )
        .await;
    assert!(
        transfers.body["data"].as_array().map(Vec::len) >= Some(3),
        "{}",
        transfers.text
    );
}

/// A seeding cut short (here: stopped after Ada signed up) is not taken for the demo: seeding
/// again says so instead of "already seeded" over half a demo.
#[tokio::test]
async fn the_demo_refuses_a_demo_whose_seeding_did_not_finish() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (name, email, phone) = PEOPLE[0];
        let created = app
            .post(
                "/v1/users",
                None,
                None,
                &json!({"name": name, "email": email, "phone": phone, "password": DEMO_PASSWORD}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let refused = seed(&app.address, ADMIN_TOKEN)
            .await
            .expect_err("half a demo is not the demo");
        assert!(
            refused.to_string().contains("did not finish"),
            "{refused:#}"
        );
    }
}

#[tokio::test]
async fn the_demo_refuses_a_database_with_other_people_in_it() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.user("someone").await;
        let refused = seed(&app.address, ADMIN_TOKEN)
            .await
            .expect_err("a database with other users is refused");
        assert!(
            refused.to_string().contains("already has users"),
            "{refused:#}"
        );
        let users = app.get("/v1/users?limit=100", ADMIN_TOKEN).await;
        assert_eq!(users.body["data"].as_array().map(Vec::len), Some(1));
    }
}

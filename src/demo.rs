//! `walleti demo`: a walleti with something on its first screen. The seeder drives a running
//! walleti's own HTTP API — sign-ups, bank top-ups approved on the bank simulator, transfers,
//! merchant payments, payouts — exactly as a client would, so every invariant holds: money
//! enters only through the bank's signed webhooks (or an operator adjustment when no bank is
//! configured), every movement is a ledger journal, and a reconciliation at the end must come
//! back clean. `walleti demo` runs it in-process against a fresh SQLite file and then serves;
//! `walleti demo --url …` seeds a walleti that is already running (the docker-compose stack) and
//! exits.

use anyhow::{Context, bail, ensure};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// The password of every demo login (people and the shop).
pub const DEMO_PASSWORD: &str = "walleti demo";

/// A demo person: (name, email, phone).
pub const PEOPLE: [(&str, &str, &str); 3] = [
    ("Ada Lovelace", "ada@example.com", "+14155550101"),
    ("Bob Martin", "bob@example.com", "+14155550102"),
    ("Chloe Zhang", "chloe@example.com", "+14155550103"),
];

/// The demo shop: (name, email).
pub const SHOP: (&str, &str) = ("Corner Shop", "shop@example.com");

/// Longest wait for one asynchronous step (a top-up's webhook, a notification).
const SETTLE_WAIT_MS: u64 = 15_000;
const POLL_INTERVAL_MS: u64 = 100;
const REQUEST_TIMEOUT_SECONDS: u64 = 30;

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Seed this already running walleti (e.g. the compose stack's `http://localhost:18080`)
    /// and exit, instead of starting one.
    #[arg(long)]
    pub url: Option<String>,
    /// The operator token of the walleti at `--url` (its WALLETI_ADMIN_TOKEN).
    #[arg(long, env = "WALLETI_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The database of the walleti this command starts (without `--url`).
    #[arg(long, default_value = "sqlite://walleti-demo.db?mode=rwc")]
    pub database_url: String,
}

/// What the seeder left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seeded {
    /// The demo data is new; the shop's API key (shown once).
    Fresh { shop_api_key: String },
    /// This database already held the demo: nothing was added.
    Already,
}

/// Seeds the walleti at `base_url` (operator token `admin_token`). Refuses a database that
/// holds anything but the demo, or a demo whose seeding was cut short; a database that already
/// holds the whole demo is left as it is.
pub async fn seed(base_url: &str, admin_token: &str) -> anyhow::Result<Seeded> {
    let api = Api::new(base_url, admin_token)?;
    api.wait_until_ready().await?;
    let users = api.get("/v1/users?limit=1", admin_token).await?;
    let empty = users["data"].as_array().is_none_or(Vec::is_empty);
    if !empty {
        if api.log_in_person(PEOPLE[0].1).await.is_ok() {
            // The demo's last money step is Bob's payout: without it an earlier seeding was cut
            // short, and the database holds only part of the demo.
            let bob = api.log_in_person(PEOPLE[1].1).await;
            let payouts = match &bob {
                Ok(bob) => api.get("/v1/payouts?limit=1", &bob.token).await.ok(),
                Err(_) => None,
            };
            let finished = payouts
                .and_then(|list| list["data"].as_array().cloned())
                .is_some_and(|data| !data.is_empty());
            ensure!(
                finished,
                "the database at {base_url} holds a demo whose seeding did not finish; \
                 delete walleti-demo.db (or pass another --database-url) and run again"
            );
            return Ok(Seeded::Already);
        }
        bail!(
            "the database at {base_url} already has users that are not the demo's; \
             seed an empty database (delete walleti-demo.db, or pass another --database-url)"
        );
    }
    seed_empty(&api).await
}

async fn seed_empty(api: &Api) -> anyhow::Result<Seeded> {
    let mut people = Vec::new();
    for (name, email, phone) in PEOPLE {
        api.call(
            "POST",
            "/v1/users",
            None,
            None,
            Some(json!({"name": name, "email": email, "phone": phone, "password": DEMO_PASSWORD})),
            StatusCode::CREATED,
        )
        .await?;
        people.push(api.log_in_person(email).await?);
    }
    let [ada, bob, chloe] = [&people[0], &people[1], &people[2]];
    api.top_up(ada, 25_000, "ada-1").await?;
    api.top_up(bob, 8_000, "bob-1").await?;
    api.top_up(chloe, 6_000, "chloe-1").await?;

    // To user ids: they need no verified contact, so the demo also seeds a walleti that
    // requires one (`WALLETI_P2P_REQUIRE_VERIFIED=true`).
    api.transfer(ada, &bob.id, 1_250, "lunch", "t1").await?;
    api.transfer(bob, &chloe.id, 2_000, "concert tickets", "t2")
        .await?;
    api.transfer(chloe, &ada.id, 4_500, "rent", "t3").await?;
    api.transfer(ada, &chloe.id, 800, "coffee", "t4").await?;

    let shop_api_key = api.open_shop().await?;
    api.shop_payments(&shop_api_key, ada, bob, chloe).await?;
    api.payout(&shop_api_key, 1_000, "shop-payout-1").await?;
    api.payout(&bob.token, 500, "bob-payout-1").await?;

    api.wait_for_notifications(ada).await?;
    api.reconcile_clean().await?;
    Ok(Seeded::Fresh { shop_api_key })
}

/// The logins and addresses to print after seeding.
pub fn logins(base_url: &str, admin_token: &str, seeded: &Seeded) -> String {
    let base = base_url.trim_end_matches('/');
    let mut lines = vec![
        match seeded {
            Seeded::Fresh { .. } => format!("Demo data is ready at {base}"),
            Seeded::Already => format!("This database already holds the demo: {base}"),
        },
        format!("  people log in at {base}/app (password \"{DEMO_PASSWORD}\" for everyone):"),
    ];
    for (name, email, _) in PEOPLE {
        lines.push(format!("    {email:<20} {name}"));
    }
    lines.push(format!(
        "  the shop logs in at {base}/merchant: {} ({}), same password",
        SHOP.1, SHOP.0
    ));
    if let Seeded::Fresh { shop_api_key } = seeded {
        lines.push(format!("  the shop's API key (shown once): {shop_api_key}"));
    }
    lines.push(format!("  operator token: {admin_token}"));
    lines.push(format!(
        "  API reference {base}/docs, metrics {base}/metrics"
    ));
    lines.join("\n")
}

/// A demo person or the shop, logged in.
struct Party {
    token: String,
    id: String,
}

struct Api {
    http: reqwest::Client,
    base: String,
    admin_token: String,
}

impl Api {
    fn new(base_url: &str, admin_token: &str) -> anyhow::Result<Api> {
        Ok(Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(REQUEST_TIMEOUT_SECONDS))
                // The bank simulator's approval form answers with a redirect to walleti.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .context("build the HTTP client")?,
            base: base_url.trim_end_matches('/').to_owned(),
            admin_token: admin_token.to_owned(),
        })
    }

    /// One API call; anything but `expected` is an error carrying the answer.
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        idempotency_key: Option<&str>,
        body: Option<Value>,
        expected: StatusCode,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "POST" => self.http.post(&url),
            _ => self.http.get(&url),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", format!("demo-{key}"));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        ensure!(
            status == expected,
            "{method} {path} answered {status}, expected {expected}: {text}"
        );
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> anyhow::Result<Value> {
        self.call("GET", path, Some(token), None, None, StatusCode::OK)
            .await
    }

    async fn wait_until_ready(&self) -> anyhow::Result<()> {
        for _ in 0..SETTLE_WAIT_MS / POLL_INTERVAL_MS {
            let ready = self.http.get(format!("{}/ready", self.base)).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
        }
        bail!("{} did not become ready", self.base)
    }

    async fn log_in_person(&self, email: &str) -> anyhow::Result<Party> {
        let session = self
            .call(
                "POST",
                "/v1/sessions",
                None,
                None,
                Some(json!({"login": email, "password": DEMO_PASSWORD})),
                StatusCode::CREATED,
            )
            .await?;
        token(&session)
    }

    /// A bank top-up, approved on the bank's page as the person would; without a bank, an
    /// operator adjustment (a "welcome credit") brings the money in instead.
    async fn top_up(&self, person: &Party, amount: i64, key: &str) -> anyhow::Result<()> {
        let url = format!("{}/v1/onramps", self.base);
        let response = self
            .http
            .post(&url)
            .bearer_auth(&person.token)
            .header("Idempotency-Key", format!("demo-topup-{key}"))
            .json(&json!({"provider": "bank", "amount": amount, "currency": "usd"}))
            .send()
            .await
            .context("POST /v1/onramps")?;
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            return self.welcome_credit(person, amount, key).await;
        }
        ensure!(
            response.status() == StatusCode::CREATED,
            "POST /v1/onramps answered {}",
            response.status()
        );
        let onramp: Value = response.json().await.context("read the on-ramp")?;
        let page = onramp["redirect_url"]
            .as_str()
            .context("the on-ramp has no redirect_url")?;
        let approved = self
            .http
            .post(format!("{page}/approve"))
            .send()
            .await
            .with_context(|| format!("approve at {page}"))?;
        ensure!(
            approved.status().is_success() || approved.status().is_redirection(),
            "the bank refused the approval: {}",
            approved.status()
        );
        let id = onramp["id"].as_str().context("the on-ramp has no id")?;
        self.wait_for(&format!("/v1/onramps/{id}"), &person.token, |onramp| {
            onramp["status"] == "succeeded"
        })
        .await
        .context("the top-up did not arrive")
    }

    async fn welcome_credit(&self, person: &Party, amount: i64, key: &str) -> anyhow::Result<()> {
        let me = self.get("/v1/me", &person.token).await?;
        self.call(
            "POST",
            "/v1/admin/adjustments",
            Some(&self.admin_token),
            Some(&format!("welcome-{key}")),
            Some(
                json!({"user_id": me["id"], "amount": amount, "currency": "usd",
                        "reason": "demo welcome credit (no bank configured)"}),
            ),
            StatusCode::CREATED,
        )
        .await
        .map(|_| ())
    }

    async fn transfer(
        &self,
        from: &Party,
        to: &str,
        amount: i64,
        note: &str,
        key: &str,
    ) -> anyhow::Result<()> {
        let transfer = self
            .call(
                "POST",
                "/v1/transfers",
                Some(&from.token),
                Some(key),
                Some(json!({"to": to, "amount": amount, "currency": "usd", "note": note})),
                StatusCode::CREATED,
            )
            .await?;
        ensure!(
            transfer["status"] != "failed",
            "transfer {key} failed: {transfer}"
        );
        Ok(())
    }

    /// Signs the shop up and returns a secret API key.
    async fn open_shop(&self) -> anyhow::Result<String> {
        let (name, email) = SHOP;
        self.call(
            "POST",
            "/v1/merchants",
            None,
            None,
            Some(json!({"name": name, "email": email, "password": DEMO_PASSWORD})),
            StatusCode::CREATED,
        )
        .await?;
        let session = self
            .call(
                "POST",
                "/v1/merchants/sessions",
                None,
                None,
                Some(json!({"email": email, "password": DEMO_PASSWORD})),
                StatusCode::CREATED,
            )
            .await?;
        let key = self
            .call(
                "POST",
                "/v1/merchants/api_keys",
                Some(token(&session)?.token.as_str()),
                None,
                Some(json!({"name": "demo"})),
                StatusCode::CREATED,
            )
            .await?;
        key["secret"]
            .as_str()
            .map(str::to_owned)
            .context("the API key has no secret")
    }

    /// A paid order, an authorisation captured in part and then partly refunded, one
    /// cancelled, and one still on hold.
    async fn shop_payments(
        &self,
        key: &str,
        ada: &Party,
        bob: &Party,
        chloe: &Party,
    ) -> anyhow::Result<()> {
        let groceries = self
            .intent(key, 1_800, "automatic", "Groceries", "pi-1")
            .await?;
        self.act(&groceries, "confirm", &bob.token, None, "pay-1")
            .await?;

        let order = self
            .intent(key, 4_000, "manual", "Order 1042", "pi-2")
            .await?;
        self.act(&order, "confirm", &ada.token, None, "pay-2")
            .await?;
        self.act(
            &order,
            "capture",
            key,
            Some(json!({"amount_to_capture": 3_200})),
            "capture-2",
        )
        .await?;
        self.call(
            "POST",
            "/v1/refunds",
            Some(key),
            Some("refund-2"),
            Some(json!({"payment_intent": order, "amount": 500})),
            StatusCode::CREATED,
        )
        .await?;

        let cancelled = self
            .intent(key, 1_500, "manual", "Order 1043", "pi-3")
            .await?;
        self.act(&cancelled, "confirm", &chloe.token, None, "pay-3")
            .await?;
        self.act(&cancelled, "cancel", key, None, "cancel-3")
            .await?;

        let held = self
            .intent(key, 900, "manual", "Order 1044", "pi-4")
            .await?;
        self.act(&held, "confirm", &ada.token, None, "pay-4")
            .await?;
        Ok(())
    }

    async fn intent(
        &self,
        key: &str,
        amount: i64,
        capture_method: &str,
        description: &str,
        idempotency_key: &str,
    ) -> anyhow::Result<String> {
        let intent = self
            .call(
                "POST",
                "/v1/payment_intents",
                Some(key),
                Some(idempotency_key),
                Some(json!({"amount": amount, "currency": "usd",
                            "capture_method": capture_method, "description": description})),
                StatusCode::CREATED,
            )
            .await?;
        intent["id"]
            .as_str()
            .map(str::to_owned)
            .context("the payment intent has no id")
    }

    async fn act(
        &self,
        intent: &str,
        action: &str,
        token: &str,
        body: Option<Value>,
        key: &str,
    ) -> anyhow::Result<()> {
        self.call(
            "POST",
            &format!("/v1/payment_intents/{intent}/{action}"),
            Some(token),
            Some(key),
            Some(body.unwrap_or_else(|| json!({}))),
            StatusCode::OK,
        )
        .await
        .map(|_| ())
    }

    /// A payout; the bank (simulator) pays it at once: wait until its webhook settled it
    /// (`paid`, or `failed` if the bank refused), so the books are final before reconciling.
    async fn payout(&self, token: &str, amount: i64, key: &str) -> anyhow::Result<()> {
        let payout = self
            .call(
                "POST",
                "/v1/payouts",
                Some(token),
                Some(key),
                Some(json!({"amount": amount, "currency": "usd"})),
                StatusCode::CREATED,
            )
            .await?;
        let id = payout["id"].as_str().context("the payout has no id")?;
        self.wait_for(&format!("/v1/payouts/{id}"), token, |payout| {
            payout["status"] == "paid" || payout["status"] == "failed"
        })
        .await
        .context("the bank did not settle the payout")
    }

    /// The notifier works from the outbox in the background: wait until Ada has hers.
    async fn wait_for_notifications(&self, person: &Party) -> anyhow::Result<()> {
        self.wait_for("/v1/notifications?limit=5", &person.token, |list| {
            list["data"].as_array().is_some_and(|data| data.len() >= 5)
        })
        .await
        .context("the notifications did not arrive")
    }

    /// The books must balance after all that.
    async fn reconcile_clean(&self) -> anyhow::Result<()> {
        let report = self
            .call(
                "POST",
                "/v1/admin/reconciliations",
                Some(&self.admin_token),
                None,
                None,
                StatusCode::CREATED,
            )
            .await?;
        ensure!(
            report["discrepancy_count"] == 0,
            "the reconciliation after seeding found discrepancies: {report}"
        );
        Ok(())
    }

    async fn wait_for(
        &self,
        path: &str,
        token: &str,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<()> {
        for _ in 0..SETTLE_WAIT_MS / POLL_INTERVAL_MS {
            if done(&self.get(path, token).await?) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
        }
        bail!("{path} did not settle within {SETTLE_WAIT_MS} ms")
    }
}

/// A session's bearer token and whose it is (a user's or a merchant's id).
fn token(session: &Value) -> anyhow::Result<Party> {
    let token = session["token"]
        .as_str()
        .context("the session has no token")?;
    let id = session["user"]["id"]
        .as_str()
        .or_else(|| session["merchant"]["id"].as_str())
        .unwrap_or_default();
    Ok(Party {
        token: token.to_owned(),
        id: id.to_owned(),
    })
}

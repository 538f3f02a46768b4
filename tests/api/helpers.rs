//! The test harness: spawns walleti on port 0 against a fresh database (a new SQLite file, or
//! a new PostgreSQL database when `WALLETI_TEST_DATABASE_URL` is set) and drives its HTTP API.

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use std::net::TcpListener;
use std::sync::Arc;
use walleti::app::{Application, RunningApplication};
use walleti::config::Settings;
use walleti::domain::SystemClock;

pub const ADMIN_TOKEN: &str = "test-operator-token-0123456789";
pub const BANK_SECRET: &str = "test-bank-webhook-secret";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// SQLite always; PostgreSQL too when the CI variable is set (then it must be reachable).
pub fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::Sqlite];
    if std::env::var("WALLETI_TEST_DATABASE_URL").is_ok_and(|url| !url.is_empty()) {
        backends.push(Backend::Postgres);
    }
    backends
}

/// A fresh, empty database for one test.
pub async fn fresh_database(backend: Backend) -> String {
    let name = format!("walleti_t_{}", uuid::Uuid::now_v7().simple());
    match backend {
        Backend::Sqlite => {
            let path = std::env::temp_dir().join(format!("{name}.db"));
            format!("sqlite://{}?mode=rwc", path.display())
        }
        Backend::Postgres => {
            let admin_url =
                std::env::var("WALLETI_TEST_DATABASE_URL").expect("WALLETI_TEST_DATABASE_URL");
            let connection = Database::connect(admin_url.as_str())
                .await
                .expect("WALLETI_TEST_DATABASE_URL is set but PostgreSQL is unreachable");
            connection
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create test database");
            let _ = connection.close().await;
            let (base, query) = match admin_url.split_once('?') {
                Some((base, query)) => (base.to_owned(), format!("?{query}")),
                None => (admin_url.clone(), String::new()),
            };
            let prefix = base
                .rsplit_once('/')
                .map(|(prefix, _)| prefix)
                .unwrap_or(&base);
            format!("{prefix}/{name}{query}")
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub database_url: String,
    pub running: Option<RunningApplication>,
}

pub struct TestUser {
    pub id: String,
    pub email: String,
    pub phone: String,
    pub token: String,
}

pub fn test_settings(database_url: &str) -> Settings {
    let mut settings = Settings::embedded(database_url);
    settings.admin_token.value = ADMIN_TOKEN.to_owned();
    settings.admin_token.generated = false;
    settings.bank_webhook_secrets = vec![BANK_SECRET.to_owned()];
    // The tests' merchant webhook receivers listen on 127.0.0.1.
    settings.webhook_allow_private_networks = true;
    settings.limits.inbox_poll_interval = std::time::Duration::from_millis(200);
    settings.limits.outbox_poll_interval = std::time::Duration::from_millis(50);
    // Every test signs its users up from 127.0.0.1; the sign-up limit has its own test.
    settings.limits.signup_address_quota = walleti::config::Quota {
        requests: 1_000_000,
        period: std::time::Duration::from_secs(1),
        burst: 1_000_000,
    };
    settings
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    let database_url = fresh_database(backend).await;
    spawn_app_with(test_settings(&database_url)).await
}

pub async fn spawn_app_with(settings: Settings) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    spawn_app_on(settings, listener).await
}

/// Spawns walleti on a listener the test bound itself (to know its address beforehand).
pub async fn spawn_app_on(settings: Settings, listener: TcpListener) -> TestApp {
    let database_url = settings.database_url.clone();
    let application = Application::build_with_listener(settings, listener, Arc::new(SystemClock))
        .await
        .expect("build application");
    let running = application.spawn();
    TestApp {
        address: format!("http://127.0.0.1:{}", running.port),
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .expect("client"),
        database_url,
        running: Some(running),
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub fn state(&self) -> &walleti::http::AppState {
        self.running.as_ref().expect("running").state.get_ref()
    }

    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: Option<String>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("send request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("read body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            body,
        }
    }

    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: &Value,
    ) -> Reply {
        self.request(
            reqwest::Method::POST,
            path,
            token,
            key,
            Some(body.to_string()),
        )
        .await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.request(reqwest::Method::GET, path, Some(token), None, None)
            .await
    }

    /// Signs up and logs in a user with a unique email and phone.
    pub async fn user(&self, label: &str) -> TestUser {
        let unique: u64 = rand::random();
        let email = format!("{label}-{unique:x}@example.com");
        let phone = format!("+1{:010}", unique % 10_000_000_000);
        let password = "correct horse battery";
        let created = self
            .post(
                "/v1/users",
                None,
                None,
                &json!({"email": email, "phone": phone, "name": label, "password": password}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let session = self
            .post(
                "/v1/sessions",
                None,
                None,
                &json!({"login": email, "password": password}),
            )
            .await;
        assert_eq!(session.status, StatusCode::CREATED, "{}", session.text);
        TestUser {
            id: created.body["id"].as_str().expect("id").to_owned(),
            email,
            phone,
            token: session.body["token"].as_str().expect("token").to_owned(),
        }
    }

    pub async fn adjust(&self, user_id: &str, amount: i64, currency: &str) -> Reply {
        let key = uuid::Uuid::now_v7().to_string();
        self.post(
            "/v1/admin/adjustments",
            Some(ADMIN_TOKEN),
            Some(&key),
            &json!({"user_id": user_id, "amount": amount, "currency": currency, "reason": "test funding"}),
        )
        .await
    }

    pub async fn fund(&self, user: &TestUser, amount: i64) {
        let reply = self.adjust(&user.id, amount, "usd").await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    }

    pub async fn transfer(&self, from: &TestUser, to: &str, amount: Value, key: &str) -> Reply {
        self.post(
            "/v1/transfers",
            Some(&from.token),
            Some(key),
            &json!({"to": to, "amount": amount, "currency": "usd"}),
        )
        .await
    }

    /// (available, locked) of the user's usd account.
    pub async fn balance(&self, user: &TestUser) -> (i64, i64) {
        let wallet = self.get("/v1/wallet", &user.token).await;
        assert_eq!(wallet.status, StatusCode::OK, "{}", wallet.text);
        let accounts = wallet.body["accounts"].as_array().expect("accounts");
        accounts
            .iter()
            .find(|account| account["currency"] == "usd")
            .map(|account| {
                (
                    account["available"].as_i64().expect("i64"),
                    account["locked"].as_i64().expect("i64"),
                )
            })
            .unwrap_or((0, 0))
    }

    /// Every ledger entry of the user (all pages), newest first.
    pub async fn all_entries(&self, user: &TestUser) -> Vec<Value> {
        let mut entries: Vec<Value> = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = self
                .get(
                    &format!("/v1/wallet/entries?limit=100{cursor}"),
                    &user.token,
                )
                .await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.text);
            let data = page.body["data"].as_array().expect("data").clone();
            let last = data
                .last()
                .map(|entry| entry["id"].as_str().expect("id").to_owned());
            entries.extend(data);
            match (page.body["has_more"].as_bool(), last) {
                (Some(true), Some(last)) => cursor = format!("&starting_after={last}"),
                _ => return entries,
            }
        }
    }
}

/// Decodes one `application/x-www-form-urlencoded` component (what fake providers receive).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.replace('+', " ").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = (bytes[index] == b'%' && index + 2 < bytes.len())
            .then(|| {
                std::str::from_utf8(&bytes[index + 1..index + 3])
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            })
            .flatten();
        match byte {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A new P2P transfer of `amount` usd from one user's account to another's, as its saga opens
/// it (`debited`, its journal id its own id).
pub fn p2p_transfer(
    (from_user, source): (&str, &str),
    (to_user, target): (&str, &str),
    amount: i64,
) -> walleti::store::transfers::TransferRecord {
    use walleti::domain::{Amount, Currency, JournalId, TransferId, TransferKind, TransferState};
    use walleti::store::transfers::{Party, TransferRecord};
    let id = TransferId::generate();
    let now = chrono::Utc::now();
    TransferRecord {
        id,
        journal_id: JournalId::from(id.as_uuid()),
        from: Party::User(from_user.parse().expect("user id")),
        to: Party::User(to_user.parse().expect("user id")),
        kind: TransferKind::P2p,
        reference_id: None,
        source_account: source.parse().expect("account id"),
        target_account: target.parse().expect("account id"),
        amount: Amount::new(amount).expect("amount"),
        currency: Currency::parse("usd").expect("usd"),
        note: None,
        state: TransferState::Debited,
        failure_code: None,
        created_at: now,
        updated_at: now,
    }
}

/// Undoes the migration `name` and every applied one after it (newest first), whatever
/// came after it and whatever is already undone.
pub async fn migrate_down_through(db: &sea_orm::DatabaseConnection, name: &str) {
    use migration::{Migrator, MigratorTrait};
    let applied: Vec<String> = Migrator::get_applied_migrations(db)
        .await
        .expect("applied migrations")
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect();
    let position = applied
        .iter()
        .position(|known| known == name)
        .unwrap_or_else(|| panic!("migration {name} is not applied"));
    let count = u32::try_from(applied.len() - position).expect("count");
    Migrator::down(db, Some(count)).await.expect("down");
    let left = Migrator::get_applied_migrations(db)
        .await
        .expect("applied migrations");
    assert_eq!(left.len(), position, "everything from {name} on is undone");
}

/// The first column, as text, of every row `sql` returns (e.g. a table's index names).
pub async fn text_column(db: &sea_orm::DatabaseConnection, sql: &str) -> Vec<String> {
    db.query_all_raw(sea_orm::Statement::from_string(
        db.get_database_backend(),
        sql,
    ))
    .await
    .expect("query")
    .iter()
    .map(|row| row.try_get_by_index::<String>(0).expect("text"))
    .collect()
}

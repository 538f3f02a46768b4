//! `docker stop` sends SIGTERM: the real binary stops accepting, answers every request it had
//! accepted, and exits 0; no transfer happens without its answer, which a restart proves.

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ADMIN: &str = "shutdown-test-operator-token-0123";
const SENDERS: usize = 4;
const AMOUNT: i64 = 100;

/// The walleti binary serving on `port` against the SQLite file `database`.
fn start(database: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_walleti"))
        .arg("serve")
        .env("DATABASE_URL", database)
        .env("WALLETI_BIND", format!("127.0.0.1:{port}"))
        .env("WALLETI_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start walleti")
}

/// Kills the child if the test fails half-way.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    for _ in 0..300 {
        if let Ok(reply) = client.get(format!("{base}/health")).send().await
            && reply.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("walleti never became healthy at {base}");
}

async fn post(client: &reqwest::Client, url: &str, token: Option<&str>, body: Value) -> Value {
    let mut request = client
        .post(url)
        .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json")
}

/// Signs up a user and returns (id, token).
async fn user(client: &reqwest::Client, base: &str, label: &str) -> (String, String) {
    let email = format!("{label}@example.com");
    let phone = format!("+1415555{:04}", rand::random::<u16>() % 10_000);
    let created = post(
        client,
        &format!("{base}/v1/users"),
        None,
        json!({"email": email, "phone": phone, "name": label, "password": "correct horse battery"}),
    )
    .await;
    let session = post(
        client,
        &format!("{base}/v1/sessions"),
        None,
        json!({"login": email, "password": "correct horse battery"}),
    )
    .await;
    (
        created["id"].as_str().expect("id").to_owned(),
        session["token"].as_str().expect("token").to_owned(),
    )
}

async fn usd_available(client: &reqwest::Client, base: &str, token: &str) -> i64 {
    let wallet: Value = client
        .get(format!("{base}/v1/wallet"))
        .bearer_auth(token)
        .send()
        .await
        .expect("wallet")
        .json()
        .await
        .expect("json");
    wallet["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .find(|account| account["currency"] == "usd")
        .map(|account| {
            account["available"].as_i64().expect("available")
                + account["locked"].as_i64().expect("locked")
        })
        .unwrap_or(0)
}

/// Sends transfers to `to` until walleti stops answering; returns how many it acknowledged.
async fn keep_sending(base: String, token: String, to: String) -> (usize, Vec<u16>) {
    let client = reqwest::Client::new();
    let mut acknowledged = 0;
    let mut other_statuses = Vec::new();
    loop {
        let sent = client
            .post(format!("{base}/v1/transfers"))
            .bearer_auth(&token)
            .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
            .json(&json!({"to": to, "amount": AMOUNT, "currency": "usd"}))
            .send()
            .await;
        match sent {
            Ok(reply) if reply.status() == reqwest::StatusCode::CREATED => acknowledged += 1,
            // Rate limited: nothing happened.
            Ok(reply) if reply.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {}
            Ok(reply) => other_statuses.push(reply.status().as_u16()),
            // Refused or closed before walleti took it: walleti stopped accepting.
            Err(_) => return (acknowledged, other_statuses),
        }
    }
}

#[tokio::test]
async fn sigterm_answers_every_accepted_request_and_exits_zero() {
    let database = std::env::temp_dir().join(format!(
        "walleti_shutdown_{}.db",
        uuid::Uuid::now_v7().simple()
    ));
    let database = format!("sqlite://{}?mode=rwc", database.display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut walleti = Running(start(&database, port));
    wait_healthy(&client, &base).await;

    let (bob, bob_token) = user(&client, &base, "bob").await;
    let mut senders = Vec::new();
    for index in 0..SENDERS {
        let (id, token) = user(&client, &base, &format!("sender{index}")).await;
        let funded = post(
            &client,
            &format!("{base}/v1/admin/adjustments"),
            Some(ADMIN),
            json!({"user_id": id, "amount": 1_000_000, "currency": "usd", "reason": "shutdown test"}),
        )
        .await;
        assert_eq!(funded["amount"], 1_000_000, "{funded}");
        senders.push(token);
    }
    let load: Vec<_> = senders
        .iter()
        .map(|token| tokio::spawn(keep_sending(base.clone(), token.clone(), bob.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;

    let terminated = Command::new("kill")
        .args(["-TERM", &walleti.0.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(terminated.success());
    let mut acknowledged = 0;
    for sender in load {
        let (count, others) = sender.await.expect("sender");
        assert!(
            others.is_empty(),
            "answers other than 201 or 429: {others:?}"
        );
        acknowledged += count;
    }
    let mut exit = None;
    for _ in 0..400 {
        if let Some(status) = walleti.0.try_wait().expect("wait") {
            exit = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exit = exit.expect("walleti exits after SIGTERM");
    assert!(exit.success(), "exit status {exit:?}");
    assert!(acknowledged > 0, "the load ran before the signal");

    // Restarted: bob holds exactly what was acknowledged, and nothing was created or lost.
    walleti = Running(start(&database, port));
    wait_healthy(&client, &base).await;
    assert_eq!(
        usd_available(&client, &base, &bob_token).await,
        AMOUNT * acknowledged as i64
    );
    let mut total = usd_available(&client, &base, &bob_token).await;
    for token in &senders {
        total += usd_available(&client, &base, token).await;
    }
    assert_eq!(total, 1_000_000 * SENDERS as i64);
    drop(walleti);
}

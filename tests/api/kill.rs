//! kill -9 under load: the real binary is killed while transfers stream through its group
//! commits, then restarted on the same database. Nothing acknowledged may be lost, nothing may
//! be paid twice, and every retry with the same key gets the first answer.

use crate::helpers::{ADMIN_TOKEN, backends, fresh_database};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const USERS: usize = 12;
const FUNDING: i64 = 1_000_000;
const SENDERS: usize = 32;
const LOAD_BEFORE_KILL: Duration = Duration::from_millis(1500);

struct Server {
    child: Child,
    base: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

async fn start_server(database_url: &str, port: u16) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_walleti"))
        .env("DATABASE_URL", database_url)
        .env("WALLETI_BIND", format!("127.0.0.1:{port}"))
        .env("WALLETI_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("WALLETI_RECONCILE_INTERVAL_SECONDS", "0")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start walleti");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = client.get(format!("{base}/health")).send().await
            && response.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "walleti did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server { child, base }
}

#[derive(Clone)]
struct Account {
    id: String,
    token: String,
}

/// One transfer request as sent, and its answer if one arrived.
struct Sent {
    key: String,
    from: usize,
    body: Value,
    answer: Option<(StatusCode, String)>,
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: &Value,
) -> reqwest::Result<(StatusCode, String, bool)> {
    let mut request = client.post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await?;
    let status = response.status();
    let replayed = response.headers().contains_key("Idempotent-Replayed");
    Ok((status, response.text().await?, replayed))
}

async fn set_up(client: &reqwest::Client, base: &str) -> Vec<Account> {
    let mut accounts = Vec::new();
    for index in 0..USERS {
        let email = format!("kill{index}@example.com");
        let (status, text, _) = post(client, &format!("{base}/v1/users"), None, None, &json!({
            "email": email, "phone": format!("+1415555{index:04}"), "name": "k", "password": "kill-test-password"
        }))
        .await
        .expect("sign up");
        assert_eq!(status, StatusCode::CREATED, "{text}");
        let id = serde_json::from_str::<Value>(&text).expect("json")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let (_, text, _) = post(
            client,
            &format!("{base}/v1/sessions"),
            None,
            None,
            &json!({"login": email, "password": "kill-test-password"}),
        )
        .await
        .expect("log in");
        let token = serde_json::from_str::<Value>(&text).expect("json")["token"]
            .as_str()
            .expect("token")
            .to_owned();
        let (status, text, _) = post(
            client,
            &format!("{base}/v1/admin/adjustments"),
            Some(ADMIN_TOKEN),
            Some(&format!("fund-{index}")),
            &json!({"user_id": id, "amount": FUNDING, "currency": "usd", "reason": "kill test"}),
        )
        .await
        .expect("fund");
        assert_eq!(status, StatusCode::CREATED, "{text}");
        accounts.push(Account { id, token });
    }
    accounts
}

/// Streams transfers from `SENDERS` tasks until `stop`, recording every request.
async fn stream_transfers(
    base: String,
    accounts: Arc<Vec<Account>>,
    stop: Arc<AtomicBool>,
) -> Vec<Sent> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    let tasks = (0..SENDERS).map(|sender| {
        let (client, base, accounts, stop) = (
            client.clone(),
            base.clone(),
            Arc::clone(&accounts),
            Arc::clone(&stop),
        );
        tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut sequence = 0;
            while !stop.load(Ordering::SeqCst) {
                sequence += 1;
                let from = (sender + sequence) % USERS;
                let to = (from + 1 + sequence % (USERS - 1)) % USERS;
                let key = format!("kill-{sender}-{sequence}");
                let body = json!({"to": accounts[to].id, "amount": 1 + (sequence % 50) as i64, "currency": "usd"});
                let answer = post(
                    &client,
                    &format!("{base}/v1/transfers"),
                    Some(&accounts[from].token),
                    Some(&key),
                    &body,
                )
                .await
                .ok()
                .map(|(status, text, _)| (status, text));
                let refused = answer.is_none();
                sent.push(Sent {
                    key,
                    from,
                    body,
                    answer,
                });
                if refused {
                    break;
                }
            }
            sent
        })
    });
    let mut all = Vec::new();
    for task in futures_util::future::join_all(tasks).await {
        all.extend(task.expect("sender task"));
    }
    all
}

/// Every transfer any user can see, by id (each appears in its sender's and recipient's list).
async fn all_transfers(
    client: &reqwest::Client,
    base: &str,
    accounts: &[Account],
) -> HashMap<String, Value> {
    let mut transfers = HashMap::new();
    for account in accounts {
        let mut after: Option<String> = None;
        loop {
            let mut url = format!("{base}/v1/transfers?limit=100");
            if let Some(after) = &after {
                url.push_str(&format!("&starting_after={after}"));
            }
            let page: Value = client
                .get(url)
                .bearer_auth(&account.token)
                .send()
                .await
                .expect("list")
                .json()
                .await
                .expect("json");
            let data = page["data"].as_array().expect("data").clone();
            for transfer in &data {
                transfers.insert(
                    transfer["id"].as_str().expect("id").to_owned(),
                    transfer.clone(),
                );
            }
            if page["has_more"] != true || data.is_empty() {
                break;
            }
            after = data
                .last()
                .and_then(|t| t["id"].as_str())
                .map(str::to_owned);
        }
    }
    transfers
}

#[tokio::test]
async fn kill_9_under_load_loses_nothing_acknowledged_and_pays_nothing_twice() {
    for backend in backends() {
        let database_url = fresh_database(backend).await;
        let port = free_port();
        let mut server = start_server(&database_url, port).await;
        let base = server.base.clone();
        let client = reqwest::Client::new();
        let accounts = Arc::new(set_up(&client, &base).await);

        let stop = Arc::new(AtomicBool::new(false));
        let load = tokio::spawn(stream_transfers(
            base.clone(),
            Arc::clone(&accounts),
            Arc::clone(&stop),
        ));
        tokio::time::sleep(LOAD_BEFORE_KILL).await;
        server.child.kill().expect("kill -9");
        server.child.wait().expect("reap");
        stop.store(true, Ordering::SeqCst);
        let sent = load.await.expect("load");
        let acknowledged = sent
            .iter()
            .filter(|sent| {
                sent.answer
                    .as_ref()
                    .is_some_and(|(status, _)| status.is_success())
            })
            .count();
        assert!(
            acknowledged > 10,
            "too few transfers before the kill ({acknowledged})"
        );

        let server = start_server(&database_url, port).await;
        let base = server.base.clone();
        // Every answered request replays byte for byte; every other one gets an answer too.
        let mut unanswered = 0;
        let transfers_url = format!("{base}/v1/transfers");
        // All at once, as clients reconnecting after an outage would; a retry refused by the
        // per-user money quota (429, not stored) waits and retries, as a client honouring
        // Retry-After does: the answer that counts is the first one that is not a 429.
        let retries = futures_util::future::join_all(sent.iter().map(|request| async {
            let mut attempts = 0;
            loop {
                let answer = post(
                    &client,
                    &transfers_url,
                    Some(&accounts[request.from].token),
                    Some(&request.key),
                    &request.body,
                )
                .await;
                attempts += 1;
                match &answer {
                    Ok((status, _, _)) if status.as_u16() == 429 && attempts < 60 => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    _ => return answer,
                }
            }
        }))
        .await;
        for (request, retry) in sent.iter().zip(retries) {
            let (status, text, replayed) = retry.expect("retry");
            match &request.answer {
                // 503 and 429 are not stored: the retry is the request's first real answer.
                Some((first_status, first_text))
                    if first_status.as_u16() != 503 && first_status.as_u16() != 429 =>
                {
                    assert_eq!(
                        (status, text.as_str()),
                        (*first_status, first_text.as_str()),
                        "{backend:?}: key {} answered differently after the crash",
                        request.key
                    );
                    assert!(replayed, "{backend:?}: not marked as a replay");
                }
                _ => {
                    unanswered += 1;
                    // The claim of a request cut off by the kill is held until it is stale.
                    assert!(
                        status == StatusCode::CREATED
                            || status == StatusCode::UNPROCESSABLE_ENTITY
                            || status == StatusCode::CONFLICT,
                        "{backend:?}: retry of {} answered {status}: {text}",
                        request.key
                    );
                }
            }
        }

        // Sagas cut off by the kill were resumed at start-up: nothing stays pending.
        let deadline = Instant::now() + Duration::from_secs(60);
        let transfers = loop {
            let transfers = all_transfers(&client, &base, &accounts).await;
            if transfers.values().all(|t| t["status"] != "pending") {
                break transfers;
            }
            assert!(Instant::now() < deadline, "transfers still pending");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        // Each acknowledged transfer exists once; no key made two transfers.
        let ids: HashSet<&str> = transfers.keys().map(String::as_str).collect();
        for request in &sent {
            if let Some((status, text)) = &request.answer
                && *status == StatusCode::CREATED
            {
                let id = serde_json::from_str::<Value>(text).expect("json")["id"]
                    .as_str()
                    .expect("id")
                    .to_owned();
                assert!(
                    ids.contains(id.as_str()),
                    "{backend:?}: acknowledged {id} lost"
                );
            }
        }
        assert!(transfers.len() <= sent.len(), "more transfers than keys");
        // Every balance is exactly its funding plus what the settled transfers moved.
        let index_of: HashMap<&str, usize> = accounts
            .iter()
            .enumerate()
            .map(|(index, account)| (account.id.as_str(), index))
            .collect();
        let mut expected = [FUNDING; USERS];
        for transfer in transfers.values() {
            if transfer["status"] == "completed" {
                let amount = transfer["amount"].as_i64().expect("amount");
                expected[index_of[transfer["from_user"].as_str().expect("from")]] -= amount;
                expected[index_of[transfer["to_user"].as_str().expect("to")]] += amount;
            }
        }
        for (index, account) in accounts.iter().enumerate() {
            let wallet: Value = client
                .get(format!("{base}/v1/wallet"))
                .bearer_auth(&account.token)
                .send()
                .await
                .expect("wallet")
                .json()
                .await
                .expect("json");
            assert_eq!(
                wallet["accounts"][0]["available"].as_i64(),
                Some(expected[index]),
                "{backend:?}: user {index}'s balance disagrees with the settled transfers"
            );
        }
        let (status, text, _) = post(
            &client,
            &format!("{base}/v1/admin/reconciliations"),
            Some(ADMIN_TOKEN),
            None,
            &json!({}),
        )
        .await
        .expect("reconcile");
        assert_eq!(status, StatusCode::CREATED, "{text}");
        let report: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(report["status"], "clean", "{backend:?}: {report}");
        println!(
            "{backend:?}: killed after {} requests ({acknowledged} answered 2xx, {unanswered} cut off); {} transfers, all consistent after restart",
            sent.len(),
            transfers.len()
        );
        let mut server = server;
        let _ = server.child.kill();
        let _ = server.child.wait();
    }
}

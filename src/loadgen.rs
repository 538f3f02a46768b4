//! `walleti loadgen`: an HTTP load generator that works against any running walleti. It signs
//! up N users, funds each with an operator adjustment, fires P2P transfers at a fixed
//! concurrency for a fixed time, prints throughput and latency percentiles, and then checks
//! that the total of the users' balances still equals what was funded.
//!
//! Modes: `uniform` picks random payer/payee pairs; `hot` has every payer pay one account,
//! the worst case for a single wallet (every credit serialises through its actor).
//!
//! What a transfer costs is printed too: the server's CPU time per transfer (from its
//! `process_cpu_seconds_total`) and its resident memory, and, given `--database-url` of the
//! server's PostgreSQL database, the database transactions per transfer
//! (`pg_stat_database.xact_commit + xact_rollback` over the timed phase).

use anyhow::{Context, bail};
use rand::Rng;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Users are funded with this many minor units each, far more than the run can spend.
const FUNDING_PER_USER: i64 = 1_000_000_000;
const TRANSFER_AMOUNT_MAX: i64 = 100;
const SETTLE_WAIT_MAX: Duration = Duration::from_secs(60);
/// Users set up (logged in) from one client address: the server allows 100 logins per address
/// a minute (`Limits::login_address_quota`), so 200 users from one address waited a minute.
const USERS_PER_ADDRESS: usize = 90;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Uniform,
    Hot,
    /// One operator credit to each account of `--accounts-file` (one id per line): opens as
    /// many wallets as there are accounts, to measure the server's memory with them.
    Credit,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenArgs {
    /// Base URL of the walleti to load.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The operator token (used only to fund the generated users).
    #[arg(long, env = "WALLETI_ADMIN_TOKEN")]
    pub admin_token: String,
    #[arg(long, default_value_t = 50)]
    pub users: usize,
    /// Transfers in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 10)]
    pub duration_seconds: u64,
    #[arg(long, value_enum, default_value_t = Mode::Uniform)]
    pub mode: Mode,
    /// The server's PostgreSQL database, to count its transactions per transfer.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Where the server's Prometheus metrics are (default: `{url}/metrics`).
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Account ids, one per line, for `--mode credit`.
    #[arg(long)]
    pub accounts_file: Option<std::path::PathBuf>,
}

/// What the server and its database had done at one instant.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    server_cpu_seconds: Option<f64>,
    server_resident_bytes: Option<f64>,
    database_transactions: Option<i64>,
}

/// PostgreSQL publishes a backend's statistics at most once a second: wait that long before
/// reading them after the load.
const STATISTICS_FLUSH_WAIT: Duration = Duration::from_millis(1500);

async fn read_counters(
    client: &reqwest::Client,
    metrics_url: &str,
    database: Option<&sea_orm::DatabaseConnection>,
) -> Counters {
    let metrics = match client.get(metrics_url).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let sample = |name: &str| {
        metrics.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(' ')?;
            value.trim().parse::<f64>().ok()
        })
    };
    let database_transactions = match database {
        Some(database) => database_transactions(database).await,
        None => None,
    };
    Counters {
        server_cpu_seconds: sample("process_cpu_seconds_total"),
        server_resident_bytes: sample("process_resident_memory_bytes"),
        database_transactions,
    }
}

async fn database_transactions(database: &sea_orm::DatabaseConnection) -> Option<i64> {
    use sea_orm::ConnectionTrait;
    let statement = sea_orm::Statement::from_string(
        database.get_database_backend(),
        "SELECT (xact_commit + xact_rollback)::bigint AS transactions FROM pg_stat_database WHERE datname = current_database()",
    );
    let row = database.query_one_raw(statement).await.ok()??;
    row.try_get::<i64>("", "transactions").ok()
}

fn print_costs(before: Counters, after: Counters, completed: u64) {
    let transfers = completed.max(1) as f64;
    if let (Some(before), Some(after)) = (before.server_cpu_seconds, after.server_cpu_seconds) {
        let cpu = after - before;
        println!(
            "server cpu: {cpu:.2} s = {:.0} µs per transfer",
            cpu * 1e6 / transfers
        );
    }
    if let Some(resident) = after.server_resident_bytes {
        println!("server rss: {:.1} MiB", resident / (1024.0 * 1024.0));
    }
    if let (Some(before), Some(after)) = (before.database_transactions, after.database_transactions)
    {
        // The two statistics reads are themselves transactions.
        let transactions = (after - before - 2).max(0);
        println!(
            "database: {transactions} transactions = {:.2} per transfer",
            transactions as f64 / transfers
        );
    }
}

struct User {
    id: String,
    token: String,
}

#[derive(Default)]
struct WorkerReport {
    latencies: Vec<Duration>,
    completed: u64,
    pending: Vec<(usize, String)>,
    rejected: u64,
    errors: u64,
    /// Errors by HTTP status (0: no answer), so that a run that met a rate limit (429) or a
    /// failing server (5xx) says so.
    error_statuses: std::collections::BTreeMap<u16, u64>,
}

pub async fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    if args.mode == Mode::Credit {
        return run_credits(args).await;
    }
    if args.users < 2 || args.concurrency == 0 {
        bail!("need at least 2 users and a concurrency of at least 1");
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .timeout(Duration::from_secs(30))
        .build()?;
    let run_id: u32 = rand::random();
    println!("setting up {} users on {} ...", args.users, args.url);
    let users = set_up_users(&client, &args, run_id).await?;
    let funded = FUNDING_PER_USER * users.len() as i64;

    println!(
        "mode={:?} users={} concurrency={} duration={}s",
        args.mode, args.users, args.concurrency, args.duration_seconds
    );
    let metrics_url = args
        .metrics_url
        .clone()
        .unwrap_or_else(|| format!("{}/metrics", args.url));
    let database = match &args.database_url {
        Some(url) => Some(
            sea_orm::Database::connect(url)
                .await
                .context("connect to the server's database")?,
        ),
        None => None,
    };
    tokio::time::sleep(STATISTICS_FLUSH_WAIT).await;
    let before = read_counters(&client, &metrics_url, database.as_ref()).await;
    // For scripts that measure other processes over the timed phase (scripts/bench.sh).
    println!("load: started");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_seconds);
    let workers = (0..args.concurrency).map(|worker| {
        let client = client.clone();
        let users = &users;
        let args = &args;
        async move { run_worker(&client, args, users, worker, run_id, deadline).await }
    });
    let reports = futures_util::future::join_all(workers).await;
    let elapsed = started.elapsed();
    println!("load: finished");
    let mut total = WorkerReport::default();
    for report in reports {
        total.latencies.extend(report.latencies);
        total.completed += report.completed;
        total.pending.extend(report.pending);
        total.rejected += report.rejected;
        total.errors += report.errors;
        for (status, count) in report.error_statuses {
            *total.error_statuses.entry(status).or_default() += count;
        }
    }
    print_report(&total, elapsed);
    tokio::time::sleep(STATISTICS_FLUSH_WAIT).await;
    let after = read_counters(&client, &metrics_url, database.as_ref()).await;
    print_costs(before, after, total.completed);
    settle_pending(&client, &args.url, &users, &total.pending).await?;
    verify_conservation(&client, &args.url, &users, funded).await
}

/// `--mode credit`: one operator credit per listed account, `concurrency` at a time; then the
/// server's RSS and live wallets.
async fn run_credits(args: LoadgenArgs) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    let path = args
        .accounts_file
        .as_ref()
        .context("--mode credit needs --accounts-file")?;
    let accounts: Vec<String> = std::fs::read_to_string(path)
        .with_context(|| format!("read {}", path.display()))?
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .timeout(Duration::from_secs(30))
        .build()?;
    let run_id: u32 = rand::random();
    let metrics_url = args
        .metrics_url
        .clone()
        .unwrap_or_else(|| format!("{}/metrics", args.url));
    println!("crediting {} accounts ...", accounts.len());
    let started = Instant::now();
    let failures = futures_util::stream::iter(accounts.iter().enumerate())
        .map(|(index, account)| {
            let client = &client;
            let args = &args;
            async move {
                post(
                    client,
                    &format!("{}/v1/admin/adjustments", args.url),
                    Some(&args.admin_token),
                    Some(&format!("loadgen-credit-{run_id}-{index}")),
                    &json!({"account_id": account, "amount": 1, "currency": "usd", "reason": "loadgen credit"}),
                )
                .await
                .is_err()
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .filter(|failed| futures_util::future::ready(*failed))
        .count()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "credits: {} in {elapsed:.1}s ({:.0}/s), {failures} failed",
        accounts.len(),
        accounts.len() as f64 / elapsed
    );
    let metrics = client.get(&metrics_url).send().await?.text().await?;
    for name in [
        "process_resident_memory_bytes",
        "walleti_actors_live{kind=\"wallet\"}",
    ] {
        if let Some(line) = metrics.lines().find(|line| line.starts_with(name)) {
            println!("{line}");
        }
    }
    Ok(())
}

async fn set_up_users(
    client: &reqwest::Client,
    args: &LoadgenArgs,
    run_id: u32,
) -> anyhow::Result<Vec<User>> {
    let clients = set_up_clients(client, &args.url, args.users)?;
    let clients = &clients;
    let setups = (0..args.users).map(|index| async move {
        let client = &clients[index / USERS_PER_ADDRESS % clients.len()];
        let email = format!("loadgen-{run_id:08x}-{index}@example.com");
        let phone = format!("+1{:03}{:07}", 200 + (run_id % 700), index);
        let password = format!("loadgen-password-{run_id}");
        let created = post(client, &format!("{}/v1/users", args.url), None, None, &json!({
            "email": email, "phone": phone, "name": format!("loadgen {index}"), "password": password,
        }))
        .await?;
        let id = created["id"].as_str().context("user id")?.to_owned();
        let session = post(client, &format!("{}/v1/sessions", args.url), None, None, &json!({"login": email, "password": password})).await?;
        let token = session["token"].as_str().context("session token")?.to_owned();
        post(
            client,
            &format!("{}/v1/admin/adjustments", args.url),
            Some(&args.admin_token),
            Some(&format!("loadgen-fund-{run_id}-{index}")),
            &json!({"user_id": id, "amount": FUNDING_PER_USER, "currency": "usd", "reason": "loadgen funding"}),
        )
        .await?;
        anyhow::Ok(User { id, token })
    });
    // Sign-ups hash passwords (argon2id): keep a handful in flight, not hundreds.
    use futures_util::StreamExt;
    futures_util::stream::iter(setups)
        .buffered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// The clients that set the users up: against a server on an IPv4 loopback address, one per
/// `USERS_PER_ADDRESS` users, each from its own loopback source address (127.0.0.1, 127.0.0.2,
/// …; all of 127.0.0.0/8 is this host's), so that the server's per-address login limit does not
/// hold the set-up back; otherwise (or where only 127.0.0.1 is configured, as on macOS) the one
/// client.
fn set_up_clients(
    client: &reqwest::Client,
    url: &str,
    users: usize,
) -> anyhow::Result<Vec<reqwest::Client>> {
    let loopback = url::Url::parse(url)
        .ok()
        .and_then(|url| url.host_str()?.parse::<std::net::Ipv4Addr>().ok())
        .is_some_and(|address| address.is_loopback());
    if !loopback || users <= USERS_PER_ADDRESS {
        return Ok(vec![client.clone()]);
    }
    let sources: Vec<std::net::Ipv4Addr> = (0..users.div_ceil(USERS_PER_ADDRESS).min(254))
        .map(|index| std::net::Ipv4Addr::new(127, 0, 0, 1 + index as u8))
        .filter(|source| std::net::UdpSocket::bind((*source, 0)).is_ok())
        .collect();
    if sources.len() < 2 {
        return Ok(vec![client.clone()]);
    }
    sources
        .into_iter()
        .map(|source| {
            Ok(reqwest::Client::builder()
                .local_address(std::net::IpAddr::V4(source))
                .timeout(Duration::from_secs(30))
                .build()?)
        })
        .collect()
}

async fn run_worker(
    client: &reqwest::Client,
    args: &LoadgenArgs,
    users: &[User],
    worker: usize,
    run_id: u32,
    deadline: Instant,
) -> WorkerReport {
    let mut report = WorkerReport::default();
    let mut sequence = 0_u64;
    while Instant::now() < deadline {
        let (from, to, amount) = {
            let mut random = rand::rng();
            let (from, to) = match args.mode {
                Mode::Uniform => {
                    let from = random.random_range(0..users.len());
                    (
                        from,
                        (from + random.random_range(1..users.len())) % users.len(),
                    )
                }
                Mode::Hot | Mode::Credit => (random.random_range(1..users.len()), 0),
            };
            (from, to, random.random_range(1..=TRANSFER_AMOUNT_MAX))
        };
        sequence += 1;
        let key = format!("loadgen-{run_id}-{worker}-{sequence}");
        let sent = Instant::now();
        let reply = client
            .post(format!("{}/v1/transfers", args.url))
            .bearer_auth(&users[from].token)
            .header("Idempotency-Key", key)
            .json(&json!({"to": users[to].id, "amount": amount, "currency": "usd"}))
            .send()
            .await;
        let outcome = match reply {
            Ok(response) => (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            ),
            Err(_) => (0, Value::Null),
        };
        report.latencies.push(sent.elapsed());
        match outcome {
            (201, body) if body["status"] == "completed" => report.completed += 1,
            (201, body) => report
                .pending
                .push((from, body["id"].as_str().unwrap_or_default().to_owned())),
            (422, _) => report.rejected += 1,
            (status, _) => {
                report.errors += 1;
                *report.error_statuses.entry(status).or_default() += 1;
            }
        }
    }
    report
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

fn print_report(report: &WorkerReport, elapsed: Duration) {
    let mut latencies = report.latencies.clone();
    latencies.sort();
    let seconds = elapsed.as_secs_f64();
    println!(
        "transfers: {} completed, {} pending, {} rejected, {} errors in {:.1}s",
        report.completed,
        report.pending.len(),
        report.rejected,
        report.errors,
        seconds
    );
    if !report.error_statuses.is_empty() {
        let statuses: Vec<String> = report
            .error_statuses
            .iter()
            .map(|(status, count)| match status {
                0 => format!("no answer ×{count}"),
                status => format!("{status} ×{count}"),
            })
            .collect();
        println!("errors by status: {}", statuses.join(", "));
    }
    println!(
        "throughput: {:.1} transfers/s",
        report.completed as f64 / seconds
    );
    println!(
        "latency ms: p50={:.2} p90={:.2} p99={:.2} max={:.2}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
}

/// Waits until every transfer answered `pending` has finished its saga.
async fn settle_pending(
    client: &reqwest::Client,
    url: &str,
    users: &[User],
    pending: &[(usize, String)],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_WAIT_MAX;
    for (from, id) in pending {
        loop {
            let transfer: Value = client
                .get(format!("{url}/v1/transfers/{id}"))
                .bearer_auth(&users[*from].token)
                .send()
                .await?
                .json()
                .await?;
            if transfer["status"] != "pending" {
                break;
            }
            if Instant::now() > deadline {
                bail!("transfer {id} still pending after {SETTLE_WAIT_MAX:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

async fn verify_conservation(
    client: &reqwest::Client,
    url: &str,
    users: &[User],
    funded: i64,
) -> anyhow::Result<()> {
    let mut total = 0_i64;
    for user in users {
        let wallet: Value = client
            .get(format!("{url}/v1/wallet"))
            .bearer_auth(&user.token)
            .send()
            .await?
            .json()
            .await?;
        for account in wallet["accounts"].as_array().context("wallet accounts")? {
            let available = account["available"].as_i64().context("available")?;
            let locked = account["locked"].as_i64().context("locked")?;
            if available < 0 || locked < 0 {
                bail!("user {} has a negative balance", user.id);
            }
            total += available + locked;
        }
    }
    if total != funded {
        bail!("conservation FAILED: Σ balances = {total}, funded {funded}");
    }
    println!("conservation: Σ balances = {total} = funded {funded} OK");
    Ok(())
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: &Value,
) -> anyhow::Result<Value> {
    // A rate-limited set-up call (e.g. a hundred logins from one address) waits as told and
    // tries again, as a well-behaved client does.
    const RATE_LIMITED_RETRIES_MAX: u32 = 30;
    let mut retries = 0;
    loop {
        let mut request = client.post(url).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS && retries < RATE_LIMITED_RETRIES_MAX {
            retries += 1;
            let wait = retry_after.unwrap_or(1).clamp(1, 10);
            tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
            continue;
        }
        if !status.is_success() {
            bail!("POST {url} answered {status}: {body}");
        }
        return Ok(body);
    }
}

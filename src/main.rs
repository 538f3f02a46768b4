//! The `walleti` binary: parse the command line, load settings, run.

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use walleti::app::Application;
use walleti::config::{LogFormat, Settings};

#[derive(Parser)]
#[command(
    name = "walleti",
    version,
    about = "Digital wallet and payments platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Run one reconciliation against the database, print the report, and exit (non-zero
    /// when it found discrepancies). Stuck sagas are reported; the server resumes them.
    Reconcile,
    /// Seed a fresh database (its own SQLite file, `walleti-demo.db`) with demo people, a shop
    /// and their activity through the API, print the logins, and serve it. With `--url`, seed
    /// an already running walleti (the docker-compose stack) and exit.
    Demo(walleti::demo::DemoArgs),
    /// Generate transfer load against a running walleti and verify conservation.
    Loadgen(walleti::loadgen::LoadgenArgs),
    /// Run the bank simulator as its own process.
    BankSim {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        bind: std::net::SocketAddr,
        /// Base URL people reach the simulator at (default `http://{bind}`).
        #[arg(long)]
        public_url: Option<String>,
        /// Secret that signs the webhooks (walleti's WALLETI_BANK_WEBHOOK_SECRET).
        #[arg(long, env = "WALLETI_BANK_WEBHOOK_SECRET")]
        webhook_secret: String,
        /// The token walleti sends (its WALLETI_BANK_API_TOKEN): the bank API and the fault
        /// API answer only requests that carry it.
        #[arg(long, env = "WALLETI_BANK_API_TOKEN")]
        api_token: String,
        /// walleti's bank webhook URL (`{WALLETI_PUBLIC_URL}/webhooks/bank`): every webhook
        /// goes there and nowhere else.
        #[arg(long)]
        callback_url: String,
    },
}

/// mimalloc: cheaper than glibc malloc on the request path, and it returns freed memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Loadgen(args) = command {
        return walleti::loadgen::run(args).await;
    }
    if let Command::BankSim {
        bind,
        public_url,
        webhook_secret,
        api_token,
        callback_url,
    } = command
    {
        init_logging(LogFormat::Text);
        let public_url = public_url.unwrap_or_else(|| format!("http://{bind}"));
        return run_bank_simulator(bind, public_url, webhook_secret, api_token, callback_url).await;
    }
    if let Command::Demo(walleti::demo::DemoArgs {
        url: Some(url),
        admin_token,
        ..
    }) = &command
    {
        init_logging(LogFormat::Text);
        return seed_running(url, admin_token.as_deref()).await;
    }
    let settings = Settings::from_env()?;
    init_logging(settings.log_format);
    match command {
        Command::Loadgen(_) | Command::BankSim { .. } => Ok(()),
        Command::Demo(args) => demo(settings, args).await,
        Command::Reconcile => reconcile_once(settings).await,
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let store = walleti::store::Store::connect(&settings.database_url).await?;
            store.migrate().await?;
            tracing::info!(database = %walleti::store::redact(&settings.database_url), "migrations applied");
            Ok(())
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    if settings.admin_token.generated {
        println!(
            "WALLETI_ADMIN_TOKEN was not set; the operator token for this run is: {}",
            settings.admin_token.value
        );
    }
    let application = Application::build(settings.clone()).await?;
    println!("{}", application.summary(&settings));
    tracing::info!(
        address = %settings.bind,
        database = %walleti::store::redact(&settings.database_url),
        "walleti listening"
    );
    application.run_until_stopped().await
}

/// `walleti demo`: serve a database of its own and seed it through the API once it answers.
async fn demo(mut settings: Settings, args: walleti::demo::DemoArgs) -> anyhow::Result<()> {
    settings.database_url = args.database_url;
    let application = Application::build(settings.clone()).await?;
    println!("{}", application.summary(&settings));
    let base_url = application.public_url().to_owned();
    let admin_token = settings.admin_token.value.clone();
    let seeding = async move {
        let seeded = walleti::demo::seed(&base_url, &admin_token).await?;
        println!(
            "\n{}",
            walleti::demo::logins(&base_url, &admin_token, &seeded)
        );
        anyhow::Ok(())
    };
    let serving = application.run_until_stopped();
    tokio::pin!(serving);
    tokio::select! {
        result = &mut serving => return result,
        seeded = seeding => seeded.context("seed the demo")?,
    }
    serving.await
}

/// `walleti demo --url …`: seed a walleti that is already running, print the logins, exit.
async fn seed_running(url: &str, admin_token: Option<&str>) -> anyhow::Result<()> {
    let admin_token = admin_token.context(
        "seeding a running walleti needs its operator token: --admin-token or WALLETI_ADMIN_TOKEN",
    )?;
    let seeded = walleti::demo::seed(url, admin_token).await?;
    println!("{}", walleti::demo::logins(url, admin_token, &seeded));
    Ok(())
}

async fn run_bank_simulator(
    bind: std::net::SocketAddr,
    public_url: String,
    webhook_secret: String,
    api_token: String,
    callback_url: String,
) -> anyhow::Result<()> {
    // One secret signs; walleti may accept several during a rotation.
    let webhook_secret = webhook_secret
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    anyhow::ensure!(
        api_token.len() >= 16,
        "--api-token (WALLETI_BANK_API_TOKEN) must be at least 16 characters"
    );
    anyhow::ensure!(
        !webhook_secret.is_empty(),
        "--webhook-secret must not be empty"
    );
    let simulator = walleti::bank_sim::BankSimulator::new(walleti::bank_sim::SimulatorSettings {
        base_url: public_url,
        webhook_secret,
        callback_url,
        api_tokens: vec![api_token.clone()],
        fault_tokens: vec![api_token],
        references: None,
    })?;
    let listener = std::net::TcpListener::bind(bind)
        .map_err(|error| anyhow::anyhow!("bind {bind}: {error}"))?;
    tracing::warn!(address = %bind, "bank simulator listening: a development tool that pays from nowhere");
    walleti::bank_sim::serve_standalone(simulator, listener)?.await?;
    Ok(())
}

async fn reconcile_once(settings: Settings) -> anyhow::Result<()> {
    let store = walleti::store::Store::connect(&settings.database_url).await?;
    store.migrate().await?;
    // An embedded bank simulator lives in the server process; only a configured bank is checked.
    let outbound = walleti::providers::outbound::Outbound::from_extra_ca_file(
        settings.extra_ca_certs.as_deref(),
    )?;
    let bank = match settings.bank_url.as_deref() {
        Some(url) => Some(walleti::providers::bank::BankClient::new(
            url,
            settings.bank_api_token.clone(),
            &outbound,
        )?),
        None => None,
    };
    let public_url = settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", settings.bind));
    let stripe = match &settings.stripe {
        Some(stripe) => Some(
            walleti::providers::stripe::StripeCheckout::new(
                &stripe.secret_key,
                &stripe.api_base,
                &public_url,
            )
            .map_err(|error| anyhow::anyhow!("configure Stripe: {error}"))?,
        ),
        None => None,
    };
    let context = walleti::actors::reconciler::ReconcilerContext {
        store,
        metrics: walleti::metrics::Metrics::new(),
        bank,
        stripe,
        sagas: None,
        saga_stale_after: settings.limits.saga_stale_after,
    };
    let report = walleti::actors::reconciler::reconcile(&context, "cli").await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&walleti::http::views::ReconciliationView::from(&report))?
    );
    if report.discrepancy_count > 0 {
        anyhow::bail!("{} discrepancies found", report.discrepancy_count);
    }
    Ok(())
}

/// `info`, except ractor's own spans: at `info` it opens one for every actor's lifetime (an entry
/// in the tracing registry per actor, and sagas are one actor per transfer) and its start-up, which walleti's logs never show.
const DEFAULT_LOG_FILTER: &str = "info,ractor=warn";

fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

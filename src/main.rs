//! The `walleti` binary: parse the command line, load settings, run.

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
    /// Generate transfer load against a running walleti and verify conservation.
    Loadgen(walleti::loadgen::LoadgenArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Loadgen(args) = command {
        return walleti::loadgen::run(args).await;
    }
    let settings = Settings::from_env()?;
    init_logging(settings.log_format);
    match command {
        Command::Loadgen(_) => Ok(()),
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
    tracing::info!(
        address = %settings.bind,
        database = %walleti::store::redact(&settings.database_url),
        "walleti listening"
    );
    application.run_until_stopped().await
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

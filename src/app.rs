//! `Application`: wires store, actors and HTTP together, and runs them. Start-up order:
//! connect, migrate, open the system accounts, start the wallet supervisor, resume every
//! unfinished saga, start the periodic saga resumer, then serve HTTP.

use crate::actors::ledger_writer::{Ledger, LedgerWriter, LedgerWriterArgs};
use crate::actors::notifier::{Clients, Notifier, NotifierArgs};
use crate::actors::outbox_relay::{InProcessBus, OutboxRelay, RelayArgs};
use crate::actors::payments::{HoldKeeper, KeeperArgs, Payments};
use crate::actors::reconciler::{Reconciler, ReconcilerArgs, ReconcilerContext};
use crate::actors::stream_consumer::{ConsumerArgs, ConsumerMsg, Handler, StreamConsumer};
use crate::actors::transfer_saga::{self, SagaContext};
use crate::actors::transfers::Transfers;
use crate::actors::wallet_supervisor::{
    SupervisorArgs, SupervisorMsg, WalletShards, WalletSupervisor, Wallets,
};
use crate::actors::webhook_dispatcher::{DispatcherArgs, WebhookDispatcher};
use crate::actors::webhook_ingestor::{IngestorArgs, IngestorMsg, WebhookIngestor};
use crate::bank_sim::{
    BankSimulator, ReferenceCheck, ReferenceClaim, ReferenceKind, SimulatorSettings,
};
use crate::bus::EventBus;
use crate::bus::redis::{Group, RedisBus, StreamNames};
use crate::bus::revocations::Revocations;
use crate::config::Settings;
use crate::domain::{Clock, OnrampProvider, SystemClock};
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::providers::bank::BankClient;
use crate::providers::email::Mailer;
use crate::providers::outbound::Outbound;
use crate::providers::push::Fcm;
use crate::providers::sms::Twilio;
use crate::providers::stripe::StripeCheckout;
use crate::store::Store;
use actix_web::dev::ServerHandle;
use actix_web::{HttpServer, web};
use anyhow::Context;
use ractor::{Actor, ActorRef};
use std::net::TcpListener;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// How long a stopping walleti lets the requests in flight finish.
pub const SHUTDOWN_GRACE_SECONDS: u64 = 30;
/// How long a stopping walleti waits for each actor to finish its current message.
const ACTOR_STOP_WAIT_SECONDS: u64 = 10;

/// Resolves on Ctrl-C or SIGTERM (what `docker stop` and service managers send); says which.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "interrupt",
                _ = terminate.recv() => "terminate",
            },
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
                "interrupt"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "interrupt"
    }
}

/// A built application, bound to its port but not yet serving.
pub struct Application {
    bank_ingestor: ActorRef<IngestorMsg>,
    /// `/metrics` on `WALLETI_METRICS_BIND`, when set.
    metrics_server: Option<actix_web::dev::Server>,
    metrics_port: Option<u16>,
    port: u16,
    server: actix_web::dev::Server,
    state: web::Data<AppState>,
    supervisor: ActorRef<SupervisorMsg>,
    resumer: JoinHandle<()>,
}

/// A running application; `stop` shuts it down (tests use this to simulate a crash/restart).
pub struct RunningApplication {
    bank_ingestor: ActorRef<IngestorMsg>,
    pub port: u16,
    /// The port of `/metrics` when it has its own address.
    pub metrics_port: Option<u16>,
    metrics_server: Option<ServerHandle>,
    pub state: web::Data<AppState>,
    server: ServerHandle,
    supervisor: ActorRef<SupervisorMsg>,
    resumer: JoinHandle<()>,
    serving: JoinHandle<std::io::Result<()>>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let listener =
            TcpListener::bind(settings.bind).with_context(|| format!("bind {}", settings.bind))?;
        Application::build_with_listener(settings, listener, Arc::new(SystemClock)).await
    }

    pub async fn build_with_listener(
        settings: Settings,
        listener: TcpListener,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        let store = Store::connect(&settings.database_url).await?;
        store.migrate().await?;
        store
            .ensure_system_accounts()
            .await
            .context("open system accounts")?;
        let metrics = Metrics::new();
        let inline_notifier = Arc::new(std::sync::OnceLock::new());
        let deliveries_due = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ledger_writer, _) = Actor::spawn(
            None,
            LedgerWriter,
            LedgerWriterArgs {
                store: store.clone(),
                metrics: Arc::clone(&metrics),
                limits: settings.limits.ledger,
                // Without Redis every consumer is in this process (`InProcessBus`).
                notify_inline: settings.redis_url.is_none().then_some(Clients {
                    email: settings.smtp.is_some(),
                    sms: settings.twilio.is_some(),
                    push: settings.fcm.is_some(),
                }),
                notifier: Arc::clone(&inline_notifier),
                deliveries_due: Arc::clone(&deliveries_due),
            },
        )
        .await
        .context("start ledger writer")?;
        let ledger = Ledger::new(
            ledger_writer,
            Arc::clone(&metrics),
            settings.limits.call_timeout,
        );
        let shards = WalletShards::default();
        let (supervisor, _) = Actor::spawn(
            None,
            WalletSupervisor,
            SupervisorArgs {
                shards: shards.clone(),
                store: store.clone(),
                ledger: ledger.clone(),
                metrics: Arc::clone(&metrics),
                limits: settings.limits.wallet,
            },
        )
        .await
        .context("start wallet supervisor")?;
        let wallets = Wallets::new(
            supervisor.clone(),
            shards,
            settings.limits.call_timeout,
            Arc::clone(&metrics),
        );
        let sagas = SagaContext {
            wallets: wallets.clone(),
            store: store.clone(),
            metrics: Arc::clone(&metrics),
        };
        // Every saga left unfinished by a previous run is resumed before we serve.
        let far_future = clock.now() + chrono::Duration::days(1);
        let resumed = transfer_saga::resume_unfinished(&sagas, far_future).await?;
        if resumed > 0 {
            tracing::info!(resumed, "resumed unfinished transfer sagas");
        }
        let resumer = spawn_resumer(sagas.clone(), Arc::clone(&clock), &settings);
        let public_url = settings.public_url.clone().unwrap_or_else(|| {
            format!(
                "http://{}",
                listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            )
        });
        let stripe = match &settings.stripe {
            Some(stripe) => Some(
                StripeCheckout::new(&stripe.secret_key, &stripe.api_base, &public_url)
                    .map_err(|error| anyhow::anyhow!("configure Stripe: {error}"))?,
            ),
            None => None,
        };
        let stripe_ingestor = match &stripe {
            Some(stripe) => Some(
                spawn_ingestor(
                    OnrampProvider::Stripe,
                    Some(stripe.clone()),
                    None,
                    &store,
                    &wallets,
                    &metrics,
                    &settings,
                )
                .await?,
            ),
            None => None,
        };
        let outbound = Outbound::from_extra_ca_file(settings.extra_ca_certs.as_deref())?;
        let bound = listener.local_addr().context("read the bound address")?;
        let (bank, bank_simulator) = build_bank(&settings, &store, &public_url, bound, &outbound)?;
        let payments = Payments {
            sagas: sagas.clone(),
            bank: bank.clone(),
            bank_callback_url: format!("{public_url}/webhooks/bank"),
            hold_lifetime: settings.limits.hold_lifetime,
            wait_timeout: settings.limits.transfer_wait_timeout,
            clock: Arc::clone(&clock),
        };
        let bank_ingestor = spawn_ingestor(
            OnrampProvider::Bank,
            None,
            Some(payments.clone()),
            &store,
            &wallets,
            &metrics,
            &settings,
        )
        .await?;
        let (hold_keeper, _) = Actor::spawn(
            None,
            HoldKeeper,
            KeeperArgs {
                payments: payments.clone(),
                metrics: Arc::clone(&metrics),
                interval: settings.limits.hold_keeper_interval,
                bank_poll_after: settings.limits.bank_poll_after,
                bank_poll_interval: settings.limits.bank_poll_interval,
            },
        )
        .await
        .context("start hold keeper")?;
        let (reconciler, _) = Actor::spawn(
            None,
            Reconciler,
            ReconcilerArgs {
                context: ReconcilerContext {
                    store: store.clone(),
                    metrics: Arc::clone(&metrics),
                    bank: bank.clone(),
                    stripe: stripe.clone(),
                    sagas: Some(sagas.clone()),
                    saga_stale_after: settings.limits.saga_stale_after,
                },
                interval: settings.limits.reconcile_interval,
            },
        )
        .await
        .context("start reconciler")?;
        let twilio = match settings.twilio.as_ref() {
            Some(twilio) => Some(
                Twilio::new(
                    &twilio.api_base,
                    &twilio.account_sid,
                    &twilio.auth_token,
                    &twilio.from,
                    format!("{public_url}/webhooks/twilio/status"),
                )
                .with_outbound(&outbound)?,
            ),
            None => None,
        };
        let mailer = match &settings.smtp {
            Some(smtp) => Some(
                Mailer::new(&smtp.url, &smtp.from)
                    .with_context(|| format!("configure SMTP {}", smtp.url))?,
            ),
            None => None,
        };
        let (notifier, _) = Actor::spawn(
            None,
            Notifier,
            NotifierArgs {
                deliveries_due,
                store: store.clone(),
                metrics: Arc::clone(&metrics),
                mailer: mailer.clone(),
                twilio: twilio.clone(),
                fcm: match &settings.fcm {
                    Some(fcm) => Some(Arc::new(
                        Fcm::new(
                            &fcm.project_id,
                            &fcm.service_account_json,
                            &fcm.api_base,
                            fcm.token_url.as_deref(),
                        )
                        .and_then(|fcm| fcm.with_outbound(&outbound))
                        .context("configure FCM")?,
                    )),
                    None => None,
                },
                limits: settings.limits,
            },
        )
        .await
        .context("start notifier")?;
        let _ = inline_notifier.set(notifier.clone());
        let (webhook_dispatcher, _) = Actor::spawn(
            None,
            WebhookDispatcher,
            DispatcherArgs {
                store: store.clone(),
                metrics: Arc::clone(&metrics),
                retry_schedule: settings.webhook_retry_schedule.clone(),
                interval: settings.limits.webhook_dispatch_interval,
                outbound: outbound.clone(),
                allow_private_networks: settings.webhook_allow_private_networks,
            },
        )
        .await
        .context("start webhook dispatcher")?;
        let redis = match &settings.redis_url {
            Some(url) => Some(
                crate::bus::redis::connect(url)
                    .with_context(|| format!("configure Redis {}", crate::store::redact(url)))?,
            ),
            None => None,
        };
        let revocations = match (&redis, &settings.redis_url) {
            (Some(client), Some(url)) => Some(Arc::new(
                Revocations::start(url, client.clone(), &settings.redis_stream, store.clone())
                    .context("subscribe to credential revocations")?,
            )),
            _ => None,
        };
        let (bus, stream_consumers) = match &redis {
            Some(client) => {
                let streams = StreamNames {
                    events: settings.redis_stream.clone(),
                };
                let consumers = spawn_stream_consumers(
                    &store,
                    client,
                    &streams,
                    &notifier,
                    &webhook_dispatcher,
                    &metrics,
                    &settings,
                )
                .await?;
                let bus: Arc<dyn EventBus> = Arc::new(RedisBus {
                    client: client.clone(),
                    streams,
                });
                (bus, consumers)
            }
            None => {
                let bus: Arc<dyn EventBus> = Arc::new(InProcessBus {
                    notifier: notifier.clone(),
                    dispatcher: webhook_dispatcher.clone(),
                });
                (bus, Vec::new())
            }
        };
        let (outbox_relay, _) = Actor::spawn(
            None,
            OutboxRelay,
            RelayArgs {
                store: store.clone(),
                metrics: Arc::clone(&metrics),
                bus,
                poll_interval: settings.limits.outbox_poll_interval,
            },
        )
        .await
        .context("start outbox relay")?;
        let transfers = Transfers {
            sagas: sagas.clone(),
            clock: Arc::clone(&clock),
            wait_timeout: settings.limits.transfer_wait_timeout,
            require_verified_recipients: settings.p2p_require_verified,
        };
        let state = web::Data::new(AppState {
            ledger,
            transfers,
            in_flight: Default::default(),
            revocations,
            store,
            wallets,
            sagas,
            metrics,
            clock,
            admin_token: settings.admin_token.value.clone(),
            operators: settings.operators.clone(),
            default_currency: settings.default_currency,
            limits: settings.limits,
            public_url,
            bank,
            payments,
            hold_keeper: hold_keeper.clone(),
            webhook_dispatcher: webhook_dispatcher.clone(),
            redis_url: settings.redis_url.clone(),
            rate_limiter: match &redis {
                Some(client) => crate::http::rate_limit::RateLimiter::with_redis(client.clone()),
                None => crate::http::rate_limit::RateLimiter::default(),
            },
            stream_consumers,
            notifier: notifier.clone(),
            twilio,
            mailer,
            outbox_relay: outbox_relay.clone(),
            reconciler: reconciler.clone(),
            bank_webhook_secrets: settings.bank_webhook_secrets.clone(),
            bank_ingestor: bank_ingestor.clone(),
            bank_simulator,
            stripe,
            stripe_ingestor: stripe_ingestor.clone(),
            stripe_webhook_secret: settings
                .stripe
                .as_ref()
                .and_then(|stripe| stripe.webhook_secret.clone()),
            webhook_allow_private_networks: settings.webhook_allow_private_networks,
            metrics_on_main: settings.metrics_bind.is_none(),
        });
        let port = listener.local_addr()?.port();
        let (metrics_server, metrics_port) = metrics_server(&settings, &state)?;
        let server_state = state.clone();
        let server = HttpServer::new(move || http::application(server_state.clone()))
            .shutdown_timeout(SHUTDOWN_GRACE_SECONDS)
            .listen(listener)?
            .disable_signals()
            .run();
        Ok(Application {
            bank_ingestor,
            metrics_server,
            metrics_port,
            port,
            server,
            state,
            supervisor,
            resumer,
        })
    }

    /// Where things are and which optional parts are on, for the start-up banner.
    pub fn summary(&self, settings: &Settings) -> String {
        let base = self.state.public_url.trim_end_matches('/');
        let on_off = |on: bool| if on { "on" } else { "off" };
        let database = if settings.database_url.starts_with("postgres") {
            "PostgreSQL".to_owned()
        } else {
            format!("SQLite ({})", crate::store::redact(&settings.database_url))
        };
        let metrics = match settings.metrics_bind {
            Some(bind) => format!("http://{bind}/metrics"),
            None => format!("{base}/metrics"),
        };
        let bank = match (&settings.bank_url, &self.state.bank_simulator) {
            (Some(url), _) => format!("at {url}"),
            (None, Some(_)) => format!("embedded simulator at {base}/bank-sim/ (development only)"),
            (None, None) => "off (set WALLETI_BANK_URL)".to_owned(),
        };
        [
            format!("walleti is serving on {base}"),
            format!("  people's wallet app   {base}/app"),
            format!("  merchants' app        {base}/merchant"),
            format!("  REST API              {base}/v1/…"),
            format!("  API reference         {base}/docs  (document: {base}/openapi.json)"),
            format!("  metrics               {metrics}"),
            format!("  health / readiness    {base}/health  {base}/ready"),
            format!("  database              {database}"),
            format!(
                "  Redis                 {}",
                if settings.redis_url.is_some() {
                    "on (events, rate limits, revocations)"
                } else {
                    "off (in-process bus)"
                }
            ),
            format!("  bank                  {bank}"),
            format!(
                "  Stripe {}, email (SMTP) {}, SMS (Twilio) {}, push (FCM) {}",
                on_off(settings.stripe.is_some()),
                on_off(settings.smtp.is_some()),
                on_off(settings.twilio.is_some()),
                on_off(settings.fcm.is_some())
            ),
        ]
        .join("\n")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The base URL people and providers reach this walleti at.
    pub fn public_url(&self) -> &str {
        &self.state.public_url
    }

    /// Serves until the server stops (Ctrl-C handling is installed by the binary).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let metrics_handle = self.metrics_server.as_ref().map(|server| server.handle());
        if let Some(server) = self.metrics_server {
            tokio::spawn(server);
        }
        let serving = tokio::spawn(self.server);
        tokio::select! {
            result = serving => result??,
            signal = shutdown_signal() => {
                // Stop accepting; requests in flight finish (up to SHUTDOWN_GRACE_SECONDS).
                tracing::info!(signal, "shutting down: finishing the requests in flight");
                handle.stop(true).await;
            }
        }
        if let Some(metrics) = metrics_handle {
            metrics.stop(true).await;
        }
        // Producers of work first, then the consumers, then the wallets, each after the
        // message it is handling. Whatever is left unfinished (a saga past its request's
        // wait, an unpublished event) is durable and resumed at the next start.
        self.resumer.abort();
        let mut actors: Vec<ractor::ActorCell> = vec![self.bank_ingestor.get_cell()];
        actors.extend(
            self.state
                .stripe_ingestor
                .iter()
                .map(|actor| actor.get_cell()),
        );
        actors.push(self.state.reconciler.get_cell());
        actors.push(self.state.hold_keeper.get_cell());
        actors.push(self.state.outbox_relay.get_cell());
        actors.extend(
            self.state
                .stream_consumers
                .iter()
                .map(|actor| actor.get_cell()),
        );
        actors.push(self.state.webhook_dispatcher.get_cell());
        actors.push(self.state.notifier.get_cell());
        actors.push(self.supervisor.get_cell());
        // Last: the wallets' final batches commit through it.
        actors.push(self.state.ledger.actor().get_cell());
        for actor in actors {
            let stopped = actor
                .stop_and_wait(
                    None,
                    Some(std::time::Duration::from_secs(ACTOR_STOP_WAIT_SECONDS)),
                )
                .await;
            if let Err(error) = stopped {
                tracing::warn!(actor = ?actor.get_name(), %error, "actor did not stop in time");
            }
        }
        if let Some(revocations) = &self.state.revocations {
            revocations.stop();
        }
        tracing::info!("walleti stopped");
        Ok(())
    }

    /// Starts serving in the background.
    pub fn spawn(self) -> RunningApplication {
        let server = self.server.handle();
        let metrics_server = self.metrics_server.map(|server| {
            let handle = server.handle();
            tokio::spawn(server);
            handle
        });
        RunningApplication {
            bank_ingestor: self.bank_ingestor,
            port: self.port,
            metrics_port: self.metrics_port,
            metrics_server,
            state: self.state,
            server,
            supervisor: self.supervisor,
            resumer: self.resumer,
            serving: tokio::spawn(self.server),
        }
    }
}

impl RunningApplication {
    /// Stops serving and stops every actor without waiting for in-flight work, like a crash
    /// would (committed work is in the database; nothing else survives).
    pub async fn stop(self) {
        self.resumer.abort();
        self.server.stop(false).await;
        if let Some(metrics) = &self.metrics_server {
            metrics.stop(false).await;
        }
        self.bank_ingestor.stop(None);
        if let Some(ingestor) = &self.state.stripe_ingestor {
            ingestor.stop(None);
        }
        self.state.reconciler.stop(None);
        self.state.hold_keeper.stop(None);
        self.state.webhook_dispatcher.stop(None);
        for consumer in &self.state.stream_consumers {
            consumer.stop(None);
        }
        self.state.outbox_relay.stop(None);
        self.state.notifier.stop(None);
        self.supervisor.stop(None);
        self.state.ledger.actor().stop(None);
        if let Some(revocations) = &self.state.revocations {
            revocations.stop();
        }
        let _ = self.serving.await;
    }
}

/// `/metrics` on its own address when `WALLETI_METRICS_BIND` is set: (server, port).
fn metrics_server(
    settings: &Settings,
    state: &web::Data<AppState>,
) -> anyhow::Result<(Option<actix_web::dev::Server>, Option<u16>)> {
    let Some(bind) = settings.metrics_bind else {
        return Ok((None, None));
    };
    let listener =
        TcpListener::bind(bind).with_context(|| format!("bind WALLETI_METRICS_BIND {bind}"))?;
    let port = listener.local_addr()?.port();
    let state = state.clone();
    let server = HttpServer::new(move || http::metrics_application(state.clone()))
        .listen(listener)?
        .workers(1)
        .disable_signals()
        .run();
    tracing::info!(address = %bind, "metrics served on their own address");
    Ok((Some(server), Some(port)))
}

/// The bank walleti talks to: the configured one (`WALLETI_BANK_URL`), else the development
/// simulator when `WALLETI_BANK_SIMULATOR` allows mounting it here, else none (bank on-ramps
/// and payouts answer 503 `provider_not_configured`).
fn build_bank(
    settings: &Settings,
    store: &Store,
    public_url: &str,
    bound: std::net::SocketAddr,
    outbound: &Outbound,
) -> anyhow::Result<(Option<BankClient>, Option<BankSimulator>)> {
    if let Some(url) = &settings.bank_url {
        let client = BankClient::new(url, settings.bank_api_token.clone(), outbound)?;
        return Ok((Some(client), None));
    }
    if !settings.bank_simulator.mounts(bound, public_url) {
        tracing::info!(
            "no WALLETI_BANK_URL, and the bank simulator is not mounted on a non-local walleti: \
             bank on-ramps and payouts answer 503 provider_not_configured"
        );
        return Ok((None, None));
    }
    tracing::warn!(
        url = %format!("{public_url}/bank-sim"),
        "DEVELOPMENT BANK SIMULATOR MOUNTED: whoever can reach /bank-sim can approve bank \
         top-ups that credit money from nowhere. Never run it in production: set \
         WALLETI_BANK_URL to a real bank, or WALLETI_BANK_SIMULATOR=off."
    );
    let url = format!("{public_url}/bank-sim");
    // walleti's own credential for the simulator's bank API; it never leaves this process.
    let internal_token = crate::config::generate_token("banksim");
    let simulator = BankSimulator::new(SimulatorSettings {
        base_url: url.clone(),
        webhook_secret: settings
            .bank_webhook_secrets
            .first()
            .cloned()
            .context("a bank webhook secret")?,
        callback_url: format!("{public_url}/webhooks/bank"),
        api_tokens: vec![internal_token.clone(), settings.admin_token.value.clone()],
        fault_tokens: vec![settings.admin_token.value.clone()],
        references: Some(known_references(store.clone())),
    })?;
    let client = BankClient::new(&url, Some(internal_token), outbound)?;
    Ok((Some(client), Some(simulator)))
}

/// The embedded simulator takes a payment only for a bank on-ramp still processing, and a
/// payout only for a payout walleti recorded, each with the same amount and currency.
fn known_references(store: Store) -> ReferenceCheck {
    Arc::new(move |claim: ReferenceClaim| {
        let store = store.clone();
        Box::pin(async move {
            let matches = |amount: crate::domain::Amount, currency: crate::domain::Currency| {
                amount.minor_units() == claim.amount && currency.code() == claim.currency
            };
            match claim.kind {
                ReferenceKind::Payment => {
                    let Ok(id) = claim.reference.parse() else {
                        return Ok(false);
                    };
                    let onramp = store.find_onramp(id).await.map_err(|e| e.to_string())?;
                    Ok(onramp.is_some_and(|onramp| {
                        onramp.provider == OnrampProvider::Bank
                            && !onramp.status.is_terminal()
                            && matches(onramp.amount, onramp.currency)
                    }))
                }
                ReferenceKind::Payout => {
                    let Ok(id) = claim.reference.parse() else {
                        return Ok(false);
                    };
                    let payout = store.find_payout(id).await.map_err(|e| e.to_string())?;
                    Ok(payout.is_some_and(|payout| matches(payout.amount, payout.currency)))
                }
            }
        })
    })
}

fn spawn_resumer(sagas: SagaContext, clock: Arc<dyn Clock>, settings: &Settings) -> JoinHandle<()> {
    let interval = settings.limits.saga_resume_interval;
    let stale_after =
        chrono::Duration::from_std(settings.limits.saga_stale_after).unwrap_or_default();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if let Err(error) =
                transfer_saga::resume_unfinished(&sagas, clock.now() - stale_after).await
            {
                tracing::warn!(%error, "periodic saga resumption failed");
            }
        }
    })
}

async fn spawn_ingestor(
    provider: OnrampProvider,
    stripe: Option<StripeCheckout>,
    payments: Option<Payments>,
    store: &Store,
    wallets: &Wallets,
    metrics: &Arc<Metrics>,
    settings: &Settings,
) -> anyhow::Result<ActorRef<IngestorMsg>> {
    let (ingestor, _) = Actor::spawn(
        None,
        WebhookIngestor,
        IngestorArgs {
            provider,
            stripe,
            store: store.clone(),
            wallets: wallets.clone(),
            metrics: Arc::clone(metrics),
            poll_interval: settings.limits.inbox_poll_interval,
            payments,
        },
    )
    .await
    .with_context(|| format!("start {} webhook ingestor", provider.as_str()))?;
    Ok(ingestor)
}

/// One consumer group per consumer of events (the notifier, the merchant webhook dispatcher),
/// each read by a `StreamConsumer` named after this process.
async fn spawn_stream_consumers(
    store: &Store,
    client: &fred::clients::Client,
    streams: &StreamNames,
    notifier: &ActorRef<crate::actors::notifier::NotifierMsg>,
    dispatcher: &ActorRef<crate::actors::webhook_dispatcher::DispatcherMsg>,
    metrics: &Arc<Metrics>,
    settings: &Settings,
) -> anyhow::Result<Vec<ActorRef<ConsumerMsg>>> {
    use crate::actors::notifier::NotifierMsg;
    use crate::actors::webhook_dispatcher::DispatcherMsg;
    use ractor::rpc::CallResult;
    const HANDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
    let consumer_name = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple());
    let notifier = notifier.clone();
    let to_notifier: Handler = Arc::new(move |events| {
        let notifier = notifier.clone();
        Box::pin(async move {
            let count = events.len();
            match notifier
                .call(
                    |reply| NotifierMsg::Handle(events, reply),
                    Some(HANDLE_TIMEOUT),
                )
                .await
            {
                Ok(CallResult::Success(results)) => results,
                _ => vec![Err("the notifier did not answer".to_owned()); count],
            }
        })
    });
    let dispatcher = dispatcher.clone();
    let to_dispatcher: Handler = Arc::new(move |events| {
        let dispatcher = dispatcher.clone();
        Box::pin(async move {
            let count = events.len();
            match dispatcher
                .call(
                    |reply| DispatcherMsg::Handle(events, reply),
                    Some(HANDLE_TIMEOUT),
                )
                .await
            {
                Ok(CallResult::Success(results)) => results,
                _ => vec![Err("the webhook dispatcher did not answer".to_owned()); count],
            }
        })
    });
    let mut consumers = Vec::new();
    for (group, handler) in [
        ("notifier", to_notifier),
        ("webhook_dispatcher", to_dispatcher),
    ] {
        let (consumer, _) = Actor::spawn(
            None,
            StreamConsumer,
            ConsumerArgs {
                store: store.clone(),
                group: Group {
                    client: client.clone(),
                    streams: streams.clone(),
                    group: group.to_owned(),
                    consumer: consumer_name.clone(),
                },
                handler,
                metrics: Arc::clone(metrics),
                limits: settings.consumer_limits,
                // The test fault kills only the notifier's consumer.
                die_before_ack: if group == "notifier" {
                    Arc::clone(&settings.fault_consumer_dies_before_ack)
                } else {
                    Arc::default()
                },
            },
        )
        .await
        .with_context(|| format!("start the {group} stream consumer"))?;
        consumers.push(consumer);
    }
    Ok(consumers)
}

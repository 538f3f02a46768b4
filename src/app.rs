//! `Application`: wires store, actors and HTTP together, and runs them. Start-up order:
//! connect, migrate, open the system accounts, start the wallet supervisor, resume every
//! unfinished saga, start the periodic saga resumer, then serve HTTP.

use crate::actors::ledger_writer::{Ledger, LedgerWriter, LedgerWriterArgs};
use crate::actors::notifier::{Notifier, NotifierArgs};
use crate::actors::outbox_relay::{InProcessBus, OutboxRelay, RelayArgs};
use crate::actors::payments::{HoldKeeper, KeeperArgs, Payments};
use crate::actors::reconciler::{Reconciler, ReconcilerArgs, ReconcilerContext};
use crate::actors::stream_consumer::{ConsumerArgs, ConsumerMsg, Handler, StreamConsumer};
use crate::actors::transfer_saga::{self, SagaContext};
use crate::actors::transfers::Transfers;
use crate::actors::wallet_supervisor::{SupervisorArgs, SupervisorMsg, WalletSupervisor, Wallets};
use crate::actors::webhook_dispatcher::{DispatcherArgs, WebhookDispatcher};
use crate::actors::webhook_ingestor::{IngestorArgs, IngestorMsg, WebhookIngestor};
use crate::bank_sim::BankSimulator;
use crate::bus::EventBus;
use crate::bus::redis::{Group, RedisBus, StreamNames};
use crate::bus::revocations::Revocations;
use crate::config::Settings;
use crate::domain::{Clock, OnrampProvider, SystemClock};
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::providers::bank::BankClient;
use crate::providers::email::Mailer;
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

/// A built application, bound to its port but not yet serving.
pub struct Application {
    bank_ingestor: ActorRef<IngestorMsg>,
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
        let (ledger_writer, _) = Actor::spawn(
            None,
            LedgerWriter,
            LedgerWriterArgs {
                store: store.clone(),
                metrics: Arc::clone(&metrics),
                limits: settings.limits.ledger,
            },
        )
        .await
        .context("start ledger writer")?;
        let ledger = Ledger::new(
            ledger_writer,
            Arc::clone(&metrics),
            settings.limits.call_timeout,
        );
        let (supervisor, _) = Actor::spawn(
            None,
            WalletSupervisor,
            SupervisorArgs {
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
        let (bank_url, bank_simulator) = match &settings.bank_url {
            Some(url) => (url.clone(), None),
            None => {
                let url = format!("{public_url}/bank-sim");
                let secret = settings
                    .bank_webhook_secrets
                    .first()
                    .cloned()
                    .unwrap_or_default();
                (url.clone(), Some(BankSimulator::new(url, secret)))
            }
        };
        let bank = BankClient::new(&bank_url);
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
                    bank: Some(bank.clone()),
                    stripe: stripe.clone(),
                    sagas: Some(sagas.clone()),
                    saga_stale_after: settings.limits.saga_stale_after,
                },
                interval: settings.limits.reconcile_interval,
            },
        )
        .await
        .context("start reconciler")?;
        let twilio = settings.twilio.as_ref().map(|twilio| {
            Twilio::new(
                &twilio.api_base,
                &twilio.account_sid,
                &twilio.auth_token,
                &twilio.from,
                format!("{public_url}/webhooks/twilio/status"),
            )
        });
        let (notifier, _) = Actor::spawn(
            None,
            Notifier,
            NotifierArgs {
                store: store.clone(),
                metrics: Arc::clone(&metrics),
                mailer: match &settings.smtp {
                    Some(smtp) => Some(
                        Mailer::new(&smtp.url, &smtp.from)
                            .with_context(|| format!("configure SMTP {}", smtp.url))?,
                    ),
                    None => None,
                },
                twilio: twilio.clone(),
                fcm: match &settings.fcm {
                    Some(fcm) => Some(Arc::new(
                        Fcm::new(
                            &fcm.project_id,
                            &fcm.service_account_json,
                            &fcm.api_base,
                            fcm.token_url.as_deref(),
                        )
                        .context("configure FCM")?,
                    )),
                    None => None,
                },
                limits: settings.limits,
            },
        )
        .await
        .context("start notifier")?;
        let (webhook_dispatcher, _) = Actor::spawn(
            None,
            WebhookDispatcher,
            DispatcherArgs {
                store: store.clone(),
                metrics: Arc::clone(&metrics),
                retry_schedule: settings.webhook_retry_schedule.clone(),
                interval: settings.limits.webhook_dispatch_interval,
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
        });
        let port = listener.local_addr()?.port();
        let server_state = state.clone();
        let server = HttpServer::new(move || http::application(server_state.clone()))
            .listen(listener)?
            .disable_signals()
            .run();
        Ok(Application {
            bank_ingestor,
            port,
            server,
            state,
            supervisor,
            resumer,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the server stops (Ctrl-C handling is installed by the binary).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let serving = tokio::spawn(self.server);
        tokio::select! {
            result = serving => result??,
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("shutting down");
                handle.stop(true).await;
            }
        }
        self.resumer.abort();
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
        Ok(())
    }

    /// Starts serving in the background.
    pub fn spawn(self) -> RunningApplication {
        let server = self.server.handle();
        RunningApplication {
            bank_ingestor: self.bank_ingestor,
            port: self.port,
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

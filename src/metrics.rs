//! The Prometheus registry and every metric family walleti exports. One `Metrics` per
//! application instance (tests run several in one process), passed around as `Arc<Metrics>`.
//! Labels have bounded cardinality: route patterns, actor kinds, statuses — never ids.

use prometheus::{
    CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::Arc;
use std::time::Instant;

/// Latency buckets in seconds, from 100 µs to 10 s.
const LATENCY_BUCKETS_SECONDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0,
];
const BATCH_SIZE_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Every actor kind, so each exports its series (at zero) from start-up.
pub const ACTOR_KINDS: [&str; 12] = [
    "stream_consumer",
    "ledger_writer",
    "hold_keeper",
    "webhook_dispatcher",
    "outbox_relay",
    "notifier",
    "wallet",
    "wallet_supervisor",
    "transfer_saga",
    "bank_ingestor",
    "stripe_ingestor",
    "reconciler",
];

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests_total: IntCounterVec,
    pub http_request_duration_seconds: HistogramVec,
    pub actor_messages_total: IntCounterVec,
    pub actor_message_duration_seconds: HistogramVec,
    pub actor_restarts_total: IntCounterVec,
    pub actors_live: IntGaugeVec,
    pub wallet_batch_size: HistogramVec,
    pub ledger_group_batches: HistogramVec,
    pub ledger_group_movements: prometheus::Histogram,
    pub ledger_commit_seconds: HistogramVec,
    pub ledger_batches_total: IntCounterVec,
    pub ledger_writer_busy_seconds_total: CounterVec,
    pub transfers_total: IntCounterVec,
    pub transfers_amount_minor_units_total: IntCounterVec,
    pub webhook_events_total: IntCounterVec,
    pub webhook_processing_seconds: HistogramVec,
    pub webhook_inbox_backlog: IntGaugeVec,
    pub reconciliation_discrepancies: IntGaugeVec,
    pub reconciliation_runs_total: IntCounterVec,
    pub reconciliation_duration_seconds: prometheus::Histogram,
    pub ledger_wallet_balance: prometheus::GaugeVec,
    pub actor_mailbox_depth: IntGaugeVec,
    pub sagas: IntGaugeVec,
    pub notifications_total: IntCounterVec,
    pub outbox_dead_letters_total: prometheus::IntCounter,
    pub outbox_backlog: prometheus::IntGauge,
    pub holds_expired_total: prometheus::IntCounter,
    pub holds_outstanding_count: IntGaugeVec,
    pub holds_outstanding_amount: IntGaugeVec,
    pub payment_intents: IntGaugeVec,
    pub merchant_webhook_attempts_total: IntCounterVec,
    pub merchant_webhook_delivery_seconds: prometheus::Histogram,
    pub stream_lag: IntGaugeVec,
    pub stream_pending: IntGaugeVec,
    pub stream_events_total: IntCounterVec,
    pub event_delivery_seconds: HistogramVec,
    pub outbox_oldest_unpublished_age_seconds: prometheus::Gauge,
    /// The last failure per actor kind, for `GET /v1/admin/actors`.
    last_errors: std::sync::Mutex<
        std::collections::HashMap<&'static str, (String, chrono::DateTime<chrono::Utc>)>,
    >,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry =
            Registry::new_custom(Some("walleti".into()), None).unwrap_or_else(|_| Registry::new());
        let metrics = Metrics {
            http_requests_total: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "http_requests_total",
                        "HTTP requests answered, by route and status.",
                    ),
                    &["method", "route", "status"],
                ),
            ),
            http_request_duration_seconds: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new("http_request_duration_seconds", "HTTP request latency.")
                        .buckets(LATENCY_BUCKETS_SECONDS.to_vec()),
                    &["method", "route"],
                ),
            ),
            actor_messages_total: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "actor_messages_total",
                        "Messages handled by actors, by actor kind.",
                    ),
                    &["kind"],
                ),
            ),
            actor_message_duration_seconds: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "actor_message_duration_seconds",
                        "Time an actor spent handling one message.",
                    )
                    .buckets(LATENCY_BUCKETS_SECONDS.to_vec()),
                    &["kind"],
                ),
            ),
            actor_restarts_total: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "actor_restarts_total",
                        "Actors restarted by their supervisor after a failure.",
                    ),
                    &["kind"],
                ),
            ),
            actors_live: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "actors_live",
                        "Actors currently running, by kind (wallet: wallets loaded in memory).",
                    ),
                    &["kind"],
                ),
            ),
            wallet_batch_size: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "wallet_batch_size",
                        "Operations committed per wallet flush (one database transaction).",
                    )
                    .buckets(BATCH_SIZE_BUCKETS.to_vec()),
                    &["outcome"],
                ),
            ),
            ledger_group_batches: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "ledger_group_batches",
                        "Wallet batches committed per ledger transaction (group commit), by path: combined (multi-row statements) or isolated (one savepoint per batch after a conflict).",
                    )
                    .buckets(BATCH_SIZE_BUCKETS.to_vec()),
                    &["path"],
                ),
            ),
            ledger_group_movements: register(
                &registry,
                prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "ledger_group_movements",
                        "Ledger movements (wallet ops) committed per ledger transaction.",
                    )
                    .buckets(BATCH_SIZE_BUCKETS.to_vec()),
                ),
            ),
            ledger_commit_seconds: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "ledger_commit_seconds",
                        "Time to write and commit one ledger group, by path.",
                    )
                    .buckets(LATENCY_BUCKETS_SECONDS.to_vec()),
                    &["path"],
                ),
            ),
            ledger_writer_busy_seconds_total: register(
                &registry,
                CounterVec::new(
                    Opts::new(
                        "ledger_writer_busy_seconds_total",
                        "Time the node's ledger writer spent on its groups, by phase: notifying (the notified users' channel choices), building (the group's statement, PostgreSQL), connecting (taking a pooled connection, PostgreSQL), executing (the database writing and committing; on SQLite the whole group), answering (the wallets). The rate of the sum is the writer's busy fraction: near 1, the node's throughput is its writer's cycle.",
                    ),
                    &["phase"],
                ),
            ),
            ledger_batches_total: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "ledger_batches_total",
                        "Wallet batches handed to the ledger writer, by outcome (committed, conflict).",
                    ),
                    &["outcome"],
                ),
            ),
            transfers_total: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "transfers_total",
                        "Transfer sagas that reached a final answer, by status.",
                    ),
                    &["status"],
                ),
            ),
            transfers_amount_minor_units_total: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "transfers_amount_minor_units_total",
                        "Money moved by completed transfers, in minor units of the currency.",
                    ),
                    &["currency"],
                ),
            ),
            webhook_events_total: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "webhook_events_total",
                        "Provider webhook events by provider, type and outcome (received, duplicate, rejected, then how processing ended).",
                    ),
                    &["provider", "type", "outcome"],
                ),
            ),
            webhook_processing_seconds: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "webhook_processing_seconds",
                        "Time to process one stored webhook event.",
                    )
                    .buckets(LATENCY_BUCKETS_SECONDS.to_vec()),
                    &["provider"],
                ),
            ),
            webhook_inbox_backlog: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "webhook_inbox_backlog",
                        "Stored webhook events not processed yet.",
                    ),
                    &["provider"],
                ),
            ),
            reconciliation_discrepancies: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "reconciliation_discrepancies",
                        "Discrepancies found by the last reconciliation, by kind.",
                    ),
                    &["kind"],
                ),
            ),
            reconciliation_runs_total: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "reconciliation_runs_total",
                        "Reconciliation runs, by result (clean or discrepancies).",
                    ),
                    &["status"],
                ),
            ),
            reconciliation_duration_seconds: register(
                &registry,
                prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "reconciliation_duration_seconds",
                        "Time one reconciliation run took.",
                    )
                    .buckets(LATENCY_BUCKETS_SECONDS.to_vec()),
                ),
            ),
            ledger_wallet_balance: register(
                &registry,
                prometheus::GaugeVec::new(
                    Opts::new(
                        "ledger_wallet_balance",
                        "Sum of wallet balances (available + locked) per currency, in minor units, at the last reconciliation.",
                    ),
                    &["currency"],
                ),
            ),
            actor_mailbox_depth: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "actor_mailbox_depth",
                        "Messages sent to actors of a kind and not yet taken from their mailboxes.",
                    ),
                    &["kind"],
                ),
            ),
            sagas: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "sagas",
                        "Transfer sagas by state, counted at the last reconciliation.",
                    ),
                    &["state"],
                ),
            ),
            notifications_total: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "notifications_total",
                        "Notification deliveries recorded, by channel and status.",
                    ),
                    &["channel", "status"],
                ),
            ),
            outbox_dead_letters_total: register(
                &registry,
                prometheus::IntCounter::new(
                    "outbox_dead_letters_total",
                    "Events moved to the dead letters after repeated failures.",
                ),
            ),
            outbox_backlog: register(
                &registry,
                prometheus::IntGauge::new(
                    "outbox_backlog",
                    "Outbox events waiting to be published (dead letters excluded), as of the relay's last pass.",
                ),
            ),
            holds_expired_total: register(
                &registry,
                prometheus::IntCounter::new(
                    "holds_expired_total",
                    "Payment authorisations released because they expired uncaptured.",
                ),
            ),
            holds_outstanding_count: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "holds_outstanding",
                        "Holds not yet captured, voided or expired (authorisations and payouts), per currency.",
                    ),
                    &["currency"],
                ),
            ),
            holds_outstanding_amount: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "holds_outstanding_amount_minor_units",
                        "Amount locked by outstanding holds, per currency, in minor units.",
                    ),
                    &["currency"],
                ),
            ),
            payment_intents: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new("payment_intents", "Payment intents by status."),
                    &["status"],
                ),
            ),
            merchant_webhook_attempts_total: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "merchant_webhook_attempts_total",
                        "Outgoing webhook delivery attempts, by outcome and attempt number (1..; 'manual' for re-sends).",
                    ),
                    &["outcome", "attempt"],
                ),
            ),
            merchant_webhook_delivery_seconds: register(
                &registry,
                prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "merchant_webhook_delivery_seconds",
                        "Latency of one outgoing webhook attempt (request to response).",
                    )
                    .buckets(LATENCY_BUCKETS_SECONDS.to_vec()),
                ),
            ),
            stream_lag: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "stream_lag",
                        "Events in the Redis stream not yet delivered to a consumer group.",
                    ),
                    &["group"],
                ),
            ),
            stream_pending: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "stream_pending",
                        "Events delivered to a consumer group and not yet acknowledged.",
                    ),
                    &["group"],
                ),
            ),
            stream_events_total: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "stream_events_total",
                        "Events handled by stream consumer groups, by outcome (delivered, failed, dead_lettered).",
                    ),
                    &["group", "outcome"],
                ),
            ),
            event_delivery_seconds: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "event_delivery_seconds",
                        "From an event's commit to its consumer having handled it.",
                    )
                    .buckets(LATENCY_BUCKETS_SECONDS.to_vec()),
                    &["consumer"],
                ),
            ),
            outbox_oldest_unpublished_age_seconds: register(
                &registry,
                prometheus::Gauge::new(
                    "outbox_oldest_unpublished_age_seconds",
                    "Age of the oldest outbox event not yet published (0 when none).",
                ),
            ),
            last_errors: std::sync::Mutex::new(std::collections::HashMap::new()),
            registry,
        };
        for kind in ACTOR_KINDS {
            metrics.actors_live.with_label_values(&[kind]);
            metrics.actor_mailbox_depth.with_label_values(&[kind]);
            metrics.actor_messages_total.with_label_values(&[kind]);
            metrics.actor_restarts_total.with_label_values(&[kind]);
        }
        for path in ["combined", "isolated"] {
            metrics.ledger_group_batches.with_label_values(&[path]);
            metrics.ledger_commit_seconds.with_label_values(&[path]);
        }
        for phase in crate::actors::ledger_writer::PHASES {
            metrics
                .ledger_writer_busy_seconds_total
                .with_label_values(&[phase]);
        }
        for outcome in ["committed", "conflict"] {
            metrics.ledger_batches_total.with_label_values(&[outcome]);
        }
        for status in ["completed", "failed", "pending", "rejected", "unavailable"] {
            metrics.transfers_total.with_label_values(&[status]);
        }
        for channel in ["in_app", "email", "sms", "push"] {
            metrics
                .notifications_total
                .with_label_values(&[channel, "skipped"]);
        }
        for status in crate::domain::PaymentIntentStatus::ALL {
            metrics
                .payment_intents
                .with_label_values(&[status.as_str()]);
        }
        for outcome in ["succeeded", "failed"] {
            metrics
                .merchant_webhook_attempts_total
                .with_label_values(&[outcome, "1"]);
        }
        for state in ["debited", "completed", "failed"] {
            metrics.sagas.with_label_values(&[state]);
        }
        for status in ["clean", "discrepancies"] {
            metrics
                .reconciliation_runs_total
                .with_label_values(&[status]);
        }
        Arc::new(metrics)
    }

    /// Everything in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "encode metrics");
        }
        let mut text = String::from_utf8(buffer).unwrap_or_default();
        text.push_str(&process_metrics());
        text
    }

    /// Records one handled actor message when the returned guard drops.
    pub fn actor_message(&self, kind: &'static str) -> ActorMessageTimer<'_> {
        ActorMessageTimer {
            metrics: self,
            kind,
            started: Instant::now(),
        }
    }

    /// A ticket for one message sent to an actor of `kind`: counts it in the mailbox-depth
    /// gauge until dropped (when the actor takes the message, or when a dead actor's mailbox
    /// is discarded), so the gauge cannot drift.
    pub fn mailbox_ticket(self: &Arc<Self>, kind: &'static str) -> MailboxTicket {
        self.actor_mailbox_depth.with_label_values(&[kind]).inc();
        MailboxTicket {
            metrics: Arc::clone(self),
            kind,
        }
    }

    /// An actor of `kind` (or a wallet) failed and is being restarted (reloaded) after `error`.
    pub fn record_restart(&self, kind: &'static str, error: String) {
        self.actor_restarts_total.with_label_values(&[kind]).inc();
        self.record_actor_error(kind, error);
    }

    pub fn record_actor_error(&self, kind: &'static str, error: String) {
        if let Ok(mut errors) = self.last_errors.lock() {
            errors.insert(kind, (error, chrono::Utc::now()));
        }
    }

    pub fn last_actor_error(&self, kind: &str) -> Option<(String, chrono::DateTime<chrono::Utc>)> {
        self.last_errors.lock().ok()?.get(kind).cloned()
    }

    /// Sum of observed batch sizes and number of flushes so far (committed batches).
    pub fn committed_batches(&self) -> (u64, f64) {
        let histogram = self.wallet_batch_size.with_label_values(&["committed"]);
        (histogram.get_sample_count(), histogram.get_sample_sum())
    }
}

fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: prometheus::Result<C>,
) -> C {
    // Metric definitions are constants: failing here is a programming error found by any test.
    #[allow(clippy::expect_used)]
    let collector = collector.expect("valid metric definition");
    #[allow(clippy::expect_used)]
    registry
        .register(Box::new(collector.clone()))
        .expect("metric registered once");
    collector
}

/// The process's CPU time and resident memory under their standard names, read from /proc
/// (Linux; nothing elsewhere). The kernel reports CPU in USER_HZ ticks, 100 per second on
/// every Linux ABI, and resident memory in pages.
fn process_metrics() -> String {
    const TICKS_PER_SECOND: f64 = 100.0;
    const PAGE_BYTES: u64 = 4096;
    let mut text = String::new();
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some((_, after_name)) = stat.rsplit_once(") ")
    {
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |index: usize| {
            fields
                .get(index)
                .and_then(|field| field.parse::<u64>().ok())
        };
        // utime and stime are the 14th and 15th fields; `after_name` starts at the 3rd.
        if let (Some(user), Some(system)) = (ticks(11), ticks(12)) {
            let seconds = (user + system) as f64 / TICKS_PER_SECOND;
            text.push_str(&format!(
                "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {seconds}\n"
            ));
        }
    }
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
        && let Some(pages) = statm
            .split_whitespace()
            .nth(1)
            .and_then(|field| field.parse::<u64>().ok())
    {
        let bytes = pages * PAGE_BYTES;
        text.push_str(&format!(
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {bytes}\n"
        ));
    }
    text
}

pub struct ActorMessageTimer<'a> {
    metrics: &'a Metrics,
    kind: &'static str,
    started: Instant,
}

impl Drop for ActorMessageTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .actor_messages_total
            .with_label_values(&[self.kind])
            .inc();
        self.metrics
            .actor_message_duration_seconds
            .with_label_values(&[self.kind])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// See [`Metrics::mailbox_ticket`].
pub struct MailboxTicket {
    metrics: Arc<Metrics>,
    kind: &'static str,
}

impl Drop for MailboxTicket {
    fn drop(&mut self) {
        self.metrics
            .actor_mailbox_depth
            .with_label_values(&[self.kind])
            .dec();
    }
}

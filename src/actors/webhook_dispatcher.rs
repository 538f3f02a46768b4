//! `WebhookDispatcher`: signed outgoing webhooks to merchants' endpoints. It consumes outbox
//! events (from the relay, at least once): each merchant event becomes one durable delivery per
//! subscribed endpoint, and only then is the event acknowledged. On a timer it starts the due
//! deliveries as background tasks, so the actor itself never waits on a merchant: at most
//! `ATTEMPTS_IN_FLIGHT_MAX` attempts at once, and at most `ENDPOINT_ATTEMPTS_IN_FLIGHT_MAX`
//! to one endpoint (a slow merchant holds a few slots, never every one); each is a POST of
//! the event with
//! `Walleti-Signature: t=…,v1=…` (HMAC-SHA256 of `"{t}.{body}"` with the endpoint's secret).
//! A 2xx is success; anything else is retried on the configured schedule, every attempt
//! recorded; when the schedule runs out the delivery fails and its endpoint is disabled with
//! the reason. Delivery never touches money: a payment is final before its event exists.
//! Endpoint URLs are the merchant's choice, so attempts connect only to public addresses
//! (checked at connect time; `WALLETI_WEBHOOK_ALLOW_PRIVATE_NETWORKS` lifts it for
//! development), and an attempt records a coarse error for the merchant ("timeout",
//! "connection failed", "destination not allowed"): the cause chain goes to the log only.

use crate::domain::{MerchantId, WebhookDeliveryId, signature};
use crate::metrics::Metrics;
use crate::providers::outbound::{DestinationRefused, Outbound, check_literal_host};
use crate::store::Store;
use crate::store::entities::{outbox, webhook_deliveries, webhook_endpoints};
use crate::store::merchant_webhooks::{AttemptRecord, AttemptResult, MERCHANT_EVENT_TYPES};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

pub const KIND: &str = "webhook_dispatcher";
/// Attempts in flight at once, over every endpoint.
pub const ATTEMPTS_IN_FLIGHT_MAX: usize = 64;
/// Attempts in flight at once to one endpoint.
pub const ENDPOINT_ATTEMPTS_IN_FLIGHT_MAX: usize = 2;
/// One attempt waits this long for the merchant's answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct DispatcherArgs {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Delays between failed attempts; its length + 1 is the number of scheduled attempts.
    pub retry_schedule: Vec<Duration>,
    pub interval: Duration,
    /// TLS roots and timeouts shared by outbound clients.
    pub outbound: Outbound,
    /// Let endpoints reach loopback, private and other non-public addresses.
    pub allow_private_networks: bool,
}

pub struct DispatcherState {
    store: Store,
    metrics: Arc<Metrics>,
    attempts: Attempts,
    timer: Option<JoinHandle<()>>,
}

/// What an attempt needs, shared by the actor and its attempt tasks.
struct AttemptContext {
    store: Store,
    metrics: Arc<Metrics>,
    retry_schedule: Vec<Duration>,
    http: Sender,
}

/// Deliveries being attempted now, in total and per endpoint.
#[derive(Default)]
struct InFlight {
    deliveries: HashSet<String>,
    per_endpoint: HashMap<String, usize>,
}

/// The attempt tasks and their bounds; cheap to clone.
#[derive(Clone)]
struct Attempts {
    context: Arc<AttemptContext>,
    in_flight: Arc<Mutex<InFlight>>,
}

/// Holds a delivery's slot while it is attempted; frees it when dropped (even on a panic).
struct Slot {
    in_flight: Arc<Mutex<InFlight>>,
    delivery: String,
    endpoint: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.in_flight);
        in_flight.deliveries.remove(&self.delivery);
        if let Some(count) = in_flight.per_endpoint.get_mut(&self.endpoint) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_flight.per_endpoint.remove(&self.endpoint);
            }
        }
    }
}

fn lock(in_flight: &Mutex<InFlight>) -> std::sync::MutexGuard<'_, InFlight> {
    // Plain bookkeeping: a panic while holding it leaves consistent enough data behind.
    in_flight
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Attempts {
    /// A slot for the delivery, unless it is in flight already or a bound is reached.
    fn claim(&self, delivery: &str, endpoint: &str) -> Option<Slot> {
        let mut in_flight = lock(&self.in_flight);
        let endpoint_count = in_flight.per_endpoint.get(endpoint).copied().unwrap_or(0);
        if in_flight.deliveries.len() >= ATTEMPTS_IN_FLIGHT_MAX
            || endpoint_count >= ENDPOINT_ATTEMPTS_IN_FLIGHT_MAX
            || in_flight.deliveries.contains(delivery)
        {
            return None;
        }
        in_flight.deliveries.insert(delivery.to_owned());
        *in_flight
            .per_endpoint
            .entry(endpoint.to_owned())
            .or_default() += 1;
        debug_assert!(in_flight.deliveries.len() <= ATTEMPTS_IN_FLIGHT_MAX);
        Some(Slot {
            in_flight: Arc::clone(&self.in_flight),
            delivery: delivery.to_owned(),
            endpoint: endpoint.to_owned(),
        })
    }

    /// (deliveries in flight, endpoints at their bound, free slots).
    fn snapshot(&self) -> (Vec<String>, Vec<String>, usize) {
        let in_flight = lock(&self.in_flight);
        let saturated = in_flight
            .per_endpoint
            .iter()
            .filter(|(_, count)| **count >= ENDPOINT_ATTEMPTS_IN_FLIGHT_MAX)
            .map(|(endpoint, _)| endpoint.clone())
            .collect();
        let free = ATTEMPTS_IN_FLIGHT_MAX.saturating_sub(in_flight.deliveries.len());
        (
            in_flight.deliveries.iter().cloned().collect(),
            saturated,
            free,
        )
    }
}

pub enum DispatcherMsg {
    /// Turn a batch of outbox events into deliveries; the reply says, per event, whether it
    /// may be acknowledged.
    Handle(Vec<outbox::Model>, RpcReplyPort<Vec<Result<(), String>>>),
    /// Attempt the deliveries that are due.
    DeliverDue,
    /// Send one delivery again now, by hand.
    Resend(WebhookDeliveryId, RpcReplyPort<Result<(), String>>),
}

pub struct WebhookDispatcher;

impl Actor for WebhookDispatcher {
    type Msg = DispatcherMsg;
    type State = DispatcherState;
    type Arguments = DispatcherArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<DispatcherMsg>,
        args: DispatcherArgs,
    ) -> Result<DispatcherState, ActorProcessingErr> {
        args.metrics.actors_live.with_label_values(&[KIND]).inc();
        let timer = myself.send_interval(args.interval, || DispatcherMsg::DeliverDue);
        let context = AttemptContext {
            store: args.store.clone(),
            metrics: Arc::clone(&args.metrics),
            retry_schedule: args.retry_schedule,
            http: Sender {
                client: args
                    .outbound
                    .untrusted_client(ATTEMPT_TIMEOUT, args.allow_private_networks)?,
                allow_private_networks: args.allow_private_networks,
            },
        };
        Ok(DispatcherState {
            store: args.store,
            metrics: args.metrics,
            attempts: Attempts {
                context: Arc::new(context),
                in_flight: Arc::default(),
            },
            timer: Some(timer),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<DispatcherMsg>,
        state: &mut DispatcherState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        state.metrics.actors_live.with_label_values(&[KIND]).dec();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<DispatcherMsg>,
        message: DispatcherMsg,
        state: &mut DispatcherState,
    ) -> Result<(), ActorProcessingErr> {
        let metrics = Arc::clone(&state.metrics);
        let _timer = metrics.actor_message(KIND);
        // Failures are recorded and retried; the dispatcher itself never fails.
        match message {
            DispatcherMsg::Handle(events, reply) => {
                let mut results = Vec::with_capacity(events.len());
                let mut created = 0;
                for event in &events {
                    let result = fan_out(state, event).await;
                    match &result {
                        Ok(count) => created += count,
                        Err(error) => {
                            metrics.record_actor_error(KIND, format!("event {}: {error}", event.id))
                        }
                    }
                    results.push(result.map(|_| ()));
                }
                let _ = reply.send(results);
                // New deliveries are due at once: attempt them now rather than on the next tick.
                if created > 0 {
                    deliver_due(state).await;
                }
            }
            DispatcherMsg::DeliverDue => deliver_due(state).await,
            DispatcherMsg::Resend(id, reply) => {
                // The caller waits for the answer; the actor does not.
                let context = Arc::clone(&state.attempts.context);
                tokio::spawn(async move {
                    let _ = reply.send(resend(&context, id).await);
                });
            }
        }
        Ok(())
    }
}

/// The merchant an event concerns, if it is a merchant event.
fn event_merchant(event: &outbox::Model) -> Result<Option<MerchantId>, String> {
    if !MERCHANT_EVENT_TYPES.contains(&event.event_type.as_str()) {
        return Ok(None);
    }
    let payload: serde_json::Value = serde_json::from_str(&event.payload)
        .map_err(|error| format!("malformed event: {error}"))?;
    // A user's payout has no merchant.
    Ok(payload["data"]["merchant"]
        .as_str()
        .and_then(|merchant| merchant.parse().ok()))
}

/// Creates the event's deliveries; returns how many.
async fn fan_out(state: &DispatcherState, event: &outbox::Model) -> Result<usize, String> {
    let Some(merchant) = event_merchant(event)? else {
        return Ok(0);
    };
    state
        .store
        .fan_out_event(merchant, event, chrono::Utc::now())
        .await
        .map_err(|error| error.to_string())
}

/// Starts the due deliveries that fit within the bounds, each as its own task; returns at
/// once. A delivery in flight, or to an endpoint at its bound, waits for a later pass.
async fn deliver_due(state: &DispatcherState) {
    let (in_flight, saturated, free) = state.attempts.snapshot();
    if free == 0 {
        return;
    }
    let due = match state
        .store
        .due_webhook_deliveries(chrono::Utc::now(), free as u64, &in_flight, &saturated)
        .await
    {
        Ok(due) => due,
        Err(error) => {
            tracing::warn!(%error, "read due webhook deliveries");
            return;
        }
    };
    for (delivery, endpoint) in due {
        let Some(slot) = state.attempts.claim(&delivery.id, &endpoint.id) else {
            continue;
        };
        let context = Arc::clone(&state.attempts.context);
        tokio::spawn(async move {
            attempt_scheduled(&context, &delivery, &endpoint).await;
            drop(slot);
        });
    }
}

/// One scheduled attempt: send, then record it with what comes next.
async fn attempt_scheduled(
    context: &AttemptContext,
    delivery: &webhook_deliveries::Model,
    endpoint: &webhook_endpoints::Model,
) {
    let outcome = send(&context.http, delivery, endpoint).await;
    let attempt = delivery.attempts + 1;
    let result = if outcome.succeeded() {
        AttemptResult::Succeeded
    } else {
        match context
            .retry_schedule
            .get(usize::try_from(delivery.attempts).unwrap_or(usize::MAX))
        {
            Some(delay) => AttemptResult::RetryAt(
                outcome.at + chrono::Duration::from_std(*delay).unwrap_or_default(),
            ),
            None => AttemptResult::GaveUp(format!(
                "Disabled after {attempt} failed attempts to deliver {} ({}); last error: {}",
                delivery.event_type,
                delivery.event_id,
                outcome.describe()
            )),
        }
    };
    record(
        context, delivery, endpoint, attempt, "schedule", &outcome, &result,
    )
    .await;
}

async fn resend(state: &AttemptContext, id: WebhookDeliveryId) -> Result<(), String> {
    let delivery = state
        .store
        .find_webhook_delivery(id)
        .await
        .map_err(|error| error.to_string())?
        .ok_or("no such delivery")?;
    let endpoint_id = delivery
        .endpoint_id
        .parse()
        .map_err(|_| "unreadable endpoint id".to_owned())?;
    let endpoint = state
        .store
        .find_webhook_endpoint(endpoint_id)
        .await
        .map_err(|error| error.to_string())?
        .ok_or("no such endpoint")?;
    let outcome = send(&state.http, &delivery, &endpoint).await;
    let result = if outcome.succeeded() {
        AttemptResult::Succeeded
    } else {
        AttemptResult::ManualFailed
    };
    record(
        state,
        &delivery,
        &endpoint,
        delivery.attempts + 1,
        "manual",
        &outcome,
        &result,
    )
    .await;
    Ok(())
}

/// What one POST to an endpoint came to.
struct SendOutcome {
    status_code: Option<u16>,
    error: Option<String>,
    latency: Duration,
    at: chrono::DateTime<chrono::Utc>,
}

impl SendOutcome {
    fn succeeded(&self) -> bool {
        self.status_code
            .is_some_and(|code| (200..300).contains(&code))
    }

    fn describe(&self) -> String {
        match (&self.error, self.status_code) {
            (Some(error), _) => error.clone(),
            (None, Some(code)) => format!("HTTP {code}"),
            (None, None) => "no answer".to_owned(),
        }
    }
}

/// The client for merchant endpoints and whether it may reach non-public addresses.
#[derive(Clone)]
struct Sender {
    client: reqwest::Client,
    allow_private_networks: bool,
}

async fn send(
    http: &Sender,
    delivery: &webhook_deliveries::Model,
    endpoint: &webhook_endpoints::Model,
) -> SendOutcome {
    let at = chrono::Utc::now();
    if !http.allow_private_networks {
        // An IP-literal host never reaches the resolver, so it is checked here.
        let refused = match reqwest::Url::parse(&endpoint.url) {
            Ok(url) => check_literal_host(&url).is_err(),
            Err(_) => true,
        };
        if refused {
            tracing::info!(endpoint_id = %endpoint.id, "webhook endpoint refused: not a public address");
            return SendOutcome {
                status_code: None,
                error: Some(COARSE_REFUSED.to_owned()),
                latency: Duration::ZERO,
                at,
            };
        }
    }
    let header = signature::sign(
        &endpoint.secret,
        at.timestamp(),
        delivery.payload.as_bytes(),
    );
    let started = Instant::now();
    let sent = http
        .client
        .post(&endpoint.url)
        .header("Content-Type", "application/json")
        .header("Walleti-Signature", header)
        .header("Walleti-Delivery", &delivery.id)
        .body(delivery.payload.clone())
        .send()
        .await;
    let latency = started.elapsed();
    match sent {
        Ok(response) => {
            let code = response.status().as_u16();
            let error = (!response.status().is_success()).then(|| format!("HTTP {code}"));
            SendOutcome {
                status_code: Some(code),
                error,
                latency,
                at,
            }
        }
        Err(error) => {
            let chain = error_chain(&error);
            tracing::info!(endpoint_id = %endpoint.id, error = %chain, "webhook attempt failed");
            SendOutcome {
                status_code: None,
                error: Some(coarse_error(&error).to_owned()),
                latency,
                at,
            }
        }
    }
}

const COARSE_REFUSED: &str = "destination not allowed";

/// What a merchant may learn about a failed attempt: a category, never the cause chain (it
/// would describe walleti's network to whoever picks the URL).
fn coarse_error(error: &reqwest::Error) -> &'static str {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause.is::<DestinationRefused>() {
            return COARSE_REFUSED;
        }
        source = cause.source();
    }
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    }
}

/// The error and its causes ("error sending request: connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn record(
    state: &AttemptContext,
    delivery: &webhook_deliveries::Model,
    endpoint: &webhook_endpoints::Model,
    attempt: i32,
    trigger: &'static str,
    outcome: &SendOutcome,
    result: &AttemptResult,
) {
    let outcome_label = if outcome.succeeded() {
        "succeeded"
    } else {
        "failed"
    };
    let attempt_label = if trigger == "manual" {
        "manual".to_owned()
    } else {
        attempt.to_string()
    };
    state
        .metrics
        .merchant_webhook_attempts_total
        .with_label_values(&[outcome_label, attempt_label.as_str()])
        .inc();
    state
        .metrics
        .merchant_webhook_delivery_seconds
        .observe(outcome.latency.as_secs_f64());
    let Ok(delivery_id) = delivery.id.parse() else {
        tracing::error!(delivery_id = %delivery.id, "unreadable delivery id");
        return;
    };
    let record = AttemptRecord {
        delivery: delivery_id,
        attempt,
        status_code: outcome.status_code.map(i32::from),
        latency_ms: i64::try_from(outcome.latency.as_millis()).unwrap_or(i64::MAX),
        error: outcome.error.clone(),
        trigger,
        at: outcome.at,
    };
    if let AttemptResult::GaveUp(reason) = result {
        tracing::warn!(endpoint_id = %endpoint.id, %reason, "webhook endpoint disabled");
    }
    if let Err(error) = state
        .store
        .record_webhook_attempt(&record, &endpoint.id, result)
        .await
    {
        tracing::warn!(delivery_id = %delivery.id, %error, "record webhook attempt");
    }
}

//! `Notifier`: turns events into notifications for the people they concern, per each user's
//! channel preferences, and records a delivery per channel. Email (SMTP), SMS (Twilio) and push
//! (FCM) clients arrive with the rest of the events issue; until a channel is configured its
//! deliveries are recorded as `skipped`, never as sent. Idempotent by (user, event id): an
//! event delivered twice yields one notification.

use crate::config::Limits;
use crate::domain::{Amount, Currency, Money, UserId};
use crate::metrics::Metrics;
use crate::providers::email::{Email, Mailer};
use crate::providers::push::{Fcm, PushOutcome};
use crate::providers::sms::Twilio;
use crate::store::Store;
use crate::store::entities::outbox;
use crate::store::notifications::{EventNotification, NewNotification, NotifyInline, Preferences};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::task::JoinHandle;

pub const KIND: &str = "notifier";

pub struct NotifierArgs {
    /// Raised by the ledger writer when it wrote deliveries to send (`InlineNotifier`) and told
    /// the notifier so; lowered as the notifier starts sending what is due.
    pub deliveries_due: Arc<AtomicBool>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub mailer: Option<Mailer>,
    pub twilio: Option<Twilio>,
    pub fcm: Option<Arc<Fcm>>,
    pub limits: Limits,
}

pub struct NotifierState {
    deliveries_due: Arc<AtomicBool>,
    store: Store,
    metrics: Arc<Metrics>,
    mailer: Option<Mailer>,
    twilio: Option<Twilio>,
    fcm: Option<Arc<Fcm>>,
    limits: Limits,
    timer: Option<JoinHandle<()>>,
}

pub enum NotifierMsg {
    /// Handle a batch of events (their notifications are stored in one transaction); the
    /// reply says, per event, whether it may be acknowledged.
    Handle(Vec<outbox::Model>, RpcReplyPort<Vec<Result<(), String>>>),
    /// Attempt the channel deliveries that are due.
    DeliverDue,
}

pub struct Notifier;

impl Actor for Notifier {
    type Msg = NotifierMsg;
    type State = NotifierState;
    type Arguments = NotifierArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<NotifierMsg>,
        args: NotifierArgs,
    ) -> Result<NotifierState, ActorProcessingErr> {
        args.metrics.actors_live.with_label_values(&[KIND]).inc();
        let timer = myself.send_interval(args.limits.delivery_retry_interval, || {
            NotifierMsg::DeliverDue
        });
        Ok(NotifierState {
            deliveries_due: args.deliveries_due,
            store: args.store,
            metrics: args.metrics,
            mailer: args.mailer,
            twilio: args.twilio,
            fcm: args.fcm,
            limits: args.limits,
            timer: Some(timer),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<NotifierMsg>,
        state: &mut NotifierState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        state.metrics.actors_live.with_label_values(&[KIND]).dec();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<NotifierMsg>,
        message: NotifierMsg,
        state: &mut NotifierState,
    ) -> Result<(), ActorProcessingErr> {
        let metrics = Arc::clone(&state.metrics);
        let _timer = metrics.actor_message(KIND);
        let (events, reply) = match message {
            NotifierMsg::Handle(events, reply) => (events, reply),
            NotifierMsg::DeliverDue => {
                // What the writer writes from now on gets a message of its own.
                state.deliveries_due.store(false, Ordering::Release);
                deliver_due(state).await;
                return Ok(());
            }
        };
        let (results, sends_due) = notify(state, &events).await;
        for (event, result) in events.iter().zip(&results) {
            if let Err(error) = result {
                metrics.record_actor_error(KIND, format!("event {}: {error}", event.id));
            }
        }
        // New deliveries are due at once: send them now rather than on the next tick.
        if sends_due {
            deliver_due(state).await;
        }
        let _ = reply.send(results);
        Ok(())
    }
}

/// One message for one person.
struct Message {
    user: UserId,
    title: String,
    body: String,
    /// Whether it may go by SMS (the user's preference still decides).
    sms: bool,
}

fn money(data: &Value) -> Result<Money, String> {
    money_in(data, "amount")
}

fn money_in(data: &Value, field: &str) -> Result<Money, String> {
    let amount = data[field]
        .as_i64()
        .and_then(|amount| Amount::new(amount).ok())
        .ok_or("event without a valid amount")?;
    let currency = data["currency"]
        .as_str()
        .and_then(|code| Currency::parse(code).ok())
        .ok_or("event without a valid currency")?;
    Ok(Money::new(amount, currency))
}

fn user(data: &Value, field: &str) -> Result<UserId, String> {
    data[field]
        .as_str()
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| format!("event without a valid {field}"))
}

/// Who hears about an event, and what they read.
fn messages(kind: &str, data: &Value) -> Result<Vec<Message>, String> {
    let message = |user, title: &str, body: String| Message {
        user,
        title: title.to_owned(),
        body,
        sms: true,
    };
    Ok(match kind {
        "transfer.completed" => {
            let amount = money(data)?;
            vec![
                message(
                    user(data, "from_user")?,
                    "Money sent",
                    format!("You sent {amount}."),
                ),
                message(
                    user(data, "to_user")?,
                    "Money received",
                    format!("You received {amount}."),
                ),
            ]
        }
        "transfer.failed" => vec![message(
            user(data, "from_user")?,
            "Transfer failed",
            format!(
                "Your transfer of {} failed; the money is back in your wallet.",
                money(data)?
            ),
        )],
        "onramp.succeeded" => vec![message(
            user(data, "user_id")?,
            "Top-up arrived",
            format!("Your top-up of {} arrived.", money(data)?),
        )],
        "onramp.failed" => vec![message(
            user(data, "user_id")?,
            "Top-up failed",
            format!("Your top-up of {} failed.", money(data)?),
        )],
        // By email and push only: a login notice by SMS would let scripted logins pump SMS.
        "session.created" => vec![Message {
            sms: false,
            ..message(
                user(data, "user_id")?,
                "New login",
                "Someone (hopefully you) just logged in to your walleti account. If it was not \
                 you, log out everywhere and change your password."
                    .to_owned(),
            )
        }],
        "payment_intent.succeeded" => vec![message(
            user(data, "customer")?,
            "Payment made",
            format!("You paid {}.", money_in(data, "amount_received")?),
        )],
        "refund.succeeded" => vec![message(
            user(data, "user")?,
            "Refund received",
            format!("You were refunded {}.", money(data)?),
        )],
        "payout.paid" if data["user"].is_string() => vec![message(
            user(data, "user")?,
            "Withdrawal sent",
            format!("Your withdrawal of {} was paid to your bank.", money(data)?),
        )],
        "payout.failed" if data["user"].is_string() => vec![message(
            user(data, "user")?,
            "Withdrawal failed",
            format!(
                "Your withdrawal of {} failed; the money is back in your wallet.",
                money(data)?
            ),
        )],
        // Other events (operator adjustments, merchants' events, …) notify nobody.
        _ => Vec::new(),
    })
}

/// The notifications a batch of events calls for, stored in one transaction. Returns, per
/// event, whether it is handled, and whether some channel delivery is now due.
async fn notify(
    state: &NotifierState,
    events: &[outbox::Model],
) -> (Vec<Result<(), String>>, bool) {
    // Who each event is for, then every recipient's channel choices in one read.
    let parsed: Vec<Result<Vec<Message>, String>> = events.iter().map(event_messages).collect();
    let mut users: Vec<UserId> = parsed
        .iter()
        .flatten()
        .flatten()
        .map(|message| message.user)
        .collect();
    users.sort_unstable();
    users.dedup();
    let channels = match state.store.channel_choices(&users).await {
        Ok(channels) => channels,
        Err(error) => {
            // Nothing can be stored: every event that needs a notification is retried.
            let results = parsed
                .iter()
                .map(|messages| match messages {
                    Ok(messages) if messages.is_empty() => Ok(()),
                    Ok(_) => Err(error.to_string()),
                    Err(error) => Err(error.clone()),
                })
                .collect();
            return (results, false);
        }
    };
    let mut results: Vec<Result<(), String>> = Vec::with_capacity(events.len());
    let mut items: Vec<(usize, NewNotification<'_>)> = Vec::new();
    for (index, (event, messages)) in events.iter().zip(parsed).enumerate() {
        match messages {
            Ok(messages) => {
                items.extend(
                    notifications_for(state, event, messages, &channels)
                        .into_iter()
                        .map(|item| (index, item)),
                );
                results.push(Ok(()));
            }
            Err(error) => results.push(Err(error)),
        }
    }
    let notifications: Vec<NewNotification<'_>> =
        items.iter().map(|(_, item)| item.clone()).collect();
    let stored = match state
        .store
        .create_notifications(&notifications, chrono::Utc::now())
        .await
    {
        Ok(stored) => stored,
        Err(error) => {
            // Nothing was stored: every event that needed a notification is retried.
            for (index, _) in &items {
                results[*index] = Err(error.to_string());
            }
            return (results, false);
        }
    };
    let mut sends_due = false;
    for ((_, notification), new) in items.iter().zip(stored) {
        if !new {
            continue;
        }
        for (channel, status) in &notification.deliveries {
            sends_due |= *status == "pending";
            state
                .metrics
                .notifications_total
                .with_label_values(&[channel, status])
                .inc();
        }
    }
    (results, sends_due)
}

/// Who hears about the event, and what they read.
fn event_messages(event: &outbox::Model) -> Result<Vec<Message>, String> {
    let payload: Value = serde_json::from_str(&event.payload)
        .map_err(|error| format!("malformed event: {error}"))?;
    messages(&event.event_type, &payload["data"])
}

/// One event's notifications, per each person's channel choices (read once per batch).
fn notifications_for<'a>(
    state: &NotifierState,
    event: &'a outbox::Model,
    messages: Vec<Message>,
    channels: &HashMap<UserId, (Preferences, bool)>,
) -> Vec<NewNotification<'a>> {
    let clients = Clients {
        email: state.mailer.is_some(),
        sms: state.twilio.is_some(),
        push: state.fcm.is_some(),
    };
    messages
        .into_iter()
        .map(|message| {
            let choice = channels.get(&message.user).copied().unwrap_or_default();
            let deliveries = clients.deliveries(&message, choice);
            NewNotification {
                user: message.user,
                event_id: &event.id,
                kind: &event.event_type,
                title: message.title,
                body: message.body,
                deliveries,
            }
        })
        .collect()
}

/// The channels walleti has a client for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clients {
    pub email: bool,
    pub sms: bool,
    pub push: bool,
}

impl Clients {
    /// A message's deliveries, per its user's channel choices (preferences, has a device).
    fn deliveries(
        self,
        message: &Message,
        (preferences, has_devices): (Preferences, bool),
    ) -> Vec<(&'static str, &'static str)> {
        let status = |client: bool| if client { "pending" } else { "skipped" };
        let mut deliveries = vec![("in_app", "delivered")];
        // A channel the user wants but walleti has no client for is recorded as skipped; push
        // goes to registered devices, and with none there is nothing to send.
        for (channel, wanted, status) in [
            ("email", preferences.email, status(self.email)),
            ("sms", preferences.sms && message.sms, status(self.sms)),
            ("push", preferences.push, status(self.push && has_devices)),
        ] {
            if wanted {
                deliveries.push((channel, status));
            }
        }
        deliveries
    }
}

/// The notifier's work on the events of a group commit, done in that commit
/// (`NotifyInline`), for the users whose channel choices it was given. The deliveries it leaves
/// pending are sent by `Notifier` (`NotifierMsg::DeliverDue`), as those it stores itself.
pub struct InlineNotifier {
    pub clients: Clients,
    pub channels: HashMap<UserId, (Preferences, bool)>,
    /// Each delivery (channel, status) of the notifications written inline, for the metrics
    /// and the notifier once the group commits.
    pub written: std::sync::Mutex<Vec<(&'static str, &'static str)>>,
    /// Events handled inline.
    pub events: std::sync::atomic::AtomicUsize,
}

impl InlineNotifier {
    pub fn new(clients: Clients, channels: HashMap<UserId, (Preferences, bool)>) -> Self {
        InlineNotifier {
            clients,
            channels,
            written: std::sync::Mutex::default(),
            events: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Whether a delivery written inline waits to be sent.
    pub fn sends_due(written: &[(&'static str, &'static str)]) -> bool {
        written.iter().any(|(_, status)| *status == "pending")
    }
}

impl NotifyInline for InlineNotifier {
    fn notifications(&self, event_type: &str, data: &Value) -> Option<Vec<EventNotification>> {
        let notifications: Vec<EventNotification> = messages(event_type, data)
            .ok()?
            .into_iter()
            .map(|message| {
                let choice = self.channels.get(&message.user).copied()?;
                let deliveries = self.clients.deliveries(&message, choice);
                Some(EventNotification {
                    user: message.user,
                    title: message.title,
                    body: message.body,
                    deliveries,
                })
            })
            .collect::<Option<_>>()?;
        self.events
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut written) = self.written.lock() {
            written.extend(
                notifications
                    .iter()
                    .flat_map(|n| n.deliveries.iter().copied()),
            );
        }
        Some(notifications)
    }
}

/// Exponential backoff with ±20 % jitter for the attempt that just failed (1-based).
fn backoff(base: std::time::Duration, attempt: i32) -> chrono::Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    let delay = base.saturating_mul(1 << exponent);
    let jitter: f64 = rand::random_range(0.8..1.2);
    chrono::Duration::from_std(delay.mul_f64(jitter)).unwrap_or_default()
}

/// Sends every due delivery of every configured channel; failures are retried with backoff,
/// then `failed` with the last error.
async fn deliver_due(state: &NotifierState) {
    if state.mailer.is_some() {
        deliver_due_on(state, "email").await;
    }
    if state.twilio.is_some() {
        deliver_due_on(state, "sms").await;
    }
    if state.fcm.is_some() {
        deliver_due_on(state, "push").await;
    }
}

/// Sends one notification on `channel`; returns the provider's message id if it has one.
async fn send_on(
    state: &NotifierState,
    channel: &str,
    user: &crate::store::entities::users::Model,
    notification: &crate::store::entities::notifications::Model,
) -> Result<Option<String>, String> {
    match (channel, &state.mailer, &state.twilio) {
        ("email", Some(mailer), _) => mailer
            .send(&Email {
                to_address: &user.email,
                to_name: &user.name,
                subject: &notification.title,
                text: &notification.body,
            })
            .await
            .map(|()| None)
            .map_err(|error| format!("{error:#}")),
        ("sms", _, Some(twilio)) => twilio
            .send(&user.phone, &format!("walleti: {}", notification.body))
            .await
            .map(Some)
            .map_err(|error| format!("{error:#}")),
        ("push", _, _) => match &state.fcm {
            Some(fcm) => push_to_devices(state, fcm, user, notification).await,
            None => Err("push is not configured".to_owned()),
        },
        _ => Err(format!("channel {channel} is not configured")),
    }
}

async fn deliver_due_on(state: &NotifierState, channel: &'static str) {
    let due = match state
        .store
        .due_deliveries(channel, chrono::Utc::now())
        .await
    {
        Ok(due) => due,
        Err(error) => {
            tracing::warn!(%error, channel, "read due deliveries");
            return;
        }
    };
    for item in due {
        let user = match item
            .notification
            .user_id
            .parse()
            .map(|id| state.store.find_user(id))
        {
            Ok(lookup) => lookup.await.ok().flatten(),
            Err(_) => None,
        };
        let sent = match &user {
            Some(user) => match admit_sms(state, channel, user).await {
                Ok(()) => send_on(state, channel, user, &item.notification)
                    .await
                    .map_err(Refusal::Retry),
                Err(refusal) => Err(refusal),
            },
            None => Err(Refusal::Retry("user not found".to_owned())),
        };
        let now = chrono::Utc::now();
        let attempt = item.delivery.attempts + 1;
        let (status, error, next, reference) = match sent {
            Ok(reference) => ("sent", None, None, reference),
            Err(Refusal::Final(error)) => ("failed", Some(error), None, None),
            Err(Refusal::Retry(error)) if attempt >= state.limits.delivery_attempts_max => {
                ("failed", Some(error), None, None)
            }
            Err(Refusal::Retry(error)) => (
                "pending",
                Some(error),
                Some(now + backoff(state.limits.delivery_backoff_base, attempt)),
                None,
            ),
        };
        if status != "pending" {
            state
                .metrics
                .notifications_total
                .with_label_values(&[channel, status])
                .inc();
        }
        let recorded = state
            .store
            .record_delivery_attempt(&item.delivery.id, status, error, next, reference, now)
            .await;
        if let Err(error) = recorded {
            tracing::warn!(%error, channel, "record delivery attempt");
        }
    }
}

/// Why a delivery was not sent: worth retrying, or not (the user's SMS for today are spent).
enum Refusal {
    Retry(String),
    Final(String),
}

/// What a delivery refused by the daily SMS cap records.
pub const SMS_DAILY_CAP_ERROR: &str = "daily SMS limit reached for this user";

/// Counts an SMS against the user's daily cap (in the database, so it holds across restarts and
/// nodes); other channels pass. A database failure is retried later.
async fn admit_sms(
    state: &NotifierState,
    channel: &str,
    user: &crate::store::entities::users::Model,
) -> Result<(), Refusal> {
    if channel != "sms" {
        return Ok(());
    }
    let user_id: UserId = user
        .id
        .parse()
        .map_err(|_| Refusal::Final("bad user id".to_owned()))?;
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    match state
        .store
        .reserve_sms(user_id, &day, state.limits.sms_per_user_day_max)
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(Refusal::Final(SMS_DAILY_CAP_ERROR.to_owned())),
        Err(error) => Err(Refusal::Retry(error.to_string())),
    }
}

/// Sends to every registered device of the user, removing the ones FCM reports unregistered.
/// Succeeds if at least one device accepted it.
async fn push_to_devices(
    state: &NotifierState,
    fcm: &Fcm,
    user: &crate::store::entities::users::Model,
    notification: &crate::store::entities::notifications::Model,
) -> Result<Option<String>, String> {
    let user_id = user.id.parse().map_err(|_| "bad user id".to_owned())?;
    let tokens = state
        .store
        .device_tokens(user_id)
        .await
        .map_err(|error| error.to_string())?;
    let mut accepted = None;
    let mut last_error = "no registered devices".to_owned();
    for token in tokens {
        match fcm
            .send(&token, &notification.title, &notification.body)
            .await
        {
            Ok(PushOutcome::Sent(name)) => accepted = accepted.or(Some(name)),
            Ok(PushOutcome::Unregistered) => {
                tracing::info!(user_id = %user.id, "removing a push token FCM reports as unregistered");
                if let Err(error) = state.store.remove_device_token(&token).await {
                    tracing::warn!(%error, "remove unregistered device");
                }
            }
            Err(error) => last_error = format!("{error:#}"),
        }
    }
    accepted.map(Some).ok_or(last_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn completed(from: UserId, to: UserId) -> Value {
        json!({"from_user": from.to_string(), "to_user": to.to_string(), "amount": 250, "currency": "usd"})
    }

    fn notifier(clients: Clients, channels: &[(UserId, Preferences, bool)]) -> InlineNotifier {
        InlineNotifier::new(
            clients,
            channels
                .iter()
                .map(|(user, preferences, devices)| (*user, (*preferences, *devices)))
                .collect(),
        )
    }

    #[test]
    fn an_event_is_notified_inline_per_each_users_choices() {
        let (ada, bob) = (UserId::generate(), UserId::generate());
        let quiet = Preferences {
            email: false,
            sms: false,
            push: true,
        };
        let everyone = [(ada, Preferences::default(), false), (bob, quiet, true)];
        let none = notifier(Clients::default(), &everyone);
        let written = none
            .notifications("transfer.completed", &completed(ada, bob))
            .expect("both users' choices are at hand");
        assert_eq!(written.len(), 2);
        assert_eq!(written[0].user, ada);
        assert_eq!(written[0].body, "You sent 2.50 usd.");
        assert_eq!(
            written[0].deliveries,
            vec![
                ("in_app", "delivered"),
                ("email", "skipped"),
                ("sms", "skipped"),
                ("push", "skipped")
            ]
        );
        assert_eq!(
            written[1].deliveries,
            vec![("in_app", "delivered"), ("push", "skipped")]
        );
        let recorded = none.written.lock().map(|w| w.clone()).unwrap_or_default();
        assert_eq!(recorded.len(), 6);
        assert!(!InlineNotifier::sends_due(&recorded));

        // SMS and push have clients: Ada's SMS and Bob's push (he has a device) wait to be sent.
        let clients = Clients {
            sms: true,
            push: true,
            ..Clients::default()
        };
        let sending = notifier(clients, &everyone);
        let written = sending
            .notifications("transfer.completed", &completed(ada, bob))
            .expect("written inline, deliveries pending");
        assert_eq!(
            written[0].deliveries,
            vec![
                ("in_app", "delivered"),
                ("email", "skipped"),
                ("sms", "pending"),
                ("push", "skipped")
            ],
            "Ada has no device to push to"
        );
        assert_eq!(
            written[1].deliveries,
            vec![("in_app", "delivered"), ("push", "pending")]
        );
        let recorded = sending
            .written
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default();
        assert!(InlineNotifier::sends_due(&recorded));

        // A user whose choices are not at hand, or a malformed event: the relay's way.
        let stranger = UserId::generate();
        assert!(
            none.notifications("transfer.completed", &completed(ada, stranger))
                .is_none()
        );
        assert!(
            none.notifications("transfer.completed", &json!({"amount": "lots"}))
                .is_none()
        );
    }
}

//! `Notifier`: turns events into notifications for the people they concern, per each user's
//! channel preferences, and records a delivery per channel. Email (SMTP), SMS (Twilio) and push
//! (FCM) clients arrive with the rest of the events issue; until a channel is configured its
//! deliveries are recorded as `skipped`, never as sent. Idempotent by (user, event id): an
//! event delivered twice yields one notification.

use crate::domain::{Amount, Currency, Money, UserId};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::entities::outbox;
use crate::store::notifications::NewNotification;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::Value;
use std::sync::Arc;

pub const KIND: &str = "notifier";

pub struct NotifierArgs {
    pub store: Store,
    pub metrics: Arc<Metrics>,
}

pub struct NotifierState {
    store: Store,
    metrics: Arc<Metrics>,
}

pub enum NotifierMsg {
    /// Handle one event; the reply says whether it may be acknowledged.
    Handle(Box<outbox::Model>, RpcReplyPort<Result<(), String>>),
}

pub struct Notifier;

impl Actor for Notifier {
    type Msg = NotifierMsg;
    type State = NotifierState;
    type Arguments = NotifierArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<NotifierMsg>,
        args: NotifierArgs,
    ) -> Result<NotifierState, ActorProcessingErr> {
        args.metrics.actors_live.with_label_values(&[KIND]).inc();
        Ok(NotifierState {
            store: args.store,
            metrics: args.metrics,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<NotifierMsg>,
        state: &mut NotifierState,
    ) -> Result<(), ActorProcessingErr> {
        state.metrics.actors_live.with_label_values(&[KIND]).dec();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<NotifierMsg>,
        message: NotifierMsg,
        state: &mut NotifierState,
    ) -> Result<(), ActorProcessingErr> {
        let NotifierMsg::Handle(event, reply) = message;
        let metrics = Arc::clone(&state.metrics);
        let _timer = metrics.actor_message(KIND);
        let result = notify(state, &event).await;
        if let Err(error) = &result {
            metrics.record_actor_error(KIND, format!("event {}: {error}", event.id));
        }
        let _ = reply.send(result);
        Ok(())
    }
}

/// One message for one person.
struct Message {
    user: UserId,
    title: String,
    body: String,
}

fn money(data: &Value) -> Result<Money, String> {
    let amount = data["amount"]
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
        "session.created" => vec![message(
            user(data, "user_id")?,
            "New login",
            "Someone (hopefully you) just logged in to your walleti account. If it was not you, \
             log out everywhere and change your password."
                .to_owned(),
        )],
        // Other events (operator adjustments, …) notify nobody.
        _ => Vec::new(),
    })
}

async fn notify(state: &NotifierState, event: &outbox::Model) -> Result<(), String> {
    let payload: Value = serde_json::from_str(&event.payload)
        .map_err(|error| format!("malformed event: {error}"))?;
    for message in messages(&event.event_type, &payload["data"])? {
        let preferences = state
            .store
            .preferences(message.user)
            .await
            .map_err(|error| error.to_string())?;
        let mut deliveries = vec![("in_app", "delivered")];
        // No channel client is configured yet: record the ones the user wants as skipped.
        for (channel, wanted) in [
            ("email", preferences.email),
            ("sms", preferences.sms),
            ("push", preferences.push),
        ] {
            if wanted {
                deliveries.push((channel, "skipped"));
            }
        }
        let notification = NewNotification {
            user: message.user,
            event_id: &event.id,
            kind: &event.event_type,
            title: message.title,
            body: message.body,
            deliveries: deliveries.clone(),
        };
        let stored = state
            .store
            .create_notification(&notification, chrono::Utc::now())
            .await
            .map_err(|error| error.to_string())?;
        if stored {
            for (channel, status) in deliveries {
                state
                    .metrics
                    .notifications_total
                    .with_label_values(&[channel, status])
                    .inc();
            }
        }
    }
    Ok(())
}

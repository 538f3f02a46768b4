use crate::helpers::{Reply, TestApp, TestUser, backends, spawn_app};
use reqwest::{Method, StatusCode};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, Database, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use std::time::Duration;
use walleti::store::entities::{notifications, outbox};

/// The user's notifications of `kind` (newest first), once there are at least `count`.
async fn notifications_of(app: &TestApp, user: &TestUser, count: usize) -> Vec<Value> {
    notifications_of_kind(app, user, "transfer.completed", count).await
}

async fn notifications_of_kind(
    app: &TestApp,
    user: &TestUser,
    kind: &str,
    count: usize,
) -> Vec<Value> {
    for _ in 0..250 {
        let reply = app.get("/v1/notifications?limit=100", &user.token).await;
        let data: Vec<Value> = reply.body["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|notification| notification["kind"] == kind)
            .collect();
        if data.len() >= count {
            return data;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} never got {count} notifications", user.email);
}

async fn set_preferences(app: &TestApp, user: &TestUser, choices: Value) -> Reply {
    app.request(
        Method::PUT,
        "/v1/notification_preferences",
        Some(&user.token),
        None,
        Some(choices.to_string()),
    )
    .await
}

fn channels(notification: &Value) -> Vec<(String, String)> {
    notification["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| {
            (
                d["channel"].as_str().unwrap_or("").to_owned(),
                d["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn both_parties_are_notified_per_their_preferences_and_unconfigured_channels_are_skipped() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (ada, bob) = (app.user("ada").await, app.user("bob").await);
        app.fund(&ada, 1_000).await;
        let sent = app.transfer(&ada, &bob.email, json!(250), "n-1").await;
        assert_eq!(sent.body["status"], "completed");

        let logins = notifications_of_kind(&app, &ada, "session.created", 1).await;
        assert_eq!(
            logins[0]["title"], "New login",
            "a new login is a security notice"
        );
        let ada_notes = notifications_of(&app, &ada, 1).await;
        let bob_notes = notifications_of(&app, &bob, 1).await;
        assert_eq!(ada_notes[0]["object"], "notification");
        assert_eq!(ada_notes[0]["kind"], "transfer.completed");
        assert_eq!(ada_notes[0]["body"], "You sent 2.50 usd.");
        assert_eq!(bob_notes[0]["body"], "You received 2.50 usd.");
        let expected: Vec<(String, String)> = [
            ("email", "skipped"),
            ("in_app", "delivered"),
            ("push", "skipped"),
            ("sms", "skipped"),
        ]
        .iter()
        .map(|(c, s)| (c.to_string(), s.to_string()))
        .collect();
        assert_eq!(
            channels(&ada_notes[0]),
            expected,
            "a channel that is not configured is skipped, never sent"
        );

        // Bob turns email and SMS off.
        let set = set_preferences(
            &app,
            &bob,
            json!({"email": false, "sms": false, "push": true}),
        )
        .await;
        assert_eq!(set.status, StatusCode::OK, "{}", set.text);
        assert_eq!(set.body["email"], false);
        assert_eq!(
            app.get("/v1/notification_preferences", &bob.token)
                .await
                .body["sms"],
            false
        );
        let bad = set_preferences(
            &app,
            &bob,
            json!({"email": "no", "sms": false, "push": true}),
        )
        .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        app.transfer(&ada, &bob.email, json!(100), "n-2").await;
        let bob_notes = notifications_of(&app, &bob, 2).await;
        let expected: Vec<(String, String)> = [("in_app", "delivered"), ("push", "skipped")]
            .iter()
            .map(|(c, s)| (c.to_string(), s.to_string()))
            .collect();
        assert_eq!(channels(&bob_notes[0]), expected);

        // Devices.
        let device = app
            .post(
                "/v1/devices",
                Some(&bob.token),
                None,
                &json!({"token": "fcm-token-bob-1", "platform": "android"}),
            )
            .await;
        assert_eq!(device.status, StatusCode::CREATED, "{}", device.text);
        let id = device.body["id"].as_str().expect("id");
        assert_eq!(
            app.get(&format!("/v1/devices/{id}"), &bob.token).await.body["token"],
            "fcm-token-bob-1"
        );
        assert_eq!(
            app.get(&format!("/v1/devices/{id}"), &ada.token)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            app.get("/v1/devices", &bob.token).await.body["data"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        let bad_platform = app
            .post(
                "/v1/devices",
                Some(&bob.token),
                None,
                &json!({"token": "x", "platform": "palm"}),
            )
            .await;
        assert_eq!(bad_platform.status, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn a_redelivered_event_notifies_once_and_a_poison_event_is_dead_lettered() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (ada, bob) = (app.user("ada").await, app.user("bob").await);
        app.fund(&ada, 1_000).await;
        app.transfer(&ada, &bob.email, json!(300), "r-1").await;
        notifications_of(&app, &bob, 1).await;

        // The ack was lost: the event goes back to the queue and is handled again.
        let database = Database::connect(app.database_url.as_str())
            .await
            .expect("connect");
        // The relay marks its batch published once every consumer handled it, a moment after
        // the notification appears.
        let mut event = None;
        for _ in 0..200 {
            let found = outbox::Entity::find()
                .filter(outbox::Column::EventType.eq("transfer.completed"))
                .one(&database)
                .await
                .expect("query")
                .expect("event");
            if found.published_at.is_some() {
                event = Some(found);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let event = event.expect("the event is published");
        // Its notifications were written with the transfer (`NotifyInline`): the notifier is
        // asked again too.
        outbox::Entity::update_many()
            .col_expr(
                outbox::Column::PublishedAt,
                Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
            )
            .col_expr(
                outbox::Column::NotifiedAt,
                Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
            )
            .filter(outbox::Column::Id.eq(event.id.as_str()))
            .exec(&database)
            .await
            .expect("unpublish");
        // A poison event: it can never be handled.
        outbox::Entity::insert(outbox::ActiveModel {
            id: Set(uuid::Uuid::now_v7().to_string()),
            event_type: Set("transfer.completed".into()),
            aggregate_type: Set("transfer".into()),
            aggregate_id: Set("broken".into()),
            payload: Set("{\"data\": {\"amount\": \"lots\"}}".into()),
            created_at: Set(chrono::Utc::now()),
            published_at: Set(None),
            attempts: Set(0),
            last_error: Set(None),
            dead_lettered_at: Set(None),
            notified_at: Set(None),
            dispatched_at: Set(None),
        })
        .exec(&database)
        .await
        .expect("poison");

        let mut dead = None;
        for _ in 0..250 {
            let poison = outbox::Entity::find()
                .filter(outbox::Column::AggregateId.eq("broken"))
                .one(&database)
                .await
                .expect("query")
                .expect("row");
            if poison.dead_lettered_at.is_some() {
                dead = Some(poison);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let dead = dead.expect("the poison event is dead-lettered");
        assert_eq!(
            dead.attempts,
            walleti::actors::outbox_relay::DELIVERY_ATTEMPTS_MAX
        );
        assert!(dead.last_error.is_some());

        // The redelivered event was published again, and still one notification each.
        let again = outbox::Entity::find_by_id(event.id.clone())
            .one(&database)
            .await
            .expect("query")
            .expect("event");
        assert!(again.published_at.is_some());
        let for_event = notifications::Entity::find()
            .filter(notifications::Column::EventId.eq(event.id.as_str()))
            .all(&database)
            .await
            .expect("rows");
        assert_eq!(
            for_event.len(),
            2,
            "one for each party, despite the redelivery"
        );
        // The poison event did not block the ones behind it.
        app.transfer(&ada, &bob.email, json!(100), "r-2").await;
        notifications_of(&app, &bob, 2).await;
    }
}

/// Without Redis every consumer of a P2P transfer's `transfer.completed` is in the process: the
/// group commit that completes the transfer writes both notifications and the event handled and
/// published, so they are there when the transfer's answer is, with the relay out of the way.
/// Channel choices come from a cache that a change of preferences evicts at once. (The SMS,
/// email and push tests cover the deliveries such a commit leaves for the notifier to send.)
#[tokio::test]
async fn a_transfer_is_notified_in_the_commit_that_completes_it() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (ada, bob) = (app.user("ada").await, app.user("bob").await);
        app.fund(&ada, 1_000).await;
        let database = Database::connect(app.database_url.as_str())
            .await
            .expect("connect");
        let notified = async |transfer: &Value| {
            let event = outbox::Entity::find()
                .filter(outbox::Column::EventType.eq("transfer.completed"))
                .filter(outbox::Column::AggregateId.eq(transfer["id"].as_str().expect("id")))
                .one(&database)
                .await
                .expect("query")
                .expect("the event is written with the transfer");
            let rows = notifications::Entity::find()
                .filter(notifications::Column::EventId.eq(event.id.as_str()))
                .all(&database)
                .await
                .expect("rows");
            (event, rows)
        };

        let first = app.transfer(&ada, &bob.email, json!(250), "i-1").await;
        assert_eq!(first.body["status"], "completed", "{}", first.text);
        // Read at once, no waiting: nothing was left for the relay.
        let (event, rows) = notified(&first.body).await;
        assert!(event.published_at.is_some() && event.notified_at.is_some());
        assert!(event.dispatched_at.is_some() && event.attempts == 0);
        let mut users: Vec<&str> = rows.iter().map(|row| row.user_id.as_str()).collect();
        users.sort_unstable();
        let mut parties = vec![ada.id.as_str(), bob.id.as_str()];
        parties.sort_unstable();
        assert_eq!(users, parties, "one notification for each party");
        let bob_notes = notifications_of(&app, &bob, 1).await;
        assert_eq!(bob_notes[0]["body"], "You received 2.50 usd.");
        assert_eq!(channels(&bob_notes[0]).len(), 4, "{}", bob_notes[0]);

        // Bob's choices were cached by that commit; changing them evicts them.
        let set = set_preferences(
            &app,
            &bob,
            json!({"email": false, "sms": false, "push": false}),
        )
        .await;
        assert_eq!(set.status, StatusCode::OK, "{}", set.text);
        let second = app.transfer(&ada, &bob.email, json!(100), "i-2").await;
        let (event, rows) = notified(&second.body).await;
        assert!(event.published_at.is_some());
        assert_eq!(rows.len(), 2);
        let bob_notes = notifications_of(&app, &bob, 2).await;
        assert_eq!(
            channels(&bob_notes[0]),
            vec![("in_app".to_owned(), "delivered".to_owned())],
            "the new preferences count from the next transfer on"
        );
        let ada_notes = notifications_of(&app, &ada, 2).await;
        assert_eq!(channels(&ada_notes[0]).len(), 4, "{}", ada_notes[0]);
    }
}

/// One notification per user and event is kept by the primary key (the id is derived from
/// both), not by an index of its own. On PostgreSQL a notification takes one index entry: its
/// key `(user_id, id)`, which also serves the list; SQLite, which cannot change a table's key in
/// place, keeps its key on `id` beside `(user_id, id)`. The migrations go down and up.
#[tokio::test]
async fn a_notification_takes_one_index_entry_on_postgres() {
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{ConnectionTrait, DbBackend};
    const KEY_BY_ID: &str =
        "CREATE UNIQUE INDEX notifications_pkey ON public.notifications USING btree (id)";
    const BY_USER: &str =
        "CREATE INDEX notifications_user_id ON public.notifications USING btree (user_id, id)";
    for backend in backends() {
        let app = spawn_app(backend).await;
        let db = app.state().store.writer();
        let (sql, expected, keyed_by_id, before): (&str, &[&str], &[&str], &[&str]) = match db
            .get_database_backend()
        {
            DbBackend::Postgres => (
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'notifications' \
                     ORDER BY indexname",
                &[
                    "CREATE UNIQUE INDEX notifications_pkey ON public.notifications USING btree (user_id, id)",
                ],
                &[KEY_BY_ID, BY_USER],
                &[
                    KEY_BY_ID,
                    "CREATE UNIQUE INDEX notifications_user_event ON public.notifications USING btree (user_id, event_id)",
                    BY_USER,
                ],
            ),
            _ => (
                "SELECT name FROM sqlite_master WHERE type = 'index' \
                     AND tbl_name = 'notifications' AND name NOT LIKE 'sqlite_%' ORDER BY name",
                &["notifications_user_id"],
                &["notifications_user_id"],
                &["notifications_user_event", "notifications_user_id"],
            ),
        };
        let indexes = async || -> Vec<String> { crate::helpers::text_column(db, sql).await };
        assert_eq!(indexes().await, expected, "{backend:?}");
        crate::helpers::migrate_down_through(db, "m20261207_000001_notifications_keyed_by_user")
            .await;
        assert_eq!(indexes().await, keyed_by_id, "{backend:?}");
        // A delivery written before the migration learns its notification's user from it.
        for statement in [
            "INSERT INTO notifications (id, user_id, event_id, kind, title, body, created_at) \
             VALUES ('n-before', 'u-before', 'e-before', 'k', 't', 'b', CURRENT_TIMESTAMP)",
            "INSERT INTO notification_deliveries (id, notification_id, channel, status, attempts, \
             updated_at) VALUES ('d-before', 'n-before', 'sms', 'pending', 0, CURRENT_TIMESTAMP)",
        ] {
            db.execute_unprepared(statement).await.expect("insert");
        }
        Migrator::up(db, None).await.expect("up");
        assert_eq!(
            crate::helpers::text_column(
                db,
                "SELECT user_id FROM notification_deliveries WHERE id = 'd-before'"
            )
            .await,
            ["u-before"],
            "{backend:?}"
        );
        crate::helpers::migrate_down_through(db, "m20261207_000001_notifications_keyed_by_user")
            .await;
        // `notifications_keyed_by_event` and the ones after it.
        crate::helpers::migrate_down_through(db, "m20261204_000001_notifications_keyed_by_event")
            .await;
        assert_eq!(indexes().await, before, "{backend:?}");
        Migrator::up(db, None).await.expect("up");
        assert_eq!(indexes().await, expected, "{backend:?}");
    }
}

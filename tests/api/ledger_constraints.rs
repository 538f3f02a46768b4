use crate::helpers::{backends, spawn_app};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;
use walleti::store::entities::{accounts, entries, outbox};

#[tokio::test]
async fn the_database_refuses_a_negative_wallet_even_if_code_is_wrong() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let ada = app.user("ada").await;
        app.fund(&ada, 100).await;
        let database = Database::connect(app.database_url.as_str())
            .await
            .expect("connect");
        let wallet_id = app.get("/v1/wallet", &ada.token).await.body["accounts"][0]["id"]
            .as_str()
            .expect("id")
            .to_owned();

        for (column, value) in [
            (accounts::Column::Available, -1_i64),
            (accounts::Column::Locked, -1),
        ] {
            let refused = accounts::Entity::update_many()
                .col_expr(column, Expr::value(value))
                .filter(accounts::Column::Id.eq(wallet_id.as_str()))
                .exec(&database)
                .await;
            assert!(
                refused.is_err(),
                "{backend:?}: {column:?} = {value} must violate a CHECK constraint"
            );
        }
        // System accounts mirror money outside the platform and may go negative: funding Ada
        // took the adjustments account to -100.
        let adjustments = accounts::Entity::find()
            .filter(accounts::Column::OwnerType.eq("system"))
            .filter(accounts::Column::OwnerId.eq("adjustments"))
            .filter(accounts::Column::Currency.eq("usd"))
            .one(&database)
            .await
            .expect("query")
            .expect("adjustments account");
        assert_eq!(adjustments.available, -100);
        let adjustment_entries = entries::Entity::find()
            .filter(entries::Column::AccountId.eq(adjustments.id.as_str()))
            .all(&database)
            .await
            .expect("entries");
        assert_eq!(adjustment_entries.len(), 1);
        assert_eq!(adjustment_entries[0].balance_after, -100);
        assert_eq!(app.balance(&ada).await, (100, 0));
    }
}

#[tokio::test]
async fn every_money_movement_writes_its_outbox_event_in_the_same_transaction() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (ada, bob) = (app.user("ada").await, app.user("bob").await);
        app.fund(&ada, 1_000).await;
        let sent = app.transfer(&ada, &bob.email, json!(250), "outbox-1").await;
        let transfer_id = sent.body["id"].as_str().expect("id").to_owned();

        let database = Database::connect(app.database_url.as_str())
            .await
            .expect("connect");
        let events: Vec<_> = outbox::Entity::find()
            .order_by_asc(outbox::Column::Id)
            .all(&database)
            .await
            .expect("outbox")
            .into_iter()
            .filter(|event| event.event_type != "session.created")
            .collect();
        let types: Vec<&str> = events
            .iter()
            .map(|event| event.event_type.as_str())
            .collect();
        assert_eq!(types, ["adjustment.created", "transfer.completed"]);
        let completed = &events[1];
        assert_eq!(completed.aggregate_id, transfer_id);
        // Committed with the movement; the relay publishes it afterwards (at least once).
        assert_eq!(completed.event_type, "transfer.completed");
        let payload: serde_json::Value = serde_json::from_str(&completed.payload).expect("json");
        assert_eq!(payload["type"], "transfer.completed");
        assert_eq!(payload["data"]["amount"], 250);
        assert_eq!(payload["data"]["to_user"], bob.id.as_str());
    }
}

/// On PostgreSQL the key columns of the rows every transfer writes compare under the `"C"`
/// collation (migration `keys_collated_c`), keeping their types and lengths; going down gives
/// them the database's default collation back and up `"C"` again, with the server running, and
/// money still moves and lists afterwards. SQLite compares bytewise already (nothing changes).
#[tokio::test]
async fn transfer_keys_compare_bytewise_on_postgres() {
    use migration::{Migrator, MigratorTrait};
    use reqwest::StatusCode;
    use sea_orm::DbBackend;
    const KEYS: [(&str, &str, u32); 13] = [
        ("accounts", "id", 64),
        ("entries", "account_id", 64),
        ("entries", "id", 64),
        ("entries", "op_key", 128),
        ("idempotency_keys", "caller", 128),
        ("idempotency_keys", "key", 255),
        ("journals", "id", 64),
        ("notifications", "id", 64),
        ("notifications", "user_id", 64),
        ("outbox", "id", 64),
        ("transfers", "from_user", 64),
        ("transfers", "id", 64),
        ("transfers", "to_user", 64),
    ];
    let expected = |collation: &str| -> Vec<String> {
        KEYS.iter()
            .map(|(table, column, length)| {
                format!("{table}.{column} character varying({length}) {collation}")
            })
            .collect()
    };
    let pairs: Vec<String> = KEYS
        .iter()
        .map(|(table, column, _)| format!("('{table}', '{column}')"))
        .collect();
    let sql = format!(
        "SELECT table_name || '.' || column_name || ' ' || data_type || '(' || \
         character_maximum_length || ') ' || coalesce(collation_name, 'default') \
         FROM information_schema.columns WHERE table_schema = 'public' \
         AND (table_name, column_name) IN ({}) ORDER BY table_name, column_name",
        pairs.join(", ")
    );
    for backend in backends() {
        let app = spawn_app(backend).await;
        let ada = app.user("ada").await;
        let bob = app.user("bob").await;
        app.fund(&ada, 100).await;
        let sent = app
            .transfer(&ada, &bob.email, json!(30), "before-down")
            .await;
        assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
        let db = app.state().store.writer();
        if db.get_database_backend() == DbBackend::Postgres {
            let collations = async || crate::helpers::text_column(db, &sql).await;
            assert_eq!(collations().await, expected("C"));
            crate::helpers::migrate_down_through(db, "m20261208_000001_keys_collated_c").await;
            assert_eq!(collations().await, expected("default"));
            Migrator::up(db, None).await.expect("up");
            assert_eq!(collations().await, expected("C"));
        }
        let sent = app.transfer(&ada, &bob.email, json!(20), "after-up").await;
        assert_eq!(
            sent.status,
            StatusCode::CREATED,
            "{backend:?}: {}",
            sent.text
        );
        let listed = app.get("/v1/transfers", &bob.token).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
        let amounts: Vec<i64> = listed.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|transfer| transfer["amount"].as_i64().expect("amount"))
            .collect();
        assert_eq!(amounts, [20, 30], "{backend:?}: newest first");
    }
}

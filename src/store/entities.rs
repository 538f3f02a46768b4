//! SeaORM entities, one module per table, written by hand to match `migration/`. Ids are
//! stored as hyphenated UUID text so the same schema serves SQLite and PostgreSQL.

macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    };
}

pub mod users {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub email: String,
        pub phone: String,
        pub name: String,
        pub password_hash: String,
        pub created_at: DateTimeUtc,
        /// When the user proved they receive mail at `email` (a one-time code).
        pub email_verified_at: Option<DateTimeUtc>,
        /// When the user proved they receive texts at `phone` (a one-time code).
        pub phone_verified_at: Option<DateTimeUtc>,
    }

    no_relations!();
}

/// One-time codes that verify a user's email or phone: only an HMAC of the code is stored.
pub mod contact_verifications {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "contact_verifications")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub user_id: String,
        /// `email` or `phone`.
        pub channel: String,
        /// The address the code was sent to.
        pub contact: String,
        /// Hex HMAC-SHA256 of the code (keyed by this row's id).
        pub code_hash: String,
        pub attempts: i32,
        pub expires_at: DateTimeUtc,
        pub consumed_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

/// SMS sent to each user per UTC day (the daily cap).
pub mod sms_usage {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sms_usage")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub day: String,
        pub sent: i32,
    }

    no_relations!();
}

pub mod sessions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub token_hash: String,
        pub user_id: String,
        pub expires_at: DateTimeUtc,
        pub revoked_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod accounts {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "accounts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub owner_type: String,
        pub owner_id: String,
        pub currency: String,
        pub available: i64,
        pub locked: i64,
        pub version: i64,
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod journals {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "journals")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub kind: String,
        pub reference_type: String,
        pub reference_id: String,
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod entries {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "entries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub account_id: String,
        pub op_key: String,
        pub bucket: String,
        pub amount: i64,
        pub balance_after: i64,
        pub journal_id: String,
        pub kind: String,
        pub reference_type: String,
        pub reference_id: String,
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod transfers {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "transfers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub from_user: String,
        pub to_user: String,
        pub source_account: String,
        pub target_account: String,
        pub amount: i64,
        pub currency: String,
        pub note: Option<String>,
        pub state: String,
        pub failure_code: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        /// `p2p`, `payment`, `capture` or `refund`.
        pub kind: String,
        /// The payment intent (payment, capture) or refund (refund) the transfer serves.
        pub reference_id: Option<String>,
    }

    no_relations!();
}

pub mod adjustments {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "adjustments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub account_id: String,
        pub amount: i64,
        pub currency: String,
        pub reason: String,
        pub operator: String,
        pub journal_id: String,
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod idempotency_keys {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub caller: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub fingerprint: String,
        pub resource_id: String,
        pub response_status: Option<i32>,
        pub response_body: Option<String>,
        pub locked_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        /// Identifies the request holding the claim (null when released or finished).
        pub claim_token: Option<String>,
    }

    no_relations!();
}

pub mod outbox {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub event_type: String,
        pub aggregate_type: String,
        pub aggregate_id: String,
        pub payload: String,
        pub created_at: DateTimeUtc,
        pub published_at: Option<DateTimeUtc>,
        pub attempts: i32,
        pub last_error: Option<String>,
        pub dead_lettered_at: Option<DateTimeUtc>,
        /// In-process bus: the notifier handled it (set only while the dispatcher has not).
        pub notified_at: Option<DateTimeUtc>,
        /// In-process bus: the dispatcher handled it (set only while the notifier has not).
        pub dispatched_at: Option<DateTimeUtc>,
    }

    no_relations!();
}

pub mod onramps {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "onramps")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub user_id: String,
        pub account_id: String,
        pub provider: String,
        pub amount: i64,
        pub currency: String,
        pub status: String,
        pub redirect_url: Option<String>,
        pub provider_reference: Option<String>,
        pub failure_code: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod webhook_inbox {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_inbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub provider: String,
        pub event_id: String,
        pub event_type: String,
        pub payload: String,
        pub received_at: DateTimeUtc,
        pub processed_at: Option<DateTimeUtc>,
        pub outcome: Option<String>,
        pub detail: Option<String>,
        pub attempts: i32,
    }

    no_relations!();
}

pub mod reconciliations {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reconciliations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub status: String,
        pub trigger: String,
        pub started_at: DateTimeUtc,
        pub finished_at: DateTimeUtc,
        pub duration_ms: i64,
        /// JSON object: discrepancy kind → count.
        pub counts: String,
        /// JSON array of discrepancies (at most `DISCREPANCIES_STORED_MAX`).
        pub discrepancies: String,
        pub discrepancy_count: i64,
    }

    no_relations!();
}

pub mod notifications {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notifications")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub user_id: String,
        pub event_id: String,
        pub kind: String,
        pub title: String,
        pub body: String,
        pub created_at: DateTimeUtc,
        /// Deliveries settled when it was written (`channel=status,…`, e.g. in-app
        /// `delivered`, `skipped` channels); the others are `notification_deliveries` rows.
        pub settled_deliveries: Option<String>,
    }

    no_relations!();
}

pub mod notification_deliveries {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notification_deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub notification_id: String,
        /// The notification's user: with its id, the notification's key.
        pub user_id: String,
        pub channel: String,
        pub status: String,
        pub attempts: i32,
        pub last_error: Option<String>,
        pub updated_at: DateTimeUtc,
        pub next_attempt_at: Option<DateTimeUtc>,
        pub provider_reference: Option<String>,
    }

    no_relations!();
}

pub mod notification_preferences {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notification_preferences")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        pub email: bool,
        pub sms: bool,
        pub push: bool,
        pub updated_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod devices {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "devices")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub user_id: String,
        pub token: String,
        pub platform: String,
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod merchants {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "merchants")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub email: String,
        pub password_hash: String,
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod merchant_sessions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "merchant_sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub token_hash: String,
        pub merchant_id: String,
        pub expires_at: DateTimeUtc,
        pub revoked_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod api_keys {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub merchant_id: String,
        pub secret_hash: String,
        pub redacted: String,
        pub name: Option<String>,
        pub created_at: DateTimeUtc,
        pub last_used_at: Option<DateTimeUtc>,
        pub revoked_at: Option<DateTimeUtc>,
        /// `full`, or `payments` (payment intents only).
        pub scope: String,
    }

    no_relations!();
}

pub mod payment_intents {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payment_intents")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub merchant_id: String,
        pub amount: i64,
        pub currency: String,
        pub capture_method: String,
        pub description: Option<String>,
        pub status: String,
        pub customer_user_id: Option<String>,
        pub customer_account_id: Option<String>,
        pub hold_id: Option<String>,
        pub transfer_id: Option<String>,
        pub amount_capturable: i64,
        pub amount_received: i64,
        pub amount_refunded: i64,
        pub failure_code: Option<String>,
        pub cancellation_reason: Option<String>,
        pub canceled_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        /// The payment link's token (`/pay/{link_token}`): 128 random bits, hex.
        pub link_token: Option<String>,
    }

    no_relations!();
}

pub mod holds {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "holds")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub account_id: String,
        pub amount: i64,
        pub currency: String,
        pub status: String,
        pub captured_amount: Option<i64>,
        pub reference_type: String,
        pub reference_id: String,
        pub expires_at: Option<DateTimeUtc>,
        pub resolved_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod refunds {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refunds")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub merchant_id: String,
        pub payment_intent_id: String,
        pub user_id: String,
        pub amount: i64,
        pub currency: String,
        pub status: String,
        pub failure_code: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod payouts {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payouts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub owner_type: String,
        pub owner_id: String,
        pub account_id: String,
        pub hold_id: String,
        pub amount: i64,
        pub currency: String,
        pub status: String,
        pub bank_reference: Option<String>,
        pub failure_code: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod webhook_endpoints {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_endpoints")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub merchant_id: String,
        pub url: String,
        /// JSON array of event types; `["*"]` subscribes to all.
        pub events: String,
        pub secret: String,
        pub status: String,
        pub disabled_reason: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod webhook_deliveries {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub endpoint_id: String,
        pub merchant_id: String,
        pub event_id: String,
        pub event_type: String,
        pub payload: String,
        pub status: String,
        pub attempts: i32,
        pub next_attempt_at: Option<DateTimeUtc>,
        pub last_status_code: Option<i32>,
        pub last_error: Option<String>,
        pub created_at: DateTimeUtc,
        pub delivered_at: Option<DateTimeUtc>,
    }

    no_relations!();
}

pub mod webhook_attempts {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_attempts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub delivery_id: String,
        pub attempt: i32,
        pub status_code: Option<i32>,
        pub latency_ms: i64,
        pub error: Option<String>,
        /// `schedule` or `manual` (re-sent by the merchant).
        pub trigger: String,
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

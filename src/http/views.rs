//! The JSON objects the API returns and the request bodies it documents. Every object has
//! `id`, `object` and `created_at`; amounts are integer minor units with a lowercase currency.

use crate::store::accounts::AccountRecord;
use crate::store::entities::{adjustments, entries, sessions, users};
use crate::store::ledger::AdjustmentRecord;
use crate::store::transfers::TransferRecord;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    /// Always `user`.
    pub object: &'static str,
    pub email: String,
    pub phone: String,
    pub name: String,
    pub created_at: String,
    /// Whether the user proved they receive mail at `email` (`POST /v1/me/verifications`).
    pub email_verified: bool,
    /// Whether the user proved they receive texts at `phone`.
    pub phone_verified: bool,
}

impl From<&users::Model> for UserView {
    fn from(user: &users::Model) -> UserView {
        UserView {
            id: user.id.clone(),
            object: "user",
            email: user.email.clone(),
            phone: user.phone.clone(),
            name: user.name.clone(),
            created_at: timestamp(user.created_at),
            email_verified: user.email_verified_at.is_some(),
            phone_verified: user.phone_verified_at.is_some(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    /// Always `session`.
    pub object: &'static str,
    /// The bearer token. Shown only when the session is created, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    pub created_at: String,
    /// Whether this is the session of the request's own token.
    pub current: bool,
    /// The user, when the session is created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserView>,
}

impl From<&sessions::Model> for SessionView {
    fn from(session: &sessions::Model) -> SessionView {
        SessionView {
            id: session.id.clone(),
            object: "session",
            token: None,
            expires_at: timestamp(session.expires_at),
            revoked_at: session.revoked_at.map(timestamp),
            created_at: timestamp(session.created_at),
            current: false,
            user: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub id: String,
    /// Always `account`.
    pub object: &'static str,
    pub currency: String,
    pub available: i64,
    pub locked: i64,
    pub created_at: String,
}

impl From<&AccountRecord> for AccountView {
    fn from(account: &AccountRecord) -> AccountView {
        AccountView {
            id: account.id.to_string(),
            object: "account",
            currency: account.currency.code().to_owned(),
            available: account.balance.available,
            locked: account.balance.locked,
            created_at: timestamp(account.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WalletView {
    /// Always `wallet`.
    pub object: &'static str,
    pub accounts: Vec<AccountView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReferenceView {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntryView {
    pub id: String,
    /// Always `entry`.
    pub object: &'static str,
    pub account_id: String,
    /// Signed: positive credits, negative debits.
    pub amount: i64,
    pub currency: String,
    /// `available` or `locked`.
    pub bucket: String,
    pub balance_after: i64,
    pub kind: String,
    pub reference: ReferenceView,
    pub created_at: String,
}

impl EntryView {
    pub fn new(entry: &entries::Model, currency: &str) -> EntryView {
        EntryView {
            id: entry.id.clone(),
            object: "entry",
            account_id: entry.account_id.clone(),
            amount: entry.amount,
            currency: currency.to_owned(),
            bucket: entry.bucket.clone(),
            balance_after: entry.balance_after,
            kind: entry.kind.clone(),
            reference: ReferenceView {
                kind: entry.reference_type.clone(),
                id: entry.reference_id.clone(),
            },
            created_at: timestamp(entry.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TransferView {
    pub id: String,
    /// Always `transfer`.
    pub object: &'static str,
    /// `completed`, `failed`, or `pending` while the saga is still in flight.
    pub status: &'static str,
    pub from_user: String,
    pub to_user: String,
    pub amount: i64,
    pub currency: String,
    pub note: Option<String>,
    pub failure_code: Option<String>,
    pub created_at: String,
}

impl From<&TransferRecord> for TransferView {
    fn from(transfer: &TransferRecord) -> TransferView {
        TransferView {
            id: transfer.id.to_string(),
            object: "transfer",
            status: transfer.state.api_status(),
            from_user: transfer.from.to_string(),
            to_user: transfer.to.to_string(),
            amount: transfer.amount.minor_units(),
            currency: transfer.currency.code().to_owned(),
            note: transfer.note.clone(),
            failure_code: transfer.failure_code.map(|code| code.code().to_owned()),
            created_at: timestamp(transfer.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdjustmentView {
    pub id: String,
    /// Always `adjustment`.
    pub object: &'static str,
    pub account_id: String,
    /// Signed: positive credits the account, negative debits it.
    pub amount: i64,
    pub currency: String,
    pub reason: String,
    /// Who made the adjustment.
    pub operator: String,
    pub created_at: String,
}

impl From<&adjustments::Model> for AdjustmentView {
    fn from(adjustment: &adjustments::Model) -> AdjustmentView {
        AdjustmentView {
            id: adjustment.id.clone(),
            object: "adjustment",
            account_id: adjustment.account_id.clone(),
            amount: adjustment.amount,
            currency: adjustment.currency.clone(),
            reason: adjustment.reason.clone(),
            operator: adjustment.operator.clone(),
            created_at: timestamp(adjustment.created_at),
        }
    }
}

impl From<&AdjustmentRecord> for AdjustmentView {
    fn from(adjustment: &AdjustmentRecord) -> AdjustmentView {
        AdjustmentView {
            id: adjustment.id.to_string(),
            object: "adjustment",
            account_id: adjustment.account_id.to_string(),
            amount: adjustment.amount.minor_units(),
            currency: adjustment.currency.code().to_owned(),
            reason: adjustment.reason.clone(),
            operator: adjustment.operator.clone(),
            created_at: timestamp(adjustment.created_at),
        }
    }
}

/// A page of a newest-first list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListView<T: ToSchema> {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<T>,
    pub has_more: bool,
}

impl<T: ToSchema> ListView<T> {
    pub fn new(data: Vec<T>, has_more: bool) -> ListView<T> {
        ListView {
            object: "list",
            data,
            has_more,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateUserRequest {
    pub email: String,
    /// E.164, e.g. `+14155550123`.
    pub phone: String,
    pub name: String,
    /// At least 10 characters.
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateSessionRequest {
    /// Email or E.164 phone.
    pub login: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    /// At least 10 characters (at most 256 bytes), as at sign-up.
    pub new_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateTransferRequest {
    /// Recipient: a user id, email or E.164 phone.
    pub to: String,
    /// Minor units, 1 to 10^12.
    pub amount: i64,
    pub currency: String,
    pub note: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateAdjustmentRequest {
    /// The account to adjust; or give `user_id` to adjust the user's account in `currency`.
    pub account_id: Option<String>,
    pub user_id: Option<String>,
    /// Signed minor units: positive credits, negative debits; magnitude 1 to 10^12.
    pub amount: i64,
    pub currency: String,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OnrampView {
    pub id: String,
    /// Always `onramp`.
    pub object: &'static str,
    /// `bank` or `stripe`.
    pub provider: &'static str,
    /// `processing`, then `succeeded` or `failed`.
    pub status: &'static str,
    pub amount: i64,
    pub currency: String,
    /// Where the user approves the payment (the bank's page, or Stripe Checkout).
    pub redirect_url: Option<String>,
    pub failure_code: Option<String>,
    pub created_at: String,
}

impl From<&crate::store::onramps::OnrampRecord> for OnrampView {
    fn from(onramp: &crate::store::onramps::OnrampRecord) -> OnrampView {
        OnrampView {
            id: onramp.id.to_string(),
            object: "onramp",
            provider: onramp.provider.as_str(),
            status: onramp.status.as_str(),
            amount: onramp.amount.minor_units(),
            currency: onramp.currency.code().to_owned(),
            redirect_url: onramp.redirect_url.clone(),
            failure_code: onramp.failure_code.clone(),
            created_at: timestamp(onramp.created_at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateOnrampRequest {
    /// `bank` or `stripe`.
    pub provider: String,
    /// Minor units, 1 to 10^12.
    pub amount: i64,
    pub currency: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationView {
    pub id: String,
    /// Always `reconciliation`.
    pub object: &'static str,
    /// `clean` or `discrepancies`.
    pub status: String,
    /// `api`, `schedule` or `cli`.
    pub trigger: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: i64,
    /// Discrepancy kind → count.
    #[schema(value_type = Object)]
    pub counts: serde_json::Value,
    pub discrepancy_count: i64,
    /// Each discrepancy: `{kind, reference: {type, id}, detail}` (the first 1000).
    #[schema(value_type = Vec<Object>)]
    pub discrepancies: serde_json::Value,
    pub created_at: String,
}

impl From<&crate::store::reconciliation::ReconciliationRow> for ReconciliationView {
    fn from(row: &crate::store::reconciliation::ReconciliationRow) -> ReconciliationView {
        ReconciliationView {
            id: row.id.clone(),
            object: "reconciliation",
            status: row.status.clone(),
            trigger: row.trigger.clone(),
            started_at: timestamp(row.started_at),
            finished_at: timestamp(row.finished_at),
            duration_ms: row.duration_ms,
            counts: row.counts.clone(),
            discrepancy_count: row.discrepancy_count,
            discrepancies: row.discrepancies.clone(),
            created_at: timestamp(row.started_at),
        }
    }
}

/// Health of one kind of actor.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActorKindView {
    /// Always `actor_kind`.
    pub object: &'static str,
    pub kind: String,
    pub live: i64,
    pub mailbox_depth: i64,
    pub messages_handled: u64,
    pub restarts: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

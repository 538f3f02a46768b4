//! Contact verification and the daily SMS count. A one-time code is stored only as an HMAC
//! (keyed by its row's id); it expires, takes at most `VERIFICATION_ATTEMPTS_MAX` guesses
//! (counted by one conditional update, so concurrent guesses cannot exceed it), and a new code
//! retires the previous one. The SMS count per user and UTC day is one conditional upsert, so
//! the cap holds across restarts and nodes.

use super::entities::{contact_verifications, sms_usage, users};
use super::{Store, StoreResult};
use crate::domain::{ContactChannel, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};

/// Wrong guesses after which a code is dead (a new one must be requested).
pub const VERIFICATION_ATTEMPTS_MAX: i32 = 5;

/// A code to store: its row id, whose contact, and the code's HMAC.
#[derive(Debug, Clone)]
pub struct NewVerification {
    pub id: String,
    pub user: UserId,
    pub channel: ContactChannel,
    pub contact: String,
    pub code_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Stores a new code for the user's contact and retires every earlier one of that channel.
    pub async fn start_verification(&self, verification: &NewVerification) -> StoreResult<()> {
        let transaction = self.writer().begin().await?;
        contact_verifications::Entity::update_many()
            .col_expr(
                contact_verifications::Column::ConsumedAt,
                Expr::value(verification.created_at),
            )
            .filter(contact_verifications::Column::UserId.eq(verification.user.to_string()))
            .filter(contact_verifications::Column::Channel.eq(verification.channel.as_str()))
            .filter(contact_verifications::Column::ConsumedAt.is_null())
            .exec(&transaction)
            .await?;
        contact_verifications::ActiveModel {
            id: Set(verification.id.clone()),
            user_id: Set(verification.user.to_string()),
            channel: Set(verification.channel.as_str().to_owned()),
            contact: Set(verification.contact.clone()),
            code_hash: Set(verification.code_hash.clone()),
            attempts: Set(0),
            expires_at: Set(verification.expires_at),
            consumed_at: Set(None),
            created_at: Set(verification.created_at),
        }
        .insert(&transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// The user's newest code for the channel that can still be guessed: not used, not
    /// retired, not expired and with guesses left.
    pub async fn live_verification(
        &self,
        user: UserId,
        channel: ContactChannel,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<contact_verifications::Model>> {
        Ok(contact_verifications::Entity::find()
            .filter(contact_verifications::Column::UserId.eq(user.to_string()))
            .filter(contact_verifications::Column::Channel.eq(channel.as_str()))
            .filter(contact_verifications::Column::ConsumedAt.is_null())
            .filter(contact_verifications::Column::ExpiresAt.gt(now))
            .filter(contact_verifications::Column::Attempts.lt(VERIFICATION_ATTEMPTS_MAX))
            .order_by_desc(contact_verifications::Column::Id)
            .one(self.writer())
            .await?)
    }

    /// Spends one guess on the code; `false` when it has none left (or was used meanwhile).
    /// Counted before the code is compared, so concurrent guesses cannot pass the bound.
    pub async fn spend_verification_attempt(&self, id: &str) -> StoreResult<bool> {
        let updated = contact_verifications::Entity::update_many()
            .col_expr(
                contact_verifications::Column::Attempts,
                Expr::col(contact_verifications::Column::Attempts).add(1),
            )
            .filter(contact_verifications::Column::Id.eq(id))
            .filter(contact_verifications::Column::ConsumedAt.is_null())
            .filter(contact_verifications::Column::Attempts.lt(VERIFICATION_ATTEMPTS_MAX))
            .exec(self.writer())
            .await?;
        Ok(updated.rows_affected == 1)
    }

    /// Uses the code and marks the user's contact verified, in one transaction, if the code is
    /// still unused and the contact is still the one it was sent to. Then the recipient cache
    /// forgets the user, so a transfer to the contact sees it verified at once on this node.
    pub async fn complete_verification(
        &self,
        verification: &contact_verifications::Model,
        user: UserId,
        channel: ContactChannel,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let transaction = self.writer().begin().await?;
        let used = contact_verifications::Entity::update_many()
            .col_expr(contact_verifications::Column::ConsumedAt, Expr::value(now))
            .filter(contact_verifications::Column::Id.eq(verification.id.clone()))
            .filter(contact_verifications::Column::ConsumedAt.is_null())
            .exec(&transaction)
            .await?;
        if used.rows_affected != 1 {
            return Ok(false);
        }
        let (verified_at, contact) = match channel {
            ContactChannel::Email => (users::Column::EmailVerifiedAt, users::Column::Email),
            ContactChannel::Phone => (users::Column::PhoneVerifiedAt, users::Column::Phone),
        };
        let marked = users::Entity::update_many()
            .col_expr(verified_at, Expr::value(now))
            .filter(users::Column::Id.eq(user.to_string()))
            .filter(contact.eq(verification.contact.clone()))
            .exec(&transaction)
            .await?;
        if marked.rows_affected != 1 {
            return Ok(false);
        }
        transaction.commit().await?;
        self.caches().evict_user(user);
        Ok(true)
    }

    /// Counts one SMS to the user on `day` (UTC, `YYYY-MM-DD`) if fewer than `cap` were sent
    /// that day; `false` (nothing counted) when the cap is reached.
    pub async fn reserve_sms(&self, user: UserId, day: &str, cap: u32) -> StoreResult<bool> {
        let Ok(cap) = i32::try_from(cap) else {
            return Ok(true);
        };
        if cap == 0 {
            return Ok(false);
        }
        let sent = Expr::col((sms_usage::Entity, sms_usage::Column::Sent));
        let counted = sms_usage::Entity::insert(sms_usage::ActiveModel {
            user_id: Set(user.to_string()),
            day: Set(day.to_owned()),
            sent: Set(1),
        })
        .on_conflict(
            OnConflict::columns([sms_usage::Column::UserId, sms_usage::Column::Day])
                .value(sms_usage::Column::Sent, sent.clone().add(1))
                .action_and_where(sent.lt(cap))
                .to_owned(),
        )
        .exec_without_returning(self.writer())
        .await?;
        Ok(counted == 1)
    }
}

//! Users and their login sessions. A new user and their first wallet account are created in
//! one transaction; session tokens are stored only as SHA-256 hashes.

use super::accounts::{PageRequest, fetch_page};
use super::entities::{accounts, sessions, users};
use super::{Store, StoreError, StoreResult, is_unique_violation};
use crate::domain::{AccountId, Currency, Email, PhoneNumber, SessionId, UserId};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QuerySelect,
    TransactionTrait,
};

#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub email: Email,
    pub phone: PhoneNumber,
    pub name: String,
    pub password_hash: String,
    pub default_currency: Currency,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserConflict {
    EmailTaken,
    PhoneTaken,
}

impl Store {
    /// Creates the user and their wallet account in the default currency.
    pub async fn create_user(
        &self,
        user: &NewUser,
    ) -> StoreResult<Result<users::Model, UserConflict>> {
        if let Some(conflict) = self.find_user_conflict(&user.email, &user.phone).await? {
            return Ok(Err(conflict));
        }
        let transaction = self.writer().begin().await?;
        let inserted = users::ActiveModel {
            id: Set(user.id.to_string()),
            email: Set(user.email.as_str().to_owned()),
            phone: Set(user.phone.as_str().to_owned()),
            name: Set(user.name.clone()),
            password_hash: Set(user.password_hash.clone()),
            created_at: Set(user.created_at),
            email_verified_at: Set(None),
            phone_verified_at: Set(None),
        }
        .insert(&transaction)
        .await;
        let model = match inserted {
            Ok(model) => model,
            // Lost a race with a concurrent sign-up: report which field collided.
            Err(error) if is_unique_violation(&error) => {
                drop(transaction);
                let conflict = self.find_user_conflict(&user.email, &user.phone).await?;
                return Ok(Err(conflict.unwrap_or(UserConflict::EmailTaken)));
            }
            Err(error) => return Err(error.into()),
        };
        accounts::ActiveModel {
            id: Set(AccountId::generate().to_string()),
            owner_type: Set("user".to_owned()),
            owner_id: Set(model.id.clone()),
            currency: Set(user.default_currency.code().to_owned()),
            available: Set(0),
            locked: Set(0),
            version: Set(0),
            created_at: Set(user.created_at),
        }
        .insert(&transaction)
        .await?;
        transaction.commit().await?;
        Ok(Ok(model))
    }

    async fn find_user_conflict(
        &self,
        email: &Email,
        phone: &PhoneNumber,
    ) -> StoreResult<Option<UserConflict>> {
        if self.find_user_by_email(email).await?.is_some() {
            return Ok(Some(UserConflict::EmailTaken));
        }
        if self.find_user_by_phone(phone).await?.is_some() {
            return Ok(Some(UserConflict::PhoneTaken));
        }
        Ok(None)
    }

    pub async fn find_user(&self, id: UserId) -> StoreResult<Option<users::Model>> {
        Ok(users::Entity::find_by_id(id.to_string())
            .one(self.reader())
            .await?)
    }

    pub async fn find_user_by_email(&self, email: &Email) -> StoreResult<Option<users::Model>> {
        Ok(users::Entity::find()
            .filter(users::Column::Email.eq(email.as_str()))
            .one(self.reader())
            .await?)
    }

    pub async fn find_user_by_phone(
        &self,
        phone: &PhoneNumber,
    ) -> StoreResult<Option<users::Model>> {
        Ok(users::Entity::find()
            .filter(users::Column::Phone.eq(phone.as_str()))
            .one(self.reader())
            .await?)
    }

    /// The user a transfer's `to` names (a user id, an email or an E.164 phone), from the
    /// node's cache when it can (a user's id behind an id, email or phone never changes).
    /// With `require_verified`, an email or phone names only a user who verified it.
    pub async fn resolve_user(
        &self,
        to: &str,
        require_verified: bool,
    ) -> StoreResult<Option<UserId>> {
        use super::cache::CachedRecipient;
        let key = to.to_owned();
        if let Some(cached) = self.caches().users.get(&key)
            && cached.is_usable(require_verified)
        {
            return Ok((cached.verified || !require_verified).then_some(cached.user));
        }
        let generation = self.caches().users.generation();
        let (user, verified) = if let Ok(id) = to.parse::<UserId>() {
            (self.find_user(id).await?, true)
        } else if to.starts_with('+') {
            let user = match PhoneNumber::parse(to) {
                Ok(phone) => self.find_user_by_phone(&phone).await?,
                Err(_) => None,
            };
            let verified = user
                .as_ref()
                .is_some_and(|user| user.phone_verified_at.is_some());
            (user, verified)
        } else {
            let user = match Email::parse(to) {
                Ok(email) => self.find_user_by_email(&email).await?,
                Err(_) => None,
            };
            let verified = user
                .as_ref()
                .is_some_and(|user| user.email_verified_at.is_some());
            (user, verified)
        };
        let Some(user) = user else {
            return Ok(None);
        };
        let id: UserId = user
            .id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("user id {}", user.id)))?;
        // Unless a verification evicted the user meanwhile (then this read may be stale).
        self.caches().users.insert_unless_changed(
            key,
            CachedRecipient {
                user: id,
                verified,
                cached_at: std::time::Instant::now(),
            },
            generation,
        );
        Ok((verified || !require_verified).then_some(id))
    }

    /// Creates the session and, in the same transaction, the `session.created` event that
    /// tells the user about the new login.
    pub async fn create_session(
        &self,
        user_id: UserId,
        token_hash: String,
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<sessions::Model> {
        let transaction = self.writer().begin().await?;
        let session = sessions::ActiveModel {
            id: Set(SessionId::generate().to_string()),
            token_hash: Set(token_hash),
            user_id: Set(user_id.to_string()),
            expires_at: Set(expires_at),
            revoked_at: Set(None),
            created_at: Set(created_at),
        }
        .insert(&transaction)
        .await?;
        let data = serde_json::json!({"session_id": session.id, "user_id": session.user_id});
        super::ledger::insert_event(
            &transaction,
            "session.created",
            "session",
            &session.id,
            data,
            created_at,
        )
        .await?;
        transaction.commit().await?;
        Ok(session)
    }

    /// The session with this token hash, if it exists, is not revoked and has not expired.
    pub async fn find_live_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<sessions::Model>> {
        let session = sessions::Entity::find()
            .filter(sessions::Column::TokenHash.eq(token_hash))
            .one(self.reader())
            .await?;
        Ok(session.filter(|session| session.revoked_at.is_none() && session.expires_at > now))
    }

    /// The user and session behind a live session token (by its hash): from the node's cache
    /// when it holds it, else from the database (and then cached).
    pub async fn authenticate_user(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(UserId, SessionId)>> {
        use super::cache::{CachedCredential, CredentialOwner};
        let credentials = &self.caches().credentials;
        if let Some(cached) = credentials.get(&token_hash.to_owned())
            && cached.is_usable(now)
        {
            return Ok(match cached.owner {
                CredentialOwner::UserSession { user, session } => Some((user, session)),
                _ => None,
            });
        }
        let generation = credentials.generation();
        let Some(session) = self.find_live_session(token_hash, now).await? else {
            return Ok(None);
        };
        let corrupt = |what: &str| StoreError::Corrupt(format!("session {}: {what}", session.id));
        let user: UserId = session.user_id.parse().map_err(|_| corrupt("user id"))?;
        let id: SessionId = session.id.parse().map_err(|_| corrupt("id"))?;
        credentials.insert_unless_changed(
            token_hash.to_owned(),
            CachedCredential {
                owner: CredentialOwner::UserSession { user, session: id },
                expires_at: Some(session.expires_at),
                cached_at: std::time::Instant::now(),
            },
            generation,
        );
        Ok(Some((user, id)))
    }

    /// Revokes the session; it stops working at once on this node (its cache entry goes
    /// before this returns) and, with Redis, on every node.
    pub async fn revoke_session(&self, id: SessionId, now: DateTime<Utc>) -> StoreResult<()> {
        let updated = sessions::Entity::update_many()
            .col_expr(
                sessions::Column::RevokedAt,
                sea_orm::sea_query::Expr::value(now),
            )
            .filter(sessions::Column::Id.eq(id.to_string()))
            .filter(sessions::Column::RevokedAt.is_null())
            .exec(self.writer())
            .await?;
        self.caches().evict_credential(&id.to_string());
        if updated.rows_affected > 1 {
            return Err(StoreError::Corrupt(format!("session {id} is not unique")));
        }
        Ok(())
    }
}

impl Store {
    /// Users newest first: all of them, or only `only`.
    pub async fn list_users(
        &self,
        only: Option<UserId>,
        page: &PageRequest,
    ) -> StoreResult<(Vec<users::Model>, bool)> {
        let mut select = users::Entity::find();
        if let Some(user) = only {
            select = select.filter(users::Column::Id.eq(user.to_string()));
        }
        fetch_page(select, users::Column::Id, page, self.reader()).await
    }

    pub async fn find_session(&self, id: SessionId) -> StoreResult<Option<sessions::Model>> {
        Ok(sessions::Entity::find_by_id(id.to_string())
            .one(self.reader())
            .await?)
    }

    /// The user's live sessions (neither revoked nor expired), newest first: the ones that
    /// can act as the user now.
    pub async fn list_sessions(
        &self,
        user: UserId,
        now: DateTime<Utc>,
        page: &PageRequest,
    ) -> StoreResult<(Vec<sessions::Model>, bool)> {
        let select = sessions::Entity::find()
            .filter(sessions::Column::UserId.eq(user.to_string()))
            .filter(sessions::Column::RevokedAt.is_null())
            .filter(sessions::Column::ExpiresAt.gt(now));
        fetch_page(select, sessions::Column::Id, page, self.writer()).await
    }

    /// Revokes every live session of the user except `keep` (none: log out everywhere). Each
    /// revoked session stops working at once: its cache entry goes before this returns, here
    /// and (announced by id, with Redis) on every node.
    pub async fn revoke_user_sessions(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut update = sessions::Entity::update_many()
            .col_expr(
                sessions::Column::RevokedAt,
                sea_orm::sea_query::Expr::value(now),
            )
            .filter(sessions::Column::UserId.eq(user.to_string()))
            .filter(sessions::Column::RevokedAt.is_null());
        if let Some(keep) = keep {
            update = update.filter(sessions::Column::Id.ne(keep.to_string()));
        }
        update.exec(self.writer()).await?;
        // Every revoked session that has not expired yet could still sit in a cache: evict
        // them all (a superset of what this call revoked, so none is missed).
        let mut revoked = sessions::Entity::find()
            .select_only()
            .column(sessions::Column::Id)
            .filter(sessions::Column::UserId.eq(user.to_string()))
            .filter(sessions::Column::RevokedAt.is_not_null())
            .filter(sessions::Column::ExpiresAt.gt(now));
        if let Some(keep) = keep {
            revoked = revoked.filter(sessions::Column::Id.ne(keep.to_string()));
        }
        let revoked: Vec<String> = revoked.into_tuple().all(self.writer()).await?;
        self.caches().evict_credentials(&revoked);
        Ok(())
    }

    /// Replaces the user's password hash (the caller revokes their other sessions).
    pub async fn set_user_password(&self, user: UserId, password_hash: String) -> StoreResult<()> {
        let updated = users::Entity::update_many()
            .col_expr(
                users::Column::PasswordHash,
                sea_orm::sea_query::Expr::value(password_hash),
            )
            .filter(users::Column::Id.eq(user.to_string()))
            .exec(self.writer())
            .await?;
        if updated.rows_affected != 1 {
            return Err(StoreError::Corrupt(format!(
                "user {user}: {} rows for one password",
                updated.rows_affected
            )));
        }
        Ok(())
    }
}

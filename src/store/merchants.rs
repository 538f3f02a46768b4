//! Merchants, their login sessions and their secret API keys. A new merchant and its first
//! wallet account are created in one transaction; session tokens and API key secrets are
//! stored only as SHA-256 hashes.

use super::accounts::{PageRequest, fetch_page};
use super::entities::{accounts, api_keys, merchant_sessions, merchants};
use super::{Store, StoreError, StoreResult, is_unique_violation};
use crate::domain::{AccountId, ApiKeyId, Currency, Email, MerchantId, SessionId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QuerySelect,
    TransactionTrait,
};

#[derive(Debug, Clone)]
pub struct NewMerchant {
    pub id: MerchantId,
    pub name: String,
    pub email: Email,
    pub password_hash: String,
    pub default_currency: Currency,
    pub created_at: DateTime<Utc>,
}

/// Who a merchant credential belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MerchantCredential {
    Session(SessionId),
    ApiKey(ApiKeyId, ApiKeyScope),
}

/// What a secret API key may do: everything a merchant can do with a key (`full`), or only
/// payment intents (`payments`: create, read, list, capture, cancel) — the key a checkout
/// server holds, which cannot refund, pay out, read balances or manage webhook endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiKeyScope {
    #[default]
    Full,
    Payments,
}

impl ApiKeyScope {
    pub fn parse(text: &str) -> Option<ApiKeyScope> {
        match text {
            "full" => Some(ApiKeyScope::Full),
            "payments" => Some(ApiKeyScope::Payments),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApiKeyScope::Full => "full",
            ApiKeyScope::Payments => "payments",
        }
    }
}

/// How long an API key's `last_used_at` may lag behind its real last use (saves a write per
/// request).
const LAST_USED_GRANULARITY_SECONDS: i64 = 60;

impl Store {
    /// Creates the merchant and its wallet account in the default currency; `None` if the
    /// email is taken.
    pub async fn create_merchant(
        &self,
        merchant: &NewMerchant,
    ) -> StoreResult<Option<merchants::Model>> {
        if self
            .find_merchant_by_email(&merchant.email)
            .await?
            .is_some()
        {
            return Ok(None);
        }
        let transaction = self.writer().begin().await?;
        let inserted = merchants::ActiveModel {
            id: Set(merchant.id.to_string()),
            name: Set(merchant.name.clone()),
            email: Set(merchant.email.as_str().to_owned()),
            password_hash: Set(merchant.password_hash.clone()),
            created_at: Set(merchant.created_at),
        }
        .insert(&transaction)
        .await;
        let model = match inserted {
            Ok(model) => model,
            Err(error) if is_unique_violation(&error) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        accounts::ActiveModel {
            id: Set(AccountId::generate().to_string()),
            owner_type: Set("merchant".to_owned()),
            owner_id: Set(model.id.clone()),
            currency: Set(merchant.default_currency.code().to_owned()),
            available: Set(0),
            locked: Set(0),
            version: Set(0),
            created_at: Set(merchant.created_at),
        }
        .insert(&transaction)
        .await?;
        transaction.commit().await?;
        Ok(Some(model))
    }

    pub async fn find_merchant(&self, id: MerchantId) -> StoreResult<Option<merchants::Model>> {
        Ok(merchants::Entity::find_by_id(id.to_string())
            .one(self.reader())
            .await?)
    }

    pub async fn find_merchant_by_email(
        &self,
        email: &Email,
    ) -> StoreResult<Option<merchants::Model>> {
        Ok(merchants::Entity::find()
            .filter(merchants::Column::Email.eq(email.as_str()))
            .one(self.reader())
            .await?)
    }

    pub async fn create_merchant_session(
        &self,
        merchant: MerchantId,
        token_hash: String,
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<merchant_sessions::Model> {
        Ok(merchant_sessions::ActiveModel {
            id: Set(SessionId::generate().to_string()),
            token_hash: Set(token_hash),
            merchant_id: Set(merchant.to_string()),
            expires_at: Set(expires_at),
            revoked_at: Set(None),
            created_at: Set(created_at),
        }
        .insert(self.writer())
        .await?)
    }

    pub async fn revoke_merchant_session(
        &self,
        id: SessionId,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        merchant_sessions::Entity::update_many()
            .col_expr(merchant_sessions::Column::RevokedAt, Expr::value(now))
            .filter(merchant_sessions::Column::Id.eq(id.to_string()))
            .filter(merchant_sessions::Column::RevokedAt.is_null())
            .exec(self.writer())
            .await?;
        self.caches().evict_credential(&id.to_string());
        Ok(())
    }

    pub async fn find_merchant_session(
        &self,
        id: SessionId,
    ) -> StoreResult<Option<merchant_sessions::Model>> {
        Ok(merchant_sessions::Entity::find_by_id(id.to_string())
            .one(self.writer())
            .await?)
    }

    /// The merchant's live sessions (neither revoked nor expired), newest first.
    pub async fn list_merchant_sessions(
        &self,
        merchant: MerchantId,
        now: DateTime<Utc>,
        page: &PageRequest,
    ) -> StoreResult<(Vec<merchant_sessions::Model>, bool)> {
        let select = merchant_sessions::Entity::find()
            .filter(merchant_sessions::Column::MerchantId.eq(merchant.to_string()))
            .filter(merchant_sessions::Column::RevokedAt.is_null())
            .filter(merchant_sessions::Column::ExpiresAt.gt(now));
        fetch_page(select, merchant_sessions::Column::Id, page, self.writer()).await
    }

    /// Revokes every live session of the merchant except `keep` (none: log out everywhere);
    /// API keys are not sessions and stay. Each revoked session stops working at once: its
    /// cache entry goes before this returns, here and (announced by id) on every node.
    pub async fn revoke_merchant_sessions(
        &self,
        merchant: MerchantId,
        keep: Option<SessionId>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut update = merchant_sessions::Entity::update_many()
            .col_expr(merchant_sessions::Column::RevokedAt, Expr::value(now))
            .filter(merchant_sessions::Column::MerchantId.eq(merchant.to_string()))
            .filter(merchant_sessions::Column::RevokedAt.is_null());
        if let Some(keep) = keep {
            update = update.filter(merchant_sessions::Column::Id.ne(keep.to_string()));
        }
        update.exec(self.writer()).await?;
        // Every revoked, unexpired session could still sit in a cache: evict them all (a
        // superset of what this call revoked, so none is missed).
        let mut revoked = merchant_sessions::Entity::find()
            .select_only()
            .column(merchant_sessions::Column::Id)
            .filter(merchant_sessions::Column::MerchantId.eq(merchant.to_string()))
            .filter(merchant_sessions::Column::RevokedAt.is_not_null())
            .filter(merchant_sessions::Column::ExpiresAt.gt(now));
        if let Some(keep) = keep {
            revoked = revoked.filter(merchant_sessions::Column::Id.ne(keep.to_string()));
        }
        let revoked: Vec<String> = revoked.into_tuple().all(self.writer()).await?;
        self.caches().evict_credentials(&revoked);
        Ok(())
    }

    /// Replaces the merchant's password hash (the caller revokes its other sessions).
    pub async fn set_merchant_password(
        &self,
        merchant: MerchantId,
        password_hash: String,
    ) -> StoreResult<()> {
        let updated = merchants::Entity::update_many()
            .col_expr(merchants::Column::PasswordHash, Expr::value(password_hash))
            .filter(merchants::Column::Id.eq(merchant.to_string()))
            .exec(self.writer())
            .await?;
        if updated.rows_affected != 1 {
            return Err(StoreError::Corrupt(format!(
                "merchant {merchant}: {} rows for one password",
                updated.rows_affected
            )));
        }
        Ok(())
    }

    /// The merchant a live session token or unrevoked API key (by hash) belongs to: from the
    /// node's cache when it holds it, else from the database (and then cached).
    pub async fn authenticate_merchant(
        &self,
        token_hash: &str,
        is_api_key: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(MerchantId, MerchantCredential)>> {
        use super::cache::{CachedCredential, CredentialOwner};
        let credentials = &self.caches().credentials;
        if let Some(cached) = credentials.get(&token_hash.to_owned())
            && cached.is_usable(now)
        {
            return Ok(match cached.owner {
                CredentialOwner::MerchantSession { merchant, session } => {
                    Some((merchant, MerchantCredential::Session(session)))
                }
                CredentialOwner::ApiKey {
                    merchant,
                    key,
                    scope,
                } => Some((merchant, MerchantCredential::ApiKey(key, scope))),
                CredentialOwner::UserSession { .. } => None,
            });
        }
        let generation = credentials.generation();
        let Some((found, expires_at)) = self
            .authenticate_merchant_uncached(token_hash, is_api_key, now)
            .await?
        else {
            return Ok(None);
        };
        let owner = match found.1 {
            MerchantCredential::Session(session) => CredentialOwner::MerchantSession {
                merchant: found.0,
                session,
            },
            MerchantCredential::ApiKey(key, scope) => CredentialOwner::ApiKey {
                merchant: found.0,
                key,
                scope,
            },
        };
        credentials.insert_unless_changed(
            token_hash.to_owned(),
            CachedCredential {
                owner,
                expires_at,
                cached_at: std::time::Instant::now(),
            },
            generation,
        );
        Ok(Some(found))
    }

    /// `authenticate_merchant` from the database, with the credential's expiry. Using an API
    /// key records when it was last used (at most once a minute).
    async fn authenticate_merchant_uncached(
        &self,
        token_hash: &str,
        is_api_key: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<((MerchantId, MerchantCredential), Option<DateTime<Utc>>)>> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("merchant credential {what}"));
        if is_api_key {
            let Some(key) = api_keys::Entity::find()
                .filter(api_keys::Column::SecretHash.eq(token_hash))
                .one(self.reader())
                .await?
                .filter(|key| key.revoked_at.is_none())
            else {
                return Ok(None);
            };
            let stale = key
                .last_used_at
                .is_none_or(|used| (now - used).num_seconds() >= LAST_USED_GRANULARITY_SECONDS);
            if stale {
                api_keys::Entity::update_many()
                    .col_expr(api_keys::Column::LastUsedAt, Expr::value(now))
                    .filter(api_keys::Column::Id.eq(key.id.clone()))
                    .exec(self.writer())
                    .await?;
            }
            let merchant = key.merchant_id.parse().map_err(|_| corrupt("merchant"))?;
            let id = key.id.parse().map_err(|_| corrupt("key id"))?;
            let scope = ApiKeyScope::parse(&key.scope).ok_or_else(|| corrupt("key scope"))?;
            return Ok(Some((
                (merchant, MerchantCredential::ApiKey(id, scope)),
                None,
            )));
        }
        let Some(session) = merchant_sessions::Entity::find()
            .filter(merchant_sessions::Column::TokenHash.eq(token_hash))
            .one(self.reader())
            .await?
            .filter(|session| session.revoked_at.is_none() && session.expires_at > now)
        else {
            return Ok(None);
        };
        let merchant = session
            .merchant_id
            .parse()
            .map_err(|_| corrupt("merchant"))?;
        let id = session.id.parse().map_err(|_| corrupt("session id"))?;
        Ok(Some((
            (merchant, MerchantCredential::Session(id)),
            Some(session.expires_at),
        )))
    }

    pub async fn create_api_key(
        &self,
        merchant: MerchantId,
        secret_hash: String,
        redacted: String,
        name: Option<String>,
        scope: ApiKeyScope,
        now: DateTime<Utc>,
    ) -> StoreResult<api_keys::Model> {
        Ok(api_keys::ActiveModel {
            id: Set(ApiKeyId::generate().to_string()),
            merchant_id: Set(merchant.to_string()),
            secret_hash: Set(secret_hash),
            redacted: Set(redacted),
            name: Set(name),
            created_at: Set(now),
            last_used_at: Set(None),
            revoked_at: Set(None),
            scope: Set(scope.as_str().to_owned()),
        }
        .insert(self.writer())
        .await?)
    }

    pub async fn find_api_key(&self, id: ApiKeyId) -> StoreResult<Option<api_keys::Model>> {
        Ok(api_keys::Entity::find_by_id(id.to_string())
            .one(self.writer())
            .await?)
    }

    pub async fn list_api_keys(
        &self,
        merchant: MerchantId,
        page: &PageRequest,
    ) -> StoreResult<(Vec<api_keys::Model>, bool)> {
        let select =
            api_keys::Entity::find().filter(api_keys::Column::MerchantId.eq(merchant.to_string()));
        fetch_page(select, api_keys::Column::Id, page, self.reader()).await
    }

    /// Revokes the key; it stops working at once. Revoking twice changes nothing.
    pub async fn revoke_api_key(&self, id: ApiKeyId, now: DateTime<Utc>) -> StoreResult<()> {
        api_keys::Entity::update_many()
            .col_expr(api_keys::Column::RevokedAt, Expr::value(now))
            .filter(api_keys::Column::Id.eq(id.to_string()))
            .filter(api_keys::Column::RevokedAt.is_null())
            .exec(self.writer())
            .await?;
        self.caches().evict_credential(&id.to_string());
        Ok(())
    }
}

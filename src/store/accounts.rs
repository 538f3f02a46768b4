//! Ledger accounts and their entries: loading an account for its wallet, opening a
//! user's account in a currency on first use, the per-currency system accounts, and the
//! newest-first pages of entries shown to users.

use super::entities::{accounts, entries};
use super::{Store, StoreError, StoreResult};
use crate::domain::{AccountId, Balance, Currency, MerchantId, Solvency, UserId};
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Select,
};
use std::collections::HashSet;

/// The accounts that mirror money outside the platform, one per currency. They may go negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemAccount {
    /// Counterpart of operator adjustments.
    Adjustments,
    /// Money received from the bank on-ramp.
    BankClearing,
    /// Money received through Stripe Checkout.
    StripeClearing,
    /// Money paid out to bank accounts.
    PayoutClearing,
    /// Fees earned by the platform.
    Fees,
}

impl SystemAccount {
    pub const ALL: [SystemAccount; 5] = [
        SystemAccount::Adjustments,
        SystemAccount::BankClearing,
        SystemAccount::StripeClearing,
        SystemAccount::PayoutClearing,
        SystemAccount::Fees,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SystemAccount::Adjustments => "adjustments",
            SystemAccount::BankClearing => "bank_clearing",
            SystemAccount::StripeClearing => "stripe_clearing",
            SystemAccount::PayoutClearing => "payout_clearing",
            SystemAccount::Fees => "fees",
        }
    }
}

/// Who owns an account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    User(UserId),
    Merchant(MerchantId),
    System(SystemAccount),
}

impl From<super::transfers::Party> for Owner {
    fn from(party: super::transfers::Party) -> Owner {
        match party {
            super::transfers::Party::User(user) => Owner::User(user),
            super::transfers::Party::Merchant(merchant) => Owner::Merchant(merchant),
        }
    }
}

impl Owner {
    fn columns(&self) -> (&'static str, String) {
        match self {
            Owner::User(user) => ("user", user.to_string()),
            Owner::Merchant(merchant) => ("merchant", merchant.to_string()),
            Owner::System(system) => ("system", system.name().to_owned()),
        }
    }
}

/// An account as its wallet sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub id: AccountId,
    pub owner_type: String,
    pub owner_id: String,
    pub currency: Currency,
    pub balance: Balance,
    pub version: i64,
    pub created_at: chrono::DateTime<Utc>,
}

impl AccountRecord {
    pub fn solvency(&self) -> Solvency {
        if self.owner_type == "system" {
            Solvency::MayGoNegative
        } else {
            Solvency::NonNegative
        }
    }
}

impl TryFrom<accounts::Model> for AccountRecord {
    type Error = StoreError;

    fn try_from(model: accounts::Model) -> StoreResult<AccountRecord> {
        let id = model
            .id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("account id {}", model.id)))?;
        let currency = Currency::parse(&model.currency)
            .map_err(|_| StoreError::Corrupt(format!("account {} currency", model.id)))?;
        Ok(AccountRecord {
            id,
            owner_type: model.owner_type,
            owner_id: model.owner_id,
            currency,
            balance: Balance::new(model.available, model.locked),
            version: model.version,
            created_at: model.created_at,
        })
    }
}

/// Which slice of a newest-first list to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u64,
    pub cursor: Option<Cursor>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    StartingAfter(String),
    EndingBefore(String),
}

/// Fetches one page of `select`, newest first by the time-ordered `id_column`.
/// Returns the rows and whether more exist beyond them in the direction of travel.
pub async fn fetch_page<E, C>(
    select: Select<E>,
    id_column: E::Column,
    page: &PageRequest,
    connection: &C,
) -> StoreResult<(Vec<E::Model>, bool)>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    let (select, newest_first) = match &page.cursor {
        None => (select.order_by_desc(id_column), true),
        Some(Cursor::StartingAfter(id)) => (
            select
                .filter(id_column.lt(id.as_str()))
                .order_by_desc(id_column),
            true,
        ),
        Some(Cursor::EndingBefore(id)) => (
            select
                .filter(id_column.gt(id.as_str()))
                .order_by_asc(id_column),
            false,
        ),
    };
    let mut rows = select.limit(page.limit + 1).all(connection).await?;
    let has_more = rows.len() as u64 > page.limit;
    rows.truncate(page.limit as usize);
    if !newest_first {
        rows.reverse();
    }
    Ok((rows, has_more))
}

fn select_account(owner: &Owner, currency: Currency) -> Select<accounts::Entity> {
    let (owner_type, owner_id) = owner.columns();
    accounts::Entity::find()
        .filter(accounts::Column::OwnerType.eq(owner_type))
        .filter(accounts::Column::OwnerId.eq(owner_id))
        .filter(accounts::Column::Currency.eq(currency.code()))
}

impl Store {
    pub async fn load_account(&self, id: AccountId) -> StoreResult<Option<AccountRecord>> {
        // Read through the writer: a wallet must see its own last commit.
        accounts::Entity::find_by_id(id.to_string())
            .one(self.writer())
            .await?
            .map(AccountRecord::try_from)
            .transpose()
    }

    pub async fn find_account(
        &self,
        owner: &Owner,
        currency: Currency,
    ) -> StoreResult<Option<AccountRecord>> {
        select_account(owner, currency)
            .one(self.reader())
            .await?
            .map(AccountRecord::try_from)
            .transpose()
    }

    /// The id of the owner's account in `currency`, if it has one: from the node's cache (an
    /// account's id never changes) or the database.
    pub async fn account_id(
        &self,
        owner: &Owner,
        currency: Currency,
    ) -> StoreResult<Option<AccountId>> {
        let key = (owner.clone(), currency);
        if let Some(id) = self.caches().accounts.get(&key) {
            return Ok(Some(id));
        }
        let Some(account) = self.find_account(owner, currency).await? else {
            return Ok(None);
        };
        self.caches().accounts.insert(key, account.id);
        Ok(Some(account.id))
    }

    /// `account_id`, opening the account (empty) if it does not exist yet.
    pub async fn open_account_id(
        &self,
        owner: &Owner,
        currency: Currency,
    ) -> StoreResult<AccountId> {
        if let Some(id) = self.account_id(owner, currency).await? {
            return Ok(id);
        }
        let account = self.open_account(owner, currency).await?;
        self.caches()
            .accounts
            .insert((owner.clone(), currency), account.id);
        Ok(account.id)
    }

    /// The owner's account in `currency`, opened (empty) if it does not exist yet.
    pub async fn open_account(
        &self,
        owner: &Owner,
        currency: Currency,
    ) -> StoreResult<AccountRecord> {
        if let Some(account) = self.find_account(owner, currency).await? {
            return Ok(account);
        }
        let (owner_type, owner_id) = owner.columns();
        let insert = accounts::Entity::insert(accounts::ActiveModel {
            id: Set(AccountId::generate().to_string()),
            owner_type: Set(owner_type.to_owned()),
            owner_id: Set(owner_id),
            currency: Set(currency.code().to_owned()),
            available: Set(0),
            locked: Set(0),
            version: Set(0),
            created_at: Set(Utc::now()),
        })
        .on_conflict_do_nothing_on([
            accounts::Column::OwnerType,
            accounts::Column::OwnerId,
            accounts::Column::Currency,
        ]);
        insert.exec_without_returning(self.writer()).await?;
        // Read back through the writer so a reader pool lagging behind cannot miss it.
        select_account(owner, currency)
            .one(self.writer())
            .await?
            .ok_or_else(|| StoreError::Corrupt("account vanished after opening".into()))
            .and_then(AccountRecord::try_from)
    }

    pub async fn list_accounts(&self, owner: &Owner) -> StoreResult<Vec<AccountRecord>> {
        let (owner_type, owner_id) = owner.columns();
        accounts::Entity::find()
            .filter(accounts::Column::OwnerType.eq(owner_type))
            .filter(accounts::Column::OwnerId.eq(owner_id))
            .order_by_asc(accounts::Column::Currency)
            .all(self.reader())
            .await?
            .into_iter()
            .map(AccountRecord::try_from)
            .collect()
    }

    /// Opens every system account for every supported currency (idempotent; run at start-up).
    pub async fn ensure_system_accounts(&self) -> StoreResult<()> {
        for system in SystemAccount::ALL {
            for currency in Currency::all() {
                self.open_account(&Owner::System(system), currency).await?;
            }
        }
        Ok(())
    }

    pub async fn list_entries(
        &self,
        account_ids: &[AccountId],
        page: &PageRequest,
    ) -> StoreResult<(Vec<entries::Model>, bool)> {
        let ids: Vec<String> = account_ids.iter().map(ToString::to_string).collect();
        let select = entries::Entity::find().filter(entries::Column::AccountId.is_in(ids));
        fetch_page(select, entries::Column::Id, page, self.reader()).await
    }

    /// The newest `limit` entries of `account` created at or after `since`, oldest first
    /// (what the web apps' charts are drawn from).
    pub async fn entries_since(
        &self,
        account: AccountId,
        since: chrono::DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<Vec<entries::Model>> {
        let mut rows = entries::Entity::find()
            .filter(entries::Column::AccountId.eq(account.to_string()))
            .filter(entries::Column::CreatedAt.gte(since))
            .order_by_desc(entries::Column::Id)
            .limit(limit)
            .all(self.reader())
            .await?;
        rows.reverse();
        Ok(rows)
    }

    /// The account's current version, read through the writer.
    pub async fn account_version(&self, id: AccountId) -> StoreResult<Option<i64>> {
        Ok(accounts::Entity::find_by_id(id.to_string())
            .select_only()
            .column(accounts::Column::Version)
            .into_tuple()
            .one(self.writer())
            .await?)
    }

    /// Which of `op_keys` already have an entry on `account` (the ops were applied before).
    pub async fn existing_op_keys(
        &self,
        account: AccountId,
        op_keys: &[&str],
    ) -> StoreResult<HashSet<String>> {
        if op_keys.is_empty() {
            return Ok(HashSet::new());
        }
        let rows: Vec<String> = entries::Entity::find()
            .select_only()
            .column(entries::Column::OpKey)
            .filter(entries::Column::AccountId.eq(account.to_string()))
            .filter(entries::Column::OpKey.is_in(op_keys.iter().copied()))
            .into_tuple()
            .all(self.writer())
            .await?;
        Ok(rows.into_iter().collect())
    }
}

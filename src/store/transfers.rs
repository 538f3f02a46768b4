//! Transfer saga records: the typed `TransferRecord`, reading one or a page of a user's
//! transfers, and finding the unfinished sagas that must be resumed.

use super::accounts::{PageRequest, fetch_page};
use super::entities::transfers;
use super::{Store, StoreError, StoreResult};
use crate::domain::{
    AccountId, Amount, Currency, JournalId, MerchantId, Rejection, TransferId, TransferKind,
    TransferState, UserId,
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

/// Unfinished sagas loaded per resumption pass.
pub const RESUME_BATCH_MAX: u64 = 500;

/// Who money moves from or to: a user, or a merchant (payments, refunds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Party {
    User(UserId),
    Merchant(MerchantId),
}

impl Party {
    pub fn uuid(self) -> uuid::Uuid {
        match self {
            Party::User(user) => user.as_uuid(),
            Party::Merchant(merchant) => merchant.as_uuid(),
        }
    }
}

impl std::fmt::Display for Party {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.uuid().hyphenated().fmt(formatter)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRecord {
    pub id: TransferId,
    /// The journal grouping the transfer's entries: the transfer id itself.
    pub journal_id: JournalId,
    /// A user (p2p, payment, capture) or the merchant (refund).
    pub from: Party,
    /// A user (p2p, refund) or the merchant (payment, capture).
    pub to: Party,
    pub kind: TransferKind,
    /// The payment intent (payment, capture) or refund (refund) the transfer serves.
    pub reference_id: Option<String>,
    pub source_account: AccountId,
    pub target_account: AccountId,
    pub amount: Amount,
    pub currency: Currency,
    pub note: Option<String>,
    pub state: TransferState,
    pub failure_code: Option<Rejection>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TransferRecord {
    pub fn to_active_model(&self) -> transfers::ActiveModel {
        transfers::ActiveModel {
            id: Set(self.id.to_string()),
            from_user: Set(self.from.to_string()),
            to_user: Set(self.to.to_string()),
            kind: Set(self.kind.as_str().to_owned()),
            reference_id: Set(self.reference_id.clone()),
            source_account: Set(self.source_account.to_string()),
            target_account: Set(self.target_account.to_string()),
            amount: Set(self.amount.minor_units()),
            currency: Set(self.currency.code().to_owned()),
            note: Set(self.note.clone()),
            state: Set(self.state.as_str().to_owned()),
            failure_code: Set(self.failure_code.map(|code| code.code().to_owned())),
            created_at: Set(self.created_at),
            updated_at: Set(self.updated_at),
        }
    }
}

fn corrupt(id: &str, what: &str) -> StoreError {
    StoreError::Corrupt(format!("transfer {id}: {what}"))
}

impl TryFrom<transfers::Model> for TransferRecord {
    type Error = StoreError;

    fn try_from(row: transfers::Model) -> StoreResult<TransferRecord> {
        let id: TransferId = row.id.parse().map_err(|_| corrupt(&row.id, "id"))?;
        let kind = TransferKind::parse(&row.kind).ok_or_else(|| corrupt(&row.id, "kind"))?;
        let from: uuid::Uuid = row
            .from_user
            .parse()
            .map_err(|_| corrupt(&row.id, "from_user"))?;
        let to: uuid::Uuid = row
            .to_user
            .parse()
            .map_err(|_| corrupt(&row.id, "to_user"))?;
        let (from, to) = match kind {
            TransferKind::P2p => (Party::User(from.into()), Party::User(to.into())),
            TransferKind::Payment | TransferKind::Capture => {
                (Party::User(from.into()), Party::Merchant(to.into()))
            }
            TransferKind::Refund => (Party::Merchant(from.into()), Party::User(to.into())),
        };
        Ok(TransferRecord {
            id,
            journal_id: JournalId::from(id.as_uuid()),
            from,
            to,
            kind,
            reference_id: row.reference_id,
            source_account: row
                .source_account
                .parse()
                .map_err(|_| corrupt(&row.id, "source"))?,
            target_account: row
                .target_account
                .parse()
                .map_err(|_| corrupt(&row.id, "target"))?,
            amount: Amount::new(row.amount).map_err(|_| corrupt(&row.id, "amount"))?,
            currency: Currency::parse(&row.currency).map_err(|_| corrupt(&row.id, "currency"))?,
            note: row.note,
            state: TransferState::parse(&row.state).ok_or_else(|| corrupt(&row.id, "state"))?,
            failure_code: row.failure_code.as_deref().and_then(Rejection::from_code),
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

impl Store {
    pub async fn find_transfer(&self, id: TransferId) -> StoreResult<Option<TransferRecord>> {
        // Through the writer: the saga reads back what it just committed.
        transfers::Entity::find_by_id(id.to_string())
            .one(self.writer())
            .await?
            .map(TransferRecord::try_from)
            .transpose()
    }

    /// P2P transfers the user sent or received, newest first.
    pub async fn list_transfers(
        &self,
        user: UserId,
        page: &PageRequest,
    ) -> StoreResult<(Vec<TransferRecord>, bool)> {
        let user = user.to_string();
        let select = transfers::Entity::find()
            .filter(transfers::Column::Kind.eq(TransferKind::P2p.as_str()))
            .filter(
                Condition::any()
                    .add(transfers::Column::FromUser.eq(user.clone()))
                    .add(transfers::Column::ToUser.eq(user)),
            );
        let (rows, has_more) =
            fetch_page(select, transfers::Column::Id, page, self.reader()).await?;
        let records = rows
            .into_iter()
            .map(TransferRecord::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((records, has_more))
    }

    /// Sagas still in flight whose last step is older than `updated_before`, oldest first.
    /// Rows that cannot be read are logged and skipped, so one bad row never blocks the rest.
    pub async fn unfinished_transfers(
        &self,
        updated_before: DateTime<Utc>,
    ) -> StoreResult<Vec<TransferRecord>> {
        let rows = transfers::Entity::find()
            .filter(transfers::Column::State.eq(TransferState::Debited.as_str()))
            .filter(transfers::Column::UpdatedAt.lt(updated_before))
            .order_by_asc(transfers::Column::Id)
            .limit(RESUME_BATCH_MAX)
            .all(self.writer())
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| match TransferRecord::try_from(row) {
                Ok(record) => Some(record),
                Err(error) => {
                    tracing::error!(%error, "unreadable transfer row; not resuming it");
                    None
                }
            })
            .collect())
    }

    /// Leases a stuck saga to this resumer: bumps `updated_at` if the transfer is still
    /// `debited` and not touched since `updated_before`. Only one resumer (on any node) wins,
    /// and the lease keeps the next passes from resuming it again until it is stale again.
    pub async fn lease_stuck_transfer(
        &self,
        id: TransferId,
        now: DateTime<Utc>,
        updated_before: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let leased = transfers::Entity::update_many()
            .col_expr(
                transfers::Column::UpdatedAt,
                sea_orm::sea_query::Expr::value(now),
            )
            .filter(transfers::Column::Id.eq(id.to_string()))
            .filter(transfers::Column::State.eq(TransferState::Debited.as_str()))
            .filter(transfers::Column::UpdatedAt.lt(updated_before))
            .exec(self.writer())
            .await?;
        Ok(leased.rows_affected == 1)
    }
}

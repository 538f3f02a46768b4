//! `Transfers`: a P2P transfer from a parsed request to a settled saga — resolve the recipient,
//! find (or open) both accounts, start the saga and wait for it. The HTTP handler only parses,
//! calls `send` and maps the answer; payments go through the same saga machinery
//! (`transfer_saga::start_and_wait`).
//!
//! Nothing on the common path reads the database: recipients and account ids come from the
//! store's caches, and the source's wallet decides whether it can pay. Only a transfer
//! that must open the recipient's account first asks the source's actor for its balance, so
//! that a transfer refused for lack of money leaves no new account behind.

use super::transfer_saga::{
    self, Opening, SagaContext, SagaFailure, SagaKeyed, SagaStart, Settlement,
};
use crate::domain::{
    Amount, Clock, Currency, JournalId, Rejection, TransferId, TransferKind, TransferState, UserId,
};
use crate::store::accounts::Owner;
use crate::store::transfers::{Party, TransferRecord};
use std::sync::Arc;
use std::time::Duration;

/// What transfers need.
#[derive(Clone)]
pub struct Transfers {
    pub sagas: SagaContext,
    pub clock: Arc<dyn Clock>,
    /// How long `send` waits for the saga before answering with the transfer as it stands.
    pub wait_timeout: Duration,
    /// `WALLETI_P2P_REQUIRE_VERIFIED`: an email or phone names only a user who verified it.
    pub require_verified_recipients: bool,
}

/// A validated P2P transfer request.
#[derive(Debug, Clone)]
pub struct TransferOrder {
    pub from: UserId,
    /// A user id, an email or an E.164 phone.
    pub to: String,
    pub amount: Amount,
    pub currency: Currency,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferError {
    /// Refused; nothing changed.
    Rejected(Rejection),
    /// Not started, or its start is unknown; retry with the same idempotency key.
    Unavailable(String),
}

impl From<crate::store::StoreError> for TransferError {
    fn from(error: crate::store::StoreError) -> TransferError {
        TransferError::Unavailable(error.to_string())
    }
}

impl Transfers {
    /// Sends the order as transfer `transfer_id`. `taken_over`: an earlier attempt with the
    /// same idempotency key may have started it already; it is resumed, not repeated.
    /// `keyed`: the request's idempotency key is claimed by the debit and answered by the
    /// last step (then `Rejected(IdempotencyKeyClaimed)` means another request holds the key).
    /// Answers the transfer as it stands (`completed`, `failed`, or `debited` = pending).
    pub async fn send(
        &self,
        order: TransferOrder,
        transfer_id: TransferId,
        taken_over: bool,
        keyed: Option<Box<SagaKeyed>>,
    ) -> Result<Settlement, TransferError> {
        let store = &self.sagas.store;
        if taken_over && let Some(existing) = store.find_transfer(transfer_id).await? {
            return self.wait(SagaStart::Resume(existing), transfer_id).await;
        }
        let recipient = store
            .resolve_user(&order.to, self.require_verified_recipients)
            .await?
            .ok_or(TransferError::Rejected(Rejection::RecipientNotFound))?;
        if recipient == order.from {
            return Err(TransferError::Rejected(Rejection::SelfTransfer));
        }
        let source = store
            .account_id(&Owner::User(order.from), order.currency)
            .await?
            .ok_or(TransferError::Rejected(Rejection::InsufficientFunds))?;
        let recipient_owner = Owner::User(recipient);
        let target = match store.account_id(&recipient_owner, order.currency).await? {
            Some(target) => target,
            None => {
                self.refuse_what_cannot_be_covered(source, order.amount)
                    .await?;
                store
                    .open_account_id(&recipient_owner, order.currency)
                    .await?
            }
        };
        let now = self.clock.now();
        let transfer = TransferRecord {
            id: transfer_id,
            journal_id: JournalId::from(transfer_id.as_uuid()),
            from: Party::User(order.from),
            to: Party::User(recipient),
            kind: TransferKind::P2p,
            reference_id: None,
            source_account: source,
            target_account: target,
            amount: order.amount,
            currency: order.currency,
            note: order.note,
            state: TransferState::Debited,
            failure_code: None,
            created_at: now,
            updated_at: now,
        };
        let start = SagaStart::New {
            transfer,
            replay: taken_over,
            opening: Opening::Debit,
            keyed,
        };
        self.wait(start, transfer_id).await
    }

    /// Before opening an account for the recipient: refuse what the source's committed balance
    /// (held by its actor, not read from the database) already cannot cover.
    async fn refuse_what_cannot_be_covered(
        &self,
        source: crate::domain::AccountId,
        amount: Amount,
    ) -> Result<(), TransferError> {
        match self.sagas.wallets.balance(source).await {
            Ok(balance) if balance.available < amount.minor_units() => {
                Err(TransferError::Rejected(Rejection::InsufficientFunds))
            }
            Ok(_) => Ok(()),
            Err(error) => Err(TransferError::Unavailable(error.to_string())),
        }
    }

    /// Runs the saga for the request; when its outcome is unknown, the database says whether
    /// the transfer exists (then it is answered as it stands and will be finished).
    async fn wait(
        &self,
        start: SagaStart,
        transfer_id: TransferId,
    ) -> Result<Settlement, TransferError> {
        let unknown =
            match transfer_saga::start_and_wait_settlement(&self.sagas, start, self.wait_timeout)
                .await
            {
                Ok(Some(settlement)) => return Ok(settlement),
                Err(SagaFailure::Rejected(rejection)) => {
                    return Err(TransferError::Rejected(rejection));
                }
                Ok(None) => "the transfer is still running".to_owned(),
                Err(SagaFailure::Unavailable(error)) => error,
            };
        match self.sagas.store.find_transfer(transfer_id).await? {
            Some(transfer) => Ok(Settlement {
                transfer,
                settled_by_this_run: false,
            }),
            None => Err(TransferError::Unavailable(unknown)),
        }
    }
}

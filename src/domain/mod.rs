//! Pure business rules and types: money, ids, contact details, the balance rules, the transfer
//! saga state machine and the stable rejection codes. Nothing here performs I/O, so everything
//! here is unit- and property-tested in isolation.

pub mod balance;
pub mod clock;
pub mod contact;
pub mod ids;
pub mod money;
pub mod onramp;
pub mod payment;
pub mod rejection;
pub mod signature;
pub mod transfer;

pub use balance::{Balance, BalanceOp, Bucket, Hold, HoldState, Posting, Solvency};
pub use clock::{Clock, SystemClock};
pub use contact::{ContactChannel, Email, PhoneNumber};
pub use ids::{
    AccountId, AdjustmentId, ApiKeyId, EntryId, HoldId, JournalId, MerchantId, OnrampId, OutboxId,
    PaymentIntentId, PayoutId, RefundId, SessionId, TransferId, UserId, WebhookDeliveryId,
    WebhookEndpointId,
};
pub use money::{Amount, Currency, Money, SignedAmount};
pub use onramp::{OnrampProvider, OnrampStatus};
pub use payment::{
    CancellationReason, CaptureMethod, IntentSnapshot, PaymentIntentStatus, PayoutStatus,
    RefundStatus, TransferKind,
};
pub use rejection::Rejection;
pub use transfer::{TransferEvent, TransferState};

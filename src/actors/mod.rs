//! ractor actors: the only place that mutates balances.
//!
//! - `wallet`: `WalletShard`, which hosts the wallets whose account ids hash to it; each
//!   wallet is the single writer of its balance, with batching (one batch per wallet per flush).
//! - `ledger_writer`: `LedgerWriter`, one per node: group commit of many wallets' batches as
//!   one transaction of multi-row statements; `Ledger` is the handle wallets commit through.
//! - `wallet_supervisor`: `WalletSupervisor` (starts and restarts the shards, asks them to
//!   passivate idle wallets) and `Wallets`, the handle everyone else calls wallets through.
//! - `webhook_ingestor`: `WebhookIngestor`, one per provider, turns stored webhook events into
//!   on-ramp credits and failures.
//! - `outbox_relay` and `notifier`: the in-process bus delivering outbox events, at least once,
//!   to the notifier, which stores each user's notification once per event.
//! - `webhook_dispatcher`: `WebhookDispatcher`, signed outgoing webhooks to merchants'
//!   endpoints, retried on a schedule, every attempt recorded.
//! - `stream_consumer`: `StreamConsumer`, one Redis consumer group feeding the notifier or the
//!   webhook dispatcher (with `REDIS_URL`).
//! - `reconciler`: `Reconciler`, ledger / saga / external checks on a schedule and on demand.
//! - `transfer_saga`: `TransferSaga`, debit → credit → (refund), resumable after a crash; it
//!   also carries merchant payments, captures and refunds.
//! - `transfers`: `Transfers`, a P2P transfer from parsed request to settled saga (recipient,
//!   accounts, saga, wait) without database reads on the common path.
//! - `payments`: payment intents, holds, refunds and payouts as wallet ops and sagas, and the
//!   `HoldKeeper` that expires authorisations and resubmits payouts.

pub mod ledger_writer;
pub mod notifier;
pub mod outbox_relay;
pub mod payments;
pub mod reconciler;
pub mod stream_consumer;
pub mod transfer_saga;
pub mod transfers;
pub mod wallet;
pub mod wallet_supervisor;
pub mod webhook_dispatcher;
pub mod webhook_ingestor;

pub use transfer_saga::{SagaContext, SagaOutcome, SagaStart};
pub use wallet::{OpOutcome, WalletLimits, WalletOp};
pub use wallet_supervisor::{WalletError, Wallets};

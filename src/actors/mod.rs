//! ractor actors: the only place that mutates balances.
//!
//! - `wallet`: `WalletActor`, one per live account, the single writer of its balance, with
//!   batching (one transaction per flush).
//! - `wallet_supervisor`: `WalletSupervisor` (lazy spawn, restart-and-reload, idle
//!   passivation) and `Wallets`, the handle everyone else calls wallets through.
//! - `bank_ingestor`: `BankIngestor`, turns stored bank webhook events into credits/failures.
//! - `transfer_saga`: `TransferSaga`, debit → credit → (refund), resumable after a crash.

pub mod bank_ingestor;
pub mod transfer_saga;
pub mod wallet;
pub mod wallet_supervisor;

pub use transfer_saga::{SagaContext, SagaOutcome, SagaStart};
pub use wallet::{OpOutcome, WalletLimits, WalletOp};
pub use wallet_supervisor::{WalletError, Wallets};

//! walleti: a digital wallet and payments platform.
//!
//! - [`domain`]: pure rules and types (money, ids, balance rules, the transfer saga state
//!   machine, rejection codes). No I/O.
//! - [`store`]: SeaORM persistence for SQLite and PostgreSQL; `store::ledger` is the one place
//!   money is written, one transaction per wallet batch.
//! - [`actors`]: ractor actors. `WalletSupervisor` and its `WalletShard`s serialise and batch each
//!   wallet's balance mutations; `TransferSaga` moves money between two wallets in steps.
//! - [`http`]: actix-web: routes, auth, idempotency, Stripe-like errors and pagination; the web
//!   apps (`http::webapp`) and the API reference at `/docs` (`http::docs`).
//! - [`providers`]: clients for the outside world (the bank, Stripe, SMTP, Twilio, FCM), base
//!   URLs configurable; `providers::outbound` builds every HTTP client (rustls, extra CAs,
//!   timeouts) and keeps merchant webhooks off non-public addresses.
//! - [`bank_sim`]: the development bank simulator, run as `walleti bank-sim` or, on a local
//!   walleti only, embedded under `/bank-sim/`; it answers walleti alone (SECURITY.md).
//! - [`bus`]: event delivery from the transactional outbox: Redis Streams, or in-process.
//! - [`metrics`]: the Prometheus registry and metric families.
//! - [`config`] and [`app`]: typed settings from the environment, and the wiring that builds
//!   and runs the whole application.
//! - [`loadgen`]: the HTTP load generator behind `walleti loadgen`.
//! - [`demo`]: `walleti demo`, which seeds demo people, a shop and their activity through the
//!   HTTP API and prints their logins.

pub mod actors;
pub mod app;
pub mod bank_sim;
pub mod bus;
pub mod config;
pub mod demo;
pub mod domain;
pub mod http;
pub mod loadgen;
pub mod metrics;
pub mod providers;
pub mod store;

//! Integration tests: each spawns walleti on port 0 with a fresh database and drives its HTTP
//! API. Every test runs on SQLite, and on PostgreSQL too when `WALLETI_TEST_DATABASE_URL` is set.

mod helpers;

mod access;
mod actors;
mod bad_input;
mod batching;
mod conservation;
mod crash_safety;
mod demo;
mod email;
mod group_commit;
mod idempotency;
mod kill;
mod ledger_constraints;
mod low_risks;
mod merchant_webhooks;
mod merchants;
mod notifications;
mod onramps;
mod operations;
mod outbound;
mod payments_concurrency;
mod push;
mod reconciliation;
mod redis_bus;
mod security;
mod sessions;
mod sms;
mod stripe;
mod transfers;
mod users;
mod verification;
mod web;

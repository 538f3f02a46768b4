//! The outside world: clients for the providers walleti talks to, each with a configurable
//! base URL so tests run them against local fakes.

pub mod bank;
pub mod email;
pub mod push;
pub mod sms;
pub mod stripe;

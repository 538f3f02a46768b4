//! The outside world: clients for the providers walleti talks to, each with a configurable
//! base URL so tests run them against local fakes, and every HTTP client built by
//! `outbound` (one TLS stack, extra trust anchors, timeouts).

pub mod bank;
pub mod email;
pub mod outbound;
pub mod push;
pub mod sms;
pub mod stripe;

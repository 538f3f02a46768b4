//! The one clock. Code asks a `Clock` for the time instead of calling `Utc::now()` so that
//! tests can move time (session expiry, stale idempotency locks, idle passivation).

use chrono::{DateTime, Utc};
use std::fmt::Debug;

pub trait Clock: Send + Sync + Debug + 'static {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

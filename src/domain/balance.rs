//! The balance rules. A `Balance` has an `available` and a `locked` bucket; every `BalanceOp`
//! (credit, debit, hold, capture, void) either produces the new balance together with the
//! postings that explain it, or a `Rejection`. Arithmetic is checked; wallets never go
//! negative; system accounts (which mirror money outside the platform) may.
//!
//! Holds follow TigerBeetle's two-phase shape: hold → capture (partial allowed, the rest is
//! released) | void | expire, and a hold resolves at most once.

use super::{Amount, Rejection};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    Available,
    Locked,
}

impl Bucket {
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Available => "available",
            Bucket::Locked => "locked",
        }
    }

    pub fn parse(text: &str) -> Option<Bucket> {
        match text {
            "available" => Some(Bucket::Available),
            "locked" => Some(Bucket::Locked),
            _ => None,
        }
    }
}

/// One signed change to one bucket; becomes one ledger entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posting {
    pub bucket: Bucket,
    pub amount: i64,
}

/// Whether an account must stay solvent (wallets) or may go negative (system accounts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Solvency {
    NonNegative,
    MayGoNegative,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceOp {
    /// Money arrives in `available`.
    Credit(Amount),
    /// Money leaves `available`.
    Debit(Amount),
    /// `available` → `locked`.
    Hold(Amount),
    /// Of a hold of `held`, `captured` leaves the account and the rest returns to `available`.
    Capture { held: Amount, captured: Amount },
    /// A hold returns to `available` in full (cancel or expiry).
    Void(Amount),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    pub available: i64,
    pub locked: i64,
}

impl Balance {
    pub fn new(available: i64, locked: i64) -> Balance {
        Balance { available, locked }
    }

    /// Applies `op`, returning the new balance and the postings that explain the change.
    /// The sum of the postings per bucket equals the change of that bucket.
    pub fn apply(
        self,
        op: BalanceOp,
        solvency: Solvency,
    ) -> Result<(Balance, Vec<Posting>), Rejection> {
        let postings = match op {
            BalanceOp::Credit(amount) => vec![available(amount.minor_units())],
            BalanceOp::Debit(amount) => vec![available(-amount.minor_units())],
            BalanceOp::Hold(amount) => vec![
                available(-amount.minor_units()),
                locked(amount.minor_units()),
            ],
            BalanceOp::Capture { held, captured } => {
                let released = held
                    .checked_sub(captured)
                    .ok_or(Rejection::BalanceOverflow)?;
                if released < 0 {
                    return Err(Rejection::CaptureExceedsHold);
                }
                let mut postings = vec![locked(-captured.minor_units())];
                if released > 0 {
                    postings.push(locked(-released));
                    postings.push(available(released));
                }
                postings
            }
            BalanceOp::Void(amount) => vec![
                locked(-amount.minor_units()),
                available(amount.minor_units()),
            ],
        };
        let after = self.with_postings(&postings, solvency)?;
        debug_assert_eq!(
            after.total().checked_sub(self.total()),
            Some(postings.iter().map(|posting| posting.amount).sum::<i64>())
        );
        Ok((after, postings))
    }

    /// `available + locked`.
    pub fn total(self) -> i64 {
        self.available.saturating_add(self.locked)
    }

    fn with_postings(self, postings: &[Posting], solvency: Solvency) -> Result<Balance, Rejection> {
        let mut after = self;
        for posting in postings {
            let bucket = match posting.bucket {
                Bucket::Available => &mut after.available,
                Bucket::Locked => &mut after.locked,
            };
            *bucket = bucket
                .checked_add(posting.amount)
                .ok_or(Rejection::BalanceOverflow)?;
        }
        if after.locked < 0 {
            // Only a capture or void larger than what is locked can get here.
            return Err(Rejection::InsufficientFunds);
        }
        if solvency == Solvency::NonNegative && after.available < 0 {
            return Err(Rejection::InsufficientFunds);
        }
        Ok(after)
    }
}

fn available(amount: i64) -> Posting {
    Posting {
        bucket: Bucket::Available,
        amount,
    }
}

fn locked(amount: i64) -> Posting {
    Posting {
        bucket: Bucket::Locked,
        amount,
    }
}

/// The life of a hold: it resolves exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldState {
    Held,
    Captured,
    Voided,
    Expired,
}

impl HoldState {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldState::Held => "held",
            HoldState::Captured => "captured",
            HoldState::Voided => "voided",
            HoldState::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<HoldState> {
        match text {
            "held" => Some(HoldState::Held),
            "captured" => Some(HoldState::Captured),
            "voided" => Some(HoldState::Voided),
            "expired" => Some(HoldState::Expired),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub amount: Amount,
    pub state: HoldState,
}

impl Hold {
    pub fn new(amount: Amount) -> Hold {
        Hold {
            amount,
            state: HoldState::Held,
        }
    }

    /// Resolves the hold into `outcome`, returning the balance op that moves the money.
    pub fn resolve(
        &mut self,
        outcome: HoldState,
        captured: Option<Amount>,
    ) -> Result<BalanceOp, Rejection> {
        if self.state != HoldState::Held {
            return Err(Rejection::HoldAlreadyResolved);
        }
        let op = match outcome {
            HoldState::Held => return Err(Rejection::InvalidTransition),
            HoldState::Captured => {
                let captured = captured.unwrap_or(self.amount);
                if captured > self.amount {
                    return Err(Rejection::CaptureExceedsHold);
                }
                BalanceOp::Capture {
                    held: self.amount,
                    captured,
                }
            }
            HoldState::Voided | HoldState::Expired => BalanceOp::Void(self.amount),
        };
        self.state = outcome;
        Ok(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn amount(minor_units: i64) -> Amount {
        Amount::new(minor_units).expect("valid test amount")
    }

    #[test]
    fn debit_more_than_available_is_rejected() {
        let balance = Balance::new(100, 0);
        assert_eq!(
            balance.apply(BalanceOp::Debit(amount(101)), Solvency::NonNegative),
            Err(Rejection::InsufficientFunds)
        );
        let (after, _) = balance
            .apply(BalanceOp::Debit(amount(101)), Solvency::MayGoNegative)
            .expect("system accounts may go negative");
        assert_eq!(after.available, -1);
    }

    #[test]
    fn partial_capture_releases_the_rest() {
        let (held, _) = Balance::new(1000, 0)
            .apply(BalanceOp::Hold(amount(600)), Solvency::NonNegative)
            .expect("hold");
        assert_eq!(held, Balance::new(400, 600));
        let (captured, postings) = held
            .apply(
                BalanceOp::Capture {
                    held: amount(600),
                    captured: amount(250),
                },
                Solvency::NonNegative,
            )
            .expect("capture");
        assert_eq!(captured, Balance::new(750, 0));
        assert_eq!(postings.iter().map(|p| p.amount).sum::<i64>(), -250);
    }

    #[test]
    fn a_hold_resolves_once() {
        let mut hold = Hold::new(amount(500));
        assert_eq!(
            hold.resolve(HoldState::Captured, Some(amount(501))),
            Err(Rejection::CaptureExceedsHold)
        );
        assert!(hold.resolve(HoldState::Captured, Some(amount(200))).is_ok());
        assert_eq!(
            hold.resolve(HoldState::Voided, None),
            Err(Rejection::HoldAlreadyResolved)
        );
        assert_eq!(
            hold.resolve(HoldState::Expired, None),
            Err(Rejection::HoldAlreadyResolved)
        );
    }

    #[test]
    fn credit_overflow_is_rejected() {
        let balance = Balance::new(i64::MAX - 1, 0);
        assert_eq!(
            balance.apply(BalanceOp::Credit(amount(2)), Solvency::NonNegative),
            Err(Rejection::BalanceOverflow)
        );
    }

    #[derive(Debug, Clone)]
    enum Step {
        Credit(i64),
        Debit(i64),
        Hold(i64),
        Resolve { index: usize, capture: Option<i64> },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (1..5_000_i64).prop_map(Step::Credit),
            (1..5_000_i64).prop_map(Step::Debit),
            (1..5_000_i64).prop_map(Step::Hold),
            (0..8_usize, proptest::option::of(1..5_000_i64))
                .prop_map(|(index, capture)| Step::Resolve { index, capture }),
        ]
    }

    proptest! {
        /// Any sequence of operations, valid or not, keeps a wallet's buckets non-negative,
        /// and the sum of the postings of the accepted operations equals the balance.
        #[test]
        fn wallets_stay_solvent_and_postings_sum_to_balance(steps in proptest::collection::vec(step(), 0..200)) {
            let mut balance = Balance::default();
            let mut holds: Vec<Hold> = Vec::new();
            let mut posted = Balance::default();
            for step in steps {
                let op = match step {
                    Step::Credit(n) => Ok(BalanceOp::Credit(amount(n))),
                    Step::Debit(n) => Ok(BalanceOp::Debit(amount(n))),
                    Step::Hold(n) => Ok(BalanceOp::Hold(amount(n))),
                    Step::Resolve { index, capture } => match holds.get(index).copied() {
                        None => continue,
                        Some(mut hold) => {
                            let outcome = if capture.is_some() { HoldState::Captured } else { HoldState::Voided };
                            let op = hold.resolve(outcome, capture.map(amount));
                            if op.is_ok() {
                                holds[index] = hold;
                            }
                            op
                        }
                    },
                };
                let Ok(op) = op else { continue };
                if let Ok((after, postings)) = balance.apply(op, Solvency::NonNegative) {
                    if let BalanceOp::Hold(held) = op {
                        holds.push(Hold::new(held));
                    }
                    for posting in postings {
                        match posting.bucket {
                            Bucket::Available => posted.available += posting.amount,
                            Bucket::Locked => posted.locked += posting.amount,
                        }
                    }
                    balance = after;
                }
                prop_assert!(balance.available >= 0);
                prop_assert!(balance.locked >= 0);
                prop_assert_eq!(balance, posted);
                let open_holds: i64 = holds.iter().filter(|h| h.state == HoldState::Held).map(|h| h.amount.minor_units()).sum();
                prop_assert_eq!(balance.locked, open_holds);
            }
        }
    }
}

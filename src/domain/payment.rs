//! Merchant payments: the payment intent's life, refunds and payouts as state machines.
//!
//! ```text
//!   requires_confirmation ──confirm (automatic)──► processing ──merchant credited──► succeeded
//!          │    ▲                                      │
//!          │    └──────────── payment refused ─────────┘
//!          ├──confirm (manual: hold)──► requires_capture ──capture──► processing ──► succeeded
//!          │                                 │
//!          └──cancel──► canceled ◄──cancel / expiry (hold released)
//! ```
//!
//! A refund is `pending` while its saga runs, then `succeeded` or `failed` (money returned to
//! the merchant). A payout is `pending` (funds locked) → `in_transit` (the bank accepted it) →
//! `paid` (the locked funds left) or `failed` (released).

use super::Rejection;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

string_enum!(
    /// Where a payment intent stands.
    PaymentIntentStatus {
        RequiresConfirmation => "requires_confirmation",
        Processing => "processing",
        RequiresCapture => "requires_capture",
        Succeeded => "succeeded",
        Canceled => "canceled",
    }
);

string_enum!(
    /// Whether confirming moves the money at once or only authorises (holds) it.
    CaptureMethod {
        Automatic => "automatic",
        Manual => "manual",
    }
);

string_enum!(
    RefundStatus {
        Pending => "pending",
        Succeeded => "succeeded",
        Failed => "failed",
    }
);

string_enum!(
    PayoutStatus {
        Pending => "pending",
        InTransit => "in_transit",
        Paid => "paid",
        Failed => "failed",
    }
);

string_enum!(
    /// Why a payment intent was canceled.
    CancellationReason {
        RequestedByMerchant => "requested_by_merchant",
        Expired => "expired",
        CaptureFailed => "capture_failed",
    }
);

/// What a transfer saga moves money for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferKind {
    /// User to user.
    P2p,
    /// An automatic payment intent: user to merchant.
    Payment,
    /// The captured part of a manual payment intent's hold: user to merchant.
    Capture,
    /// Merchant back to the user who paid.
    Refund,
}

impl TransferKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::P2p => "p2p",
            TransferKind::Payment => "payment",
            TransferKind::Capture => "capture",
            TransferKind::Refund => "refund",
        }
    }

    pub fn parse(text: &str) -> Option<TransferKind> {
        match text {
            "p2p" => Some(TransferKind::P2p),
            "payment" => Some(TransferKind::Payment),
            "capture" => Some(TransferKind::Capture),
            "refund" => Some(TransferKind::Refund),
            _ => None,
        }
    }
}

/// What a wallet knows about a payment intent while it plans a batch: enough to refuse
/// an action the intent's state does not allow, and to keep the refunds of a batch within
/// what the intent received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntentSnapshot {
    pub status: PaymentIntentStatus,
    pub amount_received: i64,
    pub amount_refunded: i64,
}

impl IntentSnapshot {
    /// A user starts paying (automatic) or authorising (manual) the intent.
    pub fn confirm(&mut self, manual: bool) -> Result<(), Rejection> {
        if self.status != PaymentIntentStatus::RequiresConfirmation {
            return Err(Rejection::PaymentIntentUnexpectedState);
        }
        self.status = if manual {
            PaymentIntentStatus::RequiresCapture
        } else {
            PaymentIntentStatus::Processing
        };
        Ok(())
    }

    /// Reserves `amount` of what the intent received for a refund.
    pub fn refund(&mut self, amount: i64) -> Result<(), Rejection> {
        if self.status != PaymentIntentStatus::Succeeded {
            return Err(Rejection::PaymentIntentUnexpectedState);
        }
        let refunded = self
            .amount_refunded
            .checked_add(amount)
            .ok_or(Rejection::BalanceOverflow)?;
        if refunded > self.amount_received {
            return Err(Rejection::RefundExceedsCaptured);
        }
        self.amount_refunded = refunded;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for status in PaymentIntentStatus::ALL {
            assert_eq!(PaymentIntentStatus::parse(status.as_str()), Some(*status));
        }
        for status in PayoutStatus::ALL {
            assert_eq!(PayoutStatus::parse(status.as_str()), Some(*status));
        }
        for kind in [
            TransferKind::P2p,
            TransferKind::Payment,
            TransferKind::Capture,
            TransferKind::Refund,
        ] {
            assert_eq!(TransferKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn an_intent_is_confirmed_once() {
        let mut intent = IntentSnapshot {
            status: PaymentIntentStatus::RequiresConfirmation,
            amount_received: 0,
            amount_refunded: 0,
        };
        assert_eq!(intent.confirm(true), Ok(()));
        assert_eq!(intent.status, PaymentIntentStatus::RequiresCapture);
        assert_eq!(
            intent.confirm(false),
            Err(Rejection::PaymentIntentUnexpectedState)
        );
    }

    #[test]
    fn refunds_never_exceed_what_was_received() {
        let mut intent = IntentSnapshot {
            status: PaymentIntentStatus::Succeeded,
            amount_received: 1000,
            amount_refunded: 0,
        };
        assert_eq!(intent.refund(400), Ok(()));
        assert_eq!(intent.refund(600), Ok(()));
        assert_eq!(intent.refund(1), Err(Rejection::RefundExceedsCaptured));
        assert_eq!(intent.amount_refunded, 1000);
        let mut open = IntentSnapshot {
            status: PaymentIntentStatus::RequiresCapture,
            ..intent
        };
        assert_eq!(open.refund(1), Err(Rejection::PaymentIntentUnexpectedState));
    }
}

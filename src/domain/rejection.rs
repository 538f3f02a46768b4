//! `Rejection`: every business reason an operation can be refused, with the stable snake_case
//! code that the HTTP API returns. A rejection is a value, never an infrastructure error.

use std::fmt;

/// A business rule refused the operation. The `code()` strings are part of the API contract:
/// never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    InsufficientFunds,
    InvalidAmount,
    InvalidCurrency,
    CurrencyMismatch,
    BalanceOverflow,
    AccountNotFound,
    RecipientNotFound,
    SelfTransfer,
    HoldAlreadyResolved,
    CaptureExceedsHold,
    InvalidEmail,
    InvalidPhone,
    InvalidTransition,
    PaymentIntentUnexpectedState,
    RefundExceedsCaptured,
    /// The request's idempotency key was claimed by another request (a duplicate, a retry,
    /// or a request on another node): the idempotency path answers from what that one stored.
    IdempotencyKeyClaimed,
}

impl Rejection {
    pub fn code(self) -> &'static str {
        match self {
            Rejection::InsufficientFunds => "insufficient_funds",
            Rejection::InvalidAmount => "invalid_amount",
            Rejection::InvalidCurrency => "invalid_currency",
            Rejection::CurrencyMismatch => "currency_mismatch",
            Rejection::BalanceOverflow => "balance_overflow",
            Rejection::AccountNotFound => "account_not_found",
            Rejection::RecipientNotFound => "recipient_not_found",
            Rejection::SelfTransfer => "self_transfer",
            Rejection::HoldAlreadyResolved => "hold_already_resolved",
            Rejection::CaptureExceedsHold => "capture_exceeds_hold",
            Rejection::InvalidEmail => "invalid_email",
            Rejection::InvalidPhone => "invalid_phone",
            Rejection::InvalidTransition => "invalid_transition",
            Rejection::PaymentIntentUnexpectedState => "payment_intent_unexpected_state",
            Rejection::RefundExceedsCaptured => "refund_exceeds_captured",
            Rejection::IdempotencyKeyClaimed => "idempotency_key_in_use",
        }
    }

    /// Parses a stored code back (failure codes are persisted on transfers).
    pub fn from_code(code: &str) -> Option<Rejection> {
        ALL.iter()
            .copied()
            .find(|rejection| rejection.code() == code)
    }

    pub fn message(self) -> &'static str {
        match self {
            Rejection::InsufficientFunds => "The account does not have enough available funds.",
            Rejection::InvalidAmount => {
                "Amounts must be integers in minor units, greater than 0 and at most 10^12."
            }
            Rejection::InvalidCurrency => "Unknown or unsupported currency.",
            Rejection::CurrencyMismatch => "The currencies of the operation do not match.",
            Rejection::BalanceOverflow => "The operation would overflow the account balance.",
            Rejection::AccountNotFound => "No such account.",
            Rejection::RecipientNotFound => "No user matches that recipient.",
            Rejection::SelfTransfer => "You cannot transfer money to yourself.",
            Rejection::HoldAlreadyResolved => {
                "The hold has already been captured, voided or expired."
            }
            Rejection::CaptureExceedsHold => "Cannot capture more than the held amount.",
            Rejection::InvalidEmail => "Invalid email address.",
            Rejection::InvalidPhone => "Phone numbers must be in E.164 format, e.g. +14155550123.",
            Rejection::InvalidTransition => "The object is not in a state that allows this action.",
            Rejection::PaymentIntentUnexpectedState => {
                "The payment intent's status does not allow this action."
            }
            Rejection::RefundExceedsCaptured => {
                "Refunds cannot exceed what the payment intent received, minus earlier refunds."
            }
            Rejection::IdempotencyKeyClaimed => {
                "Another request with this Idempotency-Key is still being processed."
            }
        }
    }
}

const ALL: [Rejection; 16] = [
    Rejection::InsufficientFunds,
    Rejection::InvalidAmount,
    Rejection::InvalidCurrency,
    Rejection::CurrencyMismatch,
    Rejection::BalanceOverflow,
    Rejection::AccountNotFound,
    Rejection::RecipientNotFound,
    Rejection::SelfTransfer,
    Rejection::HoldAlreadyResolved,
    Rejection::CaptureExceedsHold,
    Rejection::InvalidEmail,
    Rejection::InvalidPhone,
    Rejection::InvalidTransition,
    Rejection::PaymentIntentUnexpectedState,
    Rejection::RefundExceedsCaptured,
    Rejection::IdempotencyKeyClaimed,
];

impl fmt::Display for Rejection {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.code())
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for rejection in ALL {
            assert!(seen.insert(rejection.code()));
            assert_eq!(Rejection::from_code(rejection.code()), Some(rejection));
        }
    }
}

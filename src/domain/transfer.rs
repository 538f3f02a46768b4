//! The transfer saga state machine. A transfer moves money between two wallets in steps, each
//! one atomic database transaction that also records the new state:
//!
//! ```text
//!   (debit source) ──► Debited ──(credit target)──► Completed
//!                         │
//!                         └──(credit rejected; refund source)──► Failed
//! ```
//!
//! A transfer whose debit is rejected never comes into existence (the API answers 422), so
//! `Failed` always means "debited, then refunded". While `Debited`, the amount is in flight:
//! it has left the source and not yet reached the target.

use super::Rejection;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferState {
    Debited,
    Completed,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEvent {
    TargetCredited,
    SourceRefunded,
}

impl TransferState {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Debited => "debited",
            TransferState::Completed => "completed",
            TransferState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<TransferState> {
        match text {
            "debited" => Some(TransferState::Debited),
            "completed" => Some(TransferState::Completed),
            "failed" => Some(TransferState::Failed),
            _ => None,
        }
    }

    /// The status clients see: a saga still in flight is `pending`.
    pub fn api_status(self) -> &'static str {
        match self {
            TransferState::Debited => "pending",
            TransferState::Completed => "completed",
            TransferState::Failed => "failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, TransferState::Debited)
    }

    /// Whether the transfer's amount is currently in flight (left the source, not arrived).
    pub fn holds_money_in_flight(self) -> bool {
        matches!(self, TransferState::Debited)
    }

    pub fn transition(self, event: TransferEvent) -> Result<TransferState, Rejection> {
        match (self, event) {
            (TransferState::Debited, TransferEvent::TargetCredited) => Ok(TransferState::Completed),
            (TransferState::Debited, TransferEvent::SourceRefunded) => Ok(TransferState::Failed),
            _ => Err(Rejection::InvalidTransition),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_never_move() {
        for state in [TransferState::Completed, TransferState::Failed] {
            assert!(state.is_terminal());
            for event in [TransferEvent::TargetCredited, TransferEvent::SourceRefunded] {
                assert_eq!(state.transition(event), Err(Rejection::InvalidTransition));
            }
        }
    }

    #[test]
    fn debited_moves_once() {
        assert_eq!(
            TransferState::Debited.transition(TransferEvent::TargetCredited),
            Ok(TransferState::Completed)
        );
        assert_eq!(
            TransferState::Debited.transition(TransferEvent::SourceRefunded),
            Ok(TransferState::Failed)
        );
        assert_eq!(TransferState::Debited.api_status(), "pending");
        for state in [
            TransferState::Debited,
            TransferState::Completed,
            TransferState::Failed,
        ] {
            assert_eq!(TransferState::parse(state.as_str()), Some(state));
        }
    }
}

//! On-ramps: money coming in from a provider (the bank, Stripe Checkout). An on-ramp starts
//! `processing` and ends exactly once, `succeeded` (the wallet was credited) or `failed`; a
//! terminal on-ramp never changes state, whatever order the provider's events arrive in.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnrampProvider {
    Bank,
    Stripe,
}

impl OnrampProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            OnrampProvider::Bank => "bank",
            OnrampProvider::Stripe => "stripe",
        }
    }

    pub fn parse(text: &str) -> Option<OnrampProvider> {
        match text {
            "bank" => Some(OnrampProvider::Bank),
            "stripe" => Some(OnrampProvider::Stripe),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnrampStatus {
    Processing,
    Succeeded,
    Failed,
}

impl OnrampStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OnrampStatus::Processing => "processing",
            OnrampStatus::Succeeded => "succeeded",
            OnrampStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<OnrampStatus> {
        match text {
            "processing" => Some(OnrampStatus::Processing),
            "succeeded" => Some(OnrampStatus::Succeeded),
            "failed" => Some(OnrampStatus::Failed),
            _ => None,
        }
    }

    pub fn is_terminal(self) -> bool {
        self != OnrampStatus::Processing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for status in [
            OnrampStatus::Processing,
            OnrampStatus::Succeeded,
            OnrampStatus::Failed,
        ] {
            assert_eq!(OnrampStatus::parse(status.as_str()), Some(status));
        }
        assert!(!OnrampStatus::Processing.is_terminal());
        assert!(OnrampStatus::Succeeded.is_terminal() && OnrampStatus::Failed.is_terminal());
        assert_eq!(OnrampProvider::parse("bank"), Some(OnrampProvider::Bank));
        assert_eq!(OnrampProvider::parse("paypal"), None);
    }
}

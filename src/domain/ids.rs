//! Typed identifiers. Every id is a UUID v7 (time-ordered, so ids sort by creation time and
//! "newest first" pagination can use the id), wrapped in a newtype so that an account id can
//! never be passed where a user id is expected.

use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A new time-ordered id.
            pub fn generate() -> $name {
                $name(Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> $name {
                $name(uuid)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(text: &str) -> Result<$name, uuid::Error> {
                Uuid::parse_str(text).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(formatter)
            }
        }
    };
}

typed_id!(
    /// A person holding wallets.
    UserId
);
typed_id!(
    /// A ledger account (a wallet or a system account).
    AccountId
);
typed_id!(
    /// A P2P transfer and its saga.
    TransferId
);
typed_id!(
    /// A group of entries that together describe one movement of money.
    JournalId
);
typed_id!(
    /// One immutable ledger entry.
    EntryId
);
typed_id!(
    /// A login session.
    SessionId
);
typed_id!(
    /// A manual operator adjustment.
    AdjustmentId
);
typed_id!(
    /// A row of the transactional outbox.
    OutboxId
);
typed_id!(
    /// Money coming in from a provider.
    OnrampId
);
typed_id!(
    /// A business taking payments.
    MerchantId
);
typed_id!(
    /// A merchant's secret API key (the id, never the secret).
    ApiKeyId
);
typed_id!(
    /// A merchant's request for a payment.
    PaymentIntentId
);
typed_id!(
    /// Funds locked on a wallet until they are captured, voided or expire.
    HoldId
);
typed_id!(
    /// Money returned by a merchant to the user who paid.
    RefundId
);
typed_id!(
    /// Money leaving a wallet to a bank account.
    PayoutId
);
typed_id!(
    /// A merchant's URL that receives signed events.
    WebhookEndpointId
);
typed_id!(
    /// One event to one merchant endpoint, with its attempts.
    WebhookDeliveryId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_creation() {
        let first = TransferId::generate();
        let second = TransferId::generate();
        assert!(first < second);
        assert!(first.to_string() < second.to_string());
        assert_eq!(first.to_string().parse::<TransferId>().ok(), Some(first));
        assert!("not-a-uuid".parse::<TransferId>().is_err());
    }
}

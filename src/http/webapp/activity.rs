//! What a wallet's ledger entries mean to the person reading them: "Sent to Bob · lunch",
//! "Payment to Corner Shop", "Returned from an authorisation", "Top-up from bank". The ledger
//! records every posting, including the moves between a wallet's `available` and `locked`
//! buckets; a person sees one row per change of what they can spend, with the counterparty and
//! the note, plus the rows where money they had on hold left their wallet.
//!
//! Amounts are changes of the available balance (what can be spent), so the signed amounts of
//! a page add up to the change of the "Balance after" column. Money that leaves from a hold
//! (a captured authorisation, a paid payout) changed the available balance when it was put on
//! hold; its row says so instead of counting it twice.

use super::money;
use crate::domain::{MerchantId, OnrampProvider, UserId};
use crate::http::AppState;
use crate::store::entities::entries;
use crate::store::payments::{HoldRecord, HoldReference};
use crate::store::transfers::Party;
use std::collections::HashMap;

/// One row of a person's or a merchant's activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRow {
    pub entry_id: String,
    pub created_at: String,
    pub description: String,
    /// Signed change of the available balance (`-$12.50`), or what left a hold.
    pub amount: String,
    /// The available balance after the row, when it changed it.
    pub balance_after: Option<String>,
}

/// What an entry is, for its reader; `None` for the bookkeeping half of a move between
/// buckets (the other half carries the row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The available balance changed by the entry's amount.
    Available,
    /// Money left the wallet from a hold (its available balance moved when the hold opened).
    FromHold,
}

/// An entry's posting index: the first posting of a movement has the op key itself, the
/// others `{op_key}#{index}` (store::ledger).
fn posting_index(entry: &entries::Model) -> usize {
    entry
        .op_key
        .rsplit_once('#')
        .and_then(|(_, index)| index.parse().ok())
        .unwrap_or(0)
}

fn shape(entry: &entries::Model) -> Option<Shape> {
    match entry.bucket.as_str() {
        "available" => Some(Shape::Available),
        // A capture's first posting is the captured amount leaving the hold; a paid payout's
        // only posting is the payout leaving it. Every other locked posting mirrors an
        // available one (hold opened, released, expired, the uncaptured rest).
        "locked" if matches!(entry.kind.as_str(), "capture_debit" | "payout") => {
            (posting_index(entry) == 0).then_some(Shape::FromHold)
        }
        _ => None,
    }
}

/// Names and objects looked up once per page.
#[derive(Default)]
struct Lookups {
    users: HashMap<UserId, String>,
    merchants: HashMap<MerchantId, String>,
}

impl Lookups {
    async fn user(&mut self, state: &AppState, id: UserId) -> String {
        if let Some(name) = self.users.get(&id) {
            return name.clone();
        }
        let name = match state.store.find_user(id).await {
            Ok(Some(user)) => first_name(&user.name),
            _ => "someone".to_owned(),
        };
        self.users.insert(id, name.clone());
        name
    }

    async fn merchant(&mut self, state: &AppState, id: MerchantId) -> String {
        if let Some(name) = self.merchants.get(&id) {
            return name.clone();
        }
        let name = match state.store.find_merchant(id).await {
            Ok(Some(merchant)) => merchant.name,
            _ => "a merchant".to_owned(),
        };
        self.merchants.insert(id, name.clone());
        name
    }

    async fn party(&mut self, state: &AppState, party: Party) -> String {
        match party {
            Party::User(id) => self.user(state, id).await,
            Party::Merchant(id) => self.merchant(state, id).await,
        }
    }
}

/// People are called by their first name, as in a conversation ("Sent to Bob").
fn first_name(name: &str) -> String {
    name.split_whitespace().next().unwrap_or(name).to_owned()
}

fn with_note(text: String, note: Option<&str>) -> String {
    match note.map(str::trim).filter(|note| !note.is_empty()) {
        Some(note) => format!("{text} · {note}"),
        None => text,
    }
}

/// The rows for `entries` (newest first) of accounts whose currencies `currencies` names.
pub async fn rows(
    state: &AppState,
    entries: &[entries::Model],
    currencies: &HashMap<String, &str>,
) -> Vec<ActivityRow> {
    let mut lookups = Lookups::default();
    let mut rows = Vec::with_capacity(entries.len());
    for entry in entries {
        let Some(shape) = shape(entry) else {
            continue;
        };
        let currency = currencies.get(&entry.account_id).copied().unwrap_or("");
        let description = describe(state, &mut lookups, entry).await;
        let (amount, balance_after) = match shape {
            Shape::Available => (
                signed(entry.amount, currency),
                Some(money(entry.balance_after, currency)),
            ),
            Shape::FromHold => (
                format!("{} from hold", money(entry.amount.abs(), currency)),
                None,
            ),
        };
        rows.push(ActivityRow {
            entry_id: entry.id.clone(),
            created_at: entry.created_at.to_rfc3339(),
            description,
            amount,
            balance_after,
        });
    }
    rows
}

/// `+$2.00` / `-$12.50`.
fn signed(amount: i64, currency: &str) -> String {
    let sign = if amount >= 0 { "+" } else { "−" };
    format!("{sign}{}", money(amount.abs(), currency))
}

async fn describe(state: &AppState, lookups: &mut Lookups, entry: &entries::Model) -> String {
    let reference = entry.reference_id.as_str();
    match entry.reference_type.as_str() {
        "transfer" => describe_transfer(state, lookups, entry, reference).await,
        "payment_intent" => describe_payment(state, lookups, entry, reference).await,
        "refund" => describe_refund(state, lookups, entry, reference).await,
        "payout" => describe_payout(entry),
        "onramp" => describe_onramp(state, reference).await,
        "adjustment" => "Adjustment by walleti".to_owned(),
        _ => entry.kind.replace('_', " "),
    }
}

async fn describe_transfer(
    state: &AppState,
    lookups: &mut Lookups,
    entry: &entries::Model,
    reference: &str,
) -> String {
    let transfer = match reference.parse() {
        Ok(id) => state.store.find_transfer(id).await.ok().flatten(),
        Err(_) => None,
    };
    let Some(transfer) = transfer else {
        return "Transfer".to_owned();
    };
    let note = transfer.note.as_deref();
    match entry.kind.as_str() {
        "transfer_credit" => {
            let from = lookups.party(state, transfer.from).await;
            with_note(format!("Received from {from}"), note)
        }
        "transfer_refund" => {
            let to = lookups.party(state, transfer.to).await;
            format!("Returned: the transfer to {to} did not go through")
        }
        _ => {
            let to = lookups.party(state, transfer.to).await;
            with_note(format!("Sent to {to}"), note)
        }
    }
}

async fn describe_payment(
    state: &AppState,
    lookups: &mut Lookups,
    entry: &entries::Model,
    reference: &str,
) -> String {
    let intent = match reference.parse() {
        Ok(id) => state.store.find_payment_intent(id).await.ok().flatten(),
        Err(_) => None,
    };
    let Some(intent) = intent else {
        return "Payment".to_owned();
    };
    let merchant = lookups.merchant(state, intent.merchant_id).await;
    let customer = match intent.customer_user_id {
        Some(user) => lookups.user(state, user).await,
        None => "a customer".to_owned(),
    };
    let description = intent.description.as_deref();
    match (entry.kind.as_str(), entry.bucket.as_str()) {
        ("payment_credit" | "capture_credit", _) => {
            with_note(format!("Payment from {customer}"), description)
        }
        ("payment_reversal" | "capture_reversal", _) if entry.amount > 0 => {
            format!("Payment to {merchant} reversed: the money is back")
        }
        ("payment_reversal" | "capture_reversal", _) => {
            format!("Payment from {customer} reversed")
        }
        ("hold", _) => {
            let until = match intent.hold_id {
                Some(hold) => hold_until(state, hold).await,
                None => String::new(),
            };
            with_note(format!("On hold for {merchant}{until}"), description)
        }
        ("capture_debit", "available") => {
            format!("Returned from an authorisation · {merchant} took less")
        }
        ("hold_released", _) => {
            format!("Returned from an authorisation · {merchant} cancelled it")
        }
        ("hold_expired", _) => format!("Returned from an authorisation · it expired ({merchant})"),
        _ => with_note(format!("Payment to {merchant}"), description),
    }
}

/// " until 7 Dec 2026, 14:05 UTC" while the hold is held, else "".
async fn hold_until(state: &AppState, hold: crate::domain::HoldId) -> String {
    match state.store.find_hold(hold).await {
        Ok(Some(hold)) => until(&hold),
        _ => String::new(),
    }
}

fn until(hold: &HoldRecord) -> String {
    match (hold.state, hold.expires_at) {
        (crate::domain::HoldState::Held, Some(at)) => {
            format!(" until {}", at.format("%-d %b %Y, %H:%M UTC"))
        }
        _ => String::new(),
    }
}

async fn describe_refund(
    state: &AppState,
    lookups: &mut Lookups,
    entry: &entries::Model,
    reference: &str,
) -> String {
    let refund = match reference.parse() {
        Ok(id) => state.store.find_refund(id).await.ok().flatten(),
        Err(_) => None,
    };
    let Some(refund) = refund else {
        return "Refund".to_owned();
    };
    match entry.kind.as_str() {
        "refund_credit" => {
            let merchant = lookups.merchant(state, refund.merchant_id).await;
            format!("Refund from {merchant}")
        }
        "refund_reversal" => "Refund reversed: the money is back".to_owned(),
        _ => {
            let user = lookups.user(state, refund.user_id).await;
            format!("Refund to {user}")
        }
    }
}

fn describe_payout(entry: &entries::Model) -> String {
    match entry.kind.as_str() {
        "hold" => "Payout to bank · on hold until the bank pays it".to_owned(),
        "hold_released" | "hold_expired" => "Returned: the bank did not take the payout".to_owned(),
        _ => "Payout to bank · paid".to_owned(),
    }
}

async fn describe_onramp(state: &AppState, reference: &str) -> String {
    let onramp = match reference.parse() {
        Ok(id) => state.store.find_onramp(id).await.ok().flatten(),
        Err(_) => None,
    };
    match onramp.map(|onramp| onramp.provider) {
        Some(OnrampProvider::Stripe) => "Top-up by card".to_owned(),
        _ => "Top-up from bank".to_owned(),
    }
}

/// What the locked balance is made of, one (why, amount) per hold:
/// ("On hold for Corner Shop until 7 Dec 2026, 14:05 UTC · Order 1044", "$9.00").
pub async fn holds_explained(state: &AppState, holds: &[HoldRecord]) -> Vec<(String, String)> {
    let mut lookups = Lookups::default();
    let mut lines = Vec::with_capacity(holds.len());
    for hold in holds {
        let amount = money(hold.amount.minor_units(), hold.currency.code());
        let why = match hold.reference {
            HoldReference::PaymentIntent(intent) => {
                match state.store.find_payment_intent(intent).await {
                    Ok(Some(intent)) => {
                        let merchant = lookups.merchant(state, intent.merchant_id).await;
                        with_note(
                            format!("On hold for {merchant}{}", until(hold)),
                            intent.description.as_deref(),
                        )
                    }
                    _ => format!("On hold for a payment{}", until(hold)),
                }
            }
            HoldReference::Payout(_) => {
                "On hold for a payout to your bank, until the bank pays it".to_owned()
            }
        };
        lines.push((why, amount));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, bucket: &str, op_key: &str) -> entries::Model {
        entries::Model {
            id: "e".into(),
            account_id: "a".into(),
            op_key: op_key.into(),
            bucket: bucket.into(),
            amount: -100,
            balance_after: 0,
            journal_id: "j".into(),
            kind: kind.into(),
            reference_type: "payment_intent".into(),
            reference_id: "p".into(),
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn one_row_per_change_a_person_sees() {
        // A hold: its available posting carries the row, the locked mirror none.
        assert_eq!(
            shape(&entry("hold", "available", "hold:1:open")),
            Some(Shape::Available)
        );
        assert_eq!(shape(&entry("hold", "locked", "hold:1:open#1")), None);
        // A partial capture: the captured amount leaves the hold, the rest returns.
        assert_eq!(
            shape(&entry("capture_debit", "locked", "transfer:1:debit")),
            Some(Shape::FromHold)
        );
        assert_eq!(
            shape(&entry("capture_debit", "locked", "transfer:1:debit#1")),
            None
        );
        assert_eq!(
            shape(&entry("capture_debit", "available", "transfer:1:debit#2")),
            Some(Shape::Available)
        );
        // A release: only the available side.
        assert_eq!(
            shape(&entry("hold_released", "locked", "hold:1:voided")),
            None
        );
        assert_eq!(
            shape(&entry("hold_released", "available", "hold:1:voided#1")),
            Some(Shape::Available)
        );
        // A paid payout leaves the hold.
        assert_eq!(
            shape(&entry("payout", "locked", "hold:2:capture")),
            Some(Shape::FromHold)
        );
    }

    #[test]
    fn amounts_read_as_money_in_and_out() {
        assert_eq!(signed(-1250, "usd"), "−$12.50");
        assert_eq!(signed(200, "usd"), "+$2.00");
        assert_eq!(
            with_note("Sent to Bob".into(), Some(" lunch ")),
            "Sent to Bob · lunch"
        );
        assert_eq!(with_note("Sent to Bob".into(), Some("")), "Sent to Bob");
        assert_eq!(first_name("Bob Martin"), "Bob");
    }
}

//! Money: `Amount` (a positive number of minor units, at most 10^12), `SignedAmount` (a non-zero
//! one, for operator adjustments), `Currency` (ISO 4217 with its minor-unit exponent) and
//! `Money`. Amounts are `i64` minor units with checked arithmetic; never floats.

use super::Rejection;
use std::fmt;

/// The largest amount one operation may move, in minor units (API contract: ≤ 10^12).
pub const AMOUNT_MAX_MINOR_UNITS: i64 = 1_000_000_000_000;

/// A strictly positive amount of minor units, at most [`AMOUNT_MAX_MINOR_UNITS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

impl Amount {
    pub fn new(minor_units: i64) -> Result<Amount, Rejection> {
        if minor_units <= 0 || minor_units > AMOUNT_MAX_MINOR_UNITS {
            return Err(Rejection::InvalidAmount);
        }
        Ok(Amount(minor_units))
    }

    /// Parses an amount from a JSON value: only a JSON integer is an amount (`10.0`, `"10"`,
    /// `1e3` and booleans are all rejected).
    pub fn from_json(value: &serde_json::Value) -> Result<Amount, Rejection> {
        match value {
            serde_json::Value::Number(number) if number.is_i64() || number.is_u64() => number
                .as_i64()
                .ok_or(Rejection::InvalidAmount)
                .and_then(Amount::new),
            _ => Err(Rejection::InvalidAmount),
        }
    }

    pub fn minor_units(self) -> i64 {
        self.0
    }

    pub fn checked_sub(self, other: Amount) -> Option<i64> {
        self.0.checked_sub(other.0)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

/// A non-zero signed amount with magnitude at most [`AMOUNT_MAX_MINOR_UNITS`]: positive credits,
/// negative debits. Used by operator adjustments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignedAmount(i64);

impl SignedAmount {
    pub fn new(minor_units: i64) -> Result<SignedAmount, Rejection> {
        if minor_units == 0 || minor_units.unsigned_abs() > AMOUNT_MAX_MINOR_UNITS as u64 {
            return Err(Rejection::InvalidAmount);
        }
        Ok(SignedAmount(minor_units))
    }

    pub fn from_json(value: &serde_json::Value) -> Result<SignedAmount, Rejection> {
        match value {
            serde_json::Value::Number(number) if number.is_i64() => number
                .as_i64()
                .ok_or(Rejection::InvalidAmount)
                .and_then(SignedAmount::new),
            _ => Err(Rejection::InvalidAmount),
        }
    }

    pub fn minor_units(self) -> i64 {
        self.0
    }

    /// The magnitude as an `Amount` (always valid by construction).
    pub fn magnitude(self) -> Amount {
        Amount(self.0.abs())
    }

    pub fn is_credit(self) -> bool {
        self.0 > 0
    }
}

/// An ISO 4217 currency that walleti supports, stored and shown as a lowercase code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Currency {
    Usd,
    Eur,
    Gbp,
    Inr,
    Jpy,
    Chf,
    Cad,
    Aud,
    Krw,
    Kwd,
}

/// Every supported currency with its code and minor-unit exponent (ISO 4217).
const CURRENCIES: [(Currency, &str, u32); 10] = [
    (Currency::Usd, "usd", 2),
    (Currency::Eur, "eur", 2),
    (Currency::Gbp, "gbp", 2),
    (Currency::Inr, "inr", 2),
    (Currency::Jpy, "jpy", 0),
    (Currency::Chf, "chf", 2),
    (Currency::Cad, "cad", 2),
    (Currency::Aud, "aud", 2),
    (Currency::Krw, "krw", 0),
    (Currency::Kwd, "kwd", 3),
];

impl Currency {
    /// Parses a lowercase ISO 4217 code. Upper case is rejected so that one currency has one
    /// spelling everywhere (the API contract says lowercase).
    pub fn parse(code: &str) -> Result<Currency, Rejection> {
        CURRENCIES
            .iter()
            .find(|(_, known, _)| *known == code)
            .map(|(currency, _, _)| *currency)
            .ok_or(Rejection::InvalidCurrency)
    }

    pub fn code(self) -> &'static str {
        self.entry().1
    }

    /// Number of digits after the decimal point (usd 2, jpy 0, kwd 3).
    pub fn exponent(self) -> u32 {
        self.entry().2
    }

    pub fn all() -> impl Iterator<Item = Currency> {
        CURRENCIES.iter().map(|(currency, _, _)| *currency)
    }

    fn entry(self) -> &'static (Currency, &'static str, u32) {
        CURRENCIES
            .iter()
            .find(|(currency, _, _)| *currency == self)
            .unwrap_or(&CURRENCIES[0])
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.code())
    }
}

impl Currency {
    /// How people write the currency in front of an amount.
    pub fn symbol(self) -> &'static str {
        match self {
            Currency::Usd => "$",
            Currency::Eur => "€",
            Currency::Gbp => "£",
            Currency::Inr => "₹",
            Currency::Jpy => "¥",
            Currency::Chf => "CHF ",
            Currency::Cad => "CA$",
            Currency::Aud => "A$",
            Currency::Krw => "₩",
            Currency::Kwd => "KD ",
        }
    }

    /// `minor_units` written for people: `-$10.05`, `¥500`, `KD 1.250`.
    pub fn format(self, minor_units: i64) -> String {
        let exponent = self.exponent();
        let sign = if minor_units < 0 { "-" } else { "" };
        let magnitude = minor_units.unsigned_abs();
        if exponent == 0 {
            return format!("{sign}{}{magnitude}", self.symbol());
        }
        let divisor = 10_u64.pow(exponent);
        format!(
            "{sign}{}{}.{:0width$}",
            self.symbol(),
            magnitude / divisor,
            magnitude % divisor,
            width = exponent as usize
        )
    }

    /// Parses an amount typed in major units (`10.05` usd → 1005) exactly, never through a
    /// float: digits, then at most the currency's number of decimals.
    pub fn parse_major_units(self, text: &str) -> Result<Amount, Rejection> {
        let text = text.trim();
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let exponent = self.exponent() as usize;
        let digits_only = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
        if whole.is_empty() && fraction.is_empty()
            || !digits_only(whole)
            || !digits_only(fraction)
            || fraction.len() > exponent
            || whole.len() > 13
            || (text.contains('.') && fraction.is_empty())
        {
            return Err(Rejection::InvalidAmount);
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| Rejection::InvalidAmount)?
        };
        let fraction_value: i64 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().map_err(|_| Rejection::InvalidAmount)?
        };
        let scale = 10_i64.pow(exponent as u32);
        let padding = 10_i64.pow((exponent - fraction.len()) as u32);
        let minor = whole
            .checked_mul(scale)
            .and_then(|minor| minor.checked_add(fraction_value * padding))
            .ok_or(Rejection::InvalidAmount)?;
        Amount::new(minor)
    }
}

/// An amount in a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    pub amount: Amount,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: Amount, currency: Currency) -> Money {
        Money { amount, currency }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exponent = self.currency.exponent();
        let divisor = 10_i64.pow(exponent);
        let minor = self.amount.minor_units();
        if exponent == 0 {
            return write!(formatter, "{minor} {}", self.currency);
        }
        write!(
            formatter,
            "{}.{:0width$} {}",
            minor / divisor,
            minor % divisor,
            self.currency,
            width = exponent as usize
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amount_bounds() {
        assert_eq!(Amount::new(0), Err(Rejection::InvalidAmount));
        assert_eq!(Amount::new(-5), Err(Rejection::InvalidAmount));
        assert_eq!(
            Amount::new(AMOUNT_MAX_MINOR_UNITS + 1),
            Err(Rejection::InvalidAmount)
        );
        assert_eq!(Amount::new(1).map(Amount::minor_units), Ok(1));
        assert_eq!(
            Amount::new(AMOUNT_MAX_MINOR_UNITS).map(Amount::minor_units),
            Ok(AMOUNT_MAX_MINOR_UNITS)
        );
    }

    #[test]
    fn amount_only_from_json_integers() {
        for bad in [
            json!(1.5),
            json!(10.0),
            json!("10"),
            json!(null),
            json!(true),
            json!(-1),
            json!(0),
            json!(1e13),
            json!(u64::MAX),
            json!([1]),
        ] {
            assert_eq!(
                Amount::from_json(&bad),
                Err(Rejection::InvalidAmount),
                "{bad}"
            );
        }
        assert_eq!(
            Amount::from_json(&json!(1050)).map(Amount::minor_units),
            Ok(1050)
        );
    }

    #[test]
    fn signed_amount_rejects_zero_and_huge() {
        assert!(SignedAmount::new(0).is_err());
        assert!(SignedAmount::new(i64::MIN).is_err());
        assert!(SignedAmount::new(-AMOUNT_MAX_MINOR_UNITS - 1).is_err());
        let debit = SignedAmount::new(-250).expect("valid");
        assert!(!debit.is_credit());
        assert_eq!(debit.magnitude().minor_units(), 250);
    }

    #[test]
    fn currencies_parse_lowercase_with_exponents() {
        assert_eq!(Currency::parse("usd"), Ok(Currency::Usd));
        assert_eq!(Currency::parse("USD"), Err(Rejection::InvalidCurrency));
        assert_eq!(Currency::parse("xyz"), Err(Rejection::InvalidCurrency));
        assert_eq!(Currency::Jpy.exponent(), 0);
        assert_eq!(Currency::Inr.exponent(), 2);
        for currency in Currency::all() {
            assert_eq!(Currency::parse(currency.code()), Ok(currency));
        }
    }

    #[test]
    fn money_displays_with_exponent() {
        let amount = Amount::new(1005).expect("valid");
        assert_eq!(Money::new(amount, Currency::Usd).to_string(), "10.05 usd");
        assert_eq!(Money::new(amount, Currency::Jpy).to_string(), "1005 jpy");
        assert_eq!(Money::new(amount, Currency::Kwd).to_string(), "1.005 kwd");
    }

    #[test]
    fn amounts_typed_in_major_units_are_parsed_exactly() {
        let parse = |currency: Currency, text: &str| {
            currency.parse_major_units(text).map(Amount::minor_units)
        };
        assert_eq!(parse(Currency::Usd, "10.05"), Ok(1005));
        assert_eq!(parse(Currency::Usd, "0.1"), Ok(10));
        assert_eq!(parse(Currency::Usd, "7"), Ok(700));
        assert_eq!(parse(Currency::Usd, " .5 "), Ok(50));
        assert_eq!(parse(Currency::Jpy, "500"), Ok(500));
        assert_eq!(parse(Currency::Kwd, "1.250"), Ok(1250));
        for bad in [
            "",
            ".",
            "1.",
            "1.005",
            "-1",
            "1e3",
            "1,000",
            "abc",
            "0",
            "0.00",
            "99999999999999",
        ] {
            assert_eq!(
                parse(Currency::Usd, bad),
                Err(Rejection::InvalidAmount),
                "{bad}"
            );
        }
        assert_eq!(parse(Currency::Jpy, "1.5"), Err(Rejection::InvalidAmount));
        assert_eq!(Currency::Usd.format(1005), "$10.05");
        assert_eq!(Currency::Usd.format(-5), "-$0.05");
        assert_eq!(Currency::Jpy.format(500), "¥500");
        assert_eq!(Currency::Kwd.format(1250), "KD 1.250");
    }
}

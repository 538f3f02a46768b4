//! Contact details parsed at the edge: `Email` (normalised to lowercase) and `PhoneNumber`
//! (E.164: `+`, a non-zero country digit, at most 15 digits in all).

use super::Rejection;
use std::fmt;

const EMAIL_LENGTH_MAX: usize = 320;
const EMAIL_LOCAL_LENGTH_MAX: usize = 64;
const PHONE_DIGITS_MIN: usize = 8;
const PHONE_DIGITS_MAX: usize = 15;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(text: &str) -> Result<Email, Rejection> {
        let text = text.trim();
        if text.is_empty() || text.len() > EMAIL_LENGTH_MAX {
            return Err(Rejection::InvalidEmail);
        }
        let (local, domain) = text.split_once('@').ok_or(Rejection::InvalidEmail)?;
        let local_ok = !local.is_empty()
            && local.len() <= EMAIL_LOCAL_LENGTH_MAX
            && local.chars().all(|c| c.is_ascii_graphic() && c != '@');
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !local_ok || !domain_ok {
            return Err(Rejection::InvalidEmail);
        }
        Ok(Email(text.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(text: &str) -> Result<PhoneNumber, Rejection> {
        let digits = text
            .trim()
            .strip_prefix('+')
            .ok_or(Rejection::InvalidPhone)?;
        let well_formed = (PHONE_DIGITS_MIN..=PHONE_DIGITS_MAX).contains(&digits.len())
            && digits.chars().all(|c| c.is_ascii_digit())
            && !digits.starts_with('0');
        if !well_formed {
            return Err(Rejection::InvalidPhone);
        }
        Ok(PhoneNumber(format!("+{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// Which of a user's contacts a one-time code verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContactChannel {
    Email,
    Phone,
}

impl ContactChannel {
    /// `email` or `phone`; anything else is `None`.
    pub fn parse(text: &str) -> Option<ContactChannel> {
        match text {
            "email" => Some(ContactChannel::Email),
            "phone" => Some(ContactChannel::Phone),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ContactChannel::Email => "email",
            ContactChannel::Phone => "phone",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse(" Ada@Example.COM ").map(|e| e.0),
            Ok("ada@example.com".into())
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@ex..com",
        ] {
            assert_eq!(Email::parse(bad), Err(Rejection::InvalidEmail), "{bad}");
        }
    }

    #[test]
    fn phones() {
        assert_eq!(
            PhoneNumber::parse("+14155550123").map(|p| p.0),
            Ok("+14155550123".into())
        );
        for bad in [
            "14155550123",
            "+0155550123",
            "+1415",
            "+1415555012345678",
            "+1415-555-0123",
            "",
        ] {
            assert_eq!(
                PhoneNumber::parse(bad),
                Err(Rejection::InvalidPhone),
                "{bad}"
            );
        }
    }
}

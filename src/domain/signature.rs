//! The webhook signature scheme walleti uses for bank events (and, later, for its own outgoing
//! webhooks) — the same as Stripe's: header `Walleti-Signature: t=<unix>,v1=<hex>` where the
//! hex is HMAC-SHA256(secret, "<t>.<raw body>"). Verification accepts any of several secrets
//! (rotation), compares in constant time, and refuses timestamps outside the tolerance.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a signature's timestamp may be from now, in seconds.
pub const SIGNATURE_TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is missing")]
    Missing,
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature timestamp is outside the tolerance")]
    Expired,
    #[error("no signature matches")]
    Mismatch,
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value for `body` signed at `timestamp` (unix seconds).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let signature = hex::encode(
        mac(secret.as_bytes(), timestamp, body)
            .finalize()
            .into_bytes(),
    );
    format!("t={timestamp},v1={signature}")
}

/// Verifies `header` over the raw `body` against any of `secrets`, at time `now` (unix seconds).
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[String],
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => {
                signatures.push(hex::decode(value).map_err(|_| SignatureError::Malformed)?)
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > SIGNATURE_TOLERANCE_SECONDS {
        return Err(SignatureError::Expired);
    }
    let matched = secrets.iter().any(|secret| {
        signatures.iter().any(|signature| {
            mac(secret.as_bytes(), timestamp, body)
                .verify_slice(signature)
                .is_ok()
        })
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn round_trip_with_rotation() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign("old-secret", NOW, body);
        let secrets = vec!["new-secret".to_owned(), "old-secret".to_owned()];
        assert_eq!(verify(Some(&header), body, &secrets, NOW + 10), Ok(()));
    }

    #[test]
    fn refusals() {
        let body = br#"{"id":"evt_1"}"#;
        let secrets = vec!["secret".to_owned()];
        let header = sign("secret", NOW, body);
        assert_eq!(
            verify(None, body, &secrets, NOW),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(Some("garbage"), body, &secrets, NOW),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some(&header), br#"{"id":"evt_2"}"#, &secrets, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), body, &["other".to_owned()], NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), body, &secrets, NOW + 301),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            verify(Some(&header), body, &secrets, NOW - 301),
            Err(SignatureError::Expired)
        );
        let forged = format!("t={NOW},v1={}", "00".repeat(32));
        assert_eq!(
            verify(Some(&forged), body, &secrets, NOW),
            Err(SignatureError::Mismatch)
        );
    }
}

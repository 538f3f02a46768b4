//! SMS through Twilio's Messages API, on the project's own HTTP client. Not the `twilio` crate:
//! it hard-codes `https://api.twilio.com` (so it cannot be tested against a local fake), runs on
//! hyper 0.14 with OpenSSL, and compares webhook signatures in non-constant time; the crate named
//! `twilio-rs` 0.1.1 posts Messages without their fields. This client posts
//! `{TWILIO_API_BASE}/2010-04-01/Accounts/{sid}/Messages.json` with basic auth and the form fields
//! `To`, `From`, `Body`, `StatusCallback`, and verifies Twilio's delivery-status callbacks
//! (`X-Twilio-Signature`: base64 HMAC-SHA1 of the URL followed by the sorted parameters).

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::time::Duration;

const TWILIO_TIMEOUT_SECONDS: u64 = 10;

#[derive(Clone)]
pub struct Twilio {
    http: reqwest::Client,
    api_base: String,
    account_sid: String,
    auth_token: String,
    from: String,
    /// Where Twilio reports delivery status (walleti's `/webhooks/twilio/status`).
    pub status_callback_url: String,
}

impl std::fmt::Debug for Twilio {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "Twilio {{ api_base: {:?}, account_sid: {:?}, token: *** }}",
            self.api_base, self.account_sid
        )
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                encoded.push(byte as char)
            }
            b' ' => encoded.push('+'),
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    encoded
}

impl Twilio {
    pub fn new(
        api_base: &str,
        account_sid: &str,
        auth_token: &str,
        from: &str,
        status_callback_url: String,
    ) -> Twilio {
        Twilio {
            http: crate::providers::outbound::Outbound::default()
                .builder(Duration::from_secs(TWILIO_TIMEOUT_SECONDS))
                .build()
                .unwrap_or_default(),
            api_base: api_base.trim_end_matches('/').to_owned(),
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            from: from.to_owned(),
            status_callback_url,
        }
    }

    /// Sends through a client that trusts the operator's extra CAs too.
    pub fn with_outbound(
        mut self,
        outbound: &crate::providers::outbound::Outbound,
    ) -> anyhow::Result<Twilio> {
        self.http = outbound.client(Duration::from_secs(TWILIO_TIMEOUT_SECONDS))?;
        Ok(self)
    }

    /// Sends one SMS; returns Twilio's message SID.
    pub async fn send(&self, to: &str, body: &str) -> anyhow::Result<String> {
        let form = [
            ("To", to),
            ("From", self.from.as_str()),
            ("Body", body),
            ("StatusCallback", self.status_callback_url.as_str()),
        ]
        .iter()
        .map(|(key, value)| format!("{key}={}", form_encode(value)))
        .collect::<Vec<_>>()
        .join("&");
        let response = self
            .http
            .post(format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                self.api_base, self.account_sid
            ))
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!(
                "twilio answered {status}: {}",
                answer["message"].as_str().unwrap_or("")
            );
        }
        answer["sid"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("twilio answered without a message sid"))
    }

    /// Verifies `X-Twilio-Signature` for a callback to `url` with form `params`, in constant time.
    pub fn verify_callback(&self, url: &str, params: &[(String, String)], signature: &str) -> bool {
        let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(signature.trim())
        else {
            return false;
        };
        let mut sorted: Vec<&(String, String)> = params.iter().collect();
        sorted.sort();
        let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(self.auth_token.as_bytes()) else {
            return false;
        };
        mac.update(url.as_bytes());
        for (key, value) in sorted {
            mac.update(key.as_bytes());
            mac.update(value.as_bytes());
        }
        mac.verify_slice(&expected).is_ok()
    }

    /// The signature Twilio would send (for tests and tooling).
    pub fn sign_callback(&self, url: &str, params: &[(String, String)]) -> String {
        let mut sorted: Vec<&(String, String)> = params.iter().collect();
        sorted.sort();
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(self.auth_token.as_bytes())
            .unwrap_or_else(|_| unreachable!());
        mac.update(url.as_bytes());
        for (key, value) in sorted {
            mac.update(key.as_bytes());
            mac.update(value.as_bytes());
        }
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_signatures_verify_and_forgeries_do_not() {
        let twilio = Twilio::new(
            "http://127.0.0.1:1",
            "AC1",
            "token",
            "+15005550006",
            "https://walleti.test/webhooks/twilio/status".into(),
        );
        let params = vec![
            ("MessageSid".to_owned(), "SM1".to_owned()),
            ("MessageStatus".to_owned(), "delivered".to_owned()),
        ];
        let url = "https://walleti.test/webhooks/twilio/status";
        let signature = twilio.sign_callback(url, &params);
        assert!(twilio.verify_callback(url, &params, &signature));
        let mut tampered = params.clone();
        tampered[1].1 = "failed".into();
        assert!(!twilio.verify_callback(url, &tampered, &signature));
        assert!(!twilio.verify_callback(url, &params, "bm90IGEgc2lnbmF0dXJl"));
        assert!(!twilio.verify_callback(url, &params, "%%%"));
        assert_eq!(form_encode("+1 415&x"), "%2B1+415%26x");
    }
}

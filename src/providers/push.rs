//! Push notifications through FCM HTTP v1 (`POST {FCM_API_BASE}/v1/projects/{project}/messages:send`)
//! with an OAuth2 access token obtained from a service-account key by the JWT-bearer grant
//! against a configurable token URL (cached until shortly before it expires). A token FCM
//! reports as unregistered is reported back so the device can be removed.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const FCM_TIMEOUT_SECONDS: u64 = 10;
const ASSERTION_LIFETIME_SECONDS: i64 = 3600;
/// An access token is renewed this long before it expires.
const TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(60);

pub const FCM_API_BASE_DEFAULT: &str = "https://fcm.googleapis.com";
pub const FCM_TOKEN_URL_DEFAULT: &str = "https://oauth2.googleapis.com/token";

/// The fields of a Google service-account key file that matter here.
#[derive(Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: String,
    #[serde(default)]
    token_uri: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

/// What FCM said about one device token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Accepted; FCM's message name.
    Sent(String),
    /// The token is no longer valid: remove the device.
    Unregistered,
}

pub struct Fcm {
    http: reqwest::Client,
    api_base: String,
    project_id: String,
    token_url: String,
    client_email: String,
    key: EncodingKey,
    access_token: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for Fcm {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "Fcm {{ project_id: {:?}, api_base: {:?}, key: *** }}",
            self.project_id, self.api_base
        )
    }
}

impl Fcm {
    /// `service_account`: the key file's JSON. `token_url`: overrides the key's `token_uri`.
    pub fn new(
        project_id: &str,
        service_account: &str,
        api_base: &str,
        token_url: Option<&str>,
    ) -> anyhow::Result<Fcm> {
        let account: ServiceAccount = serde_json::from_str(service_account)?;
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())?;
        let token_url = token_url
            .map(str::to_owned)
            .or(account.token_uri)
            .unwrap_or_else(|| FCM_TOKEN_URL_DEFAULT.to_owned());
        Ok(Fcm {
            http: crate::providers::outbound::Outbound::default()
                .client(Duration::from_secs(FCM_TIMEOUT_SECONDS))?,
            api_base: api_base.trim_end_matches('/').to_owned(),
            project_id: project_id.to_owned(),
            token_url,
            client_email: account.client_email,
            key,
            access_token: Mutex::new(None),
        })
    }

    /// Sends through a client that trusts the operator's extra CAs too.
    pub fn with_outbound(
        mut self,
        outbound: &crate::providers::outbound::Outbound,
    ) -> anyhow::Result<Fcm> {
        self.http = outbound.client(Duration::from_secs(FCM_TIMEOUT_SECONDS))?;
        Ok(self)
    }

    async fn access_token(&self) -> anyhow::Result<String> {
        if let Ok(cached) = self.access_token.lock()
            && let Some((token, expires)) = cached.as_ref()
            && Instant::now() + TOKEN_RENEW_MARGIN < *expires
        {
            return Ok(token.clone());
        }
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: &self.client_email,
            scope: FCM_SCOPE,
            aud: &self.token_url,
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECONDS,
        };
        let assertion = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)?;
        let response = self
            .http
            .post(&self.token_url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"))
            .send()
            .await?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!("token endpoint answered {status}");
        }
        let token = answer["access_token"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("token endpoint answered without an access_token"))?
            .to_owned();
        let lifetime = Duration::from_secs(answer["expires_in"].as_u64().unwrap_or(3600));
        if let Ok(mut cached) = self.access_token.lock() {
            *cached = Some((token.clone(), Instant::now() + lifetime));
        }
        Ok(token)
    }

    /// Sends one notification to one device token.
    pub async fn send(
        &self,
        device_token: &str,
        title: &str,
        body: &str,
    ) -> anyhow::Result<PushOutcome> {
        let token = self.access_token().await?;
        let response = self
            .http
            .post(format!("{}/v1/projects/{}/messages:send", self.api_base, self.project_id))
            .bearer_auth(token)
            .json(&serde_json::json!({"message": {"token": device_token, "notification": {"title": title, "body": body}}}))
            .send()
            .await?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        if status.is_success() {
            return Ok(PushOutcome::Sent(
                answer["name"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        let unregistered = answer["error"]["details"]
            .as_array()
            .is_some_and(|details| {
                details
                    .iter()
                    .any(|detail| detail["errorCode"] == "UNREGISTERED")
            });
        if unregistered || status == reqwest::StatusCode::NOT_FOUND {
            return Ok(PushOutcome::Unregistered);
        }
        anyhow::bail!(
            "fcm answered {status}: {}",
            answer["error"]["message"].as_str().unwrap_or("")
        )
    }
}

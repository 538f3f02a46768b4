//! The bank's API (the bank simulator speaks it): ask the bank to collect an amount for an
//! on-ramp (the bank answers with the page the user approves the payment on), to pay money
//! out, and for its settlement statement. Every request carries walleti's bank API token
//! (`WALLETI_BANK_API_TOKEN`) as a bearer token when one is configured.

use serde::Deserialize;
use std::time::Duration;

/// One request to the bank waits at most this long.
pub const BANK_TIMEOUT_SECONDS: u64 = 10;

#[derive(Clone)]
pub struct BankClient {
    base_url: String,
    api_token: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for BankClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "BankClient {{ base_url: {:?}, token: *** }}",
            self.base_url
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct BankPayment {
    pub id: String,
    pub redirect_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BankError {
    #[error("bank unreachable: {0}")]
    Unreachable(#[from] reqwest::Error),
    #[error("bank refused the payment: {0}")]
    Refused(String),
}

/// One payment the bank says it paid (its settlement statement).
#[derive(Debug, Clone, Deserialize)]
pub struct Settlement {
    pub payment_id: String,
    /// The on-ramp id.
    pub reference: String,
    pub amount: i64,
    pub currency: String,
}

#[derive(Debug, Deserialize)]
struct SettlementList {
    data: Vec<Settlement>,
}

/// What the bank should collect.
#[derive(Debug, Clone, Copy)]
pub struct PaymentRequest<'a> {
    pub reference: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub callback_url: &'a str,
}

/// What the bank should pay out.
#[derive(Debug, Clone, Copy)]
pub struct PayoutRequest<'a> {
    /// The payout id.
    pub reference: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub callback_url: &'a str,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BankPayout {
    pub id: String,
}

/// What the bank says about one payment or payout now (`GET /api/payments/{id}`,
/// `GET /api/payouts/{id}`): `status` is `pending`, `approved` / `declined` (payments) or
/// `paid` / `failed` (payouts).
#[derive(Debug, Clone, Deserialize)]
pub struct BankRecord {
    pub id: String,
    /// walleti's on-ramp or payout id.
    pub reference: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
}

impl BankClient {
    pub fn new(
        base_url: &str,
        api_token: Option<String>,
        outbound: &crate::providers::outbound::Outbound,
    ) -> anyhow::Result<BankClient> {
        Ok(BankClient {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_token,
            http: outbound.client(Duration::from_secs(BANK_TIMEOUT_SECONDS))?,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        match &self.api_token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Asks the bank to collect the payment (idempotent by `reference` at the bank).
    pub async fn create_payment(
        &self,
        request: PaymentRequest<'_>,
    ) -> Result<BankPayment, BankError> {
        let response = self
            .request(reqwest::Method::POST, "/api/payments")
            .json(&serde_json::json!({
                "reference": request.reference,
                "amount": request.amount,
                "currency": request.currency,
                "callback_url": request.callback_url,
            }))
            .send()
            .await?;
        if !response.status().is_success() {
            let status = response.status();
            return Err(BankError::Refused(format!(
                "{status}: {}",
                response.text().await.unwrap_or_default()
            )));
        }
        Ok(response.json().await?)
    }

    /// Asks the bank to pay money out (idempotent by `reference` at the bank). The bank
    /// reports `payout.paid` or `payout.failed` to the callback.
    pub async fn create_payout(&self, request: PayoutRequest<'_>) -> Result<BankPayout, BankError> {
        let response = self
            .request(reqwest::Method::POST, "/api/payouts")
            .json(&serde_json::json!({
                "reference": request.reference,
                "amount": request.amount,
                "currency": request.currency,
                "callback_url": request.callback_url,
            }))
            .send()
            .await?;
        if !response.status().is_success() {
            let status = response.status();
            return Err(BankError::Refused(format!(
                "{status}: {}",
                response.text().await.unwrap_or_default()
            )));
        }
        Ok(response.json().await?)
    }

    /// The bank's record of a payment (`kind` = `payments`) or payout (`payouts`).
    pub async fn record(&self, kind: &str, id: &str) -> Result<BankRecord, BankError> {
        let response = self
            .request(reqwest::Method::GET, &format!("/api/{kind}/{id}"))
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(BankError::Refused(format!(
                "{kind} {id}: {}",
                response.status()
            )));
        }
        Ok(response.json().await?)
    }

    /// The bank's settlement statement: every payment it paid.
    pub async fn settlements(&self) -> Result<Vec<Settlement>, BankError> {
        self.statement("/api/settlements").await
    }

    /// The bank's payout statement: every payout it paid (`reference`: the payout id).
    pub async fn payout_settlements(&self) -> Result<Vec<Settlement>, BankError> {
        self.statement("/api/payout_settlements").await
    }

    async fn statement(&self, path: &str) -> Result<Vec<Settlement>, BankError> {
        let response = self.request(reqwest::Method::GET, path).send().await?;
        if !response.status().is_success() {
            return Err(BankError::Refused(format!("{path}: {}", response.status())));
        }
        Ok(response.json::<SettlementList>().await?.data)
    }
}

//! Stripe Checkout through async-stripe: create a Checkout Session for an on-ramp (`mode =
//! payment`, one line item in the on-ramp's currency and amount, the on-ramp id as
//! `client_reference_id`, in the metadata and as Stripe's idempotency key). The API base URL is
//! configurable (`STRIPE_API_BASE`) so tests talk to a fake Stripe.

use crate::domain::OnrampId;
use std::collections::HashMap;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_checkout::CheckoutSessionMode;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    ListCheckoutSession, ProductData, RetrieveCheckoutSession,
};
use stripe_checkout::{CheckoutSessionId, CheckoutSessionPaymentStatus, CheckoutSessionStatus};

/// Pages of 100 sessions read at most per listing (10,000 sessions).
const LIST_PAGES_MAX: usize = 100;

#[derive(Clone)]
pub struct StripeCheckout {
    client: Client,
    public_url: String,
}

/// What Stripe answered: the session and the page to send the user to.
#[derive(Debug, Clone)]
pub struct CheckoutSessionCreated {
    pub id: String,
    pub url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StripeFailure {
    #[error("stripe client: {0}")]
    Client(String),
    #[error("stripe request failed: {0}")]
    Request(String),
    #[error("stripe answered without a checkout url")]
    MissingUrl,
}

/// What Stripe says about a session (the ingestor credits this, not the webhook payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFacts {
    pub id: String,
    pub paid: bool,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    pub client_reference_id: Option<String>,
    pub expired: bool,
}

fn facts(session: stripe_checkout::CheckoutSession) -> SessionFacts {
    SessionFacts {
        id: session.id.to_string(),
        paid: session.payment_status == CheckoutSessionPaymentStatus::Paid,
        amount_total: session.amount_total,
        currency: session.currency.map(|currency| currency.to_string()),
        client_reference_id: session.client_reference_id,
        expired: session.status == Some(CheckoutSessionStatus::Expired),
    }
}

/// What a session is charged for.
#[derive(Debug, Clone, Copy)]
pub struct CheckoutOrder<'a> {
    pub onramp: OnrampId,
    pub amount: i64,
    pub currency: &'a str,
}

/// One attempt of a Stripe API call waits at most this long.
pub const STRIPE_TIMEOUT_SECONDS: u64 = 10;

impl StripeCheckout {
    /// `api_base`: e.g. `https://api.stripe.com/` (the trailing slash matters: paths are joined
    /// as `{base}v1/...`).
    pub fn new(
        secret_key: &str,
        api_base: &str,
        public_url: &str,
    ) -> Result<StripeCheckout, StripeFailure> {
        let api_base = if api_base.ends_with('/') {
            api_base.to_owned()
        } else {
            format!("{api_base}/")
        };
        let client = ClientBuilder::new(secret_key)
            .url(api_base)
            .timeout(std::time::Duration::from_secs(STRIPE_TIMEOUT_SECONDS))
            .build()
            .map_err(|error| StripeFailure::Client(error.to_string()))?;
        Ok(StripeCheckout {
            client,
            public_url: public_url.trim_end_matches('/').to_owned(),
        })
    }

    pub async fn create_session(
        &self,
        order: CheckoutOrder<'_>,
    ) -> Result<CheckoutSessionCreated, StripeFailure> {
        let reference = order.onramp.to_string();
        let currency = order
            .currency
            .parse::<stripe_types::Currency>()
            .map_err(|_| {
                StripeFailure::Request(format!("unsupported currency {}", order.currency))
            })?;
        let mut price = CreateCheckoutSessionLineItemsPriceData::new(currency);
        price.unit_amount = Some(order.amount);
        price.product_data = Some(ProductData::new("walleti top-up"));
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price_data = Some(price);
        item.quantity = Some(1);
        let metadata = HashMap::from([("onramp_id".to_owned(), reference.clone())]);
        let key = IdempotencyKey::new(&reference)
            .map_err(|error| StripeFailure::Request(error.to_string()))?;
        let session = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Payment)
            .line_items(vec![item])
            .client_reference_id(reference.clone())
            .metadata(metadata)
            // The user app's page of the on-ramp: it shows the status as the webhook settles it.
            .success_url(format!(
                "{}/app/onramps/{reference}?checkout=done",
                self.public_url
            ))
            .cancel_url(format!(
                "{}/app/onramps/{reference}?checkout=canceled",
                self.public_url
            ))
            .customize()
            .request_strategy(RequestStrategy::Idempotent(key))
            .send(&self.client)
            .await
            .map_err(|error| StripeFailure::Request(error.to_string()))?;
        let url = session.url.ok_or(StripeFailure::MissingUrl)?;
        Ok(CheckoutSessionCreated {
            id: session.id.to_string(),
            url,
        })
    }

    /// Retrieves the session from the Stripe API.
    pub async fn retrieve_session(&self, id: &str) -> Result<SessionFacts, StripeFailure> {
        let session = RetrieveCheckoutSession::new(CheckoutSessionId::from(id.to_owned()))
            .send(&self.client)
            .await
            .map_err(|error| StripeFailure::Request(error.to_string()))?;
        Ok(facts(session))
    }

    /// Every Checkout Session created since `since` (unix seconds), page by page.
    pub async fn sessions_created_since(
        &self,
        since: i64,
    ) -> Result<Vec<SessionFacts>, StripeFailure> {
        let mut sessions = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..LIST_PAGES_MAX {
            let mut request = ListCheckoutSession::new()
                .created(stripe_types::RangeQueryTs::gte(since))
                .limit(100);
            if let Some(after) = &after {
                request = request.starting_after(after.clone());
            }
            let page = request
                .send(&self.client)
                .await
                .map_err(|error| StripeFailure::Request(error.to_string()))?;
            after = page.data.last().map(|session| session.id.to_string());
            let has_more = page.has_more;
            sessions.extend(page.data.into_iter().map(facts));
            if !has_more || after.is_none() {
                break;
            }
        }
        Ok(sessions)
    }
}

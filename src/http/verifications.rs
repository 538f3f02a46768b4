//! Contact verification: a user proves they receive mail at their email, or texts at their
//! phone, by typing back a one-time code walleti sent there (`POST /v1/me/verifications`, then
//! `POST /v1/me/verifications/confirm`). With `WALLETI_P2P_REQUIRE_VERIFIED`, only a verified
//! contact receives money sent to it.
//!
//! A code is 6 random digits, stored only as an HMAC-SHA256 keyed by its row id (binding it to
//! the channel and the contact it went to), usable for `verification_code_lifetime` and for
//! `VERIFICATION_ATTEMPTS_MAX` guesses; asking again retires the previous code and is rate
//! limited per user and channel; a code by SMS counts against the user's daily SMS cap.

use super::AppState;
use super::auth::{self, CurrentUser};
use super::error::{ApiError, ErrorBody, ErrorType};
use super::request::{Fields, json_object, read_body};
use super::views::{UserView, timestamp};
use crate::domain::ContactChannel;
use crate::store::entities::users;
use crate::store::verifications::NewVerification;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;

/// Digits in a verification code.
pub const VERIFICATION_CODE_DIGITS: usize = 6;

#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestVerificationRequest {
    /// `email` or `phone`: which of the caller's contacts to verify.
    pub channel: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ConfirmVerificationRequest {
    /// `email` or `phone`.
    pub channel: String,
    /// The 6-digit code walleti sent.
    pub code: String,
}

/// A code on its way: where it went (masked) and until when it works.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationView {
    /// Always `verification`.
    pub object: &'static str,
    /// `email` or `phone`.
    pub channel: &'static str,
    /// The contact the code was sent to, partly masked.
    pub sent_to: String,
    pub expires_at: String,
}

#[utoipa::path(post, path = "/v1/me/verifications", tag = "users", security(("bearer" = [])),
    request_body = RequestVerificationRequest,
    responses((status = 202, body = VerificationView, description = "A one-time code is sent to the contact"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "Too many codes asked for, or the daily SMS cap is reached"),
        (status = 503, body = ErrorBody, description = "The channel's provider is not configured or did not take the message")))]
pub async fn request_verification(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = auth::current_user(&request, &state).await?;
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let object = json_object(&body)?;
    let channel = channel(&Fields(&object))?;
    let sent = send_code(&state, caller, channel).await?;
    Ok(HttpResponse::Accepted().json(sent))
}

#[utoipa::path(post, path = "/v1/me/verifications/confirm", tag = "users", security(("bearer" = [])),
    request_body = ConfirmVerificationRequest,
    responses((status = 200, body = UserView, description = "The contact is verified"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "`verification_failed`: wrong, expired, used or exhausted code")))]
pub async fn confirm_verification(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = auth::current_user(&request, &state).await?;
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let object = json_object(&body)?;
    let fields = Fields(&object);
    let channel = channel(&fields)?;
    let code = fields.required_str("code")?;
    let user = confirm_code(&state, caller, channel, code).await?;
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}

fn channel(fields: &Fields<'_>) -> Result<ContactChannel, ApiError> {
    ContactChannel::parse(fields.required_str("channel")?).ok_or_else(|| {
        ApiError::invalid_param(
            "parameter_invalid",
            "channel",
            "channel must be email or phone.",
        )
    })
}

/// 422 `verification_failed`: the same answer for a wrong, expired, used or exhausted code.
pub fn verification_failed() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorType::InvalidRequestError,
        "verification_failed",
        "The code is wrong or no longer valid; ask for a new one.",
    )
    .with_param("code")
}

/// Sends a new code to the caller's contact on `channel` (retiring the previous one).
pub async fn send_code(
    state: &AppState,
    caller: CurrentUser,
    channel: ContactChannel,
) -> Result<VerificationView, ApiError> {
    state
        .rate_limiter
        .admit(
            &format!("verification:{}:{}", caller.user_id, channel.as_str()),
            state.limits.verification_quota,
        )
        .await?;
    let user = state
        .store
        .find_user(caller.user_id)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    match channel {
        ContactChannel::Email if state.mailer.is_none() => {
            return Err(super::onramps::provider_not_configured("Email (SMTP)"));
        }
        ContactChannel::Phone if state.twilio.is_none() => {
            return Err(super::onramps::provider_not_configured("SMS (Twilio)"));
        }
        _ => {}
    }
    let now = state.clock.now();
    if channel == ContactChannel::Phone {
        let day = now.format("%Y-%m-%d").to_string();
        if !state
            .store
            .reserve_sms(caller.user_id, &day, state.limits.sms_per_user_day_max)
            .await?
        {
            return Err(sms_cap_reached(now));
        }
    }
    let contact = contact_of(&user, channel).to_owned();
    let code = new_code();
    let id = uuid::Uuid::now_v7().to_string();
    let expires_at = now
        + chrono::Duration::from_std(state.limits.verification_code_lifetime).unwrap_or_default();
    state
        .store
        .start_verification(&NewVerification {
            code_hash: code_hmac(&id, channel, &contact, &code),
            id,
            user: caller.user_id,
            channel,
            contact: contact.clone(),
            created_at: now,
            expires_at,
        })
        .await?;
    deliver_code(state, &user, channel, &code).await?;
    Ok(VerificationView {
        object: "verification",
        channel: channel.as_str(),
        sent_to: masked(&contact, channel),
        expires_at: timestamp(expires_at),
    })
}

/// Checks `code` against the caller's live code on `channel`; on a match the contact is
/// verified and the updated user returned.
pub async fn confirm_code(
    state: &AppState,
    caller: CurrentUser,
    channel: ContactChannel,
    code: &str,
) -> Result<users::Model, ApiError> {
    let code = code.trim();
    if code.len() != VERIFICATION_CODE_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(verification_failed());
    }
    let now = state.clock.now();
    let Some(verification) = state
        .store
        .live_verification(caller.user_id, channel, now)
        .await?
    else {
        return Err(verification_failed());
    };
    // The guess is counted before it is compared.
    if !state
        .store
        .spend_verification_attempt(&verification.id)
        .await?
    {
        return Err(verification_failed());
    }
    if !code_matches(
        &verification.code_hash,
        &verification.id,
        channel,
        &verification.contact,
        code,
    ) {
        return Err(verification_failed());
    }
    if !state
        .store
        .complete_verification(&verification, caller.user_id, channel, now)
        .await?
    {
        return Err(verification_failed());
    }
    state
        .store
        .find_user(caller.user_id)
        .await?
        .ok_or_else(ApiError::unauthenticated)
}

fn contact_of(user: &users::Model, channel: ContactChannel) -> &str {
    match channel {
        ContactChannel::Email => &user.email,
        ContactChannel::Phone => &user.phone,
    }
}

/// 429 when the user's SMS for today are spent: retry after midnight UTC.
fn sms_cap_reached(now: chrono::DateTime<chrono::Utc>) -> ApiError {
    let mut error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorType::RateLimitError,
        "rate_limited",
        "Too many text messages to this phone today; try again tomorrow or verify by email.",
    );
    let tomorrow = (now + chrono::Duration::days(1))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|midnight| midnight.and_utc());
    error.retry_after_seconds =
        tomorrow.map(|midnight| u64::try_from((midnight - now).num_seconds()).unwrap_or(1));
    error
}

/// Sends the code by email or SMS; a provider failure is a 503 (ask again).
async fn deliver_code(
    state: &AppState,
    user: &users::Model,
    channel: ContactChannel,
    code: &str,
) -> Result<(), ApiError> {
    let minutes = state.limits.verification_code_lifetime.as_secs() / 60;
    let sent = match (channel, &state.mailer, &state.twilio) {
        (ContactChannel::Email, Some(mailer), _) => {
            let text = format!(
                "Your walleti verification code is {code}. It works for {minutes} minutes. \
                 If you did not ask for it, ignore this message."
            );
            mailer
                .send(&crate::providers::email::Email {
                    to_address: &user.email,
                    to_name: &user.name,
                    subject: "Your walleti verification code",
                    text: &text,
                })
                .await
        }
        (ContactChannel::Phone, _, Some(twilio)) => twilio
            .send(
                &user.phone,
                &format!(
                    "walleti: your verification code is {code}. It works for {minutes} minutes."
                ),
            )
            .await
            .map(|_| ()),
        _ => Err(anyhow::anyhow!("channel not configured")),
    };
    sent.map_err(|error| {
        tracing::warn!(error = %format!("{error:#}"), channel = channel.as_str(), "send verification code");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::ApiError,
            "provider_unavailable",
            "The code could not be sent just now; ask for a new one in a moment.",
        )
    })
}

/// 6 uniformly random digits.
fn new_code() -> String {
    let number: u32 = rand::random_range(0..1_000_000);
    format!("{number:0width$}", width = VERIFICATION_CODE_DIGITS)
}

fn code_mac(id: &str, channel: ContactChannel, contact: &str, code: &str) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(id.as_bytes()).ok()?;
    mac.update(channel.as_str().as_bytes());
    mac.update(b"\n");
    mac.update(contact.as_bytes());
    mac.update(b"\n");
    mac.update(code.as_bytes());
    Some(mac)
}

/// Hex HMAC-SHA256 of the code, keyed by the verification's id and bound to its contact.
pub fn code_hmac(id: &str, channel: ContactChannel, contact: &str, code: &str) -> String {
    code_mac(id, channel, contact, code)
        .map(|mac| hex::encode(mac.finalize().into_bytes()))
        .unwrap_or_default()
}

/// Compares in constant time.
fn code_matches(
    stored_hex: &str,
    id: &str,
    channel: ContactChannel,
    contact: &str,
    code: &str,
) -> bool {
    match (
        hex::decode(stored_hex),
        code_mac(id, channel, contact, code),
    ) {
        (Ok(stored), Some(mac)) => mac.verify_slice(&stored).is_ok(),
        _ => false,
    }
}

/// `a•••@example.com`, `+1•••••••0100`: enough to recognise, not to harvest.
fn masked(contact: &str, channel: ContactChannel) -> String {
    match channel {
        ContactChannel::Email => match contact.split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}•••@{domain}")
            }
            None => "•••".to_owned(),
        },
        ContactChannel::Phone => {
            let digits: Vec<char> = contact.chars().collect();
            let keep_start = 2.min(digits.len());
            let keep_end = 4.min(digits.len().saturating_sub(keep_start));
            let start: String = digits[..keep_start].iter().collect();
            let end: String = digits[digits.len() - keep_end..].iter().collect();
            let hidden = digits.len() - keep_start - keep_end;
            format!("{start}{}{end}", "•".repeat(hidden))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_six_digits_and_its_hmac_binds_row_channel_and_contact() {
        let code = new_code();
        assert_eq!(code.len(), VERIFICATION_CODE_DIGITS);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
        let stored = code_hmac("row-1", ContactChannel::Email, "ada@example.com", &code);
        assert_eq!(stored.len(), 64);
        assert!(!stored.contains(&code), "never the code itself");
        let matches =
            |id, channel, contact, code| code_matches(&stored, id, channel, contact, code);
        assert!(matches(
            "row-1",
            ContactChannel::Email,
            "ada@example.com",
            &code
        ));
        assert!(!matches(
            "row-2",
            ContactChannel::Email,
            "ada@example.com",
            &code
        ));
        assert!(!matches(
            "row-1",
            ContactChannel::Phone,
            "ada@example.com",
            &code
        ));
        assert!(!matches(
            "row-1",
            ContactChannel::Email,
            "eve@example.com",
            &code
        ));
        let other = if code == "000000" { "000001" } else { "000000" };
        assert!(!matches(
            "row-1",
            ContactChannel::Email,
            "ada@example.com",
            other
        ));
    }

    #[test]
    fn contacts_are_masked() {
        assert_eq!(
            masked("ada@example.com", ContactChannel::Email),
            "a•••@example.com"
        );
        assert_eq!(
            masked("+14155550100", ContactChannel::Phone),
            "+1••••••0100"
        );
    }
}

//! Merchants: sign up, log in and out, who am I, their sessions (listed, revoked one by one or
//! all at once, and by a password change), and secret API keys (created and shown once,
//! listed redacted, revoked). Keys are managed from a merchant session only: a leaked key
//! cannot mint more keys.

use super::AppState;
use super::auth::{self, API_KEY_PREFIX, CurrentMerchant, sha256_hex};
use super::error::{ApiError, ErrorBody, ErrorType};
use super::request::{Fields, json_object, page_request, read_body};
use super::views::{ListView, timestamp};
use crate::config::generate_token;
use crate::domain::{ApiKeyId, Email, MerchantId, SessionId};
use crate::store::entities::{api_keys, merchant_sessions, merchants};
use crate::store::merchants::{ApiKeyScope, NewMerchant};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::ToSchema;

const NAME_LENGTH_MAX: usize = 200;

#[derive(Debug, Serialize, ToSchema)]
pub struct MerchantView {
    pub id: String,
    /// Always `merchant`.
    pub object: &'static str,
    pub name: String,
    pub email: String,
    pub created_at: String,
}

impl From<&merchants::Model> for MerchantView {
    fn from(merchant: &merchants::Model) -> MerchantView {
        MerchantView {
            id: merchant.id.clone(),
            object: "merchant",
            name: merchant.name.clone(),
            email: merchant.email.clone(),
            created_at: timestamp(merchant.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MerchantSessionView {
    pub id: String,
    /// Always `merchant_session`.
    pub object: &'static str,
    /// The bearer token; shown only now.
    pub token: String,
    pub expires_at: String,
    pub created_at: String,
    pub merchant: MerchantView,
}

/// A merchant session as listed: never its token.
#[derive(Debug, Serialize, ToSchema)]
pub struct MerchantSessionSummaryView {
    pub id: String,
    /// Always `merchant_session`.
    pub object: &'static str,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    pub created_at: String,
    /// Whether this is the session of the request's own token.
    pub current: bool,
}

impl MerchantSessionSummaryView {
    pub fn new(
        session: &merchant_sessions::Model,
        current: SessionId,
    ) -> MerchantSessionSummaryView {
        MerchantSessionSummaryView {
            id: session.id.clone(),
            object: "merchant_session",
            expires_at: timestamp(session.expires_at),
            revoked_at: session.revoked_at.map(timestamp),
            created_at: timestamp(session.created_at),
            current: session.id == current.to_string(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    /// Always `api_key`.
    pub object: &'static str,
    /// The secret `sk_…`: present only in the response that creates the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The secret's first and last characters, to recognise it.
    pub redacted: String,
    pub name: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    pub created_at: String,
    /// `full`, or `payments`: payment intents only (create, read, list, capture, cancel).
    pub scope: String,
}

impl From<&api_keys::Model> for ApiKeyView {
    fn from(key: &api_keys::Model) -> ApiKeyView {
        ApiKeyView {
            id: key.id.clone(),
            object: "api_key",
            secret: None,
            redacted: key.redacted.clone(),
            name: key.name.clone(),
            last_used_at: key.last_used_at.map(timestamp),
            revoked_at: key.revoked_at.map(timestamp),
            created_at: timestamp(key.created_at),
            scope: key.scope.clone(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateMerchantRequest {
    pub name: String,
    pub email: String,
    /// At least 10 characters.
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateMerchantSessionRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateApiKeyRequest {
    /// A label for the key.
    pub name: Option<String>,
    /// `full` (the default) or `payments`: a key that can only create, read, list, capture
    /// and cancel payment intents (403 `insufficient_scope` elsewhere).
    pub scope: Option<String>,
}

#[utoipa::path(post, path = "/v1/merchants", tag = "merchants", request_body = CreateMerchantRequest,
    responses((status = 201, body = MerchantView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "Too many sign-ups from this address")))]
pub async fn create_merchant(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let client = request.peer_addr().map(|address| address.ip());
    let merchant = register(&state, client, &body).await?;
    Ok(HttpResponse::Created().json(MerchantView::from(&merchant)))
}

/// `POST /v1/merchants`: validates and creates the merchant with its first wallet account.
/// Sign-ups are rate limited per client address (`client`).
pub async fn register(
    state: &AppState,
    client: Option<std::net::IpAddr>,
    body: &[u8],
) -> Result<merchants::Model, ApiError> {
    state
        .rate_limiter
        .admit_signup("merchant_signup", client, &state.limits)
        .await?;
    let object = json_object(body)?;
    let fields = Fields(&object);
    let name = fields.required_str("name")?.trim().to_owned();
    if name.is_empty() || name.chars().count() > NAME_LENGTH_MAX {
        return Err(ApiError::invalid_param(
            "parameter_invalid",
            "name",
            "name must be 1 to 200 characters.",
        ));
    }
    let email = Email::parse(fields.required_str("email")?)
        .map_err(|r| ApiError::rejection(r, Some("email")))?;
    let password = fields.required_str("password")?.to_owned();
    auth::check_new_password(&password, "password")?;
    let merchant = NewMerchant {
        id: MerchantId::generate(),
        name,
        email,
        password_hash: auth::hash_password(password).await?,
        default_currency: state.default_currency,
        created_at: state.clock.now(),
    };
    match state.store.create_merchant(&merchant).await? {
        Some(merchant) => Ok(merchant),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorType::InvalidRequestError,
            "email_taken",
            "A merchant with this email already exists.",
        )
        .with_param("email")),
    }
}

#[utoipa::path(post, path = "/v1/merchants/sessions", tag = "merchants", request_body = CreateMerchantSessionRequest,
    responses((status = 201, body = MerchantSessionView), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create_merchant_session(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let client = request.peer_addr().map(|address| address.ip());
    Ok(HttpResponse::Created().json(log_in(&state, client, &body).await?))
}

/// `POST /v1/merchants/sessions`: checks the credentials (rate limited) and opens a session.
pub async fn log_in(
    state: &AppState,
    client: Option<std::net::IpAddr>,
    body: &[u8],
) -> Result<MerchantSessionView, ApiError> {
    let object = json_object(body)?;
    let fields = Fields(&object);
    let login = fields.required_str("email")?;
    let password = fields.required_str("password")?.to_owned();
    state
        .rate_limiter
        .admit_login("merchant_login", login, client, &state.limits)
        .await?;
    let merchant = match Email::parse(login) {
        Ok(email) => state.store.find_merchant_by_email(&email).await?,
        Err(_) => None,
    };
    // Verify even when the merchant does not exist, so both answers take as long.
    let verified = auth::verify_password(
        password,
        merchant
            .as_ref()
            .map(|merchant| merchant.password_hash.clone()),
    )
    .await?;
    let merchant = match merchant {
        Some(merchant) if verified => merchant,
        _ => {
            return Err(auth::invalid_credentials(
                "The email or password is incorrect.",
            ));
        }
    };
    let merchant_id: MerchantId = merchant
        .id
        .parse()
        .map_err(|_| ApiError::unauthenticated())?;
    let token = generate_token("msess");
    let now = state.clock.now();
    let expires_at =
        now + chrono::Duration::from_std(state.limits.session_lifetime).unwrap_or_default();
    let session: merchant_sessions::Model = state
        .store
        .create_merchant_session(merchant_id, sha256_hex(token.as_bytes()), now, expires_at)
        .await?;
    Ok(MerchantSessionView {
        id: session.id,
        object: "merchant_session",
        token,
        expires_at: timestamp(session.expires_at),
        created_at: timestamp(session.created_at),
        merchant: MerchantView::from(&merchant),
    })
}

#[utoipa::path(delete, path = "/v1/merchants/sessions/current", tag = "merchants", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn delete_current_merchant_session(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth::current_merchant(&request, &state).await?;
    let session = merchant.require_session()?;
    state
        .store
        .revoke_merchant_session(session, state.clock.now())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/v1/merchants/sessions", tag = "merchants", security(("bearer" = [])),
    params(
        ("limit" = Option<u64>, Query, description = "1 to 100, default 10"),
        ("starting_after" = Option<String>, Query, description = "Cursor: a session id"),
        ("ending_before" = Option<String>, Query, description = "Cursor: a session id"),
    ),
    responses((status = 200, body = ListView<MerchantSessionSummaryView>, description = "The merchant's live sessions"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_merchant_sessions(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth::current_merchant(&request, &state).await?;
    let current = merchant.require_session()?;
    let page = page_request(&query)?;
    let (sessions, has_more) = state
        .store
        .list_merchant_sessions(merchant.merchant_id, state.clock.now(), &page)
        .await?;
    Ok(HttpResponse::Ok().json(ListView::new(
        sessions
            .iter()
            .map(|session| MerchantSessionSummaryView::new(session, current))
            .collect(),
        has_more,
    )))
}

#[utoipa::path(delete, path = "/v1/merchants/sessions/{id}", tag = "merchants", security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id: one of the merchant's")),
    responses((status = 204, description = "Revoked: its token stops working at once, on every node"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_merchant_session(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth::current_merchant(&request, &state).await?;
    revoke_own_session(&state, merchant, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Revokes one of the merchant's sessions by id (from a merchant session; API keys cannot);
/// another merchant's (or no) session is a 404. Revoking a revoked session changes nothing.
pub async fn revoke_own_session(
    state: &AppState,
    merchant: CurrentMerchant,
    id: &str,
) -> Result<(), ApiError> {
    merchant.require_session()?;
    let id: SessionId = id.parse().map_err(|_| ApiError::not_found("session"))?;
    state
        .store
        .find_merchant_session(id)
        .await?
        .filter(|session| session.merchant_id == merchant.merchant_id.to_string())
        .ok_or_else(|| ApiError::not_found("session"))?;
    state
        .store
        .revoke_merchant_session(id, state.clock.now())
        .await?;
    Ok(())
}

#[utoipa::path(delete, path = "/v1/merchants/sessions", tag = "merchants", security(("bearer" = [])),
    responses((status = 204, description = "Every session of the merchant, this one included, is revoked; API keys stay"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn revoke_all_merchant_sessions(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth::current_merchant(&request, &state).await?;
    merchant.require_session()?;
    state
        .store
        .revoke_merchant_sessions(merchant.merchant_id, None, state.clock.now())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/v1/merchants/me/password", tag = "merchants", security(("bearer" = [])),
    request_body = super::views::ChangePasswordRequest,
    responses((status = 204, description = "Changed; every other session of the merchant is revoked (API keys stay)"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn change_merchant_password(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth::current_merchant(&request, &state).await?;
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let object = json_object(&body)?;
    let fields = Fields(&object);
    let current_password = fields.required_str("current_password")?.to_owned();
    let new_password = fields.required_str("new_password")?.to_owned();
    replace_password(&state, merchant, current_password, new_password).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Checks the current password (from a merchant session, rate limited like a login), stores
/// the new one, and revokes every other session of the merchant.
pub async fn replace_password(
    state: &AppState,
    merchant: CurrentMerchant,
    current_password: String,
    new_password: String,
) -> Result<(), ApiError> {
    let session = merchant.require_session()?;
    state
        .rate_limiter
        .admit(
            &format!("merchant_password:{}", merchant.merchant_id),
            state.limits.login_quota,
        )
        .await?;
    auth::check_new_password(&new_password, "new_password")?;
    let found = state
        .store
        .find_merchant(merchant.merchant_id)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    if !auth::verify_password(current_password, Some(found.password_hash)).await? {
        return Err(
            auth::invalid_credentials("The current password is incorrect.")
                .with_param("current_password"),
        );
    }
    let password_hash = auth::hash_password(new_password).await?;
    state
        .store
        .set_merchant_password(merchant.merchant_id, password_hash)
        .await?;
    state
        .store
        .revoke_merchant_sessions(merchant.merchant_id, Some(session), state.clock.now())
        .await?;
    Ok(())
}

#[utoipa::path(get, path = "/v1/merchants/me", tag = "merchants", security(("bearer" = [])),
    responses((status = 200, body = MerchantView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn merchant_me(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth::current_merchant(&request, &state).await?;
    let merchant = state
        .store
        .find_merchant(merchant.merchant_id)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    Ok(HttpResponse::Ok().json(MerchantView::from(&merchant)))
}

#[utoipa::path(post, path = "/v1/merchants/api_keys", tag = "merchants", security(("bearer" = [])),
    request_body = CreateApiKeyRequest,
    responses((status = 201, body = ApiKeyView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_api_key(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth::current_merchant(&request, &state).await?;
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    Ok(HttpResponse::Created().json(new_api_key(&state, merchant, &body).await?))
}

/// `POST /v1/merchants/api_keys` for a logged-in merchant: the secret is in this answer only.
pub async fn new_api_key(
    state: &AppState,
    merchant: auth::CurrentMerchant,
    body: &[u8],
) -> Result<ApiKeyView, ApiError> {
    merchant.require_session()?;
    let (name, scope) = if body.is_empty() {
        (None, ApiKeyScope::Full)
    } else {
        let object = json_object(body)?;
        let fields = Fields(&object);
        let name = fields.optional_str("name")?.map(str::to_owned);
        if name
            .as_ref()
            .is_some_and(|name| name.chars().count() > NAME_LENGTH_MAX)
        {
            return Err(ApiError::invalid_param(
                "parameter_invalid",
                "name",
                "name must be at most 200 characters.",
            ));
        }
        let scope = match fields.optional_str("scope")? {
            None => ApiKeyScope::Full,
            Some(scope) => ApiKeyScope::parse(scope).ok_or_else(|| {
                ApiError::invalid_param(
                    "parameter_invalid",
                    "scope",
                    "scope must be full or payments.",
                )
            })?,
        };
        (name, scope)
    };
    // 256 random bits, hex: `sk_` + 64 characters.
    let secret = generate_token(API_KEY_PREFIX.trim_end_matches('_'));
    debug_assert!(secret.starts_with(API_KEY_PREFIX));
    let redacted = format!("{}…{}", &secret[..7], &secret[secret.len() - 4..]);
    let key = state
        .store
        .create_api_key(
            merchant.merchant_id,
            sha256_hex(secret.as_bytes()),
            redacted,
            name,
            scope,
            state.clock.now(),
        )
        .await?;
    Ok(ApiKeyView {
        secret: Some(secret),
        ..ApiKeyView::from(&key)
    })
}

#[utoipa::path(get, path = "/v1/merchants/api_keys", tag = "merchants", security(("bearer" = [])),
    params(
        ("limit" = Option<u64>, Query, description = "1 to 100, default 10"),
        ("starting_after" = Option<String>, Query, description = "Cursor: a key id"),
        ("ending_before" = Option<String>, Query, description = "Cursor: a key id"),
    ),
    responses((status = 200, body = ListView<ApiKeyView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_api_keys(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth::current_merchant(&request, &state).await?;
    merchant.require_session()?;
    let page = page_request(&query)?;
    let (keys, has_more) = state
        .store
        .list_api_keys(merchant.merchant_id, &page)
        .await?;
    Ok(HttpResponse::Ok().json(ListView::new(
        keys.iter().map(ApiKeyView::from).collect(),
        has_more,
    )))
}

async fn own_key(
    state: &AppState,
    request: &HttpRequest,
    id: &str,
) -> Result<(ApiKeyId, api_keys::Model), ApiError> {
    let merchant = auth::current_merchant(request, state).await?;
    merchant.require_session()?;
    let id: ApiKeyId = id.parse().map_err(|_| ApiError::not_found("api key"))?;
    let key = state
        .store
        .find_api_key(id)
        .await?
        .filter(|key| key.merchant_id == merchant.merchant_id.to_string())
        .ok_or_else(|| ApiError::not_found("api key"))?;
    Ok((id, key))
}

#[utoipa::path(get, path = "/v1/merchants/api_keys/{id}", tag = "merchants", security(("bearer" = [])),
    params(("id" = String, Path, description = "API key id")),
    responses((status = 200, body = ApiKeyView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_api_key(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (_, key) = own_key(&state, &request, &path).await?;
    Ok(HttpResponse::Ok().json(ApiKeyView::from(&key)))
}

#[utoipa::path(delete, path = "/v1/merchants/api_keys/{id}", tag = "merchants", security(("bearer" = [])),
    params(("id" = String, Path, description = "API key id")),
    responses((status = 200, body = ApiKeyView, description = "The key, revoked"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_api_key(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (id, _) = own_key(&state, &request, &path).await?;
    state.store.revoke_api_key(id, state.clock.now()).await?;
    let key = state
        .store
        .find_api_key(id)
        .await?
        .ok_or_else(|| ApiError::not_found("api key"))?;
    Ok(HttpResponse::Ok().json(ApiKeyView::from(&key)))
}

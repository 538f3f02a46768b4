//! Users and sessions: sign up, log in (returns a bearer token), log out, who am I, and killing
//! a stolen session: list sessions, revoke one, log out everywhere, change the password.

use super::AppState;
use super::auth::{self, CurrentUser, sha256_hex};
use super::error::{ApiError, ErrorBody, ErrorType};
use super::request::page_request;
use super::request::{Fields, json_object, read_body};
use super::views::{
    ChangePasswordRequest, CreateSessionRequest, CreateUserRequest, ListView, SessionView, UserView,
};
use crate::config::generate_token;
use crate::domain::{Email, PhoneNumber, SessionId, UserId};
use crate::store::users::{NewUser, UserConflict};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use std::collections::HashMap;

const NAME_LENGTH_MAX: usize = 200;

#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = CreateUserRequest,
    responses((status = 201, body = UserView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "Too many sign-ups from this address")))]
pub async fn create_user(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let client = request.peer_addr().map(|address| address.ip());
    let user = register(&state, client, &body).await?;
    Ok(HttpResponse::Created().json(UserView::from(&user)))
}

/// `POST /v1/users`: validates and creates the user with their first wallet account. Sign-ups
/// are rate limited per client address (`client`).
pub async fn register(
    state: &AppState,
    client: Option<std::net::IpAddr>,
    body: &[u8],
) -> Result<crate::store::entities::users::Model, ApiError> {
    state
        .rate_limiter
        .admit_signup("signup", client, &state.limits)
        .await?;
    let object = json_object(body)?;
    let fields = Fields(&object);
    let email = Email::parse(fields.required_str("email")?)
        .map_err(|r| ApiError::rejection(r, Some("email")))?;
    let phone = PhoneNumber::parse(fields.required_str("phone")?)
        .map_err(|r| ApiError::rejection(r, Some("phone")))?;
    let name = fields.required_str("name")?.trim().to_owned();
    if name.is_empty() || name.chars().count() > NAME_LENGTH_MAX {
        return Err(ApiError::invalid_param(
            "parameter_invalid",
            "name",
            "name must be 1 to 200 characters.",
        ));
    }
    let password = fields.required_str("password")?.to_owned();
    auth::check_new_password(&password, "password")?;
    let new_user = NewUser {
        id: UserId::generate(),
        email,
        phone,
        name,
        password_hash: auth::hash_password(password).await?,
        default_currency: state.default_currency,
        created_at: state.clock.now(),
    };
    match state.store.create_user(&new_user).await? {
        Ok(user) => Ok(user),
        Err(UserConflict::EmailTaken) => Err(conflict(
            "email_taken",
            "email",
            "A user with this email already exists.",
        )),
        Err(UserConflict::PhoneTaken) => Err(conflict(
            "phone_taken",
            "phone",
            "A user with this phone already exists.",
        )),
    }
}

fn conflict(code: &str, param: &str, message: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorType::InvalidRequestError,
        code,
        message,
    )
    .with_param(param)
}

#[utoipa::path(post, path = "/v1/sessions", tag = "users", request_body = CreateSessionRequest,
    responses((status = 201, body = SessionView), (status = 401, body = ErrorBody)))]
pub async fn create_session(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let client = request.peer_addr().map(|address| address.ip());
    let (token, session, user) = log_in(&state, client, &body).await?;
    Ok(HttpResponse::Created().json(SessionView {
        token: Some(token),
        current: true,
        user: Some(UserView::from(&user)),
        ..SessionView::from(&session)
    }))
}

/// `POST /v1/sessions`: checks the credentials (rate limited) and opens a session. Returns
/// the bearer token (only ever shown here), the session and the user.
pub async fn log_in(
    state: &AppState,
    client: Option<std::net::IpAddr>,
    body: &[u8],
) -> Result<
    (
        String,
        crate::store::entities::sessions::Model,
        crate::store::entities::users::Model,
    ),
    ApiError,
> {
    let object = json_object(body)?;
    let fields = Fields(&object);
    let login = fields.required_str("login")?;
    let password = fields.required_str("password")?.to_owned();
    // Per login identifier (whether or not it exists), per address and in all, before any
    // password work.
    state
        .rate_limiter
        .admit_login("login", login, client, &state.limits)
        .await?;
    let user = if login.trim_start().starts_with('+') {
        match PhoneNumber::parse(login) {
            Ok(phone) => state.store.find_user_by_phone(&phone).await?,
            Err(_) => None,
        }
    } else {
        match Email::parse(login) {
            Ok(email) => state.store.find_user_by_email(&email).await?,
            Err(_) => None,
        }
    };
    // Verify even when the user does not exist, so both answers take as long.
    let verified = auth::verify_password(
        password,
        user.as_ref().map(|user| user.password_hash.clone()),
    )
    .await?;
    let user = match user {
        Some(user) if verified => user,
        _ => {
            return Err(auth::invalid_credentials(
                "The login or password is incorrect.",
            ));
        }
    };
    let token = generate_token("sess");
    let now = state.clock.now();
    let expires_at =
        now + chrono::Duration::from_std(state.limits.session_lifetime).unwrap_or_default();
    let user_id: UserId = user.id.parse().map_err(|_| ApiError::unauthenticated())?;
    let session = state
        .store
        .create_session(user_id, sha256_hex(token.as_bytes()), now, expires_at)
        .await?;
    Ok((token, session, user))
}

#[utoipa::path(delete, path = "/v1/sessions/current", tag = "users", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn delete_current_session(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let user = auth::current_user(&request, &state).await?;
    state
        .store
        .revoke_session(user.session_id, state.clock.now())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/v1/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody)))]
pub async fn me(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let user = auth::current_user(&request, &state).await?;
    let user = state
        .store
        .find_user(user.user_id)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}

#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", security(("bearer" = []), ("operator" = [])),
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_user(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: UserId = path.parse().map_err(|_| ApiError::not_found("user"))?;
    // A user sees only themselves; the operator sees everyone.
    if auth::operator(&request, &state).is_err() {
        let caller = auth::current_user(&request, &state).await?;
        if caller.user_id != id {
            return Err(ApiError::not_found("user"));
        }
    }
    let user = state
        .store
        .find_user(id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}

#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = []), ("operator" = [])),
    params(
        ("limit" = Option<u64>, Query, description = "1 to 100, default 10"),
        ("starting_after" = Option<String>, Query, description = "Cursor: a user id"),
        ("ending_before" = Option<String>, Query, description = "Cursor: a user id"),
    ),
    responses((status = 200, body = ListView<UserView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_users(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let page = page_request(&query)?;
    // The operator lists every user; a user's list holds only themselves.
    let only = match auth::operator(&request, &state) {
        Ok(_) => None,
        Err(_) => Some(auth::current_user(&request, &state).await?.user_id),
    };
    let (users, has_more) = state.store.list_users(only, &page).await?;
    Ok(HttpResponse::Ok().json(ListView::new(
        users.iter().map(UserView::from).collect(),
        has_more,
    )))
}

#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_session(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth::current_user(&request, &state).await?;
    let id: SessionId = path.parse().map_err(|_| ApiError::not_found("session"))?;
    let session = state
        .store
        .find_session(id)
        .await?
        .filter(|session| session.user_id == caller.user_id.to_string())
        .ok_or_else(|| ApiError::not_found("session"))?;
    Ok(HttpResponse::Ok().json(session_view(&session, caller)))
}

fn session_view(
    session: &crate::store::entities::sessions::Model,
    caller: CurrentUser,
) -> SessionView {
    SessionView {
        current: session.id == caller.session_id.to_string(),
        ..SessionView::from(session)
    }
}

#[utoipa::path(get, path = "/v1/sessions", tag = "users", security(("bearer" = [])),
    params(
        ("limit" = Option<u64>, Query, description = "1 to 100, default 10"),
        ("starting_after" = Option<String>, Query, description = "Cursor: a session id"),
        ("ending_before" = Option<String>, Query, description = "Cursor: a session id"),
    ),
    responses((status = 200, body = ListView<SessionView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_sessions(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth::current_user(&request, &state).await?;
    let page = page_request(&query)?;
    let (sessions, has_more) = state
        .store
        .list_sessions(caller.user_id, state.clock.now(), &page)
        .await?;
    Ok(HttpResponse::Ok().json(ListView::new(
        sessions
            .iter()
            .map(|session| session_view(session, caller))
            .collect(),
        has_more,
    )))
}

#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id: one of the caller's")),
    responses((status = 204, description = "Revoked: its token stops working at once, on every node"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_session(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth::current_user(&request, &state).await?;
    revoke_own_session(&state, caller, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Revokes one of the caller's sessions by id; another user's (or no) session is a 404.
/// Revoking a revoked session changes nothing.
pub async fn revoke_own_session(
    state: &AppState,
    caller: CurrentUser,
    id: &str,
) -> Result<(), ApiError> {
    let id: SessionId = id.parse().map_err(|_| ApiError::not_found("session"))?;
    state
        .store
        .find_session(id)
        .await?
        .filter(|session| session.user_id == caller.user_id.to_string())
        .ok_or_else(|| ApiError::not_found("session"))?;
    state.store.revoke_session(id, state.clock.now()).await?;
    Ok(())
}

#[utoipa::path(delete, path = "/v1/sessions", tag = "users", security(("bearer" = [])),
    responses((status = 204, description = "Every session of the caller, this one included, is revoked"),
        (status = 401, body = ErrorBody)))]
pub async fn revoke_all_sessions(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let caller = auth::current_user(&request, &state).await?;
    state
        .store
        .revoke_user_sessions(caller.user_id, None, state.clock.now())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/v1/me/password", tag = "users", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses((status = 204, description = "Changed; every other session of the user is revoked"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn change_password(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = auth::current_user(&request, &state).await?;
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let object = json_object(&body)?;
    let fields = Fields(&object);
    let current_password = fields.required_str("current_password")?.to_owned();
    let new_password = fields.required_str("new_password")?.to_owned();
    replace_password(&state, caller, current_password, new_password).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Checks the current password (rate limited like a login), stores the new one, and revokes
/// every other session of the user: a thief's session dies, the caller's stays.
pub async fn replace_password(
    state: &AppState,
    caller: CurrentUser,
    current_password: String,
    new_password: String,
) -> Result<(), ApiError> {
    state
        .rate_limiter
        .admit(
            &format!("password:{}", caller.user_id),
            state.limits.login_quota,
        )
        .await?;
    auth::check_new_password(&new_password, "new_password")?;
    let user = state
        .store
        .find_user(caller.user_id)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    if !auth::verify_password(current_password, Some(user.password_hash)).await? {
        return Err(
            auth::invalid_credentials("The current password is incorrect.")
                .with_param("current_password"),
        );
    }
    let password_hash = auth::hash_password(new_password).await?;
    state
        .store
        .set_user_password(caller.user_id, password_hash)
        .await?;
    state
        .store
        .revoke_user_sessions(caller.user_id, Some(caller.session_id), state.clock.now())
        .await?;
    Ok(())
}

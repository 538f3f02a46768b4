//! Authentication: argon2id password hashing, opaque bearer session tokens (only their SHA-256
//! is stored), and the operator token (compared in constant time).

use super::AppState;
use super::error::ApiError;
use crate::domain::{MerchantId, SessionId, UserId};
use crate::store::merchants::{ApiKeyScope, MerchantCredential};
use crate::store::transfers::Party;
use actix_web::HttpRequest;
use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

pub const PASSWORD_LENGTH_MIN: usize = 10;
pub const PASSWORD_LENGTH_MAX: usize = 256;

/// The password rules of sign-up and of a password change: at least
/// `PASSWORD_LENGTH_MIN` characters, at most `PASSWORD_LENGTH_MAX` bytes; else 400 naming
/// `param`.
pub fn check_new_password(password: &str, param: &str) -> Result<(), ApiError> {
    if password.chars().count() < PASSWORD_LENGTH_MIN || password.len() > PASSWORD_LENGTH_MAX {
        return Err(ApiError::invalid_param(
            "password_too_short",
            param,
            "The password must be at least 10 characters (at most 256 bytes).",
        ));
    }
    Ok(())
}

/// 401 `invalid_credentials`: a login or a current password that does not match.
pub fn invalid_credentials(message: &str) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::UNAUTHORIZED,
        super::error::ErrorType::AuthenticationError,
        "invalid_credentials",
        message,
    )
}

/// The authenticated user behind a session token.
#[derive(Debug, Clone, Copy)]
pub struct CurrentUser {
    pub user_id: UserId,
    pub session_id: SessionId,
}

impl CurrentUser {
    /// The idempotency scope of this caller.
    pub fn caller(&self) -> String {
        format!("user:{}", self.user_id)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn bearer_token(request: &HttpRequest) -> Option<&str> {
    let header = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|token| !token.is_empty())
}

/// The user of a live session, or 401.
pub async fn current_user(
    request: &HttpRequest,
    state: &AppState,
) -> Result<CurrentUser, ApiError> {
    let token = bearer_token(request).ok_or_else(ApiError::unauthenticated)?;
    match user_session(token, state).await? {
        Some(user) => Ok(user),
        // A merchant's valid credential on a user endpoint: authenticated, not allowed.
        None if merchant_credential(token, state).await?.is_some() => Err(ApiError::forbidden(
            "This endpoint is for users, not merchants.",
        )),
        None => Err(ApiError::unauthenticated()),
    }
}

/// The merchant behind a merchant session token or a secret API key (`sk_…`).
pub async fn current_merchant(
    request: &HttpRequest,
    state: &AppState,
) -> Result<CurrentMerchant, ApiError> {
    let token = bearer_token(request).ok_or_else(ApiError::unauthenticated)?;
    match merchant_credential(token, state).await? {
        Some(merchant) => merchant.within_scope(request),
        None if user_session(token, state).await?.is_some() => Err(ApiError::forbidden(
            "This endpoint is for merchants, not users.",
        )),
        None => Err(ApiError::unauthenticated()),
    }
}

/// A user or a merchant, for the endpoints both use (wallet, payouts, payment intents).
pub async fn current_principal(
    request: &HttpRequest,
    state: &AppState,
) -> Result<Principal, ApiError> {
    let token = bearer_token(request).ok_or_else(ApiError::unauthenticated)?;
    if let Some(user) = user_session(token, state).await? {
        return Ok(Principal::User(user));
    }
    match merchant_credential(token, state).await? {
        Some(merchant) => Ok(Principal::Merchant(merchant.within_scope(request)?)),
        None => Err(ApiError::unauthenticated()),
    }
}

/// A merchant, authenticated by session or API key.
#[derive(Debug, Clone, Copy)]
pub struct CurrentMerchant {
    pub merchant_id: MerchantId,
    pub credential: MerchantCredential,
}

impl CurrentMerchant {
    pub fn caller(&self) -> String {
        format!("merchant:{}", self.merchant_id)
    }

    /// Managing API keys needs a logged-in merchant, not a key.
    pub fn require_session(&self) -> Result<SessionId, ApiError> {
        match self.credential {
            MerchantCredential::Session(session) => Ok(session),
            MerchantCredential::ApiKey(..) => Err(ApiError::forbidden(
                "Log in as the merchant to do this; API keys cannot.",
            )),
        }
    }

    /// The merchant, if its credential's scope covers the request's route: a session or a
    /// `full` key covers every merchant route; a `payments` key only the payment intent
    /// routes (`PAYMENTS_SCOPE_ROUTE_PREFIX`). Decided here, at authentication, so a route
    /// added later refuses a `payments` key unless it is a payment intent route.
    pub fn within_scope(self, request: &HttpRequest) -> Result<CurrentMerchant, ApiError> {
        let MerchantCredential::ApiKey(_, ApiKeyScope::Payments) = self.credential else {
            return Ok(self);
        };
        let route = request.match_pattern().unwrap_or_default();
        let covered = route == PAYMENTS_SCOPE_ROUTE_PREFIX
            || route.starts_with(&format!("{PAYMENTS_SCOPE_ROUTE_PREFIX}/"));
        if covered {
            Ok(self)
        } else {
            Err(insufficient_scope())
        }
    }
}

/// The routes a `payments` API key may call: payment intents (create, read, list, capture,
/// cancel; confirming is the paying user's).
pub const PAYMENTS_SCOPE_ROUTE_PREFIX: &str = "/v1/payment_intents";

/// 403 `insufficient_scope`: an API key whose scope does not cover this route.
pub fn insufficient_scope() -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::FORBIDDEN,
        super::error::ErrorType::PermissionError,
        "insufficient_scope",
        "This API key's scope (payments) covers payment intents only; use a full key or log in.",
    )
}

#[derive(Debug, Clone, Copy)]
pub enum Principal {
    User(CurrentUser),
    Merchant(CurrentMerchant),
}

impl Principal {
    pub fn party(&self) -> Party {
        match self {
            Principal::User(user) => Party::User(user.user_id),
            Principal::Merchant(merchant) => Party::Merchant(merchant.merchant_id),
        }
    }

    pub fn caller(&self) -> String {
        match self {
            Principal::User(user) => user.caller(),
            Principal::Merchant(merchant) => merchant.caller(),
        }
    }
}

async fn merchant_credential(
    token: &str,
    state: &AppState,
) -> Result<Option<CurrentMerchant>, ApiError> {
    let is_api_key = token.starts_with(API_KEY_PREFIX);
    Ok(state
        .store
        .authenticate_merchant(&sha256_hex(token.as_bytes()), is_api_key, state.clock.now())
        .await?
        .map(|(merchant_id, credential)| CurrentMerchant {
            merchant_id,
            credential,
        }))
}

/// Secret API keys start with this, then `_` and 256 random bits in hex.
pub const API_KEY_PREFIX: &str = "sk_";

async fn user_session(token: &str, state: &AppState) -> Result<Option<CurrentUser>, ApiError> {
    Ok(state
        .store
        .authenticate_user(&sha256_hex(token.as_bytes()), state.clock.now())
        .await?
        .map(|(user_id, session_id)| CurrentUser {
            user_id,
            session_id,
        }))
}

/// The operator behind an operator token: `admin` for `WALLETI_ADMIN_TOKEN`, or the name a
/// `WALLETI_OPERATORS` entry gives its token. Every token is compared (in constant time), so
/// timing does not tell which operator, if any, a token nearly matched.
pub fn operator(request: &HttpRequest, state: &AppState) -> Result<String, ApiError> {
    let token = bearer_token(request).ok_or_else(ApiError::unauthenticated)?;
    let mut found = None;
    if constant_time_equal(token.as_bytes(), state.admin_token.as_bytes()) {
        found = Some(crate::config::ADMIN_OPERATOR_NAME.to_owned());
    }
    for operator in &state.operators {
        if constant_time_equal(token.as_bytes(), operator.token.as_bytes()) {
            found = Some(operator.name.clone());
        }
    }
    found.ok_or_else(ApiError::unauthenticated)
}

/// Compares without an early exit, so timing does not reveal the matching prefix.
pub fn constant_time_equal(left: &[u8], right: &[u8]) -> bool {
    let left = Sha256::digest(left);
    let right = Sha256::digest(right);
    left.iter()
        .zip(right.iter())
        .fold(0_u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

/// argon2id uses 19 MiB and tens of milliseconds of CPU per hash. It runs on a fixed pool of
/// long-lived threads, one per core: hashing is CPU-bound, so more threads only add memory, and
/// threads that come and go (tokio's blocking pool) each leave a 19 MiB+ allocator arena behind.
/// The queue in front of them is bounded: when it is full a password check answers 503
/// `hashing_busy` at once instead of waiting behind a flood of log-in attempts.
type HashJob = Box<dyn FnOnce() + Send>;

/// Password jobs waiting for a hashing thread at most, per hashing thread.
pub const HASHING_QUEUE_DEPTH_PER_THREAD_MAX: usize = 16;
/// What a client is told to wait when the hashing queue is full.
const HASHING_BUSY_RETRY_AFTER_SECONDS: u64 = 1;

/// Hashing threads and their bounded queue.
pub struct HashingPool {
    sender: std::sync::mpsc::SyncSender<HashJob>,
}

impl HashingPool {
    /// Starts `threads` hashing threads behind a queue of `queue_depth_max` jobs.
    pub fn start(threads: usize, queue_depth_max: usize) -> HashingPool {
        assert!(threads > 0 && queue_depth_max > 0);
        let (sender, receiver) = std::sync::mpsc::sync_channel::<HashJob>(queue_depth_max);
        let receiver = std::sync::Arc::new(std::sync::Mutex::new(receiver));
        for index in 0..threads {
            let receiver = std::sync::Arc::clone(&receiver);
            let spawned = std::thread::Builder::new()
                .name(format!("password-hash-{index}"))
                .spawn(move || {
                    loop {
                        let job = match receiver.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "start password hashing thread");
            }
        }
        HashingPool { sender }
    }

    /// Queues `work`, or answers 503 `hashing_busy` when the queue is full.
    pub fn submit<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<tokio::sync::oneshot::Receiver<T>, ApiError> {
        let (reply, result) = tokio::sync::oneshot::channel();
        let job: HashJob = Box::new(move || {
            let _ = reply.send(work());
        });
        match self.sender.try_send(job) {
            Ok(()) => Ok(result),
            Err(std::sync::mpsc::TrySendError::Full(_)) => Err(hashing_busy()),
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                Err(ApiError::unavailable("password hashing is unavailable"))
            }
        }
    }

    /// Runs `work` on the pool and waits for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        self.submit(work)?
            .await
            .map_err(|_| ApiError::unavailable("password hashing is unavailable"))
    }
}

/// 503 `hashing_busy` with `Retry-After`: too many password checks are waiting.
pub fn hashing_busy() -> ApiError {
    let mut error = ApiError::new(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        super::error::ErrorType::ApiError,
        "hashing_busy",
        "Too many password checks are waiting; retry after the time in the Retry-After header.",
    );
    error.retry_after_seconds = Some(HASHING_BUSY_RETRY_AFTER_SECONDS);
    error
}

fn hashing_pool() -> &'static HashingPool {
    static POOL: OnceLock<HashingPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |cores| cores.get());
        HashingPool::start(threads, threads * HASHING_QUEUE_DEPTH_PER_THREAD_MAX)
    })
}

/// argon2id with a fresh random salt.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    hashing_pool()
        .run(move || {
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
        })
        .await?
        .map_err(|error| {
            tracing::error!(%error, "hash password");
            ApiError::unavailable("password hashing failed")
        })
}

/// Verifies `password` against a stored PHC string. With no stored hash (unknown user) it
/// still does the work of a verification, so the answer takes as long either way. A full
/// hashing queue is 503 `hashing_busy`.
pub async fn verify_password(
    password: String,
    stored_hash: Option<String>,
) -> Result<bool, ApiError> {
    hashing_pool()
        .run(move || {
            let hash = stored_hash.unwrap_or_else(|| DUMMY_HASH.to_owned());
            let matches = PasswordVerifier::<str>::verify_password(
                &Argon2::default(),
                password.as_bytes(),
                &hash,
            )
            .is_ok();
            matches && hash != DUMMY_HASH
        })
        .await
}

/// argon2id (default parameters) of a random string nobody knows; used to equalise timing.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$uJ0nXuuLQsLoobrQNnlBB0Q4kRCZ6VsXjtyMbS7ZIQQ";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_equal(b"abc", b"abc"));
        assert!(!constant_time_equal(b"abc", b"abd"));
        assert!(!constant_time_equal(b"abc", b"abcd"));
    }

    #[test]
    fn the_dummy_hash_costs_a_real_verification() {
        use argon2::password_hash::phc::PasswordHash;
        assert!(
            PasswordHash::new(DUMMY_HASH).is_ok(),
            "an unparsable dummy would skip the argon2 work"
        );
        let started = std::time::Instant::now();
        let _ = PasswordVerifier::<str>::verify_password(&Argon2::default(), b"guess", DUMMY_HASH);
        assert!(
            started.elapsed() > std::time::Duration::from_millis(1),
            "no argon2 work was done"
        );
    }

    #[tokio::test]
    async fn passwords_round_trip() {
        let hash = hash_password("correct horse battery".into())
            .await
            .expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        let verify = async |password: &str, hash: Option<String>| {
            verify_password(password.to_owned(), hash)
                .await
                .expect("pool")
        };
        assert!(verify("correct horse battery", Some(hash.clone())).await);
        assert!(!verify("wrong password!", Some(hash)).await);
        assert!(!verify("anything at all", None).await);
    }

    #[tokio::test]
    async fn a_full_hashing_queue_answers_hashing_busy_at_once() {
        let pool = HashingPool::start(1, 1);
        let (started, on_started) = std::sync::mpsc::channel::<()>();
        let (release, on_release) = std::sync::mpsc::channel::<()>();
        let busy = pool
            .submit(move || {
                let _ = started.send(());
                let _ = on_release.recv();
            })
            .expect("the thread takes the first job");
        on_started.recv().expect("started");
        let queued = pool.submit(|| 2).expect("one job may wait");
        let refused = pool.submit(|| 3).expect_err("the queue is full");
        assert_eq!(refused.status.as_u16(), 503);
        assert_eq!(refused.detail.code, "hashing_busy");
        assert_eq!(refused.retry_after_seconds, Some(1));
        release.send(()).expect("release");
        busy.await.expect("first job");
        assert_eq!(queued.await.expect("queued job"), 2);
        assert_eq!(pool.run(|| 4).await.expect("room again"), 4);
    }
}

//! The one idempotency path for money-moving POSTs. The first request with an
//! `Idempotency-Key` claims it and its final response (2xx or 4xx) is stored; a retry with the
//! same key and body gets that response byte for byte (`Idempotent-Replayed: true`); the same
//! key with a different body is a 409. A concurrent duplicate waits for the first to finish.

use super::AppState;
use super::error::{ApiError, ErrorType};
use crate::store::idempotency::{IdempotencyClaim, IdempotencyClaimHeld, IdempotencyScope};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
const IDEMPOTENCY_KEY_LENGTH_MAX: usize = 255;
const IN_PROGRESS_POLL_MS: u64 = 20;

/// A JSON response as it is sent and stored.
#[derive(Debug, Clone)]
pub struct JsonResponse {
    pub status: StatusCode,
    pub body: String,
}

impl JsonResponse {
    pub fn new(status: StatusCode, value: &impl serde::Serialize) -> JsonResponse {
        JsonResponse {
            status,
            body: serde_json::to_string(value).unwrap_or_default(),
        }
    }

    /// A response as the idempotency record stored it (an unknown status reads as 200).
    pub fn stored(status: u16, body: String) -> JsonResponse {
        JsonResponse {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            body,
        }
    }

    pub fn into_response(self, replayed: bool) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.content_type("application/json");
        if replayed {
            response.insert_header(("Idempotent-Replayed", "true"));
        }
        response.body(self.body)
    }
}

/// The request's idempotency key, required and 1–255 characters.
pub fn idempotency_key(request: &HttpRequest) -> Result<String, ApiError> {
    let key = request
        .headers()
        .get(IDEMPOTENCY_KEY_HEADER)
        .ok_or_else(|| {
            ApiError::invalid_request(
                "idempotency_key_missing",
                "This request requires an Idempotency-Key header.",
            )
        })?
        .to_str()
        .map_err(|_| {
            ApiError::invalid_request(
                "idempotency_key_invalid",
                "The Idempotency-Key must be printable text.",
            )
        })?;
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_LENGTH_MAX {
        return Err(ApiError::invalid_request(
            "idempotency_key_invalid",
            "The Idempotency-Key must be 1 to 255 characters.",
        ));
    }
    Ok(key.to_owned())
}

/// Runs `work` at most once per (caller, key). `work` receives the resource id reserved for
/// this key (the same on every retry, so a retry after a crash resumes the same object) and
/// whether an earlier, unfinished attempt may already have done part of the work.
/// A 5xx outcome is not stored: the key is released so that a retry runs again.
pub async fn run_idempotent<R, W, F>(
    state: &AppState,
    request: &HttpRequest,
    caller: &str,
    body: &[u8],
    new_resource_id: R,
    work: W,
) -> Result<HttpResponse, ApiError>
where
    R: std::str::FromStr + std::fmt::Display,
    W: FnOnce(R, bool) -> F,
    F: Future<Output = Result<JsonResponse, ApiError>>,
{
    let key = idempotency_key(request)?;
    let fingerprint = fingerprint(request, body);
    let (response, replayed) =
        idempotent(state, caller, &key, &fingerprint, new_resource_id, work).await?;
    Ok(response.into_response(replayed))
}

/// The idempotency path itself, for callers that carry the key and the request's fingerprint
/// some other way (the web app's forms). Returns the response and whether it was replayed.
pub async fn idempotent<R, W, F>(
    state: &AppState,
    caller: &str,
    key: &str,
    fingerprint: &str,
    new_resource_id: R,
    work: W,
) -> Result<(JsonResponse, bool), ApiError>
where
    R: std::str::FromStr + std::fmt::Display,
    W: FnOnce(R, bool) -> F,
    F: Future<Output = Result<JsonResponse, ApiError>>,
{
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_LENGTH_MAX {
        return Err(ApiError::invalid_request(
            "idempotency_key_invalid",
            "The Idempotency-Key must be 1 to 255 characters.",
        ));
    }
    let scope = IdempotencyScope { caller, key };
    let wait_deadline =
        Instant::now() + state.limits.transfer_wait_timeout + Duration::from_secs(5);
    let (resource_id, taken_over, claim_token) = loop {
        let now = state.clock.now();
        let stale_before = now
            - chrono::Duration::from_std(state.limits.idempotency_lock_timeout).unwrap_or_default();
        match state
            .store
            .claim_idempotency_key(
                scope,
                fingerprint,
                new_resource_id.to_string(),
                now,
                stale_before,
            )
            .await?
        {
            IdempotencyClaim::Claimed {
                resource_id,
                taken_over,
                claim_token,
            } => break (resource_id, taken_over, claim_token),
            IdempotencyClaim::Replay { status, body } => {
                return Ok((JsonResponse::stored(status, body), true));
            }
            IdempotencyClaim::Mismatch => return Err(key_reused()),
            IdempotencyClaim::InProgress if Instant::now() < wait_deadline => {
                tokio::time::sleep(Duration::from_millis(IN_PROGRESS_POLL_MS)).await;
            }
            IdempotencyClaim::InProgress => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    ErrorType::IdempotencyError,
                    "idempotency_key_in_use",
                    "Another request with this Idempotency-Key is still being processed.",
                ));
            }
        }
    };
    let resource_id: R = resource_id
        .parse()
        .map_err(|_| ApiError::unavailable("The stored idempotency record is unreadable."))?;
    let outcome = work(resource_id, taken_over).await;
    let stored = match &outcome {
        Ok(response) => Some(response.clone()),
        Err(error) if error.status.is_client_error() => Some(JsonResponse {
            status: error.status,
            body: error.body(),
        }),
        Err(_) => None,
    };
    match stored {
        Some(response) => {
            let held = IdempotencyClaimHeld {
                scope,
                claim_token: &claim_token,
            };
            if state
                .store
                .complete_idempotency_key(held, response.status.as_u16(), &response.body)
                .await?
            {
                return Ok((response, false));
            }
            // This request was so slow that another took its claim over: whatever that one
            // stored is the answer for this key.
            match state.store.stored_idempotent_response(scope).await? {
                Some((status, body)) => Ok((JsonResponse::stored(status, body), true)),
                None => Ok((response, false)),
            }
        }
        None => {
            let held = IdempotencyClaimHeld {
                scope,
                claim_token: &claim_token,
            };
            state.store.release_idempotency_key(held).await?;
            outcome.map(|response| (response, false))
        }
    }
}

/// Identifies "the same request": method, path and the exact body bytes.
fn fingerprint(request: &HttpRequest, body: &[u8]) -> String {
    fingerprint_of(request.method().as_str(), request.path(), body)
}

/// `fingerprint` for a request built by walleti itself (the web app's forms act through the
/// API's own paths and bodies, so a form resubmitted with its key replays like the API).
pub fn fingerprint_of(method: &str, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b" ");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    hex::encode(hasher.finalize())
}

/// A money-moving request's idempotency key and fingerprint, however they arrived.
#[derive(Debug, Clone)]
pub struct Keyed {
    pub key: String,
    pub fingerprint: String,
}

impl Keyed {
    /// From the `Idempotency-Key` header and the raw request.
    pub fn from_request(request: &HttpRequest, body: &[u8]) -> Result<Keyed, ApiError> {
        Ok(Keyed {
            key: idempotency_key(request)?,
            fingerprint: fingerprint(request, body),
        })
    }

    /// For a request walleti builds itself (`POST {path}` with `body`).
    pub fn internal(key: &str, path: &str, body: &[u8]) -> Keyed {
        Keyed {
            key: key.to_owned(),
            fingerprint: fingerprint_of("POST", path, body),
        }
    }
}

/// `idempotent` for a keyed request.
pub async fn run_keyed<R, W, F>(
    state: &AppState,
    caller: &str,
    keyed: &Keyed,
    new_resource_id: R,
    work: W,
) -> Result<(JsonResponse, bool), ApiError>
where
    R: std::str::FromStr + std::fmt::Display,
    W: FnOnce(R, bool) -> F,
    F: Future<Output = Result<JsonResponse, ApiError>>,
{
    idempotent(
        state,
        caller,
        &keyed.key,
        &keyed.fingerprint,
        new_resource_id,
        work,
    )
    .await
}

/// Admits a money-moving request under its owner's money quota (`money:<owner>`, the owner
/// being a user or a merchant id). A request the quota refuses may be a retry of one already answered:
/// its key's stored answer is what it gets (`Some`), like any replay — a client honouring
/// the contract (same key, same body, same answer) is not told 429 for work that was done —
/// and a different body with that key gets 409 `idempotency_key_reused`. Anything else
/// (a new key, a first request still in flight) keeps the 429. The record is read only
/// when the quota refuses, so admitted requests pay nothing for this.
pub async fn admit_money(
    state: &AppState,
    owner: impl std::fmt::Display,
    caller: &str,
    keyed: &Keyed,
) -> Result<Option<(JsonResponse, bool)>, ApiError> {
    let Err(limited) = state
        .rate_limiter
        .admit(&format!("money:{owner}"), state.limits.money_quota)
        .await
    else {
        return Ok(None);
    };
    let scope = IdempotencyScope {
        caller,
        key: &keyed.key,
    };
    match state.store.idempotency_record(scope).await {
        Ok(Some((fingerprint, Some((status, body))))) if fingerprint == keyed.fingerprint => {
            Ok(Some((JsonResponse::stored(status, body), true)))
        }
        Ok(Some((fingerprint, _))) if fingerprint != keyed.fingerprint => Err(key_reused()),
        _ => Err(limited),
    }
}

/// 409: the key was first used with a different request.
fn key_reused() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorType::IdempotencyError,
        "idempotency_key_reused",
        "This Idempotency-Key was already used with a different request.",
    )
}

/// The HTTP answer for an idempotent outcome.
pub fn respond((response, replayed): (JsonResponse, bool)) -> HttpResponse {
    response.into_response(replayed)
}

/// The idempotency keys this node is working on right now. A concurrent duplicate on this node
/// waits here for the first request instead of polling the database; when the first is done,
/// the duplicate is answered from what it stored.
#[derive(Debug, Clone, Default)]
pub struct InFlightKeys {
    keys: Arc<std::sync::Mutex<HashMap<(String, String), InFlightEntry>>>,
}

/// Locked by the request working on a key for as long as it works on it.
type InFlightEntry = Arc<tokio::sync::Mutex<()>>;

/// Held by the request working on a key; dropping it lets the duplicates go on.
pub struct InFlightGuard {
    keys: InFlightKeys,
    scope: (String, String),
    entry: InFlightEntry,
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Ok(mut keys) = self.keys.keys.lock()
            && keys
                .get(&self.scope)
                .is_some_and(|entry| Arc::ptr_eq(entry, &self.entry))
        {
            keys.remove(&self.scope);
        }
    }
}

impl InFlightKeys {
    /// `Some`: this request is the first with the key on this node. `None`: another was, and
    /// it has finished (or `wait_max` passed): answer from the stored record.
    pub async fn enter(
        &self,
        caller: &str,
        key: &str,
        wait_max: Duration,
    ) -> Option<InFlightGuard> {
        let scope = (caller.to_owned(), key.to_owned());
        let existing = {
            let mut keys = self.keys.lock().ok()?;
            match keys.get(&scope) {
                Some(entry) => Arc::clone(entry),
                None => {
                    let entry = Arc::new(tokio::sync::Mutex::new(()));
                    let held = Arc::clone(&entry).try_lock_owned().ok()?;
                    keys.insert(scope.clone(), Arc::clone(&entry));
                    return Some(InFlightGuard {
                        keys: self.clone(),
                        scope,
                        entry,
                        _held: held,
                    });
                }
            }
        };
        let _ = tokio::time::timeout(wait_max, existing.lock()).await;
        None
    }
}

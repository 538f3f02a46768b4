//! `ApiError`: the one error type of the HTTP edge, rendered Stripe-style as
//! `{"error": {"type", "code", "message", "param"}}`. Business rejections map to 4xx with their
//! stable codes; infrastructure failures are logged once here and become 503 (or 500).

use crate::actors::WalletError;
use crate::domain::Rejection;
use crate::store::StoreError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequestError,
    AuthenticationError,
    PermissionError,
    IdempotencyError,
    RateLimitError,
    ApiError,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: ErrorType,
    pub code: String,
    pub message: String,
    pub param: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: ErrorDetail,
    /// For 429: sent as `Retry-After`.
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: ErrorType,
        code: &str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            detail: ErrorDetail {
                kind,
                code: code.to_owned(),
                message: message.into(),
                param: None,
            },
            retry_after_seconds: None,
        }
    }

    pub fn with_param(mut self, param: &str) -> ApiError {
        self.detail.param = Some(param.to_owned());
        self
    }

    pub fn invalid_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorType::InvalidRequestError,
            code,
            message,
        )
    }

    pub fn invalid_param(code: &str, param: &str, message: impl Into<String>) -> ApiError {
        ApiError::invalid_request(code, message).with_param(param)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequestError,
            "resource_missing",
            format!("No such {what}."),
        )
    }

    pub fn unauthenticated() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorType::AuthenticationError,
            "unauthenticated",
            "Missing, invalid, expired or revoked credentials.",
        )
    }

    /// Authenticated, but this caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorType::PermissionError,
            "permission_denied",
            message,
        )
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::ApiError,
            "service_unavailable",
            message,
        )
    }

    /// A business rejection: the status follows the kind of refusal.
    pub fn rejection(rejection: Rejection, param: Option<&str>) -> ApiError {
        let status = match rejection {
            Rejection::InvalidAmount
            | Rejection::InvalidCurrency
            | Rejection::InvalidEmail
            | Rejection::InvalidPhone => StatusCode::BAD_REQUEST,
            Rejection::AccountNotFound => StatusCode::NOT_FOUND,
            Rejection::InvalidTransition
            | Rejection::HoldAlreadyResolved
            | Rejection::PaymentIntentUnexpectedState
            | Rejection::IdempotencyKeyClaimed => StatusCode::CONFLICT,
            Rejection::InsufficientFunds
            | Rejection::CurrencyMismatch
            | Rejection::BalanceOverflow
            | Rejection::RecipientNotFound
            | Rejection::SelfTransfer
            | Rejection::CaptureExceedsHold
            | Rejection::RefundExceedsCaptured => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let mut error = ApiError::new(
            status,
            ErrorType::InvalidRequestError,
            rejection.code(),
            rejection.message(),
        );
        error.detail.param = param.map(str::to_owned);
        error
    }

    pub fn body(&self) -> String {
        serde_json::to_string(&ErrorBody {
            error: self.detail.clone(),
        })
        .unwrap_or_else(|_| {
            r#"{"error":{"type":"api_error","code":"internal_error","message":"","param":null}}"#
                .into()
        })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{} {}: {}",
            self.status.as_u16(),
            self.detail.code,
            self.detail.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.content_type("application/json");
        if let Some(seconds) = self.retry_after_seconds {
            response.insert_header(("Retry-After", seconds.to_string()));
        }
        response.body(self.body())
    }
}

impl From<StoreError> for ApiError {
    /// Every database failure is a 503 (retry later, with the same Idempotency-Key): during
    /// an outage a query fails in many ways (no connection, a connection cut mid-query, a
    /// statement timeout), and none of them is the client's fault or a bug of ours. Only data
    /// that breaks an invariant is a 500: that is a bug.
    fn from(error: StoreError) -> ApiError {
        match &error {
            StoreError::Database(_) | StoreError::Conflict(_) => {
                tracing::warn!(error = %error, "store unavailable");
                ApiError::unavailable("The database is unavailable; retry later.")
            }
            StoreError::Corrupt(_) => {
                tracing::error!(error = %error, "store error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorType::ApiError,
                    "internal_error",
                    "An internal error occurred.",
                )
            }
        }
    }
}

impl From<WalletError> for ApiError {
    fn from(error: WalletError) -> ApiError {
        match error {
            WalletError::AccountNotFound => ApiError::rejection(Rejection::AccountNotFound, None),
            WalletError::Timeout => {
                tracing::warn!("wallet call timed out");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorType::ApiError,
                    "timeout",
                    "The operation did not finish in time; retry with the same Idempotency-Key.",
                )
            }
            WalletError::Unavailable(cause) => {
                tracing::error!(%cause, "wallet unavailable");
                ApiError::unavailable(
                    "The wallet service is unavailable; retry with the same Idempotency-Key.",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::ResponseError;
    use sea_orm::{DbErr, RuntimeErr};

    #[test]
    fn every_database_failure_is_a_503() {
        for error in [
            DbErr::Conn(RuntimeErr::Internal("refused".into())),
            DbErr::Exec(RuntimeErr::Internal("connection reset by peer".into())),
            DbErr::Query(RuntimeErr::Internal("terminating connection".into())),
            DbErr::Custom("pool timed out".into()),
            DbErr::RecordNotInserted,
        ] {
            let answer = ApiError::from(StoreError::Database(error));
            assert_eq!(answer.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        }
        let conflict = ApiError::from(StoreError::Conflict("version".into()));
        assert_eq!(conflict.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        let corrupt = ApiError::from(StoreError::Corrupt("negative wallet".into()));
        assert_eq!(corrupt.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}

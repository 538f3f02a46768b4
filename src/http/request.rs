//! Parsing at the edge: JSON bodies (size-capped, malformed → 400 in our error format), the
//! fields inside them, and list parameters (`limit`, `starting_after`, `ending_before`).

use super::error::ApiError;
use crate::domain::{Amount, Currency};
use crate::store::accounts::{Cursor, PageRequest};
use actix_web::web;
use futures_util::StreamExt;
use serde_json::{Map, Value};
use std::collections::HashMap;

pub const LIST_LIMIT_DEFAULT: u64 = 10;
pub const LIST_LIMIT_MAX: u64 = 100;

/// Reads the whole body, refusing more than `body_bytes_max` bytes.
pub async fn read_body(
    mut payload: web::Payload,
    body_bytes_max: usize,
) -> Result<web::Bytes, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| {
            ApiError::invalid_request("invalid_body", "The request body could not be read.")
        })?;
        if body.len() + chunk.len() > body_bytes_max {
            return Err(ApiError::new(
                actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                super::error::ErrorType::InvalidRequestError,
                "body_too_large",
                format!("The request body must be at most {body_bytes_max} bytes."),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Parses the body as a JSON object.
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::invalid_request(
            "invalid_json",
            "The request body must be a JSON object.",
        )),
        Err(error) => Err(ApiError::invalid_request(
            "invalid_json",
            format!("Malformed JSON: {error}."),
        )),
    }
}

/// Typed access to the fields of a JSON object body.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl Fields<'_> {
    pub fn required_str(&self, name: &str) -> Result<&str, ApiError> {
        match self.0.get(name) {
            Some(Value::String(text)) => Ok(text),
            None | Some(Value::Null) => Err(ApiError::invalid_param(
                "parameter_missing",
                name,
                format!("Missing required parameter: {name}."),
            )),
            Some(_) => Err(ApiError::invalid_param(
                "parameter_invalid",
                name,
                format!("{name} must be a string."),
            )),
        }
    }

    pub fn optional_str(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(ApiError::invalid_param(
                "parameter_invalid",
                name,
                format!("{name} must be a string."),
            )),
        }
    }

    pub fn amount(&self, name: &str) -> Result<Amount, ApiError> {
        let value = self.0.get(name).unwrap_or(&Value::Null);
        Amount::from_json(value).map_err(|rejection| ApiError::rejection(rejection, Some(name)))
    }

    pub fn currency(&self, name: &str) -> Result<Currency, ApiError> {
        let code = match self.0.get(name) {
            Some(Value::String(code)) => code,
            _ => {
                return Err(ApiError::rejection(
                    crate::domain::Rejection::InvalidCurrency,
                    Some(name),
                ));
            }
        };
        Currency::parse(code).map_err(|rejection| ApiError::rejection(rejection, Some(name)))
    }
}

/// Parses `limit`, `starting_after` and `ending_before`; anything else in the query is ignored.
pub fn page_request(query: &HashMap<String, String>) -> Result<PageRequest, ApiError> {
    let limit = match query.get("limit") {
        None => LIST_LIMIT_DEFAULT,
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|limit| (1..=LIST_LIMIT_MAX).contains(limit))
            .ok_or_else(|| {
                ApiError::invalid_param(
                    "parameter_invalid",
                    "limit",
                    "limit must be an integer from 1 to 100.",
                )
            })?,
    };
    let cursor_id = |name: &str| -> Result<Option<String>, ApiError> {
        match query.get(name) {
            None => Ok(None),
            Some(id) => uuid::Uuid::parse_str(id)
                .map(|uuid| Some(uuid.hyphenated().to_string()))
                .map_err(|_| {
                    ApiError::invalid_param(
                        "parameter_invalid",
                        name,
                        format!("{name} must be an object id."),
                    )
                }),
        }
    };
    let cursor = match (cursor_id("starting_after")?, cursor_id("ending_before")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_request(
                "parameter_invalid",
                "Use at most one of starting_after and ending_before.",
            ));
        }
        (Some(id), None) => Some(Cursor::StartingAfter(id)),
        (None, Some(id)) => Some(Cursor::EndingBefore(id)),
        (None, None) => None,
    };
    Ok(PageRequest { limit, cursor })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn limits() {
        assert_eq!(page_request(&query(&[])).map(|p| p.limit).ok(), Some(10));
        assert_eq!(
            page_request(&query(&[("limit", "100")]))
                .map(|p| p.limit)
                .ok(),
            Some(100)
        );
        for bad in ["0", "101", "-1", "abc", "1.5"] {
            assert!(page_request(&query(&[("limit", bad)])).is_err(), "{bad}");
        }
        assert!(page_request(&query(&[("starting_after", "nope")])).is_err());
    }

    #[test]
    fn malformed_json_is_a_400() {
        assert_eq!(
            json_object(b"{").err().map(|e| e.status.as_u16()),
            Some(400)
        );
        assert_eq!(
            json_object(b"[1]").err().map(|e| e.status.as_u16()),
            Some(400)
        );
        assert!(json_object(br#"{"a":1}"#).is_ok());
    }
}

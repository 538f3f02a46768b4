//! A user's notifications, channel preferences and push devices.

use super::AppState;
use super::auth;
use super::error::{ApiError, ErrorBody};
use super::request::{Fields, json_object, page_request, read_body};
use super::views::{ListView, timestamp};
use crate::store::entities::{devices, notification_deliveries, notifications};
use crate::store::notifications::Preferences;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::ToSchema;

const DEVICE_TOKEN_LENGTH_MAX: usize = 512;

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// `in_app`, `email`, `sms` or `push`.
    pub channel: String,
    /// `delivered`, `sent`, `pending`, `skipped` (channel not configured) or `failed`.
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationView {
    pub id: String,
    /// Always `notification`.
    pub object: &'static str,
    /// The event it is about (`transfer.completed`, `onramp.succeeded`, …).
    pub kind: String,
    pub title: String,
    pub body: String,
    pub event_id: String,
    pub deliveries: Vec<DeliveryView>,
    pub created_at: String,
}

fn notification_view(
    row: &notifications::Model,
    deliveries: &[notification_deliveries::Model],
) -> NotificationView {
    NotificationView {
        id: row.id.clone(),
        object: "notification",
        kind: row.kind.clone(),
        title: row.title.clone(),
        body: row.body.clone(),
        event_id: row.event_id.clone(),
        deliveries: deliveries
            .iter()
            .map(|delivery| DeliveryView {
                channel: delivery.channel.clone(),
                status: delivery.status.clone(),
                attempts: delivery.attempts,
                last_error: delivery.last_error.clone(),
            })
            .collect(),
        created_at: timestamp(row.created_at),
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PreferencesView {
    /// Always `notification_preferences`.
    #[serde(default)]
    pub object: String,
    pub email: bool,
    pub sms: bool,
    pub push: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    pub id: String,
    /// Always `device`.
    pub object: &'static str,
    pub token: String,
    /// `ios`, `android` or `web`.
    pub platform: String,
    pub created_at: String,
}

fn device_view(device: &devices::Model) -> DeviceView {
    DeviceView {
        id: device.id.clone(),
        object: "device",
        token: device.token.clone(),
        platform: device.platform.clone(),
        created_at: timestamp(device.created_at),
    }
}

#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", security(("bearer" = [])),
    params(
        ("limit" = Option<u64>, Query, description = "1 to 100, default 10"),
        ("starting_after" = Option<String>, Query, description = "Cursor: a notification id"),
        ("ending_before" = Option<String>, Query, description = "Cursor: a notification id"),
    ),
    responses((status = 200, body = ListView<NotificationView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_notifications(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let user = auth::current_user(&request, &state).await?;
    let page = page_request(&query)?;
    let (rows, has_more) = state.store.list_notifications(user.user_id, &page).await?;
    let data = rows
        .iter()
        .map(|(row, deliveries)| notification_view(row, deliveries))
        .collect();
    Ok(HttpResponse::Ok().json(ListView::new(data, has_more)))
}

#[utoipa::path(put, path = "/v1/notification_preferences", tag = "notifications", security(("bearer" = [])),
    request_body = PreferencesView,
    responses((status = 200, body = PreferencesView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn set_preferences(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let user = auth::current_user(&request, &state).await?;
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let object = json_object(&body)?;
    let flag = |name: &str| match object.get(name) {
        Some(serde_json::Value::Bool(value)) => Ok(*value),
        None => Err(ApiError::invalid_param(
            "parameter_missing",
            name,
            format!("Missing required parameter: {name}."),
        )),
        Some(_) => Err(ApiError::invalid_param(
            "parameter_invalid",
            name,
            format!("{name} must be true or false."),
        )),
    };
    let preferences = Preferences {
        email: flag("email")?,
        sms: flag("sms")?,
        push: flag("push")?,
    };
    state
        .store
        .set_preferences(user.user_id, preferences, state.clock.now())
        .await?;
    Ok(HttpResponse::Ok().json(preferences_view(preferences)))
}

fn preferences_view(preferences: Preferences) -> PreferencesView {
    PreferencesView {
        object: "notification_preferences".into(),
        email: preferences.email,
        sms: preferences.sms,
        push: preferences.push,
    }
}

#[utoipa::path(get, path = "/v1/notification_preferences", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = PreferencesView), (status = 401, body = ErrorBody)))]
pub async fn get_preferences(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let user = auth::current_user(&request, &state).await?;
    let preferences = state.store.preferences(user.user_id).await?;
    Ok(HttpResponse::Ok().json(preferences_view(preferences)))
}

#[utoipa::path(post, path = "/v1/devices", tag = "notifications", security(("bearer" = [])),
    responses((status = 201, body = DeviceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn register_device(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let user = auth::current_user(&request, &state).await?;
    let body = read_body(payload, state.limits.body_bytes_max).await?;
    let object = json_object(&body)?;
    let fields = Fields(&object);
    let token = fields.required_str("token")?.trim();
    if token.is_empty() || token.len() > DEVICE_TOKEN_LENGTH_MAX {
        return Err(ApiError::invalid_param(
            "parameter_invalid",
            "token",
            "token must be 1 to 512 characters.",
        ));
    }
    let platform = fields.required_str("platform")?;
    if !["ios", "android", "web"].contains(&platform) {
        return Err(ApiError::invalid_param(
            "parameter_invalid",
            "platform",
            "platform must be ios, android or web.",
        ));
    }
    let device = state
        .store
        .register_device(user.user_id, token, platform, state.clock.now())
        .await?;
    Ok(HttpResponse::Created().json(device_view(&device)))
}

#[utoipa::path(get, path = "/v1/devices", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = ListView<DeviceView>), (status = 401, body = ErrorBody)))]
pub async fn list_devices(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let user = auth::current_user(&request, &state).await?;
    let page = page_request(&query)?;
    let (rows, has_more) = state.store.list_devices(user.user_id, &page).await?;
    Ok(HttpResponse::Ok().json(ListView::new(
        rows.iter().map(device_view).collect(),
        has_more,
    )))
}

#[utoipa::path(get, path = "/v1/devices/{id}", tag = "notifications", security(("bearer" = [])),
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = DeviceView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_device(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = auth::current_user(&request, &state).await?;
    let device = state
        .store
        .find_device(&path)
        .await?
        .filter(|device| device.user_id == user.user_id.to_string())
        .ok_or_else(|| ApiError::not_found("device"))?;
    Ok(HttpResponse::Ok().json(device_view(&device)))
}

//! The user app's contact verification page (`/app/verify`): whether the email and the phone
//! are verified, a button per contact that sends a one-time code, and a form to type it back.
//! It goes through the same core as `POST /v1/me/verifications[/confirm]`.

use super::user_app::{layout, require_user};
use super::{Action, Cell, Field, FormPage, Section, csrf_refusal, csrf_token, page};
use crate::domain::ContactChannel;
use crate::http::AppState;
use crate::http::auth::CurrentUser;
use crate::http::verifications::{confirm_code, send_code};
use actix_web::{HttpRequest, HttpResponse, web};
use std::collections::HashMap;

type Form = web::Form<HashMap<String, String>>;

pub fn routes(config: &mut web::ServiceConfig) {
    use web::{get, post};
    config
        .route("/app/verify", get().to(verify_page))
        .route("/app/verify/{channel}/send", post().to(send))
        .route("/app/verify/confirm", post().to(confirm));
}

/// The page, with an error or a notice from the last action.
async fn verify_view(
    state: &AppState,
    request: &HttpRequest,
    user: CurrentUser,
    error: Option<String>,
    notice: Option<String>,
) -> HttpResponse {
    let (csrf, new) = csrf_token(request);
    let record = state.store.find_user(user.user_id).await.ok().flatten();
    let (email, phone, email_verified, phone_verified) = match &record {
        Some(user) => (
            user.email.clone(),
            user.phone.clone(),
            user.email_verified_at.is_some(),
            user.phone_verified_at.is_some(),
        ),
        None => Default::default(),
    };
    let row = |label: &str, contact: String, verified: bool, channel: &str| {
        let actions = if verified {
            Vec::new()
        } else {
            vec![Action::new(
                format!("/app/verify/{channel}/send"),
                "Send a code",
            )]
        };
        vec![
            Cell::text(label),
            Cell::text(contact),
            Cell {
                text: if verified { "verified" } else { "not verified" }.into(),
                actions,
                ..Cell::default()
            },
        ]
    };
    let mut layout = layout("Verify your email and phone", &csrf, true);
    layout.error = error;
    layout.notice = notice;
    let verify = FormPage {
        layout,
        intro: vec![
            "Money sent to your email or phone reaches you once you have verified it.".into(),
            "Send yourself a code, then type it here. A code works for 10 minutes.".into(),
        ],
        secret: None,
        action: "/app/verify/confirm".into(),
        fields: vec![
            Field::select(
                "channel",
                "Contact",
                vec![
                    ("email".into(), "Email".into()),
                    ("phone".into(), "Phone".into()),
                ],
                if email_verified { "phone" } else { "email" },
            ),
            Field::new("code", "Code", "text", "one-time-code").hint("The 6 digits we sent you."),
        ],
        submit: "Verify".into(),
        links: vec![("/app/settings".into(), "Back to settings".into())],
        sections: vec![Section {
            heading: "Your contacts".into(),
            empty: String::new(),
            columns: vec![
                ("Contact".into(), false),
                ("Address".into(), false),
                ("Status".into(), false),
            ],
            rows: vec![
                row("Email", email, email_verified, "email"),
                row("Phone", phone, phone_verified, "phone"),
            ],
            previous: None,
            next: None,
        }],
    };
    page(state, &verify, new.then_some(csrf.as_str()))
}

async fn verify_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    match require_user(&request, &state).await {
        Ok(user) => verify_view(&state, &request, user, None, None).await,
        Err(redirect) => redirect,
    }
}

async fn send(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let user = match require_user(&request, &state).await {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    let Some(channel) = ContactChannel::parse(&path) else {
        return verify_view(
            &state,
            &request,
            user,
            Some("Choose email or phone.".into()),
            None,
        )
        .await;
    };
    match send_code(&state, user, channel).await {
        Ok(sent) => {
            let notice = format!(
                "We sent a code to {}. Type it below within 10 minutes.",
                sent.sent_to
            );
            verify_view(&state, &request, user, None, Some(notice)).await
        }
        Err(error) => verify_view(&state, &request, user, Some(error.detail.message), None).await,
    }
}

async fn confirm(state: web::Data<AppState>, request: HttpRequest, form: Form) -> HttpResponse {
    let user = match require_user(&request, &state).await {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    if let Some(refused) = csrf_refusal(&request, form.get("csrf")) {
        return refused;
    }
    let channel = form
        .get("channel")
        .and_then(|channel| ContactChannel::parse(channel.trim()));
    let Some(channel) = channel else {
        return verify_view(
            &state,
            &request,
            user,
            Some("Choose email or phone.".into()),
            None,
        )
        .await;
    };
    let code = form.get("code").cloned().unwrap_or_default();
    match confirm_code(&state, user, channel, &code).await {
        Ok(_) => {
            let what = match channel {
                ContactChannel::Email => "Your email is verified.",
                ContactChannel::Phone => "Your phone is verified.",
            };
            verify_view(&state, &request, user, None, Some(what.into())).await
        }
        Err(error) => verify_view(&state, &request, user, Some(error.detail.message), None).await,
    }
}

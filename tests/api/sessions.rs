//! A stolen session can be killed (issue 12 item 12): users and merchants list their
//! sessions, revoke one, log out everywhere, and change their password (which revokes every
//! other session). Each revoked token was used twice first, so the node's credential cache
//! holds it: the 401 right after the revocation proves the cache entry went too.

use crate::helpers::{Backend, TestApp, backends, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const USER_PASSWORD: &str = "correct horse battery";
const MERCHANT_PASSWORD: &str = "merchant password 1";

/// A logged-in session: its id and bearer token.
struct Session {
    id: String,
    token: String,
}

impl TestApp {
    async fn delete(&self, path: &str, token: &str) -> crate::helpers::Reply {
        self.request(Method::DELETE, path, Some(token), None, None)
            .await
    }

    async fn log_in_user(&self, login: &str, password: &str) -> crate::helpers::Reply {
        self.post(
            "/v1/sessions",
            None,
            None,
            &json!({"login": login, "password": password}),
        )
        .await
    }

    async fn user_session(&self, login: &str) -> Session {
        let reply = self.log_in_user(login, USER_PASSWORD).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        session_of(&reply.body)
    }

    /// A merchant with a known email; returns the email and a first session.
    async fn merchant_with_email(&self, label: &str) -> (String, Session) {
        let unique: u64 = rand::random();
        let email = format!("{label}-{unique:x}@shop.example.com");
        let created = self
            .post(
                "/v1/merchants",
                None,
                None,
                &json!({"name": label, "email": email, "password": MERCHANT_PASSWORD}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let session = self.merchant_session(&email).await;
        (email, session)
    }

    async fn log_in_merchant(&self, email: &str, password: &str) -> crate::helpers::Reply {
        self.post(
            "/v1/merchants/sessions",
            None,
            None,
            &json!({"email": email, "password": password}),
        )
        .await
    }

    async fn merchant_session(&self, email: &str) -> Session {
        let reply = self.log_in_merchant(email, MERCHANT_PASSWORD).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        session_of(&reply.body)
    }

    /// Uses the token twice (the second answer comes from the node's cache) and checks it works.
    async fn warm(&self, path: &str, session: &Session) {
        for _ in 0..2 {
            let reply = self.get(path, &session.token).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        }
    }

    async fn status_of(&self, path: &str, session: &Session) -> StatusCode {
        self.get(path, &session.token).await.status
    }
}

fn session_of(body: &Value) -> Session {
    Session {
        id: body["id"].as_str().expect("session id").to_owned(),
        token: body["token"].as_str().expect("token").to_owned(),
    }
}

fn listed_ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|session| session["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn a_user_lists_sessions_and_revokes_one() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let ada = app.user("ada").await;
        let laptop = app.user_session(&ada.email).await;
        let stolen = app.user_session(&ada.phone).await;
        let bob = app.user("bob").await;

        let list = app.get("/v1/sessions", &laptop.token).await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.text);
        let ids = listed_ids(&list.body);
        assert_eq!(ids.len(), 3, "{}", list.text);
        assert!(ids.contains(&laptop.id) && ids.contains(&stolen.id));
        for session in list.body["data"].as_array().expect("data") {
            assert_eq!(session["object"], "session");
            assert!(session["created_at"].as_str().is_some());
            assert!(session["expires_at"].as_str().is_some());
            assert!(session.get("token").is_none(), "a token is shown only once");
            assert_eq!(session["current"], json!(session["id"] == json!(laptop.id)));
        }

        app.warm("/v1/me", &stolen).await;
        let revoked = app
            .delete(&format!("/v1/sessions/{}", stolen.id), &laptop.token)
            .await;
        assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text);
        assert_eq!(
            app.status_of("/v1/me", &stolen).await,
            StatusCode::UNAUTHORIZED,
            "the revoked session stops working on the very next request"
        );
        assert_eq!(app.status_of("/v1/me", &laptop).await, StatusCode::OK);
        assert_eq!(app.get("/v1/me", &ada.token).await.status, StatusCode::OK);
        let list = app.get("/v1/sessions", &laptop.token).await;
        assert!(!listed_ids(&list.body).contains(&stolen.id));
        assert_eq!(listed_ids(&list.body).len(), 2);

        // Another user's session is not found, and keeps working.
        let bobs_id = listed_ids(&app.get("/v1/sessions", &bob.token).await.body)[0].clone();
        let not_yours = app
            .delete(&format!("/v1/sessions/{bobs_id}"), &laptop.token)
            .await;
        assert_eq!(
            not_yours.status,
            StatusCode::NOT_FOUND,
            "{}",
            not_yours.text
        );
        assert_eq!(app.get("/v1/me", &bob.token).await.status, StatusCode::OK);
        let unknown = app.delete("/v1/sessions/nonsense", &laptop.token).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        let anonymous = app
            .request(
                Method::DELETE,
                &format!("/v1/sessions/{}", laptop.id),
                None,
                None,
                None,
            )
            .await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_user_logs_out_everywhere() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let ada = app.user("ada").await;
        let sessions = [
            app.user_session(&ada.email).await,
            app.user_session(&ada.phone).await,
        ];
        let bob = app.user("bob").await;
        for session in &sessions {
            app.warm("/v1/wallet", session).await;
        }
        app.warm("/v1/wallet", &app.user_session(&bob.email).await)
            .await;

        let everywhere = app.delete("/v1/sessions", &sessions[0].token).await;
        assert_eq!(
            everywhere.status,
            StatusCode::NO_CONTENT,
            "{}",
            everywhere.text
        );
        for session in &sessions {
            assert_eq!(
                app.status_of("/v1/wallet", session).await,
                StatusCode::UNAUTHORIZED,
                "every session is revoked, the current one included"
            );
        }
        assert_eq!(
            app.get("/v1/me", &ada.token).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            app.get("/v1/me", &bob.token).await.status,
            StatusCode::OK,
            "another user's sessions stay"
        );
        // Logging in again works.
        let again = app.user_session(&ada.email).await;
        assert_eq!(app.status_of("/v1/me", &again).await, StatusCode::OK);
    }
}

#[tokio::test]
async fn changing_the_password_revokes_every_other_session() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let ada = app.user("ada").await;
        let current = app.user_session(&ada.email).await;
        let stolen = app.user_session(&ada.phone).await;
        app.warm("/v1/me", &stolen).await;
        app.warm("/v1/me", &current).await;
        let new_password = "a much better passphrase";

        let wrong = app
            .post(
                "/v1/me/password",
                Some(&current.token),
                None,
                &json!({"current_password": "not my password", "new_password": new_password}),
            )
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.text);
        assert_eq!(wrong.code(), "invalid_credentials");
        assert_eq!(app.status_of("/v1/me", &stolen).await, StatusCode::OK);
        assert_eq!(app.status_of("/v1/me", &current).await, StatusCode::OK);

        let short = app
            .post(
                "/v1/me/password",
                Some(&current.token),
                None,
                &json!({"current_password": USER_PASSWORD, "new_password": "short"}),
            )
            .await;
        assert_eq!(short.status, StatusCode::BAD_REQUEST, "{}", short.text);
        assert_eq!(short.code(), "password_too_short");
        let missing = app
            .post("/v1/me/password", Some(&current.token), None, &json!({}))
            .await;
        assert_eq!(missing.status, StatusCode::BAD_REQUEST, "{}", missing.text);

        let changed = app
            .post(
                "/v1/me/password",
                Some(&current.token),
                None,
                &json!({"current_password": USER_PASSWORD, "new_password": new_password}),
            )
            .await;
        assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text);
        assert_eq!(
            app.status_of("/v1/me", &stolen).await,
            StatusCode::UNAUTHORIZED,
            "the other session is revoked at once"
        );
        assert_eq!(
            app.get("/v1/me", &ada.token).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            app.status_of("/v1/me", &current).await,
            StatusCode::OK,
            "the session that changed the password keeps working"
        );
        let listed = listed_ids(&app.get("/v1/sessions", &current.token).await.body);
        assert_eq!(listed, vec![current.id.clone()]);

        let old = app.log_in_user(&ada.email, USER_PASSWORD).await;
        assert_eq!(old.status, StatusCode::UNAUTHORIZED, "{}", old.text);
        assert_eq!(old.code(), "invalid_credentials");
        let new = app.log_in_user(&ada.email, new_password).await;
        assert_eq!(new.status, StatusCode::CREATED, "{}", new.text);
    }
}

#[tokio::test]
async fn password_changes_are_rate_limited_like_logins() {
    let app = spawn_app(Backend::Sqlite).await;
    let ada = app.user("ada").await;
    let burst = app.state().limits.login_quota.burst;
    let mut statuses = Vec::new();
    for _ in 0..=burst {
        let reply = app
            .post(
                "/v1/me/password",
                Some(&ada.token),
                None,
                &json!({"current_password": "a wrong guess!", "new_password": "whatever it is"}),
            )
            .await;
        statuses.push(reply.status);
    }
    assert!(
        statuses[..statuses.len() - 1]
            .iter()
            .all(|status| *status == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS));
}

#[tokio::test]
async fn a_merchant_lists_revokes_and_logs_out_everywhere() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (email, dashboard) = app.merchant_with_email("shop").await;
        let stolen = app.merchant_session(&email).await;
        let other = app.merchant("other").await;
        let api_key = app
            .post(
                "/v1/merchants/api_keys",
                Some(&dashboard.token),
                None,
                &json!({}),
            )
            .await;
        let api_key = Session {
            id: api_key.body["id"].as_str().expect("id").to_owned(),
            token: api_key.body["secret"].as_str().expect("secret").to_owned(),
        };

        let list = app.get("/v1/merchants/sessions", &dashboard.token).await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.text);
        let ids = listed_ids(&list.body);
        assert_eq!(ids.len(), 2, "{}", list.text);
        for session in list.body["data"].as_array().expect("data") {
            assert_eq!(session["object"], "merchant_session");
            assert!(session["created_at"].as_str().is_some());
            assert!(session["expires_at"].as_str().is_some());
            assert!(session.get("token").is_none());
            assert_eq!(
                session["current"],
                json!(session["id"] == json!(dashboard.id))
            );
        }
        let by_key = app.get("/v1/merchants/sessions", &api_key.token).await;
        assert_eq!(
            by_key.status,
            StatusCode::FORBIDDEN,
            "API keys cannot manage sessions"
        );
        let by_key = app.delete("/v1/merchants/sessions", &api_key.token).await;
        assert_eq!(by_key.status, StatusCode::FORBIDDEN);

        // Revoke one.
        app.warm("/v1/merchants/me", &stolen).await;
        let revoked = app
            .delete(
                &format!("/v1/merchants/sessions/{}", stolen.id),
                &dashboard.token,
            )
            .await;
        assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text);
        assert_eq!(
            app.status_of("/v1/merchants/me", &stolen).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            app.status_of("/v1/merchants/me", &dashboard).await,
            StatusCode::OK
        );

        // Another merchant's session is not found.
        let others = listed_ids(&app.get("/v1/merchants/sessions", &other.token).await.body);
        let not_yours = app
            .delete(
                &format!("/v1/merchants/sessions/{}", others[0]),
                &dashboard.token,
            )
            .await;
        assert_eq!(
            not_yours.status,
            StatusCode::NOT_FOUND,
            "{}",
            not_yours.text
        );
        assert_eq!(
            app.get("/v1/merchants/me", &other.token).await.status,
            StatusCode::OK
        );

        // Log out everywhere: every session goes, the API key stays.
        let second = app.merchant_session(&email).await;
        app.warm("/v1/merchants/me", &second).await;
        app.warm("/v1/merchants/me", &dashboard).await;
        let everywhere = app.delete("/v1/merchants/sessions", &dashboard.token).await;
        assert_eq!(
            everywhere.status,
            StatusCode::NO_CONTENT,
            "{}",
            everywhere.text
        );
        for session in [&dashboard, &second] {
            assert_eq!(
                app.status_of("/v1/merchants/me", session).await,
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(
            app.status_of("/v1/merchants/me", &api_key).await,
            StatusCode::OK
        );
        assert_eq!(
            app.get("/v1/merchants/me", &other.token).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn a_merchant_password_change_revokes_every_other_session() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (email, current) = app.merchant_with_email("shop").await;
        let stolen = app.merchant_session(&email).await;
        app.warm("/v1/merchants/me", &stolen).await;
        app.warm("/v1/merchants/me", &current).await;
        let new_password = "a much better passphrase";

        let wrong = app
            .post(
                "/v1/merchants/me/password",
                Some(&current.token),
                None,
                &json!({"current_password": "not my password", "new_password": new_password}),
            )
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.text);
        assert_eq!(wrong.code(), "invalid_credentials");
        let short = app
            .post(
                "/v1/merchants/me/password",
                Some(&current.token),
                None,
                &json!({"current_password": MERCHANT_PASSWORD, "new_password": "short"}),
            )
            .await;
        assert_eq!(short.status, StatusCode::BAD_REQUEST, "{}", short.text);
        assert_eq!(
            app.status_of("/v1/merchants/me", &stolen).await,
            StatusCode::OK
        );

        let changed = app
            .post(
                "/v1/merchants/me/password",
                Some(&current.token),
                None,
                &json!({"current_password": MERCHANT_PASSWORD, "new_password": new_password}),
            )
            .await;
        assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text);
        assert_eq!(
            app.status_of("/v1/merchants/me", &stolen).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            app.status_of("/v1/merchants/me", &current).await,
            StatusCode::OK
        );
        let old = app.log_in_merchant(&email, MERCHANT_PASSWORD).await;
        assert_eq!(old.status, StatusCode::UNAUTHORIZED, "{}", old.text);
        let new = app.log_in_merchant(&email, new_password).await;
        assert_eq!(new.status, StatusCode::CREATED, "{}", new.text);
    }
}

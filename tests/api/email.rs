use crate::helpers::{Backend, TestApp, TestUser, fresh_database, spawn_app_with, test_settings};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use walleti::config::SmtpSettings;

/// A message the test SMTP server accepted.
#[derive(Debug, Clone)]
pub(crate) struct Mail {
    pub(crate) to: Vec<String>,
    pub(crate) data: String,
}

/// A minimal SMTP server: records every message when its DATA ends (not at QUIT: lettre
/// pools connections), or refuses every MAIL with 451 while `refuse` is set.
pub(crate) async fn smtp_server() -> (u16, Arc<Mutex<Vec<Mail>>>, Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let refuse = Arc::new(AtomicBool::new(false));
    let (accepted, refusing) = (Arc::clone(&mails), Arc::clone(&refuse));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (accepted, refusing) = (Arc::clone(&accepted), Arc::clone(&refusing));
            tokio::spawn(async move {
                let (reader, mut writer) = stream.into_split();
                let mut lines = BufReader::new(reader).lines();
                let _ = writer.write_all(b"220 test ESMTP\r\n").await;
                let mut to = Vec::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    let command = line.to_ascii_uppercase();
                    let reply: &[u8] = if command.starts_with("EHLO") || command.starts_with("HELO")
                    {
                        b"250 test\r\n"
                    } else if command.starts_with("MAIL") {
                        if refusing.load(Ordering::SeqCst) {
                            b"451 try again later\r\n"
                        } else {
                            b"250 OK\r\n"
                        }
                    } else if command.starts_with("RCPT") {
                        to.push(
                            line[8..]
                                .trim()
                                .trim_matches(|c| c == '<' || c == '>')
                                .to_owned(),
                        );
                        b"250 OK\r\n"
                    } else if command == "DATA" {
                        let _ = writer.write_all(b"354 go ahead\r\n").await;
                        let mut data = String::new();
                        while let Ok(Some(line)) = lines.next_line().await {
                            if line == "." {
                                break;
                            }
                            data.push_str(&line);
                            data.push('\n');
                        }
                        accepted.lock().expect("lock").push(Mail {
                            to: std::mem::take(&mut to),
                            data,
                        });
                        b"250 queued\r\n"
                    } else if command == "QUIT" {
                        let _ = writer.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        to.clear();
                        b"250 OK\r\n"
                    };
                    if writer.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, mails, refuse)
}

/// The email delivery of the newest transfer notification, once there are `count` of them.
async fn latest_email(app: &TestApp, user: &TestUser, count: usize) -> Option<Value> {
    let reply = app.get("/v1/notifications?limit=100", &user.token).await;
    let transfers: Vec<Value> = reply.body["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n["kind"] == "transfer.completed")
        .collect();
    if transfers.len() < count {
        return None;
    }
    transfers[0]["deliveries"]
        .as_array()?
        .iter()
        .find(|d| d["channel"] == "email")
        .cloned()
}

fn status_is(delivery: &Option<Value>, status: &str) -> bool {
    delivery.as_ref().is_some_and(|d| d["status"] == status)
}

async fn wait_until<F: AsyncFn() -> bool>(what: &str, condition: F) {
    for _ in 0..300 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn emails_reach_the_smtp_server_escaped_and_failures_retry_then_fail() {
    let (port, mails, refuse) = smtp_server().await;
    let mut settings = test_settings(&fresh_database(Backend::Sqlite).await);
    settings.smtp = Some(SmtpSettings {
        url: format!("smtp://127.0.0.1:{port}"),
        from: "walleti <no-reply@walleti.test>".into(),
    });
    settings.limits.delivery_attempts_max = 3;
    settings.limits.delivery_backoff_base = Duration::from_millis(20);
    settings.limits.delivery_retry_interval = Duration::from_millis(20);
    let app = spawn_app_with(settings).await;
    let ada = app.user("ada").await;
    // A name with markup: it must arrive escaped in the HTML part.
    let created = app
        .post("/v1/users", None, None, &json!({"email": "bob-mail@example.com", "phone": "+14155550166", "name": "<b>Bob & Co</b>", "password": "correct horse battery"}))
        .await;
    let bob_id = created.body["id"].as_str().expect("id").to_owned();
    let session = app
        .post(
            "/v1/sessions",
            None,
            None,
            &json!({"login": "bob-mail@example.com", "password": "correct horse battery"}),
        )
        .await;
    let bob = TestUser {
        id: bob_id,
        email: "bob-mail@example.com".into(),
        phone: "+14155550166".into(),
        token: session.body["token"].as_str().expect("token").to_owned(),
    };
    app.fund(&ada, 1_000).await;
    app.transfer(&ada, &bob.email, json!(250), "mail-1").await;

    wait_until("bob's email arrives", async || {
        mails
            .lock()
            .expect("lock")
            .iter()
            .any(|mail| mail.data.contains("Subject: Money received"))
    })
    .await;
    let mail = mails
        .lock()
        .expect("lock")
        .iter()
        .find(|m| m.data.contains("Subject: Money received"))
        .cloned()
        .expect("mail");
    assert_eq!(mail.to, ["bob-mail@example.com"]);
    assert!(
        mail.data.contains("text/plain") && mail.data.contains("text/html"),
        "{}",
        mail.data
    );
    assert!(
        mail.data.contains("&lt;b&gt;Bob &amp; Co&lt;/b&gt;"),
        "user text is escaped in HTML: {}",
        mail.data
    );
    assert!(!mail.data.contains("<p>Hi <b>Bob"), "{}", mail.data);
    assert!(mail.data.contains("You received 2.50 usd."));
    wait_until("the delivery is recorded as sent", async || {
        status_is(&latest_email(&app, &bob, 1).await, "sent")
    })
    .await;

    // The server refuses: retried with backoff, then failed with the last error.
    refuse.store(true, Ordering::SeqCst);
    app.transfer(&ada, &bob.email, json!(100), "mail-2").await;
    wait_until("the delivery fails for good", async || {
        status_is(&latest_email(&app, &bob, 2).await, "failed")
    })
    .await;
    let failed = latest_email(&app, &bob, 2).await.expect("delivery");
    assert_eq!(failed["attempts"], 3);
    assert!(
        failed["last_error"]
            .as_str()
            .is_some_and(|error| error.contains("451")),
        "{failed}"
    );

    // A transient refusal heals: pending, then sent on a retry.
    app.transfer(&ada, &bob.email, json!(50), "mail-3").await;
    wait_until("a first attempt failed", async || {
        latest_email(&app, &bob, 3)
            .await
            .is_some_and(|d| d["attempts"].as_i64().unwrap_or(0) >= 1)
    })
    .await;
    refuse.store(false, Ordering::SeqCst);
    wait_until("the retry is sent", async || {
        status_is(&latest_email(&app, &bob, 3).await, "sent")
    })
    .await;
}

//! End-to-end tests of the web apps in a real browser: Debian's Chromium, headless, driven
//! through WebDriver (`chromedriver`) by a small client written here on reqwest. Two users sign
//! up, one is funded through the bank simulator's page and sends money to the other; a merchant
//! creates a payment link, a user pays it, the merchant refunds part of it. A screenshot of each
//! main page is saved under `$CARGO_TARGET_TMPDIR/screenshots/`.
//!
//! Runs when `WALLETI_TEST_CHROMEDRIVER` names a chromedriver (`.ci/run` sets it, after
//! installing `chromium` and `chromium-driver`); then a missing or broken browser fails the test.
//! The test is `#[ignore]`d, so a plain `cargo test` reports it as ignored; `--ignored` runs
//! it, and then the variable must be set.

use base64::Engine;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use walleti::app::Application;
use walleti::config::Settings;
use walleti::domain::SystemClock;

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The chromedriver process; killed when dropped.
struct Driver {
    process: Child,
    url: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Driver {
    async fn start(binary: &str) -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let process = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("start {binary}: {error}"));
        let driver = Driver {
            process,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        for _ in 0..100 {
            if let Ok(response) = driver
                .http
                .get(format!("{}/status", driver.url))
                .send()
                .await
                && response.status().is_success()
            {
                return driver;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not come up");
    }

    /// A new browser with its own profile (cookies).
    async fn browser(&self, profile: &std::path::Path) -> Browser {
        let chromium =
            std::env::var("WALLETI_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-domain-reliability", "--disable-sync", "--no-first-run",
                    "--no-default-browser-check", "--metrics-recording-only",
                    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
                    "--window-size=1280,1100",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let reply: Value = self
            .http
            .post(format!("{}/session", self.url))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {reply}"))
            .to_owned();
        Browser {
            base: format!("{}/session/{session}", self.url),
            http: self.http.clone(),
        }
    }
}

/// One WebDriver session.
struct Browser {
    base: String,
    http: reqwest::Client,
}

impl Browser {
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply: Value = request
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("webdriver json");
        if reply["value"]["error"].is_string() {
            panic!("webdriver {path}: {}", reply["value"]);
        }
        reply["value"].clone()
    }

    /// The command's value, or `None` on a WebDriver error (e.g. the page is changing).
    async fn try_command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Option<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply: Value = request.send().await.ok()?.json().await.ok()?;
        (!reply["value"]["error"].is_string()).then(|| reply["value"].clone())
    }

    /// The visible text of the page as it is now.
    async fn page_text(&self) -> String {
        self.try_command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": "return document.body ? document.body.innerText : '';", "args": []})),
        )
        .await
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
    }

    async fn go(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        for _ in 0..100 {
            let reply: Value = self
                .http
                .post(format!("{}/element", self.base))
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .expect("find")
                .json()
                .await
                .expect("find json");
            if let Some(id) = reply["value"][ELEMENT_KEY].as_str() {
                return id.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no element {css} on {}", self.source().await);
    }

    async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/clear"),
            Some(json!({})),
        )
        .await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    async fn source(&self) -> String {
        self.command(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the page's text contains `needle` (reloading if asked).
    async fn wait_for_text(&self, needle: &str, reload: bool) {
        for _ in 0..150 {
            if self.page_text().await.contains(needle) {
                return;
            }
            if reload {
                self.try_command(reqwest::Method::POST, "/refresh", Some(json!({})))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never saw {needle:?} on {}", self.page_text().await);
    }

    async fn screenshot(&self, name: &str) {
        let png = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("png");
        let directory = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&directory).expect("screenshot directory");
        std::fs::write(directory.join(format!("{name}.png")), bytes).expect("write screenshot");
    }

    async fn quit(&self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}

async fn sign_up(browser: &Browser, base: &str, name: &str, email: &str, phone: &str) {
    browser.go(&format!("{base}/app/signup")).await;
    browser.fill("#field-name", name).await;
    browser.fill("#field-email", email).await;
    browser.fill("#field-phone", phone).await;
    browser
        .fill("#field-password", "correct horse battery")
        .await;
    browser.click("form.card button[type=submit]").await;
    browser
        .wait_for_text(&format!("Hello, {name}"), false)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium: WALLETI_TEST_CHROMEDRIVER=/usr/bin/chromedriver cargo test -- --ignored (.ci/run does)"]
async fn people_and_merchants_use_the_web_apps_in_a_real_browser() {
    // Asked for with `--ignored`: without a chromedriver this fails rather than pass unrun.
    let chromedriver = std::env::var("WALLETI_TEST_CHROMEDRIVER")
        .ok()
        .filter(|path| !path.is_empty())
        .expect("set WALLETI_TEST_CHROMEDRIVER=/usr/bin/chromedriver to run the browser test");
    let workdir = tempfile_dir();
    let database = workdir.join("walleti.db");
    let mut settings = Settings::embedded(format!("sqlite://{}?mode=rwc", database.display()));
    settings.limits.inbox_poll_interval = Duration::from_millis(200);
    // The merchant registers a webhook endpoint on 127.0.0.1.
    settings.webhook_allow_private_networks = true;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    );
    let application = Application::build_with_listener(settings, listener, Arc::new(SystemClock))
        .await
        .expect("build");
    let running = application.spawn();
    let driver = Driver::start(&chromedriver).await;

    // Two people sign up.
    let ada = driver.browser(&workdir.join("ada")).await;
    sign_up(&ada, &base, "Ada", "ada@example.com", "+14155550101").await;
    ada.screenshot("user-dashboard").await;
    let bob = driver.browser(&workdir.join("bob")).await;
    sign_up(&bob, &base, "Bob", "bob@example.com", "+14155550102").await;

    // Ada adds 25.00 through the bank simulator's page; the status updates by itself.
    ada.go(&format!("{base}/app/add-money")).await;
    ada.fill("#field-amount", "25.00").await;
    ada.click("form.card button[type=submit]").await;
    ada.wait_for_text("processing", false).await;
    let onramp_page = ada.url().await;
    ada.screenshot("add-money").await;
    ada.click("main a[href*='/bank-sim/pay/']").await;
    ada.wait_for_text("Approve", false).await;
    ada.screenshot("bank-simulator").await;
    ada.click("form[action$='/approve'] button").await;
    ada.wait_for_text("Approved. You can close this page", false)
        .await;
    ada.go(&onramp_page).await;
    ada.wait_for_text("succeeded", false).await;

    // A second top-up is approved behind the page's back: htmx updates the status in place.
    ada.go(&format!("{base}/app/add-money")).await;
    ada.fill("#field-amount", "1.5").await;
    ada.click("form.card button[type=submit]").await;
    ada.wait_for_text("processing", false).await;
    let bank_link = ada.find("main a[href*='/bank-sim/pay/']").await;
    let bank_page = ada
        .command(
            reqwest::Method::GET,
            &format!("/element/{bank_link}/attribute/href"),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let payment = bank_page.rsplit('/').next().unwrap_or_default().to_owned();
    let approved = reqwest::Client::new()
        .post(format!("{base}/bank-sim/api/payments/{payment}/approve"))
        .send()
        .await
        .expect("approve");
    assert!(approved.status().is_success());
    ada.wait_for_text("succeeded", false).await;
    ada.go(&format!("{base}/app")).await;
    ada.wait_for_text("$26.50", false).await;

    // Ada sends Bob 10.05, typed in major units.
    ada.go(&format!("{base}/app/send")).await;
    ada.fill("#field-to", "bob@example.com").await;
    ada.fill("#field-amount", "10.05").await;
    ada.fill("#field-note", "lunch <b>&</b> coffee").await;
    ada.click("form.card button[type=submit]").await;
    ada.wait_for_text("completed", false).await;
    ada.screenshot("transfer").await;
    ada.go(&format!("{base}/app")).await;
    ada.wait_for_text("$16.45", false).await;
    bob.go(&format!("{base}/app")).await;
    bob.wait_for_text("$10.05", true).await;
    bob.go(&format!("{base}/app/history")).await;
    bob.wait_for_text("transfer credit", false).await;
    bob.screenshot("history").await;

    // A too-large transfer is refused with a clear message, and nothing moves.
    ada.go(&format!("{base}/app/send")).await;
    ada.fill("#field-to", "bob@example.com").await;
    ada.fill("#field-amount", "1000").await;
    ada.click("form.card button[type=submit]").await;
    ada.wait_for_text("does not have enough available funds", false)
        .await;
    assert!(ada.source().await.contains("role=\"alert\""));

    // A merchant creates a payment link; Ada pays it; the merchant refunds part of it.
    let shop = driver.browser(&workdir.join("shop")).await;
    shop.go(&format!("{base}/merchant/signup")).await;
    shop.fill("#field-name", "Corner Shop").await;
    shop.fill("#field-email", "shop@example.com").await;
    shop.fill("#field-password", "merchant password").await;
    shop.click("form.card button[type=submit]").await;
    shop.wait_for_text("Payments, newest first", false).await;
    shop.go(&format!("{base}/merchant/payment-links")).await;
    shop.fill("#field-description", "Order 42").await;
    shop.fill("#field-amount", "5.00").await;
    shop.click("form.card button[type=submit]").await;
    shop.wait_for_text("Send this link", false).await;
    let link = shop.text("#secret").await;
    assert!(link.starts_with(&format!("{base}/pay/")), "{link}");
    shop.screenshot("merchant-payment-link").await;

    ada.go(&link).await;
    ada.wait_for_text("Corner Shop asks you to pay $5.00", false)
        .await;
    ada.screenshot("pay-link").await;
    ada.click("form.card button[type=submit]").await;
    ada.wait_for_text("Status: succeeded", false).await;
    ada.go(&format!("{base}/app")).await;
    ada.wait_for_text("$11.45", false).await;

    shop.go(&format!("{base}/merchant")).await;
    shop.wait_for_text("Order 42", false).await;
    shop.fill("form[action$='/refund'] input[name=amount]", "2.00")
        .await;
    shop.click("form[action$='/refund'] button").await;
    shop.wait_for_text("Refunded $2.00", false).await;
    shop.screenshot("merchant-dashboard").await;
    ada.go(&format!("{base}/app")).await;
    ada.wait_for_text("$13.45", true).await;
    ada.go(&format!("{base}/app/notifications")).await;
    ada.wait_for_text("Refund received", true).await;
    ada.screenshot("notifications").await;

    // Ada withdraws 3.00 to her bank.
    ada.go(&format!("{base}/app/withdraw")).await;
    ada.fill("#field-amount", "3").await;
    ada.click("form.card button[type=submit]").await;
    ada.wait_for_text("Withdrawal of $3.00 requested", false)
        .await;
    ada.screenshot("withdraw").await;
    ada.go(&format!("{base}/app")).await;
    ada.wait_for_text("$10.45", true).await;

    // The merchant's API keys: created and shown once.
    shop.go(&format!("{base}/merchant/api-keys")).await;
    shop.fill("#field-name", "server").await;
    shop.click("form.card button[type=submit]").await;
    let secret = shop.text("#secret").await;
    assert!(secret.starts_with("sk_"), "{secret}");
    shop.screenshot("merchant-api-keys").await;
    shop.go(&format!("{base}/merchant/api-keys")).await;
    assert!(
        !shop.source().await.contains(&secret),
        "the secret is shown once"
    );

    // Payouts and webhook endpoints.
    shop.go(&format!("{base}/merchant/payouts")).await;
    shop.fill("#field-amount", "1.00").await;
    shop.click("form.card button[type=submit]").await;
    shop.wait_for_text("Payout of $1.00 requested", false).await;
    shop.screenshot("merchant-payouts").await;
    shop.go(&format!("{base}/merchant/webhooks")).await;
    shop.fill("#field-url", "http://127.0.0.1:9/hooks").await;
    shop.click("form.card button[type=submit]").await;
    shop.wait_for_text("Signing secret", false).await;
    shop.click("main a[href^='/merchant/webhooks/']").await;
    shop.wait_for_text("Deliveries and their attempts", false)
        .await;
    shop.screenshot("merchant-webhooks").await;

    // Logging out revokes the session.
    ada.click("header form button").await;
    ada.wait_for_text("Log in", false).await;
    ada.go(&format!("{base}/app")).await;
    ada.wait_for_text("Email or phone", false).await;

    for browser in [&ada, &bob, &shop] {
        browser.quit().await;
    }
    running.stop().await;
}

fn tempfile_dir() -> std::path::PathBuf {
    let directory =
        std::env::temp_dir().join(format!("walleti-browser-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&directory).expect("temp dir");
    directory
}

//! End-to-end tests of the web apps in a real browser: Debian's Chromium, headless, driven
//! through WebDriver (`chromedriver`) by a small client written here on reqwest. Two users sign
//! up, one is funded through the bank simulator's page and sends money to the other; a merchant
//! creates a payment link, a user pays it, the merchant refunds part of it; an authorisation is
//! captured in part. Activity reads in plain words ("Sent to Bob · …", "Payment to Corner
//! Shop", "Returned from an authorisation"). Each main page is looked at 1280×900 and at a
//! phone's 390 px width: screenshots of both are saved under
//! `$CARGO_TARGET_TMPDIR/screenshots/` (the path is printed), and the page must not be wider
//! than the window, no element may stick out of it, no placeholder may be cut off, and a form's
//! submit button sits below its fields. `/docs` renders the API reference.
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

    async fn screenshot(&self, name: &str) -> std::path::PathBuf {
        let png = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("png");
        let directory = screenshot_directory();
        std::fs::create_dir_all(&directory).expect("screenshot directory");
        let path = directory.join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("write screenshot");
        path
    }

    /// A Chrome DevTools command through chromedriver.
    async fn devtools(&self, command: &str, params: Value) {
        self.command(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({"cmd": command, "params": params})),
        )
        .await;
    }

    async fn script(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Shows the page at `width`×`height` CSS pixels (a phone is emulated as one).
    async fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.devtools(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
        let inner = self.script("return window.innerWidth;").await;
        assert_eq!(inner.as_u64(), Some(u64::from(width)), "viewport width");
    }

    /// Looks at the page on a desktop (1280×900) and on a phone (390 px wide): saves a
    /// screenshot of each and fails on anything clipped or sticking out.
    async fn look(&self, name: &str) {
        // The web apps' style sheet is a file of walleti's own (the pages' policy forbids
        // inline style): where a page links it, it must have loaded and applied.
        let header = self
            .script(
                "if (!document.querySelector('link[href=\"/static/app.css\"]')) return null; \
                 return getComputedStyle(document.querySelector('header')).backgroundColor;",
            )
            .await;
        assert!(
            header.is_null() || header == json!("rgb(20, 33, 61)"),
            "{name}: /static/app.css applied: {header}"
        );
        for (label, width, height, mobile) in
            [("desktop", 1280, 900, false), ("phone", 390, 844, true)]
        {
            self.viewport(width, height, mobile).await;
            let path = self.screenshot(&format!("{name}-{label}")).await;
            println!("screenshot: {}", path.display());
            let problems = self.script(LAYOUT_PROBLEMS).await;
            assert_eq!(
                problems,
                json!([]),
                "{name} at {width} px ({}): {}",
                path.display(),
                self.page_text().await
            );
        }
        self.viewport(1280, 900, false).await;
    }

    async fn quit(&self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}

/// Where the screenshots go.
fn screenshot_directory() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
}

/// What is wrong with the page's layout, as a list of sentences (empty: nothing).
const LAYOUT_PROBLEMS: &str = r##"
const problems = [];
const width = window.innerWidth;
if (document.documentElement.scrollWidth > width + 1) {
  problems.push(`the page is ${document.documentElement.scrollWidth} px wide in a ${width} px window`);
}
for (const element of document.querySelectorAll("body *")) {
  const box = element.getBoundingClientRect();
  const style = getComputedStyle(element);
  const shown = box.width > 0 && box.height > 0 && style.visibility !== "hidden" && box.right > 0;
  if (shown && box.right > width + 1) {
    problems.push(`${element.tagName.toLowerCase()}${element.id ? "#" + element.id : ""} ends at ${Math.round(box.right)} px: ${(element.innerText || element.value || "").slice(0, 40)}`);
  }
}
const context = document.createElement("canvas").getContext("2d");
for (const input of document.querySelectorAll("input[placeholder]")) {
  const style = getComputedStyle(input);
  context.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
  const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  if (input.getBoundingClientRect().width > 0 && context.measureText(input.placeholder).width > room + 1) {
    problems.push(`placeholder cut off: "${input.placeholder}"`);
  }
}
for (const form of document.querySelectorAll("main form.card")) {
  const button = form.querySelector("button[type=submit]");
  const lowest = Math.max(...[...form.querySelectorAll("input:not([type=hidden]), select")].map((field) => field.getBoundingClientRect().bottom));
  if (button && button.getBoundingClientRect().top < lowest) {
    problems.push(`the "${button.innerText}" button sits beside a field, not below the fields`);
  }
}
return problems;
"##;

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
    ada.look("user-dashboard").await;
    let bob = driver.browser(&workdir.join("bob")).await;
    sign_up(&bob, &base, "Bob", "bob@example.com", "+14155550102").await;

    // Ada adds 25.00 through the bank simulator's page; the status updates by itself.
    ada.go(&format!("{base}/app/add-money")).await;
    ada.fill("#field-amount", "25.00").await;
    ada.click("form.card button[type=submit]").await;
    ada.wait_for_text("processing", false).await;
    let onramp_page = ada.url().await;
    ada.look("add-money").await;
    ada.click("main a[href*='/bank-sim/pay/']").await;
    ada.wait_for_text("Approve", false).await;
    ada.look("bank-simulator").await;
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
    ada.wait_for_text("Top-up from bank", false).await;

    // Ada sends Bob 10.05, typed in major units.
    ada.go(&format!("{base}/app/send")).await;
    ada.fill("#field-to", "bob@example.com").await;
    ada.fill("#field-amount", "10.05").await;
    ada.fill("#field-note", "lunch <b>&</b> coffee").await;
    ada.click("form.card button[type=submit]").await;
    ada.wait_for_text("completed", false).await;
    ada.wait_for_text("Sent to Bob", false).await;
    ada.look("transfer").await;
    ada.go(&format!("{base}/app")).await;
    ada.wait_for_text("$16.45", false).await;
    ada.wait_for_text("Sent to Bob · lunch <b>&</b> coffee", false)
        .await;
    bob.go(&format!("{base}/app")).await;
    bob.wait_for_text("$10.05", true).await;
    bob.go(&format!("{base}/app/history")).await;
    bob.wait_for_text("Received from Ada · lunch <b>&</b> coffee", false)
        .await;
    assert!(
        !bob.page_text().await.contains("transfer credit"),
        "activity speaks people, not ledger"
    );
    bob.look("history").await;

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
    shop.look("merchant-payment-link").await;

    ada.go(&link).await;
    ada.wait_for_text("Corner Shop asks you to pay $5.00", false)
        .await;
    ada.look("pay-link").await;
    ada.click("form.card button[type=submit]").await;
    ada.wait_for_text("Status: succeeded", false).await;
    ada.go(&format!("{base}/app")).await;
    ada.wait_for_text("$11.45", false).await;
    ada.wait_for_text("Payment to Corner Shop · Order 42", false)
        .await;

    shop.go(&format!("{base}/merchant")).await;
    shop.wait_for_text("Order 42", false).await;
    shop.fill("form[action$='/refund'] input[name=amount]", "2.00")
        .await;
    shop.click("form[action$='/refund'] button").await;
    shop.wait_for_text("Refunded $2.00", false).await;
    shop.look("merchant-dashboard").await;
    ada.go(&format!("{base}/app")).await;
    ada.wait_for_text("$13.45", true).await;
    ada.wait_for_text("Refund from Corner Shop", false).await;
    ada.go(&format!("{base}/app/notifications")).await;
    ada.wait_for_text("Refund received", true).await;
    ada.look("notifications").await;

    // Ada withdraws 3.00 to her bank.
    ada.go(&format!("{base}/app/withdraw")).await;
    ada.fill("#field-amount", "3").await;
    ada.click("form.card button[type=submit]").await;
    ada.wait_for_text("Withdrawal of $3.00 requested", false)
        .await;
    ada.look("withdraw").await;
    ada.go(&format!("{base}/app")).await;
    ada.wait_for_text("$10.45", true).await;
    ada.wait_for_text("Payout to bank", true).await;

    // The shop asks for 4.00 to capture later: Ada's dashboard says what is on hold, and for
    // whom; the shop captures 3.00 and the other 1.00 comes back.
    shop.go(&format!("{base}/merchant/payment-links")).await;
    shop.fill("#field-description", "Order 43").await;
    shop.fill("#field-amount", "4.00").await;
    shop.click("#field-capture_method option[value=manual]")
        .await;
    shop.click("form.card button[type=submit]").await;
    shop.wait_for_text("Send this link", false).await;
    let held_link = shop.text("#secret").await;
    ada.go(&held_link).await;
    ada.wait_for_text("Corner Shop asks you to pay $4.00", false)
        .await;
    ada.click("form.card button[type=submit]").await;
    ada.wait_for_text("Status: requires capture", false).await;
    ada.go(&format!("{base}/app")).await;
    ada.wait_for_text("On hold for Corner Shop until", false)
        .await;
    ada.wait_for_text("$6.45", false).await;
    ada.wait_for_text("Balance, last 30 days", false).await;
    ada.look("user-dashboard-hold").await;
    shop.go(&format!("{base}/merchant")).await;
    shop.fill("form[action$='/capture'] input[name=amount]", "3.00")
        .await;
    shop.click("form[action$='/capture'] button").await;
    shop.wait_for_text("Captured $3.00", false).await;
    shop.wait_for_text("Daily volume, last 30 days", false)
        .await;
    shop.look("merchant-dashboard-captured").await;
    ada.go(&format!("{base}/app")).await;
    ada.wait_for_text("Returned from an authorisation", true)
        .await;
    ada.wait_for_text("$3.00 from hold", false).await;
    ada.wait_for_text("$7.45", false).await;
    ada.look("user-dashboard").await;
    ada.go(&format!("{base}/app/history")).await;
    ada.wait_for_text("Payment to Corner Shop · Order 43", false)
        .await;
    ada.look("user-history").await;

    // The API reference renders this server's OpenAPI document with the vendored viewer, and
    // its Content-Security-Policy blocks nothing it needs (every violation is recorded).
    ada.devtools(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({"source": "window.policyViolations = []; document.addEventListener('securitypolicyviolation', (event) => window.policyViolations.push(`${event.effectiveDirective} ${event.blockedURI}`), true);"}),
    )
    .await;
    ada.go(&format!("{base}/docs")).await;
    for _ in 0..150 {
        let rendered = ada
            .script(
                "const doc = document.querySelector('rapi-doc'); \
                 return !!(doc && doc.shadowRoot && doc.shadowRoot.textContent.includes('/v1/transfers'));",
            )
            .await;
        if rendered == json!(true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rendered = ada
        .script("return document.querySelector('rapi-doc').shadowRoot.textContent;")
        .await;
    let rendered = rendered.as_str().unwrap_or_default();
    assert!(
        rendered.contains("/v1/transfers") && rendered.contains("/v1/payment_intents"),
        "the API reference did not render: {}",
        &rendered[..rendered.len().min(500)]
    );
    // The viewer's stylesheet names Google-hosted fonts: refusing them is the policy's job
    // (nothing is fetched from elsewhere; the page uses system fonts). Nothing else may be
    // refused.
    let violations = ada.script("return window.policyViolations;").await;
    let unexpected: Vec<&Value> = violations
        .as_array()
        .expect("violations")
        .iter()
        .filter(|violation| {
            !violation
                .as_str()
                .unwrap_or_default()
                .starts_with("font-src https://fonts.gstatic.com/")
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "the API reference broke its page's policy: {unexpected:?}"
    );
    let styled = ada
        .script(
            "const input = document.querySelector('rapi-doc').shadowRoot.querySelector('input'); \
             return input ? getComputedStyle(input).borderTopStyle : 'no input';",
        )
        .await;
    assert_ne!(styled, json!("none"), "the viewer's styles were refused");
    ada.look("api-docs").await;
    ada.go(&format!("{base}/app")).await;

    // The merchant's API keys: created and shown once.
    shop.go(&format!("{base}/merchant/api-keys")).await;
    shop.fill("#field-name", "server").await;
    shop.click("form.card button[type=submit]").await;
    let secret = shop.text("#secret").await;
    assert!(secret.starts_with("sk_"), "{secret}");
    shop.look("merchant-api-keys").await;
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
    shop.look("merchant-payouts").await;
    shop.go(&format!("{base}/merchant/webhooks")).await;
    shop.fill("#field-url", "http://127.0.0.1:9/hooks").await;
    shop.click("form.card button[type=submit]").await;
    shop.wait_for_text("Signing secret", false).await;
    shop.click("main a[href^='/merchant/webhooks/']").await;
    shop.wait_for_text("Deliveries and their attempts", false)
        .await;
    shop.look("merchant-webhooks").await;

    // Logging out revokes the session.
    ada.click("header form button").await;
    ada.wait_for_text("Log in", false).await;
    ada.go(&format!("{base}/app")).await;
    ada.wait_for_text("Email or phone", false).await;
    ada.look("user-login").await;

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

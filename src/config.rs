//! Typed settings from environment variables, with defaults that run embedded: a SQLite file
//! in the working directory, no Redis, a generated operator token.

use crate::actors::WalletLimits;
use crate::domain::Currency;
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::time::Duration;

pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://walleti.db?mode=rwc";

/// Every `WALLETI_*` variable the application reads (checked by tests against docs/compose).
pub const KNOWN_WALLETI_VARIABLES: [&str; 21] = [
    "WALLETI_P2P_REQUIRE_VERIFIED",
    "WALLETI_OPERATORS",
    "WALLETI_SIGNUPS_PER_ADDRESS_PER_HOUR",
    "WALLETI_BANK_SIMULATOR",
    "WALLETI_BANK_API_TOKEN",
    "WALLETI_EXTRA_CA_CERTS",
    "WALLETI_WEBHOOK_ALLOW_PRIVATE_NETWORKS",
    "WALLETI_METRICS_BIND",
    "WALLETI_REDIS_STREAM",
    "WALLETI_WALLET_IDLE_SECONDS",
    "WALLETI_HOLD_EXPIRY_SECONDS",
    "WALLETI_WEBHOOK_RETRY_SCHEDULE",
    "WALLETI_SMTP_FROM",
    "WALLETI_RECONCILE_INTERVAL_SECONDS",
    "WALLETI_BIND",
    "WALLETI_DEFAULT_CURRENCY",
    "WALLETI_ADMIN_TOKEN",
    "WALLETI_LOG_FORMAT",
    "WALLETI_PUBLIC_URL",
    "WALLETI_BANK_WEBHOOK_SECRET",
    "WALLETI_BANK_URL",
];

/// `requests` per `period`, with bursts of up to `burst` requests.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub requests: u32,
    pub period: Duration,
    pub burst: u32,
}

impl Quota {
    pub fn emission_interval(self) -> Duration {
        self.period / self.requests.max(1)
    }

    pub fn tolerance(self) -> Duration {
        self.emission_interval() * self.burst.max(1).saturating_sub(1)
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    pub database_url: String,
    pub default_currency: Currency,
    pub admin_token: AdminToken,
    /// Named operators (`WALLETI_OPERATORS=name=token,…`); the admin token is operator
    /// `admin` besides them.
    pub operators: Vec<Operator>,
    /// `WALLETI_P2P_REQUIRE_VERIFIED`: a transfer to an email or phone reaches only a user who
    /// verified that contact (production should set it).
    pub p2p_require_verified: bool,
    pub redis_url: Option<String>,
    pub log_format: LogFormat,
    pub limits: Limits,
    /// Base URL people and providers reach walleti at; `None`: `http://{bind}` once bound.
    pub public_url: Option<String>,
    /// Secrets accepted on `/webhooks/bank` (several during a rotation); the first one signs
    /// the embedded simulator's webhooks.
    pub bank_webhook_secrets: Vec<String>,
    /// The bank's base URL; `None`: the simulator embedded under `/bank-sim` when
    /// `bank_simulator` allows it, otherwise the bank provider is not configured.
    pub bank_url: Option<String>,
    /// Whether the development bank simulator may be mounted inside walleti.
    pub bank_simulator: BankSimulatorMode,
    /// Sent as a bearer token on every request to the bank (`WALLETI_BANK_API_TOKEN`).
    pub bank_api_token: Option<String>,
    /// A PEM bundle of extra CAs every outbound HTTP client trusts (`WALLETI_EXTRA_CA_CERTS`).
    pub extra_ca_certs: Option<String>,
    /// Let merchant webhook endpoints reach loopback, private and other non-public
    /// addresses (development and tests only).
    pub webhook_allow_private_networks: bool,
    /// Serve `/metrics` on this address instead of the main one.
    pub metrics_bind: Option<SocketAddr>,
    /// Push; `None` unless `FCM_PROJECT_ID` and `FCM_SERVICE_ACCOUNT_JSON` are set.
    pub fcm: Option<FcmSettings>,
    /// SMS; `None` unless `TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN` and `TWILIO_FROM` are set.
    pub twilio: Option<TwilioSettings>,
    /// Email; `None` when `SMTP_URL` is unset (email deliveries are recorded as skipped).
    pub smtp: Option<SmtpSettings>,
    /// Stripe; `None` when `STRIPE_SECRET_KEY` is unset (the stripe provider answers 503).
    pub stripe: Option<StripeSettings>,
    /// Delays between a merchant webhook's failed attempt and the next one; after the last,
    /// the delivery fails and its endpoint is disabled.
    pub webhook_retry_schedule: Vec<Duration>,
    /// The Redis stream events are published to (its dead letters: `{stream}:dead`).
    pub redis_stream: String,
    /// How stream consumers claim, retry and dead-letter messages.
    pub consumer_limits: crate::actors::stream_consumer::ConsumerLimits,
    /// Test fault: set it and the notifier's stream consumer dies after handling its next
    /// message, before `XACK`.
    pub fault_consumer_dies_before_ack: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

pub const REDIS_STREAM_DEFAULT: &str = "walleti:events";

/// `WALLETI_BANK_SIMULATOR`: unset (`auto`) mounts the simulator only when walleti listens on
/// a loopback address and its public URL is local too; `embedded` always (with a loud
/// warning); `off` never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BankSimulatorMode {
    #[default]
    Auto,
    Embedded,
    Off,
}

impl BankSimulatorMode {
    /// Whether the simulator is mounted for a walleti listening on `bound` and reached at
    /// `public_url`. `auto` asks for both to be local, so neither a public bind nor a
    /// reverse proxy publishing a loopback-bound walleti exposes it.
    pub fn mounts(self, bound: SocketAddr, public_url: &str) -> bool {
        match self {
            BankSimulatorMode::Embedded => true,
            BankSimulatorMode::Off => false,
            BankSimulatorMode::Auto => bound.ip().is_loopback() && is_local_url(public_url),
        }
    }
}

/// Whether the URL's host is `localhost` or a loopback address.
fn is_local_url(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// Values shipped as examples or placeholders; walleti refuses to start with any of them as
/// a secret.
pub const PLACEHOLDER_SECRETS: [&str; 6] = [
    "change-me-operator-token",
    "change-me-bank-webhook-secret",
    "change-me-bank-api-token",
    "changeme",
    "change-me",
    "walleti",
];

/// Refuses a secret that is empty-ish or a known placeholder.
fn check_secret(name: &str, value: &str) -> anyhow::Result<()> {
    let lowered = value.trim().to_ascii_lowercase();
    if PLACEHOLDER_SECRETS.contains(&lowered.as_str()) || lowered.starts_with("change-me") {
        bail!("{name} is a placeholder value; set a real secret");
    }
    Ok(())
}

/// 1 min, 5 min, 30 min, 2 h, 5 h, then 10 h three times: 9 attempts over about 37 hours.
pub const WEBHOOK_RETRY_SCHEDULE_DEFAULT_SECONDS: [u64; 8] =
    [60, 300, 1800, 7200, 18_000, 36_000, 36_000, 36_000];

#[derive(Clone)]
pub struct FcmSettings {
    pub project_id: String,
    /// The service-account key file's JSON.
    pub service_account_json: String,
    pub api_base: String,
    /// Overrides the key's `token_uri`.
    pub token_url: Option<String>,
}

impl std::fmt::Debug for FcmSettings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "FcmSettings {{ project_id: {:?}, api_base: {:?}, key: *** }}",
            self.project_id, self.api_base
        )
    }
}

#[derive(Clone)]
pub struct TwilioSettings {
    pub account_sid: String,
    pub auth_token: String,
    pub from: String,
    /// Base of Twilio's REST API, without a trailing slash.
    pub api_base: String,
}

impl std::fmt::Debug for TwilioSettings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "TwilioSettings {{ account_sid: {:?}, api_base: {:?}, token: *** }}",
            self.account_sid, self.api_base
        )
    }
}

pub const TWILIO_API_BASE_DEFAULT: &str = "https://api.twilio.com";

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// e.g. `smtp://127.0.0.1:1025` (MailHog) or `smtps://user:pass@mail.example.com`.
    pub url: String,
    pub from: String,
}

pub const SMTP_FROM_DEFAULT: &str = "walleti <no-reply@walleti.invalid>";

#[derive(Clone)]
pub struct StripeSettings {
    pub secret_key: String,
    pub webhook_secret: Option<String>,
    /// Base of the Stripe API, with a trailing slash.
    pub api_base: String,
}

impl std::fmt::Debug for StripeSettings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "StripeSettings {{ api_base: {:?}, secrets: *** }}",
            self.api_base
        )
    }
}

pub const STRIPE_API_BASE_DEFAULT: &str = "https://api.stripe.com/";

/// An operator's name (recorded on what they do, such as adjustments) and bearer token.
#[derive(Clone)]
pub struct Operator {
    pub name: String,
    pub token: String,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Operator({}, ***)", self.name)
    }
}

/// The operator name the admin token (`WALLETI_ADMIN_TOKEN`) acts as.
pub const ADMIN_OPERATOR_NAME: &str = "admin";
/// Operator names: 1 to this many characters of `a-z`, `0-9`, `.`, `_`, `-`.
pub const OPERATOR_NAME_LENGTH_MAX: usize = 64;
/// Operator tokens are at least this long (as the admin token).
pub const OPERATOR_TOKEN_LENGTH_MIN: usize = 16;

/// `name=token,name2=token2`: names unique, not `admin`, tokens long enough and unique.
fn parse_operators(text: &str, admin_token: &str) -> anyhow::Result<Vec<Operator>> {
    let mut operators: Vec<Operator> = Vec::new();
    for pair in text
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let Some((name, token)) = pair.split_once('=') else {
            bail!("WALLETI_OPERATORS: expected name=token pairs, comma-separated");
        };
        let (name, token) = (name.trim(), token.trim());
        let name_ok = !name.is_empty()
            && name.len() <= OPERATOR_NAME_LENGTH_MAX
            && name.bytes().all(|byte| {
                byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"._-".contains(&byte)
            });
        if !name_ok || name == ADMIN_OPERATOR_NAME {
            bail!(
                "WALLETI_OPERATORS: operator name {name:?} must be 1 to {OPERATOR_NAME_LENGTH_MAX} of a-z 0-9 . _ - and not {ADMIN_OPERATOR_NAME}"
            );
        }
        if token.len() < OPERATOR_TOKEN_LENGTH_MIN {
            bail!(
                "WALLETI_OPERATORS: the token of {name} must be at least {OPERATOR_TOKEN_LENGTH_MIN} characters"
            );
        }
        check_secret("WALLETI_OPERATORS", token)?;
        if token == admin_token
            || operators
                .iter()
                .any(|operator| operator.name == name || operator.token == token)
        {
            bail!("WALLETI_OPERATORS: operator names and tokens must be unique");
        }
        operators.push(Operator {
            name: name.to_owned(),
            token: token.to_owned(),
        });
    }
    Ok(operators)
}

/// The operator token and whether it was generated (then it is printed once at start-up).
#[derive(Clone)]
pub struct AdminToken {
    pub value: String,
    pub generated: bool,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("AdminToken(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Sign-ups per client address per hour unless `WALLETI_SIGNUPS_PER_ADDRESS_PER_HOUR` says.
pub const SIGNUPS_PER_ADDRESS_PER_HOUR_DEFAULT: u32 = 20;
/// A verification code works for 10 minutes.
pub const VERIFICATION_CODE_LIFETIME_SECONDS: u64 = 600;
/// SMS to one user per UTC day at most: a bound on what scripted logins or code requests can
/// cost (SMS pumping).
pub const SMS_PER_USER_PER_DAY_MAX: u32 = 10;

/// Timeouts and sizes, each with its unit in its name.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub wallet: WalletLimits,
    /// Bounds of one group commit by the ledger writer.
    pub ledger: crate::actors::ledger_writer::LedgerLimits,
    /// Every actor call waits at most this long; a timeout becomes a 503.
    pub call_timeout: Duration,
    /// How long a transfer request waits for its saga before answering `pending`.
    pub transfer_wait_timeout: Duration,
    /// A saga `debited` for longer than this is resumed by the periodic pass.
    pub saga_stale_after: Duration,
    pub saga_resume_interval: Duration,
    /// Attempts per channel delivery before it is `failed`.
    pub delivery_attempts_max: i32,
    /// First retry delay of a failed delivery; doubles per attempt (with ±20 % jitter).
    pub delivery_backoff_base: Duration,
    /// The notifier looks for due retries this often.
    pub delivery_retry_interval: Duration,
    /// The outbox relay looks for unpublished events this often.
    pub outbox_poll_interval: Duration,
    /// The reconciler runs this often; `None`: only on demand.
    pub reconcile_interval: Option<Duration>,
    /// The bank ingestor looks for unprocessed inbox events this often (besides being nudged).
    pub inbox_poll_interval: Duration,
    /// An idempotency claim older than this whose request never finished is taken over.
    pub idempotency_lock_timeout: Duration,
    pub session_lifetime: Duration,
    /// Login attempts per login identifier (normalised, hashed).
    pub login_quota: Quota,
    /// Login attempts per client address (an IPv6 client by its /64), whatever the login.
    pub login_address_quota: Quota,
    /// Login attempts on this node (or, with Redis, on all nodes) together: a bound on
    /// credential stuffing from many addresses, and on the password-hashing work it asks for.
    pub login_global_quota: Quota,
    /// Money-moving requests (transfers, on-ramps) per user.
    pub money_quota: Quota,
    /// Sign-ups (users and merchants, each counted apart) per client address.
    pub signup_address_quota: Quota,
    /// Verification codes a user may ask for, per channel.
    pub verification_quota: Quota,
    /// How long a verification code can be used.
    pub verification_code_lifetime: Duration,
    /// SMS sent to one user per UTC day at most (notifications and codes together).
    pub sms_per_user_day_max: u32,
    pub body_bytes_max: usize,
    /// How long a manual payment intent's authorisation holds the funds before it expires.
    pub hold_lifetime: Duration,
    /// The hold keeper expires authorisations and resubmits payouts this often.
    pub hold_keeper_interval: Duration,
    /// The merchant webhook dispatcher looks for due deliveries this often.
    pub webhook_dispatch_interval: Duration,
    /// A bank top-up or payout without the bank's webhook for this long is asked about.
    pub bank_poll_after: Duration,
    /// The bank is asked about such top-ups and payouts at most this often.
    pub bank_poll_interval: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            wallet: WalletLimits::default(),
            ledger: crate::actors::ledger_writer::LedgerLimits::default(),
            call_timeout: Duration::from_secs(10),
            transfer_wait_timeout: Duration::from_secs(10),
            saga_stale_after: Duration::from_secs(30),
            saga_resume_interval: Duration::from_secs(10),
            idempotency_lock_timeout: Duration::from_secs(60),
            inbox_poll_interval: Duration::from_secs(5),
            reconcile_interval: Some(Duration::from_secs(3600)),
            outbox_poll_interval: Duration::from_millis(250),
            delivery_attempts_max: 6,
            delivery_backoff_base: Duration::from_secs(2),
            delivery_retry_interval: Duration::from_secs(1),
            session_lifetime: Duration::from_secs(24 * 3600),
            login_quota: Quota {
                requests: 10,
                period: Duration::from_secs(60),
                burst: 10,
            },
            login_address_quota: Quota {
                requests: 100,
                period: Duration::from_secs(60),
                burst: 100,
            },
            login_global_quota: Quota {
                requests: 50,
                period: Duration::from_secs(1),
                burst: 500,
            },
            money_quota: Quota {
                requests: 50,
                period: Duration::from_secs(1),
                burst: 100,
            },
            signup_address_quota: Quota {
                requests: SIGNUPS_PER_ADDRESS_PER_HOUR_DEFAULT,
                period: Duration::from_secs(3600),
                burst: SIGNUPS_PER_ADDRESS_PER_HOUR_DEFAULT,
            },
            // Three codes at once, then one every 12 minutes.
            verification_quota: Quota {
                requests: 5,
                period: Duration::from_secs(3600),
                burst: 3,
            },
            verification_code_lifetime: Duration::from_secs(VERIFICATION_CODE_LIFETIME_SECONDS),
            sms_per_user_day_max: SMS_PER_USER_PER_DAY_MAX,
            body_bytes_max: 64 * 1024,
            hold_lifetime: Duration::from_secs(7 * 24 * 3600),
            hold_keeper_interval: Duration::from_secs(5),
            webhook_dispatch_interval: Duration::from_secs(1),
            bank_poll_after: Duration::from_secs(600),
            bank_poll_interval: Duration::from_secs(60),
        }
    }
}

impl Settings {
    /// Settings for the embedded default, used as the base of `from_env` and by tests.
    pub fn embedded(database_url: impl Into<String>) -> Settings {
        Settings {
            bind: DEFAULT_BIND
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080))),
            database_url: database_url.into(),
            default_currency: Currency::Usd,
            admin_token: AdminToken {
                value: generate_token("admin"),
                generated: true,
            },
            operators: Vec::new(),
            p2p_require_verified: false,
            redis_url: None,
            log_format: LogFormat::Text,
            limits: Limits::default(),
            public_url: None,
            bank_webhook_secrets: vec![generate_token("whsec")],
            bank_url: None,
            bank_simulator: BankSimulatorMode::Auto,
            bank_api_token: None,
            extra_ca_certs: None,
            webhook_allow_private_networks: false,
            metrics_bind: None,
            stripe: None,
            smtp: None,
            twilio: None,
            fcm: None,
            redis_stream: REDIS_STREAM_DEFAULT.to_owned(),
            consumer_limits: crate::actors::stream_consumer::ConsumerLimits::default(),
            fault_consumer_dies_before_ack: std::sync::Arc::default(),
            webhook_retry_schedule: WEBHOOK_RETRY_SCHEDULE_DEFAULT_SECONDS
                .iter()
                .map(|seconds| Duration::from_secs(*seconds))
                .collect(),
        }
    }

    pub fn from_env() -> anyhow::Result<Settings> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Settings> {
        let mut settings = Settings::embedded(
            lookup("DATABASE_URL")
                .filter(|url| !url.is_empty())
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
        );
        if let Some(bind) = lookup("WALLETI_BIND") {
            settings.bind = bind
                .parse()
                .with_context(|| format!("WALLETI_BIND={bind} is not host:port"))?;
        }
        if let Some(code) = lookup("WALLETI_DEFAULT_CURRENCY") {
            settings.default_currency =
                Currency::parse(&code.to_ascii_lowercase()).map_err(|_| {
                    anyhow::anyhow!("WALLETI_DEFAULT_CURRENCY={code} is not a supported currency")
                })?;
        }
        if let Some(token) = lookup("WALLETI_ADMIN_TOKEN").filter(|token| !token.is_empty()) {
            if token.len() < 16 {
                bail!("WALLETI_ADMIN_TOKEN must be at least 16 characters");
            }
            check_secret("WALLETI_ADMIN_TOKEN", &token)?;
            settings.admin_token = AdminToken {
                value: token,
                generated: false,
            };
        }
        if let Some(operators) = lookup("WALLETI_OPERATORS") {
            settings.operators = parse_operators(&operators, &settings.admin_token.value)?;
        }
        settings.p2p_require_verified = match lookup("WALLETI_P2P_REQUIRE_VERIFIED").as_deref() {
            None | Some("") | Some("false") => false,
            Some("true") => true,
            Some(other) => bail!("WALLETI_P2P_REQUIRE_VERIFIED={other}: expected true or false"),
        };
        if let Some(count) =
            lookup("WALLETI_SIGNUPS_PER_ADDRESS_PER_HOUR").filter(|c| !c.is_empty())
        {
            let count: u32 = count.parse().ok().filter(|c| *c > 0).with_context(|| {
                format!("WALLETI_SIGNUPS_PER_ADDRESS_PER_HOUR={count} is not a positive number")
            })?;
            settings.limits.signup_address_quota = Quota {
                requests: count,
                period: Duration::from_secs(3600),
                burst: count,
            };
        }
        settings.redis_url = lookup("REDIS_URL").filter(|url| !url.is_empty());
        if let Some(stream) = lookup("WALLETI_REDIS_STREAM").filter(|s| !s.is_empty()) {
            settings.redis_stream = stream;
        }
        settings.public_url = lookup("WALLETI_PUBLIC_URL")
            .filter(|url| !url.is_empty())
            .map(|url| url.trim_end_matches('/').to_owned());
        if let Some(secrets) = lookup("WALLETI_BANK_WEBHOOK_SECRET") {
            let secrets: Vec<String> = secrets
                .split(',')
                .map(str::trim)
                .filter(|secret| !secret.is_empty())
                .map(str::to_owned)
                .collect();
            for secret in &secrets {
                check_secret("WALLETI_BANK_WEBHOOK_SECRET", secret)?;
            }
            if !secrets.is_empty() {
                settings.bank_webhook_secrets = secrets;
            }
        }
        settings.bank_url = lookup("WALLETI_BANK_URL").filter(|url| !url.is_empty());
        settings.bank_simulator = match lookup("WALLETI_BANK_SIMULATOR").as_deref() {
            None | Some("") | Some("auto") => BankSimulatorMode::Auto,
            Some("embedded") => BankSimulatorMode::Embedded,
            Some("off") => BankSimulatorMode::Off,
            Some(other) => bail!("WALLETI_BANK_SIMULATOR={other}: expected embedded, off or auto"),
        };
        if let Some(token) = lookup("WALLETI_BANK_API_TOKEN").filter(|token| !token.is_empty()) {
            if token.len() < 16 {
                bail!("WALLETI_BANK_API_TOKEN must be at least 16 characters");
            }
            check_secret("WALLETI_BANK_API_TOKEN", &token)?;
            settings.bank_api_token = Some(token);
        }
        settings.extra_ca_certs = lookup("WALLETI_EXTRA_CA_CERTS").filter(|path| !path.is_empty());
        settings.webhook_allow_private_networks =
            match lookup("WALLETI_WEBHOOK_ALLOW_PRIVATE_NETWORKS").as_deref() {
                None | Some("") | Some("false") => false,
                Some("true") => true,
                Some(other) => {
                    bail!("WALLETI_WEBHOOK_ALLOW_PRIVATE_NETWORKS={other}: expected true or false")
                }
            };
        if let Some(bind) = lookup("WALLETI_METRICS_BIND").filter(|bind| !bind.is_empty()) {
            settings.metrics_bind = Some(
                bind.parse()
                    .with_context(|| format!("WALLETI_METRICS_BIND={bind} is not host:port"))?,
            );
        }
        if let Some(seconds) = lookup("WALLETI_RECONCILE_INTERVAL_SECONDS") {
            let seconds: u64 = seconds.parse().with_context(|| {
                format!("WALLETI_RECONCILE_INTERVAL_SECONDS={seconds} is not a number of seconds")
            })?;
            settings.limits.reconcile_interval =
                (seconds > 0).then(|| Duration::from_secs(seconds));
        }
        if let Some(seconds) = lookup("WALLETI_WALLET_IDLE_SECONDS") {
            let seconds: u64 = seconds.parse().ok().filter(|s| *s > 0).with_context(|| {
                format!("WALLETI_WALLET_IDLE_SECONDS={seconds} is not a positive number of seconds")
            })?;
            settings.limits.wallet.idle_timeout = Duration::from_secs(seconds);
        }
        if let Some(shards) = lookup("WALLETI_WALLET_SHARDS") {
            let shards: usize = shards
                .parse()
                .ok()
                .filter(|s| (1..=65_536).contains(s))
                .with_context(|| {
                    format!("WALLETI_WALLET_SHARDS={shards} is not a number from 1 to 65536")
                })?;
            settings.limits.wallet.shards = shards;
        }
        if let Some(seconds) = lookup("WALLETI_HOLD_EXPIRY_SECONDS") {
            let seconds: u64 = seconds.parse().ok().filter(|s| *s > 0).with_context(|| {
                format!("WALLETI_HOLD_EXPIRY_SECONDS={seconds} is not a positive number of seconds")
            })?;
            settings.limits.hold_lifetime = Duration::from_secs(seconds);
        }
        if let Some(schedule) = lookup("WALLETI_WEBHOOK_RETRY_SCHEDULE").filter(|s| !s.is_empty()) {
            settings.webhook_retry_schedule = schedule
                .split(',')
                .map(|delay| parse_delay(delay.trim()))
                .collect::<Option<Vec<_>>>()
                .with_context(|| {
                    format!(
                        "WALLETI_WEBHOOK_RETRY_SCHEDULE={schedule}: expected delays like 60s,5m,2h or 500ms, comma-separated"
                    )
                })?;
        }
        settings.smtp = lookup("SMTP_URL")
            .filter(|url| !url.is_empty())
            .map(|url| SmtpSettings {
                url,
                from: lookup("WALLETI_SMTP_FROM")
                    .filter(|from| !from.is_empty())
                    .unwrap_or_else(|| SMTP_FROM_DEFAULT.to_owned()),
            });
        let nonempty = |name: &str| lookup(name).filter(|value| !value.is_empty());
        settings.twilio = match (
            nonempty("TWILIO_ACCOUNT_SID"),
            nonempty("TWILIO_AUTH_TOKEN"),
            nonempty("TWILIO_FROM"),
        ) {
            (Some(account_sid), Some(auth_token), Some(from)) => Some(TwilioSettings {
                account_sid,
                auth_token,
                from,
                api_base: nonempty("TWILIO_API_BASE")
                    .unwrap_or_else(|| TWILIO_API_BASE_DEFAULT.to_owned()),
            }),
            _ => None,
        };
        settings.fcm = match (
            nonempty("FCM_PROJECT_ID"),
            nonempty("FCM_SERVICE_ACCOUNT_JSON"),
        ) {
            (Some(project_id), Some(json)) => {
                // The variable holds the key file's JSON, or the path of the key file.
                let service_account_json = if json.trim_start().starts_with('{') {
                    json
                } else {
                    std::fs::read_to_string(&json)
                        .with_context(|| format!("read FCM_SERVICE_ACCOUNT_JSON file {json}"))?
                };
                Some(FcmSettings {
                    project_id,
                    service_account_json,
                    api_base: nonempty("FCM_API_BASE")
                        .unwrap_or_else(|| crate::providers::push::FCM_API_BASE_DEFAULT.to_owned()),
                    token_url: nonempty("FCM_TOKEN_URL"),
                })
            }
            _ => None,
        };
        settings.stripe = lookup("STRIPE_SECRET_KEY")
            .filter(|key| !key.is_empty())
            .map(|secret_key| StripeSettings {
                secret_key,
                webhook_secret: lookup("STRIPE_WEBHOOK_SECRET").filter(|secret| !secret.is_empty()),
                api_base: lookup("STRIPE_API_BASE")
                    .filter(|base| !base.is_empty())
                    .unwrap_or_else(|| STRIPE_API_BASE_DEFAULT.to_owned()),
            });
        settings.log_format = match lookup("WALLETI_LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("WALLETI_LOG_FORMAT={other}: expected text or json"),
        };
        Ok(settings)
    }
}

/// `500ms`, `30s`, `5m`, `2h`, or a bare number of seconds.
fn parse_delay(text: &str) -> Option<Duration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(number)),
        "" | "s" => Some(Duration::from_secs(number)),
        "m" => Some(Duration::from_secs(number * 60)),
        "h" => Some(Duration::from_secs(number * 3600)),
        _ => None,
    }
}

/// A random token with a readable prefix: 32 random bytes, hex-encoded.
pub fn generate_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn webhook_schedule_and_hold_expiry_parse() -> anyhow::Result<()> {
        let parsed = settings(&[
            ("WALLETI_WEBHOOK_RETRY_SCHEDULE", "200ms, 1s,5m,2h,7"),
            ("WALLETI_HOLD_EXPIRY_SECONDS", "30"),
        ])?;
        assert_eq!(
            parsed.webhook_retry_schedule,
            vec![
                Duration::from_millis(200),
                Duration::from_secs(1),
                Duration::from_secs(300),
                Duration::from_secs(7200),
                Duration::from_secs(7)
            ]
        );
        assert_eq!(parsed.limits.hold_lifetime, Duration::from_secs(30));
        let default = settings(&[])?;
        let total: Duration = default.webhook_retry_schedule.iter().sum();
        assert!(total >= Duration::from_secs(24 * 3600));
        assert!(settings(&[("WALLETI_WEBHOOK_RETRY_SCHEDULE", "1d")]).is_err());
        assert!(settings(&[("WALLETI_HOLD_EXPIRY_SECONDS", "0")]).is_err());
        Ok(())
    }

    fn settings(pairs: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn the_bank_simulator_mounts_only_on_a_local_walleti_unless_asked() {
        let local: SocketAddr = "127.0.0.1:8080".parse().expect("address");
        let everywhere: SocketAddr = "0.0.0.0:8080".parse().expect("address");
        let public: SocketAddr = "203.0.113.7:8080".parse().expect("address");
        let v6_local: SocketAddr = "[::1]:8080".parse().expect("address");
        let auto = BankSimulatorMode::Auto;
        assert!(auto.mounts(local, "http://127.0.0.1:8080"));
        assert!(auto.mounts(v6_local, "http://[::1]:8080"));
        assert!(auto.mounts(local, "http://localhost:8080"));
        assert!(!auto.mounts(everywhere, "http://0.0.0.0:8080"));
        assert!(!auto.mounts(public, "http://203.0.113.7:8080"));
        // Bound locally behind a reverse proxy that publishes it.
        assert!(!auto.mounts(local, "https://pay.example.com"));
        assert!(BankSimulatorMode::Embedded.mounts(everywhere, "https://pay.example.com"));
        assert!(!BankSimulatorMode::Off.mounts(local, "http://127.0.0.1:8080"));
    }

    #[test]
    fn placeholder_secrets_are_refused() {
        assert!(settings(&[("WALLETI_ADMIN_TOKEN", "change-me-operator-token")]).is_err());
        assert!(
            settings(&[(
                "WALLETI_BANK_WEBHOOK_SECRET",
                "real-secret-0123456789,change-me-bank-webhook-secret"
            )])
            .is_err()
        );
        assert!(settings(&[("WALLETI_BANK_API_TOKEN", "change-me-bank-api-token")]).is_err());
        assert!(settings(&[("WALLETI_ADMIN_TOKEN", "a-real-operator-token-0123")]).is_ok());
    }

    #[test]
    fn security_settings_parse() -> anyhow::Result<()> {
        let parsed = settings(&[
            ("WALLETI_BANK_SIMULATOR", "embedded"),
            ("WALLETI_WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true"),
            ("WALLETI_METRICS_BIND", "127.0.0.1:9100"),
            ("WALLETI_BANK_API_TOKEN", "bank-api-token-0123456789"),
        ])?;
        assert_eq!(parsed.bank_simulator, BankSimulatorMode::Embedded);
        assert!(parsed.webhook_allow_private_networks);
        assert_eq!(parsed.metrics_bind.map(|bind| bind.port()), Some(9100));
        let default = settings(&[])?;
        assert_eq!(default.bank_simulator, BankSimulatorMode::Auto);
        assert!(!default.webhook_allow_private_networks);
        assert!(settings(&[("WALLETI_BANK_SIMULATOR", "yes")]).is_err());
        assert!(settings(&[("WALLETI_WEBHOOK_ALLOW_PRIVATE_NETWORKS", "1")]).is_err());
        Ok(())
    }

    #[test]
    fn operators_parse_and_bad_ones_are_refused() -> anyhow::Result<()> {
        let parsed = settings(&[(
            "WALLETI_OPERATORS",
            "alice=alice-token-0123456789, bob.ops=bob-token-0123456789",
        )])?;
        let names: Vec<&str> = parsed.operators.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob.ops"]);
        assert_eq!(parsed.operators[1].token, "bob-token-0123456789");
        assert!(!format!("{:?}", parsed.operators).contains("token-0123"));
        for bad in [
            "alice",
            "alice=short",
            "admin=admin-token-0123456789",
            "Alice=alice-token-0123456789",
            "a=same-token-0123456789,b=same-token-0123456789",
            "a=a-token-0123456789,a=b-token-0123456789",
            "a=change-me-operator-token",
        ] {
            assert!(settings(&[("WALLETI_OPERATORS", bad)]).is_err(), "{bad}");
        }
        assert!(settings(&[("WALLETI_P2P_REQUIRE_VERIFIED", "true")])?.p2p_require_verified);
        assert!(!settings(&[])?.p2p_require_verified);
        assert!(settings(&[("WALLETI_P2P_REQUIRE_VERIFIED", "yes")]).is_err());
        let signups = settings(&[("WALLETI_SIGNUPS_PER_ADDRESS_PER_HOUR", "500")])?;
        assert_eq!(signups.limits.signup_address_quota.requests, 500);
        assert!(settings(&[("WALLETI_SIGNUPS_PER_ADDRESS_PER_HOUR", "0")]).is_err());
        Ok(())
    }

    #[test]
    fn defaults_run_embedded() {
        let settings = settings(&[]).expect("defaults");
        assert_eq!(settings.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(settings.default_currency, Currency::Usd);
        assert!(settings.admin_token.generated);
        assert!(settings.redis_url.is_none());
    }

    #[test]
    fn reads_the_environment() {
        let settings = settings(&[
            ("WALLETI_BIND", "0.0.0.0:9000"),
            ("WALLETI_DEFAULT_CURRENCY", "eur"),
            ("WALLETI_ADMIN_TOKEN", "operator-token-0123456789"),
            ("DATABASE_URL", "postgres://postgres@127.0.0.1/test"),
        ])
        .expect("valid");
        assert_eq!(settings.bind.port(), 9000);
        assert_eq!(settings.default_currency, Currency::Eur);
        assert!(!settings.admin_token.generated);
        assert!(settings.database_url.starts_with("postgres://"));
        assert!(self::settings(&[("WALLETI_DEFAULT_CURRENCY", "xxx")]).is_err());
        assert!(self::settings(&[("WALLETI_BIND", "nonsense")]).is_err());
    }
}

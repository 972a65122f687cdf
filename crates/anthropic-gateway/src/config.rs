//! The configuration: one TOML file, then environment overrides, validated before anything
//! starts.
//!
//! Every field is checked as the file is read, so an error names its line, its column and its
//! field (`anthropic-gateway --check FILE` prints it and exits). An environment variable
//! `ANTHROPIC_GATEWAY__{SECTION}__{FIELD}` (double underscores between the parts, any case)
//! replaces that field, `ANTHROPIC_GATEWAY__LISTEN` a top-level one; its value is read as a
//! TOML value (a number, `true`, `["a", "b"]`) and otherwise taken as a string. Two variables
//! keep their usual names: `ANTHROPIC_BASE_URL` (the upstream's base URL) and the upstream key,
//! read from the variable `upstream.api_key_env` names (`ANTHROPIC_API_KEY` by default) or from
//! `upstream.api_key_file`. The key is never part of the configuration's `Debug`.
//!
//! See `anthropic-gateway.example.toml` in this crate for every field with its default.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

/// The prefix of the environment overrides.
pub const ENV_PREFIX: &str = "ANTHROPIC_GATEWAY__";

/// Why a configuration cannot be used: the message names the file's line and field, or the
/// environment variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or a field is wrong (the message has the line and field).
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// toml's report: line, column, the line itself, what is wrong.
        message: String,
    },
    /// An environment override is wrong.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// Fields that are each fine but do not go together.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, as a path (`pacing.redis_url`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to listen (`127.0.0.1:8080`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// TLS for callers (optional): certificate chain and key, PEM files.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The API this gateway calls.
    #[serde(default)]
    pub upstream: Upstream,
    /// Per-model fallback chains: when a model is down, the call goes to these in turn.
    #[serde(default)]
    pub fallbacks: BTreeMap<String, Vec<ModelName>>,
    /// The per-model circuit breakers.
    #[serde(default)]
    pub breaker: Breaker,
    /// Pacing to the upstream quota, and the queue in front of it.
    #[serde(default)]
    pub pacing: Pacing,
    /// Bounds on what callers may send and hold.
    #[serde(default)]
    pub limits: Limits,
    /// Where virtual keys are looked up besides the `[[key]]` tables.
    #[serde(default)]
    pub keys: KeysConfig,
    /// The virtual keys callers present (stored hashed).
    #[serde(default, rename = "key")]
    pub key: Vec<KeyEntry>,
    /// USD per million tokens, by model, for the keys' budgets.
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
    /// The access log and metrics.
    #[serde(default)]
    pub telemetry: Telemetry,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// `[tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[upstream]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Upstream {
    /// The API's base URL (`ANTHROPIC_BASE_URL` overrides it).
    pub base_url: Option<String>,
    /// The environment variable that holds the key.
    pub api_key_env: String,
    /// A file whose first line is the key (instead of the variable).
    pub api_key_file: Option<PathBuf>,
    /// Serve from the embedded mock of the API (no key, no network): for trying it out.
    pub mock: bool,
    /// Retries per call (after the first attempt).
    pub max_retries: u32,
    /// Calls in flight to the API at most.
    pub concurrency: NonZeroU32,
    /// The whole time a call may take (waits for the quota, retries, the answer's head), in
    /// seconds; a caller's `x-gateway-deadline` header may shorten it.
    pub deadline_secs: Secs,
    /// The longest a stream may go without an event, in seconds.
    pub stream_idle_secs: Secs,
    /// Headers sent with every call upstream (a proxy's, say); never the caller's.
    pub headers: BTreeMap<String, String>,
}

impl Default for Upstream {
    fn default() -> Self {
        Self {
            base_url: None,
            api_key_env: "ANTHROPIC_API_KEY".to_owned(),
            api_key_file: None,
            mock: false,
            max_retries: 2,
            concurrency: NonZeroU32::new(256).expect("not zero"),
            deadline_secs: Secs(600.0),
            stream_idle_secs: Secs(90.0),
            headers: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field(
                "base_url",
                &self.base_url.as_deref().map(redact_url_userinfo),
            )
            .field("api_key_env", &self.api_key_env)
            .field("api_key_file", &self.api_key_file)
            .field("mock", &self.mock)
            .field("max_retries", &self.max_retries)
            .field("concurrency", &self.concurrency)
            .field("deadline_secs", &self.deadline_secs)
            .field("stream_idle_secs", &self.stream_idle_secs)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `[breaker]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Breaker {
    /// Per-model circuit breakers on (they are also on whenever a fallback chain is set).
    pub enabled: bool,
    /// The failure rate that opens a circuit (0 to 1).
    pub failure_rate: Ratio,
    /// Calls a window needs before its rate counts.
    pub minimum_calls: NonZeroU32,
    /// How long a circuit stays open before a probe, in seconds.
    pub open_secs: Secs,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_rate: Ratio(0.5),
            minimum_calls: NonZeroU32::new(10).expect("not zero"),
            open_secs: Secs(5.0),
        }
    }
}

/// Where pacing state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// In this process.
    Local,
    /// In Redis, shared by every replica.
    Redis,
}

/// `[pacing]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pacing {
    /// `local` or `redis` (the quota, the breakers, the keys' limits and spend shared by every
    /// replica).
    pub store: Store,
    /// The Redis URL (for `store = "redis"`, and for keys kept in Redis).
    pub redis_url: Option<String>,
    /// The prefix of every Redis key.
    pub prefix: String,
    /// How long a request may wait for the quota, in seconds; past it, a 429 at once.
    pub max_wait_secs: Secs,
    /// Requests admitted and not yet answered (waiting for the quota or in flight) at most;
    /// past it, a 429 at once.
    pub max_queued: NonZeroU32,
    /// Start every quota with these per-minute limits before the first answer teaches them.
    pub requests_per_minute: Option<NonZeroU64>,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            store: Store::Local,
            redis_url: None,
            prefix: "anthropic-gateway".to_owned(),
            max_wait_secs: Secs(30.0),
            max_queued: NonZeroU32::new(1024).expect("not zero"),
            requests_per_minute: None,
        }
    }
}

impl fmt::Debug for Pacing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pacing")
            .field("store", &self.store)
            .field(
                "redis_url",
                &self.redis_url.as_deref().map(redact_url_userinfo),
            )
            .field("prefix", &self.prefix)
            .field("max_wait_secs", &self.max_wait_secs)
            .field("max_queued", &self.max_queued)
            .field("requests_per_minute", &self.requests_per_minute)
            .finish()
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest request body, in bytes (larger: 413, without reading past it).
    pub max_body_bytes: NonZeroU64,
    /// Connections open at once at most (more wait to be accepted).
    pub max_connections: NonZeroU32,
    /// How long a caller may take to send a request's headers, in seconds.
    pub header_timeout_secs: Secs,
    /// How long a caller may take to send a request's body, in seconds.
    pub body_timeout_secs: Secs,
    /// After SIGTERM, how long running requests and streams may go on, in seconds.
    pub shutdown_grace_secs: Secs,
    /// Requests without a valid key an address may make in a minute; past it, its requests
    /// get a 429 at once (no key looked up) for the rest of the minute.
    pub failed_auth_per_minute: NonZeroU32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: NonZeroU64::new(32 * 1024 * 1024).expect("not zero"),
            max_connections: NonZeroU32::new(10_000).expect("not zero"),
            header_timeout_secs: Secs(10.0),
            body_timeout_secs: Secs(30.0),
            shutdown_grace_secs: Secs(30.0),
            failed_auth_per_minute: NonZeroU32::new(30).expect("not zero"),
        }
    }
}

/// `[keys]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Also look keys up in Redis (`{prefix}:keys`, a hash from the key's SHA-256 to its
    /// settings as JSON; `anthropic-gateway key new --redis` writes one).
    pub redis: bool,
}

/// One `[[key]]`: a virtual key, by the SHA-256 of its secret.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The name logs and metrics use (letters, digits, `-`, `_`, `.`).
    pub name: KeyName,
    /// `sha256:` and the hex SHA-256 of the secret (`anthropic-gateway key hash` prints it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<KeyHash>,
    /// The models it may call (absent: every model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<ModelName>>,
    /// Its requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<NonZeroU64>,
    /// Its tokens (input and output, as answers report them) per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<NonZeroU64>,
    /// What it may spend, in USD, at the `[prices]` table's rates: in all, or per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<Usd>,
    /// The budget's period in days (7: a week), periods counted from the Unix epoch at UTC
    /// midnight; absent: the budget is a total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_period_days: Option<NonZeroU32>,
}

/// `[prices.MODEL]`: USD per million tokens.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million input tokens.
    pub input: Usd,
    /// Per million output tokens.
    pub output: Usd,
}

/// `[telemetry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Telemetry {
    /// Serve `GET /metrics` (Prometheus).
    pub metrics: bool,
    /// Write a JSON line per request to standard output.
    pub access_log: bool,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            metrics: true,
            access_log: true,
        }
    }
}

/// A number of seconds: finite, at least 1 ms, at most a year.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Secs(pub f64);

impl Secs {
    /// As a duration.
    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if !(0.001..=31_536_000.0).contains(&v) {
            return Err(de::Error::custom(format!(
                "{v} seconds: expected between 0.001 and 31536000"
            )));
        }
        Ok(Secs(v))
    }
}

/// A ratio between 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio(pub f64);

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if !(0.0..=1.0).contains(&v) {
            return Err(de::Error::custom(format!("{v}: expected between 0 and 1")));
        }
        Ok(Ratio(v))
    }
}

/// An amount of USD: finite, not negative.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Usd(pub f64);

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if !v.is_finite() || !(0.0..=1e12).contains(&v) {
            return Err(de::Error::custom(format!(
                "{v} USD: expected between 0 and 1e12"
            )));
        }
        Ok(Usd(v))
    }
}

/// A virtual key's name: 1 to 64 of letters, digits, `-`, `_`, `.` (it is a metric label).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct KeyName(pub String);

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        KeyName::new(&s).map_err(de::Error::custom)
    }
}

impl KeyName {
    /// Checks a name.
    pub fn new(s: &str) -> Result<Self, String> {
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if s.is_empty() || s.len() > 64 || !s.chars().all(ok) {
            return Err(format!(
                "{s:?}: a key name is 1 to 64 letters, digits, '-', '_' or '.'"
            ));
        }
        Ok(KeyName(s.to_owned()))
    }
}

/// A model name: 1 to 128 printable ASCII characters without spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, PartialOrd, Ord)]
pub struct ModelName(pub String);

impl<'de> Deserialize<'de> for ModelName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || s.len() > 128 || !s.chars().all(|c| c.is_ascii_graphic()) {
            return Err(de::Error::custom(format!(
                "{s:?}: a model name is 1 to 128 printable characters without spaces"
            )));
        }
        Ok(ModelName(s))
    }
}

/// The SHA-256 of a virtual key's secret, written `sha256:` and 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash cannot be turned back into the key; short, so logs stay readable.
        write!(f, "sha256:{}…", &self.hex()[..8])
    }
}

impl KeyHash {
    /// The hash of `secret`.
    pub fn of(secret: &str) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        KeyHash(out)
    }

    /// 64 hex digits.
    pub fn hex(&self) -> String {
        use std::fmt::Write;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// Reads `sha256:<64 hex digits>`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| {
            "a key hash is \"sha256:\" and 64 hex digits (`anthropic-gateway key hash`)".to_owned()
        })?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("a key hash is \"sha256:\" and 64 hex digits".to_owned());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(KeyHash(out))
    }
}

impl serde::Serialize for KeyHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("sha256:{}", self.hex()))
    }
}

impl<'de> Deserialize<'de> for KeyHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        KeyHash::parse(&s).map_err(de::Error::custom)
    }
}

/// `scheme://user:password@host` without the user and password.
pub fn redact_url_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find('/').unwrap_or(rest.len());
            match rest[..host_end].rfind('@') {
                Some(at) => format!("{scheme}://<redacted>@{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

impl Config {
    /// Reads `path`, applies the environment overrides of `env`, validates.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path, env)
    }

    /// Parses `text` (read from `path`, for messages), applies the overrides, validates.
    pub fn parse(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let file_error = |e: toml::de::Error| ConfigError::File {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        };
        // The file alone first: its errors keep their line and column.
        let mut config: Config = toml::from_str(text).map_err(file_error)?;
        let overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.to_ascii_uppercase().starts_with(ENV_PREFIX))
            .collect();
        if !overrides.is_empty() {
            let mut table: toml::Table = toml::from_str(text).map_err(file_error)?;
            for (var, value) in &overrides {
                apply_override(&mut table, var, value)?;
                config = Config::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
                    ConfigError::Env {
                        var: var.clone(),
                        message: e.to_string().trim_end().to_owned(),
                    }
                })?;
            }
        }
        config.check()?;
        Ok(config)
    }

    /// What fields cannot say alone.
    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            field: field.to_owned(),
            message,
        };
        let needs_redis = self.pacing.store == Store::Redis || self.keys.redis;
        match &self.pacing.redis_url {
            None if needs_redis => {
                return Err(invalid(
                    "pacing.redis_url",
                    "needed for pacing.store = \"redis\" and keys.redis = true".to_owned(),
                ));
            }
            Some(url) => {
                redis::Client::open(url.as_str()).map_err(|e| {
                    invalid(
                        "pacing.redis_url",
                        format!("{}: {e}", redact_url_userinfo(url)),
                    )
                })?;
            }
            None => {}
        }
        if self.pacing.prefix.is_empty() || self.pacing.prefix.len() > 64 {
            return Err(invalid("pacing.prefix", "1 to 64 characters".to_owned()));
        }
        if let Some(url) = &self.upstream.base_url {
            let ok = url
                .parse::<http::Uri>()
                .ok()
                .is_some_and(|u| u.scheme().is_some() && u.host().is_some());
            if !ok {
                return Err(invalid(
                    "upstream.base_url",
                    format!("{}: not an absolute URL", redact_url_userinfo(url)),
                ));
            }
        }
        let mut names = HashSet::new();
        let mut hashes = HashSet::new();
        for (i, k) in self.key.iter().enumerate() {
            let field = format!("key[{i}] ({})", k.name.0);
            if !names.insert(&k.name) {
                return Err(invalid(&field, "a second key with this name".to_owned()));
            }
            let Some(hash) = &k.hash else {
                return Err(invalid(
                    &format!("{field}.hash"),
                    "missing: a key in the file needs its hash".to_owned(),
                ));
            };
            if !hashes.insert(*hash) {
                return Err(invalid(
                    &format!("{field}.hash"),
                    "the same secret as another key".to_owned(),
                ));
            }
        }
        for (model, chain) in &self.fallbacks {
            if chain.len() > tower_anthropic::fallback::MAX_CHAIN {
                return Err(invalid(
                    &format!("fallbacks.{model}"),
                    format!("at most {} models", tower_anthropic::fallback::MAX_CHAIN),
                ));
            }
        }
        Ok(())
    }

    /// The upstream key: from the file, else from the variable (`env` looks one up).
    pub fn upstream_key(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, ConfigError> {
        if self.upstream.mock {
            return Ok(None);
        }
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            field: field.to_owned(),
            message,
        };
        let key = match &self.upstream.api_key_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid(
                        "upstream.api_key_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                text.lines().next().unwrap_or("").trim().to_owned()
            }
            None => env(&self.upstream.api_key_env).unwrap_or_default(),
        };
        if key.trim().is_empty() {
            return Err(invalid(
                "upstream",
                format!(
                    "no API key: set {} or upstream.api_key_file (or upstream.mock = true to \
                     try the gateway on the embedded mock)",
                    self.upstream.api_key_env
                ),
            ));
        }
        Ok(Some(key.trim().to_owned()))
    }
}

/// Puts `value` at the path `var` names in `table`.
fn apply_override(table: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let err = |message: String| ConfigError::Env {
        var: var.to_owned(),
        message,
    };
    let path = &var[ENV_PREFIX.len()..];
    let parts: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    if parts.iter().any(String::is_empty) || parts.len() > 3 {
        return Err(err(
            "expected ANTHROPIC_GATEWAY__FIELD or ANTHROPIC_GATEWAY__SECTION__FIELD".to_owned(),
        ));
    }
    // A TOML value when it reads as one (a number, a boolean, an array), else a string.
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let (last, sections) = parts.split_last().expect("not empty");
    let mut here = table;
    for section in sections {
        let entry = here
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        here = entry
            .as_table_mut()
            .ok_or_else(|| err(format!("{section} is not a section")))?;
    }
    here.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::parse(text, Path::new("gw.toml"), env)
    }

    #[test]
    fn the_example_file_is_valid_and_says_the_defaults() {
        let text = include_str!("../anthropic-gateway.example.toml");
        let example = parse(text, &[]).unwrap();
        let defaults = parse("", &[]).unwrap();
        assert_eq!(example.listen, defaults.listen);
        assert_eq!(
            format!("{:?}", example.upstream),
            format!("{:?}", defaults.upstream)
        );
        assert_eq!(
            format!("{:?}", example.breaker),
            format!("{:?}", defaults.breaker)
        );
        assert_eq!(
            format!("{:?}", example.pacing),
            format!("{:?}", defaults.pacing)
        );
        assert_eq!(
            format!("{:?}", example.limits),
            format!("{:?}", defaults.limits)
        );
        assert_eq!(
            format!("{:?}", example.telemetry),
            format!("{:?}", defaults.telemetry)
        );
        assert_eq!(example.key.len(), 1);
        assert_eq!(example.prices.len(), 2);
    }

    #[test]
    fn defaults_from_an_empty_file() {
        let c = parse("", &[]).unwrap();
        assert_eq!(c.listen, default_listen());
        assert_eq!(c.pacing.store, Store::Local);
        assert_eq!(c.limits.max_body_bytes.get(), 32 * 1024 * 1024);
    }

    #[test]
    fn errors_name_the_line_and_field() {
        let text = "listen = \"127.0.0.1:9000\"\n\n[limits]\nmax_body_bytes = 0\n";
        let e = parse(text, &[]).unwrap_err().to_string();
        assert!(e.contains("line 4"), "{e}");
        assert!(e.contains("max_body_bytes"), "{e}");
        let e = parse("[pacing]\nstroe = \"redis\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("stroe"), "{e}");
        let text = "[[key]]\nname = \"a b\"\n";
        let e = parse(text, &[]).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("key name"), "{e}");
        let text = "[[key]]\nname = \"a\"\nhash = \"sha256:00\"\n";
        let e = parse(text, &[]).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("64 hex digits"), "{e}");
        let e = parse("[pacing]\nstore = \"redis\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("pacing.redis_url"), "{e}");
    }

    #[test]
    fn environment_overrides_replace_fields() {
        let c = parse(
            "[pacing]\nmax_queued = 5\n",
            &[
                ("ANTHROPIC_GATEWAY__LISTEN", "0.0.0.0:9999"),
                ("ANTHROPIC_GATEWAY__PACING__MAX_QUEUED", "7"),
                ("ANTHROPIC_GATEWAY__PACING__STORE", "redis"),
                (
                    "ANTHROPIC_GATEWAY__PACING__REDIS_URL",
                    "redis://127.0.0.1:6379",
                ),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.pacing.max_queued.get(), 7);
        assert_eq!(c.pacing.store, Store::Redis);
        let e = parse("", &[("ANTHROPIC_GATEWAY__LIMITS__MAX_BODY_BYTES", "-1")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ANTHROPIC_GATEWAY__LIMITS__MAX_BODY_BYTES"),
            "{e}"
        );
    }

    #[test]
    fn keys_are_hashes_and_secrets_stay_out_of_debug() {
        let hash = KeyHash::of("gw-secret-1");
        let text = format!(
            "[upstream]\nbase_url = \"https://user:pw@example.com\"\n[pacing]\nredis_url = \
             \"redis://:hunter2@127.0.0.1:6379\"\n[[key]]\nname = \"team-a\"\nhash = \"sha256:{}\"\n",
            hash.hex()
        );
        let c = parse(&text, &[]).unwrap();
        assert_eq!(c.key[0].hash, Some(hash));
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("pw@"),
            "{debug}"
        );
        assert!(!debug.contains(&hash.hex()), "{debug}");
        let dup = format!(
            "{text}[[key]]\nname = \"team-b\"\nhash = \"sha256:{}\"\n",
            hash.hex()
        );
        let e = parse(&dup, &[]).unwrap_err().to_string();
        assert!(e.contains("key[1] (team-b).hash"), "{e}");
    }

    #[test]
    fn the_upstream_key_comes_from_the_variable_or_a_file() {
        let c = parse("", &[]).unwrap();
        let key = c
            .upstream_key(|v| (v == "ANTHROPIC_API_KEY").then(|| "sk-ant-x".to_owned()))
            .unwrap();
        assert_eq!(key.as_deref(), Some("sk-ant-x"));
        let e = c.upstream_key(|_| None).unwrap_err().to_string();
        assert!(e.contains("no API key"), "{e}");
        let mock = parse("[upstream]\nmock = true\n", &[]).unwrap();
        assert_eq!(mock.upstream_key(|_| None).unwrap(), None);
    }
}

//! The start options as the user gives them: each is declared once, here,
//! and is at the same time a flag, a `STIGMER_*` environment variable and
//! a key of the configuration file. [`super::Config`] turns them into
//! checked values; [`TemporalFlags`] are Temporal's own `start-dev`
//! options, passed through unchanged (and kept on every respawn).
//!
//! Adding a Temporal option is one field of [`TemporalFlags`] and one line
//! of [`TemporalFlags::args`]; its type's `FromStr` refuses bad values
//! before anything starts, whether they come from a flag, the environment
//! or the file.

use super::Invalid;
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Every start option, with its default. The field name is at once the
/// clap id and the key in the file's `[temporal]` table.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
pub struct Options {
    /// Temporal frontend gRPC port.
    #[arg(long, default_value_t = 7233, env = "STIGMER_PORT")]
    pub port: u16,
    /// IP Temporal listens on (frontend and UI); 0.0.0.0 in a container
    /// whose ports are published. The dev server has no authentication.
    #[arg(
        long,
        default_value = "127.0.0.1",
        env = "STIGMER_TEMPORAL_IP",
        value_name = "IP"
    )]
    pub temporal_ip: String,
    /// Temporal web UI port [default: --port + 1000].
    #[arg(long, env = "STIGMER_UI_PORT", conflicts_with = "headless")]
    pub ui_port: Option<u16>,
    /// No web UI.
    #[arg(long, env = "STIGMER_HEADLESS")]
    pub headless: bool,
    /// Address of the daemon's HTTP server (/healthz, /status, /metrics).
    #[arg(long, default_value = "127.0.0.1:9233", env = "STIGMER_HTTP_ADDR")]
    pub http_addr: String,
    /// Allow --http-addr on a non-loopback address (exposes status and metrics).
    #[arg(long, env = "STIGMER_ALLOW_REMOTE_HTTP")]
    pub allow_remote_http: bool,
    /// A host name the HTTP server answers to besides IP addresses and
    /// `localhost` (e.g. a Kubernetes Service's); repeatable. Requests
    /// naming any other host get 403, but `/livez` and `/readyz`.
    #[arg(
        long = "http-allowed-host",
        env = "STIGMER_HTTP_ALLOWED_HOST",
        value_name = "NAME",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub http_allowed_hosts: Vec<String>,
    /// Temporal CLI binary [default: `temporal` on PATH].
    #[arg(long, env = "STIGMER_TEMPORAL_BIN", value_name = "PATH")]
    pub temporal_bin: Option<PathBuf>,
    /// Temporal's SQLite database [default: HOME/temporal-data/temporal.db].
    #[arg(long, env = "STIGMER_DB_FILE", value_name = "PATH")]
    pub db_file: Option<PathBuf>,
    /// Port for Temporal's own /metrics [default: Temporal picks one].
    #[arg(long, env = "STIGMER_TEMPORAL_METRICS_PORT")]
    pub temporal_metrics_port: Option<u16>,
    /// Seconds to wait for Temporal to become ready.
    #[arg(
        long,
        default_value_t = 60.0,
        env = "STIGMER_TIMEOUT",
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    pub timeout: f64,
    /// Seconds between health checks while serving.
    #[arg(
        long,
        default_value_t = 0.5,
        env = "STIGMER_HEALTH_INTERVAL",
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    pub health_interval: f64,
    /// Seconds the port and gRPC checks may take [default: adaptive, 4×
    /// the 99th percentile of recent answers, 0.1–1 s, widened by the
    /// daemon's own timer lag]. Setting it fixes the timeout.
    #[arg(
        long,
        env = "STIGMER_HEALTH_TIMEOUT",
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    #[serde(default)]
    pub health_timeout: Option<f64>,
    /// Seconds a confirming check may take: after a failed check, the next
    /// ones run at once with this timeout, so a hang is confirmed in a
    /// fraction of a second instead of whole intervals [default: the
    /// adaptive timeout; 0.25 with a fixed --health-timeout].
    #[arg(
        long,
        env = "STIGMER_CONFIRM_TIMEOUT",
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    #[serde(default)]
    pub confirm_timeout: Option<f64>,
    /// Consecutive failed health checks before a restart.
    #[arg(
        long,
        default_value_t = 3,
        env = "STIGMER_FAILURE_THRESHOLD",
        allow_negative_numbers = true
    )]
    pub failure_threshold: i64,
    /// Seconds between SIGTERM and SIGKILL when stopping Temporal.
    #[arg(
        long,
        default_value_t = 10.0,
        env = "STIGMER_STOP_GRACE",
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    pub stop_grace: f64,
    /// Seconds a new Temporal may take to serve before it is restarted.
    #[arg(
        long,
        default_value_t = 60.0,
        env = "STIGMER_START_TIMEOUT",
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    pub start_timeout: f64,
    /// Seconds a process must run to count as started: one that exits
    /// sooner (and would be restarted) is a failed start, backed off and
    /// counted toward `crash_loop`; a service with no `ready` check is
    /// ready once it has run this long. 0 turns it off.
    #[arg(
        long,
        default_value_t = 1.0,
        env = "STIGMER_MIN_UPTIME",
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    #[serde(default = "default_min_uptime")]
    pub min_uptime: f64,
    /// OTLP endpoint for traces (also OTEL_EXPORTER_OTLP_ENDPOINT).
    #[arg(long, env = "STIGMER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Run Temporal (true), or attach to one running elsewhere (false,
    /// with --temporal-address): nothing is spawned or ever signalled.
    #[arg(
        long,
        env = "STIGMER_TEMPORAL_MANAGED",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub managed: bool,
    /// Address of an external Temporal to attach to (implies managed
    /// false). A TEMPORAL_ADDRESS in the shell does not attach.
    #[arg(
        long = "temporal-address",
        env = "TEMPORAL_SERVICE_ADDRESS",
        value_name = "HOST:PORT"
    )]
    pub address: Option<String>,
    /// Attach through this profile of Temporal's own temporal.toml
    /// (TEMPORAL_CONFIG_FILE, else ~/.config/temporalio/temporal.toml),
    /// with the TEMPORAL_* variables over it as Temporal's tools apply
    /// them (implies managed false).
    #[arg(
        long = "temporal-profile",
        env = "STIGMER_TEMPORAL_PROFILE",
        value_name = "NAME"
    )]
    #[serde(default)]
    pub profile: Option<String>,
    /// The stack's Temporal namespace, given to every service as
    /// TEMPORAL_NAMESPACE [default: the profile's when attached through
    /// one, else "default"].
    #[arg(
        long = "temporal-namespace",
        env = "STIGMER_TEMPORAL_NAMESPACE",
        value_name = "NAME"
    )]
    #[serde(default)]
    pub namespace: Option<Namespace>,
    /// TLS to the attached Temporal: true or false (in the file also a
    /// table with temporal.toml's tls keys); overrides the profile's.
    #[arg(
        long = "temporal-tls",
        env = "STIGMER_TEMPORAL_TLS",
        value_name = "BOOL"
    )]
    #[serde(default)]
    pub tls: Option<TlsDecl>,
    /// The environment variable that holds the attached Temporal's API
    /// key (the key itself never goes in a file or flag); overrides the
    /// profile's.
    #[arg(
        long = "temporal-api-key-env",
        env = "STIGMER_TEMPORAL_API_KEY_ENV",
        value_name = "VAR"
    )]
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Check every --persistence-interval that Temporal writes (start and
    /// terminate a workflow that never runs) [default: true for the
    /// managed dev server, false when attached: it would write to someone
    /// else's cluster].
    #[arg(
        long,
        env = "STIGMER_PERSISTENCE_CHECK",
        value_name = "BOOL",
        action = clap::ArgAction::Set
    )]
    #[serde(default)]
    pub persistence_check: Option<bool>,
    /// Seconds between persistence checks.
    #[arg(
        long,
        default_value_t = 30.0,
        env = "STIGMER_PERSISTENCE_INTERVAL",
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    #[serde(default = "default_persistence_interval")]
    pub persistence_interval: f64,
    /// Restart Temporal after --failure-threshold failed persistence checks
    /// in a row (off: a restart does not fix a full disk).
    #[arg(long, env = "STIGMER_PERSISTENCE_RESTART")]
    #[serde(default)]
    pub persistence_restart: bool,
    /// Port of Temporal's HTTP API [default: Temporal picks one].
    #[arg(long, env = "STIGMER_HTTP_PORT")]
    #[serde(default)]
    pub http_port: Option<u16>,
    /// IP the web UI binds [default: --temporal-ip].
    #[arg(long, env = "STIGMER_UI_IP", value_name = "IP")]
    #[serde(default)]
    pub ui_ip: Option<String>,
    /// Temporal's own `start-dev` options.
    #[command(flatten)]
    #[serde(flatten)]
    pub temporal: TemporalFlags,
}

/// Temporal's own `start-dev` options, passed through on every spawn.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
pub struct TemporalFlags {
    /// Extra namespace created at start ("default" always exists); repeatable.
    #[arg(
        long = "namespace",
        env = "STIGMER_NAMESPACE",
        value_name = "NAME",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    /// Search attribute registered at start, KEY=TYPE (Text, Keyword, Int,
    /// Double, Bool, Datetime, KeywordList); repeatable.
    #[arg(
        long = "search-attribute",
        env = "STIGMER_SEARCH_ATTRIBUTE",
        value_name = "KEY=TYPE",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub search_attributes: Vec<SearchAttribute>,
    /// Dynamic configuration value, KEY=JSON; repeatable.
    #[arg(
        long = "dynamic-config-value",
        env = "STIGMER_DYNAMIC_CONFIG_VALUE",
        value_name = "KEY=JSON"
    )]
    #[serde(default)]
    pub dynamic_config_values: Vec<DynamicConfigValue>,
    /// SQLite pragma, NAME=VALUE (e.g. journal_mode=wal); repeatable.
    #[arg(
        long = "sqlite-pragma",
        env = "STIGMER_SQLITE_PRAGMA",
        value_name = "NAME=VALUE",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub sqlite_pragmas: Vec<SqlitePragma>,
    /// Temporal's own log level [default: Temporal's, warn].
    #[arg(long, env = "STIGMER_TEMPORAL_LOG_LEVEL", value_name = "LEVEL")]
    #[serde(default)]
    pub temporal_log_level: Option<TemporalLogLevel>,
    /// Temporal's own log format [default: Temporal's, text].
    #[arg(long, env = "STIGMER_TEMPORAL_LOG_FORMAT", value_name = "FORMAT")]
    #[serde(default)]
    pub temporal_log_format: Option<TemporalLogFormat>,
    /// Print Temporal's server configuration to its log at start.
    #[arg(long, env = "STIGMER_LOG_CONFIG")]
    #[serde(default)]
    pub log_config: bool,
    /// The web UI's public base path (e.g. /temporal behind a proxy).
    #[arg(long, env = "STIGMER_UI_PUBLIC_PATH", value_name = "PATH")]
    #[serde(default)]
    pub ui_public_path: Option<UiPublicPath>,
    /// A directory of custom web UI assets.
    #[arg(long, env = "STIGMER_UI_ASSET_PATH", value_name = "DIR")]
    #[serde(default)]
    pub ui_asset_path: Option<PathBuf>,
    /// The web UI's remote codec endpoint (an http:// or https:// URL).
    #[arg(long, env = "STIGMER_UI_CODEC_ENDPOINT", value_name = "URL")]
    #[serde(default)]
    pub ui_codec_endpoint: Option<HttpUrl>,
    /// The web UI does not fetch its news feed.
    #[arg(long, env = "STIGMER_UI_DISABLE_NEWS_FETCH")]
    #[serde(default)]
    pub ui_disable_news_fetch: bool,
}

fn default_persistence_interval() -> f64 {
    30.0
}

impl Options {
    /// Every option at its default, whatever the environment says.
    pub fn defaults() -> Options {
        use clap::FromArgMatches;
        let cmd = Options::augment_args(clap::Command::new("defaults"))
            .mut_args(|a| a.env(None))
            .no_binary_name(true);
        let matches = cmd
            .try_get_matches_from(std::iter::empty::<String>())
            .expect("every option has a default or is optional");
        Options::from_arg_matches(&matches).expect("defaults are valid")
    }

    /// The names of every option: clap ids and file keys alike.
    pub fn keys() -> Vec<String> {
        Options::augment_args(clap::Command::new("keys"))
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect()
    }
}

impl TemporalFlags {
    /// The `temporal server start-dev` arguments for these options.
    pub fn args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = Vec::new();
        let mut pass = |flag: &str, value: String| {
            v.push(flag.into());
            v.push(value.into());
        };
        self.namespaces
            .iter()
            .for_each(|n| pass("--namespace", n.to_string()));
        self.search_attributes
            .iter()
            .for_each(|a| pass("--search-attribute", a.to_string()));
        self.dynamic_config_values
            .iter()
            .for_each(|d| pass("--dynamic-config-value", d.to_string()));
        self.sqlite_pragmas
            .iter()
            .for_each(|p| pass("--sqlite-pragma", p.to_string()));
        if let Some(level) = self.temporal_log_level {
            pass("--log-level", level.as_str().into());
        }
        if let Some(format) = self.temporal_log_format {
            pass("--log-format", format.as_str().into());
        }
        if let Some(p) = &self.ui_public_path {
            pass("--ui-public-path", p.to_string());
        }
        if let Some(p) = &self.ui_asset_path {
            pass("--ui-asset-path", p.display().to_string());
        }
        if let Some(u) = &self.ui_codec_endpoint {
            pass("--ui-codec-endpoint", u.to_string());
        }
        if self.log_config {
            v.push("--log-config".into());
        }
        if self.ui_disable_news_fetch {
            v.push("--ui-disable-news-fetch".into());
        }
        v
    }
}

/// A value that is written as text (flag, environment, file) and checked
/// by its `FromStr`: serde goes through the same parser, so a bad value
/// in the file is refused with the same message as on the command line.
macro_rules! text_value {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Is `s` an identifier: a letter or `_`, then letters, digits, `_` or
/// the `extra` characters?
fn identifier(s: &str, extra: &[char]) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || extra.contains(&c))
}

/// `KEY=VALUE` split at the first `=`, both sides non-empty.
fn pair<'a>(s: &'a str, form: &str) -> Result<(&'a str, &'a str), Invalid> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => Ok((k.trim(), v.trim())),
        _ => Err(Invalid(format!("{s:?} is not of the form {form}"))),
    }
}

/// A Temporal namespace name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace(String);
text_value!(Namespace);

impl FromStr for Namespace {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let ok = (1..=255).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(Namespace(s.to_string()))
        } else {
            Err(Invalid(format!(
                "namespace {s:?} must be 1-255 letters, digits, '-', '_' or '.', starting with a letter or digit"
            )))
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The types Temporal accepts for a search attribute, as it spells them.
const SEARCH_ATTRIBUTE_TYPES: [&str; 7] = [
    "Text",
    "Keyword",
    "Int",
    "Double",
    "Bool",
    "Datetime",
    "KeywordList",
];

/// A search attribute to register: `KEY=TYPE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchAttribute {
    /// Its name.
    pub key: String,
    /// One of [`SEARCH_ATTRIBUTE_TYPES`], canonical spelling.
    pub kind: &'static str,
}
text_value!(SearchAttribute);

impl FromStr for SearchAttribute {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let (key, kind) = pair(s, "KEY=TYPE")?;
        if !identifier(key, &[]) {
            return Err(Invalid(format!(
                "search attribute name {key:?} is not an identifier"
            )));
        }
        let kind = SEARCH_ATTRIBUTE_TYPES
            .into_iter()
            .find(|t| t.eq_ignore_ascii_case(kind))
            .ok_or_else(|| {
                format!(
                    "search attribute type {kind:?} is not one of {}",
                    SEARCH_ATTRIBUTE_TYPES.join(", ")
                )
            })?;
        Ok(SearchAttribute {
            key: key.to_string(),
            kind,
        })
    }
}

impl fmt::Display for SearchAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.kind)
    }
}

/// A dynamic configuration value: `KEY=JSON`.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicConfigValue {
    /// The setting, e.g. `frontend.enableUpdateWorkflowExecution`.
    pub key: String,
    /// Its value.
    pub value: serde_json::Value,
}
text_value!(DynamicConfigValue);

impl FromStr for DynamicConfigValue {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let (key, json) = pair(s, "KEY=JSON")?;
        if !identifier(key, &['.']) {
            return Err(Invalid(format!(
                "dynamic config key {key:?} is not an identifier (letters, digits, '_', '.')"
            )));
        }
        let value = serde_json::from_str(json).map_err(|e| {
            format!(
                "dynamic config value of {key} is not JSON ({e}); quote strings: {key}=\"text\""
            )
        })?;
        Ok(DynamicConfigValue {
            key: key.to_string(),
            value,
        })
    }
}

impl fmt::Display for DynamicConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// SQLite pragmas that take a value and make sense on a connection.
/// Temporal accepts any name and silently ignores unknown ones, so a typo
/// is refused here instead.
const SQLITE_PRAGMAS: [&str; 14] = [
    "auto_vacuum",
    "automatic_index",
    "busy_timeout",
    "cache_size",
    "cache_spill",
    "foreign_keys",
    "journal_mode",
    "journal_size_limit",
    "locking_mode",
    "mmap_size",
    "secure_delete",
    "synchronous",
    "temp_store",
    "wal_autocheckpoint",
];

/// A SQLite pragma: `NAME=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlitePragma {
    /// One of [`SQLITE_PRAGMAS`].
    pub name: String,
    /// Its value (a word or a number).
    pub value: String,
}
text_value!(SqlitePragma);

impl FromStr for SqlitePragma {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let (name, value) = pair(s, "NAME=VALUE")?;
        let name = name.to_ascii_lowercase();
        if !SQLITE_PRAGMAS.contains(&name.as_str()) {
            return Err(Invalid(format!(
                "SQLite pragma {name:?} is not one of {}",
                SQLITE_PRAGMAS.join(", ")
            )));
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Invalid(format!(
                "SQLite pragma value {value:?} must be a word or a number"
            )));
        }
        Ok(SqlitePragma {
            name,
            value: value.to_string(),
        })
    }
}

impl fmt::Display for SqlitePragma {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.value)
    }
}

/// Temporal's own log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemporalLogLevel {
    Debug,
    Info,
    Warn,
    Error,
    /// No log output at all.
    Never,
}

impl TemporalLogLevel {
    /// As Temporal spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TemporalLogLevel::Debug => "debug",
            TemporalLogLevel::Info => "info",
            TemporalLogLevel::Warn => "warn",
            TemporalLogLevel::Error => "error",
            TemporalLogLevel::Never => "never",
        }
    }
}

/// Temporal's own log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemporalLogFormat {
    Text,
    Json,
}

impl TemporalLogFormat {
    /// As Temporal spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TemporalLogFormat::Text => "text",
            TemporalLogFormat::Json => "json",
        }
    }
}

/// The web UI's public base path: `/`, or `/a/b` (no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiPublicPath(String);
text_value!(UiPublicPath);

impl FromStr for UiPublicPath {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let ok = s.starts_with('/')
            && (s == "/" || !s.ends_with('/'))
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'));
        if ok {
            Ok(UiPublicPath(s.to_string()))
        } else {
            Err(Invalid(format!(
                "UI public path {s:?} must start with '/', not end with one, and use letters, digits, '-', '_', '.'"
            )))
        }
    }
}

impl fmt::Display for UiPublicPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An `http://` or `https://` URL with a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(String);
text_value!(HttpUrl);

impl FromStr for HttpUrl {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let uri: ureq::http::Uri = s
            .parse()
            .map_err(|e| Invalid(format!("{s:?} is not a URL ({e})")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(Invalid(format!(
                "{s:?} must be an http:// or https:// URL with a host"
            )));
        }
        Ok(HttpUrl(s.to_string()))
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[temporal] tls`: on or off, or the settings (temporal.toml's `tls`
/// keys) that override the profile's. A flag or variable gives a bool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TlsDecl {
    /// On (with the profile's settings, or the system's roots) or off.
    Enabled(bool),
    /// These settings (on unless `disabled`).
    Settings(crate::temporal::envconfig::TlsSection),
}

impl FromStr for TlsDecl {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        match s.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(TlsDecl::Enabled(true)),
            "false" | "0" => Ok(TlsDecl::Enabled(false)),
            _ => Err(Invalid(format!(
                "TLS {s:?} must be true or false (settings go in the file's [temporal] tls table)"
            ))),
        }
    }
}

fn default_min_uptime() -> f64 {
    1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_print_and_refuse() {
        let a: SearchAttribute = "CustomerId=keyword".parse().unwrap();
        assert_eq!(a.to_string(), "CustomerId=Keyword");
        assert!("Bad Key=Text".parse::<SearchAttribute>().is_err());
        assert!("Key=Float".parse::<SearchAttribute>().is_err());
        assert!("Key".parse::<SearchAttribute>().is_err());
        let d: DynamicConfigValue = "frontend.enableUpdateWorkflowExecution=true"
            .parse()
            .unwrap();
        assert_eq!(d.value, serde_json::Value::Bool(true));
        assert_eq!(d.to_string(), "frontend.enableUpdateWorkflowExecution=true");
        let e = "k=not json".parse::<DynamicConfigValue>().unwrap_err();
        assert!(e.0.contains("not JSON"), "{e}");
        let p: SqlitePragma = "Journal_Mode=wal".parse().unwrap();
        assert_eq!(p.to_string(), "journal_mode=wal");
        assert!("jounral_mode=wal".parse::<SqlitePragma>().is_err());
        assert!("synchronous=0; drop".parse::<SqlitePragma>().is_err());
        assert!("orders".parse::<Namespace>().is_ok());
        assert!("".parse::<Namespace>().is_err());
        assert!("a b".parse::<Namespace>().is_err());
    }

    #[test]
    fn args_pass_every_option_through() {
        let f = TemporalFlags {
            namespaces: vec!["a".parse().unwrap(), "b".parse().unwrap()],
            search_attributes: vec!["K=Int".parse().unwrap()],
            dynamic_config_values: vec!["x.y=\"s\"".parse().unwrap()],
            sqlite_pragmas: vec!["synchronous=normal".parse().unwrap()],
            temporal_log_level: Some(TemporalLogLevel::Error),
            ..TemporalFlags::default()
        };
        let args: Vec<String> = f
            .args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "--namespace",
                "a",
                "--namespace",
                "b",
                "--search-attribute",
                "K=Int",
                "--dynamic-config-value",
                "x.y=\"s\"",
                "--sqlite-pragma",
                "synchronous=normal",
                "--log-level",
                "error"
            ]
        );
    }
}

//! The services of the stack, as `[services.NAME]` tables of the
//! configuration file declare them ([`ServiceDecl`]), and checked
//! ([`ServiceSpec`]): one command (no shell), when it is ready, how its
//! health is checked, when it restarts, how it stops, and what it waits
//! for. [`order`] sorts them so every service comes after what it depends
//! on, and names a dependency cycle when there is one.

use super::Invalid;
use crate::model::{RestartPolicy, TEMPORAL};
pub use crate::temporal::QueueType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A `[services.NAME]` table as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDecl {
    /// The program and its arguments (no shell).
    pub command: Vec<String>,
    /// Working directory, relative to the configuration file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Extra environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Services (or `temporal`) that must be ready before this one starts:
    /// names, or `{ name = "api", restart = true }` to restart this one
    /// whenever that one restarts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
    /// Files of `KEY=value` lines (dotenv syntax) read at every spawn,
    /// before `env` (which wins): paths, or `{ path = "...", optional =
    /// true }`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_file: Vec<EnvFileDecl>,
    /// Globs (relative to `cwd`) whose changes restart it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<String>,
    /// Globs never watched (besides `.git`, `target`, `node_modules`,
    /// `__pycache__`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
    /// A command run before each (re)start; a failure keeps the running
    /// process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Vec<String>>,
    /// How a change or `restart` replaces it: `overlap` (start the new one,
    /// wait for it to be ready, then stop the old one; the default when
    /// `ready` is a task queue) or `restart` (stop, then start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadMode>,
    /// When the service counts as ready (default: once spawned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<ProbeDecl>,
    /// How its health is checked while it runs (default: the `ready`
    /// probe again, unless that is a log line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<ProbeDecl>,
    /// `always` (default), `on-failure` or `never`.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Signal that asks it to stop (default SIGTERM).
    #[serde(default = "default_stop_signal")]
    pub stop_signal: String,
    /// Seconds between the stop signal and SIGKILL (default 10).
    #[serde(default = "default_stop_grace")]
    pub stop_grace: f64,
    /// Seconds it must run to count as started (default: `[temporal]`'s
    /// `min_uptime`, 1 s); 0 turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_uptime: Option<f64>,
    /// Give it the stack's Temporal in its environment (`TEMPORAL_ADDRESS`,
    /// `TEMPORAL_NAMESPACE`, and TLS, key or profile when attached);
    /// default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporal_env: Option<bool>,
}

fn yes() -> bool {
    true
}

/// A `depends_on` entry: a name, or a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dependency {
    /// Just the name.
    Name(String),
    /// The name, and whether its restart restarts the dependent.
    Table {
        /// The dependency.
        name: String,
        /// Restart the dependent when this one restarts.
        #[serde(default)]
        restart: bool,
    },
}

impl Dependency {
    /// The dependency's name.
    pub fn name(&self) -> &str {
        match self {
            Dependency::Name(n) | Dependency::Table { name: n, .. } => n,
        }
    }

    fn restarts(&self) -> bool {
        matches!(self, Dependency::Table { restart: true, .. })
    }
}

/// An `env_file` entry: a path, or a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EnvFileDecl {
    /// A file that must exist.
    Path(PathBuf),
    /// A file, perhaps optional.
    Table {
        /// Where.
        path: PathBuf,
        /// A missing file is no error.
        #[serde(default)]
        optional: bool,
    },
}

/// An env file, checked: absolute path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvFile {
    /// Where.
    pub path: PathBuf,
    /// A missing file is no error.
    pub optional: bool,
}

impl EnvFile {
    /// Its variables, in order; none for a missing optional file.
    pub fn read(&self) -> Result<Vec<(String, String)>, Invalid> {
        if self.optional && !self.path.exists() {
            return Ok(Vec::new());
        }
        let shown = self.path.display();
        let iter = dotenvy::from_path_iter(&self.path)
            .map_err(|e| Invalid(format!("env_file {shown}: {}", dotenv_error(&e))))?;
        iter.map(|r| r.map_err(|e| Invalid(format!("env_file {shown}: {}", dotenv_error(&e)))))
            .collect()
    }
}

fn dotenv_error(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
            "not found (mark it { path = ..., optional = true } if it may be missing)".into()
        }
        dotenvy::Error::LineParse(line, at) => {
            format!("cannot parse {line:?} at character {at}")
        }
        other => other.to_string(),
    }
}

/// How a service is replaced by a new process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadMode {
    /// New one ready first, then the old one stopped.
    Overlap,
    /// Old one stopped, then the new one started.
    Restart,
}

/// What a service's changes are watched in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchSpec {
    /// The directory globs are relative to (its `cwd`).
    pub root: PathBuf,
    /// Globs that trigger a restart.
    pub include: Vec<String>,
    /// Globs never watched, the defaults included.
    pub ignore: Vec<String>,
}

/// Directories never watched.
pub const DEFAULT_IGNORES: [&str; 4] = [".git", "target", "node_modules", "__pycache__"];

fn default_stop_signal() -> String {
    "SIGTERM".into()
}

fn default_stop_grace() -> f64 {
    10.0
}

/// A `ready` or `health` table: exactly one probe kind, and its timing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeDecl {
    /// A regular expression matched against each line the service logs
    /// (`ready` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// An `http://` URL that must answer 2xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// A `HOST:PORT` that must accept a TCP connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    /// A `HOST:PORT` whose `grpc.health.v1` service must answer SERVING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<String>,
    /// The gRPC service name to ask about (default: the server as a whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// A command that must exit 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Vec<String>>,
    /// A Temporal task queue one of the service's workers must poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_queue: Option<String>,
    /// `task_queue`: the kinds of task that must be polled (`workflow`,
    /// `activity`); default: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<QueueType>>,
    /// `task_queue`: its namespace (default: the stack's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `task_queue`: the worker identity to look for, for workers that set
    /// their own (default: any `PID@HOST` of the service's processes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Seconds: for `ready`, how long the service may take to become ready
    /// (default 60); for `health`, how long one check may take (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// Seconds between health checks (`health` only; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<f64>,
    /// Failed checks in a row before a restart (`health` only; default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
}

/// A check of a running process, other than its own liveness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// GET the URL; 2xx passes.
    Http {
        /// The URL.
        url: String,
    },
    /// A TCP connection is accepted.
    Tcp {
        /// Where.
        addr: SocketAddr,
    },
    /// `grpc.health.v1.Health/Check` answers SERVING.
    Grpc {
        /// Where.
        addr: SocketAddr,
        /// The service asked about ("" = the server).
        service: String,
    },
    /// The command exits 0.
    Exec {
        /// The command (no shell).
        argv: Vec<String>,
    },
    /// A worker of the service polls a Temporal task queue.
    TaskQueue {
        /// The queue.
        queue: String,
        /// Its namespace; the stack's when `None`.
        namespace: Option<String>,
        /// Kinds that must be polled; empty = any.
        types: Vec<QueueType>,
        /// The identity to match instead of `PID@HOST`.
        identity: Option<String>,
    },
}

impl ProbeKind {
    /// Its name as a health layer label: http, tcp, grpc, exec.
    pub fn name(&self) -> &'static str {
        match self {
            ProbeKind::Http { .. } => "http",
            ProbeKind::Tcp { .. } => "tcp",
            ProbeKind::Grpc { .. } => "grpc",
            ProbeKind::Exec { .. } => "exec",
            ProbeKind::TaskQueue { .. } => "task_queue",
        }
    }

    /// The port it checks, when it checks a port of ours.
    pub fn port(&self) -> Option<u16> {
        match self {
            ProbeKind::Http { url } => url_port(url),
            ProbeKind::Tcp { addr } | ProbeKind::Grpc { addr, .. } => Some(addr.port()),
            ProbeKind::Exec { .. } | ProbeKind::TaskQueue { .. } => None,
        }
    }
}

/// When a service counts as ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// As soon as it is spawned.
    Spawned,
    /// When a line it logs matches this regular expression.
    Log {
        /// The expression (checked when the configuration is loaded).
        pattern: String,
        /// How long it may take.
        timeout: Duration,
    },
    /// When this probe first passes.
    Probe {
        /// The probe.
        kind: ProbeKind,
        /// How long it may take.
        timeout: Duration,
    },
}

/// How a running service's health is checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// The probe.
    pub kind: ProbeKind,
    /// Between checks.
    pub interval: Duration,
    /// Longest one check may take (the cap of an adaptive timeout).
    pub timeout: Duration,
    /// No `timeout` given: it adapts to the answers.
    #[serde(default)]
    pub adaptive: bool,
    /// Failed checks in a row before a restart.
    pub failure_threshold: u32,
}

/// A checked service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Its name (`[a-z0-9_-]+`).
    pub name: String,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Working directory (absolute), if any.
    pub cwd: Option<PathBuf>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// What must be ready first (`temporal` and service names).
    pub depends_on: Vec<String>,
    /// When it is ready.
    pub ready: Readiness,
    /// How its health is checked, if at all beyond being alive.
    pub health: Option<HealthCheck>,
    /// When it starts again after it ended.
    pub restart: RestartPolicy,
    /// The signal that asks it to stop.
    pub stop_signal: i32,
    /// Stop signal → SIGKILL.
    pub stop_grace: Duration,
    /// Whether it is told of the stack's Temporal in its environment.
    #[serde(default = "yes")]
    pub temporal_env: bool,
    /// Its env files, read at every spawn.
    #[serde(default)]
    pub env_files: Vec<EnvFile>,
    /// Dependencies whose restart restarts it.
    #[serde(default)]
    pub restart_with: Vec<String>,
    /// What to watch, if anything.
    #[serde(default)]
    pub watch: Option<WatchSpec>,
    /// The build command, if any.
    #[serde(default)]
    pub build: Option<Vec<String>>,
    /// How a change replaces it.
    #[serde(default = "restart_mode")]
    pub reload: ReloadMode,
    /// Its own `min_uptime` (else the stack's).
    #[serde(default)]
    pub min_uptime: Option<Duration>,
}

fn restart_mode() -> ReloadMode {
    ReloadMode::Restart
}

impl ServiceSpec {
    /// The ports its probes check: ports this service listens on.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        let ready = match &self.ready {
            Readiness::Probe { kind, .. } => kind.port(),
            _ => None,
        };
        ready
            .into_iter()
            .chain(self.health.as_ref().and_then(|h| h.kind.port()))
    }
}

/// Longest service name: its log and rotated generations
/// (`NAME.log.2`) must be file names well within the 255-byte limit.
pub const MAX_NAME: usize = 64;

/// Is `name` a valid service name?
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn url_port(url: &str) -> Option<u16> {
    let uri: ureq::http::Uri = url.parse().ok()?;
    Some(uri.port_u16().unwrap_or(80))
}

fn secs(v: f64, what: &str) -> Result<Duration, Invalid> {
    if v.is_finite() && v > 0.0 && v <= 86_400.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(Invalid(format!(
            "{what} must be between 0 and 86400 seconds, got {v}"
        )))
    }
}

/// `HOST:PORT` to an address (names are looked up now).
pub fn socket_addr(text: &str) -> Result<SocketAddr, Invalid> {
    if let Ok(a) = text.parse() {
        return Ok(a);
    }
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| Invalid(format!("{text:?} is not a HOST:PORT address")))
}

impl ProbeDecl {
    /// The probe kind; exactly one of log, http, tcp, grpc, exec,
    /// task_queue is set. `None` for a log probe (which is readiness only).
    fn kind(&self) -> Result<Option<ProbeKind>, Invalid> {
        let set = [
            self.log.is_some(),
            self.http.is_some(),
            self.tcp.is_some(),
            self.grpc.is_some(),
            self.exec.is_some(),
            self.task_queue.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err("needs exactly one of log, http, tcp, grpc, exec, task_queue".into());
        }
        if self.service.is_some() && self.grpc.is_none() {
            return Err("service goes with grpc only".into());
        }
        let queue_keys =
            self.types.is_some() || self.namespace.is_some() || self.identity.is_some();
        if queue_keys && self.task_queue.is_none() {
            return Err("types, namespace and identity go with task_queue only".into());
        }
        if let Some(queue) = &self.task_queue {
            return self.task_queue_kind(queue).map(Some);
        }
        if let Some(url) = &self.http {
            check_url(url)?;
            return Ok(Some(ProbeKind::Http { url: url.clone() }));
        }
        if let Some(a) = &self.tcp {
            return Ok(Some(ProbeKind::Tcp {
                addr: socket_addr(a).map_err(|e| format!("tcp: {e}"))?,
            }));
        }
        if let Some(a) = &self.grpc {
            return Ok(Some(ProbeKind::Grpc {
                addr: socket_addr(a).map_err(|e| format!("grpc: {e}"))?,
                service: self.service.clone().unwrap_or_default(),
            }));
        }
        if let Some(argv) = &self.exec {
            if argv.first().is_none_or(|p| p.is_empty()) {
                return Err("exec needs a non-empty command".into());
            }
            return Ok(Some(ProbeKind::Exec { argv: argv.clone() }));
        }
        Ok(None)
    }
}

impl ProbeDecl {
    fn task_queue_kind(&self, queue: &str) -> Result<ProbeKind, Invalid> {
        // Quotes would break the worker query (`TaskQueue = '...'`).
        if queue.is_empty() || queue.len() > 1000 || queue.contains(['\'', '\\']) {
            return Err(Invalid(format!(
                "task_queue {queue:?} must be 1-1000 characters without quotes or backslashes"
            )));
        }
        if let Some(ns) = &self.namespace {
            ns.parse::<super::options::Namespace>()
                .map_err(|e| e.at("namespace"))?;
        }
        if self.identity.as_ref().is_some_and(|i| i.is_empty()) {
            return Err("identity must not be empty".into());
        }
        let mut types = self.types.clone().unwrap_or_default();
        types.dedup();
        Ok(ProbeKind::TaskQueue {
            queue: queue.to_string(),
            namespace: self.namespace.clone(),
            types,
            identity: self.identity.clone(),
        })
    }
}

fn check_url(url: &str) -> Result<(), Invalid> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("http: {url:?} is not a URL ({e})"))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(Invalid(format!(
            "http: {url:?} must be an http:// URL with a host (https is not supported)"
        )));
    }
    Ok(())
}

impl ServiceDecl {
    /// This declaration as it may be shown: credentials in its command,
    /// environment and probe URLs masked (see [`crate::redact`]).
    pub fn redacted(&self) -> ServiceDecl {
        let probe = |p: &Option<ProbeDecl>| {
            p.clone().map(|mut p| {
                p.http = p.http.map(|u| crate::redact::url(&u));
                p.exec = p.exec.map(|a| crate::redact::argv(&a));
                p
            })
        };
        ServiceDecl {
            command: crate::redact::argv(&self.command),
            env: self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), crate::redact::value(k, v)))
                .collect(),
            ready: probe(&self.ready),
            health: probe(&self.health),
            build: self.build.as_ref().map(|b| crate::redact::argv(b)),
            ..self.clone()
        }
    }

    /// Check this declaration of service `name`, whose relative paths are
    /// relative to `base` (the configuration file's directory). Errors
    /// name the key.
    pub fn check(&self, name: &str, base: &Path) -> Result<ServiceSpec, Invalid> {
        if name == TEMPORAL {
            return Err("`temporal` is the built-in service; choose another name".into());
        }
        if !valid_name(name) {
            return Err(Invalid(format!(
                "the name must be 1-{MAX_NAME} lowercase letters, digits, '-' or '_'"
            )));
        }
        if self.command.first().is_none_or(|p| p.is_empty()) {
            return Err("command: must name a program (a non-empty list, no shell)".into());
        }
        let ready = self.readiness().map_err(|e| format!("ready: {e}"))?;
        let health = self
            .health_check(&ready)
            .map_err(|e| format!("health: {e}"))?;
        let cwd = self.cwd.as_ref().map(|c| base.join(c));
        let root = cwd.clone().unwrap_or_else(|| base.to_path_buf());
        // Like `cwd`, relative to the configuration file.
        let env_files: Vec<EnvFile> = self
            .env_file
            .iter()
            .map(|e| {
                let (path, optional) = match e {
                    EnvFileDecl::Path(p) => (p, false),
                    EnvFileDecl::Table { path, optional } => (path, *optional),
                };
                EnvFile {
                    path: base.join(path),
                    optional,
                }
            })
            .collect();
        for f in &env_files {
            f.read()?;
        }
        let reload = match (self.reload, &ready) {
            (Some(mode), _) => mode,
            (
                None,
                Readiness::Probe {
                    kind: ProbeKind::TaskQueue { .. },
                    ..
                },
            ) => ReloadMode::Overlap,
            (None, _) => ReloadMode::Restart,
        };
        if let Some(b) = &self.build
            && b.first().is_none_or(|p| p.is_empty())
        {
            return Err("build: must name a program (a non-empty list, no shell)".into());
        }
        Ok(ServiceSpec {
            name: name.to_string(),
            command: self.command.clone(),
            env: self.env.clone(),
            depends_on: self
                .depends_on
                .iter()
                .map(|d| d.name().to_string())
                .collect(),
            restart_with: self
                .depends_on
                .iter()
                .filter(|d| d.restarts())
                .map(|d| d.name().to_string())
                .collect(),
            ready,
            health,
            restart: self.restart,
            stop_signal: signal_number(&self.stop_signal)
                .ok_or_else(|| format!("stop_signal: {:?} is not a signal", self.stop_signal))?,
            stop_grace: secs(self.stop_grace, "stop_grace")?,
            min_uptime: match self.min_uptime {
                Some(0.0) => Some(Duration::ZERO),
                Some(v) => Some(secs(v, "min_uptime")?),
                None => None,
            },
            temporal_env: self.temporal_env.unwrap_or(true),
            watch: self.watch_spec(root)?,
            build: self.build.clone(),
            reload,
            env_files,
            cwd,
        })
    }

    fn watch_spec(&self, root: PathBuf) -> Result<Option<WatchSpec>, Invalid> {
        if self.watch.is_empty() {
            if !self.ignore.is_empty() {
                return Err("ignore goes with watch".into());
            }
            return Ok(None);
        }
        let mut ignore: Vec<String> = DEFAULT_IGNORES
            .iter()
            .map(|d| format!("**/{d}/**"))
            .collect();
        ignore.extend(self.ignore.iter().cloned());
        for g in self.watch.iter().chain(&self.ignore) {
            globset::Glob::new(g).map_err(|e| format!("watch: {g:?} is not a glob: {e}"))?;
        }
        Ok(Some(WatchSpec {
            root,
            include: self.watch.clone(),
            ignore,
        }))
    }

    fn readiness(&self) -> Result<Readiness, Invalid> {
        let Some(r) = &self.ready else {
            return Ok(Readiness::Spawned);
        };
        if r.interval.is_some() || r.failure_threshold.is_some() {
            return Err("interval and failure_threshold belong to health".into());
        }
        let timeout = secs(r.timeout.unwrap_or(60.0), "timeout")?;
        match (r.kind()?, &r.log) {
            (Some(kind), _) => Ok(Readiness::Probe { kind, timeout }),
            (None, Some(pattern)) => {
                regex::Regex::new(pattern).map_err(|e| format!("log: invalid regex: {e}"))?;
                Ok(Readiness::Log {
                    pattern: pattern.clone(),
                    timeout,
                })
            }
            (None, None) => unreachable!("kind() ensures one is set"),
        }
    }

    fn health_check(&self, ready: &Readiness) -> Result<Option<HealthCheck>, Invalid> {
        let (kind, decl) = match (&self.health, ready) {
            (Some(h), _) => match h.kind()? {
                Some(kind) => (kind, h.clone()),
                None => return Err("log is a readiness probe, not a health check".into()),
            },
            (None, Readiness::Probe { kind, .. }) => (kind.clone(), ProbeDecl::default()),
            (None, _) => return Ok(None),
        };
        let threshold = decl.failure_threshold.unwrap_or(3);
        if !(1..=1000).contains(&threshold) {
            return Err(Invalid(format!(
                "failure_threshold must be 1-1000, got {threshold}"
            )));
        }
        Ok(Some(HealthCheck {
            kind,
            interval: secs(decl.interval.unwrap_or(1.0), "interval")?,
            timeout: secs(decl.timeout.unwrap_or(1.0), "timeout")?,
            adaptive: decl.timeout.is_none(),
            failure_threshold: threshold,
        }))
    }
}

/// `SIGTERM`, `TERM`, `15` → 15.
fn signal_number(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok().map(|s| s as i32);
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

/// Sort `specs` so that each comes after everything it depends on.
/// Errors name an unknown dependency or a cycle (`a -> b -> a`).
pub fn order(specs: Vec<ServiceSpec>) -> Result<Vec<ServiceSpec>, (String, String)> {
    let by_name: BTreeMap<&str, &ServiceSpec> =
        specs.iter().map(|s| (s.name.as_str(), s)).collect();
    for s in &specs {
        if let Some(d) = s
            .depends_on
            .iter()
            .find(|d| *d != TEMPORAL && !by_name.contains_key(d.as_str()))
        {
            return Err((
                s.name.clone(),
                format!("depends_on: no service named {d:?}"),
            ));
        }
    }
    let mut done: Vec<String> = Vec::new();
    let mut path: Vec<String> = Vec::new();
    fn visit(
        name: &str,
        by_name: &BTreeMap<&str, &ServiceSpec>,
        done: &mut Vec<String>,
        path: &mut Vec<String>,
    ) -> Result<(), (String, String)> {
        if name == TEMPORAL || done.iter().any(|d| d == name) {
            return Ok(());
        }
        if let Some(at) = path.iter().position(|p| p == name) {
            let mut cycle = path[at..].to_vec();
            cycle.push(name.to_string());
            return Err((
                name.to_string(),
                format!("depends_on: dependency cycle {}", cycle.join(" -> ")),
            ));
        }
        path.push(name.to_string());
        for d in &by_name[name].depends_on {
            visit(d, by_name, done, path)?;
        }
        path.pop();
        done.push(name.to_string());
        Ok(())
    }
    for s in &specs {
        visit(&s.name, &by_name, &mut done, &mut path)?;
    }
    let mut rest = specs;
    Ok(done
        .iter()
        .map(|n| {
            let i = rest.iter().position(|s| &s.name == n).expect("visited");
            rest.swap_remove(i)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(toml_text: &str) -> ServiceDecl {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn probes_default_and_check() {
        let s = decl("command = ['api']\nready = { http = 'http://127.0.0.1:8000/healthz' }")
            .check("api", Path::new("/etc"))
            .unwrap();
        let h = s.health.unwrap();
        assert_eq!(h.kind.port(), Some(8000));
        assert_eq!(h.failure_threshold, 3);
        let s = decl("command = ['w']\nready = { log = 'Worker ready' }\ncwd = 'w'")
            .check("worker", Path::new("/etc"))
            .unwrap();
        assert!(s.health.is_none(), "a log line is not re-checked");
        assert_eq!(s.cwd.as_deref(), Some(Path::new("/etc/w")));
        assert_eq!(s.stop_signal, 15);
        for (text, want) in [
            ("command = []", "command"),
            ("command = ['x']\nready = { log = '(' }", "invalid regex"),
            ("command = ['x']\nready = { http = 'ftp://x' }", "http://"),
            (
                "command = ['x']\nready = { http = 'h', tcp = 'a:1' }",
                "exactly one",
            ),
            ("command = ['x']\nhealth = { log = 'x' }", "readiness"),
            ("command = ['x']\nstop_signal = 'SIGNOPE'", "stop_signal"),
            ("command = ['x']\nready = { tcp = 'nowhere' }", "HOST:PORT"),
        ] {
            let e = decl(text).check("x", Path::new("/")).unwrap_err();
            assert!(e.0.contains(want), "{text}: {e}");
        }
        assert!(
            decl("command = ['x']")
                .check("temporal", Path::new("/"))
                .is_err()
        );
        assert!(
            decl("command = ['x']")
                .check("Bad Name", Path::new("/"))
                .is_err()
        );
    }

    fn spec(name: &str, deps: &[&str]) -> ServiceSpec {
        let mut s = decl("command = ['x']").check(name, Path::new("/")).unwrap();
        s.depends_on = deps.iter().map(|d| d.to_string()).collect();
        s
    }

    #[test]
    fn orders_by_dependency_and_names_cycles() {
        let sorted = order(vec![
            spec("web", &["api"]),
            spec("api", &["temporal", "db"]),
            spec("db", &[]),
        ])
        .unwrap();
        let names: Vec<&str> = sorted.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["db", "api", "web"]);
        let (_, e) = order(vec![
            spec("a", &["b"]),
            spec("b", &["c"]),
            spec("c", &["a"]),
        ])
        .unwrap_err();
        assert!(e.contains("a -> b -> c -> a"), "{e}");
        let (who, e) = order(vec![spec("a", &["ghost"])]).unwrap_err();
        assert_eq!(who, "a");
        assert!(e.contains("ghost"), "{e}");
    }
}

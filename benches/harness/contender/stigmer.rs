//! This project: `stigmer local start` (release build), defaults for
//! supervision (1 s health interval, 1 s timeout, threshold 3).

use super::{Contender, Env, logged, quiet};
use crate::harness::{probe, sys};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// `stigmer local`, alone or with stand-in services.
pub struct Stigmer {
    env: Env,
    home: PathBuf,
    log: PathBuf,
    pending: Option<(Child, Instant)>,
    /// Stand-in services declared beside Temporal.
    services: usize,
}

/// The services of the `stigmer-stack` contender: each prints a readiness
/// line and sleeps, depends on Temporal (or the one before it), and is
/// checked every second by a command, like a small real stack.
fn stack_config(n: usize) -> String {
    (0..n)
        .map(|i| {
            let dep = if i == 0 {
                "temporal".to_string()
            } else {
                format!("s{}", i - 1)
            };
            format!(
                "[services.s{i}]\ncommand = ['sh', '-c', 'echo ready; exec sleep 86400']\n\
                 depends_on = ['{dep}']\nready = {{ log = '^ready$' }}\n\
                 health = {{ exec = ['true'], interval = 1 }}\n"
            )
        })
        .collect()
}

impl Stigmer {
    /// New, not started; with `services` stand-in services when non-zero.
    pub fn new(env: &Env, services: usize) -> Self {
        let dir = env.dir(if services == 0 {
            "stigmer"
        } else {
            "stigmer-stack"
        });
        Stigmer {
            env: env.clone(),
            home: dir.join("home"),
            log: dir.join("cli.log"),
            pending: None,
            services,
        }
    }

    fn pid_record(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.home.join("stigmer.pid")).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn recorded_pid(&self, who: &str) -> Option<i32> {
        let v = self.pid_record()?;
        v.get(who)?.get("pid")?.as_i64().map(|p| p as i32)
    }

    /// `stigmer local start` with every flag the benchmark uses.
    fn start_command(&self, out: Command) -> Command {
        let mut c = out;
        c.args(["local", "start", "--home"])
            .arg(&self.home)
            .args(["--port", &self.env.port.to_string(), "--headless"])
            .args(["--http-addr", &format!("127.0.0.1:{}", self.env.http_port)])
            .arg("--temporal-bin")
            .arg(&self.env.temporal)
            .arg("--db-file")
            .arg(&self.env.db)
            .args(self.env.extra_as_stigmer_options());
        c
    }

    /// The last lines the CLI printed (for error messages).
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(4)..].join(" / ")
    }

    fn stop_cmd(&self) -> Command {
        let mut c = logged(&self.env.stigmer, &self.log);
        c.args(["local", "stop", "--home"]).arg(&self.home);
        c
    }
}

impl Contender for Stigmer {
    fn name(&self) -> &'static str {
        if self.services == 0 {
            "stigmer"
        } else {
            "stigmer-stack"
        }
    }

    fn describe(&self) -> String {
        let stack = if self.services == 0 {
            String::new()
        } else {
            format!(
                ", with {} stand-in services (log-ready, a health command every second)",
                self.services
            )
        };
        format!(
            "`stigmer local start` ({}), defaults: health every 0.5 s, adaptive timeout (4 × p99 of the answers, 0.1–1 s), confirmed by 2 more checks{stack}",
            super::version_of(&self.env.stigmer, "--version")
        )
    }

    fn launch(&mut self) -> Result<(), String> {
        let _ = std::fs::remove_dir_all(&self.home);
        if self.services > 0 {
            std::fs::create_dir_all(&self.home).map_err(|e| e.to_string())?;
            std::fs::write(self.home.join("stigmer.toml"), stack_config(self.services))
                .map_err(|e| e.to_string())?;
        }
        let mut c = self.start_command(logged(&self.env.stigmer, &self.log));
        let t0 = Instant::now();
        let child = c.spawn().map_err(|e| format!("spawn stigmer: {e}"))?;
        self.pending = Some((child, t0));
        Ok(())
    }

    fn finish_launch(&mut self) -> Result<Option<Duration>, String> {
        let Some((child, t0)) = self.pending.take() else {
            return Ok(None);
        };
        let t = sys::wait_child(child, t0, Duration::from_secs(120))?;
        match t.status {
            Some(s) if s.success() => Ok(Some(t.elapsed)),
            Some(s) => Err(format!(
                "`stigmer local start` exited with {s}: {}",
                self.log_tail()
            )),
            None => Err("`stigmer local start` did not return within 120 s".into()),
        }
    }

    fn current_child(&self) -> Option<i32> {
        // Seen the same way as every other supervisor's child: in /proc;
        // beside services (and their health commands), the one that runs
        // Temporal.
        let daemon = self.recorded_pid("daemon")?;
        sys::children(daemon)
            .into_iter()
            .filter(|&p| {
                sys::alive(p) && sys::exe(p).as_deref() == Some(self.env.temporal.as_path())
            })
            .max_by_key(|&p| sys::stat(p).map(|s| s.start_time).unwrap_or(0))
            .or_else(|| super::live_child(Some(daemon)).filter(|_| self.services == 0))
    }

    fn records_child(&self) -> bool {
        true
    }

    fn recorded_child(&self) -> Option<i32> {
        // The daemon rewrites the PID file right after each respawn.
        self.recorded_pid("temporal").filter(|&p| sys::alive(p))
    }

    fn start_cmd(&self) -> Option<Command> {
        Some(self.start_command(quiet(&self.env.stigmer)))
    }

    fn status_cmd(&self) -> Option<Command> {
        let mut c = quiet(&self.env.stigmer);
        c.args(["local", "status", "--home"]).arg(&self.home);
        Some(c)
    }

    fn stop(&mut self) -> Result<(), String> {
        let t = sys::run_timed(self.stop_cmd(), Duration::from_secs(60))?;
        match t.status {
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(format!(
                "`stigmer local stop` exited with {s}: {}",
                self.log_tail()
            )),
            None => Err("`stigmer local stop` did not return within 60 s".into()),
        }
    }

    fn settled(&self) -> bool {
        // No restart pending and the failure streak reset: the next kill
        // gets the immediate first restart, like every other contender.
        match probe::http_get(self.env.http_port, "/status", Duration::from_secs(2)) {
            Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .is_some_and(|v| {
                    v["restarts"]["consecutive_failures"].as_u64() == Some(0)
                        && v["temporal"]["ready"].as_bool() == Some(true)
                        && v["backoff"].is_null()
                }),
            _ => false,
        }
    }

    fn supervisor_pids(&self) -> Vec<i32> {
        self.recorded_pid("daemon").into_iter().collect()
    }

    fn teardown(&mut self) {
        if let Some((mut c, _)) = self.pending.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.home.exists() {
            let _ = sys::run_timed(self.stop_cmd(), Duration::from_secs(60));
        }
    }
}

//! The human rendering of the status document (`stigmer local status`).

use super::{StatusDoc, UnitStatus};
use crate::model::Layer;

impl StatusDoc {
    /// A few human lines: Temporal (where it is reached, the daemon, its
    /// restarts and health layers), then one line per service.
    pub fn render(&self) -> String {
        let mut lines = self.temporal_lines();
        lines.extend(self.health_lines());
        if !self.services.is_empty() {
            lines.push("Services:".into());
        }
        for (name, s) in &self.services {
            lines.push(service_line(name, s));
        }
        let mut out = lines.join("\n");
        out.push('\n');
        out
    }

    /// Temporal's state, addresses, the daemon, restarts and backoff.
    fn temporal_lines(&self) -> Vec<String> {
        let t = &self.temporal;
        let mut v = vec![format!(
            "Temporal: {}{}{}",
            t.unit.state.as_str(),
            running(&t.unit),
            not_ready(&t.unit)
        )];
        let remote = t.listen_ip.as_deref().filter(|ip| {
            !ip.parse::<std::net::IpAddr>()
                .is_ok_and(|a| a.is_loopback())
        });
        v.push(match remote {
            Some(ip) => format!("  frontend:  {} (listening on {ip})", t.frontend),
            None => format!("  frontend:  {}", t.frontend),
        });
        if !t.namespace.is_empty() {
            v.push(format!("  namespace: {}", t.namespace));
        }
        if !t.managed {
            let mut how = vec![if t.tls { "TLS" } else { "plaintext" }.to_string()];
            if let Some(p) = &t.profile {
                how.push(format!("profile {p}"));
            }
            if t.credentials.is_some() {
                how.push("API key set".into());
            }
            v.push(format!("  attached:  {}", how.join(", ")));
        }
        if let Some(ui) = &t.ui_url {
            v.push(format!("  web UI:    {ui}"));
        }
        v.push(format!(
            "  health:    http://{}/healthz",
            self.supervisor.http_addr
        ));
        if let Some(c) = &self.live_check {
            let verdict = if c.ok { "answers" } else { "FAILS" };
            v.push(format!(
                "  gRPC now:  {verdict} ({}, {:.1} ms)",
                c.detail, c.latency_ms
            ));
        }
        let sup = &self.supervisor;
        let exe = sup
            .exe
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        v.push(format!(
            "  daemon:    pid {}, up {}, stigmer {}{exe}",
            sup.pid,
            human_secs(sup.uptime_seconds),
            sup.version,
        ));
        let r = &self.restarts;
        let mut restarts = format!("  restarts:  {}", r.count);
        if let Some(reason) = &r.last_reason {
            restarts.push_str(&format!(", last: {}", reason.label()));
        }
        if let Some(exit) = &r.last_exit_description {
            restarts.push_str(&format!(" ({exit})"));
        }
        v.push(restarts);
        if let Some(b) = &self.backoff {
            v.push(format!(
                "  backoff:   attempt {}, next in {:.0} ms",
                b.attempt, b.delay_ms
            ));
        }
        v
    }

    /// Temporal's health layers, its last error and warnings.
    fn health_lines(&self) -> Vec<String> {
        let mut v: Vec<String> = Layer::TEMPORAL
            .iter()
            .filter_map(|layer| {
                let s = self.health.get(layer.as_str())?;
                Some(format!(
                    "  {:<11}  {} {} ({:.1} ms)",
                    layer.as_str(),
                    if s.ok { "ok  " } else { "FAIL" },
                    s.reason,
                    s.latency_ms
                ))
            })
            .collect();
        if let Some(e) = &self.last_error {
            v.push(format!("  last error: {e}"));
        }
        v.extend(
            self.temporal
                .unit
                .warnings
                .iter()
                .map(|w| format!("  warning:   {w}")),
        );
        v
    }
}

/// ", NOT READY (why)" when it runs but is not ready.
fn not_ready(u: &UnitStatus) -> String {
    match (&u.not_ready_reason, u.state) {
        (Some(why), crate::model::StateName::Running) => format!(", NOT READY ({why})"),
        _ => String::new(),
    }
}

/// " (pid P, up T)" when a process runs.
fn running(u: &UnitStatus) -> String {
    u.pid
        .map(|p| {
            format!(
                " (pid {p}, up {})",
                human_secs(u.uptime_seconds.unwrap_or(0.0))
            )
        })
        .unwrap_or_default()
}

/// One line per service: state, pid and uptime, readiness, restarts, and
/// how the last process ended.
fn service_line(name: &str, s: &super::ServiceSection) -> String {
    let s = &s.unit;
    let running = running(s);
    let ready = if s.ready { "ready" } else { "not ready" };
    let last = s
        .restarts
        .last_exit_description
        .as_deref()
        .map(|e| format!(", last exit: {e}"))
        .unwrap_or_default();
    let mut out = format!(
        "  {name:<12} {}{running}, {ready}, restarts {}{last}",
        s.state.as_str(),
        s.restarts.count
    );
    if let Some(failing) = s.health.iter().find(|(_, l)| !l.ok) {
        out.push_str(&format!(" [{} check: {}]", failing.0, failing.1.reason));
    } else if let Some(q) = s.health.get(Layer::TaskQueue.as_str()) {
        out.push_str(&format!(" [{}]", q.reason));
    }
    if let Some(e) = &s.last_error {
        out.push_str(&format!(" [{e}]"));
    }
    for w in &s.warnings {
        out.push_str(&format!(" [warning: {w}]"));
    }
    out
}

/// "1h02m", "3m04s", "12.3s".
pub fn human_secs(s: f64) -> String {
    let whole = s as u64;
    if whole >= 3600 {
        format!("{}h{:02}m", whole / 3600, (whole % 3600) / 60)
    } else if whole >= 60 {
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        format!("{s:.1}s")
    }
}

//! The human rendering of the status document (`stigmer local status`).

use super::{StatusDoc, UnitStatus};
use crate::model::Layer;

impl StatusDoc {
    /// A few human lines.
    pub fn render(&self) -> String {
        let t = &self.temporal;
        let u = &t.unit;
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!("Temporal: {}{}", u.state.as_str(), running(u)));
        match t.listen_ip.as_deref() {
            Some(ip)
                if !ip
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback()) =>
            {
                line(format!("  frontend:  {} (listening on {ip})", t.frontend));
            }
            _ => line(format!("  frontend:  {}", t.frontend)),
        }
        if let Some(ui) = &t.ui_url {
            line(format!("  web UI:    {ui}"));
        }
        line(format!(
            "  health:    http://{}/healthz",
            self.supervisor.http_addr
        ));
        if let Some(c) = &self.live_check {
            let verdict = if c.ok { "answers" } else { "FAILS" };
            line(format!(
                "  gRPC now:  {verdict} ({}, {:.1} ms)",
                c.detail, c.latency_ms
            ));
        }
        let sup = &self.supervisor;
        line(format!(
            "  daemon:    pid {}, up {}, stigmer {}{}",
            sup.pid,
            human_secs(sup.uptime_seconds),
            sup.version,
            sup.exe
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
        let r = &self.restarts;
        let mut restarts = format!("  restarts:  {}", r.count);
        if let Some(reason) = &r.last_reason {
            restarts.push_str(&format!(", last: {}", reason.label()));
        }
        if let Some(exit) = &r.last_exit_description {
            restarts.push_str(&format!(" ({exit})"));
        }
        line(restarts);
        if let Some(b) = &self.backoff {
            line(format!(
                "  backoff:   attempt {}, next in {:.0} ms",
                b.attempt, b.delay_ms
            ));
        }
        for layer in Layer::TEMPORAL {
            if let Some(s) = self.health.get(layer.as_str()) {
                line(format!(
                    "  {:<9}  {} {} ({:.1} ms)",
                    layer.as_str(),
                    if s.ok { "ok  " } else { "FAIL" },
                    s.reason,
                    s.latency_ms
                ));
            }
        }
        if let Some(e) = &self.last_error {
            line(format!("  last error: {e}"));
        }
        for w in &u.warnings {
            line(format!("  warning:   {w}"));
        }
        if !self.services.is_empty() {
            line("Services:".into());
        }
        for (name, s) in &self.services {
            line(service_line(name, s));
        }
        out
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

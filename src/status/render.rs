//! The human rendering of the status document (`stigmer local status`):
//! how the stack's Temporal is reached and who supervises it, then every
//! unit by one renderer, whatever its kind: a line each (with what fails
//! and what warns), and for the stack's Temporal the detail (restarts,
//! backoff, every health layer, errors, warnings).

use super::{StatusDoc, UnitEntry, UnitStatus};

impl StatusDoc {
    /// A few human lines.
    pub fn render(&self) -> String {
        let mut lines = Vec::new();
        for u in self.units.iter().filter(|u| u.kind.is_temporal()) {
            lines.push(unit_line(u));
            lines.extend(self.reach_lines());
            lines.extend(unit_detail(&u.status));
        }
        let mut services = self.services().peekable();
        if services.peek().is_some() {
            lines.push("Services:".into());
        }
        for u in services {
            lines.push(format!("  {}", unit_line(u)));
        }
        let mut out = lines.join("\n");
        out.push('\n');
        out
    }

    /// Where Temporal is reached, and the daemon that supervises it.
    fn reach_lines(&self) -> Vec<String> {
        let t = &self.temporal;
        let mut v = Vec::new();
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
        v
    }
}

/// A unit's line: its title, state, pid and uptime, readiness, restarts,
/// how its last process ended, and what fails.
fn unit_line(u: &UnitEntry) -> String {
    let s = &u.status;
    let last = s
        .restarts
        .last_exit_description
        .as_deref()
        .map(|e| format!(", last exit: {e}"))
        .unwrap_or_default();
    let title = if u.kind.is_temporal() {
        "Temporal:".to_string()
    } else {
        format!("{:<12}", u.name)
    };
    let mut out = format!(
        "{title} {}{}{}{}",
        s.state.as_str(),
        running(s),
        not_ready(s),
        if u.kind.is_temporal() {
            String::new()
        } else {
            format!(
                ", {}, restarts {}{last}",
                if s.ready { "ready" } else { "not ready" },
                s.restarts.count
            )
        }
    );
    if u.kind.is_temporal() {
        // Its detail follows.
        return out;
    }
    if let Some(failing) = s.health.iter().find(|(_, l)| !l.ok) {
        out.push_str(&format!(" [{} check: {}]", failing.0, failing.1.reason));
    } else if let Some(q) = s.health.get(crate::model::Layer::TaskQueue.as_str()) {
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

/// A unit's detail: restarts, backoff, its health layers, its last error
/// and warnings.
fn unit_detail(s: &UnitStatus) -> Vec<String> {
    let r = &s.restarts;
    let mut restarts = format!("  restarts:  {}", r.count);
    if let Some(reason) = &r.last_reason {
        restarts.push_str(&format!(", last: {}", reason.label()));
    }
    if let Some(exit) = &r.last_exit_description {
        restarts.push_str(&format!(" ({exit})"));
    }
    let mut v = vec![restarts];
    if let Some(b) = &s.backoff {
        v.push(format!(
            "  backoff:   attempt {}, next in {}",
            b.attempt,
            human_secs(b.delay_ms / 1000.0)
        ));
    }
    let mut layers: Vec<(&String, &crate::supervisor::LayerStatus)> = s.health.iter().collect();
    layers.sort_by_key(|(name, _)| {
        crate::model::Layer::ALL
            .iter()
            .position(|l| l.as_str() == name.as_str())
    });
    for (layer, l) in layers {
        v.push(format!(
            "  {:<11}  {} {} ({:.1} ms)",
            layer,
            if l.ok { "ok  " } else { "FAIL" },
            l.reason,
            l.latency_ms
        ));
    }
    if let Some(e) = &s.last_error {
        v.push(format!("  last error: {e}"));
    }
    v.extend(s.warnings.iter().map(|w| format!("  warning:   {w}")));
    v
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

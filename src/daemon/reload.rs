//! A configuration reload (`stigmer local reload`, SIGHUP): `stigmer.toml`
//! read again — the file the instance was started with, under the flags
//! and environment of that start — and checked exactly as `start` checks
//! it (trust rules included). Only the difference is applied: services
//! added start (once their dependencies are ready), removed ones stop,
//! changed ones are replaced (built first, overlapped where they say so),
//! unchanged ones and Temporal keep their processes; a change of
//! Temporal's own options restarts it. What cannot change while the daemon
//! runs (its HTTP address, OTLP, switching between a managed and an
//! attached Temporal) is named and left for a stop and start. An invalid
//! file changes nothing.

use super::Daemon;
use crate::config::Config;
use crate::ipc::control::{ReloadReport, UnitChange};
use crate::model::{Code, TEMPORAL};
use crate::supervisor::stack::{Runner, StackChange};
use crate::supervisor::unit::Unit;
use crate::supervisor::{Actor, Command, Outlet};
use serde_json::Value;
use std::time::Duration;

/// What a reload would do.
#[derive(Debug, Default)]
struct Plan {
    /// Why Temporal restarts, if it does.
    temporal: Option<String>,
    /// Changes left for a stop and start.
    not_applied: Vec<String>,
    added: Vec<String>,
    removed: Vec<String>,
    changed: Vec<(String, String)>,
    unchanged: Vec<String>,
}

/// The top-level keys of two JSON objects that differ.
fn differing(a: &Value, b: &Value) -> Vec<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return if a == b { vec![] } else { vec!["value".into()] };
    };
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Temporal's part of a configuration: what its process (or the
/// connection to it) is made from.
fn temporal_part(c: &Config) -> Value {
    serde_json::json!({
        "temporal_ip": c.temporal_ip,
        "port": c.port,
        "ui_port": c.ui_port,
        "temporal_bin": c.temporal_bin,
        "db_file": c.db_file,
        "temporal_metrics_port": c.temporal_metrics_port,
        "http_port": c.http_port,
        "ui_ip": c.ui_ip,
        "health_interval": c.health_interval,
        "health_timeout": c.health_timeout,
        "confirm_timeout": c.confirm_timeout,
        "failure_threshold": c.failure_threshold,
        "stop_grace": c.stop_grace,
        "start_timeout": c.start_timeout,
        "temporal": c.temporal,
        "namespace": c.namespace,
    })
}

/// What the daemon itself runs with (not applied while it runs).
fn daemon_part(c: &Config) -> Value {
    serde_json::json!({
        "http_addr": c.http_addr,
        "allow_remote_http": c.allow_remote_http,
        "http_allowed_hosts": c.http_allowed_hosts,
        "otlp_endpoint": c.otlp_endpoint,
        "persistence": c.persistence,
    })
}

/// A service as its process is made: its declaration and the environment
/// the stack gives it.
fn service_part(s: &crate::config::services::ServiceSpec, c: &Config) -> Value {
    serde_json::json!({
        "spec": s,
        "temporal_env": crate::supervisor::unit::service_env(s, c),
    })
}

fn plan(old: &Config, new: &Config) -> Result<Plan, String> {
    if old.attach.is_some() != new.attach.is_some() {
        return Err(
            "switching between a managed and an attached Temporal needs `stigmer local stop` and `start`".into(),
        );
    }
    if let (Some(a), Some(b)) = (&old.attach, &new.attach)
        && a.connection != b.connection
    {
        return Err(
            "attaching to another Temporal (address, TLS or credentials) needs `stigmer local stop` and `start`".into(),
        );
    }
    let mut p = Plan::default();
    let t = differing(&temporal_part(old), &temporal_part(new));
    if !t.is_empty() && new.attach.is_none() {
        p.temporal = Some(format!("{} changed", t.join(", ")));
    }
    for key in differing(&daemon_part(old), &daemon_part(new)) {
        p.not_applied.push(format!(
            "{key} changed: it applies at the next `stigmer local stop` and `start`"
        ));
    }
    for s in &new.services {
        match old.services.iter().find(|o| o.name == s.name) {
            None => p.added.push(s.name.clone()),
            Some(o) => {
                let keys = differing(&service_part(o, old), &service_part(s, new));
                if keys.is_empty() {
                    p.unchanged.push(s.name.clone());
                } else {
                    let mut what: Vec<String> = differing(
                        &serde_json::to_value(o).unwrap_or_default(),
                        &serde_json::to_value(s).unwrap_or_default(),
                    );
                    if keys.iter().any(|k| k == "temporal_env") {
                        what.push("its Temporal environment".into());
                    }
                    p.changed.push((s.name.clone(), what.join(", ")));
                }
            }
        }
    }
    for o in old.services.iter().rev() {
        if !new.services.iter().any(|s| s.name == o.name) {
            p.removed.push(o.name.clone());
        }
    }
    Ok(p)
}

impl Plan {
    fn report(&self, applied: bool) -> ReloadReport {
        let mut changes = Vec::new();
        let mut push = |unit: &str, action: &str, detail: String| {
            changes.push(UnitChange {
                unit: unit.to_string(),
                action: action.to_string(),
                detail,
            })
        };
        match &self.temporal {
            Some(why) => push(TEMPORAL, "restarted", why.clone()),
            None => push(TEMPORAL, "unchanged", String::new()),
        }
        for n in &self.removed {
            push(n, "removed", "stopped".into());
        }
        for (n, what) in &self.changed {
            push(n, "changed", format!("{what} changed"));
        }
        for n in &self.added {
            push(n, "added", "starts once its dependencies are ready".into());
        }
        for n in &self.unchanged {
            push(n, "unchanged", String::new());
        }
        ReloadReport {
            applied,
            changes,
            notes: self.not_applied.clone(),
        }
    }
}

/// How long a removed service may take to stop before the reload says so.
const REMOVE_WAIT: Duration = Duration::from_secs(60);

impl Daemon {
    /// Reload the configuration: plan, and unless `dry_run`, apply.
    /// Errors: the file's problem and its exit code; nothing changed.
    pub(super) async fn reload(&mut self, dry_run: bool) -> Result<ReloadReport, (Code, String)> {
        let now = self.info.get();
        let Some(origin) = now.config.origin.clone() else {
            return Err((
                Code::Config,
                "this daemon does not know what it was started from (an upgrade from 0.1.0); stop and start it once".into(),
            ));
        };
        let home = now.config.home.clone();
        let new = tokio::task::spawn_blocking(move || origin.load(home))
            .await
            .map_err(|e| (Code::Internal, e.to_string()))?
            .map_err(|e| {
                let f = crate::exit::Failure::from(e);
                (f.code(), f.to_string())
            })?;
        // As `start` does: the binary resolved once, by path.
        let mut new = new;
        let bin = new
            .resolve_temporal_bin()
            .map_err(|e| (Code::Binary, e.to_string()))?;
        if new.attach.is_none() {
            new.temporal_bin = Some(bin.clone());
        }
        if let Some(missing) = new.missing_programs().into_iter().next() {
            return Err((Code::Binary, missing));
        }
        let p = plan(&now.config, &new).map_err(|e| (Code::Config, e))?;
        if dry_run {
            return Ok(p.report(false));
        }
        tracing::info!(
            temporal = ?p.temporal,
            added = ?p.added,
            removed = ?p.removed,
            changed = ?p.changed,
            "reloading the configuration"
        );
        self.info.set(new.clone(), bin);
        self.apply(&p, &new).await;
        Ok(p.report(true))
    }

    async fn apply(&mut self, p: &Plan, cfg: &Config) {
        let info = self.info.get();
        let sup = &self.supervisor;
        let handle = sup.handle.clone();
        for name in &p.removed {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if handle
                .changes
                .send(StackChange::Remove(name.clone(), tx))
                .await
                .is_ok()
                && tokio::time::timeout(REMOVE_WAIT, rx).await.is_err()
            {
                tracing::warn!(unit = %name, "a removed service is still stopping");
            }
        }
        if p.temporal.is_some() {
            sup.client.grpc().retarget(cfg.connection().endpoint);
            let unit = Unit::temporal(cfg, &info.binary, info.policy.clone(), &sup.client);
            if let Some(t) = handle.temporal() {
                let _ = t.commands.send(Command::Reconfigure(Box::new(unit))).await;
            }
        }
        for s in &cfg.services {
            let unit = Unit::service(s, cfg, info.policy.clone(), &sup.ctx.spawner, &sup.client);
            if p.changed.iter().any(|(n, _)| *n == s.name) {
                handle.set_dependencies(&s.name, s.depends_on.clone(), s.restart_with.clone());
                if let Some(u) = handle.unit(&s.name) {
                    let _ = u.commands.send(Command::Reconfigure(Box::new(unit))).await;
                }
            } else if p.added.contains(&s.name) {
                let out = Outlet::new(super::observer(&self.metrics, &s.name));
                let (actor, h) = Actor::new(unit, &sup.ctx, out);
                self.metrics.watch_log(&h.name, h.log.clone());
                let _ = handle
                    .changes
                    .send(StackChange::Add(
                        Box::new(Runner::Managed(Box::new(actor))),
                        h,
                    ))
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::options::Options;
    use crate::paths::StateDir;

    fn config(file: &str) -> Config {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("stigmer.toml");
        std::fs::write(&p, file).unwrap();
        let c = Config::load(
            StateDir::new(d.path().join("home")),
            &Options::defaults(),
            &Default::default(),
            Some(&p),
        )
        .unwrap();
        // The directory goes; the configuration stays a value.
        drop(d);
        c
    }

    #[test]
    fn only_the_difference_is_planned() {
        let old = config(
            "[services.a]\ncommand = ['a']\n[services.b]\ncommand = ['b']\n[services.c]\ncommand = ['c']\n",
        );
        let new = config(
            "[temporal]\nnamespace = 'other'\n[services.a]\ncommand = ['a']\ntemporal_env = false\n\
             [services.b]\ncommand = ['b']\nenv = { X = '1' }\n[services.d]\ncommand = ['d']\n",
        );
        let p = plan(&old, &new).unwrap();
        assert_eq!(p.added, ["d"]);
        assert_eq!(p.removed, ["c"]);
        let changed: Vec<&str> = p.changed.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(changed, ["a", "b"], "{p:?}");
        assert!(p.changed[1].1.contains("env"), "{p:?}");
        assert!(
            p.temporal.as_deref().unwrap().contains("namespace"),
            "{p:?}"
        );
        assert!(p.unchanged.is_empty());
        let same = plan(&old, &old).unwrap();
        assert!(same.temporal.is_none() && same.changed.is_empty() && same.added.is_empty());
        assert_eq!(same.unchanged, ["a", "b", "c"]);
    }
}

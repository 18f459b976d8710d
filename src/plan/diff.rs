//! The difference between the running plan and a new one, unit by unit:
//! what a reload (or a start, from the empty plan) does. Pure: the daemon
//! applies it.

use super::{Plan, UnitSpec};
use serde_json::Value;

/// What becomes of one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// New: started once its dependencies are ready.
    Add,
    /// Gone from the plan: stopped.
    Remove,
    /// Its resolved spec changed (these settings): replaced, with its
    /// build and overlap where it has them.
    Replace(Vec<String>),
    /// Unchanged: its process stays.
    Keep,
}

/// The difference between two plans.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diff {
    /// Each unit of either plan, in the new plan's order, removed ones
    /// (in reverse) after.
    pub units: Vec<(String, Change)>,
    /// What changed but is applied only by a stop and start (the daemon's
    /// own settings).
    pub not_applied: Vec<String>,
}

impl Diff {
    /// The units with this change.
    pub fn with(&self, pred: impl Fn(&Change) -> bool) -> impl Iterator<Item = &str> {
        self.units
            .iter()
            .filter(move |(_, c)| pred(c))
            .map(|(n, _)| n.as_str())
    }
}

/// Why a plan cannot replace the running one while the daemon runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// What it takes to go from `running` to `desired`.
pub fn diff(running: &Plan, desired: &Plan) -> Result<Diff, Refused> {
    if let (Some(a), Some(b)) = (running.temporal(), desired.temporal()) {
        if a.kind != b.kind {
            return Err(Refused(
                "switching between a managed and an attached Temporal needs `stigmer local stop` and `start`".into(),
            ));
        }
        if !a.kind.is_managed() && running.connection != desired.connection {
            return Err(Refused(
                "attaching to another Temporal (address, TLS or credentials) needs `stigmer local stop` and `start`".into(),
            ));
        }
    }
    let mut d = Diff::default();
    for u in &desired.units {
        let change = match running.unit(&u.name) {
            None => Change::Add,
            Some(old) => match settings(old, u) {
                s if s.is_empty() => Change::Keep,
                s => Change::Replace(s),
            },
        };
        d.units.push((u.name.clone(), change));
    }
    for u in running.units.iter().rev() {
        if desired.unit(&u.name).is_none() {
            d.units.push((u.name.clone(), Change::Remove));
        }
    }
    for key in differing(
        &serde_json::to_value(&running.daemon).unwrap_or_default(),
        &serde_json::to_value(&desired.daemon).unwrap_or_default(),
        "",
    ) {
        d.not_applied.push(format!(
            "{key} changed: it applies at the next `stigmer local stop` and `start`"
        ));
    }
    if running.persistence != desired.persistence {
        d.not_applied.push(
            "persistence changed: it applies at the next `stigmer local stop` and `start`".into(),
        );
    }
    Ok(d)
}

/// The settings of a unit's spec that differ, by the names a user
/// declares them with (`health_interval`, `env`, `min_uptime`, ...),
/// inherited ones included.
pub fn settings(a: &UnitSpec, b: &UnitSpec) -> Vec<String> {
    let mut names: Vec<String> = differing(
        &serde_json::to_value(a).unwrap_or_default(),
        &serde_json::to_value(b).unwrap_or_default(),
        "",
    )
    .iter()
    .map(|path| declared(path).to_string())
    .collect();
    names.sort();
    names.dedup();
    names
}

/// The declared name of a spec's field (`run.args` is its `command`).
fn declared(path: &str) -> &str {
    match path {
        "run.program" | "run.args" => "command",
        "run.env" | "run.own_env" | "run.env_remove" => "env",
        "run.env_files" => "env_file",
        "run.cwd" => "cwd",
        "timing.adaptive" | "timing.adaptive_confirm" => "health_timeout",
        "timing.startup_interval" => "ready",
        "rules.policy" => "backoff",
        "rules.ready_on_uptime" => "ready",
        "rules.start_timeout" => "start_timeout",
        "stops_before" | "restart_with" => "depends_on",
        "binds" => "ports",
        p => p.rsplit('.').next().unwrap_or(p),
    }
}

/// The keys of two JSON objects that differ, one level into nested
/// objects (so an inherited timing names the setting, not "timing").
fn differing(a: &Value, b: &Value, prefix: &str) -> Vec<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return if a == b {
            vec![]
        } else {
            vec![prefix.trim_end_matches('.').to_string()]
        };
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for k in keys {
        let (x, y) = (a.get(k), b.get(k));
        if x == y {
            continue;
        }
        let name = format!("{prefix}{k}");
        match (x, y) {
            (Some(x @ Value::Object(_)), Some(y @ Value::Object(_))) if prefix.is_empty() => {
                out.extend(differing(x, y, &format!("{name}.")));
            }
            _ => out.push(name),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::options::Options;
    use crate::model::Policy;
    use crate::paths::StateDir;
    use std::path::Path;

    /// The plan of `file`, read from one place every time (a home of its
    /// own would be a difference of its own).
    fn plan(file: &str) -> Plan {
        static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
        let d = DIR.get_or_init(|| tempfile::tempdir().unwrap());
        let p = d.path().join(format!("{:x}.toml", {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            file.hash(&mut h);
            h.finish()
        }));
        std::fs::write(&p, file).unwrap();
        let home = StateDir::new(d.path().join("home"));
        let c = Config::load(home, &Options::defaults(), &Default::default(), Some(&p)).unwrap();
        Plan::of(&c, Path::new("/usr/bin/temporal"), &Policy::default(), &[])
    }

    #[test]
    fn only_the_difference_is_planned() {
        let old = plan(
            "[services.a]\ncommand = ['a']\n[services.b]\ncommand = ['b']\n[services.c]\ncommand = ['c']\n",
        );
        let new = plan(
            "[temporal]\nnamespace = 'other'\n[services.a]\ncommand = ['a']\ntemporal_env = false\n\
             [services.b]\ncommand = ['b']\nenv = { X = '1' }\n[services.d]\ncommand = ['d']\n",
        );
        let d = diff(&old, &new).unwrap();
        let of = |n: &str| d.units.iter().find(|(u, _)| u == n).unwrap().1.clone();
        assert_eq!(of("d"), Change::Add);
        assert_eq!(of("c"), Change::Remove);
        let Change::Replace(b) = of("b") else {
            panic!("{d:?}")
        };
        assert_eq!(b, ["env"], "{d:?}");
        let Change::Replace(t) = of("temporal") else {
            panic!("{d:?}")
        };
        assert!(t.iter().any(|s| s == "command"), "{t:?}");
        assert!(matches!(of("a"), Change::Replace(_)));
        let same = diff(&old, &old).unwrap();
        assert!(same.units.iter().all(|(_, c)| *c == Change::Keep));
        assert!(same.not_applied.is_empty());
    }

    /// A setting a service inherits from `[temporal]` is part of its
    /// resolved spec: changing it replaces the services that use it, and
    /// names the setting; those with their own value keep their process.
    #[test]
    fn an_inherited_setting_replaces_exactly_the_units_that_use_it() {
        let services = "[services.plain]\ncommand = ['p']\n\
             [services.checked]\ncommand = ['c']\nhealth = { tcp = '127.0.0.1:9', interval = 2 }\n";
        let old = plan(services);
        let new = plan(&format!("[temporal]\nhealth_interval = 2\n{services}"));
        let d = diff(&old, &new).unwrap();
        let of = |n: &str| d.units.iter().find(|(u, _)| u == n).unwrap().1.clone();
        assert_eq!(of("plain"), Change::Replace(vec!["health_interval".into()]));
        assert_eq!(of("checked"), Change::Keep);
        assert_eq!(
            of("temporal"),
            Change::Replace(vec!["health_interval".into()])
        );
    }

    #[test]
    fn start_is_the_difference_from_nothing() {
        let p = plan("[services.a]\ncommand = ['a']\n");
        let d = diff(&Plan::empty(&p), &p).unwrap();
        assert_eq!(
            d.units,
            [
                ("temporal".to_string(), Change::Add),
                ("a".to_string(), Change::Add)
            ]
        );
    }
}

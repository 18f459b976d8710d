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
use crate::ipc::control::{ReloadReport, UnitChange};
use crate::model::Code;
use crate::plan::{Change, Diff, Plan};

/// What a reload did (or would do), unit by unit, as the CLI prints it.
fn report(d: &Diff, plan: &Plan, running: &Plan, applied: bool) -> ReloadReport {
    let kind = |n: &str| plan.unit(n).or_else(|| running.unit(n)).map(|u| u.kind);
    let changes = d
        .units
        .iter()
        .map(|(unit, change)| {
            let temporal = kind(unit).is_some_and(crate::model::Kind::is_temporal);
            let (action, detail) = match change {
                Change::Add => ("added", "starts once its dependencies are ready".into()),
                Change::Remove => ("removed", "stopped".into()),
                Change::Replace(what) if temporal => {
                    ("restarted", format!("{} changed", what.join(", ")))
                }
                Change::Replace(what) => ("changed", format!("{} changed", what.join(", "))),
                Change::Keep => ("unchanged", String::new()),
            };
            UnitChange {
                unit: unit.clone(),
                action: action.into(),
                detail,
            }
        })
        .collect();
    ReloadReport {
        applied,
        changes,
        notes: d.not_applied.clone(),
    }
}

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
        let mut new = tokio::task::spawn_blocking(move || origin.load(home))
            .await
            .map_err(|e| (Code::Internal, e.to_string()))?
            .map_err(|e| {
                let f = crate::exit::Failure::from(e);
                (f.code(), f.to_string())
            })?;
        // As `start` does: the binary resolved once, by path.
        let bin = new
            .resolve_temporal_bin()
            .map_err(|e| (Code::Binary, e.to_string()))?;
        if new.attach.is_none() {
            new.temporal_bin = Some(bin.clone());
        }
        if let Some(missing) = new.missing_programs().into_iter().next() {
            return Err((Code::Binary, missing));
        }
        let plan = Plan::of(&new, &bin, &now.policy, &crate::plan::inherited_names());
        let d = crate::plan::diff(&self.plan, &plan).map_err(|e| (Code::Config, e.0))?;
        let report = report(&d, &plan, &self.plan, !dry_run);
        if dry_run {
            return Ok(report);
        }
        tracing::info!(changes = ?report.changes.iter().filter(|c| c.action != "unchanged").map(|c| format!("{} {}", c.unit, c.action)).collect::<Vec<_>>(), "reloading the configuration");
        self.info.set(new, bin);
        let sup = &self.supervisor;
        let applied = super::apply::apply(
            &sup.binder(),
            &sup.handle,
            &d,
            &self.plan,
            &plan,
            Default::default(),
        )
        .await;
        if let Err(e) = applied {
            tracing::error!(error = %e, "reload: not every change could be applied");
        }
        self.plan = plan;
        Ok(report)
    }
}

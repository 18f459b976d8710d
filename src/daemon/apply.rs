//! One reconciliation: a start (the difference from the empty plan), a
//! reload, a watched change of the configuration and an upgrade's
//! adoption (every unit of the handed-over plan, each with its frozen
//! state) all bring the stack to a plan through [`apply`]. Units are bound
//! here, where they run: their checks' clients, their supervisor.

use super::PERSISTENCE_TIMEOUT;
use crate::exit::Failure;
use crate::health::temporal::PersistenceProbe;
use crate::metrics::Metrics;
use crate::plan::{Change, Diff, Plan, UnitSpec};
use crate::supervisor::external::Watcher;
use crate::supervisor::frozen::FrozenUnit;
use crate::supervisor::side::SideCheck;
use crate::supervisor::stack::{FirstStart, Joining, Runner, StackChange};
use crate::supervisor::unit::Unit;
use crate::supervisor::{Actor, Command, Context, Handle, Links, Observer, Observers, Outlet};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a removed unit may take to stop before a reload says so.
const REMOVE_WAIT: Duration = Duration::from_secs(60);

/// What binds a unit where it runs.
pub(super) struct Binder<'a> {
    /// Spawner, registry, logs.
    pub ctx: &'a Context,
    /// The one connection to Temporal every check uses.
    pub client: &'a crate::temporal::Client,
    /// Where units report.
    pub metrics: &'a Arc<Metrics>,
}

impl Binder<'_> {
    /// `spec`, bound.
    pub fn bind(&self, spec: &UnitSpec) -> Unit {
        Unit::bind(spec.clone(), &self.ctx.spawner, self.client)
    }

    /// A supervisor for `spec`: fresh (its first start then reported in
    /// `first`), or continuing from `frozen`.
    fn join(
        &self,
        spec: &UnitSpec,
        plan: &Plan,
        frozen: Option<FrozenUnit>,
        first: &mut Vec<FirstStart>,
    ) -> Result<Joining, Failure> {
        let mut out = Outlet::new(observer(self.metrics, spec));
        // A unit handed over in an upgrade had its first start reported
        // by the daemon that made it.
        if frozen.is_none() {
            first.push((spec.kind, out.watch_startup()));
        }
        let mismatch =
            || Failure::Internal(format!("the handover's {} is of another kind", spec.name));
        let (runner, handle) = if spec.kind.is_managed() {
            let (a, h) = Actor::new(self.bind(spec), self.ctx, out);
            let a = match frozen {
                None => a,
                Some(FrozenUnit::Managed(f)) => a.adopt(*f).map_err(|e| {
                    Failure::Internal(format!("cannot adopt {}'s process: {e}", spec.name))
                })?,
                Some(_) => return Err(mismatch()),
            };
            (Runner::Managed(Box::new(a)), h)
        } else {
            let (w, h) = Watcher::new(spec, self.client.clone(), self.ctx.registry.clone(), out);
            let w = match frozen {
                None => w,
                Some(FrozenUnit::Attached { state, snapshot }) => w.adopt(state, *snapshot),
                Some(_) => return Err(mismatch()),
            };
            (Runner::Attached(w), h)
        };
        self.metrics.watch_log(&handle.name, handle.log.clone());
        let side = plan
            .persistence
            .as_ref()
            .filter(|_| spec.kind.is_temporal())
            .map(|check| SideCheck {
                probe: PersistenceProbe {
                    client: self.client.clone(),
                    namespace: check.namespace.clone(),
                    timeout: PERSISTENCE_TIMEOUT,
                },
                every: check.interval,
                restart: check.restart,
            });
        Ok(Joining {
            runner,
            handle,
            side,
        })
    }
}

/// Bring the stack behind `handle`, running `running`, to `plan` by `d`.
/// Units the diff adds continue from `frozen` when it has their state (an
/// upgrade's adoption); every unit is bound before any joins, so a unit
/// that cannot be adopted changes nothing. Returns the first-start
/// reports of the units started fresh.
pub(super) async fn apply(
    b: &Binder<'_>,
    handle: &Handle,
    d: &Diff,
    running: &Plan,
    plan: &Plan,
    mut frozen: BTreeMap<String, FrozenUnit>,
) -> Result<Vec<FirstStart>, Failure> {
    let mut first = Vec::new();
    let mut joining = Vec::new();
    for name in d.with(|c| *c == Change::Add) {
        if let Some(spec) = plan.unit(name) {
            joining.push(b.join(spec, plan, frozen.remove(name), &mut first)?);
        }
    }
    for name in d.with(|c| *c == Change::Remove) {
        remove(handle, name).await;
    }
    if running.connection.endpoint != plan.connection.endpoint {
        b.client.grpc().retarget(plan.connection.endpoint.clone());
    }
    for j in joining {
        if handle
            .changes
            .send(StackChange::Add(Box::new(j)))
            .await
            .is_err()
        {
            return Err(Failure::Internal("the supervisor has stopped".into()));
        }
    }
    for name in d.with(|c| matches!(c, Change::Replace(_))) {
        let (Some(spec), Some(unit)) = (plan.unit(name), handle.unit(name)) else {
            continue;
        };
        handle.set_links(name, Links::of(spec));
        let _ = unit
            .commands
            .send(Command::Reconfigure(Box::new(b.bind(spec))))
            .await;
    }
    Ok(first)
}

/// Stop unit `name` and forget it; wait (bounded) until it is gone.
async fn remove(handle: &Handle, name: &str) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let asked = handle
        .changes
        .send(StackChange::Remove(name.to_string(), tx))
        .await;
    if asked.is_ok() && tokio::time::timeout(REMOVE_WAIT, rx).await.is_err() {
        tracing::warn!(unit = %name, "a removed service is still stopping");
    }
}

/// What unit `spec` reports to: its metrics, and spans when traces are on.
fn observer(metrics: &Arc<Metrics>, spec: &UnitSpec) -> Arc<dyn Observer> {
    let (name, kind) = (spec.name.as_str(), spec.kind);
    let mut observers: Vec<Arc<dyn Observer>> = vec![metrics.observer(name, kind)];
    if crate::telemetry::traces_on() {
        observers.push(Arc::new(crate::telemetry::spans::SpanObserver::new(
            name, kind,
        )));
    }
    Arc::new(Observers(observers))
}

//! The documented JSON of the status document, version 1: Temporal's
//! section (its unit's status, flattened, with how it is reached), four
//! of its fields copied at the top (as 0.1.0 wrote them), and a map of
//! services. The daemon holds [`StatusDoc`]'s one list of units; this is
//! its shape on the wire, both ways, as `pidfile.rs` does for its file.

use super::{
    ConfigSection, LiveCheck, StatusDoc, SupervisorSection, TemporalInfo, UnitEntry, UnitStatus,
};
use crate::model::{Kind, TEMPORAL};
use crate::supervisor::{Backoff, LayerStatus, Restarts};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Schema version of the document.
pub const VERSION: u32 = 1;

/// The whole document, as version 1 lays it out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Document {
    /// Schema version.
    pub version: u32,
    /// The supervising daemon.
    pub supervisor: SupervisorSection,
    /// Temporal.
    pub temporal: TemporalSection,
    /// Temporal's health layers (a copy of `temporal.health`).
    pub health: BTreeMap<String, LayerStatus>,
    /// Temporal's restarts (a copy).
    pub restarts: Restarts,
    /// Temporal's pending backoff (a copy).
    pub backoff: Option<Backoff>,
    /// Effective supervision settings.
    pub config: ConfigSection,
    /// Temporal's last error (a copy).
    pub last_error: Option<String>,
    /// Every declared service, by name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceSection>,
    /// A gRPC health check of Temporal made for this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_check: Option<LiveCheck>,
}

/// `temporal` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TemporalSection {
    /// Its status.
    #[serde(flatten)]
    pub unit: UnitStatus,
    /// Serving since (Unix ms): `ready_since_unix_ms`, by its older name.
    #[serde(default)]
    pub serving_since_unix_ms: Option<u64>,
    /// How it is reached.
    #[serde(flatten)]
    pub info: TemporalInfo,
}

/// One service of the stack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceSection {
    /// Its status.
    #[serde(flatten)]
    pub unit: UnitStatus,
    /// What it runs (credentials masked).
    pub command: Vec<String>,
    /// What it waits for.
    pub depends_on: Vec<String>,
}

impl From<StatusDoc> for Document {
    fn from(d: StatusDoc) -> Document {
        let mut temporal = None;
        let mut services = BTreeMap::new();
        for u in d.units {
            if u.kind.is_temporal() && temporal.is_none() {
                temporal = Some(u.status);
            } else {
                let section = ServiceSection {
                    unit: u.status,
                    command: u.command,
                    depends_on: u.depends_on,
                };
                services.insert(u.name, section);
            }
        }
        let unit = temporal.unwrap_or_else(|| {
            UnitStatus::build(
                &Default::default(),
                None,
                &Default::default(),
                crate::model::clock::unix_now_ms(),
            )
        });
        Document {
            version: VERSION,
            supervisor: d.supervisor,
            health: unit.health.clone(),
            restarts: unit.restarts.clone(),
            backoff: unit.backoff.clone(),
            last_error: unit.last_error.clone(),
            temporal: TemporalSection {
                serving_since_unix_ms: unit.ready_since_unix_ms,
                unit,
                info: d.temporal,
            },
            config: d.config,
            services,
            live_check: d.live_check,
        }
    }
}

impl From<Document> for StatusDoc {
    fn from(d: Document) -> StatusDoc {
        let kind = if d.temporal.info.managed {
            Kind::Temporal
        } else {
            Kind::AttachedTemporal
        };
        let mut units = vec![UnitEntry {
            name: TEMPORAL.into(),
            kind,
            status: d.temporal.unit,
            command: Vec::new(),
            depends_on: Vec::new(),
        }];
        units.extend(d.services.into_iter().map(|(name, s)| UnitEntry {
            name,
            kind: Kind::Service,
            status: s.unit,
            command: s.command,
            depends_on: s.depends_on,
        }));
        StatusDoc {
            supervisor: d.supervisor,
            temporal: d.temporal.info,
            units,
            config: d.config,
            live_check: d.live_check,
        }
    }
}

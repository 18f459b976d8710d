//! The PID file: discovery, not truth. It tells a later command *who* the
//! daemon and its Temporal are (identity, not just a pid) and *where* they
//! listen, so `stop`, `status` and `logs` need only `--home`. It is written
//! atomically (temp file + rename), never followed through a symlink, and
//! read defensively: whatever is in it, nothing is signalled unless the
//! live process matches the recorded identity.
//!
//! It is deliberately not fsynced: it describes processes that a machine
//! crash ends anyway, so after one it is stale whatever it says (and a
//! torn or empty file reads as corrupt and is ignored), and an fsync would
//! sit on the path from a crash to the respawn (docs/benchmark.md).

use crate::model::TEMPORAL;
use crate::process::Identity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Largest PID file we are willing to read.
const MAX_LEN: u64 = 64 * 1024;

/// Current format version.
pub const FORMAT_VERSION: u32 = 1;

/// Where an instance can be reached: recorded for the commands that need
/// only `--home`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addresses {
    /// Temporal's frontend gRPC address, `HOST:PORT`.
    pub frontend: String,
    /// Temporal's web UI, unless headless.
    pub ui_url: Option<String>,
    /// The daemon's HTTP server (health, status, metrics).
    pub http_addr: SocketAddr,
    /// Temporal's database file.
    pub db_file: PathBuf,
    /// The Temporal binary in use.
    pub temporal_bin: PathBuf,
}

/// What the daemon records about itself and every unit's process, by
/// the unit's name. On disk, Temporal's is under `temporal` and the
/// services' under `services` (the layout of 0.1.0, which its commands
/// and other tools read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "OnDisk", into = "OnDisk")]
pub struct PidRecord {
    /// Format version.
    pub version: u32,
    /// The supervising daemon.
    pub daemon: Identity,
    /// The current process of each unit that runs, by name.
    pub units: BTreeMap<String, Identity>,
    /// Where it is reached.
    pub at: Addresses,
    /// When the daemon started (seconds since the Unix epoch).
    pub started_at: u64,
    /// The boot it was written in (`/proc/sys/kernel/random/boot_id`): a
    /// record from another boot is stale as a whole, whatever its pids
    /// name now. Absent in records of 0.1.0.
    pub boot_id: Option<String>,
}

/// [`PidRecord`] as the file holds it.
#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    daemon: Identity,
    temporal: Option<Identity>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    services: BTreeMap<String, Identity>,
    #[serde(flatten)]
    at: Addresses,
    started_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot_id: Option<String>,
}

impl From<OnDisk> for PidRecord {
    fn from(d: OnDisk) -> PidRecord {
        let mut units = d.services;
        if let Some(t) = d.temporal {
            units.insert(TEMPORAL.to_string(), t);
        }
        PidRecord {
            version: d.version,
            daemon: d.daemon,
            units,
            at: d.at,
            started_at: d.started_at,
            boot_id: d.boot_id,
        }
    }
}

impl From<PidRecord> for OnDisk {
    fn from(mut r: PidRecord) -> OnDisk {
        OnDisk {
            version: r.version,
            daemon: r.daemon,
            temporal: r.units.remove(TEMPORAL),
            services: r.units,
            at: r.at,
            started_at: r.started_at,
            boot_id: r.boot_id,
        }
    }
}

impl PidRecord {
    /// The record of a daemon (`daemon`) reached `at`, before it has
    /// spawned anything.
    pub fn new(daemon: Identity, at: Addresses) -> PidRecord {
        PidRecord {
            version: FORMAT_VERSION,
            daemon,
            units: BTreeMap::new(),
            at,
            started_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            boot_id: crate::process::proc::boot_id(),
        }
    }

    /// Record the identity of unit `name` (`None`: none runs).
    pub fn set_unit(&mut self, name: &str, id: Option<Identity>) {
        match id {
            Some(id) => self.units.insert(name.to_string(), id),
            None => self.units.remove(name),
        };
    }

    /// Was it written in another boot of this machine? (Unknown for a
    /// record that does not say: then its identities are checked one by
    /// one.)
    pub fn from_another_boot(&self) -> bool {
        match (&self.boot_id, crate::process::proc::boot_id()) {
            (Some(then), Some(now)) => *then != now,
            _ => false,
        }
    }
}

/// What was found at the PID file path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidFile {
    /// No file.
    Absent,
    /// A well-formed record.
    Record(Box<PidRecord>),
    /// A bare number (older tools write these): a pid with no identity,
    /// which therefore can never be verified or signalled.
    BarePid(i32),
    /// Anything else: empty, garbage, truncated, oversized, a symlink.
    Corrupt(String),
}

/// Failure to write the PID file.
#[derive(Debug, thiserror::Error)]
#[error("cannot write PID file {path}: {source}")]
pub struct WriteError {
    /// The PID file path.
    pub path: PathBuf,
    /// The underlying error.
    pub source: std::io::Error,
}

/// Parse PID file text. Pure, so it can be fuzzed.
pub fn parse(text: &str) -> PidFile {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return PidFile::Corrupt("empty".into());
    }
    if let Ok(pid) = trimmed.parse::<i32>() {
        return PidFile::BarePid(pid);
    }
    match serde_json::from_str::<PidRecord>(trimmed) {
        Ok(r) if r.version != FORMAT_VERSION => {
            PidFile::Corrupt(format!("unknown format version {}", r.version))
        }
        Ok(r) => PidFile::Record(Box::new(r)),
        Err(e) => PidFile::Corrupt(format!("not a PID record: {e}")),
    }
}

/// Read the PID file at `path` without following symlinks.
pub fn read(path: &Path) -> PidFile {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return PidFile::Absent,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return PidFile::Corrupt("is a symlink (not followed)".into());
        }
        Err(e) => return PidFile::Corrupt(format!("unreadable: {e}")),
    };
    let len = match file.metadata() {
        Ok(m) if !m.is_file() => return PidFile::Corrupt("not a regular file".into()),
        Ok(m) if m.len() > MAX_LEN => {
            return PidFile::Corrupt(format!("{} bytes, larger than any PID file", m.len()));
        }
        Ok(m) => m.len(),
        Err(_) => 0,
    };
    // Sized from the start: an empty String is read in growing 32-byte
    // steps, seven reads for a record the daemon checks twice a second.
    let mut text = String::with_capacity(len as usize + 1);
    match file.take(MAX_LEN).read_to_string(&mut text) {
        Ok(_) => parse(&text),
        Err(e) => PidFile::Corrupt(format!("unreadable: {e}")),
    }
}

/// The file's bytes for `record`.
pub fn encode(record: &PidRecord) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(record).expect("a record always serializes");
    bytes.push(b'\n');
    bytes
}

/// Write `record` atomically, now: a reader sees the old file or the new
/// one, never a torn one; on error nothing half-written is left behind.
/// (The daemon's later writes go through the disk thread.)
pub fn write(path: &Path, record: &PidRecord) -> Result<(), WriteError> {
    crate::disk::replace(path, &encode(record)).map_err(|source| WriteError {
        path: path.to_path_buf(),
        source,
    })
}

/// Remove the PID file (absent is fine).
pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PidRecord {
        PidRecord {
            version: FORMAT_VERSION,
            daemon: Identity {
                pid: 10,
                pgid: 10,
                start_time: 5,
                exe: Some("/bin/stigmer".into()),
            },
            units: BTreeMap::new(),
            at: Addresses {
                frontend: "127.0.0.1:7233".parse().unwrap(),
                ui_url: Some("http://127.0.0.1:8233".into()),
                http_addr: "127.0.0.1:9233".parse().unwrap(),
                db_file: "/x/temporal.db".into(),
                temporal_bin: "/usr/bin/temporal".into(),
            },
            started_at: 1,
            boot_id: Some("b".into()),
        }
    }

    #[test]
    fn reads_the_records_of_0_1_0_and_writes_their_layout() {
        let old = include_str!("../tests/fixtures/compat-0.1.0/pidfile-v1.json");
        let PidFile::Record(r) = parse(old) else {
            panic!("0.1.0's PID file is not read")
        };
        assert!(
            r.units.contains_key(TEMPORAL) && r.units.contains_key("sleeper"),
            "{r:?}"
        );
        assert_eq!(r.boot_id, None);
        let again: serde_json::Value = serde_json::from_slice(&encode(&r)).unwrap();
        let then: serde_json::Value = serde_json::from_str(old).unwrap();
        assert_eq!(again, then, "the same layout, field for field");
    }

    #[test]
    fn round_trips_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("stigmer.pid");
        write(&p, &sample()).unwrap();
        assert_eq!(read(&p), PidFile::Record(Box::new(sample())));
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "no temp left"
        );
    }

    #[test]
    fn classifies_bad_contents() {
        assert_eq!(parse("  42\n"), PidFile::BarePid(42));
        assert!(matches!(parse(""), PidFile::Corrupt(_)));
        assert!(matches!(parse("{\"version\":1,"), PidFile::Corrupt(_)));
        assert!(matches!(parse("\u{0}\u{1}garbage"), PidFile::Corrupt(_)));
        let mut v = serde_json::to_value(sample()).unwrap();
        v["version"] = 99.into();
        assert!(matches!(parse(&v.to_string()), PidFile::Corrupt(_)));
    }

    #[test]
    fn refuses_symlink_and_huge_files() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("elsewhere");
        std::fs::write(&target, "42").unwrap();
        let p = tmp.path().join("stigmer.pid");
        std::os::unix::fs::symlink(&target, &p).unwrap();
        assert!(matches!(read(&p), PidFile::Corrupt(_)));
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, vec![b'7'; 2 * MAX_LEN as usize]).unwrap();
        assert!(matches!(read(&p), PidFile::Corrupt(_)));
    }

    #[test]
    fn write_into_missing_dir_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("nope").join("stigmer.pid");
        assert!(write(&p, &sample()).is_err());
        assert!(!p.exists());
    }
}

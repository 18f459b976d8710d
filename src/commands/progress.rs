//! Progress while a stack comes up (`start`, `reload`): each unit's phase
//! — waiting for its dependencies, building, starting, ready — with how
//! long it has been in it, asked of the daemon's control socket. On a
//! terminal, one line per unit redrawn in place (as docker compose does);
//! otherwise one plain line per change. Written to stderr: stdout keeps
//! the command's result.

use super::{Check, daemon_answer};
use crate::model::StateName;
use crate::paths::StateDir;
use crate::status::{StatusDoc, UnitStatus};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the daemon is asked.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// A unit's phase, in words.
fn phase(u: &UnitStatus, deps: &[String]) -> String {
    if u.build.as_ref().is_some_and(|b| b.state == "running") {
        return "building".into();
    }
    if let Some(o) = &u.overlap {
        return if o.role == "starting" {
            "reloading: the new process is getting ready".into()
        } else {
            "reloading: the old process is stopping".into()
        };
    }
    match u.state {
        StateName::Waiting => format!("waiting for {}", deps.join(", ")),
        StateName::Running if u.ready => "ready".into(),
        StateName::Spawning | StateName::Starting | StateName::Running => "starting".into(),
        StateName::Backoff | StateName::CrashLoop => format!(
            "restarting after {}",
            u.restarts
                .last_reason
                .as_ref()
                .map_or("a failure", |r| r.label())
        ),
        StateName::Exited if u.ready => "done".into(),
        other => other.as_str().to_string(),
    }
}

/// The live view.
pub struct Progress {
    home: StateDir,
    tty: bool,
    /// Each unit's phase and since when, in the stack's order.
    units: Vec<(String, String, Instant)>,
    drawn: usize,
    next_poll: Instant,
}

impl Progress {
    /// Progress of the instance in `home`.
    pub fn new(home: &StateDir) -> Progress {
        Progress {
            home: home.clone(),
            tty: std::io::stderr().is_terminal(),
            units: Vec::new(),
            drawn: 0,
            next_poll: Instant::now(),
        }
    }

    /// Ask the daemon (at most every [`POLL_EVERY`]) and show what changed.
    pub fn tick(&mut self) {
        if Instant::now() < self.next_poll {
            return;
        }
        self.next_poll = Instant::now() + POLL_EVERY;
        let Some(doc) = daemon_answer(&self.home, Check::Snapshot) else {
            return;
        };
        self.update(&doc);
    }

    fn update(&mut self, doc: &StatusDoc) {
        let now: Vec<(String, String)> = doc
            .units
            .iter()
            .map(|u| (u.name.clone(), phase(&u.status, &u.depends_on)))
            .collect();
        let before: BTreeMap<String, (String, Instant)> =
            self.units.drain(..).map(|(n, p, t)| (n, (p, t))).collect();
        let mut changed = Vec::new();
        for (name, p) in now {
            let since = match before.get(&name) {
                Some((old, t)) if *old == p => *t,
                _ => {
                    changed.push((name.clone(), p.clone()));
                    Instant::now()
                }
            };
            self.units.push((name, p, since));
        }
        if self.tty {
            self.draw();
        } else {
            for (name, p) in changed {
                eprintln!("{name}: {p}");
            }
        }
    }

    fn draw(&mut self) {
        let width = self.units.iter().map(|(n, ..)| n.len()).max().unwrap_or(0);
        let mut err = std::io::stderr().lock();
        if self.drawn > 0 {
            let _ = write!(err, "\x1b[{}A", self.drawn);
        }
        for (name, p, since) in &self.units {
            let mark = if p == "ready" || p == "done" {
                '✔'
            } else {
                '…'
            };
            let _ = writeln!(
                err,
                "\r\x1b[2K {mark} {name:<width$}  {p} ({:.1}s)",
                since.elapsed().as_secs_f64()
            );
        }
        self.drawn = self.units.len();
        let _ = err.flush();
    }

    /// Show the last state (ask at once), then take the live view away.
    pub fn finish(&mut self) {
        self.next_poll = Instant::now();
        self.tick();
        self.clear();
    }

    /// Take the live view away (before the result is printed).
    pub fn clear(&mut self) {
        if self.tty && self.drawn > 0 {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\x1b[{}A", self.drawn);
            for _ in 0..self.drawn {
                let _ = writeln!(err, "\r\x1b[2K");
            }
            let _ = write!(err, "\x1b[{}A", self.drawn);
            let _ = err.flush();
            self.drawn = 0;
        }
    }

    /// Print `line` above the live view.
    pub fn note(&mut self, line: &str) {
        self.clear();
        eprintln!("{line}");
    }
}

//! runit's `runsv` on one service directory whose `run` script execs the
//! Temporal command; controlled with `sv` (Debian package `runit`). The
//! harness runs `runsv` directly (what `runsvdir` would do per service).

use super::{Contender, Env, ServiceDir, quiet};
use crate::harness::sys;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// runsv + sv.
pub struct Runit {
    dir: ServiceDir,
    runsv: PathBuf,
    sv: PathBuf,
}

impl Runit {
    /// New, not started; `Err` when runit is not installed.
    pub fn new(env: &Env) -> Result<Self, String> {
        let runsv = sys::resolve("runsv").ok_or("runsv not found (apt-get install runit)")?;
        let sv = sys::resolve("sv").ok_or("sv not found (apt-get install runit)")?;
        Ok(Runit {
            dir: ServiceDir::new(env, "runit"),
            runsv,
            sv,
        })
    }

    fn sv(&self, what: &str) -> Command {
        let mut c = quiet(&self.sv);
        c.arg(what).arg(&self.dir.svc);
        c
    }
}

impl Contender for Runit {
    fn name(&self) -> &'static str {
        "runit"
    }

    fn describe(&self) -> String {
        format!(
            "runit {} `runsv` (run script: `#!/bin/sh` + `exec temporal …`), `sv`",
            super::deb_version("runit")
        )
    }

    fn launch(&mut self) -> Result<(), String> {
        self.teardown();
        self.dir.launch(&self.runsv)
    }

    fn current_child(&self) -> Option<i32> {
        super::live_child(self.dir.pid())
    }

    fn start_cmd(&self) -> Option<Command> {
        Some(self.sv("up"))
    }

    fn status_cmd(&self) -> Option<Command> {
        Some(self.sv("status"))
    }

    fn stop(&mut self) -> Result<(), String> {
        // `sv down` returns at once; the harness waits for the process.
        sys::run_timed(self.sv("down"), Duration::from_secs(30)).map(|_| ())
    }

    fn supervisor_pids(&self) -> Vec<i32> {
        self.dir.pid().into_iter().collect()
    }

    fn teardown(&mut self) {
        // `sv exit`: TERM + CONT to the service, then runsv exits.
        let exit = self.sv("exit");
        self.dir.teardown(exit);
    }
}

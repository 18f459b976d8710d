//! daemontools' `supervise` on one service directory whose `run` script
//! execs the Temporal command; controlled with `svc`, read with `svstat`
//! (Debian package `daemontools`). The harness runs `supervise` directly
//! (what `svscan` would do per service).

use super::{Contender, Env, ServiceDir, quiet};
use crate::harness::sys;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// supervise + svc.
pub struct Daemontools {
    dir: ServiceDir,
    supervise: PathBuf,
    svc_bin: PathBuf,
    svstat: PathBuf,
}

impl Daemontools {
    /// New, not started; `Err` when daemontools is not installed.
    pub fn new(env: &Env) -> Result<Self, String> {
        let missing = |t: &str| format!("{t} not found (apt-get install daemontools)");
        let supervise = sys::resolve("supervise").ok_or_else(|| missing("supervise"))?;
        let svc_bin = sys::resolve("svc").ok_or_else(|| missing("svc"))?;
        let svstat = sys::resolve("svstat").ok_or_else(|| missing("svstat"))?;
        Ok(Daemontools {
            dir: ServiceDir::new(env, "daemontools"),
            supervise,
            svc_bin,
            svstat,
        })
    }

    fn svc(&self, flag: &str) -> Command {
        let mut c = quiet(&self.svc_bin);
        c.arg(flag).arg(&self.dir.svc);
        c
    }
}

impl Contender for Daemontools {
    fn name(&self) -> &'static str {
        "daemontools"
    }

    fn describe(&self) -> String {
        format!(
            "daemontools {} `supervise` (run script: `#!/bin/sh` + `exec temporal …`), `svc`",
            super::deb_version("daemontools")
        )
    }

    fn launch(&mut self) -> Result<(), String> {
        self.teardown();
        self.dir.launch(&self.supervise)
    }

    fn current_child(&self) -> Option<i32> {
        super::live_child(self.dir.pid())
    }

    fn start_cmd(&self) -> Option<Command> {
        Some(self.svc("-u"))
    }

    fn status_cmd(&self) -> Option<Command> {
        let mut c = quiet(&self.svstat);
        c.arg(&self.dir.svc);
        Some(c)
    }

    fn stop(&mut self) -> Result<(), String> {
        // `svc -d` returns at once; the harness waits for the process.
        sys::run_timed(self.svc("-d"), Duration::from_secs(30)).map(|_| ())
    }

    fn supervisor_pids(&self) -> Vec<i32> {
        self.dir.pid().into_iter().collect()
    }

    fn teardown(&mut self) {
        // -d: TERM + CONT to the service; -x: exit once it is down.
        let exit = self.svc("-dx");
        self.dir.teardown(exit);
    }
}

//! s6's `s6-supervise` on one service directory whose `run` script execs
//! the Temporal command; controlled with `s6-svc`, read with `s6-svstat`
//! (Debian package `s6`). The harness runs `s6-supervise` directly (what
//! `s6-svscan` would do per service). No readiness notification: Temporal
//! cannot write to a notification fd.

use super::{Contender, Env, ServiceDir, quiet};
use crate::harness::sys;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// s6-supervise + s6-svc.
pub struct S6 {
    dir: ServiceDir,
    supervise: PathBuf,
    svc_bin: PathBuf,
    svstat: PathBuf,
}

impl S6 {
    /// New, not started; `Err` when s6 is not installed.
    pub fn new(env: &Env) -> Result<Self, String> {
        let missing = |t: &str| format!("{t} not found (apt-get install s6)");
        let supervise = sys::resolve("s6-supervise").ok_or_else(|| missing("s6-supervise"))?;
        let svc_bin = sys::resolve("s6-svc").ok_or_else(|| missing("s6-svc"))?;
        let svstat = sys::resolve("s6-svstat").ok_or_else(|| missing("s6-svstat"))?;
        Ok(S6 {
            dir: ServiceDir::new(env, "s6"),
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

impl Contender for S6 {
    fn name(&self) -> &'static str {
        "s6"
    }

    fn describe(&self) -> String {
        format!(
            "s6 {} `s6-supervise` (run script: `#!/bin/sh` + `exec temporal …`), `s6-svc`",
            super::deb_version("s6")
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
        // `s6-svc -d` returns at once; the harness waits for the process.
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

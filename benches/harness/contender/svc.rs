//! The daemontools family: daemontools' `supervise`, and s6's
//! `s6-supervise` (a reimplementation with the same interface), on one
//! service directory whose `run` script execs the Temporal command;
//! controlled with `svc` / `s6-svc` (`-u`, `-d`, `-dx`), read with
//! `svstat` / `s6-svstat` (Debian packages `daemontools`, `s6`). The
//! harness runs the supervise program directly (what `svscan` /
//! `s6-svscan` would do per service). No readiness notification: Temporal
//! cannot write to a notification fd.

use super::{Contender, Env, ServiceDir, quiet};
use crate::harness::sys;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// One member of the family: its programs and package.
pub struct Tools {
    name: &'static str,
    package: &'static str,
    supervise: &'static str,
    svc: &'static str,
    svstat: &'static str,
}

/// s6.
pub const S6: Tools = Tools {
    name: "s6",
    package: "s6",
    supervise: "s6-supervise",
    svc: "s6-svc",
    svstat: "s6-svstat",
};

/// daemontools.
pub const DAEMONTOOLS: Tools = Tools {
    name: "daemontools",
    package: "daemontools",
    supervise: "supervise",
    svc: "svc",
    svstat: "svstat",
};

/// supervise + svc, of one member.
pub struct Svc {
    tools: &'static Tools,
    dir: ServiceDir,
    supervise: PathBuf,
    svc_bin: PathBuf,
    svstat: PathBuf,
}

impl Svc {
    /// New, not started; `Err` when the member is not installed.
    pub fn new(env: &Env, tools: &'static Tools) -> Result<Self, String> {
        let find = |t: &str| {
            sys::resolve(t)
                .ok_or_else(|| format!("{t} not found (apt-get install {})", tools.package))
        };
        Ok(Svc {
            tools,
            dir: ServiceDir::new(env, tools.name),
            supervise: find(tools.supervise)?,
            svc_bin: find(tools.svc)?,
            svstat: find(tools.svstat)?,
        })
    }

    fn svc(&self, flag: &str) -> Command {
        let mut c = quiet(&self.svc_bin);
        c.arg(flag).arg(&self.dir.svc);
        c
    }
}

impl Contender for Svc {
    fn name(&self) -> &'static str {
        self.tools.name
    }

    fn describe(&self) -> String {
        format!(
            "{} {} `{}` (run script: `#!/bin/sh` + `exec temporal …`), `{}`",
            self.tools.name,
            super::deb_version(self.tools.package),
            self.tools.supervise,
            self.tools.svc
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
        // `-d` returns at once; the harness waits for the process.
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

//! s6's `s6-supervise` on one service directory whose `run` script execs
//! the Temporal command; controlled with `s6-svc`, read with `s6-svstat`
//! (Debian package `s6`). The harness runs `s6-supervise` directly (what
//! `s6-svscan` would do per service). No readiness notification: Temporal
//! cannot write to a notification fd.

use super::{Contender, Env, logged, quiet};
use crate::harness::sys;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

/// s6-supervise + s6-svc.
pub struct S6 {
    env: Env,
    svc: PathBuf,
    supervise: PathBuf,
    svc_bin: PathBuf,
    svstat: PathBuf,
    child: Option<Child>,
}

impl S6 {
    /// New, not started; `Err` when s6 is not installed.
    pub fn new(env: &Env) -> Result<Self, String> {
        let missing = |t: &str| format!("{t} not found (apt-get install s6)");
        let supervise = sys::resolve("s6-supervise").ok_or_else(|| missing("s6-supervise"))?;
        let svc_bin = sys::resolve("s6-svc").ok_or_else(|| missing("s6-svc"))?;
        let svstat = sys::resolve("s6-svstat").ok_or_else(|| missing("s6-svstat"))?;
        let svc = env.dir("s6").join("temporal");
        Ok(S6 {
            env: env.clone(),
            svc,
            supervise,
            svc_bin,
            svstat,
            child: None,
        })
    }

    fn svc(&self, flag: &str) -> Command {
        let mut c = quiet(&self.svc_bin);
        c.arg(flag).arg(&self.svc);
        c
    }

    fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
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
        let _ = std::fs::remove_dir_all(&self.svc);
        std::fs::create_dir_all(&self.svc).map_err(|e| e.to_string())?;
        let log = self.svc.parent().unwrap().join("temporal.log");
        super::write_run_script(&self.svc, &self.env.run_script(&log));
        let mut c = logged(
            &self.supervise,
            &self.svc.parent().unwrap().join("s6-supervise.log"),
        );
        c.arg(&self.svc).process_group(0);
        self.child = Some(c.spawn().map_err(|e| format!("spawn s6-supervise: {e}"))?);
        Ok(())
    }

    fn current_child(&self) -> Option<i32> {
        super::live_child(self.pid())
    }

    fn start_cmd(&self) -> Option<Command> {
        Some(self.svc("-u"))
    }

    fn status_cmd(&self) -> Option<Command> {
        let mut c = quiet(&self.svstat);
        c.arg(&self.svc);
        Some(c)
    }

    fn stop(&mut self) -> Result<(), String> {
        // `s6-svc -d` returns at once; the harness waits for the process.
        sys::run_timed(self.svc("-d"), Duration::from_secs(30)).map(|_| ())
    }

    fn supervisor_pids(&self) -> Vec<i32> {
        self.pid().into_iter().collect()
    }

    fn teardown(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id() as i32;
            // -d: TERM + CONT to the service; -x: exit once it is down.
            let _ = sys::run_timed(self.svc("-dx"), Duration::from_secs(10));
            if !super::wait_exit(pid, Duration::from_secs(15)) {
                sys::signal(pid, libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }
}

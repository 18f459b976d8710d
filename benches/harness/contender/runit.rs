//! runit's `runsv` on one service directory whose `run` script execs the
//! Temporal command; controlled with `sv` (Debian package `runit`). The
//! harness runs `runsv` directly (what `runsvdir` would do per service).

use super::{Contender, Env, logged, quiet};
use crate::harness::sys;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

/// runsv + sv.
pub struct Runit {
    env: Env,
    svc: PathBuf,
    runsv: PathBuf,
    sv: PathBuf,
    child: Option<Child>,
}

impl Runit {
    /// New, not started; `Err` when runit is not installed.
    pub fn new(env: &Env) -> Result<Self, String> {
        let runsv = sys::resolve("runsv").ok_or("runsv not found (apt-get install runit)")?;
        let sv = sys::resolve("sv").ok_or("sv not found (apt-get install runit)")?;
        let svc = env.dir("runit").join("temporal");
        Ok(Runit {
            env: env.clone(),
            svc,
            runsv,
            sv,
            child: None,
        })
    }

    fn sv(&self, what: &str) -> Command {
        let mut c = quiet(&self.sv);
        c.arg(what).arg(&self.svc);
        c
    }

    fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
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
        let _ = std::fs::remove_dir_all(&self.svc);
        std::fs::create_dir_all(&self.svc).map_err(|e| e.to_string())?;
        let log = self.svc.parent().unwrap().join("temporal.log");
        super::write_run_script(&self.svc, &self.env.run_script(&log));
        let mut c = logged(&self.runsv, &self.svc.parent().unwrap().join("runsv.log"));
        c.arg(&self.svc).process_group(0);
        self.child = Some(c.spawn().map_err(|e| format!("spawn runsv: {e}"))?);
        Ok(())
    }

    fn current_child(&self) -> Option<i32> {
        super::live_child(self.pid())
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
        self.pid().into_iter().collect()
    }

    fn teardown(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id() as i32;
            // `sv exit`: TERM + CONT to the service, then runsv exits.
            let _ = sys::run_timed(self.sv("exit"), Duration::from_secs(10));
            if !super::wait_exit(pid, Duration::from_secs(15)) {
                sys::signal(pid, libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }
}

//! The floor: bare Temporal, spawned by the harness itself in its own
//! process group; after a SIGKILL the harness reaps it and respawns the
//! same command at once. Nothing supervises, so nothing can be faster.

use super::{Contender, Env, logged};
use crate::harness::sys;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

/// Bare Temporal, restarted by hand.
pub struct Floor {
    env: Env,
    log: PathBuf,
    child: Option<Child>,
}

impl Floor {
    /// New, not started.
    pub fn new(env: &Env) -> Self {
        let dir = env.dir("floor");
        Floor {
            env: env.clone(),
            log: dir.join("temporal.log"),
            child: None,
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut c = logged(&self.env.temporal, &self.log);
        c.args(self.env.temporal_args()).process_group(0);
        self.child = Some(c.spawn().map_err(|e| format!("spawn temporal: {e}"))?);
        Ok(())
    }

    fn reap(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

impl Contender for Floor {
    fn name(&self) -> &'static str {
        "floor"
    }

    fn describe(&self) -> String {
        "bare Temporal; the harness waits for its exit and respawns it at once".into()
    }

    fn supervised(&self) -> bool {
        false
    }

    fn launch(&mut self) -> Result<(), String> {
        self.reap();
        self.spawn()
    }

    fn current_child(&self) -> Option<i32> {
        let pid = self.child.as_ref()?.id() as i32;
        sys::alive(pid).then_some(pid)
    }

    fn after_kill(&mut self, _old: i32) -> Result<(), String> {
        // waitpid returns once the whole thread group is gone.
        self.reap();
        self.spawn()
    }

    fn start_cmd(&self) -> Option<std::process::Command> {
        None
    }

    fn status_cmd(&self) -> Option<std::process::Command> {
        None
    }

    fn stop(&mut self) -> Result<(), String> {
        let pid = self.child.as_ref().ok_or("not running")?.id() as i32;
        sys::signal(-pid, libc::SIGTERM);
        sys::signal(-pid, libc::SIGCONT);
        Ok(())
    }

    fn supervisor_pids(&self) -> Vec<i32> {
        Vec::new()
    }

    fn teardown(&mut self) {
        if let Some(c) = self.child.as_ref() {
            let pid = c.id() as i32;
            sys::signal(-pid, libc::SIGTERM);
            sys::signal(-pid, libc::SIGCONT);
            if !super::wait_exit(pid, Duration::from_secs(10)) {
                sys::signal(-pid, libc::SIGKILL);
            }
        }
        self.reap();
    }
}

//! supervisord (`pip install supervisor`), in the foreground (`-n`) as the
//! harness's child, `autorestart=true`, `startsecs=0`,
//! `stopasgroup=true`, `killasgroup=true`; controlled with `supervisorctl`
//! over its unix socket.

use super::{Contender, Env, logged, quiet};
use crate::harness::sys;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

/// supervisord + supervisorctl.
pub struct Supervisord {
    env: Env,
    dir: PathBuf,
    conf: PathBuf,
    supervisord: PathBuf,
    supervisorctl: PathBuf,
    child: Option<Child>,
}

impl Supervisord {
    /// New, not started; `Err` when the tools are not installed.
    pub fn new(env: &Env) -> Result<Self, String> {
        let supervisord =
            sys::resolve("supervisord").ok_or("supervisord not found (pip install supervisor)")?;
        let supervisorctl = sys::resolve("supervisorctl")
            .ok_or("supervisorctl not found (pip install supervisor)")?;
        let dir = env.dir("supervisord");
        Ok(Supervisord {
            env: env.clone(),
            conf: dir.join("supervisord.conf"),
            dir,
            supervisord,
            supervisorctl,
            child: None,
        })
    }

    fn write_conf(&self) {
        let d = self.dir.display();
        let conf = format!(
            "[unix_http_server]\nfile={d}/supervisor.sock\n\n\
             [supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\n\
             pidfile={d}/supervisord.pid\nchildlogdir={d}\n\n\
             [rpcinterface:supervisor]\n\
             supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
             [supervisorctl]\nserverurl=unix://{d}/supervisor.sock\n\n\
             [program:temporal]\ncommand={cmd}\nautostart=true\nautorestart=true\n\
             startsecs=0\nstopasgroup=true\nkillasgroup=true\n\
             stdout_logfile={d}/temporal.log\nredirect_stderr=true\n",
            cmd = self.env.temporal_command_line()
        );
        std::fs::write(&self.conf, conf).expect("write supervisord.conf");
    }

    fn ctl(&self, what: &[&str]) -> Command {
        let mut c = quiet(&self.supervisorctl);
        c.arg("-c").arg(&self.conf).args(what);
        c
    }

    fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }
}

impl Contender for Supervisord {
    fn name(&self) -> &'static str {
        "supervisord"
    }

    fn describe(&self) -> String {
        format!(
            "supervisord {} (`-n`, autorestart=true, startsecs=0, stopasgroup/killasgroup=true)",
            super::version_of(&self.supervisord, "--version")
        )
    }

    fn launch(&mut self) -> Result<(), String> {
        self.teardown();
        for f in ["supervisor.sock", "supervisord.pid"] {
            sys::remove(&self.dir.join(f));
        }
        self.write_conf();
        let mut c = logged(&self.supervisord, &self.dir.join("stdout.log"));
        c.arg("-n").arg("-c").arg(&self.conf).process_group(0);
        self.child = Some(c.spawn().map_err(|e| format!("spawn supervisord: {e}"))?);
        Ok(())
    }

    fn current_child(&self) -> Option<i32> {
        super::live_child(self.pid())
    }

    fn start_cmd(&self) -> Option<Command> {
        Some(self.ctl(&["start", "temporal"]))
    }

    fn status_cmd(&self) -> Option<Command> {
        Some(self.ctl(&["status", "temporal"]))
    }

    fn stop(&mut self) -> Result<(), String> {
        // `supervisorctl stop` returns once supervisord saw the exit.
        sys::run_timed(self.ctl(&["stop", "temporal"]), Duration::from_secs(60)).map(|_| ())
    }

    fn supervisor_pids(&self) -> Vec<i32> {
        self.pid().into_iter().collect()
    }

    fn teardown(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id() as i32;
            // SIGTERM: supervisord stops its programs (as a group), then exits.
            sys::signal(pid, libc::SIGTERM);
            if !super::wait_exit(pid, Duration::from_secs(15)) {
                sys::signal(pid, libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }
}

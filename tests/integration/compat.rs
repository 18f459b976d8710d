//! Issue #21: compatible across the protocol change. A daemon of the
//! previous release (0.1.0, built from its commit by
//! scripts/build-previous.sh) is driven by this CLI, and upgraded to this
//! binary by either CLI, without Temporal or a service restarting.

use crate::common::*;
use nix::sys::signal::Signal;

impl TestHome {
    /// Start with 0.1.0.
    fn start_previous(&self) {
        let args = self.start_args();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(self.cmd_of(&previous_bin(), &refs));
        assert_eq!(out.status.code(), Some(0), "0.1.0 starts: {}", text(&out));
    }

    fn daemon_exe_now(&self) -> Option<std::path::PathBuf> {
        std::fs::read_link(format!("/proc/{}/exe", self.daemon_pid()?)).ok()
    }
}

fn a_service(h: &TestHome) {
    h.write_config("[services.sleeper]\ncommand = ['sleep', '3600']\ndepends_on = ['temporal']\n");
}

#[test]
fn this_cli_drives_a_daemon_of_the_previous_release() {
    let h = TestHome::new();
    a_service(&h);
    h.start_previous();
    let temporal = h.serving_pid().expect("this CLI reads 0.1.0's status");
    let (code, doc) = h.status_json();
    assert_eq!(code, Some(0), "{doc}");
    assert_eq!(doc["supervisor"]["version"], "0.1.0");
    let out = run(h.cmd(&["local", "status"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("stigmer local upgrade"),
        "{}",
        text(&out)
    );
    // Idempotent start against it: already running.
    let out = h.start();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("already running"), "{}", text(&out));
    // Restart a unit through 0.1.0's text protocol.
    let sleeper = h.ready_service_pid("sleeper").unwrap();
    let out = run(h.cmd(&["local", "restart", "sleeper"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_ne!(h.ready_service_pid("sleeper"), Some(sleeper));
    let out = run(h.cmd(&["local", "restart"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_ne!(h.serving_pid(), Some(temporal), "Temporal restarted");
    let out = run(h.cmd(&["local", "logs", "-n", "1"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = h.stop();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    h.assert_nothing_left();
}

#[test]
fn the_previous_release_upgrades_to_this_one_and_this_cli_upgrades_it_too() {
    for by_this_cli in [false, true] {
        let h = TestHome::new();
        a_service(&h);
        h.start_previous();
        let temporal = h.serving_pid().unwrap();
        let sleeper = h.ready_service_pid("sleeper").unwrap();
        let daemon = h.daemon_pid().unwrap();
        let new = stigmer_bin();
        let out = if by_this_cli {
            run(h.cmd(&["local", "upgrade"]))
        } else {
            let binary = new.display().to_string();
            run(h.cmd_of(&previous_bin(), &["local", "upgrade", "--binary", &binary]))
        };
        assert_eq!(out.status.code(), Some(0), "{by_this_cli}: {}", text(&out));
        assert!(text(&out).contains("from stigmer 0.1.0"), "{}", text(&out));
        assert_eq!(h.daemon_pid(), Some(daemon), "the same daemon");
        assert_eq!(h.daemon_exe_now(), Some(new.clone()), "now this binary");
        assert_eq!(h.serving_pid(), Some(temporal), "Temporal kept running");
        assert_eq!(
            h.ready_service_pid("sleeper"),
            Some(sleeper),
            "so did the service"
        );
        let (_, doc) = h.status_json();
        assert_eq!(doc["supervisor"]["version"], env!("CARGO_PKG_VERSION"));
        // Still supervised.
        signal(temporal, Signal::SIGKILL);
        h.wait_serving_new_pid(temporal);
        let out = h.stop();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        h.assert_nothing_left();
    }
}

//! Issue #11: Temporal's own start-dev options pass through (flag and
//! environment), survive every respawn, and bad values are refused before
//! anything starts.

use crate::common::*;
use nix::sys::signal::Signal;
use stigmer::process::proc;

/// Temporal's command line, as the kernel has it.
fn cmdline(pid: i32) -> String {
    proc::cmdline(pid).join(" ")
}

#[test]
fn temporal_options_pass_through_and_survive_a_respawn() {
    let h = TestHome::new();
    let mut cmd = h.start_cmd(&[
        "--namespace",
        "orders",
        "--search-attribute",
        "CustomerId=Keyword",
        "--dynamic-config-value",
        "frontend.enableUpdateWorkflowExecution=true",
    ]);
    // The environment form of a repeatable option, merged with the flags.
    cmd.env("STIGMER_SQLITE_PRAGMA", "synchronous=normal");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let ns = h.temporal(&["operator", "namespace", "describe", "--namespace", "orders"]);
    assert!(ns.status.success(), "namespace created: {}", text(&ns));
    let sa = h.temporal(&["operator", "search-attribute", "list"]);
    let listed = String::from_utf8_lossy(&sa.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.contains("CustomerId") && l.contains("Keyword")),
        "search attribute registered: {}",
        text(&sa)
    );

    let first = h.serving_pid().unwrap();
    let want = [
        "--namespace orders",
        "--search-attribute CustomerId=Keyword",
        "--dynamic-config-value frontend.enableUpdateWorkflowExecution=true",
        "--sqlite-pragma synchronous=normal",
    ];
    for w in want {
        assert!(cmdline(first).contains(w), "{w} in {}", cmdline(first));
    }
    signal(first, Signal::SIGKILL);
    let second = h.wait_serving_new_pid(first);
    for w in want {
        assert!(
            cmdline(second).contains(w),
            "respawned with {w}: {}",
            cmdline(second)
        );
    }
    let ns = h.temporal(&["operator", "namespace", "describe", "--namespace", "orders"]);
    assert!(ns.status.success(), "{}", text(&ns));
}

#[test]
fn bad_temporal_option_values_are_refused_before_anything_starts() {
    let h = TestHome::new();
    for (flag, value) in [
        ("--search-attribute", "CustomerId=Float"),
        ("--search-attribute", "no-type"),
        ("--dynamic-config-value", "limit.x=not json"),
        ("--sqlite-pragma", "jounral_mode=wal"),
        ("--namespace", "has space"),
        ("--temporal-log-level", "loud"),
    ] {
        let out = run(h.start_cmd(&[flag, value]));
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(flag),
            "names {flag}: {}",
            text(&out)
        );
        assert!(!h.home().exists(), "{flag}: nothing created");
    }
    // The same check on the environment form.
    let mut cmd = h.start_cmd(&[]);
    cmd.env("STIGMER_SEARCH_ATTRIBUTE", "Bad Key=Text");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--search-attribute"));
    assert!(h.processes().is_empty());
}

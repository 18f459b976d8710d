//! Issue #13: where people look besides the page — systemd's notification
//! protocol under `--foreground`, shell completions and man pages.

use crate::common::*;
use nix::sys::signal::Signal;
use std::os::unix::net::UnixDatagram;
use std::process::Command;

/// Every datagram waiting on `sock`, split into its lines.
fn drain(sock: &UnixDatagram, into: &mut Vec<String>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        into.extend(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .map(str::to_string),
        );
    }
}

#[test]
fn foreground_speaks_systemds_notify_protocol() {
    let h = TestHome::new();
    let wrapper = h.gated_wrapper();
    let path = h.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_nonblocking(true).unwrap();
    let mut args = h.start_args();
    args.extend([
        "--foreground".into(),
        "--temporal-bin".into(),
        wrapper.display().to_string(),
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut daemon = h
        .cmd(&refs)
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut got = Vec::new();
    // Temporal held at its gate: the daemon talks, but is not ready.
    wait_until("a STATUS= line while Temporal starts", || {
        drain(&sock, &mut got);
        h.status_json().1["temporal"]["state"] == "starting"
            && got.iter().any(|l| l.starts_with("STATUS="))
    });
    assert!(
        !got.iter().any(|l| l == "READY=1"),
        "not ready yet: {got:?}"
    );
    std::fs::write(h.dir.path().join("go1"), "").unwrap();
    wait_until("READY=1", || {
        drain(&sock, &mut got);
        got.iter().any(|l| l == "READY=1")
    });
    // Ready means Temporal's gRPC health answers SERVING.
    let health = h.temporal(&["operator", "cluster", "health"]);
    assert!(
        String::from_utf8_lossy(&health.stdout).contains("SERVING"),
        "{}",
        text(&health)
    );
    // The protocol is the daemon's: Temporal does not get its variables.
    let temporal = h.serving_pid().unwrap();
    let env = stigmer::process::proc::environ(temporal);
    assert!(
        !env.contains_key(std::ffi::OsStr::new("NOTIFY_SOCKET"))
            && !env.contains_key(std::ffi::OsStr::new("WATCHDOG_USEC")),
        "{env:?}"
    );
    wait_until("watchdog pings", || {
        drain(&sock, &mut got);
        got.iter().filter(|l| *l == "WATCHDOG=1").count() >= 2
    });
    signal(daemon.id() as i32, Signal::SIGTERM);
    wait_until("STOPPING=1", || {
        drain(&sock, &mut got);
        got.iter().any(|l| l == "STOPPING=1")
    });
    let status = daemon.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{got:?}");
    h.assert_nothing_left();
}

fn completions(shell: &str) -> String {
    let out = run({
        let mut c = Command::new(stigmer_bin());
        c.args(["completions", shell]);
        c
    });
    assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn shells_complete_local_and_its_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    // bash: the generated function, called as bash calls it.
    let bash = dir.path().join("stigmer.bash");
    std::fs::write(&bash, completions("bash")).unwrap();
    let out = run({
        let mut c = Command::new("bash");
        c.arg("-c").arg(format!(
            "source {}; COMP_WORDS=(stigmer local st); COMP_CWORD=2; \
             COMP_LINE='stigmer local st'; COMP_POINT=${{#COMP_LINE}}; \
             _stigmer stigmer st local; echo \"${{COMPREPLY[@]}}\"; \
             COMP_WORDS=(stigmer lo); COMP_CWORD=1; _stigmer stigmer lo stigmer; echo \"${{COMPREPLY[@]}}\"",
            bash.display()
        ));
        c
    });
    let said = String::from_utf8_lossy(&out.stdout);
    let mut lines = said.lines();
    let subs = lines.next().unwrap_or_default();
    for sub in ["start", "stop", "status"] {
        assert!(
            subs.split_whitespace().any(|w| w == sub),
            "bash: {sub} in {said:?}"
        );
    }
    assert_eq!(
        lines.next(),
        Some("local"),
        "bash completes local: {said:?}"
    );

    // fish: its own completion engine on the generated script.
    let fish = dir.path().join("stigmer.fish");
    std::fs::write(&fish, completions("fish")).unwrap();
    let out = run({
        let mut c = Command::new("fish");
        c.arg("-c").arg(format!(
            "source {}; complete -C 'stigmer local '; complete -C 'stigmer l'",
            fish.display()
        ));
        c
    });
    let said = String::from_utf8_lossy(&out.stdout);
    for word in [
        "start\t",
        "stop\t",
        "status\t",
        "restart\t",
        "logs\t",
        "config\t",
        "local\t",
    ] {
        assert!(said.contains(word), "fish: {word:?} in {said}");
    }

    // zsh: valid zsh that declares local and each of its subcommands.
    let zsh = completions("zsh");
    let file = dir.path().join("_stigmer");
    std::fs::write(&file, &zsh).unwrap();
    let out = run({
        let mut c = Command::new("zsh");
        c.arg("-n").arg(&file);
        c
    });
    assert_eq!(out.status.code(), Some(0), "zsh -n: {}", text(&out));
    for sub in [
        "'local:",
        "'start:",
        "'stop:",
        "'status:",
        "'restart:",
        "'logs:",
        "'config:",
    ] {
        assert!(zsh.contains(sub), "zsh: {sub}");
    }
}

#[test]
fn man_pages_are_written_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = run({
        let mut c = Command::new(stigmer_bin());
        c.args(["man", "--dir"]).arg(dir.path());
        c
    });
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for page in [
        "stigmer.1",
        "stigmer-local.1",
        "stigmer-local-start.1",
        "stigmer-local-config.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH"), "{page} is a man page");
    }
    let start = std::fs::read_to_string(dir.path().join("stigmer-local-start.1")).unwrap();
    assert!(start.contains("namespace") && start.contains("foreground"));
}

//! Issue #13: the status page in a real headless Chromium (Debian's
//! chromium and chromium-driver, driven by selenium from
//! tests/assets/page_check.py): it shows Temporal's pid and state, the new
//! pid and the restart within 2 s of /status after a SIGKILL without a
//! reload, fits 360 px, has a dark theme, and says so when the daemon is
//! gone.

use crate::common::*;
use std::os::unix::process::CommandExt;
use std::process::Command;

#[test]
fn the_status_page_follows_a_crash_and_the_daemon_going_away() {
    let h = TestHome::new();
    let port = free_port();
    h.write_config(&format!(
        "[services.api]\ncommand = ['python3', {script:?}, '{port}', {marker:?}]\n\
         depends_on = ['temporal']\nready = {{ http = 'http://127.0.0.1:{port}/healthz' }}\n",
        script = asset("http_service.py").display().to_string(),
        marker = h.dir.path().display().to_string(),
    ));
    h.start_ok();
    let shot = h.dir.path().join("status-page.png");
    let mut c = Command::new("python3");
    c.arg(asset("page_check.py"))
        .arg(format!("http://127.0.0.1:{}", h.http_port))
        .arg(stigmer_bin())
        .arg(h.home())
        .arg(&shot)
        // Its own group, so the browser goes with it whatever happens.
        .process_group(0);
    let out = run_group(c);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let size = std::fs::metadata(&shot).map_or(0, |m| m.len());
    assert!(size > 1000, "a screenshot was saved ({size} bytes)");
    h.assert_nothing_left();
}

//! Issue #12: the configuration file. Bad files are refused before anything
//! starts, with one message naming the file and line or the service and
//! key, exit 11, and nothing left; `config` prints the merged
//! configuration and checks it like start; flag > env > file > default.

use crate::common::*;

#[test]
fn every_class_of_bad_config_is_refused_with_its_place_named() {
    let h = TestHome::new();
    let svc = |body: &str| format!("[services.api]\ncommand = ['sleep', '60']\n{body}");
    let temporal_port = format!("port {}", h.port);
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("TOML syntax", "[temporal\nport = 1\n".into(), vec!["line 1"]),
        (
            "unknown [temporal] key",
            "[temporal]\nheadles = true\n".into(),
            vec!["line 2", "headles"],
        ),
        (
            "unknown service key",
            svc("restrat = 'always'\n"),
            vec!["line 3", "restrat"],
        ),
        (
            "empty command",
            "[services.api]\ncommand = []\n".into(),
            vec!["[services.api]", "command"],
        ),
        (
            "unknown depends_on",
            svc("depends_on = ['ghost']\n"),
            vec!["[services.api]", "depends_on", "ghost"],
        ),
        (
            "dependency cycle",
            "[services.a]\ncommand = ['x']\ndepends_on = ['b']\n[services.b]\ncommand = ['x']\ndepends_on = ['a']\n".into(),
            vec!["cycle", "a -> b -> a"],
        ),
        (
            "invalid regex",
            svc("ready = { log = '(unclosed' }\n"),
            vec!["[services.api]", "ready", "regex"],
        ),
        (
            "invalid URL",
            svc("ready = { http = 'localhost:80/healthz' }\n"),
            vec!["[services.api]", "http"],
        ),
        (
            "a service on Temporal's port",
            svc(&format!("ready = {{ tcp = '127.0.0.1:{}' }}\n", h.port)),
            vec!["[services.api]", &temporal_port, "Temporal frontend"],
        ),
        (
            "two services on one port",
            format!(
                "{}[services.web]\ncommand = ['x']\nready = {{ tcp = '127.0.0.1:17999' }}\n",
                svc("ready = { tcp = '127.0.0.1:17999' }\n")
            ),
            vec!["[services.web]", "17999", "service api"],
        ),
        (
            "reserved name",
            "[services.temporal]\ncommand = ['x']\n".into(),
            vec!["[services.temporal]", "built-in"],
        ),
        (
            "a range error in the file",
            "[temporal]\nhealth_interval = 0\n".into(),
            vec!["line 2", "health_interval"],
        ),
    ];
    for (class, text_, wants) in cases {
        h.write_config(&text_);
        for cmd in ["start", "config"] {
            let out = run(h.start_cmd(&[]).args_replacing_start(cmd));
            assert_eq!(
                out.status.code(),
                Some(11),
                "{class} ({cmd}): {}",
                text(&out)
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("stigmer.toml"),
                "{class}: names the file: {err}"
            );
            for w in &wants {
                assert!(err.contains(w), "{class}: {w:?} in {err}");
            }
            assert_eq!(
                err.trim().lines().count(),
                1 + usize::from(class.contains("range")),
                "{class}: one message: {err}"
            );
            assert!(h.lock_free(), "{class}: no lock holder");
            assert!(h.processes().is_empty(), "{class}: {:?}", h.processes());
        }
    }
}

/// `stigmer local config` prints what start would use: the file's values
/// below flags and environment.
#[test]
fn config_prints_the_merged_configuration() {
    let h = TestHome::new();
    h.write_config(
        "[temporal]\nheadless = false\nui_port = 18999\nnamespaces = ['orders']\nfailure_threshold = 7\n\
         [services.api]\ncommand = ['definitely-not-installed-xyz']\n",
    );
    let mut c = h.cmd(&["local", "config", "--failure-threshold", "4"]);
    c.env("STIGMER_UI_PORT", "18998");
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let toml = String::from_utf8_lossy(&out.stdout);
    for line in [
        "failure_threshold = 4",
        "ui_port = 18998",
        "headless = false",
        "namespaces = [\"orders\"]",
        "[services.api]",
    ] {
        assert!(toml.contains(line), "{line} in:\n{toml}");
    }
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("definitely-not-installed-xyz"),
        "a missing program is a warning: {}",
        text(&out)
    );
    // ... and an error at start, before anything runs.
    let out = h.start();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(h.processes().is_empty() && h.lock_free());
}

/// A helper to run `stigmer local <cmd>` with a start command's flags.
trait ReplaceStart {
    fn args_replacing_start(self, cmd: &str) -> Self;
}

impl ReplaceStart for std::process::Command {
    fn args_replacing_start(self, cmd: &str) -> Self {
        let args: Vec<String> = self
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let mut c = std::process::Command::new(self.get_program());
        for (k, v) in self.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.args(
            args.iter()
                .map(|a| if a == "start" { cmd } else { a.as_str() }),
        );
        c
    }
}

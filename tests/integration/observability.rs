//! Issue #4: /livez /readyz /healthz /status /metrics and OTLP traces.

use crate::common::*;
use crate::otlp::Receiver;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// GET http://127.0.0.1:port/path → (status, body); None if nothing listens.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    stigmer::http_client::get_from(addr, path, Duration::from_secs(5))
        .ok()
        .map(|a| (a.status, a.body))
}

fn json_state(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .map(|v| v["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn code(port: u16, path: &str) -> u16 {
    get(port, path).map_or(0, |(c, _)| c)
}

#[test]
fn endpoints_in_each_situation() {
    let h = TestHome::new();
    let wrapper = h.gated_wrapper();
    let mut daemon = h.foreground(&["--temporal-bin", wrapper.to_str().unwrap()]);
    let p = h.http_port;

    // Starting: the server is up before Temporal is.
    wait_until("livez answers", || code(p, "/livez") == 200);
    // The supervisor holds at "starting" until the gate opens.
    wait_until("state starting", || {
        get(p, "/readyz").is_some_and(|(_, b)| json_state(&b) == "starting")
    });
    for path in ["/readyz", "/healthz"] {
        let (c, body) = get(p, path).unwrap();
        assert_eq!(c, 503, "{path} while starting: {body}");
        assert_eq!(json_state(&body), "starting");
    }
    let (c, body) = get(p, "/status").unwrap();
    assert_eq!(c, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["temporal"]["state"], "starting");
    assert_eq!(v["temporal"]["ready"], false);
    std::fs::write(h.dir.path().join("go1"), "").unwrap();

    // Running.
    wait_until("readyz 200 once serving", || code(p, "/readyz") == 200);
    assert_eq!(code(p, "/healthz"), 200);
    assert_eq!(code(p, "/livez"), 200);
    assert_eq!(code(p, "/nope"), 404);
    let (c, metrics) = get(p, "/metrics").unwrap();
    assert_eq!(c, 200);
    assert!(metrics.contains("stigmer_temporal_up 1"), "{metrics}");
    let pid = h.serving_pid().unwrap();

    // SIGKILLed: healthz 503 while the replacement is held at the gate,
    // livez 200 throughout, then 200 after recovery.
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    wait_until("healthz 503 after the kill", || code(p, "/healthz") == 503);
    wait_until("the replacement is waiting at its gate", || {
        std::fs::read_to_string(h.dir.path().join("launches")).is_ok_and(|s| s.trim() == "2")
    });
    assert_eq!(code(p, "/livez"), 200, "livez while Temporal is down");
    assert_eq!(json_state(&get(p, "/healthz").unwrap().1), "starting");
    std::fs::write(h.dir.path().join("go2"), "").unwrap();
    wait_until("healthz 200 after recovery", || code(p, "/healthz") == 200);
    let pid2 = h.serving_pid().unwrap();
    assert_ne!(pid, pid2);

    // SIGSTOPped: healthz turns 503 once the gRPC check fails; livez stays 200.
    std::fs::write(h.dir.path().join("go3"), "").unwrap();
    kill(Pid::from_raw(pid2), Signal::SIGSTOP).unwrap();
    let mut livez_ok = true;
    wait_until("healthz 503 while hung", || {
        livez_ok &= code(p, "/livez") == 200;
        code(p, "/healthz") == 503
    });
    assert!(livez_ok, "livez stayed 200 while Temporal hung");
    wait_until("serving again after the hang", || {
        code(p, "/healthz") == 200
    });

    // Stopping, then stopped.
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    let mut saw_stopping = false;
    wait_until("endpoints gone after stop", || {
        if let Some((c, body)) = get(p, "/readyz")
            && json_state(&body) == "stopping"
        {
            assert_eq!(c, 503);
            saw_stopping = true;
        }
        get(p, "/livez").is_none()
    });
    assert!(
        saw_stopping,
        "readyz reported 503 'stopping' during shutdown"
    );
    assert!(daemon.wait().unwrap().success());
    h.assert_nothing_left();
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("series {series} not found"))
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: apt-get install prometheus (scripts/test.sh does)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}",
        text_of(&out)
    );
}

fn text_of(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn metrics_pass_promtool_and_move_on_crash_and_hang() {
    let mut h = TestHome::new();
    h.extra
        .extend(["--health-interval", "0.5", "--health-timeout", "0.5"].map(String::from));
    h.start_ok();
    let p = h.http_port;
    let m0 = get(p, "/metrics").unwrap().1;
    promtool_check(&m0);
    assert_eq!(metric(&m0, "stigmer_temporal_up"), 1.0);
    assert_eq!(
        metric(&m0, "stigmer_temporal_state{state=\"running\"}"),
        1.0
    );
    assert_eq!(
        metric(&m0, "stigmer_temporal_restarts_total{reason=\"signaled\"}"),
        0.0
    );
    assert_eq!(
        metric(&m0, "stigmer_temporal_start_duration_seconds_count"),
        1.0
    );

    // Crash.
    let pid = h.serving_pid().unwrap();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let pid2 = h.wait_serving_new_pid(pid);
    let m1 = get(p, "/metrics").unwrap().1;
    promtool_check(&m1);
    assert_eq!(
        metric(&m1, "stigmer_temporal_restarts_total{reason=\"signaled\"}"),
        1.0
    );
    assert_eq!(
        metric(&m1, "stigmer_temporal_restarts_total{reason=\"unhealthy\"}"),
        0.0
    );
    assert_eq!(
        metric(&m1, "stigmer_temporal_exits_total{how=\"signal_9\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &m1,
            "stigmer_temporal_failure_detection_seconds_count{kind=\"exit\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m1,
            "stigmer_temporal_failure_detection_seconds_count{kind=\"hang\"}"
        ),
        0.0
    );
    assert_eq!(metric(&m1, "stigmer_temporal_recovery_seconds_count"), 1.0);
    assert_eq!(
        metric(&m1, "stigmer_temporal_start_duration_seconds_count"),
        2.0
    );
    assert!(metric(&m1, "stigmer_temporal_recovery_seconds_sum") > 0.0);

    // Hang. Wait for a stable run first so the restart is a "first" one.
    wait_until("stable", || {
        h.status_json().1["restarts"]["consecutive_failures"] == 0
    });
    kill(Pid::from_raw(pid2), Signal::SIGSTOP).unwrap();
    h.wait_serving_new_pid(pid2);
    let m2 = get(p, "/metrics").unwrap().1;
    promtool_check(&m2);
    assert_eq!(
        metric(&m2, "stigmer_temporal_restarts_total{reason=\"unhealthy\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &m2,
            "stigmer_temporal_failure_detection_seconds_count{kind=\"hang\"}"
        ),
        1.0
    );
    assert!(
        metric(
            &m2,
            "stigmer_temporal_health_check_failures_total{layer=\"grpc\"}"
        ) >= 3.0
    );
    assert_eq!(
        metric(
            &m2,
            "stigmer_temporal_health_check_failures_total{layer=\"process\"}"
        ),
        metric(
            &m1,
            "stigmer_temporal_health_check_failures_total{layer=\"process\"}"
        )
    );
    assert!(
        metric(
            &m2,
            "stigmer_temporal_health_check_duration_seconds_count{layer=\"grpc\"}"
        ) > 3.0
    );
    assert!(metric(&m2, "stigmer_temporal_resident_memory_bytes") > 1e6);
    assert!(metric(&m2, "stigmer_supervisor_resident_memory_bytes") > 1e5);
}

#[test]
fn status_endpoint_and_status_json_agree_with_the_documented_schema() {
    let h = TestHome::new();
    h.start_ok();
    let (_, http) = get(h.http_port, "/status").unwrap();
    let a: Value = serde_json::from_str(&http).unwrap();
    let (code, b) = h.status_json();
    assert_eq!(code, Some(0));
    // Same document, modulo what moves with time.
    let strip = |v: &Value| {
        let mut v = v.clone();
        v["supervisor"]["uptime_seconds"] = Value::Null;
        v["temporal"]["uptime_seconds"] = Value::Null;
        v["health"] = Value::Null;
        v["temporal"]["health"] = Value::Null;
        v
    };
    assert_eq!(strip(&a), strip(&b));
    // The documented schema (README "Status document").
    #[derive(Clone, Copy)]
    enum T {
        Num,
        Str,
        Bool,
    }
    let checks = [
        ("/version", T::Num),
        ("/supervisor/pid", T::Num),
        ("/supervisor/version", T::Str),
        ("/supervisor/started_at_unix_ms", T::Num),
        ("/supervisor/uptime_seconds", T::Num),
        ("/supervisor/http_addr", T::Str),
        ("/supervisor/home", T::Str),
        ("/temporal/state", T::Str),
        ("/temporal/ready", T::Bool),
        ("/temporal/pid", T::Num),
        ("/temporal/pgid", T::Num),
        ("/temporal/start_time_ticks", T::Num),
        ("/temporal/spawned_at_unix_ms", T::Num),
        ("/temporal/serving_since_unix_ms", T::Num),
        ("/temporal/uptime_seconds", T::Num),
        ("/temporal/frontend", T::Str),
        ("/temporal/binary", T::Str),
        ("/temporal/exe", T::Str),
        ("/temporal/db_file", T::Str),
        ("/health/grpc/ok", T::Bool),
        ("/health/grpc/reason", T::Str),
        ("/health/grpc/latency_ms", T::Num),
        ("/health/grpc/consecutive_failures", T::Num),
        ("/health/grpc/last_checked_unix_ms", T::Num),
        ("/restarts/count", T::Num),
        ("/restarts/consecutive_failures", T::Num),
        ("/config/health_interval_seconds", T::Num),
        ("/config/health_timeout_seconds", T::Num),
        ("/config/failure_threshold", T::Num),
        ("/config/stop_grace_seconds", T::Num),
        ("/config/start_timeout_seconds", T::Num),
        ("/config/backoff_base_seconds", T::Num),
        ("/config/backoff_cap_seconds", T::Num),
    ];
    for (ptr, kind) in checks {
        let v = a.pointer(ptr).unwrap_or(&Value::Null);
        let ok = match kind {
            T::Num => v.is_number(),
            T::Str => v.is_string(),
            T::Bool => v.is_boolean(),
        };
        assert!(ok, "{ptr} = {v} in {a:#}");
    }
    for layer in ["lock", "pid_file", "process", "identity", "port", "grpc"] {
        assert!(a["health"][layer].is_object(), "layer {layer} in {a:#}");
    }
    for key in [
        "last_reason",
        "last_exit",
        "last_exit_description",
        "last_exit_at_unix_ms",
        "last_detection_ms",
        "last_recovery_ms",
    ] {
        assert!(
            a["restarts"].get(key).is_some(),
            "restarts.{key} present (null before any restart)"
        );
    }
    assert!(a.get("backoff").is_some() && a.get("last_error").is_some());
    assert!(a["temporal"].get("ui_url").is_some() && a["temporal"].get("metrics_url").is_some());
}

fn traces_roundtrip(receiver: &Receiver, h: &TestHome, env: &[(&str, String)], extra: &[&str]) {
    let mut c = h.start_cmd(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let pid = h.serving_pid().unwrap();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    h.wait_serving_new_pid(pid);
    assert_eq!(h.stop().status.code(), Some(0));
    let store = &receiver.store;
    wait_until_for(
        Duration::from_secs(30),
        "spans exported (flushed at stop)",
        || !store.named("temporal.stop").is_empty() && !store.named("temporal.restart").is_empty(),
    );
    let spans = store.spans();
    assert!(
        spans.iter().all(|s| s.service == "stigmer-local"),
        "service.name"
    );
    let starts = store.named("temporal.start");
    assert!(starts.len() >= 2, "a start span per spawn: {starts:?}");
    assert!(
        starts
            .iter()
            .any(|s| s.attrs.get("outcome").map(String::as_str) == Some("serving"))
    );
    let restart = &store.named("temporal.restart")[0];
    assert_eq!(
        restart.attrs.get("reason").map(String::as_str),
        Some("signaled"),
        "{restart:?}"
    );
    assert_eq!(
        restart.attrs.get("exit.signal").map(String::as_str),
        Some("9"),
        "{restart:?}"
    );
    assert!(
        restart.attrs.contains_key("attempt") && restart.attrs.contains_key("backoff_ms"),
        "{restart:?}"
    );
    assert_eq!(restart.links, 1, "restart links to the failure");
    let failed = store
        .named("temporal.process")
        .into_iter()
        .find(|s| s.attrs.get("exit.signal").map(String::as_str) == Some("9"))
        .expect("the killed process's span");
    assert_eq!(
        restart.link_span_ids,
        vec![failed.span_id.clone()],
        "link points at the failed process"
    );
}

#[test]
fn traces_over_otlp_grpc() {
    let r = Receiver::grpc();
    let h = TestHome::new();
    traces_roundtrip(
        &r,
        &h,
        &[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", r.port),
        )],
        &[],
    );
}

#[test]
fn traces_over_otlp_http_protobuf() {
    let r = Receiver::http();
    let h = TestHome::new();
    let endpoint = format!("http://127.0.0.1:{}", r.port);
    traces_roundtrip(
        &r,
        &h,
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into())],
        &["--otlp-endpoint", &endpoint],
    );
}

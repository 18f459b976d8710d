//! Table-driven walks of the state machine, with made-up instants, and
//! the outcome table of `docs/transitions.md` checked against `step`.

use super::*;
use crate::model::{Policy, RestartPolicy};

fn rules() -> Rules {
    Rules {
        policy: Policy {
            jitter: 0.0,
            ..Policy::default()
        },
        failure_threshold: 3,
        start_timeout: Duration::from_secs(30),
        restart: RestartPolicy::Always,
        min_uptime: Duration::from_secs(1),
        ready_on_uptime: false,
    }
}

/// One applied step from `s` (generation 0): the next state and actions.
fn go(s: &State, e: Event, now: Instant, r: &Rules) -> (State, Vec<Action>) {
    let st = step(&Life::new(s.clone()), e.clone(), now, r);
    assert_eq!(st.outcome, Outcome::Applied, "{s:?} + {e:?}");
    (st.life.state, st.actions)
}

/// Feed `events` (with offsets in ms from t0) and return every
/// (state name, actions) along the way, following the generations.
fn walk(events: &[(u64, Event)]) -> Vec<(StateName, Vec<Action>)> {
    let t0 = Instant::now();
    let r = rules();
    let mut life = Life::new(State::Stopped);
    let mut out = Vec::new();
    for (ms, e) in events {
        let e = match e {
            Event::Wake { .. } => Event::Wake {
                generation: life.generation,
            },
            other => other.clone(),
        };
        let st = step(&life, e.clone(), t0 + Duration::from_millis(*ms), &r);
        assert_eq!(st.outcome, Outcome::Applied, "{:?} + {e:?}", life.state);
        life = st.life;
        out.push((life.state.name(), st.actions));
    }
    out
}

fn names(w: &[(StateName, Vec<Action>)]) -> Vec<StateName> {
    w.iter().map(|(n, _)| *n).collect()
}

/// The wake-up `actions` arm, relative to `now`.
fn delay_of(actions: &[Action], now: Instant) -> Duration {
    actions
        .iter()
        .find_map(|a| match a {
            Action::WakeAt { at, .. } => Some(*at - now),
            _ => None,
        })
        .expect("a wake timer")
}

fn exit(pid: i32, code: i32) -> Event {
    Event::Exited {
        pid,
        status: ExitStatus::Code(code),
    }
}

fn killed(pid: i32) -> Event {
    Event::Exited {
        pid,
        status: ExitStatus::Signal(9),
    }
}

fn running(pid: i32, since: Instant, attempt: u32) -> State {
    State::Running {
        pid,
        since,
        attempt,
        proven: true,
    }
}

use StateName as N;

#[test]
fn happy_start_then_crash_restarts_immediately() {
    let w = walk(&[
        (0, Event::Start),
        (0, Event::Spawned { pid: 10 }),
        (150, Event::ProbeOk { pid: 10 }),
        (1000, Event::Uptime { pid: 10 }),
        (5000, killed(10)),
        (5000, Event::Wake { generation: 0 }),
        (5000, Event::Spawned { pid: 11 }),
        (5150, Event::ProbeOk { pid: 11 }),
    ]);
    assert_eq!(
        names(&w),
        [
            N::Spawning,
            N::Starting,
            N::Running,
            N::Running,
            N::Backoff,
            N::Spawning,
            N::Starting,
            N::Running
        ]
    );
    assert_eq!(w[2].1, vec![Action::Ready]);
    // The first restart after a healthy run has zero delay.
    match &w[4].1[..] {
        [
            Action::ReapGroup,
            Action::WakeAt { generation: 1, .. },
            Action::RecordRestart { reason, .. },
        ] => assert_eq!(reason, &RestartReason::Signaled { signal: 9 }),
        other => panic!("{other:?}"),
    }
}

#[test]
fn hang_is_killed_after_threshold_consecutive_failures() {
    let g = Layer::Grpc;
    let failed = || Event::ProbeFailed { pid: 10, layer: g };
    let w = walk(&[
        (0, Event::Start),
        (0, Event::Spawned { pid: 10 }),
        (100, Event::ProbeOk { pid: 10 }),
        (1000, failed()),
        (2000, Event::ProbeOk { pid: 10 }),
        (3000, failed()),
        (4000, failed()),
        (5000, failed()),
        (5010, killed(10)),
    ]);
    assert_eq!(
        names(&w),
        [
            N::Spawning,
            N::Starting,
            N::Running,
            N::Unhealthy,
            N::Running,
            N::Unhealthy,
            N::Unhealthy,
            N::Killing,
            N::Backoff
        ]
    );
    assert_eq!(w[7].1, vec![Action::Kill]);
    match &w[8].1[2] {
        Action::RecordRestart { reason, .. } => {
            assert_eq!(reason, &RestartReason::Unhealthy { layer: g })
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn repeated_fast_failures_grow_delays_and_enter_crash_loop() {
    let t0 = Instant::now();
    let r = rules();
    let mut life = Life::new(State::Stopped);
    let mut now = t0;
    let mut delays = Vec::new();
    life = step(&life, Event::Start, now, &r).life;
    for i in 0..8 {
        let pid = 100 + i;
        life = step(&life, Event::Spawned { pid }, now, &r).life;
        let st = step(&life, exit(pid, 1), now, &r);
        life = st.life;
        let until = now + delay_of(&st.actions, now);
        delays.push(until - now);
        if i >= 4 {
            assert_eq!(life.state.name(), N::CrashLoop, "after {} failures", i + 1);
        } else {
            assert_eq!(life.state.name(), N::Backoff);
        }
        now = until;
        let st = step(
            &life,
            Event::Wake {
                generation: life.generation,
            },
            now,
            &r,
        );
        assert_eq!(st.actions, vec![Action::Spawn]);
        life = st.life;
    }
    assert_eq!(delays[0], Duration::ZERO);
    for w in delays.windows(2).skip(1) {
        assert!(w[1] > w[0], "delays grow: {delays:?}");
    }
}

/// A process that serves, then dies before `min_uptime`, is a failed
/// start: the streak grows to a crash loop (a hot loop reported ready
/// otherwise); one that serves past it starts a new streak at once.
#[test]
fn a_run_shorter_than_min_uptime_is_a_failed_start_even_if_it_was_ready() {
    let t0 = Instant::now();
    let r = Rules {
        ready_on_uptime: true,
        ..rules()
    };
    let mut life = step(&Life::new(State::Stopped), Event::Start, t0, &r).life;
    let mut now = t0;
    for i in 0..6 {
        let pid = 200 + i;
        life = step(&life, Event::Spawned { pid }, now, &r).life;
        assert_eq!(life.state.name(), N::Starting, "not ready at once");
        now += Duration::from_millis(10);
        let st = step(&life, exit(pid, 1), now, &r);
        life = st.life;
        now += delay_of(&st.actions, now);
        life = step(
            &life,
            Event::Wake {
                generation: life.generation,
            },
            now,
            &r,
        )
        .life;
    }
    assert_eq!(life.state.attempt(), 6);
    // Ready once it has run for min_uptime, then a crash: immediate.
    life = step(&life, Event::Spawned { pid: 300 }, now, &r).life;
    let (s, a) = {
        let st = step(&life, Event::Uptime { pid: 300 }, now + r.min_uptime, &r);
        (st.life, st.actions)
    };
    assert_eq!((s.state.name(), a), (N::Running, vec![Action::Ready]));
    let st = step(&s, killed(300), now + r.min_uptime * 2, &r);
    assert_eq!(
        delay_of(&st.actions, now + r.min_uptime * 2),
        Duration::ZERO
    );
    assert_eq!(st.life.state.attempt(), 1);
    // A check-ready unit that serves and dies within min_uptime keeps
    // growing its streak.
    let brief = State::Running {
        pid: 5,
        since: t0,
        attempt: 4,
        proven: false,
    };
    let (s, a) = go(&brief, killed(5), t0, &rules());
    assert_eq!(s.attempt(), 5);
    assert_eq!(s.name(), N::CrashLoop);
    assert!(delay_of(&a, t0) > Duration::ZERO);
}

/// The defect that stopped a whole stack: a backoff's timer that
/// outlived the backoff (a restart typed meanwhile) fired in `running`.
/// Now it is stale, and the restart disarmed it anyway.
#[test]
fn a_backoff_timer_that_outlives_its_backoff_is_stale() {
    let t = Instant::now();
    let r = rules();
    let life = Life {
        state: State::CrashLoop {
            until: t + Duration::from_secs(4),
            attempt: 7,
        },
        generation: 3,
    };
    let st = step(&life, Event::RestartRequested, t, &r);
    assert_eq!(st.actions, vec![Action::CancelWake, Action::Spawn]);
    let life = step(&st.life, Event::Spawned { pid: 9 }, t, &r).life;
    let life = step(&life, Event::ProbeOk { pid: 9 }, t, &r).life;
    assert_eq!(life.state.name(), N::Running);
    let st = step(&life, Event::Wake { generation: 3 }, t, &r);
    assert_eq!(st.outcome, Outcome::Stale);
    assert_eq!(st.life, life);
    // A later backoff has a later generation: the old timer cannot end it.
    let st = step(&life, killed(9), t, &r);
    assert_eq!(st.life.generation, 4);
    let stale = step(&st.life, Event::Wake { generation: 3 }, t, &r);
    assert_eq!(stale.outcome, Outcome::Stale);
    let due = step(&st.life, Event::Wake { generation: 4 }, t, &r);
    assert_eq!(due.life.state.name(), N::Spawning);
}

#[test]
fn events_of_an_earlier_process_change_nothing() {
    let t = Instant::now();
    let r = rules();
    let life = Life::new(running(9, t, 0));
    for e in [
        exit(8, 1),
        Event::ProbeFailed {
            pid: 8,
            layer: Layer::Grpc,
        },
        Event::ProbeOk { pid: 8 },
        Event::Condemned {
            pid: 8,
            layer: Layer::Persistence,
        },
        Event::Uptime { pid: 8 },
        Event::Replaced {
            old: 8,
            pid: 10,
            spawned: t,
            trigger: "x".into(),
        },
    ] {
        let st = step(&life, e.clone(), t, &r);
        assert_eq!(
            (st.outcome, st.actions.is_empty()),
            (Outcome::Stale, true),
            "{e:?}"
        );
        assert_eq!(st.life, life);
    }
}

#[test]
fn stable_run_resets_attempts() {
    let t0 = Instant::now();
    let r = rules();
    let at = |ms| t0 + Duration::from_millis(ms);
    let s = running(1, at(0), 4);
    let (s1, _) = go(&s, Event::ProbeOk { pid: 1 }, at(999), &r);
    assert_eq!(s1, running(1, at(0), 4));
    let (s2, _) = go(&s1, Event::ProbeOk { pid: 1 }, at(1000), &r);
    assert_eq!(s2, running(1, at(0), 0));
}

#[test]
fn nothing_restarts_during_shutdown() {
    let t = Instant::now();
    let r = rules();
    let s = Life::new(State::Stopping { pid: 5 });
    for e in [
        Event::RestartRequested,
        Event::ProbeFailed {
            pid: 5,
            layer: Layer::Grpc,
        },
        Event::ProbeOk { pid: 5 },
    ] {
        let st = step(&s, e, t, &r);
        assert_eq!((st.life, st.actions), (s.clone(), vec![]));
    }
    let st = step(&s, exit(5, 0), t, &r);
    assert_eq!(st.life.state, State::Stopped);
    assert_eq!(st.actions, vec![Action::ReapGroup, Action::Finish]);
}

#[test]
fn manual_restart_is_graceful_and_not_a_failure() {
    let t = Instant::now();
    let r = rules();
    let (k, a) = go(&running(5, t, 2), Event::RestartRequested, t, &r);
    assert_eq!(a, vec![Action::Terminate]);
    let (sp, a) = go(&k, exit(5, 0), t, &r);
    assert_eq!(sp, State::Spawning { attempt: 2 });
    assert_eq!(a, vec![Action::ReapGroup, Action::Spawn]);
}

#[test]
fn start_timeout_kills_a_server_that_never_serves() {
    let t = Instant::now();
    let r = rules();
    let s = State::Starting {
        pid: 5,
        since: t,
        attempt: 0,
        proven: true,
    };
    let f = Event::ProbeFailed {
        pid: 5,
        layer: Layer::Port,
    };
    assert_eq!(go(&s, f.clone(), t + Duration::from_secs(29), &r).0, s);
    let (k, a) = go(&s, f, t + Duration::from_secs(30), &r);
    assert_eq!(k.name(), N::Killing);
    assert_eq!(a, vec![Action::Kill]);
}

#[test]
fn a_condemned_unit_is_killed_at_once_as_unhealthy() {
    let t = Instant::now();
    let r = rules();
    let layer = Layer::Persistence;
    let (s, a) = go(&running(5, t, 0), Event::Condemned { pid: 5, layer }, t, &r);
    assert!(
        matches!(s, State::Killing { reason: RestartReason::Unhealthy { layer: l }, .. } if l == layer),
        "{s:?}"
    );
    assert_eq!(a[0], Action::Kill);
}

#[test]
fn a_reload_stops_gracefully_and_an_overlap_swaps_the_pid_without_a_failure() {
    let t = Instant::now();
    let r = rules();
    let trigger = "src/app.py".to_string();
    let reload = Event::Reload {
        trigger: trigger.clone(),
    };
    let (s, a) = go(&running(5, t, 1), reload, t, &r);
    assert!(
        matches!(&s, State::Killing { reason: RestartReason::Reload { trigger: tr }, .. } if *tr == trigger),
        "{s:?}"
    );
    assert_eq!(a, vec![Action::Terminate]);
    // Replaced whatever the restart policy says of exits.
    let never = Rules {
        restart: RestartPolicy::Never,
        ..rules()
    };
    let (sp, _) = go(&s, exit(5, 0), t, &never);
    assert_eq!(sp.name(), N::Spawning);
    let later = t + Duration::from_secs(1);
    let replaced = Event::Replaced {
        old: 5,
        pid: 9,
        spawned: t,
        trigger,
    };
    let (s, a) = go(&running(5, t, 1), replaced, later, &r);
    assert_eq!(s, running(9, later, 0));
    assert!(a.contains(&Action::Ready), "{a:?}");
    assert!(a.iter().any(|a| matches!(
        a,
        Action::RecordRestart {
            reason: RestartReason::Reload { .. },
            ..
        }
    )));
}

#[test]
fn spawn_failure_is_paced_as_crash_loop() {
    let t = Instant::now();
    let r = rules();
    let failed = Event::SpawnFailed {
        error: "port held".into(),
    };
    let (s, a) = go(&State::Spawning { attempt: 0 }, failed, t, &r);
    assert_eq!(s.name(), N::CrashLoop);
    assert!(delay_of(&a, t) >= Duration::from_millis(500), "{a:?}");
}

#[test]
fn serving_caps_the_failure_count_so_kill_cycles_never_crash_loop() {
    let t0 = Instant::now();
    let r = rules();
    let mut life = Life::new(State::Stopped);
    let mut now = t0;
    let mut delays = Vec::new();
    life = step(&life, Event::Start, now, &r).life;
    for i in 0..20 {
        let pid = 100 + i;
        life = step(&life, Event::Spawned { pid }, now, &r).life;
        now += Duration::from_millis(150);
        life = step(&life, Event::ProbeOk { pid }, now, &r).life;
        now += r.min_uptime;
        life = step(&life, Event::Uptime { pid }, now, &r).life;
        // Killed once it served for min_uptime, 20 times in a row.
        let st = step(&life, killed(pid), now, &r);
        assert_eq!(
            st.life.state.name(),
            N::Backoff,
            "cycle {i}: never crash-loop"
        );
        let d = delay_of(&st.actions, now);
        delays.push(d);
        now += d;
        life = step(
            &st.life,
            Event::Wake {
                generation: st.life.generation,
            },
            now,
            &r,
        )
        .life;
    }
    assert_eq!(delays[0], Duration::ZERO);
    assert!(
        delays.iter().all(|d| *d <= Duration::from_millis(100)),
        "{delays:?}"
    );
}

#[test]
fn restart_policy_decides_whether_an_exit_is_restarted() {
    let t = Instant::now();
    let with = |restart| Rules { restart, ..rules() };
    let cases = [
        (RestartPolicy::Always, 0, N::Backoff),
        (RestartPolicy::Always, 1, N::Backoff),
        (RestartPolicy::OnFailure, 0, N::Exited),
        (RestartPolicy::OnFailure, 1, N::Backoff),
        (RestartPolicy::Never, 1, N::Exited),
    ];
    for (policy, code, want) in cases {
        let (s, a) = go(&running(5, t, 0), exit(5, code), t, &with(policy));
        assert_eq!(s.name(), want, "{policy:?} exit {code}");
        assert_eq!(a[0], Action::ReapGroup, "the group is reaped either way");
    }
    // A hang kill is a failure: on-failure restarts it, never does not.
    let killing = State::Killing {
        pid: 5,
        reason: RestartReason::Unhealthy { layer: Layer::Grpc },
        detected_at: t,
        attempt: 0,
        served: false,
    };
    let (s, _) = go(&killing, exit(5, 0), t, &with(RestartPolicy::OnFailure));
    assert_eq!(s.name(), N::Backoff);
    let (s, _) = go(&killing, exit(5, 0), t, &with(RestartPolicy::Never));
    assert_eq!(s.name(), N::Exited);
}

#[test]
fn no_slow_tail_a_run_that_served_is_restarted_at_once_however_briefly() {
    let r = rules();
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    // Served for 0.3 s (below stable_after) after min_uptime: immediate.
    let (s, a) = go(&running(1, at(0), 1), killed(1), at(300), &r);
    assert_eq!(delay_of(&a, at(300)), Duration::ZERO);
    assert_eq!((s.name(), s.attempt()), (N::Backoff, 1));
    // Hung after serving (a hang kill): immediate too.
    let hung = State::Killing {
        pid: 1,
        reason: RestartReason::Unhealthy { layer: Layer::Grpc },
        detected_at: at(0),
        attempt: 3,
        served: true,
    };
    let (_, a) = go(&hung, killed(1), at(10), &r);
    assert_eq!(delay_of(&a, at(10)), Duration::ZERO);
    // The run after it fails again without serving: the delay grows.
    let starting = State::Starting {
        pid: 2,
        since: at(0),
        attempt: 1,
        proven: false,
    };
    let (s, a) = go(&starting, killed(2), at(50), &r);
    assert_eq!(s.attempt(), 2);
    assert_eq!(delay_of(&a, at(50)), r.policy.base);
}

/// One parsed row of `docs/transitions.md`.
struct Row {
    states: Vec<String>,
    events: Vec<String>,
    when: Vec<String>,
    outcome: String,
    next: String,
    actions: Vec<String>,
}

fn list(cell: &str) -> Vec<String> {
    cell.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s != "-")
        .collect()
}

fn table() -> Vec<Row> {
    let text = include_str!("../../../docs/transitions.md");
    text.lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---") && !l.starts_with("| state"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 6, "row {l:?}");
            Row {
                states: list(cells[0]),
                events: list(cells[1]),
                when: list(cells[2]),
                outcome: cells[3].to_string(),
                next: cells[4].to_string(),
                actions: list(cells[5]),
            }
        })
        .collect()
}

/// What a row's conditions say, and the sample built from them.
struct Sample {
    life: Life,
    event: Event,
    now: Instant,
    rules: Rules,
}

/// The sample state `name` under `when`: pid 7, generation 5.
fn sample_state(name: &str, when: &[String], t: Instant) -> State {
    let has = |c: &str| when.iter().any(|w| w == c);
    let proven = !has("not proven");
    let reason = if has("manual") {
        RestartReason::Manual
    } else if has("reload") {
        RestartReason::Reload {
            trigger: "x".into(),
        }
    } else {
        RestartReason::Unhealthy { layer: Layer::Grpc }
    };
    match name {
        "waiting" => State::Waiting,
        "stopped" => State::Stopped,
        "exited" => State::Exited,
        "spawning" => State::Spawning { attempt: 0 },
        "starting" => State::Starting {
            pid: 7,
            since: t,
            attempt: 0,
            proven: false,
        },
        "running" => State::Running {
            pid: 7,
            since: t,
            attempt: 0,
            proven,
        },
        "unhealthy" => State::Unhealthy {
            pid: 7,
            since: t,
            attempt: 0,
            failures: 1,
            layer: Layer::Grpc,
            proven,
        },
        "killing" => State::Killing {
            pid: 7,
            reason,
            detected_at: t,
            attempt: 0,
            served: true,
        },
        "backoff" => State::Backoff {
            until: t,
            attempt: 1,
        },
        "crash_loop" => State::CrashLoop {
            until: t,
            attempt: 6,
        },
        "stopping" => State::Stopping { pid: 7 },
        other => panic!("unknown state {other:?} in docs/transitions.md"),
    }
}

fn sample_event(name: &str, when: &[String], generation: u64, t: Instant) -> Event {
    let has = |c: &str| when.iter().any(|w| w == c);
    let pid = if has("other pid") { 8 } else { 7 };
    let spawned = if has("not proven") {
        t
    } else {
        t - Duration::from_secs(2)
    };
    match name {
        "start" => Event::Start,
        "spawned" => Event::Spawned { pid: 9 },
        "spawn_failed" => Event::SpawnFailed { error: "x".into() },
        "exited" => exit(pid, 1),
        "uptime" => Event::Uptime { pid },
        "probe_ok" => Event::ProbeOk { pid },
        "probe_failed" => Event::ProbeFailed {
            pid,
            layer: Layer::Grpc,
        },
        "condemned" => Event::Condemned {
            pid,
            layer: Layer::Persistence,
        },
        "tampered" => Event::Tampered { layer: Layer::Lock },
        "wake" if has("earlier backoff") => Event::Wake {
            generation: generation - 1,
        },
        "wake" => Event::Wake { generation },
        "restart_requested" => Event::RestartRequested,
        "reload" => Event::Reload {
            trigger: "x".into(),
        },
        "replaced" => Event::Replaced {
            old: pid,
            pid: 9,
            spawned,
            trigger: "x".into(),
        },
        "shutdown" => Event::Shutdown,
        other => panic!("unknown event {other:?} in docs/transitions.md"),
    }
}

fn sample(state: &str, event: &str, when: &[String]) -> Sample {
    let t = Instant::now() + Duration::from_secs(10);
    let has = |c: &str| when.iter().any(|w| w == c);
    let known = [
        "own pid",
        "other pid",
        "this backoff",
        "earlier backoff",
        "restarted",
        "not restarted",
        "proven",
        "not proven",
        "ready by check",
        "ready on uptime",
        "min_uptime 0",
        "before start_timeout",
        "after start_timeout",
        "below threshold",
        "at threshold",
        "manual",
        "reload",
        "failure",
    ];
    for w in when {
        assert!(known.contains(&w.as_str()), "unknown condition {w:?}");
    }
    let s = sample_state(state, when, t);
    let failures = match &s {
        State::Unhealthy { failures, .. } => *failures,
        _ => 0,
    };
    let mut rules = rules();
    if has("not restarted") {
        rules.restart = RestartPolicy::Never;
    }
    if has("min_uptime 0") {
        rules.min_uptime = Duration::ZERO;
    }
    rules.ready_on_uptime = has("ready on uptime");
    rules.failure_threshold = if has("at threshold") {
        failures + 1
    } else {
        failures + 2
    };
    let now = if has("after start_timeout") {
        t + rules.start_timeout
    } else {
        t
    };
    let life = Life {
        state: s,
        generation: 5,
    };
    Sample {
        event: sample_event(event, when, life.generation, t),
        life,
        now,
        rules,
    }
}

fn action_name(a: &Action) -> &'static str {
    match a {
        Action::Spawn => "Spawn",
        Action::Kill => "Kill",
        Action::Terminate => "Terminate",
        Action::ReapGroup => "ReapGroup",
        Action::WakeAt { .. } => "WakeAt",
        Action::CancelWake => "CancelWake",
        Action::UptimeAt { .. } => "UptimeAt",
        Action::Ready => "Ready",
        Action::RecordRestart { .. } => "RecordRestart",
        Action::Repair(_) => "Repair",
        Action::Finish => "Finish",
    }
}

#[test]
fn the_outcome_table_in_docs_is_what_step_does() {
    let mut covered: std::collections::BTreeMap<(String, String), Vec<Vec<String>>> =
        Default::default();
    for row in table() {
        for state in &row.states {
            for event in &row.events {
                let s = sample(state, event, &row.when);
                let st = step(&s.life, s.event.clone(), s.now, &s.rules);
                let what = format!("{state} + {event} when {:?}", row.when);
                let outcome = match st.outcome {
                    Outcome::Applied => "applied",
                    Outcome::Ignored => "ignored",
                    Outcome::Stale => "stale",
                };
                assert_eq!(outcome, row.outcome, "{what}");
                let next = if st.life.state == s.life.state {
                    "same".to_string()
                } else {
                    st.life.state.name().as_str().to_string()
                };
                let want_next = if row.next == "same" || row.next == *state {
                    "same"
                } else {
                    row.next.as_str()
                };
                let next = if next == *state { "same".into() } else { next };
                assert_eq!(next, want_next, "{what}: {:?}", st.life.state);
                let actions: Vec<&str> = st.actions.iter().map(action_name).collect();
                assert_eq!(actions, row.actions, "{what}");
                if st.outcome != Outcome::Applied {
                    assert_eq!(st.life, s.life, "{what}: nothing changes");
                }
                covered
                    .entry((state.clone(), event.clone()))
                    .or_default()
                    .push(row.when.clone());
            }
        }
    }
    // Every pair is there; a pid event in a state with a process is
    // there for its own process and for another, and a wake-up for its
    // own backoff and an earlier one.
    for state in StateName::ALL {
        let with_pid = sample_state(state.as_str(), &[], Instant::now())
            .pid()
            .is_some();
        for event in Event::NAMES {
            let key = (state.as_str().to_string(), event.to_string());
            let whens = covered
                .get(&key)
                .unwrap_or_else(|| panic!("{state:?} + {event} is not in docs/transitions.md"));
            let about = |c: &str| whens.iter().any(|w| w.iter().any(|x| x == c));
            let pid_event = sample_event(event, &[], 1, Instant::now()).pid().is_some();
            if with_pid && pid_event {
                assert!(
                    about("own pid") && about("other pid"),
                    "{state:?} + {event}: own and other pid both needed"
                );
            }
            if event == "wake" && matches!(state, N::Backoff | N::CrashLoop) {
                assert!(about("this backoff") && about("earlier backoff"));
            }
        }
    }
}

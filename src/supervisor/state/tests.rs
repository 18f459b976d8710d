//! Table-driven walks of the state machine, with made-up instants.

use super::*;

fn rules() -> Rules {
    Rules {
        policy: Policy {
            jitter: 0.0,
            ..Policy::default()
        },
        failure_threshold: 3,
        start_timeout: Duration::from_secs(30),
        restart: RestartPolicy::Always,
    }
}

/// Feed `events` (with offsets in ms from t0) and return every
/// (state name, actions) along the way.
fn walk(events: &[(u64, Event)]) -> Vec<(StateName, Vec<Action>)> {
    let t0 = Instant::now();
    let r = rules();
    let mut s = State::Stopped;
    let mut out = Vec::new();
    for (ms, e) in events {
        let (next, actions) = step(&s, e.clone(), t0 + Duration::from_millis(*ms), &r)
            .unwrap_or_else(|err| panic!("{err}"));
        s = next;
        out.push((s.name(), actions));
    }
    out
}

fn names(w: &[(StateName, Vec<Action>)]) -> Vec<StateName> {
    w.iter().map(|(n, _)| *n).collect()
}

use StateName as N;

#[test]
fn happy_start_then_crash_restarts_immediately() {
    let w = walk(&[
        (0, Event::Start),
        (0, Event::Spawned { pid: 10 }),
        (150, Event::ProbeOk),
        (
            5000,
            Event::Exited {
                status: ExitStatus::Signal(9),
            },
        ),
        (5000, Event::Wake),
        (5000, Event::Spawned { pid: 11 }),
        (5150, Event::ProbeOk),
    ]);
    assert_eq!(
        names(&w),
        [
            N::Spawning,
            N::Starting,
            N::Running,
            N::Backoff,
            N::Spawning,
            N::Starting,
            N::Running
        ]
    );
    assert_eq!(w[2].1, vec![Action::Ready]);
    // The first restart after a healthy run has zero delay.
    let t = match &w[3].1[..] {
        [
            Action::ReapGroup,
            Action::WakeAt(t),
            Action::RecordRestart { reason, .. },
        ] => {
            assert_eq!(reason, &RestartReason::Signaled { signal: 9 });
            *t
        }
        other => panic!("{other:?}"),
    };
    let _ = t;
}

#[test]
fn hang_is_killed_after_threshold_consecutive_failures() {
    let g = Layer::Grpc;
    let w = walk(&[
        (0, Event::Start),
        (0, Event::Spawned { pid: 10 }),
        (100, Event::ProbeOk),
        (1000, Event::ProbeFailed { layer: g }),
        (2000, Event::ProbeOk),
        (3000, Event::ProbeFailed { layer: g }),
        (4000, Event::ProbeFailed { layer: g }),
        (5000, Event::ProbeFailed { layer: g }),
        (
            5010,
            Event::Exited {
                status: ExitStatus::Signal(9),
            },
        ),
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
    let mut s = State::Stopped;
    let mut now = t0;
    let mut delays = Vec::new();
    let (n, _) = step(&s, Event::Start, now, &r).unwrap();
    s = n;
    for i in 0..8 {
        let (n, _) = step(&s, Event::Spawned { pid: 100 + i }, now, &r).unwrap();
        s = n;
        let (n, a) = step(
            &s,
            Event::Exited {
                status: ExitStatus::Code(1),
            },
            now,
            &r,
        )
        .unwrap();
        s = n;
        let until = a
            .iter()
            .find_map(|a| match a {
                Action::WakeAt(t) => Some(*t),
                _ => None,
            })
            .unwrap();
        delays.push(until - now);
        if i >= 4 {
            assert_eq!(s.name(), N::CrashLoop, "after {} failures", i + 1);
        } else {
            assert_eq!(s.name(), N::Backoff);
        }
        now = until;
        let (n, a) = step(&s, Event::Wake, now, &r).unwrap();
        assert_eq!(a, vec![Action::Spawn]);
        s = n;
    }
    assert_eq!(delays[0], Duration::ZERO);
    for w in delays.windows(2).skip(1) {
        assert!(w[1] > w[0], "delays grow: {delays:?}");
    }
}

#[test]
fn stable_run_resets_attempts() {
    let t0 = Instant::now();
    let r = rules();
    let at = |ms| t0 + Duration::from_millis(ms);
    let s = State::Running {
        pid: 1,
        since: at(0),
        attempt: 4,
    };
    let (s1, _) = step(&s, Event::ProbeOk, at(999), &r).unwrap();
    assert_eq!(
        s1,
        State::Running {
            pid: 1,
            since: at(0),
            attempt: 4
        }
    );
    let (s2, _) = step(&s1, Event::ProbeOk, at(1000), &r).unwrap();
    assert_eq!(
        s2,
        State::Running {
            pid: 1,
            since: at(0),
            attempt: 0
        }
    );
}

#[test]
fn shutdown_wins_in_every_state() {
    let t = Instant::now();
    let r = rules();
    let cases = [
        (State::Stopped, State::Stopped, vec![Action::Finish]),
        (State::Waiting, State::Stopped, vec![Action::Finish]),
        (State::Exited, State::Stopped, vec![Action::Finish]),
        (
            State::Starting {
                pid: 5,
                since: t,
                attempt: 0,
            },
            State::Stopping { pid: 5 },
            vec![Action::Terminate],
        ),
        (
            State::Running {
                pid: 5,
                since: t,
                attempt: 0,
            },
            State::Stopping { pid: 5 },
            vec![Action::Terminate],
        ),
        (
            State::Killing {
                pid: 5,
                reason: RestartReason::Manual,
                detected_at: t,
                attempt: 0,
                served: false,
            },
            State::Stopping { pid: 5 },
            vec![Action::Terminate],
        ),
        (
            State::Backoff {
                until: t,
                attempt: 2,
            },
            State::Stopped,
            vec![Action::Finish],
        ),
        (
            State::CrashLoop {
                until: t,
                attempt: 9,
            },
            State::Stopped,
            vec![Action::Finish],
        ),
        (
            State::Stopping { pid: 5 },
            State::Stopping { pid: 5 },
            vec![],
        ),
    ];
    for (from, to, actions) in cases {
        assert_eq!(
            step(&from, Event::Shutdown, t, &r).unwrap(),
            (to, actions),
            "from {from:?}"
        );
    }
}

#[test]
fn nothing_restarts_during_shutdown() {
    let t = Instant::now();
    let r = rules();
    let s = State::Stopping { pid: 5 };
    for e in [
        Event::RestartRequested,
        Event::ProbeFailed { layer: Layer::Grpc },
        Event::ProbeOk,
    ] {
        assert_eq!(step(&s, e, t, &r).unwrap(), (s.clone(), vec![]));
    }
    let (end, a) = step(
        &s,
        Event::Exited {
            status: ExitStatus::Code(0),
        },
        t,
        &r,
    )
    .unwrap();
    assert_eq!(end, State::Stopped);
    assert_eq!(a, vec![Action::ReapGroup, Action::Finish]);
    assert!(step(&end, Event::Wake, t, &r).is_err());
}

#[test]
fn manual_restart_is_graceful_and_not_a_failure() {
    let t = Instant::now();
    let r = rules();
    let s = State::Running {
        pid: 5,
        since: t,
        attempt: 2,
    };
    let (k, a) = step(&s, Event::RestartRequested, t, &r).unwrap();
    assert_eq!(a, vec![Action::Terminate]);
    let (sp, a) = step(
        &k,
        Event::Exited {
            status: ExitStatus::Code(0),
        },
        t,
        &r,
    )
    .unwrap();
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
    };
    let f = Event::ProbeFailed { layer: Layer::Port };
    assert_eq!(
        step(&s, f.clone(), t + Duration::from_secs(29), &r)
            .unwrap()
            .0,
        s
    );
    let (k, a) = step(&s, f, t + Duration::from_secs(30), &r).unwrap();
    assert_eq!(k.name(), N::Killing);
    assert_eq!(a, vec![Action::Kill]);
}

#[test]
fn a_condemned_unit_is_killed_at_once_as_unhealthy() {
    let t = Instant::now();
    let r = rules();
    let running = State::Running {
        pid: 5,
        since: t,
        attempt: 0,
    };
    let layer = Layer::Persistence;
    let (s, a) = step(&running, Event::Condemned { layer }, t, &r).unwrap();
    assert!(
        matches!(s, State::Killing { reason: RestartReason::Unhealthy { layer: l }, .. } if l == layer),
        "{s:?}"
    );
    assert_eq!(a[0], Action::Kill);
    let starting = State::Starting {
        pid: 5,
        since: t,
        attempt: 0,
    };
    assert_eq!(
        step(&starting, Event::Condemned { layer }, t, &r).unwrap(),
        (starting.clone(), vec![]),
        "not before it served"
    );
}

#[test]
fn a_reload_stops_gracefully_and_an_overlap_swaps_the_pid_without_a_failure() {
    let t = Instant::now();
    let r = rules();
    let running = State::Running {
        pid: 5,
        since: t,
        attempt: 1,
    };
    let trigger = "src/app.py".to_string();
    let (s, a) = step(
        &running,
        Event::Reload {
            trigger: trigger.clone(),
        },
        t,
        &r,
    )
    .unwrap();
    assert!(
        matches!(&s, State::Killing { reason: RestartReason::Reload { trigger: tr }, .. } if *tr == trigger),
        "{s:?}"
    );
    assert_eq!(a, vec![Action::Terminate]);
    let later = t + Duration::from_secs(1);
    let (s, a) = step(
        &running,
        Event::Replaced {
            pid: 9,
            trigger: trigger.clone(),
        },
        later,
        &r,
    )
    .unwrap();
    assert_eq!(
        s,
        State::Running {
            pid: 9,
            since: later,
            attempt: 0
        }
    );
    assert!(a.contains(&Action::Ready), "{a:?}");
    assert!(a.iter().any(|a| matches!(
        a,
        Action::RecordRestart {
            reason: RestartReason::Reload { .. },
            ..
        }
    )));
    // Before it ever served, a replacement is not taken.
    let starting = State::Starting {
        pid: 5,
        since: t,
        attempt: 0,
    };
    let (s, _) = step(&starting, Event::Replaced { pid: 9, trigger }, t, &r).unwrap();
    assert_eq!(s, starting);
}

#[test]
fn spawn_failure_is_paced_as_crash_loop() {
    let t = Instant::now();
    let r = rules();
    let (s, a) = step(
        &State::Spawning { attempt: 0 },
        Event::SpawnFailed {
            error: "port held".into(),
        },
        t,
        &r,
    )
    .unwrap();
    assert_eq!(s.name(), N::CrashLoop);
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::WakeAt(u) if *u - t >= Duration::from_millis(500))),
        "{a:?}"
    );
}

/// Which events each state takes, written out here on their own (not
/// read from the table `step` uses), one column per event: Start,
/// sPawned, spawn Failed, eXited, probe Ok, proBe failed, Condemned,
/// Tampered, Wake, Restart requested, reLoad, New process replaced it,
/// shutDown.
const TAKES: [&str; 11] = [
    "Waiting   S......T.RL.D",
    "Exited    .......T.RL.D",
    "Stopped   S......T.RL.D",
    "Spawning  .PF..........",
    "Starting  ...XOBCT.RLND",
    "Running   ...XOBCT.RLND",
    "Unhealthy ...XOBCT.RLND",
    "Killing   ...XOBCT.RLND",
    "Backoff   .......TWRL.D",
    "CrashLoop .......TWRL.D",
    "Stopping  ...XOBCT.RLND",
];

#[test]
fn step_takes_exactly_the_events_each_state_should_and_errs_on_the_rest() {
    let t = Instant::now();
    let r = rules();
    let samples = [
        State::Waiting,
        State::Exited,
        State::Stopped,
        State::Spawning { attempt: 0 },
        State::Starting {
            pid: 1,
            since: t,
            attempt: 0,
        },
        State::Running {
            pid: 1,
            since: t,
            attempt: 0,
        },
        State::Unhealthy {
            pid: 1,
            since: t,
            attempt: 0,
            failures: 1,
            layer: Layer::Port,
        },
        State::Killing {
            pid: 1,
            reason: RestartReason::StartTimeout,
            detected_at: t,
            attempt: 0,
            served: false,
        },
        State::Backoff {
            until: t,
            attempt: 1,
        },
        State::CrashLoop {
            until: t,
            attempt: 6,
        },
        State::Stopping { pid: 1 },
    ];
    let events = [
        Event::Start,
        Event::Spawned { pid: 2 },
        Event::SpawnFailed { error: "x".into() },
        Event::Exited {
            status: ExitStatus::Code(1),
        },
        Event::ProbeOk,
        Event::ProbeFailed { layer: Layer::Grpc },
        Event::Condemned {
            layer: Layer::Persistence,
        },
        Event::Tampered { layer: Layer::Lock },
        Event::Wake,
        Event::RestartRequested,
        Event::Reload {
            trigger: "src/app.py".into(),
        },
        Event::Replaced {
            pid: 9,
            trigger: "src/app.py".into(),
        },
        Event::Shutdown,
    ];
    for (s, row) in samples.iter().zip(TAKES) {
        let (name, takes) = row.split_at(10);
        assert_eq!(format!("{:?}", s.name()), name.trim(), "rows in order");
        for (e, want) in events.iter().zip(takes.chars()) {
            let result = step(s, e.clone(), t, &r);
            assert_eq!(result.is_ok(), want != '.', "{s:?} + {e:?}: {result:?}");
            if let Err(illegal) = result {
                assert_eq!(illegal.state, s.name());
            }
        }
    }
}

#[test]
fn serving_caps_the_failure_count_so_kill_cycles_never_crash_loop() {
    let t0 = Instant::now();
    let r = rules();
    let mut s = State::Stopped;
    let mut now = t0;
    let mut delays = Vec::new();
    s = step(&s, Event::Start, now, &r).unwrap().0;
    for i in 0..20 {
        s = step(&s, Event::Spawned { pid: 100 + i }, now, &r)
            .unwrap()
            .0;
        now += Duration::from_millis(150);
        s = step(&s, Event::ProbeOk, now, &r).unwrap().0;
        // Killed right after serving, 20 times in a row.
        let (n, a) = step(
            &s,
            Event::Exited {
                status: ExitStatus::Signal(9),
            },
            now,
            &r,
        )
        .unwrap();
        assert_eq!(n.name(), N::Backoff, "cycle {i}: never crash-loop");
        let until = a
            .iter()
            .find_map(|a| match a {
                Action::WakeAt(t) => Some(*t),
                _ => None,
            })
            .unwrap();
        delays.push(until - now);
        now = until;
        s = step(&n, Event::Wake, now, &r).unwrap().0;
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
    let running = State::Running {
        pid: 5,
        since: t,
        attempt: 0,
    };
    let exit = |code| Event::Exited {
        status: ExitStatus::Code(code),
    };
    let with = |restart| Rules { restart, ..rules() };
    let cases = [
        (RestartPolicy::Always, 0, N::Backoff),
        (RestartPolicy::Always, 1, N::Backoff),
        (RestartPolicy::OnFailure, 0, N::Exited),
        (RestartPolicy::OnFailure, 1, N::Backoff),
        (RestartPolicy::Never, 1, N::Exited),
    ];
    for (policy, code, want) in cases {
        let (s, a) = step(&running, exit(code), t, &with(policy)).unwrap();
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
    let (s, _) = step(&killing, exit(0), t, &with(RestartPolicy::OnFailure)).unwrap();
    assert_eq!(s.name(), N::Backoff);
    let (s, _) = step(&killing, exit(0), t, &with(RestartPolicy::Never)).unwrap();
    assert_eq!(s.name(), N::Exited);
    // A manual restart brings an exited service back; a shutdown ends it.
    let r = with(RestartPolicy::Never);
    assert_eq!(
        step(&State::Exited, Event::RestartRequested, t, &r).unwrap(),
        (State::Spawning { attempt: 0 }, vec![Action::Spawn])
    );
    assert_eq!(
        step(&State::Exited, Event::Shutdown, t, &r).unwrap(),
        (State::Stopped, vec![Action::Finish])
    );
}

#[test]
fn a_dependent_waits_until_started() {
    let t = Instant::now();
    let r = rules();
    assert_eq!(
        step(&State::Waiting, Event::RestartRequested, t, &r).unwrap(),
        (State::Waiting, vec![])
    );
    assert_eq!(
        step(&State::Waiting, Event::Start, t, &r).unwrap(),
        (State::Spawning { attempt: 0 }, vec![Action::Spawn])
    );
    assert_eq!(
        step(&State::Waiting, Event::Shutdown, t, &r).unwrap(),
        (State::Stopped, vec![Action::Finish])
    );
}

#[test]
fn tampered_files_are_repaired_and_never_restart_anything() {
    let t = Instant::now();
    let r = rules();
    let states = [
        State::Starting {
            pid: 1,
            since: t,
            attempt: 0,
        },
        State::Running {
            pid: 1,
            since: t,
            attempt: 0,
        },
        State::Backoff {
            until: t,
            attempt: 1,
        },
        State::Stopping { pid: 1 },
    ];
    for s in states {
        for layer in [Layer::Lock, Layer::PidFile] {
            assert_eq!(
                step(&s, Event::Tampered { layer }, t, &r).unwrap(),
                (s.clone(), vec![Action::Repair(layer)]),
                "{s:?}"
            );
        }
    }
}

/// The delay `actions` arm, relative to `now`.
fn delay_of(actions: &[Action], now: Instant) -> Duration {
    actions
        .iter()
        .find_map(|a| match a {
            Action::WakeAt(t) => Some(*t - now),
            _ => None,
        })
        .expect("a wake timer")
}

#[test]
fn no_slow_tail_a_run_that_served_is_restarted_at_once_however_briefly() {
    let r = rules();
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    let exit = Event::Exited {
        status: ExitStatus::Signal(9),
    };
    // Served for 0.3 s (below stable_after), killed: immediate.
    let brief = State::Running {
        pid: 1,
        since: at(0),
        attempt: 1,
    };
    let (s, a) = step(&brief, exit.clone(), at(300), &r).unwrap();
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
    let (_, a) = step(&hung, exit.clone(), at(10), &r).unwrap();
    assert_eq!(delay_of(&a, at(10)), Duration::ZERO);
    // The run after it fails again without serving: the delay grows.
    let starting = State::Starting {
        pid: 2,
        since: at(0),
        attempt: 1,
    };
    let (s, a) = step(&starting, exit.clone(), at(50), &r).unwrap();
    assert_eq!(s.attempt(), 2);
    assert_eq!(delay_of(&a, at(50)), r.policy.base);
    // A start timeout is not a served run either.
    let timed_out = State::Killing {
        pid: 2,
        reason: RestartReason::StartTimeout,
        detected_at: at(0),
        attempt: 2,
        served: false,
    };
    let (s, a) = step(&timed_out, exit, at(10), &r).unwrap();
    assert_eq!(s.attempt(), 3);
    assert!(delay_of(&a, at(10)) > r.policy.base);
}

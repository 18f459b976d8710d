//! Bounded HTTP load on a loopback endpoint: `wrk` when installed (fixed
//! duration, one thread, N keep-alive connections, `--latency`), else a
//! built-in closed-loop client with the same shape.

use crate::harness::sys;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// One load run's summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadResult {
    pub contender: String,
    pub path: String,
    pub tool: String,
    pub connections: u32,
    pub seconds: f64,
    pub requests: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Non-2xx responses plus socket errors.
    pub errors: u64,
}

/// Load `path` on 127.0.0.1:`port` for `secs` with `conns` connections.
pub fn run(
    contender: &str,
    port: u16,
    path: &str,
    secs: Duration,
    conns: u32,
    tool: &str,
) -> Result<LoadResult, String> {
    let wrk = if tool == "builtin" {
        None
    } else {
        sys::resolve("wrk")
    };
    match wrk {
        Some(wrk) => with_wrk(&wrk, contender, port, path, secs, conns),
        None if tool == "wrk" => Err("wrk not found (apt-get install wrk)".into()),
        None => builtin(contender, port, path, secs, conns),
    }
}

fn with_wrk(
    wrk: &std::path::Path,
    contender: &str,
    port: u16,
    path: &str,
    secs: Duration,
    conns: u32,
) -> Result<LoadResult, String> {
    let out = Command::new(wrk)
        .args(["-t1", &format!("-c{conns}")])
        .arg(format!("-d{}s", secs.as_secs().max(1)))
        .args(["--timeout", "2s", "--latency"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .map_err(|e| format!("wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "wrk exited with {}: {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut r = LoadResult {
        contender: contender.into(),
        path: path.into(),
        tool: format!("wrk -t1 -c{conns}"),
        connections: conns,
        seconds: secs.as_secs().max(1) as f64,
        requests: 0,
        rps: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        max_ms: f64::NAN,
        errors: 0,
    };
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["Latency", _avg, _sd, max, ..] => r.max_ms = wrk_ms(max).unwrap_or(f64::NAN),
            ["50%", v] => r.p50_ms = wrk_ms(v).unwrap_or(f64::NAN),
            ["99%", v] => r.p99_ms = wrk_ms(v).unwrap_or(f64::NAN),
            [n, "requests", "in", ..] => r.requests = n.parse().unwrap_or(0),
            ["Requests/sec:", v] => r.rps = v.parse().unwrap_or(0.0),
            ["Non-2xx", "or", "3xx", "responses:", n] => r.errors += n.parse::<u64>().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                r.errors += rest
                    .iter()
                    .filter_map(|t| t.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>()
            }
            _ => {}
        }
    }
    Ok(r)
}

/// wrk's "123.45us" / "1.20ms" / "2.00s" → ms.
fn wrk_ms(v: &str) -> Option<f64> {
    let (num, mult) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, 1.0)
    };
    num.parse::<f64>().ok().map(|x| x * mult)
}

fn builtin(
    contender: &str,
    port: u16,
    path: &str,
    secs: Duration,
    conns: u32,
) -> Result<LoadResult, String> {
    let end = Instant::now() + secs;
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let path = path.to_string();
            std::thread::spawn(move || client(port, &path, end))
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.join().map_err(|_| "load worker panicked".to_string())?;
        lat.extend(l);
        errors += e;
    }
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| crate::harness::report::percentile(&lat, p).unwrap_or(f64::NAN);
    Ok(LoadResult {
        contender: contender.into(),
        path: path.into(),
        tool: format!("built-in, {conns} keep-alive connections"),
        connections: conns,
        seconds: secs.as_secs_f64(),
        requests: lat.len() as u64,
        rps: lat.len() as f64 / secs.as_secs_f64(),
        p50_ms: q(50.0),
        p99_ms: q(99.0),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
        errors,
    })
}

/// One closed-loop keep-alive connection until `end`: latencies (ms) and errors.
fn client(port: u16, path: &str, end: Instant) -> (Vec<f64>, u64) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut conn: Option<BufReader<TcpStream>> = None;
    while Instant::now() < end {
        if conn.is_none() {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = s.set_nodelay(true);
                    conn = Some(BufReader::new(s));
                }
                Err(_) => {
                    errors += 1;
                    sys::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let r = conn.as_mut().unwrap();
        let t0 = Instant::now();
        match exchange(r, &req) {
            Ok(true) => lat.push(t0.elapsed().as_secs_f64() * 1000.0),
            Ok(false) => {
                lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                errors += 1;
            }
            Err(_) => {
                errors += 1;
                conn = None;
            }
        }
    }
    (lat, errors)
}

/// Send one request, read one response; Ok(2xx?).
fn exchange(r: &mut BufReader<TcpStream>, req: &str) -> std::io::Result<bool> {
    r.get_mut().write_all(req.as_bytes())?;
    let mut line = String::new();
    r.read_line(&mut line)?;
    let ok = line
        .split_whitespace()
        .nth(1)
        .is_some_and(|c| c.starts_with('2'));
    let mut len = None;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse::<usize>().ok();
        }
    }
    let len = len.ok_or_else(|| std::io::Error::other("no content-length"))?;
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(ok)
}

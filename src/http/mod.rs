//! The daemon's read-only HTTP server (axum): liveness, readiness, the
//! status document and Prometheus metrics. It only reads the supervisor's
//! published snapshot; no endpoint changes anything.
//!
//! - `/`: the status page (self-contained HTML that polls `/status`).
//! - `/livez`: 200 while the supervisor loop is alive (even mid-restart).
//! - `/readyz`, `/healthz`: 200 only while every unit (Temporal, each
//!   service) is ready; else 503. `/readyz/NAME`: one unit.
//! - `/status`: the [`StatusDoc`](crate::status::StatusDoc);
//!   `/status?check=live` adds a gRPC health check of Temporal made for
//!   the request (`live_check`), over a kept connection: what `start` and
//!   `status` ask for, so one request gives them the daemon's view and a
//!   real health answer.
//! - `/metrics`: Prometheus text format.
//!
//! [`server`] is the bounded accept loop under the router; the one HTTP
//! client is [`crate::http_client`], below the probes that use it.

pub mod server;

pub use server::serve;

use crate::grpc;
use crate::metrics::Metrics;
use crate::status::{LiveCheck, StatusDoc};
use crate::supervisor::Handle;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Longest any request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Shared, read-only state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The supervisor's handle (snapshot reader).
    pub handle: Handle,
    /// What the daemon is and runs with.
    pub info: crate::status::Info,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// A kept connection to Temporal's frontend (with its TLS and
    /// credentials), for live checks.
    pub temporal: grpc::Client,
    /// Host names served besides IP literals and `localhost`.
    pub allowed_hosts: Arc<Vec<String>>,
}

impl AppState {
    /// The state over `handle`, `info` and `metrics`.
    pub fn new(handle: Handle, info: crate::status::Info, metrics: Arc<Metrics>) -> Self {
        let now = info.get();
        let temporal = grpc::Client::new(now.config.connection().endpoint);
        let allowed_hosts = Arc::new(now.config.http_allowed_hosts.clone());
        AppState {
            handle,
            info,
            metrics,
            temporal,
            allowed_hosts,
        }
    }
}

/// The router with every endpoint.
pub fn router(state: AppState) -> Router {
    let hosts = state.allowed_hosts.clone();
    Router::new()
        .route("/", get(page))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/healthz", get(readyz))
        .route("/readyz/{name}", get(readyz_one))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(middleware::from_fn(deadline))
        .layer(middleware::from_fn(move |req, next| {
            host_check(hosts.clone(), req, next)
        }))
        .layer(middleware::from_fn(nosniff))
        .with_state(state)
}

/// Every answer says what it is: browsers must not guess another type.
async fn nosniff(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    resp
}

/// DNS rebinding defence: a web page can make a browser send requests to
/// this port under a DNS name the page controls, so only hosts that
/// cannot be rebound are served: any IP literal, `localhost` (and
/// `*.localhost`), and the names allowed with `--http-allowed-host`.
/// Others get 403 and no body from every endpoint that tells something;
/// the probes (`/livez`, `/readyz`), which must work behind any Service
/// name, and refusals (405, 404) answer as usual.
async fn host_check(allowed: Arc<Vec<String>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    // What tells something: the page, the document, the metrics, and
    // `/healthz`. Probes, and what is refused anyway (405, 404), pass.
    let reads = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) && matches!(path, "/" | "/status" | "/metrics" | "/healthz");
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
    if !reads || host.as_deref().is_none_or(|h| host_allowed(h, &allowed)) {
        return next.run(req).await;
    }
    tracing::debug!(host = ?host, path, "refused: Host not allowed");
    StatusCode::FORBIDDEN.into_response()
}

/// Is `host` (a `Host` header: name or IP, with an optional port) one
/// that no DNS answer can point here behind the user's back?
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.trim();
    // "[::1]:9233", "[::1]", "127.0.0.1:9233", "name:9233", "name".
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, _)) => return v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => host,
        }
    };
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || allowed
            .iter()
            .any(|a| a.trim_end_matches('.').eq_ignore_ascii_case(&name))
}

async fn deadline(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "request timed out\n").into_response(),
    }
}

/// Is supervision alive: its loop beating, every unit's supervisor running?
fn supervisor_alive(h: &Handle) -> bool {
    h.alive()
}

fn json(code: StatusCode, body: serde_json::Value) -> Response {
    (code, axum::Json(body)).into_response()
}

/// 200 while the supervisor loop beats and every unit's supervisor runs
/// (even mid-restart); the body says how long since the loop's last beat.
async fn livez(State(s): State<AppState>) -> Response {
    let state = s.handle.temporal_state();
    let beat_ms = s.handle.heartbeat.age().as_millis() as u64;
    if supervisor_alive(&s.handle) {
        json(
            StatusCode::OK,
            json!({"status": "alive", "state": state, "last_beat_ms": beat_ms}),
        )
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "dead", "state": state, "last_beat_ms": beat_ms}),
        )
    }
}

/// 200 only when every unit is ready; the body names Temporal's state and
/// any unit that is not ready.
async fn readyz(State(s): State<AppState>) -> Response {
    let snaps = s.handle.snapshots();
    let not_ready: Vec<&str> = snaps
        .iter()
        .filter(|(_, snap)| !snap.ready)
        .map(|(n, _)| n.as_str())
        .collect();
    let reasons: serde_json::Map<String, serde_json::Value> = snaps
        .iter()
        .filter(|(_, snap)| !snap.ready)
        .map(|(n, snap)| (n.clone(), snap.not_ready_reason().into()))
        .collect();
    let ok = not_ready.is_empty() && supervisor_alive(&s.handle);
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let status = if ok { "ready" } else { "not_ready" };
    // Temporal's state from the same snapshots the code was decided on: a
    // second look could say `stopping` beside a 200.
    let state = s
        .handle
        .temporal()
        .and_then(|t| snaps.iter().find(|(n, _)| *n == t.name))
        .map_or(crate::model::StateName::Stopped, |(_, snap)| snap.state);
    json(
        code,
        json!({"status": status, "state": state, "not_ready": not_ready, "reasons": reasons}),
    )
}

/// Readiness of one unit (`temporal` or a service).
async fn readyz_one(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    let Some(unit) = s.handle.unit(&name) else {
        return json(
            StatusCode::NOT_FOUND,
            json!({"status": "unknown", "error": format!("no service named {name:?}")}),
        );
    };
    let (ready, state, reason) = {
        let snap = unit.status.borrow();
        (
            snap.ready,
            snap.state,
            (!snap.ready).then(|| snap.not_ready_reason()),
        )
    };
    let ok = ready && unit.alive();
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        code,
        json!({"status": if ok { "ready" } else { "not_ready" }, "state": state, "service": name, "reason": reason}),
    )
}

/// The status page: one self-contained document (inline CSS and script,
/// nothing fetched from anywhere but this daemon's own `/status`).
const PAGE: &str = include_str!("page.html");

/// The page's policy: its own inline script and style, by hash (build.rs
/// computes them), and requests to this daemon only.
const PAGE_CSP: &str = concat!(
    "default-src 'none'; script-src 'sha256-",
    env!("PAGE_SCRIPT_SHA256"),
    "'; style-src 'sha256-",
    env!("PAGE_STYLE_SHA256"),
    "'; connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
);

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
        .into_response()
}

/// `/status` query: `check=live` asks for a live check.
#[derive(serde::Deserialize)]
struct StatusQuery {
    check: Option<String>,
}

/// Timeout of a live check.
const LIVE_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

async fn status(State(s): State<AppState>, Query(q): Query<StatusQuery>) -> Response {
    let live = match q.check.as_deref() {
        None => false,
        Some("live") => true,
        Some(other) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("unknown check {other:?} (known: live)\n"),
            )
                .into_response();
        }
    };
    axum::Json(s.status_doc(live).await).into_response()
}

impl AppState {
    /// The status document, with a live check of Temporal when `live`.
    pub async fn status_doc(&self, live: bool) -> StatusDoc {
        // The document is built while Temporal answers the check: the
        // join polls the check first (its request goes out), then builds.
        let check = async {
            match live {
                true => Some(live_check(&self.temporal).await),
                false => None,
            }
        };
        let build = async { StatusDoc::build(&self.handle.views(), &self.info.get()) };
        let (check, mut doc) = tokio::join!(check, build);
        doc.live_check = check;
        doc
    }
}

/// One gRPC health check of Temporal, now.
async fn live_check(client: &grpc::Client) -> LiveCheck {
    let t0 = std::time::Instant::now();
    let result =
        crate::health::health_call(client, crate::health::TEMPORAL_SERVICE, LIVE_CHECK_TIMEOUT)
            .await;
    let latency_ms = t0.elapsed().as_secs_f64() * 1e3;
    match result {
        Ok(detail) => LiveCheck {
            ok: true,
            latency_ms,
            detail,
        },
        Err(problem) => LiveCheck {
            ok: false,
            latency_ms,
            detail: problem.to_string(),
        },
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    match s.metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::options::Options;
    use crate::model::Policy;
    use crate::model::StateName;
    use crate::paths::StateDir;
    use crate::supervisor::Snapshot;
    use crate::supervisor::UnitHandle;
    use axum::body::Body;
    use clap::Parser;
    use tokio::sync::{mpsc, watch};
    use tower::ServiceExt;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        options: Options,
    }

    /// A unit handle over a snapshot channel the test controls.
    fn unit(name: &str) -> (UnitHandle, watch::Sender<Snapshot>) {
        let (tx, rx) = watch::channel(Snapshot::default());
        let (commands, _) = mpsc::channel(1);
        let h = UnitHandle {
            name: name.into(),
            kind: crate::model::Kind::of_name(name),
            links: Default::default(),
            status: rx,
            commands,
            log: Arc::default(),
            log_path: None,
        };
        (h, tx)
    }

    /// A router over Temporal and one service, "api".
    fn app_with_service() -> (Router, watch::Sender<Snapshot>, watch::Sender<Snapshot>) {
        let (t, ttx) = unit("temporal");
        let (api, atx) = unit("api");
        (router(state(vec![t, api])), ttx, atx)
    }

    /// A router over Temporal alone.
    fn app() -> (Router, watch::Sender<Snapshot>) {
        let (t, tx) = unit("temporal");
        (router(state(vec![t])), tx)
    }

    fn state(units: Vec<UnitHandle>) -> AppState {
        let options = Flags::parse_from(["x", "--headless"]).options;
        let info = crate::status::DaemonInfo {
            config: Config::new(StateDir::new("/tmp/h"), &options, &Default::default()).unwrap(),
            binary: "/bin/temporal".into(),
            started_at_unix_ms: 1,
            policy: Policy::default(),
        };
        let heartbeat = crate::supervisor::heartbeat::Heartbeat::default();
        heartbeat.beat();
        let metrics = Metrics::new().unwrap();
        for u in &units {
            metrics.observer(&u.name, u.kind);
        }
        AppState::new(
            Handle::new(units, heartbeat, tokio::sync::mpsc::channel(1).0),
            crate::status::Info::new(info),
            Arc::new(metrics),
        )
    }

    fn ready(tx: &watch::Sender<Snapshot>) {
        tx.send_modify(|s| {
            s.state = StateName::Running;
            s.ready = true;
        });
    }

    #[tokio::test]
    async fn readiness_needs_every_unit_and_each_has_its_own() {
        let (app, t, api) = app_with_service();
        ready(&t);
        let (code, body) = call(&app, "GET", "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("\"api\""), "names what is not ready: {body}");
        assert_eq!(
            call(&app, "GET", "/readyz/temporal").await.0,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, "GET", "/readyz/api").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        ready(&api);
        assert_eq!(call(&app, "GET", "/healthz").await.0, StatusCode::OK);
        assert_eq!(call(&app, "GET", "/readyz/api").await.0, StatusCode::OK);
        assert_eq!(
            call(&app, "GET", "/readyz/nope").await.0,
            StatusCode::NOT_FOUND
        );
    }

    async fn call(app: &Router, method: &str, path: &str) -> (StatusCode, String) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn every_endpoint_answers_from_the_snapshot() {
        let (app, tx) = app();
        assert_eq!(call(&app, "GET", "/livez").await.0, StatusCode::OK);
        for path in ["/readyz", "/healthz"] {
            let (code, body) = call(&app, "GET", path).await;
            assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{path}");
            assert!(body.contains("not_ready"), "{body}");
        }
        tx.send_modify(|s| {
            s.state = StateName::Running;
            s.ready = true;
        });
        for path in ["/readyz", "/healthz"] {
            let (code, body) = call(&app, "GET", path).await;
            assert_eq!(code, StatusCode::OK, "{path}");
            assert!(body.contains("\"running\""), "{body}");
        }
        let (code, body) = call(&app, "GET", "/status").await;
        assert_eq!(code, StatusCode::OK);
        let doc: StatusDoc = serde_json::from_str(&body).unwrap();
        assert!(doc.is_ready());
        assert_eq!(doc.temporal.ui_url, None);
        assert_eq!(doc.units[0].name, "temporal");
        let (code, body) = call(&app, "GET", "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("stigmer_temporal_up"), "{body}");
    }

    #[tokio::test]
    async fn a_live_check_that_fails_makes_the_document_not_ready() {
        let (t, tx) = unit("temporal");
        ready(&tx);
        let mut st = state(vec![t]);
        // An address nobody listens on: the check is refused at once.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        st.temporal = grpc::Client::new(grpc::Endpoint::plain(closed));
        let app = router(st);
        let (_, body) = call(&app, "GET", "/status").await;
        let doc: StatusDoc = serde_json::from_str(&body).unwrap();
        assert!(doc.is_ready() && doc.live_check.is_none(), "{body}");
        let (code, body) = call(&app, "GET", "/status?check=live").await;
        assert_eq!(code, StatusCode::OK);
        let doc: StatusDoc = serde_json::from_str(&body).unwrap();
        let live = doc.live_check.clone().expect("a live check");
        assert!(!live.ok && !live.detail.is_empty(), "{live:?}");
        assert!(!doc.is_ready());
        let (code, body) = call(&app, "GET", "/status?check=nope").await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(body.contains("live"), "{body}");
    }

    #[tokio::test]
    async fn a_dead_supervisor_is_not_alive_and_not_ready() {
        let (app, tx) = app();
        tx.send_modify(|s| {
            s.state = StateName::Running;
            s.ready = true;
        });
        drop(tx);
        assert_eq!(
            call(&app, "GET", "/livez").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            call(&app, "GET", "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn a_supervisor_loop_that_stopped_beating_is_not_alive() {
        let (t, tx) = unit("temporal");
        ready(&tx);
        let st = state(vec![t]);
        let app = router(st.clone());
        assert_eq!(call(&app, "GET", "/livez").await.0, StatusCode::OK);
        st.handle.heartbeat.stop_for_test();
        let (code, body) = call(&app, "GET", "/livez").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("last_beat_ms"), "{body}");
        assert_eq!(
            call(&app, "GET", "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn the_page_is_self_contained() {
        let (app, _tx) = app();
        let (code, body) = call(&app, "GET", "/").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.starts_with("<!doctype html>"));
        // No other host: no absolute URL, no protocol-relative one, nothing
        // loaded from elsewhere.
        for needle in [
            "http://",
            "https://",
            "src=\"//",
            "href=\"//",
            "@import",
            "url(",
        ] {
            assert!(!body.contains(needle), "{needle} in the page");
        }
        assert!(body.contains("fetch(\"/status\""));
    }

    async fn call_host(app: &Router, path: &str, host: &str) -> (StatusCode, String, Response) {
        let req = Request::builder()
            .uri(path)
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let mut r = Response::new(axum::body::Body::empty());
        *r.headers_mut() = headers;
        (status, String::from_utf8_lossy(&body).into_owned(), r)
    }

    #[tokio::test]
    async fn a_host_that_could_be_rebound_gets_nothing_but_the_probes() {
        let (app, tx) = app();
        ready(&tx);
        for path in ["/", "/status", "/metrics", "/healthz"] {
            let (code, body, _) = call_host(&app, path, "evil.example").await;
            assert_eq!(code, StatusCode::FORBIDDEN, "{path}");
            assert!(body.is_empty(), "{path}: no body, got {body}");
            for host in [
                "localhost",
                "localhost:9233",
                "127.0.0.1:9233",
                "[::1]:9233",
                "10.0.0.7",
                "app.localhost",
            ] {
                let (code, _, _) = call_host(&app, path, host).await;
                assert_eq!(code, StatusCode::OK, "{path} {host}");
            }
        }
        for path in ["/livez", "/readyz", "/readyz/temporal"] {
            assert_eq!(
                call_host(&app, path, "evil.example").await.0,
                StatusCode::OK,
                "{path}"
            );
        }
        assert!(host_allowed(
            "Stigmer.Default.svc:9233",
            &["stigmer.default.svc".into()]
        ));
        assert!(!host_allowed(
            "stigmer.default.svc.evil",
            &["stigmer.default.svc".into()]
        ));
        assert!(!host_allowed("[::1", &[]));
    }

    #[tokio::test]
    async fn every_answer_says_nosniff_and_the_page_allows_no_inline_code_but_its_own() {
        let (app, _tx) = app();
        for path in ["/", "/livez", "/status", "/metrics", "/nope"] {
            let (_, _, r) = call_host(&app, path, "127.0.0.1").await;
            assert_eq!(
                r.headers()[header::X_CONTENT_TYPE_OPTIONS],
                "nosniff",
                "{path}"
            );
        }
        let (_, _, r) = call_host(&app, "/", "127.0.0.1").await;
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(csp.matches("'sha256-").count(), 2, "{csp}");
    }

    #[tokio::test]
    async fn unknown_paths_and_writes_are_refused() {
        let (app, _tx) = app();
        assert_eq!(call(&app, "GET", "/admin").await.0, StatusCode::NOT_FOUND);
        for method in ["POST", "PUT", "DELETE"] {
            assert_eq!(
                call(&app, method, "/status").await.0,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_deadline_is_answered_503() {
        let slow = Router::new()
            .route("/slow", get(std::future::pending::<&'static str>))
            .layer(middleware::from_fn(deadline));
        let (code, body) = call(&slow, "GET", "/slow").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("timed out"));
    }
}

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
//! [`server`] is the bounded accept loop under the router; [`client`] is
//! the one HTTP client (CLI, tests, benchmark).

pub mod client;
pub mod server;

pub use server::serve;

use crate::health::GrpcChannel;
use crate::metrics::Metrics;
use crate::status::{DaemonInfo, LiveCheck, StatusDoc};
use crate::supervisor::{Handle, UnitHandle};
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
    pub info: Arc<DaemonInfo>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// A kept connection to Temporal's frontend, for live checks.
    pub temporal: GrpcChannel,
}

impl AppState {
    /// The state over `handle`, `info` and `metrics`.
    pub fn new(handle: Handle, info: Arc<DaemonInfo>, metrics: Arc<Metrics>) -> Self {
        let temporal = GrpcChannel::new(info.config.frontend());
        AppState {
            handle,
            info,
            metrics,
            temporal,
        }
    }
}

/// The router with every endpoint.
pub fn router(state: AppState) -> Router {
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
        .with_state(state)
}

async fn deadline(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "request timed out\n").into_response(),
    }
}

/// Is every unit's supervisor still running?
fn supervisor_alive(h: &Handle) -> bool {
    h.units.iter().all(UnitHandle::alive)
}

fn json(code: StatusCode, body: serde_json::Value) -> Response {
    (code, axum::Json(body)).into_response()
}

async fn livez(State(s): State<AppState>) -> Response {
    let state = s.handle.temporal().status.borrow().state;
    if supervisor_alive(&s.handle) {
        json(StatusCode::OK, json!({"status": "alive", "state": state}))
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "dead", "state": state}),
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
    let ok = not_ready.is_empty() && supervisor_alive(&s.handle);
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let status = if ok { "ready" } else { "not_ready" };
    json(
        code,
        json!({"status": status, "state": snaps[0].1.state, "not_ready": not_ready}),
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
    let (ready, state) = {
        let snap = unit.status.borrow();
        (snap.ready, snap.state)
    };
    let ok = ready && unit.alive();
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        code,
        json!({"status": if ok { "ready" } else { "not_ready" }, "state": state, "service": name}),
    )
}

/// The status page: one self-contained document (inline CSS and script,
/// nothing fetched from anywhere but this daemon's own `/status`).
const PAGE: &str = include_str!("page.html");

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
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
        let build = async { StatusDoc::build(&self.handle.snapshots(), &self.info) };
        let (check, mut doc) = tokio::join!(check, build);
        doc.live_check = check;
        doc
    }
}

/// One gRPC health check of Temporal, now.
async fn live_check(channel: &GrpcChannel) -> LiveCheck {
    let t0 = std::time::Instant::now();
    let result = channel
        .check(crate::health::TEMPORAL_SERVICE, LIVE_CHECK_TIMEOUT)
        .await;
    let latency_ms = t0.elapsed().as_secs_f64() * 1e3;
    match result {
        Ok(detail) => LiveCheck {
            ok: true,
            latency_ms,
            detail,
        },
        Err(detail) => LiveCheck {
            ok: false,
            latency_ms,
            detail,
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
    use crate::paths::StateDir;
    use crate::supervisor::Snapshot;
    use crate::supervisor::policy::Policy;
    use crate::supervisor::state::StateName;
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
            depends_on: vec![],
            status: rx,
            commands,
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
        let info = DaemonInfo {
            config: Config::new(StateDir::new("/tmp/h"), &options, &Default::default()).unwrap(),
            binary: "/bin/temporal".into(),
            started_at_unix_ms: 1,
            policy: Policy::default(),
        };
        AppState::new(
            Handle { units },
            Arc::new(info),
            Arc::new(Metrics::new().unwrap()),
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
        st.temporal = GrpcChannel::new(closed);
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

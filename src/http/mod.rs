//! The daemon's read-only HTTP server (axum): liveness, readiness, the
//! status document and Prometheus metrics. It only reads the supervisor's
//! published snapshot; no endpoint changes anything.
//!
//! - `/livez`: 200 while the supervisor loop is alive (even mid-restart).
//! - `/readyz`, `/healthz`: 200 only while Temporal serves; else 503.
//! - `/status`: the [`StatusDoc`](crate::status::StatusDoc).
//! - `/metrics`: Prometheus text format.
//!
//! [`server`] is the bounded accept loop under the router; [`client`] is
//! the one HTTP client (CLI, tests, benchmark).

pub mod client;
pub mod server;

pub use server::serve;

use crate::metrics::Metrics;
use crate::status::{DaemonInfo, StatusDoc};
use crate::supervisor::Handle;
use axum::Router;
use axum::extract::{Request, State};
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
}

/// The router with every endpoint.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/healthz", get(readyz))
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

fn supervisor_alive(h: &Handle) -> bool {
    // The actor owns the sender: once it is gone, the loop is dead.
    h.status.has_changed().is_ok()
}

async fn livez(State(s): State<AppState>) -> Response {
    let state = s.handle.status.borrow().state;
    if supervisor_alive(&s.handle) {
        (
            StatusCode::OK,
            axum::Json(json!({"status": "alive", "state": state})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "dead", "state": state})),
        )
            .into_response()
    }
}

async fn readyz(State(s): State<AppState>) -> Response {
    let (ready, state) = {
        let snap = s.handle.status.borrow();
        (snap.ready, snap.state)
    };
    let ok = ready && supervisor_alive(&s.handle);
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({"status": if ok { "ready" } else { "not_ready" }, "state": state});
    (code, axum::Json(body)).into_response()
}

async fn status(State(s): State<AppState>) -> Response {
    let snap = s.handle.status.borrow().clone();
    axum::Json(StatusDoc::build(&snap, &s.info)).into_response()
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

    /// A router over a snapshot channel the test controls.
    fn app() -> (Router, watch::Sender<Snapshot>) {
        let (tx, rx) = watch::channel(Snapshot::default());
        let (commands, _) = mpsc::channel(1);
        let options = Flags::parse_from(["x", "--headless"]).options;
        let info = DaemonInfo {
            config: Config::new(StateDir::new("/tmp/h"), &options, &Default::default()).unwrap(),
            binary: "/bin/temporal".into(),
            started_at_unix_ms: 1,
            policy: Policy::default(),
        };
        let state = AppState {
            handle: Handle {
                status: rx,
                commands,
            },
            info: Arc::new(info),
            metrics: Arc::new(Metrics::new().unwrap()),
        };
        (router(state), tx)
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

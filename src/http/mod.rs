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

//! The daemon's read-only HTTP server (axum): liveness, readiness, the
//! status document and Prometheus metrics. It only reads the supervisor's
//! published snapshot; no endpoint changes anything.
//!
//! - `/livez`: 200 while the supervisor loop is alive (even mid-restart).
//! - `/readyz`, `/healthz`: 200 only while Temporal serves; else 503.
//! - `/status`: the [`StatusDoc`](crate::status::StatusDoc).
//! - `/metrics`: Prometheus text format.

use crate::metrics::Metrics;
use crate::status::{Static, StatusDoc};
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
    /// Static facts for the status document.
    pub st: Arc<Static>,
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

/// Most connections served at once; more are closed at accept, so a flood
/// costs the daemon a bounded amount of memory and CPU.
const MAX_CONNECTIONS: usize = 128;
/// A client must send its request headers within this time (slowloris).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one connection.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Largest request head accepted (bigger ones get 431 and are closed).
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Serve `router` on `listener` until `shutdown` resolves. HTTP/1.1 only,
/// with a header read timeout, a bounded request head, a capped
/// connection lifetime and a cap on concurrent connections.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // EMFILE and friends: back off briefly instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream); // shed load
            continue;
        };
        let svc = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_REQUEST_HEAD);
            let conn = http.serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
            drop(slot);
        });
    }
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
    axum::Json(StatusDoc::build(&snap, &s.st)).into_response()
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

/// A minimal HTTP/1.1 GET for the CLI (status, readiness) on loopback:
/// returns (status code, body). Bounded by `timeout` and 4 MiB.
pub fn get_local(
    addr: std::net::SocketAddr,
    path: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.take(4 << 20).read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("malformed HTTP response"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("malformed HTTP status line"))?;
    Ok((code, body.to_string()))
}

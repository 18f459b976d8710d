//! The bounded accept loop under the router: HTTP/1.1 only, a header read
//! timeout (slowloris), a bounded request head, a capped connection
//! lifetime and a cap on concurrent connections; at shutdown it stops
//! accepting and lets in-flight requests finish, for a bounded time.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// Most connections served at once; more are closed at accept, so a flood
/// costs the daemon a bounded amount of memory and CPU.
pub const MAX_CONNECTIONS: usize = 128;
/// A client must send its request headers within this time (slowloris).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one connection.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Largest request head accepted (bigger ones get 431 and are closed).
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// At shutdown, how long in-flight requests may take to finish.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Serve `router` on `listener` until `shutdown` resolves, then stop
/// accepting, ask every open connection to finish its current request and
/// close, and wait for them up to [`DRAIN_TIMEOUT`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (drain_tx, drain_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
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
        let mut drain = drain_rx.clone();
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_REQUEST_HEAD);
            let conn = http.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let lifetime = tokio::time::sleep(CONNECTION_LIFETIME);
            tokio::select! {
                _ = &mut conn => {}
                () = lifetime => {}
                () = async { let _ = drain.wait_for(|d| *d).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN_TIMEOUT, conn).await;
                }
            }
            drop(slot);
        });
    }
    drop(listener); // new connections are refused from here on
    let _ = drain_tx.send(true);
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(all)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::client::get_from;
    use axum::routing::get;
    use std::net::SocketAddr;
    use tokio::sync::{Notify, oneshot};

    /// Serve a router whose `/slow` says it started, then answers after
    /// `delay` (never, when `None`).
    async fn start(
        delay: Option<Duration>,
    ) -> (
        SocketAddr,
        Arc<Notify>,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let started = Arc::new(Notify::new());
        let s = started.clone();
        let router = Router::new().route(
            "/slow",
            get(move || async move {
                s.notify_one();
                match delay {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
                "done"
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, async move {
            let _ = stop_rx.await;
        }));
        (addr, started, stop_tx, server)
    }

    fn get_slow(
        addr: SocketAddr,
    ) -> tokio::task::JoinHandle<Result<crate::http::client::Answer, String>> {
        tokio::task::spawn_blocking(move || get_from(addr, "/slow", Duration::from_secs(30)))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_lets_an_in_flight_request_finish_and_refuses_new_ones() {
        let (addr, started, stop, server) = start(Some(Duration::from_millis(200))).await;
        let client = get_slow(addr);
        started.notified().await;
        stop.send(()).unwrap();
        let answer = client
            .await
            .unwrap()
            .expect("the in-flight request is answered");
        assert_eq!((answer.status, answer.body.as_str()), (200, "done"));
        server.await.unwrap().unwrap();
        assert!(
            get_slow(addr).await.unwrap().is_err(),
            "no request after shutdown"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn draining_is_bounded() {
        let (addr, started, stop, server) = start(None).await;
        let client = get_slow(addr);
        started.notified().await;
        stop.send(()).unwrap();
        // A request that never finishes cannot hold shutdown forever: the
        // server returns, and the client is cut off.
        server.await.unwrap().unwrap();
        assert!(client.await.unwrap().is_err());
    }
}

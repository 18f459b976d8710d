//! The bounded accept loop under the router: HTTP/1.1 only, a header read
//! timeout (slowloris), a bounded request head, a capped connection
//! lifetime, an idle timeout, and a cap on concurrent connections that
//! keep-alive clients cannot use to starve new ones (when every slot is
//! taken, the connection idle longest makes room); at shutdown it stops
//! accepting and lets in-flight requests finish, for a bounded time.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;

/// Most connections served at once; a flood costs the daemon a bounded
/// amount of memory and CPU.
pub const MAX_CONNECTIONS: usize = 128;
/// A client must send its request headers within this time (slowloris).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one connection.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// A keep-alive connection with no request for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a new connection waits for the slot an eviction frees.
const EVICTION_WAIT: Duration = Duration::from_millis(250);
/// Largest request head accepted (bigger ones get 431 and are closed).
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// At shutdown, how long in-flight requests may take to finish.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// One connection, as the accept loop sees it.
struct Conn {
    /// Requests being answered.
    busy: AtomicUsize,
    /// When the last request ended (ms since the server's epoch).
    last_active_ms: AtomicU64,
    /// Asked to close (to make room).
    evict: Notify,
}

/// Every open connection, to find one to close when all slots are taken.
#[derive(Default)]
struct Conns {
    epoch: Option<Instant>,
    next: u64,
    open: HashMap<u64, Arc<Conn>>,
}

impl Conns {
    fn now_ms(&self) -> u64 {
        self.epoch.map_or(0, |e| e.elapsed().as_millis() as u64)
    }

    /// Track a new connection.
    fn open(&mut self) -> (u64, Arc<Conn>) {
        let now = self.now_ms();
        let id = self.next;
        self.next += 1;
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(now),
            evict: Notify::new(),
        });
        self.open.insert(id, conn.clone());
        (id, conn)
    }

    /// Ask the connection that has been idle longest to close; false when
    /// every connection is busy.
    fn evict_idlest(&self) -> bool {
        let idlest = self
            .open
            .values()
            .filter(|c| c.busy.load(Ordering::Acquire) == 0)
            .min_by_key(|c| c.last_active_ms.load(Ordering::Acquire));
        match idlest {
            Some(c) => {
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Serve `router` on `listener` until `shutdown` resolves, then stop
/// accepting, ask every open connection to finish its current request and
/// close, and wait for them up to [`DRAIN_TIMEOUT`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let conns = Arc::new(Mutex::new(Conns {
        epoch: Some(Instant::now()),
        ..Conns::default()
    }));
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
        let Some(slot) = slot(&slots, &conns).await else {
            drop(stream); // shed load: every connection is busy
            continue;
        };
        let (id, conn) = lock(&conns).open();
        tokio::spawn(connection(
            stream,
            router.clone(),
            Tracked {
                id,
                conn,
                conns: conns.clone(),
            },
            drain_rx.clone(),
            slot,
        ));
    }
    drop(listener); // new connections are refused from here on
    let _ = drain_tx.send(true);
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(all)).await;
    Ok(())
}

/// A slot for a new connection: a free one, or (every slot taken) the one
/// the idlest keep-alive connection frees when asked to make room, so a
/// new client (a liveness probe) is answered. `None` only when every
/// connection is busy with a request.
async fn slot(slots: &Arc<Semaphore>, conns: &Mutex<Conns>) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return Some(slot);
    }
    if !lock(conns).evict_idlest() {
        return None;
    }
    tokio::time::timeout(EVICTION_WAIT, slots.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// One open connection, as the accept loop tracks it.
struct Tracked {
    id: u64,
    conn: Arc<Conn>,
    conns: Arc<Mutex<Conns>>,
}

impl Tracked {
    /// How long since its last request ended, when none is in progress.
    fn idle_for(&self) -> Option<Duration> {
        let now = lock(&self.conns).now_ms();
        let last = self.conn.last_active_ms.load(Ordering::Acquire);
        (self.conn.busy.load(Ordering::Acquire) == 0)
            .then(|| Duration::from_millis(now.saturating_sub(last)))
    }
}

/// Serve one connection until it ends, its lifetime is up, it is idle too
/// long, it is asked to make room, or the server drains.
async fn connection(
    stream: tokio::net::TcpStream,
    router: Router,
    t: Tracked,
    mut drain: watch::Receiver<bool>,
    slot: OwnedSemaphorePermit,
) {
    let service = {
        let (conn, conns) = (t.conn.clone(), t.conns.clone());
        hyper::service::service_fn(move |req| {
            let (router, conn, conns) = (router.clone(), conn.clone(), conns.clone());
            conn.busy.fetch_add(1, Ordering::AcqRel);
            async move {
                let resp = router.oneshot(req).await;
                let now = lock(&conns).now_ms();
                conn.last_active_ms.store(now, Ordering::Release);
                conn.busy.fetch_sub(1, Ordering::AcqRel);
                resp
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD);
    let c = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(c);
    let lifetime = tokio::time::sleep(CONNECTION_LIFETIME);
    tokio::pin!(lifetime);
    let close = loop {
        let idle = t.idle_for();
        let idle_left = IDLE_TIMEOUT.saturating_sub(idle.unwrap_or_default());
        tokio::select! {
            _ = &mut c => break false,
            () = &mut lifetime => break false,
            () = t.conn.evict.notified() => break true,
            () = async { let _ = drain.wait_for(|d| *d).await; } => break true,
            () = tokio::time::sleep(idle_left), if idle.is_some() => {
                if t.idle_for().is_some_and(|d| d >= IDLE_TIMEOUT) {
                    break true;
                }
            }
        }
    };
    if close {
        // Idle: closes at once; mid-request: after this answer.
        c.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, c).await;
    }
    lock(&t.conns).open.remove(&t.id);
    drop(slot);
}

fn lock(c: &Mutex<Conns>) -> std::sync::MutexGuard<'_, Conns> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_client::get_from;
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
    ) -> tokio::task::JoinHandle<Result<crate::http_client::Answer, crate::http_client::Error>>
    {
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

    /// A keep-alive connection that has made one request and stays open.
    fn keep_alive(addr: SocketAddr) -> std::net::TcpStream {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /fast HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        s
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keep_alive_clients_cannot_starve_a_new_one() {
        let router = Router::new().route("/fast", get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, async move {
            let _ = stopped.await;
        }));
        // Every slot held by an idle keep-alive client, and more waiting.
        let held = tokio::task::spawn_blocking(move || {
            (0..MAX_CONNECTIONS + 20)
                .map(|_| keep_alive(addr))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        assert_eq!(held.len(), MAX_CONNECTIONS + 20);
        let fresh =
            tokio::task::spawn_blocking(move || get_from(addr, "/fast", Duration::from_secs(5)))
                .await
                .unwrap()
                .expect("a new client is answered");
        assert_eq!((fresh.status, fresh.body.as_str()), (200, "ok"));
        drop(held);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
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

//! HTTP clients. [`get`]: `ureq` (blocking, small, no async runtime; it
//! handles chunked bodies and keeps the response's status even when it is
//! not 2xx): the CLI reads the daemon's `/status` with it, the tests and
//! the benchmark every endpoint and Prometheus' API. [`Kept`]: hyper's
//! HTTP/1 client on the caller's runtime over a kept connection, for the
//! services' HTTP checks, which the daemon makes every second per service
//! for as long as it runs.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest body read (Prometheus range queries in the tests are the big ones).
const MAX_BODY: u64 = 64 << 20;

/// A transport failure (nothing listens, a timeout, a broken answer).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(#[from] ureq::Error);

/// An HTTP answer: status code and body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body, as text.
    pub body: String,
}

/// GET `url`, each phase (connect, send, headers, body) bounded by
/// `timeout`. Any status is an answer; only a transport failure is an
/// error. (Per-phase rather than global: with a global timeout ureq
/// resolves even an IP literal on a thread of its own, a cost the short
/// `status` command would pay on every call.)
pub fn get(url: &str, timeout: Duration) -> Result<Answer, Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(timeout))
        .timeout_send_request(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .timeout_recv_body(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        // One request per agent: nothing to keep alive.
        .max_idle_connections(0)
        // Buffers sized for our small requests and answers (bodies stream
        // through them): the 128 KiB defaults are zeroed on every call, a
        // measurable part of a `status` (docs/benchmark.md).
        .input_buffer_size(16 * 1024)
        .output_buffer_size(2 * 1024)
        .build()
        .into();
    let mut response = agent.get(url).call()?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()?;
    Ok(Answer { status, body })
}

/// GET `path` (with its query) from the server at `addr`.
pub fn get_from(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Answer, Error> {
    get(&format!("http://{addr}{path}"), timeout)
}

/// Largest body a check reads: a longer one still answers (its status
/// counts), but its connection is dropped rather than drained.
const CHECK_BODY: usize = 64 << 10;

/// One `http://` URL, asked again and again on the caller's tokio runtime
/// over a connection kept between calls. With a big stack these checks
/// are most of the idle daemon's work: a kept connection saves the TCP
/// connect and close, and no blocking-pool thread is woken per check
/// (docs/benchmark.md, round three). Clones share the connection.
#[derive(Clone)]
pub struct Kept {
    target: Arc<Result<Target, String>>,
    conn: Arc<Mutex<Option<Conn>>>,
}

/// Where a [`Kept`] connects and what it asks.
struct Target {
    url: String,
    /// For the connect: no brackets around an IPv6 literal.
    host: String,
    port: u16,
    /// The `Host` header.
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL ({e})"))?;
        if uri.scheme_str() != Some("http") {
            return Err("only http:// URLs are checked".into());
        }
        let host = uri.host().ok_or("the URL has no host")?;
        let authority = match uri.port_u16() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        Ok(Target {
            url: url.to_string(),
            host: host.trim_start_matches('[').trim_end_matches(']').into(),
            port: uri.port_u16().unwrap_or(80),
            authority,
            path: uri.path_and_query().map_or("/", |p| p.as_str()).into(),
        })
    }
}

/// A connection and the task that drives it (stopped with it).
struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Why a [`Kept`] call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum KeptError {
    /// The URL cannot be asked.
    #[error("{0}")]
    Url(String),
    /// Nothing accepted the connection.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The exchange broke.
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// No answer in time.
    #[error("no answer in time")]
    Timeout,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept").field("url", &self.url()).finish()
    }
}

impl Kept {
    /// A client of `url`, not connected yet.
    pub fn new(url: &str) -> Kept {
        Kept {
            target: Arc::new(Target::parse(url)),
            conn: Arc::default(),
        }
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        match self.target.as_ref() {
            Ok(t) => &t.url,
            Err(_) => "",
        }
    }

    /// Forget the connection; the next call makes a new one.
    pub fn reset(&self) {
        self.slot().take();
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Conn>> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// GET the URL, the whole exchange bounded by `timeout`: its status
    /// code, whatever it is (the body is read up to a cap and dropped).
    pub async fn get(&self, timeout: Duration) -> Result<u16, KeptError> {
        let target = self
            .target
            .as_ref()
            .as_ref()
            .map_err(|e| KeptError::Url(e.clone()))?;
        tokio::time::timeout(timeout, self.exchange(target))
            .await
            .map_err(|_| KeptError::Timeout)?
    }

    async fn exchange(&self, t: &Target) -> Result<u16, KeptError> {
        let kept = self.slot().take().filter(|c| !c.sender.is_closed());
        if let Some(conn) = kept {
            // A server may close an idle connection just as it is reused:
            // asked again once, on a new one (a GET changes nothing).
            if let Ok(status) = self.ask(t, conn).await {
                return Ok(status);
            }
        }
        let stream = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(KeptError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        self.ask(t, Conn { sender, driver }).await
    }

    /// One request on `conn`; the connection is kept if it can be.
    async fn ask(&self, t: &Target, mut conn: Conn) -> Result<u16, KeptError> {
        conn.sender.ready().await?;
        let request = hyper::Request::get(t.path.as_str())
            .header(hyper::header::HOST, t.authority.as_str())
            .header(
                hyper::header::USER_AGENT,
                concat!("stigmer/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .expect("a GET of a parsed URL");
        let response = conn.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut read = 0;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                read += data.len();
                if read > CHECK_BODY {
                    return Ok(status);
                }
            }
        }
        *self.slot() = Some(conn);
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A one-shot server that answers with `response` verbatim.
    fn serve_once(response: &'static str) -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            s.write_all(response.as_bytes()).unwrap();
        });
        addr
    }

    #[test]
    fn reads_chunked_bodies_and_non_2xx_statuses() {
        let addr = serve_once(
            "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        );
        let a = get_from(addr, "/readyz", Duration::from_secs(5)).unwrap();
        assert_eq!(a.status, 503);
        assert_eq!(a.body, "hello world");
    }

    #[test]
    fn nothing_listening_is_an_error() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(get_from(addr, "/", Duration::from_secs(1)).is_err());
    }

    /// A server that answers every request on a connection with
    /// `response`, `per_conn` requests at most per connection (then it
    /// closes, without saying so), and counts the connections it took.
    fn serve(response: String, per_conn: usize) -> (SocketAddr, Arc<AtomicUsize>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let response = response.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    for _ in 0..per_conn {
                        // Our requests are one small write each.
                        match s.read(&mut buf) {
                            Ok(n) if n > 0 => {}
                            _ => return,
                        }
                        if s.write_all(response.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    use std::sync::atomic::{AtomicUsize, Ordering};

    const OK_11: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    #[tokio::test]
    async fn kept_asks_again_on_the_same_connection() {
        let (addr, accepted) = serve(OK_11.into(), usize::MAX);
        let k = Kept::new(&format!("http://{addr}/healthz"));
        for _ in 0..5 {
            assert_eq!(k.get(Duration::from_secs(5)).await.unwrap(), 200);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        // A new process: a new connection.
        k.reset();
        assert_eq!(k.get(Duration::from_secs(5)).await.unwrap(), 200);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn kept_reconnects_when_the_server_closes() {
        // HTTP/1.0 closes after each answer, and says so.
        let (addr, accepted) = serve(
            "HTTP/1.0 204 No Content\r\nContent-Length: 0\r\n\r\n".into(),
            1,
        );
        let k = Kept::new(&format!("http://{addr}/"));
        for _ in 0..3 {
            assert_eq!(k.get(Duration::from_secs(5)).await.unwrap(), 204);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        // HTTP/1.1 that closes an idle connection without saying so: the
        // reuse fails and the same call asks again on a new connection.
        let (addr, accepted) = serve(OK_11.into(), 1);
        let k = Kept::new(&format!("http://{addr}/"));
        for _ in 0..3 {
            assert_eq!(k.get(Duration::from_secs(5)).await.unwrap(), 200);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn kept_reports_statuses_big_bodies_silence_and_refusals() {
        let (addr, _) = serve(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown".into(),
            usize::MAX,
        );
        let k = Kept::new(&format!("http://{addr}/"));
        assert_eq!(k.get(Duration::from_secs(5)).await.unwrap(), 503);
        // A body past the cap: the status counts, the connection goes.
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n{}",
            "x".repeat(CHECK_BODY + 1),
            n = CHECK_BODY + 1
        );
        let (addr, accepted) = serve(big, usize::MAX);
        let k = Kept::new(&format!("http://{addr}/"));
        assert_eq!(k.get(Duration::from_secs(5)).await.unwrap(), 200);
        assert_eq!(k.get(Duration::from_secs(5)).await.unwrap(), 200);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // Connects (into the backlog), never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let k = Kept::new(&format!("http://{}/", silent.local_addr().unwrap()));
        let e = k.get(Duration::from_millis(200)).await.unwrap_err();
        assert!(matches!(e, KeptError::Timeout), "{e}");
        // Nothing listens.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = Kept::new(&format!("http://{addr}/"))
            .get(Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, KeptError::Connect(_)), "{e}");
        let e = Kept::new("https://example.com/")
            .get(Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, KeptError::Url(_)), "{e}");
    }
}

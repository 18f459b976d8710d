//! The one HTTP client: `ureq` (blocking, small, no async runtime; it
//! handles chunked bodies and keeps the response's status even when it is
//! not 2xx). The services' HTTP probes use it, the CLI reads the daemon's
//! `/status` with it, the tests and the benchmark every endpoint and
//! Prometheus' API.

use std::net::SocketAddr;
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
}

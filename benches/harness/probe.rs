//! Temporal's gRPC health check (the crate's own client, one fresh
//! connection per call) and a minimal HTTP/1.1 GET for the daemon's
//! endpoints.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Asks Temporal's frontend whether it serves.
pub struct Grpc {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
}

impl Grpc {
    /// Prober for 127.0.0.1:`port`.
    pub fn new(port: u16) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        Grpc {
            rt,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// `grpc.health.v1.Health/Check` answered SERVING within `timeout`?
    pub fn serving(&self, timeout: Duration) -> bool {
        self.rt
            .block_on(stigmer::health::grpc_health(self.addr, timeout))
            .is_ok()
    }
}

/// GET `path` from 127.0.0.1:`port`; `(status code, body)`.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad response: {:.80}", text))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

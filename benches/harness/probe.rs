//! Temporal's gRPC health check (the crate's own client, one fresh
//! connection per call) and the crate's HTTP client for the daemon's
//! endpoints.

use std::net::SocketAddr;
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
            .block_on(stigmer::health::grpc_health(
                self.addr,
                stigmer::health::TEMPORAL_SERVICE,
                timeout,
            ))
            .is_ok()
    }
}

/// GET `path` from 127.0.0.1:`port`; `(status code, body)`.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    stigmer::http_client::get_from(addr, path, timeout)
        .map(|a| (a.status, a.body))
        .map_err(|e| e.to_string())
}

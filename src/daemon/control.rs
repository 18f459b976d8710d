//! The control socket (`HOME/control.sock`): how `stigmer local restart
//! SERVICE` asks the daemon to act. The HTTP API stays read-only; this
//! socket lives in the private state directory (0700) and serves only the
//! user who runs the daemon. One request line, one answer line:
//!
//! ```text
//! restart NAME   →   ok | error <what is wrong>
//! status [live]  →   the status document (JSON, one line), as `/status`
//!                    (`?check=live`) answers it
//! ```
//!
//! The CLI reads the status here (a Unix socket: no TCP handshake, no HTTP
//! client in a command that lasts two milliseconds) and falls back to
//! HTTP when the socket does not answer.

use crate::http::AppState;
use crate::supervisor::Command;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Longest a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The listening socket; removed when dropped.
pub struct Control {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Control {
    /// Listen at `path` (a leftover socket of a dead daemon is replaced:
    /// we hold the lock, so nothing else serves there).
    pub fn bind(path: &Path) -> std::io::Result<Control> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        Ok(Control {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Serve requests against `state` until the task is dropped.
    pub async fn serve(self, state: AppState) {
        let me = nix::unistd::geteuid().as_raw();
        loop {
            let Ok((stream, _)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            if !stream.peer_cred().is_ok_and(|c| c.uid() == me) {
                continue;
            }
            let state = state.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &state)).await;
            });
        }
    }
}

async fn answer(stream: UnixStream, state: &AppState) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let handle = &state.handle;
    let request = line.trim();
    let reply = match request.split_once(' ').unwrap_or((request, "")) {
        ("status", check @ ("" | "live")) => {
            let doc = state.status_doc(check == "live").await;
            serde_json::to_string(&doc).unwrap_or_else(|e| format!("error {e}"))
        }
        ("restart", name) if !name.is_empty() => match handle.unit(name.trim()) {
            Some(unit) => {
                tracing::info!(unit = %unit.name, "restart requested");
                match unit.commands.send(Command::Restart).await {
                    Ok(()) => "ok".to_string(),
                    Err(_) => format!("error {name} is no longer supervised"),
                }
            }
            None => format!("error no service named {name:?}"),
        },
        _ => format!("error unknown request {:?}", line.trim()),
    };
    write.write_all(format!("{reply}\n").as_bytes()).await
}

/// Send `request` to the daemon of the socket at `path`; its answer line
/// (an `error ...` answer is the error).
pub fn query(path: &Path, request: &str, timeout: Duration) -> Result<String, String> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| format!("cannot reach the daemon at {}: {e}", path.display()))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    writeln!(s, "{request}").map_err(|e| e.to_string())?;
    let mut reply = String::new();
    std::io::BufReader::new(s)
        .read_line(&mut reply)
        .map_err(|e| format!("no answer from the daemon: {e}"))?;
    let reply = reply.trim_end();
    match reply.strip_prefix("error ") {
        Some(e) => Err(e.to_string()),
        None if reply.is_empty() => Err("the daemon closed the connection".into()),
        None => Ok(reply.to_string()),
    }
}

/// Send `request` to the daemon of the socket at `path`; Ok on `ok`.
pub fn request(path: &Path, request: &str) -> Result<(), String> {
    match query(path, request, REQUEST_TIMEOUT)?.as_str() {
        "ok" => Ok(()),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

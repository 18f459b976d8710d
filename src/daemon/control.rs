//! The control socket (`HOME/control.sock`): how `stigmer local restart
//! SERVICE` asks the daemon to act. The HTTP API stays read-only; this
//! socket lives in the private state directory (0700) and serves only the
//! user who runs the daemon. One request line, one answer line:
//!
//! ```text
//! restart NAME   →   ok | error <what is wrong>
//! upgrade {JSON} →   ok {JSON} | error <why>   (answered by the daemon in
//!                    charge after the handover: see `super::upgrade`)
//! status [live]  →   the status document (JSON, one line), as `/status`
//!                    (`?check=live`) answers it
//! ```
//!
//! The CLI reads the status here (a Unix socket: no TCP handshake, no HTTP
//! client in a command that lasts two milliseconds) and falls back to
//! HTTP when the socket does not answer.

use crate::http::AppState;
use crate::supervisor::Command;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

/// Longest a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What `stigmer local upgrade` asks for (the request line's JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Upgrade {
    /// The binary that takes over.
    pub binary: PathBuf,
}

/// An upgrade request, with the connection to answer on (by whichever
/// daemon ends up in charge).
#[derive(Debug)]
pub struct UpgradeRequest {
    /// What was asked.
    pub upgrade: Upgrade,
    /// The requesting client.
    pub client: std::os::unix::net::UnixStream,
}

/// The listening socket, bound and not yet served.
pub struct Control {
    listener: UnixListener,
    path: PathBuf,
}

/// The control socket being served.
pub struct Serving {
    task: tokio::task::JoinHandle<()>,
    /// A second fd on the listening socket: it stays bound and queues
    /// connections while an upgrade hands it to the next daemon.
    socket: OwnedFd,
    path: PathBuf,
}

impl Serving {
    /// Stop serving; `remove`: unlink the socket too (at shutdown).
    pub fn close(self, remove: bool) {
        self.task.abort();
        if remove {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// Stop serving and keep the listening socket for the next daemon.
    pub fn hand_over(self) -> OwnedFd {
        self.task.abort();
        self.socket
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

    /// The listening socket a previous daemon handed over.
    pub fn adopt(socket: OwnedFd, path: &Path) -> std::io::Result<Control> {
        let std = std::os::unix::net::UnixListener::from(socket);
        std.set_nonblocking(true)?;
        Ok(Control {
            listener: UnixListener::from_std(std)?,
            path: path.to_path_buf(),
        })
    }

    /// Serve requests against `state` until closed; upgrade requests go
    /// to `upgrades` (the daemon acts on them).
    pub fn serve(
        self,
        state: AppState,
        upgrades: mpsc::Sender<UpgradeRequest>,
    ) -> std::io::Result<Serving> {
        let socket = self.listener.as_fd().try_clone_to_owned()?;
        let path = self.path.clone();
        let task = tokio::spawn(async move {
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
                let upgrades = upgrades.clone();
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &state, &upgrades))
                            .await;
                });
            }
        });
        Ok(Serving { task, socket, path })
    }
}

async fn answer(
    stream: UnixStream,
    state: &AppState,
    upgrades: &mpsc::Sender<UpgradeRequest>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let mut stream = reader.into_inner();
    let handle = &state.handle;
    let request = line.trim();
    let reply = match request.split_once(' ').unwrap_or((request, "")) {
        ("status", check @ ("" | "live")) => {
            let doc = state.status_doc(check == "live").await;
            serde_json::to_string(&doc).unwrap_or_else(|e| format!("error {e}"))
        }
        ("upgrade", json) => match serde_json::from_str::<Upgrade>(json) {
            Ok(upgrade) => {
                let client = stream.into_std()?;
                client.set_nonblocking(false)?;
                let mut spare = client.try_clone()?;
                return match upgrades.try_send(UpgradeRequest { upgrade, client }) {
                    // The daemon in charge at the end answers.
                    Ok(()) => Ok(()),
                    Err(_) => {
                        use std::io::Write;
                        writeln!(spare, "error an upgrade is already in progress")
                    }
                };
            }
            Err(e) => format!("error unreadable upgrade request: {e}"),
        },
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
    stream.write_all(format!("{reply}\n").as_bytes()).await
}

/// Send `request` to the daemon of the socket at `path`; its answer line
/// (an `error ...` answer is the error).
pub fn query(path: &Path, request: &str, timeout: Duration) -> Result<String, String> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| format!("cannot reach the daemon at {}: {e}", path.display()))?;
    // Only a daemon of this user is believed (or given a request): the
    // socket's directory is ours, but trust is checked, not assumed.
    let peer = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| format!("cannot identify the daemon at {}: {e}", path.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    if peer.uid() != me {
        return Err(format!(
            "{} is served by uid {}, not by you (uid {me}): not asked",
            path.display(),
            peer.uid()
        ));
    }
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    // One write: the daemon reads a line, and a line in two writes costs
    // it a second wake-up.
    s.write_all(format!("{request}\n").as_bytes())
        .map_err(|e| e.to_string())?;
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

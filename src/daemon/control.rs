//! The control socket (`HOME/control.sock`): the daemon's side of
//! [`crate::ipc::control`]. It answers status, restart and upgrade
//! requests (and 0.1.0's text lines, in kind) from processes of the user
//! who runs it; the HTTP API stays read-only. The CLI reads the status
//! here (no TCP handshake, no HTTP client in a command that lasts two
//! milliseconds) and falls back to HTTP when the socket does not answer.

use crate::http::AppState;
use crate::ipc::control::{Reply, Request};
use crate::supervisor::Command;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

/// Longest a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// An upgrade request, with the connection to answer on (by whichever
/// daemon ends up in charge).
#[derive(Debug)]
pub struct UpgradeRequest {
    /// The binary that takes over.
    pub binary: PathBuf,
    /// The requesting client.
    pub client: Client,
}

/// A reload request: the daemon applies it and answers on `reply`.
#[derive(Debug)]
pub struct ReloadRequest {
    /// Plan only.
    pub dry_run: bool,
    /// Where the answer goes.
    pub reply: tokio::sync::oneshot::Sender<Reply>,
}

/// Where the daemon takes the requests it carries out itself.
#[derive(Debug, Clone)]
pub struct Requests {
    /// Upgrades.
    pub upgrades: mpsc::Sender<UpgradeRequest>,
    /// Reloads.
    pub reloads: mpsc::Sender<ReloadRequest>,
}

/// A client's connection, and the protocol it speaks.
#[derive(Debug)]
pub struct Client {
    /// The connection.
    pub stream: std::os::unix::net::UnixStream,
    /// It asked in 0.1.0's text, and is answered in it.
    pub legacy: bool,
}

impl Client {
    /// Answer with `reply`, in the client's protocol (a client that has
    /// gone away is not an error).
    pub fn answer(&mut self, reply: &Reply) {
        use std::io::Write;
        let line = if self.legacy {
            let mut l = reply.legacy().into_bytes();
            l.push(b'\n');
            l
        } else {
            crate::ipc::encode(reply)
        };
        let _ = self.stream.write_all(&line);
    }
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
    pub fn serve(self, state: AppState, requests: Requests) -> std::io::Result<Serving> {
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
                let requests = requests.clone();
                tokio::spawn(async move {
                    let _ = answer(stream, &state, &requests).await;
                });
            }
        });
        Ok(Serving { task, socket, path })
    }
}

async fn answer(stream: UnixStream, state: &AppState, requests: &Requests) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream).take(crate::ipc::MAX_LINE);
    let mut line = Vec::new();
    // A client that does not send its request in time is dropped; a
    // request may take longer (a reload stops removed services).
    tokio::time::timeout(REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let mut stream = reader.into_inner().into_inner();
    let (request, legacy) = if line.first() == Some(&b'{') {
        (
            crate::ipc::decode::<Request>(&line).map_err(|e| e.to_string()),
            false,
        )
    } else {
        let text = String::from_utf8_lossy(&line);
        let r =
            Request::from_legacy(&text).ok_or_else(|| format!("unknown request {:?}", text.trim()));
        (r, true)
    };
    let reply = match request {
        Ok(Request::Upgrade { binary }) => {
            let stream = stream.into_std()?;
            stream.set_nonblocking(false)?;
            let mut spare = Client {
                stream: stream.try_clone()?,
                legacy,
            };
            let client = Client { stream, legacy };
            // The daemon in charge at the end answers.
            if requests
                .upgrades
                .try_send(UpgradeRequest { binary, client })
                .is_err()
            {
                spare.answer(&Reply::error("an upgrade is already in progress"));
            }
            return Ok(());
        }
        Ok(Request::Status { live }) => Reply::Status {
            document: Box::new(state.status_doc(live).await),
        },
        Ok(Request::Restart { unit }) => restart(state, unit.as_deref()).await,
        Ok(Request::Reload { dry_run }) => {
            let (reply, answer) = tokio::sync::oneshot::channel();
            match requests.reloads.try_send(ReloadRequest { dry_run, reply }) {
                Ok(()) => answer
                    .await
                    .unwrap_or_else(|_| Reply::error("the daemon is stopping")),
                Err(_) => busy("reloads are already queued"),
            }
        }
        Err(why) => Reply::error(why),
    };
    let line = if legacy {
        let mut l = reply.legacy().into_bytes();
        l.push(b'\n');
        l
    } else {
        crate::ipc::encode(&reply)
    };
    stream.write_all(&line).await
}

/// Restart unit `name` (Temporal when `None`).
async fn restart(state: &AppState, name: Option<&str>) -> Reply {
    let unit = match name {
        Some(name) => state.handle.unit(name),
        None => state.handle.temporal(),
    };
    let Some(unit) = unit else {
        return Reply::error(format!("no service named {:?}", name.unwrap_or_default()));
    };
    let name = &unit.name;
    tracing::info!(unit = %name, "restart requested");
    match tokio::time::timeout(BUSY_AFTER, unit.commands.send(Command::Restart)).await {
        Ok(Ok(())) => Reply::Restarting { unit: name.clone() },
        Ok(Err(_)) => Reply::error(format!("{name} is no longer supervised")),
        Err(_) => busy(&format!("{name} has too many commands queued")),
    }
}

/// How long a command waits for room in a unit's queue before the
/// daemon answers that it is busy.
const BUSY_AFTER: Duration = Duration::from_secs(2);

/// "Busy; try again" (exit 16): nothing was done.
fn busy(why: &str) -> Reply {
    Reply::Failed {
        code: crate::model::Code::Busy,
        message: format!("the daemon is busy ({why}); try again"),
    }
}

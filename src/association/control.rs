//! The control socket: `hostrole associate | replace | disassociate | status`
//! talk to the running daemon over a Unix socket.
//!
//! One JSON request line, one JSON response line, then the connection
//! closes. Anyone may ask for `status` (it holds no secret); changes are
//! accepted only from root or members of the configured admin group, as
//! the kernel reports the peer (`SO_PEERCRED`). Every change, and every
//! refused attempt, is logged as an audit line with the caller's uid and pid.

use std::io::{BufRead, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Mutex};

use crate::association::state;
use crate::clock::{rfc3339_seconds, SharedClock};
use crate::credentials::refresh::{RefresherHandle, Snapshot};
use crate::credentials::revoke::SessionRevoker;
use crate::metrics::Metrics;
use crate::net::slots::{Holder, Slots};
use crate::role::Association;

/// Longest request line accepted.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// How long associate and replace wait for the new role's first credentials.
pub const FIRST_FETCH_WAIT: Duration = Duration::from_secs(10);
/// Time a client has to send its request, and to take the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most control connections open at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Most control connections one user holds at once.
pub const MAX_CONNECTIONS_PER_UID: usize = 8;

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Associate a role; fails if one is associated.
    Associate(RoleRequest),
    /// Replace the associated role; fails if none is.
    Replace(RoleRequest),
    /// Remove the associated role.
    Disassociate,
    /// Report the daemon's state.
    Status,
}

/// The role part of associate and replace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RoleRequest {
    /// The role ARN.
    pub role_arn: String,
    /// `sts:ExternalId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// `RoleSessionName`; the host name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
}

/// The daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Response {
    /// Whether the request was carried out.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Done, but something optional failed (e.g. revoking sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// Set when the caller lacks permission.
    #[serde(default)]
    pub permission_denied: bool,
    /// The state after the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

/// What `hostrole status` shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Status {
    /// The associated role ARN.
    pub role: Option<String>,
    /// `sts` or `local`.
    pub source: String,
    /// Whether credentials are being served right now.
    pub serving: bool,
    /// The served access key id.
    pub access_key_id: Option<String>,
    /// When the served credentials expire.
    pub expiration: Option<String>,
    /// When the last successful refresh happened.
    pub last_refresh: Option<String>,
    /// When the next refresh is planned.
    pub next_refresh: Option<String>,
    /// Why credentials are not served, or why the last refresh failed.
    pub last_error: Option<String>,
    /// Tokens issued since start.
    pub tokens_issued: u64,
    /// IMDS requests answered since start.
    pub requests: u64,
    /// The daemon's pid.
    pub pid: u32,
}

/// Builds the status view of a snapshot.
pub fn status_of(snapshot: &Snapshot, clock: &SharedClock, metrics: &Metrics) -> Status {
    let usable = snapshot.usable(clock.now(), clock.boot_time());
    Status {
        role: snapshot.association.as_ref().map(|a| a.role.to_string()),
        source: snapshot.source.to_owned(),
        serving: usable.is_some(),
        access_key_id: usable.map(|c| c.access_key_id.clone()),
        expiration: usable.map(|c| rfc3339_seconds(c.expiration)),
        last_refresh: snapshot.last_refresh.map(rfc3339_seconds),
        next_refresh: snapshot.next_refresh.map(rfc3339_seconds),
        last_error: snapshot.last_error.clone(),
        tokens_issued: metrics.tokens_issued_total(),
        requests: metrics.requests_total(),
        pid: std::process::id(),
    }
}

/// Binds the control socket, replacing a stale one, mode 0666 (access is
/// checked per request with `SO_PEERCRED`).
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        if !parent.exists() {
            std::fs::create_dir_all(parent)?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a file that is not a socket is in the way",
                ));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another daemon is listening on it",
                ));
            }
            std::fs::remove_file(path)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// What the control server needs.
#[derive(Debug)]
pub struct Control {
    /// The refresher, to change the association.
    pub refresher: RefresherHandle,
    /// Latest snapshot.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Where the association is persisted.
    pub state_dir: PathBuf,
    /// Members of this group may change the association too.
    pub admin_gid: Option<u32>,
    /// Clocks.
    pub clock: SharedClock,
    /// Metrics, also read for the status.
    pub metrics: Arc<Metrics>,
    /// Revokes a removed role's sessions on the AWS side, if configured.
    pub revoker: Option<Arc<SessionRevoker>>,
    /// Serialises changes.
    pub changes: Mutex<()>,
    /// Log lines about refused callers, bounded.
    pub refusals: crate::logbudget::LogBudget,
}

/// Who is asking, as the kernel reports the peer when it connected
/// (`SO_PEERCRED`, `SO_PEERGROUPS`): nothing is read from `/proc`, which
/// the packaged sandbox hides.
#[derive(Debug, Clone)]
pub struct Caller {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub groups: Vec<u32>,
    /// Process id, when the kernel says.
    pub pid: Option<i32>,
}

impl Control {
    fn may_change(&self, caller: &Caller) -> bool {
        if caller.uid == 0 {
            return true;
        }
        self.admin_gid
            .is_some_and(|gid| crate::net::peer::is_member(gid, caller.gid, &caller.groups))
    }

    fn status(&self) -> Status {
        let snap = self.snapshots.borrow().clone();
        status_of(&snap, &self.clock, &self.metrics)
    }

    fn refuse(&self, error: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(error.into()),
            warning: None,
            permission_denied: false,
            status: Some(self.status()),
        }
    }

    /// Carries out one request.
    pub async fn execute(&self, request: Request, caller: Caller) -> Response {
        let op = match &request {
            Request::Associate(_) => "associate",
            Request::Replace(_) => "replace",
            Request::Disassociate => "disassociate",
            Request::Status => {
                return Response {
                    ok: true,
                    error: None,
                    warning: None,
                    permission_denied: false,
                    status: Some(self.status()),
                }
            }
        };
        if !self.may_change(&caller) {
            if let Some(suppressed) = self.refusals.take() {
                tracing::warn!(target: "audit", uid = caller.uid, pid = caller.pid, op, suppressed, "refused: permission denied");
            }
            return Response {
                ok: false,
                error: Some(format!(
                    "permission denied: {op} needs root or the admin group (caller uid {})",
                    caller.uid
                )),
                warning: None,
                permission_denied: true,
                status: None,
            };
        }
        let _serial = self.changes.lock().await;
        let current = self.snapshots.borrow().association.clone();
        let new = match request {
            Request::Associate(r) | Request::Replace(r) => match role_request(r) {
                Ok(a) => Some(a),
                Err(e) => return self.refuse(e),
            },
            _ => None,
        };
        match (op, &current) {
            ("associate", Some(cur)) => {
                return self.refuse(format!(
                    "a role is already associated ({}); use `hostrole replace` to change it",
                    cur.role
                ))
            }
            ("replace" | "disassociate", None) => {
                return self.refuse("no role is associated; use `hostrole associate` first")
            }
            _ => {}
        }
        match self.set(new, op, Some(&caller), "control-socket").await {
            Ok(warning) => Response {
                ok: true,
                error: None,
                warning,
                permission_denied: false,
                status: Some(self.status()),
            },
            Err(e) => self.refuse(e),
        }
    }

    /// Persists and applies a new association, and writes the audit line,
    /// which names the `source` of the change (`control-socket`,
    /// `config-reload`). Callers serialise through `changes`.
    /// On success, returns a warning if revoking the old role's sessions failed.
    async fn set(
        &self,
        new: Option<Association>,
        op: &str,
        caller: Option<&Caller>,
        source: &'static str,
    ) -> Result<Option<String>, String> {
        let (uid, pid) = (caller.map(|c| c.uid), caller.and_then(|c| c.pid));
        let current = self.snapshots.borrow().association.clone();
        // The write ends with fsync: off the runtime, so a slow disk holds
        // up this command only, never the IMDS answers.
        let (dir, to_store) = (self.state_dir.clone(), new.clone());
        let stored =
            tokio::task::spawn_blocking(move || state::store_association(&dir, to_store.as_ref()))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = stored {
            tracing::error!(target: "audit", uid, pid, op, source, error = %e, "change not saved; nothing changed");
            return Err(format!("cannot save the change, nothing changed: {e}"));
        }
        let old_role = current.as_ref().map(|a| a.role.to_string());
        let new_role = new.as_ref().map(|a| a.role.to_string());
        let published = self
            .refresher
            .set_association(new)
            .await
            .map_err(|e| e.to_string())?;
        if current.is_some() && old_role != new_role {
            self.metrics.observe_revocation();
        }
        tracing::info!(
            target: "audit",
            uid,
            pid,
            op,
            source,
            old_role = old_role.as_deref().unwrap_or("none"),
            new_role = new_role.as_deref().unwrap_or("none"),
            "association changed"
        );
        // The old credentials are no longer served; optionally make them
        // useless on the AWS side too.
        let mut warnings = Vec::new();
        if let (Some(revoker), Some(old)) = (&self.revoker, &current) {
            if new_role.as_deref() != Some(old.role.as_str()) {
                match revoker.revoke_older_sessions(&old.role).await {
                    Ok(()) => {
                        tracing::info!(target: "audit", uid, pid, op, role = %old.role,
                            "sessions issued before now revoked on the AWS side");
                    }
                    Err(e) => {
                        tracing::error!(target: "audit", uid, pid, op, role = %old.role, error = %e,
                            "could not revoke the removed role's sessions");
                        warnings.push(format!(
                            "the role was removed, but its sessions could not be revoked: {e}"
                        ));
                    }
                }
            }
        }
        if published.association.is_some() {
            warnings.extend(self.await_first_fetch(published.generation).await);
        }
        Ok((!warnings.is_empty()).then(|| warnings.join("; ")))
    }

    /// Waits (at most [`FIRST_FETCH_WAIT`]) for the first fetch of a newly
    /// associated role, so that the command returns with its credentials
    /// served, or says why not.
    async fn await_first_fetch(&self, generation: u64) -> Option<String> {
        let mut snapshots = self.snapshots.clone();
        let waited = tokio::time::timeout(
            FIRST_FETCH_WAIT,
            snapshots.wait_for(|s| {
                s.generation != generation || s.served.is_some() || s.last_error.is_some()
            }),
        )
        .await;
        match waited {
            Ok(Ok(s)) if s.generation == generation && s.served.is_none() => Some(format!(
                "the role is associated, but its credentials could not be obtained: {}",
                s.last_error.as_deref().unwrap_or("unknown error")
            )),
            Ok(_) => None,
            Err(_) => Some(format!(
                "the role is associated, but STS has not answered within {}s; its credentials will be served once it does",
                FIRST_FETCH_WAIT.as_secs()
            )),
        }
    }

    /// Applies the role named by a re-read configuration whose role changed
    /// since the last load, if it differs from the current association.
    /// `Err`: nothing changed; `Ok(Some(warning))`: changed, with a warning.
    pub async fn apply_configured(
        &self,
        configured: Option<Association>,
    ) -> Result<Option<String>, String> {
        let _serial = self.changes.lock().await;
        let current = self.snapshots.borrow().association.clone();
        match configured {
            Some(new) if current.as_ref() != Some(&new) => {
                let op = if current.is_some() {
                    "replace"
                } else {
                    "associate"
                };
                self.set(Some(new), op, None, "config-reload").await
            }
            _ => Ok(None),
        }
    }
}

fn role_request(r: RoleRequest) -> Result<Association, String> {
    Association::new(&r.role_arn, r.external_id, r.session_name).map_err(|e| e.to_string())
}

/// Serves the control socket until `shutdown` completes. Connections are
/// bounded: [`MAX_CONNECTIONS`] at once, [`MAX_CONNECTIONS_PER_UID`] per
/// user, each with [`MAX_REQUEST_BYTES`] and [`REQUEST_TIMEOUT`] to ask and
/// as long to take the answer; past a bound the connection is refused at
/// once, so no local user can exhaust the daemon's descriptors or memory.
pub async fn serve(
    listener: UnixListener,
    control: Arc<Control>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Slots::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_UID, false);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let caller = match peer_of(&stream) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: cannot identify the caller; closing");
                continue;
            }
        };
        let slot = match slots.acquire(Holder::Uid(caller.uid)) {
            Ok(slot) => slot,
            Err(why) => {
                if let Some(suppressed) = control.refusals.take() {
                    tracing::warn!(
                        uid = caller.uid,
                        pid = caller.pid,
                        suppressed,
                        "control socket: {why}; refusing"
                    );
                }
                let mut answer = serde_json::to_vec(&Response {
                    ok: false,
                    error: Some(format!("the daemon is busy ({why}); try again")),
                    warning: None,
                    permission_denied: false,
                    status: None,
                })
                .expect("plain data serializes");
                answer.push(b'\n');
                // Best effort, never waiting: the socket buffer takes it.
                let _ = stream.try_write(&answer);
                continue;
            }
        };
        let control = control.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, caller, &control).await {
                tracing::debug!(error = %e, "control connection ended with an error");
            }
            drop(slot);
        });
    }
}

/// The caller at the other end of a control connection.
fn peer_of(stream: &UnixStream) -> std::io::Result<Caller> {
    use std::os::fd::AsFd;
    let cred = stream.peer_cred()?;
    Ok(Caller {
        uid: cred.uid(),
        gid: cred.gid(),
        groups: crate::net::peer::unix_peer_groups(stream.as_fd())?,
        pid: cred.pid(),
    })
}

async fn connection(stream: UnixStream, caller: Caller, control: &Control) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read);
    let mut line = Vec::new();
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut limited = (&mut reader).take(MAX_REQUEST_BYTES as u64 + 1);
        limited.read_until(b'\n', &mut line).await
    })
    .await;
    let response = match read {
        Err(_) => return Ok(()),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(_)) if line.len() > MAX_REQUEST_BYTES => Response {
            ok: false,
            error: Some("request too large".into()),
            warning: None,
            permission_denied: false,
            status: None,
        },
        Ok(Ok(_)) => match serde_json::from_slice::<Request>(&line) {
            Ok(request) => control.execute(request, caller).await,
            Err(e) => Response {
                ok: false,
                error: Some(format!("malformed request: {e}")),
                warning: None,
                permission_denied: false,
                status: None,
            },
        },
    };
    let mut out = serde_json::to_vec(&response).expect("plain data serializes");
    out.push(b'\n');
    // A caller that does not read its answer does not hold the slot.
    match tokio::time::timeout(REQUEST_TIMEOUT, async {
        write.write_all(&out).await?;
        write.shutdown().await
    })
    .await
    {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

/// A client-side failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot reach the hostrole daemon at {path}: {source} (is it running? pass --control-socket if it listens elsewhere)")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The exchange failed midway.
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The daemon's answer was not understood.
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
}

/// Sends one request and waits (at most 30 s) for the answer.
pub fn call(path: &Path, request: &Request) -> Result<Response, ClientError> {
    let mut stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
    let io_err = |source| ClientError::Io {
        path: path.to_owned(),
        source,
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io_err)?;
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .map_err(io_err)?;
    let mut body = serde_json::to_vec(request).expect("plain data serializes");
    body.push(b'\n');
    stream.write_all(&body).map_err(io_err)?;
    let mut line = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut line)
        .map_err(io_err)?;
    serde_json::from_str(&line)
        .map_err(|e| ClientError::Protocol(format!("{e}: {:?}", line.trim())))
}

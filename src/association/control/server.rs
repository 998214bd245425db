//! The daemon's side of the control socket. Anyone may ask for `status`
//! (it holds no secret); changes are accepted only from root or members of
//! the configured admin group, as the kernel reports the peer
//! (`SO_PEERCRED`, `SO_PEERGROUPS`), and are carried out by the
//! [`AssociationService`]. Every refused attempt is logged as an audit line
//! with the caller's uid and pid.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::protocol::{status_of, Request, Response, RoleRequest, Status, MAX_REQUEST_BYTES};
use crate::association::service::{Actor, AssociationService, Change};
use crate::clock::SharedClock;
use crate::consumers::ConsumerTokens;
use crate::credentials::base_key::Rotator;
use crate::credentials::refresh::Snapshot;
use crate::logbudget::LogBudget;
use crate::metrics::Metrics;
use crate::net::accept::accept_until;
use crate::net::slots::{Holder, Slots};
use crate::role::Association;

/// Time a client has to send its request, and to take the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most control connections open at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Most control connections one user holds at once.
pub const MAX_CONNECTIONS_PER_UID: usize = 8;

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
    /// Carries out changes.
    pub service: Arc<AssociationService>,
    /// Latest snapshot, for the status.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Members of this group may change the association too.
    pub admin_gid: Option<u32>,
    /// The daemon's own user, who may change it as root may: a developer's
    /// daemon run as themselves takes their own commands. (The packaged
    /// service's dynamic user runs nothing else.)
    pub owner_uid: u32,
    /// Clocks.
    pub clock: SharedClock,
    /// Metrics, read for the status.
    pub metrics: Arc<Metrics>,
    /// Log lines about refused callers, bounded.
    pub refusals: LogBudget,
    /// Rotates the base key (issuer sts).
    pub rotator: Option<Arc<Rotator>>,
    /// The container endpoint's consumers.
    pub consumers: Arc<ConsumerTokens>,
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
        if caller.uid == 0 || caller.uid == self.owner_uid {
            return true;
        }
        self.admin_gid
            .is_some_and(|gid| crate::net::peergroups::is_member(gid, caller.gid, &caller.groups))
    }

    fn status(&self) -> Status {
        let snap = self.snapshots.borrow().clone();
        let mut status = status_of(&snap, &self.clock, &self.metrics);
        if let Some(rotator) = &self.rotator {
            let key = rotator.status();
            status.base_key = key.key;
            status.base_key_created = key.created;
            status.base_key_age_days = key.age_days;
            status.base_key_last_rotation = key.last_rotation;
            status.base_key_rotation = key.pending;
        }
        status
    }

    pub(super) fn answer(&self, result: Result<Option<String>, String>) -> Response {
        let (ok, error, warning) = match result {
            Ok(warning) => (true, None, warning),
            Err(e) => (false, Some(e), None),
        };
        Response {
            ok,
            error,
            warning,
            done: None,
            token: None,
            consumers: None,
            permission_denied: false,
            status: Some(self.status()),
        }
    }

    /// `rotate-base-key`, for a caller allowed to change things.
    async fn rotate(&self, caller: &Caller) -> Response {
        let Some(rotator) = &self.rotator else {
            return self.answer(Err(
                "rotate-base-key: the base key is an IAM user's access key, used with issuer = \"sts\" only".into(),
            ));
        };
        tracing::info!(target: "audit", uid = caller.uid, pid = caller.pid, "base key rotation asked");
        match rotator.rotate().await {
            Ok(r) => Response {
                done: Some(format!(
                    "rotated: {} replaces {}; the old key is inactive and deleted at {}",
                    r.new,
                    r.old,
                    crate::clock::rfc3339_seconds(r.old_deleted_at)
                )),
                ..self.answer(Ok(r.warning))
            },
            Err(e) => {
                tracing::warn!(error = %e, "base key rotation failed");
                self.answer(Err(format!("rotate-base-key: {e}")))
            }
        }
    }

    /// Carries out one request.
    pub async fn execute(&self, request: Request, caller: Caller) -> Response {
        let op = match &request {
            Request::Status => return self.answer(Ok(None)),
            Request::Associate(_) => "associate",
            Request::Replace(_) => "replace",
            Request::Disassociate => "disassociate",
            Request::RotateBaseKey => "rotate-base-key",
            Request::ContainerTokenCreate(_) => "container-token create",
            Request::ContainerTokenList => "container-token list",
            Request::ContainerTokenRevoke(_) => "container-token revoke",
        };
        if !self.may_change(&caller) {
            if let Some(suppressed) = self.refusals.take() {
                tracing::warn!(target: "audit", uid = caller.uid, pid = caller.pid, op, suppressed, "refused: permission denied");
            }
            return Response {
                permission_denied: true,
                ..Response::error(format!(
                    "permission denied: {op} needs root or the admin group, or the daemon's own user \
                     (caller uid {}, daemon uid {})",
                    caller.uid, self.owner_uid
                ))
            };
        }
        let change = match request {
            Request::Status => return self.answer(Ok(None)),
            Request::RotateBaseKey => return self.rotate(&caller).await,
            Request::ContainerTokenCreate(r) => return self.create_token(r, &caller).await,
            Request::ContainerTokenList => {
                return Response {
                    consumers: Some(self.consumers.list()),
                    ..self.answer(Ok(None))
                }
            }
            Request::ContainerTokenRevoke(r) => return self.revoke_token(r, &caller).await,
            Request::Associate(r) => role(r).map(Change::Associate),
            Request::Replace(r) => role(r).map(Change::Replace),
            Request::Disassociate => Ok(Change::Disassociate),
        };
        let actor = Actor {
            uid: Some(caller.uid),
            pid: caller.pid,
        };
        match change {
            Ok(change) => self.answer(self.service.change(change, actor).await),
            Err(e) => self.answer(Err(e)),
        }
    }
}

fn role(r: RoleRequest) -> Result<Association, String> {
    Association::new(&r.role_arn, r.external_id, r.session_name).map_err(|e| e.to_string())
}

/// Serves the control socket until `shutdown` is cancelled. Connections are
/// bounded: [`MAX_CONNECTIONS`] at once, [`MAX_CONNECTIONS_PER_UID`] per
/// user, each with [`MAX_REQUEST_BYTES`] and [`REQUEST_TIMEOUT`] to ask and
/// as long to take the answer; past a bound the connection is refused at
/// once, so no local user can exhaust the daemon's descriptors or memory.
/// Connections are tracked by `tasks`.
pub async fn serve(
    listener: UnixListener,
    control: Arc<Control>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let slots = Slots::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_UID, false);
    accept_until(&listener, "control socket", &shutdown, |stream, _| {
        let caller = match peer_of(&stream) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: cannot identify the caller; closing");
                return;
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
                let mut answer = serde_json::to_vec(&Response::error(format!(
                    "the daemon is busy ({why}); try again"
                )))
                .expect("plain data serializes");
                answer.push(b'\n');
                // Best effort, never waiting: the socket buffer takes it.
                let _ = stream.try_write(&answer);
                return;
            }
        };
        let control = control.clone();
        tasks.spawn(async move {
            if let Err(e) = connection(stream, caller, &control).await {
                tracing::debug!(error = %e, "control connection ended with an error");
            }
            drop(slot);
        });
    })
    .await;
}

/// The caller at the other end of a control connection.
fn peer_of(stream: &UnixStream) -> std::io::Result<Caller> {
    use std::os::fd::AsFd;
    let cred = stream.peer_cred()?;
    Ok(Caller {
        uid: cred.uid(),
        gid: cred.gid(),
        groups: crate::net::peergroups::unix_peer_groups(stream.as_fd())?,
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
        Ok(Ok(_)) if line.len() > MAX_REQUEST_BYTES => Response::error("request too large"),
        Ok(Ok(_)) => match serde_json::from_slice::<Request>(&line) {
            Ok(request) => control.execute(request, caller).await,
            Err(e) => Response::error(format!("malformed request: {e}")),
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

//! Wiring of the daemon: state directory, token key, credential source,
//! refresher, listeners, and shutdown, in the order that makes every
//! configuration error surface before anything binds.

pub mod config;
pub mod exit;
pub mod paths;
pub mod systemd;

use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_config::environment::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;

use crate::association::control::{self, Control};
use crate::association::state;
use crate::clock::rfc3339_seconds;
use crate::clock::{SharedClock, SystemClock};
use crate::credentials::issuer::local::LocalIssuer;
use crate::credentials::issuer::sts::{base_config, StsIssuer, StsSettings, StsSetupError};
use crate::credentials::issuer::CredentialSource;
use crate::credentials::refresh;
use crate::credentials::refresh::Snapshot;
use crate::credentials::revoke::SessionRevoker;
use crate::daemon::config::{ConfigError, IssuerKind, Settings};
use crate::daemon::systemd::{notify, watchdog_interval};
use crate::endpoint::identity::{
    default_availability_zone, instance_id_for_host, InstanceIdentity,
};
use crate::endpoint::imds::Endpoint;
use crate::endpoint::server::{self, App};
use crate::endpoint::token::{KeyError, TokenAuthority};
use crate::metrics::{self, Instrumented, Metrics};
use crate::role::Association;
use std::time::Duration;

/// Region used by the local issuer when none is configured anywhere.
pub const LOCAL_DEFAULT_REGION: &str = "us-east-1";
/// How long the daemon waits for the first credentials before it starts
/// accepting requests: short enough that a client that triggered a
/// socket-activated start still gets its token well within the Go SDK's
/// 500 ms header timeout; long enough for the local issuer and a fast STS.
pub const PREFETCH_GRACE: Duration = Duration::from_millis(300);
/// Upper bound on one STS call.
pub const STS_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The state directory cannot be used.
    #[error("state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The token key cannot be loaded.
    #[error(transparent)]
    TokenKey(#[from] KeyError),
    /// No region for the STS issuer.
    #[error("no region for STS: set region in the config file, pass --region, or set AWS_REGION")]
    NoRegion,
    /// The STS client could not be set up.
    #[error(transparent)]
    Sts(#[from] StsSetupError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The state directory's lock or association file.
    #[error(transparent)]
    State(#[from] crate::association::state::StateError),
    /// The control socket could not be created.
    #[error("cannot create the control socket {path}: {source}")]
    ControlSocket {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Socket activation was attempted but failed.
    #[error("cannot use the sockets passed by systemd: {0}")]
    Activation(#[source] io::Error),
}

impl DaemonError {
    /// The process exit code for this error (sysexits.h).
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::NoRegion | DaemonError::Sts(_) => crate::daemon::exit::EX_CONFIG,
            DaemonError::StateDir { .. } | DaemonError::TokenKey(_) => {
                crate::daemon::exit::EX_CANTCREAT
            }
            DaemonError::Bind { .. } | DaemonError::Activation(_) => {
                crate::daemon::exit::EX_UNAVAILABLE
            }
            DaemonError::State(crate::association::state::StateError::Corrupt { .. }) => {
                crate::daemon::exit::EX_CONFIG
            }
            DaemonError::State(crate::association::state::StateError::Locked { .. }) => {
                crate::daemon::exit::EX_TEMPFAIL
            }
            DaemonError::State(_) | DaemonError::ControlSocket { .. } => {
                crate::daemon::exit::EX_CANTCREAT
            }
        }
    }
}

/// Creates the state directory (0700) if needed and checks it is writable.
pub fn prepare_state_dir(path: &Path) -> Result<(), DaemonError> {
    let err = |source| DaemonError::StateDir {
        path: path.to_owned(),
        source,
    };
    if !path.exists() {
        std::fs::create_dir_all(path).map_err(err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    let meta = std::fs::metadata(path).map_err(err)?;
    if !meta.is_dir() {
        return Err(err(io::Error::other("not a directory")));
    }
    nix::unistd::access(
        path,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .map_err(|e| err(io::Error::from(e)))?;
    Ok(())
}

/// The region: configured, else from the AWS environment and profile
/// (never from IMDS), else none.
pub async fn resolve_region(configured: Option<&str>) -> Option<String> {
    if let Some(r) = configured {
        return Some(r.to_owned());
    }
    RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
        .or_else(ProfileFileRegionProvider::new())
        .region()
        .await
        .map(|r| r.to_string())
}

/// Builds the credential source named by the settings, and the session
/// revoker if `revoke-sessions` is on.
pub async fn credential_source(
    settings: &Settings,
    region: &str,
    clock: SharedClock,
) -> Result<(Arc<dyn CredentialSource>, Option<Arc<SessionRevoker>>), DaemonError> {
    Ok(match settings.issuer {
        IssuerKind::Local => (
            Arc::new(LocalIssuer::new(settings.session_duration, clock)),
            None,
        ),
        IssuerKind::Sts => {
            let sdk = base_config(region, STS_CALL_TIMEOUT).await?;
            let sts = StsSettings {
                region: region.to_owned(),
                endpoint: settings.sts_endpoint.clone(),
                session_duration: settings.session_duration,
            };
            let revoker = settings.revoke_sessions.then(|| {
                Arc::new(SessionRevoker::new(
                    &sdk,
                    settings.iam_endpoint.clone(),
                    clock.clone(),
                ))
            });
            (Arc::new(StsIssuer::new(&sdk, &sts, clock)), revoker)
        }
    })
}

/// Keeps the credentials this process holds out of core dumps and away from
/// other processes of the same user: no core file (`RLIMIT_CORE` 0), and not
/// dumpable, which also makes `/proc/<pid>/{mem,environ,…}` and ptrace
/// root-only. Failure is logged, not fatal: the service unit sets the same.
pub fn protect_memory() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    // Already 0 under the packaged unit (LimitCORE=0), whose system-call
    // filter denies setrlimit.
    if getrlimit(Resource::RLIMIT_CORE) != Ok((0, 0)) {
        if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
            tracing::warn!(error = %e, "cannot disable core dumps (RLIMIT_CORE)");
        }
    }
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "cannot mark the process not dumpable (PR_SET_DUMPABLE)");
    }
}

/// Raises the soft open-file limit to the hard one, so that the connection
/// cap ([`server::MAX_CONNECTIONS`]) is reached before the kernel's limit
/// (the soft limit is often 1024, below the cap plus our own files).
pub fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let limit = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            return;
        }
    };
    let needed = server::MAX_CONNECTIONS as u64 + 64;
    if limit < needed {
        tracing::warn!(
            limit,
            needed,
            "the open-file limit is below the connection cap; raise LimitNOFILE"
        );
    }
}

/// Re-reads the configuration (for SIGHUP).
pub type Reload = Box<dyn Fn() -> Result<Settings, ConfigError> + Send + Sync>;

/// Runs the daemon until `shutdown` completes; `reload` is called on SIGHUP.
pub async fn run(
    settings: Settings,
    reload: Option<Reload>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    protect_memory();
    raise_fd_limit();
    let clock: SharedClock = Arc::new(SystemClock);
    prepare_state_dir(&settings.state_dir)?;
    let _lock = state::lock(&settings.state_dir)?;
    let tokens = TokenAuthority::load_or_create(&settings.state_dir, clock.clone())?;
    let association = initial_association(&settings)?;

    let region = match resolve_region(settings.region.as_deref()).await {
        Some(r) => r,
        None if settings.issuer == IssuerKind::Local => LOCAL_DEFAULT_REGION.to_owned(),
        None => return Err(DaemonError::NoRegion),
    };
    let (source, revoker) = credential_source(&settings, &region, clock.clone()).await?;
    let metrics = Arc::new(Metrics::new());
    let source: Arc<dyn CredentialSource> = Arc::new(Instrumented::new(source, metrics.clone()));

    let listeners = match server::listeners_from_systemd().map_err(DaemonError::Activation)? {
        Some(l) => l,
        None => server::bind_all(&settings.listen)
            .await
            .map_err(|(addr, source)| DaemonError::Bind { addr, source })?,
    };

    let metrics_listener = match settings.metrics_listen {
        Some(addr) => Some(
            metrics::bind(addr)
                .await
                .map_err(|source| DaemonError::Bind { addr, source })?,
        ),
        None => None,
    };
    let identity = InstanceIdentity {
        instance_id: instance_id_for_host(Path::new("/etc/machine-id")),
        availability_zone: settings
            .availability_zone
            .clone()
            .unwrap_or_else(|| default_availability_zone(&region)),
        region: region.clone(),
        started: clock.now(),
    };
    tracing::info!(
        issuer = source.kind(),
        role = association.as_ref().map(|a| a.role.as_str()).unwrap_or("none"),
        region = %region,
        instance_id = %identity.instance_id,
        imds_v1 = if settings.imds_v1 { "allowed" } else { "disabled" },
        state_dir = %settings.state_dir.display(),
        "starting"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let control_listener =
        control::bind(&settings.control_socket).map_err(|source| DaemonError::ControlSocket {
            path: settings.control_socket.clone(),
            source,
        })?;
    let (refresher_stop, refresher_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (snapshots, refresher, refresher_task) =
        refresh::spawn(source, association, clock.clone(), async move {
            // Stops only after the server has drained, so that requests
            // accepted before SIGTERM are still answered with credentials.
            let _ = refresher_stop_rx.await;
        });
    let control = Arc::new(Control {
        refresher: refresher.clone(),
        snapshots: snapshots.clone(),
        state_dir: settings.state_dir.clone(),
        admin_gid: settings.admin_gid,
        clock: clock.clone(),
        metrics: metrics.clone(),
        revoker,
        changes: tokio::sync::Mutex::new(()),
        refusals: Default::default(),
    });
    let control_task = tokio::spawn(control::serve(control_listener, control.clone(), stopped()));
    if let Some(reload) = reload {
        tokio::spawn(reload_on_sighup(
            reload,
            settings.clone(),
            control,
            stopped(),
        ));
    }
    if snapshots.borrow().association.is_some() {
        let mut first = snapshots.clone();
        let _ = tokio::time::timeout(
            PREFETCH_GRACE,
            first.wait_for(|s| s.served.is_some() || s.last_error.is_some()),
        )
        .await;
    }
    let app = Arc::new(App {
        endpoint: Endpoint {
            tokens,
            imds_v1: settings.imds_v1,
            identity,
            clock,
        },
        snapshots,
        refresher,
        metrics: metrics.clone(),
        hop_limit: settings.hop_limit,
        access: settings.access.clone(),
        local_addrs: server::LocalAddrs::default(),
        groups: crate::endpoint::access::GroupCache::default(),
        refusals: Default::default(),
        full: Default::default(),
    });
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    if let Some(listener) = metrics_listener {
        tokio::spawn(metrics::serve(
            listener,
            metrics,
            app.snapshots.clone(),
            app.endpoint.clock.clone(),
            stopped(),
        ));
    }
    tokio::spawn(report_to_systemd(
        app.snapshots.clone(),
        app.endpoint.clock.clone(),
        stopped(),
    ));
    server::run(listeners, app, stopped()).await;
    let _ = refresher_stop.send(());
    let _ = refresher_task.await;
    let _ = control_task.await;
    let _ = std::fs::remove_file(&settings.control_socket);
    Ok(())
}

/// How long a configuration reload may take (a config path on a hung
/// network mount, or a FIFO, blocks its reader) before it is given up.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The settings that a reload does not apply: they take effect at the next
/// start, and a reload that changes them says so.
fn needs_restart(new: &Settings, running: &Settings) -> Vec<&'static str> {
    [
        ("listen", new.listen != running.listen),
        ("issuer", new.issuer != running.issuer),
        ("region", new.region != running.region),
        (
            "availability-zone",
            new.availability_zone != running.availability_zone,
        ),
        ("sts-endpoint", new.sts_endpoint != running.sts_endpoint),
        ("iam-endpoint", new.iam_endpoint != running.iam_endpoint),
        (
            "revoke-sessions",
            new.revoke_sessions != running.revoke_sessions,
        ),
        (
            "session-duration-seconds",
            new.session_duration != running.session_duration,
        ),
        ("imds-v1", new.imds_v1 != running.imds_v1),
        ("hop-limit", new.hop_limit != running.hop_limit),
        ("allowed-uids/allowed-gids", new.access != running.access),
        ("admin-group", new.admin_gid != running.admin_gid),
        (
            "metrics-listen",
            new.metrics_listen != running.metrics_listen,
        ),
        ("state-dir", new.state_dir != running.state_dir),
        (
            "control-socket",
            new.control_socket != running.control_socket,
        ),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

/// On every SIGHUP: re-reads the configuration off the runtime (bounded by
/// [`RELOAD_TIMEOUT`]); a bad or blocked one is logged and the running one
/// kept. The file's role is applied only when the file's role itself changed
/// since the last load: a reload never undoes a `disassociate` or `replace`
/// made through the control socket.
async fn reload_on_sighup(
    reload: Reload,
    running: Settings,
    control: Arc<Control>,
    shutdown: impl Future<Output = ()>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install the SIGHUP handler; reload needs a restart");
        return;
    };
    let reload = Arc::new(reload);
    // The file's role as of the last load that was applied.
    let mut loaded_role = running.association.clone();
    let mut pending: Option<tokio::task::JoinHandle<Result<Settings, ConfigError>>> = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            got = hup.recv() => if got.is_none() { return },
        }
        if pending.as_ref().is_some_and(|p| !p.is_finished()) {
            tracing::error!("configuration reload skipped: the previous one is still blocked reading the configuration");
            continue;
        }
        let read = reload.clone();
        let mut task = tokio::task::spawn_blocking(move || read());
        let new = match tokio::time::timeout(RELOAD_TIMEOUT, &mut task).await {
            Ok(Ok(Ok(s))) => s,
            Ok(Ok(Err(e))) => {
                tracing::error!(error = %e, "configuration reload failed; keeping the running configuration");
                continue;
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "configuration reload failed; keeping the running configuration");
                continue;
            }
            Err(_) => {
                tracing::error!(
                    timeout_s = RELOAD_TIMEOUT.as_secs(),
                    "configuration reload timed out (is the configuration file on a hung mount, or a FIFO?); keeping the running configuration"
                );
                pending = Some(task);
                continue;
            }
        };
        let restart_needed = needs_restart(&new, &running);
        if !restart_needed.is_empty() {
            tracing::warn!(keys = ?restart_needed, "these settings changed and take effect at the next restart");
        }
        if new.association == loaded_role {
            tracing::info!("configuration reloaded; the role in it is unchanged, so the current association stays");
            continue;
        }
        match control.apply_configured(new.association.clone()).await {
            Ok(warning) => {
                loaded_role = new.association;
                match warning {
                    None => tracing::info!("configuration reloaded"),
                    Some(w) => tracing::warn!(warning = %w, "configuration reloaded"),
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "configuration reloaded, but the role could not be changed")
            }
        }
    }
}

/// The one-line service status for systemd.
pub fn status_line(snapshot: &Snapshot, clock: &SharedClock) -> String {
    let Some(association) = &snapshot.association else {
        return "no role associated".into();
    };
    match snapshot.usable(clock.now(), clock.boot_time()) {
        Some(c) => format!(
            "role {}: serving {} until {}",
            association.role.name(),
            c.access_key_id,
            rfc3339_seconds(c.expiration)
        ),
        None => format!(
            "role {}: not serving: {}",
            association.role.name(),
            snapshot
                .last_error
                .as_deref()
                .unwrap_or("waiting for the first credentials")
        ),
    }
}

/// Tells systemd the daemon is ready (the listeners are bound), keeps its
/// status line current, and pings the watchdog from the event loop.
async fn report_to_systemd(
    mut snapshots: tokio::sync::watch::Receiver<Arc<Snapshot>>,
    clock: SharedClock,
    shutdown: impl Future<Output = ()>,
) {
    let mut last = status_line(&snapshots.borrow_and_update(), &clock);
    notify(&format!("READY=1\nSTATUS={last}"));
    let watchdog = watchdog_interval();
    let mut ping =
        tokio::time::interval(watchdog.map(|w| w / 2).unwrap_or(Duration::from_secs(30)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            changed = snapshots.changed() => if changed.is_err() { break },
            _ = ping.tick() => {
                if watchdog.is_some() {
                    notify("WATCHDOG=1");
                }
            }
        }
        // Expiry is a matter of time as well as of snapshots: recompute.
        let line = status_line(&snapshots.borrow_and_update(), &clock);
        if line != last {
            notify(&format!("STATUS={line}"));
            last = line;
        }
    }
    notify("STOPPING=1");
}

/// The association to start with. A role named in the config file or on the
/// command line wins, and is persisted; otherwise the persisted one.
pub fn initial_association(settings: &Settings) -> Result<Option<Association>, DaemonError> {
    let persisted = state::load_association(&settings.state_dir)?;
    match (&settings.association, persisted) {
        (Some(configured), persisted) => {
            if persisted.as_ref() != Some(configured) {
                state::store_association(&settings.state_dir, Some(configured))?;
                tracing::info!(
                    target: "audit",
                    source = "config-start",
                    old_role = persisted.as_ref().map(|a| a.role.as_str()).unwrap_or("none"),
                    new_role = configured.role.as_str(),
                    "association set from the configuration"
                );
            }
            Ok(Some(configured.clone()))
        }
        (None, persisted) => Ok(persisted),
    }
}

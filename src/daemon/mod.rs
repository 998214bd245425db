//! The daemon's wiring, and nothing else: each step lives in its own room
//! and this file puts them in order, so that every configuration error
//! surfaces before anything binds.
//!
//! 1. [`setup`]: protect the process, the state directory and its lock,
//!    the token key, the association to start with, the region, the
//!    credential source.
//! 2. Bind: the IMDS listeners (or take them from [`systemd`]), metrics,
//!    the control socket.
//! 3. Run: the refresher, the association service and the control socket
//!    over it, [`reload`] on SIGHUP, the status reported to systemd, and
//!    the endpoint server.
//! 4. Stop: one [`CancellationToken`] stops every listener; one
//!    [`TaskTracker`] drains every connection and task (bounded by
//!    [`DRAIN_TIMEOUT`]); only then does the refresher stop, so a request
//!    accepted before the stop is still answered with credentials.

pub mod config;
pub mod error;
pub mod exit;
pub mod paths;
pub mod reload;
pub mod setup;
pub mod systemd;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::association::control::server::{self as control, Control};
use crate::association::service::AssociationService;
use crate::association::state;
use crate::clock::{SharedClock, SystemClock};
use crate::consumers::ConsumerTokens;
use crate::credentials::issuer::CredentialSource;
use crate::credentials::refresh;
use crate::daemon::config::Settings;
pub use crate::daemon::error::DaemonError;
use crate::daemon::reload::Reload;
use crate::endpoint::app::App;
use crate::endpoint::conn::LocalAddrs;
use crate::endpoint::identity::{
    default_availability_zone, host_seed, instance_id_from_seed, InstanceIdentity,
};
use crate::endpoint::imds::Endpoint;
use crate::endpoint::server::{self, Listening, Serves};
use crate::endpoint::token::TokenAuthority;
use crate::metrics::{self, Instrumented, Metrics};

/// Region used by the local issuer when none is configured anywhere.
pub const LOCAL_DEFAULT_REGION: &str = "us-east-1";
/// How long the daemon waits for the first credentials before it starts
/// accepting requests: short enough that a client that triggered a
/// socket-activated start still gets its token well within the Go SDK's
/// 500 ms header timeout; long enough for the local issuer and a fast STS.
pub const PREFETCH_GRACE: Duration = Duration::from_millis(300);
pub use crate::endpoint::identity::MACHINE_ID;
/// How long connections and tasks get to finish at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the daemon until `shutdown` completes; `reload` is called on SIGHUP.
pub async fn run(
    settings: Settings,
    reload: Option<Reload>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    setup::protect_memory();
    setup::raise_fd_limit();
    let clock: SharedClock = Arc::new(SystemClock);
    setup::prepare_state_dir(&settings.state_dir)?;
    let _lock = state::lock(&settings.state_dir)?;
    let tokens = TokenAuthority::load_or_create(&settings.state_dir, clock.clone())?;
    let consumers = Arc::new(ConsumerTokens::load(&settings.state_dir, clock.clone())?);
    let association =
        AssociationService::at_start(&settings.state_dir, settings.association.as_ref())?;
    let region = setup::region(&settings).await?;
    if let Some(warning) = config::regions::unknown_region_warning(&region) {
        tracing::warn!("{warning}");
    }
    let setup::Sources {
        source,
        revoker,
        rotator,
    } = setup::credential_source(&settings, &region, clock.clone()).await?;
    let metrics = Arc::new(Metrics::new());
    let source: Arc<dyn CredentialSource> = Arc::new(Instrumented::new(source, metrics.clone()));

    let bind = |addrs: &[std::net::SocketAddr], key: &str, origin: &config::Origin| {
        server::bind_all(addrs).map_err(|(addr, source)| DaemonError::Bind {
            addr,
            set_by: origin.describe(key, settings.config_path.as_deref()),
            source,
        })
    };
    // Sockets systemd passes outlive this process: they may defer.
    let (imds_listeners, held) =
        match systemd::activated_listeners().map_err(DaemonError::Activation)? {
            Some(l) => (l, true),
            None => (
                bind(&settings.listen, "listen", &settings.listen_origin)?,
                false,
            ),
        };
    let container_listeners = bind(
        &settings.container_listen,
        "container-listen",
        &settings.container_listen_origin,
    )?;
    let listeners: Vec<_> = imds_listeners
        .into_iter()
        .map(|listener| Listening {
            listener,
            serves: Serves::Imds,
            held,
        })
        .chain(container_listeners.into_iter().map(|listener| Listening {
            listener,
            serves: Serves::Container,
            held: false,
        }))
        .collect();
    let metrics_listener = match settings.metrics_listen {
        Some(addr) => Some(metrics::bind(addr).map_err(|source| {
            DaemonError::Bind {
                addr,
                set_by: settings
                    .metrics_listen_origin
                    .describe("metrics-listen", settings.config_path.as_deref()),
                source,
            }
        })?),
        None => None,
    };
    let host_seed = host_seed(Path::new(MACHINE_ID));
    let identity = InstanceIdentity {
        instance_id: instance_id_from_seed(&host_seed),
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
    let control_listener =
        control::bind(&settings.control_socket).map_err(|source| DaemonError::ControlSocket {
            path: settings.control_socket.clone(),
            source,
        })?;

    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    // The refresher outlives the drain: see step 4 above.
    let refresher_stop = CancellationToken::new();
    let options = setup::refresh_options(&settings, source.kind(), &host_seed);
    let (snapshots, refresher, refresher_task) = refresh::spawn(
        source,
        association,
        clock.clone(),
        options,
        refresher_stop.clone().cancelled_owned(),
    );
    let service = Arc::new(AssociationService::new(
        refresher.clone(),
        snapshots.clone(),
        settings.state_dir.clone(),
        metrics.clone(),
        revoker,
    ));
    let control = Arc::new(Control {
        service: service.clone(),
        snapshots: snapshots.clone(),
        admin_gid: settings.admin_gid,
        owner_uid: nix::unistd::geteuid().as_raw(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        refusals: Default::default(),
        rotator: rotator.clone(),
        consumers: consumers.clone(),
    });
    if let Some(rotator) = rotator {
        tasks.spawn(crate::credentials::base_key::run(rotator, stop.clone()));
    }
    tasks.spawn(control::serve(
        control_listener,
        control,
        stop.clone(),
        tasks.clone(),
    ));
    if let Some(reload) = reload {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(hup) => {
                tasks.spawn(reload::reload_on_sighup(
                    hup,
                    reload,
                    settings.clone(),
                    service,
                    stop.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot install the SIGHUP handler; reload needs a restart")
            }
        }
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
            clock: clock.clone(),
            hop_limit: settings.hop_limit,
            access: settings.access.clone(),
        },
        snapshots: snapshots.clone(),
        refresher,
        metrics: metrics.clone(),
        local_addrs: LocalAddrs::default(),
        groups: Default::default(),
        refusals: Default::default(),
        full: Default::default(),
        consumers,
    });
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down");
            stop.cancel();
        });
    }
    if let Some(listener) = metrics_listener {
        tasks.spawn(metrics::serve(
            listener,
            metrics,
            snapshots.clone(),
            clock.clone(),
            stop.clone(),
            tasks.clone(),
        ));
    }
    tasks.spawn(systemd::report_status(snapshots, clock, stop.clone()));
    server::run(
        listeners,
        app,
        settings.pin_threads,
        stop.clone(),
        tasks.clone(),
    )
    .await;
    tasks.close();
    match tokio::time::timeout(DRAIN_TIMEOUT, tasks.wait()).await {
        Ok(()) => tracing::info!("all connections drained"),
        Err(_) => tracing::warn!(
            "connections still open after {}s; closing them",
            DRAIN_TIMEOUT.as_secs()
        ),
    }
    refresher_stop.cancel();
    let _ = refresher_task.await;
    let _ = std::fs::remove_file(&settings.control_socket);
    Ok(())
}

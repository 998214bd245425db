//! SIGHUP: the configuration is read again, off the runtime and within
//! [`RELOAD_TIMEOUT`]. A bad or blocked file is logged and the running
//! configuration kept. The file's role goes through the association
//! service only when the file's own `role-arn` changed since the last load;
//! every other key that changed but applies only at start is named in a
//! warning.

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::Signal;
use tokio_util::sync::CancellationToken;

use super::config::{ConfigError, Settings};
use crate::association::service::AssociationService;

/// Re-reads the configuration (for SIGHUP).
pub type Reload = Box<dyn Fn() -> Result<Settings, ConfigError> + Send + Sync>;

/// How long a configuration reload may take (a config path on a hung
/// network mount, or a FIFO, blocks its reader) before it is given up.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// On every SIGHUP: re-reads the configuration off the runtime (bounded by
/// [`RELOAD_TIMEOUT`]); a bad or blocked one is logged and the running one
/// kept. The file's role is applied only when the file's role itself changed
/// since the last load: a reload never undoes a `disassociate` or `replace`
/// made through the control socket.
///
/// `hup` is installed by the caller before the daemon says it listens, so
/// a SIGHUP sent right after start is a reload, never the default action
/// (which ends the process).
pub async fn reload_on_sighup(
    mut hup: Signal,
    reload: Reload,
    running: Settings,
    service: Arc<AssociationService>,
    shutdown: CancellationToken,
) {
    let reload = Arc::new(reload);
    // The file's role as of the last load that was applied.
    let mut loaded_role = running.association.clone();
    let mut pending: Option<tokio::task::JoinHandle<Result<Settings, ConfigError>>> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
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
        let restart_needed = super::config::summary::restart_needed(&new, &running);
        if !restart_needed.is_empty() {
            tracing::warn!(keys = ?restart_needed, "these settings changed and take effect at the next restart");
        }
        if new.association == loaded_role {
            tracing::info!("configuration reloaded; the role in it is unchanged, so the current association stays");
            continue;
        }
        match service.apply_configured(new.association.clone()).await {
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

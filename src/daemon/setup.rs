//! The steps before anything binds: the process's own protection, the
//! state directory, the region, and the credential source the settings
//! name. Each fails with a [`DaemonError`] that says what to fix.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_config::environment::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;

use super::config::regions::unknown_region_warning;
use super::config::{IssuerKind, Settings};
use super::error::DaemonError;
use crate::clock::SharedClock;
use crate::credentials::base_key::file::KeyFile;
use crate::credentials::base_key::iam::Calls;
use crate::credentials::base_key::{
    Policy as RotationPolicy, Rotator, VERIFY_EVERY, VERIFY_WITHIN,
};
use crate::credentials::issuer::local::LocalIssuer;
use crate::credentials::issuer::roles_anywhere::{RolesAnywhereIssuer, RolesAnywhereSettings};
use crate::credentials::issuer::sts::{
    base_config, check_base_credentials, StsIssuer, StsSettings,
};
use crate::credentials::issuer::CredentialSource;
use crate::credentials::refresh;
use crate::credentials::revoke::SessionRevoker;
use crate::role::default_session_name;

/// Upper bound on one STS call.
pub const STS_CALL_TIMEOUT: Duration = Duration::from_secs(20);

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

/// The region the daemon runs in (see [`resolve_region`]); the local
/// issuer falls back to [`super::LOCAL_DEFAULT_REGION`], the others need one.
pub async fn region(settings: &Settings) -> Result<String, DaemonError> {
    match resolve_region(settings.region.as_deref()).await {
        Some(r) => Ok(r),
        None if settings.issuer == IssuerKind::Local => Ok(super::LOCAL_DEFAULT_REGION.to_owned()),
        None => Err(DaemonError::NoRegion),
    }
}

/// What `--check-config` checks beyond the values, as a start would and
/// with the same errors, without binding or writing anything: the region
/// resolves, and so do the base credentials of the `sts` issuer. A region
/// this version does not know is a warning, given to `warn`.
pub async fn check(settings: &Settings, mut warn: impl FnMut(&str)) -> Result<(), DaemonError> {
    let region = region(settings).await?;
    if let Some(warning) = unknown_region_warning(&region) {
        warn(&warning);
    }
    if settings.issuer == IssuerKind::Sts {
        check_base_credentials(&region).await?;
    }
    Ok(())
}

/// The credential source and what comes with it.
pub struct Sources {
    /// Fetches the role's credentials.
    pub source: Arc<dyn CredentialSource>,
    /// Revokes a removed role's sessions, if `revoke-sessions` is on.
    pub revoker: Option<Arc<SessionRevoker>>,
    /// Rotates the base key (issuer sts).
    pub rotator: Option<Arc<Rotator>>,
}

/// Builds the credential source named by the settings, the session
/// revoker if `revoke-sessions` is on, and the base key's rotator for the
/// sts issuer.
pub async fn credential_source(
    settings: &Settings,
    region: &str,
    clock: SharedClock,
) -> Result<Sources, DaemonError> {
    let only = |source: Arc<dyn CredentialSource>| Sources {
        source,
        revoker: None,
        rotator: None,
    };
    Ok(match settings.issuer {
        IssuerKind::Local => only(Arc::new(LocalIssuer::new(settings.session_duration, clock))),
        IssuerKind::Sts => {
            let (sdk, base) = base_config(region, STS_CALL_TIMEOUT).await?;
            let sts = StsSettings {
                region: region.to_owned(),
                endpoint: settings.sts_endpoint.clone(),
                session_duration: settings.session_duration,
                attributes: settings.session.clone(),
            };
            let revoker = settings.revoke_sessions.then(|| {
                Arc::new(SessionRevoker::new(
                    &sdk,
                    settings.iam_endpoint.clone(),
                    clock.clone(),
                ))
            });
            let rotator = Arc::new(Rotator::new(
                Calls {
                    sdk: sdk.clone(),
                    iam_endpoint: settings.iam_endpoint.clone(),
                    sts_endpoint: settings.sts_endpoint.clone(),
                },
                KeyFile::from_env(),
                settings.state_dir.clone(),
                base.clone(),
                RotationPolicy {
                    settings: settings.base_key.clone(),
                    verify_within: VERIFY_WITHIN,
                    verify_every: VERIFY_EVERY,
                },
                clock.clone(),
            ));
            Sources {
                source: Arc::new(StsIssuer::new(&sdk, base, &sts, clock).await),
                revoker,
                rotator: Some(rotator),
            }
        }
        IssuerKind::RolesAnywhere => {
            let ra = settings
                .roles_anywhere
                .as_ref()
                .expect("the config checks roles-anywhere's keys");
            let issuer = RolesAnywhereIssuer::new(
                RolesAnywhereSettings {
                    paths: ra.paths.clone(),
                    trust_anchor_arn: ra.trust_anchor_arn.clone(),
                    profile_arn: ra.profile_arn.clone(),
                    region: region.to_owned(),
                    endpoint: ra.endpoint_for(region),
                    session_duration: settings.session_duration,
                    send_session_name: settings
                        .association
                        .as_ref()
                        .is_some_and(|a| a.session_name != default_session_name()),
                    instance_properties: instance_properties(),
                },
                clock,
            );
            only(Arc::new(issuer))
        }
    })
}

/// The host's identity as Roles Anywhere records it with each session.
fn instance_properties() -> std::collections::BTreeMap<String, String> {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    [
        ("hostname", host),
        (
            "instance-id",
            crate::endpoint::identity::instance_id_for_host(Path::new(super::MACHINE_ID)),
        ),
        ("hostrole-version", env!("CARGO_PKG_VERSION").to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
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
/// cap ([`crate::endpoint::server::MAX_CONNECTIONS`]) is reached before the kernel's limit
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
    let needed = crate::endpoint::server::MAX_CONNECTIONS as u64 + 64;
    if limit < needed {
        tracing::warn!(
            limit,
            needed,
            "the open-file limit is below the connection cap; raise LimitNOFILE"
        );
    }
}

/// The refresher's fleet behaviour: its place in the fleet's first-refresh
/// spread from `host_seed`; for an issuer that calls AWS, the call budget,
/// and the kept credentials unless `persist-credentials = false`.
pub fn refresh_options(
    settings: &Settings,
    kind: &'static str,
    host_seed: &str,
) -> refresh::Options {
    let remote = settings.issuer != IssuerKind::Local;
    refresh::Options {
        fleet_draw: refresh::fleet_draw(host_seed),
        budget: remote.then(refresh::CallBudget::default),
        store: (remote && settings.persist_credentials).then(|| {
            refresh::CredentialStore::new(&settings.state_dir, kind)
                .with_session_attributes(settings.session.fingerprint())
        }),
        ..refresh::Options::default()
    }
}

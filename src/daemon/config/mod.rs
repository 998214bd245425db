//! Configuration: a strict TOML file, overridden by command-line flags,
//! validated as a whole before anything binds.
//!
//! Keys are kebab-case; an unknown key, and a value of the wrong shape
//! (see [`values`]), is an error that names the file and line, so a typo
//! never silently falls back to a default. [`keys`] is the list of keys
//! that `--check-config` prints and a reload compares.

mod base_key;
mod file;
pub mod keys;
mod origin;
pub mod regions;
mod roles_anywhere;
mod session;
pub mod summary;
pub mod values;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use self::base_key::BaseKeySettings;
pub use self::file::{default_config_path, load_file, parse_file, FileConfig};
pub use self::origin::Origin;
pub use self::roles_anywhere::RolesAnywhereConfig;
use self::values::{BadValue, ListenAddr, Role};
use crate::credentials::issuer::sts::attributes::SessionAttributes;

use crate::daemon::paths::default_state_dir;
use crate::role::Association;

/// Config file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/hostrole/hostrole.toml";
/// Listening address when neither flags, config nor systemd give one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1338";
/// STS session length when not configured.
pub const DEFAULT_SESSION_DURATION_SECONDS: u64 = 3600;
/// Shortest session STS grants.
pub const MIN_STS_SESSION_SECONDS: u64 = 900;
/// Longest session STS grants.
pub const MAX_SESSION_SECONDS: u64 = 43_200;
/// Shortest session the local issuer mints (short ones help testing).
pub const MIN_LOCAL_SESSION_SECONDS: u64 = 60;
/// IP TTL of token responses when not configured: as on EC2, a token does
/// not cross a router (a container behind a bridge cannot get one).
pub const DEFAULT_HOP_LIMIT: u8 = 1;

/// Where credentials come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum IssuerKind {
    /// STS AssumeRole (the default).
    Sts,
    /// Minted offline: no AWS account, no network.
    Local,
    /// IAM Roles Anywhere CreateSession, signed with the host's X.509
    /// certificate: no access key on the host.
    RolesAnywhere,
}

/// Whether requests without an IMDSv2 token are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ImdsV1 {
    /// Serve token-less (IMDSv1) requests too.
    Allowed,
    /// Require a token (the default, like a new EC2 instance).
    Disabled,
}

/// A flag's value, checked as the same key in the file would be; the error
/// names the key.
pub fn flag<T>(key: &str, raw: Option<&str>) -> Result<Option<T>, ConfigError>
where
    T: std::str::FromStr<Err = BadValue>,
{
    raw.map(|r| r.parse::<T>())
        .transpose()
        .map_err(|e| invalid(format!("{key}: {e}")))
}

/// The validated settings the daemon runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Addresses to bind when not socket-activated.
    pub listen: Vec<SocketAddr>,
    /// Whether `listen` came from the flags, the file or the default.
    pub listen_origin: Origin,
    /// Addresses of the container credentials endpoint (off when empty).
    pub container_listen: Vec<SocketAddr>,
    /// Whether `container_listen` came from the flags or the file.
    pub container_listen_origin: Origin,
    /// The role, if one is configured.
    pub association: Option<Association>,
    /// Source identity, session tags and policies (issuer sts), expanded
    /// and checked.
    pub session: SessionAttributes,
    /// Session length asked of STS, or minted locally.
    pub session_duration: Duration,
    /// Credential source.
    pub issuer: IssuerKind,
    /// STS endpoint override.
    pub sts_endpoint: Option<String>,
    /// The certificate and Roles Anywhere resources, for that issuer.
    pub roles_anywhere: Option<RolesAnywhereConfig>,
    /// Region, if configured (else resolved from the AWS environment).
    pub region: Option<String>,
    /// Availability zone, if configured (else `<region>a`).
    pub availability_zone: Option<String>,
    /// IMDSv1 served or not.
    pub imds_v1: bool,
    /// State directory.
    pub state_dir: PathBuf,
    /// Control socket path.
    pub control_socket: PathBuf,
    /// Admin group id, besides root, allowed to change the association.
    pub admin_gid: Option<u32>,
    /// Revoke a removed role's sessions with IAM.
    pub revoke_sessions: bool,
    /// IAM endpoint override.
    pub iam_endpoint: Option<String>,
    /// Keep the last good credentials in the state directory (never for
    /// the local issuer).
    pub persist_credentials: bool,
    /// How the base key is rotated (issuer sts).
    pub base_key: BaseKeySettings,
    /// Prometheus metrics listener, if enabled.
    pub metrics_listen: Option<SocketAddr>,
    /// Whether `metrics_listen` came from the flags or the file.
    pub metrics_listen_origin: Origin,
    /// IP TTL / IPv6 hop limit of token responses (EC2's default is 1).
    pub hop_limit: u8,
    /// Who may read credentials, when restricted.
    pub access: Option<crate::endpoint::access::AllowList>,
    /// Each serving thread pinned to a CPU of its own.
    pub pin_threads: bool,
    /// hostrole-address looks for another metadata service before taking
    /// the addresses (the daemon only shows it).
    pub metadata_address_probe: bool,
    /// The file the settings came from, if any.
    pub config_path: Option<PathBuf>,
}

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, with line and column.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// Merges file and flags and checks what no single value can: ranges that
/// depend on the issuer, the association, the admin group's name.
pub fn resolve(
    mut file: FileConfig,
    mut flags: FileConfig,
    config_path: Option<PathBuf>,
) -> Result<Settings, ConfigError> {
    let (listen_raw, listen_origin) = Origin::pick(flags.listen.take(), file.listen.take());
    let listen_raw = listen_raw
        .unwrap_or_else(|| vec![ListenAddr(DEFAULT_LISTEN.parse().expect("a valid default"))]);
    if listen_raw.is_empty() {
        return Err(invalid("listen: at least one address is needed"));
    }
    let mut listen = Vec::with_capacity(listen_raw.len());
    for ListenAddr(addr) in listen_raw {
        if !listen.contains(&addr) {
            listen.push(addr);
        }
    }
    let (container_raw, container_listen_origin) =
        Origin::pick(flags.container_listen.take(), file.container_listen.take());
    let mut container_listen = Vec::new();
    for ListenAddr(addr) in container_raw.unwrap_or_default() {
        // Port 0 (any free port) clashes with nothing.
        if addr.port() != 0 && listen.contains(&addr) {
            return Err(invalid(format!(
                "container-listen: {addr} is an IMDS address (listen) too; give the container endpoint an address or port of its own"
            )));
        }
        if !container_listen.contains(&addr) {
            container_listen.push(addr);
        }
    }

    let issuer = flags.issuer.or(file.issuer).unwrap_or(IssuerKind::Sts);
    let mut region = flags.region.take().or(file.region.take()).map(|r| r.0);
    let roles_anywhere = roles_anywhere::resolve(&mut file, &mut flags, issuer, &mut region)?;
    let session = session::resolve(&mut file, &mut flags, issuer)?;
    let base_key = base_key::resolve(&mut file, &mut flags, issuer)?;
    let session_seconds = flags
        .session_duration_seconds
        .or(file.session_duration_seconds)
        .unwrap_or(DEFAULT_SESSION_DURATION_SECONDS);
    let min = match issuer {
        IssuerKind::Sts | IssuerKind::RolesAnywhere => MIN_STS_SESSION_SECONDS,
        IssuerKind::Local => MIN_LOCAL_SESSION_SECONDS,
    };
    if !(min..=MAX_SESSION_SECONDS).contains(&session_seconds) {
        return Err(invalid(format!(
            "session-duration-seconds: {session_seconds} is out of range {min}..={MAX_SESSION_SECONDS}"
        )));
    }

    let external_id = flags.external_id.or(file.external_id);
    let session_name = flags.session_name.or(file.session_name);
    Association::check_options(external_id.as_deref(), session_name.as_deref())
        .map_err(|e| invalid(e.to_string()))?;
    let association = flags
        .role_arn
        .or(file.role_arn)
        .map(|Role(role)| Association::with_role(role, external_id, session_name))
        .transpose()
        .map_err(|e| invalid(e.to_string()))?;

    let sts_endpoint = flags.sts_endpoint.or(file.sts_endpoint).map(|u| u.0);
    let iam_endpoint = flags.iam_endpoint.or(file.iam_endpoint).map(|u| u.0);
    let revoke_sessions = flags
        .revoke_sessions
        .or(file.revoke_sessions)
        .unwrap_or(false);
    if revoke_sessions && issuer != IssuerKind::Sts {
        return Err(invalid(
            "revoke-sessions: needs issuer = \"sts\" (locally minted credentials have no AWS sessions)",
        ));
    }
    let persist_credentials = match flags.persist_credentials.or(file.persist_credentials) {
        Some(true) if issuer == IssuerKind::Local => return Err(invalid(
            "persist-credentials: the local issuer mints credentials offline and never keeps them",
        )),
        Some(keep) => keep,
        None => issuer != IssuerKind::Local,
    };
    let availability_zone = flags
        .availability_zone
        .or(file.availability_zone)
        .map(|z| z.0);
    let imds_v1 = flags.imds_v1.or(file.imds_v1).unwrap_or(ImdsV1::Disabled) == ImdsV1::Allowed;
    let state_dir = flags
        .state_dir
        .or(file.state_dir)
        .map_or_else(default_state_dir, |p| p.0);
    let (metrics_listen, metrics_listen_origin) =
        Origin::pick(flags.metrics_listen, file.metrics_listen);
    let metrics_listen = metrics_listen.map(|a| a.0);
    let control_socket = flags
        .control_socket
        .or(file.control_socket)
        .unwrap_or_else(|| crate::daemon::paths::default_socket_path(&state_dir));
    let admin_gid = match &flags.admin_group.or(file.admin_group) {
        None => None,
        Some(name) => match nix::unistd::Group::from_name(name) {
            Ok(Some(g)) => Some(g.gid.as_raw()),
            Ok(None) => return Err(invalid(format!("admin-group: no group named {name:?}"))),
            Err(e) => {
                return Err(invalid(format!(
                    "admin-group: cannot look up {name:?}: {e}"
                )))
            }
        },
    };
    let hop_limit = flags
        .hop_limit
        .or(file.hop_limit)
        .map_or(DEFAULT_HOP_LIMIT, |h| h.0);
    let uids = flags.allowed_uids.or(file.allowed_uids).unwrap_or_default();
    let gids = flags.allowed_gids.or(file.allowed_gids).unwrap_or_default();
    let access = (!uids.is_empty() || !gids.is_empty())
        .then(|| crate::endpoint::access::AllowList::new(uids, gids));

    let metadata_address_probe = flags
        .metadata_address_probe
        .or(file.metadata_address_probe)
        .unwrap_or(true);
    let pin_threads = flags.pin_threads.or(file.pin_threads).unwrap_or(false);
    Ok(Settings {
        pin_threads,
        metadata_address_probe,
        listen,
        listen_origin,
        container_listen,
        container_listen_origin,
        hop_limit,
        access,
        association,
        session,
        session_duration: Duration::from_secs(session_seconds),
        issuer,
        sts_endpoint,
        roles_anywhere,
        region,
        availability_zone,
        imds_v1,
        state_dir,
        control_socket,
        admin_gid,
        revoke_sessions,
        iam_endpoint,
        persist_credentials,
        base_key,
        metrics_listen,
        metrics_listen_origin,
        config_path,
    })
}

#[cfg(test)]
mod tests;

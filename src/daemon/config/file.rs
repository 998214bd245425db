//! The configuration file: where it is, and its keys as written, each typed
//! so that a bad value is refused where it is read, with its line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::values::{
    AbsolutePath, EndpointUrl, HopLimit, ListenAddr, RegionName, Role, RolesAnywhereArn,
};
use super::{ConfigError, ImdsV1, IssuerKind, DEFAULT_CONFIG_PATH};

/// Configuration as written in the file, or as given by flags (which
/// override the file, key by key). Every value is typed, so a bad one is
/// refused where it is read.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// Addresses to listen on.
    pub listen: Option<Vec<ListenAddr>>,
    /// Addresses of the container credentials endpoint.
    pub container_listen: Option<Vec<ListenAddr>>,
    /// The role to assume.
    pub role_arn: Option<Role>,
    /// `sts:ExternalId`.
    pub external_id: Option<String>,
    /// `RoleSessionName`.
    pub session_name: Option<String>,
    /// `SourceIdentity` (issuer sts), before expansion.
    pub source_identity: Option<String>,
    /// Session tags (issuer sts), values before expansion.
    pub session_tags: Option<BTreeMap<String, String>>,
    /// Which session tags are transitive.
    pub transitive_tag_keys: Option<Vec<String>>,
    /// The inline session policy's file.
    pub session_policy: Option<AbsolutePath>,
    /// Managed session policies.
    pub policy_arns: Option<Vec<String>>,
    /// Session length in seconds.
    pub session_duration_seconds: Option<u64>,
    /// `sts` or `local`.
    pub issuer: Option<IssuerKind>,
    /// STS endpoint URL override.
    pub sts_endpoint: Option<EndpointUrl>,
    /// Region.
    pub region: Option<RegionName>,
    /// The host's certificate (issuer roles-anywhere).
    pub certificate: Option<PathBuf>,
    /// The certificate's private key.
    pub private_key: Option<PathBuf>,
    /// Intermediate certificates.
    pub certificate_chain: Option<PathBuf>,
    /// The Roles Anywhere trust anchor.
    pub trust_anchor_arn: Option<RolesAnywhereArn>,
    /// The Roles Anywhere profile.
    pub profile_arn: Option<RolesAnywhereArn>,
    /// Roles Anywhere endpoint URL override.
    pub roles_anywhere_endpoint: Option<EndpointUrl>,
    /// Availability zone reported by IMDS.
    pub availability_zone: Option<RegionName>,
    /// `allowed` or `disabled`.
    pub imds_v1: Option<ImdsV1>,
    /// Where the token key and the association live.
    pub state_dir: Option<AbsolutePath>,
    /// The control socket's path.
    pub control_socket: Option<PathBuf>,
    /// A group whose members may change the association, besides root.
    pub admin_group: Option<String>,
    /// Also revoke a removed role's sessions on the AWS side.
    pub revoke_sessions: Option<bool>,
    /// IAM endpoint URL override (for revoke-sessions).
    pub iam_endpoint: Option<EndpointUrl>,
    /// Keep the last good credentials across restarts.
    pub persist_credentials: Option<bool>,
    /// Rotate the base key once it is this many days old.
    pub base_key_max_age_days: Option<u64>,
    /// Minutes the old base key stays, inactive, after a rotation.
    pub base_key_grace_minutes: Option<u64>,
    /// Delete an inactive second key that stands in a rotation's way.
    pub base_key_delete_inactive: Option<bool>,
    /// Where to serve Prometheus metrics (off when absent).
    pub metrics_listen: Option<ListenAddr>,
    /// IP TTL / IPv6 hop limit of token responses.
    pub hop_limit: Option<HopLimit>,
    /// Pin each serving thread to a CPU.
    pub pin_threads: Option<bool>,
    /// Whether hostrole-address looks for another metadata service first
    /// (read by that script; shown by `--check-config`).
    pub metadata_address_probe: Option<bool>,
    /// Local users allowed to read credentials (everyone when neither list is set).
    pub allowed_uids: Option<Vec<u32>>,
    /// Local groups allowed to read credentials.
    pub allowed_gids: Option<Vec<u32>>,
}

/// Parses config file text.
pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

/// The configuration file read when none is named: `hostrole.toml` in
/// systemd's `CONFIGURATION_DIRECTORY` (the packaged service's
/// `/etc/hostrole`, the user service's `~/.config/hostrole`), else
/// [`DEFAULT_CONFIG_PATH`].
pub fn default_config_path() -> PathBuf {
    crate::daemon::paths::systemd_directory("CONFIGURATION_DIRECTORY")
        .map(|d| d.join("hostrole.toml"))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

/// Reads `explicit`, or the default path if it exists, or nothing.
pub fn load_file(explicit: Option<&Path>) -> Result<(FileConfig, Option<PathBuf>), ConfigError> {
    let path = match explicit {
        Some(p) => p.to_owned(),
        None => {
            let p = default_config_path();
            if !p.exists() {
                return Ok((FileConfig::default(), None));
            }
            p
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    Ok((parse_file(&path, &text)?, Some(path)))
}

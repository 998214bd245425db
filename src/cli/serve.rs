//! `hostrole serve`'s flags, and their mapping onto the config file's keys.

use std::path::PathBuf;

use super::LogFormat;
use crate::daemon::config::{self, FileConfig, ImdsV1, IssuerKind};

/// A file named on the command line, relative to the working directory.
fn absolute(p: &Option<PathBuf>) -> Option<PathBuf> {
    p.as_ref().map(|p| match std::env::current_dir() {
        Ok(cwd) if p.is_relative() => cwd.join(p),
        _ => p.clone(),
    })
}

/// `hostrole serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Config file [default: $CONFIGURATION_DIRECTORY/hostrole.toml under systemd, else /etc/hostrole/hostrole.toml; if it exists].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on, repeatable [default: 127.0.0.1:1338].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Vec<String>,
    /// Serve the container credentials endpoint (/v1/credentials) on this address too, repeatable [default: off].
    #[arg(long, value_name = "ADDR:PORT")]
    pub container_listen: Vec<String>,
    /// The role to assume, e.g. arn:aws:iam::123456789012:role/demo.
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,
    /// External id the role's trust policy asks for.
    #[arg(long, value_name = "ID")]
    pub external_id: Option<String>,
    /// Role session name [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub session_name: Option<String>,
    /// Session length in seconds [default: 3600].
    #[arg(long = "session-duration", value_name = "SECONDS")]
    pub session_duration: Option<u64>,
    /// Where credentials come from [default: sts].
    #[arg(long, value_enum)]
    pub issuer: Option<IssuerKind>,
    /// STS endpoint URL (moto, LocalStack, a VPC endpoint).
    #[arg(long, value_name = "URL")]
    pub sts_endpoint: Option<String>,
    /// The host's certificate, for issuer roles-anywhere (PEM; more
    /// certificates in the file are its intermediates).
    #[arg(long, value_name = "FILE")]
    pub certificate: Option<PathBuf>,
    /// The certificate's private key (PEM; readable by its owner only).
    #[arg(long, value_name = "FILE")]
    pub private_key: Option<PathBuf>,
    /// Intermediate certificates (PEM).
    #[arg(long, value_name = "FILE")]
    pub certificate_chain: Option<PathBuf>,
    /// The Roles Anywhere trust anchor's ARN.
    #[arg(long, value_name = "ARN")]
    pub trust_anchor_arn: Option<String>,
    /// The Roles Anywhere profile's ARN.
    #[arg(long, value_name = "ARN")]
    pub profile_arn: Option<String>,
    /// Roles Anywhere endpoint URL [default: https://rolesanywhere.REGION.amazonaws.com].
    #[arg(long, value_name = "URL")]
    pub roles_anywhere_endpoint: Option<String>,
    /// Region [default: from config, AWS_REGION or the AWS profile].
    #[arg(long)]
    pub region: Option<String>,
    /// Availability zone to report [default: the region's "a" zone].
    #[arg(long, value_name = "ZONE")]
    pub availability_zone: Option<String>,
    /// Serve requests that carry no IMDSv2 token [default: disabled].
    #[arg(long, value_enum)]
    pub imds_v1: Option<ImdsV1>,
    /// State directory [default: $STATE_DIRECTORY under systemd, else ~/.local/state/hostrole].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Control socket path [default: $RUNTIME_DIRECTORY/control.sock under systemd, else $XDG_RUNTIME_DIR/hostrole/control.sock].
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// Serve Prometheus metrics on this address [default: off].
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<String>,
    /// IP TTL / IPv6 hop limit of token responses [default: 1].
    #[arg(long, value_name = "N")]
    pub hop_limit: Option<u32>,
    /// Only this local user may read credentials (repeatable; uid).
    #[arg(long = "allowed-uid", value_name = "UID")]
    pub allowed_uids: Vec<u32>,
    /// Only members of this group may read credentials (repeatable; gid).
    #[arg(long = "allowed-gid", value_name = "GID")]
    pub allowed_gids: Vec<u32>,
    /// Validate the configuration, print it, and exit.
    #[arg(long)]
    pub check_config: bool,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl ServeArgs {
    /// The flags, in the shape of the config file they override, each
    /// checked as the same key in the file would be.
    pub(super) fn overrides(&self) -> Result<FileConfig, config::ConfigError> {
        let listen = self
            .listen
            .iter()
            .map(|a| config::flag("listen", Some(a)).map(Option::unwrap))
            .collect::<Result<Vec<_>, _>>()?;
        let container_listen = self
            .container_listen
            .iter()
            .map(|a| config::flag("container-listen", Some(a)).map(Option::unwrap))
            .collect::<Result<Vec<_>, _>>()?;
        let hop_limit = self
            .hop_limit
            .map(|h| {
                config::values::HopLimit::try_from(i64::from(h))
                    .map_err(|e| config::ConfigError::Invalid(format!("hop-limit: {e}")))
            })
            .transpose()?;
        let state_dir = self
            .state_dir
            .clone()
            .map(|d| {
                config::values::AbsolutePath::try_from(d)
                    .map_err(|e| config::ConfigError::Invalid(format!("state-dir: {e}")))
            })
            .transpose()?;
        Ok(FileConfig {
            listen: (!listen.is_empty()).then_some(listen),
            container_listen: (!container_listen.is_empty()).then_some(container_listen),
            role_arn: config::flag("role-arn", self.role_arn.as_deref())?,
            external_id: self.external_id.clone(),
            session_name: self.session_name.clone(),
            session_duration_seconds: self.session_duration,
            issuer: self.issuer,
            sts_endpoint: config::flag("sts-endpoint", self.sts_endpoint.as_deref())?,
            region: config::flag("region", self.region.as_deref())?,
            availability_zone: config::flag(
                "availability-zone",
                self.availability_zone.as_deref(),
            )?,
            certificate: absolute(&self.certificate),
            private_key: absolute(&self.private_key),
            certificate_chain: absolute(&self.certificate_chain),
            trust_anchor_arn: config::flag("trust-anchor-arn", self.trust_anchor_arn.as_deref())?,
            profile_arn: config::flag("profile-arn", self.profile_arn.as_deref())?,
            roles_anywhere_endpoint: config::flag(
                "roles-anywhere-endpoint",
                self.roles_anywhere_endpoint.as_deref(),
            )?,
            imds_v1: self.imds_v1,
            state_dir,
            control_socket: self.control_socket.clone(),
            metrics_listen: config::flag("metrics-listen", self.metrics_listen.as_deref())?,
            hop_limit,
            allowed_uids: (!self.allowed_uids.is_empty()).then(|| self.allowed_uids.clone()),
            allowed_gids: (!self.allowed_gids.is_empty()).then(|| self.allowed_gids.clone()),
            metadata_address_probe: None,
            pin_threads: None,
            // Set in the config file only.
            admin_group: None,
            revoke_sessions: None,
            persist_credentials: None,
            iam_endpoint: None,
            source_identity: None,
            session_tags: None,
            transitive_tag_keys: None,
            session_policy: None,
            policy_arns: None,
            base_key_max_age_days: None,
            base_key_grace_minutes: None,
            base_key_delete_inactive: None,
        })
    }
}

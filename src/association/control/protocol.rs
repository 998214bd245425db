//! The control socket's protocol: one JSON request line from the client,
//! one JSON response line from the daemon, then the connection closes.

use serde::{Deserialize, Serialize};

use crate::clock::{rfc3339_seconds, SharedClock};
pub use crate::consumers::ConsumerView;
use crate::credentials::refresh::Snapshot;
use crate::metrics::Metrics;

/// Longest request line accepted.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

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
    /// Rotate the base IAM user's access key.
    RotateBaseKey,
    /// Create a container endpoint token for a new consumer.
    ContainerTokenCreate(TokenCreateRequest),
    /// List the container endpoint's consumers (never their tokens).
    ContainerTokenList,
    /// Revoke a consumer's token.
    ContainerTokenRevoke(ConsumerName),
}

/// `container-token create`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TokenCreateRequest {
    /// The consumer's name.
    pub name: String,
    /// Seconds until the token expires; never when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_seconds: Option<u64>,
}

/// `container-token revoke`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConsumerName {
    /// The consumer's name.
    pub name: String,
}

/// A token on its way to the one who created it: never in a debug print.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct TokenText(pub String);

impl std::fmt::Debug for TokenText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Drop for TokenText {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
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
    /// What was done, in words, when the command has more to say than
    /// the status (a rotation: the old and new key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<String>,
    /// A container endpoint token just created, shown once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenText>,
    /// The container endpoint's consumers (list), or the one changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<Vec<ConsumerView>>,
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
    /// The issuer: `sts`, `roles-anywhere` or `local`.
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
    /// The host's certificate (issuer roles-anywhere): serial and end of
    /// validity, as last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// When the host's certificate expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expiration: Option<String>,
    /// The base access key id STS and IAM are called with (issuer sts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_key: Option<String>,
    /// When that key was created, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_key_created: Option<String>,
    /// Its age in whole days, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_key_age_days: Option<u64>,
    /// When a rotation last put it in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_key_last_rotation: Option<String>,
    /// An unfinished rotation, or the old key awaiting deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_key_rotation: Option<String>,
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
    let certificate = metrics.certificate();
    Status {
        role: snapshot.association.as_ref().map(|a| a.role.to_string()),
        source: snapshot.source.to_owned(),
        serving: usable.is_some(),
        access_key_id: usable.map(|c| c.access_key_id.clone()),
        expiration: usable.map(|c| rfc3339_seconds(c.expiration)),
        last_refresh: snapshot.last_refresh.map(rfc3339_seconds),
        next_refresh: snapshot.next_refresh.map(rfc3339_seconds),
        last_error: snapshot.last_error.clone(),
        certificate_expiration: certificate.as_ref().map(|c| rfc3339_seconds(c.not_after)),
        certificate: certificate.map(|c| c.serial),
        base_key: None,
        base_key_created: None,
        base_key_age_days: None,
        base_key_last_rotation: None,
        base_key_rotation: None,
        tokens_issued: metrics.tokens_issued_total(),
        requests: metrics.requests_total(),
        pid: std::process::id(),
    }
}

impl Response {
    /// A refusal with no status attached.
    pub fn error(message: impl Into<String>) -> Self {
        Response {
            ok: false,
            error: Some(message.into()),
            warning: None,
            done: None,
            token: None,
            consumers: None,
            permission_denied: false,
            status: None,
        }
    }
}

//! Where credentials come from.
//!
//! A [`CredentialSource`] turns the host's [`Association`] into temporary
//! credentials. The refresher is its only caller, one call at a time; the
//! IMDS handler never calls it.

use std::future::Future;
use std::pin::Pin;

use crate::credentials::Credentials;
use crate::role::Association;

pub mod cause;
pub mod local;
pub mod roles_anywhere;
pub mod sts;

/// The future a fetch returns.
pub type FetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Credentials, FetchError>> + Send + 'a>>;

/// A source of temporary credentials for a role.
pub trait CredentialSource: Send + Sync + std::fmt::Debug {
    /// Short name for logs and status: `sts`, `roles-anywhere` or `local`.
    fn kind(&self) -> &'static str;
    /// Obtains a fresh set of credentials for `association`.
    fn fetch<'a>(&'a self, association: &'a Association) -> FetchFuture<'a>;
    /// The host's certificate as last read, for an issuer whose base
    /// identity is one.
    fn certificate(&self) -> Option<CertificateReport> {
        None
    }
}

/// The host's certificate, as the issuer last read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateReport {
    /// Serial number, decimal.
    pub serial: String,
    /// End of validity.
    pub not_after: std::time::SystemTime,
}

/// How a failed fetch should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Try again soon: a timeout, a network error, a 5xx.
    Transient,
    /// The service asked us to slow down.
    Throttled,
    /// STS refused the host's own (base) credentials, not the role: an
    /// unknown or deleted access key, a bad signature, an expired session.
    /// They are resolved again at every attempt (rotated keys, a renewed
    /// session), so keep serving the last good credentials until they
    /// expire and retry soon, as for `Transient`.
    BaseCredentialsRejected,
    /// The role cannot be assumed (access denied, no such role): stop
    /// serving the role's credentials.
    Fatal,
}

/// A failed fetch: its kind and a message fit for logs (never a secret).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    /// How to react.
    pub kind: FailureKind,
    /// What went wrong.
    pub message: String,
}

impl FetchError {
    /// A transient failure.
    pub fn transient(message: impl Into<String>) -> Self {
        FetchError {
            kind: FailureKind::Transient,
            message: message.into(),
        }
    }

    /// A throttling failure.
    pub fn throttled(message: impl Into<String>) -> Self {
        FetchError {
            kind: FailureKind::Throttled,
            message: message.into(),
        }
    }

    /// STS rejected the base credentials.
    pub fn base_credentials_rejected(message: impl Into<String>) -> Self {
        FetchError {
            kind: FailureKind::BaseCredentialsRejected,
            message: message.into(),
        }
    }

    /// A fatal failure.
    pub fn fatal(message: impl Into<String>) -> Self {
        FetchError {
            kind: FailureKind::Fatal,
            message: message.into(),
        }
    }
}

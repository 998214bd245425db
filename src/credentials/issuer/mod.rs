//! Where credentials come from.
//!
//! A [`CredentialSource`] turns the host's [`Association`] into temporary
//! credentials. The refresher is its only caller, one call at a time; the
//! IMDS handler never calls it.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use crate::credentials::Credentials;
use crate::role::Association;

pub mod cause;
pub mod local;
pub mod roles_anywhere;
pub mod sts;

/// The wait a `Retry-After` header value asks for: delay-seconds, or an
/// HTTP date (RFC 9110 §10.2.3) measured from `now`. Anything else, or a
/// date in the past, is no wait at all.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    at.duration_since(now).ok()
}

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
    /// How long the endpoint asked us to wait (its `Retry-After`), if it did.
    pub retry_after: Option<Duration>,
}

impl FetchError {
    /// A transient failure.
    pub fn transient(message: impl Into<String>) -> Self {
        FetchError {
            kind: FailureKind::Transient,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A throttling failure.
    pub fn throttled(message: impl Into<String>) -> Self {
        FetchError {
            kind: FailureKind::Throttled,
            message: message.into(),
            retry_after: None,
        }
    }

    /// STS rejected the base credentials.
    pub fn base_credentials_rejected(message: impl Into<String>) -> Self {
        FetchError {
            kind: FailureKind::BaseCredentialsRejected,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same failure, with the wait the endpoint asked for.
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// A fatal failure.
    pub fn fatal(message: impl Into<String>) -> Self {
        FetchError {
            kind: FailureKind::Fatal,
            message: message.into(),
            retry_after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let s = Duration::from_secs;
        assert_eq!(parse_retry_after("120", now), Some(s(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(s(0)));
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:51:37 GMT", now),
            Some(s(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:48:37 GMT", now),
            None
        );
        for bad in [
            "",
            "-5",
            "1.5",
            "soon",
            "Sun, 06 Nov 1994 08:51:37 UTC",
            "Sun, 06 Foo 1994 08:51:37 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }
}

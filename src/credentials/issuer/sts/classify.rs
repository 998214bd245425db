//! What a failed AssumeRole means for the refresher, in one short line.

use std::time::{Duration, SystemTime};

use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};

use aws_credential_types::provider::error::CredentialsError;

use super::attributes::Sent;
use crate::credentials::issuer::cause::{in_chain, root_cause};
use crate::credentials::issuer::{parse_retry_after, FetchError};

/// The endpoint called and the time limits, as the errors name them.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// The URL called.
    pub endpoint: String,
    /// How long a connection may take.
    pub connect_timeout: Option<Duration>,
    /// How long the whole call may take.
    pub call_timeout: Option<Duration>,
    /// The session attributes the call carries, which may be why STS
    /// refuses it.
    pub sent: Sent,
}

/// STS error codes after which the role cannot be assumed until something
/// changes on the AWS side.
const FATAL_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "NoSuchEntity",
    "MalformedPolicyDocument",
    "PackedPolicyTooLarge",
    "RegionDisabledException",
    "ValidationError",
    "InvalidParameterValue",
];

/// Codes with which STS refuses the caller, the host's base identity, not
/// the role: an unknown or deleted access key, a signature made with the
/// wrong secret, an expired session token. The base chain is asked again at
/// every attempt, so rotated keys and renewed sessions get past them.
const BASE_CREDENTIALS_CODES: &[&str] = &[
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
];

/// 4xx codes that a later attempt can get past: the request was signed
/// with a skewed clock, the identity provider was unreachable.
const TRANSIENT_CLIENT_CODES: &[&str] =
    &["RequestExpired", "RequestTimeout", "IDPCommunicationError"];

const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
];
/// "20 s".
fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// One short cause for the log and `status`, never the SDK's dump of its
/// wrappers: STS's own code and message, or what kept the call from an
/// answer (found at the root of the error's `source()` chain).
pub(super) fn classify<E>(err: SdkError<E, HttpResponse>, target: &Target) -> FetchError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(se) => {
            let retry_after = se
                .raw()
                .headers()
                .get("retry-after")
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("");
            let message = se.err().message().unwrap_or("");
            let mut text = format!("STS AssumeRole failed: HTTP {status} {code}: {message}");
            if let Some(hint) = target.sent.hint(code) {
                text = format!("{}; {hint}", text.trim_end_matches('.'));
            }
            let error = if THROTTLING_CODES.contains(&code) || status == 429 {
                FetchError::throttled(text)
            } else if BASE_CREDENTIALS_CODES.contains(&code) {
                FetchError::base_credentials_rejected(format!(
                    "base credentials rejected by STS: {code} (AssumeRole: HTTP {status}: {message})"
                ))
            } else if status >= 500 || TRANSIENT_CLIENT_CODES.contains(&code) {
                FetchError::transient(text)
            } else if FATAL_CODES.contains(&code) || (400..500).contains(&status) {
                FetchError::fatal(text)
            } else {
                FetchError::transient(text)
            };
            error.with_retry_after(retry_after)
        }
        SdkError::TimeoutError(_) => FetchError::transient(match target.call_timeout {
            Some(limit) => format!("STS timed out after {}", seconds(limit)),
            None => "STS timed out".to_owned(),
        }),
        // The SDK reports base credentials that failed to load (a
        // credential_process that exits 1, an expired SSO session) as a
        // dispatch failure too: name them, not STS.
        SdkError::DispatchFailure(_) if in_chain::<CredentialsError>(&err) => {
            FetchError::transient(format!(
                "base credentials for STS could not be loaded: {}",
                root_cause(&err)
            ))
        }
        SdkError::DispatchFailure(failure) => {
            let connect_timed_out = failure.as_connector_error().is_some_and(|c| c.is_timeout());
            let cause = match target.connect_timeout {
                Some(limit) if connect_timed_out => {
                    format!("no connection within {}", seconds(limit))
                }
                _ => root_cause(&err),
            };
            FetchError::transient(format!("cannot reach STS at {}: {cause}", target.endpoint))
        }
        SdkError::ResponseError(_) => FetchError::transient(format!(
            "STS at {} answered with an unreadable response: {}",
            target.endpoint,
            root_cause(&err)
        )),
        _ => FetchError::fatal(format!(
            "STS AssumeRole could not be built: {}",
            root_cause(&err)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sts::operation::assume_role::AssumeRoleError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use crate::credentials::issuer::FailureKind;

    fn service_error(status: u16, code: &str) -> FetchError {
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        let err =
            AssumeRoleError::generic(ErrorMetadata::builder().code(code).message("why").build());
        classify(SdkError::service_error(err, raw), &target())
    }

    #[test]
    fn a_retry_after_on_sts_answer_is_kept_with_the_failure() {
        let mut raw = HttpResponse::new(StatusCode::try_from(400).unwrap(), SdkBody::empty());
        raw.headers_mut().insert("retry-after", "42");
        let err = AssumeRoleError::generic(
            ErrorMetadata::builder()
                .code("Throttling")
                .message("Rate exceeded")
                .build(),
        );
        let e = classify(SdkError::service_error(err, raw), &target());
        assert_eq!(e.kind, FailureKind::Throttled);
        assert_eq!(e.retry_after, Some(Duration::from_secs(42)));
        assert_eq!(service_error(400, "Throttling").retry_after, None);
    }

    fn target() -> Target {
        Target {
            endpoint: "http://127.0.0.1:1".into(),
            connect_timeout: Some(Duration::from_secs(5)),
            call_timeout: Some(Duration::from_secs(20)),
            sent: Sent::default(),
        }
    }

    #[test]
    fn sts_errors_are_classified_for_the_refresher() {
        for (status, code, kind) in [
            (403, "AccessDenied", FailureKind::Fatal),
            (400, "ValidationError", FailureKind::Fatal),
            (404, "NoSuchEntity", FailureKind::Fatal),
            (400, "MalformedPolicyDocument", FailureKind::Fatal),
            (403, "SomethingNew", FailureKind::Fatal),
            (400, "Throttling", FailureKind::Throttled),
            (429, "", FailureKind::Throttled),
            (500, "InternalFailure", FailureKind::Transient),
            (503, "ServiceUnavailable", FailureKind::Transient),
            (400, "RequestExpired", FailureKind::Transient),
            (400, "IDPCommunicationError", FailureKind::Transient),
        ] {
            let e = service_error(status, code);
            assert_eq!(e.kind, kind, "{status} {code}");
            assert!(e.message.contains(&status.to_string()), "{}", e.message);
        }
    }

    #[test]
    fn a_refusal_keeps_stss_message_and_adds_what_the_attributes_may_need() {
        let raw = HttpResponse::new(StatusCode::try_from(400).unwrap(), SdkBody::empty());
        let err = AssumeRoleError::generic(
            ErrorMetadata::builder()
                .code("PackedPolicyTooLarge")
                .message("Packed size of session tags exceeds the limit (112%).")
                .build(),
        );
        let e = classify(SdkError::service_error(err, raw), &target());
        assert_eq!(e.kind, FailureKind::Fatal);
        assert!(
            e.message.starts_with(
                "STS AssumeRole failed: HTTP 400 PackedPolicyTooLarge: Packed size of session tags exceeds the limit (112%); "
            ),
            "{}",
            e.message
        );
        assert!(e.message.contains("session-policy"), "{}", e.message);
        let mut tagged = target();
        tagged.sent = Sent {
            tags: true,
            source_identity: true,
        };
        let raw = HttpResponse::new(StatusCode::try_from(403).unwrap(), SdkBody::empty());
        let err = AssumeRoleError::generic(
            ErrorMetadata::builder()
                .code("AccessDenied")
                .message("not authorized to perform: sts:TagSession")
                .build(),
        );
        let e = classify(SdkError::service_error(err, raw), &tagged);
        assert!(
            e.message.ends_with(
                "not authorized to perform: sts:TagSession; with session-tags or source-identity set, \
                 the role's trust policy must also allow sts:TagSession and sts:SetSourceIdentity"
            ),
            "{}",
            e.message
        );
        // Without attributes, an AccessDenied is STS's message alone.
        assert!(service_error(403, "AccessDenied")
            .message
            .ends_with(": why"));
    }

    #[test]
    fn sts_refusing_the_base_credentials_is_not_the_role_being_refused() {
        for (status, code) in [
            (403, "InvalidClientTokenId"),
            (403, "SignatureDoesNotMatch"),
            (403, "IncompleteSignature"),
            (403, "MissingAuthenticationToken"),
            (400, "UnrecognizedClientException"),
            (403, "ExpiredToken"),
            (400, "ExpiredTokenException"),
        ] {
            let e = service_error(status, code);
            assert_eq!(
                e.kind,
                FailureKind::BaseCredentialsRejected,
                "{status} {code}"
            );
            assert!(
                e.message
                    .starts_with(&format!("base credentials rejected by STS: {code} ")),
                "{}",
                e.message
            );
            assert!(
                e.message.contains(&format!("HTTP {status}")),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn network_failures_and_timeouts_are_transient_and_say_so_in_one_line() {
        use aws_smithy_runtime_api::client::result::ConnectorError;
        let timeout: SdkError<AssumeRoleError, HttpResponse> =
            SdkError::timeout_error("took too long");
        let e = classify(timeout, &target());
        assert_eq!(e.kind, FailureKind::Transient);
        assert_eq!(e.message, "STS timed out after 20 s");
        let refused = std::io::Error::from_raw_os_error(nix::libc::ECONNREFUSED);
        let dispatch: SdkError<AssumeRoleError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io(refused.into()));
        let e = classify(dispatch, &target());
        assert_eq!(e.kind, FailureKind::Transient);
        assert_eq!(
            e.message,
            "cannot reach STS at http://127.0.0.1:1: connection refused"
        );
        let slow: SdkError<AssumeRoleError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::timeout("connect timeout".into()));
        assert_eq!(
            classify(slow, &target()).message,
            "cannot reach STS at http://127.0.0.1:1: no connection within 5 s"
        );
    }
}

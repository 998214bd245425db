//! The STS issuer: `AssumeRole` through aws-sdk-sts.
//!
//! Base credentials come from the standard chain *without* the instance
//! metadata provider (environment, shared config and credentials files, web
//! identity token, container credentials): the daemon must never ask itself.
//! The SDK's own retries are off; the refresher owns backoff, so that every
//! call STS sees is one the refresher decided to make.

use std::time::{Duration, SystemTime};

use aws_config::ecs::EcsCredentialsProvider;
use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::web_identity_token::WebIdentityTokenCredentialsProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use zeroize::Zeroizing;

use super::{CredentialSource, FetchError, FetchFuture};
use crate::clock::SharedClock;
use crate::credentials::Credentials;
use crate::role::Association;

/// Where the base credentials are looked for, in order, for error messages.
pub const BASE_CREDENTIAL_SOURCES: &str = "environment variables (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), \
the shared config and credentials files (AWS_PROFILE, AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE, ~/.aws/), \
a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN), \
container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI)";

/// How to reach STS.
#[derive(Debug, Clone)]
pub struct StsSettings {
    /// Region whose regional STS endpoint is called.
    pub region: String,
    /// Another endpoint (moto, LocalStack, a VPC endpoint).
    pub endpoint: Option<String>,
    /// `DurationSeconds` asked for.
    pub session_duration: Duration,
}

/// Setting up the STS client failed.
#[derive(Debug, thiserror::Error)]
pub enum StsSetupError {
    /// The chain found nothing.
    #[error("no base credentials for STS: looked in {BASE_CREDENTIAL_SOURCES}")]
    NoBaseCredentials,
    /// A source was configured but failed.
    #[error("base credentials for STS could not be loaded: {0}")]
    BaseCredentials(String),
}

/// AssumeRole through aws-sdk-sts.
#[derive(Debug)]
pub struct StsIssuer {
    client: aws_sdk_sts::Client,
    session_duration: Duration,
    clock: SharedClock,
}

/// The base credential chain: the SDK default chain less IMDS.
fn base_chain(region: &str) -> CredentialsProviderChain {
    let conf = ProviderConfig::without_region().with_region(Some(Region::new(region.to_owned())));
    CredentialsProviderChain::first_try(
        "Environment",
        EnvironmentVariableCredentialsProvider::new(),
    )
    .or_else(
        "Profile",
        ProfileFileCredentialsProvider::builder()
            .configure(&conf)
            .build(),
    )
    .or_else(
        "WebIdentityToken",
        WebIdentityTokenCredentialsProvider::builder()
            .configure(&conf)
            .build(),
    )
    .or_else(
        "EcsContainer",
        EcsCredentialsProvider::builder().configure(&conf).build(),
    )
}

/// The SDK configuration shared by the STS and IAM clients: the base
/// credential chain (checked once, here), no SDK retries, bounded calls.
pub async fn base_config(region: &str, call_timeout: Duration) -> Result<SdkConfig, StsSetupError> {
    let chain = base_chain(region);
    match chain.provide_credentials().await {
        Ok(_) => {}
        Err(CredentialsError::CredentialsNotLoaded(_)) => {
            return Err(StsSetupError::NoBaseCredentials)
        }
        Err(e) => {
            return Err(StsSetupError::BaseCredentials(
                DisplayErrorContext(&e).to_string(),
            ))
        }
    }
    Ok(aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(chain)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5).min(call_timeout))
                .operation_timeout(call_timeout)
                .build(),
        )
        .load()
        .await)
}

impl StsIssuer {
    /// An issuer calling STS with `sdk`'s base credentials, at `endpoint`
    /// if given, else the regional endpoint.
    pub fn new(sdk: &SdkConfig, settings: &StsSettings, clock: SharedClock) -> Self {
        let mut builder = aws_sdk_sts::config::Builder::from(sdk);
        builder.set_endpoint_url(settings.endpoint.clone());
        let conf = builder.build();
        StsIssuer {
            client: aws_sdk_sts::Client::from_conf(conf),
            session_duration: settings.session_duration,
            clock,
        }
    }

    async fn assume(&self, association: &Association) -> Result<Credentials, FetchError> {
        let out = self
            .client
            .assume_role()
            .role_arn(association.role.as_str())
            .role_session_name(&association.session_name)
            .set_external_id(association.external_id.clone())
            .duration_seconds(self.session_duration.as_secs() as i32)
            .send()
            .await
            .map_err(classify)?;
        let c = out
            .credentials()
            .ok_or_else(|| FetchError::transient("AssumeRole answered without credentials"))?;
        let expiration = SystemTime::try_from(*c.expiration()).map_err(|_| {
            FetchError::transient("AssumeRole answered with an unusable expiration")
        })?;
        // A truncated or garbled answer parses into empty fields: refuse it.
        if c.access_key_id().is_empty()
            || c.secret_access_key().is_empty()
            || c.session_token().is_empty()
            || expiration == SystemTime::UNIX_EPOCH
        {
            return Err(FetchError::transient(
                "AssumeRole's answer lacks the key id, secret, token or expiration (a malformed response)",
            ));
        }
        let now = self.clock.now();
        if expiration <= now {
            return Err(FetchError::transient(format!(
                "AssumeRole answered with credentials already expired at {} (is the host clock right?)",
                crate::clock::rfc3339_seconds(expiration)
            )));
        }
        Ok(Credentials {
            access_key_id: c.access_key_id().to_owned(),
            secret_access_key: Zeroizing::new(c.secret_access_key().to_owned()),
            session_token: Zeroizing::new(c.session_token().to_owned()),
            expiration,
            last_updated: SystemTime::UNIX_EPOCH
                + Duration::from_secs(crate::clock::unix_seconds(now)),
        })
    }
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

fn classify<E>(err: SdkError<E, HttpResponse>) -> FetchError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("");
            let message = se.err().message().unwrap_or("");
            let text = format!("STS AssumeRole failed: HTTP {status} {code}: {message}");
            if THROTTLING_CODES.contains(&code) || status == 429 {
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
            }
        }
        SdkError::TimeoutError(_) => {
            FetchError::transient(format!("STS AssumeRole timed out: {detail}"))
        }
        SdkError::DispatchFailure(_) => {
            FetchError::transient(format!("STS AssumeRole could not be sent: {detail}"))
        }
        SdkError::ResponseError(_) => FetchError::transient(format!(
            "STS AssumeRole answered with an unreadable response: {detail}"
        )),
        _ => FetchError::fatal(format!("STS AssumeRole could not be built: {detail}")),
    }
}

impl CredentialSource for StsIssuer {
    fn kind(&self) -> &'static str {
        "sts"
    }

    fn fetch<'a>(&'a self, association: &'a Association) -> FetchFuture<'a> {
        Box::pin(self.assume(association))
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
        classify(SdkError::service_error(err, raw))
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
    fn network_failures_and_timeouts_are_transient() {
        let timeout: SdkError<AssumeRoleError, HttpResponse> =
            SdkError::timeout_error("took too long");
        assert_eq!(classify(timeout).kind, FailureKind::Transient);
        let dispatch: SdkError<AssumeRoleError, HttpResponse> = SdkError::dispatch_failure(
            aws_smithy_runtime_api::client::result::ConnectorError::io("connection refused".into()),
        );
        assert_eq!(classify(dispatch).kind, FailureKind::Transient);
    }
}

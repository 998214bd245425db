//! The issuer through the SDK's own HTTP client.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};

use super::*;
use crate::credentials::issuer::FailureKind;

/// One AssumeRole at `endpoint` through `sdk`, which must fail.
async fn assume_failure(sdk: &aws_config::SdkConfig, endpoint: &str) -> FetchError {
    let settings = StsSettings {
        region: "us-east-1".into(),
        endpoint: Some(endpoint.into()),
        session_duration: Duration::from_secs(900),
        attributes: Default::default(),
    };
    let clock: SharedClock = std::sync::Arc::new(crate::clock::SystemClock);
    let issuer = StsIssuer::new(sdk, &settings, clock).await;
    let association = Association::new("arn:aws:iam::123456789012:role/demo", None, None).unwrap();
    issuer.assume(&association).await.unwrap_err()
}

/// Through the SDK's own HTTP client: what a refused connection looks
/// like once the SDK has wrapped it.
#[tokio::test]
async fn a_refused_connection_is_named_with_the_endpoint_and_nothing_else() {
    use aws_credential_types::provider::SharedCredentialsProvider;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new("AKIDTEST", "not-a-secret", None, None, "test"),
        ))
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(20))
                .build(),
        )
        .build();
    let e = assume_failure(&sdk, &endpoint).await;
    assert_eq!(e.kind, FailureKind::Transient);
    assert_eq!(
        e.message,
        format!("cannot reach STS at {endpoint}: connection refused")
    );
}

#[tokio::test]
async fn without_an_endpoint_the_regional_one_is_named() {
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .build();
    assert_eq!(
        regional_endpoint(&sdk, "eu-west-1").await,
        "https://sts.eu-west-1.amazonaws.com"
    );
    assert_eq!(
        regional_endpoint(&sdk, "cn-north-1").await,
        "https://sts.cn-north-1.amazonaws.com.cn"
    );
}

/// A base credential source that fails at a refresh (a credential_process
/// that exits 1, an expired SSO session) is named as that, not as STS
/// being out of reach.
#[tokio::test]
async fn base_credentials_that_fail_at_a_call_are_not_sts_out_of_reach() {
    use aws_credential_types::provider::error::CredentialsError;
    use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
    #[derive(Debug)]
    struct Failing;
    impl ProvideCredentials for Failing {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::ready(Err(CredentialsError::provider_error(
                std::io::Error::other("credential_process exited with 1"),
            )))
        }
    }
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Failing))
        .retry_config(RetryConfig::disabled())
        .build();
    let e = assume_failure(&sdk, "http://127.0.0.1:1").await;
    assert_eq!(e.kind, FailureKind::Transient);
    assert_eq!(
        e.message,
        "base credentials for STS could not be loaded: credential_process exited with 1"
    );
}

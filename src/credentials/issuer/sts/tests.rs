//! The issuer through the SDK's own HTTP client.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};

use super::*;
use crate::credentials::issuer::FailureKind;

/// Base credentials that are never asked (the tests give the SDK its own).
fn unused_base() -> BaseCredentials {
    let none = std::path::PathBuf::from("/nonexistent/hostrole-test");
    fresh::FreshBase::new([none.clone(), none], || {
        aws_config::meta::credentials::CredentialsProviderChain::first_try(
            "Static",
            aws_credential_types::Credentials::new("AKIDTEST", "not-a-secret", None, None, "test"),
        )
    })
}

/// One AssumeRole at `endpoint` through `sdk`, which must fail.
async fn assume_failure(sdk: &aws_config::SdkConfig, endpoint: &str) -> FetchError {
    assume_failure_with(sdk, unused_base(), endpoint).await
}

async fn assume_failure_with(
    sdk: &aws_config::SdkConfig,
    base: BaseCredentials,
    endpoint: &str,
) -> FetchError {
    let settings = StsSettings {
        region: "us-east-1".into(),
        endpoint: Some(endpoint.into()),
        session_duration: Duration::from_secs(900),
        attributes: Default::default(),
    };
    let clock: SharedClock = std::sync::Arc::new(crate::clock::SystemClock);
    let issuer = StsIssuer::new(sdk, base, &settings, clock).await;
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

/// An STS on loopback that refuses every caller's key.
fn refusing_sts() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 65536];
            let _ = stream.read(&mut buf);
            let body = "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code>\
<Message>The security token included in the request is invalid.</Message></Error></ErrorResponse>";
            let _ = write!(
                stream,
                "HTTP/1.1 403 Forbidden\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// When STS refuses the base key, the next attempt asks the base sources
/// again rather than signing with the refused key once more (a
/// credential_process may print a new one by now).
#[tokio::test]
async fn a_refused_base_key_is_asked_for_again_at_the_next_attempt() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let asked = std::sync::Arc::new(AtomicUsize::new(0));
    let a = asked.clone();
    let none = std::path::PathBuf::from("/nonexistent/hostrole-test");
    let base: BaseCredentials = fresh::FreshBase::new([none.clone(), none], move || {
        a.fetch_add(1, Ordering::SeqCst);
        aws_config::meta::credentials::CredentialsProviderChain::first_try(
            "Static",
            aws_credential_types::Credentials::new("AKIDTEST", "not-a-secret", None, None, "test"),
        )
    });
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(base.clone()),
        )
        .identity_cache(aws_config::identity::IdentityCache::no_cache())
        .retry_config(RetryConfig::disabled())
        .build();
    let sts = refusing_sts();
    let built_at_start = asked.load(Ordering::SeqCst);
    let e = assume_failure_with(&sdk, base.clone(), &sts).await;
    assert_eq!(
        e.kind,
        FailureKind::BaseCredentialsRejected,
        "{}",
        e.message
    );
    assert_eq!(base.key_id(), None, "the refused key is not kept");
    assert_eq!(
        asked.load(Ordering::SeqCst),
        built_at_start + 1,
        "the chain is built again for the next attempt"
    );
}

//! The host's own credentials, with which STS (and IAM) are called: the
//! SDK's default chain less IMDS, checked once at start.

use std::time::Duration;

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
use aws_sdk_sts::error::DisplayErrorContext;

/// Where the base credentials are looked for, in order, for error messages.
pub const BASE_CREDENTIAL_SOURCES: &str = "environment variables (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), \
the shared config and credentials files (AWS_PROFILE, AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE, ~/.aws/), \
a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN), \
container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI)";

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

//! The host's own credentials, with which STS (and IAM) are called: the
//! SDK's default chain less IMDS, checked at start and built again whenever
//! the profile files change (see [`super::fresh`]).

use std::time::Duration;

use aws_config::ecs::EcsCredentialsProvider;
use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::identity::IdentityCache;
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

use super::fresh::{profile_files, FreshBase};

/// The base credentials every STS and IAM call is signed with.
pub type BaseCredentials = FreshBase<CredentialsProviderChain>;

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
    /// The chain found nothing, and this is why: a half-set pair of
    /// variables, a profile that does not exist.
    #[error("no base credentials for STS: {0}")]
    Misconfigured(String),
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

/// The base chain, watching the profile files.
fn fresh_base(region: &str) -> BaseCredentials {
    let region = region.to_owned();
    FreshBase::new(profile_files(), move || base_chain(&region))
}

/// Asks `chain` once; when it finds nothing, says why if the environment
/// shows it.
async fn resolve(chain: &impl ProvideCredentials) -> Result<(), StsSetupError> {
    match chain.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(CredentialsError::CredentialsNotLoaded(_)) => Err(match why_none().await {
            Some(problem) => StsSetupError::Misconfigured(problem),
            None => StsSetupError::NoBaseCredentials,
        }),
        Err(e) => Err(StsSetupError::BaseCredentials(
            DisplayErrorContext(&e).to_string(),
        )),
    }
}

/// Whether the host's own credentials resolve, as at start (for
/// `--check-config`).
pub async fn check_base_credentials(region: &str) -> Result<(), StsSetupError> {
    resolve(&fresh_base(region)).await
}

/// Why the chain found nothing, when a setting shows it: one of the two
/// access key variables without the other, or `AWS_PROFILE` naming a
/// profile that neither file defines. Never a value, only names.
async fn why_none() -> Option<String> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    const KEY: &str = "AWS_ACCESS_KEY_ID";
    const SECRET: &str = "AWS_SECRET_ACCESS_KEY";
    match (set(KEY), set(SECRET)) {
        (true, false) => return Some(format!("{KEY} is set but {SECRET} is not")),
        (false, true) => return Some(format!("{SECRET} is set but {KEY} is not")),
        _ => {}
    }
    let profile = std::env::var("AWS_PROFILE")
        .ok()
        .filter(|p| !p.trim().is_empty())?;
    let profiles = aws_config::profile::load(
        &aws_types::os_shim_internal::Fs::real(),
        &aws_types::os_shim_internal::Env::real(),
        &Default::default(),
        None,
    )
    .await
    .ok()?;
    if profiles.get_profile(&profile).is_some() {
        return None;
    }
    // The files as the SDK finds them: the variable, else in the home
    // directory (the daemon's, which may not be the reader's).
    let home = std::env::var("HOME").unwrap_or_else(|_| "~".to_owned());
    let file = |var: &str, name: &str| {
        std::env::var(var)
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| format!("{}/.aws/{name}", home.trim_end_matches('/')))
    };
    Some(format!(
        "profile {profile} (AWS_PROFILE) is in neither {} nor {}",
        file("AWS_CONFIG_FILE", "config"),
        file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
    ))
}

/// The SDK configuration shared by the STS and IAM clients: the base
/// credentials (checked once, here, then asked at every call: they keep
/// what they loaded themselves, so the SDK's own cache is off), no SDK
/// retries, bounded calls.
pub async fn base_config(
    region: &str,
    call_timeout: Duration,
) -> Result<(SdkConfig, BaseCredentials), StsSetupError> {
    let base = fresh_base(region);
    resolve(&base).await?;
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(base.clone())
        .identity_cache(IdentityCache::no_cache())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5).min(call_timeout))
                .operation_timeout(call_timeout)
                .build(),
        )
        .load()
        .await;
    Ok((sdk, base))
}

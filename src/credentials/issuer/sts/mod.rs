//! The STS issuer: `AssumeRole` through aws-sdk-sts.
//!
//! Base credentials come from the standard chain *without* the instance
//! metadata provider (environment, shared config and credentials files, web
//! identity token, container credentials): the daemon must never ask itself.
//! The SDK's own retries are off; the refresher owns backoff, so that every
//! call STS sees is one the refresher decided to make.
//!
//! `base.rs` finds the host's own credentials and `fresh.rs` reads them
//! again when their files change; `classify.rs` turns a failed call into
//! one short cause and what the refresher should do. `attributes.rs`
//! checks and sends the session's tags, source identity and policies.

pub mod attributes;
mod base;
mod classify;
mod fresh;

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use zeroize::Zeroizing;

use self::attributes::{SessionAttributes, WithSessionAttributes};
pub use self::base::{
    base_config, check_base_credentials, BaseCredentials, StsSetupError, BASE_CREDENTIAL_SOURCES,
};
use self::classify::{classify, Target};
pub use self::fresh::profile_files;
use super::{CredentialSource, FailureKind, FetchError, FetchFuture};
use crate::clock::SharedClock;
use crate::credentials::Credentials;
use crate::role::Association;

/// How to reach STS.
#[derive(Debug, Clone)]
pub struct StsSettings {
    /// Region whose regional STS endpoint is called.
    pub region: String,
    /// Another endpoint (moto, LocalStack, a VPC endpoint).
    pub endpoint: Option<String>,
    /// `DurationSeconds` asked for.
    pub session_duration: Duration,
    /// Source identity, tags and policies sent with each call.
    pub attributes: SessionAttributes,
}

/// AssumeRole through aws-sdk-sts.
#[derive(Debug)]
pub struct StsIssuer {
    client: aws_sdk_sts::Client,
    /// What the calls are signed with; forgotten when STS refuses it.
    base: BaseCredentials,
    session_duration: Duration,
    clock: SharedClock,
    /// Where STS is and how long a call may take, for error messages.
    target: Target,
    /// Sent with each call.
    attributes: SessionAttributes,
}

impl StsIssuer {
    /// An issuer calling STS with `sdk`'s base credentials (`base`), at
    /// `endpoint` if given, else the regional endpoint.
    pub async fn new(
        sdk: &SdkConfig,
        base: BaseCredentials,
        settings: &StsSettings,
        clock: SharedClock,
    ) -> Self {
        let mut builder = aws_sdk_sts::config::Builder::from(sdk);
        builder.set_endpoint_url(settings.endpoint.clone());
        let conf = builder.build();
        let endpoint = match &settings.endpoint {
            Some(url) => url.clone(),
            None => regional_endpoint(sdk, &settings.region).await,
        };
        let timeouts = sdk.timeout_config();
        StsIssuer {
            client: aws_sdk_sts::Client::from_conf(conf),
            base,
            session_duration: settings.session_duration,
            clock,
            target: Target {
                endpoint,
                connect_timeout: timeouts.and_then(|t| t.connect_timeout()),
                call_timeout: timeouts.and_then(|t| t.operation_timeout()),
                sent: settings.attributes.sent(),
            },
            attributes: settings.attributes.clone(),
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
            .session_attributes(&self.attributes)
            .send()
            .await
            .map_err(|e| {
                let e = classify(e, &self.target);
                if e.kind == FailureKind::BaseCredentialsRejected {
                    // A credential_process may print another key by now.
                    self.base.forget();
                }
                e
            })?;
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
/// The URL the SDK calls for `region`, as its own endpoint rules give it.
async fn regional_endpoint(sdk: &SdkConfig, region: &str) -> String {
    use aws_sdk_sts::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
    let fallback = || format!("the regional endpoint of {region}");
    let Ok(params) = Params::builder()
        .region(region)
        .use_fips(sdk.use_fips().unwrap_or(false))
        .use_dual_stack(sdk.use_dual_stack().unwrap_or(false))
        .build()
    else {
        return fallback();
    };
    match DefaultResolver::new().resolve_endpoint(&params).await {
        Ok(endpoint) => endpoint.url().to_owned(),
        Err(_) => fallback(),
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
mod tests;

//! The IAM and STS calls of a rotation, each signed with a key chosen by
//! the caller (the old key until the new one is proven, then the new one),
//! never with whatever the base chain holds at that moment. IAM acts on the
//! calling user: no user name is needed, and the policy can be limited to
//! `arn:aws:iam::*:user/${aws:username}`.

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_iam::types::StatusType;
use zeroize::Zeroizing;

use super::file::AccessKey;

/// One of the user's keys, as IAM lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its id.
    pub id: String,
    /// Whether it is active.
    pub active: bool,
    /// When IAM created it.
    pub created: Option<SystemTime>,
}

/// A failed call: the operation, and IAM's or STS's code when it gave one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct CallError {
    /// `iam:CreateAccessKey`, …
    pub operation: &'static str,
    /// The error code, when the service sent one.
    pub code: Option<String>,
    /// One line.
    pub message: String,
}

fn failed<E, R>(operation: &'static str, e: SdkError<E, R>) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = e.code().map(str::to_owned);
    let message = match (e.code(), e.message()) {
        (Some(code), Some(m)) => format!("{code}: {m}"),
        (Some(code), None) => code.to_owned(),
        _ => DisplayErrorContext(&e).to_string(),
    };
    CallError {
        operation,
        code,
        message,
    }
}

/// Where IAM and STS are, and how calls are bounded (from the daemon's
/// SDK configuration).
#[derive(Debug, Clone)]
pub struct Calls {
    /// Region, timeouts, HTTP client.
    pub sdk: SdkConfig,
    /// IAM endpoint override.
    pub iam_endpoint: Option<String>,
    /// STS endpoint override.
    pub sts_endpoint: Option<String>,
}

fn signed_by(key: &AccessKey) -> Credentials {
    Credentials::new(
        &key.id,
        key.secret.as_str(),
        None,
        None,
        "base-key-rotation",
    )
}

impl Calls {
    fn iam(&self, key: &AccessKey) -> aws_sdk_iam::Client {
        let mut b =
            aws_sdk_iam::config::Builder::from(&self.sdk).credentials_provider(signed_by(key));
        b.set_endpoint_url(self.iam_endpoint.clone());
        aws_sdk_iam::Client::from_conf(b.build())
    }

    /// The calling user's keys.
    pub async fn list(&self, key: &AccessKey) -> Result<Vec<Listed>, CallError> {
        let out = self
            .iam(key)
            .list_access_keys()
            .send()
            .await
            .map_err(|e| failed("iam:ListAccessKeys", e))?;
        Ok(out
            .access_key_metadata()
            .iter()
            .filter_map(|m| {
                Some(Listed {
                    id: m.access_key_id()?.to_owned(),
                    active: m.status() == Some(&StatusType::Active),
                    created: m.create_date().and_then(|d| SystemTime::try_from(*d).ok()),
                })
            })
            .collect())
    }

    /// A new key for the calling user.
    pub async fn create(&self, key: &AccessKey) -> Result<AccessKey, CallError> {
        let out = self
            .iam(key)
            .create_access_key()
            .send()
            .await
            .map_err(|e| failed("iam:CreateAccessKey", e))?;
        let k = out.access_key().ok_or_else(|| CallError {
            operation: "iam:CreateAccessKey",
            code: None,
            message: "answered without a key".into(),
        })?;
        Ok(AccessKey {
            id: k.access_key_id().to_owned(),
            secret: Zeroizing::new(k.secret_access_key().to_owned()),
        })
    }

    /// Marks `id` inactive.
    pub async fn deactivate(&self, key: &AccessKey, id: &str) -> Result<(), CallError> {
        self.iam(key)
            .update_access_key()
            .access_key_id(id)
            .status(StatusType::Inactive)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failed("iam:UpdateAccessKey", e))
    }

    /// Deletes `id`; one already gone is no error.
    pub async fn delete(&self, key: &AccessKey, id: &str) -> Result<(), CallError> {
        match self
            .iam(key)
            .delete_access_key()
            .access_key_id(id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("NoSuchEntity") => Ok(()),
            Err(e) => Err(failed("iam:DeleteAccessKey", e)),
        }
    }

    /// Whether STS accepts `key` (`sts:GetCallerIdentity`, which needs no
    /// permission).
    pub async fn works(&self, key: &AccessKey) -> Result<(), CallError> {
        let mut b =
            aws_sdk_sts::config::Builder::from(&self.sdk).credentials_provider(signed_by(key));
        b.set_endpoint_url(self.sts_endpoint.clone());
        aws_sdk_sts::Client::from_conf(b.build())
            .get_caller_identity()
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failed("sts:GetCallerIdentity", e))
    }

    /// Waits until STS accepts `key`, asking every `every` for at most
    /// `within` (IAM takes a few seconds to make a new key usable).
    pub async fn wait_until_works(
        &self,
        key: &AccessKey,
        within: Duration,
        every: Duration,
    ) -> Result<(), CallError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.works(key).await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() + every > deadline => return Err(e),
                Err(e) => {
                    tracing::debug!(key = %key.id, error = %e, "the new base key does not work yet");
                    tokio::time::sleep(every).await;
                }
            }
        }
    }
}

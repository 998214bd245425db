//! The IAM Roles Anywhere issuer: the host's X.509 certificate is its base
//! identity, exchanged for the role's temporary credentials by one signed
//! `CreateSession` per refresh. No access key sits on the host.
//!
//! The certificate, key and chain are read again at every fetch
//! ([`material`]), so a renewed certificate is used without a restart. The
//! request is signed by [`sign`] and sent over HTTPS, through the proxy
//! that `HTTPS_PROXY` / `NO_PROXY` name, as the AWS SDKs do.

pub mod material;
pub mod sign;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{tls, Connector};
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use http_body_util::BodyExt;
use serde::Deserialize;
use zeroize::Zeroizing;

use self::material::{Identity, MaterialPaths};
use super::cause::root_cause;
use super::{parse_retry_after, CertificateReport, CredentialSource, FetchError, FetchFuture};
use crate::clock::{rfc3339_seconds, SharedClock};
use crate::credentials::Credentials;
use crate::role::Association;

/// How to reach Roles Anywhere and as whom.
#[derive(Debug, Clone)]
pub struct RolesAnywhereSettings {
    /// Certificate, key and chain files.
    pub paths: MaterialPaths,
    /// `arn:aws:rolesanywhere:<region>:<account>:trust-anchor/<id>`.
    pub trust_anchor_arn: String,
    /// `arn:aws:rolesanywhere:<region>:<account>:profile/<id>`.
    pub profile_arn: String,
    /// The signing region.
    pub region: String,
    /// `https://rolesanywhere.<region>.amazonaws.com` unless overridden.
    pub endpoint: String,
    /// `durationSeconds` asked for (the profile's maximum applies).
    pub session_duration: Duration,
    /// Sent as `roleSessionName` when the user set one (the profile must
    /// accept it); the host-name default is not sent.
    pub send_session_name: bool,
    /// The host's identity, as `instanceProperties`.
    pub instance_properties: BTreeMap<String, String>,
}

/// Upper bound on one CreateSession call.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest answer read.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// CreateSession with the host's certificate.
pub struct RolesAnywhereIssuer {
    settings: RolesAnywhereSettings,
    connector: Connector,
    clock: SharedClock,
    certificate: Mutex<Option<CertificateReport>>,
}

impl std::fmt::Debug for RolesAnywhereIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolesAnywhereIssuer")
            .field("settings", &self.settings)
            .finish()
    }
}

impl RolesAnywhereIssuer {
    /// An issuer for `settings`. Nothing is read until the first fetch.
    pub fn new(settings: RolesAnywhereSettings, clock: SharedClock) -> Self {
        let connector = Connector::builder()
            .proxy_config(ProxyConfig::from_env())
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build();
        RolesAnywhereIssuer {
            settings,
            connector,
            clock,
            certificate: Mutex::new(None),
        }
    }

    /// Reads the identity off the runtime.
    async fn identity(&self) -> Result<Identity, FetchError> {
        let paths = self.settings.paths.clone();
        let now = self.clock.now();
        let read = tokio::task::spawn_blocking(move || material::load(&paths, now));
        let identity = tokio::time::timeout(material::READ_TIMEOUT, read)
            .await
            .map_err(|_| {
                FetchError::transient(format!(
                    "reading the certificate and key took over {} s (a hung file system?)",
                    material::READ_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| FetchError::transient(format!("reading the certificate failed: {e}")))?
            .map_err(|e| {
                FetchError::base_credentials_rejected(format!(
                    "the host's certificate cannot be used: {e}"
                ))
            })?;
        let left = identity
            .not_after
            .duration_since(now)
            .unwrap_or(Duration::ZERO);
        if left < material::EXPIRY_WARNING {
            tracing::warn!(
                certificate = %self.settings.paths.certificate.display(),
                serial = %identity.serial,
                expires = %rfc3339_seconds(identity.not_after),
                days_left = left.as_secs() / 86_400,
                "the host's certificate expires within 14 days; renew it (no restart needed)"
            );
        }
        *self.certificate.lock().unwrap_or_else(|e| e.into_inner()) = Some(CertificateReport {
            serial: identity.serial.clone(),
            not_after: identity.not_after,
        });
        Ok(identity)
    }

    async fn create_session(&self, association: &Association) -> Result<Credentials, FetchError> {
        let identity = self.identity().await?;
        let request = self.request(association, &identity)?;
        let response = tokio::time::timeout(CALL_TIMEOUT, async {
            let response = self.connector.call(request).await.map_err(|e| {
                FetchError::transient(format!(
                    "Roles Anywhere CreateSession could not be sent to {}: {}",
                    self.settings.endpoint,
                    root_cause(&e)
                ))
            })?;
            let status = response.status().as_u16();
            let error_type = response
                .headers()
                .get("x-amzn-errortype")
                .map(|v| v.split(':').next().unwrap_or("").to_owned());
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| parse_retry_after(v, self.clock.now()));
            let body = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    FetchError::transient(format!(
                        "Roles Anywhere CreateSession's answer could not be read: {e}"
                    ))
                })?
                .to_bytes();
            Ok::<_, FetchError>((
                status,
                error_type,
                retry_after,
                Zeroizing::new(body.to_vec()),
            ))
        })
        .await
        .map_err(|_| {
            FetchError::transient(format!(
                "Roles Anywhere CreateSession timed out after {}s",
                CALL_TIMEOUT.as_secs()
            ))
        })??;
        let (status, error_type, retry_after, body) = response;
        if !(200..300).contains(&status) {
            return Err(
                classify(status, error_type.as_deref(), &body).with_retry_after(retry_after)
            );
        }
        parse_credentials(&body, self.clock.now())
    }

    fn request(
        &self,
        association: &Association,
        identity: &Identity,
    ) -> Result<HttpRequest, FetchError> {
        let s = &self.settings;
        let bad =
            |e: String| FetchError::fatal(format!("Roles Anywhere request cannot be built: {e}"));
        let base: http::Uri = s.endpoint.parse().map_err(|e| bad(format!("{e}")))?;
        let host = base
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| bad("the endpoint has no host".into()))?;
        let scheme = base.scheme_str().unwrap_or("https");
        let path = format!("{}/sessions", base.path().trim_end_matches('/'));
        let mut body = serde_json::json!({
            "durationSeconds": s.session_duration.as_secs(),
            "instanceProperties": s.instance_properties,
        });
        if s.send_session_name {
            body["roleSessionName"] = association.session_name.clone().into();
        }
        let body = body.to_string().into_bytes();
        let query = vec![
            ("profileArn", s.profile_arn.as_str()),
            ("roleArn", association.role.as_str()),
            ("trustAnchorArn", s.trust_anchor_arn.as_str()),
        ];
        let amz_date = amz_date(self.clock.now());
        let unsigned = sign::Unsigned {
            host: &host,
            path: &path,
            query: query.clone(),
            body: &body,
            region: &s.region,
            amz_date: &amz_date,
            certificate: &identity.certificate,
            chain: &identity.chain,
        };
        let headers = sign::sign(&unsigned, &identity.serial, &identity.key).map_err(bad)?;
        let uri = format!("{scheme}://{host}{path}?{}", sign::canonical_query(&query));
        let mut builder = http::Request::builder().method("POST").uri(uri);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        builder = builder.header(
            "user-agent",
            concat!("hostrole/", env!("CARGO_PKG_VERSION")),
        );
        let req = builder
            .body(SdkBody::from(body))
            .map_err(|e| bad(e.to_string()))?;
        HttpRequest::try_from(req).map_err(|e| bad(e.to_string()))
    }

    /// What the last read of the certificate found.
    pub fn last_certificate(&self) -> Option<CertificateReport> {
        self.certificate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// `YYYYMMDDTHHMMSSZ`.
fn amz_date(t: SystemTime) -> String {
    let s = rfc3339_seconds(t); // YYYY-MM-DDTHH:MM:SSZ
    s.replace(['-', ':'], "")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Output {
    #[serde(default)]
    credential_set: Vec<CredentialSet>,
}

#[derive(Deserialize)]
struct CredentialSet {
    credentials: Option<Creds>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Creds {
    #[serde(default)]
    access_key_id: String,
    #[serde(default)]
    secret_access_key: Zeroizing<String>,
    #[serde(default)]
    session_token: Zeroizing<String>,
    #[serde(default)]
    expiration: String,
}

/// The first credential set of a CreateSession answer; an empty, partial or
/// expired one is refused (transient), never served.
fn parse_credentials(body: &[u8], now: SystemTime) -> Result<Credentials, FetchError> {
    let malformed = |why: &str| {
        FetchError::transient(format!(
            "Roles Anywhere CreateSession answered without usable credentials: {why}"
        ))
    };
    let out: Output =
        serde_json::from_slice(body).map_err(|_| malformed("not the expected JSON"))?;
    let c = out
        .credential_set
        .into_iter()
        .next()
        .and_then(|s| s.credentials)
        .ok_or_else(|| malformed("no credential set"))?;
    if c.access_key_id.is_empty() || c.secret_access_key.is_empty() || c.session_token.is_empty() {
        return Err(malformed("the key id, secret or token is empty"));
    }
    let expiration = humantime::parse_rfc3339_weak(c.expiration.trim_end_matches('Z'))
        .map_err(|_| malformed("the expiration is not a date"))?;
    if expiration <= now {
        return Err(FetchError::transient(format!(
            "Roles Anywhere answered with credentials already expired at {} (is the host clock right?)",
            rfc3339_seconds(expiration)
        )));
    }
    Ok(Credentials {
        access_key_id: c.access_key_id,
        secret_access_key: c.secret_access_key,
        session_token: c.session_token,
        expiration,
        last_updated: SystemTime::UNIX_EPOCH + Duration::from_secs(crate::clock::unix_seconds(now)),
    })
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default, alias = "Message")]
    message: String,
    #[serde(default, rename = "__type")]
    kind: String,
}

/// What an error answer means for the refresher: 403 withdraws the role,
/// 429 and throttling codes slow down, 5xx are transient, other 4xx are
/// fatal (a wrong ARN, a profile that does not allow the role).
fn classify(status: u16, error_type: Option<&str>, body: &[u8]) -> FetchError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let code = error_type
        .filter(|c| !c.is_empty())
        .unwrap_or(parsed.kind.rsplit('#').next().unwrap_or(""))
        .to_owned();
    let message: String = parsed.message.chars().take(300).collect();
    let text = format!("Roles Anywhere CreateSession failed: HTTP {status} {code}: {message}");
    if status == 429 || code.contains("Throttl") || code == "TooManyRequestsException" {
        FetchError::throttled(text)
    } else if status >= 500 {
        FetchError::transient(text)
    } else {
        FetchError::fatal(text)
    }
}

impl CredentialSource for RolesAnywhereIssuer {
    fn kind(&self) -> &'static str {
        "roles-anywhere"
    }

    fn fetch<'a>(&'a self, association: &'a Association) -> FetchFuture<'a> {
        Box::pin(self.create_session(association))
    }

    fn certificate(&self) -> Option<CertificateReport> {
        self.last_certificate()
    }
}

#[cfg(test)]
mod tests;

//! The bodies the IMDS handler answers with: plain-text listings and
//! status bodies, and the JSON documents (credentials, `iam/info`, the
//! instance identity document) in EC2's field names and layout.

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use http::{Response, StatusCode};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::clock::rfc3339_seconds;
use crate::credentials::Credentials;
use crate::endpoint::identity::{
    architecture, instance_profile_arn, instance_profile_id, InstanceIdentity,
};
use crate::role::RoleArn;

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// The answer to a caller who may not read credentials.
pub fn forbidden() -> Response<Bytes> {
    status_only(StatusCode::FORBIDDEN)
}

/// The answer when the daemon cannot answer safely (a token whose TTL
/// cannot be set).
pub fn unavailable() -> Response<Bytes> {
    status_only(StatusCode::SERVICE_UNAVAILABLE)
}

/// A response with the status's short, fixed body.
pub fn status_only(status: StatusCode) -> Response<Bytes> {
    let body = match status {
        StatusCode::BAD_REQUEST => "Bad Request",
        StatusCode::UNAUTHORIZED => "Unauthorized",
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::NOT_FOUND => "Not Found",
        StatusCode::METHOD_NOT_ALLOWED => "Method Not Allowed",
        StatusCode::SERVICE_UNAVAILABLE => "Service Unavailable",
        _ => "Error",
    };
    text(status, body)
}

/// 405 with the methods the path takes.
pub fn not_allowed(allow: &'static str) -> Response<Bytes> {
    let mut r = status_only(StatusCode::METHOD_NOT_ALLOWED);
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CredentialDocument<'a> {
    code: &'static str,
    last_updated: String,
    #[serde(rename = "Type")]
    kind: &'static str,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    expiration: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct IamInfo {
    code: &'static str,
    last_updated: String,
    instance_profile_arn: String,
    instance_profile_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IdentityDocument<'a> {
    account_id: &'a str,
    architecture: &'static str,
    availability_zone: &'a str,
    billing_products: Option<Vec<String>>,
    devpay_product_codes: Option<Vec<String>>,
    marketplace_product_codes: Option<Vec<String>>,
    image_id: &'static str,
    instance_id: &'a str,
    instance_type: &'static str,
    kernel_id: Option<String>,
    pending_time: String,
    private_ip: &'static str,
    ramdisk_id: Option<String>,
    region: &'a str,
    version: &'static str,
}

fn json<T: Serialize>(value: &T) -> Response<Bytes> {
    match serde_json::to_string_pretty(value) {
        Ok(body) => text(StatusCode::OK, body),
        Err(_) => status_only(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// The credentials as EC2 serves them (`security-credentials/ROLE`), with
/// the account id in the extended form.
pub fn credential_document(c: &Credentials, account_id: Option<&str>) -> Response<Bytes> {
    let doc = CredentialDocument {
        code: "Success",
        last_updated: rfc3339_seconds(c.last_updated),
        kind: "AWS-HMAC",
        access_key_id: &c.access_key_id,
        secret_access_key: &c.secret_access_key,
        token: &c.session_token,
        expiration: rfc3339_seconds(c.expiration),
        account_id,
    };
    secret_json(&doc, c, 0, true)
}

/// A 200 whose JSON body holds `c`'s secrets, in a buffer wiped when hyper
/// drops the last reference, after writing it. The buffer is sized up front
/// (the secrets, `extra` bytes of other long fields, and 512 bytes for the
/// rest) so that it is never reallocated, which would leave an unwiped copy.
fn secret_json<T: Serialize>(
    doc: &T,
    c: &Credentials,
    extra: usize,
    pretty: bool,
) -> Response<Bytes> {
    let capacity =
        512 + extra + c.access_key_id.len() + c.secret_access_key.len() + c.session_token.len();
    let mut body = Zeroizing::new(Vec::with_capacity(capacity));
    let written = if pretty {
        serde_json::to_writer_pretty(&mut *body, doc)
    } else {
        serde_json::to_writer(&mut *body, doc)
    };
    match written {
        Ok(()) => text(StatusCode::OK, Bytes::from_owner(body)),
        Err(_) => status_only(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// `r` with `Content-Type: application/json`.
fn labelled_json(mut r: Response<Bytes>) -> Response<Bytes> {
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerDocument<'a> {
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    expiration: String,
    account_id: &'a str,
    role_arn: &'a str,
}

/// The credentials as the container credentials endpoint serves them (the
/// ECS task role's format), with the account id and the role.
pub fn container_document(c: &Credentials, role: &RoleArn) -> Response<Bytes> {
    let doc = ContainerDocument {
        access_key_id: &c.access_key_id,
        secret_access_key: &c.secret_access_key,
        token: &c.session_token,
        expiration: rfc3339_seconds(c.expiration),
        account_id: role.account_id(),
        role_arn: role.as_str(),
    };
    labelled_json(secret_json(&doc, c, role.as_str().len(), false))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerError<'a> {
    code: &'a str,
    message: &'a str,
}

/// An error of the container endpoint, as a JSON body the SDKs read
/// (`Code`, `Message`).
pub fn container_error(status: StatusCode, message: &str) -> Response<Bytes> {
    let code = match status {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::UNAUTHORIZED => "Unauthorized",
        StatusCode::FORBIDDEN => "AccessDenied",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        _ => "Error",
    };
    let mut r = labelled_json(json(&ContainerError { code, message }));
    *r.status_mut() = status;
    r
}

/// `meta-data/iam/info`: the instance profile named after the role.
pub fn iam_info(role: &RoleArn, last_updated: std::time::SystemTime) -> Response<Bytes> {
    json(&IamInfo {
        code: "Success",
        last_updated: rfc3339_seconds(last_updated),
        instance_profile_arn: instance_profile_arn(role),
        instance_profile_id: instance_profile_id(role),
    })
}

/// `dynamic/instance-identity/document`.
pub fn identity_document(id: &InstanceIdentity, role: Option<&RoleArn>) -> Response<Bytes> {
    json(&IdentityDocument {
        account_id: role.map(|r| r.account_id()).unwrap_or(""),
        architecture: architecture(),
        availability_zone: &id.availability_zone,
        billing_products: None,
        devpay_product_codes: None,
        marketplace_product_codes: None,
        image_id: "ami-00000000000000000",
        instance_id: &id.instance_id,
        instance_type: "hostrole.local",
        kernel_id: None,
        pending_time: rfc3339_seconds(id.started),
        private_ip: "127.0.0.1",
        ramdisk_id: None,
        region: &id.region,
        version: "2017-09-30",
    })
}

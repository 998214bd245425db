//! The IMDS wire protocol, as one function from a request to a response.
//!
//! [`handle`] implements the subset of the EC2 Instance Metadata Service
//! that AWS SDKs use to find credentials and region, with IMDSv2 session
//! tokens. It does no I/O and never waits: it reads the current
//! [`Snapshot`] and answers. The network code lives in `server`.
//!
//! Status codes follow EC2, because SDKs act on them:
//! - `PUT /latest/api/token`: 200 with the token and the mandatory
//!   `X-aws-ec2-metadata-token-ttl-seconds` response header; 400 for a
//!   missing or out-of-range TTL or an `X-Forwarded-For` header.
//!   Go and JS fall back to IMDSv1 for good after a 403/404/405 here, so the
//!   real token path never answers those.
//! - `PUT` on any other `…/api/token` path: 403. Other methods: 405.
//! - `GET`/`HEAD` with an invalid or expired token: 401; without a token
//!   when IMDSv1 is disabled: 401.
//! - Unknown paths, unknown roles, no role: 404 (never 401/403/5xx for
//!   "unsupported": the Java SDK falls back only on 404).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::clock::{rfc3339_seconds, SharedClock};
use crate::credentials::refresh::Snapshot;
use crate::credentials::Credentials;
use crate::endpoint::identity::{
    architecture, instance_profile_arn, instance_profile_id, InstanceIdentity,
};
use crate::endpoint::token::{TokenAuthority, MAX_TOKEN_TTL_SECONDS, MIN_TOKEN_TTL_SECONDS};

/// Request header carrying the requested token TTL; also sent back.
pub const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// Request header carrying the session token.
pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// Proxies add this; a token request carrying it is refused.
pub const FORWARDED_FOR_HEADER: &str = "x-forwarded-for";

/// Everything the handler needs besides the request and the snapshot.
#[derive(Debug)]
pub struct Endpoint {
    /// Issues and checks session tokens.
    pub tokens: TokenAuthority,
    /// Whether requests without a token are served (IMDSv1).
    pub imds_v1: bool,
    /// Instance id, region, zone.
    pub identity: InstanceIdentity,
    /// Wall and boot clocks.
    pub clock: SharedClock,
}

/// Who sent the request, as the server found out once per connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer {
    /// The remote address, when known.
    pub addr: Option<SocketAddr>,
    /// Not in `allowed-uids`/`allowed-gids` (or not a local user while an
    /// allow-list is set): may not learn the role or read its credentials.
    pub role_denied: bool,
    /// With hop limit 1, a caller whose source address is not one of this
    /// host's own: gets no token (a container on the host's own bridge is
    /// not routed, so the hop limit alone cannot stop it).
    pub not_local: bool,
}

/// The IP TTL (IPv6 hop limit) a response must leave with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseTtl {
    /// The system's.
    System,
    /// The configured hop limit, for this response and for the rest of
    /// the connection's life (a token's bytes may be retransmitted later).
    HopLimit,
}

/// Why a token is refused to a caller from elsewhere.
pub const NOT_LOCAL_REFUSAL: &str =
    "token refused: the caller's address is not this host's own address (hop-limit 1)";
/// Why the role is hidden from a caller outside the allow-list.
pub const ALLOW_LIST_REFUSAL: &str = "credentials refused: caller not in allowed-uids/allowed-gids";

/// What the handler decided.
#[derive(Debug)]
pub struct Reply {
    /// The response to send.
    pub response: Response<Bytes>,
    /// A short, fixed name of the route, for logs and metrics.
    pub route: &'static str,
    /// The snapshot held credentials that have expired: wake the refresher.
    pub stale: bool,
    /// The TTL the response needs.
    pub ttl: ResponseTtl,
    /// Why the caller was refused, for the log.
    pub refused: Option<&'static str>,
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
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

fn status_only(status: StatusCode) -> Response<Bytes> {
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

fn not_allowed(allow: &'static str) -> Response<Bytes> {
    let mut r = status_only(StatusCode::METHOD_NOT_ALLOWED);
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// The host a request names must be an IP literal or `localhost` (with an
/// optional port), so that a web page cannot reach the endpoint through DNS
/// rebinding. That holds for the `Host` header (at most one) and for the
/// authority of an absolute-form target (`GET http://host/… HTTP/1.1`),
/// which HTTP/1.1 servers must prefer to `Host`; when both are present they
/// must name the same host.
pub fn host_is_allowed<B>(req: &Request<B>) -> bool {
    let mut headers = req.headers().get_all(http::header::HOST).iter();
    let (header, second) = (headers.next(), headers.next());
    if second.is_some() {
        return false;
    }
    let header = match header.map(HeaderValue::to_str) {
        None => None, // HTTP/1.0 clients may omit it.
        Some(Ok(host)) if authority_is_allowed(host) => Some(host),
        Some(_) => return false,
    };
    match req.uri().authority().map(|a| a.as_str()) {
        None => true,
        Some(target) => {
            authority_is_allowed(target) && header.map_or(true, |h| h.eq_ignore_ascii_case(target))
        }
    }
}

/// `host[:port]` where host is an IP literal (`[v6]` for IPv6) or `localhost`.
fn authority_is_allowed(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || valid_port(port.strip_prefix(':')) => {
                return v6.parse::<std::net::Ipv6Addr>().is_ok();
            }
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if valid_port(Some(port)) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

fn valid_port(port: Option<&str>) -> bool {
    matches!(port, Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses the requested token TTL: an integer in 1..=21600.
fn parse_ttl(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(TOKEN_TTL_HEADER).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let s = value.to_str().ok()?.trim();
    if s.is_empty() || s.len() > 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = s.parse().ok()?;
    (MIN_TOKEN_TTL_SECONDS..=MAX_TOKEN_TTL_SECONDS)
        .contains(&n)
        .then_some(n)
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

fn credential_document(c: &Credentials, account_id: Option<&str>) -> Response<Bytes> {
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
    // Wiped when hyper drops the last reference, after writing it; sized up
    // front so it is never reallocated (which would leave an unwiped copy).
    let capacity = 512 + c.access_key_id.len() + c.secret_access_key.len() + c.session_token.len();
    let mut body = Zeroizing::new(Vec::with_capacity(capacity));
    match serde_json::to_writer_pretty(&mut *body, &doc) {
        Ok(()) => text(StatusCode::OK, Bytes::from_owner(body)),
        Err(_) => status_only(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// The dated metadata API versions EC2 lists at `/`, oldest first.
pub const DATED_VERSIONS: &str = "1.0 2007-01-19 2007-03-01 2007-08-29 2007-10-10 2007-12-15 \
2008-02-01 2008-09-01 2009-04-04 2011-01-01 2011-05-01 2012-01-12 2014-02-25 2014-11-05 \
2015-10-20 2016-04-19 2016-06-30 2016-09-02 2018-03-28 2018-08-17 2018-09-24 2019-10-01 \
2020-10-27 2021-01-03 2021-03-23 2021-07-15 2022-09-24 2024-04-11";

/// A metadata API version EC2 serves: `latest` or one of [`DATED_VERSIONS`].
fn is_version(segment: &str) -> bool {
    segment == "latest" || DATED_VERSIONS.split(' ').any(|v| v == segment)
}

/// Answers one IMDS request.
pub fn handle<B>(req: &Request<B>, snapshot: &Snapshot, endpoint: &Endpoint, peer: &Peer) -> Reply {
    let reply = |response, route| Reply {
        response,
        route,
        stale: false,
        ttl: ResponseTtl::System,
        refused: None,
    };
    let refuse = |route, why| Reply {
        response: forbidden(),
        route,
        stale: false,
        ttl: ResponseTtl::System,
        refused: Some(why),
    };
    let headers = req.headers();
    if !host_is_allowed(req) {
        return reply(status_only(StatusCode::BAD_REQUEST), "bad-host");
    }
    // Split the path into its segments, tolerating repeated and trailing slashes.
    let segments: Vec<&str> = req
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let is_token_path = segments.len() >= 2 && segments[segments.len() - 2..] == ["api", "token"];

    let method = req.method();
    if method == Method::PUT {
        if !is_token_path {
            return reply(not_allowed("GET, HEAD"), "other");
        }
        if segments.len() != 3 || segments[0] != "latest" {
            return reply(status_only(StatusCode::FORBIDDEN), "token");
        }
        if headers.contains_key(FORWARDED_FOR_HEADER) {
            return reply(status_only(StatusCode::BAD_REQUEST), "token");
        }
        let Some(ttl) = parse_ttl(headers) else {
            return reply(status_only(StatusCode::BAD_REQUEST), "token");
        };
        if peer.not_local {
            return refuse("token", NOT_LOCAL_REFUSAL);
        }
        let token = endpoint.tokens.issue(Duration::from_secs(ttl));
        let mut response = text(StatusCode::OK, token);
        response
            .headers_mut()
            .insert(TOKEN_TTL_HEADER, HeaderValue::from(ttl));
        return Reply {
            ttl: ResponseTtl::HopLimit,
            ..reply(response, "token")
        };
    }
    if method != Method::GET && method != Method::HEAD {
        let allow = if is_token_path { "PUT" } else { "GET, HEAD" };
        return reply(
            not_allowed(allow),
            if is_token_path { "token" } else { "other" },
        );
    }
    if is_token_path {
        return reply(not_allowed("PUT"), "token");
    }

    // IMDSv2: a presented token must be valid; without one, only if v1 is on.
    match headers.get(TOKEN_HEADER) {
        Some(value) => {
            let valid = value
                .to_str()
                .map(|t| endpoint.tokens.validate(t).is_ok())
                .unwrap_or(false);
            if !valid {
                return reply(status_only(StatusCode::UNAUTHORIZED), "unauthorized");
            }
        }
        None if !endpoint.imds_v1 => {
            return reply(status_only(StatusCode::UNAUTHORIZED), "unauthorized");
        }
        None => {}
    }

    let (now, boot) = (endpoint.clock.now(), endpoint.clock.boot_time());
    let stale = snapshot.served.is_some() && snapshot.usable(now, boot).is_none();
    let creds = snapshot.usable(now, boot);
    let role = snapshot.association.as_ref().map(|a| &a.role);
    let id = &endpoint.identity;
    let not_found = || status_only(StatusCode::NOT_FOUND);
    // The role's name and credentials are decided here, before anything
    // about them is rendered.
    if peer.role_denied
        && matches!(segments.as_slice(), [v, "meta-data", "iam", ..] if is_version(v))
    {
        return refuse("iam-refused", ALLOW_LIST_REFUSAL);
    }

    let (response, route) = match segments.as_slice() {
        [] => (text(StatusCode::OK, "latest"), "index"),
        [v] if is_version(v) => (text(StatusCode::OK, "dynamic\nmeta-data"), "index"),
        [v, rest @ ..] if is_version(v) => match rest {
            ["meta-data"] => {
                let index = if role.is_some() {
                    "iam/\ninstance-id\nplacement/"
                } else {
                    "instance-id\nplacement/"
                };
                (text(StatusCode::OK, index), "index")
            }
            ["meta-data", "iam"] => match role {
                Some(_) => (text(StatusCode::OK, "info\nsecurity-credentials/"), "index"),
                None => (not_found(), "index"),
            },
            ["meta-data", "iam", "info"] => match role {
                Some(role) => (
                    json(&IamInfo {
                        code: "Success",
                        last_updated: rfc3339_seconds(snapshot.last_refresh.unwrap_or(id.started)),
                        instance_profile_arn: instance_profile_arn(role),
                        instance_profile_id: instance_profile_id(role),
                    }),
                    "iam-info",
                ),
                None => (not_found(), "iam-info"),
            },
            ["meta-data", "iam", list @ ("security-credentials" | "security-credentials-extended")] =>
            {
                let route = if *list == "security-credentials" {
                    "credentials-list"
                } else {
                    "credentials-extended-list"
                };
                match role {
                    Some(role) => (text(StatusCode::OK, role.name().to_owned()), route),
                    None => (not_found(), route),
                }
            }
            ["meta-data", "iam", kind @ ("security-credentials" | "security-credentials-extended"), name] =>
            {
                let extended = *kind == "security-credentials-extended";
                let route = if extended {
                    "credentials-extended"
                } else {
                    "credentials"
                };
                match (role, creds) {
                    (Some(role), Some(c)) if role.name() == *name => (
                        credential_document(c, extended.then(|| role.account_id())),
                        route,
                    ),
                    _ => (not_found(), route),
                }
            }
            ["meta-data", "instance-id"] => {
                (text(StatusCode::OK, id.instance_id.clone()), "instance-id")
            }
            ["meta-data", "placement"] => {
                (text(StatusCode::OK, "availability-zone\nregion"), "index")
            }
            ["meta-data", "placement", "region"] => {
                (text(StatusCode::OK, id.region.clone()), "region")
            }
            ["meta-data", "placement", "availability-zone"] => (
                text(StatusCode::OK, id.availability_zone.clone()),
                "availability-zone",
            ),
            ["dynamic"] => (text(StatusCode::OK, "instance-identity/"), "index"),
            ["dynamic", "instance-identity"] => (text(StatusCode::OK, "document"), "index"),
            ["dynamic", "instance-identity", "document"] => (
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
                }),
                "identity-document",
            ),
            _ => (not_found(), "other"),
        },
        _ => (not_found(), "other"),
    };
    Reply {
        response,
        route,
        stale,
        ttl: ResponseTtl::System,
        refused: None,
    }
}

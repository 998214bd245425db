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
//!
//! Every decision about the caller is made here too, from the [`Caller`]
//! the server found when it accepted the connection: a token only for a
//! caller on this host when the hop limit is 1, and nothing about the role
//! (`meta-data/iam/…`) for a caller outside `allowed-uids`/`allowed-gids`,
//! refused before anything is rendered. The [`Reply`] says which TTL the
//! response needs; the server only carries it out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Method, Request, Response, StatusCode};

use super::access::{AllowList, Groups};
use super::documents::{
    credential_document, forbidden, iam_info, identity_document, not_allowed, status_only, text,
};
use super::identity::InstanceIdentity;
use super::request::{host_is_allowed, is_version, parse_ttl};
pub use super::request::{FORWARDED_FOR_HEADER, TOKEN_HEADER, TOKEN_TTL_HEADER};
pub use super::route::Route;
use super::token::TokenAuthority;
use crate::clock::SharedClock;
use crate::credentials::refresh::Snapshot;

/// Everything the handler needs besides the request, the caller and the
/// snapshot.
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
    /// IP TTL / IPv6 hop limit of token responses; with 1, tokens go only
    /// to callers on this host.
    pub hop_limit: u8,
    /// Who may learn the role and read its credentials, when restricted.
    pub access: Option<AllowList>,
}

/// Who sent the request, as the server found out once per connection.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The remote address, when known.
    pub addr: Option<SocketAddr>,
    /// The source address is one of this host's own (loopback, the address
    /// called, or an interface address).
    pub on_this_host: bool,
    /// The user owning the caller's socket, when the caller is on this host
    /// and the kernel says.
    pub uid: Option<u32>,
    /// That user's groups, looked up only when the allow-list needs them.
    pub groups: Option<Arc<Groups>>,
}

impl Default for Caller {
    /// A caller on this host, of unknown user.
    fn default() -> Self {
        Caller {
            addr: None,
            on_this_host: true,
            uid: None,
            groups: None,
        }
    }
}

impl Endpoint {
    /// Whether `caller` may learn the role and read its credentials.
    pub fn may_read_role(&self, caller: &Caller) -> bool {
        match &self.access {
            None => true,
            Some(list) => caller
                .uid
                .is_some_and(|uid| list.permits(uid, caller.groups.as_deref())),
        }
    }

    /// Whether `caller` may be given a token: with hop limit 1 only from
    /// this host (a container on the host's own bridge reaches it unrouted,
    /// so no TTL is decremented and the hop limit alone cannot stop it).
    pub fn may_get_token(&self, caller: &Caller) -> bool {
        self.hop_limit > 1 || caller.on_this_host
    }
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
    /// What was asked for.
    pub route: Route,
    /// The snapshot held credentials that have expired: wake the refresher.
    pub stale: bool,
    /// The TTL the response needs.
    pub ttl: ResponseTtl,
    /// Why the caller was refused, for the log.
    pub refused: Option<&'static str>,
}

/// Answers one IMDS request.
pub fn handle<B>(
    req: &Request<B>,
    snapshot: &Snapshot,
    endpoint: &Endpoint,
    caller: &Caller,
) -> Reply {
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
        return reply(status_only(StatusCode::BAD_REQUEST), Route::BadHost);
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
            return reply(not_allowed("GET, HEAD"), Route::Other);
        }
        if segments.len() != 3 || segments[0] != "latest" {
            return reply(status_only(StatusCode::FORBIDDEN), Route::Token);
        }
        if headers.contains_key(FORWARDED_FOR_HEADER) {
            return reply(status_only(StatusCode::BAD_REQUEST), Route::Token);
        }
        let Some(ttl) = parse_ttl(headers) else {
            return reply(status_only(StatusCode::BAD_REQUEST), Route::Token);
        };
        if !endpoint.may_get_token(caller) {
            return refuse(Route::Token, NOT_LOCAL_REFUSAL);
        }
        let token = endpoint.tokens.issue(Duration::from_secs(ttl));
        let mut response = text(StatusCode::OK, token);
        response
            .headers_mut()
            .insert(TOKEN_TTL_HEADER, HeaderValue::from(ttl));
        return Reply {
            ttl: ResponseTtl::HopLimit,
            ..reply(response, Route::Token)
        };
    }
    if method != Method::GET && method != Method::HEAD {
        let allow = if is_token_path { "PUT" } else { "GET, HEAD" };
        return reply(
            not_allowed(allow),
            if is_token_path {
                Route::Token
            } else {
                Route::Other
            },
        );
    }
    if is_token_path {
        return reply(not_allowed("PUT"), Route::Token);
    }

    // IMDSv2: a presented token must be valid; without one, only if v1 is on.
    match headers.get(TOKEN_HEADER) {
        Some(value) => {
            let valid = value
                .to_str()
                .map(|t| endpoint.tokens.validate(t).is_ok())
                .unwrap_or(false);
            if !valid {
                return reply(status_only(StatusCode::UNAUTHORIZED), Route::Unauthorized);
            }
        }
        None if !endpoint.imds_v1 => {
            return reply(status_only(StatusCode::UNAUTHORIZED), Route::Unauthorized);
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
    if !endpoint.may_read_role(caller)
        && matches!(segments.as_slice(), [v, "meta-data", "iam", ..] if is_version(v))
    {
        return refuse(Route::IamRefused, ALLOW_LIST_REFUSAL);
    }

    let (response, route) = match segments.as_slice() {
        [] => (text(StatusCode::OK, "latest"), Route::Index),
        [v] if is_version(v) => (text(StatusCode::OK, "dynamic\nmeta-data"), Route::Index),
        [v, rest @ ..] if is_version(v) => match rest {
            ["meta-data"] => {
                let index = if role.is_some() {
                    "iam/\ninstance-id\nplacement/"
                } else {
                    "instance-id\nplacement/"
                };
                (text(StatusCode::OK, index), Route::Index)
            }
            ["meta-data", "iam"] => match role {
                Some(_) => (
                    text(StatusCode::OK, "info\nsecurity-credentials/"),
                    Route::Index,
                ),
                None => (not_found(), Route::Index),
            },
            ["meta-data", "iam", "info"] => match role {
                Some(role) => (
                    iam_info(role, snapshot.last_refresh.unwrap_or(id.started)),
                    Route::IamInfo,
                ),
                None => (not_found(), Route::IamInfo),
            },
            ["meta-data", "iam", list @ ("security-credentials" | "security-credentials-extended")] =>
            {
                let route = if *list == "security-credentials" {
                    Route::CredentialsList
                } else {
                    Route::CredentialsExtendedList
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
                    Route::CredentialsExtended
                } else {
                    Route::Credentials
                };
                match (role, creds) {
                    (Some(role), Some(c)) if role.name() == *name => (
                        credential_document(c, extended.then(|| role.account_id())),
                        route,
                    ),
                    _ => (not_found(), route),
                }
            }
            ["meta-data", "instance-id"] => (
                text(StatusCode::OK, id.instance_id.clone()),
                Route::InstanceId,
            ),
            ["meta-data", "placement"] => (
                text(StatusCode::OK, "availability-zone\nregion"),
                Route::Index,
            ),
            ["meta-data", "placement", "region"] => {
                (text(StatusCode::OK, id.region.clone()), Route::Region)
            }
            ["meta-data", "placement", "availability-zone"] => (
                text(StatusCode::OK, id.availability_zone.clone()),
                Route::AvailabilityZone,
            ),
            ["dynamic"] => (text(StatusCode::OK, "instance-identity/"), Route::Index),
            ["dynamic", "instance-identity"] => (text(StatusCode::OK, "document"), Route::Index),
            ["dynamic", "instance-identity", "document"] => {
                (identity_document(id, role), Route::IdentityDocument)
            }
            _ => (not_found(), Route::Other),
        },
        _ => (not_found(), Route::Other),
    };
    Reply {
        response,
        route,
        stale,
        ttl: ResponseTtl::System,
        refused: None,
    }
}

//! The container credentials endpoint, as one function from a request to a
//! response: what SDKs call with `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
//! an authorization token (`AWS_CONTAINER_AUTHORIZATION_TOKEN`, or `…_FILE`).
//!
//! [`handle`] serves the same role and snapshot as IMDS, so a removed role
//! stops here at the same moment. Unlike IMDS every caller proves who it is:
//! the `Authorization` header must hold a consumer's token
//! ([`ConsumerTokens`]). Status codes:
//! - `GET`/`HEAD /v1/credentials` with a valid token: 200 and the ECS
//!   document (AccessKeyId, SecretAccessKey, Token, Expiration, AccountId,
//!   RoleArn); 404 with no role; 503 while the role has no usable
//!   credentials.
//! - No token: 401. An unknown, expired or revoked token, or a caller
//!   outside `allowed-uids`/`allowed-gids`: 403, decided before anything
//!   secret is rendered. Two `Authorization` headers: 400.
//! - A `Host` that is not an IP literal or `localhost`: 400. Other paths:
//!   404. Other methods: 405.

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Method, Request, Response, StatusCode};

use super::documents::{container_document, container_error, not_allowed, status_only};
use super::imds::{Caller, Endpoint, Reply, ResponseTtl, ALLOW_LIST_REFUSAL};
use super::request::host_is_allowed;
use super::route::Route;
use crate::consumers::{ConsumerTokens, Verdict};
use crate::credentials::refresh::Snapshot;

/// The one path served.
pub const CREDENTIALS_PATH: &str = "/v1/credentials";

/// Why a request without a token was refused.
pub const NO_TOKEN_REFUSAL: &str = "container credentials refused: no Authorization token";
/// Why an unknown token was refused.
pub const UNKNOWN_TOKEN_REFUSAL: &str = "container credentials refused: unknown token";
/// Why an expired token was refused.
pub const EXPIRED_TOKEN_REFUSAL: &str =
    "container credentials refused: the consumer's token expired";
/// Why a revoked token was refused.
pub const REVOKED_TOKEN_REFUSAL: &str =
    "container credentials refused: the consumer's token is revoked";
/// Why a request with two tokens was refused.
pub const TWO_TOKENS_REFUSAL: &str = "container credentials refused: two Authorization headers";

/// Said to a consumer when the host has no role.
pub const NO_ROLE: &str = "this host has no role";
/// Said to a consumer while the role has no usable credentials.
pub const NOT_YET: &str = "the role's credentials are not available yet; try again";

/// What the container handler decided, and for which consumer.
#[derive(Debug)]
pub struct ContainerReply {
    /// The response and what it means.
    pub reply: Reply,
    /// The consumer the token belongs to, when it is known (valid, expired
    /// or revoked).
    pub consumer: Option<String>,
}

/// Answers one request to the container endpoint.
pub fn handle<B>(
    req: &Request<B>,
    snapshot: &Snapshot,
    endpoint: &Endpoint,
    caller: &Caller,
    consumers: &ConsumerTokens,
) -> ContainerReply {
    let answer = |response: Response<Bytes>, route, consumer: Option<String>| ContainerReply {
        reply: Reply {
            response,
            route,
            stale: false,
            ttl: ResponseTtl::System,
            refused: None,
        },
        consumer,
    };
    let refuse = |status, why: &'static str, consumer: Option<String>| ContainerReply {
        reply: Reply {
            response: container_error(status, why),
            route: Route::ContainerRefused,
            stale: false,
            ttl: ResponseTtl::System,
            refused: Some(why),
        },
        consumer,
    };
    if !host_is_allowed(req) {
        return answer(status_only(StatusCode::BAD_REQUEST), Route::BadHost, None);
    }
    if req.uri().path() != CREDENTIALS_PATH {
        return answer(status_only(StatusCode::NOT_FOUND), Route::Other, None);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return answer(not_allowed("GET, HEAD"), Route::Other, None);
    }
    let mut tokens = req.headers().get_all(AUTHORIZATION).iter();
    let (token, second) = (tokens.next(), tokens.next());
    if second.is_some() {
        return refuse(StatusCode::BAD_REQUEST, TWO_TOKENS_REFUSAL, None);
    }
    let Some(token) = token else {
        return refuse(StatusCode::UNAUTHORIZED, NO_TOKEN_REFUSAL, None);
    };
    // A header that is not text is no consumer's token.
    let verdict = token
        .to_str()
        .map_or(Verdict::Unknown, |t| consumers.verify(t));
    let consumer = match verdict {
        Verdict::Valid(name) => name,
        Verdict::Unknown => return refuse(StatusCode::FORBIDDEN, UNKNOWN_TOKEN_REFUSAL, None),
        Verdict::Expired(name) => {
            return refuse(StatusCode::FORBIDDEN, EXPIRED_TOKEN_REFUSAL, Some(name))
        }
        Verdict::Revoked(name) => {
            return refuse(StatusCode::FORBIDDEN, REVOKED_TOKEN_REFUSAL, Some(name))
        }
    };
    if !endpoint.may_read_role(caller) {
        return refuse(StatusCode::FORBIDDEN, ALLOW_LIST_REFUSAL, Some(consumer));
    }
    let (now, boot) = (endpoint.clock.now(), endpoint.clock.boot_time());
    let Some(association) = snapshot.association.as_ref() else {
        return answer(
            container_error(StatusCode::NOT_FOUND, NO_ROLE),
            Route::ContainerCredentials,
            Some(consumer),
        );
    };
    match snapshot.usable(now, boot) {
        Some(c) => answer(
            container_document(c, &association.role),
            Route::ContainerCredentials,
            Some(consumer),
        ),
        None => {
            let mut out = answer(
                container_error(StatusCode::SERVICE_UNAVAILABLE, NOT_YET),
                Route::ContainerCredentials,
                Some(consumer),
            );
            out.reply.stale = snapshot.served.is_some();
            out
        }
    }
}

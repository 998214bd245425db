//! Checks on an IMDS request before it is routed: the host it names
//! (against DNS rebinding), the token TTL it asks for, and the metadata
//! API versions EC2 serves.

use std::net::IpAddr;

use http::header::HeaderValue;
use http::{HeaderMap, Request};

use super::token::{MAX_TOKEN_TTL_SECONDS, MIN_TOKEN_TTL_SECONDS};

/// Request header carrying the requested token TTL; also sent back.
pub const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// Request header carrying the session token.
pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// Proxies add this; a token request carrying it is refused.
pub const FORWARDED_FOR_HEADER: &str = "x-forwarded-for";

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
            authority_is_allowed(target) && header.is_none_or(|h| h.eq_ignore_ascii_case(target))
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
pub fn parse_ttl(headers: &HeaderMap) -> Option<u64> {
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

/// The dated metadata API versions EC2 lists at `/`, oldest first.
pub const DATED_VERSIONS: &str = "1.0 2007-01-19 2007-03-01 2007-08-29 2007-10-10 2007-12-15 \
2008-02-01 2008-09-01 2009-04-04 2011-01-01 2011-05-01 2012-01-12 2014-02-25 2014-11-05 \
2015-10-20 2016-04-19 2016-06-30 2016-09-02 2018-03-28 2018-08-17 2018-09-24 2019-10-01 \
2020-10-27 2021-01-03 2021-03-23 2021-07-15 2022-09-24 2024-04-11";

/// A metadata API version EC2 serves: `latest` or one of [`DATED_VERSIONS`].
pub fn is_version(segment: &str) -> bool {
    segment == "latest" || DATED_VERSIONS.split(' ').any(|v| v == segment)
}

//! Properties of the request handler over random requests: it never panics,
//! with IMDSv1 disabled it never returns a credential (or the role's name)
//! to a request without a valid token, a caller outside the allow-list
//! never learns the role even with a valid token, and with hop limit 1 a
//! caller from elsewhere never gets a token. Runs in CI; `fuzz/` holds the
//! coverage-guided version of the same target.

mod support;

use hostrole::endpoint::access::AllowList;
use hostrole::endpoint::imds::{handle, Caller, ResponseTtl, Route};
use http::{Method, Request};
use proptest::prelude::*;
use support::world::*;

/// Path pieces an attacker would try, plus arbitrary text.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("latest".to_owned()),
        Just("2021-03-23".to_owned()),
        Just("meta-data".to_owned()),
        Just("iam".to_owned()),
        Just("security-credentials".to_owned()),
        Just("security-credentials-extended".to_owned()),
        Just("team".to_owned()),
        Just("demo".to_owned()),
        Just("api".to_owned()),
        Just("token".to_owned()),
        Just("dynamic".to_owned()),
        Just("instance-identity".to_owned()),
        Just("document".to_owned()),
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just("%2e%2e".to_owned()),
        Just("DEMO".to_owned()),
        "[a-zA-Z0-9%._~-]{0,12}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        // The credential paths themselves, so that most cases reach them.
        1 => Just("/latest/meta-data/iam/security-credentials/demo".to_owned()),
        1 => Just("/latest/meta-data/iam/security-credentials/".to_owned()),
        1 => Just("//latest//meta-data/iam/security-credentials-extended/demo/".to_owned()),
        3 => random_path(),
    ]
}

fn random_path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(segment(), 0..7),
        prop::bool::ANY,
        prop::bool::ANY,
    )
        .prop_map(|(segs, trailing, double)| {
            let sep = if double { "//" } else { "/" };
            let mut p = format!("/{}", segs.join(sep));
            if trailing {
                p.push('/');
            }
            p
        })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::HEAD),
        Just(Method::PUT),
        Just(Method::POST),
        Just(Method::DELETE),
        Just(Method::OPTIONS),
        "[A-Z]{1,8}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

/// What the token header holds.
#[derive(Debug, Clone)]
enum TokenHeader {
    None,
    Valid,
    /// A valid token with one character changed.
    Tampered(usize),
    Random(String),
}

fn token_header() -> impl Strategy<Value = TokenHeader> {
    prop_oneof![
        Just(TokenHeader::None),
        Just(TokenHeader::Valid),
        (0usize..200).prop_map(TokenHeader::Tampered),
        "[ -~]{0,120}".prop_map(TokenHeader::Random),
    ]
}

fn extra_headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        Just("host".to_owned()),
        Just("x-aws-ec2-metadata-token-ttl-seconds".to_owned()),
        Just("x-forwarded-for".to_owned()),
        Just("x-aws-ec2-metadata-token".to_owned()),
        Just("content-length".to_owned()),
        "[a-z-]{1,20}",
    ];
    let value = prop_oneof![
        Just("169.254.169.254".to_owned()),
        Just("localhost".to_owned()),
        Just("evil.example".to_owned()),
        Just("21600".to_owned()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("99999999999999999999".to_owned()),
        "[ -~]{0,40}",
    ];
    prop::collection::vec((name, value), 0..5)
}

fn tampered(token: &str, at: usize) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let i = at % bytes.len();
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn no_request_without_a_valid_token_gets_credentials_when_v1_is_disabled(
        method in method(),
        path in path(),
        token in token_header(),
        headers in extra_headers(),
    ) {
        let w = world_with(false, true);
        let valid = w.token();
        let mut b = Request::builder().method(method).uri(path.as_str());
        let mut host_set = false;
        for (k, v) in &headers {
            host_set |= k == "host";
            b = b.header(k.as_str(), v.as_str());
        }
        if !host_set {
            b = b.header("host", "169.254.169.254");
        }
        let carries_valid_token = match &token {
            TokenHeader::None => false,
            TokenHeader::Valid => {
                b = b.header("x-aws-ec2-metadata-token", valid.as_str());
                true
            }
            TokenHeader::Tampered(at) => {
                let t = tampered(&valid, *at);
                b = b.header("x-aws-ec2-metadata-token", t.as_str());
                false
            }
            TokenHeader::Random(t) => {
                b = b.header("x-aws-ec2-metadata-token", t.as_str());
                false
            }
        };
        // A random header may have carried the real token; count it as valid.
        let carries_valid_token = carries_valid_token
            || headers.iter().any(|(k, v)| k == "x-aws-ec2-metadata-token" && v == &valid);
        let Ok(req) = b.body(()) else {
            // http refused to build it (an invalid header value): nothing to send.
            return Ok(());
        };
        let reply = handle(&req, &w.snapshot, &w.endpoint, &Caller::default());
        let text = String::from_utf8_lossy(reply.response.body()).into_owned();
        if !carries_valid_token {
            prop_assert!(!text.contains(&"s".repeat(40)), "secret served: {req:?}");
            prop_assert!(!text.contains("ASIA"), "key id served: {req:?}");
            prop_assert!(!text.contains(&"t".repeat(300)), "session token served: {req:?}");
            prop_assert!(
                !reply.route.reveals_role() || reply.response.status() != 200,
                "credential route answered 200 without a token: {req:?}"
            );
        }
        if reply.response.status() == 200 && text.contains("ASIA") {
            prop_assert!(carries_valid_token);
        }
    }

    #[test]
    fn a_caller_outside_the_allow_list_never_learns_the_role_and_a_far_one_gets_no_token(
        method in prop_oneof![1 => Just(Method::PUT), 3 => method()],
        path in prop_oneof![1 => Just("/latest/api/token".to_owned()), 3 => path()],
        headers in extra_headers(),
        caller_uid in prop::option::of(prop_oneof![Just(0u32), Just(1000u32), Just(65534u32), any::<u32>()]),
        allowed_uids in prop::collection::vec(prop_oneof![Just(0u32), Just(1000u32), any::<u32>()], 0..3),
        restricted in prop::bool::ANY,
        on_this_host in prop::bool::ANY,
        hop_limit in 1u8..=3,
    ) {
        let mut w = world_with(true, true);
        w.endpoint.hop_limit = hop_limit;
        if restricted {
            // Groups are never looked up here: gids only through a uid's groups.
            w.endpoint.access = Some(AllowList::new(allowed_uids.clone(), vec![]));
        }
        let caller = Caller { addr: None, on_this_host, uid: caller_uid, groups: None };
        let valid = w.token();
        let mut b = Request::builder()
            .method(method)
            .uri(path.as_str())
            .header("host", "169.254.169.254")
            .header("x-aws-ec2-metadata-token", valid.as_str())
            .header("x-aws-ec2-metadata-token-ttl-seconds", "60");
        for (k, v) in &headers {
            if k != "host" {
                b = b.header(k.as_str(), v.as_str());
            }
        }
        let Ok(req) = b.body(()) else {
            return Ok(());
        };
        let reply = handle(&req, &w.snapshot, &w.endpoint, &caller);
        let text = String::from_utf8_lossy(reply.response.body()).into_owned();
        let allowed = !restricted || caller_uid.is_some_and(|u| allowed_uids.contains(&u));
        if !allowed {
            prop_assert!(!text.contains("demo"), "role named to a refused caller: {req:?}");
            prop_assert!(!text.contains("ASIA"), "credentials to a refused caller: {req:?}");
            prop_assert!(!reply.route.reveals_role(), "role route reached by a refused caller: {req:?}");
        }
        if reply.route == Route::Token && reply.response.status() == 200 {
            prop_assert!(on_this_host || hop_limit > 1, "token to a caller from elsewhere: {req:?}");
            prop_assert_eq!(reply.ttl, ResponseTtl::HopLimit);
        } else {
            prop_assert_eq!(reply.ttl, ResponseTtl::System);
        }
    }
}

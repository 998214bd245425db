//! The IMDS wire contract, one test per path and status code, against the
//! pure handler (no network).

mod support;

use std::time::Duration;

use hostrole::clock::Clock;
use hostrole::endpoint::imds::{handle, Caller, Reply, ResponseTtl, Route};
use hostrole::endpoint::token::TokenAuthority;
use http::{Method, Request};
use support::world::*;

fn status(r: &Reply) -> u16 {
    r.response.status().as_u16()
}

fn is_whole_second_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

// --- PUT /latest/api/token ---

#[tokio::test(start_paused = true)]
async fn token_put_returns_the_token_and_echoes_the_ttl_header() {
    let w = world();
    let r = w.send(
        Method::PUT,
        "/latest/api/token",
        &[("x-aws-ec2-metadata-token-ttl-seconds", "300")],
    );
    assert_eq!(status(&r), 200);
    assert_eq!(
        r.response.headers()["x-aws-ec2-metadata-token-ttl-seconds"],
        "300"
    );
    let t = body(&r.response);
    assert!(
        !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()),
        "{t:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn token_put_with_a_missing_or_bad_ttl_is_400() {
    let w = world();
    assert_eq!(status(&w.send(Method::PUT, "/latest/api/token", &[])), 400);
    for ttl in [
        "0",
        "21601",
        "-1",
        "abc",
        "1.5",
        "",
        " ",
        "99999999999999999999",
    ] {
        let r = w.send(
            Method::PUT,
            "/latest/api/token",
            &[("x-aws-ec2-metadata-token-ttl-seconds", ttl)],
        );
        assert_eq!(status(&r), 400, "ttl {ttl:?}");
    }
    for ttl in ["1", "21600"] {
        let r = w.send(
            Method::PUT,
            "/latest/api/token",
            &[("x-aws-ec2-metadata-token-ttl-seconds", ttl)],
        );
        assert_eq!(status(&r), 200, "ttl {ttl:?}");
    }
    let dup = w.send(
        Method::PUT,
        "/latest/api/token",
        &[
            ("x-aws-ec2-metadata-token-ttl-seconds", "60"),
            ("x-aws-ec2-metadata-token-ttl-seconds", "61"),
        ],
    );
    assert_eq!(status(&dup), 400);
}

#[tokio::test(start_paused = true)]
async fn token_put_with_x_forwarded_for_is_400() {
    let w = world();
    let r = w.send(
        Method::PUT,
        "/latest/api/token",
        &[
            ("x-aws-ec2-metadata-token-ttl-seconds", "60"),
            ("x-forwarded-for", "10.0.0.1"),
        ],
    );
    assert_eq!(status(&r), 400);
}

#[tokio::test(start_paused = true)]
async fn token_put_on_another_api_token_path_is_403() {
    let w = world();
    for path in [
        "/other/api/token",
        "/latest/foo/api/token",
        "/2021-01-03/api/token",
        "/a/b/c/api/token",
    ] {
        let r = w.send(
            Method::PUT,
            path,
            &[("x-aws-ec2-metadata-token-ttl-seconds", "60")],
        );
        assert_eq!(status(&r), 403, "{path}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_token_path_tolerates_duplicate_and_trailing_slashes() {
    let w = world();
    for path in ["//latest/api/token", "/latest//api/token/"] {
        let r = w.send(
            Method::PUT,
            path,
            &[("x-aws-ec2-metadata-token-ttl-seconds", "60")],
        );
        assert_eq!(status(&r), 200, "{path}");
    }
}

#[tokio::test(start_paused = true)]
async fn other_methods_are_405_with_allow() {
    let w = world();
    let r = w.send(Method::PUT, "/latest/meta-data/", &[]);
    assert_eq!(
        (status(&r), &r.response.headers()["allow"]),
        (405, &"GET, HEAD".parse().unwrap())
    );
    let r = w.send(Method::GET, "/latest/api/token", &[]);
    assert_eq!(
        (status(&r), &r.response.headers()["allow"]),
        (405, &"PUT".parse().unwrap())
    );
    for m in [Method::POST, Method::DELETE, Method::PATCH, Method::OPTIONS] {
        assert_eq!(
            status(&w.send(
                m.clone(),
                "/latest/meta-data/iam/security-credentials/",
                &[]
            )),
            405,
            "{m}"
        );
        assert_eq!(
            status(&w.send(m.clone(), "/latest/api/token", &[])),
            405,
            "{m}"
        );
    }
}

// --- tokens on GET ---

#[tokio::test(start_paused = true)]
async fn a_get_without_a_token_is_401_when_v1_is_disabled() {
    let w = world();
    assert_eq!(
        status(&w.send(
            Method::GET,
            "/latest/meta-data/iam/security-credentials/",
            &[]
        )),
        401
    );
    assert_eq!(
        status(&w.send(Method::GET, "/latest/meta-data/placement/region", &[])),
        401
    );
}

#[tokio::test(start_paused = true)]
async fn a_get_without_a_token_is_served_when_v1_is_allowed() {
    let w = world_with(true, true);
    let r = w.send(
        Method::GET,
        "/latest/meta-data/iam/security-credentials/",
        &[],
    );
    assert_eq!((status(&r), body(&r.response).as_str()), (200, "demo"));
}

#[tokio::test(start_paused = true)]
async fn an_invalid_token_is_401_even_when_v1_is_allowed() {
    let w = world_with(true, true);
    let good = w.token();
    let mut tampered = good.clone().into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let other = TokenAuthority::new([2u8; 32], "boot".into(), w.clock.clone())
        .issue(Duration::from_secs(60));
    for t in [
        "",
        "garbage",
        &String::from_utf8(tampered).unwrap(),
        &other,
        &"A".repeat(200),
    ] {
        let r = w.send(
            Method::GET,
            "/latest/meta-data/instance-id",
            &[("x-aws-ec2-metadata-token", t)],
        );
        assert_eq!(status(&r), 401, "token {t:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_expired_token_is_401() {
    let w = world();
    let r = w.send(
        Method::PUT,
        "/latest/api/token",
        &[("x-aws-ec2-metadata-token-ttl-seconds", "5")],
    );
    let t = body(&r.response);
    let get = |w: &World| {
        status(&w.send(
            Method::GET,
            "/latest/meta-data/instance-id",
            &[("x-aws-ec2-metadata-token", &t)],
        ))
    };
    assert_eq!(get(&w), 200);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(get(&w), 401);
}

// --- credentials ---

#[tokio::test(start_paused = true)]
async fn the_listing_is_the_role_name_without_a_newline() {
    let w = world();
    for path in [
        "/latest/meta-data/iam/security-credentials",
        "/latest/meta-data/iam/security-credentials/",
        "//latest//meta-data/iam//security-credentials//",
        "/latest/meta-data/iam/security-credentials-extended/",
    ] {
        let r = w.get(path);
        assert_eq!(status(&r), 200, "{path}");
        assert_eq!(body(&r.response), "demo", "{path}");
        assert_eq!(r.response.headers()["content-type"], "text/plain");
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_role_every_iam_path_is_404() {
    let w = world_with(false, false);
    for path in [
        "/latest/meta-data/iam/",
        "/latest/meta-data/iam/info",
        "/latest/meta-data/iam/security-credentials/",
        "/latest/meta-data/iam/security-credentials/demo",
        "/latest/meta-data/iam/security-credentials-extended/",
        "/latest/meta-data/iam/security-credentials-extended/demo",
    ] {
        assert_eq!(status(&w.get(path)), 404, "{path}");
    }
    assert!(!body(&w.get("/latest/meta-data/").response).contains("iam"));
}

#[tokio::test(start_paused = true)]
async fn the_credentials_document_has_every_key_in_sdk_shape() {
    let w = world();
    for path in [
        "/latest/meta-data/iam/security-credentials/demo",
        "/latest/meta-data/iam/security-credentials/demo/",
    ] {
        let r = w.get(path);
        assert_eq!(status(&r), 200, "{path}");
        let doc: serde_json::Value = serde_json::from_str(&body(&r.response)).unwrap();
        assert_eq!(doc["Code"], "Success");
        assert_eq!(doc["Type"], "AWS-HMAC");
        assert_eq!(doc["AccessKeyId"], "ASIAAAAAAAAAAAAAAAAA");
        assert_eq!(doc["SecretAccessKey"], "s".repeat(40));
        assert_eq!(doc["Token"], "t".repeat(300));
        assert!(
            is_whole_second_utc(doc["Expiration"].as_str().unwrap()),
            "{doc}"
        );
        assert!(
            is_whole_second_utc(doc["LastUpdated"].as_str().unwrap()),
            "{doc}"
        );
        assert!(doc.get("AccountId").is_none());
        assert!(!r.stale);
    }
}

#[tokio::test(start_paused = true)]
async fn the_extended_document_adds_the_account_id() {
    let w = world();
    let r = w.get("/latest/meta-data/iam/security-credentials-extended/demo");
    assert_eq!(status(&r), 200);
    let doc: serde_json::Value = serde_json::from_str(&body(&r.response)).unwrap();
    assert_eq!(doc["AccountId"], "123456789012");
    assert_eq!(doc["AccessKeyId"], "ASIAAAAAAAAAAAAAAAAA");
}

#[tokio::test(start_paused = true)]
async fn an_unknown_role_name_is_404() {
    let w = world();
    for name in ["other", "Demo", "team", "demo/extra"] {
        let path = format!("/latest/meta-data/iam/security-credentials/{name}");
        assert_eq!(status(&w.get(&path)), 404, "{path}");
    }
}

#[tokio::test(start_paused = true)]
async fn credentials_past_their_wall_clock_expiry_are_never_served() {
    let w = world();
    let t = w.token();
    w.clock.jump_wall_ms(3_600_000);
    let r = w.send(
        Method::GET,
        "/latest/meta-data/iam/security-credentials/demo",
        &[("x-aws-ec2-metadata-token", &t)],
    );
    assert_eq!(status(&r), 404);
    assert!(r.stale, "the refresher is woken");
}

#[tokio::test(start_paused = true)]
async fn credentials_past_their_boot_clock_deadline_are_never_served() {
    let w = world();
    let t = w.token();
    // A suspend of just over the credentials' hour, during which the wall
    // clock was set back by as much (a bad RTC, NTP stepping it): the wall
    // clock alone still says the credentials are good; the boot clock, which
    // counts the suspend, says they are not. The token (5 h left) stays valid.
    w.clock.suspend_for(Duration::from_secs(3601));
    w.clock.jump_wall_ms(-3_601_000);
    let served = w.snapshot.served.as_ref().unwrap();
    assert!(
        !served.credentials.is_expired(w.clock.now()),
        "only the boot clock can tell"
    );
    let r = w.send(
        Method::GET,
        "/latest/meta-data/iam/security-credentials/demo",
        &[("x-aws-ec2-metadata-token", &t)],
    );
    assert_eq!(status(&r), 404);
    assert!(r.stale);
    // The listing still names the role: it is associated, just not servable.
    let r = w.send(
        Method::GET,
        "/latest/meta-data/iam/security-credentials/",
        &[("x-aws-ec2-metadata-token", &t)],
    );
    assert_eq!(body(&r.response), "demo");
}

// --- the rest of the metadata ---

#[tokio::test(start_paused = true)]
async fn iam_info_describes_the_instance_profile() {
    let w = world();
    let r = w.get("/latest/meta-data/iam/info");
    assert_eq!(status(&r), 200);
    let info: serde_json::Value = serde_json::from_str(&body(&r.response)).unwrap();
    assert_eq!(info["Code"], "Success");
    assert_eq!(
        info["InstanceProfileArn"],
        "arn:aws:iam::123456789012:instance-profile/demo"
    );
    assert!(info["InstanceProfileId"]
        .as_str()
        .unwrap()
        .starts_with("AIPA"));
    assert!(is_whole_second_utc(info["LastUpdated"].as_str().unwrap()));
}

#[tokio::test(start_paused = true)]
async fn placement_and_instance_id_are_served() {
    let w = world();
    for (path, want) in [
        ("/latest/meta-data/placement/region", "eu-central-1"),
        (
            "/latest/meta-data/placement/availability-zone",
            "eu-central-1b",
        ),
        (
            "/latest/meta-data/placement/availability-zone/",
            "eu-central-1b",
        ),
        ("/latest/meta-data/instance-id", "i-0123456789abcdef0"),
        ("/2021-01-03/meta-data/placement/region", "eu-central-1"),
    ] {
        let r = w.get(path);
        assert_eq!(
            (status(&r), body(&r.response).as_str()),
            (200, want),
            "{path}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_identity_document_carries_region_account_and_instance() {
    let w = world();
    let r = w.get("/latest/dynamic/instance-identity/document");
    assert_eq!(status(&r), 200);
    let doc: serde_json::Value = serde_json::from_str(&body(&r.response)).unwrap();
    assert_eq!(doc["region"], "eu-central-1");
    assert_eq!(doc["availabilityZone"], "eu-central-1b");
    assert_eq!(doc["accountId"], "123456789012");
    assert_eq!(doc["instanceId"], "i-0123456789abcdef0");
    assert!(is_whole_second_utc(doc["pendingTime"].as_str().unwrap()));
}

#[tokio::test(start_paused = true)]
async fn indexes_list_what_is_served() {
    let w = world();
    assert_eq!(body(&w.get("/").response), "latest");
    assert_eq!(body(&w.get("/latest/").response), "dynamic\nmeta-data");
    let index = body(&w.get("/latest/meta-data/").response);
    for entry in ["iam/", "instance-id", "placement/"] {
        assert!(
            index.lines().any(|l| l == entry),
            "{entry} missing from {index:?}"
        );
    }
    assert_eq!(
        body(&w.get("/latest/meta-data/iam/").response),
        "info\nsecurity-credentials/"
    );
    assert_eq!(
        body(&w.get("/latest/meta-data/placement/").response),
        "availability-zone\nregion"
    );
    assert_eq!(
        body(&w.get("/latest/dynamic/").response),
        "instance-identity/"
    );
    assert_eq!(
        body(&w.get("/latest/dynamic/instance-identity/").response),
        "document"
    );
    // A version EC2 does not list has no index.
    assert_eq!(status(&w.get("/9999-99-99")), 404);
    assert_eq!(status(&w.get("/9999-99-99/meta-data/instance-id")), 404);
    assert_eq!(status(&w.get("/2021-03-23/meta-data/instance-id")), 200);
    assert_eq!(status(&w.get("/2021-03-23")), 200);
}

#[tokio::test(start_paused = true)]
async fn each_route_is_named_for_logs_and_metrics() {
    let w = world();
    for (path, route) in [
        (
            "/latest/meta-data/iam/security-credentials/",
            Route::CredentialsList,
        ),
        (
            "/latest/meta-data/iam/security-credentials-extended/",
            Route::CredentialsExtendedList,
        ),
        (
            "/latest/meta-data/iam/security-credentials/demo",
            Route::Credentials,
        ),
        (
            "/latest/meta-data/iam/security-credentials-extended/demo",
            Route::CredentialsExtended,
        ),
        ("/latest/meta-data/iam/info", Route::IamInfo),
        ("/latest/meta-data/instance-id", Route::InstanceId),
        ("/latest/meta-data/placement/region", Route::Region),
        (
            "/latest/dynamic/instance-identity/document",
            Route::IdentityDocument,
        ),
        ("/latest/meta-data/", Route::Index),
        ("/nope", Route::Other),
    ] {
        assert_eq!(w.get(path).route, route, "{path}");
    }
}

#[tokio::test(start_paused = true)]
async fn only_a_token_leaves_with_the_hop_limit_ttl() {
    let w = world();
    let r = w.send(
        Method::PUT,
        "/latest/api/token",
        &[("x-aws-ec2-metadata-token-ttl-seconds", "60")],
    );
    assert_eq!(
        (status(&r), r.route, r.ttl),
        (200, Route::Token, ResponseTtl::HopLimit)
    );
    for path in [
        "/latest/meta-data/iam/security-credentials/demo",
        "/latest/meta-data/",
    ] {
        assert_eq!(w.get(path).ttl, ResponseTtl::System, "{path}");
    }
    let refused = w.send(Method::PUT, "/latest/api/token", &[]);
    assert_eq!((status(&refused), refused.ttl), (400, ResponseTtl::System));
}

#[tokio::test(start_paused = true)]
async fn with_hop_limit_1_only_a_caller_on_this_host_gets_a_token() {
    let mut w = world();
    let far = Caller {
        on_this_host: false,
        ..Caller::default()
    };
    let put = |w: &World, caller: &Caller| {
        w.send_as(
            caller,
            Method::PUT,
            "/latest/api/token",
            &[("x-aws-ec2-metadata-token-ttl-seconds", "60")],
        )
    };
    let r = put(&w, &far);
    assert_eq!(status(&r), 403);
    assert_eq!(r.refused, Some(hostrole::endpoint::imds::NOT_LOCAL_REFUSAL));
    assert_eq!(status(&put(&w, &Caller::default())), 200, "this host");
    // A hop limit of 2 or more lifts the check: the TTL alone decides.
    for hop_limit in [2, 3, 255] {
        w.endpoint.hop_limit = hop_limit;
        assert_eq!(status(&put(&w, &far)), 200, "hop limit {hop_limit}");
    }
}

#[tokio::test(start_paused = true)]
async fn unknown_paths_are_404_never_401_403_or_5xx() {
    let w = world();
    for path in [
        "/latest/meta-data/ami-id",
        "/latest/user-data",
        "/latest/meta-data/iam/security-credentials/demo/x",
        "/nope",
        "/latest/meta-data/placement/region/x",
    ] {
        assert_eq!(status(&w.get(path)), 404, "{path}");
    }
}

#[tokio::test(start_paused = true)]
async fn head_answers_like_get() {
    let w = world();
    let t = w.token();
    let r = w.send(
        Method::HEAD,
        "/latest/meta-data/iam/security-credentials/",
        &[("x-aws-ec2-metadata-token", &t)],
    );
    assert_eq!(status(&r), 200);
    assert_eq!(
        status(&w.send(Method::HEAD, "/latest/meta-data/instance-id", &[])),
        401
    );
}

#[tokio::test(start_paused = true)]
async fn a_host_header_that_is_not_an_ip_or_localhost_is_refused() {
    let w = world();
    let t = w.token();
    let send = |host: Option<&str>| {
        let mut b = Request::builder()
            .method(Method::GET)
            .uri("/latest/meta-data/instance-id");
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b = b.header("x-aws-ec2-metadata-token", t.as_str());
        status(&handle(
            &b.body(()).unwrap(),
            &w.snapshot,
            &w.endpoint,
            &Caller::default(),
        ))
    };
    for bad in [
        "evil.example.com",
        "evil.example.com:80",
        "169.254.169.254.nip.io",
        "localhost:abc",
        "[::1",
    ] {
        assert_eq!(send(Some(bad)), 400, "{bad}");
    }
    for good in [
        "127.0.0.1:1338",
        "localhost",
        "LOCALHOST:80",
        "[::1]:80",
        "[fd00:ec2::254]",
        "169.254.169.254",
    ] {
        assert_eq!(send(Some(good)), 200, "{good}");
    }
    assert_eq!(send(None), 200);
}

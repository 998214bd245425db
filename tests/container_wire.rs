//! The container credentials endpoint's contract, one test per status
//! code, against the pure handler (no network): who gets credentials, who
//! is refused and how, and that a refusal is decided before anything
//! secret is rendered.

mod support;

use std::time::Duration;

use hostrole::clock::{rfc3339_seconds, Clock};
use hostrole::consumers::ConsumerTokens;
use hostrole::endpoint::access::AllowList;
use hostrole::endpoint::container::{
    handle, ContainerReply, EXPIRED_TOKEN_REFUSAL, NO_TOKEN_REFUSAL, REVOKED_TOKEN_REFUSAL,
    TWO_TOKENS_REFUSAL, UNKNOWN_TOKEN_REFUSAL,
};
use hostrole::endpoint::imds::{Caller, Route, ALLOW_LIST_REFUSAL};
use http::{Method, Request};
use support::world::*;

struct Fixture {
    w: World,
    consumers: ConsumerTokens,
    _dir: tempfile::TempDir,
}

fn setup(role: bool) -> Fixture {
    let w = world_with(false, role);
    let dir = tempfile::tempdir().unwrap();
    let consumers = ConsumerTokens::load(dir.path(), w.clock.clone()).unwrap();
    Fixture {
        w,
        consumers,
        _dir: dir,
    }
}

impl Fixture {
    fn ask(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> ContainerReply {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "169.254.170.2");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        handle(
            &b.body(()).unwrap(),
            &self.w.snapshot,
            &self.w.endpoint,
            caller,
            &self.consumers,
        )
    }

    fn get(&self, token: &str) -> ContainerReply {
        self.ask(
            &Caller::default(),
            Method::GET,
            "/v1/credentials",
            &[("authorization", token)],
        )
    }
}

fn status(r: &ContainerReply) -> u16 {
    r.reply.response.status().as_u16()
}

#[tokio::test(start_paused = true)]
async fn a_valid_token_gets_the_roles_credentials_in_the_container_format() {
    let b = setup(true);
    let web = b.consumers.create("web", None).unwrap();
    let r = b.get(&web.token);
    assert_eq!(status(&r), 200);
    assert_eq!(r.reply.route, Route::ContainerCredentials);
    assert_eq!(r.consumer.as_deref(), Some("web"));
    assert_eq!(r.reply.refused, None);
    assert_eq!(
        r.reply.response.headers()["content-type"],
        "application/json"
    );
    let doc: serde_json::Value = serde_json::from_str(&body(&r.reply.response)).unwrap();
    assert_eq!(doc["AccessKeyId"], "ASIAAAAAAAAAAAAAAAAA");
    assert_eq!(doc["SecretAccessKey"], "s".repeat(40));
    assert_eq!(doc["Token"], "t".repeat(300));
    assert_eq!(doc["AccountId"], "123456789012");
    assert_eq!(doc["RoleArn"], ROLE);
    assert_eq!(
        doc["Expiration"],
        rfc3339_seconds(b.w.clock.now() + Duration::from_secs(3600))
    );
    assert_eq!(doc.as_object().unwrap().len(), 6, "{doc}");
    // HEAD answers as GET does.
    let head = b.ask(
        &Caller::default(),
        Method::HEAD,
        "/v1/credentials",
        &[("authorization", &web.token)],
    );
    assert_eq!(status(&head), 200);
}

#[tokio::test(start_paused = true)]
async fn no_token_is_401_and_any_other_token_is_403() {
    let b = setup(true);
    let web = b.consumers.create("web", None).unwrap();
    let r = b.ask(&Caller::default(), Method::GET, "/v1/credentials", &[]);
    assert_eq!(status(&r), 401);
    assert_eq!(r.reply.refused, Some(NO_TOKEN_REFUSAL));
    assert_eq!(r.reply.route, Route::ContainerRefused);
    // A JSON error, which the Go and JS SDKs report as it is.
    assert_eq!(
        r.reply.response.headers()["content-type"],
        "application/json"
    );
    let err: serde_json::Value = serde_json::from_str(&body(&r.reply.response)).unwrap();
    assert_eq!(err["Code"], "Unauthorized");
    assert_eq!(err["Message"], NO_TOKEN_REFUSAL);
    let other_forms = [
        "hrct-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        format!("Bearer {}", *web.token),
        format!("{} ", *web.token),
        web.token.to_uppercase(),
        web.token[..web.token.len() - 1].to_owned(),
        String::new(),
    ];
    for token in &other_forms {
        let r = b.get(token);
        assert_eq!(status(&r), 403, "{token:?}");
        assert_eq!(r.reply.refused, Some(UNKNOWN_TOKEN_REFUSAL));
        assert_eq!(r.consumer, None);
        let err: serde_json::Value = serde_json::from_str(&body(&r.reply.response)).unwrap();
        assert_eq!(err["Code"], "AccessDenied");
        assert!(!body(&r.reply.response).contains("ASIA"));
    }
    // Bytes that are not text.
    let raw = Request::builder()
        .uri("/v1/credentials")
        .header("host", "127.0.0.1")
        .header(
            "authorization",
            http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        )
        .body(())
        .unwrap();
    let r = handle(
        &raw,
        &b.w.snapshot,
        &b.w.endpoint,
        &Caller::default(),
        &b.consumers,
    );
    assert_eq!(status(&r), 403);
    // Two tokens, one of them valid: 400, nothing served.
    let r = b.ask(
        &Caller::default(),
        Method::GET,
        "/v1/credentials",
        &[("authorization", &web.token), ("authorization", "x")],
    );
    assert_eq!(status(&r), 400);
    assert_eq!(r.reply.refused, Some(TWO_TOKENS_REFUSAL));
    // The IMDS token header is no substitute.
    let r = b.ask(
        &Caller::default(),
        Method::GET,
        "/v1/credentials",
        &[("x-aws-ec2-metadata-token", &web.token)],
    );
    assert_eq!(status(&r), 401);
}

#[tokio::test(start_paused = true)]
async fn a_revoked_or_expired_token_is_403_and_names_its_consumer() {
    let b = setup(true);
    let web = b.consumers.create("web", None).unwrap();
    let batch = b
        .consumers
        .create("batch", Some(Duration::from_secs(600)))
        .unwrap();
    assert_eq!(status(&b.get(&web.token)), 200);
    b.consumers.revoke("web").unwrap();
    let r = b.get(&web.token);
    assert_eq!(status(&r), 403);
    assert_eq!(r.reply.refused, Some(REVOKED_TOKEN_REFUSAL));
    assert_eq!(r.consumer.as_deref(), Some("web"));
    assert_eq!(status(&b.get(&batch.token)), 200);
    tokio::time::advance(Duration::from_secs(600)).await;
    let r = b.get(&batch.token);
    assert_eq!(status(&r), 403);
    assert_eq!(r.reply.refused, Some(EXPIRED_TOKEN_REFUSAL));
    assert_eq!(r.consumer.as_deref(), Some("batch"));
}

#[tokio::test(start_paused = true)]
async fn the_allow_list_applies_after_the_token() {
    let mut b = setup(true);
    b.w.endpoint.access = Some(AllowList::new(vec![1000], vec![]));
    let web = b.consumers.create("web", None).unwrap();
    let as_uid = |uid: Option<u32>| Caller {
        uid,
        ..Caller::default()
    };
    let path = "/v1/credentials";
    let auth = [("authorization", web.token.as_str())];
    for caller in [as_uid(Some(1001)), as_uid(None)] {
        let r = b.ask(&caller, Method::GET, path, &auth);
        assert_eq!(status(&r), 403, "{caller:?}");
        assert_eq!(r.reply.refused, Some(ALLOW_LIST_REFUSAL));
        assert_eq!(r.consumer.as_deref(), Some("web"));
        assert!(!body(&r.reply.response).contains("ASIA"));
    }
    assert_eq!(
        status(&b.ask(&as_uid(Some(1000)), Method::GET, path, &auth)),
        200
    );
    // A caller in the list still needs a token.
    assert_eq!(
        status(&b.ask(&as_uid(Some(1000)), Method::GET, path, &[])),
        401
    );
}

#[tokio::test(start_paused = true)]
async fn no_role_is_404_and_a_role_without_credentials_is_503() {
    let b = setup(false);
    let web = b.consumers.create("web", None).unwrap();
    let r = b.get(&web.token);
    assert_eq!(status(&r), 404);
    assert!(!r.reply.stale);
    assert!(body(&r.reply.response).contains("this host has no role"));
    // Expired credentials: 503, and the refresher is woken.
    let b = setup(true);
    let web = b.consumers.create("web", None).unwrap();
    tokio::time::advance(Duration::from_secs(3601)).await;
    let r = b.get(&web.token);
    assert_eq!(status(&r), 503);
    assert!(r.reply.stale);
    assert!(!body(&r.reply.response).contains("ASIA"));
}

#[tokio::test(start_paused = true)]
async fn other_paths_methods_and_hosts_are_refused_before_the_token() {
    let b = setup(true);
    let web = b.consumers.create("web", None).unwrap();
    let auth = [("authorization", web.token.as_str())];
    for path in [
        "/v1/credentials/",
        "/v2/credentials",
        "/latest/meta-data/iam/security-credentials/demo",
        "/v1/credentials/../credentials",
        "/",
    ] {
        let r = b.ask(&Caller::default(), Method::GET, path, &auth);
        assert_eq!(status(&r), 404, "{path}");
        assert_eq!(r.consumer, None);
    }
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let r = b.ask(&Caller::default(), method.clone(), "/v1/credentials", &auth);
        assert_eq!(status(&r), 405, "{method}");
        assert_eq!(r.reply.response.headers()["allow"], "GET, HEAD");
    }
    // A name in Host (DNS rebinding) is refused, token or not.
    let req = Request::builder()
        .uri("/v1/credentials")
        .header("host", "attacker.example:80")
        .header("authorization", web.token.as_str())
        .body(())
        .unwrap();
    let r = handle(
        &req,
        &b.w.snapshot,
        &b.w.endpoint,
        &Caller::default(),
        &b.consumers,
    );
    assert_eq!(status(&r), 400);
    assert_eq!(r.consumer, None);
}

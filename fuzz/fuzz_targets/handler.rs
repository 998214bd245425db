//! Fuzzes the request handler: any method, path and headers, with or
//! without a valid token, from a caller inside or outside an allow-list.
//! It must never panic, with IMDSv1 disabled it must never answer
//! credentials to a request without a valid token, and it must never name
//! the role to a caller outside the allow-list.
#![no_main]

use hostrole::endpoint::access::AllowList;
use hostrole::endpoint::imds::{handle, Caller};
use http::Request;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../tests/support/world.rs"]
mod world;

fuzz_target!(|data: &[u8]| {
    // Layout: one flag byte (bit 0: add a valid token; bit 1: allow-list of
    // uid 1000; bit 2: the caller is uid 1000, else 2000), then lines:
    // method, path, and `name: value` headers.
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.split('\n');
    let method = lines.next().unwrap_or("GET");
    let path = lines.next().unwrap_or("/");
    let mut w = world::world_with(false, true);
    let restricted = flags & 2 == 2;
    if restricted {
        w.endpoint.access = Some(AllowList::new(vec![1000], vec![]));
    }
    let caller = Caller {
        uid: Some(if flags & 4 == 4 { 1000 } else { 2000 }),
        ..Caller::default()
    };
    let valid = w.token();
    let mut b = Request::builder().method(method).uri(path);
    let mut with_token = false;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            with_token |= k.trim().eq_ignore_ascii_case("x-aws-ec2-metadata-token") && v.trim() == valid;
            b = b.header(k.trim(), v.trim());
        }
    }
    if flags & 1 == 1 {
        b = b.header("x-aws-ec2-metadata-token", valid.as_str());
        with_token = true;
    }
    let Ok(req) = b.body(()) else {
        return;
    };
    let reply = handle(&req, &w.snapshot, &w.endpoint, &caller);
    if restricted && caller.uid != Some(1000) {
        let body = reply.response.body();
        assert!(
            !body.windows(4).any(|x| x == b"ASIA" || x == b"demo"),
            "role or credentials to a caller outside the allow-list: {req:?}"
        );
    }
    if !with_token {
        let body = reply.response.body();
        assert!(
            !body.windows(4).any(|x| x == b"ASIA"),
            "credentials without a valid token: {req:?}"
        );
    }
});

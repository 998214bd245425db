//! Fuzzes the request handler: any method, path and headers, with or
//! without a valid token. It must never panic, and with IMDSv1 disabled it
//! must never answer credentials to a request without a valid token.
#![no_main]

use hostrole::endpoint::imds::{handle, Peer};
use http::Request;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../tests/support/world.rs"]
mod world;

fuzz_target!(|data: &[u8]| {
    // Layout: one flag byte (bit 0: add a valid token), then lines:
    // method, path, and `name: value` headers.
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.split('\n');
    let method = lines.next().unwrap_or("GET");
    let path = lines.next().unwrap_or("/");
    let w = world::world_with(false, true);
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
    let reply = handle(&req, &w.snapshot, &w.endpoint, &Peer::default());
    if !with_token {
        let body = reply.response.body();
        assert!(
            !body.windows(4).any(|x| x == b"ASIA"),
            "credentials without a valid token: {req:?}"
        );
    }
});

//! The two ways a connection is served give the same answers: a request
//! that arrives whole and asks to close (`Connection: close`) is answered
//! on the quick path, at accept; the same request in pieces, keep-alive,
//! or with bytes after it is served by hyper. Compared byte for byte, the
//! date aside, against the real binary.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::*;

/// Sends `request` in one write (`split` None) or in two writes 100 ms
/// apart, and reads the whole answer.
fn exchange(addr: SocketAddr, request: &str, split: Option<usize>) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    match split {
        None => s.write_all(request.as_bytes()).unwrap(),
        Some(at) => {
            s.write_all(&request.as_bytes()[..at]).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            s.write_all(&request.as_bytes()[at..]).unwrap();
        }
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// The answer without its date header, which may differ by a second.
fn undated(answer: &str) -> String {
    answer
        .split("\r\n")
        .filter(|l| !l.starts_with("date: "))
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[test]
fn an_answer_at_accept_is_the_answer_hyper_gives() {
    let dir = temp_dir();
    let d = start_demo_daemon(dir.path());
    let addr = d.addr;
    let t = token(addr, 600);
    let creds = "/latest/meta-data/iam/security-credentials/demo";
    let with_token = format!("X-aws-ec2-metadata-token: {t}\r\n");
    let cases = [
        (
            "GET",
            "/latest/meta-data/iam/security-credentials/",
            with_token.as_str(),
        ),
        ("GET", creds, &with_token),
        ("HEAD", creds, &with_token),
        ("GET", "/latest/meta-data/iam/info", &with_token),
        (
            "GET",
            "/latest/dynamic/instance-identity/document",
            &with_token,
        ),
        ("GET", "/latest/meta-data/", &with_token),
        ("GET", "/latest/meta-data/nothing-here", &with_token),
        ("GET", creds, ""),
        ("HEAD", creds, ""),
        ("GET", creds, "X-aws-ec2-metadata-token: forged\r\n"),
        ("PUT", creds, &with_token),
        ("PUT", "/latest/api/token", ""),
        (
            "PUT",
            "/latest/api/token",
            "X-aws-ec2-metadata-token-ttl-seconds: 0\r\n",
        ),
        (
            "PUT",
            "/latest/api/token",
            "X-Forwarded-For: 10.0.0.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n",
        ),
    ];
    for (method, path, headers) in cases {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
        );
        let quick = exchange(addr, &request, None);
        let hyper = exchange(addr, &request, Some(10));
        assert!(quick.starts_with("HTTP/1.1 "), "{method} {path}: {quick:?}");
        assert_eq!(
            undated(&quick),
            undated(&hyper),
            "{method} {path} {headers:?}"
        );
    }
    // A token is new each time: the same head, a body of the same length.
    let put = format!(
        "PUT /latest/api/token HTTP/1.1\r\nHost: {addr}\r\n\
         X-aws-ec2-metadata-token-ttl-seconds: 21600\r\nConnection: close\r\n\r\n"
    );
    let (quick, hyper) = (exchange(addr, &put, None), exchange(addr, &put, Some(3)));
    let (qh, qb) = quick.split_once("\r\n\r\n").unwrap();
    let (hh, hb) = hyper.split_once("\r\n\r\n").unwrap();
    assert_eq!(undated(qh), undated(hh));
    assert!(qh.starts_with("HTTP/1.1 200 OK\r\n"), "{qh}");
    assert_eq!(qb.len(), hb.len());
    for token in [qb, hb] {
        let r = get(addr, creds, token);
        assert_eq!(r.status, 200, "a token from either path works: {r:?}");
    }
}

#[test]
fn bytes_after_a_request_that_asks_to_close_get_one_answer() {
    let dir = temp_dir();
    let d = start_demo_daemon(dir.path());
    let addr = d.addr;
    let one =
        format!("GET /latest/meta-data/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let answer = exchange(addr, &format!("{one}{one}"), None);
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
}

#[test]
fn a_fresh_keep_alive_connection_stays_open_for_more() {
    let dir = temp_dir();
    let d = start_demo_daemon(dir.path());
    let addr = d.addr;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let one = format!("GET /latest/meta-data/ HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    for i in 0..3 {
        s.write_all(one.as_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 401 "), "request {i}: {text}");
        assert!(!text.contains("connection: close"), "request {i}: {text}");
    }
}

use super::*;
use std::convert::Infallible;
use std::net::TcpListener;

use http::StatusCode;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SDK_PUT: &[u8] = b"PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n\
X-aws-ec2-metadata-token-ttl-seconds: 21600\r\nUser-Agent: aws-sdk\r\nConnection: close\r\n\r\n";

fn with_headers(head: &str, headers: &[&str]) -> Vec<u8> {
    let mut r = format!("{head}\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

#[test]
fn a_whole_request_that_asks_to_close_is_taken() {
    let req = parse(SDK_PUT).expect("the SDK's token request");
    assert_eq!(req.method(), Method::PUT);
    assert_eq!(req.uri().path(), "/latest/api/token");
    assert_eq!(
        req.headers()["x-aws-ec2-metadata-token-ttl-seconds"],
        "21600"
    );
    assert_eq!(req.headers()["host"], "169.254.169.254");
    for connection in ["close", "Close", "keep-alive, CLOSE", " te , close "] {
        let r = with_headers(
            "GET /latest/meta-data/ HTTP/1.1",
            &[&format!("Connection: {connection}")],
        );
        assert!(parse(&r).is_some(), "{connection:?}");
    }
    let head = with_headers(
        "HEAD / HTTP/1.1",
        &["Connection: close", "Content-Length: 0"],
    );
    assert_eq!(parse(&head).unwrap().method(), Method::HEAD);
}

#[test]
fn anything_else_goes_to_hyper() {
    let close = "Connection: close";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("incomplete", SDK_PUT[..SDK_PUT.len() - 2].to_vec()),
        ("bytes after the request", [SDK_PUT, b"G"].concat()),
        ("a second request", [SDK_PUT, SDK_PUT].concat()),
        ("keep-alive", with_headers("GET / HTTP/1.1", &[])),
        (
            "keep-alive, said",
            with_headers("GET / HTTP/1.1", &["Connection: keep-alive"]),
        ),
        (
            "a token that only contains close",
            with_headers("GET / HTTP/1.1", &["Connection: closed"]),
        ),
        ("HTTP/1.0", with_headers("GET / HTTP/1.0", &[close])),
        ("POST", with_headers("POST / HTTP/1.1", &[close])),
        ("OPTIONS", with_headers("OPTIONS * HTTP/1.1", &[close])),
        (
            "absolute form",
            with_headers("GET http://169.254.169.254/ HTTP/1.1", &[close]),
        ),
        (
            "a body",
            with_headers("PUT / HTTP/1.1", &[close, "Content-Length: 2"]),
        ),
        (
            "chunked",
            with_headers("PUT / HTTP/1.1", &[close, "Transfer-Encoding: chunked"]),
        ),
        (
            "expect",
            with_headers("PUT / HTTP/1.1", &[close, "Expect: 100-continue"]),
        ),
        (
            "upgrade",
            with_headers("GET / HTTP/1.1", &[close, "Upgrade: h2c"]),
        ),
        (
            "not HTTP",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec(),
        ),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in cases {
        assert!(parse(&bytes).is_none(), "{what}");
    }
    let many: Vec<String> = (0..MAX_HEADERS).map(|i| format!("X-{i}: v")).collect();
    let mut refs: Vec<&str> = many.iter().map(String::as_str).collect();
    refs.push(close);
    assert!(
        parse(&with_headers("GET / HTTP/1.1", &refs)).is_none(),
        "more headers than hyper takes"
    );
    refs.drain(..2);
    assert!(
        parse(&with_headers("GET / HTTP/1.1", &refs)).is_some(),
        "as many as hyper takes"
    );
}

/// What hyper writes for `response` to `request` (which asks to close).
async fn hyper_writes(request: &[u8], response: Response<Bytes>) -> Vec<u8> {
    let (ours, mut theirs) = tokio::io::duplex(1 << 16);
    let service = service_fn(move |_req| {
        let r = response.clone().map(Full::new);
        async move { Ok::<_, Infallible>(r) }
    });
    let server = tokio::spawn(
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(ours), service),
    );
    theirs.write_all(request).await.unwrap();
    let mut out = Vec::new();
    theirs.read_to_end(&mut out).await.unwrap();
    server.await.unwrap().unwrap();
    out
}

fn date_of(written: &[u8]) -> String {
    let text = String::from_utf8_lossy(written);
    let line = text
        .lines()
        .find(|l| l.starts_with("date: "))
        .expect("hyper writes a date");
    line["date: ".len()..].to_owned()
}

#[tokio::test]
async fn the_answer_is_what_hyper_writes_byte_for_byte() {
    let responses = [
        documents_like(StatusCode::OK, &[("content-type", "text/plain")], "demo"),
        documents_like(
            StatusCode::OK,
            &[
                ("content-type", "text/plain"),
                ("x-aws-ec2-metadata-token-ttl-seconds", "21600"),
            ],
            "AQAAAA-token",
        ),
        documents_like(
            StatusCode::UNAUTHORIZED,
            &[("content-type", "text/plain")],
            "Unauthorized",
        ),
        documents_like(
            StatusCode::NOT_FOUND,
            &[("content-type", "text/plain")],
            "Not Found",
        ),
        documents_like(
            StatusCode::FORBIDDEN,
            &[("content-type", "application/json")],
            "{\"Code\":\"x\"}",
        ),
        documents_like(StatusCode::SERVICE_UNAVAILABLE, &[], ""),
        documents_like(
            StatusCode::METHOD_NOT_ALLOWED,
            &[("allow", "GET, HEAD"), ("allow", "PUT")],
            "x",
        ),
    ];
    for response in responses {
        for method in ["GET", "HEAD"] {
            let request = with_headers(&format!("{method} / HTTP/1.1"), &["Connection: close"]);
            let theirs = hyper_writes(&request, response.clone()).await;
            let mut ours = encode_head(&response, method == "HEAD", &date_of(&theirs));
            if method == "GET" {
                ours.extend_from_slice(response.body());
            }
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs),
                "{method} {}",
                response.status()
            );
        }
    }
}

fn documents_like(
    status: StatusCode,
    headers: &[(&str, &'static str)],
    body: &'static str,
) -> Response<Bytes> {
    let mut r = Response::builder().status(status);
    for (name, value) in headers {
        r = r.header(*name, *value);
    }
    r.body(Bytes::from_static(body.as_bytes())).unwrap()
}

#[test]
fn the_date_is_an_http_date_of_now() {
    let date = date_now();
    let parsed = httpdate::parse_http_date(&date).expect(&date);
    let age = std::time::SystemTime::now().duration_since(parsed).unwrap();
    assert!(age < std::time::Duration::from_secs(2), "{date}");
    assert_eq!(date, date_now(), "formatted once a second");
}

/// A connected pair on loopback: ours non-blocking, with a small send
/// buffer, theirs with a small receive buffer that nothing reads yet.
fn tight_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let theirs = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    theirs.set_recv_buffer_size(4096).unwrap();
    theirs
        .connect(&listener.local_addr().unwrap().into())
        .unwrap();
    let (ours, _) = listener.accept().unwrap();
    socket2::SockRef::from(&ours)
        .set_send_buffer_size(4096)
        .unwrap();
    ours.set_nonblocking(true).unwrap();
    (ours, theirs.into())
}

/// Writes `rest` on `stream` and closes it while `theirs` reads to the
/// end: all the client receives.
fn finish_and_receive(mut stream: TcpStream, rest: &[u8], mut theirs: TcpStream) -> Vec<u8> {
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        theirs.read_to_end(&mut all).unwrap();
        all
    });
    stream.set_nonblocking(false).unwrap();
    stream.write_all(rest).unwrap();
    drop(stream);
    reader.join().unwrap()
}

#[test]
fn what_the_socket_does_not_take_is_kept_in_order() {
    let (ours, theirs) = tight_pair();
    let head = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n".to_vec();
    let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let Outcome::Left {
        stream,
        rest: Rest::Write(rest),
        owner,
    } = write_or_keep(ours, &head, &body, None)
    else {
        panic!("a megabyte does not fit a small send buffer");
    };
    assert_eq!(owner, None);
    assert!(!rest.is_empty() && rest.len() < head.len() + body.len());
    let all = finish_and_receive(stream, &rest, theirs);
    assert_eq!(
        all,
        [head, body].concat(),
        "written part and kept rest make the answer"
    );
}

#[test]
fn a_head_the_socket_does_not_take_is_kept_with_the_body() {
    let (ours, theirs) = tight_pair();
    let head: Vec<u8> = (0..1_000_000u32).map(|i| (i % 13) as u8).collect();
    let body = b"tail".to_vec();
    let Outcome::Left {
        stream,
        rest: Rest::Write(rest),
        ..
    } = write_or_keep(ours, &head, &body, None)
    else {
        panic!("kept");
    };
    assert!(rest.ends_with(b"tail"));
    assert_eq!(
        finish_and_receive(stream, &rest, theirs),
        [head, body].concat()
    );
}

#[test]
fn an_answer_to_a_socket_already_full_is_kept_whole() {
    let (mut ours, theirs) = tight_pair();
    let filler = [b'x'; 4096];
    let mut sent = Vec::new();
    loop {
        match ours.write(&filler) {
            Ok(n) => sent.extend_from_slice(&filler[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    let (head, body) = (b"HTTP/1.1 200 OK\r\n\r\n".to_vec(), b"secret".to_vec());
    let Outcome::Left {
        stream,
        rest: Rest::Write(rest),
        ..
    } = write_or_keep(ours, &head, &body, None)
    else {
        panic!("nothing fits: all of it is kept");
    };
    assert_eq!(&rest[..], &[&head[..], &body[..]].concat()[..]);
    let all = finish_and_receive(stream, &rest, theirs);
    assert_eq!(all, [sent, head, body].concat());
}

#[test]
fn an_answer_to_a_caller_that_is_gone_is_done() {
    let (ours, theirs) = tight_pair();
    let theirs = socket2::Socket::from(theirs);
    // Closing with a zero linger resets the connection.
    theirs.set_linger(Some(std::time::Duration::ZERO)).unwrap();
    drop(theirs);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let outcome = write_or_keep(ours, b"HTTP/1.1 200 OK\r\n\r\n", b"ok", None);
    assert!(matches!(outcome, Outcome::Done), "{outcome:?}");
}

#[test]
fn an_answer_the_socket_takes_is_done() {
    let (ours, mut theirs) = tight_pair();
    let outcome = write_or_keep(ours, b"HTTP/1.1 200 OK\r\n\r\n", b"ok", None);
    assert!(matches!(outcome, Outcome::Done), "{outcome:?}");
    drop(outcome);
    let mut all = Vec::new();
    theirs.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"HTTP/1.1 200 OK\r\n\r\nok");
}

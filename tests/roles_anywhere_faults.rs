//! The Roles Anywhere issuer when things go wrong after a good start: the
//! endpoint failing while good credentials are held, an endpoint that never
//! answers, a certificate path swapped for a FIFO, and the call going
//! through an HTTPS proxy (or around it, per NO_PROXY).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hostrole::clock::rfc3339_seconds;
use support::pki::{self, FakeRolesAnywhere, Issued, KeyType, Pki};
use support::*;

fn ra_args(endpoint: &str, host: &Issued) -> Vec<String> {
    pki::ra_args(endpoint, &host.cert, &host.key)
}

fn start(state: &Path, args: &[String], env: &[(&str, &str)]) -> Daemon {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    start_daemon_env(state, &args, env)
}

fn pki_with_host(dir: &Path) -> (Pki, Issued, Issued) {
    let pki = Pki::new(dir);
    let ca = pki.root("anchor", KeyType::P256);
    let host = pki.leaf("host", &ca, KeyType::P256, "01");
    (pki, ca, host)
}

/// Credentials that expire 24 s after issue are refreshed about 12 s in.
/// The endpoint fails with 500 from then on: the last good credentials stay
/// served, unchanged, until their expiry, and not a second after; each
/// answer in between is those same credentials with an expiry still ahead.
/// When the endpoint recovers, new ones are served.
#[test]
fn last_good_credentials_are_served_through_5xx_until_they_expire_and_never_after() {
    let dir = temp_dir();
    let (_pki, ca, host) = pki_with_host(dir.path());
    let fake = FakeRolesAnywhere::start(dir.path(), &[&ca.cert], &["--expires-in", "24"]);
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let d = start(
        &state,
        &ra_args(&fake.url, &host),
        &[("NO_PROXY", "127.0.0.1")],
    );
    let first = wait_served(&d, Duration::from_secs(15));
    let first_at = Instant::now();
    let mut last_served = first_at;
    fake.set_mode("error");
    let expiry = first["Expiration"].as_str().unwrap().to_owned();

    let mut held_through_failure = 0;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        // The time before the request: an answer must expire after it.
        let asked_at = rfc3339_seconds(SystemTime::now());
        let r = demo_credentials(&d);
        if r.status == 404 {
            break;
        }
        assert_eq!(r.status, 200, "{r:?}");
        let creds: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(creds["AccessKeyId"], first["AccessKeyId"], "{creds}");
        assert_eq!(creds["Expiration"], expiry.as_str());
        assert!(
            expiry.as_str() > asked_at.as_str(),
            "served at {asked_at} credentials that expired at {expiry}"
        );
        last_served = Instant::now();
        let failed = fake.calls().iter().any(|c| c["status"] == 500);
        held_through_failure += usize::from(failed);
        assert!(Instant::now() < deadline, "still served:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        held_through_failure > 0,
        "no answer came after a failed refresh: {:?}",
        fake.calls()
    );
    // Issued at most a second before it was first seen, 24 s to live: held
    // until close to that end, long after the first failed refresh.
    let held = last_served - first_at;
    assert!(held >= Duration::from_secs(20), "withdrawn after {held:?}");
    let failures = fake.calls().iter().filter(|c| c["status"] == 500).count();
    assert!(failures >= 2, "retried: {:?}", fake.calls());
    wait_status(
        &state,
        "HTTP 500 InternalServerException",
        Duration::from_secs(30),
    );

    fake.set_mode("ok");
    let next = wait_served(&d, Duration::from_secs(30));
    assert_ne!(next["AccessKeyId"], first["AccessKeyId"]);
}

/// An endpoint that accepts the connection and never answers: the call is
/// abandoned after 20 s, nothing is served meanwhile, and `status` stays
/// responsive.
#[test]
fn an_endpoint_that_never_answers_is_abandoned_after_twenty_seconds() {
    let dir = temp_dir();
    let (_pki, ca, host) = pki_with_host(dir.path());
    let fake = FakeRolesAnywhere::start(
        dir.path(),
        &[&ca.cert],
        &["--mode", "slow", "--slow-seconds", "120"],
    );
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let began = Instant::now();
    let d = start(
        &state,
        &ra_args(&fake.url, &host),
        &[("NO_PROXY", "127.0.0.1")],
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(demo_credentials(&d).status, 404);
    let quick = Instant::now();
    let s = status_json(&state);
    assert!(
        quick.elapsed() < Duration::from_secs(2),
        "status waited on the call"
    );
    assert_eq!(s["role"], ROLE_ARN, "{s}");
    assert_eq!(s["serving"], false, "{s}");
    let s = wait_status(&state, "timed out after 20s", Duration::from_secs(30));
    let took = began.elapsed();
    assert!(
        took >= Duration::from_secs(20) && took < Duration::from_secs(30),
        "{took:?} {s}"
    );
    assert_eq!(demo_credentials(&d).status, 404);
}

/// A certificate path replaced by a FIFO (or a directory) is refused at once
/// with the file named; the refresh does not hang on the open.
#[test]
fn a_certificate_path_that_is_not_a_regular_file_is_refused_without_blocking() {
    let dir = temp_dir();
    let (_pki, ca, host) = pki_with_host(dir.path());
    let fake = FakeRolesAnywhere::start(dir.path(), &[&ca.cert], &[]);
    let fifo = dir.path().join("host.pem");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for (i, (cert, problem)) in [
        (fifo.clone(), "not a regular file (a named pipe)"),
        (dir.path().to_path_buf(), "not a regular file (a directory)"),
    ]
    .into_iter()
    .enumerate()
    {
        let state = dir.path().join(format!("state{i}"));
        std::fs::create_dir(&state).unwrap();
        let mut args = ra_args(&fake.url, &host);
        let at = args.iter().position(|a| a == "--certificate").unwrap() + 1;
        args[at] = cert.to_str().unwrap().to_owned();
        let d = start(&state, &args, &[("NO_PROXY", "127.0.0.1")]);
        let s = wait_status(&state, problem, Duration::from_secs(5));
        assert!(s.contains(cert.to_str().unwrap()), "{s}");
        assert_eq!(demo_credentials(&d).status, 404);
    }
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

/// A loopback HTTP proxy that tunnels CONNECT requests and records their
/// targets; anything else is answered 405.
struct ConnectProxy {
    addr: SocketAddr,
    targets: Arc<Mutex<Vec<String>>>,
}

impl ConnectProxy {
    fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let seen = targets.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let seen = seen.clone();
                std::thread::spawn(move || tunnel(conn, &seen));
            }
        });
        ConnectProxy { addr, targets }
    }

    fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

fn tunnel(conn: TcpStream, seen: &Mutex<Vec<String>>) {
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
            break;
        }
    }
    let mut out = conn.try_clone().unwrap();
    let mut words = line.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        let _ = out.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    seen.lock().unwrap().push(target.to_owned());
    let Ok(upstream) = TcpStream::connect(target) else {
        let _ = out.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    out.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .unwrap();
    let mut up_read = upstream.try_clone().unwrap();
    let mut up_write = upstream;
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_read, &mut out);
    });
    let mut buffered = reader.buffer().to_vec();
    let _ = up_write.write_all(&buffered);
    buffered.clear();
    let mut rest = reader.into_inner();
    let mut buf = [0u8; 8192];
    while let Ok(n) = rest.read(&mut buf) {
        if n == 0 || up_write.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = up_write.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
}

/// With HTTPS_PROXY set, CreateSession goes through the proxy's CONNECT
/// tunnel to the endpoint (TLS end to end, the proxy sees only the target);
/// with the endpoint's address in NO_PROXY it goes direct.
#[test]
fn create_session_goes_through_https_proxy_unless_no_proxy_names_the_endpoint() {
    let dir = temp_dir();
    let (pki, ca, host) = pki_with_host(dir.path());
    let tls_ca = pki.root("tls", KeyType::P256);
    let tls = pki.server("fake", &tls_ca);
    let (fake, https) = FakeRolesAnywhere::start_https(dir.path(), &[&ca.cert], &tls);
    let port = https.rsplit(':').next().unwrap().to_owned();
    let proxy = ConnectProxy::start();
    let proxy_url = format!("http://{}", proxy.addr);
    let trust = tls_ca.cert.to_str().unwrap();

    let state = dir.path().join("proxied");
    std::fs::create_dir(&state).unwrap();
    let d = start(
        &state,
        &ra_args(&https, &host),
        &[
            ("HTTPS_PROXY", &proxy_url),
            ("NO_PROXY", "example.invalid"),
            ("SSL_CERT_FILE", trust),
        ],
    );
    let creds = wait_served(&d, Duration::from_secs(15));
    assert_eq!(
        creds["AccessKeyId"],
        fake.calls().last().unwrap()["access_key_id"]
    );
    assert_eq!(proxy.targets(), vec![format!("127.0.0.1:{port}")]);
    drop(d);

    let state = dir.path().join("direct");
    std::fs::create_dir(&state).unwrap();
    let d = start(
        &state,
        &ra_args(&https, &host),
        &[
            ("HTTPS_PROXY", &proxy_url),
            ("NO_PROXY", "127.0.0.1"),
            ("SSL_CERT_FILE", trust),
        ],
    );
    wait_served(&d, Duration::from_secs(15));
    assert_eq!(proxy.targets().len(), 1, "{:?}", proxy.targets());
    assert_eq!(fake.calls().len(), 2);
}

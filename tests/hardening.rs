//! Hostile or unexpected callers, for real: the hop limit across a router
//! made of network namespaces, the uid/gid allow-list with two real users,
//! and the process's own protection of the secrets it holds.

mod support;

use std::os::unix::fs::{chown, MetadataExt};
use std::process::Command;
use std::time::{Duration, Instant};

use support::netlab::Lab;
use support::*;

const NOBODY: u32 = 65534;

fn daemon_in_lab(lab: &Lab, dir: &std::path::Path, hop_limit: &str) -> Daemon {
    start_daemon_wrapped(
        &["ip", "netns", "exec", &lab.host],
        dir,
        &[
            "--issuer",
            "local",
            "--role-arn",
            ROLE_ARN,
            "--imds-v1",
            "allowed",
            "--listen",
            "10.200.1.1:1338",
            "--listen",
            "[fd00:200:1::1]:1338",
            "--hop-limit",
            hop_limit,
        ],
        &[],
    )
}

const V4: &str = "http://10.200.1.1:1338";
const V6: &str = "http://[fd00:200:1::1]:1338";

#[test]
fn with_hop_limit_1_a_container_behind_a_router_is_refused_a_token_and_with_2_it_gets_one() {
    let lab = Lab::new("hop");
    let dir = temp_dir();
    let d = daemon_in_lab(&lab, dir.path(), "1");
    for base in [V4, V6] {
        // The host itself gets a token: no router in between.
        assert_eq!(
            lab.token_put(&lab.host, base).1,
            "200",
            "{base} on the host"
        );
        // Other responses cross the router: the network works.
        lab.assert_container_gets_instance_id(base, "before the token");
        // Its source address is not this host's: refused, and the refusal
        // (no token in it) reaches it.
        let started = Instant::now();
        let (rc, code) = lab.token_put(&lab.container, base);
        assert_eq!((rc, code.as_str()), (0, "403"), "{base}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // A later response on a new connection has the system TTL again.
        lab.assert_container_gets_instance_id(base, "after the refused token");
    }
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");

    let d = daemon_in_lab(&lab, dir.path(), "2");
    for base in [V4, V6] {
        assert_eq!(
            lab.token_put(&lab.container, base),
            (0, "200".to_owned()),
            "{base} with hop-limit 2"
        );
    }
    drop(d);
}

#[test]
fn a_hop_limit_out_of_range_is_a_config_error() {
    let dir = temp_dir();
    for bad in ["0", "256"] {
        let out = Command::new(env!("CARGO_BIN_EXE_hostrole"))
            .args([
                "serve",
                "--issuer",
                "local",
                "--check-config",
                "--hop-limit",
                bad,
            ])
            .arg("--state-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "hop-limit {bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("hop-limit"), "{err}");
    }
}

fn allow_list_daemon(dir: &std::path::Path, allow: &[&str]) -> (Daemon, String) {
    let mut args = LOCAL_DEMO.to_vec();
    args.extend_from_slice(allow);
    let d = start_daemon(dir, &args);
    let t = token(d.addr, 60);
    (d, t)
}

#[test]
fn allowed_uids_let_only_the_listed_user_read_credentials() {
    let dir = temp_dir();
    let (d, t) = allow_list_daemon(dir.path(), &["--allowed-uid", "0"]);
    let creds = format!("{}/latest/meta-data/iam/security-credentials/demo", d.url());
    let list = format!("{}/latest/meta-data/iam/security-credentials/", d.url());
    let other = format!("{}/latest/meta-data/instance-id", d.url());
    assert_eq!(curl_as(0, &creds, &t), "200");
    assert_eq!(curl_as(0, &list, &t), "200");
    assert_eq!(curl_as(NOBODY, &creds, &t), "403");
    assert_eq!(curl_as(NOBODY, &list, &t), "403");
    // Only credential paths are restricted.
    assert_eq!(curl_as(NOBODY, &other, &t), "200");
    // The refusal names the user and the caller's socket (found without
    // reading /proc, which costs every caller time and which the packaged
    // sandbox hides).
    assert!(d.wait_for_log("credentials refused", Duration::from_secs(5)));
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("credentials refused"))
        .unwrap();
    assert!(line.contains(&format!("\"uid\":{NOBODY}")), "{line}");
    assert!(line.contains("\"inode\":"), "{line}");
}

/// What root and nobody get for the credential document, with `allow`.
fn credential_codes_for_root_and_nobody(allow: &[&str]) -> (String, String) {
    let dir = temp_dir();
    let (d, t) = allow_list_daemon(dir.path(), allow);
    let creds = format!("{}/latest/meta-data/iam/security-credentials/demo", d.url());
    (curl_as(0, &creds, &t), curl_as(NOBODY, &creds, &t))
}

#[test]
fn allowed_gids_let_members_of_the_group_read_credentials() {
    // nobody's primary group is nogroup (65534); root is not a member.
    assert_eq!(
        credential_codes_for_root_and_nobody(&["--allowed-gid", "65534"]),
        ("403".to_owned(), "200".to_owned())
    );
}

#[test]
fn without_an_allow_list_every_local_user_reads_credentials() {
    assert_eq!(
        credential_codes_for_root_and_nobody(&[]),
        ("200".to_owned(), "200".to_owned())
    );
}

#[test]
fn the_daemon_cannot_dump_core_and_its_memory_is_root_only() {
    // Run as nobody, so that "root-only" is visible: a dumpable process's
    // /proc files belong to its own user.
    let dir = temp_dir();
    chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let d = start_daemon_wrapped(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        dir.path(),
        &LOCAL_DEMO,
        &[],
    );
    fetch_credentials(d.addr);
    let proc_dir = format!("/proc/{}", d.pid());
    let status = std::fs::read_to_string(format!("{proc_dir}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("65534")),
        "{status}"
    );
    for f in ["environ", "mem", "maps"] {
        let owner = std::fs::metadata(format!("{proc_dir}/{f}")).unwrap().uid();
        assert_eq!(
            owner, 0,
            "/proc/<pid>/{f} belongs to uid {owner}: the process is dumpable"
        );
    }
    let limits = std::fs::read_to_string(format!("{proc_dir}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
}

/// Reads until the peer closes or `limit` passes; returns what was read and
/// whether the connection was closed.
fn read_until_closed(s: &mut std::net::TcpStream, limit: Duration) -> (String, bool) {
    use std::io::Read;
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = Vec::new();
    let closed = s.read_to_end(&mut buf).is_ok();
    (String::from_utf8_lossy(&buf).into_owned(), closed)
}

#[test]
fn an_oversized_request_head_or_too_many_headers_is_refused() {
    use std::io::Write;
    let dir = temp_dir();
    let d = start_demo_daemon(dir.path());
    let big = format!(
        "GET /latest/meta-data/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    let many = format!(
        "GET /latest/meta-data/ HTTP/1.1\r\nHost: 127.0.0.1\r\n{}\r\n",
        (0..64)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    for req in [big, many] {
        let mut s = std::net::TcpStream::connect(d.addr).unwrap();
        let _ = s.write_all(req.as_bytes());
        let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(5));
        assert!(closed, "connection left open");
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    }
}

#[test]
fn a_slow_request_head_and_an_idle_keep_alive_connection_are_closed() {
    use std::io::Write;
    let dir = temp_dir();
    let d = start_demo_daemon(dir.path());
    // Slowloris: half a request head, then nothing.
    let mut slow = std::net::TcpStream::connect(d.addr).unwrap();
    slow.write_all(b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    // Keep-alive: one whole request, then silence.
    let mut idle = std::net::TcpStream::connect(d.addr).unwrap();
    idle.write_all(b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 127.0.0.1\r\nX-aws-ec2-metadata-token: x\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let idle_thread = std::thread::spawn(move || {
        let (answer, closed) = read_until_closed(&mut idle, Duration::from_secs(30));
        (answer, closed, started.elapsed())
    });
    let (answer, closed) = read_until_closed(&mut slow, Duration::from_secs(30));
    let slow_took = started.elapsed();
    assert!(closed, "slow connection still open after 30 s");
    assert!(!answer.contains("200"), "{answer:?}");
    assert!(slow_took < Duration::from_secs(15), "{slow_took:?}");
    let (answer, closed, idle_took) = idle_thread.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");
    assert!(closed, "idle keep-alive connection still open after 30 s");
    assert!(idle_took < Duration::from_secs(15), "{idle_took:?}");
}

#[test]
fn the_request_heads_time_runs_from_the_accept_even_when_it_starts_late() {
    use std::io::Write;
    let dir = temp_dir();
    let d = start_demo_daemon(dir.path());
    let started = Instant::now();
    // Nothing at all.
    let mut silent = std::net::TcpStream::connect(d.addr).unwrap();
    // Nothing for 6 s, then half a head: 4 s are left of its 10.
    let mut late = std::net::TcpStream::connect(d.addr).unwrap();
    let silent_thread = std::thread::spawn(move || {
        let (answer, closed) = read_until_closed(&mut silent, Duration::from_secs(30));
        (answer, closed, started.elapsed())
    });
    std::thread::sleep(Duration::from_secs(6));
    late.write_all(b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let (answer, closed) = read_until_closed(&mut late, Duration::from_secs(30));
    let late_took = started.elapsed();
    assert!(closed, "late connection still open after 30 s");
    assert!(!answer.contains("200"), "{answer:?}");
    assert!(
        late_took < Duration::from_secs(13) && late_took > Duration::from_secs(9),
        "closed {late_took:?} after connecting: the head had 10 s from the accept"
    );
    let (answer, closed, silent_took) = silent_thread.join().unwrap();
    assert!(closed && answer.is_empty(), "{answer:?}");
    assert!(silent_took < Duration::from_secs(13), "{silent_took:?}");
}

#[test]
fn past_a_callers_share_its_least_recently_active_connections_make_room() {
    use std::io::Write;
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    if soft < 4096 {
        nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_NOFILE,
            hard.min(8192),
            hard,
        )
        .unwrap();
    }
    let dir = temp_dir();
    let d = start_demo_daemon(dir.path());
    // Hold the cap's worth of connections open without sending anything.
    let mut held: Vec<_> = (0..hostrole::endpoint::server::MAX_CONNECTIONS)
        .map(|_| std::net::TcpStream::connect(d.addr).unwrap())
        .collect();
    // Let the daemon accept them all.
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let mut extra = std::net::TcpStream::connect(d.addr).unwrap();
    let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let (answer, closed) = read_until_closed(&mut extra, Duration::from_secs(5));
    // Answered (without a token: 401), not refused.
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");
    assert!(closed);
    assert!(started.elapsed() < Duration::from_secs(2));
    // This caller holds at most its share: the oldest of its idle
    // connections were closed to make room, the newest are still open.
    let share = hostrole::endpoint::server::MAX_CONNECTIONS_PER_CALLER;
    let closed_by_daemon = held
        .iter_mut()
        .map(|s| {
            s.set_nonblocking(true).unwrap();
            matches!(std::io::Read::read(s, &mut [0u8; 1]), Ok(0))
        })
        .filter(|closed| *closed)
        .count();
    assert!(
        closed_by_daemon >= hostrole::endpoint::server::MAX_CONNECTIONS - share,
        "{closed_by_daemon} closed"
    );
    let newest = held.last_mut().unwrap();
    let still_open = std::io::Read::read(newest, &mut [0u8; 1]);
    assert!(
        still_open
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "the newest connection was closed: {still_open:?}"
    );
    drop(held);
}

#[test]
fn a_request_body_is_never_read_so_a_huge_one_costs_nothing() {
    use std::io::Write;
    let dir = temp_dir();
    let d = start_demo_daemon(dir.path());
    let mut s = std::net::TcpStream::connect(d.addr).unwrap();
    s.write_all(
        b"PUT /latest/api/token HTTP/1.1\r\nHost: 127.0.0.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 10000000000\r\n\r\n",
    )
    .unwrap();
    // Some of the announced body, then nothing: the answer does not wait for it.
    let _ = s.write_all(&[b'x'; 64 * 1024]);
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(15));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(
        closed,
        "the connection stays open for a body it will never read"
    );
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
}

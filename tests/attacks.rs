//! Attacks on the promises of docs/security.md by a hostile local user on
//! loopback: a reload racing a revocation, the allow-list across address
//! families, blocking files, floods of connections. Each test is named
//! after the promise it attacks.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const NOBODY: u32 = 65534;

fn hup(d: &Daemon) {
    let pid = nix::unistd::Pid::from_raw(d.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
}

fn role_config(path: &std::path::Path, name: &str) {
    std::fs::write(
        path,
        format!("issuer = \"local\"\nrole-arn = \"arn:aws:iam::123456789012:role/{name}\"\n"),
    )
    .unwrap();
}

/// Counts `needle` in the log.
fn count(d: &Daemon, needle: &str) -> usize {
    d.log().matches(needle).count()
}

/// Sends SIGHUP and waits until the reload has been logged once more.
fn reload(d: &Daemon) {
    let before = count(d, "configuration reload");
    hup(d);
    let started = Instant::now();
    while count(d, "configuration reload") == before {
        assert!(started.elapsed() < Duration::from_secs(10), "{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn listing(d: &Daemon) -> (u16, String) {
    let t = token(d.addr, 60);
    let r = get(d.addr, "/latest/meta-data/iam/security-credentials/", &t);
    (r.status, r.body)
}

#[test]
fn a_reload_never_undoes_a_disassociate_or_a_replace() {
    let dir = temp_dir();
    let cfg = path_in(dir.path(), "hostrole.toml");
    role_config(&cfg, "first");
    let d = start_daemon(dir.path(), &["--config", cfg.to_str().unwrap()]);
    assert_eq!(listing(&d), (200, "first".into()));

    // Revoked through the control socket; the file is untouched.
    let out = client(dir.path(), &["disassociate"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(listing(&d).0, 404);
    reload(&d);
    assert_eq!(listing(&d).0, 404, "SIGHUP brought the role back");
    let creds = get(
        d.addr,
        "/latest/meta-data/iam/security-credentials/first",
        &token(d.addr, 60),
    );
    assert_eq!(creds.status, 404);

    // Replaced through the control socket: a reload keeps the replacement.
    let out = client(
        dir.path(),
        &["associate", "arn:aws:iam::123456789012:role/second"],
    );
    assert!(out.status.success(), "{out:?}");
    let out = client(
        dir.path(),
        &["replace", "arn:aws:iam::123456789012:role/third"],
    );
    assert!(out.status.success(), "{out:?}");
    reload(&d);
    assert_eq!(listing(&d), (200, "third".into()));

    // The file's own role changing is applied, and the audit line names it.
    role_config(&cfg, "fourth");
    reload(&d);
    assert_eq!(listing(&d), (200, "fourth".into()));
    let log = d.log();
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("association changed"))
        .collect();
    assert!(
        audit
            .iter()
            .any(|l| l.contains("control-socket") && l.contains("disassociate")),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l.contains("config-reload") && l.contains("role/fourth")),
        "{audit:?}"
    );
}

/// The file's role changing to the role the control socket already set is
/// not a change: no audit line, no new fetch, the same credentials.
#[test]
fn a_reload_to_the_role_already_served_changes_nothing() {
    let dir = temp_dir();
    let cfg = path_in(dir.path(), "hostrole.toml");
    role_config(&cfg, "first");
    let d = start_daemon(dir.path(), &["--config", cfg.to_str().unwrap()]);
    let out = client(
        dir.path(),
        &["replace", "arn:aws:iam::123456789012:role/second"],
    );
    assert!(out.status.success(), "{out:?}");
    // The audit line is read from the daemon's stderr by another thread:
    // counted once it is there, not before.
    assert!(
        d.wait_for_log("association changed", std::time::Duration::from_secs(5)),
        "{}",
        d.log()
    );
    let path = "/latest/meta-data/iam/security-credentials/second";
    let before = get(d.addr, path, &token(d.addr, 60));
    assert_eq!(before.status, 200);
    let changes = count(&d, "association changed");

    role_config(&cfg, "second");
    reload(&d);
    let after = get(d.addr, path, &token(d.addr, 60));
    assert_eq!(after.status, 200);
    assert_eq!(after.body, before.body, "the same role was fetched again");
    assert_eq!(count(&d, "association changed"), changes, "{}", d.log());
}

#[test]
fn a_reload_of_a_config_path_that_blocks_freezes_neither_imds_nor_the_control_socket() {
    let dir = temp_dir();
    let cfg = path_in(dir.path(), "hostrole.toml");
    role_config(&cfg, "demo");
    let d = start_daemon(dir.path(), &["--config", cfg.to_str().unwrap()]);
    // The config path becomes a FIFO nobody writes: reading it blocks.
    std::fs::remove_file(&cfg).unwrap();
    nix::unistd::mkfifo(&cfg, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    hup(&d);
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(listing(&d), (200, "demo".into()));
        let out = client(dir.path(), &["status"]);
        assert!(out.status.success(), "{out:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "answers took {:?} during a blocked reload",
            started.elapsed()
        );
    }
    assert!(
        d.wait_for_log("configuration reload timed out", Duration::from_secs(10)),
        "{}",
        d.log()
    );
    // A second SIGHUP while the first still blocks is refused, not stacked.
    hup(&d);
    assert!(d.wait_for_log("still blocked", Duration::from_secs(5)));
    // Unblock the reader so the daemon can stop cleanly.
    let writer = std::thread::spawn({
        let cfg = cfg.clone();
        move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(&cfg).unwrap();
            let _ = f.write_all(b"issuer = \"local\"\n");
        }
    });
    writer.join().unwrap();
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
}

/// An HTTP/1.1 GET with a token over `stream`, read to the end.
fn get_over(mut stream: TcpStream, host: &str, path: &str, token: &str) -> u16 {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nX-aws-ec2-metadata-token: {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    parse_response(&text).status
}

/// A connection from an AF_INET6 socket to `addr` (v4-mapped when `addr`
/// is IPv4).
fn connect_v6_socket(addr: SocketAddr) -> TcpStream {
    let target = match addr {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        v6 => v6,
    };
    let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).unwrap();
    s.set_only_v6(false).unwrap();
    s.connect(&target.into()).unwrap();
    s.into()
}

#[test]
fn the_allow_list_finds_the_caller_for_every_pair_of_address_families() {
    const CREDS: &str = "/latest/meta-data/iam/security-credentials/demo";
    for (listen, allowed, want) in [
        ("[::]:0", "0", 200),
        ("[::]:0", "4242", 403),
        ("127.0.0.1:0", "0", 200),
        ("127.0.0.1:0", "4242", 403),
        ("[::1]:0", "0", 200),
    ] {
        let dir = temp_dir();
        let mut args = LOCAL_DEMO.to_vec();
        args.extend(["--listen", listen, "--allowed-uid", allowed]);
        let d = start_daemon(dir.path(), &args);
        let port = d.addr.port();
        let mut callers: Vec<(&str, TcpStream, String)> = Vec::new();
        if listen != "[::1]:0" {
            let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            callers.push((
                "AF_INET client",
                TcpStream::connect(v4).unwrap(),
                v4.to_string(),
            ));
            callers.push((
                "AF_INET6 client, v4-mapped",
                connect_v6_socket(v4),
                v4.to_string(),
            ));
        }
        if listen != "127.0.0.1:0" {
            let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
            callers.push(("AF_INET6 client", connect_v6_socket(v6), v6.to_string()));
        }
        let t = token(d.addr, 60);
        for (what, stream, host) in callers {
            assert_eq!(
                get_over(stream, &host, CREDS, &t),
                want,
                "{what} to a {listen} listener, allowed uid {allowed}"
            );
        }
    }
}

#[test]
fn a_user_outside_the_allow_list_learns_nothing_of_the_role() {
    let dir = temp_dir();
    let mut args = LOCAL_DEMO.to_vec();
    args.extend(["--allowed-uid", "0"]);
    let d = start_daemon(dir.path(), &args);
    let t = token(d.addr, 60);
    for path in [
        "/latest/meta-data/iam/info",
        "/latest/meta-data/iam",
        "/latest/meta-data/iam/security-credentials/",
        "/latest/meta-data/iam/security-credentials-extended/demo",
        "/latest/meta-data/iam/security-credentials/demo",
        "/latest/meta-data/iam/security-credentials/guess",
    ] {
        let url = format!("{}{path}", d.url());
        assert_eq!(curl_as(NOBODY, &url, &t), "403", "{path} as nobody");
        assert_ne!(curl_as(0, &url, &t), "403", "{path} as root");
    }
    assert!(d
        .log()
        .contains("credentials refused: caller not in allowed-uids/allowed-gids"));
}

/// A process running as `uid` that opens `n` connections to `addr` (TCP
/// `host:port`, or a Unix socket path), prints `ready` and holds them
/// until its standard input closes.
fn hold_connections(uid: u32, target: &str, n: usize) -> Child {
    let script = r#"
import os, socket, sys, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
target, n = sys.argv[1], int(sys.argv[2])
held = []
for _ in range(n):
    if target.startswith('/'):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(target)
    else:
        host, port = target.rsplit(':', 1)
        s = socket.create_connection((host, int(port)))
    held.append(s)
print('ready', flush=True)
sys.stdin.read()
"#;
    let mut child = Command::new("setpriv")
        .args([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".to_owned(),
        ])
        // Debian's python3: a user's own (pyenv) may not be readable by nobody.
        .args(["/usr/bin/python3", "-c", script, target, &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 as another user");
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the flooding process did not start");
    child
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn idle_connections_of_another_user_never_shut_root_out_of_imds() {
    let dir = temp_dir();
    let d = start_demo_daemon(dir.path());
    let flood = hold_connections(NOBODY, &d.addr.to_string(), 1100);
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..20 {
        let started = Instant::now();
        let c = fetch_credentials(d.addr);
        assert!(c["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    // Nobody holds at most its share: the daemon's descriptors stay bounded.
    let fds = open_fds(d.pid());
    assert!(
        fds <= hostrole::endpoint::server::MAX_CONNECTIONS_PER_CALLER + 64,
        "{fds} descriptors open"
    );
    assert!(d.wait_for_log("least recently active", Duration::from_secs(5)));
    drop(flood);
}

#[test]
fn a_flood_of_control_and_metrics_connections_is_bounded_and_imds_keeps_answering() {
    let dir = temp_dir();
    let mut args = LOCAL_DEMO.to_vec();
    args.extend(["--metrics-listen", "127.0.0.1:0"]);
    let d = start_daemon(dir.path(), &args);
    let metrics = d.logged_addr("serving metrics");
    let sock = control_socket(dir.path());
    let fds_before = open_fds(d.pid());
    let control_flood = hold_connections(NOBODY, sock.to_str().unwrap(), 3000);
    let metrics_flood = hold_connections(NOBODY, &metrics.to_string(), 500);
    std::thread::sleep(Duration::from_millis(500));
    let fds = open_fds(d.pid());
    assert!(
        fds < fds_before
            + hostrole::association::control::MAX_CONNECTIONS
            + hostrole::metrics::MAX_CONNECTIONS,
        "{fds} descriptors open (from {fds_before})"
    );
    // Root is still served on every listener.
    let started = Instant::now();
    let out = client(dir.path(), &["status"]);
    assert!(out.status.success(), "{out:?}");
    let c = fetch_credentials(d.addr);
    assert!(c["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    let m = request(metrics, "GET", "/metrics", &[]);
    assert_eq!(m.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop((control_flood, metrics_flood));
}

#[test]
fn refused_callers_do_not_slow_down_an_allowed_one() {
    let dir = temp_dir();
    let mut args = LOCAL_DEMO.to_vec();
    args.extend(["--allowed-uid", "0"]);
    let d = start_daemon(dir.path(), &args);
    let t = token(d.addr, 60);
    let url = format!("{}/latest/meta-data/iam/security-credentials/demo", d.url());
    // Nobody asks for the credentials in a loop, refused each time.
    let script = format!(
        "for i in $(seq 1 2000); do curl -s -o /dev/null --noproxy '*' -H 'X-aws-ec2-metadata-token: {t}' {url}; done"
    );
    let flood: Vec<Child> = (0..4)
        .map(|_| {
            Command::new("setpriv")
                .args([
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "sh",
                    "-c",
                    &script,
                ])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // Measure while the flood is on.
    let flood_started = Instant::now();
    let started = Instant::now();
    while count(&d, "credentials refused") < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the flood did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut took = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        assert_eq!(
            get(
                d.addr,
                "/latest/meta-data/iam/security-credentials/demo",
                &t
            )
            .status,
            200
        );
        took.push(started.elapsed());
        std::thread::sleep(Duration::from_millis(30));
    }
    let flood_lasted = flood_started.elapsed();
    for mut f in flood {
        let _ = f.kill();
        let _ = f.wait();
    }
    took.sort();
    assert!(
        took[25] < Duration::from_millis(50),
        "median {:?}",
        took[25]
    );
    assert!(took[49] < Duration::from_millis(500), "max {:?}", took[49]);
    // Each refusal is counted, but the log gets a bounded number of lines
    // (a flood of refusals would make the journal drop the audit lines).
    let log = d.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("credentials refused"))
        .collect();
    let budget =
        (flood_lasted.as_secs() as usize + 3) * hostrole::logbudget::LINES_PER_SECOND as usize;
    assert!(
        lines.len() <= budget,
        "{} lines in {flood_lasted:?}",
        lines.len()
    );
    let suppressed: u64 = lines
        .iter()
        .filter_map(|l| l.split("\"suppressed\":").nth(1))
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(
        suppressed > 0,
        "no refusal was counted as left out: {lines:?}"
    );
}

//! Hostile or unexpected callers, for real: the hop limit across a router
//! made of network namespaces, the uid/gid allow-list with two real users,
//! and the process's own protection of the secrets it holds.

mod support;

use std::os::unix::fs::{chown, MetadataExt};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::*;

const NOBODY: u32 = 65534;

fn run(cmd: &[&str]) -> Output {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Three network namespaces: a host running hostrole, a router, and a
/// "container" behind the router. Deleted on drop.
struct Lab {
    host: String,
    router: String,
    container: String,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let id = format!("{}-{}", std::process::id(), tag);
        let lab = Lab {
            host: format!("hr-host-{id}"),
            router: format!("hr-rtr-{id}"),
            container: format!("hr-ctr-{id}"),
        };
        let (h, r, c) = (&lab.host, &lab.router, &lab.container);
        // `ip -n NS ARGS…`, ARGS split on spaces.
        let ip = |ns: &str, args: &str| {
            let mut cmd = vec!["ip", "-n", ns];
            cmd.extend(args.split_whitespace());
            run(&cmd);
        };
        for ns in [h, r, c] {
            run(&["ip", "netns", "add", ns]);
            ip(ns, "link set lo up");
        }
        // Link names are created inside the namespaces, so they never clash
        // with the machine's or another test's.
        ip(
            h,
            &format!("link add eth0 type veth peer name toh netns {r}"),
        );
        ip(
            c,
            &format!("link add eth0 type veth peer name toc netns {r}"),
        );
        for (ns, dev, v4, v6) in [
            (h, "eth0", "10.200.1.1/24", "fd00:200:1::1/64"),
            (r, "toh", "10.200.1.2/24", "fd00:200:1::2/64"),
            (r, "toc", "10.200.2.1/24", "fd00:200:2::1/64"),
            (c, "eth0", "10.200.2.2/24", "fd00:200:2::2/64"),
        ] {
            ip(ns, &format!("addr add {v4} dev {dev}"));
            ip(ns, &format!("addr add {v6} dev {dev} nodad"));
            ip(ns, &format!("link set {dev} up"));
        }
        ip(h, "route add 10.200.2.0/24 via 10.200.1.2");
        ip(h, "-6 route add fd00:200:2::/64 via fd00:200:1::2");
        ip(c, "route add default via 10.200.2.1");
        ip(c, "-6 route add default via fd00:200:2::1");
        for key in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            run(&["ip", "netns", "exec", r, "sysctl", "-qw", key]);
        }
        lab
    }

    /// `curl` inside `ns`: (exit code, HTTP status, body).
    fn curl(&self, ns: &str, args: &[&str]) -> (i32, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "curl", "-sS", "--noproxy", "*"])
            .args(["--max-time", "3", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let code = text.rsplit('\n').next().unwrap_or("").to_owned();
        (out.status.code().unwrap_or(-1), code)
    }

    /// A non-token response from the host crosses the router.
    fn assert_container_gets_instance_id(&self, base: &str, when: &str) {
        let url = format!("{base}/latest/meta-data/instance-id");
        let (rc, code) = self.curl(&self.container, &[&url]);
        assert_eq!((rc, code.as_str()), (0, "200"), "{base} GET {when}");
    }

    fn token_put(&self, ns: &str, base: &str) -> (i32, String) {
        self.curl(
            ns,
            &[
                "-X",
                "PUT",
                "-H",
                "X-aws-ec2-metadata-token-ttl-seconds: 60",
                &format!("{base}/latest/api/token"),
            ],
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.host, &self.router, &self.container] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

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
fn with_hop_limit_1_a_container_behind_a_router_gets_no_token_and_with_2_it_does() {
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
        // The token's response dies at the router (TTL 1 - 1 = 0): curl times out.
        let started = Instant::now();
        let (rc, code) = lab.token_put(&lab.container, base);
        assert_eq!(rc, 28, "{base}: expected a timeout, got HTTP {code}");
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

/// `curl` as `uid` (and its primary gid, no other groups) on loopback.
fn curl_as(uid: u32, url: &str, token: &str) -> String {
    let mut cmd = Command::new("setpriv");
    if uid != 0 {
        cmd.args([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".to_owned(),
        ]);
    }
    let out = cmd
        .args(["curl", "-sS", "--noproxy", "*", "--max-time", "5"])
        .args(["-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("X-aws-ec2-metadata-token: {token}"))
        .arg(url)
        .output()
        .expect("setpriv curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
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
    // The refusal names the user and the process.
    assert!(d.wait_for_log("credentials refused", Duration::from_secs(5)));
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("credentials refused"))
        .unwrap();
    assert!(line.contains(&format!("\"uid\":{NOBODY}")), "{line}");
    assert!(line.contains("\"pid\":"), "{line}");
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
fn past_the_connection_cap_new_connections_get_a_fast_503() {
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
    let held: Vec<_> = (0..hostrole::server::MAX_CONNECTIONS)
        .map(|_| std::net::TcpStream::connect(d.addr).unwrap())
        .collect();
    // Let the daemon accept them all.
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let mut extra = std::net::TcpStream::connect(d.addr).unwrap();
    let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let (answer, closed) = read_until_closed(&mut extra, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(closed);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(d.wait_for_log("connection limit reached", Duration::from_secs(5)));
    // Once they go, service is back.
    drop(held);
    let started = Instant::now();
    loop {
        let r = request(d.addr, "GET", "/latest/meta-data/instance-id", &[]);
        if r.status != 503 {
            assert_eq!(r.status, 401);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(50));
    }
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

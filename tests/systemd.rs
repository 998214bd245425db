//! The systemd integration: sd_notify readiness, status and watchdog, and
//! socket activation through systemd's own `systemd-socket-activate`.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

#[test]
fn the_daemon_reports_ready_status_and_watchdog_to_systemd() {
    let dir = temp_dir();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let notify = sock_path.to_str().unwrap().to_owned();
    let d = start_daemon_env(
        dir.path(),
        &LOCAL_DEMO,
        &[("NOTIFY_SOCKET", &notify), ("WATCHDOG_USEC", "200000")],
    );
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    let has = |seen: &Vec<String>, f: &dyn Fn(&str) -> bool| seen.iter().any(|m| f(m));
    while Instant::now() < deadline
        && !(has(&seen, &|m| m.contains("READY=1"))
            && has(&seen, &|m| m.contains("STATUS=role demo: serving ASIA"))
            && seen.iter().filter(|m| *m == "WATCHDOG=1").count() >= 2)
    {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    assert!(has(&seen, &|m| m.contains("READY=1")), "{seen:?}");
    assert!(
        has(&seen, &|m| m.contains("STATUS=role demo: serving ASIA")),
        "{seen:?}"
    );
    assert!(
        seen.iter().filter(|m| *m == "WATCHDOG=1").count() >= 2,
        "{seen:?}"
    );
    // Removing the role shows in the status line.
    let out = client(dir.path(), &["disassociate"]);
    assert!(out.status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !has(&seen, &|m| m == "STATUS=no role associated") {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    assert!(
        has(&seen, &|m| m == "STATUS=no role associated"),
        "{seen:?}"
    );
    let (status, _) = d.stop();
    assert!(status.success());
    let mut stopping = false;
    while let Ok(n) = sock.recv(&mut buf) {
        stopping |= &buf[..n] == b"STOPPING=1";
    }
    assert!(stopping, "STOPPING=1 at shutdown");
}

/// `hostrole serve` under `systemd-socket-activate`, which listens on
/// `sockets` and starts the daemon at the first connection, passing them.
struct Activated {
    child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Activated {
    /// `--listen` names an address this host cannot bind (TEST-NET-1): the
    /// daemon only works if it takes the passed sockets instead.
    fn start(dir: &std::path::Path, sockets: &[std::net::SocketAddr], extra: &[&str]) -> Activated {
        let mut cmd = Command::new("systemd-socket-activate");
        for s in sockets {
            cmd.args(["-l", &s.to_string()]);
        }
        let mut child = cmd
            .arg(env!("CARGO_BIN_EXE_hostrole"))
            .args(["serve", "--issuer", "local", "--role-arn", ROLE_ARN])
            .args(["--listen", "192.0.2.1:80"])
            .args(extra)
            .arg("--state-dir")
            .arg(dir)
            .arg("--control-socket")
            .arg(control_socket(dir))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("systemd-socket-activate (package systemd)");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(sockets[0]).is_err() {
            assert!(Instant::now() < deadline, "socket not listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        Activated { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM; asserts a clean exit within 10 s; the whole log.
    fn stop(mut self) -> String {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "did not stop");
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(50));
        let log = self.log();
        assert!(status.success(), "{status:?}\n{log}");
        log
    }
}

fn free_addr(addr: &str) -> std::net::SocketAddr {
    std::net::TcpListener::bind(addr)
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn the_daemon_serves_on_sockets_passed_by_systemd() {
    let dir = temp_dir();
    let addr = free_addr("127.0.0.1:0");
    let d = Activated::start(dir.path(), &[addr], &[]);
    // The first connection starts the daemon, which answers it.
    let creds = fetch_credentials(addr);
    assert_eq!(creds["Code"], "Success");
    let log = d.stop();
    let listening: Vec<&str> = log.lines().filter(|l| l.contains("listening")).collect();
    assert_eq!(listening.len(), 1, "{log}");
    assert!(listening[0].contains(&addr.to_string()), "{log}");
    assert!(!log.contains("cannot listen"), "{log}");
}

/// Makes a deferral window of connections that all come before their
/// requests (and then leave without one).
fn come_before_requests(addr: std::net::SocketAddr) {
    let burst: Vec<_> = (0..hostrole::net::listen::DEFER_WINDOW + 8)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    drop(burst);
}

/// How many descriptors process `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// A socket systemd holds defers accepting until a connection has data
/// once most connections come before their requests: then a connection
/// that says nothing costs the daemon no descriptor, and a client that is
/// silent for longer than the kernel holds it, or sends in pieces, still
/// gets its answer.
#[test]
fn a_passed_socket_that_defers_loses_no_slow_or_silent_client() {
    use std::io::{Read, Write};
    let dir = temp_dir();
    let addr = free_addr("127.0.0.1:0");
    let d = Activated::start(dir.path(), &[addr], &[]);
    let t = token(addr, 60);
    let ask = move |pause_before: Duration, split: bool| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        std::thread::sleep(pause_before);
        let req = format!(
            "GET /latest/meta-data/iam/security-credentials/demo HTTP/1.1\r\n\
             Host: {addr}\r\nX-aws-ec2-metadata-token: {t}\r\nConnection: close\r\n\r\n"
        );
        if split {
            s.write_all(&req.as_bytes()[..5]).unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            s.write_all(&req.as_bytes()[5..]).unwrap();
        } else {
            s.write_all(req.as_bytes()).unwrap();
        }
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        parse_response(&text).status
    };
    let pid = d.child.id();
    let fds = || open_fds(pid);
    // A window of connections that all come before their requests.
    come_before_requests(addr);
    std::thread::sleep(Duration::from_millis(100));
    // Deferring now: silent connections wait in the kernel.
    let before = fds();
    let quiet: Vec<_> = (0..20)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    assert!(fds() < before + 5, "{} descriptors, from {before}", fds());
    let silent = hostrole::net::listen::DEFER_ACCEPT_SECS as u64 * 1000 + 1500;
    let slow = {
        let ask = ask.clone();
        std::thread::spawn(move || ask(Duration::from_millis(silent), false))
    };
    assert_eq!(ask(Duration::ZERO, false), 200, "at once");
    assert_eq!(ask(Duration::ZERO, true), 200, "in pieces");
    assert_eq!(slow.join().unwrap(), 200, "silent for {silent} ms first");
    drop(quiet);
    let log = d.stop();
    assert!(!log.contains("cannot set TCP_DEFER_ACCEPT"), "{log}");
}

/// A socket the daemon binds itself never defers, however many
/// connections come before their requests: closing it at a stop would
/// reset the connections the kernel still held for it, unanswered.
#[test]
fn a_socket_the_daemon_binds_never_defers() {
    let dir = temp_dir();
    let d = start_demo_daemon(dir.path());
    let pid = d.pid();
    let fds = || open_fds(pid);
    come_before_requests(d.addr);
    std::thread::sleep(Duration::from_millis(300));
    let before = fds();
    let quiet: Vec<_> = (0..20)
        .map(|_| std::net::TcpStream::connect(d.addr).unwrap())
        .collect();
    // A deferring socket would hold them for DEFER_ACCEPT_SECS at least.
    let deadline = std::time::Instant::now() + Duration::from_millis(700);
    while fds() < before + 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "silent connections were not accepted: {} descriptors, from {before}",
            fds()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(quiet);
}

/// The packaged pair of sockets (169.254.169.254:80 and [fd00:ec2::254]:80),
/// here on loopback: both passed sockets serve IMDS, each family on its
/// own, and `--container-listen` is bound by the daemon beside them, also
/// under socket activation.
#[test]
fn two_passed_sockets_of_both_families_serve_imds_and_container_listen_is_bound_beside_them() {
    let dir = temp_dir();
    let v6 = free_addr("[::1]:0");
    let v4 = free_addr("127.0.0.1:0");
    let extra = ["--container-listen", "127.0.0.1:0", "--log-format", "json"];
    let d = Activated::start(dir.path(), &[v6, v4], &extra);
    // The first connection, over IPv6, starts the daemon.
    let over_v6 = fetch_credentials(v6);
    let over_v4 = fetch_credentials(v4);
    assert_eq!(over_v6["AccessKeyId"], over_v4["AccessKeyId"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let container = loop {
        let text = d.log();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("\"listening\"") && l.contains("\"serves\":\"container\""))
        {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            break v["fields"]["addr"]
                .as_str()
                .unwrap()
                .parse::<std::net::SocketAddr>()
                .unwrap();
        }
        assert!(Instant::now() < deadline, "no container listener:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let r = request(container, "GET", "/v1/credentials", &[]);
    assert_eq!(r.status, 401, "{r:?}");
    let log = d.stop();
    let imds: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"listening\"") && l.contains("\"serves\":\"imds\""))
        .collect();
    assert_eq!(imds.len(), 2, "{log}");
    assert!(
        !imds.iter().any(|l| l.contains("192.0.2.1")),
        "bound --listen under activation:\n{log}"
    );
}

//! Shared helpers for black-box tests: start the real `hostrole` binary on
//! an ephemeral loopback port, and speak raw HTTP/1.1 to it.
#![allow(dead_code)]

pub mod disk;
pub mod iam_user;
pub mod killproxy;
pub mod moto;
pub mod netlab;
pub mod pki;
pub mod world;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The demo role used across tests.
pub const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/demo";

/// `serve` arguments for the demo role minted offline by the local issuer.
pub const LOCAL_DEMO: [&str; 4] = ["--issuer", "local", "--role-arn", ROLE_ARN];

/// Starts a daemon serving the demo role from the local issuer.
pub fn start_demo_daemon(state_dir: &Path) -> Daemon {
    start_daemon(state_dir, &LOCAL_DEMO)
}

/// A running daemon.
pub struct Daemon {
    child: Child,
    /// The bound address.
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

/// Starts `hostrole serve` with `args`, listening on an ephemeral loopback
/// port, logging JSON, and waits until it listens (at most 20 s).
pub fn start_daemon(state_dir: &Path, args: &[&str]) -> Daemon {
    start_daemon_env(state_dir, args, &[])
}

/// As [`start_daemon`], with extra environment variables.
pub fn start_daemon_env(state_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
    start_daemon_wrapped(&[], state_dir, args, env)
}

/// As [`start_daemon_env`], with the daemon run through a wrapper command
/// such as `ip netns exec NAME` or `setpriv --reuid 65534` (which exec it, so
/// the pid is the daemon's).
pub fn start_daemon_wrapped(
    wrapper: &[&str],
    state_dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Daemon {
    let mut cmd = serve_command(wrapper, state_dir, args);
    cmd.args(["--log-format", "json"])
        .env(
            "HOSTROLE_LOG",
            "debug,aws_config=warn,aws_smithy_runtime=warn,hyper=warn",
        )
        .env_remove("AWS_PROFILE")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn hostrole");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("\"listening\"") {
                if let Some(addr) = json_field(&line, "addr") {
                    let _ = tx.send(addr);
                }
            }
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(a) => a.parse().expect("listening address"),
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().ok();
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "daemon did not start ({status:?}); log:\n{}",
                log.lock().unwrap()
            );
        }
    };
    Daemon { child, addr, log }
}

/// `hostrole serve` on `state_dir` with `args`, run through `wrapper` (if
/// any), as every test runs it: an ephemeral loopback listener and a
/// control socket inside the state directory unless `args` name their own,
/// and no standard input. The one place a test builds a `serve` command.
pub fn serve_command(wrapper: &[&str], state_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(env!("CARGO_BIN_EXE_hostrole"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_hostrole")),
    };
    cmd.arg("serve").arg("--state-dir").arg(state_dir);
    if !args.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    if !args.contains(&"--control-socket") {
        cmd.arg("--control-socket").arg(control_socket(state_dir));
    }
    cmd.args(args).stdin(Stdio::null());
    cmd
}

/// Runs a `serve` command that is expected to refuse to start: its exit
/// code (`None` when it was still running after `timeout`, and was killed)
/// and its standard error.
pub fn run_until_exit(mut cmd: Command, timeout: Duration) -> (Option<i32>, String) {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hostrole");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = std::time::Instant::now() + timeout;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (code, reader.join().unwrap())
}

/// Starts the daemon with base credentials for a test STS (`testing` /
/// `testing`) and none of the user's AWS config or credentials files.
pub fn start_daemon_with_base_credentials(state_dir: &Path, args: &[&str]) -> Daemon {
    let home = state_dir.display().to_string();
    let none = state_dir.join("none").display().to_string();
    start_daemon_env(
        state_dir,
        args,
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("HOME", &home),
            ("AWS_CONFIG_FILE", &none),
            ("AWS_SHARED_CREDENTIALS_FILE", &none),
        ],
    )
}

/// `serve` arguments for the sts issuer in us-east-1 at `endpoint`, with
/// the test role unless `role` is false.
pub fn sts_args(endpoint: &str, role: bool) -> Vec<&str> {
    let mut a = vec![
        "--issuer",
        "sts",
        "--region",
        "us-east-1",
        "--sts-endpoint",
        endpoint,
    ];
    if role {
        a.extend(["--role-arn", ROLE_ARN]);
    }
    a
}

/// The control socket test daemons use: inside their state directory.
pub fn control_socket(state_dir: &Path) -> PathBuf {
    state_dir.join("control.sock")
}

/// Runs a client command (`associate`, `status`, …) against the daemon
/// whose state directory is `state_dir`.
pub fn client(state_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hostrole"))
        .args(args)
        .arg("--control-socket")
        .arg(control_socket(state_dir))
        .output()
        .expect("run hostrole client")
}

/// As [`client`], run as uid and gid 65534 with no supplementary groups
/// (the state directory must let that user through: [`open_temp_dir`]).
pub fn client_as_nobody(state_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_hostrole"))
        .args(args)
        .arg("--control-socket")
        .arg(control_socket(state_dir))
        .output()
        .expect("setpriv (util-linux)")
}

/// A temporary directory another user may pass through (0755), for tests
/// that act as uid 65534 with setpriv, which only root may do.
pub fn open_temp_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test switches to uid 65534 with setpriv and must run as root (CI does)"
    );
    let dir = temp_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn json_field(line: &str, key: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get("fields")?.get(key)?.as_str().map(str::to_owned)
}

impl Daemon {
    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle` (at most `timeout`).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The address logged (as field `addr`) by the first line with `message`,
    /// waiting for it at most 5 s.
    pub fn logged_addr(&self, message: &str) -> SocketAddr {
        let needle = format!("\"message\":\"{message}\"");
        assert!(
            self.wait_for_log(&needle, Duration::from_secs(5)),
            "no {message:?} in:\n{}",
            self.log()
        );
        let log = self.log();
        let line = log.lines().find(|l| l.contains(&needle)).unwrap();
        json_field(line, "addr")
            .expect("addr field")
            .parse()
            .expect("an address")
    }

    /// Stops the daemon cleanly (asserting exit 0) and starts it again on the
    /// same address with `args`.
    pub fn restart(self, state_dir: &Path, args: &[&str]) -> Daemon {
        let addr = self.addr.to_string();
        let (status, log) = self.stop();
        assert!(status.success(), "{status:?}\n{log}");
        let mut again = args.to_vec();
        again.extend(["--listen", &addr]);
        start_daemon(state_dir, &again)
    }

    /// Sends SIGTERM and waits (at most 15 s) for the exit.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                return (status, self.log());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("daemon did not stop on SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: HashMap<String, String>,
    /// Body.
    pub body: String,
}

/// Sends one raw request (`Connection: close` is up to the caller) and reads
/// the response, with 10 s timeouts.
pub fn raw_request(addr: SocketAddr, request: &str) -> HttpResponse {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&String::from_utf8_lossy(&buf))
}

/// Parses a response that was read to the end.
pub fn parse_response(text: &str) -> HttpResponse {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// `METHOD path` with extra headers, `Host: <addr>` and `Connection: close`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    raw_request(addr, &req)
}

/// An IMDSv2 token valid for `ttl` seconds.
pub fn token(addr: SocketAddr, ttl: u32) -> String {
    let r = request(
        addr,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", &ttl.to_string())],
    );
    assert_eq!(r.status, 200, "token PUT: {r:?}");
    r.body
}

/// GET with a token.
pub fn get(addr: SocketAddr, path: &str, token: &str) -> HttpResponse {
    request(addr, "GET", path, &[("X-aws-ec2-metadata-token", token)])
}

/// The credentials document for the listed role, as JSON.
pub fn fetch_credentials(addr: SocketAddr) -> serde_json::Value {
    let t = token(addr, 60);
    let list = get(addr, "/latest/meta-data/iam/security-credentials/", &t);
    assert_eq!(list.status, 200, "listing: {list:?}");
    let doc = get(
        addr,
        &format!("/latest/meta-data/iam/security-credentials/{}", list.body),
        &t,
    );
    assert_eq!(doc.status, 200, "document: {doc:?}");
    serde_json::from_str(&doc.body).expect("credentials JSON")
}

/// GET of the demo role's credentials, with a fresh token.
pub fn demo_credentials(d: &Daemon) -> HttpResponse {
    let t = token(d.addr, 60);
    get(
        d.addr,
        "/latest/meta-data/iam/security-credentials/demo",
        &t,
    )
}

/// Waits `within` for the demo role's credentials to be served.
pub fn wait_served(d: &Daemon, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let r = demo_credentials(d);
        if r.status == 200 {
            return serde_json::from_str(&r.body).unwrap();
        }
        assert!(Instant::now() < deadline, "never served:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `hostrole status --json` of the daemon on `state_dir`.
pub fn status_json(state_dir: &Path) -> serde_json::Value {
    let out = client(state_dir, &["status", "--json"]);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits `within` for the status of the daemon on `state_dir` to contain
/// `needle`; the status, as JSON text.
pub fn wait_status(state_dir: &Path, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let s = status_json(state_dir).to_string();
        if s.contains(needle) {
            return s;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in status: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh temporary directory.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Path of a file inside a directory.
pub fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// `curl` as `uid` (and its primary gid, no other groups) on loopback.
pub fn curl_as(uid: u32, url: &str, token: &str) -> String {
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

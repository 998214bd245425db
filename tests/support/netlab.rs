//! Small networks made of network namespaces, for testing what crosses a
//! router: a host running hostrole, routers, and "containers" behind them.
//! Every namespace is named after this process and a tag (so tests run in
//! parallel) and is deleted on drop, panics included. Addresses are
//! 10.200.x / fd00:200:x, only ever inside these namespaces.

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd`, asserting that it succeeds.
pub fn run(cmd: &[&str]) -> Output {
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

/// `ip -n NS ARGS…`, ARGS split on spaces.
pub fn ip(ns: &str, args: &str) {
    let mut cmd = vec!["ip", "-n", ns];
    cmd.extend(args.split_whitespace());
    run(&cmd);
}

/// Network namespaces for one test; the ones created are deleted on drop.
///
/// [`Lab::new`]: host — router — container.
/// [`Lab::two_routers`]: the same, plus router — router2 — far.
/// [`Lab::bridge`]: the container on a bridge of the host (no router).
pub struct Lab {
    /// Runs hostrole: 10.200.1.1 / fd00:200:1::1 (10.200.9.1 on the bridge).
    pub host: String,
    /// Forwards between the host and everything else.
    pub router: String,
    /// Behind `router`: 10.200.2.2 / fd00:200:2::2 (10.200.9.2 on the bridge).
    pub container: String,
    /// Behind `router` (two_routers only).
    pub router2: String,
    /// Behind `router2`, two routers from the host: 10.200.4.2 / fd00:200:4::2.
    pub far: String,
    created: Vec<String>,
}

impl Lab {
    fn named(tag: &str) -> Lab {
        let id = format!("{}-{}", std::process::id(), tag);
        Lab {
            host: format!("hr-host-{id}"),
            router: format!("hr-rtr-{id}"),
            container: format!("hr-ctr-{id}"),
            router2: format!("hr-rtr2-{id}"),
            far: format!("hr-far-{id}"),
            created: Vec::new(),
        }
    }

    fn add(&mut self, ns: &str) {
        run(&["ip", "netns", "add", ns]);
        self.created.push(ns.to_owned());
        ip(ns, "link set lo up");
        // No duplicate address detection: while it runs (a second or two)
        // IPv6 across the routers does not work yet.
        for key in ["all", "default"] {
            let key = format!("net.ipv6.conf.{key}.accept_dad=0");
            run(&["ip", "netns", "exec", ns, "sysctl", "-qw", &key]);
        }
    }

    /// A veth pair `a_dev` in `a` — `b_dev` in `b`, addressed and up. Link
    /// names are made inside the namespaces, so they never clash with the
    /// machine's or another test's.
    fn link(&self, a: (&str, &str, &str, &str), b: (&str, &str, &str, &str)) {
        ip(
            a.0,
            &format!("link add {} type veth peer name {} netns {}", a.1, b.1, b.0),
        );
        for (ns, dev, v4, v6) in [a, b] {
            ip(ns, &format!("addr add {v4} dev {dev}"));
            ip(ns, &format!("addr add {v6} dev {dev} nodad"));
            ip(ns, &format!("link set {dev} up"));
        }
    }

    fn forward(ns: &str) {
        for key in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            run(&["ip", "netns", "exec", ns, "sysctl", "-qw", key]);
        }
    }

    /// Host — router — container.
    pub fn new(tag: &str) -> Lab {
        let mut lab = Lab::named(tag);
        let (h, r, c) = (lab.host.clone(), lab.router.clone(), lab.container.clone());
        for ns in [&h, &r, &c] {
            lab.add(ns);
        }
        lab.link(
            (&h, "eth0", "10.200.1.1/24", "fd00:200:1::1/64"),
            (&r, "toh", "10.200.1.2/24", "fd00:200:1::2/64"),
        );
        lab.link(
            (&c, "eth0", "10.200.2.2/24", "fd00:200:2::2/64"),
            (&r, "toc", "10.200.2.1/24", "fd00:200:2::1/64"),
        );
        ip(&h, "route add default via 10.200.1.2");
        ip(&h, "-6 route add default via fd00:200:1::2");
        ip(&c, "route add default via 10.200.2.1");
        ip(&c, "-6 route add default via fd00:200:2::1");
        Lab::forward(&r);
        lab
    }

    /// Host — router — container, and router — router2 — far.
    pub fn two_routers(tag: &str) -> Lab {
        let mut lab = Lab::new(tag);
        let (r, r2, f) = (lab.router.clone(), lab.router2.clone(), lab.far.clone());
        lab.add(&r2);
        lab.add(&f);
        lab.link(
            (&r, "tor2", "10.200.3.1/24", "fd00:200:3::1/64"),
            (&r2, "tor1", "10.200.3.2/24", "fd00:200:3::2/64"),
        );
        lab.link(
            (&f, "eth0", "10.200.4.2/24", "fd00:200:4::2/64"),
            (&r2, "tof", "10.200.4.1/24", "fd00:200:4::1/64"),
        );
        ip(&r, "route add 10.200.4.0/24 via 10.200.3.2");
        ip(&r, "-6 route add fd00:200:4::/64 via fd00:200:3::2");
        ip(&r2, "route add default via 10.200.3.1");
        ip(&r2, "-6 route add default via fd00:200:3::1");
        ip(&f, "route add default via 10.200.4.1");
        ip(&f, "-6 route add default via fd00:200:4::1");
        Lab::forward(&r2);
        lab
    }

    /// A bridge `br0` in the host (10.200.9.1/24, fd00:200:9::1/64) and the
    /// container on it (10.200.9.2, fd00:200:9::2), routed through the
    /// bridge's address: the host is its gateway, no TTL is decremented.
    pub fn bridge(tag: &str) -> Lab {
        let mut lab = Lab::named(tag);
        let (h, c) = (lab.host.clone(), lab.container.clone());
        lab.add(&h);
        lab.add(&c);
        ip(&h, "link add br0 type bridge");
        ip(&h, "addr add 10.200.9.1/24 dev br0");
        ip(&h, "addr add fd00:200:9::1/64 dev br0 nodad");
        ip(&h, "link set br0 up");
        ip(
            &h,
            &format!("link add vc0 type veth peer name eth0 netns {c}"),
        );
        ip(&h, "link set vc0 master br0");
        ip(&h, "link set vc0 up");
        ip(&c, "addr add 10.200.9.2/24 dev eth0");
        ip(&c, "addr add fd00:200:9::2/64 dev eth0 nodad");
        ip(&c, "link set eth0 up");
        ip(&c, "route add default via 10.200.9.1");
        ip(&c, "-6 route add default via fd00:200:9::1");
        lab
    }

    /// Makes `ns` drop a random quarter of the packets it forwards.
    pub fn lossy(&self, ns: &str) {
        for cmd in [
            "add table inet lossy",
            "add chain inet lossy quarter { type filter hook forward priority 0 ; }",
            "add rule inet lossy quarter numgen random mod 4 0 drop",
        ] {
            run(&["ip", "netns", "exec", ns, "nft", cmd]);
        }
    }

    /// `curl` inside `ns`: (exit code, HTTP status).
    pub fn curl(&self, ns: &str, args: &[&str]) -> (i32, String) {
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

    /// A non-token response from the host reaches `ns`.
    pub fn assert_gets_instance_id(&self, ns: &str, base: &str, when: &str) {
        let url = format!("{base}/latest/meta-data/instance-id");
        let (rc, code) = self.curl(ns, &[&url]);
        assert_eq!((rc, code.as_str()), (0, "200"), "{ns}: {base} GET {when}");
    }

    /// A non-token response from the host crosses the router.
    pub fn assert_container_gets_instance_id(&self, base: &str, when: &str) {
        self.assert_gets_instance_id(&self.container, base, when);
    }

    pub fn token_put(&self, ns: &str, base: &str) -> (i32, String) {
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
        for ns in &self.created {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The raw token request.
pub const PUT_TOKEN: &str =
    "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n";
/// A request any caller gets a 200 for (with `--imds-v1 allowed`).
pub const GET_INSTANCE_ID: &str =
    "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n";

/// What a [`session`] does on one TCP connection.
#[derive(Clone, Debug)]
pub struct Session {
    /// (milliseconds after connecting, bytes to send then).
    pub sends: Vec<(u64, String)>,
    /// SO_RCVBUF, set before connecting (0: the system's).
    pub rcvbuf: u32,
    /// Most bytes taken per read.
    pub chunk: usize,
    /// Pause after each read that got bytes, in milliseconds.
    pub pause_ms: u64,
    /// How long to read for, in milliseconds after connecting.
    pub read_ms: u64,
}

impl Session {
    /// Sends `text` on connecting, reads everything for 3 s.
    pub fn send(text: &str) -> Session {
        Session {
            sends: vec![(0, text.to_owned())],
            rcvbuf: 0,
            chunk: 65536,
            pause_ms: 0,
            read_ms: 3000,
        }
    }

    /// Also sends `text` `ms` milliseconds after connecting.
    pub fn then(mut self, ms: u64, text: &str) -> Session {
        self.sends.push((ms, text.to_owned()));
        self
    }
}

/// What one session received.
#[derive(Debug)]
pub struct Received {
    /// Every byte read.
    pub bytes: Vec<u8>,
    /// How it ended: "timeout" (read for the whole time), "closed", an
    /// error, or "connect: …".
    pub end: String,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// The client of [`session`]: plain sockets, so every byte that arrives is
/// seen, whatever the HTTP framing.
const CLIENT: &str = r#"
import json, socket, sys, time
c = json.loads(sys.argv[1])
s = socket.socket(socket.AF_INET6 if ':' in c['host'] else socket.AF_INET)
if c['rcvbuf']:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, c['rcvbuf'])
s.settimeout(3)
try:
    s.connect((c['host'], c['port']))
except OSError as e:
    sys.stderr.write('connect: %s\n' % e)
    sys.exit(0)
t0, got, end, sends = time.monotonic(), bytearray(), 'timeout', c['sends']
try:
    while True:
        now = time.monotonic() - t0
        if sends and now >= sends[0][0] / 1000:
            s.sendall(sends.pop(0)[1].encode())
            continue
        stop = c['read_ms'] / 1000
        if now >= stop:
            break
        wake = min(stop, sends[0][0] / 1000) if sends else stop
        s.settimeout(max(wake - now, 0.001))
        try:
            chunk = s.recv(c['chunk'])
        except socket.timeout:
            continue
        if not chunk:
            end = 'closed'
            break
        got += chunk
        time.sleep(c['pause_ms'] / 1000)
except OSError as e:
    end = 'error: %s' % e
sys.stdout.buffer.write(bytes(got))
sys.stderr.write(end + '\n')
"#;

/// Runs `s` against `addr` from inside `ns` (python3, or $HOSTROLE_PYTHON),
/// killed if it overruns its reading time by 10 s.
pub fn session(ns: &str, addr: SocketAddr, s: &Session) -> Received {
    let cfg = serde_json::json!({
        "host": addr.ip().to_string(),
        "port": addr.port(),
        "sends": s.sends,
        "rcvbuf": s.rcvbuf,
        "chunk": s.chunk,
        "pause_ms": s.pause_ms,
        "read_ms": s.read_ms,
    });
    let python = std::env::var("HOSTROLE_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, &python, "-c", CLIENT])
        .arg(cfg.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the python client");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let mut end = String::new();
    let deadline = Instant::now() + Duration::from_millis(s.read_ms) + Duration::from_secs(10);
    loop {
        if child.try_wait().unwrap().is_some() {
            let _ = err.read_to_string(&mut end);
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            end = "client killed: it overran".to_owned();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let bytes = reader.join().unwrap();
    Received {
        bytes,
        end: end.trim().to_owned(),
    }
}

/// Runs every (namespace, session) at once; results in the same order.
pub fn sessions(runs: &[(&str, SocketAddr, Session)]) -> Vec<Received> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .iter()
            .map(|(ns, addr, s)| scope.spawn(move || session(ns, *addr, s)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Why `bytes` hold (part of) a token response, if they do: its
/// `x-aws-ec2-metadata-token-ttl-seconds` header, or a run of 55 or more
/// base64url characters (a token is 55).
pub fn token_in(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    if text
        .to_ascii_lowercase()
        .contains("x-aws-ec2-metadata-token-ttl-seconds")
    {
        return Some("the token TTL header".to_owned());
    }
    let is_b64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
    bytes
        .split(|b| !is_b64(b))
        .find(|run| run.len() >= 55)
        .map(|run| format!("a token-like run {:?}", String::from_utf8_lossy(run)))
}

//! The Prometheus endpoint, read by the real Python Prometheus parser.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::*;

/// Parses OpenMetrics text with `prometheus_client` and returns
/// `{sample name: [[labels, value], ...]}`.
fn parse_with_prometheus_client(text: &str) -> serde_json::Value {
    let python = std::env::var("HOSTROLE_PYTHON").unwrap_or_else(|_| {
        panic!("HOSTROLE_PYTHON is not set: run scripts/test (it installs prometheus-client)")
    });
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.setdefault(s.name, []).append([s.labels, s.value])
print(json.dumps(out))
"#;
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the Python parser");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejected the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn value(m: &serde_json::Value, name: &str, labels: &[(&str, &str)]) -> f64 {
    m[name]
        .as_array()
        .unwrap_or_else(|| panic!("{name} missing"))
        .iter()
        .find(|s| labels.iter().all(|(k, v)| s[0][*k] == *v))
        .map(|s| s[1].as_f64().unwrap())
        .unwrap_or_else(|| panic!("{name}{labels:?} missing"))
}

/// The demo role on the local issuer, with metrics on an ephemeral port.
fn start_with_metrics(dir: &std::path::Path) -> (Daemon, std::net::SocketAddr) {
    start_with_metrics_through(dir, &[], &[])
}

/// As [`start_with_metrics`], run through `wrapper` (if any), with `extra`
/// flags.
fn start_with_metrics_through(
    dir: &std::path::Path,
    wrapper: &[&str],
    extra: &[&str],
) -> (Daemon, std::net::SocketAddr) {
    let mut args = vec![
        "--issuer",
        "local",
        "--role-arn",
        ROLE_ARN,
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let d = start_daemon_wrapped(wrapper, dir, &args, &[]);
    let metrics_addr = d.logged_addr("serving metrics");
    (d, metrics_addr)
}

#[test]
fn metrics_parse_with_prometheus_client_and_count_what_happened() {
    let dir = temp_dir();
    let (d, metrics_addr) = start_with_metrics(dir.path());

    fetch_credentials(d.addr);
    fetch_credentials(d.addr);
    assert_eq!(
        get(d.addr, "/latest/meta-data/instance-id", "bogus").status,
        401
    );
    assert!(client(
        dir.path(),
        &["replace", "arn:aws:iam::123456789012:role/other"]
    )
    .status
    .success());

    let r = request(metrics_addr, "GET", "/metrics", &[]);
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("application/openmetrics-text"));
    let m = parse_with_prometheus_client(&r.body);
    assert_eq!(value(&m, "hostrole_tokens_issued_total", &[]), 2.0);
    assert_eq!(value(&m, "hostrole_tokens_rejected_total", &[]), 1.0);
    assert_eq!(
        value(
            &m,
            "hostrole_requests_total",
            &[("route", "credentials"), ("status", "200")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &m,
            "hostrole_requests_total",
            &[("route", "credentials-list"), ("status", "200")]
        ),
        2.0
    );
    assert_eq!(value(&m, "hostrole_revocations_total", &[]), 1.0);
    assert!(
        value(&m, "hostrole_sts_calls_total", &[]) >= 2.0,
        "prefetch and the new role"
    );
    assert!(value(&m, "hostrole_refreshes_total", &[]) >= 2.0);
    assert!(value(&m, "hostrole_sts_call_duration_seconds_count", &[]) >= 2.0);
    let left = value(&m, "hostrole_credentials_expiry_seconds", &[]);
    assert!(left > 3500.0 && left <= 3600.0, "{left}");
    assert!(m.get("hostrole_connections_open").is_some());
    // Other paths are 404; the IMDS listener does not serve metrics.
    assert_eq!(request(metrics_addr, "GET", "/", &[]).status, 404);
    assert_eq!(request(d.addr, "GET", "/metrics", &[]).status, 401);
}

#[test]
fn without_a_role_the_expiry_gauge_is_zero() {
    let dir = temp_dir();
    let d = start_daemon(
        dir.path(),
        &["--issuer", "local", "--metrics-listen", "127.0.0.1:0"],
    );
    let addr = d.logged_addr("serving metrics");
    let m = parse_with_prometheus_client(&request(addr, "GET", "/metrics", &[]).body);
    assert_eq!(value(&m, "hostrole_credentials_expiry_seconds", &[]), 0.0);
    assert_eq!(value(&m, "hostrole_sts_calls_total", &[]), 0.0);
}

/// A revocation is counted when a role stops being served: not when the
/// first role is associated.
#[test]
fn revocations_count_roles_taken_away_not_roles_given() {
    let dir = temp_dir();
    let d = start_daemon(
        dir.path(),
        &["--issuer", "local", "--metrics-listen", "127.0.0.1:0"],
    );
    let addr = d.logged_addr("serving metrics");
    let revocations = || {
        let m = parse_with_prometheus_client(&request(addr, "GET", "/metrics", &[]).body);
        value(&m, "hostrole_revocations_total", &[])
    };
    let ok = |args: &[&str]| assert!(client(dir.path(), args).status.success());
    ok(&["associate", ROLE_ARN]);
    assert_eq!(revocations(), 0.0);
    ok(&["disassociate"]);
    assert_eq!(revocations(), 1.0);
}

/// Reads one answer (head and a body of content-length bytes) from a
/// keep-alive connection; returns its status.
fn read_one_answer(s: &mut std::net::TcpStream) -> u16 {
    use std::io::Read;
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed mid-head");
        got.push(byte[0]);
    }
    let head = String::from_utf8(got).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).unwrap();
    head[9..12].parse().unwrap()
}

fn thread_gauges(metrics_addr: std::net::SocketAddr) -> Vec<f64> {
    let r = request(metrics_addr, "GET", "/metrics", &[]);
    let m = parse_with_prometheus_client(&r.body);
    let mut by_thread: Vec<(u64, f64)> = m["hostrole_thread_connections"]
        .as_array()
        .expect("hostrole_thread_connections")
        .iter()
        .map(|s| {
            let thread = s[0]["thread"].as_str().unwrap().parse().unwrap();
            (thread, s[1].as_f64().unwrap())
        })
        .collect();
    by_thread.sort_by_key(|(t, _)| *t);
    by_thread.into_iter().map(|(_, v)| v).collect()
}

/// Waits until process `pid` runs `n` threads named `hostrole-shard*`
/// (they start once the daemon listens), at most 10 s.
fn wait_for_named_threads(pid: u32, n: usize) {
    let named = || {
        tasks(pid)
            .iter()
            .filter(|(_, comm)| comm.starts_with("hostrole-shard"))
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while named() != n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} threads named hostrole-shard*, not {n}",
            named()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Each thread of process `pid`: its id and its name.
fn tasks(pid: u32) -> Vec<(u64, String)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| {
            let t = t.ok()?.path();
            let comm = std::fs::read_to_string(t.join("comm")).ok()?;
            Some((
                t.file_name()?.to_str()?.parse().ok()?,
                comm.trim().to_owned(),
            ))
        })
        .collect()
}

/// The id of the thread of process `pid` named `hostrole-shard<i>`.
fn shard_thread(pid: u32, i: usize) -> Option<u64> {
    let name = format!("hostrole-shard{i}");
    tasks(pid)
        .into_iter()
        .find(|(_, comm)| *comm == name)
        .map(|(t, _)| t)
}

/// The id of serving thread `i` of process `pid`: the process's own
/// thread for 0, `hostrole-shard<i>` for the others.
fn thread_id(pid: u32, i: usize) -> Option<u64> {
    if i == 0 {
        return Some(pid.into());
    }
    shard_thread(pid, i)
}

/// Nanoseconds thread `tid` of `pid` has run.
fn cpu_ns(pid: u32, tid: u64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).unwrap();
    stat.split_whitespace().next().unwrap().parse().unwrap()
}

/// A keep-alive request for the credentials with a fresh token, once the
/// token's own connection no longer counts in the `threads` gauges (its
/// close may be seen after the answer): each connection a test opens next
/// is then the only change.
fn credentials_ask(d: &Daemon, metrics_addr: std::net::SocketAddr, threads: usize) -> String {
    let t = token(d.addr, 600);
    wait_for_gauges(metrics_addr, &vec![0.0; threads]);
    format!(
        "GET /latest/meta-data/iam/security-credentials/demo HTTP/1.1\r\n\
         Host: {}\r\nX-aws-ec2-metadata-token: {t}\r\n\r\n",
        d.addr
    )
}

/// Asks `times` times on each of `conns`; returns which of the threads
/// `tids` of `pid` ran the longest meanwhile, and each one's nanoseconds.
fn busiest_asking(
    pid: u32,
    tids: &[u64],
    conns: &mut [&mut std::net::TcpStream],
    ask: &str,
    times: usize,
) -> (usize, Vec<u64>) {
    let before: Vec<u64> = tids.iter().map(|&t| cpu_ns(pid, t)).collect();
    for _ in 0..times {
        for s in conns.iter_mut() {
            s.write_all(ask.as_bytes()).unwrap();
            assert_eq!(read_one_answer(s), 200);
        }
    }
    let ran: Vec<u64> = tids
        .iter()
        .zip(&before)
        .map(|(&t, &b)| cpu_ns(pid, t) - b)
        .collect();
    let busiest = (0..tids.len()).max_by_key(|&i| ran[i]).unwrap();
    (busiest, ran)
}

/// Opens a keep-alive connection, asks once, and returns it open.
fn keep_alive(addr: std::net::SocketAddr, ask: &str) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(ask.as_bytes()).unwrap();
    assert_eq!(read_one_answer(&mut s), 200);
    s
}

fn wait_for_gauges(metrics_addr: std::net::SocketAddr, want: &[f64]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = thread_gauges(metrics_addr);
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{got:?}, not {want:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn one_thread_per_core_serves_and_keep_alive_connections_are_shared_out_evenly() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let threads = cores.min(hostrole::endpoint::shards::MAX_SHARDS);
    let dir = temp_dir();
    let (d, metrics_addr) = start_with_metrics(dir.path());
    // The first thread is the process's own; each other is named.
    wait_for_named_threads(d.pid(), threads - 1);

    let ask = credentials_ask(&d, metrics_addr, threads);
    // One at a time, each answered before the next opens: whichever
    // thread accepts it, a new one goes to a thread holding fewest.
    // Which thread took each shows in the gauges.
    let per_thread = 4;
    let mut held: Vec<(usize, std::net::TcpStream)> = Vec::new();
    let mut before = thread_gauges(metrics_addr);
    for _ in 0..per_thread * threads {
        let s = keep_alive(d.addr, &ask);
        let after = thread_gauges(metrics_addr);
        let took = (0..threads).find(|&i| after[i] > before[i]).unwrap();
        held.push((took, s));
        before = after;
    }
    assert_eq!(before, vec![per_thread as f64; threads]);
    // Each connection is served on the thread that counts it: asking on
    // one thread's connections makes that thread, and no other, work.
    let pid = d.pid();
    let tids: Vec<u64> = (0..threads)
        .map(|i| thread_id(pid, i).unwrap_or_else(|| panic!("thread {i}")))
        .collect();
    for thread in 0..threads {
        let mut theirs: Vec<_> = held
            .iter_mut()
            .filter(|(t, _)| *t == thread)
            .map(|(_, s)| s)
            .collect();
        let (busiest, ran) = busiest_asking(pid, &tids, &mut theirs, &ask, 100);
        assert_eq!(busiest, thread, "CPU ns by thread: {ran:?}");
    }
    // The first thread's callers leave: each new connection goes to it,
    // wherever it is accepted, until it holds as many as the others.
    held.retain(|(thread, _)| *thread != 0);
    let mut want = vec![per_thread as f64; threads];
    want[0] = 0.0;
    wait_for_gauges(metrics_addr, &want);
    for _ in 0..per_thread {
        let s = keep_alive(d.addr, &ask);
        want[0] += 1.0;
        assert_eq!(thread_gauges(metrics_addr), want);
        held.push((0, s));
    }
    // A burst the daemon finds queued at once (it was stopped while the
    // callers connected and asked) is shared out as it is accepted.
    let burst = 4 * threads;
    let pid = d.pid().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    let mut queued: Vec<_> = (0..burst)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(d.addr).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            s.write_all(ask.as_bytes()).unwrap();
            s
        })
        .collect();
    assert!(std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    for s in &mut queued {
        assert_eq!(read_one_answer(s), 200);
    }
    let gauges = thread_gauges(metrics_addr);
    let (least, most) = gauges
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, m), &g| (l.min(g), m.max(g)));
    assert_eq!(
        gauges.iter().sum::<f64>(),
        (per_thread * threads + burst) as f64
    );
    assert!(most - least <= 2.0, "{gauges:?}");
    drop(held);
    drop(queued);
    wait_for_gauges(metrics_addr, &vec![0.0; threads]);
}

/// The CPUs thread `tid` may run on (0: the calling thread).
fn cpus_of(tid: u64) -> Vec<usize> {
    let tid = nix::unistd::Pid::from_raw(tid.try_into().unwrap());
    let set = nix::sched::sched_getaffinity(tid).unwrap();
    (0..nix::sched::CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap())
        .collect()
}

/// Starts the daemon with `pin-threads = true` and metrics, through
/// `wrapper` (if any), with `extra` flags.
fn start_pinned(
    dir: &std::path::Path,
    wrapper: &[&str],
    extra: &[&str],
) -> (Daemon, std::net::SocketAddr) {
    let config = dir.join("hostrole.toml");
    std::fs::write(&config, "pin-threads = true\n").unwrap();
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    start_with_metrics_through(dir, wrapper, &args)
}

/// Moves the calling thread to CPU `cpu` alone.
fn pin_me(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
}

#[test]
fn pinned_threads_each_take_one_cpu_and_the_keep_alive_callers_on_it() {
    let original = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
    let mine = cpus_of(0);
    let cpus: Vec<usize> = mine
        .iter()
        .copied()
        .take(hostrole::endpoint::shards::MAX_SHARDS)
        .collect();
    assert!(
        cpus.len() >= 2 || std::env::var_os("CI").is_none(),
        "CI has one CPU: there is nothing to pin"
    );
    let dir = temp_dir();
    let gid = nix::unistd::getgid().to_string();
    let (d, metrics_addr) = start_pinned(dir.path(), &[], &["--allowed-gid", &gid]);
    let threads = thread_gauges(metrics_addr).len();
    assert_eq!(threads, cpus.len());
    let pid = d.pid();
    // Thread i is named and runs on the i-th CPU alone; the process's own
    // thread, which serves no caller, runs anywhere.
    let shard = |i: usize| shard_thread(pid, i);
    if threads > 1 {
        wait_for_named_threads(pid, threads);
        for (i, &cpu) in cpus.iter().enumerate() {
            let tid = shard(i).unwrap_or_else(|| panic!("thread {i}"));
            // A thread pins itself as it starts.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while cpus_of(tid) != vec![cpu] && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            assert_eq!(cpus_of(tid), vec![cpu], "thread {i}");
        }
    }
    assert_eq!(cpus_of(pid.into()), mine);

    // A caller's keep-alive connection goes to the thread on its CPU,
    // whichever thread accepts it, while that holds no more than the slack
    // over the others; callers on each CPU in turn keep it so.
    let ask = credentials_ask(&d, metrics_addr, threads);
    let mut held = Vec::new();
    let mut want = vec![0.0; threads];
    for _ in 0..3 {
        for (i, &cpu) in cpus.iter().enumerate() {
            pin_me(cpu);
            held.push((i, keep_alive(d.addr, &ask)));
            want[i] += 1.0;
            assert_eq!(thread_gauges(metrics_addr), want, "a caller on CPU {cpu}");
        }
    }
    // Callers all on the first CPU: that thread takes them until it holds
    // more than the slack over the fewest; the rest are handed to the
    // others by the thread that accepted them.
    pin_me(cpus[0]);
    let slack = hostrole::endpoint::shards::NEAR_SLACK as f64;
    for _ in 0..2 * threads {
        held.push((usize::MAX, keep_alive(d.addr, &ask)));
        let got = thread_gauges(metrics_addr);
        let took = (0..threads).find(|&i| got[i] > want[i]).unwrap();
        held.last_mut().unwrap().0 = took;
        let fewest = want.iter().fold(f64::MAX, |l, &g| l.min(g));
        if want[0] <= fewest + slack {
            assert_eq!(took, 0, "{want:?} then {got:?}");
        } else {
            assert_ne!(took, 0, "{want:?} then {got:?}");
        }
        want = got;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &original).unwrap();
    // Each is served where it is counted: asking on it makes that thread,
    // and no other, work.
    if threads > 1 {
        let tids: Vec<u64> = (0..threads).map(|i| shard(i).unwrap()).collect();
        for (thread, s) in &mut held {
            let (busiest, ran) = busiest_asking(pid, &tids, &mut [s], &ask, 200);
            assert_eq!(busiest, *thread, "CPU ns by thread: {ran:?}");
        }
    }

    // The user database lookup for allowed-gids ran on a thread a pinned
    // thread started: that one runs anywhere.
    let others: Vec<(u64, String)> = tasks(pid)
        .into_iter()
        .filter(|(t, n)| *t != u64::from(pid) && !n.starts_with("hostrole-shard"))
        .collect();
    assert!(!others.is_empty(), "{:?}", tasks(pid));
    for (tid, name) in others {
        assert_eq!(cpus_of(tid), mine, "{name} ({tid})");
    }
    drop(held);
    wait_for_gauges(metrics_addr, &vec![0.0; threads]);
}

/// Runs a program with `sched_setaffinity` denied (EPERM) by a seccomp
/// filter, as the packaged unit's `SystemCallFilter=~@resources` does:
/// `python -c DENY_SCHED_SETAFFINITY program args…` execs the program.
const DENY_SCHED_SETAFFINITY: &str = r#"
import ctypes, os, struct, sys
nr = {"x86_64": 203, "aarch64": 122}[os.uname().machine]
insn = lambda code, k, jt=0, jf=0: struct.pack("HBBI", code, jt, jf, k)
prog = (insn(0x20, 0)                      # load the syscall number
        + insn(0x15, nr, 0, 1)             # sched_setaffinity?
        + insn(0x06, 0x00050000 | 1)       # then fail with EPERM
        + insn(0x06, 0x7fff0000))          # else allow
buf = ctypes.create_string_buffer(prog)
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(4, ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0      # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0  # PR_SET_SECCOMP, filter
os.execv(sys.argv[1], sys.argv[1:])
"#;

#[test]
fn pin_threads_where_pinning_is_denied_serve_unpinned_and_say_why() {
    let mine = cpus_of(0);
    let dir = temp_dir();
    let python = std::env::var("HOSTROLE_PYTHON").expect("HOSTROLE_PYTHON");
    let (d, metrics_addr) = start_pinned(dir.path(), &[&python, "-c", DENY_SCHED_SETAFFINITY], &[]);
    let threads = thread_gauges(metrics_addr).len();
    let why = if threads > 1 {
        "sched_setaffinity is denied"
    } else {
        "one thread"
    };
    assert!(
        d.wait_for_log("pin-threads: not pinned", std::time::Duration::from_secs(5)),
        "{}",
        d.log()
    );
    assert!(d.log().contains(why), "{}", d.log());
    // Served as without the setting: the process's own thread is the
    // first serving thread, and every thread may run on every CPU.
    assert_eq!(fetch_credentials(d.addr)["Code"], "Success");
    let pid = d.pid();
    wait_for_named_threads(pid, threads - 1);
    for (tid, comm) in tasks(pid) {
        assert_eq!(cpus_of(tid), mine, "{comm}");
    }
}

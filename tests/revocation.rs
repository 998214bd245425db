//! One role per host, changed only on purpose, revoked the instant it is
//! removed: the association commands against the real daemon.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::disk::SmallDisk;
use support::*;

const OTHER_ARN: &str = "arn:aws:iam::123456789012:role/other";

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn err(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One observed request: when it was sent, the role listed, the key served.
#[derive(Debug, Clone)]
struct Seen {
    sent: Instant,
    listed: Option<String>,
    key_status: u16,
    key: Option<String>,
}

/// Runs `threads` clients fetching credentials as SDKs do (listing, then
/// the document of the listed role, or of `fixed_role` if given) until
/// `stop` is set.
fn load(
    addr: std::net::SocketAddr,
    threads: usize,
    fixed_role: Option<&'static str>,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<Seen>>> {
    (0..threads)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let t = token(addr, 600);
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let list = get(addr, "/latest/meta-data/iam/security-credentials/", &t);
                    let listed = (list.status == 200).then(|| list.body.clone());
                    let name = fixed_role
                        .map(str::to_owned)
                        .or(listed.clone())
                        .unwrap_or("demo".into());
                    let doc = get(
                        addr,
                        &format!("/latest/meta-data/iam/security-credentials/{name}"),
                        &t,
                    );
                    let key = (doc.status == 200).then(|| {
                        let v: serde_json::Value = serde_json::from_str(&doc.body).unwrap();
                        v["AccessKeyId"].as_str().unwrap().to_owned()
                    });
                    seen.push(Seen {
                        sent,
                        listed,
                        key_status: doc.status,
                        key,
                    });
                }
                seen
            })
        })
        .collect()
}

fn run_load_around(
    d: &Daemon,
    fixed_role: Option<&'static str>,
    command: impl FnOnce(),
) -> (Vec<Seen>, Instant) {
    let stop = Arc::new(AtomicBool::new(false));
    let handles = load(d.addr, 16, fixed_role, stop.clone());
    std::thread::sleep(Duration::from_millis(600));
    command();
    let returned = Instant::now();
    std::thread::sleep(Duration::from_millis(600));
    stop.store(true, Ordering::Relaxed);
    let seen = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    (seen, returned)
}

#[test]
fn after_disassociate_returns_no_request_gets_the_old_credentials() {
    let dir = temp_dir();
    let d = start_daemon(dir.path(), &["--issuer", "local"]);
    ok(client(dir.path(), &["associate", ROLE_ARN]));
    let (seen, returned) = run_load_around(&d, Some("demo"), || {
        ok(client(dir.path(), &["disassociate"]));
    });
    let before = seen
        .iter()
        .filter(|s| s.sent < returned && s.key.is_some())
        .count();
    let after: Vec<&Seen> = seen.iter().filter(|s| s.sent >= returned).collect();
    assert!(
        before > 50,
        "only {before} credential responses before the command"
    );
    assert!(
        after.len() > 50,
        "only {} requests after the command",
        after.len()
    );
    for s in &after {
        assert_eq!(
            s.key_status, 404,
            "old credentials served after disassociate returned: {s:?}"
        );
        assert!(s.listed.is_none(), "role still listed: {s:?}");
    }
    let t = token(d.addr, 60);
    assert_eq!(get(d.addr, "/latest/meta-data/iam/info", &t).status, 404);
    let status: serde_json::Value =
        serde_json::from_str(&ok(client(dir.path(), &["status", "--json"]))).unwrap();
    assert!(status["role"].is_null());
    assert_eq!(status["serving"], false);
}

#[test]
fn after_replace_returns_only_the_new_role_is_served() {
    let dir = temp_dir();
    let d = start_daemon(dir.path(), &["--issuer", "local"]);
    ok(client(dir.path(), &["associate", ROLE_ARN]));
    let (seen, returned) = run_load_around(&d, None, || {
        ok(client(dir.path(), &["replace", OTHER_ARN]));
    });
    let old_keys: std::collections::HashSet<String> = seen
        .iter()
        .filter(|s| s.listed.as_deref() == Some("demo"))
        .filter_map(|s| s.key.clone())
        .collect();
    assert!(!old_keys.is_empty());
    let before = seen
        .iter()
        .filter(|s| s.sent < returned && s.key.is_some())
        .count();
    assert!(
        before > 50,
        "only {before} credential responses before the command"
    );
    let after: Vec<&Seen> = seen.iter().filter(|s| s.sent >= returned).collect();
    assert!(after.len() > 50);
    for s in &after {
        assert_eq!(s.listed.as_deref(), Some("other"), "{s:?}");
        if let Some(k) = &s.key {
            assert!(
                !old_keys.contains(k),
                "old role's key served after replace: {s:?}"
            );
        }
    }
    assert!(
        after.iter().any(|s| s.key.is_some()),
        "the new role is served"
    );
    let t = token(d.addr, 60);
    assert_eq!(
        get(
            d.addr,
            "/latest/meta-data/iam/security-credentials/demo",
            &t
        )
        .status,
        404
    );
}

#[test]
fn a_persisted_association_and_earlier_tokens_survive_a_restart() {
    let dir = temp_dir();
    let d = start_daemon(dir.path(), &["--issuer", "local"]);
    ok(client(
        dir.path(),
        &["associate", ROLE_ARN, "--session-name", "web-1"],
    ));
    let t = token(d.addr, 21_600);
    let saved = std::fs::read_to_string(dir.path().join("association.json")).unwrap();
    assert!(
        saved.contains(ROLE_ARN) && saved.contains("web-1"),
        "{saved}"
    );
    // No --role-arn: the role comes from the saved association.
    let d = d.restart(dir.path(), &["--issuer", "local"]);
    let list = get(d.addr, "/latest/meta-data/iam/security-credentials/", &t);
    assert_eq!(
        (list.status, list.body.as_str()),
        (200, "demo"),
        "token and role survive"
    );
    assert_eq!(fetch_credentials(d.addr)["Code"], "Success");
}

#[test]
fn the_control_socket_refuses_changes_from_an_unprivileged_user() {
    let dir = open_temp_dir();
    let d = start_daemon(dir.path(), &["--issuer", "local"]);
    ok(client(dir.path(), &["associate", ROLE_ARN]));
    let as_nobody = |args: &[&str]| client_as_nobody(dir.path(), args);
    for args in [
        &["disassociate"][..],
        &["replace", OTHER_ARN],
        &["associate", OTHER_ARN],
    ] {
        let out = as_nobody(args);
        assert_eq!(out.status.code(), Some(77), "{args:?}: {}", err(&out));
        assert!(err(&out).contains("permission denied"), "{}", err(&out));
    }
    assert_eq!(fetch_credentials(d.addr)["Code"], "Success", "still served");
    assert!(d.wait_for_log("permission denied", Duration::from_secs(5)));
    assert!(
        d.log()
            .lines()
            .any(|l| l.contains("permission denied") && l.contains("\"uid\":65534")),
        "{}",
        d.log()
    );
    // Reading the status is allowed.
    let out = as_nobody(&["status"]);
    assert!(out.status.success(), "{}", err(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(ROLE_ARN));
}

/// Runs `hostrole serve` on `state_dir` to completion (it is expected to
/// refuse to start): its exit code and standard error.
fn serve_expecting_failure(
    state_dir: &std::path::Path,
    socket: &std::path::Path,
) -> (Option<i32>, String) {
    let socket = socket.display().to_string();
    run_until_exit(
        serve_command(
            &[],
            state_dir,
            &["--issuer", "local", "--control-socket", &socket],
        ),
        Duration::from_secs(20),
    )
}

#[test]
fn a_second_daemon_on_the_same_state_is_refused_naming_the_first() {
    let dir = temp_dir();
    let d = start_daemon(dir.path(), &["--issuer", "local"]);
    let started = Instant::now();
    let (code, stderr) = serve_expecting_failure(dir.path(), &dir.path().join("second.sock"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once"
    );
    assert_eq!(code, Some(75), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", d.pid())), "{stderr}");
}

#[test]
fn a_corrupt_state_file_is_a_clear_error_and_is_left_alone() {
    let bodies: [&[u8]; 2] = [
        b"{\"version\": 1, \"role-arn\": ",
        b"\x00\xff\xfe not text \x80",
    ];
    for body in bodies {
        let dir = temp_dir();
        let path = dir.path().join("association.json");
        std::fs::write(&path, body).unwrap();
        let (code, stderr) = serve_expecting_failure(dir.path(), &control_socket(dir.path()));
        assert_eq!(code, Some(78), "{body:?}: {stderr}");
        assert!(
            stderr.contains("association.json") && stderr.contains("corrupt"),
            "{stderr}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), body, "left as it was");
    }
}

#[test]
fn a_disassociated_host_still_has_no_role_after_a_restart() {
    let dir = temp_dir();
    let d = start_daemon(dir.path(), &["--issuer", "local"]);
    ok(client(dir.path(), &["associate", ROLE_ARN]));
    ok(client(dir.path(), &["disassociate"]));
    assert!(!dir.path().join("association.json").exists());
    let d = d.restart(dir.path(), &["--issuer", "local"]);
    let t = token(d.addr, 60);
    assert_eq!(
        get(d.addr, "/latest/meta-data/iam/security-credentials/", &t).status,
        404
    );
}

#[test]
fn association_commands_refuse_what_ec2_refuses() {
    let dir = temp_dir();
    let _d = start_daemon(dir.path(), &["--issuer", "local"]);
    for args in [&["replace", OTHER_ARN][..], &["disassociate"]] {
        let out = client(dir.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(err(&out).contains("no role is associated"), "{}", err(&out));
    }
    let out = client(dir.path(), &["associate", "arn:aws:iam::123:role/x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(err(&out).contains("invalid role ARN"), "{}", err(&out));
    ok(client(dir.path(), &["associate", ROLE_ARN]));
    let out = client(dir.path(), &["associate", OTHER_ARN]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).contains(ROLE_ARN) && err(&out).contains("hostrole replace"),
        "{}",
        err(&out)
    );
}

#[test]
fn a_client_without_a_daemon_says_where_it_looked() {
    let dir = temp_dir();
    let out = client(dir.path(), &["status"]);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        err(&out).contains(&control_socket(dir.path()).display().to_string()),
        "{}",
        err(&out)
    );
}

#[test]
fn status_shows_role_key_expiry_and_counts() {
    let dir = temp_dir();
    let d = start_daemon(dir.path(), &["--issuer", "local"]);
    ok(client(dir.path(), &["associate", ROLE_ARN]));
    let key = fetch_credentials(d.addr)["AccessKeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let human = ok(client(dir.path(), &["status"]));
    for want in [
        ROLE_ARN,
        key.as_str(),
        "expiration:",
        "next refresh:",
        "source:          local",
    ] {
        assert!(human.contains(want), "{want} missing from:\n{human}");
    }
    let s: serde_json::Value =
        serde_json::from_str(&ok(client(dir.path(), &["status", "--json"]))).unwrap();
    assert_eq!(s["role"], ROLE_ARN);
    assert_eq!(s["serving"], true);
    assert_eq!(s["access-key-id"], key.as_str());
    assert!(s["tokens-issued"].as_u64().unwrap() >= 1);
    assert!(s["requests"].as_u64().unwrap() >= 3);
    for field in ["expiration", "last-refresh", "next-refresh", "last-error"] {
        assert!(s.get(field).is_some(), "{field}");
    }
}

#[test]
fn associate_waits_for_the_first_credentials_and_says_when_sts_fails() {
    let dir = temp_dir();
    // An STS endpoint on a loopback port nothing listens on: refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let endpoint = format!("http://{closed}");
    let d = start_daemon_with_base_credentials(dir.path(), &sts_args(&endpoint, false));
    let started = Instant::now();
    let out = client(dir.path(), &["associate", ROLE_ARN]);
    assert!(
        out.status.success(),
        "the association itself is made: {}",
        err(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "returned promptly"
    );
    assert!(
        err(&out).contains("warning") && err(&out).contains("could not be obtained"),
        "{}",
        err(&out)
    );
    let s: serde_json::Value =
        serde_json::from_str(&ok(client(dir.path(), &["status", "--json"]))).unwrap();
    assert_eq!(s["role"], ROLE_ARN);
    assert_eq!(s["serving"], false);
    assert!(
        s["last-error"]
            .as_str()
            .unwrap()
            .starts_with(&format!("cannot reach STS at {endpoint}: ")),
        "{s}"
    );
    drop(d);
}

#[test]
fn a_full_disk_refuses_the_change_clearly_and_keeps_the_saved_and_served_role() {
    let disk = SmallDisk::new();
    let state = disk.dir.path().to_owned();
    let d = start_demo_daemon(&state);
    let saved = std::fs::read(state.join("association.json")).unwrap();
    disk.fill();
    let out = client(&state, &["replace", "arn:aws:iam::123456789012:role/other"]);
    let e = err(&out);
    assert!(!out.status.success());
    assert!(e.contains("No space left on device"), "{e}");
    assert!(e.contains("nothing changed"), "{e}");
    // The saved association is whole and unchanged; the old role is served.
    assert_eq!(
        std::fs::read(state.join("association.json")).unwrap(),
        saved
    );
    let t = token(d.addr, 60);
    let list = get(d.addr, "/latest/meta-data/iam/security-credentials/", &t);
    assert_eq!(list.body, "demo");
    // No half-written temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // With space again, the change goes through.
    disk.free();
    ok(client(
        &state,
        &["replace", "arn:aws:iam::123456789012:role/other"],
    ));
    let list = get(d.addr, "/latest/meta-data/iam/security-credentials/", &t);
    assert_eq!(list.body, "other");
}

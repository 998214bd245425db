//! Black-box tests of the `hostrole` binary: exit codes, config errors,
//! serving, restart, shutdown.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

fn hostrole(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hostrole"))
        .args(args)
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .output()
        .expect("run hostrole")
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    let o = hostrole(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(
        stderr(&o).contains("unrecognized subcommand"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_unknown_config_key_names_the_key_and_line() {
    let dir = temp_dir();
    let cfg = path_in(dir.path(), "hostrole.toml");
    std::fs::write(&cfg, "issuer = \"local\"\nrole-arn = \"arn:aws:iam::123456789012:role/demo\"\nlisten-on = \"x\"\n").unwrap();
    let o = hostrole(&["serve", "--check-config", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(78));
    let err = stderr(&o);
    assert!(err.contains("listen-on") && err.contains("line 3"), "{err}");
}

#[test]
fn a_missing_config_file_is_a_config_error() {
    let o = hostrole(&["serve", "--config", "/nonexistent/hostrole.toml"]);
    assert_eq!(o.status.code(), Some(78));
    assert!(
        stderr(&o).contains("/nonexistent/hostrole.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_config_prints_the_effective_settings() {
    let dir = temp_dir();
    let cfg = path_in(dir.path(), "hostrole.toml");
    std::fs::write(
        &cfg,
        "issuer = \"local\"\nregion = \"eu-west-1\"\nlisten = [\"127.0.0.1:9999\"]\n",
    )
    .unwrap();
    let o = hostrole(&[
        "serve",
        "--check-config",
        "--config",
        cfg.to_str().unwrap(),
        "--role-arn",
        ROLE_ARN,
        "--state-dir",
        "/tmp/x",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for want in [
        "configuration OK",
        "127.0.0.1:9999",
        ROLE_ARN,
        "local",
        "eu-west-1",
        "disabled",
    ] {
        assert!(out.contains(want), "{want} missing from:\n{out}");
    }
}

#[test]
fn check_config_refuses_more_than_50_session_tags_with_the_limit() {
    let dir = temp_dir();
    let cfg = path_in(dir.path(), "hostrole.toml");
    let tags: String = (1..=51).map(|i| format!("t{i} = \"v\"\n")).collect();
    std::fs::write(
        &cfg,
        format!("region = \"eu-west-1\"\n[session-tags]\n{tags}"),
    )
    .unwrap();
    let o = hostrole(&["serve", "--check-config", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "hostrole: error: session-tags: 51 tags; STS takes at most 50\n"
    );
    assert!(o.stdout.is_empty());
    // 50 pass, and the effective values are printed.
    let tags: String = (1..=50).map(|i| format!("t{i} = \"v\"\n")).collect();
    std::fs::write(
        &cfg,
        format!(
            "region = \"eu-west-1\"\nsource-identity = \"{{instance-id}}\"\n[session-tags]\n{tags}"
        ),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_hostrole"))
        .args(["serve", "--check-config", "--config", cfg.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("source-identity:"))
        .unwrap_or_else(|| panic!("no source-identity in:\n{out}"));
    let value = line.split_whitespace().nth(1).unwrap();
    assert!(value.starts_with("i-") && value.len() == 19, "{line}");
    assert!(
        out.contains("{ \"t1\" = \"v\", ") && out.contains(", \"t50\" = \"v\", "),
        "{out}"
    );
}

#[test]
fn a_bad_flag_value_is_rejected_before_anything_binds() {
    let o = hostrole(&[
        "serve",
        "--issuer",
        "local",
        "--role-arn",
        "demo",
        "--state-dir",
        "/tmp/x",
    ]);
    assert_eq!(o.status.code(), Some(78));
    assert!(stderr(&o).contains("role-arn"), "{}", stderr(&o));
}

#[test]
fn sts_without_a_region_says_how_to_set_one() {
    let dir = temp_dir();
    let o = Command::new(env!("CARGO_BIN_EXE_hostrole"))
        .args([
            "serve",
            "--issuer",
            "sts",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
        ])
        .arg(dir.path())
        .env_clear()
        .env("HOME", dir.path())
        .env("AWS_CONFIG_FILE", dir.path().join("none"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(78));
    assert!(stderr(&o).contains("no region"), "{}", stderr(&o));
}

#[test]
fn an_unusable_state_dir_is_a_clear_error() {
    let o = hostrole(&[
        "serve",
        "--issuer",
        "local",
        "--state-dir",
        "/dev/null/state",
    ]);
    assert_eq!(o.status.code(), Some(73));
    let err = stderr(&o);
    assert!(err.contains("state directory /dev/null/state"), "{err}");
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = temp_dir();
    let o = hostrole(&[
        "serve",
        "--issuer",
        "local",
        "--listen",
        &addr,
        "--state-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(69));
    assert!(
        stderr(&o).contains(&format!("cannot listen on {addr} (--listen): ")),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_local_issuer_serves_realistic_credentials_for_the_role() {
    let dir = temp_dir();
    let d = start_demo_daemon(dir.path());
    let creds = fetch_credentials(d.addr);
    let key = creds["AccessKeyId"].as_str().unwrap();
    assert!(key.starts_with("ASIA") && key.len() == 20, "{key}");
    assert_eq!(creds["SecretAccessKey"].as_str().unwrap().len(), 40);
    assert_eq!(creds["Code"], "Success");
    assert_eq!(creds["Type"], "AWS-HMAC");
    // IMDSv1 is disabled by default.
    let v1 = request(
        d.addr,
        "GET",
        "/latest/meta-data/iam/security-credentials/",
        &[],
    );
    assert_eq!(v1.status, 401);
    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn imds_v1_can_be_allowed() {
    let dir = temp_dir();
    let d = start_daemon(
        dir.path(),
        &[
            "--issuer",
            "local",
            "--role-arn",
            ROLE_ARN,
            "--imds-v1",
            "allowed",
        ],
    );
    let v1 = request(
        d.addr,
        "GET",
        "/latest/meta-data/iam/security-credentials/",
        &[],
    );
    assert_eq!((v1.status, v1.body.as_str()), (200, "demo"));
}

#[test]
fn a_token_stays_valid_across_a_restart() {
    let dir = temp_dir();
    let args = LOCAL_DEMO;
    let d = start_daemon(dir.path(), &args);
    let t = token(d.addr, 21_600);
    assert_eq!(get(d.addr, "/latest/meta-data/instance-id", &t).status, 200);
    let instance_id = get(d.addr, "/latest/meta-data/instance-id", &t).body;
    let d = d.restart(dir.path(), &args);
    let r = get(d.addr, "/latest/meta-data/iam/security-credentials/", &t);
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "demo"),
        "old token after restart"
    );
    assert_eq!(
        get(d.addr, "/latest/meta-data/instance-id", &t).body,
        instance_id
    );
    // A different state directory has a different key: the token is refused.
    let other = temp_dir();
    let d2 = start_daemon(other.path(), &args);
    assert_eq!(
        get(d2.addr, "/latest/meta-data/instance-id", &t).status,
        401
    );
}

#[test]
fn the_token_key_is_private_to_the_daemon() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    let d = start_daemon(dir.path(), &["--issuer", "local"]);
    let mode = std::fs::metadata(dir.path().join("token.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(d);
}

#[test]
fn sigterm_exits_cleanly_and_logs_no_secret() {
    let dir = temp_dir();
    let d = start_daemon(
        dir.path(),
        &[
            "--issuer",
            "local",
            "--role-arn",
            ROLE_ARN,
            "--session-duration",
            "60",
        ],
    );
    let creds = fetch_credentials(d.addr);
    let secret = creds["SecretAccessKey"].as_str().unwrap().to_owned();
    let token = creds["Token"].as_str().unwrap().to_owned();
    // A 60 s session refreshes at half-life: wait for one refresh.
    assert!(d.wait_for_log("credentials refreshed", Duration::from_secs(5)));
    let (status, log) = d.stop();
    assert!(status.success(), "{status:?}");
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        log.contains(creds["AccessKeyId"].as_str().unwrap()),
        "key id is logged"
    );
    assert!(!log.contains(&secret), "secret key in the log");
    assert!(!log.contains(&token[..40]), "session token in the log");
}

#[test]
fn sighup_applies_a_changed_role_and_keeps_running_on_a_bad_config() {
    let dir = temp_dir();
    let cfg = path_in(dir.path(), "hostrole.toml");
    let write_role = |name: &str| {
        std::fs::write(
            &cfg,
            format!("issuer = \"local\"\nrole-arn = \"arn:aws:iam::123456789012:role/{name}\"\n"),
        )
        .unwrap()
    };
    write_role("first");
    let d = start_daemon(dir.path(), &["--config", cfg.to_str().unwrap()]);
    let t = token(d.addr, 60);
    let listing = |d: &Daemon| get(d.addr, "/latest/meta-data/iam/security-credentials/", &t).body;
    assert_eq!(listing(&d), "first");
    let hup = |d: &Daemon| {
        let pid = nix::unistd::Pid::from_raw(d.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    };
    write_role("second");
    hup(&d);
    assert!(
        d.wait_for_log("configuration reloaded", Duration::from_secs(5)),
        "{}",
        d.log()
    );
    assert_eq!(listing(&d), "second");
    std::fs::write(&cfg, "issuer = \"local\"\nrole = \"x\"\n").unwrap();
    hup(&d);
    assert!(d.wait_for_log("configuration reload failed", Duration::from_secs(5)));
    assert!(d.log().contains("unknown field `role`"));
    assert_eq!(listing(&d), "second", "the running configuration is kept");
}

#[test]
fn the_example_config_documents_every_key_and_parses_when_uncommented() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/hostrole.toml"
    ))
    .unwrap();
    // As shipped (all commented) it is valid, in an environment with a
    // region and base credentials for the default issuer, sts.
    let dir = temp_dir();
    let check = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hostrole"))
            .args(["serve", "--check-config"])
            .args(args)
            .env_clear()
            .env("HOME", dir.path())
            .env("AWS_REGION", "eu-west-1")
            .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .expect("run hostrole")
    };
    let shipped = path_in(dir.path(), "shipped.toml");
    std::fs::write(&shipped, &text).unwrap();
    let o = check(&[
        "--config",
        shipped.to_str().unwrap(),
        "--state-dir",
        "/tmp/x",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Every documented key is a real key: uncomment all (but the
    // environment-specific ones) and it still parses.
    let skip = ["admin-group", "revoke-sessions", "session-policy"];
    let uncommented: String = text
        .lines()
        .filter_map(|l| {
            l.strip_prefix('#')
                .filter(|r| r.contains(" = ") && !r.starts_with(' '))
        })
        .filter(|l| !skip.iter().any(|k| l.starts_with(k)))
        .map(|l| l.replace("\"...\"", "\"ext-1\"") + "\n")
        .collect();
    for key in [
        "issuer",
        "role-arn",
        "external-id",
        "session-name",
        "source-identity",
        "session-tags",
        "transitive-tag-keys",
        "policy-arns",
        "session-duration-seconds",
        "region",
        "availability-zone",
        "sts-endpoint",
        "imds-v1",
        "listen",
        "state-dir",
        "control-socket",
        "iam-endpoint",
    ] {
        assert!(
            uncommented.contains(&format!("{key} = ")),
            "{key} is not documented"
        );
    }
    let all = path_in(dir.path(), "all.toml");
    std::fs::write(&all, &uncommented).unwrap();
    let o = check(&["--config", all.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}\n{uncommented}", stderr(&o));
    assert!(text.contains("#admin-group = ") && text.contains("#revoke-sessions = "));
    assert!(text.contains("#session-policy = \"/"));
}

#[test]
fn a_silent_sts_does_not_hold_up_serving() {
    // An STS endpoint that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let dir = temp_dir();
    let started = std::time::Instant::now();
    let d = start_daemon_with_base_credentials(dir.path(), &sts_args(&endpoint, true));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "serving without waiting on STS"
    );
    // Tokens are served at once; credentials are not (there are none yet).
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
    drop(silent);
}

/// What happened to one request sent while the daemon was stopping.
#[derive(Debug, PartialEq)]
enum Outcome {
    Answered,
    Refused,
    Lost(String),
}

/// One token request; the outcome, and when its connection was established.
fn one_request(addr: std::net::SocketAddr) -> (Outcome, Instant) {
    let o = one_request_inner(addr);
    (o.0, o.1.unwrap_or_else(Instant::now))
}

fn one_request_inner(addr: std::net::SocketAddr) -> (Outcome, Option<Instant>) {
    let mut s = match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return (Outcome::Refused, None)
        }
        Err(e) => return (Outcome::Lost(format!("connect: {e}")), None),
    };
    let connected = Some(Instant::now());
    (answer(&mut s, addr), connected)
}

fn answer(s: &mut std::net::TcpStream, addr: std::net::SocketAddr) -> Outcome {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!(
        "PUT /latest/api/token HTTP/1.1\r\nHost: {addr}\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\nConnection: close\r\n\r\n"
    );
    if let Err(e) = s.write_all(req.as_bytes()) {
        return Outcome::Lost(format!("write: {e}"));
    }
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) if buf.starts_with(b"HTTP/1.1 200") => Outcome::Answered,
        Ok(_) => Outcome::Lost(format!("answer: {:?}", String::from_utf8_lossy(&buf))),
        Err(e) => Outcome::Lost(format!("read: {e}")),
    }
}

#[test]
fn sigterm_under_load_loses_no_accepted_request_and_the_next_start_serves_at_once() {
    let dir = temp_dir();
    let d = start_demo_daemon(dir.path());
    let addr = d.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(20);
                // Until the daemon refuses connections (and a little after).
                while Instant::now() < deadline {
                    let (o, connected) = one_request(addr);
                    let refused = o == Outcome::Refused;
                    seen.push((o, connected));
                    if refused && stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    // Every connection established before this moment reached the daemon
    // before it was told to stop: each must be answered. Later ones may be
    // answered or refused.
    let sigterm_at = Instant::now();
    let (status, log) = d.stop();
    assert!(status.success(), "{status:?}\n{log}");
    let outcomes: Vec<(Outcome, Instant)> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let answered = outcomes
        .iter()
        .filter(|(o, _)| *o == Outcome::Answered)
        .count();
    let after = outcomes.iter().filter(|(_, t)| *t > sigterm_at).count();
    let lost: Vec<_> = outcomes
        .iter()
        .filter(|(o, t)| matches!(o, Outcome::Lost(_)) && *t < sigterm_at)
        .collect();
    eprintln!(
        "{} requests, {answered} answered, {after} connected after SIGTERM",
        outcomes.len()
    );
    assert!(answered > 100, "only {answered} answered");
    assert!(
        lost.is_empty(),
        "{} of {} lost: {:?}",
        lost.len(),
        outcomes.len(),
        &lost[..lost.len().min(5)]
    );

    // The next start serves the persisted role without being told it.
    let started = Instant::now();
    let d = start_daemon(
        dir.path(),
        &["--issuer", "local", "--listen", &addr.to_string()],
    );
    let creds = fetch_credentials(d.addr);
    let took = started.elapsed();
    assert!(creds["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    eprintln!("restart to first credentials: {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// A daemon whose standard error nobody reads any more (the pipe's reader
/// died, as a test harness or a supervisor may) still stops on SIGTERM:
/// a log line it cannot write is dropped, not a panic in the task that
/// stops it.
#[test]
fn sigterm_stops_a_daemon_whose_stderr_reader_is_gone() {
    let dir = temp_dir();
    let mut child = serve_command(&[], dir.path(), &LOCAL_DEMO)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    // Wait until it serves: its first lines are written.
    let mut first = [0u8; 64];
    std::io::Read::read(&mut stderr, &mut first).unwrap();
    wait_status(dir.path(), "demo", Duration::from_secs(20));
    drop(stderr);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            return;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running 15 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

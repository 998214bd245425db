//! The daemon against a programmable STS on loopback, through the real
//! aws-sdk-sts: server errors, throttling, access denied, malformed XML, a
//! reset connection, and an STS whose clock disagrees with the host's. Each
//! fault is classified, never yields an expired or missing-secret credential,
//! and service resumes promptly once STS answers again. The fake records
//! each request's form, so that what reaches STS (the session attributes)
//! is checked as STS would read it.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use support::*;

/// How the fake STS answers AssumeRole.
#[derive(Debug, Clone)]
enum Mode {
    /// Credentials expiring this far from now (negative: already expired).
    Ok { expires_in_s: i64 },
    /// An STS error document.
    Error { status: u16, code: &'static str },
    /// 200 with a body that is not the expected XML.
    Malformed,
    /// The connection is reset without an answer.
    Reset,
    /// Credentials for 15 minutes, after this long.
    Slow { delay_ms: u64 },
    /// 400 Throttling with this `Retry-After` header.
    Throttled { retry_after: &'static str },
}

/// One request's form fields, decoded, in order.
type Form = Vec<(String, String)>;

struct FakeSts {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    calls: Arc<AtomicUsize>,
    /// Every request's form, in arrival order.
    requests: Arc<Mutex<Vec<Form>>>,
    /// Most calls being answered at once, ever.
    max_in_flight: Arc<AtomicUsize>,
}

impl FakeSts {
    fn start(mode: Mode) -> FakeSts {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(Mutex::new(mode));
        let calls = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (m, c, mx, r) = (
            mode.clone(),
            calls.clone(),
            max_in_flight.clone(),
            requests.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (m, c, mx, inf, r) = (
                    m.clone(),
                    c.clone(),
                    mx.clone(),
                    in_flight.clone(),
                    r.clone(),
                );
                std::thread::spawn(move || serve(stream, &m, &c, &inf, &mx, &r));
            }
        });
        FakeSts {
            addr,
            mode,
            calls,
            requests,
            max_in_flight,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The form of the first request.
    fn first_request(&self) -> Form {
        self.requests
            .lock()
            .unwrap()
            .first()
            .cloned()
            .expect("STS was called")
    }
}

/// `application/x-www-form-urlencoded` text decoded into its fields.
fn decode_form(body: &[u8]) -> Form {
    fn unescape(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).expect("a %XX escape"));
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).expect("UTF-8 form values")
    }
    std::str::from_utf8(body)
        .expect("a text form")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (unescape(k), unescape(v))
        })
        .collect()
}

/// The value of `key` in `form`, if sent.
fn field<'a>(form: &'a Form, key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn serve(
    stream: TcpStream,
    mode: &Mutex<Mode>,
    calls: &AtomicUsize,
    in_flight: &AtomicUsize,
    max_in_flight: &AtomicUsize,
    requests: &Mutex<Vec<Form>>,
) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        // One request: head, then Content-Length bytes.
        let mut len = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        requests.lock().unwrap().push(decode_form(&body));
        let n = calls.fetch_add(1, Ordering::SeqCst);
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        max_in_flight.fetch_max(now, Ordering::SeqCst);
        let mut mode = mode.lock().unwrap().clone();
        if let Mode::Slow { delay_ms } = mode {
            std::thread::sleep(Duration::from_millis(delay_ms));
            mode = Mode::Ok { expires_in_s: 900 };
        }
        in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut extra = String::new();
        if let Mode::Throttled { retry_after } = mode {
            extra = format!("Retry-After: {retry_after}\r\n");
            mode = Mode::Error {
                status: 400,
                code: "Throttling",
            };
        }
        let (status, xml) = match mode {
            Mode::Slow { .. } | Mode::Throttled { .. } => unreachable!("replaced above"),
            Mode::Ok { expires_in_s } => {
                let exp = if expires_in_s >= 0 {
                    SystemTime::now() + Duration::from_secs(expires_in_s as u64)
                } else {
                    SystemTime::now() - Duration::from_secs(expires_in_s.unsigned_abs())
                };
                let exp = humantime::format_rfc3339_seconds(exp);
                (200, format!(
                    "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>\
                     <Credentials><AccessKeyId>ASIAFAKESTS{n:09}</AccessKeyId>\
                     <SecretAccessKey>fakeSecretKey{n:027}</SecretAccessKey>\
                     <SessionToken>FakeSessionToken{n:040}</SessionToken>\
                     <Expiration>{exp}</Expiration></Credentials>\
                     <AssumedRoleUser><AssumedRoleId>AROAFAKE:s</AssumedRoleId>\
                     <Arn>arn:aws:sts::123456789012:assumed-role/demo/s</Arn></AssumedRoleUser>\
                     </AssumeRoleResult><ResponseMetadata><RequestId>r{n}</RequestId></ResponseMetadata></AssumeRoleResponse>"
                ))
            }
            Mode::Error { status, code } => (status, format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
                 <Code>{code}</Code><Message>injected {code}</Message></Error><RequestId>r{n}</RequestId></ErrorResponse>"
            )),
            Mode::Malformed => (200, "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>".to_owned()),
            Mode::Reset => {
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                return;
            }
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: text/xml\r\n{extra}Content-Length: {}\r\n\r\n",
            xml.len()
        );
        if stream.write_all(head.as_bytes()).is_err() || stream.write_all(xml.as_bytes()).is_err() {
            return;
        }
    }
}

fn daemon_on(sts: &FakeSts, dir: &std::path::Path) -> Daemon {
    start_daemon_with_base_credentials(
        dir,
        &[
            "--issuer",
            "sts",
            "--sts-endpoint",
            &sts.url(),
            "--region",
            "us-east-1",
            "--role-arn",
            ROLE_ARN,
            "--session-duration",
            "900",
        ],
    )
}

/// The credential document's status code (404 when nothing is served).
fn credentials_status(addr: SocketAddr) -> u16 {
    let t = token(addr, 60);
    get(addr, "/latest/meta-data/iam/security-credentials/demo", &t).status
}

/// The first "refresh failed" log line, waiting for one at most 15 s.
fn failure_line(d: &Daemon) -> String {
    let is_failure =
        |l: &&str| l.contains("cannot assume the role") || l.contains("credential refresh failed");
    let started = Instant::now();
    loop {
        if let Some(line) = d.log().lines().find(is_failure) {
            return line.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no failure logged:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn retry_in(line: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["fields"]["retry_in_s"].as_u64().unwrap()
}

/// Waits until credentials are served; returns how long that took.
fn until_served(d: &Daemon, limit: Duration) -> Duration {
    let started = Instant::now();
    while credentials_status(d.addr) != 200 {
        assert!(
            started.elapsed() < limit,
            "not served again within {limit:?}:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

/// A transient fault: nothing served while it lasts, a retry within 2 s,
/// served again at once when STS answers.
fn transient(mode: Mode, expect_in_message: &str) {
    let sts = FakeSts::start(mode);
    let dir = temp_dir();
    let d = daemon_on(&sts, dir.path());
    let line = failure_line(&d);
    assert!(line.contains("\"kind\":\"Transient\""), "{line}");
    assert!(line.contains(expect_in_message), "{line}");
    assert!(retry_in(&line) <= 2, "{line}");
    assert_eq!(credentials_status(d.addr), 404);
    sts.set(Mode::Ok { expires_in_s: 900 });
    until_served(&d, Duration::from_secs(5));
    let creds = fetch_credentials(d.addr);
    assert!(creds["AccessKeyId"]
        .as_str()
        .unwrap()
        .starts_with("ASIAFAKESTS"));
}

#[test]
fn a_server_error_is_transient_and_service_resumes_within_seconds() {
    transient(
        Mode::Error {
            status: 500,
            code: "InternalFailure",
        },
        "InternalFailure",
    );
}

#[test]
fn an_unavailable_sts_is_transient() {
    transient(
        Mode::Error {
            status: 503,
            code: "ServiceUnavailable",
        },
        "ServiceUnavailable",
    );
}

#[test]
fn malformed_xml_is_transient_and_never_served() {
    transient(Mode::Malformed, "malformed");
}

#[test]
fn a_reset_connection_is_transient() {
    transient(Mode::Reset, "cannot reach STS at");
}

#[test]
fn credentials_already_expired_by_the_hosts_clock_are_refused_and_retried() {
    // STS's clock (or the host's) is off by an hour.
    transient(
        Mode::Ok {
            expires_in_s: -3600,
        },
        "expired",
    );
}

#[test]
fn throttling_backs_off_for_seconds_not_milliseconds() {
    let sts = FakeSts::start(Mode::Error {
        status: 400,
        code: "Throttling",
    });
    let dir = temp_dir();
    let d = daemon_on(&sts, dir.path());
    let line = failure_line(&d);
    assert!(line.contains("\"kind\":\"Throttled\""), "{line}");
    assert!((5..=10).contains(&retry_in(&line)), "{line}");
    // Over the next 3 s no further call is made.
    let calls = sts.calls();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sts.calls(), calls, "retried within the throttling back-off");
    sts.set(Mode::Ok { expires_in_s: 900 });
    until_served(&d, Duration::from_secs(12));
}

#[test]
fn access_denied_withdraws_nothing_it_never_had_and_retries_slowly() {
    let sts = FakeSts::start(Mode::Error {
        status: 403,
        code: "AccessDenied",
    });
    let dir = temp_dir();
    let d = daemon_on(&sts, dir.path());
    let line = failure_line(&d);
    assert!(line.contains("\"kind\":\"Fatal\""), "{line}");
    assert!(line.contains("AccessDenied"), "{line}");
    assert!(retry_in(&line) >= 150, "{line}");
    assert_eq!(credentials_status(d.addr), 404);
    let calls = sts.calls();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sts.calls(), calls);
    // `status` says why nothing is served.
    let out = client(dir.path(), &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["serving"], false, "{status}");
    assert!(status["last-error"]
        .as_str()
        .unwrap()
        .contains("AccessDenied"));
}

#[test]
fn base_credentials_rejected_by_sts_keep_the_last_credentials_served_and_are_retried_promptly() {
    // Credentials for 20 s: the refresh comes 8 to 10 s after the first fetch.
    let sts = FakeSts::start(Mode::Ok { expires_in_s: 20 });
    let dir = temp_dir();
    let d = daemon_on(&sts, dir.path());
    until_served(&d, Duration::from_secs(5));
    let served = fetch_credentials(d.addr);
    // The host's base keys were rotated away, or its clock broke the signature.
    sts.set(Mode::Error {
        status: 403,
        code: "InvalidClientTokenId",
    });
    let line = failure_line(&d);
    let why = "base credentials rejected by STS: InvalidClientTokenId";
    assert!(
        line.contains(why) && line.contains("BaseCredentialsRejected"),
        "{line}"
    );
    assert!(retry_in(&line) <= 2, "{line}");
    // The role was not refused: its unexpired credentials are still served...
    let still = fetch_credentials(d.addr);
    assert_eq!(still["AccessKeyId"], served["AccessKeyId"]);
    let out = client(dir.path(), &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["serving"], true, "{status}");
    assert!(
        status["last-error"].as_str().unwrap().contains(why),
        "{status}"
    );
    // ...and STS is asked again within the prompt back-off, not minutes later.
    let calls = sts.calls();
    let asked = Instant::now();
    while sts.calls() == calls {
        assert!(
            asked.elapsed() < Duration::from_secs(4),
            "no retry within 4 s:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_slow_sts_holds_up_no_request_and_never_has_two_calls_in_flight() {
    let sts = FakeSts::start(Mode::Slow { delay_ms: 3000 });
    let dir = temp_dir();
    let d = daemon_on(&sts, dir.path());
    let addr = d.addr;
    // 200 concurrent callers while the first AssumeRole takes 3 s: each is
    // answered at once (404: nothing to serve yet), none waits for STS.
    let callers: Vec<_> = (0..200)
        .map(|_| {
            std::thread::spawn(move || {
                let started = Instant::now();
                let status = credentials_status(addr);
                (status, started.elapsed())
            })
        })
        .collect();
    for c in callers {
        let (status, took) = c.join().unwrap();
        assert!(status == 404 || status == 200, "HTTP {status}");
        assert!(took < Duration::from_secs(2), "a request waited {took:?}");
    }
    until_served(&d, Duration::from_secs(10));
    assert_eq!(sts.max_in_flight.load(Ordering::SeqCst), 1);
    assert_eq!(sts.calls(), 1, "one AssumeRole for the first credentials");
}

#[test]
fn a_restart_serves_the_same_key_with_exactly_one_assume_role_across_both_runs() {
    let sts = FakeSts::start(Mode::Ok { expires_in_s: 3600 });
    let dir = temp_dir();
    let d = daemon_on(&sts, dir.path());
    let first = wait_served(&d, Duration::from_secs(10));
    let kept = dir.path().join("credentials.json");
    let written = Instant::now();
    while !kept.exists() && written.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&kept).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");

    let d = daemon_on(&sts, dir.path());
    let again = wait_served(&d, Duration::from_secs(10));
    assert_eq!(again["AccessKeyId"], first["AccessKeyId"]);
    assert_eq!(again["Token"], first["Token"]);
    assert_eq!(again["Expiration"], first["Expiration"]);
    assert_eq!(sts.calls(), 1, "the restart called STS:\n{}", d.log());
    assert!(d
        .log()
        .contains("serving the credentials kept from the last run"));

    // Removing the role removes the kept copy: the next start serves nothing.
    let out = client(dir.path(), &["disassociate"]);
    assert!(out.status.success(), "{out:?}");
    let removed = Instant::now();
    while kept.exists() && removed.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!kept.exists(), "kept credentials outlived the role");
    // A start with the role configured again gets new credentials from
    // STS, not the removed ones.
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    let d = daemon_on(&sts, dir.path());
    let fresh = wait_served(&d, Duration::from_secs(10));
    assert_ne!(fresh["AccessKeyId"], first["AccessKeyId"]);
    assert_eq!(sts.calls(), 2);
}

#[test]
fn with_persist_credentials_false_nothing_is_kept_and_a_restart_calls_sts() {
    let sts = FakeSts::start(Mode::Ok { expires_in_s: 3600 });
    let dir = temp_dir();
    let cfg = dir.path().join("hostrole.toml");
    std::fs::write(&cfg, "persist-credentials = false\n").unwrap();
    let config = cfg.display().to_string();
    let start = || {
        start_daemon_with_base_credentials(
            dir.path(),
            &[&sts_args(&sts.url(), true)[..], &["--config", &config]].concat(),
        )
    };
    let d = start();
    let first = wait_served(&d, Duration::from_secs(10));
    assert!(!dir.path().join("credentials.json").exists());
    drop(d.stop());
    let d = start();
    let again = wait_served(&d, Duration::from_secs(10));
    assert_ne!(again["AccessKeyId"], first["AccessKeyId"]);
    assert_eq!(sts.calls(), 2);
}

#[test]
fn a_retry_after_from_sts_is_obeyed() {
    let sts = FakeSts::start(Mode::Throttled { retry_after: "37" });
    let dir = temp_dir();
    let d = daemon_on(&sts, dir.path());
    let line = failure_line(&d);
    assert!(line.contains("\"kind\":\"Throttled\""), "{line}");
    assert!(line.contains("\"retry_after_s\":37"), "{line}");
    // The backoff alone would retry within 10 s.
    assert_eq!(retry_in(&line), 37, "{line}");
}

/// A config file setting every session attribute, with placeholders, and
/// the policy file it names.
fn attributes_config(dir: &std::path::Path) -> String {
    let policy = dir.join("policy.json");
    std::fs::write(
        &policy,
        "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [{\"Effect\": \"Allow\", \"Action\": \"s3:GetObject\", \"Resource\": \"arn:aws:s3:::logs/*\"}]\n}\n",
    )
    .unwrap();
    let cfg = dir.join("hostrole.toml");
    std::fs::write(
        &cfg,
        format!(
            "source-identity = \"hostrole-{{instance-id}}\"\n\
             transitive-tag-keys = [\"host\"]\n\
             session-policy = \"{}\"\n\
             policy-arns = [\"arn:aws:iam::aws:policy/ReadOnlyAccess\", \"arn:aws:iam::123456789012:policy/team/logs\"]\n\
             [session-tags]\n\
             host = \"{{hostname}}\"\n\
             instance = \"{{instance-id}}\"\n\
             team = \"payments @ web/1\"\n",
            policy.display()
        ),
    )
    .unwrap();
    cfg.display().to_string()
}

#[test]
fn every_session_attribute_reaches_sts_expanded() {
    let sts = FakeSts::start(Mode::Ok { expires_in_s: 3600 });
    let dir = temp_dir();
    let config = attributes_config(dir.path());
    let d = start_daemon_with_base_credentials(
        dir.path(),
        &[&sts_args(&sts.url(), true)[..], &["--config", &config]].concat(),
    );
    wait_served(&d, Duration::from_secs(10));
    let t = token(d.addr, 60);
    let instance_id = get(d.addr, "/latest/meta-data/instance-id", &t).body;
    assert!(instance_id.starts_with("i-"), "{instance_id}");
    let hostname = nix::unistd::gethostname().unwrap().into_string().unwrap();

    let form = sts.first_request();
    let expected = [
        ("Action", "AssumeRole".to_owned()),
        ("RoleArn", ROLE_ARN.to_owned()),
        ("SourceIdentity", format!("hostrole-{instance_id}")),
        ("Tags.member.1.Key", "host".to_owned()),
        ("Tags.member.1.Value", hostname),
        ("Tags.member.2.Key", "instance".to_owned()),
        ("Tags.member.2.Value", instance_id.clone()),
        ("Tags.member.3.Key", "team".to_owned()),
        ("Tags.member.3.Value", "payments @ web/1".to_owned()),
        ("TransitiveTagKeys.member.1", "host".to_owned()),
        (
            "Policy",
            "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"s3:GetObject\",\"Resource\":\"arn:aws:s3:::logs/*\"}]}".to_owned(),
        ),
        (
            "PolicyArns.member.1.arn",
            "arn:aws:iam::aws:policy/ReadOnlyAccess".to_owned(),
        ),
        (
            "PolicyArns.member.2.arn",
            "arn:aws:iam::123456789012:policy/team/logs".to_owned(),
        ),
    ];
    for (key, value) in &expected {
        assert_eq!(field(&form, key), Some(value.as_str()), "{key} in {form:?}");
    }
    for absent in [
        "Tags.member.4.Key",
        "TransitiveTagKeys.member.2",
        "PolicyArns.member.3.arn",
    ] {
        assert_eq!(field(&form, absent), None, "{absent} in {form:?}");
    }
}

#[test]
fn without_session_attributes_none_of_their_fields_is_sent() {
    let sts = FakeSts::start(Mode::Ok { expires_in_s: 3600 });
    let dir = temp_dir();
    let d = daemon_on(&sts, dir.path());
    wait_served(&d, Duration::from_secs(10));
    let form = sts.first_request();
    assert_eq!(field(&form, "Action"), Some("AssumeRole"), "{form:?}");
    assert_eq!(field(&form, "RoleArn"), Some(ROLE_ARN), "{form:?}");
    let sent: Vec<&str> = form
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| {
            *k == "SourceIdentity"
                || *k == "Policy"
                || k.starts_with("Tags")
                || k.starts_with("TransitiveTagKeys")
                || k.starts_with("PolicyArns")
        })
        .collect();
    assert!(sent.is_empty(), "sent {sent:?} in {form:?}");
}

/// A daemon with every session attribute set, against an STS that
/// refuses with `code`: the fake, the state directory, the daemon and its
/// first failure line.
fn refused_with_attributes(
    status: u16,
    code: &'static str,
) -> (FakeSts, tempfile::TempDir, Daemon, String) {
    let sts = FakeSts::start(Mode::Error { status, code });
    let dir = temp_dir();
    let config = attributes_config(dir.path());
    let d = start_daemon_with_base_credentials(
        dir.path(),
        &[&sts_args(&sts.url(), true)[..], &["--config", &config]].concat(),
    );
    let line = failure_line(&d);
    (sts, dir, d, line)
}

#[test]
fn a_packed_policy_too_large_keeps_stss_message_and_names_the_keys_to_shorten() {
    let (_sts, dir, _d, line) = refused_with_attributes(400, "PackedPolicyTooLarge");
    assert!(line.contains("\"kind\":\"Fatal\""), "{line}");
    let status = status_json(dir.path());
    let cause = status["last-error"].as_str().unwrap();
    assert!(
        cause.contains("PackedPolicyTooLarge: injected PackedPolicyTooLarge; "),
        "{cause}"
    );
    for key in ["session-tags", "session-policy", "policy-arns"] {
        assert!(cause.contains(key), "{cause}");
    }
}

#[test]
fn access_denied_with_tags_and_a_source_identity_names_the_trust_policys_actions() {
    let (_sts, _dir, _d, line) = refused_with_attributes(403, "AccessDenied");
    assert!(
        line.contains("must also allow sts:TagSession and sts:SetSourceIdentity"),
        "{line}"
    );
}

#[test]
fn a_restart_with_other_session_attributes_calls_sts_instead_of_serving_the_kept_credentials() {
    let sts = FakeSts::start(Mode::Ok { expires_in_s: 3600 });
    let dir = temp_dir();
    let config = attributes_config(dir.path());
    let url = sts.url();
    let args = [&sts_args(&url, true)[..], &["--config", &config]].concat();
    let d = start_daemon_with_base_credentials(dir.path(), &args);
    let first = wait_served(&d, Duration::from_secs(10));
    let kept = dir.path().join("credentials.json");
    let written = Instant::now();
    while !kept.exists() && written.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(d.stop());
    // The same attributes: the kept credentials, no call.
    let d = start_daemon_with_base_credentials(dir.path(), &args);
    let again = wait_served(&d, Duration::from_secs(10));
    assert_eq!(again["AccessKeyId"], first["AccessKeyId"]);
    assert_eq!(sts.calls(), 1, "{}", d.log());
    drop(d.stop());
    // A narrower session: new credentials carrying it.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\"arn:aws:iam::aws:policy/ReadOnlyAccess\", ", ""),
    )
    .unwrap();
    let d = start_daemon_with_base_credentials(dir.path(), &args);
    let fresh = wait_served(&d, Duration::from_secs(10));
    assert_ne!(fresh["AccessKeyId"], first["AccessKeyId"]);
    assert_eq!(sts.calls(), 2, "{}", d.log());
    let form = sts.requests.lock().unwrap()[1].clone();
    assert_eq!(
        field(&form, "PolicyArns.member.1.arn"),
        Some("arn:aws:iam::123456789012:policy/team/logs")
    );
    assert_eq!(field(&form, "PolicyArns.member.2.arn"), None);
}

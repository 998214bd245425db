//! What a new user sees when something is wrong: one short cause, printed
//! once, that names the thing to fix, and never a secret.

mod support;

use std::time::{Duration, Instant};

use support::*;

/// `hostrole status --json` once its last error is set (at most 10 s).
fn last_error(dir: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = client(dir, &["status", "--json"]);
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(e) = s["last-error"].as_str() {
            return e.to_owned();
        }
        assert!(Instant::now() < deadline, "no last error: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_unreachable_sts_is_one_short_cause_in_status_and_the_log() {
    // A port nobody listens on: the connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = temp_dir();
    let d = start_daemon_with_base_credentials(
        dir.path(),
        &[
            "--issuer",
            "sts",
            "--region",
            "us-east-1",
            "--sts-endpoint",
            &endpoint,
            "--role-arn",
            ROLE_ARN,
        ],
    );
    let want = format!("cannot reach STS at {endpoint}: connection refused");
    assert_eq!(last_error(dir.path()), want);
    let text = String::from_utf8_lossy(&client(dir.path(), &["status"]).stdout).into_owned();
    assert!(
        text.contains(&format!("last error:      {want}\n")),
        "{text}"
    );
    assert!(d.wait_for_log(&want, Duration::from_secs(5)), "{}", d.log());
    for dump in ["DispatchFailure", "ConnectorError", "dispatch failure"] {
        assert!(!d.log().contains(dump), "{dump} in:\n{}", d.log());
    }
}

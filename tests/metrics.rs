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

#[test]
fn metrics_parse_with_prometheus_client_and_count_what_happened() {
    let dir = temp_dir();
    let d = start_daemon(
        dir.path(),
        &[
            "--issuer",
            "local",
            "--role-arn",
            ROLE_ARN,
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let metrics_addr = d.logged_addr("serving metrics");

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

//! End to end against a real moto server: the daemon assumes a role at
//! moto's STS, and the keys it serves work for a real call.
//!
//! `moto_server` comes from `HOSTROLE_MOTO_SERVER` (set by scripts/test,
//! which installs it) or from PATH. Without it these tests fail: they are
//! never skipped.

mod support;

use std::time::Duration;

use support::moto::*;
use support::*;

const TEST_KEY: &str = "testing";

async fn create_role(moto: &Moto, name: &str) {
    let iam = aws_sdk_iam::Client::new(&static_config(moto, TEST_KEY, TEST_KEY, None));
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"}]}"#;
    iam.create_role()
        .role_name(name)
        .assume_role_policy_document(trust)
        .send()
        .await
        .expect("create the role in moto's IAM");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_assumed_at_moto_and_served_by_the_daemon_work_for_a_real_call() {
    let moto = start_moto();
    create_role(&moto, "demo").await;
    let dir = temp_dir();
    let d = start_daemon_with_base_credentials(
        dir.path(),
        &[
            "--issuer",
            "sts",
            "--sts-endpoint",
            &moto.url,
            "--region",
            "us-east-1",
            "--role-arn",
            ROLE_ARN,
            "--session-name",
            "ci-test",
        ],
    );
    assert!(
        d.wait_for_log("credentials refreshed", Duration::from_secs(20)),
        "no credentials from moto; log:\n{}",
        d.log()
    );
    let addr = d.addr;
    let creds = tokio::task::spawn_blocking(move || fetch_credentials(addr))
        .await
        .unwrap();
    let key = creds["AccessKeyId"].as_str().unwrap();
    assert_ne!(
        key, TEST_KEY,
        "served keys are the assumed role's, not the base keys"
    );
    let sts = aws_sdk_sts::Client::new(&static_config(
        &moto,
        key,
        creds["SecretAccessKey"].as_str().unwrap(),
        Some(creds["Token"].as_str().unwrap().to_owned()),
    ));
    let who = sts
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity with served keys");
    assert_eq!(
        who.arn(),
        Some("arn:aws:sts::123456789012:assumed-role/demo/ci-test"),
        "{who:?}"
    );
    // Expiry as STS set it, in the shape SDKs parse.
    let exp = creds["Expiration"].as_str().unwrap();
    assert!(exp.ends_with('Z') && exp.len() == 20, "{exp}");
}

/// A daemon assuming roles at moto with `revoke-sessions = true`, plus
/// `extra` config lines.
fn start_revoking_daemon(moto: &Moto, dir: &std::path::Path, extra: &str) -> Daemon {
    let cfg = revoking_config(moto, dir, extra);
    start_daemon_with_base_credentials(dir, &["--config", &cfg])
}

/// Writes that daemon's config file into `dir`; returns its path.
fn revoking_config(moto: &Moto, dir: &std::path::Path, extra: &str) -> String {
    let cfg = dir.join("hostrole.toml");
    std::fs::write(
        &cfg,
        format!(
            "issuer = \"sts\"\nregion = \"us-east-1\"\nsts-endpoint = \"{0}\"\niam-endpoint = \"{0}\"\nrevoke-sessions = true\n{extra}",
            moto.url
        ),
    )
    .unwrap();
    cfg.display().to_string()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_sessions_attaches_the_deny_policy_to_the_removed_role() {
    let moto = start_moto();
    create_role(&moto, "demo").await;
    let dir = temp_dir();
    let d = start_revoking_daemon(&moto, dir.path(), "");
    let state = dir.path().to_owned();
    let out = client(&state, &["associate", ROLE_ARN]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = std::time::SystemTime::now();
    let out = client(&state, &["disassociate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("warning"),
        "{stderr}"
    );

    let iam = aws_sdk_iam::Client::new(&static_config(&moto, TEST_KEY, TEST_KEY, None));
    let policy = iam
        .get_role_policy()
        .role_name("demo")
        .policy_name("AWSRevokeOlderSessions")
        .send()
        .await
        .expect("the revoke policy is on the role");
    let doc = policy.policy_document();
    let doc = if doc.starts_with('{') {
        doc.to_owned()
    } else {
        percent_decode(doc)
    };
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let st = &doc["Statement"][0];
    assert_eq!(st["Effect"], "Deny");
    assert_eq!(st["Action"][0], "*");
    assert_eq!(st["Resource"][0], "*");
    let cutoff = st["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
        .as_str()
        .unwrap();
    let cutoff = humantime::parse_rfc3339(cutoff).unwrap();
    let slack = Duration::from_secs(5);
    assert!(cutoff + slack >= before && cutoff <= std::time::SystemTime::now() + slack);
    assert!(d.log().contains("revoked on the AWS side"), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_revocation_still_removes_the_role_and_warns() {
    let moto = start_moto();
    // The role does not exist in moto's IAM: PutRolePolicy fails.
    let dir = temp_dir();
    let d = start_revoking_daemon(
        &moto,
        dir.path(),
        "role-arn = \"arn:aws:iam::123456789012:role/missing\"\n",
    );
    let out = client(dir.path(), &["disassociate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("could not be revoked"),
        "{stderr}"
    );
    let status = client(dir.path(), &["status", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(s["role"].is_null());
    drop(d);
}

#[test]
fn sts_without_base_credentials_says_where_it_looked() {
    let dir = temp_dir();
    let socket = dir.path().join("c.sock").display().to_string();
    let mut cmd = serve_command(
        &[],
        dir.path(),
        &[
            "--issuer",
            "sts",
            "--region",
            "us-east-1",
            "--control-socket",
            &socket,
        ],
    );
    cmd.env_clear()
        .env("HOME", dir.path())
        .env("AWS_CONFIG_FILE", dir.path().join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"));
    let (code, err) = run_until_exit(cmd, Duration::from_secs(20));
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("no base credentials"), "{err}");
    assert!(
        err.contains("environment variables") && err.contains("shared config"),
        "{err}"
    );
}

/// Every secret the daemon handled through two fetches (associate, then
/// replace) and a revocation (disassociate), at the most verbose log level.
#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_the_log_even_at_trace_level() {
    const BASE_SECRET: &str = "base-secret-6b1f0e2d9c8a7b6e5d4c3b2a1f0e9d8c7b6a5f4e";
    let moto = start_moto();
    create_role(&moto, "demo").await;
    create_role(&moto, "other").await;
    let dir = temp_dir();
    let cfg = revoking_config(&moto, dir.path(), "");
    let home = dir.path().display().to_string();
    let none = dir.path().join("none").display().to_string();
    let d = start_daemon_env(
        dir.path(),
        &["--config", &cfg],
        &[
            ("HOSTROLE_LOG", "trace"),
            ("AWS_ACCESS_KEY_ID", "AKIDBASEFORTRACETEST"),
            ("AWS_SECRET_ACCESS_KEY", BASE_SECRET),
            ("HOME", &home),
            ("AWS_CONFIG_FILE", &none),
            ("AWS_SHARED_CREDENTIALS_FILE", &none),
        ],
    );
    let state = dir.path().to_owned();
    let addr = d.addr;
    let mut secrets = vec![BASE_SECRET.to_owned()];
    let mut key_ids = Vec::new();
    for (verb, arn) in [
        ("associate", ROLE_ARN),
        ("replace", "arn:aws:iam::123456789012:role/other"),
    ] {
        let out = client(&state, &[verb, arn]);
        assert!(
            out.status.success(),
            "{verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let imds_token = tokio::task::spawn_blocking(move || token(addr, 60))
            .await
            .unwrap();
        let creds = tokio::task::spawn_blocking(move || fetch_credentials(addr))
            .await
            .unwrap();
        key_ids.push(creds["AccessKeyId"].as_str().unwrap().to_owned());
        secrets.push(imds_token);
        secrets.push(creds["SecretAccessKey"].as_str().unwrap().to_owned());
        secrets.push(creds["Token"].as_str().unwrap().to_owned());
    }
    let out = client(&state, &["disassociate"]);
    assert!(out.status.success());
    assert!(
        d.wait_for_log("revoked on the AWS side", Duration::from_secs(10)),
        "{}",
        d.log()
    );
    let (_, log) = d.stop();
    assert!(
        log.contains("\"level\":\"TRACE\""),
        "the daemon did not log at trace level"
    );
    // The log does cover those fetches: it names each key id (not secret).
    for id in &key_ids {
        assert!(log.contains(id.as_str()), "{id} is not in the log");
    }
    for secret in &secrets {
        // The whole secret, and any 16-character piece of it.
        let pieces: Vec<&str> = (0..secret.len().saturating_sub(16))
            .step_by(8)
            .map(|i| &secret[i..i + 16])
            .collect();
        for piece in std::iter::once(secret.as_str()).chain(pieces) {
            assert!(
                !log.contains(piece),
                "a secret ({}...) is in the log",
                &secret[..4]
            );
        }
    }
}

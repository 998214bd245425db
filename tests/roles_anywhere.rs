//! The Roles Anywhere issuer against a fake endpoint that verifies every
//! request with an independent implementation (Python `cryptography`):
//! certificates made by openssl, each key type and PEM form, a chain through
//! an intermediate, renewal on disk without a restart, bad files named with
//! their problem, and the endpoint's failures classified.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use support::pki::{
    self, date, FakeRolesAnywhere, Issued, KeyType, Pki, PROFILE_ARN, TRUST_ANCHOR_ARN,
};
use support::*;

/// `serve` arguments for the issuer at the fake with `cert` and `key`.
fn ra_args(fake: &FakeRolesAnywhere, cert: &Path, key: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = pki::ra_args(&fake.url, cert, key);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn start(dir: &Path, args: &[String]) -> Daemon {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    start_daemon_env(dir, &args, &[("NO_PROXY", "127.0.0.1")])
}

/// Waits for the role's credentials to be served (at most 15 s).
fn served(d: &Daemon) -> serde_json::Value {
    wait_served(d, Duration::from_secs(15))
}

#[test]
fn each_key_type_and_pem_form_gets_the_roles_credentials() {
    let dir = temp_dir();
    let pki = Pki::new(dir.path());
    let ca = pki.root("anchor", KeyType::Rsa2048);
    let fake = FakeRolesAnywhere::start(dir.path(), &[&ca.cert], &[]);
    // A serial wider than 64 bits: the Credential must carry it in decimal.
    let rsa = pki.leaf("rsa", &ca, KeyType::Rsa2048, "7F3A5B7C9D0E11223344556677");
    let p256 = pki.leaf("p256", &ca, KeyType::P256, "0B");
    let p384 = pki.leaf("p384", &ca, KeyType::P384, "0C");
    let cases = [
        (&rsa.cert, rsa.key.clone(), "AWS4-X509-RSA-SHA256"),
        (&rsa.cert, pki.traditional(&rsa.key), "AWS4-X509-RSA-SHA256"),
        (&p256.cert, p256.key.clone(), "AWS4-X509-ECDSA-SHA256"),
        (
            &p256.cert,
            pki.traditional(&p256.key),
            "AWS4-X509-ECDSA-SHA256",
        ),
        (&p384.cert, p384.key.clone(), "AWS4-X509-ECDSA-SHA256"),
        (
            &p384.cert,
            pki.traditional(&p384.key),
            "AWS4-X509-ECDSA-SHA256",
        ),
    ];
    for (i, (cert, key, alg)) in cases.iter().enumerate() {
        let state = dir.path().join(format!("state{i}"));
        std::fs::create_dir(&state).unwrap();
        let d = start(&state, &ra_args(&fake, cert, key, &[]));
        let creds = served(&d);
        let call = fake.calls().pop().unwrap();
        assert_eq!(call["outcome"], "ok", "{call}");
        assert_eq!(call["algorithm"], *alg, "{call}");
        assert_eq!(creds["AccessKeyId"], call["access_key_id"], "{call}");
        assert_eq!(call["role"], ROLE_ARN);
        let props = &call["instance_properties"];
        assert!(props["hostname"].is_string(), "{call}");
        assert!(
            props["instance-id"].as_str().unwrap().starts_with("i-"),
            "{call}"
        );
        assert_eq!(props["hostrole-version"], env!("CARGO_PKG_VERSION"));
        assert!(
            call["role_session_name"].is_null(),
            "the default name is not sent: {call}"
        );
        assert_eq!(call["duration"], 3600);
    }
    let serials: Vec<String> = fake
        .calls()
        .iter()
        .map(|c| c["serial"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        serials[0],
        u128::from_str_radix("7F3A5B7C9D0E11223344556677", 16)
            .unwrap()
            .to_string()
    );
}

#[test]
fn a_chain_through_an_intermediate_is_sent_signed_and_verified() {
    let dir = temp_dir();
    let pki = Pki::new(dir.path());
    let root = pki.root("root", KeyType::P384);
    let mid = pki.issue(
        "intermediate",
        &root,
        KeyType::Rsa2048,
        "10",
        &date(-1),
        &date(30),
        true,
    );
    let host = pki.leaf("host", &mid, KeyType::P256, "11");
    let fake = FakeRolesAnywhere::start(dir.path(), &[&root.cert], &[]);

    // The chain in its own file.
    let state = dir.path().join("a");
    std::fs::create_dir(&state).unwrap();
    let chain = mid.cert.to_str().unwrap();
    let d = start(
        &state,
        &ra_args(
            &fake,
            &host.cert,
            &host.key,
            &["--certificate-chain", chain],
        ),
    );
    served(&d);
    drop(d);

    // The chain after the certificate in one file, as certbot's fullchain.pem.
    let full = dir.path().join("fullchain.pem");
    let text =
        std::fs::read_to_string(&host.cert).unwrap() + &std::fs::read_to_string(&mid.cert).unwrap();
    std::fs::write(&full, text).unwrap();
    let state = dir.path().join("b");
    std::fs::create_dir(&state).unwrap();
    let d = start(&state, &ra_args(&fake, &full, &host.key, &[]));
    served(&d);
    drop(d);

    // Without the intermediate the endpoint cannot build the chain: refused,
    // and the role is not served.
    let state = dir.path().join("c");
    std::fs::create_dir(&state).unwrap();
    let d = start(&state, &ra_args(&fake, &host.cert, &host.key, &[]));
    wait_status(&state, "Untrusted certificate", Duration::from_secs(15));
    assert_eq!(demo_credentials(&d).status, 404);
    let calls = fake.calls();
    assert_eq!(
        calls.iter().filter(|c| c["outcome"] == "ok").count(),
        2,
        "{calls:?}"
    );
}

#[test]
fn a_certificate_renewed_on_disk_signs_the_next_session_without_a_restart() {
    let dir = temp_dir();
    let pki = Pki::new(dir.path());
    let ca = pki.root("anchor", KeyType::P256);
    let fake = FakeRolesAnywhere::start(dir.path(), &[&ca.cert], &[]);
    let old = pki.leaf("old", &ca, KeyType::P256, "0100");
    let new = pki.leaf("new", &ca, KeyType::Rsa2048, "0200");
    let cert = dir.path().join("host.pem");
    let key = dir.path().join("host.key");
    let install = |from: &Issued| {
        // As renewal tools do: write aside, then rename over.
        std::fs::copy(&from.cert, dir.path().join("tmp.pem")).unwrap();
        std::fs::copy(&from.key, dir.path().join("tmp.key")).unwrap();
        std::fs::rename(dir.path().join("tmp.pem"), &cert).unwrap();
        std::fs::rename(dir.path().join("tmp.key"), &key).unwrap();
    };
    install(&old);
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let d = start(&state, &ra_args(&fake, &cert, &key, &[]));
    served(&d);
    assert_eq!(fake.calls().last().unwrap()["serial"], "256");

    install(&new);
    let out = client(&state, &["replace", "arn:aws:iam::123456789012:role/other"]);
    assert!(out.status.success(), "{out:?}");
    let last = fake.calls().last().unwrap().clone();
    assert_eq!(last["serial"], "512", "{last}");
    assert_eq!(last["algorithm"], "AWS4-X509-RSA-SHA256");
    assert_eq!(last["outcome"], "ok");
    let status = String::from_utf8(client(&state, &["status"]).stdout).unwrap();
    assert!(
        status.contains("certificate:     serial 512, expires"),
        "{status}"
    );
}

#[test]
fn a_certificate_or_key_that_cannot_be_used_is_a_clear_error_naming_the_file() {
    let dir = temp_dir();
    let pki = Pki::new(dir.path());
    let ca = pki.root("anchor", KeyType::P256);
    let other_ca = pki.root("stranger", KeyType::P256);
    let fake = FakeRolesAnywhere::start(dir.path(), &[&ca.cert], &[]);
    let good = pki.leaf("good", &ca, KeyType::P256, "01");
    let expired = pki.issue(
        "expired",
        &ca,
        KeyType::P256,
        "02",
        &date(-30),
        &date(-1),
        false,
    );
    let future = pki.issue(
        "future",
        &ca,
        KeyType::P256,
        "03",
        &date(2),
        &date(30),
        false,
    );
    let foreign = pki.leaf("foreign", &other_ca, KeyType::P256, "04");
    let open_key = dir.path().join("open.key");
    std::fs::copy(&good.key, &open_key).unwrap();
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();

    let cases: [(&Path, &Path, &str); 7] = [
        (&expired.cert, &expired.key, "the certificate expired at"),
        (
            &future.cert,
            &future.key,
            "the certificate is not valid until",
        ),
        (
            &good.cert,
            &foreign.key,
            "the private key is not the certificate's key",
        ),
        (
            &good.cert,
            &open_key,
            "accessible by group or others (mode 0644)",
        ),
        (&missing, &good.key, "No such file or directory"),
        (&garbage, &good.key, "not a PEM file"),
        (&foreign.cert, &foreign.key, "Untrusted certificate"),
    ];
    for (i, (cert, key, problem)) in cases.iter().enumerate() {
        let state = dir.path().join(format!("s{i}"));
        std::fs::create_dir(&state).unwrap();
        let d = start(&state, &ra_args(&fake, cert, key, &[]));
        let status = wait_status(&state, problem, Duration::from_secs(15));
        if *problem != "Untrusted certificate" {
            let named = if problem.contains("private key") || problem.contains("accessible") {
                key
            } else {
                cert
            };
            assert!(status.contains(named.to_str().unwrap()), "{status}");
        }
        let r = demo_credentials(&d);
        assert_eq!(r.status, 404, "{problem}: {r:?}");
    }
    // Only the certificate from an unrelated CA reached the endpoint.
    let refused: Vec<_> = fake
        .calls()
        .into_iter()
        .filter(|c| c["outcome"] != "ok")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["claimed_serial"], "4", "{refused:?}");
}

#[test]
fn the_endpoints_failures_are_classified_and_nothing_empty_is_served() {
    let dir = temp_dir();
    let pki = Pki::new(dir.path());
    let ca = pki.root("anchor", KeyType::P256);
    let host = pki.leaf("host", &ca, KeyType::P256, "01");
    for (mode, problem) in [
        ("error", "HTTP 500 InternalServerException"),
        ("throttle", "HTTP 429 ThrottlingException"),
        ("denied", "HTTP 403 AccessDeniedException"),
        ("empty", "without usable credentials: no credential set"),
    ] {
        let sub = dir.path().join(mode);
        std::fs::create_dir(&sub).unwrap();
        let fake = FakeRolesAnywhere::start(&sub, &[&ca.cert], &["--mode", mode]);
        let state = sub.join("state");
        std::fs::create_dir(&state).unwrap();
        let d = start(&state, &ra_args(&fake, &host.cert, &host.key, &[]));
        wait_status(&state, problem, Duration::from_secs(15));
        let r = demo_credentials(&d);
        assert_eq!(r.status, 404, "{mode}: {r:?}");
        // The fake's Retry-After (41 s) is obeyed over the 5-10 s backoff.
        if mode == "throttle" {
            assert!(
                d.wait_for_log("\"retry_in_s\":41", Duration::from_secs(5)),
                "{}",
                d.log()
            );
        }
        // A transient failure is retried soon and recovers by itself.
        if mode == "error" || mode == "empty" {
            fake.set_mode("ok");
            served(&d);
        }
    }
}

/// Requests from an independent client, the PyPI package
/// `iam-rolesanywhere-session`, over HTTPS: the fake accepts a genuine one
/// and refuses one whose signature was tampered with. Then the daemon talks
/// to the same fake over HTTPS, trusting its CA through SSL_CERT_FILE.
#[test]
fn the_fake_accepts_an_independent_client_refuses_a_tampered_signature_and_serves_https() {
    let dir = temp_dir();
    let pki = Pki::new(dir.path());
    let ca = pki.root("anchor", KeyType::Rsa2048);
    let tls_ca = pki.root("tls", KeyType::P256);
    let tls = pki.server("fake", &tls_ca);
    let host = pki.leaf("host", &ca, KeyType::P256, "2A");
    let (fake, https) = FakeRolesAnywhere::start_https(dir.path(), &[&ca.cert], &tls);
    let port = https.rsplit(':').next().unwrap().to_owned();
    let script = r#"
import sys
from iam_rolesanywhere_session import IAMRolesAnywhereSession
from iam_rolesanywhere_session.exceptions import CredentialsRetrievalError
port, cert, key, tls_ca, anchor, profile, role, tamper = sys.argv[1:]
s = IAMRolesAnywhereSession(profile_arn=profile, role_arn=role, trust_anchor_arn=anchor,
    certificate=cert, private_key=key, region="eu-west-1", endpoint="127.0.0.1:" + port, verify=tls_ca)
if tamper == "yes":
    real = s._request_signer.signature
    s._request_signer.signature = lambda sts, _=None: ("0" if real(sts)[0] != "0" else "1") + real(sts)[1:]
try:
    creds = s.get_session().get_credentials().get_frozen_credentials()
    print("accepted", creds.access_key)
except CredentialsRetrievalError as e:
    print("refused", e)
"#;
    let run = |tamper: &str| {
        let out = std::process::Command::new(std::env::var("HOSTROLE_PYTHON").unwrap())
            .args(["-c", script, &port])
            .args([&host.cert, &host.key, &tls_ca.cert].map(|p| p.to_str().unwrap().to_owned()))
            .args([TRUST_ANCHOR_ARN, PROFILE_ARN, ROLE_ARN, tamper])
            .env("NO_PROXY", "127.0.0.1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let genuine = run("no");
    assert!(genuine.starts_with("accepted ASIA"), "{genuine}");
    let tampered = run("yes");
    assert!(
        tampered.contains("refused") && tampered.contains("Signature does not match"),
        "{tampered}"
    );

    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let mut args = ra_args(&fake, &host.cert, &host.key, &[]);
    let at = args.iter().position(|a| a == &fake.url).unwrap();
    args[at] = https;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let d = start_daemon_env(
        &state,
        &args,
        &[
            ("NO_PROXY", "127.0.0.1"),
            ("SSL_CERT_FILE", tls_ca.cert.to_str().unwrap()),
        ],
    );
    let creds = served(&d);
    assert_eq!(
        creds["AccessKeyId"],
        fake.calls().last().unwrap()["access_key_id"]
    );
}

/// A certificate with 13 days left is warned about at each refresh (log and
/// the days left); one with 15 days left is not.
#[test]
fn a_certificate_expiring_within_14_days_is_warned_about() {
    let dir = temp_dir();
    let pki = Pki::new(dir.path());
    let ca = pki.root("anchor", KeyType::P256);
    let fake = FakeRolesAnywhere::start(dir.path(), &[&ca.cert], &[]);
    let warning = "expires within 14 days";
    for (days, warned) in [(13, true), (15, false)] {
        let host = pki.issue(
            &format!("host{days}"),
            &ca,
            KeyType::P256,
            &format!("{days:02X}"),
            &date(-1),
            &date(days),
            false,
        );
        let state = dir.path().join(format!("state{days}"));
        std::fs::create_dir(&state).unwrap();
        let d = start(&state, &ra_args(&fake, &host.cert, &host.key, &[]));
        served(&d);
        if warned {
            assert!(
                d.wait_for_log(warning, Duration::from_secs(5)),
                "{}",
                d.log()
            );
            assert!(d.log().contains("\"days_left\":12"), "{}", d.log());
        } else {
            assert!(!d.log().contains(warning), "{}", d.log());
        }
    }
}

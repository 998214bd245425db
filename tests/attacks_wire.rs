//! Attacks on the daemon's promises, black-box: the real binary started
//! with the helpers in `support`. Requests are raw HTTP/1.1, so that shapes
//! no well-behaved client sends (absolute-form targets, repeated `Host`
//! headers, made-up API versions) reach the daemon unchanged; the start-up
//! attacks plant files in the state directory or variables in the
//! environment.

mod support;

use std::net::SocketAddr;

use support::*;

const CREDENTIALS_LIST: &str = "/latest/meta-data/iam/security-credentials/";

/// `GET target` with one `Host` line per entry of `hosts`, and the token.
fn get_with_hosts(addr: SocketAddr, target: &str, hosts: &[&str], token: &str) -> HttpResponse {
    let mut req = format!("GET {target} HTTP/1.1\r\n");
    for h in hosts {
        req.push_str(&format!("Host: {h}\r\n"));
    }
    req.push_str(&format!(
        "X-aws-ec2-metadata-token: {token}\r\nConnection: close\r\n\r\n"
    ));
    raw_request(addr, &req)
}

// --- `Host` must be an IP literal or `localhost` (DNS rebinding) ---

#[test]
fn the_host_named_in_an_absolute_request_target_must_be_an_ip_or_localhost_like_the_host_header() {
    let dir = temp_dir();
    let d = start_demo_daemon(dir.path());
    let t = token(d.addr, 60);
    let host = d.addr.to_string();
    for authority in [
        "evil.example",
        "evil.example:80",
        "169.254.169.254.nip.io",
        "user@127.0.0.1",
    ] {
        let target = format!("http://{authority}{CREDENTIALS_LIST}");
        let r = get_with_hosts(d.addr, &target, &[&host], &t);
        assert_eq!(r.status, 400, "{target}: {r:?}");
        assert!(!r.body.contains("demo"), "{target}: {r:?}");
    }
    // The same request naming this endpoint is served.
    let target = format!("http://{host}{CREDENTIALS_LIST}");
    let r = get_with_hosts(d.addr, &target, &[&host], &t);
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "demo"),
        "{target}: {r:?}"
    );
}

#[test]
fn a_request_with_two_host_headers_is_refused_whichever_comes_first() {
    let dir = temp_dir();
    let d = start_demo_daemon(dir.path());
    let t = token(d.addr, 60);
    let host = d.addr.to_string();
    for hosts in [
        [host.as_str(), "evil.example"],
        ["evil.example", host.as_str()],
        [host.as_str(), host.as_str()],
    ] {
        let r = get_with_hosts(d.addr, CREDENTIALS_LIST, &hosts, &t);
        assert_eq!(r.status, 400, "Host {hosts:?}: {r:?}");
    }
    let r = get_with_hosts(d.addr, CREDENTIALS_LIST, &[&host], &t);
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn a_host_header_that_disagrees_with_the_request_target_is_refused() {
    let dir = temp_dir();
    let d = start_demo_daemon(dir.path());
    let t = token(d.addr, 60);
    let port = d.addr.port();
    // Each is allowed alone; together they name two different hosts.
    let target = format!("http://127.0.0.1:{port}{CREDENTIALS_LIST}");
    let r = get_with_hosts(d.addr, &target, &[&format!("localhost:{port}")], &t);
    assert_eq!(r.status, 400, "{r:?}");
}

// --- Only the metadata versions EC2 serves ---

#[test]
fn only_latest_and_the_dated_versions_ec2_lists_are_served() {
    let dir = temp_dir();
    let d = start_demo_daemon(dir.path());
    let t = token(d.addr, 60);
    for version in [
        "9999-99-99",
        "2021-13-45",
        "0000-00-00",
        "2023-01-01",
        "1.1",
    ] {
        for path in ["/", "/meta-data/", "/meta-data/iam/security-credentials/"] {
            let r = get(d.addr, &format!("/{version}{path}"), &t);
            assert_eq!(r.status, 404, "/{version}{path}: {r:?}");
        }
    }
    for version in ["latest", "1.0", "2007-01-19", "2016-09-02", "2024-04-11"] {
        let r = get(
            d.addr,
            &format!("/{version}/meta-data/iam/security-credentials/"),
            &t,
        );
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "demo"),
            "{version}: {r:?}"
        );
    }
    // The root index names no version it would not serve.
    let index = get(d.addr, "/", &t);
    assert_eq!(index.status, 200, "{index:?}");
    for version in index.body.lines() {
        let r = get(d.addr, &format!("/{version}/meta-data/instance-id"), &t);
        assert_eq!(r.status, 200, "/{version}/ listed but not served: {r:?}");
    }
    assert_eq!(index.body.lines().last(), Some("latest"), "{index:?}");
}

// --- The token key is the daemon's own private file ---

mod token_key {
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::Path;
    use std::time::Duration;

    use super::support::*;

    const EX_CANTCREAT: i32 = 73;

    /// Starts `hostrole serve` on a state directory whose `token.key` was
    /// planted; returns its exit code (`None`: still running after 10 s,
    /// then killed) and stderr.
    fn start_on(state_dir: &Path) -> (Option<i32>, String) {
        run_until_exit(
            serve_command(&[], state_dir, &LOCAL_DEMO),
            Duration::from_secs(10),
        )
    }

    fn write_key(path: &Path, mode: u32) {
        fs::write(path, [7u8; 32]).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_symlink_planted_at_the_token_key_is_refused_and_its_target_left_alone() {
        let dir = temp_dir();
        let elsewhere = temp_dir();
        let victim = elsewhere.path().join("victim");
        write_key(&victim, 0o644);
        symlink(&victim, dir.path().join("token.key")).unwrap();
        let (code, stderr) = start_on(dir.path());
        assert_eq!(code, Some(EX_CANTCREAT), "{stderr}");
        assert!(stderr.contains("token.key"), "{stderr}");
        assert!(stderr.contains("is a symbolic link"), "{stderr}");
        assert_eq!(mode_of(&victim), 0o644, "the symlink's target was chmod-ed");
        assert_eq!(fs::read(&victim).unwrap(), [7u8; 32]);
    }

    #[test]
    fn a_token_key_others_may_read_is_refused_not_silently_reused() {
        let dir = temp_dir();
        let key = dir.path().join("token.key");
        write_key(&key, 0o644);
        let (code, stderr) = start_on(dir.path());
        assert_eq!(code, Some(EX_CANTCREAT), "{stderr}");
        assert!(stderr.contains("mode 0644, want 0600"), "{stderr}");
        assert!(stderr.contains(&key.display().to_string()), "{stderr}");
        assert_eq!(fs::read(&key).unwrap(), [7u8; 32]);
    }

    #[test]
    fn a_token_key_owned_by_another_user_is_refused() {
        let dir = temp_dir();
        let key = dir.path().join("token.key");
        write_key(&key, 0o600);
        let nobody = nix::unistd::Uid::from_raw(65534);
        nix::unistd::chown(&key, Some(nobody), None).expect("chown (tests run as root)");
        let me = nix::unistd::geteuid();
        let (code, stderr) = start_on(dir.path());
        assert_eq!(code, Some(EX_CANTCREAT), "{stderr}");
        assert!(
            stderr.contains(&format!("owned by uid 65534, not {me}")),
            "{stderr}"
        );
    }
}

// --- No secret in the log, whatever the environment asks for ---

mod sensitive_bodies {
    use std::time::Duration;

    use super::support::moto::start_moto;
    use super::support::*;

    #[test]
    fn log_sensitive_bodies_in_the_environment_puts_no_secret_in_a_trace_level_log() {
        let moto = start_moto();
        let dir = temp_dir();
        let home = dir.path().display().to_string();
        let none = dir.path().join("none").display().to_string();
        let d = start_daemon_env(
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
            ],
            &[
                ("LOG_SENSITIVE_BODIES", "true"),
                ("HOSTROLE_LOG", "trace"),
                ("RUST_LOG", "trace"),
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("HOME", &home),
                ("AWS_CONFIG_FILE", &none),
                ("AWS_SHARED_CREDENTIALS_FILE", &none),
            ],
        );
        assert!(
            d.wait_for_log("credentials refreshed", Duration::from_secs(20)),
            "no credentials from moto; log:\n{}",
            d.log()
        );
        let creds = fetch_credentials(d.addr);
        let (_, log) = d.stop();
        assert!(
            log.contains("\"level\":\"TRACE\""),
            "the daemon did not log at trace level"
        );
        for field in ["SecretAccessKey", "Token"] {
            let secret = creds[field].as_str().unwrap();
            // The whole secret, and any 16-character piece of it.
            let pieces = (0..secret.len().saturating_sub(16))
                .step_by(8)
                .map(|i| &secret[i..i + 16]);
            for piece in std::iter::once(secret).chain(pieces) {
                assert!(!log.contains(piece), "the {field} is in the log");
            }
        }
        // (The SDK's own "set LOG_SENSITIVE_BODIES=true" hints are at TRACE.)
        let warnings = log
            .lines()
            .filter(|l| l.contains("\"level\":\"WARN\"") && l.contains("LOG_SENSITIVE_BODIES"))
            .count();
        assert_eq!(
            warnings, 1,
            "one warning that LOG_SENSITIVE_BODIES was ignored"
        );
    }
}

//! The container credentials endpoint with the real binary: tokens made
//! with `hostrole container-token`, botocore's own container provider
//! (AWS_CONTAINER_CREDENTIALS_FULL_URI and a token file) as the client, and
//! what a wrong, revoked or missing token, a removed role, a restart and a
//! caller without rights get. Ends with a "container" on a bridge of a host
//! made of network namespaces, at the addresses SDKs accept
//! (169.254.170.2 and fd00:ec2::23).

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::netlab::*;
use support::*;

/// The container listener's address, from the daemon's log.
fn container_addr(d: &Daemon) -> SocketAddr {
    assert!(
        d.wait_for_log("\"serves\":\"container\"", Duration::from_secs(5)),
        "no container listener:\n{}",
        d.log()
    );
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("\"listening\"") && l.contains("\"serves\":\"container\""))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["fields"]["addr"].as_str().unwrap().parse().unwrap()
}

fn create_token(dir: &Path, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["container-token", "create", name];
    args.extend_from_slice(extra);
    let out = client(dir, &args);
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("shown once"), "{stderr}");
    assert!(!stderr.contains(token.trim()), "the token went to stderr");
    token.trim_end_matches('\n').to_owned()
}

fn token_file(dir: &Path, name: &str, token: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.token"));
    // No newline: botocore, Go and Rust refuse a token that ends in one.
    std::fs::write(&path, token).unwrap();
    path
}

const BOTOCORE: &str = r#"
import json, botocore.session
c = botocore.session.Session().get_credentials()
print(json.dumps({"key": c and c.access_key, "method": c and c.method}))
"#;

/// botocore's default chain with only the container provider reachable:
/// (succeeded, stdout, stderr).
fn botocore(wrapper: &[&str], url: &str, token_file: &Path) -> (bool, String, String) {
    let python = std::env::var("HOSTROLE_PYTHON")
        .expect("HOSTROLE_PYTHON is not set: run scripts/test (it installs botocore)");
    let mut argv: Vec<&str> = wrapper.to_vec();
    argv.extend([python.as_str(), "-c", BOTOCORE]);
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", "/nonexistent")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", url)
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file)
        .env("NO_PROXY", "*")
        .output()
        .expect("run python");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn botocore_key(wrapper: &[&str], url: &str, token_file: &Path) -> String {
    let (ok, out, err) = botocore(wrapper, url, token_file);
    assert!(ok, "botocore failed: {out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["method"], "container-role", "{v}");
    v["key"].as_str().unwrap().to_owned()
}

fn assert_botocore_refused(url: &str, token_file: &Path, status: &str) {
    let (ok, out, err) = botocore(&[], url, token_file);
    assert!(!ok, "botocore got credentials: {out}");
    assert!(
        err.contains(&format!(
            "non 200 response {status} from container metadata"
        )),
        "{err}"
    );
}

#[test]
fn botocore_gets_the_role_with_a_token_and_not_without_one() {
    let dir = temp_dir();
    let args = [&LOCAL_DEMO[..], &["--container-listen", "127.0.0.1:0"]].concat();
    let d = start_daemon(dir.path(), &args);
    let addr = container_addr(&d);
    let url = format!("http://{addr}/v1/credentials");
    let imds_key = wait_served(&d, Duration::from_secs(10))["AccessKeyId"]
        .as_str()
        .unwrap()
        .to_owned();

    let web = create_token(dir.path(), "web", &[]);
    assert!(web.starts_with("hrct-"), "{web}");
    let web_file = token_file(dir.path(), "web", &web);
    assert_eq!(botocore_key(&[], &url, &web_file), imds_key);

    // Not a consumer's token: 403; none: 401.
    let forged = token_file(dir.path(), "forged", &format!("{}x", &web[..web.len() - 1]));
    assert_botocore_refused(&url, &forged, "403");
    let none = request(addr, "GET", "/v1/credentials", &[]);
    assert_eq!(none.status, 401, "{none:?}");
    // IMDS paths are not served here, nor this path on IMDS.
    let t = token(d.addr, 60);
    assert_eq!(
        get(addr, "/latest/meta-data/iam/security-credentials/demo", &t).status,
        404
    );
    let r = request(d.addr, "GET", "/v1/credentials", &[("Authorization", &web)]);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(get(d.addr, "/v1/credentials", &t).status, 404);

    // Listed without the token; revoked at once, and said so in the log
    // with the consumer's name.
    let list = client(dir.path(), &["container-token", "list"]);
    assert!(list.status.success(), "{list:?}");
    let text = String::from_utf8(list.stdout).unwrap();
    assert!(text.contains("web") && text.contains("active"), "{text}");
    assert!(!text.contains(&web[5..]), "{text}");
    let revoked = client(dir.path(), &["container-token", "revoke", "web"]);
    assert!(revoked.status.success(), "{revoked:?}");
    assert_botocore_refused(&url, &web_file, "403");
    assert!(
        d.wait_for_log("\"consumer\":\"web\"", Duration::from_secs(5))
            && d.log().contains("revoked"),
        "{}",
        d.log()
    );

    // A role removed is removed here too, at once.
    let batch = create_token(dir.path(), "batch", &["--expires", "1h"]);
    let batch_file = token_file(dir.path(), "batch", &batch);
    assert_eq!(botocore_key(&[], &url, &batch_file), imds_key);
    let out = client(dir.path(), &["disassociate"]);
    assert!(out.status.success(), "{out:?}");
    let r = request(addr, "GET", "/v1/credentials", &[("Authorization", &batch)]);
    assert_eq!(r.status, 404, "{r:?}");
    let out = client(dir.path(), &["associate", ROLE_ARN]);
    assert!(out.status.success(), "{out:?}");
    let key = botocore_key(&[], &url, &batch_file);
    assert!(key.starts_with("ASIA"), "{key}");

    // A restart keeps the consumers: batch still works, web stays revoked.
    let listed = client(dir.path(), &["container-token", "list", "--json"]);
    let before: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let addr_text = addr.to_string();
    let d = d.restart(
        dir.path(),
        &[&LOCAL_DEMO[..], &["--container-listen", &addr_text]].concat(),
    );
    let listed = client(dir.path(), &["container-token", "list", "--json"]);
    let after: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(before, after);
    assert_eq!(after.as_array().unwrap().len(), 2, "{after}");
    assert_eq!(after[0]["state"], "revoked");
    assert!(after[1]["expires"].is_string(), "{after}");
    wait_served(&d, Duration::from_secs(10));
    assert!(botocore_key(&[], &url, &batch_file).starts_with("ASIA"));
    assert_botocore_refused(&url, &web_file, "403");
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(
        !log.contains(&web) && !log.contains(&batch),
        "a token was logged"
    );
}

#[test]
fn token_commands_need_root_the_admin_group_or_the_daemons_user() {
    let dir = open_temp_dir();
    let args = [&LOCAL_DEMO[..], &["--container-listen", "127.0.0.1:0"]].concat();
    let d = start_daemon(dir.path(), &args);
    for args in [
        &["container-token", "create", "web"][..],
        &["container-token", "list"],
        &["container-token", "revoke", "web"],
    ] {
        let out = client_as_nobody(dir.path(), args);
        assert_eq!(out.status.code(), Some(77), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("permission denied"), "{err}");
        assert!(out.stdout.is_empty(), "{out:?}");
    }
    assert!(d.wait_for_log("refused: permission denied", Duration::from_secs(5)));
    // Nothing was created.
    let list = client(dir.path(), &["container-token", "list"]);
    assert_eq!(String::from_utf8_lossy(&list.stdout), "no consumers\n");
    // Clear errors for bad input, nothing changed.
    for (args, says) in [
        (
            &["container-token", "create", "a b"][..],
            "invalid consumer name",
        ),
        (
            &["container-token", "create", "web", "--expires", "soon"],
            "--expires",
        ),
        (
            &["container-token", "revoke", "nobody"],
            "no consumer named",
        ),
    ] {
        let out = client(dir.path(), args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    create_token(dir.path(), "web", &[]);
    let again = client(dir.path(), &["container-token", "create", "web"]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("revoke it first"));
}

#[test]
fn container_listen_is_checked_before_anything_binds() {
    let dir = temp_dir();
    for (args, says) in [
        (
            &[
                "--listen",
                "127.0.0.1:1338",
                "--container-listen",
                "127.0.0.1:1338",
            ][..],
            "container-listen: 127.0.0.1:1338 is an IMDS address",
        ),
        (&["--container-listen", "169.254.170.2"], "container-listen"),
    ] {
        let cmd = serve_command(&[], dir.path(), &[&LOCAL_DEMO[..], args].concat());
        let (code, err) = run_until_exit(cmd, Duration::from_secs(10));
        assert_eq!(code, Some(78), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // An address in use names the key that set it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let cmd = serve_command(
        &[],
        dir.path(),
        &[&LOCAL_DEMO[..], &["--container-listen", &taken]].concat(),
    );
    let (code, err) = run_until_exit(cmd, Duration::from_secs(10));
    assert_eq!(code, Some(69), "{err}");
    assert!(
        err.contains("--container-listen") && err.contains(&taken),
        "{err}"
    );
}

#[test]
fn a_bridged_container_uses_the_endpoint_at_the_addresses_sdks_accept() {
    let lab = Lab::bridge("ctr");
    let dir = temp_dir();
    // The host takes the addresses, as it takes 169.254.169.254 for IMDS.
    ip(&lab.host, "addr add 169.254.170.2/32 dev lo");
    ip(&lab.host, "addr add fd00:ec2::23/128 dev lo");
    let mut args = LOCAL_DEMO.to_vec();
    args.extend(["--listen", "10.200.9.1:1338"]);
    args.extend(["--container-listen", "169.254.170.2:80"]);
    args.extend(["--container-listen", "[fd00:ec2::23]:80"]);
    // Only ever asked from inside the lab: its addresses mean nothing
    // outside it.
    let d = start_daemon_wrapped(&["ip", "netns", "exec", &lab.host], dir.path(), &args, &[]);
    let token = create_token(dir.path(), "app", &[]);
    let file = token_file(dir.path(), "app", &token);
    let inside = ["ip", "netns", "exec", lab.container.as_str()];
    let mut keys = Vec::new();
    for url in [
        "http://169.254.170.2/v1/credentials",
        "http://[fd00:ec2::23]/v1/credentials",
    ] {
        keys.push(botocore_key(&inside, url, &file));
    }
    assert_eq!(keys[0], keys[1]);
    assert!(keys[0].starts_with("ASIA"));
    // The same container without the token: 401.
    let (rc, code) = lab.curl(&lab.container, &["http://169.254.170.2/v1/credentials"]);
    assert_eq!((rc, code.as_str()), (0, "401"));
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn a_refusal_answered_at_accept_still_names_the_callers_user() {
    // A whole request that asks to close is answered without a slot, so
    // without asking the kernel who sent it; the log line about a refusal
    // asks then, while the caller's socket is still open.
    let dir = temp_dir();
    let args = [&LOCAL_DEMO[..], &["--container-listen", "127.0.0.1:0"]].concat();
    let d = start_daemon(dir.path(), &args);
    let addr = container_addr(&d);
    let r = raw_request(
        addr,
        &format!(
            "GET /v1/credentials HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: hrct-not-a-token\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(r.status, 403, "{r:?}");
    let why = hostrole::endpoint::container::UNKNOWN_TOKEN_REFUSAL;
    assert!(d.wait_for_log(why, Duration::from_secs(5)), "{}", d.log());
    let log = d.log();
    let line = log.lines().find(|l| l.contains(why)).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        v["fields"]["uid"].as_u64(),
        Some(u64::from(nix::unistd::geteuid().as_raw())),
        "{line}"
    );
    assert!(
        v["fields"]["inode"].as_u64().is_some_and(|i| i > 0),
        "{line}"
    );
}

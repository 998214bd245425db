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
    let d = start_daemon_with_base_credentials(dir.path(), &sts_args(&endpoint, true));
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

/// `hostrole serve ARGS` with base credentials only from `env` and none of
/// the user's AWS files (a home directory of its own): its exit code,
/// standard output and error.
fn serve_with_env(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    // A daemon that starts when it should not is stopped after 20 s
    // (exit 124), not waited for.
    let out = std::process::Command::new("timeout")
        .arg("20")
        .arg(env!("CARGO_BIN_EXE_hostrole"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir)
        .arg("--control-socket")
        .arg(control_socket(dir))
        .args(args)
        .env_clear()
        .env("HOME", dir)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `hostrole serve` for STS with nothing of the user's AWS setup but `env`
/// (and a home directory of its own): its exit code and standard error.
fn serve_sts_with_env(dir: &std::path::Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let args = [
        "--issuer",
        "sts",
        "--region",
        "us-east-1",
        "--role-arn",
        ROLE_ARN,
    ];
    let (code, _, err) = serve_with_env(dir, &args, env);
    (code, err)
}

#[test]
fn a_profile_that_does_not_exist_is_named_with_the_files_looked_in() {
    let dir = temp_dir();
    let home = dir.path().display().to_string();
    // No files at all.
    let (code, err) = serve_sts_with_env(dir.path(), &[("AWS_PROFILE", "nosuch")]);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains(&format!(
            "no base credentials for STS: profile nosuch (AWS_PROFILE) is in neither \
             {home}/.aws/config nor {home}/.aws/credentials"
        )),
        "{err}"
    );
    // Files that define other profiles, named by the variables.
    let config = dir.path().join("config");
    let credentials = dir.path().join("credentials");
    std::fs::write(&config, "[profile other]\nregion = eu-west-1\n").unwrap();
    std::fs::write(
        &credentials,
        "[other]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = other-secret-value\n",
    )
    .unwrap();
    let (config, credentials) = (
        config.display().to_string(),
        credentials.display().to_string(),
    );
    let (code, err) = serve_sts_with_env(
        dir.path(),
        &[
            ("AWS_PROFILE", "nosuch"),
            ("AWS_CONFIG_FILE", &config),
            ("AWS_SHARED_CREDENTIALS_FILE", &credentials),
        ],
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains(&format!(
            "profile nosuch (AWS_PROFILE) is in neither {config} nor {credentials}"
        )),
        "{err}"
    );
    assert!(!err.contains("other-secret-value"), "{err}");
}

#[test]
fn half_an_access_key_pair_is_named_and_its_value_is_not_printed() {
    let dir = temp_dir();
    let (code, err) = serve_sts_with_env(dir.path(), &[("AWS_ACCESS_KEY_ID", "AKIDHALFPAIR")]);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains(
            "no base credentials for STS: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"
        ),
        "{err}"
    );
    let secret = "half-pair-secret-0123456789abcdef";
    let (code, err) = serve_sts_with_env(dir.path(), &[("AWS_SECRET_ACCESS_KEY", secret)]);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not"),
        "{err}"
    );
    assert!(!err.contains(secret), "{err}");
}

/// Runs `cmd` under a pseudo-terminal (through util-linux's `script`), as a
/// user at a terminal would: everything it printed, standard error included.
fn under_a_terminal(cmd: &std::process::Command) -> String {
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"));
    let line: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(quote)
        .collect();
    let mut script = std::process::Command::new("script");
    script.args(["-qec", &line.join(" "), "/dev/null"]);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let out = script.output().expect("run script(1)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A start-up error, under a terminal and without one, appears once.
fn printed_once(cmd: std::process::Command, message: &str) {
    let tty = under_a_terminal(&cmd);
    assert_eq!(tty.matches(message).count(), 1, "under a terminal:\n{tty}");
    let (code, err) = run_until_exit(cmd, Duration::from_secs(20));
    assert!(code.is_some_and(|c| c != 0), "{err}");
    assert_eq!(
        err.matches(message).count(),
        1,
        "without a terminal:\n{err}"
    );
}

#[test]
fn a_start_up_error_is_printed_once_with_a_terminal_and_without() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = temp_dir();
    let cmd = serve_command(&[], dir.path(), &["--issuer", "local", "--listen", &addr]);
    printed_once(cmd, &format!("cannot listen on {addr}"));
    // A JSON log stays JSON: the error is its last line's field.
    let cmd = serve_command(
        &[],
        dir.path(),
        &[
            "--issuer",
            "local",
            "--listen",
            &addr,
            "--log-format",
            "json",
        ],
    );
    let (code, err) = run_until_exit(cmd, Duration::from_secs(20));
    assert_eq!(code, Some(69), "{err}");
    assert_eq!(err.matches("cannot listen on").count(), 1, "{err}");
    let last: serde_json::Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert!(
        last["fields"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with(&format!("cannot listen on {addr}"))),
        "{err}"
    );
    for line in err.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect(line);
    }

    let mut cmd = serve_command(
        &[],
        dir.path(),
        &["--issuer", "sts", "--region", "us-east-1"],
    );
    cmd.env("HOME", dir.path()).env("AWS_PROFILE", "nosuch");
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_CONFIG_FILE",
    ] {
        cmd.env_remove(var);
    }
    printed_once(cmd, "profile nosuch (AWS_PROFILE)");
}

#[test]
fn a_reader_that_stops_early_ends_status_quietly() {
    let dir = temp_dir();
    let _d = start_demo_daemon(dir.path());
    for args in [&["status"][..], &["status", "--json"]] {
        // A real pipe whose reader has gone, as after `| head -1`.
        let (reader, writer) = nix::unistd::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hostrole"))
            .args(args)
            .arg("--control-socket")
            .arg(control_socket(dir.path()))
            .stdout(std::process::Stdio::from(writer))
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert_eq!(err, "", "{args:?}");
    }
    // And through `head`, as typed.
    let line = format!(
        "'{}' status --control-socket '{}' | head -1",
        env!("CARGO_BIN_EXE_hostrole"),
        control_socket(dir.path()).display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &format!("set -o pipefail; {line}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("role:            {ROLE_ARN}\n")
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn an_address_in_use_names_the_flag_or_key_that_set_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = temp_dir();
    let cfg = dir.path().join("hostrole.toml");
    let serve = |config: &str, args: &[&str]| {
        std::fs::write(&cfg, format!("issuer = \"local\"\n{config}")).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hostrole"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&cfg)
            .arg("--state-dir")
            .arg(dir.path())
            .arg("--control-socket")
            .arg(control_socket(dir.path()))
            .args(args)
            .stdin(std::process::Stdio::null());
        let (code, err) = run_until_exit(cmd, Duration::from_secs(20));
        assert_eq!(code, Some(69), "{err}");
        err
    };
    let file = cfg.display();
    for (config, args, want) in [
        (
            format!("listen = [\"{addr}\"]\n"),
            &[][..],
            format!("cannot listen on {addr} (listen in {file}): "),
        ),
        (
            "listen = [\"127.0.0.1:0\"]\n".to_owned(),
            &["--listen", &addr][..],
            format!("cannot listen on {addr} (--listen): "),
        ),
        (
            format!("listen = [\"127.0.0.1:0\"]\nmetrics-listen = \"{addr}\"\n"),
            &[][..],
            format!("cannot listen on {addr} (metrics-listen in {file}): "),
        ),
        (
            "listen = [\"127.0.0.1:0\"]\n".to_owned(),
            &["--metrics-listen", &addr][..],
            format!("cannot listen on {addr} (--metrics-listen): "),
        ),
    ] {
        let err = serve(&config, args);
        assert!(err.contains(&want), "{want:?} not in:\n{err}");
        assert!(err.contains("Address already in use"), "{err}");
    }
}

#[test]
fn check_config_refuses_sts_without_base_credentials_as_the_start_does() {
    let dir = temp_dir();
    let args = [
        "--issuer",
        "sts",
        "--region",
        "eu-west-1",
        "--role-arn",
        ROLE_ARN,
    ];
    let (code, out, err) =
        serve_with_env(dir.path(), &[&["--check-config"][..], &args].concat(), &[]);
    assert_eq!(code, Some(78), "{err}");
    assert!(!out.contains("configuration OK"), "{out}");
    assert!(
        err.starts_with("hostrole: error: no base credentials for STS"),
        "{err}"
    );
    // The same message as a start gives.
    let (code, _, at_start) = serve_with_env(dir.path(), &args, &[]);
    assert_eq!(code, Some(78), "{at_start}");
    assert_eq!(Some(err.trim_end()), at_start.lines().last());
    // And with a problem a setting shows, that problem.
    let half = [("AWS_ACCESS_KEY_ID", "AKIDHALFPAIR")];
    let (code, _, err) = serve_with_env(
        dir.path(),
        &[&["--check-config"][..], &args].concat(),
        &half,
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"),
        "{err}"
    );
    // No region at all: the start's error too.
    let (code, _, err) = serve_with_env(
        dir.path(),
        &["--check-config", "--issuer", "sts"],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("no region for STS"), "{err}");
}

#[test]
fn a_misspelt_region_is_warned_about_not_refused() {
    let dir = temp_dir();
    let creds = [
        ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let (code, out, err) = serve_with_env(
        dir.path(),
        &["--check-config", "--issuer", "sts", "--region", "eu-wst-1"],
        &creds,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("configuration OK\n"), "{out}");
    assert_eq!(
        err,
        "hostrole: warning: region eu-wst-1 is not one this version knows; check its spelling \
         (a region newer than this version is fine)\n"
    );
    let (code, _, err) = serve_with_env(
        dir.path(),
        &["--check-config", "--issuer", "sts", "--region", "eu-west-1"],
        &creds,
    );
    assert_eq!((code, err.as_str()), (Some(0), ""));
    // At start, the same warning is logged and the daemon serves.
    let d = start_daemon(dir.path(), &["--issuer", "local", "--region", "eu-wst-1"]);
    assert!(
        d.wait_for_log(
            "region eu-wst-1 is not one this version knows",
            Duration::from_secs(5)
        ),
        "{}",
        d.log()
    );
}

//! A developer's own daemon, run as an ordinary user with no paths given:
//! its state and control socket in that user's own directories, the user's
//! own commands accepted, another user's refused, and the commands finding
//! it with no `--control-socket`.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::unistd::{chown, Gid, Uid};
use support::*;

const USER: u32 = 65534;
const OTHER: u32 = 65533;

fn hostrole_as(uid: u32, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".to_owned(),
    ])
    .arg(env!("CARGO_BIN_EXE_hostrole"))
    .env_clear()
    .envs(env.iter().copied())
    .stdin(Stdio::null());
    c
}

fn run_as(uid: u32, env: &[(&str, &str)], args: &[&str]) -> Output {
    hostrole_as(uid, env)
        .args(args)
        .output()
        .expect("setpriv (util-linux)")
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn owned_dir(path: &Path, mode: u32) {
    std::fs::create_dir_all(path).unwrap();
    chown(path, Some(Uid::from_raw(USER)), Some(Gid::from_raw(USER))).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_users_own_daemon_takes_their_commands_and_is_found_without_flags() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs the daemon as uid 65534 with setpriv and must run as root (CI does)"
    );
    let dir = temp_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = dir.path().join("home");
    let runtime = dir.path().join("run");
    owned_dir(&home, 0o700);
    // As systemd-logind makes it, except that another user may pass through
    // to reach the socket (0711), so that a refusal by the daemon shows.
    owned_dir(&runtime, 0o711);
    let env = [
        ("HOME", home.to_str().unwrap()),
        ("XDG_RUNTIME_DIR", runtime.to_str().unwrap()),
        // Set but empty, as some session managers leave it: ignored.
        ("XDG_STATE_HOME", ""),
        ("PATH", "/usr/bin:/bin"),
    ];
    let daemon = Killed(
        hostrole_as(USER, &env)
            .args(["serve", "--issuer", "local", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let socket = runtime.join("hostrole/control.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "no socket at {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The state went to the user's own state directory.
    assert!(home.join(".local/state/hostrole/token.key").exists());

    // The user's commands find it and are taken.
    let out = run_as(USER, &env, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains(&format!("control socket:  {}", socket.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("daemon pid:      {}", daemon.0.id())),
        "{text}"
    );
    for args in [&["associate", ROLE_ARN][..], &["disassociate"]] {
        let out = run_as(USER, &env, args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }

    // Another user reaches the socket and is refused by the daemon.
    let other = run_as(
        OTHER,
        &[("PATH", "/usr/bin:/bin")],
        &[
            "associate",
            ROLE_ARN,
            "--control-socket",
            socket.to_str().unwrap(),
        ],
    );
    assert_eq!(other.status.code(), Some(77), "{other:?}");
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(err.contains("caller uid 65533, daemon uid 65534"), "{err}");
    let out = run_as(USER, &env, &["status"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("role:            none"),
        "{out:?}"
    );
}

/// Under systemd with `ConfigurationDirectory=` (the user unit's
/// `~/.config/hostrole`), the configuration is read from there, not from
/// /etc/hostrole.
#[test]
fn the_configuration_comes_from_systemds_configuration_directory() {
    let dir = temp_dir();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(
        conf.join("hostrole.toml"),
        "issuer = \"local\"\nrole-arn = \"arn:aws:iam::123456789012:role/from-user-config\"\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let d = start_daemon_env(
        &state,
        &[],
        &[("CONFIGURATION_DIRECTORY", conf.to_str().unwrap())],
    );
    let t = token(d.addr, 60);
    let list = get(d.addr, "/latest/meta-data/iam/security-credentials/", &t);
    assert_eq!((list.status, list.body.as_str()), (200, "from-user-config"));
}

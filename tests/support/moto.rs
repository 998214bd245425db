//! A moto server for tests that need a real STS (and IAM) on loopback.
//!
//! `moto_server` comes from `HOSTROLE_MOTO_SERVER` (set by scripts/test,
//! which installs it) or from PATH. Without it the tests fail: they are
//! never skipped.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server, stopped on drop.
pub struct Moto {
    child: Child,
    /// Its base URL.
    pub url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> String {
    if let Ok(p) = std::env::var("HOSTROLE_MOTO_SERVER") {
        return p;
    }
    let on_path = Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        on_path,
        "moto_server not found: run scripts/test (it installs moto[server]) or set HOSTROLE_MOTO_SERVER"
    );
    "moto_server".into()
}

/// Starts moto on a free loopback port and waits until it listens.
pub fn start_moto() -> Moto {
    start_moto_env(&[])
}

/// As [`start_moto`], with authentication enforced after the first
/// `free_calls` requests (moto's `INITIAL_NO_AUTH_ACTION_COUNT`): from then
/// on every call must be signed with a key of moto's IAM that exists, is
/// active and whose user's policy allows the action.
pub fn start_moto_with_auth(free_calls: u32) -> Moto {
    start_moto_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", &free_calls.to_string())])
}

fn start_moto_env(env: &[(&str, &str)]) -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(moto_binary())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let moto = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not start within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    moto
}

/// An SDK configuration for moto signed with `key` and `secret` (and a
/// session `token`, for temporary credentials).
pub fn static_config(
    moto: &Moto,
    key: &str,
    secret: &str,
    token: Option<String>,
) -> aws_config::SdkConfig {
    use aws_sdk_sts::config::{BehaviorVersion, Region};
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&moto.url)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(key, secret, token, None, "test"),
            ),
        )
        .build()
}

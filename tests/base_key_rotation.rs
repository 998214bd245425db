//! `hostrole rotate-base-key` against moto's IAM and STS with
//! authentication enforced, so that a deleted key really fails there.
//!
//! The daemon is killed (SIGKILL, by a relay in front of moto) before and
//! after every IAM and STS call of a rotation; after each kill a restarted
//! daemon finishes or undoes the rotation, and the file holds a key that
//! works, the user keeps one key, and the role is served.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::iam_user::*;
use support::killproxy::{KillProxy, When};
use support::moto::*;
use support::*;

/// Config for a daemon whose STS and IAM are behind `proxy`.
fn config(proxy: &KillProxy, extra: &str) -> String {
    format!(
        "iam-endpoint = \"{}\"\npersist-credentials = false\n{extra}\n",
        proxy.url
    )
}

/// moto with the base user, a relay in front of it, and a state directory
/// with the user's first key in a credentials file (in `file_dir`, else in
/// the state directory).
struct Bench {
    moto: Moto,
    first: Key,
    proxy: KillProxy,
    dir: tempfile::TempDir,
    file: std::path::PathBuf,
}

async fn bench(file_dir: Option<&Path>) -> Bench {
    let moto = start_moto_with_auth(SET_UP_CALLS);
    let first = set_up(&moto).await;
    let proxy = KillProxy::start(&moto.url);
    let dir = temp_dir();
    let file = file_dir.unwrap_or(dir.path()).join("aws-credentials");
    write_credentials(&file, &first);
    Bench {
        moto,
        first,
        proxy,
        dir,
        file,
    }
}

impl Bench {
    /// The daemon on the file, with `extra` config.
    fn start(&self, extra: &str) -> Daemon {
        start_on_file(
            &self.proxy.url,
            self.dir.path(),
            &self.file,
            &config(&self.proxy, extra),
        )
    }
}

fn rotate(dir: &Path) -> std::process::Output {
    client(dir, &["rotate-base-key"])
}

/// Waits until the daemon has no unfinished rotation left.
fn wait_settled(dir: &Path, d: &Daemon) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status_json(dir);
        if s["base-key-rotation"].is_null() && s["serving"] == true {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "rotation not settled: {s}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_dead(d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.pid() as i32), None).is_ok()
        && std::fs::read_to_string(format!("/proc/{}/stat", d.pid()))
            .is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "the daemon was not killed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_at_any_step_leaves_a_working_key_in_the_file_and_the_role_served() {
    let b = bench(None).await;
    let (moto, proxy, dir, file) = (&b.moto, &b.proxy, &b.dir, &b.file);
    let grace_0 = "base-key-grace-minutes = 0";

    let steps = [
        ("ListAccessKeys", When::Before),
        ("CreateAccessKey", When::Before),
        ("CreateAccessKey", When::After),
        ("GetCallerIdentity", When::Before),
        ("GetCallerIdentity", When::After),
        ("UpdateAccessKey", When::Before),
        ("UpdateAccessKey", When::After),
        ("DeleteAccessKey", When::Before),
        ("DeleteAccessKey", When::After),
    ];
    for (action, when) in steps {
        let before = key_in_file(file);
        let d = b.start(grace_0);
        wait_served(&d, Duration::from_secs(30));
        proxy.arm(action, when, d.pid());
        let out = rotate(dir.path());
        assert!(
            !out.status.success(),
            "{action} {when:?}: the daemon was to die"
        );
        assert!(
            proxy.fired(),
            "{action} {when:?}: never called: {:?}",
            proxy.seen()
        );
        wait_dead(&d);
        drop(d);
        if (action, when) == ("UpdateAccessKey", When::Before) {
            // Killed between the file write and this call: a record left
            // from the old key is brought up to date by the resumption.
            std::fs::write(
                dir.path().join("base-key.json"),
                format!("{{\"key\": \"{}\"}}", before.id),
            )
            .unwrap();
        }

        let d = b.start(grace_0);
        let status = wait_settled(dir.path(), &d);
        let now = key_in_file(file);
        assert!(
            caller(moto, &now).await.is_ok(),
            "{action} {when:?}: the key in the file does not work\n{}",
            d.log()
        );
        let switched = matches!(
            (action, when),
            ("UpdateAccessKey", _) | ("DeleteAccessKey", _)
        );
        assert_eq!(
            now.id != before.id,
            switched,
            "{action} {when:?}: switched only once the new key was proven and written"
        );
        assert_eq!(
            keys_of_user(moto, &now).await,
            vec![(now.id.clone(), "Active".to_owned())],
            "{action} {when:?}: one key left, the file's\n{}",
            d.log()
        );
        assert_eq!(status["base-key"], now.id.as_str(), "{status}");
        if switched {
            assert!(status["base-key-last-rotation"].is_string(), "{status}");
        }
        assert!(!dir.path().join("base-key-rotation.json").exists());
        d.stop();
    }

    // And a rotation that is not interrupted.
    let before = key_in_file(file);
    let d = b.start(grace_0);
    let served = wait_served(&d, Duration::from_secs(30));
    let out = rotate(dir.path());
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}\n{}", d.log());
    let after = key_in_file(file);
    assert_ne!(after.id, before.id);
    assert!(
        said.starts_with(&format!("rotated: {} replaces {}", after.id, before.id)),
        "{said}"
    );
    assert_eq!(
        caller(moto, &before).await.unwrap_err(),
        "InvalidClientTokenId",
        "grace 0: the old key is deleted"
    );
    // The daemon uses the new key at once: a new AssumeRole succeeds.
    let out = client(dir.path(), &["replace", ROLE_ARN]);
    assert!(out.status.success(), "{out:?}\n{}", d.log());
    let again = wait_served(&d, Duration::from_secs(30));
    assert_ne!(again["AccessKeyId"], served["AccessKeyId"]);
    let text = String::from_utf8_lossy(&client(dir.path(), &["status"]).stdout).into_owned();
    assert!(
        text.contains(&format!("base key:        {}, created ", after.id))
            && text.contains(" days old), rotated "),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_keys_stop_the_rotation_with_the_other_named_and_nothing_changed() {
    let b = bench(None).await;
    let (moto, first, dir, file) = (&b.moto, &b.first, &b.dir, &b.file);
    let d = b.start("");
    wait_served(&d, Duration::from_secs(30));

    // A second, active key made by someone else.
    let other = new_key(&iam(moto, first)).await;
    let out = rotate(dir.path());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the IAM user already has two access keys, the most IAM allows: the other one is {} (active",
            other.id
        )) && err.contains("Nothing was changed"),
        "{err}"
    );
    assert_eq!(key_in_file(file).id, first.id);
    assert_eq!(keys_of_user(moto, first).await.len(), 2);
    assert!(!dir.path().join("base-key-rotation.json").exists());

    // Inactive: still refused, with the key that would allow it.
    iam(moto, first)
        .update_access_key()
        .user_name(USER)
        .access_key_id(&other.id)
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .unwrap();
    let out = rotate(dir.path());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("(inactive") && err.contains("base-key-delete-inactive = true"),
        "{err}"
    );
    assert_eq!(keys_of_user(moto, first).await.len(), 2);
    d.stop();

    // With base-key-delete-inactive, the inactive key goes and the
    // rotation proceeds; the default grace keeps the old key, inactive.
    let d = b.start("base-key-delete-inactive = true");
    wait_served(&d, Duration::from_secs(30));
    let out = rotate(dir.path());
    assert!(out.status.success(), "{out:?}\n{}", d.log());
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let deleted_at = said
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_owned();
    let now = key_in_file(file);
    assert_eq!(keys_of_user(moto, &now).await, {
        let mut k = vec![
            (first.id.clone(), "Inactive".to_owned()),
            (now.id.clone(), "Active".to_owned()),
        ];
        k.sort();
        k
    });
    let status = status_json(dir.path());
    let pending = status["base-key-rotation"].as_str().unwrap_or_default();
    assert_eq!(
        pending,
        format!("old key {} inactive, deleted at {deleted_at}", first.id),
        "the command and status agree on when, an hour on"
    );
    // A restart keeps waiting for the grace period: the old key stays.
    d.stop();
    let d = b.start("");
    wait_served(&d, Duration::from_secs(30));
    let status = status_json(dir.path());
    assert_eq!(
        status["base-key-rotation"].as_str().unwrap_or_default(),
        pending
    );
    assert_eq!(keys_of_user(moto, &now).await.len(), 2);
    d.stop();

    // Once the grace period is over (here: the old key made inactive two
    // hours ago), a start deletes the old key and the journal goes.
    let journal = dir.path().join("base-key-rotation.json");
    let mut j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&journal).unwrap()).unwrap();
    let at = j["deactivated-at"].as_u64().unwrap();
    j["deactivated-at"] = (at - 7200).into();
    std::fs::write(&journal, j.to_string()).unwrap();
    let d = b.start("");
    wait_settled(dir.path(), &d);
    assert_eq!(
        keys_of_user(moto, &now).await,
        vec![(now.id.clone(), "Active".to_owned())]
    );
    assert!(!journal.exists());
}

#[test]
fn only_root_the_admin_group_or_the_daemons_user_may_rotate() {
    let dir = open_temp_dir();
    let d = start_demo_daemon(dir.path());
    // The local issuer has no base key: a clear refusal, not a crash.
    let out = rotate(dir.path());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("issuer = \"sts\" only"), "{err}");
    // Another user is refused before anything is looked at.
    let out = client_as_nobody(dir.path(), &["rotate-base-key"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(77), "{err}");
    assert!(
        err.contains("permission denied: rotate-base-key needs root"),
        "{err}"
    );
    drop(d);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_undoes_the_rotation_and_keeps_the_old_key() {
    let disk = support::disk::SmallDisk::new();
    let b = bench(Some(disk.dir.path())).await;
    let (moto, first, dir, file) = (&b.moto, &b.first, &b.dir, &b.file);
    let d = b.start("");
    wait_served(&d, Duration::from_secs(30));
    disk.fill();
    let out = rotate(dir.path());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot write {}: ", file.display()))
            && err.contains("No space left on device"),
        "{err}"
    );
    // The key it made is gone again; the old one is in the file, works,
    // and is the user's only key.
    assert_eq!(key_in_file(file).id, first.id);
    assert_eq!(
        keys_of_user(moto, first).await,
        vec![(first.id.clone(), "Active".to_owned())]
    );
    assert!(!dir.path().join("base-key-rotation.json").exists());
    let leftovers: Vec<_> = std::fs::read_dir(disk.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // With room again, it goes through.
    disk.free();
    let out = rotate(dir.path());
    assert!(out.status.success(), "{out:?}\n{}", d.log());
    assert_ne!(key_in_file(file).id, first.id);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_older_than_base_key_max_age_days_is_rotated_at_start() {
    let b = bench(None).await;
    let (first, dir, file) = (&b.first, &b.dir, &b.file);
    // The record says the key is two days old.
    let two_days_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 2 * 86_400;
    std::fs::write(
        dir.path().join("base-key.json"),
        format!("{{\"key\": \"{}\", \"created\": {two_days_ago}}}", first.id),
    )
    .unwrap();
    let d = b.start("base-key-max-age-days = 3");
    wait_served(&d, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(key_in_file(file).id, first.id, "younger than 3 days: kept");
    d.stop();

    let d = b.start("base-key-max-age-days = 2");
    let deadline = Instant::now() + Duration::from_secs(30);
    while key_in_file(file).id == first.id {
        assert!(Instant::now() < deadline, "not rotated:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(d.wait_for_log("base key rotated on schedule", Duration::from_secs(10)));
    let status = status_json(dir.path());
    assert_eq!(
        status["base-key"],
        key_in_file(file).id.as_str(),
        "{status}"
    );
    assert_eq!(status["base-key-age-days"], 0, "{status}");
    assert!(status["base-key-last-rotation"].is_string(), "{status}");
}

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_config::profile::ProfileFileCredentialsProvider;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};

use super::*;

fn write_key(path: &Path, id: &str) {
    std::fs::write(
        path,
        format!("[default]\naws_access_key_id = {id}\naws_secret_access_key = secret-of-{id}\n"),
    )
    .unwrap();
}

/// The SDK's own profile provider over `credentials` (which it parses once
/// per provider, as in the daemon's chain).
fn profile_base(dir: &Path) -> FreshBase<ProfileFileCredentialsProvider> {
    let config = dir.join("config");
    let credentials = dir.join("credentials");
    // Files named to the SDK's builder must exist (an empty one is fine).
    for file in [&config, &credentials] {
        if !file.exists() {
            std::fs::write(file, "").unwrap();
        }
    }
    let (c, k) = (config.clone(), credentials.clone());
    FreshBase::new([config, credentials], move || {
        ProfileFileCredentialsProvider::builder()
            .profile_files(
                EnvConfigFiles::builder()
                    .with_file(EnvConfigFileKind::Config, &c)
                    .with_file(EnvConfigFileKind::Credentials, &k)
                    .build(),
            )
            .build()
    })
}

async fn key(base: &impl ProvideCredentials) -> String {
    base.provide_credentials()
        .await
        .unwrap()
        .access_key_id()
        .to_owned()
}

#[tokio::test]
async fn a_rewritten_credentials_file_is_used_at_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    write_key(&dir.path().join("credentials"), "AKIAOLD");
    let base = profile_base(dir.path());
    assert_eq!(key(&base).await, "AKIAOLD");
    assert_eq!(base.key_id().as_deref(), Some("AKIAOLD"));
    // Rewritten in place, as an editor or `aws configure` does.
    write_key(&dir.path().join("credentials"), "AKIANEW");
    assert_eq!(key(&base).await, "AKIANEW");
    assert_eq!(base.key_id().as_deref(), Some("AKIANEW"));
}

#[tokio::test]
async fn a_credentials_file_renamed_into_place_is_used_at_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    write_key(&dir.path().join("credentials"), "AKIAOLD");
    let base = profile_base(dir.path());
    assert_eq!(key(&base).await, "AKIAOLD");
    // Same size, written elsewhere and renamed over it: a new inode.
    write_key(&dir.path().join("credentials.new"), "AKIANEW");
    std::fs::rename(
        dir.path().join("credentials.new"),
        dir.path().join("credentials"),
    )
    .unwrap();
    assert_eq!(key(&base).await, "AKIANEW");
}

#[tokio::test]
async fn a_profile_written_into_an_empty_config_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let base = profile_base(dir.path());
    assert!(base.provide_credentials().await.is_err());
    std::fs::write(
        dir.path().join("config"),
        "[default]\naws_access_key_id = AKIACONF\naws_secret_access_key = s\n",
    )
    .unwrap();
    assert_eq!(key(&base).await, "AKIACONF");
}

/// A provider that counts its calls and answers with `expiry`.
#[derive(Debug)]
struct Counting {
    calls: Arc<AtomicUsize>,
    expiry: Option<SystemTime>,
}

impl ProvideCredentials for Counting {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        future::ProvideCredentials::ready(Ok(Credentials::new(
            format!("AKIA{n}"),
            "secret",
            None,
            self.expiry,
            "test",
        )))
    }
}

fn counting(dir: &Path, expiry: Option<SystemTime>) -> (FreshBase<Counting>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let base = FreshBase::new([dir.join("config"), dir.join("credentials")], move || {
        Counting {
            calls: c.clone(),
            expiry,
        }
    });
    (base, calls)
}

#[tokio::test(start_paused = true)]
async fn static_keys_are_kept_fifteen_minutes_unless_a_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (base, calls) = counting(dir.path(), None);
    assert_eq!(key(&base).await, "AKIA0");
    tokio::time::advance(STATIC_KEEP - Duration::from_secs(1)).await;
    assert_eq!(key(&base).await, "AKIA0", "kept");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(key(&base).await, "AKIA1", "asked again after 15 minutes");
    std::fs::write(dir.path().join("credentials"), "x").unwrap();
    assert_eq!(key(&base).await, "AKIA2", "asked again when a file changed");
    assert_eq!(key(&base).await, "AKIA2");
}

#[tokio::test]
async fn expiring_credentials_are_kept_until_five_minutes_before_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let long = SystemTime::now() + EXPIRY_MARGIN + Duration::from_secs(60);
    let (base, calls) = counting(dir.path(), Some(long));
    key(&base).await;
    key(&base).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let short = SystemTime::now() + EXPIRY_MARGIN - Duration::from_secs(1);
    let (base, calls) = counting(dir.path(), Some(short));
    key(&base).await;
    key(&base).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "near expiry: asked again");
}

#[tokio::test]
async fn forget_makes_the_next_call_ask_the_sources_again() {
    let dir = tempfile::tempdir().unwrap();
    let (base, calls) = counting(dir.path(), None);
    assert_eq!(key(&base).await, "AKIA0");
    base.forget();
    assert_eq!(base.key_id(), None);
    assert_eq!(key(&base).await, "AKIA1");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// Fails at its first call on each build, then answers.
#[derive(Debug)]
struct FailsOnce(AtomicUsize);

impl ProvideCredentials for FailsOnce {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(
                aws_credential_types::provider::error::CredentialsError::not_loaded(
                    "token expired",
                ),
            )
        } else {
            Ok(Credentials::new("AKIAOK", "s", None, None, "test"))
        })
    }
}

#[tokio::test]
async fn a_source_that_failed_is_built_again_for_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let builds = Arc::new(AtomicUsize::new(0));
    let b = builds.clone();
    let base = FreshBase::new([dir.path().join("c"), dir.path().join("k")], move || {
        b.fetch_add(1, Ordering::SeqCst);
        FailsOnce(AtomicUsize::new(0))
    });
    assert!(base.provide_credentials().await.is_err());
    assert_eq!(
        builds.load(Ordering::SeqCst),
        2,
        "built again after failing"
    );
    // The new build fails once too: its state was not carried over.
    assert!(base.provide_credentials().await.is_err());
    assert_eq!(builds.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn static_keys_are_kept_for_fifteen_minutes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _calls) = counting(dir.path(), None);
    assert_eq!(key(&base).await, "AKIA0");
    tokio::time::advance(Duration::from_secs(14 * 60 + 59)).await;
    assert_eq!(key(&base).await, "AKIA0");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(key(&base).await, "AKIA1");
}

#[tokio::test]
async fn credentials_with_six_minutes_left_are_kept_and_with_four_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let six = SystemTime::now() + Duration::from_secs(6 * 60);
    let (base, calls) = counting(dir.path(), Some(six));
    key(&base).await;
    key(&base).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let four = SystemTime::now() + Duration::from_secs(4 * 60);
    let (base, calls) = counting(dir.path(), Some(four));
    key(&base).await;
    key(&base).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_rewrite_that_keeps_size_and_times_is_still_seen() {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials");
    write_key(&path, "AKIAOLD");
    let before = std::fs::metadata(&path).unwrap();
    let base = profile_base(dir.path());
    assert_eq!(key(&base).await, "AKIAOLD");
    // Same length, then the old times put back: only the content differs.
    write_key(&path, "AKIANEW");
    utimensat(
        None,
        &path,
        &TimeSpec::new(before.atime(), before.atime_nsec()),
        &TimeSpec::new(before.mtime(), before.mtime_nsec()),
        UtimensatFlags::FollowSymlink,
    )
    .unwrap();
    assert_eq!(key(&base).await, "AKIANEW");
}

#[test]
fn a_named_pipe_in_place_of_a_file_does_not_block_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _calls) = counting(dir.path(), None);
    nix::unistd::mkfifo(
        &dir.path().join("credentials"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    // On a thread of its own: a call that blocks fails the test, not the run.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let answered = rt.block_on(base.provide_credentials()).is_ok();
        let _ = tx.send(answered);
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)),
        Ok(true),
        "blocked on the named pipe"
    );
}

#[test]
fn debug_names_the_watched_files() {
    let base = FreshBase::new(["/a/config".into(), "/a/credentials".into()], || {
        Credentials::new("AKIAX", "the-secret", None, None, "t")
    });
    let shown = format!("{base:?}");
    assert!(
        shown.contains("/a/credentials") && !shown.contains("the-secret"),
        "{shown}"
    );
}

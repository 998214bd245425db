use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::clock::ManualClock;

fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn store() -> (tempfile::TempDir, Arc<ManualClock>, ConsumerTokens) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let tokens = ConsumerTokens::load(dir.path(), clock.clone()).unwrap();
    (dir, clock, tokens)
}

#[test]
fn a_created_token_is_valid_for_its_consumer_only() {
    let (_dir, _clock, tokens) = store();
    let a = tokens.create("web", None).unwrap();
    let b = tokens.create("batch", None).unwrap();
    assert!(a.token.starts_with(TOKEN_PREFIX));
    assert_eq!(a.token.len(), TOKEN_PREFIX.len() + 43);
    assert_ne!(*a.token, *b.token);
    assert_eq!(tokens.verify(&a.token), Verdict::Valid("web".into()));
    assert_eq!(tokens.verify(&b.token), Verdict::Valid("batch".into()));
    assert_eq!(tokens.verify("hrct-nothing"), Verdict::Unknown);
    assert_eq!(tokens.verify(""), Verdict::Unknown);
    // One character off is not the token.
    let mut off = a.token.to_string();
    off.pop();
    off.push('A');
    if off == *a.token {
        off.pop();
        off.push('B');
    }
    assert_eq!(tokens.verify(&off), Verdict::Unknown);
    assert_eq!(tokens.verify(&format!("{} ", *a.token)), Verdict::Unknown);
    assert_eq!(tokens.verify(&"x".repeat(10_000)), Verdict::Unknown);
}

#[test]
fn the_file_holds_hashes_never_tokens_and_is_private() {
    let (dir, clock, tokens) = store();
    let new = tokens
        .create("web", Some(Duration::from_secs(3600)))
        .unwrap();
    let path = dir.path().join(TOKENS_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(new.token.as_str()));
    assert!(!text.contains(&new.token[TOKEN_PREFIX.len()..]));
    assert!(text.contains(&hex::encode(digest(&new.token))));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // A restart knows the token, its consumer and its expiry.
    let again = ConsumerTokens::load(dir.path(), clock.clone()).unwrap();
    assert_eq!(again.verify(&new.token), Verdict::Valid("web".into()));
    assert_eq!(again.list(), tokens.list());
}

#[tokio::test(start_paused = true)]
async fn a_token_expires_at_its_time_and_not_before() {
    let (_dir, _clock, tokens) = store();
    let new = tokens.create("web", Some(Duration::from_secs(60))).unwrap();
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(tokens.verify(&new.token), Verdict::Valid("web".into()));
    assert_eq!(tokens.list()[0].state, "active");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(tokens.verify(&new.token), Verdict::Expired("web".into()));
    assert_eq!(tokens.list()[0].state, "expired");
    // An expired name may be given a new token; the old one stays dead.
    let renewed = tokens.create("web", None).unwrap();
    assert_eq!(tokens.verify(&renewed.token), Verdict::Valid("web".into()));
    assert_eq!(tokens.verify(&new.token), Verdict::Unknown);
}

#[test]
fn a_revoked_token_is_refused_at_once_and_after_a_restart() {
    let (dir, clock, tokens) = store();
    let web = tokens.create("web", None).unwrap();
    let batch = tokens.create("batch", None).unwrap();
    let view = tokens.revoke("web").unwrap();
    assert_eq!(view.state, "revoked");
    assert!(view.revoked.is_some());
    assert_eq!(tokens.verify(&web.token), Verdict::Revoked("web".into()));
    assert_eq!(tokens.verify(&batch.token), Verdict::Valid("batch".into()));
    let again = ConsumerTokens::load(dir.path(), clock).unwrap();
    assert_eq!(again.verify(&web.token), Verdict::Revoked("web".into()));
    assert!(matches!(
        tokens.revoke("web"),
        Err(ConsumerError::AlreadyRevoked(_))
    ));
    assert!(matches!(
        tokens.revoke("nobody"),
        Err(ConsumerError::NotFound(_))
    ));
}

#[test]
fn a_revocation_that_cannot_be_saved_still_takes_effect() {
    let (dir, _clock, tokens) = store();
    let web = tokens.create("web", None).unwrap();
    // A directory where the temporary file would go: the save fails.
    std::fs::create_dir(dir.path().join(format!(".{TOKENS_FILE}.tmp"))).unwrap();
    assert!(matches!(
        tokens.revoke("web"),
        Err(ConsumerError::Save { .. })
    ));
    assert_eq!(tokens.verify(&web.token), Verdict::Revoked("web".into()));
    // Revoking it again, once the disk is fixed, saves it.
    std::fs::remove_dir(dir.path().join(format!(".{TOKENS_FILE}.tmp"))).unwrap();
    assert!(matches!(
        tokens.revoke("web"),
        Err(ConsumerError::AlreadyRevoked(_))
    ));
    let again = ConsumerTokens::load(dir.path(), ManualClock::new(start())).unwrap();
    assert_eq!(again.verify(&web.token), Verdict::Revoked("web".into()));
}

#[test]
fn a_creation_that_cannot_be_saved_gives_no_token() {
    let (dir, _clock, tokens) = store();
    std::fs::create_dir(dir.path().join(format!(".{TOKENS_FILE}.tmp"))).unwrap();
    assert!(matches!(
        tokens.create("web", None),
        Err(ConsumerError::Save { .. })
    ));
    assert!(tokens.list().is_empty());
}

#[test]
fn names_lifetimes_and_duplicates_are_checked() {
    let (_dir, _clock, tokens) = store();
    for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
        assert!(
            matches!(tokens.create(bad, None), Err(ConsumerError::Name(_))),
            "{bad:?}"
        );
    }
    assert!(tokens.create(&"x".repeat(64), None).is_ok());
    assert!(tokens.create("a.b_c-D9", None).is_ok());
    assert!(matches!(
        tokens.create("web", Some(Duration::ZERO)),
        Err(ConsumerError::Lifetime)
    ));
    assert!(matches!(
        tokens.create("web", Some(MAX_LIFETIME + Duration::from_secs(1))),
        Err(ConsumerError::Lifetime)
    ));
    assert!(tokens.create("web", Some(MAX_LIFETIME)).is_ok());
    assert!(matches!(
        tokens.create("web", None),
        Err(ConsumerError::Exists(_))
    ));
}

#[test]
fn the_number_of_consumers_is_bounded() {
    let (_dir, _clock, tokens) = store();
    for i in 0..MAX_CONSUMERS {
        tokens.create(&format!("c{i}"), None).unwrap();
    }
    assert!(matches!(
        tokens.create("one-more", None),
        Err(ConsumerError::Full)
    ));
    // A revoked name is taken over without growing the list.
    tokens.revoke("c7").unwrap();
    assert!(tokens.create("c7", None).is_ok());
    assert_eq!(tokens.list().len(), MAX_CONSUMERS);
}

#[test]
fn a_full_store_is_read_back_at_start_and_one_more_is_refused() {
    let (dir, clock, tokens) = store();
    let mut last = None;
    for i in 0..MAX_CONSUMERS {
        last = Some(tokens.create(&format!("consumer-{i:04}"), None).unwrap());
    }
    // Every one of the thousand, hashes and names, fits the file read back.
    let again = ConsumerTokens::load(dir.path(), clock.clone()).unwrap();
    assert_eq!(again.list().len(), MAX_CONSUMERS);
    let last = last.unwrap();
    assert_eq!(
        again.verify(&last.token),
        Verdict::Valid("consumer-0999".into())
    );
    // A file with one more than a store ever writes is refused.
    let path = dir.path().join(TOKENS_FILE);
    let mut file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let extra = file["consumers"][0].clone();
    file["consumers"].as_array_mut().unwrap().push(extra);
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    let e = ConsumerTokens::load(dir.path(), clock)
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than 1000 consumers"), "{e}");
}

#[test]
fn a_token_may_live_ten_years_and_not_a_day_more() {
    let (_dir, _clock, tokens) = store();
    let ten_years = Duration::from_secs(3650 * 86_400);
    assert!(tokens.create("decade", Some(ten_years)).is_ok());
    assert!(matches!(
        tokens.create("longer", Some(ten_years + Duration::from_secs(86_400))),
        Err(ConsumerError::Lifetime)
    ));
}

#[test]
fn a_file_that_is_not_private_or_not_sound_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let path = dir.path().join(TOKENS_FILE);
    let load = || ConsumerTokens::load(dir.path(), clock.clone());
    std::fs::write(&path, r#"{"version":1,"consumers":[]}"#).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = load().unwrap_err().to_string();
    assert!(e.contains("others may read"), "{e}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(load().unwrap().list().is_empty());
    for (body, says) in [
        ("{", "EOF"),
        (r#"{"version":2,"consumers":[]}"#, "unknown version"),
        (
            r#"{"version":1,"consumers":[{"name":"a b","sha256":"00","created":1}]}"#,
            "64 hexadecimal",
        ),
        (
            &format!(
                r#"{{"version":1,"consumers":[{{"name":"a b","sha256":"{}","created":1}}]}}"#,
                "0".repeat(64)
            ),
            "invalid consumer name",
        ),
    ] {
        std::fs::write(&path, body).unwrap();
        let e = load().unwrap_err().to_string();
        assert!(e.contains(says), "{body}: {e}");
    }
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
    let e = load().unwrap_err().to_string();
    assert!(e.contains("symbolic link"), "{e}");
}

use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::clock::from_unix_seconds as at;
use crate::role::RoleArn;

fn assoc(role: &str) -> Association {
    Association {
        role: RoleArn::parse(&format!("arn:aws:iam::123456789012:role/{role}")).unwrap(),
        external_id: Some("ext-1".into()),
        session_name: "host-1".into(),
    }
}

fn creds() -> Credentials {
    Credentials {
        access_key_id: "ASIAKEPTKEPTKEPT0001".into(),
        secret_access_key: Zeroizing::new("kept-secret".into()),
        session_token: Zeroizing::new("kept-token".into()),
        expiration: at(1_800_003_600),
        last_updated: at(1_800_000_000),
    }
}

#[test]
fn credentials_round_trip_privately_for_their_association_and_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let store = CredentialStore::new(dir.path(), "sts");
    assert!(store.load(&assoc("demo")).unwrap().is_none());
    store
        .store(&assoc("demo"), &creds(), at(1_800_001_800))
        .unwrap();
    let mode = fs::metadata(store.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let back = store.load(&assoc("demo")).unwrap().unwrap();
    assert_eq!(back.credentials.access_key_id, "ASIAKEPTKEPTKEPT0001");
    assert_eq!(*back.credentials.secret_access_key, "kept-secret");
    assert_eq!(*back.credentials.session_token, "kept-token");
    assert_eq!(back.credentials.expiration, at(1_800_003_600));
    assert_eq!(back.credentials.last_updated, at(1_800_000_000));
    assert_eq!(back.next_refresh, at(1_800_001_800));

    // Another role, another session name or external id, another issuer:
    // refused, and said why.
    let err = store.load(&assoc("other")).unwrap_err();
    assert!(err.contains("another association"), "{err}");
    let mut renamed = assoc("demo");
    renamed.session_name = "host-2".into();
    assert!(store.load(&renamed).is_err());
    let mut no_external = assoc("demo");
    no_external.external_id = None;
    assert!(store.load(&no_external).is_err());
    let err = CredentialStore::new(dir.path(), "roles-anywhere")
        .load(&assoc("demo"))
        .unwrap_err();
    assert!(err.contains("issued by sts"), "{err}");
    // Nothing secret in any refusal.
    assert!(!err.contains("kept-"));
    // Other session attributes: refused.
    let tagged = store.clone().with_session_attributes("1a2b3c".into());
    let err = tagged.load(&assoc("demo")).unwrap_err();
    assert_eq!(err, "issued with other session attributes");

    store.wipe().unwrap();
    assert!(!store.path().exists());
    assert!(store.load(&assoc("demo")).unwrap().is_none());
    store.wipe().unwrap();
}

#[test]
fn a_file_others_could_read_or_plant_is_never_used() {
    let dir = tempfile::tempdir().unwrap();
    let store = CredentialStore::new(dir.path(), "sts");
    store
        .store(&assoc("demo"), &creds(), at(1_800_001_800))
        .unwrap();
    let path = store.path();

    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let err = store.load(&assoc("demo")).unwrap_err();
    assert!(err.contains("mode 640"), "{err}");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();

    // Another user's file (only root can make one here).
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let err = store.load(&assoc("demo")).unwrap_err();
        assert!(err.contains("owned by uid 65534"), "{err}");
        std::os::unix::fs::chown(&path, Some(0), None).unwrap();
    }

    // A symbolic link to a good file is refused, not followed.
    let real = dir.path().join("real.json");
    fs::rename(&path, &real).unwrap();
    std::os::unix::fs::symlink(&real, &path).unwrap();
    let err = store.load(&assoc("demo")).unwrap_err();
    assert!(err.contains("a symbolic link, not followed"), "{err}");
    fs::remove_file(&path).unwrap();

    // A FIFO does not block the reader.
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let err = store.load(&assoc("demo")).unwrap_err();
    assert!(err.contains("not a regular file"), "{err}");
    fs::remove_file(&path).unwrap();

    // Exactly the largest size is read whole (the document after 64 KiB
    // less its length of leading white space); one byte more is refused.
    store
        .store(&assoc("demo"), &creds(), at(1_800_001_800))
        .unwrap();
    let doc = fs::read(&path).unwrap();
    let mut padded = vec![b' '; MAX_BYTES as usize - doc.len()];
    padded.extend_from_slice(&doc);
    fs::write(&path, &padded).unwrap();
    let back = store.load(&assoc("demo")).unwrap().unwrap();
    assert_eq!(back.credentials.access_key_id, "ASIAKEPTKEPTKEPT0001");
    fs::remove_file(&path).unwrap();

    // Too large, or not the format.
    fs::write(&path, vec![b' '; MAX_BYTES as usize + 1]).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(store.load(&assoc("demo")).unwrap_err().contains("larger"));
    fs::write(&path, b"{\"version\":1,").unwrap();
    assert!(store.load(&assoc("demo")).unwrap_err().contains("corrupt"));
    fs::write(&path, br#"{"version":2}"#).unwrap();
    assert!(store.load(&assoc("demo")).unwrap_err().contains("corrupt"));
}

#[test]
fn an_empty_key_id_secret_or_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = CredentialStore::new(dir.path(), "sts");
    for emptied in 0..3 {
        let mut c = creds();
        match emptied {
            0 => c.access_key_id = String::new(),
            1 => c.secret_access_key = Zeroizing::new(String::new()),
            _ => c.session_token = Zeroizing::new(String::new()),
        }
        store.store(&assoc("demo"), &c, at(1_800_001_800)).unwrap();
        assert_eq!(
            store.load(&assoc("demo")).unwrap_err(),
            "incomplete",
            "{emptied}"
        );
    }
}

#[test]
fn credentials_are_kept_for_the_session_attributes_they_were_issued_with() {
    let dir = tempfile::tempdir().unwrap();
    let tagged = CredentialStore::new(dir.path(), "sts").with_session_attributes("1a2b3c".into());
    tagged
        .store(&assoc("demo"), &creds(), at(1_800_001_800))
        .unwrap();
    assert!(tagged.load(&assoc("demo")).unwrap().is_some());
    let other = CredentialStore::new(dir.path(), "sts").with_session_attributes("4d5e6f".into());
    assert!(other.load(&assoc("demo")).is_err());
    let none = CredentialStore::new(dir.path(), "sts");
    assert!(none.load(&assoc("demo")).is_err());
    // A file from before session attributes, or kept without any, has no
    // fingerprint, and is for a start without them.
    none.store(&assoc("demo"), &creds(), at(1_800_001_800))
        .unwrap();
    let text = fs::read_to_string(none.path()).unwrap();
    assert!(!text.contains("session-attributes"), "{text}");
    assert!(none.load(&assoc("demo")).unwrap().is_some());
    assert!(tagged.load(&assoc("demo")).is_err());
}

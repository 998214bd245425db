use std::os::unix::fs::PermissionsExt;

use super::*;

const FILE: &str = "# the host's keys\n[other]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = other-secret\n\n[default]\nregion=eu-west-1\nAWS_ACCESS_KEY_ID=AKIAOLD\naws_secret_access_key =  old-secret  \n[last]\nx = 1";

fn key(id: &str, secret: &str) -> AccessKey {
    AccessKey {
        id: id.into(),
        secret: Zeroizing::new(secret.into()),
    }
}

fn file_with(text: &str, profile: &str) -> (tempfile::TempDir, KeyFile) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    (
        dir,
        KeyFile {
            path,
            profile: profile.into(),
        },
    )
}

#[test]
fn the_profiles_key_is_read_from_its_own_section() {
    let (_d, f) = file_with(FILE, "default");
    assert_eq!(f.read().unwrap(), key("AKIAOLD", "old-secret"));
    let (_d, f) = file_with(FILE, "other");
    assert_eq!(f.read().unwrap(), key("AKIAOTHER", "other-secret"));
}

#[test]
fn only_the_profiles_two_lines_change_and_the_file_becomes_private() {
    let (_d, f) = file_with(FILE, "default");
    f.write(&key("AKIANEW", "new-secret")).unwrap();
    let after = std::fs::read_to_string(&f.path).unwrap();
    assert_eq!(
        after,
        FILE.replace("AWS_ACCESS_KEY_ID=AKIAOLD", "aws_access_key_id = AKIANEW")
            .replace(
                "aws_secret_access_key =  old-secret  ",
                "aws_secret_access_key = new-secret"
            )
    );
    assert_eq!(f.read().unwrap(), key("AKIANEW", "new-secret"));
    let mode = std::fs::metadata(&f.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_linked_file_is_written_at_its_target_and_the_link_stays() {
    let (dir, target) = file_with(FILE, "default");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target.path, &link).unwrap();
    let f = KeyFile {
        path: link.clone(),
        profile: "default".into(),
    };
    f.write(&key("AKIANEW", "s")).unwrap();
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(target.read().unwrap().id, "AKIANEW");
}

#[test]
fn a_profile_without_a_user_key_is_refused_and_left_alone() {
    for (text, profile, says) in [
        (FILE, "missing", "profile missing has no aws_access_key_id"),
        ("[default]\naws_access_key_id = A\n", "default", "has no"),
        (
            "[default]\naws_access_key_id =\naws_secret_access_key = s\n",
            "default",
            "has no",
        ),
        (
            "[default]\naws_access_key_id = A\naws_secret_access_key =\n",
            "default",
            "has no",
        ),
        (
            "[default]\naws_access_key_id=ASIA1\naws_secret_access_key=s\naws_session_token=t\n",
            "default",
            "temporary credentials",
        ),
    ] {
        let (_d, f) = file_with(text, profile);
        let e = f.read().unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
        // A profile that lacks one of the two lines is not written either;
        // one with an empty value has both lines, which a write fills.
        if !text.contains("session_token") && !text.contains("=\n") {
            assert!(f.write(&key("AKIANEW", "s")).is_err());
            assert_eq!(std::fs::read_to_string(&f.path).unwrap(), text);
        }
    }
}

#[test]
fn a_missing_file_is_named() {
    let f = KeyFile {
        path: "/nonexistent/credentials".into(),
        profile: "default".into(),
    };
    let e = f.read().unwrap_err().to_string();
    assert!(
        e.starts_with("cannot read /nonexistent/credentials: "),
        "{e}"
    );
}

#[test]
fn the_secret_never_reaches_debug_output() {
    let shown = format!("{:?}", key("AKIANEW", "very-secret"));
    assert!(
        shown.contains("AKIANEW") && !shown.contains("very-secret"),
        "{shown}"
    );
}

#[test]
fn the_profile_is_aws_profile_unless_unset_or_blank() {
    let p = |v: Option<&str>| KeyFile::for_profile("/f".into(), v.map(str::to_owned)).profile;
    assert_eq!(p(Some("host")), "host");
    assert_eq!(p(None), "default");
    assert_eq!(p(Some("  ")), "default");
}

use super::*;
use crate::daemon::config::parse_file;

fn host() -> HostFacts {
    HostFacts {
        hostname: "web-01".into(),
        instance_id: "i-0123456789abcdef0".into(),
    }
}

fn parse(text: &str) -> FileConfig {
    parse_file(Path::new("/etc/hostrole/hostrole.toml"), text).unwrap()
}

fn resolve_text(text: &str, issuer: IssuerKind) -> Result<SessionAttributes, String> {
    resolve_for(&mut parse(text), &mut FileConfig::default(), issuer, host)
        .map_err(|e| e.to_string())
}

#[test]
fn placeholders_expand_in_the_source_identity_and_tag_values() {
    let a = resolve_text(
        "source-identity = \"{hostname}\"\n\
         transitive-tag-keys = [\"host\"]\n\
         policy-arns = [\"arn:aws:iam::aws:policy/ReadOnlyAccess\"]\n\
         [session-tags]\n\
         host = \"{hostname}\"\n\
         instance = \"{instance-id}\"\n\
         team = \"payments\"\n",
        IssuerKind::Sts,
    )
    .unwrap();
    assert_eq!(a.source_identity.as_deref(), Some("web-01"));
    assert_eq!(
        a.tags,
        [
            ("host".to_owned(), "web-01".to_owned()),
            ("instance".to_owned(), "i-0123456789abcdef0".to_owned()),
            ("team".to_owned(), "payments".to_owned()),
        ]
    );
    assert_eq!(a.transitive_tag_keys, ["host"]);
    assert_eq!(a.policy_arns, ["arn:aws:iam::aws:policy/ReadOnlyAccess"]);
    assert!(a.policy.is_none());
}

#[test]
fn nothing_set_is_nothing_sent() {
    assert_eq!(
        resolve_text("", IssuerKind::Sts).unwrap(),
        SessionAttributes::default()
    );
}

#[test]
fn each_bad_value_is_an_error_starting_with_its_key() {
    let many: String = (0..51).map(|i| format!("k{i} = \"v\"\n")).collect();
    for (text, start, says) in [
        (
            "source-identity = \"a\"\n",
            "source-identity: ",
            "STS takes 2 to 64",
        ),
        (
            "source-identity = \"{host}\"\n",
            "source-identity: ",
            "unknown placeholder {host}",
        ),
        (
            "source-identity = \"{hostname}:{instance-id}\"\n",
            "source-identity: ",
            "(from \"{hostname}:{instance-id}\")",
        ),
        (
            &format!("[session-tags]\n{many}"),
            "session-tags: ",
            "51 tags; STS takes at most 50",
        ),
        (
            "session-tags = { host = \"{hostnme}\" }\n",
            "session-tags: the value of \"host\": ",
            "unknown placeholder {hostnme}",
        ),
        (
            "session-tags = { \"aws:x\" = \"v\" }\n",
            "session-tags: ",
            "\"aws:\"",
        ),
        (
            "transitive-tag-keys = [\"host\"]\n",
            "transitive-tag-keys: ",
            "not a key of session-tags",
        ),
        (
            "policy-arns = [\"x\"]\n",
            "policy-arns: ",
            "not a managed policy ARN",
        ),
        (
            "session-policy = \"/nonexistent/policy.json\"\n",
            "session-policy: ",
            "/nonexistent/policy.json",
        ),
    ] {
        let e = resolve_text(text, IssuerKind::Sts).unwrap_err();
        assert!(e.starts_with(start) && e.contains(says), "{text}: {e}");
    }
}

#[test]
fn a_relative_policy_path_is_refused_where_it_is_read() {
    let e = parse_file(Path::new("/c.toml"), "session-policy = \"policy.json\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("must be an absolute path") && e.contains("line 1"),
        "{e}"
    );
}

#[test]
fn the_policy_file_is_read_and_packed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.json");
    std::fs::write(&path, "{\n  \"Version\": \"2012-10-17\"\n}\n").unwrap();
    let a = resolve_text(
        &format!("session-policy = \"{}\"\n", path.display()),
        IssuerKind::Sts,
    )
    .unwrap();
    let policy = a.policy.unwrap();
    assert_eq!(policy.path, path);
    assert_eq!(policy.packed, "{\"Version\":\"2012-10-17\"}");
}

#[test]
fn another_issuer_refuses_each_key_by_name() {
    for (key, text) in [
        ("source-identity", "source-identity = \"web-01\"\n"),
        ("session-tags", "session-tags = { host = \"web-01\" }\n"),
        ("transitive-tag-keys", "transitive-tag-keys = []\n"),
        (
            "session-policy",
            "session-policy = \"/etc/hostrole/policy.json\"\n",
        ),
        ("policy-arns", "policy-arns = []\n"),
    ] {
        let e = resolve_text(text, IssuerKind::RolesAnywhere).unwrap_err();
        assert_eq!(
            e,
            format!("{key}: only used with issuer = \"sts\" (Roles Anywhere's CreateSession takes no session attributes)")
        );
        let e = resolve_text(text, IssuerKind::Local).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{key}: only used with issuer = \"sts\" (the local issuer calls no AWS service)"
            )
        );
    }
    assert_eq!(
        resolve_text("", IssuerKind::Local).unwrap(),
        SessionAttributes::default()
    );
}

#[test]
fn the_settings_carry_the_attributes_and_a_change_needs_a_restart() {
    use crate::daemon::config::{resolve, summary};
    let base = "state-dir = \"/tmp/s\"\nsource-identity = \"web-01\"\n";
    let running = resolve(parse(base), FileConfig::default(), None).unwrap();
    assert_eq!(running.session.source_identity.as_deref(), Some("web-01"));
    let new = resolve(
        parse(&format!(
            "{base}policy-arns = [\"arn:aws:iam::aws:policy/ReadOnlyAccess\"]\nsession-tags = {{ team = \"a\" }}\n"
        )),
        FileConfig::default(),
        None,
    )
    .unwrap();
    let mut named = summary::restart_needed(&new, &running);
    named.sort_unstable();
    assert_eq!(named, ["policy-arns", "session-tags"]);
    let text = summary::describe(&new);
    let line = |key: &str, value: &str| format!("  {:<26}{value}\n", format!("{key}:"));
    for (key, value) in [
        ("source-identity", "web-01"),
        ("session-tags", "{ \"team\" = \"a\" }"),
        ("transitive-tag-keys", "none"),
        ("session-policy", "none"),
        ("policy-arns", "arn:aws:iam::aws:policy/ReadOnlyAccess"),
    ] {
        assert!(text.contains(&line(key, value)), "{text}");
    }
    // The local issuer refuses them through the whole resolution too.
    let e = resolve(
        parse(&format!("issuer = \"local\"\n{base}")),
        FileConfig::default(),
        None,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("source-identity: only used with issuer = \"sts\""),
        "{e}"
    );
}

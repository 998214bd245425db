use std::path::Path;

use super::values::{AbsolutePath, EndpointUrl, RegionName};
use super::*;

fn parse(text: &str) -> Result<FileConfig, ConfigError> {
    parse_file(Path::new("/etc/hostrole/hostrole.toml"), text)
}

#[test]
fn unknown_keys_are_rejected_with_name_and_line() {
    let err = parse("issuer = \"local\"\n\nrole-arns = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("role-arns"), "{err}");
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("/etc/hostrole/hostrole.toml"), "{err}");
}

#[test]
fn more_than_one_role_is_rejected() {
    let err = parse(
        "role-arn = [\"arn:aws:iam::123456789012:role/a\", \"arn:aws:iam::123456789012:role/b\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("role-arn"), "{err}");
}

#[test]
fn flags_override_the_file() {
    let file = parse(
        "listen = [\"127.0.0.1:9000\"]\nissuer = \"local\"\nregion = \"eu-west-1\"\nimds-v1 = \"allowed\"\nstate-dir = \"/tmp/x\"\n",
    )
    .unwrap();
    let flags = FileConfig {
        region: flag("region", Some("us-west-2")).unwrap(),
        role_arn: flag("role-arn", Some("arn:aws:iam::123456789012:role/demo")).unwrap(),
        ..FileConfig::default()
    };
    let s = resolve(file, flags, None).unwrap();
    assert_eq!(
        s.listen,
        vec!["127.0.0.1:9000".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(s.region.as_deref(), Some("us-west-2"));
    assert_eq!(s.issuer, IssuerKind::Local);
    assert!(s.imds_v1);
    assert_eq!(s.association.unwrap().role.name(), "demo");
}

#[test]
fn defaults_are_safe() {
    let s = resolve(
        FileConfig::default(),
        parse("state-dir = \"/tmp/s\"\n").unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(s.issuer, IssuerKind::Sts);
    assert!(!s.imds_v1, "IMDSv1 is off by default");
    assert_eq!(
        s.listen,
        vec![DEFAULT_LISTEN.parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(s.session_duration, Duration::from_secs(3600));
    assert_eq!(s.hop_limit, DEFAULT_HOP_LIMIT);
    assert!(s.association.is_none());
}

/// Each bad value, in the file, names the file, the line and the key;
/// as a flag, the message starts with the key.
#[test]
fn bad_values_are_named() {
    let cases: [(&str, &str, &str); 9] = [
        ("listen", "listen = [\"localhost\"]", "localhost"),
        ("role-arn", "role-arn = \"demo\"", "demo"),
        ("sts-endpoint", "sts-endpoint = \"moto:5000\"", "moto:5000"),
        ("iam-endpoint", "iam-endpoint = \"moto:5000\"", "moto:5000"),
        ("region", "region = \"US East\"", "US East"),
        (
            "availability-zone",
            "availability-zone = \"Zone A\"",
            "Zone A",
        ),
        ("state-dir", "state-dir = \"relative\"", "relative"),
        ("metrics-listen", "metrics-listen = \"x\"", "x"),
        ("hop-limit", "hop-limit = 256", "256"),
    ];
    for (key, line, value) in cases {
        let err = parse(&format!("issuer = \"local\"\n{line}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/etc/hostrole/hostrole.toml")
                && err.contains("line 2")
                && err.contains(key),
            "{key}: {err}"
        );
        assert!(err.contains(value), "{key}: {err}");
    }
    let flags: [(&str, Result<(), ConfigError>); 4] = [
        (
            "listen",
            flag::<ListenAddr>("listen", Some("localhost")).map(drop),
        ),
        ("role-arn", flag::<Role>("role-arn", Some("demo")).map(drop)),
        (
            "sts-endpoint",
            flag::<EndpointUrl>("sts-endpoint", Some("moto:5000")).map(drop),
        ),
        (
            "region",
            flag::<RegionName>("region", Some("US East")).map(drop),
        ),
    ];
    for (key, result) in flags {
        let err = result.unwrap_err().to_string();
        assert!(err.starts_with(key), "{key}: {err}");
    }
    // What only the whole configuration can check.
    let whole: [(FileConfig, &str); 3] = [
        (
            FileConfig {
                session_duration_seconds: Some(60),
                ..Default::default()
            },
            "session-duration-seconds",
        ),
        (
            FileConfig {
                session_name: Some("a b".into()),
                ..Default::default()
            },
            "session-name",
        ),
        (
            FileConfig {
                external_id: Some("x".into()),
                ..Default::default()
            },
            "external-id",
        ),
    ];
    for (flags, key) in whole {
        let err = resolve(FileConfig::default(), flags, None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(key), "{key}: {err}");
    }
}

#[test]
fn the_local_issuer_allows_short_sessions() {
    let flags = FileConfig {
        issuer: Some(IssuerKind::Local),
        session_duration_seconds: Some(60),
        state_dir: Some(AbsolutePath("/tmp/s".into())),
        ..FileConfig::default()
    };
    assert!(resolve(FileConfig::default(), flags, None).is_ok());
}

#[test]
fn a_reload_names_every_changed_key_that_needs_a_restart() {
    let base = "issuer = \"local\"\nstate-dir = \"/tmp/s\"\nrole-arn = \"arn:aws:iam::123456789012:role/a\"\n";
    let running = resolve(parse(base).unwrap(), FileConfig::default(), None).unwrap();
    let changed = format!(
        "{base}hop-limit = 2\nallowed-uids = [0]\nlisten = [\"127.0.0.1:9\"]\nimds-v1 = \"allowed\"\n"
    )
    .replace("role/a", "role/b");
    let new = resolve(parse(&changed).unwrap(), FileConfig::default(), None).unwrap();
    let mut named = summary::restart_needed(&new, &running);
    named.sort_unstable();
    assert_eq!(named, ["allowed-uids", "hop-limit", "imds-v1", "listen"]);
    assert!(summary::restart_needed(&running, &running).is_empty());
    // --check-config prints every key.
    let text = summary::describe(&new);
    for key in keys::KEYS {
        assert!(text.contains(&format!("{}:", key.name)), "{text}");
    }
}

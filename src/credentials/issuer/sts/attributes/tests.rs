use super::*;

fn host() -> HostFacts {
    HostFacts {
        hostname: "web-01.example.com".into(),
        instance_id: "i-0123456789abcdef0".into(),
    }
}

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// `check_tags` with each value its own template.
fn check(pairs: &[(&str, &str)]) -> Result<(), String> {
    let t = tags(pairs);
    let templates: Vec<&str> = pairs.iter().map(|(_, v)| *v).collect();
    check_tags(&t, &templates)
}

#[test]
fn placeholders_expand_to_the_hosts_name_and_instance_id() {
    assert_eq!(
        expand("{hostname}/{instance-id}:{hostname}", &host()).unwrap(),
        "web-01.example.com/i-0123456789abcdef0:web-01.example.com"
    );
    assert_eq!(expand("plain", &host()).unwrap(), "plain");
    assert_eq!(expand("", &host()).unwrap(), "");
    assert_eq!(expand("a}b", &host()).unwrap(), "a}b");
}

#[test]
fn an_unknown_or_unclosed_placeholder_is_named() {
    let e = expand("host-{host}", &host()).unwrap_err();
    assert!(
        e.starts_with("unknown placeholder {host} in \"host-{host}\""),
        "{e}"
    );
    assert!(
        e.contains("{hostname}") && e.contains("{instance-id}"),
        "{e}"
    );
    let e = expand("{instance-id", &host()).unwrap_err();
    assert!(e.contains("a { without its }"), "{e}");
    let e = expand("{hostname}{}", &host()).unwrap_err();
    assert!(e.contains("unknown placeholder {}"), "{e}");
}

#[test]
fn a_source_identity_is_2_to_64_of_stss_characters() {
    let ok = |s: &str| check_source_identity(s, s);
    assert!(ok("ab").is_ok());
    assert!(ok(&"a".repeat(64)).is_ok());
    assert!(ok("A-Z_a+z=0,9.x@y-").is_ok());
    let e = ok("a").unwrap_err();
    assert!(e.contains("1 characters; STS takes 2 to 64"), "{e}");
    let e = ok(&"a".repeat(65)).unwrap_err();
    assert!(e.contains("65 characters; STS takes 2 to 64"), "{e}");
    for bad in ["web 01", "web/01", "web:01", "wéb", "web\n"] {
        let e = ok(bad).unwrap_err();
        assert!(e.contains("contains"), "{bad}: {e}");
    }
    for reserved in ["aws:host", "AWS:host", "Aws:x"] {
        let e = ok(reserved).unwrap_err();
        assert!(e.contains("starts with \"aws:\""), "{reserved}: {e}");
    }
    assert!(ok("awsx").is_ok());
}

#[test]
fn a_source_identity_error_shows_what_it_was_expanded_from() {
    let long = "x".repeat(60);
    let e = check_source_identity(&format!("{long}-web-01"), "{hostname}-web-01").unwrap_err();
    assert!(e.contains("(from \"{hostname}-web-01\")"), "{e}");
    assert!(e.contains("67 characters"), "{e}");
}

#[test]
fn at_most_50_tags() {
    let fifty: Vec<(String, String)> = (0..50).map(|i| (format!("k{i}"), "v".into())).collect();
    let templates = vec!["v"; 51];
    assert!(check_tags(&fifty, &templates).is_ok());
    let mut fifty_one = fifty.clone();
    fifty_one.push(("k50".into(), "v".into()));
    let e = check_tags(&fifty_one, &templates).unwrap_err();
    assert_eq!(e, "51 tags; STS takes at most 50");
}

#[test]
fn tag_keys_are_1_to_128_characters_and_values_up_to_256() {
    let k128 = "k".repeat(128);
    let k129 = "k".repeat(129);
    let v256 = "v".repeat(256);
    let v257 = "v".repeat(257);
    assert!(check(&[(&k128, "v")]).is_ok());
    let e = check(&[(&k129, "v")]).unwrap_err();
    assert!(e.contains("is 129 characters; STS takes 1 to 128"), "{e}");
    let e = check(&[("", "v")]).unwrap_err();
    assert!(e.contains("is 0 characters; STS takes 1 to 128"), "{e}");
    assert!(check(&[("k", &v256)]).is_ok());
    assert!(check(&[("k", "")]).is_ok());
    let e = check(&[("k", &v257)]).unwrap_err();
    assert!(
        e.contains("is 257 characters; STS takes at most 256"),
        "{e}"
    );
    // Characters, not bytes.
    assert!(check(&[(&"é".repeat(128), &"ü".repeat(256))]).is_ok());
    assert!(check(&[(&"é".repeat(129), "v")]).is_err());
    assert!(check(&[("k", &"ü".repeat(257))]).is_err());
}

#[test]
fn tags_take_letters_digits_spaces_and_a_few_signs() {
    assert!(check(&[("Host name_1.a:b/c=d+e-f@g", "Wébserver 3\u{a0}_.:/=+-@")]).is_ok());
    assert!(check(&[("数据", "١٢٣")]).is_ok());
    for bad in ["a!b", "a\tb", "a{b", "a\"b", "a,b"] {
        let e = check(&[(bad, "v")]).unwrap_err();
        assert!(e.starts_with(&format!("the key {bad:?} contains")), "{e}");
        let e = check(&[("k", bad)]).unwrap_err();
        assert!(e.starts_with("the value of \"k\""), "{e}");
        assert!(e.contains("contains"), "{e}");
    }
}

#[test]
fn tag_keys_are_unique_ignoring_case_and_not_awss() {
    let e = check(&[("Host", "a"), ("team", "b"), ("HOST", "c")]).unwrap_err();
    assert!(
        e.contains("\"Host\" and \"HOST\" differ only in case"),
        "{e}"
    );
    assert!(check(&[("Host", "a"), ("Hosts", "a")]).is_ok());
    for reserved in ["aws:host", "AWS:Host"] {
        let e = check(&[(reserved, "v")]).unwrap_err();
        assert!(e.contains("starts with \"aws:\""), "{e}");
    }
    assert!(check(&[("aws", "v"), ("awsx:y", "v")]).is_ok());
}

#[test]
fn a_tag_value_error_shows_what_it_was_expanded_from() {
    let t = tags(&[("host", "web!01")]);
    let e = check_tags(&t, &["{hostname}"]).unwrap_err();
    assert!(e.contains("\"web!01\" (from \"{hostname}\")"), "{e}");
}

#[test]
fn transitive_keys_are_keys_of_the_tags_as_written() {
    let t = tags(&[("host", "a"), ("team", "b")]);
    assert!(check_transitive_keys(&[], &t).is_ok());
    assert!(check_transitive_keys(&["team".into(), "host".into()], &t).is_ok());
    let e = check_transitive_keys(&["owner".into()], &t).unwrap_err();
    assert!(
        e.starts_with("\"owner\" is not a key of session-tags"),
        "{e}"
    );
    assert!(check_transitive_keys(&["Host".into()], &t).is_err());
    let e = check_transitive_keys(&["host".into(), "host".into()], &t).unwrap_err();
    assert!(e.contains("listed twice"), "{e}");
}

#[test]
fn at_most_10_managed_policy_arns_of_the_right_shape() {
    let arn = |i: usize| format!("arn:aws:iam::123456789012:policy/p{i}");
    let ten: Vec<String> = (0..10).map(arn).collect();
    assert!(check_policy_arns(&ten).is_ok());
    let mut eleven = ten.clone();
    eleven.push(arn(10));
    assert_eq!(
        check_policy_arns(&eleven).unwrap_err(),
        "11 policies; STS takes at most 10"
    );
    for good in [
        "arn:aws:iam::aws:policy/ReadOnlyAccess",
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        "arn:aws-cn:iam::123456789012:policy/a/b/name_+=,.@-",
        "arn:aws-us-gov:iam::123456789012:policy/x",
    ] {
        assert!(check_policy_arns(&[good.into()]).is_ok(), "{good}");
    }
    for bad in [
        "arn:aws:iam::123456789012:role/app",
        "arn:aws:iam::123456789012:policy/",
        "arn:aws:iam::123456789012:policy/path/",
        "arn:aws:iam::12345678901:policy/p",
        "arn:aws:iam::12345678901x:policy/p",
        "arn:aws:iam:us-east-1:123456789012:policy/p",
        "arn:aws:s3::123456789012:policy/p",
        "arn:gcp:iam::123456789012:policy/p",
        "arn:AWS:iam::123456789012:policy/p",
        "arn:aws:iam::123456789012:policy/a b",
        "ReadOnlyAccess",
        "",
    ] {
        let e = check_policy_arns(&[bad.into()]).unwrap_err();
        assert!(
            e.starts_with(&format!("{bad:?} is not a managed policy ARN")),
            "{e}"
        );
    }
}

fn client() -> aws_sdk_sts::Client {
    let conf = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .build();
    aws_sdk_sts::Client::from_conf(conf)
}

#[test]
fn every_attribute_set_goes_into_the_call() {
    let attributes = SessionAttributes {
        source_identity: Some("web-01".into()),
        tags: tags(&[("host", "web-01"), ("team", "a")]),
        transitive_tag_keys: vec!["host".into()],
        policy: Some(SessionPolicy {
            path: "/p.json".into(),
            packed: "{\"Version\":\"2012-10-17\"}".into(),
        }),
        policy_arns: vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()],
    };
    let call = client().assume_role().session_attributes(&attributes);
    let input = call.as_input();
    assert_eq!(input.get_source_identity().as_deref(), Some("web-01"));
    let sent: Vec<(&str, &str)> = input
        .get_tags()
        .as_ref()
        .unwrap()
        .iter()
        .map(|t| (t.key(), t.value()))
        .collect();
    assert_eq!(sent, [("host", "web-01"), ("team", "a")]);
    assert_eq!(
        input.get_transitive_tag_keys().as_deref(),
        Some(&["host".to_owned()][..])
    );
    assert_eq!(
        input.get_policy().as_deref(),
        Some("{\"Version\":\"2012-10-17\"}")
    );
    let arns: Vec<Option<&str>> = input
        .get_policy_arns()
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.arn())
        .collect();
    assert_eq!(arns, [Some("arn:aws:iam::aws:policy/ReadOnlyAccess")]);
}

#[test]
fn no_attribute_set_sends_none_of_them() {
    let call = client()
        .assume_role()
        .session_attributes(&SessionAttributes::default());
    let input = call.as_input();
    assert!(input.get_source_identity().is_none());
    assert!(input.get_tags().is_none());
    assert!(input.get_transitive_tag_keys().is_none());
    assert!(input.get_policy().is_none());
    assert!(input.get_policy_arns().is_none());
}

#[test]
fn a_refusal_is_explained_by_the_attributes_sent() {
    let none = Sent::default();
    let tags = Sent {
        tags: true,
        source_identity: false,
    };
    let identity = Sent {
        tags: false,
        source_identity: true,
    };
    let both = Sent {
        tags: true,
        source_identity: true,
    };
    assert_eq!(none.hint("AccessDenied"), None);
    assert_eq!(
        tags.hint("AccessDenied").unwrap(),
        "with session-tags or source-identity set, the role's trust policy must also allow sts:TagSession"
    );
    assert!(identity
        .hint("AccessDenied")
        .unwrap()
        .ends_with("must also allow sts:SetSourceIdentity"));
    assert!(both
        .hint("AccessDenied")
        .unwrap()
        .ends_with("must also allow sts:TagSession and sts:SetSourceIdentity"));
    for sent in [none, both] {
        let h = sent.hint("PackedPolicyTooLarge").unwrap();
        assert!(
            h.contains("session-tags") && h.contains("session-policy") && h.contains("policy-arns"),
            "{h}"
        );
    }
    assert_eq!(both.hint("ValidationError"), None);
    assert_eq!(both.hint("Throttling"), None);
}

#[test]
fn sent_says_which_attributes_a_call_carries() {
    assert_eq!(SessionAttributes::default().sent(), Sent::default());
    let a = SessionAttributes {
        tags: tags(&[("k", "v")]),
        ..SessionAttributes::default()
    };
    assert_eq!(
        a.sent(),
        Sent {
            tags: true,
            source_identity: false
        }
    );
    let a = SessionAttributes {
        source_identity: Some("ab".into()),
        policy_arns: vec!["arn:aws:iam::aws:policy/x".into()],
        ..SessionAttributes::default()
    };
    assert_eq!(
        a.sent(),
        Sent {
            tags: false,
            source_identity: true
        }
    );
}

#[test]
fn the_fingerprint_changes_with_every_attribute_and_is_empty_for_none() {
    assert_eq!(SessionAttributes::default().fingerprint(), "");
    let base = SessionAttributes {
        source_identity: Some("web-01".into()),
        ..SessionAttributes::default()
    };
    let fp = base.fingerprint();
    assert_eq!(fp.len(), 32);
    assert_eq!(fp, base.clone().fingerprint());
    let policy = SessionPolicy {
        path: "/p.json".into(),
        packed: "{}".into(),
    };
    let variants = [
        SessionAttributes {
            source_identity: Some("web-02".into()),
            ..base.clone()
        },
        SessionAttributes {
            tags: tags(&[("k", "v")]),
            ..base.clone()
        },
        SessionAttributes {
            tags: tags(&[("k", "v")]),
            transitive_tag_keys: vec!["k".into()],
            ..base.clone()
        },
        SessionAttributes {
            policy: Some(policy),
            ..base.clone()
        },
        SessionAttributes {
            policy_arns: vec!["arn:aws:iam::aws:policy/x".into()],
            ..base.clone()
        },
    ];
    let mut seen = vec![fp];
    for v in variants {
        let f = v.fingerprint();
        assert!(!seen.contains(&f), "{v:?}");
        seen.push(f);
    }
}

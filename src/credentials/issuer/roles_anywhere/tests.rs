use super::*;
use crate::credentials::issuer::FailureKind;

fn at(unix: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(unix)
}

#[test]
fn the_date_is_sigv4s_basic_format() {
    assert_eq!(amz_date(at(1_764_633_600)), "20251202T000000Z");
}

#[test]
fn errors_are_classified_like_stss() {
    let denied = br#"{"message":"Untrusted certificate. Insufficient certificate"}"#;
    for (status, header, body, kind) in [
        (
            403,
            Some("AccessDeniedException"),
            &denied[..],
            FailureKind::Fatal,
        ),
        (403, None, &b""[..], FailureKind::Fatal),
        (
            400,
            Some("ValidationException"),
            &b"{}"[..],
            FailureKind::Fatal,
        ),
        (
            404,
            Some("ResourceNotFoundException"),
            &b"{}"[..],
            FailureKind::Fatal,
        ),
        (429, None, &b""[..], FailureKind::Throttled),
        (
            400,
            Some("ThrottlingException"),
            &b"{}"[..],
            FailureKind::Throttled,
        ),
        (
            400,
            None,
            &br#"{"__type":"x#ThrottlingException"}"#[..],
            FailureKind::Throttled,
        ),
        (500, None, &b"oops"[..], FailureKind::Transient),
        (
            503,
            Some("ServiceUnavailable"),
            &b""[..],
            FailureKind::Transient,
        ),
    ] {
        let e = classify(status, header, body);
        assert_eq!(e.kind, kind, "{status} {header:?}");
        assert!(
            e.message.contains(&format!("HTTP {status}")),
            "{}",
            e.message
        );
    }
    assert!(classify(403, Some("AccessDeniedException"), denied)
        .message
        .contains("Untrusted certificate"));
}

fn answer(key: &str, secret: &str, token: &str, expiration: &str) -> Vec<u8> {
    serde_json::json!({
        "credentialSet": [{
            "assumedRoleUser": {"arn": "arn:aws:sts::123456789012:assumed-role/r/s", "assumedRoleId": "AROA:s"},
            "credentials": {
                "accessKeyId": key, "secretAccessKey": secret,
                "sessionToken": token, "expiration": expiration
            },
            "packedPolicySize": 0,
            "roleArn": "arn:aws:iam::123456789012:role/r",
            "sourceIdentity": "CN=host"
        }],
        "subjectArn": "arn:aws:rolesanywhere:eu-west-1:123456789012:subject/s"
    })
    .to_string()
    .into_bytes()
}

#[test]
fn a_full_answer_gives_the_credentials() {
    let now = at(1_764_633_600);
    let c = parse_credentials(
        &answer("ASIAX", "s3cret", "tok", "2025-12-02T01:00:00Z"),
        now,
    )
    .unwrap();
    assert_eq!(c.access_key_id, "ASIAX");
    assert_eq!(c.secret_access_key.as_str(), "s3cret");
    assert_eq!(c.session_token.as_str(), "tok");
    assert_eq!(c.expiration, at(1_764_633_600 + 3600));
    let frac = parse_credentials(&answer("A", "s", "t", "2025-12-02T01:00:00.123Z"), now).unwrap();
    assert!(frac.expiration > at(1_764_633_600 + 3600));
}

#[test]
fn an_empty_partial_or_expired_answer_is_never_served() {
    let now = at(1_764_633_600);
    for body in [
        b"{}".to_vec(),
        br#"{"credentialSet":[]}"#.to_vec(),
        br#"{"credentialSet":[{}]}"#.to_vec(),
        b"not json".to_vec(),
        answer("", "s", "t", "2025-12-02T01:00:00Z"),
        answer("A", "", "t", "2025-12-02T01:00:00Z"),
        answer("A", "s", "", "2025-12-02T01:00:00Z"),
        answer("A", "s", "t", ""),
        answer("A", "s", "t", "tomorrow"),
        answer("A", "s", "t", "2025-12-01T23:59:59Z"),
        answer("A", "s", "t", "2025-12-02T00:00:00Z"),
    ] {
        let e = parse_credentials(&body, now).unwrap_err();
        assert_eq!(
            e.kind,
            FailureKind::Transient,
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert!(!e.message.contains("s3cret"));
    }
}

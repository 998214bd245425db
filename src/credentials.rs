//! The role a host holds and the temporary credentials issued for it.
//!
//! Secrets live in [`Zeroizing`] buffers so they are wiped when dropped; no
//! type here implements `Display`, and `Debug` prints `** redacted **` in
//! place of the secret key and session token.

use std::fmt;
use std::time::SystemTime;

use zeroize::Zeroizing;

use crate::clock::rfc3339_seconds;

/// An IAM role ARN, checked for shape: `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RoleArn {
    arn: String,
    partition_len: usize,
}

/// Why a string is not a usable role ARN.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid role ARN {arn:?}: {reason} (expected arn:aws:iam::123456789012:role/NAME)")]
pub struct RoleArnError {
    arn: String,
    reason: &'static str,
}

impl RoleArn {
    /// Parses and validates a role ARN.
    pub fn parse(s: &str) -> Result<RoleArn, RoleArnError> {
        let err = |reason| RoleArnError {
            arn: s.chars().take(200).collect(),
            reason,
        };
        if s.len() > 2048 {
            return Err(err("longer than 2048 characters"));
        }
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        if parts.len() != 6 || parts[0] != "arn" {
            return Err(err("not an ARN"));
        }
        let partition = parts[1];
        if !matches!(
            partition,
            "aws" | "aws-cn" | "aws-us-gov" | "aws-iso" | "aws-iso-b"
        ) && !partition.starts_with("aws-")
        {
            return Err(err("unknown partition"));
        }
        if parts[2] != "iam" {
            return Err(err("not an IAM ARN"));
        }
        if !parts[3].is_empty() {
            return Err(err("IAM ARNs have no region"));
        }
        let account = parts[4];
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("the account id must be 12 digits"));
        }
        let resource = parts[5];
        let Some(path_and_name) = resource.strip_prefix("role/") else {
            return Err(err("not a role (the resource must start with role/)"));
        };
        let name = path_and_name.rsplit('/').next().unwrap_or("");
        if name.is_empty() || name.len() > 64 {
            return Err(err("the role name must be 1 to 64 characters"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
        {
            return Err(err("the role name has characters IAM does not allow"));
        }
        if !path_and_name.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(err("the role path has characters IAM does not allow"));
        }
        Ok(RoleArn {
            arn: s.to_owned(),
            partition_len: partition.len(),
        })
    }

    /// The whole ARN.
    pub fn as_str(&self) -> &str {
        &self.arn
    }

    /// The partition, e.g. `aws`.
    pub fn partition(&self) -> &str {
        &self.arn[4..4 + self.partition_len]
    }

    /// The 12-digit account id.
    pub fn account_id(&self) -> &str {
        let start = 4 + self.partition_len + ":iam::".len();
        &self.arn[start..start + 12]
    }

    /// The role name: the last path segment, which IMDS lists.
    pub fn name(&self) -> &str {
        self.arn.rsplit('/').next().unwrap_or("")
    }
}

impl fmt::Debug for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

/// The host's role association: what to assume and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    /// The role to assume.
    pub role: RoleArn,
    /// `sts:ExternalId`, if the role's trust policy asks for one.
    pub external_id: Option<String>,
    /// `RoleSessionName` for AssumeRole.
    pub session_name: String,
}

/// Largest `RoleSessionName` STS accepts.
pub const MAX_SESSION_NAME_LEN: usize = 64;

/// Makes a string acceptable to STS as a role session name: characters
/// outside `[\w+=,.@-]` become `-`, length 2 to 64.
pub fn sanitize_session_name(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(MAX_SESSION_NAME_LEN)
        .collect();
    while s.len() < 2 {
        s.push('-');
    }
    s
}

/// Checks a session name given by the user, rather than rewriting it.
pub fn validate_session_name(s: &str) -> Result<(), String> {
    if s.len() < 2 || s.len() > MAX_SESSION_NAME_LEN {
        return Err(format!(
            "session name must be 2 to {MAX_SESSION_NAME_LEN} characters, got {}",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_+=,.@-".contains(*c)))
    {
        return Err(format!(
            "session name may only contain letters, digits and _+=,.@- (found {c:?})"
        ));
    }
    Ok(())
}

/// Checks an STS external id: 2 to 1224 characters of `[\w+=,.@:/-]`.
pub fn validate_external_id(s: &str) -> Result<(), String> {
    if s.len() < 2 || s.len() > 1224 {
        return Err("external id must be 2 to 1224 characters".into());
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c))
    {
        return Err("external id may only contain letters, digits and _+=,.@:/-".into());
    }
    Ok(())
}

/// A set of temporary credentials.
pub struct Credentials {
    /// `ASIA…` access key id: not secret, safe to log.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Zeroizing<String>,
    /// The session token.
    pub session_token: Zeroizing<String>,
    /// When STS says they stop working.
    pub expiration: SystemTime,
    /// When they were obtained.
    pub last_updated: SystemTime,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field("session_token", &"** redacted **")
            .field("expiration", &rfc3339_seconds(self.expiration))
            .field("last_updated", &rfc3339_seconds(self.last_updated))
            .finish()
    }
}

impl Credentials {
    /// True once the wall clock has reached the expiry.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.expiration
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn role_arn_parts() {
        let arn = RoleArn::parse("arn:aws:iam::123456789012:role/team/app/demo").unwrap();
        assert_eq!(arn.partition(), "aws");
        assert_eq!(arn.account_id(), "123456789012");
        assert_eq!(arn.name(), "demo");
        let cn = RoleArn::parse("arn:aws-cn:iam::000000000001:role/x_y").unwrap();
        assert_eq!(cn.partition(), "aws-cn");
        assert_eq!(cn.account_id(), "000000000001");
    }

    #[test]
    fn bad_role_arns_are_rejected_with_a_reason() {
        for (arn, why) in [
            ("demo", "not an ARN"),
            ("arn:aws:iam::12345:role/demo", "12 digits"),
            ("arn:aws:iam::123456789012:user/demo", "not a role"),
            ("arn:aws:s3::123456789012:role/demo", "not an IAM ARN"),
            ("arn:aws:iam:us-east-1:123456789012:role/demo", "no region"),
            ("arn:aws:iam::123456789012:role/", "1 to 64"),
            ("arn:aws:iam::123456789012:role/a b", "characters"),
            ("arn:nope:iam::123456789012:role/demo", "partition"),
        ] {
            let err = RoleArn::parse(arn).unwrap_err().to_string();
            assert!(err.contains(why), "{arn}: {err}");
        }
    }

    #[test]
    fn session_names_are_sanitized_to_sts_rules() {
        assert_eq!(
            sanitize_session_name("web-01.example.com"),
            "web-01.example.com"
        );
        assert_eq!(sanitize_session_name("a b/c"), "a-b-c");
        assert_eq!(sanitize_session_name(""), "--");
        assert_eq!(sanitize_session_name(&"x".repeat(100)).len(), 64);
        assert!(validate_session_name("ok-name").is_ok());
        assert!(validate_session_name("bad name").is_err());
        assert!(validate_session_name("x").is_err());
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let c = Credentials {
            access_key_id: "ASIAEXAMPLEEXAMPLE12".into(),
            secret_access_key: Zeroizing::new("very-secret-key".into()),
            session_token: Zeroizing::new("very-secret-token".into()),
            expiration: SystemTime::UNIX_EPOCH + Duration::from_secs(3600),
            last_updated: SystemTime::UNIX_EPOCH,
        };
        let dbg = format!("{c:?}");
        assert!(dbg.contains("ASIAEXAMPLEEXAMPLE12"));
        assert!(!dbg.contains("very-secret"));
        assert!(dbg.contains("** redacted **"));
    }
}

//! The role a host holds: its ARN and the association (role, external id,
//! session name) that says how to assume it.
//!
//! [`Association::new`] is the one place an association is validated,
//! whoever names it: the config file, a flag, the control socket or the
//! state file.

use std::fmt;

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

/// A character STS takes in a role session name and in a source identity:
/// `[\w+=,.@-]`.
pub fn sts_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// Makes a string acceptable to STS as a role session name: characters
/// outside `[\w+=,.@-]` become `-`, length 2 to 64.
pub fn sanitize_session_name(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| if sts_name_char(c) { c } else { '-' })
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
    if let Some(c) = s.chars().find(|c| !sts_name_char(*c)) {
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

/// Why an association was refused; the message starts with the key it is
/// about (`role-arn`, `external-id`, `session-name`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{key}: {message}")]
pub struct AssociationError {
    /// The key (config key, flag and control-socket field share the name).
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

impl Association {
    /// Validates an association as given by a user: the ARN is trimmed of
    /// surrounding white space, the external id and session name must
    /// already follow STS's rules (they are not rewritten), and a missing
    /// session name is the host name.
    pub fn new(
        role_arn: &str,
        external_id: Option<String>,
        session_name: Option<String>,
    ) -> Result<Association, AssociationError> {
        let role = RoleArn::parse(role_arn.trim()).map_err(|e| AssociationError {
            key: "role-arn",
            message: e.to_string(),
        })?;
        Self::with_role(role, external_id, session_name)
    }

    /// An association of an already parsed role; the same checks as
    /// [`Association::new`] for the rest.
    pub fn with_role(
        role: RoleArn,
        external_id: Option<String>,
        session_name: Option<String>,
    ) -> Result<Association, AssociationError> {
        Self::check_options(external_id.as_deref(), session_name.as_deref())?;
        Ok(Association {
            role,
            external_id,
            session_name: session_name.unwrap_or_else(default_session_name),
        })
    }

    /// Checks an external id and a session name given with or without a
    /// role (a configuration may set them before the role is associated).
    pub fn check_options(
        external_id: Option<&str>,
        session_name: Option<&str>,
    ) -> Result<(), AssociationError> {
        let error = |key, message: String| AssociationError { key, message };
        if let Some(id) = external_id {
            validate_external_id(id).map_err(|e| error("external-id", e))?;
        }
        if let Some(name) = session_name {
            validate_session_name(name).map_err(|e| error("session-name", e))?;
        }
        Ok(())
    }
}

/// The default STS session name: the host name, sanitised to STS's rules.
pub fn default_session_name() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "hostrole".into());
    sanitize_session_name(&host)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn an_association_is_validated_once_naming_the_key() {
        let a = Association::new(" arn:aws:iam::123456789012:role/demo\n", None, None).unwrap();
        assert_eq!(a.role.as_str(), "arn:aws:iam::123456789012:role/demo");
        assert_eq!(a.session_name, default_session_name());
        for (arn, ext, name, key) in [
            ("demo", None, None, "role-arn"),
            (
                "arn:aws:iam::123456789012:role/demo",
                Some("x"),
                None,
                "external-id",
            ),
            (
                "arn:aws:iam::123456789012:role/demo",
                None,
                Some("a b"),
                "session-name",
            ),
        ] {
            let err = Association::new(arn, ext.map(Into::into), name.map(Into::into)).unwrap_err();
            assert_eq!(err.key, key);
            assert!(err.to_string().starts_with(key), "{err}");
        }
    }

    #[test]
    fn the_limits_of_a_role_arn_are_exact() {
        let arn = |path: &str, name: &str| format!("arn:aws:iam::123456789012:role/{path}{name}");
        // The name: 64 characters at most.
        assert!(RoleArn::parse(&arn("", &"n".repeat(64))).is_ok());
        let err = RoleArn::parse(&arn("", &"n".repeat(65)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 to 64"), "{err}");
        // The whole ARN: 2048 characters at most (a long path).
        let head = arn("", "").len();
        let long_path = |total: usize| format!("{}/", "p".repeat(total - head - 2));
        assert_eq!(arn(&long_path(2048), "x").len(), 2048);
        assert!(RoleArn::parse(&arn(&long_path(2048), "x")).is_ok());
        let err = RoleArn::parse(&arn(&long_path(2049), "x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("2048"), "{err}");
        // Six parts, and the first is "arn".
        for bad in [
            "xrn:aws:iam::123456789012:role/demo",
            "arn:aws:iam::123456789012",
        ] {
            let err = RoleArn::parse(bad).unwrap_err().to_string();
            assert!(err.contains("not an ARN"), "{bad}: {err}");
        }
    }

    #[test]
    fn session_names_and_external_ids_have_exact_length_limits() {
        for (len, ok) in [(1, false), (2, true), (64, true), (65, false)] {
            assert_eq!(validate_session_name(&"s".repeat(len)).is_ok(), ok, "{len}");
        }
        for (len, ok) in [(1, false), (2, true), (1224, true), (1225, false)] {
            assert_eq!(validate_external_id(&"e".repeat(len)).is_ok(), ok, "{len}");
        }
    }

    #[test]
    fn the_default_session_name_is_the_host_name_made_acceptable() {
        let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
        assert_eq!(default_session_name(), sanitize_session_name(&host));
        assert!(validate_session_name(&default_session_name()).is_ok());
    }
}

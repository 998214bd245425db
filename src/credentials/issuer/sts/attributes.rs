//! Session attributes sent with every `AssumeRole`: a source identity,
//! session tags (and which of them are transitive), an inline session policy
//! and managed session policies.
//!
//! They are checked once, at start, against the limits STS enforces, so that
//! a value STS would refuse is a configuration error naming the key rather
//! than a role withdrawn at the first refresh. `{hostname}` and
//! `{instance-id}` in the source identity and in tag values are expanded
//! first, and the result is what is checked. The one limit that cannot be
//! checked here is STS's packed size of tags and policies together: its
//! refusal (`PackedPolicyTooLarge`) carries STS's own percentage and a hint.

use aws_sdk_sts::operation::assume_role::builders::AssumeRoleFluentBuilder;
use aws_sdk_sts::types::{PolicyDescriptorType, Tag};
use sha2::Digest;

pub use self::policy::{pack_policy, SessionPolicy, MAX_POLICY_CHARS};

mod policy;

/// Fewest characters of a `SourceIdentity`.
pub const MIN_SOURCE_IDENTITY_CHARS: usize = 2;
/// Most characters of a `SourceIdentity`.
pub const MAX_SOURCE_IDENTITY_CHARS: usize = 64;
/// Most session tags in one call.
pub const MAX_SESSION_TAGS: usize = 50;
/// Most characters of a tag key.
pub const MAX_TAG_KEY_CHARS: usize = 128;
/// Most characters of a tag value.
pub const MAX_TAG_VALUE_CHARS: usize = 256;
/// Most managed session policies in one call.
pub const MAX_POLICY_ARNS: usize = 10;
/// The prefix that AWS keeps for its own tags and identities.
const RESERVED_PREFIX: &str = "aws:";

/// What `{hostname}` and `{instance-id}` expand to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The host name, as `hostname` prints it.
    pub hostname: String,
    /// The instance id IMDS reports for this host.
    pub instance_id: String,
}

/// Everything sent with `AssumeRole` besides the role, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionAttributes {
    /// `SourceIdentity`, expanded.
    pub source_identity: Option<String>,
    /// `Tags`, values expanded, in key order.
    pub tags: Vec<(String, String)>,
    /// `TransitiveTagKeys`: keys of `tags`.
    pub transitive_tag_keys: Vec<String>,
    /// `Policy`.
    pub policy: Option<SessionPolicy>,
    /// `PolicyArns`.
    pub policy_arns: Vec<String>,
}

impl SessionAttributes {
    /// A short digest of every attribute, empty when none is set: kept
    /// credentials are used again only by a start with the same ones.
    pub fn fingerprint(&self) -> String {
        if *self == SessionAttributes::default() {
            return String::new();
        }
        let text = serde_json::json!([
            self.source_identity,
            self.tags,
            self.transitive_tag_keys,
            self.policy.as_ref().map(|p| &p.packed),
            self.policy_arns,
        ])
        .to_string();
        let digest = sha2::Sha256::digest(text.as_bytes());
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Replaces `{hostname}` and `{instance-id}` in `template`; any other
/// `{…}`, or a `{` never closed, is an error naming it.
pub fn expand(template: &str, host: &HostFacts) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!(
                "{template:?} has a {{ without its }} (the placeholders are {{hostname}} and {{instance-id}})"
            ));
        };
        match &after[..close] {
            "hostname" => out.push_str(&host.hostname),
            "instance-id" => out.push_str(&host.instance_id),
            other => {
                return Err(format!(
                    "unknown placeholder {{{other}}} in {template:?} (the placeholders are {{hostname}} and {{instance-id}})"
                ))
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What `template` became, for a message: `"web-1" (from "{hostname}")`.
fn shown(value: &str, template: &str) -> String {
    if value == template {
        format!("{value:?}")
    } else {
        format!("{value:?} (from {template:?})")
    }
}

/// Checks an expanded `SourceIdentity` (`template` as written, for the
/// message): 2–64 characters of `A-Z a-z 0-9 _ + = , . @ -`, not `aws:…`.
pub fn check_source_identity(value: &str, template: &str) -> Result<(), String> {
    let len = value.chars().count();
    if starts_with_reserved(value) {
        return Err(format!(
            "{} starts with \"aws:\", which AWS keeps for itself",
            shown(value, template)
        ));
    }
    if !(MIN_SOURCE_IDENTITY_CHARS..=MAX_SOURCE_IDENTITY_CHARS).contains(&len) {
        return Err(format!(
            "{} is {len} characters; STS takes {MIN_SOURCE_IDENTITY_CHARS} to {MAX_SOURCE_IDENTITY_CHARS}",
            shown(value, template)
        ));
    }
    if let Some(c) = value.chars().find(|c| !crate::role::sts_name_char(*c)) {
        return Err(format!(
            "{} contains {c:?}; STS takes letters A-Z and a-z, digits and _+=,.@-",
            shown(value, template)
        ));
    }
    Ok(())
}

fn starts_with_reserved(s: &str) -> bool {
    s.get(..RESERVED_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_PREFIX))
}

/// A character STS takes in tag keys and values: `[\p{L}\p{Z}\p{N}_.:/=+\-@]`.
/// Letters are Rust's alphabetic characters, a slightly larger set that
/// also holds some combining marks; spaces are the separators (white space
/// that is not a control character).
fn tag_char(c: char) -> bool {
    c.is_alphabetic()
        || c.is_numeric()
        || (c.is_whitespace() && !c.is_control())
        || "_.:/=+-@".contains(c)
}

/// Checks expanded session tags (`templates` are the values as written, in
/// the same order): at most 50, keys 1–128 characters, values up to 256,
/// STS's characters, keys unique ignoring case and not `aws:…`.
pub fn check_tags(tags: &[(String, String)], templates: &[&str]) -> Result<(), String> {
    if tags.len() > MAX_SESSION_TAGS {
        return Err(format!(
            "{} tags; STS takes at most {MAX_SESSION_TAGS}",
            tags.len()
        ));
    }
    for (i, ((key, value), template)) in tags.iter().zip(templates).enumerate() {
        let key_len = key.chars().count();
        if !(1..=MAX_TAG_KEY_CHARS).contains(&key_len) {
            return Err(format!(
                "the key {key:?} is {key_len} characters; STS takes 1 to {MAX_TAG_KEY_CHARS}"
            ));
        }
        if starts_with_reserved(key) {
            return Err(format!(
                "the key {key:?} starts with \"aws:\", which AWS keeps for itself"
            ));
        }
        if let Some(c) = key.chars().find(|c| !tag_char(*c)) {
            return Err(format!(
                "the key {key:?} contains {c:?}; STS takes letters, digits, spaces and _.:/=+-@"
            ));
        }
        if let Some((other, _)) = tags[..i]
            .iter()
            .find(|(k, _)| k.to_lowercase() == key.to_lowercase())
        {
            return Err(format!(
                "the keys {other:?} and {key:?} differ only in case; STS takes each key once, ignoring case"
            ));
        }
        let value_len = value.chars().count();
        if value_len > MAX_TAG_VALUE_CHARS {
            return Err(format!(
                "the value of {key:?}, {}, is {value_len} characters; STS takes at most {MAX_TAG_VALUE_CHARS}",
                shown(value, template)
            ));
        }
        if let Some(c) = value.chars().find(|c| !tag_char(*c)) {
            return Err(format!(
                "the value of {key:?}, {}, contains {c:?}; STS takes letters, digits, spaces and _.:/=+-@",
                shown(value, template)
            ));
        }
    }
    Ok(())
}

/// Checks that each transitive key is, as written, a key of `tags`, once.
pub fn check_transitive_keys(keys: &[String], tags: &[(String, String)]) -> Result<(), String> {
    for (i, key) in keys.iter().enumerate() {
        if !tags.iter().any(|(k, _)| k == key) {
            return Err(format!(
                "{key:?} is not a key of session-tags; a transitive key must be one of the session's tags"
            ));
        }
        if keys[..i].contains(key) {
            return Err(format!("{key:?} is listed twice"));
        }
    }
    Ok(())
}

/// Checks managed policy ARNs: at most 10, each
/// `arn:PARTITION:iam::ACCOUNT:policy/PATH/NAME` (ACCOUNT `aws` for the
/// policies AWS manages).
pub fn check_policy_arns(arns: &[String]) -> Result<(), String> {
    if arns.len() > MAX_POLICY_ARNS {
        return Err(format!(
            "{} policies; STS takes at most {MAX_POLICY_ARNS}",
            arns.len()
        ));
    }
    for arn in arns {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let ok = match parts[..] {
            ["arn", partition, "iam", "", account, resource] => {
                partition.starts_with("aws")
                    && partition
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && (account == "aws"
                        || (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())))
                    && resource.strip_prefix("policy/").is_some_and(|name| {
                        !name.is_empty()
                            && !name.ends_with('/')
                            && name
                                .chars()
                                .all(|c| crate::role::sts_name_char(c) || c == '/')
                    })
            }
            _ => false,
        };
        if !ok {
            return Err(format!(
                "{arn:?} is not a managed policy ARN (arn:aws:iam::ACCOUNT:policy/NAME, or arn:aws:iam::aws:policy/NAME)"
            ));
        }
    }
    Ok(())
}

/// Sends the attributes with an `AssumeRole` call; none that is unset.
pub(super) trait WithSessionAttributes {
    /// The call with `attributes` added.
    fn session_attributes(self, attributes: &SessionAttributes) -> Self;
}

impl WithSessionAttributes for AssumeRoleFluentBuilder {
    fn session_attributes(self, a: &SessionAttributes) -> Self {
        let tags = a.tags.iter().map(|(key, value)| {
            Tag::builder()
                .key(key)
                .value(value)
                .build()
                .expect("a tag with its key and value")
        });
        let arns = a
            .policy_arns
            .iter()
            .map(|arn| PolicyDescriptorType::builder().arn(arn).build());
        self.set_source_identity(a.source_identity.clone())
            .set_tags((!a.tags.is_empty()).then(|| tags.collect()))
            .set_transitive_tag_keys(
                (!a.transitive_tag_keys.is_empty()).then(|| a.transitive_tag_keys.clone()),
            )
            .set_policy(a.policy.as_ref().map(|p| p.packed.clone()))
            .set_policy_arns((!a.policy_arns.is_empty()).then(|| arns.collect()))
    }
}

/// Which attributes a call carries, for explaining STS's refusals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Sent {
    /// Session tags (the trust policy must allow `sts:TagSession`).
    pub tags: bool,
    /// A source identity (`sts:SetSourceIdentity`).
    pub source_identity: bool,
}

impl SessionAttributes {
    /// Which of them a call carries.
    pub(super) fn sent(&self) -> Sent {
        Sent {
            tags: !self.tags.is_empty(),
            source_identity: self.source_identity.is_some(),
        }
    }
}

impl Sent {
    /// What to add to STS's refusal `code`, if the attributes may be why.
    pub(super) fn hint(self, code: &str) -> Option<String> {
        match code {
            "PackedPolicyTooLarge" => Some(
                "the session tags and session policies are too large together once packed: \
                 shorten session-tags, session-policy or policy-arns"
                    .to_owned(),
            ),
            "AccessDenied" => {
                let actions: Vec<&str> = [
                    (self.tags, "sts:TagSession"),
                    (self.source_identity, "sts:SetSourceIdentity"),
                ]
                .into_iter()
                .filter_map(|(sent, action)| sent.then_some(action))
                .collect();
                (!actions.is_empty()).then(|| {
                    format!(
                        "with session-tags or source-identity set, the role's trust policy must also allow {}",
                        actions.join(" and ")
                    )
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;

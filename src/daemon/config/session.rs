//! The session attributes of the `sts` issuer, checked together:
//! `source-identity`, `session-tags`, `transitive-tag-keys`,
//! `session-policy` and `policy-arns`. `{hostname}` and `{instance-id}` in
//! the source identity and tag values are expanded here, once, and the
//! result is checked against STS's limits; each error starts with its key.

use std::path::Path;

use super::values::AbsolutePath;
use super::{invalid, ConfigError, FileConfig, IssuerKind};
use crate::credentials::issuer::sts::attributes::{
    check_policy_arns, check_source_identity, check_tags, check_transitive_keys, expand, HostFacts,
    SessionAttributes, SessionPolicy,
};
use crate::endpoint::identity::{instance_id_for_host, MACHINE_ID};

/// This host's name and instance id.
fn this_host() -> HostFacts {
    HostFacts {
        hostname: nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default(),
        instance_id: instance_id_for_host(Path::new(MACHINE_ID)),
    }
}

/// Takes the session attribute keys out of `file` and `flags` (flags win),
/// refuses them with an issuer other than `sts`, expands and checks them.
pub(super) fn resolve(
    file: &mut FileConfig,
    flags: &mut FileConfig,
    issuer: IssuerKind,
) -> Result<SessionAttributes, ConfigError> {
    resolve_for(file, flags, issuer, this_host)
}

fn resolve_for(
    file: &mut FileConfig,
    flags: &mut FileConfig,
    issuer: IssuerKind,
    host: impl FnOnce() -> HostFacts,
) -> Result<SessionAttributes, ConfigError> {
    let source_identity = flags.source_identity.take().or(file.source_identity.take());
    let tags = flags.session_tags.take().or(file.session_tags.take());
    let transitive = flags
        .transitive_tag_keys
        .take()
        .or(file.transitive_tag_keys.take());
    let policy = flags.session_policy.take().or(file.session_policy.take());
    let arns = flags.policy_arns.take().or(file.policy_arns.take());

    if issuer != IssuerKind::Sts {
        let given = [
            ("source-identity", source_identity.is_some()),
            ("session-tags", tags.is_some()),
            ("transitive-tag-keys", transitive.is_some()),
            ("session-policy", policy.is_some()),
            ("policy-arns", arns.is_some()),
        ];
        if let Some((key, _)) = given.iter().find(|(_, set)| *set) {
            let why = match issuer {
                IssuerKind::RolesAnywhere => {
                    "Roles Anywhere's CreateSession takes no session attributes"
                }
                _ => "the local issuer calls no AWS service",
            };
            return Err(invalid(format!(
                "{key}: only used with issuer = \"sts\" ({why})"
            )));
        }
        return Ok(SessionAttributes::default());
    }

    let host = host();
    let source_identity = match source_identity {
        None => None,
        Some(template) => {
            let value = expand(&template, &host)
                .and_then(|v| check_source_identity(&v, &template).map(|()| v))
                .map_err(|e| invalid(format!("source-identity: {e}")))?;
            Some(value)
        }
    };

    let tags = tags.unwrap_or_default();
    let templates: Vec<&str> = tags.values().map(String::as_str).collect();
    let mut expanded = Vec::with_capacity(tags.len());
    for (key, template) in &tags {
        let value = expand(template, &host)
            .map_err(|e| invalid(format!("session-tags: the value of {key:?}: {e}")))?;
        expanded.push((key.clone(), value));
    }
    check_tags(&expanded, &templates).map_err(|e| invalid(format!("session-tags: {e}")))?;

    let transitive_tag_keys = transitive.unwrap_or_default();
    check_transitive_keys(&transitive_tag_keys, &expanded)
        .map_err(|e| invalid(format!("transitive-tag-keys: {e}")))?;

    let policy = policy
        .map(|AbsolutePath(path)| SessionPolicy::read(&path))
        .transpose()
        .map_err(|e| invalid(format!("session-policy: {e}")))?;

    let policy_arns = arns.unwrap_or_default();
    check_policy_arns(&policy_arns).map_err(|e| invalid(format!("policy-arns: {e}")))?;

    Ok(SessionAttributes {
        source_identity,
        tags: expanded,
        transitive_tag_keys,
        policy,
        policy_arns,
    })
}

#[cfg(test)]
mod tests;

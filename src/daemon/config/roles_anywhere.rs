//! The keys of the Roles Anywhere issuer, checked together: the certificate
//! and key are required, the two ARNs must name a trust anchor and a profile
//! in one region, and that region is the signing region unless `region`
//! says the same thing.

use std::path::PathBuf;

use super::values::EndpointUrl;
use super::{invalid, ConfigError, FileConfig, IssuerKind};
use crate::credentials::issuer::roles_anywhere::material::MaterialPaths;

/// The Roles Anywhere part of the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolesAnywhereConfig {
    /// Certificate, key and chain files.
    pub paths: MaterialPaths,
    /// The trust anchor's ARN.
    pub trust_anchor_arn: String,
    /// The profile's ARN.
    pub profile_arn: String,
    /// Endpoint override.
    pub endpoint: Option<String>,
}

impl RolesAnywhereConfig {
    /// The endpoint called: the override, or the region's own.
    pub fn endpoint_for(&self, region: &str) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("https://rolesanywhere.{region}.amazonaws.com"))
    }
}

fn path(key: &str, p: Option<PathBuf>) -> Result<Option<PathBuf>, ConfigError> {
    match p {
        Some(p) if p.is_relative() => Err(invalid(format!(
            "{key}: {} must be an absolute path",
            p.display()
        ))),
        other => Ok(other),
    }
}

/// Takes the Roles Anywhere keys out of `file` and `flags` (flags win) and
/// checks them against the issuer; fills in `region` from the ARNs.
pub(super) fn resolve(
    file: &mut FileConfig,
    flags: &mut FileConfig,
    issuer: IssuerKind,
    region: &mut Option<String>,
) -> Result<Option<RolesAnywhereConfig>, ConfigError> {
    let certificate = path(
        "certificate",
        flags.certificate.take().or(file.certificate.take()),
    )?;
    let private_key = path(
        "private-key",
        flags.private_key.take().or(file.private_key.take()),
    )?;
    let chain = path(
        "certificate-chain",
        flags
            .certificate_chain
            .take()
            .or(file.certificate_chain.take()),
    )?;
    let anchor = flags
        .trust_anchor_arn
        .take()
        .or(file.trust_anchor_arn.take());
    let profile = flags.profile_arn.take().or(file.profile_arn.take());
    let endpoint = flags
        .roles_anywhere_endpoint
        .take()
        .or(file.roles_anywhere_endpoint.take())
        .map(|EndpointUrl(u)| u);

    if issuer != IssuerKind::RolesAnywhere {
        let given = [
            ("certificate", certificate.is_some()),
            ("private-key", private_key.is_some()),
            ("certificate-chain", chain.is_some()),
            ("trust-anchor-arn", anchor.is_some()),
            ("profile-arn", profile.is_some()),
            ("roles-anywhere-endpoint", endpoint.is_some()),
        ];
        if let Some((key, _)) = given.iter().find(|(_, set)| *set) {
            return Err(invalid(format!(
                "{key}: only used with issuer = \"roles-anywhere\""
            )));
        }
        return Ok(None);
    }

    let need = |key: &str| invalid(format!("{key}: required with issuer = \"roles-anywhere\""));
    let certificate = certificate.ok_or_else(|| need("certificate"))?;
    let private_key = private_key.ok_or_else(|| need("private-key"))?;
    let anchor = anchor.ok_or_else(|| need("trust-anchor-arn"))?;
    let profile = profile.ok_or_else(|| need("profile-arn"))?;
    if anchor.kind != "trust-anchor" {
        return Err(invalid(format!(
            "trust-anchor-arn: {} names a {}, not a trust-anchor",
            anchor.arn, anchor.kind
        )));
    }
    if profile.kind != "profile" {
        return Err(invalid(format!(
            "profile-arn: {} names a {}, not a profile",
            profile.arn, profile.kind
        )));
    }
    if anchor.region != profile.region {
        return Err(invalid(format!(
            "profile-arn: the profile is in {} but the trust anchor in {}; they must be in one region",
            profile.region, anchor.region
        )));
    }
    match region.as_deref() {
        None => *region = Some(anchor.region.clone()),
        Some(r) if r != anchor.region => {
            return Err(invalid(format!(
                "region: {r} differs from the trust anchor's region {}; leave region unset or make them agree",
                anchor.region
            )))
        }
        Some(_) => {}
    }
    Ok(Some(RolesAnywhereConfig {
        paths: MaterialPaths {
            certificate,
            private_key,
            chain,
        },
        trust_anchor_arn: anchor.arn,
        profile_arn: profile.arn,
        endpoint,
    }))
}

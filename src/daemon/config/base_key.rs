//! The base key rotation keys of the `sts` issuer:
//! `base-key-max-age-days`, `base-key-grace-minutes` and
//! `base-key-delete-inactive`.

use std::time::Duration;

use super::{invalid, ConfigError, FileConfig, IssuerKind};
pub use crate::credentials::base_key::BaseKeySettings;

/// The old key's grace period when not configured.
pub const DEFAULT_GRACE_MINUTES: u64 = 60;
/// Longest grace period: a week.
pub const MAX_GRACE_MINUTES: u64 = 7 * 24 * 60;
/// Longest schedule: ten years.
pub const MAX_AGE_DAYS: u64 = 3650;

impl Default for BaseKeySettings {
    fn default() -> Self {
        BaseKeySettings {
            max_age: None,
            grace: Duration::from_secs(DEFAULT_GRACE_MINUTES * 60),
            delete_inactive: false,
        }
    }
}

/// Takes the rotation keys out of `file` and `flags` and checks them.
pub(super) fn resolve(
    file: &mut FileConfig,
    flags: &mut FileConfig,
    issuer: IssuerKind,
) -> Result<BaseKeySettings, ConfigError> {
    let max_age = flags
        .base_key_max_age_days
        .take()
        .or(file.base_key_max_age_days.take());
    let grace = flags
        .base_key_grace_minutes
        .take()
        .or(file.base_key_grace_minutes.take());
    let delete_inactive = flags
        .base_key_delete_inactive
        .take()
        .or(file.base_key_delete_inactive.take());
    if issuer != IssuerKind::Sts {
        let given = [
            ("base-key-max-age-days", max_age.is_some()),
            ("base-key-grace-minutes", grace.is_some()),
            ("base-key-delete-inactive", delete_inactive.is_some()),
        ];
        if let Some((key, _)) = given.iter().find(|(_, set)| *set) {
            return Err(invalid(format!(
                "{key}: only used with issuer = \"sts\" (the base key is an IAM user's access key)"
            )));
        }
    }
    if let Some(days) = max_age {
        if !(1..=MAX_AGE_DAYS).contains(&days) {
            return Err(invalid(format!(
                "base-key-max-age-days: {days} is out of range 1..={MAX_AGE_DAYS}"
            )));
        }
    }
    let grace = grace.unwrap_or(DEFAULT_GRACE_MINUTES);
    if grace > MAX_GRACE_MINUTES {
        return Err(invalid(format!(
            "base-key-grace-minutes: {grace} is out of range 0..={MAX_GRACE_MINUTES}"
        )));
    }
    Ok(BaseKeySettings {
        max_age: max_age.map(|d| Duration::from_secs(d * 86_400)),
        grace: Duration::from_secs(grace * 60),
        delete_inactive: delete_inactive.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(text: &str, issuer: IssuerKind) -> Result<BaseKeySettings, ConfigError> {
        let mut file = super::super::parse_file(std::path::Path::new("t.toml"), text).unwrap();
        resolve(&mut file, &mut FileConfig::default(), issuer)
    }

    #[test]
    fn the_defaults_keep_the_old_key_an_hour_and_never_rotate_alone() {
        assert_eq!(
            with("", IssuerKind::Sts).unwrap(),
            BaseKeySettings::default()
        );
        assert_eq!(BaseKeySettings::default().grace, Duration::from_secs(3600));
    }

    #[test]
    fn values_are_taken_within_their_ranges_and_refused_outside() {
        let s = with(
            "base-key-max-age-days = 90\nbase-key-grace-minutes = 0\nbase-key-delete-inactive = true",
            IssuerKind::Sts,
        )
        .unwrap();
        assert_eq!(s.max_age, Some(Duration::from_secs(90 * 86_400)));
        assert_eq!(s.grace, Duration::ZERO);
        assert!(s.delete_inactive);
        assert!(with("base-key-max-age-days = 1", IssuerKind::Sts).is_ok());
        assert!(with("base-key-max-age-days = 3650", IssuerKind::Sts).is_ok());
        assert!(with("base-key-grace-minutes = 10080", IssuerKind::Sts).is_ok());
        for (text, says) in [
            (
                "base-key-max-age-days = 0",
                "base-key-max-age-days: 0 is out of range 1..=3650",
            ),
            ("base-key-max-age-days = 3651", "out of range"),
            (
                "base-key-grace-minutes = 10081",
                "base-key-grace-minutes: 10081 is out of range",
            ),
        ] {
            let e = with(text, IssuerKind::Sts).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn another_issuer_refuses_them_by_name() {
        for (text, key) in [
            ("base-key-max-age-days = 9", "base-key-max-age-days"),
            ("base-key-grace-minutes = 9", "base-key-grace-minutes"),
            (
                "base-key-delete-inactive = false",
                "base-key-delete-inactive",
            ),
        ] {
            for issuer in [IssuerKind::Local, IssuerKind::RolesAnywhere] {
                let e = with(text, issuer).unwrap_err().to_string();
                assert!(
                    e.starts_with(&format!("{key}: only used with issuer = \"sts\"")),
                    "{e}"
                );
            }
        }
    }
}

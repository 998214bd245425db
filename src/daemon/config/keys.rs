//! The one list of configuration keys: what `--check-config` prints, and
//! what a reload compares. A key that does not apply live is named in the
//! reload's warning when its value changed.

use super::{IssuerKind, Settings};

/// One configuration key.
#[derive(Debug)]
pub struct Key {
    /// The key's name in the file (the flag has the same name, except
    /// `--session-duration`, `--allowed-uid` and `--allowed-gid`).
    pub name: &'static str,
    /// A reload applies it (the role), rather than the next start.
    pub live: bool,
    /// Its effective value, as printed.
    pub show: fn(&Settings) -> String,
}

fn or_none<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

fn list<T: ToString>(v: &[T]) -> String {
    if v.is_empty() {
        return "none".to_owned();
    }
    v.iter().map(T::to_string).collect::<Vec<_>>().join(", ")
}

fn ra(s: &Settings) -> Option<&super::RolesAnywhereConfig> {
    s.roles_anywhere.as_ref()
}

/// Every key, in the order `--check-config` prints them.
pub const KEYS: &[Key] = &[
    Key {
        name: "listen",
        live: false,
        show: |s| list(&s.listen),
    },
    Key {
        name: "role-arn",
        live: true,
        show: |s| or_none(s.association.as_ref().map(|a| a.role.as_str())),
    },
    Key {
        name: "external-id",
        live: true,
        show: |s| {
            or_none(
                s.association
                    .as_ref()
                    .and_then(|a| a.external_id.as_deref()),
            )
        },
    },
    Key {
        name: "session-name",
        live: true,
        show: |s| or_none(s.association.as_ref().map(|a| a.session_name.as_str())),
    },
    Key {
        name: "issuer",
        live: false,
        show: |s| match s.issuer {
            IssuerKind::Sts => "sts".into(),
            IssuerKind::Local => "local".into(),
            IssuerKind::RolesAnywhere => "roles-anywhere".into(),
        },
    },
    Key {
        name: "certificate",
        live: false,
        show: |s| or_none(ra(s).map(|r| r.paths.certificate.display())),
    },
    Key {
        name: "private-key",
        live: false,
        show: |s| or_none(ra(s).map(|r| r.paths.private_key.display())),
    },
    Key {
        name: "certificate-chain",
        live: false,
        show: |s| {
            or_none(
                ra(s)
                    .and_then(|r| r.paths.chain.as_ref())
                    .map(|p| p.display()),
            )
        },
    },
    Key {
        name: "trust-anchor-arn",
        live: false,
        show: |s| or_none(ra(s).map(|r| &r.trust_anchor_arn)),
    },
    Key {
        name: "profile-arn",
        live: false,
        show: |s| or_none(ra(s).map(|r| &r.profile_arn)),
    },
    Key {
        name: "roles-anywhere-endpoint",
        live: false,
        show: |s| or_none(ra(s).and_then(|r| r.endpoint.as_ref())),
    },
    Key {
        name: "session-duration-seconds",
        live: false,
        show: |s| s.session_duration.as_secs().to_string(),
    },
    Key {
        name: "region",
        live: false,
        show: |s| {
            s.region
                .clone()
                .unwrap_or_else(|| "(from the AWS environment)".into())
        },
    },
    Key {
        name: "availability-zone",
        live: false,
        show: |s| {
            s.availability_zone
                .clone()
                .unwrap_or_else(|| "(the region's a zone)".into())
        },
    },
    Key {
        name: "sts-endpoint",
        live: false,
        show: |s| or_none(s.sts_endpoint.as_deref()),
    },
    Key {
        name: "iam-endpoint",
        live: false,
        show: |s| or_none(s.iam_endpoint.as_deref()),
    },
    Key {
        name: "revoke-sessions",
        live: false,
        show: |s| s.revoke_sessions.to_string(),
    },
    Key {
        name: "imds-v1",
        live: false,
        show: |s| {
            if s.imds_v1 {
                "allowed".into()
            } else {
                "disabled".into()
            }
        },
    },
    Key {
        name: "hop-limit",
        live: false,
        show: |s| s.hop_limit.to_string(),
    },
    Key {
        name: "allowed-uids",
        live: false,
        show: |s| {
            s.access
                .as_ref()
                .map_or_else(|| "none".into(), |a| list(a.uids()))
        },
    },
    Key {
        name: "allowed-gids",
        live: false,
        show: |s| {
            s.access
                .as_ref()
                .map_or_else(|| "none".into(), |a| list(a.gids()))
        },
    },
    Key {
        name: "admin-group",
        live: false,
        show: |s| or_none(s.admin_gid),
    },
    Key {
        name: "metrics-listen",
        live: false,
        show: |s| or_none(s.metrics_listen),
    },
    Key {
        name: "state-dir",
        live: false,
        show: |s| s.state_dir.display().to_string(),
    },
    Key {
        name: "control-socket",
        live: false,
        show: |s| s.control_socket.display().to_string(),
    },
];

/// The keys whose value changed between `running` and `new` but that only
/// take effect at the next start.
pub fn restart_needed(new: &Settings, running: &Settings) -> Vec<&'static str> {
    KEYS.iter()
        .filter(|k| !k.live && (k.show)(new) != (k.show)(running))
        .map(|k| k.name)
        .collect()
}

/// What `--check-config` prints: every key with its effective value.
pub fn describe(settings: &Settings) -> String {
    let mut out = String::from("configuration OK\n");
    if let Some(p) = &settings.config_path {
        out.push_str(&format!("  {:<26}{}\n", "config file:", p.display()));
    }
    for key in KEYS {
        out.push_str(&format!(
            "  {:<26}{}\n",
            format!("{}:", key.name),
            (key.show)(settings)
        ));
    }
    out
}

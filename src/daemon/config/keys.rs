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
    /// Its flag, as `serve --help` shows it (empty: the file only).
    pub flag: &'static str,
    /// Its value when nothing sets it.
    pub default: &'static str,
    /// What it does (the README's configuration table and hostrole.toml(5)
    /// say the same).
    pub doc: &'static str,
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
        flag: "--listen ADDR:PORT (repeatable)",
        default: "[\"127.0.0.1:1338\"]",
        doc: "addresses to bind (ignored under socket activation)",
        live: false,
        show: |s| list(&s.listen),
    },
    Key {
        name: "container-listen",
        flag: "--container-listen ADDR:PORT (repeatable)",
        default: "off",
        doc: "also serve the container credentials endpoint, /v1/credentials, on these addresses (bound by the daemon, also under socket activation): SDKs use it with AWS_CONTAINER_CREDENTIALS_FULL_URI and a token from hostrole container-token create",
        live: false,
        show: |s| list(&s.container_listen),
    },
    Key {
        name: "role-arn",
        flag: "--role-arn ARN",
        default: "none",
        doc: "the host's role; exactly one",
        live: true,
        show: |s| or_none(s.association.as_ref().map(|a| a.role.as_str())),
    },
    Key {
        name: "external-id",
        flag: "--external-id ID",
        default: "none",
        doc: "sts:ExternalId for the role's trust policy",
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
        flag: "--session-name NAME",
        default: "the host name, sanitised",
        doc: "RoleSessionName",
        live: true,
        show: |s| or_none(s.association.as_ref().map(|a| a.session_name.as_str())),
    },
    Key {
        name: "source-identity",
        flag: "",
        default: "none",
        doc: "sts: SourceIdentity, 2–64 characters of letters, digits and _+=,.@- ({hostname} and {instance-id} expand); recorded by CloudTrail and kept through role chaining. The role's trust policy must allow sts:SetSourceIdentity",
        live: false,
        show: |s| or_none(s.session.source_identity.as_deref()),
    },
    Key {
        name: "session-tags",
        flag: "",
        default: "none",
        doc: "sts: session tags, a table of key = \"value\" (at most 50; keys 1–128 characters, unique ignoring case, not aws:…; values up to 256; {hostname} and {instance-id} expand in values). The role's trust policy must allow sts:TagSession",
        live: false,
        show: |s| {
            if s.session.tags.is_empty() {
                return "none".into();
            }
            let tags: Vec<String> = s
                .session
                .tags
                .iter()
                .map(|(k, v)| format!("{k:?} = {v:?}"))
                .collect();
            format!("{{ {} }}", tags.join(", "))
        },
    },
    Key {
        name: "transitive-tag-keys",
        flag: "",
        default: "none",
        doc: "sts: keys of session-tags that stay with the session through role chaining",
        live: false,
        show: |s| list(&s.session.transitive_tag_keys),
    },
    Key {
        name: "session-policy",
        flag: "",
        default: "none",
        doc: "sts: a JSON policy file (absolute path) that narrows the session's rights; at most 2048 characters without whitespace",
        live: false,
        show: |s| or_none(s.session.policy.as_ref().map(|p| p.describe())),
    },
    Key {
        name: "policy-arns",
        flag: "",
        default: "none",
        doc: "sts: up to 10 managed policy ARNs that narrow the session's rights",
        live: false,
        show: |s| list(&s.session.policy_arns),
    },
    Key {
        name: "issuer",
        flag: "--issuer sts|local|roles-anywhere",
        default: "sts",
        doc: "where credentials come from",
        live: false,
        show: |s| match s.issuer {
            IssuerKind::Sts => "sts".into(),
            IssuerKind::Local => "local".into(),
            IssuerKind::RolesAnywhere => "roles-anywhere".into(),
        },
    },
    Key {
        name: "certificate",
        flag: "--certificate FILE",
        default: "none",
        doc: "roles-anywhere: the host's certificate (PEM; more certificates after it are its intermediates)",
        live: false,
        show: |s| or_none(ra(s).map(|r| r.paths.certificate.display())),
    },
    Key {
        name: "private-key",
        flag: "--private-key FILE",
        default: "none",
        doc: "roles-anywhere: its private key (PEM, readable by its owner only)",
        live: false,
        show: |s| or_none(ra(s).map(|r| r.paths.private_key.display())),
    },
    Key {
        name: "certificate-chain",
        flag: "--certificate-chain FILE",
        default: "none",
        doc: "roles-anywhere: intermediate certificates (PEM)",
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
        flag: "--trust-anchor-arn ARN",
        default: "none",
        doc: "roles-anywhere: the trust anchor",
        live: false,
        show: |s| or_none(ra(s).map(|r| &r.trust_anchor_arn)),
    },
    Key {
        name: "profile-arn",
        flag: "--profile-arn ARN",
        default: "none",
        doc: "roles-anywhere: the profile",
        live: false,
        show: |s| or_none(ra(s).map(|r| &r.profile_arn)),
    },
    Key {
        name: "roles-anywhere-endpoint",
        flag: "--roles-anywhere-endpoint URL",
        default: "https://rolesanywhere.REGION.amazonaws.com",
        doc: "another Roles Anywhere endpoint",
        live: false,
        show: |s| or_none(ra(s).and_then(|r| r.endpoint.as_ref())),
    },
    Key {
        name: "session-duration-seconds",
        flag: "--session-duration SECONDS",
        default: "3600",
        doc: "900–43200 for sts and roles-anywhere (the role's or profile's maximum applies), 60–43200 for local",
        live: false,
        show: |s| s.session_duration.as_secs().to_string(),
    },
    Key {
        name: "region",
        flag: "--region REGION",
        default: "AWS_REGION, then the AWS profile; us-east-1 for local",
        doc: "region for STS and for IMDS answers",
        live: false,
        show: |s| {
            s.region
                .clone()
                .unwrap_or_else(|| "(from the AWS environment)".into())
        },
    },
    Key {
        name: "availability-zone",
        flag: "--availability-zone ZONE",
        default: "<region>a",
        doc: "zone reported by IMDS",
        live: false,
        show: |s| {
            s.availability_zone
                .clone()
                .unwrap_or_else(|| "(the region's a zone)".into())
        },
    },
    Key {
        name: "sts-endpoint",
        flag: "--sts-endpoint URL",
        default: "the regional endpoint",
        doc: "another STS endpoint (moto, LocalStack, a VPC endpoint)",
        live: false,
        show: |s| or_none(s.sts_endpoint.as_deref()),
    },
    Key {
        name: "iam-endpoint",
        flag: "",
        default: "IAM's endpoint",
        doc: "another IAM endpoint (moto, LocalStack) for revoke-sessions and base key rotation",
        live: false,
        show: |s| or_none(s.iam_endpoint.as_deref()),
    },
    Key {
        name: "revoke-sessions",
        flag: "",
        default: "false",
        doc: "on removal, revoke the role's older sessions with IAM (needs issuer = \"sts\")",
        live: false,
        show: |s| s.revoke_sessions.to_string(),
    },
    Key {
        name: "persist-credentials",
        flag: "",
        default: "true (false for issuer = \"local\")",
        doc: "keep the last good credentials in the state directory (mode 0600, removed when the role is removed or replaced and when they expire), so that a restart serves them at once and calls the issuer only at the refresh it had planned",
        live: false,
        show: |s| s.persist_credentials.to_string(),
    },
    Key {
        name: "base-key-max-age-days",
        flag: "",
        default: "none (rotate only with hostrole rotate-base-key)",
        doc: "issuer sts: rotate the base IAM user's access key, in the shared credentials file, once it is this many days old (1–3650)",
        live: false,
        show: |s| or_none(s.base_key.max_age.map(|d| d.as_secs() / 86_400)),
    },
    Key {
        name: "base-key-grace-minutes",
        flag: "",
        default: "60",
        doc: "issuer sts: after a rotation, how long the old key stays, inactive, before it is deleted (0–10080)",
        live: false,
        show: |s| (s.base_key.grace.as_secs() / 60).to_string(),
    },
    Key {
        name: "base-key-delete-inactive",
        flag: "",
        default: "false",
        doc: "issuer sts: a rotation deletes the user's inactive second key when it stands in the way (IAM allows two keys), instead of stopping",
        live: false,
        show: |s| s.base_key.delete_inactive.to_string(),
    },
    Key {
        name: "imds-v1",
        flag: "--imds-v1 allowed|disabled",
        default: "disabled",
        doc: "serve requests without a token",
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
        flag: "--hop-limit N",
        default: "1",
        doc: "IP TTL (IPv6 hop limit) of a connection from the moment it is given a token, for the rest of its life: with 1, as on EC2, a token does not cross a router. With 1 a token also goes only to callers whose source address is this host's own, so a container on the host's own bridge gets 403; 2 lets both kinds of container have one",
        live: false,
        show: |s| s.hop_limit.to_string(),
    },
    Key {
        name: "allowed-uids",
        flag: "--allowed-uid UID (repeatable)",
        default: "everyone",
        doc: "only these local users may read anything under meta-data/iam/ (others get 403, logged with uid and the caller's socket inode, at most 10 lines a second)",
        live: false,
        show: |s| {
            s.access
                .as_ref()
                .map_or_else(|| "none".into(), |a| list(a.uids()))
        },
    },
    Key {
        name: "allowed-gids",
        flag: "--allowed-gid GID (repeatable)",
        default: "everyone",
        doc: "as allowed-uids, for members (primary or supplementary) of these groups",
        live: false,
        show: |s| {
            s.access
                .as_ref()
                .map_or_else(|| "none".into(), |a| list(a.gids()))
        },
    },
    Key {
        name: "admin-group",
        flag: "",
        default: "none",
        doc: "group whose members may change the association, besides root",
        live: false,
        show: |s| or_none(s.admin_gid),
    },
    Key {
        name: "metrics-listen",
        flag: "--metrics-listen ADDR:PORT",
        default: "off",
        doc: "serve Prometheus metrics at /metrics",
        live: false,
        show: |s| or_none(s.metrics_listen),
    },
    Key {
        name: "pin-threads",
        flag: "",
        default: "false",
        doc: "pin each serving thread to a CPU of its own (one thread per CPU the service may use, at most 8) and give a keep-alive connection to the thread on its caller's CPU: a caller and the thread answering it then take turns on one core, which cuts tail latency under load; but a pinned thread cannot move off a CPU that other work keeps busy. The packaged unit denies sched_setaffinity (SystemCallFilter=~@resources): allow it in a drop-in with SystemCallFilter=sched_setaffinity, else the daemon says so and serves unpinned",
        live: false,
        show: |s| s.pin_threads.to_string(),
    },
    Key {
        name: "metadata-address-probe",
        flag: "",
        default: "true",
        doc: "the packaged hostrole-address.service first tries 169.254.169.254:80 and [fd00:ec2::254]:80 and, if a metadata service answers there (EC2, GCP, Azure, OpenStack, …), takes neither address and fails, saying why; false takes them anyway",
        live: false,
        show: |s| s.metadata_address_probe.to_string(),
    },
    Key {
        name: "state-dir",
        flag: "--state-dir DIR",
        default: "$STATE_DIRECTORY (the packaged service: /var/lib/hostrole), else ~/.local/state/hostrole, root included: a daemon run by hand never shares the service's state",
        doc: "token key, saved association, kept credentials, lock",
        live: false,
        show: |s| s.state_dir.display().to_string(),
    },
    Key {
        name: "control-socket",
        flag: "--control-socket PATH",
        default: "$RUNTIME_DIRECTORY/control.sock (the packaged service: /run/hostrole/control.sock), else $XDG_RUNTIME_DIR/hostrole/control.sock, else in the state directory",
        doc: "the association commands' socket",
        live: false,
        show: |s| s.control_socket.display().to_string(),
    },
];

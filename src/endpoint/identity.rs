//! The instance's identity as IMDS describes it: instance id, region,
//! availability zone, and the instance profile derived from the role.

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::role::RoleArn;

/// Where the host's machine id is (its instance id and its place in the
/// fleet's refresh spread derive from it).
pub const MACHINE_ID: &str = "/etc/machine-id";

/// Fixed facts about this "instance".
#[derive(Debug, Clone)]
pub struct InstanceIdentity {
    /// `i-` followed by 17 hex digits, stable per host.
    pub instance_id: String,
    /// The region, e.g. `us-east-1`.
    pub region: String,
    /// The availability zone, e.g. `us-east-1a`.
    pub availability_zone: String,
    /// When the daemon started, reported as `pendingTime`.
    pub started: SystemTime,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The instance id for a host: derived from `/etc/machine-id` (hashed, so
/// the machine id itself is not disclosed), else from the host name.
pub fn instance_id_for_host(machine_id_path: &Path) -> String {
    instance_id_from_seed(&host_seed(machine_id_path))
}

/// What tells this host from others: its machine id, else its host name.
pub fn host_seed(machine_id_path: &Path) -> String {
    fs::read_to_string(machine_id_path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
        })
        .unwrap_or_default()
}

/// `i-` + 17 hex digits of a hash of `seed`.
pub fn instance_id_from_seed(seed: &str) -> String {
    let digest = Sha256::digest(format!("hostrole instance-id\0{seed}").as_bytes());
    format!("i-{}", &hex(&digest)[..17])
}

/// The default availability zone of a region: its `a` zone.
pub fn default_availability_zone(region: &str) -> String {
    format!("{region}a")
}

/// `arn:PARTITION:iam::ACCOUNT:instance-profile/NAME` for a role.
pub fn instance_profile_arn(role: &RoleArn) -> String {
    format!(
        "arn:{}:iam::{}:instance-profile/{}",
        role.partition(),
        role.account_id(),
        role.name()
    )
}

/// A stable `AIPA…` id for the instance profile of a role.
pub fn instance_profile_id(role: &RoleArn) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Sha256::digest(format!("hostrole instance-profile\0{role}").as_bytes());
    let mut id = String::from("AIPA");
    id.extend(
        digest
            .iter()
            .take(17)
            .map(|b| ALPHABET[(*b as usize) % 32] as char),
    );
    id
}

/// The machine architecture as EC2 names it.
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        "x86" => "i386",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_stable_and_shaped_like_ec2s() {
        let a = instance_id_from_seed("4c4c4544004c3510804cb2c04f333232");
        assert_eq!(a, instance_id_from_seed("4c4c4544004c3510804cb2c04f333232"));
        assert_ne!(a, instance_id_from_seed("other"));
        assert_eq!(a.len(), 19);
        assert!(a.starts_with("i-"));
        assert!(a[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn instance_profile_follows_the_role() {
        let role = RoleArn::parse("arn:aws:iam::123456789012:role/path/demo").unwrap();
        assert_eq!(
            instance_profile_arn(&role),
            "arn:aws:iam::123456789012:instance-profile/demo"
        );
        let id = instance_profile_id(&role);
        assert!(id.starts_with("AIPA") && id.len() == 21, "{id}");
        assert_eq!(id, instance_profile_id(&role));
    }
}

//! Revoking a removed role's sessions on the AWS side.
//!
//! Credentials already handed to a process cannot be recalled by the host.
//! With `revoke-sessions = true`, removing a role (disassociate, or the old
//! role of a replace) also attaches to the role the inline policy the IAM
//! console's "Revoke active sessions" attaches: deny everything to sessions
//! whose `aws:TokenIssueTime` is before now. It needs `iam:PutRolePolicy`
//! on the role, and it affects every holder of the role, not only this host.

use aws_config::SdkConfig;
use aws_sdk_iam::error::ProvideErrorMetadata;

use crate::clock::{rfc3339_seconds, SharedClock};
use crate::credentials::issuer::cause::root_cause;
use crate::role::RoleArn;

/// The inline policy's name, as the IAM console names it.
pub const POLICY_NAME: &str = "AWSRevokeOlderSessions";

/// The deny policy for sessions issued before `issued_before` (RFC 3339).
pub fn revoke_policy(issued_before: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Deny",
            "Action": ["*"],
            "Resource": ["*"],
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": issued_before}}
        }]
    })
    .to_string()
}

/// Attaches the revocation policy through IAM.
#[derive(Debug)]
pub struct SessionRevoker {
    client: aws_sdk_iam::Client,
    clock: SharedClock,
}

impl SessionRevoker {
    /// A revoker using `sdk`'s base credentials, at `endpoint` if given.
    pub fn new(sdk: &SdkConfig, endpoint: Option<String>, clock: SharedClock) -> Self {
        let mut builder = aws_sdk_iam::config::Builder::from(sdk);
        builder.set_endpoint_url(endpoint);
        let conf = builder.build();
        SessionRevoker {
            client: aws_sdk_iam::Client::from_conf(conf),
            clock,
        }
    }

    /// Denies every session of `role` issued before now.
    pub async fn revoke_older_sessions(&self, role: &RoleArn) -> Result<(), String> {
        let policy = revoke_policy(&rfc3339_seconds(self.clock.now()));
        self.client
            .put_role_policy()
            .role_name(role.name())
            .policy_name(POLICY_NAME)
            .policy_document(policy)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| match e.code() {
                Some(code) => format!(
                    "IAM PutRolePolicy failed: {code}: {}",
                    e.message().unwrap_or("")
                ),
                None => format!("IAM PutRolePolicy failed: {}", root_cause(&e)),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_denies_everything_to_older_sessions() {
        let p: serde_json::Value =
            serde_json::from_str(&revoke_policy("2026-11-23T00:00:00Z")).unwrap();
        let st = &p["Statement"][0];
        assert_eq!(st["Effect"], "Deny");
        assert_eq!(st["Action"][0], "*");
        assert_eq!(
            st["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
            "2026-11-23T00:00:00Z"
        );
    }
}

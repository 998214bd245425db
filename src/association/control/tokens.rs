//! The control socket's container-token requests: create and revoke a
//! consumer's token for the container credentials endpoint, each audited.

use std::time::Duration;

use super::protocol::{ConsumerName, Response, TokenCreateRequest, TokenText};
use super::server::{Caller, Control};
use crate::consumers::ConsumerError;

impl Control {
    /// `container-token create`: the file is written off the runtime.
    pub(super) async fn create_token(&self, r: TokenCreateRequest, caller: &Caller) -> Response {
        let consumers = self.consumers.clone();
        let name = r.name.clone();
        let lifetime = r.expires_in_seconds.map(Duration::from_secs);
        let created = tokio::task::spawn_blocking(move || consumers.create(&name, lifetime)).await;
        match created {
            Ok(Ok(new)) => {
                tracing::info!(
                    target: "audit",
                    uid = caller.uid,
                    pid = caller.pid,
                    consumer = %r.name,
                    expires = new.consumer.expires.as_deref().unwrap_or("never"),
                    "container token created"
                );
                Response {
                    token: Some(TokenText(new.token.to_string())),
                    consumers: Some(vec![new.consumer]),
                    ..self.answer(Ok(None))
                }
            }
            Ok(Err(e)) => self.answer(Err(format!("container-token create: {e}"))),
            Err(e) => self.answer(Err(format!("container-token create: {e}"))),
        }
    }

    /// `container-token revoke`: in effect before the file is written.
    pub(super) async fn revoke_token(&self, r: ConsumerName, caller: &Caller) -> Response {
        let consumers = self.consumers.clone();
        let name = r.name.clone();
        let revoked = tokio::task::spawn_blocking(move || consumers.revoke(&name)).await;
        let audit = |saved: bool| {
            tracing::info!(
                target: "audit",
                uid = caller.uid,
                pid = caller.pid,
                consumer = %r.name,
                saved,
                "container token revoked"
            )
        };
        match revoked {
            Ok(Ok(view)) => {
                audit(true);
                Response {
                    consumers: Some(vec![view]),
                    ..self.answer(Ok(None))
                }
            }
            Ok(Err(e @ ConsumerError::Save { .. })) => {
                audit(false);
                tracing::error!(error = %e, "a revocation could not be saved: it holds until the next start only");
                self.answer(Err(format!(
                    "container-token revoke: the token is refused from now on, but {e}: \
                     it would be valid again after a restart; fix that and run revoke again to save it"
                )))
            }
            Ok(Err(e)) => self.answer(Err(format!("container-token revoke: {e}"))),
            Err(e) => self.answer(Err(format!("container-token revoke: {e}"))),
        }
    }
}

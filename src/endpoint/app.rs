//! The state every connection reads, and the one place a request is
//! answered: [`App::respond`] hands it to the handler its listener serves
//! ([`crate::endpoint::imds::handle`] or
//! [`crate::endpoint::container::handle`]) over the latest snapshot, logs
//! refusals within a budget, locks the hop limit before a token leaves,
//! and counts the answer. Both ways a connection is served (the quick path
//! in [`crate::endpoint::quick`] and hyper in [`crate::endpoint::server`])
//! come here.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::{Request, Response};
use tokio::sync::watch;

use super::access::{GroupCache, Groups};
use super::conn::{Conn, LocalAddrs, Serves};
use super::container;
use super::documents::unavailable;
use super::imds::{handle, Caller, Endpoint, Reply, ResponseTtl};
use crate::consumers::ConsumerTokens;
use crate::credentials::refresh::{RefresherHandle, Snapshot};
use crate::logbudget::LogBudget;
use crate::metrics::Metrics;
use crate::net::peer::SocketOwner;

/// The shared state every connection reads.
#[derive(Debug)]
pub struct App {
    /// What the handler needs.
    pub endpoint: Endpoint,
    /// The latest snapshot from the refresher.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// To wake the refresher when credentials are found expired.
    pub refresher: RefresherHandle,
    /// Request, token and connection metrics.
    pub metrics: Arc<Metrics>,
    /// This host's own addresses, for the hop-limit-1 source check.
    pub local_addrs: LocalAddrs,
    /// Callers' groups, for `allowed-gids`.
    pub groups: GroupCache,
    /// Log lines about refused requests, bounded.
    pub refusals: LogBudget,
    /// Log lines about refused connections, bounded.
    pub full: LogBudget,
    /// The container endpoint's consumers and their tokens.
    pub consumers: Arc<ConsumerTokens>,
}

impl App {
    /// Answers one request.
    pub fn respond<B>(&self, req: &Request<B>, conn: &Conn) -> Response<Bytes> {
        if let Some(slot) = &conn.slot {
            slot.touch();
        }
        let snapshot = self.snapshots.borrow().clone();
        let (mut reply, consumer): (Reply, Option<String>) = match conn.serves {
            Serves::Imds => (handle(req, &snapshot, &self.endpoint, &conn.caller), None),
            Serves::Container => {
                let r = container::handle(
                    req,
                    &snapshot,
                    &self.endpoint,
                    &conn.caller,
                    &self.consumers,
                );
                (r.reply, r.consumer)
            }
        };
        drop(snapshot);
        if reply.stale {
            self.refresher.wake();
        }
        let route = reply.route.label();
        if let Some(why) = reply.refused {
            if let Some(suppressed) = self.refusals.take() {
                tracing::warn!(
                    peer = ?conn.caller.addr,
                    uid = conn.owner().map(|o| o.uid),
                    inode = conn.owner().map(|o| o.inode),
                    consumer = consumer.as_deref(),
                    route,
                    suppressed,
                    "{why}"
                );
            }
        }
        if reply.ttl == ResponseTtl::HopLimit {
            let hop_limit = self.endpoint.hop_limit;
            if let Err(e) = conn.lock_hop_limit(hop_limit) {
                // No token leaves without the hop limit.
                tracing::error!(error = %e, ttl = hop_limit, "cannot set the IP TTL; token withheld");
                reply.response = unavailable();
            }
        }
        self.metrics
            .observe_request(route, reply.response.status().as_u16());
        tracing::debug!(
            method = %req.method(),
            route,
            status = reply.response.status().as_u16(),
            peer = ?conn.caller.addr,
            consumer = consumer.as_deref(),
            "request"
        );
        reply.response
    }

    /// Whether a caller's socket owner must be known before its first
    /// request is answered: the allow-list decides by it.
    pub fn needs_owner(&self) -> bool {
        self.endpoint.access.is_some()
    }

    /// What the handler is told about a newly accepted caller, when it can
    /// be told at once: `None` when the allow-list needs the user's groups
    /// and they are not cached (see [`App::caller`]). This host's
    /// addresses are read only with hop limit 1.
    pub fn caller_now(
        &self,
        addr: SocketAddr,
        local: SocketAddr,
        owner: Option<SocketOwner>,
    ) -> Option<Caller> {
        let uid = owner.map(|o| o.uid);
        let groups = match (&self.endpoint.access, uid) {
            (Some(list), Some(uid)) if list.needs_groups(uid) => Some(self.groups.cached(uid)?),
            _ => None,
        };
        Some(self.caller_with(addr, local, uid, groups))
    }

    /// As [`App::caller_now`], looking the user's groups up (off the
    /// runtime, cached) when the allow-list needs them.
    pub async fn caller(
        &self,
        addr: SocketAddr,
        local: SocketAddr,
        owner: Option<SocketOwner>,
    ) -> Caller {
        if let Some(caller) = self.caller_now(addr, local, owner) {
            return caller;
        }
        let uid = owner.map(|o| o.uid);
        let groups = match uid {
            Some(uid) => Some(self.groups.groups_of(uid).await),
            None => None,
        };
        self.caller_with(addr, local, uid, groups)
    }

    fn caller_with(
        &self,
        addr: SocketAddr,
        local: SocketAddr,
        uid: Option<u32>,
        groups: Option<Arc<Groups>>,
    ) -> Caller {
        let on_this_host =
            self.endpoint.hop_limit > 1 || self.local_addrs.contains(addr.ip(), local.ip());
        Caller {
            addr: Some(addr),
            on_this_host,
            uid,
            groups,
        }
    }
}

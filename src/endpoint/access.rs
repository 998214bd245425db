//! Which local users may read credentials (`allowed-uids`, `allowed-gids`).
//!
//! For a caller on this host, the kernel knows which user owns the caller's
//! end of the TCP connection; [`crate::net::peer::tcp_socket_owner`] asks it once
//! per connection, exactly, for every pair of address families. That uid is
//! checked against the allowed uids, and its groups (from the user database,
//! looked up off the runtime and cached, see [`GroupCache`]) against the
//! allowed gids. A caller the kernel cannot name (another network
//! namespace, a remote host) is refused: with an allow-list set, unknown
//! means no.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How long a user's groups are reused before they are looked up again.
pub const GROUPS_MAX_AGE: Duration = Duration::from_secs(60);
/// How long one user-database lookup may take (a hung directory service)
/// before the user is taken to be in no group.
pub const GROUPS_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Most users whose groups are kept.
const GROUPS_CACHE_USERS: usize = 4096;

/// The configured allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    uids: Vec<u32>,
    gids: Vec<u32>,
}

impl AllowList {
    /// An allow-list of these uids and gids.
    pub fn new(mut uids: Vec<u32>, mut gids: Vec<u32>) -> Self {
        uids.sort_unstable();
        uids.dedup();
        gids.sort_unstable();
        gids.dedup();
        Self { uids, gids }
    }

    /// Whether `uid` may read credentials: listed itself, or a member
    /// (primary or supplementary, see [`crate::net::peergroups::is_member`]) of a
    /// listed group. `groups` are the user's groups, when looked up (see
    /// [`AllowList::needs_groups`]); none looked up means no group.
    pub fn permits(&self, uid: u32, groups: Option<&Groups>) -> bool {
        if self.uids.binary_search(&uid).is_ok() {
            return true;
        }
        groups.is_some_and(|g| {
            self.gids
                .iter()
                .any(|&gid| crate::net::peergroups::is_member(gid, g.primary, &g.all))
        })
    }

    /// The listed uids, sorted.
    pub fn uids(&self) -> &[u32] {
        &self.uids
    }

    /// The listed gids, sorted.
    pub fn gids(&self) -> &[u32] {
        &self.gids
    }

    /// Whether deciding about `uid` needs its groups: it is not listed
    /// itself and groups are.
    pub fn needs_groups(&self, uid: u32) -> bool {
        self.uids.binary_search(&uid).is_err() && !self.gids.is_empty()
    }
}

/// A user's groups, as the user database says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups {
    /// The primary group (`u32::MAX` for an unknown user, which no group
    /// list names).
    pub primary: u32,
    /// Every group, the primary one included.
    pub all: Vec<u32>,
}

/// Users' groups, looked up in the user database on a blocking thread
/// (NSS may read files or ask a directory service) and kept for
/// [`GROUPS_MAX_AGE`].
#[derive(Debug, Default)]
pub struct GroupCache {
    users: Mutex<HashMap<u32, (Instant, Arc<Groups>)>>,
}

impl GroupCache {
    /// The groups of `uid`: from the cache, else looked up (bounded by
    /// [`GROUPS_LOOKUP_TIMEOUT`]; a lookup that fails or takes longer gives
    /// no groups, and is not kept).
    pub async fn groups_of(&self, uid: u32) -> Arc<Groups> {
        if let Some(groups) = self.cached(uid) {
            return groups;
        }
        let lookup = tokio::task::spawn_blocking(move || user_groups(uid));
        let groups = match tokio::time::timeout(GROUPS_LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(groups)) => Arc::new(groups),
            Ok(Err(e)) => {
                tracing::warn!(uid, error = %e, "user database lookup failed; taking no groups");
                return Arc::new(Groups::none());
            }
            Err(_) => {
                tracing::warn!(uid, "user database lookup timed out; taking no groups");
                return Arc::new(Groups::none());
            }
        };
        let mut users = self.lock();
        if users.len() >= GROUPS_CACHE_USERS {
            users.clear();
        }
        users.insert(uid, (Instant::now(), groups.clone()));
        groups
    }

    /// The groups of `uid` when the cache has them, without a lookup.
    pub fn cached(&self, uid: u32) -> Option<Arc<Groups>> {
        self.lock()
            .get(&uid)
            .filter(|(at, _)| at.elapsed() < GROUPS_MAX_AGE)
            .map(|(_, groups)| groups.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, (Instant, Arc<Groups>)>> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Groups {
    fn none() -> Self {
        Groups {
            primary: u32::MAX,
            all: Vec::new(),
        }
    }
}

/// The primary and supplementary groups of `uid` in the user database.
/// Blocking: call it off the runtime.
pub fn user_groups(uid: u32) -> Groups {
    use nix::unistd::{Uid, User};
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return Groups::none();
    };
    let primary = user.gid.as_raw();
    let all = std::ffi::CString::new(user.name.as_bytes())
        .ok()
        .and_then(|name| nix::unistd::getgrouplist(&name, user.gid).ok())
        .map(|groups| groups.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|| vec![primary]);
    Groups { primary, all }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn uids_are_allowed_by_number_and_by_group() {
        let cache = GroupCache::default();
        let list = AllowList::new(vec![1000], vec![]);
        assert!(list.permits(1000, None));
        assert!(!list.needs_groups(0), "no groups listed: none needed");
        assert!(!list.permits(0, None));
        // root's primary group is 0 on every system.
        let by_group = AllowList::new(vec![], vec![0]);
        assert!(by_group.needs_groups(0));
        assert!(by_group.permits(0, Some(&*cache.groups_of(0).await)));
        assert!(!by_group.permits(0, None), "groups not looked up: no group");
        assert!(!by_group.permits(4_000_000, Some(&*cache.groups_of(4_000_000).await)));
        let both = AllowList::new(vec![7], vec![0]);
        assert!(!both.needs_groups(7), "listed by uid: no lookup");
        assert!(both.permits(7, None));
    }

    #[tokio::test]
    async fn an_unknown_user_is_in_no_group_and_is_looked_up_once_per_age() {
        let cache = GroupCache::default();
        let unknown = cache.groups_of(4_000_000).await;
        assert!(unknown.all.is_empty());
        assert_eq!(unknown.primary, u32::MAX);
        assert!(cache.cached(0).is_none(), "not looked up yet");
        let root = cache.groups_of(0).await;
        assert!(Arc::ptr_eq(&root, &cache.cached(0).unwrap()));
        assert_eq!(root.primary, 0);
        assert!(root.all.contains(&0));
        // Kept: the same allocation comes back.
        assert!(Arc::ptr_eq(&root, &cache.groups_of(0).await));
    }
}

//! Connection slots: how many connections a listener serves at once, and
//! how many of them any one caller may hold.
//!
//! Every listener (IMDS, control socket, metrics) takes a slot for each
//! connection it accepts and gives it back when the connection ends. A slot
//! is keyed by who holds it: the local uid that owns the caller's socket
//! when the kernel says, else the caller's address. No key holds more than
//! its share of the slots, so one local user opening connections in a loop
//! cannot shut the others out.
//!
//! A listener that allows it ([`Slots::new`]'s `evict`) makes room instead
//! of refusing: the least recently active connection of the key that holds
//! the most slots (of the caller itself, when the caller is at its share) is
//! asked to close. It finishes the request it may be answering and closes
//! within [`EVICT_GRACE`]; its slot passes to the new connection at once, so
//! at most twice the cap of descriptors are ever open.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How long an evicted connection has to finish its request and close.
pub const EVICT_GRACE: Duration = Duration::from_secs(1);

/// Who holds a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Holder {
    /// A local user, by the uid owning the caller's socket.
    Uid(u32),
    /// A caller the kernel cannot name a user for, by address.
    Addr(IpAddr),
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Uid(uid) => write!(f, "uid {uid}"),
            Holder::Addr(ip) => write!(f, "{ip}"),
        }
    }
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Every slot is taken by a connection that cannot be asked to close.
    #[error("connection limit reached")]
    Full,
    /// The caller already holds its share.
    #[error("this caller holds its share of the connections")]
    Share,
}

struct Entry {
    holder: Holder,
    last_active: Instant,
    evicting: bool,
    evict: Arc<Notify>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    /// Slots held by connections not being evicted, per holder.
    held: HashMap<Holder, usize>,
    /// Connections not being evicted.
    active: usize,
}

/// The slots of one listener.
pub struct Slots {
    cap: usize,
    share: usize,
    evict: bool,
    table: Mutex<Table>,
}

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots")
            .field("cap", &self.cap)
            .field("share", &self.share)
            .field("evict", &self.evict)
            .finish_non_exhaustive()
    }
}

/// One connection's slot; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    /// Notified when this connection is asked to make room.
    pub evict: Arc<Notify>,
}

impl Slots {
    /// `cap` connections at once, at most `share` of them per holder;
    /// `evict`: make room by closing idle connections instead of refusing.
    pub fn new(cap: usize, share: usize, evict: bool) -> Arc<Self> {
        Arc::new(Self {
            cap,
            share: share.clamp(1, cap.max(1)),
            evict,
            table: Mutex::new(Table::default()),
        })
    }

    /// Takes a slot for a new connection of `holder`.
    pub fn acquire(self: &Arc<Self>, holder: Holder) -> Result<Slot, Refused> {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mine = t.held.get(&holder).copied().unwrap_or(0);
        let need_room = if mine >= self.share {
            Some((Refused::Share, holder))
        } else if t.active >= self.cap {
            // The holder with the most slots gives one up.
            let biggest = t
                .held
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(h, _)| *h)
                .unwrap_or(holder);
            Some((Refused::Full, biggest))
        } else {
            None
        };
        if let Some((why, victim_of)) = need_room {
            // Evicted connections close within EVICT_GRACE; while as many
            // are closing as the cap, refuse rather than evict more.
            if !self.evict || t.entries.len() - t.active >= self.cap {
                return Err(why);
            }
            let victim = t
                .entries
                .iter()
                .filter(|(_, e)| e.holder == victim_of && !e.evicting)
                .min_by_key(|(_, e)| e.last_active)
                .map(|(id, _)| *id)
                .ok_or(why)?;
            let entry = t.entries.get_mut(&victim).expect("victim exists");
            entry.evicting = true;
            entry.evict.notify_one();
            t.active -= 1;
            if let Some(n) = t.held.get_mut(&victim_of) {
                *n -= 1;
            }
        }
        let id = t.next_id;
        t.next_id += 1;
        let evict = Arc::new(Notify::new());
        t.entries.insert(
            id,
            Entry {
                holder,
                last_active: Instant::now(),
                evicting: false,
                evict: evict.clone(),
            },
        );
        *t.held.entry(holder).or_insert(0) += 1;
        t.active += 1;
        Ok(Slot {
            slots: self.clone(),
            id,
            evict,
        })
    }

    /// Connections open now, those being evicted included.
    pub fn open(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .len()
    }
}

impl Slot {
    /// Marks the connection active now (it is answering a request), which
    /// puts it last in line for eviction.
    pub fn touch(&self) {
        let mut t = self.slots.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = t.entries.get_mut(&self.id) {
            e.last_active = Instant::now();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.slots.table.lock().unwrap_or_else(|e| e.into_inner());
        let Some(e) = t.entries.remove(&self.id) else {
            return;
        };
        if !e.evicting {
            t.active -= 1;
            if let Some(n) = t.held.get_mut(&e.holder) {
                *n -= 1;
                if *n == 0 {
                    t.held.remove(&e.holder);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: Holder = Holder::Uid(0);
    const NOBODY: Holder = Holder::Uid(65534);

    #[tokio::test(start_paused = true)]
    async fn no_holder_takes_more_than_its_share_and_others_still_get_in() {
        let slots = Slots::new(4, 2, false);
        let a = slots.acquire(NOBODY).unwrap();
        let b = slots.acquire(NOBODY).unwrap();
        assert_eq!(slots.acquire(NOBODY).unwrap_err(), Refused::Share);
        let c = slots.acquire(ROOT).unwrap();
        let d = slots.acquire(ROOT).unwrap();
        assert_eq!(slots.acquire(Holder::Uid(1)).unwrap_err(), Refused::Full);
        drop(a);
        assert_eq!(slots.open(), 3);
        let _e = slots.acquire(Holder::Uid(1)).unwrap();
        drop((b, c, d));
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_biggest_holders_least_recent_connection_is_asked_to_close() {
        let slots = Slots::new(3, 3, true);
        let old = slots.acquire(NOBODY).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let newer = slots.acquire(NOBODY).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let root = slots.acquire(ROOT).unwrap();
        // `old` answers a request now: `newer` becomes the least recent.
        tokio::time::advance(Duration::from_secs(1)).await;
        old.touch();
        let fresh = slots.acquire(Holder::Uid(7)).unwrap();
        assert!(tokio::time::timeout(Duration::ZERO, newer.evict.notified())
            .await
            .is_ok());
        assert!(tokio::time::timeout(Duration::ZERO, old.evict.notified())
            .await
            .is_err());
        assert!(tokio::time::timeout(Duration::ZERO, root.evict.notified())
            .await
            .is_err());
        // The evicted connection is still open until it closes.
        assert_eq!(slots.open(), 4);
        drop(newer);
        assert_eq!(slots.open(), 3);
        drop((old, root, fresh));
        assert_eq!(slots.open(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_at_its_share_makes_room_among_its_own_connections_only() {
        let slots = Slots::new(8, 2, true);
        let root = slots.acquire(ROOT).unwrap();
        let first = slots.acquire(NOBODY).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let second = slots.acquire(NOBODY).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let third = slots.acquire(NOBODY).unwrap();
        assert!(tokio::time::timeout(Duration::ZERO, first.evict.notified())
            .await
            .is_ok());
        assert!(tokio::time::timeout(Duration::ZERO, root.evict.notified())
            .await
            .is_err());
        // Evicting connections no longer count against the share.
        let fourth = slots.acquire(NOBODY).unwrap();
        assert!(
            tokio::time::timeout(Duration::ZERO, second.evict.notified())
                .await
                .is_ok()
        );
        drop((root, first, second, third, fourth));
        assert_eq!(slots.open(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_connections_close_at_once_than_the_cap() {
        let slots = Slots::new(2, 2, true);
        let mut held = vec![
            slots.acquire(NOBODY).unwrap(),
            slots.acquire(NOBODY).unwrap(),
        ];
        // Each new one evicts an old one, until two are closing.
        held.push(slots.acquire(NOBODY).unwrap());
        held.push(slots.acquire(NOBODY).unwrap());
        assert_eq!(slots.open(), 4);
        assert_eq!(slots.acquire(NOBODY).unwrap_err(), Refused::Share);
        assert_eq!(slots.acquire(ROOT).unwrap_err(), Refused::Full);
        // One closes: room again.
        held.remove(0);
        assert!(slots.acquire(NOBODY).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_whose_connections_closed_gets_in_again_without_evicting() {
        let slots = Slots::new(8, 2, true);
        let a = slots.acquire(NOBODY).unwrap();
        let b = slots.acquire(NOBODY).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let c = slots.acquire(NOBODY).unwrap(); // evicts `a`
        drop(a);
        drop(b);
        // One held (`c`): below the share, so no one is asked to close.
        let _d = slots.acquire(NOBODY).unwrap();
        assert!(tokio::time::timeout(Duration::ZERO, c.evict.notified())
            .await
            .is_err());
        assert_eq!(slots.open(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn once_as_many_are_closing_as_the_cap_the_next_is_refused() {
        let slots = Slots::new(3, 3, true);
        let mut held: Vec<Slot> = (0..3).map(|_| slots.acquire(NOBODY).unwrap()).collect();
        for _ in 0..3 {
            held.push(slots.acquire(NOBODY).unwrap());
        }
        assert_eq!(slots.open(), 6);
        assert_eq!(slots.acquire(NOBODY).unwrap_err(), Refused::Share);
    }

    #[test]
    fn without_eviction_a_full_listener_refuses() {
        let slots = Slots::new(1, 1, false);
        let _a = slots.acquire(ROOT).unwrap();
        assert_eq!(slots.acquire(ROOT).unwrap_err(), Refused::Share);
        assert_eq!(slots.acquire(NOBODY).unwrap_err(), Refused::Full);
    }
}

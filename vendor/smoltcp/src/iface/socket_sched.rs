//! The scheduler of a [`SocketSet`](super::SocketSet): what keeps the cost of a packet
//! independent of the number of sockets (`alloc` only).
//!
//! Without it, the interface walks every socket for each segment that arrives (to find its
//! socket), on every egress (to ask each socket whether it has something to send) and for
//! every `poll_at`. With 10,000 idle connections that is most of the work of a packet. Here:
//!
//! - **ingress**: TCP sockets with a 4-tuple are indexed by it (a `BTreeSet` of
//!   `(local, remote, index)`), listening ones apart by port; a segment is looked up in the
//!   index, then among the listeners of its port, in that order (as before: a connection's
//!   segment never reaches a listener);
//! - **egress** visits only the sockets that are *ready*: given out by `get_mut`/`iter_mut`
//!   (the caller may have queued data or closed; a socket listening as indexed is looked at
//!   again only if it no longer is), that took in a segment, that asked to be polled now, or
//!   whose deadline has come (a binary heap of deadlines, stale entries skipped and
//!   compacted);
//! - **`poll_at`** looks at the ready sockets and the earliest deadline only.
//!
//! Sockets other than TCP (UDP, ICMP, ...) are few and kept in a list that is visited as before;
//! so are TCP sockets silenced until their neighbor (ARP, NDISC) answers, so that they send as
//! soon as it does.
//! The index of a socket is brought up to date after every visit (ingress, egress) and, for a
//! socket given out by `get_mut`, before the next segment is looked up.

use alloc::collections::{BTreeSet, BinaryHeap};
use alloc::vec::Vec;
use core::cmp::Reverse;

use super::socket_meta::Meta;
use super::socket_set::{Item, SocketHandle, SocketStorage};
use crate::socket::{PollAt, Socket};
use crate::time::Instant;
use crate::wire::IpEndpoint;

/// Where a socket is indexed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(crate) enum Class {
    /// A TCP socket that accepts nothing (closed).
    #[default]
    Idle,
    /// A TCP socket of a connection: (local, remote).
    Tuple(IpEndpoint, IpEndpoint),
    /// A TCP socket in LISTEN, on this port.
    Listen(u16),
    /// Not a TCP socket.
    Other,
}

/// The scheduler's part of a socket's metadata.
#[derive(Debug, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(crate) struct SchedMeta {
    class: Class,
    /// In `Sched::ready`.
    ready: bool,
    /// In `Sched::unsynced`.
    unsynced: bool,
    /// In `Sched::changed`.
    changed: bool,
    /// The deadline of its live entry in `Sched::timers`.
    deadline: Option<Instant>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Sched {
    tuples: BTreeSet<(IpEndpoint, IpEndpoint, usize)>,
    /// Listening TCP sockets by (port, index).
    listening: BTreeSet<(u16, usize)>,
    /// Sockets other than TCP, in set order.
    others: Vec<usize>,
    /// The socket last given out by `get_mut` while listening as indexed (see
    /// [`Sched::touch_mut`]).
    last_listening: Option<usize>,
    /// To visit at the next egress.
    ready: Vec<usize>,
    /// TCP sockets silenced until a neighbor is discovered: visited on every egress, as the
    /// sockets of other kinds, so that they send as soon as the neighbor answers.
    waiting: Vec<usize>,
    /// Given out by `get_mut` since the index was last brought up to date.
    unsynced: Vec<usize>,
    /// Deadlines; an entry is live when it matches the socket's `SchedMeta::deadline`.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Live entries in `timers`.
    timed: usize,
    /// TCP sockets whose state may have changed since `clear_changed`.
    changed: Vec<SocketHandle>,
}

fn classify(socket: &Socket) -> Class {
    match socket {
        #[cfg(feature = "socket-tcp")]
        Socket::Tcp(s) => {
            use crate::socket::tcp::State;
            match (s.state(), s.local_endpoint(), s.remote_endpoint()) {
                (State::Closed, _, _) => Class::Idle,
                (State::Listen, _, _) => Class::Listen(s.listen_endpoint().port),
                (_, Some(l), Some(r)) => Class::Tuple(l, r),
                _ => Class::Idle,
            }
        }
        #[allow(unreachable_patterns)]
        _ => Class::Other,
    }
}

impl Sched {
    /// A socket was put in slot `index`.
    pub(crate) fn added(&mut self, index: usize, slot: &mut SocketStorage) {
        let Some(item) = slot.inner.as_mut() else {
            return;
        };
        item.meta.sched = SchedMeta::default();
        if classify(&item.socket) == Class::Other {
            item.meta.sched.class = Class::Other;
            if let Err(at) = self.others.binary_search(&index) {
                self.others.insert(at, index);
            }
        } else {
            self.touch(&mut item.meta, index);
        }
    }

    /// The socket of slot `index` was taken out.
    pub(crate) fn removed(&mut self, index: usize, meta: &Meta) {
        self.unindex(index, meta.sched.class);
        if meta.sched.deadline.is_some() {
            self.timed -= 1;
        }
        // Entries left in `ready`, `unsynced`, `changed` and `timers` find an empty slot, or a
        // new socket whose flags do not match them, and are skipped.
    }

    /// The socket may change: visit it at the next egress, index it again before the next
    /// segment is looked up.
    pub(crate) fn touch(&mut self, meta: &mut Meta, index: usize) {
        let m = &mut meta.sched;
        if m.class == Class::Other {
            return;
        }
        if !m.ready {
            m.ready = true;
            self.ready.push(index);
        }
        if !m.unsynced {
            m.unsynced = true;
            self.unsynced.push(index);
        }
    }

    /// The socket is given out by `get_mut`: [`Sched::touch`] it, unless it is listening as
    /// indexed. Then it is only remembered, and looked at again by [`Sched::settle`] when the
    /// set is next used (another `get_mut`, a poll): the caller may have closed it, or aborted
    /// and connected it, but only while it held this one borrow. A server's pool of listening
    /// sockets, looked at on every turn, then costs nothing more here.
    pub(crate) fn touch_mut(&mut self, item: &mut Item, index: usize) {
        if self.still_listening(item) {
            self.last_listening = Some(index);
        } else {
            self.touch(&mut item.meta, index);
        }
    }

    /// Touch the listening socket last given out if it is no longer listening as indexed.
    pub(crate) fn settle(&mut self, slots: &mut [SocketStorage]) {
        if let Some(index) = self.last_listening.take()
            && let Some(item) = slots.get_mut(index).and_then(|s| s.inner.as_mut())
            && !self.still_listening(item)
        {
            self.touch(&mut item.meta, index);
        }
    }

    fn unindex(&mut self, index: usize, class: Class) {
        match class {
            Class::Tuple(l, r) => {
                self.tuples.remove(&(l, r, index));
            }
            Class::Listen(port) => {
                self.listening.remove(&(port, index));
            }
            Class::Other => {
                if let Ok(at) = self.others.binary_search(&index) {
                    self.others.remove(at);
                }
            }
            Class::Idle => {}
        }
    }

    /// Index the socket of `index` as it is now.
    pub(crate) fn reindex(&mut self, index: usize, item: &mut Item) {
        let class = classify(&item.socket);
        if class == item.meta.sched.class {
            return;
        }
        self.unindex(index, item.meta.sched.class);
        match class {
            Class::Tuple(l, r) => {
                self.tuples.insert((l, r, index));
            }
            Class::Listen(port) => {
                self.listening.insert((port, index));
            }
            Class::Idle | Class::Other => {}
        }
        item.meta.sched.class = class;
    }

    /// Whether `item` is a TCP socket in LISTEN that is indexed so (nothing to send, no
    /// deadline to keep).
    pub(crate) fn still_listening(&self, item: &Item) -> bool {
        matches!(item.meta.sched.class, Class::Listen(_))
            && item.meta.sched.deadline.is_none()
            && classify(&item.socket) == item.meta.sched.class
    }

    /// Index again every socket given out by `get_mut` since the last time.
    pub(crate) fn sync(&mut self, slots: &mut [SocketStorage]) {
        self.settle(slots);
        while let Some(index) = self.unsynced.pop() {
            if let Some(item) = slots.get_mut(index).and_then(|s| s.inner.as_mut())
                && item.meta.sched.unsynced
            {
                item.meta.sched.unsynced = false;
                self.reindex(index, item);
            }
        }
    }

    /// The TCP sockets that may accept a segment from `remote` to `local`: those of the
    /// connection first, then those listening on its port, each in set order. Call
    /// [`Sched::sync`] first.
    pub(crate) fn tcp_candidates(
        &self,
        local: IpEndpoint,
        remote: IpEndpoint,
    ) -> impl Iterator<Item = usize> + '_ {
        self.tuples
            .range((local, remote, 0)..=(local, remote, usize::MAX))
            .map(|&(_, _, i)| i)
            .chain(
                self.listening
                    .range((local.port, 0)..=(local.port, usize::MAX))
                    .map(|&(_, i)| i),
            )
    }

    /// A TCP socket took in a segment: index it again, visit it at the next egress, list it as
    /// changed.
    pub(crate) fn processed(&mut self, index: usize, item: &mut Item) {
        self.reindex(index, item);
        self.touch(&mut item.meta, index);
        self.mark_changed(&mut item.meta);
    }

    /// List the socket as changed.
    pub(crate) fn mark_changed(&mut self, meta: &mut Meta) {
        if !meta.sched.changed {
            meta.sched.changed = true;
            self.changed.push(meta.handle);
        }
    }

    /// The TCP sockets to visit in this egress: the ready ones and those whose deadline has
    /// come (in no particular order), followed by the sockets of other kinds. Give the vector
    /// back with [`Sched::give_back`].
    pub(crate) fn take_batch(&mut self, now: Instant, slots: &mut [SocketStorage]) -> Vec<usize> {
        self.settle(slots);
        while let Some(&Reverse((t, index))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            if let Some(item) = slots.get_mut(index).and_then(|s| s.inner.as_mut())
                && item.meta.sched.deadline == Some(t)
            {
                item.meta.sched.deadline = None;
                self.timed -= 1;
                self.touch(&mut item.meta, index);
            }
        }
        let mut batch = core::mem::take(&mut self.ready);
        batch.retain(|&index| {
            match slots.get_mut(index).and_then(|s| s.inner.as_mut()) {
                Some(item) if item.meta.sched.ready => {
                    // Touched again while visited: queued again.
                    item.meta.sched.ready = false;
                    true
                }
                _ => false,
            }
        });
        self.waiting.retain(|&index| {
            slots
                .get(index)
                .and_then(|s| s.inner.as_ref())
                .is_some_and(|item| item.meta.waiting_for_neighbor())
        });
        batch.extend_from_slice(&self.waiting);
        batch.extend_from_slice(&self.others);
        batch
    }

    /// Put back what `take_batch` gave, from position `rest` on, unvisited (the device was
    /// full); keeps the vector's allocation for the next batch.
    pub(crate) fn give_back(
        &mut self,
        mut batch: Vec<usize>,
        rest: usize,
        slots: &mut [SocketStorage],
    ) {
        for &index in batch.get(rest..).unwrap_or(&[]) {
            if let Some(item) = slots.get_mut(index).and_then(|s| s.inner.as_mut()) {
                self.touch(&mut item.meta, index);
            }
        }
        if self.ready.is_empty() {
            batch.clear();
            self.ready = batch;
        }
    }

    /// A TCP socket was visited by egress at `now` and now wants `poll_at`.
    pub(crate) fn visited(
        &mut self,
        index: usize,
        item: &mut Item,
        poll_at: PollAt,
        now: Instant,
    ) {
        self.reindex(index, item);
        if item.meta.sched.class == Class::Other {
            return;
        }
        let waiting = item.meta.waiting_for_neighbor();
        match self.waiting.iter().position(|&i| i == index) {
            None if waiting => self.waiting.push(index),
            Some(at) if !waiting => {
                self.waiting.swap_remove(at);
            }
            _ => {}
        }
        let m = &mut item.meta.sched;
        match poll_at {
            PollAt::Time(t) if t > now => {
                if m.deadline != Some(t) {
                    if m.deadline.is_none() {
                        self.timed += 1;
                    }
                    m.deadline = Some(t);
                    self.timers.push(Reverse((t, index)));
                }
            }
            PollAt::Now | PollAt::Time(_) => self.touch(&mut item.meta, index),
            PollAt::Ingress => {
                if m.deadline.take().is_some() {
                    self.timed -= 1;
                }
            }
        }
    }

    /// Drop stale entries from the top of the deadlines, and rebuild them when stale entries
    /// are the most.
    pub(crate) fn prune(&mut self, slots: &[SocketStorage]) {
        let live = |slots: &[SocketStorage], t: Instant, index: usize| {
            slots
                .get(index)
                .and_then(|s| s.inner.as_ref())
                .is_some_and(|item| item.meta.sched.deadline == Some(t))
        };
        while let Some(&Reverse((t, index))) = self.timers.peek() {
            if live(slots, t, index) {
                break;
            }
            self.timers.pop();
        }
        if self.timers.len() > 2 * self.timed + 1024 {
            let mut v = core::mem::take(&mut self.timers).into_vec();
            v.retain(|&Reverse((t, index))| live(slots, t, index));
            self.timers = BinaryHeap::from(v);
        }
    }

    /// The sockets whose `poll_at` must be asked (the ready ones, those waiting for a neighbor,
    /// the other kinds, the listening one last given out), and the earliest deadline of the
    /// rest.
    pub(crate) fn poll_candidates(&self) -> (impl Iterator<Item = usize> + '_, Option<Instant>) {
        let next = self.timers.peek().map(|&Reverse((t, _))| t);
        let all = self.ready.iter().chain(&self.waiting).chain(&self.others);
        (all.copied().chain(self.last_listening), next)
    }

    /// The sockets of other kinds, in set order.
    pub(crate) fn others(&self) -> &[usize] {
        &self.others
    }

    /// See `SocketSet::changed`.
    pub(crate) fn changed(&self) -> impl Iterator<Item = SocketHandle> + '_ {
        let others = self.others.iter().map(|&i| SocketHandle::from_index(i));
        self.changed.iter().copied().chain(others)
    }

    /// See `SocketSet::clear_changed`.
    pub(crate) fn clear_changed(&mut self, slots: &mut [SocketStorage]) {
        for h in self.changed.drain(..) {
            if let Some(item) = slots.get_mut(h.index()).and_then(|s| s.inner.as_mut()) {
                item.meta.sched.changed = false;
            }
        }
    }
}

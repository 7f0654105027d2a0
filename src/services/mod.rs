//! Services the host runs: small sans-IO state machines over smoltcp sockets.
//!
//! A service never touches a file descriptor or the system clock: the host's loop calls
//! [`Service::poll`] after every interface poll with the socket set and the current `Instant`.
//! That is what lets the same services run live, in replay and under a fuzzer.
//!
//! TCP services are written as a [`Protocol`] (what to do with one connection) and run by
//! [`TcpService`], which owns a [`Listener`] and the connections it accepted. [`ServiceSpec`]
//! and [`add`] build services from a specification (what the CLI and replay do).
//!
//! This layer sits on the host layer: it implements the host's [`Service`] trait and reads the
//! host's [`StatusBoard`](crate::host::StatusBoard); the host never imports it.

mod chargen;
mod discard;
mod echo;
mod error;
pub mod http;
pub mod listener;
mod spec;
mod udp_echo;

#[cfg(test)]
mod pressure_tests;

pub use chargen::{Chargen, pattern as chargen_pattern};
pub use discard::Discard;
pub use echo::Echo;
pub use error::ServiceError;
pub use http::{Http, HttpConfig};
pub use listener::{Listener, ListenerConfig, ListenerStats};
pub use spec::{ServiceSpec, ServicesConfig, add, http as http_protocol};
pub use udp_echo::{UdpBuffers, UdpEcho};

pub use crate::host::Service;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use log::debug;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};

/// What a protocol wants done with a connection after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Keep the connection.
    Keep,
    /// Close it gracefully: queued data is sent, then a FIN.
    Close,
}

/// The per-connection logic of a TCP service.
///
/// [`TcpService`] drives a connection when it is accepted, when its socket took in a segment
/// or changed state, and at the connection's [`Protocol::poll_at`]; not on every turn of the
/// host (with 10,000 idle connections that would be most of the work of a packet). So
/// [`Protocol::drive`] must do all that the socket allows each time (read until the socket is
/// empty, send until it is full): what is left waits for the peer's next segment.
pub trait Protocol {
    /// State kept for each connection.
    type Conn;
    /// The protocol's name (`"echo"`).
    fn name(&self) -> &'static str;
    /// State for a connection that was just accepted.
    fn open(&mut self, now: Instant) -> Self::Conn;
    /// Move data on one established connection.
    fn drive(&mut self, conn: &mut Self::Conn, socket: &mut tcp::Socket<'_>, now: Instant) -> Step;
    /// When this connection needs a turn even without packets (a timeout).
    fn poll_at(&self, _conn: &Self::Conn) -> Option<Instant> {
        None
    }
    /// Since when this connection has made no progress, if it may be evicted (reset) to make
    /// room when every socket of the port is in use: the one idle longest goes first, once idle
    /// for [`EVICT_AFTER`]. `None` (the default): never evicted.
    fn idle_since(&self, _conn: &Self::Conn) -> Option<Instant> {
        None
    }
}

/// How long a connection must have made no progress before it may be evicted to make room.
pub const EVICT_AFTER: Duration = Duration::from_millis(500);

/// A connection of a [`TcpService`]: the protocol's state and the deadline it is filed under.
struct Conn<C> {
    state: C,
    /// Its live entry in [`TcpService::timers`].
    deadline: Option<Instant>,
}

/// Runs a [`Protocol`] on every connection a [`Listener`] accepts.
pub struct TcpService<P: Protocol> {
    protocol: P,
    listener: Listener,
    conns: HashMap<SocketHandle, Conn<P::Conn>>,
    /// Connections' [`Protocol::poll_at`], earliest first; an entry is live while it matches
    /// the connection's `deadline` (stale ones are skipped, and dropped when they are most).
    timers: BinaryHeap<Reverse<(Instant, SocketHandle)>>,
    /// Scratch list of the connections to drive in a turn.
    due: Vec<SocketHandle>,
    /// LISTEN sockets the listener missed at the last turn, for want of a socket.
    short: usize,
    /// While `short`: when the connection idle longest may be evicted.
    evict_at: Option<Instant>,
}

impl<P: Protocol> TcpService<P> {
    /// Run `protocol` on TCP `port`, with a [`Listener`] configured by `config` in `sockets`.
    pub fn new(
        sockets: &mut SocketSet<'static>,
        port: u16,
        config: ListenerConfig,
        protocol: P,
    ) -> TcpService<P> {
        TcpService {
            protocol,
            listener: Listener::new(sockets, port, config),
            conns: HashMap::new(),
            timers: BinaryHeap::new(),
            due: Vec::new(),
            short: 0,
            evict_at: None,
        }
    }

    /// The listener's counters.
    pub fn listener_stats(&self) -> ListenerStats {
        self.listener.stats()
    }

    /// The protocol (shared by all connections).
    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    /// Reset up to `n` connections, those idle longest (at least [`EVICT_AFTER`]), so that their
    /// sockets listen again. Returns how many were evicted.
    fn evict(&mut self, sockets: &mut SocketSet<'static>, now: Instant, n: usize) -> usize {
        let mut idle: Vec<(Instant, SocketHandle)> = (self.conns.iter())
            .filter_map(|(&h, c)| Some((self.protocol.idle_since(&c.state)?, h)))
            .filter(|&(since, _)| now >= since + EVICT_AFTER)
            .collect();
        let n = n.min(idle.len());
        if n == 0 {
            return 0;
        }
        if n < idle.len() {
            idle.select_nth_unstable(n - 1);
        }
        for &(_, h) in &idle[..n] {
            self.conns.remove(&h);
            self.listener.evict(sockets, h, now);
        }
        debug!(
            "{}: every socket in use: reset the {n} connection(s) idle longest",
            self.name()
        );
        n
    }

    /// Drive the connection of `h` once; release it when it is done, else file its deadline.
    fn drive(&mut self, sockets: &mut SocketSet<'static>, h: SocketHandle, now: Instant) {
        let Some(conn) = self.conns.get_mut(&h) else {
            return;
        };
        let socket = sockets.get_mut::<tcp::Socket>(h);
        let done = if !socket.is_active() {
            // Reset by the peer or timed out.
            true
        } else if self.protocol.drive(&mut conn.state, socket, now) == Step::Close {
            socket.close();
            true
        } else {
            false
        };
        if done {
            self.conns.remove(&h);
            self.listener.release(sockets, h, now);
            return;
        }
        let at = self.protocol.poll_at(&conn.state);
        if at != conn.deadline {
            conn.deadline = at;
            if let Some(t) = at {
                self.timers.push(Reverse((t, h)));
            }
        }
    }

    /// Whether `(t, h)` is the live deadline of a connection.
    fn live(&self, t: Instant, h: SocketHandle) -> bool {
        self.conns.get(&h).is_some_and(|c| c.deadline == Some(t))
    }

    /// Drop stale deadlines from the top, and all of them when they are most of the heap.
    fn prune(&mut self) {
        while let Some(&Reverse((t, h))) = self.timers.peek() {
            if self.live(t, h) {
                break;
            }
            self.timers.pop();
        }
        if self.timers.len() > 2 * self.conns.len() + 1024 {
            let mut v = std::mem::take(&mut self.timers).into_vec();
            v.retain(|&Reverse((t, h))| self.live(t, h));
            self.timers = BinaryHeap::from(v);
        }
    }
}

impl<P: Protocol> Service for TcpService<P> {
    fn name(&self) -> String {
        format!("{}/{}", self.protocol.name(), self.listener.endpoint().port)
    }

    fn poll(&mut self, sockets: &mut SocketSet<'static>, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        while let Some(h) = self.listener.accept(sockets, now) {
            let state = self.protocol.open(now);
            self.conns.insert(
                h,
                Conn {
                    state,
                    deadline: None,
                },
            );
            due.push(h);
        }
        // The connections whose socket changed (ingress, a timeout), and those whose deadline
        // has come: not every connection (see `Protocol`).
        due.extend(sockets.changed().filter(|h| self.conns.contains_key(h)));
        while let Some(&Reverse((t, h))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            if self.live(t, h) {
                if let Some(c) = self.conns.get_mut(&h) {
                    c.deadline = None;
                }
                due.push(h);
            }
        }
        due.sort_unstable();
        due.dedup();
        for &h in &due {
            self.drive(sockets, h, now);
        }
        due.clear();
        self.due = due;
        self.prune();
        self.short = self.listener.maintain(sockets, now);
        if self.short > 0 && self.evict(sockets, now, self.short) == 0 {
            self.listener.make_room(sockets, now);
            self.short = self.listener.maintain(sockets, now);
        }
        // Short of LISTEN sockets: a turn when the next connection may be evicted, before a SYN
        // finds the pool empty (a walk of the connections, under that pressure only).
        self.evict_at = match self.short {
            0 => None,
            _ => (self.conns.values())
                .filter_map(|c| self.protocol.idle_since(&c.state))
                .min()
                .map(|since| since + EVICT_AFTER),
        };
    }

    fn poll_at(&self) -> Option<Instant> {
        let next = self.timers.peek().map(|&Reverse((t, _))| t);
        match (next, self.evict_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn close(&mut self, sockets: &mut SocketSet<'static>, now: Instant) {
        for (h, _) in self.conns.drain() {
            sockets.get_mut::<tcp::Socket>(h).close();
            self.listener.release(sockets, h, now);
        }
        self.timers.clear();
        self.evict_at = None;
        self.listener.close_all(sockets, now);
    }
}

/// Whether the peer has closed its side and everything it sent has been read.
pub(crate) fn peer_done(socket: &tcp::Socket<'_>) -> bool {
    !socket.may_recv() && !socket.can_recv()
}

impl Step {
    /// [`Step::Close`] once the peer has closed its side and everything it sent has been read,
    /// else [`Step::Keep`]: the end of a protocol that answers until the peer is done.
    pub fn until_peer_done(socket: &tcp::Socket<'_>) -> Step {
        if peer_done(socket) {
            Step::Close
        } else {
            Step::Keep
        }
    }
}

/// Read and drop everything the socket has received.
pub(crate) fn drain(socket: &mut tcp::Socket<'_>) {
    while socket.can_recv() {
        if socket.recv(|b| (b.len(), ())).is_err() {
            break;
        }
    }
}

//! ICMP echo (ping) from the host, over a smoltcp ICMP socket.
//!
//! Supported: IPv4 and IPv6 targets, count, interval, a wait for the last replies, RTTs and a
//! ping(8)-style summary; runs of any length in bounded memory (sequence numbers wrap after
//! 65,536 requests, each reply is matched to its own request, see [`Pinger`]). Not supported: names (no DNS), TTL display (smoltcp's ICMP socket does
//! not report it), flooding, record route.

use std::collections::VecDeque;
use std::ops::ControlFlow;

use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::phy::{ChecksumCapabilities, Device};
use smoltcp::socket::icmp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpAddress};

use super::{ClientError, ClientErrorKind, Result};
use crate::host::{Clock, Host, Stop};
use crate::link::Housekeeping;

/// What to ping and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingConfig {
    /// The address to ping (IPv4 or IPv6).
    pub target: IpAddress,
    /// Requests to send; `None`: until stopped.
    pub count: Option<u32>,
    /// Time between requests.
    pub interval: Duration,
    /// After the last request, how long to wait for replies.
    pub timeout: Duration,
    /// Bytes of ICMP payload (ping(8)'s `-s`, 56 by default).
    pub size: usize,
    /// The ICMP identifier.
    pub ident: u16,
}

impl PingConfig {
    /// Ping `target` until stopped, once a second, 56 bytes of payload, like ping(8).
    pub fn new(target: IpAddress) -> PingConfig {
        PingConfig {
            target,
            count: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            size: 56,
            ident: 0x7475, // "tu"
        }
    }
}

/// One echo reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingReply {
    /// The address the reply came from (always the target).
    pub from: IpAddress,
    /// Sequence number, from 1 as ping(8) shows it.
    pub seq: u16,
    /// ICMP bytes (header and payload), as ping(8) counts them.
    pub bytes: usize,
    /// Round-trip time, from sending the request to reading the reply.
    pub rtt: Duration,
}

/// Counts and round-trip times, as ping(8) prints them at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PingSummary {
    /// Requests sent.
    pub transmitted: u64,
    /// Replies received: one at most per request, each matched to its own request.
    pub received: u64,
    /// Minimum, average, maximum and mean deviation of the RTTs, in microseconds.
    pub rtt_us: Option<(u64, u64, u64, u64)>,
    /// From the first request to the end.
    pub time: Duration,
}

impl PingSummary {
    /// `3 packets transmitted, 3 received, 0% packet loss, time 2003ms`
    pub fn counts_line(&self) -> String {
        let lost = self.transmitted - self.received.min(self.transmitted);
        let loss = (100 * u128::from(lost))
            .checked_div(u128::from(self.transmitted))
            .unwrap_or(0);
        format!(
            "{} packets transmitted, {} received, {loss}% packet loss, time {}ms",
            self.transmitted,
            self.received,
            self.time.total_millis()
        )
    }

    /// `rtt min/avg/max/mdev = 0.101/0.120/0.140/0.016 ms`, if any reply came.
    pub fn rtt_line(&self) -> Option<String> {
        let (min, avg, max, mdev) = self.rtt_us?;
        let ms = |us: u64| format!("{}.{:03}", us / 1000, us % 1000);
        Some(format!(
            "rtt min/avg/max/mdev = {}/{}/{}/{} ms",
            ms(min),
            ms(avg),
            ms(max),
            ms(mdev)
        ))
    }
}

/// Requests kept in flight at most: older unanswered ones count as lost. Half the sequence
/// space, so that a sequence number names at most one request in flight.
pub const MAX_IN_FLIGHT: usize = 1 << 15;

/// Running RTT statistics: no list of every RTT, no overflow.
#[derive(Debug, Clone, Copy, Default)]
struct Rtts {
    n: u64,
    min: u64,
    max: u64,
    sum: u128,
    sum_sq: u128,
}

impl Rtts {
    fn add(&mut self, us: u64) {
        self.min = if self.n == 0 { us } else { self.min.min(us) };
        self.max = self.max.max(us);
        self.n += 1;
        self.sum = self.sum.saturating_add(u128::from(us));
        self.sum_sq = self.sum_sq.saturating_add(u128::from(us) * u128::from(us));
    }

    /// (min, avg, max, mdev), as ping(8): mdev = sqrt(mean of squares - square of mean).
    fn get(&self) -> Option<(u64, u64, u64, u64)> {
        let n = u128::from(self.n);
        let avg = self.sum.checked_div(n)?;
        let var = (self.sum_sq / n).saturating_sub(avg * avg);
        let narrow = |x: u128| u64::try_from(x).unwrap_or(u64::MAX);
        Some((self.min, narrow(avg), self.max, narrow(var.isqrt())))
    }
}

/// The state of a ping run: an ICMP socket and the requests in flight.
///
/// Request `n` (from 0) goes out with sequence number `n mod 2¹⁶` and, when the payload has room,
/// `n` in its first 8 bytes; a reply counts only for a request in flight with the same sequence
/// number (and number, if carried) that has no reply yet. Duplicates, replies to requests
/// unknown or given up for lost, and replies of other pingers are ignored. Memory is bounded:
/// at most [`MAX_IN_FLIGHT`] requests are remembered.
pub struct Pinger {
    config: PingConfig,
    handle: SocketHandle,
    /// Requests sent.
    transmitted: u64,
    /// When each request still in flight was sent, `None` once answered: requests
    /// `transmitted - in_flight.len()` to `transmitted - 1`, the oldest unanswered first.
    in_flight: VecDeque<Option<Instant>>,
    /// The payload of a request (its first 8 bytes rewritten for each).
    payload: Vec<u8>,
    next_send: Option<Instant>,
    started: Option<Instant>,
    last_event: Instant,
    rtts: Rtts,
}

impl Pinger {
    /// Add an ICMP socket for `config` to `sockets`.
    pub fn new(sockets: &mut SocketSet<'static>, config: PingConfig) -> Result<Pinger> {
        let len = config.size + 8;
        let mut socket = icmp::Socket::new(
            icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 16], vec![0; 16 * len]),
            icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 16], vec![0; 16 * len]),
        );
        socket
            .bind(icmp::Endpoint::Ident(config.ident))
            .map_err(|e| {
                ClientError::new(
                    config.target.to_string(),
                    ClientErrorKind::Socket(format!("cannot bind the ICMP socket: {e}")),
                )
            })?;
        Ok(Pinger {
            config,
            handle: sockets.add(socket),
            transmitted: 0,
            in_flight: VecDeque::new(),
            payload: (0..config.size).map(|i| i as u8).collect(),
            next_send: None,
            started: None,
            last_event: Instant::ZERO,
            rtts: Rtts::default(),
        })
    }

    fn all_sent(&self) -> bool {
        self.config
            .count
            .is_some_and(|c| self.transmitted >= u64::from(c))
    }

    /// Whether the run is over: every request sent, and every reply in or the wait over.
    pub fn finished(&self, now: Instant) -> bool {
        self.all_sent()
            && (self.in_flight.is_empty() || now >= self.last_event + self.config.timeout)
    }

    /// The request in flight that a reply with sequence number `seq` and payload `data`
    /// answers, if any: its number.
    fn request_of(&self, seq: u16, data: &[u8]) -> Option<u64> {
        let first = self.transmitted - self.in_flight.len() as u64;
        let offset = usize::from(seq.wrapping_sub(first as u16));
        if !matches!(self.in_flight.get(offset), Some(Some(_))) {
            return None; // unknown, given up for lost, or a duplicate
        }
        let n = first + offset as u64;
        let carried = self.payload.get(..8).map(|_| data.get(..8));
        match carried {
            Some(got) if got != Some(&n.to_be_bytes()[..]) => None, // not this request's reply
            _ => Some(n),
        }
    }

    /// Count the reply to request `n`, received at `now`: its RTT.
    fn answered(&mut self, n: u64, now: Instant) -> Duration {
        let first = self.transmitted - self.in_flight.len() as u64;
        let slot = &mut self.in_flight[(n - first) as usize];
        let sent = slot.take().unwrap_or(now);
        let rtt = if now > sent {
            now - sent
        } else {
            Duration::ZERO
        };
        self.drop_answered();
        self.rtts.add(rtt.total_micros());
        self.last_event = now;
        rtt
    }

    /// Forget the answered requests at the front: the window starts at the oldest unanswered.
    fn drop_answered(&mut self) {
        while self.in_flight.front() == Some(&None) {
            self.in_flight.pop_front();
        }
    }

    /// Send the requests that are due and collect the replies that arrived; returns the time it
    /// wants to be called again.
    pub fn poll(
        &mut self,
        iface: &Interface,
        sockets: &mut SocketSet<'static>,
        now: Instant,
        mut on_reply: impl FnMut(PingReply),
    ) -> Option<Instant> {
        let socket = sockets.get_mut::<icmp::Socket>(self.handle);
        let caps = ChecksumCapabilities::default();
        while let Ok((payload, from)) = socket.recv() {
            let echo = match from {
                IpAddress::Ipv4(_) => Icmpv4Packet::new_checked(payload)
                    .ok()
                    .and_then(|p| Icmpv4Repr::parse(&p, &caps).ok())
                    .and_then(|r| match r {
                        Icmpv4Repr::EchoReply { ident, seq_no, .. } => Some((ident, seq_no)),
                        _ => None,
                    }),
                IpAddress::Ipv6(src) => {
                    let dst = iface.get_source_address_ipv6(&src);
                    Icmpv6Packet::new_checked(payload)
                        .ok()
                        .and_then(|p| Icmpv6Repr::parse(&src, &dst, &p, &caps).ok())
                        .and_then(|r| match r {
                            Icmpv6Repr::EchoReply { ident, seq_no, .. } => Some((ident, seq_no)),
                            _ => None,
                        })
                }
            };
            let Some((ident, seq)) = echo else { continue };
            let data = payload.get(8..).unwrap_or_default(); // after the echo header, v4 or v6
            if ident != self.config.ident || from != self.config.target {
                continue;
            }
            let Some(n) = self.request_of(seq, data) else {
                continue;
            };
            let rtt = self.answered(n, now);
            on_reply(PingReply {
                from,
                seq: seq.wrapping_add(1),
                bytes: payload.len(),
                rtt,
            });
        }
        if !self.all_sent() && self.next_send.is_none_or(|t| now >= t) && socket.can_send() {
            self.send(socket, iface, now);
        }
        if self.all_sent() {
            Some(self.last_event + self.config.timeout)
        } else {
            self.next_send
        }
    }

    fn send(&mut self, socket: &mut icmp::Socket<'_>, iface: &Interface, now: Instant) {
        let n = self.transmitted;
        if let Some(head) = self.payload.get_mut(..8) {
            head.copy_from_slice(&n.to_be_bytes());
        }
        let caps = ChecksumCapabilities::default();
        let (ident, seq_no, target) = (self.config.ident, n as u16, self.config.target);
        let v4 = Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data: &self.payload,
        };
        let v6 = Icmpv6Repr::EchoRequest {
            ident,
            seq_no,
            data: &self.payload,
        };
        let len = match target {
            IpAddress::Ipv4(_) => v4.buffer_len(),
            IpAddress::Ipv6(_) => v6.buffer_len(),
        };
        let sent = socket.send(len, target).map(|buf| match target {
            IpAddress::Ipv4(_) => v4.emit(&mut Icmpv4Packet::new_unchecked(buf), &caps),
            IpAddress::Ipv6(dst) => {
                let src = iface.get_source_address_ipv6(&dst);
                v6.emit(&src, &dst, &mut Icmpv6Packet::new_unchecked(buf), &caps)
            }
        });
        if sent.is_err() {
            return; // the socket's queue is full: try again on the next turn
        }
        self.started.get_or_insert(now);
        self.transmitted += 1;
        if self.in_flight.len() == MAX_IN_FLIGHT {
            self.in_flight.pop_front(); // given up for lost
        }
        self.in_flight.push_back(Some(now));
        self.drop_answered();
        self.last_event = now;
        self.next_send = Some(now + self.config.interval);
    }

    /// The summary so far.
    pub fn summary(&self, now: Instant) -> PingSummary {
        PingSummary {
            transmitted: self.transmitted,
            received: self.rtts.n,
            rtt_us: self.rtts.get(),
            time: self.started.map(|s| now - s).unwrap_or_default(),
        }
    }
}

/// Ping as `config` says, calling `on_reply` for each reply, until done or `stop`; returns the
/// summary (ask it whether any reply came).
pub fn ping<D, C>(
    host: &mut Host<D, C>,
    config: PingConfig,
    stop: Option<&Stop>,
    mut on_reply: impl FnMut(PingReply),
) -> Result<PingSummary>
where
    D: Device + std::os::fd::AsFd + Housekeeping,
    C: Clock,
{
    let target = config.target.to_string();
    let mut pinger = Pinger::new(host.sockets_mut(), config)?;
    super::drive(host, &target, stop, |host, now| {
        let (iface, sockets) = host.parts_mut();
        let wake = pinger.poll(iface, sockets, now, &mut on_reply);
        Ok(if pinger.finished(now) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(wake)
        })
    })?;
    let summary = pinger.summary(host.clock().now());
    host.sockets_mut().remove(pinger.handle);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_ping_gets_every_reply() {
        let (mut host, clock) = crate::host::loopback_host(1);
        let mut cfg = PingConfig::new(IpAddress::v4(127, 0, 0, 1));
        cfg.count = Some(3);
        let mut p = Pinger::new(host.sockets_mut(), cfg).unwrap();
        let mut replies = Vec::new();
        for _ in 0..5000 {
            host.poll();
            let now = host.clock().now();
            let (iface, sockets) = host.parts_mut();
            p.poll(iface, sockets, now, |r| replies.push(r));
            if p.finished(now) {
                break;
            }
            host.poll();
            clock.advance(Duration::from_millis(1));
        }
        let s = p.summary(host.clock().now());
        assert_eq!((s.transmitted, s.received), (3, 3));
        assert_eq!(replies.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(replies[0].bytes, 64);
        assert!(
            s.counts_line()
                .starts_with("3 packets transmitted, 3 received, 0% packet loss")
        );
        assert!(s.rtt_line().is_some());
    }

    /// Ping 127.0.0.1 `count` times on the loopback host, a request every virtual millisecond,
    /// each answered within the same turn and read a millisecond later (so every RTT is 1 ms);
    /// with `lose_first`, the first reply is taken away before the pinger sees it.
    fn loopback_run(count: u32, lose_first: bool) -> (PingSummary, Vec<PingReply>) {
        let (mut host, clock) = crate::host::loopback_host(1);
        let mut cfg = PingConfig::new(IpAddress::v4(127, 0, 0, 1));
        cfg.count = Some(count);
        cfg.interval = Duration::from_millis(1);
        cfg.timeout = Duration::from_millis(100);
        let mut p = Pinger::new(host.sockets_mut(), cfg).unwrap();
        let mut replies = Vec::new();
        for turn in 0..u64::from(count) + 1000 {
            host.poll();
            let now = host.clock().now();
            let (iface, sockets) = host.parts_mut();
            if lose_first && turn == 1 {
                // The socket sees the request come back through the loopback, then the reply.
                let socket = sockets.get_mut::<icmp::Socket>(p.handle);
                let types: Vec<u8> =
                    std::iter::from_fn(|| socket.recv().ok().map(|(b, _)| b[0])).collect();
                assert_eq!(types, [8, 0], "not the first request's echo and reply");
            }
            p.poll(iface, sockets, now, |r| replies.push(r));
            if p.finished(now) {
                break;
            }
            host.poll();
            clock.advance(Duration::from_millis(1));
        }
        (p.summary(host.clock().now()), replies)
    }

    #[test]
    fn replies_past_the_sequence_wrap_all_count() {
        let count = 70_000;
        let (s, replies) = loopback_run(count, false);
        assert_eq!((s.transmitted, s.received), (70_000, 70_000));
        assert_eq!(s.rtt_us, Some((1000, 1000, 1000, 0)));
        assert!(
            s.counts_line()
                .starts_with("70000 packets transmitted, 70000 received, 0% packet loss"),
            "{}",
            s.counts_line()
        );
        // Sequence numbers as ping(8) shows them: from 1, wrapping after 65535.
        assert_eq!(replies[65_534].seq, 65_535);
        assert_eq!(replies[65_535].seq, 0);
        assert_eq!(replies[65_536].seq, 1);
    }

    #[test]
    fn a_lost_request_leaves_the_others_timed_right() {
        let (s, replies) = loopback_run(70_000, true);
        assert_eq!((s.transmitted, s.received), (70_000, 69_999));
        assert!(
            s.counts_line().contains(", 0% packet loss"),
            "{}",
            s.counts_line()
        );
        // Request 65536 has the lost request 0's sequence number: its own reply, its own RTT.
        assert!(replies.iter().all(|r| r.rtt == Duration::from_millis(1)));
        assert_eq!(s.rtt_us, Some((1000, 1000, 1000, 0)));
        assert_eq!(replies[0].seq, 2);
    }

    #[test]
    fn duplicates_and_strangers_do_not_count() {
        let mut sockets = SocketSet::new(vec![]);
        let mut p =
            Pinger::new(&mut sockets, PingConfig::new(IpAddress::v4(127, 0, 0, 1))).unwrap();
        // Requests 0, 1 and 2 sent at 0, 1 and 2 ms.
        for ms in 0..3 {
            p.transmitted += 1;
            p.in_flight.push_back(Some(Instant::from_millis(ms)));
        }
        let data = |n: u64| [&n.to_be_bytes()[..], &[0; 48]].concat();
        assert_eq!(p.request_of(1, &data(1)), Some(1));
        assert_eq!(
            p.answered(1, Instant::from_millis(5)),
            Duration::from_millis(4)
        );
        assert_eq!(p.request_of(1, &data(1)), None, "a duplicate");
        assert_eq!(p.request_of(7, &data(7)), None, "never sent");
        assert_eq!(
            p.request_of(2, &data(65_538)),
            None,
            "another request's payload"
        );
        assert_eq!(
            p.answered(0, Instant::from_millis(6)),
            Duration::from_millis(6)
        );
        assert_eq!(
            p.in_flight.len(),
            1,
            "answered requests at the front are forgotten"
        );
        assert_eq!(
            p.request_of(0, &data(0)),
            None,
            "a duplicate, after the window moved"
        );
        assert_eq!(p.summary(Instant::from_millis(6)).received, 2);
    }

    #[test]
    fn the_window_of_requests_in_flight_is_bounded() {
        let (mut host, clock) = crate::host::loopback_host(1);
        let mut cfg = PingConfig::new(IpAddress::v4(127, 0, 0, 1));
        let max = MAX_IN_FLIGHT as u64;
        cfg.count = Some(max as u32 + 10);
        cfg.interval = Duration::from_millis(1);
        cfg.timeout = Duration::from_millis(100);
        let mut p = Pinger::new(host.sockets_mut(), cfg).unwrap();
        // As if every request so far had been lost.
        p.transmitted = max;
        p.in_flight = vec![Some(Instant::ZERO); MAX_IN_FLIGHT].into();
        for _ in 0..1000 {
            host.poll();
            let now = host.clock().now();
            let (iface, sockets) = host.parts_mut();
            p.poll(iface, sockets, now, |_| {});
            assert!(p.in_flight.len() <= MAX_IN_FLIGHT);
            if p.finished(now) {
                break;
            }
            host.poll();
            clock.advance(Duration::from_millis(1));
        }
        let s = p.summary(host.clock().now());
        assert_eq!((s.transmitted, s.received), (max + 10, 10));
        assert_eq!(s.rtt_us, Some((1000, 1000, 1000, 0)));
    }

    #[test]
    fn summary_lines() {
        let s = PingSummary {
            transmitted: 4,
            received: 1,
            rtt_us: Some((1500, 1500, 1500, 0)),
            time: Duration::from_millis(3003),
        };
        assert_eq!(
            s.counts_line(),
            "4 packets transmitted, 1 received, 75% packet loss, time 3003ms"
        );
        assert_eq!(
            s.rtt_line().unwrap(),
            "rtt min/avg/max/mdev = 1.500/1.500/1.500/0.000 ms"
        );
    }
}

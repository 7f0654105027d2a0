//! ICMP echo (ping) from the host, over a smoltcp ICMP socket.
//!
//! Supported: IPv4 and IPv6 targets, count, interval, a wait for the last replies, RTTs and a
//! ping(8)-style summary. Not supported: names (no DNS), TTL display (smoltcp's ICMP socket does
//! not report it), flooding, record route.

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
    pub transmitted: u32,
    /// Replies received.
    pub received: u32,
    /// Minimum, average, maximum and mean deviation of the RTTs, in microseconds.
    pub rtt_us: Option<(u64, u64, u64, u64)>,
    /// From the first request to the end.
    pub time: Duration,
}

impl PingSummary {
    /// `3 packets transmitted, 3 received, 0% packet loss, time 2003ms`
    pub fn counts_line(&self) -> String {
        let lost = self.transmitted - self.received.min(self.transmitted);
        let loss = (100 * lost).checked_div(self.transmitted).unwrap_or(0);
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

/// The state of a ping run: an ICMP socket and the requests in flight.
pub struct Pinger {
    config: PingConfig,
    handle: SocketHandle,
    /// When each request was sent (index = sequence number - 1).
    sent_at: Vec<Instant>,
    answered: Vec<bool>,
    next_send: Option<Instant>,
    started: Option<Instant>,
    last_event: Instant,
    rtts: Vec<u64>,
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
            sent_at: Vec::new(),
            answered: Vec::new(),
            next_send: None,
            started: None,
            last_event: Instant::ZERO,
            rtts: Vec::new(),
        })
    }

    fn all_sent(&self) -> bool {
        self.config
            .count
            .is_some_and(|c| self.sent_at.len() >= c as usize)
    }

    /// Whether the run is over: every request sent, and every reply in or the wait over.
    pub fn finished(&self, now: Instant) -> bool {
        self.all_sent()
            && (self.answered.iter().all(|&a| a) || now >= self.last_event + self.config.timeout)
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
            let i = usize::from(seq);
            if ident != self.config.ident || from != self.config.target || i >= self.sent_at.len() {
                continue;
            }
            if self.answered[i] {
                continue; // a duplicate
            }
            self.answered[i] = true;
            let rtt = now - self.sent_at[i];
            self.rtts.push(rtt.total_micros());
            self.last_event = now;
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
        let seq = self.sent_at.len() as u16;
        let data: Vec<u8> = (0..self.config.size).map(|i| i as u8).collect();
        let caps = ChecksumCapabilities::default();
        let (ident, seq_no, target) = (self.config.ident, seq, self.config.target);
        let v4 = Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data: &data,
        };
        let v6 = Icmpv6Repr::EchoRequest {
            ident,
            seq_no,
            data: &data,
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
        self.sent_at.push(now);
        self.answered.push(false);
        self.last_event = now;
        self.next_send = Some(now + self.config.interval);
    }

    /// The summary so far.
    pub fn summary(&self, now: Instant) -> PingSummary {
        let n = self.rtts.len() as u64;
        let rtt_us = (n > 0).then(|| {
            let min = *self.rtts.iter().min().unwrap_or(&0);
            let max = *self.rtts.iter().max().unwrap_or(&0);
            let avg = self.rtts.iter().sum::<u64>() / n;
            let var = self
                .rtts
                .iter()
                .map(|&r| (r as i64 - avg as i64).pow(2) as u64)
                .sum::<u64>()
                / n;
            (min, avg, max, var.isqrt())
        });
        PingSummary {
            transmitted: self.sent_at.len() as u32,
            received: self.rtts.len() as u32,
            rtt_us,
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

//! A bad link: a `phy::Device` wrapper that drops, corrupts, duplicates, reorders, delays and
//! rate-limits packets, each direction on its own, from a seed, so that a run can be repeated.
//!
//! [`Faults`] sits between the host's interface and the device (a tracer, then the TUN/TAP
//! device). Every packet that crosses it in either direction draws its fate from a small PRNG
//! (SplitMix64) of its direction, seeded from [`FaultConfig::seed`]: the *n*-th packet read and
//! the *n*-th packet written always get the same fate for the same seed, whatever the timing.
//!
//! What each fault does, per packet and direction ([`Impairment`]):
//! - **drop** (probability): the packet is gone;
//! - **corrupt** (probability): one bit flipped in a byte that a checksum covers (the IPv4
//!   header or the transport segment of an IPv4 packet; the addresses and payload of an IPv6
//!   packet; an IPv4 UDP datagram without a checksum only in its IP header); the receiver must
//!   drop it for its checksum. Packets that are not IP are never corrupted. The receiver only
//!   checks what it is not told to trust: a live host opens its device without offloads when
//!   faults are on (see [`crate::live`]);
//! - **duplicate** (probability): the packet goes twice;
//! - **reorder** (probability): the packet is held back until the next packet of its direction
//!   has gone (or [`REORDER_HOLD`] has passed);
//! - **delay** (milliseconds, with a uniform jitter of ± JITTER): the packet goes that much
//!   later. Packets with different delays may overtake each other, as with netem;
//! - **rate** (Mbit/s): the link sends one packet at a time at this rate; what waits queues up
//!   to [`QUEUE_LIMIT`] packets, or up to the rate's own queue ([`Impairment::queue`]: a
//!   bottleneck with a router's buffer), and the rest is dropped (tail drop).
//!
//! Delayed packets wait in the wrapper: [`Housekeeping::housekeeping`] returns when the next
//! one is due, and the host's loop wakes up then to pass it on.
//!
//! What was done to each packet is told to the device below through [`FaultRecord`]: a tracer
//! records every packet as it crossed the device, with a comment (pcapng `opt_comment`, shown by
//! Wireshark and by tshark as `frame.comment`): "dropped", "corrupted at byte 37 (bit 2)",
//! "delayed 12 ms", "duplicated", "reordered". An inbound packet is recorded once, as it was
//! read, when it was read, with what was then done to it; an outbound packet as the device got
//! it (corrupted, delayed, twice), and a dropped one with "dropped" at the time it was sent. A
//! replay of such a trace with the same faults and seed feeds the host exactly what the kernel
//! sent and draws the same fates.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};

use super::device::Housekeeping;

/// Most packets waiting in one direction (delayed, or queued behind the rate): more are dropped.
pub const QUEUE_LIMIT: usize = 10_000;
/// Most time a reordered packet waits for a packet to overtake it.
pub const REORDER_HOLD: Duration = Duration::from_millis(10);
/// Most packets taken from the device below in one `receive` call.
const INGEST_BATCH: usize = 64;

/// What a bad link does to the packets of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Impairment {
    /// Probability that a packet is dropped.
    pub drop: f64,
    /// Probability that a packet gets one bit flipped in a checksummed byte.
    pub corrupt: f64,
    /// Probability that a packet is sent twice.
    pub duplicate: f64,
    /// Probability that a packet is held back behind the next one.
    pub reorder: f64,
    /// How long every packet takes.
    pub delay: Duration,
    /// A uniform variation of the delay, up to this much either way.
    pub jitter: Duration,
    /// The link's rate in bits per second (`None`: as fast as the device).
    pub rate: Option<u64>,
    /// Most packets waiting for the rate (the one being sent included), like a router's buffer
    /// in front of a slow link; more are dropped. `None`: only [`QUEUE_LIMIT`] applies.
    pub queue: Option<usize>,
}

impl Impairment {
    /// Whether it does anything at all.
    pub fn is_none(&self) -> bool {
        *self == Impairment::default()
    }
}

/// One kind of fault, as a flag names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Drop probability.
    Drop,
    /// Corruption probability.
    Corrupt,
    /// Duplication probability.
    Duplicate,
    /// Reordering probability.
    Reorder,
    /// Delay in milliseconds, with an optional `:JITTER`.
    Delay,
    /// Rate in Mbit/s.
    Rate,
}

impl FaultKind {
    fn what(self) -> &'static str {
        match self {
            FaultKind::Drop => "drop probability",
            FaultKind::Corrupt => "corruption probability",
            FaultKind::Duplicate => "duplication probability",
            FaultKind::Reorder => "reordering probability",
            FaultKind::Delay => "delay",
            FaultKind::Rate => "rate",
        }
    }
}

/// A fault specification that does not parse, e.g. a probability of 1.5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpecError {
    /// What it was: "drop probability", "delay", ...
    pub what: &'static str,
    /// The text as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for FaultSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}: {}", self.what, self.value, self.reason)
    }
}

impl std::error::Error for FaultSpecError {}

/// The faults of both directions and the seed they are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultConfig {
    /// Packets read from the device (sent by the kernel to the host).
    pub inbound: Impairment,
    /// Packets written to the device (sent by the host to the kernel).
    pub outbound: Impairment,
    /// The seed of the fates: the same seed, the same fates.
    pub seed: u64,
}

impl FaultConfig {
    /// Whether any fault is set.
    pub fn is_none(&self) -> bool {
        self.inbound.is_none() && self.outbound.is_none()
    }

    /// Set one fault from its text: `VALUE` for both directions, `in:VALUE` or `out:VALUE` for
    /// one. A probability is 0..=1 (`0.01`); a delay is milliseconds with an optional jitter
    /// (`10`, `10:2`); a rate is Mbit/s with an optional queue in packets (`100`, `0.5`,
    /// `20:50`).
    pub fn set(&mut self, kind: FaultKind, text: &str) -> Result<(), FaultSpecError> {
        let err = |reason| FaultSpecError {
            what: kind.what(),
            value: text.to_string(),
            reason,
        };
        let (dirs, value): (&[bool], &str) = match text.split_once(':') {
            Some(("in", v)) => (&[true], v),
            Some(("out", v)) => (&[false], v),
            _ => (&[true, false], text),
        };
        let number = |s: &str| -> Result<f64, FaultSpecError> {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| err("not a number of 0 or more"))
        };
        let ms = |x: f64| -> Result<Duration, FaultSpecError> {
            if x > 3_600_000.0 {
                return Err(err("more than an hour"));
            }
            Ok(Duration::from_micros((x * 1000.0).round() as u64))
        };
        for &inbound in dirs {
            let imp = if inbound {
                &mut self.inbound
            } else {
                &mut self.outbound
            };
            match kind {
                FaultKind::Delay => {
                    let (d, j) = match value.split_once(':') {
                        Some((d, j)) => (number(d)?, number(j)?),
                        None => (number(value)?, 0.0),
                    };
                    imp.delay = ms(d)?;
                    imp.jitter = ms(j)?;
                }
                FaultKind::Rate => {
                    let (rate, queue) = match value.split_once(':') {
                        Some((r, q)) => (r, Some(q)),
                        None => (value, None),
                    };
                    let mbit = number(rate)?;
                    if !(0.001..=1_000_000.0).contains(&mbit) {
                        return Err(err("not between 0.001 and 1000000 Mbit/s"));
                    }
                    imp.queue = match queue {
                        None => None,
                        Some(q) => Some(
                            q.trim()
                                .parse::<usize>()
                                .ok()
                                .filter(|n| (1..=QUEUE_LIMIT).contains(n))
                                .ok_or_else(|| err("a queue is 1 to 10000 packets"))?,
                        ),
                    };
                    imp.rate = Some((mbit * 1e6).round() as u64);
                }
                _ => {
                    let p = number(value)?;
                    if p > 1.0 {
                        return Err(err("not a probability between 0 and 1"));
                    }
                    *match kind {
                        FaultKind::Drop => &mut imp.drop,
                        FaultKind::Corrupt => &mut imp.corrupt,
                        FaultKind::Duplicate => &mut imp.duplicate,
                        _ => &mut imp.reorder,
                    } = p;
                }
            }
        }
        Ok(())
    }

    /// Whether a packet of either direction may be corrupted.
    pub fn corrupts(&self) -> bool {
        self.inbound.corrupt > 0.0 || self.outbound.corrupt > 0.0
    }
}

impl fmt::Display for Impairment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (name, p) in [
            ("drop", self.drop),
            ("corrupt", self.corrupt),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ] {
            if p > 0.0 {
                parts.push(format!("{name} {p}"));
            }
        }
        if self.delay > Duration::ZERO || self.jitter > Duration::ZERO {
            parts.push(format!(
                "delay {} ms ± {} ms",
                ms(self.delay),
                ms(self.jitter)
            ));
        }
        if let Some(r) = self.rate {
            parts.push(format!("rate {} Mbit/s", r as f64 / 1e6));
            if let Some(q) = self.queue {
                parts.push(format!("queue {q} packets"));
            }
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

impl fmt::Display for FaultConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "in: {}; out: {}; seed {}",
            self.inbound, self.outbound, self.seed
        )
    }
}

fn ms(d: Duration) -> String {
    let us = d.total_micros();
    if us % 1000 == 0 {
        format!("{}", us / 1000)
    } else {
        format!("{:.3}", us as f64 / 1000.0)
    }
}

/// A device under a [`Faults`] wrapper that wants to know what was done to its packets: a
/// tracer. Every method has a default that does nothing, for devices that record nothing.
pub trait FaultRecord {
    /// From now on, [`FaultRecord::record`] says which packets crossed the device and what was
    /// done to them; a tracer stops recording packets by itself.
    fn take_over_records(&mut self) {}

    /// `packet` crossed the device at `now`: `inbound`, read from it (as it was read), or
    /// written to it (or dropped on the way: `note` says so). `note` says what the link did
    /// to it; empty when nothing.
    fn record(&mut self, _now: Instant, _inbound: bool, _packet: &[u8], _note: &str) {}
}

impl FaultRecord for phy::Loopback {}

impl FaultRecord for super::TunTapDevice {}

/// Counters of what a bad link did, per direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FaultCounts {
    /// Packets that crossed (before any fault).
    pub packets: u64,
    /// Dropped (including tail drops of a full queue).
    pub dropped: u64,
    /// Corrupted.
    pub corrupted: u64,
    /// Sent twice.
    pub duplicated: u64,
    /// Held back behind the next packet.
    pub reordered: u64,
    /// Delayed (by a delay, a jitter or the rate).
    pub delayed: u64,
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} packets, {} dropped, {} corrupted, {} duplicated, {} reordered, {} delayed",
            self.packets,
            self.dropped,
            self.corrupted,
            self.duplicated,
            self.reordered,
            self.delayed
        )
    }
}

/// [`FaultCounts`] of both directions.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FaultStats {
    /// Packets read from the device.
    pub inbound: FaultCounts,
    /// Packets written to the device.
    pub outbound: FaultCounts,
}

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast, and every seed gives a good stream.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The fate of one packet, drawn before anything is done to it: the same number of draws for
/// every packet, so that the fate of the n-th packet depends on the seed and n only.
#[derive(Debug, Clone, Copy)]
struct Fate {
    drop: bool,
    corrupt: Option<u64>,
    duplicate: bool,
    reorder: bool,
    delay: Duration,
}

impl Fate {
    fn draw(rng: &mut Rng, imp: &Impairment) -> Fate {
        let (d, c, u, r, j, pos) = (
            rng.unit(),
            rng.unit(),
            rng.unit(),
            rng.unit(),
            rng.unit(),
            rng.next(),
        );
        let jitter = imp.jitter.total_micros() as f64;
        let delay = imp.delay.total_micros() as f64 + (2.0 * j - 1.0) * jitter;
        Fate {
            drop: d < imp.drop,
            corrupt: (c < imp.corrupt).then_some(pos),
            duplicate: u < imp.duplicate,
            reorder: r < imp.reorder,
            delay: Duration::from_micros(delay.max(0.0).round() as u64),
        }
    }
}

/// Where a bit may be flipped so that a checksum catches it: the byte range of `packet` that
/// the IPv4 header checksum or the transport checksum (with its pseudo-header) covers.
fn checksummed(packet: &[u8], medium: Medium) -> Option<(usize, usize)> {
    let l3 = match medium {
        Medium::Ethernet => match packet.get(12..14)? {
            [0x08, 0x00] | [0x86, 0xdd] => 14,
            _ => return None,
        },
        _ => 0,
    };
    let ip = packet.get(l3..)?;
    match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            if ihl < 20 || total < ihl || total > ip.len() {
                return None;
            }
            let udp_without_checksum = ip[9] == 17
                && u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff == 0
                && ip.get(ihl + 6..ihl + 8) == Some(&[0, 0]);
            let end = if udp_without_checksum { ihl } else { total };
            Some((l3, l3 + end))
        }
        6 => {
            let payload = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            let end = (40 + payload).min(ip.len());
            // Addresses (in the pseudo-header) and payload; not the version, traffic class,
            // flow label or hop limit, which no checksum covers.
            (end > 8).then_some((l3 + 8, l3 + end))
        }
        _ => None,
    }
}

/// Flip one bit of `packet` in its checksummed bytes, chosen by `pos`; the note, or `None` if
/// the packet has no checksummed byte.
fn corrupt(packet: &mut [u8], medium: Medium, pos: u64) -> Option<String> {
    let (start, end) = checksummed(packet, medium)?;
    let at = start + (pos % (end - start) as u64) as usize;
    let bit = ((pos >> 32) % 8) as u8;
    packet[at] ^= 1 << bit;
    Some(format!("corrupted at byte {at} (bit {bit})"))
}

/// A packet that waits, with the note it is recorded with when it goes.
type Waiting = (Vec<u8>, String);

/// A reordered packet.
#[derive(Debug)]
struct Held {
    deadline: Instant,
    seq: u64,
    overtaken: bool,
    packet: Waiting,
}

/// The packets of one direction that wait: delayed, queued behind the rate, or held back.
#[derive(Debug)]
struct Queue {
    imp: Impairment,
    rng: Rng,
    /// By release time, then arrival.
    waiting: BTreeMap<(Instant, u64), Waiting>,
    seq: u64,
    /// When the link is free again (rate).
    busy_until: Instant,
    /// When each packet waiting for the rate will have been sent, oldest first.
    sending: VecDeque<Instant>,
    /// Reordered packets: the time each goes anyway, the sequence number of the packets that
    /// must overtake it (those admitted after it), and whether one did.
    held: Vec<Held>,
    counts: FaultCounts,
}

impl Queue {
    fn new(imp: Impairment, seed: u64) -> Queue {
        Queue {
            imp,
            rng: Rng::new(seed),
            waiting: BTreeMap::new(),
            seq: 0,
            busy_until: Instant::ZERO,
            sending: VecDeque::new(),
            held: Vec::new(),
            counts: FaultCounts::default(),
        }
    }

    fn len(&self) -> usize {
        self.waiting.len() + self.held.len()
    }

    /// Take a packet at `now`: draw its fate, queue what goes on. Returns what was done to it,
    /// or `Err` with the note if it was dropped.
    fn admit(
        &mut self,
        now: Instant,
        mut packet: Vec<u8>,
        medium: Medium,
    ) -> Result<String, String> {
        self.counts.packets += 1;
        let fate = Fate::draw(&mut self.rng, &self.imp);
        if fate.drop {
            self.counts.dropped += 1;
            return Err("dropped".into());
        }
        while self.sending.front().is_some_and(|&t| t <= now) {
            self.sending.pop_front();
        }
        let bottleneck_full = self.imp.queue.is_some_and(|q| self.sending.len() >= q);
        if self.len() >= QUEUE_LIMIT || bottleneck_full {
            self.counts.dropped += 1;
            return Err("dropped (queue full)".into());
        }
        let mut notes = Vec::new();
        if let Some(pos) = fate.corrupt {
            if let Some(n) = corrupt(&mut packet, medium, pos) {
                self.counts.corrupted += 1;
                notes.push(n);
            }
        }
        let mut depart = now;
        if let Some(rate) = self.imp.rate {
            let bits = packet.len() as u64 * 8;
            let send = Duration::from_micros((bits * 1_000_000).div_ceil(rate.max(1)));
            depart = self.busy_until.max(now) + send;
            self.busy_until = depart;
            if self.imp.queue.is_some() {
                self.sending.push_back(depart);
            }
        }
        let release = depart + fate.delay;
        if release > now {
            self.counts.delayed += 1;
            notes.push(format!("delayed {} ms", ms(release - now)));
        }
        let reorder = fate.reorder;
        if reorder {
            self.counts.reordered += 1;
            notes.push("reordered".into());
        }
        if fate.duplicate {
            self.counts.duplicated += 1;
            notes.push("duplicated".into());
            self.seq += 1;
            let copy = (packet.clone(), "duplicate".to_string());
            self.waiting.insert((release, self.seq), copy);
        }
        let note = notes.join(", ");
        if reorder {
            self.held.push(Held {
                deadline: release + REORDER_HOLD,
                seq: self.seq,
                overtaken: false,
                packet: (packet, note.clone()),
            });
        } else {
            self.seq += 1;
            self.waiting
                .insert((release, self.seq), (packet, note.clone()));
        }
        Ok(note)
    }

    /// The next packet due at `now`, with its note, if any.
    fn pop(&mut self, now: Instant) -> Option<Waiting> {
        if let Some(i) = self
            .held
            .iter()
            .position(|h| h.overtaken || now >= h.deadline)
        {
            return Some(self.held.remove(i).packet);
        }
        let (&key, _) = self.waiting.first_key_value()?;
        if key.0 > now {
            return None;
        }
        for h in &mut self.held {
            // A packet admitted after the held one went first: the held one may go.
            h.overtaken |= key.1 > h.seq;
        }
        self.waiting.remove(&key)
    }

    /// When the next packet is due (`None`: none waits).
    fn next_at(&self) -> Option<Instant> {
        let held = self.held.iter().map(|h| {
            if h.overtaken {
                Instant::ZERO
            } else {
                h.deadline
            }
        });
        let first = self.waiting.first_key_value().map(|(k, _)| k.0);
        held.chain(first).min()
    }
}

/// The state of an active bad link.
#[derive(Debug)]
struct Link {
    medium: Medium,
    inbound: Queue,
    outbound: Queue,
}

/// A `phy::Device` wrapper that makes the link under it bad (see the [module](self) docs), or,
/// made with a config that sets no fault, passes every packet through untouched.
pub struct Faults<D> {
    inner: D,
    link: Option<Box<Link>>,
    /// The inbound packet handed to the stack.
    rx: Vec<u8>,
}

impl<D: Device + FaultRecord> Faults<D> {
    /// Wrap `inner` with the faults of `config`; with none, packets pass through untouched.
    pub fn new(mut inner: D, config: &FaultConfig) -> Faults<D> {
        let link = (!config.is_none()).then(|| {
            inner.take_over_records();
            let seed = Rng::new(config.seed).next();
            Box::new(Link {
                medium: inner.capabilities().medium,
                inbound: Queue::new(config.inbound, seed ^ 0x696e_626f_756e_6400),
                outbound: Queue::new(config.outbound, seed ^ 0x6f75_7462_6f75_6e64),
            })
        });
        Faults {
            inner,
            link,
            rx: Vec::new(),
        }
    }
}

impl<D> Faults<D> {
    /// A wrapper that does nothing to the packets.
    pub fn passthrough(inner: D) -> Faults<D> {
        Faults {
            inner,
            link: None,
            rx: Vec::new(),
        }
    }

    /// Whether faults are on.
    pub fn is_active(&self) -> bool {
        self.link.is_some()
    }

    /// The device under the wrapper.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The device under the wrapper, to change.
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// What the link did so far.
    pub fn stats(&self) -> FaultStats {
        self.link
            .as_ref()
            .map_or_else(FaultStats::default, |l| FaultStats {
                inbound: l.inbound.counts,
                outbound: l.outbound.counts,
            })
    }

    /// Take the wrapper apart.
    pub fn into_inner(self) -> D {
        self.inner
    }
}

impl<D: Device + FaultRecord> Faults<D> {
    /// Pass on every outbound packet that is due at `now`.
    fn send_due(link: &mut Link, inner: &mut D, now: Instant) {
        while let Some((p, note)) = link.outbound.pop(now) {
            if let Some(tx) = inner.transmit(now) {
                phy::TxToken::consume(tx, p.len(), |buf| buf.copy_from_slice(&p));
            }
            inner.record(now, false, &p, &note);
        }
    }

    /// Take what the device below has (a batch at most), recording each as read.
    fn ingest(link: &mut Link, inner: &mut D, now: Instant) {
        for _ in 0..INGEST_BATCH {
            let Some((rx, _)) = inner.receive(now) else {
                break;
            };
            let packet = phy::RxToken::consume(rx, |p| p.to_vec());
            let note = match link.inbound.admit(now, packet.clone(), link.medium) {
                Ok(n) | Err(n) => n,
            };
            inner.record(now, true, &packet, &note);
        }
    }
}

impl<D: Housekeeping + Device + FaultRecord> Housekeeping for Faults<D> {
    fn housekeeping(&mut self, now: Instant) -> Option<Instant> {
        let Some(link) = self.link.as_deref_mut() else {
            return self.inner.housekeeping(now);
        };
        Self::send_due(link, &mut self.inner, now);
        let own = [link.inbound.next_at(), link.outbound.next_at()]
            .into_iter()
            .flatten()
            .min();
        match (self.inner.housekeeping(now), own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn check(&self) -> super::Result<()> {
        self.inner.check()
    }
}

impl<D: AsFd> AsFd for Faults<D> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl<D: Device + FaultRecord> Device for Faults<D> {
    type RxToken<'a>
        = RxToken<'a, D::RxToken<'a>>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, D>
    where
        Self: 'a;

    fn receive(&mut self, now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let Some(link) = self.link.as_deref_mut() else {
            let (rx, tx) = self.inner.receive(now)?;
            return Some((RxToken::Inner(rx), TxToken(TxInner::Inner(tx))));
        };
        Self::ingest(link, &mut self.inner, now);
        self.rx = link.inbound.pop(now)?.0;
        Some((
            RxToken::Own(&self.rx),
            TxToken(TxInner::Own {
                link,
                inner: &mut self.inner,
                now,
            }),
        ))
    }

    fn transmit(&mut self, now: Instant) -> Option<Self::TxToken<'_>> {
        let Some(link) = self.link.as_deref_mut() else {
            return self.inner.transmit(now).map(|t| TxToken(TxInner::Inner(t)));
        };
        Self::send_due(link, &mut self.inner, now);
        Some(TxToken(TxInner::Own {
            link,
            inner: &mut self.inner,
            now,
        }))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = self.inner.capabilities();
        if self.link.is_some() {
            // Faults are per packet on the wire: no super-packets for the kernel to cut.
            caps.segmentation = Default::default();
        }
        caps
    }
}

/// A packet for the stack: the device's own, or one the bad link let through.
pub enum RxToken<'a, T> {
    /// Straight from the device below (no faults).
    Inner(T),
    /// From the bad link.
    Own(&'a [u8]),
}

impl<T: phy::RxToken> phy::RxToken for RxToken<'_, T> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        match self {
            RxToken::Inner(t) => t.consume(f),
            RxToken::Own(p) => f(p),
        }
    }

    fn meta(&self) -> phy::PacketMeta {
        match self {
            RxToken::Inner(t) => t.meta(),
            RxToken::Own(_) => phy::PacketMeta::default(),
        }
    }
}

/// Room for a packet from the stack: the device's own, or a place on the bad link.
pub struct TxToken<'a, D: Device + 'a>(TxInner<'a, D>);

enum TxInner<'a, D: Device + 'a> {
    /// Straight to the device below (no faults).
    Inner(D::TxToken<'a>),
    /// Onto the bad link.
    Own {
        link: &'a mut Link,
        inner: &'a mut D,
        now: Instant,
    },
}

impl<D: Device + FaultRecord> phy::TxToken for TxToken<'_, D> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        match self.0 {
            TxInner::Inner(t) => t.consume(len, f),
            TxInner::Own { link, inner, now } => {
                let mut packet = vec![0; len];
                let r = f(&mut packet);
                if let Err(note) = link.outbound.admit(now, packet.clone(), link.medium) {
                    // Never reaches the device: recorded now, as the host sent it.
                    inner.record(now, false, &packet, &note);
                }
                Faults::send_due(link, inner, now);
                r
            }
        }
    }

    fn set_meta(&mut self, meta: phy::PacketMeta) {
        if let TxInner::Inner(t) = &mut self.0 {
            t.set_meta(meta)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::{ChecksumCapabilities, RxToken as _, TxToken as _};
    use smoltcp::wire::{IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr};

    /// A device fed by the test: `inbox` is what the kernel sent, `sent` what reached it, and
    /// `records` what a tracer would hold.
    #[derive(Default)]
    struct Wire {
        inbox: std::collections::VecDeque<Vec<u8>>,
        sent: Vec<(Instant, Vec<u8>)>,
        records: Vec<(bool, Vec<u8>, String)>,
        rx: Vec<u8>,
    }

    struct Tx<'a>(&'a mut Vec<(Instant, Vec<u8>)>, Instant);

    impl phy::TxToken for Tx<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            let mut b = vec![0; len];
            let r = f(&mut b);
            self.0.push((self.1, b));
            r
        }
    }

    impl Device for Wire {
        type RxToken<'a> = super::super::device::RxToken<'a>;
        type TxToken<'a> = Tx<'a>;

        fn receive(&mut self, now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
            self.rx = self.inbox.pop_front()?;
            Some((
                super::super::device::RxToken::new(&self.rx),
                Tx(&mut self.sent, now),
            ))
        }

        fn transmit(&mut self, now: Instant) -> Option<Self::TxToken<'_>> {
            Some(Tx(&mut self.sent, now))
        }

        fn capabilities(&self) -> DeviceCapabilities {
            super::super::device::base_capabilities(Medium::Ip, 1500)
        }
    }

    impl FaultRecord for Wire {
        fn record(&mut self, _now: Instant, inbound: bool, packet: &[u8], note: &str) {
            self.records
                .push((inbound, packet.to_vec(), note.to_string()));
        }
    }

    impl Housekeeping for Wire {}

    fn udp(n: u16) -> Vec<u8> {
        let payload = n.to_be_bytes().repeat(50);
        let udp = UdpRepr {
            src_port: 4000,
            dst_port: 7,
        };
        let ip = Ipv4Repr {
            src_addr: Ipv4Address::new(192, 0, 2, 1),
            dst_addr: Ipv4Address::new(192, 0, 2, 2),
            next_header: IpProtocol::Udp,
            payload_len: udp.header_len() + payload.len(),
            hop_limit: 64,
        };
        let mut buf = vec![0; ip.buffer_len() + ip.payload_len];
        let caps = ChecksumCapabilities::default();
        let mut p = Ipv4Packet::new_unchecked(&mut buf);
        ip.emit(&mut p, &caps);
        udp.emit(
            &mut UdpPacket::new_unchecked(p.payload_mut()),
            &ip.src_addr.into(),
            &ip.dst_addr.into(),
            payload.len(),
            |b| b.copy_from_slice(&payload),
            &caps,
        );
        buf
    }

    fn valid(packet: &[u8]) -> bool {
        let Ok(p) = Ipv4Packet::new_checked(packet) else {
            return false;
        };
        let Ok(u) = UdpPacket::new_checked(p.payload()) else {
            return false;
        };
        p.verify_checksum() && u.verify_checksum(&p.src_addr().into(), &p.dst_addr().into())
    }

    fn config(f: impl FnOnce(&mut FaultConfig)) -> FaultConfig {
        let mut c = FaultConfig {
            seed: 42,
            ..FaultConfig::default()
        };
        f(&mut c);
        c
    }

    /// Feed `n` packets in at time 0 and take what the stack gets; the device afterwards.
    fn run_inbound(config: &FaultConfig, n: u16) -> (Vec<Vec<u8>>, Wire) {
        let mut wire = Wire::default();
        wire.inbox.extend((0..n).map(udp));
        let mut dev = Faults::new(wire, config);
        let mut got = Vec::new();
        let mut now = Instant::ZERO;
        for _ in 0..10_000 {
            while let Some((rx, _)) = dev.receive(now) {
                got.push(rx.consume(|p| p.to_vec()));
            }
            match dev.housekeeping(now) {
                Some(at) => now = at.max(now + Duration::from_micros(1)),
                None => break,
            }
        }
        (got, dev.into_inner())
    }

    #[test]
    fn the_same_seed_gives_the_same_fates_and_every_packet_is_recorded_once() {
        let c = config(|c| {
            c.inbound.drop = 0.2;
            c.inbound.duplicate = 0.1;
            c.inbound.reorder = 0.1;
            c.inbound.corrupt = 0.1;
        });
        let (a, wa) = run_inbound(&c, 500);
        let (b, _) = run_inbound(&c, 500);
        assert_eq!(a, b);
        let (other, _) = run_inbound(&FaultConfig { seed: 43, ..c }, 500);
        assert_ne!(a, other);
        // Each packet read is recorded once, as read, with what was done to it.
        assert_eq!(wa.records.len(), 500);
        assert!(
            wa.records
                .iter()
                .all(|(inbound, p, _)| *inbound && valid(p))
        );
        let count = |what: &str| wa.records.iter().filter(|r| r.2.contains(what)).count();
        let (dropped, dup, corrupted) = (
            count("dropped"),
            count("duplicated"),
            count("corrupted at byte"),
        );
        assert!(
            (70..130).contains(&dropped),
            "{dropped} dropped of 500 at 0.2"
        );
        assert!((20..75).contains(&dup), "{dup}");
        assert!(count("reordered") > 10);
        assert_eq!(a.len(), 500 - dropped + dup);
        // Every corrupted packet fails its checksum; every other one passes.
        let bad = a.iter().filter(|p| !valid(p)).count();
        assert!(
            bad >= corrupted - dup.min(corrupted) && bad > 10,
            "{bad} bad, {corrupted}"
        );
        // Reordering: not in the order sent.
        let order: Vec<Vec<u8>> = a.iter().filter(|p| valid(p)).cloned().collect();
        let mut sorted = order.clone();
        sorted.sort_by_key(|p| u16::from_be_bytes([p[28], p[29]]));
        assert_ne!(order, sorted);
    }

    #[test]
    fn a_corrupted_bit_is_always_in_checksummed_bytes() {
        for pos in 0..2000u64 {
            let mut p = udp(1);
            let pos = pos.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let note = corrupt(&mut p, Medium::Ip, pos).unwrap();
            assert!(note.starts_with("corrupted at byte "), "{note}");
            assert!(!valid(&p), "{note} went unnoticed");
        }
        // Not IP: nothing to corrupt that a checksum would catch.
        assert!(corrupt(&mut [0x00; 40], Medium::Ip, 1).is_none());
    }

    #[test]
    fn delayed_packets_wait_for_their_time_and_the_loop_is_told_when() {
        let c = config(|c| {
            c.set(FaultKind::Delay, "10").unwrap();
        });
        let mut wire = Wire::default();
        wire.inbox.push_back(udp(1));
        let mut dev = Faults::new(wire, &c);
        assert!(dev.receive(Instant::ZERO).is_none());
        assert_eq!(
            dev.housekeeping(Instant::ZERO),
            Some(Instant::from_millis(10))
        );
        assert!(dev.receive(Instant::from_micros(9_999)).is_none());
        assert!(dev.receive(Instant::from_millis(10)).is_some());
        // Outbound: sent when due, by housekeeping, and recorded then with its delay.
        let tx = dev.transmit(Instant::ZERO).unwrap();
        tx.consume(4, |b| b.copy_from_slice(&[0x45, 0, 0, 4]));
        assert!(dev.inner().sent.is_empty());
        assert_eq!(dev.housekeeping(Instant::from_millis(10)), None);
        let w = dev.into_inner();
        assert_eq!(
            w.sent,
            vec![(Instant::from_millis(10), vec![0x45, 0, 0, 4])]
        );
        assert_eq!(w.records.last().unwrap().2, "delayed 10 ms");
    }

    #[test]
    fn the_rate_spaces_packets_out() {
        // 1 Mbit/s: a 128-byte packet takes 1024 µs.
        let c = config(|c| c.set(FaultKind::Rate, "out:1").unwrap());
        let mut dev = Faults::new(Wire::default(), &c);
        for _ in 0..3 {
            let tx = dev.transmit(Instant::ZERO).unwrap();
            tx.consume(128, |b| b.copy_from_slice(&udp(1)));
        }
        let mut now = Instant::ZERO;
        while let Some(at) = dev.housekeeping(now) {
            now = at;
        }
        let times: Vec<i64> = dev
            .inner()
            .sent
            .iter()
            .map(|(t, _)| t.total_micros())
            .collect();
        assert_eq!(times, vec![1024, 2048, 3072]);
    }

    #[test]
    fn a_rate_queue_drops_what_does_not_fit() {
        // 1 Mbit/s, room for 2: of 4 packets sent at once, 2 go (1024 µs apart), 2 are dropped
        // and recorded so; once the link is free, the queue takes packets again.
        let c = config(|c| c.set(FaultKind::Rate, "out:1:2").unwrap());
        assert_eq!(c.outbound.queue, Some(2));
        let mut dev = Faults::new(Wire::default(), &c);
        let send = |dev: &mut Faults<Wire>, at: Instant| {
            let tx = dev.transmit(at).unwrap();
            tx.consume(128, |b| b.copy_from_slice(&udp(1)));
        };
        for _ in 0..4 {
            send(&mut dev, Instant::ZERO);
        }
        let mut now = Instant::ZERO;
        while let Some(at) = dev.housekeeping(now) {
            now = at;
        }
        send(&mut dev, now);
        while let Some(at) = dev.housekeeping(now) {
            now = at;
        }
        let w = dev.into_inner();
        let times: Vec<i64> = w.sent.iter().map(|(t, _)| t.total_micros()).collect();
        assert_eq!(times, vec![1024, 2048, 3072]);
        let full = w.records.iter().filter(|r| r.2 == "dropped (queue full)");
        assert_eq!(full.count(), 2);
    }

    #[test]
    fn specifications_parse_per_direction_and_bad_ones_say_why() {
        let mut c = FaultConfig::default();
        c.set(FaultKind::Drop, "in:0.01").unwrap();
        c.set(FaultKind::Delay, "10:2.5").unwrap();
        assert_eq!((c.inbound.drop, c.outbound.drop), (0.01, 0.0));
        assert_eq!(c.outbound.jitter, Duration::from_micros(2500));
        for (kind, text) in [
            (FaultKind::Drop, "2"),
            (FaultKind::Reorder, "-0.1"),
            (FaultKind::Delay, "ten"),
            (FaultKind::Rate, "0"),
            (FaultKind::Rate, "10:0"),
            (FaultKind::Rate, "10:many"),
            (FaultKind::Corrupt, "sideways:0.1"),
        ] {
            let e = c.set(kind, text).unwrap_err().to_string();
            assert!(e.contains(text), "{e}");
        }
        assert_eq!(
            c.to_string(),
            "in: drop 0.01, delay 10 ms ± 2.500 ms; out: delay 10 ms ± 2.500 ms; seed 0"
        );
        // No fault: the wrapper passes packets through and records nothing itself.
        assert!(!Faults::new(Wire::default(), &FaultConfig::default()).is_active());
    }
}

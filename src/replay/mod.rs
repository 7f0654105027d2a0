//! Offline replay: a capture played through the same [`Host`] that runs live, on a
//! [`VirtualClock`] that follows the capture's timestamps.
//!
//! The packets of the capture that are addressed to the host (its IP addresses on an IP-medium
//! host; its MAC, broadcast or multicast on an Ethernet one) go into a [`ReplayDevice`] at their
//! capture time; everything else is counted as ignored, with the reason. The host's timers run in
//! virtual time between packets, so a capture of minutes replays in milliseconds, and the same
//! capture with the same seed always gives the same output, byte for byte.
//!
//! The medium follows the capture: Ethernet captures replay on an Ethernet host (whose MAC is
//! `Config::mac`, or else learned from the capture: the source of the frames the host sent), every
//! other link type on an IP host, fed the network-layer packets.
//!
//! TCP replays faithfully only with the seed the live host had: the peer's packets in the capture
//! acknowledge the sequence numbers the live host chose. ICMP, UDP and ARP do not depend on it.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::{Read, Seek, Write};
use std::rc::Rc;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet,
};

mod error;

pub use error::{ReplayError, Result};

use crate::host::{Clock, Config, Host, HostError, VirtualClock};
use crate::link::device::{RxToken, base_capabilities};
use crate::link::{FaultConfig, FaultRecord, Faults, Housekeeping};
use crate::pcap::{
    Capture, CaptureReader, Damage, Direction, Link, Packet, Pcap, TraceConfig, TraceStats,
};
use crate::services::{self, ServicesConfig};

/// Packets by protocol, for the summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ByProtocol {
    /// ARP packets.
    pub arp: u64,
    /// ICMP (IPv4) packets.
    pub icmp: u64,
    /// ICMPv6 packets.
    pub icmpv6: u64,
    /// TCP segments.
    pub tcp: u64,
    /// UDP datagrams.
    pub udp: u64,
    /// Anything else: other IP protocols and ethertypes, packets that do not decode.
    pub other: u64,
}

impl ByProtocol {
    fn count(&mut self, p: Protocol) {
        match p {
            Protocol::Arp => self.arp += 1,
            Protocol::Icmp => self.icmp += 1,
            Protocol::Icmpv6 => self.icmpv6 += 1,
            Protocol::Tcp => self.tcp += 1,
            Protocol::Udp => self.udp += 1,
            Protocol::Other => self.other += 1,
        }
    }
}

impl fmt::Display for ByProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            ("arp", self.arp),
            ("icmp", self.icmp),
            ("icmpv6", self.icmpv6),
            ("tcp", self.tcp),
            ("udp", self.udp),
            ("other", self.other),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// The protocol of a packet, as far as the summary cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// ARP.
    Arp,
    /// ICMP over IPv4.
    Icmp,
    /// ICMPv6.
    Icmpv6,
    /// TCP, over IPv4 or IPv6.
    Tcp,
    /// UDP, over IPv4 or IPv6.
    Udp,
    /// Anything else, or a packet that does not decode.
    Other,
}

/// Why a packet of the capture was not fed to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ignored {
    /// Sent by the host itself (its replies in the capture).
    FromHost,
    /// Addressed to someone else.
    NotForHost,
    /// Not IPv4 or IPv6 (ARP on a cooked capture, ...) on an IP host.
    NotIp,
    /// Not an Ethernet frame, in an Ethernet replay.
    NotEthernet,
    /// The capture kept only the start of the packet (a snap length).
    CutShort,
    /// Too short for its headers.
    Malformed,
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ignored::FromHost => "sent by the host",
            Ignored::NotForHost => "not for the host",
            Ignored::NotIp => "not IP",
            Ignored::NotEthernet => "not Ethernet",
            Ignored::CutShort => "cut short by the capture's snap length",
            Ignored::Malformed => "malformed",
        })
    }
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Packets read from the capture.
    pub read: u64,
    /// Packets of the capture fed to the host.
    pub fed: u64,
    /// Packets of the capture not fed to the host, by reason.
    pub ignored: BTreeMap<Ignored, u64>,
    /// Packets the host sent.
    pub written: u64,
    /// The packets fed to the host, by protocol.
    pub fed_by_protocol: ByProtocol,
    /// The packets the host sent, by protocol.
    pub written_by_protocol: ByProtocol,
    /// Packets of the capture whose IP destination is one of the host's addresses.
    pub addressed: u64,
    /// When no packet is addressed to the host: the capture's most frequent unicast IP
    /// destinations (at most [`DESTINATIONS_LISTED`]), with their packet counts, most first.
    pub destinations: Vec<(IpAddress, u64)>,
    /// What was wrong with the capture file: records skipped, a file cut short.
    pub damage: Damage,
}

/// How many destinations [`Summary::destinations`] lists.
pub const DESTINATIONS_LISTED: usize = 5;
/// How many distinct destinations a replay counts (memory stays bounded; later new ones are not
/// counted).
const DESTINATIONS_COUNTED: usize = 4096;

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ignored: u64 = self.ignored.values().sum();
        write!(
            f,
            "{} packets read, {} fed to the host, {} ignored",
            self.read, self.fed, ignored
        )?;
        if ignored > 0 {
            let why: Vec<String> = self
                .ignored
                .iter()
                .map(|(reason, n)| format!("{n} {reason}"))
                .collect();
            write!(f, " ({})", why.join(", "))?;
        }
        write!(
            f,
            ", {} written by the host\n  fed:     {}\n  written: {}",
            self.written, self.fed_by_protocol, self.written_by_protocol
        )?;
        if !self.destinations.is_empty() {
            let top: Vec<String> = self
                .destinations
                .iter()
                .map(|(ip, n)| format!("{ip} ({n})"))
                .collect();
            write!(
                f,
                "\n  no packet is addressed to the host; the capture's most frequent \
                 destinations: {}",
                top.join(", ")
            )?;
        }
        if !self.damage.is_clean() {
            write!(f, "\n  capture: {}", self.damage)?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Shared {
    inbox: VecDeque<Vec<u8>>,
    sent: Vec<(Instant, Vec<u8>)>,
    keep: bool,
    written: u64,
    by_protocol: ByProtocol,
}

/// A `phy::Device` fed by a replay driver: it hands the host the packets pushed through its
/// [`ReplayHandle`] and collects what the host sends.
#[derive(Debug)]
pub struct ReplayDevice {
    medium: Medium,
    mtu: usize,
    shared: Rc<RefCell<Shared>>,
    rx: Vec<u8>,
    tx: Vec<u8>,
}

/// The driver's side of a [`ReplayDevice`]: push packets in, take the host's packets out.
#[derive(Debug, Clone)]
pub struct ReplayHandle {
    shared: Rc<RefCell<Shared>>,
}

impl ReplayDevice {
    /// A device of `medium` with an IP MTU of `mtu`; `keep` keeps a copy of every packet sent.
    pub fn new(medium: Medium, mtu: usize, keep: bool) -> (ReplayDevice, ReplayHandle) {
        let shared = Rc::new(RefCell::new(Shared {
            inbox: VecDeque::new(),
            sent: Vec::new(),
            keep,
            written: 0,
            by_protocol: ByProtocol::default(),
        }));
        let dev = ReplayDevice {
            medium,
            mtu,
            shared: shared.clone(),
            rx: Vec::new(),
            tx: Vec::new(),
        };
        (dev, ReplayHandle { shared })
    }
}

impl ReplayHandle {
    /// Queue a packet for the host to read.
    pub fn push(&self, packet: &[u8]) {
        self.shared.borrow_mut().inbox.push_back(packet.to_vec());
    }

    /// The packets the host sent so far (if kept), with their times.
    pub fn take_sent(&self) -> Vec<(Instant, Vec<u8>)> {
        std::mem::take(&mut self.shared.borrow_mut().sent)
    }

    /// How many packets the host sent so far, in all and by protocol.
    pub fn written(&self) -> (u64, ByProtocol) {
        let s = self.shared.borrow();
        (s.written, s.by_protocol)
    }
}

/// The replay device records nothing: a tracer around it does.
impl FaultRecord for ReplayDevice {}

/// No deadlines of its own.
impl Housekeeping for ReplayDevice {}

impl Device for ReplayDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let packet = self.shared.borrow_mut().inbox.pop_front()?;
        self.rx = packet;
        Some((
            RxToken::new(&self.rx),
            TxToken {
                medium: self.medium,
                buf: &mut self.tx,
                shared: &self.shared,
                now,
            },
        ))
    }

    fn transmit(&mut self, now: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            medium: self.medium,
            buf: &mut self.tx,
            shared: &self.shared,
            now,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        base_capabilities(self.medium, self.mtu)
    }
}

/// The transmit token of a [`ReplayDevice`]: counts the host's packet (and keeps it if asked).
pub struct TxToken<'a> {
    medium: Medium,
    buf: &'a mut Vec<u8>,
    shared: &'a RefCell<Shared>,
    now: Instant,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        self.buf.clear();
        self.buf.resize(len, 0);
        let r = f(self.buf);
        let mut s = self.shared.borrow_mut();
        s.written += 1;
        let link = match self.medium {
            Medium::Ethernet => Link::Ethernet,
            _ => Link::Raw,
        };
        let proto = decode(link, self.buf).map_or(Protocol::Other, |d| d.protocol());
        s.by_protocol.count(proto);
        if s.keep {
            let copy = self.buf.clone();
            s.sent.push((self.now, copy));
        }
        r
    }
}

/// A packet seen down to its network layer.
struct Decoded<'a> {
    /// Destination and source MAC, for Ethernet frames.
    macs: Option<(EthernetAddress, EthernetAddress)>,
    ethertype: u16,
    /// Whether VLAN tags or MPLS labels came between the MACs and `l3` (Ethernet frames).
    wrapped: bool,
    /// The network-layer packet.
    l3: &'a [u8],
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_ARP: u16 = 0x0806;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The ethertype of an IP packet from its version nibble (0 if it is neither v4 nor v6).
fn ip_version(l3: &[u8]) -> u16 {
    match l3.first().map(|b| b >> 4) {
        Some(4) => ETHERTYPE_IPV4,
        Some(6) => ETHERTYPE_IPV6,
        _ => 0,
    }
}

/// The ethertype of a BSD loopback address family (`AF_INET`; `AF_INET6` as Linux, NetBSD and
/// OpenBSD, FreeBSD, macOS number it).
fn address_family(af: u32) -> u16 {
    match af {
        2 => ETHERTYPE_IPV4,
        10 | 24 | 28 | 30 => ETHERTYPE_IPV6,
        _ => 0,
    }
}

/// After an Ethernet header: 802.1Q/802.1ad tags and MPLS labels skipped, the ethertype and the
/// offset of the network-layer packet.
fn unwrap_ethernet(data: &[u8]) -> Option<(u16, usize)> {
    let mut at = 12;
    let mut ethertype = be16(data, at)?;
    // At most a few tags or labels: a frame of nothing but tags is not worth the loop.
    for _ in 0..8 {
        match ethertype {
            0x8100 | 0x88a8 | 0x9100 => {
                at += 4;
                ethertype = be16(data, at)?;
            }
            0x8847 | 0x8848 => {
                // Label stack entries of 4 bytes, up to the one with the bottom-of-stack bit.
                let mut end = at + 2;
                loop {
                    let entry = data.get(end..end + 4)?;
                    end += 4;
                    if entry[2] & 1 == 1 {
                        break;
                    }
                }
                let l3 = data.get(end..)?;
                return Some((ip_version(l3), end));
            }
            _ => break,
        }
    }
    Some((ethertype, at + 2))
}

fn decode(link: Link, data: &[u8]) -> Option<Decoded<'_>> {
    let (macs, (ethertype, l3), wrapped) = match link {
        Link::Ethernet => {
            let frame = EthernetFrame::new_checked(data).ok()?;
            let (ethertype, at) = unwrap_ethernet(data)?;
            let macs = Some((frame.dst_addr(), frame.src_addr()));
            (macs, (ethertype, data.get(at..)?), at != 14)
        }
        Link::Raw => (None, (ip_version(data), data), false),
        Link::LinuxSll => (None, (be16(data, 14)?, data.get(16..)?), false),
        Link::LinuxSll2 => (None, (be16(data, 0)?, data.get(20..)?), false),
        Link::CiscoHdlc => (None, (be16(data, 2)?, data.get(4..)?), false),
        Link::Slip => {
            let l3 = data.get(16..)?;
            (None, (ip_version(l3), l3), false)
        }
        Link::Null | Link::Loop => {
            let af: [u8; 4] = data.get(..4)?.try_into().ok()?;
            let af = match link {
                Link::Loop => u32::from_be_bytes(af),
                // In the byte order of the machine that wrote it: the family is a small number.
                _ => match u32::from_le_bytes(af) {
                    n if n > 0xffff => u32::from_be_bytes(af),
                    n => n,
                },
            };
            (None, (address_family(af), data.get(4..)?), false)
        }
        Link::Ppp => {
            // Address and control (0xff 0x03) may be there or not; a protocol number whose first
            // byte is odd is a compressed 1-byte one.
            let rest = data.strip_prefix(&[0xff, 0x03]).unwrap_or(data);
            let (proto, at) = match rest.first()? {
                b if b & 1 == 1 => (u16::from(*b), 1),
                _ => (be16(rest, 0)?, 2),
            };
            let ethertype = match proto {
                0x21 => ETHERTYPE_IPV4,
                0x57 => ETHERTYPE_IPV6,
                _ => 0,
            };
            (None, (ethertype, rest.get(at..)?), false)
        }
    };
    Some(Decoded {
        macs,
        ethertype,
        wrapped,
        l3,
    })
}

impl Decoded<'_> {
    /// Source and destination IP addresses, for IP packets that parse.
    fn ips(&self) -> Option<(IpAddress, IpAddress)> {
        match self.ethertype {
            ETHERTYPE_IPV4 => {
                let p = Ipv4Packet::new_checked(self.l3).ok()?;
                Some((p.src_addr().into(), p.dst_addr().into()))
            }
            ETHERTYPE_IPV6 => {
                let p = Ipv6Packet::new_checked(self.l3).ok()?;
                Some((p.src_addr().into(), p.dst_addr().into()))
            }
            _ => None,
        }
    }

    /// Source and destination IP addresses from the header alone: also of a packet cut short
    /// by a snap length.
    fn header_ips(&self) -> Option<(IpAddress, IpAddress)> {
        let l3 = self.l3;
        let addr4 = |at: usize| -> Option<IpAddress> {
            let b: [u8; 4] = l3.get(at..at + 4)?.try_into().ok()?;
            Some(IpAddress::v4(b[0], b[1], b[2], b[3]))
        };
        let addr6 = |at: usize| -> Option<IpAddress> {
            let b: [u8; 16] = l3.get(at..at + 16)?.try_into().ok()?;
            Some(IpAddress::Ipv6(b.into()))
        };
        match (self.ethertype, ip_version(l3)) {
            (ETHERTYPE_IPV4, ETHERTYPE_IPV4) => Some((addr4(12)?, addr4(16)?)),
            (ETHERTYPE_IPV6, ETHERTYPE_IPV6) => Some((addr6(8)?, addr6(24)?)),
            _ => None,
        }
    }

    fn protocol(&self) -> Protocol {
        let next = match self.ethertype {
            ETHERTYPE_ARP => return Protocol::Arp,
            ETHERTYPE_IPV4 => Ipv4Packet::new_checked(self.l3).map(|p| p.next_header()),
            ETHERTYPE_IPV6 => Ipv6Packet::new_checked(self.l3).map(|p| p.next_header()),
            _ => return Protocol::Other,
        };
        match next {
            Ok(IpProtocol::Icmp) => Protocol::Icmp,
            Ok(IpProtocol::Icmpv6) => Protocol::Icmpv6,
            Ok(IpProtocol::Tcp) => Protocol::Tcp,
            Ok(IpProtocol::Udp) => Protocol::Udp,
            _ => Protocol::Other,
        }
    }

    /// The sender's IP address, including an ARP packet's sender protocol address.
    fn sender_ip(&self) -> Option<IpAddress> {
        if self.ethertype == ETHERTYPE_ARP {
            let spa = self.l3.get(14..18)?;
            return Some(IpAddress::v4(spa[0], spa[1], spa[2], spa[3]));
        }
        self.header_ips().map(|(src, _)| src)
    }
}

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// The host, as live. Its `seed` defaults to 0 here (replay is always deterministic).
    pub host: Config,
    /// The services, as live. HTTP's `epoch` defaults to 0 here (the virtual clock runs on
    /// capture time).
    pub services: ServicesConfig,
    /// The device's IP MTU.
    pub mtu: usize,
    /// How long the host runs (in virtual time) after the last packet, for its timers.
    pub linger: Duration,
    /// Keep the host's packets in the report (for tests and tools).
    pub keep_output: bool,
    /// The bad link the live host had ([`Faults`]): with the same seed, the packets of the
    /// capture get the fates they had live.
    pub faults: FaultConfig,
}

impl ReplayConfig {
    /// Replay through a host configured as `host`, running `services`; MTU 1500, 1 s of linger.
    pub fn new(host: Config, services: ServicesConfig) -> ReplayConfig {
        ReplayConfig {
            host,
            services,
            mtu: 1500,
            linger: Duration::from_secs(1),
            keep_output: false,
            faults: FaultConfig::default(),
        }
    }

    /// Check what can be checked before reading a packet: the host's and the services'
    /// configuration.
    pub fn validate(&self) -> Result<()> {
        self.host.validate().map_err(HostError::from)?;
        self.services.validate()?;
        Ok(())
    }
}

/// Where the MAC of an Ethernet replay's host came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacOrigin {
    /// `Config::mac`.
    Given,
    /// Learned from the capture: the source of a unicast frame from the host's address, or the
    /// unicast destination of a frame to it.
    Learned,
    /// None given and none to learn: [`OWN_MAC`], so that broadcast and multicast frames (ARP,
    /// neighbour discovery) still reach the host.
    Own,
}

/// The MAC an Ethernet replay's host has when none is given and none can be learned (locally
/// administered, unicast).
pub const OWN_MAC: EthernetAddress = EthernetAddress([0x02, 0x74, 0x75, 0x6e, 0x00, 0x01]);

/// What a replay produced.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was read, fed to the host, ignored and sent.
    pub summary: Summary,
    /// The host's packets with their virtual times (empty unless `keep_output`).
    pub output: Vec<(Instant, Vec<u8>)>,
    /// The medium the host had.
    pub medium: Medium,
    /// The host's MAC (Ethernet replays).
    pub mac: Option<EthernetAddress>,
    /// Where the MAC came from (Ethernet replays).
    pub mac_origin: Option<MacOrigin>,
    /// The counters of the output trace, if one was written.
    pub trace: Option<TraceStats>,
}

/// Packets one after the other: those of a [`Capture`] in memory, or of a [`CaptureReader`].
trait Packets {
    /// The next packet; an error is one replay cannot go on after (a link type it cannot read).
    fn next_packet(&mut self) -> Result<Option<Cow<'_, Packet>>>;
    /// What was wrong with the file, once the packets are all read.
    fn damage(&self) -> Damage;
}

/// A capture in memory: its packets, and its damage.
struct InMemory<'a> {
    packets: std::slice::Iter<'a, Packet>,
    damage: &'a Damage,
}

impl Packets for InMemory<'_> {
    fn next_packet(&mut self) -> Result<Option<Cow<'_, Packet>>> {
        Ok(self.packets.next().map(Cow::Borrowed))
    }

    fn damage(&self) -> Damage {
        self.damage.clone()
    }
}

impl<R: Read> Packets for CaptureReader<R> {
    fn next_packet(&mut self) -> Result<Option<Cow<'_, Packet>>> {
        Ok(CaptureReader::next_packet(self)?.map(Cow::Owned))
    }

    fn damage(&self) -> Damage {
        CaptureReader::damage(self).clone()
    }
}

/// The host's MAC in an Ethernet capture: the source of a unicast frame the host sent (an IP
/// packet or an ARP message from one of its addresses), else the unicast destination of a frame
/// to it. Reads packets until it finds one; cut frames count (their headers are enough).
fn learn_mac(packets: &mut impl Packets, config: &Config) -> Result<Option<EthernetAddress>> {
    let mine = |ip: IpAddress| config.addrs.iter().any(|a| a.address() == ip);
    let mut to_host = None;
    while let Some(p) = packets.next_packet()? {
        if p.link != Link::Ethernet {
            continue;
        }
        let Some(d) = decode(p.link, &p.data) else {
            continue;
        };
        let Some((dst, src)) = d.macs else { continue };
        if src.is_unicast() && d.sender_ip().is_some_and(mine) {
            return Ok(Some(src));
        }
        if to_host.is_none() && dst.is_unicast() && d.header_ips().is_some_and(|(_, to)| mine(to)) {
            to_host = Some(dst);
        }
    }
    Ok(to_host)
}

/// Whether to feed `p` to the host, or why not.
fn classify(
    p: &Packet,
    medium: Medium,
    mac: Option<EthernetAddress>,
    config: &Config,
) -> std::result::Result<Protocol, Ignored> {
    let mine = |ip: IpAddress| config.addrs.iter().any(|a| a.address() == ip);
    if medium == Medium::Ethernet && p.link != Link::Ethernet {
        return Err(Ignored::NotEthernet);
    }
    let d = decode(p.link, &p.data).ok_or(Ignored::Malformed)?;
    if p.is_cut() {
        return Err(Ignored::CutShort);
    }
    // A pcapng trace of the host itself says which packets were its own.
    if p.direction == Some(Direction::Outbound) {
        return Err(Ignored::FromHost);
    }
    if medium == Medium::Ethernet {
        let (dst, src) = d.macs.ok_or(Ignored::Malformed)?;
        let mac = mac.unwrap_or_default();
        if src == mac {
            return Err(Ignored::FromHost);
        }
        if dst != mac && !dst.is_broadcast() && !dst.is_multicast() {
            return Err(Ignored::NotForHost);
        }
        return Ok(d.protocol());
    }
    if d.ethertype != ETHERTYPE_IPV4 && d.ethertype != ETHERTYPE_IPV6 {
        return Err(Ignored::NotIp);
    }
    let (src, dst) = d.ips().ok_or(Ignored::Malformed)?;
    if mine(src) {
        return Err(Ignored::FromHost);
    }
    if !mine(dst) {
        return Err(Ignored::NotForHost);
    }
    Ok(d.protocol())
}

/// The network-layer bytes to feed an IP host, or the frame for an Ethernet host (without its
/// VLAN tags or MPLS labels: the host is the one on the VLAN).
fn payload(p: &Packet, medium: Medium) -> Cow<'_, [u8]> {
    let Some(d) = decode(p.link, &p.data) else {
        return Cow::Borrowed(&[]);
    };
    if medium != Medium::Ethernet {
        return Cow::Borrowed(d.l3);
    }
    if !d.wrapped {
        return Cow::Borrowed(&p.data);
    }
    let mut frame = p.data[..12].to_vec();
    frame.extend(d.ethertype.to_be_bytes());
    frame.extend(d.l3);
    Cow::Owned(frame)
}

/// The latest capture time replay takes as is (about 73,000 years after 1970): later ones are
/// clamped, so that the host's clock can still add its timeouts without overflowing.
const LATEST: i64 = i64::MAX / 4;

fn instant(ts: std::time::Duration) -> Instant {
    Instant::from_micros(i64::try_from(ts.as_micros()).unwrap_or(LATEST).min(LATEST))
}

/// Most turns the host gets between two packets (a guard against a timer that never settles).
const MAX_TURNS_BETWEEN_PACKETS: u32 = 10_000;

/// Let the host run its timers until `t`, in virtual time.
fn run_until<D: Device + Housekeeping>(
    host: &mut Host<D, VirtualClock>,
    clock: &VirtualClock,
    t: Instant,
) {
    let mut zero_turns = 0;
    for _ in 0..MAX_TURNS_BETWEEN_PACKETS {
        let delay = host.poll();
        // As live: the device's deadlines (a bad link's delayed packets) wake the host too.
        let now = clock.now();
        let device = host
            .device_mut()
            .housekeeping(now)
            .map(|at| if at > now { at - now } else { Duration::ZERO });
        let delay = match (delay, device) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
        let step = if delay == Duration::ZERO {
            // As live: one immediate retry, then 1 ms steps while smoltcp waits on something.
            zero_turns += 1;
            if zero_turns < 2 {
                continue;
            }
            Duration::from_millis(1)
        } else {
            delay
        };
        zero_turns = 0;
        let next = clock.now() + step;
        if next > t {
            break;
        }
        clock.set(next);
    }
    clock.set(t);
}

/// Replay `capture` through a host built from `config`. With `out`, the replayed host is traced
/// as a live one is: the packets fed to it (inbound) and those it wrote (outbound), with their
/// virtual timestamps.
pub fn replay<W: Write>(
    capture: &Capture,
    config: &ReplayConfig,
    out: Option<(W, TraceConfig)>,
) -> Result<Report> {
    let packets = || InMemory {
        packets: capture.packets.iter(),
        damage: &capture.damage,
    };
    let first = capture.packets.first().map(|p| (p.link, p.timestamp));
    let mac = match (first, config.host.mac) {
        (Some((Link::Ethernet, _)), None) => learn_mac(&mut packets(), &config.host)?,
        _ => None,
    };
    replay_packets(&mut packets(), first, mac, config, out)
}

/// Replay the capture `reader` reads, as [`replay`] does, in constant memory: one packet at a
/// time, whatever the size of the file. An Ethernet capture with no [`Config::mac`] is read
/// twice (first to learn the host's MAC), hence `Seek`.
pub fn replay_reader<R: Read + Seek, W: Write>(
    reader: &mut CaptureReader<R>,
    config: &ReplayConfig,
    out: Option<(W, TraceConfig)>,
) -> Result<Report> {
    let first = reader.next_packet()?.map(|p| (p.link, p.timestamp));
    let mac = match (first, config.host.mac) {
        (Some((Link::Ethernet, _)), None) => learn_mac(reader, &config.host)?,
        _ => None,
    };
    reader.rewind()?;
    replay_packets(reader, first, mac, config, out)
}

/// The replay of `packets`, whose first has the link and time `first`, with `learned` the MAC
/// learned from them if it is an Ethernet capture.
fn replay_packets<W: Write>(
    packets: &mut impl Packets,
    first: Option<(Link, std::time::Duration)>,
    learned: Option<EthernetAddress>,
    config: &ReplayConfig,
    out: Option<(W, TraceConfig)>,
) -> Result<Report> {
    let mut host_config = config.host.clone();
    host_config.seed.get_or_insert(0);
    let mut services = config.services.clone();
    // HTTP `Date` headers from the virtual clock, which runs on capture (UNIX) time.
    services.http.epoch.get_or_insert(0);
    config.validate()?;
    let (medium, mac, mac_origin) = if first.is_some_and(|(link, _)| link == Link::Ethernet) {
        let (mac, origin) = match (host_config.mac, learned) {
            (Some(m), _) => (m, MacOrigin::Given),
            (None, Some(m)) => (m, MacOrigin::Learned),
            (None, None) => (OWN_MAC, MacOrigin::Own),
        };
        host_config.mac = Some(mac);
        (Medium::Ethernet, Some(mac), Some(origin))
    } else {
        if host_config.mac.is_some() && first.is_some() {
            return Err(ReplayError::MacOnIpCapture);
        }
        (Medium::Ip, None, None)
    };
    // The virtual clock starts at the first packet's time.
    let start = first.map_or(Instant::ZERO, |(_, t)| instant(t));
    let clock = VirtualClock::new(start);
    let (device, handle) = ReplayDevice::new(medium, config.mtu, config.keep_output);
    let mut summary = Summary::default();
    let feed = Feed {
        linger: config.linger,
        medium,
        mac,
        clock: &clock,
        handle: &handle,
        all_inbound: !config.faults.is_none(),
    };
    let (device, label) = match out {
        Some((w, trace_config)) => {
            let label = trace_config.label.clone();
            let device =
                Pcap::new(device, w, &trace_config).map_err(|source| ReplayError::Trace {
                    label: label.clone(),
                    source,
                })?;
            (device, Some(label))
        }
        None => (Pcap::passthrough(device), None),
    };
    let device = Faults::new(device, &config.faults);
    let mut host = Host::new(device, clock.clone(), host_config.clone())?;
    services::add(&mut host, &services)?;
    let fed = feed.run(packets, &mut host, &mut summary);
    let (_, result, _, stats) = host.into_device().into_inner().finish();
    fed?;
    let trace = match label {
        Some(label) => {
            result.map_err(|source| ReplayError::Trace { label, source })?;
            Some(stats)
        }
        None => None,
    };
    let (written, by_protocol) = handle.written();
    summary.written = written;
    summary.written_by_protocol = by_protocol;
    summary.damage = packets.damage();
    Ok(Report {
        summary,
        output: handle.take_sent(),
        medium,
        mac,
        mac_origin,
        trace,
    })
}

/// What a replay feeds its host, and how to tell which packets are the host's.
struct Feed<'a> {
    linger: Duration,
    medium: Medium,
    mac: Option<EthernetAddress>,
    clock: &'a VirtualClock,
    handle: &'a ReplayHandle,
    /// Feed every packet a pcapng trace marks inbound, whatever it is: the live host read each
    /// of them, and a bad link drew a fate for each, in order.
    all_inbound: bool,
}

impl Feed<'_> {
    /// Play the packets into `host`, running its timers in between; count what happened.
    fn run<D: Device + Housekeeping>(
        &self,
        packets: &mut impl Packets,
        host: &mut Host<D, VirtualClock>,
        summary: &mut Summary,
    ) -> Result<()> {
        let host_config = host.config().clone();
        let mine = |ip: &IpAddress| host_config.addrs.iter().any(|a| a.address() == *ip);
        let mut destinations: BTreeMap<IpAddress, u64> = BTreeMap::new();
        let mut last = self.clock.now();
        while let Some(p) = packets.next_packet()? {
            summary.read += 1;
            let t = instant(p.timestamp).max(last);
            last = t;
            let to = decode(p.link, &p.data)
                .and_then(|d| d.header_ips())
                .map(|(_, dst)| dst);
            match to {
                Some(dst) if mine(&dst) => summary.addressed += 1,
                Some(dst) if dst.is_unicast() && summary.addressed == 0 => {
                    if let Some(n) = destinations.get_mut(&dst) {
                        *n += 1;
                    } else if destinations.len() < DESTINATIONS_COUNTED {
                        destinations.insert(dst, 1);
                    }
                }
                _ => {}
            }
            let class = match classify(&p, self.medium, self.mac, &host_config) {
                Err(Ignored::NotForHost | Ignored::NotIp)
                    if self.all_inbound && p.direction == Some(Direction::Inbound) =>
                {
                    Ok(decode(p.link, &p.data).map_or(Protocol::Other, |d| d.protocol()))
                }
                c => c,
            };
            match class {
                Ok(proto) => {
                    run_until(host, self.clock, t);
                    self.handle.push(&payload(&p, self.medium));
                    host.poll();
                    summary.fed += 1;
                    summary.fed_by_protocol.count(proto);
                }
                Err(why) => *summary.ignored.entry(why).or_default() += 1,
            }
        }
        if summary.addressed == 0 {
            let mut top: Vec<(IpAddress, u64)> = destinations.into_iter().collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            top.truncate(DESTINATIONS_LISTED);
            summary.destinations = top;
        }
        run_until(host, self.clock, last + self.linger);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpCidr, Ipv4Address, Ipv4Repr};

    fn ping(src: Ipv4Address, dst: Ipv4Address, seq: u16) -> Vec<u8> {
        let icmp = Icmpv4Repr::EchoRequest {
            ident: 0x1234,
            seq_no: seq,
            data: b"tunhost replay",
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0; ip.buffer_len() + icmp.buffer_len()];
        let mut p = Ipv4Packet::new_unchecked(&mut buf);
        ip.emit(&mut p, &smoltcp::phy::ChecksumCapabilities::default());
        icmp.emit(
            &mut Icmpv4Packet::new_unchecked(p.payload_mut()),
            &smoltcp::phy::ChecksumCapabilities::default(),
        );
        buf
    }

    fn packet(ms: u64, data: Vec<u8>) -> Packet {
        Packet {
            timestamp: std::time::Duration::from_millis(1_700_000_000_000 + ms),
            link: Link::Raw,
            original_len: data.len() as u32,
            data,
            direction: None,
        }
    }

    fn host() -> Config {
        Config {
            addrs: vec![IpCidr::new(Ipv4Address::new(192, 0, 2, 2).into(), 24)],
            ..Config::default()
        }
    }

    #[test]
    fn pings_are_answered_in_virtual_time_and_the_rest_is_counted() {
        let me = Ipv4Address::new(192, 0, 2, 2);
        let peer = Ipv4Address::new(192, 0, 2, 1);
        let other = Ipv4Address::new(192, 0, 2, 9);
        let mut cut = packet(3, ping(peer, me, 9));
        cut.original_len += 10;
        let capture = Capture {
            format: crate::pcap::Format::Pcap,
            damage: Damage::default(),
            packets: vec![
                packet(0, ping(peer, me, 1)),
                packet(1, ping(me, peer, 1)),
                packet(2, ping(peer, other, 1)),
                cut,
                packet(5_000, ping(peer, me, 2)),
                packet(5_001, vec![0x45, 0]),
            ],
        };
        let config = ReplayConfig {
            keep_output: true,
            ..ReplayConfig::new(host(), ServicesConfig::default())
        };
        let report = replay::<Vec<u8>>(&capture, &config, None).unwrap();
        let s = &report.summary;
        assert_eq!((s.read, s.fed, s.written), (6, 2, 2), "{s}");
        assert_eq!(s.written_by_protocol.icmp, 2);
        assert_eq!(s.ignored[&Ignored::FromHost], 1);
        assert_eq!(s.ignored[&Ignored::NotForHost], 1);
        assert_eq!(s.ignored[&Ignored::CutShort], 1);
        assert_eq!(s.ignored[&Ignored::Malformed], 1);
        // The replies carry the virtual time of the requests.
        assert_eq!(
            report.output[1].0,
            Instant::from_millis(1_700_000_005_000i64)
        );
        let text = s.to_string();
        assert!(text.contains("6 packets read, 2 fed to the host"), "{text}");
    }

    #[test]
    fn cooked_and_ethernet_captures_feed_an_ip_host() {
        let me = Ipv4Address::new(192, 0, 2, 2);
        let peer = Ipv4Address::new(192, 0, 2, 1);
        let ip = ping(peer, me, 1);
        // SLL: packet type, ARPHRD, address length, address (8), protocol.
        let mut sll = vec![0, 4, 0xff, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00];
        sll.extend(&ip);
        // SLL2: protocol, reserved, ifindex, ARPHRD, packet type, address length, address (8).
        let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 3, 0xff, 0xfe, 4, 0];
        sll2.extend([0; 8]);
        sll2.extend(&ip);
        // An Ethernet frame on an IP host: the IP packet inside is fed.
        let mut eth = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        eth.extend(&ip);
        // SLL with ARP: not IP.
        let mut arp = sll.clone();
        arp[14..16].copy_from_slice(&[0x08, 0x06]);
        let packets = [
            (Link::LinuxSll, sll),
            (Link::LinuxSll2, sll2),
            (Link::Raw, ip.clone()),
            (Link::LinuxSll, arp),
            (Link::Ethernet, eth),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (link, data))| Packet {
            link,
            ..packet(i as u64, data)
        })
        .collect();
        // An Ethernet packet that is not first: the replay is on an IP host.
        let capture = Capture {
            format: crate::pcap::Format::PcapNg,
            damage: Damage::default(),
            packets,
        };
        let r = replay::<Vec<u8>>(
            &capture,
            &ReplayConfig::new(host(), ServicesConfig::default()),
            None,
        )
        .unwrap();
        assert_eq!(r.medium, Medium::Ip);
        assert_eq!((r.summary.fed, r.summary.written), (4, 4), "{}", r.summary);
        assert_eq!(r.summary.ignored[&Ignored::NotIp], 1);
    }

    #[test]
    fn same_input_same_seed_same_bytes() {
        let me = Ipv4Address::new(192, 0, 2, 2);
        let peer = Ipv4Address::new(192, 0, 2, 1);
        let capture = Capture {
            format: crate::pcap::Format::Pcap,
            damage: Damage::default(),
            packets: (0..5)
                .map(|i| packet(i * 100, ping(peer, me, i as u16)))
                .collect(),
        };
        let run = |out: &mut Vec<u8>| {
            let trace = TraceConfig {
                timestamps: crate::pcap::Timestamps::Clock,
                ..TraceConfig::new("replay", "out")
            };
            let cfg = ReplayConfig::new(host(), ServicesConfig::default());
            let r = replay(&capture, &cfg, Some((out, trace))).unwrap();
            assert_eq!(r.trace.unwrap().outbound, 5);
            r
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let ra = run(&mut a);
        let rb = run(&mut b);
        assert_eq!(ra.summary, rb.summary);
        assert!(a.len() > 5 * 60);
        assert_eq!(a, b);
    }

    #[test]
    fn link_headers_are_taken_off() {
        let ip4 = ping(
            Ipv4Address::new(192, 0, 2, 1),
            Ipv4Address::new(192, 0, 2, 2),
            1,
        );
        let mut ip6 = vec![0x60, 0, 0, 0, 0, 0, 58, 64];
        ip6.extend([0x20, 0x01, 0x0d, 0xb8].iter().chain(&[0; 12]));
        ip6.extend([0x20, 0x01, 0x0d, 0xb8].iter().chain(&[0; 11]).chain(&[2]));
        let cases: [(Link, &[u8], &[u8], u16); 11] = [
            (Link::Null, &[2, 0, 0, 0], &ip4, ETHERTYPE_IPV4),
            (Link::Null, &[0, 0, 0, 2], &ip4, ETHERTYPE_IPV4),
            // AF_INET6 as FreeBSD (28) and macOS (30) number it.
            (Link::Null, &[28, 0, 0, 0], &ip6, ETHERTYPE_IPV6),
            (Link::Loop, &[0, 0, 0, 30], &ip6, ETHERTYPE_IPV6),
            (Link::Ppp, &[0xff, 0x03, 0x00, 0x21], &ip4, ETHERTYPE_IPV4),
            // Address and control left out, the protocol compressed to one byte.
            (Link::Ppp, &[0x21], &ip4, ETHERTYPE_IPV4),
            (Link::Ppp, &[0x00, 0x57], &ip6, ETHERTYPE_IPV6),
            // An 802.1ad tag, an 802.1Q tag, then IPv4.
            (
                Link::Ethernet,
                &[
                    2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0xa8, 0, 1, 0x81, 0, 0, 2, 8, 0,
                ],
                &ip4,
                ETHERTYPE_IPV4,
            ),
            (
                Link::CiscoHdlc,
                &[0x0f, 0x00, 0x08, 0x00],
                &ip4,
                ETHERTYPE_IPV4,
            ),
            (Link::Slip, &[0; 16], &ip4, ETHERTYPE_IPV4),
            // Two MPLS labels, the second the bottom of the stack.
            (
                Link::Ethernet,
                &[
                    2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0x47, 0, 1, 0, 64, 0, 2, 1, 64,
                ],
                &ip4,
                ETHERTYPE_IPV4,
            ),
        ];
        for (link, header, ip, ethertype) in cases {
            let data = [header, ip].concat();
            let d = decode(link, &data).expect("decodes");
            assert_eq!((d.ethertype, d.l3), (ethertype, ip), "{link:?} {header:?}");
            assert!(d.header_ips().is_some(), "{link:?} {header:?}");
        }
        // Cut short: the addresses come from the header alone.
        let d = decode(Link::Raw, &ip4[..20]).unwrap();
        assert!(d.ips().is_none());
        assert_eq!(
            d.header_ips().map(|(_, dst)| dst),
            Some(Ipv4Address::new(192, 0, 2, 2).into())
        );
    }

    #[test]
    fn with_nothing_to_learn_an_ethernet_replay_has_a_mac_of_its_own() {
        let me = Ipv4Address::new(192, 0, 2, 2);
        let peer = Ipv4Address::new(192, 0, 2, 1);
        // A ping to the host's address in a multicast frame, and a frame "from" the host whose
        // source MAC is a multicast one: neither gives the host's MAC.
        let to_other = [
            &[1, 0, 0x5e, 0, 0, 9, 2, 0, 0, 0, 0, 1, 8, 0][..],
            &ping(peer, me, 1),
        ]
        .concat();
        let multicast = [
            &[2, 0, 0, 0, 0, 1, 1, 0, 0x5e, 0, 0, 1, 8, 0][..],
            &ping(me, peer, 1),
        ]
        .concat();
        let capture = Capture {
            format: crate::pcap::Format::Pcap,
            damage: Damage::default(),
            packets: [to_other, multicast]
                .into_iter()
                .enumerate()
                .map(|(i, data)| Packet {
                    link: Link::Ethernet,
                    ..packet(i as u64, data)
                })
                .collect(),
        };
        let r = replay::<Vec<u8>>(
            &capture,
            &ReplayConfig::new(host(), ServicesConfig::default()),
            None,
        )
        .unwrap();
        assert_eq!((r.mac, r.mac_origin), (Some(OWN_MAC), Some(MacOrigin::Own)));
        assert_eq!(r.summary.fed, 1, "{}", r.summary);
        assert_eq!(r.summary.ignored[&Ignored::NotForHost], 1, "{}", r.summary);
        assert_eq!(r.summary.addressed, 1);
        assert!(
            r.summary.destinations.is_empty(),
            "some packet is for the host"
        );
    }
}

//! A filter in front of smoltcp, for what smoltcp 0.14 gets wrong or does not limit.
//!
//! [`Guard`] wraps the host's device; every packet read goes through [`admits`] before
//! smoltcp sees it. A packet it refuses is handed to smoltcp as an empty buffer, which smoltcp
//! drops as malformed (a `phy::RxToken` must call its consumer, so this is how a wrapper drops),
//! and is counted in [`GuardStats`]. On the way out, the ICMP and ICMPv6 errors smoltcp sends
//! in answer to a packet pass a token bucket ([`ICMP_ERROR_BURST`], [`ICMP_ERROR_INTERVAL`]).
//!
//! Checked now:
//! - **IPv6 destination.** smoltcp's `has_solicited_node` compares only the last two octets of a
//!   destination with the host's address and never checks the `ff02::1:ff00:0/104` prefix, so
//!   any unicast destination ending like one of the host's addresses (`2001:0:d00:b800::2` for a
//!   host at `2001:db8::2`) is accepted as "our multicast group": the host then answers packets
//!   meant for others, from their address. Found by the `ingress_ip` fuzz target. The guard
//!   admits an IPv6 packet only if its destination is one of the host's addresses, all-nodes
//!   (`ff02::1`), or the solicited-node group of one of the host's addresses (RFC 4291 2.7.1).
//!   Upstream fix needed: check `addr.is_solicited_node_multicast()` and compare the low 24 bits.
//! - **TCP to a broadcast or multicast IPv4 address.** smoltcp accepts them (for UDP's sake) and
//!   answers a segment to `255.255.255.255` or the subnet's broadcast with an RST *from* that
//!   address. RFC 1122 4.2.3.10: such segments must be silently discarded. Found by the
//!   `ingress_ip` fuzz target. Upstream fix needed: drop TCP with a non-unicast destination in
//!   `process_tcp`.
//! - **ICMP echo to a broadcast or multicast IPv4 address.** smoltcp answers an echo request to
//!   `255.255.255.255` or the subnet's broadcast: one packet from anyone makes every host on the
//!   link answer (a "smurf" amplifier). Linux ignores them by default
//!   (`net.ipv4.icmp_echo_ignore_broadcasts=1`); so does the guard, and with them every later
//!   fragment of an ICMP datagram to such an address. IPv6 echo to a multicast group the host
//!   is in (`ff02::1`) is still answered, as Linux does by default
//!   (`net.ipv6.icmp.echo_ignore_multicast=0`).
//! - **Oversized IPv4 fragments.** A fragment whose offset plus length reaches past the
//!   65,535 bytes a datagram can have (RFC 791; the "ping of death") is dropped, as Linux does:
//!   smoltcp would grow a reassembly buffer for it up to 128 KiB. With it, each reassembly
//!   buffer stays under 64 KiB.
//! - **IPv6 fragments**: smoltcp 0.14 has no IPv6 reassembly; the guard puts datagrams back
//!   together ([`super::reassembly6`]) and smoltcp sees each whole, once.
//! - **Loopback sources.** A packet from `127.0.0.0/8` or `::1` cannot come from another node
//!   (RFC 1122 3.2.1.3, RFC 4291 2.5.3); Linux drops such "martians", smoltcp answered them (and
//!   the kernel then dropped the answer to `::1`). The guard drops them (unless the host itself
//!   has a loopback address, as on smoltcp's `Loopback` device).
//! - **ICMP and ICMPv6 errors out** (destination or port unreachable, time exceeded, parameter
//!   problem; RFC 1812 4.3.2.8 and RFC 4443 2.4(f) ask for a limit): smoltcp sends one for every
//!   datagram to a closed port. The guard lets [`ICMP_ERROR_BURST`] through at once and then one
//!   per [`ICMP_ERROR_INTERVAL`], for the whole host, on the host's clock; the rest are dropped
//!   and counted. "Fragmentation needed" and "packet too big" are not limited (path MTU
//!   discovery needs them), as in Linux. smoltcp sends ICMP errors only in answer to a packet,
//!   with the transmit token that comes with the packet's receive token, so only that token is
//!   filtered: it writes the reply into a scratch buffer first, and copies it to the device if
//!   it may go. The sockets' own traffic (`Device::transmit`) is untouched.

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpCidr, Ipv4Address, Ipv6Address};

use super::ratelimit::TokenBucket;
use super::reassembly6::{Reassembler6, Verdict};

/// ICMP and ICMPv6 errors the host sends at once before the limit sets in (Linux's
/// per-destination burst; it answers 200 datagrams to a closed port with 6).
pub const ICMP_ERROR_BURST: u32 = 6;
/// After the burst, one ICMP or ICMPv6 error per this interval (10 a second), for the whole
/// host.
pub const ICMP_ERROR_INTERVAL: Duration = Duration::from_millis(100);

/// The largest IPv4 datagram (RFC 791): no fragment may reach past it.
const IPV4_MAX_DATAGRAM: usize = 65_535;

/// Packets the guard refused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GuardStats {
    /// IPv6 packets whose destination is not the host's.
    pub ipv6_not_for_host: u64,
    /// TCP segments to a broadcast or multicast IPv4 address.
    pub tcp_not_unicast: u64,
    /// ICMP echo requests (and later fragments of ICMP datagrams) to a broadcast or multicast
    /// IPv4 address.
    pub echo_not_unicast: u64,
    /// IPv4 fragments that reach past 65,535 bytes.
    pub oversized_fragments: u64,
    /// Packets from a loopback address (`127.0.0.0/8`, `::1`), which cannot come from outside.
    pub loopback_source: u64,
    /// ICMP and ICMPv6 errors not sent: the rate limit.
    pub icmp_errors_limited: u64,
    /// IPv6 datagrams put back together from fragments (see [`super::reassembly6`]).
    pub ipv6_reassembled: u64,
    /// IPv6 fragments dropped: overlapping, of a bad length, past 65,535 bytes, or no slot.
    pub ipv6_fragments_dropped: u64,
    /// IPv6 datagrams dropped unfinished when their reassembly time ran out.
    pub ipv6_reassembly_timeouts: u64,
}

/// Why the guard refused a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An IPv6 packet whose destination is not the host's.
    Ipv6NotForHost,
    /// A TCP segment to a broadcast or multicast IPv4 address.
    TcpNotUnicast,
    /// An ICMP echo request (or a later fragment of an ICMP datagram) to a broadcast or
    /// multicast IPv4 address.
    EchoNotUnicast,
    /// An IPv4 fragment that reaches past 65,535 bytes.
    OversizedFragment,
    /// A packet whose source is a loopback address.
    LoopbackSource,
}

/// The host's device behind the filter.
#[derive(Debug)]
pub struct Guard<D> {
    inner: D,
    medium: Medium,
    addrs: Vec<IpCidr>,
    stats: GuardStats,
    limit: ErrorLimit,
    reassembly: Reassembler6,
}

/// The egress side: the ICMP error bucket and the scratch buffer replies are written to.
#[derive(Debug)]
struct ErrorLimit {
    bucket: TokenBucket,
    scratch: Vec<u8>,
    limited: u64,
}

impl<D: Device> Guard<D> {
    /// Put `inner` behind the filter, with no host addresses yet (see [`Guard::set_addrs`]).
    pub fn new(inner: D) -> Guard<D> {
        let medium = inner.capabilities().medium;
        Guard {
            inner,
            medium,
            addrs: Vec::new(),
            stats: GuardStats::default(),
            limit: ErrorLimit {
                bucket: TokenBucket::new(ICMP_ERROR_BURST, ICMP_ERROR_INTERVAL),
                scratch: Vec::new(),
                limited: 0,
            },
            reassembly: Reassembler6::new(),
        }
    }

    /// Keep the host's addresses in step with the interface's (no allocation once sized).
    pub fn set_addrs(&mut self, addrs: &[IpCidr]) {
        if self.addrs != addrs {
            self.addrs.clear();
            self.addrs.extend_from_slice(addrs);
        }
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The wrapped device, mutably.
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Unwrap the device.
    pub fn into_inner(self) -> D {
        self.inner
    }

    /// Packets refused so far.
    pub fn stats(&self) -> GuardStats {
        let r = self.reassembly.stats();
        GuardStats {
            icmp_errors_limited: self.limit.limited,
            ipv6_reassembled: r.reassembled,
            ipv6_fragments_dropped: r.dropped,
            ipv6_reassembly_timeouts: r.timed_out,
            ..self.stats
        }
    }
}

/// Whether the host should see `packet` (as read from a device of `medium`).
pub fn admits(medium: Medium, packet: &[u8], addrs: &[IpCidr]) -> bool {
    check(medium, packet, addrs).is_ok()
}

/// The IP packet in `packet` (as read from or written to a device of `medium`), if it is one.
fn ip_packet(medium: Medium, packet: &[u8]) -> Option<&[u8]> {
    match medium {
        Medium::Ethernet => match packet.get(12..14) {
            Some([0x08, 0x00] | [0x86, 0xdd]) => Some(&packet[14..]),
            _ => None,
        },
        _ => Some(packet),
    }
}

/// `Ok` if the host should see `packet`, or why not. Anything the guard does not look at (ARP,
/// short or malformed packets) is left to smoltcp.
pub fn check(medium: Medium, packet: &[u8], addrs: &[IpCidr]) -> Result<(), Refusal> {
    let Some(ip) = ip_packet(medium, packet) else {
        return Ok(());
    };
    match ip.first().map(|b| b >> 4) {
        Some(4) => check_ipv4(ip, addrs),
        Some(6) => check_ipv6(ip, addrs),
        _ => Ok(()),
    }
}

/// Whether the host itself has a loopback address (a host on smoltcp's `Loopback` device, in
/// tests): then loopback sources are its own.
fn on_loopback(addrs: &[IpCidr]) -> bool {
    addrs
        .iter()
        .any(|a| std::net::IpAddr::from(a.address()).is_loopback())
}

fn check_ipv4(ip: &[u8], addrs: &[IpCidr]) -> Result<(), Refusal> {
    if ip.len() < 20 {
        return Ok(()); // too short: smoltcp drops it as malformed
    }
    if ip[12] == 127 && !on_loopback(addrs) {
        return Err(Refusal::LoopbackSource);
    }
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    let (more_frags, offset) = (frag & 0x2000 != 0, usize::from(frag & 0x1fff) * 8);
    if (more_frags || offset != 0) && offset + total_len > IPV4_MAX_DATAGRAM {
        return Err(Refusal::OversizedFragment);
    }
    let proto = ip[9];
    if proto != 6 && proto != 1 {
        return Ok(());
    }
    let dst = Ipv4Address::new(ip[16], ip[17], ip[18], ip[19]);
    let subnet_broadcast = addrs.iter().any(|c| match c {
        IpCidr::Ipv4(c) => c.broadcast() == Some(dst),
        _ => false,
    });
    if !(dst.is_broadcast() || dst.is_multicast() || dst.is_unspecified() || subnet_broadcast) {
        return Ok(());
    }
    match proto {
        6 => Err(Refusal::TcpNotUnicast),
        // Echo request (8), or a later fragment, whose type cannot be seen.
        _ if offset != 0 || ip.get(header_len) == Some(&8) => Err(Refusal::EchoNotUnicast),
        _ => Ok(()),
    }
}

fn check_ipv6(ip: &[u8], addrs: &[IpCidr]) -> Result<(), Refusal> {
    let Some(dst) = ip.get(24..40) else {
        return Ok(()); // too short: smoltcp drops it as malformed
    };
    if ip[8..24] == Ipv6Address::LOCALHOST.octets() && !on_loopback(addrs) {
        return Err(Refusal::LoopbackSource);
    }
    let mut octets = [0u8; 16];
    octets.copy_from_slice(dst);
    let dst = Ipv6Address::from(octets);
    if dst == Ipv6Address::new(0xff02, 0, 0, 0, 0, 0, 0, 1) {
        return Ok(());
    }
    let solicited_prefix = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff];
    let ours = addrs.iter().any(|c| match c.address() {
        IpAddress::Ipv6(a) => {
            a == dst || (octets[..13] == solicited_prefix && octets[13..] == a.octets()[13..])
        }
        _ => false,
    });
    if ours {
        Ok(())
    } else {
        Err(Refusal::Ipv6NotForHost)
    }
}

/// Whether `packet` (as written to a device of `medium`) is an ICMP or ICMPv6 error that the
/// rate limit applies to: destination unreachable (but "fragmentation needed"), source quench,
/// time exceeded, parameter problem; for ICMPv6 the same but "packet too big".
pub fn is_limited_icmp_error(medium: Medium, packet: &[u8]) -> bool {
    let Some(ip) = ip_packet(medium, packet) else {
        return false;
    };
    match ip.first().map(|b| b >> 4) {
        Some(4) => {
            let header_len = usize::from(ip[0] & 0x0f) * 4;
            let first_fragment = ip.get(6..8).is_some_and(|f| f[0] & 0x1f == 0 && f[1] == 0);
            let icmp = ip.get(9) == Some(&1) && first_fragment;
            match (icmp, ip.get(header_len), ip.get(header_len + 1)) {
                (true, Some(3), Some(&code)) => code != 4,
                (true, Some(4 | 11 | 12), _) => true,
                _ => false,
            }
        }
        // smoltcp puts no extension header in front of the ICMPv6 errors it sends.
        Some(6) => ip.get(6) == Some(&58) && matches!(ip.get(40), Some(1 | 3 | 4)),
        _ => false,
    }
}

impl<D: Device> Device for Guard<D> {
    type RxToken<'a>
        = RxToken<'a, D::RxToken<'a>>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, D::TxToken<'a>>
    where
        Self: 'a;

    fn receive(&mut self, now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (rx, tx) = self.inner.receive(now)?;
        let rx = RxToken {
            inner: rx,
            medium: self.medium,
            addrs: &self.addrs,
            stats: &mut self.stats,
            reassembly: (now, &mut self.reassembly),
        };
        let tx = TxToken {
            inner: tx,
            medium: self.medium,
            reply: Some((now, &mut self.limit)),
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, now: Instant) -> Option<Self::TxToken<'_>> {
        let tx = self.inner.transmit(now)?;
        Some(TxToken {
            inner: tx,
            medium: self.medium,
            reply: None,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// The inner device's receive token, checked by the filter when consumed.
pub struct RxToken<'a, T> {
    inner: T,
    medium: Medium,
    addrs: &'a [IpCidr],
    stats: &'a mut GuardStats,
    reassembly: (Instant, &'a mut Reassembler6),
}

impl<T: phy::RxToken> phy::RxToken for RxToken<'_, T> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let RxToken {
            inner,
            medium,
            addrs,
            stats,
            reassembly: (now, reassembly),
        } = self;
        inner.consume(|packet| match check(medium, packet, addrs) {
            Ok(()) => {
                let link = match medium {
                    Medium::Ethernet => 14,
                    _ => 0,
                };
                let version = ip_packet(medium, packet)
                    .and_then(|ip| ip.first())
                    .map(|b| b >> 4);
                if version != Some(6) {
                    return f(packet);
                }
                match reassembly.push(now, link, packet) {
                    Verdict::NotFragment => f(packet),
                    Verdict::Whole(datagram) => f(datagram),
                    // Held for the rest, or dropped: smoltcp sees nothing.
                    Verdict::Held | Verdict::Dropped(_) => f(&[]),
                }
            }
            Err(why) => {
                match why {
                    Refusal::Ipv6NotForHost => stats.ipv6_not_for_host += 1,
                    Refusal::TcpNotUnicast => stats.tcp_not_unicast += 1,
                    Refusal::EchoNotUnicast => stats.echo_not_unicast += 1,
                    Refusal::OversizedFragment => stats.oversized_fragments += 1,
                    Refusal::LoopbackSource => stats.loopback_source += 1,
                }
                f(&[])
            }
        })
    }

    fn meta(&self) -> phy::PacketMeta {
        self.inner.meta()
    }
}

/// The inner device's transmit token. The one that comes with a received packet carries
/// smoltcp's answer to it (the only way ICMP errors go out): the answer is written to a scratch
/// buffer, and goes to the device unless it is an ICMP error beyond the rate limit. The one
/// from [`Device::transmit`] (the sockets' traffic) passes straight through.
pub struct TxToken<'a, T> {
    inner: T,
    medium: Medium,
    /// For an answer: the time it is sent at and the limit.
    reply: Option<(Instant, &'a mut ErrorLimit)>,
}

impl<T: phy::TxToken> phy::TxToken for TxToken<'_, T> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let TxToken {
            inner,
            medium,
            reply,
        } = self;
        let Some((now, limit)) = reply else {
            return inner.consume(len, f);
        };
        limit.scratch.clear();
        limit.scratch.resize(len, 0);
        let r = f(&mut limit.scratch);
        if is_limited_icmp_error(medium, &limit.scratch) && !limit.bucket.take(now) {
            limit.limited += 1;
            return r;
        }
        inner.consume(len, |buf| buf.copy_from_slice(&limit.scratch));
        r
    }

    fn set_meta(&mut self, meta: phy::PacketMeta) {
        self.inner.set_meta(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(dst: &str) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        let d: Ipv6Address = dst.parse().unwrap();
        p[24..40].copy_from_slice(&d.octets());
        p
    }

    #[test]
    fn ipv6_destinations() {
        let addrs: Vec<IpCidr> = vec![
            "192.0.2.2/24".parse().unwrap(),
            "2001:db8::2/64".parse().unwrap(),
        ];
        let ok = |d: &str| admits(Medium::Ip, &v6(d), &addrs);
        assert!(ok("2001:db8::2"));
        assert!(ok("ff02::1"));
        assert!(ok("ff02::1:ff00:2"));
        // The smoltcp bug: same last two octets, not the host.
        assert!(!ok("2001:0:d00:b800::2"));
        assert!(!ok("2001:db8::3"));
        assert!(!ok("ff02::1:ff01:2"));
        assert!(!ok("ff05::2"));
        // IPv4 and short packets are smoltcp's business.
        assert!(admits(Medium::Ip, &[0x45, 0, 0, 20], &addrs));
        assert!(admits(Medium::Ip, &[0x60, 0], &addrs));
        // Ethernet: only IPv6 frames are looked into.
        let mut frame = vec![0u8; 14];
        frame[12..14].copy_from_slice(&[0x86, 0xdd]);
        frame.extend(v6("2001:0:d00:b800::2"));
        assert!(!admits(Medium::Ethernet, &frame, &addrs));
        frame[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(admits(Medium::Ethernet, &frame, &addrs));
    }

    #[test]
    fn loopback_sources_are_refused() {
        let addrs: Vec<IpCidr> = vec![
            "192.0.2.2/24".parse().unwrap(),
            "2001:db8::2/64".parse().unwrap(),
        ];
        let mut p6 = v6("2001:db8::2");
        assert_eq!(check(Medium::Ip, &p6, &addrs), Ok(()));
        p6[8..24].copy_from_slice(&Ipv6Address::LOCALHOST.octets());
        assert_eq!(check(Medium::Ip, &p6, &addrs), Err(Refusal::LoopbackSource));
        let mut p4 = vec![0u8; 20];
        p4[0] = 0x45;
        p4[9] = 17;
        p4[12..16].copy_from_slice(&[127, 0, 0, 1]);
        p4[16..20].copy_from_slice(&[192, 0, 2, 2]);
        assert_eq!(check(Medium::Ip, &p4, &addrs), Err(Refusal::LoopbackSource));
        p4[12] = 192;
        assert_eq!(check(Medium::Ip, &p4, &addrs), Ok(()));
    }

    #[test]
    fn tcp_to_broadcast_or_multicast() {
        let addrs: Vec<IpCidr> = vec!["192.0.2.2/24".parse().unwrap()];
        let v4 = |proto: u8, dst: [u8; 4]| {
            let mut p = vec![0u8; 20];
            p[0] = 0x45;
            p[9] = proto;
            p[16..20].copy_from_slice(&dst);
            admits(Medium::Ip, &p, &addrs)
        };
        assert!(v4(6, [192, 0, 2, 2]));
        assert!(!v4(6, [255, 255, 255, 255]));
        assert!(!v4(6, [192, 0, 2, 255]));
        assert!(!v4(6, [224, 0, 0, 1]));
        assert!(!v4(6, [0, 0, 0, 0]));
        // UDP to broadcast is smoltcp's business (DHCP).
        assert!(v4(17, [255, 255, 255, 255]));
    }

    fn v4_packet(proto: u8, dst: [u8; 4], frag: u16, total_len: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&total_len.to_be_bytes());
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        p[9] = proto;
        p[16..20].copy_from_slice(&dst);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn echo_to_broadcast_or_multicast() {
        let addrs: Vec<IpCidr> = vec!["192.0.2.2/24".parse().unwrap()];
        let why = |dst: [u8; 4], frag: u16, icmp_type: u8| {
            check(
                Medium::Ip,
                &v4_packet(1, dst, frag, 28, &[icmp_type, 0, 0, 0, 0, 0, 0, 0]),
                &addrs,
            )
        };
        let refused = Err(Refusal::EchoNotUnicast);
        assert_eq!(why([192, 0, 2, 2], 0, 8), Ok(()));
        assert_eq!(why([192, 0, 2, 255], 0, 8), refused);
        assert_eq!(why([255, 255, 255, 255], 0, 8), refused);
        assert_eq!(why([224, 0, 0, 1], 0, 8), refused);
        // The first fragment of a big echo request, and any later fragment (type unseen).
        assert_eq!(why([192, 0, 2, 255], 0x2000, 8), refused);
        assert_eq!(why([192, 0, 2, 255], 185, 0), refused);
        // Other ICMP to broadcast (an echo reply, say) is smoltcp's business.
        assert_eq!(why([192, 0, 2, 255], 0, 0), Ok(()));
        // So is IPv6 echo to all-nodes, which Linux answers too.
        assert!(admits(Medium::Ip, &v6("ff02::1"), &addrs));
    }

    #[test]
    fn oversized_fragments() {
        let addrs: Vec<IpCidr> = vec!["192.0.2.2/24".parse().unwrap()];
        let frag = |more: bool, offset: usize, total_len: u16| {
            let f = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
            check(
                Medium::Ip,
                &v4_packet(17, [192, 0, 2, 2], f, total_len, &[]),
                &addrs,
            )
        };
        // The last fragment of the largest datagram: a 20-byte header and 65,515 bytes of data,
        // the last 3 at offset 65,512.
        assert_eq!(frag(false, 65_512, 23), Ok(()));
        assert_eq!(frag(false, 65_512, 24), Err(Refusal::OversizedFragment));
        assert_eq!(frag(true, 65_000, 1500), Err(Refusal::OversizedFragment));
        assert_eq!(frag(true, 0, 1500), Ok(()));
        // Not a fragment: the total length alone cannot exceed 65,535.
        assert_eq!(frag(false, 0, 65_535), Ok(()));
    }

    #[test]
    fn which_icmp_errors_are_limited() {
        let icmp = |t: u8, code: u8| v4_packet(1, [192, 0, 2, 1], 0, 28, &[t, code, 0, 0]);
        let limited = |p: &[u8]| is_limited_icmp_error(Medium::Ip, p);
        assert!(limited(&icmp(3, 3)), "port unreachable");
        assert!(limited(&icmp(3, 2)), "protocol unreachable");
        assert!(limited(&icmp(11, 0)));
        assert!(limited(&icmp(12, 0)));
        assert!(
            !limited(&icmp(3, 4)),
            "fragmentation needed: path MTU discovery"
        );
        assert!(!limited(&icmp(0, 0)), "echo reply");
        assert!(!limited(&v4_packet(
            17,
            [192, 0, 2, 1],
            0,
            28,
            &[3, 3, 0, 0]
        )));
        let icmp6 = |t: u8| {
            let mut p = v6("2001:db8::1");
            p[6] = 58;
            p.extend_from_slice(&[t, 0, 0, 0]);
            p
        };
        assert!(limited(&icmp6(1)), "destination unreachable");
        assert!(limited(&icmp6(4)), "parameter problem");
        assert!(!limited(&icmp6(2)), "packet too big");
        assert!(!limited(&icmp6(129)), "echo reply");
        assert!(!limited(&icmp6(136)), "neighbor advertisement");
        // Ethernet: the IP packet after the header.
        let mut frame = vec![0u8; 14];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame.extend(icmp(3, 3));
        assert!(is_limited_icmp_error(Medium::Ethernet, &frame));
    }

    /// 200 datagrams to a closed port of a host on the loopback device, which answers itself:
    /// 6 port unreachables go out, 194 are dropped; after a second (virtual) the burst again.
    #[test]
    fn port_unreachables_are_rate_limited_on_the_host_clock() {
        use smoltcp::socket::udp;
        let (mut host, clock) = crate::host::loopback_host(1);
        let buffer =
            || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 256], vec![0u8; 256 * 8]);
        let handle = host.sockets_mut().add(udp::Socket::new(buffer(), buffer()));
        host.sockets_mut()
            .get_mut::<udp::Socket>(handle)
            .bind(4000)
            .unwrap();
        let burst = |host: &mut crate::host::Host<_, _>| {
            let socket = host.sockets_mut().get_mut::<udp::Socket>(handle);
            for _ in 0..200 {
                socket
                    .send_slice(b"x", (IpAddress::v4(127, 0, 0, 1), 9))
                    .unwrap();
            }
            for _ in 0..100 {
                host.poll();
            }
        };
        burst(&mut host);
        let limited = host.guard_stats().icmp_errors_limited;
        assert_eq!(limited, 200 - u64::from(ICMP_ERROR_BURST));
        clock.advance(Duration::from_millis(50));
        burst(&mut host);
        assert_eq!(
            host.guard_stats().icmp_errors_limited,
            limited + 200,
            "none before 100 ms"
        );
        clock.advance(Duration::from_secs(1));
        burst(&mut host);
        assert_eq!(
            host.guard_stats().icmp_errors_limited,
            limited + 200 + 200 - u64::from(ICMP_ERROR_BURST),
            "a second later, the burst again"
        );
    }
}

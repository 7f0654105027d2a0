//! An ingress filter in front of smoltcp, for what smoltcp 0.14 gets wrong.
//!
//! [`Guard`] wraps the host's device; every packet read goes through [`admits`] before
//! smoltcp sees it. A packet it refuses is handed to smoltcp as an empty buffer, which smoltcp
//! drops as malformed (a `phy::RxToken` must call its consumer, so this is how a wrapper drops),
//! and is counted in [`GuardStats`].
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

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpCidr, Ipv4Address, Ipv6Address};

/// Packets the guard refused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GuardStats {
    /// IPv6 packets whose destination is not the host's.
    pub ipv6_not_for_host: u64,
    /// TCP segments to a broadcast or multicast IPv4 address.
    pub tcp_not_unicast: u64,
}

/// Why the guard refused a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An IPv6 packet whose destination is not the host's.
    Ipv6NotForHost,
    /// A TCP segment to a broadcast or multicast IPv4 address.
    TcpNotUnicast,
}

/// The host's device behind the ingress filter.
#[derive(Debug)]
pub struct Guard<D> {
    inner: D,
    medium: Medium,
    addrs: Vec<IpCidr>,
    stats: GuardStats,
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
        self.stats
    }
}

/// Whether the host should see `packet` (as read from a device of `medium`).
pub fn admits(medium: Medium, packet: &[u8], addrs: &[IpCidr]) -> bool {
    check(medium, packet, addrs).is_ok()
}

/// `Ok` if the host should see `packet`, or why not. Anything the guard does not look at (ARP,
/// short or malformed packets) is left to smoltcp.
pub fn check(medium: Medium, packet: &[u8], addrs: &[IpCidr]) -> Result<(), Refusal> {
    let ip = match medium {
        Medium::Ethernet => match packet.get(12..14) {
            Some([0x08, 0x00] | [0x86, 0xdd]) => &packet[14..],
            _ => return Ok(()),
        },
        _ => packet,
    };
    match ip.first().map(|b| b >> 4) {
        Some(4) => check_ipv4(ip, addrs),
        Some(6) => check_ipv6(ip, addrs),
        _ => Ok(()),
    }
}

fn check_ipv4(ip: &[u8], addrs: &[IpCidr]) -> Result<(), Refusal> {
    let (Some(&proto), Some(dst)) = (ip.get(9), ip.get(16..20)) else {
        return Ok(());
    };
    if proto != 6 {
        return Ok(());
    }
    let dst = Ipv4Address::new(dst[0], dst[1], dst[2], dst[3]);
    let subnet_broadcast = addrs.iter().any(|c| match c {
        IpCidr::Ipv4(c) => c.broadcast() == Some(dst),
        _ => false,
    });
    if dst.is_broadcast() || dst.is_multicast() || dst.is_unspecified() || subnet_broadcast {
        return Err(Refusal::TcpNotUnicast);
    }
    Ok(())
}

fn check_ipv6(ip: &[u8], addrs: &[IpCidr]) -> Result<(), Refusal> {
    let Some(dst) = ip.get(24..40) else {
        return Ok(()); // too short: smoltcp drops it as malformed
    };
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

impl<D: Device> Device for Guard<D> {
    type RxToken<'a>
        = RxToken<'a, D::RxToken<'a>>
    where
        Self: 'a;
    type TxToken<'a>
        = D::TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (rx, tx) = self.inner.receive(now)?;
        let rx = RxToken {
            inner: rx,
            medium: self.medium,
            addrs: &self.addrs,
            stats: &mut self.stats,
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, now: Instant) -> Option<Self::TxToken<'_>> {
        self.inner.transmit(now)
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
}

impl<T: phy::RxToken> phy::RxToken for RxToken<'_, T> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let RxToken {
            inner,
            medium,
            addrs,
            stats,
        } = self;
        inner.consume(|packet| match check(medium, packet, addrs) {
            Ok(()) => f(packet),
            Err(why) => {
                match why {
                    Refusal::Ipv6NotForHost => stats.ipv6_not_for_host += 1,
                    Refusal::TcpNotUnicast => stats.tcp_not_unicast += 1,
                }
                f(&[])
            }
        })
    }

    fn meta(&self) -> phy::PacketMeta {
        self.inner.meta()
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
        // UDP and ICMP to broadcast are smoltcp's business (DHCP, broadcast ping).
        assert!(v4(17, [255, 255, 255, 255]));
        assert!(v4(1, [192, 0, 2, 255]));
    }
}

//! The `virtio_net_hdr` that a TUN/TAP device opened with `IFF_VNET_HDR` puts in front of every
//! packet, and the checksum work it lets the host skip.
//!
//! Pure functions over byte slices: no I/O, no allocation, never a panic on input.
//!
//! Supported:
//! - the 10-byte legacy header (`struct virtio_net_hdr`, native byte order as the tun driver uses
//!   it without `TUNSETVNETLE/BE`);
//! - receive: plain packets and TCP super-packets (`GSO_TCPV4`, `GSO_TCPV6`, up to 64 KiB) that
//!   the host takes whole, as one large segment. A TCP checksum is skipped only when the kernel
//!   vouches for it: `NEEDS_CSUM` (a local packet whose checksum the kernel never computed) or
//!   `DATA_VALID` (already verified). Any other TCP packet is verified here. For UDP and the rest,
//!   a `NEEDS_CSUM` checksum is completed here, and smoltcp verifies as usual;
//! - transmit: every TCP segment goes out with `NEEDS_CSUM` and the pseudo-header sum in its
//!   checksum field (the kernel finishes it), and segments larger than the MSS with `GSO_TCPV4/6`
//!   so that the kernel cuts them into MSS-sized segments.
//!
//! Not supported (dropped and counted on receive): UDP segmentation offload, unknown GSO types,
//! IPv4 fragments in GSO packets, IPv6 extension headers before TCP in GSO packets.

/// Length of `struct virtio_net_hdr`.
pub const HDR_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` holds only the
/// pseudo-header sum; whoever takes the packet must finish it (or not need it).
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified already.
pub const F_DATA_VALID: u8 = 2;

/// `VIRTIO_NET_HDR_GSO_NONE`: a packet of at most the MTU, not to be segmented.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`: an IPv4 TCP super-packet, cut at `gso_size`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP`: UDP fragmentation offload (refused: never asked for).
pub const GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`: an IPv6 TCP super-packet, cut at `gso_size`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN`: the super-packet carries ECN (a flag bit on `gso_type`).
pub const GSO_ECN: u8 = 0x80;

const PROTO_TCP: u8 = 6;
/// Offset of the checksum in a TCP header.
const TCP_CSUM_OFFSET: u16 = 16;

/// `struct virtio_net_hdr`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    /// [`F_NEEDS_CSUM`] and [`F_DATA_VALID`].
    pub flags: u8,
    /// One of the `GSO_*` types, maybe with [`GSO_ECN`].
    pub gso_type: u8,
    /// Length of the headers (link, IP, transport) of a super-packet.
    pub hdr_len: u16,
    /// Payload bytes per segment of a super-packet (the MSS).
    pub gso_size: u16,
    /// Where checksumming starts (the transport header), with [`F_NEEDS_CSUM`].
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
}

impl Header {
    /// Read a header from the first [`HDR_LEN`] bytes; `None` if `b` is shorter.
    pub fn parse(b: &[u8]) -> Option<Header> {
        let b = b.get(..HDR_LEN)?;
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(Header {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// Write the header into the first [`HDR_LEN`] bytes of `b` (which must be that long).
    pub fn emit(&self, b: &mut [u8]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }
}

/// Why a received packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxDrop {
    /// The virtio header contradicts the packet (or asks for something unsupported).
    Malformed,
    /// A TCP checksum the kernel did not vouch for is wrong.
    BadChecksum,
}

/// Where the transport header of an IP packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L4 {
    /// Whether the packet is IPv6 (else IPv4).
    pub v6: bool,
    /// Offset of the transport header in the buffer.
    pub start: usize,
    /// Length of the transport header and payload, from the IP header.
    pub len: usize,
    /// IPv4 protocol or IPv6 next header.
    pub proto: u8,
    /// Sum of the pseudo-header without the length (addresses and protocol), unfolded.
    pub pseudo: u64,
    /// An IPv4 fragment (no transport header of its own to speak of).
    pub fragment: bool,
}

/// Find the transport header of the IP packet at `l3` in `b`; `None` if it is not a well-formed
/// IPv4/IPv6 packet that fits `b`.
pub fn locate_l4(b: &[u8], l3: usize) -> Option<L4> {
    let ip = b.get(l3..)?;
    match ip.first()? >> 4 {
        4 => {
            if ip.len() < 20 {
                return None;
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            if ihl < 20 || total < ihl || total > ip.len() {
                return None;
            }
            let frag = u16::from_be_bytes([ip[6], ip[7]]);
            Some(L4 {
                v6: false,
                start: l3 + ihl,
                len: total - ihl,
                proto: ip[9],
                pseudo: sum_be(0, &ip[12..20]) + u64::from(ip[9]),
                fragment: frag & 0x3fff != 0,
            })
        }
        6 => {
            if ip.len() < 40 {
                return None;
            }
            let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if 40 + payload > ip.len() {
                return None;
            }
            Some(L4 {
                v6: true,
                start: l3 + 40,
                len: payload,
                proto: ip[6],
                pseudo: sum_be(0, &ip[8..40]) + u64::from(ip[6]),
                fragment: false,
            })
        }
        _ => None,
    }
}

/// Add `data` to a ones'-complement sum as big-endian 16-bit words (an odd last byte is padded
/// with zero). The sum is kept unfolded in 64 bits; fold it with [`fold`].
pub fn sum_be(mut sum: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // Add the two 32-bit halves: no overflow of 64 bits for any packet size we handle.
        sum += (w >> 32) + (w & 0xffff_ffff);
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        sum += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Fold an unfolded sum to 16 bits (not complemented).
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The Internet checksum (RFC 1071) of `data` on top of the unfolded sum `start` (a
/// pseudo-header's, or 0): the complement of the folded sum. Over data that holds its right
/// checksum it is 0.
pub fn checksum(start: u64, data: &[u8]) -> u16 {
    !fold(sum_be(start, data))
}

/// Link-layer offset of the IP header: 0 on TUN; on TAP 14 for an IPv4/IPv6 frame, `None` for
/// anything else (ARP, VLAN-tagged frames).
pub fn l3_offset(frame: &[u8], ethernet: bool) -> Option<usize> {
    if !ethernet {
        return Some(0);
    }
    match frame.get(12..14)? {
        [0x08, 0x00] | [0x86, 0xdd] => Some(14),
        _ => None,
    }
}

/// Check a received packet against its virtio header and make it ready for smoltcp, which
/// verifies every checksum except TCP's (the device's capabilities say so): TCP checksums are
/// verified here unless the kernel vouched for them; `NEEDS_CSUM` checksums of other protocols
/// are completed here so smoltcp's check passes.
pub fn rx_prepare(hdr: &Header, pkt: &mut [u8], ethernet: bool) -> Result<(), RxDrop> {
    let gso = hdr.gso_type & !GSO_ECN;
    if !matches!(gso, GSO_NONE | GSO_TCPV4 | GSO_TCPV6) {
        // GSO_UDP (UFO) and anything newer: not negotiated, so not expected.
        return Err(RxDrop::Malformed);
    }
    let needs_csum = hdr.flags & F_NEEDS_CSUM != 0;
    let l4 = l3_offset(pkt, ethernet).and_then(|l3| locate_l4(pkt, l3));
    let Some(l4) = l4 else {
        if gso != GSO_NONE {
            return Err(RxDrop::Malformed);
        }
        if needs_csum {
            // Not IP as we know it, yet a checksum to finish: do it where the header says.
            let end = pkt.len();
            return complete(hdr, pkt, end);
        }
        // smoltcp parses (and rejects) whatever this is.
        return Ok(());
    };
    let tcp = l4.proto == PROTO_TCP && !l4.fragment;
    match gso {
        GSO_TCPV4 if !tcp || l4.v6 => return Err(RxDrop::Malformed),
        GSO_TCPV6 if !tcp || !l4.v6 => return Err(RxDrop::Malformed),
        _ => {}
    }
    let end = l4.start + l4.len;
    if tcp {
        if needs_csum {
            // The kernel left the checksum to the device: it vouches for the data. The header
            // must at least point at the TCP checksum.
            if usize::from(hdr.csum_start) != l4.start || hdr.csum_offset != TCP_CSUM_OFFSET {
                return Err(RxDrop::Malformed);
            }
            return Ok(());
        }
        if hdr.flags & F_DATA_VALID != 0 {
            return Ok(());
        }
        // Nobody vouched: verify.
        let sum = sum_be(l4.pseudo + l4.len as u64, &pkt[l4.start..end]);
        if fold(sum) != 0xffff {
            return Err(RxDrop::BadChecksum);
        }
        return Ok(());
    }
    if needs_csum {
        return complete(hdr, pkt, end);
    }
    Ok(())
}

/// Finish a `NEEDS_CSUM` checksum in place: sum from `csum_start` to `end` (the field holds the
/// pseudo-header sum) and store the complement.
fn complete(hdr: &Header, pkt: &mut [u8], end: usize) -> Result<(), RxDrop> {
    let start = usize::from(hdr.csum_start);
    let field = start + usize::from(hdr.csum_offset);
    if start >= end || field + 2 > end || end > pkt.len() {
        return Err(RxDrop::Malformed);
    }
    let mut c = checksum(0, &pkt[start..end]);
    if c == 0 {
        // UDP's "no checksum" is 0; a computed 0 is sent as 0xffff (same value in ones'
        // complement), which every protocol accepts.
        c = 0xffff;
    }
    pkt[field..field + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// The header for a packet smoltcp emitted into `pkt`. A TCP segment (whose checksum smoltcp
/// left to the device) gets `NEEDS_CSUM` with the pseudo-header sum in its checksum field and,
/// if `gso_size` is given and the payload is larger, a GSO type so the kernel segments it. A TCP
/// packet larger than the IP `mtu` without a `gso_size` (a device wrapper that did not pass
/// smoltcp's packet metadata on) is segmented to fit the MTU. Every other packet is complete
/// already and gets an empty header.
pub fn tx_prepare(pkt: &mut [u8], ethernet: bool, gso_size: Option<u16>, mtu: usize) -> Header {
    let Some(l3) = l3_offset(pkt, ethernet) else {
        return Header::default();
    };
    let Some(l4) = locate_l4(pkt, l3) else {
        return Header::default();
    };
    if l4.proto != PROTO_TCP || l4.fragment || l4.len < 20 {
        return Header::default();
    }
    let (Ok(start), Ok(len)) = (u16::try_from(l4.start), u16::try_from(l4.len)) else {
        return Header::default();
    };
    let th_len = usize::from(pkt[l4.start + 12] >> 4) * 4;
    let field = l4.start + usize::from(TCP_CSUM_OFFSET);
    let partial = fold(l4.pseudo + u64::from(len));
    pkt[field..field + 2].copy_from_slice(&partial.to_be_bytes());
    let mut hdr = Header {
        flags: F_NEEDS_CSUM,
        csum_start: start,
        csum_offset: TCP_CSUM_OFFSET,
        ..Header::default()
    };
    let ip_header = l4.start - l3;
    let gso_size = gso_size.or_else(|| {
        let room = mtu.checked_sub(ip_header + th_len)?;
        (ip_header + l4.len > mtu)
            .then(|| u16::try_from(room).ok())
            .flatten()
    });
    if let Some(mss) = gso_size {
        let payload = l4.len.saturating_sub(th_len);
        if mss > 0 && payload > usize::from(mss) && th_len >= 20 && th_len <= l4.len {
            hdr.gso_type = if l4.v6 { GSO_TCPV6 } else { GSO_TCPV4 };
            hdr.gso_size = mss;
            hdr.hdr_len = start + th_len as u16;
        }
    }
    hdr
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr, TcpSeqNumber,
    };

    /// An IPv4 TCP packet with `payload`, checksums computed by smoltcp.
    fn tcp4(payload: &[u8]) -> Vec<u8> {
        let src = smoltcp::wire::Ipv4Address::new(192, 0, 2, 1);
        let dst = smoltcp::wire::Ipv4Address::new(192, 0, 2, 2);
        let tcp = TcpRepr {
            src_port: 40000,
            dst_port: 9,
            control: smoltcp::wire::TcpControl::Psh,
            seq_number: TcpSeqNumber(1),
            ack_number: Some(TcpSeqNumber(2)),
            window_len: 1000,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; ip.buffer_len() + tcp.buffer_len()];
        let caps = ChecksumCapabilities::default();
        let mut p = Ipv4Packet::new_unchecked(&mut buf);
        ip.emit(&mut p, &caps);
        let mut t = TcpPacket::new_unchecked(p.payload_mut());
        tcp.emit(&mut t, &IpAddress::Ipv4(src), &IpAddress::Ipv4(dst), &caps);
        buf
    }

    fn tcp_ok(buf: &[u8]) -> bool {
        let p = Ipv4Packet::new_checked(buf).unwrap();
        let t = TcpPacket::new_checked(p.payload()).unwrap();
        t.verify_checksum(
            &IpAddress::Ipv4(p.src_addr()),
            &IpAddress::Ipv4(p.dst_addr()),
        )
    }

    #[test]
    fn header_roundtrip() {
        let h = Header {
            flags: 1,
            gso_type: 4,
            hdr_len: 60,
            gso_size: 1440,
            csum_start: 40,
            csum_offset: 16,
        };
        let mut b = [0u8; HDR_LEN];
        h.emit(&mut b);
        assert_eq!(Header::parse(&b), Some(h));
        assert_eq!(Header::parse(&b[..9]), None);
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_be(0, &d)), 0xddf2);
        assert_eq!(checksum(0, &d), !0xddf2);
        // The same with an odd tail, word by word.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7, 0x12];
        assert_eq!(fold(sum_be(0, &d)), fold(0xddf2 + 0x1200));
    }

    #[test]
    fn tx_partial_checksum_completes_to_a_valid_one() {
        let mut pkt = tcp4(&[7u8; 3000]);
        pkt[36] = 0;
        pkt[37] = 0;
        let h = tx_prepare(&mut pkt, false, Some(1448), 1500);
        assert_eq!(h.flags, F_NEEDS_CSUM);
        assert_eq!((h.csum_start, h.csum_offset), (20, 16));
        assert_eq!((h.gso_type, h.gso_size, h.hdr_len), (GSO_TCPV4, 1448, 40));
        // Do what the kernel does with NEEDS_CSUM, then check with smoltcp.
        let end = pkt.len();
        complete(&h, &mut pkt, end).unwrap();
        assert!(tcp_ok(&pkt));
    }

    #[test]
    fn tx_small_segment_has_no_gso() {
        let mut pkt = tcp4(b"hello");
        let h = tx_prepare(&mut pkt, false, Some(1448), 1500);
        assert_eq!(h.gso_type, GSO_NONE);
        assert_eq!(h.flags, F_NEEDS_CSUM);
    }

    #[test]
    fn tx_oversize_without_metadata_is_segmented_to_the_mtu() {
        let mut pkt = tcp4(&[7u8; 3000]);
        let h = tx_prepare(&mut pkt, false, None, 1500);
        assert_eq!((h.gso_type, h.gso_size), (GSO_TCPV4, 1460));
        // Within the MTU: no segmentation asked for.
        let mut pkt = tcp4(&[7u8; 1000]);
        let h = tx_prepare(&mut pkt, false, None, 1500);
        assert_eq!(h.gso_type, GSO_NONE);
    }

    #[test]
    fn rx_verifies_unvouched_tcp() {
        let mut pkt = tcp4(b"data");
        assert_eq!(rx_prepare(&Header::default(), &mut pkt, false), Ok(()));
        pkt[43] ^= 1;
        assert_eq!(
            rx_prepare(&Header::default(), &mut pkt, false),
            Err(RxDrop::BadChecksum)
        );
        // The kernel vouching (DATA_VALID) skips the check: its word is taken.
        let h = Header {
            flags: F_DATA_VALID,
            ..Header::default()
        };
        assert_eq!(rx_prepare(&h, &mut pkt, false), Ok(()));
    }

    #[test]
    fn rx_needs_csum_tcp_is_trusted_if_consistent() {
        let mut pkt = tcp4(b"data");
        let good = Header {
            flags: F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 16,
            ..Header::default()
        };
        assert_eq!(rx_prepare(&good, &mut pkt, false), Ok(()));
        let bad = Header {
            csum_start: 30,
            ..good
        };
        assert_eq!(rx_prepare(&bad, &mut pkt, false), Err(RxDrop::Malformed));
    }

    #[test]
    fn rx_rejects_hostile_headers_without_panicking() {
        let pkt = tcp4(&[1u8; 100]);
        for flags in [0u8, 1, 2, 3, 0xff] {
            for gso_type in [0u8, 1, 3, 4, 5, 0x81, 0xff] {
                for csum_start in [0u16, 19, 20, 139, 140, 141, 0xffff] {
                    for csum_offset in [0u16, 6, 16, 0xfffe, 0xffff] {
                        let h = Header {
                            flags,
                            gso_type,
                            hdr_len: 0xffff,
                            gso_size: 0,
                            csum_start,
                            csum_offset,
                        };
                        for len in [0, 1, 19, 20, 39, 40, pkt.len()] {
                            let mut p = pkt[..len].to_vec();
                            let _ = rx_prepare(&h, &mut p, false);
                            let _ = rx_prepare(&h, &mut p, true);
                        }
                    }
                }
            }
        }
        // GSO type and packet disagree.
        let h = Header {
            gso_type: GSO_TCPV6,
            gso_size: 1000,
            ..Header::default()
        };
        assert_eq!(
            rx_prepare(&h, &mut pkt.clone(), false),
            Err(RxDrop::Malformed)
        );
        let h = Header {
            gso_type: GSO_UDP,
            ..Header::default()
        };
        assert_eq!(
            rx_prepare(&h, &mut pkt.clone(), false),
            Err(RxDrop::Malformed)
        );
    }

    #[test]
    fn rx_completes_udp_needs_csum() {
        // A UDP datagram with the pseudo-header sum in its checksum, as the kernel hands it.
        let mut pkt = vec![0u8; 20 + 8 + 5];
        pkt[0] = 0x45;
        pkt[2..4].copy_from_slice(&(33u16).to_be_bytes());
        pkt[8] = 64;
        pkt[9] = 17;
        pkt[12..16].copy_from_slice(&[192, 0, 2, 1]);
        pkt[16..20].copy_from_slice(&[192, 0, 2, 2]);
        pkt[20..22].copy_from_slice(&1234u16.to_be_bytes());
        pkt[22..24].copy_from_slice(&7u16.to_be_bytes());
        pkt[24..26].copy_from_slice(&13u16.to_be_bytes());
        pkt[28..33].copy_from_slice(b"hello");
        let l4 = locate_l4(&pkt, 0).unwrap();
        let partial = fold(l4.pseudo + 13);
        pkt[26..28].copy_from_slice(&partial.to_be_bytes());
        let h = Header {
            flags: F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 6,
            ..Header::default()
        };
        rx_prepare(&h, &mut pkt, false).unwrap();
        let sum = sum_be(l4.pseudo + 13, &pkt[20..]);
        assert_eq!(fold(sum), 0xffff);
    }
}

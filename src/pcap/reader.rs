//! Reading captures: classic pcap and pcapng files as tcpdump, tshark, Wireshark and tunhost's own
//! trace write them, parsed with the `pcap-file` crate.
//!
//! Supported: pcap (micro- and nanosecond, either byte order) and pcapng (any number of sections
//! and interfaces; Enhanced and Simple Packet Blocks; `if_tsresol` and `if_tsoffset`), with the
//! link types Ethernet, Raw IP (also `LINKTYPE_IPV4`/`LINKTYPE_IPV6`), Linux cooked capture v1
//! (SLL, `tcpdump -i any` before libpcap 1.10) and v2 (SLL2).
//!
//! Not supported: other link types (an error naming it), the obsolete pcapng Packet Block (skipped),
//! compressed files. The parser never panics on input: a file that is not a capture, that ends in
//! the middle of a record, or whose fields contradict each other is an error naming the record.

use std::fmt;
use std::time::Duration;

use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{DataLink, PcapError, TsResolution};

use super::{Direction, Format, Link};

/// One packet of a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Time since the UNIX epoch.
    pub timestamp: Duration,
    /// The link layer of `data` (the interface's link type).
    pub link: Link,
    /// The bytes the capture holds (maybe fewer than the packet had: see `original_len`).
    pub data: Vec<u8>,
    /// The packet's length on the wire.
    pub original_len: u32,
    /// The direction a pcapng `epb_flags` option gives, if any.
    pub direction: Option<Direction>,
}

impl Packet {
    /// Whether the capture kept fewer bytes than the packet had (a snap length).
    pub fn is_cut(&self) -> bool {
        (self.original_len as usize) > self.data.len()
    }
}

/// A parsed capture, all packets in file order.
#[derive(Debug, Clone)]
pub struct Capture {
    /// Whether the file was pcap or pcapng.
    pub format: Format,
    /// The packets, in file order.
    pub packets: Vec<Packet>,
}

/// Why a file could not be read as a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureError {
    /// The file does not start like a pcap or pcapng file.
    NotACapture,
    /// The file ends in the middle of the header or of record `record` (1-based).
    Truncated {
        /// The record cut short (1-based; 0 for the file header).
        record: usize,
    },
    /// Record `record` (1-based; 0 for the file header) contradicts itself.
    Malformed {
        /// The faulty record (1-based; 0 for the file header).
        record: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A link type replay cannot decode.
    UnsupportedLinkType {
        /// The pcap `LINKTYPE_*` number.
        linktype: u32,
    },
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::NotACapture => write!(
                f,
                "not a pcap or pcapng capture (no pcap magic number or pcapng section header at \
                 the start)"
            ),
            CaptureError::Truncated { record: 0 } => {
                write!(f, "truncated: the file ends inside its header")
            }
            CaptureError::Truncated { record } => write!(
                f,
                "truncated: the file ends inside record {record} (a capture cut short, e.g. by a \
                 full disk or a killed writer)"
            ),
            CaptureError::Malformed { record: 0, reason } => {
                write!(f, "malformed file header: {reason}")
            }
            CaptureError::Malformed { record, reason } => {
                write!(f, "malformed record {record}: {reason}")
            }
            CaptureError::UnsupportedLinkType { linktype } => write!(
                f,
                "unsupported link type {linktype} ({}); replay reads Ethernet (1), Raw IP (101), \
                 Linux SLL (113) and SLL2 (276)",
                linktype_name(*linktype)
            ),
        }
    }
}

impl std::error::Error for CaptureError {}

fn linktype_name(linktype: u32) -> String {
    format!("{:?}", DataLink::from(linktype))
}

fn malformed(record: usize, e: PcapError) -> CaptureError {
    match e {
        PcapError::IncompleteBuffer => CaptureError::Truncated { record },
        PcapError::InvalidField(reason) => CaptureError::Malformed {
            record,
            reason: reason.to_string(),
        },
        other => CaptureError::Malformed {
            record,
            reason: other.to_string(),
        },
    }
}

const PCAPNG_SHB: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

impl Capture {
    /// Parse a whole capture file.
    pub fn parse(bytes: &[u8]) -> Result<Capture, CaptureError> {
        if bytes.len() < 4 {
            return Err(if bytes.is_empty() {
                CaptureError::NotACapture
            } else {
                CaptureError::Truncated { record: 0 }
            });
        }
        let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        match magic {
            0xa1b2c3d4 | 0xd4c3b2a1 | 0xa1b23c4d | 0x4d3cb2a1 => parse_pcap(bytes),
            _ if bytes[..4] == PCAPNG_SHB => parse_pcapng(bytes),
            _ => Err(CaptureError::NotACapture),
        }
    }
}

fn parse_pcap(bytes: &[u8]) -> Result<Capture, CaptureError> {
    let (mut rest, parser) = PcapParser::new(bytes).map_err(|e| malformed(0, e))?;
    let header = parser.header();
    let link = Link::from_datalink(header.datalink).ok_or(CaptureError::UnsupportedLinkType {
        linktype: header.datalink.into(),
    })?;
    let mut packets = Vec::new();
    while !rest.is_empty() {
        let record = packets.len() + 1;
        // The raw record: pcap-file's checked one refuses orig_len > snaplen, which is legal.
        let (r, raw) = parser
            .next_raw_packet(rest)
            .map_err(|e| malformed(record, e))?;
        rest = r;
        let nanos = match header.ts_resolution {
            TsResolution::MicroSecond => u64::from(raw.ts_frac) * 1000,
            TsResolution::NanoSecond => u64::from(raw.ts_frac),
        };
        if nanos >= 1_000_000_000 {
            return Err(CaptureError::Malformed {
                record,
                reason: "the fraction of a second is a second or more".into(),
            });
        }
        packets.push(Packet {
            timestamp: Duration::new(u64::from(raw.ts_sec), nanos as u32),
            link,
            data: raw.data.into_owned(),
            original_len: raw.orig_len,
            direction: None,
        });
    }
    Ok(Capture {
        format: Format::Pcap,
        packets,
    })
}

/// Timestamp units and offset of a pcapng interface.
fn clock_of(idb: &InterfaceDescriptionBlock) -> (u8, u64) {
    let mut resol = 6;
    let mut offset = 0;
    for o in &idb.options {
        match o {
            InterfaceDescriptionOption::IfTsResol(r) => resol = *r,
            InterfaceDescriptionOption::IfTsOffset(s) => offset = *s,
            _ => {}
        }
    }
    (resol, offset)
}

/// A pcapng timestamp in `units` of `if_tsresol` `resol` plus `offset` seconds, as a duration;
/// `None` if it does not fit.
fn pcapng_time(units: u64, resol: u8, offset: u64) -> Option<Duration> {
    let units = u128::from(units);
    let nanos: u128 = if resol & 0x80 == 0 {
        let exp = u32::from(resol);
        if exp <= 9 {
            units * 10u128.pow(9 - exp)
        } else {
            10u128.checked_pow(exp - 9).map_or(0, |d| units / d)
        }
    } else {
        let exp = u32::from(resol & 0x7f);
        (units * 1_000_000_000).checked_shr(exp).unwrap_or(0)
    };
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(Duration::new(
        secs.checked_add(offset)?,
        (nanos % 1_000_000_000) as u32,
    ))
}

fn parse_pcapng(bytes: &[u8]) -> Result<Capture, CaptureError> {
    let (mut rest, mut parser) = PcapNgParser::new(bytes).map_err(|e| malformed(0, e))?;
    let mut packets = Vec::new();
    let mut record = 1;
    let mut last = Duration::ZERO;
    while !rest.is_empty() {
        record += 1;
        let (r, block) = parser.next_block(rest).map_err(|e| malformed(record, e))?;
        rest = r;
        let (interface_id, timestamp, original_len, data, direction) = match block {
            Block::EnhancedPacket(epb) => {
                let idb = parser.interfaces().get(epb.interface_id as usize).ok_or(
                    CaptureError::Malformed {
                        record,
                        reason: format!("packet on undeclared interface {}", epb.interface_id),
                    },
                )?;
                let (resol, offset) = clock_of(idb);
                // pcap-file hands the raw units over as nanoseconds: convert them.
                let units = epb.timestamp.as_nanos() as u64;
                let ts = pcapng_time(units, resol, offset).ok_or(CaptureError::Malformed {
                    record,
                    reason: "timestamp out of range".into(),
                })?;
                let direction = epb.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Flags(f) if f & 3 == 1 => Some(Direction::Inbound),
                    EnhancedPacketOption::Flags(f) if f & 3 == 2 => Some(Direction::Outbound),
                    _ => None,
                });
                (
                    epb.interface_id,
                    ts,
                    epb.original_len,
                    epb.data.into_owned(),
                    direction,
                )
            }
            // No timestamp of its own: it takes the one before.
            Block::SimplePacket(spb) => (0, last, spb.original_len, spb.data.into_owned(), None),
            _ => continue,
        };
        let idb =
            parser
                .interfaces()
                .get(interface_id as usize)
                .ok_or(CaptureError::Malformed {
                    record,
                    reason: format!("packet on undeclared interface {interface_id}"),
                })?;
        let link = Link::from_datalink(idb.linktype).ok_or(CaptureError::UnsupportedLinkType {
            linktype: idb.linktype.into(),
        })?;
        last = timestamp;
        packets.push(Packet {
            timestamp,
            link,
            data,
            original_len,
            direction,
        });
    }
    Ok(Capture {
        format: Format::PcapNg,
        packets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::writer::{self as trace_writer};
    use crate::pcap::{self as trace, TraceConfig};
    use smoltcp::phy::Medium;

    fn written(format: trace::Format, medium: Medium) -> Vec<u8> {
        let cfg = TraceConfig {
            format,
            timestamps: trace::Timestamps::Clock,
            snaplen: Some(30),
            ..TraceConfig::new("tun0", "test")
        };
        let packets: [(i64, Direction, &[u8]); 2] = [
            (1_000_001, Direction::Inbound, &[7; 20]),
            (1_000_002, Direction::Outbound, &[8; 40]),
        ];
        trace_writer::written(&cfg, medium, &packets).0
    }

    #[test]
    fn reads_back_what_the_tracer_writes() {
        for format in [trace::Format::PcapNg, trace::Format::Pcap] {
            let cap = Capture::parse(&written(format, Medium::Ip)).unwrap();
            assert_eq!(cap.packets.len(), 2, "{format:?}");
            let p = &cap.packets[1];
            assert_eq!(p.timestamp, Duration::from_micros(1_000_002));
            assert_eq!(p.link, Link::Raw);
            assert_eq!((p.data.len(), p.original_len), (30, 40));
            assert!(p.is_cut());
            if format == trace::Format::PcapNg {
                assert_eq!(p.direction, Some(Direction::Outbound));
                assert_eq!(cap.packets[0].direction, Some(Direction::Inbound));
            }
        }
        let cap = Capture::parse(&written(trace::Format::PcapNg, Medium::Ethernet)).unwrap();
        assert_eq!(cap.packets[0].link, Link::Ethernet);
    }

    #[test]
    fn pcapng_resolutions() {
        assert_eq!(
            pcapng_time(1_500_000, 6, 0),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(pcapng_time(1_500, 9, 2), Some(Duration::new(2, 1500)));
        assert_eq!(
            pcapng_time(1 << 20, 0x80 | 20, 0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(pcapng_time(5, 12, 0), Some(Duration::ZERO));
        assert_eq!(pcapng_time(u64::MAX, 0, u64::MAX), None);
        assert!(pcapng_time(u64::MAX, 0x80 | 127, 0).is_some());
        assert!(pcapng_time(u64::MAX, 127, 0).is_some());
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(Capture::parse(b"").unwrap_err(), CaptureError::NotACapture);
        assert_eq!(
            Capture::parse(b"GET / HTTP/1.1\r\n").unwrap_err(),
            CaptureError::NotACapture
        );
        for format in [trace::Format::PcapNg, trace::Format::Pcap] {
            let full = written(format, Medium::Ip);
            let cut = &full[..full.len() - 3];
            assert!(
                matches!(
                    Capture::parse(cut).unwrap_err(),
                    CaptureError::Truncated { .. }
                ),
                "{format:?}"
            );
            assert_eq!(
                Capture::parse(&full[..10]).unwrap_err(),
                CaptureError::Truncated { record: 0 },
                "{format:?}"
            );
        }
        // A pcap header with link type 147 (a user type).
        let mut pcap = written(trace::Format::Pcap, Medium::Ip);
        pcap[20..24].copy_from_slice(&147u32.to_le_bytes());
        let e = Capture::parse(&pcap).unwrap_err();
        assert_eq!(e, CaptureError::UnsupportedLinkType { linktype: 147 });
        assert!(e.to_string().contains("147"), "{e}");
    }

    /// Every prefix and many byte flips of valid captures: errors, never a panic.
    #[test]
    fn hostile_bytes_never_panic() {
        for format in [trace::Format::PcapNg, trace::Format::Pcap] {
            let full = written(format, Medium::Ethernet);
            for n in 0..full.len() {
                let _ = Capture::parse(&full[..n]);
            }
            let mut x: u32 = 12345;
            for _ in 0..20_000 {
                let mut b = full.clone();
                for _ in 0..3 {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let i = x as usize % b.len();
                    b[i] = (x >> 8) as u8;
                }
                let _ = Capture::parse(&b);
            }
        }
    }
}

//! pcap and pcapng: tracing every packet of a device, and reading captures back.
//!
//! - [`Format`], [`Direction`] and [`Link`] are the words both sides share.
//! - [`writer`]: [`TraceWriter`] encodes packets into a pcapng (default) or classic pcap stream.
//! - [`tracer`]: [`Pcap`], a `phy::Device` wrapper that records every packet read from or written
//!   to the device it wraps.
//! - [`reader`]: [`CaptureReader`] streams pcap and pcapng files as tcpdump, tshark, Wireshark,
//!   libpcap's test suite and tunhost itself write them (damage skipped and counted in
//!   [`Damage`]); [`Capture::parse`] reads one whole.
//! - [`StagedFile`]: an output written beside its final name and renamed into place when done.
//!
//! This layer sits on the link layer (it implements [`Housekeeping`](crate::link::Housekeeping)
//! for the tracer) and imports nothing above it.

use std::time::Duration as StdDuration;

use pcap_file::DataLink;
use smoltcp::phy::Medium;

pub mod reader;
pub mod tracer;
pub mod writer;

pub use reader::{Capture, CaptureError, CaptureReader, Damage, Packet};
pub use tracer::Pcap;
pub use writer::{StagedFile, TraceConfig, TraceStats, TraceWriter};

/// The file format of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// pcapng: direction per packet, nanosecond timestamps, the device's name.
    #[default]
    PcapNg,
    /// Classic pcap (libpcap 2.4, microseconds): for tools that do not read pcapng.
    Pcap,
}

impl Format {
    /// The latest time (since the UNIX epoch) a record of this format can hold: later ones are
    /// written as this, not wrapped around or dropped. pcapng counts nanoseconds in 64 bits (to
    /// 2554); classic pcap counts seconds in 32 bits (to 2106).
    pub fn latest(self) -> StdDuration {
        match self {
            Format::PcapNg => StdDuration::from_nanos(u64::MAX),
            Format::Pcap => StdDuration::new(u64::from(u32::MAX), 999_999_000),
        }
    }
}

/// Where the timestamps of the records come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Timestamps {
    /// The system's real-time clock, read for each record (a vDSO call, not a system call).
    #[default]
    System,
    /// The `Instant` smoltcp passes to the device, taken as time since the UNIX epoch: for a
    /// virtual clock (replay), which makes the trace a function of the input only.
    Clock,
}

/// Direction of a packet, from the host's side of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Read from the device: sent by the kernel (or the peer) to the host.
    Inbound,
    /// Written to the device by the host.
    Outbound,
}

impl Direction {
    /// The pcapng `epb_flags` word: bits 0-1 are the direction (01 inbound, 10 outbound).
    pub fn epb_flags(self) -> u32 {
        match self {
            Direction::Inbound => 0b01,
            Direction::Outbound => 0b10,
        }
    }
}

/// The link layer of the packets of a capture or trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Ethernet II frames (TAP devices, NICs).
    Ethernet,
    /// IP packets with no link header (TUN devices).
    Raw,
    /// Linux cooked capture v1: a 16-byte header, then the network-layer packet.
    LinuxSll,
    /// Linux cooked capture v2: a 20-byte header, then the network-layer packet.
    LinuxSll2,
    /// BSD loopback (`DLT_NULL`): a 4-byte address family in the capturing machine's byte order.
    Null,
    /// OpenBSD loopback (`DLT_LOOP`): a 4-byte address family in network byte order.
    Loop,
    /// PPP (`LINKTYPE_PPP`, `LINKTYPE_PPP_HDLC`): optional address and control bytes, then the
    /// PPP protocol number.
    Ppp,
    /// Cisco HDLC (`LINKTYPE_C_HDLC`): address, control, then an ethertype.
    CiscoHdlc,
    /// SLIP (`LINKTYPE_SLIP`): a 16-byte header (direction, compression), then the IP packet.
    Slip,
}

impl Link {
    /// The link of a device of `medium`: Ethernet for a TAP device, raw IP for a TUN device.
    pub fn of_medium(medium: Medium) -> Link {
        match medium {
            Medium::Ethernet => Link::Ethernet,
            _ => Link::Raw,
        }
    }

    /// The link a pcap `LINKTYPE_*` number stands for (its low 16 bits; the upper ones carry
    /// the FCS length and reserved bits), if replay can decode it.
    pub fn from_linktype(linktype: u32) -> Option<Link> {
        Some(match linktype & 0xffff {
            0 => Link::Null,
            1 => Link::Ethernet,
            8 => Link::Slip,
            104 => Link::CiscoHdlc,
            9 | 50 => Link::Ppp,
            // 12 and 14: DLT_RAW as some BSDs numbered it, found in old files.
            12 | 14 | 101 | 228 | 229 => Link::Raw,
            108 => Link::Loop,
            113 => Link::LinuxSll,
            276 => Link::LinuxSll2,
            _ => return None,
        })
    }

    /// The pcap link type of this link.
    pub(crate) fn datalink(self) -> DataLink {
        match self {
            Link::Ethernet => DataLink::ETHERNET,
            Link::Raw => DataLink::RAW,
            Link::LinuxSll => DataLink::LINUX_SLL,
            Link::LinuxSll2 => DataLink::LINUX_SLL2,
            Link::Null => DataLink::NULL,
            Link::Loop => DataLink::LOOP,
            Link::Ppp => DataLink::PPP,
            Link::CiscoHdlc => DataLink::C_HDLC,
            Link::Slip => DataLink::SLIP,
        }
    }
}

/// The name of a pcap link type, as the tcpdump.org list has it (`LINKTYPE_IEEE802_11`), for
/// messages.
pub fn linktype_name(linktype: u32) -> String {
    match DataLink::from(linktype & 0xffff) {
        DataLink::Unknown(_) => "not a registered link type".to_string(),
        d => format!("LINKTYPE_{d:?}"),
    }
}

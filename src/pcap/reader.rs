//! Reading captures: classic pcap and pcapng files as tcpdump, tshark, Wireshark and tunhost's own
//! trace write them, streamed one record at a time ([`CaptureReader`]) or read whole
//! ([`Capture::parse`]).
//!
//! Supported: classic pcap (micro- and nanosecond, either byte order, and the "modified" pcap of
//! old Linux patches with its longer record header) and pcapng (any number of sections and
//! interfaces, either byte order; Enhanced, Simple and the obsolete Packet blocks; `if_tsresol`,
//! `if_tsoffset`, `if_fcslen`, `epb_flags`), with the link types Ethernet, Raw IP (also
//! `LINKTYPE_IPV4`/`LINKTYPE_IPV6` and the old BSD numbers 12 and 14), Linux cooked capture v1
//! and v2, BSD loopback (`NULL`, `LOOP`), PPP, Cisco HDLC and SLIP. A classic pcap link type is
//! its low 16 bits, as libpcap reads it; its FCS-length bits, or a pcapng `if_fcslen`, strip the
//! frame check sequence.
//!
//! Read as tshark reads them: option lists that end without `opt_endofopt`, a sub-second field of
//! a second or more (carried into the seconds), a packet longer than its file's snap length. What
//! is damaged is not fatal unless the file header is: a record that contradicts itself but whose
//! length can be trusted is skipped and counted; a file cut short (a writer killed, a full disk)
//! or a record whose length cannot be trusted ends the capture there, and [`Damage`] says so.
//! Memory is one record's worth, whatever the size of the file. The reader never panics on input.
//!
//! Not supported: other link types (an error naming it, e.g. `LINKTYPE_IEEE802_11`), compressed
//! files.

use std::fmt;
use std::io::{self, BufReader, Read, Seek};
use std::time::Duration;

use super::{Direction, Format, Link, linktype_name};
use crate::link::io_desc;

/// The longest packet a record may hold: libpcap's and Wireshark's largest snap length. A record
/// that claims more is taken as garbage (its length cannot be trusted), as tshark takes it.
pub const MAX_PACKET: u32 = 262_144;
/// The longest pcapng block read (Wireshark's limit): a longer one ends the capture.
const MAX_BLOCK: u32 = 16 * 1024 * 1024;
/// The most pcapng interfaces one section may declare; later ones are skipped.
const MAX_INTERFACES: usize = 65_536;

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

/// What was wrong with a capture that was read anyway.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Records skipped because they contradict themselves (their length could be trusted, so
    /// reading went on after them).
    pub skipped: u64,
    /// The first record skipped, and why (a [`CaptureError::Malformed`]).
    pub first_skipped: Option<CaptureError>,
    /// Why reading stopped before the end of the file: [`CaptureError::Truncated`] (the file was
    /// cut short), [`CaptureError::Malformed`] (a record whose length cannot be trusted) or
    /// [`CaptureError::Read`]. The packets before it were read.
    pub stopped: Option<CaptureError>,
}

impl Damage {
    /// Whether nothing was wrong.
    pub fn is_clean(&self) -> bool {
        self.skipped == 0 && self.stopped.is_none()
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(stopped) = &self.stopped {
            parts.push(format!("{stopped}; read up to there"));
        }
        if self.skipped > 0 {
            let first = self
                .first_skipped
                .as_ref()
                .map_or(String::new(), |e| format!(" (the first: {e})"));
            parts.push(format!("{} malformed records skipped{first}", self.skipped));
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// A parsed capture, all packets in file order.
#[derive(Debug, Clone)]
pub struct Capture {
    /// Whether the file was pcap or pcapng.
    pub format: Format,
    /// The packets, in file order.
    pub packets: Vec<Packet>,
    /// What was skipped, and where reading stopped if before the end.
    pub damage: Damage,
}

/// Why a file could not be read as a capture, or why a record of it was skipped or ended it.
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
        /// The pcap `LINKTYPE_*` number (its low 16 bits).
        linktype: u32,
    },
    /// The file could not be read.
    Read {
        /// The record being read (0 for the file header).
        record: usize,
        /// The system's error.
        reason: String,
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
                 Linux SLL (113) and SLL2 (276), BSD loopback (0, 108), PPP (9, 50), Cisco HDLC \
                 (104) and SLIP (8)",
                linktype_name(*linktype)
            ),
            CaptureError::Read { record: 0, reason } => {
                write!(f, "cannot read the file header: {reason}")
            }
            CaptureError::Read { record, reason } => {
                write!(f, "cannot read record {record}: {reason}")
            }
        }
    }
}

impl std::error::Error for CaptureError {}

const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BOM: u32 = 0x1a2b_3c4d;

/// The byte order of a file or section.
#[derive(Debug, Clone, Copy)]
struct Order {
    big: bool,
}

impl Order {
    /// The `N`-byte unsigned number at `at` of `b`, in this byte order.
    fn uint<const N: usize>(self, b: &[u8], at: usize) -> Option<u64> {
        let bytes: [u8; N] = b.get(at..at.checked_add(N)?)?.try_into().ok()?;
        let mut v = 0;
        for i in 0..N {
            let byte = if self.big { bytes[i] } else { bytes[N - 1 - i] };
            v = (v << 8) | u64::from(byte);
        }
        Some(v)
    }

    fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        self.uint::<2>(b, at).map(|v| v as u16)
    }

    fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        self.uint::<4>(b, at).map(|v| v as u32)
    }

    fn u64(self, b: &[u8], at: usize) -> Option<u64> {
        self.uint::<8>(b, at)
    }
}

/// A pcapng interface: its link (or the link type replay cannot decode), clock and FCS length.
#[derive(Debug, Clone)]
struct Interface {
    link: Result<Link, u32>,
    resol: u8,
    offset: i64,
    fcs: usize,
    snaplen: u32,
}

#[derive(Debug)]
enum Kind {
    Pcap {
        order: Order,
        nanos: bool,
        /// The modified pcap's 8 more bytes per record header.
        extra: usize,
        link: Link,
        fcs: usize,
    },
    PcapNg {
        order: Order,
        interfaces: Vec<Interface>,
    },
}

/// A capture read one packet at a time, in constant memory: [`CaptureReader::next_packet`]
/// until `None`, then [`CaptureReader::damage`] says what was skipped and where it stopped.
#[derive(Debug)]
pub struct CaptureReader<R> {
    src: BufReader<R>,
    kind: Kind,
    /// Records (pcapng: blocks) read so far.
    record: usize,
    /// The last packet's time (a Simple Packet Block has none of its own).
    last: Duration,
    damage: Damage,
    done: bool,
    buf: Vec<u8>,
}

/// Read until `buf` is full or the input ends: how many bytes were read.
fn fill(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn malformed(record: usize, reason: impl Into<String>) -> CaptureError {
    CaptureError::Malformed {
        record,
        reason: reason.into(),
    }
}

/// The value of each option of a pcapng option list: up to `opt_endofopt`, the end of the list,
/// or an option that runs past it (tshark reads lists without the end marker too).
fn options(mut b: &[u8], order: Order) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let code = order.u16(b, 0)?;
        let len = usize::from(order.u16(b, 2)?);
        if code == 0 {
            return None;
        }
        let value = b.get(4..4 + len)?;
        b = b.get(4 + len.next_multiple_of(4)..).unwrap_or_default();
        Some((code, value))
    })
}

/// A pcapng timestamp in `units` of `if_tsresol` `resol`, plus `offset` seconds; `None` if it
/// does not fit.
fn pcapng_time(units: u64, resol: u8, offset: i64) -> Option<Duration> {
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
    let secs = secs.checked_add_signed(offset)?;
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Strip an FCS of `fcs` bytes from the end of a packet (only what the capture kept of it).
fn strip_fcs(data: &mut Vec<u8>, original_len: &mut u32, fcs: usize) {
    if fcs == 0 {
        return;
    }
    *original_len = original_len.saturating_sub(fcs as u32);
    data.truncate(*original_len as usize);
}

impl<R: Read> CaptureReader<R> {
    /// Read the file header of the capture `src` (buffered here: give it a plain `File`).
    pub fn new(src: R) -> Result<CaptureReader<R>, CaptureError> {
        let mut r = CaptureReader {
            src: BufReader::with_capacity(64 * 1024, src),
            kind: Kind::PcapNg {
                order: Order { big: false },
                interfaces: Vec::new(),
            },
            record: 0,
            last: Duration::ZERO,
            damage: Damage::default(),
            done: false,
            buf: Vec::new(),
        };
        r.start()?;
        Ok(r)
    }

    /// Whether the file is pcap or pcapng.
    pub fn format(&self) -> Format {
        match self.kind {
            Kind::Pcap { .. } => Format::Pcap,
            Kind::PcapNg { .. } => Format::PcapNg,
        }
    }

    /// What was skipped so far, and where reading stopped if it did before the end.
    pub fn damage(&self) -> &Damage {
        &self.damage
    }

    /// Read the file header.
    fn start(&mut self) -> Result<(), CaptureError> {
        let read_err = |e: io::Error| CaptureError::Read {
            record: 0,
            reason: io_desc(&e),
        };
        let mut magic = [0; 4];
        let n = fill(&mut self.src, &mut magic).map_err(read_err)?;
        if n == 0 {
            return Err(CaptureError::NotACapture);
        }
        if n < 4 {
            return Err(CaptureError::Truncated { record: 0 });
        }
        let be = u32::from_be_bytes(magic);
        let (big, nanos, extra) = match be {
            0xa1b2c3d4 => (true, false, 0),
            0xd4c3b2a1 => (false, false, 0),
            0xa1b23c4d => (true, true, 0),
            0x4d3cb2a1 => (false, true, 0),
            0xa1b2cd34 => (true, false, 8),
            0x34cdb2a1 => (false, false, 8),
            PCAPNG_SHB => {
                self.kind = Kind::PcapNg {
                    order: Order { big: false },
                    interfaces: Vec::new(),
                };
                return match self.block_after_type(PCAPNG_SHB) {
                    Ok(()) => {
                        self.record = 1;
                        Ok(())
                    }
                    Err(CaptureError::Truncated { .. }) => {
                        Err(CaptureError::Truncated { record: 0 })
                    }
                    Err(CaptureError::Malformed { reason, .. }) => Err(malformed(0, reason)),
                    Err(CaptureError::Read { reason, .. }) => {
                        Err(CaptureError::Read { record: 0, reason })
                    }
                    Err(e) => Err(e),
                };
            }
            _ => return Err(CaptureError::NotACapture),
        };
        let mut header = [0; 20];
        if fill(&mut self.src, &mut header).map_err(read_err)? < 20 {
            return Err(CaptureError::Truncated { record: 0 });
        }
        let order = Order { big };
        let linktype = order.u32(&header, 16).unwrap_or_default();
        let link = Link::from_linktype(linktype).ok_or(CaptureError::UnsupportedLinkType {
            linktype: linktype & 0xffff,
        })?;
        // libpcap's LT_FCS_LENGTH_PRESENT, then the length in 16-bit words.
        let fcs = if linktype & 0x0400_0000 != 0 {
            ((linktype >> 28) as usize) * 2
        } else {
            0
        };
        self.kind = Kind::Pcap {
            order,
            nanos,
            extra,
            link,
            fcs,
        };
        Ok(())
    }

    /// The next packet; `Ok(None)` at the end of the capture (see [`CaptureReader::damage`] for
    /// why, if early). An error is a packet of a link type replay cannot decode.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, CaptureError> {
        while !self.done {
            let next = match self.kind {
                Kind::Pcap { .. } => self.pcap_record(),
                Kind::PcapNg { .. } => self.pcapng_block(),
            };
            match next {
                Ok(Some(p)) => {
                    self.last = p.timestamp;
                    return Ok(Some(p));
                }
                Ok(None) => {}
                Err(e @ CaptureError::UnsupportedLinkType { .. }) => {
                    self.done = true;
                    return Err(e);
                }
                Err(e @ CaptureError::Malformed { .. }) if !self.done => {
                    self.damage.skipped += 1;
                    self.damage.first_skipped.get_or_insert(e);
                }
                Err(e) => {
                    self.done = true;
                    self.damage.stopped = Some(e);
                }
            }
        }
        Ok(None)
    }

    /// Fill `self.buf` with `len` bytes of record `self.record`: a short read is the file cut.
    /// The buffer grows with what is read, not with what a (maybe hostile) length says.
    fn read_body(&mut self, len: usize) -> Result<(), CaptureError> {
        self.buf.clear();
        let read = (&mut self.src).take(len as u64).read_to_end(&mut self.buf);
        read.map_err(|e| self.read_error(e))?;
        if self.buf.len() < len {
            return Err(self.cut());
        }
        Ok(())
    }

    fn cut(&mut self) -> CaptureError {
        self.done = true;
        CaptureError::Truncated {
            record: self.record,
        }
    }

    fn read_error(&mut self, e: io::Error) -> CaptureError {
        self.done = true;
        CaptureError::Read {
            record: self.record,
            reason: io_desc(&e),
        }
    }

    /// A length that cannot be trusted: the capture ends here.
    fn untrusted(&mut self, reason: String) -> CaptureError {
        self.done = true;
        malformed(self.record, reason)
    }

    /// One classic pcap record: `Ok(None)` at the end of the file.
    fn pcap_record(&mut self) -> Result<Option<Packet>, CaptureError> {
        let Kind::Pcap {
            order,
            nanos,
            extra,
            link,
            fcs,
        } = self.kind
        else {
            return Ok(None);
        };
        let mut header = [0; 24];
        let header = &mut header[..16 + extra];
        let n = fill(&mut self.src, header).map_err(|e| self.read_error(e))?;
        self.record += 1;
        if n == 0 {
            self.done = true;
            return Ok(None);
        }
        if n < header.len() {
            return Err(self.cut());
        }
        let field = |at| order.u32(header, at).unwrap_or_default();
        let (secs, frac, caplen, mut original_len) = (field(0), field(4), field(8), field(12));
        if caplen > MAX_PACKET {
            return Err(self.untrusted(format!(
                "it claims {caplen} bytes, more than a packet can have ({MAX_PACKET})"
            )));
        }
        self.read_body(caplen as usize)?;
        let frac = if nanos {
            u64::from(frac)
        } else {
            u64::from(frac) * 1000
        };
        // A fraction of a second or more is carried into the seconds.
        let timestamp = Duration::from_secs(u64::from(secs)) + Duration::from_nanos(frac);
        let mut data = self.buf.clone();
        strip_fcs(&mut data, &mut original_len, fcs);
        Ok(Some(Packet {
            timestamp,
            link,
            data,
            original_len,
            direction: None,
        }))
    }

    /// One pcapng block: a packet, or `Ok(None)` for another block or the end of the file.
    fn pcapng_block(&mut self) -> Result<Option<Packet>, CaptureError> {
        let Kind::PcapNg { order, .. } = self.kind else {
            return Ok(None);
        };
        let mut head = [0; 4];
        let n = fill(&mut self.src, &mut head).map_err(|e| self.read_error(e))?;
        self.record += 1;
        if n == 0 {
            self.done = true;
            return Ok(None);
        }
        if n < 4 {
            return Err(self.cut());
        }
        let block_type = order.u32(&head, 0).unwrap_or_default();
        // A section header reads the same in either byte order.
        let block_type = if u32::from_be_bytes(head) == PCAPNG_SHB {
            PCAPNG_SHB
        } else {
            block_type
        };
        self.block_after_type(block_type)?;
        self.packet_of_block(block_type)
    }

    /// Read the rest of a block of `block_type` into `self.buf` (its body, without the type,
    /// lengths and, for a section header, the byte-order magic); a section header is applied.
    fn block_after_type(&mut self, block_type: u32) -> Result<(), CaptureError> {
        let shb = block_type == PCAPNG_SHB;
        let mut lead = [0; 8];
        let lead = &mut lead[..if shb { 8 } else { 4 }];
        let n = fill(&mut self.src, lead).map_err(|e| self.read_error(e))?;
        if n < lead.len() {
            return Err(self.cut());
        }
        let order = match (&self.kind, shb) {
            (_, true) => match u32::from_be_bytes([lead[4], lead[5], lead[6], lead[7]]) {
                PCAPNG_BOM => Order { big: true },
                m if m.swap_bytes() == PCAPNG_BOM => Order { big: false },
                _ => {
                    return Err(self
                        .untrusted("a section header without the pcapng byte-order magic".into()));
                }
            },
            (Kind::PcapNg { order, .. }, false) => *order,
            (Kind::Pcap { order, .. }, false) => *order,
        };
        let total = order.u32(lead, 0).unwrap_or_default();
        let min = if shb { 28 } else { 12 };
        if total < min || total % 4 != 0 || total > MAX_BLOCK {
            return Err(self.untrusted(format!(
                "a block length of {total} bytes (at least {min}, a multiple of 4, at most \
                 {MAX_BLOCK})"
            )));
        }
        let body = total as usize - 8 - if shb { 4 } else { 0 };
        self.read_body(body)?;
        let trailer = order.u32(&self.buf, body - 4).unwrap_or_default();
        self.buf.truncate(body - 4);
        if trailer != total {
            return Err(malformed(
                self.record,
                format!("its length is {total} at the start and {trailer} at the end"),
            ));
        }
        if shb {
            // A new section: new interfaces, maybe another byte order.
            self.kind = Kind::PcapNg {
                order,
                interfaces: Vec::new(),
            };
        }
        Ok(())
    }

    /// The packet of the block of `block_type` in `self.buf`, or `None`; an interface block is
    /// added to the section's interfaces.
    fn packet_of_block(&mut self, block_type: u32) -> Result<Option<Packet>, CaptureError> {
        let record = self.record;
        let Kind::PcapNg { order, interfaces } = &mut self.kind else {
            return Ok(None);
        };
        let order = *order;
        let b = &self.buf[..];
        let too_short = || malformed(record, "too short for its fields");
        // (interface, timestamp units or None, captured length, original length, data offset)
        let (iface, units, caplen, mut original_len, at) = match block_type {
            1 => {
                let linktype = u32::from(order.u16(b, 0).ok_or_else(too_short)?);
                let snaplen = order.u32(b, 4).ok_or_else(too_short)?;
                let mut iface = Interface {
                    link: Link::from_linktype(linktype).ok_or(linktype),
                    resol: 6,
                    offset: 0,
                    fcs: 0,
                    snaplen,
                };
                for (code, v) in options(&b[8..], order) {
                    match (code, v) {
                        (9, [r]) => iface.resol = *r,
                        (13, [f]) => iface.fcs = usize::from(*f),
                        (14, _) => {
                            if let Some(s) = order.u64(v, 0) {
                                iface.offset = s as i64;
                            }
                        }
                        _ => {}
                    }
                }
                if interfaces.len() >= MAX_INTERFACES {
                    return Err(malformed(record, "more interfaces than a section may have"));
                }
                interfaces.push(iface);
                return Ok(None);
            }
            6 => {
                let f = |at| order.u32(b, at).ok_or_else(too_short);
                let units = (u64::from(f(4)?) << 32) | u64::from(f(8)?);
                (f(0)?, Some(units), f(12)?, f(16)?, 20)
            }
            2 => {
                let f = |at| order.u32(b, at).ok_or_else(too_short);
                let iface = u32::from(order.u16(b, 0).ok_or_else(too_short)?);
                let units = (u64::from(f(4)?) << 32) | u64::from(f(8)?);
                (iface, Some(units), f(12)?, f(16)?, 20)
            }
            3 => {
                let original_len = order.u32(b, 0).ok_or_else(too_short)?;
                let snaplen = interfaces.first().map_or(u32::MAX, |i| i.snaplen);
                let room = (b.len() - 4) as u32;
                let snaplen = if snaplen == 0 { u32::MAX } else { snaplen };
                (
                    0,
                    None,
                    original_len.min(room).min(snaplen),
                    original_len,
                    4,
                )
            }
            _ => return Ok(None),
        };
        let Some(interface) = interfaces.get(iface as usize) else {
            return Err(malformed(
                record,
                format!("a packet on interface {iface}, which the section does not declare"),
            ));
        };
        let link = interface
            .link
            .map_err(|linktype| CaptureError::UnsupportedLinkType { linktype })?;
        let end = at + caplen as usize;
        let Some(data) = b.get(at..end) else {
            return Err(malformed(
                record,
                format!("its {caplen} bytes of packet run past the end of the block"),
            ));
        };
        let timestamp = match units {
            None => self.last,
            Some(units) => pcapng_time(units, interface.resol, interface.offset)
                .ok_or_else(|| malformed(record, "its timestamp is out of range"))?,
        };
        let mut direction = None;
        if block_type != 3 {
            let opts = b.get(end.next_multiple_of(4)..).unwrap_or_default();
            for (code, v) in options(opts, order) {
                if code == 2 {
                    direction = match order.u32(v, 0).map(|f| f & 3) {
                        Some(1) => Some(Direction::Inbound),
                        Some(2) => Some(Direction::Outbound),
                        _ => direction,
                    };
                }
            }
        }
        let mut data = data.to_vec();
        strip_fcs(&mut data, &mut original_len, interface.fcs);
        Ok(Some(Packet {
            timestamp,
            link,
            data,
            original_len,
            direction,
        }))
    }
}

impl<R: Read + Seek> CaptureReader<R> {
    /// Start again from the first packet (a second pass over a file); the damage is counted anew.
    pub fn rewind(&mut self) -> Result<(), CaptureError> {
        self.src.rewind().map_err(|e| CaptureError::Read {
            record: 0,
            reason: io_desc(&e),
        })?;
        self.record = 0;
        self.last = Duration::ZERO;
        self.damage = Damage::default();
        self.done = false;
        self.start()
    }
}

impl Capture {
    /// Parse a whole capture held in memory. Damage after the file header is not an error: see
    /// [`Capture::damage`].
    pub fn parse(bytes: &[u8]) -> Result<Capture, CaptureError> {
        let mut reader = CaptureReader::new(bytes)?;
        let mut packets = Vec::new();
        while let Some(p) = reader.next_packet()? {
            packets.push(p);
        }
        Ok(Capture {
            format: reader.format(),
            packets,
            damage: reader.damage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::capture_files::{
        self as files, pcapng_epb as epb, pcapng_idb as idb, pcapng_option as option,
        pcapng_shb as shb,
    };
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
        assert_eq!(pcapng_time(u64::MAX, 0, i64::MAX), None);
        assert_eq!(pcapng_time(1, 0, -5), None);
        assert_eq!(pcapng_time(10, 0, -5), Some(Duration::from_secs(5)));
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
            // Cut inside the last record: the packets before it, and the cut said.
            let cut = Capture::parse(&full[..full.len() - 3]).unwrap();
            assert_eq!(cut.packets.len(), 1, "{format:?}");
            assert!(
                matches!(cut.damage.stopped, Some(CaptureError::Truncated { .. })),
                "{format:?}: {:?}",
                cut.damage
            );
            assert!(
                cut.damage.to_string().contains("truncated"),
                "{}",
                cut.damage
            );
            assert!(Capture::parse(&full).unwrap().damage.is_clean());
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
        // Named by its real name, not "Unknown(105)".
        pcap[20..24].copy_from_slice(&105u32.to_le_bytes());
        let e = Capture::parse(&pcap).unwrap_err().to_string();
        assert!(e.contains("105 (LINKTYPE_IEEE802_11)"), "{e}");
    }

    /// A classic pcap file of `linktype` holding `records` (seconds, fraction, bytes).
    fn pcap(linktype: u32, records: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut f = files::pcap_header(linktype);
        for (secs, frac, data) in records {
            files::pcap_record(&mut f, *secs, *frac, data);
        }
        f
    }

    #[test]
    fn classic_link_types_use_their_low_16_bits() {
        for linktype in [
            0x3000_0001,
            0x4000_0001,
            0x0400_0001,
            0x3000_0065,
            0x3000_00e5,
        ] {
            let cap = Capture::parse(&pcap(linktype, &[(1, 0, &[0x45; 24])])).unwrap();
            assert_eq!(cap.packets.len(), 1, "{linktype:#x}");
            let want = if linktype & 0xffff == 1 {
                Link::Ethernet
            } else {
                Link::Raw
            };
            assert_eq!(cap.packets[0].link, want, "{linktype:#x}");
            assert_eq!(cap.packets[0].data.len(), 24, "{linktype:#x}: no FCS");
        }
        // LT_FCS_LENGTH_PRESENT with 2 words: a 4-byte FCS at the end of each frame, stripped.
        let cap = Capture::parse(&pcap(0x2400_0001, &[(1, 0, &[1; 64])])).unwrap();
        assert_eq!(
            (cap.packets[0].data.len(), cap.packets[0].original_len),
            (60, 60)
        );
    }

    #[test]
    fn a_fraction_of_a_second_or_more_is_carried() {
        let cap = Capture::parse(&pcap(101, &[(7, 1_500_000, &[0x45; 20])])).unwrap();
        assert_eq!(cap.packets[0].timestamp, Duration::from_millis(8_500));
        assert!(cap.damage.is_clean());
    }

    #[test]
    fn pcapng_option_lists_may_end_without_opt_endofopt() {
        // Options with no end marker in the section header, the interface and the packet.
        let mut file = shb(&option(4, b"a writer"));
        file.extend(idb(101, &option(9, &[6])));
        file.extend(epb(
            0,
            2_000_001,
            &[0x45; 20],
            &option(2, &2u32.to_le_bytes()),
        ));
        let cap = Capture::parse(&file).unwrap();
        assert_eq!(cap.packets.len(), 1);
        let p = &cap.packets[0];
        assert_eq!(p.timestamp, Duration::from_micros(2_000_001));
        assert_eq!(p.direction, Some(Direction::Outbound));
        assert!(cap.damage.is_clean(), "{}", cap.damage);
    }

    #[test]
    fn self_contradicting_records_are_skipped_and_counted() {
        let mut file = shb(&[]);
        file.extend(idb(1, &[]));
        // A packet on an interface never declared, then one whose data runs past its block.
        file.extend(epb(3, 1, &[1; 20], &[]));
        let mut long = epb(0, 2, &[2; 20], &[]);
        long[20..24].copy_from_slice(&100u32.to_le_bytes());
        file.extend(long);
        file.extend(epb(0, 3, &[3; 20], &[]));
        let cap = Capture::parse(&file).unwrap();
        assert_eq!(cap.packets.len(), 1);
        assert_eq!(cap.packets[0].data, [3; 20]);
        assert_eq!(cap.damage.skipped, 2);
        assert_eq!(cap.damage.stopped, None);
        let text = cap.damage.to_string();
        assert!(text.contains("2 malformed records skipped"), "{text}");
        assert!(text.contains("record 3: a packet on interface 3"), "{text}");
        // A classic record longer than any packet: its length is garbage, the capture ends.
        let mut file = pcap(1, &[(1, 0, &[1; 20]), (2, 0, &[2; 20])]);
        let second = 24 + 16 + 20;
        file[second + 8..second + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        let cap = Capture::parse(&file).unwrap();
        assert_eq!(cap.packets.len(), 1);
        assert!(matches!(
            cap.damage.stopped,
            Some(CaptureError::Malformed { record: 2, .. })
        ));
    }

    #[test]
    fn loopback_and_ppp_link_types_are_read() {
        for (linktype, link) in [
            (0, Link::Null),
            (108, Link::Loop),
            (9, Link::Ppp),
            (50, Link::Ppp),
        ] {
            let cap = Capture::parse(&pcap(linktype, &[(1, 0, &[0; 24])])).unwrap();
            assert_eq!(cap.packets[0].link, link);
            let mut file = shb(&[]);
            file.extend(idb(linktype as u16, &[]));
            file.extend(epb(0, 1, &[0; 24], &[]));
            assert_eq!(Capture::parse(&file).unwrap().packets[0].link, link);
        }
    }

    #[test]
    fn big_endian_sections_and_a_second_section() {
        // A big-endian section with a nanosecond interface, then a little-endian one.
        let be = |v: u32| v.to_be_bytes();
        let mut file = Vec::new();
        file.extend(be(0x0a0d0d0a));
        file.extend(be(28));
        file.extend(be(0x1a2b3c4d));
        file.extend([0, 1, 0, 0]);
        file.extend((-1i64).to_be_bytes());
        file.extend(be(28));
        let mut idb_be = be(1).to_vec();
        idb_be.extend(be(20 + 8));
        idb_be.extend([0, 101, 0, 0]);
        idb_be.extend(be(0));
        idb_be.extend([0, 9, 0, 1, 9, 0, 0, 0]);
        idb_be.extend(be(28));
        file.extend(idb_be);
        let mut epb_be = be(6).to_vec();
        epb_be.extend(be(32 + 20));
        for v in [0, 0, 1_500_000_000, 20, 20] {
            epb_be.extend(be(v));
        }
        epb_be.extend([0x45; 20]);
        epb_be.extend(be(32 + 20));
        file.extend(epb_be);
        file.extend(shb(&[]));
        file.extend(idb(1, &[]));
        file.extend(epb(0, 7, &[1; 20], &[]));
        let cap = Capture::parse(&file).unwrap();
        assert!(cap.damage.is_clean(), "{}", cap.damage);
        assert_eq!(cap.packets.len(), 2);
        assert_eq!(cap.packets[0].timestamp, Duration::from_millis(1500));
        assert_eq!(cap.packets[0].link, Link::Raw);
        assert_eq!(cap.packets[1].link, Link::Ethernet);
    }

    #[test]
    fn the_reader_streams_and_rewinds() {
        let file = pcap(101, &[(1, 0, &[0x45; 20]), (2, 0, &[0x45; 21])]);
        let mut r = CaptureReader::new(std::io::Cursor::new(file)).unwrap();
        assert_eq!(r.next_packet().unwrap().unwrap().data.len(), 20);
        r.rewind().unwrap();
        let mut n = 0;
        while r.next_packet().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 2);
        assert!(r.damage().is_clean());
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

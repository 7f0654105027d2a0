//! [`TraceWriter`]: packets into a pcapng (default) or classic pcap stream.
//!
//! What the trace holds:
//! - pcapng: a section header naming tunhost, one interface block (link type Raw IP for a TUN
//!   device, Ethernet for TAP; `if_name` the device; `if_tsresol` nanoseconds; the snap length),
//!   then one Enhanced Packet Block per packet whose `epb_flags` say the direction from the host's
//!   side: *inbound* = read from the device (sent by the kernel), *outbound* = written to it.
//! - classic pcap (for old tools): the same packets, microsecond timestamps, no direction.
//! - with a snap length, the first `snaplen` bytes of each packet and its original length.
//!
//! Cost and durability: records are encoded into one buffer allocated up front (nothing is
//! allocated per packet, and the only system call is the `write(2)` of a full buffer or a flush).
//! [`TraceWriter::poll_at`] tells the owner when the oldest buffered record is
//! [`TraceConfig::flush_interval`] old (200 ms by default); the host's loop flushes then through
//! the [`Housekeeping`] hook. Every `write(2)` ends on a record boundary, so a process killed with
//! SIGKILL leaves a trace whose records up to the last flush are whole (at most the record being
//! written when the kill came is cut).
//!
//! A write error (disk full, closed pipe) is logged once; the trace then stops (what was written
//! stays a valid trace), packets keep flowing, and [`TraceStats::lost`] counts the records that
//! could not be written.

use std::borrow::Cow;
use std::io::{self, Write};
use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

use byteorder_slice::LittleEndian;
use pcap_file::pcap::{PcapHeader, PcapPacket};
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::{Block, PcapNgBlock};
use pcap_file::{Endianness, TsResolution};
use smoltcp::phy::Medium;
use smoltcp::time::{Duration, Instant};

use super::{Direction, Format, Link, Timestamps};
use crate::link::{Housekeeping, io_desc};

/// How to write a trace.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    /// pcapng or classic pcap.
    pub format: Format,
    /// Keep at most this many bytes of each packet (the original length is recorded); `None`
    /// keeps whole packets.
    pub snaplen: Option<u32>,
    /// The device's name, for the pcapng interface block (`if_name`).
    pub interface: String,
    /// Where the trace goes, for messages (`trace.pcapng`, `stdout`).
    pub label: String,
    /// Where the records' timestamps come from: the system clock or the host's.
    pub timestamps: Timestamps,
    /// Longest time a record stays in the buffer before [`TraceWriter::housekeeping`] flushes it.
    pub flush_interval: Duration,
}

impl TraceConfig {
    /// pcapng, whole packets, system timestamps, flushed every 200 ms.
    pub fn new(interface: impl Into<String>, label: impl Into<String>) -> TraceConfig {
        TraceConfig {
            format: Format::PcapNg,
            snaplen: None,
            interface: interface.into(),
            label: label.into(),
            timestamps: Timestamps::System,
            flush_interval: Duration::from_millis(200),
        }
    }
}

/// Counters of a trace.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TraceStats {
    /// Packets recorded as read from the device.
    pub inbound: u64,
    /// Packets recorded as written to the device.
    pub outbound: u64,
    /// Packets that did not make it into the trace: buffered when a write failed, or seen after
    /// it. (They are counted in `inbound`/`outbound` only if they were buffered.)
    pub lost: u64,
    /// Bytes handed to the file or pipe so far.
    pub bytes_written: u64,
    /// `write(2)` calls made (full buffers and flushes).
    pub writes: u64,
}

/// The largest link-layer packet a trace records: 64 KiB of IP plus an Ethernet header and tag.
const MAX_PACKET: usize = 65535 + 18;
/// Room in the buffer for one record's framing besides the packet (block header and trailer,
/// EPB fields, the flags option and the end-of-options marker, padding).
const RECORD_OVERHEAD: usize = 64;
/// The buffer: large enough that a full-size record always fits and a busy trace makes few
/// system calls.
const BUFFER_LEN: usize = 256 * 1024;
/// The snap length written in headers when packets are kept whole (tcpdump's default).
const WHOLE_SNAPLEN: u32 = 262_144;

/// Encodes records into a buffer and writes whole buffers to `W`.
pub struct TraceWriter<W: Write> {
    out: Option<W>,
    buf: Vec<u8>,
    format: Format,
    snaplen: usize,
    timestamps: Timestamps,
    flush_interval: Duration,
    label: String,
    /// The pcapng packet block, reused for every packet (its data vector never shrinks).
    epb: Block<'static>,
    /// When the oldest record in `buf` was added, on the owner's clock.
    oldest: Option<Instant>,
    /// The first write error; once set, nothing more is written.
    failed: Option<io::ErrorKind>,
    /// Records in `buf`, lost if the write fails.
    pending: u64,
    stats: TraceStats,
}

impl<W: Write> TraceWriter<W> {
    /// Start a trace of a device of `medium` on `out`: the file header is written at once, so a
    /// file or pipe that cannot be written fails here.
    pub fn new(out: W, medium: Medium, config: &TraceConfig) -> io::Result<TraceWriter<W>> {
        let linktype = Link::of_medium(medium).datalink();
        let snaplen = config
            .snaplen
            .map_or(MAX_PACKET, |n| (n as usize).min(MAX_PACKET));
        let header_snaplen = config.snaplen.unwrap_or(WHOLE_SNAPLEN);
        let mut w = TraceWriter {
            out: Some(out),
            buf: Vec::with_capacity(BUFFER_LEN.max(MAX_PACKET + RECORD_OVERHEAD)),
            format: config.format,
            snaplen,
            timestamps: config.timestamps,
            flush_interval: config.flush_interval,
            label: config.label.clone(),
            epb: Block::EnhancedPacket(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: StdDuration::ZERO,
                original_len: 0,
                data: Cow::Owned(Vec::with_capacity(snaplen)),
                options: vec![EnhancedPacketOption::Flags(0)],
            }),
            oldest: None,
            failed: None,
            pending: 0,
            stats: TraceStats::default(),
        };
        match config.format {
            Format::PcapNg => {
                let shb = SectionHeaderBlock {
                    endianness: Endianness::Little,
                    major_version: 1,
                    minor_version: 0,
                    section_length: -1,
                    options: vec![SectionHeaderOption::UserApplication(Cow::Owned(format!(
                        "tunhost {}",
                        env!("CARGO_PKG_VERSION")
                    )))],
                };
                let idb = InterfaceDescriptionBlock {
                    linktype,
                    snaplen: header_snaplen,
                    options: vec![
                        InterfaceDescriptionOption::IfName(Cow::Owned(config.interface.clone())),
                        InterfaceDescriptionOption::IfDescription(Cow::Borrowed(
                            "tunhost: host side of the device; inbound = read by the host, \
                             outbound = written by the host",
                        )),
                        InterfaceDescriptionOption::IfTsResol(9),
                    ],
                };
                shb.into_block()
                    .write_to::<LittleEndian, _>(&mut w.buf)
                    .map_err(io::Error::other)?;
                idb.into_block()
                    .write_to::<LittleEndian, _>(&mut w.buf)
                    .map_err(io::Error::other)?;
            }
            Format::Pcap => {
                let header = PcapHeader {
                    version_major: 2,
                    version_minor: 4,
                    ts_correction: 0,
                    ts_accuracy: 0,
                    snaplen: header_snaplen,
                    datalink: linktype,
                    ts_resolution: TsResolution::MicroSecond,
                    endianness: Endianness::Little,
                };
                header.write_to(&mut w.buf).map_err(io::Error::other)?;
            }
        }
        w.flush()?;
        Ok(w)
    }

    /// Record one packet seen at `now` (the owner's clock, used for timestamps only with
    /// [`Timestamps::Clock`], and for the flush deadline).
    pub fn record(&mut self, now: Instant, direction: Direction, packet: &[u8]) {
        if self.failed.is_some() || self.out.is_none() {
            self.stats.lost += 1;
            return;
        }
        let ts = match self.timestamps {
            Timestamps::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            Timestamps::Clock => StdDuration::from_micros(now.total_micros().max(0) as u64),
        };
        let ts = ts.min(self.format.latest());
        let kept = &packet[..packet.len().min(self.snaplen)];
        if self.buf.len() + kept.len() + RECORD_OVERHEAD > self.buf.capacity() {
            // Write whole records only: the buffer goes out before this one is added.
            if self.write_out().is_err() {
                self.stats.lost += 1;
                return;
            }
        }
        let mark = self.buf.len();
        let original_len = packet.len() as u32;
        let encoded = match self.format {
            Format::PcapNg => {
                if let Block::EnhancedPacket(epb) = &mut self.epb {
                    epb.timestamp = ts;
                    epb.original_len = original_len;
                    let data = epb.data.to_mut();
                    data.clear();
                    data.extend_from_slice(kept);
                    epb.options[0] = EnhancedPacketOption::Flags(direction.epb_flags());
                }
                self.epb
                    .write_to::<LittleEndian, _>(&mut self.buf)
                    .map(|_| ())
                    .map_err(|_| ())
            }
            Format::Pcap => PcapPacket::new(ts, original_len, kept)
                .write_to::<_, LittleEndian>(&mut self.buf, TsResolution::MicroSecond, u32::MAX)
                .map(|_| ())
                .map_err(|_| ()),
        };
        if encoded.is_err() {
            // Cannot happen (the timestamp fits the format); drop the partial record if it does.
            self.buf.truncate(mark);
            self.stats.lost += 1;
            return;
        }
        match direction {
            Direction::Inbound => self.stats.inbound += 1,
            Direction::Outbound => self.stats.outbound += 1,
        }
        self.pending += 1;
        self.oldest.get_or_insert(now);
    }

    /// Write out what is buffered, and flush the writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.write_out()?;
        if let Some(out) = self.out.as_mut() {
            if let Err(e) = out.flush() {
                return Err(self.fail(e));
            }
        }
        Ok(())
    }

    fn write_out(&mut self) -> io::Result<()> {
        if let Some(kind) = self.failed {
            return Err(kind.into());
        }
        self.oldest = None;
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        let result = out.write_all(&self.buf);
        self.stats.writes += 1;
        match result {
            Ok(()) => {
                self.stats.bytes_written += self.buf.len() as u64;
                self.buf.clear();
                self.pending = 0;
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Remember the first error and say it once; the records in the buffer are lost.
    fn fail(&mut self, e: io::Error) -> io::Error {
        if self.failed.is_none() {
            log::error!(
                "trace {}: cannot write: {}; the host goes on without the trace (records \
                 written so far are kept)",
                self.label,
                io_desc(&e)
            );
            self.failed = Some(e.kind());
        }
        self.buf.clear();
        self.stats.lost += self.pending;
        self.pending = 0;
        e
    }

    /// When the oldest buffered record is due to be flushed (`None`: nothing buffered).
    pub fn poll_at(&self) -> Option<Instant> {
        self.oldest.map(|t| t + self.flush_interval)
    }

    /// Packets recorded and lost, bytes and writes so far.
    pub fn stats(&self) -> TraceStats {
        self.stats
    }

    /// Whether a write failed (the trace stopped there).
    pub fn failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Where the trace goes, as given in the configuration.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Flush and hand back the writer and the final counters.
    pub fn finish(mut self) -> (io::Result<()>, Option<W>, TraceStats) {
        let result = self.flush();
        (result, self.out.take(), self.stats)
    }
}

impl<W: Write> Housekeeping for TraceWriter<W> {
    fn housekeeping(&mut self, now: Instant) -> Option<Instant> {
        if self.poll_at().is_some_and(|t| t <= now) {
            let _ = self.flush();
        }
        self.poll_at()
    }
}

impl<W: Write> Drop for TraceWriter<W> {
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = self.flush();
        }
    }
}

impl<W: Write> std::fmt::Debug for TraceWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceWriter")
            .field("label", &self.label)
            .field("format", &self.format)
            .field("buffered", &self.buf.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// What a [`TraceWriter`] with `config` on `medium` writes for `packets` (time in microseconds,
/// direction, bytes), and its final counters: where the tests of the tracer and of its reader
/// ([`super::reader`]) start.
#[cfg(test)]
pub(crate) fn written(
    config: &TraceConfig,
    medium: Medium,
    packets: &[(i64, Direction, &[u8])],
) -> (Vec<u8>, TraceStats) {
    let mut w = TraceWriter::new(Vec::new(), medium, config).unwrap();
    for &(micros, direction, packet) in packets {
        w.record(Instant::from_micros(micros), direction, packet);
    }
    let (result, out, stats) = w.finish();
    result.unwrap();
    (out.unwrap(), stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::Pcap;
    use pcap_file::DataLink;
    use pcap_file::pcap::PcapParser;
    use pcap_file::pcapng::PcapNgParser;
    use smoltcp::phy::Device;

    fn config(format: Format) -> TraceConfig {
        TraceConfig {
            format,
            timestamps: Timestamps::Clock,
            ..TraceConfig::new("tun7", "test")
        }
    }

    /// Every block of a pcapng buffer, parsed back by pcap-file.
    fn blocks(mut bytes: &[u8]) -> Vec<Block<'static>> {
        let (rest, mut parser) = PcapNgParser::new(bytes).expect("section header");
        bytes = rest;
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let (rest, block) = parser.next_block(bytes).expect("block");
            out.push(block.into_owned());
            bytes = rest;
        }
        out
    }

    #[test]
    fn pcapng_holds_direction_timestamps_and_interface() {
        let (out, stats) = written(
            &config(Format::PcapNg),
            Medium::Ip,
            &[
                (1_500_000, Direction::Inbound, &[0x45; 28]),
                (1_500_001, Direction::Outbound, &[0x45; 29]),
            ],
        );
        assert_eq!((stats.inbound, stats.outbound, stats.lost), (1, 1, 0));
        let blocks = blocks(&out);
        let Block::InterfaceDescription(idb) = &blocks[0] else {
            panic!("{:?}", blocks[0])
        };
        assert_eq!(idb.linktype, DataLink::RAW);
        assert!(
            idb.options
                .contains(&InterfaceDescriptionOption::IfName("tun7".into()))
        );
        assert!(
            idb.options
                .contains(&InterfaceDescriptionOption::IfTsResol(9))
        );
        let epbs: Vec<_> = blocks
            .into_iter()
            .filter_map(|b| b.into_enhanced_packet())
            .collect();
        assert_eq!(epbs.len(), 2);
        // With if_tsresol 9 the raw units are nanoseconds (pcap-file reads them as such).
        assert_eq!(epbs[0].timestamp, StdDuration::from_micros(1_500_000));
        assert_eq!(epbs[0].options, vec![EnhancedPacketOption::Flags(1)]);
        assert_eq!(epbs[1].options, vec![EnhancedPacketOption::Flags(2)]);
        assert_eq!(epbs[1].data.len(), 29);
        assert_eq!(epbs[1].original_len, 29);
    }

    #[test]
    fn snaplen_keeps_the_head_and_the_original_length() {
        let cfg = TraceConfig {
            snaplen: Some(20),
            ..config(Format::PcapNg)
        };
        let packet: Vec<u8> = (0..100).collect();
        let (out, _) = written(&cfg, Medium::Ethernet, &[(0, Direction::Outbound, &packet)]);
        let blocks = blocks(&out);
        let Block::InterfaceDescription(idb) = &blocks[0] else {
            panic!()
        };
        assert_eq!((idb.linktype, idb.snaplen), (DataLink::ETHERNET, 20));
        let epb = blocks[1].clone().into_enhanced_packet().unwrap();
        assert_eq!(&epb.data[..], &packet[..20]);
        assert_eq!(epb.original_len, 100);
    }

    #[test]
    fn classic_pcap_reads_back() {
        let cfg = TraceConfig {
            snaplen: Some(8),
            ..config(Format::Pcap)
        };
        let packet = (2_000_003, Direction::Inbound, &[1; 10][..]);
        let (out, _) = written(&cfg, Medium::Ip, &[packet]);
        let (rest, parser) = PcapParser::new(&out).unwrap();
        assert_eq!(parser.header().datalink, DataLink::RAW);
        assert_eq!(parser.header().ts_resolution, TsResolution::MicroSecond);
        // (pcap-file's checked reader wrongly rejects orig_len > snaplen: read it raw.)
        let (rest, p) = parser.next_raw_packet(rest).unwrap();
        assert!(rest.is_empty());
        assert_eq!((p.ts_sec, p.ts_frac), (2, 3));
        assert_eq!((p.data.len(), p.orig_len), (8, 10));
    }

    #[test]
    fn times_past_the_format_are_written_as_its_latest() {
        // Year ~2128: past classic pcap's 32-bit seconds, within pcapng's 64-bit nanoseconds.
        let packet = (5_000_000_000 * 1_000_000, Direction::Inbound, &[1; 10][..]);
        let (out, stats) = written(&config(Format::Pcap), Medium::Ip, &[packet]);
        assert_eq!(stats.lost, 0, "the packet is kept");
        let (rest, parser) = PcapParser::new(&out).unwrap();
        let (_, p) = parser.next_raw_packet(rest).unwrap();
        assert_eq!((p.ts_sec, p.ts_frac), (u32::MAX, 999_999));
        let (out, _) = written(&config(Format::PcapNg), Medium::Ip, &[packet]);
        let epb = blocks(&out)
            .into_iter()
            .find_map(|b| b.into_enhanced_packet())
            .unwrap();
        assert_eq!(epb.timestamp, StdDuration::from_secs(5_000_000_000));
    }

    #[test]
    fn nothing_is_written_before_a_flush_or_a_full_buffer() {
        let mut w = TraceWriter::new(Vec::new(), Medium::Ip, &config(Format::PcapNg)).unwrap();
        let header = w.stats().bytes_written;
        assert_eq!(w.poll_at(), None);
        w.record(Instant::from_millis(10), Direction::Inbound, &[0; 40]);
        w.record(Instant::from_millis(50), Direction::Inbound, &[0; 40]);
        assert_eq!(w.stats().bytes_written, header);
        // Due 200 ms after the oldest record.
        assert_eq!(w.poll_at(), Some(Instant::from_millis(210)));
        assert_eq!(
            w.housekeeping(Instant::from_millis(209)),
            Some(Instant::from_millis(210))
        );
        assert_eq!(w.stats().writes, 1);
        assert_eq!(w.housekeeping(Instant::from_millis(210)), None);
        assert_eq!(w.stats().writes, 2);
        // A busy trace writes whole buffers, each ending on a record boundary.
        for i in 0..10_000 {
            w.record(
                Instant::from_millis(300),
                Direction::Outbound,
                &[i as u8; 1500],
            );
        }
        let st = w.stats();
        assert!(st.writes > 10 && st.writes < 100, "{st:?}");
        let (_, out, _) = w.finish();
        assert_eq!(blocks(&out.unwrap()).len(), 1 + 2 + 10_000);
    }

    /// A writer that accepts `room` bytes, then fails.
    struct Full {
        room: usize,
        data: Vec<u8>,
    }

    impl Write for Full {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            let n = b.len().min(self.room);
            self.room -= n;
            self.data.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_error_stops_the_trace_and_counts_the_losses() {
        let out = Full {
            room: 4096,
            data: Vec::new(),
        };
        let mut w = TraceWriter::new(out, Medium::Ip, &config(Format::PcapNg)).unwrap();
        for _ in 0..10 {
            w.record(Instant::ZERO, Direction::Inbound, &[0; 1000]);
        }
        assert!(w.flush().is_err());
        assert!(w.failed());
        w.record(Instant::ZERO, Direction::Inbound, &[0; 1000]);
        let (r, out, stats) = w.finish();
        assert!(r.is_err());
        assert_eq!(stats.inbound, 10);
        // 10 records in the buffer when the write failed, 1 after.
        assert_eq!(stats.lost, 11);
        // What reached the file is a prefix of a valid trace.
        assert_eq!(out.unwrap().data.len(), 4096);
    }

    #[test]
    fn the_device_records_both_directions_in_order() {
        use smoltcp::phy::{Loopback, RxToken as _, TxToken as _};
        let mut dev = Pcap::new(
            Loopback::new(Medium::Ip),
            Vec::new(),
            &config(Format::PcapNg),
        )
        .unwrap();
        let t = Instant::from_millis(5);
        dev.transmit(t)
            .unwrap()
            .consume(3, |b| b.copy_from_slice(&[1, 2, 3]));
        let (rx, tx) = dev.receive(t).unwrap();
        rx.consume(|b| assert_eq!(b, [1, 2, 3]));
        tx.consume(2, |b| b.copy_from_slice(&[4, 5]));
        let (_, _, out, stats) = dev.finish();
        assert_eq!((stats.inbound, stats.outbound), (1, 2));
        let epbs: Vec<_> = blocks(&out.unwrap())
            .into_iter()
            .filter_map(|b| b.into_enhanced_packet())
            .map(|e| (e.options[0].clone(), e.data.to_vec()))
            .collect();
        assert_eq!(
            epbs,
            vec![
                (EnhancedPacketOption::Flags(2), vec![1, 2, 3]),
                (EnhancedPacketOption::Flags(1), vec![1, 2, 3]),
                (EnhancedPacketOption::Flags(2), vec![4, 5]),
            ]
        );
    }
}

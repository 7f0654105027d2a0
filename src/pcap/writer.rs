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
//! the [`Housekeeping`] hook. A write to a file always ends on a record boundary, so a process
//! killed with SIGKILL leaves a trace whose records up to the last flush are whole (at most the
//! record being written when the kill came is cut).
//!
//! A slow reader never holds up the owner: on a non-blocking pipe or socket (see
//! `live::TraceSpec::open`) a write that would block writes what fits and leaves the rest of the
//! buffer, from the exact byte where the write stopped, for a later turn, when the next flush is
//! due ([`TraceWriter::poll_at`]; no retry before it, so no spinning). The stream stays whole
//! records in order: nothing is skipped or written twice, and new records are only added behind
//! the ones waiting. A packet that does not fit in the buffer meanwhile is left out of the trace
//! and counted in [`TraceStats::lost_slow`]. [`TraceWriter::finish`] waits for such a reader
//! for at most [`FINAL_WAIT`] (longer, up to [`FINAL_WAIT_CUT`], only to finish a record the
//! reader has the head of), then counts what is still buffered as lost the same way.
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
    /// Packets that did not make it into the trace, for either reason: the reader was too slow
    /// (`lost_slow` of them), or a write failed (the rest: buffered when it failed, or seen
    /// after it). They are counted in `inbound`/`outbound` only if they were buffered.
    pub lost: u64,
    /// Of `lost`, the packets left out because the reader was too slow: the buffer was full of
    /// records waiting for it, or still held some when [`TraceWriter::finish`] gave up waiting.
    pub lost_slow: u64,
    /// Bytes handed to the file or pipe so far.
    pub bytes_written: u64,
    /// `write(2)` calls made (full buffers, flushes, and retries for a slow reader).
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
/// How long [`TraceWriter::finish`] waits for a reader that is behind before it gives up on
/// the records still buffered.
pub const FINAL_WAIT: StdDuration = StdDuration::from_millis(200);
/// How long, in all, [`TraceWriter::finish`] waits when the reader holds the head of a record
/// but not its end: long enough for any reader that still reads to get the whole record.
pub const FINAL_WAIT_CUT: StdDuration = StdDuration::from_millis(400);
/// When to try again after a write that would have blocked but took some bytes: a reader that
/// reads, only slower than the packets come, gets a pipe's worth every few milliseconds.
const RETRY_SOON: Duration = Duration::from_millis(5);
/// How long [`TraceWriter::finish`] sleeps between two tries to write to a reader that is behind.
const FINAL_RETRY: StdDuration = StdDuration::from_millis(2);

/// Encodes records into a buffer and writes whole buffers to `W`.
pub struct TraceWriter<W: Write> {
    out: Option<W>,
    /// What is not written yet: the end of the unit (`lead` bytes) the last write stopped in,
    /// then whole records.
    buf: Vec<u8>,
    /// The first `lead` bytes of `buf` are one unit of its own: the file header until it is all
    /// written, or the rest of a record whose head a short write wrote. 0: `buf` starts with a
    /// whole record.
    lead: usize,
    /// Whether some of the lead unit is written already (a reader holds the head of a record).
    cut: bool,
    /// Whether the file header is all written.
    header_out: bool,
    format: Format,
    snaplen: usize,
    timestamps: Timestamps,
    flush_interval: Duration,
    label: String,
    /// The pcapng packet block, reused for every packet (its data vector never shrinks).
    epb: Block<'static>,
    /// When `buf` is next to be written, on the owner's clock: the oldest record's time plus
    /// the flush interval, or a retry one flush interval after a write that would have blocked.
    due: Option<Instant>,
    /// The latest time the owner gave (for the retry deadline of a write that would block).
    now: Instant,
    /// The last write would have blocked: no more tries before `due`.
    blocked: bool,
    /// The first write error; once set, nothing more is written.
    failed: Option<io::ErrorKind>,
    /// Packets in `buf` (whole, or the lead unit), lost if the write fails.
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
            lead: 0,
            cut: false,
            header_out: false,
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
            due: None,
            now: Instant::ZERO,
            blocked: false,
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
        // The header is the first unit; a reader that is not reading yet gets it later.
        w.lead = w.buf.len();
        w.write_out(w.buf.len())?;
        Ok(w)
    }

    /// Record one packet seen at `now` (the owner's clock, used for timestamps only with
    /// [`Timestamps::Clock`], and for the flush deadline).
    pub fn record(&mut self, now: Instant, direction: Direction, packet: &[u8]) {
        self.record_with_comment(now, direction, packet, "");
    }

    /// [`TraceWriter::record`] with a comment on the packet (pcapng `opt_comment`, shown by
    /// Wireshark; tshark's `frame.comment`), unless `comment` is empty. Classic pcap has no
    /// place for it: the packet is recorded without.
    pub fn record_with_comment(
        &mut self,
        now: Instant,
        direction: Direction,
        packet: &[u8],
        comment: &str,
    ) {
        self.now = now;
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
        let overhead = RECORD_OVERHEAD + comment.len() + 8;
        let fits = |buf: &Vec<u8>| buf.len() + kept.len() + overhead <= buf.capacity();
        if !fits(&self.buf) {
            // Whole records only: the buffer goes out before this one is added. A reader that
            // is behind is tried once, then not before the retry is due.
            if !self.blocked && self.write_out(self.buf.len()).is_err() {
                self.stats.lost += 1;
                return;
            }
            if !fits(&self.buf) {
                self.left_out();
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
                    epb.options.truncate(1);
                    if !comment.is_empty() {
                        epb.options
                            .push(EnhancedPacketOption::Comment(Cow::Owned(comment.into())));
                    }
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
        self.due.get_or_insert(now + self.flush_interval);
    }

    /// A packet that does not fit in a buffer full of records waiting for a slow reader.
    fn left_out(&mut self) {
        if self.stats.lost_slow == 0 {
            log::warn!(
                "trace {}: the reader is not keeping up; packets are left out of the trace \
                 (counted, and reported at the end)",
                self.label
            );
        }
        self.stats.lost += 1;
        self.stats.lost_slow += 1;
    }

    /// Write out what is buffered, and flush the writer. A reader that is behind (the write
    /// would block) is `Err` of kind `WouldBlock`: what it did not take stays buffered, and is
    /// written on a later flush.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.write_out(self.buf.len())? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if let Some(out) = self.out.as_mut() {
            if let Err(e) = out.flush() {
                return Err(self.fail(e));
            }
        }
        Ok(())
    }

    /// Write the first `len` bytes of the buffer, or what the writer takes of them before it
    /// would block: `Ok(false)` then, with the next try due a flush interval later.
    fn write_out(&mut self, len: usize) -> io::Result<bool> {
        if let Some(kind) = self.failed {
            return Err(kind.into());
        }
        let Some(out) = self.out.as_mut() else {
            return Ok(true);
        };
        let mut done = 0;
        let mut error = None;
        while done < len && error.is_none() {
            self.stats.writes += 1;
            match out.write(&self.buf[done..len]) {
                Ok(0) => error = Some(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => error = Some(e),
            }
        }
        self.stats.bytes_written += done as u64;
        self.written(done);
        if let Some(e) = error {
            return Err(self.fail(e));
        }
        if self.buf.is_empty() {
            self.blocked = false;
            self.due = None;
            return Ok(true);
        }
        if done < len {
            // A reader that took something is likely to take more soon; one that took nothing
            // is tried again a flush interval later.
            let wait = if done > 0 {
                self.flush_interval.min(RETRY_SOON)
            } else {
                self.flush_interval
            };
            self.blocked = true;
            self.due = Some(self.now + wait);
            return Ok(false);
        }
        Ok(true)
    }

    /// The first `n` bytes of the buffer are written: count the packets they finish, and keep
    /// the rest (the end of a record cut by a short write first) at the front.
    fn written(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if n == self.buf.len() {
            // Everything: the usual case, with no need to walk the records.
            self.finished_unit();
            self.pending = 0;
            self.buf.clear();
            (self.lead, self.cut) = (0, false);
            return;
        }
        let mut end = self.lead;
        if end > 0 && end <= n {
            self.finished_unit();
        }
        while end < n {
            end += self.record_len(end);
            if end <= n {
                self.pending = self.pending.saturating_sub(1);
            }
        }
        self.lead = end - n;
        // Past the header, any lead is the end of a record; the header is cut if it is the lead.
        self.cut = self.lead > 0;
        self.buf.drain(..n);
    }

    /// The lead unit is all written: the header, or a packet's record.
    fn finished_unit(&mut self) {
        if !self.header_out {
            self.header_out = true;
        } else if self.lead > 0 {
            self.pending = self.pending.saturating_sub(1);
        }
    }

    /// The length of the record at `at` in the buffer, from its own length field. The records
    /// are this writer's own and whole; an impossible length ends the walk at the buffer's end.
    fn record_len(&self, at: usize) -> usize {
        let field = |offset: usize| {
            let bytes = self.buf.get(at + offset..at + offset + 4)?;
            Some(u32::from_le_bytes(bytes.try_into().ok()?) as usize)
        };
        let len = match self.format {
            // Block type, then the block's total length.
            Format::PcapNg => field(4),
            // Timestamp (8 bytes), captured length, original length, then the data.
            Format::Pcap => field(8).map(|l| 16 + l),
        };
        len.filter(|&l| l > 0).unwrap_or(self.buf.len() - at)
    }

    /// Remember the first error and say it once; the records in the buffer are lost.
    fn fail(&mut self, e: io::Error) -> io::Error {
        if self.failed.is_none() {
            let why = match e.kind() {
                io::ErrorKind::BrokenPipe => "the reader closed the pipe".to_string(),
                _ => io_desc(&e),
            };
            log::error!(
                "trace {}: cannot write: {why}; the host goes on without the trace (records \
                 written so far are kept)",
                self.label,
            );
            self.failed = Some(e.kind());
        }
        self.drop_buffered();
        e
    }

    /// Empty the buffer: what it held is not going anywhere any more.
    fn drop_buffered(&mut self) {
        self.buf.clear();
        (self.lead, self.cut) = (0, false);
        (self.due, self.blocked) = (None, false);
        self.stats.lost += self.pending;
        self.pending = 0;
    }

    /// The flush at the end: wait for a reader that is behind, but not forever (see
    /// [`FINAL_WAIT`]); what it has not taken then is counted as lost.
    fn flush_final(&mut self) -> io::Result<()> {
        let start = std::time::Instant::now();
        loop {
            let waited = start.elapsed();
            let result = if waited < FINAL_WAIT {
                self.flush()
            } else if self.cut && waited < FINAL_WAIT_CUT {
                // Only the end of the record the reader has the head of.
                self.write_out(self.lead).map(|_| ())
            } else {
                self.give_up();
                return Ok(());
            };
            match result {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Ok(()) if !self.buf.is_empty() => {}
                other => return other,
            }
            std::thread::sleep(FINAL_RETRY);
        }
    }

    /// The end, with records the reader did not take: count them as lost to a slow reader.
    fn give_up(&mut self) {
        if self.cut {
            log::warn!(
                "trace {}: the reader did not take the rest of a record within {} ms; the trace \
                 ends inside that record",
                self.label,
                FINAL_WAIT_CUT.as_millis()
            );
        }
        self.stats.lost_slow += self.pending;
        self.drop_buffered();
    }

    /// When the buffer is due to be written (`None`: nothing buffered): a flush interval after
    /// its oldest record; after a write that would have blocked, 5 ms later if the reader took
    /// some of it, a flush interval later if it took nothing.
    pub fn poll_at(&self) -> Option<Instant> {
        self.due
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

    /// Flush and hand back the writer and the final counters. A reader that is behind gets
    /// [`FINAL_WAIT`] to take the rest ([`FINAL_WAIT_CUT`] to finish a record it has the head
    /// of); what it has not taken then is counted in [`TraceStats::lost_slow`], not an error.
    pub fn finish(mut self) -> (io::Result<()>, Option<W>, TraceStats) {
        let result = self.flush_final();
        (result, self.out.take(), self.stats)
    }
}

impl<W: Write> Housekeeping for TraceWriter<W> {
    fn housekeeping(&mut self, now: Instant) -> Option<Instant> {
        self.now = now;
        if self.due.is_some_and(|t| t <= now) {
            let _ = self.flush();
        }
        self.due
    }
}

impl<W: Write> Drop for TraceWriter<W> {
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = self.flush_final();
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

/// A file written beside its final name and renamed into place by [`StagedFile::commit`], for a
/// trace that must not replace an existing file until it is whole (an offline replay): a run that
/// fails, is refused or is killed leaves the file of that name as it was. Dropped without a
/// commit, the staged file is removed (a killed process leaves it, under a hidden name of its
/// own, beside the file).
///
/// A path that is not a regular file (a named pipe, `/dev/null`) is written in place: renaming
/// over it would replace it. A symbolic link is followed: its target is replaced, not the link.
#[derive(Debug)]
pub struct StagedFile {
    file: Option<std::fs::File>,
    /// Where it is written, and where it goes at the end (the same path when written in place).
    staged: std::path::PathBuf,
    path: std::path::PathBuf,
}

impl StagedFile {
    /// Create the staged file beside `path` (`.NAME.tunhost-PID.partial`), or open `path`
    /// itself if it is not a regular file.
    pub fn create(path: &std::path::Path) -> io::Result<StagedFile> {
        use std::fs;
        let target = match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path)?,
            _ => path.to_path_buf(),
        };
        match fs::metadata(&target) {
            Ok(m) if m.is_dir() => return Err(io::ErrorKind::IsADirectory.into()),
            Ok(m) if !m.is_file() => {
                let file = fs::OpenOptions::new().write(true).open(&target)?;
                return Ok(StagedFile {
                    file: Some(file),
                    staged: target.clone(),
                    path: target,
                });
            }
            _ => {}
        }
        let name = target.file_name().ok_or(io::ErrorKind::InvalidInput)?;
        let mut hidden = std::ffi::OsString::from(".");
        hidden.push(name);
        hidden.push(format!(".tunhost-{}.partial", std::process::id()));
        let staged = target.with_file_name(hidden);
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&staged)?;
        Ok(StagedFile {
            file: Some(file),
            staged,
            path: target,
        })
    }

    /// Where the file is written until [`StagedFile::commit`].
    pub fn staged_path(&self) -> &std::path::Path {
        &self.staged
    }

    /// Whether it is written beside its final name (`false`: in place, not a regular file).
    pub fn is_staged(&self) -> bool {
        self.staged != self.path
    }

    /// Write it to disk and rename it into place.
    pub fn commit(mut self) -> io::Result<()> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        if self.staged == self.path {
            return Ok(());
        }
        let done = file
            .sync_all()
            .and_then(|()| std::fs::rename(&self.staged, &self.path));
        if done.is_err() {
            let _ = std::fs::remove_file(&self.staged);
        }
        done
    }
}

impl Write for StagedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if self.file.take().is_some() && self.staged != self.path {
            let _ = std::fs::remove_file(&self.staged);
        }
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
    use crate::pcap::{Capture, Pcap};
    use pcap_file::DataLink;
    use pcap_file::pcap::PcapParser;
    use pcap_file::pcapng::PcapNgParser;
    use smoltcp::phy::Device;
    use std::cell::RefCell;
    use std::rc::Rc;

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

    /// The far side of a [`Pipe`], which the test drives.
    struct Far {
        /// Bytes the next writes may take.
        room: usize,
        /// When `room` is used up: a write fails (`None`: a full disk), or would block, and the
        /// reader takes this many bytes by the next try.
        refill: Option<usize>,
        /// What was written.
        data: Vec<u8>,
    }

    /// A pipe or disk of limited room.
    #[derive(Clone)]
    struct Pipe(Rc<RefCell<Far>>);

    impl Pipe {
        fn new(room: usize, refill: Option<usize>) -> Pipe {
            let data = Vec::new();
            Pipe(Rc::new(RefCell::new(Far { room, refill, data })))
        }

        /// The reader takes (or makes room for) `room` bytes.
        fn set_room(&self, room: usize) {
            self.0.borrow_mut().room = room;
        }

        fn data(&self) -> Vec<u8> {
            self.0.borrow().data.clone()
        }
    }

    impl Write for Pipe {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let mut far = self.0.borrow_mut();
            if far.room == 0 {
                return match far.refill {
                    None => Err(io::Error::new(io::ErrorKind::StorageFull, "disk full")),
                    Some(n) => {
                        far.room = n;
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                };
            }
            let n = b.len().min(far.room);
            far.room -= n;
            far.data.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Packet `seq`: its number, then bytes up to a length of its own.
    fn numbered(seq: u32) -> Vec<u8> {
        let len = 20 + (seq as usize * 37) % 1400;
        let mut p = vec![seq as u8; len];
        p[..4].copy_from_slice(&seq.to_be_bytes());
        p
    }

    /// The packets of a trace, which must be whole records only, checked against [`numbered`];
    /// their numbers.
    fn numbers(trace: &[u8]) -> Vec<u32> {
        let capture = Capture::parse(trace).expect("a trace of whole records");
        assert!(capture.damage.is_clean(), "{}", capture.damage);
        let mut seqs = Vec::new();
        for p in capture.packets {
            let seq = u32::from_be_bytes(p.data[..4].try_into().unwrap());
            assert_eq!(p.data, numbered(seq), "packet {seq}");
            seqs.push(seq);
        }
        seqs
    }

    /// The whole packet records at the start of a pcapng stream that may end inside one.
    fn whole_packets(mut bytes: &[u8]) -> usize {
        let (rest, mut parser) = PcapNgParser::new(bytes).expect("section header");
        bytes = rest;
        let mut n = 0;
        while let Ok((rest, block)) = parser.next_block(bytes) {
            n += usize::from(matches!(block, Block::EnhancedPacket(_)));
            bytes = rest;
        }
        n
    }

    #[test]
    fn a_write_error_stops_the_trace_and_counts_the_losses() {
        let pipe = Pipe::new(4096, None);
        let mut w = TraceWriter::new(pipe.clone(), Medium::Ip, &config(Format::PcapNg)).unwrap();
        for _ in 0..10 {
            w.record(Instant::ZERO, Direction::Inbound, &[0; 1000]);
        }
        assert!(w.flush().is_err());
        assert!(w.failed());
        assert_eq!(w.poll_at(), None, "nothing more to do");
        w.record(Instant::ZERO, Direction::Inbound, &[0; 1000]);
        let (r, _, stats) = w.finish();
        assert!(r.is_err());
        assert_eq!(stats.inbound, 10);
        // What reached the file is a prefix of a valid trace: the records it holds whole are
        // not lost; the rest of the 10 buffered when the write failed are, and 1 after.
        let data = pipe.data();
        assert_eq!(data.len(), 4096);
        let whole = whole_packets(&data) as u64;
        assert_eq!(whole, 3);
        assert_eq!(stats.lost, 10 - whole + 1);
        assert_eq!(stats.lost_slow, 0, "no reader was slow");
    }

    #[test]
    fn a_slow_reader_gets_whole_records_in_order_and_the_rest_is_counted() {
        for format in [Format::PcapNg, Format::Pcap] {
            // The reader takes 3000 bytes, then an odd 30011 bytes every 100 ms: short writes
            // cut records, and packets come faster than it reads.
            let pipe = Pipe::new(3000, Some(0));
            let mut w = TraceWriter::new(pipe.clone(), Medium::Ip, &config(format)).unwrap();
            let n = 2000;
            for seq in 0..n {
                let now = Instant::from_millis(i64::from(seq));
                w.record(now, Direction::Inbound, &numbered(seq));
                w.housekeeping(now);
                if seq % 100 == 99 {
                    pipe.set_room(30_011);
                }
            }
            // At the end the reader catches up.
            pipe.set_room(usize::MAX);
            let (r, _, stats) = w.finish();
            r.unwrap();
            let seqs = numbers(&pipe.data());
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{format:?}: in order");
            assert_eq!(seqs.len() as u64, stats.inbound, "{format:?}: {stats:?}");
            assert_eq!(seqs.len() as u64 + stats.lost, u64::from(n), "{format:?}");
            assert!(stats.lost > 0, "{format:?}: the reader was too slow");
            assert_eq!(stats.lost_slow, stats.lost, "{format:?}: no write failed");
        }
    }

    #[test]
    fn a_stalled_reader_is_tried_when_due_not_on_every_packet() {
        let pipe = Pipe::new(0, Some(0));
        let mut w = TraceWriter::new(pipe.clone(), Medium::Ip, &config(Format::PcapNg)).unwrap();
        // The header would block: it is kept, and tried again a flush interval later.
        assert_eq!(w.stats().writes, 1);
        assert_eq!(w.poll_at(), Some(Instant::from_millis(200)));
        for _ in 0..1000 {
            w.record(Instant::from_millis(1), Direction::Inbound, &[0; 1500]);
        }
        // The buffer is full; the packets that do not fit are counted, not tried.
        let st = w.stats();
        assert_eq!(st.writes, 1);
        assert_eq!(st.inbound + st.lost_slow, 1000);
        assert!(st.inbound > 100 && st.lost_slow > 100, "{st:?}");
        assert_eq!(
            w.housekeeping(Instant::from_millis(199)),
            Some(Instant::from_millis(200))
        );
        assert_eq!(w.stats().writes, 1, "not before it is due");
        // When due, one try; the reader took nothing, so the next is a flush interval later.
        assert_eq!(
            w.housekeeping(Instant::from_millis(200)),
            Some(Instant::from_millis(400))
        );
        assert_eq!(w.stats().writes, 2);
        // The reader takes some: the next try is soon.
        pipe.set_room(1000);
        assert_eq!(
            w.housekeeping(Instant::from_millis(400)),
            Some(Instant::from_millis(405))
        );
        assert_eq!(w.stats().writes, 4, "1000 bytes, then it would block");
        // The reader catches up: everything goes out, nothing is due.
        pipe.set_room(usize::MAX);
        assert_eq!(w.housekeeping(Instant::from_millis(405)), None);
        let (r, _, stats) = w.finish();
        r.unwrap();
        let capture = Capture::parse(&pipe.data()).expect("whole records");
        assert!(capture.damage.is_clean(), "{}", capture.damage);
        assert_eq!(capture.packets.len() as u64, stats.inbound);
        assert_eq!(stats.lost, stats.lost_slow);
    }

    #[test]
    fn finish_gives_up_on_a_stalled_reader() {
        // The reader takes the header and a few records, the head of the next, then nothing.
        let pipe = Pipe::new(5000, Some(0));
        let mut w = TraceWriter::new(pipe.clone(), Medium::Ip, &config(Format::PcapNg)).unwrap();
        for _ in 0..10 {
            w.record(Instant::ZERO, Direction::Inbound, &[0; 1000]);
        }
        let start = std::time::Instant::now();
        let (r, _, stats) = w.finish();
        assert!(start.elapsed() < StdDuration::from_secs(2), "it ends");
        r.unwrap();
        let data = pipe.data();
        assert_eq!(data.len(), 5000);
        // The trace ends inside a record: the reader never took its end.
        let whole = whole_packets(&data) as u64;
        let damage = Capture::parse(&data).unwrap().damage;
        assert!(
            matches!(
                damage.stopped,
                Some(crate::pcap::CaptureError::Truncated { .. })
            ),
            "{damage:?}"
        );
        assert_eq!(
            (stats.inbound, stats.lost, stats.lost_slow),
            (10, 10 - whole, 10 - whole)
        );
    }

    #[test]
    fn finish_completes_the_record_a_slow_reader_has_the_head_of() {
        // The reader takes 100 bytes between two tries: far too slow for 200 records in the
        // time `finish` waits, fast enough to finish the one it has the head of.
        let pipe = Pipe::new(5000, Some(100));
        let mut w = TraceWriter::new(pipe.clone(), Medium::Ip, &config(Format::PcapNg)).unwrap();
        for seq in 0..200 {
            w.record(Instant::ZERO, Direction::Inbound, &numbered(seq));
        }
        let (r, _, stats) = w.finish();
        r.unwrap();
        let seqs = numbers(&pipe.data());
        assert_eq!(seqs, (0..seqs.len() as u32).collect::<Vec<_>>());
        assert!(stats.lost_slow > 0);
        assert_eq!(seqs.len() as u64 + stats.lost_slow, 200);
        assert_eq!(stats.lost, stats.lost_slow);
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

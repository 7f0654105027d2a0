//! [`Pcap`]: a `phy::Device` wrapper that records every packet read from or written to the
//! device it wraps into a [`TraceWriter`].
//!
//! It sits between any `phy::Device` and smoltcp's `Interface`. It records a packet the moment
//! the interface takes it from the device (before smoltcp looks at it, so packets the stack then
//! drops are in the trace too) and the moment the interface hands one to the device, in that
//! order.

use std::cell::RefCell;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};

use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::time::Instant;

use super::Direction;
use super::writer::{TraceConfig, TraceStats, TraceWriter};
use crate::link::{FaultRecord, Housekeeping};

/// A `phy::Device` that records every packet going through `D` into a [`TraceWriter`], or,
/// made with [`Pcap::passthrough`], records nothing (one device type whether a run is traced or
/// not).
///
/// ```no_run
/// use smoltcp::phy::{Loopback, Medium};
/// use tunhost::pcap::{Pcap, TraceConfig};
///
/// let file = std::fs::File::create("trace.pcapng")?;
/// let device = Pcap::new(Loopback::new(Medium::Ip), file, &TraceConfig::new("lo", "trace.pcapng"))?;
/// // ... use `device` as the device of a smoltcp Interface; call `device.finish()` at the end.
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Pcap<D, W: Write> {
    inner: D,
    writer: Writer<W>,
    /// A bad link above says what to record ([`FaultRecord`]): the tokens record nothing.
    told: bool,
}

/// The recorder, if the device records.
type Writer<W> = Option<RefCell<TraceWriter<W>>>;

impl<D: Device, W: Write> Pcap<D, W> {
    /// Wrap `inner`, writing the trace to `out` (the header is written at once).
    pub fn new(inner: D, out: W, config: &TraceConfig) -> io::Result<Pcap<D, W>> {
        let medium = inner.capabilities().medium;
        let writer = TraceWriter::new(out, medium, config)?;
        Ok(Pcap {
            inner,
            writer: Some(RefCell::new(writer)),
            told: false,
        })
    }
}

impl<D, W: Write> Pcap<D, W> {
    /// Wrap `inner` without recording anything: the packets pass through untouched.
    pub fn passthrough(inner: D) -> Pcap<D, W> {
        Pcap {
            inner,
            writer: None,
            told: false,
        }
    }

    /// Whether this device records its packets.
    pub fn is_tracing(&self) -> bool {
        self.writer.is_some()
    }

    /// The device under the tracer.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The device under the tracer, to change.
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// The trace's counters (all zero when nothing is recorded).
    pub fn stats(&self) -> TraceStats {
        self.writer
            .as_ref()
            .map_or_else(TraceStats::default, |w| w.borrow().stats())
    }

    /// Whether a write failed (the trace stopped there).
    pub fn failed(&self) -> bool {
        self.writer.as_ref().is_some_and(|w| w.borrow().failed())
    }

    /// Write out everything recorded so far (`Err` of kind `WouldBlock` when the reader is
    /// behind: the rest stays buffered; see [`TraceWriter::flush`]).
    pub fn flush(&mut self) -> io::Result<()> {
        self.writer.as_mut().map_or(Ok(()), |w| w.get_mut().flush())
    }

    /// Flush (waiting a bounded time for a reader that is behind: see
    /// [`TraceWriter::finish`]), and hand back the device, the writer (`None` when nothing was
    /// recorded) and the final counters.
    pub fn finish(self) -> (D, io::Result<()>, Option<W>, TraceStats) {
        match self.writer {
            Some(w) => {
                let (result, out, stats) = w.into_inner().finish();
                (self.inner, result, out, stats)
            }
            None => (self.inner, Ok(()), None, TraceStats::default()),
        }
    }
}

/// Record `packet` if there is a recorder.
fn record<W: Write>(
    writer: Option<&RefCell<TraceWriter<W>>>,
    now: Instant,
    direction: Direction,
    packet: &[u8],
) {
    if let Some(w) = writer {
        w.borrow_mut().record(now, direction, packet);
    }
}

/// Under a bad link ([`Faults`](crate::link::Faults)), the trace holds what the link says: every
/// packet as it crossed the device, with what was done to it as the packet's comment.
impl<D, W: Write> FaultRecord for Pcap<D, W> {
    fn take_over_records(&mut self) {
        self.told = true;
    }

    fn record(&mut self, now: Instant, inbound: bool, packet: &[u8], note: &str) {
        if let Some(w) = self.writer.as_mut() {
            let direction = if inbound {
                Direction::Inbound
            } else {
                Direction::Outbound
            };
            w.get_mut()
                .record_with_comment(now, direction, packet, note);
        }
    }
}

impl<D: Housekeeping, W: Write> Housekeeping for Pcap<D, W> {
    fn housekeeping(&mut self, now: Instant) -> Option<Instant> {
        let inner = self.inner.housekeeping(now);
        let own = self
            .writer
            .as_mut()
            .and_then(|w| w.get_mut().housekeeping(now));
        match (inner, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn check(&self) -> crate::link::Result<()> {
        self.inner.check()
    }
}

impl<D: AsFd, W: Write> AsFd for Pcap<D, W> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl<D: Device, W: Write> Device for Pcap<D, W> {
    type RxToken<'a>
        = RxToken<'a, D::RxToken<'a>, W>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, D::TxToken<'a>, W>
    where
        Self: 'a;

    fn receive(&mut self, now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let writer = self.writer.as_ref().filter(|_| !self.told);
        let (rx, tx) = self.inner.receive(now)?;
        Some((
            RxToken {
                inner: rx,
                writer,
                now,
            },
            TxToken {
                inner: tx,
                writer,
                now,
            },
        ))
    }

    fn transmit(&mut self, now: Instant) -> Option<Self::TxToken<'_>> {
        let writer = self.writer.as_ref().filter(|_| !self.told);
        let tx = self.inner.transmit(now)?;
        Some(TxToken {
            inner: tx,
            writer,
            now,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// A received packet; consuming it records it, then hands it to the stack.
pub struct RxToken<'a, T, W: Write> {
    inner: T,
    writer: Option<&'a RefCell<TraceWriter<W>>>,
    now: Instant,
}

impl<T: phy::RxToken, W: Write> phy::RxToken for RxToken<'_, T, W> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let (writer, now) = (self.writer, self.now);
        self.inner.consume(|packet| {
            // Recorded before the stack sees it: replies it sends from `f` come after it.
            record(writer, now, Direction::Inbound, packet);
            f(packet)
        })
    }

    fn meta(&self) -> phy::PacketMeta {
        self.inner.meta()
    }
}

/// Room for a packet to send; consuming it lets the stack fill it, records it, then sends it.
pub struct TxToken<'a, T, W: Write> {
    inner: T,
    writer: Option<&'a RefCell<TraceWriter<W>>>,
    now: Instant,
}

impl<T: phy::TxToken, W: Write> phy::TxToken for TxToken<'_, T, W> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let (writer, now) = (self.writer, self.now);
        self.inner.consume(len, |packet| {
            let result = f(packet);
            record(writer, now, Direction::Outbound, packet);
            result
        })
    }

    fn set_meta(&mut self, meta: phy::PacketMeta) {
        self.inner.set_meta(meta)
    }
}

//! The tracer's hot path allocates nothing: a counting allocator (this test binary only) sees no
//! allocation on the recording thread while packets go through `trace::Pcap`, to a writer that
//! takes everything or to a reader that is behind.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Write};

use tunhost::pcap::{Format, Pcap, TraceConfig, TraceStats};
use tunhost::smoltcp::phy::{Device, Loopback, Medium, RxToken, TxToken};
use tunhost::smoltcp::time::Instant;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded as is to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// A pipe to a reader that is behind: every other write would block, the others take an odd
/// 777 bytes (short writes that cut records).
struct Trickle {
    calls: u64,
}

impl Write for Trickle {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.calls % 2 == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(b.len().min(777))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Record 10 000 packets each way through a tracer on `out` (flushed every 10 packets), after
/// a warm-up: the allocations the tracer made, and its counters.
fn allocations_recording(out: impl Write, format: Format) -> (u64, TraceStats) {
    let config = TraceConfig {
        format,
        snaplen: Some(96),
        ..TraceConfig::new("lo", "sink")
    };
    let mut dev = Pcap::new(Loopback::new(Medium::Ip), out, &config).unwrap();
    let packet = [0x45u8; 1500];
    // Warm up: the loopback's queue grows once.
    for _ in 0..10 {
        dev.transmit(Instant::ZERO)
            .unwrap()
            .consume(1500, |b| b.copy_from_slice(&packet));
        let (rx, _) = dev.receive(Instant::ZERO).unwrap();
        rx.consume(|_| ());
    }
    let before = allocations();
    let mut loopback_allocs = 0;
    for i in 0..10_000 {
        dev.transmit(Instant::from_micros(i))
            .unwrap()
            .consume(1500, |b| b.copy_from_slice(&packet));
        let (rx, _) = dev.receive(Instant::from_micros(i)).unwrap();
        rx.consume(|_| ());
        // smoltcp's Loopback allocates a Vec for each packet it queues: count it out.
        loopback_allocs += 1;
        if i % 10 == 0 {
            // A slow reader: the rest stays buffered.
            let _ = dev.flush();
        }
    }
    (allocations() - before - loopback_allocs, dev.stats())
}

#[test]
fn recording_packets_allocates_nothing() {
    for format in [Format::PcapNg, Format::Pcap] {
        // A sink: the buffer's writes cost nothing and allocate nothing.
        let (traced, stats) = allocations_recording(std::io::sink(), format);
        assert_eq!((stats.inbound, stats.outbound), (10_010, 10_010));
        assert_eq!(traced, 0, "{format:?}: allocations by the tracer");
    }
}

#[test]
fn a_slow_reader_costs_no_allocation_either() {
    for format in [Format::PcapNg, Format::Pcap] {
        // Short writes, writes that would block, records left out of a full buffer.
        let (traced, stats) = allocations_recording(Trickle { calls: 0 }, format);
        assert!(stats.lost_slow > 0, "{format:?}: {stats:?}");
        assert_eq!(traced, 0, "{format:?}: allocations by the tracer");
    }
}

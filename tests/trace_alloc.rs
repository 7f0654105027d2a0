//! The tracer's hot path allocates nothing: a counting allocator (this test binary only) sees no
//! allocation on the recording thread while packets go through `trace::Pcap`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use tunhost::pcap::{Format, Pcap, TraceConfig};
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

#[test]
fn recording_packets_allocates_nothing() {
    for format in [Format::PcapNg, Format::Pcap] {
        let config = TraceConfig {
            format,
            snaplen: Some(96),
            ..TraceConfig::new("lo", "sink")
        };
        // A sink: the buffer's writes cost nothing and allocate nothing.
        let mut dev = Pcap::new(Loopback::new(Medium::Ip), std::io::sink(), &config).unwrap();
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
        }
        let traced = allocations() - before - loopback_allocs;
        let stats = dev.stats();
        assert_eq!((stats.inbound, stats.outbound), (10_010, 10_010));
        assert_eq!(traced, 0, "{format:?}: allocations by the tracer");
    }
}

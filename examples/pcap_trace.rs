//! Trace every packet of a userspace host to a pcapng file, with the tunhost library.
//!
//! ```text
//! sudo cargo run --example pcap_trace -- trace.pcapng   # TUN tun0, host 192.0.2.2
//! ping -c 3 192.0.2.2; Ctrl-C; tshark -r trace.pcapng
//! ```
//! The builder puts `pcap::Pcap` between the device and the interface; `examples/own_loop.rs`
//! does the same by hand.

use tunhost::link::{Kind, TunTapConfig};
use tunhost::live::{Live, TraceSpec, TraceTarget};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    let path = std::env::args().nth(1).unwrap_or("trace.pcapng".into());

    // TUN "tun0", kernel side 192.0.2.1/24; the host 192.0.2.2/24, answering ping.
    let mut live = Live::new(TunTapConfig::new("tun0", Kind::Tun));
    live.device.peers = vec!["192.0.2.1/24".parse().expect("valid CIDR")];
    // pcapng, interface named after the device, flushed every 200 ms by the loop.
    live.trace = Some(TraceSpec::new(TraceTarget::File(path.clone().into())));

    let mut host = live.open()?;
    eprintln!("ready: host 192.0.2.2 on tun0, tracing to {path}; try: ping 192.0.2.2");
    host.run()?;

    // Flush what is buffered and say how it went.
    if let Some(trace) = host.finish() {
        trace.result?;
        let s = trace.stats;
        eprintln!(
            "{path}: {} packets in, {} out, {} lost",
            s.inbound, s.outbound, s.lost
        );
    }
    Ok(())
}

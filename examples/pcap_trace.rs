//! Trace every packet of a userspace host to a pcapng file, with the tunhost library.
//!
//! ```text
//! sudo cargo run --example pcap_trace -- trace.pcapng   # TUN tun0, host 192.0.2.2
//! ping -c 3 192.0.2.2; Ctrl-C; tshark -r trace.pcapng
//! ```
//! `trace::Pcap` wraps any smoltcp `phy::Device`: put it between your device and the interface.

use std::fs::File;

use tunhost::trace::{Pcap, TraceConfig};
use tunhost::{Config, Host, Kind, Stop, SystemClock, TunTap, TunTapConfig, TunTapDevice};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    let path = std::env::args().nth(1).unwrap_or("trace.pcapng".into());

    // The device: TUN "tun0", kernel side 192.0.2.1/24.
    let mut dev = TunTapConfig::new("tun0", Kind::Tun);
    dev.peer = Some("192.0.2.1/24".parse().expect("valid CIDR"));
    let device = TunTapDevice::new(TunTap::open(&dev)?);

    // The tracer: pcapng, interface named after the device, flushed every 200 ms by the loop.
    let config = TraceConfig::new(device.tuntap().name(), &path);
    let traced = Pcap::new(device, File::create(&path)?, &config)?;

    // The host on the traced device: 192.0.2.2 with the default services.
    let config = Config {
        addrs: vec!["192.0.2.2/24".parse().expect("valid CIDR")],
        ..Config::default()
    };
    let mut host = Host::new(traced, SystemClock::new(), config)?;

    let stop = Stop::new()?;
    stop.on_signals()?;
    eprintln!("ready: host 192.0.2.2 on tun0, tracing to {path}; try: ping 192.0.2.2");
    host.run(&stop)?;

    // Flush what is buffered and say how it went.
    let (_, result, _, stats) = host.into_device().finish();
    result?;
    eprintln!(
        "{path}: {} packets in, {} out, {} lost",
        stats.inbound, stats.outbound, stats.lost
    );
    Ok(())
}

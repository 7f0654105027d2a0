//! Your own smoltcp loop over tunhost's device and tracer, without `Host`: the way smoltcp's own
//! examples are written. A UDP echo on port 7, every packet traced to `own_loop.pcapng`.
//!
//! ```text
//! sudo cargo run --example own_loop               # TUN tun0, host 192.0.2.2, kernel 192.0.2.1
//! echo hello | nc -u -q1 192.0.2.2 7; Ctrl-C; tshark -r own_loop.pcapng
//! ```

use std::fs::File;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tunhost::link::{Kind, TunTap, TunTapConfig, TunTapDevice, wait};
use tunhost::pcap::{Pcap, TraceConfig};
use tunhost::smoltcp::iface::{Config, Interface, SocketSet};
use tunhost::smoltcp::socket::udp;
use tunhost::smoltcp::time::Instant;
use tunhost::smoltcp::wire::{HardwareAddress, IpCidr};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut dev = TunTapConfig::new("tun0", Kind::Tun);
    dev.peers = vec!["192.0.2.1/24".parse().expect("valid CIDR")];
    let device = TunTapDevice::new(TunTap::open(&dev)?);
    let trace = TraceConfig::new(device.tuntap().name(), "own_loop.pcapng");
    let mut device = Pcap::new(device, File::create("own_loop.pcapng")?, &trace)?;

    let mut iface = Interface::new(
        Config::new(HardwareAddress::Ip),
        &mut device,
        Instant::now(),
    );
    let addr: IpCidr = "192.0.2.2/24".parse().expect("valid CIDR");
    iface.update_ip_addrs(|a| a.push(addr).expect("room for one address"));
    let buffer = || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 65536]);
    let mut socket = udp::Socket::new(buffer(), buffer());
    socket.bind(7)?;
    let mut sockets = SocketSet::new(vec![]);
    let handle = sockets.add(socket);

    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    eprintln!("UDP echo on 192.0.2.2:7 via tun0; try: echo hello | nc -u -q1 192.0.2.2 7");
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        iface.poll(now, &mut device, &mut sockets);
        let socket = sockets.get_mut::<udp::Socket>(handle);
        while let Ok((data, meta)) = socket.recv() {
            let (data, peer) = (data.to_vec(), meta.endpoint);
            socket.send_slice(&data, peer)?;
        }
        iface.poll(now, &mut device, &mut sockets);
        // Sleep until a packet comes or smoltcp has something to do; flush the trace on time.
        let delay = iface.poll_delay(now, &sockets);
        let flush = tunhost::link::Housekeeping::housekeeping(&mut device, now).map(|t| t - now);
        let timeout = match (delay, flush) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        wait::readable(device.as_fd(), None, timeout)?;
        // A device deleted under the loop (ip link del) fails every read: stop, do not spin.
        if let Err(gone) = tunhost::link::Housekeeping::check(&device) {
            eprintln!("{gone}");
            break;
        }
    }
    let (_, result, _, stats) = device.finish();
    result?;
    eprintln!(
        "own_loop.pcapng: {} packets",
        stats.inbound + stats.outbound
    );
    Ok(())
}

//! A TCP echo server on a userspace host, with the tunhost library.
//!
//! ```text
//! sudo cargo run --example echo_server            # TUN tun0, host 192.0.2.2, kernel 192.0.2.1
//! ping 192.0.2.2; echo hello | nc -q1 192.0.2.2 7
//! ```
//! Ctrl-C stops it.

use tunhost::services::{Echo, TcpService};
use tunhost::{Config, Host, Kind, ListenerConfig, Stop, TunTapConfig};

fn main() -> Result<(), tunhost::Error> {
    env_logger::init();

    // The device: TUN "tun0", created if it does not exist, kernel side 192.0.2.1/24, link up.
    let mut dev = TunTapConfig::new("tun0", Kind::Tun);
    dev.peer = Some("192.0.2.1/24".parse().expect("valid CIDR"));

    // The host: its own address, and no built-in services: we add ours below.
    let config = Config {
        addrs: vec!["192.0.2.2/24".parse().expect("valid CIDR")],
        services: Vec::new(),
        ..Config::default()
    };
    let mut host = Host::open(&dev, config)?;

    // RFC 862 echo on port 7, with up to 16 handshakes waiting at once.
    let listener = ListenerConfig {
        backlog: 16,
        ..ListenerConfig::default()
    };
    host.add_service(|sockets| TcpService::new(sockets, 7, listener, Echo::new()));

    // Run until SIGINT/SIGTERM; the loop sleeps on the device when there is nothing to do.
    let stop = Stop::new()?;
    stop.on_signals()?;
    eprintln!("echo on 192.0.2.2:7 via tun0; try: echo hello | nc -q1 192.0.2.2 7");
    host.run(&stop)
}

//! A TCP echo server on a userspace host, with the tunhost library: a service added by hand to
//! the host the builder made (any `services::Protocol` of your own runs the same way).
//!
//! ```text
//! sudo cargo run --example echo_server            # TUN tun0, host 192.0.2.2, kernel 192.0.2.1
//! ping 192.0.2.2; echo hello | nc -q1 192.0.2.2 7
//! ```
//! Ctrl-C stops it.

use tunhost::link::{Kind, TunTapConfig};
use tunhost::live::Live;
use tunhost::services::{Echo, ListenerConfig, TcpService};

fn main() -> Result<(), tunhost::Error> {
    env_logger::init();
    // TUN "tun0", created if it does not exist, kernel side 192.0.2.1/24; the host 192.0.2.2/24
    // (the default address) with no services but ours.
    let mut live = Live::new(TunTapConfig::new("tun0", Kind::Tun));
    live.device.peers = vec!["192.0.2.1/24".parse().expect("valid CIDR")];
    let mut host = live.open()?;

    // RFC 862 echo on port 7, with up to 16 handshakes waiting at once.
    let listener = ListenerConfig {
        backlog: 16,
        ..ListenerConfig::default()
    };
    let h = host.host_mut();
    h.add_service(|sockets| TcpService::new(sockets, 7, listener, Echo::new()));

    // Run until SIGINT/SIGTERM; the loop sleeps on the device when there is nothing to do.
    eprintln!("echo on 192.0.2.2:7 via tun0; try: echo hello | nc -q1 192.0.2.2 7");
    host.run()
}

//! A TCP echo server on a userspace host, with the tunhost library: a protocol of our own,
//! written against the [`Protocol`] trait and run by the library's listener.
//!
//! ```text
//! sudo cargo run --example echo_server            # TUN tun0, host 192.0.2.2, kernel 192.0.2.1
//! ping 192.0.2.2; echo hello | nc -q1 192.0.2.2 7
//! ```
//! Ctrl-C stops it.

use tunhost::link::{Kind, TunTapConfig};
use tunhost::live::Live;
use tunhost::services::{ListenerConfig, Protocol, Step, TcpService};
use tunhost::smoltcp::socket::tcp;
use tunhost::smoltcp::time::Instant;

/// RFC 862 echo: send back whatever arrives, close when the peer does.
struct Echo;

impl Protocol for Echo {
    type Conn = ();
    fn name(&self) -> &'static str {
        "echo"
    }
    fn open(&mut self, _now: Instant) {}
    fn drive(&mut self, _: &mut (), socket: &mut tcp::Socket<'_>, _now: Instant) -> Step {
        while socket.can_recv() && socket.can_send() {
            let mut buf = [0u8; 4096];
            let n = socket.recv_slice(&mut buf).unwrap_or(0);
            let _ = socket.send_slice(&buf[..n]);
        }
        if !socket.may_recv() && !socket.can_recv() {
            return Step::Close;
        }
        Step::Keep
    }
}

fn main() -> Result<(), tunhost::Error> {
    env_logger::init();
    // TUN "tun0", created if it does not exist, kernel side 192.0.2.1/24; the host 192.0.2.2/24
    // (the default address) with no services but ours.
    let mut live = Live::new(TunTapConfig::new("tun0", Kind::Tun));
    live.device.peer = Some("192.0.2.1/24".parse().expect("valid CIDR"));
    let mut host = live.open()?;

    // Our echo on port 7, with up to 16 handshakes waiting at once.
    let listener = ListenerConfig {
        backlog: 16,
        ..ListenerConfig::default()
    };
    let h = host.host_mut();
    h.add_service(|sockets| TcpService::new(sockets, 7, listener, Echo));

    // Run until SIGINT/SIGTERM; the loop sleeps on the device when there is nothing to do.
    eprintln!("echo on 192.0.2.2:7 via tun0; try: echo hello | nc -q1 192.0.2.2 7");
    host.run()
}

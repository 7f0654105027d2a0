//! `tunhost serve` against the real kernel: each test has its own network namespace, its own
//! TUN/TAP device in it, and talks to the host with std sockets and real tools.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

use common::{
    HOST, TUN_ARGS, Tunhost, assert_echoes, family, in_netns, kernel_device, pattern, ping_ok, sh,
    udp_to_host,
};
use nix::sys::signal::Signal;

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(10));

fn serve_tun(services: &[&str]) -> Tunhost {
    let mut args = TUN_ARGS.to_vec();
    args.extend_from_slice(services);
    Tunhost::serve(&args)
}

/// Run `f` in a namespace of its own, against `tunhost serve` with `services` on the TUN test
/// device.
fn on_tun(services: &[&str], f: impl FnOnce(&mut Tunhost) + Send) {
    in_netns(|| f(&mut serve_tun(services)));
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect((HOST, port)).expect("connect to the host");
    s.set_read_timeout(TIMEOUT).unwrap();
    s.set_write_timeout(TIMEOUT).unwrap();
    s
}

/// A connection to the echo service on port 7 that has carried one exchange, and stays open.
fn echo_connection() -> TcpStream {
    let mut s = connect(7);
    s.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
    s
}

/// `ping -c COUNT` the host at `addr`, 50 ms apart: every request must be answered.
fn ping_all(addr: &str, count: u32) {
    let count = count.to_string();
    let text = ping_ok(&[family(addr), "-c", &count, "-i", "0.05", "-W", "1", addr]);
    let want = format!("{count} packets transmitted, {count} received");
    assert!(text.contains(&want), "{text}");
}

/// The kernel's neighbour table on tap0 has `mac` for the host's `addr` (learned by ARP or by
/// neighbour discovery).
fn assert_neighbour(addr: &str, mac: &str) {
    let neigh = sh(&["ip", family(addr), "neigh", "show", addr, "dev", "tap0"]);
    assert!(
        neigh.contains(&format!("lladdr {mac}")),
        "neighbour: {neigh}"
    );
}

#[test]
fn ping_twenty_of_twenty() {
    require_root!();
    on_tun(&["--echo", "7"], |_| {
        let text = ping_ok(&["-c", "20", "-i", "0.01", "-W", "1", HOST]);
        assert!(
            text.contains("20 packets transmitted, 20 received, 0% packet loss"),
            "{text}"
        );
    });
}

#[test]
fn tcp_echo_one_mib_byte_exact() {
    require_root!();
    on_tun(&["--echo", "7"], |_| {
        assert_echoes((HOST, 7), 1 << 20, 1);
    });
}

#[test]
fn udp_echo_1_to_1400_bytes() {
    require_root!();
    on_tun(&["--udp-echo", "7"], |_| {
        let s = udp_to_host(7, Duration::from_secs(2));
        let mut buf = [0u8; 2048];
        for len in 1..=1400usize {
            let data = pattern(len, len as u64);
            s.send(&data).unwrap();
            let n = s
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no echo of a {len}-byte datagram: {e}"));
            assert_eq!(&buf[..n], &data[..], "datagram of {len} bytes");
        }
    });
}

#[test]
fn sixty_four_concurrent_echo_connections() {
    require_root!();
    on_tun(&["--echo", "7"], |_| {
        let workers: Vec<_> = (0..64u64)
            .map(|i| thread::spawn(move || assert_echoes((HOST, 7), 64 * 1024, 100 + i)))
            .collect();
        for w in workers {
            w.join().expect("an echo connection failed");
        }
    });
}

#[test]
fn listener_recycles_sockets() {
    require_root!();
    // 300 connections one after another through a port capped at 70 sockets: a socket that
    // leaked per connection would make the 71st connection fail.
    let services = ["--echo", "7", "--backlog", "64", "--max-connections", "70"];
    on_tun(&services, |_| {
        for i in 0..300u64 {
            assert_echoes((HOST, 7), 1000, i);
        }
    });
}

#[test]
fn discard_reads_until_fin_then_closes() {
    require_root!();
    on_tun(&["--discard", "9"], |_| {
        let mut s = connect(9);
        s.write_all(&pattern(1 << 20, 9)).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        // The server sends nothing and closes after our FIN: EOF, no data.
        s.read_to_end(&mut rest).expect("discard closes after FIN");
        assert!(rest.is_empty(), "discard sent {} bytes", rest.len());
    });
}

#[test]
fn chargen_sends_the_rfc864_pattern() {
    require_root!();
    on_tun(&["--chargen", "19"], |_| {
        let mut s = connect(19);
        let mut got = vec![0u8; 20_000];
        s.read_exact(&mut got).unwrap();
        let cycle = tunhost::services::chargen_pattern();
        for (i, b) in got.iter().enumerate() {
            assert_eq!(*b, cycle[i % cycle.len()], "byte {i}");
        }
        assert_eq!(&got[..74], {
            let mut l: Vec<u8> = (b' '..=b'g').collect();
            l.extend_from_slice(b"\r\n");
            l
        });
    });
}

#[test]
fn closed_tcp_port_is_refused() {
    require_root!();
    on_tun(&["--echo", "7"], |_| {
        let err = TcpStream::connect_timeout(&(HOST, 8).into_addr(), Duration::from_secs(5))
            .expect_err("port 8 has no service");
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    });
}

#[test]
fn closed_udp_port_gets_icmp_port_unreachable() {
    require_root!();
    on_tun(&["--udp-echo", "7"], |_| {
        let s = udp_to_host(8, Duration::from_secs(5));
        s.send(b"anyone?").unwrap();
        let err = s.recv(&mut [0u8; 64]).expect_err("port 8 has no service");
        // Linux reports an ICMP port unreachable on a connected UDP socket as ECONNREFUSED.
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    });
}

#[test]
fn tap_answers_arp_ping_and_echo() {
    require_root!();
    in_netns(|| {
        let _h = Tunhost::serve(&[common::TAP_ARGS, &["--echo", "7"]].concat());
        ping_all("198.51.100.2", 3);
        // The kernel learned the host's MAC by ARP.
        assert_neighbour("198.51.100.2", "02:00:00:00:00:02");
        assert_echoes(("198.51.100.2", 7), 200_000, 7);
    });
}

#[test]
fn ipv6_ping_and_echo_on_tun() {
    require_root!();
    in_netns(|| {
        let _h = Tunhost::serve(&[
            "--tun",
            "tun0",
            "--addr",
            "2001:db8::2/64",
            "--peer",
            "2001:db8::1/64",
            "--echo",
            "7",
            "--udp-echo",
            "7",
        ]);
        ping_all("2001:db8::2", 3);
        assert_echoes(("2001:db8::2", 7), 1 << 20, 6);
        let u = UdpSocket::bind("[2001:db8::1]:0").unwrap();
        u.set_read_timeout(TIMEOUT).unwrap();
        u.send_to(b"v6 datagram", "[2001:db8::2]:7").unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = u.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"v6 datagram");
        assert_eq!(from.to_string(), "[2001:db8::2]:7");
    });
}

#[test]
fn ipv6_neighbour_discovery_and_echo_on_tap() {
    require_root!();
    in_netns(|| {
        let h = Tunhost::serve(&[
            "--tap",
            "tap0",
            "--addr",
            "2001:db8:1::2/64",
            "--peer",
            "2001:db8:1::1/64",
            "--mac",
            "02:00:00:00:00:66",
            "--echo",
            "7",
        ]);
        assert!(h.banner.contains("MAC 02:00:00:00:00:66"), "{}", h.banner);
        ping_all("2001:db8:1::2", 2);
        // The kernel learned the host's MAC by neighbour discovery.
        assert_neighbour("2001:db8:1::2", "02:00:00:00:00:66");
        assert_echoes(("2001:db8:1::2", 7), 100_000, 66);
    });
}

#[test]
fn no_offload_flag_opens_the_plain_device_and_echoes_exactly() {
    require_root!();
    on_tun(&["--echo", "7", "--no-offload"], |h| {
        assert!(h.banner.contains("offload off"), "{}", h.banner);
        assert_echoes((HOST, 7), 1 << 20, 3);
    });
}

#[test]
fn offload_is_negotiated_and_shown_in_the_banner() {
    require_root!();
    if common::no_offload() {
        return;
    }
    on_tun(&["--echo", "7"], |h| {
        // What the kernel grants depends on it; the banner says which, and never "off" on a
        // kernel with IFF_VNET_HDR (every supported one).
        assert!(h.banner.contains("offload vnet-hdr"), "{}", h.banner);
    });
}

#[test]
fn attaches_to_an_existing_persistent_device() {
    require_root!();
    in_netns(|| {
        kernel_device("tunp", "tun", "203.0.113.1/24");
        let mut h = Tunhost::serve(&["--tun", "tunp", "--addr", "203.0.113.2/24", "--echo", "7"]);
        assert!(
            h.banner.contains("kernel side as configured"),
            "{}",
            h.banner
        );
        ping_all("203.0.113.2", 3);
        let (status, _) = h.signal(Signal::SIGINT);
        assert!(status.success());
        // A persistent device outlives the process that attached to it.
        sh(&["ip", "link", "show", "tunp"]);
        sh(&["ip", "tuntap", "del", "dev", "tunp", "mode", "tun"]);
    });
}

#[test]
fn sigint_exits_zero_within_one_second() {
    require_root!();
    on_tun(&["--echo", "7"], |h| {
        // With a connection open, so that shutdown has something to close.
        let mut s = echo_connection();
        let (status, took) = h.signal(Signal::SIGINT);
        assert!(status.success(), "exit status {status}");
        assert!(took < Duration::from_secs(1), "took {took:?} to exit");
        // The connection was closed gracefully: EOF (the host's FIN), not a reset.
        let mut rest = Vec::new();
        let r = s.read_to_end(&mut rest);
        assert!(matches!(r, Ok(0)), "{r:?}");
    });
}

#[test]
fn a_second_sigint_ends_the_process_at_once() {
    require_root!();
    on_tun(&["--echo", "7"], |h| {
        // An open connection whose peer never closes keeps the graceful shutdown busy for its
        // whole grace: the second Ctrl-C comes while it runs.
        let _s = echo_connection();
        nix::sys::signal::kill(h.pid(), Signal::SIGINT).unwrap();
        thread::sleep(Duration::from_millis(20));
        let (status, _) = h.signal(Signal::SIGINT);
        // Killed by the second SIGINT (a graceful stop exits 0: sigint_exits_zero_...).
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(Signal::SIGINT as i32), "{status}");
    });
}

#[test]
fn sigterm_exits_zero() {
    require_root!();
    on_tun(&[], |h| {
        let (status, _) = h.signal(Signal::SIGTERM);
        assert!(status.success(), "exit status {status}");
    });
}

#[test]
fn idle_host_uses_no_cpu() {
    require_root!();
    on_tun(&[], |h| {
        // Let start-up settle, then measure two idle seconds.
        thread::sleep(Duration::from_millis(200));
        let before = h.cpu_ticks();
        thread::sleep(Duration::from_secs(2));
        let used = h.cpu_ticks() - before;
        // Clock ticks are 10 ms: 2 ticks in 2 s is 1% of a core. A busy loop would use 200.
        assert!(used <= 2, "idle host used {used} ticks of CPU in 2 s");
    });
}

trait IntoAddr {
    fn into_addr(self) -> std::net::SocketAddr;
}

impl IntoAddr for (&str, u16) {
    fn into_addr(self) -> std::net::SocketAddr {
        format!("{}:{}", self.0, self.1).parse().unwrap()
    }
}

//! `tunhost serve` off the happy path, against the real kernel: Ctrl-C after the host has run a
//! while, and a device that is set down and up, or deleted, under a running host. Each test has
//! its own network namespace.

mod common;
mod tools;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use common::{HOST, TAP_ARGS, TUN_ARGS, Tunhost, in_netns, pattern, run, sh};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn, sockopt};
use tools::Scratch;

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(10));

/// A connection to `port` of the host at `addr` whose receive buffer is as small as the kernel
/// allows (a window of a few KiB): what the host echoes piles up in its own send buffer.
fn small_window_connection(addr: &str, port: u16) -> TcpStream {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    socket::setsockopt(&fd, sockopt::RcvBuf, &1024).expect("SO_RCVBUF");
    let to: SocketAddrV4 = format!("{addr}:{port}").parse().unwrap();
    socket::connect(fd.as_raw_fd(), &SockaddrIn::from(to)).expect("connect to the host");
    let s = TcpStream::from(fd);
    s.set_read_timeout(TIMEOUT).unwrap();
    s.set_write_timeout(TIMEOUT).unwrap();
    s
}

/// Bytes written on `s` that the peer has not acknowledged yet (`SIOCOUTQ`).
fn unacked(s: &TcpStream) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: a valid socket fd and a c_int for the kernel to fill.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    assert_eq!(r, 0, "SIOCOUTQ: {}", std::io::Error::last_os_error());
    n as usize
}

/// A connection to the echo service that has carried one exchange, and stays open.
fn echo_connection(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect((addr, 7)).expect("connect to the echo service");
    s.set_read_timeout(TIMEOUT).unwrap();
    s.write_all(b"early").unwrap();
    let mut b = [0u8; 5];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"early");
    s
}

/// Read until EOF: every byte must come, then EOF (the host's FIN), not a reset.
fn read_to_eof(s: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => got,
        Err(e) => panic!("{what}: {} bytes, then {e} instead of EOF", got.len()),
    }
}

#[test]
fn ctrl_c_after_32_s_sends_queued_data_then_fin_and_refuses_new_connections() {
    require_root!();
    in_netns(|| {
        let mut h = Tunhost::serve(&[TUN_ARGS, &["--echo", "7"]].concat());
        // One connection lives through the whole run, another comes after 32 s: the host's
        // 30 s reap of closing sockets must not cut either short.
        let mut early = echo_connection(HOST);
        thread::sleep(Duration::from_secs(32));
        let mut late = small_window_connection(HOST, 7);
        let data = pattern(64 * 1024, 32);
        late.write_all(&data).unwrap();
        // All of it reached the host, which echoed what the small window let through: the rest
        // waits in the host's send buffer.
        let until = Instant::now() + Duration::from_secs(10);
        while unacked(&late) > 0 {
            assert!(Instant::now() < until, "the host did not take in our data");
            thread::sleep(Duration::from_millis(10));
        }
        let start = Instant::now();
        kill(h.pid(), Signal::SIGINT).unwrap();
        // Let the host start closing before we read, so that the data is sent after the close.
        thread::sleep(Duration::from_millis(20));
        let got = read_to_eof(&mut late, "the connection with queued data");
        assert_eq!(got.len(), data.len(), "bytes echoed before EOF");
        assert!(got == data, "echoed bytes differ");
        assert!(read_to_eof(&mut early, "the connection of 32 s").is_empty());
        // The host still closes (`early` keeps its side open): a new connection is refused.
        let err = TcpStream::connect((HOST, 7)).expect_err("a connection during shutdown");
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
        let (status, _) = h.wait_exit("SIGINT");
        assert!(status.success(), "exit status {status}");
        let took = start.elapsed();
        assert!(took < Duration::from_secs(1), "took {took:?} to exit");
    });
}

/// Serve on the device that `args` name, delete it, and check that the host exits 1 at once
/// with one line that names the device.
fn exits_when_deleted(args: &[&str], dev: &str, addr: &str) {
    let mut h = Tunhost::serve(args);
    ping(addr, 3);
    let start = Instant::now();
    sh(&["ip", "link", "del", dev]);
    let (status, _) = h.wait_exit(&format!("ip link del {dev}"));
    let took = start.elapsed();
    let stderr = h.drain_stderr().to_vec();
    assert_eq!(status.code(), Some(1), "exit status {status}; {stderr:?}");
    assert!(took < Duration::from_secs(1), "took {took:?} to exit");
    // One line says it, and no error on the device was logged before it.
    let said = format!("tunhost: error: device {dev} is gone (deleted while in use)");
    assert_eq!(stderr.last(), Some(&said), "{stderr:?}");
    let errors = stderr
        .iter()
        .filter(|l| l.contains("error") || l.contains("WARN"));
    assert_eq!(errors.count(), 1, "{stderr:?}");
}

#[test]
fn deleted_tun_device_exits_1_naming_it_with_the_trace_complete() {
    require_root!();
    let dir = Scratch::new("lifecycle-deleted");
    let trace = dir.path("deleted.pcapng");
    in_netns(|| {
        exits_when_deleted(
            &[TUN_ARGS, &["--echo", "7", "--pcap", &trace]].concat(),
            "tun0",
            HOST,
        );
    });
    // The trace was flushed and closed: tshark reads it whole, pings and replies.
    let replies = tools::tshark_fields(&trace, "icmp.type == 0", &["ip.src"]);
    assert_eq!(replies.len(), 3, "echo replies in the trace: {replies:?}");
}

#[test]
fn deleted_tap_device_exits_1_naming_it() {
    require_root!();
    in_netns(|| {
        exits_when_deleted(
            &[TAP_ARGS, &["--echo", "7"]].concat(),
            "tap0",
            "198.51.100.2",
        );
    });
}

/// `ping -c COUNT` the host at `addr`, 50 ms apart: every request must be answered.
fn ping(addr: &str, count: u32) {
    let count = count.to_string();
    let family = if addr.contains(':') { "-6" } else { "-4" };
    let out = run(&["ping", family, "-c", &count, "-i", "0.05", "-W", "1", addr]);
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!("{count} packets transmitted, {count} received");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains(&want), "{text}{err}");
}

/// Serve on `dev` with a chargen connection streaming, set the device down for 2 s, then up:
/// the host must sleep while it is down, and then answer pings and stream again.
fn survives_down_and_up(args: &[&str], dev: &str, addr: &str) {
    let h = Tunhost::serve(&[args, &["--chargen", "19"]].concat());
    ping(addr, 2);
    let mut stream = TcpStream::connect((addr, 19)).expect("connect to chargen");
    stream.set_read_timeout(TIMEOUT).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    stream.read_exact(&mut buf).expect("chargen streams");
    sh(&["ip", "link", "set", dev, "down"]);
    // Let the writes that fail (EIO) settle into retransmission back-off, then measure.
    thread::sleep(Duration::from_millis(200));
    let before = h.cpu_ticks();
    thread::sleep(Duration::from_secs(2));
    let used = h.cpu_ticks() - before;
    // Clock ticks are 10 ms: 2 ticks in 2 s is 1% of a core. A busy loop would use 200.
    assert!(
        used <= 2,
        "host used {used} ticks of CPU in 2 s while {dev} was down"
    );
    sh(&["ip", "link", "set", dev, "up"]);
    ping(addr, 3);
    // The stream goes on where it stopped (TCP retransmits what the down link dropped).
    let mut total = 0;
    while total < 1 << 20 {
        let n = stream
            .read(&mut buf)
            .expect("chargen streams again after up");
        assert!(n > 0, "chargen closed after up");
        total += n;
    }
}

#[test]
fn tun_device_down_then_up_no_spin_and_serving_resumes() {
    require_root!();
    in_netns(|| survives_down_and_up(TUN_ARGS, "tun0", HOST));
}

#[test]
fn tap_device_down_then_up_no_spin_and_serving_resumes() {
    require_root!();
    in_netns(|| survives_down_and_up(TAP_ARGS, "tap0", "198.51.100.2"));
}

#[test]
fn ipv6_kernel_side_survives_down_and_up() {
    require_root!();
    let args = "--tun tun0 --addr 2001:db8::2/64 --peer 2001:db8::1/64";
    let args: Vec<&str> = args.split(' ').collect();
    in_netns(|| survives_down_and_up(&args, "tun0", "2001:db8::2"));
}

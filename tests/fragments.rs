//! Datagrams up to 64 KiB both ways, IPv4 and IPv6, against the real kernel (issue 16, item 1):
//! the kernel fragments what it sends to the host at the device's MTU, the host puts it back
//! together (IPv6: `host::reassembly6`; IPv4: smoltcp), answers, and fragments its answer.

mod common;

use std::net::UdpSocket;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use common::{Tunhost, family, in_netns, no_offload, pattern, ping_ok};

const V4: &str = "198.51.100.2";
const V6: &str = "2001:db8:1::2";

/// `ping` (-6 for an IPv6 address) with `size` bytes of payload: one request, one reply.
fn big_ping(addr: &str, size: usize) {
    let size = size.to_string();
    let text = ping_ok(&[family(addr), "-n", "-c", "1", "-W", "5", "-s", &size, addr]);
    assert!(
        text.contains(" 1 received"),
        "ping -s {size} {addr}:\n{text}"
    );
}

/// A UDP datagram of `len` bytes to the host's UDP echo port comes back byte-exact.
fn udp_echo(addr: &str, len: usize) {
    let bind = if addr.contains(':') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let s = UdpSocket::bind(bind).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let data = pattern(len, len as u64);
    let dst = if addr.contains(':') {
        format!("[{addr}]:7")
    } else {
        format!("{addr}:7")
    };
    s.send_to(&data, &dst).unwrap();
    let mut buf = vec![0u8; 70_000];
    let (n, _) = s
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no echo of {len} bytes from {dst}: {e}"));
    assert_eq!(n, len, "echo of {len} bytes from {dst}");
    assert!(buf[..n] == data[..], "echo from {dst} differs");
}

fn serve(extra: &[&str]) -> Tunhost {
    let mut args = vec![
        "--addr",
        "198.51.100.2/24",
        "--addr",
        "2001:db8:1::2/64",
        "--echo",
        "7",
        "--udp-echo",
        "7",
    ];
    args.extend_from_slice(extra);
    Tunhost::serve(&args)
}

fn all_sizes() {
    for addr in [V4, V6] {
        big_ping(addr, 4000);
        big_ping(addr, 65_000);
        udp_echo(addr, 3000);
        udp_echo(addr, 60_000);
    }
}

#[test]
fn datagrams_up_to_64_kib_on_tun() {
    require_root!();
    in_netns(|| {
        let _h = serve(&[]);
        all_sizes();
    });
}

#[test]
fn datagrams_up_to_64_kib_on_tun_without_offloads() {
    require_root!();
    // The suite's no-offload run adds the flag anyway; this test does it in every run.
    in_netns(|| {
        let extra: &[&str] = if no_offload() { &[] } else { &["--no-offload"] };
        let _h = serve(extra);
        all_sizes();
    });
}

#[test]
fn datagrams_up_to_64_kib_on_tap() {
    require_root!();
    in_netns(|| {
        let _h = serve(&[
            "--tap",
            "tap0",
            "--peer",
            "198.51.100.1/24",
            "--peer",
            "2001:db8:1::1/64",
        ]);
        all_sizes();
    });
}

/// The first fragment of an IPv6 datagram from `src` to the host whose rest never comes.
fn stray_fragment6(src: [u8; 16], id: u32) -> Vec<u8> {
    let dst: std::net::Ipv6Addr = V6.parse().unwrap();
    let mut p = vec![0x60, 0, 0, 0, 0, 24, 44, 64];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst.octets());
    // Fragment header: next header UDP, offset 0, more fragments; then 16 bytes of it.
    p.extend_from_slice(&[17, 0, 0, 1]);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0xab; 16]);
    p
}

#[test]
fn stray_ipv6_fragments_from_one_source_do_not_block_others() {
    require_root!();
    in_netns(|| {
        let _h = serve(&[]);
        // SAFETY: socket(2) with valid arguments; owned from here on.
        let raw = unsafe {
            let fd = libc::socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_RAW);
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            OwnedFd::from_raw_fd(fd)
        };
        let dst = libc::sockaddr_in6 {
            sin6_family: libc::AF_INET6 as libc::sa_family_t,
            sin6_port: 0,
            sin6_flowinfo: 0,
            sin6_addr: libc::in6_addr {
                s6_addr: V6.parse::<std::net::Ipv6Addr>().unwrap().octets(),
            },
            sin6_scope_id: 0,
        };
        // From an address that is not the kernel's: more never-completed datagrams than the
        // host has reassembly slots (16); one source gets a share of them only.
        let src = [
            0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x77,
        ];
        for id in 0..20 {
            let p = stray_fragment6(src, 0x4242 + id);
            // SAFETY: sendto(2) of a buffer we own to a valid sockaddr_in6 of its size.
            let n = unsafe {
                libc::sendto(
                    raw.as_raw_fd(),
                    p.as_ptr().cast(),
                    p.len(),
                    0,
                    (&raw const dst).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            };
            assert_eq!(n, p.len() as isize, "{}", std::io::Error::last_os_error());
        }
        std::thread::sleep(Duration::from_millis(100));
        // The kernel's own fragmented ping and datagram still get through.
        big_ping(V6, 2000);
        udp_echo(V6, 5000);
    });
}

//! ICMP hygiene and reassembly against the real kernel, each test in its own network namespace:
//! no answer to broadcast pings, rate-limited ICMP errors, and a stray fragment that does not
//! block reassembly for everyone else.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use common::{HOST, TUN_ARGS, Tunhost, in_netns, run, sh};
use tunhost::host::guard::ICMP_ERROR_BURST;

/// A raw socket of `protocol` (`IPPROTO_ICMP`: reads every ICMP packet that arrives;
/// `IPPROTO_RAW`: sends IP packets with our own header) with a 1 s receive timeout.
fn raw_socket(protocol: libc::c_int) -> OwnedFd {
    // SAFETY: plain socket(2) and setsockopt(2) calls with valid arguments; the descriptor is
    // owned from here on.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, protocol);
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let fd = OwnedFd::from_raw_fd(fd);
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        let r = libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        assert_eq!(r, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
        fd
    }
}

/// Send 200 UDP datagrams to closed `port` of the host, then count the ICMP port unreachables
/// about them that arrive until a second passes without one.
fn port_unreachables(icmp: &OwnedFd, port: u16) -> usize {
    let udp = std::net::UdpSocket::bind("192.0.2.1:0").unwrap();
    for _ in 0..200 {
        udp.send_to(b"anyone there?", (HOST, port)).unwrap();
    }
    let mut count = 0;
    let mut buf = [0u8; 2048];
    // Bounded: at most 1,000 packets read, each wait at most 1 s.
    for _ in 0..1000 {
        // SAFETY: recv(2) into a buffer we own, of its length.
        let n = unsafe { libc::recv(icmp.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            break; // a second of silence (EAGAIN)
        }
        let p = &buf[..n as usize];
        let ihl = usize::from(p[0] & 0x0f) * 4;
        // IP from the host, ICMP type 3 code 3, about a datagram (IP + UDP) to `port`.
        let inner = ihl + 8;
        let is_ours = p[12..16] == [192, 0, 2, 2]
            && p.get(ihl..ihl + 2) == Some(&[3, 3])
            && p.len() >= inner + 24
            && p[inner + 9] == 17
            && p[inner + 22..inner + 24] == port.to_be_bytes();
        if is_ours {
            count += 1;
        }
    }
    count
}

#[test]
fn errors_to_a_closed_port_are_rate_limited() {
    require_root!();
    in_netns(|| {
        let _host = Tunhost::serve(TUN_ARGS);
        let icmp = raw_socket(libc::IPPROTO_ICMP);
        let burst = ICMP_ERROR_BURST as usize;
        // Linux answers 200 datagrams with 6 errors. The bound leaves room for tokens that a
        // slow machine lets refill while the host works through the 200.
        let first = port_unreachables(&icmp, 4444);
        assert!(
            (1..=burst + 10).contains(&first),
            "200 datagrams to a closed port: {first} port unreachables, expected at most {} \
             (a burst of {burst})",
            burst + 10
        );
        // The last second was silent: the bucket is full again, and errors come again.
        let again = port_unreachables(&icmp, 4445);
        assert!(
            (burst..=burst + 10).contains(&again),
            "after a second: {again} port unreachables, expected the burst of {burst} (and at \
             most {})",
            burst + 10
        );
    });
}

/// Lines of `ping` output that are replies from the host.
fn replies_from_host(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.contains(&format!("from {HOST}:")))
        .collect()
}

#[test]
fn broadcast_pings_get_no_reply() {
    require_root!();
    in_netns(|| {
        let _host = Tunhost::serve(TUN_ARGS);
        // The kernel answers its own broadcast pings here: proof that ping sees broadcast
        // replies at all.
        sh(&[
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.icmp_echo_ignore_broadcasts=0",
        ]);
        for (dst, dev) in [("192.0.2.255", None), ("255.255.255.255", Some("tun0"))] {
            let mut argv = vec!["ping", "-b", "-n", "-c", "3", "-i", "0.2", "-W", "1"];
            if let Some(dev) = dev {
                argv.extend(["-I", dev]);
            }
            argv.push(dst);
            let out = run(&argv);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("from 192.0.2.1:"),
                "ping -b {dst}: no reply from the kernel either, so the test proves nothing:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                replies_from_host(&text),
                Vec::<&str>::new(),
                "ping -b {dst}: the host answered a broadcast ping"
            );
        }
        // Unicast still works.
        let out = run(&["ping", "-n", "-c", "1", "-W", "2", HOST]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(replies_from_host(&text).len(), 1, "unicast ping:\n{text}");
    });
}

/// The first fragment (more fragments, offset 0) of an ICMP echo request from `src` to the
/// host, whose rest never comes. The kernel fills in the header checksum.
fn stray_fragment(src: [u8; 4], id: u16) -> Vec<u8> {
    let payload = [
        8u8, 0, 0, 0, 0, 1, 0, 1, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab,
    ];
    let total = (20 + payload.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x20, 0x00, 64, 1, 0, 0]); // MF, offset 0; TTL; ICMP; checksum
    p.extend_from_slice(&src);
    p.extend_from_slice(&[192, 0, 2, 2]);
    p.extend_from_slice(&payload);
    p
}

fn send_raw(fd: &OwnedFd, packet: &[u8]) {
    let dst = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([192, 0, 2, 2]),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sendto(2) of a buffer we own to a valid sockaddr_in of its size.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&raw const dst).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(
        n,
        packet.len() as isize,
        "sendto: {}",
        std::io::Error::last_os_error()
    );
}

#[test]
fn stray_fragments_from_one_source_do_not_block_reassembly_for_others() {
    require_root!();
    in_netns(|| {
        let _host = Tunhost::serve(TUN_ARGS);
        // The kernel side's MTU is 1,500: a 2,000-byte ping leaves in two fragments.
        let link = sh(&["ip", "-o", "link", "show", "tun0"]);
        let mtu: u32 = link
            .split_whitespace()
            .skip_while(|w| *w != "mtu")
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("no mtu in {link}"));
        assert!(
            mtu < 2028,
            "tun0 mtu {mtu}: the ping would not be fragmented"
        );
        let raw = raw_socket(libc::IPPROTO_RAW);
        // From an address that is not the kernel's: datagrams that will never be complete, more
        // of them than the host has reassembly slots (16): one source gets a share of them only.
        for id in 0..20 {
            send_raw(&raw, &stray_fragment([192, 0, 2, 77], 0x4242 + id));
        }
        std::thread::sleep(Duration::from_millis(100));
        let out = run(&["ping", "-n", "-c", "1", "-W", "3", "-s", "2000", HOST]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            replies_from_host(&text).len(),
            1,
            "a fragmented ping after stray fragments from another source:\n{text}"
        );
    });
}

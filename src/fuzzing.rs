//! Entry points for fuzzing the whole stack. **Unstable**: for `fuzz/` and the corpus replay
//! tests, not for applications.
//!
//! Each entry point takes arbitrary bytes, drives the library with them, and panics only when an
//! invariant is broken; so a fuzzer finds both crashes and wrong behaviour, and `cargo test`
//! replays every corpus and regression file through the same functions on stable.
//!
//! # Input framing of the ingress targets
//! A sequence of records, each starting with a tag byte:
//! - `tag < 0x80`: a packet. Two bytes of big-endian length follow, then that many bytes (fewer
//!   if the input ends first). The packet is handed to the host as read from the device.
//! - `tag >= 0x80`: advance the virtual clock by `(tag & 0x7f)²` milliseconds (up to ~16 s).
//!
//! # Invariants checked
//! - every packet the host emits parses back with smoltcp's wire types, with valid IP, TCP, UDP
//!   and ICMP checksums, and comes from one of the host's addresses (and its MAC, on Ethernet);
//! - a packet not addressed to the host (IP destination not the host's, ARP target not the
//!   host's) gets no answer;
//! - once the input ends and the virtual clock has run out every timeout, no TCP connection is
//!   left open and the sockets are within the configured bounds.

use smoltcp::phy::Medium;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress, IpCidr,
    IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket,
};

use crate::host::{Clock, Config, Host, VirtualClock};
use crate::link::vnet::{checksum, sum_be};
use crate::replay::{ReplayDevice, ReplayHandle};
use crate::services::http::HttpConfig;
use crate::services::{ListenerConfig, ServiceSpec, ServicesConfig};

/// The host's address in the ingress targets.
pub const HOST_V4: &str = "192.0.2.2/24";
/// The host's IPv6 address in the ingress targets.
pub const HOST_V6: &str = "2001:db8::2/64";
/// The host's MAC in the Ethernet target.
pub const HOST_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);

/// One record of a fuzz input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<'a> {
    Packet(&'a [u8]),
    Advance(Duration),
}

/// Split a fuzz input into records (see the module documentation).
pub fn ops(mut data: &[u8]) -> impl Iterator<Item = Op<'_>> {
    std::iter::from_fn(move || {
        let (&tag, rest) = data.split_first()?;
        if tag >= 0x80 {
            data = rest;
            let n = u64::from(tag & 0x7f);
            return Some(Op::Advance(Duration::from_millis(n * n)));
        }
        let len = match rest {
            [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
            _ => rest.len(),
        };
        let body = rest.get(2..).unwrap_or(&[]);
        let len = len.min(body.len());
        data = &body[len..];
        Some(Op::Packet(&body[..len]))
    })
}

/// Encode records in the framing `ops` reads (for seed corpora).
pub fn encode(ops: &[Op<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        match op {
            Op::Packet(p) => {
                let len = p.len().min(u16::MAX as usize);
                out.push(0);
                out.extend_from_slice(&(len as u16).to_be_bytes());
                out.extend_from_slice(&p[..len]);
            }
            Op::Advance(d) => {
                let n = (d.total_millis() as f64).sqrt().ceil().min(127.0) as u8;
                out.push(0x80 | n);
            }
        }
    }
    out
}

/// What the file outside the HTTP root holds: no response may ever contain it.
pub const SECRET: &[u8] = b"tunhost-fuzz: this file is outside the HTTP root";

/// A tree for the `http_request` target, made once per process in a private temporary
/// directory (fuzzers and tests run as root: nothing in a shared, predictable place whose files
/// someone else could have replaced with symlinks), so every input of a run sees the same tree:
/// `secret.txt` beside `root/`, and inside `root/` files, a directory, and symlinks that point
/// out of the root. Returns the root; the directory is removed when the process exits.
fn http_tree() -> &'static std::path::Path {
    use std::sync::OnceLock;
    static ROOT: OnceLock<std::path::PathBuf> = OnceLock::new();
    /// Remove the tree at exit (statics are never dropped).
    extern "C" fn remove_tree() {
        if let Some(base) = ROOT.get().and_then(|root| root.parent()) {
            let _ = std::fs::remove_dir_all(base);
        }
    }
    ROOT.get_or_init(|| {
        let made = (|| -> std::io::Result<std::path::PathBuf> {
            use std::os::unix::fs::PermissionsExt;
            let dir = tempfile::Builder::new()
                .prefix("tunhost-fuzz-http-")
                .permissions(std::fs::Permissions::from_mode(0o700))
                .tempdir()?;
            let (base, root) = (dir.path(), dir.path().join("root"));
            std::fs::create_dir_all(root.join("sub"))?;
            std::fs::write(base.join("secret.txt"), SECRET)?;
            std::fs::write(root.join("index.html"), b"<h1>fuzz</h1>")?;
            std::fs::write(root.join("a.txt"), b"hello\n")?;
            std::fs::write(root.join("sub/b.txt"), b"b\n")?;
            std::os::unix::fs::symlink("../../secret.txt", root.join("sub/up"))?;
            std::os::unix::fs::symlink(base.join("secret.txt"), root.join("abs"))?;
            std::os::unix::fs::symlink("..", root.join("parent"))?;
            Ok(dir.keep().join("root"))
        })();
        let root = made.expect("make the http_request fuzz tree in a temporary directory");
        // SAFETY: `remove_tree` is an `extern "C" fn()` that neither unwinds nor calls `exit`.
        unsafe { libc::atexit(remove_tree) };
        root
    })
}

/// Feed `data` as the request stream of one HTTP connection to a server whose root is a small
/// tree with a secret file beside it, and check: the connection ends within the idle timeout;
/// whatever comes back is HTTP/1.1; nothing outside the root is ever served.
pub fn http_request(data: &[u8]) {
    use crate::services::http::{Content, files::DirRoot, harness::Net};
    let files = DirRoot::new(http_tree()).expect("the fuzz tree is a directory");
    let mut net =
        Net::with_idle_timeout(Content::Files(Box::new(files)), Duration::from_millis(500));
    let h = net.connect();
    let (bytes, closed) = net.exchange(h, data, 3_000);
    let shown = || String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    assert!(
        closed,
        "connection still open after the idle timeout: {}",
        shown()
    );
    assert!(
        bytes.is_empty() || bytes.starts_with(b"HTTP/1.1 "),
        "not an HTTP/1.1 response: {}",
        shown()
    );
    assert!(
        !bytes.windows(SECRET.len()).any(|w| w == SECRET),
        "served a file outside the root: {}",
        shown()
    );
}

/// Seed requests for `http_request`: ordinary ones and the classic ways out of a root.
pub fn http_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let req = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: fuzz\r\n\r\n").into_bytes();
    vec![
        ("index", req("/")),
        ("file", req("/a.txt")),
        ("subdir", req("/sub/")),
        ("head-keepalive-pipeline", b"HEAD /a.txt HTTP/1.1\r\nHost: f\r\n\r\nGET /sub/b.txt HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n".to_vec()),
        ("http10", b"GET /a.txt HTTP/1.0\r\n\r\n".to_vec()),
        ("dotdot", req("/../secret.txt")),
        ("encoded-dotdot", req("/%2e%2e/secret.txt")),
        ("encoded-slash", req("/sub%2f..%2f..%2fsecret.txt")),
        ("backslash", req("/..\\secret.txt")),
        ("symlink-up", req("/sub/up")),
        ("symlink-abs", req("/abs")),
        ("symlink-parent", req("/parent/secret.txt")),
        ("post", b"POST /a.txt HTTP/1.1\r\nHost: f\r\nContent-Length: 3\r\n\r\nabc".to_vec()),
        ("garbage", b"\x00\xff GET\r\n\r\n".to_vec()),
    ]
}

/// Recompute the IPv4 header and TCP/UDP/ICMP checksums of every packet of a fuzz input, so
/// that a crash found under `cfg(fuzzing)` (where smoltcp checks no checksum) reaches the same
/// code in a normal build. Packets it cannot parse are left as they are.
pub fn fix_checksums(medium: Medium, data: &[u8]) -> Vec<u8> {
    let fixed: Vec<Vec<u8>> = ops(data)
        .map(|op| match op {
            Op::Packet(p) => {
                let mut p = p.to_vec();
                let off = if medium == Medium::Ethernet { 14 } else { 0 };
                if let Some(ip) = p.get_mut(off..) {
                    fix_ip(ip);
                }
                p
            }
            Op::Advance(_) => Vec::new(),
        })
        .collect();
    let mut out = Vec::new();
    for (op, f) in ops(data).zip(&fixed) {
        out.extend(match op {
            Op::Packet(_) => encode(&[Op::Packet(f)]),
            adv => encode(&[adv]),
        });
    }
    out
}

fn fix_ip(ip: &mut [u8]) {
    let (proto, src, dst, l4): (IpProtocol, IpAddress, IpAddress, &mut [u8]) =
        match ip.first().map(|b| b >> 4) {
            Some(4) => {
                let Ok(mut p) = Ipv4Packet::new_checked(&mut *ip) else {
                    return;
                };
                p.fill_checksum();
                if p.more_frags() || p.frag_offset() != 0 {
                    return;
                }
                let (proto, src, dst) = (p.next_header(), p.src_addr(), p.dst_addr());
                let hl = p.header_len() as usize;
                let tl = (p.total_len() as usize).min(ip.len());
                (proto, src.into(), dst.into(), &mut ip[hl.min(tl)..tl])
            }
            Some(6) => {
                let Ok(p) = Ipv6Packet::new_checked(&*ip) else {
                    return;
                };
                let (proto, src, dst) = (p.next_header(), p.src_addr(), p.dst_addr());
                let end = (40 + p.payload_len() as usize).min(ip.len());
                (proto, src.into(), dst.into(), &mut ip[40..end])
            }
            _ => return,
        };
    let at = match proto {
        IpProtocol::Tcp => 16,
        IpProtocol::Udp => 6,
        IpProtocol::Icmp | IpProtocol::Icmpv6 => 2,
        _ => return,
    };
    if l4.len() < at + 2 {
        return;
    }
    l4[at..at + 2].copy_from_slice(&[0, 0]);
    let start = match proto {
        IpProtocol::Icmp => 0,
        _ => pseudo_header(proto, src, dst, l4.len()),
    };
    let sum = checksum(start, l4);
    l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

/// The host of the ingress targets: every service, small buffers so that limits are reached.
fn fuzz_host(medium: Medium) -> (Host<ReplayDevice, VirtualClock>, VirtualClock, ReplayHandle) {
    let clock = VirtualClock::new(Instant::from_secs(1));
    // An IP MTU: the replay device adds the Ethernet header on TAP.
    let mtu = 1500;
    let config = Config {
        addrs: vec![HOST_V4.parse().unwrap(), HOST_V6.parse().unwrap()],
        gateway: None,
        mac: Some(HOST_MAC),
        seed: Some(0x5eed),
        ..Config::default()
    };
    let services = ServicesConfig {
        tcp: ListenerConfig {
            backlog: 4,
            max_sockets: 8,
            rx_buffer: 4096,
            tx_buffer: 4096,
            ..ListenerConfig::default()
        },
        services: vec![
            ServiceSpec::Echo(7),
            ServiceSpec::UdpEcho(7),
            ServiceSpec::Discard(9),
            ServiceSpec::Chargen(19),
            ServiceSpec::Http(80),
        ],
        http: HttpConfig {
            backlog: 4,
            epoch: Some(1_700_000_000),
            ..HttpConfig::default()
        },
        ..ServicesConfig::default()
    };
    let tcp_services = services
        .services
        .iter()
        .filter(|s| s.port().0 == "tcp")
        .count();
    let (device, handle) = ReplayDevice::new(medium, mtu, true);
    let mut host =
        Host::new(device, clock.clone(), config).expect("the fuzz configuration is valid");
    crate::services::add(&mut host, &services).expect("the fuzz services are valid");
    debug_assert_eq!(tcp_services, TCP_SERVICES);
    (host, clock, handle)
}

/// TCP services of the ingress targets' host: echo, discard, chargen, HTTP.
const TCP_SERVICES: usize = 4;

/// Feed `data` (framed as in the module documentation) to a host on an IP-medium (TUN) device
/// and check the invariants.
pub fn ingress_ip(data: &[u8]) {
    ingress(Medium::Ip, data)
}

/// The same on an Ethernet-medium (TAP) device, ARP included.
pub fn ingress_ethernet(data: &[u8]) {
    ingress(Medium::Ethernet, data)
}

/// Parse `data` as a pcap or pcapng file. Any capture the reader accepts must survive a round
/// trip through this project's own writer: its Raw-IP and Ethernet packets, written with
/// [`crate::pcap::TraceWriter`] (both formats) and read back, give the same bytes, directions
/// and timestamps (to the microsecond, the writer's clock resolution).
pub fn pcap_reader(data: &[u8]) {
    use crate::pcap::{Capture, Direction, Format, Link, Timestamps, TraceConfig, TraceWriter};

    let Ok(capture) = Capture::parse(data) else {
        return;
    };
    for (link, medium) in [(Link::Raw, Medium::Ip), (Link::Ethernet, Medium::Ethernet)] {
        let packets: Vec<_> = capture
            .packets
            .iter()
            .filter(|p| p.link == link)
            .take(256)
            .collect();
        if packets.is_empty() {
            continue;
        }
        for format in [Format::PcapNg, Format::Pcap] {
            let config = TraceConfig {
                format,
                timestamps: Timestamps::Clock,
                ..TraceConfig::new("fuzz", "memory")
            };
            let mut w = TraceWriter::new(Vec::new(), medium, &config).expect("write to memory");
            let micros = |d: std::time::Duration| (d.as_micros().min(i64::MAX as u128 / 2)) as i64;
            for p in &packets {
                let dir = p.direction.unwrap_or(Direction::Inbound);
                w.record(Instant::from_micros(micros(p.timestamp)), dir, &p.data);
            }
            let (result, out, _) = w.finish();
            result.expect("write to memory");
            let out = out.expect("the writer gives its output back");
            let back = Capture::parse(&out)
                .unwrap_or_else(|e| panic!("our own {format:?} trace does not read back: {e}"));
            assert_eq!(
                back.packets.len(),
                packets.len(),
                "{format:?}: packet count"
            );
            for (i, (a, b)) in packets.iter().zip(&back.packets).enumerate() {
                assert_eq!(a.data, b.data, "{format:?}: packet {i}'s bytes");
                assert_eq!(b.link, link, "{format:?}: packet {i}'s link type");
                // Times past what the format holds are written as its latest time.
                assert_eq!(
                    micros(a.timestamp.min(format.latest())),
                    micros(b.timestamp),
                    "{format:?}: packet {i}'s timestamp"
                );
                if format == Format::PcapNg {
                    let dir = a.direction.unwrap_or(Direction::Inbound);
                    assert_eq!(b.direction, Some(dir), "packet {i}'s direction");
                }
            }
        }
    }
}

/// Parse `data` as a capture file and, if it is one, replay its first 64 packets through a host
/// with a trace of the output: hostile captures (lengths, timestamps, link types, clocks far in
/// the past or future) must give an error or a replay, never a panic or a hang.
pub fn replay(data: &[u8]) {
    use crate::pcap::{Capture, Timestamps, TraceConfig};
    use crate::replay::ReplayConfig;

    let Ok(mut capture) = Capture::parse(data) else {
        return;
    };
    capture.packets.truncate(64);
    let config = Config {
        addrs: vec![
            IpCidr::new(smoltcp::wire::Ipv4Address::new(192, 0, 2, 2).into(), 24),
            IpCidr::new(
                smoltcp::wire::Ipv6Address::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).into(),
                64,
            ),
        ],
        seed: Some(0),
        ..Config::default()
    };
    let trace = TraceConfig {
        timestamps: Timestamps::Clock,
        ..TraceConfig::new("fuzz", "memory")
    };
    let mut out = Vec::new();
    let _ = crate::replay::replay(
        &capture,
        &ReplayConfig::new(config, classic_services()),
        Some((&mut out, trace)),
    );
}

/// echo 7 (TCP and UDP), discard 9, chargen 19: what the replay target's host runs.
fn classic_services() -> ServicesConfig {
    ServicesConfig {
        services: vec![
            ServiceSpec::Echo(7),
            ServiceSpec::UdpEcho(7),
            ServiceSpec::Discard(9),
            ServiceSpec::Chargen(19),
        ],
        ..ServicesConfig::default()
    }
}

fn ingress(medium: Medium, data: &[u8]) {
    let (mut host, clock, wire) = fuzz_host(medium);
    let addrs: Vec<IpCidr> = host.config().addrs.clone();
    let check = |sent: Vec<(Instant, Vec<u8>)>| {
        for (_, p) in &sent {
            if let Err(e) = check_emitted(medium, p, &addrs, HOST_MAC) {
                panic!("host emitted a bad packet ({e}): {p:02x?}");
            }
        }
        sent.len()
    };
    // Whether the host may have something to send without a new packet: the clock moved, or
    // the last turn asked to be polled again at once.
    let mut due = true;
    for op in ops(data) {
        match op {
            Op::Advance(d) => {
                clock.advance(d);
                due = true;
            }
            Op::Packet(p) => {
                let addressed = addressed_to_host(medium, p, &addrs);
                wire.push(p);
                let delay = host.poll();
                let emitted = check(wire.take_sent());
                if !addressed && !due && emitted > 0 {
                    panic!(
                        "host answered a packet not addressed to it: {p:02x?} -> {emitted} packet(s)"
                    );
                }
                due = delay == Some(Duration::ZERO);
            }
        }
    }
    // Let every timeout run out (retransmissions, keep-alives, TIME-WAIT, lingering closes),
    // jumping from one deadline to the next, for 10 virtual minutes at most. Nobody answers.
    let end = clock.now() + Duration::from_secs(600);
    while clock.now() < end {
        let delay = host.poll();
        check(wire.take_sent());
        match delay {
            None => break,
            Some(d) => clock.advance(d.max(Duration::from_millis(1))),
        }
    }
    let open = host.active_connections();
    assert_eq!(
        open, 0,
        "{open} TCP connections still open after every timeout"
    );
    // 8 sockets at most per TCP service, and the UDP echo socket.
    let sockets = host.sockets().iter().count();
    assert!(
        sockets <= TCP_SERVICES * 8 + 1,
        "{sockets} sockets: above the configured bound"
    );
}

fn is_host(addr: IpAddress, addrs: &[IpCidr]) -> bool {
    addrs.iter().any(|c| c.address() == addr)
}

/// Whether a packet read from the device is for the host: its IP destination is one of the
/// host's addresses, or a broadcast/multicast one, or it is an ARP packet whose target is the
/// host. Anything unparseable is not.
pub fn addressed_to_host(medium: Medium, packet: &[u8], addrs: &[IpCidr]) -> bool {
    let ip = match medium {
        Medium::Ethernet => {
            let Ok(frame) = EthernetFrame::new_checked(packet) else {
                return false;
            };
            match frame.ethertype() {
                EthernetProtocol::Arp => {
                    let Ok(arp) = ArpPacket::new_checked(frame.payload()) else {
                        return false;
                    };
                    let target = arp.target_protocol_addr();
                    return target.len() == 4
                        && is_host(
                            IpAddress::v4(target[0], target[1], target[2], target[3]),
                            addrs,
                        );
                }
                _ => frame.payload(),
            }
        }
        _ => packet,
    };
    match ip.first().map(|b| b >> 4) {
        Some(4) => Ipv4Packet::new_checked(ip).is_ok_and(|p| {
            let dst = IpAddress::Ipv4(p.dst_addr());
            is_host(dst, addrs) || p.dst_addr().is_broadcast() || p.dst_addr().is_multicast()
                // A subnet's directed broadcast.
                || addrs.iter().any(|c| match c {
                    IpCidr::Ipv4(c) => c.broadcast() == Some(p.dst_addr()),
                    _ => false,
                })
        }),
        Some(6) => Ipv6Packet::new_checked(ip).is_ok_and(|p| {
            is_host(IpAddress::Ipv6(p.dst_addr()), addrs) || p.dst_addr().is_multicast()
        }),
        _ => false,
    }
}

/// Check one packet the host emitted: it parses, its checksums are valid, it comes from the host.
pub fn check_emitted(
    medium: Medium,
    packet: &[u8],
    addrs: &[IpCidr],
    mac: EthernetAddress,
) -> Result<(), String> {
    let ip = match medium {
        Medium::Ethernet => {
            let frame = EthernetFrame::new_checked(packet).map_err(|e| format!("ethernet: {e}"))?;
            if frame.src_addr() != mac {
                return Err(format!("source MAC {} is not the host's", frame.src_addr()));
            }
            match frame.ethertype() {
                EthernetProtocol::Arp => {
                    let arp =
                        ArpPacket::new_checked(frame.payload()).map_err(|e| format!("arp: {e}"))?;
                    if arp.source_hardware_addr() != mac.as_bytes() {
                        return Err("ARP sender MAC is not the host's".into());
                    }
                    let s = arp.source_protocol_addr();
                    let src = IpAddress::v4(s[0], s[1], s[2], s[3]);
                    if !is_host(src, addrs) {
                        return Err(format!("ARP sender {src} is not the host"));
                    }
                    if !matches!(arp.operation(), ArpOperation::Request | ArpOperation::Reply) {
                        return Err("ARP operation is neither request nor reply".into());
                    }
                    return Ok(());
                }
                EthernetProtocol::Ipv4 | EthernetProtocol::Ipv6 => frame.payload(),
                other => return Err(format!("unexpected ethertype {other}")),
            }
        }
        _ => packet,
    };
    match ip.first().map(|b| b >> 4) {
        Some(4) => {
            let p = Ipv4Packet::new_checked(ip).map_err(|e| format!("ipv4: {e}"))?;
            if checksum(0, &ip[..p.header_len() as usize]) != 0 {
                return Err("bad IPv4 header checksum".into());
            }
            let (src, dst) = (IpAddress::Ipv4(p.src_addr()), IpAddress::Ipv4(p.dst_addr()));
            if !is_host(src, addrs) {
                return Err(format!("source {src} is not the host"));
            }
            if p.more_frags() || p.frag_offset() != 0 {
                // A fragment: the transport checksum covers the reassembled payload.
                return Ok(());
            }
            check_l4(p.next_header(), p.payload(), src, dst)
        }
        Some(6) => {
            let p = Ipv6Packet::new_checked(ip).map_err(|e| format!("ipv6: {e}"))?;
            let (src, dst) = (IpAddress::Ipv6(p.src_addr()), IpAddress::Ipv6(p.dst_addr()));
            if !is_host(src, addrs) {
                return Err(format!("source {src} is not the host"));
            }
            if p.next_header() == IpProtocol::Ipv6Frag {
                // A fragment: a whole fragment header, and the transport checksum covers the
                // reassembled payload.
                let f = p.payload();
                if f.len() < 8 || (f[3] & 1 == 1 && (f.len() - 8) % 8 != 0) {
                    return Err("bad IPv6 fragment".into());
                }
                return Ok(());
            }
            check_l4(p.next_header(), p.payload(), src, dst)
        }
        v => Err(format!("IP version {v:?}")),
    }
}

/// The sum of the pseudo-header of a transport checksum (RFC 793, RFC 8200 8.1), unfolded,
/// for [`checksum`]. Checksums here are `vnet`'s rather than smoltcp's, whose `verify_checksum`
/// always says yes when built for fuzzing (`cfg(fuzzing)`).
fn pseudo_header(proto: IpProtocol, src: IpAddress, dst: IpAddress, len: usize) -> u64 {
    let addrs = match (src, dst) {
        (IpAddress::Ipv4(s), IpAddress::Ipv4(d)) => sum_be(sum_be(0, &s.octets()), &d.octets()),
        (IpAddress::Ipv6(s), IpAddress::Ipv6(d)) => sum_be(sum_be(0, &s.octets()), &d.octets()),
        _ => 0,
    };
    addrs + u64::from(u8::from(proto)) + len as u64
}

fn check_l4(
    proto: IpProtocol,
    payload: &[u8],
    src: IpAddress,
    dst: IpAddress,
) -> Result<(), String> {
    let pseudo = pseudo_header(proto, src, dst, payload.len());
    let ok = match proto {
        IpProtocol::Tcp => {
            TcpPacket::new_checked(payload).map_err(|e| format!("tcp: {e}"))?;
            checksum(pseudo, payload) == 0
        }
        IpProtocol::Udp => {
            let u = UdpPacket::new_checked(payload).map_err(|e| format!("udp: {e}"))?;
            // Over IPv4 a zero checksum means "none" (RFC 768); over IPv6 it is mandatory.
            (u.checksum() == 0 && matches!(src, IpAddress::Ipv4(_)))
                || checksum(pseudo, payload) == 0
        }
        IpProtocol::Icmp => {
            smoltcp::wire::Icmpv4Packet::new_checked(payload)
                .map_err(|e| format!("icmpv4: {e}"))?;
            checksum(0, payload) == 0
        }
        IpProtocol::Icmpv6 => {
            smoltcp::wire::Icmpv6Packet::new_checked(payload)
                .map_err(|e| format!("icmpv6: {e}"))?;
            checksum(pseudo, payload) == 0
        }
        other => return Err(format!("unexpected protocol {other}")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("bad {proto} checksum"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trips() {
        let p1 = [0x45u8, 0, 0, 20];
        let ops_in = [
            Op::Packet(&p1),
            Op::Advance(Duration::from_millis(100)),
            Op::Packet(&[]),
        ];
        let bytes = encode(&ops_in);
        let back: Vec<Op<'_>> = ops(&bytes).collect();
        assert_eq!(back, ops_in);
    }

    #[test]
    fn checksums_catch_a_flipped_bit() {
        let seeds = seeds::ingress(Medium::Ip);
        let (_, echo) = seeds.iter().find(|(n, _)| *n == "tcp-echo").unwrap();
        let addrs: Vec<IpCidr> = vec![HOST_V4.parse().unwrap()];
        // The scripted peer's packets are well formed, but not from the host.
        for op in ops(echo) {
            if let Op::Packet(p) = op {
                let mut p = p.to_vec();
                // Pretend the host sent it: swap source and destination.
                let (s, d) = (p[12..16].to_vec(), p[16..20].to_vec());
                p[12..16].copy_from_slice(&d);
                p[16..20].copy_from_slice(&s);
                assert_eq!(check_emitted(Medium::Ip, &p, &addrs, HOST_MAC), Ok(()));
                let last = p.len() - 1;
                p[last] ^= 1;
                let e = check_emitted(Medium::Ip, &p, &addrs, HOST_MAC).unwrap_err();
                assert!(e.contains("checksum"), "{e}");
            }
        }
    }

    #[test]
    fn http_seeds_keep_the_invariants() {
        for (name, seed) in http_seeds() {
            eprintln!("http/{name}");
            http_request(&seed);
        }
    }

    #[test]
    fn http_tree_has_a_way_out_for_the_server_to_refuse() {
        // The invariant is only worth something if the secret is reachable by the file system.
        let root = http_tree();
        assert_eq!(std::fs::read(root.join("sub/up")).unwrap(), SECRET);
        assert_eq!(
            std::fs::read(root.join("parent/secret.txt")).unwrap(),
            SECRET
        );
    }

    #[test]
    fn framing_never_panics_on_short_input() {
        for data in [&[][..], &[0], &[0, 0], &[0, 0xff, 0xff, 1], &[0xff; 3]] {
            let _ = ops(data).count();
        }
    }

    #[test]
    fn empty_and_garbage_inputs_keep_invariants() {
        ingress_ip(&[]);
        ingress_ethernet(&[]);
        ingress_ip(&[0, 0, 4, 0x45, 0, 0, 0]);
        ingress_ethernet(&[0xff; 64]);
    }
}

/// Seed inputs for the ingress targets, made by a scripted peer that talks to the same
/// deterministic host the targets build (so its ACKs match the host's sequence numbers).
pub mod seeds {
    use super::*;
    use smoltcp::wire::{Icmpv4Message, Icmpv4Packet, Ipv4Address, Ipv6Address};

    /// The peer's addresses and MAC.
    pub const PEER_V4: Ipv4Address = Ipv4Address::new(192, 0, 2, 1);
    pub const PEER_V6: Ipv6Address = Ipv6Address::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    pub const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
    const HOST4: Ipv4Address = Ipv4Address::new(192, 0, 2, 2);
    const HOST6: Ipv6Address = Ipv6Address::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

    fn ipv4(src: Ipv4Address, dst: Ipv4Address, proto: IpProtocol, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 20 + payload.len()];
        let mut p = Ipv4Packet::new_unchecked(&mut b);
        p.set_version(4);
        p.set_header_len(20);
        p.set_total_len((20 + payload.len()) as u16);
        p.set_hop_limit(64);
        p.set_next_header(proto);
        p.set_src_addr(src);
        p.set_dst_addr(dst);
        p.set_dont_frag(true);
        p.payload_mut().copy_from_slice(payload);
        p.fill_checksum();
        b
    }

    fn ipv6(src: Ipv6Address, dst: Ipv6Address, proto: IpProtocol, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 40 + payload.len()];
        let mut p = Ipv6Packet::new_unchecked(&mut b);
        p.set_version(6);
        p.set_payload_len(payload.len() as u16);
        p.set_next_header(proto);
        p.set_hop_limit(64);
        p.set_src_addr(src);
        p.set_dst_addr(dst);
        p.payload_mut().copy_from_slice(payload);
        b
    }

    /// A TCP segment from the peer to the host (IPv4 or IPv6 by `v6`).
    #[allow(clippy::too_many_arguments)]
    /// A SYN to the host's port `dport` from `src` (IPv4), for flood tests.
    #[cfg(test)]
    pub(crate) fn syn_from(src: Ipv4Address, sport: u16, dport: u16) -> Vec<u8> {
        let mut p = tcp(false, sport, dport, 7000, None, "S", &[]);
        let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
        ip.set_src_addr(src);
        ip.fill_checksum();
        let mut t = TcpPacket::new_unchecked(ip.payload_mut());
        t.fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(HOST4));
        p
    }

    /// A TCP segment from the peer (IPv4) to the host's `dport` with MSS 536 and SACK
    /// permitted (on a SYN) or these SACK blocks (on an ACK).
    fn tcp_sack(
        dport: u16,
        seq: u32,
        ack: Option<u32>,
        syn: bool,
        blocks: &[(u32, u32)],
    ) -> Vec<u8> {
        use smoltcp::phy::ChecksumCapabilities;
        use smoltcp::wire::{TcpControl, TcpRepr, TcpSeqNumber};
        let mut sack_ranges = [None; 3];
        for (slot, &b) in sack_ranges.iter_mut().zip(blocks) {
            *slot = Some(b);
        }
        let repr = TcpRepr {
            src_port: 40010,
            dst_port: dport,
            control: if syn {
                TcpControl::Syn
            } else {
                TcpControl::None
            },
            seq_number: TcpSeqNumber(seq as i32),
            ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: 65535,
            window_scale: None,
            max_seg_size: syn.then_some(536),
            sack_permitted: syn,
            sack_ranges,
            timestamp: None,
            payload: &[],
        };
        let mut b = vec![0u8; repr.buffer_len()];
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut b[..]),
            &IpAddress::Ipv4(PEER_V4),
            &IpAddress::Ipv4(HOST4),
            &ChecksumCapabilities::default(),
        );
        ipv4(PEER_V4, HOST4, IpProtocol::Tcp, &b)
    }

    fn tcp(
        v6: bool,
        sport: u16,
        dport: u16,
        seq: u32,
        ack: Option<u32>,
        flags: &str,
        data: &[u8],
    ) -> Vec<u8> {
        let mut b = vec![0u8; 20 + data.len()];
        let mut t = TcpPacket::new_unchecked(&mut b);
        t.set_src_port(sport);
        t.set_dst_port(dport);
        t.set_seq_number(smoltcp::wire::TcpSeqNumber(seq as i32));
        t.set_ack_number(smoltcp::wire::TcpSeqNumber(ack.unwrap_or(0) as i32));
        t.set_header_len(20);
        t.clear_flags();
        t.set_syn(flags.contains('S'));
        t.set_fin(flags.contains('F'));
        t.set_rst(flags.contains('R'));
        t.set_psh(flags.contains('P'));
        t.set_ack(ack.is_some());
        t.set_window_len(65535);
        t.payload_mut().copy_from_slice(data);
        if v6 {
            t.fill_checksum(&IpAddress::Ipv6(PEER_V6), &IpAddress::Ipv6(HOST6));
            ipv6(PEER_V6, HOST6, IpProtocol::Tcp, &b)
        } else {
            t.fill_checksum(&IpAddress::Ipv4(PEER_V4), &IpAddress::Ipv4(HOST4));
            ipv4(PEER_V4, HOST4, IpProtocol::Tcp, &b)
        }
    }

    fn udp(dport: u16, data: &[u8]) -> Vec<u8> {
        udp_to(HOST4, dport, data)
    }

    /// A UDP header and `data`, checksummed for `src` → `dst`.
    fn udp_segment(src: IpAddress, dst: IpAddress, dport: u16, data: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 8 + data.len()];
        let mut u = UdpPacket::new_unchecked(&mut b);
        u.set_src_port(40000);
        u.set_dst_port(dport);
        u.set_len((8 + data.len()) as u16);
        u.payload_mut().copy_from_slice(data);
        u.fill_checksum(&src, &dst);
        b
    }

    /// A UDP datagram from the peer to `dst`.
    pub(crate) fn udp_to(dst: Ipv4Address, dport: u16, data: &[u8]) -> Vec<u8> {
        let b = udp_segment(PEER_V4.into(), dst.into(), dport, data);
        ipv4(PEER_V4, dst, IpProtocol::Udp, &b)
    }

    /// A UDP datagram from the peer to the host over IPv6.
    fn udp6(dport: u16, data: &[u8]) -> Vec<u8> {
        let b = udp_segment(PEER_V6.into(), HOST6.into(), dport, data);
        ipv6(PEER_V6, HOST6, IpProtocol::Udp, &b)
    }

    /// The IPv6 packet `whole` (no extension headers) cut into fragments of `ranges` of its
    /// payload, with identification `id`.
    fn fragments6(whole: &[u8], id: u32, ranges: &[(usize, usize)]) -> Vec<Vec<u8>> {
        let body = &whole[40..];
        ranges
            .iter()
            .map(|&(a, b)| {
                let mut p = whole[..40].to_vec();
                let next = p[6];
                p[6] = 44;
                let more = u16::from(b < body.len());
                p.extend_from_slice(&[next, 0]);
                p.extend_from_slice(&((a as u16) | more).to_be_bytes());
                p.extend_from_slice(&id.to_be_bytes());
                p.extend_from_slice(&body[a..b]);
                let len = (p.len() - 40) as u16;
                p[4..6].copy_from_slice(&len.to_be_bytes());
                p
            })
            .collect()
    }

    fn ping(dst: Ipv4Address, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; 8 + len];
        let mut i = Icmpv4Packet::new_unchecked(&mut b);
        i.set_msg_type(Icmpv4Message::EchoRequest);
        i.set_msg_code(0);
        i.set_echo_ident(0x1234);
        i.set_echo_seq_no(1);
        for (k, x) in i.data_mut().iter_mut().enumerate() {
            *x = k as u8;
        }
        i.fill_checksum();
        ipv4(PEER_V4, dst, IpProtocol::Icmp, &b)
    }

    fn ethernet(ethertype: EthernetProtocol, dst: EthernetAddress, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 14 + payload.len()];
        let mut f = EthernetFrame::new_unchecked(&mut b);
        f.set_dst_addr(dst);
        f.set_src_addr(PEER_MAC);
        f.set_ethertype(ethertype);
        f.payload_mut().copy_from_slice(payload);
        b
    }

    fn arp_request(target: Ipv4Address) -> Vec<u8> {
        let mut b = vec![0u8; 28];
        let mut a = ArpPacket::new_unchecked(&mut b);
        a.set_hardware_type(smoltcp::wire::ArpHardware::Ethernet);
        a.set_protocol_type(EthernetProtocol::Ipv4);
        a.set_hardware_len(6);
        a.set_protocol_len(4);
        a.set_operation(ArpOperation::Request);
        a.set_source_hardware_addr(PEER_MAC.as_bytes());
        a.set_source_protocol_addr(&PEER_V4.octets());
        a.set_target_hardware_addr(&[0; 6]);
        a.set_target_protocol_addr(&target.octets());
        ethernet(EthernetProtocol::Arp, EthernetAddress::BROADCAST, &b)
    }

    /// An ICMPv6 Neighbor Solicitation for the host, carrying the peer's MAC (RFC 4861).
    fn neighbor_solicitation() -> Vec<u8> {
        let dst = Ipv6Address::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0x0002);
        let mut b = vec![0u8; 32];
        b[0] = 135; // Neighbor Solicitation
        b[8..24].copy_from_slice(&HOST6.octets());
        b[24] = 1; // option: source link-layer address, 1 × 8 bytes
        b[25] = 1;
        b[26..32].copy_from_slice(PEER_MAC.as_bytes());
        let mut i = smoltcp::wire::Icmpv6Packet::new_unchecked(&mut b);
        i.fill_checksum(&PEER_V6, &dst);
        let mut ip = ipv6(PEER_V6, dst, IpProtocol::Icmpv6, &b);
        Ipv6Packet::new_unchecked(&mut ip).set_hop_limit(255);
        ethernet(
            EthernetProtocol::Ipv6,
            EthernetAddress([0x33, 0x33, 0xff, 0, 0, 0x02]),
            &ip,
        )
    }

    /// The SACK blocks a scripted peer reports, given the host's data segments as (seq, end).
    type SackBlocks = dyn Fn(&[(u32, u32)]) -> Vec<(u32, u32)>;

    /// Records packets fed to a live fuzz host, so that a seed can react to its answers.
    struct Script {
        medium: Medium,
        host: Host<ReplayDevice, VirtualClock>,
        clock: VirtualClock,
        wire: ReplayHandle,
        /// Everything the host sent so far.
        sent: Vec<Vec<u8>>,
        out: Vec<u8>,
    }

    impl Script {
        fn new(medium: Medium) -> Script {
            let (host, clock, wire) = fuzz_host(medium);
            let mut s = Script {
                medium,
                host,
                clock,
                wire,
                sent: Vec::new(),
                out: Vec::new(),
            };
            if medium == Medium::Ethernet {
                s.raw(&arp_request(HOST4));
                s.raw(&neighbor_solicitation());
            }
            s
        }

        fn raw(&mut self, frame: &[u8]) {
            self.out.extend(encode(&[Op::Packet(frame)]));
            self.wire.push(frame);
            self.poll();
        }

        /// Feed an IP packet (wrapped in Ethernet on a TAP host).
        fn send(&mut self, ip: &[u8]) {
            match self.medium {
                Medium::Ethernet => {
                    let t = if ip[0] >> 4 == 6 {
                        EthernetProtocol::Ipv6
                    } else {
                        EthernetProtocol::Ipv4
                    };
                    self.raw(&ethernet(t, HOST_MAC, ip));
                }
                _ => self.raw(ip),
            }
        }

        fn advance(&mut self, ms: u64) {
            let d = Duration::from_millis(ms);
            self.out.extend(encode(&[Op::Advance(d)]));
            self.clock.advance(d);
            self.poll();
        }

        fn poll(&mut self) {
            self.host.poll();
            self.sent
                .extend(self.wire.take_sent().into_iter().map(|(_, p)| p));
        }

        /// The host's TCP segments sent so far, as (flags has SYN, seq, payload len, has FIN).
        fn host_segments(&self) -> Vec<(bool, u32, usize, bool)> {
            let skip = if self.medium == Medium::Ethernet {
                14
            } else {
                0
            };
            self.sent
                .iter()
                .filter_map(|p| {
                    let ip = p.get(skip..)?;
                    let payload = match ip.first()? >> 4 {
                        4 => {
                            let p = Ipv4Packet::new_checked(ip).ok()?;
                            (p.next_header() == IpProtocol::Tcp).then(|| p.payload().to_vec())?
                        }
                        6 => {
                            let p = Ipv6Packet::new_checked(ip).ok()?;
                            (p.next_header() == IpProtocol::Tcp).then(|| p.payload().to_vec())?
                        }
                        _ => return None,
                    };
                    let t = TcpPacket::new_checked(&payload[..]).ok()?;
                    Some((t.syn(), t.seq_number().0 as u32, t.payload().len(), t.fin()))
                })
                .collect()
        }

        /// Chargen with SACK: the peer (MSS 536) lets the host fill its window, then answers
        /// with duplicate ACKs whose SACK blocks are `blocks(host's data segments as (seq,
        /// end))`, lets the host retransmit, acknowledges half, and lets the retransmission
        /// timer run with the rest SACKed the same way.
        fn chargen_sack(&mut self, blocks: &SackBlocks) {
            let seq = 2001u32;
            self.send(&tcp_sack(19, seq - 1, None, true, &[]));
            let Some(&(_, isn, _, _)) = self.host_segments().iter().rev().find(|s| s.0) else {
                return;
            };
            self.send(&tcp_sack(19, seq, Some(isn.wrapping_add(1)), false, &[]));
            self.advance(5);
            let data = |s: &Script| -> Vec<(u32, u32)> {
                s.host_segments()
                    .into_iter()
                    .filter(|&(syn, _, len, _)| !syn && len > 0)
                    .map(|(_, sq, len, _)| (sq, sq.wrapping_add(len as u32)))
                    .collect()
            };
            // The first flight acknowledged: slow start sends a larger second one.
            let Some(&(_, una)) = data(self).last() else {
                return;
            };
            self.send(&tcp_sack(19, seq, Some(una), false, &[]));
            self.advance(5);
            let sent: Vec<(u32, u32)> = data(self)
                .into_iter()
                .filter(|&(sq, _)| sq.wrapping_sub(una) as i32 >= 0)
                .collect();
            for _ in 0..3 {
                self.send(&tcp_sack(19, seq, Some(una), false, &blocks(&sent)));
            }
            self.advance(5);
            // Half of it acknowledged; the timer then runs out with the rest reported as before.
            let Some(&(_, half)) = sent.get(sent.len() / 2) else {
                return;
            };
            self.send(&tcp_sack(19, seq, Some(half), false, &blocks(&data(self))));
            self.advance(1500);
            self.send(&tcp_sack(19, seq, Some(half), false, &blocks(&data(self))));
            self.advance(5);
        }

        /// Open a connection to `port`, send `data` in one segment, wait, optionally FIN.
        fn tcp_session(&mut self, v6: bool, sport: u16, port: u16, data: &[u8], fin: bool) {
            let mut seq = 1000u32;
            self.send(&tcp(v6, sport, port, seq, None, "S", &[]));
            seq += 1;
            let Some(&(_, isn, _, _)) = self.host_segments().iter().rev().find(|s| s.0) else {
                return; // refused: the seed still exercises the RST path
            };
            let mut ack = isn.wrapping_add(1);
            self.send(&tcp(v6, sport, port, seq, Some(ack), "", &[]));
            if !data.is_empty() {
                self.send(&tcp(v6, sport, port, seq, Some(ack), "P", data));
                seq = seq.wrapping_add(data.len() as u32);
            }
            self.advance(20);
            // Acknowledge what the host sent.
            for (_, s, len, f) in self.host_segments() {
                let end = s.wrapping_add(len as u32).wrapping_add(u32::from(f));
                if end.wrapping_sub(ack) as i32 > 0 {
                    ack = end;
                }
            }
            self.send(&tcp(v6, sport, port, seq, Some(ack), "", &[]));
            if fin {
                self.send(&tcp(v6, sport, port, seq, Some(ack), "F", &[]));
                self.advance(20);
                for (_, s, len, f) in self.host_segments() {
                    let end = s.wrapping_add(len as u32).wrapping_add(u32::from(f));
                    if end.wrapping_sub(ack) as i32 > 0 {
                        ack = end;
                    }
                }
                self.send(&tcp(
                    v6,
                    sport,
                    port,
                    seq.wrapping_add(1),
                    Some(ack),
                    "",
                    &[],
                ));
            }
        }
    }

    /// Named seeds for `ingress_ip` (`Medium::Ip`) or `ingress_ethernet` (`Medium::Ethernet`).
    pub fn ingress(medium: Medium) -> Vec<(&'static str, Vec<u8>)> {
        let mut seeds = Vec::new();
        let mut add = |name, f: &dyn Fn(&mut Script)| {
            let mut s = Script::new(medium);
            f(&mut s);
            seeds.push((name, s.out));
        };
        add("ping", &|s| s.send(&ping(HOST4, 56)));
        add("ping-broadcast", &|s| {
            s.send(&ping(Ipv4Address::new(192, 0, 2, 255), 8))
        });
        add("ping-not-for-host", &|s| {
            s.send(&ping(Ipv4Address::new(192, 0, 2, 9), 8))
        });
        add("tcp-echo", &|s| {
            s.tcp_session(false, 40001, 7, b"hello, echo\n", true)
        });
        add("tcp-echo-v6", &|s| {
            s.tcp_session(true, 40002, 7, b"hello over IPv6\n", true)
        });
        add("tcp-discard", &|s| {
            s.tcp_session(false, 40003, 9, &[0x5a; 1000], true)
        });
        add("tcp-chargen", &|s| {
            s.tcp_session(false, 40004, 19, b"", false)
        });
        // Segments 1 and 3 lost, the rest SACKed: SACK-based recovery (smoltcp patch 17).
        add("tcp-chargen-sack", &|s| {
            s.chargen_sack(&|segs| {
                let (Some(&(a, b)), Some(&(c, _)), Some(&(_, end))) =
                    (segs.get(1), segs.get(3), segs.last())
                else {
                    return Vec::new();
                };
                vec![(c, end), (a, b)]
            })
        });
        // SACK blocks that lie: past what was sent, below SND.UNA, reversed, everything.
        add("tcp-chargen-sack-lies", &|s| {
            s.chargen_sack(&|segs| {
                let (Some(&(first, _)), Some(&(_, end))) = (segs.first(), segs.last()) else {
                    return Vec::new();
                };
                vec![
                    (end.wrapping_sub(100), end.wrapping_add(100_000)),
                    (first.wrapping_sub(5000), first.wrapping_add(600)),
                    (end, first),
                ]
            })
        });
        add("tcp-closed-port", &|s| {
            s.tcp_session(false, 40005, 8, b"", false)
        });
        add("udp-echo", &|s| s.send(&udp(7, b"datagram")));
        add("udp-closed-port", &|s| s.send(&udp(8, b"anyone?")));
        add("udp-echo-v6-fragments", &|s| {
            let whole = udp6(7, &[0x6b; 3000]);
            for f in fragments6(&whole, 0x1234, &[(1448, 2896), (0, 1448), (2896, 3008)]) {
                s.send(&f);
            }
        });
        add("v6-fragments-overlap", &|s| {
            let whole = udp6(7, &[0x6c; 3000]);
            for f in fragments6(&whole, 0x5678, &[(0, 1448), (1440, 2896), (2896, 3008)]) {
                s.send(&f);
            }
        });
        add("syn-storm", &|s| {
            for p in 0..12 {
                s.send(&tcp(false, 41000 + p, 7, 5000, None, "S", &[]));
            }
            s.advance(127 * 127);
        });
        seeds
    }
}

#[cfg(test)]
mod seed_tests {
    use super::*;

    /// Run a seed through a fresh host and return everything it sent.
    fn replies(medium: Medium, seed: &[u8]) -> Vec<Vec<u8>> {
        let (mut host, clock, wire) = fuzz_host(medium);
        let mut sent = Vec::new();
        for op in ops(seed) {
            match op {
                Op::Packet(p) => wire.push(p),
                Op::Advance(d) => clock.advance(d),
            }
            host.poll();
            sent.extend(wire.take_sent().into_iter().map(|(_, p)| p));
        }
        sent
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn scripted_tcp_seeds_reach_established_connections() {
        for medium in [Medium::Ip, Medium::Ethernet] {
            let seeds = seeds::ingress(medium);
            let get = |name| &seeds.iter().find(|(n, _)| *n == name).unwrap().1;
            let tx = replies(medium, get("tcp-echo"));
            assert!(
                tx.iter().any(|p| contains(p, b"hello, echo\n")),
                "{medium:?}: no echo"
            );
            let tx = replies(medium, get("tcp-echo-v6"));
            assert!(
                tx.iter().any(|p| contains(p, b"hello over IPv6\n")),
                "{medium:?}: no v6 echo"
            );
            // IPv6 fragments put back together: the whole datagram is echoed (in fragments);
            // overlapping ones are dropped whole.
            let sent: usize = replies(medium, get("udp-echo-v6-fragments"))
                .iter()
                .map(|p| p.windows(8).filter(|w| *w == [0x6b; 8]).count())
                .sum();
            assert!(
                sent >= 3000 / 8 - 2,
                "{medium:?}: v6 fragments not echoed ({sent})"
            );
            let echoed = replies(medium, get("v6-fragments-overlap"))
                .iter()
                .any(|p| contains(p, &[0x6c; 16]));
            assert!(
                !echoed,
                "{medium:?}: overlapping fragments were reassembled"
            );
            let tx = replies(medium, get("tcp-chargen"));
            assert!(
                tx.iter().any(|p| contains(p, b" !\"#$%&'()*+,-./0123")),
                "{medium:?}: no chargen"
            );
        }
    }

    #[test]
    fn the_sack_seed_makes_the_host_resend_the_two_holes_at_once() {
        // The host's data segments (IPv4) as (seq, len), in the order sent.
        let seeds = seeds::ingress(Medium::Ip);
        let seed = &seeds
            .iter()
            .find(|(n, _)| *n == "tcp-chargen-sack")
            .unwrap()
            .1;
        let tx: Vec<(u32, usize)> = replies(Medium::Ip, seed)
            .iter()
            .filter_map(|p| {
                let ip = Ipv4Packet::new_checked(&p[..]).ok()?;
                let t = TcpPacket::new_checked(ip.payload()).ok()?;
                (!t.syn() && !t.payload().is_empty())
                    .then(|| (t.seq_number().0 as u32, t.payload().len()))
            })
            .collect();
        // The first two segments sent a second time: the two holes the duplicate ACKs left
        // (the flight's 1st and 3rd segments, with the SACKed 2nd between them), one after the
        // other, before any new data.
        let first_again = (0..tx.len())
            .find(|&i| tx[..i].iter().any(|t| t.0 == tx[i].0))
            .expect("nothing retransmitted");
        let (a, b) = (tx[first_again], tx[first_again + 1]);
        assert!(
            tx[..first_again].contains(&a) && tx[..first_again].contains(&b),
            "{tx:?}"
        );
        assert_eq!(b.0.wrapping_sub(a.0), 2 * 536, "{tx:?}");
    }

    /// The TCP flags of the host's answers, as "SA" (SYN-ACK) or "R" (RST), in order.
    fn tcp_answers(sent: &[(Instant, Vec<u8>)]) -> Vec<&'static str> {
        sent.iter()
            .filter_map(|(_, p)| {
                let ip = Ipv4Packet::new_checked(&p[..]).ok()?;
                let t = TcpPacket::new_checked(ip.payload()).ok()?;
                Some(match (t.syn(), t.rst()) {
                    (true, _) => "SA",
                    (_, true) => "R",
                    _ => "other",
                })
            })
            .collect()
    }

    #[test]
    fn udp_echo_to_a_broadcast_answers_from_the_host() {
        use smoltcp::wire::Ipv4Address;
        for dst in [Ipv4Address::BROADCAST, Ipv4Address::new(192, 0, 2, 255)] {
            let (mut host, _clock, wire) = fuzz_host(Medium::Ip);
            wire.push(&seeds::udp_to(dst, 7, b"to everyone"));
            host.poll();
            let sent = wire.take_sent();
            let sources: Vec<_> = sent
                .iter()
                .filter_map(|(_, p)| Ipv4Packet::new_checked(&p[..]).ok().map(|ip| ip.src_addr()))
                .collect();
            assert_eq!(
                sources,
                [Ipv4Address::new(192, 0, 2, 2)],
                "echo of a datagram to {dst}"
            );
        }
    }

    #[test]
    fn a_syn_flood_does_not_lock_real_clients_out() {
        use smoltcp::wire::Ipv4Address;
        let (mut host, clock, wire) = fuzz_host(Medium::Ip);
        // Fill port 7's backlog (4 in the fuzz host) from an address that never answers.
        let ghost = Ipv4Address::new(192, 0, 2, 77);
        for port in 50000..50004 {
            wire.push(&seeds::syn_from(ghost, port, 7));
        }
        host.poll();
        assert_eq!(tcp_answers(&wire.take_sent()), ["SA"; 4]);
        // A real client now finds no socket in LISTEN.
        wire.push(&seeds::syn_from(seeds::PEER_V4, 40000, 7));
        host.poll();
        assert_eq!(tcp_answers(&wire.take_sent()), ["R"]);
        // Once the oldest half-open handshake has waited past the grace, its socket listens
        // again and the next real SYN is answered.
        clock.advance(crate::services::listener::HALF_OPEN_GRACE + Duration::from_millis(100));
        host.poll();
        wire.take_sent();
        wire.push(&seeds::syn_from(seeds::PEER_V4, 40001, 7));
        host.poll();
        assert_eq!(tcp_answers(&wire.take_sent()), ["SA"]);
    }

    #[test]
    fn the_http_tree_is_private_and_the_same_for_the_whole_process() {
        use std::os::unix::fs::PermissionsExt;
        let root = http_tree();
        assert!(std::ptr::eq(root, http_tree()), "a second tree");
        let base = root.parent().unwrap();
        assert_ne!(base, std::env::temp_dir().join("tunhost-fuzz-http"));
        let meta = std::fs::symlink_metadata(base).unwrap();
        assert!(meta.is_dir(), "{} is not a directory", base.display());
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} has mode {mode:o}", base.display());
        assert_eq!(std::fs::read(base.join("secret.txt")).unwrap(), SECRET);
        assert_eq!(std::fs::read(root.join("sub/up")).unwrap(), SECRET);
        assert_eq!(std::fs::read(root.join("a.txt")).unwrap(), b"hello\n");
    }

    #[test]
    fn seeds_keep_the_invariants() {
        for (name, seed) in seeds::ingress(Medium::Ip) {
            eprintln!("ip/{name}");
            ingress_ip(&seed);
        }
        for (name, seed) in seeds::ingress(Medium::Ethernet) {
            eprintln!("ethernet/{name}");
            ingress_ethernet(&seed);
        }
    }
}

/// Capture files built byte by byte (little-endian): the synthetic captures of the tests, the
/// derived captures of `captures/` and the fuzz seeds of `cargo xtask`, with the quirks of files
/// from the wild that a writer of our own would never produce.
pub mod capture_files {
    /// A classic pcap header (microseconds, snap length 262144) with this link type word.
    pub fn pcap_header(linktype: u32) -> Vec<u8> {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        f.extend(262_144u32.to_le_bytes());
        f.extend(linktype.to_le_bytes());
        f
    }

    /// A classic pcap record of `data`, whole, at `secs` and `micros` (which may be a second or
    /// more), appended to `f`.
    pub fn pcap_record(f: &mut Vec<u8>, secs: u32, micros: u32, data: &[u8]) {
        for v in [secs, micros, data.len() as u32, data.len() as u32] {
            f.extend(v.to_le_bytes());
        }
        f.extend(data);
    }

    /// A pcapng block of `block_type` around `body` (padded to 4 bytes).
    pub fn pcapng_block(block_type: u32, body: &[u8]) -> Vec<u8> {
        let len = 12 + body.len().next_multiple_of(4) as u32;
        let mut b = block_type.to_le_bytes().to_vec();
        b.extend(len.to_le_bytes());
        b.extend(body);
        b.resize(len as usize - 4, 0);
        b.extend(len.to_le_bytes());
        b
    }

    /// One pcapng option (padded). An option list ends with `pcapng_option(0, &[])`, or does not
    /// end at all, as some writers leave it.
    pub fn pcapng_option(code: u16, value: &[u8]) -> Vec<u8> {
        let mut o = code.to_le_bytes().to_vec();
        o.extend((value.len() as u16).to_le_bytes());
        o.extend(value);
        o.resize(4 + value.len().next_multiple_of(4), 0);
        o
    }

    /// A pcapng Section Header Block with `options` (already encoded).
    pub fn pcapng_shb(options: &[u8]) -> Vec<u8> {
        let mut body = 0x1a2b_3c4du32.to_le_bytes().to_vec();
        body.extend([1, 0, 0, 0]);
        body.extend((-1i64).to_le_bytes());
        body.extend(options);
        pcapng_block(0x0a0d_0d0a, &body)
    }

    /// A pcapng Interface Description Block (snap length 262144) with `options`.
    pub fn pcapng_idb(linktype: u16, options: &[u8]) -> Vec<u8> {
        let mut body = linktype.to_le_bytes().to_vec();
        body.extend([0, 0]);
        body.extend(262_144u32.to_le_bytes());
        body.extend(options);
        pcapng_block(1, &body)
    }

    /// A pcapng Enhanced Packet Block of `data`, whole, on `interface` at `units` of its clock,
    /// with `options`.
    pub fn pcapng_epb(interface: u32, units: u64, data: &[u8], options: &[u8]) -> Vec<u8> {
        let mut body = interface.to_le_bytes().to_vec();
        body.extend(((units >> 32) as u32).to_le_bytes());
        body.extend((units as u32).to_le_bytes());
        body.extend((data.len() as u32).to_le_bytes());
        body.extend((data.len() as u32).to_le_bytes());
        body.extend(data);
        body.resize(body.len().next_multiple_of(4), 0);
        body.extend(options);
        pcapng_block(6, &body)
    }
}

#[cfg(feature = "proto-ipv4")]
mod ipv4;
#[cfg(feature = "proto-ipv6")]
mod ipv6;
#[cfg(feature = "proto-sixlowpan")]
mod sixlowpan;

#[allow(unused)]
use std::vec::Vec;

use crate::tests::setup;

use rstest::*;

use super::*;

use crate::iface::Interface;
use crate::phy::ChecksumCapabilities;
#[cfg(feature = "alloc")]
use crate::phy::Loopback;
use crate::time::Instant;

#[allow(unused)]
fn fill_slice(s: &mut [u8], val: u8) {
    for x in s.iter_mut() {
        *x = val
    }
}

#[allow(unused)]
fn recv_all(device: &mut crate::tests::TestingDevice, timestamp: Instant) -> Vec<Vec<u8>> {
    let mut pkts = Vec::new();
    while let Some(pkt) = device.tx_queue.pop_front() {
        pkts.push(pkt)
    }
    pkts
}

#[derive(Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct MockTxToken;

impl TxToken for MockTxToken {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut junk = [0; 1536];
        f(&mut junk[..len])
    }
}

#[test]
#[should_panic(expected = "The hardware address does not match the medium of the interface.")]
#[cfg(all(feature = "medium-ip", feature = "medium-ethernet", feature = "alloc"))]
fn test_new_panic() {
    let mut device = Loopback::new(Medium::Ethernet);
    let config = Config::new(HardwareAddress::Ip);
    Interface::new(config, &mut device, Instant::ZERO);
}

#[cfg(feature = "socket-udp")]
#[rstest]
#[case::ip(Medium::Ip)]
#[cfg(feature = "medium-ip")]
#[case::ethernet(Medium::Ethernet)]
#[cfg(feature = "medium-ethernet")]
#[case::ieee802154(Medium::Ieee802154)]
#[cfg(feature = "medium-ieee802154")]
fn test_handle_udp_broadcast(#[case] medium: Medium) {
    use crate::socket::udp;
    use crate::wire::IpEndpoint;

    static UDP_PAYLOAD: [u8; 5] = [0x48, 0x65, 0x6c, 0x6c, 0x6f];

    let (mut iface, mut sockets, _device) = setup(medium);

    let rx_buffer = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY], vec![0; 15]);
    let tx_buffer = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY], vec![0; 15]);

    let udp_socket = udp::Socket::new(rx_buffer, tx_buffer);

    let mut udp_bytes = vec![0u8; 13];
    let mut packet = UdpPacket::new_unchecked(&mut udp_bytes);

    let socket_handle = sockets.add(udp_socket);

    #[cfg(feature = "proto-ipv6")]
    let src_ip = Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    #[cfg(all(not(feature = "proto-ipv6"), feature = "proto-ipv4"))]
    let src_ip = Ipv4Address::new(0x7f, 0x00, 0x00, 0x02);

    let udp_repr = UdpRepr {
        src_port: 67,
        dst_port: 68,
    };

    #[cfg(feature = "proto-ipv6")]
    let ip_repr = IpRepr::Ipv6(Ipv6Repr {
        src_addr: src_ip,
        dst_addr: IPV6_LINK_LOCAL_ALL_NODES,
        next_header: IpProtocol::Udp,
        payload_len: udp_repr.header_len() + UDP_PAYLOAD.len(),
        hop_limit: 0x40,
    });
    #[cfg(all(not(feature = "proto-ipv6"), feature = "proto-ipv4"))]
    let ip_repr = IpRepr::Ipv4(Ipv4Repr {
        src_addr: src_ip,
        dst_addr: Ipv4Address::BROADCAST,
        next_header: IpProtocol::Udp,
        payload_len: udp_repr.header_len() + UDP_PAYLOAD.len(),
        hop_limit: 0x40,
    });
    let dst_addr = ip_repr.dst_addr();

    // Bind the socket to port 68
    let socket = sockets.get_mut::<udp::Socket>(socket_handle);
    assert_eq!(socket.bind(68), Ok(()));
    assert!(!socket.can_recv());
    assert!(socket.can_send());

    udp_repr.emit(
        &mut packet,
        &ip_repr.src_addr(),
        &ip_repr.dst_addr(),
        UDP_PAYLOAD.len(),
        |buf| buf.copy_from_slice(&UDP_PAYLOAD),
        &ChecksumCapabilities::default(),
    );

    // Packet should be handled by bound UDP socket
    assert_eq!(
        iface.inner.process_udp(
            &mut sockets,
            PacketMeta::default(),
            false,
            ip_repr,
            packet.into_inner(),
        ),
        None
    );

    // Make sure the payload to the UDP packet processed by process_udp is
    // appended to the bound sockets rx_buffer
    let socket = sockets.get_mut::<udp::Socket>(socket_handle);
    assert!(socket.can_recv());
    assert_eq!(
        socket.recv(),
        Ok((
            &UDP_PAYLOAD[..],
            udp::UdpMetadata {
                local_address: Some(dst_addr),
                ..IpEndpoint::new(src_ip.into(), 67).into()
            }
        ))
    );
}

#[test]
#[cfg(all(feature = "medium-ip", feature = "socket-tcp", feature = "proto-ipv6"))]
pub fn tcp_not_accepted() {
    let (mut iface, mut sockets, _) = setup(Medium::Ip);
    let tcp = TcpRepr {
        src_port: 4242,
        dst_port: 4243,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(-10001),
        ack_number: None,
        window_len: 256,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload: &[],
    };

    let mut tcp_bytes = vec![0u8; tcp.buffer_len()];

    tcp.emit(
        &mut TcpPacket::new_unchecked(&mut tcp_bytes),
        &Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 2).into(),
        &Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 1).into(),
        &ChecksumCapabilities::default(),
    );

    assert_eq!(
        iface.inner.process_tcp(
            &mut sockets,
            false,
            IpRepr::Ipv6(Ipv6Repr {
                src_addr: Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 2),
                dst_addr: Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len(),
                hop_limit: 64,
            }),
            &tcp_bytes,
        ),
        Some(Packet::new_ipv6(
            Ipv6Repr {
                src_addr: Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
                dst_addr: Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 2),
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len(),
                hop_limit: 64,
            },
            IpPayload::Tcp(TcpRepr {
                src_port: 4243,
                dst_port: 4242,
                control: TcpControl::Rst,
                seq_number: TcpSeqNumber(0),
                ack_number: Some(TcpSeqNumber(-10000)),
                window_len: 0,
                window_scale: None,
                max_seg_size: None,
                sack_permitted: false,
                sack_ranges: [None, None, None],
                timestamp: None,
                payload: &[],
            })
        ))
    );
    // Unspecified destination address.
    tcp.emit(
        &mut TcpPacket::new_unchecked(&mut tcp_bytes),
        &Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 2).into(),
        &Ipv6Address::UNSPECIFIED.into(),
        &ChecksumCapabilities::default(),
    );

    assert_eq!(
        iface.inner.process_tcp(
            &mut sockets,
            false,
            IpRepr::Ipv6(Ipv6Repr {
                src_addr: Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 2),
                dst_addr: Ipv6Address::UNSPECIFIED,
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len(),
                hop_limit: 64,
            }),
            &tcp_bytes,
        ),
        None,
    );
}

#[test]
#[cfg(all(feature = "medium-ip", feature = "socket-tcp", feature = "proto-ipv4"))]
pub fn tcp_listen_drops_unspecified_src() {
    use crate::socket::tcp;

    let (mut iface, mut sockets, _) = setup(Medium::Ip);

    let tcp_socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 64]),
        tcp::SocketBuffer::new(vec![0; 64]),
    );
    let handle = sockets.add(tcp_socket);
    sockets.get_mut::<tcp::Socket>(handle).listen(1234).unwrap();

    let tcp = TcpRepr {
        src_port: 65000,
        dst_port: 1234,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(0),
        ack_number: None,
        window_len: 1024,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload: &[],
    };

    let mut tcp_bytes = vec![0u8; tcp.buffer_len()];
    tcp.emit(
        &mut TcpPacket::new_unchecked(&mut tcp_bytes),
        &Ipv4Address::UNSPECIFIED.into(),
        &Ipv4Address::new(127, 0, 0, 1).into(),
        &ChecksumCapabilities::default(),
    );

    let reply = iface.inner.process_tcp(
        &mut sockets,
        false,
        IpRepr::Ipv4(Ipv4Repr {
            src_addr: Ipv4Address::UNSPECIFIED,
            dst_addr: Ipv4Address::new(127, 0, 0, 1),
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        }),
        &tcp_bytes,
    );

    assert_eq!(reply, None);
    assert!(sockets.get_mut::<tcp::Socket>(handle).is_listening());
}

#[test]
#[cfg(all(feature = "medium-ip", feature = "socket-tcp", feature = "proto-ipv4"))]
pub fn tcp_segment_of_a_connection_never_reaches_a_listener() {
    use crate::socket::tcp;

    let (mut iface, mut sockets, _) = setup(Medium::Ip);
    let new_socket = || {
        tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 64]),
            tcp::SocketBuffer::new(vec![0; 64]),
        )
    };
    // The listener comes first in the set, the connection's socket after it.
    let listener = sockets.add(new_socket());
    let conn = sockets.add(new_socket());
    sockets.get_mut::<tcp::Socket>(conn).listen(1234).unwrap();

    fn segment(
        iface: &mut Interface,
        sockets: &mut SocketSet,
        control: TcpControl,
        seq: i32,
        ack: Option<TcpSeqNumber>,
    ) -> Option<(TcpControl, Option<TcpSeqNumber>)> {
        let (src, dst) = (
            Ipv4Address::new(127, 0, 0, 2),
            Ipv4Address::new(127, 0, 0, 1),
        );
        let tcp = TcpRepr {
            src_port: 65000,
            dst_port: 1234,
            control,
            seq_number: TcpSeqNumber(seq),
            ack_number: ack,
            window_len: 1024,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None, None, None],
            timestamp: None,
            payload: &[],
        };
        let mut bytes = vec![0u8; tcp.buffer_len()];
        tcp.emit(
            &mut TcpPacket::new_unchecked(&mut bytes),
            &src.into(),
            &dst.into(),
            &ChecksumCapabilities::default(),
        );
        let ip = IpRepr::Ipv4(Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        });
        let reply = iface.inner.process_tcp(sockets, false, ip, &bytes);
        reply.map(|p| match p.payload() {
            IpPayload::Tcp(t) => (t.control, t.ack_number),
            _ => unreachable!(),
        })
    }

    // The SYN-ACK goes out on the next poll; the ISN is 10000 under cfg(test).
    assert_eq!(
        segment(&mut iface, &mut sockets, TcpControl::Syn, 100, None),
        None
    );
    let isn = TcpSeqNumber(10000);
    assert_eq!(
        segment(
            &mut iface,
            &mut sockets,
            TcpControl::None,
            101,
            Some(isn + 1)
        ),
        None
    );
    assert_eq!(
        sockets.get::<tcp::Socket>(conn).state(),
        tcp::State::Established
    );

    // Now a listener on the same port, before the connection's socket in the set.
    sockets
        .get_mut::<tcp::Socket>(listener)
        .listen(1234)
        .unwrap();
    // A SYN with the connection's 4-tuple is the connection's: a challenge ACK, not a SYN-ACK.
    let reply = segment(&mut iface, &mut sockets, TcpControl::Syn, 5000, None);
    assert_eq!(reply, Some((TcpControl::None, Some(TcpSeqNumber(101)))));
    assert!(sockets.get::<tcp::Socket>(listener).is_listening());
    assert_eq!(
        sockets.get::<tcp::Socket>(conn).state(),
        tcp::State::Established
    );
}

/// The socket set's scheduler (`socket_sched`): with many connections in one set, a segment
/// reaches its own socket, egress leaves idle sockets alone, `changed` lists what took in a
/// segment, and a socket's deadline (here its timeout) is kept and fires.
#[test]
#[cfg(all(
    feature = "alloc",
    feature = "medium-ip",
    feature = "proto-ipv4",
    feature = "socket-tcp"
))]
pub fn socket_set_scheduler_with_many_connections() {
    use crate::socket::tcp;
    use crate::time::Duration;

    const N: usize = 100;
    let mut device = Loopback::new(Medium::Ip);
    let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut device, Instant::ZERO);
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8)).unwrap();
    });
    let mut sockets = SocketSet::new(vec![]);
    let new_socket = || {
        tcp::Socket::new(
            tcp::SocketBuffer::new_lazy(256),
            tcp::SocketBuffer::new_lazy(256),
        )
    };
    let mut servers = Vec::new();
    for _ in 0..N {
        let h = sockets.add(new_socket());
        sockets.get_mut::<tcp::Socket>(h).listen(1234).unwrap();
        servers.push(h);
    }
    let mut clients = Vec::new();
    for i in 0..N {
        let h = sockets.add(new_socket());
        let local = 40000 + i as u16;
        sockets
            .get_mut::<tcp::Socket>(h)
            .connect(iface.context(), (IpAddress::v4(127, 0, 0, 1), 1234), local)
            .unwrap();
        clients.push(h);
    }
    let mut now = Instant::ZERO;
    for _ in 0..20 {
        iface.poll(now, &mut device, &mut sockets);
        now += Duration::from_millis(1);
    }
    for &h in servers.iter().chain(&clients) {
        assert_eq!(
            sockets.get::<tcp::Socket>(h).state(),
            tcp::State::Established
        );
    }
    // Nothing to send, no deadline: the set wants no poll.
    sockets.clear_changed();
    assert_eq!(iface.poll_at(now, &sockets), None);

    // Data from one client reaches the server socket of its 4-tuple, which alone is listed as
    // changed.
    let client = clients[37];
    let port = sockets.get::<tcp::Socket>(client).local_endpoint().unwrap().port;
    sockets.get_mut::<tcp::Socket>(client).send_slice(b"hi").unwrap();
    // Sent by the first poll, taken in by the second.
    for _ in 0..2 {
        iface.poll(now, &mut device, &mut sockets);
    }
    let server = servers
        .iter()
        .copied()
        .find(|&h| sockets.get::<tcp::Socket>(h).remote_endpoint().map(|e| e.port) == Some(port))
        .unwrap();
    let mut got = [0u8; 2];
    assert_eq!(
        sockets.get_mut::<tcp::Socket>(server).recv_slice(&mut got),
        Ok(2)
    );
    assert_eq!(&got, b"hi");
    // (The server's ACK waits for its delayed-ACK timer: the client has taken in nothing.)
    let changed: Vec<crate::iface::SocketHandle> = sockets.changed().collect();
    assert_eq!(changed, vec![server]);

    // A keep-alive is a deadline: the set asks to be polled then, and the probe goes out
    // (the server's socket takes it in).
    sockets
        .get_mut::<tcp::Socket>(client)
        .set_keep_alive(Some(Duration::from_secs(1)));
    // The delayed ACK's deadline first.
    let at = iface.poll_at(now, &sockets).expect("the delayed ACK's deadline");
    assert!(at > now && at <= now + Duration::from_millis(10), "{at} from {now}");
    now = at;
    iface.poll(now, &mut device, &mut sockets);
    iface.poll(now, &mut device, &mut sockets);
    sockets.clear_changed();
    let at = iface.poll_at(now, &sockets).expect("the keep-alive's deadline");
    assert!(
        at > now + Duration::from_millis(900) && at <= now + Duration::from_secs(1),
        "{at} from {now}"
    );
    iface.poll(at, &mut device, &mut sockets);
    assert!(!sockets.changed().any(|h| h == server));
    iface.poll(at, &mut device, &mut sockets);
    assert!(sockets.changed().any(|h| h == server));
}

/// A socket given out by `get_mut` while listening is not looked at again unless it stops
/// listening; one that is aborted and connected in that one borrow still sends its SYN.
#[test]
#[cfg(all(
    feature = "alloc",
    feature = "medium-ip",
    feature = "proto-ipv4",
    feature = "socket-tcp"
))]
pub fn socket_set_scheduler_listening_socket_connected_in_one_borrow() {
    use crate::socket::tcp;
    use crate::time::Duration;

    let mut device = Loopback::new(Medium::Ip);
    let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut device, Instant::ZERO);
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8)).unwrap();
    });
    let mut sockets = SocketSet::new(vec![]);
    let new_socket = || {
        tcp::Socket::new(
            tcp::SocketBuffer::new_lazy(256),
            tcp::SocketBuffer::new_lazy(256),
        )
    };
    let server = sockets.add(new_socket());
    sockets.get_mut::<tcp::Socket>(server).listen(1234).unwrap();
    let other = sockets.add(new_socket());
    sockets.get_mut::<tcp::Socket>(other).listen(5678).unwrap();
    let mut now = Instant::ZERO;
    iface.poll(now, &mut device, &mut sockets);
    assert_eq!(iface.poll_at(now, &sockets), None);
    // Looked at, left listening: nothing to do.
    assert!(sockets.get_mut::<tcp::Socket>(other).is_listening());
    assert_eq!(iface.poll_at(now, &sockets), None);
    let s = sockets.get_mut::<tcp::Socket>(other);
    s.abort();
    s.connect(iface.context(), (IpAddress::v4(127, 0, 0, 1), 1234), 40000)
        .unwrap();
    assert_eq!(iface.poll_at(now, &sockets), Some(Instant::ZERO));
    for _ in 0..4 {
        iface.poll(now, &mut device, &mut sockets);
        now += Duration::from_millis(1);
    }
    for h in [server, other] {
        assert_eq!(
            sockets.get::<tcp::Socket>(h).state(),
            tcp::State::Established
        );
    }
}

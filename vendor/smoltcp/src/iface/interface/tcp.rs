use super::*;

use crate::socket::tcp::Socket;

impl InterfaceInner {
    pub(crate) fn process_tcp<'frame>(
        &mut self,
        sockets: &mut SocketSet,
        handled_by_raw_socket: bool,
        ip_repr: IpRepr,
        ip_payload: &'frame [u8],
    ) -> Option<Packet<'frame>> {
        let (src_addr, dst_addr) = (ip_repr.src_addr(), ip_repr.dst_addr());

        // Per RFC 1122 §3.2.1.3, the unspecified address must never appear as a source
        // or destination in any IP datagram. Drop such TCP segments early to avoid
        // creating sockets with unspecified peers (which would later panic on egress).
        // This is not done at the iface level because it might be useful with
        // UDP or raw sockets, but it's definitely not useful for TCP.
        if src_addr.is_unspecified() || dst_addr.is_unspecified() {
            return None;
        }

        let tcp_packet = check!(TcpPacket::new_checked(ip_payload));
        let tcp_repr = check!(TcpRepr::parse(
            &tcp_packet,
            &src_addr,
            &dst_addr,
            &self.caps.checksum
        ));

        // A socket of the segment's connection (exact 4-tuple) first, listening sockets after:
        // a segment of a live connection must never reach a listener on the same port, or a
        // single SYN with the connection's 4-tuple would take it over. With `alloc`, both are
        // found through the socket set's index, not by walking every socket.
        #[cfg(feature = "alloc")]
        {
            let SocketSet {
                sockets: slots,
                sched,
                ..
            } = sockets;
            sched.sync(slots);
            let local = IpEndpoint::new(dst_addr, tcp_repr.dst_port);
            let remote = IpEndpoint::new(src_addr, tcp_repr.src_port);
            let mut hit = None;
            for index in sched.tcp_candidates(local, remote) {
                let Some(item) = slots.get_mut(index).and_then(|s| s.inner.as_mut()) else {
                    continue;
                };
                if let Some(tcp_socket) = Socket::downcast_mut(&mut item.socket)
                    && tcp_socket.accepts(self, &ip_repr, &tcp_repr)
                {
                    hit = Some(index);
                    break;
                }
            }
            if let Some(index) = hit
                && let Some(item) = slots[index].inner.as_mut()
                && let Some(tcp_socket) = Socket::downcast_mut(&mut item.socket)
            {
                let reply = tcp_socket.process(self, &ip_repr, &tcp_repr);
                sched.processed(index, item);
                return reply.map(|(ip, tcp)| Packet::new(ip, IpPayload::Tcp(tcp)));
            }
        }
        #[cfg(not(feature = "alloc"))]
        for connected in [true, false] {
            for tcp_socket in sockets
                .items_mut()
                .filter_map(|i| Socket::downcast_mut(&mut i.socket))
            {
                if tcp_socket.has_tuple() == connected
                    && tcp_socket.accepts(self, &ip_repr, &tcp_repr)
                {
                    return tcp_socket
                        .process(self, &ip_repr, &tcp_repr)
                        .map(|(ip, tcp)| Packet::new(ip, IpPayload::Tcp(tcp)));
                }
            }
        }

        if tcp_repr.control == TcpControl::Rst
            || ip_repr.dst_addr().is_unspecified()
            || ip_repr.src_addr().is_unspecified()
            || handled_by_raw_socket
        {
            // Never reply to a TCP RST packet with another TCP RST packet.
            // Never send a TCP RST packet with unspecified addresses.
            // Never send a TCP RST when packet has been handled by raw socket.
            None
        } else {
            // The packet wasn't handled by a socket, send a TCP RST packet.
            let (ip, tcp) = tcp::Socket::rst_reply(&ip_repr, &tcp_repr);
            Some(Packet::new(ip, IpPayload::Tcp(tcp)))
        }
    }
}

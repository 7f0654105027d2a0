//! UDP echo (RFC 862): every datagram received is sent back to where it came from, from the
//! address it was sent to.

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpCidr};

use super::Service;

/// Buffer sizes of the UDP echo socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpBuffers {
    /// Datagrams that can wait in each direction.
    pub packets: usize,
    /// Payload bytes that can wait in each direction.
    pub bytes: usize,
}

impl Default for UdpBuffers {
    fn default() -> Self {
        UdpBuffers {
            packets: 64,
            bytes: 64 * 1024,
        }
    }
}

/// The UDP echo service: one socket bound to a port.
pub struct UdpEcho {
    port: u16,
    handle: SocketHandle,
    /// The host's addresses: the only ones an answer may come from.
    addrs: Vec<IpAddress>,
    scratch: Box<[u8]>,
    /// Datagrams echoed.
    pub echoed: u64,
    /// Datagrams dropped because the transmit buffer was full.
    pub dropped: u64,
}

impl UdpEcho {
    /// An echo service on `port` of a host whose addresses are `host_addrs`.
    pub fn new(
        sockets: &mut SocketSet<'static>,
        port: u16,
        buffers: UdpBuffers,
        host_addrs: &[IpCidr],
    ) -> UdpEcho {
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; buffers.packets],
                vec![0; buffers.bytes],
            )
        };
        let mut socket = udp::Socket::new(buffer(), buffer());
        // Cannot fail: the port is non-zero (validated with the configuration) and the socket new.
        let _ = socket.bind(port);
        UdpEcho {
            port,
            handle: sockets.add(socket),
            addrs: host_addrs.iter().map(|c| c.address()).collect(),
            scratch: vec![0; buffers.bytes].into_boxed_slice(),
            echoed: 0,
            dropped: 0,
        }
    }
}

impl Service for UdpEcho {
    fn name(&self) -> String {
        format!("udp-echo/{}", self.port)
    }

    fn poll(&mut self, sockets: &mut SocketSet<'static>, _now: Instant) {
        let socket = sockets.get_mut::<udp::Socket>(self.handle);
        // Only take a datagram off the receive queue when the transmit queue has room for it, so
        // that a burst waits in the receive queue instead of being dropped here.
        while socket.can_send() {
            let Ok((len, meta)) = socket.recv_slice(&mut self.scratch) else {
                break;
            };
            let reply = udp::UdpMetadata {
                endpoint: meta.endpoint,
                // Answer from the address the datagram was sent to if it is one of the host's
                // (a client's connected socket expects that); a datagram to a broadcast or
                // multicast address is answered from the host's own, which smoltcp picks.
                local_address: meta.local_address.filter(|a| self.addrs.contains(a)),
                meta: Default::default(),
            };
            match socket.send_slice(&self.scratch[..len], reply) {
                Ok(()) => self.echoed += 1,
                Err(_) => self.dropped += 1,
            }
        }
    }

    fn close(&mut self, sockets: &mut SocketSet<'static>, _now: Instant) {
        sockets.get_mut::<udp::Socket>(self.handle).close();
    }
}

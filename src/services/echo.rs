//! TCP echo (RFC 862): every byte received is sent back, until the peer closes.

use smoltcp::socket::tcp;
use smoltcp::time::Instant;

use super::{Protocol, Step};

/// The echo protocol. One scratch buffer serves every connection: data moves from a socket's
/// receive buffer to its transmit buffer through it, only as much as the transmit buffer can take,
/// so a slow reader slows the writer down (TCP flow control) instead of growing memory.
pub struct Echo {
    scratch: Box<[u8]>,
}

impl Echo {
    /// The protocol, with a 16 KiB scratch buffer.
    pub fn new() -> Echo {
        Echo {
            scratch: vec![0; 16 * 1024].into_boxed_slice(),
        }
    }
}

impl Default for Echo {
    fn default() -> Self {
        Echo::new()
    }
}

impl Protocol for Echo {
    type Conn = ();

    fn name(&self) -> &'static str {
        "echo"
    }

    fn open(&mut self, _now: Instant) {}

    fn drive(&mut self, _: &mut (), socket: &mut tcp::Socket<'_>, _now: Instant) -> Step {
        while socket.can_recv() && socket.can_send() {
            let room = socket.send_capacity() - socket.send_queue();
            let n = room.min(self.scratch.len());
            let got = match socket.recv_slice(&mut self.scratch[..n]) {
                Ok(got) => got,
                Err(_) => break,
            };
            if got == 0 {
                break;
            }
            // Cannot be short: `got` fits the room measured above.
            let _ = socket.send_slice(&self.scratch[..got]);
        }
        Step::until_peer_done(socket)
    }
}

//! TCP discard (RFC 863): everything received is dropped; the connection closes after the
//! peer's FIN.

use smoltcp::socket::tcp;
use smoltcp::time::Instant;

use super::{Protocol, Step, drain};

/// The discard protocol.
#[derive(Debug, Default)]
pub struct Discard {
    /// Bytes discarded so far, over all connections.
    pub bytes: u64,
}

impl Protocol for Discard {
    type Conn = ();

    fn name(&self) -> &'static str {
        "discard"
    }

    fn open(&mut self, _now: Instant) {}

    fn drive(&mut self, _: &mut (), socket: &mut tcp::Socket<'_>, _now: Instant) -> Step {
        self.bytes += socket.recv_queue() as u64;
        drain(socket);
        Step::until_peer_done(socket)
    }
}

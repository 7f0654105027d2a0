//! TCP character generator (RFC 864): the server sends lines of 72 printable ASCII characters,
//! each starting one character further along the 95 printable characters (32..=126) than the one
//! before, until the peer closes. What the peer sends is discarded.

use smoltcp::socket::tcp;
use smoltcp::time::Instant;

use super::{Protocol, Step, drain, peer_done};

const PRINTABLE: usize = 95;
const LINE: usize = 72;
/// One full cycle of the pattern: 95 lines of 72 characters and CRLF.
pub(crate) const CYCLE_LEN: usize = PRINTABLE * (LINE + 2);

/// The RFC 864 pattern, one cycle, as it goes on the wire.
pub fn pattern() -> Vec<u8> {
    let mut out = Vec::with_capacity(CYCLE_LEN);
    for line in 0..PRINTABLE {
        for col in 0..LINE {
            out.push(b' ' + ((line + col) % PRINTABLE) as u8);
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The chargen protocol; each connection remembers where it is in the cycle.
pub struct Chargen {
    cycle: Vec<u8>,
}

impl Chargen {
    /// The protocol, with the pattern's cycle computed once for every connection.
    pub fn new() -> Chargen {
        Chargen { cycle: pattern() }
    }
}

impl Default for Chargen {
    fn default() -> Self {
        Chargen::new()
    }
}

impl Protocol for Chargen {
    /// Offset in the cycle of the next byte to send.
    type Conn = usize;

    fn name(&self) -> &'static str {
        "chargen"
    }

    fn open(&mut self, _now: Instant) -> usize {
        0
    }

    fn drive(&mut self, pos: &mut usize, socket: &mut tcp::Socket<'_>, _now: Instant) -> Step {
        drain(socket);
        if peer_done(socket) {
            return Step::Close;
        }
        while socket.can_send() {
            let cycle = &self.cycle;
            let sent = socket.send(|buf| {
                let mut n = 0;
                while n < buf.len() {
                    let chunk = (cycle.len() - *pos).min(buf.len() - n);
                    buf[n..n + chunk].copy_from_slice(&cycle[*pos..*pos + chunk]);
                    n += chunk;
                    *pos = (*pos + chunk) % cycle.len();
                }
                (n, n)
            });
            if !matches!(sent, Ok(n) if n > 0) {
                break;
            }
        }
        Step::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_matches_rfc864() {
        let p = pattern();
        assert_eq!(p.len(), CYCLE_LEN);
        // RFC 864's first line: the 72 characters from ' ' to 'g'.
        let first: Vec<u8> = (b' '..=b'g').chain(*b"\r\n").collect();
        assert_eq!(&p[..74], first.as_slice());
        // The second line starts one character further.
        let second: Vec<u8> = (b'!'..=b'h').chain(*b"\r\n").collect();
        assert_eq!(&p[74..148], second.as_slice());
        // The last line starts with '~' and wraps around to ' '.
        let last = &p[94 * 74..];
        assert_eq!(&last[..3], b"~ !");
    }
}

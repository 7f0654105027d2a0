//! IPv6 reassembly (RFC 8200 4.5) in front of smoltcp, which has none: fragments are held here
//! and smoltcp sees the whole datagram, up to 65,535 bytes of payload.
//!
//! Bounded and hostile-proof, as the IPv4 side is (README, "ICMP and fragments"):
//! - at most [`SLOTS`] datagrams in reassembly at once, at most [`PER_SOURCE`] of them from one
//!   source address, each at most 65,535 bytes of payload: [`SLOTS`] × 64 KiB of memory at
//!   worst, and one sender cannot take every slot;
//! - a datagram not completed within [`TIMEOUT`] (60 s, RFC 8200) is dropped;
//! - overlapping fragments drop the whole datagram (RFC 5722), as does a fragment that reaches
//!   past 65,535 bytes, a non-last fragment whose length is not a multiple of 8, a last fragment
//!   that disagrees with an earlier one about the end, and an empty fragment;
//! - an atomic fragment (offset 0, no more fragments) is the datagram itself (RFC 6946).
//!
//! What precedes the fragment header (the fixed header and the extension headers before it,
//! and on Ethernet the frame's header) is taken from the first fragment; the fragment header
//! is removed and the header before it names what the fragment header named.

use smoltcp::time::{Duration, Instant};

/// Datagrams in reassembly at once.
pub const SLOTS: usize = 16;
/// Datagrams in reassembly at once from one source address.
pub const PER_SOURCE: usize = 4;
/// How long a datagram may take to arrive whole (RFC 8200: 60 s).
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The largest payload (everything after the fixed header) an IPv6 datagram can have.
const MAX_PAYLOAD: usize = 65_535;
const FIXED: usize = 40;
/// Next-header values.
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DEST_OPTS: u8 = 60;

/// What became of a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Not an IPv6 fragment: pass it on as it is.
    NotFragment,
    /// A fragment, held until its datagram is whole.
    Held,
    /// A fragment dropped, and why.
    Dropped(Drop),
    /// The last missing fragment: the whole datagram, with the link header of the first one.
    Whole(&'a [u8]),
}

/// Why a fragment was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// It overlaps a fragment already held (the whole datagram is dropped: RFC 5722).
    Overlap,
    /// It reaches past 65,535 bytes of payload.
    TooLong,
    /// A fragment with more to follow whose length is not a multiple of 8, an empty one, or a
    /// last one that disagrees about where the datagram ends.
    BadLength,
    /// Every slot is taken, or this source holds its share of them.
    NoSlot,
}

/// Counters, for the host's statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reassembly6Stats {
    /// Datagrams put back together.
    pub reassembled: u64,
    /// Fragments dropped (overlap, length, no slot).
    pub dropped: u64,
    /// Datagrams dropped unfinished at [`TIMEOUT`].
    pub timed_out: u64,
}

#[derive(Debug)]
struct Slot {
    src: [u8; 16],
    dst: [u8; 16],
    id: u32,
    deadline: Instant,
    /// Link header + fixed header + extension headers before the fragment header, from the
    /// first fragment (empty until it came).
    head: Vec<u8>,
    /// Where, in `head`, the byte that named the fragment header is.
    next_header_at: usize,
    /// What the fragment header named.
    next_header: u8,
    /// The fragmentable part, as far as it has come.
    data: Vec<u8>,
    /// The byte ranges of `data` that have come, sorted, not overlapping.
    have: Vec<(usize, usize)>,
    /// Its length, once the last fragment came.
    total: Option<usize>,
}

/// The reassembler: fixed number of slots, one output buffer.
#[derive(Debug, Default)]
pub struct Reassembler6 {
    slots: Vec<Slot>,
    out: Vec<u8>,
    stats: Reassembly6Stats,
}

/// Where the fragment header is in an IPv6 packet `ip`: (its offset, the offset of the byte
/// that names it), if the packet has one.
fn find_fragment_header(ip: &[u8]) -> Option<(usize, usize)> {
    let mut next = *ip.get(6)?;
    let mut names_it = 6;
    let mut at = FIXED;
    while matches!(next, HOP_BY_HOP | ROUTING | DEST_OPTS) {
        let len = (usize::from(*ip.get(at + 1)?) + 1) * 8;
        names_it = at;
        next = ip[at];
        at += len;
    }
    (next == FRAGMENT && ip.len() >= at + 8).then_some((at, names_it))
}

impl Reassembler6 {
    /// An empty reassembler.
    pub fn new() -> Reassembler6 {
        Reassembler6::default()
    }

    /// Counters so far.
    pub fn stats(&self) -> Reassembly6Stats {
        self.stats
    }

    /// Datagrams in reassembly now.
    pub fn pending(&self) -> usize {
        self.slots.len()
    }

    /// Take `packet`, an IPv6 packet after `link` bytes of link header, received at `now`.
    pub fn push(&mut self, now: Instant, link: usize, packet: &[u8]) -> Verdict<'_> {
        self.expire(now);
        let Some(ip) = packet.get(link..) else {
            return Verdict::NotFragment;
        };
        if ip.len() < FIXED || ip[0] >> 4 != 6 {
            return Verdict::NotFragment;
        }
        // Only what the header says is the packet (a link may pad).
        let len = FIXED + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        let Some(ip) = ip.get(..len) else {
            return Verdict::NotFragment; // truncated: smoltcp drops it
        };
        let Some((frag_at, names_it)) = find_fragment_header(ip) else {
            return Verdict::NotFragment;
        };
        let field = u16::from_be_bytes([ip[frag_at + 2], ip[frag_at + 3]]);
        let (offset, more) = (usize::from(field & 0xfff8), field & 1 == 1);
        let id = u32::from_be_bytes(ip[frag_at + 4..frag_at + 8].try_into().expect("4 bytes"));
        let next_header = ip[frag_at];
        let body = &ip[frag_at + 8..];
        let unfragmentable = frag_at - FIXED;

        if offset == 0 && !more {
            // An atomic fragment: the datagram without its fragment header.
            self.out.clear();
            self.out.extend_from_slice(&packet[..link + frag_at]);
            self.out.extend_from_slice(body);
            finish_header(&mut self.out[link..], names_it, next_header);
            self.stats.reassembled += 1;
            return Verdict::Whole(&self.out);
        }
        let end = offset + body.len();
        let drop = if body.is_empty() || (more && body.len() % 8 != 0) {
            Some(Drop::BadLength)
        } else if unfragmentable + end > MAX_PAYLOAD {
            Some(Drop::TooLong)
        } else {
            None
        };
        let (mut src, mut dst) = ([0u8; 16], [0u8; 16]);
        src.copy_from_slice(&ip[8..24]);
        dst.copy_from_slice(&ip[24..40]);
        let found = (self.slots.iter()).position(|s| s.src == src && s.dst == dst && s.id == id);
        if let Some(why) = drop {
            // A datagram one of whose fragments is bad cannot be completed: let it go too.
            if let Some(i) = found {
                self.slots.swap_remove(i);
            }
            return self.dropped(why);
        }
        let i = match found {
            Some(i) => i,
            None => {
                let from_src = self.slots.iter().filter(|s| s.src == src).count();
                if self.slots.len() >= SLOTS || from_src >= PER_SOURCE {
                    return self.dropped(Drop::NoSlot);
                }
                self.slots.push(Slot {
                    src,
                    dst,
                    id,
                    deadline: now + TIMEOUT,
                    head: Vec::new(),
                    next_header_at: 0,
                    next_header: 0,
                    data: Vec::new(),
                    have: Vec::new(),
                    total: None,
                });
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[i];
        let overlaps = slot.have.iter().any(|&(a, b)| offset < b && a < end);
        let past_end = slot.total.is_some_and(|t| end > t || (!more && end != t));
        let before_last = !more && slot.have.iter().any(|&(_, b)| b > end);
        if overlaps || past_end || before_last {
            self.slots.swap_remove(i);
            return self.dropped(if overlaps {
                Drop::Overlap
            } else {
                Drop::BadLength
            });
        }
        if !more {
            slot.total = Some(end);
        }
        if offset == 0 {
            slot.head.clear();
            slot.head.extend_from_slice(&packet[..link + frag_at]);
            slot.next_header_at = link + names_it;
            slot.next_header = next_header;
        }
        if slot.data.len() < end {
            slot.data.resize(end, 0);
        }
        slot.data[offset..end].copy_from_slice(body);
        let at = slot.have.partition_point(|&(a, _)| a < offset);
        slot.have.insert(at, (offset, end));
        let whole = slot.total.is_some_and(|t| covers(&slot.have, t)) && !slot.head.is_empty();
        if !whole {
            return Verdict::Held;
        }
        let slot = self.slots.swap_remove(i);
        self.out.clear();
        self.out.extend_from_slice(&slot.head);
        self.out.extend_from_slice(&slot.data);
        finish_header(
            &mut self.out[link..],
            slot.next_header_at - link,
            slot.next_header,
        );
        self.stats.reassembled += 1;
        Verdict::Whole(&self.out)
    }

    fn dropped(&mut self, why: Drop) -> Verdict<'_> {
        self.stats.dropped += 1;
        Verdict::Dropped(why)
    }

    /// Drop the datagrams whose time is up.
    pub fn expire(&mut self, now: Instant) {
        let before = self.slots.len();
        self.slots.retain(|s| s.deadline > now);
        self.stats.timed_out += (before - self.slots.len()) as u64;
    }
}

/// Whether the sorted, non-overlapping ranges cover `0..total`.
fn covers(have: &[(usize, usize)], total: usize) -> bool {
    let mut reached = 0;
    for &(a, b) in have {
        if a != reached {
            return false;
        }
        reached = b;
    }
    reached == total
}

/// In a reassembled IPv6 packet `ip`: the byte at `names_it` names `next_header` (it named the
/// fragment header), and the payload length is what follows the fixed header.
fn finish_header(ip: &mut [u8], names_it: usize, next_header: u8) {
    ip[names_it] = next_header;
    let payload = (ip.len() - FIXED) as u16;
    ip[4..6].copy_from_slice(&payload.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// An unfragmented IPv6 packet from `src` carrying `payload` as protocol 17, after
    /// `ext` (a hop-by-hop header's bytes, or none).
    fn datagram(src: [u8; 16], ext: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&((ext.len() + payload.len()) as u16).to_be_bytes());
        p.push(if ext.is_empty() { 17 } else { HOP_BY_HOP });
        p.push(64);
        p.extend_from_slice(&src);
        p.extend_from_slice(&DST);
        p.extend_from_slice(ext);
        p.extend_from_slice(payload);
        p
    }

    /// The fragment of `whole` (made by `datagram`, `ext` bytes of extension headers) that
    /// carries `range` of its fragmentable part.
    fn fragment(whole: &[u8], ext: usize, id: u32, range: std::ops::Range<usize>) -> Vec<u8> {
        let body = &whole[FIXED + ext..];
        let more = range.end < body.len();
        let mut p = whole[..FIXED + ext].to_vec();
        let names_it = if ext == 0 { 6 } else { FIXED };
        let next = p[names_it];
        p[names_it] = FRAGMENT;
        p.push(next);
        p.push(0);
        p.extend_from_slice(&((range.start as u16) | u16::from(more)).to_be_bytes());
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&body[range]);
        let len = (p.len() - FIXED) as u16;
        p[4..6].copy_from_slice(&len.to_be_bytes());
        p
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    const T0: Instant = Instant::from_micros_const(1_000_000);

    #[test]
    fn out_of_order_fragments_make_the_datagram() {
        let whole = datagram(SRC, &[], &payload(4000));
        let frags: Vec<Vec<u8>> = [(1448..2896), (0..1448), (2896..4000)]
            .into_iter()
            .map(|r| fragment(&whole, 0, 7, r))
            .collect();
        let mut r = Reassembler6::new();
        assert_eq!(r.push(T0, 0, &frags[0]), Verdict::Held);
        assert_eq!(r.push(T0, 0, &frags[1]), Verdict::Held);
        assert_eq!(r.push(T0, 0, &frags[2]), Verdict::Whole(&whole));
        assert_eq!(r.pending(), 0);
        assert_eq!(r.stats().reassembled, 1);
    }

    #[test]
    fn the_largest_datagram_and_one_byte_more() {
        let whole = datagram(SRC, &[], &payload(MAX_PAYLOAD));
        let mut r = Reassembler6::new();
        let mut last = None;
        for start in (0..MAX_PAYLOAD).step_by(1448) {
            let f = fragment(&whole, 0, 1, start..(start + 1448).min(MAX_PAYLOAD));
            last = Some(r.push(T0, 0, &f) == Verdict::Whole(&whole));
        }
        assert_eq!(last, Some(true));
        // A last fragment that ends past 65,535 bytes.
        let mut f = fragment(&whole, 0, 2, 65_528..MAX_PAYLOAD);
        f.push(0);
        let len = (f.len() - FIXED) as u16;
        f[4..6].copy_from_slice(&len.to_be_bytes());
        assert_eq!(r.push(T0, 0, &f), Verdict::Dropped(Drop::TooLong));
    }

    #[test]
    fn ethernet_header_and_extension_headers_are_kept() {
        // A hop-by-hop header of 8 bytes (PadN) in front of the fragment header.
        let hbh = [17, 0, 1, 4, 0, 0, 0, 0];
        let whole = datagram(SRC, &hbh, &payload(3000));
        let link = [0xaa; 14];
        let mut r = Reassembler6::new();
        let frame = |r: std::ops::Range<usize>| [&link[..], &fragment(&whole, 8, 9, r)].concat();
        assert_eq!(r.push(T0, 14, &frame(1600..3000)), Verdict::Held);
        let expect = [&link[..], &whole].concat();
        assert_eq!(r.push(T0, 14, &frame(0..1600)), Verdict::Whole(&expect));
    }

    #[test]
    fn an_atomic_fragment_is_the_datagram() {
        let whole = datagram(SRC, &[], &payload(100));
        let mut r = Reassembler6::new();
        assert_eq!(
            r.push(T0, 0, &fragment(&whole, 0, 3, 0..100)),
            Verdict::Whole(&whole)
        );
        assert_eq!(r.pending(), 0);
        // And a packet without a fragment header is not ours.
        assert_eq!(r.push(T0, 0, &whole), Verdict::NotFragment);
    }

    #[test]
    fn overlaps_and_bad_lengths_drop_the_datagram() {
        let whole = datagram(SRC, &[], &payload(4000));
        let mut r = Reassembler6::new();
        assert_eq!(
            r.push(T0, 0, &fragment(&whole, 0, 5, 0..1448)),
            Verdict::Held
        );
        assert_eq!(
            r.push(T0, 0, &fragment(&whole, 0, 5, 1440..2896)),
            Verdict::Dropped(Drop::Overlap)
        );
        assert_eq!(r.pending(), 0, "the whole datagram went");
        // The rest alone never completes it.
        assert_eq!(
            r.push(T0, 0, &fragment(&whole, 0, 5, 1448..4000)),
            Verdict::Held
        );
        // A fragment with more to follow whose length is not a multiple of 8.
        assert_eq!(
            r.push(T0, 0, &fragment(&whole, 0, 6, 0..1447)),
            Verdict::Dropped(Drop::BadLength)
        );
        // Two last fragments that disagree about the end.
        assert_eq!(
            r.push(T0, 0, &fragment(&whole, 0, 8, 2896..4000)),
            Verdict::Held
        );
        let short = datagram(SRC, &[], &payload(2000));
        assert_eq!(
            r.push(T0, 0, &fragment(&short, 0, 8, 1448..2000)),
            Verdict::Dropped(Drop::BadLength)
        );
    }

    #[test]
    fn one_source_holds_a_share_and_time_frees_the_slots() {
        let whole = datagram(SRC, &[], &payload(3000));
        let mut r = Reassembler6::new();
        for id in 0..PER_SOURCE as u32 {
            assert_eq!(
                r.push(T0, 0, &fragment(&whole, 0, id, 0..1448)),
                Verdict::Held
            );
        }
        assert_eq!(
            r.push(T0, 0, &fragment(&whole, 0, 99, 0..1448)),
            Verdict::Dropped(Drop::NoSlot)
        );
        // Another source still gets through whole.
        let mut other = SRC;
        other[15] = 9;
        let theirs = datagram(other, &[], &payload(3000));
        assert_eq!(
            r.push(T0, 0, &fragment(&theirs, 0, 1, 0..1448)),
            Verdict::Held
        );
        assert_eq!(
            r.push(T0, 0, &fragment(&theirs, 0, 1, 1448..3000)),
            Verdict::Whole(&theirs)
        );
        // Just before the timeout they are held; at it they are gone, and the source has its
        // share again.
        r.expire(T0 + TIMEOUT - Duration::from_millis(1));
        assert_eq!(r.pending(), PER_SOURCE);
        assert_eq!(
            r.push(T0 + TIMEOUT, 0, &fragment(&whole, 0, 99, 0..1448)),
            Verdict::Held
        );
        assert_eq!(r.stats().timed_out, PER_SOURCE as u64);
        // The old datagrams' other halves start new ones, which never complete.
        assert_eq!(
            r.push(T0 + TIMEOUT, 0, &fragment(&whole, 0, 0, 1448..3000)),
            Verdict::Held
        );
    }

    #[test]
    fn all_slots_taken_by_many_sources() {
        let mut r = Reassembler6::new();
        for n in 0..SLOTS {
            let mut src = SRC;
            src[14] = n as u8 + 1;
            let whole = datagram(src, &[], &payload(3000));
            assert_eq!(
                r.push(T0, 0, &fragment(&whole, 0, 1, 0..1448)),
                Verdict::Held
            );
        }
        let whole = datagram(SRC, &[], &payload(3000));
        assert_eq!(
            r.push(T0, 0, &fragment(&whole, 0, 1, 0..1448)),
            Verdict::Dropped(Drop::NoSlot)
        );
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let whole = datagram(SRC, &[], &payload(3000));
        let f = fragment(&whole, 0, 1, 0..1448);
        let mut r = Reassembler6::new();
        for cut in 0..f.len() {
            let _ = r.push(T0, 0, &f[..cut]);
        }
        for i in 0..64 {
            let mut g = f.clone();
            g[i % 48] ^= 0xff;
            let _ = r.push(T0, 0, &g);
            let _ = r.push(T0, 14, &g);
        }
    }
}

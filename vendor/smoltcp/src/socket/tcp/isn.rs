//! Initial sequence numbers, per [RFC 6528].
//!
//! `ISN = M + F(localip, localport, remoteip, remoteport, secretkey)`, where `M` is a timer
//! ticking every 4 microseconds (the interface's clock) and `F` is SipHash-2-4 of the 4-tuple
//! keyed with a secret. The secret is derived from the interface's random seed
//! ([`Config::random_seed`](crate::iface::Config::random_seed)): an ISN can only be predicted
//! by whoever knows the seed. Connections to different 4-tuples get unrelated ISNs; successive
//! connections on the same 4-tuple get increasing ISNs, so that old segments of an earlier
//! incarnation are unlikely to fall in a new connection's window.
//!
//! [RFC 6528]: https://www.rfc-editor.org/rfc/rfc6528

use crate::time::Instant;
use crate::wire::{IpAddress, IpEndpoint, TcpSeqNumber};

/// The secret key of `F`, derived from a random seed (SplitMix64).
pub(crate) fn key_from_seed(seed: u64) -> [u64; 2] {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    [next(), next()]
}

/// The initial sequence number of a connection from `local` to `remote` started at `now`.
pub(crate) fn initial_seq_no(
    key: &[u64; 2],
    now: Instant,
    local: &IpEndpoint,
    remote: &IpEndpoint,
) -> TcpSeqNumber {
    let mut buf = [0u8; 2 * (16 + 2)];
    let mut len = 0;
    for endpoint in [local, remote] {
        let mut put = |bytes: &[u8]| {
            buf[len..len + bytes.len()].copy_from_slice(bytes);
            len += bytes.len();
        };
        match &endpoint.addr {
            #[cfg(feature = "proto-ipv4")]
            IpAddress::Ipv4(a) => put(&a.octets()),
            #[cfg(feature = "proto-ipv6")]
            IpAddress::Ipv6(a) => put(&a.octets()),
        }
        put(&endpoint.port.to_be_bytes());
    }
    let f = siphash24(key, &buf[..len]) as u32;
    let m = (now.total_micros() / 4) as u32;
    TcpSeqNumber(m.wrapping_add(f) as i32)
}

/// SipHash-2-4 of `data` with the 128-bit key `key` (k0, k1), as in the reference
/// implementation (the key's bytes are k0 then k1, little-endian).
fn siphash24(key: &[u64; 2], data: &[u8]) -> u64 {
    let mut v = [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let mut compress = |m: u64| {
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
    };
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        compress(u64::from_le_bytes(word));
    }
    let mut last = [0u8; 8];
    let tail = chunks.remainder();
    last[..tail.len()].copy_from_slice(tail);
    last[7] = data.len() as u8;
    compress(u64::from_le_bytes(last));
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod test {
    use super::*;

    /// The key 00 01 .. 0f of the reference test vectors.
    const REFERENCE_KEY: [u64; 2] = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];

    #[test]
    fn test_siphash24_reference_vectors() {
        let msg: [u8; 15] = core::array::from_fn(|i| i as u8);
        // From the SipHash paper and its reference implementation (vectors.h).
        assert_eq!(siphash24(&REFERENCE_KEY, &[]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(&REFERENCE_KEY, &msg), 0xa129_ca61_49be_45e5);
    }

    #[cfg(feature = "proto-ipv4")]
    fn endpoints(remote_port: u16) -> (IpEndpoint, IpEndpoint) {
        (
            IpEndpoint::new(IpAddress::v4(192, 0, 2, 2), 80),
            IpEndpoint::new(IpAddress::v4(192, 0, 2, 1), remote_port),
        )
    }

    #[test]
    #[cfg(feature = "proto-ipv4")]
    fn test_isn_keyed_per_tuple_plus_clock() {
        let key = key_from_seed(0);
        let t0 = Instant::from_secs(1);
        let (local, remote) = endpoints(40000);
        let isn = initial_seq_no(&key, t0, &local, &remote);
        // Same tuple: the ISN advances with the 4 µs clock, and only with it.
        let later = crate::time::Duration::from_millis(4);
        let later = initial_seq_no(&key, t0 + later, &local, &remote);
        assert_eq!(later.0.wrapping_sub(isn.0), 1000);
        // Another tuple, or another key: unrelated ISNs, with no linear relation that the
        // consecutive outputs of a generator would show.
        let (local, next) = endpoints(40001);
        let (_, third) = endpoints(40002);
        let a = initial_seq_no(&key, t0, &local, &next);
        let b = initial_seq_no(&key, t0, &local, &third);
        assert_ne!(a, isn);
        assert_ne!(b.0.wrapping_sub(a.0), a.0.wrapping_sub(isn.0));
        assert_ne!(initial_seq_no(&key_from_seed(1), t0, &local, &remote), isn);
    }

    #[test]
    #[cfg(feature = "proto-ipv6")]
    fn test_isn_ipv6_tuple() {
        let key = key_from_seed(7);
        let local = IpEndpoint::new(IpAddress::v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2), 80);
        let a = IpEndpoint::new(IpAddress::v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 1);
        let b = IpEndpoint::new(IpAddress::v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3), 1);
        let now = Instant::from_secs(0);
        assert_ne!(
            initial_seq_no(&key, now, &local, &a),
            initial_seq_no(&key, now, &local, &b)
        );
    }
}

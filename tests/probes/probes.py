"""Differential probes: crafted packets from the kernel side, and what the target answers.

The prober sits at 192.0.2.1 on the probing interface (tun0 in front of tunhost, or one end of a
veth pair in front of Linux kernel TCP) and the target at 192.0.2.2. Packets are built with
scapy and written to the interface through an AF_PACKET socket, exactly as built (checksums
included, so bad ones stay bad); replies are read from the same socket before the kernel's own
stack sees them (an nftables rule drops them there, so the kernel never answers for the prober
with RSTs or port unreachables of its own).

Each probe is a function `probe_NAME(wire)` that returns a short text ("RST", "nothing",
"SYN-ACK MSS=1460 WS=7 SACK TS", ...); its docstring says which RFC behaviour it checks and its
first line is the probe's title in the table. Every wait is bounded (a second at most).
"""

import os
import random
import socket
import time

from scapy.all import ICMP, IP, TCP, UDP, Ether, Raw, fragment

PEER = "192.0.2.1"
TARGET = "192.0.2.2"
# Other sources on the prober's side (the Linux target reaches them by static neighbour entries).
OTHER = "192.0.2.77"
STRAY = "192.0.2.66"
ECHO = 7
CLOSED = 9
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
WAIT = 0.5


class Wire:
    """The probing interface: send IP packets as built, collect the target's replies."""

    def __init__(self, iface, macs=None):
        self.iface = iface
        self.macs = macs  # (ours, the target's) on Ethernet; None on TUN (raw IP)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((iface, 0))

    def frame(self, pkt, broadcast=False):
        """The bytes to write for IP packet `pkt`: itself on TUN, in a frame on Ethernet."""
        if self.macs is None:
            return bytes(pkt)
        dst = "ff:ff:ff:ff:ff:ff" if broadcast else self.macs[1]
        return bytes(Ether(src=self.macs[0], dst=dst) / pkt)

    def send(self, *pkts, broadcast=False):
        for p in pkts:
            self.sock.send(self.frame(p, broadcast))

    def drain(self):
        """Forget whatever arrived before this probe."""
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(65536)
        except BlockingIOError:
            pass

    def collect(self, match, timeout=WAIT):
        """IP packets that arrive within `timeout` seconds and satisfy `match`."""
        got = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, addr = self.sock.recvfrom(65536)
            except (socket.timeout, BlockingIOError):
                break
            if addr[2] == PACKET_OUTGOING:
                continue
            ip = parse_ip(data, self.macs is not None)
            if ip is not None and match(ip):
                got.append(ip)
        return got

    def exchange(self, pkts, match, timeout=WAIT, broadcast=False):
        """Send `pkts`, then collect the replies that satisfy `match`."""
        self.drain()
        self.send(*pkts, broadcast=broadcast)
        return self.collect(match, timeout)


def parse_ip(data, ether):
    """The IPv4 packet in `data`, or None."""
    if ether:
        frame = Ether(data)
        return frame[IP] if IP in frame else None
    if not data or data[0] >> 4 != 4:
        return None
    return IP(data)


# ---------------------------------------------------------------------------------------------
# Building blocks


def port():
    """A fresh source port, so that every probe's replies are its own."""
    return random.randint(20000, 60000)


def isn():
    return random.getrandbits(32)


def to_us(sport):
    """Match TCP segments from the target to our port `sport`."""
    return lambda ip: ip.src == TARGET and TCP in ip and ip[TCP].dport == sport


def tcp(sport, dport, flags, seq, ack=0, data=b"", window=65535, options=()):
    seg = TCP(sport=sport, dport=dport, flags=flags, seq=seq % 2**32, ack=ack % 2**32,
              window=window, options=list(options))
    return IP(src=PEER, dst=TARGET) / seg / Raw(data) if data else IP(src=PEER, dst=TARGET) / seg


def corrupt(pkt, layer):
    """`pkt` with a wrong checksum in `layer` (the right one with some bits flipped)."""
    right = pkt.__class__(bytes(pkt))[layer].chksum
    bad = pkt.copy()
    bad[layer].chksum = right ^ 0x5A5A
    return bad


def flags(seg):
    """A TCP segment's kind: SYN-ACK, RST, FIN-ACK, ACK, data, ..."""
    f = seg[TCP].flags
    if "R" in f:
        return "RST"
    if "S" in f:
        return "SYN-ACK" if "A" in f else "SYN"
    kind = "FIN" if "F" in f else ("data" if payload(seg) else "ACK")
    return kind


def payload(seg):
    return bytes(seg[TCP].payload)


def kinds(segs):
    """The distinct kinds of `segs` in order of arrival, or "nothing"."""
    seen = []
    for s in segs:
        k = flags(s)
        if k not in seen:
            seen.append(k)
    return ", ".join(seen) or "nothing"


def options(synack):
    """A SYN-ACK's options, e.g. "MSS=1460 WS=7 SACK TS"."""
    opts = dict(synack[TCP].options)
    parts = [f"MSS={opts['MSS']}" if "MSS" in opts else None,
             f"WS={opts['WScale']}" if "WScale" in opts else None,
             "SACK" if "SAckOK" in opts else None,
             "TS" if "Timestamp" in opts else None]
    return " ".join(p for p in parts if p) or "no options"


FULL_OPTIONS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (12345, 0)), ("NOP", None),
                ("WScale", 7)]


class Conn:
    """Our side of a connection we opened with a handshake: our next sequence number and theirs."""

    def __init__(self, sport, dport, snd_nxt, rcv_nxt):
        self.sport, self.dport = sport, dport
        self.snd_nxt, self.rcv_nxt = snd_nxt, rcv_nxt

    def seg(self, flags, data=b"", seq=None, ack=None, window=65535):
        return tcp(self.sport, self.dport, flags, self.snd_nxt if seq is None else seq,
                   self.rcv_nxt if ack is None else ack, data, window)

    def replies(self, wire, pkts, timeout=WAIT):
        return wire.exchange(pkts, to_us(self.sport), timeout)

    def close(self, wire):
        """Reset the connection (at the target's RCV.NXT) so it holds nothing after the probe."""
        wire.send(self.seg("RA"))


def handshake(wire, dport=ECHO, opts=(("MSS", 1460),)):
    """Open a connection to `dport`; None if no SYN-ACK came back."""
    sport, seq = port(), isn()
    back = wire.exchange([tcp(sport, dport, "S", seq, options=opts)], to_us(sport))
    synack = next((s for s in back if flags(s) == "SYN-ACK"), None)
    if synack is None:
        return None
    c = Conn(sport, dport, seq + 1, synack[TCP].seq + 1)
    wire.send(c.seg("A"))
    return c


def echo_once(wire, c, data=b"hello"):
    """Send `data` on `c`, ACK what comes back; True if it was echoed."""
    back = c.replies(wire, [c.seg("PA", data)])
    c.snd_nxt += len(data)
    echoed = b"".join(payload(s) for s in back if s[TCP].seq % 2**32 == c.rcv_nxt % 2**32)
    if echoed:
        c.rcv_nxt += len(echoed)
        wire.send(c.seg("A"))
    return echoed == data


def liveness(wire, c):
    """Whether `c` still works: "alive" (data echoed), "reset" (RST) or "no answer"."""
    back = c.replies(wire, [c.seg("PA", b"ping")])
    c.snd_nxt += 4
    if any(flags(s) == "RST" for s in back):
        return "reset"
    if any(payload(s) for s in back):
        return "alive"
    return "no answer"


def answer_to(c, back, ack="ACK"):
    """Replies on a live connection: `ack` for pure ACKs of RCV.NXT (one or more), else kinds."""
    if back and all(flags(s) == "ACK" and s[TCP].ack == c.snd_nxt % 2**32 for s in back):
        return ack if len(back) == 1 else f"{ack} ×{len(back)}"
    return kinds(back)


def on_live(wire, make, ack="ACK"):
    """Open a connection, send what `make(conn)` builds, then check the connection still works.

    A pure ACK of our RCV.NXT in reply is called `ack` ("challenge ACK" for RST and SYN probes).
    """
    c = handshake(wire)
    if c is None:
        return "no handshake"
    back = c.replies(wire, make(c))
    result = f"{answer_to(c, back, ack)}; then {liveness(wire, c)}"
    c.close(wire)
    return result


# ---------------------------------------------------------------------------------------------
# The probes, in the order of the table.


def probe_closed_port_syn(wire):
    """SYN to a closed port.

    RFC 9293 §3.10.7.1: a segment to a CLOSED port gets a reset.
    """
    sport = port()
    return kinds(wire.exchange([tcp(sport, CLOSED, "S", isn())], to_us(sport)))


def probe_syn_options(wire):
    """SYN-ACK options for a SYN with MSS, SACK, timestamps, window scale.

    The SYN offered MSS 1460, SACK permitted, timestamps and window scale 7.

    RFC 9293 §3.7.1 (MSS), RFC 7323 (window scale, timestamps), RFC 2018 (SACK permitted):
    each option is answered only if the SYN offered it.
    """
    return synack_options(wire, FULL_OPTIONS)


def probe_syn_no_options(wire):
    """SYN-ACK options for a SYN without options.

    RFC 7323 §1.3: no window scale or timestamps unless the SYN carried them; RFC 9293 §3.7.1:
    a SYN without MSS means the peer's MSS is 536.
    """
    return synack_options(wire, ())


def synack_options(wire, opts):
    sport, seq = port(), isn()
    back = wire.exchange([tcp(sport, ECHO, "S", seq, options=opts)], to_us(sport))
    synack = next((s for s in back if flags(s) == "SYN-ACK"), None)
    if synack is None:
        return kinds(back)
    wire.send(tcp(sport, ECHO, "R", seq + 1))
    return f"SYN-ACK {options(synack)}"


def probe_mss_after_reset(wire):
    """Send MSS after a reset half-open connection with MSS 1000.

    A SYN with MSS 1000, SYN-ACK, RST; then a connection whose SYN has no options echoes 1200
    bytes: the largest segment that comes back.

    RFC 9293 §3.7.1: without an MSS option the send MSS is 536, whatever an earlier connection
    said; nothing of a connection reset in SYN-RECEIVED carries over (§3.10.7.4).
    """
    sport, seq = port(), isn()
    back = wire.exchange([tcp(sport, ECHO, "S", seq, options=[("MSS", 1000)])], to_us(sport))
    if any(flags(s) == "SYN-ACK" for s in back):
        wire.send(tcp(sport, ECHO, "R", seq + 1))
    c = handshake(wire, opts=())
    if c is None:
        return "no handshake"
    back = c.replies(wire, [c.seg("PA", bytes(1200))])
    c.close(wire)
    sizes = [len(payload(s)) for s in back if payload(s)]
    return f"largest echoed segment {max(sizes)} bytes" if sizes else "nothing echoed"


def probe_isn(wire):
    """ISNs: do two predict the third by their difference?

    Three SYNs from three source ports, back to back. This sees only a linear generator: an
    LCG with truncated output (smoltcp's) needs the generator recovered (tests of issue 12).

    RFC 6528: ISN = clock + keyed hash of the 4-tuple, so that an off-path attacker cannot
    guess it. A linear ISN sequence (a constant step) is predictable.
    """
    isns = []
    for _ in range(3):
        sport, seq = port(), isn()
        back = wire.exchange([tcp(sport, ECHO, "S", seq)], to_us(sport))
        synack = next((s for s in back if flags(s) == "SYN-ACK"), None)
        if synack is None:
            return "no SYN-ACK"
        wire.send(tcp(sport, ECHO, "R", seq + 1))
        isns.append(synack[TCP].seq)
    guess = (2 * isns[1] - isns[0]) % 2**32
    return "predictable" if guess == isns[2] else "not predictable by difference"


def probe_rst_in_window(wire):
    """RST in window, not at RCV.NXT, on a live connection.

    RFC 5961 §3.2: send a challenge ACK, keep the connection.
    """
    return on_live(wire, lambda c: [c.seg("R", seq=c.snd_nxt + 100)], "challenge ACK")


def probe_rst_at_rcv_nxt(wire):
    """RST at RCV.NXT on a live connection.

    RFC 5961 §3.2, RFC 9293 §3.10.7.4: the connection is reset, nothing is sent back; a later
    segment of it gets a reset.
    """
    return on_live(wire, lambda c: [c.seg("R")])


def probe_syn_on_live(wire):
    """SYN on a live connection's 4-tuple.

    Another sequence number, far outside the window.

    RFC 5961 §4.2: send a challenge ACK, keep the connection (a SYN must not open a new one).
    """
    return on_live(wire, lambda c: [c.seg("S", seq=c.snd_nxt + 1_000_000, ack=0)], "challenge ACK")


def probe_old_ack_data(wire):
    """Data with an ACK below SND.UNA.

    The ACK is 3 below SND.UNA, well within the window behind it.

    RFC 9293 §3.10.7.4: an old ACK is ignored (SEG.ACK < SND.UNA), the segment's data is still
    processed. RFC 5961 §5.2: acceptable if SND.UNA - MAX.SND.WND <= SEG.ACK.
    """
    c = handshake(wire)
    if c is None:
        return "no handshake"
    if not echo_once(wire, c):
        c.close(wire)
        return "echo failed"
    back = c.replies(wire, [c.seg("PA", b"late", ack=c.rcv_nxt - 3)])
    c.snd_nxt += 4
    c.close(wire)
    if any(payload(s) == b"late" for s in back):
        return "data kept (echoed)"
    if any(flags(s) == "ACK" and s[TCP].ack == c.snd_nxt % 2**32 for s in back):
        return "data kept (ACKed)"
    return f"data dropped ({kinds(back)})"


def probe_ack_unsent(wire):
    """ACK of unsent data.

    RFC 9293 §3.10.7.4: if SEG.ACK > SND.NXT, send an ACK and drop the segment.
    """
    return on_live(wire, lambda c: [c.seg("A", ack=c.rcv_nxt + 100_000)])


def probe_out_of_window(wire):
    """Out-of-window data (10 MB ahead).

    RFC 9293 §3.10.7.4: an unacceptable segment gets an ACK (unless RST) and is dropped.
    """
    return on_live(wire, lambda c: [c.seg("PA", b"x" * 10, seq=c.snd_nxt + 10_000_000)])


def probe_old_duplicate(wire):
    """Old duplicate data (already received).

    RFC 9293 §3.10.7.4: a segment entirely before RCV.NXT gets an ACK and is dropped.
    """
    c = handshake(wire)
    if c is None:
        return "no handshake"
    echo_once(wire, c)
    back = c.replies(wire, [c.seg("PA", b"hello", seq=c.snd_nxt - 5)])
    result = f"{answer_to(c, back)}; then {liveness(wire, c)}"
    c.close(wire)
    return result


def probe_zero_window(wire):
    """Zero-window probing by the target.

    We advertise a window of 0 and have data echoed to us. The first probe is due after one
    retransmission timeout (about 1.5 s on both stacks), so this probe waits 2 s.

    RFC 9293 §3.8.6.1: the sender must keep probing a zero window (persist timer). Shown: what
    arrives in the first two seconds.
    """
    c = handshake(wire)
    if c is None:
        return "no handshake"
    back = c.replies(wire, [c.seg("PA", b"hello", window=0)], timeout=2.0)
    c.snd_nxt += 5
    c.close(wire)
    probes = []
    for s in back:
        if payload(s):
            probes.append(f"{len(payload(s))}-byte probe")
        elif s[TCP].seq == (c.rcv_nxt - 1) % 2**32:
            probes.append("empty probe at SND.UNA-1")
    if not probes:
        return "no window probe within 2 s"
    return ", ".join(dict.fromkeys(probes))


def probe_fin_retransmission(wire):
    """FIN retransmission.

    Our FIN, then the very same segment again. RFC 9293 §3.10.7.4: a FIN that was already
    received is before RCV.NXT, so it is acknowledged again.
    """
    c = handshake(wire)
    if c is None:
        return "no handshake"
    c.replies(wire, [c.seg("FA")])
    again = c.replies(wire, [c.seg("FA")])  # the same segment again, as a retransmission
    c.close(wire)
    acked = any("A" in s[TCP].flags and s[TCP].ack == (c.snd_nxt + 1) % 2**32 for s in again)
    return "FIN ACKed again" if acked else f"retransmitted FIN: {kinds(again)}"


def odd_flags(wire, f):
    sport = port()
    return kinds(wire.exchange([tcp(sport, ECHO, f, isn())], to_us(sport)))


def probe_syn_fin(wire):
    """SYN+FIN to a listening port.

    RFC 9293 §3.10.7.2 does not forbid it, but it is a classic scanner probe; Linux drops it.
    """
    return odd_flags(wire, "SF")


def probe_no_flags(wire):
    """No flags to a listening port.

    RFC 9293 §3.10.7.2 (LISTEN): neither RST, ACK nor SYN: drop it.
    """
    return odd_flags(wire, "")


def probe_xmas(wire):
    """FIN+URG+PSH ("xmas") to a listening port.

    RFC 9293 §3.10.7.2 (LISTEN): no ACK and no SYN: drop it.
    """
    return odd_flags(wire, "FPU")


def probe_good_udp(wire):
    """UDP to the echo port (control).

    RFC 862: it comes back.
    """
    sport = port()
    pkt = IP(src=PEER, dst=TARGET) / UDP(sport=sport, dport=ECHO) / Raw(b"probe")
    back = wire.exchange([pkt], lambda ip: ip.src == TARGET and UDP in ip and ip[UDP].dport == sport)
    return "echoed" if back else "nothing"


def probe_bad_ip_checksum(wire):
    """Bad IPv4 header checksum (SYN to the echo port).

    RFC 1122 §3.2.1.2: silently discard.
    """
    sport = port()
    pkt = corrupt(tcp(sport, ECHO, "S", isn()), IP)
    return kinds(wire.exchange([pkt], to_us(sport)))


def probe_bad_tcp_checksum(wire):
    """Bad TCP checksum (SYN to the echo port).

    RFC 9293 §3.1, RFC 1122 §4.2.2.7: discard it.
    """
    sport = port()
    pkt = corrupt(tcp(sport, ECHO, "S", isn()), TCP)
    return kinds(wire.exchange([pkt], to_us(sport)))


def probe_bad_udp_checksum(wire):
    """Bad UDP checksum (to the echo port).

    RFC 1122 §4.1.3.4: discard silently.
    """
    sport = port()
    pkt = corrupt(IP(src=PEER, dst=TARGET) / UDP(sport=sport, dport=ECHO) / Raw(b"probe"), UDP)
    back = wire.exchange([pkt], lambda ip: ip.src == TARGET and UDP in ip and ip[UDP].dport == sport)
    return "echoed" if back else "nothing"


def ping(ident, src=PEER, dst=TARGET, size=32):
    return IP(src=src, dst=dst) / ICMP(type=8, id=ident, seq=1) / Raw(bytes(size))


def replies_to(ident):
    return lambda ip: ip.src == TARGET and ICMP in ip and ip[ICMP].type == 0 and ip[ICMP].id == ident


def probe_ping(wire):
    """ICMP echo to the target (control).

    RFC 792, RFC 1122 §3.2.2.6: answered.
    """
    ident = port()
    return "echo reply" if wire.exchange([ping(ident)], replies_to(ident)) else "nothing"


def probe_bad_icmp_checksum(wire):
    """Bad ICMP checksum (echo request).

    RFC 792: the checksum covers the message; a wrong one is discarded.
    """
    ident = port()
    back = wire.exchange([corrupt(ping(ident), ICMP)], replies_to(ident))
    return "echo reply" if back else "nothing"


def broadcast_ping(wire, dst):
    ident = port()
    back = wire.exchange([ping(ident, dst=dst)], replies_to(ident), broadcast=True)
    return f"echo reply ×{len(back)}" if back else "nothing"


def probe_ping_subnet_broadcast(wire):
    """ICMP echo to the subnet broadcast 192.0.2.255.

    RFC 1122 §3.2.2.6 allows silence; answering makes the host a smurf amplifier (RFC 2644).
    """
    return broadcast_ping(wire, "192.0.2.255")


def probe_ping_broadcast(wire):
    """ICMP echo to 255.255.255.255.

    RFC 1122 §3.2.2.6, RFC 2644: as for the subnet broadcast.
    """
    return broadcast_ping(wire, "255.255.255.255")


def probe_udp_closed_burst(wire):
    """200 UDP datagrams to a closed port.

    Back to back; counted: the port unreachables that come back within a second.

    RFC 1812 §4.3.2.8, RFC 4443 §2.4(f): ICMP errors should be rate-limited.
    """
    sport = port()
    pkts = [IP(src=PEER, dst=TARGET) / UDP(sport=sport, dport=CLOSED) / Raw(b"%d" % i)
            for i in range(200)]
    unreach = lambda ip: (ip.src == TARGET and ICMP in ip and ip[ICMP].type == 3
                          and ip[ICMP].code == 3)
    back = wire.exchange(pkts, unreach, timeout=1.0)
    return f"ICMP port unreachable ×{len(back)}" if back else "nothing"


def probe_icmp_error_about_icmp_error(wire):
    """ICMP error about an ICMP error.

    A port unreachable to the target that quotes a port unreachable.

    RFC 1122 §3.2.2: never send an ICMP error about an ICMP error.
    """
    quoted = IP(src=TARGET, dst=PEER) / ICMP(type=3, code=3) / IP(src=PEER, dst=TARGET) / UDP(
        sport=port(), dport=ECHO)
    pkt = IP(src=PEER, dst=TARGET) / ICMP(type=3, code=3) / Raw(bytes(quoted)[:28])
    back = wire.exchange([pkt], lambda ip: ip.src == TARGET and ICMP in ip)
    return "nothing" if not back else f"ICMP type {back[0][ICMP].type} ×{len(back)}"


def probe_fragmented_ping(wire):
    """Fragmented ping (control).

    A 1,200-byte ping in two fragments from 192.0.2.77 (the reply fits one packet). RFC 791 §3.2, RFC 1122 §3.3.2:
    reassembled and answered.
    """
    return fragmented_ping(wire, [])


def fragmented_ping(wire, before):
    ident = port()
    big = ping(ident, src=OTHER, size=1200)
    big[IP].id = random.randint(1, 65535)
    frags = fragment(big, fragsize=616)
    back = wire.exchange(before + frags, lambda ip: ip.src == TARGET and ip.dst == OTHER
                         and ip.proto == 1, timeout=1.0)
    return "echo reply" if back else "nothing"


def probe_fragments(wire):
    """Fragmented ping after a stray fragment from another source.

    The first 600 bytes of a 3,000-byte ping from 192.0.2.66, never completed, then the
    control's fragmented ping from 192.0.2.77.

    RFC 791 §3.2, RFC 815: reassembly buffers are per datagram (source, destination, protocol,
    identification); one incomplete datagram must not stop others.
    """
    stray = fragment(ping(port(), src=STRAY, size=3000), fragsize=600)[0]
    stray[IP].id = random.randint(1, 65535)
    return fragmented_ping(wire, [stray])


def probes():
    """Every probe, in table order: (name, title, function)."""
    found = []
    for name, f in globals().items():
        if name.startswith("probe_") and callable(f):
            title = f.__doc__.strip().splitlines()[0].rstrip(".")
            found.append((name[len("probe_"):], title, f))
    return found


def seed():
    random.seed(int.from_bytes(os.urandom(8), "big"))

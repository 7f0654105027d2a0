#!/usr/bin/python3
"""Forged TCP segments for tests/tcp_security.rs, sent from the kernel side of tun0.

Runs inside the test's network namespace only: tun0 is the kernel's side of the TUN device
(192.0.2.1/24), the host under test is 192.0.2.2. Segments "from 192.0.2.77" are spoofed from an
address nobody has: their replies are only seen here, by the sniffer on tun0.

Each command prints `key value` lines on stdout; see tests/tcp_security.rs.
"""

import socket
import sys
import threading
import time

from scapy.all import IP, TCP, Raw, conf

conf.verb = 0
HOST = "192.0.2.2"
KERNEL = "192.0.2.1"
SPOOF = "192.0.2.77"
IFACE = "tun0"
ETH_P_ALL = 0x0003


class Sniffer:
    """Every IP packet on tun0, in both directions, from a thread (AF_PACKET)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        self.sock.bind((IFACE, 0))
        self.sock.settimeout(0.1)
        self.packets = []
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            try:
                data = self.sock.recv(65535)
            except socket.timeout:
                continue
            try:
                p = IP(data)
            except Exception:
                continue
            if TCP in p:
                with self.lock:
                    self.packets.append(p)

    def tcp(self, src=None, sport=None, dport=None):
        with self.lock:
            return [
                p for p in self.packets
                if (src is None or p[IP].src == src)
                and (sport is None or p[TCP].sport == sport)
                and (dport is None or p[TCP].dport == dport)
            ]

    def wait(self, pred, timeout=3.0):
        """The first packet matching pred (within timeout), or None."""
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                for p in self.packets:
                    if pred(p):
                        return p
            time.sleep(0.01)
        return None


RAW = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)


def send(pkt):
    RAW.sendto(bytes(pkt), (pkt[IP].dst, 0))


def flags(p):
    return str(p[TCP].flags)


def from_host(sniffer, sport, dport, pred=lambda p: True, timeout=3.0):
    return sniffer.wait(
        lambda p: p[IP].src == HOST and p[TCP].sport == sport and p[TCP].dport == dport and pred(p),
        timeout,
    )


def handshake(sniffer, sport, dport, seq, options):
    """Spoofed SYN from SPOOF:sport; returns the host's ISN (from its SYN-ACK) or None."""
    send(IP(src=SPOOF, dst=HOST) / TCP(sport=sport, dport=dport, flags="S", seq=seq,
                                       window=65535, options=options))
    sa = from_host(sniffer, dport, sport, lambda p: flags(p) == "SA")
    return sa


def cmd_isn(ports, dport):
    """SYNs from SPOOF on each port in turn: `isn PORT VALUE` from each SYN-ACK."""
    s = Sniffer()
    for port in ports:
        sa = handshake(s, port, dport, 1000, [("MSS", 1460)])
        print("isn", port, sa[TCP].seq if sa else "none", flush=True)


def cmd_spoof(sport, dport, guess):
    """A blind handshake from SPOOF with ISN guess `guess`, then data: `data N` bytes served."""
    s = Sniffer()
    send(IP(src=SPOOF, dst=HOST) / TCP(sport=sport, dport=dport, flags="S", seq=1000,
                                       window=65535, options=[("MSS", 1460)]))
    time.sleep(0.2)  # the attacker does not see the SYN-ACK; it only waits for it to go out
    send(IP(src=SPOOF, dst=HOST) / TCP(sport=sport, dport=dport, flags="PA", seq=1001,
                                       ack=(guess + 1) % 2**32, window=65535) / Raw(b"hello\n"))
    time.sleep(1.0)
    served = sum(len(p[TCP].payload) for p in s.tcp(src=HOST, sport=dport, dport=sport))
    print("data", served, flush=True)


def rcv_nxt(sniffer, port, dport):
    """The host's RCV.NXT on the kernel's connection from KERNEL:port, from what was sniffed.
    The sniffer's thread may lag behind the test under load: wait for the connection's first
    segment, then until nothing new has come for 0.3 s (3 s at most)."""
    sniffer.wait(lambda p: p[IP].src == KERNEL and p[TCP].sport == port and p[TCP].dport == dport)
    end = time.time() + 3.0
    seen = -1
    while time.time() < end:
        n = len(sniffer.tcp())
        if n == seen:
            break
        seen = n
        time.sleep(0.3)
    nxt = None
    for p in sniffer.tcp(src=KERNEL, sport=port, dport=dport):
        f = p[TCP].flags
        end = (p[TCP].seq + len(p[TCP].payload) + (1 if f.S else 0) + (1 if f.F else 0)) % 2**32
        if nxt is None or ((end - nxt) % 2**32) < 2**31:
            nxt = end
    return nxt


def go(sniffer):
    """Say ready, then wait for `go PORT` on stdin (the test's connection is then set up)."""
    print("ready", flush=True)
    line = sys.stdin.readline().split()
    assert line and line[0] == "go", line
    return int(line[1])


def challenges(sniffer, port, dport, after):
    """Pure ACKs the host sent to KERNEL:port after `after` (time)."""
    return [
        p for p in sniffer.tcp(src=HOST, sport=dport, dport=port)
        if p.time >= after and flags(p) == "A" and len(p[TCP].payload) == 0
    ]


def rst_segment(port, dport, seq):
    return bytes(IP(src=KERNEL, dst=HOST) / TCP(sport=port, dport=dport, flags="R", seq=seq,
                                                 window=0))


def cmd_rst(dport):
    """An RST in the window but not at RCV.NXT, then a sweep of 32,768 RSTs one every 2^17 of
    sequence space (none at RCV.NXT), on the test's live connection."""
    s = Sniffer()
    port = go(s)
    nxt = rcv_nxt(s, port, dport)
    assert nxt is not None, "no segment of the connection sniffed"
    t = time.time()
    send(IP(rst_segment(port, dport, (nxt + 1000) % 2**32)))
    ok = from_host(s, dport, port, lambda p: p.time >= t and flags(p) == "A", timeout=2.0)
    print("challenge", 1 if ok else 0, flush=True)
    # The sweep, as fast as the raw socket takes it: one template, sequence number and
    # checksum patched in place.
    template = bytearray(rst_segment(port, dport, 0))
    ihl = (template[0] & 0x0F) * 4
    sent = 0
    start = time.time()
    for k in range(32768):
        seq = (nxt + 1 + k * 2**17) % 2**32
        pkt = bytearray(template)
        pkt[ihl + 4:ihl + 8] = seq.to_bytes(4, "big")
        pkt[ihl + 16:ihl + 18] = b"\0\0"
        pkt[ihl + 16:ihl + 18] = tcp_checksum(pkt[12:16], pkt[16:20], pkt[ihl:]).to_bytes(2, "big")
        RAW.sendto(bytes(pkt), (HOST, 0))
        sent += 1
        if time.time() - start > 30:
            break
    print("sent", sent, flush=True)
    print("seconds", round(time.time() - start, 2), flush=True)
    time.sleep(0.2)
    print("resets", len([p for p in s.tcp(src=HOST, sport=dport, dport=port) if p[TCP].flags.R]),
          flush=True)


def tcp_checksum(src, dst, segment):
    pseudo = bytes(src) + bytes(dst) + bytes([0, 6]) + len(segment).to_bytes(2, "big")
    data = pseudo + bytes(segment)
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def cmd_syn(dport):
    """A SYN with the test's live connection's 4-tuple: `synack N` SYN-ACKs and `challenge N`
    challenge ACKs came back, `resets N` RSTs."""
    s = Sniffer()
    port = go(s)
    nxt = rcv_nxt(s, port, dport)
    t = time.time()
    send(IP(src=KERNEL, dst=HOST) / TCP(sport=port, dport=dport, flags="S",
                                        seq=(nxt + 123456) % 2**32, window=65535,
                                        options=[("MSS", 1460)]))
    time.sleep(1.0)
    back = [p for p in s.tcp(src=HOST, sport=dport, dport=port) if p.time >= t]
    print("synack", len([p for p in back if p[TCP].flags.S]), flush=True)
    print("challenge", len([p for p in back if flags(p) == "A"]), flush=True)
    print("resets", len([p for p in back if p[TCP].flags.R]), flush=True)


def cmd_mss(dport):
    """SYN with MSS 1000 (no window scale), RST; then a SYN with window scale only: the second
    SYN-ACK's window scale, and the largest segment the host sends on that connection."""
    s = Sniffer()
    sa = handshake(s, 40001, dport, 1000, [("MSS", 1000)])
    assert sa is not None, "no SYN-ACK to the first SYN"
    send(IP(src=SPOOF, dst=HOST) / TCP(sport=40001, dport=dport, flags="R", seq=1001))
    time.sleep(0.3)
    sa = handshake(s, 40002, dport, 5000, [("WScale", 7)])
    assert sa is not None, "no SYN-ACK to the second SYN"
    ws = dict((k, v) for k, v in sa[TCP].options if isinstance(k, str)).get("WScale")
    print("wscale", ws if ws is not None else "none", flush=True)
    isn = sa[TCP].seq
    send(IP(src=SPOOF, dst=HOST) / TCP(sport=40002, dport=dport, flags="PA", seq=5001,
                                       ack=(isn + 1) % 2**32, window=512) / Raw(b"m" * 1400))
    time.sleep(1.0)
    sizes = [len(p[TCP].payload) for p in s.tcp(src=HOST, sport=dport, dport=40002)]
    print("echoed", sum(sizes), flush=True)
    print("maxseg", max(sizes) if sizes else 0, flush=True)


def cmd_oldack(dport):
    """Data, echoed and acknowledged; then more data carrying the old ACK (below SND.UNA):
    `acked 1` when the host acknowledges it."""
    s = Sniffer()
    sa = handshake(s, 40003, dport, 7000, [("MSS", 1460)])
    assert sa is not None, "no SYN-ACK"
    isn = sa[TCP].seq
    one = (isn + 1) % 2**32
    send(IP(src=SPOOF, dst=HOST) / TCP(sport=40003, dport=dport, flags="PA", seq=7001, ack=one,
                                       window=65535) / Raw(b"abc"))
    echo = from_host(s, dport, 40003, lambda p: len(p[TCP].payload) == 3)
    assert echo is not None, "no echo of abc"
    send(IP(src=SPOOF, dst=HOST) / TCP(sport=40003, dport=dport, flags="A", seq=7004,
                                       ack=(isn + 4) % 2**32, window=65535))
    time.sleep(0.2)
    t = time.time()
    send(IP(src=SPOOF, dst=HOST) / TCP(sport=40003, dport=dport, flags="PA", seq=7004, ack=one,
                                       window=65535) / Raw(b"xyz"))
    acked = from_host(s, dport, 40003, lambda p: p.time >= t and p[TCP].ack == 7007)
    print("acked", 1 if acked else 0, flush=True)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "isn":
        cmd_isn([int(a) for a in args[1:]], int(args[0]))
    elif cmd == "spoof":
        cmd_spoof(int(args[0]), int(args[1]), int(args[2]))
    elif cmd == "rst":
        cmd_rst(int(args[0]))
    elif cmd == "syn":
        cmd_syn(int(args[0]))
    elif cmd == "mss":
        cmd_mss(int(args[0]))
    elif cmd == "oldack":
        cmd_oldack(int(args[0]))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()

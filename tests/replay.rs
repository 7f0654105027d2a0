//! Replay: the captures in `captures/` played through the host offline, and the `replay` CLI.
//!
//! The replay tests need no privileges. `cargo xtask captures` records the captures anew from a
//! live host against the kernel, as root (see captures/README.md).

mod common;
mod tools;

use common::tunhost;
use tools::{Scratch, captures_dir, icmp_echo_reply, l3, read_capture, replay_cli};
use tunhost::Config;
use tunhost::pcap::{Capture, Direction, Link};
use tunhost::replay::{ReplayConfig, Report, replay};
use tunhost::services::{ServiceSpec, ServicesConfig};
use tunhost::smoltcp::wire::IpCidr;

fn capture(name: &str) -> Capture {
    read_capture(&captures_dir().join(name).to_string_lossy())
}

fn run(cap: &Capture, config: ReplayConfig) -> Report {
    let cfg = ReplayConfig {
        keep_output: true,
        ..config
    };
    replay::<Vec<u8>>(cap, &cfg, None).expect("replay")
}

/// The packets the live host wrote, in order (from the trace's direction flags).
fn live_output(cap: &Capture) -> Vec<Vec<u8>> {
    cap.packets
        .iter()
        .filter(|p| p.direction == Some(Direction::Outbound))
        .map(|p| p.data.clone())
        .collect()
}

fn replay_output(r: &Report) -> Vec<Vec<u8>> {
    r.output.iter().map(|(_, p)| p.clone()).collect()
}

/// `captures/NAME` and its replay through the host it was recorded with (see
/// captures/README.md): at `addr`, with one `service`.
fn replayed(name: &str, addr: &str, service: ServiceSpec) -> (Capture, Report) {
    let cap = capture(name);
    let host = Config {
        addrs: vec![addr.parse::<IpCidr>().unwrap()],
        seed: Some(0),
        ..Config::default()
    };
    let services = ServicesConfig {
        services: vec![service],
        ..ServicesConfig::default()
    };
    let r = run(&cap, ReplayConfig::new(host, services));
    (cap, r)
}

/// The replay wrote exactly the packets the live host wrote, in order.
fn assert_same_output(cap: &Capture, r: &Report) {
    assert_eq!(replay_output(r), live_output(cap), "{}", r.summary);
}

#[test]
fn ping_capture_replays_to_the_same_replies() {
    let (cap, r) = replayed("ping.pcapng", "192.0.2.2/24", ServiceSpec::Echo(7));
    let live = live_output(&cap);
    assert_eq!(live.len(), 3, "the capture holds 3 echo replies");
    assert!(live.iter().all(|p| icmp_echo_reply(p).is_some()));
    // Same seed, same requests at the same (virtual) times: the same bytes.
    assert_eq!(replay_output(&r), live, "{}", r.summary);
    assert_eq!(r.summary.fed_by_protocol.icmp, 3, "{}", r.summary);
}

#[test]
fn udp_echo_capture_replays_to_the_same_datagrams() {
    let (cap, r) = replayed("udp-echo.pcapng", "192.0.2.2/24", ServiceSpec::UdpEcho(7));
    assert_eq!(r.summary.written_by_protocol.udp, 3, "{}", r.summary);
    assert_same_output(&cap, &r);
}

#[test]
fn closed_port_capture_replays_to_the_same_refusals() {
    let (cap, r) = replayed("closed-port.pcapng", "192.0.2.2/24", ServiceSpec::Echo(7));
    let out = replay_output(&r);
    assert_eq!(out, live_output(&cap), "{}", r.summary);
    // A TCP RST (flags byte has RST) and an ICMP port unreachable (type 3, code 3).
    assert!(out.iter().any(|p| p[9] == 6 && p[20 + 13] & 0x04 != 0));
    assert!(out.iter().any(|p| p[9] == 1 && p[20] == 3 && p[21] == 3));
}

#[test]
fn tap_capture_replays_arp_and_ping_on_an_ethernet_host() {
    // No --mac: the host's MAC is learned from the capture.
    let (cap, r) = replayed(
        "tap-arp-ping.pcapng",
        "198.51.100.2/24",
        ServiceSpec::Echo(7),
    );
    assert!(cap.packets.iter().all(|p| p.link == Link::Ethernet));
    assert_eq!(r.mac, Some("02:00:00:00:00:02".parse().unwrap()));
    assert!(r.summary.written_by_protocol.arp >= 1, "{}", r.summary);
    assert_eq!(r.summary.written_by_protocol.icmp, 2, "{}", r.summary);
    assert_same_output(&cap, &r);
}

#[test]
fn tcp_echo_capture_replays_the_same_stream() {
    let (cap, r) = replayed("tcp-echo.pcapng", "192.0.2.2/24", ServiceSpec::Echo(7));
    // The byte stream the host sent: TCP payloads from port 7, in sequence order.
    let stream = |packets: Vec<Vec<u8>>| {
        let mut segs: Vec<(u32, Vec<u8>)> = packets
            .iter()
            .filter(|p| p[9] == 6)
            .map(|p| {
                let ihl = usize::from(p[0] & 0x0f) * 4;
                let tcp = &p[ihl..];
                let off = usize::from(tcp[12] >> 4) * 4;
                let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
                (seq, tcp[off..].to_vec())
            })
            .filter(|(_, d)| !d.is_empty())
            .collect();
        segs.sort();
        segs.dedup();
        segs.into_iter().flat_map(|(_, d)| d).collect::<Vec<u8>>()
    };
    let live = stream(live_output(&cap));
    assert!(live.len() > 1000, "the capture echoes {} bytes", live.len());
    // The seed gives the live host's sequence numbers, so the capture's ACKs fit the replay.
    assert_eq!(stream(replay_output(&r)), live, "{}", r.summary);
}

#[test]
fn replay_cli_is_deterministic_and_summarises() {
    let dir = Scratch::new("replay-cli");
    let input = captures_dir().join("tcp-echo.pcapng");
    let input = input.to_str().unwrap();
    let (a, b) = (dir.path("a.pcapng"), dir.path("b.pcapng"));
    let mut outputs = Vec::new();
    for out in [&a, &b] {
        let args = [
            input,
            "--addr",
            "192.0.2.2/24",
            "--echo",
            "7",
            "--seed",
            "0",
            "--pcap",
            out,
        ];
        outputs.push(replay_cli(&args));
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(outputs[0].replace(&a, "OUT"), outputs[1].replace(&b, "OUT"));
    let text = &outputs[0];
    assert!(text.contains("packets read"), "{text}");
    assert!(text.contains("sent by the host"), "{text}");
    assert!(text.contains("written: tcp"), "{text}");
    // The output is the replayed host's trace, as live: packets fed in, packets written out.
    let out = read_capture(&a);
    let count = |d| {
        out.packets
            .iter()
            .filter(|p| p.direction == Some(d))
            .count()
    };
    let (_, r) = replayed("tcp-echo.pcapng", "192.0.2.2/24", ServiceSpec::Echo(7));
    assert_eq!(count(Direction::Inbound) as u64, r.summary.fed);
    assert_eq!(count(Direction::Outbound) as u64, r.summary.written);
    assert_eq!(out.packets.len() as u64, r.summary.fed + r.summary.written);
}

#[test]
fn replay_cli_rejects_bad_input_in_one_line() {
    let dir = Scratch::new("replay-bad");
    let text = dir.path("notes.txt");
    std::fs::write(&text, "not a capture\n").unwrap();
    // A classic pcap header with link type 105 (802.11).
    let wifi = dir.path("wifi.pcap");
    let mut hdr = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    hdr.extend([0; 8]);
    hdr.extend(65535u32.to_le_bytes());
    hdr.extend(105u32.to_le_bytes());
    std::fs::write(&wifi, &hdr).unwrap();
    for (file, says) in [
        (text.as_str(), "not a pcap or pcapng capture"),
        (
            wifi.as_str(),
            "unsupported link type 105 (LINKTYPE_IEEE802_11)",
        ),
        ("/nonexistent/in.pcap", "cannot read /nonexistent/in.pcap"),
    ] {
        let (code, err) = tunhost(&["replay", file, "--addr", "192.0.2.2/24"]);
        assert_ne!(code, 0, "{file}: {err}");
        assert_eq!(err.lines().count(), 1, "{file}: {err}");
        assert!(err.contains(says), "{file}: {err}");
        assert!(err.contains(file), "{file}: {err}");
    }
}

#[test]
fn tcpdump_capture_replays_to_the_same_echo_replies() {
    let (cap, r) = replayed("ping-tcpdump.pcap", "192.0.2.2/24", ServiceSpec::Echo(7));
    assert!(cap.packets.iter().all(|p| p.link == Link::Raw));
    let live: Vec<Vec<u8>> = cap
        .packets
        .iter()
        .filter_map(|p| icmp_echo_reply(l3(p)).map(<[u8]>::to_vec))
        .collect();
    let replayed: Vec<Vec<u8>> = r
        .output
        .iter()
        .filter_map(|(_, p)| icmp_echo_reply(p).map(<[u8]>::to_vec))
        .collect();
    assert_eq!(live.len(), 3);
    assert_eq!(replayed, live, "{}", r.summary);
}

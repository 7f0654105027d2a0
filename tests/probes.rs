//! The differential probe code (tests/probes/, scapy) against tunhost, for a few probes whose
//! answer is settled: so that `tests/probes/run.sh`, which makes the README's table, keeps
//! working. Needs root, `python3-scapy` and `nftables` (see .ci/run).

mod common;

use common::{Tunhost, in_netns, run};

/// Debian's python, where python3-scapy is installed.
const PYTHON: &str = "/usr/bin/python3";

/// Run the named probes from the kernel side of tun0 against a `tunhost serve` on it, as
/// tests/probes/run.sh does; returns (name, result) per probe, in order.
fn probe(names: &[&str]) -> Vec<(String, String)> {
    in_netns(|| {
        let args = [common::TUN_ARGS, &["--no-offload", "--echo", "7"]].concat();
        let args = [args, vec!["--udp-echo", "7", "--http", "80"]].concat();
        let _host = Tunhost::serve(&args);
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/probes/run.py");
        let only = names.join(",");
        let out = run(&[PYTHON, script, "probe", "--iface", "tun0", "--only", &only]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "run.py failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout.lines().map(name_and_result).collect()
    })
}

/// `{"name": "N", "title": "...", "result": "R"}` (run.py's output line) -> (N, R).
fn name_and_result(line: &str) -> (String, String) {
    let field = |key: &str| {
        let start = line.find(&format!("\"{key}\": \"")).expect(line) + key.len() + 5;
        let len = line[start..].find('"').expect(line);
        line[start..start + len].to_owned()
    };
    (field("name"), field("result"))
}

#[test]
fn probes_see_what_the_kernel_sees() {
    require_root!();
    let expected = [
        ("closed_port_syn", "RST"),
        ("out_of_window", "ACK; then alive"),
        ("good_udp", "echoed"),
        ("bad_tcp_checksum", "nothing"),
        ("bad_udp_checksum", "nothing"),
        ("ping", "echo reply"),
        ("bad_icmp_checksum", "nothing"),
    ];
    let names: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    let got = probe(&names);
    let want: Vec<(String, String)> = expected
        .iter()
        .map(|(n, r)| (n.to_string(), r.to_string()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn probes_refuse_a_namespace_with_other_interfaces() {
    require_root!();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/probes/run.py");
    let out = in_netns(|| {
        common::kernel_device("tun7", "tun", "192.0.2.1/24");
        common::kernel_device("tun8", "tun", "198.51.100.1/24");
        run(&[PYTHON, script, "probe", "--iface", "tun7"])
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("holds nothing but lo and tun7"), "{stderr}");
    assert!(out.stdout.is_empty());
}

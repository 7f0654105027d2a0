//! `--addr dhcp` (issue 16, item 3): on TAP the host takes its IPv4 address, prefix, gateway and
//! DNS servers from `dnsmasq` on the kernel side of the test's own device, renews the lease,
//! serves on the address it got, shows the lease on its status page, and the clients use the
//! DHCP-given DNS server.

mod common;
mod tools;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{Guard, TUNHOST, Tunhost, assert_echoes, in_netns, pattern, run, sh, tunhost};
use nix::sys::signal::Signal;
use tools::Scratch;

const MAC: &str = "02:00:00:00:00:42";
/// The host on tap0 with its MAC, its IPv4 address from DHCP.
const ON_TAP: &[&str] = &["--tap", "tap0", "--mac", MAC, "--addr", "dhcp"];

/// tap0 with the kernel side at 198.51.100.1/24, and dnsmasq handing out 198.51.100.50-60 for
/// 2 minutes with itself as router and DNS server (which knows name.example).
fn kernel_side_with_dhcp(dir: &Scratch) -> Guard {
    sh(&["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"]);
    sh(&["ip", "addr", "add", "198.51.100.1/24", "dev", "tap0"]);
    sh(&["ip", "link", "set", "tap0", "up"]);
    tools::dnsmasq(
        &[
            "--interface=tap0",
            "--listen-address=198.51.100.1",
            "--dhcp-range=198.51.100.50,198.51.100.60,255.255.255.0,2m",
            "--dhcp-option=option:router,198.51.100.1",
            "--dhcp-option=option:dns-server,198.51.100.1",
            "--address=/name.example/198.51.100.1",
            &format!("--dhcp-leasefile={}", dir.path("leases")),
            "--log-dhcp",
        ],
        &dir.path("dnsmasq.log"),
        &["%tap0:67"],
    )
}

/// Wait (15 s at most) for the host's "DHCP: ADDR/24 from ..." line; the address.
fn leased(h: &mut Tunhost) -> String {
    let start = Instant::now();
    loop {
        let line = h.drain_stderr().iter().find_map(|l| {
            l.split_once("DHCP: ")
                .map(|(_, rest)| rest.split('/').next().unwrap_or("").to_string())
        });
        if let Some(addr) = line {
            return addr;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no DHCP lease: {:?}",
            h.stderr
        );
    }
}

/// DHCPACKs dnsmasq logged for our MAC.
fn acks(dir: &Scratch) -> usize {
    let log = std::fs::read_to_string(dir.path("dnsmasq.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("DHCPACK(tap0)") && l.contains(MAC))
        .count()
}

#[test]
fn a_tap_host_takes_renews_and_shows_its_dhcp_lease() {
    require_root!();
    let dir = Scratch::new("dhcp");
    in_netns(|| {
        let _dnsmasq = kernel_side_with_dhcp(&dir);
        let mut h = Tunhost::serve(
            &[
                ON_TAP,
                &["--dhcp-max-lease", "4", "--echo", "7", "--http", "8080"],
            ]
            .concat(),
        );
        assert!(h.banner.starts_with("serving IPv4 by DHCP"), "{}", h.banner);
        let addr = leased(&mut h);
        let octets: Vec<u8> = addr.split('.').filter_map(|o| o.parse().ok()).collect();
        assert!(
            octets.len() == 4 && octets[..3] == [198, 51, 100] && (50..=60).contains(&octets[3]),
            "{addr} is not from the DHCP range"
        );
        // The services follow the address.
        assert_echoes((addr.as_str(), 7), 50_000, 2);
        let page = run(&[
            "curl",
            "-sS",
            "--max-time",
            "5",
            &format!("http://{addr}:8080/"),
        ]);
        let page = String::from_utf8_lossy(&page.stdout);
        assert!(page.contains(&format!("address      {addr}/24")), "{page}");
        assert!(
            page.contains(&format!(
                "DHCP lease   {addr}/24 from 198.51.100.1, gateway 198.51.100.1, DNS 198.51.100.1"
            )),
            "{page}"
        );
        // Renewed: a lease of at most 4 s is renewed after 2 s, and the host keeps serving.
        let first = acks(&dir);
        std::thread::sleep(Duration::from_secs(5));
        assert!(
            acks(&dir) >= first + 2,
            "no renewal: {} ACKs then {}",
            first,
            acks(&dir)
        );
        assert_echoes((addr.as_str(), 7), 50_000, 3);
        assert_eq!(h.signal(Signal::SIGINT).0.code(), Some(0));

        // A client takes a lease too, and the DNS server the lease names.
        let listener = TcpListener::bind("198.51.100.1:8000").unwrap();
        let body = pattern(20_000, 9);
        let sent = body.clone();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut b = [0u8; 4096];
            let _ = s.read(&mut b);
            write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                sent.len()
            )
            .unwrap();
            s.write_all(&sent).unwrap();
        });
        let out = run(&[&[TUNHOST, "get"], ON_TAP, &["http://name.example:8000/f"]].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == body, "body differs");
        server.join().unwrap();

        // DHCP needs Ethernet: on TUN it is a usage error.
        let (code, err) = tunhost(&["serve", "--tun", "tun7", "--addr", "dhcp"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("--addr dhcp needs a TAP device"), "{err}");
    });
}

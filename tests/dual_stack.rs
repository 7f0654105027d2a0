//! Dual stack on the kernel side (issue 16, item 2): with no address flag the host has an IPv4 and
//! an IPv6 address and the kernel side of the device gets its partner of each, so `ping -6` and
//! IPv6 sockets work with no `ip addr add` by hand; `--peer` is given once per family.

mod common;

use common::{Tunhost, assert_echoes, family, in_netns, ping_ok, run, tunhost};

/// `ping` (`-6` for IPv6) to `addr` gets replies (two requests; the first IPv6 one can be lost
/// while the kernel side's neighbour entry settles under load, a known flake).
fn pings(addr: &str) {
    ping_ok(&[family(addr), "-c", "2", "-i", "0.2", "-W", "2", addr]);
}

/// The kernel's addresses on `dev` (`ip -br addr show dev DEV`).
fn kernel_addrs(dev: &str) -> String {
    String::from_utf8_lossy(&run(&["ip", "-br", "addr", "show", "dev", dev]).stdout).into_owned()
}

#[test]
fn no_address_flag_is_dual_stack_on_both_sides() {
    require_root!();
    in_netns(|| {
        let mut h = Tunhost::serve(&["--echo", "7"]);
        assert!(
            h.banner
                .starts_with("serving 192.0.2.2/24, 2001:db8::2/64 on tun tunhost0"),
            "{}",
            h.banner
        );
        assert!(
            h.banner.contains("kernel side 192.0.2.1, 2001:db8::1)"),
            "{}",
            h.banner
        );
        let kernel = kernel_addrs("tunhost0");
        assert!(
            kernel.contains("192.0.2.1/24") && kernel.contains("2001:db8::1/64"),
            "{kernel}"
        );
        pings("192.0.2.2");
        pings("2001:db8::2");
        assert_echoes(("192.0.2.2", 7), 50_000, 1);
        assert_echoes(("2001:db8::2", 7), 50_000, 2);
        assert_eq!(h.signal(nix::sys::signal::Signal::SIGINT).0.code(), Some(0));
    });
}

#[test]
fn two_addresses_get_a_kernel_side_each_on_tun_and_tap() {
    require_root!();
    in_netns(|| {
        // TUN: --addr of both families, no --peer: a kernel side for each.
        let h = Tunhost::serve(&[
            "--addr",
            "198.51.100.2/24",
            "--addr",
            "2001:db8:1::2/64",
            "--echo",
            "7",
        ]);
        assert!(
            h.banner
                .contains("kernel side 198.51.100.1, 2001:db8:1::1)"),
            "{}",
            h.banner
        );
        pings("2001:db8:1::2");
        assert_echoes(("2001:db8:1::2", 7), 20_000, 3);
        drop(h);
        // TAP: a --peer per family; the kernel finds the host by ARP and by neighbour discovery.
        let _h = Tunhost::serve(&[
            "--tap",
            "tap0",
            "--peer",
            "203.0.113.1/24",
            "--peer",
            "2001:db8:2::1/64",
            "--echo",
            "7",
        ]);
        pings("203.0.113.2");
        pings("2001:db8:2::2");
        assert_echoes(("2001:db8:2::2", 7), 20_000, 4);
    });
}

#[test]
fn a_second_peer_of_one_family_is_refused_before_the_device_is_made() {
    require_root!();
    in_netns(|| {
        let (code, err) = tunhost(&[
            "serve",
            "--peer",
            "192.0.2.1/24",
            "--peer",
            "198.51.100.1/24",
        ]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("one kernel-side address per family (IPv4)"),
            "{err}"
        );
        assert!(!run(&["ip", "link", "show", "tunhost0"]).status.success());
    });
}

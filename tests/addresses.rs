//! Addresses the machine already uses: each test has its own network namespace in which one end
//! of a veth pair, `vethA`, holds 192.0.2.2/24 (as the machine of issue 11 has its `eth0`),
//! and checks that `tunhost` keeps away from it, from its subnet and from routes through it.

mod common;

use common::{Tunhost, in_netns, kernel_device, run, sh};
use nix::sys::signal::Signal;

/// A veth pair in this namespace, `vethA` holding 192.0.2.2/24, both ends up.
fn veth_with_the_default_subnet() {
    sh(&[
        "ip", "link", "add", "vethA", "type", "veth", "peer", "name", "vethB",
    ]);
    sh(&["ip", "addr", "add", "192.0.2.2/24", "dev", "vethA"]);
    sh(&["ip", "link", "set", "vethA", "up"]);
    sh(&["ip", "link", "set", "vethB", "up"]);
}

/// `tunhost ARGS` must be refused, within 10 s, with exit 2 and one line on stderr that says
/// `want`: that line. A run that is not refused (it serves) is stopped by timeout(1) after 10 s
/// (SIGTERM, then SIGKILL 2 s later; exit 124) and fails the test.
fn refused(args: &[&str], want: &[&str]) -> String {
    let out = run(&[&["timeout", "-k", "2", "10", common::TUNHOST], args].concat());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out.status.code().unwrap_or(-1);
    assert_eq!(
        code, 2,
        "tunhost {args:?}: exit {code} (124: not refused, stopped after 10 s), stderr:\n{err}"
    );
    assert_eq!(
        err.lines().count(),
        1,
        "tunhost {args:?}: not one line:\n{err}"
    );
    for w in want {
        assert!(
            err.contains(w),
            "tunhost {args:?}: stderr lacks {w:?}:\n{err}"
        );
    }
    assert!(
        !err.contains("panicked") && !err.contains("os error"),
        "{err}"
    );
    err
}

/// No tunhost device was left in the namespace.
fn no_device_made() {
    let links = sh(&["ip", "-br", "link"]);
    assert!(
        !links.contains("tunhost0"),
        "a refused run made a device:\n{links}"
    );
}

#[test]
fn plain_serve_takes_the_first_free_range_and_says_so() {
    require_root!();
    in_netns(|| {
        veth_with_the_default_subnet();
        let mut h = Tunhost::serve(&["--echo", "7"]);
        assert!(
            h.banner
                .starts_with("serving 198.51.100.2/24, 2001:db8::2/64 on tun tunhost0"),
            "{}",
            h.banner
        );
        assert!(
            h.banner.contains("kernel side 198.51.100.1, 2001:db8::1;"),
            "{}",
            h.banner
        );
        assert!(
            h.banner.contains("192.0.2.0/24 is in use on vethA"),
            "{}",
            h.banner
        );
        // Answered by the userspace host, not by the kernel: the kernel side is .1, and vethA's
        // own address stays where it was.
        let out = run(&["ping", "-c", "2", "-i", "0.2", "-W", "2", "198.51.100.2"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "ping 198.51.100.2:\n{text}");
        let tun = sh(&["ip", "-br", "addr", "show", "dev", "tunhost0"]);
        assert!(tun.contains("198.51.100.1/24"), "{tun}");
        assert!(!tun.contains("192.0.2."), "{tun}");
        let (status, _) = h.signal(Signal::SIGINT);
        assert!(status.success());
    });
}

#[test]
fn an_address_of_another_interface_is_refused() {
    require_root!();
    in_netns(|| {
        veth_with_the_default_subnet();
        refused(
            &["serve", "--addr", "192.0.2.2/24"],
            &["--addr 192.0.2.2/24", "vethA", "--addr 198.51.100.2/24"],
        );
        // In that subnet but not that address: the subnet is taken.
        refused(&["serve", "--addr", "192.0.2.9/24"], &["vethA"]);
        // The kernel side too, on a device tunhost creates and on one that exists.
        refused(
            &["serve", "--tun", "tun0", "--peer", "192.0.2.2/24"],
            &["--peer 192.0.2.2/24", "vethA"],
        );
        refused(
            &["ping", "--peer", "192.0.2.1/24", "-c", "1", "192.0.2.1"],
            &["--peer 192.0.2.1/24", "vethA"],
        );
        no_device_made();
    });
}

#[test]
fn a_route_through_another_interface_is_refused() {
    require_root!();
    in_netns(|| {
        veth_with_the_default_subnet();
        sh(&["ip", "route", "add", "203.0.113.0/24", "dev", "vethA"]);
        refused(
            &[
                "serve",
                "--addr",
                "203.0.113.2/24",
                "--peer",
                "203.0.113.1/24",
            ],
            &["203.0.113.0/24", "route", "vethA", "--addr 198.51.100.2/24"],
        );
        // A narrower subnet inside the routed one overlaps it as well.
        refused(
            &["get", "--addr", "203.0.113.130/25", "http://203.0.113.129/"],
            &["vethA"],
        );
        no_device_made();
    });
}

#[test]
fn all_default_ranges_taken_is_a_clear_error() {
    require_root!();
    in_netns(|| {
        veth_with_the_default_subnet();
        sh(&["ip", "route", "add", "198.51.100.0/24", "dev", "vethA"]);
        sh(&["ip", "route", "add", "203.0.113.0/24", "dev", "vethB"]);
        refused(
            &["serve"],
            &[
                "192.0.2.0/24 is in use on vethA",
                "198.51.100.0/24 on vethA",
                "203.0.113.0/24 on vethB",
                "--addr",
            ],
        );
        no_device_made();
        // A subnet nobody uses still works.
        let h = Tunhost::serve(&["--addr", "198.18.0.2/24", "--echo", "7"]);
        assert!(h.banner.contains("kernel side 198.18.0.1"), "{}", h.banner);
    });
}

#[test]
fn an_existing_device_may_hold_its_own_addresses() {
    require_root!();
    in_netns(|| {
        veth_with_the_default_subnet();
        kernel_device("tun9", "tun", "203.0.113.1/24");
        // Its own address and subnet are no conflict, and with no address flag the host joins
        // that subnet.
        let mut h = Tunhost::serve(&["--tun", "tun9", "--echo", "7"]);
        assert!(
            h.banner.starts_with("serving 203.0.113.2/24 on tun tun9"),
            "{}",
            h.banner
        );
        let out = run(&["ping", "-c", "1", "-W", "2", "203.0.113.2"]);
        assert!(out.status.success(), "ping 203.0.113.2");
        let (status, _) = h.signal(Signal::SIGINT);
        assert!(status.success());
        // The kernel side's own address is not one the host can take; another interface's still
        // is refused on this device.
        refused(
            &["serve", "--tun", "tun9", "--addr", "203.0.113.1/24"],
            &["kernel side's address on tun9"],
        );
        refused(
            &["serve", "--tun", "tun9", "--addr", "192.0.2.2/24"],
            &["vethA"],
        );
        sh(&["ip", "tuntap", "del", "dev", "tun9", "mode", "tun"]);
    });
}

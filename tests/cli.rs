//! Bad input gets one clear line naming what is wrong, and exit code 2 (usage) or 1 (the run
//! failed); never a panic or a bare `os error`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};

use common::{TUNHOST, Tunhost, in_netns, sh, tunhost};

/// Check exit code, that stderr is one line, that it names `needle`, and is no panic.
fn one_line_error(args: &[&str], code: i32, needle: &str) -> String {
    let (got, err) = tunhost(args);
    check(args, got, &err, code, needle);
    err
}

fn check(args: &[&str], got: i32, err: &str, code: i32, needle: &str) {
    assert_eq!(got, code, "tunhost {args:?}: exit code; stderr:\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "tunhost {args:?}: want one line, got:\n{err}"
    );
    assert!(
        err.contains(needle),
        "tunhost {args:?}: {needle:?} not in: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("os error"), "bare os error: {err}");
}

/// [`check`] a run's output; its stderr.
fn check_output(what: &str, out: &Output, code: i32, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    check(&[what], out.status.code().unwrap_or(-1), &err, code, needle);
    err
}

#[test]
fn invalid_cidr() {
    let err = one_line_error(&["serve", "--addr", "300.1.2.3/24"], 2, "300.1.2.3/24");
    assert!(err.contains("--addr"), "{err}");
    one_line_error(&["serve", "--peer", "192.0.2.1"], 2, "192.0.2.1");
}

#[test]
fn bad_mac() {
    one_line_error(
        &["serve", "--tap", "tap0", "--mac", "zz:00:00:00:00:01"],
        2,
        "zz:00",
    );
    // A multicast MAC cannot be a host's address.
    one_line_error(
        &["serve", "--tap", "tap0", "--mac", "01:00:00:00:00:01"],
        2,
        "unicast",
    );
}

#[test]
fn mtu_out_of_range() {
    one_line_error(&["serve", "--tun", "tun0", "--mtu", "67"], 2, "68..=65535");
    one_line_error(&["serve", "--tun", "tun0", "--mtu", "65536"], 2, "65536");
    one_line_error(
        &["serve", "--tap", "tap0", "--mtu", "65530"],
        2,
        "68..=65521",
    );
}

#[test]
fn device_name_too_long() {
    one_line_error(
        &["serve", "--tun", "a-name-longer-than-15"],
        2,
        "longer than 15 bytes",
    );
}

#[test]
fn tun_and_tap_together() {
    one_line_error(&["serve", "--tun", "a", "--tap", "b"], 2, "--tap");
}

#[test]
fn help_teaches() {
    let out = Command::new(TUNHOST)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--tun",
        "--tap",
        "--addr",
        "--peer",
        "--gateway",
        "--mac",
        "--mtu",
        "--backlog",
        "--echo",
        "--udp-echo",
        "--discard",
        "--chargen",
        "--verbose",
        "--quiet",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(
        help.contains("CAP_NET_ADMIN"),
        "--help does not say what privileges it needs"
    );
    assert!(help.contains("e.g."), "--help has no examples");
}

#[test]
fn no_permission() {
    require_root!();
    // Run as nobody from a copy of the binary nobody can execute.
    let dir = tempfile::Builder::new()
        .prefix("tunhost-eperm-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("tunhost");
    std::fs::copy(TUNHOST, &bin).unwrap();
    let out = in_netns(move || {
        Command::new(&bin)
            .args(["serve", "--tun", "tun0"])
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    });
    drop(dir);
    let err = check_output("serve (as nobody)", &out, 1, "CAP_NET_ADMIN");
    assert!(err.contains("tun0"), "{err}");
}

#[test]
fn device_busy() {
    require_root!();
    in_netns(|| {
        let _first = Tunhost::serve(&["--tun", "tun0", "--addr", "192.0.2.2/24"]);
        // tunhost creates non-persistent devices; a second process cannot attach to one in use.
        let dir = tempfile::tempdir().unwrap();
        let trace = dir.path().join("busy.pcapng");
        let t = trace.to_str().unwrap();
        let (code, err) = tunhost(&[
            "serve",
            "--tun",
            "tun0",
            "--addr",
            "192.0.2.3/24",
            "--pcap",
            t,
        ]);
        check(&["serve (busy)"], code, &err, 1, "tun0");
        assert!(err.contains("busy"), "{err}");
        // The trace file made for the run that could not start is not left behind.
        assert!(!trace.exists(), "{} left behind", trace.display());
    });
}

#[test]
fn device_of_the_wrong_kind() {
    require_root!();
    in_netns(|| {
        sh(&["ip", "tuntap", "add", "dev", "tapx", "mode", "tap"]);
        let (code, err) = tunhost(&["serve", "--tun", "tapx"]);
        sh(&["ip", "tuntap", "del", "dev", "tapx", "mode", "tap"]);
        check(&["serve --tun on a tap"], code, &err, 1, "tapx");
        assert!(
            err.contains("--tap tapx"),
            "the error should say what to do: {err}"
        );
    });
}

#[test]
fn tun_device_node_missing() {
    require_root!();
    // A private mount namespace with an empty /dev/net: as in a container without the device.
    let out = in_netns(|| {
        let mut cmd = Command::new(TUNHOST);
        cmd.args(["serve", "--tun", "tun0"]).stdin(Stdio::null());
        // SAFETY: only async-signal-safe system calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                use nix::mount::{MsFlags, mount};
                common::private_mounts()?;
                mount(
                    Some("tmpfs"),
                    "/dev/net",
                    Some("tmpfs"),
                    MsFlags::empty(),
                    None::<&str>,
                )?;
                Ok(())
            });
        }
        cmd.output().unwrap()
    });
    let err = check_output("serve without /dev/net/tun", &out, 1, "/dev/net/tun");
    assert!(err.contains("modprobe tun"), "{err}");
}

#[test]
fn missing_files_are_named() {
    one_line_error(
        &["replay", "/nonexistent/in.pcap", "--addr", "192.0.2.2/24"],
        1,
        "/nonexistent/in.pcap: No such file or directory",
    );
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    one_line_error(
        &["replay", readme, "--addr", "192.0.2.2/24"],
        1,
        "not a pcap or pcapng",
    );
    // The trace file is created before any device is touched: no privileges needed to see this.
    one_line_error(
        &["serve", "--pcap", "/nonexistent/dir/t.pcapng"],
        1,
        "/nonexistent/dir/t.pcapng",
    );
}

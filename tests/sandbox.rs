//! Least privilege, against the real kernel: who `tunhost` is once it serves, what the seccomp
//! filter lets through, and a user with no privilege at all attaching to a device made for them.

mod common;
mod tools;

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{HOST, TUN_ARGS, TUNHOST, Tunhost, assert_echoes, in_netns, run, tunhost};
use nix::sys::signal::Signal;
use tools::Scratch;
use tunhost::sandbox::Status;

/// `/proc/PID/status` of a running process, parsed.
fn status_of(pid: nix::unistd::Pid) -> Status {
    Status::parse(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status"),
    )
}

/// A web root readable by anyone (as a web root is), with `a.txt`, a file of mode 000 and one
/// only root may read.
fn web_root(dir: &Scratch) -> String {
    let www = dir.0.join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("a.txt"), b"for everyone\n").unwrap();
    for (name, mode) in [("none.txt", 0o000), ("root_only.txt", 0o600)] {
        let p = www.join(name);
        std::fs::write(&p, b"not for the host\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    www.to_string_lossy().into_owned()
}

/// GET `path` on port 8080 of the host; the status code and the body.
fn get(path: &str) -> (u16, String) {
    let mut s = TcpStream::connect((HOST, 8080)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::io::Write::write_all(
        &mut s,
        format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the response");
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (code, body)
}

#[test]
fn serving_as_nobody_with_no_capability_and_the_filter_on() {
    require_root!();
    let dir = Scratch::new("sandbox-nobody");
    let root = web_root(&dir);
    in_netns(|| {
        let mut args = TUN_ARGS.to_vec();
        args.extend_from_slice(&["--http", "8080", "--root", &root, "--echo", "7"]);
        let mut h = Tunhost::serve(&args);
        assert!(
            h.banner
                .ends_with("running as nobody:nogroup, no capabilities, seccomp on"),
            "{}",
            h.banner
        );
        let st = status_of(h.pid());
        assert_eq!(st.uid, [65534; 4], "Uid");
        assert_eq!(st.gid, [65534; 4], "Gid");
        assert_eq!(st.cap_eff, "0000000000000000");
        assert!(st.no_new_privs);
        assert_eq!(st.seccomp, 2, "seccomp filter mode");

        // It serves: files, echo, ping; what the dropped user cannot read is 403, never its
        // bytes (root would have read both).
        assert_eq!(get("/a.txt"), (200, "for everyone\n".to_string()));
        assert_eq!(get("/none.txt").0, 403);
        assert_eq!(get("/root_only.txt").0, 403);
        let (code, listing) = get("/");
        assert_eq!(code, 200);
        assert!(listing.contains("a.txt"), "{listing}");
        assert_echoes((HOST, 7), 100_000, 3);
        let ping = run(&["ping", "-c", "1", "-W", "2", HOST]);
        assert!(ping.status.success(), "ping: {ping:?}");

        // Ctrl-C still ends it cleanly under the filter.
        let (status, _) = h.signal(Signal::SIGINT);
        assert_eq!(status.code(), Some(0), "{:?}", h.stderr);
    });
}

#[test]
fn no_sandbox_keeps_root_and_says_so() {
    require_root!();
    in_netns(|| {
        let mut args = TUN_ARGS.to_vec();
        args.extend_from_slice(&["--echo", "7", "--no-sandbox"]);
        let mut h = Tunhost::serve(&args);
        assert!(
            h.banner.contains("sandbox off (--no-sandbox)"),
            "{}",
            h.banner
        );
        let st = status_of(h.pid());
        assert_eq!(st.uid, [0; 4]);
        assert_eq!(st.seccomp, 0);
        assert_echoes((HOST, 7), 1000, 1);
        assert_eq!(h.signal(Signal::SIGINT).0.code(), Some(0));
    });
}

#[test]
fn user_root_keeps_uid_0_without_capabilities_and_warns() {
    require_root!();
    in_netns(|| {
        let mut args = TUN_ARGS.to_vec();
        args.extend_from_slice(&["--echo", "7", "--user", "root"]);
        let mut h = Tunhost::serve(&args);
        assert!(
            h.stderr
                .iter()
                .any(|l| l.contains("--user root: the host keeps uid 0")),
            "{:?}",
            h.stderr
        );
        let st = status_of(h.pid());
        assert_eq!(st.uid, [0; 4]);
        assert_eq!(st.cap_eff, "0000000000000000");
        assert_eq!(st.seccomp, 2);
        assert_echoes((HOST, 7), 1000, 1);
        assert_eq!(h.signal(Signal::SIGINT).0.code(), Some(0));
    });
}

#[test]
fn a_system_call_outside_the_list_kills_the_process() {
    require_root!();
    in_netns(|| {
        let mut args = TUN_ARGS.to_vec();
        args.extend_from_slice(&["--echo", "7", "--sandbox-selftest"]);
        let mut h = Tunhost::serve(&args);
        let (status, _) = h.wait_exit("the selftest's socket(2)");
        assert_eq!(
            status.signal(),
            Some(libc::SIGSYS),
            "killed by SIGSYS: {status:?} {:?}",
            h.stderr
        );
        assert!(
            !h.stderr
                .iter()
                .any(|l| l.contains("the filter did not bite")),
            "{:?}",
            h.stderr
        );
        // One line says what happened (socket(2) is call 41 on x86_64).
        let said = format!(
            "tunhost: error: the sandbox stopped system call {}, which is not on its list",
            libc::SYS_socket
        );
        assert!(
            h.stderr.iter().any(|l| l.starts_with(&said)),
            "{:?}",
            h.stderr
        );
    });
}

#[test]
fn an_unknown_user_is_one_line_and_exit_2_before_the_device_is_touched() {
    require_root!();
    in_netns(|| {
        for (flags, msg) in [
            (&["--user", "nosuchuser"][..], "no such user: nosuchuser"),
            (
                &["--group", "nosuchgroup"][..],
                "no such group: nosuchgroup",
            ),
        ] {
            let mut args = vec!["serve", "--tun", "tunsb0", "--addr", "198.51.100.2/24"];
            args.extend_from_slice(flags);
            let (code, err) = tunhost(&args);
            assert_eq!(code, 2, "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains(msg), "{err}");
            let link = run(&["ip", "link", "show", "tunsb0"]);
            assert!(!link.status.success(), "the device was made: {link:?}");
        }
        let (code, err) = tunhost(&["serve", "--no-sandbox", "--user", "nobody"]);
        assert_eq!(code, 2, "{err}");
    });
}

/// A node for `/dev/net/tun` of mode 0666 in `dir` (as most distributions ship it; this
/// machine's own node is not touched).
fn open_tun_node(dir: &Scratch) -> std::path::PathBuf {
    let node = dir.0.join("tun");
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(10, 200),
    )
    .expect("mknod a tun node");
    std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o666)).unwrap();
    node
}

/// `tunhost ARGS` as uid/gid 65534 with no capability and no supplementary group, in a mount
/// namespace of its own where `/dev/net/tun` is `node`.
fn as_nobody(node: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(TUNHOST);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null());
    let node = node.to_path_buf();
    // SAFETY: only system calls between fork and exec, no allocation.
    unsafe {
        cmd.pre_exec(move || {
            use nix::mount::{MsFlags, mount};
            use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
            common::private_mounts()?;
            mount(
                Some(&node),
                "/dev/net/tun",
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            let (g, u) = (Gid::from_raw(65534), Uid::from_raw(65534));
            setgroups(&[])?;
            setresgid(g, g, g)?;
            setresuid(u, u, u)?;
            Ok(())
        });
    }
    cmd
}

#[test]
fn a_user_without_privilege_attaches_to_a_device_made_for_them() {
    require_root!();
    let dir = Scratch::new("sandbox-unprivileged");
    in_netns(|| {
        // Root makes the device for user nobody and configures its kernel side, once.
        common::sh(&[
            "ip", "tuntap", "add", "dev", "tun9", "mode", "tun", "user", "nobody",
        ]);
        common::sh(&["ip", "addr", "add", "203.0.113.1/24", "dev", "tun9"]);
        common::sh(&["ip", "link", "set", "tun9", "up"]);
        let node = open_tun_node(&dir);
        let mut h = Tunhost::from_command(
            as_nobody(
                &node,
                &[
                    "serve",
                    "--tun",
                    "tun9",
                    "--addr",
                    "203.0.113.2/24",
                    "--echo",
                    "7",
                ],
            ),
            "serving ",
        );
        assert!(
            h.banner.contains("running as nobody, no capabilities"),
            "{}",
            h.banner
        );
        let st = status_of(h.pid());
        assert_eq!(st.uid, [65534; 4]);
        assert_eq!(st.cap_eff, "0000000000000000");
        assert_eq!(st.seccomp, 2);
        assert_echoes(("203.0.113.2", 7), 100_000, 9);
        assert_eq!(h.signal(Signal::SIGINT).0.code(), Some(0), "{:?}", h.stderr);

        // A device that is not theirs, or a new one: refused, one line naming it, exit 1.
        common::sh(&["ip", "tuntap", "add", "dev", "tun8", "mode", "tun"]);
        for dev in ["tun8", "tun7"] {
            let out = as_nobody(&node, &["serve", "--tun", dev, "--addr", "198.51.100.2/24"])
                .stderr(Stdio::piped())
                .output()
                .expect("run tunhost");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert!(err.contains(dev) && err.lines().count() == 1, "{err}");
        }
    });
}

#[test]
fn replay_parses_captures_under_the_filter_without_capabilities() {
    // Replay needs no privilege and keeps its user; it still drops capabilities and installs the
    // filter before it reads a packet: the selftest's socket(2) kills it.
    let capture = format!("{}/captures/ping-tcpdump.pcap", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(TUNHOST)
        .args([
            "replay",
            &capture,
            "--addr",
            "192.0.2.2/24",
            "--sandbox-selftest",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run tunhost replay");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{err}");
    assert!(err.contains("the sandbox stopped system call"), "{err}");
    // Without the hook it replays, sandboxed, as before.
    let (code, err) = tunhost(&["replay", &capture, "--addr", "192.0.2.2/24"]);
    assert_eq!(code, 0, "{err}");
}

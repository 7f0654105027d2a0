//! The benchmark's smoke mode: a seconds-long run that checks only that every row of
//! `tunhost-bench` produced a number (timings belong to the benchmark, never to tests).
//!
//! It runs the `tunhost` binary of the same workspace build (`cargo test` at the root builds
//! both); as non-root it skips loudly, and with `CI=true` it fails instead.

use std::path::PathBuf;
use std::process::Command;

const BENCH: &str = env!("CARGO_BIN_EXE_tunhost-bench");

/// `tunhost`, next to `tunhost-bench` in the workspace's target directory.
fn tunhost() -> PathBuf {
    let path = PathBuf::from(BENCH).with_file_name("tunhost");
    assert!(
        path.exists(),
        "{} is missing: build the workspace (`cargo build`, or `cargo test` at the root), \
         not only this package",
        path.display()
    );
    path
}

#[test]
fn bench_smoke_every_row_has_a_number() {
    if !nix::unistd::geteuid().is_root() {
        let why = "needs root for TUN devices and network namespaces";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the benchmark smoke test {why} and CI=true: failing, not skipping");
        }
        eprintln!("\n*** SKIPPED the benchmark smoke test: {why} (sudo -E cargo test) ***\n");
        return;
    }
    let out = Command::new(BENCH)
        .arg("--smoke")
        .arg("--tunhost")
        .arg(tunhost())
        .output()
        .expect("run tunhost-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("smoke: every row produced a number"),
        "tunhost-bench --smoke failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

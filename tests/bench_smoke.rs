//! The benchmark's smoke mode: a seconds-long run that checks only that every row of
//! `tunhost-bench` produced a number (timings belong to the benchmark, never to tests).

mod common;

use std::process::Command;

#[test]
fn bench_smoke_every_row_has_a_number() {
    require_root!();
    let out = Command::new(env!("CARGO_BIN_EXE_tunhost-bench"))
        .args(["--smoke", "--tunhost", common::TUNHOST])
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

//! `tunhost-bench --badlink`: bulk TCP both ways over a bad link (`--delay 10`: 20 ms round
//! trip, `--drop P` both ways) for each congestion control, beside the Mathis et al. model
//! (MSS · 1.22 / (RTT · √p)), the throughput a Reno-like sender reaches at loss rate p.
//!
//! Host → kernel is the host's TCP sending (chargen): `--congestion` is what is measured.
//! Kernel → host is Linux sending (to discard): the host only receives and acknowledges.

use std::net::Ipv4Addr;
use std::process::{Child, Command};

use super::{Res, client, serve_child};

/// The device and addresses of the bad-link server (a benchmark range, RFC 2544).
const DEV: &str = "thb-b";
const HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 4, 2);
const ALGORITHMS: [&str; 3] = ["cubic", "reno", "none"];
const LOSSES: [f64; 3] = [0.0, 0.001, 0.01];
/// One-way delay each way, ms.
const DELAY_MS: f64 = 10.0;
/// The host's MSS on a 1500-byte MTU with TCP timestamps (1500 - 20 - 20 - 12).
const MSS: f64 = 1448.0;

/// `tunhost serve` on a bad link, killed on drop.
struct BadLink(Child);

impl Drop for BadLink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(tunhost: &std::path::Path, congestion: &str, loss: f64) -> Res<BadLink> {
    let mut cmd = Command::new(tunhost);
    cmd.args(["serve", "--tun", DEV, "--addr", "198.18.4.2/24"])
        .args([
            "--peer",
            "198.18.4.1/24",
            "--discard",
            "9",
            "--chargen",
            "19",
        ])
        .args(["--delay", &DELAY_MS.to_string(), "--seed", "1"])
        .args(["--drop", &loss.to_string(), "--congestion", congestion]);
    Ok(BadLink(serve_child(cmd)?))
}

/// The model's throughput in Mbit/s at loss `p` (none without loss).
fn model(p: f64) -> Option<f64> {
    let rtt = 2.0 * DELAY_MS / 1000.0;
    (p > 0.0).then(|| MSS * 8.0 * 1.22 / (rtt * p.sqrt()) / 1e6)
}

/// The median of the samples (Mbit/s), or `None` if none worked.
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Measure every row, print the table; false if a row produced no number.
pub(super) fn run(tunhost: &std::path::Path, reps: usize, secs: f64) -> Res<bool> {
    println!(
        "\nbulk TCP over a bad link: 20 ms RTT (--delay 10), --drop P both ways, {reps} rep(s) × {secs} s, Mbit/s (median)\n"
    );
    println!(
        "| loss | model (Mathis, MSS {MSS}) | {} |",
        ALGORITHMS
            .iter()
            .flat_map(|a| [format!("{a} host→kernel"), format!("{a} kernel→host")])
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---|{}", "---|".repeat(2 * ALGORITHMS.len()));
    let mut ok = true;
    for loss in LOSSES {
        let mut cells = Vec::new();
        for cc in ALGORITHMS {
            let server = start(tunhost, cc, loss)?;
            let (mut out, mut inn) = (Vec::new(), Vec::new());
            for _ in 0..reps {
                match client::bulk_out(HOST, secs) {
                    Ok(g) => out.push(g * 1000.0),
                    Err(e) => eprintln!("warning: {cc} loss {loss} host→kernel failed: {e}"),
                }
                match client::bulk_in(HOST, secs) {
                    Ok(g) => inn.push(g * 1000.0),
                    Err(e) => eprintln!("warning: {cc} loss {loss} kernel→host failed: {e}"),
                }
            }
            drop(server);
            for v in [median(out), median(inn)] {
                ok &= v.is_some();
                cells.push(v.map_or("—".to_string(), |m| format!("{m:.1}")));
            }
            eprintln!("  done: {cc} at loss {loss}");
        }
        let m = model(loss).map_or("—".to_string(), |m| format!("{m:.1}"));
        println!("| {}% | {m} | {} |", loss * 100.0, cells.join(" | "));
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_at_1_percent_and_20_ms() {
        // 1448 B × 8 × 1.22 / (0.02 s × 0.1) = 7.07 Mbit/s.
        let m = model(0.01).unwrap();
        assert!((m - 7.066).abs() < 0.01, "{m}");
        assert_eq!(model(0.0), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![]), None);
    }
}

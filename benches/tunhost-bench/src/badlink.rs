//! `tunhost-bench --badlink`: bulk TCP over a bad link, each sender probed the same way.
//!
//! Two links, both 20 ms round trip (`--delay 10`) with `--drop P` both ways:
//! - **the lossy link**, as fast as the device: only random loss. Beside the Mathis et al.
//!   model (MSS · 1.22 / (RTT · √p)), the throughput a Reno-like sender reaches at loss rate p;
//! - **the bottleneck**: the same, through a 20 Mbit/s link each way with a 50-packet buffer
//!   (`--rate 20:50`; its bandwidth-delay product is 34 packets), with the median round trip of
//!   pings sent meanwhile: the queue a sender builds is what everybody else on the link waits in.
//!
//! Senders: the host's TCP (reading chargen: host → kernel) under each `--congestion`, and
//! Linux's (writing to discard: kernel → host, the host only acknowledging) under the
//! congestion controls this kernel has, chosen per connection (`TCP_CONGESTION`), whatever the
//! machine's default.

use std::net::Ipv4Addr;
use std::process::{Child, Command};

use super::{Res, client, serve_child};

/// The device and addresses of the bad-link server (a benchmark range, RFC 2544).
const DEV: &str = "thb-b";
const HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 4, 2);
/// The host's congestion controls, and Linux's (set per socket).
const HOST_CC: [&str; 3] = ["cubic", "reno", "none"];
const LINUX_CC: [&str; 3] = ["cubic", "reno", "bbr"];
const LOSSES: [f64; 3] = [0.0, 0.001, 0.01];
/// One-way delay each way, ms.
const DELAY_MS: f64 = 10.0;
/// The bottleneck: Mbit/s and buffer (packets) each way.
const BOTTLENECK: &str = "20:50";
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

fn start(
    tunhost: &std::path::Path,
    congestion: &str,
    loss: f64,
    rate: Option<&str>,
) -> Res<BadLink> {
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
    if let Some(r) = rate {
        cmd.args(["--rate", r]);
    }
    Ok(BadLink(serve_child(cmd)?))
}

/// The model's throughput in Mbit/s at loss `p` (none without loss).
fn model(p: f64) -> Option<f64> {
    let rtt = 2.0 * DELAY_MS / 1000.0;
    (p > 0.0).then(|| MSS * 8.0 * 1.22 / (rtt * p.sqrt()) / 1e6)
}

/// The median of the samples, or `None` if none worked.
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Who sends: the host under its `--congestion`, or Linux under a congestion control of its own.
#[derive(Clone, Copy)]
enum Sender {
    Host(&'static str),
    Linux(&'static str),
}

impl Sender {
    fn all() -> impl Iterator<Item = Sender> {
        HOST_CC
            .into_iter()
            .map(Sender::Host)
            .chain(LINUX_CC.into_iter().map(Sender::Linux))
    }

    fn label(self) -> String {
        match self {
            Sender::Host(cc) => format!("host {cc}"),
            Sender::Linux(cc) => format!("Linux {cc}"),
        }
    }

    /// One bulk transfer of `secs`, Mbit/s.
    fn bulk(self, secs: f64) -> std::io::Result<f64> {
        let gbit = match self {
            Sender::Host(_) => client::bulk_out(HOST, secs)?,
            Sender::Linux(cc) => client::bulk_in_with(HOST, secs, Some(cc))?,
        };
        Ok(gbit * 1000.0)
    }

    /// The host's congestion control for this sender's server (Linux's transfers do not
    /// depend on it: the host only acknowledges).
    fn host_cc(self) -> &'static str {
        match self {
            Sender::Host(cc) => cc,
            Sender::Linux(_) => "cubic",
        }
    }
}

/// One sender on one link, `reps` times: the median Mbit/s and, with `ping`, the median round
/// trip (ms) of the pings sent during the transfers.
fn measure(
    tunhost: &std::path::Path,
    sender: Sender,
    loss: f64,
    rate: Option<&str>,
    (reps, secs): (usize, f64),
) -> Res<(Option<f64>, Option<f64>)> {
    let server = start(tunhost, sender.host_cc(), loss, rate)?;
    let (mut rates, mut rtts) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let pinger = rate
            .is_some()
            .then(|| std::thread::spawn(move || client::icmp_rtts(HOST, secs, true)));
        match sender.bulk(secs) {
            Ok(m) => rates.push(m),
            Err(e) => eprintln!("warning: {} at loss {loss} failed: {e}", sender.label()),
        }
        if let Some(p) = pinger {
            match p.join() {
                Ok(Ok(v)) => rtts.extend(v.into_iter().map(|us| us / 1000.0)),
                Ok(Err(e)) => eprintln!("warning: pings beside {} failed: {e}", sender.label()),
                Err(_) => eprintln!("warning: the pinger panicked"),
            }
        }
    }
    drop(server);
    eprintln!(
        "  done: {} at loss {loss}{}",
        sender.label(),
        rate.map_or(String::new(), |r| format!(", rate {r}"))
    );
    Ok((median(rates), median(rtts)))
}

fn cell(v: Option<f64>) -> String {
    v.map_or("—".to_string(), |m| format!("{m:.1}"))
}

/// Measure every row, print both tables; false if a cell produced no number.
pub(super) fn run(tunhost: &std::path::Path, reps: usize, secs: f64) -> Res<bool> {
    let labels: Vec<String> = Sender::all().map(Sender::label).collect();
    let mut ok = true;

    println!(
        "\nbulk TCP over a lossy link: 20 ms RTT (--delay 10), --drop P both ways, {reps} rep(s) × {secs} s, Mbit/s (median); host = host → kernel, Linux = kernel → host\n"
    );
    println!(
        "| loss | model (Mathis, MSS {MSS}) | {} | host cubic / Linux cubic |",
        labels.join(" | ")
    );
    println!("|---|---|{}---|", "---|".repeat(labels.len()));
    for loss in LOSSES {
        let mut cells = Vec::new();
        let mut cubic = (None, None);
        for sender in Sender::all() {
            let (mbit, _) = measure(tunhost, sender, loss, None, (reps, secs))?;
            ok &= mbit.is_some();
            match sender {
                Sender::Host("cubic") => cubic.0 = mbit,
                Sender::Linux("cubic") => cubic.1 = mbit,
                _ => {}
            }
            cells.push(cell(mbit));
        }
        let ratio = match cubic {
            (Some(h), Some(l)) if l > 0.0 => format!("{:.2}", h / l),
            _ => "—".to_string(),
        };
        let m = cell(model(loss));
        println!(
            "| {}% | {m} | {} | {ratio} |",
            loss * 100.0,
            cells.join(" | ")
        );
    }

    println!(
        "\nbulk TCP through a bottleneck: 20 ms RTT, --rate {BOTTLENECK} (20 Mbit/s, 50-packet buffer) each way, --drop P both ways, {reps} rep(s) × {secs} s: Mbit/s (median), and in brackets the median ping round trip meanwhile, ms (idle: 20)\n"
    );
    println!("| loss | {} |", labels.join(" | "));
    println!("|---|{}", "---|".repeat(labels.len()));
    for loss in LOSSES {
        let mut cells = Vec::new();
        for sender in Sender::all() {
            let (mbit, rtt) = measure(tunhost, sender, loss, Some(BOTTLENECK), (reps, secs))?;
            ok &= mbit.is_some() && rtt.is_some();
            cells.push(format!("{} ({})", cell(mbit), cell(rtt)));
        }
        println!("| {}% | {} |", loss * 100.0, cells.join(" | "));
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

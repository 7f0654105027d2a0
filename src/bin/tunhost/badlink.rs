//! The flags of a bad link (faults on the device, drawn from the seed) and of the host's TCP on
//! it (congestion control, timestamps): `serve`, `ping`, `get` and `replay` share them.

use clap::Args;
use tunhost::host::{Congestion, TcpTuning};
use tunhost::link::{FaultConfig, FaultKind};

/// `--drop`, `--corrupt`, ... and `--congestion`.
#[derive(Args, Debug, Default)]
#[command(next_help_heading = "A bad link")]
pub(crate) struct BadLinkArgs {
    /// Drop packets with probability P, e.g. 0.01; `in:P` or `out:P` for one direction only
    /// (in = sent by the kernel to the host). Repeat for both with different values. Every fault
    /// is drawn from --seed: the same seed, the same faults. Any fault opens the device without
    /// offloads, and --pcap then comments each packet with what was done to it.
    #[arg(long, value_name = "[in:|out:]P")]
    drop: Vec<String>,

    /// Flip one bit, with probability P, in a byte a checksum covers (the receiver must drop
    /// the packet), e.g. 0.01.
    #[arg(long, value_name = "[in:|out:]P")]
    corrupt: Vec<String>,

    /// Send packets twice with probability P, e.g. 0.02.
    #[arg(long, value_name = "[in:|out:]P")]
    duplicate: Vec<String>,

    /// Hold packets back behind the next one with probability P, e.g. 0.05.
    #[arg(long, value_name = "[in:|out:]P")]
    reorder: Vec<String>,

    /// Delay every packet MS milliseconds, ± a uniform JITTER, e.g. 10 (20 ms round trip) or
    /// 10:2.
    #[arg(long, value_name = "[in:|out:]MS[:JITTER]")]
    delay: Vec<String>,

    /// Send at most MBIT megabits per second, one packet at a time, e.g. 100; with :QUEUE at
    /// most QUEUE packets wait for the link, as in a router's buffer (default 10000), and more
    /// are dropped: 20:50 is a 20 Mbit/s bottleneck with a 50-packet buffer.
    #[arg(long, value_name = "[in:|out:]MBIT[:QUEUE]")]
    rate: Vec<String>,

    /// The host's TCP congestion control: cubic, reno, or none (send the whole window the peer
    /// offers at once).
    #[arg(long, value_name = "ALGORITHM", default_value = "cubic", value_parser = parse_congestion, help_heading = "TCP")]
    congestion: Congestion,

    /// Send no TCP timestamps (RFC 7323); they are on by default when the peer offers them.
    #[arg(long, help_heading = "TCP")]
    no_tcp_timestamps: bool,
}

fn parse_congestion(s: &str) -> Result<Congestion, String> {
    s.parse()
}

impl BadLinkArgs {
    /// The faults these flags ask for, drawn from `seed` (from the OS without one: the
    /// message that starts the run says which).
    pub(crate) fn faults(&self, seed: Option<u64>) -> Result<FaultConfig, String> {
        let mut config = FaultConfig {
            seed: seed.unwrap_or_else(random_seed),
            ..FaultConfig::default()
        };
        for (kind, values) in [
            (FaultKind::Drop, &self.drop),
            (FaultKind::Corrupt, &self.corrupt),
            (FaultKind::Duplicate, &self.duplicate),
            (FaultKind::Reorder, &self.reorder),
            (FaultKind::Delay, &self.delay),
            (FaultKind::Rate, &self.rate),
        ] {
            for v in values {
                config.set(kind, v).map_err(|e| e.to_string())?;
            }
        }
        Ok(config)
    }

    /// Congestion control and timestamps of the host's TCP sockets.
    pub(crate) fn tcp(&self) -> TcpTuning {
        TcpTuning {
            congestion: self.congestion,
            timestamps: !self.no_tcp_timestamps,
        }
    }
}

/// A seed for a run without --seed: the time, which differs from run to run.
fn random_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 40)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        link: BadLinkArgs,
    }

    #[test]
    fn per_direction_flags_and_bad_values() {
        let cli = Cli::parse_from([
            "t",
            "--drop",
            "0.05",
            "--drop",
            "out:0.1",
            "--delay",
            "in:10:2",
            "--congestion",
            "reno",
        ]);
        let f = cli.link.faults(Some(7)).unwrap();
        assert_eq!((f.inbound.drop, f.outbound.drop, f.seed), (0.05, 0.1, 7));
        assert_eq!(f.inbound.delay.total_millis(), 10);
        assert_eq!(f.inbound.jitter.total_millis(), 2);
        assert!(f.outbound.delay.total_millis() == 0);
        assert_eq!(cli.link.tcp().congestion, Congestion::Reno);
        let bad = Cli::parse_from(["t", "--corrupt", "1.5"]).link.faults(None);
        let msg = bad.unwrap_err();
        assert!(msg.contains("corruption probability \"1.5\""), "{msg}");
        assert!(!msg.contains("--"), "{msg}");
        assert!(Cli::try_parse_from(["t", "--congestion", "vegas"]).is_err());
    }
}

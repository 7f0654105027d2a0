//! `cargo xtask`: tunhost's dev tools, which write files of the source tree.
//!
//! ```text
//! cargo xtask seeds                                    # fuzz/corpus/ seeds, anew
//! cargo xtask fix-checksums --medium ip IN OUT         # a fuzz find, as a normal build reads it
//! sudo -E env "PATH=$PATH" cargo xtask captures        # captures/, recorded anew
//! cargo xtask derive-captures                          # captures/ping-{null,loop,ppp}.*
//! ```

mod captures;

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tunhost::fuzzing;
use tunhost::smoltcp::phy::Medium;

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "tunhost's dev tools: they write the fuzz seed corpora, fix a fuzz input's checksums, \
             and record captures/ from a live host.",
    after_help = "\
Typical uses:
  cargo xtask seeds && fuzz/make-corpus.sh        regenerate, then minimize, the seed corpora
  fuzz/add-regression.sh ingress_ip CRASH NAME    keep a fuzz find (calls fix-checksums)
  sudo -E env \"PATH=$PATH\" cargo xtask captures   record captures/ anew, then: cargo test --test replay

Paths of the tree (fuzz/, captures/) are found from this package's place in it, whatever the
current directory; IN and OUT of fix-checksums are relative to the current directory."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write the fuzz targets' seeds under fuzz/corpus/<target>/.
    ///
    /// ingress_ip and ingress_ethernet get `seed-*` files from a scripted peer that talks to the
    /// targets' deterministic host (tunhost::fuzzing::seeds), http_request gets ordinary requests
    /// and the classic ways out of a web root (tunhost::fuzzing::http_seeds), replay and
    /// pcap_reader get copies of captures/*.pcap* (pcap_reader also cut-short ones) and `wild-*`
    /// variants of ping-tcpdump.pcap (link type upper bits, VLAN and FCS, a microseconds field
    /// of a second or more). Files of the
    /// same name are overwritten, others left alone. The same sources give the same bytes: on an
    /// unchanged tree `git status` shows at most the seeds that `fuzz/make-corpus.sh` (which runs
    /// this, then `cargo fuzz cmin`) had dropped as redundant.
    Seeds {
        /// Write under DIR/<target>/ instead of fuzz/corpus/<target>/.
        #[arg(long, value_name = "DIR")]
        into: Option<PathBuf>,
    },
    /// Rewrite a fuzz input of an ingress target with valid checksums.
    ///
    /// cargo-fuzz builds with cfg(fuzzing), where smoltcp checks no checksum; a find made there
    /// reaches the same code in a normal build (and so in `cargo test`) only once its IPv4 header
    /// and TCP/UDP/ICMP checksums are right. Packets that do not parse are left as they are.
    /// fuzz/add-regression.sh runs this for ingress_ip and ingress_ethernet finds.
    FixChecksums {
        /// The device the input was made for: ip (the ingress_ip target) or ethernet
        /// (ingress_ethernet).
        #[arg(long, value_enum)]
        medium: MediumArg,
        /// The fuzz input (a crash-* or any file of fuzz/corpus/ingress_*).
        input: PathBuf,
        /// Where to write the fixed input (may be INPUT itself).
        output: PathBuf,
    },
    /// Record captures/ anew from a live `tunhost serve --seed 0` against the kernel. Needs root.
    ///
    /// Builds the tunhost binary (`cargo build --bin tunhost`, the profile of this tool), then
    /// records each capture of captures/README.md in a network namespace of its own, made for
    /// it and gone when it is done: the host's trace (--pcap) for the *.pcapng files, the kernel's
    /// `tcpdump -i tun0` for ping-tcpdump.pcap. Needs `ip`, `ping` and `tcpdump`. Addresses are
    /// documentation ranges (192.0.2.0/24, 198.51.100.0/24). Then `cargo test --test replay`
    /// checks the new captures; `git checkout captures/` takes them back.
    Captures,
    /// Write the captures of captures/ that are derived from another (no privileges needed).
    ///
    /// ping-null.pcap, ping-loop.pcap and ping-ppp.pcapng: the packets of ping-tcpdump.pcap,
    /// with the same times, under a BSD loopback (DLT_NULL, DLT_LOOP) or PPP header, the link
    /// types a Linux TUN/TAP device never has (see captures/README.md). `captures` runs this
    /// too, after recording ping-tcpdump.pcap anew.
    DeriveCaptures,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum MediumArg {
    Ip,
    Ethernet,
}

/// A tool's error: one line, naming the file or command at fault.
type Result<T = ()> = std::result::Result<T, String>;

/// Put what was being done in front of an error.
trait Context<T> {
    fn context(self, what: impl Display) -> Result<T>;
}

impl<T, E: Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Display) -> Result<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// The source tree's root (this package is its `xtask/`).
fn root() -> &'static Path {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).context(format_args!("cannot read {}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result {
    std::fs::write(path, bytes).context(format_args!("cannot write {}", path.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let done = match cli.command {
        Command::Seeds { into } => seeds(&into.unwrap_or_else(|| root().join("fuzz/corpus"))),
        Command::FixChecksums {
            medium,
            input,
            output,
        } => fix_checksums(medium, &input, &output),
        Command::Captures => captures::record(root()).and_then(|()| captures::derive(root())),
        Command::DeriveCaptures => captures::derive(root()),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask seeds`: every seed, written under `corpus/<target>/`.
fn seeds(corpus: &Path) -> Result {
    let mut files = Vec::new();
    for (target, medium) in [
        ("ingress_ip", Medium::Ip),
        ("ingress_ethernet", Medium::Ethernet),
    ] {
        for (name, bytes) in fuzzing::seeds::ingress(medium) {
            files.push((target, format!("seed-{name}"), bytes));
        }
    }
    for (name, bytes) in fuzzing::http_seeds() {
        files.push(("http_request", format!("seed-{name}"), bytes));
    }
    // The capture targets start from the checked-in captures, plus cut-short copies of them.
    let captures = root().join("captures");
    let listing =
        std::fs::read_dir(&captures).context(format_args!("cannot list {}", captures.display()))?;
    let mut names: Vec<String> = listing
        .filter_map(|e| Some(e.ok()?.file_name().to_str()?.to_owned()))
        .filter(|name| name.contains(".pcap"))
        .collect();
    names.sort();
    for name in names {
        let bytes = read(&captures.join(&name))?;
        let len = bytes.len();
        for cut in [24, len / 2, len.saturating_sub(1)] {
            let short = bytes.get(..cut).unwrap_or(&bytes).to_vec();
            files.push(("pcap_reader", format!("{name}.cut{cut}"), short));
        }
        files.push(("pcap_reader", name.clone(), bytes.clone()));
        files.push(("replay", name, bytes));
    }
    for (name, bytes) in captures::wild_seeds(root())? {
        files.push(("pcap_reader", name.clone(), bytes.clone()));
        files.push(("replay", name, bytes));
    }
    for (target, name, bytes) in &files {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).context(format_args!("cannot create {}", dir.display()))?;
        write(&dir.join(name), bytes)?;
    }
    eprintln!(
        "wrote {} seeds under {}/ (fuzz/make-corpus.sh then minimizes them)",
        files.len(),
        corpus.display()
    );
    Ok(())
}

/// `cargo xtask fix-checksums`.
fn fix_checksums(medium: MediumArg, input: &Path, output: &Path) -> Result {
    let medium = match medium {
        MediumArg::Ip => Medium::Ip,
        MediumArg::Ethernet => Medium::Ethernet,
    };
    let data = read(input)?;
    write(output, &fuzzing::fix_checksums(medium, &data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seeds_are_deterministic() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        seeds(&a).unwrap();
        seeds(&b).unwrap();
        for target in ["ingress_ip", "ingress_ethernet", "http_request", "replay"] {
            let files = |dir: &Path| {
                let mut v: Vec<_> = std::fs::read_dir(dir.join(target))
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .map(|p| {
                        (
                            p.file_name().unwrap().to_owned(),
                            std::fs::read(&p).unwrap(),
                        )
                    })
                    .collect();
                v.sort();
                v
            };
            let seeds = files(&a);
            assert!(seeds.len() >= 5, "{target}: {} seeds", seeds.len());
            assert!(seeds == files(&b), "{target}: seeds differ from run to run");
        }
    }

    #[test]
    fn errors_name_the_file() {
        let e = fix_checksums(
            MediumArg::Ip,
            Path::new("/nonexistent/in"),
            Path::new("/tmp/x"),
        )
        .unwrap_err();
        assert!(e.starts_with("cannot read /nonexistent/in: "), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}

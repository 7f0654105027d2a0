//! Every file in `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes through the same
//! entry point as the fuzzer's target, on stable: every crash ever found stays a test.
//!
//! `TUNHOST_WRITE_SEEDS=1 cargo test --test fuzz_corpus write_seeds -- --ignored` rewrites the
//! generated seeds (see `fuzz/make-corpus.sh`).

use std::path::{Path, PathBuf};

use tunhost::fuzzing;
use tunhost::smoltcp::phy::Medium;

/// A fuzz target's entry point.
type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("ingress_ip", fuzzing::ingress_ip),
    ("ingress_ethernet", fuzzing::ingress_ethernet),
    ("http_request", fuzzing::http_request),
    ("replay", fuzzing::replay),
    ("pcap_reader", fuzzing::pcap_reader),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.is_file());
    v.sort();
    v
}

#[test]
fn corpus_and_regressions_replay_through_the_targets() {
    for (target, run) in TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(target));
        assert!(
            corpus.len() >= 5,
            "fuzz/corpus/{target} has {} files, want at least 5 (run fuzz/make-corpus.sh)",
            corpus.len()
        );
        let regressions = files(&fuzz_dir().join("regressions").join(target));
        for f in corpus.iter().chain(&regressions) {
            let data = std::fs::read(f).unwrap();
            let r = std::panic::catch_unwind(|| run(&data));
            assert!(r.is_ok(), "{target}: {} breaks an invariant", f.display());
        }
    }
}

#[test]
#[ignore = "generator: rewrites fuzz/corpus seeds when TUNHOST_WRITE_SEEDS=1"]
fn write_seeds() {
    if std::env::var("TUNHOST_WRITE_SEEDS").as_deref() != Ok("1") {
        return;
    }
    for (target, medium) in [
        ("ingress_ip", Medium::Ip),
        ("ingress_ethernet", Medium::Ethernet),
    ] {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in fuzzing::seeds::ingress(medium) {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        }
    }
    let dir = fuzz_dir().join("corpus").join("http_request");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in fuzzing::http_seeds() {
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    }
    // The capture targets start from the checked-in captures, plus cut-short copies of them.
    let captures = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
    for target in ["replay", "pcap_reader"] {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for f in files(&captures) {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if !name.contains(".pcap") {
                continue;
            }
            let bytes = std::fs::read(&f).unwrap();
            std::fs::write(dir.join(&name), &bytes).unwrap();
            if target == "pcap_reader" {
                for cut in [24, bytes.len() / 2, bytes.len() - 1] {
                    std::fs::write(dir.join(format!("{name}.cut{cut}")), &bytes[..cut]).unwrap();
                }
            }
        }
    }
}

#[test]
#[ignore = "tool: TUNHOST_FIX=ip|ethernet:IN:OUT rewrites a fuzz input with valid checksums"]
fn fix_checksums() {
    let Ok(spec) = std::env::var("TUNHOST_FIX") else {
        return;
    };
    let mut parts = spec.splitn(3, ':');
    let (medium, input, output) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let medium = if medium == "ethernet" {
        Medium::Ethernet
    } else {
        Medium::Ip
    };
    let data = std::fs::read(input).unwrap();
    std::fs::write(output, fuzzing::fix_checksums(medium, &data)).unwrap();
}

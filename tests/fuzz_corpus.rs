//! Every file in `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes through the same
//! entry point as the fuzzer's target, on stable: every crash ever found stays a test.
//!
//! `cargo xtask seeds` rewrites the generated seeds (see `fuzz/make-corpus.sh`).

use std::path::{Path, PathBuf};

use tunhost::fuzzing;

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

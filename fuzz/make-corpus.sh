#!/usr/bin/env bash
# Regenerate the seed corpora of the fuzz targets, then minimize each corpus with `cargo fuzz cmin`.
# Seeds are made by a scripted peer talking to the same deterministic host the targets build
# (tunhost::fuzzing::seeds). Run from anywhere; needs cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")/.."
TUNHOST_WRITE_SEEDS=1 cargo test -q --test fuzz_corpus write_seeds -- --ignored
cd fuzz
for t in $(RUSTC_BOOTSTRAP=1 cargo fuzz list); do
  [ -d "corpus/$t" ] || continue
  RUSTC_BOOTSTRAP=1 cargo fuzz cmin -O "$t" "corpus/$t" -- -rss_limit_mb=2048
done

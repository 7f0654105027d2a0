#!/usr/bin/env bash
# Regenerate the seed corpora of the fuzz targets, then minimize each with `cargo fuzz cmin`,
# keeping the seeds' descriptive names. Seeds are made by a scripted peer talking to the same
# deterministic host the targets build (tunhost::fuzzing::seeds), by tunhost::fuzzing::http_seeds,
# and from captures/ (`cargo xtask seeds`). Run from anywhere; needs cargo-fuzz
# (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo xtask seeds
cd fuzz
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in $(RUSTC_BOOTSTRAP=1 cargo fuzz list); do
  [ -d "corpus/$t" ] || continue
  rm -rf "${scratch:?}/$t" && cp -r "corpus/$t" "$scratch/$t"
  # cmin replaces the directory with what it keeps, each file named by its SHA-1.
  RUSTC_BOOTSTRAP=1 cargo fuzz cmin -O "$t" "$scratch/$t" -- -rss_limit_mb=2048 >/dev/null 2>&1
  for f in "corpus/$t"/*; do
    [ -e "$scratch/$t/$(sha1sum < "$f" | cut -c1-40)" ] || { echo "cmin drops $f"; rm "$f"; }
  done
done

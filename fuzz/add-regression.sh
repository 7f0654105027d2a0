#!/usr/bin/env bash
# Check a fuzz artifact in as a regression: add-regression.sh TARGET ARTIFACT NAME
# For the ingress targets the packets' checksums are recomputed first: cargo-fuzz builds with
# cfg(fuzzing), where smoltcp checks no checksum, and a normal `cargo test` build does.
set -euo pipefail
target=$1 artifact=$2 name=$3
cd "$(dirname "$0")/.."
mkdir -p "fuzz/regressions/$target"
out="$PWD/fuzz/regressions/$target/$name"
case $target in
  ingress_ip) TUNHOST_FIX="ip:$(realpath "$artifact"):$out" cargo test -q --test fuzz_corpus fix_checksums -- --ignored ;;
  ingress_ethernet) TUNHOST_FIX="ethernet:$(realpath "$artifact"):$out" cargo test -q --test fuzz_corpus fix_checksums -- --ignored ;;
  *) cp "$artifact" "$out" ;;
esac
echo "added $out"

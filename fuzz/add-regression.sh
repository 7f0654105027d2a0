#!/usr/bin/env bash
# Check a fuzz artifact in as a regression: add-regression.sh TARGET ARTIFACT NAME
# For the ingress targets the packets' checksums are recomputed first (`cargo xtask
# fix-checksums`): cargo-fuzz builds with cfg(fuzzing), where smoltcp checks no checksum, and a
# normal `cargo test` build does.
set -euo pipefail
target=$1 artifact=$(realpath "$2") name=$3
cd "$(dirname "$0")/.."
mkdir -p "fuzz/regressions/$target"
out="$PWD/fuzz/regressions/$target/$name"
case $target in
  ingress_ip) cargo xtask fix-checksums --medium ip "$artifact" "$out" ;;
  ingress_ethernet) cargo xtask fix-checksums --medium ethernet "$artifact" "$out" ;;
  *) cp "$artifact" "$out" ;;
esac
echo "added $out"

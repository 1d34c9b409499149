#!/usr/bin/env bash
# Prints the warm start time of a TestCluster (median of 5 starts; binaries already cached).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/control-plane/build.sh >/dev/null
cargo run --release --locked -q -p sei-testkit --example cluster_start -- "${1:-5}"

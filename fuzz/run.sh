#!/bin/sh
# Fuzz the PST import path for $1 seconds (default 300).
# The corpus lives outside the repository ($FUZZ_CORPUS, default /tmp/fuzz-corpus),
# seeded from the test PST files; crashes go to fuzz/artifacts/pst_import/ (ignored by git).
set -eu
secs=${1:-300}
[ $# -gt 0 ] && shift
corpus=${FUZZ_CORPUS:-/tmp/fuzz-corpus}
cd "$(dirname "$0")/.."
seeds=${FUZZ_SEEDS:-${MSGFS_TESTDATA:-$(cd .. && pwd)/shared/testdata}/pst}
mkdir -p "$corpus"
if [ -d "$seeds" ]; then
    cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
fi
# No nightly toolchain: RUSTC_BOOTSTRAP lets stable build with cargo-fuzz's flags;
# -s none because AddressSanitizer needs nightly. Further arguments go to libFuzzer
# (e.g. -fork=1, which runs inputs in a child so that a stack overflow, which kills
# the process before libFuzzer can save the input, is still caught and saved).
RUSTC_BOOTSTRAP=1 exec cargo fuzz run -s none pst_import "$corpus" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "$@"

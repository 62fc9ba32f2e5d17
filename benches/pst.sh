#!/usr/bin/env bash
# PST import speed: `msgfs import` of the largest sample PST against `readpst -e` (pst-utils)
# and `pffexport` (pff-tools) on the same file, side by side, RUNS times each in turn;
# prints the median wall time of each and the ratios. msgfs makes the import durable (every
# batch synced); the readers only write files. A second msgfs column puts the store on
# tmpfs (/dev/shm), where syncs cost nothing, to show the conversion alone. Needs a release build
# (cargo build --release) and MSGFS_TESTDATA (default ../shared/testdata).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-5}"
DATA="${MSGFS_TESTDATA:-$(cd .. && pwd)/shared/testdata}"
PST="${PST:-$(ls -S "$DATA"/pst/*.pst | head -1)}"
BIN="${BIN:-target/release/msgfs}"
for p in readpst pffexport; do
  command -v "$p" >/dev/null || { echo "$p is missing: apt-get install pst-utils pff-tools" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "$BIN is missing: cargo build --release" >&2; exit 1; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s.%N); echo "$e - $s" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
: >"$WORK/msgfs"; : >"$WORK/msgfs-tmpfs"; : >"$WORK/readpst"; : >"$WORK/pffexport"
SHM="$(mktemp -d -p /dev/shm)"
trap 'rm -rf "$WORK" "$SHM"' EXIT
for i in $(seq "$RUNS"); do
  rm -rf "$WORK/s" "$WORK/r" "$WORK/p.export"; mkdir "$WORK/r"
  rm -rf "$SHM/s"
  t "$BIN" import --store "$WORK/s" "$PST" >>"$WORK/msgfs"
  t "$BIN" import --store "$SHM/s" "$PST" >>"$WORK/msgfs-tmpfs"
  t readpst -e -D -o "$WORK/r" "$PST" >>"$WORK/readpst"
  t pffexport -q -t "$WORK/p" "$PST" >>"$WORK/pffexport"
done
n=$("$BIN" import --store "$WORK/count" "$PST" | sed -n 's/^imported \([0-9]*\) messages\{0,1\} .*/\1/p')
m=$(median <"$WORK/msgfs"); mt=$(median <"$WORK/msgfs-tmpfs"); r=$(median <"$WORK/readpst"); p=$(median <"$WORK/pffexport")
echo "file: $PST ($(stat -c %s "$PST") bytes, $n messages), $RUNS runs each, medians:"
printf 'msgfs import  %.3f s  (%.0f msg/s)\n' "$m" "$(echo "$n / $m" | bc -l)"
printf 'msgfs, tmpfs  %.3f s  (%.0f msg/s)\n' "$mt" "$(echo "$n / $mt" | bc -l)"
printf 'readpst -e    %.3f s\n' "$r"
printf 'pffexport     %.3f s\n' "$p"
printf 'ratio msgfs/readpst %.2f, msgfs/pffexport %.2f\n' "$(echo "$m / $r" | bc -l)" "$(echo "$m / $p" | bc -l)"
printf 'ratio on tmpfs: msgfs/readpst %.2f, msgfs/pffexport %.2f\n' "$(echo "$mt / $r" | bc -l)" "$(echo "$mt / $p" | bc -l)"

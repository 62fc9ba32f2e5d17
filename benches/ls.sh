#!/bin/sh
# `msgfs ls` of one folder of N messages (default 100,000): builds an mbox of realistic
# messages (a dozen header fields, 2-20 KB bodies; one in ten multipart with a 30 KB base64
# attachment), imports it into a new store, then times `msgfs ls` of the folder on the
# unmounted store and on a mount of it, warm cache, RUNS times each (default 5), and
# prints the medians. Asserts nothing. Usage: benches/ls.sh [N] [RUNS]; needs a release
# build (cargo build --release) and python3. Works in $MSGFS_BENCH_DIR (default /var/tmp).
set -eu
N=${1:-100000}
RUNS=${2:-5}
BIN=${MSGFS_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/msgfs}
DIR=$(mktemp -d "${MSGFS_BENCH_DIR:-/var/tmp}/msgfs-ls-bench.XXXXXX")
trap 'fusermount3 -u -q "$DIR/mnt" 2>/dev/null || true; rm -rf "$DIR"' EXIT
python3 - "$N" "$DIR/in.mbox" <<'PY'
import random, sys, base64
n, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(7)
words = "the meeting report budget project update please review attached draft schedule invoice release server backup".split()
att = base64.encodebytes(bytes(rng.getrandbits(8) for _ in range(30000))).decode()
with open(path, "w") as f:
    for i in range(n):
        d = f"{rng.randint(1,28)} {rng.choice(['Jan','Feb','Mar','Apr','May','Jun'])} {rng.randint(2019,2025)} {rng.randint(0,23):02}:{rng.randint(0,59):02}:00 +0000"
        subj = " ".join(rng.choice(words) for _ in range(rng.randint(3, 8)))
        s = rng.randint(0, 499)
        body = []
        size = int(2048 * 10 ** rng.random())
        while sum(len(l) + 1 for l in body) < size:
            body.append(" ".join(rng.choice(words) for _ in range(10)))
        body = "\n".join(body) + "\n"
        f.write(f"From user{s}@example.org Mon Jan  1 00:00:00 2024\n")
        f.write(f"Return-Path: <user{s}@example.org>\nReceived: from mail.example.org by mx.example.net; {d}\n")
        f.write(f"From: User {s} <user{s}@example.org>\nTo: Bob <bob@example.net>\nSubject: {subj}\nDate: {d}\n")
        f.write(f"Message-ID: <{i}@example.org>\nMIME-Version: 1.0\n")
        if i % 10 == 0:
            f.write("Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\nContent-Type: text/plain\n\n")
            f.write(body + "--b1\nContent-Type: application/octet-stream; name=\"data.bin\"\n")
            f.write("Content-Transfer-Encoding: base64\n\n" + att + "--b1--\n\n")
        else:
            f.write("Content-Type: text/plain; charset=utf-8\n\n" + body + "\n")
PY
"$BIN" init "$DIR/store" >/dev/null
"$BIN" import --store "$DIR/store" --into Inbox "$DIR/in.mbox" >/dev/null
rm "$DIR/in.mbox"
# The import makes a folder named after the mbox file, under Inbox.
F=Inbox/in
time_runs() {
    for _ in $(seq "$RUNS"); do
        s=$(date +%s.%N)
        "$BIN" ls "$1" >/dev/null
        e=$(date +%s.%N)
        echo "$e - $s" | bc
    done | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
LINES=$("$BIN" ls "$DIR/store/$F" | wc -l)
echo "messages listed: $LINES"
echo "msgfs ls, unmounted store, median of $RUNS: $(time_runs "$DIR/store/$F") s"
mkdir "$DIR/mnt"
"$BIN" mount "$DIR/store" "$DIR/mnt"
echo "msgfs ls, mounted store, median of $RUNS: $(time_runs "$DIR/mnt/$F") s"
"$BIN" umount "$DIR/mnt"

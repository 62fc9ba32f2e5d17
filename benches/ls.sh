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
# Median wall time and median CPU time (user + system) of RUNS runs: the machine may be
# shared, and CPU time says what the listing costs whatever the load.
time_runs() {
    python3 - "$RUNS" "$BIN" "$1" <<'PY'
import os, resource, subprocess, sys, time
runs, cmd = int(sys.argv[1]), [sys.argv[2], "ls", sys.argv[3]]
walls, cpus = [], []
for _ in range(runs):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    walls.append(time.monotonic() - t)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
walls.sort(); cpus.sort()
print(f"wall {walls[runs // 2]:.2f} s, CPU {cpus[runs // 2]:.2f} s (load {os.getloadavg()[0]:.1f})")
PY
}
LINES=$("$BIN" ls "$DIR/store/$F" | wc -l)
echo "messages listed: $LINES"
echo "msgfs ls, unmounted store, median of $RUNS: $(time_runs "$DIR/store/$F")"
mkdir "$DIR/mnt"
"$BIN" mount "$DIR/store" "$DIR/mnt"
echo "msgfs ls, mounted store, median of $RUNS: $(time_runs "$DIR/mnt/$F")"
"$BIN" umount "$DIR/mnt"

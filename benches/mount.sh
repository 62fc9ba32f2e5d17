#!/usr/bin/env bash
# benches/mount.sh: msgfs through FUSE against the same data in a plain directory on the
# same disk. Prints, for each figure, the median of RUNS timed runs on each side and the
# ratio msgfs/plain (for throughput, msgfs MB/s / plain MB/s). A benchmark, not a test: it
# asserts nothing about speed. Needs root (drop_caches, FUSE), python3, rsync.
#
#   benches/mount.sh                          # full run, 7 to 9 minutes on 2 cores
#   MSGFS_BENCH_N=10000 MSGFS_BENCH_BIG_MB=128 MSGFS_BENCH_CP_N=1000 \
#     MSGFS_BENCH_RSYNC_N=2000 benches/mount.sh   # quick run, about a minute
#
# Knobs (environment):
#   MSGFS_BENCH_N        messages (2-4 KB) in the folder read and listed (1, 2)   100000
#   MSGFS_BENCH_BIG_MB   size of the large message (3)                             1024
#   MSGFS_BENCH_CP_N     .eml files (~4 KB) copied with cp -r (4)                  10000
#   MSGFS_BENCH_RSYNC_N  messages in the tree rsync copies (5); N: the folder of 1  20000
#   MSGFS_BENCH_RUNS     timed runs per side and figure (medians; 5 or more)       5
#   MSGFS_BENCH_DIR      where the work directory goes (a real disk, not tmpfs)    /var/tmp
#   MSGFS_BENCH_ONLY     figures to run, e.g. 124                                  1234567
#   MSGFS_TESTDATA       the shared sample data: the corpus of 6 and the PST of 7  ../shared/testdata
#   MSGFS_BENCH_TRACE    1: count the FUSE requests of each operation (tracefs)    1
#   MSGFS_BENCH_BIN      a built msgfs binary to use instead of cargo build        (build)
#   MSGFS_BENCH_KEEP     1: keep the work directory (data, store) at the end       0
set -euo pipefail
export LC_ALL=C

N=${MSGFS_BENCH_N:-100000}
BIG_MB=${MSGFS_BENCH_BIG_MB:-1024}
CP_N=${MSGFS_BENCH_CP_N:-10000}
RSYNC_N=${MSGFS_BENCH_RSYNC_N:-20000}
RUNS=${MSGFS_BENCH_RUNS:-5}
BASE=${MSGFS_BENCH_DIR:-/var/tmp}
ONLY=${MSGFS_BENCH_ONLY:-1234567}
TRACE=${MSGFS_BENCH_TRACE:-1}
KEEP=${MSGFS_BENCH_KEEP:-0}
((RSYNC_N > N)) && RSYNC_N=$N

say() { printf '%s\n' "$*" >&2; }
die() { say "mount.sh: $*"; exit 1; }
want() { [[ $ONLY == *"$1"* ]]; }

[[ $(id -u) == 0 ]] || die "run as root (drop_caches and FUSE mounts need it)"
[[ -e /dev/fuse ]] || die "/dev/fuse is missing (apt-get install fuse3; modprobe fuse)"
for p in python3 rsync awk find xargs cp; do
    command -v "$p" >/dev/null || die "$p is missing"
done
((RUNS >= 5)) || say "note: MSGFS_BENCH_RUNS=$RUNS; the figures are meant as medians of 5 or more runs"
BASE=$(realpath -e "$BASE") || die "no directory $BASE"
[[ $(stat -f -c %T "$BASE") != tmpfs ]] || die "$BASE is a tmpfs; set MSGFS_BENCH_DIR to a directory on a real disk"

REPO=$(cd "$(dirname "$0")/.." && pwd)
TESTDATA=${MSGFS_TESTDATA:-$REPO/../shared/testdata}
# Figure 6 greps the SpamAssassin public corpus (6,046 messages, 31 MB: real mail, sizes
# from 1 KB to 500 KB), figure 7 the largest sample PST; both from the shared sample data.
GREP_SRC=$TESTDATA/maildir/spamassassin-publiccorpus
PST_SRC=$TESTDATA/pst/pstextractor-enron.pst
if want 6 && [[ ! -d $GREP_SRC ]]; then
    say "note: no $GREP_SRC (set MSGFS_TESTDATA): figure 6 skipped"
    ONLY=${ONLY//6/}
fi
if want 7 && [[ ! -f $PST_SRC ]]; then
    say "note: no $PST_SRC (set MSGFS_TESTDATA): figure 7 skipped"
    ONLY=${ONLY//7/}
fi
if [[ -n ${MSGFS_BENCH_BIN:-} ]]; then
    MSGFS=$(realpath "$MSGFS_BENCH_BIN")
else
    say "building: cargo build --release"
    (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
    MSGFS=$REPO/target/release/msgfs
fi
[[ -x $MSGFS ]] || die "$MSGFS is not an executable"
if want 4 || want 6; then
    # The in-memory FUSE ceiling (benches/fuse_ceiling.rs) figures 4 and 6 also measure.
    (cd "$REPO" && cargo build --release --quiet --example fuse_ceiling) || die "cargo build --release --example fuse_ceiling failed"
    CEILING=$REPO/target/release/examples/fuse_ceiling
fi

WORK=$(mktemp -d "$BASE/msgfs-mount-bench.XXXXXX")
DATA=$WORK/plain   # the plain directories: the sources, and what msgfs is compared with
STORE=$WORK/store
MNT=$WORK/mnt
CEIL_MNT=$WORK/ceiling # where the in-memory FUSE ceiling is mounted (figures 4, 6)
CEIL_PID=""
OUT=$WORK/out      # copy targets on the plain disk (cp, rsync)
mkdir -p "$DATA" "$MNT" "$OUT"
# The daemon's log goes to the work directory, not ~/.local/state.
export XDG_STATE_HOME=$WORK/state

TRACEFS=""
TRACE_INST=""
SIG_INST=""
MOUNTED_TRACEFS=0
DAEMON=""

# Mounted at $MNT? Read from the mount table: stat(2) on the mount point of a dead daemon
# fails (ENOTCONN), so `mountpoint` would say no and the dead mount would stay behind.
is_mounted() {
    local esc
    esc=$(printf '%s' "$MNT" | sed 's/\\/\\134/g; s/ /\\040/g; s/\t/\\011/g')
    M=$esc awk '$5 == ENVIRON["M"] { f = 1 } END { exit !f }' /proc/self/mountinfo
}

daemon_pid() { sed -n 's/^process \([0-9]*\).*/\1/p' "$STORE/lock" 2>/dev/null; }

# The daemon of a mount that takes no store lock (read-only, PST): the `msgfs mount -f`
# process whose last argument is our mount point.
cmdline_daemon() {
    local p args
    for p in /proc/[0-9]*; do
        args=$(tr '\0' '\n' 2>/dev/null <"$p/cmdline") || continue
        [[ $(sed -n 2p <<<"$args") == mount && $(tail -1 <<<"$args") == "$MNT" ]] || continue
        grep -qx -- -f <<<"$args" || continue
        # Not the watchdog (a fork with the same command line).
        [[ $(cat "$p/comm" 2>/dev/null) == msgfs-watchdog ]] && continue
        echo "${p#/proc/}"
        return
    done
}

# do_mount [SOURCE [OPTIONS]]: mount SOURCE (the store) at $MNT.
do_mount() {
    local src=${1:-$STORE} opts=${2:-}
    "$MSGFS" mount ${opts:+-o "$opts"} "$src" "$MNT" || die "msgfs mount failed (log: $XDG_STATE_HOME/msgfs/msgfs.log)"
    if [[ $src == "$STORE" && -z $opts ]]; then
        DAEMON=$(daemon_pid)
    else
        DAEMON=$(cmdline_daemon)
    fi
    [[ -n $DAEMON ]] || die "no daemon found for $MNT"
    MOUNTED_AS=("$src" "$opts")
}

do_umount() {
    is_mounted || return 0
    if ! "$MSGFS" umount "$MNT"; then
        umount -l "$MNT" 2>/dev/null || true
        [[ -n $DAEMON ]] && kill "$DAEMON" 2>/dev/null || true
        die "msgfs umount failed"
    fi
    DAEMON=""
}

MOUNTED_AS=()
# Unmount, then mount again what was mounted, as it was.
remount() {
    do_umount
    do_mount "${MOUNTED_AS[@]}"
}

# The daemon must survive every figure; a dead one would make the figures meaningless.
daemon_alive() { [[ -n $DAEMON ]] && kill -0 "$DAEMON" 2>/dev/null && is_mounted && stat "$MNT" >/dev/null 2>&1; }

# What is known of a daemon that died: the signals sent to it, the end of its log.
postmortem() {
    [[ -n $DAEMON ]] || return 0
    say "the msgfs daemon (pid $DAEMON) is gone"
    if [[ -n $SIG_INST ]]; then
        say "signals sent to it (tracepoint signal:signal_generate; the sender is the first field):"
        grep -E "pid=$DAEMON " "$SIG_INST/trace" >&2 || say "  none traced"
    fi
    if [[ -s $XDG_STATE_HOME/msgfs/msgfs.log ]]; then
        say "last lines of its log:"
        tail -20 "$XDG_STATE_HOME/msgfs/msgfs.log" >&2
    fi
}

check_daemon() {
    daemon_alive || die "the daemon died during $1: figures taken with a dead daemon mean nothing"
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    ((rc != 0)) && ! daemon_alive && postmortem
    if is_mounted && ! "$MSGFS" umount "$MNT" 2>/dev/null; then
        # A dead or stuck daemon: take the mount away, then end our daemon (only ours: its
        # command line names our store).
        umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
        local pid
        pid=$(daemon_pid)
        if [[ -n $pid ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$STORE"; then
            kill "$pid" 2>/dev/null
        fi
    fi
    if [[ -n $CEIL_PID ]]; then
        umount "$CEIL_MNT" 2>/dev/null || umount -l "$CEIL_MNT" 2>/dev/null
        kill "$CEIL_PID" 2>/dev/null
    fi
    if is_mounted; then
        # Never rm -rf through a mount: that would delete the store's messages one by one.
        say "could not unmount $MNT; left $WORK in place"
        KEEP=1
    fi
    [[ -n $TRACE_INST && -d $TRACE_INST ]] && rmdir "$TRACE_INST" 2>/dev/null
    [[ -n $SIG_INST && -d $SIG_INST ]] && rmdir "$SIG_INST" 2>/dev/null
    ((MOUNTED_TRACEFS)) && umount "$TRACEFS" 2>/dev/null
    if [[ $KEEP == 1 ]]; then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

# ---- timing -----------------------------------------------------------------------------

declare -A TIMES   # key -> space-separated seconds of each run
declare -A DCPU    # key -> space-separated daemon CPU seconds of each msgfs run
CLK_TCK=$(getconf CLK_TCK)

daemon_ticks() {
    # utime + stime of the whole daemon process (all threads), in clock ticks
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$DAEMON/stat" 2>/dev/null || echo 0
}

# timed KEY CMD...: run CMD once, append its wall time to TIMES[KEY] (and, for msgfs
# keys, the daemon's CPU time to DCPU[KEY]).
timed() {
    local key=$1
    shift
    local c0=0 t0 t1
    [[ $key == msgfs:* ]] && c0=$(daemon_ticks)
    t0=$EPOCHREALTIME
    "$@"
    t1=$EPOCHREALTIME
    TIMES[$key]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }') "
    if [[ $key == msgfs:* ]]; then
        DCPU[$key]+="$(awk -v a="$c0" -v b="$(daemon_ticks)" -v h="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / h }') "
    fi
}

median() {
    tr ' ' '\n' <<<"$1" | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

RESULTS=()   # rows of the final table
# result LABEL KEY GOAL: GOAL is "" or "<=X" (ratio of times) or ">=X" (ratio of rates)
result_time() {
    local label=$1 key=$2 goal=$3
    local p m r met="-"
    p=$(median "${TIMES[plain:$key]}")
    m=$(median "${TIMES[msgfs:$key]}")
    r=$(awk -v p="$p" -v m="$m" 'BEGIN { printf "%.2f", m / p }')
    if [[ -n $goal ]]; then
        met=$(awk -v r="$r" -v g="${goal#<=}" 'BEGIN { print (r <= g) ? "met" : "NOT met" }')
        goal="<= ${goal#<=}x"
    fi
    RESULTS+=("$(printf '%-46s %9.3f s %9.3f s %7sx  %-8s %-7s %s' "$label" "$p" "$m" "$r" "${goal:--}" "$met" \
        "$(median "${DCPU[msgfs:$key]:-}")")")
    say "  $label: plain [${TIMES[plain:$key]}] msgfs [${TIMES[msgfs:$key]}] daemon cpu [${DCPU[msgfs:$key]:-}]"
}

# result_ceiling LABEL KEY MSGFS_KEY: the in-memory ceiling's median time (in the msgfs
# column) against the plain one of its own runs, and which fraction of that ceiling msgfs
# reaches in figure MSGFS_KEY (ceiling time / msgfs time, as a note).
result_ceiling() {
    local label=$1 key=$2 mkey=$3 p c m r
    p=$(median "${TIMES[plain:$key]}")
    c=$(median "${TIMES[ceiling:$key]}")
    m=$(median "${TIMES[msgfs:$mkey]}")
    r=$(awk -v p="$p" -v c="$c" 'BEGIN { printf "%.2f", c / p }')
    RESULTS+=("$(printf '%-46s %9.3f s %9.3f s %7sx  %-8s %-7s msgfs %s = %.2fx the ceiling' "$label" "$p" "$c" "$r" - - \
        "$mkey" "$(awk -v m="$m" -v c="$c" 'BEGIN { print m / c }')")")
    say "  $label: plain [${TIMES[plain:$key]}] ceiling [${TIMES[ceiling:$key]}]"
}

result_rate() {
    local label=$1 key=$2 goal=$3 mb=$4
    local rates_p="" rates_m="" t p m r met="-"
    for t in ${TIMES[plain:$key]}; do rates_p+="$(awk -v s="$mb" -v t="$t" 'BEGIN { printf "%.1f", s / t }') "; done
    for t in ${TIMES[msgfs:$key]}; do rates_m+="$(awk -v s="$mb" -v t="$t" 'BEGIN { printf "%.1f", s / t }') "; done
    p=$(median "$rates_p")
    m=$(median "$rates_m")
    r=$(awk -v p="$p" -v m="$m" 'BEGIN { printf "%.2f", m / p }')
    if [[ -n $goal ]]; then
        met=$(awk -v r="$r" -v g="${goal#>=}" 'BEGIN { print (r >= g) ? "met" : "NOT met" }')
        goal=">= ${goal#>=}x"
    fi
    RESULTS+=("$(printf '%-46s %7.0f MB/s %7.0f MB/s %5sx  %-8s %-7s %s' "$label" "$p" "$m" "$r" "${goal:--}" "$met" \
        "$(median "${DCPU[msgfs:$key]:-}")")")
    say "  $label: plain MB/s [$rates_p] msgfs MB/s [$rates_m] daemon cpu [${DCPU[msgfs:$key]:-}]"
}

# Runs alternate which side goes first, so a drift in the machine's load hits both.
sides() {
    if (($1 % 2)); then echo "plain msgfs"; else echo "msgfs plain"; fi
}

# ---- FUSE request counts (kernel tracepoint fuse:fuse_request_send) ---------------------

trace_setup() {
    [[ $TRACE == 1 ]] || return 0
    TRACEFS=/sys/kernel/tracing
    if [[ ! -d $TRACEFS/events ]]; then
        if mount -t tracefs nodev "$TRACEFS" 2>/dev/null; then
            MOUNTED_TRACEFS=1
        fi
    fi
    if [[ ! -d $TRACEFS/events/fuse/fuse_request_send ]]; then
        say "note: no fuse:fuse_request_send tracepoint (kernel before 6.15?): no request counts"
        TRACE=0
        return 0
    fi
    # Who signals the daemon if it dies (kill, abort, segfault): a second trace instance.
    SIG_INST=$TRACEFS/instances/msgfs-bench-signals-$$
    if mkdir "$SIG_INST" 2>/dev/null; then
        echo 'sig == 6 || sig == 7 || sig == 9 || sig == 11 || sig == 15' >"$SIG_INST/events/signal/signal_generate/filter"
        echo 1 >"$SIG_INST/events/signal/signal_generate/enable"
        echo 1 >"$SIG_INST/tracing_on"
    else
        SIG_INST=""
    fi
    TRACE_INST=$TRACEFS/instances/msgfs-bench-$$
    mkdir "$TRACE_INST" || {
        TRACE=0
        TRACE_INST=""
        return 0
    }
    echo 32768 >"$TRACE_INST/buffer_size_kb"
}

TRACE_ROWS=()
# traced LABEL PER CMD...: run CMD once with the fuse_request_send events of this mount on,
# and record the requests by opcode, divided by PER (files, entries).
traced() {
    [[ $TRACE == 1 ]] || return 0
    local label=$1 per=$2
    shift 2
    local d maj min kdev ev=$TRACE_INST/events/fuse/fuse_request_send
    d=$(stat -c %d "$MNT")
    # st_dev (glibc encoding) to the kernel's dev_t (major << 20 | minor)
    maj=$(((d >> 8) & 0xfff))
    min=$(((d & 0xff) | ((d >> 12) & 0xfff00)))
    kdev=$(((maj << 20) | min))
    echo "connection == $kdev" >"$ev/filter"
    echo >"$TRACE_INST/trace"
    echo 1 >"$ev/enable"
    echo 1 >"$TRACE_INST/tracing_on"
    "$@"
    echo 0 >"$TRACE_INST/tracing_on"
    echo 0 >"$ev/enable"
    local lost
    lost=$(awk '/^overrun:/ { s += $2 } END { print s + 0 }' "$TRACE_INST"/per_cpu/cpu*/stats)
    local counts
    counts=$(grep -o '(FUSE_[A-Z_0-9]*)' "$TRACE_INST/trace" | tr -d '()' | sed 's/^FUSE_//' | sort | uniq -c |
        sort -rn | awk -v per="$per" '{ printf "%s %s %d", (NR > 1 ? "," : ""), $2, $1
            if (per > 1 && $1 >= per / 100) printf " (%.2f)", $1 / per }')
    ((lost > 0)) && counts+=" (trace buffer overran: $lost events lost)"
    TRACE_ROWS+=("$(printf '%-40s %s' "$label ($per):" "${counts:- none}")")
}

# ---- data -------------------------------------------------------------------------------

# gen.py OUT COUNT MIN MAX SEED: COUNT messages of MIN..MAX bytes named as `msgfs import`
# names them ("YYYY-MM-DD Subject.eml"), so both sides hold the same names and bytes.
GEN=$WORK/gen.py
cat >"$GEN" <<'EOF'
import os, random, sys
out, n, lo, hi, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
os.makedirs(out, exist_ok=True)
rnd = random.Random(seed)
words = ("the of and to in is that for it as with was on be by at this have from or one had not but what "
         "all were when we there can an your which their said if do will each about how up out them then she "
         "many some so these would other into has more her two like him see time could no make than first "
         "been its who now people my made over did down only way find use may water long little very after "
         "words called just where most know meeting report budget quarter review draft attached").split()
pool = "".join(" ".join(rnd.choice(words) for _ in range(12)) + "\r\n" for _ in range(4000)).encode()
for i in range(n):
    size = rnd.randint(lo, hi)
    day = 1 + i % 28
    subj = f"Message {seed}-{i:06d}"
    hdr = (f"From: Sender {i % 97} <sender{i % 97}@example.com>\r\nTo: rcpt@example.org\r\n"
           f"Subject: {subj}\r\nDate: Mon, {day:02d} Jan 2024 10:{i % 60:02d}:00 +0000\r\n"
           f"Message-ID: <{seed}.{i}@bench.example.com>\r\nMIME-Version: 1.0\r\n"
           f"Content-Type: text/plain; charset=us-ascii\r\n\r\n").encode()
    need = max(0, size - len(hdr))
    off = rnd.randrange(0, len(pool) - need)
    with open(os.path.join(out, f"2024-01-{day:02d} {subj}.eml"), "wb") as f:
        f.write(hdr + pool[off:off + need])
EOF

gen_big() {
    python3 - "$1" "$2" <<'EOF'
import os, sys
out, mb = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)
hdr = (b"From: Big Sender <big@example.com>\r\nTo: rcpt@example.org\r\nSubject: Big message\r\n"
       b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <big@bench.example.com>\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
line = bytes(range(65, 91)) * 2 + bytes(range(97, 123)) + b"\r\n"
chunk = (line * ((1 << 20) // len(line) + 1))[: 1 << 20]
total = mb << 20
with open(os.path.join(out, "2024-01-01 Big message.eml"), "wb") as f:
    f.write(hdr)
    n = len(hdr)
    while n < total:
        c = chunk[: total - n]
        f.write(c)
        n += len(c)
EOF
}

FSDESC="$(findmnt -n -o FSTYPE,SOURCE,OPTIONS -T "$BASE" | awk '{ print $1, "on", $2, "(" $3 ")" }')"
say "work directory: $WORK: $FSDESC"
if [[ -n ${MSGFS_BENCH_BIN:-} ]]; then
    MSGFS_DESC="$MSGFS (given by MSGFS_BENCH_BIN)"
else
    MSGFS_DESC="$MSGFS, built from $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO" && git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' plus uncommitted changes to src')"
fi
say "msgfs: $MSGFS_DESC"
say "N=$N BIG_MB=$BIG_MB CP_N=$CP_N RSYNC_N=$RSYNC_N RUNS=$RUNS ONLY=$ONLY TRACE=$TRACE"

SMALL=$DATA/small
BIGDIR=$DATA/big
CPSRC=$DATA/cpsrc
if ((RSYNC_N == N)); then RS=small; else RS=rsync; fi
t0=$EPOCHREALTIME
say "generating data (not timed against anything)"
IMPORT=()
if want 1 || want 2 || { want 5 && [[ $RS == small ]]; }; then
    python3 "$GEN" "$SMALL" "$N" 2048 4096 1
    IMPORT+=("$SMALL")
fi
if want 3; then
    gen_big "$BIGDIR" "$BIG_MB"
    IMPORT+=("$BIGDIR")
fi
if want 5 && [[ $RS == rsync ]]; then
    python3 "$GEN" "$DATA/rsync" "$RSYNC_N" 2048 4096 5
    IMPORT+=("$DATA/rsync")
fi
want 4 && python3 "$GEN" "$CPSRC" "$CP_N" 3584 4608 4
want 6 && IMPORT+=("$GREP_SRC")
say "  generated in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"

# Populate the store with `msgfs import` (each directory of .eml files becomes a folder of
# the same name holding the same names and bytes): one process, batched commits. Copying
# through the mount instead saves and syncs every message on its own (figure 4 shows that
# rate), far slower.
"$MSGFS" init "$STORE" >/dev/null
if ((${#IMPORT[@]})); then
    sync
    t0=$EPOCHREALTIME
    "$MSGFS" import "${IMPORT[@]}" --store "$STORE" >"$WORK/import.out" ||
        die "msgfs import failed: $(cat "$WORK/import.out")"
    t1=$EPOCHREALTIME
    say "  store populated with msgfs import: $(head -1 "$WORK/import.out"), $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
fi
do_mount
trace_setup
for d in "${IMPORT[@]}"; do
    # A Maildir tree is not imported name for name (cur/, new/ and file names go).
    [[ $d == "$GREP_SRC" ]] && continue
    f=$(basename "$d")
    if ! cmp -s <(ls -A "$d") <(ls -A "$MNT/$f"); then
        say "warning: $MNT/$f and $d do not hold the same names"
    fi
done

# ---- 1. reading many small messages ------------------------------------------------------

cat_all() { find "$1" -type f -print0 | xargs -0 cat >/dev/null; }

if want 1; then
    say "1. find | xargs cat over $N messages, warm"
    cat_all "$SMALL"
    cat_all "$MNT/small"
    for ((i = 1; i <= RUNS; i++)); do
        for s in $(sides "$i"); do
            if [[ $s == plain ]]; then timed plain:cat cat_all "$SMALL"; else timed msgfs:cat cat_all "$MNT/small"; fi
        done
    done
    result_time "1. xargs cat, $N messages, warm" cat 3
    ls "$MNT/small" | sed -n "1,1000s|^|$MNT/small/|p" | tr '\n' '\0' >"$WORK/first1k"
    traced "1. xargs cat, warm, files" "$(tr -cd '\0' <"$WORK/first1k" | wc -c)" \
        sh -c 'xargs -0 cat < "$1" > /dev/null' - "$WORK/first1k"
    check_daemon "figure 1"
fi

# ---- 2. listing ----------------------------------------------------------------------------

if want 2; then
    say "2. ls -l and find over the folder of $N messages, cold and warm"
    for op in ls find; do
        if [[ $op == ls ]]; then run_op() { ls -l "$1" >/dev/null; }; else run_op() { find "$1" >/dev/null; }; fi
        for ((i = 1; i <= RUNS; i++)); do
            for s in $(sides "$i"); do
                if [[ $s == plain ]]; then
                    drop_caches
                    timed "plain:$op-cold" run_op "$SMALL"
                else
                    remount
                    drop_caches
                    timed "msgfs:$op-cold" run_op "$MNT/small"
                fi
            done
        done
        run_op "$SMALL"
        run_op "$MNT/small"
        for ((i = 1; i <= RUNS; i++)); do
            for s in $(sides "$i"); do
                if [[ $s == plain ]]; then timed "plain:$op-warm" run_op "$SMALL"; else timed "msgfs:$op-warm" run_op "$MNT/small"; fi
            done
        done
    done
    result_time "2. ls -l, $N entries, cold" ls-cold ""
    result_time "2. ls -l, $N entries, warm" ls-warm 1.5
    result_time "2. find, $N entries, cold" find-cold ""
    result_time "2. find, $N entries, warm" find-warm 1.5
    if [[ $TRACE == 1 ]]; then
        run_op() { ls -l "$1" >/dev/null; }
        traced "2. ls -l, warm, entries" "$N" run_op "$MNT/small"
        remount
        drop_caches
        traced "2. ls -l, cold, entries" "$N" run_op "$MNT/small"
        run_op() { find "$1" >/dev/null; }
        traced "2. find, warm, entries" "$N" run_op "$MNT/small"
        remount
        drop_caches
        traced "2. find, cold, entries" "$N" run_op "$MNT/small"
    fi
    check_daemon "figure 2"
fi

# ---- 3. large sequential read ----------------------------------------------------------------

if want 3; then
    say "3. sequential read of a $BIG_MB MB message, warm"
    BIGF="2024-01-01 Big message.eml"
    cat "$BIGDIR/$BIGF" >/dev/null
    cat "$MNT/big/$BIGF" >/dev/null
    for ((i = 1; i <= RUNS; i++)); do
        for s in $(sides "$i"); do
            if [[ $s == plain ]]; then
                timed plain:big sh -c 'cat "$1" > /dev/null' - "$BIGDIR/$BIGF"
            else
                timed msgfs:big sh -c 'cat "$1" > /dev/null' - "$MNT/big/$BIGF"
            fi
        done
    done
    result_rate "3. cat of a $BIG_MB MB message, warm" big ">=0.8" "$BIG_MB"
    traced "3. cat of the large message, warm" 1 sh -c 'cat "$1" > /dev/null' - "$MNT/big/$BIGF"
    check_daemon "figure 3"
fi

# ---- 5. rsync out of the mount --------------------------------------------------------------

if want 5; then
    say "5. rsync -a of the $RSYNC_N-message folder to a plain directory, then a no-op rsync"
    for ((i = 1; i <= RUNS; i++)); do
        for s in $(sides "$i"); do
            if [[ $s == plain ]]; then src=$DATA/$RS/; else src=$MNT/$RS/; fi
            # A fresh target each run. Nothing is deleted before the end: ext4 avoids reusing
            # recently freed inodes, and after a mass delete creating files gets slow for
            # minutes (recently_deleted() in the allocator), which would skew later runs.
            sync
            timed "$s:rsync" rsync -a "$src" "$OUT/rsync-$s-$i/"
            timed "$s:rsync-noop" rsync -a "$src" "$OUT/rsync-$s-$i/"
        done
    done
    result_time "5. rsync -a, $RSYNC_N messages" rsync ""
    result_time "5. rsync -a again (no-op), $RSYNC_N messages" rsync-noop 1.5
    traced "5. rsync -a no-op, files" "$RSYNC_N" rsync -a "$MNT/$RS/" "$OUT/rsync-msgfs-1/"
    check_daemon "figure 5"
fi

# ---- 4. cp -r into the mount ---------------------------------------------------------------

cp_sync() { cp -r "$1" "$2" && sync -f "$2"; }
cp_rsync() { rsync -a "$1" "$2" && sync -f "$2"; }

# ceiling_mount [FLAGS] SRC: mount the in-memory FUSE ceiling (benches/fuse_ceiling.rs) of
# SRC at $CEIL_MNT; ceiling_umount takes it away.
ceiling_mount() {
    mkdir -p "$CEIL_MNT"
    "$CEILING" "$@" "$CEIL_MNT" 2>"$WORK/ceiling.err" &
    CEIL_PID=$!
    for ((k = 0; k < 100; k++)); do grep -qs " $CEIL_MNT " /proc/mounts && break; sleep 0.05; done
    grep -qs " $CEIL_MNT " /proc/mounts || die "fuse_ceiling did not mount: $(cat "$WORK/ceiling.err")"
}
ceiling_umount() {
    umount "$CEIL_MNT"
    wait "$CEIL_PID" 2>/dev/null || true
    CEIL_PID=""
}

if want 4; then
    say "4. cp -r of $CP_N .eml files into the mount / into a plain directory (fresh target each run)"
    for ((i = 1; i <= RUNS; i++)); do
        for s in $(sides "$i"); do
            if [[ $s == plain ]]; then
                mkdir -p "$OUT/cp"
                sync
                timed plain:cp cp -r "$CPSRC" "$OUT/cp/run$i"
                # The same copy made durable, as every save through msgfs is: a reference,
                # not a figure the issue asks for.
                sync
                timed plain:cp-sync cp_sync "$CPSRC" "$OUT/cp/run$i-sync"
            else
                sync
                timed msgfs:cp cp -r "$CPSRC" "$MNT/cp-run$i"
            fi
        done
    done
    TIMES[msgfs:cp-sync]=${TIMES[msgfs:cp]}
    DCPU[msgfs:cp-sync]=${DCPU[msgfs:cp]}
    # The same copy into a mount with -o commit=lazy (saves durable within 50 ms, one log
    # sync for many), against the same plain figures.
    do_umount
    do_mount "$STORE" commit=lazy
    for ((i = 1; i <= RUNS; i++)); do
        sync
        timed msgfs:cp-lazy cp -r "$CPSRC" "$MNT/cp-lazy-run$i"
    done
    do_umount
    do_mount "$STORE"
    TIMES[plain:cp-lazy]=${TIMES[plain:cp-sync]}
    DCPU[plain:cp-lazy]=${DCPU[plain:cp-sync]:-}
    # rsync -a of the same tree into the mount: each file is written under a temporary
    # name and renamed over its own, which commits it (durable mode).
    for ((i = 1; i <= RUNS; i++)); do
        for s in $(sides "$i"); do
            sync
            if [[ $s == plain ]]; then
                timed plain:rsync-in cp_rsync "$CPSRC/" "$OUT/cp/rsync-run$i/"
            else
                timed msgfs:rsync-in rsync -a "$CPSRC/" "$MNT/rsync-in-run$i/"
            fi
        done
    done
    # The ceiling: cp -r into a minimal in-memory FUSE filesystem (nothing durable).
    mkdir -p "$WORK/empty"
    ceiling_mount --writable "$WORK/empty"
    for ((i = 1; i <= RUNS; i++)); do
        sync
        timed ceiling:cp cp -r "$CPSRC" "$CEIL_MNT/run$i"
    done
    diff -rq "$CPSRC" "$CEIL_MNT/run1" >/dev/null || die "fuse_ceiling holds other bytes than were copied in"
    # And rsync -a into it: a temporary file per message, renamed into place.
    for ((i = 1; i <= RUNS; i++)); do
        sync
        timed ceiling:rsync-in rsync -a "$CPSRC/" "$CEIL_MNT/rsync-run$i/"
    done
    diff -rq "$CPSRC" "$CEIL_MNT/rsync-run1" >/dev/null || die "fuse_ceiling holds other bytes than rsync wrote"
    ceiling_umount
    result_time "4. cp -r of $CP_N .eml files" cp ""
    result_time "4. (same; plain side: cp -r && sync -f)" cp-sync 4
    result_time "4. (same, msgfs -o commit=lazy; plain side: cp -r && sync -f)" cp-lazy 2
    result_time "4. rsync -a of the same into the mount (plain: && sync -f)" rsync-in 4
    result_ceiling "4. in-memory FUSE, cp -r (plain: cp -r)" cp cp-lazy
    result_ceiling "4. in-memory FUSE, rsync -a (plain: && sync -f)" rsync-in rsync-in
    mkdir "$MNT/cp-trace"
    find "$CPSRC" -type f | sed -n 1,1000p >"$WORK/cp1k"
    traced "4. cp into the mount, files" "$(wc -l <"$WORK/cp1k")" \
        sh -c 'xargs -d "\n" cp -t "$1" < "$2"' - "$MNT/cp-trace" "$WORK/cp1k"
    check_daemon "figure 4"
fi

# ---- 6. grep -r over a mail corpus: read-write and read-only mounts, warm and cold -------

# A pattern found nowhere: grep reads every byte of every file. Exit status 1 is "no match".
GREP_PAT=msgfs-bench-no-such-string
grep_all() {
    local rc=0
    grep -rl -e "$GREP_PAT" "$1" >/dev/null || rc=$?
    ((rc <= 1)) || die "grep -r $1 failed"
}

# grep_ten DIR: grep_all ten times (a warm grep of a small tree takes a few milliseconds,
# most of them starting grep: one run alone is mostly noise).
grep_ten() {
    local k
    for ((k = 0; k < 10; k++)); do grep_all "$1"; done
}

# grep_figure KEY PLAIN MOUNTED [WARM]: warm runs of WARM (default grep_all), then cold runs
# of grep_all, on each side. Cold: for plain, drop_caches; for msgfs, unmount, mount again
# as before, then the same.
grep_figure() {
    local key=$1 plain=$2 mounted=$3 warm=${4:-grep_all} i s
    grep_all "$plain"
    grep_all "$mounted"
    for ((i = 1; i <= RUNS; i++)); do
        for s in $(sides "$i"); do
            if [[ $s == plain ]]; then timed "plain:$key-warm" "$warm" "$plain"; else timed "msgfs:$key-warm" "$warm" "$mounted"; fi
        done
    done
    for ((i = 1; i <= RUNS; i++)); do
        for s in $(sides "$i"); do
            if [[ $s == plain ]]; then
                drop_caches
                timed "plain:$key-cold" grep_all "$plain"
            else
                remount
                drop_caches
                timed "msgfs:$key-cold" grep_all "$mounted"
            fi
        done
    done
}

if want 6; then
    G=$(basename "$GREP_SRC")
    NG=$(find "$MNT/$G" -type f | wc -l)
    say "6. grep -r over $NG messages (the SpamAssassin corpus), warm and cold; read-write, then read-only"
    # The plain side: the files as the mount shows them (same names, same bytes).
    cp -r "$MNT/$G" "$DATA/grep"
    diff -rq "$DATA/grep" "$MNT/$G" >/dev/null || die "the plain copy of $G differs from the mount"
    grep_figure grep-rw "$DATA/grep" "$MNT/$G"
    grep_all "$MNT/$G" # warm again: the last cold run may have been the plain side's
    traced "6. grep -r, read-write, warm, files" "$NG" grep_all "$MNT/$G"
    remount
    drop_caches
    traced "6. grep -r, read-write, cold, files" "$NG" grep_all "$MNT/$G"
    check_daemon "figure 6 (read-write)"
    do_umount
    do_mount "$STORE" ro
    grep_figure grep-ro "$DATA/grep" "$MNT/$G"
    grep_all "$MNT/$G"
    traced "6. grep -r, read-only, warm, files" "$NG" grep_all "$MNT/$G"
    remount
    drop_caches
    traced "6. grep -r, read-only, cold, files" "$NG" grep_all "$MNT/$G"
    diff -rq "$DATA/grep" "$MNT/$G" >/dev/null || die "the read-only mount shows other bytes than the plain copy"
    check_daemon "figure 6 (read-only)"
    # The ceiling: the same files served from memory by a minimal FUSE filesystem, first
    # answering every OPEN (as a read-write msgfs mount must), then with the kernel's no_open
    # (as msgfs -o ro).
    for mode in open no-open; do
        if [[ $mode == open ]]; then ceiling_mount "$DATA/grep"; else ceiling_mount --no-open "$DATA/grep"; fi
        diff -rq "$DATA/grep" "$CEIL_MNT" >/dev/null || die "fuse_ceiling shows other bytes than the plain copy"
        grep_all "$CEIL_MNT"
        for ((i = 1; i <= RUNS; i++)); do
            for s in $(sides "$i"); do
                if [[ $s == plain ]]; then timed "plain:ceil-$mode-warm" grep_all "$DATA/grep"; else timed "ceiling:ceil-$mode-warm" grep_all "$CEIL_MNT"; fi
            done
        done
        ceiling_umount
    done
    result_time "6. grep -r, $NG msgs, read-write, warm" grep-rw-warm 4
    result_time "6. grep -r, $NG msgs, read-write, cold" grep-rw-cold 1.5
    result_time "6. grep -r, $NG msgs, read-only, warm" grep-ro-warm 1.2
    result_time "6. grep -r, $NG msgs, read-only, cold" grep-ro-cold 1.5
    result_ceiling "6. in-memory FUSE, answers OPEN, warm" ceil-open-warm grep-rw-warm
    result_ceiling "6. in-memory FUSE, no_open, warm" ceil-no-open-warm grep-ro-warm
fi

# ---- 7. grep -r over a mounted PST, against the same files exported ----------------------

if want 7; then
    do_umount
    do_mount "$PST_SRC"
    NP=$(find "$MNT" -type f | wc -l)
    say "7. grep -r over the $NP messages of $(basename "$PST_SRC") mounted, warm and cold"
    cp -r "$MNT" "$DATA/pst"
    diff -rq "$DATA/pst" "$MNT" >/dev/null || die "the plain copy of the PST differs from the mount"
    grep_figure grep-pst "$DATA/pst" "$MNT" grep_ten
    grep_all "$MNT"
    traced "7. grep -r, PST, warm, files" "$NP" grep_all "$MNT"
    remount
    drop_caches
    traced "7. grep -r, PST, cold, files" "$NP" grep_all "$MNT"
    check_daemon "figure 7"
    result_time "7. grep -r x10, PST ($NP msgs), warm" grep-pst-warm 1.2
    result_time "7. grep -r, PST ($NP msgs), cold" grep-pst-cold ""
fi

# ---- report ---------------------------------------------------------------------------------

echo
echo "msgfs mount benchmark: medians of $RUNS runs; ratio = msgfs / plain (time), or msgfs MB/s / plain MB/s"
echo "$(nproc) CPUs, kernel $(uname -r), $FSDESC, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "msgfs $MSGFS_DESC"
echo
printf '%-46s %11s %11s %8s  %-8s %-7s %s\n' figure plain msgfs ratio goal "" "daemon CPU s"
for r in "${RESULTS[@]}"; do echo "$r"; done
if ((${#TRACE_ROWS[@]})); then
    echo
    echo "FUSE requests reaching the daemon, one traced run each (kernel tracepoint fuse:fuse_request_send):"
    echo "total, and (per file or entry) where at least 0.01"
    for r in "${TRACE_ROWS[@]}"; do echo "  $r"; done
fi
echo
echo "The in-memory FUSE rows (figures 4, 6) are benches/fuse_ceiling.rs holding the same files in memory"
echo "in the same run: what FUSE itself allows here (with and without an OPEN per file for grep)."

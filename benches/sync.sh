#!/usr/bin/env bash
# benches/sync.sh: `msgfs sync` against mbsync (isync) on the same local Dovecot IMAP server,
# side by side. Prints, for each figure, the median of RUNS timed runs of each tool and the
# ratio msgfs/mbsync (wall time), mbsync in two configurations: `FSync yes` (its default:
# every message synced to disk, as msgfs always does) and `FSync no`; also each client's CPU
# time (user + system). A benchmark, not a test: it asserts nothing about speed, only that
# each run did what it should (the summaries and message counts; a mismatch is listed under
# PROBLEMS and the exit status is 1). Needs dovecot (dovecot-imapd), mbsync (isync), python3,
# and as root setpriv (Dovecot then runs as nobody).
#
#   benches/sync.sh                                   # full run: 2.5 minutes on 2 cores (5 under load)
#   MSGFS_BENCH_N=2000 MSGFS_BENCH_RUNS=3 benches/sync.sh   # quick run: about a minute
#
# Figures (Dovecot keeps its mail on the same disk, with mail_fsync = never, so the server's
# side costs the same for both tools; mbsync pulls into / pushes from a Maildir):
#   1. initial sync of an N-message INBOX (2-20 KB, one in a hundred 100 KB-1 MB) into an empty
#      store / empty Maildir; for msgfs also the time from its start until all names are
#      listed (the end of its headers pass; the bodies follow).
#   2. a run with nothing to do, right after.
#   3. a run after 10 changes on the server (5 \Flagged toggles by UID STORE, 5 new
#      messages), fresh changes before each round.
#   4. upload: an N-message folder (for msgfs imported into a fresh store with `msgfs import`,
#      not timed; for mbsync a fresh copy of the same Maildir) pushed to the empty server
#      folder of a fresh user.
# The tools take turns going first. Round 0 of 1 and 3 is an untimed warm-up (the first
# fetch of the seeded mailbox's headers makes Dovecot build its cache). mbsync sleeps a
# second when its Maildir changed within the current second; each mbsync run on an existing
# Maildir waits until its last change is 1.1 s old, as a real run would be.
# Deleting many files slows file creation on ext4 for minutes afterwards (the inode allocator
# avoids recently freed inodes; see benches/README.md), and at N = 10000 the work directory
# grows to about 7 GB in 500,000 files (every run keeps its store, Maildir and server
# account), all deleted at the end: wait 5 minutes or more before running it again, and keep
# other work off the machine (the load averages are printed).
#
# Knobs (environment):
#   MSGFS_BENCH_N      messages in the mailbox (1) and in the uploaded folder (4)      10000
#   MSGFS_BENCH_RUNS   timed runs per tool and figure (medians)                       5
#   MSGFS_BENCH_DIR    where the work directory goes (a real disk, not tmpfs)        /var/tmp
#   MSGFS_BENCH_ONLY   figures to run, e.g. 14 (2 and 3 need 1, which is then added) 1234
#   MSGFS_BENCH_BIN    a built msgfs binary to use instead of cargo build           (build)
#   MSGFS_BENCH_KEEP   1: keep the work directory (stores, Maildirs, logs) at the end  0
set -euo pipefail
export LC_ALL=C

N=${MSGFS_BENCH_N:-10000}
RUNS=${MSGFS_BENCH_RUNS:-5}
BASE=${MSGFS_BENCH_DIR:-/var/tmp}
ONLY=${MSGFS_BENCH_ONLY:-1234}
KEEP=${MSGFS_BENCH_KEEP:-0}
CHANGES_NEW=5   # figure 3: new messages per run
CHANGES_FLAGS=5 # figure 3: flag changes per run
PASS=bench-pass # no spaces: the static passdb takes it from its args line

say() { printf '%s\n' "$*" >&2; }
die() { say "sync.sh: $*"; exit 1; }
want() { [[ $ONLY == *"$1"* ]]; }
# Figures 2 and 3 start from the stores and Maildirs figure 1 leaves.
if want 2 || want 3; then want 1 || ONLY+=1; fi

DOVECOT=$(PATH=$PATH:/usr/sbin:/sbin command -v dovecot) || die "dovecot is missing (apt-get install dovecot-imapd)"
MBSYNC=$(command -v mbsync) || die "mbsync is missing (apt-get install isync)"
for p in python3 awk; do
    command -v "$p" >/dev/null || die "$p is missing"
done
ROOT=0
if [[ $(id -u) == 0 ]]; then
    ROOT=1
    command -v setpriv >/dev/null || die "setpriv is missing (util-linux): as root, Dovecot must run as nobody"
fi
((N >= 100)) || die "MSGFS_BENCH_N=$N: at least 100"
((RUNS >= 3)) || say "note: MSGFS_BENCH_RUNS=$RUNS; the figures are meant as medians of 3 or more runs"
BASE=$(realpath -e "$BASE") || die "no directory $BASE"
[[ $(stat -f -c %T "$BASE") != tmpfs ]] || die "$BASE is a tmpfs; set MSGFS_BENCH_DIR to a directory on a real disk"
# About 0.12 MB per message and round (7.2 GB for N = 10000, RUNS = 5), plus a margin.
need_mb=$((N * (RUNS + 1) * 3 / 20 + 1024))
free_mb=$(df -Pm "$BASE" | awk 'NR == 2 { print $4 }')
((free_mb > need_mb)) || die "$BASE has $free_mb MB free; the run needs about $need_mb MB"

REPO=$(cd "$(dirname "$0")/.." && pwd)
if [[ -n ${MSGFS_BENCH_BIN:-} ]]; then
    MSGFS=$(realpath "$MSGFS_BENCH_BIN")
    MSGFS_DESC="$MSGFS (given by MSGFS_BENCH_BIN)"
else
    say "building: cargo build --release"
    (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
    MSGFS=$REPO/target/release/msgfs
    MSGFS_DESC="$MSGFS, built from $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO" && git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' plus uncommitted changes to src')"
fi
[[ -x $MSGFS ]] || die "$MSGFS is not an executable"

WORK=$(mktemp -d "$BASE/msgfs-sync-bench.XXXXXX")
# Dovecot (nobody, when we are root) must reach its directory below the work directory.
chmod 711 "$WORK"
DOV=$WORK/dovecot
LOGS=$WORK/logs
mkdir -p "$DOV"/{run,state,mail,home} "$LOGS" "$WORK/conf"
# msgfs keeps nothing outside its store here, but keep any state file out of ~ anyway.
export XDG_STATE_HOME=$WORK/state
DOVECOT_PID=""

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [[ -n $DOVECOT_PID ]]; then
        # The master leads its own process group (setsid), which holds only it and its
        # children: end that group. A benchmark server has nothing to save.
        kill -KILL -- "-$DOVECOT_PID" 2>/dev/null
        wait "$DOVECOT_PID" 2>/dev/null
    fi
    if ((rc != 0)); then
        say "sync.sh: failed; the last lines of Dovecot's log:"
        tail -5 "$DOV/dovecot.log" >&2 2>/dev/null
    fi
    if [[ $KEEP == 1 ]]; then
        say "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- helpers: medians, timing ---------------------------------------------------------------

median() {
    tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'
}
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
declare -A TIMES=() CPUS=()
# record KEY: the last run's wall time and CPU time (user + system) under KEY.
record() {
    TIMES[$1]+="$RUN_SECS "
    CPUS[$1]+="$RUN_CPU "
}
# cpu_of FILE: user + system seconds from the children's line of the `times` builtin.
cpu_of() { awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); s += a[1] * 60 + a[2] } printf "%.2f", s }' "$1"; }
# Each round the tools take turns going first (msgfs, mbsync FSync yes, no; then the other
# way round), so a drift in the machine's load hits them all alike.
order() { if (($1 % 2)); then echo "msgfs yes no"; else echo "no yes msgfs"; fi; }

# ---- the IMAP helper: data generation, seeding, server-side changes, counts -----------------

PY=$WORK/imap.py
cat >"$PY" <<'EOF'
import base64, datetime, os, random, re, socket, sys

WORDS = ("the of and to in is that for it as with was on be by at this have from or one had not but what "
         "all were when we there can an your which their said if do will each about how up out them then she "
         "many some so these would other into has more her two like him see time could no make than first "
         "been its who now people my made over did down only way find use may water long little very after "
         "words called just where most know meeting report budget quarter review draft attached").split()
FLAGS = ["\\Seen"] * 6 + ["\\Seen \\Answered", "\\Seen \\Flagged", "", ""]


def messages(n, seed):
    """(flags, bytes) for n messages: 2-20 KB log-uniform text, one in a hundred a 100 KB-1 MB
    message with a base64 attachment; CRLF line ends, unique Message-ID, a Date."""
    rnd = random.Random(seed)
    pool = "".join(" ".join(rnd.choice(WORDS) for _ in range(12)) + "\r\n" for _ in range(6000)).encode()
    t0 = datetime.datetime(2024, 1, 1, 8, 0, tzinfo=datetime.timezone.utc)
    for i in range(n):
        date = (t0 + datetime.timedelta(minutes=7 * i + seed * 100000)).strftime("%a, %d %b %Y %H:%M:%S +0000")
        big = i % 100 == 57
        hdr = (f"From: Sender {i % 97} <sender{i % 97}@example.com>\r\nTo: Bench <rcpt@example.org>\r\n"
               f"Subject: Bench message {seed}-{i:06d} {rnd.choice(WORDS)} {rnd.choice(WORDS)}\r\nDate: {date}\r\n"
               f"Message-ID: <{seed}.{i}.{rnd.randrange(1 << 30):x}@bench.example.com>\r\nMIME-Version: 1.0\r\n")
        size = int(2048 * 10 ** rnd.random())
        if not big:
            hdr += "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            need = max(0, size - len(hdr))
            off = rnd.randrange(0, len(pool) - need)
            msg = hdr.encode() + pool[off:off + need]
        else:
            att = base64.encodebytes(rnd.randbytes(rnd.randrange(75_000, 750_000))).replace(b"\n", b"\r\n")
            off = rnd.randrange(0, len(pool) - 4000)
            msg = (hdr + "Content-Type: multipart/mixed; boundary=\"b-bench\"\r\n\r\n--b-bench\r\n"
                   "Content-Type: text/plain; charset=us-ascii\r\n\r\n").encode() + pool[off:off + 3000] + \
                  (b"\r\n--b-bench\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n"
                   b"Content-Transfer-Encoding: base64\r\n\r\n") + att + b"--b-bench--\r\n"
        yield FLAGS[rnd.randrange(len(FLAGS))], msg


class Imap:
    def __init__(self, port, user, pw):
        self.s = socket.create_connection(("127.0.0.1", int(port)))
        self.f = self.s.makefile("rb")
        self.n = 0
        if not self.f.readline().startswith(b"* OK"):
            raise SystemExit("no IMAP greeting")
        self.cmd('LOGIN "%s" "%s"' % (user, pw))

    def send(self, body):
        self.n += 1
        tag = b"t%d" % self.n
        self.s.sendall(tag + b" " + body + b"\r\n")
        return tag

    def finish(self, tag):
        out = []
        while True:
            line = self.f.readline()
            if not line:
                raise SystemExit("server closed the connection")
            if line.startswith(tag + b" "):
                if line.split()[1] != b"OK":
                    raise SystemExit("IMAP: %r" % line)
                return out
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if m:
                self.f.read(int(m.group(1)))
            out.append(line)

    def cmd(self, text):
        return self.finish(self.send(text.encode()))

    def append(self, mailbox, msgs):
        """MULTIAPPEND with LITERAL+: one round trip for the lot."""
        body = [b"APPEND " + mailbox.encode()]
        for flags, m in msgs:
            body.append(b" (%s) {%d+}\r\n" % (flags.encode(), len(m)))
            body.append(m)
        self.finish(self.send(b"".join(body)))

    def count(self, mailbox):
        for line in self.cmd("STATUS %s (MESSAGES)" % mailbox):
            m = re.search(rb"MESSAGES (\d+)", line)
            if m:
                return int(m.group(1))
        raise SystemExit("no STATUS reply")


def main():
    op, args = sys.argv[1], sys.argv[2:]
    if op == "port":                       # a free loopback port
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])
    elif op == "ready":                    # PORT: wait for the greeting (10 s)
        import time
        end = time.time() + 10
        while time.time() < end:
            try:
                with socket.create_connection(("127.0.0.1", int(args[0])), timeout=2) as s:
                    if s.makefile("rb").readline().startswith(b"* OK"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise SystemExit("Dovecot not ready after 10 s")
    elif op == "seed":                     # PORT USER PW MAILBOX N SEED: append; prints bytes
        port, user, pw, mailbox, n, seed = args
        c = Imap(port, user, pw)
        total, batch = 0, []
        for flags, m in messages(int(n), int(seed)):
            batch.append((flags, m))
            total += len(m)
            if len(batch) == 500:
                c.append(mailbox, batch)
                batch = []
        if batch:
            c.append(mailbox, batch)
        print(total)
    elif op == "maildir":                  # DIR N SEED: the same kind of messages as a Maildir; prints bytes
        out, n, seed = args[0], int(args[1]), int(args[2])
        for d in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(out, d), exist_ok=True)
        letters = {"\\Seen": "S", "\\Answered": "R", "\\Flagged": "F"}
        total = 0
        for i, (flags, m) in enumerate(messages(n, seed)):
            info = "".join(sorted(letters[f] for f in flags.split()))
            with open(os.path.join(out, "cur", f"{1700000000 + i}.M{i}P1.bench:2,{info}"), "wb") as f:
                f.write(m)
            total += len(m)
        print(total)
    elif op == "changes":                  # PORT USER PW MAILBOX ROUND NFLAGS NNEW: server-side changes
        port, user, pw, mailbox, rnd_, nflags, nnew = args
        rnd_, nflags, nnew = int(rnd_), int(nflags), int(nnew)
        c = Imap(port, user, pw)
        c.cmd("SELECT %s" % mailbox)
        uids = [int(x) for line in c.cmd("UID SEARCH ALL") if line.startswith(b"* SEARCH")
                for x in line.split()[2:]]
        pick = random.Random(1000 + rnd_).sample(uids, nflags)
        for uid in pick:                   # toggle \Flagged: a change both tools carry
            flagged = any(b"\\Flagged" in l for l in c.cmd("UID FETCH %d FLAGS" % uid))
            c.cmd("UID STORE %d %sFLAGS.SILENT (\\Flagged)" % (uid, "-" if flagged else "+"))
        c.append(mailbox, list(messages(nnew, 500 + rnd_)))
        c.cmd("LOGOUT")
    elif op == "list":                   # PORT USER PW: the user's mailboxes, one a line
        port, user, pw = args
        for line in Imap(port, user, pw).cmd('LIST "" "*"'):
            print(line.decode().rstrip())
    elif op == "count":                    # PORT USER PW MAILBOX: messages in it
        port, user, pw, mailbox = args
        print(Imap(port, user, pw).count(mailbox))
    else:
        raise SystemExit("unknown op " + op)


main()
EOF
imap() { python3 "$PY" "$@"; }

# ---- Dovecot ---------------------------------------------------------------------------------

if ((ROOT)); then RUN_USER=nobody; else RUN_USER=$(id -un); fi
RUN_UID=$(id -u "$RUN_USER")
RUN_GID=$(id -g "$RUN_USER")
RUN_GROUP=$(id -gn "$RUN_USER")
PORT=$(imap port)
# The fixture's configuration (tests/common/dovecot.rs), without TLS; any user name logs in
# with $PASS (a static passdb), so each upload run gets a fresh, empty account.
cat >"$DOV/dovecot.conf" <<EOF
protocols = imap
listen = 127.0.0.1
base_dir = $DOV/run
state_dir = $DOV/state
log_path = $DOV/dovecot.log
mail_fsync = never
default_login_user = $RUN_USER
default_internal_user = $RUN_USER
default_internal_group = $RUN_GROUP
auth_mechanisms = plain login
disable_plaintext_auth = no
auth_failure_delay = 0
ssl = no
mail_location = sdbox:$DOV/mail/%u:LAYOUT=index
passdb {
  driver = static
  args = password=$PASS
}
userdb {
  driver = static
  args = uid=$RUN_UID gid=$RUN_GID home=$DOV/home/%u
}
namespace inbox {
  inbox = yes
  separator = .
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Junk {
    special_use = \\Junk
    auto = subscribe
  }
}
service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = $PORT
  }
}
service anvil {
  chroot =
}
service stats {
  unix_listener stats-reader {
    user = $RUN_USER
  }
  unix_listener stats-writer {
    user = $RUN_USER
  }
}
EOF
if ((ROOT)); then
    chown -R "$RUN_UID:$RUN_GID" "$DOV"
    chmod 700 "$DOV"
    setsid setpriv --reuid="$RUN_UID" --regid="$RUN_GID" --clear-groups \
        "$DOVECOT" -F -c "$DOV/dovecot.conf" </dev/null >/dev/null 2>"$WORK/dovecot.stderr" &
else
    setsid "$DOVECOT" -F -c "$DOV/dovecot.conf" </dev/null >/dev/null 2>"$WORK/dovecot.stderr" &
fi
DOVECOT_PID=$!
imap ready "$PORT" || die "Dovecot did not start: $(cat "$WORK/dovecot.stderr")"
say "Dovecot $("$DOVECOT" --version | cut -d' ' -f1) on 127.0.0.1:$PORT (pid $DOVECOT_PID, as $RUN_USER)"

# ---- the two clients -------------------------------------------------------------------------

# msgfs_conf USER: the accounts file for USER (stores are given per run with --store).
msgfs_conf() {
    local f=$WORK/conf/msgfs-$1.toml
    cat >"$f" <<EOF
[account.bench]
host = "127.0.0.1"
port = $PORT
tls = "none"
user = "$1"
store = "$WORK/unused-store"
folders = ["*"]
max_deletes = "100%"
EOF
    printf '%s\n' "$f"
}

# mbsync_conf USER MAILDIR FSYNC: the mbsync configuration for USER into MAILDIR (channel bench).
mbsync_conf() {
    local f
    f=$WORK/conf/mbsync-$1-$(basename "$2")-$3.rc
    mkdir -p "$2"
    cat >"$f" <<EOF
FSync $3

IMAPAccount bench
Host 127.0.0.1
Port $PORT
User $1
Pass "$PASS"
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account bench

MaildirStore local
Path $2/
Inbox $2/INBOX
SubFolders Verbatim

Channel bench
Far :remote:
Near :local:
Patterns *
Sync All
Create Both
Expunge Both
SyncState *
EOF
    printf '%s\n' "$f"
}

# run_msgfs KEY CONF STORE ARGS...: one timed `msgfs sync`; its stdout (the summary) goes to
# $LOGS/KEY.out, its stderr (RUST_LOG=info), each line stamped with the time it arrived, to
# $LOGS/KEY.err. Sets RUN_SECS (process start to exit) and HDR_SECS (start to the line saying
# INBOX's headers are in: all names listed), and fails on a nonzero exit.
run_msgfs() {
    local key=$1 conf=$2 store=$3 t0 t1 rc
    shift 3
    local out=$LOGS/$key.out err=$LOGS/$key.err
    rc=0
    t0=$EPOCHREALTIME
    # (pipefail: rc is msgfs's exit status; the stamping loop exits 0)
    (
        RUST_LOG=info MSGFS_IMAP_PASSWORD=$PASS "$MSGFS" sync --config "$conf" --store "$store" "$@" 2>&1 >"$out"
        r=$?
        times >"$LOGS/$key.cpu" # line 2: the CPU time of this subshell's children, msgfs
        exit $r
    ) | while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done >"$err" || rc=$?
    t1=$EPOCHREALTIME
    RUN_SECS=$(calc %.3f "$t1 - $t0")
    RUN_CPU=$(cpu_of "$LOGS/$key.cpu")
    HDR_SECS=$(awk -v t0="$t0" '/ Inbox: [0-9]+ headers in / { printf "%.3f", $1 - t0; exit }' "$err")
    if [[ $rc != 0 ]]; then
        say "msgfs sync failed (exit $rc): MSGFS_IMAP_PASSWORD=... $MSGFS sync --config $conf --store $store $*"
        sed 's/^/  stdout: /' "$out" >&2
        sed 's/^[0-9.]* /  stderr: /' "$err" | tail -20 >&2
        return 1
    fi
}

# mbsync's Maildir driver sleeps a second when a directory it scans was modified within
# the current second ("Maildir notice: sleeping due to recent directory modification"), to
# be sure it sees every file. Back to back runs would always pay it; a real run follows the
# last change by more than that. So before each timed run on an existing Maildir, wait
# until its last change (our copy, or mbsync's previous run) is 1.1 s old.
declare -A MD_CHANGED=()
settle() {
    local w
    w=$(awk -v l="${MD_CHANGED[$1]:-0}" -v n="$EPOCHREALTIME" 'BEGIN { w = l + 1.1 - n; printf "%.3f", (w > 0) ? w : 0 }')
    sleep "$w"
}
MB_SLEPT=0

# run_mbsync KEY CONF MAILDIR: one timed mbsync run of the channel; sets RUN_SECS.
run_mbsync() {
    local key=$1 conf=$2 md=$3 t0 t1
    settle "$md"
    t0=$EPOCHREALTIME
    if ! (
        "$MBSYNC" -c "$conf" bench >"$LOGS/$key.out" 2>&1
        r=$?
        times >"$LOGS/$key.cpu"
        exit $r
    ); then
        say "mbsync failed: $MBSYNC -c $conf bench"
        sed 's/^/  /' "$LOGS/$key.out" >&2
        return 1
    fi
    t1=$EPOCHREALTIME
    MD_CHANGED[$md]=$t1
    RUN_SECS=$(calc %.3f "$t1 - $t0")
    RUN_CPU=$(cpu_of "$LOGS/$key.cpu")
    if grep -q 'sleeping due to recent' "$LOGS/$key.out"; then
        MB_SLEPT=$((MB_SLEPT + 1))
        say "  note: mbsync slept a second (recent Maildir change) in $key"
    fi
}

# expect_summary KEY PATTERN: msgfs's summary (stdout) must match PATTERN (grep -E).
PROBLEMS=()
expect_summary() {
    if ! grep -Eq "$2" "$LOGS/$1.out"; then
        PROBLEMS+=("$1: msgfs sync's summary does not match /$2/: $(tr '\n' '|' <"$LOGS/$1.out")")
        say "  PROBLEM: ${PROBLEMS[-1]}"
    fi
}
# expect_count WHAT GOT WANT
expect_count() {
    if [[ $2 != "$3" ]]; then
        PROBLEMS+=("$1: $2 messages, expected $3")
        say "  PROBLEM: ${PROBLEMS[-1]}"
    fi
}
maildir_count() { find "$1" \( -path '*/cur/*' -o -path '*/new/*' \) -type f | grep -c . || true; }
# Messages in a store, from `msgfs check` (which also verifies every record and checksum).
store_count() {
    "$MSGFS" check "$1" >"$LOGS/check.out" 2>&1 || {
        PROBLEMS+=("msgfs check $1 failed: $(tr '\n' '|' <"$LOGS/check.out")")
        say "  PROBLEM: ${PROBLEMS[-1]}"
    }
    grep -Eo '[0-9]+ messages' "$LOGS/check.out" | head -1 | cut -d' ' -f1
}

FSDESC="$(findmnt -n -o FSTYPE,SOURCE,OPTIONS -T "$BASE" | awk '{ print $1, "on", $2, "(" $3 ")" }')"
say "work directory: $WORK: $FSDESC"
say "msgfs: $MSGFS_DESC"
say "mbsync: $("$MBSYNC" --version)"
say "N=$N RUNS=$RUNS ONLY=$ONLY"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

SEEDUSER=seed
MSGFS_SEED_CONF=$(msgfs_conf "$SEEDUSER")

# ---- 1. initial sync -------------------------------------------------------------------------

# Round 0 of figures 1 and 3 is a warm-up, not timed: the first fetch of the seeded
# mailbox's headers makes Dovecot parse every message and fill its cache (msgfs's headers
# pass took 4 s instead of 0.7 s for 10,000 messages when it came first).
if want 1; then
    t0=$EPOCHREALTIME
    BYTES=$(imap seed "$PORT" "$SEEDUSER" "$PASS" INBOX "$N" 1)
    MB=$(calc %.1f "$BYTES / 1e6")
    say "seeded INBOX of user $SEEDUSER: $N messages, $MB MB, in $(calc %.1f "$EPOCHREALTIME - $t0") s (MULTIAPPEND)"
    say "1. initial sync of $N messages ($MB MB) into an empty store / Maildir (round 0: warm-up)"
    for ((i = 0; i <= RUNS; i++)); do
        for tool in $(order "$i"); do
            sync
            if [[ $tool == msgfs ]]; then
                run_msgfs "init-msgfs-$i" "$MSGFS_SEED_CONF" "$WORK/store-$i"
                expect_summary "init-msgfs-$i" "local \+$N "
                line=$(grep -h ' Inbox: .* headers in ' "$LOGS/init-msgfs-$i.err" | sed 's/.*Inbox:/Inbox:/')
                say "  msgfs round $i: $RUN_SECS s (CPU $RUN_CPU s), names listed after $HDR_SECS s ($line)"
                if ((i)); then
                    record msgfs:init
                    TIMES[msgfs:hdr]+="$HDR_SECS "
                fi
            else
                md=$WORK/maildir-$tool-$i
                run_mbsync "init-mbsync-$tool-$i" "$(mbsync_conf "$SEEDUSER" "$md" "$tool")" "$md"
                expect_count "mbsync FSync $tool round $i, Maildir" "$(maildir_count "$md")" "$N"
                say "  mbsync FSync $tool round $i: $RUN_SECS s (CPU $RUN_CPU s)"
                ((i)) && record "mbsync-$tool:init"
            fi
        done
    done
    expect_count "store after msgfs's first initial sync (msgfs check)" "$(store_count "$WORK/store-1")" "$N"
    sed 's/^/  msgfs check: /' "$LOGS/check.out" | head -3 >&2
    say "  server folders after figure 1: $(imap list "$PORT" "$SEEDUSER" "$PASS" | tr '\n' ' ')"
fi

# The synced copies figures 2 and 3 continue from: msgfs's last store, mbsync's last Maildirs.
STORE=$WORK/store-$RUNS
MD_YES=$WORK/maildir-yes-$RUNS
MD_NO=$WORK/maildir-no-$RUNS

# again KIND TOOL I: a run of TOOL on the synced copies (figures 2 and 3), timed unless I is 0.
again() {
    local kind=$1 tool=$2 i=$3 md
    if [[ $tool == msgfs ]]; then
        run_msgfs "$kind-msgfs-$i" "$MSGFS_SEED_CONF" "$STORE"
        if [[ $kind == noop ]]; then
            expect_summary "$kind-msgfs-$i" "server \+0 \*0 -0 >0  local \+0 \*0 -0 >0"
        else
            expect_summary "$kind-msgfs-$i" "server \+0 \*0 -0 >0  local \+$CHANGES_NEW \*$CHANGES_FLAGS -0 "
        fi
        say "  msgfs round $i: $RUN_SECS s (CPU $RUN_CPU s): $(tail -1 "$LOGS/$kind-msgfs-$i.out")"
    else
        if [[ $tool == yes ]]; then md=$MD_YES; else md=$MD_NO; fi
        run_mbsync "$kind-mbsync-$tool-$i" "$(mbsync_conf "$SEEDUSER" "$md" "$tool")" "$md"
        say "  mbsync FSync $tool round $i: $RUN_SECS s (CPU $RUN_CPU s)"
    fi
    if ((i)); then
        if [[ $tool == msgfs ]]; then record "msgfs:$kind"; else record "mbsync-$tool:$kind"; fi
    fi
}

# ---- 2. nothing to do ------------------------------------------------------------------------

if want 2; then
    say "2. a run with nothing to do"
    for ((i = 1; i <= RUNS; i++)); do
        for tool in $(order "$i"); do again noop "$tool" "$i"; done
    done
fi

# ---- 3. ten changes on the server ------------------------------------------------------------

if want 3; then
    say "3. a run after $((CHANGES_FLAGS + CHANGES_NEW)) changes on the server ($CHANGES_FLAGS flag changes, $CHANGES_NEW new messages; round 0: warm-up)"
    for ((i = 0; i <= RUNS; i++)); do
        imap changes "$PORT" "$SEEDUSER" "$PASS" INBOX "$i" "$CHANGES_FLAGS" "$CHANGES_NEW"
        for tool in $(order "$i"); do again changes "$tool" "$i"; done
    done
    server=$(imap count "$PORT" "$SEEDUSER" "$PASS" INBOX)
    expect_count "server INBOX after figure 3" "$server" "$((N + (RUNS + 1) * CHANGES_NEW))"
    expect_count "msgfs store after figure 3 (msgfs check)" "$(store_count "$STORE")" "$server"
    expect_count "mbsync FSync yes Maildir after figure 3" "$(maildir_count "$MD_YES")" "$server"
    expect_count "mbsync FSync no Maildir after figure 3" "$(maildir_count "$MD_NO")" "$server"
fi

# ---- 4. upload -------------------------------------------------------------------------------

if want 4; then
    UPSRC=$WORK/upsrc
    UPBYTES=$(imap maildir "$UPSRC/Archive" "$N" 2)
    UPMB=$(calc %.1f "$UPBYTES / 1e6")
    say "4. upload of a $N-message folder ($UPMB MB) to an empty server folder of a fresh user"
    for ((i = 1; i <= RUNS; i++)); do
        for tool in $(order "$i"); do
            if [[ $tool == msgfs ]]; then
                # A fresh store holding the folder (msgfs import, not timed), a fresh user.
                "$MSGFS" import --store "$WORK/upstore-$i" "$UPSRC/Archive" >"$LOGS/import-$i.out" ||
                    die "msgfs import failed: $(cat "$LOGS/import-$i.out")"
                user=up-msgfs-$i
                sync
                run_msgfs "up-msgfs-$i" "$(msgfs_conf "$user")" "$WORK/upstore-$i" --upload-only
                expect_summary "up-msgfs-$i" "server \+$N "
                say "  msgfs round $i: $RUN_SECS s (CPU $RUN_CPU s), $(calc %.0f "$N / $RUN_SECS") messages/s: $(tail -1 "$LOGS/up-msgfs-$i.out")"
                record msgfs:up
            else
                # A fresh copy of the Maildir (mbsync renames the files it syncs), a fresh user.
                md=$WORK/upmd-$tool-$i
                mkdir -p "$md"
                cp -r "$UPSRC/Archive" "$md/Archive"
                MD_CHANGED[$md]=$EPOCHREALTIME
                user=up-mbsync-$tool-$i
                sync
                run_mbsync "up-mbsync-$tool-$i" "$(mbsync_conf "$user" "$md" "$tool")" "$md"
                say "  mbsync FSync $tool round $i: $RUN_SECS s (CPU $RUN_CPU s), $(calc %.0f "$N / $RUN_SECS") messages/s"
                record "mbsync-$tool:up"
            fi
            expect_count "server after the upload by $user" "$(imap count "$PORT" "$user" "$PASS" Archive)" "$N"
        done
    done
fi

# ---- report ----------------------------------------------------------------------------------

ROWS=()
CPU_ROWS=()
GOALS=()
m() { median "${TIMES[$1]:-}"; }
mc() { median "${CPUS[$1]:-}"; }
ratio() { if [[ $2 == nan || $1 == nan ]]; then echo -; else calc %.2fx "$1 / $2"; fi; }
row() { # LABEL KEY: msgfs against both mbsync configurations
    local a b c
    a=$(m "msgfs:$2") b=$(m "mbsync-yes:$2") c=$(m "mbsync-no:$2")
    ROWS+=("$(printf '%-44s %9s s %9s s %9s s %8s %8s' "$1" "$a" "$b" "$c" "$(ratio "$a" "$b")" "$(ratio "$a" "$c")")")
    CPU_ROWS+=("$(printf '%-44s %9s s %9s s %9s s' "$1" "$(mc "msgfs:$2")" "$(mc "mbsync-yes:$2")" "$(mc "mbsync-no:$2")")")
}
rate_rows() { # KEY COUNT MB
    local a b c
    a=$(m "msgfs:$1") b=$(m "mbsync-yes:$1") c=$(m "mbsync-no:$1")
    ROWS+=("$(printf '%-44s %11s %11s %11s' "  messages/s" "$(calc %.0f "$2 / $a")" "$(calc %.0f "$2 / $b")" "$(calc %.0f "$2 / $c")")")
    ROWS+=("$(printf '%-44s %11s %11s %11s' "  MB/s" "$(calc %.1f "$3 / $a")" "$(calc %.1f "$3 / $b")" "$(calc %.1f "$3 / $c")")")
}
goal() { # TEXT OK(1/0) DETAIL
    GOALS+=("$(printf '%-52s %-8s %s' "$1" "$([[ $2 == 1 ]] && echo met || echo 'NOT met')" "$3")")
}
le() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? 1 : 0 }'; }

if want 1; then
    hdr=$(m msgfs:hdr)
    ROWS+=("$(printf '%-44s %9s s %11s %11s' "1. initial sync, $N msgs: all names listed" "$hdr" - -)")
    row "1. initial sync, $N msgs ($MB MB): done" init
    rate_rows init "$N" "$MB"
    a=$(m msgfs:init) c=$(m mbsync-no:init)
    goal "initial sync (durable) <= 1.5x mbsync FSync no" "$(le "$a" "$(calc %.6f "1.5 * $c")")" "$(ratio "$a" "$c")"
    goal "all $N names listed within 2 s" "$(le "$hdr" 2)" "$hdr s"
fi
if want 2; then
    row "2. nothing to do" noop
    a=$(m msgfs:noop) b=$(m mbsync-yes:noop) c=$(m mbsync-no:noop)
    fast=$(awk -v b="$b" -v c="$c" 'BEGIN { print (b < c) ? b : c }')
    goal "no-op run <= mbsync's (the faster configuration)" "$(le "$a" "$fast")" "$a s vs $fast s"
fi
if want 3; then
    row "3. after $((CHANGES_FLAGS + CHANGES_NEW)) changes on the server" changes
fi
if want 4; then
    row "4. upload of $N msgs ($UPMB MB)" up
    rate_rows up "$N" "$UPMB"
    a=$(m msgfs:up)
    goal "upload >= 2,000 messages/s" "$(awk -v n="$N" -v a="$a" 'BEGIN { print (n / a >= 2000) ? 1 : 0 }')" "$(calc %.0f "$N / $a") messages/s"
fi

echo
echo "msgfs sync vs mbsync, same Dovecot on loopback: medians of $RUNS runs; ratio = msgfs time / mbsync time"
echo "$(nproc) CPUs, kernel $(uname -r), $FSDESC, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "load average at the start: $LOAD0; at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)"
echo "msgfs $MSGFS_DESC; $("$MBSYNC" --version); Dovecot $("$DOVECOT" --version | cut -d' ' -f1) (mail_fsync = never)"
echo
printf '%-44s %11s %11s %11s %8s %8s\n' "wall time" msgfs "mbsync yes" "mbsync no" "/yes" "/no"
printf '%-44s %11s %11s %11s\n' "" "" "(FSync yes)" "(FSync no)"
for r in "${ROWS[@]}"; do echo "$r"; done
echo
printf '%-44s %11s %11s %11s\n' "CPU time of the client (user + system)" msgfs "mbsync yes" "mbsync no"
for r in "${CPU_ROWS[@]}"; do echo "$r"; done
echo
echo "goals (the issue):"
for g in "${GOALS[@]}"; do echo "  $g"; done
echo
echo "all timed runs, wall / CPU seconds:"
for k in $(printf '%s\n' "${!TIMES[@]}" | sort); do printf '  %-19s %s/ %s\n' "$k" "${TIMES[$k]}" "${CPUS[$k]:-}"; done
((MB_SLEPT == 0)) || echo "note: mbsync slept a second for a recent Maildir change in $MB_SLEPT runs (see above)"
if ((${#PROBLEMS[@]})); then
    echo
    echo "PROBLEMS (wrong counts or summaries; see the logs with MSGFS_BENCH_KEEP=1):"
    for p in "${PROBLEMS[@]}"; do echo "  $p"; done
    exit 1
fi

//! SIGKILL in the middle of thousands of saves: every acknowledged save survives intact.
//!
//! The test re-runs its own binary as a child (`--exact crash_child_worker`, with
//! `MSGFS_CRASH_CHILD` set) that opens a store on the real disk and runs four writer
//! threads, each saving new messages, new versions of its own messages (longer or shorter
//! than before) and deletes of its own messages, forever. Before each operation a writer
//! appends an intent line to its own file (`I seq kind name id`); after the operation
//! returns Ok it appends an acknowledgement (`A seq version`) and fdatasyncs the file. The
//! parent SIGKILLs the child 300-1500 ms after its store is open (two rounds kill it 0-5 ms
//! into the open itself, i.e. during recovery), eight rounds on the same store, and after each
//! round opens the store read-only and checks it against a model built from the files:
//!
//! - every acknowledged operation is in effect: the message exists (or, for a delete, does
//!   not) with exactly the content, id and version of its last acknowledged save;
//! - the one operation per writer that was in flight (intent, no ack) may be in effect or
//!   not, as a whole;
//! - every message's content is byte for byte the content one save wrote for that very
//!   message (no torn, mixed or foreign content), and nothing else is in the store;
//! - `check_dir` and the real `msgfs check` report no damage.
//!
//! Saves of one message are ordered (one writer owns it), so "the last acknowledged save or
//! the one in flight after it" is the whole set of allowed states. At the end the store is
//! opened read-write (recovery), compared again, closed cleanly and checked once more.
//!
//! A killed process loses no page cache, so this tests the order of the store's steps
//! (content in place before the frame, the frame before the reply, old versions removed
//! after), recovery, garbage collection and checkpoints under a crash; it cannot show a
//! missing fsync (src/store/tests.rs simulates power loss at every sync for that).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use msgfs::store::check::check_dir;
use msgfs::store::{Id, Options, SaveFlags, Store};

const CHILD_ENV: &str = "MSGFS_CRASH_CHILD";
const ROUND_ENV: &str = "MSGFS_CRASH_ROUND";
/// Set it to replay the kill delays of an earlier run (the test prints its seed).
const SEED_ENV: &str = "MSGFS_CRASH_SEED";
const WRITERS: usize = 4;
const ROUNDS: u32 = 8;
/// Rounds whose child is killed while it opens (recovers) the store.
const EARLY_ROUNDS: [u32; 2] = [3, 6];
/// A child left alone stops by itself after this long (if the parent died).
const CHILD_LIMIT: Duration = Duration::from_secs(30);
const HEADER: &str = "msgfs crash test: ";

// ---------------------------------------------------------------------------------------
// Shared by both sides: names, contents, the operation files.

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// The content save `seq` of round `round` writes to message `name`: a header naming all
/// three, then 0-12 KB of text derived from it, so every save's content differs in
/// length and bytes and any mix of two is detectable.
fn content(name: &str, round: u32, seq: u64) -> Vec<u8> {
    let header = format!("{HEADER}{name} round {round} save {seq}\n");
    let mut h = fnv64(header.as_bytes()) | 1;
    let len = header.len() + (h % 12_000) as usize;
    let mut v = header.into_bytes();
    while v.len() < len {
        h = xorshift(h);
        v.push(if v.len() % 77 == 76 { b'\n' } else { b'a' + (h % 26) as u8 });
    }
    v
}

/// (name, round, seq) from a content's header.
fn parse_header(c: &[u8]) -> Option<(String, u32, u64)> {
    let end = c.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&c[..end]).ok()?.strip_prefix(HEADER)?;
    let f: Vec<&str> = line.split(' ').collect();
    match f.as_slice() {
        [name, "round", r, "save", s] => Some((name.to_string(), r.parse().ok()?, s.parse().ok()?)),
        _ => None,
    }
}

/// Which writer owns a message: names are `w{writer}-r{round}-n{seq}.eml`.
fn writer_of(name: &str) -> Option<usize> {
    name.strip_prefix('w')?.split('-').next()?.parse().ok().filter(|w| *w < WRITERS)
}

fn ops_path(base: &Path, round: u32, w: usize) -> PathBuf {
    base.join(format!("ops-r{round}-w{w}.log"))
}

// ---------------------------------------------------------------------------------------
// The child: four writers saving until killed.

fn die(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("crash child: {what}: {e}");
    std::process::exit(3)
}

/// Append one line to a writer's operation file with one write(2). An intent needs no
/// sync (a killed process's writes stay in the page cache); an acknowledgement is synced,
/// as a client recording what the store confirmed would.
fn line(f: &mut File, s: String, sync: bool) {
    f.write_all(s.as_bytes()).unwrap_or_else(|e| die("write ops file", e));
    if sync {
        f.sync_data().unwrap_or_else(|e| die("sync ops file", e));
    }
}

fn writer(store: Store, inbox: Id, round: u32, w: usize, mut owned: Vec<(String, Id)>, ops: &Path, start: Instant) {
    let mut f = OpenOptions::new().create(true).append(true).open(ops).unwrap_or_else(|e| die("open ops file", e));
    let mut rng = xorshift(0x9e37_79b9_7f4a_7c15 ^ (u64::from(round) << 32) ^ w as u64) | 1;
    for seq in 1u64.. {
        if start.elapsed() > CHILD_LIMIT {
            return;
        }
        rng = xorshift(rng);
        let dice = rng % 100;
        let pick = (rng >> 8) as usize % owned.len().max(1);
        if owned.is_empty() || dice < 35 {
            let name = format!("w{w}-r{round}-n{seq}.eml");
            let mut t = store.begin_new(inbox, &name).unwrap_or_else(|e| die("begin_new", e));
            line(&mut f, format!("I {seq} new {name} {}\n", t.id()), false);
            t.write_at(&content(&name, round, seq), 0).unwrap_or_else(|e| die("write", e));
            let out = t.save(SaveFlags(0)).unwrap_or_else(|e| die("save new", e));
            line(&mut f, format!("A {seq} {}\n", out.version), true);
            owned.push((name, out.id));
        } else if dice < 92 {
            let (name, id) = &owned[pick];
            let mut t = store.begin(*id).unwrap_or_else(|e| die("begin", e));
            line(&mut f, format!("I {seq} upd {name} {id}\n"), false);
            let c = content(name, round, seq);
            t.write_at(&c, 0).unwrap_or_else(|e| die("write", e));
            t.set_len(c.len() as u64).unwrap_or_else(|e| die("set_len", e));
            let out = t.save(SaveFlags(0)).unwrap_or_else(|e| die("save update", e));
            line(&mut f, format!("A {seq} {}\n", out.version), true);
        } else {
            let (name, id) = owned.swap_remove(pick);
            line(&mut f, format!("I {seq} del {name} {id}\n"), false);
            store.delete_message(id).unwrap_or_else(|e| die("delete", e));
            line(&mut f, format!("A {seq} 0\n"), true);
        }
    }
}

/// Not a test on its own: the body of the child process the crash test runs and kills.
#[test]
fn crash_child_worker() {
    let Some(base) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else {
        return;
    };
    let start = Instant::now();
    let round: u32 = std::env::var(ROUND_ENV).ok().and_then(|r| r.parse().ok()).expect("round");
    println!("CHILD OPENING");
    // Small checkpoints: the kill also lands in checkpoints and segment removals.
    let opts = Options { create: true, checkpoint_bytes: 64 << 10, ..Default::default() };
    let store = Store::open(&base.join("store"), opts).unwrap_or_else(|e| die("open", e));
    let inbox = store.folder_by_path("Inbox").unwrap_or_else(|e| die("Inbox", e));
    let mut owned: Vec<Vec<(String, Id)>> = vec![Vec::new(); WRITERS];
    for (name, child) in store.index().children(inbox).unwrap_or_else(|e| die("list Inbox", e)) {
        owned[writer_of(name).unwrap_or_else(|| die("foreign message", name))].push((name.to_string(), child.id()));
    }
    println!("CHILD READY");
    std::thread::scope(|s| {
        for (w, mine) in owned.into_iter().enumerate() {
            let (store, ops) = (store.clone(), ops_path(&base, round, w));
            s.spawn(move || writer(store, inbox, round, w, mine, &ops, start));
        }
    });
    die("still running", "the parent never killed this child");
}

// ---------------------------------------------------------------------------------------
// The parent: kill, then compare the store with what was acknowledged.

/// A message as the model expects it or the store holds it: id, and the save whose
/// content it has. The version is known once acknowledged or seen.
#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    id: Id,
    round: u32,
    seq: u64,
    version: Option<u64>,
}

type Model = BTreeMap<String, State>;

fn same(found: Option<&State>, want: Option<&State>) -> bool {
    match (found, want) {
        (None, None) => true,
        (Some(f), Some(w)) => {
            (f.id, f.round, f.seq) == (w.id, w.round, w.seq) && w.version.is_none_or(|v| f.version == Some(v))
        }
        _ => false,
    }
}

#[derive(Debug)]
struct Op {
    seq: u64,
    kind: String,
    name: String,
    id: Id,
    acked: Option<u64>,
}

/// The operations of one writer in one round, in order. A last line cut short by the
/// kill is ignored (that intent or ack was never made).
fn read_ops(path: &Path) -> Vec<Op> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    let mut ops: Vec<Op> = Vec::new();
    for l in complete.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        match f.as_slice() {
            ["I", seq, kind, name, id] => {
                let seq: u64 = seq.parse().unwrap();
                assert!(ops.last().is_none_or(|o| o.acked.is_some()), "{}: intent {seq} before an ack", path.display());
                assert_eq!(seq, ops.last().map_or(1, |o| o.seq + 1), "{}: sequence gap", path.display());
                ops.push(Op {
                    seq,
                    kind: kind.to_string(),
                    name: name.to_string(),
                    id: id.parse().unwrap(),
                    acked: None,
                });
            }
            ["A", seq, version] => {
                let last = ops.last_mut().unwrap_or_else(|| panic!("{}: ack before any intent", path.display()));
                assert_eq!(last.seq, seq.parse::<u64>().unwrap(), "{}: ack of another op", path.display());
                last.acked = Some(version.parse().unwrap());
            }
            _ => panic!("{}: bad line {l:?}", path.display()),
        }
    }
    ops
}

/// Apply one operation to the model.
fn apply(model: &mut Model, round: u32, op: &Op, version: Option<u64>) {
    let st = State { id: op.id, round, seq: op.seq, version };
    match op.kind.as_str() {
        "new" => {
            assert!(!model.contains_key(&op.name), "new message {} already in the model", op.name);
            model.insert(op.name.clone(), st);
        }
        "upd" | "del" => {
            let had = model.get(&op.name).map(|s| s.id);
            assert_eq!(had, Some(op.id), "{} {}: not in the model with that id", op.kind, op.name);
            if op.kind == "del" {
                model.remove(&op.name);
            } else {
                model.insert(op.name.clone(), st);
            }
        }
        k => panic!("unknown op kind {k}"),
    }
}

/// What the store holds, with every content checked to be exactly one save's. Problems go
/// to `bad`.
fn observe(store: &Store, bad: &mut Vec<String>) -> Model {
    let inbox = store.folder_by_path("Inbox").unwrap();
    let list: Vec<(Id, String, Id, u64)> = {
        let ix = store.index();
        ix.messages().map(|(id, m)| (id, m.name().to_string(), m.folder(), m.version())).collect()
    };
    let mut out = Model::new();
    for (id, name, folder, version) in list {
        if folder != inbox || writer_of(&name).is_none() {
            bad.push(format!("message {id} {name:?} in folder {folder}: nobody saved it there"));
            continue;
        }
        let c = match store.read_message(id) {
            Ok(c) => c,
            Err(e) => {
                bad.push(format!("{name} (id {id}, version {version}): unreadable: {e}"));
                continue;
            }
        };
        match parse_header(&c) {
            Some((n, round, seq)) if n == name && c == content(&name, round, seq) => {
                out.insert(name, State { id, round, seq, version: Some(version) });
            }
            _ => bad.push(format!(
                "{name} (id {id}, version {version}): {} bytes that no save wrote for it (torn or mixed), starting {:?}",
                c.len(),
                String::from_utf8_lossy(&c[..c.len().min(80)])
            )),
        }
    }
    out
}

fn open_read_only(dir: &Path) -> Store {
    Store::open(dir, Options { read_only: true, ..Default::default() }).unwrap()
}

/// `check_dir` and the real `msgfs check` both find no damage.
fn assert_checks(dir: &Path, clean: bool, when: &str) {
    let r = check_dir(dir);
    assert!(r.ok(), "{when}: check_dir found damage: {:?} (notes {:?})", r.damage, r.notes);
    assert_eq!(r.was_clean, clean, "{when}: clean marker");
    let out = Command::new(env!("CARGO_BIN_EXE_msgfs")).arg("check").arg(dir).output().unwrap();
    assert!(
        out.status.success(),
        "{when}: msgfs check exited {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills the child if the test fails while it runs.
struct Killer(Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run one child and SIGKILL it `delay` after it printed `wait_for`; fail, with its stderr,
/// if it was no longer running by then. Returns whether its store was open at the kill.
fn run_and_kill(base: &Path, round: u32, wait_for: &str, delay: Duration) -> bool {
    let err_path = base.join(format!("child-r{round}.stderr"));
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child_worker", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, base)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let mut child = Killer(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = |l: &str| l.trim_end().ends_with("CHILD READY");
    let mut opened = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            // The harness may print `test crash_child_worker ... ` before it on the line.
            Ok(l) => {
                opened |= ready(&l);
                if l.trim_end().ends_with(wait_for) {
                    break;
                }
            }
            Err(e) => panic!(
                "round {round}: no {wait_for:?} from the child ({e}); stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            ),
        }
    }
    std::thread::sleep(delay);
    if let Some(status) = child.0.try_wait().unwrap() {
        panic!(
            "round {round}: the child exited ({status}) before the kill; stderr:\n{}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        );
    }
    child.0.kill().unwrap(); // SIGKILL
    let status = child.0.wait().unwrap();
    assert!(!status.success(), "round {round}: child status {status}");
    // The reader sees end of file now: was the open done?
    opened || rx.iter().any(|l| ready(&l))
}

#[test]
fn sigkill_during_saves_keeps_every_acknowledged_save() {
    let t0 = Instant::now();
    let tmp = tempfile::Builder::new().prefix("crash-kill-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let base = tmp.path();
    let dir = base.join("store");
    let seed: u64 = std::env::var(SEED_ENV).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 ^ u64::from(std::process::id())
    });
    println!("crash test seed {seed} (set {SEED_ENV}={seed} to repeat the kill delays)");
    let mut rng = xorshift(seed | 1);
    let mut model = Model::new();
    let (mut acked_total, mut inflight_total, mut inflight_applied) = (0usize, 0usize, 0usize);
    for round in 1..=ROUNDS {
        rng = xorshift(rng);
        let (wait_for, delay) = if EARLY_ROUNDS.contains(&round) {
            // Kill during Store::open: the recovery of the last round's crash.
            ("CHILD OPENING", Duration::from_micros(rng % 5000))
        } else {
            ("CHILD READY", Duration::from_millis(300 + rng % 1200))
        };
        let opened = run_and_kill(base, round, wait_for, delay);

        // The model after every acknowledged operation, and the one in-flight operation
        // per writer, which may or may not have taken effect.
        let mut alt: BTreeMap<String, Option<State>> = BTreeMap::new();
        let mut acked = [0usize; WRITERS];
        for (w, n) in acked.iter_mut().enumerate() {
            for op in read_ops(&ops_path(base, round, w)) {
                match op.acked {
                    Some(v) => {
                        apply(&mut model, round, &op, (op.kind != "del").then_some(v));
                        *n += 1;
                    }
                    None => {
                        let mut m = model.clone();
                        apply(&mut m, round, &op, None);
                        alt.insert(op.name.clone(), m.get(&op.name).cloned());
                    }
                }
            }
        }
        let mut bad = Vec::new();
        let found = observe(&open_read_only(&dir), &mut bad);
        let names: BTreeSet<&String> = model.keys().chain(found.keys()).chain(alt.keys()).collect();
        for name in names {
            let (f, m) = (found.get(name), model.get(name));
            let after_inflight = alt.get(name).map(|a| a.as_ref());
            if same(f, m) {
                continue;
            }
            if after_inflight.is_some_and(|a| same(f, a)) {
                inflight_applied += 1;
                continue;
            }
            bad.push(format!(
                "{name}: acknowledged state {m:?}{}, found {f:?}",
                after_inflight.map(|a| format!(" (or {a:?} after the unacknowledged op)")).unwrap_or_default()
            ));
        }
        assert!(
            bad.is_empty(),
            "round {round} (seed {seed}, killed {delay:?} after {wait_for}): {} problems:\n{}",
            bad.len(),
            bad.join("\n")
        );
        println!(
            "round {round}: killed {delay:?} after {wait_for} ({}); acknowledged ops per writer {acked:?}, {} in flight, \
             {} messages, {} log segments{}",
            if opened { "store open" } else { "during the open" },
            alt.len(),
            found.len(),
            std::fs::read_dir(dir.join("log")).map_or(0, |d| d.count()),
            if dir.join("checkpoint").exists() { ", a checkpoint" } else { "" }
        );
        if !EARLY_ROUNDS.contains(&round) {
            assert!(acked.iter().all(|&n| n > 0), "round {round}: a writer acknowledged nothing: {acked:?}");
        }
        acked_total += acked.iter().sum::<usize>();
        inflight_total += alt.len();
        assert_checks(&dir, false, &format!("round {round}, after the kill"));
        model = found;
    }

    // Recovery proper (read-write: cuts a torn tail, removes unreferenced objects), then a
    // clean close: the same messages throughout, and nothing left over.
    let store = Store::open(&dir, Options::default()).unwrap();
    let mut bad = Vec::new();
    assert_eq!(observe(&store, &mut bad), model, "read-write recovery differs from the read-only view");
    store.close().unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    assert_checks(&dir, true, "after recovery and a clean close");
    let objects: usize = std::fs::read_dir(dir.join("objects"))
        .unwrap()
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum();
    let store = open_read_only(&dir);
    // Small content is kept in the log, the rest in one object file per message.
    let inline = {
        let ix = store.index();
        ix.messages().filter(|(id, m)| ix.inline_at(*id, m.version()).is_some()).count()
    };
    assert_eq!(objects + inline, model.len(), "objects on disk after recovery vs messages");
    assert_eq!(std::fs::read_dir(dir.join("staging")).unwrap().count(), 0, "staging not empty");
    assert_eq!(observe(&store, &mut bad), model, "after a clean close and reopen");
    assert!(bad.is_empty(), "{bad:?}");
    println!(
        "{ROUNDS} rounds in {:.1} s: {acked_total} acknowledged operations, {inflight_total} in flight at a kill \
         ({inflight_applied} of them took effect), {} messages at the end",
        t0.elapsed().as_secs_f64(),
        model.len()
    );
    assert!(acked_total >= 200, "only {acked_total} acknowledged operations: the test did not exercise much");
}

//! SIGKILL the mount daemon again and again under saves, renames and unlinks made through the
//! mount: every acknowledged state survives, no writer gets an error it did not cause, and no
//! kill leaves a hang.
//!
//! Each round mounts the store with `msgfs mount -f` as a child of the test (so its pid is
//! known), starts four writer threads doing real syscalls through the mount on messages only
//! they use (names `w{writer}-r{round}-n{seq}.eml` in Inbox), and SIGKILLs the daemon: at a
//! random moment in odd rounds, while a writer is inside rename(2) in even rounds. A writer:
//!
//! - `new`: creates a message (O_CREAT|O_EXCL), writes it and fsyncs it (ack: fsync returned
//!   0), then closes it or keeps the descriptor open ("held");
//! - `upd`: rewrites one of its messages and fsyncs, through its held descriptor (pwrite,
//!   ftruncate, fsync) or through a new one (O_TRUNC, half of them with O_CREAT as a shell's
//!   `>`, write, fsync, close);
//! - `ren`: renames one of its messages (the held one too) to a new name, or over another of
//!   its messages that is not held (ack: rename returned 0);
//! - `del`: unlinks one of its messages (ack: unlink returned 0);
//! - or closes its held descriptor, or opens one to hold.
//!
//! Before an operation it appends an intent line (`I seq kind name target`) to its own file
//! outside the mount, after it an acknowledgement (`A seq`), fdatasynced. The content of save
//! `seq` names the writer, round and seq, so any content found is traced to one save.
//!
//! After each kill: `umount -l` must detach the mount, the daemon must be gone (reaped, so no
//! thread of it is left in D state) and every writer must have stopped, each within a bounded
//! wait; a wait that runs out is a hang, reported with the kernel stacks of the stuck threads,
//! and the FUSE connection is then aborted through /sys/fs/fuse/connections so the test goes on
//! and fails cleanly. Then the store is opened (read-only) and compared with the model: per
//! writer, every acknowledged state is in effect, or the state after its one in-flight
//! operation as a whole. Any errno other than ENOTCONN/ECONNABORTED (what a dead daemon gives)
//! is an unexpected error. The test runs all rounds, prints its figures, then fails on any
//! lost state, hang or unexpected error. `MSGFS_KILL_SEED` replays the seed it prints (the
//! writers' choices and the kill delays; not the thread timing), `MSGFS_KILL_ROUNDS` changes
//! the number of rounds (default 24, at least 20).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use msgfs::store::check::check_dir;
use msgfs::store::{Options, Store};

use crate::common::*;

const SEED_ENV: &str = "MSGFS_KILL_SEED";
const ROUNDS_ENV: &str = "MSGFS_KILL_ROUNDS";
const WRITERS: usize = 4;
/// How long each step after a kill may take before it counts as a hang.
const BOUND: Duration = Duration::from_secs(15);
const HEADER: &str = "msgfs kill test: ";
const CONNECTIONS: &str = "/sys/fs/fuse/connections";

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// What save `seq` of writer `w` in round `round` writes: a header naming the three, then
/// 0-12 KB derived from it.
fn content(w: usize, round: u32, seq: u64) -> Vec<u8> {
    let header = format!("{HEADER}w{w} round {round} save {seq}\n");
    let mut h = fnv64(header.as_bytes()) | 1;
    let len = header.len() + (h % 12_000) as usize;
    let mut v = header.into_bytes();
    while v.len() < len {
        h = xorshift(h);
        v.push(if v.len() % 77 == 76 { b'\n' } else { b'a' + (h % 26) as u8 });
    }
    v
}

/// (writer, round, seq) from a content's header, if the whole content is that save's.
fn whose(c: &[u8]) -> Option<(usize, u32, u64)> {
    let end = c.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&c[..end]).ok()?.strip_prefix(HEADER)?;
    let f: Vec<&str> = line.split(' ').collect();
    let (w, r, s) = match f.as_slice() {
        [w, "round", r, "save", s] => (w.strip_prefix('w')?.parse().ok()?, r.parse().ok()?, s.parse().ok()?),
        _ => return None,
    };
    (c == content(w, r, s).as_slice()).then_some((w, r, s))
}

fn writer_of(name: &str) -> Option<usize> {
    name.strip_prefix('w')?.split('-').next()?.parse().ok().filter(|w| *w < WRITERS)
}

fn errno_name(e: i32) -> String {
    match e {
        libc::ENOENT => "ENOENT".into(),
        libc::EBUSY => "EBUSY".into(),
        libc::EEXIST => "EEXIST".into(),
        libc::ENOTCONN => "ENOTCONN".into(),
        libc::ECONNABORTED => "ECONNABORTED".into(),
        libc::EIO => "EIO".into(),
        libc::EBADF => "EBADF".into(),
        libc::EXDEV => "EXDEV".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::EACCES => "EACCES".into(),
        e => format!("errno {e}"),
    }
}

/// What a dead (killed or aborted) FUSE daemon answers.
fn from_the_kill(e: i32) -> bool {
    e == libc::ENOTCONN || e == libc::ECONNABORTED
}

// ---------------------------------------------------------------------------------------
// The writers.

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// A libc call's result, or its errno.
fn sys(r: libc::c_int) -> Result<libc::c_int, i32> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

fn write_all(fd: i32, data: &[u8]) -> Result<(), i32> {
    let mut off = 0;
    while off < data.len() {
        // SAFETY: a valid buffer range of `data`.
        let n = unsafe { libc::pwrite(fd, data[off..].as_ptr().cast(), data.len() - off, off as i64) };
        if n < 0 {
            return Err(errno());
        }
        off += n as usize;
    }
    Ok(())
}

/// What one writer is doing now (for the report of a hang).
#[derive(Default)]
struct Progress {
    tid: AtomicI32,
    doing: Mutex<String>,
}

/// Shared between the test and its writers in one round.
struct Round {
    round: u32,
    inbox: PathBuf,
    killed: AtomicBool,
    /// Writers inside rename(2) now.
    renaming: AtomicUsize,
    progress: Vec<Progress>,
}

/// An error a writer got: what it was doing, the errno, and whether the kill had been sent.
#[derive(Debug)]
struct Failure {
    w: usize,
    seq: u64,
    what: String,
    errno: i32,
    after_kill: bool,
}

struct WriterEnd {
    failure: Option<Failure>,
    /// Descriptors still open (the held one, the folder): closed once the daemon is dead, so a
    /// writer that failed while the daemon ran does not save anything by closing them.
    fds: Vec<i32>,
}

fn log_line(f: &mut File, s: String, sync: bool) {
    f.write_all(s.as_bytes()).unwrap();
    if sync {
        f.sync_data().unwrap();
    }
}

fn ops_path(base: &Path, round: u32, w: usize) -> PathBuf {
    base.join(format!("ops-r{round}-w{w}.log"))
}

fn writer(rd: &Round, w: usize, mut owned: Vec<String>, seed: u64, ops: &Path) -> WriterEnd {
    let me = &rd.progress[w];
    // SAFETY: gettid has no preconditions.
    me.tid.store(unsafe { libc::gettid() }, Ordering::SeqCst);
    let mut log = OpenOptions::new().create(true).append(true).open(ops).unwrap();
    let mut rng = xorshift(seed ^ (u64::from(rd.round) << 32) ^ ((w as u64 + 1) << 16)) | 1;
    // SAFETY: open of a valid C string; the descriptor is ours.
    let dir = match sys(unsafe {
        libc::open(cpath(&rd.inbox).as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC)
    }) {
        Ok(fd) => fd,
        Err(e) => {
            let after_kill = rd.killed.load(Ordering::SeqCst);
            let failure = Failure { w, seq: 0, what: "open Inbox".into(), errno: e, after_kill };
            return WriterEnd { failure: Some(failure), fds: vec![] };
        }
    };
    let mut held: Option<(i32, String)> = None;
    // Stop at the first error, leaving every descriptor open (`extra`: one opened for this op).
    let fail = |seq: u64, what: String, e: i32, held: &Option<(i32, String)>, extra: Option<i32>| WriterEnd {
        failure: Some(Failure { w, seq, what, errno: e, after_kill: rd.killed.load(Ordering::SeqCst) }),
        fds: held.iter().map(|(fd, _)| *fd).chain([dir]).chain(extra).collect(),
    };
    let mut seq = 0u64;
    loop {
        seq += 1;
        rng = xorshift(rng);
        let dice = rng % 100;
        let pick = (rng >> 8) as usize % owned.len().max(1);
        let coin = (rng >> 20) & 1 == 0;
        let fresh = format!("w{w}-r{}-n{seq}.eml", rd.round);
        let held_name = held.as_ref().map(|(_, n)| n.clone());
        let step = |what: String| *me.doing.lock().unwrap() = what;
        if owned.is_empty() || dice < 20 {
            step(format!("new {fresh}"));
            log_line(&mut log, format!("I {seq} new {fresh} -\n"), false);
            let body = content(w, rd.round, seq);
            let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC;
            // SAFETY: openat with our folder descriptor and a valid C string.
            let fd = match sys(unsafe { libc::openat(dir, c(&fresh).as_ptr(), flags, 0o644) }) {
                Ok(fd) => fd,
                Err(e) => return fail(seq, format!("create {fresh}"), e, &held, None),
            };
            // SAFETY: fsync of the descriptor we just opened.
            let r = write_all(fd, &body).and_then(|_| sys(unsafe { libc::fsync(fd) }).map(|_| ()));
            if let Err(e) = r {
                return fail(seq, format!("write+fsync new {fresh}"), e, &held, Some(fd));
            }
            log_line(&mut log, format!("A {seq}\n"), true);
            owned.push(fresh.clone());
            if held.is_none() && coin {
                held = Some((fd, fresh));
            } else {
                // SAFETY: closing the descriptor we opened.
                if let Err(e) = sys(unsafe { libc::close(fd) }) {
                    return fail(seq, format!("close {fresh} after its save"), e, &held, None);
                }
            }
        } else if dice < 50 {
            let body = content(w, rd.round, seq);
            // Through the held descriptor when it is that message's (never a second writer on
            // it: the first save would win and the held one get EBUSY), or by chance.
            match held.clone().filter(|(_, n)| *n == owned[pick] || coin) {
                Some((fd, name)) => {
                    step(format!("upd held {name}"));
                    log_line(&mut log, format!("I {seq} upd {name} -\n"), false);
                    // SAFETY: calls on our held descriptor.
                    let r = write_all(fd, &body)
                        .and_then(|_| sys(unsafe { libc::ftruncate(fd, body.len() as i64) }).map(|_| ()))
                        .and_then(|_| sys(unsafe { libc::fsync(fd) }).map(|_| ()));
                    if let Err(e) = r {
                        return fail(seq, format!("pwrite+ftruncate+fsync held {name}"), e, &held, None);
                    }
                    log_line(&mut log, format!("A {seq}\n"), true);
                }
                None => {
                    let name = owned[pick].clone();
                    step(format!("upd {name}"));
                    log_line(&mut log, format!("I {seq} upd {name} -\n"), false);
                    // Half of them as a shell's `>` does (O_CREAT on an existing name).
                    let creat = if (rng >> 28) & 1 == 0 { libc::O_CREAT } else { 0 };
                    let flags = libc::O_WRONLY | libc::O_TRUNC | libc::O_CLOEXEC | creat;
                    // SAFETY: openat with our folder descriptor and a valid C string.
                    let fd = match sys(unsafe { libc::openat(dir, c(&name).as_ptr(), flags, 0o644) }) {
                        Ok(fd) => fd,
                        Err(e) => return fail(seq, format!("open O_TRUNC {name}"), e, &held, None),
                    };
                    // SAFETY: fsync of the descriptor we just opened.
                    let r = write_all(fd, &body).and_then(|_| sys(unsafe { libc::fsync(fd) }).map(|_| ()));
                    if let Err(e) = r {
                        return fail(seq, format!("write+fsync {name}"), e, &held, Some(fd));
                    }
                    log_line(&mut log, format!("A {seq}\n"), true);
                    // SAFETY: closing the descriptor we opened.
                    if let Err(e) = sys(unsafe { libc::close(fd) }) {
                        return fail(seq, format!("close {name} after its save"), e, &held, None);
                    }
                }
            }
        } else if dice < 80 {
            let name = owned[pick].clone();
            // Over another message of ours (not held: its writer would lose to this one).
            let over: Vec<&String> =
                owned.iter().filter(|n| **n != name && Some(n.as_str()) != held_name.as_deref()).collect();
            let target = if !coin && (rng >> 24) % 3 != 0 && !over.is_empty() && held_name.as_deref() != Some(&name) {
                over[(rng >> 32) as usize % over.len()].clone()
            } else {
                fresh
            };
            step(format!("ren {name} -> {target}"));
            log_line(&mut log, format!("I {seq} ren {name} {target}\n"), false);
            rd.renaming.fetch_add(1, Ordering::SeqCst);
            // SAFETY: renameat within our folder, valid C strings.
            let r = sys(unsafe { libc::renameat(dir, c(&name).as_ptr(), dir, c(&target).as_ptr()) });
            rd.renaming.fetch_sub(1, Ordering::SeqCst);
            if let Err(e) = r {
                return fail(seq, format!("rename {name} -> {target}"), e, &held, None);
            }
            log_line(&mut log, format!("A {seq}\n"), true);
            owned.retain(|n| *n != name && *n != target);
            owned.push(target.clone());
            if let Some((_, h)) = held.as_mut() {
                if *h == name {
                    *h = target;
                }
            }
        } else if dice < 90 {
            let name = owned[pick].clone();
            if held_name.as_deref() == Some(&name) {
                let (fd, _) = held.take().unwrap();
                step(format!("close held {name}"));
                // SAFETY: closing our held descriptor.
                if let Err(e) = sys(unsafe { libc::close(fd) }) {
                    return fail(seq, format!("close held {name} before unlinking it"), e, &held, None);
                }
            }
            step(format!("del {name}"));
            log_line(&mut log, format!("I {seq} del {name} -\n"), false);
            // SAFETY: unlinkat within our folder, a valid C string.
            if let Err(e) = sys(unsafe { libc::unlinkat(dir, c(&name).as_ptr(), 0) }) {
                return fail(seq, format!("unlink {name}"), e, &held, None);
            }
            log_line(&mut log, format!("A {seq}\n"), true);
            owned.retain(|n| *n != name);
        } else if let Some((fd, name)) = held.take() {
            step(format!("close held {name}"));
            // SAFETY: closing our held descriptor.
            if let Err(e) = sys(unsafe { libc::close(fd) }) {
                return fail(seq, format!("close held {name}"), e, &held, None);
            }
        } else {
            let name = owned[pick].clone();
            step(format!("open to hold {name}"));
            // SAFETY: openat with our folder descriptor and a valid C string.
            match sys(unsafe { libc::openat(dir, c(&name).as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) }) {
                Ok(fd) => held = Some((fd, name)),
                Err(e) => return fail(seq, format!("open to hold {name}"), e, &held, None),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The model.

/// Name -> (round, seq) of the save whose content it holds, for one writer.
type Model = BTreeMap<String, (u32, u64)>;

#[derive(Debug, Clone)]
struct Op {
    seq: u64,
    kind: String,
    name: String,
    target: String,
    acked: bool,
}

fn read_ops(path: &Path) -> Vec<Op> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut ops: Vec<Op> = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        match f.as_slice() {
            ["I", seq, kind, name, target] => {
                let seq: u64 = seq.parse().unwrap();
                assert!(ops.last().is_none_or(|o| o.acked), "{}: intent {seq} before an ack", path.display());
                ops.push(Op {
                    seq,
                    kind: kind.to_string(),
                    name: name.to_string(),
                    target: target.to_string(),
                    acked: false,
                });
            }
            ["R", seq, name] => {
                let last = ops.last_mut().unwrap();
                assert_eq!(last.seq, seq.parse::<u64>().unwrap(), "{}: R of another op", path.display());
                last.name = name.to_string();
            }
            ["A", seq] => {
                let last = ops.last_mut().unwrap_or_else(|| panic!("{}: ack before any intent", path.display()));
                assert_eq!(last.seq, seq.parse::<u64>().unwrap(), "{}: ack of another op", path.display());
                last.acked = true;
            }
            _ => panic!("{}: bad line {l:?}", path.display()),
        }
    }
    ops
}

fn apply(m: &mut Model, round: u32, op: &Op) {
    match op.kind.as_str() {
        "new" => {
            assert!(m.insert(op.name.clone(), (round, op.seq)).is_none(), "new {}: already there", op.name);
        }
        "upd" => {
            assert!(m.insert(op.name.clone(), (round, op.seq)).is_some(), "upd {}: not in the model", op.name);
        }
        "ren" => {
            let v = m.remove(&op.name).unwrap_or_else(|| panic!("ren {}: not in the model", op.name));
            m.insert(op.target.clone(), v);
        }
        "del" => {
            assert!(m.remove(&op.name).is_some(), "del {}: not in the model", op.name);
        }
        k => panic!("unknown op {k}"),
    }
}

/// The store's Inbox per writer; anything not traced to one save of the writer owning the name
/// goes to `bad`.
fn observe(store_dir: &Path, bad: &mut Vec<String>) -> Vec<Model> {
    let st = Store::open(store_dir, Options { read_only: true, ..Default::default() })
        .unwrap_or_else(|e| panic!("the store does not reopen after the kill: {e}"));
    let inbox = st.folder_by_path("Inbox").unwrap();
    let list: Vec<(u64, String, u64)> =
        st.index().messages().map(|(id, m)| (id, m.name().to_string(), m.folder())).collect();
    let mut out = vec![Model::new(); WRITERS];
    for (id, name, folder) in list {
        let w = match writer_of(&name) {
            Some(w) if folder == inbox => w,
            _ => {
                bad.push(format!("message {id} {name:?} in folder {folder}: no writer made it"));
                continue;
            }
        };
        match st.read_message(id).map(|c| (whose(&c), c.len())) {
            Ok((Some((cw, r, s)), _)) if cw == w => {
                out[w].insert(name, (r, s));
            }
            Ok((who, len)) => bad.push(format!("{name} (id {id}): {len} bytes of {who:?}, not one save of w{w}")),
            Err(e) => bad.push(format!("{name} (id {id}): unreadable: {e}")),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The daemon, kills and hangs.

fn mounted(mp: &Path) -> bool {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mp = mp.to_str().unwrap();
    mi.lines().any(|l| l.split(' ').nth(4) == Some(mp))
}

/// Make sure the FUSE control filesystem is there, for aborting a hung connection.
fn fusectl() -> bool {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    if mi.lines().any(|l| l.split(' ').nth(4) == Some(CONNECTIONS)) {
        return true;
    }
    // Said loudly: without it, the daemon's watchdog cannot abort a hung connection either, and
    // this test no longer shows what a machine without it would do.
    println!("{CONNECTIONS} was not mounted: mounting the FUSE control filesystem there");
    Command::new("mount").args(["-t", "fusectl", "none", CONNECTIONS]).status().is_ok_and(|s| s.success())
}

fn abort_connection(conn: u64) -> String {
    match std::fs::write(format!("{CONNECTIONS}/{conn}/abort"), b"1") {
        Ok(()) => format!("aborted FUSE connection {conn}"),
        Err(e) => format!("could not abort FUSE connection {conn}: {e}"),
    }
}

/// State, wait channel and kernel stack of each thread of a process.
fn threads(pid: i32, only: Option<i32>) -> String {
    let mut out = String::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return format!("process {pid} gone") };
    for t in tasks.flatten() {
        let tid = t.file_name().to_string_lossy().into_owned();
        if only.is_some_and(|o| o.to_string() != tid) {
            continue;
        }
        let rd = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
        let stat = rd("stat");
        let state = stat.rsplit(')').next().unwrap_or("").split_whitespace().next().unwrap_or("?").to_string();
        let stack: Vec<String> = rd("stack").lines().take(6).map(|l| l.trim().to_string()).collect();
        out += &format!(
            "  {tid} {} state {state} wchan {} stack [{}]\n",
            rd("comm").trim(),
            rd("wchan"),
            stack.join(" < ")
        );
    }
    out
}

/// A thread of the process in uninterruptible sleep, with where it sleeps.
fn uninterruptible(pid: i32) -> Option<String> {
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        if stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) == Some("D") {
            let rd = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
            return Some(format!("thread {} in D state at {}", rd("comm").trim(), rd("wchan")));
        }
    }
    None
}

fn wait_until(bound: Duration, mut done: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < bound {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

/// Kills the daemon and detaches the mount if the test fails mid-round.
struct Daemon {
    child: Child,
    mp: PathBuf,
    conn: u64,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = Command::new("umount").arg("-l").arg(&self.mp).status();
            if !wait_until(BOUND, || self.child.try_wait().ok().flatten().is_some()) {
                abort_connection(self.conn);
            }
            let _ = self.child.wait();
        } else if mounted(&self.mp) {
            let _ = Command::new("umount").arg("-l").arg(&self.mp).status();
        }
    }
}

fn start_daemon(store: &Path, mp: &Path, err: &Path) -> Daemon {
    let child = msgfs_command()
        .arg("mount")
        .arg("-f")
        .arg(store)
        .arg(mp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(err).unwrap())
        .spawn()
        .unwrap();
    let mut d = Daemon { child, mp: mp.to_path_buf(), conn: 0 };
    let up = wait_until(Duration::from_secs(30), || mounted(mp) || d.child.try_wait().ok().flatten().is_some());
    assert!(
        up && mounted(mp),
        "the daemon did not mount (the store did not reopen?): {}",
        std::fs::read_to_string(err).unwrap_or_default()
    );
    d.conn = libc::minor(std::fs::metadata(mp).unwrap().dev()) as u64;
    d
}

#[test]
fn sigkill_under_saves_renames_and_unlinks_keeps_every_acknowledged_state_and_never_hangs() {
    if should_skip() {
        return;
    }
    require(&["umount", "mount"]);
    assert!(fusectl(), "cannot mount the FUSE control filesystem on {CONNECTIONS} (needed to end a hang)");
    let t0 = Instant::now();
    let tmp = tempfile::Builder::new().prefix("kill-loop-").tempdir_in(test_tmp()).unwrap();
    let base = tmp.path();
    let (store, mp) = (base.join("store"), base.join("mnt"));
    std::fs::create_dir(&mp).unwrap();
    Store::open(&store, Options { create: true, ..Default::default() }).unwrap().close().unwrap();
    let seed: u64 = std::env::var(SEED_ENV).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 ^ u64::from(std::process::id())
    });
    let rounds: u32 = std::env::var(ROUNDS_ENV).ok().and_then(|s| s.parse().ok()).unwrap_or(24);
    println!("kill loop seed {seed} ({SEED_ENV}={seed} replays it), {rounds} rounds");
    let mut rng = xorshift(seed | 1);
    let mut model: Vec<Model> = vec![Model::new(); WRITERS];
    let (mut kills, mut rename_kills, mut acked_total, mut inflight_total, mut inflight_applied) = (0, 0, 0, 0, 0);
    let mut acked_kinds: BTreeMap<String, usize> = BTreeMap::new();
    let (mut lost, mut hangs, mut unexpected, mut other) = (vec![], vec![], vec![], vec![]);
    let (mut slowest, mut stuck_kills) = (Duration::ZERO, Vec::new());
    for round in 1..=rounds {
        let err_path = base.join(format!("daemon-r{round}.stderr"));
        let mut daemon = start_daemon(&store, &mp, &err_path);
        let pid = daemon.child.id() as i32;
        let rd = Arc::new(Round {
            round,
            inbox: mp.join("Inbox"),
            killed: AtomicBool::new(false),
            renaming: AtomicUsize::new(0),
            progress: (0..WRITERS).map(|_| Progress::default()).collect(),
        });
        let (tx, rx) = mpsc::channel::<(usize, WriterEnd)>();
        for (w, m) in model.iter().enumerate() {
            let (rd, tx, owned, ops) = (rd.clone(), tx.clone(), m.keys().cloned().collect(), ops_path(base, round, w));
            std::thread::spawn(move || {
                let end = writer(&rd, w, owned, seed, &ops);
                let _ = tx.send((w, end));
            });
        }
        drop(tx);

        // The kill: at a random moment, or (even rounds) while a writer is in rename(2).
        rng = xorshift(rng);
        let during_rename = round % 2 == 0;
        let mut ends: BTreeMap<usize, WriterEnd> = BTreeMap::new();
        if during_rename {
            // Let the writers get going, then catch one in a rename.
            std::thread::sleep(Duration::from_millis(100 + rng % 300));
            let caught = wait_until(Duration::from_secs(5), || rd.renaming.load(Ordering::SeqCst) > 0);
            for _ in 0..(rng >> 16) % 2000 {
                std::hint::spin_loop();
            }
            if caught {
                rename_kills += 1;
            }
        } else {
            std::thread::sleep(Duration::from_millis(50 + rng % 700));
        }
        rd.killed.store(true, Ordering::SeqCst);
        // SAFETY: SIGKILL to the daemon this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let killed_at = Instant::now();
        kills += 1;

        // After the kill: umount -l frees the mount point, the daemon is gone, the writers
        // stopped, each within BOUND; if not, that is a hang: abort the connection and go on.
        let mut hang: Vec<String> = Vec::new();
        // One deadline for the three: they all run from the kill on.
        let deadline = Instant::now() + BOUND;
        let left = || deadline.saturating_duration_since(Instant::now());
        // A daemon thread seen in D state after the kill (what hung before the watchdog) counts
        // as a hang only if the daemon is not gone within the bound; it is reported either way.
        // Watched closely for the first 300 ms (the watchdog polls every 50 ms), before umount -l.
        let mut stuck: Option<String> = None;
        let early = wait_until(Duration::from_millis(300), || {
            if daemon.child.try_wait().ok().flatten().is_some() {
                return true;
            }
            if stuck.is_none() {
                stuck = uninterruptible(pid);
            }
            false
        });
        let early_at = killed_at.elapsed();
        let mut umount = Command::new("umount").arg("-l").arg(&mp).stderr(Stdio::piped()).spawn().unwrap();
        if !wait_until(left(), || umount.try_wait().ok().flatten().is_some()) {
            hang.push(format!("umount -l still running after {BOUND:?}"));
        }
        let gone = early || wait_until(left(), || daemon.child.try_wait().ok().flatten().is_some());
        let reaped = if early { early_at } else { killed_at.elapsed() };
        slowest = slowest.max(reaped);
        if let Some(t) = stuck {
            stuck_kills.push(format!("round {round}: {t}; daemon gone {reaped:?} after the kill"));
        }
        if !gone {
            hang.push(format!("daemon {pid} not gone {BOUND:?} after SIGKILL and umount -l:\n{}", threads(pid, None)));
        }
        let gather = |ends: &mut BTreeMap<usize, WriterEnd>, bound: Duration| {
            let until = Instant::now() + bound;
            while ends.len() < WRITERS {
                match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                    Ok((w, e)) => {
                        ends.insert(w, e);
                    }
                    Err(_) => return false,
                }
            }
            true
        };
        if !gather(&mut ends, left()) {
            let mut s = format!("writers still in a syscall {BOUND:?} after the kill:\n");
            for w in (0..WRITERS).filter(|w| !ends.contains_key(w)) {
                let p = &rd.progress[w];
                s += &format!(
                    " w{w} doing {}:\n{}",
                    p.doing.lock().unwrap(),
                    threads(std::process::id() as i32, Some(p.tid.load(Ordering::SeqCst)))
                );
            }
            hang.push(s);
        }
        if !hang.is_empty() {
            let a = abort_connection(daemon.conn);
            let freed = wait_until(BOUND, || daemon.child.try_wait().ok().flatten().is_some())
                && gather(&mut ends, BOUND)
                && wait_until(BOUND, || umount.try_wait().ok().flatten().is_some());
            assert!(freed, "round {round} (seed {seed}): still hung after the abort ({a}): {hang:?}");
            hangs.push(format!("round {round} ({a}): {}", hang.join("; ")));
        }
        let st = umount.wait().unwrap();
        assert!(st.success() && !mounted(&mp), "round {round}: umount -l did not free the mount point ({st})");
        for e in ends.values() {
            for fd in &e.fds {
                // SAFETY: descriptors the writers opened and left to us.
                unsafe { libc::close(*fd) };
            }
        }

        // Compare with the model, per writer.
        let mut bad = Vec::new();
        let found = observe(&store, &mut bad);
        other.extend(bad.iter().map(|b| format!("round {round}: {b}")));
        let mut acked = [0usize; WRITERS];
        for w in 0..WRITERS {
            let mut inflight: Option<Op> = None;
            for op in read_ops(&ops_path(base, round, w)) {
                if op.acked {
                    apply(&mut model[w], round, &op);
                    acked[w] += 1;
                    *acked_kinds.entry(op.kind.clone()).or_default() += 1;
                } else {
                    inflight = Some(op);
                }
            }
            if let Some(f) = ends.get_mut(&w).and_then(|e| e.failure.take()) {
                if !from_the_kill(f.errno) {
                    unexpected.push(format!(
                        "round {round} w{} op {}: {} got {} ({} the kill)",
                        f.w,
                        f.seq,
                        f.what,
                        errno_name(f.errno),
                        if f.after_kill { "after" } else { "before" }
                    ));
                }
            }
            let alt = inflight.as_ref().map(|op| {
                let mut m = model[w].clone();
                apply(&mut m, round, op);
                m
            });
            inflight_total += usize::from(inflight.is_some());
            if found[w] == model[w] {
                continue;
            }
            if alt.as_ref() == Some(&found[w]) {
                inflight_applied += 1;
                continue;
            }
            let names: BTreeSet<&String> = found[w].keys().chain(model[w].keys()).collect();
            for n in names {
                let (f, m) = (found[w].get(n), model[w].get(n));
                if f != m && alt.as_ref().is_none_or(|a| a.get(n) != f) {
                    lost.push(format!(
                        "round {round} w{w} {n}: acknowledged {m:?}, found {f:?} (in flight: {:?})",
                        inflight.as_ref().map(|o| format!("{} {} {} {}", o.seq, o.kind, o.name, o.target))
                    ));
                }
            }
        }
        let r = check_dir(&store);
        if !r.ok() {
            other.push(format!("round {round}: check_dir found damage: {:?}", r.damage));
        }
        println!(
            "round {round}: killed {}; acknowledged per writer {acked:?}; {} hang(s) so far",
            if during_rename { "during a rename" } else { "at a random moment" },
            hangs.len()
        );
        acked_total += acked.iter().sum::<usize>();
        // Go on from what the store holds, so one loss is reported once.
        model = found;
        drop(daemon);
    }
    let out = msgfs_command().arg("check").arg(&store).output().unwrap();
    if !out.status.success() {
        other.push(format!("msgfs check: {}", String::from_utf8_lossy(&out.stdout)));
    }
    println!(
        "{kills} kills ({rename_kills} during a rename) in {:.1} s: {acked_total} acknowledged operations {acked_kinds:?}, \
         {inflight_total} in flight ({inflight_applied} took effect); lost {}, hangs {}, unexpected errors {}, other {}",
        t0.elapsed().as_secs_f64(),
        lost.len(),
        hangs.len(),
        unexpected.len(),
        other.len()
    );
    println!(
        "daemon reaped at most {slowest:?} after a kill; {} kills left a daemon thread in D state for a while",
        stuck_kills.len()
    );
    for s in &stuck_kills {
        println!("STUCK: {s}");
    }
    for (what, list) in [("LOST", &lost), ("HANG", &hangs), ("UNEXPECTED", &unexpected), ("OTHER", &other)] {
        for l in list {
            println!("{what}: {l}");
        }
    }
    let failed = !(lost.is_empty() && hangs.is_empty() && unexpected.is_empty() && other.is_empty());
    if failed {
        // The operation files and daemon logs, for a look at what happened.
        println!("kept {}", tmp.keep().display());
    }
    assert!(
        !failed,
        "seed {seed}: {} acknowledged states lost, {} hangs, {} unexpected errors, {} other problems (listed above)",
        lost.len(),
        hangs.len(),
        unexpected.len(),
        other.len()
    );
    assert!(kills >= 20 && acked_total >= 200, "too little exercised: {kills} kills, {acked_total} acknowledged ops");
}

/// The unexplained ENOENT of the kill loop, on its own: a message saved through the mount,
/// renamed (before the save's invalidation of its name reached the kernel, its dentry keeps
/// the older version's inode), renamed over another message and renamed again must stay
/// openable and hold what was written. The race is lost in a fraction of the iterations; before
/// the fix about one in twelve got ENOENT.
#[test]
fn a_saved_message_renamed_over_another_and_renamed_again_stays_openable() {
    if should_skip() {
        return;
    }
    let m = Mount::new();
    let put = |p: &Path, body: &[u8], create: bool| -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).truncate(true).create_new(create).open(p)?;
        f.write_all(body)?;
        f.sync_all()
    };
    let mut failures = Vec::new();
    for i in 0..300 {
        let [x, y, z, w] = ["x", "y", "z", "w"].map(|c| m.p(&format!("Inbox/{c}{i}.eml")));
        put(&x, b"x1\n", true).unwrap();
        put(&z, b"z1\n", true).unwrap();
        // Dentries with the long TTL (no writer then), then a save of x through the mount.
        std::fs::metadata(&x).unwrap();
        std::fs::metadata(&z).unwrap();
        put(&x, b"x2\n", false).unwrap();
        std::fs::rename(&x, &y).unwrap();
        std::fs::rename(&y, &z).unwrap();
        std::fs::rename(&z, &w).unwrap();
        match put(&w, b"x3\n", false) {
            Ok(()) => assert_eq!(std::fs::read(&w).unwrap(), b"x3\n", "iteration {i}"),
            Err(e) => failures.push(format!("iteration {i}: {e}")),
        }
        std::fs::remove_file(&w).unwrap();
    }
    assert!(failures.is_empty(), "{} of 300: {failures:?}", failures.len());
    assert_eq!(names(&m.p("Inbox")), Vec::<String>::new(), "names left over");
}

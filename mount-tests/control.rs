//! The control interface on a mount: snapshot freezes for consistent backups, the freeze
//! timeout, the crash-recovery lock and recovered drafts, and who may use them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn msgfs(args: &[&str], mp: &Path) -> std::process::Output {
    msgfs_command().args(args).arg(mp).output().unwrap()
}

fn state(m: &Mount) -> String {
    String::from_utf8(getxattr(&m.mp, "user.msgfs.state").unwrap()).unwrap()
}

#[test]
fn a_close_waits_during_a_freeze_and_finishes_after_the_thaw_while_reads_go_on() {
    if should_skip() {
        return;
    }
    let m = Mount::with(&[], |st| put(st, "Inbox", &[("a.eml", b"Subject: a\n\nx\n")]));
    assert!(msgfs(&["freeze"], &m.mp).status.success());
    assert!(state(&m).contains("frozen: yes"));
    let p = m.p("Inbox/new.eml");
    let writer = std::thread::spawn(move || {
        std::fs::write(&p, b"Subject: written during a freeze\n\nbody\n").unwrap();
        Instant::now()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(!writer.is_finished(), "the close did not wait for the thaw");
    // Reads go on, and the new file is visible (empty until saved).
    assert_eq!(std::fs::read(m.p("Inbox/a.eml")).unwrap(), b"Subject: a\n\nx\n");
    assert!(names(&m.p("Inbox")).contains(&"new.eml".to_string()));
    let thawed = Instant::now();
    assert!(msgfs(&["thaw"], &m.mp).status.success());
    let done = writer.join().unwrap();
    assert!(done >= thawed, "the close finished before the thaw");
    assert_eq!(std::fs::read(m.p("Inbox/new.eml")).unwrap(), b"Subject: written during a freeze\n\nbody\n");
}

#[test]
fn a_freeze_past_its_timeout_thaws_by_itself_and_thaw_says_so() {
    if should_skip() {
        return;
    }
    let m = Mount::with(&["snapshot_timeout_ms=300"], |_| {});
    assert!(msgfs(&["freeze"], &m.mp).status.success());
    std::fs::write(m.p("Inbox/x.eml"), b"x").unwrap(); // waits at most the timeout
    assert!(state(&m).contains("timed-out"), "{}", state(&m));
    let out = msgfs(&["thaw"], &m.mp);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("may be inconsistent"));
    // The same through the xattr: ETIMEDOUT; then no session is left.
    assert!(msgfs(&["freeze"], &m.mp).status.success());
    std::thread::sleep(Duration::from_millis(500));
    let c = cpath(&m.mp);
    let n = std::ffi::CString::new("user.msgfs.snapshot").unwrap();
    // SAFETY: setxattr with valid strings and a buffer of the length passed.
    let r = unsafe { libc::setxattr(c.as_ptr(), n.as_ptr(), b"thaw".as_ptr().cast(), 4, 0) };
    assert_eq!((r, errno()), (-1, libc::ETIMEDOUT));
    assert!(state(&m).contains("snapshot: none"));
}

/// A writer that saves `count` times, save i to file i % 5 with content "save i", and
/// records each acknowledged save. Returns its log of acknowledged save numbers.
fn saver(dir: std::path::PathBuf, acks: std::path::PathBuf, count: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use std::io::Write;
        let mut log = std::fs::File::create(&acks).unwrap();
        for i in 0..count {
            let p = dir.join(format!("f{}.eml", i % 5));
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&p).unwrap();
            f.write_all(format!("Subject: save {i}\n\n{}\n", "x".repeat(i % 300)).as_bytes()).unwrap();
            f.sync_all().unwrap();
            drop(f);
            writeln!(log, "{i}").unwrap();
        }
    })
}

#[test]
fn backups_taken_while_writers_save_hold_a_prefix_of_the_acknowledged_saves() {
    if should_skip() {
        return;
    }
    require(&["rsync", "vim"]);
    let m = Mount::new();
    std::fs::create_dir(m.p("Inbox/busy")).unwrap();
    let acks = m.dir.path().join("acks");
    let w = saver(m.p("Inbox/busy"), acks.clone(), 100_000);
    // Other writers: cp in a loop, and vim.
    let src = m.dir.path().join("cp-src.eml");
    std::fs::write(&src, b"Subject: copied\n\nsame bytes every time\n").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop2, cp_dst, src2) = (stop.clone(), m.p("Drafts/copied.eml"), src.clone());
    let cp = std::thread::spawn(move || {
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = Command::new("cp").arg(&src2).arg(&cp_dst).status();
        }
    });
    std::fs::write(m.p("Drafts/vim.eml"), b"Subject: vim\n\nline\n").unwrap();
    for round in 0..20 {
        let dest = m.dir.path().join(format!("backup{round}"));
        let before: usize = std::fs::read_to_string(&acks).unwrap().lines().count();
        let out = msgfs_command().arg("backup").arg(&m.mp).arg(&dest).output().unwrap();
        assert!(out.status.success(), "backup {round}: {}", String::from_utf8_lossy(&out.stderr));
        let after: usize = std::fs::read_to_string(&acks).unwrap().lines().count();
        if round % 5 == 0 {
            let _ = Command::new("vim")
                .args(["--clean", "-es", "-c", "$put ='more'", "-c", "wq"])
                .arg(m.p("Drafts/vim.eml"))
                .stdin(Stdio::null())
                .status();
        }
        // The backup is a store that checks clean...
        let check = msgfs_command().arg("check").arg(&dest).output().unwrap();
        assert!(check.status.success(), "backup {round}: {}", String::from_utf8_lossy(&check.stdout));
        // ...and holds one moment of the writer: for a K between the saves acknowledged
        // before and after the backup, each file holds the last save <= K made to it.
        let st =
            msgfs::store::Store::open(&dest, msgfs::store::Options { read_only: true, ..Default::default() }).unwrap();
        let busy = st.folder_by_path("Inbox/busy").ok();
        let mut found = [None; 5];
        if let Some(busy) = busy {
            let entries: Vec<(String, msgfs::store::Id)> =
                st.index().children(busy).unwrap().map(|(name, c)| (name.to_string(), c.id())).collect();
            for (name, id) in entries {
                let body = st.read_message(id).unwrap();
                let text = String::from_utf8(body.clone()).unwrap();
                let i: usize = text.lines().next().unwrap().trim_start_matches("Subject: save ").parse().unwrap();
                assert_eq!(
                    body,
                    format!("Subject: save {i}\n\n{}\n", "x".repeat(i % 300)).into_bytes(),
                    "torn message in backup {round}"
                );
                let k: usize = name.trim_start_matches('f').trim_end_matches(".eml").parse().unwrap();
                found[k] = Some(i);
            }
        }
        let k_max = found.iter().flatten().max().copied();
        assert!(k_max.is_some() || round < 3, "backup {round} has none of the writer's saves");
        if let Some(k) = k_max {
            assert!(k + 1 >= before, "backup {round} misses acknowledged saves: has {k}, {before} acked before");
            assert!(k < after + 1, "backup {round} holds a save acknowledged after it");
            for (f, got) in found.iter().enumerate() {
                // The last save to file f at or before k.
                let want = (0..=k).rev().find(|i| i % 5 == f);
                assert_eq!(*got, want, "backup {round}: file f{f} is not from the same moment as the others");
            }
        }
        // It also mounts.
        if round == 19 {
            let mut b = Mount::adopt(&dest);
            assert!(b.p("Inbox/busy").exists());
            b.unmount();
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    cp.join().unwrap();
    drop(m);
    let _ = w.join();
}

#[test]
fn the_crash_lock_refuses_others_until_the_locking_shell_exits_or_unlock() {
    if should_skip() {
        return;
    }
    let m = Mount::with(&[], |st| put(st, "Inbox", &[("a.eml", b"Subject: a\n\nx\n")]));
    let a = m.p("Inbox/a.eml");
    // A shell takes the lock for itself and keeps running a moment.
    let mut shell =
        Command::new("sh").arg("-c").arg(format!("'{MSGFS}' lock '{}' && sleep 1", m.mp.display())).spawn().unwrap();
    let start = Instant::now();
    while !state(&m).contains("locked by process") {
        assert!(start.elapsed() < Duration::from_secs(5), "no lock: {}", state(&m));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read(&a).unwrap_err().raw_os_error(), Some(libc::EACCES));
    assert_eq!(std::fs::write(m.p("Inbox/b.eml"), b"x").unwrap_err().raw_os_error(), Some(libc::EACCES));
    shell.wait().unwrap();
    let start = Instant::now();
    while state(&m).contains("locked by process") {
        assert!(start.elapsed() < Duration::from_secs(5), "the lock outlived its shell");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read(&a).unwrap(), b"Subject: a\n\nx\n");
    // CONTINUE lifts it; with SYSTEM_SHUTDOWN it cannot.
    let mut shell = Command::new("sh").arg("-c").arg("sleep 30").spawn().unwrap();
    let pid = shell.id();
    let set = |v: &str| {
        let c = cpath(&m.mp);
        let n = std::ffi::CString::new("user.msgfs.crash_recovery").unwrap();
        // SAFETY: setxattr with valid strings and a buffer of the length passed.
        let r = unsafe { libc::setxattr(c.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
        if r == 0 {
            Ok(())
        } else {
            Err(errno())
        }
    };
    set(&format!("recover,pid={pid}")).unwrap();
    assert_eq!(std::fs::read(&a).unwrap_err().raw_os_error(), Some(libc::EACCES));
    assert!(msgfs(&["unlock"], &m.mp).status.success());
    assert_eq!(std::fs::read(&a).unwrap(), b"Subject: a\n\nx\n");
    set(&format!("recover,shutdown,pid={pid}")).unwrap();
    assert_eq!(set("continue"), Err(libc::EPERM));
    let out = msgfs(&["unlock"], &m.mp);
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&a).unwrap_err().raw_os_error(), Some(libc::EACCES));
    shell.kill().unwrap();
    shell.wait().unwrap();
    let start = Instant::now();
    while std::fs::read(&a).is_err() {
        assert!(start.elapsed() < Duration::from_secs(5), "the shutdown lock outlived its holder");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_locking_process_unsaved_file_becomes_a_recovered_draft() {
    if should_skip() {
        return;
    }
    require(&["python3"]);
    let m = Mount::with(&[], |st| put(st, "Inbox", &[("a.eml", b"Subject: a\n\noriginal\n")]));
    // The process opens a message, changes it, takes the lock by ioctl (as a dying client
    // would) and closes the file: the change is not committed but kept.
    let script = format!(
        r#"
import fcntl, os, struct
fd = os.open("{a}", os.O_RDWR)
os.pwrite(fd, b"Subject: a\n\nunsaved change\n", 0)
cmd = (1 << 30) | (8 << 16) | (ord("M") << 8) | 2
fcntl.ioctl(fd, cmd, struct.pack("II", 1, 0))
try:
    os.close(fd)
except OSError as e:
    print("close", e.errno)
"#,
        a = m.p("Inbox/a.eml").display()
    );
    let out = Command::new("python3").arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("close {}", libc::EACCES));
    // The process has ended: the lock is gone and the draft is committed.
    let start = Instant::now();
    // The folder is made first, then the draft is committed into it.
    while !m.p("Recovered Drafts").exists() || names(&m.p("Recovered Drafts")).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(5), "no recovered draft: {}", state(&m));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read(m.p("Inbox/a.eml")).unwrap(),
        b"Subject: a\n\noriginal\n",
        "the unsaved change was committed"
    );
    let drafts = names(&m.p("Recovered Drafts"));
    assert_eq!(drafts, ["a.eml"]);
    assert_eq!(std::fs::read(m.p("Recovered Drafts/a.eml")).unwrap(), b"Subject: a\n\nunsaved change\n");
}

#[test]
fn only_root_and_the_mounting_user_may_lock_or_freeze() {
    if should_skip() {
        return;
    }
    require(&["setpriv", "setfattr"]);
    let m = Mount::reachable(&["allow_other"], |_| {});
    // Writable by all, so the kernel's own permission check lets the request through and
    // msgfs's rule is what refuses it.
    run(Command::new("chmod").arg("777").arg(&m.mp));
    for (name, value) in [("user.msgfs.crash_recovery", "recover"), ("user.msgfs.snapshot", "freeze")] {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "setfattr", "-n", name, "-v", value])
            .arg(&m.mp)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not permitted"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(state(&m).contains("crash_recovery: none"));
    assert!(state(&m).contains("snapshot: none"));
}

#[test]
fn the_control_xattrs_are_not_listed() {
    if should_skip() {
        return;
    }
    let m = Mount::new();
    let c = cpath(&m.mp);
    let mut buf = [0u8; 256];
    // SAFETY: listxattr into a buffer of the size passed.
    let n = unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(n, 0);
    assert!(state(&m).contains("crash_recovery: none"));
}

#[test]
fn a_store_not_closed_cleanly_is_checked_at_the_next_open_and_status_says_so() {
    if should_skip() {
        return;
    }
    let mut m = Mount::new();
    std::fs::write(m.p("Inbox/a.eml"), b"Subject: a\n\nx\n").unwrap();
    m.remount(&[]);
    assert!(state(&m).contains("last open: clean"), "{}", state(&m));
    std::fs::write(m.p("Inbox/b.eml"), b"Subject: b\n\ny\n").unwrap();
    m.kill_daemon();
    m.mount(&[]);
    let s = state(&m);
    assert!(s.contains("not closed cleanly before; checked at open"), "{s}");
    let out = msgfs(&["status"], &m.mp);
    assert!(String::from_utf8_lossy(&out.stdout).contains("not closed cleanly"));
    assert_eq!(std::fs::read(m.p("Inbox/b.eml")).unwrap(), b"Subject: b\n\ny\n");
}

/// Issue 9, part 1: a change that must wait for a thaw parks its reply and returns the FUSE
/// thread, so any number of waiting changes leave creates, writes into private copies,
/// reads and lookups running (before, about 8 waiting changes took every thread and a
/// create waited for the freeze timeout).
#[test]
fn a_hundred_changes_waiting_for_a_thaw_do_not_stop_creates_reads_and_lookups() {
    if should_skip() {
        return;
    }
    const WAITING: usize = 100;
    let m = Mount::with(&["snapshot_timeout_ms=600000"], |st| {
        put(st, "Drafts", &[("old.eml", b"Subject: old\n\nx\n")]);
    });
    for i in 0..WAITING {
        std::fs::create_dir(m.p(&format!("Inbox/f{i:03}"))).unwrap();
    }
    assert!(msgfs(&["freeze"], &m.mp).status.success());
    let mut waiting: Vec<std::process::Child> =
        (0..WAITING).map(|i| Command::new("mkdir").arg(m.p(&format!("Inbox/f{i:03}/new"))).spawn().unwrap()).collect();
    std::thread::sleep(Duration::from_millis(1000));
    assert!(waiting.iter_mut().all(|c| c.try_wait().unwrap().is_none()), "a mkdir did not wait for the thaw");
    // Run the unblocked work on a thread, so that a hang fails the test instead of hanging it.
    let drafts = m.p("Drafts");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::{Read, Seek, Write};
        let t = Instant::now();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(drafts.join("new.eml"))
            .unwrap();
        let created = t.elapsed();
        f.write_all(b"Subject: new\n\nbody\n").unwrap();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        let mut back = Vec::new();
        f.read_to_end(&mut back).unwrap();
        let listed = names(&drafts);
        let old = std::fs::read(drafts.join("old.eml")).unwrap();
        tx.send((created, t.elapsed(), back, listed, old, f)).unwrap();
    });
    let (created, all, back, listed, old, f) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a create, write, read or readdir waited behind the frozen changes");
    println!("with {WAITING} changes waiting: open(O_CREAT) {created:?}, create+write+read+readdir {all:?}");
    assert_eq!(back, b"Subject: new\n\nbody\n");
    assert!(listed.contains(&"new.eml".to_string()) && listed.contains(&"old.eml".to_string()), "{listed:?}");
    assert_eq!(old, b"Subject: old\n\nx\n");
    let out = msgfs(&["thaw"], &m.mp);
    assert!(out.status.success(), "thaw: {}", String::from_utf8_lossy(&out.stderr));
    for mut c in waiting.drain(..) {
        assert!(c.wait().unwrap().success());
    }
    drop(f);
    for i in 0..WAITING {
        assert!(m.p(&format!("Inbox/f{i:03}/new")).is_dir());
    }
    assert_eq!(std::fs::read(m.p("Drafts/new.eml")).unwrap(), b"Subject: new\n\nbody\n");
}

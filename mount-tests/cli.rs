//! The command line on what it finds: a store is private to its owner whatever the umask
//! (and so is a backup), and commands refuse, with one line naming the path, what is not a
//! msgfs mount or a store, so nothing that is not a store is damaged. The daemon's log of a
//! plain mount and unmount holds no false alarm.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

/// Run `msgfs ARGS` under `umask`, with the daemon's log in `state` (XDG_STATE_HOME).
fn msgfs_umask(umask: u32, state: &Path, args: &[&Path]) -> Output {
    let mut c = Command::new("sh");
    c.arg("-c").arg(format!("umask {umask:03o} && exec \"$0\" \"$@\"")).arg(MSGFS);
    c.args(args).env("XDG_STATE_HOME", state).env("RUST_LOG", "info");
    c.output().unwrap()
}

fn msgfs(args: &[&Path]) -> Output {
    msgfs_command().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Unmounts `mp` with `msgfs umount` when dropped (lazily if that fails), so a failing test
/// leaves no mount behind.
struct Mounted(PathBuf);

impl Mounted {
    fn umount(mut self) {
        let out = msgfs(&[Path::new("umount"), &self.0]);
        assert!(out.status.success(), "umount: {}", stderr(&out));
        self.0 = PathBuf::new();
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() && !msgfs(&[Path::new("umount"), &self.0]).status.success() {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn mount_umask(umask: u32, state: &Path, store: &Path, mp: &Path) -> Mounted {
    let out = msgfs_umask(umask, state, &[Path::new("mount"), store, mp]);
    assert!(out.status.success(), "mount: {}", stderr(&out));
    Mounted(mp.to_path_buf())
}

/// Every directory under `dir` (itself included) and every file in it, with its mode.
fn modes(dir: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        out.push((d.clone(), true, std::fs::metadata(&d).unwrap().permissions().mode() & 0o7777));
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            if md.is_dir() {
                todo.push(e.path());
            } else {
                out.push((e.path(), false, md.permissions().mode() & 0o7777));
            }
        }
    }
    out
}

fn assert_private(dir: &Path, what: &str) {
    let all = modes(dir);
    assert!(all.iter().filter(|(_, d, _)| !d).count() >= 4, "{what}: too few files to judge: {all:?}");
    for (p, is_dir, mode) in all {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{what}: {} is {mode:o}", p.display());
    }
}

#[test]
fn a_store_and_its_backup_are_private_whatever_the_umask() {
    if should_skip() {
        return;
    }
    require(&["rsync"]);
    for umask in [0o022, 0o000] {
        let dir = tempfile::Builder::new().prefix("msgfs-test").tempdir_in(test_tmp()).unwrap();
        let (store, mp, dest) = (dir.path().join("store"), dir.path().join("mnt"), dir.path().join("backup"));
        std::fs::create_dir(&mp).unwrap();
        let out = msgfs_umask(umask, dir.path(), &[Path::new("init"), &store]);
        assert!(out.status.success(), "init: {}", stderr(&out));
        assert_private(&store, &format!("umask {umask:03o}, new store"));

        // Objects, staging, log segments, checkpoint, lock, clean marker: all written by
        // the daemon under the same umask.
        let m = mount_umask(umask, dir.path(), &store, &mp);
        std::fs::write(mp.join("Inbox/a.eml"), b"Subject: a\n\nsaved\n").unwrap();
        std::fs::create_dir(mp.join("Inbox/Sub")).unwrap();
        std::fs::write(mp.join("Inbox/Sub/b.eml"), b"Subject: b\n\nsaved\n").unwrap();
        // Large enough for an object file of its own (smaller content is kept in the log).
        let big = format!("Subject: c\n\n{}\n", "x".repeat(msgfs::store::INLINE_MAX));
        std::fs::write(mp.join("Inbox/c.eml"), big).unwrap();
        let out = msgfs_umask(umask, dir.path(), &[Path::new("backup"), &mp, &dest]);
        assert!(out.status.success(), "backup: {}", stderr(&out));
        m.umount();
        assert_private(&store, &format!("umask {umask:03o}, store after a mount and saves"));
        assert_private(&dest, &format!("umask {umask:03o}, backup"));
        // The daemon's log names messages too.
        let log = std::fs::metadata(dir.path().join("msgfs/msgfs.log")).unwrap();
        assert_eq!(log.permissions().mode() & 0o777, 0o600, "umask {umask:03o}: the daemon's log");
        assert!(msgfs(&[Path::new("check"), &dest]).status.success());
    }
}

#[test]
fn check_and_mount_warn_about_a_store_others_can_read() {
    if should_skip() {
        return;
    }
    let dir = tempfile::Builder::new().prefix("msgfs-test").tempdir_in(test_tmp()).unwrap();
    let (store, mp) = (dir.path().join("store"), dir.path().join("mnt"));
    std::fs::create_dir(&mp).unwrap();
    assert!(msgfs(&[Path::new("init"), &store]).status.success());
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fix = format!("chmod -R go-rwx {}", store.display());

    let out = msgfs(&[Path::new("check"), &store]);
    assert!(out.status.success(), "check: {}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr(&out).contains(&fix), "check says nothing of the fix: {}", stderr(&out));

    let out = msgfs_umask(0o022, dir.path(), &[Path::new("mount"), &store, &mp]);
    assert!(out.status.success(), "mount: {}", stderr(&out));
    let m = Mounted(mp.clone());
    assert!(stderr(&out).contains(&fix), "mount says nothing of the fix: {}", stderr(&out));
    m.umount();

    // After the fix, neither says it.
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = msgfs(&[Path::new("check"), &store]);
    assert!(out.status.success() && !stderr(&out).contains("chmod"), "{}", stderr(&out));
}

fn user_xattrs(p: &Path) -> String {
    let out = run(Command::new("getfattr").arg("-d").arg("-m").arg("-").arg("--absolute-names").arg(p));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn control_commands_refuse_what_is_not_a_msgfs_mount() {
    if should_skip() {
        return;
    }
    require(&["getfattr"]);
    let m = Mount::new();
    let plain = m.dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let before = user_xattrs(&plain);
    // An ordinary directory, and a folder inside a mount (not its root).
    for target in [plain.clone(), m.p("Inbox")] {
        for cmd in ["lock", "unlock", "freeze", "thaw", "abort", "status", "umount"] {
            let out = msgfs(&[Path::new(cmd), &target]);
            assert_eq!(out.status.code(), Some(2), "msgfs {cmd} {}: {}", target.display(), stderr(&out));
            let err = stderr(&out);
            assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
            assert!(err.contains("not a msgfs mount") && err.contains(&*target.to_string_lossy()), "{cmd}: {err}");
            assert!(out.stdout.is_empty(), "{cmd} printed success: {}", String::from_utf8_lossy(&out.stdout));
        }
    }
    assert_eq!(user_xattrs(&plain), before, "the ordinary directory's xattrs changed");
    // The mount itself still answers.
    let out = msgfs(&[Path::new("status"), &m.mp]);
    assert!(out.status.success(), "status: {}", stderr(&out));
}

#[test]
fn backup_refuses_a_destination_it_would_damage() {
    if should_skip() {
        return;
    }
    require(&["rsync"]);
    let m = Mount::with(&[], |st| put(st, "Inbox", &[("a.eml", b"Subject: a\n\nkeep me\n")]));
    let backup = |dest: &Path| msgfs(&[Path::new("backup"), &m.mp, dest]);

    // A directory of someone's files.
    let foreign = m.dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("thesis.txt"), b"years of work").unwrap();
    let out = backup(&foreign);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not a backup of this store"), "{}", stderr(&out));
    assert_eq!(std::fs::read(foreign.join("thesis.txt")).unwrap(), b"years of work");
    assert_eq!(names(&foreign), ["thesis.txt"]);

    // The mount itself, or a folder in it.
    for dest in [m.p("Inbox"), m.p("Inbox/new"), m.mp.clone()] {
        let out = backup(&dest);
        assert_eq!(out.status.code(), Some(2), "{}: {}", dest.display(), stderr(&out));
        assert!(stderr(&out).contains("inside the msgfs mount"), "{}", stderr(&out));
    }
    assert_eq!(names(&m.p("Inbox")), ["a.eml"]);
    assert_eq!(std::fs::read(m.p("Inbox/a.eml")).unwrap(), b"Subject: a\n\nkeep me\n");

    // Another store's backup is foreign too; this store's earlier backup is updated.
    let other = Mount::new();
    let theirs = m.dir.path().join("theirs");
    assert!(msgfs(&[Path::new("backup"), &other.mp, &theirs]).status.success());
    let out = backup(&theirs);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let ours = m.dir.path().join("ours");
    for round in 0..2 {
        let out = backup(&ours);
        assert!(out.status.success(), "backup round {round}: {}", stderr(&out));
    }
    assert!(msgfs(&[Path::new("check"), &ours]).status.success());
}

#[test]
fn maildir_export_refuses_a_non_empty_destination() {
    if should_skip() {
        return;
    }
    let dir = tempfile::Builder::new().prefix("msgfs-test").tempdir_in(test_tmp()).unwrap();
    let store = dir.path().join("store");
    let st = msgfs::store::Store::open(&store, msgfs::store::Options { create: true, ..Default::default() }).unwrap();
    put(&st, "Inbox", &[("a.eml", b"Subject: a\n\none\n"), ("b.eml", b"Subject: b\n\ntwo\n")]);
    st.close().unwrap();
    let dest = dir.path().join("md");
    let export = || msgfs(&[Path::new("export"), Path::new("--store"), &store, Path::new("--format=maildir"), &dest]);
    let out = export();
    assert!(out.status.success(), "first export: {}", stderr(&out));
    let count = || modes(&dest).iter().filter(|(_, d, _)| !d).count();
    let first = count();
    assert!(first >= 2, "the first export wrote {first} files");
    let out = export();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    assert_eq!(count(), first, "the second export added files");
}

#[test]
fn check_and_mount_say_what_is_not_a_store() {
    if should_skip() {
        return;
    }
    let dir = tempfile::Builder::new().prefix("msgfs-test").tempdir_in(test_tmp()).unwrap();
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("notes.txt"), b"hello").unwrap();
    let out = msgfs(&[Path::new("check"), &plain]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("DAMAGED"));
    assert!(stderr(&out).contains("is not a msgfs store"), "{}", stderr(&out));
    assert_eq!(names(&plain), ["notes.txt"]);

    let out = msgfs(&[Path::new("check"), &dir.path().join("missing")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing: No such file or directory"), "{}", stderr(&out));

    // Nor is a store laid out among someone's files, by init or by a first mount.
    let mode = || std::fs::metadata(&plain).unwrap().permissions().mode();
    let before = mode();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    for args in [vec![Path::new("init"), &plain], vec![Path::new("mount"), &plain, &mp]] {
        let out = msgfs(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("not a msgfs store and not empty"), "{}", stderr(&out));
        assert_eq!(names(&plain), ["notes.txt"], "{args:?} left files");
        assert_eq!(mode(), before, "{args:?} changed the directory's mode");
    }
    assert!(names(&mp).is_empty());

    let mbox = dir.path().join("mail.mbox");
    std::fs::write(&mbox, b"From a@b Thu Jan  1 00:00:00 2024\nSubject: x\n\nbody\n").unwrap();
    let out = msgfs(&[Path::new("mount"), &mbox, &mp]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let want =
        format!("{} is an mbox file, not a store: import it with `msgfs import {}`", mbox.display(), mbox.display());
    assert!(err.contains(&want), "{err}");
    assert!(names(&mp).is_empty());
}

#[test]
fn mounting_a_new_store_and_unmounting_log_no_false_alarm() {
    if should_skip() {
        return;
    }
    let dir = tempfile::Builder::new().prefix("msgfs-test").tempdir_in(test_tmp()).unwrap();
    let (store, mp) = (dir.path().join("new-store"), dir.path().join("mnt"));
    std::fs::create_dir(&mp).unwrap();
    for round in 0..2 {
        let m = mount_umask(0o077, dir.path(), &store, &mp);
        std::fs::write(mp.join(format!("Inbox/{round}.eml")), b"Subject: x\n\nsaved\n").unwrap();
        if round == 0 {
            m.umount();
        } else {
            // Unmounted from outside the daemon, as people do: no false alarm either.
            let lock = std::fs::read_to_string(store.join("lock")).unwrap();
            let pid: i32 = lock.strip_prefix("process ").unwrap().split_whitespace().next().unwrap().parse().unwrap();
            assert!(Command::new("fusermount3").arg("-u").arg(&mp).status().unwrap().success());
            std::mem::forget(m);
            wait_gone(pid);
        }
    }
    let log = std::fs::read_to_string(dir.path().join("msgfs/msgfs.log")).unwrap();
    // The daemon logged at info level, so a warning would be there.
    assert!(log.contains(" INFO "), "{log}");
    assert!(!log.contains("not closed cleanly"), "{log}");
    assert!(!log.contains("Failed to umount"), "{log}");
    assert!(!log.contains("WARN"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn umount_removes_the_mount_of_a_daemon_that_died() {
    if should_skip() {
        return;
    }
    let mut m = Mount::new();
    let pid = m.daemon_pid();
    // SAFETY: killing the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_gone(pid);
    let e = std::fs::metadata(&m.mp).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "not a dead mount: {e}");
    m.unmount();
    assert!(std::fs::read_dir(&m.mp).unwrap().next().is_none(), "something is still mounted");
    let out = msgfs(&[Path::new("status"), &m.mp]);
    assert!(stderr(&out).contains("is not a msgfs mount"), "{}", stderr(&out));
}

#[test]
fn the_harness_daemons_log_in_the_test_area_and_never_in_the_users_log() {
    if should_skip() {
        return;
    }
    let log = test_state().join("msgfs/msgfs.log");
    let mut m = Mount::new();
    m.unmount();
    // Opened (created if missing) by every background mount the harness makes.
    assert!(log.exists(), "{}", log.display());
}

#[test]
fn mount_v_with_log_file_logs_info_lines_to_that_file() {
    if should_skip() {
        return;
    }
    let dir = tempfile::Builder::new().prefix("msgfs-test").tempdir_in(test_tmp()).unwrap();
    let (store, mp, log) = (dir.path().join("store"), dir.path().join("mnt"), dir.path().join("logs/mount.log"));
    std::fs::create_dir(&mp).unwrap();
    let out = msgfs_command().args(["mount", "-v", "--log-file"]).arg(&log).arg(&store).arg(&mp).output().unwrap();
    assert!(out.status.success(), "mount: {}", stderr(&out));
    let m = Mounted(mp.clone());
    m.umount();
    let text = std::fs::read_to_string(&log).unwrap();
    // The signal thread's line is at info level: there with -v, not without.
    assert!(text.contains(" INFO ") && text.contains("unmounting"), "{text}");
    assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
}

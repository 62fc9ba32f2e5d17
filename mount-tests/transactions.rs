//! Writing as SaveChanges transactions: fsync saves, the first save wins, a later save gets
//! EBUSY and keeps its changes, close keeps a conflict copy, the SaveChanges ioctl.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use msgfs::control::{FORCE_SAVE, KEEP_OPEN_READONLY, KEEP_OPEN_READWRITE, MSGFS_IOC_SAVECHANGES};

use crate::common::*;

const MSG: &[u8] = b"Subject: original\n\nbody\n";

fn open_rw(path: &std::path::Path) -> i32 {
    // SAFETY: open with a valid C string.
    let fd = unsafe { libc::open(cpath(path).as_ptr(), libc::O_RDWR) };
    assert!(fd >= 0, "open: {}", errno());
    fd
}

fn pwrite(fd: i32, data: &[u8], off: i64) {
    // SAFETY: writing from a valid buffer of that length.
    let n = unsafe { libc::pwrite(fd, data.as_ptr().cast(), data.len(), off) };
    assert_eq!(n, data.len() as isize, "pwrite: {}", errno());
}

fn fsync(fd: i32) -> Result<(), i32> {
    // SAFETY: fsync on an open descriptor.
    if unsafe { libc::fsync(fd) } == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

fn close(fd: i32) -> Result<(), i32> {
    // SAFETY: closing a descriptor we own, once.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

fn save_ioctl(fd: i32, flags: u32) -> Result<(), i32> {
    // SAFETY: the ioctl reads a u32 from the pointer we pass.
    let r = unsafe { libc::ioctl(fd, MSGFS_IOC_SAVECHANGES as _, &flags as *const u32) };
    if r == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

fn mount_one() -> Mount {
    Mount::with(&[], |st| put(st, "Inbox", &[("m.eml", MSG)]))
}

#[test]
fn fsync_saves_a_new_version_others_see() {
    if should_skip() {
        return;
    }
    let m = mount_one();
    let p = m.p("Inbox/m.eml");
    let (id, v) = (entry_id(&p), version(&p));
    let fd = open_rw(&p);
    pwrite(fd, b"SUBJECT", 0);
    assert_eq!(std::fs::read(&p).unwrap(), MSG, "changes are private before the save");
    fsync(fd).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"SUBJECT: original\n\nbody\n");
    assert_eq!(entry_id(&p), id);
    assert!(version(&p) > v);
    pwrite(fd, b"more", 0);
    close(fd).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"moreECT: original\n\nbody\n", "the descriptor stayed writable");
}

#[test]
fn the_first_save_wins_and_the_second_gets_ebusy_keeping_its_changes() {
    if should_skip() {
        return;
    }
    let m = mount_one();
    let p = m.p("Inbox/m.eml");
    let a = open_rw(&p);
    let b = open_rw(&p);
    pwrite(a, b"AAAA", 0);
    pwrite(b, b"BBBB", 0);
    fsync(a).unwrap();
    assert_eq!(fsync(b), Err(libc::EBUSY));
    assert_eq!(std::fs::read(&p).unwrap(), b"AAAAect: original\n\nbody\n");
    // B still has its changes and can force them.
    let mut buf = [0u8; 4];
    // SAFETY: reading into a 4-byte buffer.
    assert_eq!(unsafe { libc::pread(b, buf.as_mut_ptr().cast(), 4, 0) }, 4);
    assert_eq!(&buf, b"BBBB");
    save_ioctl(b, FORCE_SAVE | KEEP_OPEN_READWRITE).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"BBBBect: original\n\nbody\n");
    close(a).unwrap();
    close(b).unwrap();
    assert_eq!(names(&m.p("Inbox")), ["m.eml"], "no conflict copy when nothing was lost");
}

#[test]
fn a_close_that_cannot_save_returns_ebusy_and_keeps_a_conflict_copy() {
    if should_skip() {
        return;
    }
    let m = mount_one();
    let p = m.p("Inbox/m.eml");
    let a = open_rw(&p);
    let b = open_rw(&p);
    pwrite(a, b"AAAA", 0);
    pwrite(b, b"BBBB", 0);
    close(a).unwrap();
    assert_eq!(close(b), Err(libc::EBUSY));
    assert_eq!(std::fs::read(&p).unwrap(), b"AAAAect: original\n\nbody\n");
    assert_eq!(names(&m.p("Inbox")), ["m (conflict 1).eml", "m.eml"]);
    assert_eq!(std::fs::read(m.p("Inbox/m (conflict 1).eml")).unwrap(), b"BBBBect: original\n\nbody\n");
}

#[test]
fn a_save_after_delete_gets_enoent_and_close_keeps_the_content() {
    if should_skip() {
        return;
    }
    let m = mount_one();
    let p = m.p("Inbox/m.eml");
    let a = open_rw(&p);
    pwrite(a, b"edited", 0);
    std::fs::remove_file(&p).unwrap();
    assert_eq!(fsync(a), Err(libc::ENOENT));
    assert_eq!(save_ioctl(a, FORCE_SAVE), Err(libc::ENOENT), "FORCE_SAVE cannot bring back a deleted message");
    assert_eq!(close(a), Err(libc::ENOENT));
    assert_eq!(names(&m.p("Inbox")), ["m (conflict 1).eml"]);
    assert_eq!(std::fs::read(m.p("Inbox/m (conflict 1).eml")).unwrap(), b"editedt: original\n\nbody\n");
}

#[test]
fn names_looked_up_while_missing_are_seen_once_made() {
    if should_skip() {
        return;
    }
    // The kernel may keep a name the daemon answered ENOENT as missing for a while (a
    // negative entry): each name here is looked up first, then made, and must be seen
    // at once, whether the kernel made it (create, rename, mkdir) or the daemon did (a
    // conflict copy).
    let m = mount_one();
    let missing = |rel: &str| std::fs::symlink_metadata(m.p(rel)).map_err(|e| e.raw_os_error());
    let made = ["Inbox/new.eml", "Inbox/moved.eml", "Inbox/dir", "Inbox/m (conflict 1).eml"];
    std::fs::write(m.p("Inbox/a.eml"), b"a").unwrap();
    let w = open_rw(&m.p("Inbox/m.eml"));
    pwrite(w, b"edited", 0);
    for n in made {
        assert_eq!(missing(n).err(), Some(Some(libc::ENOENT)), "{n}");
    }
    run(Command::new("sh").arg("-c").arg("echo x > \"$1\"").arg("sh").arg(m.p("Inbox/new.eml")));
    std::fs::rename(m.p("Inbox/a.eml"), m.p("Inbox/moved.eml")).unwrap();
    std::fs::create_dir(m.p("Inbox/dir")).unwrap();
    std::fs::remove_file(m.p("Inbox/m.eml")).unwrap();
    assert_eq!(close(w), Err(libc::ENOENT));
    for n in &made[..3] {
        assert!(missing(n).is_ok(), "{n} made through the mount is not seen");
    }
    // The daemon expires the conflict copy's name from a thread of its own: a moment,
    // well under the negative entry's second.
    let t = std::time::Instant::now();
    while missing(made[3]).is_err() {
        assert!(t.elapsed() < std::time::Duration::from_millis(300), "the conflict copy is not seen");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn the_savechanges_ioctl_takes_the_mapi_flags() {
    if should_skip() {
        return;
    }
    let m = mount_one();
    let p = m.p("Inbox/m.eml");
    let fd = open_rw(&p);
    pwrite(fd, b"one", 0);
    save_ioctl(fd, KEEP_OPEN_READWRITE).unwrap();
    assert!(std::fs::read(&p).unwrap().starts_with(b"one"));
    pwrite(fd, b"two", 0);
    save_ioctl(fd, KEEP_OPEN_READONLY).unwrap();
    assert!(std::fs::read(&p).unwrap().starts_with(b"two"));
    // SAFETY: a write that must fail: the transaction is read-only now.
    let n = unsafe { libc::pwrite(fd, b"x".as_ptr().cast(), 1, 0) };
    assert_eq!((n, errno()), (-1, libc::EBADF));
    assert_eq!(save_ioctl(fd, 0x100), Err(libc::EINVAL));
    close(fd).unwrap();
    let r = std::fs::File::open(&p).unwrap();
    assert_eq!(save_ioctl(r.as_raw_fd(), 0), Err(libc::EBADF), "a reader has nothing to save");
}

#[test]
fn a_writer_sees_its_own_size_and_mtime_and_others_the_saved_ones() {
    if should_skip() {
        return;
    }
    let m = mount_one();
    let p = m.p("Inbox/m.eml");
    let fd = open_rw(&p);
    pwrite(fd, &[b'x'; 1000], 0);
    // SAFETY: fstat into a zeroed stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
    assert_eq!(st.st_size, 1000);
    let mine = std::fs::metadata(&p).unwrap();
    assert_eq!(mine.len(), 1000, "stat by path from the writer's process");
    assert!(mine.mtime() > 1_600_000_000);
    let other = Command::new("stat").arg("-c").arg("%s %Y").arg(&p).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&other.stdout).trim(), format!("{} 1600000000", MSG.len()));
    close(fd).unwrap();
    let other = Command::new("stat").arg("-c").arg("%s").arg(&p).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&other.stdout).trim(), "1000");
}

#[test]
fn a_new_file_is_visible_at_once_and_has_no_entry_id_before_its_first_save() {
    if should_skip() {
        return;
    }
    let m = mount_one();
    let p = m.p("Inbox/new.eml");
    let f = std::fs::File::create(&p).unwrap();
    assert!(names(&m.p("Inbox")).contains(&"new.eml".to_string()));
    assert_eq!(getxattr(&p, "user.msgfs.entryid"), Err(libc::ENODATA));
    f.sync_all().unwrap();
    assert_eq!(entry_id(&p).len(), 48);
    drop(f);
}

#[test]
fn a_process_killed_while_writing_leaves_what_it_wrote_and_a_sound_store() {
    if should_skip() {
        return;
    }
    let mut m = mount_one();
    let p = m.p("Inbox/big.eml");
    let mut child = Command::new("perl")
        .arg("-e")
        .arg(r#"open(F, ">", $ARGV[0]) or die; select F; $| = 0; print "Subject: partial\n\n"; while (1) { print "line\n" }"#)
        .arg(&p)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let data = std::fs::read(&p).unwrap_or_default();
    assert!(data.is_empty() || data.starts_with(b"Subject: partial\n\n"));
    m.unmount();
    let out = msgfs_command().arg("check").arg(&m.store).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// A child that inherits a writable descriptor and closes it without writing (every
/// fork+exec does, and every exit) does not save the parent's unfinished changes: they stay
/// private until the parent saves. Before, the child's close saved them (and during a
/// freeze the child's exec waited for the thaw).
#[test]
fn a_child_closing_an_inherited_descriptor_does_not_save_the_parents_changes() {
    if should_skip() {
        return;
    }
    let m = mount_one();
    let new: &[u8] = b"Subject: the parent's unsaved change\n\nlonger body\n";
    let fd = open_rw(&m.p("Inbox/m.eml"));
    pwrite(fd, new, 0);
    // `true` inherits the descriptor (opened without O_CLOEXEC) and closes it at exit.
    assert!(Command::new("true").status().unwrap().success());
    assert_eq!(std::fs::read(m.p("Inbox/m.eml")).unwrap(), MSG, "a child's close saved the parent's changes");
    close(fd).unwrap();
    assert_eq!(std::fs::read(m.p("Inbox/m.eml")).unwrap(), new, "the parent's close did not save");
}

/// A descriptor open for writing follows its file when the file is renamed over another
/// message, as on a local disk: its next save is the target's next version (before, the
/// save failed with ENOENT, the source message being gone, and close left a conflict copy).
#[test]
fn a_writer_follows_its_file_renamed_over_another_message() {
    if should_skip() {
        return;
    }
    let m = Mount::with(&[], |st| put(st, "Inbox", &[("a.eml", MSG), ("b.eml", b"Subject: b\n\nold b\n")]));
    let id_b = entry_id(&m.p("Inbox/b.eml"));
    let new: &[u8] = b"Subject: written after the rename\n\nthe writer's body\n";
    let fd = open_rw(&m.p("Inbox/a.eml"));
    // Written both before the rename (into the private copy) and after.
    pwrite(fd, &new[..10], 0);
    std::fs::rename(m.p("Inbox/a.eml"), m.p("Inbox/b.eml")).unwrap();
    pwrite(fd, &new[10..], 10);
    assert_eq!(fsync(fd), Ok(()));
    assert_eq!(std::fs::read(m.p("Inbox/b.eml")).unwrap(), new);
    assert_eq!(entry_id(&m.p("Inbox/b.eml")), id_b, "the target keeps its entry id");
    close(fd).unwrap();
    assert_eq!(names(&m.p("Inbox")), vec!["b.eml".to_string()], "a conflict copy or the old name is left");
    assert_eq!(std::fs::read(m.p("Inbox/b.eml")).unwrap(), new);
}

/// The `log:` line of the mount's status: (frames, syncs) since the daemon opened the store.
fn log_counts(m: &Mount) -> (u64, u64) {
    let state = String::from_utf8(getxattr(&m.mp, "user.msgfs.state").unwrap()).unwrap();
    let line = state.lines().find_map(|l| l.strip_prefix("log: ")).expect("a log line");
    let n: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    (n[0], n[1])
}

fn commit_line(m: &Mount) -> String {
    let state = String::from_utf8(getxattr(&m.mp, "user.msgfs.state").unwrap()).unwrap();
    state.lines().find_map(|l| l.strip_prefix("commit: ")).expect("a commit line").to_string()
}

/// `-o commit=lazy:MS`: a close is answered once its save is logged and visible, with no
/// log sync of its own; the log is synced within MS, and fsync still waits for it. In the
/// default mode each close's save is one log sync.
#[test]
fn with_commit_lazy_closes_share_log_syncs_and_fsync_still_waits_for_one() {
    if should_skip() {
        return;
    }
    let mut m = Mount::with(&["commit=lazy:60000"], |_| {});
    assert_eq!(commit_line(&m), "lazy (60000 ms), all durable");
    let (frames0, syncs0) = log_counts(&m);
    for i in 0..20 {
        std::fs::write(m.mp.join(format!("Inbox/{i}.eml")), format!("Subject: {i}\n\nlazy\n")).unwrap();
        // Visible at once, through the mount and by name.
        assert_eq!(
            std::fs::read(m.mp.join(format!("Inbox/{i}.eml"))).unwrap(),
            format!("Subject: {i}\n\nlazy\n").as_bytes()
        );
    }
    // rsync saves by writing a temporary name and renaming it onto the message: lazy too.
    require(&["rsync"]);
    let src = m.dir.path().join("rsync-src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..10 {
        std::fs::write(src.join(format!("r{i}.eml")), format!("Subject: r{i}\n\nrsynced\n")).unwrap();
    }
    let st = Command::new("rsync").arg("-a").arg(format!("{}/", src.display())).arg(m.mp.join("Inbox")).status();
    assert!(st.unwrap().success());
    assert_eq!(std::fs::read(m.mp.join("Inbox/r7.eml")).unwrap(), b"Subject: r7\n\nrsynced\n");
    let (frames1, syncs1) = log_counts(&m);
    assert!(frames1 >= frames0 + 30, "every save logged: {frames0} -> {frames1}");
    // At most one: rsync ends by setting the folder's times, a change that is not a save
    // and stays durable (its sync also covers the lazy saves before it).
    assert!(syncs1 <= syncs0 + 1, "closes and rsync's renames waited for log syncs: {syncs0} -> {syncs1}");
    std::fs::write(m.mp.join("Inbox/after.eml"), "Subject: after\n\nx\n").unwrap();
    assert_eq!(commit_line(&m), "lazy (60000 ms), saves waiting for the log sync");
    // fsync of a file whose save is logged but not durable: one log sync, then all durable.
    let f = std::fs::File::open(m.mp.join("Inbox/3.eml")).unwrap();
    f.sync_all().unwrap();
    let (_, syncs2) = log_counts(&m);
    assert_eq!(syncs2, syncs1 + 1, "fsync waited for the log sync");
    assert_eq!(commit_line(&m), "lazy (60000 ms), all durable");
    drop(f);
    // So does fsync of the folder (what Maildir writers do after a rename).
    std::fs::write(m.mp.join("Inbox/dir.eml"), "Subject: dir\n\nx\n").unwrap();
    assert!(commit_line(&m).contains("waiting"));
    std::fs::File::open(m.mp.join("Inbox")).unwrap().sync_all().unwrap();
    assert_eq!(commit_line(&m), "lazy (60000 ms), all durable");
    // The delay runs out by itself too.
    m.remount(&["commit=lazy:20"]);
    let (_, s0) = log_counts(&m);
    std::fs::write(m.mp.join("Inbox/late.eml"), "Subject: late\n\nx\n").unwrap();
    let t0 = std::time::Instant::now();
    while commit_line(&m).contains("waiting") && t0.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(commit_line(&m), "lazy (20 ms), all durable");
    assert!(log_counts(&m).1 > s0);
    // Durable mode: each close's save is synced before close returns.
    m.remount(&[]);
    assert_eq!(commit_line(&m), "durable");
    let (_, s0) = log_counts(&m);
    for i in 0..5 {
        std::fs::write(m.mp.join(format!("Inbox/d{i}.eml")), "Subject: d\n\nx\n").unwrap();
    }
    assert!(log_counts(&m).1 >= s0 + 5);
    // Everything saved in either mode is there after the remount.
    m.remount(&[]);
    for i in 0..20 {
        assert!(m.mp.join(format!("Inbox/{i}.eml")).exists());
    }
    assert!(m.mp.join("Inbox/late.eml").exists());
    assert_eq!(std::fs::read(m.mp.join("Inbox/r9.eml")).unwrap(), b"Subject: r9\n\nrsynced\n");
}

#[test]
fn a_bad_commit_option_is_refused_with_what_to_write() {
    if should_skip() {
        return;
    }
    let m = Mount::new();
    let mp2 = m.dir.path().join("mnt2");
    std::fs::create_dir(&mp2).unwrap();
    for bad in ["commit=fast", "commit=lazy:0", "commit=lazy:abc"] {
        let out = msgfs_command().args(["mount", "-o", bad]).arg(&m.store).arg(&mp2).output().unwrap();
        assert!(!out.status.success(), "{bad} was accepted");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains("commit=lazy"), "{bad}: {e}");
    }
}

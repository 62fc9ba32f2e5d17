//! Everyday tools: cp, mv, rm, touch, tar, mkdir, rmdir, rsync round trips, and the calls
//! msgfs does not support.

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use crate::common::*;

const A: &[u8] = b"Subject: a\n\nalpha\n";
const B: &[u8] = b"Subject: b\n\nbeta \xff\xfe\n";

#[test]
fn cp_mv_rm_and_touch_work_as_on_any_filesystem() {
    if should_skip() {
        return;
    }
    let m = Mount::with(&[], |st| put(st, "Inbox", &[("a.eml", A)]));
    let src = m.dir.path().join("b.eml");
    std::fs::write(&src, B).unwrap();
    run(Command::new("cp").arg(&src).arg(m.p("Inbox/b.eml")));
    assert_eq!(std::fs::read(m.p("Inbox/b.eml")).unwrap(), B);
    let id = entry_id(&m.p("Inbox/a.eml"));
    run(Command::new("mv").arg(m.p("Inbox/a.eml")).arg(m.p("Inbox/renamed.eml")));
    assert_eq!(entry_id(&m.p("Inbox/renamed.eml")), id, "a rename keeps the entry id");
    run(Command::new("mv").arg(m.p("Inbox/renamed.eml")).arg(m.p("Drafts/")));
    assert_eq!(entry_id(&m.p("Drafts/renamed.eml")), id, "a move keeps the entry id");
    run(Command::new("touch").arg(m.p("Drafts/empty.eml")));
    assert_eq!(std::fs::metadata(m.p("Drafts/empty.eml")).unwrap().len(), 0);
    run(Command::new("touch").arg("-d").arg("2001-02-03 04:05:06 UTC").arg(m.p("Drafts/renamed.eml")));
    assert_eq!(std::fs::metadata(m.p("Drafts/renamed.eml")).unwrap().mtime(), 981173106);
    run(Command::new("rm").arg(m.p("Inbox/b.eml")));
    assert_eq!(names(&m.p("Inbox")), Vec::<String>::new());
    run(Command::new("chmod").arg("600").arg(m.p("Drafts/renamed.eml")));
    assert_eq!(std::fs::metadata(m.p("Drafts/renamed.eml")).unwrap().mode() & 0o777, 0o600);
    let mut m = m;
    m.remount(&[]);
    assert_eq!(names(&m.p("Drafts")), ["empty.eml", "renamed.eml"]);
    assert_eq!(std::fs::metadata(m.p("Drafts/renamed.eml")).unwrap().mtime(), 981173106);
}

#[test]
fn tar_into_and_out_of_the_mount_and_cp_a_out() {
    if should_skip() {
        return;
    }
    let m = Mount::with(&[], |st| {
        put(st, "Inbox", &[("a.eml", A), ("b.eml", B)]);
        put(st, "Archive/Old", &[("c.eml", A)]);
    });
    let tarball = m.dir.path().join("out.tar");
    run(Command::new("tar").arg("-C").arg(&m.mp).arg("-cf").arg(&tarball).arg("."));
    let copy = m.dir.path().join("cpa");
    run(Command::new("cp").arg("-a").arg(&m.mp).arg(&copy));
    run(Command::new("diff").arg("-r").arg(&m.mp).arg(&copy));
    let mt = std::fs::metadata(copy.join("Inbox/a.eml")).unwrap().mtime();
    assert_eq!(mt, 1_600_000_000, "cp -a keeps mtimes");
    // Extract into a new folder of the mount.
    std::fs::create_dir(m.p("Restored")).unwrap();
    run(Command::new("tar").arg("-C").arg(m.p("Restored")).arg("-xf").arg(&tarball));
    run(Command::new("diff").arg("-r").arg(m.p("Inbox")).arg(m.p("Restored/Inbox")));
    run(Command::new("diff").arg("-r").arg(m.p("Archive")).arg(m.p("Restored/Archive")));
    assert_eq!(std::fs::metadata(m.p("Restored/Inbox/a.eml")).unwrap().mtime(), 1_600_000_000, "tar -x sets mtimes");
}

#[test]
fn folders_mkdir_rmdir_and_mv_are_durable_when_they_return() {
    if should_skip() {
        return;
    }
    let mut m = Mount::new();
    std::fs::create_dir(m.p("Projects")).unwrap();
    std::fs::create_dir(m.p("Projects/Sub")).unwrap();
    std::fs::write(m.p("Projects/Sub/x.eml"), A).unwrap();
    let e = std::fs::remove_dir(m.p("Projects/Sub")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY));
    run(Command::new("mv").arg(m.p("Projects")).arg(m.p("Inbox/Work")));
    std::fs::create_dir(m.p("Gone")).unwrap();
    std::fs::remove_dir(m.p("Gone")).unwrap();
    // A crash right after: everything acknowledged is there.
    m.kill_daemon();
    m.mount(&[]);
    assert_eq!(std::fs::read(m.p("Inbox/Work/Sub/x.eml")).unwrap(), A);
    assert!(!m.p("Projects").exists());
    assert!(!m.p("Gone").exists());
}

#[test]
fn link_symlink_and_mknod_are_refused_with_eperm_and_change_nothing() {
    if should_skip() {
        return;
    }
    let m = Mount::with(&[], |st| put(st, "Inbox", &[("a.eml", A)]));
    let a = cpath(&m.p("Inbox/a.eml"));
    let l = cpath(&m.p("Inbox/l.eml"));
    // SAFETY: plain syscalls on valid C strings.
    unsafe {
        assert_eq!((libc::link(a.as_ptr(), l.as_ptr()), errno()), (-1, libc::EPERM));
        assert_eq!((libc::symlink(a.as_ptr(), l.as_ptr()), errno()), (-1, libc::EPERM));
        assert_eq!((libc::mknod(l.as_ptr(), libc::S_IFIFO | 0o644, 0), errno()), (-1, libc::EPERM));
    }
    assert_eq!(names(&m.p("Inbox")), ["a.eml"]);
}

#[test]
fn rsync_out_into_a_fresh_store_round_trips_and_a_second_run_copies_nothing() {
    if should_skip() {
        return;
    }
    require(&["rsync", "setfattr", "diff"]);
    let m = Mount::with(&[], |st| {
        put(st, "Inbox", &[("a.eml", A), ("b.eml", B)]);
        put(st, "Archive/2019", &[("c.eml", A)]);
    });
    run(Command::new("setfattr").args(["-n", "user.tag", "-v", "important"]).arg(m.p("Inbox/a.eml")));
    let out = m.dir.path().join("backup");
    run(Command::new("rsync").arg("-aX").arg(format!("{}/", m.mp.display())).arg(&out));
    let fresh = Mount::new();
    run(Command::new("rsync").arg("-aX").arg(format!("{}/", out.display())).arg(format!("{}/", fresh.mp.display())));
    run(Command::new("diff").arg("-r").arg(&m.mp).arg(&fresh.mp));
    assert_eq!(getxattr(&fresh.p("Inbox/a.eml"), "user.tag").unwrap(), b"important");
    assert_eq!(std::fs::metadata(fresh.p("Archive/2019/c.eml")).unwrap().mtime(), 1_600_000_000);
    // A second run transfers nothing, in both directions.
    for (from, to) in [(&m.mp, &out), (&out, &fresh.mp)] {
        let o = run(Command::new("rsync")
            .arg("-aX")
            .arg("--stats")
            .arg(format!("{}/", from.display()))
            .arg(format!("{}/", to.display())));
        let stats = String::from_utf8_lossy(&o.stdout);
        assert!(stats.contains("Number of regular files transferred: 0"), "{stats}");
    }
}

#[test]
fn the_daemon_killed_during_cp_r_leaves_a_store_that_checks_clean() {
    if should_skip() {
        return;
    }
    let mut m = Mount::new();
    let src = m.dir.path().join("many");
    std::fs::create_dir(&src).unwrap();
    for i in 0..2000 {
        std::fs::write(src.join(format!("{i:05}.eml")), format!("Subject: {i}\n\n{}\n", "x".repeat(i % 700))).unwrap();
    }
    let mut cp = Command::new("cp").arg("-r").arg(&src).arg(m.p("Inbox/")).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    m.kill_daemon();
    let _ = cp.wait();
    let out = msgfs_command().arg("check").arg(&m.store).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    m.mount(&[]);
    // Every message that made it is complete.
    let dir = m.p("Inbox/many");
    if dir.exists() {
        for n in names(&dir) {
            let i: usize = n.trim_end_matches(".eml").parse().unwrap();
            assert_eq!(
                std::fs::read(dir.join(&n)).unwrap(),
                format!("Subject: {i}\n\n{}\n", "x".repeat(i % 700)).into_bytes(),
                "{n} is torn"
            );
        }
    }
    m.unmount();
    let out = msgfs_command().arg("check").arg(&m.store).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

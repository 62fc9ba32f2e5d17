//! Mounting and unmounting: clear errors, every way of unmounting saves everything, read-only
//! mounts, and who may use a mount.

use std::process::Command;

use crate::common::*;

fn mount_err(store: &std::path::Path, mp: &std::path::Path) -> String {
    let out = msgfs_command().arg("mount").arg(store).arg(mp).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    err
}

#[test]
fn bad_mount_points_and_a_held_store_get_one_clear_line() {
    if should_skip() {
        return;
    }
    let m = Mount::new();
    let other = m.dir.path().join("other");
    assert!(mount_err(&m.store, &other).contains("mkdir"));
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("x"), b"").unwrap();
    assert!(mount_err(&m.store, &other).contains("not empty"));
    std::fs::remove_file(other.join("x")).unwrap();
    assert!(mount_err(&m.store, &other).contains("in use by process"));
}

#[test]
fn every_way_of_unmounting_leaves_the_store_closed_cleanly() {
    if should_skip() {
        return;
    }
    require(&["fusermount3"]);
    let mut m = Mount::new();
    for how in ["msgfs", "fusermount3", "umount", "sigterm", "sigint"] {
        std::fs::write(m.p(&format!("Inbox/{how}.eml")), b"Subject: x\n\nsaved\n").unwrap();
        let pid = m.daemon_pid();
        match how {
            "msgfs" => m.unmount(),
            "fusermount3" => {
                run(Command::new("fusermount3").arg("-u").arg(&m.mp));
                wait_gone(pid);
            }
            "umount" => {
                run(Command::new("umount").arg(&m.mp));
                wait_gone(pid);
            }
            sig => {
                // SAFETY: signalling the daemon this test started.
                unsafe { libc::kill(pid, if sig == "sigterm" { libc::SIGTERM } else { libc::SIGINT }) };
                wait_gone(pid);
            }
        }
        assert!(m.store.join("clean").exists(), "{how}: the store was not closed cleanly");
        let out = msgfs_command().arg("check").arg(&m.store).output().unwrap();
        assert!(out.status.success(), "{how}: {}", String::from_utf8_lossy(&out.stdout));
        m.mount(&[]);
        assert_eq!(std::fs::read(m.p(&format!("Inbox/{how}.eml"))).unwrap(), b"Subject: x\n\nsaved\n");
    }
}

#[test]
fn a_read_only_mount_refuses_writes_with_erofs() {
    if should_skip() {
        return;
    }
    let m = Mount::with(&["ro"], |st| put(st, "Inbox", &[("a.eml", b"Subject: a\n\nx\n")]));
    assert_eq!(std::fs::read(m.p("Inbox/a.eml")).unwrap(), b"Subject: a\n\nx\n");
    let e = std::fs::write(m.p("Inbox/b.eml"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    let e = std::fs::OpenOptions::new().write(true).open(m.p("Inbox/a.eml")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    assert_eq!(std::fs::create_dir(m.p("X")).unwrap_err().raw_os_error(), Some(libc::EROFS));
}

#[test]
fn only_the_mounting_user_may_use_a_mount_unless_allow_other() {
    if should_skip() {
        return;
    }
    require(&["setpriv"]);
    let as_nobody = |path: &std::path::Path| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
            .arg(path)
            .output()
            .unwrap()
    };
    let m = Mount::reachable(&[], |st| put(st, "Inbox", &[("a.eml", b"Subject: a\n\nx\n")]));
    let out = as_nobody(&m.p("Inbox/a.eml"));
    assert!(!out.status.success(), "another user read a private mount");
    drop(m);
    let m = Mount::reachable(&["allow_other"], |st| put(st, "Inbox", &[("a.eml", b"Subject: a\n\nx\n")]));
    // Folders are 0700 root: the kernel checks the stored mode for other users.
    let out = as_nobody(&m.p("Inbox/a.eml"));
    assert!(!out.status.success(), "the stored mode was not enforced");
    run(Command::new("chmod").arg("755").arg(&m.mp).arg(m.p("Inbox")));
    let out = as_nobody(&m.p("Inbox/a.eml"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"Subject: a\n\nx\n");
}

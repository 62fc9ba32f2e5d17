//! POSIX truths that peer suites (pjdfstest, fsx) and a careful user found missing: a close
//! that returned is final, fstat agrees with stat, over-long names, descriptors of deleted
//! files, and the set-user-ID bits a write by another user clears.

use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use crate::common::*;

#[test]
fn after_close_returns_every_later_operation_sees_the_closed_file() {
    if should_skip() {
        return;
    }
    let m = Mount::new();
    std::fs::create_dir(m.p("t")).unwrap();
    // Each file is created (or truncated) and closed with nothing written: its save must not
    // be left to the kernel's RELEASE, which arrives after close() returned, after the next
    // command already ran.
    let script = r#"
        cd "$1"
        for i in $(seq 40); do : > r$i; rm r$i; done
        for i in $(seq 40); do touch h$i; chown 65534:65533 h$i; done
        for i in $(seq 40); do touch c$i; chmod 600 c$i; done
        for i in $(seq 40); do touch m$i; touch -d 2001-01-01 m$i; done
        for i in $(seq 40); do echo x > e$i; : > e$i; rm e$i; done
    "#;
    run(Command::new("sh").arg("-c").arg(script).arg("sh").arg(m.p("t")));
    // What a late RELEASE would still do, it would do within this time.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let all = names(&m.p("t"));
    let back: Vec<_> = all.iter().filter(|n| n.starts_with('r') || n.starts_with('e')).collect();
    assert!(back.is_empty(), "deleted files came back: {back:?}");
    let conflicts: Vec<_> = all.iter().filter(|n| n.contains("conflict")).collect();
    assert!(conflicts.is_empty(), "touch of a just-created file made conflict copies: {conflicts:?}");
    for i in 1..=40 {
        let h = std::fs::metadata(m.p(&format!("t/h{i}"))).unwrap();
        assert_eq!((h.uid(), h.gid()), (65534, 65533), "chown of h{i} lost");
        let c = std::fs::metadata(m.p(&format!("t/c{i}"))).unwrap();
        assert_eq!(c.mode() & 0o7777, 0o600, "chmod of c{i} lost");
        let t = std::fs::metadata(m.p(&format!("t/m{i}"))).unwrap();
        assert_eq!(t.mtime(), 978307200, "touch -d of m{i} lost");
    }
    assert_eq!(all.len(), 120, "{all:?}");
}

#[test]
fn fstat_gives_the_writers_size_after_an_fsync_made_a_new_version() {
    if should_skip() {
        return;
    }
    let m = Mount::with(&[], |st| put(st, "Inbox", &[("a.eml", b"Subject: a\n\nalpha\n")]));
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(m.p("Inbox/a.eml")).unwrap();
    f.write_all(&[b'x'; 100]).unwrap();
    // fsync saves a new version while the descriptor still holds the old version's inode.
    f.sync_all().unwrap();
    f.seek(SeekFrom::Start(150)).unwrap();
    f.write_all(&[b'y'; 50]).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 200, "fstat");
    assert_eq!(f.seek(SeekFrom::End(0)).unwrap(), 200, "lseek(SEEK_END)");
    drop(f);
    // Closed and reopened, as fsx -c does.
    let f = std::fs::OpenOptions::new().read(true).write(true).open(m.p("Inbox/a.eml")).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 200);
    assert_eq!(std::fs::metadata(m.p("Inbox/a.eml")).unwrap().len(), 200);
}

#[test]
fn a_name_longer_than_255_bytes_is_enametoolong_for_every_call() {
    if should_skip() {
        return;
    }
    let m = Mount::new();
    let long = m.p(&format!("Inbox/{}", "a".repeat(256)));
    let p = cpath(&long);
    let to = cpath(&m.p("Inbox/short"));
    // SAFETY: each call gets valid C strings; we only look at the result and errno.
    type Call<'a> = (&'a str, Box<dyn Fn() -> i32 + 'a>);
    let calls: [Call; 7] = [
        ("chmod", Box::new(|| unsafe { libc::chmod(p.as_ptr(), 0o600) })),
        ("chown", Box::new(|| unsafe { libc::chown(p.as_ptr(), 1, 1) })),
        ("unlink", Box::new(|| unsafe { libc::unlink(p.as_ptr()) })),
        ("rmdir", Box::new(|| unsafe { libc::rmdir(p.as_ptr()) })),
        ("truncate", Box::new(|| unsafe { libc::truncate(p.as_ptr(), 0) })),
        ("rename", Box::new(|| unsafe { libc::rename(p.as_ptr(), to.as_ptr()) })),
        ("stat", Box::new(|| unsafe { libc::access(p.as_ptr(), libc::F_OK) })),
    ];
    for (what, call) in calls {
        assert_eq!(call(), -1, "{what}");
        assert_eq!(errno(), libc::ENAMETOOLONG, "{what} of a 256-byte name");
    }
    // SAFETY: as above.
    let r = unsafe { libc::open(p.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644) };
    assert_eq!((r, errno()), (-1, libc::ENAMETOOLONG), "creation");
}

#[test]
fn a_deleted_file_still_open_can_be_fstated_and_read() {
    if should_skip() {
        return;
    }
    let m = Mount::new();
    std::fs::write(m.p("Inbox/a"), b"Hello, World!").unwrap();
    let f = std::fs::File::open(m.p("Inbox/a")).unwrap();
    std::fs::remove_file(m.p("Inbox/a")).unwrap();
    let st = f.metadata().expect("fstat of an open, deleted file");
    assert_eq!((st.nlink(), st.len()), (0, 13));
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 13];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"Hello, World!");
    // A writer of a file deleted under it keeps its own view too.
    let mut w = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(m.p("Inbox/b")).unwrap();
    use std::io::Write;
    w.write_all(b"abc").unwrap();
    std::fs::remove_file(m.p("Inbox/b")).unwrap();
    let st = w.metadata().expect("fstat of a writer's deleted file");
    assert_eq!((st.nlink(), st.len()), (0, 3));
}

#[test]
fn a_write_by_another_user_clears_the_set_user_id_and_set_group_id_bits() {
    if should_skip() {
        return;
    }
    require(&["setpriv", "perl"]);
    let m = Mount::reachable(&["allow_other"], |_| {});
    // The other user must be able to reach the mount point.
    std::fs::set_permissions(&m.mp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(m.p("t")).unwrap();
    std::fs::set_permissions(m.p("t"), std::fs::Permissions::from_mode(0o755)).unwrap();
    // As in pjdfstest chmod/12.t: the fstat inside the writing process, then stat after.
    for (mode, left) in [(0o4777, 0o777), (0o2777, 0o777), (0o6777, 0o777), (0o2767, 0o2767)] {
        let f = m.p(&format!("t/f{mode:o}"));
        std::fs::write(&f, b"").unwrap();
        let c = CString::new(f.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid path; chmod as root keeps the bits.
        assert_eq!(unsafe { libc::chmod(c.as_ptr(), mode) }, 0);
        let out = run(Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "perl", "-e"])
            .arg(r#"open(F, "+<", $ARGV[0]) or die "$!"; syswrite(F, "x") or die "$!"; printf("0o%o\n", (stat(F))[2] & 07777)"#)
            .arg(&f));
        let seen = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(seen, format!("0o{left:o}"), "fstat by the writer of a {mode:o} file");
        let after = std::fs::metadata(&f).unwrap().mode() & 0o7777;
        assert_eq!(after, left, "stat after a write to a {mode:o} file: {after:o}");
    }
}

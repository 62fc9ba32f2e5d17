//! `msgfs sync` on a mounted store: the mount daemon runs the pass (the store is its), the
//! command follows it and prints the summary; what the pass changed shows through the
//! mount at once, flags set with `setfattr` go up, and a writer whose message the server
//! deleted keeps its text.

use std::process::Command;

use crate::common::*;
use crate::dovecot::{self, Dovecot};

/// The message numbered `n` as the server has it (CRLF line ends).
fn msg(n: usize) -> Vec<u8> {
    dovecot::message(n)
}

struct Synced {
    server: Dovecot,
    config: std::path::PathBuf,
    m: Mount,
}

impl Synced {
    fn start() -> Synced {
        let server = Dovecot::start();
        let mut raw = server.raw();
        raw.multiappend("INBOX", &(0..5).map(|n| ("", msg(n))).collect::<Vec<_>>());
        let m = Mount::new();
        let config = m.dir.path().join("accounts.toml");
        std::fs::write(
            &config,
            format!(
                "[account.t]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nuser = \"{}\"\nstore = \"{}\"\n",
                server.port,
                dovecot::USER,
                m.store.display()
            ),
        )
        .unwrap();
        Synced { server, config, m }
    }

    /// `msgfs sync` of this account, to run or spawn.
    fn command(&self) -> Command {
        let mut c = msgfs_command();
        c.arg("sync").arg("--config").arg(&self.config).env("MSGFS_IMAP_PASSWORD", dovecot::PASS);
        c
    }

    /// A sync running in the background, its output piped.
    fn spawn(&self) -> std::process::Child {
        self.command().stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    }

    fn sync(&self) -> (Option<i32>, String, String) {
        let out = self.command().output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn by_subject(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let want = format!("test {n}.eml");
    let name = names(dir).into_iter().find(|f| f.ends_with(&want)).unwrap_or_else(|| panic!("no {want} in {dir:?}"));
    dir.join(name)
}

#[test]
fn sync_on_a_mounted_store_runs_in_the_daemon_and_shows_through_the_mount() {
    if should_skip() || dovecot::should_skip() {
        return;
    }
    let s = Synced::start();
    let (code, out, err) = s.sync();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Inbox: server +0 *0 -0 >0  local +5"), "{out}");
    // Listed and readable at once, bodies and all.
    let inbox = s.m.p("Inbox");
    assert_eq!(names(&inbox).len(), 5, "{:?}", names(&inbox));
    let one = by_subject(&inbox, 1);
    assert_eq!(std::fs::read(&one).unwrap(), msg(1));
    assert_eq!(std::fs::metadata(&one).unwrap().len(), msg(1).len() as u64);
    // The folder's last result, and the root's.
    let st = String::from_utf8(getxattr(&inbox, "user.msgfs.sync").unwrap()).unwrap();
    assert!(st.starts_with("IDLE OK"), "{st}");
    let root = String::from_utf8(getxattr(&s.m.mp, "user.msgfs.sync").unwrap()).unwrap();
    assert!(root.starts_with("done 0\n"), "{root}");

    // Read state set through the mount goes up; a message the server deleted goes away
    // here, and one a writer holds open keeps the writer's text as a conflict copy.
    let out = Command::new("setfattr").args(["-n", "user.msgfs.flags", "-v", "FS"]).arg(&one).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let two = by_subject(&inbox, 2);
    let fd = {
        let c = cpath(&two);
        // SAFETY: open with a valid C string.
        unsafe { libc::open(c.as_ptr(), libc::O_RDWR) }
    };
    assert!(fd >= 0);
    // SAFETY: writing from a valid buffer.
    assert_eq!(unsafe { libc::pwrite(fd, b"MINE".as_ptr().cast(), 4, 0) }, 4);
    let mut raw = s.server.raw();
    raw.cmd("SELECT INBOX").unwrap();
    raw.cmd("UID STORE 3:4 +FLAGS (\\Deleted)").unwrap();
    raw.cmd("UID EXPUNGE 3:4").unwrap();
    let zero = by_subject(&inbox, 0);
    raw.cmd("UID STORE 1 +FLAGS (\\Answered)").unwrap();
    use std::os::unix::fs::MetadataExt;
    let (dir_before, zero_before) = (std::fs::metadata(&inbox).unwrap(), std::fs::metadata(&zero).unwrap());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (code, out, err) = s.sync();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("server +0 *1 -0 >0  local +0 *1 -2 >0"), "{out}");
    // What the kernel had cached is dropped (asked before any listing refreshes it): the
    // folder's times and the ctime of the message whose flags the server changed are new.
    let (dir_after, zero_after) = (std::fs::metadata(&inbox).unwrap(), std::fs::metadata(&zero).unwrap());
    assert!(dir_after.mtime_nsec() != dir_before.mtime_nsec() || dir_after.mtime() != dir_before.mtime());
    assert!(zero_after.ctime_nsec() != zero_before.ctime_nsec() || zero_after.ctime() != zero_before.ctime());
    let left = names(&inbox);
    assert_eq!(left.len(), 3, "{left:?}");

    assert!(!left.iter().any(|n| n.ends_with("test 3.eml")), "{left:?}");
    // The writer's save fails (its message is gone); its close keeps what it wrote.
    // SAFETY: fsync and close on the descriptor opened above.
    assert_eq!(unsafe { libc::fsync(fd) }, -1);
    assert_eq!(errno(), libc::ENOENT);
    // SAFETY: as above.
    unsafe { libc::close(fd) };
    let copy = names(&inbox).into_iter().find(|n| n.contains("(conflict")).expect("a conflict copy");
    assert!(std::fs::read(inbox.join(&copy)).unwrap().starts_with(b"MINE"));
    let flags = raw.cmd("UID FETCH 2 (FLAGS)").unwrap();
    assert!(flags.contains("\\Seen") && flags.contains("\\Flagged"), "{flags}");
    // The next pass takes the conflict copy up as a new message: nothing is lost.
    let (code, out, err) = s.sync();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Inbox: server +1"), "{out}");
}

#[test]
fn the_crash_recovery_lock_pauses_a_sync_until_it_is_lifted() {
    if should_skip() || dovecot::should_skip() {
        return;
    }
    let s = Synced::start();
    let set = |v: &str| {
        let out =
            Command::new("setfattr").args(["-n", "user.msgfs.crash_recovery", "-v", v]).arg(&s.m.mp).output().unwrap();
        assert!(out.status.success(), "{v}: {}", String::from_utf8_lossy(&out.stderr));
    };
    set(&format!("recover,pid={}", std::process::id()));
    let child = s.spawn();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let root = String::from_utf8(getxattr(&s.m.mp, "user.msgfs.sync").unwrap()).unwrap();
    assert!(root.starts_with("running"), "paused, not failed: {root}");
    set("continue");
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("local +5"), "{text}");
    assert_eq!(names(&s.m.p("Inbox")).len(), 5);
}

#[test]
fn a_header_only_message_is_listed_and_stats_but_opening_it_is_eio() {
    if should_skip() || dovecot::should_skip() {
        return;
    }
    let header = b"Subject: big\r\nMessage-ID: <h@msgfs.test>\r\n\r\n";
    let m = Mount::with(&[], |st| {
        put(st, "Inbox", &[("h.eml", header)]);
        let id = msgfs::store::Store::lookup(st, st.folder_by_path("Inbox").unwrap(), "h.eml").unwrap();
        let msgfs::store::Entry::Message(id) = id else { panic!("not a message") };
        let change = msgfs::store::AttrChange { flags: Some(0), ..Default::default() };
        st.set_message_attrs(id, change).unwrap();
        // What a first sync's header pass leaves: a message flagged header-only.
        let (staged, crc) = st.stage_content(header).unwrap();
        let base_version = st.index().message(id).unwrap().version();
        st.replace_synced_batch(vec![msgfs::store::Replacement {
            id,
            base_version,
            staged,
            size: header.len() as u64,
            crc,
            flags: msgfs::store::flags::HEADER_ONLY,
            remote: msgfs::store::RemoteCopy { uid: 1, modseq: 1, flags: 0 },
        }])
        .unwrap();
    });
    let p = m.p("Inbox/h.eml");
    assert!(names(&m.p("Inbox")).contains(&"h.eml".to_string()));
    assert!(std::fs::metadata(&p).is_ok(), "stat works");
    let e = std::fs::read(&p).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    // Its flags read as none: the header-only mark is not a user flag.
    assert_eq!(getxattr(&p, "user.msgfs.flags").unwrap(), b"");
}

#[test]
fn a_freeze_parks_a_sync_until_the_thaw() {
    if should_skip() || dovecot::should_skip() {
        return;
    }
    let s = Synced::start();
    let out = msgfs_command().arg("freeze").arg(&s.m.mp).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let child = s.spawn();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let root = String::from_utf8(getxattr(&s.m.mp, "user.msgfs.sync").unwrap()).unwrap();
    assert!(root.starts_with("running"), "parked, not failed: {root}");
    let out = msgfs_command().arg("thaw").arg(&s.m.mp).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("local +5"), "{text}");
}

//! Mounting as a normal user: `msgfs mount` and `msgfs umount` run as an unprivileged user
//! who owns the store, the mount point and its HOME; mount(2) is refused to them, so fuser
//! mounts through the setuid helper fusermount3. The mount is that user's alone: without
//! allow_other even root is refused.
//!
//! The helper opens /dev/fuse as the calling user (libfuse drops its privileges for that
//! open), so the user needs read-write access to the device. Debian's udev rule makes it
//! mode 0666; without udev (a container) it stays 0600. There the test first checks that
//! the refusal is one clear line, then gives the test user alone what udev would give
//! everyone (an ACL entry), and takes it back at the end.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

const USER: &str = "msgfs-test";

fn id_of(flag: &str) -> Option<u32> {
    let out = Command::new("id").arg(flag).arg(USER).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok().filter(|_| out.status.success())
}

/// The test user's uid and gid, creating the (system, login-less) user if missing.
fn test_user() -> (u32, u32) {
    if let (Some(u), Some(g)) = (id_of("-u"), id_of("-g")) {
        return (u, g);
    }
    require(&["useradd"]);
    let out = Command::new("useradd")
        .args(["--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", USER])
        .output()
        .unwrap();
    // A concurrent run may have created it meanwhile: what counts is that it exists now.
    match (id_of("-u"), id_of("-g")) {
        (Some(u), Some(g)) => (u, g),
        _ => panic!("useradd {USER} failed: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// Runs programs as the test user with a clean environment (its own HOME, no XDG_*).
struct User {
    ids: Option<(u32, u32)>,
    home: PathBuf,
}

impl User {
    fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = match self.ids {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}")).arg(format!("--regid={gid}")).arg("--init-groups").arg("--");
                c
            }
            None => Command::new("/usr/bin/env"),
        };
        if self.ids.is_some() {
            c.arg("/usr/bin/env");
        }
        c.arg("-i").arg(format!("HOME={}", self.home.display()));
        c.arg("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").arg("LC_ALL=C");
        c.args(args);
        c
    }

    fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        run(&mut self.cmd(args))
    }
}

/// An ACL entry on /dev/fuse for the test user; on drop the device gets back the ACL it
/// had (none, usually: then no mask entry is left behind either).
struct DevFuseAcl {
    had_acl: bool,
}

impl DevFuseAcl {
    fn grant() -> DevFuseAcl {
        require(&["setfacl", "getfacl"]);
        let before = run(Command::new("getfacl").args(["--skip-base", "--omit-header", "/dev/fuse"]));
        let had_acl = !String::from_utf8_lossy(&before.stdout).trim().is_empty();
        run(Command::new("setfacl").arg("-m").arg(format!("u:{USER}:rw")).arg("/dev/fuse"));
        DevFuseAcl { had_acl }
    }
}

impl Drop for DevFuseAcl {
    fn drop(&mut self) {
        let mut c = Command::new("setfacl");
        if self.had_acl {
            c.arg("-x").arg(format!("u:{USER}"));
        } else {
            c.arg("-b");
        }
        let _ = c.arg("/dev/fuse").status();
    }
}

/// Detaches the mount if the test fails before `msgfs umount` (root may unmount anything).
struct Detach(PathBuf, bool);

impl Drop for Detach {
    fn drop(&mut self) {
        if self.1 {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn mounted(mp: &Path) -> Option<String> {
    let want = format!(" {} ", mp.display());
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().find(|l| l.contains(&want)).map(str::to_string)
}

#[test]
fn a_normal_user_mounts_uses_and_unmounts_a_store_of_their_own() {
    if should_skip() {
        return;
    }
    require(&["fusermount3", "setpriv"]);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ids = if root {
        Some(test_user())
    } else {
        eprintln!("not root: running as this user; the check that another user is refused needs root");
        None
    };
    // The user must reach its directories, and run the binary: the checkout (and its
    // target dir) may be closed to other users, so the binary is copied there too.
    let dir = shared_tmpdir();
    let msgfs = dir.path().join("msgfs");
    std::fs::copy(MSGFS, &msgfs).unwrap();
    std::fs::set_permissions(&msgfs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (home, store, mp) = (dir.path().join("home"), dir.path().join("store"), dir.path().join("mnt"));
    for d in [&home, &store, &mp] {
        std::fs::create_dir(d).unwrap();
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap();
        }
    }
    let user = User { ids, home };

    let mount_args = [msgfs.as_os_str(), "mount".as_ref(), store.as_os_str(), mp.as_os_str()];
    let can_open =
        user.cmd(&["sh", "-c", ": <> /dev/fuse"]).stderr(std::process::Stdio::null()).status().unwrap().success();
    let _acl = match (can_open, ids) {
        (true, _) => None,
        (false, None) => panic!("this user cannot open /dev/fuse, so cannot mount (run the tests as root)"),
        (false, Some(_)) => {
            let out = user.cmd(&mount_args).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success() && err.trim().lines().count() == 1, "one clear line: {err}");
            assert!(err.contains("/dev/fuse") && err.contains("0666"), "says why and what to do: {err}");
            eprintln!("/dev/fuse is not open to {USER}: granting it rw with an ACL for this test");
            Some(DevFuseAcl::grant())
        }
    };
    user.run(&mount_args);
    let mut guard = Detach(mp.clone(), true);
    let line = mounted(&mp).expect("msgfs mount returned but nothing is mounted");
    if let Some((uid, _)) = ids {
        assert!(line.contains(&format!("user_id={uid}")), "not the user's mount: {line}");
        let pid = std::fs::read_to_string(store.join("lock")).unwrap();
        let pid = pid.strip_prefix("process ").unwrap().split_whitespace().next().unwrap().to_string();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(uids.split_whitespace().skip(1).all(|u| u == uid.to_string()), "daemon runs as {uids}");
    }

    let body = "Subject: from a user\r\n\r\nwritten by an unprivileged user\r\n";
    let msg = mp.join("Inbox/user.eml");
    user.run(&[
        OsStr::new("sh"),
        "-c".as_ref(),
        "printf '%s' \"$1\" > \"$2\"".as_ref(),
        "-".as_ref(),
        body.as_ref(),
        msg.as_os_str(),
    ]);
    let ls = user.run(&[OsStr::new("ls"), mp.join("Inbox").as_os_str()]);
    assert_eq!(String::from_utf8_lossy(&ls.stdout).lines().collect::<Vec<_>>(), ["user.eml"]);
    let cat = user.run(&[OsStr::new("cat"), msg.as_os_str()]);
    assert_eq!(String::from_utf8_lossy(&cat.stdout), body);
    if let Some((uid, _)) = ids {
        let st = user.run(&[OsStr::new("stat"), "-c".as_ref(), "%u".as_ref(), msg.as_os_str()]);
        assert_eq!(String::from_utf8_lossy(&st.stdout).trim(), uid.to_string(), "the new message is the user's");
        // Without allow_other the kernel refuses every other user, root included.
        for p in [&mp, &mp.join("Inbox"), &msg] {
            let e = std::fs::metadata(p).expect_err("root reached a user's mount");
            assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{}: {e}", p.display());
        }
        assert_eq!(std::fs::read(&msg).unwrap_err().raw_os_error(), Some(libc::EACCES));
    }

    user.run(&[msgfs.as_os_str(), "umount".as_ref(), mp.as_os_str()]);
    guard.1 = false;
    assert!(mounted(&mp).is_none(), "still mounted after msgfs umount");
    assert!(store.join("clean").exists(), "the store was not closed cleanly");
    let check = user.run(&[msgfs.as_os_str(), "check".as_ref(), store.as_os_str()]);
    assert!(check.status.success());
    let log = user.home.join(".local/state/msgfs/msgfs.log");
    assert!(log.exists(), "the daemon's log is not in the user's HOME: {}", log.display());
}

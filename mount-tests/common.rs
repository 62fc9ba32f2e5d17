//! The mount-test harness: a store and a mount in a temporary directory, owned by a guard
//! that always unmounts, even when the test fails; helpers to run real programs.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use msgfs::store::{Attrs, NewMessage, Options, Store};

pub const MSGFS: &str = env!("CARGO_BIN_EXE_msgfs");

/// `msgfs`, with its daemons' log in the test area (XDG_STATE_HOME), never in the log of the
/// user running the tests.
pub fn msgfs_command() -> Command {
    let mut c = Command::new(MSGFS);
    c.env("XDG_STATE_HOME", test_state());
    c
}

/// The XDG_STATE_HOME of every daemon the tests start (see [`msgfs_command`]).
pub fn test_state() -> PathBuf {
    test_tmp().join("state")
}

/// Debian package for each program the tests drive.
const PACKAGES: &[(&str, &str)] = &[
    ("fusermount3", "fuse3"),
    ("rsync", "rsync"),
    ("getfattr", "attr"),
    ("setfattr", "attr"),
    ("vim", "vim"),
    ("nano", "nano"),
    ("tmux", "tmux"),
    ("perl", "perl"),
    ("tar", "tar"),
    ("sed", "sed"),
    ("grep", "grep"),
    ("find", "findutils"),
    ("diff", "diffutils"),
    ("setpriv", "util-linux"),
    ("useradd", "passwd"),
    ("setfacl", "acl"),
    ("getfacl", "acl"),
    ("python3", "python3"),
    ("notmuch", "notmuch"),
    ("autoreconf", "autoconf"),
    ("autoconf", "autoconf"),
    ("automake", "automake"),
    ("make", "make"),
    ("gcc", "gcc"),
    ("prove", "perl"),
    ("openssl", "openssl"),
    ("mount", "mount"),
    ("umount", "mount"),
    ("mount.fuse3", "fuse3"),
    ("unshare", "util-linux"),
    ("systemd-analyze", "systemd"),
];

/// Mount tests run everywhere unless MSGFS_SKIP_MOUNT_TESTS=1 (never skipped in CI). A
/// missing /dev/fuse or program is a failure naming the package to install.
pub fn should_skip() -> bool {
    let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    if !ci && std::env::var("MSGFS_SKIP_MOUNT_TESTS").map(|v| v == "1").unwrap_or(false) {
        eprintln!("mount test skipped: MSGFS_SKIP_MOUNT_TESTS=1");
        return true;
    }
    assert!(Path::new("/dev/fuse").exists(), "/dev/fuse is missing: install fuse3 (apt-get install fuse3) and load the fuse module, or set MSGFS_SKIP_MOUNT_TESTS=1");
    false
}

pub fn require(programs: &[&str]) {
    for p in programs {
        let found = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
            .unwrap_or(false);
        let pkg = PACKAGES.iter().find(|(n, _)| n == p).map(|(_, k)| *k).unwrap_or(p);
        assert!(found, "program {p} is missing: apt-get install {pkg}");
    }
}

/// A mounted store; unmounts (and waits for the daemon) on drop.
pub struct Mount {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    pub mp: PathBuf,
    mounted: bool,
}

impl Mount {
    /// A fresh store, filled by `fill` before mounting, then mounted with `opts`.
    pub fn with(opts: &[&str], fill: impl FnOnce(&Store)) -> Mount {
        let dir = tempfile::Builder::new().prefix("msgfs-test").tempdir_in(test_tmp()).unwrap();
        Mount::in_dir(dir, opts, fill)
    }

    /// A store filled by `fill`, mounted with `opts`, both inside `dir`.
    fn in_dir(dir: tempfile::TempDir, opts: &[&str], fill: impl FnOnce(&Store)) -> Mount {
        let store = dir.path().join("store");
        let st = Store::open(&store, Options { create: true, ..Default::default() }).unwrap();
        fill(&st);
        st.close().unwrap();
        let mp = dir.path().join("mnt");
        std::fs::create_dir(&mp).unwrap();
        let mut m = Mount { dir, store, mp, mounted: false };
        m.mount(opts);
        m
    }

    pub fn new() -> Mount {
        Mount::with(&[], |_| {})
    }

    /// As [`Mount::with`], in a directory other users can reach (see [`shared_tmp`]): for
    /// tests that act as another user inside the mount.
    pub fn reachable(opts: &[&str], fill: impl FnOnce(&Store)) -> Mount {
        Mount::in_dir(shared_tmpdir(), opts, fill)
    }

    /// Mount an existing store directory (a backup) in a new temporary mount point.
    pub fn adopt(store: &Path) -> Mount {
        let dir = tempfile::Builder::new().prefix("msgfs-test").tempdir_in(test_tmp()).unwrap();
        let mp = dir.path().join("mnt");
        std::fs::create_dir(&mp).unwrap();
        let mut m = Mount { dir, store: store.to_path_buf(), mp, mounted: false };
        m.mount(&[]);
        m
    }

    pub fn mount(&mut self, opts: &[&str]) {
        let mut c = msgfs_command();
        c.arg("mount");
        for o in opts {
            c.arg("-o").arg(o);
        }
        let out = c.arg(&self.store).arg(&self.mp).output().unwrap();
        assert!(out.status.success(), "mount failed: {}", String::from_utf8_lossy(&out.stderr));
        self.mounted = true;
    }

    pub fn unmount(&mut self) {
        if !self.mounted {
            return;
        }
        let out = msgfs_command().arg("umount").arg(&self.mp).output().unwrap();
        if !out.status.success() {
            // Still busy or dead: detach it so the test never leaves a mount behind.
            let _ = Command::new("umount").arg("-l").arg(&self.mp).status();
            panic!("umount failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        self.mounted = false;
    }

    /// Remount (unmount, then mount again with `opts`).
    pub fn remount(&mut self, opts: &[&str]) {
        self.unmount();
        self.mount(opts);
    }

    /// The daemon's pid, from the store's lock file.
    pub fn daemon_pid(&self) -> i32 {
        let t = std::fs::read_to_string(self.store.join("lock")).unwrap();
        t.strip_prefix("process ").unwrap().split_whitespace().next().unwrap().parse().unwrap()
    }

    /// SIGKILL the daemon and clear the dead mount, as after a crash.
    pub fn kill_daemon(&mut self) {
        let pid = self.daemon_pid();
        // SAFETY: kill with a pid we read from the lock file.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_gone(pid);
        let _ = Command::new("umount").arg("-l").arg(&self.mp).status();
        self.mounted = false;
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.mp.join(rel)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted {
            let ok = msgfs_command()
                .arg("umount")
                .arg(&self.mp)
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(&self.mp).status();
                if let Ok(t) = std::fs::read_to_string(self.store.join("lock")) {
                    if let Some(pid) = t
                        .strip_prefix("process ")
                        .and_then(|r| r.split_whitespace().next())
                        .and_then(|p| p.parse::<i32>().ok())
                        // A read-only mount takes no lock: the file may name the test that
                        // filled the store.
                        .filter(|p| *p != std::process::id() as i32)
                    {
                        // SAFETY: ending the daemon this test started.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
        }
    }
}

/// Wait until process `pid` has exited whole: gone, or a zombie with no thread left (a
/// zombie main thread whose other threads still run keeps its descriptors, so the store's
/// lock and the FUSE connection, open).
pub fn wait_gone(pid: i32) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return };
        let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split(' ').collect()).unwrap_or_default();
        // After ") ": [1] is the state, [18] the number of threads.
        if fields.get(1) == Some(&"Z") && fields.get(18) == Some(&"1") {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("process {pid} did not exit within 30 s of SIGKILL: a thread is stuck in the kernel");
}

/// Where test directories go: the disk the target dir is on (not a tmpfs).
pub fn test_tmp() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Where tests that act as another user put their directories: under the system's temporary
/// directory, which everyone may enter, and not under the target dir, which lies in the
/// checkout (root's home is 0700 on Debian, and so is a `mktemp -d`).
pub fn shared_tmp() -> PathBuf {
    let d = std::env::temp_dir().join("msgfs-mount-tests");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A new directory under [`shared_tmp`] that other users may enter (mode 0755).
pub fn shared_tmpdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix("msgfs-test").tempdir_in(shared_tmp()).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Put messages into a store folder (path like "Inbox"), created if missing.
pub fn put(st: &Store, folder: &str, msgs: &[(&str, &[u8])]) {
    let mut f = msgfs::store::ROOT;
    for part in folder.split('/').filter(|p| !p.is_empty()) {
        f = match st.folder_by_path(&format!("{}/{part}", st.index().folder_path(f))) {
            Ok(id) => id,
            Err(_) => st
                .create_folder(
                    f,
                    part,
                    Attrs { mode: libc::S_IFDIR | 0o755, uid: 0, gid: 0, mtime: 1_600_000_000_000_000_000 },
                )
                .unwrap(),
        };
    }
    let items = msgs
        .iter()
        .map(|(name, body)| {
            let (staged, crc) = st.stage_content(body).unwrap();
            NewMessage {
                folder: f,
                name: name.to_string(),
                staged,
                size: body.len() as u64,
                crc,
                attrs: Attrs { mode: libc::S_IFREG | 0o644, uid: 0, gid: 0, mtime: 1_600_000_000_000_000_000 },
                flags: 0,
            }
        })
        .collect();
    st.import_messages(items).unwrap();
}

/// Run a program; panic with its output if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file below `dir` (readdir's view: what it lists), sorted.
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

pub fn sh(script: &str) -> Output {
    run(Command::new("sh").arg("-c").arg(script))
}

pub fn getxattr(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid C strings and a buffer of the size we pass.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

pub fn entry_id(path: &Path) -> String {
    String::from_utf8(getxattr(path, "user.msgfs.entryid").unwrap()).unwrap()
}

pub fn version(path: &Path) -> u64 {
    String::from_utf8(getxattr(path, "user.msgfs.version").unwrap()).unwrap().parse().unwrap()
}

/// Names in a directory, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// The errno of a failed libc call.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

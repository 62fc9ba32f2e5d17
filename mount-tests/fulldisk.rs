//! A full disk: once saves fail with ENOSPC (the log itself cannot grow), deleting through
//! the mount still works and frees space, also after a remount, and nothing saved before
//! is lost. The store lives on a small tmpfs, so the disk really fills.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// A tmpfs of `size` mounted in a temporary directory, with a msgfs mount point beside it;
/// both unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        let dir = tempfile::Builder::new().prefix("msgfs-test").tempdir_in(test_tmp()).unwrap();
        std::fs::create_dir(dir.path().join("disk")).unwrap();
        std::fs::create_dir(dir.path().join("mnt")).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir.path().join("disk")));
        SmallDisk { dir, mounted: false }
    }
    fn disk(&self) -> PathBuf {
        self.dir.path().join("disk")
    }
    fn store(&self) -> PathBuf {
        self.disk().join("store")
    }
    fn mp(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
    fn mount(&mut self) {
        let out = msgfs_command().arg("mount").arg(self.store()).arg(self.mp()).output().unwrap();
        assert!(out.status.success(), "mount: {}", String::from_utf8_lossy(&out.stderr));
        self.mounted = true;
    }
    fn unmount(&mut self) {
        run(msgfs_command().arg("umount").arg(self.mp()));
        self.mounted = false;
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.mp().join(rel)
    }
    /// Room for saves: the tmpfs's free bytes and the store's reserve (which it gives back
    /// for deletions and takes first when space comes back).
    fn room(&self) -> u64 {
        let reserve = std::fs::metadata(self.store().join("reserve")).map(|m| m.len()).unwrap_or(0);
        self.free() + reserve
    }

    /// Free bytes on the tmpfs.
    fn free(&self) -> u64 {
        let c = cpath(&self.disk());
        // SAFETY: statvfs writes into the zeroed struct we own, given a valid C string.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        st.f_bavail as u64 * st.f_frsize as u64
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if self.mounted && !msgfs_command().arg("umount").arg(self.mp()).status().is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(self.mp()).status();
        }
        let _ = Command::new("umount").arg("-l").arg(self.disk()).status();
    }
}

/// Save `content` as `path` (fsync is SaveChanges, so its error is the save's).
fn save(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(content)?;
    f.sync_all()
}

/// Fill the disk through the mount: big messages until a save fails, then empty ones
/// (they need room only in the log) until the log cannot grow. Returns the big ones saved.
fn fill(d: &SmallDisk, tag: &str) -> Vec<PathBuf> {
    let mut big = Vec::new();
    let chunk: Vec<u8> = (0..1_000_000u32).map(|i| b'a' + (i.wrapping_mul(2_654_435_761) >> 27) as u8 % 26).collect();
    for i in 0.. {
        let p = d.p(&format!("Inbox/{tag}-big{i}.eml"));
        match save(&p, &chunk) {
            Ok(()) => big.push(p),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling: {e}");
                break;
            }
        }
        assert!(i < 100, "the 16 MiB disk never filled");
    }
    for i in 0.. {
        match save(&d.p(&format!("Inbox/{tag}-empty{i}.eml")), b"") {
            Ok(()) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling the log: {e}");
                break;
            }
        }
        assert!(i < 100_000, "the log never filled");
    }
    big
}

#[test]
fn deleting_through_the_mount_works_on_a_full_disk_also_after_a_remount() {
    if should_skip() {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test mounts a tmpfs: run it as root");
    let mut d = SmallDisk::new("16m");
    d.mount();
    // Where a save that fails at its last close is kept: there before the disk fills, since
    // on a full disk making a directory can fail too.
    assert!(d.store().join("recovered").is_dir(), "a new store has no recovered/");
    let keep = b"Subject: keep\n\nsaved before the disk filled\n";
    save(&d.p("Inbox/keep.eml"), keep).unwrap();
    for f in ["Old", "Older", "Oldest"] {
        std::fs::create_dir(d.p(&format!("Inbox/{f}"))).unwrap();
    }

    let big = fill(&d, "a");
    assert!(big.len() >= 2, "too few big messages fitted: {}", big.len());
    let before = d.room();
    std::fs::remove_file(&big[0]).expect("delete on a full disk");
    // A deletion's objects go once it is durable, after its reply: the next operation is
    // answered after that (one committer, in order), so it is the point to measure at.
    std::fs::remove_dir(d.p("Inbox/Old")).expect("rmdir after a delete on a full disk");
    assert!(d.room() > before + 500_000, "the delete freed nothing: {before} -> {}", d.room());

    // Full again (the reserve takes back its space first, so perhaps without a single big
    // message), then a remount: deleting still works.
    fill(&d, "b");
    d.unmount();
    d.mount();
    std::fs::remove_dir(d.p("Inbox/Older")).expect("rmdir on a full disk after a remount");
    let before = d.room();
    std::fs::remove_file(&big[1]).expect("delete on a full disk after a remount");
    std::fs::remove_dir(d.p("Inbox/Oldest")).expect("rmdir after a delete after a remount");
    assert!(d.room() > before + 500_000, "the delete freed nothing: {before} -> {}", d.room());
    assert!(!d.p("Inbox/Old").exists() && !d.p("Inbox/Older").exists());

    // Saved before: still there, and the store checks clean.
    assert_eq!(std::fs::read(d.p("Inbox/keep.eml")).unwrap(), keep);
    d.unmount();
    let out = run(msgfs_command().arg("check").arg(d.store()));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(": ok (") && !said.contains("not closed cleanly"), "{said}");
}

//! Mounting the Linux way: `mount -t fuse.msgfs STORE MOUNTPOINT -o OPTIONS` and a line of
//! an fstab, both through mount(8) and mount.fuse3, which run `msgfs STORE MOUNTPOINT -o
//! OPTIONS` (no subcommand) and pass the generic options along; msgfs must take them.
//!
//! mount(8) runs its helpers with no PATH, so mount.fuse3's shell finds `msgfs` only in the
//! shell's default path (/usr/local/sbin first). The test never installs anything there:
//! it runs in a mount namespace of its own (unshare), where a directory holding `msgfs` is
//! bind-mounted over /usr/local/sbin. The FUSE mount lives in that namespace too, so one
//! shell script there mounts, uses and unmounts; the system's /etc/fstab is never read
//! (util-linux's --fstab names a private one).

use std::path::PathBuf;
use std::process::Command;

use crate::common::*;

struct Setup {
    dir: tempfile::TempDir,
    store: PathBuf,
    mp: PathBuf,
}

/// Run in the namespace: $MOUNT_ARGS mounts, then a message is written and read back, and
/// `msgfs umount` unmounts; on any failure the mount is taken down before the shell exits.
const SCRIPT: &str = r#"
set -eu
mount --bind "$BIN" /usr/local/sbin
trap 'msgfs umount "$MP" 2>/dev/null || umount -l "$MP" 2>/dev/null || true' EXIT
# shellcheck disable=SC2086
mount $MOUNT_ARGS
grep " $MP " /proc/self/mountinfo
printf 'Subject: through mount(8)\n\nhello\n' > "$MP/Inbox/fstab.eml"
cat "$MP/Inbox/fstab.eml"
msgfs umount "$MP"
trap - EXIT
"#;

impl Setup {
    fn new() -> Setup {
        require(&["mount", "umount", "mount.fuse3", "unshare"]);
        let dir = tempfile::Builder::new().prefix("msgfs-test").tempdir_in(test_tmp()).unwrap();
        let (store, mp, bin) = (dir.path().join("store"), dir.path().join("mnt"), dir.path().join("bin"));
        std::fs::create_dir(&mp).unwrap();
        std::fs::create_dir(&bin).unwrap();
        std::fs::copy(MSGFS, bin.join("msgfs")).unwrap();
        run(msgfs_command().arg("init").arg(&store));
        Setup { dir, store, mp }
    }

    /// Mount with `mount ARGS` (split on spaces), use, unmount; returns the daemon's log.
    fn mount_use_unmount(&self, args: &str) -> String {
        let out = run(Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c", SCRIPT])
            .env("BIN", self.dir.path().join("bin"))
            .env("MP", &self.mp)
            .env("MOUNT_ARGS", args)
            .env("XDG_STATE_HOME", self.dir.path().join("state")));
        let said = String::from_utf8_lossy(&out.stdout);
        let line = said.lines().next().unwrap_or_default();
        // Type fuse (root mounts directly) or fuse.msgfs (through fusermount3), source msgfs:STORE.
        let fields = line.split(" - ").nth(1).unwrap_or_default();
        assert!(fields.starts_with("fuse") && fields.contains(" msgfs:"), "not a msgfs mount: {said}");
        assert!(said.ends_with("Subject: through mount(8)\n\nhello\n"), "{said}");
        assert!(self.store.join("clean").exists(), "the store was not closed cleanly");
        std::fs::read_to_string(self.dir.path().join("state/msgfs/msgfs.log")).unwrap_or_default()
    }
}

/// The generic options of fstab(5) and systemd.mount(5) a line may carry, and one of ours.
const OPTIONS: &str = "rw,noatime,relatime,nodev,nosuid,noexec,exec,auto,user,users,_netdev,nofail,\
                       x-systemd.automount,default_permissions,fsname=mail,subtype=mail,auto_unmount,commit=lazy";

#[test]
fn mount_t_fuse_msgfs_mounts_a_store_taking_the_generic_options() {
    if should_skip() {
        return;
    }
    let s = Setup::new();
    // mount.fuse3 passes only STORE, MOUNTPOINT and -o: `debug` asks for the info lines.
    let args = format!("-t fuse.msgfs {} {} -o {OPTIONS},debug", s.store.display(), s.mp.display());
    let log = s.mount_use_unmount(&args);
    // mount(8) keeps rw, exec, auto, user, users, _netdev, nofail and x-systemd.* to itself
    // (the unit tests of mount_options cover those); these reach msgfs.
    for o in ["noatime", "relatime", "nodev", "nosuid", "noexec", "default_permissions", "fsname=mail", "auto_unmount"]
    {
        assert!(log.contains(&format!("mount option {o} ignored: ")), "no line for {o} in the log:\n{log}");
    }
}

#[test]
fn an_fstab_line_mounts_a_store_with_mount_mountpoint() {
    if should_skip() {
        return;
    }
    let s = Setup::new();
    let fstab = s.dir.path().join("fstab");
    let line = format!("{} {} fuse.msgfs {OPTIONS},noauto 0 0\n", s.store.display(), s.mp.display());
    std::fs::write(&fstab, format!("# msgfs test\n{line}")).unwrap();
    s.mount_use_unmount(&format!("-T {} {}", fstab.display(), s.mp.display()));
}

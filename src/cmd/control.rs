//! `msgfs lock|unlock|freeze|thaw|abort|status|backup`: the control interface from the
//! shell, through the xattrs on the mount root.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use super::CmdResult;
use crate::control::{XATTR_CRASH_RECOVERY, XATTR_SNAPSHOT, XATTR_STATE};

fn set(mp: &Path, name: &str, value: &str) -> std::io::Result<()> {
    let p = CString::new(mp.as_os_str().as_bytes())?;
    let n = CString::new(name)?;
    // SAFETY: valid C strings and a buffer of the length passed.
    let r = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn get(mp: &Path, name: &str) -> std::io::Result<String> {
    let p = CString::new(mp.as_os_str().as_bytes())?;
    let n = CString::new(name)?;
    let mut buf = vec![0u8; 64 << 10];
    // SAFETY: valid C strings and a buffer of the length passed.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// One line naming the mount and what to do about the error.
fn explain(mp: &Path, what: &str, e: std::io::Error) -> Box<dyn std::error::Error + Send + Sync> {
    let hint = match e.raw_os_error() {
        Some(libc::ENOTSUP) | Some(libc::ENODATA) => " (is it a msgfs mount?)",
        Some(libc::EPERM) => " (only root and the user who mounted it may)",
        Some(libc::EBUSY) => " (another session is frozen, the lock is held, or the store is not consistent)",
        Some(libc::EPROTO) => " (nothing in the right state for that)",
        _ => "",
    };
    format!("{what} {}: {e}{hint}", mp.display()).into()
}

fn parent_pid() -> u32 {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() as u32 }
}

/// Refuse anything but the root of a msgfs mount, before touching it.
fn ours(mp: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    super::mount::msgfs_root(mp).map(|_| ()).map_err(Into::into)
}

pub fn lock(mp: &Path, shutdown: bool) -> CmdResult {
    ours(mp)?;
    let v = format!("recover{},pid={}", if shutdown { ",shutdown" } else { "" }, parent_pid());
    set(mp, XATTR_CRASH_RECOVERY, &v).map_err(|e| explain(mp, "lock", e))?;
    println!("{}: locked until process {} ends or `msgfs unlock`", mp.display(), parent_pid());
    Ok(0)
}

pub fn unlock(mp: &Path) -> CmdResult {
    ours(mp)?;
    set(mp, XATTR_CRASH_RECOVERY, "continue").map_err(|e| explain(mp, "unlock", e))?;
    Ok(0)
}

pub fn freeze(mp: &Path) -> CmdResult {
    ours(mp)?;
    set(mp, XATTR_SNAPSHOT, "freeze").map_err(|e| explain(mp, "freeze", e))?;
    println!("{}: frozen ({})", mp.display(), get(mp, XATTR_SNAPSHOT).unwrap_or_default());
    Ok(0)
}

pub fn thaw(mp: &Path) -> CmdResult {
    ours(mp)?;
    match set(mp, XATTR_SNAPSHOT, "thaw") {
        Ok(()) => Ok(0),
        Err(e) if e.raw_os_error() == Some(libc::ETIMEDOUT) => {
            eprintln!("msgfs: thaw {}: the freeze timed out and the store thawed by itself earlier: a backup taken during it may be inconsistent", mp.display());
            Ok(1)
        }
        Err(e) => Err(explain(mp, "thaw", e)),
    }
}

pub fn abort(mp: &Path) -> CmdResult {
    ours(mp)?;
    set(mp, XATTR_SNAPSHOT, "abort").map_err(|e| explain(mp, "abort", e))?;
    Ok(0)
}

pub fn status(mp: &Path) -> CmdResult {
    ours(mp)?;
    let s = get(mp, XATTR_STATE).map_err(|e| explain(mp, "status", e))?;
    print!("{s}");
    Ok(0)
}

/// Refuse a DEST that rsync --delete would damage: one inside a msgfs mount (the copy would
/// delete messages and write store files into folders), inside the store itself, or a
/// non-empty directory that is not an earlier backup of this store (its files would be
/// deleted). An earlier backup is known by the store id in its format file.
fn check_backup_dest(store: &Path, dest: &Path) -> Result<(), String> {
    let d = dest.display();
    if let Some(m) = super::mount::msgfs_mount_containing(dest) {
        return Err(format!(
            "{d} is inside the msgfs mount {}: back up to a directory outside any msgfs mount",
            m.display()
        ));
    }
    if let (Ok(s), Ok(t)) = (std::fs::canonicalize(store), std::fs::canonicalize(dest)) {
        if t.starts_with(&s) || s.starts_with(&t) {
            return Err(format!("{d} overlaps the store directory {}: back up to a directory outside it", s.display()));
        }
    }
    let md = match std::fs::symlink_metadata(dest) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{d}: {e}")),
    };
    if !md.is_dir() {
        return Err(format!("{d} is not a directory"));
    }
    let empty = std::fs::read_dir(dest).map_err(|e| format!("{d}: {e}"))?.next().is_none();
    if empty {
        return Ok(());
    }
    let ours = crate::store::store_id_of(store);
    if ours.is_some() && crate::store::store_id_of(dest) == ours {
        return Ok(());
    }
    Err(format!(
        "{d} is not empty and is not a backup of this store (rsync --delete would delete its files): give a new or empty directory, or an earlier backup of this store"
    ))
}

/// Freeze, copy the store directory with rsync (its immutable objects make repeated backups
/// incremental), thaw, and fail loudly if the freeze timed out while copying.
pub fn backup(mp: &Path, dest: &Path) -> CmdResult {
    let mp_abs = super::mount::msgfs_root(mp)?;
    let store = super::mount::store_of(&mp_abs).ok_or_else(|| format!("{} is not a msgfs mount", mp.display()))?;
    check_backup_dest(&store, dest)?;
    if !dest.exists() {
        // Private from the start: the copy holds the same mail as the store.
        crate::store::vfs::create_private_dir(dest).map_err(|e| format!("create {}: {e}", dest.display()))?;
    }
    set(mp, XATTR_SNAPSHOT, "freeze").map_err(|e| explain(mp, "freeze", e))?;
    let copied = Command::new("rsync")
        .arg("-a")
        .arg("--delete")
        // The copy is as private as a store: 0700 directories (DEST itself too: it takes the
        // mode of the source's top directory) and 0600 files, even from a store an older
        // msgfs made 0755.
        .arg("--chmod=go-rwx")
        // The lock belongs to the running daemon; staging/ holds private copies of open
        // transactions, never part of the store's state.
        // The reserve is space set aside on this disk, made again at the copy's first open.
        .args(["--exclude=/lock", "--exclude=/staging/*", "--exclude=/clean", "--exclude=*.tmp", "--exclude=/reserve"])
        .arg(format!("{}/", store.display()))
        .arg(dest)
        .status();
    let thawed = set(mp, XATTR_SNAPSHOT, "thaw");
    let copied = copied.map_err(|e| format!("rsync: {e} (install rsync: apt-get install rsync)"))?;
    if !copied.success() {
        return Err(format!("backup of {} to {}: rsync failed ({copied})", store.display(), dest.display()).into());
    }
    match thawed {
        Ok(()) => {
            println!("{}: backed up to {}", mp.display(), dest.display());
            Ok(0)
        }
        Err(e) if e.raw_os_error() == Some(libc::ETIMEDOUT) => {
            eprintln!(
                "msgfs: backup of {} to {} is NOT consistent: the freeze timed out while copying (raise -o snapshot_timeout_ms and run it again)",
                mp.display(),
                dest.display()
            );
            Ok(1)
        }
        Err(e) => Err(explain(mp, "thaw", e)),
    }
}

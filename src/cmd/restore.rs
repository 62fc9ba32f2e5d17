//! `msgfs restore FILE...`: put messages that `-o trash` moved to `Deleted Items` back where
//! each was (its `user.msgfs.origin`: folder and name), by a rename in the mount, so each
//! keeps its entry id. A name taken there is never replaced.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::CmdResult;
use crate::control::XATTR_ORIGIN;

/// Where `file` was removed from, as a path in the store, or why there is none.
fn origin(file: &Path) -> Result<String, String> {
    let p = CString::new(file.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let n = CString::new(XATTR_ORIGIN).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64 << 10];
    // SAFETY: valid C strings and a buffer of the length passed.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENODATA) => {
                format!("{}: not removed with -o trash (no {XATTR_ORIGIN}): move it with mv", file.display())
            }
            _ => format!("{}: {e}", file.display()),
        });
    }
    buf.truncate(r as usize);
    String::from_utf8(buf).map_err(|_| format!("{}: {XATTR_ORIGIN} is not UTF-8", file.display()))
}

/// Rename `from` to `to`, failing with EEXIST rather than replacing a file there.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    let f = CString::new(from.as_os_str().as_bytes())?;
    let t = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: renameat2 on two valid C string paths, relative to the working directory.
    let r = unsafe { libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), libc::RENAME_NOREPLACE) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn restore_one(file: &Path) -> Result<PathBuf, String> {
    let mp = super::mount::msgfs_mount_containing(file)
        .ok_or_else(|| format!("{}: not in a msgfs mount", file.display()))?;
    let origin = origin(file)?;
    let to = mp.join(&origin);
    let dir = to.parent().unwrap_or(&mp);
    if !dir.is_dir() {
        return Err(format!(
            "{}: its folder {} is gone: make it again (mkdir -p) or move the file with mv",
            file.display(),
            dir.display()
        ));
    }
    rename_noreplace(file, &to).map_err(|e| match e.raw_os_error() {
        Some(libc::EEXIST) => format!("{}: {} exists: rename one of them first", file.display(), to.display()),
        _ => format!("{} -> {}: {e}", file.display(), to.display()),
    })?;
    Ok(to)
}

pub fn run(files: &[PathBuf]) -> CmdResult {
    let mut failed = false;
    for f in files {
        match restore_one(f) {
            Ok(to) => println!("{} -> {}", f.display(), to.display()),
            Err(e) => {
                eprintln!("msgfs: restore: {e}");
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}

//! The subcommands of `msgfs`, one module each; `main.rs` only parses and calls these.
//! Each returns the exit code, or an error that `main` prints as one line.

pub mod check;
pub mod completions;
pub mod control;
pub mod export;
pub mod import;
pub mod init;
pub mod log;
pub mod ls;
pub mod mount;
pub mod mount_options;
pub mod notify;
pub mod parts;
pub mod restore;
pub mod sync;

/// What a subcommand returns: an exit code, or an error printed as `msgfs: ERROR`.
pub type CmdResult = Result<u8, Box<dyn std::error::Error + Send + Sync>>;

use std::path::Path;

/// Whether group or others may read or enter the store directory: then every local user can
/// read its mail (stores made by older versions were 0755 with 0644 files).
pub fn readable_by_others(store: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(store).map(|m| m.is_dir() && m.permissions().mode() & 0o077 != 0).unwrap_or(false)
}

/// One line for a store others can read: the path and the fix.
pub fn readable_warning(store: &Path) -> String {
    let p = store.display();
    format!("msgfs: warning: other users can read the mail in {p}: run `chmod -R go-rwx {p}`")
}

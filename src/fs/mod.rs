//! The mounted view: folders as directories, messages as files, open/write/close as
//! SaveChanges transactions, on fuser. `store_fs.rs` and the files beside it hold the logic, `fuse.rs` the thin adapter,
//! `errno.rs` the one errno mapping.

mod attrs;
mod control;
pub mod errno;
mod fuse;
mod handles;
mod inodes;
pub mod names;
mod namespace;
#[cfg(test)]
mod namespace_tests;
mod notify;
mod overlay;
pub mod store_fs;
mod watchdog;
pub use watchdog::WATCHDOG_NAME;
mod xattr;

use std::path::Path;
use std::sync::Arc;

use fuser::{MountOption, SessionACL};

use crate::store::Store;
use store_fs::StoreFs;

/// Mount options (`-o`).
#[derive(Clone, Debug)]
pub struct MountConfig {
    pub read_only: bool,
    pub allow_other: bool,
    pub snapshot_timeout_ms: u64,
    /// FUSE worker threads reading requests (each with its own cloned /dev/fuse descriptor).
    pub threads: usize,
}

impl Default for MountConfig {
    fn default() -> MountConfig {
        // As many FUSE threads as CPUs (at most 4): more only adds thread switches.
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        MountConfig { read_only: false, allow_other: false, snapshot_timeout_ms: 70_000, threads: cpus.clamp(1, 4) }
    }
}

/// Something that can end a mount from another thread (a signal handler thread).
pub type Unmounter = fuser::SessionUnmounter;

/// Mount `store` at `mountpoint` and serve it until it is unmounted. `ready` is called once
/// the mount is in place (with an unmounter for signal handling). At the end every open
/// writer is saved as at close, and the store is closed cleanly.
pub fn serve(store: Store, mountpoint: &Path, cfg: &MountConfig, ready: impl FnOnce(Unmounter)) -> std::io::Result<()> {
    store.set_freeze_timeout(std::time::Duration::from_millis(cfg.snapshot_timeout_ms));
    let inner = Arc::new(StoreFs::new(store.clone(), cfg.read_only));
    let fs = fuse::MsgFs::new(inner.clone());
    let mut config = fuser::Config::default();
    let source = store.path().map(|p| p.display().to_string()).unwrap_or_else(|| "store".into());
    config.mount_options = vec![MountOption::FSName(format!("msgfs:{source}")), MountOption::Subtype("msgfs".into())];
    if cfg.read_only {
        config.mount_options.push(MountOption::RO);
    }
    // The kernel checks every access against the stored mode, uid and gid.
    config.mount_options.push(MountOption::DefaultPermissions);
    if cfg.allow_other {
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(cfg.threads.max(1));
    config.clone_fd = true;
    let mut session = fuser::Session::new(fs, mountpoint, &config)?;
    // A duplicate of the session's descriptor for the notifications.
    let fd = std::os::fd::AsFd::as_fd(&session).try_clone_to_owned()?;
    let notifier = Arc::new(notify::Notifier::new(fd));
    let _ = inner.notifier.set(notifier.clone());
    let (tx, rx) = std::sync::mpsc::channel::<(u64, String)>();
    *inner.expiries.lock().unwrap() = Some(tx);
    let expiry_thread = std::thread::Builder::new()
        .name("msgfs-expire".into())
        .spawn(move || rx.into_iter().for_each(|(parent, name)| notifier.expire_entry(parent, &name)))?;
    let watchdog = watchdog::Watchdog::start(mountpoint);
    ready(session.unmount_callable());
    let res = session.run();
    // The notifier's descriptor still holds the connection: its number is not free yet.
    if let Some(w) = watchdog {
        w.stop();
    }
    inner.expiries.lock().unwrap().take();
    let _ = expiry_thread.join();
    if let Err(e) = store.close() {
        log::error!("closing the store: {e}");
        return Err(std::io::Error::other(e.to_string()));
    }
    res
}

//! The mounted view: folders as directories, messages as files, open/write/close as
//! SaveChanges transactions, on fuser. `ops.rs` holds the logic, `fuse.rs` the thin adapter,
//! `errno.rs` the one errno mapping.

mod control;
pub mod errno;
mod fuse;
pub mod names;
pub mod ops;
pub mod state;
mod xattr;

use std::path::Path;
use std::sync::Arc;

use fuser::{MountOption, SessionACL};

use crate::store::Store;
use ops::{Inner, Inval};

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
    let inner = Arc::new(Inner::new(store.clone(), cfg.read_only));
    let fs = fuse::MsgFs::new(inner.clone(), 8);
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
    let notifier = session.notifier();
    let (tx, rx) = std::sync::mpsc::channel::<Inval>();
    *inner.inval.lock().unwrap() = Some(tx);
    let inval_thread = std::thread::Builder::new().name("msgfs-inval".into()).spawn(move || {
        for i in rx {
            let r = match &i {
                Inval::Entry { parent, name } => notifier.inval_entry(fuser::INodeNo(*parent), name.as_ref()),
                Inval::Attrs { ino } => notifier.inval_inode(fuser::INodeNo(*ino), -1, 0),
            };
            if let Err(e) = r {
                // ENOENT: the kernel did not have it cached; nothing to do.
                if e.raw_os_error() != Some(libc::ENOENT) {
                    log::debug!("cache invalidation failed: {e}");
                }
            }
        }
    })?;
    ready(session.unmount_callable());
    let res = session.run();
    inner.inval.lock().unwrap().take();
    let _ = inval_thread.join();
    if let Err(e) = store.close() {
        log::error!("closing the store: {e}");
        return Err(std::io::Error::other(e.to_string()));
    }
    res
}

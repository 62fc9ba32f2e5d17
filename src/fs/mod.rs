//! The mounted view: folders as directories, messages as files, open/write/close as
//! SaveChanges transactions, on fuser. `view.rs` is the trait every mount is served
//! through, `fuse.rs` the one thin adapter and session over it, `errno.rs` the one errno
//! mapping; `store_view.rs` puts the store behind the trait, and `store_fs.rs` and the
//! files beside it hold the store's logic.

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
pub mod parts;
mod prefetch;
mod readonly;
pub mod store_fs;
mod store_parts;
mod store_view;
mod sync_job;
mod trash;
pub mod view;
mod watchdog;
pub use watchdog::WATCHDOG_NAME;
mod xattr;

use std::path::Path;
use std::sync::Arc;

use crate::store::Store;
pub use fuse::serve as serve_view;
use store_fs::StoreFs;
use store_view::StoreView;

/// The FUSE kernel protocol version fuser 0.18 offers at INIT on Linux (its private
/// `FUSE_KERNEL_VERSION`.`FUSE_KERNEL_MINOR_VERSION`); the kernel answers with the lower of
/// this and its own. Said by `msgfs --version`; a test ties it to the fuser version in
/// Cargo.lock, so a fuser upgrade makes someone look again.
pub const FUSE_PROTOCOL: (u32, u32) = (7, 40);

/// Mount options (`-o`).
#[derive(Clone, Debug)]
pub struct MountConfig {
    pub read_only: bool,
    pub allow_other: bool,
    pub snapshot_timeout_ms: u64,
    /// FUSE worker threads reading requests (each with its own cloned /dev/fuse descriptor).
    pub threads: usize,
    /// `-o commit=lazy[:MS]`: a close's save is answered once logged and visible, and made
    /// durable within this many milliseconds; None (`commit=durable`): durable at close.
    pub lazy_ms: Option<u64>,
    /// `-o trash`: unlink moves a message to `Deleted Items` (see `trash.rs`).
    pub trash: bool,
}

impl Default for MountConfig {
    fn default() -> MountConfig {
        // As many FUSE threads as CPUs (at most 4): more only adds thread switches.
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        MountConfig {
            read_only: false,
            allow_other: false,
            snapshot_timeout_ms: 70_000,
            threads: cpus.clamp(1, 4),
            lazy_ms: None,
            trash: false,
        }
    }
}

/// Something that can end a mount from another thread (a signal handler thread).
pub type Unmounter = fuser::SessionUnmounter;

/// Mount `store` at `mountpoint` and serve it until it is unmounted. `ready` is called once
/// the mount is in place (with an unmounter for signal handling). At the end every open
/// writer is saved as at close, and the store is closed cleanly.
pub fn serve(store: Store, mountpoint: &Path, cfg: &MountConfig, ready: impl FnOnce(Unmounter)) -> std::io::Result<()> {
    store.set_freeze_timeout(std::time::Duration::from_millis(cfg.snapshot_timeout_ms));
    let source = store.path().map(|p| p.display().to_string()).unwrap_or_else(|| "store".into());
    let mut fs = StoreFs::new(store, cfg.read_only);
    fs.trash = cfg.trash;
    let view = StoreView::new(Arc::new(fs));
    serve_view(Arc::new(view), mountpoint, format!("msgfs:{source}"), cfg, ready)
}

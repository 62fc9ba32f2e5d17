//! The store as a filesystem: the state one mount keeps (inodes handed to the kernel, the
//! overlay, open handles) and the lookups every request starts with. The requests themselves
//! are in `attrs.rs`, `handles.rs` and `namespace.rs`; `store_view.rs` routes the adapter's
//! requests (`fuse.rs`) to them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use fuser::Errno;

use super::errno::{err, FsError, FsResult};
pub(super) use super::handles::{DirEnt, Handle, Writer};
pub(super) use super::inodes::{InodeRef, Inodes};
pub(super) use super::names::{conflict_name, is_scratch};
pub(super) use super::overlay::{NodeKind, Overlaid, Overlay, Shadow};
pub(super) use super::view::{Attr, TTL};
use crate::store::commit::now_ns;
pub(super) use crate::store::commit::{Op, Outcome};
pub(super) use crate::store::vfs::{OpenMode, VfsFile};
pub(super) use crate::store::{AttrChange, Attrs, Entry, Error, Id, SaveFlags, Store, ROOT};
pub(super) use std::path::PathBuf;
pub(super) use std::sync::{Mutex, MutexGuard};

/// Where a request's answer goes, called once: on the thread that received the request, or
/// on the committer's once the change it waited for is durable.
pub type Done<T> = Box<dyn FnOnce(FsResult<T>) + Send>;

/// Answer `done` with the error of `r`, or go on with its value.
macro_rules! or_answer {
    ($done:expr, $r:expr) => {
        match $r {
            Ok(v) => v,
            Err(e) => return ($done)(Err(e.into())),
        }
    };
}
pub(super) use or_answer;

pub struct StoreFs {
    pub store: Store,
    pub inodes: Inodes,
    pub overlay: Mutex<Overlay>,
    pub handles: DashMap<u64, Handle>,
    next_fh: AtomicU64,
    pub read_only: bool,
    /// `-o trash`: see `trash.rs`.
    pub trash: bool,
    /// Set once the session exists: attribute invalidations are sent from the request that
    /// made the change, before it is answered; entry expiries go to `expiries`.
    pub notifier: std::sync::OnceLock<Arc<super::notify::Notifier>>,
    /// Entries to expire, sent by a thread of its own (see `notify.rs`).
    pub expiries: Mutex<Option<std::sync::mpsc::Sender<(Id, String)>>>,
    /// The mounting user: with root, the only one allowed to use the control interface.
    pub owner_uid: u32,
    /// A `msgfs sync` pass run by this mount (see `sync_job.rs`).
    pub sync_job: Arc<Mutex<super::sync_job::SyncJob>>,
    /// Reading ahead of a reader that follows a folder's listing (see `prefetch.rs`).
    pub prefetch: super::prefetch::Prefetch,
    /// A read-only mount's versions read and folders listed last, by inode (see
    /// `readonly.rs`).
    pub recent: super::readonly::RecentPins,
    pub listings: super::readonly::RecentListings,
    /// The messages' `.parts` folders (see `parts.rs` and `store_parts.rs`).
    pub parts: super::parts::Parts<super::store_parts::PartsKey>,
}

pub(super) fn io<T>(r: std::io::Result<T>, what: &str) -> FsResult<T> {
    r.map_err(|e| FsError::Store(Error::io(what, e)))
}

/// Where a name in a folder leads.
#[derive(Clone, Copy, Debug)]
pub(super) enum Found {
    Folder(Id),
    Message(Id),
    Node(Id),
    Shadow(Shadow),
}

impl StoreFs {
    pub fn new(store: Store, read_only: bool) -> StoreFs {
        StoreFs {
            store,
            inodes: Inodes::default(),
            overlay: Mutex::new(Overlay::default()),
            handles: DashMap::new(),
            next_fh: AtomicU64::new(1),
            read_only,
            trash: false,
            notifier: std::sync::OnceLock::new(),
            expiries: Mutex::new(None),
            sync_job: Arc::default(),
            prefetch: Default::default(),
            recent: Default::default(),
            listings: Default::default(),
            parts: Default::default(),
            // SAFETY: getuid cannot fail.
            owner_uid: unsafe { libc::getuid() },
        }
    }

    pub fn overlay(&self) -> MutexGuard<'_, Overlay> {
        self.overlay.lock().unwrap()
    }

    /// The name now leads elsewhere (a new version's inode): the kernel should look it up
    /// again. Asynchronous, so the caller may see the old inode for a moment; every request
    /// on an old version's inode is answered with the message's current state.
    pub(super) fn expire_entry(&self, folder: Id, name: &str) {
        if let Some(tx) = self.expiries.lock().unwrap().as_ref() {
            let _ = tx.send((folder, name.to_string()));
        }
    }

    /// The inode's attributes changed behind the kernel's back.
    pub(super) fn inval_attrs(&self, ino: u64) {
        if let Some(n) = self.notifier.get() {
            n.inval_attrs(ino);
        }
    }

    pub fn new_fh(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.insert(fh, h);
        fh
    }

    pub fn handle(&self, fh: u64) -> FsResult<Handle> {
        self.handles.get(&fh).map(|h| h.clone()).ok_or(FsError::Errno(Errno::EBADF))
    }

    /// Whether `fh` is a writer's handle (without cloning it: asked at every FLUSH and
    /// RELEASE).
    pub fn is_writer(&self, fh: u64) -> bool {
        self.handles.get(&fh).is_some_and(|h| matches!(*h, Handle::Write(_)))
    }

    /// The store's gate for changes (read-only store, crash-recovery lock).
    pub(super) fn writable(&self) -> FsResult<()> {
        Ok(self.store.check_change()?)
    }

    /// Submit `ops` to the committer one after the other, then answer `done` with what
    /// `then` makes of the last outcome; the first failure answers it instead. Nothing waits:
    /// each next step runs on the committer's thread once the one before is durable, so a
    /// step must never wait for the committer itself.
    pub(super) fn commit<T: Send + 'static>(
        self: &Arc<Self>,
        ops: Vec<Op>,
        then: impl FnOnce(&Arc<StoreFs>, Option<Outcome>) -> FsResult<T> + Send + 'static,
        done: Done<T>,
    ) {
        let mut ops = std::collections::VecDeque::from(ops);
        match ops.pop_front() {
            None => done(then(self, None)),
            Some(op) => {
                let this = self.clone();
                // Under -o commit=lazy a file renamed onto a message name (how rsync and
                // editors save) is a save like a close's; other changes stay durable.
                let lazy = self.store.lazy() && matches!(op, Op::Save(_));
                let submit = if lazy { Store::submit_lazy } else { Store::submit };
                submit(
                    &self.store,
                    op,
                    Box::new(move |r| match r {
                        Err(e) => done(Err(e.into())),
                        Ok(out) if ops.is_empty() => done(then(&this, Some(out))),
                        Ok(_) => this.commit(ops.into(), then, done),
                    }),
                );
            }
        }
    }

    pub fn resolve(&self, ino: u64) -> FsResult<InodeRef> {
        if let Some(r) = self.inodes.get(ino) {
            return Ok(r);
        }
        // An inode the kernel kept across a forget race, or a folder: ask the store.
        match self.store.index().entry(ino) {
            Some(Entry::Folder(id)) => Ok(InodeRef::Folder(id)),
            Some(Entry::Message(id)) => Ok(InodeRef::Message(id)),
            None => err(Errno::ENOENT),
        }
    }

    pub fn folder_of(&self, ino: u64) -> FsResult<Id> {
        match self.resolve(ino)? {
            InodeRef::Folder(id) => Ok(id),
            _ => err(Errno::ENOTDIR),
        }
    }

    /// The message an inode stands for, if any.
    pub(super) fn message_of(r: InodeRef) -> Option<Id> {
        match r {
            InodeRef::Version { id, .. } | InodeRef::Message(id) => Some(id),
            _ => None,
        }
    }

    pub(super) fn find(&self, ov: &Overlay, folder: Id, name: &str) -> Option<Found> {
        if let Some(o) = ov.names.get(&(folder, name.to_string())) {
            return Some(match o {
                Overlaid::Node(n) => Found::Node(*n),
                Overlaid::Shadow(s) => Found::Shadow(*s),
            });
        }
        if ov.hidden.contains_key(&(folder, name.to_string())) {
            return None;
        }
        match self.store.index().lookup(folder, name)? {
            Entry::Folder(f) => Some(Found::Folder(f)),
            Entry::Message(m) => Some(Found::Message(m)),
        }
    }

    pub(super) fn new_attrs(mode: u32, kind: u32, uid: u32, gid: u32) -> Attrs {
        Attrs { mode: kind | (mode & 0o7777), uid, gid, mtime: now_ns() }
    }

    /// Is the name in use, as this mount shows the folder? A stored name hidden by a shadow
    /// is free: an editor writes its new file there.
    pub(super) fn name_taken(&self, ov: &Overlay, folder: Id, name: &str) -> bool {
        let key = (folder, name.to_string());
        ov.names.contains_key(&key)
            || (self.store.index().lookup(folder, name).is_some() && !ov.hidden.contains_key(&key))
    }

    pub fn statfs(&self) -> FsResult<libc::statvfs> {
        let path = self.store.path().map(|p| p.to_path_buf()).unwrap_or_else(|| PathBuf::from("/"));
        let c =
            std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| FsError::Errno(Errno::EINVAL))?;
        // SAFETY: statvfs writes into the zeroed struct we pass; the path is a valid C string.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return io(Err(std::io::Error::last_os_error()), "statfs");
        }
        Ok(st)
    }
}

pub(super) fn apply_to_attrs(a: &mut Attrs, c: &AttrChange) {
    if let Some(m) = c.mode {
        a.mode = (a.mode & !0o7777) | (m & 0o7777);
    }
    a.uid = c.uid.unwrap_or(a.uid);
    a.gid = c.gid.unwrap_or(a.gid);
    a.mtime = c.mtime.unwrap_or(a.mtime);
}

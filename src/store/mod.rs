//! The message store engine: folders of messages with SaveChanges transactions, a
//! checksummed metadata log with group commit, immutable content objects and index
//! checkpoints. Knows nothing of FUSE, inodes or errno; see msgfs(5) for the format.

mod base;
#[cfg(test)]
mod base_tests;
mod base_write;
pub mod check;
mod checkpoint;
mod codec;
pub mod commit;
pub mod control;
pub mod error;
pub mod index;
pub mod inline;
#[cfg(test)]
mod inline_tests;
mod journal;
pub mod lazy;
#[cfg(test)]
mod lazy_tests;
mod log;
mod open;
mod overlay;
pub mod pin;
mod private;
mod record;
pub mod remote;
#[cfg(test)]
mod remote_tests;
#[cfg(test)]
pub mod simfs;
#[cfg(test)]
mod tests;
pub mod txn;
pub mod vfs;

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;

pub use commit::{AttrChange, Outcome, Source, XattrChange};
pub use error::{Error, Result};
pub use index::{flags, Attrs, Child, Entry, Folder, Id, Index, Message, ROOT};
pub use inline::INLINE_MAX;
pub use open::{format_of, store_id_of, FORMAT_OLDEST, FORMAT_VERSION};
pub use pin::PinnedVersion;
pub use private::Private;
pub use remote::{FolderRemote, MessageRemote, RemoteChange, RemoteCopy, Replacement, SyncedMessage, UploadIntent};
pub use txn::{SaveFlags, Transaction};
use vfs::{OpenMode, Vfs, VfsFile};

use commit::{Op, Pending, Save};

/// The folders of a new store.
pub const DEFAULT_FOLDERS: [&str; 4] = ["Inbox", "Drafts", "Sent Items", "Deleted Items"];

pub const OBJECTS_DIR: &str = "objects";
pub const STAGING_DIR: &str = "staging";
pub const FORMAT_FILE: &str = "format";
pub const LOCK_FILE: &str = "lock";
/// Present only while the store is closed cleanly.
pub const CLEAN_FILE: &str = "clean";

/// Where the content of version `version` of message `id` lives. Objects are spread over
/// 256 directories by the low byte of the id.
pub fn object_path(id: Id, version: u64) -> PathBuf {
    PathBuf::from(format!("{OBJECTS_DIR}/{:02x}/{id:016x}-{version:016x}", id & 0xff))
}

pub fn object_dir(id: Id) -> PathBuf {
    PathBuf::from(format!("{OBJECTS_DIR}/{:02x}", id & 0xff))
}

/// How to open a store.
#[derive(Clone, Debug)]
pub struct Options {
    /// Create the store if the directory holds none.
    pub create: bool,
    /// Open without changing anything (no lock taken, torn tail left, nothing removed).
    pub read_only: bool,
    /// Write a checkpoint once this many log bytes follow the last one.
    pub checkpoint_bytes: u64,
    /// How long a lazy commit (see [`Store::submit_lazy`]) may stay not durable: the log
    /// is synced this long after the first of them at the latest.
    pub lazy_delay: std::time::Duration,
    /// Saves at close commit lazily (`msgfs mount -o commit=lazy`): see [`Store::lazy`].
    pub lazy: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            create: false,
            read_only: false,
            checkpoint_bytes: 64 << 20,
            lazy_delay: std::time::Duration::from_millis(lazy::DEFAULT_DELAY_MS),
            lazy: false,
        }
    }
}

pub(crate) struct Queue {
    pub ops: VecDeque<Pending>,
    /// How many holders freeze the store (a snapshot session, a checkpoint); 0 = not frozen.
    pub frozen: u32,
    pub busy: bool,
    pub closing: bool,
    /// Unreferenced objects whose last reader left while the store was frozen (message id,
    /// version): removed by the committer once it runs again, or at close.
    pub reclaim: Vec<(Id, u64)>,
}

pub(crate) struct LogState {
    pub writer: Option<log::Writer>,
    pub next_seq: u64,
    pub bytes_since_checkpoint: u64,
    /// Of those, the bytes of inline content: a checkpoint is due by the metadata logged,
    /// not by the content (see `Shared::maybe_checkpoint`).
    pub content_since_checkpoint: u64,
    /// A deletion was logged with space from the reserve: the disk is full, and deleting
    /// content kept in the log frees nothing until its segment goes, so the committer
    /// checkpoints at once (see `Shared::maybe_checkpoint`).
    pub reserve_used: bool,
    /// The reserve is not whole (a deletion took from it, or the disk was full when it was
    /// last grown): each append tries to grow it back. While it is whole no append looks
    /// at it (that was an open and a stat per commit).
    pub reserve_short: bool,
    /// Frames written but not synced yet (lazy commits), since when: see `lazy.rs`.
    pub unsynced_since: Option<std::time::Instant>,
}

/// Counters for benchmarks and `msgfs status`.
#[derive(Default)]
pub struct Stats {
    pub frames: AtomicU64,
    pub records: AtomicU64,
    pub log_syncs: AtomicU64,
    pub checkpoints: AtomicU64,
    /// Inline versions logged again to empty a sparse segment (see `inline.rs`).
    pub relocated: AtomicU64,
}

/// What opening the store found and did.
#[derive(Clone, Debug, Default)]
pub struct OpenReport {
    pub was_clean: bool,
    pub replayed_records: u64,
    pub torn_tail_cut: Option<String>,
    pub removed_objects: u64,
    pub removed_staging: u64,
}

pub struct Shared {
    pub(crate) vfs: Arc<dyn Vfs>,
    // Private to the store: the rest of the crate reads it through `Store::index`.
    index: RwLock<Index>,
    pub(crate) queue: Mutex<Queue>,
    pub(crate) queue_cv: Condvar,
    pub(crate) poisoned: Mutex<Option<String>>,
    pub(crate) log: Mutex<LogState>,
    pub(crate) next_id: AtomicU64,
    next_staging: AtomicU64,
    pub store_id: [u8; 16],
    /// The format number the format file says (see `open::FORMAT_VERSION`); the committer
    /// raises it before it logs the first record an older format does not have.
    pub(crate) format: AtomicU32,
    pub path: Option<PathBuf>,
    pub read_only: bool,
    checkpoint_bytes: u64,
    lazy_delay: std::time::Duration,
    lazy: bool,
    /// Old versions replaced or deleted by lazy commits: their objects go once the log
    /// holding the commit is synced (until then a crash could bring them back).
    deferred_garbage: Mutex<Vec<(Id, u64)>>,
    lock_file: Mutex<Option<File>>,
    committer: Mutex<Option<JoinHandle<()>>>,
    pub stats: Stats,
    pub report: OpenReport,
    pub(crate) control: control::Control,
    /// Versions readers hold (see `pin.rs`).
    pub(crate) pins: Mutex<pin::Pins>,
    /// Read descriptors of the log segments that hold inline content, opened on first use
    /// and shared by every reader (see `inline.rs`).
    segs: Mutex<std::collections::HashMap<u64, Arc<dyn VfsFile>>>,
}

/// A handle on an open store; clones share it. Call [`Store::close`] to close it cleanly.
#[derive(Clone)]
pub struct Store(Arc<Shared>);

/// An operation on its way through the committer (see [`Store::start`]).
#[must_use = "an operation's answer must be waited for"]
pub struct Committing(std::sync::mpsc::Receiver<Result<Outcome>>);

impl Committing {
    /// Wait until the operation is durable or has failed.
    pub fn wait(self) -> Result<Outcome> {
        self.0.recv().unwrap_or_else(|_| Err(Error::io("store", std::io::Error::other("committer stopped"))))
    }
}

/// A message's content as of one version, stable while others save.
pub struct MessageView {
    pub id: Id,
    pub version: u64,
    pub size: u64,
    pub file: Arc<dyn VfsFile>,
}

impl Store {
    /// Open (or with `opts.create`, create) the store in directory `path`. Recovered drafts
    /// left by a crash-recovery lock are committed to "Recovered Drafts".
    pub fn open(path: &Path, opts: Options) -> Result<Store> {
        let st = open::open(path, opts.clone())?;
        if !opts.read_only {
            if let Err(e) = st.import_recovered() {
                ::log::warn!("committing recovered drafts: {e}");
            }
        }
        Ok(st)
    }

    /// Open over any storage backend (tests use a simulated one).
    pub fn open_vfs(vfs: Arc<dyn Vfs>, opts: Options) -> Result<Store> {
        open::open_vfs(vfs, None, opts, None)
    }

    // Every part is what open found; a struct for them would only be built here and torn apart.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        vfs: Arc<dyn Vfs>,
        index: Index,
        log: LogState,
        (store_id, format): ([u8; 16], u32),
        path: Option<PathBuf>,
        opts: &Options,
        lock_file: Option<File>,
        report: OpenReport,
    ) -> Store {
        let next_id = index.next_id;
        let sh = Arc::new(Shared {
            vfs,
            index: RwLock::new(index),
            queue: Mutex::new(Queue {
                ops: VecDeque::new(),
                frozen: 0,
                busy: false,
                closing: false,
                reclaim: Vec::new(),
            }),
            queue_cv: Condvar::new(),
            poisoned: Mutex::new(None),
            log: Mutex::new(log),
            next_id: AtomicU64::new(next_id),
            next_staging: AtomicU64::new(1),
            store_id,
            format: AtomicU32::new(format),
            path,
            read_only: opts.read_only,
            checkpoint_bytes: opts.checkpoint_bytes,
            lazy_delay: opts.lazy_delay,
            lazy: opts.lazy,
            deferred_garbage: Mutex::default(),
            lock_file: Mutex::new(lock_file),
            committer: Mutex::new(None),
            stats: Stats::default(),
            report,
            control: control::Control::default(),
            pins: Mutex::new(pin::Pins::default()),
            segs: Mutex::default(),
        });
        if !opts.read_only {
            let sh2 = sh.clone();
            let h = std::thread::Builder::new()
                .name("msgfs-commit".into())
                .spawn(move || commit::run(sh2))
                .expect("spawn committer thread");
            *sh.committer.lock().unwrap() = Some(h);
        }
        Store(sh)
    }

    pub fn shared(&self) -> &Shared {
        &self.0
    }

    /// The store's id as 32 hex digits.
    pub fn store_id_hex(&self) -> String {
        self.0.store_id.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A message's entry id as text: the store id, then the message id, in hex. It never
    /// changes over the message's life.
    pub fn entry_id_hex(&self, id: Id) -> String {
        format!("{}{id:016x}", self.store_id_hex())
    }

    pub fn report(&self) -> &OpenReport {
        &self.0.report
    }

    pub fn path(&self) -> Option<&Path> {
        self.0.path.as_deref()
    }

    /// The index, read-only: lookups, listings and attributes without reading content,
    /// through [`Index`]'s query methods. The guard holds off commits: keep it briefly.
    pub fn index(&self) -> RwLockReadGuard<'_, Index> {
        self.0.index.read().unwrap()
    }

    pub fn lookup(&self, folder: Id, name: &str) -> Result<Entry> {
        let ix = self.index();
        ix.folder(folder)?;
        ix.lookup(folder, name).ok_or(Error::NotFound)
    }

    /// Resolve a `/`-separated folder path from the root ("" is the root).
    pub fn folder_by_path(&self, path: &str) -> Result<Id> {
        let ix = self.index();
        let mut id = ROOT;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            match ix.lookup(id, part) {
                Some(Entry::Folder(f)) => id = f,
                Some(Entry::Message(_)) => return Err(Error::NotAFolder),
                None => return Err(Error::NotFound),
            }
        }
        Ok(id)
    }

    /// Open the current version of a message for reading.
    pub fn open_message(&self, id: Id) -> Result<MessageView> {
        self.check_access()?;
        // Opened under the index lock: the committer removes an old object only after
        // applying the record that replaces it, so the object cannot vanish between the
        // lookup and the open, and once open the descriptor keeps it readable.
        let ix = self.index();
        let m = ix.message(id)?;
        let file = self.0.content_file(&ix, id, m.version)?;
        Ok(MessageView { id, version: m.version, size: m.size, file })
    }

    /// The bytes of version `version` of message `id`, which must still be current.
    pub fn read_version(&self, id: Id, version: u64) -> Result<Vec<u8>> {
        let v = self.open_message(id)?;
        if v.version != version {
            return Err(Error::ObjectChanged);
        }
        v.file.read_all().map_err(|e| Error::io("read message", e))
    }

    /// The whole content of a message's current version.
    pub fn read_message(&self, id: Id) -> Result<Vec<u8>> {
        let v = self.open_message(id)?;
        v.file.read_all().map_err(|e| Error::io("read message", e))
    }

    /// A fresh id from the store's id space, e.g. for inode numbers of files that are not
    /// messages yet. Ids that end up in the log are never handed out again; one handed out
    /// and never committed may be, after the store is reopened.
    pub fn alloc_id(&self) -> Id {
        self.0.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh path under `staging/`, with a prefix saying what it is for.
    pub fn staging_path(&self, prefix: &str) -> PathBuf {
        let n = self.0.next_staging.fetch_add(1, Ordering::Relaxed);
        PathBuf::from(format!("{STAGING_DIR}/{prefix}-{n}"))
    }

    pub fn vfs(&self) -> &Arc<dyn Vfs> {
        &self.0.vfs
    }

    /// The gate every change passes: a read-only store refuses it (ReadOnly), and so does
    /// one under the crash-recovery lock (NoAccess).
    pub fn check_change(&self) -> Result<()> {
        if self.0.read_only {
            return Err(Error::ReadOnly);
        }
        self.check_access()
    }

    /// Queue an operation; `reply` is called from the committer once it is durable or has
    /// failed. Callers that can park a reply (the FUSE layer) use this directly.
    pub fn submit(&self, op: Op, reply: commit::Reply) {
        self.submit_with(op, reply, true)
    }

    fn submit_with(&self, op: Op, reply: commit::Reply, durable: bool) {
        if let Err(e) = self.check_change() {
            return reply(Err(e));
        }
        let mut q = self.0.queue.lock().unwrap();
        if q.closing {
            drop(q);
            return reply(Err(Error::io("store", std::io::Error::other("the store is closing"))));
        }
        q.ops.push_back(Pending { op, reply, durable });
        self.0.queue_cv.notify_all();
    }

    /// Queue an operation and wait for it.
    pub fn run(&self, op: Op) -> Result<Outcome> {
        self.start(op).wait()
    }

    /// Queue an operation and return at once; [`Committing::wait`] gives its answer. A
    /// caller can prepare its next operation while the committer makes this one durable.
    pub fn start(&self, op: Op) -> Committing {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.submit(op, Box::new(move |r| drop(tx.send(r))));
        Committing(rx)
    }

    pub fn create_folder(&self, parent: Id, name: &str, attrs: Attrs) -> Result<Id> {
        index::check_name(name)?;
        let id = self.alloc_id();
        self.run(Op::FolderCreate { id, parent, name: name.to_string(), attrs }).map(|o| o.id)
    }

    pub fn move_folder(&self, id: Id, parent: Id, name: &str) -> Result<()> {
        self.run(Op::FolderMove { id, parent, name: name.to_string() }).map(drop)
    }

    pub fn delete_folder(&self, id: Id) -> Result<()> {
        self.run(Op::FolderDelete { id }).map(drop)
    }

    pub fn set_folder_attrs(&self, id: Id, change: AttrChange) -> Result<()> {
        self.run(Op::FolderAttrs { id, change }).map(drop)
    }

    pub fn move_message(&self, id: Id, folder: Id, name: &str) -> Result<()> {
        self.run(Op::MessageMove { id, folder, name: name.to_string() }).map(drop)
    }

    pub fn delete_message(&self, id: Id) -> Result<()> {
        self.run(Op::MessageDelete { id }).map(drop)
    }

    pub fn set_message_attrs(&self, id: Id, change: AttrChange) -> Result<()> {
        self.run(Op::MessageMeta { id, change }).map(drop)
    }

    /// [`Store::set_message_attrs`] for many messages at once: all are queued before any
    /// is waited for, so the committer groups them into few frames (one sync each) instead
    /// of one per message. One result per change, in order.
    pub fn set_message_attrs_many(&self, changes: Vec<(Id, AttrChange)>) -> Vec<Result<()>> {
        let rxs: Vec<_> = changes
            .into_iter()
            .map(|(id, change)| {
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                self.submit(Op::MessageMeta { id, change }, Box::new(move |r| drop(tx.send(r))));
                rx
            })
            .collect();
        rxs.into_iter()
            .map(|rx| {
                rx.recv()
                    .unwrap_or_else(|_| Err(Error::io("store", std::io::Error::other("committer stopped"))))
                    .map(drop)
            })
            .collect()
    }

    /// Set the mtime and ctime of folders to the commit time, durably: for changes to their
    /// entries that the store does not hold (see `Op::FolderTouch`).
    pub fn touch_folders(&self, ids: &[Id]) -> Result<()> {
        self.run(Op::FolderTouch { ids: ids.to_vec() }).map(drop)
    }

    /// Make message `src` the new version of message `dst` (a rename of one message over
    /// another): `dst` keeps its entry id, folder and name; `src` is gone. One frame.
    pub fn rename_over(&self, src: Id, dst: Id) -> Result<Outcome> {
        self.run(self.rename_over_op(src, dst)?.0)
    }

    /// The operation of [`Store::rename_over`], to submit, and the version of `src` it moves
    /// (read with the rest, so it is the one the operation names).
    pub fn rename_over_op(&self, src: Id, dst: Id) -> Result<(Op, u64)> {
        let (m, xattrs) = {
            let ix = self.index();
            let m = ix.message(src)?.into_owned();
            let x = m.xattrs.as_deref().cloned().unwrap_or_default();
            (m, x)
        };
        let moved = m.version;
        // Content kept in the log has no object to link: its bytes are logged again.
        let inline = self.index().inline_at(src, m.version).is_some();
        let source = if inline {
            Source::InlineOf(src, m.version, inline::Bytes(self.read_version(src, m.version)?.into()))
        } else {
            Source::Object(src, m.version)
        };
        Ok((
            Op::Save(Box::new(Save {
                id: dst,
                new_in: None,
                base_version: None,
                force: true,
                source,
                size: m.size,
                crc: m.crc,
                attrs: Some(m.attrs),
                flags: Some(m.flags),
                xattrs: Some(xattrs),
                change: AttrChange::default(),
                delete_source: Some(src),
                remote: None,
                keywords: None,
            })),
            moved,
        ))
    }

    /// Hold every mutation (they queue, nothing fails) until [`Store::thaw`]. Returns once
    /// the group being committed, if any, and every lazy commit are durable: the directory
    /// is then consistent.
    pub fn freeze(&self) {
        let mut q = self.0.queue.lock().unwrap();
        q.frozen += 1;
        while q.busy {
            q = self.0.queue_cv.wait(q).unwrap();
        }
        drop(q);
        // A backup taken now holds lazy commits answered so far: durable first.
        self.0.sync_lazy();
    }

    pub fn thaw(&self) {
        let mut q = self.0.queue.lock().unwrap();
        q.frozen = q.frozen.saturating_sub(1);
        self.0.queue_cv.notify_all();
    }

    pub fn is_frozen(&self) -> bool {
        self.0.queue.lock().unwrap().frozen > 0
    }

    /// Make everything durable and wait for queued operations (used before a lock or an
    /// unmount): lazy commits acknowledged so far are synced too.
    pub fn flush(&self) {
        let mut q = self.0.queue.lock().unwrap();
        while (q.busy || !q.ops.is_empty()) && q.frozen == 0 {
            q = self.0.queue_cv.wait(q).unwrap();
        }
        drop(q);
        self.0.sync_lazy();
    }

    /// Close cleanly: finish queued operations, write a checkpoint, mark the store clean and
    /// release its lock. Clones of this handle become unusable.
    pub fn close(&self) -> Result<()> {
        {
            let mut q = self.0.queue.lock().unwrap();
            q.closing = true;
            q.frozen = 0;
            self.0.queue_cv.notify_all();
        }
        if let Some(h) = self.0.committer.lock().unwrap().take() {
            let _ = h.join();
        }
        if self.0.read_only {
            return Ok(());
        }
        // Nothing reads after close: objects kept for readers go now, so a clean store
        // holds no unreferenced object.
        self.0.reclaim_deferred();
        self.0.reclaim_pinned();
        if self.0.poisoned.lock().unwrap().is_some() {
            return Err(Error::io("close", std::io::Error::other("the store had a failed sync; it is left unclean")));
        }
        if self.0.log.lock().unwrap().bytes_since_checkpoint > 0 {
            if let Err(e) = self.0.checkpoint() {
                // On a full disk the checkpoint may use the reserve: it removes the log it
                // covers, so the space comes back, and the store closes cleanly.
                if !matches!(&e, Error::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
                    || !log::release_reserve(&*self.0.vfs, log::RESERVE_BYTES)
                {
                    return Err(e);
                }
                ::log::warn!("the disk is full: released the store's reserve to write the checkpoint");
                self.0.checkpoint()?;
                let _ = log::ensure_reserve(&*self.0.vfs);
            }
        }
        if let Some(w) = self.0.log.lock().unwrap().writer.take() {
            w.retire();
        }
        let vfs = &self.0.vfs;
        let f = vfs.open(Path::new(CLEAN_FILE), OpenMode::CreateTruncate).map_err(|e| Error::io("mark clean", e))?;
        f.sync().map_err(|e| Error::io("mark clean", e))?;
        vfs.sync_dir(Path::new("")).map_err(|e| Error::io("mark clean", e))?;
        self.0.lock_file.lock().unwrap().take();
        Ok(())
    }

    /// Write a checkpoint now (the benchmark and tests use it).
    pub fn checkpoint(&self) -> Result<()> {
        self.freeze();
        let r = self.0.checkpoint();
        self.thaw();
        r
    }
}

/// Content made ready to commit by [`Store::stage_content`]: small content is held to be
/// logged inline (see `inline.rs`), larger content written (unsynced) under `staging/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Staged {
    File(PathBuf),
    Inline(inline::Bytes),
}

impl Staged {
    /// What a save commits from.
    fn source(self) -> Source {
        match self {
            Staged::File(p) => Source::StagedUnsynced(p),
            Staged::Inline(b) => Source::Inline(b),
        }
    }

    /// Throw away what was staged (a commit that failed).
    fn discard(&self, vfs: &dyn Vfs) {
        if let Staged::File(p) = self {
            let _ = vfs.remove_file(p);
        }
    }
}

/// A message to import: its content staged by [`Store::stage_content`].
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub folder: Id,
    pub name: String,
    pub staged: Staged,
    pub size: u64,
    pub crc: u32,
    pub attrs: Attrs,
    pub flags: u8,
}

impl Store {
    /// Make `content` ready to commit, and give its checksum: up to
    /// [`inline::INLINE_MAX`] bytes are kept to go into the log frame; more are written to
    /// a new file under `staging/` without a sync. Imports stage many, then commit them
    /// with one log sync (and one syncfs when some are files).
    pub fn stage_content(&self, content: &[u8]) -> Result<(Staged, u32)> {
        let crc = crc32c::crc32c(content);
        if content.len() <= inline::INLINE_MAX {
            return Ok((Staged::Inline(inline::Bytes(content.into())), crc));
        }
        let path = self.staging_path("i");
        let f = self.0.vfs.open(&path, OpenMode::CreateNew).map_err(|e| Error::io("create a staging file", e))?;
        if let Err(e) = f.write_all_at(content, 0) {
            drop(f);
            let _ = self.0.vfs.remove_file(&path);
            return Err(Error::io("write a staging file", e));
        }
        Ok((Staged::File(path), crc))
    }

    /// Commit many new messages in one frame (all or none). Names must be free and
    /// distinct. Returns their entry ids, in order. On failure the staged files are removed.
    pub fn import_messages(&self, msgs: Vec<NewMessage>) -> Result<Vec<Id>> {
        self.import_new(msgs.into_iter().map(|m| (m, None, None)).collect())
    }

    /// [`Store::import_messages`] with, for each message, the remote link and keywords
    /// committed in the same frame (a download's).
    pub(crate) fn import_new(
        &self,
        msgs: Vec<(NewMessage, Option<RemoteCopy>, Option<Vec<String>>)>,
    ) -> Result<Vec<Id>> {
        let ids: Vec<Id> = msgs.iter().map(|_| self.alloc_id()).collect();
        let staged: Vec<Staged> = msgs.iter().map(|(m, _, _)| m.staged.clone()).collect();
        let items = msgs
            .into_iter()
            .zip(&ids)
            .map(|((m, remote, keywords), id)| Save {
                id: *id,
                new_in: Some((m.folder, m.name)),
                base_version: None,
                force: false,
                source: m.staged.source(),
                size: m.size,
                crc: m.crc,
                attrs: Some(m.attrs),
                flags: Some(m.flags),
                xattrs: None,
                change: AttrChange::default(),
                delete_source: None,
                remote,
                keywords,
            })
            .collect();
        BatchCommit { store: self.clone(), staged, committing: self.start(Op::Import(items)) }.wait().map(|()| ids)
    }
}

/// A batch of staged messages on its way through the committer (an import, or a sync's
/// replacements, see [`Store::start_replace_synced_batch`]).
pub struct BatchCommit {
    store: Store,
    staged: Vec<Staged>,
    committing: Committing,
}

impl BatchCommit {
    /// Wait until the batch is durable; on failure its staged files are removed.
    pub fn wait(self) -> Result<()> {
        let r = self.committing.wait();
        if r.is_err() {
            for s in &self.staged {
                s.discard(&*self.store.0.vfs);
            }
        }
        r.map(drop)
    }
}

/// The default store: `$XDG_DATA_HOME/msgfs/default`, or `~/.local/share/msgfs/default`.
pub fn default_store_path() -> PathBuf {
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
            home.join(".local/share")
        }
    };
    base.join("msgfs/default")
}

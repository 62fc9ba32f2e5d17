//! Handles and saves: create and open (a reader pins a version, a writer begins a
//! transaction), read and write, and SaveChanges at fsync and close, with the conflict copy
//! and recovered-draft rules that keep what a failed save held.

use std::sync::Arc;

use fuser::Errno;

use super::errno::{err, FsError, FsResult};
use super::store_fs::*;
use crate::store::commit::now_ns;

use super::inodes::InodeRef;
use super::overlay::{Node, NodeKind};
use crate::store::txn::PreparedSave;
use crate::store::{PinnedVersion, Private, Store, Transaction};

/// A writer: one descriptor opened for writing, one transaction.
pub struct Writer {
    /// The inode the kernel opened.
    pub ino: u64,
    /// The message id, or the node inode of a new message not saved yet.
    pub key: Id,
    pub tx: Transaction,
    pub pid: u32,
    pub append: bool,
    /// When it last wrote (what the writer sees as its mtime).
    pub last_write: i64,
    /// Folder and name of the message when it was opened (for a conflict copy of a message
    /// deleted meanwhile).
    pub home: (Id, String),
    /// Whether anything was written through it (truncation alone does not count).
    pub wrote: bool,
    /// The file's attributes when opened: what the writer still sees once it is deleted.
    pub attrs: Attrs,
    /// Its unsaved content was kept as a recovered draft: nothing is left to save at close.
    pub kept: bool,
    /// Saves of this writer asked for while one was in flight, run after it.
    pub after_save: Vec<Box<dyn FnOnce() + Send>>,
    /// Conflict copies made for this writer so far (for `NAME (conflict N).eml`).
    pub conflicts: u32,
    /// Who changed it, for the save at a close: see [`ChangedBy`].
    pub changed_by: ChangedBy,
}

/// The descriptor tables (the kernel's lock owners) that changed a writer through its
/// handle. A close saves unless the writer was changed only through other tables: a child
/// that inherited the descriptor and closes it without writing (every fork+exec closes its
/// O_CLOEXEC copy) does not save the parent's unfinished changes. Were it to, the child's
/// exec would wait for a thaw during a freeze, and the parent's changes would stop being
/// private before the parent saved them.
#[derive(Debug, Default, Clone, PartialEq)]
pub enum ChangedBy {
    /// Nothing yet beyond the open itself (creation, O_TRUNC): any close saves, so a file
    /// only created or truncated is saved by the close that ends its creator's use.
    #[default]
    Nobody,
    /// Only writes that named their lock owner.
    Owners(Vec<u64>),
    /// A change whose owner the kernel does not say (a shared mapping's writeback, an
    /// ftruncate, fchmod or futimens): any close saves.
    Unknown,
}

impl ChangedBy {
    pub fn note(&mut self, owner: Option<u64>) {
        match (owner, &mut *self) {
            (_, ChangedBy::Unknown) => {}
            (None, _) => *self = ChangedBy::Unknown,
            (Some(o), ChangedBy::Nobody) => *self = ChangedBy::Owners(vec![o]),
            (Some(o), ChangedBy::Owners(v)) => {
                if !v.contains(&o) {
                    v.push(o);
                }
            }
        }
    }

    /// Whether a close through `owner`'s descriptor table saves.
    pub fn close_saves(&self, owner: u64) -> bool {
        match self {
            ChangedBy::Owners(v) => v.contains(&owner),
            ChangedBy::Nobody | ChangedBy::Unknown => true,
        }
    }
}

impl Writer {
    pub fn new(
        ino: u64,
        key: Id,
        tx: Transaction,
        pid: u32,
        open_flags: i32,
        home: (Id, String),
        attrs: Attrs,
    ) -> Writer {
        Writer {
            attrs,
            ino,
            key,
            tx,
            pid,
            append: open_flags & libc::O_APPEND != 0,
            last_write: crate::store::commit::now_ns(),
            home,
            wrote: false,
            conflicts: 0,
            changed_by: ChangedBy::Nobody,
            kept: false,
            after_save: Vec::new(),
        }
    }
}

/// A folder listing's entry; its key is the inode it named when listed.
pub type DirEnt = super::view::DirEnt<InodeRef>;

/// Where a save goes after its locked part.
enum SaveStep {
    Answer(FsResult<()>),
    Failed(Error),
    Submit(Op, Saved),
}

/// What `saved` needs to know of a save it did not see prepared.
struct Saved {
    was_key: Id,
    loc: Option<(Id, String)>,
    unhide: Option<(Id, String)>,
}

pub enum Handle {
    /// Reading one version, pinned at open; its object is opened at the first READ, which
    /// with a warm page cache never comes.
    Read(Arc<PinnedVersion>),
    /// Reading a file with no saved content yet.
    Empty,
    Write(Arc<Mutex<Writer>>),
    Scratch {
        ino: u64,
        file: Arc<Private>,
    },
    Dir(Arc<Vec<DirEnt>>),
}

impl Clone for Handle {
    fn clone(&self) -> Handle {
        match self {
            Handle::Read(v) => Handle::Read(v.clone()),
            Handle::Empty => Handle::Empty,
            Handle::Write(w) => Handle::Write(w.clone()),
            Handle::Scratch { ino, file } => Handle::Scratch { ino: *ino, file: file.clone() },
            Handle::Dir(d) => Handle::Dir(d.clone()),
        }
    }
}

impl StoreFs {
    /// Create a file: a scratch file, or a new message that exists in the store from its
    /// first save on. The arguments are those of the FUSE request.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
        uid: u32,
        gid: u32,
        pid: u32,
        flags: i32,
    ) -> FsResult<(Attr, u64, bool)> {
        self.writable()?;
        let folder = self.folder_of(parent)?;
        crate::store::index::check_name(name)?;
        let mut ov = self.overlay();
        if self.name_taken(&ov, folder, name) {
            return err(Errno::EEXIST);
        }
        let ino = self.store.alloc_id();
        let attrs = Self::new_attrs(mode, libc::S_IFREG, uid, gid);
        if is_scratch(name) {
            let file = Arc::new(Private::new(self.store.vfs().clone(), self.store.staging_path(&format!("s{ino}"))));
            ov.add_node(ino, Node::new(folder, name, NodeKind::Scratch { file: file.clone() }, attrs));
            drop(ov);
            self.inodes.remember(ino, InodeRef::Node(ino));
            let fh = self.new_fh(Handle::Scratch { ino, file });
            return Ok((Attr { ino, size: 0, attrs, ctime: attrs.mtime, dir: false, nlink: 1 }, fh, false));
        }
        let tx = self.store.begin_new_with_id(ino, folder, name)?;
        ov.add_node(ino, Node::new(folder, name, NodeKind::NewMessage, attrs));
        let w = Writer::new(ino, ino, tx, pid, flags, (folder, name.to_string()), attrs);
        let fh = self.new_fh(Handle::Write(Arc::new(Mutex::new(w))));
        ov.writers.entry(ino).or_default().push((fh, pid));
        drop(ov);
        self.inodes.remember(ino, InodeRef::Node(ino));
        Ok((Attr { ino, size: 0, attrs, ctime: attrs.mtime, dir: false, nlink: 1 }, fh, true))
    }

    /// Open a file. Returns the handle, whether it must bypass the page cache (writers, and
    /// an inode that no longer is the current version), and whether it is a reader (which
    /// has nothing to save at close).
    pub fn open(&self, ino: u64, flags: i32, pid: u32) -> FsResult<(u64, bool, bool)> {
        let r = self.resolve(ino)?;
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if write {
            self.writable()?;
        }
        match r {
            InodeRef::Folder(_) => err(Errno::EISDIR),
            InodeRef::Node(n) => {
                let mut ov = self.overlay();
                let node = ov.nodes.get_mut(&n).ok_or(FsError::Errno(Errno::ENOENT))?;
                match &node.kind {
                    NodeKind::Scratch { file } => {
                        let file = file.clone();
                        if flags & libc::O_TRUNC != 0 && write {
                            io(file.set_len(0), "truncate a scratch file")?;
                            node.size = 0;
                        }
                        node.open += 1;
                        drop(ov);
                        Ok((self.new_fh(Handle::Scratch { ino: n, file }), true, false))
                    }
                    NodeKind::NewMessage if !write => {
                        node.open += 1;
                        drop(ov);
                        Ok((self.new_fh(Handle::Empty), true, true))
                    }
                    NodeKind::NewMessage => {
                        let tx = self.store.begin_new_with_id(n, node.folder, &node.name.clone())?;
                        node.open += 1;
                        let w = Writer::new(ino, n, tx, pid, flags, (node.folder, node.name.clone()), node.attrs);
                        let fh = self.new_fh(Handle::Write(Arc::new(Mutex::new(w))));
                        ov.writers.entry(n).or_default().push((fh, pid));
                        Ok((fh, true, false))
                    }
                }
            }
            InodeRef::Version { id, .. } | InodeRef::Message(id) => {
                self.check_readable(id)?;
                if !write {
                    // No file is opened here (this is the hot path of reading many
                    // messages): the pin keeps the version's object, and the first READ
                    // opens it.
                    let pin = self.store.pin_message(id)?;
                    // Cached reads only through the inode of exactly this version.
                    let direct = !matches!(r, InodeRef::Version { version, .. } if version == pin.version);
                    return Ok((self.new_fh(Handle::Read(Arc::new(pin))), direct, true));
                }
                let mut tx = self.store.begin(id)?;
                if flags & libc::O_TRUNC != 0 {
                    tx.set_len(0)?;
                }
                let (home, attrs) = {
                    let ix = self.store.index();
                    let m = ix.message(id)?;
                    ((m.folder(), m.name().to_string()), m.attrs())
                };
                let w = Writer::new(ino, id, tx, pid, flags, home, attrs);
                let fh = self.new_fh(Handle::Write(Arc::new(Mutex::new(w))));
                self.overlay().writers.entry(id).or_default().push((fh, pid));
                // Cached attributes of this inode were the saved ones; the writer sees its own.
                self.inval_attrs(ino);
                Ok((fh, true, false))
            }
        }
    }

    /// A header-only message (its body still on the server) is not the message: reading it
    /// would give a wrong file and saving over it would lose the body.
    pub(super) fn check_readable(&self, id: Id) -> FsResult<()> {
        let ix = self.store.index();
        if ix.message(id)?.flags() & crate::store::flags::HEADER_ONLY != 0 {
            let (folder, name) = ix.location_of(id).unwrap_or((ROOT, "?"));
            log::warn!(
                "{}/{name}: only its header has been downloaded; run `msgfs sync` to fetch the body",
                ix.folder_path(folder)
            );
            return err(Errno::EIO);
        }
        Ok(())
    }

    /// Up to `size` bytes of a pinned version at `off` (fewer only at its end).
    pub(super) fn read_pinned(v: &PinnedVersion, off: u64, size: u32) -> FsResult<Vec<u8>> {
        if off >= v.size {
            return Ok(Vec::new());
        }
        let want = (size as u64).min(v.size - off) as usize;
        let mut buf = vec![0u8; want];
        let mut got = 0;
        while got < want {
            let n = io(v.file()?.read_at(&mut buf[got..], off + got as u64), "read")?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        Ok(buf)
    }

    /// The first READ of message `id` reached the daemon (its bytes were not cached): the
    /// next messages of its folder may be worth reading ahead (see `prefetch.rs`).
    pub(super) fn first_read(&self, id: Id) {
        let folder = self.store.index().location_of(id).map(|(f, _)| f);
        if let Some(folder) = folder {
            self.prefetch.first_read(&self.store, id, folder);
        }
    }

    pub fn read(&self, fh: u64, off: u64, size: u32) -> FsResult<Vec<u8>> {
        let mut buf = vec![0u8; size as usize];
        let n = match self.handle(fh)? {
            Handle::Read(v) => {
                if off == 0 {
                    self.first_read(v.id);
                }
                return Self::read_pinned(&v, off, size);
            }
            Handle::Empty => 0,
            Handle::Write(w) => w.lock().unwrap().tx.read_at(&mut buf, off)?,
            Handle::Scratch { file, .. } => io(file.read_at(&mut buf, off), "read a scratch file")?,
            Handle::Dir(_) => return err(Errno::EISDIR),
        };
        buf.truncate(n);
        Ok(buf)
    }

    /// Write through a handle. `kill_suid`: the writer lacks CAP_FSETID (the kernel's
    /// FUSE_WRITE_KILL_SUIDGID), so the set-user-ID bit, and the set-group-ID bit of a
    /// group-executable file, are cleared, as a local filesystem does.
    /// `owner`: the writing process's lock owner, when the kernel names it.
    pub fn write(&self, fh: u64, off: u64, data: &[u8], kill_suid: bool, owner: Option<u64>) -> FsResult<u32> {
        match self.handle(fh)? {
            Handle::Write(w) => {
                let mut w = w.lock().unwrap();
                if kill_suid {
                    self.kill_suid(&mut w)?;
                }
                let off = if w.append { w.tx.size() } else { off };
                w.tx.write_at(data, off).map_err(|e| match e {
                    Error::NotPermitted => FsError::Errno(Errno::EBADF),
                    e => FsError::Store(e),
                })?;
                w.last_write = now_ns();
                w.wrote = true;
                w.changed_by.note(owner);
                // Written after its content went to a draft: this is new content to save.
                w.kept = false;
                if w.tx.new_in().is_some() {
                    let size = w.tx.size();
                    if let Some(n) = self.overlay().nodes.get_mut(&w.key) {
                        n.size = size;
                    }
                }
                Ok(data.len() as u32)
            }
            Handle::Scratch { ino, file } => {
                io(file.write_all_at(data, off), "write a scratch file")?;
                let mut ov = self.overlay();
                if let Some(n) = ov.nodes.get_mut(&ino) {
                    n.size = n.size.max(off + data.len() as u64);
                    n.attrs.mtime = now_ns();
                }
                Ok(data.len() as u32)
            }
            _ => err(Errno::EBADF),
        }
    }

    fn kill_suid(&self, w: &mut Writer) -> FsResult<()> {
        let drop_bits = |mode: u32| {
            let mut m = mode & !libc::S_ISUID;
            if mode & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID | libc::S_IXGRP {
                m &= !libc::S_ISGID;
            }
            m
        };
        if w.tx.new_in().is_some() {
            // A new message takes its node's attributes at its first save.
            if let Some(n) = self.overlay().nodes.get_mut(&w.key) {
                n.attrs.mode = (n.attrs.mode & libc::S_IFMT) | drop_bits(n.attrs.mode & 0o7777);
            }
            return Ok(());
        }
        let stored = self.store.index().message(w.key)?.attrs().mode;
        let mode = w.tx.pending_change().mode.unwrap_or(stored) & 0o7777;
        if drop_bits(mode) != mode {
            w.tx.change_attrs(AttrChange { mode: Some(drop_bits(mode)), ..Default::default() });
        }
        Ok(())
    }

    /// The save of `close`: every close of a descriptor (dups included) saves what changed,
    /// keeping the transaction open for the other copies of the descriptor. A file only
    /// created or truncated is saved too: the kernel's RELEASE comes after close() has
    /// returned, so anything left for it would be applied after operations the caller made
    /// next (an `rm` brought the file back, a `chmod` was lost). A shell's redirection into a
    /// new file therefore makes an empty first version, as a local disk shows the file empty
    /// once it is created.
    ///
    /// `owner`: the closing descriptor table; a close through one that changed nothing, of a
    /// writer others changed, saves nothing (see [`ChangedBy`]). `None`: the last close.
    pub fn flush(self: &Arc<Self>, fh: u64, owner: Option<u64>, done: Done<()>) {
        if let (Some(o), Ok(Handle::Write(w))) = (owner, self.handle(fh)) {
            if !w.lock().unwrap().changed_by.close_saves(o) {
                return done(Ok(()));
            }
        }
        self.save(fh, SaveFlags(SaveFlags::KEEP_OPEN_READWRITE), true, done)
    }

    /// SaveChanges on a writer. `on_close`: a failed save keeps the content as a conflict
    /// copy beside the original (nothing is lost) and still reports the failure. Nothing
    /// waits: the save is submitted and `done` answered once it is durable. A second save of
    /// the same writer while one is in flight goes after it (its base is that save's result).
    pub fn save(self: &Arc<Self>, fh: u64, flags: SaveFlags, on_close: bool, done: Done<()>) {
        let w_arc = match or_answer!(done, self.handle(fh)) {
            Handle::Write(w) => w,
            Handle::Scratch { file, .. } if !on_close => return done(io(file.sync(), "sync a scratch file")),
            _ if on_close => return done(Ok(())),
            _ => return done(err(Errno::EBADF)),
        };
        let flags = or_answer!(done, flags.validate());
        // `done` may lead straight into another request on this writer (RELEASE's answer
        // releases it): it is never called with the writer locked.
        let mut w = w_arc.lock().unwrap();
        if w.tx.is_saving() {
            let this = self.clone();
            w.after_save.push(Box::new(move || this.save(fh, flags, on_close, done)));
            return;
        }
        let step = self.begin_save(&mut w, flags, on_close);
        drop(w);
        match step {
            Err(e) => done(Err(e)),
            // An fsync with nothing new to save still waits for an earlier lazy close's
            // log sync: fsync means durable in either commit mode.
            Ok(SaveStep::Answer(Ok(()))) if !on_close => self.sync_lazy(done),
            Ok(SaveStep::Answer(r)) => done(r),
            Ok(SaveStep::Failed(e)) => self.save_failed(w_arc, e, on_close, done),
            Ok(SaveStep::Submit(op, saved)) => {
                let this = self.clone();
                // A close under -o commit=lazy is answered once its save is logged and
                // visible; fsync and the SaveChanges ioctl wait for durability.
                let submit = if on_close && self.store.lazy() { Store::submit_lazy } else { Store::submit };
                submit(
                    &self.store,
                    op,
                    Box::new(move |r| {
                        let mut w = w_arc.lock().unwrap();
                        let r = w.tx.finish_save(flags, r);
                        let next = std::mem::take(&mut w.after_save);
                        let r = r.map(|out| this.saved(&mut w, out, saved));
                        drop(w);
                        match r {
                            Ok(r) => done(r),
                            Err(e) => this.save_failed(w_arc, e, on_close, done),
                        }
                        for save in next {
                            save();
                        }
                    }),
                );
            }
        }
    }

    /// Answer `done` once every commit so far is durable: at once, unless lazy commits
    /// (`-o commit=lazy`) wait for their log sync.
    pub fn sync_lazy(&self, done: Done<()>) {
        if !self.store.lazy_pending() {
            return done(Ok(()));
        }
        self.store.submit(crate::store::commit::Op::Barrier, Box::new(move |r| done(r.map(drop).map_err(Into::into))));
    }

    /// The part of a save done with the writer locked: the checks, the crash-recovery lock's
    /// rule, the new message's place and attributes, and the handing over of its copy.
    fn begin_save(&self, w: &mut Writer, flags: SaveFlags, on_close: bool) -> FsResult<SaveStep> {
        if self.store.crash_lock().is_some() {
            // Under the crash-recovery lock nothing is committed: a closing writer's changes
            // are kept as a recovered draft (committed to "Recovered Drafts" once the lock is
            // lifted, or at the next open), and the close reports the lock.
            if on_close && (w.tx.is_dirty() || w.wrote) {
                self.keep_draft(w)?;
            }
            return Err(Error::NoAccess.into());
        }
        if on_close && (w.kept || (!w.tx.is_dirty() && !w.tx.has_pending_change())) {
            return Ok(SaveStep::Answer(Ok(())));
        }
        if w.tx.state() != crate::store::txn::TxState::Open {
            return Ok(SaveStep::Answer(if on_close { Ok(()) } else { err(Errno::EBADF) }));
        }
        self.writable()?;
        // A new message goes where its node is now (it may have been renamed), and becomes
        // the new version of a message hidden under that name (an editor's backup step).
        let mut unhide: Option<(Id, String)> = None;
        let mut loc = None;
        if w.tx.new_in().is_some() {
            let ov = self.overlay();
            let node = ov.nodes.get(&w.key).ok_or(FsError::Errno(Errno::ENOENT))?;
            if node.unlinked {
                return Ok(SaveStep::Answer(if on_close { Ok(()) } else { err(Errno::ENOENT) }));
            }
            let (folder, name) = (node.folder, node.name.clone());
            let c = AttrChange {
                mode: Some(node.attrs.mode),
                uid: Some(node.attrs.uid),
                gid: Some(node.attrs.gid),
                mtime: node.mtime_set.then_some(node.attrs.mtime),
                flags: None,
                keywords: None,
                xattrs: node
                    .xattrs
                    .iter()
                    .map(|(k, v)| crate::store::XattrChange::Set {
                        name: k.to_string(),
                        value: v.to_vec(),
                        create: false,
                        replace: false,
                    })
                    .collect(),
            };
            let hidden = ov.hidden.get(&(folder, name.clone())).copied();
            drop(ov);
            w.tx.change_attrs(c);
            w.tx.set_new_location(folder, &name)?;
            if let Some(msg) = hidden {
                w.tx.retarget(msg);
                unhide = Some((folder, name.clone()));
            }
            loc = Some((folder, name));
        }
        let saved = Saved { was_key: w.key, loc, unhide };
        Ok(match w.tx.prepare_save(flags) {
            Err(e) => SaveStep::Failed(e),
            Ok(PreparedSave::Done(out)) => SaveStep::Answer(self.saved(w, out, saved)),
            Ok(PreparedSave::Submit(op)) => SaveStep::Submit(op, saved),
        })
    }

    /// After a writer's save is durable: a new message leaves the overlay for the store, and
    /// its name leads to the new version's inode.
    fn saved(&self, w: &mut Writer, out: Outcome, s: Saved) -> FsResult<()> {
        let mut ov = self.overlay();
        if let Some((folder, name)) = &s.loc {
            // The node is a message now: the store shows it under its name.
            ov.names.remove(&(*folder, name.clone()));
            if let Some(n) = ov.nodes.remove(&s.was_key) {
                ov.nodes.insert(s.was_key, Node { unlinked: true, ..n });
            }
            if let Some(key) = &s.unhide {
                ov.unhide(key, out.id);
            }
            if let Some(ws) = ov.writers.remove(&s.was_key) {
                ov.writers.entry(out.id).or_default().extend(ws);
            }
            w.key = out.id;
            self.inodes.retarget(w.ino, InodeRef::Message(out.id));
        }
        let is_new = s.loc.is_some();
        let (folder, name) = match s.loc {
            Some(l) => l,
            None => match self.store.index().location_of(out.id) {
                Some((folder, name)) => (folder, name.to_string()),
                None => return Ok(()),
            },
        };
        drop(ov);
        if is_new {
            // The folder gained an entry at this commit: its cached times are old.
            self.inval_attrs(folder);
        }
        // The name now leads to the new version's inode.
        self.expire_entry(folder, &name);
        self.inval_attrs(w.ino);
        Ok(())
    }

    /// A save that failed. At close nothing may be lost: a conflict (another save won, or
    /// the message was deleted) keeps the content as a conflict copy beside the original;
    /// any other failure (a full disk, an I/O error) keeps the private copy as a recovered
    /// draft (a rename, which needs no space), committed to "Recovered Drafts" at the next
    /// open. The failure is reported either way.
    fn save_failed(self: &Arc<Self>, w: Arc<Mutex<Writer>>, e: Error, on_close: bool, done: Done<()>) {
        match e {
            Error::ObjectChanged | Error::ObjectDeleted | Error::NotFound if on_close => {
                self.keep_conflict_copy(w, e, done)
            }
            e if on_close => {
                if let Err(k) = self.keep_draft(&mut w.lock().unwrap()) {
                    log::error!("could not keep unsaved content as a recovered draft: {k:?}");
                }
                done(Err(e.into()))
            }
            e => done(Err(e.into())),
        }
    }

    /// Move a writer's private copy, if any, to the store's recovered drafts.
    pub(super) fn keep_draft(&self, w: &mut Writer) -> FsResult<()> {
        let name = w.tx.new_in().map(|(_, n)| n.to_string()).unwrap_or_else(|| w.home.1.clone());
        if let Some(path) = w.tx.take_staged()? {
            self.store.keep_draft(&path, &name)?;
        }
        // Its content is kept: a later close (the RELEASE after this FLUSH) must not save
        // again from what is left, which no longer holds it.
        w.kept = true;
        Ok(())
    }

    /// Save a writer's content as `NAME (conflict N).eml` beside the message it was for,
    /// then answer `done` with `cause`, the failure that made the copy necessary.
    fn keep_conflict_copy(self: &Arc<Self>, w_arc: Arc<Mutex<Writer>>, cause: Error, done: Done<()>) {
        let mut w = w_arc.lock().unwrap();
        let (folder, name) = {
            let ix = self.store.index();
            let (f, n) = match ix.location_of(w.key) {
                Some((f, n)) => (f, n.to_string()),
                None => match w.tx.new_in() {
                    Some((f, n)) => (f, n.to_string()),
                    None => w.home.clone(),
                },
            };
            // Beside the original; in the top folder if its folder is gone too.
            (if ix.is_folder(f) { f } else { ROOT }, n)
        };
        let cname = loop {
            w.conflicts += 1;
            let cname = conflict_name(&name, w.conflicts);
            if !self.name_taken(&self.overlay(), folder, &cname) {
                break cname;
            }
        };
        let prepared = w.tx.prepare_save_as_new(folder, &cname);
        drop(w);
        let op = match or_answer!(done, prepared) {
            PreparedSave::Submit(op) => op,
            PreparedSave::Done(_) => return done(Err(cause.into())),
        };
        let this = self.clone();
        self.store.submit(
            op,
            Box::new(move |r| {
                let r = w_arc.lock().unwrap().tx.finish_save(SaveFlags(0), r);
                match r {
                    Ok(_) => {
                        log::warn!("a save could not apply; the content is kept as {cname:?}");
                        // A name the daemon made, which the kernel may hold as not existing.
                        this.expire_entry(folder, &cname);
                        this.inval_attrs(folder);
                        done(Err(cause.into()))
                    }
                    // Another save took that name first: the next one.
                    Err(Error::ObjectChanged) => this.keep_conflict_copy(w_arc, cause, done),
                    Err(e) => done(Err(e.into())),
                }
            }),
        );
    }

    /// Message `from`'s version `moved` became version `now` of message `target`, named `to`
    /// (a rename over it): `from`'s writers become `target`'s (see `Transaction::follow`).
    pub(super) fn hand_over_writers(&self, from: Id, moved: u64, target: Id, to: &(Id, String), now: u64) {
        let mut ov = self.overlay();
        let Some(list) = ov.writers.remove(&from) else { return };
        let mut stay = Vec::new();
        for (fh, pid) in list {
            let followed = match self.handles.get(&fh).map(|h| h.clone()) {
                Some(Handle::Write(w)) => {
                    let mut w = w.lock().unwrap();
                    let followed = w.tx.follow(moved, target, now);
                    if followed {
                        w.key = target;
                        w.home = to.clone();
                    }
                    followed
                }
                _ => false,
            };
            if followed {
                ov.writers.entry(target).or_default().push((fh, pid));
            } else {
                stay.push((fh, pid));
            }
        }
        if !stay.is_empty() {
            ov.writers.insert(from, stay);
        }
    }

    pub fn release(&self, fh: u64) {
        let Some((_, h)) = self.handles.remove(&fh) else { return };
        match h {
            Handle::Write(w) => {
                let (key, ino) = {
                    let w = w.lock().unwrap();
                    (w.key, w.ino)
                };
                let mut ov = self.overlay();
                if let Some(ws) = ov.writers.get_mut(&key) {
                    ws.retain(|(f, _)| *f != fh);
                    if ws.is_empty() {
                        ov.writers.remove(&key);
                    }
                }
                Self::node_closed(&mut ov, key);
                drop(ov);
                self.inval_attrs(ino);
            }
            Handle::Scratch { ino, .. } => Self::node_closed(&mut self.overlay(), ino),
            // A reader's pin goes with its last reference.
            _ => {}
        }
    }

    /// One fewer open handle on a node; an unlinked node with none left is gone.
    pub(super) fn node_closed(ov: &mut Overlay, ino: u64) {
        let (gone, idle) = match ov.nodes.get_mut(&ino) {
            Some(n) => {
                n.open = n.open.saturating_sub(1);
                let idle = n.open == 0 && matches!(&n.kind, NodeKind::Scratch { file } if file.is_in_memory());
                (n.open == 0 && n.unlinked, idle)
            }
            None => (false, false),
        };
        if idle && !gone {
            ov.scratch_idle(ino);
        }
        if gone {
            if let Some(Node { kind: NodeKind::Scratch { file }, .. }) = ov.nodes.remove(&ino) {
                file.discard();
            }
        }
    }

    /// Everything at unmount: unsaved writers are saved as at close; scratch files go.
    /// Waits for the committer: the session is over, no request is left to serve.
    pub fn shutdown(self: &Arc<Self>) {
        let fhs: Vec<u64> = self.handles.iter().map(|e| *e.key()).collect();
        for fh in fhs {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            self.flush(fh, None, Box::new(move |r| drop(tx.send(r))));
            if let Ok(Err(e)) = rx.recv() {
                log::warn!("unmount: saving an open file failed: {e:?}");
            }
            self.release(fh);
        }
        let ov = self.overlay();
        for n in ov.nodes.values() {
            if let NodeKind::Scratch { file } = &n.kind {
                file.discard();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ChangedBy;

    #[test]
    fn a_close_saves_unless_only_other_descriptor_tables_changed_the_writer() {
        let mut c = ChangedBy::default();
        assert!(c.close_saves(7), "a file only created is saved by any close");
        c.note(Some(1));
        assert!(c.close_saves(1) && !c.close_saves(2));
        c.note(Some(2));
        assert!(c.close_saves(2) && !c.close_saves(3));
        c.note(None);
        assert!(c.close_saves(3), "a change of unknown owner is saved by any close");
        c.note(Some(4));
        assert_eq!(c, ChangedBy::Unknown);
    }
}

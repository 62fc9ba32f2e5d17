//! Attributes: what lookup, getattr, readdirplus and setattr tell the kernel of folders,
//! messages and overlay nodes, with the view each writer has of its own file.

use std::sync::Arc;
use std::time::Duration;

use fuser::Errno;

use super::errno::{err, FsError, FsResult};
use super::store_fs::*;
use crate::store::commit::now_ns;
use crate::store::txn::PreparedSave;
use crate::store::Child;

impl StoreFs {
    pub(super) fn folder_attr(&self, id: Id) -> FsResult<Attr> {
        let ix = self.store.index();
        let f = ix.folder(id)?;
        Ok(Attr { ino: id, size: 4096, attrs: f.attrs(), ctime: f.ctime(), dir: true, nlink: 2 + f.subfolder_count() })
    }

    /// A message's stored attributes, under the inode of its current version.
    pub(super) fn message_attr(&self, id: Id) -> FsResult<Attr> {
        let ix = self.store.index();
        let m = ix.message(id)?;
        Ok(Attr { ino: m.version(), size: m.size(), attrs: m.attrs(), ctime: m.ctime(), dir: false, nlink: 1 })
    }

    pub(super) fn node_attr(&self, ov: &Overlay, ino: u64) -> FsResult<Attr> {
        let n = ov.nodes.get(&ino).ok_or(FsError::Errno(Errno::ENOENT))?;
        // A new message's size is its writers' (kept in the node by `write`, so no writer
        // lock is taken here: the lock order is writer, then overlay).
        Ok(Attr {
            ino,
            size: n.size,
            attrs: n.attrs,
            ctime: n.attrs.mtime,
            dir: false,
            nlink: if n.unlinked { 0 } else { 1 },
        })
    }

    /// What a writer sees of its own file: its size, its mtime, its pending attributes.
    pub(super) fn writer_view(w: &Writer, mut a: Attr) -> Attr {
        let c = w.tx.pending_change();
        a.size = w.tx.size();
        a.attrs.mtime = c.mtime.unwrap_or(if w.tx.is_dirty() { w.last_write } else { a.attrs.mtime });
        a.ctime = if w.tx.is_dirty() { a.ctime.max(w.last_write) } else { a.ctime };
        if let Some(m) = c.mode {
            a.attrs.mode = (a.attrs.mode & !0o7777) | (m & 0o7777);
        }
        a.attrs.uid = c.uid.unwrap_or(a.attrs.uid);
        a.attrs.gid = c.gid.unwrap_or(a.attrs.gid);
        a
    }

    /// Attributes of an inode as seen by `pid` (through `fh` if given). Messages with open
    /// writers are answered with no caching: a writer sees its own view, others the saved one.
    pub fn getattr(&self, ino: u64, fh: Option<u64>, pid: u32) -> FsResult<(Attr, Duration)> {
        let r = self.resolve(ino)?;
        let key = Self::message_of(r).or(match r {
            InodeRef::Node(n) => Some(n),
            _ => None,
        });
        let (writers, mine) = match key {
            Some(k) => {
                let ov = self.overlay();
                let ws = ov.writers.get(&k);
                (ws.is_some(), ws.and_then(|ws| ws.iter().find(|(_, p)| *p == pid).map(|(fh, _)| *fh)))
            }
            None => (false, None),
        };
        // fstat comes without its handle: this process's writer answers then, whichever
        // version's inode it holds (an fsync made a new version under it).
        let handle = fh.or(mine).and_then(|fh| self.handles.get(&fh).map(|h| h.clone()));
        let base = match self.base_attr(r, ino) {
            Ok(a) => Some(Attr { ino, ..a }),
            Err(FsError::Store(Error::NotFound)) => None,
            Err(e) => return Err(e),
        };
        match handle {
            Some(Handle::Write(w)) => {
                let w = w.lock().unwrap();
                // Deleted meanwhile: the writer still shows what it opened.
                let base =
                    base.unwrap_or(Attr { ino, size: 0, attrs: w.attrs, ctime: w.attrs.mtime, dir: false, nlink: 0 });
                return Ok((Self::writer_view(&w, base), Duration::ZERO));
            }
            Some(Handle::Read(v)) => {
                let a =
                    base.unwrap_or(Attr { ino, size: 0, attrs: v.attrs, ctime: v.attrs.mtime, dir: false, nlink: 0 });
                return Ok((Attr { size: v.size, ..a }, Duration::ZERO));
            }
            _ => {}
        }
        let Some(mut a) = base else {
            // A deleted message still open for reading: fstat works, with no links.
            return self.open_orphan(ino, r).map(|a| (a, Duration::ZERO)).ok_or(FsError::Store(Error::NotFound));
        };
        if let InodeRef::Version { version, .. } = r {
            let current = self.store.index().version_of(Self::message_of(r).unwrap_or(0));
            if current != Some(version) {
                // An older version's inode, still open somewhere: it has its version's
                // size, and is never cached.
                if let Some(size) = self.store.pinned_size(version) {
                    a.size = size;
                }
                return Ok((a, Duration::ZERO));
            }
        }
        Ok((a, if writers { Duration::ZERO } else { TTL }))
    }

    /// Attributes of a deleted message's inode that a reader still holds open.
    fn open_orphan(&self, ino: u64, r: InodeRef) -> Option<Attr> {
        let id = Self::message_of(r)?;
        self.handles.iter().find_map(|h| match h.value() {
            Handle::Read(v) if v.id == id && (v.version == ino || !matches!(r, InodeRef::Version { .. })) => {
                Some(Attr { ino, size: v.size, attrs: v.attrs, ctime: v.attrs.mtime, dir: false, nlink: 0 })
            }
            _ => None,
        })
    }

    pub(super) fn base_attr(&self, r: InodeRef, ino: u64) -> FsResult<Attr> {
        match r {
            InodeRef::Folder(id) => self.folder_attr(id),
            InodeRef::Version { id, .. } | InodeRef::Message(id) => self.message_attr(id),
            InodeRef::Node(n) => self.node_attr(&self.overlay(), n).map(|a| Attr { ino, ..a }),
        }
    }

    /// Resolve a name and hand its inode to the kernel.
    pub fn lookup(&self, parent: u64, name: &str) -> FsResult<(Attr, Duration)> {
        // A name the store could never hold (longer than 255 bytes) is ENAMETOOLONG, not
        // ENOENT: chmod, rm, rename and the rest look it up first.
        crate::store::index::check_name(name)?;
        let folder = self.folder_of(parent)?;
        let ov = self.overlay();
        let found = self.find(&ov, folder, name).ok_or(FsError::Errno(Errno::ENOENT))?;
        let (a, r) = match found {
            Found::Folder(f) => (self.folder_attr(f)?, InodeRef::Folder(f)),
            Found::Message(m) | Found::Shadow(Shadow { msg: m, .. }) => {
                let a = self.message_attr(m)?;
                (a, InodeRef::Version { id: m, version: a.ino })
            }
            Found::Node(n) => (self.node_attr(&ov, n)?, InodeRef::Node(n)),
        };
        let writers = match r {
            InodeRef::Version { id, .. } => ov.writers.contains_key(&id),
            InodeRef::Node(n) => ov.writers.contains_key(&n),
            _ => false,
        };
        drop(ov);
        self.inodes.remember(a.ino, r);
        Ok((a, if writers { Duration::ZERO } else { TTL }))
    }

    /// A snapshot of a folder's entries, taken at opendir: readdir then serves it, so each
    /// entry is listed once even while the folder changes.
    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        Ok(self.new_fh(Handle::Dir(self.listing(ino)?)))
    }

    /// Folder `ino`'s entries now, `.` and `..` first. Reads no message content.
    pub fn listing(&self, ino: u64) -> FsResult<Arc<Vec<DirEnt>>> {
        let folder = self.folder_of(ino)?;
        let mut out = Vec::new();
        let ov = self.overlay();
        {
            let ix = self.store.index();
            let f = ix.folder(folder)?;
            out.reserve(f.entry_count() + 2);
            out.push(DirEnt { ino, name: ".".into(), dir: true, key: InodeRef::Folder(folder) });
            let parent = f.parent();
            out.push(DirEnt { ino: parent, name: "..".into(), dir: true, key: InodeRef::Folder(parent) });
            for (name, child) in ix.children(folder)? {
                if !ov.hidden.is_empty() && ov.hidden.contains_key(&(folder, name.to_string())) {
                    continue;
                }
                out.push(match child {
                    Child::Message(id, m) => DirEnt {
                        ino: m.version(),
                        name: name.to_string(),
                        dir: false,
                        key: InodeRef::Version { id, version: m.version() },
                    },
                    Child::Folder(id) => {
                        DirEnt { ino: id, name: name.to_string(), dir: true, key: InodeRef::Folder(id) }
                    }
                });
            }
            for (name, o) in ov.in_folder(folder) {
                match o {
                    Overlaid::Node(n) if !ov.nodes.get(n).map(|x| x.unlinked).unwrap_or(true) => {
                        out.push(DirEnt { ino: *n, name: name.clone(), dir: false, key: InodeRef::Node(*n) })
                    }
                    Overlaid::Shadow(s) => {
                        if let Some(version) = ix.version_of(s.msg) {
                            out.push(DirEnt {
                                ino: version,
                                name: name.clone(),
                                dir: false,
                                key: InodeRef::Version { id: s.msg, version },
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
        drop(ov);
        let order = out
            .iter()
            .filter_map(|e| match e.key {
                InodeRef::Version { id, .. } => Some(id),
                _ => None,
            })
            .collect();
        self.prefetch.listed(folder, order);
        Ok(Arc::new(out))
    }

    /// Attributes for a readdirplus entry (the kernel takes a reference on each).
    pub fn dirent_attr(&self, e: &DirEnt) -> Option<(Attr, Duration)> {
        let a = match e.key {
            InodeRef::Folder(f) => self.folder_attr(f).ok()?,
            InodeRef::Version { id, version } => {
                let a = self.message_attr(id).ok()?;
                if a.ino != version {
                    return None; // saved again since opendir: let the kernel look it up
                }
                a
            }
            InodeRef::Message(id) => self.message_attr(id).ok()?,
            InodeRef::Node(n) => self.node_attr(&self.overlay(), n).ok()?,
        };
        self.inodes.remember(e.ino, e.key);
        let writers = match e.key {
            InodeRef::Version { id, .. } | InodeRef::Message(id) => self.overlay().writers.contains_key(&id),
            _ => false,
        };
        Some((Attr { ino: e.ino, ..a }, if writers { Duration::ZERO } else { TTL }))
    }

    /// chmod, chown, utimens, truncate. Through a writer (its descriptor, or the O_TRUNC
    /// the kernel sends for it) changes join its transaction; a new file's node takes them
    /// at once; otherwise they are committed now and answered once durable.
    #[allow(clippy::too_many_arguments)]
    pub fn setattr(
        self: &Arc<Self>,
        ino: u64,
        fh: Option<u64>,
        pid: u32,
        change: AttrChange,
        size: Option<u64>,
        done: Done<(Attr, Duration)>,
    ) {
        let op = match self.plan_setattr(ino, fh, pid, change, size) {
            Ok(op) => op,
            Err(e) => return done(Err(e)),
        };
        self.commit(
            op.into_iter().collect(),
            move |fs, out| {
                if out.is_some() && size.is_some() {
                    // A truncation by name made a new version.
                    if let Ok(id) = fs.resolve(ino).map(Self::message_of) {
                        id.into_iter().for_each(|id| fs.refresh_entry(id));
                    }
                }
                fs.getattr(ino, fh, pid)
            },
            done,
        );
    }

    /// The part of a setattr done at once, and the operation to commit, if any.
    fn plan_setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        pid: u32,
        change: AttrChange,
        size: Option<u64>,
    ) -> FsResult<Option<Op>> {
        self.writable()?;
        let r = self.resolve(ino)?;
        match r {
            InodeRef::Folder(id) => {
                if size.is_some() {
                    return err(Errno::EISDIR);
                }
                Ok(Some(Op::FolderAttrs { id, change }))
            }
            InodeRef::Node(n) => {
                let mut ov = self.overlay();
                let node = ov.nodes.get_mut(&n).ok_or(FsError::Errno(Errno::ENOENT))?;
                apply_to_attrs(&mut node.attrs, &change);
                node.mtime_set |= change.mtime.is_some();
                if let Some(len) = size {
                    match &node.kind {
                        NodeKind::Scratch { file } => {
                            io(file.set_len(len), "truncate a scratch file")?;
                            node.size = len;
                        }
                        NodeKind::NewMessage => {
                            drop(ov);
                            self.truncate_writer(fh, n, pid, len)?;
                        }
                    }
                }
                Ok(None)
            }
            InodeRef::Version { id, .. } | InodeRef::Message(id) => {
                // The kernel sends the truncation of open(O_TRUNC) without a handle: a
                // writer of this message in the calling process is the one it belongs to.
                // That truncation is part of the open; a change through a handle has no
                // lock owner, so any close saves it.
                let through_handle = fh.is_some();
                let fh = fh.or_else(|| {
                    self.overlay()
                        .writers
                        .get(&id)
                        .and_then(|ws| ws.iter().rev().find(|(_, p)| *p == pid))
                        .map(|(f, _)| *f)
                });
                let writer = fh.and_then(|fh| match self.handles.get(&fh).map(|h| h.clone()) {
                    Some(Handle::Write(w)) => Some(w),
                    _ => None,
                });
                if let Some(w) = writer {
                    let mut w = w.lock().unwrap();
                    if through_handle {
                        w.changed_by.note(None);
                    }
                    if let Some(len) = size {
                        w.tx.set_len(len)?;
                        w.last_write = now_ns();
                    }
                    if !change.is_empty() {
                        w.tx.change_attrs(change);
                    }
                    return Ok(None);
                }
                match size {
                    // A truncation by name is a save of its own, from the current version.
                    Some(len) => {
                        let mut tx = self.store.begin(id)?;
                        tx.set_len(len)?;
                        tx.change_attrs(change);
                        match tx.prepare_save(SaveFlags(0))? {
                            // The transaction may go: the handed-over copy is the op's now.
                            PreparedSave::Submit(op) => Ok(Some(op)),
                            PreparedSave::Done(_) => Ok(None),
                        }
                    }
                    None if change.is_empty() => Ok(None),
                    None => Ok(Some(Op::MessageMeta { id, change })),
                }
            }
        }
    }

    pub(super) fn truncate_writer(&self, fh: Option<u64>, key: Id, pid: u32, len: u64) -> FsResult<()> {
        let through_handle = fh.is_some();
        let fh = fh.or_else(|| {
            self.overlay()
                .writers
                .get(&key)
                .and_then(|ws| ws.iter().find(|(_, p)| *p == pid).or(ws.first()).map(|(f, _)| *f))
        });
        match fh.and_then(|fh| self.handles.get(&fh).map(|h| h.clone())) {
            Some(Handle::Write(w)) => {
                let mut w = w.lock().unwrap();
                if through_handle {
                    w.changed_by.note(None);
                }
                Ok(w.tx.set_len(len)?)
            }
            _ if len == 0 => Ok(()),
            _ => err(Errno::EBADF),
        }
    }

    /// After a message's save outside a writer: its name leads to a new version inode.
    pub(super) fn refresh_entry(&self, id: Id) {
        let loc = self.store.index().location_of(id).map(|(folder, name)| (folder, name.to_string()));
        if let Some((folder, name)) = loc {
            self.expire_entry(folder, &name);
        }
    }
}

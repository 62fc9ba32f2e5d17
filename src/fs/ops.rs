//! The filesystem logic behind each FUSE request, returning plain results; `fuse.rs` only
//! decodes requests, calls these and replies.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dashmap::DashMap;
use fuser::Errno;

use super::errno::{err, FsError, FsResult};
use super::names::{conflict_name, is_scratch};
use super::state::{DirEnt, Handle, InodeRef, Inodes, Node, NodeKind, Overlaid, Overlay, Shadow, Writer};
use crate::store::commit::now_ns;
use crate::store::vfs::{OpenMode, VfsFile};
use crate::store::{AttrChange, Attrs, Entry, Error, Id, SaveFlags, Store, ROOT};

/// How long the kernel may keep entries and attributes. Every change made through this
/// mount invalidates what it affects, and nothing else changes the store (the daemon holds
/// its lock), so this only bounds the damage of a missed case. An hour, not a minute: with
/// a minute, reading a large folder that takes longer than that (100,000 messages with
/// `xargs cat`) sent a LOOKUP before every OPEN once the entries expired, doubling the
/// daemon's work per file; a plain filesystem never revalidates at all.
pub const TTL: Duration = Duration::from_secs(3600);

/// Attributes of one inode, as the kernel is told them.
#[derive(Clone, Copy, Debug)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    pub attrs: Attrs,
    /// Status change time (ns), kept by the store; a file not yet saved has its mtime.
    pub ctime: i64,
    pub dir: bool,
    pub nlink: u32,
}

pub struct Inner {
    pub store: Store,
    pub inodes: Inodes,
    pub overlay: Mutex<Overlay>,
    pub handles: DashMap<u64, Handle>,
    next_fh: AtomicU64,
    pub read_only: bool,
    /// Set once the session exists: attribute invalidations are sent from the request that
    /// made the change, before it is answered; entry expiries go to `expiries`.
    pub notifier: std::sync::OnceLock<Arc<super::notify::Notifier>>,
    /// Entries to expire, sent by a thread of its own (see `notify.rs`).
    pub expiries: Mutex<Option<std::sync::mpsc::Sender<(Id, String)>>>,
    /// The mounting user: with root, the only one allowed to use the control interface.
    pub owner_uid: u32,
}

fn io<T>(r: std::io::Result<T>, what: &str) -> FsResult<T> {
    r.map_err(|e| FsError::Store(Error::io(what, e)))
}

/// Where a name in a folder leads.
#[derive(Clone, Copy, Debug)]
enum Found {
    Folder(Id),
    Message(Id),
    Node(Id),
    Shadow(Shadow),
}

impl Inner {
    pub fn new(store: Store, read_only: bool) -> Inner {
        Inner {
            store,
            inodes: Inodes::default(),
            overlay: Mutex::new(Overlay::default()),
            handles: DashMap::new(),
            next_fh: AtomicU64::new(1),
            read_only,
            notifier: std::sync::OnceLock::new(),
            expiries: Mutex::new(None),
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
    fn expire_entry(&self, folder: Id, name: &str) {
        if let Some(tx) = self.expiries.lock().unwrap().as_ref() {
            let _ = tx.send((folder, name.to_string()));
        }
    }

    /// The inode's attributes changed behind the kernel's back.
    fn inval_attrs(&self, ino: u64) {
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

    fn writable(&self) -> FsResult<()> {
        if self.read_only {
            return err(Errno::EROFS);
        }
        Ok(())
    }

    pub fn resolve(&self, ino: u64) -> FsResult<InodeRef> {
        if let Some(r) = self.inodes.get(ino) {
            return Ok(r);
        }
        // An inode the kernel kept across a forget race, or a folder: ask the store.
        let ix = self.store.index();
        if ix.folders.contains_key(&ino) {
            return Ok(InodeRef::Folder(ino));
        }
        if ix.messages.contains_key(&ino) {
            return Ok(InodeRef::Message(ino));
        }
        err(Errno::ENOENT)
    }

    pub fn folder_of(&self, ino: u64) -> FsResult<Id> {
        match self.resolve(ino)? {
            InodeRef::Folder(id) => Ok(id),
            _ => err(Errno::ENOTDIR),
        }
    }

    /// The message an inode stands for, if any.
    fn message_of(r: InodeRef) -> Option<Id> {
        match r {
            InodeRef::Version { id, .. } | InodeRef::Message(id) => Some(id),
            _ => None,
        }
    }

    fn find(&self, ov: &Overlay, folder: Id, name: &str) -> Option<Found> {
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

    fn folder_attr(&self, id: Id) -> FsResult<Attr> {
        let ix = self.store.index();
        let f = ix.folder(id)?;
        Ok(Attr { ino: id, size: 4096, attrs: f.attrs, ctime: f.ctime, dir: true, nlink: 2 + f.subfolders })
    }

    /// A message's stored attributes, under the inode of its current version.
    fn message_attr(&self, id: Id) -> FsResult<Attr> {
        let ix = self.store.index();
        let m = ix.message(id)?;
        Ok(Attr { ino: m.version, size: m.size, attrs: m.attrs, ctime: m.ctime, dir: false, nlink: 1 })
    }

    fn node_attr(&self, ov: &Overlay, ino: u64) -> FsResult<Attr> {
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
    fn writer_view(w: &Writer, mut a: Attr) -> Attr {
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
            let current = self.store.index().messages.get(&Self::message_of(r).unwrap_or(0)).map(|m| m.version);
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

    fn base_attr(&self, r: InodeRef, ino: u64) -> FsResult<Attr> {
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
    /// entry is listed once even while the folder changes. Reads no message content.
    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        let folder = self.folder_of(ino)?;
        let mut out = Vec::new();
        let ov = self.overlay();
        {
            let ix = self.store.index();
            let f = ix.folder(folder)?;
            out.reserve(f.children.len() + 2);
            out.push(DirEnt { ino, name: ".".into(), dir: true, inode: InodeRef::Folder(folder) });
            out.push(DirEnt { ino: f.parent, name: "..".into(), dir: true, inode: InodeRef::Folder(f.parent) });
            for (name, id) in &f.children {
                if !ov.hidden.is_empty() && ov.hidden.contains_key(&(folder, name.to_string())) {
                    continue;
                }
                if let Some(m) = ix.messages.get(id) {
                    out.push(DirEnt {
                        ino: m.version,
                        name: name.to_string(),
                        dir: false,
                        inode: InodeRef::Version { id: *id, version: m.version },
                    });
                } else {
                    out.push(DirEnt { ino: *id, name: name.to_string(), dir: true, inode: InodeRef::Folder(*id) });
                }
            }
            for (name, o) in ov.in_folder(folder) {
                match o {
                    Overlaid::Node(n) if !ov.nodes.get(n).map(|x| x.unlinked).unwrap_or(true) => {
                        out.push(DirEnt { ino: *n, name: name.clone(), dir: false, inode: InodeRef::Node(*n) })
                    }
                    Overlaid::Shadow(s) => {
                        if let Some(m) = ix.messages.get(&s.msg) {
                            out.push(DirEnt {
                                ino: m.version,
                                name: name.clone(),
                                dir: false,
                                inode: InodeRef::Version { id: s.msg, version: m.version },
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
        drop(ov);
        Ok(self.new_fh(Handle::Dir(Arc::new(out))))
    }

    /// Attributes for a readdirplus entry (the kernel takes a reference on each).
    pub fn dirent_attr(&self, e: &DirEnt) -> Option<(Attr, Duration)> {
        let a = match e.inode {
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
        self.inodes.remember(e.ino, e.inode);
        let writers = match e.inode {
            InodeRef::Version { id, .. } | InodeRef::Message(id) => self.overlay().writers.contains_key(&id),
            _ => false,
        };
        Some((Attr { ino: e.ino, ..a }, if writers { Duration::ZERO } else { TTL }))
    }

    fn new_attrs(mode: u32, kind: u32, uid: u32, gid: u32) -> Attrs {
        Attrs { mode: kind | (mode & 0o7777), uid, gid, mtime: now_ns() }
    }

    /// Is the name in use, as this mount shows the folder? A stored name hidden by a shadow
    /// is free: an editor writes its new file there.
    fn name_taken(&self, ov: &Overlay, folder: Id, name: &str) -> bool {
        let key = (folder, name.to_string());
        ov.names.contains_key(&key)
            || (self.store.index().lookup(folder, name).is_some() && !ov.hidden.contains_key(&key))
    }

    pub fn mkdir(&self, parent: u64, name: &str, mode: u32, uid: u32, gid: u32) -> FsResult<Attr> {
        self.writable()?;
        let folder = self.folder_of(parent)?;
        if self.name_taken(&self.overlay(), folder, name) {
            return err(Errno::EEXIST);
        }
        let id = self.store.create_folder(folder, name, Self::new_attrs(mode, libc::S_IFDIR, uid, gid))?;
        self.inodes.remember(id, InodeRef::Folder(id));
        self.folder_attr(id)
    }

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
            let path = self.store.staging_path(&format!("s{ino}"));
            let file: Arc<dyn VfsFile> =
                Arc::from(io(self.store.vfs().open(&path, OpenMode::CreateNew), "create a scratch file")?);
            ov.add_node(ino, Node::new(folder, name, NodeKind::Scratch { path }, attrs));
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
                    NodeKind::Scratch { path } => {
                        let file: Arc<dyn VfsFile> =
                            Arc::from(io(self.store.vfs().open(path, OpenMode::ReadWrite), "open a scratch file")?);
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
                    ((m.folder, m.name.to_string()), m.attrs)
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

    pub fn read(&self, fh: u64, off: u64, size: u32) -> FsResult<Vec<u8>> {
        let mut buf = vec![0u8; size as usize];
        let n = match self.handle(fh)? {
            Handle::Read(v) => {
                if off >= v.size {
                    0
                } else {
                    let want = (size as u64).min(v.size - off) as usize;
                    let mut got = 0;
                    while got < want {
                        let n = io(v.file()?.read_at(&mut buf[got..want], off + got as u64), "read")?;
                        if n == 0 {
                            break;
                        }
                        got += n;
                    }
                    got
                }
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
    pub fn write(&self, fh: u64, off: u64, data: &[u8], kill_suid: bool) -> FsResult<u32> {
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
        let stored = self.store.index().message(w.key)?.attrs.mode;
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
    pub fn flush(&self, fh: u64) -> FsResult<()> {
        self.save(fh, SaveFlags(SaveFlags::KEEP_OPEN_READWRITE), true)
    }

    /// SaveChanges on a writer. `on_close`: a failed save keeps the content as a conflict
    /// copy beside the original (nothing is lost) and still reports the failure.
    pub fn save(&self, fh: u64, flags: SaveFlags, on_close: bool) -> FsResult<()> {
        let w = match self.handle(fh)? {
            Handle::Write(w) => w,
            Handle::Scratch { file, .. } if !on_close => return io(file.sync(), "sync a scratch file"),
            _ if on_close => return Ok(()),
            _ => return err(Errno::EBADF),
        };
        let flags = flags.validate()?;
        let mut w = w.lock().unwrap();
        if self.store.crash_lock().is_some() {
            // Under the crash-recovery lock nothing is committed: a closing writer's changes
            // are kept as a recovered draft (committed to "Recovered Drafts" once the lock is
            // lifted, or at the next open), and the close reports EACCES.
            if on_close && (w.tx.is_dirty() || w.wrote) {
                self.keep_draft(&mut w)?;
            }
            return err(Errno::EACCES);
        }
        if on_close && (w.kept || (!w.tx.is_dirty() && !w.tx.has_pending_change())) {
            return Ok(());
        }
        if w.tx.state() != crate::store::txn::TxState::Open {
            return if on_close { Ok(()) } else { err(Errno::EBADF) };
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
                return if on_close { Ok(()) } else { err(Errno::ENOENT) };
            }
            let (folder, name) = (node.folder, node.name.clone());
            let c = AttrChange {
                mode: Some(node.attrs.mode),
                uid: Some(node.attrs.uid),
                gid: Some(node.attrs.gid),
                mtime: node.mtime_set.then_some(node.attrs.mtime),
                flags: None,
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
        let was_key = w.key;
        match w.tx.save(flags) {
            Ok(out) => {
                let mut ov = self.overlay();
                if let Some((folder, name)) = &loc {
                    // The node is a message now: the store shows it under its name.
                    ov.names.remove(&(*folder, name.clone()));
                    if let Some(n) = ov.nodes.remove(&was_key) {
                        ov.nodes.insert(was_key, Node { unlinked: true, ..n });
                    }
                    if let Some(key) = &unhide {
                        ov.hidden.remove(key);
                        for o in ov.names.values_mut() {
                            if let Overlaid::Shadow(s) = o {
                                if s.msg == out.id {
                                    s.attached = false;
                                }
                            }
                        }
                    }
                    if let Some(ws) = ov.writers.remove(&was_key) {
                        ov.writers.entry(out.id).or_default().extend(ws);
                    }
                    w.key = out.id;
                    self.inodes.retarget(w.ino, InodeRef::Message(out.id));
                }
                let is_new = loc.is_some();
                let (folder, name) = match loc {
                    Some(l) => l,
                    None => {
                        let ix = self.store.index();
                        match ix.messages.get(&out.id) {
                            Some(m) => (m.folder, m.name.to_string()),
                            None => return Ok(()),
                        }
                    }
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
            Err(e @ (Error::ObjectChanged | Error::ObjectDeleted | Error::Exists | Error::NotFound)) if on_close => {
                let code = match e {
                    Error::ObjectChanged | Error::Exists => Errno::EBUSY,
                    _ => Errno::ENOENT,
                };
                self.keep_conflict_copy(&mut w)?;
                err(code)
            }
            Err(Error::Exists) => err(Errno::EBUSY),
            Err(e) if on_close => {
                // Any other failure at close (a full disk, an I/O error): nothing is lost
                // either; the private copy is kept as a recovered draft (a rename, which
                // needs no space), committed to "Recovered Drafts" at the next open.
                if let Err(k) = self.keep_draft(&mut w) {
                    log::error!("could not keep unsaved content as a recovered draft: {:?}", k.errno(self.read_only));
                }
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Move a writer's private copy, if any, to the store's recovered drafts.
    fn keep_draft(&self, w: &mut Writer) -> FsResult<()> {
        let name = w.tx.new_in().map(|(_, n)| n.to_string()).unwrap_or_else(|| w.home.1.clone());
        if let Some(path) = w.tx.take_staged() {
            self.store.keep_draft(&path, &name)?;
        }
        // Its content is kept: a later close (the RELEASE after this FLUSH) must not save
        // again from what is left, which no longer holds it.
        w.kept = true;
        Ok(())
    }

    /// Save a writer's content as `NAME (conflict N).eml` beside the message it was for.
    fn keep_conflict_copy(&self, w: &mut Writer) -> FsResult<()> {
        let (folder, name) = {
            let ix = self.store.index();
            let (f, n) = match ix.messages.get(&w.key) {
                Some(m) => (m.folder, m.name.to_string()),
                None => match w.tx.new_in() {
                    Some((f, n)) => (f, n.to_string()),
                    None => w.home.clone(),
                },
            };
            // Beside the original; in the top folder if its folder is gone too.
            (if ix.folders.contains_key(&f) { f } else { ROOT }, n)
        };
        loop {
            w.conflicts += 1;
            let cname = conflict_name(&name, w.conflicts);
            if self.name_taken(&self.overlay(), folder, &cname) {
                continue;
            }
            match w.tx.save_as_new(folder, &cname) {
                Ok(_) => {
                    log::warn!("a save could not apply; the content is kept as {cname:?}");
                    return Ok(());
                }
                Err(Error::Exists) => continue,
                Err(e) => return Err(e.into()),
            }
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
                Self::node_closed(&mut ov, key, &self.store);
                drop(ov);
                self.inval_attrs(ino);
            }
            Handle::Scratch { ino, .. } => Self::node_closed(&mut self.overlay(), ino, &self.store),
            // A reader's pin goes with its last reference.
            _ => {}
        }
    }

    /// One fewer open handle on a node; an unlinked node with none left is gone.
    fn node_closed(ov: &mut Overlay, ino: u64, store: &Store) {
        let gone = match ov.nodes.get_mut(&ino) {
            Some(n) => {
                n.open = n.open.saturating_sub(1);
                n.open == 0 && n.unlinked
            }
            None => false,
        };
        if gone {
            if let Some(Node { kind: NodeKind::Scratch { path }, .. }) = ov.nodes.remove(&ino) {
                let _ = store.vfs().remove_file(&path);
            }
        }
    }

    pub fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        pid: u32,
        change: AttrChange,
        size: Option<u64>,
    ) -> FsResult<(Attr, Duration)> {
        self.writable()?;
        let r = self.resolve(ino)?;
        match r {
            InodeRef::Folder(id) => {
                if size.is_some() {
                    return err(Errno::EISDIR);
                }
                self.store.set_folder_attrs(id, change)?;
            }
            InodeRef::Node(n) => {
                let mut ov = self.overlay();
                let node = ov.nodes.get_mut(&n).ok_or(FsError::Errno(Errno::ENOENT))?;
                apply_to_attrs(&mut node.attrs, &change);
                node.mtime_set |= change.mtime.is_some();
                if let Some(len) = size {
                    match &node.kind {
                        NodeKind::Scratch { path } => {
                            let f = io(self.store.vfs().open(path, OpenMode::ReadWrite), "open a scratch file")?;
                            io(f.set_len(len), "truncate a scratch file")?;
                            node.size = len;
                        }
                        NodeKind::NewMessage => {
                            drop(ov);
                            self.truncate_writer(fh, n, pid, len)?;
                        }
                    }
                }
            }
            InodeRef::Version { id, .. } | InodeRef::Message(id) => {
                // Through a writer's descriptor (futimens, fchmod, ftruncate), changes join
                // its transaction; otherwise they apply now.
                // The kernel sends the truncation of open(O_TRUNC) without a handle: a
                // writer of this message in the calling process is the one it belongs to.
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
                match writer {
                    Some(w) => {
                        let mut w = w.lock().unwrap();
                        if let Some(len) = size {
                            w.tx.set_len(len)?;
                            w.last_write = now_ns();
                        }
                        if !change.is_empty() {
                            w.tx.change_attrs(change);
                        }
                    }
                    None => {
                        if let Some(len) = size {
                            let mut tx = self.store.begin(id)?;
                            tx.set_len(len)?;
                            tx.change_attrs(change.clone());
                            tx.save(SaveFlags(0))?;
                            self.refresh_entry(id);
                        } else if !change.is_empty() {
                            self.store.set_message_attrs(id, change)?;
                        }
                    }
                }
            }
        }
        self.getattr(ino, fh, pid)
    }

    fn truncate_writer(&self, fh: Option<u64>, key: Id, pid: u32, len: u64) -> FsResult<()> {
        let fh = fh.or_else(|| {
            self.overlay()
                .writers
                .get(&key)
                .and_then(|ws| ws.iter().find(|(_, p)| *p == pid).or(ws.first()).map(|(f, _)| *f))
        });
        match fh.and_then(|fh| self.handles.get(&fh).map(|h| h.clone())) {
            Some(Handle::Write(w)) => Ok(w.lock().unwrap().tx.set_len(len)?),
            _ if len == 0 => Ok(()),
            _ => err(Errno::EBADF),
        }
    }

    /// After a message's save outside a writer: its name leads to a new version inode.
    fn refresh_entry(&self, id: Id) {
        let loc = self.store.index().messages.get(&id).map(|m| (m.folder, m.name.to_string()));
        if let Some((folder, name)) = loc {
            self.expire_entry(folder, &name);
        }
    }

    pub fn unlink(&self, parent: u64, name: &str) -> FsResult<()> {
        self.writable()?;
        let folder = self.folder_of(parent)?;
        let mut ov = self.overlay();
        let found = self.find(&ov, folder, name).ok_or(FsError::Errno(Errno::ENOENT))?;
        match found {
            Found::Folder(_) => err(Errno::EISDIR),
            Found::Node(n) => {
                ov.names.remove(&(folder, name.to_string()));
                if let Some(node) = ov.nodes.get_mut(&n) {
                    node.unlinked = true;
                }
                Self::node_closed_if_idle(&mut ov, n, &self.store);
                Ok(())
            }
            Found::Shadow(s) => {
                ov.names.remove(&(folder, name.to_string()));
                if s.attached {
                    // The message was only renamed away in this mount: deleting it under its
                    // scratch name deletes it.
                    ov.hidden.retain(|_, m| *m != s.msg);
                    drop(ov);
                    match self.store.delete_message(s.msg) {
                        Ok(()) | Err(Error::NotFound) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(())
            }
            Found::Message(m) => {
                drop(ov);
                self.store.delete_message(m)?;
                Ok(())
            }
        }
    }

    fn node_closed_if_idle(ov: &mut Overlay, n: u64, store: &Store) {
        if ov.nodes.get(&n).map(|x| x.open == 0).unwrap_or(false) {
            if let Some(x) = ov.nodes.get_mut(&n) {
                x.open = 1;
            }
            Self::node_closed(ov, n, store);
        }
    }

    pub fn rmdir(&self, parent: u64, name: &str) -> FsResult<()> {
        self.writable()?;
        let folder = self.folder_of(parent)?;
        let ov = self.overlay();
        match self.find(&ov, folder, name) {
            Some(Found::Folder(f)) => {
                if ov.in_folder(f).next().is_some() {
                    return err(Errno::ENOTEMPTY);
                }
                drop(ov);
                Ok(self.store.delete_folder(f)?)
            }
            Some(_) => err(Errno::ENOTDIR),
            None => err(Errno::ENOENT),
        }
    }

    pub fn rename(&self, parent: u64, name: &str, newparent: u64, newname: &str, flags: u32) -> FsResult<()> {
        self.writable()?;
        if flags & libc::RENAME_EXCHANGE != 0 {
            return err(Errno::EINVAL);
        }
        let sf = self.folder_of(parent)?;
        let df = self.folder_of(newparent)?;
        if sf == df && name == newname {
            return Ok(());
        }
        crate::store::index::check_name(newname)?;
        let mut ov = self.overlay();
        let src = self.find(&ov, sf, name).ok_or(FsError::Errno(Errno::ENOENT))?;
        let dst = self.find(&ov, df, newname);
        if flags & libc::RENAME_NOREPLACE != 0 && dst.is_some() {
            return err(Errno::EEXIST);
        }
        let skey = (sf, name.to_string());
        let dkey = (df, newname.to_string());
        match src {
            Found::Folder(id) => {
                match dst {
                    None => {}
                    Some(Found::Folder(t)) => {
                        let empty = self.store.index().folders.get(&t).map(|f| f.children.is_empty()).unwrap_or(false);
                        if !empty || ov.in_folder(t).next().is_some() {
                            return err(Errno::ENOTEMPTY);
                        }
                        drop(ov);
                        self.store.delete_folder(t)?;
                        return Ok(self.store.move_folder(id, df, newname)?);
                    }
                    Some(_) => return err(Errno::ENOTDIR),
                }
                drop(ov);
                Ok(self.store.move_folder(id, df, newname)?)
            }
            Found::Message(id) => {
                if is_scratch(newname) {
                    // An editor's backup step: show the message under the scratch name, hide
                    // its own name; the store does not change.
                    self.drop_overlaid(&mut ov, &dkey, dst)?;
                    ov.names.insert(dkey, Overlaid::Shadow(Shadow { msg: id, attached: true }));
                    ov.hidden.insert(skey, id);
                    return Ok(());
                }
                match dst {
                    None => {
                        drop(ov);
                        Ok(self.store.move_message(id, df, newname)?)
                    }
                    Some(Found::Message(t)) => {
                        drop(ov);
                        self.rename_over(id, t, df, newname)
                    }
                    Some(Found::Folder(_)) => err(Errno::EISDIR),
                    Some(d @ Found::Node(_)) | Some(d @ Found::Shadow(_)) => {
                        self.drop_overlaid(&mut ov, &dkey, Some(d))?;
                        drop(ov);
                        Ok(self.store.move_message(id, df, newname)?)
                    }
                }
            }
            Found::Shadow(s) => {
                if is_scratch(newname) {
                    self.drop_overlaid(&mut ov, &dkey, dst)?;
                    ov.names.remove(&skey);
                    ov.names.insert(dkey, Overlaid::Shadow(s));
                    return Ok(());
                }
                let home = ov.hidden.iter().find(|(_, m)| **m == s.msg).map(|(k, _)| k.clone());
                if s.attached && home.as_ref() == Some(&dkey) {
                    // Moved back where it came from.
                    ov.names.remove(&skey);
                    ov.hidden.remove(&dkey);
                    return Ok(());
                }
                match dst {
                    None if s.attached => {
                        ov.names.remove(&skey);
                        if let Some(h) = home {
                            ov.hidden.remove(&h);
                        }
                        drop(ov);
                        Ok(self.store.move_message(s.msg, df, newname)?)
                    }
                    Some(Found::Message(t)) => {
                        ov.names.remove(&skey);
                        if let Some(h) = home {
                            ov.hidden.remove(&h);
                        }
                        drop(ov);
                        self.rename_over(s.msg, t, df, newname)
                    }
                    // A backup whose message has a new version since: let mv copy it.
                    _ => err(Errno::EXDEV),
                }
            }
            Found::Node(n) => {
                let is_new_message = matches!(ov.nodes.get(&n).map(|x| &x.kind), Some(NodeKind::NewMessage));
                if is_scratch(newname) || is_new_message {
                    if is_new_message && (is_scratch(newname) || dst.is_some()) {
                        return err(Errno::EXDEV);
                    }
                    self.drop_overlaid(&mut ov, &dkey, dst)?;
                    ov.names.remove(&skey);
                    ov.names.insert(dkey, Overlaid::Node(n));
                    if let Some(node) = ov.nodes.get_mut(&n) {
                        node.folder = df;
                        node.name = newname.to_string();
                    }
                    return Ok(());
                }
                self.commit_scratch(ov, n, skey, dkey, dst)
            }
        }
    }

    /// Message `src` renamed over message `dst`: `dst` gets `src`'s content as a new
    /// version and keeps its entry id.
    fn rename_over(&self, src: Id, dst: Id, df: Id, newname: &str) -> FsResult<()> {
        self.store.rename_over(src, dst)?;
        // The kernel moved the source's inode to the target's name: not necessarily its
        // current version's (a save's invalidation of the source's name may not have reached
        // the kernel, or missed it after a rename), so every inode of the source now leads to
        // the target.
        self.inodes.retarget_message(src, InodeRef::Message(dst));
        self.expire_entry(df, newname);
        Ok(())
    }

    /// Remove whatever the overlay shows at a name about to be replaced.
    fn drop_overlaid(&self, ov: &mut Overlay, key: &(Id, String), dst: Option<Found>) -> FsResult<()> {
        match dst {
            None => Ok(()),
            Some(Found::Node(n)) => {
                ov.names.remove(key);
                if let Some(node) = ov.nodes.get_mut(&n) {
                    node.unlinked = true;
                }
                Self::node_closed_if_idle(ov, n, &self.store);
                Ok(())
            }
            Some(Found::Shadow(_)) => {
                ov.names.remove(key);
                Ok(())
            }
            Some(Found::Folder(_)) => err(Errno::EISDIR),
            // A stored message with a scratch name (only from outside this mount): the store
            // must drop it for the name to be reused.
            Some(Found::Message(m)) => {
                self.store.delete_message(m)?;
                Ok(())
            }
        }
    }

    /// A scratch file renamed to a message name becomes that message's new version (rsync,
    /// editors that write a temporary file), or a new message.
    fn commit_scratch(
        &self,
        mut ov: MutexGuard<'_, Overlay>,
        n: u64,
        skey: (Id, String),
        dkey: (Id, String),
        dst: Option<Found>,
    ) -> FsResult<()> {
        let hidden = ov.hidden.get(&dkey).copied();
        let target = match dst {
            None => hidden,
            Some(Found::Message(t)) => Some(t),
            Some(Found::Folder(_)) => return err(Errno::EISDIR),
            Some(d) => {
                self.drop_overlaid(&mut ov, &dkey, Some(d))?;
                None
            }
        };
        let node = ov.nodes.get(&n).ok_or(FsError::Errno(Errno::ENOENT))?;
        let NodeKind::Scratch { path } = &node.kind else { return err(Errno::EXDEV) };
        let (path, open, attrs, xattrs) = (path.clone(), node.open, node.attrs, node.xattrs.clone());
        drop(ov);
        // A scratch file still open by someone keeps being written through its descriptor:
        // commit a copy, so the committed object stays immutable.
        let staged: PathBuf = if open > 0 {
            let copy = self.store.staging_path("c");
            let vfs = self.store.vfs();
            let from = io(vfs.open(&path, OpenMode::Read), "open a scratch file")?;
            let to = io(vfs.open(&copy, OpenMode::CreateNew), "copy a scratch file")?;
            let data = io(from.read_all(), "read a scratch file")?;
            io(to.write_all_at(&data, 0), "copy a scratch file")?;
            copy
        } else {
            path.clone()
        };
        let out = self.store.commit_file(&staged, target, Some((dkey.0, dkey.1.clone())), attrs, xattrs)?;
        let mut ov = self.overlay();
        ov.names.remove(&skey);
        if open > 0 {
            if let Some(node) = ov.nodes.get_mut(&n) {
                node.unlinked = true;
            }
        } else {
            ov.nodes.remove(&n);
        }
        if hidden.is_some() {
            ov.hidden.remove(&dkey);
            for o in ov.names.values_mut() {
                if let Overlaid::Shadow(s) = o {
                    if s.msg == out.id {
                        s.attached = false;
                    }
                }
            }
        }
        drop(ov);
        self.inodes.retarget(n, InodeRef::Message(out.id));
        self.expire_entry(dkey.0, &dkey.1);
        Ok(())
    }

    /// Everything at unmount: unsaved writers are saved as at close; scratch files go.
    pub fn shutdown(&self) {
        let fhs: Vec<u64> = self.handles.iter().map(|e| *e.key()).collect();
        for fh in fhs {
            if let Err(e) = self.flush(fh) {
                log::warn!("unmount: saving an open file failed: {:?}", e.errno(self.read_only));
            }
            self.release(fh);
        }
        let ov = self.overlay();
        for n in ov.nodes.values() {
            if let NodeKind::Scratch { path } = &n.kind {
                let _ = self.store.vfs().remove_file(path);
            }
        }
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

fn apply_to_attrs(a: &mut Attrs, c: &AttrChange) {
    if let Some(m) = c.mode {
        a.mode = (a.mode & !0o7777) | (m & 0o7777);
    }
    a.uid = c.uid.unwrap_or(a.uid);
    a.gid = c.gid.unwrap_or(a.gid);
    a.mtime = c.mtime.unwrap_or(a.mtime);
}

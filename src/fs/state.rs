//! The FUSE layer's own state: the inode table, this mount's overlay of files that are not
//! (yet) messages, and the open file handles.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;

use crate::store::index::Xattrs;
use crate::store::vfs::VfsFile;
use crate::store::{Attrs, Id, PinnedVersion, Transaction, ROOT};

/// What an inode number handed to the kernel stands for.
///
/// Folders are their id. A message is handed out as the inode of its current version (its
/// change number, which never equals an id): each version has its own inode, so the kernel
/// page cache of one inode only ever holds one version's bytes, and a reader keeps its
/// version with caching on. Inode numbers are therefore stable across remounts for as long as
/// the message is not saved again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InodeRef {
    Folder(Id),
    Version {
        id: Id,
        version: u64,
    },
    /// A message whatever its current version: inodes first handed out for files that
    /// became messages later (created here, or a scratch file renamed to a message name).
    Message(Id),
    /// A file in this mount's overlay: a scratch file or a new message not saved yet.
    Node(Id),
}

/// Inode numbers the kernel knows, with its lookup counts (dropped on forget).
#[derive(Default)]
pub struct Inodes {
    map: DashMap<u64, (InodeRef, u64)>,
}

impl Inodes {
    pub fn get(&self, ino: u64) -> Option<InodeRef> {
        if ino == ROOT {
            return Some(InodeRef::Folder(ROOT));
        }
        self.map.get(&ino).map(|e| e.0)
    }

    /// The kernel got a reference to `ino` (lookup, create, readdirplus).
    pub fn remember(&self, ino: u64, r: InodeRef) {
        if ino == ROOT {
            return;
        }
        let mut e = self.map.entry(ino).or_insert((r, 0));
        e.0 = r;
        e.1 += 1;
    }

    /// Change what an inode stands for, keeping the kernel's references.
    pub fn retarget(&self, ino: u64, r: InodeRef) {
        if let Some(mut e) = self.map.get_mut(&ino) {
            e.0 = r;
        }
    }

    /// Make every inode that stands for message `from` stand for `to`: after a rename of
    /// `from` over another message, the kernel shows whichever of `from`'s inodes its dentry
    /// held (an older version's, if an invalidation had not reached it yet) under the target's
    /// name, and `from` is gone.
    pub fn retarget_message(&self, from: Id, to: InodeRef) {
        for mut e in self.map.iter_mut() {
            if matches!(e.0, InodeRef::Version { id, .. } | InodeRef::Message(id) if id == from) {
                e.0 = to;
            }
        }
    }

    pub fn forget(&self, ino: u64, n: u64) {
        if let dashmap::mapref::entry::Entry::Occupied(mut e) = self.map.entry(ino) {
            if e.get().1 <= n {
                e.remove();
            } else {
                e.get_mut().1 -= n;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[derive(Debug)]
pub enum NodeKind {
    /// A real file under `staging/`, never a message unless renamed to a message name.
    Scratch { path: PathBuf },
    /// A new message: its content lives in its writers' transactions until one saves.
    NewMessage,
}

#[derive(Debug)]
pub struct Node {
    pub folder: Id,
    pub name: String,
    pub kind: NodeKind,
    pub attrs: Attrs,
    pub xattrs: Xattrs,
    /// Size of a scratch file (new messages report their writer's size).
    pub size: u64,
    /// Open handles on it.
    pub open: u32,
    pub unlinked: bool,
    /// Whether a user set the mtime (touch, futimens): then the save keeps it.
    pub mtime_set: bool,
}

impl Node {
    /// A node just created, open once.
    pub fn new(folder: Id, name: &str, kind: NodeKind, attrs: Attrs) -> Node {
        Node {
            folder,
            name: name.into(),
            kind,
            attrs,
            xattrs: vec![],
            size: 0,
            open: 1,
            unlinked: false,
            mtime_set: false,
        }
    }
}

/// A stored message shown under a scratch name: what `mv m.eml m.eml~` (and vim's backup
/// step) leaves. The store is not changed; while `attached`, the message's own name is
/// hidden, so a file written under that name becomes the message's new version.
#[derive(Clone, Copy, Debug)]
pub struct Shadow {
    pub msg: Id,
    pub attached: bool,
}

#[derive(Clone, Copy, Debug)]
pub enum Overlaid {
    Node(Id),
    Shadow(Shadow),
}

/// What this mount shows beyond the store.
#[derive(Default)]
pub struct Overlay {
    pub names: HashMap<(Id, String), Overlaid>,
    pub nodes: HashMap<Id, Node>,
    /// Stored names hidden by an attached shadow, to the message they name.
    pub hidden: HashMap<(Id, String), Id>,
    /// Open writers by message id (or node inode): (handle, pid).
    pub writers: HashMap<Id, Vec<(u64, u32)>>,
}

impl Overlay {
    /// Show a new node under its name.
    pub fn add_node(&mut self, ino: Id, node: Node) {
        self.names.insert((node.folder, node.name.clone()), Overlaid::Node(ino));
        self.nodes.insert(ino, node);
    }

    pub fn in_folder(&self, folder: Id) -> impl Iterator<Item = (&String, &Overlaid)> {
        self.names.iter().filter(move |((f, _), _)| *f == folder).map(|((_, n), o)| (n, o))
    }
}

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
    /// Conflict copies made for this writer so far (for `NAME (conflict N).eml`).
    pub conflicts: u32,
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
            kept: false,
        }
    }
}

pub struct DirEnt {
    pub ino: u64,
    pub name: String,
    pub dir: bool,
    pub inode: InodeRef,
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
        file: Arc<dyn VfsFile>,
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

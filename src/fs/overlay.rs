//! What this mount shows beyond the store: scratch files and new files not saved yet
//! (nodes), and stored messages shown under a scratch name (shadows).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::store::index::Xattrs;
use crate::store::{Attrs, Id, Private};

#[derive(Debug)]
pub enum NodeKind {
    /// Never a message unless renamed to a message name. Held in memory while it is small
    /// (as a transaction's private copy is: rsync's temporary file then costs no file
    /// created, reopened and removed under `staging/`), a file there past that. Staging is
    /// emptied at every open of the store, so a scratch file never outlived its daemon
    /// either way, and its fsync has nothing to make durable while in memory.
    Scratch { file: Arc<Private> },
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
/// hidden, so a file written or renamed under that name becomes the message's new version,
/// and the shadow's name is the message's last: removing or replacing it deletes it.
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
    /// Scratch files closed while held in memory, oldest first (some may be gone or open
    /// again since): past [`IDLE_SCRATCH_IN_MEMORY`] the oldest are written out to files.
    pub idle_scratch: VecDeque<Id>,
}

/// How many closed scratch files stay in memory (up to 64 KiB each, so 16 MiB): rsync has
/// one at a time, an editor's swap file is open while it matters, and a copy of many dot
/// files into the mount must not hold them all in memory.
pub const IDLE_SCRATCH_IN_MEMORY: usize = 256;

impl Overlay {
    /// A scratch file's last handle closed: it joins the idle ones, and the oldest idle
    /// ones still in memory past [`IDLE_SCRATCH_IN_MEMORY`] become files.
    pub fn scratch_idle(&mut self, ino: Id) {
        self.idle_scratch.push_back(ino);
        while self.idle_scratch.len() > IDLE_SCRATCH_IN_MEMORY {
            let Some(old) = self.idle_scratch.pop_front() else { break };
            if let Some(Node { kind: NodeKind::Scratch { file }, open: 0, .. }) = self.nodes.get(&old) {
                if file.is_in_memory() {
                    if let Err(e) = file.to_file() {
                        // Kept in memory: nothing is lost, only memory is used.
                        log::warn!("writing an idle scratch file to {}: {e}", file.path().display());
                    }
                }
            }
        }
    }

    /// Show a new node under its name.
    pub fn add_node(&mut self, ino: Id, node: Node) {
        self.names.insert((node.folder, node.name.clone()), Overlaid::Node(ino));
        self.nodes.insert(ino, node);
    }

    /// A file took the hidden name `key` as the new version of `msg`, the message hidden
    /// there: the name shows the message again, and its shadows stop hiding it (removing
    /// one then only removes that name).
    pub fn unhide(&mut self, key: &(Id, String), msg: Id) {
        self.hidden.remove(key);
        for o in self.names.values_mut() {
            if let Overlaid::Shadow(s) = o {
                if s.msg == msg {
                    s.attached = false;
                }
            }
        }
    }

    pub fn in_folder(&self, folder: Id) -> impl Iterator<Item = (&String, &Overlaid)> {
        self.names.iter().filter(move |((f, _), _)| *f == folder).map(|((_, n), o)| (n, o))
    }
}

//! The inode table: what each inode number handed to the kernel stands for, with the
//! kernel's lookup counts.

use dashmap::DashMap;

use crate::store::{Id, ROOT};

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

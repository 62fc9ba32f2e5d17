//! `NAME.eml.parts/`: a read-only folder of a message's decoded parts (`body.txt`,
//! `body.html`, attachments under their names, embedded messages as `NAME.eml` with
//! `.parts` of their own), shared by every view (the store's and a PST's). A view hooks
//! it in at lookup: a name ending in [`SUFFIX`] that is not in the folder, whose stem is a
//! message, leads to [`Parts::message_dir`]; every request on an inode of
//! [`is_parts_ino`] is then answered here.
//!
//! Invariants:
//! - Parts folders are never listed (readdir of a folder does not show them), so `find`,
//!   `rsync -a`, `grep -r` and backups never enter them: only a path names one.
//! - Their inodes are numbered from [`FIRST_INO`], above every inode the views hand out
//!   (the store's ids and change numbers, a PST's node numbers: counters from 1), so the
//!   two spaces cannot meet.
//! - A parts inode stands for one message key (a store message's version, a PST message):
//!   what it shows never changes, and once the key is gone (the message deleted or saved
//!   again) the inode answers ENOENT.
//! - Memory is bounded: part trees (no content in them) and decoded parts are kept in two
//!   caches with byte budgets, the least recently used dropped first; a message's bytes
//!   are read from its view when a tree or a part not kept is needed.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use fuser::Errno;

use super::errno::{err, FsError, FsResult};
use super::view::Attr;
use crate::mime::parts::{Kind, PartTree};
use crate::store::Attrs;

/// What a message's parts folder is called: the message's name and this.
pub const SUFFIX: &str = ".parts";

/// The first inode number of parts folders and files.
pub const FIRST_INO: u64 = 1 << 62;

/// How deep embedded messages are followed (`a.eml.parts/b.eml.parts/...`).
const MAX_NESTING: usize = 32;

/// Byte budget of the part trees kept.
const TREE_BUDGET: usize = 16 << 20;

/// How many entries a cache keeps at most, whatever their size: each request looks
/// through them.
const MAX_ENTRIES: usize = 1024;

/// Byte budget of the decoded parts kept (the latest is kept whatever its size: it is
/// usually being read in many READs).
const DATA_BUDGET: usize = 64 << 20;

pub fn is_parts_ino(ino: u64) -> bool {
    ino >= FIRST_INO
}

/// The message `name` asks for the parts of, if it asks for any.
pub fn parts_stem(name: &str) -> Option<&str> {
    name.strip_suffix(SUFFIX).filter(|s| !s.is_empty())
}

/// Where a view's messages come from, for the parts of message `key`.
pub trait Messages<K> {
    /// The message's bytes; ENOENT once it is gone.
    fn content(&mut self, key: K) -> FsResult<Arc<Vec<u8>>>;
    /// Ok while the message is there as `key` says.
    fn check(&mut self, key: K) -> FsResult<()>;
}

/// A message shown by a parts folder: a message of the view, or one embedded in it,
/// reached through the message/rfc822 part at each level (indexes into each tree).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct MsgPath<K> {
    key: K,
    embedded: Vec<u32>,
}

/// What a parts inode stands for: a message's parts folder, or one of its parts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct NodeId<K> {
    msg: MsgPath<K>,
    part: Option<u32>,
}

struct Node<K> {
    id: NodeId<K>,
    /// The folder the parts folder is in (a view's folder, or the parts folder of the
    /// message that embeds it); for a part, its parts folder.
    up: u64,
    /// The message's mode, owner and mtime, which its parts show (read-only).
    owner: Attrs,
    /// The kernel's references (lookups less forgets).
    lookups: u64,
}

/// The parts inodes handed out. An entry goes when the kernel forgets its last reference;
/// the parts of a listed folder that were never looked up stay (a few dozen bytes each, for
/// the folders a person listed).
#[derive(Default)]
struct Table<K> {
    nodes: HashMap<u64, Node<K>>,
    by_id: HashMap<NodeId<K>, u64>,
    next: u64,
}

impl<K: Clone + Eq + Hash> Table<K> {
    /// The inode of `id`, made if new; `lookup` adds a kernel reference.
    fn intern(&mut self, id: NodeId<K>, up: u64, owner: Attrs, lookup: bool) -> u64 {
        let ino = match self.by_id.get(&id) {
            Some(&ino) => ino,
            None => {
                let ino = FIRST_INO + self.next;
                self.next += 1;
                self.by_id.insert(id.clone(), ino);
                self.nodes.insert(ino, Node { id, up, owner, lookups: 0 });
                ino
            }
        };
        if lookup {
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.lookups += 1;
                // Where it was named last (a message moved keeps its version).
                n.up = up;
            }
        }
        ino
    }
}

/// A least-recently-used cache with a byte budget and at most [`MAX_ENTRIES`]; the latest
/// entry always stays.
struct Lru<T> {
    entries: VecDeque<(T, usize)>,
    budget: usize,
}

impl<T> Lru<T> {
    fn new(budget: usize) -> Lru<T> {
        Lru { entries: VecDeque::new(), budget }
    }

    fn get(&mut self, matches: impl Fn(&T) -> bool) -> Option<&T> {
        let i = self.entries.iter().position(|(t, _)| matches(t))?;
        let e = self.entries.remove(i).expect("found above");
        self.entries.push_back(e);
        self.entries.back().map(|(t, _)| t)
    }

    fn put(&mut self, t: T, bytes: usize) {
        self.entries.push_back((t, bytes));
        let mut total: usize = self.entries.iter().map(|(_, b)| b).sum();
        while self.entries.len() > 1 && (total > self.budget || self.entries.len() > MAX_ENTRIES) {
            total -= self.entries.pop_front().map_or(0, |(_, b)| b);
        }
    }
}

type Tree<K> = (MsgPath<K>, Arc<PartTree>);
type Data<K> = (MsgPath<K>, u32, Arc<Vec<u8>>);

/// The parts folders of one mount.
pub struct Parts<K> {
    table: Mutex<Table<K>>,
    trees: Mutex<Lru<Tree<K>>>,
    data: Mutex<Lru<Data<K>>>,
}

impl<K: Copy + Eq + Hash> Default for Parts<K> {
    fn default() -> Parts<K> {
        Parts {
            table: Mutex::new(Table { nodes: HashMap::new(), by_id: HashMap::new(), next: 0 }),
            trees: Mutex::new(Lru::new(TREE_BUDGET)),
            data: Mutex::new(Lru::new(DATA_BUDGET)),
        }
    }
}

/// A parts folder's attributes: the message's read bits, with search where read is.
fn dir_attr(ino: u64, owner: Attrs) -> Attr {
    let read = owner.mode & 0o444;
    let attrs = Attrs { mode: libc::S_IFDIR | read | (read >> 2), ..owner };
    Attr { ino, size: 4096, attrs, ctime: owner.mtime, dir: true, nlink: 2 }
}

fn file_attr(ino: u64, owner: Attrs, size: u64) -> Attr {
    let attrs = Attrs { mode: libc::S_IFREG | (owner.mode & 0o444), ..owner };
    Attr { ino, size, attrs, ctime: owner.mtime, dir: false, nlink: 1 }
}

fn enoent<T>() -> FsResult<T> {
    err(Errno::ENOENT)
}

impl<K: Copy + Eq + Hash + std::fmt::Debug> Parts<K> {
    /// The parts folder of message `key`, named in folder `up`: its attributes, with a
    /// reference for the kernel. The message's `owner` attributes are what its parts show.
    pub fn message_dir(&self, key: K, up: u64, owner: Attrs, src: &mut dyn Messages<K>) -> FsResult<Attr> {
        src.check(key)?;
        let id = NodeId { msg: MsgPath { key, embedded: Vec::new() }, part: None };
        let ino = self.table.lock().unwrap().intern(id, up, owner, true);
        Ok(dir_attr(ino, owner))
    }

    /// The node of `ino`, checked against its message.
    fn node(&self, ino: u64, src: &mut dyn Messages<K>) -> FsResult<(NodeId<K>, u64, Attrs)> {
        let (id, up, owner) = {
            let t = self.table.lock().unwrap();
            let n = t.nodes.get(&ino).ok_or(FsError::Errno(Errno::ENOENT))?;
            (n.id.clone(), n.up, n.owner)
        };
        src.check(id.msg.key)?;
        Ok((id, up, owner))
    }

    /// The part tree of `msg`, parsed on first use.
    fn tree(&self, msg: &MsgPath<K>, src: &mut dyn Messages<K>) -> FsResult<Arc<PartTree>> {
        if let Some((_, t)) = self.trees.lock().unwrap().get(|(m, _)| m == msg) {
            return Ok(t.clone());
        }
        let bytes = self.content(msg, src)?;
        let tree = Arc::new(PartTree::parse(&bytes));
        self.trees.lock().unwrap().put((msg.clone(), tree.clone()), tree.heap_bytes());
        Ok(tree)
    }

    /// The bytes of `msg`: the view's message, or an embedded message's part decoded.
    fn content(&self, msg: &MsgPath<K>, src: &mut dyn Messages<K>) -> FsResult<Arc<Vec<u8>>> {
        match msg.embedded.split_last() {
            None => src.content(msg.key),
            Some((&last, outer)) => {
                let outer = MsgPath { key: msg.key, embedded: outer.to_vec() };
                self.part_bytes(&outer, last, src)
            }
        }
    }

    /// Part `i` of `msg`, decoded (or kept from an earlier read).
    fn part_bytes(&self, msg: &MsgPath<K>, i: u32, src: &mut dyn Messages<K>) -> FsResult<Arc<Vec<u8>>> {
        if let Some((_, _, d)) = self.data.lock().unwrap().get(|(m, p, _)| *p == i && m == msg) {
            return Ok(d.clone());
        }
        let tree = self.tree(msg, src)?;
        if tree.parts.get(i as usize).is_none() {
            return enoent();
        }
        let bytes = self.content(msg, src)?;
        let d = Arc::new(tree.decode(&bytes, i as usize));
        self.data.lock().unwrap().put((msg.clone(), i, d.clone()), d.len());
        Ok(d)
    }

    /// Resolve `name` in parts folder `parent`: a part, or the parts folder of an embedded
    /// message (`NAME.eml.parts`, not listed, as for the view's messages).
    pub fn lookup(&self, parent: u64, name: &str, src: &mut dyn Messages<K>) -> FsResult<Attr> {
        let (id, _, owner) = self.node(parent, src)?;
        if id.part.is_some() {
            return err(Errno::ENOTDIR);
        }
        let tree = self.tree(&id.msg, src)?;
        if let Some(i) = tree.find(name) {
            let node = NodeId { msg: id.msg, part: Some(i as u32) };
            let ino = self.table.lock().unwrap().intern(node, parent, owner, true);
            return Ok(file_attr(ino, owner, tree.parts[i].size));
        }
        let embedded =
            parts_stem(name).and_then(|stem| tree.find(stem)).filter(|&i| tree.parts[i].kind == Kind::Message);
        match embedded {
            Some(i) if id.msg.embedded.len() < MAX_NESTING => {
                let mut path = id.msg.embedded;
                path.push(i as u32);
                let node = NodeId { msg: MsgPath { key: id.msg.key, embedded: path }, part: None };
                let ino = self.table.lock().unwrap().intern(node, parent, owner, true);
                Ok(dir_attr(ino, owner))
            }
            _ => enoent(),
        }
    }

    /// Attributes of a parts inode.
    pub fn getattr(&self, ino: u64, src: &mut dyn Messages<K>) -> FsResult<Attr> {
        let (id, _, owner) = self.node(ino, src)?;
        match id.part {
            None => Ok(dir_attr(ino, owner)),
            Some(i) => {
                let tree = self.tree(&id.msg, src)?;
                let p = tree.parts.get(i as usize).ok_or(FsError::Errno(Errno::ENOENT))?;
                Ok(file_attr(ino, owner, p.size))
            }
        }
    }

    /// A parts folder's entries as (inode, name, is a folder), `.` and `..` first: its
    /// parts that are files, in the message's order. Takes no kernel reference.
    pub fn listing(&self, ino: u64, src: &mut dyn Messages<K>) -> FsResult<Vec<(u64, String, bool)>> {
        let (id, up, owner) = self.node(ino, src)?;
        if id.part.is_some() {
            return err(Errno::ENOTDIR);
        }
        let tree = self.tree(&id.msg, src)?;
        let mut out = vec![(ino, ".".to_string(), true), (up, "..".to_string(), true)];
        let mut table = self.table.lock().unwrap();
        for (i, p) in tree.parts.iter().enumerate() {
            if let Some(name) = &p.name {
                let node = NodeId { msg: id.msg.clone(), part: Some(i as u32) };
                out.push((table.intern(node, ino, owner, false), name.clone(), false));
            }
        }
        Ok(out)
    }

    /// A listed entry's attributes, with a reference for the kernel (READDIRPLUS).
    pub fn entry_attr(&self, ino: u64, src: &mut dyn Messages<K>) -> FsResult<Attr> {
        let a = self.getattr(ino, src)?;
        if let Some(n) = self.table.lock().unwrap().nodes.get_mut(&ino) {
            n.lookups += 1;
        }
        Ok(a)
    }

    /// Up to `size` bytes at `off` of part file `ino`.
    pub fn read(&self, ino: u64, off: u64, size: u32, src: &mut dyn Messages<K>) -> FsResult<Vec<u8>> {
        let (id, _, _) = self.node(ino, src)?;
        let Some(i) = id.part else { return err(Errno::EISDIR) };
        let d = self.part_bytes(&id.msg, i, src)?;
        let start = (off as usize).min(d.len());
        let end = start.saturating_add(size as usize).min(d.len());
        Ok(d[start..end].to_vec())
    }

    /// The kernel dropped `n` references to `ino`; at none, its number goes.
    pub fn forget(&self, ino: u64, n: u64) {
        let mut t = self.table.lock().unwrap();
        let gone = match t.nodes.get_mut(&ino) {
            Some(node) if node.lookups > n => {
                node.lookups -= n;
                false
            }
            Some(_) => true,
            None => false,
        };
        if gone {
            if let Some(node) = t.nodes.remove(&ino) {
                t.by_id.remove(&node.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages by number; a removed one is gone.
    struct Fake(HashMap<u32, Arc<Vec<u8>>>);

    impl Messages<u32> for Fake {
        fn content(&mut self, key: u32) -> FsResult<Arc<Vec<u8>>> {
            self.0.get(&key).cloned().ok_or(FsError::Errno(Errno::ENOENT))
        }
        fn check(&mut self, key: u32) -> FsResult<()> {
            self.content(key).map(|_| ())
        }
    }

    const OWNER: Attrs = Attrs { mode: libc::S_IFREG | 0o640, uid: 7, gid: 8, mtime: 5 };

    fn errno<T: std::fmt::Debug>(r: FsResult<T>) -> Errno {
        r.unwrap_err().errno()
    }

    #[test]
    fn parts_folders_list_parts_and_reach_embedded_messages_by_name() {
        let msg = b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nhello\n--b\n\
Content-Type: message/rfc822\n\nSubject: inner\nContent-Type: text/html\n\n<b>x</b>\n--b--\n";
        let mut src = Fake(HashMap::from([(1, Arc::new(msg.to_vec()))]));
        let parts = Parts::<u32>::default();
        let dir = parts.message_dir(1, 9, OWNER, &mut src).unwrap();
        assert!(dir.dir && is_parts_ino(dir.ino));
        assert_eq!(dir.attrs.mode & 0o7777, 0o550);
        let l = parts.listing(dir.ino, &mut src).unwrap();
        let names: Vec<&str> = l.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(names, [".", "..", "body.txt", "inner.eml"]);
        assert_eq!(l[1].0, 9);
        let body = parts.lookup(dir.ino, "body.txt", &mut src).unwrap();
        assert_eq!(body.attrs.mode & 0o7777, 0o440);
        assert_eq!(parts.read(body.ino, 0, 100, &mut src).unwrap(), b"hello");
        assert_eq!(parts.read(body.ino, 2, 2, &mut src).unwrap(), b"ll");
        let inner = parts.lookup(dir.ino, "inner.eml.parts", &mut src).unwrap();
        let html = parts.lookup(inner.ino, "body.html", &mut src).unwrap();
        assert_eq!(parts.read(html.ino, 0, 100, &mut src).unwrap(), b"<b>x</b>");
        assert_eq!(errno(parts.lookup(dir.ino, "body.txt.parts", &mut src)), Errno::ENOENT);
        assert_eq!(errno(parts.lookup(body.ino, "x", &mut src)), Errno::ENOTDIR);

        // The message gone: every inode of its parts is gone with it.
        src.0.clear();
        assert_eq!(errno(parts.getattr(html.ino, &mut src)), Errno::ENOENT);
        assert_eq!(errno(parts.listing(dir.ino, &mut src)), Errno::ENOENT);
    }

    #[test]
    fn forgotten_inodes_go_and_listed_ones_keep_their_number() {
        let mut src = Fake(HashMap::from([(1, Arc::new(b"Subject: s\n\nx".to_vec()))]));
        let parts = Parts::<u32>::default();
        let dir = parts.message_dir(1, 9, OWNER, &mut src).unwrap();
        let listed = parts.listing(dir.ino, &mut src).unwrap()[2].0;
        let looked = parts.lookup(dir.ino, "body.txt", &mut src).unwrap().ino;
        assert_eq!(listed, looked);
        parts.forget(dir.ino, 1);
        assert_eq!(errno(parts.getattr(dir.ino, &mut src)), Errno::ENOENT);
        assert!(parts.message_dir(1, 9, OWNER, &mut src).unwrap().ino > dir.ino);
    }

    #[test]
    fn the_caches_stay_within_their_budget_but_keep_the_latest() {
        let mut lru = Lru::new(10);
        lru.put(1, 6);
        lru.put(2, 6);
        assert!(lru.get(|x| *x == 1).is_none());
        lru.put(3, 50);
        assert_eq!(lru.entries.len(), 1);
        assert!(lru.get(|x| *x == 3).is_some());
    }
}

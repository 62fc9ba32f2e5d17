//! The in-memory index: folders and messages, the rules that bind them, and how each log
//! record changes them.
//!
//! The committer validates an operation against this index before logging it and applies
//! it only after its record is durable, so readers never see what a crash could take back.
//!
//! Outside the store the index is read-only: its maps and the fields of its records are
//! private to `store/`, and the rest of the crate asks it questions (`lookup`, `children`,
//! `location_of`, ...). Only the committer (through `apply`) and opening (replay,
//! checkpoints) change it, so nothing else can make it disagree with the log.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::base::Base;
use super::error::{Error, Result};
use super::inline::InlineMap;
pub use super::record::Record;
use super::remote::{FolderRemote, MessageRemote, UploadIntent};

pub type Id = u64;
/// The root folder's id; ids of folders and messages share one space, so `id + 0` can serve
/// as an inode number that is stable across remounts.
pub const ROOT: Id = 1;
/// The first id handed to anything created after the root.
pub const FIRST_ID: Id = 2;

/// Maildir/IMAP-style flags kept with each message (not derived from its content).
pub mod flags {
    pub const SEEN: u8 = 0x01;
    pub const ANSWERED: u8 = 0x02;
    pub const FLAGGED: u8 = 0x04;
    pub const DRAFT: u8 = 0x08;
    pub const PASSED: u8 = 0x10;
    pub const TRASHED: u8 = 0x20;
    /// Not a user flag: the message holds only its header, its body is still on the server
    /// (a sync's first pass). No letter spells it, and an attribute change (`AttrChange`)
    /// keeps it as it was: only a save with whole content sets or clears it.
    pub const HEADER_ONLY: u8 = 0x40;
    /// The flags a user sets and a sync replicates.
    pub const USER: u8 = DRAFT | FLAGGED | PASSED | ANSWERED | SEEN | TRASHED;

    /// The flags' letters, Maildir's, in the ASCII order Maildir names them; the
    /// `user.msgfs.flags` xattr spells them the same way. IMAP's \\Seen, \\Answered,
    /// \\Flagged, \\Draft and \\Deleted are S, R, F, D and T.
    pub const LETTERS: [(char, u8); 6] =
        [('D', DRAFT), ('F', FLAGGED), ('P', PASSED), ('R', ANSWERED), ('S', SEEN), ('T', TRASHED)];

    /// The letters of `flags`, in order.
    pub fn to_letters(flags: u8) -> String {
        LETTERS.iter().filter(|(_, bit)| flags & bit != 0).map(|(l, _)| *l).collect()
    }

    /// The flags spelled by `letters`, in any order; `Err` names the first letter that is
    /// not a flag.
    pub fn from_letters(letters: &str) -> Result<u8, char> {
        letters.chars().try_fold(0, |acc, c| match LETTERS.iter().find(|(l, _)| *l == c) {
            Some((_, bit)) => Ok(acc | bit),
            None => Err(c),
        })
    }
}

/// POSIX attributes stored with folders and messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attrs {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Nanoseconds since the Unix epoch.
    pub mtime: i64,
}

/// User extended attributes, sorted by name. Kept boxed and optional: most messages have none.
pub type Xattrs = Vec<(Box<str>, Box<[u8]>)>;

#[derive(Clone, Debug)]
pub struct Folder {
    pub(super) parent: Id,
    pub(super) name: Arc<str>,
    pub(super) attrs: Attrs,
    /// Status change time, nanoseconds since the Unix epoch: the commit time of the last
    /// change to the folder's attributes, its name or place, or its entries.
    pub(super) ctime: i64,
    /// Its entries changed since the mapped checkpoint, by name: `Some` is there now, `None`
    /// an entry of the checkpoint that is gone. One namespace, as in a directory. Without a
    /// mapped checkpoint this holds every entry.
    pub(super) children: BTreeMap<Arc<str>, Option<Id>>,
    /// Its entries in the mapped checkpoint: first row of the child table, and how many.
    pub(super) base_children: (u64, u64),
    /// How many entries it holds now.
    pub(super) entries: usize,
    pub(super) subfolders: u32,
}

impl Folder {
    pub(super) fn new(parent: Id, name: Arc<str>, attrs: Attrs, ctime: i64) -> Folder {
        Folder {
            parent,
            name,
            attrs,
            ctime,
            children: BTreeMap::new(),
            base_children: (0, 0),
            entries: 0,
            subfolders: 0,
        }
    }
}

/// Read access to a folder's own properties; its entries are listed by [`Index::children`].
impl Folder {
    /// The folder it is in (the root is its own parent).
    pub fn parent(&self) -> Id {
        self.parent
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn attrs(&self) -> Attrs {
        self.attrs
    }
    /// Status change time (ns since the epoch).
    pub fn ctime(&self) -> i64 {
        self.ctime
    }
    /// How many of its entries are folders (a directory's link count is 2 plus this).
    pub fn subfolder_count(&self) -> u32 {
        self.subfolders
    }
    /// How many entries, folders and messages, it holds.
    pub fn entry_count(&self) -> usize {
        self.entries
    }
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

/// One message as the index keeps it: 88 bytes plus its name (96 with its id in the
/// message table; 88 before `ctime` was kept). Properties such as the subject are parsed
/// from the content when asked for, not kept here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub(super) folder: Id,
    /// The change number of the save that wrote this content; grows with every save.
    pub(super) version: u64,
    pub(super) size: u64,
    pub(super) attrs: Attrs,
    /// Status change time (ns): the commit time of the last change to the message, its
    /// content, attributes, flags, xattrs or name. Unlike `attrs.mtime`, no one can set it.
    pub(super) ctime: i64,
    /// CRC32C of the content, checked by `msgfs check`.
    pub(super) crc: u32,
    pub(super) flags: u8,
    pub(super) name: Arc<str>,
    pub(super) xattrs: Option<Box<Xattrs>>,
}

/// Read access to a message's stored properties.
impl Message {
    /// The folder it is in.
    pub fn folder(&self) -> Id {
        self.folder
    }
    /// The change number of the save that wrote its current content.
    pub fn version(&self) -> u64 {
        self.version
    }
    /// The size of its content in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn attrs(&self) -> Attrs {
        self.attrs
    }
    /// Status change time (ns since the epoch).
    pub fn ctime(&self) -> i64 {
        self.ctime
    }
    /// CRC32C of its content.
    pub fn crc(&self) -> u32 {
        self.crc
    }
    /// Its [`flags`].
    pub fn flags(&self) -> u8 {
        self.flags
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its user extended attributes, sorted by name.
    pub fn xattrs(&self) -> &[(Box<str>, Box<[u8]>)] {
        self.xattrs.as_deref().map_or(&[], Vec::as_slice)
    }
    /// The value of user extended attribute `name`, if it has one.
    pub fn xattr(&self, name: &str) -> Option<&[u8]> {
        self.xattrs().iter().find(|(k, _)| **k == *name).map(|(_, v)| &**v)
    }
}

/// What a name in a folder refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Folder(Id),
    Message(Id),
}

/// An entry of a folder as [`Index::children`] lists it: a message comes with its record,
/// so a listing needs one lookup per entry, not two. The record is borrowed when the index
/// holds it, decoded from the mapped checkpoint when not.
#[derive(Clone, Debug)]
pub enum Child<'a> {
    Folder(Id),
    Message(Id, Cow<'a, Message>),
}

impl Child<'_> {
    /// The message's id, `None` for a folder.
    pub fn message_id(&self) -> Option<Id> {
        match self {
            Child::Message(id, _) => Some(*id),
            Child::Folder(_) => None,
        }
    }

    pub fn id(&self) -> Id {
        match self {
            Child::Folder(id) | Child::Message(id, _) => *id,
        }
    }
    pub fn entry(&self) -> Entry {
        match self {
            Child::Folder(id) => Entry::Folder(*id),
            Child::Message(id, _) => Entry::Message(*id),
        }
    }
}

/// A hasher for ids: they are dense, sequential integers, so a multiply (Fibonacci hashing)
/// spreads them well at a fraction of SipHash's cost. Ids are not chosen by outsiders, so
/// collision attacks are not a concern.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ *b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub type IdBuild = std::hash::BuildHasherDefault<IdHasher>;

/// The messages of a store: a dense vector plus an id-to-slot map. At a million messages
/// this costs about 96 + 32 bytes per message, where a hash map of whole messages costs
/// about 200 (its table of 96-byte slots is often half empty).
#[derive(Default, Clone)]
pub(super) struct MessageTable {
    slots: Vec<(Id, Message)>,
    by_id: HashMap<Id, u32, IdBuild>,
}

impl MessageTable {
    pub fn get(&self, id: &Id) -> Option<&Message> {
        self.by_id.get(id).map(|&i| &self.slots[i as usize].1)
    }
    pub fn get_mut(&mut self, id: &Id) -> Option<&mut Message> {
        self.by_id.get(id).map(|&i| &mut self.slots[i as usize].1)
    }
    pub fn contains_key(&self, id: &Id) -> bool {
        self.by_id.contains_key(id)
    }
    pub fn insert(&mut self, id: Id, m: Message) -> Option<Message> {
        if let Some(old) = self.get_mut(&id) {
            return Some(std::mem::replace(old, m));
        }
        self.by_id.insert(id, self.slots.len() as u32);
        self.slots.push((id, m));
        None
    }
    pub fn remove(&mut self, id: &Id) -> Option<Message> {
        let i = self.by_id.remove(id)? as usize;
        let (_, m) = self.slots.swap_remove(i);
        if let Some((moved, _)) = self.slots.get(i) {
            self.by_id.insert(*moved, i as u32);
        }
        Some(m)
    }
    pub fn reserve(&mut self, n: usize) {
        self.slots.reserve_exact(n);
        self.by_id.reserve(n);
    }
    pub fn iter(&self) -> impl Iterator<Item = (&Id, &Message)> {
        self.slots.iter().map(|(id, m)| (id, m))
    }
}

impl std::ops::Index<&Id> for MessageTable {
    type Output = Message;
    fn index(&self, id: &Id) -> &Message {
        self.get(id).expect("no message with that id")
    }
}

impl<'a> IntoIterator for &'a MessageTable {
    type Item = (&'a Id, &'a Message);
    type IntoIter = Box<dyn Iterator<Item = (&'a Id, &'a Message)> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// Folders and messages by id: the mapped checkpoint (`base`) with the changes since on
/// top. Outside `store/` only its query methods are reachable (the fields are the store's),
/// so only the committer and opening change it.
///
/// Invariant: a message of `base` that changed is in `messages` (with its inline place, if
/// any, in `inline`) or in `gone`, never both; what neither holds is as `base` says.
#[derive(Default, Clone)]
pub struct Index {
    /// Every folder: they are few, and each names its entries in `base`.
    pub(super) folders: HashMap<Id, Folder>,
    /// The mapped checkpoint; empty for a store without a format 6 checkpoint.
    pub(super) base: Arc<Base>,
    /// Messages new or changed since `base` (every message when it is empty).
    pub(super) messages: MessageTable,
    /// Messages of `base` deleted since.
    pub(super) gone: HashSet<Id, IdBuild>,
    /// How many messages there are, `base` and the changes taken together.
    pub(super) message_count: usize,
    /// Records applied: a checkpoint rebases the index on the file it wrote only if none
    /// was applied while it wrote.
    pub(super) applied: u64,
    /// The next id to hand out; never goes back, even past deleted ids.
    pub(super) next_id: Id,
    /// The last change number used by a save.
    pub(super) last_cn: u64,
    /// The commit time set by the last `Record::Time` applied; None until one is. Not kept
    /// in checkpoints: every frame written after one starts with its own time.
    pub(super) clock: Option<i64>,
    /// Replication state (see `remote.rs`): kept apart from folders and messages, which
    /// most stores never sync, so that a message costs no more for it.
    pub(super) remote_folders: HashMap<Id, FolderRemote, IdBuild>,
    pub(super) remote_messages: HashMap<Id, MessageRemote, IdBuild>,
    /// The links of linked messages deleted since: a sync engine must know what it had
    /// synced to tell a local deletion from new mail (see remote.rs); it clears each.
    pub(super) tombstones: HashMap<Id, MessageRemote, IdBuild>,
    /// Pending upload intents by message id.
    pub(super) intents: BTreeMap<Id, UploadIntent>,
    /// Messages' keywords beyond their flags, sorted and distinct; none for most messages.
    pub(super) keywords: HashMap<Id, Box<[Box<str>]>, IdBuild>,
    /// The keywords last synced, by message (see `Record::SyncedKeywords`).
    pub(super) synced_keywords: HashMap<Id, Box<[Box<str>]>, IdBuild>,
    /// Where the versions kept in the log are (see `inline.rs`), for the messages in
    /// `messages`; those only in `base` have theirs in their rows. Every other version has
    /// an object file.
    pub(super) inline: InlineMap,
}

/// Reject names no directory can hold. Returns the name for chaining.
pub fn check_name(name: &str) -> Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') || name.len() > 255 {
        return Err(Error::InvalidName(name.to_string()));
    }
    Ok(name)
}

impl Index {
    pub(super) fn new_store(attrs: Attrs) -> Index {
        let mut ix = Index { next_id: FIRST_ID, ..Default::default() };
        ix.folders.insert(ROOT, Folder::new(ROOT, Arc::from(""), attrs, attrs.mtime));
        ix
    }

    /// The name must be free in the folder, or held by `except`.
    pub(super) fn name_free(&self, folder: Id, name: &str, except: Option<Id>) -> Result<()> {
        check_name(name)?;
        self.folder(folder)?;
        match self.child_id(folder, name)? {
            Some(id) if Some(id) != except => Err(Error::Exists),
            _ => Ok(()),
        }
    }

    /// Is `id` the folder `ancestor` or below it?
    pub(super) fn is_within(&self, mut id: Id, ancestor: Id) -> bool {
        loop {
            if id == ancestor {
                return true;
            }
            match self.folders.get(&id) {
                Some(f) if id != ROOT => id = f.parent,
                _ => return false,
            }
        }
    }

    /// Check that a record can be applied; the same rules serve validation before logging
    /// and replay after a crash (where a failure means the log is damaged).
    pub(super) fn validate(&self, r: &Record) -> Result<()> {
        let verdict = self.validate_record(r);
        // A lookup that found damage in the mapped checkpoint answered "not there": nothing
        // may be decided on such an answer, now or later.
        match self.base.damage() {
            Some(e) => Err(e),
            None => verdict,
        }
    }

    fn validate_record(&self, r: &Record) -> Result<()> {
        match r {
            Record::Time { .. } => Ok(()),
            Record::FolderTouch { id } => self.folder(*id).map(|_| ()),
            Record::FolderCreate { id, parent, name, .. } => {
                if self.entry(*id).is_some() {
                    return Err(Error::Exists);
                }
                self.name_free(*parent, name, None)
            }
            Record::FolderMove { id, parent, name } => {
                if *id == ROOT {
                    return Err(Error::NotPermitted);
                }
                self.folder(*id)?;
                self.name_free(*parent, name, Some(*id))?;
                if self.is_within(*parent, *id) {
                    return Err(Error::Cycle);
                }
                Ok(())
            }
            Record::FolderDelete { id } => {
                if *id == ROOT {
                    return Err(Error::NotPermitted);
                }
                if !self.folder(*id)?.is_empty() {
                    return Err(Error::NotEmpty);
                }
                Ok(())
            }
            Record::FolderAttrs { id, .. } => self.folder(*id).map(|_| ()),
            Record::MessagePut { id, folder, name, .. } => match self.location_of(*id) {
                Some((f, n)) if f == *folder && n == name => Ok(()),
                Some(_) => Err(Error::InvalidArgument("a new version must keep folder and name".into())),
                None if self.folders.contains_key(id) => Err(Error::IsAFolder),
                None => self.name_free(*folder, name, None),
            },
            Record::MessageMove { id, folder, name } => {
                self.message(*id)?;
                self.name_free(*folder, name, Some(*id))
            }
            Record::MessageDelete { id } | Record::MessageMeta { id, .. } => self.message(*id).map(|_| ()),
            // May name a version gone since (see `apply`): then it does nothing.
            Record::Content { .. } => Ok(()),
            r @ (Record::FolderRemote { .. }
            | Record::MessageRemote { .. }
            | Record::UploadIntent(_)
            | Record::UploadIntentClear { .. }
            | Record::MessageKeywords { .. }
            | Record::SyncedKeywords { .. }) => self.validate_remote(r).expect("a replication record"),
        }
    }

    /// A folder's entries changed: as in a directory, its mtime and ctime become the commit
    /// time. Without a commit time (a record of the previous format) they stay as they were.
    fn entries_changed(&mut self, folder: Id) {
        if let (Some(t), Some(f)) = (self.clock, self.folders.get_mut(&folder)) {
            f.attrs.mtime = t;
            f.ctime = t;
        }
    }

    /// The ctime of something a record changes: the commit time, or `otherwise` for a
    /// record of the previous format (no commit time).
    fn ctime(&self, otherwise: i64) -> i64 {
        self.clock.unwrap_or(otherwise)
    }

    /// Apply a validated record. Returns the object (id, version) it made unreferenced.
    pub(super) fn apply(&mut self, r: &Record) -> Option<(Id, u64)> {
        self.applied += 1;
        match r {
            Record::Time { ns } => {
                self.clock = Some(*ns);
                None
            }
            Record::FolderTouch { id } => {
                self.entries_changed(*id);
                None
            }
            Record::FolderCreate { id, parent, name, attrs } => {
                let name: Arc<str> = Arc::from(name.as_str());
                self.add_child(*parent, name.clone(), *id);
                self.folders.get_mut(parent).expect("validated").subfolders += 1;
                self.entries_changed(*parent);
                let ctime = self.ctime(attrs.mtime);
                self.folders.insert(*id, Folder::new(*parent, name, *attrs, ctime));
                self.bump_id(*id);
                None
            }
            Record::FolderMove { id, parent, name } => {
                let (old_parent, old_name) = {
                    let f = &self.folders[id];
                    (f.parent, f.name.clone())
                };
                self.remove_child(old_parent, &old_name);
                self.folders.get_mut(&old_parent).expect("parent").subfolders -= 1;
                let name: Arc<str> = Arc::from(name.as_str());
                self.add_child(*parent, name.clone(), *id);
                self.folders.get_mut(parent).expect("validated").subfolders += 1;
                self.entries_changed(old_parent);
                self.entries_changed(*parent);
                let ctime = self.ctime(self.folders[id].ctime);
                let f = self.folders.get_mut(id).expect("validated");
                f.parent = *parent;
                f.name = name;
                f.ctime = ctime;
                None
            }
            Record::FolderDelete { id } => {
                let f = self.folders.remove(id).expect("validated");
                self.remote_folders.remove(id);
                self.remove_child(f.parent, &f.name);
                self.folders.get_mut(&f.parent).expect("parent").subfolders -= 1;
                self.entries_changed(f.parent);
                None
            }
            Record::FolderAttrs { id, attrs } => {
                let ctime = self.ctime(attrs.mtime);
                let f = self.folders.get_mut(id).expect("validated");
                f.attrs = *attrs;
                f.ctime = ctime;
                None
            }
            Record::MessagePut { id, folder, name, version, size, crc, attrs, flags, xattrs } => {
                self.last_cn = self.last_cn.max(*version);
                self.bump_id(*id);
                self.bump_id(*version);
                let xattrs = (!xattrs.is_empty()).then(|| Box::new(xattrs.clone()));
                let ctime = self.ctime(attrs.mtime);
                if self.materialize(*id) {
                    // A new version of a message: its folder's entries are the same.
                    let m = self.messages.get_mut(id).expect("materialized");
                    let old = m.version;
                    m.version = *version;
                    m.size = *size;
                    m.crc = *crc;
                    m.attrs = *attrs;
                    m.ctime = ctime;
                    m.flags = *flags;
                    m.xattrs = xattrs;
                    // An inline version has no object to remove.
                    return (old != *version && !self.inline.remove(old)).then_some((*id, old));
                }
                let name: Arc<str> = Arc::from(name.as_str());
                self.add_child(*folder, name.clone(), *id);
                self.entries_changed(*folder);
                let m = Message {
                    folder: *folder,
                    version: *version,
                    size: *size,
                    attrs: *attrs,
                    ctime,
                    crc: *crc,
                    flags: *flags,
                    name,
                    xattrs,
                };
                self.messages.insert(*id, m);
                self.message_count += 1;
                None
            }
            Record::MessageMove { id, folder, name } => {
                let clock = self.clock;
                self.materialize(*id);
                let m = self.messages.get_mut(id).expect("validated");
                let (old_folder, old_name) = (m.folder, m.name.clone());
                let name: Arc<str> = Arc::from(name.as_str());
                m.folder = *folder;
                m.name = name.clone();
                // As on ext4, renaming a file changes its own ctime too.
                m.ctime = clock.unwrap_or(m.ctime);
                self.remove_child(old_folder, &old_name);
                self.add_child(*folder, name, *id);
                self.entries_changed(old_folder);
                self.entries_changed(*folder);
                None
            }
            Record::MessageDelete { id } => {
                self.materialize(*id);
                let m = self.messages.remove(id).expect("validated");
                if self.base_row(*id).is_some() {
                    self.gone.insert(*id);
                }
                self.message_count -= 1;
                // A link never outlives its message, but it leaves a tombstone; an upload
                // intent outlives it (see remote.rs).
                if let Some(l) = self.remote_messages.remove(id) {
                    self.tombstones.insert(*id, l);
                }
                self.synced_keywords.remove(id);
                self.keywords.remove(id);
                self.remove_child(m.folder, &m.name);
                self.entries_changed(m.folder);
                (!self.inline.remove(m.version)).then_some((*id, m.version))
            }
            Record::MessageMeta { id, attrs, flags, xattrs } => {
                let ctime = self.ctime(attrs.mtime);
                self.materialize(*id);
                let m = self.messages.get_mut(id).expect("validated");
                m.attrs = *attrs;
                m.ctime = ctime;
                m.flags = *flags;
                m.xattrs = (!xattrs.is_empty()).then(|| Box::new(xattrs.clone()));
                None
            }
            Record::Content { id, version, at, .. } => {
                // A relocation logged in the same group as a save that replaced the version
                // finds it gone: nothing to move.
                // Only the place changes: a message of the mapped checkpoint stays there.
                if self.version_of(*id) == Some(*version) {
                    let old = self.inline_at(*id, *version);
                    self.inline.relocate(*version, old, *at);
                }
                None
            }
            r @ (Record::FolderRemote { .. }
            | Record::MessageRemote { .. }
            | Record::UploadIntent(_)
            | Record::UploadIntentClear { .. }
            | Record::MessageKeywords { .. }
            | Record::SyncedKeywords { .. }) => {
                let known = self.apply_remote(r);
                debug_assert!(known, "a replication record");
                None
            }
        }
    }

    fn bump_id(&mut self, id: Id) {
        if id >= self.next_id {
            self.next_id = id + 1;
        }
    }

    /// The path of a folder from the root, `/`-separated, for messages to people.
    pub fn folder_path(&self, mut id: Id) -> String {
        let mut parts = Vec::new();
        while id != ROOT {
            match self.folders.get(&id) {
                Some(f) => {
                    parts.push(f.name.to_string());
                    id = f.parent;
                }
                None => break,
            }
        }
        parts.reverse();
        parts.join("/")
    }
}

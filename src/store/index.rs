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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::error::{Error, Result};
use super::inline::{Bytes, InlineMap, LogLoc};
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
    /// Every child, folder or message, by name: one namespace, as in a directory.
    pub(super) children: BTreeMap<Arc<str>, Id>,
    pub(super) subfolders: u32,
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
        self.children.len()
    }
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
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

/// A logged change. Each operation logs one or two of these in one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The commit time (ns since the epoch) of the records after it, until the next `Time`.
    /// Every frame the committer writes starts with one, so that replay gives every ctime
    /// and every folder mtime the value the live apply gave (never the time of the replay).
    /// Records replayed with no time before them (logs of the previous format, and the
    /// frame `msgfs init` writes) take ctime from the mtime they carry and leave folder
    /// times alone, as that format did.
    Time {
        ns: i64,
    },
    /// A folder's entries changed without a record of its own naming it (the destination
    /// of a message renamed over another): its mtime and ctime become the commit time.
    FolderTouch {
        id: Id,
    },
    FolderCreate {
        id: Id,
        parent: Id,
        name: String,
        attrs: Attrs,
    },
    FolderMove {
        id: Id,
        parent: Id,
        name: String,
    },
    FolderDelete {
        id: Id,
    },
    FolderAttrs {
        id: Id,
        attrs: Attrs,
    },
    /// A new message, or a new version of one (content in object `id`-`version`).
    MessagePut {
        id: Id,
        folder: Id,
        name: String,
        version: u64,
        size: u64,
        crc: u32,
        attrs: Attrs,
        flags: u8,
        xattrs: Xattrs,
    },
    MessageMove {
        id: Id,
        folder: Id,
        name: String,
    },
    MessageDelete {
        id: Id,
    },
    MessageMeta {
        id: Id,
        attrs: Attrs,
        flags: u8,
        xattrs: Xattrs,
    },
    /// Set (Some) or clear (None) a folder's remote replica state (see `remote.rs`).
    FolderRemote {
        id: Id,
        state: Option<FolderRemote>,
    },
    /// Set (Some) or clear (None) a message's link to its remote copy. Logged right after
    /// the `MessagePut` of a download, in the same frame.
    MessageRemote {
        id: Id,
        link: Option<MessageRemote>,
    },
    /// A durable upload intent, kept until a link for its message lands or it is cleared.
    UploadIntent(UploadIntent),
    UploadIntentClear {
        message: Id,
    },
    /// Replace a message's keywords (beyond its flags); an empty list clears them.
    MessageKeywords {
        id: Id,
        keywords: Vec<String>,
    },
    /// The keywords a message had on both sides when last synced: the base of a three-way
    /// keyword merge (an empty list clears it). Goes with the message.
    SyncedKeywords {
        id: Id,
        keywords: Vec<String>,
    },
    /// Version `version` of message `id` lives in the log at `at` (see `inline.rs`): right
    /// after its `MessagePut`, or later to relocate it. `data` holds the bytes on their way
    /// to the log (None once read back); the committer fills `at` as it writes the frame.
    /// Applies only while `version` is the message's current one.
    Content {
        id: Id,
        version: u64,
        at: LogLoc,
        data: Option<Bytes>,
    },
}

impl Record {
    /// The store format that first had this record (see `open.rs`); 0 for the oldest ones.
    pub fn format_needed(&self) -> u32 {
        match self {
            Record::Content { .. } => 4,
            r if r.is_remote() => 3,
            _ => 0,
        }
    }

    /// Is it one of the replication records (format 3 of the store, see `open.rs`)?
    pub fn is_remote(&self) -> bool {
        matches!(
            self,
            Record::FolderRemote { .. }
                | Record::MessageRemote { .. }
                | Record::UploadIntent(_)
                | Record::UploadIntentClear { .. }
                | Record::MessageKeywords { .. }
                | Record::SyncedKeywords { .. }
        )
    }
}

/// What a name in a folder refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Folder(Id),
    Message(Id),
}

/// An entry of a folder as [`Index::children`] lists it: a message comes with its record,
/// so a listing needs one map lookup per entry, not two.
#[derive(Clone, Copy, Debug)]
pub enum Child<'a> {
    Folder(Id),
    Message(Id, &'a Message),
}

impl Child<'_> {
    /// The message's id, `None` for a folder.
    pub fn message_id(&self) -> Option<Id> {
        match *self {
            Child::Message(id, _) => Some(id),
            Child::Folder(_) => None,
        }
    }

    pub fn id(&self) -> Id {
        match *self {
            Child::Folder(id) | Child::Message(id, _) => id,
        }
    }
    pub fn entry(&self) -> Entry {
        match *self {
            Child::Folder(id) => Entry::Folder(id),
            Child::Message(id, _) => Entry::Message(id),
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
    pub fn len(&self) -> usize {
        self.slots.len()
    }
    /// Slots allocated (for memory estimates).
    pub fn capacity(&self) -> usize {
        self.slots.capacity()
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

/// Folders and messages by id. Outside `store/` only its query methods are reachable (the
/// fields are the store's), so only the committer and opening change it.
#[derive(Default, Clone)]
pub struct Index {
    pub(super) folders: HashMap<Id, Folder>,
    pub(super) messages: MessageTable,
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
    /// Where the versions kept in the log are (see `inline.rs`); every other version has
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
        ix.folders.insert(
            ROOT,
            Folder {
                parent: ROOT,
                name: Arc::from(""),
                attrs,
                ctime: attrs.mtime,
                children: BTreeMap::new(),
                subfolders: 0,
            },
        );
        ix
    }

    /// What `id` is: a folder, a message, or nothing (deleted, or never committed).
    pub fn entry(&self, id: Id) -> Option<Entry> {
        if self.folders.contains_key(&id) {
            Some(Entry::Folder(id))
        } else if self.messages.contains_key(&id) {
            Some(Entry::Message(id))
        } else {
            None
        }
    }

    /// What `name` in `folder` refers to.
    pub fn lookup(&self, folder: Id, name: &str) -> Option<Entry> {
        let id = *self.folders.get(&folder)?.children.get(name)?;
        self.entry(id)
    }

    pub fn folder(&self, id: Id) -> Result<&Folder> {
        match self.folders.get(&id) {
            Some(f) => Ok(f),
            None if self.messages.contains_key(&id) => Err(Error::NotAFolder),
            None => Err(Error::NotFound),
        }
    }

    pub fn message(&self, id: Id) -> Result<&Message> {
        match self.messages.get(&id) {
            Some(m) => Ok(m),
            None if self.folders.contains_key(&id) => Err(Error::IsAFolder),
            None => Err(Error::NotFound),
        }
    }

    /// The entries of `folder`, in name order (bytewise).
    pub fn children(&self, folder: Id) -> Result<impl Iterator<Item = (&str, Child<'_>)> + '_> {
        let f = self.folder(folder)?;
        Ok(f.children.iter().map(move |(name, &id)| {
            // A child is either: the map holds only folders' and messages' ids.
            let child = match self.messages.get(&id) {
                Some(m) => Child::Message(id, m),
                None => Child::Folder(id),
            };
            (&**name, child)
        }))
    }

    /// Is `id` a folder?
    pub fn is_folder(&self, id: Id) -> bool {
        self.folders.contains_key(&id)
    }

    /// Is `id` a folder with no entries? (False for anything that is not a folder.)
    pub fn is_empty_folder(&self, id: Id) -> bool {
        self.folders.get(&id).is_some_and(Folder::is_empty)
    }

    /// The current version of message `id`, if it is one.
    pub fn version_of(&self, id: Id) -> Option<u64> {
        self.messages.get(&id).map(|m| m.version)
    }

    /// The folder and name of message `id`, if it is one.
    pub fn location_of(&self, id: Id) -> Option<(Id, &str)> {
        self.messages.get(&id).map(|m| (m.folder, &*m.name))
    }

    /// How many folders the store has, the root not counted.
    pub fn folder_count(&self) -> usize {
        self.folders.len() - 1
    }

    /// How many messages the store has.
    pub fn message_count(&self) -> usize {
        self.messages.len()
    }

    /// Every folder, the root included, in no particular order.
    pub fn folders(&self) -> impl Iterator<Item = (Id, &Folder)> {
        self.folders.iter().map(|(&id, f)| (id, f))
    }

    /// Every message, in no particular order.
    pub fn messages(&self) -> impl Iterator<Item = (Id, &Message)> {
        self.messages.iter().map(|(&id, m)| (id, m))
    }

    /// Message slots allocated, used or not (for memory estimates).
    pub fn message_capacity(&self) -> usize {
        self.messages.capacity()
    }

    /// The name must be free in the folder, or held by `except`.
    pub(super) fn name_free(&self, folder: Id, name: &str, except: Option<Id>) -> Result<()> {
        check_name(name)?;
        match self.folder(folder)?.children.get(name) {
            Some(&id) if Some(id) != except => Err(Error::Exists),
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
                if !self.folder(*id)?.children.is_empty() {
                    return Err(Error::NotEmpty);
                }
                Ok(())
            }
            Record::FolderAttrs { id, .. } => self.folder(*id).map(|_| ()),
            Record::MessagePut { id, folder, name, .. } => match self.messages.get(id) {
                Some(m) if m.folder == *folder && *m.name == **name => Ok(()),
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
                let p = self.folders.get_mut(parent).expect("validated");
                p.children.insert(name.clone(), *id);
                p.subfolders += 1;
                self.entries_changed(*parent);
                let ctime = self.ctime(attrs.mtime);
                self.folders.insert(
                    *id,
                    Folder { parent: *parent, name, attrs: *attrs, ctime, children: BTreeMap::new(), subfolders: 0 },
                );
                self.bump_id(*id);
                None
            }
            Record::FolderMove { id, parent, name } => {
                let (old_parent, old_name) = {
                    let f = &self.folders[id];
                    (f.parent, f.name.clone())
                };
                let op = self.folders.get_mut(&old_parent).expect("parent");
                op.children.remove(&old_name);
                op.subfolders -= 1;
                let name: Arc<str> = Arc::from(name.as_str());
                let np = self.folders.get_mut(parent).expect("validated");
                np.children.insert(name.clone(), *id);
                np.subfolders += 1;
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
                let p = self.folders.get_mut(&f.parent).expect("parent");
                p.children.remove(&f.name);
                p.subfolders -= 1;
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
                if let Some(m) = self.messages.get_mut(id) {
                    // A new version of a message: its folder's entries are the same.
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
                self.folders.get_mut(folder).expect("validated").children.insert(name.clone(), *id);
                self.entries_changed(*folder);
                self.messages.insert(
                    *id,
                    Message {
                        folder: *folder,
                        version: *version,
                        size: *size,
                        attrs: *attrs,
                        ctime,
                        crc: *crc,
                        flags: *flags,
                        name,
                        xattrs,
                    },
                );
                None
            }
            Record::MessageMove { id, folder, name } => {
                let clock = self.clock;
                let m = self.messages.get_mut(id).expect("validated");
                let (old_folder, old_name) = (m.folder, m.name.clone());
                let name: Arc<str> = Arc::from(name.as_str());
                m.folder = *folder;
                m.name = name.clone();
                // As on ext4, renaming a file changes its own ctime too.
                m.ctime = clock.unwrap_or(m.ctime);
                self.folders.get_mut(&old_folder).expect("folder").children.remove(&old_name);
                self.folders.get_mut(folder).expect("validated").children.insert(name, *id);
                self.entries_changed(old_folder);
                self.entries_changed(*folder);
                None
            }
            Record::MessageDelete { id } => {
                let m = self.messages.remove(id).expect("validated");
                // A link never outlives its message, but it leaves a tombstone; an upload
                // intent outlives it (see remote.rs).
                if let Some(l) = self.remote_messages.remove(id) {
                    self.tombstones.insert(*id, l);
                }
                self.synced_keywords.remove(id);
                self.keywords.remove(id);
                self.folders.get_mut(&m.folder).expect("folder").children.remove(&m.name);
                self.entries_changed(m.folder);
                (!self.inline.remove(m.version)).then_some((*id, m.version))
            }
            Record::MessageMeta { id, attrs, flags, xattrs } => {
                let ctime = self.ctime(attrs.mtime);
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
                if self.messages.get(id).is_some_and(|m| m.version == *version) {
                    self.inline.set(*version, *at);
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

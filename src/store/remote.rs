//! Replication state kept for a sync engine: per folder the state of its remote replica,
//! per message its link to the remote copy and its keywords, and durable upload intents.
//!
//! The store knows nothing of any protocol: it keeps the numbers a sync engine gives it
//! (an IMAP engine puts UIDVALIDITY, HIGHESTMODSEQ, UIDNEXT and UIDs here), in its own log
//! (records 11 to 16, see msgfs(5)) and checkpoints, so they are as durable and as atomic
//! as the messages they describe. Invariants the index keeps, live and on replay:
//!
//! - a message link exists only while its message does (deleting the message turns it into
//!   a tombstone, which the engine clears with a `MessageRemote` record without link once
//!   it has acted on the deletion; replaying a link to a missing message is damage), and a
//!   link committed with a download is in the very frame of the message's `MessagePut`;
//! - a folder's remote state goes with the folder;
//! - an upload intent lasts until a link for its message lands or it is cleared, even if
//!   the message is deleted meanwhile: the upload may have reached the server, so the sync
//!   engine must look it up there before it forgets it.

use super::codec::{Dec, Enc};
use super::commit::{Op, Outcome, Save, Source};
use super::error::{Error, Result};
use super::index::{Id, Index, Record};
use super::{AttrChange, NewMessage, Store};

/// The state of a folder's remote replica, as the sync engine last committed it. The
/// numbers mean what the engine says; for IMAP they are the mailbox's UIDVALIDITY,
/// HIGHESTMODSEQ and UIDNEXT, and `cursor` is a resume point of the engine's choosing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderRemote {
    /// The folder's name on the remote side.
    pub name: String,
    pub uidvalidity: u64,
    pub highestmodseq: u64,
    pub uidnext: u64,
    pub cursor: u64,
}

/// A message's link to its remote copy: what was last synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageRemote {
    /// The folder whose remote replica holds the copy (the message may have been moved
    /// locally since).
    pub folder: Id,
    /// The copy's id there (an IMAP UID).
    pub uid: u64,
    /// Its modification sequence when last synced (0 if the server has none).
    pub modseq: u64,
    /// The [`super::flags`] last synced: the base of a three-way flag merge.
    pub flags: u8,
    /// The message version last synced: a newer local version is a local change.
    pub version: u64,
}

/// The remote side of a downloaded message, committed with the message itself: its folder
/// and version are those of the save.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteCopy {
    pub uid: u64,
    pub modseq: u64,
    pub flags: u8,
}

/// One message for [`Store::replace_synced_batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replacement {
    pub id: Id,
    pub base_version: u64,
    pub staged: super::Staged,
    pub size: u64,
    pub crc: u32,
    pub flags: u8,
    pub remote: RemoteCopy,
}

/// A durable note, written before an upload, that `message` at `version` (`size` bytes)
/// may reach `folder`'s remote replica, whose next uid was `uidnext` before it. A resumed
/// sync finds what it sent by looking from `uidnext` on, instead of sending it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadIntent {
    pub folder: Id,
    pub message: Id,
    pub version: u64,
    pub size: u64,
    pub uidnext: u64,
    /// The flags sent with it: the base of the first flag merge once it is found there.
    pub flags: u8,
    /// A checksum of what was sent, of the engine's choosing (for IMAP: CRC32C of the
    /// content with line ends made LF), to find it again after the message is deleted.
    pub crc: u32,
}

/// One change to replication state, for [`Store::update_remote`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteChange {
    /// Set (Some) or clear (None) a folder's remote state.
    Folder(Id, Option<FolderRemote>),
    /// Set (Some) or clear (None) an existing message's link; setting it clears the
    /// message's upload intent. None for a deleted message clears its tombstone.
    Message(Id, Option<MessageRemote>),
    /// Record an upload intent (replacing any earlier one for the message).
    Intent(UploadIntent),
    /// Drop a message's upload intent; nothing if it has none.
    ClearIntent(Id),
    /// Replace a message's keywords beyond its flags (empty: none).
    Keywords(Id, Vec<String>),
    /// Record the keywords last synced for a message (empty: none).
    SyncedKeywords(Id, Vec<String>),
}

impl RemoteChange {
    pub(super) fn record(&self) -> Record {
        match self {
            RemoteChange::Folder(id, state) => Record::FolderRemote { id: *id, state: state.clone() },
            RemoteChange::Message(id, link) => Record::MessageRemote { id: *id, link: *link },
            RemoteChange::Intent(i) => Record::UploadIntent(*i),
            RemoteChange::ClearIntent(id) => Record::UploadIntentClear { message: *id },
            RemoteChange::Keywords(id, k) => Record::MessageKeywords { id: *id, keywords: k.clone() },
            RemoteChange::SyncedKeywords(id, k) => Record::SyncedKeywords { id: *id, keywords: k.clone() },
        }
    }

    /// The folder or message it changes (operations on one go one per group).
    pub(super) fn entity(&self) -> Id {
        match self {
            RemoteChange::Folder(id, _)
            | RemoteChange::Message(id, _)
            | RemoteChange::ClearIntent(id)
            | RemoteChange::Keywords(id, _)
            | RemoteChange::SyncedKeywords(id, _) => *id,
            RemoteChange::Intent(i) => i.message,
        }
    }
}

// ---- log records ------------------------------------------------------------------------

pub(super) const TAG_FOLDER_REMOTE: u8 = 11;
pub(super) const TAG_MESSAGE_REMOTE: u8 = 12;
pub(super) const TAG_UPLOAD_INTENT: u8 = 13;
pub(super) const TAG_UPLOAD_INTENT_CLEAR: u8 = 14;
pub(super) const TAG_MESSAGE_KEYWORDS: u8 = 15;
pub(super) const TAG_SYNCED_KEYWORDS: u8 = 16;

/// The longest keyword kept, in bytes.
pub const MAX_KEYWORD: usize = 255;

/// A keyword is 1 to [`MAX_KEYWORD`] bytes with no whitespace or control characters (so
/// that a list of them can be written space-separated, as IMAP and `user.msgfs.flags` do).
pub fn check_keywords(list: &[String]) -> Result<()> {
    for k in list {
        if k.is_empty() || k.len() > MAX_KEYWORD || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::InvalidArgument(format!("{k:?} is not a keyword")));
        }
    }
    Ok(())
}

fn put_keywords(e: &mut Enc, list: &[impl AsRef<str>]) {
    e.u32(list.len() as u32);
    for k in list {
        e.str(k.as_ref());
    }
}

fn get_keywords(d: &mut Dec) -> Result<Vec<String>> {
    let n = d.u32()?;
    let mut v = Vec::with_capacity(n.min(1024) as usize);
    for _ in 0..n {
        v.push(d.str()?.to_string());
    }
    Ok(v)
}

fn put_folder_remote(e: &mut Enc, s: &FolderRemote) {
    e.str(&s.name);
    e.u64(s.uidvalidity);
    e.u64(s.highestmodseq);
    e.u64(s.uidnext);
    e.u64(s.cursor);
}

fn get_folder_remote(d: &mut Dec) -> Result<FolderRemote> {
    Ok(FolderRemote {
        name: d.str()?.to_string(),
        uidvalidity: d.u64()?,
        highestmodseq: d.u64()?,
        uidnext: d.u64()?,
        cursor: d.u64()?,
    })
}

fn put_link(e: &mut Enc, l: &MessageRemote) {
    e.u64(l.folder);
    e.u64(l.uid);
    e.u64(l.modseq);
    e.u8(l.flags);
    e.u64(l.version);
}

fn get_link(d: &mut Dec) -> Result<MessageRemote> {
    Ok(MessageRemote { folder: d.u64()?, uid: d.u64()?, modseq: d.u64()?, flags: d.u8()?, version: d.u64()? })
}

fn put_intent(e: &mut Enc, i: &UploadIntent) {
    e.u64(i.folder);
    e.u64(i.message);
    e.u64(i.version);
    e.u64(i.size);
    e.u64(i.uidnext);
    e.u8(i.flags);
    e.u32(i.crc);
}

fn get_intent(d: &mut Dec) -> Result<UploadIntent> {
    Ok(UploadIntent {
        folder: d.u64()?,
        message: d.u64()?,
        version: d.u64()?,
        size: d.u64()?,
        uidnext: d.u64()?,
        flags: d.u8()?,
        crc: d.u32()?,
    })
}

/// A presence byte: 1 then the value (set), or 0 alone (clear). Anything else is damage.
fn get_present(d: &mut Dec) -> Result<bool> {
    match d.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(Error::corrupt("log record", format!("presence byte {b} is neither 0 nor 1"))),
    }
}

/// Encode a replication record (tag included); false if `r` is not one.
pub(super) fn encode_record(e: &mut Enc, r: &Record) -> bool {
    match r {
        Record::FolderRemote { id, state } => {
            e.u8(TAG_FOLDER_REMOTE);
            e.u64(*id);
            e.u8(state.is_some() as u8);
            if let Some(s) = state {
                put_folder_remote(e, s);
            }
        }
        Record::MessageRemote { id, link } => {
            e.u8(TAG_MESSAGE_REMOTE);
            e.u64(*id);
            e.u8(link.is_some() as u8);
            if let Some(l) = link {
                put_link(e, l);
            }
        }
        Record::UploadIntent(i) => {
            e.u8(TAG_UPLOAD_INTENT);
            put_intent(e, i);
        }
        Record::UploadIntentClear { message } => {
            e.u8(TAG_UPLOAD_INTENT_CLEAR);
            e.u64(*message);
        }
        Record::MessageKeywords { id, keywords } => {
            e.u8(TAG_MESSAGE_KEYWORDS);
            e.u64(*id);
            put_keywords(e, keywords);
        }
        Record::SyncedKeywords { id, keywords } => {
            e.u8(TAG_SYNCED_KEYWORDS);
            e.u64(*id);
            put_keywords(e, keywords);
        }
        _ => return false,
    }
    true
}

/// Decode the body of a replication record whose tag was read; None if `tag` is not one.
pub(super) fn decode_record(tag: u8, d: &mut Dec) -> Option<Result<Record>> {
    let r = match tag {
        TAG_FOLDER_REMOTE => (|| {
            let id = d.u64()?;
            let state = if get_present(d)? { Some(get_folder_remote(d)?) } else { None };
            Ok(Record::FolderRemote { id, state })
        })(),
        TAG_MESSAGE_REMOTE => (|| {
            let id = d.u64()?;
            let link = if get_present(d)? { Some(get_link(d)?) } else { None };
            Ok(Record::MessageRemote { id, link })
        })(),
        TAG_UPLOAD_INTENT => get_intent(d).map(Record::UploadIntent),
        TAG_UPLOAD_INTENT_CLEAR => d.u64().map(|message| Record::UploadIntentClear { message }),
        TAG_MESSAGE_KEYWORDS => (|| Ok(Record::MessageKeywords { id: d.u64()?, keywords: get_keywords(d)? }))(),
        TAG_SYNCED_KEYWORDS => (|| Ok(Record::SyncedKeywords { id: d.u64()?, keywords: get_keywords(d)? }))(),
        _ => return None,
    };
    Some(r)
}

// ---- checkpoint section -----------------------------------------------------------------

/// The section of checkpoint format 4, after the replication section: tombstones, then
/// the keywords last synced.
pub(super) fn encode_tombstones(e: &mut Enc, ix: &Index) {
    let mut t: Vec<_> = ix.tombstones.iter().collect();
    t.sort_by_key(|(id, _)| **id);
    e.u64(t.len() as u64);
    for (id, l) in t {
        e.u64(*id);
        put_link(e, l);
    }
    let mut k: Vec<_> = ix.synced_keywords.iter().collect();
    k.sort_by_key(|(id, _)| **id);
    e.u64(k.len() as u64);
    for (id, list) in k {
        e.u64(*id);
        put_keywords(e, list);
    }
}

/// Read the tombstone section: links of messages the index no longer holds.
pub(super) fn decode_tombstones(d: &mut Dec, ix: &mut Index, place: &str) -> Result<()> {
    for _ in 0..d.u64()? {
        let id = d.u64()?;
        let l = get_link(d)?;
        if ix.has_message(id) {
            return Err(Error::corrupt(place, format!("tombstone for message {id}, which exists")));
        }
        ix.tombstones.insert(id, l);
    }
    for _ in 0..d.u64()? {
        let id = d.u64()?;
        let k = get_keywords(d)?;
        if !ix.has_message(id) {
            return Err(Error::corrupt(place, format!("keywords synced for unknown message {id}")));
        }
        ix.synced_keywords.insert(id, sorted(&k));
    }
    Ok(())
}

/// The replication section of a checkpoint (format 3), in id order so that equal indexes
/// give equal bytes.
pub(super) fn encode_checkpoint(e: &mut Enc, ix: &Index) {
    let mut folders: Vec<_> = ix.remote_folders.iter().collect();
    folders.sort_by_key(|(id, _)| **id);
    e.u64(folders.len() as u64);
    for (id, s) in folders {
        e.u64(*id);
        put_folder_remote(e, s);
    }
    let mut links: Vec<_> = ix.remote_messages.iter().collect();
    links.sort_by_key(|(id, _)| **id);
    e.u64(links.len() as u64);
    for (id, l) in links {
        e.u64(*id);
        put_link(e, l);
    }
    e.u64(ix.intents.len() as u64);
    for i in ix.intents.values() {
        put_intent(e, i);
    }
    let mut keywords: Vec<_> = ix.keywords.iter().collect();
    keywords.sort_by_key(|(id, _)| **id);
    e.u64(keywords.len() as u64);
    for (id, k) in keywords {
        e.u64(*id);
        put_keywords(e, k);
    }
}

/// Read the replication section into an index whose folders and messages are loaded;
/// state for a folder or message it does not hold is damage.
pub(super) fn decode_checkpoint(d: &mut Dec, ix: &mut Index, place: &str) -> Result<()> {
    for _ in 0..d.u64()? {
        let id = d.u64()?;
        let s = get_folder_remote(d)?;
        if !ix.folders.contains_key(&id) {
            return Err(Error::corrupt(place, format!("remote state for unknown folder {id}")));
        }
        ix.remote_folders.insert(id, s);
    }
    for _ in 0..d.u64()? {
        let id = d.u64()?;
        let l = get_link(d)?;
        if !ix.has_message(id) {
            return Err(Error::corrupt(place, format!("remote link for unknown message {id}")));
        }
        ix.remote_messages.insert(id, l);
    }
    for _ in 0..d.u64()? {
        let i = get_intent(d)?;
        ix.intents.insert(i.message, i);
    }
    for _ in 0..d.u64()? {
        let id = d.u64()?;
        let k = get_keywords(d)?;
        if !ix.has_message(id) {
            return Err(Error::corrupt(place, format!("keywords for unknown message {id}")));
        }
        ix.set_keywords(id, &k);
    }
    Ok(())
}

/// A keyword list sorted and distinct.
fn sorted(list: &[String]) -> Box<[Box<str>]> {
    let mut k: Vec<Box<str>> = list.iter().map(|s| Box::from(s.as_str())).collect();
    k.sort();
    k.dedup();
    k.into_boxed_slice()
}

// ---- the index: rules, changes and queries ------------------------------------------------

impl Index {
    /// Check a replication record (see [`Index::validate`]); None if `r` is not one.
    pub(super) fn validate_remote(&self, r: &Record) -> Option<Result<()>> {
        let res = match r {
            Record::FolderRemote { id, .. } => self.folder(*id).map(drop),
            // Clearing a deleted message's tombstone.
            Record::MessageRemote { id, link: None } if self.tombstones.contains_key(id) => Ok(()),
            Record::MessageRemote { id, link } => self.message(*id).and_then(|_| match link {
                Some(l) if !self.folders.contains_key(&l.folder) => {
                    Err(Error::InvalidArgument(format!("remote link names folder {} which is not one", l.folder)))
                }
                _ => Ok(()),
            }),
            Record::UploadIntent(i) => self.message(i.message).and_then(|_| self.folder(i.folder).map(drop)),
            Record::UploadIntentClear { .. } => Ok(()),
            Record::MessageKeywords { id, keywords } | Record::SyncedKeywords { id, keywords } => {
                self.message(*id).and_then(|_| check_keywords(keywords))
            }
            _ => return None,
        };
        Some(res)
    }

    /// Apply a validated replication record; false if `r` is not one.
    pub(super) fn apply_remote(&mut self, r: &Record) -> bool {
        match r {
            Record::FolderRemote { id, state: Some(s) } => drop(self.remote_folders.insert(*id, s.clone())),
            Record::FolderRemote { id, state: None } => drop(self.remote_folders.remove(id)),
            Record::MessageRemote { id, link: Some(l) } => {
                // The upload it was meant for has landed.
                self.intents.remove(id);
                self.remote_messages.insert(*id, *l);
            }
            Record::MessageRemote { id, link: None } => {
                self.remote_messages.remove(id);
                self.tombstones.remove(id);
            }
            Record::UploadIntent(i) => drop(self.intents.insert(i.message, *i)),
            Record::UploadIntentClear { message } => drop(self.intents.remove(message)),
            Record::MessageKeywords { id, keywords } => self.set_keywords(*id, keywords),
            Record::SyncedKeywords { id, keywords } => {
                let k = sorted(keywords);
                if k.is_empty() {
                    self.synced_keywords.remove(id);
                } else {
                    self.synced_keywords.insert(*id, k);
                }
            }
            _ => return false,
        }
        true
    }

    /// Keep a message's keywords sorted and distinct, and none at all for an empty list.
    fn set_keywords(&mut self, id: Id, list: &[String]) {
        let k = sorted(list);
        if k.is_empty() {
            self.keywords.remove(&id);
        } else {
            self.keywords.insert(id, k);
        }
    }

    /// The keywords message `id` had on both sides when last synced (empty if none or
    /// never synced).
    pub fn synced_keywords(&self, id: Id) -> &[Box<str>] {
        self.synced_keywords.get(&id).map_or(&[], |k| k)
    }

    /// Message `id`'s keywords beyond its flags, sorted and distinct (empty if none).
    pub fn message_keywords(&self, id: Id) -> &[Box<str>] {
        self.keywords.get(&id).map_or(&[], |k| k)
    }

    /// The remote state of folder `id`, if it has one.
    pub fn folder_remote(&self, id: Id) -> Option<&FolderRemote> {
        self.remote_folders.get(&id)
    }

    /// Every folder with remote state, in no particular order.
    pub fn folder_remotes(&self) -> impl Iterator<Item = (Id, &FolderRemote)> {
        self.remote_folders.iter().map(|(&id, s)| (id, s))
    }

    /// Message `id`'s link to its remote copy, if it has one.
    pub fn message_remote(&self, id: Id) -> Option<&MessageRemote> {
        self.remote_messages.get(&id)
    }

    /// Every message with a remote link, in no particular order.
    pub fn message_remotes(&self) -> impl Iterator<Item = (Id, &MessageRemote)> {
        self.remote_messages.iter().map(|(&id, l)| (id, l))
    }

    /// The links of deleted messages not yet cleared (see [`RemoteChange::Message`]).
    pub fn tombstones(&self) -> impl Iterator<Item = (Id, &MessageRemote)> {
        self.tombstones.iter().map(|(&id, l)| (id, l))
    }

    /// The upload intent of message `id`, if one is pending.
    pub fn upload_intent(&self, id: Id) -> Option<&UploadIntent> {
        self.intents.get(&id)
    }

    /// Every pending upload intent, by message id.
    pub fn upload_intents(&self) -> impl Iterator<Item = &UploadIntent> {
        self.intents.values()
    }
}

// ---- the store: committing replication state ----------------------------------------------

/// A downloaded message to commit with its link, for [`Store::import_synced`].
#[derive(Clone, Debug)]
pub struct SyncedMessage {
    /// The message; its `flags` are the ones it gets locally (normally `remote.flags`).
    pub message: NewMessage,
    /// What its link records, with the message's folder and version.
    pub remote: RemoteCopy,
    /// Its keywords beyond the flags (committed in the same frame).
    pub keywords: Vec<String>,
}

impl Store {
    /// Commit replication changes, all in one frame (all or none).
    pub fn update_remote(&self, changes: Vec<RemoteChange>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.run(Op::Remote(changes)).map(drop)
    }

    /// Set (Some) or clear (None) folder `id`'s remote state.
    pub fn set_folder_remote(&self, id: Id, state: Option<FolderRemote>) -> Result<()> {
        self.update_remote(vec![RemoteChange::Folder(id, state)])
    }

    /// Set (Some) or clear (None) message `id`'s remote link (after an upload is
    /// acknowledged with its uid, say); setting it clears the message's upload intent.
    pub fn set_message_remote(&self, id: Id, link: Option<MessageRemote>) -> Result<()> {
        self.update_remote(vec![RemoteChange::Message(id, link)])
    }

    /// Record upload intents durably, in one frame: call before sending the batch.
    pub fn record_upload_intents(&self, intents: &[UploadIntent]) -> Result<()> {
        self.update_remote(intents.iter().map(|i| RemoteChange::Intent(*i)).collect())
    }

    /// Replace message `id`'s keywords beyond its flags (an empty list clears them).
    pub fn set_message_keywords(&self, id: Id, keywords: Vec<String>) -> Result<()> {
        self.update_remote(vec![RemoteChange::Keywords(id, keywords)])
    }

    /// Drop the upload intents of these messages (an upload abandoned, or found not sent).
    pub fn clear_upload_intents(&self, ids: &[Id]) -> Result<()> {
        self.update_remote(ids.iter().map(|id| RemoteChange::ClearIntent(*id)).collect())
    }

    /// Move message `id` to `folder` as `name` and set its link to `link`, in one frame (a
    /// message the server moved between folders follows there without a download).
    pub fn move_synced(&self, id: Id, folder: Id, name: &str, link: MessageRemote) -> Result<()> {
        super::index::check_name(name)?;
        self.run(Op::MoveSynced { id, folder, name: name.to_string(), link }).map(drop)
    }

    /// Commit downloaded messages, each with its remote link, in one frame: after a crash
    /// either all are there, each with its link, or none is. Staged files as for
    /// [`Store::import_messages`] (removed on failure). Returns the entry ids, in order.
    pub fn import_synced(&self, msgs: Vec<SyncedMessage>) -> Result<Vec<Id>> {
        self.import_new(
            msgs.into_iter()
                .map(|s| (s.message, Some(s.remote), (!s.keywords.is_empty()).then_some(s.keywords)))
                .collect(),
        )
    }

    /// Replace header-only (or otherwise stale) messages by their full content, many in one
    /// frame with one syncfs, as [`Store::import_synced`] does for new ones: each keeps its
    /// entry id, name, attributes and xattrs; its flags become `flags` (a header-only mark
    /// is cleared unless `flags` has it). Fails as a whole with ObjectChanged if any message
    /// is no longer at its base version (a local writer saved first): the caller retries
    /// the others. Staged files (from [`Store::stage_content`]) are removed on failure.
    pub fn replace_synced_batch(&self, items: Vec<Replacement>) -> Result<()> {
        self.start_replace_synced_batch(items)?.wait()
    }

    /// [`Store::replace_synced_batch`] without waiting: the caller fetches the next batch
    /// while this one is made durable, then waits for it with [`BatchCommit::wait`].
    pub fn start_replace_synced_batch(&self, items: Vec<Replacement>) -> Result<super::BatchCommit> {
        let staged: Vec<super::Staged> = items.iter().map(|r| r.staged.clone()).collect();
        let saves = {
            let ix = self.index();
            let mut v = Vec::with_capacity(items.len());
            for r in items {
                let m = ix.message(r.id)?;
                v.push(Save {
                    id: r.id,
                    new_in: None,
                    base_version: Some(r.base_version),
                    force: false,
                    source: r.staged.source(),
                    size: r.size,
                    crc: r.crc,
                    attrs: Some(m.attrs()),
                    flags: Some(r.flags),
                    xattrs: None,
                    change: AttrChange::default(),
                    delete_source: None,
                    remote: Some(r.remote),
                    keywords: None,
                });
            }
            v
        };
        Ok(super::BatchCommit { store: self.clone(), staged, committing: self.start(Op::Import(saves)) })
    }

    /// Commit `staged` (from [`Store::stage_content`]; a file as `Source::from_staged`
    /// takes it) as a new version of message `id`, with its remote link, in one frame: a
    /// header-only message replaced by its full content keeps its entry id. Fails with ObjectChanged if the
    /// message is no longer at `base_version`; a staged file is then left for the caller.
    pub fn replace_synced(
        &self,
        id: Id,
        base_version: u64,
        staged: super::Staged,
        remote: RemoteCopy,
    ) -> Result<Outcome> {
        let (source, size, crc) = match staged {
            super::Staged::File(p) => Source::from_staged(&**self.vfs(), &p)?,
            super::Staged::Inline(b) => {
                let (size, crc) = (b.0.len() as u64, crc32c::crc32c(&b.0));
                (Source::Inline(b), size, crc)
            }
        };
        self.run(Op::Save(Box::new(Save {
            id,
            new_in: None,
            base_version: Some(base_version),
            force: false,
            source,
            size,
            crc,
            attrs: None,
            flags: None,
            xattrs: None,
            change: AttrChange::default(),
            delete_source: None,
            remote: Some(remote),
            keywords: None,
        })))
    }
}

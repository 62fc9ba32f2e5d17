//! The committer: one thread that validates, logs and applies every mutation, in groups.
//!
//! Operations queue up while a group is being synced; the next group takes them all, so
//! many concurrent saves share one log sync. Within a group no two operations touch the
//! same message, folder or name (a later one waits for the next group), so each is
//! validated against the committed index alone, and nothing is applied to the index until
//! its frame is durable: readers never see what a crash could take back.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::{Error, Result};
use super::index::{flags, Attrs, Id, Index, Record, Xattrs};
use super::inline::{Bytes, LogLoc};
use super::remote::{MessageRemote, RemoteChange, RemoteCopy};
use super::{object_dir, object_path, Shared};

/// A change to a user xattr.
#[derive(Clone, Debug)]
pub enum XattrChange {
    /// Set; `create` fails if present, `replace` fails if absent.
    Set {
        name: String,
        value: Vec<u8>,
        create: bool,
        replace: bool,
    },
    Remove {
        name: String,
    },
}

/// Partial attribute update: each `Some` replaces the stored value.
#[derive(Clone, Debug, Default)]
pub struct AttrChange {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<i64>,
    pub flags: Option<u8>,
    pub xattrs: Vec<XattrChange>,
    /// A message's IMAP keywords beyond its flags, replaced as a whole (empty: none);
    /// logged in the same frame as the rest of the change.
    pub keywords: Option<Vec<String>>,
}

impl AttrChange {
    /// Does it change nothing?
    pub fn is_empty(&self) -> bool {
        self.mode.is_none()
            && self.uid.is_none()
            && self.gid.is_none()
            && self.mtime.is_none()
            && self.flags.is_none()
            && self.xattrs.is_empty()
            && self.keywords.is_none()
    }
}

/// Where the content of a save comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A synced file in `staging/`, renamed into `objects/` on commit.
    Staged(PathBuf),
    /// A file in `staging/` that was NOT synced (import batches: one syncfs covers them all).
    StagedUnsynced(PathBuf),
    /// An existing object, hard-linked (rename of one message over another).
    Object(Id, u64),
    /// Bytes logged in the frame itself (small content, see `inline.rs`): no file at all.
    Inline(Bytes),
    /// The bytes of message `.0`'s inline version `.1`, logged again for another message
    /// (what `Object` is for content with a file): valid only while that version is current.
    InlineOf(Id, u64, Bytes),
    /// The bytes of the file `.0` under `staging/` (not synced: it need not be), logged
    /// inline; the file is removed once the frame is durable, and left as it was if not.
    InlineFrom(PathBuf, Bytes),
}

impl Source {
    /// Content small enough to be logged inline, read from the staged file `path`; larger
    /// content stays a file, synced here.
    pub fn from_staged(vfs: &dyn super::vfs::Vfs, path: &std::path::Path) -> Result<(Source, u64, u32)> {
        let f = vfs.open(path, super::vfs::OpenMode::Read).map_err(|e| Error::io("open staged file", e))?;
        let len = f.len().map_err(|e| Error::io("size of staged content", e))?;
        if len as usize <= super::inline::INLINE_MAX {
            let data = f.read_all().map_err(|e| Error::io("read staged content", e))?;
            let (size, crc) = (data.len() as u64, crc32c::crc32c(&data));
            return Ok((Source::InlineFrom(path.to_path_buf(), Bytes(data.into())), size, crc));
        }
        f.sync().map_err(|e| Error::io("sync staged file", e))?;
        let (size, crc) = super::txn::size_and_crc(&*f)?;
        Ok((Source::Staged(path.to_path_buf()), size, crc))
    }
}

#[derive(Clone, Debug)]
pub struct Save {
    pub id: Id,
    /// For a new message: where it goes. For an existing one: None.
    pub new_in: Option<(Id, String)>,
    /// The version the writer started from; None skips the conflict check (rename over).
    pub base_version: Option<u64>,
    pub force: bool,
    pub source: Source,
    pub size: u64,
    pub crc: u32,
    /// Attributes for the new version: None keeps the stored ones, with mtime set to now.
    pub attrs: Option<Attrs>,
    pub flags: Option<u8>,
    pub xattrs: Option<Xattrs>,
    /// Changes a writer made to attributes and xattrs while its transaction was open
    /// (`futimens`, `fchmod`, `fsetxattr` on the descriptor), applied over the above.
    pub change: AttrChange,
    /// Also delete this message in the same frame (a message renamed over another).
    pub delete_source: Option<Id>,
    /// A download: the message's link to its remote copy, logged in the same frame right
    /// after its `MessagePut`, with the save's folder and new version.
    pub remote: Option<RemoteCopy>,
    /// A download's keywords beyond its flags, logged in the same frame after its link.
    pub keywords: Option<Vec<String>>,
}

#[derive(Clone, Debug)]
pub enum Op {
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
        change: AttrChange,
    },
    Save(Box<Save>),
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
        change: AttrChange,
    },
    /// Many new messages at once, made durable by one syncfs and one log sync.
    Import(Vec<Save>),
    /// Folders whose entries changed in a way the store does not hold (a mount's file
    /// created before its first save, or removed or moved before it): their mtime and
    /// ctime become the commit time.
    FolderTouch {
        ids: Vec<Id>,
    },
    /// Replication state changes, in one frame (see `remote.rs`).
    Remote(Vec<RemoteChange>),
    /// Nothing to change: its answer comes once every commit before it is durable.
    Barrier,
    /// A message moved on the server, moved here too with its new link, in one frame: a
    /// crash between the two would leave a link naming the old folder.
    MoveSynced {
        id: Id,
        folder: Id,
        name: String,
        link: MessageRemote,
    },
}

/// What a successful operation produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub id: Id,
    pub version: u64,
}

pub type Reply = Box<dyn FnOnce(Result<Outcome>) + Send>;

pub struct Pending {
    pub op: Op,
    pub reply: Reply,
    /// Answer only once durable (false: a lazy commit, see `lazy.rs`).
    pub durable: bool,
}

/// Things an operation touches, for keeping conflicting operations out of one group.
#[derive(Hash, PartialEq, Eq, Clone)]
enum Key {
    Entity(Id),
    Name(Id, String),
    /// Folder moves change ancestry; they go one per group.
    Tree,
}

struct Keys {
    excl: Vec<Key>,
    shared: Vec<Key>,
}

fn keys(ix: &Index, op: &Op) -> Keys {
    let mut k = Keys { excl: vec![], shared: vec![] };
    let name_of = |id: &Id| -> Option<Key> {
        if let Some((folder, name)) = ix.location_of(*id) {
            Some(Key::Name(folder, name.to_string()))
        } else {
            ix.folders.get(id).map(|f| Key::Name(f.parent, f.name.to_string()))
        }
    };
    let parent_of = |id: &Id| -> Option<Id> {
        ix.location_of(*id).map(|(folder, _)| folder).or_else(|| ix.folders.get(id).map(|f| f.parent))
    };
    match op {
        Op::FolderCreate { id, parent, name, .. } => {
            k.excl.extend([Key::Entity(*id), Key::Name(*parent, name.clone())]);
            k.shared.push(Key::Entity(*parent));
        }
        Op::FolderMove { id, parent, name } => {
            k.excl.extend([Key::Entity(*id), Key::Name(*parent, name.clone()), Key::Tree]);
            k.excl.extend(name_of(id));
            k.shared.push(Key::Entity(*parent));
            k.shared.extend(parent_of(id).map(Key::Entity));
        }
        Op::FolderDelete { id } => {
            k.excl.push(Key::Entity(*id));
            k.excl.extend(name_of(id));
            k.shared.extend(parent_of(id).map(Key::Entity));
        }
        Op::FolderAttrs { id, .. } | Op::MessageMeta { id, .. } => k.excl.push(Key::Entity(*id)),
        Op::Save(s) => save_keys(ix, s, &mut k),
        Op::MessageMove { id, folder, name } | Op::MoveSynced { id, folder, name, .. } => {
            k.excl.extend([Key::Entity(*id), Key::Name(*folder, name.clone())]);
            k.excl.extend(name_of(id));
            k.shared.push(Key::Entity(*folder));
            k.shared.extend(parent_of(id).map(Key::Entity));
        }
        Op::MessageDelete { id } => {
            k.excl.push(Key::Entity(*id));
            k.excl.extend(name_of(id));
            k.shared.extend(parent_of(id).map(Key::Entity));
        }
        Op::Import(items) => {
            for s in items {
                save_keys(ix, s, &mut k);
            }
        }
        // Like a new entry: it changes the folder's times, not the folder.
        Op::FolderTouch { ids } => k.shared.extend(ids.iter().map(|id| Key::Entity(*id))),
        Op::Barrier => {}
        Op::Remote(changes) => k.excl.extend(changes.iter().map(|c| Key::Entity(c.entity()))),
    }
    k
}

fn save_keys(ix: &Index, s: &Save, k: &mut Keys) {
    k.excl.push(Key::Entity(s.id));
    match &s.new_in {
        Some((folder, name)) => {
            k.excl.push(Key::Name(*folder, name.clone()));
            k.shared.push(Key::Entity(*folder));
        }
        None => k.shared.extend(ix.location_of(s.id).map(|(folder, _)| Key::Entity(folder))),
    }
    if let Some(src) = s.delete_source {
        k.excl.push(Key::Entity(src));
        if let Some((folder, name)) = ix.location_of(src) {
            k.excl.push(Key::Name(folder, name.to_string()));
        }
    }
    if let Source::Object(src, _) | Source::InlineOf(src, _, _) = s.source {
        k.shared.push(Key::Entity(src));
    }
}

#[derive(Default)]
struct Group {
    excl: HashSet<Key>,
    shared: HashSet<Key>,
}

impl Group {
    /// Take the operation's keys if none conflicts with the group's; false if one does.
    fn admit(&mut self, k: Keys) -> bool {
        let clash = k.excl.iter().any(|x| self.excl.contains(x) || self.shared.contains(x))
            || k.shared.iter().any(|x| self.excl.contains(x));
        if clash {
            return false;
        }
        self.excl.extend(k.excl);
        self.shared.extend(k.shared);
        true
    }
}

pub fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn apply_xattr(list: &mut Xattrs, ch: &XattrChange) -> Result<()> {
    match ch {
        XattrChange::Set { name, value, create, replace } => {
            let pos = list.iter().position(|(k, _)| **k == **name);
            match pos {
                Some(_) if *create => return Err(Error::Exists),
                None if *replace => return Err(Error::NoAttribute),
                Some(i) => list[i].1 = value.clone().into_boxed_slice(),
                None => {
                    list.push((name.clone().into_boxed_str(), value.clone().into_boxed_slice()));
                    list.sort_by(|a, b| a.0.cmp(&b.0));
                }
            }
        }
        XattrChange::Remove { name } => {
            let pos = list.iter().position(|(k, _)| **k == **name).ok_or(Error::NoAttribute)?;
            list.remove(pos);
        }
    }
    Ok(())
}

fn merged(a: Attrs, c: &AttrChange) -> Attrs {
    Attrs {
        mode: c.mode.map(|m| (a.mode & !0o7777) | (m & 0o7777)).unwrap_or(a.mode),
        uid: c.uid.unwrap_or(a.uid),
        gid: c.gid.unwrap_or(a.gid),
        mtime: c.mtime.unwrap_or(a.mtime),
    }
}

/// Turn an operation into the records to log, checking it against the committed index.
/// `next_cn` hands out change numbers for new versions. They come from the same space as
/// entry ids, so no version number ever equals an id (the FUSE layer uses both as inodes).
/// `now` is the group's commit time: a save that sets no mtime gets it, so that a save's
/// mtime and ctime are equal, as on a local file system.
fn plan(ix: &Index, op: &Op, now: i64, next_cn: &dyn Fn() -> u64) -> Result<(Vec<Record>, Outcome)> {
    let mut recs = Vec::new();
    let outcome = match op {
        Op::FolderCreate { id, parent, name, attrs } => {
            recs.push(Record::FolderCreate { id: *id, parent: *parent, name: name.clone(), attrs: *attrs });
            Outcome { id: *id, version: 0 }
        }
        Op::FolderMove { id, parent, name } => {
            recs.push(Record::FolderMove { id: *id, parent: *parent, name: name.clone() });
            Outcome { id: *id, version: 0 }
        }
        Op::FolderDelete { id } => {
            recs.push(Record::FolderDelete { id: *id });
            Outcome { id: *id, version: 0 }
        }
        Op::FolderAttrs { id, change } => {
            if !change.xattrs.is_empty() || change.flags.is_some() || change.keywords.is_some() {
                return Err(Error::InvalidArgument("folders keep no xattrs, flags or keywords".into()));
            }
            let f = ix.folder(*id)?;
            recs.push(Record::FolderAttrs { id: *id, attrs: merged(f.attrs, change) });
            Outcome { id: *id, version: 0 }
        }
        Op::MessageMeta { id, change } => {
            let m = ix.message(*id)?;
            let mut x = m.xattrs.as_deref().cloned().unwrap_or_default();
            for ch in &change.xattrs {
                apply_xattr(&mut x, ch)?;
            }
            recs.push(Record::MessageMeta {
                id: *id,
                attrs: merged(m.attrs, change),
                flags: change.flags.map_or(m.flags, |f| (f & flags::USER) | (m.flags & !flags::USER)),
                xattrs: x,
            });
            if let Some(k) = &change.keywords {
                super::remote::check_keywords(k)?;
                recs.push(Record::MessageKeywords { id: *id, keywords: k.clone() });
            }
            Outcome { id: *id, version: m.version }
        }
        Op::MessageMove { id, folder, name } => {
            recs.push(Record::MessageMove { id: *id, folder: *folder, name: name.clone() });
            Outcome { id: *id, version: ix.message(*id)?.version }
        }
        Op::MoveSynced { id, folder, name, link } => {
            recs.push(Record::MessageMove { id: *id, folder: *folder, name: name.clone() });
            recs.push(Record::MessageRemote { id: *id, link: Some(*link) });
            Outcome { id: *id, version: ix.message(*id)?.version }
        }
        Op::MessageDelete { id } => {
            recs.push(Record::MessageDelete { id: *id });
            Outcome { id: *id, version: 0 }
        }
        Op::Save(s) => plan_save(ix, s, now, next_cn, &mut recs)?,
        Op::Barrier => Outcome { id: 0, version: 0 },
        Op::FolderTouch { ids } => {
            let mut ids = ids.clone();
            ids.sort_unstable();
            ids.dedup();
            recs.extend(ids.into_iter().map(|id| Record::FolderTouch { id }));
            Outcome { id: 0, version: 0 }
        }
        Op::Import(items) => {
            let mut names = HashSet::new();
            let mut last = Outcome { id: 0, version: 0 };
            for s in items {
                if let Some((f, n)) = &s.new_in {
                    if !names.insert((*f, n.as_str())) {
                        return Err(Error::Exists);
                    }
                }
                last = plan_save(ix, s, now, next_cn, &mut recs)?;
            }
            last
        }
        Op::Remote(changes) => {
            recs.extend(changes.iter().map(RemoteChange::record));
            Outcome { id: 0, version: 0 }
        }
    };
    // A download's link follows the `MessagePut` of a message the committed index may not
    // hold yet; that put was validated, and replay checks the pair in order. (A set: an
    // import of 10,000 downloads has 40,000 records.)
    let puts: HashSet<Id> = recs
        .iter()
        .filter_map(|p| match p {
            Record::MessagePut { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    for r in &recs {
        let with_its_put = |id: &Id| puts.contains(id);
        match r {
            Record::MessageRemote { id, link: Some(l) } if with_its_put(id) => debug_assert!(ix.is_folder(l.folder)),
            Record::MessageKeywords { id, keywords } | Record::SyncedKeywords { id, keywords } if with_its_put(id) => {
                super::remote::check_keywords(keywords)?
            }
            r => ix.validate(r)?,
        }
    }
    Ok((recs, outcome))
}

fn plan_save(ix: &Index, s: &Save, now: i64, next_cn: &dyn Fn() -> u64, recs: &mut Vec<Record>) -> Result<Outcome> {
    let (folder, name, attrs, flags, xattrs): (Id, String, Attrs, u8, Xattrs) =
        match (&s.new_in, ix.message_if_any(s.id)?) {
            (None, None) => {
                return Err(if ix.folders.contains_key(&s.id) { Error::IsAFolder } else { Error::ObjectDeleted });
            }
            (None, Some(m)) => {
                if let Some(base) = s.base_version {
                    if base != m.version && !s.force {
                        return Err(Error::ObjectChanged);
                    }
                }
                let attrs = s.attrs.unwrap_or(Attrs { mtime: now, ..m.attrs });
                let x = s.xattrs.clone().unwrap_or_else(|| m.xattrs.as_deref().cloned().unwrap_or_default());
                (m.folder, m.name.to_string(), attrs, s.flags.unwrap_or(m.flags), x)
            }
            (Some((folder, name)), None) => {
                // SAFETY: getuid and getgid cannot fail.
                let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
                let attrs = s.attrs.unwrap_or(Attrs { mode: 0o100600, uid, gid, mtime: now });
                (*folder, name.clone(), attrs, s.flags.unwrap_or(0), s.xattrs.clone().unwrap_or_default())
            }
            (Some(_), Some(_)) => return Err(Error::Exists),
        };
    let attrs = merged(attrs, &s.change);
    let flags = s.change.flags.map_or(flags, |f| (f & flags::USER) | (flags & !flags::USER));
    // Whole content from anything but a sync (a writer's save, a file renamed over it) is
    // no longer just a header: a sync must not take it for one and replace it.
    let flags = if s.remote.is_none() && s.flags.is_none() { flags & !flags::HEADER_ONLY } else { flags };
    let mut xattrs = xattrs;
    for ch in &s.change.xattrs {
        apply_xattr(&mut xattrs, ch)?;
    }
    if let Source::Object(src, ver) | Source::InlineOf(src, ver, _) = s.source {
        match ix.version_of(src) {
            Some(v) if v == ver => {}
            _ => return Err(Error::ObjectChanged),
        }
    }
    let version = next_cn();
    recs.push(Record::MessagePut { id: s.id, folder, name, version, size: s.size, crc: s.crc, attrs, flags, xattrs });
    if let Source::Inline(data) | Source::InlineOf(_, _, data) | Source::InlineFrom(_, data) = &s.source {
        let at = LogLoc { seg: 0, off: 0, len: data.0.len() as u64 };
        recs.push(Record::Content { id: s.id, version, at, data: Some(data.clone()) });
    }
    if let Some(rc) = s.remote {
        let link = MessageRemote { folder, uid: rc.uid, modseq: rc.modseq, flags: rc.flags, version };
        recs.push(Record::MessageRemote { id: s.id, link: Some(link) });
    }
    if let Some(k) = s.keywords.as_ref().or(s.change.keywords.as_ref()) {
        recs.push(Record::MessageKeywords { id: s.id, keywords: k.clone() });
    }
    // A download's keywords are also what was last synced (the base of the next merge).
    if let (Some(_), Some(k)) = (s.remote, s.keywords.as_ref()) {
        recs.push(Record::SyncedKeywords { id: s.id, keywords: k.clone() });
    }
    if let Some(src) = s.delete_source {
        let from = ix.message(src)?.folder;
        recs.push(Record::MessageDelete { id: src });
        // A rename over another message: the destination folder's entry was replaced, so
        // it changed too (the delete changes the source folder's times).
        if from != folder {
            recs.push(Record::FolderTouch { id: folder });
        }
    }
    Ok(Outcome { id: s.id, version })
}

/// A file move done for a group, undone if the group's frame cannot be written.
struct Moved {
    from: Option<PathBuf>,
    to: PathBuf,
}

/// Put the content of every save of the group in place under `objects/`.
fn place_objects(
    sh: &Shared,
    planned: &[(Op, Vec<Record>)],
    moved: &mut Vec<Moved>,
    dirs: &mut HashSet<PathBuf>,
) -> Result<bool> {
    let vfs = &*sh.vfs;
    let mut need_syncfs = false;
    for (op, recs) in planned {
        let saves: Vec<&Save> = match op {
            Op::Save(s) => vec![s],
            Op::Import(items) => items.iter().collect(),
            _ => continue,
        };
        let versions = recs.iter().filter_map(|r| match r {
            Record::MessagePut { id, version, .. } => Some((*id, *version)),
            _ => None,
        });
        for (s, (id, version)) in saves.into_iter().zip(versions) {
            let to = object_path(id, version);
            match &s.source {
                Source::Staged(p) | Source::StagedUnsynced(p) => {
                    vfs.rename(p, &to).map_err(|e| Error::io(format!("move {} into objects", p.display()), e))?;
                    moved.push(Moved { from: Some(p.clone()), to: to.clone() });
                    need_syncfs |= matches!(s.source, Source::StagedUnsynced(_));
                }
                Source::Object(src, ver) => {
                    let from = object_path(*src, *ver);
                    vfs.hard_link(&from, &to).map_err(|e| Error::io(format!("link {}", from.display()), e))?;
                    moved.push(Moved { from: None, to: to.clone() });
                }
                Source::Inline(_) | Source::InlineOf(..) | Source::InlineFrom(..) => continue,
            }
            dirs.insert(object_dir(id));
        }
    }
    Ok(need_syncfs)
}

fn undo_moves(sh: &Shared, moved: Vec<Moved>) {
    for m in moved.into_iter().rev() {
        let _ = match m.from {
            Some(from) => sh.vfs.rename(&m.to, &from),
            None => sh.vfs.remove_file(&m.to),
        };
    }
}

/// The committer thread's loop. Returns when the store is closed and the queue is empty.
pub fn run(sh: Arc<Shared>) {
    let mut carry: VecDeque<Pending> = VecDeque::new();
    loop {
        let mut batch = {
            let mut q = sh.queue.lock().unwrap();
            loop {
                let have = !q.ops.is_empty() || !carry.is_empty();
                if q.frozen > 0 {
                    // Hold every mutation while frozen; close still waits for the thaw.
                } else if have {
                    break;
                } else if q.closing {
                    drop(q);
                    sh.sync_lazy();
                    let mut q = sh.queue.lock().unwrap();
                    q.busy = false;
                    sh.queue_cv.notify_all();
                    return;
                }
                q.busy = false;
                sh.queue_cv.notify_all();
                // Lazy commits wait for their log sync at most until their deadline.
                match sh.lazy_deadline() {
                    Some(at) if q.frozen == 0 => {
                        let now = std::time::Instant::now();
                        if at <= now {
                            drop(q);
                            sh.sync_lazy();
                            q = sh.queue.lock().unwrap();
                        } else {
                            q = sh.queue_cv.wait_timeout(q, at - now).unwrap().0;
                        }
                    }
                    _ => q = sh.queue_cv.wait(q).unwrap(),
                }
            }
            q.busy = true;
            let mut b: VecDeque<Pending> = std::mem::take(&mut carry);
            b.extend(q.ops.drain(..));
            b
        };
        commit_group(&sh, &mut batch, &mut carry);
    }
}

fn commit_group(sh: &Shared, batch: &mut VecDeque<Pending>, carry: &mut VecDeque<Pending>) {
    if let Some(why) = sh.poisoned.lock().unwrap().clone() {
        for p in batch.drain(..) {
            (p.reply)(Err(Error::io("store", std::io::Error::other(why.clone()))));
        }
        return;
    }
    let mut group = Group::default();
    // One commit time for the whole group: it is logged first in the frame, and every ctime
    // and folder mtime the frame's records set is this time, live and on replay alike.
    let now = now_ns();
    let next_cn = || sh.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut planned: Vec<(Op, Vec<Record>, Reply, Outcome)> = Vec::new();
    // One durable operation makes the whole group's frame synced before anyone is answered.
    let mut durable = false;
    {
        let ix = sh.index.read().unwrap();
        while let Some(p) = batch.pop_front() {
            if !group.admit(keys(&ix, &p.op)) {
                carry.push_back(p);
                continue;
            }
            match plan(&ix, &p.op, now, &next_cn) {
                Ok((recs, out)) => {
                    durable |= p.durable;
                    planned.push((p.op, recs, p.reply, out))
                }
                Err(e) => (p.reply)(Err(e)),
            }
        }
    }
    if planned.is_empty() {
        return;
    }
    let mut moved = Vec::new();
    let mut dirs = HashSet::new();
    let placing: Vec<(Op, Vec<Record>)> = planned.iter().map(|(o, r, _, _)| (o.clone(), r.clone())).collect();
    let mut records: Vec<Record> =
        std::iter::once(Record::Time { ns: now }).chain(placing.iter().flat_map(|(_, r)| r.iter().cloned())).collect();
    let res = raise_format(sh, &records).and_then(|()| place_objects(sh, &placing, &mut moved, &mut dirs)).and_then(
        |need_syncfs| {
            if need_syncfs {
                sh.vfs.sync_all().map_err(|e| Error::io("syncfs", e))?;
            } else {
                for d in &dirs {
                    sh.vfs.sync_dir(d).map_err(|e| Error::io(format!("sync {}", d.display()), e))?;
                }
            }
            sh.append(&mut records, durable)
        },
    );
    if let Err(e) = res {
        // After a failed log sync the frame may be on disk: leave the objects where they
        // are (an unclean open removes them if the frame is not there). Otherwise nothing
        // refers to them, and the writers get their private copies back.
        if sh.poisoned.lock().unwrap().is_none() {
            undo_moves(sh, moved);
        }
        for (_, _, reply, _) in planned {
            reply(Err(copy_error(&e)));
        }
        return;
    }
    // Staged files whose bytes the frame holds are not needed any more.
    for (op, ..) in &planned {
        if let Op::Save(s) = op {
            if let Source::InlineFrom(p, _) = &s.source {
                let _ = sh.vfs.remove_file(p);
            }
        }
    }
    let mut garbage = Vec::new();
    {
        let mut ix = sh.index.write().unwrap();
        // The very records logged, Time first, so the index gets what replay would give.
        for r in &records {
            garbage.extend(ix.apply(r));
        }
    }
    for (_, _, reply, out) in planned {
        reply(Ok(out));
    }
    // Old versions are removed only once the records replacing them are durable (at once
    // for a durable group, after the log sync for a lazy one); a crash before that leaves
    // them unreferenced, and the next open removes them. An object a reader has pinned
    // stays until its last reader leaves (see `pin.rs`).
    sh.garbage(garbage, durable);
    sh.reclaim_deferred();
    sh.maybe_checkpoint();
}

/// An older store learns it holds records an older msgfs does not know before the first of
/// them is logged (see `open::raise_format`); the format file is then durable first.
pub(crate) fn raise_format(sh: &Shared, records: &[Record]) -> Result<()> {
    let need = records.iter().map(Record::format_needed).max().unwrap_or(0);
    if need > sh.format.load(std::sync::atomic::Ordering::Relaxed) {
        super::open::raise_format(&*sh.vfs, &sh.store_id, need)?;
        sh.format.store(need, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}

/// A copy of a group's error for each of its operations, keeping the OS error code
/// (ENOSPC above all) so that every writer in the group sees the real cause.
fn copy_error(e: &Error) -> Error {
    match e {
        Error::Io { context, source } => Error::Io {
            context: context.clone(),
            source: match source.raw_os_error() {
                Some(code) => std::io::Error::from_raw_os_error(code),
                None => std::io::Error::new(source.kind(), source.to_string()),
            },
        },
        other => Error::io("commit", std::io::Error::other(other.to_string())),
    }
}

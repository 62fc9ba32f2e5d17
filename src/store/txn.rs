//! Transactions: a writer's private copy of one message and MAPI SaveChanges on it.
//!
//! A transaction starts from a base version (or from nothing, for a new message). Writes
//! go to a private copy made on the first write from the base: in memory while small, a
//! file under `staging/` past that (see `private.rs`). Save hands it to the committer
//! (a small one logged inline, a file synced first), which checks the base version
//! against the committed one: the first save wins, a later one gets ObjectChanged unless
//! it forces, and a save after a delete gets ObjectDeleted. On any error the transaction
//! keeps its copy and its changes.
//!
//! A save is two steps around the committer, so that nothing waits for it on a thread:
//! [`Transaction::prepare_save`] syncs the private copy and hands it over as the operation
//! to submit, and [`Transaction::finish_save`] takes the committer's answer. In between the
//! handed-over copy is the transaction's base: reads come from it, and a write makes a new
//! private copy of it (the one being committed never changes). [`Transaction::save`] does
//! both and waits, for callers on threads of their own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::commit::{AttrChange, Op, Outcome, Save, Source};
use super::error::{Error, Result};
use super::index::{check_name, Attrs, Id, Xattrs};
use super::inline::Bytes;
use super::private::Private;
use super::vfs::VfsFile;
use super::Store;

/// SaveChanges flags, with MAPI's values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaveFlags(pub u32);

impl SaveFlags {
    pub const KEEP_OPEN_READONLY: u32 = 0x1;
    pub const KEEP_OPEN_READWRITE: u32 = 0x2;
    pub const FORCE_SAVE: u32 = 0x4;
    pub const DEFERRED_ERRORS: u32 = 0x8;
    pub const ALL: u32 = 0xf;

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }

    /// Reject unknown bits and the contradictory pair of keep-open flags.
    pub fn validate(self) -> Result<SaveFlags> {
        if self.0 & !Self::ALL != 0 {
            return Err(Error::InvalidArgument(format!("unknown SaveChanges flags {:#x}", self.0 & !Self::ALL)));
        }
        if self.has(Self::KEEP_OPEN_READONLY) && self.has(Self::KEEP_OPEN_READWRITE) {
            return Err(Error::InvalidArgument("KEEP_OPEN_READONLY and KEEP_OPEN_READWRITE together".into()));
        }
        Ok(self)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxState {
    /// Writable.
    Open,
    /// Saved with KEEP_OPEN_READONLY: readable, no more writes or saves.
    ReadOnly,
    /// Saved without a keep-open flag: done.
    Closed,
}

pub struct Transaction {
    store: Store,
    id: Id,
    /// Folder and name of a message not yet saved; None once it has an entry id.
    new_in: Option<(Id, String)>,
    base_version: Option<u64>,
    /// The committed content this transaction started from (or last saved).
    base: Option<Arc<dyn VfsFile>>,
    staged: Option<Arc<Private>>,
    /// A save submitted and not answered yet: what to restore if it fails.
    saving: Option<Saving>,
    size: u64,
    dirty: bool,
    state: TxState,
    /// Attribute and xattr changes made through this writer, committed with its save.
    change: AttrChange,
}

/// What a transaction had before it handed its private copy to the committer.
struct Saving {
    private: Arc<Private>,
    base: Option<Arc<dyn VfsFile>>,
    base_version: Option<u64>,
}

/// A save prepared by [`Transaction::prepare_save`]: the operation to submit, or the
/// answer when there is nothing to commit.
pub enum PreparedSave {
    Submit(Op),
    Done(Outcome),
}

const CHUNK: usize = 1 << 20;

/// Size and CRC32C of a file's content.
pub fn size_and_crc(f: &dyn VfsFile) -> Result<(u64, u32)> {
    // Sized to the content: most messages are small, and zeroing a large buffer for each
    // save was a visible part of the daemon's work.
    let len = f.len().map_err(|e| Error::io("size of staged content", e))?;
    let mut buf = vec![0u8; (len as usize).clamp(1, CHUNK)];
    let mut off = 0u64;
    let mut crc = 0u32;
    loop {
        let n = f.read_at(&mut buf, off).map_err(|e| Error::io("read staged content", e))?;
        if n == 0 {
            return Ok((off, crc));
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        off += n as u64;
    }
}

impl Store {
    /// Begin a transaction on the current version of message `id`.
    pub fn begin(&self, id: Id) -> Result<Transaction> {
        let view = self.open_message(id)?;
        Ok(Transaction {
            store: self.clone(),
            id,
            new_in: None,
            base_version: Some(view.version),
            base: Some(view.file),
            staged: None,
            saving: None,
            size: view.size,
            dirty: false,
            state: TxState::Open,
            change: AttrChange::default(),
        })
    }

    /// Begin a transaction for a new message to be named `name` in `folder`. It gets its
    /// entry id at its first save; the name is checked then too.
    pub fn begin_new(&self, folder: Id, name: &str) -> Result<Transaction> {
        self.begin_new_with_id(self.alloc_id(), folder, name)
    }

    /// Like [`Store::begin_new`], with an id the caller allocated (with
    /// [`Store::alloc_id`]); several writers of one unsaved file share it, so the first to
    /// save creates the message and the others conflict with it.
    pub fn begin_new_with_id(&self, id: Id, folder: Id, name: &str) -> Result<Transaction> {
        check_name(name)?;
        self.index().folder(folder)?;
        Ok(Transaction {
            store: self.clone(),
            id,
            new_in: Some((folder, name.to_string())),
            base_version: None,
            base: None,
            staged: None,
            saving: None,
            size: 0,
            dirty: true,
            state: TxState::Open,
            change: AttrChange::default(),
        })
    }
}

impl Transaction {
    /// The id this message has (or will have at its first save).
    pub fn id(&self) -> Id {
        self.id
    }

    /// The entry id, once the message has been saved.
    pub fn saved_id(&self) -> Option<Id> {
        self.new_in.is_none().then_some(self.id)
    }

    pub fn base_version(&self) -> Option<u64> {
        self.base_version
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn state(&self) -> TxState {
        self.state
    }

    /// Folder and name of a message not saved yet.
    pub fn new_in(&self) -> Option<(Id, &str)> {
        self.new_in.as_ref().map(|(f, n)| (*f, n.as_str()))
    }

    /// The private copy's descriptor, if one exists (for passthrough of reads).
    pub fn staged_file(&self) -> Option<&dyn VfsFile> {
        self.staged.as_ref().map(|f| &**f as &dyn VfsFile)
    }

    pub fn read_at(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        if off >= self.size {
            return Ok(0);
        }
        let want = buf.len().min((self.size - off) as usize);
        let buf = &mut buf[..want];
        let n = match (&self.staged, &self.base) {
            (Some(f), _) => f.read_at(buf, off),
            (None, Some(f)) => f.read_at(buf, off),
            (None, None) => Ok(0),
        };
        n.map_err(|e| Error::io("read", e))
    }

    fn writable(&self) -> Result<()> {
        match self.state {
            TxState::Open => Ok(()),
            _ => Err(Error::NotPermitted),
        }
    }

    /// Create the private copy from the base content, once.
    fn ensure_staged(&mut self, keep: u64) -> Result<&dyn VfsFile> {
        if self.staged.is_none() {
            let f = Private::new(self.store.vfs().clone(), self.store.staging_path("t"));
            if let Some(base) = &self.base {
                let mut buf = vec![0u8; CHUNK.min(keep as usize).max(1)];
                let mut off = 0u64;
                let copied = (|| -> std::io::Result<()> {
                    while off < keep {
                        let want = buf.len().min((keep - off) as usize);
                        let n = base.read_at(&mut buf[..want], off)?;
                        if n == 0 {
                            break;
                        }
                        f.write_all_at(&buf[..n], off)?;
                        off += n as u64;
                    }
                    Ok(())
                })();
                if let Err(e) = copied {
                    f.discard();
                    return Err(Error::io("copy the message into a private copy", e));
                }
            }
            self.staged = Some(Arc::new(f));
        }
        Ok(&**self.staged.as_ref().unwrap())
    }

    pub fn write_at(&mut self, data: &[u8], off: u64) -> Result<usize> {
        self.writable()?;
        let size = self.size;
        let f = self.ensure_staged(size)?;
        f.write_all_at(data, off).map_err(|e| Error::io("write to the private copy", e))?;
        self.size = self.size.max(off + data.len() as u64);
        self.dirty = true;
        Ok(data.len())
    }

    pub fn set_len(&mut self, len: u64) -> Result<()> {
        self.writable()?;
        let keep = self.size.min(len);
        let f = self.ensure_staged(keep)?;
        f.set_len(len).map_err(|e| Error::io("truncate the private copy", e))?;
        self.size = len;
        self.dirty = true;
        Ok(())
    }

    /// SaveChanges, waiting for the committer. On success the content is a new version and,
    /// with KEEP_OPEN_READWRITE, the transaction goes on from it. On error nothing changed
    /// and the transaction keeps its private copy, so the caller can retry with FORCE_SAVE or
    /// save it elsewhere.
    pub fn save(&mut self, flags: SaveFlags) -> Result<Outcome> {
        match self.prepare_save(flags)? {
            PreparedSave::Done(out) => Ok(out),
            PreparedSave::Submit(op) => {
                let r = self.store.run(op);
                self.finish_save(flags, r)
            }
        }
    }

    /// The first half of a save: sync the private copy and hand it over. Submit the
    /// operation it returns, then give its answer to [`Transaction::finish_save`]. While a
    /// save is in flight another cannot start (`Busy`): its base version is not known yet.
    pub fn prepare_save(&mut self, flags: SaveFlags) -> Result<PreparedSave> {
        let flags = flags.validate()?;
        self.writable()?;
        if self.saving.is_some() {
            return Err(Error::Busy);
        }
        if !self.dirty && self.new_in.is_none() {
            // The content is unchanged: no new version. Attribute changes made through this
            // writer apply as they would on any file (MAPI answers S_OK either way).
            if self.has_pending_change() {
                return Ok(PreparedSave::Submit(Op::MessageMeta { id: self.id, change: self.change.clone() }));
            }
            self.after_save(flags);
            return Ok(PreparedSave::Done(Outcome { id: self.id, version: self.base_version.unwrap_or(0) }));
        }
        let size = self.size;
        self.ensure_staged(size)?;
        let private = self.staged.take().expect("made above");
        // A small copy is logged inline (from memory; or from its file, which the committer
        // removes once that is durable, and which this descriptor still reads), a larger
        // one synced and moved into the store.
        let (source, size, crc) = match private.in_memory() {
            Some(data) => {
                let (size, crc) = (data.len() as u64, crc32c::crc32c(&data));
                (Source::Inline(super::inline::Bytes(data.into())), size, crc)
            }
            None => match Source::from_staged(&**self.store.vfs(), private.path()) {
                Ok(x) => x,
                Err(e) => {
                    self.staged = Some(private);
                    return Err(e);
                }
            },
        };
        let op = Op::Save(Box::new(Save {
            id: self.id,
            new_in: self.new_in.clone(),
            base_version: self.base_version,
            force: flags.has(SaveFlags::FORCE_SAVE),
            source,
            size,
            crc,
            attrs: None,
            flags: None,
            xattrs: None,
            change: self.change.clone(),
            delete_source: None,
            remote: None,
            keywords: None,
        }));
        // The handed-over copy is the content from now on: the committer moves its file or
        // logs its bytes, and this descriptor reads it wherever it is.
        let base = self.base.replace(private.clone());
        self.saving = Some(Saving { private, base, base_version: self.base_version });
        self.dirty = false;
        Ok(PreparedSave::Submit(op))
    }

    /// The second half of a save: the committer's answer to the operation of
    /// [`Transaction::prepare_save`].
    pub fn finish_save(&mut self, flags: SaveFlags, result: Result<Outcome>) -> Result<Outcome> {
        let Some(saving) = self.saving.take() else {
            // Attributes only: no content was handed over.
            let out = result?;
            self.change = AttrChange::default();
            self.after_save(flags);
            return Ok(out);
        };
        match result {
            Ok(out) => {
                // The handed-over copy is now the committed content: the same file moved
                // into objects/, or its bytes logged and the file unlinked (still readable).
                self.change = AttrChange::default();
                self.base_version = Some(out.version);
                self.new_in = None;
                self.after_save(flags);
                Ok(out)
            }
            Err(e) => {
                // A new message whose name another save took first lost a race like any
                // conflicting save: MAPI's ObjectChanged, not a name clash.
                let e = match e {
                    Error::Exists if self.new_in.is_some() => Error::ObjectChanged,
                    e => e,
                };
                // The committer put the file back where it was (or never moved it).
                let handed = std::mem::replace(&mut self.base, saving.base);
                self.base_version = saving.base_version;
                self.dirty = true;
                match (&self.staged, handed) {
                    // Written since: that newer copy holds the handed-over content too.
                    (Some(_), _) => saving.private.discard(),
                    (None, Some(_)) => self.staged = Some(saving.private),
                    (None, None) => {}
                }
                Err(e)
            }
        }
    }

    fn after_save(&mut self, flags: SaveFlags) {
        self.state = if flags.has(SaveFlags::KEEP_OPEN_READWRITE) {
            TxState::Open
        } else if flags.has(SaveFlags::KEEP_OPEN_READONLY) {
            TxState::ReadOnly
        } else {
            TxState::Closed
        };
    }

    /// Turn this transaction into a new message `name` in `folder` and save it there: how
    /// a writer whose save failed keeps its content (`NAME (conflict N).eml`).
    pub fn save_as_new(&mut self, folder: Id, name: &str) -> Result<Outcome> {
        match self.prepare_save_as_new(folder, name)? {
            PreparedSave::Done(out) => Ok(out),
            PreparedSave::Submit(op) => {
                let r = self.store.run(op);
                self.finish_save(SaveFlags(0), r)
            }
        }
    }

    /// The first half of [`Transaction::save_as_new`]; finish with `finish_save` and no flags.
    pub fn prepare_save_as_new(&mut self, folder: Id, name: &str) -> Result<PreparedSave> {
        check_name(name)?;
        let size = self.size;
        self.ensure_staged(size)?;
        self.id = self.store.alloc_id();
        self.new_in = Some((folder, name.to_string()));
        self.base_version = None;
        self.dirty = true;
        self.state = TxState::Open;
        self.prepare_save(SaveFlags(0))
    }

    /// Follow the message this transaction's content moved to: `moved` (a version of this
    /// transaction's message) became version `now` of message `to`, as a rename over `to`
    /// does. A transaction based on `moved` is then based on `now` (the same bytes), so its
    /// next save succeeds unless `to` changes meanwhile; one based on an older version stays
    /// behind and its save is a conflict, as before the move. A save in flight is left to
    /// fail (its message is gone): returns false and changes nothing.
    pub fn follow(&mut self, moved: u64, to: Id, now: u64) -> bool {
        if self.saving.is_some() || self.new_in.is_some() {
            return false;
        }
        self.id = to;
        if self.base_version == Some(moved) {
            self.base_version = Some(now);
        }
        true
    }

    /// Whether a save of this transaction is in flight.
    pub fn is_saving(&self) -> bool {
        self.saving.is_some()
    }

    /// Record attribute or xattr changes made through this writer; they are committed with
    /// its next save, as part of a new version if the content changed too, else on their own.
    pub fn change_attrs(&mut self, c: AttrChange) {
        let p = &mut self.change;
        p.mode = c.mode.or(p.mode);
        p.uid = c.uid.or(p.uid);
        p.gid = c.gid.or(p.gid);
        p.mtime = c.mtime.or(p.mtime);
        p.flags = c.flags.or(p.flags);
        p.xattrs.extend(c.xattrs);
    }

    /// Are there attribute changes not yet saved?
    pub fn has_pending_change(&self) -> bool {
        !self.change.is_empty()
    }

    /// The changes recorded by [`Transaction::change_attrs`] and not yet saved.
    pub fn pending_change(&self) -> &AttrChange {
        &self.change
    }

    /// Move a not-yet-saved message to another folder or name (a rename of an open new file).
    pub fn set_new_location(&mut self, folder: Id, name: &str) -> Result<()> {
        check_name(name)?;
        match &mut self.new_in {
            Some(loc) => {
                *loc = (folder, name.to_string());
                Ok(())
            }
            None => Err(Error::InvalidArgument("the message is already saved".into())),
        }
    }

    /// Make this (new) transaction's content the next version of the existing message `id`,
    /// with no conflict check: a file written under the name of a message the user had just
    /// renamed away (an editor's backup step) replaces that message's content.
    pub fn retarget(&mut self, id: Id) {
        self.id = id;
        self.new_in = None;
        self.base_version = None;
        self.dirty = true;
    }

    /// Keep the private copy (for recovered drafts): written to its file if it was held in
    /// memory, and moved out of the transaction, which then no longer removes it. None if
    /// there is no private copy.
    pub fn take_staged(&mut self) -> Result<Option<PathBuf>> {
        let Some(p) = self.staged.take() else { return Ok(None) };
        if let Err(e) = p.to_file() {
            self.staged = Some(p);
            return Err(Error::io("write the private copy to keep it", e));
        }
        Ok(Some(p.path().to_path_buf()))
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        // A copy handed to the committer is the committer's now.
        if let Some(p) = self.staged.take() {
            p.discard();
        }
    }
}

/// Content committed whole, not through a transaction: a scratch file renamed to a message
/// name (editors, rsync).
impl Store {
    /// Commit a file under `staging/` as message `target`'s new version, or as a new message
    /// named `new_in`: a small one is logged inline and the file removed, a larger one is
    /// synced and moved into the store. Used for scratch files renamed to a message name
    /// (editors, rsync).
    pub fn commit_file(
        &self,
        staged: &Path,
        target: Option<Id>,
        new_in: Option<(Id, String)>,
        attrs: Attrs,
        xattrs: Xattrs,
    ) -> Result<Outcome> {
        self.run(self.commit_file_op(staged, target, new_in, attrs, xattrs)?)
    }

    /// The operation of [`Store::commit_file`], to submit: the file is read (small) or
    /// synced (large) here.
    pub fn commit_file_op(
        &self,
        staged: &Path,
        target: Option<Id>,
        new_in: Option<(Id, String)>,
        attrs: Attrs,
        xattrs: Xattrs,
    ) -> Result<Op> {
        let (source, size, crc) = Source::from_staged(&*self.0.vfs, staged)?;
        Ok(self.commit_source_op(source, size, crc, target, new_in, attrs, xattrs))
    }

    /// [`Store::commit_file_op`] for content held in memory (a small scratch file): logged
    /// inline, whatever its size (the caller keeps larger content in a file).
    pub fn commit_bytes_op(
        &self,
        data: Vec<u8>,
        target: Option<Id>,
        new_in: Option<(Id, String)>,
        attrs: Attrs,
        xattrs: Xattrs,
    ) -> Op {
        let (size, crc) = (data.len() as u64, crc32c::crc32c(&data));
        self.commit_source_op(Source::Inline(Bytes(data.into())), size, crc, target, new_in, attrs, xattrs)
    }

    #[allow(clippy::too_many_arguments)]
    fn commit_source_op(
        &self,
        source: Source,
        size: u64,
        crc: u32,
        target: Option<Id>,
        new_in: Option<(Id, String)>,
        attrs: Attrs,
        xattrs: Xattrs,
    ) -> Op {
        let id = target.unwrap_or_else(|| self.alloc_id());
        Op::Save(Box::new(Save {
            id,
            new_in: if target.is_some() { None } else { new_in },
            base_version: None,
            force: true,
            source,
            size,
            crc,
            attrs: Some(attrs),
            flags: None,
            xattrs: Some(xattrs),
            change: AttrChange::default(),
            delete_source: None,
            remote: None,
            keywords: None,
        }))
    }
}

//! The index as readers see it: the mapped checkpoint with the changes since on top.
//! Lookups ask the changes first and the checkpoint second; listings merge a folder's
//! entries from both in name order. Also the bookkeeping that keeps the two layers
//! consistent when a record applies (`materialize`, `add_child`, `remove_child`) and the
//! switch to a newer checkpoint (`rebase`).
//!
//! Damage in the checkpoint found by a lookup that answers with an `Option` is remembered
//! (`Base::note`): the committer then refuses every change (see `Index::validate`), since
//! "not there" may have been the damage speaking.

use std::borrow::Cow;
use std::collections::btree_map;
use std::iter::Peekable;
use std::sync::Arc;

use super::base::{Base, FOLDER_ROW};
use super::error::{Error, Result};
use super::index::{Child, Entry, Folder, Id, Index, Message, MessageTable};
use super::inline::LogLoc;

impl Index {
    /// An index served from checkpoint `base`; returns it with the last sequence number the
    /// checkpoint covers.
    pub(super) fn from_base(base: Base, place: &str) -> Result<(Index, u64)> {
        let h = *base.header();
        let mut ix = Index {
            folders: base.folders()?,
            next_id: h.next_id,
            last_cn: h.last_cn,
            message_count: h.message_count as usize,
            base: Arc::new(base),
            ..Default::default()
        };
        if !ix.folders.contains_key(&super::index::ROOT) {
            return Err(Error::corrupt(place, "no root folder; run `msgfs check`"));
        }
        let base = ix.base.clone();
        let mut d = base.extra()?;
        super::remote::decode_checkpoint(&mut d, &mut ix, place)?;
        super::remote::decode_tombstones(&mut d, &mut ix, place)?;
        ix.inline.decode_live(&mut d)?;
        if !d.is_empty() {
            return Err(Error::corrupt(place, "trailing bytes in the extra section; run `msgfs check`"));
        }
        Ok((ix, h.last_seq))
    }

    /// Serve from checkpoint `base`, just written from this index: the changes it now holds
    /// are dropped from memory. Readers hold the index lock, so the old map outlives them.
    pub(super) fn rebase(&mut self, base: Base) -> Result<()> {
        self.folders = base.folders()?;
        self.messages = MessageTable::default();
        self.gone.clear();
        self.inline.forget_versions();
        self.base = Arc::new(base);
        Ok(())
    }

    /// `Some` of an answer from the checkpoint; on damage, remembers it (once, logged) and
    /// answers `None`.
    fn noted<T>(&self, r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                if self.base.note(&e) {
                    ::log::error!("{e}");
                }
                None
            }
        }
    }

    /// The checkpoint row of message `id`, if the checkpoint holds it and it has not
    /// changed since (changed or deleted, the changes hold what it is).
    pub(super) fn base_row(&self, id: Id) -> Option<usize> {
        if self.base.message_count() == 0 || self.messages.contains_key(&id) || self.gone.contains(&id) {
            return None;
        }
        self.noted(self.base.find_message(id)).flatten()
    }

    /// Bring message `id` from the checkpoint into the changes before a record changes it
    /// (with the place of its inline content). False if there is no such message.
    pub(super) fn materialize(&mut self, id: Id) -> bool {
        if self.messages.contains_key(&id) {
            return true;
        }
        let Some(row) = self.base_row(id).and_then(|i| self.noted(self.base.row(i))) else {
            return false;
        };
        if let Some(at) = row.inline {
            self.inline.adopt(row.message.version, at);
        }
        self.messages.insert(id, row.message);
        true
    }

    /// The entry named `name` in folder `f`.
    fn child_of(&self, f: &Folder, name: &str) -> Result<Option<Id>> {
        match f.children.get(name) {
            Some(changed) => Ok(*changed),
            None if f.base_children.1 == 0 => Ok(None),
            None => Ok(self.base.find_child(f.base_children, name)?.map(|(id, _)| id)),
        }
    }

    /// The id named `name` in `folder`.
    pub(super) fn child_id(&self, folder: Id, name: &str) -> Result<Option<Id>> {
        self.child_of(self.folder(folder)?, name)
    }

    /// A new entry (validated: the name is free).
    pub(super) fn add_child(&mut self, folder: Id, name: Arc<str>, id: Id) {
        let f = self.folders.get_mut(&folder).expect("validated");
        f.children.insert(name, Some(id));
        f.entries += 1;
    }

    /// An entry goes (validated: it is there). One the checkpoint holds leaves a mark that
    /// hides it.
    pub(super) fn remove_child(&mut self, folder: Id, name: &str) {
        let f = &self.folders[&folder];
        let in_base =
            f.base_children.1 > 0 && self.noted(self.base.find_child(f.base_children, name)).flatten().is_some();
        let f = self.folders.get_mut(&folder).expect("validated");
        if in_base {
            f.children.insert(Arc::from(name), None);
        } else {
            f.children.remove(name);
        }
        f.entries -= 1;
    }

    /// What `id` is: a folder, a message, or nothing (deleted, or never committed).
    pub fn entry(&self, id: Id) -> Option<Entry> {
        if self.folders.contains_key(&id) {
            Some(Entry::Folder(id))
        } else if self.has_message(id) {
            Some(Entry::Message(id))
        } else {
            None
        }
    }

    /// Is `id` a message?
    pub fn has_message(&self, id: Id) -> bool {
        self.messages.contains_key(&id) || self.base_row(id).is_some()
    }

    /// What `name` in `folder` refers to.
    pub fn lookup(&self, folder: Id, name: &str) -> Option<Entry> {
        let f = self.folders.get(&folder)?;
        let id = self.noted(self.child_of(f, name)).flatten()?;
        self.entry(id)
    }

    pub fn folder(&self, id: Id) -> Result<&Folder> {
        match self.folders.get(&id) {
            Some(f) => Ok(f),
            None if self.has_message(id) => Err(Error::NotAFolder),
            None => Err(Error::NotFound),
        }
    }

    /// Message `id`: borrowed when it changed since the checkpoint, decoded from it when not.
    /// Damage in the checkpoint is an error here.
    pub fn message(&self, id: Id) -> Result<Cow<'_, Message>> {
        if let Some(m) = self.messages.get(&id) {
            return Ok(Cow::Borrowed(m));
        }
        if self.base.message_count() > 0 && !self.gone.contains(&id) {
            if let Some(i) = self.base.find_message(id)? {
                return Ok(Cow::Owned(self.base.row(i)?.message));
            }
        }
        if self.folders.contains_key(&id) {
            Err(Error::IsAFolder)
        } else {
            Err(Error::NotFound)
        }
    }

    /// Message `id` if there is one; an error only for damage.
    pub(super) fn message_if_any(&self, id: Id) -> Result<Option<Cow<'_, Message>>> {
        match self.message(id) {
            Ok(m) => Ok(Some(m)),
            Err(Error::NotFound | Error::IsAFolder) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The entries of `folder`, in name order (bytewise).
    pub fn children(&self, folder: Id) -> Result<impl Iterator<Item = (&str, Child<'_>)> + '_> {
        let f = self.folder(folder)?;
        // A listing reads the folder's stretch of rows and names: ask for it all at once
        // rather than a page at a time (the map is read at random otherwise).
        self.base.prefetch_children(f.base_children);
        Ok(self.entries_of(f).filter_map(move |(name, id, row)| Some((name, self.child(id, row)?))))
    }

    /// A folder's entries by name: its checkpoint rows merged with its changes, each with
    /// its id and, for a checkpoint row not changed since, the row of the message.
    pub(super) fn entries_of<'a>(&'a self, f: &'a Folder) -> Entries<'a> {
        let (first, n) = f.base_children;
        let base: Box<dyn Iterator<Item = (&str, Id, u64)>> = if n == 0 {
            Box::new(std::iter::empty())
        } else {
            Box::new((first..first + n).map_while(|i| self.noted(self.base.child(i))))
        };
        Entries { base: base.peekable(), changed: f.children.iter().peekable() }
    }

    /// What an entry is: a folder, or a message with its record (from the changes, or
    /// decoded from checkpoint row `row`). None, with the damage noted, if it cannot be read.
    fn child(&self, id: Id, row: Option<u64>) -> Option<Child<'_>> {
        if self.folders.contains_key(&id) {
            return Some(Child::Folder(id));
        }
        if let Some(m) = self.messages.get(&id) {
            return Some(Child::Message(id, Cow::Borrowed(m)));
        }
        let m = match row {
            Some(row) => match self.base.row(row as usize) {
                Ok(r) if r.id == id => Ok(r.message),
                Ok(_) => Err(Error::corrupt("checkpoint", format!("the child row of {id} points at another message"))),
                Err(e) => Err(e),
            },
            None => self.message(id).map(Cow::into_owned),
        };
        self.noted(m).map(|m| Child::Message(id, Cow::Owned(m)))
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
        match self.messages.get(&id) {
            Some(m) => Some(m.version),
            None => self.base_row(id).and_then(|i| self.noted(self.base.place_of(i))).map(|(_, _, v)| v),
        }
    }

    /// The folder and name of message `id`, if it is one.
    pub fn location_of(&self, id: Id) -> Option<(Id, &str)> {
        match self.messages.get(&id) {
            Some(m) => Some((m.folder, &*m.name)),
            None => self.base_row(id).and_then(|i| self.noted(self.base.place_of(i))).map(|(f, n, _)| (f, n)),
        }
    }

    /// Where version `version` of message `id` lives in the log, if it is kept there.
    pub fn inline_at(&self, id: Id, version: u64) -> Option<LogLoc> {
        if let Some(at) = self.inline.get(version) {
            return Some(at);
        }
        let (_, v, at) = self.base_row(id).and_then(|i| self.noted(self.base.inline_of(i)))?;
        at.filter(|_| v == version)
    }

    /// How many folders the store has, the root not counted.
    pub fn folder_count(&self) -> usize {
        self.folders.len() - 1
    }

    /// How many messages the store has.
    pub fn message_count(&self) -> usize {
        self.message_count
    }

    /// Every folder, the root included, in no particular order.
    pub fn folders(&self) -> impl Iterator<Item = (Id, &Folder)> {
        self.folders.iter().map(|(&id, f)| (id, f))
    }

    /// Every message, in no particular order. Reads the whole checkpoint: for checks,
    /// exports and syncs, not for a request.
    pub fn messages(&self) -> impl Iterator<Item = (Id, Cow<'_, Message>)> {
        let changed = self.messages.iter().map(|(&id, m)| (id, Cow::Borrowed(m)));
        let base = (0..self.base.message_count()).filter_map(move |i| {
            let row = self.noted(self.base.row(i))?;
            (!self.messages.contains_key(&row.id) && !self.gone.contains(&row.id))
                .then_some((row.id, Cow::Owned(row.message)))
        });
        changed.chain(base)
    }

    /// Every message's id and current version, with the place of its content if it is in
    /// the log. Reads every row of the checkpoint, but decodes no name: for compaction.
    pub(super) fn inline_places(&self) -> impl Iterator<Item = (Id, u64, Option<LogLoc>)> + '_ {
        let changed = self.messages.iter().map(|(&id, m)| (id, m.version, self.inline.get(m.version)));
        let base = (0..self.base.message_count()).filter_map(move |i| {
            let (id, version, at) = self.noted(self.base.inline_of(i))?;
            if self.messages.contains_key(&id) || self.gone.contains(&id) {
                return None;
            }
            // A relocation since the checkpoint is in the map, not in the row.
            Some((id, version, self.inline.get(version).or(at)))
        });
        changed.chain(base)
    }

    /// The messages new or changed since the checkpoint (all of them without one).
    pub(super) fn changed_messages(&self) -> impl Iterator<Item = (Id, &Message)> {
        self.messages.iter().map(|(&id, m)| (id, m))
    }

    /// Every message with the place of its inline content, in id order (for writing a
    /// checkpoint): the checkpoint's rows merged with the changes.
    pub(super) fn messages_by_id(&self) -> Result<Vec<(Id, Option<usize>)>> {
        let mut changed: Vec<Id> = self.messages.iter().map(|(&id, _)| id).collect();
        changed.sort_unstable();
        let mut out = Vec::with_capacity(self.message_count);
        let mut c = changed.into_iter().peekable();
        for i in 0..self.base.message_count() {
            let id = self.base.row_id(i)?;
            while let Some(&k) = c.peek().filter(|&&k| k < id) {
                out.push((k, None));
                c.next();
            }
            if !self.messages.contains_key(&id) && !self.gone.contains(&id) {
                out.push((id, Some(i)));
            }
        }
        out.extend(c.map(|k| (k, None)));
        Ok(out)
    }

    /// Message `id` (row `row` of the checkpoint, or in the changes) and the place of its
    /// inline content.
    pub(super) fn message_and_place(&self, id: Id, row: Option<usize>) -> Result<(Cow<'_, Message>, Option<LogLoc>)> {
        match row {
            Some(i) => {
                let r = self.base.row(i)?;
                let at = self.inline.get(r.message.version).or(r.inline);
                Ok((Cow::Owned(r.message), at))
            }
            None => {
                let m = self.messages.get(&id).ok_or(Error::NotFound)?;
                let at = self.inline.get(m.version);
                Ok((Cow::Borrowed(m), at))
            }
        }
    }
}

/// A folder's entries: its rows in the checkpoint merged with its changes, by name.
pub(super) struct Entries<'a> {
    base: Peekable<Box<dyn Iterator<Item = (&'a str, Id, u64)> + 'a>>,
    changed: Peekable<btree_map::Iter<'a, Arc<str>, Option<Id>>>,
}

impl<'a> Iterator for Entries<'a> {
    /// Name, id, and the message's checkpoint row for an entry that is the checkpoint's.
    type Item = (&'a str, Id, Option<u64>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let take_changed = match (self.base.peek(), self.changed.peek()) {
                (None, None) => return None,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((b, _, _)), Some((c, _))) => c.as_bytes() <= b.as_bytes(),
            };
            if take_changed {
                let (name, id) = self.changed.next().expect("peeked");
                // A change to a name the checkpoint holds replaces (or hides) its row.
                if self.base.peek().is_some_and(|(b, _, _)| *b == &**name) {
                    self.base.next();
                }
                match *id {
                    Some(id) => return Some((&**name, id, None)),
                    None => continue,
                }
            }
            let (name, id, row) = self.base.next().expect("peeked");
            return Some((name, id, (row != FOLDER_ROW).then_some(row)));
        }
    }
}

impl Base {
    /// Remember the first damage found (true if this is it).
    pub fn note(&self, e: &Error) -> bool {
        let text = match e {
            Error::Corrupt { place, what } => (place.clone(), what.clone()),
            e => ("checkpoint".to_string(), e.to_string()),
        };
        self.damage.set(text).is_ok()
    }

    /// The first damage found by a lookup that could not return it.
    pub fn damage(&self) -> Option<Error> {
        self.damage.get().map(|(p, w)| Error::corrupt(p.clone(), w.clone()))
    }
}

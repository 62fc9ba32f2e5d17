//! Readers' holds on versions: a pinned version's content object is not removed when a
//! later save or a delete makes it unreferenced, so a reader can open it whenever it first
//! needs the bytes (often never: a warm page cache answers every read) and still get the
//! version that was current when it pinned.
//!
//! Invariant: a pin is taken under the index read lock, while its version is current, and
//! the committer decides the fate of an unreferenced object only after applying the record
//! that replaced it under the index write lock. So an object either has no pin when the
//! committer looks (it is removed at once) or is marked doomed and removed by its last
//! unpin. Both decisions are made under the pins lock.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use super::vfs::{OpenMode, VfsFile};
use super::{object_path, Error, Id, Result, Shared, Store};

/// What the store knows of one pinned version.
pub(crate) struct Pin {
    id: Id,
    size: u64,
    count: u32,
    /// No message refers to it any more: remove its object at the last unpin.
    doomed: bool,
}

/// Pinned versions by version number (change numbers are unique across the store).
#[derive(Default)]
pub(crate) struct Pins(HashMap<u64, Pin>);

/// One version of a message held for reading. Its object is opened at the first call to
/// [`PinnedVersion::file`]; dropping it releases the hold.
pub struct PinnedVersion {
    store: Store,
    pub id: Id,
    pub version: u64,
    pub size: u64,
    /// The message's attributes when it was pinned: what an open descriptor still shows
    /// once the message is deleted.
    pub attrs: super::Attrs,
    file: OnceLock<Arc<dyn VfsFile>>,
}

impl PinnedVersion {
    /// The version's content, opened on first use.
    pub fn file(&self) -> Result<&Arc<dyn VfsFile>> {
        if let Some(f) = self.file.get() {
            return Ok(f);
        }
        let p = object_path(self.id, self.version);
        let f = self.store.0.vfs.open(&p, OpenMode::Read).map_err(|e| Error::io(format!("open {}", p.display()), e))?;
        // Two first reads may race: one descriptor is kept, the other closed.
        let _ = self.file.set(Arc::from(f));
        Ok(self.file.get().expect("set above"))
    }
}

impl Drop for PinnedVersion {
    fn drop(&mut self) {
        self.store.0.unpin(self.id, self.version);
    }
}

impl Store {
    /// Pin the current version of message `id` for reading, without opening its content.
    pub fn pin_message(&self, id: Id) -> Result<PinnedVersion> {
        self.check_access()?;
        let ix = self.index();
        let m = ix.message(id)?;
        let (version, size, attrs) = (m.version, m.size, m.attrs);
        // Content in the log is reached through its segment's shared descriptor, taken
        // now: a compaction may remove the segment once the index names another place.
        let file = OnceLock::new();
        if ix.inline_at(id, version).is_some() {
            let _ = file.set(self.0.content_file(&ix, id, version)?);
        }
        // Under the index lock: see the module's invariant.
        self.0.pins.lock().unwrap().0.entry(version).or_insert(Pin { id, size, count: 0, doomed: false }).count += 1;
        drop(ix);
        Ok(PinnedVersion { store: self.clone(), id, version, size, attrs, file })
    }

    /// The size of a pinned version (an older version still open somewhere).
    pub fn pinned_size(&self, version: u64) -> Option<u64> {
        self.0.pins.lock().unwrap().0.get(&version).map(|p| p.size)
    }
}

impl Shared {
    /// Called by the committer for an object no message refers to any more: whether to
    /// remove it now (false: a reader holds it, and its last unpin removes it).
    pub(crate) fn reclaim_now(&self, version: u64) -> bool {
        match self.pins.lock().unwrap().0.get_mut(&version) {
            Some(p) => {
                p.doomed = true;
                false
            }
            None => true,
        }
    }

    fn unpin(&self, id: Id, version: u64) {
        let doomed = {
            let mut pins = self.pins.lock().unwrap();
            let Some(p) = pins.0.get_mut(&version) else { return };
            p.count -= 1;
            if p.count > 0 {
                return;
            }
            debug_assert_eq!(p.id, id);
            pins.0.remove(&version).is_some_and(|p| p.doomed)
        };
        if doomed {
            // Under the queue lock, so that no freeze starts meanwhile: a frozen store's
            // directory must not change under a backup. While frozen, the committer removes
            // it after the thaw.
            let mut q = self.queue.lock().unwrap();
            if q.frozen > 0 {
                q.reclaim.push((id, version));
            } else {
                let _ = self.vfs.remove_file(&object_path(id, version));
            }
        }
    }

    /// Remove the objects whose last reader left while the store was frozen.
    pub(crate) fn reclaim_deferred(&self) {
        let list = std::mem::take(&mut self.queue.lock().unwrap().reclaim);
        for (id, version) in list {
            let _ = self.vfs.remove_file(&object_path(id, version));
        }
    }

    /// At close: remove the objects only pinned readers kept. They cannot read after close.
    pub(crate) fn reclaim_pinned(&self) {
        let mut pins = self.pins.lock().unwrap();
        for (version, p) in pins.0.iter_mut().filter(|(_, p)| p.doomed) {
            let _ = self.vfs.remove_file(&object_path(p.id, *version));
            p.doomed = false;
        }
    }
}

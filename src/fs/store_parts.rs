//! The store's side of `.parts` folders (see `parts.rs`): a message's parts folder is keyed
//! by the message's current version, whose bytes never change, so its parts never do
//! either; a save or a delete leaves the old key behind, and its inodes answer ENOENT.

use std::sync::Arc;
use std::time::Duration;

use fuser::Errno;

use super::errno::{err, FsError, FsResult};
use super::parts::{parts_stem, Messages};
use super::store_fs::*;
use super::view::NEGATIVE_TTL;

/// A store message as the parts view knows it: its id and the version shown.
pub type PartsKey = (Id, u64);

/// The store's messages, for the parts view.
struct StoreMessages<'a>(&'a StoreFs);

impl Messages<PartsKey> for StoreMessages<'_> {
    fn content(&mut self, (id, version): PartsKey) -> FsResult<Arc<Vec<u8>>> {
        self.0.check_readable(id)?;
        let pin = self.0.store.pin_message(id)?;
        if pin.version != version {
            return err(Errno::ENOENT);
        }
        let size = u32::try_from(pin.size).map_err(|_| FsError::Errno(Errno::EFBIG))?;
        Ok(Arc::new(StoreFs::read_pinned(&pin, 0, size)?))
    }

    fn check(&mut self, (id, version): PartsKey) -> FsResult<()> {
        match self.0.store.index().version_of(id) {
            Some(v) if v == version => Ok(()),
            _ => err(Errno::ENOENT),
        }
    }
}

impl StoreFs {
    /// How long the kernel may keep the name `NAME.eml.parts`: it leads to the current
    /// version's parts, so on a store that can change, not for long (a save makes the
    /// old folder answer ENOENT until the kernel asks again). What is inside never changes.
    fn parts_entry_ttl(&self) -> Duration {
        if self.read_only {
            TTL
        } else {
            NEGATIVE_TTL
        }
    }

    /// `name`, which folder `parent` does not hold: the parts folder of the message named
    /// by its stem, if it is one.
    pub fn parts_dir(&self, parent: u64, name: &str) -> FsResult<(Attr, Duration)> {
        let stem = parts_stem(name).ok_or(FsError::Errno(Errno::ENOENT))?;
        let folder = self.folder_of(parent)?;
        let found = self.find(&self.overlay(), folder, stem);
        let id = match found {
            Some(Found::Message(m)) | Some(Found::Shadow(Shadow { msg: m, .. })) => m,
            // A file not saved yet, a scratch file or a folder has no parts.
            _ => return err(Errno::ENOENT),
        };
        self.check_readable(id)?;
        let m = self.message_attr(id)?;
        let a = self.parts.message_dir((id, m.ino), parent, m.attrs, &mut StoreMessages(self))?;
        Ok((a, self.parts_entry_ttl()))
    }

    pub fn parts_lookup(&self, parent: u64, name: &str) -> FsResult<(Attr, Duration)> {
        Ok((self.parts.lookup(parent, name, &mut StoreMessages(self))?, self.parts_entry_ttl()))
    }

    pub fn parts_getattr(&self, ino: u64) -> FsResult<(Attr, Duration)> {
        Ok((self.parts.getattr(ino, &mut StoreMessages(self))?, TTL))
    }

    /// A parts folder's entries. Their keys are never read: `entry_attr` answers parts
    /// inodes by number.
    pub fn parts_listing(&self, ino: u64) -> FsResult<Arc<Vec<DirEnt>>> {
        let l = self.parts.listing(ino, &mut StoreMessages(self))?;
        Ok(Arc::new(
            l.into_iter()
                .map(|(ino, name, dir)| super::view::DirEnt { ino, name, dir, key: InodeRef::Node(ino) })
                .collect(),
        ))
    }

    pub fn parts_entry_attr(&self, ino: u64) -> Option<(Attr, Duration)> {
        self.parts.entry_attr(ino, &mut StoreMessages(self)).ok().map(|a| (a, TTL))
    }

    pub fn parts_read(&self, ino: u64, off: u64, size: u32) -> FsResult<Vec<u8>> {
        self.parts.read(ino, off, size, &mut StoreMessages(self))
    }
}

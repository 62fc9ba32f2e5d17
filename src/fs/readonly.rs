//! Reads on a read-only mount, where the kernel opens nothing (see `View::opens`): a READ
//! names only its inode, and is answered from the version that inode stands for; a READDIR
//! names only its folder, and is answered from the folder's entries.
//!
//! Invariant: a read-only mount's store never changes while mounted (it is opened read-only
//! and nothing here writes), so an inode's version, hence its bytes, and a folder's entries
//! are the same for every READ, READDIR and open. That is what lets the kernel keep pages
//! and listings across opens without asking, and lets this keep a few pinned versions and
//! listings by inode.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use fuser::Errno;

use super::errno::{err, FsResult};
use super::store_fs::{DirEnt, InodeRef, StoreFs};
use crate::store::PinnedVersion;

/// Pinned versions kept for the READs that follow (a large message comes in many READs;
/// each would otherwise pin its version and open its object again).
const RECENT: usize = 16;

/// Listings kept for the READDIRs that follow (a large folder is listed in many).
const LISTINGS: usize = 4;

/// The versions read last, by inode, the latest at the back.
#[derive(Default)]
pub struct RecentPins(Mutex<VecDeque<(u64, Arc<PinnedVersion>)>>);

/// The folders listed last, by inode, the latest at the back.
#[derive(Default)]
pub struct RecentListings(Mutex<VecDeque<(u64, Arc<Vec<DirEnt>>)>>);

impl StoreFs {
    /// Read through inode `ino` with no handle: the kernel opened nothing.
    pub fn read_inode(&self, ino: u64, off: u64, size: u32) -> FsResult<Vec<u8>> {
        if !self.read_only {
            // A writable mount always answers OPEN, so the kernel always gives a handle.
            return err(Errno::EBADF);
        }
        let pin = self.recent_pin(ino)?;
        if off == 0 {
            self.first_read(pin.id);
        }
        Self::read_pinned(&pin, off, size)
    }

    /// Folder `ino`'s entries with no handle: the kernel opened nothing.
    pub fn listing_unopened(&self, ino: u64) -> FsResult<Arc<Vec<DirEnt>>> {
        if !self.read_only {
            return err(Errno::EBADF);
        }
        let mut recent = self.listings.0.lock().unwrap();
        if let Some((_, l)) = recent.iter().find(|(i, _)| *i == ino) {
            return Ok(l.clone());
        }
        drop(recent);
        let l = self.listing(ino)?;
        recent = self.listings.0.lock().unwrap();
        if recent.len() >= LISTINGS {
            recent.pop_front();
        }
        recent.push_back((ino, l.clone()));
        Ok(l)
    }

    fn recent_pin(&self, ino: u64) -> FsResult<Arc<PinnedVersion>> {
        let mut recent = self.recent.0.lock().unwrap();
        if let Some(i) = recent.iter().position(|(i, _)| *i == ino) {
            let e = recent.remove(i).expect("found above");
            let pin = e.1.clone();
            recent.push_back(e);
            return Ok(pin);
        }
        drop(recent);
        let (id, version) = match self.resolve(ino)? {
            InodeRef::Version { id, version } => (id, Some(version)),
            InodeRef::Message(id) => (id, None),
            InodeRef::Folder(_) => return err(Errno::EISDIR),
            // No overlay file can exist on a read-only mount.
            InodeRef::Node(_) => return err(Errno::EBADF),
        };
        // What open checks on a writable mount, checked at each first read here.
        self.check_readable(id)?;
        let pin = Arc::new(self.store.pin_message(id)?);
        if version.is_some_and(|v| v != pin.version) {
            // Cannot happen (see the invariant above); were it to, the kernel's cached pages
            // of this inode could be another version's, and no READ must mix them.
            log::error!("message {id:#x} changed under a read-only mount");
            return err(Errno::ESTALE);
        }
        let mut recent = self.recent.0.lock().unwrap();
        if recent.len() >= RECENT {
            recent.pop_front();
        }
        recent.push_back((ino, pin.clone()));
        Ok(pin)
    }
}

//! Lazy commit (ESE's JET_bitCommitLazyFlush): a save submitted with
//! [`Store::submit_lazy`] is logged, applied and answered without waiting for the log
//! sync, which follows within the store's `lazy_delay` (one sync for all of them).
//!
//! Invariants that keep a crash to "a prefix of the commits":
//! - frames go to the log in commit order, and the frames of a segment are synced before
//!   any frame is written to the next one;
//! - a durable commit's sync covers every lazy frame before it;
//! - content an old version leaves behind (its object) is removed only once the commit
//!   that replaced it is durable, so a crash that loses that commit finds it still there.

use std::time::{Duration, Instant};

use super::error::{Error, Result};
use super::{Id, LogState, Shared, Store};

/// The default of `-o commit=lazy`: the log is synced at most this long after a save.
pub const DEFAULT_DELAY_MS: u64 = 50;

impl Shared {
    /// Sync the log if lazy frames are waiting, then remove what their commits left.
    pub(super) fn sync_log_locked(&self, lg: &mut LogState) -> Result<()> {
        if lg.unsynced_since.is_none() {
            return Ok(());
        }
        if let Some(w) = lg.writer.as_ref() {
            if let Err(e) = w.file.sync() {
                *self.poisoned.lock().unwrap() = Some(format!("log sync failed ({e}); reopen the store"));
                // Poisoned: nothing is synced or committed any more (reopening replays what
                // reached the disk), so the committer must not keep trying.
                lg.unsynced_since = None;
                return Err(Error::io("sync the log", e));
            }
            self.stats.log_syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        lg.unsynced_since = None;
        self.synced();
        Ok(())
    }

    /// The log was synced: every commit so far is durable, and what lazy ones left goes.
    pub(super) fn synced(&self) {
        self.reclaim_garbage(std::mem::take(&mut *self.deferred_garbage.lock().unwrap()));
    }

    /// Sync lazy frames now (the committer, when their time is up or before it stops).
    pub(super) fn sync_lazy(&self) {
        let mut lg = self.log.lock().unwrap();
        if let Err(e) = self.sync_log_locked(&mut lg) {
            ::log::error!("{e}");
        }
    }

    /// When the committer must sync lazy frames, if any wait.
    pub(super) fn lazy_deadline(&self) -> Option<Instant> {
        self.log.lock().unwrap().unsynced_since.map(|t| t + self.lazy_delay)
    }

    /// Old versions a group's commit left: removed now if the commit is durable, else
    /// once the log is synced.
    pub(super) fn garbage(&self, list: Vec<(Id, u64)>, durable: bool) {
        if durable {
            self.reclaim_garbage(list);
        } else {
            self.deferred_garbage.lock().unwrap().extend(list);
        }
    }

    /// An object no message refers to any more goes, unless a reader holds it (its last
    /// reader then removes it, see `pin.rs`).
    fn reclaim_garbage(&self, list: Vec<(Id, u64)>) {
        for (id, ver) in list {
            if self.reclaim_now(ver) {
                let _ = self.vfs.remove_file(&super::object_path(id, ver));
            }
        }
    }
}

impl Store {
    /// Queue an operation to be committed lazily: `reply` comes once it is logged and
    /// visible, before it is durable; the log is synced within the store's `lazy_delay`,
    /// or by the next durable commit or [`Store::sync_log`], whichever comes first.
    pub fn submit_lazy(&self, op: super::commit::Op, reply: super::commit::Reply) {
        self.submit_with(op, reply, false);
    }

    /// Make every commit answered so far durable (fsync after a lazy save).
    pub fn sync_log(&self) -> Result<()> {
        self.run(super::commit::Op::Barrier).map(drop)
    }

    /// Whether commits answered so far may not be durable yet (lazy ones wait for their
    /// log sync). False means a barrier would find nothing to sync.
    pub fn lazy_pending(&self) -> bool {
        self.0.lazy_deadline().is_some()
    }

    /// Whether saves at close are to be committed lazily (the store was opened so).
    pub fn lazy(&self) -> bool {
        self.0.lazy
    }

    /// The longest a lazy commit stays not durable.
    pub fn lazy_delay(&self) -> Duration {
        self.0.lazy_delay
    }
}

//! The committer's side of the log: appending a frame (synced, or written only for a lazy
//! commit), starting segments, and checkpoints with the compaction before them.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::error::{Error, Result};
use super::vfs::OpenMode;
use super::{checkpoint, index, inline, log, open, LogState, Shared};

/// A checkpoint is due after this many times `Options::checkpoint_bytes` of log, content
/// included, even with little metadata in it.
const CONTENT_CHECKPOINT_FACTOR: u64 = 16;

impl Shared {
    /// Append a frame and sync it. A failed sync poisons the store: what reached the disk
    /// is unknown, so nothing more is committed until it is reopened and replayed. Inline
    /// content records learn where their bytes landed.
    pub(crate) fn append(&self, records: &mut [index::Record], sync: bool) -> Result<()> {
        let mut guard = self.log.lock().unwrap();
        self.append_locked(&mut guard, records, sync)
    }

    /// Append a frame; with `sync` it is durable on return (and every frame before it),
    /// without it only written (a lazy commit: see `lazy.rs`).
    pub(super) fn append_locked(&self, lg: &mut LogState, records: &mut [index::Record], sync: bool) -> Result<()> {
        let seq = lg.next_seq;
        let (frame, marks) = log::encode_frame_marked(seq, records);
        if frame.len() > log::MAX_FRAME {
            // Replay refuses frames this large; never acknowledge one.
            return Err(Error::InvalidArgument(format!(
                "a commit group of {} bytes is over the frame limit",
                frame.len()
            )));
        }
        let w = lg.writer.as_mut().ok_or(Error::ReadOnly)?;
        let (seg, start) = (w.first_seq, w.len);
        if let Err(e) = w.write(&frame) {
            // A full disk: deletions may use the reserve, since they are how room is made.
            let full = e.raw_os_error() == Some(libc::ENOSPC);
            if !(full && log::only_deletions(records) && log::release_reserve(&*self.vfs, frame.len() as u64)) {
                return Err(Error::io("append to the log", e));
            }
            ::log::warn!("the disk is full: released the store's reserve to log a deletion");
            w.write(&frame).map_err(|e| Error::io("append to the log", e))?;
            lg.reserve_used = true;
            lg.reserve_short = true;
        }
        let full = w.len >= log::SEGMENT_BYTES;
        lg.unsynced_since.get_or_insert_with(std::time::Instant::now);
        // A lazy frame stays written only; a durable one is synced with every frame before
        // it, and so are a full segment's lazy frames before any frame goes to the next
        // (a crash must leave a prefix of the commits).
        if sync || full {
            self.sync_log_locked(lg)?;
        }
        let mut marks = marks.into_iter();
        for r in records.iter_mut() {
            if let index::Record::Content { at, data: Some(d), .. } = r {
                let m = marks.next().expect("one mark per inline content");
                *at = inline::LogLoc { seg, off: start + m, len: d.0.len() as u64 };
            }
        }
        self.stats.frames.fetch_add(1, Ordering::Relaxed);
        self.stats.records.fetch_add(records.len() as u64, Ordering::Relaxed);
        lg.next_seq += records.len() as u64;
        lg.bytes_since_checkpoint += frame.len() as u64;
        lg.content_since_checkpoint += records
            .iter()
            .map(|r| match r {
                index::Record::Content { at, .. } => at.len,
                _ => 0,
            })
            .sum::<u64>();
        if full {
            // The frame is durable: a failure to start the next segment must not turn this
            // commit into a reported failure. The next append tries again.
            let next = lg.next_seq;
            match self.new_segment(next) {
                Ok(w) => {
                    if let Some(old) = lg.writer.replace(w) {
                        old.retire();
                    }
                }
                Err(e) => ::log::warn!("starting a new log segment failed (will retry): {e}"),
            }
        }
        // Grow the reserve back where a deletion took from it, as space comes back (that
        // deletion's objects go after its append).
        if lg.reserve_short {
            lg.reserve_short = !log::reserve_whole(&log::ensure_reserve(&*self.vfs));
        }
        Ok(())
    }

    pub(super) fn new_segment(&self, first_seq: u64) -> Result<log::Writer> {
        let p = log::segment_path(first_seq);
        let file =
            self.vfs.open(&p, OpenMode::CreateTruncate).map_err(|e| Error::io(format!("create {}", p.display()), e))?;
        self.vfs.sync_dir(Path::new(log::LOG_DIR)).map_err(|e| Error::io("sync log/", e))?;
        Ok(log::Writer::new(file, first_seq, 0, 0))
    }

    /// Write a checkpoint when enough log follows the last one. Runs in the committer,
    /// between groups, so the index and the log agree.
    pub(crate) fn maybe_checkpoint(&self) {
        let due = {
            let mut lg = self.log.lock().unwrap();
            // A checkpoint writes the whole index: it is due once as much metadata has been
            // logged (content logged inline does not make replay slower to decode), or once
            // the log since the last one is many times that (replay still reads it all).
            let metadata = lg.bytes_since_checkpoint - lg.content_since_checkpoint.min(lg.bytes_since_checkpoint);
            std::mem::take(&mut lg.reserve_used)
                || metadata >= self.checkpoint_bytes
                || lg.bytes_since_checkpoint >= CONTENT_CHECKPOINT_FACTOR * self.checkpoint_bytes
        };
        if due {
            if let Err(e) = self.checkpoint() {
                ::log::warn!("checkpoint failed (the log keeps everything): {e}");
            }
        }
    }

    /// Start a new segment, write the checkpoint covering everything before it, then remove
    /// the older segments that hold no live inline content (after moving what little a
    /// mostly dead one holds, see `compact`). A crash between the steps leaves segments the
    /// checkpoint already covers, which replay skips and the next checkpoint removes.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        let mut lg = self.log.lock().unwrap();
        if lg.writer.is_none() || self.poisoned.lock().unwrap().is_some() {
            return Ok(());
        }
        // Lazy frames first: the segment they are in may be followed by a new one.
        self.sync_log_locked(&mut lg)?;
        if let Err(e) = self.compact(&mut lg) {
            // On a full disk there may be no room to move live content; the checkpoint
            // still removes the segments nothing live is left in.
            ::log::warn!("compacting the log failed (its segments stay as they are): {e}");
        }
        let next = lg.next_seq;
        let current_first = lg.writer.as_ref().map(|w| w.first_seq);
        if current_first != Some(next) {
            if let Some(old) = lg.writer.replace(self.new_segment(next)?) {
                old.retire();
            }
        }
        // An older msgfs cannot read format 6 checkpoints: it must refuse the store as too
        // new, not take the checkpoint for damage.
        if self.format.load(Ordering::Relaxed) < open::FORMAT_MAPPED_CHECKPOINT {
            open::raise_format(&*self.vfs, &self.store_id, open::FORMAT_MAPPED_CHECKPOINT)?;
            self.format.store(open::FORMAT_MAPPED_CHECKPOINT, Ordering::Relaxed);
        }
        let ix = self.index.read().unwrap();
        let applied = ix.applied;
        checkpoint::write(&*self.vfs, &ix, next - 1)?;
        for (first, path) in log::list_segments(&*self.vfs)? {
            if first < next && ix.inline.live_in(first) == 0 {
                self.vfs.remove_file(&path).map_err(|e| Error::io(format!("remove {}", path.display()), e))?;
                self.drop_segment_file(first);
            }
        }
        drop(ix);
        // Serve from the file just written, now durable, and drop the changes it holds. Only
        // the committer applies records, and it is here; the count makes sure. A failure
        // leaves the index on the older map, which stays correct.
        match checkpoint::map(&*self.vfs) {
            Ok(base) => {
                let mut ix = self.index.write().unwrap();
                if ix.applied == applied {
                    if let Err(e) = ix.rebase(base) {
                        ::log::warn!("serving the index from the new checkpoint failed: {e}");
                    }
                }
            }
            Err(e) => ::log::warn!("mapping the new checkpoint failed (the index stays in memory): {e}"),
        }
        let _ = self.vfs.sync_dir(Path::new(log::LOG_DIR));
        lg.bytes_since_checkpoint = 0;
        lg.content_since_checkpoint = 0;
        self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

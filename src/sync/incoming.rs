//! What comes down in a folder's pass (IOSTX DOWNLOAD_TABLE 11 and DOWNLOAD_HEADER 17): the
//! server's deletions, then its new messages, headers first (a message moved there from
//! another synced folder follows locally instead), then their bodies.

use super::download::{fetch_bodies, fetch_headers, list_new, DownloadError, DownloadReport};
use super::engine::{delete_limit, linked_count, FolderReport, Linked, Pass, State, SyncError};
use super::imap::Fetched;
use crate::import::MessageNames;
use crate::mime;
use crate::store::{self, flags, FolderRemote, Id, MessageRemote, RemoteChange};

impl Pass<'_> {
    /// Linked messages the server no longer has: deleted here too, unless edited since
    /// they were synced (then kept, unlinked, and uploaded as new by the next pass).
    pub(super) fn server_deletions(
        &mut self,
        vanished: &[Linked],
        report: &mut FolderReport,
        changes: &mut Vec<RemoteChange>,
    ) -> Result<(), SyncError> {
        // Kept: a message edited since it was synced, or moved locally to another folder
        // since (the user's later intent; its new folder's pass uploads it).
        let (edited, plain): (Vec<&Linked>, Vec<&Linked>) = vanished.iter().partition(|l| {
            (l.version != l.link.version && l.flags & flags::HEADER_ONLY == 0) || l.folder != l.link.folder
        });
        for l in edited {
            // The upload pass already sent it as new when uploads are on; either way the
            // old link names nothing now.
            if self.store.index().message_remote(l.id).is_some_and(|r| r.uid == l.link.uid && r.folder == l.link.folder)
            {
                changes.push(RemoteChange::Message(l.id, None));
            }
        }
        let limit = delete_limit(self.opts.max_deletes, linked_count(self.store, plain.first().map(|l| l.link.folder)));
        if plain.len() as u64 > limit && !self.opts.allow_mass_delete {
            report.refuse(
                State::DownloadTable,
                format!(
                "refused to delete {} messages locally that the server no longer has (more than max_deletes allows, \
                 {limit}); rerun with --allow-mass-delete if that is what you want",
                plain.len()
            ),
            );
            return Ok(());
        }
        for l in plain {
            // It may have moved to a folder whose pass is still to come: deleted at the end
            // of the run unless that pass claims it (see `Gone`).
            if let Some(g) = self.gone.iter_mut().find(|g| g.id == l.id) {
                g.approved = true;
                continue;
            }
            log::debug!("{}: UID {} is gone on the server: deleting message {}", report.store_path, l.link.uid, l.id);
            report.down.deleted += 1;
            if self.opts.dry_run {
                continue;
            }
            match self.store.delete_message(l.id) {
                // The server has no copy to delete: the deletion's tombstone goes in the
                // same record as the HIGHESTMODSEQ past this expunge (a later VANISHED
                // does not name the UID again, so a tombstone left now would stay).
                Ok(()) => changes.push(RemoteChange::Message(l.id, None)),
                Err(store::Error::NotFound | store::Error::ObjectDeleted) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// New messages (and `again`, deleted locally but changed on the server): headers
    /// first, the cursor moving with each batch, then every header-only message's body.
    pub(super) fn download(
        &mut self,
        local: Id,
        server_name: &str,
        state: &mut FolderRemote,
        again: &[u32],
        report: &mut FolderReport,
    ) -> Result<(), SyncError> {
        let mut dl = DownloadReport::default();
        let mut todo: Vec<(u32, u64)> = again.iter().map(|u| (*u, 0)).collect();
        let (mut new, highest) = list_new(self.conn, self.store, local, state.cursor)?;
        // A killed run's APPEND that the server stored after it was sent again is a copy
        // of ours, not new mail (see Pass::resolve_intents): removed there instead.
        let late = self.late_copies(local, &new)?;
        new.retain(|(uid, _)| !late.contains(uid));
        todo.extend(new);
        if self.opts.dry_run {
            report.down.new += todo.len() as u64;
            return Ok(());
        }
        self.progress.state(&report.store_path, State::DownloadTable, todo.len() as u64);
        report.last_state = Some(State::DownloadTable);
        let mut names = MessageNames::default();
        let store = self.store;
        let started = std::time::Instant::now();
        let progress = &mut *self.progress;
        let gone = &mut *self.gone;
        let mut moved = 0u64;
        // A new message here that left another synced folder there in this run: the local
        // copy follows it, with its flags and state, instead of a download.
        let mut claim = |f: &Fetched| -> Result<bool, DownloadError> {
            let (Some(header), Some(size)) = (f.header.as_deref(), f.size) else { return Ok(false) };
            let Some(mid) = mime::parse_props(header).message_id else { return Ok(false) };
            let Some(n) = gone.iter().position(|g| g.from != local && g.size == u64::from(size) && g.message_id == mid)
            else {
                return Ok(false);
            };
            let g = gone.remove(n);
            let name = {
                let ix = store.index();
                let Ok(m) = ix.message(g.id) else { return Ok(false) };
                let taken = |c: &str| ix.lookup(local, c).is_some();
                mime::unique_name(m.name(), taken)
            };
            let link = MessageRemote { folder: local, uid: u64::from(f.uid), modseq: f.modseq.unwrap_or(0), ..g.link };
            match store.move_synced(g.id, local, &name, link) {
                Ok(()) => {
                    log::debug!("UID {} arrives as message {} moved from folder {}", f.uid, g.id, g.from);
                    moved += 1;
                    Ok(true)
                }
                // Deleted or moved here meanwhile: download it as new.
                Err(store::Error::NotFound | store::Error::ObjectDeleted | store::Error::Exists) => Ok(false),
                Err(e) => Err(DownloadError::Store(e)),
            }
        };
        fetch_headers(
            self.conn,
            store,
            &mut names,
            local,
            server_name,
            &todo,
            self.opts.limits,
            &mut dl,
            &mut claim,
            |last| {
                if u64::from(last) > state.cursor {
                    state.cursor = u64::from(last);
                    store.set_folder_remote(local, Some(state.clone())).map_err(DownloadError::Store)?;
                }
                Ok(())
            },
        )?;
        progress.advance(todo.len() as u64, 0);
        report.down.new += dl.messages;
        report.down.moved += moved;
        if dl.messages > 0 {
            log::info!("{}: {} headers in {:.3} s", report.store_path, dl.messages, started.elapsed().as_secs_f64());
        }
        report.last_state = Some(State::DownloadHeader);
        progress.state(&report.store_path, State::DownloadHeader, dl.messages);
        let mut done = |n: u64, b: u64| progress.advance(n, b);
        fetch_bodies(self.conn, store, local, self.opts.limits, &mut dl, &mut done)?;
        report.bodies += dl.bodies;
        report.down.bytes += dl.bytes;
        if dl.bodies > 0 {
            log::info!(
                "{}: {} bodies ({} bytes) in {:.3} s since the pass began",
                report.store_path,
                dl.bodies,
                dl.bytes,
                started.elapsed().as_secs_f64()
            );
        }
        // Everything listed is in (or was expunged meanwhile).
        state.cursor = state.cursor.max(highest);
        Ok(())
    }
}

//! The flags of a folder's pass (IOSTX UPLOAD_MESSAGE_READ 8, and the server's flag
//! changes of DOWNLOAD_TABLE 11): a three-way merge against the flags last synced, with a
//! PENDING mark on each link whose UID STORE may be under way.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::commands::uid_set;
use super::engine::{FolderReport, Linked, Pass, SyncError, PENDING, SYNCED};
use super::imap::Selected;
use crate::store::{self, AttrChange, Id, MessageRemote, RemoteChange};

impl Pass<'_> {
    /// Three-way flag merge of every linked message still in this folder and on the
    /// server; server changes go to the store, local ones to the server (UID STORE, only
    /// where the message did not change there since the SELECT).
    ///
    /// Crash safety, in this order: (1) the merged flags are set locally; (2) the links of
    /// messages whose server flags are to change are marked [`PENDING`] with the merged
    /// flags; (3) UID STORE; (4) the caller commits the final links. A pass killed after
    /// (2) finds the mark and makes the server match the local flags; killed before, it
    /// merges again from the old links, which (1) does not disturb. Without the mark, a
    /// message deleted here after our STORE would look changed there and come back.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn merge_flags(
        &mut self,
        here: Id,
        linked: &[Linked],
        present: &HashSet<u32>,
        server_flags: &HashMap<u32, (u8, Vec<String>, u64)>,
        sel: &Selected,
        report: &mut FolderReport,
        changes: &mut Vec<RemoteChange>,
        ours: &mut HashSet<u32>,
    ) -> Result<(), SyncError> {
        let (up, down) = (self.opts.upload, self.opts.download);
        struct Item {
            l: Linked,
            merged: u8,
            local: u8,
            server: u8,
            kw: Option<Vec<String>>,
            modseq: u64,
        }
        let mut plan: Vec<Item> = Vec::new();
        for l in linked {
            let uid = l.link.uid as u32;
            // Moved away locally (moves() handles it) or gone from the server.
            if l.folder != here || !present.contains(&uid) {
                continue;
            }
            let base = l.link.flags & SYNCED;
            let local = l.flags & SYNCED;
            let pending = l.link.modseq == PENDING;
            let (server, kw, modseq) = match server_flags.get(&uid) {
                Some((b, kw, m)) => (*b, Some(kw.clone()), *m),
                None => (base, None, if pending { 0 } else { l.link.modseq }),
            };
            // Keywords come down as the server has them (their last synced set is not kept).
            let kw = kw.filter(|k| {
                down && self.store.index().message_keywords(l.id).iter().map(|x| &**x).ne(k.iter().map(|x| x.as_str()))
            });
            let merged = if pending {
                // Our STORE may or may not have reached the server: the local flags are
                // what it was to make true.
                local
            } else {
                let local_changed = local ^ base;
                (local & local_changed) | (server & !local_changed)
            };
            if merged == local && merged == server && base == merged && kw.is_none() && !pending {
                continue;
            }
            plan.push(Item { l: *l, merged, local, server, kw, modseq });
        }
        if plan.is_empty() {
            return Ok(());
        }
        if self.opts.dry_run {
            report.up.flags += plan.iter().filter(|i| up && i.merged != i.server).count() as u64;
            report.down.flags += plan.iter().filter(|i| down && i.merged != i.local).count() as u64;
            return Ok(());
        }
        // (1) Locally, all at once.
        let mut gone: HashSet<Id> = HashSet::new();
        let local_changes: Vec<(Id, AttrChange)> = plan
            .iter()
            .filter_map(|i| {
                let set_local = down && i.merged != i.local;
                (set_local || i.kw.is_some()).then(|| {
                    let flags = set_local.then_some((i.l.flags & !SYNCED) | i.merged);
                    (i.l.id, AttrChange { flags, keywords: i.kw.clone(), ..Default::default() })
                })
            })
            .collect();
        let ids: Vec<Id> = local_changes.iter().map(|c| c.0).collect();
        for (id, r) in ids.into_iter().zip(self.store.set_message_attrs_many(local_changes)) {
            match r {
                Ok(()) => {}
                // Deleted or moved meanwhile: the next pass sees it.
                Err(store::Error::NotFound | store::Error::ObjectDeleted) => {
                    gone.insert(id);
                }
                Err(e) => return Err(e.into()),
            }
        }
        plan.retain(|i| !gone.contains(&i.l.id));
        for i in &plan {
            if down && i.merged != i.local {
                report.down.flags += 1;
            }
        }
        // (2), (3): up, +FLAGS and -FLAGS grouped by the bits they change.
        let mut refused_uids: HashSet<u32> = HashSet::new();
        if up {
            let to_store: Vec<&Item> = plan.iter().filter(|i| i.merged != i.server).collect();
            let marks: Vec<RemoteChange> = to_store
                .iter()
                .map(|i| {
                    RemoteChange::Message(i.l.id, Some(MessageRemote { flags: i.merged, modseq: PENDING, ..i.l.link }))
                })
                .collect();
            self.store.update_remote(marks)?;
            let mut adds: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
            let mut removes: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
            for i in &to_store {
                let (add, remove) = (i.merged & !i.server, i.server & !i.merged);
                if add != 0 {
                    adds.entry(add).or_default().push(i.l.link.uid as u32);
                }
                if remove != 0 {
                    removes.entry(remove).or_default().push(i.l.link.uid as u32);
                }
            }
            // A pending mark's server flags are not known for sure: no UNCHANGEDSINCE.
            let since = sel.highest_modseq;
            let checked = |i: &&Item| i.l.link.modseq != PENDING;
            let mut added: HashSet<u32> = HashSet::new();
            let unchecked: HashSet<u32> =
                to_store.iter().filter(|i| !checked(i)).map(|i| i.l.link.uid as u32).collect();
            for (bits, uids) in adds {
                let (plain, blind): (Vec<u32>, Vec<u32>) = uids.iter().partition(|u| !unchecked.contains(u));
                if !plain.is_empty() {
                    refused_uids.extend(self.conn.uid_store(&uid_set(&plain), true, bits, since)?.0);
                }
                if !blind.is_empty() {
                    self.conn.uid_store(&uid_set(&blind), true, bits, None)?;
                }
                added.extend(uids);
            }
            for (bits, uids) in removes {
                let (first, second): (Vec<u32>, Vec<u32>) = uids
                    .into_iter()
                    .filter(|u| !refused_uids.contains(u))
                    .partition(|u| !added.contains(u) && !unchecked.contains(u));
                if !first.is_empty() {
                    refused_uids.extend(self.conn.uid_store(&uid_set(&first), false, bits, since)?.0);
                }
                if !second.is_empty() {
                    // Their +FLAGS above already checked UNCHANGEDSINCE and raised their
                    // MODSEQ: a second check would refuse our own change.
                    self.conn.uid_store(&uid_set(&second), false, bits, None)?;
                }
            }
        }
        // (4) The links, for the caller to commit.
        for i in plan {
            let uid = i.l.link.uid as u32;
            if refused_uids.contains(&uid) {
                // Changed on the server after our SELECT: back to the old link, and the
                // next pass merges again.
                changes.push(RemoteChange::Message(i.l.id, Some(i.l.link)));
                continue;
            }
            if up && i.merged != i.server {
                report.up.flags += 1;
                ours.insert(uid);
            }
            let base = match (up, down) {
                (true, true) => i.merged,
                (true, false) => i.local,
                _ => i.server,
            };
            let modseq = if i.modseq == PENDING { 0 } else { i.modseq };
            changes.push(RemoteChange::Message(i.l.id, Some(MessageRemote { flags: base, modseq, ..i.l.link })));
        }
        Ok(())
    }
}

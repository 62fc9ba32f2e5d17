//! The flags and keywords of a folder's pass (IOSTX UPLOAD_MESSAGE_READ 8, and the
//! server's flag changes of DOWNLOAD_TABLE 11): a three-way merge against what was last
//! synced (the link's flags, the store's synced keywords), with a PENDING mark on each link
//! whose UID STORE may be under way.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::commands::uid_set;
use super::engine::{is_pending, pending_mark, pending_server, FolderReport, Linked, Pass, SyncError, SYNCED};
use super::imap::Selected;
use crate::store::{self, AttrChange, Id, MessageRemote, RemoteChange};

/// A keyword set.
type Words = BTreeSet<String>;

/// Three-way merge of one message's state: what a side changed since `base` is that side's;
/// the rest is the other side's (both can only have changed a thing the same way).
fn merge_bits(local: u8, base: u8, server: u8) -> u8 {
    let local_changed = local ^ base;
    (local & local_changed) | (server & !local_changed)
}

/// [`merge_bits`] for a link with a pending mark: `marked` the flags the STORE was to make
/// true, `before` the server's flags it found. A bit the STORE was to change that the server
/// still has as before did not get there: its base is the server's (the local state wins);
/// any other bit's is the marked one (the server's change since is another client's).
fn merge_pending(local: u8, marked: u8, before: u8, server: u8) -> u8 {
    let stuck = (marked ^ before) & !(server ^ before);
    merge_bits(local, (marked & !stuck) | (server & stuck), server)
}

fn merge_words(local: &Words, base: &Words, server: &Words) -> Words {
    local
        .iter()
        .chain(base)
        .chain(server)
        .filter(|k| if local.contains(*k) != base.contains(*k) { local.contains(*k) } else { server.contains(*k) })
        .cloned()
        .collect()
}

/// One message whose state differs somewhere.
struct Item {
    l: Linked,
    merged: u8,
    local: u8,
    server: u8,
    kw_merged: Words,
    kw_local: Words,
    kw_server: Words,
    kw_base: Words,
    modseq: u64,
}

impl Item {
    fn store_needed(&self) -> bool {
        self.merged != self.server || self.kw_merged != self.kw_server
    }
    fn local_needed(&self) -> bool {
        self.merged != self.local || self.kw_merged != self.kw_local
    }
}

impl Pass<'_> {
    /// Three-way merge of the flags and keywords of every linked message still in this
    /// folder and on the server; server changes go to the store, local ones to the server
    /// (UID STORE, only where the message did not change there since the SELECT).
    ///
    /// Crash safety, in this order: (1) the merged state is set locally; (2) the links of
    /// messages whose server state is to change are marked [`super::engine::PENDING`] with
    /// the merged flags and the server's flags before the STORE; (3) UID STORE; (4) the
    /// caller commits the final links and synced keywords. A pass killed after (2) finds the
    /// mark and makes the server match the local state, except for what the server changed
    /// since; killed before, it merges again from the old links, which (1) does not disturb.
    /// Without the mark, a message deleted here after our STORE would look changed there
    /// and come back.
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
        let mut plan: Vec<Item> = Vec::new();
        for l in linked {
            let uid = l.link.uid as u32;
            // Moved away locally (moves() handles it) or gone from the server.
            if l.folder != here || !present.contains(&uid) {
                continue;
            }
            let (kw_local, kw_base): (Words, Words) = {
                let ix = self.store.index();
                let words = |k: &[Box<str>]| k.iter().map(|x| x.to_string()).collect();
                (words(ix.message_keywords(l.id)), words(ix.synced_keywords(l.id)))
            };
            let base = l.link.flags & SYNCED;
            let local = l.flags & SYNCED;
            let pending = is_pending(l.link.modseq);
            let (server, kw_server, modseq) = match server_flags.get(&uid) {
                Some((b, kw, m)) => (*b, kw.iter().cloned().collect(), *m),
                None => (base, kw_base.clone(), if pending { 0 } else { l.link.modseq }),
            };
            let (merged, kw_merged) = if pending {
                // Our STORE may or may not have reached the server: the local state is what
                // it was to make true (`base`, the mark's flags, unless changed here since).
                // But the server may also have changed since, by another client: taking
                // the local state whole undid that (a \Draft set there while the mark
                // waited was removed). So the merge's base is the mark's flags, except for
                // a bit the STORE was to change (it differs between the mark and the
                // server's flags before it, which the mark keeps) that the server still
                // has as before: the STORE did not get there, and the local state stands.
                // (Keywords are not in the mark: the local ones stand.)
                let bits = match pending_server(l.link.modseq) {
                    Some(before) => merge_pending(local, base, before, server),
                    None => local,
                };
                log::debug!(
                    "{}: UID {uid} has a pending mark: flags here {}, there {}, marked {}: {}",
                    report.store_path,
                    store::flags::to_letters(local),
                    store::flags::to_letters(server),
                    store::flags::to_letters(base),
                    store::flags::to_letters(bits)
                );
                (bits, kw_local.clone())
            } else {
                (merge_bits(local, base, server), merge_words(&kw_local, &kw_base, &kw_server))
            };
            let same = merged == local && merged == server && base == merged;
            let kw_same = kw_merged == kw_local && kw_merged == kw_server && kw_base == kw_merged;
            if same && kw_same && !pending {
                continue;
            }
            plan.push(Item { l: *l, merged, local, server, kw_merged, kw_local, kw_server, kw_base, modseq });
        }
        if plan.is_empty() {
            return Ok(());
        }
        if self.opts.dry_run {
            report.up.flags += plan.iter().filter(|i| up && i.store_needed()).count() as u64;
            report.down.flags += plan.iter().filter(|i| down && i.local_needed()).count() as u64;
            return Ok(());
        }
        // (1) Locally, all at once.
        let mut gone: HashSet<Id> = HashSet::new();
        let local_changes: Vec<(Id, AttrChange)> = plan
            .iter()
            .filter(|i| down && i.local_needed())
            .map(|i| {
                let flags = (i.merged != i.local).then_some((i.l.flags & !SYNCED) | i.merged);
                let keywords = (i.kw_merged != i.kw_local).then(|| i.kw_merged.iter().cloned().collect());
                (i.l.id, AttrChange { flags, keywords, ..Default::default() })
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
            if down && i.local_needed() {
                report.down.flags += 1;
            }
        }
        // (2), (3): up, +FLAGS and -FLAGS grouped by what they change.
        let mut refused_uids: HashSet<u32> = HashSet::new();
        if up {
            let to_store: Vec<&Item> = plan.iter().filter(|i| i.store_needed()).collect();
            let marks: Vec<RemoteChange> = to_store
                .iter()
                .map(|i| {
                    RemoteChange::Message(
                        i.l.id,
                        Some(MessageRemote { flags: i.merged, modseq: pending_mark(i.server), ..i.l.link }),
                    )
                })
                .collect();
            self.store.update_remote(marks)?;
            type Change = (u8, Vec<String>);
            let mut adds: BTreeMap<Change, Vec<u32>> = BTreeMap::new();
            let mut removes: BTreeMap<Change, Vec<u32>> = BTreeMap::new();
            for i in &to_store {
                let uid = i.l.link.uid as u32;
                let add = (i.merged & !i.server, i.kw_merged.difference(&i.kw_server).cloned().collect::<Vec<_>>());
                let remove = (i.server & !i.merged, i.kw_server.difference(&i.kw_merged).cloned().collect::<Vec<_>>());
                if add.0 != 0 || !add.1.is_empty() {
                    adds.entry(add).or_default().push(uid);
                }
                if remove.0 != 0 || !remove.1.is_empty() {
                    removes.entry(remove).or_default().push(uid);
                }
            }
            // A pending mark's server state is not known for sure: no UNCHANGEDSINCE.
            let since = sel.highest_modseq;
            let unchecked: HashSet<u32> =
                to_store.iter().filter(|i| is_pending(i.l.link.modseq)).map(|i| i.l.link.uid as u32).collect();
            let mut added: HashSet<u32> = HashSet::new();
            for ((bits, words), uids) in adds {
                let (plain, blind): (Vec<u32>, Vec<u32>) = uids.iter().partition(|u| !unchecked.contains(u));
                if !plain.is_empty() {
                    refused_uids.extend(self.conn.uid_store(&uid_set(&plain), true, bits, &words, since)?.0);
                }
                if !blind.is_empty() {
                    self.conn.uid_store(&uid_set(&blind), true, bits, &words, None)?;
                }
                added.extend(uids);
            }
            for ((bits, words), uids) in removes {
                let (first, second): (Vec<u32>, Vec<u32>) = uids
                    .into_iter()
                    .filter(|u| !refused_uids.contains(u))
                    .partition(|u| !added.contains(u) && !unchecked.contains(u));
                if !first.is_empty() {
                    refused_uids.extend(self.conn.uid_store(&uid_set(&first), false, bits, &words, since)?.0);
                }
                if !second.is_empty() {
                    // Their +FLAGS above already checked UNCHANGEDSINCE and raised their
                    // MODSEQ: a second check would refuse our own change.
                    self.conn.uid_store(&uid_set(&second), false, bits, &words, None)?;
                }
            }
        }
        // (4) The links and synced keywords, for the caller to commit.
        for i in plan {
            let uid = i.l.link.uid as u32;
            if refused_uids.contains(&uid) {
                // Changed on the server after our SELECT: back to the old link, and the
                // next pass merges again.
                changes.push(RemoteChange::Message(i.l.id, Some(i.l.link)));
                continue;
            }
            if up && i.store_needed() {
                report.up.flags += 1;
                ours.insert(uid);
            }
            let (base, kw_base) = match (up, down) {
                (true, true) => (i.merged, &i.kw_merged),
                (true, false) => (i.local, &i.kw_local),
                _ => (i.server, &i.kw_server),
            };
            let modseq = if is_pending(i.modseq) { 0 } else { i.modseq };
            changes.push(RemoteChange::Message(i.l.id, Some(MessageRemote { flags: base, modseq, ..i.l.link })));
            if *kw_base != i.kw_base {
                changes.push(RemoteChange::SyncedKeywords(i.l.id, kw_base.iter().cloned().collect()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[&str]) -> Words {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_side_keeps_what_it_changed_and_takes_the_others_changes() {
        use crate::store::flags::{DRAFT, FLAGGED, SEEN};
        // Flags: here F was set; there S was cleared and D set.
        assert_eq!(merge_bits(SEEN | FLAGGED, SEEN, DRAFT), FLAGGED | DRAFT);
        // Keywords: here $Work added and $Old removed; there $Junk added.
        let base = words(&["$Old", "$Keep"]);
        let local = words(&["$Keep", "$Work"]);
        let server = words(&["$Old", "$Keep", "$Junk"]);
        assert_eq!(merge_words(&local, &base, &server), words(&["$Junk", "$Keep", "$Work"]));
        // Nothing changed here: the server's state wins whole.
        assert_eq!(merge_words(&base, &base, &server), server);
    }

    #[test]
    fn a_pending_mark_keeps_our_change_and_the_servers_later_one() {
        use crate::store::flags::{DRAFT, FLAGGED};
        // A killed pass was setting F (the server had nothing); another client set D since.
        // Whether our STORE got there or not, both stay.
        assert_eq!(merge_pending(FLAGGED, FLAGGED, 0, FLAGGED | DRAFT), FLAGGED | DRAFT);
        assert_eq!(merge_pending(FLAGGED, FLAGGED, 0, DRAFT), FLAGGED | DRAFT);
        // F cleared here after the kill: cleared, whether the STORE got there or not.
        assert_eq!(merge_pending(0, FLAGGED, 0, FLAGGED), 0);
        assert_eq!(merge_pending(0, FLAGGED, 0, 0), 0);
        // Clearing F, which did not get there: the local state stands.
        assert_eq!(merge_pending(DRAFT, DRAFT, FLAGGED | DRAFT, FLAGGED | DRAFT), DRAFT);
        // Another client cleared D since (not a bit the STORE was to change): cleared.
        assert_eq!(merge_pending(FLAGGED | DRAFT, FLAGGED | DRAFT, DRAFT, FLAGGED), FLAGGED);
    }
}

//! Pairing local messages with the server's by what they hold: after a UIDVALIDITY change
//! (rebinding linked messages to their new UIDs) and in a folder's first pass (linking mail
//! both sides already hold instead of copying it both ways).

use std::collections::{HashMap, HashSet};

use super::commands::uid_set;
use super::download::map_flags;
use super::engine::{crlf_len, lf, linked_in, FolderReport, Pass, SyncError, SYNCED};
use super::imap::{FetchWhat, Fetched, Folder, Selected};
use crate::mime;
use crate::store::{flags, FolderRemote, Id, MessageRemote, RemoteChange};

impl Pass<'_> {
    /// UIDVALIDITY changed: the old UIDs name nothing now. Rebind every linked message of
    /// the folder to the server message with the same Message-ID and size (content when
    /// several), drop the links of the rest (kept locally, listed, uploaded again), and
    /// restart the folder's cursor so the server's unmatched messages are downloaded.
    pub(super) fn rebind(
        &mut self,
        server: &Folder,
        local: Id,
        sel: &Selected,
        uidvalidity: u64,
        report: &mut FolderReport,
    ) -> Result<FolderRemote, SyncError> {
        let linked = linked_in(self.store, local);
        let wanted: Vec<(Id, bool)> = linked.iter().map(|l| (l.id, l.flags & flags::HEADER_ONLY != 0)).collect();
        let pairs = self.pair_with_server(sel, &wanted)?;
        let mut changes = Vec::new();
        for (l, (_, hit)) in linked.iter().zip(pairs) {
            match hit {
                Some((uid, _, _)) => {
                    changes.push(RemoteChange::Message(
                        l.id,
                        Some(MessageRemote { uid: u64::from(uid), modseq: 0, ..l.link }),
                    ));
                }
                None => {
                    let name = self.store.index().location_of(l.id).map(|(_, n)| n.to_string()).unwrap_or_default();
                    report.kept.push(name);
                    changes.push(RemoteChange::Message(l.id, None));
                }
            }
        }
        let state = FolderRemote { name: server.name.clone(), uidvalidity, highestmodseq: 0, uidnext: 0, cursor: 0 };
        // Deleted here before the reset: their UIDs name nothing now, and what they were is
        // not known any more; the server's copies, if any, come down again.
        changes.extend(
            self.store
                .index()
                .tombstones()
                .filter(|(_, t)| t.folder == local)
                .map(|(id, _)| RemoteChange::Message(id, None))
                .collect::<Vec<_>>(),
        );
        if !self.opts.dry_run {
            changes.push(RemoteChange::Folder(local, Some(state.clone())));
            self.store.update_remote(changes)?;
        }
        Ok(state)
    }

    /// A folder's first pass, with messages on both sides (mail imported here that the
    /// server has too, say): each local message is linked to the server message with the
    /// same Message-ID and size (content when several), so that mail both sides hold is
    /// not copied both ways. A pair's flags merge from what both have in common: a flag
    /// either side has is kept.
    pub(super) fn adopt(&mut self, local: Id, sel: &Selected, report: &mut FolderReport) -> Result<(), SyncError> {
        let unlinked: Vec<(Id, bool)> = {
            let ix = self.store.index();
            let ids: Vec<(Id, bool)> = match ix.children(local) {
                Ok(children) => children
                    .filter_map(|(_, c)| c.message_id())
                    .filter(|id| ix.message_remote(*id).is_none() && ix.upload_intent(*id).is_none())
                    .map(|id| (id, false))
                    .collect(),
                Err(_) => Vec::new(),
            };
            ids
        };
        if unlinked.is_empty() {
            return Ok(());
        }
        let pairs = self.pair_with_server(sel, &unlinked)?;
        let mut changes = Vec::new();
        for (id, hit) in pairs {
            let Some((uid, server_bits, server_words)) = hit else { continue };
            let found = {
                let ix = self.store.index();
                let words: Vec<String> = ix.message_keywords(id).iter().map(|k| k.to_string()).collect();
                ix.message(id).map(|m| (m.version(), m.flags() & SYNCED, words))
            };
            let Ok((version, bits, words)) = found else { continue };
            let link =
                MessageRemote { folder: local, uid: u64::from(uid), modseq: 0, flags: bits & server_bits, version };
            changes.push(RemoteChange::Message(id, Some(link)));
            // As for the flags, what both have in common is the base: either side's extra
            // keywords are kept.
            let common: Vec<String> = words.into_iter().filter(|w| server_words.contains(w)).collect();
            changes.push(RemoteChange::SyncedKeywords(id, common));
            report.matched += 1;
        }
        if !self.opts.dry_run {
            self.store.update_remote(changes)?;
        }
        Ok(())
    }

    /// For each local message (id, header-only), the server message of the selected folder
    /// that holds the same mail: same Message-ID and size (a header-only one: same header),
    /// the content compared when several do; each server message pairs once. With the
    /// pair's UID, its flags there.
    #[allow(clippy::type_complexity)]
    pub(super) fn pair_with_server(
        &mut self,
        sel: &Selected,
        wanted: &[(Id, bool)],
    ) -> Result<Vec<(Id, Option<(u32, u8, Vec<String>)>)>, SyncError> {
        let mut on_server: Vec<Fetched> = if sel.exists > 0 && !wanted.is_empty() {
            self.conn.uid_fetch("1:*", FetchWhat::Header)?
        } else {
            Vec::new()
        };
        on_server.sort_unstable_by_key(|f| f.uid);
        on_server.dedup_by_key(|f| f.uid);
        // By Message-ID; those without one by size (their content is then compared).
        let mut by_mid: HashMap<String, Vec<usize>> = HashMap::new();
        let mut no_mid: HashMap<u64, Vec<usize>> = HashMap::new();
        for (n, f) in on_server.iter().enumerate() {
            match f.header.as_deref().and_then(|h| mime::parse_props(h).message_id) {
                Some(mid) => by_mid.entry(mid).or_default().push(n),
                None => no_mid.entry(u64::from(f.size.unwrap_or(0))).or_default().push(n),
            }
        }
        // The local side read first: a Message-ID found once here and once there names the
        // same message even when the server changed its bytes (a bare CR, a NUL).
        let mut local: Vec<(Id, bool, Option<Vec<u8>>, Option<String>)> = Vec::with_capacity(wanted.len());
        let mut local_mids: HashMap<String, usize> = HashMap::new();
        for &(id, header_only) in wanted {
            let content = self.store.read_message(id).ok();
            let mid = content.as_deref().and_then(|c| mime::parse_props(c).message_id);
            if let Some(m) = &mid {
                *local_mids.entry(m.clone()).or_default() += 1;
            }
            local.push((id, header_only, content, mid));
        }
        let mut taken: HashSet<u32> = HashSet::new();
        let mut out = Vec::with_capacity(wanted.len());
        for (id, header_only, content, mid) in local {
            let Some(content) = content else {
                out.push((id, None));
                continue;
            };
            let size_only = mid.is_none() && !header_only;
            let pool = match &mid {
                Some(m) => by_mid.get(m),
                None if header_only => None,
                None => no_mid.get(&crlf_len(&content)),
            };
            let cands: Vec<usize> = pool
                .map(|v| {
                    v.iter()
                        .copied()
                        .filter(|&n| !taken.contains(&on_server[n].uid))
                        .filter(|&n| {
                            let f = &on_server[n];
                            if header_only {
                                f.header.as_deref().is_some_and(|h| lf(h) == lf(&content))
                            } else {
                                f.size.is_some_and(|s| u64::from(s) == crlf_len(&content))
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let unique_mid = mid.as_ref().and_then(|m| {
                let there = by_mid.get(m)?;
                (there.len() == 1 && local_mids.get(m) == Some(&1) && !taken.contains(&on_server[there[0]].uid))
                    .then_some(there[0])
            });
            let hit = match cands.len() {
                0 => unique_mid,
                // A size alone says little: without a Message-ID the content must agree.
                1 if !size_only => Some(cands[0]),
                _ => {
                    let uids: Vec<u32> = cands.iter().map(|&n| on_server[n].uid).collect();
                    let want = lf(&content);
                    let uid = self
                        .conn
                        .uid_fetch(&uid_set(&uids), FetchWhat::Full)?
                        .into_iter()
                        .find(|f| f.body.as_deref().is_some_and(|b| lf(b) == want))
                        .map(|f| f.uid);
                    uid.and_then(|u| cands.iter().copied().find(|&n| on_server[n].uid == u))
                }
            };
            out.push((
                id,
                hit.map(|n| {
                    let f = &on_server[n];
                    taken.insert(f.uid);
                    let (bits, words) = map_flags(&f.flags);
                    (f.uid, bits, words)
                }),
            ));
        }
        Ok(out)
    }
}

//! The upload side of a folder's pass (IOSTX UPLOAD_MESSAGE 6): upload intents of a killed
//! pass looked up on the server, new and edited messages sent with APPEND behind durable
//! intents and linked from APPENDUID (or found by checksum), and local moves sent as UID
//! MOVE. The invariants are engine.rs's.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::commands::{uid_set, Append, Appended};
use super::engine::{crlf_len, lf, FolderReport, Linked, Pass, State, SyncError, SYNCED};
use super::imap::{FetchWhat, Fetched, Folder, Selected};
use crate::store::{self, FolderRemote, Id, MessageRemote, RemoteChange, UploadIntent};

/// A message read for upload.
struct Outgoing {
    id: Id,
    /// The UID of its previous content, removed once this one is in.
    old: Option<u32>,
    version: u64,
    bits: u8,
    keywords: Vec<String>,
    mtime: i64,
    content: Vec<u8>,
}

/// What an intent records of a message to find it on the server again: its size with
/// every line end CRLF (as RFC822.SIZE counts) and the CRC32C of its content with line
/// ends LF.
pub fn upload_sum(content: &[u8]) -> (u64, u32) {
    (crlf_len(content), crc32c::crc32c(&lf(content)))
}

/// The first of `sums` with this size and checksum, taken out.
fn take_sum(sums: &mut Vec<(u32, u64, u32)>, size: u64, crc: u32) -> Option<u32> {
    let n = sums.iter().position(|s| s.1 == size && s.2 == crc)?;
    Some(sums.remove(n).0)
}

impl Pass<'_> {
    /// Intents of this folder whose message has no link: look each up on the server (from
    /// the UIDNEXT saved with it, by size and content) and link it if it is there. Returns
    /// the messages linked, and the intents of those not found, which stay until the
    /// message is sent again (see [`Pass::upload`]; an intent of a message deleted since is
    /// cleared).
    ///
    /// "Not found" does not mean "never arrives": the server goes on with an APPEND whose
    /// client was killed once the whole command is in, and may store it after this look
    /// (a killed MULTIAPPEND of 120 messages landed between this lookup and the APPEND of
    /// their second copies). So an intent sent again is not forgotten once the new copy
    /// is linked: it stays on the linked message as a watch for that late copy, which is
    /// removed there if it turns up among the new messages a pass is about to download
    /// ([`Pass::late_copies`]), or here. A watch is cleared once its copy is found, and
    /// otherwise by the next pass's look here.
    /// A copy beyond those the intents take (the late one and a second send, both before
    /// any link) is ours as well, and removed.
    pub(super) fn resolve_intents(
        &mut self,
        local: Id,
        sel: &Selected,
        by_uid: &HashMap<u32, Linked>,
        report: &mut FolderReport,
    ) -> Result<(HashSet<Id>, HashMap<Id, UploadIntent>), SyncError> {
        let (intents, watches): (Vec<UploadIntent>, Vec<UploadIntent>) = {
            let ix = self.store.index();
            ix.upload_intents()
                .filter(|i| i.folder == local)
                .copied()
                .partition(|i| ix.message_remote(i.message).is_none())
        };
        let mut found = HashSet::new();
        let mut unfound = HashMap::new();
        if (intents.is_empty() && watches.is_empty()) || self.opts.dry_run {
            return Ok((found, unfound));
        }
        let from = intents.iter().chain(&watches).map(|i| i.uidnext).min().unwrap_or(1).max(1);
        let mut candidates: Vec<Fetched> = if sel.exists == 0 {
            Vec::new()
        } else {
            self.conn
                .uid_fetch(&format!("{from}:*"), FetchWhat::Sizes)?
                .into_iter()
                .filter(|f| u64::from(f.uid) >= from && !by_uid.contains_key(&f.uid))
                .collect()
        };
        let mut changes = Vec::new();
        let mut lost_deletes = Vec::new();
        let wanted: Vec<(u64, u32)> = intents.iter().chain(&watches).map(|i| (i.size, i.crc)).collect();
        let mut sums = self.sums(&candidates, &wanted)?;
        for i in intents {
            let hit = take_sum(&mut sums, i.size, i.crc);
            let version = self.store.index().message(i.message).ok().map(|m| m.version());
            match hit {
                Some(uid) if version == Some(i.version) => {
                    // The base of its flag merge is what was sent: a change since, on
                    // either side, is that side's.
                    let link = MessageRemote {
                        folder: local,
                        uid: u64::from(uid),
                        modseq: 0,
                        flags: i.flags,
                        version: i.version,
                    };
                    changes.push(RemoteChange::Message(i.message, Some(link)));
                    // (The keywords sent are not in the intent: those it has now stand in.)
                    let kw = self.store.index().message_keywords(i.message).iter().map(|k| k.to_string()).collect();
                    changes.push(RemoteChange::SyncedKeywords(i.message, kw));
                    found.insert(i.message);
                    report.up.new += 1;
                }
                Some(uid) => {
                    // Edited or deleted here since it was sent: the copy there is stale.
                    lost_deletes.push(uid);
                    changes.push(RemoteChange::ClearIntent(i.message));
                }
                // Deleted here, or moved to another folder (whose pass sends it): nothing
                // to send again from here.
                None if version.is_none()
                    || self.store.index().message(i.message).map_or(true, |m| m.folder() != local) =>
                {
                    changes.push(RemoteChange::ClearIntent(i.message))
                }
                None => {
                    unfound.insert(i.message, i);
                }
            }
        }
        // Then the watches take what is left (a copy the intents did not take first).
        let stale = lost_deletes.len();
        for w in &watches {
            // A copy of an earlier send of a message linked since to a second one.
            if let Some(uid) = take_sum(&mut sums, w.size, w.crc) {
                lost_deletes.push(uid);
            }
            changes.push(RemoteChange::ClearIntent(w.message));
        }
        let late = lost_deletes.len() - stale;
        // What is left with the size and content of an intent is a second copy of one.
        let extra: Vec<u32> = sums.iter().filter(|s| wanted.contains(&(s.1, s.2))).map(|s| s.0).collect();
        log::debug!(
            "{}: upload intents looked up from UID {from} among {} unlinked UIDs: {} found, {} stale there, \
             {} not there (sent again), {} late copies of a message sent again, {} second copies",
            report.store_path,
            candidates.len(),
            found.len(),
            stale,
            unfound.len(),
            late,
            extra.len()
        );
        lost_deletes.extend(extra);
        candidates.clear();
        if !lost_deletes.is_empty() {
            self.conn.uid_remove(&uid_set(&lost_deletes))?;
        }
        self.store.update_remote(changes)?;
        Ok((found, unfound))
    }

    /// Of `new` (UID and size: the server's messages past the cursor that no link names,
    /// about to be downloaded), the late copies of messages sent again: those with the
    /// size and content of a watch of this folder (see [`Pass::resolve_intents`]). They
    /// are removed there, and their watches cleared; returns their UIDs, not to download.
    /// Looking in the very list the download takes leaves no moment for a late copy to
    /// come down as new mail: one stored after it is past the cursor for the next pass.
    pub(super) fn late_copies(&mut self, local: Id, new: &[(u32, u64)]) -> Result<HashSet<u32>, SyncError> {
        let watches: Vec<UploadIntent> = {
            let ix = self.store.index();
            ix.upload_intents()
                .filter(|i| i.folder == local && ix.message_remote(i.message).is_some())
                .copied()
                .collect()
        };
        // (A download-only run changes nothing there: it takes them as they are.)
        if watches.is_empty() || new.is_empty() || self.opts.dry_run || !self.opts.upload {
            return Ok(HashSet::new());
        }
        let from = watches.iter().map(|i| i.uidnext).min().unwrap_or(1);
        let candidates: Vec<Fetched> = new
            .iter()
            .filter(|(uid, _)| u64::from(*uid) >= from)
            .map(|&(uid, size)| Fetched { uid, size: u32::try_from(size).ok(), ..Default::default() })
            .collect();
        let wanted: Vec<(u64, u32)> = watches.iter().map(|i| (i.size, i.crc)).collect();
        let mut sums = self.sums(&candidates, &wanted)?;
        let (mut uids, mut changes) = (Vec::new(), Vec::new());
        for w in &watches {
            if let Some(uid) = take_sum(&mut sums, w.size, w.crc) {
                uids.push(uid);
                changes.push(RemoteChange::ClearIntent(w.message));
            }
        }
        if !uids.is_empty() {
            log::debug!("late copies of messages sent again, removed: UIDs {}", uid_set(&uids));
            self.conn.uid_remove(&uid_set(&uids))?;
            self.store.update_remote(changes)?;
        }
        Ok(uids.into_iter().collect())
    }

    /// For the candidates (UID and RFC822.SIZE) whose size is one of `wanted`'s, the
    /// checksum of their content with line ends made LF: (uid, size, crc), in UID order.
    pub(super) fn sums(
        &mut self,
        candidates: &[Fetched],
        wanted: &[(u64, u32)],
    ) -> Result<Vec<(u32, u64, u32)>, SyncError> {
        let sizes: HashSet<u64> = wanted.iter().map(|w| w.0).collect();
        let uids: Vec<u32> = candidates
            .iter()
            .filter(|f| f.size.is_some_and(|s| sizes.contains(&u64::from(s))))
            .map(|f| f.uid)
            .collect();
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let mut out: Vec<(u32, u64, u32)> = self
            .conn
            .uid_fetch(&uid_set(&uids), FetchWhat::Full)?
            .into_iter()
            .filter_map(|f| f.body.map(|b| (f.uid, crlf_len(&b), crc32c::crc32c(&lf(&b)))))
            .collect();
        out.sort_unstable();
        out.dedup_by_key(|x| x.0);
        Ok(out)
    }

    /// APPEND `msgs` (message, and the UID its previous content had, to remove once the
    /// new one is in) in batches, each behind a durable intent; link each from APPENDUID or,
    /// without UIDPLUS, by looking it up.
    ///
    /// The folder's cursor moves over what we appended, in the frame of the links, as far
    /// as every UID up to it is ours: else a message uploaded, then deleted here before a
    /// pass moved the cursor past it, would be taken for new mail and come back.
    ///
    /// `earlier`: intents of messages sent before and not found ([`Pass::resolve_intents`]).
    /// Such a message's new intent looks from the earlier one's UIDNEXT (a resumed pass
    /// then finds the late copy too), and its link is committed with the earlier intent as
    /// a watch for that copy.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn upload(
        &mut self,
        server: &Folder,
        local: Id,
        sel: &Selected,
        msgs: &[(Id, Option<u32>)],
        earlier: &HashMap<Id, UploadIntent>,
        report: &mut FolderReport,
        expunge: &mut Vec<u32>,
        state: &mut FolderRemote,
        appended: &mut HashSet<u32>,
    ) -> Result<(), SyncError> {
        if msgs.is_empty() {
            return Ok(());
        }
        self.progress.state(&report.store_path, State::UploadMessage, msgs.len() as u64);
        let mut uidnext = u64::from(sel.uid_next.unwrap_or(1));
        // Where the chain of our own UIDs may start: only if the server has nothing past
        // the cursor that we have not got (then every UID below its UIDNEXT is gone).
        let mut chain: Option<u64> = None;
        let mut ours: HashSet<u64> = HashSet::new();
        if !self.opts.dry_run && state.cursor < u64::from(u32::MAX) {
            let linked: HashSet<u64> = self
                .store
                .index()
                .message_remotes()
                .filter(|(_, l)| l.folder == local && l.uid > state.cursor)
                .map(|(_, l)| l.uid)
                .collect();
            let unseen = self.conn.uid_search(&format!("{}:*", state.cursor + 1))?;
            if unseen.iter().all(|u| u64::from(*u) <= state.cursor || linked.contains(&u64::from(*u))) {
                chain = Some(state.cursor.max(uidnext.saturating_sub(1)));
                // Linked ones past the cursor (a pass killed before it moved) are ours too.
                ours = linked;
            }
        }
        let limits = self.opts.limits;
        let mut i = 0;
        while i < msgs.len() {
            // One batch: read the contents (a message deleted meanwhile is skipped).
            let mut batch: Vec<Outgoing> = Vec::new();
            let mut bytes = 0u64;
            while i < msgs.len() && batch.len() < limits.messages && (batch.is_empty() || bytes < limits.bytes) {
                let (id, old) = msgs[i];
                i += 1;
                let (version, bits, kw, mtime) = {
                    let ix = self.store.index();
                    let Ok(m) = ix.message(id) else { continue };
                    (
                        m.version(),
                        m.flags() & SYNCED,
                        ix.message_keywords(id).iter().map(|k| k.to_string()).collect(),
                        m.attrs().mtime,
                    )
                };
                let content = match self.store.read_message(id) {
                    Ok(c) => c,
                    Err(store::Error::NotFound | store::Error::ObjectDeleted) => continue,
                    Err(e) => return Err(e.into()),
                };
                bytes += content.len() as u64;
                batch.push(Outgoing { id, old, version, bits, keywords: kw, mtime, content });
            }
            if batch.is_empty() {
                continue;
            }
            if self.opts.dry_run {
                report.up.new += batch.len() as u64;
                report.up.bytes += bytes;
                continue;
            }
            let intents: Vec<UploadIntent> = batch
                .iter()
                .map(|b| UploadIntent {
                    folder: local,
                    message: b.id,
                    version: b.version,
                    size: upload_sum(&b.content).0,
                    uidnext: earlier.get(&b.id).map_or(uidnext, |e| e.uidnext.min(uidnext)),
                    flags: b.bits,
                    crc: upload_sum(&b.content).1,
                })
                .collect();
            self.store.record_upload_intents(&intents)?;
            let appends: Vec<Append<'_>> = batch
                .iter()
                .map(|b| Append { flags: b.bits, keywords: &b.keywords, date: Some(b.mtime), content: &b.content })
                .collect();
            let answers = self.conn.append(server, &appends)?;
            if log::log_enabled!(log::Level::Debug) {
                let ix = self.store.index();
                let sent: Vec<String> = batch
                    .iter()
                    .zip(&answers)
                    .map(|(b, a)| {
                        let name = ix.location_of(b.id).map(|(_, n)| n.to_string()).unwrap_or_default();
                        match a {
                            Appended::Ok(Some(u)) => format!("{name} UID {u}"),
                            other => format!("{name} {other:?}"),
                        }
                    })
                    .collect();
                log::debug!("{}: appended (intents from UID {uidnext}): {}", report.store_path, sent.join(", "));
            }
            let mut changes = Vec::new();
            let mut unknown = Vec::new();
            for (b, a) in batch.iter().zip(answers) {
                match a {
                    Appended::Ok(Some(uid)) => {
                        uidnext = uidnext.max(u64::from(uid) + 1);
                        changes.push(RemoteChange::Message(
                            b.id,
                            Some(MessageRemote {
                                folder: local,
                                uid: u64::from(uid),
                                modseq: 0,
                                flags: b.bits,
                                version: b.version,
                            }),
                        ));
                        changes.push(RemoteChange::SyncedKeywords(b.id, b.keywords.clone()));
                        // (After the link, which clears intents.)
                        if let Some(e) = earlier.get(&b.id) {
                            changes.push(RemoteChange::Intent(*e));
                        }
                        expunge.extend(b.old);
                        report.up.new += 1;
                        report.up.bytes += b.content.len() as u64;
                    }
                    Appended::Ok(None) => unknown.push(b),
                    Appended::Refused(text) => {
                        let name = self.store.index().location_of(b.id).map(|(_, n)| n.to_string()).unwrap_or_default();
                        report.refuse(State::UploadMessage, format!("{name}: the server refused it: {text}"));
                        changes.push(RemoteChange::ClearIntent(b.id));
                    }
                }
            }
            if !unknown.is_empty() {
                // No APPENDUID (no UIDPLUS): find what we just sent among the new UIDs.
                let candidates: Vec<Fetched> = self
                    .conn
                    .uid_fetch(&format!("{uidnext}:*"), FetchWhat::Sizes)?
                    .into_iter()
                    .filter(|f| u64::from(f.uid) >= uidnext && !ours.contains(&u64::from(f.uid)))
                    .collect();
                let wanted: Vec<(u64, u32)> = unknown.iter().map(|b| upload_sum(&b.content)).collect();
                let mut sums = self.sums(&candidates, &wanted)?;
                for (b, (size, crc)) in unknown.into_iter().zip(wanted) {
                    match take_sum(&mut sums, size, crc) {
                        Some(uid) => {
                            let link = MessageRemote {
                                folder: local,
                                uid: u64::from(uid),
                                modseq: 0,
                                flags: b.bits,
                                version: b.version,
                            };
                            changes.push(RemoteChange::Message(b.id, Some(link)));
                            changes.push(RemoteChange::SyncedKeywords(b.id, b.keywords.clone()));
                            if let Some(e) = earlier.get(&b.id) {
                                changes.push(RemoteChange::Intent(*e));
                            }
                            ours.insert(u64::from(uid));
                            expunge.extend(b.old);
                            report.up.new += 1;
                            report.up.bytes += b.content.len() as u64;
                        }
                        None => changes.push(RemoteChange::ClearIntent(b.id)),
                    }
                }
            }
            for c in &changes {
                if let RemoteChange::Message(_, Some(l)) = c {
                    ours.insert(l.uid);
                    appended.insert(l.uid as u32);
                }
            }
            if let Some(mut c) = chain {
                while ours.contains(&(c + 1)) {
                    c += 1;
                }
                if c > state.cursor {
                    state.cursor = c;
                    changes.push(RemoteChange::Folder(local, Some(state.clone())));
                }
                chain = Some(c);
            }
            self.advance_modseq(local, state, appended, &mut changes)?;
            self.store.update_remote(changes)?;
            self.progress.advance(batch.len() as u64, bytes);
        }
        Ok(())
    }

    /// Messages moved locally out of this folder: UID MOVE to the server folder of where
    /// they are now (COPY and remove without MOVE), keeping their links. A message moved
    /// to a folder that is not synced is removed from this one's server folder.
    pub(super) fn moves(
        &mut self,
        local: Id,
        linked: &[Linked],
        present: &HashSet<u32>,
        report: &mut FolderReport,
        expunge: &mut Vec<u32>,
        changes: &mut Vec<RemoteChange>,
    ) -> Result<(), SyncError> {
        let mut by_target: BTreeMap<Id, Vec<Linked>> = BTreeMap::new();
        for l in linked {
            if l.folder != local && present.contains(&(l.link.uid as u32)) {
                by_target.entry(l.folder).or_default().push(*l);
            }
        }
        let uidplus = self.conn.has("UIDPLUS");
        for (target, list) in by_target {
            let Some(to) = self.server_of.get(&target).cloned() else {
                // Out of the synced folders: gone from this one.
                expunge.extend(list.iter().map(|l| l.link.uid as u32));
                report.up.deleted += list.len() as u64;
                continue;
            };
            report.up.moved += list.len() as u64;
            if self.opts.dry_run {
                continue;
            }
            if !uidplus {
                // Without COPYUID the new UIDs are unknown: remove here and upload there
                // as new (its pass finds it unlinked).
                expunge.extend(list.iter().map(|l| l.link.uid as u32));
                changes.extend(list.iter().map(|l| RemoteChange::Message(l.id, None)));
                continue;
            }
            let uids: Vec<u32> = list.iter().map(|l| l.link.uid as u32).collect();
            let pairs: HashMap<u32, u32> = self.conn.uid_move(&uid_set(&uids), &to)?.into_iter().collect();
            for l in list {
                let link = pairs.get(&(l.link.uid as u32)).map(|&uid| MessageRemote {
                    folder: target,
                    uid: u64::from(uid),
                    ..l.link
                });
                changes.push(RemoteChange::Message(l.id, link));
            }
        }
        Ok(())
    }
}

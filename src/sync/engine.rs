//! One two-way pass over one folder, walking the IOSTX states of ../shared/SEMANTICS.md §4:
//! SELECT (UPLOAD_TABLE 5); in a folder's first pass, mail both sides hold is linked
//! (matching.rs); intents of a killed pass are looked up (upload.rs); flags merge both ways
//! (UPLOAD_MESSAGE_READ 8, merge.rs) and the server's deletions apply (DOWNLOAD_TABLE 11,
//! incoming.rs), which consume every server change up to the SELECT; then new and edited
//! messages go up (UPLOAD_MESSAGE 6) with local moves, deletions made here go up
//! (UPLOAD_MESSAGE_DEL 9), and the server's new messages come down, headers first
//! (DOWNLOAD_TABLE 11), then their bodies (DOWNLOAD_HEADER 17). The other files of this
//! pass are `impl Pass` too; this one holds its types and the order.
//!
//! Invariants:
//! - a link (message <-> UID), the folder's cursor and its HIGHESTMODSEQ change only with
//!   (or after) what they record being done on both sides, in one frame with the links they
//!   go with, so a pass killed anywhere is resumed by the next: an APPEND is preceded by a
//!   durable intent (with a checksum) that a resumed pass looks up before sending again,
//!   and keeps past a second send, as a watch for a copy the server stores late,
//!   and a UID STORE by a PENDING mark on its link;
//! - flags merge three ways against the link's flags (the last synced ones): a bit one
//!   side changed takes that side's value;
//! - a deletion made here is known by its tombstone (the link the store keeps for a deleted
//!   linked message), never inferred: a lost sync state, a deleted folder or a UIDVALIDITY
//!   change deletes nothing on the server; and more deletions than the account's
//!   max_deletes in one folder are refused, either way;
//! - a message the server deleted is kept here if it was edited or moved since it was
//!   synced (then uploaded again); one deleted here is not expunged there if the server
//!   changed its flags meanwhile (then it comes back).

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::commands::uid_set;
use super::config::MaxDeletes;
use super::download::{map_flags, DownloadError, Limits};
use super::imap::{Connection, FetchWhat, Fetched, Folder, ImapError};
use crate::store::{self, flags, FolderRemote, Id, MessageRemote, RemoteChange, Store};

/// The IOSTX states (../shared/SEMANTICS.md §4), with their values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Idle = 0,
    Sync = 1,
    UploadHierarchy = 2,
    UploadFolder = 3,
    Contents = 4,
    UploadTable = 5,
    UploadMessage = 6,
    UploadMessageRead = 8,
    UploadMessageDel = 9,
    DownloadHierarchy = 10,
    DownloadTable = 11,
    DownloadHeader = 17,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "IDLE",
            State::Sync => "SYNC",
            State::UploadHierarchy => "UPLOAD_HIERARCHY",
            State::UploadFolder => "UPLOAD_FOLDER",
            State::Contents => "CONTENTS",
            State::UploadTable => "UPLOAD_TABLE",
            State::UploadMessage => "UPLOAD_MESSAGE",
            State::UploadMessageRead => "UPLOAD_MESSAGE_READ",
            State::UploadMessageDel => "UPLOAD_MESSAGE_DEL",
            State::DownloadHierarchy => "DOWNLOAD_HIERARCHY",
            State::DownloadTable => "DOWNLOAD_TABLE",
            State::DownloadHeader => "DOWNLOAD_HEADER",
        }
    }
}

/// A link's modseq while a UID STORE of its flags may be under way (see merge_flags): the
/// top bit, which no mod-sequence has (RFC 7162 keeps them below 2^63), with the server's
/// flags from before the STORE in the low byte (see [`pending_mark`]).
pub const PENDING: u64 = 1 << 63;

/// Whether a link's modseq is a [`PENDING`] mark.
pub fn is_pending(modseq: u64) -> bool {
    modseq & PENDING != 0
}

/// The mark for a link whose UID STORE is about to go: [`PENDING`] with the server's flags
/// before it, `server` (only [`SYNCED`] ones, so the mark is never u64::MAX).
pub fn pending_mark(server: u8) -> u64 {
    PENDING | u64::from(server & SYNCED)
}

/// The server's flags before the STORE, from a pending mark; None for u64::MAX, the mark
/// of versions that did not record them.
pub fn pending_server(modseq: u64) -> Option<u8> {
    (is_pending(modseq) && modseq != u64::MAX).then_some((modseq & 0xff) as u8)
}

/// The flags IMAP carries (Maildir's P has no IMAP flag).
pub const SYNCED: u8 = flags::SEEN | flags::ANSWERED | flags::FLAGGED | flags::DRAFT | flags::TRASHED;

/// What a pass may do.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub upload: bool,
    pub download: bool,
    /// Work out and report what would be done, change nothing on either side.
    pub dry_run: bool,
    pub allow_mass_delete: bool,
    pub max_deletes: MaxDeletes,
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            upload: true,
            download: true,
            dry_run: false,
            allow_mass_delete: false,
            max_deletes: MaxDeletes::Percent(10),
            limits: Limits::default(),
        }
    }
}

/// Changes made (or, in a dry run, that would be made) on one side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub new: u64,
    pub flags: u64,
    pub deleted: u64,
    pub moved: u64,
    pub bytes: u64,
}

impl Counts {
    pub fn is_zero(&self) -> bool {
        *self == Counts::default()
    }
}

/// What one folder's pass did.
#[derive(Clone, Debug, Default)]
pub struct FolderReport {
    pub store_path: String,
    pub server_name: String,
    /// Changes made on the server.
    pub up: Counts,
    /// Changes made in the store (new counts messages, completed bodies are in `bodies`).
    pub down: Counts,
    pub bodies: u64,
    /// Nothing had changed on either side: the folder was not even selected.
    pub unchanged: bool,
    /// Local messages found on the server by a folder's first pass (linked, not copied).
    pub matched: u64,
    /// Local messages that were synced before a UIDVALIDITY change and match nothing on
    /// the server now: kept (and uploaded again), named here.
    pub kept: Vec<String>,
    /// Refusals that did not stop the pass (mass deletions, a message the server would
    /// not take), in words.
    pub refused: Vec<String>,
    /// The state the pass was in when it ended.
    pub last_state: Option<State>,
    /// The state of the first refusal.
    pub failed_in: Option<State>,
}

impl FolderReport {
    /// Record a refusal in `state`.
    pub fn refuse(&mut self, state: State, text: String) {
        self.failed_in.get_or_insert(state);
        self.refused.push(text);
    }

    pub fn ok(&self) -> bool {
        self.refused.is_empty()
    }
}

#[derive(Debug)]
pub enum SyncError {
    Imap(ImapError),
    Store(store::Error),
    Download(DownloadError),
    /// The server broke a rule we rely on (no UIDVALIDITY, a FETCH without its data).
    Server(String),
}

impl SyncError {
    /// Whether the connection is gone (the run stops; the next one resumes).
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            SyncError::Imap(ImapError::Closed | ImapError::Io(_) | ImapError::Bye(_) | ImapError::Connect { .. })
                | SyncError::Download(DownloadError::Imap(
                    ImapError::Closed | ImapError::Io(_) | ImapError::Bye(_) | ImapError::Connect { .. }
                ))
        )
    }
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Imap(e) => e.fmt(f),
            SyncError::Store(e) => write!(f, "store: {e}"),
            SyncError::Download(e) => e.fmt(f),
            SyncError::Server(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for SyncError {}

impl From<ImapError> for SyncError {
    fn from(e: ImapError) -> Self {
        SyncError::Imap(e)
    }
}
impl From<store::Error> for SyncError {
    fn from(e: store::Error) -> Self {
        SyncError::Store(e)
    }
}
impl From<DownloadError> for SyncError {
    fn from(e: DownloadError) -> Self {
        match e {
            DownloadError::Imap(i) => SyncError::Imap(i),
            DownloadError::Store(s) => SyncError::Store(s),
            e => SyncError::Download(e),
        }
    }
}

/// Told what a pass is doing, for a progress bar.
pub trait Progress {
    /// A new state begins in `folder` with `total` items to go (0 when unknown).
    fn state(&mut self, folder: &str, state: State, total: u64);
    /// `n` items (`bytes` bytes) of the current state are done.
    fn advance(&mut self, n: u64, bytes: u64);
}

/// A [`Progress`] that shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn state(&mut self, _: &str, _: State, _: u64) {}
    fn advance(&mut self, _: u64, _: u64) {}
}

/// Everything a folder's pass needs.
pub struct Pass<'a> {
    pub conn: &'a mut Connection,
    pub store: &'a Store,
    pub opts: Options,
    /// Every synced store folder and its server folder (for local moves between them).
    pub server_of: &'a HashMap<Id, Folder>,
    pub progress: &'a mut dyn Progress,
    /// Linked messages whose server copy left their folder, found before any folder's
    /// pass: a new message elsewhere with the same Message-ID and size is that copy moved.
    pub gone: &'a mut Vec<Gone>,
}

/// A linked message whose UID is gone from its server folder (see [`Pass::gone`]).
#[derive(Clone, Debug)]
pub struct Gone {
    pub id: Id,
    /// The store folder whose server folder it left.
    pub from: Id,
    pub message_id: String,
    /// Its size with CRLF line ends (the RFC822.SIZE it had there).
    pub size: u64,
    pub link: MessageRemote,
    /// Its folder's pass found it deleted there and would have deleted it here (the
    /// mass-delete guard let it): done at the end of the run if no pass claims it.
    pub approved: bool,
}

/// The length of `content` with every line end as CRLF: the size a server reports for a
/// message we sent with other line ends (RFC822.SIZE counts CRLF, and servers such as
/// Dovecot store a bare LF or a bare CR as CRLF).
pub fn crlf_len(content: &[u8]) -> u64 {
    let bare = content
        .iter()
        .enumerate()
        .filter(|&(i, &b)| {
            (b == b'\n' && (i == 0 || content[i - 1] != b'\r')) || (b == b'\r' && content.get(i + 1) != Some(&b'\n'))
        })
        .count();
    (content.len() + bare) as u64
}

/// `content` with every line end (CRLF, a bare CR) made LF: messages compare equal up to
/// line ends.
pub fn lf(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len());
    for (i, &b) in content.iter().enumerate() {
        match b {
            b'\r' if content.get(i + 1) == Some(&b'\n') => {}
            b'\r' => out.push(b'\n'),
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_ends_of_every_kind_count_as_crlf_and_compare_as_lf() {
        let m = b"a\r\nb\nc\rd";
        assert_eq!(super::crlf_len(m), b"a\r\nb\r\nc\r\nd".len() as u64);
        assert_eq!(super::lf(m), b"a\nb\nc\nd");
        assert_eq!(super::lf(b"x\r\r\r\n"), super::lf(b"x\r\n\r\n\r\n"));
    }
}

/// One linked message of the folder being synced.
#[derive(Clone, Copy, Debug)]
pub(super) struct Linked {
    pub(super) id: Id,
    pub(super) link: MessageRemote,
    /// Where the message is now, its version and flags.
    pub(super) folder: Id,
    pub(super) version: u64,
    pub(super) flags: u8,
}

/// The allowed number of deletions among `total` messages: max_deletes, but never fewer
/// than 10 for a percentage (deleting 1 of 5 is no mass deletion).
pub(super) fn delete_limit(m: MaxDeletes, total: u64) -> u64 {
    match m {
        MaxDeletes::Count(n) => n,
        MaxDeletes::Percent(_) => m.limit(total).max(10),
    }
}

/// Whether the store folder has changes since its last pass that the server does not
/// know of: a message without a link, one whose version, flags or folder differ from its
/// link, a header-only message, an upload intent, or fewer links than the server has
/// messages (a local deletion).
fn local_changes(store: &Store, local: Id, server_messages: u32) -> bool {
    let ix = store.index();
    if ix.upload_intents().any(|i| i.folder == local) || ix.tombstones().any(|(_, t)| t.folder == local) {
        return true;
    }
    let mut linked_here = 0u64;
    for (id, l) in ix.message_remotes() {
        if l.folder != local {
            continue;
        }
        linked_here += 1;
        let Ok(m) = ix.message(id) else { return true };
        if m.folder() != local
            || m.version() != l.version
            || m.flags() & SYNCED != l.flags & SYNCED
            || is_pending(l.modseq)
            || ix.message_keywords(id) != ix.synced_keywords(id)
        {
            return true;
        }
        if m.flags() & flags::HEADER_ONLY != 0 {
            return true;
        }
    }
    if linked_here != u64::from(server_messages) {
        return true;
    }
    let unlinked = match ix.children(local) {
        Ok(mut it) => it.any(|(_, c)| c.message_id().is_some_and(|id| ix.message_remote(id).is_none())),
        Err(_) => true,
    };
    unlinked
}

impl Pass<'_> {
    /// Sync store folder `local` with `server`, whose STATUS is `status`.
    pub fn folder(
        &mut self,
        server: &Folder,
        status: &super::imap::FolderStatus,
        local: Id,
        report: &mut FolderReport,
    ) -> Result<(), SyncError> {
        let store = self.store;
        let saved = store.index().folder_remote(local).cloned();
        // Nothing changed since the last pass, on either side: not even a SELECT.
        if let (Some(s), Some(hm)) = (&saved, status.highest_modseq) {
            let same = status.uid_validity.map(u64::from) == Some(s.uidvalidity)
                && status.uid_next.map(u64::from) == Some(s.uidnext)
                && hm == s.highestmodseq
                && s.highestmodseq > 0;
            if same && !local_changes(store, local, status.messages) {
                report.unchanged = true;
                return Ok(());
            }
        }
        report.last_state = Some(State::UploadTable);
        self.progress.state(&report.store_path, State::UploadTable, 0);
        let known = saved.as_ref().filter(|s| s.highestmodseq > 0).map(|s| (s.uidvalidity, s.highestmodseq));
        let sel = self.conn.select(server, known, self.opts.dry_run)?;
        let uidvalidity =
            u64::from(sel.uid_validity.ok_or_else(|| {
                SyncError::Server(format!("folder {:?}: the server gave no UIDVALIDITY", server.name))
            })?);
        let mut state = FolderRemote { name: server.name.clone(), uidvalidity, ..saved.clone().unwrap_or_default() };
        let rebound = saved.as_ref().is_some_and(|s| s.uidvalidity != uidvalidity);
        if rebound {
            state = self.rebind(server, local, &sel, uidvalidity, report)?;
        }
        let condstore = self.conn.has("CONDSTORE") || self.conn.has("QRESYNC");

        // (In a one-way run too: linking copies nothing, and it keeps either direction
        // from copying what both have.)
        if saved.is_none() && sel.exists > 0 {
            self.adopt(local, &sel, report)?;
        }
        // Uploads a killed pass may have made: linked first, so that what the server did to
        // them since is merged below like for any other linked message.
        let (found, unfound) = if self.opts.upload {
            let before: HashMap<u32, Linked> =
                linked_in(store, local).iter().map(|l| (l.link.uid as u32, *l)).collect();
            self.resolve_intents(local, &sel, &before, report)?
        } else {
            (HashSet::new(), HashMap::new())
        };

        // ---- what the server has of what we linked ----
        let linked = linked_in(store, local);
        let tombs: Vec<(Id, MessageRemote)> =
            store.index().tombstones().filter(|(_, t)| t.folder == local).map(|(id, t)| (id, *t)).collect();
        let cursor = state.cursor.min(u64::from(u32::MAX)) as u32;
        let top = linked
            .iter()
            .map(|l| l.link.uid as u32)
            .chain(tombs.iter().map(|(_, t)| t.uid as u32))
            .max()
            .unwrap_or(0)
            .max(cursor);
        let mut present: HashSet<u32> = HashSet::new();
        let mut server_flags: HashMap<u32, (u8, Vec<String>, u64)> = HashMap::new();
        if top > 0 && sel.exists > 0 {
            let range = format!("1:{top}");
            let qresync_usable = known.is_some() && !rebound && state.highestmodseq > 0;
            match self.present_by_vanished(&linked, &tombs, top, &sel, qresync_usable)? {
                Some(p) => present = p,
                None => present.extend(self.conn.uid_search(&range)?),
            }
            let fetched: Vec<Fetched> = if condstore && state.highestmodseq > 0 && !rebound {
                if sel.highest_modseq == Some(state.highestmodseq) {
                    Vec::new()
                } else if known.is_some() && self.conn.qresync_enabled() {
                    sel.changed.clone()
                } else {
                    self.conn.uid_fetch_since(&range, FetchWhat::Flags, Some(state.highestmodseq))?.0
                }
            } else {
                self.conn.uid_fetch(&range, FetchWhat::Flags)?
            };
            for f in fetched {
                if f.uid <= top && present.contains(&f.uid) {
                    let (bits, kw) = map_flags(&f.flags);
                    server_flags.insert(f.uid, (bits, kw, f.modseq.unwrap_or(0)));
                }
            }
        }
        // Links marked PENDING by a killed pass: their server flags are needed as they are.
        let unsure: Vec<u32> = linked
            .iter()
            .map(|l| (l, l.link.uid as u32))
            .filter(|(l, u)| is_pending(l.link.modseq) && present.contains(u) && !server_flags.contains_key(u))
            .map(|(_, u)| u)
            .collect();
        if !unsure.is_empty() {
            for f in self.conn.uid_fetch(&uid_set(&unsure), FetchWhat::Flags)? {
                let (bits, kw) = map_flags(&f.flags);
                server_flags.insert(f.uid, (bits, kw, f.modseq.unwrap_or(0)));
            }
        }
        let vanished: Vec<Linked> =
            linked.iter().filter(|l| !present.contains(&(l.link.uid as u32))).copied().collect();

        let mut changes: Vec<RemoteChange> = Vec::new();
        let mut expunge: Vec<u32> = Vec::new();
        let mut redownload: Vec<u32> = Vec::new();

        // ---- flags, both ways, merged against the last synced ones; the server's deletions ----
        // They consume every server change up to the SELECT's HIGHESTMODSEQ, which is
        // recorded with them (in download mode): from here on a change the server reports
        // is one made after the SELECT, ours or another client's.
        report.last_state = Some(State::UploadMessageRead);
        let mut ours: HashSet<u32> = HashSet::new();
        self.merge_flags(local, &linked, &present, &server_flags, &sel, report, &mut changes, &mut ours)?;
        if self.opts.download {
            report.last_state = Some(State::DownloadTable);
            self.server_deletions(&vanished, report, &mut changes)?;
            if let Some(hm) = sel.highest_modseq {
                if hm > state.highestmodseq && !rebound {
                    state.highestmodseq = hm;
                    changes.push(RemoteChange::Folder(local, Some(state.clone())));
                }
            }
        }
        if !self.opts.dry_run {
            self.advance_modseq(local, &mut state, &ours, &mut changes)?;
            if !changes.is_empty() {
                store.update_remote(std::mem::take(&mut changes))?;
            }
        }

        // ---- UPLOAD_MESSAGE: intents first, then new and edited messages, then moves ----
        if self.opts.upload {
            report.last_state = Some(State::UploadMessage);
            let mut upload: Vec<(Id, Option<u32>)> = Vec::new();
            {
                let ix = store.index();
                if let Ok(children) = ix.children(local) {
                    for (_, c) in children {
                        let Some(id) = c.message_id() else { continue };
                        if ix.message_remote(id).is_none() && !found.contains(&id) {
                            upload.push((id, None));
                        }
                    }
                };
            }
            let unlinked: HashSet<Id> = upload.iter().map(|u| u.0).collect();
            for l in &linked {
                // (Unlinked since, if the server deleted it: then it is in `upload` already.)
                if l.folder == local
                    && l.version != l.link.version
                    && l.flags & flags::HEADER_ONLY == 0
                    && !unlinked.contains(&l.id)
                {
                    // An edit: the new content goes up as a new message, the old is removed
                    // (if the server still has it).
                    let old = present.contains(&(l.link.uid as u32)).then_some(l.link.uid as u32);
                    upload.push((l.id, old));
                }
            }
            self.upload(server, local, &sel, &upload, &unfound, report, &mut expunge, &mut state, &mut ours)?;
            self.moves(local, &linked, &present, report, &mut expunge, &mut changes)?;
        }

        // ---- UPLOAD_MESSAGE_DEL: what was linked and is deleted here (its tombstone) ----
        let mut clear_after_expunge: Vec<Id> = Vec::new();
        {
            let linked_uids: HashSet<u32> = linked_in(store, local).iter().map(|l| l.link.uid as u32).collect();
            let tomb_uids: HashSet<u32> = tombs.iter().map(|(_, t)| t.uid as u32).collect();
            // On the server, already synced, and neither linked nor deleted here: a download
            // lost to a kill, or a deletion from before tombstones. Downloaded again: nothing
            // is deleted without a record that we had it.
            let lost: Vec<u32> = present
                .iter()
                .copied()
                .filter(|u| *u <= cursor && !linked_uids.contains(u) && !tomb_uids.contains(u))
                .collect();
            if !lost.is_empty() {
                // Except those marked \Deleted there: removed by us (or another client) on a
                // server without UIDPLUS, where they wait for someone's EXPUNGE.
                let marked: HashSet<u32> = self
                    .conn
                    .uid_fetch(&uid_set(&lost), FetchWhat::Flags)?
                    .into_iter()
                    .filter(|f| map_flags(&f.flags).0 & flags::TRASHED != 0)
                    .map(|f| f.uid)
                    .collect();
                redownload.extend(lost.into_iter().filter(|u| !marked.contains(u)));
            }
        }
        if self.opts.upload {
            report.last_state = Some(State::UploadMessageDel);
            let mut gone: Vec<u32> = Vec::new();
            let mut gone_ids: Vec<Id> = Vec::new();
            for (id, t) in &tombs {
                let uid = t.uid as u32;
                if !present.contains(&uid) {
                    // Gone there too.
                    changes.push(RemoteChange::Message(*id, None));
                    continue;
                }
                match server_flags.get(&uid) {
                    // Changed there since it was synced (not by a STORE of ours that a kill
                    // interrupted): kept, and downloaded again. \Deleted set there and
                    // nothing else is no such change: it is what the first half of our own
                    // removal (uid_remove: UID STORE +FLAGS (\Deleted), then UID EXPUNGE)
                    // leaves when a kill comes between the two, and a tombstone cannot carry
                    // a PENDING mark to say so; set by another client, it asks for the same
                    // deletion. Taken for a change, it brought the message back.
                    Some((bits, _, _))
                        if bits & SYNCED != t.flags & SYNCED
                            && bits & SYNCED != (t.flags | flags::TRASHED) & SYNCED
                            && !is_pending(t.modseq) =>
                    {
                        redownload.push(uid);
                        changes.push(RemoteChange::Message(*id, None));
                    }
                    _ => {
                        gone.push(uid);
                        gone_ids.push(*id);
                    }
                }
            }
            let limit = delete_limit(self.opts.max_deletes, u64::from(sel.exists));
            if gone.len() as u64 > limit && !self.opts.allow_mass_delete {
                report.refuse(
                    State::UploadMessageDel,
                    format!(
                        "refused to delete {} of {} messages on the server (more than max_deletes allows, {limit}); \
                         rerun with --allow-mass-delete if that is what you want",
                        gone.len(),
                        sel.exists
                    ),
                );
            } else {
                report.up.deleted += gone.len() as u64;
                expunge.extend(gone);
                clear_after_expunge = gone_ids;
            }
        }
        redownload.sort_unstable();
        redownload.dedup();
        if !redownload.is_empty() {
            log::debug!("{}: downloading again UIDs {}", report.store_path, uid_set(&redownload));
        }
        if !expunge.is_empty() && !self.opts.dry_run {
            log::debug!("{}: removing UIDs {} on the server", report.store_path, uid_set(&expunge));
            self.progress.state(&report.store_path, State::UploadMessageDel, expunge.len() as u64);
            let set = uid_set(&expunge);
            if !self.conn.uid_remove(&set)? {
                report.refuse(
                    State::UploadMessageDel,
                    format!(
                    "the server has no UIDPLUS: {} messages were marked \\Deleted but not expunged (a plain EXPUNGE \
                     would also remove what other clients marked)",
                    expunge.len()
                ),
                );
            }
        }

        changes.extend(clear_after_expunge.into_iter().map(|id| RemoteChange::Message(id, None)));
        if !changes.is_empty() && !self.opts.dry_run {
            store.update_remote(std::mem::take(&mut changes))?;
        }
        if self.opts.download {
            self.download(local, &server.name, &mut state, &redownload, report)?;
        }
        if self.opts.dry_run || (!self.opts.download && !rebound) {
            // Nothing was downloaded: the server's cursors stay where they were, so a later
            // download still sees what changed there.
            return Ok(());
        }
        state.uidnext = u64::from(sel.uid_next.unwrap_or(0)).max(state.cursor + 1);
        if self.opts.download {
            state.highestmodseq = state.highestmodseq.max(sel.highest_modseq.unwrap_or(0));
        }
        let mut last = Vec::new();
        self.advance_modseq(local, &mut state, &ours, &mut last)?;
        if store.index().folder_remote(local) != Some(&state) {
            store.set_folder_remote(local, Some(state))?;
        }
        report.last_state = Some(State::Idle);
        Ok(())
    }

    /// DOWNLOAD_TABLE's presence check through QRESYNC: of the UIDs linked to this folder
    /// (or tombstoned here), those the SELECT's VANISHED (EARLIER) did not name. `None`
    /// (ask the server for every UID up to `top` instead, UID SEARCH) unless QRESYNC was
    /// used from a recorded HIGHESTMODSEQ, no link is PENDING, and the server's count of
    /// messages up to `top` equals that set's size. The count is the safeguard: VANISHED
    /// only proves what went; a message the server holds that we have no record of (a
    /// download lost to a kill) or an expunge that was never reported would make the
    /// counts differ, and the full listing then finds it.
    fn present_by_vanished(
        &mut self,
        linked: &[Linked],
        tombs: &[(Id, MessageRemote)],
        top: u32,
        sel: &super::imap::Selected,
        usable: bool,
    ) -> Result<Option<HashSet<u32>>, SyncError> {
        if !usable
            || !self.conn.qresync_enabled()
            || sel.highest_modseq.is_none()
            || linked.iter().any(|l| is_pending(l.link.modseq))
            || tombs.iter().any(|(_, t)| is_pending(t.modseq))
        {
            return Ok(None);
        }
        let vanished: HashSet<u32> = sel.vanished.iter().copied().collect();
        let believed: Vec<u32> =
            linked.iter().map(|l| l.link.uid as u32).chain(tombs.iter().map(|(_, t)| t.uid as u32)).collect();
        let present: HashSet<u32> = believed.iter().copied().filter(|u| !vanished.contains(u)).collect();
        // The server's messages past `top` (arrived since the last pass: few). `n:*` also
        // names the highest UID when that is below n (RFC 3501 9): filtered.
        let above = match top.checked_add(1) {
            Some(n) => self.conn.uid_search(&format!("{n}:*"))?.into_iter().filter(|u| *u > top).count(),
            None => 0,
        };
        let up_to_top = (sel.exists as usize).checked_sub(above);
        if up_to_top != Some(present.len()) {
            log::info!(
                "the server holds {up_to_top:?} messages up to UID {top}, not the {} linked here less VANISHED: listing them all",
                present.len()
            );
            return Ok(None);
        }
        log::debug!("presence from VANISHED (EARLIER): {} of {} linked here", present.len(), believed.len());
        Ok(Some(present))
    }

    /// Move the folder's HIGHESTMODSEQ over changes the server reports since it when every
    /// one of them is ours (`ours`: UIDs this pass appended or stored flags on), pushing the
    /// new state into `changes` (committed by the caller with the links it goes with).
    /// Without that, our own changes would look like another client's to the next pass:
    /// a message uploaded, then deleted here, would be taken for one changed there and
    /// come back.
    pub(super) fn advance_modseq(
        &mut self,
        local: Id,
        state: &mut FolderRemote,
        ours: &HashSet<u32>,
        changes: &mut Vec<RemoteChange>,
    ) -> Result<(), SyncError> {
        if ours.is_empty() || state.highestmodseq == 0 || !(self.conn.has("CONDSTORE") || self.conn.has("QRESYNC")) {
            return Ok(());
        }
        let (changed, vanished) = self.conn.uid_fetch_since("1:*", FetchWhat::Flags, Some(state.highestmodseq))?;
        // An expunge since (another client's, or our own UID EXPUNGE or MOVE) is left for
        // the next pass's VANISHED (EARLIER) to report: moving past it would hide it.
        if changed.is_empty() || !vanished.is_empty() || !changed.iter().all(|f| ours.contains(&f.uid)) {
            return Ok(());
        }
        let top = changed.iter().filter_map(|f| f.modseq).max().unwrap_or(0);
        if top > state.highestmodseq {
            state.highestmodseq = top;
            changes.retain(|c| !matches!(c, RemoteChange::Folder(id, _) if *id == local));
            changes.push(RemoteChange::Folder(local, Some(state.clone())));
        }
        Ok(())
    }
}

/// Every message linked to this folder's server folder, wherever it is now.
pub(super) fn linked_in(store: &Store, local: Id) -> Vec<Linked> {
    let ix = store.index();
    let mut out: Vec<Linked> = ix
        .message_remotes()
        .filter(|(_, l)| l.folder == local)
        .filter_map(|(id, l)| {
            let m = ix.message(id).ok()?;
            Some(Linked { id, link: *l, folder: m.folder(), version: m.version(), flags: m.flags() })
        })
        .collect();
    out.sort_unstable_by_key(|l| l.link.uid);
    out
}

pub(super) fn linked_count(store: &Store, folder: Option<Id>) -> u64 {
    folder.map_or(0, |f| store.index().message_remotes().filter(|(_, l)| l.folder == f).count() as u64)
}

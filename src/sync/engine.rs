//! One two-way pass over one folder, in the IOSTX order: SELECT (UPLOAD_TABLE 5), uploads
//! (UPLOAD_MESSAGE 6), flags (UPLOAD_MESSAGE_READ 8), deletions (UPLOAD_MESSAGE_DEL 9), then
//! the server's deletions and new messages (DOWNLOAD_TABLE 11, headers first) and their
//! bodies (DOWNLOAD_HEADER 17).
//!
//! Invariants:
//! - a link (message <-> UID) and the folder's cursor change only after the server said OK
//!   to what they record, so a pass killed anywhere is resumed by the next one: an APPEND
//!   is preceded by a durable intent, and a resumed pass looks an intent up on the server
//!   before it sends the message again (no duplicates);
//! - the folder's HIGHESTMODSEQ and UIDNEXT are recorded only when the whole pass is in;
//! - flags merge three ways against the link's flags (the last synced ones): a bit one
//!   side changed takes that side's value;
//! - nothing is deleted on either side in bulk without consent: more deletions than the
//!   account's max_deletes in one folder are refused, and a message is only expunged on
//!   the server when it was linked before and its link is gone locally (a lost sync state
//!   has no links and no cursor, so it deletes nothing);
//! - a message the server deleted is kept locally if it was edited since it was synced
//!   (then it is uploaded again as new); a message deleted locally is not expunged if the
//!   server changed it meanwhile (then it comes back).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use super::commands::{uid_set, Append, Appended};
use super::config::MaxDeletes;
use super::download::{fetch_bodies, fetch_headers, list_new, map_flags, DownloadError, DownloadReport, Limits};
use super::imap::{Connection, FetchWhat, Fetched, Folder, ImapError, Selected};
use crate::import::MessageNames;
use crate::mime;
use crate::store::{self, flags, AttrChange, FolderRemote, Id, MessageRemote, RemoteChange, Store, UploadIntent};

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

/// A link's modseq while a UID STORE of its flags may be under way (see merge_flags).
pub const PENDING: u64 = u64::MAX;

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

/// The length of `content` with every bare LF counted as CRLF: the size a server reports
/// for a message we sent with LF line ends (RFC822.SIZE counts CRLF).
pub fn crlf_len(content: &[u8]) -> u64 {
    let bare = content.iter().enumerate().filter(|&(i, &b)| b == b'\n' && (i == 0 || content[i - 1] != b'\r')).count();
    (content.len() + bare) as u64
}

/// `content` with CRLF turned into LF: messages compare equal up to line ends.
pub fn lf(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len());
    for (i, &b) in content.iter().enumerate() {
        if !(b == b'\r' && content.get(i + 1) == Some(&b'\n')) {
            out.push(b);
        }
    }
    out
}

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

/// One linked message of the folder being synced.
#[derive(Clone, Copy, Debug)]
struct Linked {
    id: Id,
    link: MessageRemote,
    /// Where the message is now, its version and flags.
    folder: Id,
    version: u64,
    flags: u8,
}

/// The allowed number of deletions among `total` messages: max_deletes, but never fewer
/// than 10 for a percentage (deleting 1 of 5 is no mass deletion).
fn delete_limit(m: MaxDeletes, total: u64) -> u64 {
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
            || l.modseq == PENDING
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

        if saved.is_none() && sel.exists > 0 && self.opts.upload && self.opts.download {
            self.adopt(local, &sel, report)?;
        }
        // Uploads a killed pass may have made: linked first, so that what the server did to
        // them since is merged below like for any other linked message.
        let found = if self.opts.upload {
            let before: HashMap<u32, Linked> =
                linked_in(store, local).iter().map(|l| (l.link.uid as u32, *l)).collect();
            self.resolve_intents(local, &sel, &before, report)?
        } else {
            HashSet::new()
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
            present.extend(self.conn.uid_search(&range)?);
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
            .filter(|(l, u)| l.link.modseq == PENDING && present.contains(u) && !server_flags.contains_key(u))
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
            self.upload(server, local, &sel, &upload, report, &mut expunge, &mut state, &mut ours)?;
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
                    // interrupted): kept, and downloaded again.
                    Some((bits, _, _)) if bits & SYNCED != t.flags & SYNCED && t.modseq != PENDING => {
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

    /// Move the folder's HIGHESTMODSEQ over changes the server reports since it when every
    /// one of them is ours (`ours`: UIDs this pass appended or stored flags on), pushing the
    /// new state into `changes` (committed by the caller with the links it goes with).
    /// Without that, our own changes would look like another client's to the next pass:
    /// a message uploaded, then deleted here, would be taken for one changed there and
    /// come back.
    fn advance_modseq(
        &mut self,
        local: Id,
        state: &mut FolderRemote,
        ours: &HashSet<u32>,
        changes: &mut Vec<RemoteChange>,
    ) -> Result<(), SyncError> {
        if ours.is_empty() || state.highestmodseq == 0 || !(self.conn.has("CONDSTORE") || self.conn.has("QRESYNC")) {
            return Ok(());
        }
        let (changed, _) = self.conn.uid_fetch_since("1:*", FetchWhat::Flags, Some(state.highestmodseq))?;
        if changed.is_empty() || !changed.iter().all(|f| ours.contains(&f.uid)) {
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

    /// Intents of this folder whose message has no link: look each up on the server (from
    /// the UIDNEXT saved with it, by size and content) and link it if it is there; clear it
    /// otherwise (the message is then uploaded as new). Returns the messages linked.
    fn resolve_intents(
        &mut self,
        local: Id,
        sel: &Selected,
        by_uid: &HashMap<u32, Linked>,
        report: &mut FolderReport,
    ) -> Result<HashSet<Id>, SyncError> {
        let intents: Vec<UploadIntent> = {
            let ix = self.store.index();
            ix.upload_intents()
                .filter(|i| i.folder == local && ix.message_remote(i.message).is_none())
                .copied()
                .collect()
        };
        let mut found = HashSet::new();
        if intents.is_empty() || self.opts.dry_run {
            return Ok(found);
        }
        let from = intents.iter().map(|i| i.uidnext).min().unwrap_or(1).max(1);
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
        let wanted: Vec<(u64, u32)> = intents.iter().map(|i| (i.size, i.crc)).collect();
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
                    found.insert(i.message);
                    report.up.new += 1;
                }
                Some(uid) => {
                    // Edited or deleted here since it was sent: the copy there is stale.
                    lost_deletes.push(uid);
                    changes.push(RemoteChange::ClearIntent(i.message));
                }
                None => changes.push(RemoteChange::ClearIntent(i.message)),
            }
        }
        candidates.clear();
        if !lost_deletes.is_empty() {
            self.conn.uid_remove(&uid_set(&lost_deletes))?;
        }
        self.store.update_remote(changes)?;
        Ok(found)
    }

    /// For the candidates (UID and RFC822.SIZE) whose size is one of `wanted`'s, the
    /// checksum of their content with line ends made LF: (uid, size, crc), in UID order.
    fn sums(&mut self, candidates: &[Fetched], wanted: &[(u64, u32)]) -> Result<Vec<(u32, u64, u32)>, SyncError> {
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
    #[allow(clippy::too_many_arguments)]
    fn upload(
        &mut self,
        server: &Folder,
        local: Id,
        sel: &Selected,
        msgs: &[(Id, Option<u32>)],
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
                    uidnext,
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
    fn moves(
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
    fn merge_flags(
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

    /// Linked messages the server no longer has: deleted here too, unless edited since
    /// they were synced (then kept, unlinked, and uploaded as new by the next pass).
    fn server_deletions(
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
                Ok(()) | Err(store::Error::NotFound | store::Error::ObjectDeleted) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// New messages (and `again`, deleted locally but changed on the server): headers
    /// first, the cursor moving with each batch, then every header-only message's body.
    fn download(
        &mut self,
        local: Id,
        server_name: &str,
        state: &mut FolderRemote,
        again: &[u32],
        report: &mut FolderReport,
    ) -> Result<(), SyncError> {
        let mut dl = DownloadReport::default();
        let mut todo: Vec<(u32, u64)> = again.iter().map(|u| (*u, 0)).collect();
        let (new, highest) = list_new(self.conn, self.store, local, state.cursor)?;
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
        fetch_bodies(self.conn, store, local, server_name, self.opts.limits, &mut dl, &mut done)?;
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

    /// UIDVALIDITY changed: the old UIDs name nothing now. Rebind every linked message of
    /// the folder to the server message with the same Message-ID and size (content when
    /// several), drop the links of the rest (kept locally, listed, uploaded again), and
    /// restart the folder's cursor so the server's unmatched messages are downloaded.
    fn rebind(
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
                Some((uid, _)) => {
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
    fn adopt(&mut self, local: Id, sel: &Selected, report: &mut FolderReport) -> Result<(), SyncError> {
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
            let Some((uid, server_bits)) = hit else { continue };
            let Ok((version, bits)) = self.store.index().message(id).map(|m| (m.version(), m.flags() & SYNCED)) else {
                continue;
            };
            let link =
                MessageRemote { folder: local, uid: u64::from(uid), modseq: 0, flags: bits & server_bits, version };
            changes.push(RemoteChange::Message(id, Some(link)));
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
    fn pair_with_server(
        &mut self,
        sel: &Selected,
        wanted: &[(Id, bool)],
    ) -> Result<Vec<(Id, Option<(u32, u8)>)>, SyncError> {
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
        let mut taken: HashSet<u32> = HashSet::new();
        let mut out = Vec::with_capacity(wanted.len());
        for &(id, header_only) in wanted {
            let content = match self.store.read_message(id) {
                Ok(c) => c,
                Err(_) => {
                    out.push((id, None));
                    continue;
                }
            };
            let mid = mime::parse_props(&content).message_id;
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
            let hit = match cands.len() {
                0 => None,
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
                    (f.uid, map_flags(&f.flags).0)
                }),
            ));
        }
        Ok(out)
    }
}

/// Every message linked to this folder's server folder, wherever it is now.
fn linked_in(store: &Store, local: Id) -> Vec<Linked> {
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

fn linked_count(store: &Store, folder: Option<Id>) -> u64 {
    folder.map_or(0, |f| store.index().message_remotes().filter(|(_, l)| l.folder == f).count() as u64)
}

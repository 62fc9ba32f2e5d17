//! The download side of one sync pass for one folder: the server's messages that the store
//! has not got yet (UIDs past the folder's cursor) are fetched in batches and committed,
//! each with its remote link, then the folder's remote state is advanced.
//!
//! Invariants:
//! - a message is committed with its link in one frame ([`Store::import_synced`]), and the
//!   folder's state is written only after that frame is durable; a crash between the two
//!   leaves links ahead of the cursor, so the resume point is the highest of the cursor and
//!   the UIDs linked in the folder: nothing is downloaded twice;
//! - UIDVALIDITY is checked before anything is fetched: a folder whose saved UIDVALIDITY
//!   differs from the server's is an error and nothing is changed (its UIDs no longer name
//!   the same messages; rebinding them is not done here);
//! - `uidnext` and `highestmodseq` are only recorded once the whole pass is in: until
//!   then the previous values stay, so a later flag sync never takes a half-done download
//!   for a complete one;
//! - message bytes are stored exactly as BODY[] brought them.

use std::collections::HashSet;
use std::fmt;

use crate::import::MessageNames;
use crate::mime;
use crate::store::commit::now_ns;
use crate::store::{self, flags, Attrs, FolderRemote, Id, NewMessage, RemoteCopy, Store, SyncedMessage};

use super::imap::{Connection, FetchWhat, Fetched, Folder, ImapError};

/// A batch is committed once it holds this many messages...
pub const BATCH_MESSAGES: usize = 1000;
/// ...or this many bytes (RFC822.SIZE), whichever comes first; a bigger message goes alone.
/// Each batch costs a syncfs, which also flushes whatever else the file system holds dirty
/// (a local IMAP server's mail): fewer, bigger batches (bounded in memory by this) are
/// much cheaper than many small ones.
pub const BATCH_BYTES: u64 = 64 << 20;

/// What one [`download_folder`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DownloadReport {
    /// New messages committed (header-only at first).
    pub messages: u64,
    /// Header-only messages completed with their bodies.
    pub bodies: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Batches (frames) committed.
    pub batches: u64,
    /// Messages listed but gone before their batch was fetched (expunged meanwhile).
    pub vanished: u64,
    /// The folder's remote state as recorded at the end.
    pub state: FolderRemote,
    /// RFC822.SIZE of the messages whose headers came in this pass, by UID: the bodies
    /// pass orders them by size without asking the server again.
    pub sizes: std::collections::HashMap<u32, u64>,
}

#[derive(Debug)]
pub enum DownloadError {
    Imap(ImapError),
    Store(store::Error),
    /// The server's UIDVALIDITY is not the one the store synced with.
    UidValidityChanged {
        folder: String,
        saved: u64,
        server: u64,
    },
    /// EXAMINE gave no UIDVALIDITY (a broken server): UIDs cannot be trusted.
    NoUidValidity {
        folder: String,
    },
    /// FETCH brought a message without its content.
    NoBody {
        folder: String,
        uid: u32,
    },
}

impl fmt::Display for DownloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownloadError::Imap(e) => e.fmt(f),
            DownloadError::Store(e) => write!(f, "store: {e}"),
            DownloadError::UidValidityChanged { folder, saved, server } => write!(
                f,
                "folder {folder:?}: the server's UIDVALIDITY is {server}, not {saved} as when last synced; \
                 its UIDs name other messages now, so nothing was downloaded (rebinding the folder is not supported yet)"
            ),
            DownloadError::NoUidValidity { folder } => {
                write!(f, "folder {folder:?}: the server gave no UIDVALIDITY, so its UIDs cannot be trusted")
            }
            DownloadError::NoBody { folder, uid } => {
                write!(f, "folder {folder:?}: the server sent message UID {uid} without its content")
            }
        }
    }
}

impl std::error::Error for DownloadError {}

impl From<ImapError> for DownloadError {
    fn from(e: ImapError) -> Self {
        DownloadError::Imap(e)
    }
}

impl From<store::Error> for DownloadError {
    fn from(e: store::Error) -> Self {
        DownloadError::Store(e)
    }
}

/// IMAP flags to store flags and keywords: \Seen S, \Answered R, \Flagged F, \Draft D,
/// \Deleted T; every other flag is a keyword, spelled as on the wire. A keyword the store
/// cannot keep (over [`store::remote::MAX_KEYWORD`] bytes) is dropped with a warning rather
/// than failing the whole batch.
pub fn map_flags(imap: &[String]) -> (u8, Vec<String>) {
    let mut bits = 0;
    let mut keywords = Vec::new();
    for f in imap {
        match f.to_ascii_lowercase().as_str() {
            "\\seen" => bits |= flags::SEEN,
            "\\answered" => bits |= flags::ANSWERED,
            "\\flagged" => bits |= flags::FLAGGED,
            "\\draft" => bits |= flags::DRAFT,
            "\\deleted" => bits |= flags::TRASHED,
            "\\recent" => {}
            _ if store::remote::check_keywords(std::slice::from_ref(f)).is_ok() => keywords.push(f.clone()),
            _ => ::log::warn!("keyword {f:?} cannot be stored; left out"),
        }
    }
    (bits, keywords)
}

/// Download into store folder `folder_id` the messages of `server_folder` that it has not
/// got yet, and record the folder's remote state. See the module comment for the rules.
pub fn download_folder(
    conn: &mut Connection,
    store: &Store,
    server_folder: &Folder,
    folder_id: Id,
) -> Result<DownloadReport, DownloadError> {
    download_folder_in_batches(conn, store, server_folder, folder_id, BATCH_MESSAGES, BATCH_BYTES)
}

/// Batch limits: at most `messages` messages and `bytes` bytes a batch (one message bigger
/// than that goes alone).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub messages: usize,
    pub bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { messages: BATCH_MESSAGES, bytes: BATCH_BYTES }
    }
}

/// [`download_folder`] with other batch limits.
pub fn download_folder_in_batches(
    conn: &mut Connection,
    store: &Store,
    server_folder: &Folder,
    folder_id: Id,
    max_messages: usize,
    max_bytes: u64,
) -> Result<DownloadReport, DownloadError> {
    let limits = Limits { messages: max_messages.max(1), bytes: max_bytes };
    let name = server_folder.name.clone();
    // The folder must exist before we talk to the server at length.
    store.index().folder(folder_id)?;
    let sel = conn.examine(server_folder)?;
    let uidvalidity = u64::from(sel.uid_validity.ok_or_else(|| DownloadError::NoUidValidity { folder: name.clone() })?);
    let saved = store.index().folder_remote(folder_id).cloned();
    if let Some(s) = &saved {
        if s.uidvalidity != uidvalidity {
            return Err(DownloadError::UidValidityChanged { folder: name, saved: s.uidvalidity, server: uidvalidity });
        }
    }
    let cursor = saved.as_ref().map_or(0, |s| s.cursor);
    // Until the pass is complete, the previous uidnext/highestmodseq stay (0 on a first run).
    let mut state = FolderRemote { name: name.clone(), uidvalidity, cursor, ..saved.clone().unwrap_or_default() };
    let mut report = DownloadReport::default();
    let (todo, highest) = if sel.exists > 0 { list_new(conn, store, folder_id, cursor)? } else { (Vec::new(), cursor) };
    let mut names = MessageNames::default();
    fetch_headers(conn, store, &mut names, folder_id, &name, &todo, limits, &mut report, &mut |_| Ok(false), |last| {
        state.cursor = state.cursor.max(u64::from(last));
        store.set_folder_remote(folder_id, Some(state.clone())).map_err(DownloadError::Store)
    })?;
    fetch_bodies(conn, store, folder_id, limits, &mut report, &mut |_, _| {})?;
    state.cursor = state.cursor.max(highest);
    // Every UID below the EXAMINE's UIDNEXT was listed above (or expunged): the pass is
    // complete up to there.
    state.uidnext = u64::from(sel.uid_next.unwrap_or(0)).max(state.cursor + 1);
    state.highestmodseq = sel.highest_modseq.unwrap_or(0);
    if store.index().folder_remote(folder_id) != Some(&state) {
        store.set_folder_remote(folder_id, Some(state.clone()))?;
    }
    report.state = state;
    Ok(report)
}

/// The server's messages past `cursor` that the folder has no link to (a message uploaded
/// by us, or downloaded by a run killed before it moved the cursor, is linked), with their
/// sizes, in UID order.
///
/// Also returns the highest UID the server listed: once the messages listed are in, every
/// UID up to it is downloaded, linked or expunged, so the cursor may move there.
pub fn list_new(
    conn: &mut Connection,
    store: &Store,
    folder_id: Id,
    cursor: u64,
) -> Result<(Vec<(u32, u64)>, u64), DownloadError> {
    if cursor >= u64::from(u32::MAX) {
        return Ok((Vec::new(), cursor));
    }
    let from = cursor + 1;
    let linked: HashSet<u64> = store
        .index()
        .message_remotes()
        .filter(|(_, l)| l.folder == folder_id && l.uid > cursor)
        .map(|(_, l)| l.uid)
        .collect();
    // `from:*` also answers with the highest UID when that is below `from`: filter.
    let listed = conn.uid_fetch(&format!("{from}:*"), FetchWhat::Sizes)?;
    let highest = listed.iter().map(|f| u64::from(f.uid)).filter(|u| *u > cursor).max().unwrap_or(cursor);
    let mut todo: Vec<(u32, u64)> = listed
        .into_iter()
        .filter(|f| u64::from(f.uid) > cursor && !linked.contains(&u64::from(f.uid)))
        .map(|f| (f.uid, u64::from(f.size.unwrap_or(0))))
        .collect();
    todo.sort_unstable();
    todo.dedup_by_key(|t| t.0);
    Ok((todo, highest))
}

/// The batches of `todo` ((uid, size) pairs) under `limits`.
fn batches(todo: &[(u32, u64)], limits: Limits) -> Vec<&[(u32, u64)]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < todo.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < todo.len() && end - start < limits.messages && (end == start || bytes + todo[end].1 <= limits.bytes)
        {
            bytes += todo[end].1;
            end += 1;
        }
        out.push(&todo[start..end]);
        start = end;
    }
    out
}

/// DOWNLOAD_TABLE for new messages: fetch the headers of `todo` and commit each as a
/// header-only message with its link, a batch a frame; after each batch `done(last uid)`
/// (the caller moves its cursor).
#[allow(clippy::too_many_arguments)]
pub fn fetch_headers(
    conn: &mut Connection,
    store: &Store,
    names: &mut MessageNames,
    folder_id: Id,
    folder_name: &str,
    todo: &[(u32, u64)],
    limits: Limits,
    report: &mut DownloadReport,
    claim: &mut dyn FnMut(&Fetched) -> Result<bool, DownloadError>,
    mut done: impl FnMut(u32) -> Result<(), DownloadError>,
) -> Result<(), DownloadError> {
    // Headers are small: many more go in one batch than whole messages do.
    let header_limits = Limits { messages: limits.messages * 10, bytes: u64::MAX };
    for batch in batches(todo, header_limits) {
        let set: Vec<u32> = batch.iter().map(|t| t.0).collect();
        let mut fetched = conn.uid_fetch(&super::commands::uid_set(&set), FetchWhat::Header)?;
        fetched.retain(|f| batch.binary_search_by_key(&f.uid, |t| t.0).is_ok());
        // An unsolicited FETCH (a flag update) may name a UID of the batch too, without
        // its header: keep the answer that has it.
        fetched.sort_unstable_by_key(|f| (f.uid, f.header.is_none()));
        fetched.dedup_by_key(|f| f.uid);
        report.vanished += (batch.len() - fetched.len()) as u64;
        // Those the caller takes care of otherwise (a message moved there from a folder
        // where we have it) are not downloaded.
        report.sizes.extend(fetched.iter().filter_map(|f| f.size.map(|n| (f.uid, u64::from(n)))));
        let mut rest = Vec::with_capacity(fetched.len());
        for f in fetched {
            if !claim(&f)? {
                rest.push(f);
            }
        }
        let n = commit_headers(store, names, folder_id, folder_name, rest, report)?;
        if n > 0 {
            report.batches += 1;
        }
        done(batch.last().expect("a batch is never empty").0)?;
    }
    Ok(())
}

/// DOWNLOAD_HEADER: replace every header-only message of the folder by the whole message,
/// smallest first, a batch a frame; each keeps its entry id, name and local flags.
/// `progress(messages, bytes)` after each batch.
pub fn fetch_bodies(
    conn: &mut Connection,
    store: &Store,
    folder_id: Id,
    limits: Limits,
    report: &mut DownloadReport,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), DownloadError> {
    let pending: Vec<(u32, Id)> = {
        let ix = store.index();
        ix.message_remotes()
            .filter(|(id, l)| {
                l.folder == folder_id
                    && ix.message(*id).is_ok_and(|m| m.folder() == folder_id && m.flags() & flags::HEADER_ONLY != 0)
            })
            .filter_map(|(id, l)| u32::try_from(l.uid).ok().map(|u| (u, id)))
            .collect()
    };
    if pending.is_empty() {
        return Ok(());
    }
    let by_uid: std::collections::HashMap<u32, Id> = pending.iter().copied().collect();
    // Sizes the headers pass gave; the server is asked only for the others (header-only
    // messages a killed run left).
    let mut todo: Vec<(u32, u64)> = pending.iter().filter_map(|(u, _)| report.sizes.get(u).map(|n| (*u, *n))).collect();
    let unknown: Vec<u32> = pending.iter().map(|p| p.0).filter(|u| !report.sizes.contains_key(u)).collect();
    if !unknown.is_empty() {
        todo.extend(
            conn.uid_fetch(&super::commands::uid_set(&unknown), FetchWhat::Sizes)?
                .into_iter()
                .filter(|f| by_uid.contains_key(&f.uid))
                .map(|f| (f.uid, u64::from(f.size.unwrap_or(0)))),
        );
    }
    // Smallest first: most messages become readable soonest.
    todo.sort_unstable_by_key(|t| (t.1, t.0));
    todo.dedup_by_key(|t| t.0);
    // One batch is made durable while the next is fetched: the server sends, and this
    // side parses, while the log is written and synced.
    let mut inflight: Option<(store::BatchCommit, u64, u64)> = None;
    let mut finish =
        |c: Option<(store::BatchCommit, u64, u64)>, report: &mut DownloadReport| -> Result<(), DownloadError> {
            if let Some((commit, n, bytes)) = c {
                commit.wait()?;
                report.bodies += n;
                report.bytes += bytes;
                report.batches += 1;
                progress(n, bytes);
            }
            Ok(())
        };
    for batch in batches(&todo, limits) {
        let set: Vec<u32> = batch.iter().map(|t| t.0).collect();
        let fetched = match conn.uid_fetch(&super::commands::uid_set(&set), FetchWhat::Full) {
            Ok(f) => f,
            Err(e) => {
                // What was fetched before is kept: wait for it before giving up.
                finish(inflight.take(), report)?;
                return Err(e.into());
            }
        };
        let mut items = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut bytes = 0;
        for f in fetched {
            let (Some(&id), Some(body)) = (by_uid.get(&f.uid), f.body) else { continue };
            if !seen.insert(id) {
                continue;
            }
            let (version, flags_now, link) = {
                let ix = store.index();
                let Ok(m) = ix.message(id) else { continue };
                let Some(link) = ix.message_remote(id).copied() else { continue };
                (m.version(), m.flags(), link)
            };
            let (staged, crc) = store.stage_content(&body)?;
            bytes += body.len() as u64;
            items.push(store::Replacement {
                id,
                base_version: version,
                staged,
                size: body.len() as u64,
                crc,
                flags: flags_now & flags::USER,
                remote: RemoteCopy { uid: link.uid, modseq: link.modseq, flags: link.flags },
            });
        }
        finish(inflight.take(), report)?;
        let n = items.len() as u64;
        if n > 0 {
            inflight = Some((store.start_replace_synced_batch(items)?, n, bytes));
        }
    }
    finish(inflight.take(), report)
}

/// Stage and commit one fetched batch of headers in one frame; the number committed.
fn commit_headers(
    store: &Store,
    names: &mut MessageNames,
    folder_id: Id,
    folder_name: &str,
    fetched: Vec<Fetched>,
    report: &mut DownloadReport,
) -> Result<usize, DownloadError> {
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // A missing header is found before anything is staged, so that this error leaves no
    // file behind.
    if let Some(f) = fetched.iter().find(|f| f.header.is_none()) {
        return Err(DownloadError::NoBody { folder: folder_name.to_string(), uid: f.uid });
    }
    let mut pending: HashSet<String> = HashSet::new();
    let mut msgs = Vec::with_capacity(fetched.len());
    for f in fetched {
        let header = f.header.expect("checked above");
        let props = mime::parse_props(&header);
        let name = {
            let ix = store.index();
            names.name(folder_id, &props, |c| pending.contains(c) || ix.lookup(folder_id, c).is_some())
        };
        // As the import does: the Date header's time, else (here) INTERNALDATE.
        let mtime = props.mtime_ns(f.internal_date).unwrap_or_else(now_ns);
        let (staged, crc) = store.stage_content(&header)?;
        pending.insert(name.clone());
        let (bits, keywords) = map_flags(&f.flags);
        log::debug!("{folder_name}: UID {} arrives as {name:?}", f.uid);
        msgs.push(SyncedMessage {
            message: NewMessage {
                folder: folder_id,
                name,
                staged,
                size: header.len() as u64,
                crc,
                attrs: Attrs { mode: libc::S_IFREG | 0o600, uid, gid, mtime },
                flags: bits | flags::HEADER_ONLY,
            },
            remote: RemoteCopy { uid: u64::from(f.uid), modseq: f.modseq.unwrap_or(0), flags: bits },
            keywords,
        });
    }
    let n = msgs.len();
    if n > 0 {
        store.import_synced(msgs)?;
        report.messages += n as u64;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn system_flags_map_to_letters_in_any_case_and_the_rest_to_keywords() {
        let (bits, kw) = map_flags(&strings(&["\\SEEN", "\\answered", "\\Flagged", "\\Draft", "\\Deleted"]));
        assert_eq!(flags::to_letters(bits), "DFRST");
        assert!(kw.is_empty());
        let (bits, kw) = map_flags(&strings(&["\\Recent", "$Forwarded", "\\Unknown", "Work"]));
        assert_eq!(bits, 0);
        assert_eq!(kw, strings(&["$Forwarded", "\\Unknown", "Work"]));
    }

    #[test]
    fn a_keyword_the_store_cannot_keep_is_left_out_not_an_error() {
        let long = "k".repeat(store::remote::MAX_KEYWORD + 1);
        let (bits, kw) = map_flags(&[long, "\\Seen".into(), "ok".into()]);
        assert_eq!((bits, kw), (flags::SEEN, strings(&["ok"])));
    }
}

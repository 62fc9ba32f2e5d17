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
pub const BATCH_MESSAGES: usize = 200;
/// ...or this many bytes (RFC822.SIZE), whichever comes first; a bigger message goes alone.
pub const BATCH_BYTES: u64 = 32 << 20;

/// What one [`download_folder`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DownloadReport {
    /// Messages committed.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Batches (frames) committed.
    pub batches: u64,
    /// Messages listed but gone before their batch was fetched (expunged meanwhile).
    pub vanished: u64,
    /// The folder's remote state as recorded at the end.
    pub state: FolderRemote,
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

/// [`download_folder`] with other batch limits: at most `max_messages` messages and
/// `max_bytes` bytes a batch (one message bigger than that goes alone).
pub fn download_folder_in_batches(
    conn: &mut Connection,
    store: &Store,
    server_folder: &Folder,
    folder_id: Id,
    max_messages: usize,
    max_bytes: u64,
) -> Result<DownloadReport, DownloadError> {
    let max_messages = max_messages.max(1);
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
    let linked = store.index().message_remotes().filter(|(_, l)| l.folder == folder_id).map(|(_, l)| l.uid).max();
    let mut cursor = saved.as_ref().map_or(0, |s| s.cursor).max(linked.unwrap_or(0));
    // Until the pass is complete, the previous uidnext/highestmodseq stay (0 on a first run).
    let mut state = FolderRemote { name: name.clone(), uidvalidity, cursor, ..saved.clone().unwrap_or_default() };
    let mut report = DownloadReport::default();

    let mut todo: Vec<(u32, u64)> = Vec::new();
    if sel.exists > 0 && cursor < u64::from(u32::MAX) {
        let from = cursor + 1;
        // `from:*` also answers with the highest UID when that is below `from`: filter.
        todo = conn
            .uid_fetch(&format!("{from}:*"), FetchWhat::Sizes)?
            .into_iter()
            .filter(|f| u64::from(f.uid) > cursor)
            .map(|f| (f.uid, u64::from(f.size.unwrap_or(0))))
            .collect();
        todo.sort_unstable();
        todo.dedup_by_key(|t| t.0);
    }

    let mut names = MessageNames::default();
    let mut start = 0;
    while start < todo.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < todo.len() && end - start < max_messages && (end == start || bytes + todo[end].1 <= max_bytes) {
            bytes += todo[end].1;
            end += 1;
        }
        let batch = &todo[start..end];
        let set: Vec<String> = batch.iter().map(|(u, _)| u.to_string()).collect();
        let mut fetched = conn.uid_fetch(&set.join(","), FetchWhat::Full)?;
        fetched.retain(|f| batch.binary_search_by_key(&f.uid, |t| t.0).is_ok());
        // An unsolicited FETCH (a flag update) may name a UID of the batch too, without its
        // body: keep the answer that has the body.
        fetched.sort_unstable_by_key(|f| (f.uid, f.body.is_none()));
        fetched.dedup_by_key(|f| f.uid);
        report.vanished += (batch.len() - fetched.len()) as u64;
        let n = commit_batch(store, &mut names, folder_id, &name, fetched, &mut report)?;
        if n > 0 {
            report.batches += 1;
        }
        // The batch is durable (or was empty): the cursor may pass it.
        cursor = u64::from(batch.last().expect("a batch is never empty").0);
        state.cursor = cursor;
        store.set_folder_remote(folder_id, Some(state.clone()))?;
        start = end;
    }

    // Every UID below the EXAMINE's UIDNEXT was listed above (or expunged): the pass is
    // complete up to there.
    state.uidnext = u64::from(sel.uid_next.unwrap_or(0)).max(cursor + 1);
    state.highestmodseq = sel.highest_modseq.unwrap_or(0);
    if saved.as_ref() != Some(&state) {
        store.set_folder_remote(folder_id, Some(state.clone()))?;
    }
    report.state = state;
    Ok(report)
}

/// Stage and commit one fetched batch in one frame; the number of messages committed.
fn commit_batch(
    store: &Store,
    names: &mut MessageNames,
    folder_id: Id,
    folder_name: &str,
    fetched: Vec<Fetched>,
    report: &mut DownloadReport,
) -> Result<usize, DownloadError> {
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // A missing body is found before anything is staged, so that this error leaves no
    // file behind. (A store error while staging leaves the earlier ones to the next open,
    // which clears staging/, as for the import.)
    if let Some(f) = fetched.iter().find(|f| f.body.is_none()) {
        return Err(DownloadError::NoBody { folder: folder_name.to_string(), uid: f.uid });
    }
    let mut pending: HashSet<String> = HashSet::new();
    let mut msgs = Vec::with_capacity(fetched.len());
    for f in fetched {
        let body = f.body.expect("checked above");
        let props = mime::parse_props(&body);
        let name = {
            let ix = store.index();
            names.name(folder_id, &props, |c| pending.contains(c) || ix.lookup(folder_id, c).is_some())
        };
        // As the import does: the Date header's time, else (here) INTERNALDATE.
        let mtime = props.mtime_ns(f.internal_date).unwrap_or_else(now_ns);
        let (staged, crc) = store.stage_content(&body)?;
        pending.insert(name.clone());
        let (bits, keywords) = map_flags(&f.flags);
        report.bytes += body.len() as u64;
        msgs.push(SyncedMessage {
            message: NewMessage {
                folder: folder_id,
                name,
                staged,
                size: body.len() as u64,
                crc,
                attrs: Attrs { mode: libc::S_IFREG | 0o600, uid, gid, mtime },
                flags: bits,
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

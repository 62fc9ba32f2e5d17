//! The log's records: each change to the index is one of these, logged before it is
//! applied (see `index.rs` for how each applies, `log.rs` for their encoding).

use super::index::{Attrs, Id, Xattrs};
use super::inline::{Bytes, LogLoc};
use super::remote::{FolderRemote, MessageRemote, UploadIntent};

/// A logged change. Each operation logs one or two of these in one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The commit time (ns since the epoch) of the records after it, until the next `Time`.
    /// Every frame the committer writes starts with one, so that replay gives every ctime
    /// and every folder mtime the value the live apply gave (never the time of the replay).
    /// Records replayed with no time before them (logs of the previous format, and the
    /// frame `msgfs init` writes) take ctime from the mtime they carry and leave folder
    /// times alone, as that format did.
    Time {
        ns: i64,
    },
    /// A folder's entries changed without a record of its own naming it (the destination
    /// of a message renamed over another): its mtime and ctime become the commit time.
    FolderTouch {
        id: Id,
    },
    FolderCreate {
        id: Id,
        parent: Id,
        name: String,
        attrs: Attrs,
    },
    FolderMove {
        id: Id,
        parent: Id,
        name: String,
    },
    FolderDelete {
        id: Id,
    },
    FolderAttrs {
        id: Id,
        attrs: Attrs,
    },
    /// A new message, or a new version of one (content in object `id`-`version`).
    MessagePut {
        id: Id,
        folder: Id,
        name: String,
        version: u64,
        size: u64,
        crc: u32,
        attrs: Attrs,
        flags: u8,
        xattrs: Xattrs,
    },
    MessageMove {
        id: Id,
        folder: Id,
        name: String,
    },
    MessageDelete {
        id: Id,
    },
    MessageMeta {
        id: Id,
        attrs: Attrs,
        flags: u8,
        xattrs: Xattrs,
    },
    /// Set (Some) or clear (None) a folder's remote replica state (see `remote.rs`).
    FolderRemote {
        id: Id,
        state: Option<FolderRemote>,
    },
    /// Set (Some) or clear (None) a message's link to its remote copy. Logged right after
    /// the `MessagePut` of a download, in the same frame.
    MessageRemote {
        id: Id,
        link: Option<MessageRemote>,
    },
    /// A durable upload intent, kept until a link for its message lands or it is cleared.
    UploadIntent(UploadIntent),
    UploadIntentClear {
        message: Id,
    },
    /// Replace a message's keywords (beyond its flags); an empty list clears them.
    MessageKeywords {
        id: Id,
        keywords: Vec<String>,
    },
    /// The keywords a message had on both sides when last synced: the base of a three-way
    /// keyword merge (an empty list clears it). Goes with the message.
    SyncedKeywords {
        id: Id,
        keywords: Vec<String>,
    },
    /// Version `version` of message `id` lives in the log at `at` (see `inline.rs`): right
    /// after its `MessagePut`, or later to relocate it. `data` holds the bytes on their way
    /// to the log (None once read back); the committer fills `at` as it writes the frame.
    /// Applies only while `version` is the message's current one.
    Content {
        id: Id,
        version: u64,
        at: LogLoc,
        data: Option<Bytes>,
    },
}

impl Record {
    /// The store format that first had this record (see `open.rs`); 0 for the oldest ones.
    pub fn format_needed(&self) -> u32 {
        match self {
            Record::Content { .. } => 4,
            r if r.is_remote() => 3,
            _ => 0,
        }
    }

    /// Is it one of the replication records (format 3 of the store, see `open.rs`)?
    pub fn is_remote(&self) -> bool {
        matches!(
            self,
            Record::FolderRemote { .. }
                | Record::MessageRemote { .. }
                | Record::UploadIntent(_)
                | Record::UploadIntentClear { .. }
                | Record::MessageKeywords { .. }
                | Record::SyncedKeywords { .. }
        )
    }
}

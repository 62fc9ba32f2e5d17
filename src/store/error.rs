//! The store's error type: variants mirror MAPI and ESE results, never errno.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything a store operation can report. The FUSE adapter maps these to errno in one
/// exhaustive match (`fs::errno`), so a new variant cannot be forgotten there.
#[derive(Debug)]
pub enum Error {
    /// MAPI_E_OBJECT_CHANGED: another writer saved since this transaction's base version.
    ObjectChanged,
    /// MAPI_E_OBJECT_DELETED: the message was deleted since it was opened.
    ObjectDeleted,
    /// No folder or message by that id or name.
    NotFound,
    /// The name is already used in that folder.
    Exists,
    /// A folder that still holds messages or folders cannot be deleted.
    NotEmpty,
    /// The name is empty, `.`/`..`, contains `/` or NUL, or is longer than 255 bytes.
    InvalidName(String),
    /// The operation expected a folder but found a message, or the reverse.
    NotAFolder,
    IsAFolder,
    /// Moving a folder below itself.
    Cycle,
    /// MAPI_E_NO_ACCESS: the crash-recovery lock refuses reads and writes.
    NoAccess,
    /// A caller that is not allowed to (not the owner of a lock, CONTINUE after shutdown).
    NotPermitted,
    /// The store was opened read-only.
    ReadOnly,
    /// The store directory is held by another process.
    InUse {
        path: PathBuf,
        holder: String,
    },
    /// The store (or a source file) is damaged at the named place.
    Corrupt {
        place: String,
        what: String,
    },
    /// The store was written by a newer msgfs, in a format this one does not read: not
    /// damage, so it is never reported as such.
    TooNew(String),
    /// Snapshot: a call in the wrong state (OSSnapshotInvalidSequence).
    SnapshotSequence,
    /// Snapshot: a finished or unknown session id (OSSnapshotInvalidSnapId).
    SnapshotInvalidId,
    /// Snapshot: the freeze outlived its timeout (OSSnapshotTimeOut).
    SnapshotTimedOut,
    /// Snapshot: another session is already frozen (OSSnapshotNotAllowed), or the crash
    /// lock found the store inconsistent.
    Busy,
    /// A bad argument (InvalidParameter / InvalidGrbit).
    InvalidArgument(String),
    /// No user xattr by that name (ENODATA).
    NoAttribute,
    /// An I/O error from the backing filesystem (ENOSPC among them), with what was being done.
    Io {
        context: String,
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }
    pub fn corrupt(place: impl Into<String>, what: impl Into<String>) -> Error {
        Error::Corrupt { place: place.into(), what: what.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ObjectChanged => {
                f.write_str("the message was changed by another writer since it was opened (MAPI_E_OBJECT_CHANGED)")
            }
            Error::ObjectDeleted => f.write_str("the message was deleted since it was opened (MAPI_E_OBJECT_DELETED)"),
            Error::NotFound => f.write_str("no such folder or message"),
            Error::Exists => f.write_str("that name is already used in the folder"),
            Error::NotEmpty => f.write_str("the folder is not empty"),
            Error::InvalidName(n) => write!(f, "invalid name {n:?}"),
            Error::NotAFolder => f.write_str("not a folder"),
            Error::IsAFolder => f.write_str("is a folder"),
            Error::Cycle => f.write_str("a folder cannot be moved below itself"),
            Error::NoAccess => f.write_str("the store is locked by crash recovery (MAPI_E_NO_ACCESS)"),
            Error::NotPermitted => f.write_str("operation not permitted"),
            Error::ReadOnly => f.write_str("the store is open read-only"),
            Error::InUse { path, holder } => {
                write!(f, "store {} is in use by {holder}; stop that process (or unmount it) first", path.display())
            }
            Error::Corrupt { place, what } => write!(f, "damaged store: {place}: {what}"),
            Error::TooNew(w) => f.write_str(w),
            Error::SnapshotSequence => f.write_str("snapshot call in the wrong state (OSSnapshotInvalidSequence)"),
            Error::SnapshotInvalidId => f.write_str("unknown or finished snapshot session (OSSnapshotInvalidSnapId)"),
            Error::SnapshotTimedOut => {
                f.write_str("the freeze timed out and the store thawed by itself (OSSnapshotTimeOut)")
            }
            Error::Busy => f.write_str("busy (OSSnapshotNotAllowed, or the store is not in a consistent state)"),
            Error::InvalidArgument(w) => write!(f, "invalid argument: {w}"),
            Error::NoAttribute => f.write_str("no such attribute"),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

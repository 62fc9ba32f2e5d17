//! The one mapping from store errors to errno. Exhaustive, with no catch-all arm, so a new
//! store error cannot be forgotten here.

use fuser::Errno;

use crate::store::Error;

/// An error a filesystem request ends with: a store error, or an errno decided here.
#[derive(Debug)]
pub enum FsError {
    Store(Error),
    Errno(Errno),
}

impl From<Error> for FsError {
    fn from(e: Error) -> FsError {
        FsError::Store(e)
    }
}

pub type FsResult<T> = std::result::Result<T, FsError>;

pub fn errno_of(e: &Error) -> Errno {
    match e {
        Error::ObjectChanged => Errno::EBUSY,
        Error::ObjectDeleted => Errno::ENOENT,
        Error::NotFound => Errno::ENOENT,
        Error::Exists => Errno::EEXIST,
        Error::NotEmpty => Errno::ENOTEMPTY,
        Error::InvalidName(n) if n.len() > 255 => Errno::ENAMETOOLONG,
        Error::InvalidName(_) => Errno::EINVAL,
        Error::NotAFolder => Errno::ENOTDIR,
        Error::IsAFolder => Errno::EISDIR,
        Error::Cycle => Errno::EINVAL,
        Error::NoAccess => Errno::EACCES,
        Error::NotPermitted => Errno::EPERM,
        Error::ReadOnly => Errno::EROFS,
        Error::InUse { .. } => Errno::EBUSY,
        Error::Corrupt { .. } => Errno::EIO,
        Error::TooNew(_) => Errno::EPROTONOSUPPORT,
        Error::SnapshotSequence => Errno::EPROTO,
        Error::SnapshotInvalidId => Errno::ENOENT,
        Error::SnapshotTimedOut => Errno::ETIMEDOUT,
        Error::Busy => Errno::EBUSY,
        Error::InvalidArgument(_) => Errno::EINVAL,
        Error::NoAttribute => Errno::ENODATA,
        Error::Io { source, .. } => match source.raw_os_error() {
            Some(code) => Errno::from_i32(code),
            None => Errno::EIO,
        },
    }
}

impl FsError {
    pub fn errno(&self) -> Errno {
        match self {
            FsError::Store(e) => errno_of(e),
            FsError::Errno(e) => *e,
        }
    }
}

/// Shorthand for an errno decided by the FUSE layer.
pub fn err<T>(e: Errno) -> FsResult<T> {
    Err(FsError::Errno(e))
}

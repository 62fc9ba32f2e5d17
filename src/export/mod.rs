//! Export a folder tree of the store as Maildir++ ([`maildir`]) or as mbox files
//! ([`mbox`]), so that importing the result gives back every message byte for byte, in
//! the same folders, under the same names.
//!
//! Messages are written in entry id order, which is the order they were imported or
//! created in: re-importing them in that order hands out the same ` (2)` suffixes.
//! Existing files are never overwritten: a clash is an error naming the file.

pub mod maildir;
pub mod mbox;

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::{self, Child, Id, Store};

/// What can stop an export.
#[derive(Debug)]
pub enum Error {
    /// Reading the store failed.
    Store(store::Error),
    /// Writing the destination failed.
    Write { path: PathBuf, source: io::Error },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Store(e) => write!(f, "reading the store: {e}"),
            Error::Write { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Store(e) => Some(e),
            Error::Write { source, .. } => Some(source),
        }
    }
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Error {
        Error::Store(e)
    }
}

/// Attach the path to an I/O error.
pub(crate) fn at<T>(path: &Path, r: io::Result<T>) -> Result<T, Error> {
    r.map_err(|source| Error::Write { path: path.to_path_buf(), source })
}

/// What an export wrote.
#[derive(Debug, Default)]
pub struct Report {
    pub folders: u64,
    pub messages: u64,
    pub bytes: u64,
    /// Messages that could not be read, as `folder/name` and the reason; the rest of the
    /// export went on. (A read-only opener does not pin objects: a message saved again
    /// by a mounted daemon after the export opened the store can lose its old content.)
    pub unreadable: Vec<(String, String)>,
}

impl Report {
    /// The content of message `m` in folder `rel`, or None (recorded) if it cannot be read.
    pub(crate) fn read(&mut self, store: &Store, rel: &[String], m: &MessagePlan) -> Option<Vec<u8>> {
        // A header-only message is not the message: written out, it would pass for one.
        let header_only = m.flags & crate::store::flags::HEADER_ONLY != 0;
        let res = if header_only {
            Err(crate::store::Error::InvalidArgument(
                "only its header has been downloaded; run `msgfs sync` to fetch the body".into(),
            ))
        } else {
            store.read_message(m.id)
        };
        match res {
            Ok(c) => {
                self.messages += 1;
                self.bytes += c.len() as u64;
                Some(c)
            }
            Err(e) => {
                let mut path = rel.join("/");
                if !path.is_empty() {
                    path.push('/');
                }
                path.push_str(&m.name);
                self.unreadable.push((path, e.to_string()));
                None
            }
        }
    }
}

/// One message to write.
#[derive(Clone, Debug)]
pub struct MessagePlan {
    pub id: Id,
    pub name: String,
    pub flags: u8,
    /// Nanoseconds since the epoch.
    pub mtime: i64,
}

/// One folder to write: its path below the exported folder and its messages by id.
#[derive(Clone, Debug)]
pub struct FolderPlan {
    pub rel: Vec<String>,
    pub messages: Vec<MessagePlan>,
}

/// The folders at and below `top`, parents before children, siblings by name. Taken
/// under one index lock, so the export is of one consistent moment.
pub fn plan(store: &Store, top: Id) -> Result<Vec<FolderPlan>, Error> {
    let ix = store.index();
    ix.folder(top)?;
    let mut out = Vec::new();
    let mut stack = vec![(top, Vec::<String>::new())];
    while let Some((id, rel)) = stack.pop() {
        let mut messages = Vec::new();
        let mut subs = Vec::new();
        for (name, child) in ix.children(id)? {
            match child {
                Child::Message(id, m) => {
                    messages.push(MessagePlan { id, name: name.to_string(), flags: m.flags(), mtime: m.attrs().mtime })
                }
                Child::Folder(id) => subs.push((id, name.to_string())),
            }
        }
        messages.sort_by_key(|m| m.id);
        // Reversed onto the stack so siblings come off it in name order.
        for (child, name) in subs.into_iter().rev() {
            let mut r = rel.clone();
            r.push(name);
            stack.push((child, r));
        }
        out.push(FolderPlan { rel, messages });
    }
    Ok(out)
}

/// A file's mtime from nanoseconds since the epoch.
pub(crate) fn system_time(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

/// Create a file that must not exist yet.
pub(crate) fn create_new(path: &Path) -> Result<File, Error> {
    at(path, File::options().write(true).create_new(true).open(path))
}

/// Create a directory and its parents.
pub(crate) fn mkdirs(path: &Path) -> Result<(), Error> {
    at(path, fs::create_dir_all(path))
}

/// Export folder `top` and everything below it to `dest` as a Maildir++ tree.
pub fn export_maildir(store: &Store, top: Id, dest: &Path) -> Result<Report, Error> {
    maildir::export(store, &plan(store, top)?, dest)
}

/// Export folder `top` and everything below it to the directory `dest` as mbox files.
pub fn export_mbox(store: &Store, top: Id, dest: &Path) -> Result<Report, Error> {
    let name = if top == store::ROOT { None } else { Some(store.index().folder(top)?.name().to_string()) };
    mbox::export(store, &plan(store, top)?, name.as_deref(), dest)
}

/// Make everything written below `dest` durable with one syncfs.
pub(crate) fn sync_tree(dest: &Path) -> Result<(), Error> {
    use std::os::fd::AsRawFd;
    let dir = at(dest, File::open(dest))?;
    // SAFETY: syncfs only reads the descriptor, which `dir` keeps open for the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return at(dest, Err(io::Error::last_os_error()));
    }
    Ok(())
}

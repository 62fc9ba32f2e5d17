//! The view trait: what a mounted filesystem answers, in our own types (inode numbers,
//! [`Attr`], listings, [`FsError`](super::errno::FsError)), so that one adapter (`fuse.rs`)
//! does everything else once: decoding, attribute conversion, the TTL, errno replies and
//! their logging, init and the session. The store (`store_view.rs`) and a
//! PST file (`crate::pst::view`) are the two views.
//!
//! Every request takes `done`, called once with its result, at once or later from another
//! thread (the store's committer, the PST reader's thread): no request waits on a FUSE
//! thread.
//!
//! The requests that change something have defaults answering `EROFS`, so a read-only view
//! implements the five it needs (lookup, getattr, opendir/readdir, open, read) and release;
//! one whose content never changes also says so ([`View::opens`]), and the kernel then
//! skips its opens of files and folders.

use std::ffi::OsStr;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fuser::Errno;

use super::errno::{err, FsResult};
use crate::store::{AttrChange, Attrs};

/// How long the kernel may keep entries and attributes, for every view.
///
/// The store: every change made through the mount invalidates what it affects, and nothing
/// else changes the store (the daemon holds its lock), so this only bounds the damage of a
/// missed case. An hour, not a minute: with a minute, reading a large folder that takes
/// longer than that (100,000 messages with `xargs cat`) sent a LOOKUP before every OPEN
/// once the entries expired, doubling the daemon's work per file; a plain filesystem never
/// revalidates at all. A PST file is read-only: nothing there ever changes.
pub const TTL: Duration = Duration::from_secs(3600);

/// How long the kernel may remember that a name does not exist, on a mount whose store
/// can change (see [`View::negative_ttl`]). A name created or renamed through the mount
/// replaces the kernel's negative entry at once; names the daemon adds on its own (a sync
/// pass, a conflict copy, recovered drafts) are expired where they are added. This bound
/// is for a missed case: short, yet long enough for the checks a copying tool makes just
/// before it creates a file (`cp` stats the name twice, then opens it with O_CREAT|O_EXCL:
/// three LOOKUPs of a name that does not exist, one with this).
pub const NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// Attributes of one inode, as the kernel is told them.
#[derive(Clone, Copy, Debug)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    /// Mode (permission bits; the file type comes from `dir`), owner and mtime.
    pub attrs: Attrs,
    /// Status change time (ns), kept by the store; a file not yet saved has its mtime.
    pub ctime: i64,
    pub dir: bool,
    pub nlink: u32,
}

/// Who sent a request.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// An opened file: its handle and how the kernel is to treat its pages.
#[derive(Clone, Copy, Debug)]
pub struct Opened {
    pub fh: u64,
    /// Bypass the page cache (writers, and readers of a version that is no longer current).
    pub direct_io: bool,
    /// Keep the pages cached from earlier opens: the content cannot have changed.
    pub keep_cache: bool,
    /// Nothing to save at close: the kernel need not send FLUSH.
    pub noflush: bool,
}

/// One entry of a folder listing, as `opendir` took it.
#[derive(Clone, Debug)]
pub struct DirEnt<K> {
    pub ino: u64,
    pub name: String,
    pub dir: bool,
    /// What the view needs to give the entry's attributes later ([`View::entry_attr`]).
    pub key: K,
}

/// A folder's entries (`.` and `..` first), shared by the readdir calls of one opendir.
pub type Listing<K> = Arc<Vec<DirEnt<K>>>;

/// The figures statfs reports.
#[derive(Clone, Copy, Debug)]
pub struct Statfs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub frsize: u32,
}

/// Where a request's result goes: called once, from whichever thread finishes the request.
pub trait Answer<T>: FnOnce(FsResult<T>) + Send + 'static {}
impl<T, F: FnOnce(FsResult<T>) + Send + 'static> Answer<T> for F {}

/// A mounted filesystem as the adapter sees it. Inode 1 is the root. Errors are
/// [`FsError`](super::errno::FsError)s: the adapter maps them to errno through the one
/// mapping (`errno.rs`) and logs them in one place.
pub trait View: Send + Sync + 'static {
    /// What a listing entry keeps for [`View::entry_attr`].
    type Key: Copy + Send + Sync + 'static;

    /// Whether listings carry attributes (READDIRPLUS): worth it when attributes are cheap,
    /// not when they cost a message's conversion.
    const READDIRPLUS: bool = false;

    /// The session is up (not serving yet): `fuse` is its /dev/fuse descriptor, for
    /// notifications.
    fn mounted(&self, _mountpoint: &Path, _fuse: BorrowedFd<'_>) -> std::io::Result<()> {
        Ok(())
    }

    /// The session ended; the last thing before the mount's `serve` returns.
    fn unmounted(&self) -> std::io::Result<()> {
        Ok(())
    }

    /// The kernel let go of the connection (FUSE DESTROY, or the session's end).
    fn destroy(&self) {}

    /// Resolve `name` in folder `parent`: the attributes and how long the kernel may keep
    /// them. The name is as the kernel sent it: the view decides, after its own checks,
    /// what a name it cannot hold means.
    fn lookup(&self, parent: u64, name: &OsStr, done: impl Answer<(Attr, Duration)>);

    /// How long the kernel may keep a name the view answered ENOENT as not existing
    /// (a negative entry); zero: it asks again at every use.
    fn negative_ttl(&self) -> Duration {
        Duration::ZERO
    }

    /// The kernel dropped `n` references to `ino`.
    fn forget(&self, _ino: u64, _n: u64) {}

    /// Attributes of `ino` (through handle `fh`, when the kernel gives one).
    fn getattr(&self, ino: u64, fh: Option<u64>, caller: Caller, done: impl Answer<(Attr, Duration)>);

    /// Snapshot the folder's entries for the readdir calls that follow; answers the handle.
    /// Never called when [`View::opens`] is false.
    fn opendir(&self, ino: u64, done: impl Answer<u64>);

    /// Folder `ino`'s entries for one readdir call: the snapshot `opendir` took for handle
    /// `fh`, or with no handle (the kernel opened nothing, see [`View::opens`]) the entries
    /// as they are, which then never change, so every call of one listing sees the same.
    fn readdir(&self, ino: u64, fh: Option<u64>, done: impl Answer<Listing<Self::Key>>);

    /// Attributes of a listed entry, for READDIRPLUS (the kernel then holds a reference to
    /// it, as after a lookup); None leaves the entry out (the kernel looks it up instead).
    fn entry_attr(&self, _e: &DirEnt<Self::Key>) -> Option<(Attr, Duration)> {
        None
    }

    fn releasedir(&self, fh: u64);

    /// Whether the kernel must tell the view of every open and last close. A view that
    /// keeps nothing per open file or folder, because nothing in it can change (a read-only
    /// mount), answers false: the adapter then lets the kernel skip OPEN, FLUSH, RELEASE,
    /// OPENDIR and RELEASEDIR for the whole connection (FUSE's no_open and no_opendir: the
    /// first OPEN and OPENDIR are answered ENOSYS), the kernel keeps a file's pages and a
    /// folder's entries cached from one open to the next, and READ and READDIR come without
    /// a handle, to be answered from the inode alone. Asked at each request, so it must not
    /// change while mounted.
    fn opens(&self) -> bool {
        true
    }

    /// Open `ino` with open(2) `flags`. Never called when [`View::opens`] is false.
    fn open(&self, ino: u64, flags: i32, caller: Caller, done: impl Answer<Opened>);

    /// Up to `size` bytes at `offset` of inode `ino` (fewer only at the end), through handle
    /// `fh`, or with none when the kernel opened nothing (see [`View::opens`]).
    fn read(
        &self,
        ino: u64,
        fh: Option<u64>,
        offset: u64,
        size: u32,
        done: impl FnOnce(FsResult<&[u8]>) + Send + 'static,
    );

    /// The last close of handle `fh`. Always succeeds, as close(2) cannot fail here.
    fn release(&self, fh: u64, done: impl Answer<()>);

    /// A close of a descriptor of `fh` (there may be others) by descriptor table `owner`.
    fn flush(&self, _fh: u64, _owner: u64, done: impl Answer<()>) {
        done(Ok(()))
    }

    fn fsync(&self, _fh: u64, done: impl Answer<()>) {
        done(Ok(()))
    }

    /// FSYNCDIR: a view's folder changes are durable when they return (a read-only view
    /// has none); a store mounted with lazy commit waits for its log sync.
    fn fsyncdir(&self, done: impl Answer<()>) {
        done(Ok(()))
    }

    fn statfs(&self, done: impl Answer<Statfs>) {
        done(Ok(Statfs { blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, bsize: 512, frsize: 0 }))
    }

    /// chmod, chown, utimens, truncate (`size`).
    fn setattr(
        &self,
        _ino: u64,
        _fh: Option<u64>,
        _caller: Caller,
        _change: AttrChange,
        _size: Option<u64>,
        done: impl Answer<(Attr, Duration)>,
    ) {
        done(err(Errno::EROFS))
    }

    /// `owner`: the writer's descriptor table (lock owner), when the kernel names it.
    fn write(
        &self,
        _fh: u64,
        _offset: u64,
        _data: &[u8],
        _kill_suid: bool,
        _owner: Option<u64>,
        done: impl Answer<u32>,
    ) {
        done(err(Errno::EROFS))
    }

    /// Create and open a file; `mode` has the umask applied. Answers its attributes (never
    /// cached: it has a writer) and its handle.
    fn create(
        &self,
        _parent: u64,
        _name: &str,
        _mode: u32,
        _flags: i32,
        _caller: Caller,
        done: impl Answer<(Attr, Opened)>,
    ) {
        done(err(Errno::EROFS))
    }

    /// `mode` has the umask applied. A new folder's attributes are kept for [`TTL`].
    fn mkdir(&self, _parent: u64, _name: &str, _mode: u32, _caller: Caller, done: impl Answer<Attr>) {
        done(err(Errno::EROFS))
    }

    fn unlink(&self, _parent: u64, _name: &str, done: impl Answer<()>) {
        done(err(Errno::EROFS))
    }

    fn rmdir(&self, _parent: u64, _name: &str, done: impl Answer<()>) {
        done(err(Errno::EROFS))
    }

    /// `flags`: renameat2's (RENAME_NOREPLACE, RENAME_EXCHANGE).
    fn rename(&self, _parent: u64, _name: &str, _newparent: u64, _newname: &str, _flags: u32, done: impl Answer<()>) {
        done(err(Errno::EROFS))
    }

    fn setxattr(&self, _ino: u64, _name: String, _value: Vec<u8>, _flags: i32, _caller: Caller, done: impl Answer<()>) {
        done(err(Errno::EROFS))
    }

    fn removexattr(&self, _ino: u64, _name: &str, done: impl Answer<()>) {
        done(err(Errno::EROFS))
    }

    /// The value of xattr `name`. ENOSYS tells the kernel the view has no xattrs at all,
    /// so that it stops asking.
    fn getxattr(&self, _ino: u64, _name: &str, done: impl Answer<Vec<u8>>) {
        done(err(Errno::ENOSYS))
    }

    /// The xattr names, each followed by a NUL.
    fn listxattr(&self, _ino: u64, done: impl Answer<Vec<u8>>) {
        done(err(Errno::ENOSYS))
    }

    /// An ioctl on handle `fh`: answers the bytes to copy out.
    fn ioctl(&self, _fh: u64, _cmd: u32, _input: &[u8], _caller: Caller, done: impl Answer<Vec<u8>>) {
        done(err(Errno::ENOTTY))
    }
}

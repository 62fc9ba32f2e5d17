//! The fuser adapter, the one `impl Filesystem` of msgfs: decode each request, call one
//! method of a [`View`], reply, or log and reply the error through [`answer`]. Attribute
//! conversion, errno replies, init and the session ([`serve`]) live here once, for every
//! view. No request waits on a FUSE thread: a view answers later, from another thread,
//! whatever must wait (see `view.rs`).

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    IoctlFlags, KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, SessionACL, TimeOrNow, WriteFlags,
};

use super::errno::{FsError, FsResult};
use super::view::{Answer, Attr, Caller, DirEnt, Listing, Opened, Statfs, View, TTL};
use super::{watchdog, MountConfig, Unmounter};
use crate::store::AttrChange;

/// The adapter over one view.
pub struct Adapter<V> {
    view: Arc<V>,
}

/// A reply that can carry an error.
pub trait ErrorReply: Send + 'static {
    fn error(self, e: Errno);
}

macro_rules! error_reply {
    ($($t:ty),*) => {
        $(impl ErrorReply for $t {
            fn error(self, e: Errno) {
                <$t>::error(self, e)
            }
        })*
    };
}
error_reply!(
    ReplyEmpty,
    ReplyEntry,
    ReplyAttr,
    ReplyCreate,
    ReplyIoctl,
    ReplyOpen,
    ReplyData,
    ReplyWrite,
    ReplyXattr,
    ReplyStatfs,
    ReplyDirectory,
    ReplyDirectoryPlus
);

/// The errno of a failed request, logged here (the one place request errors are logged):
/// the expected ones quietly, the rest loudly.
pub(super) fn logged(e: &FsError) -> Errno {
    let code = e.errno();
    if let FsError::Store(err) = e {
        match code {
            Errno::ENOENT | Errno::EEXIST | Errno::ENOTEMPTY | Errno::EBUSY | Errno::ENODATA | Errno::ENAMETOOLONG => {
                log::debug!("{err}")
            }
            _ => log::warn!("{err}"),
        }
    }
    code
}

/// Where a request's result goes: `ok` replies with the value, an error is logged and
/// replied. Called from whichever thread finishes the request.
fn answer<T, R: ErrorReply>(reply: R, ok: impl FnOnce(R, T) + Send + 'static) -> impl Answer<T> {
    move |r: FsResult<T>| match r {
        Ok(v) => ok(reply, v),
        Err(e) => reply.error(logged(&e)),
    }
}

/// The answer of a request that replies nothing but success.
fn empty(reply: ReplyEmpty) -> impl Answer<()> {
    answer(reply, |r: ReplyEmpty, ()| r.ok())
}

fn time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    let t = time(a.attrs.mtime);
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: time(a.ctime),
        crtime: t,
        kind: kind(a.dir),
        perm: (a.attrs.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.attrs.uid,
        gid: a.attrs.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// The attributes sent with a negative entry (the kernel reads none of them).
const NO_ATTR: Attr = Attr {
    ino: 0,
    size: 0,
    attrs: crate::store::Attrs { mode: 0, uid: 0, gid: 0, mtime: 0 },
    ctime: 0,
    dir: false,
    nlink: 0,
};

fn kind(dir: bool) -> FileType {
    if dir {
        FileType::Directory
    } else {
        FileType::RegularFile
    }
}

fn open_flags(o: &Opened) -> FopenFlags {
    let mut f = FopenFlags::empty();
    if o.direct_io {
        f |= FopenFlags::FOPEN_DIRECT_IO;
    }
    if o.keep_cache {
        f |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    if o.noflush {
        f |= FopenFlags::FOPEN_NOFLUSH;
    }
    f
}

fn ns_of(t: TimeOrNow) -> i64 {
    match t {
        TimeOrNow::Now => crate::store::commit::now_ns(),
        TimeOrNow::SpecificTime(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i64,
            Err(e) => -(e.duration().as_nanos() as i64),
        },
    }
}

fn caller(req: &Request) -> Caller {
    Caller { uid: req.uid(), gid: req.gid(), pid: req.pid() }
}

fn utf8(name: &OsStr) -> Result<String, Errno> {
    name.to_str().map(str::to_string).ok_or(Errno::EILSEQ)
}

fn reply_xattr(reply: ReplyXattr, size: u32, v: &[u8]) {
    if size == 0 {
        reply.size(v.len() as u32);
    } else if (size as usize) < v.len() {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(v);
    }
}

impl<V: View> Adapter<V> {
    /// Fill a READDIRPLUS reply from `offset` on: the entries with their attributes.
    fn add_plus(view: &V, mut reply: ReplyDirectoryPlus, ents: &[DirEnt<V::Key>], offset: u64) {
        for (i, e) in ents.iter().enumerate().skip(offset as usize) {
            if e.name == "." || e.name == ".." {
                let a = Attr {
                    ino: e.ino,
                    size: 4096,
                    attrs: crate::store::Attrs { mode: libc::S_IFDIR | 0o700, uid: 0, gid: 0, mtime: 0 },
                    ctime: 0,
                    dir: true,
                    nlink: 2,
                };
                // No attributes for these: the kernel takes no reference on them.
                if reply.add(INodeNo(e.ino), i as u64 + 1, &e.name, &Duration::ZERO, &file_attr(&a), Generation(0)) {
                    break;
                }
                continue;
            }
            let Some((a, ttl)) = view.entry_attr(e) else { continue };
            if reply.add(INodeNo(e.ino), i as u64 + 1, &e.name, &ttl, &file_attr(&a), Generation(0)) {
                // The entry did not fit: the kernel took no reference on it.
                view.forget(e.ino, 1);
                break;
            }
        }
        reply.ok();
    }
}

impl<V: View> Filesystem for Adapter<V> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // No FUSE_ATOMIC_O_TRUNC: with it the kernel zeroes the size and page cache of the
        // inode at open, under readers of the same version; a SETATTR lets us answer it.
        let mut want =
            InitFlags::FUSE_PARALLEL_DIROPS | InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP | InitFlags::FUSE_BIG_WRITES;
        if V::READDIRPLUS {
            want |= InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO;
        }
        if !self.view.opens() {
            // Says we know the kernel may skip opens; the skipping itself starts at the
            // first OPEN (OPENDIR) answered ENOSYS (see `open`, `opendir`).
            want |= InitFlags::FUSE_NO_OPEN_SUPPORT | InitFlags::FUSE_NO_OPENDIR_SUPPORT;
        }
        let _ = config.add_capabilities(want & config.capabilities());
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn destroy(&mut self) {
        self.view.destroy();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let negative = self.view.negative_ttl();
        let done = move |r: FsResult<(Attr, Duration)>| match r {
            Ok((a, ttl)) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
            // An entry with inode 0 is the kernel's ENOENT with a TTL: it keeps the name as
            // not existing for that long instead of asking again at its next use.
            Err(e) if logged(&e) == Errno::ENOENT && !negative.is_zero() => {
                reply.entry(&negative, &file_attr(&Attr { ino: 0, ..NO_ATTR }), Generation(0))
            }
            Err(e) => reply.error(logged(&e)),
        };
        self.view.lookup(parent.0, name, done);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.view.forget(ino.0, nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let done = answer(reply, |r: ReplyAttr, (a, ttl): (Attr, Duration)| r.attr(&ttl, &file_attr(&a)));
        self.view.getattr(ino.0, fh.map(|f| f.0), caller(req), done);
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change =
            AttrChange { mode, uid, gid, mtime: mtime.map(ns_of), flags: None, xattrs: vec![], keywords: None };
        let done = answer(reply, |r: ReplyAttr, (a, ttl): (Attr, Duration)| r.attr(&ttl, &file_attr(&a)));
        self.view.setattr(ino.0, fh.map(|f| f.0), caller(req), change, size, done);
    }

    // Devices, symlinks and hard links have no place in a view of messages.
    fn mknod(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _m: u32, _u: u32, _r: u32, reply: ReplyEntry) {
        reply.error(Errno::EPERM);
    }

    fn symlink(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _t: &std::path::Path, reply: ReplyEntry) {
        reply.error(Errno::EPERM);
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EPERM);
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let name = match utf8(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let done = answer(reply, |r: ReplyEntry, a: Attr| r.entry(&TTL, &file_attr(&a), Generation(0)));
        self.view.mkdir(parent.0, &name, mode & !umask, caller(req), done);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some(name) = name.to_str() else { return reply.error(Errno::ENOENT) };
        self.view.unlink(parent.0, name, empty(reply));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some(name) = name.to_str() else { return reply.error(Errno::ENOENT) };
        self.view.rmdir(parent.0, name, empty(reply));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let Some(name) = name.to_str() else { return reply.error(Errno::ENOENT) };
        let newname = match utf8(newname) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        self.view.rename(parent.0, name, newparent.0, &newname, flags.bits(), empty(reply));
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if !self.view.opens() {
            // ENOSYS to an OPEN is the kernel's no_open: this open succeeds, and from now on
            // the kernel opens without asking, sends no RELEASE, keeps pages cached across
            // opens (FOPEN_KEEP_CACHE), and READs carry handle 0. Only a mount that is
            // read-only at the kernel gets here, so this is never an open for writing.
            return reply.error(Errno::ENOSYS);
        }
        let done = answer(reply, |r: ReplyOpen, o: Opened| r.opened(FileHandle(o.fh), open_flags(&o)));
        self.view.open(ino.0, flags.0, caller(req), done);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // Handle 0 is the kernel's "not opened" (views number their handles from 1).
        let fh = (fh.0 != 0).then_some(fh.0);
        self.view.read(ino.0, fh, offset, size, move |r: FsResult<&[u8]>| match r {
            Ok(d) => reply.data(d),
            Err(e) => reply.error(logged(&e)),
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        wflags: WriteFlags,
        _flags: OpenFlags,
        lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let kill_suid = wflags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        let owner = lock.map(|l| l.0);
        self.view.write(fh.0, offset, data, kill_suid, owner, answer(reply, |r: ReplyWrite, n: u32| r.written(n)));
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, lock: LockOwner, reply: ReplyEmpty) {
        if !self.view.opens() {
            // Opened without asking, a file has no FOPEN_NOFLUSH: ENOSYS makes the kernel
            // stop sending FLUSH at every close (its no_flush).
            return reply.error(Errno::ENOSYS);
        }
        self.view.flush(fh.0, lock.0, empty(reply));
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.view.release(fh.0, empty(reply));
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.view.fsync(fh.0, empty(reply));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if !self.view.opens() {
            // As for `open`: the kernel's no_opendir. It then keeps each folder's entries
            // cached from one listing to the next (FOPEN_CACHE_DIR, FOPEN_KEEP_CACHE), and
            // READDIR carries handle 0.
            return reply.error(Errno::ENOSYS);
        }
        let done = answer(reply, |r: ReplyOpen, fh: u64| r.opened(FileHandle(fh), FopenFlags::empty()));
        self.view.opendir(ino.0, done);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, reply: ReplyDirectory) {
        let fh = (fh.0 != 0).then_some(fh.0);
        let done = answer(reply, move |mut reply: ReplyDirectory, ents: Listing<V::Key>| {
            for (i, e) in ents.iter().enumerate().skip(offset as usize) {
                if reply.add(INodeNo(e.ino), i as u64 + 1, kind(e.dir), &e.name) {
                    break;
                }
            }
            reply.ok();
        });
        self.view.readdir(ino.0, fh, done);
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, reply: ReplyDirectoryPlus) {
        let fh = (fh.0 != 0).then_some(fh.0);
        let view = self.view.clone();
        let done = answer(reply, move |reply: ReplyDirectoryPlus, ents: Listing<V::Key>| {
            Self::add_plus(&*view, reply, &ents, offset)
        });
        self.view.readdir(ino.0, fh, done);
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.view.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.view.fsyncdir(empty(reply));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let done = answer(reply, |r: ReplyStatfs, s: Statfs| {
            r.statfs(s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, 255, s.frsize)
        });
        self.view.statfs(done);
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let name = match utf8(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        self.view.setxattr(ino.0, name, value.to_vec(), flags, caller(req), empty(reply));
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let Some(name) = name.to_str() else { return reply.error(Errno::ENODATA) };
        self.view.getxattr(ino.0, name, answer(reply, move |r: ReplyXattr, v: Vec<u8>| reply_xattr(r, size, &v)));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.view.listxattr(ino.0, answer(reply, move |r: ReplyXattr, v: Vec<u8>| reply_xattr(r, size, &v)));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some(name) = name.to_str() else { return reply.error(Errno::ENODATA) };
        self.view.removexattr(ino.0, name, empty(reply));
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Mounted with default_permissions: the kernel checks modes itself.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let name = match utf8(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        // The entry and attributes of a file just created are kept for the TTL. Given with
        // none, they cost a GETATTR at the open's own permission check (default_permissions)
        // and another at the creator's first fstat, for attributes every process sees alike
        // until the first write (empty, as created); each WRITE drops the kernel's cached
        // size and times, and a writer's later GETATTRs are answered with no TTL. The first
        // save expires the name (it leads to the first version's inode then) and drops the
        // attributes, as for any save.
        let done = answer(reply, |r: ReplyCreate, (a, o): (Attr, Opened)| {
            r.created(&TTL, &file_attr(&a), Generation(0), FileHandle(o.fh), open_flags(&o))
        });
        self.view.create(parent.0, &name, mode & !umask, flags, caller(req), done);
    }

    fn ioctl(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        let done = answer(reply, |r: ReplyIoctl, out: Vec<u8>| r.ioctl(0, &out));
        self.view.ioctl(fh.0, cmd, in_data, caller(req), done);
    }

    fn fallocate(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _o: u64, _l: u64, _m: i32, reply: ReplyEmpty) {
        reply.error(Errno::EOPNOTSUPP);
    }
}

/// Mount `view` at `mountpoint` as `fsname` (the mount table's source: `msgfs:STORE`,
/// `msgfs-pst:FILE`) and serve it until it is unmounted: the one session setup of every
/// mount. `ready` is called once the mount is in place (with an unmounter for signal
/// handling).
pub fn serve<V: View>(
    view: Arc<V>,
    mountpoint: &Path,
    fsname: String,
    cfg: &MountConfig,
    ready: impl FnOnce(Unmounter),
) -> std::io::Result<()> {
    let mut config = fuser::Config::default();
    config.mount_options = vec![MountOption::FSName(fsname), MountOption::Subtype("msgfs".into())];
    if cfg.read_only {
        config.mount_options.push(MountOption::RO);
    }
    // The kernel checks every access against the stored mode, uid and gid.
    config.mount_options.push(MountOption::DefaultPermissions);
    if cfg.allow_other {
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(cfg.threads.max(1));
    config.clone_fd = true;
    let mut session = fuser::Session::new(Adapter { view: view.clone() }, mountpoint, &config)?;
    view.mounted(mountpoint, session.as_fd())?;
    // Holds the connection until the watchdog is gone, so that its number cannot go to
    // another mount meanwhile.
    let connection = session.as_fd().try_clone_to_owned()?;
    let watchdog = watchdog::Watchdog::start(mountpoint);
    ready(session.unmount_callable());
    let res = session.run();
    if let Some(w) = watchdog {
        w.stop();
    }
    drop(connection);
    view.unmounted()?;
    res
}

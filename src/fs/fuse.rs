//! The fuser adapter: decode each request, call one method of the logic in `ops.rs`, reply
//! or map the error. Requests that may wait on the committer (every change to the store)
//! run on the worker pool with their reply object, so no FUSE thread ever waits on a sync
//! or a freeze and reads go on meanwhile.

use std::ffi::OsStr;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    IoctlFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request,
    TimeOrNow, WriteFlags,
};

use super::errno::{FsError, FsResult};
use super::ops::{Attr, Inner};
use super::state::Handle;
use crate::control;
use crate::store::{AttrChange, SaveFlags};

type Job = Box<dyn FnOnce() + Send>;

/// Threads that run requests which may wait for the committer.
pub struct Pool {
    tx: Mutex<Sender<Job>>,
}

impl Pool {
    pub fn new(n: usize) -> Pool {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..n {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("msgfs-work-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock().unwrap().recv() {
                        Ok(j) => j,
                        Err(_) => return,
                    };
                    job();
                })
                .expect("spawn a worker thread");
        }
        Pool { tx: Mutex::new(tx) }
    }

    fn run(&self, job: impl FnOnce() + Send + 'static) {
        let _ = self.tx.lock().unwrap().send(Box::new(job));
    }
}

pub struct MsgFs {
    pub inner: Arc<Inner>,
    pool: Pool,
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
        kind: if a.dir { FileType::Directory } else { FileType::RegularFile },
        perm: (a.attrs.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.attrs.uid,
        gid: a.attrs.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
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

impl MsgFs {
    pub fn new(inner: Arc<Inner>, workers: usize) -> MsgFs {
        MsgFs { inner, pool: Pool::new(workers) }
    }

    fn errno(&self, e: &FsError) -> Errno {
        let code = e.errno(self.inner.read_only);
        if let FsError::Store(err) = e {
            // The one place request errors are logged: the unexpected ones loudly.
            match code {
                Errno::ENOENT | Errno::EEXIST | Errno::ENOTEMPTY | Errno::EBUSY | Errno::ENODATA => {
                    log::debug!("{err}")
                }
                _ => log::warn!("{err}"),
            }
        }
        code
    }

    /// While the crash-recovery lock is held, every read and write is refused with EACCES.
    fn locked(&self) -> bool {
        self.inner.store.crash_lock().is_some()
    }

    /// Run a change on the pool once the store is not frozen: while frozen, changes wait
    /// (parked with their reply, on worker threads) instead of failing.
    fn park_change<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> FsResult<T> + Send + 'static,
        reply: impl FnOnce(Result<T, Errno>) + Send + 'static,
    ) {
        self.park(
            move |fs| {
                fs.store.wait_unfrozen();
                if fs.store.crash_lock().is_some() {
                    return Err(FsError::Errno(Errno::EACCES));
                }
                f(fs)
            },
            reply,
        );
    }

    /// Run a control request on a thread of its own: it must not queue behind changes that
    /// wait for a thaw (the thaw itself may be this request).
    fn control<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> FsResult<T> + Send + 'static,
        reply: impl FnOnce(Result<T, Errno>) + Send + 'static,
    ) {
        let inner = self.inner.clone();
        let ro = inner.read_only;
        let _ = std::thread::Builder::new()
            .name("msgfs-control".into())
            .spawn(move || reply(f(&inner).map_err(|e| e.errno(ro))));
    }

    /// Run `f` on the pool and send its result with `reply`.
    fn park<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> FsResult<T> + Send + 'static,
        reply: impl FnOnce(Result<T, Errno>) + Send + 'static,
    ) {
        let inner = self.inner.clone();
        let ro = inner.read_only;
        self.pool.run(move || {
            let r = f(&inner).map_err(|e| {
                let code = e.errno(ro);
                if let FsError::Store(err) = &e {
                    if !matches!(code, Errno::ENOENT | Errno::EEXIST | Errno::ENOTEMPTY | Errno::EBUSY | Errno::ENODATA)
                    {
                        log::warn!("{err}");
                    }
                }
                code
            });
            reply(r)
        });
    }
}

fn utf8(name: &OsStr) -> Result<String, Errno> {
    name.to_str().map(str::to_string).ok_or(Errno::EILSEQ)
}

impl Filesystem for MsgFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // No FUSE_ATOMIC_O_TRUNC: with it the kernel zeroes the size and page cache of the
        // inode at open, under readers of the same version; a SETATTR lets us answer it.
        let want = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP
            | InitFlags::FUSE_BIG_WRITES;
        let _ = config.add_capabilities(want & config.capabilities());
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn destroy(&mut self) {
        self.inner.shutdown();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if self.locked() {
            return reply.error(Errno::EACCES);
        }
        let Some(name) = name.to_str() else { return reply.error(Errno::ENOENT) };
        match self.inner.lookup(parent.0, name) {
            Ok((a, ttl)) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(self.errno(&e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.inner.inodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        // The mount root stays reachable under the lock, for the control xattrs.
        if self.locked() && ino.0 != crate::store::ROOT {
            return reply.error(Errno::EACCES);
        }
        match self.inner.getattr(ino.0, fh.map(|f| f.0), req.pid()) {
            Ok((a, ttl)) => reply.attr(&ttl, &file_attr(&a)),
            Err(e) => reply.error(self.errno(&e)),
        }
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
        let change = AttrChange { mode, uid, gid, mtime: mtime.map(ns_of), flags: None, xattrs: vec![] };
        let pid = req.pid();
        self.park_change(
            move |fs| fs.setattr(ino.0, fh.map(|f| f.0), pid, change, size),
            move |r| match r {
                Ok((a, ttl)) => reply.attr(&ttl, &file_attr(&a)),
                Err(e) => reply.error(e),
            },
        );
    }

    fn mknod(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _m: u32, _u: u32, _r: u32, reply: ReplyEntry) {
        reply.error(Errno::EPERM);
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let name = match utf8(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (uid, gid) = (req.uid(), req.gid());
        self.park_change(
            move |fs| fs.mkdir(parent.0, &name, mode & !umask, uid, gid),
            move |r| match r {
                Ok(a) => reply.entry(&super::ops::TTL, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(e),
            },
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some(name) = name.to_str().map(str::to_string) else { return reply.error(Errno::ENOENT) };
        self.park_change(move |fs| fs.unlink(parent.0, &name), move |r| reply_empty(reply, r));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some(name) = name.to_str().map(str::to_string) else { return reply.error(Errno::ENOENT) };
        self.park_change(move |fs| fs.rmdir(parent.0, &name), move |r| reply_empty(reply, r));
    }

    fn symlink(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _t: &std::path::Path, reply: ReplyEntry) {
        reply.error(Errno::EPERM);
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
        let Some(name) = name.to_str().map(str::to_string) else { return reply.error(Errno::ENOENT) };
        let newname = match utf8(newname) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        self.park_change(
            move |fs| fs.rename(parent.0, &name, newparent.0, &newname, flags.bits()),
            move |r| reply_empty(reply, r),
        );
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EPERM);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if self.locked() {
            return reply.error(Errno::EACCES);
        }
        match self.inner.open(ino.0, flags.0, req.pid()) {
            Ok((fh, direct, reader)) => {
                let mut f = if direct { FopenFlags::FOPEN_DIRECT_IO } else { FopenFlags::FOPEN_KEEP_CACHE };
                if reader {
                    // A reader has nothing to save at close: spare the kernel the FLUSH.
                    f |= FopenFlags::FOPEN_NOFLUSH;
                }
                reply.opened(FileHandle(fh), f)
            }
            Err(e) => reply.error(self.errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if self.locked() {
            return reply.error(Errno::EACCES);
        }
        match self.inner.read(fh.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(self.errno(&e)),
        }
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
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if self.locked() {
            return reply.error(Errno::EACCES);
        }
        match self.inner.write(fh.0, offset, data, wflags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID)) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(self.errno(&e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _lock: LockOwner, reply: ReplyEmpty) {
        // Only writers have anything to save; the rest answer at once, without a thread hop.
        if !self.inner.is_writer(fh.0) {
            return reply.ok();
        }
        self.park(move |fs| fs.flush(fh.0), move |r| reply_empty(reply, r));
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
        if !self.inner.is_writer(fh.0) {
            self.inner.release(fh.0);
            return reply.ok();
        }
        self.park(
            move |fs| {
                // Anything written since the last FLUSH (through a shared mapping) is saved now.
                if let Err(e) = fs.flush(fh.0) {
                    log::warn!("saving a new file at its last close: {:?}", e.errno(fs.read_only));
                }
                fs.release(fh.0);
                Ok(())
            },
            move |r| reply_empty(reply, r),
        );
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.park(
            move |fs| match fs.handle(fh.0)? {
                Handle::Read(_) | Handle::Empty | Handle::Dir(_) => Ok(()),
                _ => fs.save(fh.0, SaveFlags(SaveFlags::KEEP_OPEN_READWRITE), false),
            },
            move |r| reply_empty(reply, r),
        );
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.locked() {
            return reply.error(Errno::EACCES);
        }
        match self.inner.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(self.errno(&e)),
        }
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if self.locked() {
            return reply.error(Errno::EACCES);
        }
        let Ok(Handle::Dir(ents)) = self.inner.handle(fh.0) else { return reply.error(Errno::EBADF) };
        for (i, e) in ents.iter().enumerate().skip(offset as usize) {
            let kind = if e.dir { FileType::Directory } else { FileType::RegularFile };
            if reply.add(INodeNo(e.ino), i as u64 + 1, kind, &e.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        if self.locked() {
            return reply.error(Errno::EACCES);
        }
        let Ok(Handle::Dir(ents)) = self.inner.handle(fh.0) else { return reply.error(Errno::EBADF) };
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
            let Some((a, ttl)) = self.inner.dirent_attr(e) else { continue };
            if reply.add(INodeNo(e.ino), i as u64 + 1, &e.name, &ttl, &file_attr(&a), Generation(0)) {
                // The entry did not fit: the kernel took no reference on it.
                self.inner.inodes.forget(e.ino, 1);
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.inner.handles.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Folder changes are durable when they return.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.inner.statfs() {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                255,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(self.errno(&e)),
        }
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
        let value = value.to_vec();
        if ino.0 == crate::store::ROOT && super::control::is_control_name(&name) {
            let (uid, pid) = (req.uid(), req.pid());
            return self.control(move |fs| fs.control_set(uid, pid, &name, &value), move |r| reply_empty(reply, r));
        }
        if self.locked() {
            return reply.error(Errno::EACCES);
        }
        self.park_change(move |fs| fs.setxattr(ino.0, &name, &value, flags), move |r| reply_empty(reply, r));
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let Some(name) = name.to_str() else { return reply.error(Errno::ENODATA) };
        if ino.0 == crate::store::ROOT && super::control::is_control_name(name) {
            return match self.inner.control_get(name) {
                Ok(v) => reply_xattr(reply, size, &v),
                Err(e) => reply.error(self.errno(&e)),
            };
        }
        if self.locked() {
            return reply.error(Errno::EACCES);
        }
        match self.inner.getxattr(ino.0, name) {
            Ok(v) => reply_xattr(reply, size, &v),
            Err(e) => reply.error(self.errno(&e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if self.locked() {
            return reply.error(Errno::EACCES);
        }
        match self.inner.listxattr(ino.0) {
            Ok(v) => reply_xattr(reply, size, &v),
            Err(e) => reply.error(self.errno(&e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some(name) = name.to_str().map(str::to_string) else { return reply.error(Errno::ENODATA) };
        self.park_change(move |fs| fs.removexattr(ino.0, &name), move |r| reply_empty(reply, r));
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
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
        if self.locked() {
            return reply.error(Errno::EACCES);
        }
        // Creating a file changes nothing on disk (a new message exists from its first save,
        // which waits for a thaw like every commit), so it does not wait for a freeze: a
        // waiting create would hold the kernel's lock on the directory and stall lookups there.
        let (uid, gid, pid) = (req.uid(), req.gid(), req.pid());
        self.park(
            move |fs| fs.create(parent.0, &name, mode & !umask, uid, gid, pid, flags),
            move |r| match r {
                Ok((a, fh, direct)) => {
                    let f = if direct { FopenFlags::FOPEN_DIRECT_IO } else { FopenFlags::empty() };
                    reply.created(&Duration::ZERO, &file_attr(&a), Generation(0), FileHandle(fh), f)
                }
                Err(e) => reply.error(e),
            },
        );
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
        match cmd {
            control::MSGFS_IOC_SAVECHANGES if self.locked() => reply.error(Errno::EACCES),
            control::MSGFS_IOC_SAVECHANGES => {
                let Some(bytes) = in_data.get(..4) else { return reply.error(Errno::EINVAL) };
                let flags = u32::from_ne_bytes(bytes.try_into().unwrap());
                self.park(
                    move |fs| {
                        if let Handle::Read(_) | Handle::Empty | Handle::Dir(_) = fs.handle(fh.0)? {
                            return Err(FsError::Errno(Errno::EBADF));
                        }
                        fs.save(fh.0, SaveFlags(flags), false)
                    },
                    move |r| match r {
                        Ok(()) => reply.ioctl(0, &[]),
                        Err(e) => reply.error(e),
                    },
                );
            }
            control::MSGFS_IOC_CRASH_RECOVERY => {
                let Some(b) = in_data.get(..8) else { return reply.error(Errno::EINVAL) };
                let flags = u32::from_ne_bytes(b[..4].try_into().unwrap());
                let holder = match u32::from_ne_bytes(b[4..8].try_into().unwrap()) {
                    0 => req.pid(),
                    p => p,
                };
                let uid = req.uid();
                self.control(
                    move |fs| fs.crash_recovery(uid, flags, holder),
                    move |r| match r {
                        Ok(()) => reply.ioctl(0, &[]),
                        Err(e) => reply.error(e),
                    },
                );
            }
            control::MSGFS_IOC_SNAPSHOT => {
                let Some(b) = in_data.get(..16) else { return reply.error(Errno::EINVAL) };
                let op = u32::from_ne_bytes(b[..4].try_into().unwrap());
                let id = u64::from_ne_bytes(b[8..16].try_into().unwrap());
                let uid = req.uid();
                self.control(
                    move |fs| fs.snapshot(uid, op, id),
                    move |r| match r {
                        Ok((id, state)) => {
                            let mut out = [0u8; 16];
                            out[..4].copy_from_slice(&op.to_ne_bytes());
                            out[4..8].copy_from_slice(&state.to_ne_bytes());
                            out[8..].copy_from_slice(&id.to_ne_bytes());
                            reply.ioctl(0, &out)
                        }
                        Err(e) => reply.error(e),
                    },
                );
            }
            _ => reply.error(Errno::ENOTTY),
        }
    }

    fn fallocate(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _o: u64, _l: u64, _m: i32, reply: ReplyEmpty) {
        reply.error(Errno::EOPNOTSUPP);
    }
}

fn reply_empty(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
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

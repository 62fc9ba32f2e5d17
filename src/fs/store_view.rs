//! The store as a [`View`]: the crash-recovery lock's gate on reads, the control interface
//! (xattrs on the root, ioctls) with control requests on threads of their own, saves at
//! fsync and close, and the mount's notifications. The logic is `StoreFs`'s (`store_fs.rs`
//! and beside it); this only routes each request there.

use std::ffi::OsStr;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use fuser::Errno;

use super::errno::{err, FsError, FsResult};
use super::fuse::logged;
use super::handles::Handle;
use super::inodes::InodeRef;
use super::notify::Notifier;
use super::parts::is_parts_ino;
use super::store_fs::StoreFs;
use super::view::{Answer, Attr, Caller, DirEnt, Listing, Opened, Statfs, View, NEGATIVE_TTL, TTL};
use crate::control;
use crate::store::{AttrChange, SaveFlags, ROOT};

pub struct StoreView {
    fs: Arc<StoreFs>,
    /// The thread that sends entry expiries (see `notify.rs`), while mounted.
    expiry_thread: Mutex<Option<JoinHandle<()>>>,
}

impl StoreView {
    pub fn new(fs: Arc<StoreFs>) -> StoreView {
        StoreView { fs, expiry_thread: Mutex::new(None) }
    }

    /// The crash-recovery lock's gate for reads, decided by the store.
    fn gate(&self) -> FsResult<()> {
        Ok(self.fs.store.check_access()?)
    }

    /// Run a control request on a thread of its own: it must not queue behind changes that
    /// wait for a thaw (the thaw itself may be this request).
    fn control<T: Send + 'static>(
        &self,
        f: impl FnOnce(&StoreFs) -> FsResult<T> + Send + 'static,
        done: impl Answer<T>,
    ) {
        let fs = self.fs.clone();
        let _ = std::thread::Builder::new().name("msgfs-control".into()).spawn(move || done(f(&fs)));
    }

    /// Is `fh` a handle with something to save (a writer, or a scratch file)?
    fn saves(&self, fh: u64) -> FsResult<bool> {
        Ok(!matches!(self.fs.handle(fh)?, Handle::Read(_) | Handle::Empty | Handle::Dir(_)))
    }
}

fn word(input: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(input[at..at + 4].try_into().unwrap())
}

impl View for StoreView {
    type Key = InodeRef;
    const READDIRPLUS: bool = true;

    fn mounted(&self, _mountpoint: &Path, fuse: BorrowedFd<'_>) -> std::io::Result<()> {
        // A duplicate of the session's descriptor for the notifications.
        let notifier = Arc::new(Notifier::new(fuse.try_clone_to_owned()?));
        let _ = self.fs.notifier.set(notifier.clone());
        let (tx, rx) = std::sync::mpsc::channel::<(u64, String)>();
        *self.fs.expiries.lock().unwrap() = Some(tx);
        let t = std::thread::Builder::new()
            .name("msgfs-expire".into())
            .spawn(move || rx.into_iter().for_each(|(parent, name)| notifier.expire_entry(parent, &name)))?;
        *self.expiry_thread.lock().unwrap() = Some(t);
        Ok(())
    }

    fn unmounted(&self) -> std::io::Result<()> {
        self.fs.expiries.lock().unwrap().take();
        if let Some(t) = self.expiry_thread.lock().unwrap().take() {
            let _ = t.join();
        }
        // Its threads hold pins: they end before the store closes.
        self.fs.prefetch.stop();
        self.fs.store.close().map_err(|e| {
            log::error!("closing the store: {e}");
            std::io::Error::other(e.to_string())
        })
    }

    fn destroy(&self) {
        self.fs.shutdown();
    }

    fn lookup(&self, parent: u64, name: &OsStr, done: impl Answer<(Attr, Duration)>) {
        done(self.gate().and_then(|()| {
            // The store holds no name that is not UTF-8.
            let name = name.to_str().ok_or(FsError::Errno(Errno::ENOENT))?;
            if is_parts_ino(parent) {
                return self.fs.parts_lookup(parent, name);
            }
            match self.fs.lookup(parent, name) {
                // Not in the folder: `NAME.eml.parts` of a message there (never listed).
                Err(e) if e.errno() == Errno::ENOENT => self.fs.parts_dir(parent, name).map_err(|_| e),
                r => r,
            }
        }))
    }

    fn negative_ttl(&self) -> Duration {
        // A read-only mount's store never changes while mounted (see `readonly.rs`).
        if self.fs.read_only {
            TTL
        } else {
            NEGATIVE_TTL
        }
    }

    fn forget(&self, ino: u64, n: u64) {
        if is_parts_ino(ino) {
            return self.fs.parts.forget(ino, n);
        }
        self.fs.inodes.forget(ino, n);
    }

    fn getattr(&self, ino: u64, fh: Option<u64>, caller: Caller, done: impl Answer<(Attr, Duration)>) {
        // The mount root stays reachable under the lock, for the control xattrs.
        if ino != ROOT {
            if let Err(e) = self.gate() {
                return done(Err(e));
            }
        }
        if is_parts_ino(ino) {
            return done(self.fs.parts_getattr(ino));
        }
        done(self.fs.getattr(ino, fh, caller.pid))
    }

    fn opendir(&self, ino: u64, done: impl Answer<u64>) {
        if is_parts_ino(ino) {
            // No handle (0): its READDIRs are answered from the inode, which never changes.
            return done(self.gate().and_then(|()| self.fs.parts_getattr(ino)).map(|_| 0));
        }
        done(self.gate().and_then(|()| self.fs.opendir(ino)))
    }

    fn readdir(&self, ino: u64, fh: Option<u64>, done: impl Answer<Listing<InodeRef>>) {
        done(self.gate().and_then(|()| match fh {
            _ if is_parts_ino(ino) => self.fs.parts_listing(ino),
            Some(fh) => match self.fs.handle(fh) {
                Ok(Handle::Dir(ents)) => Ok(ents),
                _ => err(Errno::EBADF),
            },
            None => self.fs.listing_unopened(ino),
        }))
    }

    fn entry_attr(&self, e: &DirEnt<InodeRef>) -> Option<(Attr, Duration)> {
        if is_parts_ino(e.ino) {
            return self.fs.parts_entry_attr(e.ino);
        }
        self.fs.dirent_attr(e)
    }

    fn releasedir(&self, fh: u64) {
        self.fs.handles.remove(&fh);
    }

    fn open(&self, ino: u64, flags: i32, caller: Caller, done: impl Answer<Opened>) {
        if is_parts_ino(ino) {
            if flags & libc::O_ACCMODE != libc::O_RDONLY {
                return done(err(Errno::EROFS));
            }
            // No handle (0): READs are answered from the inode, whose bytes never change.
            let opened = Opened { fh: 0, direct_io: false, keep_cache: true, noflush: true };
            return done(self.gate().and_then(|()| self.fs.parts_getattr(ino)).map(|_| opened));
        }
        done(self.gate().and_then(|()| self.fs.open(ino, flags, caller.pid)).map(|(fh, direct, reader)| Opened {
            fh,
            direct_io: direct,
            keep_cache: !direct,
            // A reader has nothing to save at close: spare the kernel the FLUSH.
            noflush: reader,
        }))
    }

    fn opens(&self) -> bool {
        // A read-only mount has no transactions: nothing to begin at open or save at close.
        !self.fs.read_only
    }

    fn read(
        &self,
        ino: u64,
        fh: Option<u64>,
        offset: u64,
        size: u32,
        done: impl FnOnce(FsResult<&[u8]>) + Send + 'static,
    ) {
        let r = self.gate().and_then(|()| match fh {
            _ if is_parts_ino(ino) => self.fs.parts_read(ino, offset, size),
            Some(fh) => self.fs.read(fh, offset, size),
            None => self.fs.read_inode(ino, offset, size),
        });
        match r {
            Ok(d) => done(Ok(&d)),
            Err(e) => done(Err(e)),
        }
    }

    fn release(&self, fh: u64, done: impl Answer<()>) {
        if !self.fs.is_writer(fh) {
            self.fs.release(fh);
            return done(Ok(()));
        }
        // Anything written since the last FLUSH (through a shared mapping) is saved now.
        let fs = self.fs.clone();
        self.fs.flush(
            fh,
            None,
            Box::new(move |r| {
                if let Err(e) = r {
                    log::warn!("saving at the last close: {:?}", logged(&e));
                }
                fs.release(fh);
                done(Ok(()))
            }),
        );
    }

    fn flush(&self, fh: u64, owner: u64, done: impl Answer<()>) {
        // Only writers have anything to save; the rest answer at once, without a thread hop.
        if !self.fs.is_writer(fh) {
            return done(Ok(()));
        }
        self.fs.flush(fh, Some(owner), Box::new(done));
    }

    fn fsync(&self, fh: u64, done: impl Answer<()>) {
        if fh == 0 {
            // A parts file or folder (see `open`): nothing to save.
            return done(Ok(()));
        }
        match self.saves(fh) {
            Err(e) => done(Err(e)),
            // Nothing to save through this descriptor, but a lazy close may have saved the
            // file: fsync means durable.
            Ok(false) => self.fs.sync_lazy(Box::new(done)),
            Ok(true) => self.fs.save(fh, SaveFlags(SaveFlags::KEEP_OPEN_READWRITE), false, Box::new(done)),
        }
    }

    fn fsyncdir(&self, done: impl Answer<()>) {
        self.fs.sync_lazy(Box::new(done))
    }

    fn statfs(&self, done: impl Answer<Statfs>) {
        done(self.fs.statfs().map(|s| Statfs {
            blocks: s.f_blocks,
            bfree: s.f_bfree,
            bavail: s.f_bavail,
            files: s.f_files,
            ffree: s.f_ffree,
            bsize: s.f_bsize as u32,
            frsize: s.f_frsize as u32,
        }))
    }

    fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        caller: Caller,
        change: AttrChange,
        size: Option<u64>,
        done: impl Answer<(Attr, Duration)>,
    ) {
        if is_parts_ino(ino) {
            return done(err(Errno::EROFS));
        }
        self.fs.setattr(ino, fh, caller.pid, change, size, Box::new(done));
    }

    fn write(&self, fh: u64, offset: u64, data: &[u8], kill_suid: bool, owner: Option<u64>, done: impl Answer<u32>) {
        done(self.gate().and_then(|()| self.fs.write(fh, offset, data, kill_suid, owner)))
    }

    fn create(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
        flags: i32,
        caller: Caller,
        done: impl Answer<(Attr, Opened)>,
    ) {
        if is_parts_ino(parent) {
            return done(err(Errno::EROFS));
        }
        // Creating a file changes nothing on disk (a new message exists from its first save,
        // which waits for a thaw like every commit), so it is answered at once, also during
        // a freeze: a waiting create would hold the kernel's lock on the directory and stall
        // lookups there.
        let r =
            self.gate().and_then(|()| self.fs.create(parent, name, mode, caller.uid, caller.gid, caller.pid, flags));
        done(r.map(|(a, fh, direct)| (a, Opened { fh, direct_io: direct, keep_cache: false, noflush: false })))
    }

    fn mkdir(&self, parent: u64, name: &str, mode: u32, caller: Caller, done: impl Answer<Attr>) {
        if is_parts_ino(parent) {
            return done(err(Errno::EROFS));
        }
        self.fs.mkdir(parent, name, mode, caller.uid, caller.gid, Box::new(done));
    }

    fn unlink(&self, parent: u64, name: &str, done: impl Answer<()>) {
        if is_parts_ino(parent) {
            return done(err(Errno::EROFS));
        }
        self.fs.unlink(parent, name, Box::new(done));
    }

    fn rmdir(&self, parent: u64, name: &str, done: impl Answer<()>) {
        if is_parts_ino(parent) {
            return done(err(Errno::EROFS));
        }
        self.fs.rmdir(parent, name, Box::new(done));
    }

    fn rename(&self, parent: u64, name: &str, newparent: u64, newname: &str, flags: u32, done: impl Answer<()>) {
        if is_parts_ino(parent) || is_parts_ino(newparent) {
            return done(err(Errno::EROFS));
        }
        self.fs.rename(parent, name, newparent, newname, flags, Box::new(done));
    }

    fn setxattr(&self, ino: u64, name: String, value: Vec<u8>, flags: i32, caller: Caller, done: impl Answer<()>) {
        if ino == ROOT && name == control::XATTR_SYNC {
            return done(self.fs.sync_start(caller.uid, &value));
        }
        if ino == ROOT && super::control::is_control_name(&name) {
            let (uid, pid) = (caller.uid, caller.pid);
            return self.control(move |fs| fs.control_set(uid, pid, &name, &value), done);
        }
        if is_parts_ino(ino) {
            return done(err(Errno::EROFS));
        }
        if let Err(e) = self.gate() {
            return done(Err(e));
        }
        self.fs.setxattr(ino, &name, &value, flags, Box::new(done));
    }

    fn removexattr(&self, ino: u64, name: &str, done: impl Answer<()>) {
        if is_parts_ino(ino) {
            return done(err(Errno::EROFS));
        }
        self.fs.removexattr(ino, name, Box::new(done));
    }

    fn getxattr(&self, ino: u64, name: &str, done: impl Answer<Vec<u8>>) {
        // The control xattrs answer under the lock too: its state is read there.
        if ino == ROOT && super::control::is_control_name(name) {
            return done(self.fs.control_get(name));
        }
        if is_parts_ino(ino) {
            return done(err(Errno::ENODATA));
        }
        done(self.gate().and_then(|()| self.fs.getxattr(ino, name)))
    }

    fn listxattr(&self, ino: u64, done: impl Answer<Vec<u8>>) {
        if is_parts_ino(ino) {
            return done(Ok(Vec::new()));
        }
        done(self.gate().and_then(|()| self.fs.listxattr(ino)))
    }

    fn ioctl(&self, fh: u64, cmd: u32, input: &[u8], caller: Caller, done: impl Answer<Vec<u8>>) {
        match cmd {
            control::MSGFS_IOC_SAVECHANGES => {
                if input.len() < 4 {
                    return done(err(Errno::EINVAL));
                }
                let flags = word(input, 0);
                match self.gate().and_then(|()| self.saves(fh)) {
                    Err(e) => done(Err(e)),
                    Ok(false) => done(err(Errno::EBADF)),
                    Ok(true) => {
                        let done = Box::new(move |r: FsResult<()>| done(r.map(|()| Vec::new())));
                        self.fs.save(fh, SaveFlags(flags), false, done)
                    }
                }
            }
            control::MSGFS_IOC_CRASH_RECOVERY => {
                if input.len() < 8 {
                    return done(err(Errno::EINVAL));
                }
                let flags = word(input, 0);
                let holder = match word(input, 4) {
                    0 => caller.pid,
                    p => p,
                };
                let uid = caller.uid;
                self.control(move |fs| fs.crash_recovery(uid, flags, holder).map(|()| Vec::new()), done);
            }
            control::MSGFS_IOC_SNAPSHOT => {
                if input.len() < 16 {
                    return done(err(Errno::EINVAL));
                }
                let op = word(input, 0);
                let id = u64::from_ne_bytes(input[8..16].try_into().unwrap());
                let uid = caller.uid;
                self.control(
                    move |fs| {
                        let (id, state) = fs.snapshot(uid, op, id)?;
                        let mut out = Vec::with_capacity(16);
                        out.extend_from_slice(&op.to_ne_bytes());
                        out.extend_from_slice(&state.to_ne_bytes());
                        out.extend_from_slice(&id.to_ne_bytes());
                        Ok(out)
                    },
                    done,
                );
            }
            _ => done(err(Errno::ENOTTY)),
        }
    }
}

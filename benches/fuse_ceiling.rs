//! The in-memory FUSE ceiling for benches/mount.sh: a minimal read-only filesystem that
//! serves a copy of a directory tree from memory, so that each msgfs figure can be read as a
//! fraction of what FUSE itself allows on this machine and kernel.
//!
//!     cargo build --release --example fuse_ceiling
//!     target/release/examples/fuse_ceiling [--no-open | --writable] SRC MOUNTPOINT
//!
//! It loads every file of SRC into memory, mounts (in the foreground; unmount with
//! `fusermount3 -u` or `umount`), and answers each request from memory on as many threads
//! as msgfs uses by default. The kernel is given what msgfs gives it: entries and
//! attributes cached for an hour, pages kept across opens (FOPEN_KEEP_CACHE), 1 MiB reads
//! ahead, READDIRPLUS. With `--no-open` OPEN and OPENDIR are answered ENOSYS, the kernel's
//! no_open (no OPEN/RELEASE requests at all), as msgfs does on `-o ro`; without it every
//! open reaches the daemon, as on a read-write msgfs mount. `--writable` also takes
//! mkdir, create, write, setattr, rename and unlink (in memory: nothing is durable), the
//! floor for copying files in (`cp -r`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

const TTL: Duration = Duration::from_secs(3600);

struct Node {
    attr: FileAttr,
    /// File bytes; empty for a directory.
    data: Vec<u8>,
    /// A directory's entries: (name, inode), sorted by name.
    children: Vec<(Box<[u8]>, u64)>,
}

struct Tree {
    nodes: Vec<Node>,
    /// (parent inode, name) -> inode.
    names: HashMap<(u64, Box<[u8]>), u64>,
}

struct Ceiling {
    /// One lock for all: readers share it, and a copy into the mount is one writer.
    tree: RwLock<Tree>,
    opens: bool,
    writable: bool,
}

impl Ceiling {
    fn load(src: &Path, opens: bool, writable: bool) -> std::io::Result<Ceiling> {
        let mut t = Tree { nodes: Vec::new(), names: HashMap::new() };
        // Inode 0 is unused; 1 is the root.
        t.nodes.push(Node { attr: attr(0, 0, true, 0), data: Vec::new(), children: Vec::new() });
        t.add(src, 1)?;
        Ok(Ceiling { tree: RwLock::new(t), opens, writable })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tree> {
        self.tree.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The tree to change, or EROFS on a mount that is not `--writable`.
    fn write(&self) -> Result<std::sync::RwLockWriteGuard<'_, Tree>, Errno> {
        if !self.writable {
            return Err(Errno::EROFS);
        }
        Ok(self.tree.write().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Tree {
    fn node(&self, ino: INodeNo) -> Option<&Node> {
        self.nodes.get(ino.0 as usize).filter(|_| ino.0 != 0)
    }

    fn node_mut(&mut self, ino: INodeNo) -> Option<&mut Node> {
        self.nodes.get_mut(ino.0 as usize).filter(|_| ino.0 != 0)
    }

    /// A new empty file or directory `name` in `parent`.
    fn make(&mut self, parent: INodeNo, name: &OsStr, dir: bool, mode: u32) -> Result<&FileAttr, Errno> {
        if !self.node(parent).is_some_and(|p| p.attr.kind == FileType::Directory) {
            return Err(Errno::ENOENT);
        }
        let key = (parent.0, Box::<[u8]>::from(name.as_bytes()));
        if self.names.contains_key(&key) {
            return Err(Errno::EEXIST);
        }
        let ino = self.nodes.len() as u64;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut a = attr(ino, if dir { 4096 } else { 0 }, dir, now);
        a.perm = (mode & 0o7777) as u16;
        self.nodes.push(Node { attr: a, data: Vec::new(), children: Vec::new() });
        self.nodes[parent.0 as usize].children.push((key.1.clone(), ino));
        self.names.insert(key, ino);
        Ok(&self.nodes[ino as usize].attr)
    }

    /// Takes `name` out of `parent`'s entries; its inode.
    fn take(&mut self, parent: INodeNo, name: &OsStr) -> Option<u64> {
        let ino = self.names.remove(&(parent.0, name.as_bytes().into()))?;
        self.nodes[parent.0 as usize].children.retain(|(_, c)| *c != ino);
        Some(ino)
    }

    /// Adds `path` as inode `ino` (the next free one), its subtree after it.
    fn add(&mut self, path: &Path, ino: u64) -> std::io::Result<()> {
        let meta = std::fs::metadata(path)?;
        let mtime = meta.modified()?.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        debug_assert_eq!(ino as usize, self.nodes.len());
        if meta.is_dir() {
            self.nodes.push(Node { attr: attr(ino, 4096, true, mtime), data: Vec::new(), children: Vec::new() });
            let mut entries: Vec<PathBuf> =
                std::fs::read_dir(path)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
            entries.sort();
            for e in entries {
                let child = self.nodes.len() as u64;
                let name: Box<[u8]> = e.file_name().expect("a listed entry has a name").as_bytes().into();
                self.add(&e, child)?;
                self.names.insert((ino, name.clone()), child);
                self.nodes[ino as usize].children.push((name, child));
            }
        } else {
            let data = std::fs::read(path)?;
            self.nodes.push(Node { attr: attr(ino, data.len() as u64, false, mtime), data, children: Vec::new() });
        }
        Ok(())
    }
}

fn time_of(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

fn attr(ino: u64, size: u64, dir: bool, mtime: u64) -> FileAttr {
    let t = UNIX_EPOCH + Duration::from_secs(mtime);
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: if dir { FileType::Directory } else { FileType::RegularFile },
        perm: if dir { 0o755 } else { 0o644 },
        nlink: if dir { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl Filesystem for Ceiling {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let mut want =
            InitFlags::FUSE_PARALLEL_DIROPS | InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO;
        if !self.opens {
            want |= InitFlags::FUSE_NO_OPEN_SUPPORT | InitFlags::FUSE_NO_OPENDIR_SUPPORT;
        }
        let _ = config.add_capabilities(want & config.capabilities());
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let t = self.read();
        match t.names.get(&(parent.0, name.as_bytes().into())) {
            Some(&ino) => reply.entry(&TTL, &t.nodes[ino as usize].attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.read().node(ino) {
            Some(n) => reply.attr(&TTL, &n.attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if !self.opens {
            return reply.error(Errno::ENOSYS);
        }
        match self.read().node(ino) {
            Some(_) => reply.opened(FileHandle(ino.0), FopenFlags::FOPEN_KEEP_CACHE),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if !self.opens {
            return reply.error(Errno::ENOSYS);
        }
        match self.read().node(ino) {
            Some(_) => reply.opened(FileHandle(ino.0), FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.read().node(ino) {
            Some(n) => {
                let start = (offset as usize).min(n.data.len());
                let end = (start + size as usize).min(n.data.len());
                reply.data(&n.data[start..end]);
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let t = self.read();
        let Some(n) = t.node(ino) else { return reply.error(Errno::ENOENT) };
        for (i, (name, child)) in n.children.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*child), i as u64 + 1, t.nodes[*child as usize].attr.kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let t = self.read();
        let Some(n) = t.node(ino) else { return reply.error(Errno::ENOENT) };
        for (i, (name, child)) in n.children.iter().enumerate().skip(offset as usize) {
            let a = &t.nodes[*child as usize].attr;
            if reply.add(INodeNo(*child), i as u64 + 1, OsStr::from_bytes(name), &TTL, a, Generation(0)) {
                break;
            }
        }
        reply.ok();
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        match self.write().and_then(|mut t| t.make(parent, name, true, mode & !umask).copied()) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.write().and_then(|mut t| t.make(parent, name, false, mode & !umask).copied()) {
            Ok(a) => reply.created(&TTL, &a, Generation(0), FileHandle(a.ino.0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _wflags: WriteFlags,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut t = match self.write() {
            Ok(t) => t,
            Err(e) => return reply.error(e),
        };
        let Some(n) = t.node_mut(ino) else { return reply.error(Errno::ENOENT) };
        let end = offset as usize + data.len();
        if n.data.len() < end {
            n.data.resize(end, 0);
        }
        n.data[offset as usize..end].copy_from_slice(data);
        n.attr.size = n.data.len() as u64;
        n.attr.blocks = n.attr.size.div_ceil(512);
        reply.written(data.len() as u32);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut t = match self.write() {
            Ok(t) => t,
            Err(e) => return reply.error(e),
        };
        let Some(n) = t.node_mut(ino) else { return reply.error(Errno::ENOENT) };
        if let Some(m) = mode {
            n.attr.perm = (m & 0o7777) as u16;
        }
        if let Some(s) = size {
            n.data.resize(s as usize, 0);
            n.attr.size = s;
            n.attr.blocks = s.div_ceil(512);
        }
        if let Some(a) = atime {
            n.attr.atime = time_of(a);
        }
        if let Some(m) = mtime {
            n.attr.mtime = time_of(m);
        }
        reply.attr(&TTL, &n.attr);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut t = match self.write() {
            Ok(t) => t,
            Err(e) => return reply.error(e),
        };
        let Some(ino) = t.take(parent, name) else { return reply.error(Errno::ENOENT) };
        // What the new name held is replaced (its node stays, unreachable: a benchmark's
        // lifetime is short).
        t.take(newparent, newname);
        let key: Box<[u8]> = newname.as_bytes().into();
        t.nodes[newparent.0 as usize].children.push((key.clone(), ino));
        t.names.insert((newparent.0, key), ino);
        reply.ok();
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.write() {
            Ok(mut t) => match t.take(parent, name) {
                Some(_) => reply.ok(),
                None => reply.error(Errno::ENOENT),
            },
            Err(e) => reply.error(e),
        }
    }

    // No `flush`: fuser answers ENOSYS, and the kernel then stops sending FLUSH at every
    // close (its no_flush), the least a filesystem can cost at close.

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok();
    }
}

fn main() -> std::io::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut flag = |f: &str| args.iter().position(|a| a == f).map(|i| args.remove(i)).is_some();
    let (opens, writable) = (!flag("--no-open"), flag("--writable"));
    let [src, mountpoint] = args.as_slice() else {
        eprintln!("usage: fuse_ceiling [--no-open | --writable] SRC MOUNTPOINT");
        std::process::exit(2);
    };
    if writable && !opens {
        eprintln!("fuse_ceiling: --writable needs OPEN (the kernel's no_open is for read-only mounts)");
        std::process::exit(2);
    }
    let fs = Ceiling::load(Path::new(src), opens, writable)?;
    eprintln!(
        "fuse_ceiling: {} inodes from {src} in memory; OPEN {}; {}",
        fs.read().nodes.len() - 1,
        if opens { "answered" } else { "ENOSYS" },
        if writable { "writable" } else { "read-only" }
    );
    let mut config = fuser::Config::default();
    config.mount_options = vec![MountOption::FSName("fuse_ceiling".into())];
    if !writable {
        config.mount_options.push(MountOption::RO);
    }
    // As many as msgfs's default: the CPUs, at most 4.
    config.n_threads = Some(std::thread::available_parallelism().map_or(1, |n| n.get()).min(4));
    config.clone_fd = true;
    fuser::Session::new(fs, Path::new(mountpoint), &config)?.run()
}

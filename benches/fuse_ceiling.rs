//! The in-memory FUSE ceiling for benches/mount.sh: a minimal read-only filesystem that
//! serves a copy of a directory tree from memory, so that each msgfs figure can be read as a
//! fraction of what FUSE itself allows on this machine and kernel.
//!
//!     cargo build --release --example fuse_ceiling
//!     target/release/examples/fuse_ceiling [--no-open] SRC MOUNTPOINT
//!
//! It loads every file of SRC into memory, mounts (in the foreground; unmount with
//! `fusermount3 -u` or `umount`), and answers each request from memory on as many threads
//! as msgfs uses by default. The kernel is given what msgfs gives it on a read-only mount:
//! entries and attributes cached for an hour, pages kept across opens (FOPEN_KEEP_CACHE),
//! 1 MiB reads ahead, READDIRPLUS. With `--no-open` OPEN and OPENDIR are answered ENOSYS,
//! the kernel's no_open (no OPEN/RELEASE requests at all), as msgfs does on `-o ro`;
//! without it every open reaches the daemon, as on a read-write msgfs mount.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEntry, ReplyOpen,
    Request,
};

const TTL: Duration = Duration::from_secs(3600);

struct Node {
    attr: FileAttr,
    /// File bytes; empty for a directory.
    data: Vec<u8>,
    /// A directory's entries: (name, inode), sorted by name.
    children: Vec<(Box<[u8]>, u64)>,
}

struct Ceiling {
    nodes: Vec<Node>,
    /// (parent inode, name) -> inode.
    names: HashMap<(u64, Box<[u8]>), u64>,
    opens: bool,
}

impl Ceiling {
    fn load(src: &Path, opens: bool) -> std::io::Result<Ceiling> {
        let mut fs = Ceiling { nodes: Vec::new(), names: HashMap::new(), opens };
        // Inode 0 is unused; 1 is the root.
        fs.nodes.push(Node { attr: attr(0, 0, true, 0), data: Vec::new(), children: Vec::new() });
        fs.add(src, 1)?;
        Ok(fs)
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

    fn node(&self, ino: INodeNo) -> Option<&Node> {
        self.nodes.get(ino.0 as usize).filter(|_| ino.0 != 0)
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
        match self.names.get(&(parent.0, name.as_bytes().into())) {
            Some(&ino) => reply.entry(&TTL, &self.nodes[ino as usize].attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.node(ino) {
            Some(n) => reply.attr(&TTL, &n.attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if !self.opens {
            return reply.error(Errno::ENOSYS);
        }
        match self.node(ino) {
            Some(_) => reply.opened(FileHandle(ino.0), FopenFlags::FOPEN_KEEP_CACHE),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if !self.opens {
            return reply.error(Errno::ENOSYS);
        }
        match self.node(ino) {
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
        match self.node(ino) {
            Some(n) => {
                let start = (offset as usize).min(n.data.len());
                let end = (start + size as usize).min(n.data.len());
                reply.data(&n.data[start..end]);
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let Some(n) = self.node(ino) else { return reply.error(Errno::ENOENT) };
        for (i, (name, child)) in n.children.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*child), i as u64 + 1, self.nodes[*child as usize].attr.kind, OsStr::from_bytes(name))
            {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let Some(n) = self.node(ino) else { return reply.error(Errno::ENOENT) };
        for (i, (name, child)) in n.children.iter().enumerate().skip(offset as usize) {
            let a = &self.nodes[*child as usize].attr;
            if reply.add(INodeNo(*child), i as u64 + 1, OsStr::from_bytes(name), &TTL, a, Generation(0)) {
                break;
            }
        }
        reply.ok();
    }
}

fn main() -> std::io::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let opens = match args.iter().position(|a| a == "--no-open") {
        Some(i) => {
            args.remove(i);
            false
        }
        None => true,
    };
    let [src, mountpoint] = args.as_slice() else {
        eprintln!("usage: fuse_ceiling [--no-open] SRC MOUNTPOINT");
        std::process::exit(2);
    };
    let fs = Ceiling::load(Path::new(src), opens)?;
    eprintln!(
        "fuse_ceiling: {} inodes from {src} in memory; OPEN {}",
        fs.nodes.len() - 1,
        if opens { "answered" } else { "ENOSYS" }
    );
    let mut config = fuser::Config::default();
    config.mount_options = vec![MountOption::FSName("fuse_ceiling".into()), MountOption::RO];
    // As many as msgfs's default: the CPUs, at most 4.
    config.n_threads = Some(std::thread::available_parallelism().map_or(1, |n| n.get()).min(4));
    config.clone_fd = true;
    fuser::Session::new(fs, Path::new(mountpoint), &config)?.run()
}

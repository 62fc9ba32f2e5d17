//! `msgfs mount FILE.pst MOUNTPOINT`: a PST file mounted read-only, without importing it.
//!
//! Opening is lazy: mounting reads the PST header and the top folder; a folder's
//! subfolders and messages are read when it is first looked into (a lookup or a listing
//! of it). Listing reads each message's envelope only (the properties its header block
//! is made from), which gives its name and date; a message is converted whole the first
//! time its size is asked for (a lookup or getattr: `ls -l`, `stat`, an open) and again at
//! open (the conversion is deterministic; the last conversion is kept for the open that
//! usually follows). Contents are held until the last descriptor closes. Names, bytes and
//! times are those `msgfs import` gives the same file in an empty store.
//!
//! The PST reader is single-threaded (`Rc`), so one worker thread owns it and every FUSE
//! request is forwarded there with its reply. The kernel refuses writes itself (the mount
//! is read-only: EROFS); the log says how to import instead.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, MountOption,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, Request, SessionACL,
};

use crate::mime;
use crate::pst::reader::Pst;

/// Everything is immutable: the kernel may cache entries and attributes for long.
const TTL: Duration = Duration::from_secs(3600);
const ROOT: u64 = 1;

/// Is `path` a PST file (by name or by its first bytes)? A directory never is (a store
/// may be called `mail.pst`); a missing `*.pst` is, so that mounting it says the file is
/// missing instead of creating a store of that name.
pub fn is_pst(path: &Path) -> bool {
    if path.is_dir() {
        return false;
    }
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("pst") || e.eq_ignore_ascii_case("ost")) {
        return true;
    }
    path.is_file() && crate::import::has_pst_magic(path)
}

/// A folder's entries in listing order, and by name.
#[derive(Default)]
struct Children {
    list: Vec<(String, u64)>,
    by_name: HashMap<String, u64>,
}

enum Kind {
    Folder {
        pst_node: u32,
        /// Its tables, when its parent's listing read them (for its name).
        listing: Option<crate::pst::reader::FolderListing>,
        /// Its entries once read.
        children: Option<Children>,
    },
    Message {
        pst_node: u32,
        /// Known once the message was converted.
        size: Option<u64>,
    },
}

struct Node {
    parent: u64,
    mtime: i64,
    kind: Kind,
}

/// The worker's state: the open PST and the part of its tree read so far.
struct Tree {
    pst: Pst,
    /// Inode `i` is `nodes[i - 1]`.
    nodes: Vec<Node>,
    open: HashMap<u64, Arc<Vec<u8>>>,
    /// The last message converted (inode, content): a lookup's conversion serves the open
    /// that follows it.
    last: Option<(u64, Arc<Vec<u8>>)>,
    next_fh: u64,
    uid: u32,
    gid: u32,
    mount_time: i64,
}

/// A request forwarded to the worker, with the reply to answer it.
enum Job {
    Lookup(u64, String, ReplyEntry),
    Getattr(u64, ReplyAttr),
    Readdir(u64, u64, ReplyDirectory),
    Open(u64, i32, ReplyOpen),
    Read(u64, u64, u32, ReplyData),
    Release(u64, ReplyEmpty),
}

impl Tree {
    fn node(&self, ino: u64) -> Result<&Node, Errno> {
        ino.checked_sub(1).and_then(|i| self.nodes.get(i as usize)).ok_or(Errno::ENOENT)
    }

    /// The content of message `ino`, converted (or the last conversion, if it is this
    /// message); records its size.
    fn content(&mut self, ino: u64) -> Result<Arc<Vec<u8>>, Errno> {
        if let Some((i, c)) = &self.last {
            if *i == ino {
                return Ok(c.clone());
            }
        }
        let Kind::Message { pst_node, size } = self.node(ino)?.kind else { return Err(Errno::EISDIR) };
        let c = crate::pst::convert(&self.pst, pst_node).map_err(|e| {
            log::error!("{}: message {pst_node:#x} cannot be read: {e}", self.pst.path().display());
            Errno::EIO
        })?;
        let len = c.content.len() as u64;
        if size.is_some_and(|s| s != len) {
            // The conversion is deterministic; a different size means the file changed
            // under the mount.
            log::error!("{}: message {pst_node:#x} changed size: was the PST modified?", self.pst.path().display());
            return Err(Errno::EIO);
        }
        if let Some(Node { kind: Kind::Message { size, .. }, .. }) = self.nodes.get_mut(ino as usize - 1) {
            *size = Some(len);
        }
        let content = Arc::new(c.content);
        self.last = Some((ino, content.clone()));
        Ok(content)
    }

    fn attr(&mut self, ino: u64) -> Result<FileAttr, Errno> {
        if let Kind::Message { size: None, .. } = self.node(ino)?.kind {
            self.content(ino)?;
        }
        let n = self.node(ino)?;
        let t = UNIX_EPOCH
            + Duration::from_secs(u64::try_from(n.mtime.div_euclid(1_000_000_000)).unwrap_or(0))
            + Duration::from_nanos(n.mtime.rem_euclid(1_000_000_000) as u64);
        let (kind, perm, size, nlink) = match n.kind {
            Kind::Folder { .. } => (FileType::Directory, 0o555, 4096, 2),
            Kind::Message { size, .. } => (FileType::RegularFile, 0o444, size.unwrap_or(0), 1),
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    /// The children of folder `ino`, reading the folder on first use. Names follow the
    /// import's rules: messages first, in the PST's order, named from their headers and made
    /// unique; then subfolders.
    fn children(&mut self, ino: u64) -> Result<&Children, Errno> {
        let (pst_node, listing) = match &mut self.nodes.get_mut(ino.wrapping_sub(1) as usize).ok_or(Errno::ENOENT)?.kind
        {
            Kind::Folder { children: Some(_), .. } => return Ok(self.listed(ino)),
            Kind::Folder { pst_node, listing, .. } => (*pst_node, listing.take()),
            Kind::Message { .. } => return Err(Errno::ENOTDIR),
        };
        let listing = match listing {
            Some(l) => l,
            None => self.pst.folder(pst_node).map_err(|e| {
                log::error!("{}: folder {pst_node:#x} cannot be read: {e}", self.pst.path().display());
                Errno::EIO
            })?,
        };
        let mut out = Children::default();
        let mut next_suffix: HashMap<String, u64> = HashMap::new();
        for &m in &listing.messages {
            let (props, fallback_mtime) = match crate::pst::envelope(&self.pst, m) {
                Ok(e) => e,
                Err(e) => {
                    log::warn!("{}: message {m:#x} cannot be read, left out: {e}", self.pst.path().display());
                    continue;
                }
            };
            // The import's naming: `Importer::add`.
            let wanted = mime::import_name(&props);
            let first = next_suffix.get(&wanted).copied().unwrap_or(2);
            let (name, n) = mime::unique_name_from(&wanted, first, |c| out.by_name.contains_key(c));
            if n > 1 {
                next_suffix.insert(wanted, n + 1);
            }
            let mtime = props.mtime_ns(fallback_mtime).unwrap_or(self.mount_time);
            self.nodes.push(Node { parent: ino, mtime, kind: Kind::Message { pst_node: m, size: None } });
            out.by_name.insert(name.clone(), self.nodes.len() as u64);
            out.list.push((name, self.nodes.len() as u64));
        }
        // A damaged file can list a folder twice or make a folder its own descendant: skip
        // the folders on the way up from here, or `find` would descend for ever.
        let mut seen: HashSet<u32> = HashSet::new();
        let mut up = ino;
        while let Ok(Node { kind: Kind::Folder { pst_node, .. }, parent, .. }) = self.node(up) {
            seen.insert(*pst_node);
            if up == ROOT {
                break;
            }
            up = *parent;
        }
        for &f in &listing.subfolders {
            if !seen.insert(f) {
                log::warn!("{}: folder {f:#x} appears twice in the tree, shown once", self.pst.path().display());
                continue;
            }
            let sub = match self.pst.folder(f) {
                Ok(l) => l,
                Err(e) => {
                    log::warn!("{}: folder {f:#x} cannot be read, left out: {e}", self.pst.path().display());
                    continue;
                }
            };
            // The import's naming of PST folders (src/import/pst.rs).
            let name = mime::unique_name(&sub.name, |c| out.by_name.contains_key(c));
            self.nodes.push(Node {
                parent: ino,
                mtime: self.mount_time,
                kind: Kind::Folder { pst_node: f, listing: Some(sub), children: None },
            });
            out.by_name.insert(name.clone(), self.nodes.len() as u64);
            out.list.push((name, self.nodes.len() as u64));
        }
        if let Some(Node { kind: Kind::Folder { children, .. }, .. }) = self.nodes.get_mut(ino as usize - 1) {
            *children = Some(out);
        }
        Ok(self.listed(ino))
    }

    fn listed(&self, ino: u64) -> &Children {
        static EMPTY: std::sync::OnceLock<Children> = std::sync::OnceLock::new();
        match &self.nodes[ino as usize - 1].kind {
            Kind::Folder { children: Some(c), .. } => c,
            _ => EMPTY.get_or_init(Children::default),
        }
    }

    fn lookup(&mut self, parent: u64, name: &str) -> Result<FileAttr, Errno> {
        let ino = *self.children(parent)?.by_name.get(name).ok_or(Errno::ENOENT)?;
        self.attr(ino)
    }

    fn open(&mut self, ino: u64, flags: i32) -> Result<u64, Errno> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return Err(Errno::EROFS);
        }
        let content = self.content(ino)?;
        self.next_fh += 1;
        self.open.insert(self.next_fh, content);
        Ok(self.next_fh)
    }

    fn run(&mut self, job: Job) {
        match job {
            Job::Lookup(parent, name, reply) => match self.lookup(parent, &name) {
                Ok(a) => reply.entry(&TTL, &a, Generation(0)),
                Err(e) => reply.error(e),
            },
            Job::Getattr(ino, reply) => match self.attr(ino) {
                Ok(a) => reply.attr(&TTL, &a),
                Err(e) => reply.error(e),
            },
            Job::Readdir(ino, offset, mut reply) => {
                let parent = match self.node(ino) {
                    Ok(n) => n.parent,
                    Err(e) => return reply.error(e),
                };
                if let Err(e) = self.children(ino) {
                    return reply.error(e);
                }
                // By reference: a large folder is read in many calls, each from `offset`.
                let dots = [(".".to_string(), ino), ("..".to_string(), parent)];
                let all = dots.iter().chain(self.listed(ino).list.iter());
                for (i, (name, child)) in all.enumerate().skip(offset as usize) {
                    let kind = match self.node(*child).map(|n| &n.kind) {
                        Ok(Kind::Message { .. }) => FileType::RegularFile,
                        _ => FileType::Directory,
                    };
                    if reply.add(INodeNo(*child), i as u64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Job::Open(ino, flags, reply) => match self.open(ino, flags) {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
                Err(e) => reply.error(e),
            },
            Job::Read(fh, offset, size, reply) => match self.open.get(&fh) {
                Some(data) => {
                    let start = (offset as usize).min(data.len());
                    let end = start.saturating_add(size as usize).min(data.len());
                    reply.data(&data[start..end]);
                }
                None => reply.error(Errno::EBADF),
            },
            Job::Release(fh, reply) => {
                self.open.remove(&fh);
                reply.ok();
            }
        }
    }
}

/// The FUSE side: forwards each request to the worker.
struct PstFs {
    jobs: Mutex<Sender<Job>>,
}

impl PstFs {
    fn send(&self, job: Job) {
        // The worker lives as long as the session; if it is gone the reply is dropped,
        // which answers EIO.
        let _ = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).send(job);
    }
}

impl Filesystem for PstFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name.to_str() else { return reply.error(Errno::ENOENT) };
        self.send(Job::Lookup(parent.0, name.to_string(), reply));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.send(Job::Getattr(ino.0, reply));
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, reply: ReplyDirectory) {
        self.send(Job::Readdir(ino.0, offset, reply));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.send(Job::Open(ino.0, flags.0, reply));
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
        self.send(Job::Read(fh.0, offset, size, reply));
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
        self.send(Job::Release(fh.0, reply));
    }
}

/// The worker thread: open the PST (reporting the result on `opened`), then serve jobs
/// until the session ends.
fn worker(path: &Path, jobs: Receiver<Job>, opened: Sender<Result<(), String>>) {
    let pst = match Pst::open(path) {
        Ok(p) => p,
        Err(e) => {
            let _ = opened.send(Err(format!("{}: {e}", path.display())));
            return;
        }
    };
    let root = match pst.root() {
        Ok(r) => r,
        Err(e) => {
            let _ = opened.send(Err(format!("{}: the folder tree cannot be read: {e}", path.display())));
            return;
        }
    };
    let mount_time = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    // SAFETY: getuid/getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut tree = Tree {
        pst,
        nodes: vec![Node {
            parent: ROOT,
            mtime: mount_time,
            kind: Kind::Folder { pst_node: root, listing: None, children: None },
        }],
        open: HashMap::new(),
        last: None,
        next_fh: 0,
        uid,
        gid,
        mount_time,
    };
    let _ = opened.send(Ok(()));
    for job in jobs {
        tree.run(job);
    }
}

/// Mount the PST at `path` read-only at `mountpoint` and serve it until unmounted.
/// `ready` is called once the mount is in place.
pub fn serve(
    path: &Path,
    mountpoint: &Path,
    allow_other: bool,
    ready: impl FnOnce(fuser::SessionUnmounter),
) -> std::io::Result<()> {
    let (tx, rx) = channel();
    let (opened_tx, opened_rx) = channel();
    let p = path.to_path_buf();
    // A large stack: see crate::pst::STACK_SIZE.
    let worker = std::thread::Builder::new()
        .name("msgfs-pst".into())
        .stack_size(crate::pst::STACK_SIZE)
        .spawn(move || worker(&p, rx, opened_tx))?;
    match opened_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(std::io::Error::other(e)),
        Err(_) => return Err(std::io::Error::other(format!("{}: the PST reader stopped", path.display()))),
    }
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("msgfs-pst:{}", path.display())),
        MountOption::Subtype("msgfs".into()),
        MountOption::RO,
        MountOption::DefaultPermissions,
    ];
    if allow_other {
        config.acl = SessionACL::All;
    }
    let session = fuser::Session::new(PstFs { jobs: Mutex::new(tx) }, mountpoint, &config)?;
    log::warn!(
        "{} is mounted read-only at {}; to change its messages, import it: msgfs import {}",
        path.display(),
        mountpoint.display(),
        path.display()
    );
    let mut session = session;
    ready(session.unmount_callable());
    let res = session.run();
    // The session (and the job sender in it) is gone: the worker's loop ends.
    let _ = worker.join();
    res
}

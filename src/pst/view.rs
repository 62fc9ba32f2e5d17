//! `msgfs mount FILE.pst MOUNTPOINT`: a PST file as a read-only [`View`], without importing
//! it; served by the same adapter and session as a store (`crate::fs::serve_view`).
//!
//! Opening is lazy: mounting reads the PST header and the top folder; a folder's
//! subfolders and messages are read when it is first looked into (a lookup or a listing
//! of it). Listing reads each message's envelope only (the properties its header block
//! is made from), which gives its name and date; a message is converted whole the first
//! time its size is asked for (a lookup or getattr: `ls -l`, `stat`, an open) and again at
//! its first read (the conversion is deterministic; the last conversion is kept for the read
//! that usually follows). Nothing in a PST mount changes, so the kernel opens files without
//! asking (`View::opens`) and keeps their pages across opens; READs come by inode, and the
//! last contents read are kept for the READs that follow (`Recent`). Names, bytes and
//! times are those `msgfs import` gives the same file in an empty store: the names come
//! from the import's own rules (`import::MessageNames`, `import::pst::folder_name`).
//!
//! The PST reader is single-threaded (`Rc`), so one thread owns it (`Reader`) and the
//! requests that need it (lookup, getattr, opendir, a read of a message not kept) are sent
//! there with their answer; listings and the reads of kept contents are served on the FUSE
//! threads. The kernel refuses writes itself (the mount is read-only: EROFS); the log says
//! how to import instead.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use fuser::Errno;

use super::reader::{FolderListing, Pst};
use crate::fs::errno::{err, FsError, FsResult};
use crate::fs::parts::{is_parts_ino, parts_stem, Messages, Parts};
use crate::fs::view::{Answer, Attr, Caller, DirEnt, Listing, Opened, View, TTL};
use crate::fs::{MountConfig, Unmounter};
use crate::import::pst::folder_name;
use crate::import::MessageNames;
use crate::store::Attrs;

const ROOT: u64 = 1;

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
        listing: Option<FolderListing>,
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

/// The reader thread's state: the open PST and the part of its tree read so far.
struct Reader {
    pst: Pst,
    /// Inode `i` is `nodes[i - 1]`.
    nodes: Vec<Node>,
    /// The last message converted (inode, content): a lookup's conversion serves the open
    /// that follows it.
    last: Option<(u64, Arc<Vec<u8>>)>,
    uid: u32,
    gid: u32,
    mount_time: i64,
}

/// A request for the reader's thread, with its answer inside.
type Job = Box<dyn FnOnce(&mut Reader) + Send>;

/// A folder's inode and its listing.
type Listed = (u64, Listing<()>);

/// An open message's content, or a folder's listing.
enum Handle {
    File(Arc<Vec<u8>>),
    Dir(Listing<()>),
}

/// The open handles, shared by the FUSE threads (which read them) and the reader's (which
/// adds them).
#[derive(Default)]
struct Handles {
    map: DashMap<u64, Handle>,
    next: AtomicU64,
}

impl Handles {
    fn add(&self, h: Handle) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.map.insert(fh, h);
        fh
    }
}

/// A PST file, open, as a view.
pub struct PstView {
    path: PathBuf,
    /// To the reader's thread; taken at unmount, which ends it.
    jobs: Mutex<Option<Sender<Job>>>,
    reader: Mutex<Option<JoinHandle<()>>>,
    handles: Arc<Handles>,
    /// Contents read without a handle, kept for the READs that follow.
    recent: Arc<Recent>,
    /// The folder listed last without a handle, kept for the READDIRs that follow.
    last_listing: Arc<Mutex<Option<Listed>>>,
    /// The messages' `.parts` folders (see `crate::fs::parts`), served on the reader's
    /// thread, which has the messages' contents.
    parts: Arc<Parts<u64>>,
}

impl Reader {
    fn node(&self, ino: u64) -> FsResult<&Node> {
        ino.checked_sub(1).and_then(|i| self.nodes.get(i as usize)).ok_or(FsError::Errno(Errno::ENOENT))
    }

    /// The content of message `ino`, converted (or the last conversion, if it is this
    /// message); records its size.
    fn content(&mut self, ino: u64) -> FsResult<Arc<Vec<u8>>> {
        if let Some((i, c)) = &self.last {
            if *i == ino {
                return Ok(c.clone());
            }
        }
        let Kind::Message { pst_node, size } = self.node(ino)?.kind else { return err(Errno::EISDIR) };
        let c = crate::pst::convert(&self.pst, pst_node).map_err(|e| {
            log::error!("{}: message {pst_node:#x} cannot be read: {e}", self.pst.path().display());
            FsError::Errno(Errno::EIO)
        })?;
        let len = c.content.len() as u64;
        if size.is_some_and(|s| s != len) {
            // The conversion is deterministic; a different size means the file changed
            // under the mount.
            log::error!("{}: message {pst_node:#x} changed size: was the PST modified?", self.pst.path().display());
            return err(Errno::EIO);
        }
        if let Some(Node { kind: Kind::Message { size, .. }, .. }) = self.nodes.get_mut(ino as usize - 1) {
            *size = Some(len);
        }
        let content = Arc::new(c.content);
        self.last = Some((ino, content.clone()));
        Ok(content)
    }

    fn attr(&mut self, ino: u64) -> FsResult<Attr> {
        if let Kind::Message { size: None, .. } = self.node(ino)?.kind {
            self.content(ino)?;
        }
        let n = self.node(ino)?;
        let (dir, mode, size, nlink) = match n.kind {
            Kind::Folder { .. } => (true, libc::S_IFDIR | 0o555, 4096, 2),
            Kind::Message { size, .. } => (false, libc::S_IFREG | 0o444, size.unwrap_or(0), 1),
        };
        let attrs = Attrs { mode, uid: self.uid, gid: self.gid, mtime: n.mtime };
        Ok(Attr { ino, size, attrs, ctime: n.mtime, dir, nlink })
    }

    /// The children of folder `ino`, reading the folder on first use. Named as the import
    /// names them: messages first, in the PST's order, then subfolders.
    fn children(&mut self, ino: u64) -> FsResult<&Children> {
        let node = self.nodes.get_mut(ino.wrapping_sub(1) as usize);
        let (pst_node, listing) = match &mut node.ok_or(FsError::Errno(Errno::ENOENT))?.kind {
            Kind::Folder { children: Some(_), .. } => return Ok(self.listed(ino)),
            Kind::Folder { pst_node, listing, .. } => (*pst_node, listing.take()),
            Kind::Message { .. } => return err(Errno::ENOTDIR),
        };
        let listing = match listing {
            Some(l) => l,
            None => self.pst.folder(pst_node).map_err(|e| {
                log::error!("{}: folder {pst_node:#x} cannot be read: {e}", self.pst.path().display());
                FsError::Errno(Errno::EIO)
            })?,
        };
        let mut out = Children::default();
        let mut names = MessageNames::default();
        for &m in &listing.messages {
            let (props, fallback_mtime) = match crate::pst::envelope(&self.pst, m) {
                Ok(e) => e,
                Err(e) => {
                    log::warn!("{}: message {m:#x} cannot be read, left out: {e}", self.pst.path().display());
                    continue;
                }
            };
            let name = names.name(ino, &props, |c| out.by_name.contains_key(c));
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
            let name = folder_name(&sub.name, |c| out.by_name.contains_key(c));
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

    fn lookup(&mut self, parent: u64, name: &str, parts: &Parts<u64>) -> FsResult<Attr> {
        if is_parts_ino(parent) {
            return parts.lookup(parent, name, self);
        }
        let children = self.children(parent)?;
        if let Some(&ino) = children.by_name.get(name) {
            return self.attr(ino);
        }
        // Not in the folder: `NAME.eml.parts` of a message there (never listed).
        let message = parts_stem(name).and_then(|stem| children.by_name.get(stem)).copied();
        match message {
            Some(ino) if matches!(self.node(ino)?.kind, Kind::Message { .. }) => {
                let owner = self.attr(ino)?.attrs;
                parts.message_dir(ino, parent, owner, self)
            }
            _ => err(Errno::ENOENT),
        }
    }

    /// Folder `ino`'s entries, `.` and `..` first.
    fn listing(&mut self, ino: u64) -> FsResult<Listing<()>> {
        let parent = self.node(ino)?.parent;
        self.children(ino)?;
        let children = &self.listed(ino).list;
        let mut out = Vec::with_capacity(children.len() + 2);
        out.push(DirEnt { ino, name: ".".into(), dir: true, key: () });
        out.push(DirEnt { ino: parent, name: "..".into(), dir: true, key: () });
        for (name, child) in children {
            let dir = matches!(self.nodes[*child as usize - 1].kind, Kind::Folder { .. });
            out.push(DirEnt { ino: *child, name: name.clone(), dir, key: () });
        }
        Ok(Arc::new(out))
    }
}

/// A message's parts are those of its conversion, which is deterministic.
impl Messages<u64> for Reader {
    fn content(&mut self, ino: u64) -> FsResult<Arc<Vec<u8>>> {
        Reader::content(self, ino)
    }

    fn check(&mut self, _ino: u64) -> FsResult<()> {
        // Nothing in a PST mount goes away.
        Ok(())
    }
}

/// The reader's thread: open the PST (reporting the result on `opened`), then run jobs
/// until the view lets go of their sender.
fn run_reader(path: &Path, jobs: Receiver<Job>, opened: Sender<Result<(), String>>) {
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
    let mut reader = Reader {
        pst,
        nodes: vec![Node {
            parent: ROOT,
            mtime: mount_time,
            kind: Kind::Folder { pst_node: root, listing: None, children: None },
        }],
        last: None,
        uid,
        gid,
        mount_time,
    };
    let _ = opened.send(Ok(()));
    for job in jobs {
        job(&mut reader);
    }
}

impl PstView {
    /// Open the PST at `path` on a reader thread of its own; fails if it cannot be read.
    pub fn open(path: &Path) -> std::io::Result<PstView> {
        let (tx, rx) = channel();
        let (opened_tx, opened_rx) = channel();
        let p = path.to_path_buf();
        // A large stack: see crate::pst::STACK_SIZE.
        let reader = std::thread::Builder::new()
            .name("msgfs-pst".into())
            .stack_size(crate::pst::STACK_SIZE)
            .spawn(move || run_reader(&p, rx, opened_tx))?;
        match opened_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(std::io::Error::other(e)),
            Err(_) => return Err(std::io::Error::other(format!("{}: the PST reader stopped", path.display()))),
        }
        Ok(PstView {
            path: path.to_path_buf(),
            jobs: Mutex::new(Some(tx)),
            reader: Mutex::new(Some(reader)),
            handles: Arc::default(),
            recent: Arc::default(),
            last_listing: Arc::default(),
            parts: Arc::default(),
        })
    }

    /// Run `job` on the reader's thread. Once the reader is gone (after unmount, or a panic
    /// there) the job is dropped with its answer, whose reply then says EIO.
    fn on_reader(&self, job: impl FnOnce(&mut Reader) + Send + 'static) {
        if let Some(tx) = &*self.jobs.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = tx.send(Box::new(job));
        }
    }
}

impl View for PstView {
    type Key = ();

    fn mounted(&self, mountpoint: &Path, _fuse: BorrowedFd<'_>) -> std::io::Result<()> {
        log::warn!(
            "{} is mounted read-only at {}; to change its messages, import it: msgfs import {}",
            self.path.display(),
            mountpoint.display(),
            self.path.display()
        );
        Ok(())
    }

    fn unmounted(&self) -> std::io::Result<()> {
        // Without a sender the reader's loop ends.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.reader.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        Ok(())
    }

    fn negative_ttl(&self) -> Duration {
        // A PST file is read-only: a name missing now is missing for as long as it is mounted.
        TTL
    }

    fn lookup(&self, parent: u64, name: &OsStr, done: impl Answer<(Attr, Duration)>) {
        let Some(name) = name.to_str().map(str::to_string) else { return done(err(Errno::ENOENT)) };
        let parts = self.parts.clone();
        self.on_reader(move |r| done(r.lookup(parent, &name, &parts).map(|a| (a, TTL))));
    }

    fn forget(&self, ino: u64, n: u64) {
        // The PST's own inodes live as long as the mount.
        if is_parts_ino(ino) {
            self.parts.forget(ino, n);
        }
    }

    fn getattr(&self, ino: u64, _fh: Option<u64>, _caller: Caller, done: impl Answer<(Attr, Duration)>) {
        if is_parts_ino(ino) {
            let parts = self.parts.clone();
            return self.on_reader(move |r| done(parts.getattr(ino, r).map(|a| (a, TTL))));
        }
        self.on_reader(move |r| done(r.attr(ino).map(|a| (a, TTL))));
    }

    fn opendir(&self, ino: u64, done: impl Answer<u64>) {
        let handles = self.handles.clone();
        self.on_reader(move |r| done(r.listing(ino).map(|l| handles.add(Handle::Dir(l)))));
    }

    fn readdir(&self, ino: u64, fh: Option<u64>, done: impl Answer<Listing<()>>) {
        if is_parts_ino(ino) {
            let parts = self.parts.clone();
            return self.on_reader(move |r| {
                let l = parts.listing(ino, r).map(|l| {
                    Arc::new(l.into_iter().map(|(ino, name, dir)| DirEnt { ino, name, dir, key: () }).collect())
                });
                done(l)
            });
        }
        let Some(fh) = fh else {
            // No handle (see `View::opens`): the listing kept for the READDIRs of this
            // folder, or made on the reader's thread.
            let last = self.last_listing.clone();
            if let Some((_, l)) = last.lock().unwrap_or_else(|p| p.into_inner()).as_ref().filter(|(i, _)| *i == ino) {
                return done(Ok(l.clone()));
            }
            return self.on_reader(move |r| {
                let l = r.listing(ino);
                if let Ok(l) = &l {
                    *last.lock().unwrap_or_else(|p| p.into_inner()) = Some((ino, l.clone()));
                }
                done(l)
            });
        };
        done(match self.handles.map.get(&fh).as_deref() {
            Some(Handle::Dir(l)) => Ok(l.clone()),
            _ => err(Errno::EBADF),
        })
    }

    fn releasedir(&self, fh: u64) {
        self.handles.map.remove(&fh);
    }

    fn open(&self, ino: u64, flags: i32, _caller: Caller, done: impl Answer<Opened>) {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return done(err(Errno::EROFS));
        }
        let handles = self.handles.clone();
        self.on_reader(move |r| {
            done(r.content(ino).map(|c| Opened {
                fh: handles.add(Handle::File(c)),
                direct_io: false,
                // A message's content never changes.
                keep_cache: true,
                noflush: true,
            }))
        });
    }

    fn opens(&self) -> bool {
        // Nothing in a PST mount changes: the kernel need not open anything, and keeps the
        // pages it read from one open to the next.
        false
    }

    fn read(
        &self,
        ino: u64,
        fh: Option<u64>,
        offset: u64,
        size: u32,
        done: impl FnOnce(FsResult<&[u8]>) + Send + 'static,
    ) {
        if is_parts_ino(ino) {
            let parts = self.parts.clone();
            return self.on_reader(move |r| match parts.read(ino, offset, size, r) {
                Ok(d) => done(Ok(&d)),
                Err(e) => done(Err(e)),
            });
        }
        // Cloned out of the map: the reply is written with no shard lock held.
        let data = match fh {
            Some(fh) => match self.handles.map.get(&fh).as_deref() {
                Some(Handle::File(d)) => d.clone(),
                _ => return done(err(Errno::EBADF)),
            },
            None => match self.recent.get(ino) {
                Some(d) => d,
                None => {
                    // Converted on the reader's thread (usually the conversion the lookup
                    // just made, kept there), then kept for the READs that follow.
                    let recent = self.recent.clone();
                    return self.on_reader(move |r| match r.content(ino) {
                        Ok(c) => {
                            recent.put(ino, c.clone());
                            done(Ok(window(&c, offset, size)))
                        }
                        Err(e) => done(Err(e)),
                    });
                }
            },
        };
        done(Ok(window(&data, offset, size)))
    }

    fn release(&self, fh: u64, done: impl Answer<()>) {
        self.handles.map.remove(&fh);
        done(Ok(()))
    }
}

/// Up to `size` bytes of `data` at `offset`.
fn window(data: &[u8], offset: u64, size: u32) -> &[u8] {
    let start = (offset as usize).min(data.len());
    let end = start.saturating_add(size as usize).min(data.len());
    &data[start..end]
}

/// The contents read last, by inode: with no opens (see `View::opens`) nothing says how long
/// a message is being read, so its READs find its content here. Bounded in count and bytes.
#[derive(Default)]
struct Recent(Mutex<VecDeque<(u64, Arc<Vec<u8>>)>>);

impl Recent {
    const COUNT: usize = 16;
    const BYTES: usize = 64 << 20;

    fn get(&self, ino: u64) -> Option<Arc<Vec<u8>>> {
        let q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        q.iter().rev().find(|(i, _)| *i == ino).map(|(_, c)| c.clone())
    }

    fn put(&self, ino: u64, content: Arc<Vec<u8>>) {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        q.retain(|(i, _)| *i != ino);
        q.push_back((ino, content));
        // The latest always stays, however large.
        while q.len() > 1 && (q.len() > Self::COUNT || q.iter().map(|(_, c)| c.len()).sum::<usize>() > Self::BYTES) {
            q.pop_front();
        }
    }
}

/// Serve the PST opened as `view` read-only at `mountpoint` until it is unmounted. `ready`
/// is called once the mount is in place.
pub fn serve(
    view: PstView,
    mountpoint: &Path,
    cfg: &MountConfig,
    ready: impl FnOnce(Unmounter),
) -> std::io::Result<()> {
    let fsname = format!("msgfs-pst:{}", view.path.display());
    let cfg = MountConfig { read_only: true, ..cfg.clone() };
    crate::fs::serve_view(Arc::new(view), mountpoint, fsname, &cfg, ready)
}

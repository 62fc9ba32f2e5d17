//! Unit tests of the namespace rules (rename and unlink over stored entries and this mount's
//! overlay of scratch files, new files and shadows), run on a `StoreFs` over a store in a
//! temporary directory: no FUSE session, no kernel, no mount.
//!
//! Each test drives the requests as the FUSE adapter would and checks three things: the
//! answer, the names this mount shows (lookup and a listing), and what the store holds once
//! the answer has come (every answer comes after its commit is durable).

mod rename;
mod unlink;

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use fuser::Errno;

use super::errno::FsResult;
use super::store_fs::*;
use crate::store::Options;

/// The process every request comes from.
const PID: u32 = 4242;

/// Call a request that answers through `Done` (possibly from the committer's thread) and
/// wait for its answer.
fn answer<T: Send + 'static>(request: impl FnOnce(Done<T>)) -> FsResult<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    request(Box::new(move |r| drop(tx.send(r))));
    rx.recv_timeout(Duration::from_secs(30)).expect("the request was never answered")
}

/// A `StoreFs` as a mount has it, over a new store (Inbox, Drafts, ...). What the mount
/// would tell the kernel to forget (entry expiries) is collected in `expired`; attribute
/// invalidations go nowhere (no notifier is set, as before the session exists).
struct Fixture {
    fs: Arc<StoreFs>,
    inbox: Id,
    drafts: Id,
    expired: mpsc::Receiver<(Id, String)>,
    _dir: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.fs.store.close();
    }
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), Options { create: true, ..Default::default() }).unwrap();
        let (inbox, drafts) = (store.folder_by_path("Inbox").unwrap(), store.folder_by_path("Drafts").unwrap());
        let fs = Arc::new(StoreFs::new(store, false));
        let (tx, expired) = mpsc::channel();
        *fs.expiries.lock().unwrap() = Some(tx);
        Fixture { fs, inbox, drafts, expired, _dir: dir }
    }

    fn store(&self) -> &Store {
        &self.fs.store
    }

    /// A message stored without this mount (as an import stores it).
    fn stored_message(&self, folder: Id, name: &str, body: &[u8]) -> Id {
        let mut t = self.store().begin_new(folder, name).unwrap();
        t.write_at(body, 0).unwrap();
        t.save(SaveFlags(0)).unwrap().id
    }

    fn stored_folder(&self, parent: Id, name: &str) -> Id {
        let attrs = Attrs { mode: libc::S_IFDIR | 0o755, uid: 0, gid: 0, mtime: 0 };
        self.store().create_folder(parent, name, attrs).unwrap()
    }

    fn rename(&self, sf: Id, name: &str, df: Id, newname: &str) -> Result<(), Errno> {
        self.rename_flags(sf, name, df, newname, 0)
    }

    fn rename_flags(&self, sf: Id, name: &str, df: Id, newname: &str, flags: u32) -> Result<(), Errno> {
        let (name, newname) = (name.to_string(), newname.to_string());
        answer(|done| self.fs.rename(sf, &name, df, &newname, flags, done)).map_err(|e| e.errno())
    }

    fn unlink(&self, folder: Id, name: &str) -> Result<(), Errno> {
        answer(|done| self.fs.unlink(folder, name, done)).map_err(|e| e.errno())
    }

    /// open(O_CREAT | O_EXCL | O_WRONLY): the new file's inode and handle.
    fn create(&self, folder: Id, name: &str) -> Result<(u64, u64), Errno> {
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY;
        let (attr, fh, _) = self.fs.create(folder, name, 0o644, 0, 0, PID, flags).map_err(|e| e.errno())?;
        Ok((attr.ino, fh))
    }

    /// Create a file and write `body` to it, leaving it open.
    fn create_with(&self, folder: Id, name: &str, body: &[u8]) -> (u64, u64) {
        let (ino, fh) = self.create(folder, name).unwrap();
        self.write(fh, body);
        (ino, fh)
    }

    fn write(&self, fh: u64, body: &[u8]) {
        assert_eq!(self.fs.write(fh, 0, body, false, Some(1)).unwrap() as usize, body.len());
    }

    /// close(): FLUSH (a writer's save), then RELEASE.
    fn close(&self, fh: u64) -> Result<(), Errno> {
        let r = answer(|done| self.fs.flush(fh, Some(1), done)).map_err(|e| e.errno());
        self.fs.release(fh);
        r
    }

    /// The names a listing of the folder shows (`.` and `..` left out), sorted.
    fn names(&self, folder: Id) -> Vec<String> {
        let fh = self.fs.opendir(folder).unwrap();
        let Ok(Handle::Dir(ents)) = self.fs.handle(fh) else { panic!("not a listing") };
        self.fs.release(fh);
        let mut names: Vec<String> = ents.iter().map(|e| e.name.clone()).filter(|n| n != "." && n != "..").collect();
        names.sort();
        names
    }

    /// The inode a lookup of the name hands to the kernel.
    fn lookup(&self, folder: Id, name: &str) -> Result<u64, Errno> {
        self.fs.lookup(folder, name).map(|(a, _)| a.ino).map_err(|e| e.errno())
    }

    /// What a reader opening the name reads.
    fn read(&self, folder: Id, name: &str) -> Vec<u8> {
        let ino = self.lookup(folder, name).unwrap();
        let (fh, _, _) = self.fs.open(ino, libc::O_RDONLY, PID).unwrap();
        let data = self.fs.read(fh, 0, 1 << 20).unwrap();
        self.fs.release(fh);
        data
    }

    /// What the store holds at the name, whatever this mount shows there.
    fn stored(&self, folder: Id, name: &str) -> Option<Entry> {
        self.store().index().lookup(folder, name)
    }

    fn content(&self, id: Id) -> Vec<u8> {
        self.store().read_message(id).unwrap()
    }

    /// The current version of a message; None once it is deleted.
    fn version(&self, id: Id) -> Option<u64> {
        self.store().index().version_of(id)
    }

    /// Frames committed so far: a change made in the overlay alone adds none.
    fn commits(&self) -> u64 {
        self.store().shared().stats.frames.load(Ordering::SeqCst)
    }

    /// The path under the store a scratch file's content has once it is a file.
    fn scratch_path(&self, ino: u64) -> PathBuf {
        match &self.fs.overlay().nodes[&ino].kind {
            NodeKind::Scratch { file } => file.path().to_path_buf(),
            k => panic!("not a scratch file: {k:?}"),
        }
    }

    fn exists(&self, path: &std::path::Path) -> bool {
        self.store().vfs().exists(path)
    }

    /// Names whose entries the kernel was told to look up again, since the last call.
    fn expired(&self) -> Vec<(Id, String)> {
        self.expired.try_iter().collect()
    }
}

/// Content for a scratch file: small (held in memory) or past [`crate::store::INLINE_MAX`]
/// (a file under `staging/`), starting with `tag`.
fn scratch_body(tag: &[u8], big: bool) -> Vec<u8> {
    let mut b = tag.to_vec();
    if big {
        b.resize(crate::store::INLINE_MAX + 100, b'.');
    }
    b
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

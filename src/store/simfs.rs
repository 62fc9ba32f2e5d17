//! A simulated filesystem for crash tests: it remembers what was synced, can "crash" at the
//! Nth sync (after which nothing more reaches it), fail the Nth write with ENOSPC, and
//! rebuild the state a machine would find after a power loss.
//!
//! Its rules are weaker than ext4's, so tests against it are stricter: file data is durable
//! only after the file is synced, a directory entry (create, rename, link, unlink) only
//! after its directory is synced, and `sync_all` makes everything durable.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::RawFd;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::vfs::{OpenMode, Vfs, VfsFile};

type Ino = u64;

#[derive(Clone, Default)]
struct Node {
    dir: bool,
    data: Vec<u8>,
    durable: Vec<u8>,
    entries: BTreeMap<String, Ino>,
    durable_entries: BTreeMap<String, Ino>,
}

#[derive(Default)]
struct State {
    nodes: HashMap<Ino, Node>,
    next: Ino,
    syncs: u64,
    writes: u64,
    crash_at_sync: Option<u64>,
    fail_write_at: Option<u64>,
    crashed: bool,
}

#[derive(Clone)]
pub struct SimFs(Arc<Mutex<State>>);

fn crashed() -> io::Error {
    io::Error::other("simulated crash: the machine is down")
}

impl Default for SimFs {
    fn default() -> Self {
        Self::new()
    }
}

impl SimFs {
    pub fn new() -> SimFs {
        let mut st = State { next: 1, ..Default::default() };
        st.nodes.insert(0, Node { dir: true, ..Default::default() });
        SimFs(Arc::new(Mutex::new(st)))
    }

    /// Crash when the Nth sync from now (1-based) is attempted: that sync does not happen.
    pub fn crash_at_sync(&self, n: u64) {
        let mut st = self.0.lock().unwrap();
        st.crash_at_sync = Some(st.syncs + n);
    }

    /// Fail the Nth write (or truncate) from now with ENOSPC, once.
    pub fn fail_write(&self, n: u64) {
        let mut st = self.0.lock().unwrap();
        st.fail_write_at = Some(st.writes + n);
    }

    pub fn syncs(&self) -> u64 {
        self.0.lock().unwrap().syncs
    }

    pub fn crashed(&self) -> bool {
        self.0.lock().unwrap().crashed
    }

    /// Crash now.
    pub fn crash(&self) {
        self.0.lock().unwrap().crashed = true;
    }

    /// The filesystem as found after the crash: only synced entries and data, plus up to
    /// `torn` bytes of each file's unsynced data from the first byte that differs from what
    /// was synced (a torn write: appended, or over bytes the file had, as a log segment's
    /// frames land over the zeros laid down ahead of them).
    pub fn recover(&self, torn: usize) -> SimFs {
        let st = self.0.lock().unwrap();
        let mut out = State { next: st.next, ..Default::default() };
        let mut stack = vec![0u64];
        while let Some(ino) = stack.pop() {
            if out.nodes.contains_key(&ino) {
                continue;
            }
            let n = &st.nodes[&ino];
            let mut data = n.durable.clone();
            let same = n.data.iter().zip(&n.durable).take_while(|(a, b)| a == b).count();
            let end = n.data.len().min(same.saturating_add(torn));
            if end > same {
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[same..end].copy_from_slice(&n.data[same..end]);
            }
            let node = Node {
                dir: n.dir,
                data: data.clone(),
                durable: data,
                entries: n.durable_entries.clone(),
                durable_entries: n.durable_entries.clone(),
            };
            stack.extend(node.entries.values().copied());
            out.nodes.insert(ino, node);
        }
        SimFs(Arc::new(Mutex::new(out)))
    }

    /// Every file path and its current content (for comparing trees).
    pub fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let st = self.0.lock().unwrap();
        let mut out = BTreeMap::new();
        let mut stack = vec![(PathBuf::new(), 0u64)];
        while let Some((p, ino)) = stack.pop() {
            let n = &st.nodes[&ino];
            if n.dir {
                for (name, c) in &n.entries {
                    stack.push((p.join(name), *c));
                }
            } else {
                out.insert(p, n.data.clone());
            }
        }
        out
    }

    /// Flip one byte of a file (damage for `check` tests).
    pub fn corrupt_byte(&self, path: &Path, off: usize) {
        let mut st = self.0.lock().unwrap();
        let ino = resolve(&st, path).expect("file exists");
        let n = st.nodes.get_mut(&ino).unwrap();
        n.data[off] ^= 0xff;
        n.durable = n.data.clone();
    }
}

fn parts(path: &Path) -> Vec<String> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect()
}

fn resolve(st: &State, path: &Path) -> Option<Ino> {
    let mut ino = 0;
    for p in parts(path) {
        ino = *st.nodes.get(&ino)?.entries.get(&p)?;
    }
    Some(ino)
}

fn split(st: &State, path: &Path) -> io::Result<(Ino, String)> {
    let mut ps = parts(path);
    let name = ps.pop().ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let parent =
        resolve(st, &ps.iter().collect::<PathBuf>()).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
    if !st.nodes[&parent].dir {
        return Err(io::Error::from(io::ErrorKind::NotADirectory));
    }
    Ok((parent, name))
}

struct SimFile {
    fs: SimFs,
    ino: Ino,
}

impl SimFs {
    fn live(&self) -> io::Result<std::sync::MutexGuard<'_, State>> {
        let st = self.0.lock().unwrap();
        if st.crashed {
            return Err(crashed());
        }
        Ok(st)
    }

    fn count_sync(st: &mut State) -> io::Result<()> {
        st.syncs += 1;
        if st.crash_at_sync == Some(st.syncs) {
            st.crashed = true;
            return Err(crashed());
        }
        Ok(())
    }

    fn count_write(st: &mut State) -> io::Result<()> {
        st.writes += 1;
        if st.fail_write_at == Some(st.writes) {
            st.fail_write_at = None;
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }
}

impl VfsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let st = self.fs.live()?;
        let d = &st.nodes[&self.ino].data;
        if off as usize >= d.len() {
            return Ok(0);
        }
        let n = buf.len().min(d.len() - off as usize);
        buf[..n].copy_from_slice(&d[off as usize..off as usize + n]);
        Ok(n)
    }
    fn write_all_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        let mut st = self.fs.live()?;
        SimFs::count_write(&mut st)?;
        let d = &mut st.nodes.get_mut(&self.ino).unwrap().data;
        let end = off as usize + buf.len();
        if d.len() < end {
            d.resize(end, 0);
        }
        d[off as usize..end].copy_from_slice(buf);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.fs.live()?;
        SimFs::count_write(&mut st)?;
        st.nodes.get_mut(&self.ino).unwrap().data.resize(len as usize, 0);
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.fs.live()?.nodes[&self.ino].data.len() as u64)
    }
    fn sync(&self) -> io::Result<()> {
        let mut st = self.fs.live()?;
        SimFs::count_sync(&mut st)?;
        let n = st.nodes.get_mut(&self.ino).unwrap();
        n.durable = n.data.clone();
        Ok(())
    }
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }
}

impl Vfs for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        let mut st = self.live()?;
        let existing = resolve(&st, path);
        let ino = match (mode, existing) {
            (OpenMode::Read | OpenMode::ReadWrite, Some(i)) => i,
            (OpenMode::Read | OpenMode::ReadWrite, None) => return Err(io::Error::from(io::ErrorKind::NotFound)),
            (OpenMode::CreateNew, Some(_)) => return Err(io::Error::from(io::ErrorKind::AlreadyExists)),
            (OpenMode::CreateTruncate, Some(i)) => {
                SimFs::count_write(&mut st)?;
                st.nodes.get_mut(&i).unwrap().data.clear();
                i
            }
            (OpenMode::CreateNew | OpenMode::CreateTruncate, None) => {
                let (parent, name) = split(&st, path)?;
                SimFs::count_write(&mut st)?;
                let i = st.next;
                st.next += 1;
                st.nodes.insert(i, Node::default());
                st.nodes.get_mut(&parent).unwrap().entries.insert(name, i);
                i
            }
        };
        if st.nodes[&ino].dir {
            return Err(io::Error::from(io::ErrorKind::IsADirectory));
        }
        Ok(Box::new(SimFile { fs: self.clone(), ino }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.live()?;
        let (fp, fname) = split(&st, from)?;
        let (tp, tname) = split(&st, to)?;
        let ino = st
            .nodes
            .get_mut(&fp)
            .unwrap()
            .entries
            .remove(&fname)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        st.nodes.get_mut(&tp).unwrap().entries.insert(tname, ino);
        Ok(())
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.live()?;
        let ino = resolve(&st, from).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let (tp, tname) = split(&st, to)?;
        if st.nodes[&tp].entries.contains_key(&tname) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        st.nodes.get_mut(&tp).unwrap().entries.insert(tname, ino);
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.live()?;
        let (p, name) = split(&st, path)?;
        st.nodes.get_mut(&p).unwrap().entries.remove(&name).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(())
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.live()?;
        let (p, name) = split(&st, path)?;
        if st.nodes[&p].entries.contains_key(&name) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        let i = st.next;
        st.next += 1;
        st.nodes.insert(i, Node { dir: true, ..Default::default() });
        st.nodes.get_mut(&p).unwrap().entries.insert(name, i);
        Ok(())
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let st = self.live()?;
        let ino = resolve(&st, path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(st.nodes[&ino].entries.keys().cloned().collect())
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.live()?;
        SimFs::count_sync(&mut st)?;
        let ino = resolve(&st, path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let n = st.nodes.get_mut(&ino).unwrap();
        n.durable_entries = n.entries.clone();
        Ok(())
    }
    fn sync_all(&self) -> io::Result<()> {
        let mut st = self.live()?;
        SimFs::count_sync(&mut st)?;
        for n in st.nodes.values_mut() {
            n.durable = n.data.clone();
            n.durable_entries = n.entries.clone();
        }
        Ok(())
    }
    fn exists(&self, path: &Path) -> bool {
        let st = self.0.lock().unwrap();
        resolve(&st, path).is_some()
    }
    fn real_path(&self, _path: &Path) -> Option<PathBuf> {
        None
    }
}

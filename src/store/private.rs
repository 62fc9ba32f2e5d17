//! A transaction's private copy: in memory while it is small, so that a small save never
//! touches the disk before its log frame (see `inline.rs`), and in a file under `staging/`
//! once it grows past [`INLINE_MAX`] (or when it must outlive the process: a recovered
//! draft). The file's name is chosen at the start and used only if it is needed. The mount's
//! scratch files (an editor's swap file, rsync's temporary file) are held the same way.

use std::io;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::inline::INLINE_MAX;
use super::vfs::{OpenMode, Vfs, VfsFile};

enum Inner {
    Mem(Vec<u8>),
    File(Box<dyn VfsFile>),
}

pub struct Private {
    vfs: Arc<dyn Vfs>,
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl Private {
    /// An empty private copy that would live at `path` (under `staging/`) if it grows.
    pub fn new(vfs: Arc<dyn Vfs>, path: PathBuf) -> Private {
        Private { vfs, path, inner: Mutex::new(Inner::Mem(Vec::new())) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether it is held in memory (not a file yet).
    pub fn is_in_memory(&self) -> bool {
        matches!(&*self.inner.lock().unwrap(), Inner::Mem(_))
    }

    /// Its bytes, while it is held in memory; None once it is a file.
    pub fn in_memory(&self) -> Option<Vec<u8>> {
        match &*self.inner.lock().unwrap() {
            Inner::Mem(v) => Some(v.clone()),
            Inner::File(_) => None,
        }
    }

    /// Make it a file at its path (kept as a recovered draft, or grown large).
    pub fn to_file(&self) -> io::Result<()> {
        let mut inner = self.inner.lock().unwrap();
        self.spill(&mut inner)
    }

    fn spill(&self, inner: &mut Inner) -> io::Result<()> {
        let Inner::Mem(data) = inner else { return Ok(()) };
        let f = self.vfs.open(&self.path, OpenMode::CreateNew)?;
        if let Err(e) = f.write_all_at(data, 0) {
            drop(f);
            let _ = self.vfs.remove_file(&self.path);
            return Err(e);
        }
        *inner = Inner::File(f);
        Ok(())
    }

    /// Remove its file, if it has one.
    pub fn discard(&self) {
        if matches!(&*self.inner.lock().unwrap(), Inner::File(_)) {
            let _ = self.vfs.remove_file(&self.path);
        }
    }
}

impl std::fmt::Debug for Private {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = if matches!(&*self.inner.lock().unwrap(), Inner::Mem(_)) { "in memory" } else { "a file" };
        write!(f, "Private({}, {held})", self.path.display())
    }
}

impl VfsFile for Private {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        match &*self.inner.lock().unwrap() {
            Inner::Mem(v) => {
                let start = (off as usize).min(v.len());
                let n = buf.len().min(v.len() - start);
                buf[..n].copy_from_slice(&v[start..start + n]);
                Ok(n)
            }
            Inner::File(f) => f.read_at(buf, off),
        }
    }

    fn write_all_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        let mut inner = self.inner.lock().unwrap();
        let end = off as usize + buf.len();
        if end > INLINE_MAX {
            self.spill(&mut inner)?;
        }
        match &mut *inner {
            Inner::Mem(v) => {
                if v.len() < end {
                    v.resize(end, 0);
                }
                v[off as usize..end].copy_from_slice(buf);
                Ok(())
            }
            Inner::File(f) => f.write_all_at(buf, off),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut inner = self.inner.lock().unwrap();
        if len as usize > INLINE_MAX {
            self.spill(&mut inner)?;
        }
        match &mut *inner {
            Inner::Mem(v) => {
                v.resize(len as usize, 0);
                Ok(())
            }
            Inner::File(f) => f.set_len(len),
        }
    }

    fn len(&self) -> io::Result<u64> {
        match &*self.inner.lock().unwrap() {
            Inner::Mem(v) => Ok(v.len() as u64),
            Inner::File(f) => f.len(),
        }
    }

    fn sync(&self) -> io::Result<()> {
        match &*self.inner.lock().unwrap() {
            Inner::Mem(_) => Ok(()),
            Inner::File(f) => f.sync(),
        }
    }

    fn raw_fd(&self) -> Option<RawFd> {
        match &*self.inner.lock().unwrap() {
            Inner::Mem(_) => None,
            Inner::File(f) => f.raw_fd(),
        }
    }
}

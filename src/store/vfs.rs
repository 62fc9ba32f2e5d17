//! The storage trait all persistence goes through, and its real implementation.
//!
//! Every byte the store writes, every rename and every sync passes through [`Vfs`], so a
//! test backend ([`super::simfs`]) can simulate a crash at the Nth sync, keeping only what
//! was synced, or fail the Nth write. Paths are relative to the store directory.
//!
//! Everything the store creates is private to its owner whatever the umask: files 0600 and
//! directories 0700 (as Dovecot does for a Maildir), since they hold mail: only its owner
//! may read it, whoever else can reach the disk.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of every file the store creates.
pub const FILE_MODE: u32 = 0o600;
/// The mode of the store directory and every directory in it.
pub const DIR_MODE: u32 = 0o700;

/// Give a file just created its mode: the mode passed to open(2) is narrowed by the umask
/// (a umask of 0277 would make a log segment unwritable), so set it again on the descriptor.
pub fn fix_file_mode(f: &File) -> io::Result<()> {
    // Created with FILE_MODE, the umask can only have taken bits away: when it takes none
    // of FILE_MODE's (the usual 022 or 077), the file is right already and a chmod per
    // file (one per message in an import or a sync) is saved.
    if umask() & FILE_MODE == 0 {
        return Ok(());
    }
    f.set_permissions(fs::Permissions::from_mode(FILE_MODE))
}

/// The process's umask, read once (from /proc: umask(2) can only read it by changing it,
/// which would race with other threads creating files). Unknown counts as "takes all".
fn umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_string())))
            .and_then(|v| u32::from_str_radix(&v, 8).ok())
            .unwrap_or(0o777)
    })
}

/// Create directory `p` with [`DIR_MODE`] whatever the umask; AlreadyExists if it is there
/// (its mode is then left as it is).
pub fn create_private_dir(p: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(DIR_MODE).create(p)?;
    fs::set_permissions(p, fs::Permissions::from_mode(DIR_MODE))
}

/// How to open a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    Read,
    ReadWrite,
    /// Create; fail if it exists.
    CreateNew,
    /// Create or truncate.
    CreateTruncate,
}

pub trait VfsFile: Send + Sync {
    /// Read up to `buf.len()` bytes at `off`; 0 at end of file.
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize>;
    /// Write all of `buf` at `off`.
    fn write_all_at(&self, buf: &[u8], off: u64) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Make the file's data durable (fdatasync). Says nothing about its directory entry.
    fn sync(&self) -> io::Result<()>;
    /// The real descriptor, where there is one (for FUSE passthrough and zero-copy reads).
    fn raw_fd(&self) -> Option<RawFd>;

    /// Read exactly `buf.len()` bytes at `off`, or fail with UnexpectedEof.
    fn read_exact_at(&self, mut buf: &mut [u8], mut off: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(buf, off)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short file"));
            }
            buf = &mut buf[n..];
            off += n as u64;
        }
        Ok(())
    }

    /// The whole file.
    fn read_all(&self) -> io::Result<Vec<u8>> {
        let len = self.len()? as usize;
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let n = self.read_at(&mut buf[got..], got as u64)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        Ok(buf)
    }
}

pub trait Vfs: Send + Sync {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Create a directory; AlreadyExists if it is there.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Names in a directory (no `.`/`..`), in no particular order.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Make the directory's entries (creates, renames, removals in it) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Make everything on the backing filesystem durable (syncfs): used for import batches,
    /// where one call replaces thousands of per-file syncs.
    fn sync_all(&self) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    /// The real path, for tools that need one (the FUSE layer, rsync in backups).
    fn real_path(&self, path: &Path) -> Option<PathBuf>;
    /// The whole of a file that never changes in place (a checkpoint: it is replaced by
    /// rename, never rewritten), read only as its bytes are touched where the backend can
    /// map it; a backend that cannot reads it whole.
    fn map(&self, path: &Path) -> io::Result<Mapped> {
        self.open(path, OpenMode::Read)?.read_all().map(Mapped::Read)
    }
}

/// The bytes of a file from [`Vfs::map`]: a read-only memory map, or a copy.
pub enum Mapped {
    Map(memmap2::Mmap),
    Read(Vec<u8>),
}

impl std::ops::Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Mapped::Map(m) => m,
            Mapped::Read(v) => v,
        }
    }
}

/// The real filesystem under a store directory.
pub struct RealVfs {
    root: PathBuf,
}

impl RealVfs {
    pub fn new(root: impl Into<PathBuf>) -> RealVfs {
        RealVfs { root: root.into() }
    }
    fn p(&self, path: &Path) -> PathBuf {
        self.root.join(path)
    }
}

struct RealFile(File);

impl VfsFile for RealFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        loop {
            match self.0.read_at(buf, off) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
    fn write_all_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        self.0.write_all_at(buf, off)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.0.as_raw_fd())
    }
}

impl Vfs for RealVfs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        let mut o = OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true),
            OpenMode::CreateNew => o.read(true).write(true).create_new(true).mode(FILE_MODE),
            OpenMode::CreateTruncate => o.read(true).write(true).create(true).truncate(true).mode(FILE_MODE),
        };
        let f = o.open(self.p(path))?;
        if matches!(mode, OpenMode::CreateNew | OpenMode::CreateTruncate) {
            fix_file_mode(&f)?;
        }
        Ok(Box::new(RealFile(f)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(self.p(from), self.p(to))
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::hard_link(self.p(from), self.p(to))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(self.p(path))
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        create_private_dir(&self.p(path))
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.p(path))? {
            out.push(e?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(self.p(path))?.sync_all()
    }
    fn sync_all(&self) -> io::Result<()> {
        let dir = File::open(&self.root)?;
        // SAFETY: syncfs takes a valid open descriptor, which `dir` holds for the call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    fn exists(&self, path: &Path) -> bool {
        self.p(path).exists()
    }
    fn real_path(&self, path: &Path) -> Option<PathBuf> {
        Some(self.p(path))
    }
    fn map(&self, path: &Path) -> io::Result<Mapped> {
        let f = File::open(self.p(path))?;
        if f.metadata()?.len() == 0 {
            // An empty map is refused by mmap(2).
            return Ok(Mapped::Read(Vec::new()));
        }
        // SAFETY: the store maps only files it replaces by rename and never writes in place
        // (checkpoints), and it holds the store's lock, so no one truncates or rewrites the
        // mapped bytes while they are in use: the map stays valid and unchanged.
        // The kernel's usual read-around stays on: a listing reads neighbouring rows and
        // names, and a lookup's binary search ends among neighbours too.
        let m = unsafe { memmap2::Mmap::map(&f)? };
        Ok(Mapped::Map(m))
    }
}

//! Opening a store: create it on first use, take its lock, load the checkpoint, replay the
//! log after it, cut a torn tail, and clean up after an unclean stop.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::checkpoint;
use super::commit::now_ns;
use super::control::RECOVERED_DIR;
use super::error::{Error, Result};
use super::index::{Attrs, Index, Record, ROOT};
use super::log;
use super::vfs::{OpenMode, RealVfs, Vfs};
use super::{
    object_path, LogState, OpenReport, Options, Store, CLEAN_FILE, DEFAULT_FOLDERS, FORMAT_FILE, LOCK_FILE,
    OBJECTS_DIR, STAGING_DIR,
};

/// The newest store format this msgfs reads and writes. A new store is made in
/// [`FORMAT_CREATE`]; older stores are read, and raised to this format by the first commit
/// that logs a replication record (`raise_format`), so a store never synced stays readable
/// by the msgfs that made it. Format 3 adds log records 11-16 (record 13 with the flags and
/// checksum sent), tombstones, and checkpoint formats 3 and 4. Format 4 adds inline content
/// (log record 17, checkpoint format 5), raised to by the first save logged inline. Format 5
/// adds checkpoint format 6 (mapped, see `base.rs`), raised to before the first one is
/// written. A newer format is refused as too new, not as damage.
pub const FORMAT_VERSION: u32 = 5;
/// The store format that first has mapped checkpoints (checkpoint format 6).
pub const FORMAT_MAPPED_CHECKPOINT: u32 = 5;
/// The format a new store starts in: format 2 keeps folder times (records 9 and 10,
/// checkpoint format 2).
pub const FORMAT_CREATE: u32 = 2;
/// The oldest format still read.
pub const FORMAT_OLDEST: u32 = 1;

fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    // SAFETY: getrandom writes at most `id.len()` bytes into the buffer we own.
    let n = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
    if n != id.len() as isize {
        let t = now_ns() as u128 ^ ((std::process::id() as u128) << 64);
        id = t.to_le_bytes();
    }
    id
}

fn format_text(id: &[u8; 16], format: u32) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!("msgfs store\nformat {format}\nid {hex}\n")
}

/// The store id and format number of a format file's text.
pub(crate) fn parse_format(text: &str) -> Result<([u8; 16], u32)> {
    let bad = |w: &str| Error::corrupt(FORMAT_FILE, w.to_string());
    let mut lines = text.lines();
    if lines.next() != Some("msgfs store") {
        return Err(bad("not a msgfs store (first line is not \"msgfs store\")"));
    }
    let ver = lines.next().and_then(|l| l.strip_prefix("format ")).ok_or_else(|| bad("no format line"))?;
    let format: u32 = ver.trim().parse().map_err(|_| bad(&format!("format {ver:?} is not a number")))?;
    if format > FORMAT_VERSION {
        return Err(Error::TooNew(format!(
            "store format {format} is newer than this msgfs reads (formats {FORMAT_OLDEST} to {FORMAT_VERSION}): \
             use the msgfs that wrote it, or a newer one"
        )));
    }
    if format < FORMAT_OLDEST {
        return Err(bad(&format!("format {format} is not a msgfs store format")));
    }
    let hex = lines.next().and_then(|l| l.strip_prefix("id ")).ok_or_else(|| bad("no id line"))?;
    let mut id = [0u8; 16];
    if hex.len() != 32 || !hex.is_ascii() {
        return Err(bad("store id is not 32 hex digits"));
    }
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad("store id is not hex"))?;
    }
    Ok((id, format))
}

/// Who holds the lock file, as written there by the holder.
fn holder_of(f: &mut File) -> String {
    let mut s = String::new();
    let _ = f.rewind();
    let _ = f.read_to_string(&mut s);
    let s = s.trim();
    if s.is_empty() {
        "another process".to_string()
    } else {
        s.to_string()
    }
}

/// Take the store's lock, or say who holds it.
fn take_lock(dir: &Path) -> Result<File> {
    let p = dir.join(LOCK_FILE);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(super::vfs::FILE_MODE)
        .open(&p)
        .map_err(|e| Error::io(format!("open {}", p.display()), e))?;
    // A lock file left by an older msgfs may be 0644; it names our command line.
    super::vfs::fix_file_mode(&f).map_err(|e| Error::io(format!("chmod {}", p.display()), e))?;
    // SAFETY: flock on a descriptor we own; non-blocking, so it cannot hang.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(Error::InUse { path: dir.to_path_buf(), holder: holder_of(&mut f) });
    }
    let cmd = std::fs::read_to_string("/proc/self/cmdline").unwrap_or_default().replace('\0', " ");
    let _ = f.set_len(0);
    let _ = f.rewind();
    let _ = writeln!(f, "process {} ({})", std::process::id(), cmd.trim());
    Ok(f)
}

pub fn open(path: &Path, opts: Options) -> Result<Store> {
    if opts.create && !path.join(FORMAT_FILE).exists() {
        create_store_dir(path)?;
    } else if !path.join(FORMAT_FILE).exists() {
        return Err(Error::io(
            format!("{}", path.display()),
            std::io::Error::new(std::io::ErrorKind::NotFound, "no msgfs store here (run `msgfs init` to create one)"),
        ));
    }
    let lock = if opts.read_only { None } else { Some(take_lock(path)?) };
    let vfs: Arc<dyn Vfs> = Arc::new(RealVfs::new(path));
    open_vfs(vfs, Some(path.to_path_buf()), opts, lock)
}

/// The directory of a new store: its parents as the umask says (they are the user's), the
/// store directory itself 0700, also when it existed empty (made by `mkdir` with mode 0755).
fn create_store_dir(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
    }
    match super::vfs::create_private_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {
            refuse_foreign_files(path)?;
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::Permissions::from_mode(super::vfs::DIR_MODE);
            if let Err(e) = std::fs::set_permissions(path, mode) {
                // Someone else's directory: the store works, but is not private.
                ::log::warn!("chmod 0700 {}: {e}", path.display());
            }
            Ok(())
        }
        Err(e) => Err(Error::io(format!("create {}", path.display()), e)),
    }
}

/// A store is made only in a new or empty directory, or over an interrupted creation (which
/// leaves only the store's own names): laying one out among someone's files would mix them
/// with the store's, and a later `msgfs backup` or removal of the store would take them.
fn refuse_foreign_files(path: &Path) -> Result<()> {
    const OURS: [&str; 8] =
        [LOCK_FILE, "format.tmp", OBJECTS_DIR, STAGING_DIR, log::LOG_DIR, RECOVERED_DIR, log::RESERVE_FILE, CLEAN_FILE];
    let entries = std::fs::read_dir(path).map_err(|e| Error::io(format!("list {}", path.display()), e))?;
    for e in entries.flatten() {
        let name = e.file_name();
        if !OURS.iter().any(|o| name == *o) {
            return Err(Error::io(
                format!("{}", path.display()),
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "not a msgfs store and not empty (it holds {:?}): give a new or empty directory for a store",
                        name
                    ),
                ),
            ));
        }
    }
    Ok(())
}

/// The store id in `dir`'s format file, if `dir` holds a msgfs store (a backup holds the
/// id of the store it copies).
pub fn store_id_of(dir: &Path) -> Option<[u8; 16]> {
    let text = std::fs::read_to_string(dir.join(FORMAT_FILE)).ok()?;
    parse_format(&text).ok().map(|(id, _)| id)
}

/// The format number of the store in `dir`: an error if it has no readable format file,
/// [`Error::TooNew`] if a newer msgfs wrote it.
pub fn format_of(dir: &Path) -> Result<u32> {
    let text = std::fs::read_to_string(dir.join(FORMAT_FILE)).map_err(io(format!("read {FORMAT_FILE}")))?;
    parse_format(&text).map(|(_, format)| format)
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::io(what, e)
}

/// Lay out a new store: directories, the format file, and a first log frame creating the
/// default folders. The format file is written last: until it exists there is no store.
fn create(vfs: &dyn Vfs) -> Result<([u8; 16], u32)> {
    for d in [OBJECTS_DIR, STAGING_DIR, log::LOG_DIR, RECOVERED_DIR] {
        match vfs.create_dir(Path::new(d)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(format!("create {d}/"), e)),
        }
    }
    for b in 0..256u32 {
        let d = format!("{OBJECTS_DIR}/{b:02x}");
        match vfs.create_dir(Path::new(&d)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(format!("create {d}/"), e)),
        }
    }
    for b in 0..256u32 {
        vfs.sync_dir(Path::new(&format!("{OBJECTS_DIR}/{b:02x}"))).map_err(io("sync objects/"))?;
    }
    let (uid, gid) = unsafe_ids();
    let attrs = Attrs { mode: libc::S_IFDIR | 0o700, uid, gid, mtime: now_ns() };
    let mut recs = vec![Record::FolderAttrs { id: ROOT, attrs }];
    for (i, name) in DEFAULT_FOLDERS.iter().enumerate() {
        recs.push(Record::FolderCreate {
            id: super::index::FIRST_ID + i as u64,
            parent: ROOT,
            name: name.to_string(),
            attrs,
        });
    }
    let seg = log::segment_path(1);
    let f = vfs.open(&seg, OpenMode::CreateTruncate).map_err(io("create the first log segment"))?;
    f.write_all_at(&log::encode_frame(1, &recs), 0).map_err(io("write the first log segment"))?;
    f.sync().map_err(io("sync the first log segment"))?;
    for d in [OBJECTS_DIR, STAGING_DIR, log::LOG_DIR] {
        vfs.sync_dir(Path::new(d)).map_err(io(format!("sync {d}/")))?;
    }
    let id = super::open::random_id();
    write_format(vfs, &id, FORMAT_CREATE)?;
    Ok((id, FORMAT_CREATE))
}

/// Write the format file atomically: a temporary file, synced, renamed over it, and the
/// directory synced. A crash leaves the old file or the new one.
fn write_format(vfs: &dyn Vfs, id: &[u8; 16], format: u32) -> Result<()> {
    let tmp = format!("{FORMAT_FILE}.tmp");
    let f = vfs.open(Path::new(&tmp), OpenMode::CreateTruncate).map_err(io("create the format file"))?;
    f.write_all_at(format_text(id, format).as_bytes(), 0).map_err(io("write the format file"))?;
    f.sync().map_err(io("sync the format file"))?;
    vfs.rename(Path::new(&tmp), Path::new(FORMAT_FILE)).map_err(io("rename the format file"))?;
    vfs.sync_dir(Path::new("")).map_err(io("sync the store directory"))?;
    Ok(())
}

/// Raise an older store's format file to [`FORMAT_VERSION`] before the first record only
/// that format has is logged: from then on an older msgfs refuses the store as too new
/// instead of taking the records it does not know for damage. Durable before it returns.
pub(crate) fn raise_format(vfs: &dyn Vfs, id: &[u8; 16], format: u32) -> Result<()> {
    debug_assert!(format <= FORMAT_VERSION);
    write_format(vfs, id, format)
}

fn unsafe_ids() -> (u32, u32) {
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    unsafe { (libc::getuid(), libc::getgid()) }
}

pub fn open_vfs(vfs: Arc<dyn Vfs>, path: Option<PathBuf>, opts: Options, lock: Option<File>) -> Result<Store> {
    // A store created just now has nothing to recover: its report says clean.
    let created = !vfs.exists(Path::new(FORMAT_FILE));
    let store_id = if vfs.exists(Path::new(FORMAT_FILE)) {
        let f = vfs.open(Path::new(FORMAT_FILE), OpenMode::Read).map_err(io("open the format file"))?;
        let text = f.read_all().map_err(io("read the format file"))?;
        parse_format(&String::from_utf8_lossy(&text))?
    } else if opts.create && !opts.read_only {
        create(&*vfs)?
    } else {
        return Err(Error::io(
            "open store",
            std::io::Error::new(std::io::ErrorKind::NotFound, "no msgfs store here (run `msgfs init` to create one)"),
        ));
    };
    let marker = vfs.exists(Path::new(CLEAN_FILE));
    // A store created just now was never used, so it is clean although no close marked it:
    // its first open must neither warn that it was "not closed cleanly" nor collect garbage.
    let was_clean = marker || created;
    let mut report = OpenReport { was_clean, ..Default::default() };

    // The checkpoint, then every frame after it, in order.
    let (mut ix, ck_seq) = match checkpoint::read(&*vfs)? {
        Some((ix, seq)) => (ix, seq),
        None => (Index::new_store(Attrs { mode: libc::S_IFDIR | 0o700, uid: 0, gid: 0, mtime: 0 }), 0),
    };
    let segments = log::list_segments(&*vfs)?;
    let mut next_seq = ck_seq + 1;
    // (first_seq, where its log ends, file size) of the last segment
    let mut last_writer: Option<(u64, u64, u64)> = None;
    let nsegs = segments.len();
    let mut bytes_since_checkpoint = 0u64;
    let mut content_since_checkpoint = 0u64;
    for (i, (first, path)) in segments.iter().enumerate() {
        // A segment the checkpoint wholly covers (the next one starts at or before the
        // first record after it) is kept only for the inline content it holds: not read.
        if segments.get(i + 1).is_some_and(|(next, _)| *next <= next_seq) {
            continue;
        }
        let seg = log::read_segment(&*vfs, path)?;
        let place = path.display().to_string();
        if let Some(at) = seg.torn_at {
            if i + 1 != nsegs {
                return Err(Error::corrupt(
                    format!("{place} at byte {at}"),
                    "bad frame in a segment that is not the last",
                ));
            }
        }
        for fr in &seg.frames {
            let n = fr.records.len() as u64;
            if fr.first_seq + n <= next_seq {
                continue; // covered by the checkpoint
            }
            if fr.first_seq != next_seq {
                return Err(Error::corrupt(
                    format!("{place} at byte {}", fr.offset),
                    format!("frame starts at sequence {} where {} was expected (log missing)", fr.first_seq, next_seq),
                ));
            }
            for (k, r) in fr.records.iter().enumerate() {
                ix.validate(r).map_err(|e| {
                    Error::corrupt(
                        format!("{place} at byte {} (record {})", fr.offset, fr.first_seq + k as u64),
                        format!("record cannot apply: {e}"),
                    )
                })?;
                ix.apply(r);
                if let Record::Content { at, .. } = r {
                    content_since_checkpoint += at.len;
                }
            }
            next_seq += n;
            report.replayed_records += n;
        }
        let (len, mut file_len) = (seg.len, seg.file_len);
        if let (Some(at), true) = (seg.torn_at, was_clean) {
            // A cleanly closed store has no commit in flight: a bad tail is damage.
            return Err(Error::corrupt(
                format!("{place} at byte {at}"),
                "bad frame at the end of a cleanly closed log",
            ));
        }
        if let Some(at) = seg.torn_at {
            report.torn_tail_cut = Some(format!("{place}: {} bytes cut at byte {at}", seg.file_len - at));
            if !opts.read_only {
                let f = vfs.open(path, OpenMode::ReadWrite).map_err(io(format!("open {place}")))?;
                f.set_len(at).map_err(io(format!("cut the torn tail of {place}")))?;
                f.sync().map_err(io(format!("sync {place}")))?;
                ::log::warn!(
                    "cut a torn tail at {place} byte {at}: a commit was interrupted before it was acknowledged"
                );
                file_len = at;
            }
        }
        bytes_since_checkpoint += len;
        last_writer = Some((*first, len, file_len));
    }

    let mut reserve_short = false;
    if !opts.read_only {
        // From here on the store is being changed: it is no longer cleanly closed.
        if marker {
            vfs.remove_file(Path::new(CLEAN_FILE)).map_err(io("remove the clean marker"))?;
            vfs.sync_dir(Path::new("")).map_err(io("sync the store directory"))?;
        }
        report.removed_staging = clear_staging(&*vfs)?;
        // Ready before the disk fills: keeping a recovered draft then needs no new
        // directory, and deleting messages can use the reserve (see log::RESERVE_FILE).
        match vfs.create_dir(Path::new(RECOVERED_DIR)) {
            Ok(()) => vfs.sync_dir(Path::new("")).map_err(io("sync the store directory"))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => ::log::warn!("create {RECOVERED_DIR}/: {e}"),
        }
        let reserve = log::ensure_reserve(&*vfs);
        reserve_short = !log::reserve_whole(&reserve);
        match reserve {
            Ok(n) if n >= log::RESERVE_BYTES => {}
            Ok(n) => ::log::warn!(
                "the disk holding the store is full: its reserve has {} KiB of {} MiB, so deleting may fail with ENOSPC",
                n >> 10,
                log::RESERVE_BYTES >> 20
            ),
            Err(e) => ::log::warn!("cannot make the store's reserve: {e}"),
        }
        if !was_clean {
            report.removed_objects = collect_garbage(&*vfs, &ix)?;
        }
    }

    let writer = if opts.read_only {
        None
    } else {
        match last_writer {
            Some((first, len, file_len)) if len < log::SEGMENT_BYTES => {
                let file = vfs.open(&log::segment_path(first), OpenMode::ReadWrite).map_err(io("open the log"))?;
                Some(log::Writer::new(file, first, len, file_len))
            }
            _ => {
                let p = log::segment_path(next_seq);
                let file = vfs.open(&p, OpenMode::CreateTruncate).map_err(io("create a log segment"))?;
                vfs.sync_dir(Path::new(log::LOG_DIR)).map_err(io("sync log/"))?;
                Some(log::Writer::new(file, next_seq, 0, 0))
            }
        }
    };
    let log_state = LogState {
        writer,
        next_seq,
        bytes_since_checkpoint,
        content_since_checkpoint,
        reserve_used: false,
        reserve_short,
        unsynced_since: None,
    };
    // Replay and garbage collection allocate and free a lot (whole segments, every object
    // path); hand the freed memory back so the daemon's footprint is the index's.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    if !was_clean && !opts.read_only {
        ::log::info!(
            "store was not closed cleanly: replayed {} records, removed {} unreferenced objects{}",
            report.replayed_records,
            report.removed_objects,
            report.torn_tail_cut.as_ref().map(|t| format!(", torn tail: {t}")).unwrap_or_default()
        );
    }
    Ok(Store::from_parts(vfs, ix, log_state, store_id, path, &opts, lock, report))
}

/// Remove every file in `staging/`: private copies of transactions that ended with the
/// process that held them.
fn clear_staging(vfs: &dyn Vfs) -> Result<u64> {
    let names = vfs.read_dir(Path::new(STAGING_DIR)).map_err(io("list staging/"))?;
    let mut removed = 0;
    for n in &names {
        match vfs.remove_file(&Path::new(STAGING_DIR).join(n)) {
            Ok(()) => removed += 1,
            // Not ours (a directory someone put there): leave it, say so.
            Err(e) => ::log::warn!("staging/{n} left in place: {e}"),
        }
    }
    Ok(removed)
}

/// After an unclean stop: objects no message refers to (a commit cut short) are removed,
/// and every message changed since the checkpoint must have its object (else the store is
/// damaged). Messages the checkpoint holds unchanged are not visited: their objects were
/// durable before their records were logged, so before the checkpoint covering them, and a
/// crash cannot take them back. So the cost follows the objects on disk and the changes
/// replayed, not the store's size (`msgfs check` visits every message).
fn collect_garbage(vfs: &dyn Vfs, ix: &Index) -> Result<u64> {
    for (seg, _) in ix.inline.segments() {
        let p = log::segment_path(seg);
        if !vfs.exists(&p) {
            return Err(Error::corrupt(p.display().to_string(), "a log segment holding messages' content is missing"));
        }
    }
    let mut removed = 0;
    for b in 0..256u32 {
        let dir = PathBuf::from(format!("{OBJECTS_DIR}/{b:02x}"));
        for n in vfs.read_dir(&dir).map_err(io(format!("list {}", dir.display())))? {
            let p = dir.join(&n);
            let live = parse_object_name(&n).is_some_and(|(id, version)| {
                ix.version_of(id) == Some(version)
                    && ix.inline_at(id, version).is_none()
                    && p == object_path(id, version)
            });
            if !live {
                vfs.remove_file(&p).map_err(io(format!("remove {}", p.display())))?;
                removed += 1;
            }
        }
    }
    // Damage a lookup found answers "not there": no object may go on that answer's word,
    // and the open fails, naming the file.
    if let Some(e) = ix.base.damage() {
        return Err(e);
    }
    for (id, m) in ix.changed_messages() {
        let p = object_path(id, m.version);
        if ix.inline_at(id, m.version).is_none() && !vfs.exists(&p) {
            return Err(Error::corrupt(p.display().to_string(), "a message's content object is missing"));
        }
    }
    Ok(removed)
}

/// The message id and version an object file's name gives (`{id:016x}-{version:016x}`).
fn parse_object_name(name: &str) -> Option<(u64, u64)> {
    let (id, version) = name.split_once('-')?;
    if id.len() != 16 || version.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(id, 16).ok()?, u64::from_str_radix(version, 16).ok()?))
}

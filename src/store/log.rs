//! The metadata log: append-only segments of checksummed frames, and their replay.
//!
//! A frame holds the records of one group commit. Frames are written whole and synced
//! before the next one is written, so after a crash at most the last frame of the last
//! segment can be torn; a bad frame with a good one after it is damage, not a torn tail.
//!
//! The segment being written is kept zero-filled ahead of its last frame (see
//! [`PREFILL_BYTES`]): all zeros after the last frame is where the log ends, not a torn tail.

use std::path::{Path, PathBuf};

use super::codec::{Dec, Enc};
use super::error::{Error, Result};
use super::index::{Record, Xattrs};
use super::inline::LogLoc;
use super::vfs::{OpenMode, Vfs, VfsFile};

pub const FRAME_MAGIC: u32 = 0x4C47_534D; // "MSGL"
/// magic, payload length, crc, first sequence number, record count.
pub const FRAME_HEADER: usize = 4 + 4 + 4 + 8 + 4;
/// A frame larger than this is taken as damage (no commit group comes near it).
pub const MAX_FRAME: usize = 256 << 20;
/// Start a new segment once the current one passes this size.
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// How far ahead of its last frame the open segment is filled with zeros, durably, so that
/// a commit overwrites blocks the file already has and its `fdatasync` has no size or
/// allocation to journal. On ext4 here a 4 KiB write and its `fdatasync` took 0.23 ms over
/// zeros against 0.46-0.61 ms appended on a loop-mounted image, 0.16 against 0.25 ms on the
/// root disk (means of 2,000, the machine idle; benches/README.md). The zeros are written with the frame that reaches
/// past them and made durable by that frame's sync: one journal commit per this many bytes
/// of log. (Databases do the same with their logs: PostgreSQL zero-fills WAL segments.)
pub const PREFILL_BYTES: u64 = 1 << 20;
/// Zeros are laid down after small frames only: they are written once and then overwritten,
/// which doubles what the log writes, a price worth paying for many small commits each
/// waiting for its sync (a save), not for bulk frames whose sync is mostly their own data (a
/// download or an import of thousands of messages in one frame).
pub const PREFILL_FRAME_MAX: u64 = 256 << 10;
/// Zeros are laid down only while the disk has this much free: they are not for a disk
/// that is filling up (the reserve, [`RESERVE_FILE`], is).
pub const PREFILL_MIN_FREE: u64 = 256 << 20;

pub const LOG_DIR: &str = "log";

pub fn segment_path(first_seq: u64) -> PathBuf {
    PathBuf::from(format!("{LOG_DIR}/{first_seq:016x}.log"))
}

/// The first sequence number a segment's name gives.
pub fn segment_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?.strip_suffix(".log")?;
    u64::from_str_radix(name, 16).ok()
}

fn put_xattrs(e: &mut Enc, x: &Xattrs) {
    e.u32(x.len() as u32);
    for (k, v) in x {
        e.str(k);
        e.bytes(v);
    }
}

fn get_xattrs(d: &mut Dec) -> Result<Xattrs> {
    let n = d.u32()?;
    let mut x = Vec::with_capacity(n.min(1024) as usize);
    for _ in 0..n {
        x.push((Box::from(d.str()?), Box::from(d.bytes()?)));
    }
    Ok(x)
}

pub fn encode_record(e: &mut Enc, r: &Record) {
    if super::remote::encode_record(e, r) {
        return;
    }
    match r {
        Record::Time { ns } => {
            e.u8(9);
            e.i64(*ns);
        }
        Record::FolderTouch { id } => {
            e.u8(10);
            e.u64(*id);
        }
        Record::FolderCreate { id, parent, name, attrs } => {
            e.u8(1);
            e.u64(*id);
            e.u64(*parent);
            e.str(name);
            e.attrs(attrs);
        }
        Record::FolderMove { id, parent, name } => {
            e.u8(2);
            e.u64(*id);
            e.u64(*parent);
            e.str(name);
        }
        Record::FolderDelete { id } => {
            e.u8(3);
            e.u64(*id);
        }
        Record::FolderAttrs { id, attrs } => {
            e.u8(4);
            e.u64(*id);
            e.attrs(attrs);
        }
        Record::MessagePut { id, folder, name, version, size, crc, attrs, flags, xattrs } => {
            e.u8(5);
            e.u64(*id);
            e.u64(*folder);
            e.str(name);
            e.u64(*version);
            e.u64(*size);
            e.u32(*crc);
            e.attrs(attrs);
            e.u8(*flags);
            put_xattrs(e, xattrs);
        }
        Record::MessageMove { id, folder, name } => {
            e.u8(6);
            e.u64(*id);
            e.u64(*folder);
            e.str(name);
        }
        Record::MessageDelete { id } => {
            e.u8(7);
            e.u64(*id);
        }
        Record::MessageMeta { id, attrs, flags, xattrs } => {
            e.u8(8);
            e.u64(*id);
            e.attrs(attrs);
            e.u8(*flags);
            put_xattrs(e, xattrs);
        }
        Record::Content { id, version, data, .. } => {
            let data = data.as_ref().expect("inline content to log has its bytes");
            e.u8(17);
            e.u64(*id);
            e.u64(*version);
            e.u32(data.0.len() as u32);
            e.marks.push(e.buf.len());
            e.buf.extend_from_slice(&data.0);
        }
        Record::FolderRemote { .. }
        | Record::MessageRemote { .. }
        | Record::UploadIntent(_)
        | Record::UploadIntentClear { .. }
        | Record::MessageKeywords { .. }
        | Record::SyncedKeywords { .. } => unreachable!("encoded by remote::encode_record"),
    }
}

pub fn decode_record(d: &mut Dec) -> Result<Record> {
    let tag = d.u8()?;
    Ok(match tag {
        1 => Record::FolderCreate { id: d.u64()?, parent: d.u64()?, name: d.str()?.into(), attrs: d.attrs()? },
        2 => Record::FolderMove { id: d.u64()?, parent: d.u64()?, name: d.str()?.into() },
        3 => Record::FolderDelete { id: d.u64()? },
        4 => Record::FolderAttrs { id: d.u64()?, attrs: d.attrs()? },
        5 => Record::MessagePut {
            id: d.u64()?,
            folder: d.u64()?,
            name: d.str()?.into(),
            version: d.u64()?,
            size: d.u64()?,
            crc: d.u32()?,
            attrs: d.attrs()?,
            flags: d.u8()?,
            xattrs: get_xattrs(d)?,
        },
        6 => Record::MessageMove { id: d.u64()?, folder: d.u64()?, name: d.str()?.into() },
        7 => Record::MessageDelete { id: d.u64()? },
        8 => Record::MessageMeta { id: d.u64()?, attrs: d.attrs()?, flags: d.u8()?, xattrs: get_xattrs(d)? },
        9 => Record::Time { ns: d.i64()? },
        10 => Record::FolderTouch { id: d.u64()? },
        17 => {
            let (id, version) = (d.u64()?, d.u64()?);
            let len = d.u32()? as u64;
            let (seg, off) = d.here();
            d.skip(len as usize)?;
            Record::Content { id, version, at: LogLoc { seg, off, len }, data: None }
        }
        t => match super::remote::decode_record(t, d) {
            Some(r) => r?,
            None => return Err(Error::corrupt("log record", format!("unknown record type {t}"))),
        },
    })
}

/// Encode a frame holding `records`, numbered from `first_seq`.
pub fn encode_frame(first_seq: u64, records: &[Record]) -> Vec<u8> {
    encode_frame_marked(first_seq, records).0
}

/// [`encode_frame`], and where each inline content's bytes start in the frame (in record
/// order), so the committer can say where they landed.
pub fn encode_frame_marked(first_seq: u64, records: &[Record]) -> (Vec<u8>, Vec<u64>) {
    // Encoded in place after room for magic, length and checksum, which are filled in
    // last: a frame of inline content can be tens of megabytes, not worth copying again.
    let inline: usize = records
        .iter()
        .map(|r| match r {
            Record::Content { data: Some(d), .. } => d.0.len() + 21,
            _ => 64,
        })
        .sum();
    let mut f = Enc { buf: Vec::with_capacity(FRAME_HEADER + inline), ..Enc::default() };
    f.buf.extend_from_slice(&[0; 12]);
    f.u64(first_seq);
    f.u32(records.len() as u32);
    for r in records {
        encode_record(&mut f, r);
    }
    let payload_len = f.buf.len() - FRAME_HEADER;
    let crc = crc32c::crc32c(&f.buf[12..]);
    f.buf[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    f.buf[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    f.buf[8..12].copy_from_slice(&crc.to_le_bytes());
    (f.buf, f.marks.iter().map(|m| *m as u64).collect())
}

/// A frame read back: its place in the segment and its records.
pub struct Frame {
    pub offset: u64,
    pub first_seq: u64,
    pub records: Vec<Record>,
}

/// Try to read a whole, checksummed frame at `off`; None if there is none there.
fn frame_at(buf: &[u8], off: usize, place: &str, seg: u64) -> Option<Result<Frame>> {
    let rest = &buf[off..];
    if rest.len() < FRAME_HEADER {
        return None;
    }
    let magic = u32::from_le_bytes(rest[0..4].try_into().unwrap());
    let len = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(rest[8..12].try_into().unwrap());
    if magic != FRAME_MAGIC || len > MAX_FRAME || rest.len() < FRAME_HEADER + len {
        return None;
    }
    let body = &rest[12..FRAME_HEADER + len];
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let first_seq = u64::from_le_bytes(body[0..8].try_into().unwrap());
    let count = u32::from_le_bytes(body[8..12].try_into().unwrap());
    let mut d = Dec::in_segment(&body[12..], place, seg, (off + FRAME_HEADER) as u64);
    let mut records = Vec::with_capacity(count.min(1 << 20) as usize);
    for _ in 0..count {
        match decode_record(&mut d) {
            Ok(r) => records.push(r),
            // A frame whose checksum holds but whose records do not parse was written
            // wrong: that is damage, never a torn tail.
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(Frame { offset: off as u64, first_seq, records }))
}

/// The frames of one segment. `torn_at` is where a torn tail starts, if any; `len` is where
/// the log ends in it (after the last whole frame, or at the torn tail), `file_len` the
/// file's size: past `len` there are only zeros ([`PREFILL_BYTES`]) or the torn tail.
pub struct Segment {
    pub frames: Vec<Frame>,
    pub torn_at: Option<u64>,
    pub len: u64,
    pub file_len: u64,
}

/// Read every frame of a segment. A bad frame followed by a good one is damage.
pub fn read_segment(vfs: &dyn Vfs, path: &Path) -> Result<Segment> {
    let place = path.display().to_string();
    let f = vfs.open(path, OpenMode::Read).map_err(|e| Error::io(format!("open {place}"), e))?;
    let buf = f.read_all().map_err(|e| Error::io(format!("read {place}"), e))?;
    let seg = segment_of(path).unwrap_or(0);
    let mut frames = Vec::new();
    let mut off = 0usize;
    while off < buf.len() {
        match frame_at(&buf, off, &place, seg) {
            Some(Ok(fr)) => {
                let len = u32::from_le_bytes(buf[off + 4..off + 8].try_into().unwrap()) as usize;
                frames.push(fr);
                off += FRAME_HEADER + len;
            }
            Some(Err(e)) => {
                return Err(match e {
                    Error::Corrupt { what, .. } => Error::corrupt(format!("{place} at byte {off}"), what),
                    e => e,
                })
            }
            None if buf[off..].iter().all(|b| *b == 0) => {
                // The zeros laid down ahead of the log: its end. (A frame lost whole to a
                // crash leaves them too: it was never acknowledged, like a torn one.)
                return Ok(Segment { frames, torn_at: None, len: off as u64, file_len: buf.len() as u64 });
            }
            None => {
                // Look for any whole frame after the bad bytes: if there is one, the bad
                // frame is not a torn tail but damage in the middle of the log.
                // Only a frame that continues the sequence counts, so bytes inside a record
                // that happen to look like a frame (an xattr value) are not mistaken for one.
                let expected = frames.last().map(|f: &Frame| f.first_seq + f.records.len() as u64);
                let magic = FRAME_MAGIC.to_le_bytes();
                let mut later = off + 1;
                // (A search for the magic's first byte: a torn tail may be followed by a
                // megabyte of prefilled zeros.)
                while let Some(p) = buf[later..].iter().position(|b| *b == magic[0]) {
                    later += p;
                    let here = later;
                    later += 1;
                    if buf[here..].starts_with(&magic) {
                        if let Some(Ok(fr)) = frame_at(&buf, here, &place, seg) {
                            if expected.is_some_and(|e| fr.first_seq < e) {
                                continue;
                            }
                            return Err(Error::corrupt(
                                format!("{place} at byte {off}"),
                                format!("bad frame followed by a good one at byte {here}"),
                            ));
                        }
                    }
                }
                return Ok(Segment { frames, torn_at: Some(off as u64), len: off as u64, file_len: buf.len() as u64 });
            }
        }
    }
    Ok(Segment { frames, torn_at: None, len: buf.len() as u64, file_len: buf.len() as u64 })
}

/// Segment paths in log order.
pub fn list_segments(vfs: &dyn Vfs) -> Result<Vec<(u64, PathBuf)>> {
    let names = vfs.read_dir(Path::new(LOG_DIR)).map_err(|e| Error::io("list log/", e))?;
    let mut segs = Vec::new();
    for n in names {
        if let Some(hex) = n.strip_suffix(".log") {
            let seq = u64::from_str_radix(hex, 16)
                .map_err(|_| Error::corrupt(format!("{LOG_DIR}/{n}"), "segment name is not a sequence number"))?;
            segs.push((seq, PathBuf::from(format!("{LOG_DIR}/{n}"))));
        }
    }
    segs.sort();
    Ok(segs)
}

/// The open segment the committer appends to.
pub struct Writer {
    pub file: Box<dyn VfsFile>,
    pub first_seq: u64,
    /// Where the next frame goes.
    pub len: u64,
    /// The file's size: `len..zeroed` holds zeros ([`PREFILL_BYTES`]).
    pub zeroed: u64,
}

impl Writer {
    /// A writer for a segment whose frames end at `len` and whose file is `file_len` long,
    /// zeros in between.
    pub fn new(file: Box<dyn VfsFile>, first_seq: u64, len: u64, file_len: u64) -> Writer {
        Writer { file, first_seq, len, zeroed: file_len.max(len) }
    }

    /// Write a frame at the end of the log, and zeros ahead of it when it reaches past
    /// those there ([`PREFILL_BYTES`]; not past a full segment, which takes no more frames).
    /// On failure (a full disk) the segment is cut back to where it was, so the failed
    /// commit leaves no trace. Zeros that find no room are not an error: commits then
    /// extend the file as they go, slower.
    pub fn write(&mut self, frame: &[u8]) -> std::io::Result<()> {
        if let Err(e) = self.file.write_all_at(frame, self.len) {
            let _ = self.file.set_len(self.len);
            self.zeroed = self.len;
            return Err(e);
        }
        self.len += frame.len() as u64;
        if self.len > self.zeroed {
            self.zeroed = self.len;
            let target = (self.len + PREFILL_BYTES).min(SEGMENT_BYTES);
            if target > self.len && frame.len() as u64 <= PREFILL_FRAME_MAX && self.room_to_prepare() {
                match self.file.write_all_at(&vec![0; (target - self.len) as usize], self.len) {
                    Ok(()) => self.zeroed = target,
                    Err(e) => {
                        // Give back what part of them took: the disk is fuller than it looked.
                        let _ = self.file.set_len(self.len);
                        ::log::debug!("no room to prepare the log ahead ({e}): commits extend it");
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the disk has room to spare for zeros ahead of the log: on a nearly full
    /// disk they would take the space a deletion just freed for the user's next save.
    fn room_to_prepare(&self) -> bool {
        let Some(fd) = self.file.raw_fd() else { return true };
        // SAFETY: fstatvfs fills the zeroed struct we own, given an open descriptor.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstatvfs(fd, &mut st) } != 0 {
            return false;
        }
        (st.f_bavail as u64).saturating_mul(st.f_frsize as u64) >= PREFILL_MIN_FREE
    }

    /// Done with this segment (the log goes on in a new one, or the store closes): cut its
    /// zeros, so that a segment no longer written ends with its last frame, as every
    /// segment did before the zeros (an older msgfs takes them for a torn tail). A failure
    /// changes nothing for this version, which reads zeros after the last frame as the end.
    pub fn retire(self) {
        if self.zeroed > self.len {
            if let Err(e) = self.file.set_len(self.len).and_then(|()| self.file.sync()) {
                ::log::debug!("cutting a retired log segment's zeros: {e}");
            }
        }
    }
}

/// The reserve: a file of up to [`RESERVE_BYTES`] kept in the store so that deletions can
/// be logged on a full disk. When a frame of deletions cannot be appended for want of
/// space, the reserve gives back a [`RESERVE_STEP`] or more and the append is tried again;
/// after every append it grows back as far as the free space allows (the deletions free
/// their objects). Saves never shrink it: on a full disk they fail with ENOSPC, and
/// deleting is how the user makes room. Like a filesystem's blocks reserved for root, it
/// takes space from saves before they run out.
pub const RESERVE_FILE: &str = "reserve";
pub const RESERVE_BYTES: u64 = 4 << 20;
/// What one shortage takes from the reserve, at least: room for many deletion frames.
pub const RESERVE_STEP: u64 = 256 << 10;

/// Whether a frame of these records only takes away (messages or folders deleted), so that
/// it may use the reserve: it frees space as soon as it is durable. The commit time every
/// frame starts with, and the folder times a deletion changes, take nothing.
pub fn only_deletions(records: &[Record]) -> bool {
    let deletion = |r: &Record| matches!(r, Record::MessageDelete { .. } | Record::FolderDelete { .. });
    records.iter().any(deletion)
        && records.iter().all(|r| deletion(r) || matches!(r, Record::Time { .. } | Record::FolderTouch { .. }))
}

/// Whether [`ensure_reserve`]'s answer is a whole reserve (a short one is grown again at
/// the next append, see `LogState::reserve_short`).
pub fn reserve_whole(r: &std::io::Result<u64>) -> bool {
    matches!(r, Ok(n) if *n >= RESERVE_BYTES)
}

/// Grow the reserve towards [`RESERVE_BYTES`] as far as the free space allows; returns its
/// size. Written with bytes that do not compress, so that a filesystem with compression or
/// deduplication really sets the space aside (fallocate is not everywhere either). Not
/// synced: it holds nothing, and a reserve lost in a crash is grown again at open. Only on a
/// real filesystem: the crash tests' backend has no space to set aside.
pub fn ensure_reserve(vfs: &dyn Vfs) -> std::io::Result<u64> {
    if vfs.real_path(Path::new("")).is_none() {
        return Ok(RESERVE_BYTES);
    }
    let f = match vfs.open(Path::new(RESERVE_FILE), OpenMode::ReadWrite) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vfs.open(Path::new(RESERVE_FILE), OpenMode::CreateNew)?,
        Err(e) => return Err(e),
    };
    let mut len = f.len()?;
    if len >= RESERVE_BYTES {
        return Ok(len);
    }
    let mut chunk = vec![0u8; 64 << 10];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ len;
    while len < RESERVE_BYTES {
        for b in chunk.iter_mut() {
            // xorshift64: cheap bytes no compressor can shrink.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let n = chunk.len().min((RESERVE_BYTES - len) as usize);
        if let Err(e) = f.write_all_at(&chunk[..n], len) {
            // Full: keep what was written whole, drop a partly written chunk.
            let _ = f.set_len(len);
            if e.raw_os_error() == Some(libc::ENOSPC) {
                break;
            }
            return Err(e);
        }
        len += n as u64;
    }
    Ok(len)
}

/// Give back at least `need` bytes of the reserve (a [`RESERVE_STEP`] or more, all of it
/// at most); true if it gave back anything.
pub fn release_reserve(vfs: &dyn Vfs, need: u64) -> bool {
    let Ok(f) = vfs.open(Path::new(RESERVE_FILE), OpenMode::ReadWrite) else { return false };
    let len = f.len().unwrap_or(0);
    if len == 0 {
        return false;
    }
    let give = need.div_ceil(RESERVE_STEP).max(1) * RESERVE_STEP;
    f.set_len(len.saturating_sub(give)).is_ok()
}

#[cfg(test)]
mod reserve_tests {
    //! The reserve's rule on a simulated full disk: a deletion that finds no room in the log
    //! takes it from the reserve; a save does not.

    use std::path::Path;
    use std::sync::Arc;

    use super::{OpenMode, RESERVE_FILE, RESERVE_STEP};
    use crate::store::simfs::SimFs;
    use crate::store::vfs::Vfs;
    use crate::store::{Options, SaveFlags, Store};

    fn reserve_len(fs: &SimFs) -> u64 {
        fs.open(Path::new(RESERVE_FILE), OpenMode::Read).unwrap().len().unwrap()
    }

    #[test]
    fn a_deletion_that_finds_no_room_uses_the_reserve_and_a_save_does_not() {
        let fs = SimFs::new();
        let st = Store::open_vfs(Arc::new(fs.clone()), Options { create: true, ..Default::default() }).unwrap();
        // The simulated disk has no free space to measure, so the store grows no reserve
        // there by itself: lay one down as a real disk would have it.
        let r = fs.open(Path::new(RESERVE_FILE), OpenMode::CreateNew).unwrap();
        r.write_all_at(&vec![7u8; 1 << 20], 0).unwrap();
        let inbox = st.folder_by_path("Inbox").unwrap();
        let mut t = st.begin_new(inbox, "a.eml").unwrap();
        t.write_at(b"Subject: a\r\n\r\nkept", 0).unwrap();
        let id = t.save(SaveFlags(0)).unwrap().id;

        // A save whose log append fails keeps failing: the reserve is not for saves.
        let mut t = st.begin_new(inbox, "b.eml").unwrap();
        t.write_at(b"Subject: b\r\n\r\nno room", 0).unwrap();
        fs.fail_write(1);
        let e = t.save(SaveFlags(0)).unwrap_err();
        assert!(e.to_string().contains("append to the log: No space left"), "{e}");
        assert_eq!(reserve_len(&fs), 1 << 20);

        // A deletion gets its room from the reserve.
        fs.fail_write(1);
        st.delete_message(id).unwrap();
        assert_eq!(reserve_len(&fs), (1 << 20) - RESERVE_STEP);
        assert!(st.lookup(inbox, "a.eml").is_err());
    }
}

#[cfg(test)]
mod prefill_tests {
    //! The zeros laid down ahead of the log: where the log ends, across a crash (a frame
    //! torn over them, or lost whole) and a clean close.

    use std::sync::Arc;

    use super::{list_segments, read_segment, OpenMode, PREFILL_BYTES};
    use crate::store::simfs::SimFs;
    use crate::store::vfs::Vfs;
    use crate::store::{Options, SaveFlags, Store};

    fn save(st: &Store, name: &str) -> u64 {
        let inbox = st.folder_by_path("Inbox").unwrap();
        let mut t = st.begin_new(inbox, name).unwrap();
        t.write_at(format!("Subject: {name}\r\n\r\nbody").as_bytes(), 0).unwrap();
        t.save(SaveFlags(0)).unwrap().id
    }

    fn last_segment(fs: &SimFs) -> (u64, u64, u64, Option<u64>) {
        let (_, path) = list_segments(fs).unwrap().pop().unwrap();
        let file = fs.open(&path, OpenMode::Read).unwrap().len().unwrap();
        let seg = read_segment(fs, &path).unwrap();
        (seg.len, seg.file_len, file, seg.torn_at)
    }

    #[test]
    fn frames_go_over_zeros_laid_down_ahead_and_the_log_ends_where_they_begin() {
        let fs = SimFs::new();
        let st = Store::open_vfs(Arc::new(fs.clone()), Options { create: true, ..Default::default() }).unwrap();
        save(&st, "a.eml");
        let (len, file_len, file, torn) = last_segment(&fs);
        assert!(len > 0 && torn.is_none());
        assert_eq!(file_len, file);
        assert!(file >= len + PREFILL_BYTES, "zeros ahead: log ends at {len}, file is {file} bytes");
        // The next commits land in the zeros: the file does not grow.
        save(&st, "b.eml");
        save(&st, "c.eml");
        let (len2, _, file2, _) = last_segment(&fs);
        assert!(len2 > len && file2 == file, "log end {len} -> {len2}, file {file} -> {file2}");

        // A crash: the synced zeros are read as the end, not as a torn tail.
        let after = fs.recover(0);
        let st2 = Store::open_vfs(Arc::new(after.clone()), Options::default()).unwrap();
        assert!(st2.report().torn_tail_cut.is_none(), "{:?}", st2.report().torn_tail_cut);
        let inbox = st2.folder_by_path("Inbox").unwrap();
        assert!(st2.lookup(inbox, "c.eml").is_ok());
        // Commits go on from the log's end, not from the file's.
        save(&st2, "d.eml");
        let (len3, _, _, torn3) = last_segment(&after);
        assert!(torn3.is_none() && len3 > len2);
        // A clean close leaves every segment ending with its last frame, as an older
        // msgfs expects.
        st2.close().unwrap();
        for (_, path) in list_segments(&after).unwrap() {
            let seg = read_segment(&after, &path).unwrap();
            assert_eq!(seg.len, seg.file_len, "{}", path.display());
        }
        drop(st);
        let st3 = Store::open_vfs(Arc::new(after), Options::default()).unwrap();
        assert!(st3.report().was_clean);
        assert!(st3.lookup(inbox, "d.eml").is_ok());
    }

    #[test]
    fn a_frame_torn_over_the_zeros_is_cut_and_one_lost_whole_leaves_them_as_they_were() {
        for torn in [0usize, 5, 40] {
            let fs = SimFs::new();
            let st = Store::open_vfs(Arc::new(fs.clone()), Options { create: true, ..Default::default() }).unwrap();
            save(&st, "kept.eml");
            // The next save's frame is written over the zeros, and its sync never happens.
            fs.crash_at_sync(1);
            let inbox = st.folder_by_path("Inbox").unwrap();
            let mut t = st.begin_new(inbox, "lost.eml").unwrap();
            t.write_at(b"Subject: lost\r\n\r\nnever acknowledged", 0).unwrap();
            assert!(t.save(SaveFlags(0)).is_err());
            let after = fs.recover(torn);
            let (_, _, _, seen_torn) = last_segment(&after);
            assert_eq!(seen_torn.is_some(), torn > 0, "torn {torn}");
            let st2 = Store::open_vfs(Arc::new(after.clone()), Options::default()).unwrap();
            assert_eq!(st2.report().torn_tail_cut.is_some(), torn > 0, "torn {torn}");
            assert!(st2.lookup(inbox, "kept.eml").is_ok());
            assert!(st2.lookup(inbox, "lost.eml").is_err());
            save(&st2, "after.eml");
            st2.close().unwrap();
            assert!(crate::store::check::check(&after).ok());
        }
    }
}

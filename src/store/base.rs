//! The mapped checkpoint (checkpoint format 6): the index as of the last checkpoint, read in
//! place through a memory map, so that opening a store costs what its folders cost, and
//! memory what is looked at, not what the store holds.
//!
//! Layout (msgfs(5), "Checkpoint format 6"): a 4 KiB header block, then block-aligned
//! regions: the child table (each folder's entries, sorted by name), the message table
//! (fixed-width rows sorted by id), the heap (names and xattrs the rows point into), the
//! folder records and the extra section (replication state, live inline bytes by segment),
//! then a table of one CRC32C per 4 KiB block after the header, with a CRC of its own.
//!
//! Invariant: no byte of a region is handed out before the blocks holding it have matched
//! their CRC (checked on first touch, remembered in `verified`), so damage anywhere in the
//! file is reported as `Corrupt` naming the file, never read as a message.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::codec::Dec;
use super::error::{Error, Result};
use super::index::{Attrs, Folder, Id, Message, Xattrs};
use super::inline::LogLoc;
use super::vfs::Mapped;

/// The checkpoint format this module reads and `base_write` writes.
pub(super) const FORMAT_MAPPED: u32 = 6;
/// The unit of checksums, and the alignment of every region.
pub(super) const BLOCK: usize = 4096;
/// A child row: the name's heap offset, the entry's id, the message's row (or
/// [`FOLDER_ROW`] for a folder), u64 each.
pub(super) const CHILD_ROW: usize = 24;
pub(super) const FOLDER_ROW: u64 = u64::MAX;
/// A message row: id, folder, version, size, mtime, ctime (8 bytes each), mode, uid, gid,
/// crc (4 each), name offset, xattrs offset (or [`NO_XATTRS`]), inline segment (0: the
/// content is an object file), inline offset (8 each), inline length (4), flags (1), and
/// 3 bytes of padding.
pub(super) const MESSAGE_ROW: usize = 104;
pub(super) const NO_XATTRS: u64 = u64::MAX;
/// The header's fields, then its CRC32C, all in the first block.
pub(super) const HEADER_LEN: usize = 136;
pub(super) const MAGIC: &[u8; 8] = b"MSGFSCKP";

/// The header of a format 6 checkpoint (byte offsets in the file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Header {
    pub last_seq: u64,
    pub next_id: u64,
    pub last_cn: u64,
    pub folder_count: u64,
    pub message_count: u64,
    pub child_count: u64,
    pub children_off: u64,
    pub messages_off: u64,
    pub heap_off: u64,
    pub heap_len: u64,
    pub folders_off: u64,
    pub folders_len: u64,
    pub extra_off: u64,
    pub extra_len: u64,
    /// Where the block CRC table starts: every byte from [`BLOCK`] to here is covered.
    pub crcs_off: u64,
}

impl Header {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN + 4);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&FORMAT_MAPPED.to_le_bytes());
        b.extend_from_slice(&(BLOCK as u32).to_le_bytes());
        for v in self.fields() {
            b.extend_from_slice(&v.to_le_bytes());
        }
        debug_assert_eq!(b.len(), HEADER_LEN);
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    fn fields(&self) -> [u64; 15] {
        [
            self.last_seq,
            self.next_id,
            self.last_cn,
            self.folder_count,
            self.message_count,
            self.child_count,
            self.children_off,
            self.messages_off,
            self.heap_off,
            self.heap_len,
            self.folders_off,
            self.folders_len,
            self.extra_off,
            self.extra_len,
            self.crcs_off,
        ]
    }

    fn decode(b: &[u8], place: &str) -> Result<Header> {
        let bad = |w: &str| Error::corrupt(place, format!("{w}; run `msgfs check`"));
        if b.len() < BLOCK {
            return Err(bad("shorter than its header block"));
        }
        let crc = u32::from_le_bytes(b[HEADER_LEN..HEADER_LEN + 4].try_into().unwrap());
        if crc32c::crc32c(&b[..HEADER_LEN]) != crc {
            return Err(bad("the header fails its checksum"));
        }
        if u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize != BLOCK {
            return Err(bad("unknown block size"));
        }
        let f: Vec<u64> = b[16..HEADER_LEN].chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
        Ok(Header {
            last_seq: f[0],
            next_id: f[1],
            last_cn: f[2],
            folder_count: f[3],
            message_count: f[4],
            child_count: f[5],
            children_off: f[6],
            messages_off: f[7],
            heap_off: f[8],
            heap_len: f[9],
            folders_off: f[10],
            folders_len: f[11],
            extra_off: f[12],
            extra_len: f[13],
            crcs_off: f[14],
        })
    }
}

/// The number of blocks covering `len` bytes.
pub(super) fn blocks(len: usize) -> usize {
    len.div_ceil(BLOCK)
}

/// A message row as stored: the message, and where its content lies if it is in the log.
pub(super) struct Row {
    pub id: Id,
    pub message: Message,
    pub inline: Option<LogLoc>,
}

/// A mapped checkpoint. Shared (`Arc`) by the index and the copies of it: a map lives until
/// the last index naming it is dropped, which readers' guards prevent while they read.
pub struct Base {
    bytes: Mapped,
    place: String,
    h: Header,
    /// One bit per block: set once the block matched its CRC.
    verified: Vec<AtomicU64>,
    /// The first damage a lookup found and could not return (place, what): see `overlay.rs`.
    pub(super) damage: OnceLock<(String, String)>,
}

impl Default for Base {
    fn default() -> Base {
        Base {
            bytes: Mapped::Read(Vec::new()),
            place: String::new(),
            h: Header::default(),
            verified: Vec::new(),
            damage: OnceLock::new(),
        }
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

impl Base {
    /// Check a checkpoint's header and block table (not its blocks: they are checked as
    /// they are read). `place` names the file in errors.
    pub fn open(bytes: Mapped, place: &str) -> Result<Base> {
        let h = Header::decode(&bytes, place)?;
        let bad = |w: String| Error::corrupt(place, format!("{w}; run `msgfs check`"));
        let crcs_off = h.crcs_off as usize;
        if crcs_off < BLOCK || crcs_off % BLOCK != 0 {
            return Err(bad(format!("block table at byte {crcs_off}")));
        }
        let n = (crcs_off - BLOCK) / BLOCK;
        let table_end = crcs_off + 4 * n;
        if bytes.len() != table_end + 4 {
            return Err(bad(format!("{} bytes where the header says {}", bytes.len(), table_end + 4)));
        }
        if crc32c::crc32c(&bytes[crcs_off..table_end]) != u32_at(&bytes, table_end) {
            return Err(bad("the block checksum table fails its checksum".into()));
        }
        let region =
            |off: u64, len: u64| off as usize >= BLOCK && off.checked_add(len).is_some_and(|e| e <= h.crcs_off);
        let rows = |n: u64, w: usize| n.saturating_mul(w as u64);
        if !region(h.children_off, rows(h.child_count, CHILD_ROW))
            || !region(h.messages_off, rows(h.message_count, MESSAGE_ROW))
            || !region(h.heap_off, h.heap_len)
            || !region(h.folders_off, h.folders_len)
            || !region(h.extra_off, h.extra_len)
        {
            return Err(bad("a region lies outside the file".into()));
        }
        let verified = (0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        Ok(Base { bytes, place: place.to_string(), h, verified, damage: OnceLock::new() })
    }

    pub(super) fn header(&self) -> &Header {
        &self.h
    }

    pub fn message_count(&self) -> usize {
        self.h.message_count as usize
    }

    fn damaged(&self, what: String) -> Error {
        Error::corrupt(&self.place, format!("{what}; the checkpoint is damaged: run `msgfs check`"))
    }

    fn verify_block(&self, b: usize) -> Result<()> {
        let (word, bit) = (b / 64, 1u64 << (b % 64));
        if self.verified[word].load(Ordering::Relaxed) & bit != 0 {
            return Ok(());
        }
        let start = BLOCK + b * BLOCK;
        let want = u32_at(&self.bytes, self.h.crcs_off as usize + 4 * b);
        if crc32c::crc32c(&self.bytes[start..start + BLOCK]) != want {
            return Err(self.damaged(format!("block {b} (bytes {start} to {}) fails its checksum", start + BLOCK)));
        }
        self.verified[word].fetch_or(bit, Ordering::Relaxed);
        Ok(())
    }

    /// Check every block (for `msgfs check`): the first damaged one is the error.
    pub fn verify_all(&self) -> Result<()> {
        (0..(self.h.crcs_off as usize).saturating_sub(BLOCK) / BLOCK).try_for_each(|b| self.verify_block(b))
    }

    /// `len` bytes at `off`, once every block they touch is verified.
    fn checked(&self, off: usize, len: usize) -> Result<&[u8]> {
        let end = off.checked_add(len).filter(|&e| off >= BLOCK && e <= self.h.crcs_off as usize);
        let Some(end) = end else {
            return Err(self.damaged(format!("a reference to bytes {off} to {} lies outside the file", off + len)));
        };
        for b in (off - BLOCK) / BLOCK..=(end.max(off + 1) - 1 - BLOCK) / BLOCK {
            self.verify_block(b)?;
        }
        Ok(&self.bytes[off..end])
    }

    /// `len` bytes of the heap at heap offset `at`.
    fn heap(&self, at: u64, len: usize) -> Result<&[u8]> {
        if at.checked_add(len as u64).is_none_or(|e| e > self.h.heap_len) {
            return Err(self.damaged(format!("heap offset {at} lies outside the heap")));
        }
        self.checked(self.h.heap_off as usize + at as usize, len)
    }

    /// The name stored at heap offset `at` (a u16 length, then UTF-8).
    pub fn name(&self, at: u64) -> Result<&str> {
        let n = u16::from_le_bytes(self.heap(at, 2)?.try_into().unwrap()) as usize;
        std::str::from_utf8(self.heap(at + 2, n)?).map_err(|_| self.damaged(format!("name at heap offset {at}")))
    }

    /// The xattrs stored at heap offset `at` (a u32 length, then count and pairs as the log
    /// encodes them).
    fn xattrs(&self, at: u64) -> Result<Xattrs> {
        let n = u32::from_le_bytes(self.heap(at, 4)?.try_into().unwrap()) as usize;
        let mut d = Dec::new(self.heap(at + 4, n)?, &self.place);
        let mut x = Vec::new();
        for _ in 0..d.u32()? {
            x.push((Box::from(d.str()?), Box::from(d.bytes()?)));
        }
        Ok(x)
    }

    fn message_bytes(&self, i: usize) -> Result<&[u8]> {
        self.checked(self.h.messages_off as usize + i * MESSAGE_ROW, MESSAGE_ROW)
    }

    /// The id in row `i`.
    pub fn row_id(&self, i: usize) -> Result<Id> {
        Ok(u64_at(self.message_bytes(i)?, 0))
    }

    /// The row of message `id`, by binary search over the id-sorted table.
    pub fn find_message(&self, id: Id) -> Result<Option<usize>> {
        let (mut lo, mut hi) = (0, self.message_count());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.row_id(mid)?.cmp(&id) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Some(mid)),
            }
        }
        Ok(None)
    }

    /// Row `i`'s folder, name and version, without decoding the rest.
    pub fn place_of(&self, i: usize) -> Result<(Id, &str, u64)> {
        let b = self.message_bytes(i)?;
        Ok((u64_at(b, 8), self.name(u64_at(b, 64))?, u64_at(b, 16)))
    }

    /// Row `i`'s id, version, and the place of its content if it is in the log.
    pub fn inline_of(&self, i: usize) -> Result<(Id, u64, Option<LogLoc>)> {
        let b = self.message_bytes(i)?;
        let at = match u64_at(b, 80) {
            0 => None,
            seg => Some(LogLoc { seg, off: u64_at(b, 88), len: u64::from(u32_at(b, 96)) }),
        };
        Ok((u64_at(b, 0), u64_at(b, 16), at))
    }

    /// Row `i`, decoded.
    pub fn row(&self, i: usize) -> Result<Row> {
        let b = self.message_bytes(i)?;
        let attrs = Attrs { mode: u32_at(b, 48), uid: u32_at(b, 52), gid: u32_at(b, 56), mtime: u64_at(b, 32) as i64 };
        let xattrs = match u64_at(b, 72) {
            NO_XATTRS => None,
            at => Some(Box::new(self.xattrs(at)?)),
        };
        let message = Message {
            folder: u64_at(b, 8),
            version: u64_at(b, 16),
            size: u64_at(b, 24),
            attrs,
            ctime: u64_at(b, 40) as i64,
            crc: u32_at(b, 60),
            flags: b[100],
            name: Arc::from(self.name(u64_at(b, 64))?),
            xattrs,
        };
        let inline = match u64_at(b, 80) {
            0 => None,
            seg => Some(LogLoc { seg, off: u64_at(b, 88), len: u64::from(u32_at(b, 96)) }),
        };
        Ok(Row { id: u64_at(b, 0), message, inline })
    }

    /// Row `i`'s bytes, and its xattrs as stored in the heap (length included), if any.
    pub fn raw_row(&self, i: usize) -> Result<([u8; MESSAGE_ROW], Option<&[u8]>)> {
        let b: [u8; MESSAGE_ROW] = self.message_bytes(i)?.try_into().expect("a whole row");
        let xattrs = match u64_at(&b, 72) {
            NO_XATTRS => None,
            at => {
                let n = u32::from_le_bytes(self.heap(at, 4)?.try_into().unwrap()) as usize;
                Some(self.heap(at, 4 + n)?)
            }
        };
        Ok((b, xattrs))
    }

    /// Child row `i`: its name, id, and message row ([`FOLDER_ROW`] for a folder).
    pub fn child(&self, i: u64) -> Result<(&str, Id, u64)> {
        if i >= self.h.child_count {
            return Err(self.damaged(format!("child row {i} lies past the table")));
        }
        let b = self.checked(self.h.children_off as usize + i as usize * CHILD_ROW, CHILD_ROW)?;
        Ok((self.name(u64_at(b, 0))?, u64_at(b, 8), u64_at(b, 16)))
    }

    /// The child named `name` among rows `range` (one folder's, sorted by name).
    pub fn find_child(&self, range: (u64, u64), name: &str) -> Result<Option<(Id, u64)>> {
        let (mut lo, mut hi) = (range.0, range.0 + range.1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (n, id, row) = self.child(mid)?;
            match n.as_bytes().cmp(name.as_bytes()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Some((id, row))),
            }
        }
        Ok(None)
    }

    /// Tell the kernel the whole map is about to be read in order (a checkpoint merging
    /// it, a compaction walking its rows), or that it no longer is: large read-ahead
    /// instead of a page or two per fault. Advice only.
    pub fn scanning(&self, on: bool) {
        if let Mapped::Map(map) = &self.bytes {
            let _ = map.advise(if on { memmap2::Advice::Sequential } else { memmap2::Advice::Normal });
        }
    }

    /// Ask the kernel to read in a folder's child rows (`range`), their names, and the
    /// message rows they point at when those lie close together (as they do for messages
    /// saved one after the other), before a listing walks them. Advice only: errors and
    /// damage are left to the reads.
    pub fn prefetch_children(&self, range: (u64, u64)) {
        const WORTH: u64 = 64;
        let Mapped::Map(map) = &self.bytes else { return };
        if range.1 < WORTH || range.0 + range.1 > self.h.child_count {
            return;
        }
        let rows = self.h.children_off as usize + range.0 as usize * CHILD_ROW;
        let _ = map.advise_range(memmap2::Advice::WillNeed, rows, range.1 as usize * CHILD_ROW);
        let ends = |i: u64| {
            let at = self.h.children_off as usize + i as usize * CHILD_ROW;
            self.bytes.get(at..at + CHILD_ROW).map(|b| (u64_at(b, 0), u64_at(b, 16)))
        };
        let (Some((name0, row0)), Some((name1, row1))) = (ends(range.0), ends(range.0 + range.1 - 1)) else { return };
        let heap = self.h.heap_off + name0;
        if name1 >= name0 && name1 - name0 < range.1 * 512 && heap + (name1 - name0) + 258 <= self.h.crcs_off {
            let _ = map.advise_range(memmap2::Advice::WillNeed, heap as usize, (name1 - name0 + 258) as usize);
        }
        let (lo, hi) = (row0.min(row1), row0.max(row1));
        if hi != FOLDER_ROW && hi < self.h.message_count && hi - lo < range.1 * 2 {
            let at = self.h.messages_off as usize + lo as usize * MESSAGE_ROW;
            let _ = map.advise_range(memmap2::Advice::WillNeed, at, (hi - lo + 1) as usize * MESSAGE_ROW);
        }
    }

    /// The folders, each with its child rows and an empty overlay. Read at open: there are
    /// few of them, and every lookup starts at one.
    pub fn folders(&self) -> Result<HashMap<Id, Folder>> {
        let h = &self.h;
        let mut d = Dec::new(self.checked(h.folders_off as usize, h.folders_len as usize)?, &self.place);
        let n = d.u64()?;
        if n != h.folder_count {
            return Err(self.damaged(format!("{n} folder records where the header says {}", h.folder_count)));
        }
        let mut out = HashMap::with_capacity(n as usize);
        for _ in 0..n {
            let id = d.u64()?;
            let parent = d.u64()?;
            let name: Arc<str> = Arc::from(d.str()?);
            let attrs = d.attrs()?;
            let ctime = d.i64()?;
            let subfolders = d.u32()?;
            let range = (d.u64()?, d.u64()?);
            if range.0.checked_add(range.1).is_none_or(|e| e > h.child_count) {
                return Err(self.damaged(format!("folder {id}'s entries lie past the child table")));
            }
            let f = Folder {
                parent,
                name,
                attrs,
                ctime,
                children: BTreeMap::new(),
                base_children: range,
                entries: range.1 as usize,
                subfolders,
            };
            out.insert(id, f);
        }
        Ok(out)
    }

    /// The extra section (replication state and inline bytes by segment, see `checkpoint`).
    pub fn extra(&self) -> Result<Dec<'_>> {
        Ok(Dec::new(self.checked(self.h.extra_off as usize, self.h.extra_len as usize)?, &self.place))
    }
}

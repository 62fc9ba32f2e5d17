//! Writing a checkpoint in format 6 (see `base.rs` for the layout): the mapped checkpoint
//! merged with the changes since, streamed region by region so that the writer holds a
//! few buffers and one id per message, not a second copy of the index.

use std::io;

use super::base::{blocks, Header, BLOCK, CHILD_ROW, FOLDER_ROW, MESSAGE_ROW, NO_XATTRS};
use super::codec::Enc;
use super::error::{Error, Result};
use super::index::{Id, Index};
use super::vfs::VfsFile;

/// A region is written in pieces of about this size.
const FLUSH_BYTES: usize = 1 << 20;

/// Where the bytes go: a file, or memory (for tests and `encode`).
pub(super) trait Sink {
    fn write_at(&mut self, buf: &[u8], off: u64) -> io::Result<()>;
}

impl Sink for &dyn VfsFile {
    fn write_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        self.write_all_at(buf, off)
    }
}

impl Sink for Vec<u8> {
    fn write_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        let end = off as usize + buf.len();
        if self.len() < end {
            self.resize(end, 0);
        }
        self[off as usize..end].copy_from_slice(buf);
        Ok(())
    }
}

/// One block-aligned region, written in order, with the CRC of each block it fills. Its
/// last block is padded with zeros.
struct Region {
    start: u64,
    buf: Vec<u8>,
    flushed: u64,
    crcs: Vec<u32>,
}

impl Region {
    fn new(start: u64) -> Region {
        Region { start, buf: Vec::new(), flushed: 0, crcs: Vec::new() }
    }

    /// Bytes put so far: the offset of the next byte within the region.
    fn len(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    fn put(&mut self, sink: &mut dyn Sink, b: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= FLUSH_BYTES {
            self.flush(sink)?;
        }
        Ok(())
    }

    /// Write the whole blocks buffered.
    fn flush(&mut self, sink: &mut dyn Sink) -> io::Result<()> {
        let n = self.buf.len() / BLOCK * BLOCK;
        self.crcs.extend(self.buf[..n].chunks(BLOCK).map(crc32c::crc32c));
        sink.write_at(&self.buf[..n], self.start + self.flushed)?;
        self.flushed += n as u64;
        self.buf.drain(..n);
        Ok(())
    }

    /// Pad and write the rest; returns the unpadded length and the blocks' CRCs.
    fn finish(mut self, sink: &mut dyn Sink) -> io::Result<(u64, Vec<u32>)> {
        let len = self.len();
        self.buf.resize(blocks(self.buf.len()) * BLOCK, 0);
        self.flush(sink)?;
        Ok((len, self.crcs))
    }

    /// Where the region after this one starts.
    fn end(&self) -> u64 {
        self.start + (blocks(self.len() as usize) * BLOCK) as u64
    }
}

/// Write the index in format 6 as covering the log up to `last_seq`.
pub(super) fn write(sink: &mut dyn Sink, ix: &Index, last_seq: u64) -> Result<()> {
    write_io(sink, ix, last_seq).map_err(|e| match e.downcast() {
        Ok(e) => e,
        Err(e) => Error::io("write checkpoint.tmp", e),
    })
}

/// `write`, with the index's own errors (damage found in the mapped checkpoint it merges)
/// carried inside `io::Error`.
fn write_io(sink: &mut dyn Sink, ix: &Index, last_seq: u64) -> io::Result<()> {
    ix.base.scanning(true);
    let r = write_merged(sink, ix, last_seq);
    ix.base.scanning(false);
    r
}

fn write_merged(sink: &mut dyn Sink, ix: &Index, last_seq: u64) -> io::Result<()> {
    let ours = |e: Error| io::Error::other(e);
    // Every message in id order: the message table's rows, and the row a child points at.
    let msgs = ix.messages_by_id().map_err(ours)?;
    let mut folder_ids: Vec<Id> = ix.folders().map(|(id, _)| id).collect();
    folder_ids.sort_unstable();
    let child_count: u64 = folder_ids.iter().map(|id| ix.folders[id].entry_count() as u64).sum();
    let children_off = BLOCK as u64;
    let messages_off = children_off + (blocks(child_count as usize * CHILD_ROW) * BLOCK) as u64;
    let heap_off = messages_off + (blocks(msgs.len() * MESSAGE_ROW) * BLOCK) as u64;
    let mut children = Region::new(children_off);
    let mut rows = Region::new(messages_off);
    let mut heap = Region::new(heap_off);

    // Each folder's entries by name, their names in the heap in the same order: a listing
    // reads one stretch of the child table and one of the heap.
    let mut name_at = vec![u64::MAX; msgs.len()];
    let mut folders = Enc::default();
    folders.u64(folder_ids.len() as u64);
    let mut row = 0u64;
    for &fid in &folder_ids {
        let f = &ix.folders[&fid];
        let first = row;
        for (name, id, _) in ix.entries_of(f) {
            let at = heap.len();
            heap.put(sink, &(name.len() as u16).to_le_bytes())?;
            heap.put(sink, name.as_bytes())?;
            let target = match ix.folders.contains_key(&id) {
                true => FOLDER_ROW,
                false => {
                    let r = msgs.binary_search_by_key(&id, |(k, _)| *k).map_err(|_| {
                        ours(Error::corrupt("index", format!("message {id} is listed but not in the table")))
                    })?;
                    name_at[r] = at;
                    r as u64
                }
            };
            let mut b = [0u8; CHILD_ROW];
            b[0..8].copy_from_slice(&at.to_le_bytes());
            b[8..16].copy_from_slice(&id.to_le_bytes());
            b[16..24].copy_from_slice(&target.to_le_bytes());
            children.put(sink, &b)?;
            row += 1;
        }
        folders.u64(fid);
        folders.u64(f.parent);
        folders.str(&f.name);
        folders.attrs(&f.attrs);
        folders.i64(f.ctime);
        folders.u32(f.subfolders);
        folders.u64(first);
        folders.u64(row - first);
    }
    if row != child_count {
        return Err(ours(Error::corrupt("index", format!("{row} entries listed where folders count {child_count}"))));
    }

    for (r, &(id, base_row)) in msgs.iter().enumerate() {
        if name_at[r] == u64::MAX {
            return Err(ours(Error::corrupt("index", format!("message {id} is in no folder"))));
        }
        if let Some(i) = base_row {
            // Unchanged since the last checkpoint: its row as it was, but for where its name
            // and xattrs are in the new heap.
            let (mut b, xattrs) = ix.base.raw_row(i).map_err(ours)?;
            b[64..72].copy_from_slice(&name_at[r].to_le_bytes());
            // Its content relocated since (compaction): the place is in the map.
            let version = u64::from_le_bytes(b[16..24].try_into().unwrap());
            if let Some(at) = ix.inline.get(version) {
                b[80..88].copy_from_slice(&at.seg.to_le_bytes());
                b[88..96].copy_from_slice(&at.off.to_le_bytes());
                b[96..100].copy_from_slice(&(at.len as u32).to_le_bytes());
            }
            if let Some(x) = xattrs {
                b[72..80].copy_from_slice(&heap.len().to_le_bytes());
                heap.put(sink, x)?;
            }
            rows.put(sink, &b)?;
            continue;
        }
        let (m, inline) = ix.message_and_place(id, base_row).map_err(ours)?;
        let x = m.xattrs();
        let xattrs_at = if x.is_empty() {
            NO_XATTRS
        } else {
            let mut e = Enc::default();
            e.u32(x.len() as u32);
            for (k, v) in x {
                e.str(k);
                e.bytes(v);
            }
            let at = heap.len();
            heap.put(sink, &(e.buf.len() as u32).to_le_bytes())?;
            heap.put(sink, &e.buf)?;
            at
        };
        let mut b = [0u8; MESSAGE_ROW];
        let mut put8 = |at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        put8(0, id);
        put8(8, m.folder);
        put8(16, m.version);
        put8(24, m.size);
        put8(32, m.attrs.mtime as u64);
        put8(40, m.ctime as u64);
        put8(64, name_at[r]);
        put8(72, xattrs_at);
        if let Some(at) = inline {
            put8(80, at.seg);
            put8(88, at.off);
        }
        let mut put4 = |at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        put4(48, m.attrs.mode);
        put4(52, m.attrs.uid);
        put4(56, m.attrs.gid);
        put4(60, m.crc);
        if let Some(at) = inline {
            put4(96, at.len as u32);
        }
        b[100] = m.flags;
        rows.put(sink, &b)?;
    }

    // Rows a damaged checkpoint could not give were left out: never write that as whole.
    if let Some(e) = ix.base.damage() {
        return Err(ours(e));
    }
    let mut extra = Enc::default();
    super::remote::encode_checkpoint(&mut extra, ix);
    super::remote::encode_tombstones(&mut extra, ix);
    ix.inline.encode_live(&mut extra);

    let mut crcs = Vec::new();
    let mut put_region = |region: Region, sink: &mut dyn Sink| -> io::Result<(u64, u64)> {
        // Regions follow each other block by block, so their CRCs do too.
        let start = region.start;
        let (len, c) = region.finish(sink)?;
        crcs.extend(c);
        Ok((start, len))
    };
    put_region(children, sink)?;
    put_region(rows, sink)?;
    let heap_end = heap.end();
    let (_, heap_len) = put_region(heap, sink)?;
    let mut fr = Region::new(heap_end);
    fr.put(sink, &folders.buf)?;
    let extra_off = fr.end();
    let (folders_off, folders_len) = put_region(fr, sink)?;
    let mut er = Region::new(extra_off);
    er.put(sink, &extra.buf)?;
    let crcs_off = er.end();
    let (extra_off, extra_len) = put_region(er, sink)?;

    let mut table: Vec<u8> = crcs.iter().flat_map(|c| c.to_le_bytes()).collect();
    let table_crc = crc32c::crc32c(&table);
    table.extend_from_slice(&table_crc.to_le_bytes());
    sink.write_at(&table, crcs_off)?;
    let h = Header {
        last_seq,
        next_id: ix.next_id,
        last_cn: ix.last_cn,
        folder_count: folder_ids.len() as u64,
        message_count: msgs.len() as u64,
        child_count,
        children_off,
        messages_off,
        heap_off,
        heap_len,
        folders_off,
        folders_len,
        extra_off,
        extra_len,
        crcs_off,
    };
    let mut head = h.encode();
    head.resize(BLOCK, 0);
    sink.write_at(&head, 0)?;
    Ok(())
}

//! Index checkpoints: the whole index written atomically now and then, so that opening a
//! large store replays only the log written since.
//!
//! Checkpoints are written in format 6 (`base.rs`, `base_write.rs`): opening one maps it
//! and reads its folders only. Formats 1 to 5, below, are still read (into memory, as
//! changes over an empty checkpoint) and replaced by format 6 at the next checkpoint.
//!
//! Layout of formats 1 to 5: magic `MSGFSCKP`, format u32, last covered sequence u64, next id u64, last change
//! number u64, folder count u64, folders, message count u64, messages, then a CRC32C of all
//! the bytes before it. Format 2 adds each folder's and message's ctime (i64) after its
//! attributes; format 1 (no ctime) is still read, with ctime taken from mtime. Format 3
//! is format 2 with replication state after the messages (msgfs(5)), written only when
//! there is some. Written to `checkpoint.tmp`, synced, renamed over `checkpoint`, and
//! the directory synced: a crash leaves either the old checkpoint or the new one.

use std::path::Path;
use std::sync::Arc;

use super::base::{Base, FORMAT_MAPPED};
use super::codec::Dec;
#[cfg(test)]
use super::codec::Enc;
use super::error::{Error, Result};
#[cfg(test)]
use super::index::Child;
use super::index::{Folder, Index, Message};
use super::vfs::{Mapped, OpenMode, Vfs};

pub const CHECKPOINT: &str = "checkpoint";
const CHECKPOINT_TMP: &str = "checkpoint.tmp";
const MAGIC: &[u8; 8] = b"MSGFSCKP";
const FORMAT: u32 = 2;
/// Format 2 followed by the replication section (see `remote.rs`): written only when the
/// index holds replication state, so a store that never synced keeps checkpoints an older
/// msgfs reads.
const FORMAT_REMOTE: u32 = 3;
/// Format 3 followed by the tombstone section (links of deleted messages, see `remote.rs`):
/// written only while there are tombstones.
const FORMAT_TOMBSTONES: u32 = 4;
/// Format 4 followed by the inline content section (where each version kept in the log
/// lies, see `inline.rs`): written only while there is some.
const FORMAT_INLINE: u32 = 5;
/// The format before ctimes were kept.
pub(crate) const FORMAT_NO_CTIME: u32 = 1;

/// Serialize the index as covering the log up to `last_seq`, in format 6 (for tests; a
/// store writes its checkpoint to a file with `write`).
#[cfg(test)]
pub fn encode(ix: &Index, last_seq: u64) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    super::base_write::write(&mut buf, ix, last_seq)?;
    Ok(buf)
}

/// Serialize in format 1 to 5, as an older msgfs wrote them: for tests that check such
/// checkpoints still open.
#[cfg(test)]
pub(crate) fn encode_as(ix: &Index, last_seq: u64, format: u32) -> Vec<u8> {
    let mut e = Enc { buf: Vec::with_capacity(64 + ix.message_count() * 104), ..Enc::default() };
    e.buf.extend_from_slice(MAGIC);
    e.u32(format);
    e.u64(last_seq);
    e.u64(ix.next_id);
    e.u64(ix.last_cn);
    // Parents before children, so loading can insert folders in file order.
    let mut order: Vec<u64> = Vec::with_capacity(ix.folders.len());
    let mut stack = vec![super::index::ROOT];
    while let Some(id) = stack.pop() {
        order.push(id);
        for (_, c) in ix.children(id).expect("a folder") {
            if let Child::Folder(c) = c {
                stack.push(c);
            }
        }
    }
    e.u64(order.len() as u64);
    for id in order {
        let f = &ix.folders[&id];
        e.u64(id);
        e.u64(f.parent);
        e.str(&f.name);
        e.attrs(&f.attrs);
        if format != FORMAT_NO_CTIME {
            e.i64(f.ctime);
        }
    }
    e.u64(ix.message_count() as u64);
    let mut inline = Vec::new();
    for (id, m) in ix.messages() {
        if let Some(at) = ix.inline_at(id, m.version) {
            inline.push((m.version, at));
        }
        e.u64(id);
        e.u64(m.folder);
        e.str(&m.name);
        e.u64(m.version);
        e.u64(m.size);
        e.u32(m.crc);
        e.attrs(&m.attrs);
        if format != FORMAT_NO_CTIME {
            e.i64(m.ctime);
        }
        e.u8(m.flags);
        let x = m.xattrs.as_deref().map(|x| x.as_slice()).unwrap_or(&[]);
        e.u32(x.len() as u32);
        for (k, v) in x {
            e.str(k);
            e.bytes(v);
        }
    }
    if format >= FORMAT_REMOTE {
        super::remote::encode_checkpoint(&mut e, ix);
    }
    if format >= FORMAT_TOMBSTONES {
        super::remote::encode_tombstones(&mut e, ix);
    }
    if format >= FORMAT_INLINE {
        super::inline::InlineMap::encode(inline, &mut e);
    }
    let crc = crc32c::crc32c(&e.buf);
    e.u32(crc);
    e.buf
}

/// Parse a checkpoint of any format; returns the index and the last sequence number it
/// covers. For tests: a store maps its checkpoint with `read`.
#[cfg(test)]
pub fn decode(buf: &[u8]) -> Result<(Index, u64)> {
    open_bytes(Mapped::Read(buf.to_vec()))
}

/// The index served from a checkpoint's bytes (mapped, or read).
fn open_bytes(bytes: Mapped) -> Result<(Index, u64)> {
    let place = CHECKPOINT;
    if bytes.len() < MAGIC.len() + 4 + 4 || &bytes[..8] != MAGIC {
        return Err(Error::corrupt(place, "not a msgfs checkpoint (bad magic or too short)"));
    }
    if u32::from_le_bytes(bytes[8..12].try_into().unwrap()) == FORMAT_MAPPED {
        return Index::from_base(Base::open(bytes, place)?, place);
    }
    decode_old(&bytes)
}

/// Parse a checkpoint of format 1 to 5 into memory.
fn decode_old(buf: &[u8]) -> Result<(Index, u64)> {
    let place = CHECKPOINT;
    let (body, tail) = buf.split_at(buf.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(tail.try_into().unwrap()) {
        return Err(Error::corrupt(place, "checksum mismatch"));
    }
    let mut d = Dec::new(&body[8..], place);
    let format = d.u32()?;
    if ![FORMAT, FORMAT_NO_CTIME, FORMAT_REMOTE, FORMAT_TOMBSTONES, FORMAT_INLINE].contains(&format) {
        return Err(Error::corrupt(place, format!("unknown checkpoint format {format}")));
    }
    let last_seq = d.u64()?;
    let mut ix = Index { next_id: d.u64()?, last_cn: d.u64()?, ..Default::default() };
    let nf = d.u64()?;
    for _ in 0..nf {
        let id = d.u64()?;
        let parent = d.u64()?;
        let name: Arc<str> = Arc::from(d.str()?);
        let attrs = d.attrs()?;
        let ctime = if format == FORMAT_NO_CTIME { attrs.mtime } else { d.i64()? };
        if id != super::index::ROOT {
            let p = ix
                .folders
                .get_mut(&parent)
                .ok_or_else(|| Error::corrupt(place, format!("folder {id} has unknown parent {parent}")))?;
            p.children.insert(name.clone(), Some(id));
            p.entries += 1;
            p.subfolders += 1;
        }
        ix.folders.insert(id, Folder::new(parent, name, attrs, ctime));
    }
    let nm = d.u64()?;
    ix.messages.reserve(nm as usize);
    for _ in 0..nm {
        let id = d.u64()?;
        let folder = d.u64()?;
        let name: Arc<str> = Arc::from(d.str()?);
        let version = d.u64()?;
        let size = d.u64()?;
        let crc = d.u32()?;
        let attrs = d.attrs()?;
        let ctime = if format == FORMAT_NO_CTIME { attrs.mtime } else { d.i64()? };
        let flags = d.u8()?;
        let nx = d.u32()?;
        let mut x = Vec::new();
        for _ in 0..nx {
            x.push((Box::from(d.str()?), Box::from(d.bytes()?)));
        }
        let f = ix
            .folders
            .get_mut(&folder)
            .ok_or_else(|| Error::corrupt(place, format!("message {id} in unknown folder {folder}")))?;
        if f.children.insert(name.clone(), Some(id)).is_some() {
            return Err(Error::corrupt(place, format!("two entries named {name:?} in folder {folder}")));
        }
        f.entries += 1;
        let xattrs = (!x.is_empty()).then(|| Box::new(x));
        ix.messages.insert(id, Message { folder, version, size, attrs, ctime, crc, flags, name, xattrs });
        ix.message_count += 1;
    }
    if format >= FORMAT_REMOTE {
        super::remote::decode_checkpoint(&mut d, &mut ix, place)?;
    }
    if format >= FORMAT_TOMBSTONES {
        super::remote::decode_tombstones(&mut d, &mut ix, place)?;
    }
    if format >= FORMAT_INLINE {
        ix.inline = super::inline::InlineMap::decode(&mut d)?;
    }
    if !d.is_empty() {
        return Err(Error::corrupt(place, "trailing bytes"));
    }
    Ok((ix, last_seq))
}

/// Write a checkpoint atomically, in format 6.
pub fn write(vfs: &dyn Vfs, ix: &Index, last_seq: u64) -> Result<()> {
    let io = |what: &str| {
        let what = what.to_string();
        move |e| Error::io(what, e)
    };
    let f = vfs.open(Path::new(CHECKPOINT_TMP), OpenMode::CreateTruncate).map_err(io("create checkpoint.tmp"))?;
    let mut sink: &dyn super::vfs::VfsFile = &*f;
    super::base_write::write(&mut sink, ix, last_seq)?;
    f.sync().map_err(io("sync checkpoint.tmp"))?;
    drop(f);
    vfs.rename(Path::new(CHECKPOINT_TMP), Path::new(CHECKPOINT)).map_err(io("rename checkpoint"))?;
    vfs.sync_dir(Path::new("")).map_err(io("sync store directory"))?;
    Ok(())
}

/// The checkpoint just written, mapped, to serve the index from.
pub fn map(vfs: &dyn Vfs) -> Result<Base> {
    let bytes = vfs.map(Path::new(CHECKPOINT)).map_err(|e| Error::io("map checkpoint", e))?;
    Base::open(bytes, CHECKPOINT)
}

/// Read the checkpoint if there is one: a format 6 one is mapped, an older one decoded.
pub fn read(vfs: &dyn Vfs) -> Result<Option<(Index, u64)>> {
    if !vfs.exists(Path::new(CHECKPOINT)) {
        return Ok(None);
    }
    let bytes = vfs.map(Path::new(CHECKPOINT)).map_err(|e| Error::io("read checkpoint", e))?;
    open_bytes(bytes).map(Some)
}

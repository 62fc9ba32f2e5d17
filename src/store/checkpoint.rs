//! Index checkpoints: the whole index written atomically now and then, so that opening a
//! large store replays only the log written since.
//!
//! Layout: magic `MSGFSCKP`, format u32, last covered sequence u64, next id u64, last change
//! number u64, folder count u64, folders, message count u64, messages, then a CRC32C of all
//! the bytes before it. Format 2 adds each folder's and message's ctime (i64) after its
//! attributes; format 1 (no ctime) is still read, with ctime taken from mtime. Format 3
//! is format 2 with replication state after the messages (msgfs(5)), written only when
//! there is some. Written to `checkpoint.tmp`, synced, renamed over `checkpoint`, and
//! the directory synced: a crash leaves either the old checkpoint or the new one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::codec::{Dec, Enc};
use super::error::{Error, Result};
use super::index::{Folder, Index, Message};
use super::vfs::{OpenMode, Vfs};

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

/// Serialize the index as covering the log up to `last_seq`.
pub fn encode(ix: &Index, last_seq: u64) -> Vec<u8> {
    let format = if !ix.inline.is_empty() {
        FORMAT_INLINE
    } else if ix.has_tombstones() {
        FORMAT_TOMBSTONES
    } else if ix.has_remote_state() {
        FORMAT_REMOTE
    } else {
        FORMAT
    };
    encode_as(ix, last_seq, format)
}

/// Serialize in the given format; the previous one (no ctimes) only for tests that check
/// stores written by the previous version still open.
pub(crate) fn encode_as(ix: &Index, last_seq: u64, format: u32) -> Vec<u8> {
    let mut e = Enc { buf: Vec::with_capacity(64 + ix.messages.len() * 104), ..Enc::default() };
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
        for &c in ix.folders[&id].children.values() {
            if ix.folders.contains_key(&c) {
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
    e.u64(ix.messages.len() as u64);
    for (id, m) in &ix.messages {
        e.u64(*id);
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
        ix.inline.encode(&mut e);
    }
    let crc = crc32c::crc32c(&e.buf);
    e.u32(crc);
    e.buf
}

/// Parse a checkpoint; returns the index and the last sequence number it covers.
pub fn decode(buf: &[u8]) -> Result<(Index, u64)> {
    let place = CHECKPOINT;
    if buf.len() < MAGIC.len() + 4 + 4 || &buf[..8] != MAGIC {
        return Err(Error::corrupt(place, "not a msgfs checkpoint (bad magic or too short)"));
    }
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
            p.children.insert(name.clone(), id);
            p.subfolders += 1;
        }
        ix.folders.insert(id, Folder { parent, name, attrs, ctime, children: BTreeMap::new(), subfolders: 0 });
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
        if f.children.insert(name.clone(), id).is_some() {
            return Err(Error::corrupt(place, format!("two entries named {name:?} in folder {folder}")));
        }
        let xattrs = (!x.is_empty()).then(|| Box::new(x));
        ix.messages.insert(id, Message { folder, version, size, attrs, ctime, crc, flags, name, xattrs });
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

/// Write a checkpoint atomically.
pub fn write(vfs: &dyn Vfs, ix: &Index, last_seq: u64) -> Result<()> {
    let buf = encode(ix, last_seq);
    let io = |what: &str| {
        let what = what.to_string();
        move |e| Error::io(what, e)
    };
    let f = vfs.open(Path::new(CHECKPOINT_TMP), OpenMode::CreateTruncate).map_err(io("create checkpoint.tmp"))?;
    f.write_all_at(&buf, 0).map_err(io("write checkpoint.tmp"))?;
    f.sync().map_err(io("sync checkpoint.tmp"))?;
    drop(f);
    vfs.rename(Path::new(CHECKPOINT_TMP), Path::new(CHECKPOINT)).map_err(io("rename checkpoint"))?;
    vfs.sync_dir(Path::new("")).map_err(io("sync store directory"))?;
    Ok(())
}

/// Read the checkpoint if there is one.
pub fn read(vfs: &dyn Vfs) -> Result<Option<(Index, u64)>> {
    if !vfs.exists(Path::new(CHECKPOINT)) {
        return Ok(None);
    }
    let f = vfs.open(Path::new(CHECKPOINT), OpenMode::Read).map_err(|e| Error::io("open checkpoint", e))?;
    let buf = f.read_all().map_err(|e| Error::io("read checkpoint", e))?;
    decode(&buf).map(Some)
}

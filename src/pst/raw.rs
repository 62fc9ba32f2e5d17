//! A small read-only reader of a PST file's NDB and LTP layers (MS-PST 2.2 and 2.3), just
//! enough to read one message node whole: its property context, recipient and attachment
//! tables, attachments and embedded messages.
//!
//! It exists for the items `outlook-pst` 1.2 cannot read: attachments holding a PtypObject
//! property (embedded messages, PidTagAttachDataObject of type 0x000D), and messages whose
//! node has no subnode tree (contacts, distribution lists). It is written from the
//! specification alone.
//!
//! Everything read from the file is checked before use: offsets and lengths against the
//! data that holds them, sizes against the file's length, recursion depth against
//! [`MAX_DEPTH`] and table rows against [`MAX_ROWS`]. A malformed file gives an
//! `InvalidData` error naming the structure at fault, never a panic.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::fixup::{permute_decode, pst_crc, CRYPT_CYCLIC, CRYPT_NONE, CRYPT_PERMUTE, MAX_BLOCK};

/// The deepest nesting followed anywhere: B-tree levels, data and subnode trees, BTH
/// index levels, embedded messages. Real files stay far below it; it stops cycles.
const MAX_DEPTH: usize = 8;
/// The most rows read from one table context.
const MAX_ROWS: usize = 100_000;
/// B-tree pages (MS-PST 2.2.2.7).
const PAGE: usize = 512;

const PTYPE_BBT: u8 = 0x80;
const PTYPE_NBT: u8 = 0x81;

/// Subnodes of a message holding its recipient and attachment tables (MS-PST 2.4.5, 2.4.6).
const NID_RECIPIENT_TABLE: u32 = 0x692;
const NID_ATTACHMENT_TABLE: u32 = 0x671;

const PROP_ATTACH_DATA: u16 = 0x3701;
const PROP_ATTACH_METHOD: u16 = 0x3705;
const PROP_MESSAGE_CODEPAGE: u16 = 0x3FFD;
const PROP_INTERNET_CODEPAGE: u16 = 0x3FDE;
const ATTACH_EMBEDDED_MSG: i64 = 5;

/// One property value as stored.
#[derive(Clone, Debug, PartialEq)]
pub enum RawValue {
    /// PtypInteger16, PtypInteger32, PtypInteger64.
    Int(i64),
    Bool(bool),
    /// PtypTime: a FILETIME (100 ns units since 1601).
    Time(i64),
    /// PtypString (UTF-16) or PtypString8 (decoded with the message's code page); trailing
    /// NULs, which some writers store, are dropped.
    Str(String),
    /// PtypBinary and PtypGuid.
    Bin(Vec<u8>),
    /// PtypObject: the NID of a subnode in the owner's subnode tree, and its size.
    Object {
        nid: u32,
        size: u32,
    },
    /// Any other type (floating point, currency, multi-valued...): only its type.
    Other(u16),
}

/// A message node read whole.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawMessage {
    pub props: BTreeMap<u16, RawValue>,
    pub recipients: Vec<BTreeMap<u16, RawValue>>,
    pub attachments: Vec<RawAttachment>,
}

/// One attachment of a message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawAttachment {
    /// The attachment's properties; a binary PidTagAttachDataBinary (0x3701) is moved to
    /// `data` rather than kept twice.
    pub props: BTreeMap<u16, RawValue>,
    /// Attach method 5: the embedded message.
    pub embedded: Option<Box<RawMessage>>,
    /// The bytes of PidTagAttachDataBinary (0x3701) when it is binary (attach method 1).
    pub data: Option<Vec<u8>>,
}

/// An open PST file, read through its own NDB/LTP reader.
pub struct RawPst {
    file: File,
    len: u64,
    unicode: bool,
    crypt: u8,
    /// Root pages (file offsets) of the node and block B-trees.
    nbt_root: u64,
    bbt_root: u64,
    /// Bytes of blocks read by the current public call, against [`RawPst::budget`]: a
    /// crafted file could name the same blocks over and over (attachments whose embedded
    /// messages share subnodes), so each call may read only a few times the file's size.
    /// A `Cell`, so a `RawPst` is used from one thread at a time.
    spent: Cell<u64>,
}

/// A node's or subnode's data and subnode tree.
#[derive(Clone, Copy, Debug)]
struct NodeRef {
    bid_data: u64,
    bid_sub: u64,
}

type Subnodes = BTreeMap<u32, NodeRef>;

/// A property context entry: property id, type and dwValueHnid.
type PcEntry = (u16, u16, u32);

/// Subnode `nid` in the first of `scopes` that has it (nearest tree first).
fn find_sub(scopes: &[&Subnodes], nid: u32) -> Option<NodeRef> {
    scopes.iter().find_map(|s| s.get(&nid).copied())
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// `n` bytes of `d` at `at`, or an error naming `what`.
fn slice<'a>(d: &'a [u8], at: usize, n: usize, what: &str) -> io::Result<&'a [u8]> {
    at.checked_add(n).and_then(|end| d.get(at..end)).ok_or_else(|| bad(format!("{what}: truncated")))
}

/// A little-endian unsigned integer of `n` (<= 8) bytes.
fn le(d: &[u8], at: usize, n: usize, what: &str) -> io::Result<u64> {
    Ok(slice(d, at, n, what)?.iter().rev().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
}

fn u16_at(d: &[u8], at: usize, what: &str) -> io::Result<u16> {
    Ok(le(d, at, 2, what)? as u16)
}

fn u32_at(d: &[u8], at: usize, what: &str) -> io::Result<u32> {
    Ok(le(d, at, 4, what)? as u32)
}

/// Round up to the 64-byte alignment of blocks (MS-PST 2.2.2.8).
fn align64(n: usize) -> usize {
    (n + 63) & !63
}

/// A heap-on-node (MS-PST 2.3.1): its blocks, kept apart since a HID names a block.
struct Heap {
    blocks: Vec<Vec<u8>>,
    client_sig: u8,
    user_root: u32,
}

impl Heap {
    fn new(blocks: Vec<Vec<u8>>) -> io::Result<Heap> {
        let first = blocks.first().ok_or_else(|| bad("heap: no data block"))?;
        // HNHDR: ibHnpm (2), bSig (1), bClientSig (1), hidUserRoot (4), rgbFillLevel (4).
        let h = slice(first, 0, 12, "HNHDR")?;
        let sig = h[2];
        if sig != 0xEC {
            return Err(bad(format!("HNHDR: bad signature 0x{sig:02X}")));
        }
        let client_sig = h[3];
        let user_root = u32_at(h, 4, "HNHDR")?;
        Ok(Heap { blocks, client_sig, user_root })
    }

    /// The bytes of heap allocation `hid` (MS-PST 2.3.1.1). Every page (HNHDR,
    /// HNPAGEHDR, HNBITMAPHDR) starts with ibHnpm, so the page kind does not matter here;
    /// cFree is not used, as some writers leave it zero.
    fn alloc(&self, hid: u32) -> io::Result<&[u8]> {
        if hid & 0x1F != 0 {
            return Err(bad(format!("HID 0x{hid:08X}: not a heap id")));
        }
        let index = ((hid >> 5) & 0x7FF) as usize;
        let block = (hid >> 16) as usize;
        let page = self.blocks.get(block).ok_or_else(|| bad(format!("HID 0x{hid:08X}: no heap block {block}")))?;
        if index == 0 {
            return Err(bad(format!("HID 0x{hid:08X}: allocation index 0")));
        }
        let ib_hnpm = usize::from(u16_at(page, 0, "heap page")?);
        let c_alloc = usize::from(u16_at(page, ib_hnpm, "HNPAGEMAP")?);
        if index > c_alloc {
            return Err(bad(format!("HID 0x{hid:08X}: page has {c_alloc} allocations")));
        }
        let start = usize::from(u16_at(page, ib_hnpm + 4 + 2 * (index - 1), "HNPAGEMAP")?);
        let end = usize::from(u16_at(page, ib_hnpm + 4 + 2 * index, "HNPAGEMAP")?);
        // Allocations lie between the page header and the page map.
        if start > end || end > ib_hnpm {
            return Err(bad(format!("HID 0x{hid:08X}: allocation {start}..{end} outside the heap page")));
        }
        slice(page, start, end - start, "heap allocation")
    }
}

/// A BTH's records (MS-PST 2.3.2), leaf records in key order.
struct Bth<'h> {
    cb_key: usize,
    records: Vec<(&'h [u8], &'h [u8])>,
}

fn bth(heap: &Heap, hid: u32) -> io::Result<Bth<'_>> {
    let hdr = heap.alloc(hid)?;
    let b = slice(hdr, 0, 8, "BTHHEADER")?;
    if b[0] != 0xB5 {
        return Err(bad(format!("BTHHEADER: bad type 0x{:02X}", b[0])));
    }
    let (cb_key, cb_ent, levels) = (usize::from(b[1]), usize::from(b[2]), usize::from(b[3]));
    if ![2, 4, 8, 16].contains(&cb_key) || cb_ent == 0 || cb_ent > 32 {
        return Err(bad(format!("BTHHEADER: key size {cb_key}, entry size {cb_ent}")));
    }
    if levels > MAX_DEPTH {
        return Err(bad(format!("BTHHEADER: {levels} index levels")));
    }
    let root = u32_at(b, 4, "BTHHEADER")?;
    let mut records = Vec::new();
    // Index records may name the same allocation many times; a real BTH visits no more
    // records than its heap could hold.
    let mut budget = heap.blocks.iter().map(Vec::len).sum::<usize>() / (cb_key + 1);
    if root != 0 {
        bth_walk(heap, root, levels, (cb_key, cb_ent), &mut budget, &mut records)?;
    }
    Ok(Bth { cb_key, records })
}

fn bth_walk<'h>(
    heap: &'h Heap,
    hid: u32,
    level: usize,
    (cb_key, cb_ent): (usize, usize),
    budget: &mut usize,
    out: &mut Vec<(&'h [u8], &'h [u8])>,
) -> io::Result<()> {
    let data = heap.alloc(hid)?;
    // Index records hold a key and the HID of the next level down.
    let size = if level > 0 { cb_key + 4 } else { cb_key + cb_ent };
    if data.len() % size != 0 {
        return Err(bad(format!("BTH records: {} bytes is not a multiple of {size}", data.len())));
    }
    for rec in data.chunks_exact(size) {
        *budget = budget.checked_sub(1).ok_or_else(|| bad("BTH: more records than its heap holds"))?;
        if level > 0 {
            bth_walk(heap, u32_at(rec, cb_key, "BTH index")?, level - 1, (cb_key, cb_ent), budget, out)?;
        } else {
            out.push((&rec[..cb_key], &rec[cb_key..]));
        }
    }
    Ok(())
}

/// Decode 8-bit text with Windows code page `cp` (windows-1252 when unknown).
pub(crate) fn decode_8bit(bytes: &[u8], cp: u16) -> String {
    let enc = codepage::to_encoding(cp).unwrap_or(encoding_rs::WINDOWS_1252);
    let s = enc.decode_without_bom_handling(bytes).0.into_owned();
    s.trim_end_matches('\0').to_string()
}

fn decode_utf16(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    String::from_utf16_lossy(&units).trim_end_matches('\0').to_string()
}

/// Types whose value is stored through an HNID (in a PC: also 8-byte types, see
/// [`RawPst::pc`]).
fn is_variable(ptype: u16) -> bool {
    matches!(ptype, 0x1E | 0x1F | 0x102 | 0x48 | 0x0D) || ptype & 0x1000 != 0
}

/// The code page of a message's 8-bit strings, from its PC entries.
fn codepage_of(entries: &[PcEntry], default: u16) -> u16 {
    let value = |want: u16| match entries.iter().find(|e| e.0 == want) {
        Some(&(_, 0x3, v)) => Some(v),
        _ => None,
    };
    choose_codepage(value(PROP_MESSAGE_CODEPAGE), value(PROP_INTERNET_CODEPAGE), default)
}

/// The code page of an object's 8-bit strings (both readers): PidTagMessageCodepage, else
/// PidTagInternetCodepage, each only if it names an encoding we know, else `default`.
pub(crate) fn choose_codepage(message_cp: Option<u32>, internet_cp: Option<u32>, default: u16) -> u16 {
    [message_cp, internet_cp]
        .into_iter()
        .flatten()
        .filter_map(|v| u16::try_from(v).ok())
        .find(|&v| v != 0 && codepage::to_encoding(v).is_some())
        .unwrap_or(default)
}

impl RawPst {
    /// Open `path` and read its header (MS-PST 2.2.2.6).
    pub fn open(path: &Path) -> io::Result<RawPst> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut hdr = [0u8; 514];
        if len < hdr.len() as u64 {
            return Err(bad("PST header: file too short"));
        }
        file.read_exact_at(&mut hdr, 0)?;
        // wMagicClient: "SM" for PST, "SO" for OST files, which share the format.
        if &hdr[0..4] != b"!BDN" || !matches!(&hdr[8..10], b"SM" | b"SO") {
            return Err(bad("PST header: not a PST file (bad magic)"));
        }
        let ver = u16_at(&hdr, 10, "header")?;
        // BREFNBT/BREFBBT are (bid, ib) pairs; only ib is needed to reach the roots.
        let (unicode, nbt_root, bbt_root, crypt) = match ver {
            14 | 15 => (false, le(&hdr, 0xB8 + 4, 4, "header")?, le(&hdr, 0xC0 + 4, 4, "header")?, hdr[0x1CD]),
            // 36 is the 4 KiB-page format of OST files of Outlook 2013, not in MS-PST.
            23..=35 => (true, le(&hdr, 0xD8 + 8, 8, "header")?, le(&hdr, 0xE8 + 8, 8, "header")?, hdr[0x201]),
            _ => return Err(bad(format!("PST header: unsupported format version {ver}"))),
        };
        match crypt {
            CRYPT_NONE | CRYPT_PERMUTE => {}
            CRYPT_CYCLIC => return Err(bad("PST header: cyclic (\"high\") encoding is not supported")),
            c => return Err(bad(format!("PST header: unknown encoding {c}"))),
        }
        Ok(RawPst { file, len, unicode, crypt, nbt_root, bbt_root, spent: Cell::new(0) })
    }

    /// Bytes of blocks one public call may read: a message reads each of its blocks a
    /// couple of times at most, so four times the file (plus slack for small files).
    fn budget(&self) -> u64 {
        self.len.saturating_mul(4).saturating_add(1 << 20)
    }

    fn bid_size(&self) -> usize {
        if self.unicode {
            8
        } else {
            4
        }
    }

    fn trailer_size(&self) -> usize {
        if self.unicode {
            16
        } else {
            12
        }
    }

    fn read_at(&self, off: u64, n: usize, what: &str) -> io::Result<Vec<u8>> {
        if off.checked_add(n as u64).is_none_or(|end| end > self.len) {
            return Err(bad(format!("{what} at 0x{off:X}: beyond the end of the file")));
        }
        let mut buf = vec![0u8; n];
        self.file.read_exact_at(&mut buf, off)?;
        Ok(buf)
    }

    /// Find `key` in the B-tree rooted at page offset `root` (MS-PST 2.2.2.7.7) and
    /// return its leaf entry. BBT keys ignore the BID's reserved low bit.
    fn btree_find(&self, root: u64, ptype: u8, key: u64) -> io::Result<Option<Vec<u8>>> {
        let (meta, ptype_at, ksize, bref) = if self.unicode { (488, 496, 8, 16) } else { (496, 500, 4, 8) };
        let leaf_size = match (ptype, self.unicode) {
            (PTYPE_NBT, true) => 32,
            (PTYPE_NBT, false) => 16,
            (_, true) => 24,
            (_, false) => 12,
        };
        let mask = if ptype == PTYPE_BBT { !1u64 } else { !0u64 };
        let name = if ptype == PTYPE_BBT { "BBT" } else { "NBT" };
        let mut ib = root;
        let mut expect_level = None;
        for _ in 0..=MAX_DEPTH {
            let page = self.read_at(ib, PAGE, name)?;
            if page[ptype_at] != ptype || page[ptype_at + 1] != ptype {
                return Err(bad(format!("{name} page at 0x{ib:X}: bad page type 0x{:02X}", page[ptype_at])));
            }
            let (c_ent, cb_ent, level) = (usize::from(page[meta]), usize::from(page[meta + 2]), page[meta + 3]);
            if expect_level.is_some_and(|l| l != level) || usize::from(level) > MAX_DEPTH {
                return Err(bad(format!("{name} page at 0x{ib:X}: unexpected level {level}")));
            }
            let need = if level > 0 { ksize + bref } else { leaf_size };
            if cb_ent < need || c_ent * cb_ent > meta {
                return Err(bad(format!("{name} page at 0x{ib:X}: {c_ent} entries of {cb_ent} bytes")));
            }
            let entry = |i: usize| &page[i * cb_ent..(i + 1) * cb_ent];
            if level == 0 {
                for i in 0..c_ent {
                    if le(entry(i), 0, ksize, name)? & mask == key & mask {
                        return Ok(Some(entry(i)[..leaf_size].to_vec()));
                    }
                }
                return Ok(None);
            }
            // The child to follow is the last whose first key is not above ours.
            let mut child = None;
            for i in 0..c_ent {
                if le(entry(i), 0, ksize, name)? & mask > key & mask {
                    break;
                }
                child = Some(le(entry(i), ksize + ksize, ksize, name)?);
            }
            let Some(next) = child else { return Ok(None) };
            ib = next;
            expect_level = Some(level - 1);
        }
        Err(bad(format!("{name}: deeper than {MAX_DEPTH} levels")))
    }

    fn node(&self, nid: u32) -> io::Result<NodeRef> {
        let e = self
            .btree_find(self.nbt_root, PTYPE_NBT, u64::from(nid))?
            .ok_or_else(|| bad(format!("node 0x{nid:X} not in the NBT")))?;
        let b = self.bid_size();
        Ok(NodeRef { bid_data: le(&e, b, b, "NBT entry")?, bid_sub: le(&e, 2 * b, b, "NBT entry")? })
    }

    /// Block `bid`'s data, decoded (MS-PST 2.2.2.8). Internal blocks are never encoded.
    fn block(&self, bid: u64) -> io::Result<Vec<u8>> {
        let e = self
            .btree_find(self.bbt_root, PTYPE_BBT, bid)?
            .ok_or_else(|| bad(format!("block 0x{bid:X} not in the BBT")))?;
        let b = self.bid_size();
        let ib = le(&e, b, b, "BBT entry")?;
        let cb = usize::from(u16_at(&e, 2 * b, "BBT entry")?);
        let trailer = self.trailer_size();
        if cb > MAX_BLOCK - trailer {
            return Err(bad(format!("block 0x{bid:X}: size {cb} too large")));
        }
        let total = align64(cb + trailer);
        let spent = self.spent.get() + total as u64;
        if spent > self.budget() {
            return Err(bad("blocks read over and over: more than four times the file's size"));
        }
        self.spent.set(spent);
        let mut buf = self.read_at(ib, total, "block")?;
        let stored_cb = usize::from(u16_at(&buf, total - trailer, "block trailer")?);
        if stored_cb != cb {
            return Err(bad(format!("block 0x{bid:X}: trailer says {stored_cb} bytes, BBT {cb}")));
        }
        // dwCRC covers the data as stored, before decoding (MS-PST 2.2.2.8.1).
        let crc_at = total - trailer + if self.unicode { 4 } else { 8 };
        let crc = u32_at(&buf, crc_at, "block trailer")?;
        // Fuzzing builds skip the check, or mutated blocks would never reach the parser.
        if !cfg!(fuzzing) && pst_crc(&buf[..cb]) != crc {
            return Err(bad(format!("block 0x{bid:X}: CRC mismatch")));
        }
        buf.truncate(cb);
        if bid & 2 == 0 && self.crypt == CRYPT_PERMUTE {
            permute_decode(&mut buf);
        }
        Ok(buf)
    }

    /// The data blocks of the data tree at `bid` (MS-PST 2.2.2.8.3.2), in order.
    fn data_blocks(&self, bid: u64) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut total = 0u64;
        self.data_walk(bid, None, &mut out, &mut total)?;
        Ok(out)
    }

    /// `level`: the XBLOCK level the parent expects, None at the top.
    fn data_walk(&self, bid: u64, level: Option<u8>, out: &mut Vec<Vec<u8>>, total: &mut u64) -> io::Result<()> {
        let data = self.block(bid)?;
        if bid & 2 == 0 {
            if level.is_some_and(|l| l != 0) {
                return Err(bad(format!("XXBLOCK entry 0x{bid:X} is a data block")));
            }
            // The tree may name a block many times; never hold more than the file.
            // Count each block as the 64 bytes it takes at least, so a tree of empty
            // blocks is bounded too.
            *total += data.len().max(64) as u64;
            if *total > self.len {
                return Err(bad("data tree larger than the file"));
            }
            out.push(data);
            return Ok(());
        }
        let hdr = slice(&data, 0, 8, "XBLOCK")?;
        let (btype, c_level, c_ent) = (hdr[0], hdr[1], usize::from(u16_at(hdr, 2, "XBLOCK")?));
        if btype != 0x01 || !(1..=2).contains(&c_level) || level.is_some_and(|l| l != c_level) {
            return Err(bad(format!("block 0x{bid:X}: not an XBLOCK/XXBLOCK where one is expected")));
        }
        let lcb_total = u64::from(u32_at(hdr, 4, "XBLOCK")?);
        if lcb_total > self.len {
            return Err(bad(format!("XBLOCK 0x{bid:X}: total size {lcb_total} larger than the file")));
        }
        let b = self.bid_size();
        let ids = slice(&data, 8, c_ent * b, "XBLOCK entries")?;
        for id in ids.chunks_exact(b) {
            self.data_walk(le(id, 0, b, "XBLOCK")?, Some(c_level - 1), out, total)?;
        }
        Ok(())
    }

    fn data(&self, bid: u64) -> io::Result<Vec<u8>> {
        Ok(self.data_blocks(bid)?.concat())
    }

    /// The subnode tree at `bid` (MS-PST 2.2.2.8.3.3), 0 for none.
    fn subnodes(&self, bid: u64) -> io::Result<Subnodes> {
        let mut out = Subnodes::new();
        if bid != 0 {
            self.sub_walk(bid, None, &mut out)?;
        }
        Ok(out)
    }

    /// `level`: the level the parent SIBLOCK expects (0), None at the top.
    fn sub_walk(&self, bid: u64, level: Option<u8>, out: &mut Subnodes) -> io::Result<()> {
        if bid & 2 == 0 {
            return Err(bad(format!("subnode tree block 0x{bid:X} is not an internal block")));
        }
        let data = self.block(bid)?;
        let hdr = slice(&data, 0, 4, "SLBLOCK")?;
        let (btype, c_level, c_ent) = (hdr[0], hdr[1], usize::from(u16_at(hdr, 2, "SLBLOCK")?));
        // An SIBLOCK (level 1) may only point to SLBLOCKs (level 0).
        if btype != 0x02 || c_level > 1 || level.is_some_and(|l| l != c_level) {
            return Err(bad(format!("block 0x{bid:X}: not an SLBLOCK/SIBLOCK")));
        }
        let b = self.bid_size();
        // Unicode blocks pad the header to 8 bytes.
        let start = if self.unicode { 8 } else { 4 };
        // SLENTRY: nid, bidData, bidSub; SIENTRY: nid, bid. NIDs take a BID's width.
        let size = if c_level == 0 { 3 * b } else { 2 * b };
        let entries = slice(&data, start, c_ent * size, "SLBLOCK entries")?;
        for e in entries.chunks_exact(size) {
            let nid = le(e, 0, 4, "SLENTRY")? as u32;
            if c_level == 0 {
                out.insert(nid, NodeRef { bid_data: le(e, b, b, "SLENTRY")?, bid_sub: le(e, 2 * b, b, "SLENTRY")? });
            } else {
                self.sub_walk(le(e, b, b, "SIENTRY")?, Some(0), out)?;
            }
        }
        Ok(())
    }

    /// The bytes an HNID names: a heap allocation or a subnode's data.
    fn hnid_bytes(&self, heap: &Heap, subs: &[&Subnodes], hnid: u32) -> io::Result<Vec<u8>> {
        if hnid == 0 {
            Ok(Vec::new())
        } else if hnid & 0x1F == 0 {
            Ok(heap.alloc(hnid)?.to_vec())
        } else {
            let sub = find_sub(subs, hnid).ok_or_else(|| bad(format!("subnode 0x{hnid:X} not found")))?;
            self.data(sub.bid_data)
        }
    }

    /// A variable-size (or 8-byte) value through its HNID.
    fn value_from(&self, heap: &Heap, subs: &[&Subnodes], ptype: u16, hnid: u32, cp: u16) -> io::Result<RawValue> {
        let eight = |bytes: Vec<u8>| -> io::Result<i64> {
            let a: [u8; 8] =
                bytes.as_slice().try_into().map_err(|_| bad(format!("type 0x{ptype:04X}: not 8 bytes")))?;
            Ok(i64::from_le_bytes(a))
        };
        Ok(match ptype {
            0x14 => RawValue::Int(eight(self.hnid_bytes(heap, subs, hnid)?)?),
            0x40 => RawValue::Time(eight(self.hnid_bytes(heap, subs, hnid)?)?),
            0x1F => RawValue::Str(decode_utf16(&self.hnid_bytes(heap, subs, hnid)?)),
            0x1E => RawValue::Str(decode_8bit(&self.hnid_bytes(heap, subs, hnid)?, cp)),
            0x102 | 0x48 => RawValue::Bin(self.hnid_bytes(heap, subs, hnid)?),
            // PtypObject: a heap item holding the subnode's NID and size (MS-PST 2.3.3.5).
            0x0D => {
                let item = self.hnid_bytes(heap, subs, hnid)?;
                RawValue::Object { nid: u32_at(&item, 0, "PtypObject")?, size: u32_at(&item, 4, "PtypObject")? }
            }
            t => RawValue::Other(t),
        })
    }

    /// A property context's heap and raw entries (id, type, dwValueHnid) (MS-PST 2.3.3).
    fn pc_entries(&self, bid_data: u64) -> io::Result<(Heap, Vec<PcEntry>)> {
        let heap = Heap::new(self.data_blocks(bid_data)?)?;
        if heap.client_sig != 0xBC {
            return Err(bad(format!("property context: heap client signature 0x{:02X}", heap.client_sig)));
        }
        let tree = bth(&heap, heap.user_root)?;
        if tree.cb_key != 2 {
            return Err(bad(format!("property context: key size {}", tree.cb_key)));
        }
        let mut entries = Vec::with_capacity(tree.records.len());
        for (k, v) in &tree.records {
            let id = u16_at(k, 0, "PC key")?;
            entries.push((id, u16_at(v, 0, "PC entry")?, u32_at(v, 2, "PC entry")?));
        }
        Ok((heap, entries))
    }

    /// Read a property context; strings in code page `cp` unless the PC names its own
    /// (`own_cp`). Returns the properties and the code page used.
    fn pc(
        &self,
        bid_data: u64,
        subs: &[&Subnodes],
        cp: u16,
        own_cp: bool,
    ) -> io::Result<(BTreeMap<u16, RawValue>, u16)> {
        let (heap, entries) = self.pc_entries(bid_data)?;
        let cp = if own_cp { codepage_of(&entries, cp) } else { cp };
        let mut props = BTreeMap::new();
        for &(id, ptype, v) in &entries {
            // Values of 4 bytes or fewer are stored in dwValueHnid itself.
            let value = match ptype {
                0x02 => RawValue::Int(i64::from(v as u16 as i16)),
                0x03 => RawValue::Int(i64::from(v as i32)),
                0x0B => RawValue::Bool(v as u8 != 0),
                0x14 | 0x40 => self.value_from(&heap, subs, ptype, v, cp)?,
                t if is_variable(t) => self.value_from(&heap, subs, ptype, v, cp)?,
                t => RawValue::Other(t),
            };
            props.insert(id, value);
        }
        Ok((props, cp))
    }

    /// Read a table context (MS-PST 2.3.4): each row's id and present cells.
    fn tc(&self, node: NodeRef, parent: &Subnodes, cp: u16) -> io::Result<Vec<(u32, BTreeMap<u16, RawValue>)>> {
        // A table in a subnode keeps its row matrix and large values in that subnode's own
        // subnode tree; some writers use the parent's tree instead, so look there too.
        let own = self.subnodes(node.bid_sub)?;
        let subs: &[&Subnodes] = &[&own, parent];
        let heap = Heap::new(self.data_blocks(node.bid_data)?)?;
        if heap.client_sig != 0x7C {
            return Err(bad(format!("table context: heap client signature 0x{:02X}", heap.client_sig)));
        }
        let info = heap.alloc(heap.user_root)?;
        let head = slice(info, 0, 22, "TCINFO")?;
        if head[0] != 0x7C {
            return Err(bad(format!("TCINFO: bad type 0x{:02X}", head[0])));
        }
        let c_cols = usize::from(head[1]);
        let rgib: Vec<usize> =
            (0..4).map(|i| usize::from(u16::from_le_bytes([head[2 + 2 * i], head[3 + 2 * i]]))).collect();
        // rgib: ends of the 8/4-byte, 2-byte and 1-byte cells, and of the existence bitmap.
        let ceb_len = c_cols.div_ceil(8);
        if rgib.windows(2).any(|w| w[0] > w[1]) || rgib[2] + ceb_len > rgib[3] || rgib[3] < 4 {
            return Err(bad(format!("TCINFO: bad row layout {rgib:?}")));
        }
        let row_size = rgib[3];
        let hid_row_index = u32_at(head, 10, "TCINFO")?;
        let hnid_rows = u32_at(head, 14, "TCINFO")?;
        let descs = slice(info, 22, 8 * c_cols, "TCOLDESC")?;
        let mut cols = Vec::with_capacity(c_cols);
        for d in descs.chunks_exact(8) {
            let tag = u32_at(d, 0, "TCOLDESC")?;
            let (ib, cb, bit) = (usize::from(u16_at(d, 4, "TCOLDESC")?), usize::from(d[6]), usize::from(d[7]));
            if ib + cb > rgib[2] || bit >= c_cols {
                return Err(bad(format!("TCOLDESC 0x{tag:08X}: cell {ib}+{cb}, bit {bit} outside the row")));
            }
            cols.push((tag, ib, cb, bit));
        }
        let count = if hid_row_index == 0 { 0 } else { bth(&heap, hid_row_index)?.records.len() };
        if count > MAX_ROWS {
            return Err(bad(format!("table context: {count} rows, more than {MAX_ROWS}")));
        }
        if count == 0 {
            return Ok(Vec::new());
        }
        // The row matrix: one heap allocation, or a subnode whose blocks hold whole rows.
        let blocks = if hnid_rows & 0x1F == 0 {
            vec![heap.alloc(hnid_rows)?.to_vec()]
        } else {
            let sub =
                find_sub(subs, hnid_rows).ok_or_else(|| bad(format!("row matrix subnode 0x{hnid_rows:X} missing")))?;
            self.data_blocks(sub.bid_data)?
        };
        let mut rows = Vec::with_capacity(count);
        'blocks: for block in &blocks {
            for row in block.chunks_exact(row_size) {
                if rows.len() == count {
                    break 'blocks;
                }
                let id = u32_at(row, 0, "row")?;
                let ceb = &row[rgib[2]..rgib[2] + ceb_len];
                let mut cells = BTreeMap::new();
                for &(tag, ib, cb, bit) in &cols {
                    if ceb[bit / 8] & (0x80 >> (bit % 8)) == 0 {
                        continue;
                    }
                    let (id, ptype) = ((tag >> 16) as u16, tag as u16);
                    let cell = &row[ib..ib + cb];
                    let int = |n: usize| -> io::Result<u64> { le(cell, 0, n, "table cell") };
                    let value = match ptype {
                        0x02 => RawValue::Int(i64::from(int(2)? as u16 as i16)),
                        0x03 => RawValue::Int(i64::from(int(4)? as u32 as i32)),
                        0x0B => RawValue::Bool(int(1)? != 0),
                        0x14 => RawValue::Int(int(8)? as i64),
                        0x40 => RawValue::Time(int(8)? as i64),
                        t if is_variable(t) => self.value_from(&heap, subs, t, int(4)? as u32, cp)?,
                        t => RawValue::Other(t),
                    };
                    cells.insert(id, value);
                }
                rows.push((id, cells));
            }
        }
        if rows.len() < count {
            return Err(bad(format!("table context: row matrix holds {} of {count} rows", rows.len())));
        }
        Ok(rows)
    }

    /// A message whose PC is `node.bid_data`; `cp` is the code page when it names none.
    fn read_message(&self, node: NodeRef, cp: u16, depth: usize) -> io::Result<RawMessage> {
        if depth > MAX_DEPTH {
            return Err(bad(format!("embedded messages nested deeper than {MAX_DEPTH}")));
        }
        let subs = self.subnodes(node.bid_sub)?;
        let (props, cp) = self.pc(node.bid_data, &[&subs], cp, true)?;
        let mut msg = RawMessage { props, ..RawMessage::default() };
        if let Some(t) = subs.get(&NID_RECIPIENT_TABLE) {
            msg.recipients = self.tc(*t, &subs, cp)?.into_iter().map(|(_, r)| r).collect();
        }
        if let Some(t) = subs.get(&NID_ATTACHMENT_TABLE) {
            for (attach_nid, _) in self.tc(*t, &subs, cp)? {
                msg.attachments.push(self.read_attachment(&subs, attach_nid, cp, depth)?);
            }
        }
        Ok(msg)
    }

    fn read_attachment(&self, subs: &Subnodes, attach_nid: u32, cp: u16, depth: usize) -> io::Result<RawAttachment> {
        let node = subs.get(&attach_nid).ok_or_else(|| bad(format!("attachment subnode 0x{attach_nid:X} missing")))?;
        let asubs = self.subnodes(node.bid_sub)?;
        let (mut props, _) = self.pc(node.bid_data, &[&asubs, subs], cp, false)?;
        let mut att = RawAttachment::default();
        let method = match props.get(&PROP_ATTACH_METHOD) {
            Some(RawValue::Int(m)) => *m,
            _ => 0,
        };
        match props.get(&PROP_ATTACH_DATA) {
            Some(RawValue::Bin(_)) => {
                if let Some(RawValue::Bin(b)) = props.remove(&PROP_ATTACH_DATA) {
                    att.data = Some(b);
                }
            }
            // Method 6 (OLE) also stores a PtypObject; only method 5 is a message.
            Some(&RawValue::Object { nid, .. }) if method == ATTACH_EMBEDDED_MSG => {
                let inner = find_sub(&[&asubs, subs], nid)
                    .ok_or_else(|| bad(format!("embedded message subnode 0x{nid:X} missing")))?;
                att.embedded = Some(Box::new(self.read_message(inner, cp, depth + 1)?));
            }
            _ => {}
        }
        att.props = props;
        Ok(att)
    }

    /// A message node of the NBT (nid as in the folder contents tables), read whole:
    /// its PC, recipient table (subnode NID 0x692), attachment table (subnode NID 0x671)
    /// and each attachment (the table's row ids are the attachments' subnode NIDs),
    /// embedded messages read recursively from the attachment's own subnode tree.
    /// A message with no subnode tree simply has no recipients or attachments.
    pub fn message(&self, nid: u32) -> io::Result<RawMessage> {
        self.spent.set(0);
        self.read_message(self.node(nid)?, 1252, 0)
    }

    /// Only attachment `attach_nid` (a subnode of message `nid`).
    pub fn attachment(&self, nid: u32, attach_nid: u32) -> io::Result<RawAttachment> {
        self.spent.set(0);
        let node = self.node(nid)?;
        let subs = self.subnodes(node.bid_sub)?;
        let (_, entries) = self.pc_entries(node.bid_data)?;
        self.read_attachment(&subs, attach_nid, codepage_of(&entries, 1252), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn sample(name: &str) -> Option<PathBuf> {
        crate::testdata::path(&format!("pst/{name}"))
    }

    /// Every message NID of every folder under the IPM root, with its folder's name.
    fn all_messages(path: &Path) -> Vec<(String, u32)> {
        let pst = crate::pst::reader::Pst::open(path).map_err(|e| format!("{e:?}")).unwrap();
        let mut out = Vec::new();
        let mut todo = vec![pst.root().unwrap()];
        while let Some(f) = todo.pop() {
            let listing = pst.folder(f).unwrap();
            todo.extend(&listing.subfolders);
            out.extend(listing.messages.iter().map(|&m| (listing.name.clone(), m)));
        }
        out
    }

    fn subject(props: &BTreeMap<u16, RawValue>) -> Option<String> {
        match props.get(&0x0037) {
            Some(RawValue::Str(s)) => {
                // A leading "\u{1}" and one char mark a prefix length.
                Some(if s.starts_with('\u{1}') { s.chars().skip(2).collect() } else { s.clone() })
            }
            _ => None,
        }
    }

    #[test]
    fn embedded_messages() {
        for (file, want) in [
            ("pstsdk-submessage.pst", "This is an embedded message"),
            ("rubymsg-msgInMsg.pst", "Microsoft Outlook テスト メッセージ"),
            ("tika-testPST.pst", "First email"),
        ] {
            let Some(path) = sample(file) else { return };
            let raw = RawPst::open(&path).unwrap();
            let mut found = Vec::new();
            for (_, nid) in all_messages(&path) {
                let msg = raw.message(nid).unwrap_or_else(|e| panic!("{file}: message 0x{nid:X}: {e}"));
                for (i, a) in msg.attachments.iter().enumerate() {
                    if let Some(inner) = &a.embedded {
                        found.push(subject(&inner.props).unwrap_or_default());
                        // The single-attachment call agrees with the whole read.
                        let nids = attachment_nids(&raw, nid);
                        assert_eq!(&raw.attachment(nid, nids[i]).unwrap(), a);
                    }
                }
            }
            assert!(found.iter().any(|s| s == want), "{file}: embedded subjects {found:?}");
        }
    }

    fn attachment_nids(raw: &RawPst, nid: u32) -> Vec<u32> {
        let node = raw.node(nid).unwrap();
        let subs = raw.subnodes(node.bid_sub).unwrap();
        let t = subs[&NID_ATTACHMENT_TABLE];
        raw.tc(t, &subs, 1252).unwrap().into_iter().map(|(id, _)| id).collect()
    }

    #[test]
    fn message_without_subnode_tree() {
        let Some(path) = sample("javalibpst-dist-list.pst") else { return };
        let pst = crate::pst::reader::Pst::open(&path).map_err(|e| format!("{e:?}")).unwrap();
        let raw = RawPst::open(&path).unwrap();
        let mut refused = 0;
        for (folder, nid) in all_messages(&path) {
            if folder != "Contacts" {
                continue;
            }
            let msg = raw.message(nid).unwrap_or_else(|e| panic!("message 0x{nid:X}: {e}"));
            // The crate refuses a message without a subnode tree; the reader falls back here.
            if raw.node(nid).unwrap().bid_sub == 0 {
                refused += 1;
                assert!(msg.recipients.is_empty() && msg.attachments.is_empty());
                assert!(matches!(msg.props.get(&0x001A), Some(RawValue::Str(_))), "{:?}", msg.props);
                let item = pst.message(nid).unwrap_or_else(|e| panic!("message 0x{nid:X} through the reader: {e}"));
                assert!(item.class.starts_with("IPM."), "{}", item.class);
            }
        }
        assert!(refused > 0, "no Contacts item without a subnode tree");
    }

    #[test]
    fn every_enron_message() {
        let Some(path) = sample("pstextractor-enron.pst") else { return };
        let raw = RawPst::open(&path).unwrap();
        let all = all_messages(&path);
        assert!(!all.is_empty());
        for (folder, nid) in all {
            let msg = raw.message(nid).unwrap_or_else(|e| panic!("{folder}: message 0x{nid:X}: {e}"));
            assert!(msg.props.contains_key(&0x001A), "{folder}: 0x{nid:X} has no message class");
        }
    }

    /// Every message of every sample file reads, and agrees with the crate's reading
    /// wherever the crate can read it.
    #[test]
    fn agrees_with_the_crate() {
        let Some(dir) = sample("") else { return };
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // Skip what the crate refuses outright (password, 4 KiB-page OST).
            let Ok(pst) = crate::pst::reader::Pst::open(&path) else { continue };
            let raw = RawPst::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            for (folder, nid) in all_messages(&path) {
                let msg = raw.message(nid).unwrap_or_else(|e| panic!("{name} {folder}: 0x{nid:X}: {e}"));
                let Ok(item) = pst.message(nid) else { continue };
                let text = |id: u16| match msg.props.get(&id) {
                    Some(RawValue::Str(s)) if !s.is_empty() => Some(s.clone()),
                    _ => None,
                };
                let at = format!("{name} {folder} 0x{nid:X}");
                assert_eq!(
                    subject(&msg.props).filter(|s| !s.is_empty()),
                    item.subject.filter(|s| !s.is_empty()),
                    "{at}"
                );
                assert_eq!(text(0x1000), item.body_text, "{at}");
                assert_eq!(msg.attachments.len(), item.attachments.len(), "{at}");
                assert!(msg.recipients.len() >= item.recipients.len(), "{at}");
                for (a, b) in msg.attachments.iter().zip(&item.attachments) {
                    if let crate::pst::item::AttachmentData::Bytes(bytes) = &b.data {
                        assert_eq!(a.data.as_ref(), Some(bytes), "{at}");
                    }
                }
                checked += 1;
            }
        }
        assert!(checked > 0);
        println!("{checked} messages agree");
    }

    /// A subnode tree whose SIBLOCK names itself as its child: the crate recurses on it
    /// without bound. The reading layer's loop guard must turn that into an error (on a
    /// thread with the PST stack size, as every PST reader runs), and our reader refuses
    /// it by depth.
    #[test]
    fn a_subnode_tree_that_contains_itself_is_an_error_not_a_stack_overflow() {
        let Some(dir) = sample("pstsdk-submessage.pst").map(|p| p.parent().unwrap().to_path_buf()) else { return };
        // A message whose subnode block has an even number of entries (8 + 24n bytes), so
        // that SIENTRYs of 16 bytes fill it exactly.
        let mut found = None;
        'files: for name in ["pstsdk-submessage.pst", "tika-testPST.pst", "pstextractor-enron.pst"] {
            let path = dir.join(name);
            let raw = RawPst::open(&path).unwrap();
            for (_, nid) in all_messages(&path) {
                let bid = raw.node(nid).unwrap().bid_sub;
                if bid == 0 {
                    continue;
                }
                let e = raw.btree_find(raw.bbt_root, PTYPE_BBT, bid).unwrap().unwrap();
                let (ib, cb) = (le(&e, 8, 8, "").unwrap(), usize::from(u16_at(&e, 16, "").unwrap()));
                if cb >= 24 && (cb - 8) % 16 == 0 {
                    found = Some((path, nid, bid, ib, cb));
                    break 'files;
                }
            }
        }
        let (path, nid, bid, ib, cb) = found.expect("a message with an even subnode block");
        let tmp = tempfile::tempdir().unwrap();
        let copy = tmp.path().join("loop.pst");
        std::fs::copy(&path, &copy).unwrap();
        // SIBLOCK (MS-PST 2.2.2.8.3.3.2): btype 2, cLevel 1, SIENTRYs {nid, bid = itself}
        // filling the block exactly (8 + 16 per entry), as the crate expects.
        let entries = (cb - 8) / 16;
        let mut data = vec![0u8; cb];
        data[0] = 0x02;
        data[1] = 1;
        data[2..4].copy_from_slice(&(entries as u16).to_le_bytes());
        for k in 0..entries {
            let at = 8 + 16 * k;
            data[at..at + 8].copy_from_slice(&(0x20u64 + 0x20 * k as u64).to_le_bytes());
            data[at + 8..at + 16].copy_from_slice(&bid.to_le_bytes());
        }
        let f = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
        f.write_all_at(&data, ib).unwrap();
        let crc_at = ib + align64(cb + 16) as u64 - 16 + 4;
        f.write_all_at(&pst_crc(&data).to_le_bytes(), crc_at).unwrap();
        drop(f);

        assert!(RawPst::open(&copy).unwrap().message(nid).is_err());
        let result = std::thread::Builder::new()
            .stack_size(crate::pst::STACK_SIZE)
            .spawn(move || {
                let pst = crate::pst::reader::Pst::open(&copy).map_err(|e| e.to_string())?;
                pst.message(nid).map(|_| ()).map_err(|e| e.to_string())
            })
            .unwrap()
            .join()
            .expect("the reading thread must not die");
        let err = result.expect_err("a looping subnode tree must be an error");
        assert!(err.contains("again and again") || err.contains("deep"), "{err}");
    }

    #[test]
    fn a_heap_block_shorter_than_its_header_is_an_error() {
        assert!(Heap::new(vec![vec![0, 0, 0xEC]]).is_err());
        assert!(Heap::new(vec![]).is_err());
        assert!(Heap::new(vec![vec![0, 0, 0xEC, 0xBC, 0x20, 0, 0, 0, 0, 0, 0, 0]]).is_ok());
    }

    #[test]
    fn garbage_and_truncated_files() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pst");
        std::fs::write(&garbage, vec![0x5Au8; 4096]).unwrap();
        assert!(RawPst::open(&garbage).is_err());
        std::fs::write(&garbage, b"!BDN").unwrap();
        assert!(RawPst::open(&garbage).is_err());

        let Some(path) = sample("pstsdk-submessage.pst") else { return };
        let whole = std::fs::read(&path).unwrap();
        // Cyclic encoding and the 4 KiB-page OST format are refused by name.
        let mut head = whole[..4096].to_vec();
        head[0x201] = CRYPT_CYCLIC;
        let p = dir.path().join("cyclic.pst");
        std::fs::write(&p, &head).unwrap();
        let err = RawPst::open(&p).err().unwrap();
        assert!(err.to_string().contains("cyclic"), "{err}");
        let ost = path.with_file_name("pstextractor-test-v36.ost");
        let err = RawPst::open(&ost).err().unwrap();
        assert!(err.to_string().contains("version 36"), "{err}");
        let nids: Vec<u32> = all_messages(&path).into_iter().map(|(_, n)| n).collect();
        // Cut the file at several points, and scribble over its middle: only errors.
        for cut in [600, whole.len() / 4, whole.len() / 2, whole.len() - 700] {
            let p = dir.path().join("cut.pst");
            std::fs::write(&p, &whole[..cut]).unwrap();
            if let Ok(raw) = RawPst::open(&p) {
                for &n in &nids {
                    let _ = raw.message(n);
                }
            }
        }
        for seed in 0..8u64 {
            let mut bytes = whole.clone();
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for _ in 0..200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = 0x400 + (x as usize) % (bytes.len() - 0x400);
                bytes[at] = (x >> 32) as u8;
            }
            let p = dir.path().join("scribbled.pst");
            std::fs::write(&p, &bytes).unwrap();
            let raw = RawPst::open(&p).unwrap();
            for &n in &nids {
                let _ = raw.message(n);
            }
        }
    }
}

//! A reading layer under the PST reader that accepts heap pages whose free-slot count
//! (HNPAGEMAP `cFree`) was left at zero by the program that wrote the file.
//!
//! `outlook-pst` 1.2 refuses such a heap ("Invalid HNPAGEMAP cFree: 0x0000") and with it
//! the message or table it holds. Some PST writers (the EDRM Enron files among them) never
//! fill in `cFree`; the allocation offsets alone describe the heap, and Outlook, libpff and
//! libpst read these files. Until the crate accepts them, this layer presents such a block
//! to the crate as if `cFree` had been written: when the crate reads a whole data block, we
//! check it (its trailer's size and CRC must match, it must be a heap-on-node block with a
//! consistent page map, `cFree` zero while empty slots exist) and, only then, hand over the
//! block with `cFree` set and the trailer's CRC recomputed. Nothing is written to the file;
//! every other byte is passed through unchanged.
//!
//! Encodings (MS-PST 5.1, 5.2): blocks of files with no encoding or with permutative
//! ("compressible") encoding are handled; cyclic ("high") encoding is passed through.
//!
//! The layer also stops loops: a damaged file can make a block tree refer to itself, and
//! the crate then reads the same block over and over, recursing until the stack runs out
//! (which no panic handler can catch). Within one operation of the reader (an epoch,
//! advanced by [`super::reader::Pst`] before each one) a block read more than
//! [`MAX_REPEATS`] times fails with `InvalidData`, which ends the recursion.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// mpbbR, the permutative encoding's substitution (MS-PST 5.1, first 256 bytes of
/// mpbbCrypt): encoded = R[plain].
const PERMUTE_R: [u8; 256] = [
    65, 54, 19, 98, 168, 33, 110, 187, 244, 22, 204, 4, 127, 100, 232, 93, 30, 242, 203, 42, 116, 197, 94, 53, 210,
    149, 71, 158, 150, 45, 154, 136, 76, 125, 132, 63, 219, 172, 49, 182, 72, 95, 246, 196, 216, 57, 139, 231, 35, 59,
    56, 142, 200, 193, 223, 37, 177, 32, 165, 70, 96, 78, 156, 251, 170, 211, 86, 81, 69, 124, 85, 0, 7, 201, 43, 157,
    133, 155, 9, 160, 143, 173, 179, 15, 99, 171, 137, 75, 215, 167, 21, 90, 113, 102, 66, 191, 38, 74, 107, 152, 250,
    234, 119, 83, 178, 112, 5, 44, 253, 89, 58, 134, 126, 206, 6, 235, 130, 120, 87, 199, 141, 67, 175, 180, 28, 212,
    91, 205, 226, 233, 39, 79, 195, 8, 114, 128, 207, 176, 239, 245, 40, 109, 190, 48, 77, 52, 146, 213, 14, 60, 34,
    50, 229, 228, 249, 159, 194, 209, 10, 129, 18, 225, 238, 145, 131, 118, 227, 151, 230, 97, 138, 23, 121, 164, 183,
    220, 144, 122, 92, 140, 2, 166, 202, 105, 222, 80, 26, 17, 147, 185, 82, 135, 88, 252, 237, 29, 55, 73, 27, 106,
    224, 41, 51, 153, 189, 108, 217, 148, 243, 64, 84, 111, 240, 198, 115, 184, 214, 62, 101, 24, 68, 31, 221, 103, 16,
    241, 12, 25, 236, 174, 3, 161, 20, 123, 169, 11, 255, 248, 163, 192, 162, 1, 247, 46, 188, 36, 104, 117, 13, 254,
    186, 47, 181, 208, 218, 61,
];

/// The inverse of [`PERMUTE_R`]: plain = I[encoded].
fn permute_inverse() -> [u8; 256] {
    let mut inv = [0u8; 256];
    for (plain, &enc) in PERMUTE_R.iter().enumerate() {
        inv[enc as usize] = plain as u8;
    }
    inv
}

/// [`permute_inverse`], computed once.
fn inverse() -> &'static [u8; 256] {
    static INV: std::sync::OnceLock<[u8; 256]> = std::sync::OnceLock::new();
    INV.get_or_init(permute_inverse)
}

/// Undo the permutative encoding of a data block's bytes in place (MS-PST 5.1).
pub(crate) fn permute_decode(data: &mut [u8]) {
    let inv = inverse();
    for b in data {
        *b = inv[*b as usize];
    }
}

/// The PST's CRC (MS-PST 5.3): CRC-32 with the reflected polynomial 0xEDB88320, initial
/// value 0 and no final inversion.
pub fn pst_crc(data: &[u8]) -> u32 {
    static CRC_TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = CRC_TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *slot = c;
        }
        t
    });
    data.iter().fold(0u32, |crc, &b| table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8))
}

/// bCryptMethod values (MS-PST 2.2.2.6).
pub(crate) const CRYPT_NONE: u8 = 0;
pub(crate) const CRYPT_PERMUTE: u8 = 1;
pub(crate) const CRYPT_CYCLIC: u8 = 2;

/// Reads of one offset allowed within one operation. A sound file reads a block a few
/// times (its caches miss); a loop reads it once per level of recursion. The reader's
/// threads have stacks large enough for this many levels.
pub const MAX_REPEATS: u32 = 20_000;

/// The largest block, trailer included (MS-PST 2.2.2.8): 8 KiB.
pub(crate) const MAX_BLOCK: usize = 8192;

/// A `Read + Seek` over a PST file that fixes up heap page maps as described above.
pub struct FixupReader {
    file: File,
    pos: u64,
    unicode: bool,
    crypt: u8,
    /// File offset -> bytes to show there instead of the file's (only for fixed blocks).
    patches: BTreeMap<u64, Vec<u8>>,
    /// The current operation (advanced by the reader); `repeats` counts reads per offset
    /// within `seen_epoch`.
    pub epoch: Arc<AtomicU64>,
    seen_epoch: u64,
    repeats: std::collections::HashMap<u64, u32>,
}

impl FixupReader {
    /// `unicode`: the file's format (wVer 23 or more); `crypt`: its bCryptMethod.
    pub fn new(file: File, unicode: bool, crypt: u8) -> FixupReader {
        FixupReader {
            file,
            pos: 0,
            unicode,
            crypt,
            patches: BTreeMap::new(),
            epoch: Arc::new(AtomicU64::new(0)),
            seen_epoch: 0,
            repeats: std::collections::HashMap::new(),
        }
    }

    fn trailer_size(&self) -> u64 {
        if self.unicode {
            16
        } else {
            12
        }
    }

    /// `buf` was just read at `pos`: if it is a data block needing the fix, record the
    /// patches for its page map and its trailer's CRC. The crate reads a block either as
    /// its `cb` data bytes (the trailer read after) or whole, padding and trailer included.
    fn check_block(&mut self, pos: u64, buf: &[u8]) {
        if buf.len() < 16 || buf.len() > MAX_BLOCK + 64 {
            return;
        }
        if self.crypt != CRYPT_NONE && self.crypt != CRYPT_PERMUTE {
            return;
        }
        // Only a heap's first block (bSig 0xEC) can need the fix: look at that byte (a
        // block's data starts the read either way) before reading a trailer or paying for
        // the checksum.
        let sig = if self.crypt == CRYPT_PERMUTE { inverse()[buf[2] as usize] } else { buf[2] };
        if sig != 0xEC {
            return;
        }
        let ts = self.trailer_size() as usize;
        let mut trailer = [0u8; 16];
        let trailer = &mut trailer[..ts];
        let whole = buf.len() % 64 == 0;
        let at = if whole {
            trailer.copy_from_slice(&buf[buf.len() - ts..]);
            pos + (buf.len() - ts) as u64
        } else {
            // Blocks are padded to a multiple of 64 bytes, the trailer last.
            let at = pos + ((buf.len() + ts).div_ceil(64) * 64 - ts) as u64;
            if self.file.read_exact_at(trailer, at).is_err() {
                return;
            }
            at
        };
        let cb = u16::from_le_bytes([trailer[0], trailer[1]]) as usize;
        let (bid, crc_at) = if self.unicode {
            (u64::from_le_bytes(trailer[8..16].try_into().unwrap_or_default()), 4usize)
        } else {
            (u64::from(u32::from_le_bytes(trailer[4..8].try_into().unwrap_or_default())), 8usize)
        };
        let crc = u32::from_le_bytes(trailer[crc_at..crc_at + 4].try_into().unwrap_or_default());
        let fits = if whole { (cb + ts).div_ceil(64) * 64 == buf.len() } else { cb == buf.len() };
        // A heap's first block holds at least its 12-byte HNHDR.
        if !fits || !(12..=MAX_BLOCK).contains(&cb) {
            return;
        }
        let data = &buf[..cb];
        // Internal blocks (bid bit 1) hold block ids, not heaps, and are never encoded.
        // A block fixed before (its CRC patch is recorded) is shown fixed by the overlay.
        if bid & 2 != 0 || self.patches.contains_key(&(at + crc_at as u64)) || pst_crc(data) != crc {
            return;
        }
        let mut plain = data.to_vec();
        if self.crypt == CRYPT_PERMUTE {
            permute_decode(&mut plain);
        }
        let Some((map_at, free)) = needs_free_count(&plain) else { return };
        let mut fixed = data.to_vec();
        for (k, byte) in free.to_le_bytes().into_iter().enumerate() {
            fixed[map_at + 2 + k] = if self.crypt == CRYPT_PERMUTE { PERMUTE_R[byte as usize] } else { byte };
        }
        let new_crc = pst_crc(&fixed);
        self.patches.insert(pos + map_at as u64 + 2, fixed[map_at + 2..map_at + 4].to_vec());
        self.patches.insert(at + crc_at as u64, new_crc.to_le_bytes().to_vec());
    }

    fn overlay(&self, pos: u64, buf: &mut [u8]) {
        if self.patches.is_empty() {
            return;
        }
        let end = pos + buf.len() as u64;
        // Patches are at most 4 bytes long.
        for (&at, bytes) in self.patches.range(pos.saturating_sub(4)..end) {
            for (k, &b) in bytes.iter().enumerate() {
                let p = at + k as u64;
                if p >= pos && p < end {
                    buf[(p - pos) as usize] = b;
                }
            }
        }
    }
}

/// For a decoded block that starts a heap on node (HNHDR, bSig 0xEC): where its page map
/// is and the free count to write, when `cFree` is zero but the map has empty slots and is
/// otherwise consistent. None in every other case.
pub fn needs_free_count(plain: &[u8]) -> Option<(usize, u16)> {
    if plain.len() < 12 || plain[2] != 0xEC {
        return None;
    }
    let u16_at = |i: usize| plain.get(i..i + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let map_at = u16_at(0)? as usize;
    let alloc = u16_at(map_at)? as usize;
    let free = u16_at(map_at + 2)?;
    if free != 0 {
        return None;
    }
    let mut prev = u16_at(map_at + 4)?;
    // The first allocation follows the 12-byte HNHDR; the allocations end at or before
    // the map (writers may pad between them).
    if prev != 12 {
        return None;
    }
    let mut empty = 0u16;
    for i in 1..=alloc {
        let next = u16_at(map_at + 4 + 2 * i)?;
        if next < prev {
            return None;
        }
        if next == prev {
            empty = empty.checked_add(1)?;
        }
        prev = next;
    }
    if prev as usize > map_at || empty == 0 {
        return None;
    }
    Some((map_at, empty))
}

impl Read for FixupReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let epoch = self.epoch.load(Ordering::Relaxed);
        if epoch != self.seen_epoch {
            self.seen_epoch = epoch;
            self.repeats.clear();
        }
        let count = self.repeats.entry(self.pos).or_insert(0);
        *count += 1;
        if *count > MAX_REPEATS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the block at byte {} is read again and again: the file's trees loop", self.pos),
            ));
        }
        let n = self.file.read_at(buf, self.pos)?;
        if n == buf.len() {
            let (pos, data) = (self.pos, &buf[..n]);
            self.check_block(pos, data);
        }
        self.overlay(self.pos, &mut buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for FixupReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let next = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.file.metadata()?.len().checked_add_signed(d),
        };
        self.pos = next.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_read_again_and_again_in_one_operation_is_refused() {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &[7u8; 4096]).unwrap();
        let mut r = FixupReader::new(f, true, CRYPT_NONE);
        let mut buf = [0u8; 64];
        let mut read_at_64 = |r: &mut FixupReader| {
            r.seek(SeekFrom::Start(64)).unwrap();
            r.read(&mut buf)
        };
        for _ in 0..MAX_REPEATS {
            assert_eq!(read_at_64(&mut r).unwrap(), 64);
        }
        let e = read_at_64(&mut r).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // The next operation starts afresh.
        r.epoch.fetch_add(1, Ordering::Relaxed);
        assert_eq!(read_at_64(&mut r).unwrap(), 64);
    }

    #[test]
    fn the_permutation_is_a_permutation() {
        let mut seen = [false; 256];
        for &b in &PERMUTE_R {
            assert!(!seen[b as usize]);
            seen[b as usize] = true;
        }
        let inv = permute_inverse();
        for p in 0..=255u8 {
            assert_eq!(inv[PERMUTE_R[p as usize] as usize], p);
        }
    }

    #[test]
    fn the_crc_is_crc32_without_inversions() {
        // CRC-32 of "123456789" is 0xCBF43926 with inversions; without them (initial 0,
        // no final xor) the same register gives 0x2DFD2D88.
        assert_eq!(pst_crc(b"123456789"), 0x2DFD_2D88);
        assert_eq!(pst_crc(b""), 0);
    }

    fn heap(offsets: &[u16], free: u16) -> Vec<u8> {
        let map_at = *offsets.last().unwrap() as usize;
        let mut b = vec![0u8; map_at + 4 + 2 * offsets.len()];
        b[0..2].copy_from_slice(&(map_at as u16).to_le_bytes());
        b[2] = 0xEC;
        b[map_at..map_at + 2].copy_from_slice(&((offsets.len() - 1) as u16).to_le_bytes());
        b[map_at + 2..map_at + 4].copy_from_slice(&free.to_le_bytes());
        for (i, o) in offsets.iter().enumerate() {
            b[map_at + 4 + 2 * i..map_at + 6 + 2 * i].copy_from_slice(&o.to_le_bytes());
        }
        b
    }

    #[test]
    fn only_a_consistent_map_with_empty_slots_and_no_count_is_fixed() {
        assert_eq!(needs_free_count(&heap(&[12, 20, 20, 40], 0)), Some((40, 1)));
        assert_eq!(needs_free_count(&heap(&[12, 20, 20, 20, 40], 0)), Some((40, 2)));
        // Already counted, or nothing to count.
        assert_eq!(needs_free_count(&heap(&[12, 20, 20, 40], 1)), None);
        assert_eq!(needs_free_count(&heap(&[12, 20, 30, 40], 0)), None);
        // Not a heap, or an inconsistent map.
        let mut not_heap = heap(&[12, 20, 20, 40], 0);
        not_heap[2] = 0xEB;
        assert_eq!(needs_free_count(&not_heap), None);
        assert_eq!(needs_free_count(&heap(&[12, 30, 20, 40], 0)), None);
        assert_eq!(needs_free_count(&heap(&[14, 20, 20, 40], 0)), None);
        let mut beyond = heap(&[12, 20, 20, 40], 0);
        beyond[0] = 38;
        assert_eq!(needs_free_count(&beyond), None);
        assert_eq!(needs_free_count(&[0xFF; 11]), None);
    }
}

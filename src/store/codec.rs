//! Little-endian binary encoding for log records and checkpoints.

use super::error::{Error, Result};
use super::index::Attrs;

#[derive(Default)]
pub struct Enc {
    pub buf: Vec<u8>,
    /// Where each inline content's bytes start in `buf`, in record order (see `inline.rs`).
    pub marks: Vec<usize>,
}

impl Enc {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    /// mode, uid, gid (u32 each), mtime (i64 nanoseconds): 20 bytes.
    pub fn attrs(&mut self, a: &Attrs) {
        self.u32(a.mode);
        self.u32(a.uid);
        self.u32(a.gid);
        self.i64(a.mtime);
    }
}

/// A reader over a record; every short read is reported as damage at `place`.
pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
    place: &'a str,
    /// Where `buf` starts in its file, and which log segment that is: inline content is
    /// found again by its place in the segment.
    base: u64,
    seg: u64,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8], place: &'a str) -> Dec<'a> {
        Dec { buf, pos: 0, place, base: 0, seg: 0 }
    }
    /// A reader over the records of a frame of segment `seg` that start at byte `base`.
    pub fn in_segment(buf: &'a [u8], place: &'a str, seg: u64, base: u64) -> Dec<'a> {
        Dec { buf, pos: 0, place, base, seg }
    }
    /// The segment and the byte in it where the next read starts.
    pub fn here(&self) -> (u64, u64) {
        (self.seg, self.base + self.pos as u64)
    }
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return Err(Error::corrupt(self.place, format!("record ends early at byte {}", self.pos)));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// Pass over `n` bytes (inline content, read later where it lies).
    pub fn skip(&mut self, n: usize) -> Result<()> {
        self.take(n).map(drop)
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn attrs(&mut self) -> Result<Attrs> {
        Ok(Attrs { mode: self.u32()?, uid: self.u32()?, gid: self.u32()?, mtime: self.i64()? })
    }
    pub fn str(&mut self) -> Result<&'a str> {
        let place = self.place;
        std::str::from_utf8(self.bytes()?).map_err(|_| Error::corrupt(place, "name is not UTF-8"))
    }
}

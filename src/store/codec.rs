//! Little-endian binary encoding for log records and checkpoints.

use super::error::{Error, Result};
use super::index::Attrs;

#[derive(Default)]
pub struct Enc {
    pub buf: Vec<u8>,
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
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8], place: &'a str) -> Dec<'a> {
        Dec { buf, pos: 0, place }
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

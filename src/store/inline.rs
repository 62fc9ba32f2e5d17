//! Small messages' content kept in the log itself: a save of one is one append and one log
//! sync, with no object file, rename or directory sync (msgfs(5), "Inline content").
//!
//! A `Content` record (log record 17) follows the `MessagePut` of its version in the same
//! frame and carries the bytes; the index keeps where they landed (segment, offset, length)
//! by version. A segment that holds live content outlives the checkpoints that cover its
//! frames: it is removed once none of its content is live, and one that is mostly dead is
//! compacted at a checkpoint by logging its live content again (see `Shared::compact`).
//!
//! Invariant: an entry in the map names bytes inside a segment that exists and whose frame
//! is durable; entries go with the version (replaced, deleted) or move with a relocation.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

use super::codec::{Dec, Enc};
use super::error::Result;
use super::index::IdBuild;
use super::vfs::VfsFile;

/// Content up to this size goes into the log frame; larger content keeps its own object
/// file (copying it through the log twice, at save and at compaction, would cost more than
/// the file's sync saves).
pub const INLINE_MAX: usize = 64 << 10;

/// Where a version's bytes are: a log segment (named by its first sequence number), the
/// byte offset in it, and the length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LogLoc {
    pub seg: u64,
    pub off: u64,
    pub len: u64,
}

/// The bytes of an inline save on their way to the log. Shown by length only.
#[derive(Clone, PartialEq, Eq)]
pub struct Bytes(pub Arc<[u8]>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

/// The index's map of inline versions, and the live bytes per segment it implies.
#[derive(Clone, Debug, Default)]
pub struct InlineMap {
    by_version: HashMap<u64, LogLoc, IdBuild>,
    live: BTreeMap<u64, u64>,
}

impl InlineMap {
    pub fn get(&self, version: u64) -> Option<LogLoc> {
        self.by_version.get(&version).copied()
    }

    pub fn len(&self) -> usize {
        self.by_version.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_version.is_empty()
    }

    /// Forget `version` (replaced or deleted); whether it was inline.
    pub fn remove(&mut self, version: u64) -> bool {
        match self.by_version.remove(&version) {
            Some(old) => {
                self.drop_live(old);
                true
            }
            None => false,
        }
    }

    fn drop_live(&mut self, at: LogLoc) {
        if let Some(n) = self.live.get_mut(&at.seg) {
            *n -= at.len.min(*n);
            if *n == 0 {
                self.live.remove(&at.seg);
            }
        }
    }

    /// Live content bytes in segment `seg`.
    pub fn live_in(&self, seg: u64) -> u64 {
        self.live.get(&seg).copied().unwrap_or(0)
    }

    /// The segments holding live content, with their live bytes.
    pub fn segments(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.live.iter().map(|(s, n)| (*s, *n))
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, LogLoc)> + '_ {
        self.by_version.iter().map(|(v, l)| (*v, *l))
    }

    /// Take the place of a version the mapped checkpoint holds (its message is about to
    /// change): its bytes are already counted live. A place set since (a relocation) wins.
    pub fn adopt(&mut self, version: u64, at: LogLoc) {
        self.by_version.entry(version).or_insert(at);
    }

    /// `version` moves from `old` (where the index placed it, from this map or from the
    /// mapped checkpoint's row) to `at`.
    pub fn relocate(&mut self, version: u64, old: Option<LogLoc>, at: LogLoc) {
        self.by_version.insert(version, at);
        if let Some(old) = old {
            self.drop_live(old);
        }
        *self.live.entry(at.seg).or_default() += at.len;
    }

    /// After a rebase: the places are in the checkpoint's rows now; the live bytes by
    /// segment stay.
    pub fn forget_versions(&mut self) {
        self.by_version = HashMap::default();
    }

    /// The live bytes by segment, as checkpoint format 6 keeps them (the places are in the
    /// message rows): count, then segment and bytes each.
    pub fn encode_live(&self, e: &mut Enc) {
        e.u64(self.live.len() as u64);
        for (s, n) in &self.live {
            e.u64(*s);
            e.u64(*n);
        }
    }

    pub fn decode_live(&mut self, d: &mut Dec) -> Result<()> {
        for _ in 0..d.u64()? {
            let (s, n) = (d.u64()?, d.u64()?);
            self.live.insert(s, n);
        }
        Ok(())
    }

    /// The inline section of checkpoint formats 5 and before: count, then version,
    /// segment, offset, length each.
    pub fn encode(mut all: Vec<(u64, LogLoc)>, e: &mut Enc) {
        e.u64(all.len() as u64);
        all.sort_unstable_by_key(|(v, _)| *v);
        for (v, l) in all {
            e.u64(v);
            e.u64(l.seg);
            e.u64(l.off);
            e.u64(l.len);
        }
    }

    pub fn decode(d: &mut Dec) -> Result<InlineMap> {
        let n = d.u64()?;
        let mut m = InlineMap::default();
        m.by_version.reserve(n.min(1 << 24) as usize);
        for _ in 0..n {
            let v = d.u64()?;
            let at = LogLoc { seg: d.u64()?, off: d.u64()?, len: d.u64()? };
            let old = m.get(v);
            m.relocate(v, old, at);
        }
        Ok(m)
    }
}

/// One version's bytes inside a segment, read through the segment's shared descriptor.
/// Read-only: content never changes in place.
pub struct LogSlice {
    pub file: Arc<dyn VfsFile>,
    pub at: LogLoc,
}

fn read_only() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

impl VfsFile for LogSlice {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        if off >= self.at.len {
            return Ok(0);
        }
        let n = buf.len().min((self.at.len - off) as usize);
        self.file.read_at(&mut buf[..n], self.at.off + off)
    }
    fn write_all_at(&self, _: &[u8], _: u64) -> io::Result<()> {
        Err(read_only())
    }
    fn set_len(&self, _: u64) -> io::Result<()> {
        Err(read_only())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.at.len)
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
    fn raw_fd(&self) -> Option<RawFd> {
        // The descriptor is the segment's: its offsets are not the message's.
        None
    }
}

impl super::Shared {
    /// The read descriptor of segment `seg`, opened once and shared.
    pub(super) fn segment_file(&self, seg: u64) -> Result<Arc<dyn VfsFile>> {
        let mut segs = self.segs.lock().unwrap();
        if let Some(f) = segs.get(&seg) {
            return Ok(f.clone());
        }
        let p = super::log::segment_path(seg);
        let f: Arc<dyn VfsFile> = Arc::from(
            self.vfs
                .open(&p, super::vfs::OpenMode::Read)
                .map_err(|e| super::Error::io(format!("open {}", p.display()), e))?,
        );
        segs.insert(seg, f.clone());
        Ok(f)
    }

    /// Forget a removed segment's descriptor; readers holding it keep reading.
    pub(super) fn drop_segment_file(&self, seg: u64) {
        self.segs.lock().unwrap().remove(&seg);
    }

    /// The content of version `version` of message `id`: its slice of the log, or its
    /// object file. Call under the index lock `ix`, so that neither can go meanwhile (a
    /// segment is removed, and an object too, only after the index stops naming it).
    pub(super) fn content_file(&self, ix: &super::Index, id: super::Id, version: u64) -> Result<Arc<dyn VfsFile>> {
        if let Some(at) = ix.inline_at(id, version) {
            return Ok(Arc::new(LogSlice { file: self.segment_file(at.seg)?, at }));
        }
        let p = super::object_path(id, version);
        let f = self
            .vfs
            .open(&p, super::vfs::OpenMode::Read)
            .map_err(|e| super::Error::io(format!("open {}", p.display()), e))?;
        Ok(Arc::from(f))
    }
}

/// Relocation frames stay well under the frame limit.
const RELOCATE_FRAME_BYTES: u64 = 16 << 20;

impl super::Shared {
    /// Before a checkpoint: a segment that the checkpoint will cover and whose live inline
    /// content is under half its size has that content logged again at the end of the log,
    /// so the checkpoint can remove it. Runs in the committer's stead (between groups, or
    /// with the store frozen or closing), so no commit interleaves.
    pub(super) fn compact(&self, lg: &mut super::LogState) -> Result<()> {
        let current = lg.writer.as_ref().map(|w| w.first_seq);
        let moves: Vec<(super::Id, u64, LogLoc)> = {
            let ix = self.index.read().unwrap();
            let sparse: std::collections::HashSet<u64> = ix
                .inline
                .segments()
                .filter(|&(seg, live)| {
                    let len =
                        self.segment_file(seg).and_then(|f| f.len().map_err(|e| super::Error::io("stat a segment", e)));
                    Some(seg) != current && len.is_ok_and(|len| live * 2 < len)
                })
                .map(|(seg, _)| seg)
                .collect();
            if sparse.is_empty() {
                return Ok(());
            }
            ix.base.scanning(true);
            let mut v: Vec<_> = ix
                .inline_places()
                .filter_map(|(id, version, at)| at.filter(|at| sparse.contains(&at.seg)).map(|at| (id, version, at)))
                .collect();
            ix.base.scanning(false);
            v.sort_unstable_by_key(|(_, _, at)| (at.seg, at.off));
            v
        };
        let mut i = 0;
        while i < moves.len() {
            let mut recs = vec![super::index::Record::Time { ns: super::commit::now_ns() }];
            let mut bytes = 0;
            while i < moves.len() && bytes < RELOCATE_FRAME_BYTES {
                let (id, version, at) = moves[i];
                let mut buf = vec![0u8; at.len as usize];
                self.segment_file(at.seg)?
                    .read_exact_at(&mut buf, at.off)
                    .map_err(|e| super::Error::io(format!("read inline content in log segment {:016x}", at.seg), e))?;
                recs.push(super::index::Record::Content { id, version, at, data: Some(Bytes(buf.into())) });
                bytes += at.len;
                i += 1;
            }
            self.append_locked(lg, &mut recs, true)?;
            let mut ix = self.index.write().unwrap();
            for r in &recs {
                ix.apply(r);
            }
        }
        self.stats.relocated.fetch_add(moves.len() as u64, std::sync::atomic::Ordering::Relaxed);
        ::log::debug!("compaction moved {} inline versions", moves.len());
        Ok(())
    }
}

//! `msgfs check`: verify every log frame, the checkpoint, every reference and every
//! object's checksum, and name each damaged place. Changes nothing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::Error;
use super::index::{Attrs, Index};
use super::vfs::{OpenMode, RealVfs, Vfs};
use super::{checkpoint, log, object_path, txn, CLEAN_FILE, FORMAT_FILE, OBJECTS_DIR};

#[derive(Debug, Default)]
pub struct CheckReport {
    /// Damage: each a place and what is wrong there.
    pub damage: Vec<(String, String)>,
    /// Not damage, but worth saying (a torn tail the next open will cut, leftovers).
    pub notes: Vec<String>,
    pub folders: u64,
    pub messages: u64,
    pub bytes: u64,
    pub records: u64,
    pub was_clean: bool,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.damage.is_empty()
    }
    fn damage(&mut self, place: impl Into<String>, what: impl Into<String>) {
        self.damage.push((place.into(), what.into()));
    }
}

pub fn check_dir(path: &Path) -> CheckReport {
    let vfs: Arc<dyn Vfs> = Arc::new(RealVfs::new(path));
    let mut r = check(&*vfs);
    if !path.join(FORMAT_FILE).exists() {
        r.damage.insert(0, (path.display().to_string(), "no msgfs store here (no format file)".into()));
    }
    r
}

pub fn check(vfs: &dyn Vfs) -> CheckReport {
    let mut r = CheckReport { was_clean: vfs.exists(Path::new(CLEAN_FILE)), ..Default::default() };
    match vfs.open(Path::new(FORMAT_FILE), OpenMode::Read).and_then(|f| f.read_all()) {
        // A store too new for this msgfs is not checked: its records would read as damage.
        Ok(t) if String::from_utf8_lossy(&t).starts_with("msgfs store\nformat ") => {
            if let Err(e @ Error::TooNew(_)) = super::open::parse_format(&String::from_utf8_lossy(&t)) {
                push_err(&mut r, e);
                return r;
            }
        }
        Ok(_) => r.damage(FORMAT_FILE, "not a msgfs format file"),
        Err(e) => r.damage(FORMAT_FILE, format!("unreadable: {e}")),
    }
    let (mut ix, ck_seq) = match checkpoint::read(vfs) {
        Ok(Some(x)) => x,
        Ok(None) => (Index::new_store(Attrs { mode: libc::S_IFDIR | 0o700, uid: 0, gid: 0, mtime: 0 }), 0),
        Err(e) => {
            push_err(&mut r, e);
            return r;
        }
    };
    let segments = match log::list_segments(vfs) {
        Ok(s) => s,
        Err(e) => {
            push_err(&mut r, e);
            return r;
        }
    };
    let mut next_seq = ck_seq + 1;
    let n = segments.len();
    let mut replay_ok = true;
    for (i, (_, path)) in segments.iter().enumerate() {
        let place = path.display().to_string();
        // Wholly covered by the checkpoint: kept for its inline content, checked below.
        if segments.get(i + 1).is_some_and(|(next, _)| *next <= next_seq) {
            continue;
        }
        let seg = match log::read_segment(vfs, path) {
            Ok(s) => s,
            Err(e) => {
                push_err(&mut r, e);
                replay_ok = false;
                continue;
            }
        };
        if let Some(at) = seg.torn_at {
            if i + 1 == n && r.was_clean {
                r.damage(format!("{place} at byte {at}"), "bad frame at the end of a cleanly closed log");
                replay_ok = false;
            } else if i + 1 == n {
                r.notes.push(format!(
                    "{place}: torn tail of {} bytes at byte {at} (an unacknowledged commit; the next open cuts it)",
                    seg.file_len - at
                ));
            } else {
                r.damage(format!("{place} at byte {at}"), "bad frame in a segment that is not the last");
                replay_ok = false;
            }
        }
        if !replay_ok {
            continue;
        }
        for fr in &seg.frames {
            let cnt = fr.records.len() as u64;
            if fr.first_seq + cnt <= next_seq {
                continue;
            }
            if fr.first_seq != next_seq {
                r.damage(
                    format!("{place} at byte {}", fr.offset),
                    format!("sequence {} where {} was expected", fr.first_seq, next_seq),
                );
                replay_ok = false;
                break;
            }
            for (k, rec) in fr.records.iter().enumerate() {
                if let Err(e) = ix.validate(rec) {
                    r.damage(
                        format!("{place} at byte {} (record {})", fr.offset, fr.first_seq + k as u64),
                        format!("record cannot apply: {e}"),
                    );
                    replay_ok = false;
                    break;
                }
                ix.apply(rec);
            }
            if !replay_ok {
                break;
            }
            r.records += cnt;
            next_seq += cnt;
        }
    }
    r.folders = ix.folder_count() as u64;
    r.messages = ix.message_count() as u64;
    // Every message's object: present, of the recorded size and checksum.
    let mut live: HashSet<PathBuf> = HashSet::new();
    let mut ids: Vec<_> = ix.messages().collect();
    ids.sort_by_key(|(id, _)| *id);
    // Every block of a mapped checkpoint, read or not by the walk above and below.
    if let Err(e) = ix.base.verify_all() {
        push_err(&mut r, e);
    } else if let Some(e) = ix.base.damage() {
        push_err(&mut r, e);
    }
    for (id, m) in ids {
        let inline = ix.inline_at(id, m.version);
        let p = match inline {
            Some(at) => log::segment_path(at.seg),
            None => object_path(id, m.version),
        };
        let where_ = match inline {
            Some(at) => {
                format!("{} at byte {} (message {:?} in {:?})", p.display(), at.off, m.name, ix.folder_path(m.folder))
            }
            None => format!("{} (message {:?} in {:?})", p.display(), m.name, ix.folder_path(m.folder)),
        };
        let opened = vfs.open(&p, OpenMode::Read).map(|f| -> Box<dyn super::vfs::VfsFile> {
            match inline {
                Some(at) => Box::new(super::inline::LogSlice { file: std::sync::Arc::from(f), at }),
                None => f,
            }
        });
        if inline.is_none() {
            live.insert(p.clone());
        }
        match opened {
            Err(e) => r.damage(where_, format!("content object missing or unreadable: {e}")),
            Ok(f) => match txn::size_and_crc(&*f) {
                Ok((size, _)) if size != m.size => r.damage(where_, format!("size {size}, the log says {}", m.size)),
                Ok((_, crc)) if crc != m.crc => {
                    r.damage(where_, format!("checksum {crc:08x}, the log says {:08x}", m.crc))
                }
                Ok((size, _)) => r.bytes += size,
                Err(e) => r.damage(where_, e.to_string()),
            },
        }
    }
    let mut stray = 0;
    for b in 0..256u32 {
        let dir = format!("{OBJECTS_DIR}/{b:02x}");
        match vfs.read_dir(Path::new(&dir)) {
            Ok(names) => stray += names.iter().filter(|n| !live.contains(&Path::new(&dir).join(n))).count(),
            Err(e) => r.damage(dir, format!("unreadable: {e}")),
        }
    }
    if stray > 0 {
        r.notes
            .push(format!("{stray} unreferenced objects (left by an interrupted commit; the next open removes them)"));
    }
    r
}

fn push_err(r: &mut CheckReport, e: Error) {
    match e {
        Error::Corrupt { place, what } => r.damage(place, what),
        e => r.damage("store", e.to_string()),
    }
}

/// Every record still in the log, in order (those a checkpoint already covers included,
/// until their segment is removed). For tests and debugging: how many versions a change made.
pub fn log_records(vfs: &dyn Vfs) -> super::Result<Vec<super::index::Record>> {
    let mut out = Vec::new();
    for (_, path) in log::list_segments(vfs)? {
        for fr in log::read_segment(vfs, &path)?.frames {
            out.extend(fr.records);
        }
    }
    Ok(out)
}

/// [`log_records`] of a store directory.
pub fn log_records_in(dir: &Path) -> super::Result<Vec<super::index::Record>> {
    log_records(&RealVfs::new(dir))
}

//! Export as a Maildir++ tree: the exported folder's messages in `DEST/cur`, each folder
//! below it in `DEST/.A.B` (path components joined with `.`, a `.` or `\` inside a name
//! escaped as `\2e` or `\5c`, as Dovecot's listescape does), each with `cur/`, `new/`,
//! `tmp/` and a `maildirfolder` file. Every message goes to `cur/` as
//! `TIME.MSEQ.PPID.msgfs:2,FLAGS` with its store flags and its mtime; SEQ is zero-padded
//! so that sorting the names gives back the store's order.
//!
//! Limitation: a folder nested so deep that `.A.B.C...` passes 255 bytes cannot be
//! written (the export fails naming it).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{at, create_new, mkdirs, sync_tree, system_time, Error, FolderPlan, Report};
use crate::import::maildir::{encode_component, info_suffix};
use crate::store::Store;

/// The directory of a folder with path `rel` below the exported one.
pub fn folder_dir(dest: &Path, rel: &[String]) -> PathBuf {
    if rel.is_empty() {
        return dest.to_path_buf();
    }
    let parts: Vec<String> = rel.iter().map(|c| encode_component(c)).collect();
    dest.join(format!(".{}", parts.join(".")))
}

pub(super) fn export(store: &Store, plans: &[FolderPlan], dest: &Path) -> Result<Report, Error> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let pid = std::process::id();
    let mut report = Report::default();
    for f in plans {
        let dir = folder_dir(dest, &f.rel);
        for sub in ["cur", "new", "tmp"] {
            mkdirs(&dir.join(sub))?;
        }
        if !f.rel.is_empty() {
            let marker = dir.join("maildirfolder");
            if !marker.exists() {
                create_new(&marker)?;
            }
        }
        for (seq, m) in f.messages.iter().enumerate() {
            let Some(content) = report.read(store, &f.rel, m) else { continue };
            let path = dir.join("cur").join(format!("{stamp}.M{seq:07}P{pid}.msgfs{}", info_suffix(m.flags)));
            let mut file = create_new(&path)?;
            at(&path, file.write_all(&content))?;
            at(&path, file.set_modified(system_time(m.mtime)))?;
        }
        report.folders += 1;
    }
    sync_tree(dest)?;
    Ok(report)
}

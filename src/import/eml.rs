//! Single message files and directory trees of them. In a tree every regular file is a
//! message (whatever its name), except `*.mbox`/`*.mbx` files, which are mbox folders, and
//! Outlook PST files (by name or magic number), imported by [`super::pst`];
//! subdirectories become subfolders. Symbolic links to files are followed; links to
//! directories are not (they can loop).

use std::fs;
use std::path::Path;

use super::{has_pst_magic, kind_in_tree, mbox, mtime_ns, pst, sorted_entries, FileKind, Importer};
use crate::store::{Error, Id};

/// Import one message file into `folder`, byte for byte.
pub(super) fn import_file(imp: &mut Importer, path: &Path, meta: &fs::Metadata, folder: Id) -> Result<(), Error> {
    // Look at the first bytes before reading the whole file: a PST may be gigabytes.
    if has_pst_magic(path) {
        return pst::import(imp, path, folder);
    }
    match fs::read(path) {
        Ok(content) => imp.add(folder, &content, 0, mtime_ns(meta)),
        Err(e) => {
            imp.skip(path, format!("cannot read: {e}"));
            Ok(())
        }
    }
}

/// Import what the directory `dir` holds into `folder`.
pub(super) fn import_tree(imp: &mut Importer, dir: &Path, folder: Id) -> Result<(), Error> {
    let Some(entries) = sorted_entries(imp, dir) else { return Ok(()) };
    for p in entries {
        let lmeta = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) => {
                imp.skip(&p, format!("cannot read: {e}"));
                continue;
            }
        };
        let meta = if lmeta.file_type().is_symlink() {
            match fs::metadata(&p) {
                Ok(m) if m.is_file() => m,
                Ok(m) if m.is_dir() => {
                    imp.skip(&p, "symbolic link to a directory (not followed)");
                    continue;
                }
                Ok(_) => {
                    imp.skip(&p, "symbolic link to neither a regular file nor a directory");
                    continue;
                }
                Err(e) => {
                    imp.skip(&p, format!("dangling symbolic link: {e}"));
                    continue;
                }
            }
        } else {
            lmeta
        };
        if meta.is_dir() {
            imp.import_dir(&p, folder)?;
        } else if meta.is_file() {
            match kind_in_tree(&p) {
                FileKind::Mbox => mbox::import(imp, &p, folder)?,
                FileKind::Eml => import_file(imp, &p, &meta, folder)?,
                // A PST in a tree goes into the folder the tree's directory became.
                FileKind::Pst => pst::import(imp, &p, folder)?,
            }
        } else {
            imp.skip(&p, "neither a regular file nor a directory");
        }
    }
    Ok(())
}

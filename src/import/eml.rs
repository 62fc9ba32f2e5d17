//! Single message files and directory trees of them. In a tree every regular file named
//! `*.eml` or starting like a message ([`starts_like_a_message`]) is a message, except
//! `*.mbox`/`*.mbx` files, which are mbox folders, and Outlook PST files (by name or magic
//! number), imported by [`super::pst`]; subdirectories become subfolders, except the
//! metadata of notmuch and git ([`METADATA_DIRS`]). Symbolic links to files are followed;
//! links to directories are not (they can loop).

use std::fs;
use std::path::Path;

use super::{has_ext, has_pst_magic, kind_in_tree, mbox, mtime_ns, pst, sorted_entries, FileKind, Importer};
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

/// Directories in a tree that hold a tool's data, not mail: a notmuch database, a git
/// repository's own files.
pub const METADATA_DIRS: &[(&str, &str)] =
    &[(".notmuch", "a notmuch database, not mail"), (".git", "a git repository's data, not mail")];

/// The cheap test for mail in a tree, where a README or a COPYING is no message: the first
/// line is a header field (a name of printable ASCII without `:`, optional spaces, then
/// `:`; RFC 5322 with its obsolete syntax) or an mbox `From ` line. Reads nothing more, so
/// a malformed message with a good first line still imports, as it should.
pub fn starts_like_a_message(content: &[u8]) -> bool {
    let line = content.split(|&b| b == b'\n').next().unwrap_or_default();
    if line.starts_with(b"From ") {
        return true;
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else { return false };
    let mut name = &line[..colon];
    while let [rest @ .., b' ' | b'\t'] = name {
        name = rest;
    }
    !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b))
}

/// A file of a tree: a message if named `*.eml` (whatever its first line: some real ones
/// start with a line of blanks) or if it starts like one, else left out as not mail.
fn import_tree_file(imp: &mut Importer, path: &Path, meta: &fs::Metadata, folder: Id) -> Result<(), Error> {
    if has_pst_magic(path) {
        return pst::import(imp, path, folder);
    }
    match fs::read(path) {
        Ok(content) if has_ext(path, &["eml"]) || starts_like_a_message(&content) => {
            imp.add(folder, &content, 0, mtime_ns(meta))
        }
        Ok(_) => {
            imp.ignore(path, "not a message (its first line is no header field)");
            Ok(())
        }
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
            let name = p.file_name().unwrap_or_default();
            match METADATA_DIRS.iter().find(|(n, _)| name == *n) {
                Some((_, why)) => imp.ignore(&p, *why),
                None => imp.import_dir(&p, folder)?,
            }
        } else if meta.is_file() {
            match kind_in_tree(&p) {
                FileKind::Mbox => mbox::import(imp, &p, folder)?,
                FileKind::Eml => import_tree_file(imp, &p, &meta, folder)?,
                // A PST in a tree goes into the folder the tree's directory became.
                FileKind::Pst => pst::import(imp, &p, folder)?,
            }
        } else {
            imp.skip(&p, "neither a regular file nor a directory");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::starts_like_a_message;

    #[test]
    fn a_first_line_that_is_a_header_field_or_a_from_line_starts_a_message() {
        for yes in [&b"Subject: x\n\nbody"[..], b"From a@b Thu Jan  1 00:00:00 2024\n", b"X-Obsolete  : y\r\n", b"To:"]
        {
            assert!(starts_like_a_message(yes), "{}", String::from_utf8_lossy(yes));
        }
        let readme = b"# msgfs\n\nmsgfs mounts a message store\n";
        let copying = b"                    GNU GENERAL PUBLIC LICENSE\n";
        for no in [&readme[..], copying, b"", b"\nSubject: a blank first line\n", b"Two words: no\n", b": x\n"] {
            assert!(!starts_like_a_message(no), "{}", String::from_utf8_lossy(no));
        }
    }
}

//! Reading Maildir and Maildir++ trees, and the naming rules the exporter shares with it.
//!
//! A Maildir is a directory with `cur/` or `new/` (either may be missing: git keeps no
//! empty directories). Its messages are the files in `cur/` then `new/`, each sorted by
//! name; names starting with `.` are skipped, as the Maildir spec says, and `tmp/` holds
//! deliveries in progress, which are not imported. Flags come from the `:2,FLAGS` suffix.
//!
//! Below a Maildir:
//! - `.A.B` directories that are Maildirs are Maildir++ folders, imported as `A/B` below the
//!   Maildir's folder (`A` is created even without a `.A`); in each component `\2e` stands
//!   for `.` and `\5c` for `\` (Dovecot's listescape form, which our exporter writes);
//!   other dot directories (`.notmuch`, ...) are skipped;
//! - other directories are nested folders, detected again (Maildir or tree of messages);
//! - loose files are messages (notmuch's corpora keep some there), except known metadata
//!   (`subscriptions`, `dovecot*`, `courier*`) and dot files, which are reported as left
//!   out, and the empty `maildirfolder` marker, which is passed over silently.

use std::fs;
use std::path::Path;

use super::{mtime_ns, sorted_entries, Importer};
use crate::store::{flags, Error, Id};

/// Does `dir` look like a Maildir?
pub fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() || dir.join("new").is_dir()
}

/// Store flags from a Maildir file name's `:2,FLAGS` suffix (unknown letters, such as
/// lowercase keywords, are dropped).
pub fn flags_from_name(name: &str) -> u8 {
    let Some(i) = name.rfind(":2,") else { return 0 };
    name[i + 3..].chars().filter_map(|c| flags::from_letters(c.encode_utf8(&mut [0; 4])).ok()).fold(0, |a, f| a | f)
}

/// The `:2,FLAGS` suffix for store flags.
pub fn info_suffix(f: u8) -> String {
    format!(":2,{}", flags::to_letters(f))
}

/// A folder name as one Maildir++ component: `.` and `\` escaped as `\2e` and `\5c`.
pub fn encode_component(name: &str) -> String {
    name.replace('\\', "\\5c").replace('.', "\\2e")
}

/// A Maildir++ component back to a folder name: every `\XX` (two hex digits) is that
/// byte. A name that does not decode to UTF-8 is read lossily.
pub fn decode_component(comp: &str) -> String {
    let b = comp.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // Checked byte by byte: slicing the str could split a multibyte character.
        if b[i] == b'\\' && i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() {
            let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(b[i + 1]) << 4 | hex(b[i + 2]));
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Files at the top of a Maildir that hold mail software's state, not messages.
fn is_metadata_file(name: &str) -> bool {
    name == "subscriptions" || name.starts_with("dovecot") || name.starts_with("courier")
}

/// Directories at the top of a Maildir that hold mail software's state.
fn is_metadata_dir(name: &str) -> bool {
    name.starts_with("courierimap") || name.starts_with("dovecot")
}

/// Import the messages of one file in a Maildir.
fn import_message(imp: &mut Importer, path: &Path, folder: Id) -> Result<(), Error> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            imp.skip(path, format!("cannot read: {e}"));
            return Ok(());
        }
    };
    if !meta.is_file() {
        imp.skip(path, "not a regular file");
        return Ok(());
    }
    match fs::read(path) {
        Ok(content) => imp.add(folder, &content, flags_from_name(&name), mtime_ns(&meta)),
        Err(e) => {
            imp.skip(path, format!("cannot read: {e}"));
            Ok(())
        }
    }
}

/// Import the Maildir `dir` into `folder`.
pub(super) fn import(imp: &mut Importer, dir: &Path, folder: Id) -> Result<(), Error> {
    for sub in ["cur", "new"] {
        let d = dir.join(sub);
        if !d.is_dir() {
            continue;
        }
        let Some(entries) = sorted_entries(imp, &d) else { continue };
        for p in entries {
            let hidden = p.file_name().is_some_and(|n| n.as_encoded_bytes().starts_with(b"."));
            if hidden {
                imp.ignore(&p, "hidden file in a Maildir");
                continue;
            }
            import_message(imp, &p, folder)?;
        }
    }
    let Some(entries) = sorted_entries(imp, dir) else { return Ok(()) };
    for p in entries {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let meta = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) => {
                imp.skip(&p, format!("cannot read: {e}"));
                continue;
            }
        };
        if name == "cur" || name == "new" {
            continue;
        }
        if name == "tmp" {
            if let Ok(rd) = fs::read_dir(&p) {
                for e in rd.flatten() {
                    imp.ignore(&e.path(), "in tmp/: a delivery that never finished");
                }
            }
            continue;
        }
        if meta.is_dir() {
            if let Some(plus) = name.strip_prefix('.') {
                if !is_maildir(&p) {
                    imp.ignore(&p, "hidden directory that is not a Maildir++ folder");
                    continue;
                }
                let mut target = folder;
                let mut ok = true;
                for comp in plus.split('.').filter(|c| !c.is_empty()) {
                    match imp.folder_for(target, &decode_component(comp), &p)? {
                        Some(id) => target = id,
                        None => {
                            ok = false;
                            break;
                        }
                    }
                }
                if ok {
                    import(imp, &p, target)?;
                }
            } else if is_metadata_dir(&name) {
                imp.ignore(&p, "Maildir metadata");
            } else {
                imp.import_dir(&p, folder)?;
            }
        } else if meta.is_file() {
            if name == "maildirfolder" {
                // Maildir++'s empty marker of a subfolder: nothing to import or report.
                continue;
            }
            if name.starts_with('.') || is_metadata_file(&name) {
                imp.ignore(&p, "Maildir metadata");
            } else {
                import_message(imp, &p, folder)?;
            }
        } else if meta.file_type().is_symlink() {
            imp.skip(&p, "symbolic link in a Maildir (not followed)");
        } else {
            imp.skip(&p, "neither a regular file nor a directory");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_through_the_info_suffix() {
        assert_eq!(flags_from_name("123.abc:2,FRS"), flags::FLAGGED | flags::ANSWERED | flags::SEEN);
        assert_eq!(flags_from_name("123.abc:2,DPTa"), flags::DRAFT | flags::PASSED | flags::TRASHED);
        assert_eq!(flags_from_name("123.abc"), 0);
        for f in 0..64u8 {
            assert_eq!(flags_from_name(&format!("x{}", info_suffix(f))), f);
        }
        assert_eq!(info_suffix(flags::SEEN | flags::DRAFT), ":2,DS");
    }

    #[test]
    fn folder_components_escape_dots_and_backslashes() {
        for name in ["plain", "a.b", "back\\slash", "\\2e", "...", "é.ü"] {
            let enc = encode_component(name);
            assert!(!enc.contains('.'), "{enc}");
            assert_eq!(decode_component(&enc), name);
        }
        assert_eq!(decode_component("x\\4"), "x\\4");
        assert_eq!(decode_component("x\\zz"), "x\\zz");
        assert_eq!(decode_component("x\\é"), "x\\é");
    }
}

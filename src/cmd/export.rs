//! `msgfs export`: write the store (or one folder and its subfolders) out as a Maildir++
//! tree or as a directory of mbox files. The store is opened read-only, so this works
//! while it is mounted. Exits 1 if some message could not be read (the rest is written).

use std::path::Path;

use indicatif::HumanBytes;

use super::CmdResult;
use crate::export;
use crate::store::{Options, Store};

pub enum Format {
    Maildir,
    Mbox,
}

pub fn run(store: &Path, format: Format, folder: Option<&str>, dest: &Path) -> CmdResult {
    if matches!(format, Format::Maildir) && !is_empty_or_missing(dest)? {
        // A Maildir names each message by a unique name made at delivery, so a second
        // export cannot know which files it wrote before: it would add every message again.
        return Err(format!(
            "{} is not empty: a Maildir export goes into a new or empty directory (exporting again into the same one would duplicate every message)",
            dest.display()
        )
        .into());
    }
    let st = Store::open(store, Options { read_only: true, ..Default::default() })
        .map_err(|e| format!("store {}: {e}", store.display()))?;
    let folder = folder.unwrap_or("");
    let top = st.folder_by_path(folder).map_err(|e| format!("folder {folder:?}: {e}"))?;
    let res = match format {
        Format::Maildir => export::export_maildir(&st, top, dest),
        Format::Mbox => export::export_mbox(&st, top, dest),
    };
    st.close()?;
    let r = res.map_err(|e| format!("export to {}: {e}", dest.display()))?;
    println!(
        "exported {} ({}) in {} to {}",
        crate::plural::count(r.messages, "message", "messages"),
        HumanBytes(r.bytes),
        crate::plural::count(r.folders, "folder", "folders"),
        dest.display()
    );
    if !r.unreadable.is_empty() {
        println!("not exported, unreadable ({}):", r.unreadable.len());
        for (path, why) in &r.unreadable {
            println!("  {path}: {why}");
        }
    }
    Ok(u8::from(!r.unreadable.is_empty()))
}

fn is_empty_or_missing(dest: &Path) -> Result<bool, String> {
    match std::fs::read_dir(dest) {
        Ok(mut it) => Ok(it.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(format!("{}: {e}", dest.display())),
    }
}

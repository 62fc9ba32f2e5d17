//! `msgfs check`: verify a store and name each damaged place.

use std::path::Path;

use super::CmdResult;
use crate::store::check::check_dir;
use crate::store::FORMAT_FILE;

pub fn run(store: &Path) -> CmdResult {
    // A directory without a format file is not a damaged store but no store at all; saying
    // DAMAGED would send people to repair what is, say, their home directory.
    if let Err(e) = std::fs::metadata(store) {
        return Err(format!("{}: {e}", store.display()).into());
    }
    if !store.join(FORMAT_FILE).is_file() {
        return Err(format!("{} is not a msgfs store (it has no {FORMAT_FILE} file)", store.display()).into());
    }
    if super::readable_by_others(store) {
        eprintln!("{}", super::readable_warning(store));
    }
    // A store a newer msgfs wrote is not ours to judge: its new records would read as damage.
    if let Err(e @ crate::store::Error::TooNew(_)) = crate::store::format_of(store) {
        return Err(e.to_string().into());
    }
    let r = check_dir(store);
    for n in &r.notes {
        println!("note: {n}");
    }
    for (place, what) in &r.damage {
        println!("DAMAGED: {place}: {what}");
    }
    if r.ok() {
        println!(
            "{}: ok ({}, {}, {}, {}{})",
            store.display(),
            crate::plural::count(r.folders, "folder", "folders"),
            crate::plural::count(r.messages, "message", "messages"),
            crate::plural::count(r.bytes, "byte", "bytes"),
            crate::plural::count(r.records, "log record", "log records"),
            if r.was_clean { "" } else { "; not closed cleanly or in use" }
        );
        Ok(0)
    } else {
        println!("{}: {} damaged places", store.display(), r.damage.len());
        Ok(1)
    }
}

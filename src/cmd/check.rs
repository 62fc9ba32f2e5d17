//! `msgfs check`: verify a store and name each damaged place.

use std::path::Path;

use super::CmdResult;
use crate::store::check::check_dir;

pub fn run(store: &Path) -> CmdResult {
    let r = check_dir(store);
    for n in &r.notes {
        println!("note: {n}");
    }
    for (place, what) in &r.damage {
        println!("DAMAGED: {place}: {what}");
    }
    if r.ok() {
        println!(
            "{}: ok ({} folders, {} messages, {} bytes, {} log records{})",
            store.display(),
            r.folders,
            r.messages,
            r.bytes,
            r.records,
            if r.was_clean { "" } else { "; not closed cleanly or in use" }
        );
        Ok(0)
    } else {
        println!("{}: {} damaged places", store.display(), r.damage.len());
        Ok(1)
    }
}

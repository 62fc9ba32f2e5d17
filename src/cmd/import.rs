//! `msgfs import`: bring PST, mbox, Maildir and .eml sources into a store (created on first
//! use), then print what was imported and every item left out. Exits 1 when something
//! could not be imported, 0 otherwise.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::HumanBytes;

use super::CmdResult;
use crate::import::{self, Report};
use crate::plural::count;
use crate::store::{Options, Store};

pub fn run(store: &Path, sources: &[PathBuf], into: Option<&str>, allow_duplicates: bool) -> CmdResult {
    let st = Store::open(store, Options { create: true, ..Default::default() })
        .map_err(|e| format!("store {}: {e}", store.display()))?;
    let opts = import::Options { progress: std::io::stderr().is_terminal(), allow_duplicates };
    let res = import::import_sources(&st, sources, into, &opts);
    // Close even after a failure: what was committed stays, and the store is left clean.
    let closed = st.close();
    let report = res.map_err(|e| format!("import into {}: {e}", store.display()))?;
    closed.map_err(|e| format!("close store {}: {e}", store.display()))?;
    print_report(&report);
    Ok(u8::from(report.incomplete()))
}

fn print_report(r: &Report) {
    println!(
        "imported {} ({}), {} created",
        count(r.messages, "message", "messages"),
        HumanBytes(r.bytes),
        count(r.folders_created, "folder", "folders")
    );
    if r.duplicates > 0 {
        println!(
            "skipped {} already in their folder (same Message-ID and content; --allow-duplicates imports them)",
            count(r.duplicates, "duplicate", "duplicates")
        );
    }
    if r.source_folders > 0 {
        println!(
            "from PST files: {} read, {}",
            count(r.source_folders, "folder", "folders"),
            count(r.attachments, "attachment", "attachments")
        );
    }
    if !r.skipped.is_empty() {
        println!("not imported ({}):", r.skipped.len());
        for s in &r.skipped {
            println!("  {}: {}", s.path.display(), s.reason);
        }
    }
    if !r.ignored.is_empty() {
        println!("left out, not messages ({}):", r.ignored.len());
        for s in &r.ignored {
            println!("  {}: {}", s.path.display(), s.reason);
        }
    }
}

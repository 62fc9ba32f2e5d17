//! Import of an Outlook PST file: its folder tree (the IPM subtree: Inbox, Sent Items...)
//! goes under the target folder with Outlook's folder names, reusing folders that exist;
//! messages at the top of the tree go into the target folder itself. Each item is
//! converted by [`crate::pst::convert`]; one that cannot be read is listed with its folder,
//! subject when known and reason, and the import goes on.
//!
//! The folder tables are read first (cheap: no message is opened) so the progress bar can
//! advance per message over the file's size.

use std::collections::HashSet;
use std::path::Path;

use super::Importer;
use crate::pst::reader::{FolderListing, Pst};
use crate::store::{Error, Id};

/// A folder of the PST, in the order it is imported (parents before children).
struct Walked {
    listing: FolderListing,
    /// Index of the parent in the walk; None for the top.
    parent: Option<usize>,
    /// Path below the top, for messages about it.
    place: String,
}

/// The name a PST folder gets among its siblings: its Outlook name, made unique with ` (N)`
/// against the names `taken` there (its folder's messages, named first, and the PST folders
/// named before it). The PST mount names its folders with it too.
pub(crate) fn folder_name(outlook_name: &str, taken: impl Fn(&str) -> bool) -> String {
    crate::mime::unique_name(outlook_name, taken)
}

/// Read the folder tables from the top down. Unreadable folders are listed as skipped.
fn walk(imp: &mut Importer, pst: &Pst, path: &Path, root: u32) -> Vec<Walked> {
    let mut out: Vec<Walked> = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![(root, None::<usize>)];
    while let Some((node, parent)) = stack.pop() {
        // A damaged file can make a folder its own descendant; visit each node once.
        if !seen.insert(node) {
            continue;
        }
        let listing = match pst.folder(node) {
            Ok(l) => l,
            Err(e) => {
                let place = parent.map(|i| out[i].place.clone()).unwrap_or_default();
                imp.skip(&path.join(place), format!("folder {node:#x} cannot be read: {e}"));
                continue;
            }
        };
        let place = match parent {
            None => String::new(),
            Some(i) if out[i].place.is_empty() => listing.name.clone(),
            Some(i) => format!("{}/{}", out[i].place, listing.name),
        };
        let me = out.len();
        // Reverse so the stack visits subfolders in the file's order.
        stack.extend(listing.subfolders.iter().rev().map(|&n| (n, Some(me))));
        out.push(Walked { listing, parent, place });
    }
    out
}

pub fn import(imp: &mut Importer, path: &Path, into: Id) -> Result<(), Error> {
    imp.generated = true;
    // On a thread with a large stack: see crate::pst::STACK_SIZE.
    let r = std::thread::scope(|s| {
        let t = std::thread::Builder::new()
            .name("msgfs-pst".into())
            .stack_size(crate::pst::STACK_SIZE)
            .spawn_scoped(s, || import_file(imp, path, into))
            .map_err(|e| Error::io("start the PST reader thread", e))?;
        t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    });
    imp.generated = false;
    r
}

fn import_file(imp: &mut Importer, path: &Path, into: Id) -> Result<(), Error> {
    let pst = match Pst::open(path) {
        Ok(p) => p,
        Err(e) => {
            imp.skip(path, e.to_string());
            return Ok(());
        }
    };
    let file_size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let root = match pst.root() {
        Ok(r) => r,
        Err(e) => {
            imp.skip(path, format!("the folder tree cannot be read: {e}"));
            imp.progress_step(file_size);
            return Ok(());
        }
    };
    let tree = walk(imp, &pst, path, root);
    let total: u64 = tree.iter().map(|w| w.listing.messages.len() as u64).sum();
    let step = file_size.checked_div(total).unwrap_or(0);
    let mut folders: Vec<Option<Id>> = Vec::with_capacity(tree.len());
    // Names this import gave to folders of the PST, by store folder: a second PST folder
    // of the same name beside the first (or one named like a message) gets `NAME (2)`; a
    // folder that was in the store before is reused.
    let mut given: HashSet<(Id, String)> = HashSet::new();
    for w in &tree {
        let here = path.join(&w.place);
        let folder = match w.parent {
            None => Some(into),
            // A folder whose parent could not be made is left out with it.
            Some(i) => match folders[i] {
                Some(parent) => {
                    let name = folder_name(&w.listing.name, |c| {
                        given.contains(&(parent, c.to_string())) || imp.message_named(parent, c)
                    });
                    given.insert((parent, name.clone()));
                    imp.folder_for(parent, &name, &here)?
                }
                None => None,
            },
        };
        folders.push(folder);
        let Some(folder) = folder else {
            // Left out with its folder: its share of the progress bar still passes.
            imp.progress_step(step * w.listing.messages.len() as u64);
            continue;
        };
        imp.report.source_folders += 1;
        for &node in &w.listing.messages {
            match crate::pst::convert(&pst, node) {
                Ok(c) => {
                    imp.report.attachments += c.attachments;
                    if !c.missing.is_empty() {
                        let subject = crate::mime::parse_props(&c.content).subject.unwrap_or_default();
                        for why in &c.missing {
                            imp.skip(&here, format!("message {subject:?}: attachment left out: {why}"));
                        }
                    }
                    imp.add(folder, &c.content, c.flags, c.fallback_mtime)?;
                }
                Err(e) => imp.skip(&here, format!("message {node:#x} cannot be read: {e}")),
            }
            imp.progress_step(step);
        }
    }
    imp.progress_step(file_size - step * total);
    Ok(())
}

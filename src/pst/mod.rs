//! Outlook PST files: reading them ([`reader`]), turning their items into RFC 5322
//! ([`rfc5322`]), importing them into a store (`crate::import::pst`) and mounting them
//! read-only ([`view`]).

pub mod fixup;
pub mod item;
pub mod raw;
pub mod reader;
pub mod rfc5322;
pub mod rtf;
pub mod view;

use std::io;
use std::path::Path;

/// Stack size of the threads that read PST files: enough for the deepest recursion the
/// crate can be led into before the loop guard ([`fixup::MAX_REPEATS`]) stops it.
pub const STACK_SIZE: usize = 512 << 20;

use item::{AttachmentData, Item};
use reader::Pst;

/// Is `path` a PST file (by name or by its first bytes)? A directory never is (a store
/// may be called `mail.pst`); a missing `*.pst` is, so that mounting it says the file is
/// missing instead of creating a store of that name.
pub fn is_pst(path: &Path) -> bool {
    if path.is_dir() {
        return false;
    }
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("pst") || e.eq_ignore_ascii_case("ost")) {
        return true;
    }
    path.is_file() && crate::import::has_pst_magic(path)
}

/// One PST message as it is stored and shown: the RFC 5322 bytes and what goes with them.
pub struct Converted {
    pub content: Vec<u8>,
    /// Store flags (Maildir letters, see `store::flags`): read and flagged.
    pub flags: u8,
    /// The time to use when the Date header is missing (ns): delivery, else submit time.
    pub fallback_mtime: Option<i64>,
    /// Attachments written, at any depth.
    pub attachments: u64,
    /// Attachments that could not be read, with the reason: each is also a note in the
    /// message, and the import lists it.
    pub missing: Vec<String>,
}

/// Read message `node` of `pst` and write it as RFC 5322.
pub fn convert(pst: &Pst, node: u32) -> io::Result<Converted> {
    let item = pst.message(node)?;
    let content = rfc5322::write_item(&item);
    let mut attachments = 0;
    let mut missing = Vec::new();
    count_attachments(&item, &mut attachments, &mut missing);
    let mut flags = 0;
    if item.read {
        flags |= crate::store::flags::SEEN;
    }
    if item.flagged {
        flags |= crate::store::flags::FLAGGED;
    }
    Ok(Converted { content, flags, fallback_mtime: fallback_mtime(&item), attachments, missing })
}

/// What names and dates a PST message, without converting it whole: the properties of
/// the header block [`convert`] would write (the same header lines, since headers do not
/// depend on the bodies) and the fallback time.
pub fn envelope(pst: &Pst, node: u32) -> io::Result<(crate::mime::Props, Option<i64>)> {
    let item = pst.envelope(node)?;
    let head = rfc5322::write_item(&item);
    Ok((crate::mime::parse_props(&head), fallback_mtime(&item)))
}

/// The time (ns) of a message without a usable Date header: delivery, else submit time.
fn fallback_mtime(item: &Item) -> Option<i64> {
    item.delivery_time.or(item.submit_time).and_then(|s| s.checked_mul(1_000_000_000))
}

fn count_attachments(item: &Item, n: &mut u64, missing: &mut Vec<String>) {
    for a in &item.attachments {
        match &a.data {
            AttachmentData::Bytes(_) => *n += 1,
            AttachmentData::Message(inner) => {
                *n += 1;
                count_attachments(inner, n, missing);
            }
            AttachmentData::Missing(why) => {
                let name = a.filename.as_deref().map(|f| format!("{f:?}: ")).unwrap_or_default();
                missing.push(format!("{name}{why}"));
            }
        }
    }
}

//! Import mbox files, Maildir trees and directories of `.eml` files into a store.
//!
//! What a source is, decided per path:
//! - a directory with a `cur/` or `new/` subdirectory is a Maildir ([`maildir`]); git and
//!   some tools drop the empty ones, so either is enough;
//! - any other directory is a tree of `.eml` files ([`eml`]): every regular file in it named
//!   `*.eml` or whose first line is a header field or an mbox `From ` line is one message (others, a README
//!   or a COPYING, are left out as not messages), except files named `*.mbox`/`*.mbx`,
//!   which are mbox files (that is how an mbox export nests folders); subdirectories become
//!   subfolders and are detected again, except a notmuch database (`.notmuch`) and `.git`;
//! - a file named `*.eml` is one message, `*.mbox`/`*.mbx` is an mbox ([`mbox`]); any other
//!   file given on the command line is an mbox if it starts with `From `, else one message;
//! - an Outlook PST file (`*.pst`, `*.ost` or the `!BDN` magic) is read by [`pst`]: its folder
//!   tree goes under the target folder (an OST or a password-protected PST is refused with
//!   the reason);
//! - the store's own directory is never imported.
//!
//! Folders: a directory or mbox file becomes a folder named after it (without `.mbox`)
//! under the target folder (`--into`, default the top of the store); a single message
//! file goes straight into the target. A folder that exists already is reused.
//!
//! Attributes: mode `0600` (regular file), the importing user's uid and gid, and as
//! mtime the Date header's time; without a parsable Date, the file's mtime (Maildir,
//! `.eml`) or the date of the mbox From_ line, else the time of the import.
//!
//! A message whose target folder holds one with the same Message-ID and bytes is left out
//! as a duplicate ([`duplicates`]), unless `--allow-duplicates`.
//!
//! Messages keep their bytes exactly. Each is named by `MessageNames`: the name
//! [`mime::import_name`] made unique in its folder against the store's names and the names
//! given earlier in the same run. They are staged one by one and committed in
//! batches ([`BATCH_MESSAGES`], [`BATCH_BYTES`]): one syncfs and one log sync per batch.
//!
//! Problems with one source or file (unreadable, not a file or directory, a name the store
//! refuses) are recorded in the [`Report`] and the import goes on; only store failures
//! (I/O on the store itself) stop it.

mod duplicates;
pub mod eml;
pub mod maildir;
pub mod mbox;
pub mod pst;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use indicatif::{ProgressBar, ProgressStyle};

use crate::mime;
use crate::store::commit::now_ns;
use crate::store::{Attrs, Entry, Error, Id, NewMessage, Store, ROOT};

/// Commit a batch once it holds this many messages...
pub const BATCH_MESSAGES: usize = 1000;
/// ...or this many staged bytes, whichever comes first.
pub const BATCH_BYTES: u64 = 64 << 20;

/// A path left out of an import, and why.
#[derive(Clone, Debug)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Report {
    pub folders_created: u64,
    /// Folders read from PST files (created or reused).
    pub source_folders: u64,
    pub messages: u64,
    /// Attachments of imported PST items, at any depth.
    pub attachments: u64,
    pub bytes: u64,
    /// Left out because of an error (unreadable, neither file nor directory, refused
    /// name): the import is incomplete and `msgfs import` exits 1.
    pub skipped: Vec<Skipped>,
    /// Left out by rule, not an error: Maildir metadata, `tmp/`, hidden files in `cur/`,
    /// files in a tree that are not mail.
    pub ignored: Vec<Skipped>,
    /// Left out as already in their folder (same Message-ID and bytes).
    pub duplicates: u64,
}

impl Report {
    /// Did anything that should have been imported fail?
    pub fn incomplete(&self) -> bool {
        !self.skipped.is_empty()
    }
}

/// How to run an import.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Import a message even when its folder holds it already (`--allow-duplicates`).
    pub allow_duplicates: bool,
}

/// The kind of a single file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Mbox,
    Eml,
    /// An Outlook PST or OST file: read by [`pst`], never stored as one binary "message".
    Pst,
}

/// The magic number at the start of PST and OST files.
pub const PST_MAGIC: &[u8; 4] = b"!BDN";

/// Does the file at `path` start with [`PST_MAGIC`]? Reads 4 bytes, not the file.
pub fn has_pst_magic(path: &Path) -> bool {
    let mut head = [0u8; 4];
    fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head)).is_ok() && &head == PST_MAGIC
}

fn has_ext(path: &Path, exts: &[&str]) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| exts.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// A file inside a directory tree: `*.mbox`/`*.mbx` are mbox files, `*.pst`/`*.ost`
/// Outlook files, anything else is a message.
pub fn kind_in_tree(path: &Path) -> FileKind {
    if has_ext(path, &["mbox", "mbx"]) {
        FileKind::Mbox
    } else if has_ext(path, &["pst", "ost"]) {
        FileKind::Pst
    } else {
        FileKind::Eml
    }
}

/// A file named as a source: by extension, else by its first bytes (`From ` for an mbox,
/// the PST magic), else a message.
pub fn kind_of_source(path: &Path) -> std::io::Result<FileKind> {
    let by_name = kind_in_tree(path);
    if by_name != FileKind::Eml || has_ext(path, &["eml"]) {
        return Ok(by_name);
    }
    let mut head = [0u8; 5];
    let mut f = fs::File::open(path)?;
    let mut n = 0;
    while n < head.len() {
        match std::io::Read::read(&mut f, &mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(match &head[..n] {
        b"From " => FileKind::Mbox,
        h if h.starts_with(PST_MAGIC) => FileKind::Pst,
        _ => FileKind::Eml,
    })
}

/// A file's mtime in nanoseconds since the epoch.
pub(crate) fn mtime_ns(meta: &fs::Metadata) -> Option<i64> {
    let t = meta.modified().ok()?;
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).ok(),
        Err(e) => i64::try_from(e.duration().as_nanos()).ok().map(|n| -n),
    }
}

/// A path's last component as a folder name (lossy for names that are not UTF-8).
fn name_of(path: &Path) -> String {
    let canon;
    let p = if path.file_name().is_some() {
        path
    } else {
        // "." or "dir/..": name it after what it resolves to.
        canon = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        &canon
    };
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "import".to_string())
}

/// Store errors that concern one item (its name) rather than the store.
fn item_error(e: &Error) -> bool {
    matches!(e, Error::InvalidName(_) | Error::Exists | Error::NotAFolder | Error::IsAFolder | Error::NotFound)
}

fn current_ids() -> (u32, u32) {
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// The import's naming rule for messages: [`mime::import_name`] (`YYYY-MM-DD Subject.eml`)
/// made unique in its folder with ` (N)` ([`mime::unique_name_from`]). The PST mount names
/// its messages with it too, so that it shows the names an import gives.
#[derive(Default)]
pub struct MessageNames {
    /// For a (folder, wanted name): the next ` (N)` worth trying. Names are only ever added
    /// while naming (an import deletes nothing, a PST is read-only), so every lower number
    /// stays taken; this keeps a folder of thousands of "(no subject)" messages linear.
    next_suffix: HashMap<(Id, String), u64>,
}

impl MessageNames {
    /// The name of message `props` in `folder`, where `taken` says which names are in use.
    pub(crate) fn name(&mut self, folder: Id, props: &mime::Props, taken: impl Fn(&str) -> bool) -> String {
        let key = (folder, mime::import_name(props));
        let first = self.next_suffix.get(&key).copied().unwrap_or(2);
        let (name, n) = mime::unique_name_from(&key.1, first, taken);
        if n > 1 {
            self.next_suffix.insert(key, n + 1);
        }
        name
    }
}

/// An import in progress: the batch being built, the names it has handed out, the report.
pub struct Importer<'s> {
    store: &'s Store,
    batch: Vec<NewMessage>,
    batch_bytes: u64,
    /// Names given to staged messages not committed yet; the index knows the rest.
    pending: HashSet<(Id, String)>,
    names: MessageNames,
    uid: u32,
    gid: u32,
    pub(crate) report: Report,
    progress: Option<ProgressBar>,
    /// The store's own directory, never imported into itself.
    store_dir: Option<PathBuf>,
    /// Messages being added are generated from a source (a PST), not its bytes: the
    /// source advances the progress bar itself ([`Importer::progress_step`]).
    pub(crate) generated: bool,
    duplicates: duplicates::Duplicates,
    /// Keep duplicates (see [`duplicates`]).
    pub allow_duplicates: bool,
}

impl<'s> Importer<'s> {
    pub fn new(store: &'s Store) -> Importer<'s> {
        let (uid, gid) = current_ids();
        Importer {
            store,
            batch: Vec::new(),
            batch_bytes: 0,
            pending: HashSet::new(),
            names: MessageNames::default(),
            uid,
            gid,
            report: Report::default(),
            progress: None,
            store_dir: store.path().and_then(|p| fs::canonicalize(p).ok()),
            generated: false,
            duplicates: duplicates::Duplicates::default(),
            allow_duplicates: false,
        }
    }

    /// Show a progress bar over `total` source bytes.
    pub fn show_progress(&mut self, total: u64) {
        let bar = ProgressBar::new(total);
        let style =
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        self.progress = Some(bar);
    }

    /// Advance the progress bar by `bytes` of a source that is not read as messages
    /// (a PST: its messages are generated, so [`Importer::add`] does not count them).
    pub fn progress_step(&mut self, bytes: u64) {
        if let Some(bar) = &self.progress {
            bar.inc(bytes);
        }
    }

    pub fn skip(&mut self, path: &Path, reason: impl Into<String>) {
        self.report.skipped.push(Skipped { path: path.to_path_buf(), reason: reason.into() });
    }

    pub fn ignore(&mut self, path: &Path, reason: impl Into<String>) {
        self.report.ignored.push(Skipped { path: path.to_path_buf(), reason: reason.into() });
    }

    fn folder_attrs(&self) -> Attrs {
        Attrs { mode: libc::S_IFDIR | 0o700, uid: self.uid, gid: self.gid, mtime: now_ns() }
    }

    /// The folder `name` in `parent`, created if missing.
    pub fn ensure_folder(&mut self, parent: Id, name: &str) -> Result<Id, Error> {
        if self.pending.contains(&(parent, name.to_string())) {
            // A staged message holds that name; commit it so the index says so.
            self.flush()?;
        }
        match self.store.index().lookup(parent, name) {
            Some(Entry::Folder(id)) => return Ok(id),
            Some(Entry::Message(_)) => return Err(Error::NotAFolder),
            None => {}
        }
        let id = self.store.create_folder(parent, name, self.folder_attrs())?;
        self.report.folders_created += 1;
        Ok(id)
    }

    /// [`Importer::ensure_folder`], recording a refused name as a skip of `path` (None).
    pub fn folder_for(&mut self, parent: Id, name: &str, path: &Path) -> Result<Option<Id>, Error> {
        match self.ensure_folder(parent, name) {
            Ok(id) => Ok(Some(id)),
            Err(e) if item_error(&e) => {
                let place = self.store.index().folder_path(parent);
                self.skip(path, format!("cannot make folder {name:?} in /{place}: {e}"));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The folder at a `/`-separated path from the root, created as needed.
    pub fn ensure_path(&mut self, path: &str) -> Result<Id, Error> {
        let mut id = ROOT;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            id = self.ensure_folder(id, part)?;
        }
        Ok(id)
    }

    /// Is `name` in `folder` a message's (committed or staged in this batch)?
    pub(crate) fn message_named(&self, folder: Id, name: &str) -> bool {
        self.pending.contains(&(folder, name.to_string()))
            || matches!(self.store.index().lookup(folder, name), Some(Entry::Message(_)))
    }

    /// Stage one message for `folder`. `flags` are store flags; `fallback_mtime` (ns) is
    /// used when the Date header does not parse (else now).
    pub fn add(&mut self, folder: Id, content: &[u8], flags: u8, fallback_mtime: Option<i64>) -> Result<(), Error> {
        let props = mime::parse_props(content);
        if !self.allow_duplicates && self.duplicates.seen(self.store, folder, props.message_id.as_deref(), content) {
            self.report.duplicates += 1;
            if let Some(bar) = &self.progress {
                if !self.generated {
                    bar.inc(content.len() as u64);
                }
            }
            return Ok(());
        }
        let (pending, store) = (&self.pending, self.store);
        let name = self.names.name(folder, &props, |c| {
            pending.contains(&(folder, c.to_string())) || store.index().lookup(folder, c).is_some()
        });
        let mtime = props.mtime_ns(fallback_mtime).unwrap_or_else(now_ns);
        let (staged, crc) = self.store.stage_content(content)?;
        let size = content.len() as u64;
        self.pending.insert((folder, name.clone()));
        self.batch.push(NewMessage {
            folder,
            name,
            staged,
            size,
            crc,
            attrs: Attrs { mode: libc::S_IFREG | 0o600, uid: self.uid, gid: self.gid, mtime },
            flags,
        });
        self.batch_bytes += size;
        if let Some(bar) = &self.progress {
            if !self.generated {
                bar.inc(size);
            }
            bar.set_message(format!("{} messages", self.report.messages + self.batch.len() as u64));
        }
        if self.batch.len() >= BATCH_MESSAGES || self.batch_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Commit the staged messages.
    pub fn flush(&mut self) -> Result<(), Error> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let n = batch.len() as u64;
        self.store.import_messages(batch)?;
        self.report.messages += n;
        self.report.bytes += std::mem::take(&mut self.batch_bytes);
        self.pending.clear();
        Ok(())
    }

    /// Import one source (file or directory) into folder `into`.
    pub fn import_source(&mut self, src: &Path, into: Id) -> Result<(), Error> {
        let meta = match fs::metadata(src) {
            Ok(m) => m,
            Err(e) => {
                self.skip(src, format!("cannot read: {e}"));
                return Ok(());
            }
        };
        if meta.is_dir() {
            return self.import_dir(src, into);
        }
        if !meta.is_file() {
            self.skip(src, "neither a regular file nor a directory");
            return Ok(());
        }
        match kind_of_source(src) {
            Ok(FileKind::Mbox) => mbox::import(self, src, into),
            Ok(FileKind::Eml) => eml::import_file(self, src, &meta, into),
            Ok(FileKind::Pst) => pst::import(self, src, into),
            Err(e) => {
                self.skip(src, format!("cannot read: {e}"));
                Ok(())
            }
        }
    }

    /// A directory becomes folder `parent/NAME`, holding what it holds.
    pub fn import_dir(&mut self, dir: &Path, parent: Id) -> Result<(), Error> {
        if self.store_dir.is_some() && fs::canonicalize(dir).ok() == self.store_dir {
            // Importing the store's objects into itself would only make copies of copies.
            self.ignore(dir, "the store itself");
            return Ok(());
        }
        let name = name_of(dir);
        let Some(folder) = self.folder_for(parent, &name, dir)? else {
            return Ok(());
        };
        self.import_dir_contents(dir, folder)
    }

    /// What a directory holds, into `folder`: a Maildir, or a tree of message files.
    pub fn import_dir_contents(&mut self, dir: &Path, folder: Id) -> Result<(), Error> {
        if maildir::is_maildir(dir) {
            maildir::import(self, dir, folder)
        } else {
            eml::import_tree(self, dir, folder)
        }
    }

    /// Commit what is left and hand over the report.
    pub fn finish(mut self) -> Result<Report, Error> {
        self.flush()?;
        if let Some(bar) = self.progress.take() {
            bar.finish_and_clear();
        }
        Ok(self.report)
    }
}

/// The entries of a directory, sorted by name so imports are repeatable; an unreadable
/// directory is recorded as skipped (None).
pub(crate) fn sorted_entries(imp: &mut Importer, dir: &Path) -> Option<Vec<PathBuf>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            imp.skip(dir, format!("cannot read directory: {e}"));
            return None;
        }
    };
    let mut out = Vec::new();
    for entry in rd {
        match entry {
            Ok(e) => out.push(e.path()),
            Err(e) => {
                imp.skip(dir, format!("cannot list directory: {e}"));
                return None;
            }
        }
    }
    out.sort();
    Some(out)
}

/// Total bytes of the regular files under `path` (for the progress bar; errors count 0).
fn source_bytes(path: &Path) -> u64 {
    let Ok(meta) = fs::metadata(path) else { return 0 };
    if meta.is_file() {
        return meta.len();
    }
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}

/// Import `sources` into the folder at path `into` (created if missing; default the top of
/// the store). Store failures stop the import and are returned; everything else is in the
/// report.
pub fn import_sources(store: &Store, sources: &[PathBuf], into: Option<&str>, opts: &Options) -> Result<Report, Error> {
    let mut imp = Importer::new(store);
    imp.allow_duplicates = opts.allow_duplicates;
    if opts.progress {
        imp.show_progress(sources.iter().map(|s| source_bytes(s)).sum());
    }
    let into = into.unwrap_or("");
    let target = match imp.ensure_path(into) {
        Err(e) if item_error(&e) => return Err(Error::InvalidArgument(format!("folder {into:?}: {e}"))),
        r => r?,
    };
    for src in sources {
        imp.import_source(src, target)?;
    }
    imp.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_of_the_same_name_are_numbered_in_order_per_folder_past_taken_names() {
        let p = mime::parse_props(b"Date: Tue, 2 Jan 2024 10:00:00 +0000\nSubject: Plans\n\n");
        let mut names = MessageNames::default();
        let mut given: HashSet<(Id, String)> = HashSet::new();
        // "Plans (3).eml" is in folder 7 already (a user's file, say).
        given.insert((7, "2024-01-02 Plans (3).eml".into()));
        let mut next = |folder: Id| {
            let n = names.name(folder, &p, |c| given.contains(&(folder, c.to_string())));
            given.insert((folder, n.clone()));
            n
        };
        assert_eq!(next(7), "2024-01-02 Plans.eml");
        assert_eq!(next(7), "2024-01-02 Plans (2).eml");
        assert_eq!(next(7), "2024-01-02 Plans (4).eml");
        assert_eq!(next(8), "2024-01-02 Plans.eml");
        assert_eq!(next(7), "2024-01-02 Plans (5).eml");
    }
}

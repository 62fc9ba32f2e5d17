//! Reading mbox files: where messages start, which bytes belong to them, and the `>From `
//! quoting undone, read as a stream (a message is in memory, never the whole file).
//!
//! Boundaries: a line starting `From ` begins a message when it is the file's first line,
//! follows an empty line, or is a well-formed From_ line (`From SENDER Www Mmm dd hh:mm:ss
//! yyyy`, as `mailutils` and Python's `mailbox` also split on; real files drop the blank
//! line now and then). The empty line before a boundary (LF or CRLF) and at the very end is
//! the separator, not part of the message; everything else, CRLF included, is kept.
//!
//! Quoting: mboxo writers turn `From ` at a line start into `>From `; mboxrd writers add one
//! `>` to every line matching `^>*From `. The two readings differ only on lines matching
//! `^>>+From `: mboxrd removes one `>`, mboxo leaves them. The rule per file: a file holding
//! such a line is mboxrd (mboxo writers never make one from `>From `, mboxrd writers make
//! one from every `>From `), any other file is mboxo; and on a file without such lines the
//! two readings agree. So every file is read the same way: one `>` comes off each line
//! matching `^>+From `. That inverts mboxrd exactly. An mboxo file cannot be inverted
//! exactly by anyone: its writer turned both `From ` and `>From ` into `>From `.
//!
//! Messages that do not end in a newline: a mbox cannot say so (the separator adds one),
//! so our exporter writes their From_ line with the sender [`NO_FINAL_NEWLINE_SENDER`], and
//! the reader removes the final newline of such a message; round trips stay exact.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use super::Importer;
use crate::mime::date;
use crate::store::{Error, Id};

/// The From_ line sender that marks a message whose content has no final newline.
pub const NO_FINAL_NEWLINE_SENDER: &str = "no-final-newline@msgfs.invalid";

/// One message read from an mbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MboxMessage {
    /// The From_ line, with its line ending.
    pub from_line: Vec<u8>,
    /// The message, unquoted, without the separator.
    pub content: Vec<u8>,
}

impl MboxMessage {
    /// The From_ line's date as Unix time, if it has one.
    pub fn from_date(&self) -> Option<i64> {
        from_line_date(&self.from_line)
    }
}

fn is_empty_line(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

/// The date of a well-formed From_ line: `From SENDER` then an asctime date that starts
/// with a weekday and has a time. None for anything else.
pub fn from_line_date(line: &[u8]) -> Option<i64> {
    let rest = line.strip_prefix(b"From ")?;
    let rest = std::str::from_utf8(&rest[..rest.len().min(200)]).ok()?;
    let (_sender, stamp) = rest.trim_start().split_once(char::is_whitespace)?;
    date::parse_from_line_date(stamp)
}

fn sender(from_line: &[u8]) -> &[u8] {
    let rest = from_line.strip_prefix(b"From ").unwrap_or(b"");
    let end = rest.iter().position(|b| b.is_ascii_whitespace()).unwrap_or(rest.len());
    &rest[..end]
}

/// Does the line match `^>+From `?
fn is_quoted_from(line: &[u8]) -> bool {
    let gts = line.iter().take_while(|&&b| b == b'>').count();
    gts > 0 && line[gts..].starts_with(b"From ")
}

/// Splits an mbox stream into messages.
pub struct MboxReader<R> {
    r: R,
    /// The From_ line that starts the next message, once read.
    next_from: Option<Vec<u8>>,
    /// Bytes before the first From_ line, and whether any of them was not blank.
    pub preamble_bytes: u64,
    pub preamble_blank: bool,
}

impl<R: BufRead> MboxReader<R> {
    /// Read up to the first From_ line.
    pub fn new(mut r: R) -> io::Result<MboxReader<R>> {
        let mut line = Vec::new();
        let (mut bytes, mut blank, mut prev_empty) = (0u64, true, true);
        let next_from = loop {
            line.clear();
            if r.read_until(b'\n', &mut line)? == 0 {
                break None;
            }
            if line.starts_with(b"From ") && (prev_empty || from_line_date(&line).is_some()) {
                break Some(line);
            }
            bytes += line.len() as u64;
            blank &= line.iter().all(|b| b.is_ascii_whitespace());
            prev_empty = is_empty_line(&line);
        };
        Ok(MboxReader { r, next_from, preamble_bytes: bytes, preamble_blank: blank })
    }

    /// The next message, or None at the end.
    pub fn next_message(&mut self) -> io::Result<Option<MboxMessage>> {
        let Some(from_line) = self.next_from.take() else {
            return Ok(None);
        };
        let mut content = Vec::new();
        let mut line = Vec::new();
        // Length of the last line if it was empty: the separator, should a boundary follow.
        let mut last_empty = 0;
        loop {
            line.clear();
            if self.r.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if line.starts_with(b"From ") && (last_empty > 0 || from_line_date(&line).is_some()) {
                self.next_from = Some(std::mem::take(&mut line));
                break;
            }
            last_empty = if is_empty_line(&line) { line.len() } else { 0 };
            let unquoted = if is_quoted_from(&line) { &line[1..] } else { &line[..] };
            content.extend_from_slice(unquoted);
        }
        content.truncate(content.len() - last_empty);
        if sender(&from_line) == NO_FINAL_NEWLINE_SENDER.as_bytes() && content.ends_with(b"\n") {
            content.pop();
        }
        Ok(Some(MboxMessage { from_line, content }))
    }
}

/// Every message of an mbox held in memory (tests and small files).
pub fn split(data: &[u8]) -> Vec<MboxMessage> {
    let mut out = Vec::new();
    // Reading from a slice cannot fail.
    if let Ok(mut rd) = MboxReader::new(data) {
        while let Ok(Some(m)) = rd.next_message() {
            out.push(m);
        }
    }
    out
}

/// The folder name for an mbox file: its file name without `.mbox`/`.mbx`.
pub fn folder_name(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    for ext in [".mbox", ".mbx"] {
        if name.len() > ext.len() && name.is_char_boundary(name.len() - ext.len()) {
            let (stem, tail) = name.split_at(name.len() - ext.len());
            if tail.eq_ignore_ascii_case(ext) {
                return stem.to_string();
            }
        }
    }
    name
}

/// Import the mbox at `path` as folder `parent/NAME`.
pub(super) fn import(imp: &mut Importer, path: &Path, parent: Id) -> Result<(), Error> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            imp.skip(path, format!("cannot read: {e}"));
            return Ok(());
        }
    };
    let mut rd = match MboxReader::new(BufReader::with_capacity(1 << 20, file)) {
        Ok(rd) => rd,
        Err(e) => {
            imp.skip(path, format!("cannot read: {e}"));
            return Ok(());
        }
    };
    if !rd.preamble_blank {
        if rd.next_from.is_none() {
            imp.skip(path, "not an mbox: no line starts with \"From \"");
            return Ok(());
        }
        imp.skip(path, format!("{} bytes before the first From line are not part of any message", rd.preamble_bytes));
    }
    let Some(folder) = imp.folder_for(parent, &folder_name(path), path)? else {
        return Ok(());
    };
    let mut n = 0u64;
    loop {
        match rd.next_message() {
            Ok(Some(m)) => {
                let fallback = m.from_date().and_then(|s| s.checked_mul(1_000_000_000));
                imp.add(folder, &m.content, 0, fallback)?;
                n += 1;
            }
            Ok(None) => return Ok(()),
            Err(e) => {
                imp.skip(path, format!("read error after {n} messages, the rest is not imported: {e}"));
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(data: &[u8]) -> Vec<Vec<u8>> {
        split(data).into_iter().map(|m| m.content).collect()
    }

    #[test]
    fn splits_on_from_after_blank_line_and_drops_the_separator() {
        let data = b"From a Thu Jan  1 00:00:00 1970\nSubject: 1\n\nbody\nFrom here on\n\nFrom b\nSubject: 2\n\nx\n\n";
        assert_eq!(contents(data), vec![b"Subject: 1\n\nbody\nFrom here on\n".to_vec(), b"Subject: 2\n\nx\n".to_vec()]);
    }

    #[test]
    fn keeps_crlf_exactly() {
        let data = b"From a\r\nSubject: 1\r\n\r\nbody\r\n\r\nFrom b\r\nSubject: 2\r\n\r\nx\r\n";
        assert_eq!(contents(data), vec![b"Subject: 1\r\n\r\nbody\r\n".to_vec(), b"Subject: 2\r\n\r\nx\r\n".to_vec()]);
    }

    #[test]
    fn unquotes_one_level() {
        let data = b"From a\n>From x\n>>From y\n> From z\n>Fromage\n";
        assert_eq!(contents(data), vec![b"From x\n>From y\n> From z\n>Fromage\n".to_vec()]);
    }

    #[test]
    fn splits_on_a_well_formed_from_line_without_blank_line() {
        let data = b"From a Thu Jan  1 00:00:00 1970\nA: 1\n\nx\nFrom b@c Tue Nov 29 13:16:16 2011\nA: 2\n\ny\n";
        assert_eq!(contents(data).len(), 2);
        let data = b"From a Thu Jan  1 00:00:00 1970\nA: 1\n\nx\nFrom the meeting on 1 Jan 2002 10:00\n";
        assert_eq!(contents(data).len(), 1);
    }

    #[test]
    fn marked_from_line_removes_the_final_newline() {
        let data = format!("From {NO_FINAL_NEWLINE_SENDER} Thu Jan  1 00:00:00 1970\nA: 1\n\nno eol\n\n");
        assert_eq!(contents(data.as_bytes()), vec![b"A: 1\n\nno eol".to_vec()]);
    }

    #[test]
    fn preamble_is_counted() {
        let rd = MboxReader::new(&b"junk\n\nFrom a\nx\n"[..]).unwrap();
        assert_eq!(rd.preamble_bytes, 6);
        assert!(!rd.preamble_blank);
        // "From a" after a non-empty line is no boundary: all of it is preamble.
        let rd = MboxReader::new(&b"junk\nFrom a\nx\n"[..]).unwrap();
        assert_eq!(rd.preamble_bytes, 14);
        assert!(rd.next_from.is_none());
    }

    #[test]
    fn folder_name_drops_the_extension() {
        assert_eq!(folder_name(Path::new("/x/Inbox.mbox")), "Inbox");
        assert_eq!(folder_name(Path::new("/x/Old.MBX")), "Old");
        assert_eq!(folder_name(Path::new("/x/mbox.rlug")), "mbox.rlug");
        assert_eq!(folder_name(Path::new("/x/.mbox")), ".mbox");
    }
}

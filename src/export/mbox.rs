//! Export as mbox files (mboxrd) in a directory: folder `A/B` below the exported folder is
//! `DEST/A/B.mbox`, so a folder's file and the directory of its subfolders sit side by
//! side (`Inbox.mbox`, `Inbox/`). Exporting a folder other than the top of the store puts
//! its name first (`--folder Inbox` writes `DEST/Inbox.mbox`, `DEST/Inbox/Sub.mbox`).
//! Messages directly in the top of the store, which no mbox file can stand for, are
//! written as `DEST/NAME` (their `.eml` names), which an import also reads back.
//! Every folder gets a file, even an empty one, so empty folders survive a round trip.
//!
//! Each message: a From_ line `From MAILER-DAEMON <asctime of its mtime, UTC>`, the content
//! with `>` added to every line matching `^>*From `, then a newline if the content does not
//! end in one, then the empty separator line (CRLF after a CRLF message). A message with no
//! final newline gets the From_ sender [`NO_FINAL_NEWLINE_SENDER`] instead, which tells our
//! reader to take that added newline off again: the bytes come back exactly. Other mbox
//! readers see one extra newline at the end of such a message.
//!
//! Limitation: a folder named `X.mbox` next to a folder `X` with subfolders would need both
//! a file and a directory `X.mbox`; the export stops there with an error naming it.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::{at, create_new, mkdirs, sync_tree, system_time, Error, FolderPlan, Report};
use crate::import::mbox::NO_FINAL_NEWLINE_SENDER;
use crate::mime::{self, date};
use crate::store::Store;

/// Does the line need a `>` (does it match `^>*From `)?
fn needs_quote(line: &[u8]) -> bool {
    let gts = line.iter().take_while(|&&b| b == b'>').count();
    line[gts..].starts_with(b"From ")
}

/// Write one message in mboxrd form, with its From_ line and separator.
pub fn write_message(w: &mut impl Write, content: &[u8], mtime_ns: i64) -> io::Result<()> {
    let no_eol = !content.ends_with(b"\n");
    let sender = if no_eol { NO_FINAL_NEWLINE_SENDER } else { "MAILER-DAEMON" };
    writeln!(w, "From {sender} {}", date::asctime(mtime_ns.div_euclid(1_000_000_000)))?;
    for line in content.split_inclusive(|&b| b == b'\n') {
        if needs_quote(line) {
            w.write_all(b">")?;
        }
        w.write_all(line)?;
    }
    if no_eol {
        w.write_all(b"\n")?;
    }
    w.write_all(if content.ends_with(b"\r\n") { b"\r\n" } else { b"\n" })
}

pub(super) fn export(
    store: &Store,
    plans: &[FolderPlan],
    top_name: Option<&str>,
    dest: &Path,
) -> Result<Report, Error> {
    mkdirs(dest)?;
    let mut report = Report::default();
    for f in plans {
        let rel: Vec<&str> = top_name.into_iter().chain(f.rel.iter().map(String::as_str)).collect();
        let Some((last, parents)) = rel.split_last() else {
            continue; // the top of the store: below
        };
        let mut path = dest.to_path_buf();
        path.extend(parents);
        mkdirs(&path)?;
        path.push(format!("{last}.mbox"));
        let file = create_new(&path)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        for m in &f.messages {
            let Some(content) = report.read(store, &f.rel, m) else { continue };
            at(&path, write_message(&mut w, &content, m.mtime))?;
        }
        at(&path, w.flush())?;
        report.folders += 1;
    }
    if top_name.is_none() {
        if let Some(root) = plans.iter().find(|f| f.rel.is_empty()) {
            for m in &root.messages {
                let name = mime::unique_name(&m.name, |n| dest.join(n).symlink_metadata().is_ok());
                let path = dest.join(name);
                let Some(content) = report.read(store, &root.rel, m) else { continue };
                let mut file = create_new(&path)?;
                at(&path, file.write_all(&content))?;
                at(&path, file.set_modified(system_time(m.mtime)))?;
            }
        }
    }
    sync_tree(dest)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::mbox::split;

    fn round_trip(messages: &[&[u8]]) {
        let mut buf = Vec::new();
        for m in messages {
            write_message(&mut buf, m, 0).unwrap();
        }
        let back: Vec<Vec<u8>> = split(&buf).into_iter().map(|m| m.content).collect();
        let want: Vec<Vec<u8>> = messages.iter().map(|m| m.to_vec()).collect();
        assert_eq!(back, want, "{}", String::from_utf8_lossy(&buf));
    }

    #[test]
    fn mboxrd_round_trips_hard_cases() {
        round_trip(&[
            b"From: a\n\nFrom here\n>From there\n>>From everywhere\n",
            b"From the first line\n",
            b"",
            b"\n",
            b"\n\n",
            b"no final newline",
            b"ends in CR\r",
            b"A: b\r\n\r\nCRLF body\r\n\r\nFrom x\r\n",
            b"A: b\r\n\r\nFrom no eol",
            b"trailing blank lines\n\n\n",
            b"\r\n",
        ]);
    }

    #[test]
    fn quoting_adds_one_level() {
        let mut buf = Vec::new();
        write_message(&mut buf, b"From x\n>From y\n> From z\n", 0).unwrap();
        assert_eq!(buf, b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n>From x\n>>From y\n> From z\n\n");
    }
}

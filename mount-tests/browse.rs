//! Reading: listings, exact sizes, stable inode numbers, grep and find, stable readers.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;

use crate::common::*;

const A: &[u8] = b"From: a@example.com\r\nSubject: First\r\n\r\nhello \xe9 8-bit body\r\n";
const B: &[u8] = b"From: b@example.com\nSubject: Second\n\nneedle in a haystack\n";

#[test]
fn folders_are_directories_and_messages_are_files_with_exact_sizes() {
    if should_skip() {
        return;
    }
    let m = Mount::with(&[], |st| {
        put(st, "Inbox", &[("a.eml", A), ("b.eml", B)]);
        put(st, "Archive/2020", &[("old.eml", B)]);
    });
    assert_eq!(names(&m.mp), ["Archive", "Deleted Items", "Drafts", "Inbox", "Sent Items"]);
    assert_eq!(names(&m.p("Inbox")), ["a.eml", "b.eml"]);
    let md = std::fs::metadata(m.p("Inbox/a.eml")).unwrap();
    assert!(md.is_file());
    assert_eq!(md.len(), A.len() as u64);
    assert_eq!(md.mode() & 0o7777, 0o644);
    assert_eq!(md.mtime(), 1_600_000_000);
    assert_eq!(std::fs::read(m.p("Inbox/a.eml")).unwrap(), A);
    assert!(std::fs::metadata(m.p("Archive/2020")).unwrap().is_dir());
    let ls = sh(&format!("ls -l '{}'", m.p("Inbox").display()));
    let text = String::from_utf8_lossy(&ls.stdout);
    assert!(text.contains(&format!(" {} ", A.len())), "{text}");
}

#[test]
fn inode_numbers_are_stable_across_remounts() {
    if should_skip() {
        return;
    }
    let mut m = Mount::with(&[], |st| put(st, "Inbox", &[("a.eml", A), ("b.eml", B)]));
    let before: Vec<u64> =
        ["Inbox", "Inbox/a.eml", "Inbox/b.eml"].iter().map(|p| std::fs::metadata(m.p(p)).unwrap().ino()).collect();
    m.remount(&[]);
    let after: Vec<u64> =
        ["Inbox", "Inbox/a.eml", "Inbox/b.eml"].iter().map(|p| std::fs::metadata(m.p(p)).unwrap().ino()).collect();
    assert_eq!(before, after);
    assert_eq!(std::fs::metadata(&m.mp).unwrap().ino(), 1);
}

#[test]
fn grep_and_find_over_the_mount_see_what_was_stored() {
    if should_skip() {
        return;
    }
    let m = Mount::with(&[], |st| {
        put(st, "Inbox", &[("a.eml", A), ("b.eml", B)]);
        put(st, "Archive/2020", &[("old.eml", B)]);
    });
    let out = sh(&format!("cd '{}' && grep -r -l needle . | sort", m.mp.display()));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "./Archive/2020/old.eml\n./Inbox/b.eml\n");
    let out = sh(&format!("cd '{}' && find . -type f | sort", m.mp.display()));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "./Archive/2020/old.eml\n./Inbox/a.eml\n./Inbox/b.eml\n");
    let out = sh(&format!("cd '{}' && find . -type d | sort", m.mp.display()));
    assert!(String::from_utf8_lossy(&out.stdout).contains("./Archive/2020\n"));
}

#[test]
fn a_reader_keeps_its_version_while_others_save() {
    if should_skip() {
        return;
    }
    let m = Mount::with(&[], |st| put(st, "Inbox", &[("a.eml", A)]));
    let path = m.p("Inbox/a.eml");
    let mut reader = std::fs::File::open(&path).unwrap();
    let mut first = [0u8; 10];
    reader.read_exact(&mut first).unwrap();
    std::fs::write(&path, b"a completely different and longer message body\n").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"a completely different and longer message body\n");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!([&first[..], &rest[..]].concat(), A, "the reader saw another version");
    reader.seek(SeekFrom::Start(0)).unwrap();
    let mut again = Vec::new();
    reader.read_to_end(&mut again).unwrap();
    assert_eq!(again, A);
    assert_eq!(reader.metadata().unwrap().len(), A.len() as u64, "fstat gives the reader's version size");
}

#[test]
fn readdir_lists_each_entry_once_while_the_folder_changes() {
    if should_skip() {
        return;
    }
    let msgs: Vec<(String, Vec<u8>)> =
        (0..300).map(|i| (format!("{i:04}.eml"), format!("Subject: {i}\n\nx\n").into_bytes())).collect();
    let m = Mount::with(&[], |st| {
        let refs: Vec<(&str, &[u8])> = msgs.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
        put(st, "Inbox", &refs);
    });
    let dir = m.p("Inbox");
    let mut rd = std::fs::read_dir(&dir).unwrap();
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen.push(rd.next().unwrap().unwrap().file_name());
    }
    // Changes while listing: deletions and creations.
    for i in 100..150 {
        std::fs::remove_file(dir.join(format!("{i:04}.eml"))).unwrap();
    }
    for i in 0..20 {
        std::fs::write(dir.join(format!("new{i}.eml")), b"x").unwrap();
    }
    for e in rd {
        seen.push(e.unwrap().file_name());
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "an entry was listed twice");
    assert!(seen.len() >= 250, "entries were skipped: {}", seen.len());
    assert_eq!(names(&dir).len(), 300 - 50 + 20);
}

#[test]
fn grep_r_over_the_mount_matches_grep_r_over_an_export() {
    if should_skip() {
        return;
    }
    let m = Mount::with(&[], |st| {
        put(st, "Inbox", &[("a.eml", A), ("b.eml", B)]);
        put(st, "Archive/2020", &[("old.eml", B), ("older.eml", A)]);
    });
    let export = m.dir.path().join("export");
    run(msgfs_command().arg("export").arg("--store").arg(&m.store).arg("--format").arg("maildir").arg(&export));
    let lines = |dir: &std::path::Path| {
        let out = sh(&format!("grep -r -h -a -e needle -e hello '{}' | sort", dir.display()));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (mounted, exported) = (lines(&m.mp), lines(&export));
    assert!(mounted.lines().count() >= 4, "{mounted}");
    assert_eq!(mounted, exported);
}

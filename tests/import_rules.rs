//! What `msgfs import` leaves out and how its summaries read: files in a directory that are
//! not mail, messages already in their folder, and counts in the singular for one.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use msgfs::store::{Options, Store};

fn msgfs(args: &[&str], paths: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_msgfs")).args(args).args(paths).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(path: &Path, body: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
}

/// (folder path, message count) of every folder holding messages.
fn counts(store: &Path) -> Vec<(String, usize)> {
    let st = Store::open(store, Options { read_only: true, ..Default::default() }).unwrap();
    let ix = st.index();
    let mut out = Vec::new();
    let mut todo = vec![msgfs::store::ROOT];
    while let Some(f) = todo.pop() {
        let mut n = 0;
        for (_, c) in ix.children(f).unwrap() {
            match c {
                msgfs::store::Child::Folder(id) => todo.push(id),
                msgfs::store::Child::Message(..) => n += 1,
            }
        }
        if n > 0 {
            out.push((ix.folder_path(f).to_string(), n));
        }
    }
    out.sort();
    out
}

#[test]
fn a_directory_import_lists_files_that_are_not_mail_as_left_out_instead_of_importing_them() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("mail");
    write(&src.join("README"), b"# My mail\n\nExported from somewhere.\n");
    write(&src.join("COPYING"), b"                    GNU GENERAL PUBLIC LICENSE\n");
    write(&src.join(".notmuch/xapian/postlist.glass"), b"\x00\x01binary");
    write(&src.join("a.eml"), b"Subject: a\n\nbody\n");
    // Named .eml: a message whatever its first line (real ones start with a line of blanks).
    write(&src.join("blank-first.eml"), b"      \nSubject: b\n\nbody\n");
    write(&src.join("work/1"), b"Received: from x\nSubject: no extension\n\nbody\n");
    write(&src.join("work/2"), b"From alice@example.org Thu Jan  1 00:00:00 2024\nSubject: b\n\nbody\n");
    let store = tmp.path().join("store");
    let out = msgfs(&["import", "--store"], &[&store, &src]);
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let left = said.split("left out, not messages (3):\n").nth(1).unwrap_or_else(|| panic!("{said}"));
    for name in ["README: not a message", "COPYING: not a message", ".notmuch: a notmuch database"] {
        assert!(left.contains(name), "{name} not listed: {said}");
    }
    assert_eq!(counts(&store), [("mail".to_string(), 2), ("mail/work".to_string(), 2)]);
    // msgfs(1) says so.
    let man = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/msgfs.1")).unwrap();
    assert!(man.contains("left out, not messages"), "msgfs(1) does not document the rule");
}

#[test]
fn importing_the_same_mbox_twice_skips_the_messages_already_there_and_says_how_many() {
    let tmp = tempfile::tempdir().unwrap();
    let mbox = tmp.path().join("inbox.mbox");
    let first = "From a@x Thu Jan  1 00:00:00 2024\nMessage-ID: <1@x>\nSubject: one\n\nbody one\n\n\
                 From a@x Thu Jan  1 00:00:00 2024\nMessage-ID: <2@x>\nSubject: two\n\nbody two\n\n\
                 From a@x Thu Jan  1 00:00:00 2024\nSubject: no Message-ID\n\nbody three\n\n";
    write(&mbox, first.as_bytes());
    let store = tmp.path().join("store");
    let once = stdout(&msgfs(&["import", "--store"], &[&store, &mbox]));
    assert!(once.contains("imported 3 messages") && !once.contains("duplicate"), "{once}");
    // Again: the two with a Message-ID are there; one without is never a duplicate.
    let twice = stdout(&msgfs(&["import", "--store"], &[&store, &mbox]));
    assert!(twice.contains("imported 1 message ("), "{twice}");
    assert!(twice.contains("skipped 2 duplicates already in their folder"), "{twice}");
    assert_eq!(counts(&store), [("inbox".to_string(), 4)]);
    // Same Message-ID, other bytes: a different message, imported.
    write(&mbox, b"From a@x Thu Jan  1 00:00:00 2024\nMessage-ID: <1@x>\nSubject: one, edited\n\nbody\n");
    let edited = stdout(&msgfs(&["import", "--store"], &[&store, &mbox]));
    assert!(edited.contains("imported 1 message (") && !edited.contains("duplicate"), "{edited}");
    // --allow-duplicates keeps them.
    write(&mbox, first.as_bytes());
    let kept = stdout(&msgfs(&["import", "--allow-duplicates", "--store"], &[&store, &mbox]));
    assert!(kept.contains("imported 3 messages") && !kept.contains("duplicate"), "{kept}");
    assert_eq!(counts(&store), [("inbox".to_string(), 8)]);
}

#[test]
fn summaries_say_1_folder_and_1_message_in_the_singular() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, eml) = (tmp.path().join("store"), tmp.path().join("one.eml"));
    write(&eml, b"Subject: one\n\nbody\n");
    let import = stdout(&msgfs(&["import", "--into", "Archive", "--store"], &[&store, &eml]));
    assert!(import.contains("imported 1 message (") && import.contains(", 1 folder created"), "{import}");
    let check = stdout(&msgfs(&["check"], &[&store]));
    assert!(check.contains(", 1 message, "), "{check}");
    let out = tmp.path().join("out");
    let export = stdout(&msgfs(&["export", "--format", "mbox", "--folder", "Archive", "--store"], &[&store, &out]));
    assert!(export.contains("exported 1 message (") && export.contains(" in 1 folder to "), "{export}");
}

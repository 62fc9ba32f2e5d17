//! Times as on a local file system: a folder's mtime and ctime change with its entries, a
//! file's ctime with every change to it and its mtime only with its content (or utimes);
//! all of it survives a remount and a crash. And notmuch, which trusts folder mtimes,
//! finds new mail.

use std::path::Path;
use std::process::Command;

use crate::common::*;

const A: &[u8] = b"From: a@example.com\r\nSubject: First\r\nMessage-ID: <1@example.com>\r\n\r\nhello\r\n";
const B: &[u8] = b"From: b@example.com\nSubject: Second\nMessage-ID: <2@example.com>\n\nworld\n";
/// 2020-09-13, in seconds: an mtime no change made by a test can give.
const OLD: i128 = 1_600_000_000;

/// `stat -c '%.9Y %.9Z'`: mtime and ctime in nanoseconds.
fn times(p: &Path) -> (i128, i128) {
    let out = sh(&format!("stat -c '%.9Y %.9Z' '{}'", p.display()));
    let text = String::from_utf8(out.stdout).unwrap();
    let ns = |t: &str| {
        let (s, frac) = t.split_once('.').unwrap();
        s.parse::<i128>().unwrap() * 1_000_000_000 + frac.parse::<i128>().unwrap()
    };
    let v: Vec<i128> = text.split_whitespace().map(ns).collect();
    (v[0], v[1])
}

/// Set a folder's mtime back to OLD with `touch -d`; returns its times after.
fn age(p: &Path) -> (i128, i128) {
    sh(&format!("touch -d @{OLD} '{}'", p.display()));
    let t = times(p);
    assert_eq!(t.0, OLD * 1_000_000_000);
    t
}

/// Assert a folder's mtime and ctime both moved on from `before` to the same new time.
fn changed(p: &Path, before: (i128, i128), what: &str) -> i128 {
    let (m, c) = times(p);
    assert_eq!(m, c, "{what}: mtime and ctime of {} differ", p.display());
    assert!(c > before.1, "{what}: {} did not change ({before:?} -> {c})", p.display());
    c
}

#[test]
fn folder_times_follow_their_entries_and_survive_a_crash_and_a_remount() {
    if should_skip() {
        return;
    }
    let mut m = Mount::with(&[], |st| {
        put(st, "Box", &[("a.eml", A)]);
        put(st, "Other", &[("b.eml", B)]);
    });
    let (bx, other) = (m.p("Box"), m.p("Other"));
    // Creating a file and removing it. The empty file reaches the store only at its
    // release, which the kernel sends after close returns: the folder changes at the
    // create all the same, and again when the file is saved, so the times before the rm
    // are read, not set (a release after the rm saves nothing).
    let t = age(&bx);
    sh(&format!("touch '{}/f'", bx.display()));
    changed(&bx, t, "touch");
    let t = times(&bx);
    sh(&format!("rm '{}/f'", bx.display()));
    changed(&bx, t, "rm");
    // A saved message moved out: both folders.
    sh(&format!("echo 'Subject: g' > '{}/g'", bx.display()));
    let (tb, to) = (age(&bx), age(&other));
    sh(&format!("mv '{}/g' '{}/g'", bx.display(), other.display()));
    let c = changed(&bx, tb, "mv out");
    assert_eq!(changed(&other, to, "mv in"), c, "one rename, one time");
    // Folders: mkdir, a move between folders, rmdir.
    let t = age(&bx);
    sh(&format!("mkdir '{}/sub'", bx.display()));
    changed(&bx, t, "mkdir");
    let (tb, to) = (age(&bx), age(&other));
    sh(&format!("mv '{}/sub' '{}/sub'", bx.display(), other.display()));
    changed(&bx, tb, "mv dir out");
    changed(&other, to, "mv dir in");
    sh(&format!("mkdir '{}/gone'", other.display()));
    let t = age(&other);
    sh(&format!("rmdir '{}/gone'", other.display()));
    changed(&other, t, "rmdir");
    // A folder's own chmod changes its ctime, not its mtime.
    let t = age(&bx);
    sh(&format!("chmod 700 '{}'", bx.display()));
    let after = times(&bx);
    assert_eq!(after.0, t.0, "chmod kept the mtime");
    assert!(after.1 > t.1, "chmod changed the ctime");

    let paths = ["Box", "Other", "Other/g", "Other/sub", "Box/a.eml", ""];
    let live: Vec<_> = paths.iter().map(|p| times(&m.p(p))).collect();
    // A crash: the times come back from the log.
    m.kill_daemon();
    m.mount(&[]);
    let replayed: Vec<_> = paths.iter().map(|p| times(&m.p(p))).collect();
    assert_eq!(replayed, live, "after a crash");
    // A clean remount: from the checkpoint.
    m.remount(&[]);
    let reopened: Vec<_> = paths.iter().map(|p| times(&m.p(p))).collect();
    assert_eq!(reopened, live, "after a remount");
}

#[test]
fn a_files_ctime_follows_every_change_and_its_mtime_only_its_content() {
    if should_skip() {
        return;
    }
    require(&["setfattr"]);
    let mut m = Mount::with(&[], |st| put(st, "Inbox", &[("a.eml", A)]));
    let a = m.p("Inbox/a.eml");
    let t0 = times(&a);
    assert_eq!(t0.0, OLD * 1_000_000_000);
    sh(&format!("chmod 600 '{}'", a.display()));
    let t1 = times(&a);
    assert_eq!(t1.0, t0.0, "chmod keeps the mtime");
    assert!(t1.1 > t0.1, "chmod changes the ctime");
    sh(&format!("setfattr -n user.note -v x '{}'", a.display()));
    let t2 = times(&a);
    assert_eq!(t2.0, t0.0, "setfattr keeps the mtime");
    assert!(t2.1 > t1.1, "setfattr changes the ctime");
    sh(&format!("touch -d @{} '{}'", OLD - 100, a.display()));
    let t3 = times(&a);
    assert_eq!(t3.0, (OLD - 100) * 1_000_000_000, "utimes sets the mtime");
    assert!(t3.1 > t2.1, "utimes changes the ctime");
    let inbox_before = times(&m.p("Inbox"));
    sh(&format!("echo more >> '{}'", a.display()));
    let t4 = times(&a);
    assert_eq!(t4.0, t4.1, "a save sets both to its commit time");
    assert!(t4.1 > t3.1);
    assert_eq!(times(&m.p("Inbox")), inbox_before, "a new version is no new entry");
    let b = m.p("Inbox/b.eml");
    sh(&format!("mv '{}' '{}'", a.display(), b.display()));
    let t5 = times(&b);
    assert_eq!(t5.0, t4.0, "a rename keeps the mtime");
    assert!(t5.1 > t4.1, "a rename changes the ctime");
    m.remount(&[]);
    assert_eq!(times(&b), t5, "after a remount");
}

#[test]
fn notmuch_new_finds_mail_added_to_a_folder_it_has_scanned() {
    if should_skip() {
        return;
    }
    require(&["notmuch"]);
    let m = Mount::with(&[], |st| put(st, "Mail/INBOX", &[("1.eml", A)]));
    // notmuch keeps its database in the mail root: msgfs holds it as files like any other.
    let home = m.dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let config = home.join(".notmuch-config");
    std::fs::write(&config, format!("[database]\npath={}\n[new]\ntags=inbox;\n", m.p("Mail").display())).unwrap();
    let notmuch = |args: &[&str]| {
        let out = run(Command::new("notmuch").args(args).env("HOME", &home).env("NOTMUCH_CONFIG", &config));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    notmuch(&["new"]);
    assert_eq!(notmuch(&["count", "*"]).trim(), "1");
    // Delivered like an MDA does, without touching the folder afterwards.
    std::fs::write(m.p("Mail/INBOX/2.eml"), B).unwrap();
    notmuch(&["new"]);
    assert_eq!(notmuch(&["count", "*"]).trim(), "2", "notmuch missed the new message");
    let files = notmuch(&["search", "--output=files", "subject:Second"]);
    assert_eq!(files.trim(), m.p("Mail/INBOX/2.eml").display().to_string());
}

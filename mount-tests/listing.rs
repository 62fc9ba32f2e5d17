//! `msgfs ls`: a summary line per message, from a mount point and from the store directory
//! of a mounted store (opened read-only, so the daemon goes on serving), and `--json`.

use std::path::Path;

use crate::common::*;

const PLAIN: &[u8] = b"From: \"Alice Example\" <alice@example.org>\nSubject: Quarterly numbers\n\
Date: Tue, 01 Dec 2026 10:00:00 +0000\nMessage-ID: <q1@example.org>\n\nsee you\n";
const WITH_PDF: &[u8] = b"From: bob@example.org\nSubject: =?UTF-8?B?UmU6IEfDvG50ZXI=?=\n\
Date: Mon, 30 Nov 2026 09:30:00 +0000\nContent-Type: multipart/mixed; boundary=BB\n\n--BB\n\
Content-Type: text/plain\n\nthe report\n--BB\nContent-Type: application/pdf; name=\"r.pdf\"\n\
Content-Transfer-Encoding: base64\n\nJVBERi0=\n--BB--\n";

fn ls(args: &[&str], paths: &[&Path]) -> String {
    let out = run(msgfs_command().arg("ls").args(args).args(paths).env("TZ", "UTC"));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn ls_lists_a_mounted_folder_from_the_mount_and_from_the_store_directory() {
    if should_skip() {
        return;
    }
    let m = Mount::with(&[], |st| put(st, "Inbox", &[("plain.eml", PLAIN), ("pdf.eml", WITH_PDF)]));
    let short = ls(&[], &[&m.p("Inbox")]);
    // Oldest first: Bob's message of 30 November, then Alice's.
    assert_eq!(
        short,
        format!(
            "-      2026-11-30 09:30 bob@example.org      {:>5}  1 Re: Günter\n\
             -      2026-12-01 10:00 Alice Example        {:>5}  0 Quarterly numbers\n",
            WITH_PDF.len(),
            PLAIN.len()
        )
    );
    // The store directory of the mounted store gives the same, and the daemon is not
    // disturbed: a file written through the mount afterwards is saved and listed.
    assert_eq!(ls(&[], &[&m.store.join("Inbox")]), short);
    std::fs::write(
        m.p("Inbox/new.eml"),
        b"From: carol@example.org\nSubject: later\nDate: Wed, 02 Dec 2026 08:00:00 +0000\n\nx\n",
    )
    .unwrap();
    let long = ls(&["-l", "--sort", "subject"], &[&m.p("Inbox")]);
    let subjects: Vec<&str> = long.lines().map(|l| l.rsplit("  ").nth(1).unwrap()).collect();
    // By subject without its Re:, ignoring case.
    assert_eq!(subjects, ["Re: Günter", "later", "Quarterly numbers"], "{long}");
    assert!(long.contains("2026-12-01 10:00:00 +0000"), "{long}");
    assert!(long.contains("\"Alice Example\" <alice@example.org>  Quarterly numbers  Inbox/plain.eml\n"), "{long}");
    // Flags set through the mount show.
    setfattr(&m.p("Inbox/plain.eml"), "user.msgfs.flags", "FS");
    let one = ls(&["--json"], &[&m.p("Inbox/plain.eml")]);
    assert_eq!(
        one,
        format!(
            "{{\"path\":\"Inbox/plain.eml\",\"entry_id\":\"{}\",\"date\":\"Tue, 01 Dec 2026 10:00:00 +0000\",\
             \"date_unix\":1796119200,\"from\":\"\\\"Alice Example\\\" <alice@example.org>\",\
             \"subject\":\"Quarterly numbers\",\"message_id\":\"<q1@example.org>\",\"size\":{},\"flags\":\"FS\",\
             \"attachments\":0}}\n",
            entry_id(&m.p("Inbox/plain.eml")),
            PLAIN.len()
        )
    );
}

#[test]
fn ls_of_an_unknown_path_says_so_and_lists_the_others_with_exit_1() {
    if should_skip() {
        return;
    }
    let m = Mount::with(&[], |st| put(st, "Inbox", &[("plain.eml", PLAIN)]));
    let out = msgfs_command().arg("ls").arg(m.store.join("Nope")).arg(m.p("Inbox")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Nope: no such folder or message"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Quarterly numbers"));
    let out = msgfs_command().arg("ls").arg(m.dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither in a msgfs mount nor in a store directory"));
}

fn setfattr(p: &Path, name: &str, value: &str) {
    run(std::process::Command::new("setfattr").arg("-n").arg(name).arg("-v").arg(value).arg(p));
}

//! `-o trash`: rm moves a message to Deleted Items (same entry id, origin kept) and
//! `msgfs restore` puts it back; rm inside Deleted Items deletes. Editors, `sed -i` and
//! rsync, which save by renaming over the message or through scratch files, make one new
//! version and leave nothing in the trash.

use std::path::Path;
use std::process::Command;

use crate::common::*;

const MSG: &[u8] = b"From: a@example.com\nSubject: apples and bananas\n\nan apple a day\n";

fn trash_mount() -> Mount {
    Mount::with(&["trash"], |st| put(st, "Inbox/Work", &[("m.eml", MSG)]))
}

fn origin(p: &Path) -> Result<String, i32> {
    getxattr(p, "user.msgfs.origin").map(|v| String::from_utf8(v).unwrap())
}

#[test]
fn rm_with_trash_moves_the_message_to_deleted_items_and_restore_puts_it_back() {
    if should_skip() {
        return;
    }
    let m = trash_mount();
    let id = entry_id(&m.p("Inbox/Work/m.eml"));
    run(Command::new("rm").arg(m.p("Inbox/Work/m.eml")));
    assert!(names(&m.p("Inbox/Work")).is_empty());
    let trashed = m.p("Deleted Items/m.eml");
    assert_eq!(entry_id(&trashed), id, "the message kept its entry id");
    assert_eq!(std::fs::read(&trashed).unwrap(), MSG);
    assert_eq!(origin(&trashed).unwrap(), "Inbox/Work/m.eml");
    // Hidden from listxattr, so rsync -X and cp -a do not copy it.
    let listed = sh(&format!("getfattr -d -m - '{}'", trashed.display()));
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("origin"));
    // A second message of the same name removed later does not replace the first.
    std::fs::write(m.p("Inbox/Work/m.eml"), MSG).unwrap();
    run(Command::new("rm").arg(m.p("Inbox/Work/m.eml")));
    assert_eq!(names(&m.p("Deleted Items")), ["m (2).eml", "m.eml"]);

    let out = run(msgfs_command().arg("restore").arg(&trashed));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Inbox/Work/m.eml"));
    let back = m.p("Inbox/Work/m.eml");
    assert_eq!(entry_id(&back), id);
    assert_eq!(origin(&back), Err(libc::ENODATA), "the origin goes when the message leaves the trash");
    // A name taken where it was is never replaced (the second was m.eml there too).
    let out = msgfs_command().arg("restore").arg(m.p("Deleted Items/m (2).eml")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(entry_id(&back), id);

    assert_eq!(origin(&m.p("Deleted Items/m (2).eml")).unwrap(), "Inbox/Work/m.eml");

    // rm inside Deleted Items deletes.
    run(Command::new("rm").arg(m.p("Deleted Items/m (2).eml")));
    assert!(names(&m.p("Deleted Items")).is_empty());
    let out = msgfs_command().arg("restore").arg(&back).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not removed with -o trash"));
}

#[test]
fn without_the_trash_option_rm_deletes() {
    if should_skip() {
        return;
    }
    let m = Mount::with(&[], |st| put(st, "Inbox", &[("m.eml", MSG)]));
    run(Command::new("rm").arg(m.p("Inbox/m.eml")));
    assert!(names(&m.p("Inbox")).is_empty());
    assert!(names(&m.p("Deleted Items")).is_empty());
}

/// `edit` on Inbox/Work/m.eml under `-o trash`: one new version of the same message with
/// `expect`, nothing else in the folder, nothing in Deleted Items.
fn edit_leaves_the_trash_empty(edit: impl FnOnce(&Mount, &Path), expect: &[u8]) {
    let m = trash_mount();
    let p = m.p("Inbox/Work/m.eml");
    let (id, v) = (entry_id(&p), version(&p));
    edit(&m, &p);
    assert_eq!(std::fs::read(&p).unwrap(), expect);
    assert_eq!(entry_id(&p), id, "the edit changed the message's identity");
    assert!(version(&p) > v, "no new version");
    assert_eq!(names(&m.p("Inbox/Work")), ["m.eml"], "stray files left");
    assert!(names(&m.p("Deleted Items")).is_empty(), "the edit filled the trash");
}

#[test]
fn vim_with_its_defaults_under_trash_leaves_deleted_items_empty() {
    if should_skip() {
        return;
    }
    require(&["vim"]);
    edit_leaves_the_trash_empty(
        |_, p| {
            // Backup by renaming the original, a swap file: vim deletes both at the end.
            run(Command::new("vim")
                .args(["-u", "NONE", "-N", "-es", "-c", "set writebackup backupcopy=no swapfile"])
                .args(["-c", "%s/apple/pear/"])
                .args(["-c", "wq"])
                .arg(p));
        },
        b"From: a@example.com\nSubject: pears and bananas\n\nan pear a day\n",
    );
}

#[test]
fn sed_in_place_under_trash_leaves_deleted_items_empty() {
    if should_skip() {
        return;
    }
    require(&["sed"]);
    edit_leaves_the_trash_empty(
        |_, p| {
            run(Command::new("sed").arg("-i").arg("s/apple/pear/").arg(p));
        },
        b"From: a@example.com\nSubject: pears and bananas\n\nan pear a day\n",
    );
}

#[test]
fn rsync_into_the_mount_under_trash_leaves_deleted_items_empty() {
    if should_skip() {
        return;
    }
    require(&["rsync"]);
    let new = b"From: a@example.com\nSubject: apples and cherries\n\nan apple a day, changed\n";
    edit_leaves_the_trash_empty(
        |m, p| {
            // rsync's default: a temporary `.m.eml.XXXXXX` renamed over the message.
            let src = m.dir.path().join("src");
            std::fs::create_dir(&src).unwrap();
            std::fs::write(src.join("m.eml"), new).unwrap();
            run(Command::new("rsync").arg("-a").arg(src.join("m.eml")).arg(p));
        },
        new,
    );
}

#[test]
fn a_message_renamed_to_a_backup_name_and_removed_goes_to_the_trash_under_its_own_name() {
    if should_skip() {
        return;
    }
    let m = trash_mount();
    let id = entry_id(&m.p("Inbox/Work/m.eml"));
    // `mv m.eml m.eml~` shows the message under a scratch name; removing it there removes
    // the message, as `rm m.eml` would.
    run(Command::new("mv").arg(m.p("Inbox/Work/m.eml")).arg(m.p("Inbox/Work/m.eml~")));
    run(Command::new("rm").arg(m.p("Inbox/Work/m.eml~")));
    assert!(names(&m.p("Inbox/Work")).is_empty());
    assert_eq!(names(&m.p("Deleted Items")), ["m.eml"]);
    assert_eq!(entry_id(&m.p("Deleted Items/m.eml")), id);
    assert_eq!(origin(&m.p("Deleted Items/m.eml")).unwrap(), "Inbox/Work/m.eml");
}

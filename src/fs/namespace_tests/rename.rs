//! rename: stored messages and folders, shadows (a message under a scratch name), scratch
//! files and new files not saved yet, and the errors of each.

use super::*;

// Stored messages.

#[test]
fn a_message_renamed_to_a_free_name_is_moved_in_the_store_keeping_its_entry_id() {
    let t = Fixture::new();
    let a = t.stored_message(t.inbox, "a.eml", b"A");
    t.rename(t.inbox, "a.eml", t.drafts, "b.eml").unwrap();
    assert_eq!(t.stored(t.drafts, "b.eml"), Some(Entry::Message(a)));
    assert_eq!(t.stored(t.inbox, "a.eml"), None);
    assert_eq!(t.lookup(t.inbox, "a.eml"), Err(Errno::ENOENT));
    assert_eq!(t.names(t.inbox), names(&[]));
    assert_eq!(t.names(t.drafts), names(&["b.eml"]));
    assert_eq!(t.read(t.drafts, "b.eml"), b"A");
}

#[test]
fn a_message_renamed_over_another_becomes_its_new_version_and_the_target_keeps_its_entry_id() {
    let t = Fixture::new();
    let a = t.stored_message(t.inbox, "a.eml", b"A");
    let b = t.stored_message(t.inbox, "b.eml", b"B");
    let before = t.version(b).unwrap();
    t.expired();
    t.rename(t.inbox, "a.eml", t.inbox, "b.eml").unwrap();
    assert_eq!(t.stored(t.inbox, "b.eml"), Some(Entry::Message(b)));
    assert!(t.version(b).unwrap() > before, "no new version");
    assert_eq!(t.content(b), b"A");
    assert_eq!(t.version(a), None, "the source is gone");
    assert_eq!(t.names(t.inbox), names(&["b.eml"]));
    assert_eq!(t.lookup(t.inbox, "b.eml"), Ok(t.version(b).unwrap()));
    // The kernel held the name's old version inode: it must look the name up again.
    assert!(t.expired().contains(&(t.inbox, "b.eml".into())));
}

#[test]
fn a_message_renamed_to_a_scratch_name_is_only_shown_there_and_the_store_is_unchanged() {
    let t = Fixture::new();
    let m = t.stored_message(t.inbox, "m.eml", b"M");
    let commits = t.commits();
    t.rename(t.inbox, "m.eml", t.inbox, "m.eml~").unwrap();
    assert_eq!(t.commits(), commits, "an editor's backup step must not touch the store");
    assert_eq!(t.stored(t.inbox, "m.eml"), Some(Entry::Message(m)));
    assert_eq!(t.lookup(t.inbox, "m.eml"), Err(Errno::ENOENT), "its own name is hidden");
    assert_eq!(t.lookup(t.inbox, "m.eml~"), Ok(t.version(m).unwrap()));
    assert_eq!(t.names(t.inbox), names(&["m.eml~"]));
    assert_eq!(t.read(t.inbox, "m.eml~"), b"M");
}

#[test]
fn a_message_renamed_to_a_scratch_name_a_stored_message_holds_replaces_that_message() {
    let t = Fixture::new();
    let old = t.stored_message(t.inbox, "old~", b"O");
    let m = t.stored_message(t.inbox, "m.eml", b"M");
    t.rename(t.inbox, "m.eml", t.inbox, "old~").unwrap();
    assert_eq!(t.version(old), None, "the replaced message is deleted");
    assert_eq!(t.stored(t.inbox, "old~"), None);
    assert_eq!(t.stored(t.inbox, "m.eml"), Some(Entry::Message(m)));
    assert_eq!(t.names(t.inbox), names(&["old~"]));
    assert_eq!(t.read(t.inbox, "old~"), b"M");
}

#[test]
fn a_message_renamed_onto_its_hidden_name_of_another_becomes_that_messages_new_version() {
    // `mv m m~` hides m; the name is free in this mount, but the store still holds it.
    let t = Fixture::new();
    let m = t.stored_message(t.inbox, "m.eml", b"M");
    let o = t.stored_message(t.inbox, "o.eml", b"O");
    t.rename(t.inbox, "m.eml", t.inbox, "m.eml~").unwrap();
    t.rename(t.inbox, "o.eml", t.inbox, "m.eml").unwrap();
    assert_eq!(t.stored(t.inbox, "m.eml"), Some(Entry::Message(m)), "the name keeps its entry id");
    assert_eq!(t.content(m), b"O");
    assert_eq!(t.version(o), None);
    assert_eq!(t.names(t.inbox), names(&["m.eml", "m.eml~"]));
    assert_eq!(t.read(t.inbox, "m.eml"), b"O");
    // The backup no longer hides anything: removing it leaves the message.
    t.unlink(t.inbox, "m.eml~").unwrap();
    assert_eq!(t.content(m), b"O");
    assert_eq!(t.names(t.inbox), names(&["m.eml"]));
}

#[test]
fn a_message_renamed_over_a_new_unsaved_file_replaces_it_and_that_files_close_saves_nothing() {
    let t = Fixture::new();
    let (_, fh) = t.create_with(t.inbox, "n.eml", b"unsaved");
    let a = t.stored_message(t.inbox, "a.eml", b"A");
    t.rename(t.inbox, "a.eml", t.inbox, "n.eml").unwrap();
    assert_eq!(t.stored(t.inbox, "n.eml"), Some(Entry::Message(a)));
    assert_eq!(t.names(t.inbox), names(&["n.eml"]));
    t.close(fh).unwrap();
    assert_eq!(t.stored(t.inbox, "n.eml"), Some(Entry::Message(a)));
    assert_eq!(t.content(a), b"A");
    assert_eq!(t.store().index().message_count(), 1);
}

// Shadows: a stored message shown under a scratch name.

#[test]
fn a_shadow_moved_back_to_its_own_name_shows_the_message_again_without_a_commit() {
    let t = Fixture::new();
    let m = t.stored_message(t.inbox, "m.eml", b"M");
    let commits = t.commits();
    t.rename(t.inbox, "m.eml", t.inbox, "m.eml~").unwrap();
    t.rename(t.inbox, "m.eml~", t.inbox, ".m.eml.bak").unwrap();
    assert_eq!(t.names(t.inbox), names(&[".m.eml.bak"]));
    t.rename(t.inbox, ".m.eml.bak", t.inbox, "m.eml").unwrap();
    assert_eq!(t.commits(), commits);
    assert_eq!(t.names(t.inbox), names(&["m.eml"]));
    assert_eq!(t.lookup(t.inbox, "m.eml"), Ok(t.version(m).unwrap()));
    assert_eq!(t.create(t.inbox, "m.eml"), Err(Errno::EEXIST), "the name is shown, so taken, again");
}

#[test]
fn a_shadow_renamed_to_another_free_name_moves_the_message_and_frees_its_old_name() {
    let t = Fixture::new();
    let m = t.stored_message(t.inbox, "m.eml", b"M");
    t.rename(t.inbox, "m.eml", t.inbox, "m.eml~").unwrap();
    t.rename(t.inbox, "m.eml~", t.drafts, "n.eml").unwrap();
    assert_eq!(t.stored(t.drafts, "n.eml"), Some(Entry::Message(m)));
    assert_eq!(t.stored(t.inbox, "m.eml"), None);
    assert_eq!(t.names(t.inbox), names(&[]));
    assert_eq!(t.names(t.drafts), names(&["n.eml"]));
    // Nothing hides the old name any more: a file created there is a message of its own.
    let (_, fh) = t.create_with(t.inbox, "m.eml", b"new");
    t.close(fh).unwrap();
    let Some(Entry::Message(new)) = t.stored(t.inbox, "m.eml") else { panic!("not saved") };
    assert_ne!(new, m);
    assert_eq!(t.content(m), b"M");
}

#[test]
fn a_shadow_renamed_over_a_message_becomes_that_messages_new_version() {
    let t = Fixture::new();
    let a = t.stored_message(t.inbox, "a.eml", b"A");
    let b = t.stored_message(t.inbox, "b.eml", b"B");
    t.rename(t.inbox, "a.eml", t.inbox, "a.eml~").unwrap();
    t.rename(t.inbox, "a.eml~", t.inbox, "b.eml").unwrap();
    assert_eq!(t.stored(t.inbox, "b.eml"), Some(Entry::Message(b)));
    assert_eq!(t.content(b), b"A");
    assert_eq!(t.version(a), None);
    assert_eq!(t.names(t.inbox), names(&["b.eml"]));
    assert_eq!(t.lookup(t.inbox, "a.eml"), Err(Errno::ENOENT));
}

#[test]
fn the_vim_backup_dance_keeps_the_entry_id_and_a_detached_backup_is_only_a_name() {
    // vim: rename the original to a backup name, write a new file, delete the backup.
    let t = Fixture::new();
    let m = t.stored_message(t.inbox, "m.eml", b"old");
    let before = t.version(m).unwrap();
    t.rename(t.inbox, "m.eml", t.inbox, "m.eml~").unwrap();
    let (_, fh) = t.create_with(t.inbox, "m.eml", b"new");
    t.close(fh).unwrap();
    assert_eq!(t.stored(t.inbox, "m.eml"), Some(Entry::Message(m)), "the edit changed the message's identity");
    assert!(t.version(m).unwrap() > before);
    assert_eq!(t.content(m), b"new");
    assert_eq!(t.names(t.inbox), names(&["m.eml", "m.eml~"]));
    // The backup now stands for a message with a newer version: mv must copy it instead.
    assert_eq!(t.rename(t.inbox, "m.eml~", t.inbox, "other.eml"), Err(Errno::EXDEV));
    assert_eq!(t.names(t.inbox), names(&["m.eml", "m.eml~"]));
    t.unlink(t.inbox, "m.eml~").unwrap();
    assert_eq!(t.content(m), b"new", "deleting the backup deleted the message");
    assert_eq!(t.names(t.inbox), names(&["m.eml"]));
}

#[test]
fn a_message_renamed_over_a_shadow_deletes_the_message_the_shadow_stood_for() {
    // POSIX: `mv b x~` over `x~`, the only name left of a, removes a.
    let t = Fixture::new();
    let a = t.stored_message(t.inbox, "a.eml", b"A");
    let b = t.stored_message(t.inbox, "b.eml", b"B");
    t.rename(t.inbox, "a.eml", t.inbox, "x~").unwrap();
    t.rename(t.inbox, "b.eml", t.inbox, "x~").unwrap();
    assert_eq!(t.version(a), None, "the replaced message is still in the store");
    assert_eq!(t.stored(t.inbox, "b.eml"), Some(Entry::Message(b)));
    assert_eq!(t.names(t.inbox), names(&["x~"]));
    assert_eq!(t.read(t.inbox, "x~"), b"B");
    // Nothing hides a's old name: a new file there is a new message, not a's next version.
    let (_, fh) = t.create_with(t.inbox, "a.eml", b"new");
    t.close(fh).unwrap();
    assert!(matches!(t.stored(t.inbox, "a.eml"), Some(Entry::Message(id)) if id != a));
}

// Scratch files (editors' and rsync's temporary files).

#[test]
fn a_scratch_file_renamed_to_a_free_name_becomes_a_new_message() {
    for big in [false, true] {
        let t = Fixture::new();
        let body = scratch_body(b"N", big);
        let (ino, fh) = t.create_with(t.inbox, ".n.eml.XXXXXX", &body);
        t.close(fh).unwrap();
        let path = t.scratch_path(ino);
        // Small, it is held in memory (rsync's temporary file costs no file of its own).
        assert_eq!(t.exists(&path), big, "big {big}");
        t.rename(t.inbox, ".n.eml.XXXXXX", t.inbox, "n.eml").unwrap();
        let Some(Entry::Message(n)) = t.stored(t.inbox, "n.eml") else { panic!("not committed") };
        assert_eq!(t.content(n), body);
        assert_eq!(t.names(t.inbox), names(&["n.eml"]));
        assert_eq!(t.lookup(t.inbox, ".n.eml.XXXXXX"), Err(Errno::ENOENT));
        assert_eq!(t.fs.resolve(ino).unwrap(), InodeRef::Message(n), "the kernel's inode leads to the message");
        assert!(!t.exists(&path), "the scratch file was moved into the store");
    }
}

#[test]
fn a_scratch_file_renamed_over_a_message_becomes_its_new_version() {
    // rsync and sed -i: write a temporary file, rename it over the original.
    let t = Fixture::new();
    let m = t.stored_message(t.inbox, "m.eml", b"old");
    let before = t.version(m).unwrap();
    let (_, fh) = t.create_with(t.inbox, ".m.eml.XXXXXX", b"new");
    t.close(fh).unwrap();
    t.rename(t.inbox, ".m.eml.XXXXXX", t.inbox, "m.eml").unwrap();
    assert_eq!(t.stored(t.inbox, "m.eml"), Some(Entry::Message(m)));
    assert!(t.version(m).unwrap() > before);
    assert_eq!(t.content(m), b"new");
    assert_eq!(t.names(t.inbox), names(&["m.eml"]));
    assert_eq!(t.store().index().message_count(), 1);
}

#[test]
fn a_scratch_file_renamed_onto_a_hidden_name_becomes_the_hidden_messages_new_version() {
    let t = Fixture::new();
    let m = t.stored_message(t.inbox, "m.eml", b"old");
    t.rename(t.inbox, "m.eml", t.inbox, "m.eml~").unwrap();
    let (_, fh) = t.create_with(t.inbox, ".m.eml.swp", b"new");
    t.close(fh).unwrap();
    t.rename(t.inbox, ".m.eml.swp", t.inbox, "m.eml").unwrap();
    assert_eq!(t.stored(t.inbox, "m.eml"), Some(Entry::Message(m)));
    assert_eq!(t.content(m), b"new");
    assert_eq!(t.names(t.inbox), names(&["m.eml", "m.eml~"]));
    t.unlink(t.inbox, "m.eml~").unwrap();
    assert_eq!(t.content(m), b"new", "the backup was detached: deleting it keeps the message");
}

#[test]
fn a_scratch_file_renamed_onto_a_hidden_name_held_by_a_new_file_replaces_that_file() {
    // mv m m~; a new m is open (unsaved); a temporary file is renamed over it.
    let t = Fixture::new();
    let m = t.stored_message(t.inbox, "m.eml", b"old");
    t.rename(t.inbox, "m.eml", t.inbox, "m.eml~").unwrap();
    let (_, unsaved) = t.create_with(t.inbox, "m.eml", b"unsaved");
    let (_, fh) = t.create_with(t.inbox, ".m.tmp", b"new");
    t.close(fh).unwrap();
    t.rename(t.inbox, ".m.tmp", t.inbox, "m.eml").unwrap();
    assert_eq!(t.stored(t.inbox, "m.eml"), Some(Entry::Message(m)));
    assert_eq!(t.content(m), b"new");
    t.close(unsaved).unwrap();
    assert_eq!(t.content(m), b"new", "the replaced file's close saved it");
    assert_eq!(t.names(t.inbox), names(&["m.eml", "m.eml~"]));
}

#[test]
fn a_scratch_file_still_open_is_committed_as_a_copy_and_later_writes_do_not_reach_the_message() {
    for big in [false, true] {
        let t = Fixture::new();
        let one = scratch_body(b"one", big);
        let (ino, fh) = t.create_with(t.inbox, ".t.tmp", &one);
        let path = t.scratch_path(ino);
        t.rename(t.inbox, ".t.tmp", t.inbox, "t.eml").unwrap();
        let Some(Entry::Message(id)) = t.stored(t.inbox, "t.eml") else { panic!("not committed") };
        t.write(fh, b"two");
        assert_eq!(t.content(id), one, "a committed object changed (big {big})");
        assert_eq!(t.exists(&path), big, "the open scratch file went away under its descriptor (big {big})");
        t.close(fh).unwrap();
        assert!(!t.exists(&path), "the scratch file outlived its last descriptor");
        assert_eq!(t.content(id), one);
        assert_eq!(t.names(t.inbox), names(&["t.eml"]));
    }
}

#[test]
fn a_scratch_file_renamed_over_another_scratch_name_replaces_it_in_the_overlay_alone() {
    for big in [false, true] {
        let t = Fixture::new();
        let a = scratch_body(b"A", big);
        let (_, fa) = t.create_with(t.inbox, ".a", &a);
        t.close(fa).unwrap();
        let (b, fb) = t.create_with(t.inbox, "b~", &scratch_body(b"B", big));
        t.close(fb).unwrap();
        let b_path = t.scratch_path(b);
        assert_eq!(t.exists(&b_path), big);
        let commits = t.commits();
        t.rename(t.inbox, ".a", t.inbox, "b~").unwrap();
        assert_eq!(t.commits(), commits);
        assert_eq!(t.names(t.inbox), names(&["b~"]));
        assert_eq!(t.read(t.inbox, "b~"), a);
        assert!(!t.exists(&b_path), "the replaced scratch file is left behind");
        assert_eq!(t.store().index().message_count(), 0);
    }
}

#[test]
fn closed_scratch_files_past_the_idle_limit_are_written_out_oldest_first() {
    use crate::fs::overlay::IDLE_SCRATCH_IN_MEMORY;
    let t = Fixture::new();
    let n = IDLE_SCRATCH_IN_MEMORY + 3;
    let inos: Vec<u64> = (0..n)
        .map(|i| {
            let (ino, fh) = t.create_with(t.inbox, &format!(".dot{i}"), format!("dot {i}").as_bytes());
            t.close(fh).unwrap();
            ino
        })
        .collect();
    let files: Vec<bool> = inos.iter().map(|i| t.exists(&t.scratch_path(*i))).collect();
    assert_eq!(files.iter().filter(|f| **f).count(), 3, "three over the limit");
    assert!(files[..3].iter().all(|f| *f), "the oldest are the ones written out");
    for (i, ino) in inos.iter().enumerate() {
        assert_eq!(t.read(t.inbox, &format!(".dot{i}")), format!("dot {i}").as_bytes(), "{ino}");
    }
    // One written out still becomes a message like any other.
    let path = t.scratch_path(inos[0]);
    t.rename(t.inbox, ".dot0", t.inbox, "dot0.eml").unwrap();
    let Some(Entry::Message(m)) = t.stored(t.inbox, "dot0.eml") else { panic!("not committed") };
    assert_eq!(t.content(m), b"dot 0");
    assert!(!t.exists(&path), "its file was moved into the store");
}

// New files not saved yet.

#[test]
fn a_new_file_renamed_before_its_first_save_is_saved_under_its_new_name() {
    let t = Fixture::new();
    let (_, fh) = t.create(t.inbox, "n1.eml").unwrap();
    let commits = t.commits();
    t.rename(t.inbox, "n1.eml", t.drafts, "n2.eml").unwrap();
    assert_eq!(t.commits(), commits);
    assert_eq!(t.names(t.inbox), names(&[]));
    assert_eq!(t.names(t.drafts), names(&["n2.eml"]));
    t.write(fh, b"N");
    t.close(fh).unwrap();
    assert_eq!(t.stored(t.inbox, "n1.eml"), None);
    let Some(Entry::Message(id)) = t.stored(t.drafts, "n2.eml") else { panic!("not saved") };
    assert_eq!(t.content(id), b"N");
}

#[test]
fn a_new_file_is_not_renamed_to_a_scratch_name_nor_over_another_entry() {
    let t = Fixture::new();
    t.stored_message(t.inbox, "m.eml", b"M");
    let (_, fh) = t.create_with(t.inbox, "n.eml", b"N");
    assert_eq!(t.rename(t.inbox, "n.eml", t.inbox, "n.eml~"), Err(Errno::EXDEV));
    assert_eq!(t.rename(t.inbox, "n.eml", t.inbox, "m.eml"), Err(Errno::EXDEV));
    assert_eq!(t.names(t.inbox), names(&["m.eml", "n.eml"]));
    t.close(fh).unwrap();
    assert!(matches!(t.stored(t.inbox, "n.eml"), Some(Entry::Message(_))));
}

// Folders.

#[test]
fn a_folder_renamed_over_an_empty_folder_replaces_it() {
    let t = Fixture::new();
    let a = t.stored_folder(ROOT, "A");
    let b = t.stored_folder(ROOT, "B");
    t.stored_message(a, "m.eml", b"M");
    t.rename(ROOT, "A", ROOT, "B").unwrap();
    assert_eq!(t.stored(ROOT, "B"), Some(Entry::Folder(a)));
    assert_eq!(t.stored(ROOT, "A"), None);
    assert_eq!(t.store().index().entry(b), None, "the replaced folder is deleted");
    assert_eq!(t.names(a), names(&["m.eml"]));
    assert!(t.names(ROOT).contains(&"B".to_string()) && !t.names(ROOT).contains(&"A".to_string()));
}

#[test]
fn a_folder_is_not_renamed_over_a_folder_with_entries_or_over_a_file() {
    let t = Fixture::new();
    let a = t.stored_folder(ROOT, "A");
    let full = t.stored_folder(ROOT, "Full");
    t.stored_message(full, "m.eml", b"M");
    let scratch = t.stored_folder(ROOT, "Scratch");
    let (_, fh) = t.create(scratch, ".swp").unwrap();
    t.stored_message(ROOT, "file.eml", b"F");
    let commits = t.commits();
    assert_eq!(t.rename(ROOT, "A", ROOT, "Full"), Err(Errno::ENOTEMPTY));
    assert_eq!(t.rename(ROOT, "A", ROOT, "Scratch"), Err(Errno::ENOTEMPTY), "its scratch file is an entry");
    assert_eq!(t.rename(ROOT, "A", ROOT, "file.eml"), Err(Errno::ENOTDIR));
    assert_eq!(t.rename(ROOT, "file.eml", ROOT, "A"), Err(Errno::EISDIR));
    assert_eq!(t.rename(scratch, ".swp", ROOT, "A"), Err(Errno::EISDIR));
    assert_eq!(t.rename(ROOT, "A", a, "Inside"), Err(Errno::EINVAL), "a folder moved into itself");
    assert_eq!(t.commits(), commits);
    assert_eq!(t.stored(ROOT, "A"), Some(Entry::Folder(a)));
    t.close(fh).unwrap();
}

// The request itself.

#[test]
fn rename_flags_names_and_missing_sources() {
    let t = Fixture::new();
    t.stored_message(t.inbox, "a.eml", b"A");
    t.stored_message(t.inbox, "b.eml", b"B");
    let commits = t.commits();
    let exchange = libc::RENAME_EXCHANGE;
    assert_eq!(t.rename_flags(t.inbox, "a.eml", t.inbox, "b.eml", exchange), Err(Errno::EINVAL));
    let noreplace = libc::RENAME_NOREPLACE;
    assert_eq!(t.rename_flags(t.inbox, "a.eml", t.inbox, "b.eml", noreplace), Err(Errno::EEXIST));
    assert_eq!(t.rename(t.inbox, "a.eml", t.inbox, "a.eml"), Ok(()));
    assert_eq!(t.rename(t.inbox, "nothing.eml", t.inbox, "c.eml"), Err(Errno::ENOENT));
    assert_eq!(t.rename(t.inbox, "a.eml", t.inbox, &"x".repeat(256)), Err(Errno::ENAMETOOLONG));
    assert_eq!(t.commits(), commits);
    assert_eq!(t.names(t.inbox), names(&["a.eml", "b.eml"]));
    let Some(Entry::Message(b)) = t.stored(t.inbox, "b.eml") else { panic!("b.eml is gone") };
    assert_eq!(t.content(b), b"B");
}

#[test]
fn a_detached_backup_is_not_renamed_over_a_message_so_the_edited_message_stays() {
    // After the vim dance m.eml~ shows m's current version; moving it over o.eml must not
    // take m.eml away (nor change o.eml): mv copies it instead.
    let t = Fixture::new();
    let m = t.stored_message(t.inbox, "m.eml", b"old");
    let o = t.stored_message(t.inbox, "o.eml", b"O");
    t.rename(t.inbox, "m.eml", t.inbox, "m.eml~").unwrap();
    let (_, fh) = t.create_with(t.inbox, "m.eml", b"new");
    t.close(fh).unwrap();
    assert_eq!(t.rename(t.inbox, "m.eml~", t.inbox, "o.eml"), Err(Errno::EXDEV));
    assert_eq!(t.content(m), b"new");
    assert_eq!(t.content(o), b"O");
    assert_eq!(t.names(t.inbox), names(&["m.eml", "m.eml~", "o.eml"]));
}

#[test]
fn a_backup_moved_back_over_a_new_file_written_meanwhile_replaces_that_file() {
    let t = Fixture::new();
    let m = t.stored_message(t.inbox, "m.eml", b"M");
    t.rename(t.inbox, "m.eml", t.inbox, "m.eml~").unwrap();
    let (_, fh) = t.create_with(t.inbox, "m.eml", b"unsaved");
    t.rename(t.inbox, "m.eml~", t.inbox, "m.eml").unwrap();
    assert_eq!(t.names(t.inbox), names(&["m.eml"]));
    assert_eq!(t.read(t.inbox, "m.eml"), b"M");
    t.close(fh).unwrap();
    assert_eq!(t.content(m), b"M", "the replaced file's close saved it");
    assert_eq!(t.names(t.inbox), names(&["m.eml"]), "its close left a copy");
    assert_eq!(t.store().index().message_count(), 1);
}

#[test]
fn a_backup_is_not_renamed_over_a_folder() {
    let t = Fixture::new();
    t.stored_message(t.inbox, "m.eml", b"M");
    t.stored_folder(t.inbox, "Sub");
    t.rename(t.inbox, "m.eml", t.inbox, "m.eml~").unwrap();
    assert_eq!(t.rename(t.inbox, "m.eml~", t.inbox, "Sub"), Err(Errno::EISDIR));
    assert_eq!(t.names(t.inbox), names(&["Sub", "m.eml~"]));
    // Still attached: moving it back shows the message under its own name.
    t.rename(t.inbox, "m.eml~", t.inbox, "m.eml").unwrap();
    assert_eq!(t.names(t.inbox), names(&["Sub", "m.eml"]));
}

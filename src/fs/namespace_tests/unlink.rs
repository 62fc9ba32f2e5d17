//! unlink: stored messages, shadows attached or not, scratch files and new files not saved
//! yet, open or not.

use super::*;

#[test]
fn unlinking_a_stored_message_deletes_it_and_folders_and_missing_names_are_refused() {
    let t = Fixture::new();
    let m = t.stored_message(t.inbox, "m.eml", b"M");
    t.unlink(t.inbox, "m.eml").unwrap();
    assert_eq!(t.version(m), None);
    assert_eq!(t.lookup(t.inbox, "m.eml"), Err(Errno::ENOENT));
    assert_eq!(t.names(t.inbox), names(&[]));
    let commits = t.commits();
    assert_eq!(t.unlink(t.inbox, "m.eml"), Err(Errno::ENOENT));
    assert_eq!(t.unlink(ROOT, "Inbox"), Err(Errno::EISDIR));
    assert_eq!(t.commits(), commits);
    assert_eq!(t.stored(ROOT, "Inbox"), Some(Entry::Folder(t.inbox)));
}

#[test]
fn unlinking_an_attached_shadow_deletes_its_message_and_frees_its_name() {
    // `mv m m~; rm m~`: the message's last name is gone.
    let t = Fixture::new();
    let m = t.stored_message(t.inbox, "m.eml", b"M");
    t.rename(t.inbox, "m.eml", t.inbox, "m.eml~").unwrap();
    t.unlink(t.inbox, "m.eml~").unwrap();
    assert_eq!(t.version(m), None);
    assert_eq!(t.names(t.inbox), names(&[]));
    assert_eq!(t.lookup(t.inbox, "m.eml"), Err(Errno::ENOENT));
    // Nothing hides the name now: a file created there is saved as a new message.
    let (_, fh) = t.create_with(t.inbox, "m.eml", b"new");
    t.close(fh).unwrap();
    let Some(Entry::Message(new)) = t.stored(t.inbox, "m.eml") else { panic!("not saved") };
    assert_ne!(new, m);
    assert_eq!(t.content(new), b"new");
}

#[test]
fn unlinking_a_shadow_whose_message_is_already_gone_succeeds() {
    let t = Fixture::new();
    let m = t.stored_message(t.inbox, "m.eml", b"M");
    t.rename(t.inbox, "m.eml", t.inbox, "m.eml~").unwrap();
    t.store().delete_message(m).unwrap();
    assert_eq!(t.unlink(t.inbox, "m.eml~"), Ok(()));
    assert_eq!(t.names(t.inbox), names(&[]));
}

#[test]
fn unlinking_a_scratch_file_hides_it_at_once_and_removes_it_at_its_last_close() {
    for big in [false, true] {
        let t = Fixture::new();
        let (ino, fh) = t.create_with(t.inbox, ".s.swp", &scratch_body(b"S", big));
        let path = t.scratch_path(ino);
        let commits = t.commits();
        t.unlink(t.inbox, ".s.swp").unwrap();
        assert_eq!(t.lookup(t.inbox, ".s.swp"), Err(Errno::ENOENT));
        assert_eq!(t.names(t.inbox), names(&[]));
        // Still open: its descriptor keeps reading and writing it.
        t.write(fh, b"T");
        assert_eq!(t.fs.read(fh, 0, 1).unwrap(), b"T");
        assert_eq!(t.exists(&path), big);
        t.close(fh).unwrap();
        assert!(!t.exists(&path), "the scratch file outlived its last descriptor");
        assert_eq!(t.commits(), commits, "a scratch file never reaches the store");
        // Not open: gone at once.
        let (ino, fh) = t.create_with(t.inbox, "#s#", &scratch_body(b"S", big));
        t.close(fh).unwrap();
        let path = t.scratch_path(ino);
        assert_eq!(t.exists(&path), big);
        t.unlink(t.inbox, "#s#").unwrap();
        assert!(!t.exists(&path));
    }
}

#[test]
fn unlinking_a_new_file_before_its_first_save_means_its_close_saves_nothing() {
    let t = Fixture::new();
    let (_, fh) = t.create_with(t.inbox, "n.eml", b"N");
    t.unlink(t.inbox, "n.eml").unwrap();
    assert_eq!(t.lookup(t.inbox, "n.eml"), Err(Errno::ENOENT));
    assert_eq!(t.names(t.inbox), names(&[]));
    assert_eq!(t.close(fh), Ok(()));
    assert_eq!(t.stored(t.inbox, "n.eml"), None);
    assert_eq!(t.store().index().message_count(), 0);
}

//! Tests of the mapped checkpoint with the changes on top: lookups, listings, renames and
//! deletions that shadow the checkpoint, a checkpoint then reopen, older checkpoints
//! converted, and a damaged block reported.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::simfs::SimFs;
use super::vfs::{OpenMode, Vfs};
use super::*;

fn attrs() -> Attrs {
    Attrs { mode: libc::S_IFREG | 0o600, uid: 0, gid: 0, mtime: 1 }
}

fn open(fs: &SimFs) -> Store {
    Store::open_vfs(Arc::new(fs.clone()), Options { create: true, ..Default::default() }).unwrap()
}

fn save_new(st: &Store, folder: Id, name: &str, body: &[u8]) -> Id {
    let mut t = st.begin_new(folder, name).unwrap();
    t.write_at(body, 0).unwrap();
    t.save(SaveFlags(0)).unwrap().id
}

fn inbox(st: &Store) -> Id {
    st.folder_by_path("Inbox").unwrap()
}

/// Every entry of every folder by path, with what a listing shows of a message, and its
/// content: what a reader can tell.
fn view(st: &Store) -> BTreeMap<String, (Option<Id>, u64, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![(ROOT, String::new())];
    while let Some((f, path)) = todo.pop() {
        let ix = st.index();
        for (name, child) in ix.children(f).unwrap() {
            match child {
                Child::Folder(id) => {
                    out.insert(format!("{path}{name}/"), (None, 0, 0, Vec::new()));
                    todo.push((id, format!("{path}{name}/")));
                }
                Child::Message(id, m) => {
                    out.insert(format!("{path}{name}"), (Some(id), m.size(), m.attrs().mode, Vec::new()));
                }
            }
        }
    }
    for (_, v) in out.iter_mut() {
        if let (Some(id), _, _, content) = v {
            *content = st.read_message(*id).unwrap();
        }
    }
    out
}

/// A store served from a format 6 checkpoint: 3 messages in Inbox, 1 in a subfolder.
fn checkpointed() -> (SimFs, Store, Vec<Id>) {
    let fs = SimFs::new();
    let st = open(&fs);
    let ib = inbox(&st);
    let sub = st.create_folder(ib, "sub", attrs()).unwrap();
    let ids = vec![
        save_new(&st, ib, "a.eml", b"alpha"),
        save_new(&st, ib, "b.eml", b"bravo"),
        save_new(&st, ib, "c.eml", b"charlie"),
        save_new(&st, sub, "d.eml", b"delta"),
    ];
    st.checkpoint().unwrap();
    (fs, st, ids)
}

#[test]
fn after_a_checkpoint_the_index_is_served_from_the_mapped_file() {
    let (_fs, st, ids) = checkpointed();
    let ix = st.index();
    assert_eq!(ix.message_count(), 4);
    assert!(ix.messages.iter().next().is_none(), "no message is held in memory after the rebase");
    assert_eq!(ix.base.message_count(), 4);
    assert_eq!(ix.lookup(inbox(&st), "b.eml"), Some(Entry::Message(ids[1])));
    assert_eq!(ix.lookup(inbox(&st), "bb.eml"), None);
    assert_eq!(ix.location_of(ids[3]).map(|(_, n)| n.to_string()), Some("d.eml".into()));
    assert_eq!(ix.message(ids[2]).unwrap().size(), 7);
    let names: Vec<String> = ix.children(inbox(&st)).unwrap().map(|(n, _)| n.to_string()).collect();
    assert_eq!(names, ["a.eml", "b.eml", "c.eml", "sub"]);
    drop(ix);
    assert_eq!(st.read_message(ids[0]).unwrap(), b"alpha");
}

#[test]
fn renames_deletions_and_new_messages_shadow_the_checkpoint_in_lookups_and_listings() {
    let (fs, st, ids) = checkpointed();
    let ib = inbox(&st);
    let sub = st.folder_by_path("Inbox/sub").unwrap();
    st.move_message(ids[0], ib, "z.eml").unwrap();
    st.delete_message(ids[1]).unwrap();
    st.move_message(ids[3], ib, "b.eml").unwrap();
    let e = save_new(&st, sub, "e.eml", b"echo");
    st.set_message_attrs(ids[2], AttrChange { mode: Some(0o640), ..Default::default() }).unwrap();
    let want = |st: &Store| {
        let ix = st.index();
        assert_eq!(ix.lookup(ib, "a.eml"), None, "renamed away");
        assert_eq!(ix.lookup(ib, "z.eml"), Some(Entry::Message(ids[0])));
        assert_eq!(ix.lookup(ib, "b.eml"), Some(Entry::Message(ids[3])), "the name of a deleted message, reused");
        assert!(matches!(ix.message(ids[1]), Err(Error::NotFound)));
        assert_eq!(ix.entry(ids[1]), None);
        assert_eq!(ix.message_count(), 4);
        assert_eq!(ix.folder(ib).unwrap().entry_count(), 4);
        assert!(ix.folder(sub).unwrap().entry_count() == 1);
        drop(ix);
        let v = view(st);
        let names: Vec<&str> = v.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "Deleted Items/",
                "Drafts/",
                "Inbox/",
                "Inbox/b.eml",
                "Inbox/c.eml",
                "Inbox/sub/",
                "Inbox/sub/e.eml",
                "Inbox/z.eml",
                "Sent Items/"
            ]
        );
        assert_eq!(v["Inbox/b.eml"].3, b"delta");
        assert_eq!(v["Inbox/c.eml"].2, libc::S_IFREG | 0o640);
        assert_eq!(v["Inbox/sub/e.eml"], (Some(e), 4, v["Inbox/sub/e.eml"].2, b"echo".to_vec()));
        v
    };
    let before = want(&st);
    // The same after a crash (the log on top of the checkpoint), after a checkpoint that
    // merges the changes into a new file, and after a clean reopen of that.
    drop(st);
    fs.crash();
    let fs = fs.recover(0);
    let st = open(&fs);
    assert_eq!(view(&st), before);
    st.checkpoint().unwrap();
    assert!(st.index().messages.iter().next().is_none());
    assert_eq!(want(&st), before);
    st.close().unwrap();
    let st = open(&fs);
    assert_eq!(want(&st), before);
}

#[test]
fn a_folder_emptied_of_checkpointed_entries_can_be_removed_and_its_name_reused() {
    let (fs, st, ids) = checkpointed();
    let sub = st.folder_by_path("Inbox/sub").unwrap();
    assert!(st.delete_folder(sub).is_err(), "not empty: its message is in the checkpoint");
    st.delete_message(ids[3]).unwrap();
    st.delete_folder(sub).unwrap();
    let again = st.create_folder(inbox(&st), "sub", attrs()).unwrap();
    assert_ne!(again, sub);
    st.close().unwrap();
    let st = open(&fs);
    assert_eq!(st.folder_by_path("Inbox/sub").unwrap(), again);
    assert!(st.index().is_empty_folder(again));
}

/// Flip one byte of the checkpoint file at `at` bytes from its start.
fn damage_checkpoint(fs: &SimFs, at: usize) {
    fs.corrupt_byte(Path::new(super::checkpoint::CHECKPOINT), at);
}

#[test]
fn a_damaged_block_of_the_checkpoint_is_reported_when_read_naming_the_file_and_msgfs_check() {
    let (fs, st, ids) = checkpointed();
    st.close().unwrap();
    // The message table starts after the header block and one block of child rows.
    damage_checkpoint(&fs, 2 * base::BLOCK + 10);
    let st = open(&fs);
    let err = st.index().message(ids[0]).map(|_| ()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Corrupt { .. }), "{text}");
    assert!(text.contains("checkpoint") && text.contains("msgfs check"), "{text}");
    // A lookup that cannot return the error answers "not there" but remembers the damage:
    // no change is committed on such an answer.
    assert_eq!(st.index().lookup(inbox(&st), "a.eml"), None);
    assert!(matches!(st.create_folder(ROOT, "new", attrs()), Err(Error::Corrupt { .. })));
    let report = check::check(&fs);
    assert!(!report.damage.is_empty(), "msgfs check reports it");
}

#[test]
fn a_damaged_header_or_block_table_fails_the_open() {
    for at in [20, 0] {
        let (fs, st, _) = checkpointed();
        st.close().unwrap();
        damage_checkpoint(&fs, at);
        let Err(e) = Store::open_vfs(Arc::new(fs.clone()), Options::default()) else { panic!("opened") };
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    }
    let (fs, st, _) = checkpointed();
    st.close().unwrap();
    let len = fs.files()[Path::new(super::checkpoint::CHECKPOINT)].len();
    damage_checkpoint(&fs, len - 6);
    let Err(e) = Store::open_vfs(Arc::new(fs.clone()), Options::default()) else { panic!("opened") };
    assert!(e.to_string().contains("block checksum table"), "{e}");
}

#[test]
fn a_store_with_a_format_5_checkpoint_opens_and_its_next_checkpoint_is_format_6() {
    let (fs, st, ids) = checkpointed();
    st.close().unwrap();
    let p = Path::new(super::checkpoint::CHECKPOINT);
    let (ix, seq) = super::checkpoint::read(&fs).unwrap().unwrap();
    let old = super::checkpoint::encode_as(&ix, seq, 5);
    let f = fs.open(p, OpenMode::CreateTruncate).unwrap();
    f.write_all_at(&old, 0).unwrap();
    f.sync().unwrap();
    drop(f);
    let st = open(&fs);
    let before = view(&st);
    assert_eq!(before["Inbox/a.eml"].0, Some(ids[0]));
    assert_eq!(st.index().base.message_count(), 0, "read into memory");
    st.checkpoint().unwrap();
    st.close().unwrap();
    assert_eq!(u32::from_le_bytes(fs.files()[p][8..12].try_into().unwrap()), 6);
    let st = open(&fs);
    assert_eq!(view(&st), before);
}

#[test]
fn xattrs_flags_times_and_both_kinds_of_content_come_back_from_the_mapped_checkpoint() {
    let fs = SimFs::new();
    let st = open(&fs);
    let ib = inbox(&st);
    let small = save_new(&st, ib, "small.eml", b"inline body");
    let large_body = vec![b'L'; INLINE_MAX + 10];
    let large = save_new(&st, ib, "large.eml", &large_body);
    let xattrs = vec![
        XattrChange::Set { name: "user.a".into(), value: b"1".to_vec(), create: false, replace: false },
        XattrChange::Set { name: "user.b".into(), value: vec![0, 255, 7], create: false, replace: false },
    ];
    let change =
        AttrChange { mtime: Some(77), flags: Some(flags::SEEN | flags::FLAGGED), xattrs, ..Default::default() };
    st.set_message_attrs(small, change).unwrap();
    let want = |st: &Store| {
        let ix = st.index();
        let m = ix.message(small).unwrap();
        assert_eq!(m.xattr("user.a"), Some(&b"1"[..]));
        assert_eq!(m.xattr("user.b"), Some(&[0u8, 255, 7][..]));
        assert_eq!(m.xattrs().len(), 2);
        assert_eq!(m.flags(), flags::SEEN | flags::FLAGGED);
        assert_eq!(m.attrs().mtime, 77);
        assert!(ix.inline_at(small, m.version()).is_some(), "its content is in the log");
        let l = ix.message(large).unwrap();
        assert!(ix.inline_at(large, l.version()).is_none(), "its content is an object file");
        assert!(l.xattrs().is_empty());
        let times = (m.ctime(), l.ctime(), ix.folder(ib).unwrap().ctime());
        drop((m, l));
        drop(ix);
        assert_eq!(st.read_message(small).unwrap(), b"inline body");
        assert_eq!(st.read_message(large).unwrap(), large_body);
        times
    };
    let times = want(&st);
    st.checkpoint().unwrap();
    assert!(st.index().messages.iter().next().is_none());
    assert_eq!(want(&st), times);
    st.close().unwrap();
    let st = open(&fs);
    assert_eq!(want(&st), times);
    // A new version of the checkpointed inline message replaces its place in the log.
    let mut t = st.begin(small).unwrap();
    t.write_at(b"second", 0).unwrap();
    t.set_len(6).unwrap();
    t.save(SaveFlags(0)).unwrap();
    assert_eq!(st.read_message(small).unwrap(), b"second");
    st.checkpoint().unwrap();
    assert_eq!(st.read_message(small).unwrap(), b"second");
    assert!(check::check(&fs).ok());
}

#[test]
fn content_relocated_out_of_a_sparse_segment_is_found_from_the_mapped_checkpoint_and_after_a_crash() {
    let fs = SimFs::new();
    let st = open(&fs);
    let ib = inbox(&st);
    // Tiny contents: their segment holds far more record than content, so the checkpoint
    // after the one that covers it finds it sparse and logs the content again.
    let ids: Vec<Id> = (0..20).map(|i| save_new(&st, ib, &format!("{i}.eml"), format!("c{i}").as_bytes())).collect();
    st.checkpoint().unwrap();
    let places = |st: &Store| {
        let ix = st.index();
        ids.iter().map(|&id| ix.inline_at(id, ix.version_of(id).unwrap()).unwrap()).collect::<Vec<_>>()
    };
    let before = places(&st);
    st.checkpoint().unwrap();
    assert!(st.shared().stats.relocated.load(std::sync::atomic::Ordering::Relaxed) >= 20);
    let after = places(&st);
    assert!(before.iter().zip(&after).all(|(b, a)| b.seg != a.seg), "every content moved: {before:?} {after:?}");
    assert!(st.index().messages.iter().next().is_none(), "served from the new checkpoint");
    let read_all = |st: &Store| ids.iter().map(|&id| st.read_message(id).unwrap()).collect::<Vec<_>>();
    let want: Vec<Vec<u8>> = (0..20).map(|i| format!("c{i}").into_bytes()).collect();
    assert_eq!(read_all(&st), want);
    // A relocation logged over a mapped checkpoint, then a crash: replay finds the new place.
    let c = save_new(&st, ib, "pad.eml", &vec![b'p'; 2000]);
    st.checkpoint().unwrap();
    st.delete_message(c).unwrap();
    drop(st);
    fs.crash();
    let fs = fs.recover(0);
    let st = open(&fs);
    assert_eq!(read_all(&st), want);
    assert!(check::check(&fs).ok(), "{:?}", check::check(&fs).damage);
    st.close().unwrap();
    let st = open(&fs);
    assert_eq!(read_all(&st), want);
}

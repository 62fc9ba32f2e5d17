//! Tests of content kept in the log (`inline.rs`): where it lives, what survives a crash,
//! a checkpoint and a compaction, and what `check` says of it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::index::Record;
use super::simfs::SimFs;
use super::*;

fn attrs() -> Attrs {
    Attrs { mode: libc::S_IFREG | 0o600, uid: 0, gid: 0, mtime: 5 }
}

fn opts() -> Options {
    Options { create: true, ..Default::default() }
}

fn open(fs: &SimFs, opts: &Options) -> Store {
    Store::open_vfs(Arc::new(fs.clone()), opts.clone()).unwrap()
}

fn inbox(st: &Store) -> Id {
    st.folder_by_path("Inbox").unwrap()
}

/// Import `n` messages named `{prefix}{i}.eml` with content `body(i)`, in one frame.
fn import(st: &Store, prefix: &str, n: usize, body: impl Fn(usize) -> Vec<u8>) -> Result<Vec<Id>> {
    let ib = inbox(st);
    let mut msgs = Vec::new();
    for i in 0..n {
        let b = body(i);
        let (staged, crc) = st.stage_content(&b)?;
        msgs.push(NewMessage {
            folder: ib,
            name: format!("{prefix}{i}.eml"),
            staged,
            size: b.len() as u64,
            crc,
            attrs: attrs(),
            flags: 0,
        });
    }
    st.import_messages(msgs)
}

fn small(i: usize) -> Vec<u8> {
    format!("Subject: {i}\r\n\r\n{}", "body ".repeat(40 + i % 7)).into_bytes()
}

/// Name to content, for every message.
fn contents(st: &Store) -> BTreeMap<String, Vec<u8>> {
    try_contents(st).unwrap()
}

fn try_contents(st: &Store) -> Result<BTreeMap<String, Vec<u8>>> {
    let ids: Vec<(Id, String)> = st.index().messages().map(|(id, m)| (id, m.name().to_string())).collect();
    ids.into_iter().map(|(id, name)| Ok((name, st.read_message(id)?))).collect()
}

fn segments(fs: &SimFs) -> Vec<String> {
    fs.files().keys().filter(|p| p.starts_with("log")).map(|p| p.display().to_string()).collect()
}

fn objects(fs: &SimFs) -> usize {
    fs.files().keys().filter(|p| p.starts_with(OBJECTS_DIR)).count()
}

#[test]
fn small_content_goes_into_the_log_and_large_content_into_an_object() {
    let fs = SimFs::new();
    let st = open(&fs, &opts());
    let big = vec![b'x'; INLINE_MAX + 1];
    let ids = import(&st, "m", 3, |i| if i == 2 { big.clone() } else { small(i) }).unwrap();
    assert_eq!(objects(&fs), 1, "only the large message has an object file");
    assert!(st.index().inline_at(ids[0], st.index().message(ids[0]).unwrap().version()).is_some());
    assert!(st.index().inline_at(ids[2], st.index().message(ids[2]).unwrap().version()).is_none());
    assert_eq!(st.read_message(ids[1]).unwrap(), small(1));
    assert_eq!(st.read_message(ids[2]).unwrap(), big);
    // The format file says an older msgfs cannot read this store.
    assert_eq!(format_of_vfs(&fs), 4);
    // The content is in the frame, right after its put.
    let recs = check::log_records(&fs).unwrap();
    let puts = recs.iter().position(|r| matches!(r, Record::MessagePut { id, .. } if *id == ids[0])).unwrap();
    assert!(matches!(&recs[puts + 1], Record::Content { id, .. } if *id == ids[0]));
}

fn format_of_vfs(fs: &SimFs) -> u32 {
    let text = String::from_utf8(fs.files()[Path::new(FORMAT_FILE)].clone()).unwrap();
    open::parse_format(&text).unwrap().1
}

#[test]
fn inline_content_survives_a_crash_a_checkpoint_and_a_clean_reopen() {
    let fs = SimFs::new();
    let st = open(&fs, &opts());
    import(&st, "a", 20, small).unwrap();
    let want = contents(&st);
    fs.crash();
    let fs = fs.recover(0);
    let st = open(&fs, &opts());
    assert_eq!(contents(&st), want, "replayed from the log");
    // A checkpoint covers the segment but keeps it: it holds the content.
    let before = segments(&fs);
    st.checkpoint().unwrap();
    assert!(before.iter().all(|s| segments(&fs).contains(s)), "{before:?} {:?}", segments(&fs));
    st.close().unwrap();
    let st = open(&fs, &opts());
    assert_eq!(st.report().replayed_records, 0);
    assert_eq!(contents(&st), want, "read back through the checkpoint's inline section");
    let r = check::check(&fs);
    assert!(r.ok(), "{:?}", r.damage);
}

#[test]
fn a_segment_goes_once_none_of_its_content_is_live() {
    let fs = SimFs::new();
    let st = open(&fs, &opts());
    let ids = import(&st, "a", 10, small).unwrap();
    st.checkpoint().unwrap();
    let held = segments(&fs);
    for id in ids {
        st.delete_message(id).unwrap();
    }
    st.checkpoint().unwrap();
    let now = segments(&fs);
    assert!(held.iter().all(|s| !now.contains(s)), "{held:?} still in {now:?}");
}

#[test]
fn compaction_moves_the_live_content_of_a_sparse_segment_and_removes_it() {
    let fs = SimFs::new();
    let st = open(&fs, &opts());
    let ids = import(&st, "a", 40, small).unwrap();
    st.checkpoint().unwrap();
    let seg = st.index().inline_at(ids[0], st.index().message(ids[0]).unwrap().version()).unwrap().seg;
    let old = log::segment_path(seg).display().to_string();
    assert!(segments(&fs).contains(&old));
    // A reader holds a version whose segment is about to go.
    let kept = ids[3];
    let pin = st.pin_message(kept).unwrap();
    for (i, id) in ids.iter().enumerate() {
        if i % 8 != 3 {
            st.delete_message(*id).unwrap();
        }
    }
    let want = contents(&st);
    assert_eq!(want.len(), 5);
    st.checkpoint().unwrap();
    let now = segments(&fs);
    assert!(!now.contains(&old), "the sparse segment stayed: {old} in {now:?}");
    assert_eq!(contents(&st), want);
    assert_eq!(pin.file().unwrap().read_all().unwrap(), small(3), "the pinned reader still reads");
    // The relocation is logged: a crash now replays it (or the checkpoint holds it).
    fs.crash();
    let fs = fs.recover(0);
    let st = open(&fs, &opts());
    assert_eq!(contents(&st), want);
    let r = check::check(&fs);
    assert!(r.ok(), "{:?}", r.damage);
}

#[test]
fn a_message_renamed_over_another_takes_its_inline_content_along() {
    let fs = SimFs::new();
    let st = open(&fs, &opts());
    let ids = import(&st, "a", 2, small).unwrap();
    let out = st.rename_over(ids[0], ids[1]).unwrap();
    assert_eq!(out.id, ids[1]);
    assert_eq!(st.read_message(ids[1]).unwrap(), small(0));
    assert!(st.index().message(ids[0]).is_err());
    fs.crash();
    let fs = fs.recover(0);
    let st = open(&fs, &opts());
    assert_eq!(st.read_message(ids[1]).unwrap(), small(0));
}

#[test]
fn check_names_damaged_inline_content() {
    let fs = SimFs::new();
    let st = open(&fs, &opts());
    let ids = import(&st, "a", 3, small).unwrap();
    let at = st.index().inline_at(ids[1], st.index().message(ids[1]).unwrap().version()).unwrap();
    st.checkpoint().unwrap();
    st.close().unwrap();
    fs.corrupt_byte(&log::segment_path(at.seg), (at.off + 5) as usize);
    let r = check::check(&fs);
    assert!(!r.ok());
    let text = format!("{:?}", r.damage);
    assert!(text.contains("a1.eml") && text.contains("checksum"), "{text}");
}

/// Imports, deletions, replacements and checkpoints (each compacting what it can), cut by
/// a power failure at every sync: after recovery the store holds what was acknowledged
/// (or the step in flight), and `check` finds no damage.
#[test]
fn a_power_cut_at_every_sync_keeps_acknowledged_inline_content() {
    let opts = Options { create: true, checkpoint_bytes: 6000, ..Default::default() };
    let workload = |fs: &SimFs| -> (Vec<BTreeMap<String, Vec<u8>>>, bool, u64) {
        let Ok(st) = Store::open_vfs(Arc::new(fs.clone()), opts.clone()) else { return (vec![], true, 0) };
        let mut snaps = vec![contents(&st)];
        for step in 0..12usize {
            let r = match step % 4 {
                0 | 1 => import(&st, &format!("s{step}-"), 6, |i| small(i + step)).map(drop),
                2 => {
                    let ids: Vec<Id> = st.index().messages().map(|(id, _)| id).collect();
                    ids.iter().step_by(2).try_for_each(|id| st.delete_message(*id))
                }
                _ => st.checkpoint(),
            };
            match r.and_then(|()| try_contents(&st)) {
                // The machine may go down after the step's last sync that matters (the
                // directory sync after a checkpoint, whose failure it ignores).
                Ok(c) => snaps.push(c),
                Err(_) if fs.crashed() => return (snaps, true, 0),
                Err(e) => {
                    assert!(fs.crashed(), "step {step} failed without a crash: {e}");
                    return (snaps, true, 0);
                }
            }
        }
        let crashed = st.close().is_err();
        (snaps, crashed, st.shared().stats.relocated.load(std::sync::atomic::Ordering::Relaxed))
    };
    let clean = SimFs::new();
    let (all, crashed, relocated) = workload(&clean);
    assert!(!crashed);
    assert!(relocated > 0, "the workload must reach a compaction");
    for n in 1..=clean.syncs() {
        let fs = SimFs::new();
        fs.crash_at_sync(n);
        let (snaps, ..) = workload(&fs);
        let after = fs.recover(13);
        let st = Store::open_vfs(Arc::new(after.clone()), opts.clone())
            .unwrap_or_else(|e| panic!("reopen after a cut at sync {n}: {e}"));
        let got = contents(&st);
        let k = snaps.len();
        // A deletion step is several commits: any prefix of it may be what survived.
        let ok = (k > 0 && got == snaps[k - 1]) || (k < all.len() && got == all[k]) || {
            let (prev, next) = (&snaps[k - 1], &all[k.min(all.len() - 1)]);
            got.iter().all(|(n, c)| prev.get(n) == Some(c)) && next.keys().all(|n| got.contains_key(n))
        };
        assert!(ok, "cut at sync {n}: the state is neither the acknowledged one nor the next");
        st.close().unwrap();
        let r = check::check(&after);
        assert!(r.ok(), "cut at sync {n}: {:?}", r.damage);
    }
}

#[test]
fn a_small_save_is_one_log_sync_and_leaves_no_file_behind() {
    let fs = SimFs::new();
    let st = open(&fs, &opts());
    let ib = inbox(&st);
    // The first inline record raises the store's format (a format file written and synced).
    import(&st, "warm", 1, small).unwrap();
    let files_before = fs.files().len();
    let syncs = fs.syncs();
    let mut t = st.begin_new(ib, "m.eml").unwrap();
    t.write_at(b"Subject: one\r\n\r\nfirst", 0).unwrap();
    let out = t.save(SaveFlags(SaveFlags::KEEP_OPEN_READWRITE)).unwrap();
    assert_eq!(fs.syncs() - syncs, 1, "one log sync, no sync of the private copy or a directory");
    assert_eq!(fs.files().len(), files_before, "no object, no staging file left");
    // The writer goes on from what it saved, through its descriptor of the unlinked copy.
    t.write_at(b"Subject: two", 0).unwrap();
    t.save(SaveFlags(0)).unwrap();
    assert_eq!(st.read_message(out.id).unwrap(), b"Subject: two\r\n\r\nfirst");
    fs.crash();
    let fs = fs.recover(0);
    let st = open(&fs, &opts());
    assert_eq!(st.read_message(out.id).unwrap(), b"Subject: two\r\n\r\nfirst");
}

/// On a full disk deleting content kept in the log frees nothing until its segment goes:
/// a deletion that needed the reserve makes the committer checkpoint at once, which
/// removes the segments nothing live is left in.
#[test]
fn a_deletion_on_a_full_disk_frees_the_segments_it_empties() {
    let fs = SimFs::new();
    let st = open(&fs, &opts());
    // The simulated disk has no free space to measure: lay down a reserve by hand.
    let r = fs.open(Path::new(log::RESERVE_FILE), vfs::OpenMode::CreateNew).unwrap();
    r.write_all_at(&vec![7u8; 1 << 20], 0).unwrap();
    let ids = import(&st, "a", 8, small).unwrap();
    st.checkpoint().unwrap();
    let seg = st.index().inline_at(ids[0], st.index().message(ids[0]).unwrap().version()).unwrap().seg;
    let path = log::segment_path(seg).display().to_string();
    for id in &ids[..7] {
        st.delete_message(*id).unwrap();
    }
    assert!(segments(&fs).contains(&path), "content is still live in it");
    fs.fail_write(1);
    st.delete_message(ids[7]).unwrap();
    // The committer answers the deletion before it checkpoints: wait until it is idle.
    st.flush();
    assert!(!segments(&fs).contains(&path), "the emptied segment stayed on a full disk: {:?}", segments(&fs));
    st.close().unwrap();
    let st = open(&fs, &opts());
    assert!(contents(&st).is_empty());
}

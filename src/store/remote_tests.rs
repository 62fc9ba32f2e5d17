//! Tests of replication state: folder state, message links and upload intents set,
//! cleared, replayed and checkpointed; a link committed with its message in one frame;
//! format numbers; and a power cut at every sync of a sync-like workload.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::index::Record;
use super::simfs::SimFs;
use super::vfs::{OpenMode, Vfs};
use super::*;

fn attrs() -> Attrs {
    Attrs { mode: libc::S_IFREG | 0o600, uid: 0, gid: 0, mtime: 1 }
}

fn sim_store() -> (SimFs, Store) {
    let fs = SimFs::new();
    let st = Store::open_vfs(Arc::new(fs.clone()), Options { create: true, ..Default::default() }).unwrap();
    (fs, st)
}

fn reopen(fs: &SimFs) -> Store {
    Store::open_vfs(Arc::new(fs.clone()), Options::default()).unwrap()
}

/// Reopen after a crash: only what was synced survives.
fn after_crash(fs: &SimFs) -> (SimFs, Store) {
    fs.crash();
    let after = fs.recover(0);
    let st = reopen(&after);
    (after, st)
}

fn save_new(st: &Store, folder: Id, name: &str, body: &[u8]) -> Id {
    let mut t = st.begin_new(folder, name).unwrap();
    t.write_at(body, 0).unwrap();
    t.save(SaveFlags(0)).unwrap().id
}

/// Content too large to be logged inline: a message saved with it has an object file and
/// needs no format beyond the one it had before inline content.
fn big(fill: u8) -> Vec<u8> {
    vec![fill; INLINE_MAX + 1]
}

fn downloaded(st: &Store, folder: Id, name: &str, body: &[u8], uid: u64) -> SyncedMessage {
    let (staged, crc) = st.stage_content(body).unwrap();
    SyncedMessage {
        message: NewMessage {
            folder,
            name: name.to_string(),
            staged,
            size: body.len() as u64,
            crc,
            attrs: attrs(),
            flags: flags::SEEN,
        },
        remote: RemoteCopy { uid, modseq: uid * 100, flags: flags::SEEN },
        keywords: if uid % 2 == 0 { vec![format!("$label{}", uid % 3), "$Junk".into()] } else { vec![] },
    }
}

fn keywords(st: &Store, id: Id) -> Vec<String> {
    st.index().message_keywords(id).iter().map(|k| k.to_string()).collect()
}

fn inbox(st: &Store) -> Id {
    st.folder_by_path("Inbox").unwrap()
}

fn folder_state(n: u64) -> FolderRemote {
    FolderRemote { name: "INBOX".into(), uidvalidity: 1_700_000_000, highestmodseq: n * 7, uidnext: n, cursor: n + 1 }
}

/// All replication state through the query API, in id order.
type RemoteSnap = (BTreeMap<Id, FolderRemote>, BTreeMap<Id, MessageRemote>, Vec<UploadIntent>);

fn remote_snap(st: &Store) -> RemoteSnap {
    let ix = st.index();
    (
        ix.folder_remotes().map(|(id, s)| (id, s.clone())).collect(),
        ix.message_remotes().map(|(id, l)| (id, *l)).collect(),
        ix.upload_intents().copied().collect(),
    )
}

fn format_line(fs: &SimFs) -> String {
    let t = fs.files()[Path::new(FORMAT_FILE)].clone();
    String::from_utf8(t).unwrap().lines().nth(1).unwrap().to_string()
}

#[test]
fn folder_state_is_set_cleared_and_kept_by_replay_and_checkpoint() {
    let (fs, st) = sim_store();
    let ib = inbox(&st);
    let sent = st.folder_by_path("Sent Items").unwrap();
    st.set_folder_remote(ib, Some(folder_state(5))).unwrap();
    st.set_folder_remote(sent, Some(folder_state(9))).unwrap();
    st.set_folder_remote(ib, Some(folder_state(6))).unwrap();
    assert_eq!(st.index().folder_remote(ib), Some(&folder_state(6)));
    // Replay of the log alone (no checkpoint: the store was not closed).
    let (fs, st) = after_crash(&fs);
    assert_eq!(st.index().folder_remote(ib), Some(&folder_state(6)));
    assert_eq!(st.index().folder_remote(sent), Some(&folder_state(9)));
    st.set_folder_remote(sent, None).unwrap();
    assert_eq!(st.index().folder_remote(sent), None);
    // A clean close writes a checkpoint and removes the log it covers.
    st.close().unwrap();
    assert!(fs.files().keys().all(|p| !p.starts_with("log") || fs.files()[p].is_empty()));
    let st = reopen(&fs);
    assert_eq!(st.index().folder_remotes().count(), 1);
    assert_eq!(st.index().folder_remote(ib), Some(&folder_state(6)));
    // The state goes with its folder.
    let f = st.create_folder(ROOT, "Lists", attrs()).unwrap();
    st.set_folder_remote(f, Some(folder_state(1))).unwrap();
    st.delete_folder(f).unwrap();
    assert_eq!(st.index().folder_remote(f), None);
    assert!(matches!(st.set_folder_remote(f, Some(folder_state(1))), Err(Error::NotFound)));
    let (_, st) = after_crash(&fs);
    assert_eq!(st.index().folder_remote(f), None);
    assert_eq!(st.index().folder_remote(ib), Some(&folder_state(6)));
}

#[test]
fn a_downloaded_message_and_its_link_are_one_frame() {
    let (fs, st) = sim_store();
    let ib = inbox(&st);
    let frames = st.shared().stats.frames.load(std::sync::atomic::Ordering::Relaxed);
    let batch = (0..3).map(|i| downloaded(&st, ib, &format!("{i}.eml"), format!("m{i}").as_bytes(), 40 + i)).collect();
    let ids = st.import_synced(batch).unwrap();
    assert_eq!(st.shared().stats.frames.load(std::sync::atomic::Ordering::Relaxed), frames + 1);
    for (i, id) in ids.iter().enumerate() {
        let v = st.index().message(*id).unwrap().version();
        let want = MessageRemote {
            folder: ib,
            uid: 40 + i as u64,
            modseq: (40 + i as u64) * 100,
            flags: flags::SEEN,
            version: v,
        };
        assert_eq!(st.index().message_remote(*id), Some(&want));
    }
    // In the log each link comes right after its message's put, in one frame.
    let seg = super::log::read_segment(&fs, &super::log::segment_path(1)).unwrap();
    let last = seg.frames.last().unwrap();
    let kinds: Vec<&str> = last
        .records
        .iter()
        .map(|r| match r {
            Record::Time { .. } => "time",
            Record::MessagePut { .. } => "put",
            Record::Content { .. } => "content",
            Record::MessageRemote { .. } => "link",
            Record::MessageKeywords { .. } => "keywords",
            Record::SyncedKeywords { .. } => "synced",
            _ => "other",
        })
        .collect();
    // Messages 40 and 42 come with keywords, also in the frame, and those are what was
    // last synced too. Their small content is in the frame as well.
    let with_kw = ["put", "content", "link", "keywords", "synced"];
    assert_eq!(kinds, [&["time"][..], &with_kw, &["put", "content", "link"], &with_kw].concat());
    assert_eq!(keywords(&st, ids[0]), ["$Junk", "$label1"]);
    assert_eq!(keywords(&st, ids[1]), Vec::<String>::new());
    let before = remote_snap(&st);
    let (_, st) = after_crash(&fs);
    assert_eq!(remote_snap(&st), before);
    assert_eq!(st.read_message(ids[1]).unwrap(), b"m1");
}

#[test]
fn a_batch_that_fails_leaves_neither_messages_nor_links() {
    let (_fs, st) = sim_store();
    let ib = inbox(&st);
    save_new(&st, ib, "taken.eml", b"local");
    let batch = vec![downloaded(&st, ib, "new.eml", b"a", 1), downloaded(&st, ib, "taken.eml", b"b", 2)];
    assert!(st.import_synced(batch).is_err());
    assert!(st.lookup(ib, "new.eml").is_err());
    assert_eq!(st.index().message_remotes().count(), 0);
}

#[test]
fn links_are_set_cleared_moved_and_dropped_with_their_message() {
    let (fs, st) = sim_store();
    let ib = inbox(&st);
    let sent = st.folder_by_path("Sent Items").unwrap();
    let id = save_new(&st, ib, "a.eml", b"local mail");
    let v = st.index().message(id).unwrap().version();
    let link = MessageRemote { folder: ib, uid: 7, modseq: 70, flags: flags::FLAGGED, version: v };
    st.set_message_remote(id, Some(link)).unwrap();
    // A local move keeps the link, which still names the folder the copy is in.
    st.move_message(id, sent, "a.eml").unwrap();
    assert_eq!(st.index().message_remote(id), Some(&link));
    // A new local version keeps it too: its version says what was synced.
    let mut t = st.begin(id).unwrap();
    t.write_at(b"edited", 0).unwrap();
    let v2 = t.save(SaveFlags(0)).unwrap().version;
    assert!(v2 > v);
    assert_eq!(st.index().message_remote(id).unwrap().version, v);
    let (fs, st) = after_crash(&fs);
    assert_eq!(st.index().message_remote(id), Some(&link));
    st.set_message_remote(id, None).unwrap();
    assert_eq!(st.index().message_remote(id), None);
    st.set_message_remote(id, Some(link)).unwrap();
    st.delete_message(id).unwrap();
    assert_eq!(st.index().message_remote(id), None);
    // No link to a message that is not there, nor naming a folder that is not one.
    assert!(matches!(st.set_message_remote(id, Some(link)), Err(Error::NotFound)));
    let other = save_new(&st, ib, "b.eml", b"x");
    let bad = MessageRemote { folder: other, ..link };
    assert!(matches!(st.set_message_remote(other, Some(bad)), Err(Error::InvalidArgument(_))));
    st.close().unwrap();
    let st = reopen(&fs);
    assert_eq!(st.index().message_remotes().count(), 0);
}

#[test]
fn replacing_a_header_only_message_keeps_its_id_and_updates_its_link() {
    let (_fs, st) = sim_store();
    let ib = inbox(&st);
    let id = st.import_synced(vec![downloaded(&st, ib, "h.eml", b"Subject: x\r\n\r\n", 3)]).unwrap()[0];
    let v = st.index().message(id).unwrap().version();
    let (staged, _) = st.stage_content(b"Subject: x\r\n\r\nthe body").unwrap();
    let full = RemoteCopy { uid: 3, modseq: 301, flags: flags::SEEN | flags::ANSWERED };
    let out = st.replace_synced(id, v, staged, full).unwrap();
    assert_eq!(out.id, id);
    assert_eq!(st.read_message(id).unwrap(), b"Subject: x\r\n\r\nthe body");
    let l = st.index().message_remote(id).copied().unwrap();
    assert_eq!((l.uid, l.modseq, l.flags, l.version, l.folder), (3, 301, full.flags, out.version, ib));
    // From a stale base it is a conflict and changes nothing.
    let (staged, _) = st.stage_content(b"late").unwrap();
    assert!(matches!(st.replace_synced(id, v, staged, full), Err(Error::ObjectChanged)));
    assert_eq!(st.index().message_remote(id).unwrap().version, out.version);
}

#[test]
fn an_upload_intent_lasts_until_its_link_lands_or_it_is_cleared() {
    let (fs, st) = sim_store();
    let ib = inbox(&st);
    let a = save_new(&st, ib, "a.eml", b"first");
    let b = save_new(&st, ib, "b.eml", b"second");
    let c = save_new(&st, ib, "c.eml", b"third");
    let intent = |m: Id| {
        let msg = st.index().message(m).unwrap().into_owned();
        UploadIntent { folder: ib, message: m, version: msg.version(), size: msg.size(), uidnext: 11, flags: 0, crc: 0 }
    };
    let (ia, ib_, ic) = (intent(a), intent(b), intent(c));
    st.record_upload_intents(&[ia, ib_, ic]).unwrap();
    // Listable after a crash, before anything is sent again.
    let (fs, st) = after_crash(&fs);
    assert_eq!(st.index().upload_intents().copied().collect::<Vec<_>>(), vec![ia, ib_, ic]);
    // The upload of `a` landed: its link clears its intent in the same record.
    let link = MessageRemote { folder: ib, uid: 11, modseq: 0, flags: 0, version: ia.version };
    st.set_message_remote(a, Some(link)).unwrap();
    assert_eq!(st.index().upload_intent(a), None);
    // `b` was deleted locally meanwhile: the intent stays (the copy may be on the server).
    st.delete_message(b).unwrap();
    assert_eq!(st.index().upload_intent(b), Some(&ib_));
    st.close().unwrap();
    let st = reopen(&fs);
    assert_eq!(st.index().upload_intents().copied().collect::<Vec<_>>(), vec![ib_, ic]);
    st.clear_upload_intents(&[b, c, 999]).unwrap();
    assert_eq!(st.index().upload_intents().count(), 0);
    // No intent for a message that is not there.
    assert!(matches!(st.record_upload_intents(&[ib_]), Err(Error::NotFound)));
    let (_, st) = after_crash(&fs);
    assert_eq!(st.index().upload_intents().count(), 0);
    assert_eq!(st.index().message_remote(a), Some(&link));
}

#[test]
fn a_checkpoint_keeps_every_kind_of_state_in_the_mapped_format() {
    let (fs, st) = sim_store();
    let ib = inbox(&st);
    let a = save_new(&st, ib, "a.eml", &big(b'x'));
    // Every checkpoint is of format 6 (mapped), with or without replication state.
    st.checkpoint().unwrap();
    let ck = |fs: &SimFs| fs.files()[Path::new(super::checkpoint::CHECKPOINT)].clone();
    assert_eq!(u32::from_le_bytes(ck(&fs)[8..12].try_into().unwrap()), 6);
    st.set_folder_remote(ib, Some(folder_state(3))).unwrap();
    let v = st.index().message(a).unwrap().version();
    st.set_message_remote(a, Some(MessageRemote { folder: ib, uid: 1, modseq: 2, flags: 3, version: v })).unwrap();
    let b = save_new(&st, ib, "b.eml", &big(b'y'));
    st.record_upload_intents(&[UploadIntent {
        folder: ib,
        message: b,
        version: 9,
        size: 1,
        uidnext: 2,
        flags: 0,
        crc: 0,
    }])
    .unwrap();
    let want = remote_snap(&st);
    st.checkpoint().unwrap();
    assert_eq!(u32::from_le_bytes(ck(&fs)[8..12].try_into().unwrap()), 6);
    let (ix, _) = super::checkpoint::decode(&ck(&fs)).unwrap();
    assert_eq!(ix.folder_remote(ib), want.0.get(&ib));
    assert_eq!(ix.message_remote(a), want.1.get(&a));
    assert_eq!(ix.upload_intents().copied().collect::<Vec<_>>(), want.2);
    // Reopened from the checkpoint alone (its log was removed with the checkpoint).
    let (_, st) = after_crash(&fs);
    assert_eq!(remote_snap(&st), want);
    assert_eq!(st.report().replayed_records, 0);
}

#[test]
fn keywords_are_set_cleared_kept_by_replay_and_checkpoint_and_go_with_their_message() {
    let (fs, st) = sim_store();
    let ib = inbox(&st);
    let a = save_new(&st, ib, "a.eml", &big(b'x'));
    let b = save_new(&st, ib, "b.eml", &big(b'y'));
    st.set_message_keywords(a, vec!["work".into(), "$Forwarded".into(), "work".into()]).unwrap();
    st.set_message_keywords(b, vec!["later".into()]).unwrap();
    // Kept sorted and distinct.
    assert_eq!(keywords(&st, a), ["$Forwarded", "work"]);
    for bad in ["", "two words", "tab\there", &"k".repeat(256)] {
        assert!(matches!(st.set_message_keywords(a, vec![bad.to_string()]), Err(Error::InvalidArgument(_))), "{bad:?}");
    }
    assert!(matches!(st.set_message_keywords(999, vec!["x".into()]), Err(Error::NotFound)));
    // A new version and a move keep them.
    let mut t = st.begin(a).unwrap();
    t.write_at(&big(b'e'), 0).unwrap();
    t.save(SaveFlags(0)).unwrap();
    st.move_message(a, st.folder_by_path("Drafts").unwrap(), "a.eml").unwrap();
    let (fs, st) = after_crash(&fs);
    assert_eq!(keywords(&st, a), ["$Forwarded", "work"]);
    st.set_message_keywords(b, vec![]).unwrap();
    assert_eq!(keywords(&st, b), Vec::<String>::new());
    st.close().unwrap();
    let ck = fs.files()[Path::new(super::checkpoint::CHECKPOINT)].clone();
    assert_eq!(u32::from_le_bytes(ck[8..12].try_into().unwrap()), 6, "kept in the mapped format's extra section");
    let st = reopen(&fs);
    assert_eq!(keywords(&st, a), ["$Forwarded", "work"]);
    st.delete_message(a).unwrap();
    assert_eq!(keywords(&st, a), Vec::<String>::new());
    let (_, st) = after_crash(&fs);
    assert_eq!(st.index().message(a).err().map(|e| e.to_string()), Some(Error::NotFound.to_string()));
    assert_eq!(keywords(&st, a), Vec::<String>::new());
}

#[test]
fn a_checkpoint_with_a_link_to_a_missing_message_is_damage() {
    let (_fs, st) = sim_store();
    let ib = inbox(&st);
    let a = save_new(&st, ib, "a.eml", b"x");
    let v = st.index().message(a).unwrap().version();
    st.set_message_remote(a, Some(MessageRemote { folder: ib, uid: 1, modseq: 2, flags: 3, version: v })).unwrap();
    let mut ix = st.index().clone();
    ix.messages.remove(&a);
    ix.message_count -= 1;
    let f = ix.folders.get_mut(&ib).unwrap();
    f.children.clear();
    f.entries = 0;
    match super::checkpoint::decode(&super::checkpoint::encode(&ix, 1).unwrap()) {
        Err(Error::Corrupt { what, .. }) => assert!(what.contains("unknown message"), "{what}"),
        other => panic!("expected damage, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn replaying_a_link_to_a_missing_message_is_damage() {
    let (fs, st) = sim_store();
    let ib = inbox(&st);
    let a = save_new(&st, ib, "a.eml", b"x");
    let v = st.index().message(a).unwrap().version();
    let link = MessageRemote { folder: ib, uid: 1, modseq: 2, flags: 3, version: v };
    st.set_message_remote(a, Some(link)).unwrap();
    st.delete_message(a).unwrap();
    // Left open, as after a kill: append by hand a frame linking the deleted message.
    st.freeze();
    let (next, len) = {
        let lg = st.shared().log.lock().unwrap();
        (lg.next_seq, lg.writer.as_ref().unwrap().len) // where the log ends, before its zeros
    };
    let seg = super::log::segment_path(1);
    let f = fs.open(&seg, OpenMode::ReadWrite).unwrap();
    f.write_all_at(&super::log::encode_frame(next, &[Record::MessageRemote { id: a, link: Some(link) }]), len).unwrap();
    f.sync().unwrap();
    match Store::open_vfs(Arc::new(fs.recover(0)), Options::default()) {
        Err(Error::Corrupt { what, .. }) => assert!(what.contains("record cannot apply"), "{what}"),
        other => panic!("expected damage, got {:?}", other.err()),
    }
}

#[test]
fn a_format_1_store_opens_and_is_raised_to_format_3_by_its_first_replication_record() {
    let (fs, st) = sim_store();
    assert_eq!(format_line(&fs), "format 2");
    let ib = inbox(&st);
    // Stopped before any checkpoint: a checkpoint would raise the format (see below).
    drop(st);
    fs.crash();
    let fs = fs.recover(0);
    // As an older msgfs left it.
    let text = String::from_utf8(fs.files()[Path::new(FORMAT_FILE)].clone()).unwrap();
    let f = fs.open(Path::new(FORMAT_FILE), OpenMode::CreateTruncate).unwrap();
    f.write_all_at(text.replace("format 2", "format 1").as_bytes(), 0).unwrap();
    f.sync().unwrap();
    let st = reopen(&fs);
    save_new(&st, ib, "a.eml", &big(b'p'));
    // Ordinary changes leave it as it was: the older msgfs still reads it.
    assert_eq!(format_line(&fs), "format 1");
    st.set_folder_remote(ib, Some(folder_state(1))).unwrap();
    assert_eq!(format_line(&fs), "format 3");
    // Raised durably, before the record: a crash now keeps both.
    let (fs, st) = after_crash(&fs);
    assert_eq!(format_line(&fs), "format 3");
    assert_eq!(st.index().folder_remote(ib), Some(&folder_state(1)));
    // A checkpoint is mapped (checkpoint format 6), which stores of format 5 have: the
    // format is raised before the first is written.
    st.checkpoint().unwrap();
    assert_eq!(format_line(&fs), "format 5");
    let (_, st) = after_crash(&fs);
    assert_eq!(st.index().folder_remote(ib), Some(&folder_state(1)));
}

#[test]
fn a_store_of_a_newer_format_is_refused_as_too_new_not_as_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    Store::open(&path, Options { create: true, ..Default::default() }).unwrap().close().unwrap();
    let text = std::fs::read_to_string(path.join(FORMAT_FILE)).unwrap();
    assert!(text.contains("format 5"), "{text}");
    std::fs::write(path.join(FORMAT_FILE), text.replace("format 5", "format 6")).unwrap();
    let e = Store::open(&path, Options::default()).err().expect("a newer store must not open");
    assert!(matches!(e, Error::TooNew(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("store format 6 is newer than this msgfs reads (formats 1 to 5)"), "{msg}");
    assert!(!msg.contains("damaged"), "{msg}");
    assert!(matches!(format_of(&path), Err(Error::TooNew(_))));
    assert!(matches!(Store::open(&path, Options { read_only: true, ..Default::default() }), Err(Error::TooNew(_))));
    // `check` judges nothing it cannot read: it says why instead of listing false damage.
    let r = check::check_dir(&path);
    assert_eq!(r.damage.len(), 1, "{:?}", r.damage);
    assert!(r.damage[0].1.contains("newer than this msgfs reads"), "{:?}", r.damage);
    // The store itself is untouched: with its format line back it opens.
    std::fs::write(path.join(FORMAT_FILE), text).unwrap();
    Store::open(&path, Options::default()).unwrap().close().unwrap();
}

// ---- a power cut at every sync -----------------------------------------------------------

/// What a sync-like workload must find after a crash: messages (folder, name, version,
/// content) and all replication state.
type Snap = (BTreeMap<Id, (Id, String, u64, Vec<u8>, Vec<String>)>, RemoteSnap);

fn snap(st: &Store) -> Result<Snap> {
    let msgs: Vec<(Id, Message)> = st.index().messages().map(|(id, m)| (id, m.into_owned())).collect();
    let mut out = BTreeMap::new();
    for (id, m) in msgs {
        out.insert(id, (m.folder(), m.name().to_string(), m.version(), st.read_message(id)?, keywords(st, id)));
    }
    Ok((out, remote_snap(st)))
}

/// The store's promise, whatever the crash: every downloaded message (named `dl...`) has
/// its link, at its current version; every link belongs to a message (the index cannot
/// even hold one that does not).
fn assert_linked(st: &Store, when: &str) {
    let ix = st.index();
    for (id, m) in ix.messages() {
        if m.name().starts_with("dl") {
            let l = ix.message_remote(id).unwrap_or_else(|| panic!("{when}: {} has no link", m.name()));
            assert_eq!(l.version, m.version(), "{when}: {}", m.name());
        }
    }
    for (id, _) in ix.message_remotes() {
        assert!(ix.message(id).is_ok(), "{when}: link without message {id}");
    }
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// One step of the workload: downloads, header-only replacements, links after uploads,
/// intents, folder state, local saves, moves and deletes.
fn sync_step(st: &Store, rng: &mut Rng, step: u64) -> Result<()> {
    let folders = [inbox(st), st.folder_by_path("Sent Items")?];
    let mut msgs: Vec<(Id, String, u64, u64)> =
        st.index().messages().map(|(id, m)| (id, m.name().to_string(), m.version(), m.size())).collect();
    msgs.sort();
    let folder = folders[rng.below(2) as usize];
    let pick = |rng: &mut Rng| msgs.get(rng.below(msgs.len() as u64) as usize).cloned();
    match rng.below(10) {
        0 | 1 => {
            let n = 1 + rng.below(3);
            let batch = (0..n)
                .map(|k| {
                    downloaded(
                        st,
                        folder,
                        &format!("dl{step}-{k}.eml"),
                        format!("mail {step} {k}").as_bytes(),
                        step * 10 + k,
                    )
                })
                .collect();
            st.import_synced(batch).map(drop)
        }
        2 => st.set_folder_remote(folder, if rng.below(4) == 0 { None } else { Some(folder_state(step)) }),
        3 => match pick(rng) {
            Some((id, _, version, size)) => st.record_upload_intents(&[UploadIntent {
                folder,
                message: id,
                version,
                size,
                uidnext: step,
                flags: 0,
                crc: 0,
            }]),
            None => Ok(()),
        },
        4 => match pick(rng) {
            Some((id, _, version, _)) => {
                let link = MessageRemote { folder, uid: step, modseq: step, flags: 0, version };
                st.set_message_remote(id, Some(link))
            }
            None => Ok(()),
        },
        5 => pick(rng).map_or(Ok(()), |(id, ..)| st.delete_message(id)),
        6 => match pick(rng) {
            Some((id, name, version, _)) if name.starts_with("dl") => {
                let (staged, _) = st.stage_content(format!("full body {step}").as_bytes())?;
                let rc = RemoteCopy { uid: step, modseq: step, flags: flags::SEEN };
                st.replace_synced(id, version, staged, rc).map(drop)
            }
            _ => Ok(()),
        },
        9 => pick(rng).map_or(Ok(()), |(id, ..)| st.set_message_keywords(id, vec![format!("k{}", step % 4)])),
        7 => {
            let mut t = st.begin_new(folder, &format!("loc{step}.eml"))?;
            t.write_at(format!("local {step}").as_bytes(), 0)?;
            t.save(SaveFlags(0)).map(drop)
        }
        _ => match pick(rng) {
            Some((id, name, ..)) => st.move_message(id, folder, &format!("{name}.mv{step}")),
            None => Ok(()),
        },
    }
}

const STEPS: u64 = 40;

/// Run the workload; the snapshots after each acknowledged step, whether it crashed, and
/// whether the last acknowledged step's snapshot could not be taken (see tests.rs).
fn run_sync_workload(fs: &SimFs, opts: &Options) -> (Vec<Snap>, bool, bool) {
    let Ok(st) = Store::open_vfs(Arc::new(fs.clone()), opts.clone()) else { return (vec![], true, false) };
    let mut snaps = vec![snap(&st).unwrap()];
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for step in 1..=STEPS {
        match sync_step(&st, &mut rng, step) {
            Ok(()) => match snap(&st) {
                Ok(s) => snaps.push(s),
                Err(_) => return (snaps, true, true),
            },
            Err(e) => {
                assert!(fs.crashed(), "step {step} failed without a crash: {e}");
                return (snaps, true, false);
            }
        }
    }
    let crashed = st.close().is_err();
    (snaps, crashed, false)
}

#[test]
fn a_power_cut_at_every_sync_never_parts_a_message_from_its_link() {
    let opts = Options { create: true, checkpoint_bytes: 3000, ..Default::default() };
    let clean = SimFs::new();
    let (all, crashed, _) = run_sync_workload(&clean, &opts);
    assert!(!crashed);
    let st = reopen(&clean);
    assert_linked(&st, "clean run");
    let (msgs, (folders, links, intents)) = &all[all.len() - 1];
    // The workload did reach every kind of state it is meant to test.
    assert!(msgs.keys().any(|id| msgs[id].1.starts_with("dl")) && !links.is_empty());
    assert!(!folders.is_empty() && !intents.is_empty(), "{folders:?} {intents:?}");
    assert!(clean.syncs() > 100);
    for n in 1..=clean.syncs() {
        for torn in [0usize, 13, 1 << 20] {
            let fs = SimFs::new();
            fs.crash_at_sync(n);
            let (snaps, crashed, acked_unseen) = run_sync_workload(&fs, &opts);
            assert!(crashed || n > fs.syncs(), "crash point {n} was not reached");
            let after = fs.recover(torn);
            let st = Store::open_vfs(Arc::new(after.clone()), opts.clone())
                .unwrap_or_else(|e| panic!("reopen after a cut at sync {n} (torn {torn}): {e}"));
            let when = format!("cut at sync {n} (torn {torn})");
            assert_linked(&st, &when);
            let got = snap(&st).unwrap();
            let k = snaps.len();
            let next = k < all.len() && got == all[k];
            let ok = next || (!acked_unseen && k > 0 && got == snaps[k - 1]) || (k == 0 && got == all[0]);
            assert!(ok, "{when}: the state is neither the acknowledged one nor the next");
            st.close().unwrap();
            let r = check::check(&after);
            assert!(r.ok(), "{when}: {:?}", r.damage);
        }
    }
}

#[test]
fn a_deleted_linked_message_leaves_a_tombstone_kept_by_replay_and_checkpoint_until_cleared() {
    let (fs, st) = sim_store();
    let ib = inbox(&st);
    let a = save_new(&st, ib, "a.eml", b"x");
    let b = save_new(&st, ib, "b.eml", b"y");
    let v = st.index().message(a).unwrap().version();
    let link = MessageRemote { folder: ib, uid: 4, modseq: 40, flags: flags::SEEN, version: v };
    st.set_message_remote(a, Some(link)).unwrap();
    // An unlinked message leaves none.
    st.delete_message(b).unwrap();
    st.delete_message(a).unwrap();
    let tombs = |st: &Store| st.index().tombstones().map(|(id, l)| (id, *l)).collect::<Vec<_>>();
    assert_eq!(tombs(&st), vec![(a, link)]);
    assert_eq!(st.index().message_remote(a), None);
    // Replayed from the log after a crash...
    let (fs, st) = after_crash(&fs);
    assert_eq!(tombs(&st), vec![(a, link)]);
    // ...and kept by a checkpoint (format 6 keeps them in its extra section).
    st.checkpoint().unwrap();
    let ck = fs.files()[Path::new(super::checkpoint::CHECKPOINT)].clone();
    assert_eq!(u32::from_le_bytes(ck[8..12].try_into().unwrap()), 6);
    let (fs, st) = after_crash(&fs);
    assert_eq!(st.report().replayed_records, 0);
    assert_eq!(tombs(&st), vec![(a, link)]);
    // Clearing it is a link record without a link; a second clear has nothing to clear.
    st.set_message_remote(a, None).unwrap();
    assert!(tombs(&st).is_empty());
    assert!(matches!(st.set_message_remote(a, None), Err(Error::NotFound)));
    let (_, st) = after_crash(&fs);
    assert!(tombs(&st).is_empty());
}

#[test]
fn keywords_last_synced_are_kept_by_replay_and_checkpoint_and_go_with_their_message() {
    let (fs, st) = sim_store();
    let ib = inbox(&st);
    // A download brings them with the message, in its frame.
    let ids = st.import_synced(vec![downloaded(&st, ib, "a.eml", b"x", 2)]).unwrap();
    let a = ids[0];
    let synced = |st: &Store| st.index().synced_keywords(a).iter().map(|k| k.to_string()).collect::<Vec<_>>();
    assert_eq!(synced(&st), keywords(&st, a));
    assert!(!synced(&st).is_empty());
    st.update_remote(vec![RemoteChange::SyncedKeywords(a, vec!["$b".into(), "$a".into(), "$b".into()])]).unwrap();
    assert_eq!(synced(&st), ["$a", "$b"], "sorted and distinct");
    let (fs, st) = after_crash(&fs);
    assert_eq!(synced(&st), ["$a", "$b"]);
    st.checkpoint().unwrap();
    let ck = fs.files()[Path::new(super::checkpoint::CHECKPOINT)].clone();
    // Format 6 keeps synced keywords in its extra section, inline places in the rows.
    assert_eq!(u32::from_le_bytes(ck[8..12].try_into().unwrap()), 6);
    let (_, st) = after_crash(&fs);
    assert_eq!(synced(&st), ["$a", "$b"]);
    st.delete_message(a).unwrap();
    assert!(st.index().synced_keywords(a).is_empty());
    assert!(matches!(st.update_remote(vec![RemoteChange::SyncedKeywords(a, vec![])]), Err(Error::NotFound)));
}

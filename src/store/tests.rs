//! Store unit tests: SaveChanges outcomes, readers' stable view, folder rules, and crash
//! consistency against a reference model on the simulated filesystem.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::index::Record;
use super::simfs::SimFs;
use super::vfs::Vfs;
use super::*;

fn attrs() -> Attrs {
    Attrs { mode: libc::S_IFREG | 0o600, uid: 0, gid: 0, mtime: 1 }
}

fn dir_attrs() -> Attrs {
    Attrs { mode: libc::S_IFDIR | 0o700, uid: 0, gid: 0, mtime: 1 }
}

fn sim_store() -> (SimFs, Store) {
    let fs = SimFs::new();
    let st = Store::open_vfs(Arc::new(fs.clone()), Options { create: true, ..Default::default() }).unwrap();
    (fs, st)
}

fn save_new(st: &Store, folder: Id, name: &str, body: &[u8]) -> Id {
    let mut t = st.begin_new(folder, name).unwrap();
    t.write_at(body, 0).unwrap();
    t.save(SaveFlags(0)).unwrap().id
}

/// Content too large to be logged inline: a message saved with it has an object file.
fn big(fill: u8) -> Vec<u8> {
    vec![fill; INLINE_MAX + 1]
}

fn inbox(st: &Store) -> Id {
    st.folder_by_path("Inbox").unwrap()
}

#[test]
fn new_store_has_the_default_folders() {
    let (_fs, st) = sim_store();
    for f in DEFAULT_FOLDERS {
        assert!(st.folder_by_path(f).is_ok(), "{f} missing");
    }
    assert_eq!(st.index().folders[&ROOT].entry_count(), 4);
}

#[test]
fn new_message_gets_its_entry_id_at_first_save() {
    let (_fs, st) = sim_store();
    let mut t = st.begin_new(inbox(&st), "a.eml").unwrap();
    assert_eq!(t.saved_id(), None);
    assert!(st.lookup(inbox(&st), "a.eml").is_err(), "not visible in the store before its save");
    t.write_at(b"Subject: a\r\n\r\nhello", 0).unwrap();
    let out = t.save(SaveFlags(SaveFlags::KEEP_OPEN_READWRITE)).unwrap();
    assert_eq!(t.saved_id(), Some(out.id));
    assert_eq!(st.lookup(inbox(&st), "a.eml").unwrap(), Entry::Message(out.id));
    assert_eq!(st.read_message(out.id).unwrap(), b"Subject: a\r\n\r\nhello");
}

#[test]
fn first_save_wins_and_a_later_save_gets_object_changed() {
    let (_fs, st) = sim_store();
    let id = save_new(&st, inbox(&st), "m.eml", b"v1");
    let mut a = st.begin(id).unwrap();
    let mut b = st.begin(id).unwrap();
    a.write_at(b"AA", 0).unwrap();
    b.write_at(b"BB", 0).unwrap();
    let va = a.save(SaveFlags(SaveFlags::KEEP_OPEN_READWRITE)).unwrap();
    assert!(matches!(b.save(SaveFlags(SaveFlags::KEEP_OPEN_READWRITE)), Err(Error::ObjectChanged)));
    // The loser keeps its transaction and its changes.
    assert!(b.is_dirty());
    let mut buf = [0u8; 2];
    b.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"BB");
    assert_eq!(st.read_message(id).unwrap(), b"AA");
    // FORCE_SAVE overwrites, keeping the entry id, with a higher version.
    let vb = b.save(SaveFlags(SaveFlags::FORCE_SAVE)).unwrap();
    assert_eq!(vb.id, id);
    assert!(vb.version > va.version);
    assert_eq!(st.read_message(id).unwrap(), b"BB");
}

#[test]
fn save_after_delete_gets_object_deleted_even_with_force() {
    let (_fs, st) = sim_store();
    let id = save_new(&st, inbox(&st), "m.eml", b"v1");
    let mut t = st.begin(id).unwrap();
    t.write_at(b"v2", 0).unwrap();
    st.delete_message(id).unwrap();
    assert!(matches!(t.save(SaveFlags(0)), Err(Error::ObjectDeleted)));
    assert!(matches!(t.save(SaveFlags(SaveFlags::FORCE_SAVE)), Err(Error::ObjectDeleted)));
    assert!(t.is_dirty(), "changes kept after the failed save");
    // The content can still be saved elsewhere.
    let out = t.save_as_new(inbox(&st), "m (conflict 1).eml").unwrap();
    assert_ne!(out.id, id);
    assert_eq!(st.read_message(out.id).unwrap(), b"v2");
}

#[test]
fn keep_open_flags_decide_what_the_transaction_may_do_next() {
    let (_fs, st) = sim_store();
    let id = save_new(&st, inbox(&st), "m.eml", b"v1");
    let mut t = st.begin(id).unwrap();
    t.write_at(b"v2", 0).unwrap();
    t.save(SaveFlags(SaveFlags::KEEP_OPEN_READWRITE)).unwrap();
    t.write_at(b"v3", 0).unwrap();
    t.save(SaveFlags(SaveFlags::KEEP_OPEN_READONLY)).unwrap();
    assert_eq!(st.read_message(id).unwrap(), b"v3");
    assert!(matches!(t.write_at(b"x", 0), Err(Error::NotPermitted)));
    let mut buf = [0u8; 2];
    t.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"v3");
    let mut u = st.begin(id).unwrap();
    u.write_at(b"v4", 0).unwrap();
    u.save(SaveFlags(0)).unwrap();
    assert!(matches!(u.save(SaveFlags(0)), Err(Error::NotPermitted)), "closed after a plain save");
    assert!(matches!(
        st.begin(id).unwrap().save(SaveFlags(SaveFlags::KEEP_OPEN_READONLY | SaveFlags::KEEP_OPEN_READWRITE)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(st.begin(id).unwrap().save(SaveFlags(0x100)), Err(Error::InvalidArgument(_))));
}

#[test]
fn a_save_after_ones_own_save_is_not_a_conflict() {
    let (_fs, st) = sim_store();
    let id = save_new(&st, inbox(&st), "m.eml", b"v1");
    let mut t = st.begin(id).unwrap();
    for i in 0..5u8 {
        t.write_at(&[b'0' + i], 0).unwrap();
        t.save(SaveFlags(SaveFlags::KEEP_OPEN_READWRITE)).unwrap();
    }
    assert_eq!(st.read_message(id).unwrap(), b"41");
}

#[test]
fn a_pinned_version_opens_late_and_its_object_goes_with_its_last_pin() {
    let (_fs, st) = sim_store();
    let id = save_new(&st, inbox(&st), "m.eml", &big(b'1'));
    let (a, b) = (st.pin_message(id).unwrap(), st.pin_message(id).unwrap());
    let old = object_path(id, a.version);
    let mut t = st.begin(id).unwrap();
    t.set_len(0).unwrap();
    t.write_at(b"second", 0).unwrap();
    t.save(SaveFlags(0)).unwrap();
    assert_eq!(st.pinned_size(a.version), Some(INLINE_MAX as u64 + 1));
    st.delete_message(id).unwrap();
    // Opened only now, after a save and a delete made the version unreferenced.
    assert_eq!(a.file().unwrap().read_all().unwrap(), big(b'1'));
    drop(a);
    assert!(st.vfs().exists(&old), "removed while a reader still holds it");
    drop(b);
    assert!(!st.vfs().exists(&old), "kept after its last reader left");
    assert_eq!(st.pinned_size(0), None);
}

#[test]
fn an_object_whose_last_reader_leaves_during_a_freeze_stays_until_the_thaw() {
    let (_fs, st) = sim_store();
    let id = save_new(&st, inbox(&st), "m.eml", &big(b'1'));
    let pin = st.pin_message(id).unwrap();
    let old = object_path(id, pin.version);
    st.delete_message(id).unwrap();
    st.freeze();
    drop(pin);
    assert!(st.vfs().exists(&old), "the store directory changed while frozen");
    st.thaw();
    // The committer replies before it removes garbage; a second commit's reply comes after
    // the first group is done.
    save_new(&st, inbox(&st), "next.eml", b"x");
    save_new(&st, inbox(&st), "after.eml", b"x");
    assert!(!st.vfs().exists(&old), "not removed by the next commit after the thaw");
}

#[test]
fn a_reader_keeps_its_version_while_others_save() {
    let (_fs, st) = sim_store();
    let id = save_new(&st, inbox(&st), "m.eml", b"version one");
    let view = st.open_message(id).unwrap();
    let mut t = st.begin(id).unwrap();
    t.set_len(0).unwrap();
    t.write_at(b"second", 0).unwrap();
    t.save(SaveFlags(0)).unwrap();
    st.delete_message(save_new(&st, inbox(&st), "other.eml", b"x")).unwrap();
    assert_eq!(view.file.read_all().unwrap(), b"version one");
    assert_eq!(st.read_message(id).unwrap(), b"second");
    st.delete_message(id).unwrap();
    assert_eq!(view.file.read_all().unwrap(), b"version one", "still readable after delete");
}

#[test]
fn versions_grow_and_entry_ids_survive_moves_and_renames() {
    let (_fs, st) = sim_store();
    let id = save_new(&st, inbox(&st), "m.eml", b"v1");
    let v1 = st.index().message(id).unwrap().version;
    let drafts = st.folder_by_path("Drafts").unwrap();
    st.move_message(id, drafts, "renamed.eml").unwrap();
    assert_eq!(st.lookup(drafts, "renamed.eml").unwrap(), Entry::Message(id));
    assert_eq!(st.index().message(id).unwrap().version, v1, "a move is not a save");
    let mut t = st.begin(id).unwrap();
    t.write_at(b"v2", 0).unwrap();
    let out = t.save(SaveFlags(0)).unwrap();
    assert_eq!(out.id, id);
    assert!(out.version > v1);
}

#[test]
fn rename_over_makes_a_new_version_of_the_target() {
    let (_fs, st) = sim_store();
    let ib = inbox(&st);
    let a = save_new(&st, ib, "a.eml", b"new content");
    let b = save_new(&st, ib, "b.eml", b"old content");
    let vb = st.index().message(b).unwrap().version;
    let out = st.rename_over(a, b).unwrap();
    assert_eq!(out.id, b);
    assert!(out.version > vb);
    assert_eq!(st.read_message(b).unwrap(), b"new content");
    assert!(st.lookup(ib, "a.eml").is_err());
    assert!(st.index().message(a).is_err());
}

#[test]
fn folder_rules() {
    let (_fs, st) = sim_store();
    let ib = inbox(&st);
    assert!(matches!(st.create_folder(ROOT, "Inbox", dir_attrs()), Err(Error::Exists)));
    assert!(matches!(st.create_folder(ROOT, "a/b", dir_attrs()), Err(Error::InvalidName(_))));
    assert!(matches!(st.create_folder(ROOT, "..", dir_attrs()), Err(Error::InvalidName(_))));
    assert!(matches!(st.create_folder(ROOT, &"x".repeat(256), dir_attrs()), Err(Error::InvalidName(_))));
    let sub = st.create_folder(ib, "Sub", dir_attrs()).unwrap();
    let deeper = st.create_folder(sub, "Deeper", dir_attrs()).unwrap();
    assert!(matches!(st.delete_folder(ib), Err(Error::NotEmpty)));
    assert!(matches!(st.move_folder(ib, deeper, "Loop"), Err(Error::Cycle)));
    assert!(matches!(st.move_folder(sub, sub, "Self"), Err(Error::Cycle)));
    assert!(matches!(st.move_folder(ROOT, ib, "x"), Err(Error::NotPermitted)));
    st.move_folder(sub, ROOT, "Projects").unwrap();
    assert_eq!(st.folder_by_path("Projects/Deeper").unwrap(), deeper);
    save_new(&st, deeper, "m.eml", b"x");
    assert!(matches!(st.delete_folder(deeper), Err(Error::NotEmpty)));
    // A message and a folder share one namespace.
    assert!(matches!(st.create_folder(deeper, "m.eml", dir_attrs()), Err(Error::Exists)));
    // A new message whose name was taken before its first save lost a race: ObjectChanged,
    // as any conflicting save (the writer keeps its copy and may save it elsewhere).
    let mut t = st.begin_new(deeper, "m.eml").unwrap();
    assert!(matches!(t.save(SaveFlags(0)), Err(Error::ObjectChanged)));
    st.delete_folder(st.folder_by_path("Deleted Items").unwrap()).unwrap();
    assert!(st.folder_by_path("Deleted Items").is_err());
}

#[test]
fn xattrs_and_attributes_are_stored() {
    let (_fs, st) = sim_store();
    let id = save_new(&st, inbox(&st), "m.eml", b"x");
    let set = |name: &str, v: &[u8], create, replace| AttrChange {
        xattrs: vec![XattrChange::Set { name: name.into(), value: v.to_vec(), create, replace }],
        ..Default::default()
    };
    st.set_message_attrs(id, set("user.k", b"v", true, false)).unwrap();
    assert!(matches!(st.set_message_attrs(id, set("user.k", b"v", true, false)), Err(Error::Exists)));
    assert!(matches!(st.set_message_attrs(id, set("user.z", b"v", false, true)), Err(Error::NoAttribute)));
    st.set_message_attrs(id, AttrChange { mode: Some(0o640), mtime: Some(42), ..Default::default() }).unwrap();
    {
        let ix = st.index();
        let m = &ix.message(id).unwrap();
        assert_eq!(m.attrs.mode & 0o7777, 0o640);
        assert_eq!(m.attrs.mode & libc::S_IFMT, libc::S_IFREG);
        assert_eq!(m.attrs.mtime, 42);
        assert_eq!(&*m.xattrs.as_ref().unwrap()[0].1, b"v");
    }
    st.set_message_attrs(
        id,
        AttrChange { xattrs: vec![XattrChange::Remove { name: "user.k".into() }], ..Default::default() },
    )
    .unwrap();
    assert!(st.index().message(id).unwrap().xattrs.is_none());
}

#[test]
fn everything_survives_a_clean_reopen_and_a_checkpoint() {
    let fs = SimFs::new();
    let opts = Options { create: true, checkpoint_bytes: 300, ..Default::default() };
    let st = Store::open_vfs(Arc::new(fs.clone()), opts.clone()).unwrap();
    let mut ids = vec![];
    for i in 0..30 {
        ids.push(save_new(&st, inbox(&st), &format!("{i}.eml"), format!("body {i}").as_bytes()));
    }
    assert!(st.shared().stats.checkpoints.load(std::sync::atomic::Ordering::Relaxed) > 0);
    let before = snapshot(&st);
    st.close().unwrap();
    let st = Store::open_vfs(Arc::new(fs.clone()), opts).unwrap();
    assert!(st.report().was_clean);
    assert_eq!(snapshot(&st), before);
    assert!(check::check(&fs).ok());
}

#[test]
fn a_second_open_of_a_real_store_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let st = Store::open(dir.path(), Options { create: true, ..Default::default() }).unwrap();
    match Store::open(dir.path(), Options::default()) {
        Err(Error::InUse { holder, .. }) => {
            assert!(holder.contains(&std::process::id().to_string()), "{holder}")
        }
        other => panic!("expected InUse, got {:?}", other.err()),
    }
    st.close().unwrap();
    Store::open(dir.path(), Options::default()).unwrap().close().unwrap();
}

#[test]
fn check_names_a_damaged_object_and_a_damaged_log_frame() {
    let (fs, st) = sim_store();
    let id = save_new(&st, inbox(&st), "m.eml", &big(b'p'));
    let v = st.index().message(id).unwrap().version;
    save_new(&st, inbox(&st), "n.eml", b"more mail");
    // Left open (as after a kill), so the log still holds every frame.
    st.freeze();
    assert!(check::check(&fs).ok());
    fs.corrupt_byte(&object_path(id, v), 3);
    let r = check::check(&fs);
    assert!(!r.ok());
    assert!(r.damage[0].0.contains(&format!("{id:016x}")), "{:?}", r.damage);
    fs.corrupt_byte(&object_path(id, v), 3);
    // A flipped byte in the first frame, with good frames after it: damage, not a torn tail.
    fs.corrupt_byte(std::path::Path::new("log/0000000000000001.log"), 30);
    let r = check::check(&fs);
    assert!(r.damage.iter().any(|(p, _)| p.contains("log/0000000000000001.log")), "{:?}", r.damage);
    match Store::open_vfs(Arc::new(fs.clone()), Options::default()) {
        Err(Error::Corrupt { place, .. }) => {
            assert!(place.contains("log/0000000000000001.log"), "{place}")
        }
        other => panic!("damaged store opened: {:?}", other.err()),
    }
    // Refusing the store destroyed nothing: the object is still there.
    assert!(fs.exists(&object_path(id, v)));
}

// ---- crash consistency -------------------------------------------------------------

/// The visible state of a store: every folder path with its mtime and ctime, and every
/// message's path, entry id, content, mode, mtime and ctime.
type Snap = BTreeMap<String, (Option<Id>, Vec<u8>, u32, i64, i64)>;

fn snapshot(st: &Store) -> Snap {
    try_snapshot(st).unwrap()
}

/// A snapshot, or the error reading a message's content (the machine is down).
fn try_snapshot(st: &Store) -> Result<Snap> {
    let ix = st.index().clone();
    let mut out = Snap::new();
    for (id, f) in &ix.folders {
        out.insert(format!("{}/", ix.folder_path(*id)), (None, vec![], 0, f.attrs.mtime, f.ctime));
    }
    for (id, m) in ix.messages() {
        let body = st.read_message(id)?;
        out.insert(
            format!("{}/{}", ix.folder_path(m.folder), m.name),
            (Some(id), body, m.attrs.mode & 0o7777, m.attrs.mtime, m.ctime),
        );
    }
    Ok(out)
}

/// A snapshot without its times.
fn untimed(s: &Snap) -> Snap {
    s.iter().map(|(k, (id, body, mode, _, _))| (k.clone(), (*id, body.clone(), *mode, 0, 0))).collect()
}

/// A small deterministic random generator (xorshift), so every run is the same.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Run one random operation. Ok(true) if it was acknowledged, Ok(false) if the store
/// refused it by its rules (nothing changed), Err if the machine "crashed".
fn random_op(st: &Store, rng: &mut Rng, step: usize) -> std::result::Result<bool, Error> {
    let (folders, messages): (Vec<Id>, Vec<Id>) = {
        let ix = st.index();
        let mut f: Vec<Id> = ix.folders.keys().copied().filter(|i| *i != ROOT).collect();
        let mut m: Vec<Id> = ix.messages().map(|(id, _)| id).collect();
        f.sort();
        m.sort();
        (f, m)
    };
    let pick = |rng: &mut Rng, v: &[Id]| v[rng.below(v.len() as u64) as usize];
    let res = match rng.below(10) {
        0 if !folders.is_empty() => st.create_folder(pick(rng, &folders), &format!("f{step}"), dir_attrs()).map(drop),
        1..=3 if !folders.is_empty() => {
            let body = format!("Subject: {step}\r\n\r\n{}", "x".repeat(rng.below(3000) as usize));
            st.begin_new(pick(rng, &folders), &format!("m{step}.eml")).and_then(|mut t| {
                t.write_at(body.as_bytes(), 0)?;
                t.save(SaveFlags(0)).map(drop)
            })
        }
        4 | 5 if !messages.is_empty() => st.begin(pick(rng, &messages)).and_then(|mut t| {
            t.write_at(format!("edit {step}").as_bytes(), rng.below(50))?;
            t.save(SaveFlags(0)).map(drop)
        }),
        6 if !messages.is_empty() && !folders.is_empty() => {
            st.move_message(pick(rng, &messages), pick(rng, &folders), &format!("mv{step}.eml"))
        }
        7 if !messages.is_empty() => st.delete_message(pick(rng, &messages)),
        8 if !folders.is_empty() => {
            let f = pick(rng, &folders);
            if rng.below(2) == 0 {
                st.delete_folder(f)
            } else {
                st.move_folder(f, pick(rng, &folders), &format!("r{step}"))
            }
        }
        9 if messages.len() >= 2 => {
            let (a, b) = (pick(rng, &messages), pick(rng, &messages));
            if a == b {
                st.set_message_attrs(a, AttrChange { mode: Some(0o600 | (step as u32 & 0o44)), ..Default::default() })
            } else {
                st.rename_over(a, b).map(drop)
            }
        }
        _ => Ok(()),
    };
    match res {
        Ok(()) => Ok(true),
        Err(Error::Io { .. }) => Err(res.unwrap_err()),
        Err(_) => Ok(false),
    }
}

const STEPS: usize = 60;

/// Run the workload until it ends or the machine crashes. Returns the snapshot after each
/// acknowledged step (the last one is what must survive), whether it crashed, and whether
/// a last step was acknowledged whose snapshot could not be taken: the machine went down
/// between the acknowledgement and the snapshot (in the checkpoint the committer writes
/// after replying), so that step's state, the next of the clean run, is the one to find.
fn run_workload(fs: &SimFs, opts: &Options) -> (Vec<Snap>, bool, bool) {
    let st = match Store::open_vfs(Arc::new(fs.clone()), opts.clone()) {
        Ok(s) => s,
        Err(_) => return (vec![], true, false),
    };
    let mut snaps = vec![snapshot(&st)];
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for step in 0..STEPS {
        match random_op(&st, &mut rng, step) {
            Ok(true) => match try_snapshot(&st) {
                Ok(s) => snaps.push(s),
                Err(_) => {
                    assert!(fs.crashed(), "a snapshot failed without a crash at step {step}");
                    return (snaps, true, true);
                }
            },
            Ok(false) => {}
            Err(_) => {
                assert!(fs.crashed(), "an I/O error without a crash at step {step}");
                return (snaps, true, false);
            }
        }
    }
    let crashed = st.close().is_err();
    (snaps, crashed, false)
}

#[test]
fn after_a_crash_at_every_sync_the_store_holds_exactly_what_was_acknowledged() {
    let opts = Options { create: true, checkpoint_bytes: 4000, ..Default::default() };
    let clean = SimFs::new();
    let (all, crashed, _) = run_workload(&clean, &opts);
    assert!(!crashed);
    let total_syncs = clean.syncs();
    assert!(all.len() > STEPS / 2, "the workload should mostly succeed ({} acknowledged)", all.len());
    for n in 1..=total_syncs {
        for torn in [0usize, 9, 1 << 20] {
            let fs = SimFs::new();
            fs.crash_at_sync(n);
            let (snaps, crashed, acked_unseen) = run_workload(&fs, &opts);
            assert!(crashed || n > fs.syncs(), "crash point {n} was not reached");
            let after = fs.recover(torn);
            let st = Store::open_vfs(Arc::new(after.clone()), opts.clone())
                .unwrap_or_else(|e| panic!("reopen after crash at sync {n} (torn {torn}): {e}"));
            let got = snapshot(&st);
            // What was acknowledged last must be there; the one operation in flight at the
            // crash may have reached the disk or not, so the next state is also allowed.
            let k = snaps.len();
            // Times are compared only with this run's own states: those of the clean run
            // were taken at other moments.
            let next = k < all.len() && untimed(&got) == untimed(&all[k]);
            let ok = if acked_unseen {
                next
            } else {
                (k == 0 && untimed(&got) == untimed(&all[0])) || (k > 0 && got == snaps[k - 1]) || next
            };
            assert!(
                ok,
                "crash at sync {n} (torn {torn}): state after reopen is neither the acknowledged one nor the next"
            );
            // The reopened store works and checks clean.
            let f = st.folder_by_path("Inbox").ok().or_else(|| st.index().folders.keys().copied().find(|i| *i != ROOT));
            if let Some(f) = f {
                save_new(&st, f, "after-crash.eml", b"still works");
            }
            st.close().unwrap();
            let r = check::check(&after);
            assert!(r.ok(), "check after crash at sync {n}: {:?}", r.damage);
        }
    }
}

#[test]
fn a_full_disk_fails_the_save_and_leaves_the_store_as_it_was() {
    for n in 1..40 {
        let fs = SimFs::new();
        let st = Store::open_vfs(Arc::new(fs.clone()), Options { create: true, ..Default::default() }).unwrap();
        let id = save_new(&st, inbox(&st), "m.eml", b"before");
        let before = snapshot(&st);
        fs.fail_write(n);
        let mut t = st.begin(id).unwrap();
        let r = t.write_at(b"after!", 0).and_then(|_| t.save(SaveFlags(SaveFlags::KEEP_OPEN_READWRITE)));
        match r {
            Ok(_) => continue, // the failure fell outside this save
            Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(libc::ENOSPC)),
            Err(e) => panic!("unexpected error {e}"),
        }
        assert_eq!(snapshot(&st), before, "write {n}: store changed by a failed save");
        drop(t);
        st.close().unwrap();
        let st = Store::open_vfs(Arc::new(fs.clone()), Options::default()).unwrap();
        assert_eq!(snapshot(&st), before);
        assert!(check::check(&fs).ok());
    }
}

#[test]
fn concurrent_saves_share_log_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let st = Store::open(dir.path(), Options { create: true, ..Default::default() }).unwrap();
    let ib = inbox(&st);
    let threads: Vec<_> = (0..8)
        .map(|w| {
            let st = st.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    save_new(&st, ib, &format!("{w}-{i}.eml"), b"hello");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let frames = st.shared().stats.frames.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(st.index().message_count(), 200);
    assert!(frames <= 200, "never more frames than saves");
    st.close().unwrap();
    let st = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(st.index().message_count(), 200);
    st.close().unwrap();
}

#[test]
fn freeze_holds_mutations_until_thaw() {
    let (_fs, st) = sim_store();
    st.freeze();
    let st2 = st.clone();
    let ib = inbox(&st);
    let h = std::thread::spawn(move || save_new(&st2, ib, "held.eml", b"x"));
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(st.lookup(ib, "held.eml").is_err(), "a save went through during a freeze");
    assert!(!h.is_finished());
    st.thaw();
    let id = h.join().unwrap();
    assert_eq!(st.lookup(ib, "held.eml").unwrap(), Entry::Message(id));
}

#[test]
fn the_vfs_trait_is_all_the_store_uses() {
    // A store on the simulated filesystem has the same layout as on disk.
    let (fs, st) = sim_store();
    save_new(&st, inbox(&st), "m.eml", &big(b'x'));
    st.close().unwrap();
    let files = fs.files();
    assert!(files.keys().any(|p| p.starts_with("objects")));
    assert!(files.contains_key(std::path::Path::new("format")));
    assert!(files.contains_key(std::path::Path::new("clean")));
}

#[test]
fn an_import_batch_is_one_frame_and_survives_a_crash_only_whole() {
    let fs = SimFs::new();
    let st = Store::open_vfs(Arc::new(fs.clone()), Options { create: true, ..Default::default() }).unwrap();
    let ib = inbox(&st);
    let msgs: Vec<NewMessage> = (0..50)
        .map(|i| {
            let body = format!("Subject: {i}\r\n\r\nbody");
            let (staged, crc) = st.stage_content(body.as_bytes()).unwrap();
            NewMessage {
                folder: ib,
                name: format!("{i}.eml"),
                staged,
                size: body.len() as u64,
                crc,
                attrs: attrs(),
                flags: flags::SEEN,
            }
        })
        .collect();
    let frames = st.shared().stats.frames.load(std::sync::atomic::Ordering::Relaxed);
    let ids = st.import_messages(msgs).unwrap();
    assert_eq!(st.shared().stats.frames.load(std::sync::atomic::Ordering::Relaxed), frames + 1);
    assert_eq!(ids.len(), 50);
    assert_eq!(st.read_message(ids[7]).unwrap(), b"Subject: 7\r\n\r\nbody");
    assert_eq!(st.index().message(ids[7]).unwrap().flags, flags::SEEN);
    fs.crash();
    let st = Store::open_vfs(Arc::new(fs.recover(0)), Options::default()).unwrap();
    assert_eq!(st.index().folders[&ib].entry_count(), 50);
}

// ---- snapshot sessions and the crash-recovery lock ------------------------------------

#[test]
fn snapshot_sessions_follow_the_ese_state_table() {
    let (_fs, st) = sim_store();
    // Unknown ids: OSSnapshotInvalidSnapId for every call.
    assert!(matches!(st.snapshot_freeze(999), Err(Error::SnapshotInvalidId)));
    assert!(matches!(st.snapshot_thaw(999), Err(Error::SnapshotInvalidId)));
    assert!(matches!(st.snapshot_abort(999), Err(Error::SnapshotInvalidId)));
    assert!(matches!(st.snapshot_end(999), Err(Error::SnapshotInvalidId)));
    assert!(matches!(st.snapshot_info(999), Err(Error::SnapshotInvalidId)));
    // Prepared: thaw is out of sequence; end is legal.
    let a = st.snapshot_prepare();
    assert_eq!(st.snapshot_info(a).unwrap().state, control::SnapState::Prepared);
    assert!(matches!(st.snapshot_thaw(a), Err(Error::SnapshotSequence)));
    st.snapshot_end(a).unwrap();
    assert!(matches!(st.snapshot_info(a), Err(Error::SnapshotInvalidId)), "an ended session is gone");
    // Prepared -> Frozen -> Thawed -> End.
    let b = st.snapshot_prepare();
    st.snapshot_freeze(b).unwrap();
    assert!(st.is_frozen());
    assert!(matches!(st.snapshot_freeze(b), Err(Error::SnapshotSequence)), "freeze twice");
    assert!(matches!(st.snapshot_end(b), Err(Error::SnapshotSequence)), "end while frozen");
    let c = st.snapshot_prepare();
    assert!(matches!(st.snapshot_freeze(c), Err(Error::Busy)), "a second freeze: OSSnapshotNotAllowed");
    assert_eq!(st.snapshot_info(c).unwrap().state, control::SnapState::Prepared, "a refused call changes nothing");
    st.snapshot_thaw(b).unwrap();
    assert!(!st.is_frozen());
    assert!(matches!(st.snapshot_thaw(b), Err(Error::SnapshotSequence)), "thaw after thaw");
    assert!(matches!(st.snapshot_freeze(b), Err(Error::SnapshotSequence)), "freeze after thaw");
    st.snapshot_end(b).unwrap();
    // Abort from Prepared, from Frozen (thaws).
    st.snapshot_abort(c).unwrap();
    let d = st.snapshot_prepare();
    st.snapshot_freeze(d).unwrap();
    st.snapshot_abort(d).unwrap();
    assert!(!st.is_frozen());
    assert!(matches!(st.snapshot_abort(d), Err(Error::SnapshotInvalidId)));
}

#[test]
fn a_freeze_that_outlives_its_timeout_thaws_and_the_thaw_reports_it() {
    let (_fs, st) = sim_store();
    st.set_freeze_timeout(std::time::Duration::from_millis(100));
    let id = st.snapshot_prepare();
    st.snapshot_freeze(id).unwrap();
    let ib = inbox(&st);
    let st2 = st.clone();
    let held = std::thread::spawn(move || save_new(&st2, ib, "waited.eml", b"x"));
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert!(held.is_finished(), "the timeout did not thaw the store");
    held.join().unwrap();
    assert_eq!(st.snapshot_info(id).unwrap().state, control::SnapState::TimedOut);
    assert!(matches!(st.snapshot_end(id), Err(Error::SnapshotSequence)));
    assert!(matches!(st.snapshot_thaw(id), Err(Error::SnapshotTimedOut)));
    assert!(matches!(st.snapshot_thaw(id), Err(Error::SnapshotInvalidId)), "the session ended");
}

#[test]
fn the_crash_lock_refuses_reads_and_writes_until_continue_or_the_holder_ends() {
    let (_fs, st) = sim_store();
    let id = save_new(&st, inbox(&st), "m.eml", b"x");
    // CONTINUE without a lock changes nothing.
    st.crash_continue().unwrap();
    st.crash_recover(std::process::id(), false).unwrap();
    assert!(matches!(st.open_message(id), Err(Error::NoAccess)));
    assert!(matches!(st.delete_message(id), Err(Error::NoAccess)));
    assert!(matches!(st.crash_recover(1, false), Err(Error::Busy)), "another process cannot take a held lock");
    st.crash_continue().unwrap();
    assert_eq!(st.read_message(id).unwrap(), b"x");
    // SYSTEM_SHUTDOWN: CONTINUE is refused.
    st.crash_recover(std::process::id(), true).unwrap();
    assert!(matches!(st.crash_continue(), Err(Error::NotPermitted)));
    assert!(st.crash_lock().is_some());
    // A holder that ends lifts the lock.
    let mut child = std::process::Command::new("sleep").arg("0.2").spawn().unwrap();
    let (_fs2, st2) = sim_store();
    st2.crash_recover(child.id(), true).unwrap();
    assert!(st2.crash_lock().is_some());
    child.wait().unwrap();
    let start = std::time::Instant::now();
    while st2.crash_lock().is_some() && start.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(st2.crash_lock().is_none(), "the lock outlived its holder");
}

#[test]
fn the_crash_lock_is_refused_on_a_store_that_is_not_consistent() {
    let (_fs, st) = sim_store();
    *st.shared().poisoned.lock().unwrap() = Some("a sync failed".into());
    assert!(matches!(st.crash_recover(std::process::id(), false), Err(Error::Busy)));
    assert!(st.crash_lock().is_none(), "no lock when inconsistent");
    let (_fs, st) = sim_store();
    let s = st.snapshot_prepare();
    st.snapshot_freeze(s).unwrap();
    assert!(matches!(st.crash_recover(std::process::id(), false), Err(Error::Busy)), "commits are held by a freeze");
    assert!(st.crash_lock().is_none());
}

// ---- times: folder mtimes and ctimes ------------------------------------------------

/// (mtime, ctime) of a folder.
fn ftimes(st: &Store, id: Id) -> (i64, i64) {
    let ix = st.index();
    (ix.folders[&id].attrs.mtime, ix.folders[&id].ctime)
}

/// (mtime, ctime) of a message.
fn mtimes(st: &Store, id: Id) -> (i64, i64) {
    let ix = st.index();
    (ix.message(id).unwrap().attrs.mtime, ix.message(id).unwrap().ctime)
}

/// Set a folder's mtime far in the past, so that a later change shows.
fn age_folder(st: &Store, id: Id) {
    st.set_folder_attrs(id, AttrChange { mtime: Some(7), ..Default::default() }).unwrap();
    assert_eq!(ftimes(st, id).0, 7);
}

#[test]
fn a_message_costs_the_index_96_bytes_plus_its_name() {
    // 88 before ctime was kept; the figure the docs (index.rs, msgfs(5)) give.
    assert_eq!(std::mem::size_of::<Message>(), 88);
    assert_eq!(std::mem::size_of::<(Id, Message)>(), 96);
}

#[test]
fn records_set_times_from_the_logged_commit_time_only() {
    // The index alone, with explicit commit times: what apply does is fixed by the records.
    let mut ix = Index::new_store(dir_attrs());
    let r = |ix: &mut Index, rec: Record| {
        ix.validate(&rec).unwrap();
        ix.apply(&rec);
    };
    let put = |id, folder, name: &str, mtime| Record::MessagePut {
        id,
        folder,
        name: name.into(),
        version: id + 100,
        size: 1,
        crc: 0,
        attrs: Attrs { mtime, ..attrs() },
        flags: 0,
        xattrs: vec![],
    };
    r(&mut ix, Record::Time { ns: 100 });
    r(&mut ix, Record::FolderCreate { id: 2, parent: ROOT, name: "A".into(), attrs: dir_attrs() });
    r(&mut ix, Record::FolderCreate { id: 3, parent: ROOT, name: "B".into(), attrs: dir_attrs() });
    assert_eq!((ix.folders[&ROOT].attrs.mtime, ix.folders[&ROOT].ctime), (100, 100));
    assert_eq!((ix.folders[&2].attrs.mtime, ix.folders[&2].ctime), (1, 100));
    r(&mut ix, Record::Time { ns: 200 });
    r(&mut ix, put(10, 2, "m", 150));
    assert_eq!((ix.folders[&2].attrs.mtime, ix.folders[&2].ctime), (200, 200), "new entry");
    assert_eq!((ix.message(10).unwrap().attrs.mtime, ix.message(10).unwrap().ctime), (150, 200));
    assert_eq!(ix.folders[&ROOT].ctime, 100, "the grandparent is not touched");
    // Metadata: ctime moves, mtime stays; the folder is not touched.
    r(&mut ix, Record::Time { ns: 300 });
    let chmod = Attrs { mode: libc::S_IFREG | 0o644, ..ix.message(10).unwrap().attrs };
    r(&mut ix, Record::MessageMeta { id: 10, attrs: chmod, flags: 0, xattrs: vec![] });
    assert_eq!((ix.message(10).unwrap().attrs.mtime, ix.message(10).unwrap().ctime), (150, 300));
    assert_eq!(ix.folders[&2].attrs.mtime, 200);
    // A new version: both its times, not its folder's.
    r(&mut ix, Record::Time { ns: 400 });
    r(&mut ix, put(10, 2, "m", 400));
    assert_eq!((ix.message(10).unwrap().attrs.mtime, ix.message(10).unwrap().ctime), (400, 400));
    assert_eq!(ix.folders[&2].attrs.mtime, 200);
    // A move: both folders, and the message's ctime only.
    r(&mut ix, Record::Time { ns: 500 });
    r(&mut ix, Record::MessageMove { id: 10, folder: 3, name: "n".into() });
    assert_eq!((ix.folders[&2].attrs.mtime, ix.folders[&2].ctime), (500, 500));
    assert_eq!((ix.folders[&3].attrs.mtime, ix.folders[&3].ctime), (500, 500));
    assert_eq!((ix.message(10).unwrap().attrs.mtime, ix.message(10).unwrap().ctime), (400, 500));
    // A folder move: both parents and the folder's own ctime.
    r(&mut ix, Record::Time { ns: 600 });
    r(&mut ix, Record::FolderMove { id: 3, parent: 2, name: "B".into() });
    assert_eq!((ix.folders[&ROOT].attrs.mtime, ix.folders[&2].attrs.mtime), (600, 600));
    assert_eq!((ix.folders[&3].attrs.mtime, ix.folders[&3].ctime), (500, 600), "its own mtime stays");
    r(&mut ix, Record::Time { ns: 700 });
    r(&mut ix, Record::MessageDelete { id: 10 });
    assert_eq!((ix.folders[&3].attrs.mtime, ix.folders[&3].ctime), (700, 700));
    r(&mut ix, Record::Time { ns: 800 });
    r(&mut ix, Record::FolderDelete { id: 3 });
    assert_eq!((ix.folders[&2].attrs.mtime, ix.folders[&2].ctime), (800, 800));
    r(&mut ix, Record::Time { ns: 900 });
    r(&mut ix, Record::FolderAttrs { id: 2, attrs: Attrs { mtime: 5, ..dir_attrs() } });
    assert_eq!((ix.folders[&2].attrs.mtime, ix.folders[&2].ctime), (5, 900));
    r(&mut ix, Record::FolderTouch { id: 2 });
    assert_eq!((ix.folders[&2].attrs.mtime, ix.folders[&2].ctime), (900, 900));
}

#[test]
fn records_of_the_previous_format_take_ctime_from_mtime_and_leave_folders_alone() {
    // No Time record: as the previous format replayed, plus ctime = mtime.
    let mut ix = Index::new_store(dir_attrs());
    let recs = [
        Record::FolderCreate { id: 2, parent: ROOT, name: "A".into(), attrs: Attrs { mtime: 20, ..dir_attrs() } },
        Record::MessagePut {
            id: 3,
            folder: 2,
            name: "m".into(),
            version: 4,
            size: 1,
            crc: 0,
            attrs: Attrs { mtime: 30, ..attrs() },
            flags: 0,
            xattrs: vec![],
        },
        Record::MessageMove { id: 3, folder: ROOT, name: "m".into() },
        Record::MessageMeta { id: 3, attrs: Attrs { mtime: 40, ..attrs() }, flags: 0, xattrs: vec![] },
    ];
    for rec in &recs {
        ix.validate(rec).unwrap();
        ix.apply(rec);
    }
    assert_eq!((ix.folders[&ROOT].attrs.mtime, ix.folders[&ROOT].ctime), (1, 1));
    assert_eq!((ix.folders[&2].attrs.mtime, ix.folders[&2].ctime), (20, 20));
    assert_eq!((ix.message(3).unwrap().attrs.mtime, ix.message(3).unwrap().ctime), (40, 40));
    // A checkpoint of the previous format (no ctimes) reads back with ctime = mtime.
    ix.folders.get_mut(&2).unwrap().ctime = 99;
    ix.messages.get_mut(&3).unwrap().ctime = 99;
    let (old, _) = checkpoint::decode(&checkpoint::encode_as(&ix, 5, checkpoint::FORMAT_NO_CTIME)).unwrap();
    assert_eq!((old.folders[&2].ctime, old.message(3).unwrap().ctime), (20, 40));
    let (new, seq) = checkpoint::decode(&checkpoint::encode(&ix, 5).unwrap()).unwrap();
    assert_eq!((new.folders[&2].ctime, new.message(3).unwrap().ctime, seq), (99, 99, 5));
}

#[test]
fn every_frame_starts_with_its_commit_time() {
    let (fs, st) = sim_store();
    save_new(&st, inbox(&st), "a.eml", b"x");
    // (Not closed: closing writes a checkpoint and removes the segments it covers.)
    let mut frames = 0;
    for (_, path) in log::list_segments(&fs).unwrap() {
        for (i, fr) in log::read_segment(&fs, &path).unwrap().frames.iter().enumerate() {
            if i > 0 || fr.first_seq > 1 {
                // (The first frame, written by init, is of the previous kind: no time.)
                assert!(matches!(fr.records[0], Record::Time { .. }), "{:?}", fr.records);
                frames += 1;
            }
        }
    }
    assert!(frames > 0);
}

#[test]
fn entries_change_their_folder_times_and_metadata_changes_only_ctime() {
    let (_fs, st) = sim_store();
    let ib = inbox(&st);
    let drafts = st.folder_by_path("Drafts").unwrap();
    age_folder(&st, ib);
    // A new message: its folder's mtime and ctime become its commit time, which is also
    // the message's mtime and ctime.
    let a = save_new(&st, ib, "a.eml", b"x");
    let (m, c) = mtimes(&st, a);
    assert_eq!(m, c);
    assert_eq!(ftimes(&st, ib), (c, c));
    // chmod and utimes: ctime moves on, mtime is what was set.
    st.set_message_attrs(a, AttrChange { mtime: Some(42), ..Default::default() }).unwrap();
    let (m, c1) = mtimes(&st, a);
    assert_eq!(m, 42);
    assert!(c1 >= c);
    st.set_message_attrs(a, AttrChange { mode: Some(0o644), ..Default::default() }).unwrap();
    let (m, c2) = mtimes(&st, a);
    assert_eq!(m, 42, "chmod keeps the mtime");
    assert!(c2 >= c1);
    assert_eq!(ftimes(&st, ib), (c, c), "a message's metadata is not its folder's");
    // A move changes both folders and the message's ctime.
    age_folder(&st, ib);
    age_folder(&st, drafts);
    st.move_message(a, drafts, "b.eml").unwrap();
    let (m, c3) = mtimes(&st, a);
    assert_eq!(m, 42);
    assert_eq!(ftimes(&st, ib), (c3, c3));
    assert_eq!(ftimes(&st, drafts), (c3, c3));
    // A rename over a message in another folder changes both folders.
    let b = save_new(&st, ib, "b.eml", b"y");
    age_folder(&st, ib);
    age_folder(&st, drafts);
    st.rename_over(b, a).unwrap();
    let (_, c4) = mtimes(&st, a);
    assert_eq!(ftimes(&st, ib), (c4, c4));
    assert_eq!(ftimes(&st, drafts), (c4, c4));
    // Delete, and folder create, move and delete.
    age_folder(&st, drafts);
    st.delete_message(a).unwrap();
    assert_ne!(ftimes(&st, drafts).0, 7);
    age_folder(&st, ib);
    let sub = st.create_folder(ib, "Sub", dir_attrs()).unwrap();
    let t = ftimes(&st, ib);
    assert_eq!(t.0, t.1);
    assert_eq!(st.index().folders[&sub].ctime, t.1);
    age_folder(&st, ib);
    age_folder(&st, drafts);
    st.move_folder(sub, drafts, "Sub2").unwrap();
    let c5 = st.index().folders[&sub].ctime;
    assert_eq!(ftimes(&st, ib), (c5, c5));
    assert_eq!(ftimes(&st, drafts), (c5, c5));
    assert_eq!(st.index().folders[&sub].attrs.mtime, 1, "a moved folder keeps its mtime");
    age_folder(&st, drafts);
    st.delete_folder(sub).unwrap();
    assert_ne!(ftimes(&st, drafts).0, 7); // A touch (a mount's file not saved yet): the folders only.
    age_folder(&st, ib);
    age_folder(&st, drafts);
    st.touch_folders(&[ib, drafts, ib]).unwrap();
    let t = ftimes(&st, ib);
    assert_eq!((t.0, ftimes(&st, drafts)), (t.1, t));
    assert!(matches!(st.touch_folders(&[a]), Err(Error::NotFound)));
}

/// A store after a mix of changes, with checkpoints every few frames.
fn timed_workload(fs: &SimFs, opts: &Options) -> Store {
    let st = Store::open_vfs(Arc::new(fs.clone()), opts.clone()).unwrap();
    let ib = inbox(&st);
    let drafts = st.folder_by_path("Drafts").unwrap();
    for i in 0..6 {
        let a = save_new(&st, ib, &format!("{i}.eml"), b"x");
        st.set_message_attrs(a, AttrChange { mode: Some(0o640), ..Default::default() }).unwrap();
        if i % 2 == 0 {
            st.move_message(a, drafts, &format!("{i}.eml")).unwrap();
        }
        if i % 3 == 0 {
            st.delete_message(a).unwrap();
        }
        let f = st.create_folder(drafts, &format!("f{i}"), dir_attrs()).unwrap();
        st.move_folder(f, ib, &format!("f{i}")).unwrap();
    }
    st
}

#[test]
fn times_after_reopen_and_after_a_crash_are_those_of_the_live_store() {
    for checkpoint_bytes in [300, 1 << 30] {
        let opts = Options { create: true, checkpoint_bytes, ..Default::default() };
        // A clean close and reopen.
        let fs = SimFs::new();
        let st = timed_workload(&fs, &opts);
        let live = snapshot(&st);
        st.close().unwrap();
        let st = Store::open_vfs(Arc::new(fs.clone()), opts.clone()).unwrap();
        assert_eq!(snapshot(&st), live, "after a clean reopen (checkpoint every {checkpoint_bytes} bytes)");
        // A crash: replay of the log, perhaps after a checkpoint.
        let fs = SimFs::new();
        let st = timed_workload(&fs, &opts);
        let live = snapshot(&st);
        fs.crash();
        let st = Store::open_vfs(Arc::new(fs.recover(0)), opts.clone()).unwrap();
        assert!(!st.report().was_clean);
        assert_eq!(snapshot(&st), live, "after a crash (checkpoint every {checkpoint_bytes} bytes)");
    }
}

#[test]
fn a_store_checkpointed_by_the_previous_format_opens_with_ctime_from_mtime() {
    let fs = SimFs::new();
    let opts = Options { create: true, ..Default::default() };
    let st = Store::open_vfs(Arc::new(fs.clone()), opts.clone()).unwrap();
    let a = save_new(&st, inbox(&st), "a.eml", b"x");
    st.set_message_attrs(a, AttrChange { mtime: Some(42), ..Default::default() }).unwrap();
    st.close().unwrap();
    // Rewrite the checkpoint as the previous version wrote it: format 1, no ctimes.
    let path = std::path::Path::new(checkpoint::CHECKPOINT);
    let (ix, seq) = checkpoint::read(&fs).unwrap().unwrap();
    assert_ne!(ix.message(a).unwrap().ctime, 42);
    let old = checkpoint::encode_as(&ix, seq, checkpoint::FORMAT_NO_CTIME);
    let f = fs.open(path, vfs::OpenMode::CreateTruncate).unwrap();
    f.write_all_at(&old, 0).unwrap();
    f.sync().unwrap();
    drop(f);
    let st = Store::open_vfs(Arc::new(fs.clone()), opts).unwrap();
    let ix = st.index().clone();
    assert_eq!((ix.message(a).unwrap().attrs.mtime, ix.message(a).unwrap().ctime), (42, 42));
    for f in ix.folders.values() {
        assert_eq!(f.ctime, f.attrs.mtime);
    }
    // Changes from now on keep ctimes, and the next checkpoint is of the new format.
    st.set_message_attrs(a, AttrChange { mode: Some(0o644), ..Default::default() }).unwrap();
    assert_ne!(st.index().message(a).unwrap().ctime, 42);
    st.close().unwrap();
    let (ix, _) = checkpoint::read(&fs).unwrap().unwrap();
    assert_ne!(ix.message(a).unwrap().ctime, 42);
    assert_eq!(
        checkpoint::decode(&checkpoint::encode(&ix, 1).unwrap()).unwrap().0.message(a).unwrap().ctime,
        ix.message(a).unwrap().ctime
    );
}

//! Tests of lazy commit (`lazy.rs`): answered before durable, durable within the delay or
//! at the next durable commit, and after a crash a prefix of the commits, never damage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::simfs::SimFs;
use super::txn::PreparedSave;
use super::*;

fn opts(delay: Duration) -> Options {
    Options { create: true, lazy_delay: delay, ..Default::default() }
}

fn inbox(st: &Store) -> Id {
    st.folder_by_path("Inbox").unwrap()
}

/// Save `body` as `name` (new, or a new version when it exists), committed lazily.
fn lazy_save(st: &Store, name: &str, body: &[u8]) -> Result<Outcome> {
    let ib = inbox(st);
    let mut t = match st.lookup(ib, name) {
        Ok(Entry::Message(id)) => st.begin(id)?,
        _ => st.begin_new(ib, name)?,
    };
    t.set_len(0)?;
    t.write_at(body, 0)?;
    match t.prepare_save(SaveFlags(0))? {
        PreparedSave::Done(out) => Ok(out),
        PreparedSave::Submit(op) => {
            let (tx, rx) = std::sync::mpsc::channel();
            st.submit_lazy(op, Box::new(move |r| drop(tx.send(r))));
            let r = rx.recv().unwrap();
            t.finish_save(SaveFlags(0), r)
        }
    }
}

fn contents(st: &Store) -> Result<BTreeMap<String, Vec<u8>>> {
    let ids: Vec<(Id, String)> = st.index().messages().map(|(id, m)| (id, m.name().to_string())).collect();
    ids.into_iter().map(|(id, name)| Ok((name, st.read_message(id)?))).collect()
}

#[test]
fn a_lazy_save_is_answered_and_visible_before_its_log_sync_which_follows_within_the_delay() {
    let fs = SimFs::new();
    let st = Store::open_vfs(Arc::new(fs.clone()), opts(Duration::from_millis(30))).unwrap();
    lazy_save(&st, "warm.eml", b"raises the format").unwrap();
    st.sync_log().unwrap();
    let syncs = fs.syncs();
    let out = lazy_save(&st, "a.eml", b"Subject: a\r\n\r\nlazy").unwrap();
    assert_eq!(fs.syncs(), syncs, "answered with no sync");
    assert_eq!(st.read_message(out.id).unwrap(), b"Subject: a\r\n\r\nlazy", "visible at once");
    let t0 = Instant::now();
    while fs.syncs() == syncs && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(fs.syncs(), syncs + 1, "one log sync follows by itself");
    fs.crash();
    let st = Store::open_vfs(Arc::new(fs.recover(0)), opts(Duration::from_millis(30))).unwrap();
    assert_eq!(st.read_message(out.id).unwrap(), b"Subject: a\r\n\r\nlazy");
}

#[test]
fn a_durable_commit_or_sync_log_makes_the_lazy_ones_before_it_durable() {
    let fs = SimFs::new();
    // A delay no test waits for: only a durable commit can sync the log.
    let st = Store::open_vfs(Arc::new(fs.clone()), opts(Duration::from_secs(3600))).unwrap();
    lazy_save(&st, "a.eml", b"one").unwrap();
    lazy_save(&st, "b.eml", b"two").unwrap();
    st.sync_log().unwrap();
    lazy_save(&st, "c.eml", b"three").unwrap();
    st.create_folder(ROOT, "Durable", Attrs { mode: libc::S_IFDIR | 0o700, uid: 0, gid: 0, mtime: 1 }).unwrap();
    lazy_save(&st, "d.eml", b"four, lost").unwrap();
    fs.crash();
    let st = Store::open_vfs(Arc::new(fs.recover(0)), opts(Duration::from_secs(3600))).unwrap();
    let got = contents(&st).unwrap();
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), ["a.eml", "b.eml", "c.eml"]);
    assert!(st.folder_by_path("Durable").is_ok());
}

#[test]
fn an_old_version_replaced_lazily_keeps_its_object_until_the_replacement_is_durable() {
    let fs = SimFs::new();
    let st = Store::open_vfs(Arc::new(fs.clone()), opts(Duration::from_secs(3600))).unwrap();
    let big = |c: u8| vec![c; INLINE_MAX + 10];
    let ib = inbox(&st);
    let mut t = st.begin_new(ib, "big.eml").unwrap();
    t.write_at(&big(b'1'), 0).unwrap();
    let id = t.save(SaveFlags(0)).unwrap().id;
    lazy_save(&st, "big.eml", &big(b'2')).unwrap();
    assert_eq!(st.read_message(id).unwrap(), big(b'2'));
    // The crash loses the lazy save: the first version must still be whole.
    fs.crash();
    let fs = fs.recover(0);
    let st = Store::open_vfs(Arc::new(fs.clone()), opts(Duration::from_secs(3600))).unwrap();
    assert_eq!(st.read_message(id).unwrap(), big(b'1'));
    st.close().unwrap();
    let r = check::check(&fs);
    assert!(r.ok(), "{:?}", r.damage);
}

/// Lazy saves with now and then a durable one, cut by a power failure at every sync (and
/// torn writes): what survives is a prefix of the answered commits that holds at least
/// every one answered before the last durable answer.
#[test]
fn a_power_cut_at_every_sync_leaves_a_prefix_of_the_lazy_commits() {
    // Checkpoints (each starting a segment) come between lazy commits too.
    let o = Options { checkpoint_bytes: 3000, ..opts(Duration::from_secs(3600)) };
    let workload = |fs: &SimFs| -> (Vec<BTreeMap<String, Vec<u8>>>, usize) {
        let Ok(st) = Store::open_vfs(Arc::new(fs.clone()), o.clone()) else { return (vec![], 0) };
        let mut snaps = vec![];
        let mut durable_upto = 0;
        for step in 0..24usize {
            let name = format!("m{}.eml", step % 7);
            let body = format!("Subject: {step}\r\n\r\n{}", "x".repeat(step * 40));
            let r =
                if step % 6 == 5 { st.sync_log().map(drop) } else { lazy_save(&st, &name, body.as_bytes()).map(drop) };
            match r.and_then(|()| contents(&st)) {
                Ok(c) => {
                    snaps.push(c);
                    if step % 6 == 5 {
                        durable_upto = snaps.len() - 1;
                    }
                }
                Err(_) if fs.crashed() => return (snaps, durable_upto),
                Err(e) => panic!("step {step} failed without a crash: {e}"),
            }
        }
        let _ = st.close();
        (snaps, durable_upto)
    };
    let clean = SimFs::new();
    let (all, _) = workload(&clean);
    assert!(clean.syncs() > 10);
    for n in 1..=clean.syncs() {
        for torn in [0usize, 40, 1 << 20] {
            let fs = SimFs::new();
            fs.crash_at_sync(n);
            let (snaps, durable_upto) = workload(&fs);
            let after = fs.recover(torn);
            let st = Store::open_vfs(Arc::new(after.clone()), o.clone())
                .unwrap_or_else(|e| panic!("reopen after a cut at sync {n} (torn {torn}): {e}"));
            let got = contents(&st).unwrap();
            let empty = BTreeMap::new();
            // A sync step changes no content: its snapshot equals the one before it.
            let k = all.iter().rposition(|s| *s == got);
            let ok = match k {
                Some(k) => snaps.is_empty() || k >= durable_upto,
                None => got == empty && (snaps.is_empty() || durable_upto == 0),
            };
            assert!(ok, "cut at sync {n} (torn {torn}): not a prefix holding every durable commit (at {k:?}, durable up to {durable_upto})");
            st.close().unwrap();
            let r = check::check(&after);
            assert!(r.ok(), "cut at sync {n} (torn {torn}): {:?}", r.damage);
        }
    }
}

/// A log sync that fails poisons the store; its committer then has nothing left to sync,
/// rather than trying again and again.
#[test]
fn a_failed_log_sync_leaves_no_sync_pending() {
    let fs = SimFs::new();
    let st = Store::open_vfs(Arc::new(fs.clone()), opts(Duration::from_secs(3600))).unwrap();
    lazy_save(&st, "a.eml", b"one").unwrap();
    assert!(st.lazy_pending());
    fs.crash_at_sync(1);
    assert!(st.sync_log().is_err());
    assert!(!st.lazy_pending(), "a poisoned store keeps no sync to retry");
    assert!(lazy_save(&st, "b.eml", b"two").is_err(), "and commits nothing more");
}

//! The download side of a sync pass against a real Dovecot (tests/common/dovecot.rs):
//! messages, flags, keywords and links arrive once, later mail arrives on the next run,
//! and a changed UIDVALIDITY is refused without touching the store.

#[path = "common/dovecot.rs"]
mod dovecot;

use std::path::Path;

use dovecot::Dovecot;
use msgfs::store::{flags, Attrs, FolderRemote, Id, Options, Store, ROOT};
use msgfs::sync::config::Tls;
use msgfs::sync::download::{download_folder, download_folder_in_batches, DownloadError};
use msgfs::sync::imap::{Connection, Folder};

fn server_folder(conn: &mut Connection, name: &str) -> Folder {
    conn.list().unwrap().into_iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no folder {name}"))
}

fn new_store(dir: &Path) -> (Store, Id) {
    let store = Store::open(dir, Options { create: true, ..Default::default() }).unwrap();
    let attrs = Attrs { mode: libc::S_IFDIR | 0o700, uid: 0, gid: 0, mtime: 0 };
    let id = store.create_folder(ROOT, "Work", attrs).unwrap();
    (store, id)
}

/// IMAP servers may turn bare LF into CRLF; messages are compared with every CRLF made LF
/// on both sides (the fixture's messages are CRLF already, except the one that is not).
fn lf(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    for (i, &c) in b.iter().enumerate() {
        if !(c == b'\r' && b.get(i + 1) == Some(&b'\n')) {
            out.push(c);
        }
    }
    out
}

/// Message `n` with its IMAP flags and the store flags and keywords they must map to.
fn seed(n: usize) -> (&'static str, Vec<u8>, u8, Vec<&'static str>) {
    let (imap, bits, kw): (&str, u8, Vec<&str>) = match n % 6 {
        0 => ("\\Seen", flags::SEEN, vec![]),
        1 => ("\\Seen \\Answered", flags::SEEN | flags::ANSWERED, vec![]),
        2 => ("\\Flagged $Forwarded", flags::FLAGGED, vec!["$Forwarded"]),
        3 => ("\\Draft \\Deleted", flags::DRAFT | flags::TRASHED, vec![]),
        4 => ("", 0, vec![]),
        _ => ("$Label1 Work \\Seen", flags::SEEN, vec!["$Label1", "Work"]),
    };
    let bytes = match n {
        // Bare LF line ends, 8-bit text and a body big enough to span many reads.
        7 => format!(
            "From: a@example.org\nSubject: big {n}\nMessage-ID: <{n}@msgfs.test>\n\
             Content-Type: text/plain; charset=utf-8\n\n{}\n",
            "grüße ✓ ".repeat(20_000)
        )
        .into_bytes(),
        // The same subject (and date) twice: two names, made unique as the import does.
        9 => dovecot::message(8),
        _ => dovecot::message(n),
    };
    (imap, bytes, bits, kw)
}

/// The store's downloaded messages in `folder`, by UID: (uid, bytes, flags, keywords).
fn downloaded(store: &Store, folder: Id) -> Vec<(u64, Vec<u8>, u8, Vec<String>)> {
    let ix = store.index();
    let mut out: Vec<_> = ix
        .message_remotes()
        .filter(|(_, l)| l.folder == folder)
        .map(|(id, l)| {
            let m = ix.message(id).unwrap();
            assert_eq!(m.folder(), folder);
            assert_eq!(l.flags, m.flags(), "link flags of UID {}", l.uid);
            assert_eq!(l.version, m.version(), "link version of UID {}", l.uid);
            assert!(l.modseq > 0, "Dovecot has CONDSTORE: UID {} has a modseq", l.uid);
            let kw = ix.message_keywords(id).iter().map(|k| k.to_string()).collect();
            (l.uid, store.read_message(id).unwrap(), m.flags(), kw)
        })
        .collect();
    out.sort_by_key(|m| m.0);
    // Every message in the folder has a link.
    assert_eq!(out.len(), ix.messages().filter(|(_, m)| m.folder() == folder).count());
    out
}

/// A Dovecot whose folder `Work` holds `msgs` (flags, bytes), a new store, and a logged-in
/// connection with `Work` listed: what every test here starts from. Tests bind every field
/// (`_name` for unused ones): a field left to `..` would be dropped at once, stopping the
/// server or removing the store's directory.
struct Setup {
    server: Dovecot,
    raw: dovecot::RawSession,
    tmp: tempfile::TempDir,
    store: Store,
    work: Id,
    conn: Connection,
    folder: Folder,
}

fn setup(msgs: &[(&str, Vec<u8>)]) -> Setup {
    let server = Dovecot::start();
    let mut raw = server.raw();
    raw.cmd("CREATE Work").unwrap();
    raw.multiappend("Work", msgs);
    let tmp = tempfile::tempdir().unwrap();
    let (store, work) = new_store(&tmp.path().join("store"));
    // Over TLS, as a real account would be: the big message then arrives in many records.
    let mut conn = server.login(Tls::Implicit);
    let folder = server_folder(&mut conn, "Work");
    Setup { server, raw, tmp, store, work, conn, folder }
}

#[test]
fn download_brings_every_message_once_with_flags_keywords_and_links_then_only_new_mail() {
    if dovecot::should_skip() {
        return;
    }
    let seeded: Vec<_> = (0..50).map(seed).collect();
    let Setup { server: _server, mut raw, tmp, store, work, mut conn, folder } =
        setup(&seeded.iter().map(|(f, b, _, _)| (*f, b.clone())).collect::<Vec<_>>());

    let first = download_folder(&mut conn, &store, &folder, work).unwrap();
    assert_eq!(first.messages, 50, "{first:?}");
    let got = downloaded(&store, work);
    assert_eq!(got.len(), 50);
    // UIDs are given in append order, so the n-th UID is the n-th message appended.
    for (n, ((uid, bytes, bits, kw), (_, want, want_bits, want_kw))) in got.iter().zip(&seeded).enumerate() {
        assert_eq!(lf(bytes), lf(want), "message {n} (UID {uid})");
        assert_eq!(*bits, *want_bits, "flags of message {n}");
        let mut want_kw: Vec<String> = want_kw.iter().map(|s| s.to_string()).collect();
        want_kw.sort();
        assert_eq!(*kw, want_kw, "keywords of message {n}");
    }
    let uids: Vec<u64> = got.iter().map(|m| m.0).collect();
    assert!(uids.windows(2).all(|w| w[0] < w[1]), "{uids:?}");
    // The import's naming rule, duplicates made unique.
    {
        let ix = store.index();
        let names: Vec<String> = ix.children(work).unwrap().map(|(n, _)| n.to_string()).collect();
        assert!(names.contains(&"2026-12-03 test 8.eml".to_string()), "{names:?}");
        assert!(names.contains(&"2026-12-03 test 8 (2).eml".to_string()), "{names:?}");
    }
    let state = store.index().folder_remote(work).cloned().unwrap();
    assert_eq!(state.name, "Work");
    assert_eq!(state.cursor, *uids.last().unwrap());
    assert_eq!(state.uidnext, state.cursor + 1);
    assert!(state.uidvalidity > 0 && state.highestmodseq > 0, "{state:?}");
    assert_eq!(first.state, state);

    // Nothing new: nothing downloaded, state unchanged.
    let second = download_folder(&mut conn, &store, &folder, work).unwrap();
    assert_eq!(second.messages, 0, "{second:?}");
    assert_eq!(downloaded(&store, work).len(), 50);
    assert_eq!(store.index().folder_remote(work), Some(&state));

    // Three more: exactly those.
    let more: Vec<_> = (50..53).map(seed).collect();
    raw.multiappend("Work", &more.iter().map(|(f, b, _, _)| (*f, b.clone())).collect::<Vec<_>>());
    let third = download_folder(&mut conn, &store, &folder, work).unwrap();
    assert_eq!(third.messages, 3, "{third:?}");
    let got = downloaded(&store, work);
    assert_eq!(got.len(), 53);
    for ((_, bytes, bits, _), (_, want, want_bits, _)) in got[50..].iter().zip(&more) {
        assert_eq!(lf(bytes), lf(want));
        assert_eq!(bits, want_bits);
    }
    let state3 = store.index().folder_remote(work).cloned().unwrap();
    assert_eq!(state3.cursor, got[52].0);
    assert!(state3.highestmodseq > state.highestmodseq, "{state3:?} after {state:?}");

    // The state survives a reopen of the store.
    store.close().unwrap();
    drop(store);
    let store = Store::open(&tmp.path().join("store"), Options::default()).unwrap();
    assert_eq!(store.index().folder_remote(work), Some(&state3));
    assert_eq!(download_folder(&mut conn, &store, &folder, work).unwrap().messages, 0);
    conn.logout().unwrap();
}

#[test]
fn a_crash_after_a_batch_but_before_its_cursor_does_not_download_the_batch_again() {
    if dovecot::should_skip() {
        return;
    }
    let Setup { server: _server, raw: _raw, tmp: _tmp, store, work, mut conn, folder } =
        setup(&(0..5).map(|n| ("", dovecot::message(n))).collect::<Vec<_>>());
    assert_eq!(download_folder(&mut conn, &store, &folder, work).unwrap().messages, 5);
    // What a crash between the batch's frame and the folder state's leaves: the links
    // committed, the cursor still at its old place.
    let state = store.index().folder_remote(work).cloned().unwrap();
    store.set_folder_remote(work, Some(FolderRemote { cursor: 0, uidnext: 0, ..state.clone() })).unwrap();
    let again = download_folder(&mut conn, &store, &folder, work).unwrap();
    assert_eq!(again.messages, 0, "{again:?}");
    assert_eq!(store.index().messages().count(), 5);
    assert_eq!(store.index().folder_remote(work), Some(&state));
}

#[test]
fn a_changed_uidvalidity_is_a_clear_error_and_changes_nothing() {
    if dovecot::should_skip() {
        return;
    }
    let Setup { server: _server, mut raw, tmp: _tmp, store, work, mut conn, folder } =
        setup(&(0..3).map(|n| ("\\Seen", dovecot::message(n))).collect::<Vec<_>>());
    download_folder(&mut conn, &store, &folder, work).unwrap();
    let before = store.index().folder_remote(work).cloned().unwrap();

    // A folder deleted and created again under the same name gets a new UIDVALIDITY
    // (Dovecot keeps them unique per user), and new messages whose UIDs start over.
    raw.cmd("DELETE Work").unwrap();
    raw.cmd("CREATE Work").unwrap();
    raw.multiappend("Work", &(10..14).map(|n| ("", dovecot::message(n))).collect::<Vec<_>>());
    let now = conn.examine(&folder).unwrap().uid_validity.unwrap();
    assert_ne!(u64::from(now), before.uidvalidity, "the server must have a new UIDVALIDITY for this test");

    let err = download_folder(&mut conn, &store, &folder, work).unwrap_err();
    match &err {
        DownloadError::UidValidityChanged { folder, saved, server } => {
            assert_eq!((folder.as_str(), *saved, *server), ("Work", before.uidvalidity, u64::from(now)));
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("UIDVALIDITY") && text.contains("Work") && text.contains(&now.to_string()), "{text}");
    assert_eq!(store.index().folder_remote(work), Some(&before));
    assert_eq!(store.index().messages().count(), 3);
    assert_eq!(store.index().message_remotes().count(), 3);
}

#[test]
fn batches_respect_both_the_message_and_the_byte_limit() {
    if dovecot::should_skip() {
        return;
    }
    let seeded: Vec<_> = (0..50).map(seed).collect();
    let Setup { server: _server, raw: _raw, tmp: _tmp, store, work, mut conn, folder } =
        setup(&seeded.iter().map(|(f, b, _, _)| (*f, b.clone())).collect::<Vec<_>>());
    // Headers first, all 50 in one batch (headers go ten times the count a batch). Then the
    // bodies, smallest first, 7 a batch by count: the 49 small ones in 7 batches, and
    // message 7 (over 100 KB, the byte limit) alone at the end: 1 + 8 batches.
    let report = download_folder_in_batches(&mut conn, &store, &folder, work, 7, 100_000).unwrap();
    assert_eq!((report.messages, report.bodies, report.batches), (50, 50, 9), "{report:?}");
    let got = downloaded(&store, work);
    for ((_, bytes, _, _), (_, want, _, _)) in got.iter().zip(&seeded) {
        assert_eq!(lf(bytes), lf(want));
    }
    assert_eq!(store.index().folder_remote(work).unwrap().cursor, got[49].0);
    assert_eq!(download_folder_in_batches(&mut conn, &store, &folder, work, 7, 100_000).unwrap().messages, 0);
}

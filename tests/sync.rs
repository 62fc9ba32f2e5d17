//! `msgfs sync` end to end: the real command against a real Dovecot (tests/common/dovecot.rs)
//! started by each test on loopback. The server is seeded and inspected with a raw IMAP
//! session or our client; the store is opened after each run and inspected directly.

#[path = "common/dovecot.rs"]
#[allow(dead_code)]
mod dovecot;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use dovecot::Dovecot;
use msgfs::store::{flags, Options, Store};
use msgfs::sync::config::Tls;
use msgfs::sync::imap::{Connection, FetchWhat, Folder};

/// A Dovecot, an accounts.toml naming it, and a store directory.
struct Setup {
    server: Dovecot,
    config: PathBuf,
    store: PathBuf,
    _tmp: tempfile::TempDir,
}

fn setup_with(opts: dovecot::Options, extra: &str) -> Setup {
    let server = Dovecot::start_with(opts);
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let config = tmp.path().join("accounts.toml");
    std::fs::write(
        &config,
        format!(
            "[account.test]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nuser = \"{}\"\nstore = \"{}\"\n{extra}",
            server.port,
            dovecot::USER,
            store.display()
        ),
    )
    .unwrap();
    Setup { server, config, store, _tmp: tmp }
}

fn setup() -> Setup {
    setup_with(dovecot::Options::default(), "")
}

/// `msgfs sync --config CONFIG` with the test account's password, to run or spawn.
fn sync_command(config: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_msgfs"));
    c.arg("sync").arg("--config").arg(config).env("MSGFS_IMAP_PASSWORD", dovecot::PASS);
    c
}

impl Setup {
    /// `msgfs sync --config C ARGS...`, its output.
    fn sync(&self, args: &[&str]) -> Output {
        sync_command(&self.config).args(args).output().unwrap()
    }

    /// Another store `name` beside the first, and an accounts file naming it.
    fn other_store(&self, name: &str) -> (PathBuf, PathBuf) {
        let store = self._tmp.path().join(name);
        let config = self._tmp.path().join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&self.config)
            .unwrap()
            .replace(&self.store.display().to_string(), &store.display().to_string());
        std::fs::write(&config, text).unwrap();
        (store, config)
    }

    /// A sync that must succeed (exit 0); its stdout.
    fn sync_ok(&self, args: &[&str]) -> String {
        let out = self.sync(args);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "msgfs sync {args:?}:\n{text}");
        text
    }

    fn conn(&self) -> Connection {
        self.server.login(Tls::None)
    }

    fn store(&self) -> Store {
        Store::open(&self.store, Options::default()).unwrap()
    }
}

fn folder(conn: &mut Connection, name: &str) -> Folder {
    conn.list().unwrap().into_iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no server folder {name}"))
}

fn lf(b: &[u8]) -> Vec<u8> {
    msgfs::sync::engine::lf(b)
}

/// The server folder's messages: Message-ID -> (flags sorted, body with LF line ends).
fn server_msgs(conn: &mut Connection, name: &str) -> BTreeMap<String, (Vec<String>, Vec<u8>)> {
    let f = folder(conn, name);
    let sel = conn.examine(&f).unwrap();
    let mut out = BTreeMap::new();
    if sel.exists == 0 {
        return out;
    }
    for m in conn.uid_fetch("1:*", FetchWhat::Full).unwrap() {
        let body = m.body.unwrap();
        let mid = msgfs::mime::parse_props(&body).message_id.unwrap_or_default();
        let mut fl: Vec<String> = m.flags.into_iter().filter(|f| f != "\\Recent").collect();
        fl.sort();
        assert!(out.insert(mid.clone(), (fl, lf(&body))).is_none(), "two messages {mid} on the server in {name}");
    }
    out
}

/// The store folder's messages: Message-ID -> (flag letters, content with LF line ends).
fn store_msgs(store: &Store, path: &str) -> BTreeMap<String, (String, Vec<u8>)> {
    let id = store.folder_by_path(path).unwrap_or_else(|e| panic!("store folder {path}: {e}"));
    let ix = store.index();
    let mut out = BTreeMap::new();
    for (_, c) in ix.children(id).unwrap() {
        let Some(mid_) = c.message_id() else { continue };
        let m = ix.message(mid_).unwrap();
        assert_eq!(m.flags() & flags::HEADER_ONLY, 0, "a header-only message is left in {path}");
        let content = store.read_message(mid_).unwrap();
        let mid = msgfs::mime::parse_props(&content).message_id.unwrap_or_default();
        assert!(
            out.insert(mid.clone(), (flags::to_letters(m.flags()), lf(&content))).is_none(),
            "two messages {mid} in {path}"
        );
    }
    out
}

/// IMAP flags as store letters.
fn letters(imap: &[String]) -> String {
    flags::to_letters(msgfs::sync::download::map_flags(imap).0)
}

fn seed(server: &Dovecot, mailbox: &str, msgs: &[(&str, Vec<u8>)]) {
    let mut raw = server.raw();
    if mailbox != "INBOX" {
        raw.cmd(&format!("CREATE \"{mailbox}\"")).unwrap();
    }
    raw.multiappend(mailbox, msgs);
}

/// Both sides hold the same messages with the same flags, folder by folder.
fn assert_same(s: &Setup, folders: &[(&str, &str)]) {
    let mut conn = s.conn();
    let store = s.store();
    for (server_name, path) in folders {
        let on_server = server_msgs(&mut conn, server_name);
        let local = store_msgs(&store, path);
        let a: Vec<&String> = on_server.keys().collect();
        let b: Vec<&String> = local.keys().collect();
        assert_eq!(a, b, "messages of {server_name} / {path}");
        for (mid, (fl, body)) in &on_server {
            let (l, content) = &local[mid];
            assert_eq!(&letters(fl), l, "flags of {mid} in {path}");
            assert_eq!(body, content, "content of {mid} in {path}");
        }
    }
    store.close().unwrap();
}

fn msg(n: usize) -> Vec<u8> {
    dovecot::message(n)
}

#[test]
fn a_first_sync_brings_the_mailbox_and_a_second_changes_nothing() {
    if dovecot::should_skip() {
        return;
    }
    let s = setup();
    seed(&s.server, "INBOX", &(0..20).map(|n| (if n % 2 == 0 { "\\Seen" } else { "" }, msg(n))).collect::<Vec<_>>());
    seed(&s.server, "Work.2026", &(20..25).map(|n| ("\\Flagged", msg(n))).collect::<Vec<_>>());
    let out = s.sync_ok(&[]);
    assert!(out.contains("Inbox: server +0") && out.contains("local +20"), "{out}");
    assert_same(&s, &[("INBOX", "Inbox"), ("Work.2026", "Work/2026")]);
    // The default folders the server lacks were created there.
    let mut conn = s.conn();
    let names: Vec<String> = conn.list().unwrap().into_iter().map(|f| f.name).collect();
    for n in ["Drafts", "Sent Items", "Deleted Items"] {
        assert!(names.contains(&n.to_string()), "{names:?}");
    }
    // `Work` only holds `Work.2026` together on the server: not made a mailbox of its own.
    let work = conn.list().unwrap().into_iter().find(|f| f.name == "Work").unwrap();
    assert!(!work.selectable(), "{work:?}");
    let again = s.sync_ok(&[]);
    assert!(again.contains("server +0 *0 -0 >0  local +0 *0 -0 >0"), "{again}");
    assert_same(&s, &[("INBOX", "Inbox"), ("Work.2026", "Work/2026")]);
}

#[test]
fn local_changes_go_up_and_server_changes_come_down_flags_merged_three_ways() {
    if dovecot::should_skip() {
        return;
    }
    two_way(setup());
}

/// As Gmail: CONDSTORE (changed flags by MODSEQ) but no QRESYNC (no VANISHED).
#[test]
fn the_same_with_a_server_that_has_condstore_but_not_qresync() {
    if dovecot::should_skip() {
        return;
    }
    let opts = dovecot::Options {
        capability: Some(
            "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE NAMESPACE UIDPLUS MOVE CONDSTORE".into(),
        ),
        ..Default::default()
    };
    two_way(setup_with(opts, ""));
}

fn two_way(s: Setup) {
    seed(&s.server, "INBOX", &(0..10).map(|n| ("", msg(n))).collect::<Vec<_>>());
    s.sync_ok(&[]);
    // Local: a new message, message 1 read and flagged, message 2 deleted.
    {
        let store = s.store();
        let inbox = store.folder_by_path("Inbox").unwrap();
        let by_mid = |store: &Store, n: usize| {
            let want = format!("<{n}@msgfs.test>");
            let ids: Vec<u64> = store.index().children(inbox).unwrap().filter_map(|(_, c)| c.message_id()).collect();
            ids.into_iter()
                .find(|id| {
                    msgfs::mime::parse_props(&store.read_message(*id).unwrap()).message_id.as_deref() == Some(&want)
                })
                .unwrap()
        };
        let (staged, crc) = store.stage_content(&msg(100)).unwrap();
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        store
            .import_messages(vec![msgfs::store::NewMessage {
                folder: inbox,
                name: "new.eml".into(),
                staged,
                size: msg(100).len() as u64,
                crc,
                attrs: msgfs::store::Attrs { mode: libc::S_IFREG | 0o600, uid, gid, mtime: 0 },
                flags: flags::SEEN,
            }])
            .unwrap();
        let one = by_mid(&store, 1);
        let change = msgfs::store::AttrChange { flags: Some(flags::SEEN | flags::FLAGGED), ..Default::default() };
        store.set_message_attrs(one, change).unwrap();
        // Message 3: locally \Answered, and on the server \Seen: both stay.
        let three = by_mid(&store, 3);
        let change = msgfs::store::AttrChange { flags: Some(flags::ANSWERED), ..Default::default() };
        store.set_message_attrs(three, change).unwrap();
        store.delete_message(by_mid(&store, 2)).unwrap();
        store.close().unwrap();
    }
    // Server: message 3 read, message 4 expunged, a new message 200.
    let mut raw = s.server.raw();
    raw.cmd("SELECT INBOX").unwrap();
    raw.cmd("UID STORE 4 +FLAGS (\\Seen)").unwrap();
    raw.cmd("UID STORE 5 +FLAGS (\\Deleted)").unwrap();
    raw.cmd("UID EXPUNGE 5").unwrap();
    raw.cmd("LOGOUT").ok();
    seed(&s.server, "INBOX", &[("\\Flagged", msg(200))]);
    let out = s.sync_ok(&[]);
    assert!(out.contains("Inbox: server +1 *2 -1 >0  local +1 *1 -1 >0"), "{out}");
    let mut conn = s.conn();
    let m = server_msgs(&mut conn, "INBOX");
    assert_eq!(m.len(), 10, "10 - 1 deleted here - 1 there + 1 new here + 1 new there");
    assert!(!m.contains_key("<2@msgfs.test>") && !m.contains_key("<4@msgfs.test>"));
    assert_eq!(letters(&m["<1@msgfs.test>"].0), "FS");
    assert_eq!(letters(&m["<3@msgfs.test>"].0), "RS");
    assert_eq!(letters(&m["<100@msgfs.test>"].0), "S");
    assert_same(&s, &[("INBOX", "Inbox")]);
    let again = s.sync_ok(&[]);
    assert!(again.contains("0 failed: server +0 *0 -0 >0  local +0 *0 -0 >0"), "{again}");
    let store = s.store();
    assert_eq!(store.index().tombstones().count(), 0, "the deleted folder's tombstones are cleared");
    store.close().unwrap();
}

// ---- helpers for local changes ----

fn add_local(store: &Store, path: &str, name: &str, content: &[u8], bits: u8) -> u64 {
    let folder = store.folder_by_path(path).unwrap();
    let (staged, crc) = store.stage_content(content).unwrap();
    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    store
        .import_messages(vec![msgfs::store::NewMessage {
            folder,
            name: name.into(),
            staged,
            size: content.len() as u64,
            crc,
            attrs: msgfs::store::Attrs { mode: libc::S_IFREG | 0o600, uid, gid, mtime: 0 },
            flags: bits,
        }])
        .unwrap()[0]
}

/// The message of store folder `path` whose Message-ID is `<n@msgfs.test>`.
fn local_id(store: &Store, path: &str, n: usize) -> Option<u64> {
    let folder = store.folder_by_path(path).unwrap();
    let want = format!("<{n}@msgfs.test>");
    let ids: Vec<u64> = store.index().children(folder).unwrap().filter_map(|(_, c)| c.message_id()).collect();
    ids.into_iter().find(|id| {
        store.read_message(*id).is_ok_and(|c| msgfs::mime::parse_props(&c).message_id.as_deref() == Some(&want))
    })
}

fn set_local_flags(store: &Store, id: u64, bits: u8) {
    let change = msgfs::store::AttrChange { flags: Some(bits), ..Default::default() };
    store.set_message_attrs(id, change).unwrap();
}

/// The UID of message `<n@msgfs.test>` in the server folder selected by `raw`.
fn server_uid(raw: &mut dovecot::RawSession, n: usize) -> Option<u32> {
    let out = raw.cmd(&format!("UID SEARCH HEADER Message-ID \"<{n}@msgfs.test>\"")).unwrap();
    out.lines().find_map(|l| l.strip_prefix("* SEARCH")).and_then(|r| r.split_whitespace().next()?.parse().ok())
}

#[test]
fn a_message_edited_here_and_deleted_there_is_uploaded_again_and_one_deleted_here_but_changed_there_comes_back() {
    if dovecot::should_skip() {
        return;
    }
    let s = setup();
    seed(&s.server, "INBOX", &(0..4).map(|n| ("", msg(n))).collect::<Vec<_>>());
    s.sync_ok(&[]);
    {
        let store = s.store();
        // Message 0 edited here (a new version), message 1 deleted here.
        let zero = local_id(&store, "Inbox", 0).unwrap();
        let mut tx = store.begin(zero).unwrap();
        let edited = b"From: a@example.org\r\nSubject: edited\r\nMessage-ID: <0@msgfs.test>\r\n\r\nnew text\r\n";
        tx.set_len(0).unwrap();
        tx.write_at(edited, 0).unwrap();
        tx.save(msgfs::store::SaveFlags::default()).unwrap();
        store.delete_message(local_id(&store, "Inbox", 1).unwrap()).unwrap();
        store.close().unwrap();
    }
    // There: message 0 deleted, message 1 flagged.
    let mut raw = s.server.raw();
    raw.cmd("SELECT INBOX").unwrap();
    let (u0, u1) = (server_uid(&mut raw, 0).unwrap(), server_uid(&mut raw, 1).unwrap());
    raw.cmd(&format!("UID STORE {u0} +FLAGS (\\Deleted)")).unwrap();
    raw.cmd(&format!("UID EXPUNGE {u0}")).unwrap();
    raw.cmd(&format!("UID STORE {u1} +FLAGS (\\Flagged)")).unwrap();
    let out = s.sync_ok(&[]);
    let again = s.sync_ok(&[]);
    let mut conn = s.conn();
    let m = server_msgs(&mut conn, "INBOX");
    assert_eq!(m.len(), 4, "{m:?}\n{out}\n{again}");
    assert!(lf(&m["<0@msgfs.test>"].1).ends_with(b"new text\n"), "the edit survives the server's delete");
    assert_eq!(letters(&m["<1@msgfs.test>"].0), "F", "the server's change survives the local delete");
    assert_same(&s, &[("INBOX", "Inbox")]);
}

#[test]
fn a_deletion_cut_off_between_its_store_and_its_expunge_is_finished_and_does_not_come_back() {
    if dovecot::should_skip() {
        return;
    }
    let s = setup();
    seed(&s.server, "INBOX", &(0..4).map(|n| ("", msg(n))).collect::<Vec<_>>());
    s.sync_ok(&[]);
    {
        let store = s.store();
        store.delete_message(local_id(&store, "Inbox", 1).unwrap()).unwrap();
        store.delete_message(local_id(&store, "Inbox", 2).unwrap()).unwrap();
        store.close().unwrap();
    }
    // What a run killed inside its removal leaves (UID STORE +FLAGS (\Deleted) done, UID
    // EXPUNGE not), for message 1; message 2 is \Deleted and flagged there, a change of
    // the server's own that still brings it back.
    let mut raw = s.server.raw();
    raw.cmd("SELECT INBOX").unwrap();
    let (u1, u2) = (server_uid(&mut raw, 1).unwrap(), server_uid(&mut raw, 2).unwrap());
    raw.cmd(&format!("UID STORE {u1} +FLAGS (\\Deleted)")).unwrap();
    raw.cmd(&format!("UID STORE {u2} +FLAGS (\\Deleted \\Flagged)")).unwrap();
    raw.cmd("LOGOUT").ok();
    let out = s.sync_ok(&[]);
    let mut conn = s.conn();
    let m = server_msgs(&mut conn, "INBOX");
    assert!(!m.contains_key("<1@msgfs.test>"), "expunged: {:?}\n{out}", m.keys());
    assert_eq!(letters(&m["<2@msgfs.test>"].0), "FT", "{out}");
    assert_same(&s, &[("INBOX", "Inbox")]);
    let store = s.store();
    assert!(local_id(&store, "Inbox", 1).is_none(), "{out}");
    assert_eq!(store.index().tombstones().count(), 0, "{out}");
    store.close().unwrap();
}

/// The upload intent a run records for message `id` of store folder `path` before sending
/// it, looking for it from UID `uidnext`.
fn intent_for(store: &Store, path: &str, id: u64, uidnext: u64) -> msgfs::store::UploadIntent {
    let content = store.read_message(id).unwrap();
    let (version, bits) = {
        let ix = store.index();
        let m = ix.message(id).unwrap();
        (m.version(), m.flags())
    };
    msgfs::store::UploadIntent {
        folder: store.folder_by_path(path).unwrap(),
        message: id,
        version,
        size: msgfs::sync::engine::crlf_len(&content),
        uidnext,
        flags: bits & flags::SEEN,
        crc: crc32c::crc32c(&lf(&content)),
    }
}

#[test]
fn copies_of_an_upload_that_the_server_stored_late_are_removed_there_not_downloaded() {
    if dovecot::should_skip() {
        return;
    }
    let s = setup();
    seed(&s.server, "INBOX", &(0..3).map(|n| ("", msg(n))).collect::<Vec<_>>());
    s.sync_ok(&[]);
    {
        let store = s.store();
        add_local(&store, "Inbox", "ten.eml", &msg(10), flags::SEEN);
        store.close().unwrap();
    }
    s.sync_ok(&[]);
    let mut raw = s.server.raw();
    raw.cmd("SELECT INBOX").unwrap();
    let uidnext = u64::from(server_uid(&mut raw, 10).unwrap()) + 1;
    {
        // Message 10 was sent again and linked because a killed run's APPEND of it was not
        // there yet when looked for: the earlier intent stays as a watch. Message 11 is in
        // a killed run's batch, not linked.
        let store = s.store();
        let ten = local_id(&store, "Inbox", 10).unwrap();
        let eleven = add_local(&store, "Inbox", "eleven.eml", &msg(11), flags::SEEN);
        let watch = intent_for(&store, "Inbox", ten, uidnext);
        let intent = intent_for(&store, "Inbox", eleven, uidnext);
        store.record_upload_intents(&[watch, intent]).unwrap();
        store.close().unwrap();
    }
    // Then the server stores the killed run's APPEND: a late copy of 10, and 11 twice (the
    // killed run's copy and that of another killed run that sent it again).
    raw.multiappend("INBOX", &[("\\Seen", msg(10)), ("\\Seen", msg(11)), ("\\Seen", msg(11))]);
    raw.cmd("LOGOUT").ok();
    let out = s.sync_ok(&[]);
    // One copy of each, on both sides (server_msgs and store_msgs assert that).
    assert_same(&s, &[("INBOX", "Inbox")]);
    let mut conn = s.conn();
    let m = server_msgs(&mut conn, "INBOX");
    assert!(m.contains_key("<10@msgfs.test>") && m.contains_key("<11@msgfs.test>"), "{:?}\n{out}", m.keys());
    let store = s.store();
    assert_eq!(store.index().upload_intents().count(), 0, "{out}");
    store.close().unwrap();
}

#[test]
fn more_deletions_than_max_deletes_are_refused_on_either_side_unless_allowed() {
    if dovecot::should_skip() {
        return;
    }
    let s = setup_with(dovecot::Options::default(), "max_deletes = 3\n");
    seed(&s.server, "INBOX", &(0..10).map(|n| ("", msg(n))).collect::<Vec<_>>());
    seed(&s.server, "Other", &(10..20).map(|n| ("", msg(n))).collect::<Vec<_>>());
    s.sync_ok(&[]);
    {
        let store = s.store();
        for n in 0..5 {
            store.delete_message(local_id(&store, "Inbox", n).unwrap()).unwrap();
        }
        store.close().unwrap();
    }
    let mut raw = s.server.raw();
    raw.cmd("SELECT Other").unwrap();
    raw.cmd("STORE 1:5 +FLAGS (\\Deleted)").unwrap();
    raw.cmd("EXPUNGE").unwrap();
    let out = s.sync(&[]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("Inbox: refused to delete 5 of 10 messages on the server"), "{text}");
    assert!(text.contains("Other: refused to delete 5 messages locally"), "{text}");
    let mut conn = s.conn();
    assert_eq!(server_msgs(&mut conn, "INBOX").len(), 10, "nothing deleted on the server");
    {
        let store = s.store();
        assert_eq!(store_msgs(&store, "Other").len(), 10, "nothing deleted locally");
        store.close().unwrap();
    }
    let status = s.sync_ok(&["--status"]);
    assert!(status.contains("Inbox (INBOX): UPLOAD_MESSAGE_DEL FAILED: refused to delete 5"), "{status}");
    s.sync_ok(&["--allow-mass-delete"]);
    assert_eq!(server_msgs(&mut conn, "INBOX").len(), 5);
    assert_same(&s, &[("INBOX", "Inbox"), ("Other", "Other")]);
}

#[test]
fn a_uidvalidity_reset_rebinds_by_message_id_without_duplicates_and_keeps_what_the_server_lost() {
    if dovecot::should_skip() {
        return;
    }
    let s = setup();
    seed(&s.server, "Work", &(0..6).map(|n| ("\\Seen", msg(n))).collect::<Vec<_>>());
    s.sync_ok(&[]);
    // The folder is made again on the server: new UIDVALIDITY, messages 0-3 back with new
    // UIDs, 4 and 5 lost, 50 new.
    let mut raw = s.server.raw();
    raw.cmd("DELETE Work").unwrap();
    seed(&s.server, "Work", &[0, 1, 2, 3, 50].iter().map(|n| ("\\Seen", msg(*n))).collect::<Vec<_>>());
    let out = s.sync_ok(&[]);
    assert!(out.contains("kept"), "{out}");
    let mut conn = s.conn();
    let m = server_msgs(&mut conn, "Work");
    assert_eq!(m.len(), 7, "0-5 and 50 once each: {:?}\n{out}", m.keys().collect::<Vec<_>>());
    assert_same(&s, &[("Work", "Work")]);
    let again = s.sync_ok(&[]);
    assert!(again.contains("0 failed: server +0 *0 -0 >0  local +0 *0 -0 >0"), "{again}");
    let store = s.store();
    assert_eq!(store.index().tombstones().count(), 0, "no tombstone is left behind");
    store.close().unwrap();
}

#[test]
fn a_server_without_qresync_condstore_uidplus_or_move_still_syncs_both_ways() {
    if dovecot::should_skip() {
        return;
    }
    let opts = dovecot::Options {
        capability: Some("IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE NAMESPACE".into()),
        ..Default::default()
    };
    let s = setup_with(opts, "");
    seed(&s.server, "INBOX", &(0..8).map(|n| ("", msg(n))).collect::<Vec<_>>());
    seed(&s.server, "Archive", &[("", msg(30))]);
    s.sync_ok(&[]);
    {
        let store = s.store();
        add_local(&store, "Inbox", "new.eml", &msg(100), flags::SEEN);
        set_local_flags(&store, local_id(&store, "Inbox", 1).unwrap(), flags::FLAGGED);
        store.delete_message(local_id(&store, "Inbox", 2).unwrap()).unwrap();
        let three = local_id(&store, "Inbox", 3).unwrap();
        let archive = store.folder_by_path("Archive").unwrap();
        store.move_message(three, archive, "moved.eml").unwrap();
        store.close().unwrap();
    }
    let mut raw = s.server.raw();
    raw.cmd("SELECT INBOX").unwrap();
    let u4 = server_uid(&mut raw, 4).unwrap();
    raw.cmd(&format!("UID STORE {u4} +FLAGS (\\Answered)")).unwrap();
    let out = s.sync(&[]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // Without UIDPLUS the removed messages stay marked \Deleted: said, and exit 1.
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("no UIDPLUS"), "{text}");
    // The marked ones are \Deleted on the server, which the store shows as T: expunge
    // them as another client would, then both sides agree.
    raw.cmd("EXPUNGE").unwrap();
    raw.cmd("SELECT Archive").unwrap();
    raw.cmd("EXPUNGE").ok();
    s.sync_ok(&[]);
    let mut conn = s.conn();
    let inbox = server_msgs(&mut conn, "INBOX");
    assert!(!inbox.contains_key("<2@msgfs.test>") && !inbox.contains_key("<3@msgfs.test>"), "{:?}", inbox.keys());
    assert_eq!(letters(&inbox["<1@msgfs.test>"].0), "F");
    assert_eq!(letters(&inbox["<100@msgfs.test>"].0), "S");
    assert!(server_msgs(&mut conn, "Archive").contains_key("<3@msgfs.test>"));
    assert_same(&s, &[("INBOX", "Inbox"), ("Archive", "Archive")]);
}

#[test]
fn a_local_move_is_a_uid_move_and_a_dry_run_changes_nothing() {
    if dovecot::should_skip() {
        return;
    }
    let s = setup();
    seed(&s.server, "INBOX", &(0..5).map(|n| ("", msg(n))).collect::<Vec<_>>());
    seed(&s.server, "Archive", &[("", msg(30))]);
    s.sync_ok(&[]);
    {
        let store = s.store();
        let archive = store.folder_by_path("Archive").unwrap();
        store.move_message(local_id(&store, "Inbox", 0).unwrap(), archive, "zero.eml").unwrap();
        add_local(&store, "Inbox", "new.eml", &msg(101), 0);
        store.close().unwrap();
    }
    let dry = s.sync_ok(&["--dry-run"]);
    assert!(dry.contains("Inbox: server +1 *0 -0 >1"), "{dry}");
    let mut conn = s.conn();
    assert_eq!(server_msgs(&mut conn, "INBOX").len(), 5, "the dry run sent nothing");
    let out = s.sync_ok(&[]);
    assert!(out.contains("Inbox: server +1 *0 -0 >1"), "{out}");
    assert!(server_msgs(&mut conn, "Archive").contains_key("<0@msgfs.test>"));
    assert!(!server_msgs(&mut conn, "INBOX").contains_key("<0@msgfs.test>"));
    assert_same(&s, &[("INBOX", "Inbox"), ("Archive", "Archive")]);
    let again = s.sync_ok(&[]);
    assert!(again.contains("0 failed: server +0 *0 -0 >0  local +0 *0 -0 >0"), "{again}");
    let store = s.store();
    assert_eq!(store.index().tombstones().count(), 0, "the deleted folder's tombstones are cleared");
    store.close().unwrap();
}

/// A small deterministic generator (xorshift), seeded per run and printed, so a failing
/// run can be replayed with MSGFS_TEST_SEED.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("MSGFS_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
        eprintln!("MSGFS_TEST_SEED={seed}");
        Rng(seed)
    }
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

/// Copies a test's log out of its temporary directory when the test fails (any assertion,
/// so a duplicate found by assert_same too), where it is needed to tell what happened.
struct KeepOnPanic {
    from: std::path::PathBuf,
    to: String,
}

impl Drop for KeepOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            match std::fs::copy(&self.from, &self.to) {
                Ok(_) => eprintln!("the runs' log is kept in {}", self.to),
                Err(e) => eprintln!("could not keep the runs' log in {}: {e}", self.to),
            }
        }
    }
}

/// A bigger message, so that a run takes long enough to be killed in every phase.
fn big_msg(n: usize) -> Vec<u8> {
    let mut m = msg(n);
    let pad = "x".repeat(70) + "\r\n";
    for _ in 0..(n % 7) * 40 {
        m.extend_from_slice(pad.as_bytes());
    }
    m
}

#[test]
fn sigkill_at_random_points_twenty_times_then_both_sides_agree_with_no_duplicates_and_nothing_lost() {
    if dovecot::should_skip() {
        return;
    }
    let s = setup_with(dovecot::Options::default(), "max_deletes = \"100%\"\n");
    let mut rng = Rng::new();
    let log = s._tmp.path().join("runs.log");
    // Declared after `s`, so dropped (and the log copied) before its directory goes.
    let _keep = KeepOnPanic { from: log.clone(), to: format!("/tmp/vanished-kill-{}.log", rng.0) };
    // The messages that must exist at the end (by number), with the flags they must have.
    let mut want: BTreeMap<usize, u8> = BTreeMap::new();
    let mut next = 0usize;
    let initial: Vec<(&str, Vec<u8>)> = (0..400).map(|n| ("", big_msg(n))).collect();
    seed(&s.server, "INBOX", &initial);
    want.extend((0..400).map(|n| (n, 0u8)));
    next += 400;
    s.sync_ok(&[]);
    let mut kills = 0;
    let mut unchecked = std::collections::HashSet::new();
    let mut drafted = std::collections::HashSet::new();
    for round in 0..20 {
        // Changes on both sides between runs, never to the same message in one round.
        let mut touched = std::collections::HashSet::new();
        // Messages sent by a killed run that did not live to link them (an upload intent,
        // no link): if the server deletes one before the next run, that run cannot tell
        // the deletion from an APPEND that never arrived, and sends it again (nothing is
        // lost). Their outcome is not checked.
        let mut in_doubt = std::collections::HashSet::new();
        // This round's changes, written to the log ahead of its run's output.
        let mut noted: Vec<String> = Vec::new();
        {
            let store = s.store();
            {
                let ix = store.index();
                for i in ix.upload_intents() {
                    if ix.message_remote(i.message).is_none() {
                        if let Ok(c) = store.read_message(i.message) {
                            let mid = msgfs::mime::parse_props(&c).message_id.unwrap_or_default();
                            if let Some(n) =
                                mid.trim_start_matches('<').split('@').next().and_then(|n| n.parse::<usize>().ok())
                            {
                                in_doubt.insert(n);
                            }
                        }
                    }
                }
            }
            for _ in 0..30 {
                add_local(&store, "Inbox", &format!("local {next}.eml"), &big_msg(next), flags::SEEN);
                want.insert(next, flags::SEEN);
                touched.insert(next);
                next += 1;
            }
            for _ in 0..5 {
                let n = *want.keys().nth(rng.below(want.len() as u64) as usize).unwrap();
                if !touched.insert(n) {
                    continue;
                }
                let Some(id) = local_id(&store, "Inbox", n) else { continue };
                if rng.below(3) == 0 {
                    // Deleted here while a \Draft set there has not come down yet: the
                    // server changed it since it was synced, so it comes back (by design);
                    // whether a killed run got that far decides, so it is not checked.
                    let lagging =
                        drafted.contains(&n) && store.index().message(id).unwrap().flags() & flags::DRAFT == 0;
                    store.delete_message(id).unwrap();
                    noted.push(format!("local delete {n}"));
                    want.remove(&n);
                    if lagging {
                        unchecked.insert(n);
                    }
                } else {
                    let bits = want[&n] ^ flags::FLAGGED;
                    let cur = store.index().message(id).unwrap().flags();
                    set_local_flags(&store, id, (cur & !flags::FLAGGED) | (bits & flags::FLAGGED));
                    noted.push(format!("local flags {n} {}", flags::to_letters(bits)));
                    want.insert(n, bits);
                }
            }
            store.close().unwrap();
        }
        {
            let mut raw = s.server.raw();
            let fresh: Vec<(&str, Vec<u8>)> = (next..next + 40).map(|n| ("\\Answered", big_msg(n))).collect();
            raw.multiappend("INBOX", &fresh);
            want.extend((next..next + 40).map(|n| (n, flags::ANSWERED)));
            next += 40;
            raw.cmd("SELECT INBOX").unwrap();
            for _ in 0..5 {
                let n = *want.keys().nth(rng.below(want.len() as u64) as usize).unwrap();
                if !touched.insert(n) {
                    continue;
                }
                let Some(uid) = server_uid(&mut raw, n) else { continue };
                if rng.below(3) == 0 {
                    raw.cmd(&format!("UID STORE {uid} +FLAGS (\\Deleted)")).unwrap();
                    raw.cmd(&format!("UID EXPUNGE {uid}")).unwrap();
                    noted.push(format!("server expunge {n} (UID {uid})"));
                    want.remove(&n);
                    if in_doubt.contains(&n) {
                        unchecked.insert(n);
                    }
                } else {
                    raw.cmd(&format!("UID STORE {uid} +FLAGS (\\Draft)")).unwrap();
                    noted.push(format!("server draft {n} (UID {uid})"));
                    *want.get_mut(&n).unwrap() |= flags::DRAFT;
                    drafted.insert(n);
                }
            }
        }
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let line = format!("---- round {round} changes: {}; in doubt: {in_doubt:?}\n", noted.join(", "));
        std::io::Write::write_all(&mut f, line.as_bytes()).unwrap();
        // A run, killed after a random while (some finish first).
        let mut child = sync_command(&s.config)
            .env("RUST_LOG", "msgfs=debug")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.below(160)));
        if child.try_wait().unwrap().is_none() {
            kills += 1;
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        eprintln!("round {round}: {status}");
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut f, format!("---- round {round}: {status}\n").as_bytes()).unwrap();
    }
    eprintln!("{kills} of 20 runs killed mid-way");
    assert!(kills >= 10, "most runs must be killed mid-way for this test to mean anything ({kills})");
    let logged_run = |what: &str| {
        let out = sync_command(&s.config).env("RUST_LOG", "msgfs=debug").output().unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut f, format!("---- {what}\n").as_bytes()).unwrap();
        std::io::Write::write_all(&mut f, &out.stderr).unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(out.status.code(), Some(0), "{text}");
        text
    };
    logged_run("resume");
    let last = logged_run("last");
    assert!(last.contains("0 failed: server +0 *0 -0 >0  local +0 *0 -0 >0"), "{last}");
    assert_same(&s, &[("INBOX", "Inbox")]);
    let store = s.store();
    let local = store_msgs(&store, "Inbox");
    store.close().unwrap();
    let got: BTreeMap<usize, String> = local
        .iter()
        .map(|(mid, (l, _))| (mid.trim_start_matches('<').split('@').next().unwrap().parse().unwrap(), l.clone()))
        .filter(|(n, _)| !unchecked.contains(n))
        .collect();
    let expected: BTreeMap<usize, String> =
        want.iter().filter(|(n, _)| !unchecked.contains(*n)).map(|(n, b)| (*n, flags::to_letters(*b))).collect();
    eprintln!("{} messages checked, {} in doubt left out", expected.len(), unchecked.len());
    let extra: Vec<_> = got.keys().filter(|n| !expected.contains_key(n)).collect();
    let lost: Vec<_> = expected.keys().filter(|n| !got.contains_key(n)).collect();
    assert!(extra.is_empty() && lost.is_empty(), "came back: {extra:?}; lost: {lost:?}");
    let wrong: Vec<_> = got.iter().filter(|(n, l)| expected[n] != **l).map(|(n, l)| (n, l, &expected[n])).collect();
    assert!(wrong.is_empty(), "flags (message, got, want): {wrong:?}");
    let check = Command::new(env!("CARGO_BIN_EXE_msgfs")).arg("check").arg(&s.store).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
}

/// Every message of a store: (folder path, flag letters, content with LF line ends), sorted.
/// Every message of a store: (folder path, flag letters, content as stored), sorted.
fn all_messages(store: &Store) -> Vec<(String, String, Vec<u8>)> {
    let listed: Vec<(u64, String, String)> = {
        let ix = store.index();
        ix.messages()
            .map(|(id, m)| (id, ix.folder_path(m.folder()), flags::to_letters(m.flags() & msgfs::sync::engine::SYNCED)))
            .collect()
    };
    let mut out: Vec<(String, String, Vec<u8>)> =
        listed.into_iter().map(|(id, f, l)| (f, l, store.read_message(id).unwrap())).collect();
    out.sort();
    out
}

#[test]
fn the_sample_maildir_goes_up_through_msgfs_and_down_into_a_second_store_unchanged() {
    if dovecot::should_skip() {
        return;
    }
    let Some(data) = msgfs::testdata::path("") else { return };
    let corpus: Vec<PathBuf> = ["maildir", "mbox", "eml"].iter().map(|d| data.join(d)).collect();
    let s = setup_with(dovecot::Options::default(), "max_deletes = \"100%\"\n");
    let import = Command::new(env!("CARGO_BIN_EXE_msgfs"))
        .args(["import", "--store"])
        .arg(&s.store)
        .args(&corpus)
        .output()
        .unwrap();
    eprintln!("import: {}", String::from_utf8_lossy(&import.stdout).lines().next().unwrap_or(""));
    let t0 = std::time::Instant::now();
    let up = s.sync(&["--upload-only"]);
    let up = format!("{}{}", String::from_utf8_lossy(&up.stdout), String::from_utf8_lossy(&up.stderr));
    eprintln!("up in {:?}: {up}", t0.elapsed());
    // A second store, filled from the server alone.
    let (second, config2) = s.other_store("second");
    let down = sync_command(&config2).output().unwrap();
    let down_text = String::from_utf8_lossy(&down.stdout);
    assert_eq!(down.status.code(), Some(0), "{down_text}");
    let a = Store::open(&s.store, Options::default()).unwrap();
    let b = Store::open(&second, Options::default()).unwrap();
    let (ma, mb) = (all_messages(&a), all_messages(&b));
    let ma: Vec<_> = ma;
    // Empty files the import took for messages: the server refuses them (each named in the
    // summary, and the run exits 1); everything else goes round.
    // A message with a NUL byte or a bare CR (which RFC 5322 does not allow) goes up whole
    // (NUL in BINARY's literal8), but the server does not send it back as it was: IMAP
    // forbids NUL in BODY[], and Dovecot sends 0x80 instead or re-encodes the part, and
    // rewrites bare CRs (msgfs(1), BUGS). Those are only counted; every other message comes
    // back byte for byte up to line ends.
    let malformed =
        |c: &[u8]| c.contains(&0) || c.iter().enumerate().any(|(i, &b)| b == b'\r' && c.get(i + 1) != Some(&b'\n'));
    let (odd, clean): (Vec<_>, Vec<_>) = ma.into_iter().filter(|m| !m.2.is_empty()).partition(|m| malformed(&m.2));
    let clean: Vec<_> = clean.into_iter().map(|(f, l, c)| (f, l, lf(&c))).collect();
    let mb: Vec<_> = mb.into_iter().map(|(f, l, c)| (f, l, lf(&c))).collect();
    assert!(clean.len() > 13000, "the sample mail has over 13,000 messages: {}", clean.len());
    assert!(!odd.is_empty(), "the sample mail has messages with NUL bytes and bare CRs");
    let mut rest: std::collections::BTreeMap<(String, String, Vec<u8>), usize> = Default::default();
    for m in mb {
        *rest.entry(m).or_default() += 1;
    }
    for m in &clean {
        match rest.get_mut(m) {
            Some(n) if *n > 0 => *n -= 1,
            _ => {
                let near: Vec<String> = rest
                    .keys()
                    .filter(|k| k.0 == m.0 && k.2.len().abs_diff(m.2.len()) < 64 && k.2.get(..40) == m.2.get(..40))
                    .map(|k| {
                        let at = k.2.iter().zip(&m.2).position(|(a, b)| a != b).unwrap_or(0);
                        format!(
                            "{} bytes, differs at {at}: {:?} / {:?}",
                            k.2.len(),
                            String::from_utf8_lossy(&m.2[at.saturating_sub(10)..(at + 30).min(m.2.len())]),
                            String::from_utf8_lossy(&k.2[at.saturating_sub(10)..(at + 30).min(k.2.len())])
                        )
                    })
                    .take(3)
                    .collect();
                panic!("a message of {} did not come back as it went ({} bytes); near: {near:?}", m.0, m.2.len())
            }
        }
    }
    let mut left: Vec<(String, String)> =
        rest.into_iter().flat_map(|((f, l, _), n)| std::iter::repeat_n((f, l), n)).collect();
    let mut want: Vec<(String, String)> = odd.iter().map(|m| (m.0.clone(), m.1.clone())).collect();
    left.sort();
    want.sort();
    assert_eq!(left, want, "the messages with NUL bytes or bare CRs, by folder and flags");
    // Nothing left to do on either side, and the first store agrees (but for the empty
    // files, which it offers again and the server refuses again).
    a.close().unwrap();
    b.close().unwrap();
    let again = s.sync(&[]);
    let again = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(again.contains("failed: server +0 *0 -0 >0  local +0 *0 -0 >0"), "{again}");
    assert!(
        again
            .lines()
            .filter(|l| l.contains("refused") || l.contains("FAILED"))
            .all(|l| l.contains("zero byte message")),
        "{again}"
    );
    // A third store that imported the same mail itself: its first sync finds all of it on
    // the server and copies nothing either way.
    let (third, config3) = s.other_store("third");
    let _ = Command::new(env!("CARGO_BIN_EXE_msgfs"))
        .args(["import", "--store"])
        .arg(&third)
        .args(&corpus)
        .output()
        .unwrap();
    let run3 = sync_command(&config3).output().unwrap();
    let text3 = String::from_utf8_lossy(&run3.stdout);
    // Only messages the server changed (NUL bytes, bare CRs) without a Message-ID that
    // names them alone can be missed there: those go up again and the server's copies come
    // down (both kept, nothing lost); every other message is linked.
    let total = text3.lines().last().unwrap_or("");
    let count = |what: &str| -> usize {
        let at = total.find(what).unwrap_or_else(|| panic!("{what} in {total}")) + what.len();
        total[at..].split(' ').next().unwrap().parse().unwrap()
    };
    let (up3, down3) = (count("server +"), count("local +"));
    assert!(up3 == down3 && up3 < odd.len(), "{up3} up, {down3} down, {} malformed: {total}", odd.len());
    assert!(total.contains("*0 -0 >0  local +"), "{total}");
    assert!(text3.contains("already on both sides"), "{text3}");
    let store = s.store();
    assert_eq!(store.index().tombstones().count(), 0, "the deleted folder's tombstones are cleared");
    store.close().unwrap();
}

#[test]
fn a_server_killed_mid_run_is_a_clear_error_and_the_next_run_resumes() {
    if dovecot::should_skip() {
        return;
    }
    let mut s = setup();
    // Enough that the run is still busy when the server goes away.
    let many: Vec<(&str, Vec<u8>)> = (0..3000).map(|n| ("", big_msg(n))).collect();
    seed(&s.server, "INBOX", &many);
    let mut child = sync_command(&s.config)
        .env("RUST_LOG", "msgfs=info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the headers are in, while the bodies come: the info line says when.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            if line.contains("Inbox: 3000 headers in") {
                let _ = tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the headers never came");
    std::thread::sleep(std::time::Duration::from_millis(20));
    s.server.stop();
    let out = child.wait_with_output().unwrap();
    let lines = reader.join().unwrap();
    let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("msgfs:")).collect();
    let all = lines.join("\n");
    assert_eq!(out.status.code(), Some(2), "stdout: {}\nstderr: {all}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(errors.len(), 1, "one error line: {all}");
    let err = errors[0];
    assert!(err.contains("closed the connection") && err.contains("the next run resumes"), "{err}");
    assert!(!all.contains("Inbox: 3000 bodies"), "killed before the bodies were all in: {all}");
    // The store holds header-only messages now; the next run completes them.
    {
        let store = s.store();
        let ix = store.index();
        let header_only = ix.messages().filter(|(_, m)| m.flags() & flags::HEADER_ONLY != 0).count();
        assert!(header_only > 0, "some bodies must still be missing");
        drop(ix);
        store.close().unwrap();
    }
    // The next run (with the server back) completes, and nothing is there twice.
    s.server.restart();
    s.sync_ok(&[]);
    assert_same(&s, &[("INBOX", "Inbox")]);
}

#[test]
fn a_folder_renamed_here_is_renamed_there_and_one_deleted_here_deletes_nothing_there() {
    if dovecot::should_skip() {
        return;
    }
    let s = setup();
    seed(&s.server, "Work", &(0..4).map(|n| ("", msg(n))).collect::<Vec<_>>());
    seed(&s.server, "Work.Old", &(4..6).map(|n| ("", msg(n))).collect::<Vec<_>>());
    seed(&s.server, "Trips", &(6..9).map(|n| ("\\Seen", msg(n))).collect::<Vec<_>>());
    s.sync_ok(&[]);
    {
        let store = s.store();
        // `mv Work Projects`, and `rm -r Trips`.
        let work = store.folder_by_path("Work").unwrap();
        store.move_folder(work, msgfs::store::ROOT, "Projects").unwrap();
        let trips = store.folder_by_path("Trips").unwrap();
        let ids: Vec<u64> = store.index().children(trips).unwrap().filter_map(|(_, c)| c.message_id()).collect();
        for id in ids {
            store.delete_message(id).unwrap();
        }
        store.delete_folder(trips).unwrap();
        store.close().unwrap();
    }
    let out = s.sync_ok(&[]);
    let mut conn = s.conn();
    let names: Vec<String> = conn.list().unwrap().into_iter().map(|f| f.name).collect();
    assert!(names.contains(&"Projects".to_string()) && names.contains(&"Projects.Old".to_string()), "{names:?}\n{out}");
    assert!(!names.contains(&"Work".to_string()), "{names:?}");
    // The folder deleted here is still there, whole, and comes back here.
    assert_eq!(server_msgs(&mut conn, "Trips").len(), 3);
    assert_same(&s, &[("Projects", "Projects"), ("Projects.Old", "Projects/Old"), ("Trips", "Trips")]);
    let again = s.sync_ok(&[]);
    assert!(again.contains("0 failed: server +0 *0 -0 >0  local +0 *0 -0 >0"), "{again}");
    let store = s.store();
    assert_eq!(store.index().tombstones().count(), 0, "the deleted folder's tombstones are cleared");
    store.close().unwrap();
}

#[test]
fn a_message_moved_on_the_server_moves_here_with_its_local_flag_change_in_either_folder_order() {
    if dovecot::should_skip() {
        return;
    }
    let s = setup();
    // "Archive" is synced before "Inbox" and "Zoo" after it: one move each way.
    seed(&s.server, "INBOX", &(0..4).map(|n| ("", msg(n))).collect::<Vec<_>>());
    seed(&s.server, "Archive", &[("", msg(10))]);
    seed(&s.server, "Zoo", &[("", msg(20))]);
    s.sync_ok(&[]);
    let (one, two) = {
        let store = s.store();
        let one = local_id(&store, "Inbox", 1).unwrap();
        let two = local_id(&store, "Inbox", 2).unwrap();
        set_local_flags(&store, one, flags::FLAGGED);
        store.close().unwrap();
        (one, two)
    };
    let mut raw = s.server.raw();
    raw.cmd("SELECT INBOX").unwrap();
    let (u1, u2) = (server_uid(&mut raw, 1).unwrap(), server_uid(&mut raw, 2).unwrap());
    raw.cmd(&format!("UID MOVE {u1} Archive")).unwrap();
    raw.cmd(&format!("UID MOVE {u2} Zoo")).unwrap();
    let out = s.sync_ok(&[]);
    assert!(out.contains("Archive: server +0 *0 -0 >0  local +0 *0 -0 >1"), "{out}");
    assert!(out.contains("Zoo: server +0 *0 -0 >0  local +0 *0 -0 >1"), "{out}");
    assert!(out.contains("local +0 *0 -0 >2"), "nothing downloaded again, nothing deleted: {out}");
    let store = s.store();
    // The same entries, now in their new folders.
    assert_eq!(store.index().location_of(one).map(|(f, _)| store.index().folder_path(f)), Some("Archive".into()));
    assert_eq!(store.index().location_of(two).map(|(f, _)| store.index().folder_path(f)), Some("Zoo".into()));
    store.close().unwrap();
    // The local flag change goes up with the next pass of its new folder.
    let next = s.sync_ok(&[]);
    assert!(next.contains("Archive: server +0 *1 -0 >0  local +0 *0 -0 >0"), "{next}");
    let mut conn = s.conn();
    assert_eq!(letters(&server_msgs(&mut conn, "Archive")["<1@msgfs.test>"].0), "F");
    assert_same(&s, &[("INBOX", "Inbox"), ("Archive", "Archive"), ("Zoo", "Zoo")]);
}

#[test]
fn changes_on_the_server_during_a_run_are_all_there_after_the_next() {
    if dovecot::should_skip() {
        return;
    }
    let s = setup();
    seed(&s.server, "INBOX", &(0..2000).map(|n| ("", big_msg(n))).collect::<Vec<_>>());
    let mut child = sync_command(&s.config)
        .env("RUST_LOG", "msgfs=info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While its bodies come: new mail, flags set and a message expunged by another client.
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    assert!(lines.by_ref().map_while(Result::ok).any(|l| l.contains("Inbox: 2000 headers in")), "no headers line");
    let mut raw = s.server.raw();
    raw.multiappend("INBOX", &(5000..5010).map(|n| ("\\Flagged", msg(n))).collect::<Vec<_>>());
    raw.cmd("SELECT INBOX").unwrap();
    raw.cmd("UID STORE 1:20 +FLAGS (\\Seen)").unwrap();
    raw.cmd("UID STORE 30 +FLAGS (\\Deleted)").unwrap();
    raw.cmd("UID EXPUNGE 30").unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}\n{}", String::from_utf8_lossy(&out.stdout), rest.join("\n"));
    s.sync_ok(&[]);
    assert_same(&s, &[("INBOX", "Inbox")]);
    let mut conn = s.conn();
    assert_eq!(server_msgs(&mut conn, "INBOX").len(), 2009);
}

#[test]
fn keywords_merge_three_ways_like_flags() {
    if dovecot::should_skip() {
        return;
    }
    let s = setup();
    seed(&s.server, "INBOX", &[("$Work", msg(0)), ("", msg(1))]);
    s.sync_ok(&[]);
    {
        let store = s.store();
        let (zero, one) = (local_id(&store, "Inbox", 0).unwrap(), local_id(&store, "Inbox", 1).unwrap());
        // Here: $Work taken off message 0, $Later put on message 1 (as setfattr would).
        let set = |id, k: &[&str]| {
            let change = msgfs::store::AttrChange {
                keywords: Some(k.iter().map(|x| x.to_string()).collect()),
                ..Default::default()
            };
            store.set_message_attrs(id, change).unwrap();
        };
        set(zero, &[]);
        set(one, &["$Later"]);
        store.close().unwrap();
    }
    // There: $Junk put on message 0.
    let mut raw = s.server.raw();
    raw.cmd("SELECT INBOX").unwrap();
    let u0 = server_uid(&mut raw, 0).unwrap();
    raw.cmd(&format!("UID STORE {u0} +FLAGS ($Junk)")).unwrap();
    let out = s.sync_ok(&[]);
    assert!(out.contains("Inbox: server +0 *2 -0 >0  local +0 *1 -0 >0"), "{out}");
    let mut conn = s.conn();
    let m = server_msgs(&mut conn, "INBOX");
    assert_eq!(m["<0@msgfs.test>"].0, vec!["$Junk".to_string()]);
    assert_eq!(m["<1@msgfs.test>"].0, vec!["$Later".to_string()]);
    let store = s.store();
    let kw = |n| -> Vec<String> {
        let id = local_id(&store, "Inbox", n).unwrap();
        store.index().message_keywords(id).iter().map(|k| k.to_string()).collect()
    };
    assert_eq!((kw(0), kw(1)), (vec!["$Junk".to_string()], vec!["$Later".to_string()]));
    store.close().unwrap();
    let again = s.sync_ok(&[]);
    assert!(again.contains("0 failed: server +0 *0 -0 >0  local +0 *0 -0 >0"), "{again}");
    // What the sync wrote (links, synced keywords, tombstones none here) is a sound store.
    let check = Command::new(env!("CARGO_BIN_EXE_msgfs")).arg("check").arg(&s.store).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
}

#[test]
fn a_wrong_password_or_a_missing_accounts_file_is_one_line_and_exit_2() {
    if dovecot::should_skip() {
        return;
    }
    let s = setup();
    let out = sync_command(&s.config).env("MSGFS_IMAP_PASSWORD", "wrong").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("account test: login as") && err.contains("AUTHENTICATIONFAILED"), "{err}");
    assert!(!err.contains("wrong"), "the password is never shown: {err}");
    let missing = s._tmp.path().join("nothing.toml");
    let out = sync_command(&missing).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("nothing.toml: no accounts file") && err.contains("--config"), "{err}");
}

#[test]
fn server_expunges_arrive_through_vanished_and_a_message_the_store_lost_track_of_is_found_by_listing() {
    if dovecot::should_skip() {
        return;
    }
    let s = setup();
    seed(&s.server, "INBOX", &(0..10).map(|n| ("", msg(n))).collect::<Vec<_>>());
    s.sync_ok(&[]);
    let debug_sync = || {
        let out = sync_command(&s.config).env("RUST_LOG", "msgfs=debug").output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{text}");
        text
    };

    // Another client expunges two messages and flags one: the next pass learns of the
    // expunges from the SELECT's VANISHED (EARLIER), without listing every UID.
    let mut raw = s.server.raw();
    raw.cmd("SELECT INBOX").unwrap();
    let (three, seven) = (server_uid(&mut raw, 3).unwrap(), server_uid(&mut raw, 7).unwrap());
    raw.cmd(&format!("UID STORE {three},{seven} +FLAGS (\\Deleted)")).unwrap();
    raw.cmd(&format!("UID EXPUNGE {three},{seven}")).unwrap();
    let five = server_uid(&mut raw, 5).unwrap();
    raw.cmd(&format!("UID STORE {five} +FLAGS (\\Flagged)")).unwrap();
    raw.cmd("LOGOUT").ok();
    let out = debug_sync();
    assert!(out.contains("presence from VANISHED (EARLIER): 8 of 10 linked here"), "{out}");
    assert!(out.contains("Inbox: server +0 *0 -0 >0  local +0 *1 -2 >0"), "{out}");
    assert_same(&s, &[("INBOX", "Inbox")]);

    // The store loses track of a message the server still has (as a download lost to a
    // kill would): VANISHED cannot show that, the server's count does, and the full
    // listing that follows brings the message back.
    {
        let store = s.store();
        let id = local_id(&store, "Inbox", 8).unwrap();
        let tombs = store.index().tombstones().count();
        store.update_remote(vec![msgfs::store::RemoteChange::Message(id, None)]).unwrap();
        store.delete_message(id).unwrap();
        assert_eq!(store.index().tombstones().count(), tombs, "an unlinked message leaves no tombstone");
        store.close().unwrap();
    }
    let out = debug_sync();
    assert!(out.contains("not the 7 linked here less VANISHED: listing them all"), "{out}");
    assert!(!out.contains("presence from VANISHED"), "{out}");
    assert_same(&s, &[("INBOX", "Inbox")]);
    let store = s.store();
    assert!(local_id(&store, "Inbox", 8).is_some(), "downloaded again");
    store.close().unwrap();
}

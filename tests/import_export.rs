//! Import and export: byte-exact round trips through mbox and Maildir, the naming rules,
//! flags and folders, the command line, and (when MSGFS_TESTDATA names the public sample
//! data) real mbox, Maildir and .eml corpora checked against Python's `mailbox` module.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, UNIX_EPOCH};

use msgfs::export;
use msgfs::import::{self, import_sources};
use msgfs::store::{flags, Id, Options, Store, ROOT};

const DATE: &str = "Date: Thu, 22 Aug 2002 11:36:23 +0000";
const DAY: &str = "2002-08-22";

fn create_store(dir: &Path) -> Store {
    Store::open(dir, Options { create: true, ..Default::default() }).unwrap()
}

/// Imports keeping duplicates: these tests count every message of a source, as Python's
/// mailbox does (tests/import_rules.rs tests the skipping of duplicates).
fn import(st: &Store, sources: &[&Path], into: Option<&str>) -> import::Report {
    let sources: Vec<PathBuf> = sources.iter().map(|p| p.to_path_buf()).collect();
    import_sources(st, &sources, into, &import::Options { allow_duplicates: true, ..Default::default() }).unwrap()
}

#[derive(Clone, PartialEq, Eq)]
struct Msg {
    bytes: Vec<u8>,
    flags: u8,
    mtime: i64,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head = String::from_utf8_lossy(&self.bytes[..self.bytes.len().min(60)]).into_owned();
        write!(f, "Msg({} bytes {head:?}, flags {:#x}, mtime {})", self.bytes.len(), self.flags, self.mtime)
    }
}

/// Folder path below `top` -> message name -> message, for whole-tree comparisons.
type Tree = BTreeMap<String, BTreeMap<String, Msg>>;

fn tree(st: &Store, top: Id) -> Tree {
    let mut out = Tree::new();
    for f in export::plan(st, top).unwrap() {
        let msgs = f
            .messages
            .iter()
            .map(|m| (m.name.clone(), Msg { bytes: st.read_message(m.id).unwrap(), flags: m.flags, mtime: m.mtime }))
            .collect();
        out.insert(f.rel.join("/"), msgs);
    }
    out
}

/// The messages of one folder in entry id (import) order: (name, content).
fn folder_in_order(st: &Store, path: &str) -> Vec<(String, Vec<u8>)> {
    let id = st.folder_by_path(path).unwrap_or_else(|e| panic!("folder {path}: {e}"));
    let plans = export::plan(st, id).unwrap();
    plans[0].messages.iter().map(|m| (m.name.clone(), st.read_message(m.id).unwrap())).collect()
}

/// Compare two trees; `with_meta` also compares flags and mtimes.
fn assert_same_tree(a: &Tree, b: &Tree, with_meta: bool) {
    let folders_a: Vec<&String> = a.keys().collect();
    let folders_b: Vec<&String> = b.keys().collect();
    assert_eq!(folders_a, folders_b, "folders differ");
    for (folder, ma) in a {
        let mb = &b[folder];
        let names_a: Vec<&String> = ma.keys().collect();
        let names_b: Vec<&String> = mb.keys().collect();
        assert_eq!(names_a, names_b, "names differ in folder {folder:?}");
        for (name, x) in ma {
            let y = &mb[name];
            assert!(x.bytes == y.bytes, "bytes differ: {folder}/{name}: {x:?} vs {y:?}");
            if with_meta {
                assert_eq!((x.flags, x.mtime), (y.flags, y.mtime), "flags/mtime differ: {folder}/{name}");
            }
        }
    }
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(path, bytes).unwrap();
}

/// mboxrd as a foreign writer makes it, written here by hand (not with the exporter).
fn mboxrd(messages: &[&[u8]], eol: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        out.extend_from_slice(format!("From sender@example.org Thu Aug 22 11:36:23 2002{eol}").as_bytes());
        for line in m.split_inclusive(|&b| b == b'\n') {
            let gts = line.iter().take_while(|&&b| b == b'>').count();
            if line[gts..].starts_with(b"From ") {
                out.push(b'>');
            }
            out.extend_from_slice(line);
        }
        out.extend_from_slice(eol.as_bytes());
    }
    out
}

/// Messages that are hard to carry through mbox and to name, with the names they get.
fn hard_messages() -> Vec<(Vec<u8>, String)> {
    let d = DATE;
    let long = "ü".repeat(300);
    let v = vec![
        (
            format!("Subject: From lines\n{d}\n\nhello\n\nFrom the start of a line\n>From quoted once\n>>From quoted twice\nFrom \n")
                .into_bytes(),
            format!("{DAY} From lines.eml"),
        ),
        (
            format!("Subject: CRLF message\r\n{d}\r\n\r\nline one\r\n\r\nFrom crlf\r\n").into_bytes(),
            format!("{DAY} CRLF message.eml"),
        ),
        (
            [format!("Subject: 8-bit caf\u{e9}\n{d}\n\n").as_bytes(), b"body \x00\x01\x80\xff bytes\n"].concat(),
            format!("{DAY} 8-bit caf\u{e9}.eml"),
        ),
        ([b"Subject: Latin-1 caf\xe9\n", d.as_bytes(), b"\n\nx\n"].concat(), format!("{DAY} Latin-1 caf\u{e9}.eml")),
        (
            format!("Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\n{d}\n\nx\n").into_bytes(),
            format!("{DAY} Gr\u{fc}\u{df}e aus K\u{f6}ln.eml"),
        ),
        (
            format!("Subject: =?ISO-8859-1?Q?Caf=E9_cr=E8me?=\n{d}\n\nx\n").into_bytes(),
            format!("{DAY} Caf\u{e9} cr\u{e8}me.eml"),
        ),
        (format!("Subject: \n{d}\n\nempty subject\n").into_bytes(), format!("{DAY} (no subject).eml")),
        (b"Subject: a/b\tc\n\nno date\n".to_vec(), "a_b c.eml".to_string()),
        (format!("Subject: {long}\n{d}\n\nlong\n").into_bytes(), format!("{DAY} {}.eml", "ü".repeat(100))),
        (format!("Subject: Same\n{d}\n\none\n").into_bytes(), format!("{DAY} Same.eml")),
        (format!("Subject: Same\n{d}\n\ntwo\n").into_bytes(), format!("{DAY} Same (2).eml")),
        (b"not a header at all\n\x00\xff\n".to_vec(), "(no subject).eml".to_string()),
    ];
    v
}

#[test]
fn mbox_import_is_byte_exact_and_names_follow_the_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let hard = hard_messages();
    let refs: Vec<&[u8]> = hard.iter().map(|(c, _)| c.as_slice()).collect();
    write(&tmp.path().join("src/hard.mbox"), &mboxrd(&refs, "\n"));
    // The same messages in a CRLF file, every line ending CRLF.
    let crlf_msgs: Vec<Vec<u8>> = refs
        .iter()
        .map(|m| {
            let mut out = Vec::new();
            for &b in m.iter() {
                if b == b'\n' && out.last() != Some(&b'\r') {
                    out.push(b'\r');
                }
                out.push(b);
            }
            out
        })
        .collect();
    let crlf_refs: Vec<&[u8]> = crlf_msgs.iter().map(|m| m.as_slice()).collect();
    write(&tmp.path().join("src/crlf.mbox"), &mboxrd(&crlf_refs, "\r\n"));

    let st = create_store(&tmp.path().join("store"));
    let r = import(&st, &[&tmp.path().join("src/hard.mbox"), &tmp.path().join("src/crlf.mbox")], None);
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    assert_eq!(r.messages as usize, 2 * hard.len());
    assert_eq!(r.folders_created, 2);

    let got = folder_in_order(&st, "hard");
    assert_eq!(got.len(), hard.len());
    for ((name, bytes), (want, want_name)) in got.iter().zip(&hard) {
        assert_eq!(name, want_name);
        assert!(bytes == want, "{name}: {:?} != {:?}", String::from_utf8_lossy(bytes), String::from_utf8_lossy(want));
    }
    let got = folder_in_order(&st, "crlf");
    for ((name, bytes), (want, (_, want_name))) in got.iter().zip(crlf_msgs.iter().zip(&hard)) {
        assert_eq!(name, want_name);
        assert!(bytes == want, "{name}: CRLF bytes differ");
    }
    // The Date header gives the mtime.
    let id = st.lookup(st.folder_by_path("hard").unwrap(), &hard[0].1).unwrap();
    let msgfs::store::Entry::Message(id) = id else { panic!("not a message") };
    assert_eq!(st.index().message(id).unwrap().attrs().mtime, 1030016183 * 1_000_000_000);
    st.close().unwrap();
}

#[test]
fn duplicate_names_are_numbered_across_batches_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let msgs: Vec<Vec<u8>> =
        (0..1500).map(|i| format!("Subject: Same\n{DATE}\n\nmessage {i}\n").into_bytes()).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    let path = tmp.path().join("dups.mbox");
    write(&path, &mboxrd(&refs, "\n"));
    let st = create_store(&tmp.path().join("store"));
    import(&st, &[&path], None);
    import(&st, &[&path], None);
    let got = folder_in_order(&st, "dups");
    assert_eq!(got.len(), 3000);
    for (i, (name, bytes)) in got.iter().enumerate() {
        let want = if i == 0 { format!("{DAY} Same.eml") } else { format!("{DAY} Same ({}).eml", i + 1) };
        assert_eq!(name, &want);
        assert_eq!(bytes, &msgs[i % 1500]);
    }
    st.close().unwrap();
}

#[test]
fn maildir_import_keeps_flags_and_maps_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let md = tmp.path().join("Mail");
    let m = |n: &str| format!("Subject: {n}\n{DATE}\n\nbody {n}\n").into_bytes();
    write(&md.join("cur/1.a.host:2,S"), &m("one"));
    write(&md.join("cur/2.b.host:2,FRS"), &m("two"));
    write(&md.join("cur/.DS_Store"), b"junk");
    write(&md.join("new/3.c.host"), b"Subject: no date\n\nthree\n");
    write(&md.join("tmp/4.d.host"), &m("unfinished"));
    write(&md.join("dovecot-uidlist"), b"3 V1 N4\n");
    write(&md.join("maildirfolder"), b"");
    write(&md.join(".Sub.Folder/cur/5.e:2,T"), &m("five"));
    write(&md.join(".Dot\\2eName/cur/6.f:2,DP"), &m("six"));
    write(&md.join(".notmuch/xapian/db"), b"binary");
    // A nested Maildir that lost its empty new/ and tmp/ (as git does).
    write(&md.join("nested/cur/7.g:2,"), &m("seven"));
    // A message without Date gets the file's mtime.
    let when = UNIX_EPOCH + Duration::new(1_234_567_890, 123_456_789);
    fs::File::options().write(true).open(md.join("new/3.c.host")).unwrap().set_modified(when).unwrap();

    let st = create_store(&tmp.path().join("store"));
    let r = import(&st, &[&md], Some("Archive/2020"));
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    let ignored: Vec<String> =
        r.ignored.iter().map(|s| s.path.strip_prefix(&md).unwrap().display().to_string()).collect();
    assert_eq!(ignored, vec!["cur/.DS_Store", ".notmuch", "dovecot-uidlist", "tmp/4.d.host"]);

    let t = tree(&st, st.folder_by_path("Archive/2020/Mail").unwrap());
    let summary: BTreeMap<&str, Vec<(&str, u8)>> =
        t.iter().map(|(f, ms)| (f.as_str(), ms.iter().map(|(n, m)| (n.as_str(), m.flags)).collect())).collect();
    let want: BTreeMap<&str, Vec<(&str, u8)>> = [
        (
            "",
            vec![
                ("2002-08-22 one.eml", flags::SEEN),
                ("2002-08-22 two.eml", flags::FLAGGED | flags::ANSWERED | flags::SEEN),
                ("no date.eml", 0),
            ],
        ),
        ("Dot.Name", vec![("2002-08-22 six.eml", flags::DRAFT | flags::PASSED)]),
        ("Sub", vec![]),
        ("Sub/Folder", vec![("2002-08-22 five.eml", flags::TRASHED)]),
        ("nested", vec![("2002-08-22 seven.eml", 0)]),
    ]
    .into_iter()
    .collect();
    assert_eq!(summary, want);
    assert_eq!(t[""]["no date.eml"].mtime, 1_234_567_890_123_456_789);
    assert_eq!(t[""]["2002-08-22 one.eml"].bytes, m("one"));
    st.close().unwrap();
}

#[test]
fn eml_trees_and_single_files_go_where_they_should() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("tree");
    let m = |n: &str| format!("Subject: {n}\n{DATE}\n\n{n}\n").into_bytes();
    write(&src.join("a.eml"), &m("a"));
    write(&src.join("sub/b.eml"), &m("b"));
    write(&src.join("sub/deeper/c.txt"), &m("c"));
    write(&src.join("box.mbox"), &mboxrd(&[&m("d"), &m("e")], "\n"));
    write(&tmp.path().join("single.eml"), &m("single"));
    write(&tmp.path().join("envelope.txt"), &mboxrd(&[&m("f")], "\n"));
    let st = create_store(&tmp.path().join("store"));
    import(&st, &[&src], None);
    import(&st, &[&tmp.path().join("single.eml"), &tmp.path().join("envelope.txt")], Some("Archive/2020"));
    let names = |p: &str| folder_in_order(&st, p).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names("tree"), vec!["2002-08-22 a.eml"]);
    assert_eq!(names("tree/sub"), vec!["2002-08-22 b.eml"]);
    assert_eq!(names("tree/sub/deeper"), vec!["2002-08-22 c.eml"]);
    assert_eq!(names("tree/box"), vec!["2002-08-22 d.eml", "2002-08-22 e.eml"]);
    // A single .eml goes straight into --into; a file starting "From " is an mbox folder.
    assert_eq!(names("Archive/2020"), vec!["2002-08-22 single.eml"]);
    assert_eq!(names("Archive/2020/envelope.txt"), vec!["2002-08-22 f.eml"]);
    st.close().unwrap();
}

#[test]
fn pst_files_and_the_store_itself_are_not_imported_as_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("outlook.pst"), b"!BDN\x00\x01binary");
    write(&src.join("renamed"), b"!BDN\x00\x01binary");
    write(&src.join("ok.eml"), b"Subject: ok\n\nx\n");
    let store_dir = src.join("store");
    let st = create_store(&store_dir);
    let r = import(&st, &[&src, &src.join("outlook.pst")], None);
    let skipped: Vec<String> =
        r.skipped.iter().map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(skipped, vec!["outlook.pst", "renamed", "outlook.pst"]);
    assert!(r.skipped.iter().all(|s| s.reason.contains("PST")));
    assert_eq!(r.ignored.len(), 1);
    assert_eq!(r.ignored[0].path, store_dir);
    assert_eq!(r.messages, 1);
    st.close().unwrap();
}

/// A source tree with every hard case, flags, a folder name with dots, a message at the
/// top of the store and a 50 MB message; returns the store built from it.
fn build_hard_store(root: &Path) -> Store {
    let src = root.join("src");
    for (i, (content, _)) in hard_messages().iter().enumerate() {
        write(&src.join(format!("mail/{i:02}.eml")), content);
    }
    write(&src.join("mail/no-eol.eml"), format!("Subject: no final newline\n{DATE}\n\nFrom the end").as_bytes());
    write(&src.join("mail/crlf-no-eol.eml"), b"Subject: CRLF no eol\r\n\r\nends in CR\r\n\r");
    write(&src.join("mail/empty.eml"), b"");
    write(&src.join("mail/only-newline.eml"), b"\n");
    write(&src.join("mail/dir.with.dots and \\/x.eml"), b"Subject: dotted folder\n\nx\n");
    // 50 MB, with From lines (quoted and not) all through it.
    let mut big = format!("Subject: big\n{DATE}\n\n").into_bytes();
    let mut i = 0u64;
    while big.len() < 50 << 20 {
        let line = match i % 4 {
            0 => format!("From line {i}\n"),
            1 => format!(">From line {i}\n"),
            2 => format!("plain \u{e9}\u{fc} line {i} {}\n", "x".repeat(60)),
            _ => "\n".to_string(),
        };
        big.extend_from_slice(line.as_bytes());
        i += 1;
    }
    write(&src.join("mail/big/big.eml"), &big);
    let md = src.join("flagged");
    write(&md.join("cur/1.x:2,S"), format!("Subject: seen\n{DATE}\n\n1\n").as_bytes());
    write(&md.join("cur/2.x:2,DFPRST"), format!("Subject: all flags\n{DATE}\n\n2\n").as_bytes());
    write(&md.join("new/3.x"), b"Subject: new, no date\n\n3\n");
    write(&md.join(".a.b/cur/4.x:2,R"), b"Subject: sub\n\n4\n");
    write(&root.join("top.eml"), b"Subject: at the top\n\ntop\n");

    let st = create_store(&root.join("store1"));
    let r = import(&st, &[&src.join("mail"), &md, &root.join("top.eml")], None);
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    st
}

#[test]
fn round_trip_through_maildir_and_mbox_is_byte_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let st1 = build_hard_store(root);
    let t1 = tree(&st1, ROOT);
    assert_eq!(t1["mail/big"]["2002-08-22 big.eml"].bytes.len() >> 20, 50);
    assert!(t1.contains_key("mail/dir.with.dots and \\"), "{:?}", t1.keys().collect::<Vec<_>>());
    assert_eq!(t1["flagged"]["2002-08-22 all flags.eml"].flags, 0x3f);
    assert_eq!(t1[""].keys().collect::<Vec<_>>(), vec!["at the top.eml"]);

    // Maildir: names, bytes, flags and mtimes come back.
    let md = root.join("md");
    let r = export::export_maildir(&st1, ROOT, &md).unwrap();
    assert_eq!(r.messages as usize, t1.values().map(|f| f.len()).sum::<usize>());
    let st2 = create_store(&root.join("store2"));
    let r = import(&st2, &[&md], None);
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    let t2 = tree(&st2, st2.folder_by_path("md").unwrap());
    assert_same_tree(&t1, &t2, true);

    // mbox: names and bytes come back (mbox has no place for flags).
    let mb = root.join("mb");
    export::export_mbox(&st1, ROOT, &mb).unwrap();
    assert!(
        mb.join("mail.mbox").is_file() && mb.join("mail/big.mbox").is_file() && mb.join("at the top.eml").is_file()
    );
    let st3 = create_store(&root.join("store3"));
    let r = import(&st3, &[&mb], None);
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    let t3 = tree(&st3, st3.folder_by_path("mb").unwrap());
    assert_same_tree(&t1, &t3, false);

    // And once more from the re-imported store: still the same.
    let md2 = root.join("md2");
    export::export_maildir(&st2, st2.folder_by_path("md").unwrap(), &md2).unwrap();
    let st4 = create_store(&root.join("store4"));
    import(&st4, &[&md2], None);
    assert_same_tree(&t1, &tree(&st4, st4.folder_by_path("md2").unwrap()), true);

    // Exporting one folder: mbox puts its name first.
    let one = root.join("one");
    export::export_mbox(&st1, st1.folder_by_path("flagged").unwrap(), &one).unwrap();
    assert!(one.join("flagged.mbox").is_file() && one.join("flagged/a/b.mbox").is_file());
    for st in [st1, st2, st3, st4] {
        st.close().unwrap();
    }
}

#[test]
fn export_goes_on_past_an_unreadable_message() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("box.mbox");
    // "b" is larger than what the log holds inline, so it has an object file to lose.
    let b_msg = format!("Subject: b\n\n{}\n", "b".repeat(msgfs::store::INLINE_MAX)).into_bytes();
    write(&src, &mboxrd(&[b"Subject: a\n\na\n", &b_msg, b"Subject: c\n\nc\n"], "\n"));
    let store_dir = tmp.path().join("store");
    let st = create_store(&store_dir);
    import(&st, &[&src], None);
    st.close().unwrap();
    // Read-only, as `msgfs export` opens it; then the content of "b" goes away (as an old
    // version does when a mounted daemon saves a new one).
    let st = Store::open(&store_dir, Options { read_only: true, ..Default::default() }).unwrap();
    let folder = st.folder_by_path("box").unwrap();
    let msgfs::store::Entry::Message(b) = st.lookup(folder, "b.eml").unwrap() else { panic!() };
    let version = st.index().message(b).unwrap().version();
    fs::remove_file(store_dir.join(msgfs::store::object_path(b, version))).unwrap();
    let r = export::export_mbox(&st, ROOT, &tmp.path().join("out")).unwrap();
    assert_eq!(r.messages, 2);
    assert_eq!(r.unreadable.len(), 1);
    assert_eq!(r.unreadable[0].0, "box/b.eml");
    let out = msgfs::import::mbox::split(&fs::read(tmp.path().join("out/box.mbox")).unwrap());
    assert_eq!(
        out.iter().map(|m| m.content.clone()).collect::<Vec<_>>(),
        vec![b"Subject: a\n\na\n".to_vec(), b"Subject: c\n\nc\n".to_vec()]
    );
    st.close().unwrap();
}

fn msgfs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_msgfs"))
}

#[test]
fn cli_import_reports_unreadable_sources_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.eml");
    write(&good, b"Subject: fine\n\nx\n");
    let fifo = tmp.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let store = tmp.path().join("store");
    let out = msgfs()
        .args(["import", "--store"])
        .arg(&store)
        .arg(&good)
        .arg(tmp.path().join("missing.mbox"))
        .arg(&fifo)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("imported 1 message ("), "{stdout}");
    assert!(stdout.contains("missing.mbox: cannot read: No such file"), "{stdout}");
    assert!(stdout.contains("fifo: neither a regular file nor a directory"), "{stdout}");
    // The good one is in, and the store was closed cleanly.
    let st = Store::open(&store, Options::default()).unwrap();
    assert!(st.report().was_clean);
    assert_eq!(folder_in_order(&st, "").len(), 1);
    st.close().unwrap();
}

#[test]
fn cli_export_then_import_round_trips_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let mbox = tmp.path().join("in.mbox");
    let msgs: Vec<Vec<u8>> = hard_messages().into_iter().map(|(c, _)| c).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    write(&mbox, &mboxrd(&refs, "\n"));
    let store = tmp.path().join("store");
    let out = msgfs().args(["import", "--into", "Old/2002", "--store"]).arg(&store).arg(&mbox).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("imported {} messages", msgs.len())));
    for format in ["mbox", "maildir"] {
        let dest = tmp.path().join(format!("out-{format}"));
        let run = || {
            msgfs()
                .args(["export", "--format", format, "--folder", "Old", "--store"])
                .arg(&store)
                .arg(&dest)
                .output()
                .unwrap()
        };
        let out = run();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        if format == "mbox" {
            // A second export into the same place stops at the first file, naming it.
            let again = run();
            assert_eq!(again.status.code(), Some(2));
            assert!(String::from_utf8_lossy(&again.stderr).contains("Old.mbox: File exists"));
        }
        let store2 = tmp.path().join(format!("store-{format}"));
        let out = msgfs().args(["import", "--store"]).arg(&store2).arg(&dest).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
        let (a, b) =
            (Store::open(&store, Options::default()).unwrap(), Store::open(&store2, Options::default()).unwrap());
        let top_b = if format == "mbox" { format!("out-{format}/Old") } else { format!("out-{format}") };
        assert_same_tree(
            &tree(&a, a.folder_by_path("Old").unwrap()),
            &tree(&b, b.folder_by_path(&top_b).unwrap()),
            false,
        );
        a.close().unwrap();
        b.close().unwrap();
    }
}

// ---- the public sample data ----

fn testdata() -> Option<PathBuf> {
    msgfs::testdata::path("")
}

/// Counts messages the way msgfs lays sources out (folder per directory, mbox file and
/// Maildir++ folder), but with Python's `mailbox` module doing the reading of each mbox and
/// Maildir. Prints `C<TAB>folder<TAB>count` per folder and `F<TAB>folder<TAB>path` per
/// message file (eml and Maildir files, whose bytes must be stored exactly).
const PY_COUNT: &str = r#"
import mailbox, os, sys, re
out = sys.stdout
counts = {}
def add(folder, n):
    counts[folder] = counts.get(folder, 0) + n
def file_line(folder, path):
    out.write("F\t%s\t%s\n" % (folder, path))
def is_md(d):
    return os.path.isdir(os.path.join(d, "cur")) or os.path.isdir(os.path.join(d, "new"))
def unescape(c):
    return re.sub(r"\\([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), c)
def mbox_folder(name):
    for ext in (".mbox", ".mbx"):
        if len(name) > len(ext) and name.lower().endswith(ext):
            return name[:-len(ext)]
    return name
def maildir(d, folder):
    add(folder, 0)
    m = mailbox.Maildir(d, factory=None, create=False)
    # git keeps no empty directories: read only the cur/ and new/ that exist
    m._toc_mtimes = {k: 0 for k in ("cur", "new") if os.path.isdir(os.path.join(d, k))}
    keys = m.keys()
    add(folder, len(keys))
    for k in keys:
        file_line(folder, os.path.join(d, m._lookup(k)))
    for n in sorted(os.listdir(d)):
        p = os.path.join(d, n)
        if n in ("cur", "new", "tmp"):
            continue
        if os.path.isdir(p) and not os.path.islink(p):
            if n.startswith("."):
                if is_md(p):
                    maildir(p, folder + "/" + "/".join(unescape(c) for c in n[1:].split(".") if c))
            elif not n.startswith(("courierimap", "dovecot")):
                walk(p, folder + "/" + n)
        elif os.path.isfile(p) and not os.path.islink(p):
            if not (n.startswith((".", "dovecot", "courier")) or n in ("maildirfolder", "subscriptions")):
                add(folder, 1)
                file_line(folder, p)
def starts_like_mail(p):
    # msgfs's rule for a file in a tree: a first line that is a header field or a From_ line
    with open(p, "rb") as f:
        line = f.readline().split(b"\n")[0]
    if line.startswith(b"From "):
        return True
    i = line.find(b":")
    name = line[:i].rstrip(b" \t") if i >= 0 else b""
    return len(name) > 0 and all(33 <= c <= 126 for c in name)
def walk(d, folder):
    if is_md(d):
        return maildir(d, folder)
    add(folder, 0)
    for n in sorted(os.listdir(d)):
        p = os.path.join(d, n)
        if os.path.isdir(p) and not os.path.islink(p):
            if n not in (".notmuch", ".git"):
                walk(p, folder + "/" + n)
        elif os.path.isfile(p):
            if n.lower().endswith((".mbox", ".mbx")):
                add(folder + "/" + mbox_folder(n), len(mailbox.mbox(p, create=False)))
            elif n.lower().endswith(".eml") or starts_like_mail(p):
                add(folder, 1)
                file_line(folder, p)
def top(path, kind):
    name = os.path.basename(path.rstrip("/"))
    if kind == "mbox":
        add(mbox_folder(name), len(mailbox.mbox(path, create=False)))
    else:
        walk(path, name)
top(sys.argv[1], sys.argv[2])
for f, n in sorted(counts.items()):
    out.write("C\t%s\t%d\n" % (f, n))
"#;

struct Expected {
    counts: BTreeMap<String, usize>,
    files: Vec<(String, PathBuf)>,
}

fn python_expected(source: &Path, kind: &str) -> Expected {
    let out = Command::new("python3")
        .arg("-c")
        .arg(PY_COUNT)
        .arg(source)
        .arg(kind)
        .output()
        .expect("python3 must be installed for the sample-data tests (apt-get install python3)");
    assert!(out.status.success(), "python3: {}", String::from_utf8_lossy(&out.stderr));
    let mut e = Expected { counts: BTreeMap::new(), files: Vec::new() };
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let mut f = line.splitn(3, '\t');
        match (f.next(), f.next(), f.next()) {
            (Some("C"), Some(folder), Some(n)) => {
                e.counts.insert(folder.to_string(), n.parse().unwrap());
            }
            (Some("F"), Some(folder), Some(p)) => e.files.push((folder.to_string(), PathBuf::from(p))),
            _ => panic!("bad line from python: {line}"),
        }
    }
    e
}

/// Check a store's folders against Python's counts, and every listed file's bytes.
fn check_against(st: &Store, under: &str, e: &Expected) {
    let top = st.folder_by_path(under).unwrap();
    let t = tree(st, top);
    let prefix = |f: &str| if under.is_empty() { f.to_string() } else { format!("{under}/{f}") };
    let mut total = 0;
    for (folder, &n) in &e.counts {
        let got = t.get(folder.as_str()).map(|m| m.len());
        assert_eq!(got, Some(n), "message count of folder {}", prefix(folder));
        total += n;
    }
    assert_eq!(t.values().map(|m| m.len()).sum::<usize>(), total, "messages outside the expected folders");
    let mut by_folder: HashMap<&str, HashMap<&[u8], usize>> = HashMap::new();
    for (folder, ms) in &t {
        let bag = by_folder.entry(folder.as_str()).or_default();
        for m in ms.values() {
            *bag.entry(m.bytes.as_slice()).or_default() += 1;
        }
    }
    for (folder, path) in &e.files {
        let bytes = fs::read(path).unwrap();
        let bag = by_folder.get_mut(folder.as_str()).unwrap_or_else(|| panic!("no folder {folder}"));
        match bag.get_mut(bytes.as_slice()) {
            Some(n) if *n > 0 => *n -= 1,
            _ => panic!("{} is not stored byte for byte in {}", path.display(), prefix(folder)),
        }
    }
}

/// Every file below `dir`, sorted.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn testdata_mbox_counts_match_python_mailbox() {
    let Some(td) = testdata() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let st = create_store(&tmp.path().join("store"));
    let mut checked = 0;
    for f in files_below(&td.join("mbox")) {
        let mut head = [0u8; 5];
        let n = std::io::Read::read(&mut fs::File::open(&f).unwrap(), &mut head).unwrap();
        if &head[..n] != b"From " {
            continue; // COPYING, DISTFILES: not mbox files
        }
        // Each file below its own folder, so a check sees only that file's folders.
        let rel = f.strip_prefix(&td).unwrap().to_string_lossy().into_owned();
        let size = fs::metadata(&f).unwrap().len();
        let t0 = Instant::now();
        let r = import(&st, &[&f], Some(&rel));
        let secs = t0.elapsed().as_secs_f64();
        assert!(r.skipped.is_empty(), "{:?}", r.skipped);
        if size > 10 << 20 {
            println!(
                "{}: {} messages, {} MB in {secs:.2} s = {:.0} messages/s",
                f.display(),
                r.messages,
                size >> 20,
                r.messages as f64 / secs
            );
        }
        check_against(&st, &rel, &python_expected(&f, "mbox"));
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} mbox files found under {}", td.display());
    st.close().unwrap();
}

#[test]
fn testdata_maildir_counts_and_bytes_match_python_mailbox() {
    let Some(td) = testdata() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let st = create_store(&tmp.path().join("store"));
    let src = td.join("maildir");
    let r = import(&st, &[&src], None);
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    let e = python_expected(&src, "dir");
    assert!(e.files.len() > 6000, "{} message files", e.files.len());
    check_against(&st, "", &e);
    st.close().unwrap();
}

#[test]
fn testdata_eml_files_are_stored_byte_exact() {
    let Some(td) = testdata() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let st = create_store(&tmp.path().join("store"));
    let src = td.join("eml");
    let r = import(&st, &[&src], None);
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    let e = python_expected(&src, "dir");
    // Every file but the .mbox ones is a message of its own, or listed as not mail (the
    // licences, and the corpora's expected results in .xml and .json), never a .eml.
    let all = files_below(&src);
    let mboxes = all.iter().filter(|p| p.extension().is_some_and(|x| x == "mbox")).count();
    let not_mail: Vec<_> = r.ignored.iter().filter(|s| s.reason.starts_with("not a message")).collect();
    assert_eq!(e.files.len() + not_mail.len(), all.len() - mboxes);
    assert!(not_mail.iter().all(|s| s.path.extension().is_none_or(|x| x != "eml")), "{not_mail:?}");
    check_against(&st, "", &e);
    st.close().unwrap();
}

#[test]
fn testdata_export_and_reimport_is_byte_exact() {
    let Some(td) = testdata() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let st1 = create_store(&tmp.path().join("store1"));
    let r = import(&st1, &[&td.join("mbox"), &td.join("maildir"), &td.join("eml")], None);
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    assert!(r.messages > 7000, "{} messages", r.messages);
    let t1 = tree(&st1, ROOT);
    for (format, with_meta) in [("maildir", true), ("mbox", false)] {
        let dest = tmp.path().join(format);
        let r = match format {
            "maildir" => export::export_maildir(&st1, ROOT, &dest).unwrap(),
            _ => export::export_mbox(&st1, ROOT, &dest).unwrap(),
        };
        assert_eq!(r.messages, t1.values().map(|f| f.len() as u64).sum::<u64>());
        let st2 = create_store(&tmp.path().join(format!("store-{format}")));
        let r = import(&st2, &[&dest], None);
        assert!(r.skipped.is_empty(), "{:?}", r.skipped);
        assert_same_tree(&t1, &tree(&st2, st2.folder_by_path(format).unwrap()), with_meta);
        st2.close().unwrap();
    }
    st1.close().unwrap();
}

/// The SpamAssassin corpus is in the sample data twice: as Maildir files (the original
/// bytes, each starting with its From_ line) and as one mbox written by Python's mailbox
/// module (mboxo). Splitting the mbox must give back the originals, except where the
/// mboxo format itself loses information (original `>From ` lines, which the writer left
/// alone and any reader unquotes, and a missing final newline the writer added).
#[test]
fn testdata_spamassassin_mbox_matches_its_maildir_originals() {
    let Some(mbox) = msgfs::testdata::path("mbox/spamassassin-publiccorpus-all.mbox") else { return };
    let Some(mdir) = msgfs::testdata::path("maildir/spamassassin-publiccorpus") else { return };
    let mut originals: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut lossy = 0;
    for f in files_below(&mdir).into_iter().filter(|p| p.parent().is_some_and(|d| d.ends_with("cur"))) {
        let b = fs::read(&f).unwrap();
        let body =
            if b.starts_with(b"From ") { b[b.iter().position(|&c| c == b'\n').unwrap() + 1..].to_vec() } else { b };
        let quoted_from = |l: &[u8]| {
            let gts = l.iter().take_while(|&&c| c == b'>').count();
            gts > 0 && l[gts..].starts_with(b"From ")
        };
        if body.split(|&c| c == b'\n').any(quoted_from) {
            lossy += 1;
        }
        *originals.entry(body).or_default() += 1;
    }
    let data = fs::read(&mbox).unwrap();
    let messages = msgfs::import::mbox::split(&data);
    assert_eq!(messages.len(), 6046);
    let same = messages.iter().filter(|m| originals.contains_key(&m.content)).count();
    println!(
        "{same} of {} mbox messages equal their Maildir original; {lossy} originals hold >From lines",
        messages.len()
    );
    assert!(same + lossy + 1 >= messages.len(), "{same} equal, {lossy} with >From lines");
}

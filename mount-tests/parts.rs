//! `NAME.eml.parts/`: a message's decoded parts as read-only files, reached by path and
//! never listed, on a store mount and on a mounted PST; checked with real `ls`, `cat`,
//! `find`, `rsync -a`, `grep -r`, against `pffexport`'s attachment files, and on a corpus of
//! malformed MIME messages.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// A message with a body in two forms, a base64 attachment whose name has a `/` in it, an
/// RFC 2231 name, an RFC 2047 name, two attachments of one name, and an embedded message
/// with an HTML body of its own.
const MIXED: &str = "From: a@example.org\r\nSubject: parts\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"X\"\r\n\r\n\
--X\r\nContent-Type: multipart/alternative; boundary=\"Y\"\r\n\r\n\
--Y\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
caf=E9 =\r\nau lait\r\n\
--Y\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--Y--\r\n\
--X\r\nContent-Type: application/pdf; name=\"q1/q2.pdf\"\r\nContent-Disposition: attachment\r\n\
Content-Transfer-Encoding: base64\r\n\r\naGVsbG8g\r\nd29ybGQ=\r\n\
--X\r\nContent-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.txt\r\n\r\nfirst\r\n\
--X\r\nContent-Type: text/plain; name=\"=?UTF-8?B?csOpc3Vtw6kudHh0?=\"\r\n\
Content-Disposition: attachment\r\n\r\nsecond\r\n\
--X\r\nContent-Type: message/rfc822\r\n\r\nSubject: Inner\r\nContent-Type: text/html\r\n\r\n<b>inner</b>\r\n\
--X--\r\n";

const NAME: &str = "Inbox/2024-01-01 parts.eml";

fn ls(dir: &Path) -> Vec<String> {
    let out = run(Command::new("ls").arg("-A").arg(dir));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

fn raw_errno(r: std::io::Result<impl Sized>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

#[test]
fn ls_of_a_parts_folder_shows_decoded_parts_and_writes_into_it_fail_with_erofs() {
    if should_skip() {
        return;
    }
    require(&["ls", "cat"]);
    let m = Mount::with(&[], |st| put(st, "Inbox", &[("2024-01-01 parts.eml", MIXED.as_bytes())]));
    let parts = m.p(&format!("{NAME}.parts"));
    let mut names = ls(&parts);
    names.sort();
    assert_eq!(names, ["Inner.eml", "body.html", "body.txt", "q1_q2.pdf", "résumé (2).txt", "résumé.txt"]);
    let want: [(&str, &[u8]); 6] = [
        ("body.txt", b"caf\xe9 au lait"),
        ("body.html", b"<p>hi</p>"),
        ("q1_q2.pdf", b"hello world"),
        ("résumé.txt", b"first"),
        ("résumé (2).txt", b"second"),
        ("Inner.eml", b"Subject: Inner\r\nContent-Type: text/html\r\n\r\n<b>inner</b>"),
    ];
    for (name, bytes) in want {
        let p = parts.join(name);
        assert_eq!(run(Command::new("cat").arg(&p)).stdout, bytes, "{name}");
        assert_eq!(std::fs::metadata(&p).unwrap().len(), bytes.len() as u64, "{name}: size");
    }
    // The embedded message has parts of its own, by path too.
    assert_eq!(ls(&parts.join("Inner.eml.parts")), ["body.html"]);
    assert_eq!(std::fs::read(parts.join("Inner.eml.parts/body.html")).unwrap(), b"<b>inner</b>");

    // Read-only: creating, writing, removing, renaming, making folders, chmod.
    let refused = [
        raw_errno(std::fs::write(parts.join("new.txt"), b"x")),
        raw_errno(std::fs::OpenOptions::new().write(true).open(parts.join("body.txt"))),
        raw_errno(std::fs::remove_file(parts.join("body.txt"))),
        raw_errno(std::fs::rename(parts.join("body.txt"), parts.join("b.txt"))),
        raw_errno(std::fs::rename(parts.join("body.txt"), m.p("Inbox/b.txt"))),
        raw_errno(std::fs::create_dir(parts.join("d"))),
        raw_errno(std::fs::set_permissions(
            parts.join("body.txt"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )),
    ];
    for (i, e) in refused.iter().enumerate() {
        assert!(matches!(e, Some(libc::EROFS) | Some(libc::EACCES)), "write {i}: {e:?}");
    }
    assert_eq!(std::fs::read(parts.join("body.txt")).unwrap(), b"caf\xe9 au lait");

    // `msgfs parts` through the mount names the same parts.
    let out = String::from_utf8(run(Command::new(MSGFS).arg("parts").arg(m.p(NAME))).stdout).unwrap();
    for (name, _) in want {
        assert!(out.lines().any(|l| l.ends_with(&format!("  {name}"))), "{name} not in:\n{out}");
    }
    // And from outside the mount, of the same bytes in a plain file, the same lines.
    let plain = m.dir.path().join("plain.eml");
    std::fs::write(&plain, MIXED).unwrap();
    assert_eq!(String::from_utf8(run(Command::new(MSGFS).arg("parts").arg(&plain)).stdout).unwrap(), out);
    assert!(out.contains("message/rfc822  Inner.eml\n") && out.contains("text/html  body.html\n"), "{out}");

    // Gone with its message.
    std::fs::remove_file(m.p(NAME)).unwrap();
    let out = Command::new("ls").arg(&parts).output().unwrap();
    assert!(!out.status.success(), "ls of a deleted message's parts: {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(raw_errno(std::fs::read(parts.join("body.txt"))), Some(libc::ENOENT));
}

#[test]
fn find_rsync_and_grep_do_not_enter_parts_folders() {
    if should_skip() {
        return;
    }
    require(&["find", "rsync", "grep"]);
    let m = Mount::with(&[], |st| put(st, "Inbox", &[("2024-01-01 parts.eml", MIXED.as_bytes())]));
    // Looked into first, so the kernel knows the folder: still nothing lists it.
    assert!(!ls(&m.p(&format!("{NAME}.parts"))).is_empty());
    let found = String::from_utf8(run(Command::new("find").arg(&m.mp)).stdout).unwrap();
    assert!(found.contains("parts.eml") && !found.contains(".parts"), "{found}");
    let dest = m.dir.path().join("copy");
    run(Command::new("rsync").arg("-a").arg(format!("{}/", m.mp.display())).arg(&dest));
    let copied = String::from_utf8(run(Command::new("find").arg(&dest)).stdout).unwrap();
    assert!(copied.contains("parts.eml") && !copied.contains(".parts"), "{copied}");
    assert_eq!(std::fs::read(dest.join(NAME)).unwrap(), MIXED.as_bytes());
    // The decoded body text is in no file grep -r reads (only the encoded form is).
    let out = Command::new("grep").arg("-rl").arg("hello world").arg(&m.mp).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "grep -r found: {}", String::from_utf8_lossy(&out.stdout));
}

fn testdata() -> Option<PathBuf> {
    match std::env::var_os("MSGFS_TESTDATA") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            println!("skipped: MSGFS_TESTDATA is not set (it names the shared sample data, e.g. ../shared/testdata)");
            None
        }
    }
}

/// The messages of a malformed MIME corpus each give the parts that can be read, and
/// neither the message nor any part is an error.
#[test]
fn a_malformed_mime_message_gives_its_readable_parts_and_no_error() {
    if should_skip() {
        return;
    }
    let Some(data) = testdata() else { return };
    require(&["ls", "cat"]);
    let dir = data.join("eml/stalwart/resources/eml/malformed");
    let mut msgs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    msgs.sort();
    assert!(msgs.len() >= 20, "{}: only {} messages", dir.display(), msgs.len());
    let items: Vec<(&str, &[u8])> = msgs.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    let m = Mount::with(&[], |st| put(st, "Malformed", &items));
    let mut files = 0;
    for (name, bytes) in &msgs {
        let msg = m.p(&format!("Malformed/{name}"));
        assert_eq!(&run(Command::new("cat").arg(&msg)).stdout, bytes, "{name}");
        let parts = PathBuf::from(format!("{}.parts", msg.display()));
        let names = ls(&parts);
        assert!(!names.is_empty(), "{name}: no parts");
        for part in names {
            let p = parts.join(&part);
            let got = run(Command::new("cat").arg(&p)).stdout;
            assert_eq!(got.len() as u64, std::fs::metadata(&p).unwrap().len(), "{name}/{part}: size");
            files += 1;
        }
        run(Command::new(MSGFS).arg("parts").arg(&msg));
    }
    println!("{} malformed messages, {files} parts read", msgs.len());
}

/// pffexport writes some characters of a name (`/`, `:`, `?`, `~`, ...) as `_`: names are
/// compared with every such character so written.
fn name_key(name: &str) -> String {
    name.chars().map(|c| if c.is_alphanumeric() || " .-()[],'+=@#$%".contains(c) { c } else { '_' }).collect()
}

/// pffexport's attachment files of `pst`: (name key, bytes).
fn pffexport_attachments(pst: &Path, work: &Path) -> Vec<(String, Vec<u8>)> {
    let ok = Command::new("pffexport").arg("-V").output().is_ok_and(|o| o.status.success());
    assert!(ok, "pffexport is missing: install it with `apt-get install pff-tools`");
    run(Command::new("pffexport").arg("-q").arg("-t").arg(work.join("pff")).arg(pst));
    let mut out = Vec::new();
    let mut stack = vec![work.join("pff.export")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.parent().is_some_and(|d| d.ends_with("Attachments")) {
                // pffexport names them `N_name`.
                let file = p.file_name().unwrap().to_string_lossy().into_owned();
                let name = file.split_once('_').map_or(file.clone(), |(_, n)| n.to_string());
                out.push((name_key(&name), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// Every part file of every message under `root`: (name key, bytes).
fn mounted_parts(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for p in walk_files(root) {
        let parts = PathBuf::from(format!("{}.parts", p.display()));
        for part in std::fs::read_dir(&parts).unwrap_or_else(|e| panic!("{}: {e}", parts.display())) {
            let part = part.unwrap().path();
            let name = part.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name_key(&name), std::fs::read(&part).unwrap()));
        }
    }
    out
}

/// Each of `theirs` is one of `ours` (same name, same bytes), each of ours used once.
fn contains_all(label: &str, ours: &[(String, Vec<u8>)], theirs: &[(String, Vec<u8>)]) {
    let mut left: HashMap<(&str, &[u8]), usize> = HashMap::new();
    for (n, b) in ours {
        *left.entry((n.as_str(), b.as_slice())).or_default() += 1;
    }
    for (n, b) in theirs {
        match left.get_mut(&(n.as_str(), b.as_slice())) {
            Some(c) if *c > 0 => *c -= 1,
            _ => {
                let same_name: Vec<usize> = ours.iter().filter(|(o, _)| o == n).map(|(_, b)| b.len()).collect();
                panic!("{label}: pffexport's {n:?} ({} bytes) is no part; parts of that name: {same_name:?}", b.len());
            }
        }
    }
}

#[test]
fn the_enron_pst_parts_equal_pffexport_attachments_imported_and_mounted() {
    if should_skip() {
        return;
    }
    let Some(data) = testdata() else { return };
    let pst = data.join("pst/pstextractor-enron.pst");
    let tmp = tempfile::Builder::new().prefix("msgfs-test").tempdir_in(test_tmp()).unwrap();
    let theirs = pffexport_attachments(&pst, tmp.path());
    assert!(theirs.len() >= 50, "pffexport gave {} attachments", theirs.len());
    let store = tmp.path().join("store");
    run(Command::new(MSGFS).arg("import").arg("--store").arg(&store).arg(&pst));
    let mut imported = Mount::adopt(&store);
    contains_all("imported", &mounted_parts(&imported.mp), &theirs);
    // A read-only mount (no opens: READs by inode alone) gives the same.
    imported.remount(&["ro"]);
    contains_all("imported, mounted ro", &mounted_parts(&imported.mp), &theirs);
    imported.unmount();
    let mut mounted = Mount::adopt(&pst);
    contains_all("mounted PST", &mounted_parts(&mounted.mp), &theirs);
    // Read-only there too.
    let some = walk_messages(&mounted.mp);
    let parts = PathBuf::from(format!("{}.parts", some.display()));
    assert_eq!(raw_errno(std::fs::write(parts.join("x"), b"x")), Some(libc::EROFS));
    mounted.unmount();
    println!("{} pffexport attachments found byte for byte in both", theirs.len());
}

/// The first message file under `dir`.
fn walk_messages(dir: &Path) -> PathBuf {
    walk_files(dir).into_iter().next().unwrap_or_else(|| panic!("no message under {}", dir.display()))
}

/// A large base64 attachment (more than the kernel reads at once, more than fits one READ)
/// gives its decoded bytes whole and at any offset, through a read-write and a read-only
/// mount.
#[test]
fn a_large_attachment_reads_whole_and_at_any_offset() {
    use std::os::unix::fs::FileExt;
    if should_skip() {
        return;
    }
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..3_000_001)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut msg =
        b"Subject: big\r\nContent-Type: multipart/mixed; boundary=Z\r\n\r\n--Z\r\n\r\nsee attached\r\n--Z\r\n\
Content-Type: application/octet-stream; name=big.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            .to_vec();
    for chunk in data.chunks(57) {
        msg.extend_from_slice(base64(chunk).as_bytes());
        msg.extend_from_slice(b"\r\n");
    }
    msg.extend_from_slice(b"--Z--\r\n");
    let mut m = Mount::with(&[], |st| put(st, "Inbox", &[("big.eml", &msg)]));
    for opts in [&[][..], &["ro"][..]] {
        if !opts.is_empty() {
            m.remount(opts);
        }
        let p = m.p("Inbox/big.eml.parts/big.bin");
        assert_eq!(std::fs::metadata(&p).unwrap().len(), data.len() as u64, "{opts:?}");
        let f = std::fs::File::open(&p).unwrap();
        for off in [2_000_000u64, 1, 131_071, data.len() as u64 - 5, 0, data.len() as u64 + 10] {
            let mut buf = vec![0u8; 200_000];
            let n = f.read_at(&mut buf, off).unwrap();
            let start = (off as usize).min(data.len());
            assert!(n > 0 || start == data.len(), "{opts:?} at {off}: nothing read");
            assert!(buf[..n] == data[start..start + n], "{opts:?} at {off}: {n} bytes differ");
        }
        assert!(std::fs::read(&p).unwrap() == data, "{opts:?}: whole");
        assert_eq!(std::fs::read(m.p("Inbox/big.eml.parts/body.txt")).unwrap(), b"see attached");
    }
}

/// Standard base64 with padding (the test's own encoder, to build a message).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

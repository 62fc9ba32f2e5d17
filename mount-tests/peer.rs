//! Peer suites over a real mount: pjdfstest (POSIX conformance, compared with the checked-in
//! list of expected failures in pjdfstest-expected.txt) and fsx (random I/O checked byte by
//! byte against a model). Both are built from ../shared/tools in a temporary directory.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::common::*;

/// How many test files or fsx runs go at once. Most of pjdfstest's time is `sleep 1` between
/// timestamp checks and fsx waits on the daemon, so a few at once shorten the wall time on two
/// cores; each works in its own folder or file, so they do not see each other.
fn jobs() -> usize {
    std::env::var("MSGFS_PEER_JOBS").ok().and_then(|j| j.parse().ok()).filter(|&j| j > 0).unwrap_or(4)
}

fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// The tools directory: MSGFS_TOOLS, else ../shared/tools next to the crate. Outside CI a
/// missing directory skips (with a message); in CI it is a failure that says what to do.
fn tools_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("MSGFS_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools"));
    if dir.join("pjdfstest").is_dir() && dir.join("fsx").is_dir() {
        return Some(dir);
    }
    let msg = format!(
        "peer suites: {} holds no pjdfstest/ and fsx/; check out the shared tools next to the project or set MSGFS_TOOLS to their directory",
        dir.display()
    );
    assert!(!in_ci(), "{msg}");
    eprintln!("peer suite skipped: {msg}");
    None
}

/// A copy of `tools/name` in a fresh directory (the shared copy stays untouched: builds write
/// into their source tree).
fn copy_tool(tools: &Path, name: &str, into: &Path) -> PathBuf {
    run(Command::new("cp").arg("-r").arg(tools.join(name)).arg(into));
    into.join(name)
}

fn build_pjdfstest(tools: &Path, into: &Path) -> PathBuf {
    require(&["autoreconf", "autoconf", "automake", "make", "gcc", "prove", "openssl"]);
    let src = copy_tool(tools, "pjdfstest", into);
    run(Command::new("sh").arg("-c").arg("autoreconf -ifs && ./configure && make").current_dir(&src));
    assert!(src.join("pjdfstest").is_file(), "the pjdfstest build made no pjdfstest program");
    src
}

fn build_fsx(tools: &Path, into: &Path) -> PathBuf {
    require(&["gcc"]);
    let src = copy_tool(tools, "fsx", into);
    run(Command::new("gcc")
        .args(["-O2", "-D_GNU_SOURCE", "-I.", "-include", "getopt.h", "-include", "fcntl.h"])
        .args(["-include", "linux/falloc.h", "-o", "fsx", "fsx.c"])
        .current_dir(&src));
    src.join("fsx")
}

/// Run `work(i)` for i in 0..n on `jobs()` threads; results in index order.
fn parallel<T: Send>(n: usize, work: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs().min(n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = work(i);
                out.lock().unwrap()[i] = Some(r);
            });
        }
    });
    out.into_inner().unwrap().into_iter().map(|r| r.unwrap()).collect()
}

/// Check numbers as ranges: "3-5,9".
fn ranges(nums: impl IntoIterator<Item = u32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut it = nums.into_iter().peekable();
    while let Some(a) = it.next() {
        let mut b = a;
        while it.peek() == Some(&(b + 1)) {
            b = it.next().unwrap();
        }
        out.push(if a == b { a.to_string() } else { format!("{a}-{b}") });
    }
    out.join(",")
}

/// One test file's results, from its TAP output.
struct TapResult {
    /// The plan (1..N); 0 when the file printed none.
    planned: u32,
    /// Failing check numbers with their line; a check the plan promised but the file never
    /// reported (it bailed out) is a failure too. A file without a plan fails as check 0.
    failed: BTreeMap<u32, String>,
}

/// Parse pjdfstest's TAP: "1..N", "ok N", "not ok N - tried ..., expected X, got Y". A "not
/// ok N # TODO ..." is a failure the suite itself expects on this system (prove does not count
/// it), so it is not one here either.
fn parse_tap(out: &str) -> TapResult {
    let mut planned = 0;
    let mut seen = BTreeSet::new();
    let mut failed = BTreeMap::new();
    for line in out.lines() {
        if let Some(n) = line.strip_prefix("1..").and_then(|r| r.trim().parse().ok()) {
            planned = n;
        } else if let Some(rest) = line.strip_prefix("not ok ") {
            let n: u32 = rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap_or(0);
            seen.insert(n);
            if !rest.contains("# TODO") {
                failed.insert(n, line.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("ok ") {
            if let Ok(n) = rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse::<u32>() {
                seen.insert(n);
            }
        }
    }
    if planned == 0 {
        let tail: Vec<&str> = out.lines().rev().take(3).collect();
        failed.insert(0, format!("no plan; output ends: {}", tail.join(" | ")));
    }
    for n in 1..=planned {
        if !seen.contains(&n) {
            let why = out.lines().find(|l| l.starts_with("Bail out!")).unwrap_or("the file stopped early");
            failed.insert(n, format!("not run: {why}"));
        }
    }
    TapResult { planned, failed }
}

/// An entry of pjdfstest-expected.txt: `tests/DIR/*`, `tests/DIR/NN.t` (every failure in the
/// file) or `tests/DIR/NN.t:3-5,9` (those checks), then its reason.
struct Expected {
    line: usize,
    pattern: String,
    checks: Option<BTreeSet<u32>>,
    /// In the `# known bug, to be fixed:` section (a bug, not a departure).
    bug: bool,
    text: String,
}

impl Expected {
    fn file_matches(&self, file: &str) -> bool {
        match self.pattern.strip_suffix("/*") {
            Some(dir) => file.strip_prefix(dir).is_some_and(|r| r.starts_with('/')),
            None => self.pattern == file,
        }
    }

    fn covers(&self, file: &str, n: u32) -> bool {
        self.file_matches(file) && self.checks.as_ref().is_none_or(|c| c.contains(&n))
    }
}

const BUG_SECTION: &str = "# known bug, to be fixed:";

fn parse_expected(text: &str) -> Vec<Expected> {
    let mut bug = false;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with(BUG_SECTION) {
            bug = true;
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (entry, reason) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        assert!(!reason.trim().is_empty(), "pjdfstest-expected.txt line {}: no reason given: {raw}", i + 1);
        // No "may pass or fail" entries: every entry must fail every run (see the file's head).
        assert!(!entry.starts_with('~'), "pjdfstest-expected.txt line {}: no ~ entries: {raw}", i + 1);
        let (pattern, checks) = match entry.split_once(':') {
            Some((p, c)) => {
                let mut set = BTreeSet::new();
                for part in c.split(',') {
                    let (a, b) = part.split_once('-').unwrap_or((part, part));
                    let bad = || panic!("pjdfstest-expected.txt line {}: bad check list {c}", i + 1);
                    let (a, b): (u32, u32) = (a.parse().unwrap_or_else(|_| bad()), b.parse().unwrap_or_else(|_| bad()));
                    set.extend(a..=b);
                }
                (p, Some(set))
            }
            None => (entry, None),
        };
        out.push(Expected { line: i + 1, pattern: pattern.to_string(), checks, bug, text: line.to_string() });
    }
    out
}

/// How one file's run compares with the list.
struct Verdict {
    /// Failures no entry covers.
    unexpected: Vec<(u32, String)>,
    /// Entries naming this file whose checks now pass.
    stale: Vec<String>,
}

/// Compare one file's failures with the entries naming that file (directory entries are
/// judged over the whole run).
fn judge(file: &str, r: &TapResult, expected: &[Expected]) -> Verdict {
    let unexpected = r
        .failed
        .iter()
        .filter(|(n, _)| !expected.iter().any(|e| e.covers(file, **n)))
        .map(|(n, l)| (*n, l.clone()))
        .collect();
    let mut stale = Vec::new();
    for e in expected.iter().filter(|e| e.pattern == file) {
        match &e.checks {
            None if r.failed.is_empty() => stale.push(format!("line {}: {} (no check fails)", e.line, e.pattern)),
            None => {}
            Some(c) => {
                let passing: Vec<u32> = c.iter().copied().filter(|n| !r.failed.contains_key(n)).collect();
                if !passing.is_empty() {
                    stale.push(format!("line {}: {}:{}", e.line, e.pattern, ranges(passing)));
                }
            }
        }
    }
    Verdict { unexpected, stale }
}

/// Every `.t` under `dir`, as paths relative to the pjdfstest tree ("tests/chmod/00.t"),
/// sorted.
fn test_files(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![root.join("tests")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "t") {
                files.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    files
}

#[test]
fn pjdfstest_fails_only_where_the_expected_list_says() {
    if should_skip() {
        return;
    }
    let Some(tools) = tools_dir() else { return };
    let build = tempfile::Builder::new().prefix("msgfs-pjdfstest").tempdir_in(test_tmp()).unwrap();
    let started = Instant::now();
    let pjd = build_pjdfstest(&tools, build.path());
    let built = started.elapsed();
    let expected_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("mount-tests/pjdfstest-expected.txt");
    let expected = parse_expected(&std::fs::read_to_string(&expected_path).unwrap());

    // The suite switches to other uids: they must reach the daemon (allow_other) and search
    // the folder (755). Each file runs in its own folder so concurrent files never meet.
    let m = Mount::with(&["allow_other"], |_| {});
    let top = m.p("pjdfstest");
    std::fs::create_dir(&top).unwrap();
    std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o755)).unwrap();
    let files = test_files(&pjd);
    assert!(files.len() > 200, "only {} test files found under {}", files.len(), pjd.display());
    let run_file = |i: usize| {
        let dir = top.join(files[i].trim_end_matches(".t").replace('/', "_"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = Command::new("sh").arg(pjd.join(&files[i])).current_dir(&dir).output().unwrap();
        parse_tap(&String::from_utf8_lossy(&out.stdout))
    };
    // Every file runs once and that run counts: no retries (a retry until it passes would hide
    // a race), so the list holds only failures that happen every run.
    let ran = Instant::now();
    let results = parallel(files.len(), run_file);
    let run_time = ran.elapsed();

    let checks: u32 = results.iter().map(|r| r.planned).sum();
    let failures: usize = results.iter().map(|r| r.failed.len()).sum();
    let verdicts: Vec<Verdict> = files.iter().zip(&results).map(|(f, r)| judge(f, r, &expected)).collect();
    let unexpected: Vec<(String, u32, String)> = files
        .iter()
        .zip(&verdicts)
        .flat_map(|(f, v)| v.unexpected.iter().map(move |(n, l)| (f.clone(), *n, l.clone())))
        .collect();
    let mut stale: Vec<String> = verdicts.iter().flat_map(|v| v.stale.clone()).collect();
    // Directory entries (tests/DIR/*) hold while any file of the directory fails.
    // An entry naming no test file is a typo or a file the suite dropped.
    for e in &expected {
        if !files.iter().any(|f| e.file_matches(f)) {
            stale.push(format!("line {}: {} (matches no test file)", e.line, e.pattern));
        } else if e.pattern.ends_with("/*")
            && !files.iter().zip(&results).any(|(f, r)| e.file_matches(f) && !r.failed.is_empty())
        {
            stale.push(format!("line {}: {} (no file of it fails)", e.line, e.text));
        }
    }

    // For updating the list: every failure with its line, one a line.
    if let Some(path) = std::env::var_os("MSGFS_PJDFSTEST_FAILURES") {
        let mut all = String::new();
        for (f, r) in files.iter().zip(&results) {
            for (n, line) in &r.failed {
                all += &format!("{f}:{n} {line}\n");
            }
        }
        std::fs::write(path, all).unwrap();
    }

    let permanent = expected.iter().filter(|e| !e.bug).count();
    let bugs = expected.len() - permanent;
    let failing_files = results.iter().filter(|r| !r.failed.is_empty()).count();
    eprintln!(
        "pjdfstest: {} files, {checks} checks, {failures} failures in {failing_files} files; expected list: {} entries ({permanent} departures, {bugs} known bugs); build {:.0?}, run {:.0?} ({} at once)",
        files.len(),
        expected.len(),
        built,
        run_time,
        jobs()
    );

    let mut msg = String::new();
    if !unexpected.is_empty() {
        let mut by_file: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for (f, n, _) in &unexpected {
            by_file.entry(f).or_default().push(*n);
        }
        msg += &format!("{} failures not in {}:\n", unexpected.len(), expected_path.display());
        for (f, ns) in &by_file {
            msg += &format!("  {f}:{}\n", ranges(ns.iter().copied()));
        }
        msg += "first of them:\n";
        for (f, _, line) in unexpected.iter().take(60) {
            msg += &format!("  {f}: {line}\n");
        }
    }
    if !stale.is_empty() {
        msg += &format!("{} entries of {} now pass (delete them):\n", stale.len(), expected_path.display());
        for s in &stale {
            msg += &format!("  {s}\n");
        }
    }
    assert!(msg.is_empty(), "{msg}");
}

/// fsx modes: mmap reads and writes on (the default), plain read/write only, and a close and
/// reopen one operation in ten (which checks the size a reopened file reports).
const FSX_MODES: &[(&str, &[&str])] = &[("mmap", &[]), ("nommap", &["-R", "-W"]), ("reopen", &["-c", "10"])];

#[test]
fn fsx_keeps_every_byte_in_every_mode_and_seed() {
    if should_skip() {
        return;
    }
    let Some(tools) = tools_dir() else { return };
    let build = tempfile::Builder::new().prefix("msgfs-fsx").tempdir_in(test_tmp()).unwrap();
    let fsx = build_fsx(&tools, build.path());
    // fsx's logs of each run go outside the mount, so the folder holds only the files under test.
    let logs = build.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let m = Mount::new();
    std::fs::create_dir(m.p("fsx")).unwrap();

    let runs: Vec<(&str, &[&str], u32)> =
        FSX_MODES.iter().flat_map(|&(mode, args)| (1..=5).map(move |seed| (mode, args, seed))).collect();
    let started = Instant::now();
    let results = parallel(runs.len(), |i| {
        let (mode, args, seed) = runs[i];
        let t = Instant::now();
        let out = Command::new(&fsx)
            .args(["-N", "20000", "-S", &seed.to_string(), "-P"])
            .arg(&logs)
            .args(args)
            .arg(m.p(&format!("fsx/{mode}-{seed}")))
            .output()
            .unwrap();
        (out.status.success(), fsx_report(&out.stdout, &out.stderr), t.elapsed())
    });
    let wall = started.elapsed();

    let mut msg = String::new();
    for ((mode, _, seed), (ok, report, took)) in runs.iter().zip(&results) {
        eprintln!("fsx {mode} seed {seed}: {} in {took:.0?}", if *ok { "pass" } else { "FAIL" });
        if !ok {
            msg += &format!("fsx {mode} (-S {seed}, file fsx/{mode}-{seed}) failed:\n{report}\n\n");
        }
    }
    eprintln!("fsx: {} runs of 20000 operations in {wall:.0?} ({} at once)", runs.len(), jobs());
    assert!(msg.is_empty(), "{msg}");
}

/// What a failed fsx run says: its complaint (printed before the log dump), the last
/// operations of the log dump (the failing one is last), and anything on stderr other than
/// its start-up notes about calls the filesystem does not support (fallocate).
fn fsx_report(stdout: &[u8], stderr: &[u8]) -> String {
    let out = String::from_utf8_lossy(stdout);
    let lines: Vec<&str> = out.lines().collect();
    let dump = lines.iter().position(|l| l.starts_with("LOG DUMP")).unwrap_or(lines.len());
    let complaint: Vec<&str> = lines[..dump]
        .iter()
        .copied()
        .filter(|l| !l.starts_with("Seed set") && !l.starts_with("Chance of") && !l.contains("largest ever"))
        .collect();
    let ops: Vec<&str> = lines[dump..]
        .iter()
        .copied()
        .filter(|l| !l.contains("SKIPPED") && !l.starts_with("Log of operations") && !l.starts_with("Correct content"))
        // Its hexdump hint names files in temporary directories that are gone by now.
        .filter(|l| !l.starts_with("(maybe hexdump"))
        .collect();
    let ops = &ops[ops.len().saturating_sub(8)..];
    let err = String::from_utf8_lossy(stderr);
    let err: Vec<&str> = err.lines().filter(|l| !l.starts_with("main: ")).collect();
    format!("{}\n  last operations:\n  {}\n{}", complaint.join("\n"), ops.join("\n  "), err.join("\n"))
}

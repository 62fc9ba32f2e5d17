//! Store benchmark: import rate, SaveChanges rate under group commit, open time and memory
//! per message, and folder listing, on a real disk. It prints figures and asserts nothing
//! about speed. Run `cargo bench --bench store`; scale down with `MSGFS_BENCH_SCALE=0.1`
//! (knobs in benches/README.md).
//!
//! Open-time and memory figures are taken in child processes (this program run again with
//! `child ...` arguments): each starts with an empty heap, so its resident-memory delta is
//! the open store's, and a child that exits without `Store::close` leaves the store exactly
//! as a killed daemon would (no clean marker, the log tail after the last checkpoint).

use std::collections::HashMap;
use std::error::Error;
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use msgfs::store::{flags, Attrs, Child, Entry, Id, NewMessage, Options, SaveFlags, Store, ROOT};

type Res<T> = Result<T, Box<dyn Error>>;

const MB: f64 = 1e6;

// ---------------------------------------------------------------------------------------
// Configuration

struct Config {
    scale: f64,
    base: PathBuf,
    only: String,
    reps: usize,
    save_secs: f64,
    /// Store sizes section c opens (before scaling).
    open_sizes: Vec<usize>,
}

impl Config {
    fn from_env_and_args(args: &[String]) -> Res<Config> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut cfg = Config {
            scale: env("MSGFS_BENCH_SCALE").map_or(Ok(1.0), |v| v.parse())?,
            base: env("MSGFS_BENCH_DIR").map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from),
            only: env("MSGFS_BENCH_ONLY").unwrap_or_else(|| "abcd".into()),
            reps: env("MSGFS_BENCH_REPS").map_or(Ok(3), |v| v.parse())?,
            save_secs: env("MSGFS_BENCH_SAVE_SECS").map_or(Ok(3.0), |v| v.parse())?,
            open_sizes: env("MSGFS_BENCH_OPEN_SIZES")
                .unwrap_or_else(|| "100000,1000000".into())
                .split(',')
                .map(|n| n.trim().parse::<usize>())
                .collect::<Result<_, _>>()?,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
            match a.as_str() {
                "--scale" => cfg.scale = val()?.parse()?,
                "--dir" => cfg.base = PathBuf::from(val()?),
                "--only" => cfg.only = val()?,
                "--reps" => cfg.reps = val()?.parse()?,
                "--save-secs" => cfg.save_secs = val()?.parse()?,
                // `cargo bench` passes --bench (and a filter, if given): not ours.
                "--bench" => {}
                other => eprintln!("note: ignoring argument {other:?}"),
            }
        }
        if cfg.scale.is_nan() || cfg.scale <= 0.0 || cfg.reps == 0 {
            return Err("scale must be > 0 and reps >= 1".into());
        }
        Ok(cfg)
    }

    /// `n` scaled, never below 1000.
    fn n(&self, n: usize) -> usize {
        ((n as f64 * self.scale).round() as usize).max(1000)
    }

    fn runs(&self, section: char) -> bool {
        self.only.contains(section)
    }
}

// ---------------------------------------------------------------------------------------
// Small helpers: statistics, /proc, a deterministic generator

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// A field of /proc/self/status in kB (VmRSS, VmHWM).
fn status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// (read syscalls, bytes read) so far, from /proc/self/io.
fn proc_io() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let get = |k: &str| s.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    (get("syscr:"), get("rchar:"))
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| rd.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const WORDS: &[&str] = &[
    "the",
    "meeting",
    "report",
    "quarterly",
    "budget",
    "project",
    "update",
    "please",
    "review",
    "attached",
    "draft",
    "schedule",
    "tomorrow",
    "thanks",
    "regards",
    "invoice",
    "customer",
    "release",
    "server",
    "backup",
    "question",
    "about",
    "numbers",
    "team",
    "lunch",
    "friday",
    "agenda",
    "notes",
    "follow",
    "up",
    "on",
    "our",
    "call",
    "with",
    "the",
    "vendor",
    "contract",
    "renewal",
    "deadline",
    "next",
    "week",
    "status",
    "of",
    "migration",
    "mailbox",
    "storage",
    "travel",
    "plans",
    "conference",
    "slides",
    "feedback",
    "proposal",
    "summary",
    "and",
    "minutes",
    "from",
    "board",
    "decision",
    "approved",
    "pending",
    "issue",
    "ticket",
    "fixed",
];

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One generated message, as an importer would hand it to the store.
struct Generated {
    name: String,
    content: Vec<u8>,
    mtime_ns: i64,
    /// The mbox separator line (without newline).
    from_line: String,
}

/// A realistic message of about `target` bytes: a dozen headers, then wrapped text.
fn generate(rng: &mut Rng, i: usize, target: usize) -> Generated {
    let (y, mo, d) = (2019 + rng.below(6) as i64, 1 + rng.below(12) as i64, 1 + rng.below(28) as i64);
    let (h, mi, s) = (rng.below(24), rng.below(60), rng.below(60));
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + (h * 3600 + mi * 60 + s) as i64;
    let wd = WEEKDAYS[(days + 4).rem_euclid(7) as usize];
    let mon = MONTHS[(mo - 1) as usize];
    let nwords = 3 + rng.below(6) as usize;
    let mut subject = String::new();
    for k in 0..nwords {
        let w = WORDS[rng.below(WORDS.len() as u64) as usize];
        if k == 0 {
            let mut c = w.chars();
            subject.extend(c.next().map(|c| c.to_ascii_uppercase()));
            subject.push_str(c.as_str());
        } else {
            subject.push(' ');
            subject.push_str(w);
        }
    }
    let sender = rng.below(500);
    let mut m = format!(
        "Return-Path: <user{sender}@example.org>\n\
         Received: from mail.example.org (mail.example.org [192.0.2.{ip}])\n\
         \tby mx.example.net with ESMTPS id {id:016x}\n\
         \tfor <bob@example.net>; {wd}, {d} {mon} {y} {h:02}:{mi:02}:{s:02} +0000\n\
         From: User {sender} <user{sender}@example.org>\n\
         To: Bob Example <bob@example.net>\n\
         Subject: {subject}\n\
         Date: {wd}, {d} {mon} {y} {h:02}:{mi:02}:{s:02} +0000\n\
         Message-ID: <{i}.{id:016x}@example.org>\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: 8bit\n\n",
        ip = rng.below(250) + 1,
        id = rng.next(),
    );
    let mut line = 0;
    while m.len() < target {
        let w = WORDS[rng.below(WORDS.len() as u64) as usize];
        if line + w.len() + 1 > 72 {
            m.push('\n');
            line = 0;
        } else if line > 0 {
            m.push(' ');
            line += 1;
        }
        m.push_str(w);
        line += w.len();
    }
    m.push('\n');
    Generated {
        name: format!("{y:04}-{mo:02}-{d:02} {subject} ({i}).eml"),
        content: m.into_bytes(),
        mtime_ns: secs * 1_000_000_000,
        from_line: format!("From user{sender}@example.org {wd} {mon} {d:2} {h:02}:{mi:02}:{s:02} {y}"),
    }
}

/// Message sizes between 2 and 20 KB, log-uniform (mean about 7.8 KB), as mail is.
fn realistic_size(rng: &mut Rng) -> usize {
    (2048.0 * 10f64.powf(rng.unit())) as usize
}

fn ids() -> (u32, u32) {
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    unsafe { (libc::getuid(), libc::getgid()) }
}

fn file_attrs(mtime: i64) -> Attrs {
    let (uid, gid) = ids();
    Attrs { mode: libc::S_IFREG | 0o600, uid, gid, mtime }
}

fn dir_attrs() -> Attrs {
    let (uid, gid) = ids();
    Attrs { mode: libc::S_IFDIR | 0o700, uid, gid, mtime: 0 }
}

fn create_opts() -> Options {
    Options { create: true, ..Default::default() }
}

fn stat(st: &Store) -> (u64, u64, u64) {
    let s = &st.shared().stats;
    (s.log_syncs.load(Ordering::Relaxed), s.frames.load(Ordering::Relaxed), s.checkpoints.load(Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------
// Child processes: build a store, open it (measuring time and memory), close it

/// Run this program again as `child ARGS...` and parse its `RESULT k=v ...` line.
fn child(args: &[&str]) -> Res<HashMap<String, String>> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe).arg("child").args(args).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "child {args:?} failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("child {args:?} printed no RESULT line: {stdout}"))?;
    Ok(line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

fn num(r: &HashMap<String, String>, k: &str) -> f64 {
    r.get(k).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

fn child_main(args: &[String]) -> Res<()> {
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    match a.as_slice() {
        ["build", dir, n, per_folder] => child_build(Path::new(dir), n.parse()?, per_folder.parse()?),
        ["open", dir, evict] => child_open(Path::new(dir), *evict == "1"),
        ["close", dir] => {
            let t = Instant::now();
            let st = Store::open(Path::new(dir), Options::default())?;
            let open_s = t.elapsed().as_secs_f64();
            let replayed = st.report().replayed_records;
            let t = Instant::now();
            st.close()?;
            println!("RESULT open_s={open_s} close_s={} replayed={replayed}", t.elapsed().as_secs_f64());
            Ok(())
        }
        _ => Err(format!("unknown child command {a:?}").into()),
    }
}

/// Build a store of `n` tiny messages through the import API, `per_folder` to a folder,
/// then exit WITHOUT closing it: the store is left as after a crash.
fn child_build(dir: &Path, n: usize, per_folder: usize) -> Res<()> {
    let t = Instant::now();
    let st = Store::open(dir, create_opts())?;
    let nfolders = n.div_ceil(per_folder);
    let mut folders = Vec::new();
    for k in 0..nfolders {
        folders.push(if nfolders == 1 {
            st.folder_by_path("Inbox")?
        } else {
            st.create_folder(ROOT, &format!("f{k:03}"), dir_attrs())?
        });
    }
    const BATCH: usize = 10_000;
    let mut rng = Rng(0x5eed_1234_abcd_0003);
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        let mut batch = Vec::with_capacity(end - i);
        for k in i..end {
            // Names as an import makes them (`YYYY-MM-DD Subject (k).eml`, about 50 bytes),
            // since they are part of what the index keeps; the content is a tiny stub.
            let name = generate(&mut rng, k, 0).name;
            let body = format!("Subject: m{k}\n\nx\n");
            let (staged, crc) = st.stage_content(body.as_bytes())?;
            batch.push(NewMessage {
                folder: folders[k / per_folder],
                name,
                staged,
                size: body.len() as u64,
                crc,
                attrs: file_attrs(1_700_000_000_000_000_000),
                flags: flags::SEEN,
            });
        }
        st.import_messages(batch)?;
        i = end;
    }
    let (syncs, frames, cps) = stat(&st);
    println!("RESULT build_s={} log_syncs={syncs} frames={frames} checkpoints={cps}", t.elapsed().as_secs_f64());
    std::io::stdout().flush()?;
    // No close: leave the store unclean, with its log tail, as a killed daemon would.
    std::process::exit(0);
}

/// Drop the checkpoint and log segments from the page cache (they are synced, so their
/// pages are clean): the open then reads them from the disk, as after a reboot.
fn evict(dir: &Path) {
    use std::os::fd::AsRawFd;
    let mut files = vec![dir.join("checkpoint")];
    if let Ok(rd) = std::fs::read_dir(dir.join("log")) {
        files.extend(rd.filter_map(|e| Some(e.ok()?.path())));
    }
    for p in files {
        if let Ok(f) = std::fs::File::open(&p) {
            // SAFETY: a valid descriptor we own, for the duration of the call.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
    }
}

/// Open the store and report time, resident memory and what the open did. Leaves the store
/// as it found it: a clean store is closed again, an unclean one is left unclean.
fn child_open(dir: &Path, evict_first: bool) -> Res<()> {
    if evict_first {
        evict(dir);
    }
    let rss0 = status_kb("VmRSS:");
    let t = Instant::now();
    let st = Store::open(dir, Options::default())?;
    let open_s = t.elapsed().as_secs_f64();
    let rss1 = status_kb("VmRSS:");
    let hwm = status_kb("VmHWM:");
    let (msgs, folders) = {
        let ix = st.index();
        (ix.message_count(), ix.folder_count() + 1)
    };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    let rss2 = status_kb("VmRSS:");
    // The first listing after open, as the first `ls -l` of a folder: every entry's name,
    // size, mode and mtime, from the folder the builder filled first.
    let (list_s, listed, rss3) = {
        let t = Instant::now();
        let ix = st.index();
        let folder = ix.lookup(ROOT, "f000").or_else(|| ix.lookup(ROOT, "Inbox")).map(|e| match e {
            Entry::Folder(id) | Entry::Message(id) => id,
        });
        let mut total = 0u64;
        let mut listed = 0usize;
        if let Some(folder) = folder {
            for (name, child) in ix.children(folder)? {
                if let Child::Message(_, m) = child {
                    total += m.size() + name.len() as u64 + u64::from(m.attrs().mode) + m.attrs().mtime as u64;
                    listed += 1;
                }
            }
        }
        black_box(total);
        drop(ix);
        (t.elapsed().as_secs_f64(), listed, status_kb("VmRSS:"))
    };
    let rep = st.report().clone();
    println!(
        "RESULT open_s={open_s} rss0_kb={rss0} rss1_kb={rss1} hwm_kb={hwm} trimmed_kb={rss2} \
         messages={msgs} folders={folders} \
         list_s={list_s} listed={listed} listed_kb={rss3} \
         was_clean={} replayed={} removed_objects={} removed_staging={} torn={}",
        rep.was_clean,
        rep.replayed_records,
        rep.removed_objects,
        rep.removed_staging,
        rep.torn_tail_cut.is_some()
    );
    std::io::stdout().flush()?;
    if rep.was_clean {
        st.close()?;
        Ok(())
    } else {
        std::process::exit(0);
    }
}

// ---------------------------------------------------------------------------------------
// a) import through the batch API

struct Imported {
    store: Store,
    inbox: Id,
    n: usize,
}

fn bench_import(cfg: &Config, root: &Path, summary: &mut Vec<String>) -> Res<Imported> {
    let n = cfg.n(100_000);
    const BATCH: usize = 1000;
    println!("\n== a) import {n} messages of 2-20 KB: stage_content + import_messages, batches of {BATCH}");
    let dir = root.join("import");
    let st = Store::open(&dir, create_opts())?;
    let inbox = st.folder_by_path("Inbox")?;
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (s0, f0, c0) = stat(&st);
    let (mut stage_t, mut commit_t) = (Duration::ZERO, Duration::ZERO);
    let mut bytes = 0u64;
    let mut batch_rates = Vec::new();
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        // Generating the messages is the importer's work, not the store's: not timed.
        let gen: Vec<Generated> = (i..end)
            .map(|k| {
                let size = realistic_size(&mut rng);
                generate(&mut rng, k, size)
            })
            .collect();
        let t0 = Instant::now();
        let mut msgs = Vec::with_capacity(gen.len());
        for g in gen {
            let (staged, crc) = st.stage_content(&g.content)?;
            bytes += g.content.len() as u64;
            msgs.push(NewMessage {
                folder: inbox,
                name: g.name,
                staged,
                size: g.content.len() as u64,
                crc,
                attrs: file_attrs(g.mtime_ns),
                flags: flags::SEEN,
            });
        }
        let t1 = Instant::now();
        st.import_messages(msgs)?;
        let t2 = Instant::now();
        stage_t += t1 - t0;
        commit_t += t2 - t1;
        batch_rates.push((end - i) as f64 / (t2 - t0).as_secs_f64());
        i = end;
    }
    let total = (stage_t + commit_t).as_secs_f64();
    let (s1, f1, c1) = stat(&st);
    let rate = n as f64 / total;
    let mbs = bytes as f64 / MB / total;
    println!(
        "  messages               {n} ({:.1} MB of content, mean {:.1} KB)",
        bytes as f64 / MB,
        bytes as f64 / n as f64 / 1e3
    );
    println!(
        "  time                   {total:.2} s (staging {:.2} s, import_messages {:.2} s)",
        stage_t.as_secs_f64(),
        commit_t.as_secs_f64()
    );
    println!("  rate                   {rate:.0} messages/s, {mbs:.1} MB/s");
    println!("  median batch rate      {:.0} messages/s", median(batch_rates));
    println!("  log syncs / frames     {} / {} (checkpoints during import: {})", s1 - s0, f1 - f0, c1 - c0);
    summary.push(format!("a) import {n} msgs (2-20 KB) via batch API: {rate:.0} msg/s, {mbs:.1} MB/s ({total:.1} s; staging {:.1} s, commit {:.1} s)", stage_t.as_secs_f64(), commit_t.as_secs_f64()));
    Ok(Imported { store: st, inbox, n })
}

/// Time `msgfs import` on a generated mbox, if the command works yet.
fn bench_cli_import(cfg: &Config, root: &Path, summary: &mut Vec<String>) -> Res<()> {
    let n = cfg.n(100_000);
    println!("\n== a') `msgfs import` of a generated {n}-message mbox");
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_msgfs"));
    let write_mbox = |path: &Path, count: usize| -> Res<u64> {
        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut rng = Rng(0x5eed_1234_abcd_0002);
        let mut bytes = 0;
        for k in 0..count {
            let size = realistic_size(&mut rng);
            let g = generate(&mut rng, k, size);
            writeln!(w, "{}", g.from_line)?;
            w.write_all(&g.content)?;
            w.write_all(b"\n")?;
            bytes += g.content.len() as u64;
        }
        w.flush()?;
        Ok(bytes)
    };
    let run = |store: &Path, mbox: &Path| -> Res<(bool, String, f64)> {
        let init = Command::new(&exe).arg("init").arg(store).output()?;
        if !init.status.success() {
            return Ok((false, format!("msgfs init failed: {}", String::from_utf8_lossy(&init.stderr).trim()), 0.0));
        }
        let t = Instant::now();
        let out = Command::new(&exe).arg("import").arg("--store").arg(store).arg(mbox).output()?;
        let secs = t.elapsed().as_secs_f64();
        let err = String::from_utf8_lossy(&out.stderr);
        let msg = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        Ok((out.status.success(), msg, secs))
    };
    let count = |store: &Path| -> Res<usize> {
        let st = Store::open(store, Options { read_only: true, ..Default::default() })?;
        let n = st.index().message_count();
        Ok(n)
    };
    // A three-message probe first: the command may not be written yet.
    let probe = root.join("cli-probe.mbox");
    write_mbox(&probe, 3)?;
    let (ok, msg, _) = run(&root.join("cli-probe"), &probe)?;
    let got = if ok { count(&root.join("cli-probe"))? } else { 0 };
    if !ok || got != 3 {
        let why = if ok { format!("it imported {got} of 3 probe messages") } else { format!("{msg:?}") };
        println!("  not available: `{} import` {why}", exe.display());
        summary.push(format!("a') msgfs import: not available ({why})"));
        return Ok(());
    }
    let mbox = root.join("cli.mbox");
    let bytes = write_mbox(&mbox, n)?;
    let store = root.join("cli-store");
    let (ok, msg, secs) = run(&store, &mbox)?;
    if !ok {
        println!("  failed after {secs:.1} s: {msg}");
        summary.push(format!("a') msgfs import: failed ({msg})"));
        return Ok(());
    }
    let got = count(&store)?;
    let rate = n as f64 / secs;
    let mbs = bytes as f64 / MB / secs;
    println!(
        "  {got} of {n} messages imported in {secs:.2} s: {rate:.0} messages/s, {mbs:.1} MB/s (process start to exit)"
    );
    summary.push(format!("a') msgfs import {n}-msg mbox: {rate:.0} msg/s, {mbs:.1} MB/s ({got} imported)"));
    let _ = std::fs::remove_file(&mbox);
    let _ = std::fs::remove_dir_all(&store);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// b) concurrent SaveChanges and group commit

struct SaveRun {
    saves: u64,
    secs: f64,
    syncs: u64,
    frames: u64,
    latencies_ms: Vec<f64>,
}

fn run_writers(st: &Store, folder: Id, writers: usize, secs: f64, new_msgs: bool, tag: &str) -> Res<SaveRun> {
    let payload: Vec<Vec<u8>> = (0..writers).map(|w| generate(&mut Rng(0x77 + w as u64), w, 4096).content).collect();
    let ready = Barrier::new(writers + 1);
    let go = Barrier::new(writers + 1);
    let stop_at = AtomicU64::new(0);
    let started = Instant::now();
    let (before, results) = std::thread::scope(|s| -> Res<_> {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (ready, go, stop_at, payload) = (&ready, &go, &stop_at, &payload[w]);
                s.spawn(move || -> Result<(u64, Vec<f64>), String> {
                    let setup = || -> msgfs::store::Result<Option<Id>> {
                        if new_msgs {
                            return Ok(None);
                        }
                        let mut t = st.begin_new(folder, &format!("{tag}-w{w}.eml"))?;
                        t.write_at(payload, 0)?;
                        Ok(Some(t.save(SaveFlags(0))?.id))
                    };
                    let own = setup();
                    ready.wait();
                    go.wait();
                    let own = own.map_err(|e| e.to_string())?;
                    let deadline = stop_at.load(Ordering::Relaxed);
                    let mut lat = Vec::new();
                    let mut n = 0u64;
                    while (started.elapsed().as_nanos() as u64) < deadline {
                        let t0 = Instant::now();
                        let mut t = match own {
                            Some(id) => st.begin(id),
                            None => st.begin_new(folder, &format!("{tag}-w{w}-{n}.eml")),
                        }
                        .map_err(|e| e.to_string())?;
                        t.write_at(payload, 0).map_err(|e| e.to_string())?;
                        t.set_len(payload.len() as u64).map_err(|e| e.to_string())?;
                        t.save(SaveFlags(0)).map_err(|e| e.to_string())?;
                        lat.push(t0.elapsed().as_secs_f64() * 1e3);
                        n += 1;
                    }
                    Ok((n, lat))
                })
            })
            .collect();
        ready.wait();
        let before = (stat(st), Instant::now());
        stop_at.store((started.elapsed() + Duration::from_secs_f64(secs)).as_nanos() as u64, Ordering::Relaxed);
        go.wait();
        let mut results = Vec::new();
        for h in handles {
            results.push(h.join().map_err(|_| "writer panicked")??);
        }
        Ok((before, results))
    })?;
    let ((s0, f0, _), t0) = before;
    let elapsed = t0.elapsed().as_secs_f64();
    let (s1, f1, _) = stat(st);
    let mut latencies_ms = Vec::new();
    let mut saves = 0;
    for (n, l) in results {
        saves += n;
        latencies_ms.extend(l);
    }
    Ok(SaveRun { saves, secs: elapsed, syncs: s1 - s0, frames: f1 - f0, latencies_ms })
}

fn bench_saves(cfg: &Config, root: &Path, summary: &mut Vec<String>) -> Res<()> {
    let secs = (cfg.save_secs * cfg.scale.min(1.0)).max(0.5);
    println!("\n== b) SaveChanges: each writer begin / write 4 KB / save(SaveFlags(0)), {secs:.1} s per run, {} runs, median", cfg.reps);
    let st = Store::open(&root.join("saves"), create_opts())?;
    let folder = st.folder_by_path("Inbox")?;
    println!(
        "  {:<36} {:>9} {:>14} {:>9} {:>9} {:>11}",
        "", "saves/s", "log syncs/save", "p50 ms", "p99 ms", "saves/run"
    );
    let kinds = std::env::var("MSGFS_BENCH_SAVE_KIND").unwrap_or_default();
    for (new_msgs, what) in [(false, "update own message"), (true, "new message (begin_new)")] {
        if (kinds == "update" && new_msgs) || (kinds == "new" && !new_msgs) {
            continue;
        }
        for writers in [1usize, 8] {
            let mut rates = Vec::new();
            let mut per_save = Vec::new();
            let mut lat = Vec::new();
            let mut counts = Vec::new();
            for rep in 0..cfg.reps {
                let tag = format!("{}{writers}r{rep}", if new_msgs { "n" } else { "u" });
                let r = run_writers(&st, folder, writers, secs, new_msgs, &tag)?;
                rates.push(r.saves as f64 / r.secs);
                per_save.push(r.syncs as f64 / r.saves.max(1) as f64);
                debug_assert!(r.frames <= r.syncs);
                lat.extend(r.latencies_ms);
                counts.push(r.saves as f64);
            }
            lat.sort_by(|a, b| a.total_cmp(b));
            let label = format!("{what}, {writers} writer{}", if writers > 1 { "s" } else { "" });
            let (rate, sps) = (median(rates), median(per_save));
            println!(
                "  {label:<36} {rate:>9.0} {sps:>14.3} {:>9.2} {:>9.2} {:>11.0}",
                percentile(&lat, 0.5),
                percentile(&lat, 0.99),
                median(counts)
            );
            summary.push(format!(
                "b) {label}: {rate:.0} saves/s, {sps:.3} log syncs/save, p50 {:.2} ms, p99 {:.2} ms",
                percentile(&lat, 0.5),
                percentile(&lat, 0.99)
            ));
        }
    }
    st.close()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// c) open time and memory

struct OpenFig {
    open_s: f64,
    delta_kb: f64,
    peak_kb: f64,
    trimmed_kb: f64,
    /// The first listing after open: seconds, and the resident memory it added.
    list_s: f64,
    list_kb: f64,
    last: HashMap<String, String>,
}

fn measure_opens(dir: &Path, reps: usize, evict_first: bool) -> Res<OpenFig> {
    let mut t = Vec::new();
    let mut d = Vec::new();
    let mut p = Vec::new();
    let mut tr = Vec::new();
    let (mut ls, mut lk) = (Vec::new(), Vec::new());
    let mut last = HashMap::new();
    for _ in 0..reps {
        let r = child(&["open", &dir.display().to_string(), if evict_first { "1" } else { "0" }])?;
        t.push(num(&r, "open_s"));
        d.push(num(&r, "rss1_kb") - num(&r, "rss0_kb"));
        p.push(num(&r, "hwm_kb") - num(&r, "rss0_kb"));
        tr.push(num(&r, "trimmed_kb") - num(&r, "rss0_kb"));
        ls.push(num(&r, "list_s"));
        lk.push(num(&r, "listed_kb") - num(&r, "trimmed_kb"));
        last = r;
    }
    Ok(OpenFig {
        open_s: median(t),
        delta_kb: median(d),
        peak_kb: median(p),
        trimmed_kb: median(tr),
        list_s: median(ls),
        list_kb: median(lk),
        last,
    })
}

fn print_open(tag: &str, label: &str, n: usize, f: &OpenFig, summary: &mut Vec<String>) {
    let per = |kb: f64| kb * 1024.0 / n as f64;
    let r = &f.last;
    println!(
        "  {label:<34} {:>8.3} s  RSS +{:>7.1} MB = {:>4.0} B/msg  (peak +{:.1} MB = {:.0} B/msg; after malloc_trim {:.0} B/msg)  replayed {} records{}",
        f.open_s,
        f.delta_kb / 1024.0,
        per(f.delta_kb),
        f.peak_kb / 1024.0,
        per(f.peak_kb),
        per(f.trimmed_kb),
        r.get("replayed").map_or("?", |s| s.as_str()),
        if r.get("was_clean").map(|s| s.as_str()) == Some("false") {
            format!(", {} unreferenced objects removed", r.get("removed_objects").map_or("?", |s| s.as_str()))
        } else {
            String::new()
        }
    );
    let listed = r.get("listed").map_or("?", |s| s.as_str());
    println!(
        "  {:<34} {:>8.1} ms RSS +{:.1} MB ({listed} entries)",
        "  then the first listing",
        f.list_s * 1e3,
        f.list_kb / 1024.0
    );
    summary.push(format!(
        "{tag} {n} msgs, {label}: open {:.3} s, RSS +{:.1} MB = {:.0} B/msg (peak {:.0} B/msg), replayed {}; \
         first listing of {listed} entries {:.1} ms, RSS +{:.1} MB",
        f.open_s,
        f.delta_kb / 1024.0,
        per(f.delta_kb),
        per(f.peak_kb),
        r.get("replayed").map_or("?", |s| s.as_str()),
        f.list_s * 1e3,
        f.list_kb / 1024.0
    ));
}

fn bench_open(cfg: &Config, root: &Path, summary: &mut Vec<String>) -> Res<()> {
    println!("\n== c) Store::open time and resident memory (child processes; tiny contents, import-style names of about 50 bytes; {} runs, median)", cfg.reps);
    let mut sizes: Vec<usize> = cfg.open_sizes.iter().map(|&n| cfg.n(n)).collect();
    sizes.dedup();
    for n in sizes {
        let dir = root.join(format!("open-{n}"));
        let d = dir.display().to_string();
        println!("  -- {n} messages");
        let b = child(&["build", &d, &n.to_string(), "100000"])?;
        println!(
            "  built in {:.1} s through import_messages (batches of 10000; {} log syncs, {} checkpoints written), then the builder exited without close",
            num(&b, "build_s"),
            b.get("log_syncs").map_or("?", |s| s.as_str()),
            b.get("checkpoints").map_or("?", |s| s.as_str()),
        );
        let log_bytes = dir_bytes(&dir.join("log"));
        let ck = file_len(&dir.join("checkpoint"));
        println!("  on disk: checkpoint {:.1} MB, log {:.1} MB", ck as f64 / MB, log_bytes as f64 / MB);
        let unclean = measure_opens(&dir, cfg.reps, false)?;
        print_open("c)", "unclean open (after kill)", n, &unclean, summary);
        let c = child(&["close", &d])?;
        println!(
            "  clean close after that: {:.3} s (it writes a checkpoint of {n} messages: {:.1} MB)",
            num(&c, "close_s"),
            file_len(&dir.join("checkpoint")) as f64 / MB
        );
        let clean = measure_opens(&dir, cfg.reps, false)?;
        print_open("c)", "clean open (page cache warm)", n, &clean, summary);
        let cold = measure_opens(&dir, cfg.reps, true)?;
        print_open("c)", "clean open (checkpoint evicted)", n, &cold, summary);
        let t = Instant::now();
        std::fs::remove_dir_all(&dir)?;
        println!("  (removed the store in {:.1} s)", t.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The imported store's own open: realistic names (about 60 bytes) cost more than tiny ones.
fn bench_open_imported(cfg: &Config, dir: &Path, n: usize, summary: &mut Vec<String>) -> Res<()> {
    println!("\n== c') Store::open of the imported store ({n} messages, realistic names; {} runs, median)", cfg.reps);
    let clean = measure_opens(dir, cfg.reps, false)?;
    print_open("c')", "clean open, imported store", n, &clean, summary);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// d) listing a folder

fn bench_list(cfg: &Config, imp: &Imported, summary: &mut Vec<String>) -> Res<()> {
    let st = &imp.store;
    let reps = cfg.reps.max(5);
    println!("\n== d) list a folder of {} messages from the index (name, id, size, mode, mtime of each; {reps} runs, median)", imp.n);
    // What reading /proc/self/io twice costs, to subtract.
    let (a0, _) = proc_io();
    let (a1, _) = proc_io();
    let base_calls = a1 - a0;
    let mut times = Vec::new();
    let mut lookups = Vec::new();
    let (mut calls, mut bytes) = (0, 0);
    let mut count = 0;
    for _ in 0..reps {
        let (c0, b0) = proc_io();
        let t = Instant::now();
        let mut total = 0u64;
        count = 0;
        {
            let ix = st.index();
            for (name, child) in ix.children(imp.inbox)? {
                if let Child::Message(_, m) = child {
                    total += m.size() + name.len() as u64 + u64::from(m.attrs().mode) + m.attrs().mtime as u64;
                    count += 1;
                }
            }
        }
        black_box(total);
        times.push(t.elapsed().as_secs_f64());
        let (c1, b1) = proc_io();
        calls = c1 - c0 - base_calls;
        bytes = b1 - b0;
        // Then the way a FUSE lookup finds each entry: by name, one lock per lookup.
        let names: Vec<_> = st.index().children(imp.inbox)?.map(|(n, _)| n.to_string()).collect();
        let t = Instant::now();
        for name in &names {
            black_box(st.lookup(imp.inbox, name)?);
        }
        lookups.push(t.elapsed().as_secs_f64());
    }
    let (list, look) = (median(times), median(lookups));
    println!(
        "  one pass over the children  {:.2} ms ({:.0} ns/entry), {count} entries",
        list * 1e3,
        list * 1e9 / count.max(1) as f64
    );
    println!("  lookup of every name        {:.2} ms ({:.0} ns/lookup)", look * 1e3, look * 1e9 / count.max(1) as f64);
    println!("  read syscalls during the pass: {calls} (beyond reading /proc/self/io itself), {bytes} bytes incl. that: no content is read");
    summary.push(format!(
        "d) list {count} msgs: {:.2} ms ({:.0} ns/entry), lookups {:.0} ns each, {calls} content reads",
        list * 1e3,
        list * 1e9 / count.max(1) as f64,
        look * 1e9 / count.max(1) as f64
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------

fn describe_environment(cfg: &Config) {
    let fs = std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && cfg.base.starts_with(f[1]))
                .then(|| (f[1].len(), format!("{} on {} ({})", f[0], f[1], f[2])))
        })
        .max()
        .map(|(_, s)| s)
        .unwrap_or_else(|| "unknown".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let git = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "log", "-1", "--format=%h %s"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let dirty = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "status", "--porcelain", "src"])
        .output()
        .ok()
        .map(|o| o.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count())
        .unwrap_or(0);
    println!("msgfs store benchmark");
    println!("  scale {} | {} runs per figure | {cpus} CPUs | load {}", cfg.scale, cfg.reps, load.trim());
    println!("  directory {} on {fs}", cfg.base.display());
    if fs.contains("(tmpfs)") {
        println!("  WARNING: tmpfs: syncs cost nothing here; set MSGFS_BENCH_DIR to a real disk");
    }
    println!(
        "  code: {git}{}",
        if dirty > 0 { format!(" + {dirty} uncommitted files under src/") } else { String::new() }
    );
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(|s| s.as_str()) == Some("child") {
        return child_main(&args[1..]);
    }
    let cfg = Config::from_env_and_args(&args)?;
    describe_environment(&cfg);
    let tmp = tempfile::Builder::new().prefix("msgfs-bench-").tempdir_in(&cfg.base)?;
    let root = tmp.path();
    let started = Instant::now();
    let mut summary = Vec::new();
    if cfg.runs('a') || cfg.runs('d') {
        let imp = bench_import(&cfg, root, &mut summary)?;
        if cfg.runs('d') {
            bench_list(&cfg, &imp, &mut summary)?;
        }
        let t = Instant::now();
        imp.store.close()?;
        println!(
            "\n  closing the imported store (checkpoint of {} messages): {:.3} s",
            imp.n,
            t.elapsed().as_secs_f64()
        );
        if cfg.runs('c') {
            bench_open_imported(&cfg, &root.join("import"), imp.n, &mut summary)?;
        }
        std::fs::remove_dir_all(root.join("import"))?;
        if cfg.runs('a') {
            bench_cli_import(&cfg, root, &mut summary)?;
        }
    }
    if cfg.runs('b') {
        bench_saves(&cfg, root, &mut summary)?;
    }
    if cfg.runs('c') {
        bench_open(&cfg, root, &mut summary)?;
    }
    println!(
        "\n== summary ({:.0} s in all; load {})",
        started.elapsed().as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    for s in &summary {
        println!("  {s}");
    }
    Ok(())
}

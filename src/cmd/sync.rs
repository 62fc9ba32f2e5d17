//! `msgfs sync`: one two-way replication run between a store and an IMAP account, with a
//! progress bar on a terminal and an mbsync-like summary; `--status` shows the last run.
//! Exit 0 when every folder ended OK, 1 when some folder failed, 2 for usage, connection
//! or store errors.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use super::CmdResult;
use crate::control::XATTR_SYNC;
use crate::store::{Options as StoreOptions, Store};
use crate::sync::config::Config;
use crate::sync::engine::{Options, Progress, State};
use crate::sync::run::{connect, read_status, run as run_pass};

/// What the command line asked for.
pub struct Args {
    pub account: Option<String>,
    pub config: Option<PathBuf>,
    pub store: Option<PathBuf>,
    pub folders: Vec<String>,
    pub upload_only: bool,
    pub download_only: bool,
    pub dry_run: bool,
    pub allow_mass_delete: bool,
    pub status: bool,
}

/// A bar per state on a terminal: counts, bytes and rate.
struct Bar {
    bar: Option<ProgressBar>,
    /// The state's label and the bytes it moved so far.
    label: String,
    bytes: u64,
}

impl Progress for Bar {
    fn state(&mut self, folder: &str, state: State, total: u64) {
        let Some(bar) = &self.bar else { return };
        self.label = format!("{folder} {}", state.name());
        self.bytes = 0;
        bar.set_length(total);
        bar.set_position(0);
        bar.set_message(self.label.clone());
    }
    fn advance(&mut self, n: u64, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
            if bytes > 0 {
                self.bytes += bytes;
                bar.set_message(format!("{} {}", self.label, indicatif::HumanBytes(self.bytes)));
            }
        }
    }
}

pub fn run(args: Args) -> CmdResult {
    // Warnings by default; RUST_LOG=info adds each folder's header and body timings.
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).try_init();
    let config = Config::load(args.config.as_deref())?;
    let account = config.account(args.account.as_deref())?.clone();
    let store_dir: &Path = args.store.as_deref().unwrap_or(&account.store);
    if args.status {
        return match read_status(store_dir) {
            Some(text) => {
                print!("{text}");
                Ok(0)
            }
            None => {
                println!("no sync has run on {} yet", store_dir.display());
                Ok(0)
            }
        };
    }
    if args.upload_only && args.download_only {
        return Err("--upload-only and --download-only exclude each other".into());
    }
    let st = match Store::open(store_dir, StoreOptions { create: true, ..Default::default() }) {
        Ok(st) => st,
        // Mounted: the daemon holds the store and runs the pass.
        Err(crate::store::Error::InUse { .. }) if super::mount::mount_of(store_dir).is_some() => {
            let mp = super::mount::mount_of(store_dir).expect("checked");
            return through_mount(&mp, &args, &account);
        }
        Err(e) => return Err(format!("store {}: {e}", store_dir.display()).into()),
    };
    // A read-only mount takes no lock: it keeps showing the store as it was when mounted.
    if let Some(mp) = super::mount::mount_of(store_dir) {
        eprintln!(
            "msgfs: warning: {} is mounted read-only at {}, which will not show what this sync changes until it is mounted again",
            store_dir.display(),
            mp.display()
        );
    }
    let opts = Options {
        upload: !args.download_only,
        download: !args.upload_only,
        dry_run: args.dry_run,
        allow_mass_delete: args.allow_mass_delete,
        max_deletes: account.max_deletes,
        ..Default::default()
    };
    let mut conn = match connect(&account) {
        Ok(c) => c,
        Err(e) => {
            let _ = st.close();
            return Err(e.to_string().into());
        }
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("{msg:50} [{bar:25}] {pos}/{len} {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let mut progress = Bar { bar, label: String::new(), bytes: 0 };
    let res = run_pass(&mut conn, &st, &account, opts, &args.folders, &mut progress);
    if let Some(b) = &progress.bar {
        b.finish_and_clear();
    }
    let _ = conn.logout();
    let closed = st.close();
    let report = res.map_err(|e| format!("account {}: {e}", account.name))?;
    closed.map_err(|e| format!("close store {}: {e}", store_dir.display()))?;
    print!("{}", report.summary());
    Ok(u8::from(!report.ok()))
}

/// Ask the daemon of the mount at `mp` to run the pass, and follow it to its end.
fn through_mount(mp: &Path, args: &Args, account: &crate::sync::config::Account) -> CmdResult {
    let mut req = format!("account={}\n", account.name);
    if let Some(c) = &args.config {
        let c = std::fs::canonicalize(c).unwrap_or_else(|_| c.clone());
        req.push_str(&format!("config={}\n", c.display()));
    }
    for f in &args.folders {
        req.push_str(&format!("folder={f}\n"));
    }
    for (on, word) in [
        (args.upload_only, "upload-only"),
        (args.download_only, "download-only"),
        (args.dry_run, "dry-run"),
        (args.allow_mass_delete, "allow-mass-delete"),
    ] {
        if on {
            req.push_str(word);
            req.push('\n');
        }
    }
    // Resolved here, where MSGFS_IMAP_PASSWORD and pass_cmd's terminal are.
    let password = account.password()?;
    req.push_str(&format!("password={}\n", password.expose()));
    let path = CString::new(mp.as_os_str().as_bytes())?;
    let name = CString::new(XATTR_SYNC)?;
    // SAFETY: valid C strings and a buffer of the length passed.
    let r = unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), req.as_ptr().cast(), req.len(), 0) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EBUSY) => format!("{}: a sync is already running in this mount", mp.display()).into(),
            _ => format!("{}: cannot start a sync in the mount daemon: {e}", mp.display()).into(),
        });
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("{msg:40} [{bar:30}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    loop {
        let mut buf = vec![0u8; 1 << 20];
        // SAFETY: valid C strings and a buffer of the length passed.
        let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(format!("{}: lost the mount daemon: {}", mp.display(), std::io::Error::last_os_error()).into());
        }
        let text = String::from_utf8_lossy(&buf[..n as usize]).into_owned();
        if let Some(rest) = text.strip_prefix("done ") {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            let (code, summary) = rest.split_once('\n').unwrap_or((rest, ""));
            let code: u8 = code.trim().parse().unwrap_or(2);
            if code == 2 {
                return Err(summary.trim().to_string().into());
            }
            print!("{summary}");
            return Ok(code);
        }
        if let (Some(b), Some(line)) = (&bar, text.lines().nth(1)) {
            // "FOLDER STATE n/total"
            let mut parts = line.rsplitn(2, ' ');
            let counts = parts.next().unwrap_or("");
            let (n, total) = counts.split_once('/').unwrap_or(("0", "0"));
            b.set_length(total.parse().unwrap_or(0));
            b.set_position(n.parse().unwrap_or(0));
            b.set_message(parts.next().unwrap_or("").to_string());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

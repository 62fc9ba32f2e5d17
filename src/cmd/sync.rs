//! `msgfs sync`: one two-way replication run between a store and an IMAP account, with a
//! progress bar on a terminal and an mbsync-like summary; `--status` shows the last run.
//! Exit 0 when every folder ended OK, 1 when some folder failed, 2 for usage, connection
//! or store errors.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use super::CmdResult;
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
}

impl Progress for Bar {
    fn state(&mut self, folder: &str, state: State, total: u64) {
        let Some(bar) = &self.bar else { return };
        bar.set_length(total);
        bar.set_position(0);
        bar.set_message(format!("{folder} {}", state.name()));
    }
    fn advance(&mut self, n: u64, _bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
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
    let st = Store::open(store_dir, StoreOptions { create: true, ..Default::default() }).map_err(|e| {
        format!(
            "store {}: {e} (msgfs sync works on a store that is not mounted: unmount it first)",
            store_dir.display()
        )
    })?;
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
            return Err(format!("account {}: {e}", account.name).into());
        }
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("{msg:40} [{bar:30}] {pos}/{len} {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let mut progress = Bar { bar };
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

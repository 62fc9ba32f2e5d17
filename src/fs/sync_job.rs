//! `msgfs sync` on a mounted store. The daemon holds the store, so the command asks it to
//! run the pass: setting `user.msgfs.sync` on the mount root to a request starts it on a
//! thread of its own, and reading that xattr gives its progress and, once done, its exit
//! code and summary. When the pass ends, the kernel is told which entries changed under it
//! (names gone or leading to a new version, sizes that changed). Each folder's last result
//! is `user.msgfs.sync` on the folder.
//!
//! The request is `key=value` lines: `config` (accounts file; default the daemon's),
//! `account`, `folder` (repeatable), `password`, and the words `upload-only`,
//! `download-only`, `dry-run`, `allow-mass-delete`. The password travels in the request
//! (the command resolved it: MSGFS_IMAP_PASSWORD or pass_cmd) and is kept nowhere.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use fuser::Errno;

use super::errno::{err, FsError, FsResult};
use super::store_fs::StoreFs;
use crate::store::{Id, Store, ROOT};
use crate::sync::config::{Config, Password};
use crate::sync::engine::{Options, Progress, State};
use crate::sync::run::{connect_with, run as run_pass, STATUS_FILE};

/// The pass a mount runs, if any.
#[derive(Default)]
pub struct SyncJob {
    running: bool,
    /// Where it is: folder, state, done and total.
    at: Option<(String, State, u64, u64)>,
    /// Once done: exit code and the summary (or error line).
    last: Option<(u8, String)>,
}

/// A request, parsed.
struct Request {
    config: Option<PathBuf>,
    account: Option<String>,
    folders: Vec<String>,
    password: Option<Password>,
    opts: Options,
}

fn parse(value: &[u8]) -> FsResult<Request> {
    let text = std::str::from_utf8(value).map_err(|_| FsError::Errno(Errno::EINVAL))?;
    let mut r = Request { config: None, account: None, folders: Vec::new(), password: None, opts: Options::default() };
    for line in text.lines().map(|l| l.trim_end_matches('\0')).filter(|l| !l.is_empty()) {
        match line.split_once('=') {
            Some(("config", v)) => r.config = Some(PathBuf::from(v)),
            Some(("account", v)) => r.account = Some(v.to_string()),
            Some(("folder", v)) => r.folders.push(v.to_string()),
            Some(("password", v)) => r.password = Some(Password::new(v.to_string())),
            None if line == "upload-only" => r.opts.download = false,
            None if line == "download-only" => r.opts.upload = false,
            None if line == "dry-run" => r.opts.dry_run = true,
            None if line == "allow-mass-delete" => r.opts.allow_mass_delete = true,
            _ => return err(Errno::EINVAL),
        }
    }
    if !r.opts.upload && !r.opts.download {
        return err(Errno::EINVAL);
    }
    Ok(r)
}

/// Tells the job's state as the pass goes.
struct JobProgress {
    job: Arc<Mutex<SyncJob>>,
}

impl Progress for JobProgress {
    fn state(&mut self, folder: &str, state: State, total: u64) {
        self.job.lock().unwrap().at = Some((folder.to_string(), state, 0, total));
    }
    fn advance(&mut self, n: u64, _bytes: u64) {
        if let Some(at) = &mut self.job.lock().unwrap().at {
            at.2 += n;
        }
    }
}

/// Every message by (folder, name): its id, version, size and ctime.
type Snapshot = HashMap<(Id, String), (Id, u64, u64, i64)>;

fn snapshot(store: &Store) -> Snapshot {
    let ix = store.index();
    let messages =
        ix.messages().map(|(id, m)| ((m.folder(), m.name().to_string()), (id, m.version(), m.size(), m.ctime())));
    // Folders too, with no version, size or time: a folder the pass made is a new name,
    // one it removed a name gone.
    let folders =
        ix.folders().filter(|(id, _)| *id != ROOT).map(|(id, f)| ((f.parent(), f.name().to_string()), (id, 0, 0, 0)));
    messages.chain(folders).collect()
}

impl StoreFs {
    /// Start a pass (`user.msgfs.sync` set on the root): EBUSY while one runs.
    pub fn sync_start(self: &Arc<Self>, uid: u32, value: &[u8]) -> FsResult<()> {
        self.may_control(uid)?;
        if self.read_only {
            return err(Errno::EROFS);
        }
        let req = parse(value)?;
        {
            let mut job = self.sync_job.lock().unwrap();
            if job.running {
                return err(Errno::EBUSY);
            }
            *job = SyncJob { running: true, at: None, last: None };
        }
        let fs = self.clone();
        let spawned = std::thread::Builder::new().name("msgfs-sync".into()).spawn(move || {
            let (code, text) = fs.sync_run(req);
            let mut job = fs.sync_job.lock().unwrap();
            job.running = false;
            job.at = None;
            job.last = Some((code, text));
        });
        if spawned.is_err() {
            self.sync_job.lock().unwrap().running = false;
            return err(Errno::EAGAIN);
        }
        Ok(())
    }

    fn sync_run(self: &Arc<Self>, req: Request) -> (u8, String) {
        let config = match Config::load(req.config.as_deref()) {
            Ok(c) => c,
            Err(e) => return (2, e.to_string()),
        };
        let account = match config.account(req.account.as_deref()) {
            Ok(a) => a.clone(),
            Err(e) => return (2, e.to_string()),
        };
        let password = match req.password.map(Ok).unwrap_or_else(|| account.password()) {
            Ok(p) => p,
            Err(e) => return (2, e.to_string()),
        };
        let mut conn = match connect_with(&account, &password) {
            Ok(c) => c,
            Err(e) => return (2, e.to_string()),
        };
        let before = snapshot(&self.store);
        let mut progress = JobProgress { job: self.sync_job.clone() };
        let res = run_pass(&mut conn, &self.store, &account, req.opts, &req.folders, &mut progress);
        let _ = conn.logout();
        self.after_sync(&before);
        match res {
            Ok(report) => (u8::from(!report.ok()), report.summary()),
            Err(e) => (2, format!("account {}: {e}", account.name)),
        }
    }

    /// Tell the kernel what the pass changed: an entry gone or leading to another message
    /// or version is expired, a message whose attributes changed (size, ctime: flags,
    /// keywords) and a folder whose entries changed have their attributes dropped.
    fn after_sync(&self, before: &Snapshot) {
        let after = snapshot(&self.store);
        let mut folders = std::collections::HashSet::new();
        // A message's inode is its version's number (or its id, for one first made here;
        // see inodes.rs): both are dropped.
        let inval = |id: Id, version: u64| {
            self.inval_attrs(version);
            self.inval_attrs(id);
        };
        for (key, (id, version, size, ctime)) in before {
            match after.get(key) {
                Some(a) if a.0 == *id && a.1 == *version => {
                    if a.3 != *ctime {
                        inval(*id, *version);
                    }
                }
                Some(a) if a.0 == *id => {
                    if a.2 != *size || a.3 != *ctime {
                        inval(*id, *version);
                    }
                    self.expire_entry(key.0, &key.1);
                }
                _ => {
                    self.expire_entry(key.0, &key.1);
                    folders.insert(key.0);
                }
            }
        }
        for k in after.keys().filter(|k| !before.contains_key(*k)) {
            // A new name, which the kernel may hold as not existing (a negative entry).
            self.expire_entry(k.0, &k.1);
            folders.insert(k.0);
        }
        for f in folders {
            self.inval_attrs(f);
        }
    }

    /// `user.msgfs.sync` on the root: `running` with where the pass is, or `done N` with
    /// its exit code and summary, or `idle` before the first.
    pub fn sync_get(&self) -> Vec<u8> {
        let job = self.sync_job.lock().unwrap();
        let text = match (&job.at, &job.last, job.running) {
            (Some((folder, state, n, total)), _, true) => {
                format!("running\n{folder} {} {n}/{total}\n", state.name())
            }
            (None, _, true) => "running\n".to_string(),
            (_, Some((code, summary)), false) => format!("done {code}\n{summary}"),
            _ => "idle\n".to_string(),
        };
        text.into_bytes()
    }

    /// `user.msgfs.sync` on a folder: its line of the last run's status, and where a
    /// running pass is in it.
    pub fn sync_folder_get(&self, folder: Id) -> FsResult<Vec<u8>> {
        let path = self.store.index().folder_path(folder);
        let mut out = String::new();
        if let Some((f, state, n, total)) = &self.sync_job.lock().unwrap().at {
            if *f == path {
                out.push_str(&format!("running {} {n}/{total}\n", state.name()));
            }
        }
        let status =
            self.store.path().and_then(|d| std::fs::read_to_string(d.join(STATUS_FILE)).ok()).unwrap_or_default();
        for line in status.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if let ["folder", p, server, state, up, down, result] = f.as_slice() {
                if *p == path {
                    out.push_str(&format!("{state} {result}\nserver {server}: {up}\nlocal: {down}\n"));
                }
            }
        }
        if out.is_empty() {
            return err(Errno::ENODATA);
        }
        Ok(out.into_bytes())
    }
}

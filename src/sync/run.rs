//! One `msgfs sync` run for an account: LR_SYNC (connect, log in, LIST + STATUS), the
//! hierarchy both ways (UPLOAD_HIERARCHY, DOWNLOAD_HIERARCHY), then CONTENTS: each folder's
//! two-way pass (engine.rs). Writes the run's per-folder results to the store's
//! `sync-status` file, which `msgfs sync --status` reads.
//!
//! Invariants: a folder is never deleted on either side by a sync (a server folder that is
//! gone leaves its local folder, named in the report; a local folder that is gone is
//! downloaded again); one folder's failure does not stop the others, a lost connection
//! stops the run (the next one resumes).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::config::{folder_selected, Account};
use super::engine::{FolderReport, Gone, Options, Pass, Progress, State, SyncError};
use super::imap::{Connection, Folder, ImapError};
use super::names;
use super::survey::{survey, ServerFolder, Survey};
use crate::store::{Attrs, Id, MessageRemote, Store, ROOT};

/// The result of a run.
#[derive(Debug, Default)]
pub struct RunReport {
    pub folders: Vec<(FolderReport, Option<String>)>,
    /// Nothing was changed (`--dry-run`).
    pub dry_run: bool,
    /// Problems with the folder tree (collisions, names that cannot be folders, server
    /// folders that are gone), in words.
    pub notes: Vec<String>,
    pub seconds: f64,
}

impl RunReport {
    /// Every folder ended OK.
    pub fn ok(&self) -> bool {
        self.folders.iter().all(|(r, e)| e.is_none() && r.ok())
    }

    /// The mbsync-like summary: one line per folder that changed or failed, then totals.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let c = |x: &super::engine::Counts| format!("+{} *{} -{} >{}", x.new, x.flags, x.deleted, x.moved);
        let (mut up, mut down, mut bodies) = (super::engine::Counts::default(), super::engine::Counts::default(), 0);
        for (r, err) in &self.folders {
            let add = |a: &mut super::engine::Counts, b: &super::engine::Counts| {
                a.new += b.new;
                a.flags += b.flags;
                a.deleted += b.deleted;
                a.moved += b.moved;
                a.bytes += b.bytes;
            };
            add(&mut up, &r.up);
            add(&mut down, &r.down);
            bodies += r.bodies;
            if let Some(e) = err {
                let _ = writeln!(out, "{}: FAILED: {e}", r.store_path);
                continue;
            }
            if !r.up.is_zero() || !r.down.is_zero() || r.bodies > 0 {
                let _ = writeln!(out, "{}: server {}  local {}", r.store_path, c(&r.up), c(&r.down));
            }
            if r.matched > 0 {
                let matched = crate::plural::count(r.matched, "message", "messages");
                let _ = writeln!(out, "{}: {matched} already on both sides, linked", r.store_path);
            }
            for k in &r.kept {
                let _ = writeln!(
                    out,
                    "{}: kept {k:?}: synced before the UIDVALIDITY change, not on the server now",
                    r.store_path
                );
            }
            for x in &r.refused {
                let _ = writeln!(out, "{}: {x}", r.store_path);
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        let failed = self.folders.iter().filter(|(r, e)| e.is_some() || !r.ok()).count();
        let _ = writeln!(
            out,
            "{}, {failed} failed: server {}  local {} ({}, {:.1} MB down, {:.1} MB up) in {:.2} s",
            crate::plural::count(self.folders.len() as u64, "folder", "folders"),
            c(&up),
            c(&down),
            crate::plural::count(bodies, "body", "bodies"),
            down.bytes as f64 / 1e6,
            up.bytes as f64 / 1e6,
            self.seconds
        );
        out
    }
}

/// Run errors that stop the whole run (exit 2): connection, login, the folder list.
#[derive(Debug)]
pub struct RunError(pub String);

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Connect and log in as `account` says.
/// Errors name the account (a password error does already).
pub fn connect(account: &Account) -> Result<Connection, RunError> {
    let password = account.password().map_err(|e| RunError(e.to_string()))?;
    connect_with(account, &password)
}

/// [`connect`] with a password already at hand (a mount daemon is given it by the command).
pub fn connect_with(account: &Account, password: &super::config::Password) -> Result<Connection, RunError> {
    let named = |e: super::imap::ImapError| RunError(format!("account {}: {e}", account.name));
    let mut conn = Connection::connect(account).map_err(named)?;
    conn.login(&account.user, password).map_err(named)?;
    Ok(conn)
}

/// Find or make the store folder at `path` (each level created as needed).
fn ensure_folder(store: &Store, path: &[String], create: bool) -> Result<Option<Id>, crate::store::Error> {
    let mut id = ROOT;
    for level in path {
        let existing = store.index().lookup(id, level);
        id = match existing {
            Some(crate::store::Entry::Folder(f)) => f,
            Some(crate::store::Entry::Message(_)) => return Err(crate::store::Error::Exists),
            None if create => {
                // SAFETY: getuid and getgid cannot fail.
                let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
                let attrs = Attrs { mode: libc::S_IFDIR | 0o700, uid, gid, mtime: crate::store::commit::now_ns() };
                store.create_folder(id, level, attrs)?
            }
            None => return Ok(None),
        };
    }
    Ok(Some(id))
}

/// The store path of every folder, below the root (`["Inbox"]`, `["Work", "2026"]`).
fn store_folders(store: &Store) -> Vec<(Id, Vec<String>)> {
    let ix = store.index();
    let mut out = Vec::new();
    for (id, _) in ix.folders() {
        if id == ROOT {
            continue;
        }
        let path: Vec<String> = ix.folder_path(id).split('/').map(str::to_string).collect();
        out.push((id, path));
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// One sync run of `account` with `store`, restricted to `only` folders (store paths as
/// `a/b`, or server names) when not empty.
pub fn run(
    conn: &mut Connection,
    store: &Store,
    account: &Account,
    opts: Options,
    only: &[String],
    progress: &mut dyn Progress,
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let mut report = RunReport { dry_run: opts.dry_run, ..Default::default() };
    progress.state("", State::Sync, 0);
    let list_err = |e: ImapError| RunError(format!("listing the server's folders: {e}"));
    let mut sv: Survey = survey(conn, account).map_err(list_err)?;
    let wanted =
        |path: &[String], server: &str| only.is_empty() || only.iter().any(|o| *o == path.join("/") || o == server);

    // UPLOAD_HIERARCHY: local folders the server lacks (never synced before: a folder that
    // was synced and is gone there is not created again) are created there.
    if opts.upload {
        progress.state("", State::UploadHierarchy, 0);
        let delimiter = sv.folders.iter().find_map(|f| f.folder.delimiter).unwrap_or('/');
        // Folders synced before and renamed or moved here since: RENAME there (a parent's
        // rename takes its subfolders along, so their recorded names follow it).
        for (id, path) in store_folders(store) {
            let Some(remote) = store.index().folder_remote(id).cloned() else { continue };
            let Some(sf) = sv.folders.iter().find(|f| f.folder.name == remote.name) else { continue };
            if sf.store_path == path || !wanted(&path, "") {
                continue;
            }
            let Some(new_name) = names::server_name(&path, delimiter) else {
                report.notes.push(format!(
                    "local folder {:?} holds the server's hierarchy delimiter {delimiter:?} in a name: not renamed there",
                    path.join("/")
                ));
                continue;
            };
            // Not a special-use folder, nor INBOX (RENAME INBOX moves its messages out and
            // leaves it empty), nor to a name taken or one the account's patterns exclude
            // (the folder would stop syncing).
            if sf.folder.special.is_some()
                || remote.name.eq_ignore_ascii_case("INBOX")
                || sv.folders.iter().any(|f| f.folder.name == new_name)
                || !folder_selected(&account.folders, &new_name, Some(delimiter))
            {
                report.notes.push(format!(
                    "local folder {:?} was {:?} on the server, which is not renamed to {new_name:?} (INBOX, a special-use folder, a name taken or one the account's folders exclude)",
                    path.join("/"),
                    remote.name
                ));
                continue;
            }
            if opts.dry_run {
                report.notes.push(format!("would rename server folder {:?} to {new_name:?}", remote.name));
                continue;
            }
            progress.state(&path.join("/"), State::UploadFolder, 0);
            conn.rename(&sf.folder, &names::encode(&new_name))
                .map_err(|e| RunError(format!("renaming server folder {:?} to {new_name:?}: {e}", remote.name)))?;
            let prefix = format!("{}{delimiter}", remote.name);
            let renamed: Vec<crate::store::RemoteChange> = store
                .index()
                .folder_remotes()
                .filter(|(_, r)| r.name == remote.name || r.name.starts_with(&prefix))
                .map(|(fid, r)| {
                    let name = format!("{new_name}{}", &r.name[remote.name.len()..]);
                    crate::store::RemoteChange::Folder(fid, Some(crate::store::FolderRemote { name, ..r.clone() }))
                })
                .collect();
            store.update_remote(renamed).map_err(|e| RunError(format!("store: {e}")))?;
            sv = survey(conn, account).map_err(list_err)?;
        }
        let known: Vec<Vec<String>> = sv.folders.iter().map(|f| f.store_path.clone()).collect();
        let mut created = false;
        for (id, path) in store_folders(store) {
            if known.contains(&path) || store.index().folder_remote(id).is_some() || !wanted(&path, "") {
                continue;
            }
            // An empty folder above synced ones only holds them together, as the server's
            // own \Noselect level does.
            let holds_synced = known.iter().any(|k| k.len() > path.len() && k.starts_with(&path));
            if holds_synced && !store.index().children(id).is_ok_and(|mut c| c.any(|(_, c)| c.message_id().is_some())) {
                continue;
            }
            let Some(name) = names::server_name(&path, delimiter) else {
                report.notes.push(format!(
                    "local folder {:?} holds the server's hierarchy delimiter {delimiter:?} in a name: not synced",
                    path.join("/")
                ));
                continue;
            };
            if !folder_selected(&account.folders, &name, Some(delimiter)) {
                continue;
            }
            if sv.collisions.iter().any(|c| c.store_path == path) {
                continue;
            }
            if opts.dry_run {
                report.notes.push(format!("would create server folder {name:?}"));
                continue;
            }
            progress.state(&path.join("/"), State::UploadFolder, 0);
            conn.create(&names::encode(&name))
                .map_err(|e| RunError(format!("creating server folder {name:?}: {e}")))?;
            created = true;
        }
        if created {
            sv = survey(conn, account).map_err(list_err)?;
        }
    }
    for c in &sv.collisions {
        report.notes.push(format!(
            "server folders {:?} all map to local folder {:?}; none of them is synced until all but one are excluded with a `!` pattern",
            c.server_names,
            c.store_path.join("/")
        ));
    }
    for u in &sv.unmappable {
        report
            .notes
            .push(format!("server folder {u:?} cannot be a local folder (an empty, `.` or `..` level); not synced"));
    }

    // Tombstones of messages whose folder was deleted here since: with the folder went its
    // server name, so they can name nothing there (the server folder is downloaded again,
    // never emptied).
    if !opts.dry_run {
        let orphans: Vec<crate::store::RemoteChange> = {
            let ix = store.index();
            let tombs = ix
                .tombstones()
                .filter(|(_, t)| !ix.is_folder(t.folder))
                .map(|(id, _)| crate::store::RemoteChange::Message(id, None));
            // Upload intents toward a folder deleted here: what they may have sent there
            // comes down again with the rest of that server folder.
            let intents = ix
                .upload_intents()
                .filter(|i| !ix.is_folder(i.folder))
                .map(|i| crate::store::RemoteChange::ClearIntent(i.message));
            tombs.chain(intents).collect()
        };
        store.update_remote(orphans).map_err(|e| RunError(format!("store: {e}")))?;
    }

    // DOWNLOAD_HIERARCHY: a local folder for every server folder.
    progress.state("", State::DownloadHierarchy, 0);
    let mut pairs: Vec<(Id, usize)> = Vec::new();
    for (n, sf) in sv.folders.iter().enumerate() {
        if !wanted(&sf.store_path, &sf.folder.name) {
            continue;
        }
        match ensure_folder(store, &sf.store_path, opts.download && !opts.dry_run) {
            Ok(Some(id)) => pairs.push((id, n)),
            Ok(None) => report.notes.push(format!("would create local folder {:?}", sf.store_path.join("/"))),
            Err(e) => report.notes.push(format!("local folder {:?}: {e}", sf.store_path.join("/"))),
        }
    }
    // Synced folders whose server folder is gone: kept, said.
    for (id, remote) in store.index().folder_remotes() {
        if !sv.folders.iter().any(|f| f.folder.name == remote.name) {
            let path = store.index().folder_path(id);
            report.notes.push(format!("server folder {:?} is gone; local folder {path:?} is kept", remote.name));
        }
    }
    let server_of: HashMap<Id, Folder> = pairs.iter().map(|(id, n)| (*id, sv.folders[*n].folder.clone())).collect();

    // Messages whose server copy left their folder since the last run, found before any
    // folder's pass, so that one moved to another folder is followed there, whichever
    // folder's pass comes first.
    let mut gone: Vec<Gone> = Vec::new();
    if opts.download && !opts.dry_run && pairs.len() > 1 {
        for (id, n) in &pairs {
            match find_gone(conn, store, *id, &sv.folders[*n]) {
                Ok(mut g) => gone.append(&mut g),
                Err(e) if e.is_connection() => return Err(RunError(format!("{e}; the next run resumes"))),
                Err(e) => log::warn!("{}: {e}", sv.folders[*n].folder.name),
            }
        }
    }

    // CONTENTS.
    progress.state("", State::Contents, pairs.len() as u64);
    for (id, n) in pairs {
        let sf = &sv.folders[n];
        let mut fr = FolderReport {
            store_path: sf.store_path.join("/"),
            server_name: sf.folder.name.clone(),
            ..Default::default()
        };
        let mut r;
        loop {
            let mut pass = Pass { conn, store, opts, server_of: &server_of, progress: &mut *progress, gone: &mut gone };
            r = pass.folder(&sf.folder, &sf.status, id, &mut fr);
            // The crash-recovery lock pauses the run: a pass resumes where it stopped, so
            // once the lock is lifted the folder's pass is simply run again.
            if !matches!(r, Err(SyncError::Store(crate::store::Error::NoAccess))) {
                break;
            }
            progress.state(&fr.store_path, State::Sync, 0);
            log::warn!("{}: paused while the store is under the crash-recovery lock", fr.store_path);
            while store.crash_lock().is_some() {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            fr = FolderReport {
                store_path: fr.store_path.clone(),
                server_name: fr.server_name.clone(),
                ..Default::default()
            };
        }
        match r {
            Ok(()) => report.folders.push((fr, None)),
            Err(e) => {
                let fatal = e.is_connection();
                let text = e.to_string();
                report.folders.push((fr, Some(text.clone())));
                if fatal {
                    report.seconds = started.elapsed().as_secs_f64();
                    let _ = write_status(store, account, &report);
                    return Err(RunError(format!("{text} (in folder {:?}); the next run resumes", sf.folder.name)));
                }
            }
        }
        let _ = write_status(store, account, &report);
    }
    // Gone from their folder and claimed by none: deleted, as their folder's pass would have.
    for g in gone.into_iter().filter(|g| g.approved) {
        let still = store.index().message_remote(g.id).is_some_and(|l| l.folder == g.from && l.uid == g.link.uid);
        if !still {
            continue;
        }
        match store.delete_message(g.id).and_then(|()| {
            // Gone from the server too: no tombstone to keep (see Pass::server_deletions).
            store.update_remote(vec![crate::store::RemoteChange::Message(g.id, None)])
        }) {
            Ok(()) => {
                let path = store.index().folder_path(g.from);
                if let Some((r, _)) = report.folders.iter_mut().find(|(r, _)| r.store_path == path) {
                    r.down.deleted += 1;
                }
            }
            Err(crate::store::Error::NotFound | crate::store::Error::ObjectDeleted) => {}
            Err(e) => return Err(RunError(format!("store: {e}"))),
        }
    }
    progress.state("", State::Idle, 0);
    report.seconds = started.elapsed().as_secs_f64();
    let _ = write_status(store, account, &report);
    Ok(report)
}

/// The linked messages of store folder `id` whose UIDs its server folder no longer has:
/// none when nothing was expunged there since the last pass (HIGHESTMODSEQ unchanged).
fn find_gone(conn: &mut Connection, store: &Store, id: Id, sf: &ServerFolder) -> Result<Vec<Gone>, SyncError> {
    let Some(saved) = store.index().folder_remote(id).cloned() else { return Ok(Vec::new()) };
    if sf.status.uid_validity.map(u64::from) != Some(saved.uidvalidity)
        || sf.status.highest_modseq.is_some_and(|h| h == saved.highestmodseq)
    {
        return Ok(Vec::new());
    }
    let links: Vec<(Id, MessageRemote)> = {
        let ix = store.index();
        ix.message_remotes()
            .filter(|(mid, l)| {
                l.folder == id
                    && ix
                        .message(*mid)
                        .is_ok_and(|m| m.folder() == id && m.flags() & crate::store::flags::HEADER_ONLY == 0)
            })
            .map(|(mid, l)| (mid, *l))
            .collect()
    };
    if links.is_empty() {
        return Ok(Vec::new());
    }
    conn.examine(&sf.folder)?;
    let uids: Vec<u32> = links.iter().map(|(_, l)| l.uid as u32).collect();
    let present: std::collections::HashSet<u32> =
        conn.uid_search(&super::commands::uid_set(&uids))?.into_iter().collect();
    let mut out = Vec::new();
    for (mid, link) in links {
        if present.contains(&(link.uid as u32)) {
            continue;
        }
        let Ok(content) = store.read_message(mid) else { continue };
        let Some(message_id) = crate::mime::parse_props(&content).message_id else { continue };
        out.push(Gone {
            id: mid,
            from: id,
            message_id,
            size: super::engine::crlf_len(&content),
            link,
            approved: false,
        });
    }
    Ok(out)
}

/// The status file of a store.
pub const STATUS_FILE: &str = "sync-status";

/// Write the run's results (so far) to the store's status file, atomically. A dry run
/// changes nothing, this file included.
pub fn write_status(store: &Store, account: &Account, report: &RunReport) -> std::io::Result<()> {
    let Some(dir) = store.path() else { return Ok(()) };
    if report.dry_run {
        return Ok(());
    }
    // One field per tab, one line per folder: a tab or line break in a name becomes a space.
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut text = format!("account\t{}\t{now}\t{:.2}\n", clean(&account.name), report.seconds);
    for (r, err) in &report.folders {
        let state = r.failed_in.or(r.last_state).map_or("IDLE", |s| s.name());
        let result = match err {
            Some(e) => format!("FAILED: {e}"),
            None if r.ok() => "OK".to_string(),
            None => format!("FAILED: {}", r.refused.join("; ")),
        };
        let c = |x: &super::engine::Counts| format!("+{} *{} -{} >{}", x.new, x.flags, x.deleted, x.moved);
        let _ = writeln!(
            text,
            "folder\t{}\t{}\t{state}\t{}\t{}\t{}",
            clean(&r.store_path),
            clean(&r.server_name),
            c(&r.up),
            c(&r.down),
            result.replace(['\t', '\n'], " ")
        );
    }
    let tmp = dir.join(format!("{STATUS_FILE}.tmp"));
    // Private like the rest of the store (folder names are the user's business).
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(crate::store::vfs::FILE_MODE)
        .open(&tmp)?;
    crate::store::vfs::fix_file_mode(&f)?;
    std::io::Write::write_all(&mut f, text.as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, dir.join(STATUS_FILE))
}

/// `msgfs sync --status`: the last run's results from the store's status file.
pub fn read_status(store_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(store_dir.join(STATUS_FILE)).ok()?;
    let mut out = String::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["account", name, when, secs] => {
                let when = when
                    .parse::<i64>()
                    .ok()
                    .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                    .map_or_else(|| when.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string());
                let _ = writeln!(out, "account {name}: last run {when}, took {secs} s");
            }
            ["folder", path, server, state, up, down, result] => {
                let _ = writeln!(out, "{path} ({server}): {state} {result}; server {up}  local {down}");
            }
            _ => {}
        }
    }
    Some(out)
}

//! Snapshot sessions (ESE's JetOSSnapshotPrepare/Freeze/Thaw/Abort/End/GetFreezeInfo) and the
//! crash-recovery lock (MAPICrashRecovery), as state machines on a store. See SEMANTICS.md
//! §2 and §3; the FUSE layer and the `msgfs` command only carry requests here.

use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::error::{Error, Result};
use super::{Shared, Store};

/// ESE's default freeze timeout (JET_paramOSSnapshotTimeout).
pub const DEFAULT_FREEZE_TIMEOUT: Duration = Duration::from_millis(70_000);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapState {
    /// Prepared: may freeze, abort or end.
    Prepared,
    /// Frozen: mutations wait; may thaw or abort.
    Frozen,
    /// The freeze outlived its timeout and the store thawed by itself; thaw reports it.
    TimedOut,
    /// Thawed after a successful freeze; may end.
    Thawed,
}

impl SnapState {
    pub fn name(self) -> &'static str {
        match self {
            SnapState::Prepared => "prepared",
            SnapState::Frozen => "frozen",
            SnapState::TimedOut => "timed-out",
            SnapState::Thawed => "thawed",
        }
    }
}

#[derive(Clone, Debug)]
pub struct SnapInfo {
    pub id: u64,
    pub state: SnapState,
    /// How long it has been frozen (when frozen).
    pub frozen_for: Option<Duration>,
    pub timeout: Duration,
}

struct Session {
    state: SnapState,
    frozen_at: Option<Instant>,
}

/// Who holds the crash-recovery lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrashLock {
    pub pid: u32,
    /// Taken with SYSTEM_SHUTDOWN: CONTINUE cannot lift it.
    pub shutdown: bool,
}

pub struct Control {
    sessions: Mutex<HashMap<u64, Session>>,
    next_session: AtomicU64,
    timeout: Mutex<Duration>,
    lock: Mutex<Option<CrashLock>>,
}

impl Default for Control {
    fn default() -> Control {
        Control {
            sessions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            timeout: Mutex::new(DEFAULT_FREEZE_TIMEOUT),
            lock: Mutex::new(None),
        }
    }
}

impl Store {
    fn control(&self) -> &Control {
        &self.shared().control
    }

    /// The freeze timeout for sessions frozen from now on.
    pub fn set_freeze_timeout(&self, t: Duration) {
        *self.control().timeout.lock().unwrap() = t;
    }

    /// Prepare: a new session, in state Prepared.
    pub fn snapshot_prepare(&self) -> u64 {
        let id = self.control().next_session.fetch_add(1, Ordering::Relaxed);
        self.control().sessions.lock().unwrap().insert(id, Session { state: SnapState::Prepared, frozen_at: None });
        id
    }

    /// Freeze: legal in Prepared, and only while no other session is frozen. Returns once the
    /// commit group in flight (if any) is durable: the store directory is then consistent.
    pub fn snapshot_freeze(&self, id: u64) -> Result<()> {
        let frozen_at = {
            let mut ss = self.control().sessions.lock().unwrap();
            let state = ss.get(&id).ok_or(Error::SnapshotInvalidId)?.state;
            if state != SnapState::Prepared {
                return Err(Error::SnapshotSequence);
            }
            if ss.values().any(|s| s.state == SnapState::Frozen) {
                return Err(Error::Busy);
            }
            let now = Instant::now();
            let s = ss.get_mut(&id).unwrap();
            s.state = SnapState::Frozen;
            s.frozen_at = Some(now);
            now
        };
        self.freeze();
        let timeout = *self.control().timeout.lock().unwrap();
        // The watchdog: a freeze never outlives its timeout, whoever asked for it.
        let weak = Arc::downgrade(self.shared_arc());
        std::thread::Builder::new()
            .name("msgfs-freeze-timeout".into())
            .spawn(move || {
                std::thread::sleep(timeout);
                let Some(sh) = weak.upgrade() else { return };
                let st = Store::from_shared(sh);
                let mut ss = st.control().sessions.lock().unwrap();
                if let Some(s) = ss.get_mut(&id) {
                    if s.state == SnapState::Frozen && s.frozen_at == Some(frozen_at) {
                        s.state = SnapState::TimedOut;
                        s.frozen_at = None;
                        drop(ss);
                        st.thaw();
                        ::log::warn!("snapshot session {id}: the freeze passed its timeout of {timeout:?}; thawed");
                    }
                }
            })
            .map_err(|e| Error::io("start the freeze watchdog", e))?;
        Ok(())
    }

    /// Thaw: from Frozen, resume (then only End is legal); from TimedOut, report the timeout
    /// (OSSnapshotTimeOut) and end the session.
    pub fn snapshot_thaw(&self, id: u64) -> Result<()> {
        let mut ss = self.control().sessions.lock().unwrap();
        let s = ss.get_mut(&id).ok_or(Error::SnapshotInvalidId)?;
        match s.state {
            SnapState::Frozen => {
                s.state = SnapState::Thawed;
                s.frozen_at = None;
                drop(ss);
                self.thaw();
                Ok(())
            }
            SnapState::TimedOut => {
                ss.remove(&id);
                Err(Error::SnapshotTimedOut)
            }
            _ => Err(Error::SnapshotSequence),
        }
    }

    /// Abort: legal in any live state; thaws if frozen; the session ends as failed.
    pub fn snapshot_abort(&self, id: u64) -> Result<()> {
        let mut ss = self.control().sessions.lock().unwrap();
        let s = ss.remove(&id).ok_or(Error::SnapshotInvalidId)?;
        drop(ss);
        if s.state == SnapState::Frozen {
            self.thaw();
        }
        Ok(())
    }

    /// End: legal in Prepared and after a successful thaw.
    pub fn snapshot_end(&self, id: u64) -> Result<()> {
        let mut ss = self.control().sessions.lock().unwrap();
        let s = ss.get(&id).ok_or(Error::SnapshotInvalidId)?;
        match s.state {
            SnapState::Prepared | SnapState::Thawed => {
                ss.remove(&id);
                Ok(())
            }
            _ => Err(Error::SnapshotSequence),
        }
    }

    /// GetFreezeInfo: legal in any live state.
    pub fn snapshot_info(&self, id: u64) -> Result<SnapInfo> {
        let ss = self.control().sessions.lock().unwrap();
        let s = ss.get(&id).ok_or(Error::SnapshotInvalidId)?;
        Ok(SnapInfo {
            id,
            state: s.state,
            frozen_for: s.frozen_at.map(|t| t.elapsed()),
            timeout: *self.control().timeout.lock().unwrap(),
        })
    }

    /// Every live session.
    pub fn snapshot_sessions(&self) -> Vec<SnapInfo> {
        let ids: Vec<u64> = self.control().sessions.lock().unwrap().keys().copied().collect();
        let mut v: Vec<SnapInfo> = ids.into_iter().filter_map(|id| self.snapshot_info(id).ok()).collect();
        v.sort_by_key(|i| i.id);
        v
    }

    /// RECOVER: if the store is consistent (no commit half done, the index matching the
    /// log), make everything durable and refuse every read and write until process `pid`
    /// ends or CONTINUE arrives (SYSTEM_SHUTDOWN: only the end of `pid` lifts it). If not
    /// consistent: Busy, and no lock.
    pub fn crash_recover(&self, pid: u32, shutdown: bool) -> Result<()> {
        if self.shared().poisoned.lock().unwrap().is_some() {
            return Err(Error::Busy);
        }
        {
            let mut l = self.control().lock.lock().unwrap();
            if let Some(held) = *l {
                if held.pid != pid {
                    return Err(Error::Busy);
                }
            }
            // Taken before the flush, so nothing new starts while it drains.
            *l = Some(CrashLock { pid, shutdown });
        }
        if self.is_frozen() {
            // A frozen store has commits waiting: they cannot finish now.
            *self.control().lock.lock().unwrap() = None;
            return Err(Error::Busy);
        }
        self.flush();
        if self.shared().poisoned.lock().unwrap().is_some() {
            *self.control().lock.lock().unwrap() = None;
            return Err(Error::Busy);
        }
        self.watch_lock_holder(pid);
        ::log::warn!("crash-recovery lock taken by process {pid}{}", if shutdown { " (system shutdown)" } else { "" });
        Ok(())
    }

    /// CONTINUE: lift the lock, unless it was taken with SYSTEM_SHUTDOWN (NotPermitted).
    pub fn crash_continue(&self) -> Result<()> {
        let mut l = self.control().lock.lock().unwrap();
        match *l {
            Some(CrashLock { shutdown: true, .. }) => Err(Error::NotPermitted),
            Some(_) => {
                *l = None;
                drop(l);
                ::log::warn!("crash-recovery lock lifted by CONTINUE");
                if let Err(e) = self.import_recovered() {
                    ::log::warn!("committing recovered drafts: {e}");
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    pub fn crash_lock(&self) -> Option<CrashLock> {
        *self.control().lock.lock().unwrap()
    }

    /// Refuse reads and writes while the crash-recovery lock is held.
    pub fn check_access(&self) -> Result<()> {
        match self.crash_lock() {
            Some(_) => Err(Error::NoAccess),
            None => Ok(()),
        }
    }

    /// Lift the lock when process `pid` ends (watched with a pidfd).
    fn watch_lock_holder(&self, pid: u32) {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
        let weak = Arc::downgrade(self.shared_arc());
        let release = move || {
            let Some(sh) = weak.upgrade() else { return };
            let st = Store::from_shared(sh);
            let mut l = st.control().lock.lock().unwrap();
            if l.map(|h| h.pid) == Some(pid) {
                *l = None;
                drop(l);
                ::log::warn!("crash-recovery lock lifted: process {pid} ended");
                if let Err(e) = st.import_recovered() {
                    ::log::warn!("committing recovered drafts: {e}");
                }
            }
        };
        if fd < 0 {
            // No such process (it is already gone), or no pidfd: nothing holds the lock.
            release();
            return;
        }
        // SAFETY: the descriptor was just returned to us and is owned by this value.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let _ = std::thread::Builder::new().name("msgfs-lock-watch".into()).spawn(move || {
            use std::os::fd::AsRawFd;
            let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            loop {
                // SAFETY: poll on one valid pollfd.
                let r = unsafe { libc::poll(&mut p, 1, -1) };
                if r > 0 || (r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR)) {
                    break;
                }
            }
            release();
        });
    }
}

impl Store {
    pub(crate) fn shared_arc(&self) -> &Arc<Shared> {
        &self.0
    }

    pub(crate) fn from_shared(sh: Arc<Shared>) -> Store {
        Store(sh)
    }
}

/// Where the private copies of writers closed under the crash-recovery lock are kept until
/// they can be committed (see [`Store::import_recovered`]).
pub const RECOVERED_DIR: &str = "recovered";
/// The folder recovered drafts are committed to.
pub const RECOVERED_FOLDER: &str = "Recovered Drafts";

impl Store {
    /// Keep a writer's private copy as a recovered draft: moved to `recovered/` and made
    /// durable there. `name` is the file name it had. Committed later by
    /// [`Store::import_recovered`], once the store accepts writes again.
    pub fn keep_draft(&self, staged: &std::path::Path, name: &str) -> Result<std::path::PathBuf> {
        use std::path::Path;
        let vfs = self.vfs();
        match vfs.create_dir(Path::new(RECOVERED_DIR)) {
            Ok(()) => vfs.sync_dir(Path::new("")).map_err(|e| Error::io("sync the store directory", e))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create recovered/", e)),
        }
        let clean: String = name.chars().map(|c| if c == '/' || c.is_control() { '_' } else { c }).collect();
        let to = Path::new(RECOVERED_DIR).join(format!("{}-{clean}", super::commit::now_ns()));
        let f = vfs.open(staged, super::vfs::OpenMode::Read).map_err(|e| Error::io("open a private copy", e))?;
        f.sync().map_err(|e| Error::io("sync a private copy", e))?;
        vfs.rename(staged, &to).map_err(|e| Error::io("keep a recovered draft", e))?;
        vfs.sync_dir(Path::new(RECOVERED_DIR)).map_err(|e| Error::io("sync recovered/", e))?;
        ::log::warn!("kept a recovered draft: {}", to.display());
        Ok(to)
    }

    /// Commit every recovered draft as a new message in the folder "Recovered Drafts"
    /// (created if missing), then remove its file. Returns how many were committed.
    pub fn import_recovered(&self) -> Result<usize> {
        use std::path::Path;
        let vfs = self.vfs().clone();
        let names = match vfs.read_dir(Path::new(RECOVERED_DIR)) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io("list recovered/", e)),
        };
        if names.is_empty() {
            return Ok(0);
        }
        let folder = match self.lookup(super::ROOT, RECOVERED_FOLDER) {
            Ok(super::Entry::Folder(f)) => f,
            Ok(super::Entry::Message(_)) => return Err(Error::NotAFolder),
            Err(_) => {
                let root = self.index().folders[&super::ROOT].attrs;
                self.create_folder(super::ROOT, RECOVERED_FOLDER, root)?
            }
        };
        let mut n = 0;
        for file in names {
            let from = Path::new(RECOVERED_DIR).join(&file);
            // The staging name keeps the original file name after the time stamp.
            let wanted = file.split_once('-').map(|(_, n)| n.to_string()).unwrap_or(file.clone());
            let mut name = wanted.clone();
            let mut k = 2;
            while self.lookup(folder, &name).is_ok() {
                name = format!("{wanted} ({k})");
                k += 1;
            }
            let staged = self.staging_path("r");
            vfs.rename(&from, &staged).map_err(|e| Error::io("take a recovered draft", e))?;
            // SAFETY: getuid and getgid cannot fail.
            let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
            let attrs = super::Attrs { mode: libc::S_IFREG | 0o600, uid, gid, mtime: super::commit::now_ns() };
            self.commit_file(&staged, None, Some((folder, name)), attrs, vec![])?;
            n += 1;
        }
        let _ = vfs.sync_dir(Path::new(RECOVERED_DIR));
        Ok(n)
    }
}

//! The control interface on a mount: the crash-recovery lock and snapshot sessions, reached
//! by ioctl on any descriptor or by xattrs on the mount root; only root and the mounting
//! user may use it.

use fuser::Errno;

use super::errno::{err, FsError, FsResult};
use super::store_fs::StoreFs;
use crate::control::*;
use crate::store::control::{SnapState, RECOVERED_FOLDER};
use crate::store::Error;

/// The parent of a process (the shell that ran `setfattr` or `msgfs lock`).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

fn state_code(s: SnapState) -> u32 {
    match s {
        SnapState::Prepared => SNAP_STATE_PREPARED,
        SnapState::Frozen => SNAP_STATE_FROZEN,
        SnapState::TimedOut => SNAP_STATE_TIMED_OUT,
        SnapState::Thawed => SNAP_STATE_THAWED,
    }
}

impl StoreFs {
    pub(super) fn may_control(&self, uid: u32) -> FsResult<()> {
        if uid == 0 || uid == self.owner_uid {
            Ok(())
        } else {
            err(Errno::EPERM)
        }
    }

    /// MAPICrashRecovery: RECOVER (with SYSTEM_SHUTDOWN) on behalf of `holder`, or CONTINUE.
    pub fn crash_recovery(&self, uid: u32, flags: u32, holder: u32) -> FsResult<()> {
        self.may_control(uid)?;
        match flags {
            f if f == RECOVER || f == RECOVER | SYSTEM_SHUTDOWN => {
                Ok(self.store.crash_recover(holder, f & SYSTEM_SHUTDOWN != 0)?)
            }
            CONTINUE => {
                self.store.crash_continue()?;
                self.expire_recovered();
                Ok(())
            }
            _ => err(Errno::EINVAL),
        }
    }

    /// Lifting the lock committed the recovered drafts behind the kernel's back: expire the
    /// names they may have taken (the folder and its entries), which the kernel may hold as
    /// not existing (a negative entry).
    fn expire_recovered(&self) {
        let names: Vec<(u64, String)> = {
            let ix = self.store.index();
            let Some(crate::store::Entry::Folder(f)) = ix.lookup(crate::store::ROOT, RECOVERED_FOLDER) else {
                return;
            };
            let mut v = vec![(crate::store::ROOT, RECOVERED_FOLDER.to_string())];
            if let Ok(children) = ix.children(f) {
                v.extend(children.map(|(n, _)| (f, n.to_string())));
            }
            v
        };
        for (folder, name) in names {
            self.expire_entry(folder, &name);
        }
    }

    /// One JetOSSnapshot* call. Returns the session id and its state after the call (0 when
    /// the session ended).
    pub fn snapshot(&self, uid: u32, op: u32, id: u64) -> FsResult<(u64, u32)> {
        if op != SNAP_INFO {
            self.may_control(uid)?;
        }
        let after = |id: u64| self.store.snapshot_info(id).map(|i| state_code(i.state)).unwrap_or(0);
        match op {
            SNAP_PREPARE => {
                let id = self.store.snapshot_prepare();
                Ok((id, SNAP_STATE_PREPARED))
            }
            SNAP_FREEZE => self.store.snapshot_freeze(id).map(|_| (id, after(id))).map_err(FsError::from),
            SNAP_THAW => self.store.snapshot_thaw(id).map(|_| (id, after(id))).map_err(FsError::from),
            SNAP_ABORT => self.store.snapshot_abort(id).map(|_| (id, 0)).map_err(FsError::from),
            SNAP_END => self.store.snapshot_end(id).map(|_| (id, 0)).map_err(FsError::from),
            SNAP_INFO => self.store.snapshot_info(id).map(|i| (id, state_code(i.state))).map_err(FsError::from),
            _ => err(Errno::EINVAL),
        }
    }

    /// `user.msgfs.crash_recovery` and `user.msgfs.snapshot` on the mount root. The lock is
    /// taken on behalf of the requesting process's parent (the shell that ran `setfattr`),
    /// or of `pid=N` when given.
    pub fn control_set(&self, uid: u32, pid: u32, name: &str, value: &[u8]) -> FsResult<()> {
        let value =
            std::str::from_utf8(value).map_err(|_| FsError::Errno(Errno::EINVAL))?.trim().trim_end_matches('\0');
        let mut words: Vec<&str> = value.split(',').map(str::trim).filter(|w| !w.is_empty()).collect();
        let holder = match words.iter().position(|w| w.starts_with("pid=")) {
            Some(i) => {
                let p = words.remove(i)[4..].parse::<u32>().map_err(|_| FsError::Errno(Errno::EINVAL))?;
                Some(p)
            }
            None => None,
        };
        match name {
            XATTR_CRASH_RECOVERY => {
                let flags = match words.as_slice() {
                    ["recover"] => RECOVER,
                    ["recover", "shutdown"] | ["shutdown", "recover"] => RECOVER | SYSTEM_SHUTDOWN,
                    ["continue"] => CONTINUE,
                    _ => return err(Errno::EINVAL),
                };
                let holder = holder.or_else(|| parent_of(pid)).unwrap_or(pid);
                self.crash_recovery(uid, flags, holder)
            }
            XATTR_SNAPSHOT => {
                self.may_control(uid)?;
                let sessions = self.store.snapshot_sessions();
                let find =
                    |states: &[SnapState]| sessions.iter().rev().find(|s| states.contains(&s.state)).map(|s| s.id);
                match words.as_slice() {
                    ["freeze"] => {
                        let id = self.store.snapshot_prepare();
                        if let Err(e) = self.store.snapshot_freeze(id) {
                            let _ = self.store.snapshot_end(id);
                            return Err(e.into());
                        }
                        Ok(())
                    }
                    ["thaw"] => {
                        let id = find(&[SnapState::Frozen, SnapState::TimedOut])
                            .ok_or(FsError::Store(Error::SnapshotSequence))?;
                        self.store.snapshot_thaw(id)?;
                        self.store.snapshot_end(id)?;
                        Ok(())
                    }
                    ["abort"] => {
                        let id =
                            find(&[SnapState::Frozen, SnapState::TimedOut, SnapState::Prepared, SnapState::Thawed])
                                .ok_or(FsError::Store(Error::SnapshotInvalidId))?;
                        Ok(self.store.snapshot_abort(id)?)
                    }
                    _ => err(Errno::EINVAL),
                }
            }
            _ => err(Errno::EPERM),
        }
    }

    /// `user.msgfs.state` (and the two control names, read back) on the mount root.
    pub fn control_get(&self, name: &str) -> FsResult<Vec<u8>> {
        let lock = match self.store.crash_lock() {
            None => "none".to_string(),
            Some(l) => format!("locked by process {}{}", l.pid, if l.shutdown { " (system shutdown)" } else { "" }),
        };
        let sessions: Vec<String> = self
            .store
            .snapshot_sessions()
            .iter()
            .map(|s| match s.frozen_for {
                Some(d) => format!(
                    "session {} {} for {} ms (timeout {} ms)",
                    s.id,
                    s.state.name(),
                    d.as_millis(),
                    s.timeout.as_millis()
                ),
                None => format!("session {} {}", s.id, s.state.name()),
            })
            .collect();
        let snap = if sessions.is_empty() { "none".to_string() } else { sessions.join("; ") };
        match name {
            XATTR_CRASH_RECOVERY => Ok(lock.into_bytes()),
            XATTR_SNAPSHOT => Ok(snap.into_bytes()),
            XATTR_SYNC => Ok(self.sync_get()),
            XATTR_STATE => {
                let r = self.store.report();
                let open = if r.was_clean {
                    "clean".to_string()
                } else {
                    format!(
                        "not closed cleanly before; checked at open: {} log records replayed, {} unreferenced objects removed{}",
                        r.replayed_records,
                        r.removed_objects,
                        r.torn_tail_cut.as_ref().map(|t| format!(", torn tail cut ({t})")).unwrap_or_default()
                    )
                };
                let sync = String::from_utf8_lossy(&self.sync_get()).lines().take(2).collect::<Vec<_>>().join(": ");
                let stats = &self.store.shared().stats;
                let commit = if self.store.lazy() {
                    format!(
                        "lazy ({} ms), {}",
                        self.store.lazy_delay().as_millis(),
                        if self.store.lazy_pending() { "saves waiting for the log sync" } else { "all durable" }
                    )
                } else {
                    "durable".to_string()
                };
                let log = format!(
                    "{} frames, {} syncs since open",
                    stats.frames.load(std::sync::atomic::Ordering::Relaxed),
                    stats.log_syncs.load(std::sync::atomic::Ordering::Relaxed)
                );
                let ix = self.store.index();
                Ok(format!(
                    "store: {}\nmessages: {}\nfolders: {}\ncrash_recovery: {lock}\nsnapshot: {snap}\nfrozen: {}\nlast open: {open}\nread_only: {}\nsync: {sync}\ncommit: {commit}\nlog: {log}\n",
                    self.store.path().map(|p| p.display().to_string()).unwrap_or_default(),
                    ix.message_count(),
                    ix.folder_count(),
                    if self.store.is_frozen() { "yes" } else { "no" },
                    self.read_only,
                )
                .into_bytes())
            }
            _ => err(Errno::ENODATA),
        }
    }
}

pub fn is_control_name(name: &str) -> bool {
    matches!(name, XATTR_CRASH_RECOVERY | XATTR_SNAPSHOT | XATTR_STATE | XATTR_SYNC)
}

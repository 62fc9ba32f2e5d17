//! The control interface shared by the daemon and the `msgfs` command: ioctl numbers, their
//! argument layouts and flag values, and the xattr names on the mount root.
//!
//! ioctl numbers follow Linux `_IOW`/`_IOWR` encoding with type `'M'`, so FUSE passes their
//! arguments (the kernel only forwards "restricted" ioctls whose size is in the number).

/// `_IOC(dir, type, nr, size)` as Linux encodes it on x86 and arm.
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
}
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// SaveChanges on the descriptor. Argument: `u32` flags (KEEP_OPEN_READONLY 0x1,
/// KEEP_OPEN_READWRITE 0x2, FORCE_SAVE 0x4, as in MAPI). Result: 0, or -1 with errno
/// EBUSY (MAPI_E_OBJECT_CHANGED), ENOENT (MAPI_E_OBJECT_DELETED), EACCES (MAPI_E_NO_ACCESS),
/// EROFS on a read-only mount, EINVAL for unknown flags, EBADF on a descriptor not open
/// for writing.
pub const MSGFS_IOC_SAVECHANGES: u32 = ioc(IOC_WRITE, b'M', 1, 4);

pub const KEEP_OPEN_READONLY: u32 = 0x1;
pub const KEEP_OPEN_READWRITE: u32 = 0x2;
pub const FORCE_SAVE: u32 = 0x4;

/// Crash-recovery lock. Argument: `struct { u32 flags; u32 pid; }` with the flags below and
/// the process on whose behalf the lock is taken (0: the caller). Results: 0; EBUSY (the
/// store is not consistent, or another process holds the lock); EPERM (CONTINUE after
/// SYSTEM_SHUTDOWN, or a caller that is neither root nor the mounting user); EINVAL.
pub const MSGFS_IOC_CRASH_RECOVERY: u32 = ioc(IOC_WRITE, b'M', 2, 8);
pub const RECOVER: u32 = 0x1;
pub const CONTINUE: u32 = 0x2;
pub const SYSTEM_SHUTDOWN: u32 = 0x4;

/// Snapshot sessions: `struct { u32 op; u32 state; u64 id; }`, read back with `id` (the new
/// session's, for PREPARE) and `state` (SNAP_STATE_*) filled in. Errors as in SEMANTICS.md
/// §3: EPROTO (wrong state), ENOENT (unknown or finished id), EBUSY (another session is
/// frozen), ETIMEDOUT (thaw after the freeze timed out), EINVAL, EPERM (not root or the
/// mounting user).
pub const MSGFS_IOC_SNAPSHOT: u32 = ioc(IOC_WRITE | IOC_READ, b'M', 3, 16);
pub const SNAP_PREPARE: u32 = 1;
pub const SNAP_FREEZE: u32 = 2;
pub const SNAP_THAW: u32 = 3;
pub const SNAP_ABORT: u32 = 4;
pub const SNAP_END: u32 = 5;
pub const SNAP_INFO: u32 = 6;
pub const SNAP_STATE_PREPARED: u32 = 1;
pub const SNAP_STATE_FROZEN: u32 = 2;
pub const SNAP_STATE_TIMED_OUT: u32 = 3;
pub const SNAP_STATE_THAWED: u32 = 4;

/// Computed, read-only xattrs on messages (never listed, so `rsync -X` does not copy them).
pub const XATTR_ENTRYID: &str = "user.msgfs.entryid";
pub const XATTR_VERSION: &str = "user.msgfs.version";
pub const XATTR_SUBJECT: &str = "user.msgfs.subject";
pub const XATTR_FROM: &str = "user.msgfs.from";
pub const XATTR_DATE: &str = "user.msgfs.date";
pub const XATTR_MESSAGE_ID: &str = "user.msgfs.message_id";
/// A message's flags as letters (`FS`: flagged and seen; see `store::flags::LETTERS`):
/// readable and writable, a change is a store change (the next sync uploads it).
pub const XATTR_FLAGS: &str = "user.msgfs.flags";
/// On a message `-o trash` moved to `Deleted Items`: the path it was removed from (folder
/// path and name, as `Inbox/Work/m.eml`), where `msgfs restore` puts it back. Stored with the message, but hidden and read-only as
/// the computed ones are; it goes when the message leaves `Deleted Items`.
pub const XATTR_ORIGIN: &str = "user.msgfs.origin";
/// The namespace reserved for msgfs: never stored, never listed.
pub const XATTR_PREFIX: &str = "user.msgfs.";

/// Control xattrs on the mount root (the control issue).
pub const XATTR_CRASH_RECOVERY: &str = "user.msgfs.crash_recovery";
pub const XATTR_SNAPSHOT: &str = "user.msgfs.snapshot";
pub const XATTR_STATE: &str = "user.msgfs.state";
/// On the mount root: set to a request to run `msgfs sync` in the daemon, read for its
/// progress and result; on a folder, read for its last sync result.
pub const XATTR_SYNC: &str = "user.msgfs.sync";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_linux_encoding() {
        // _IOW('M', 1, __u32) as the C macro computes it.
        assert_eq!(MSGFS_IOC_SAVECHANGES, 0x4004_4d01);
        assert_eq!(MSGFS_IOC_SNAPSHOT, 0xc010_4d03);
    }
}

//! Telling the kernel that what it cached is stale.
//!
//! - An inode's attributes are invalidated (`FUSE_NOTIFY_INVAL_INODE` with a negative
//!   offset: no page-cache range, so no page lock is waited for). The kernel takes no lock a
//!   request could hold, so this is sent from the request that made the change, before it
//!   is answered.
//! - An entry is expired (`FUSE_NOTIFY_INVAL_ENTRY` with `FUSE_EXPIRE_ONLY`): the next path
//!   walk revalidates it with a LOOKUP and drops it if the name now leads elsewhere. The
//!   kernel takes the parent directory's lock for it, even to expire, and a request on that
//!   directory (a RENAME) holds that lock while it waits for this daemon: sent from that
//!   request it deadlocks on itself, and a daemon killed while one waits keeps a thread in
//!   uninterruptible sleep (see `watchdog.rs`). So expiries go from a thread of their own,
//!   and correctness does not depend on them: requests on an old version's inode are
//!   answered with the message's current state.
//!
//! fuser 0.18 sends the entry notification without flags, so both are written here.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};

/// `fuse_notify_code` values (include/uapi/linux/fuse.h).
const FUSE_NOTIFY_INVAL_INODE: i32 = 2;
const FUSE_NOTIFY_INVAL_ENTRY: i32 = 3;
/// `fuse_notify_inval_entry_out.flags`: expire the entry, do not invalidate it.
const FUSE_EXPIRE_ONLY: u32 = 1;

/// Sends notifications on a duplicate of the session's /dev/fuse descriptor.
pub struct Notifier {
    fd: OwnedFd,
}

impl Notifier {
    pub fn new(fd: OwnedFd) -> Notifier {
        Notifier { fd }
    }

    /// Expire the kernel's entry `name` in folder inode `parent`. May wait for the
    /// directory's lock: never call it from a request handler.
    pub fn expire_entry(&self, parent: u64, name: &str) {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&parent.to_ne_bytes());
        out[8..12].copy_from_slice(&(name.len() as u32).to_ne_bytes());
        out[12..].copy_from_slice(&FUSE_EXPIRE_ONLY.to_ne_bytes());
        self.send(FUSE_NOTIFY_INVAL_ENTRY, &[&out, name.as_bytes(), b"\0"]);
    }

    /// Invalidate the kernel's attributes of inode `ino` (not its cached pages).
    pub fn inval_attrs(&self, ino: u64) {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&ino.to_ne_bytes());
        out[8..16].copy_from_slice(&(-1i64).to_ne_bytes());
        self.send(FUSE_NOTIFY_INVAL_INODE, &[&out]);
    }

    fn send(&self, code: i32, parts: &[&[u8]]) {
        let len: usize = 16 + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut header = [0u8; 16];
        header[..4].copy_from_slice(&(len as u32).to_ne_bytes());
        header[4..8].copy_from_slice(&code.to_ne_bytes());
        // unique (bytes 8..16) is 0: a notification, not a reply.
        let mut iov = vec![IoSlice::new(&header)];
        iov.extend(parts.iter().map(|p| IoSlice::new(p)));
        // SAFETY: writev reads the iovecs, which borrow live buffers; the descriptor is ours.
        let n = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr() as *const libc::iovec, iov.len() as i32) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            // ENOENT: the kernel had nothing cached; ENODEV/ENOTCONN: unmounting.
            if !matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV | libc::ENOTCONN)) {
                log::debug!("cache invalidation failed: {e}");
            }
        }
    }
}

//! A daemon killed while one of its threads sleeps uninterruptibly in the kernel must not
//! leave the mount hung.
//!
//! Such a thread (one expiring a cache entry waits for a directory's lock, held by a RENAME
//! that waits for this daemon's answer; a page-lock wait is another) keeps the process's
//! file table, and so /dev/fuse, open after SIGKILL. The kernel aborts a FUSE connection
//! only when its last descriptor closes, so the RENAME would never be answered, the thread
//! never woken, the process never gone, the store's lock never released: the mount stayed
//! hung until someone wrote to /sys/fs/fuse/connections/N/abort by hand.
//!
//! The watchdog is a child process forked at mount time with no descriptor at all. It polls
//! the daemon's /proc entry. When the daemon's main thread is dead but other threads remain
//! (so the connection is still held, and its number cannot have been reused), it aborts the
//! connection: the waiting requests fail, the stuck thread wakes and exits, the descriptors
//! close, and `umount -l` frees the mount point. When the process is gone whole (its
//! descriptors closed, the kernel aborted the connection itself) or was replaced (another
//! start time), it exits without touching anything. A clean unmount ends it before the
//! connection is released.

use std::ffi::CString;
use std::path::Path;

/// The running watchdog; [`Watchdog::stop`] ends it.
pub struct Watchdog {
    pid: libc::pid_t,
}

/// The watchdog's process name (/proc/PID/comm), NUL-terminated for prctl.
pub const WATCHDOG_NAME: &[u8] = b"msgfs-watchdog\0";

/// How often the daemon is looked at, in milliseconds.
const POLL_MS: i64 = 50;

/// The FUSE connection number of the mount at `mountpoint` (its device's minor), from
/// /proc/self/mountinfo: a stat of the mount point would ask this daemon, which is not
/// serving yet.
fn connection_of(mountpoint: &Path) -> Option<u32> {
    let want = std::fs::canonicalize(mountpoint).ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // The last mount on that point is the one on top.
    info.lines()
        .rfind(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.len() > 4 && Path::new(&unescape(f[4])) == want
        })
        .and_then(|l| l.split(' ').nth(2))
        .and_then(|dev| dev.split_once(':'))
        .and_then(|(major, minor)| (major == "0").then(|| minor.parse().ok()).flatten())
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What /proc/PID/stat says of a process: state, thread count, start time.
#[derive(Debug, PartialEq, Eq)]
struct ProcStat {
    state: u8,
    threads: u64,
    start: u64,
}

/// Parse /proc/PID/stat without allocating (it runs in the forked child). Fields after the
/// command name (which may hold spaces and parentheses) are counted from its last ')'.
fn parse_stat(buf: &[u8]) -> Option<ProcStat> {
    let close = buf.iter().rposition(|&c| c == b')')?;
    let rest = buf.get(close + 2..)?;
    let (mut state, mut threads, mut start) = (0u8, None, None);
    // Field 3 is the state; 20 the number of threads; 22 the start time.
    for (i, f) in rest.split(|&c| c == b' ').enumerate() {
        let field = i + 3;
        match field {
            3 => state = *f.first()?,
            20 | 22 => {
                let mut v = 0u64;
                for &c in f {
                    if !c.is_ascii_digit() {
                        return None;
                    }
                    v = v * 10 + (c - b'0') as u64;
                }
                if field == 20 {
                    threads = Some(v);
                } else {
                    start = Some(v);
                    break;
                }
            }
            _ => {}
        }
    }
    Some(ProcStat { state, threads: threads?, start: start? })
}

/// Read a small file into `buf` with raw calls; the number of bytes, or None.
fn read_raw(path: &CString, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: open/read/close on a valid C string and a buffer we own; async-signal-safe.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        (n > 0).then_some(n as usize)
    }
}

impl Watchdog {
    /// Fork the watchdog for this process's mount at `mountpoint`. None (logged) if the
    /// connection cannot be found or the fork fails: the mount works without it.
    pub fn start(mountpoint: &Path) -> Option<Watchdog> {
        let Some(conn) = connection_of(mountpoint) else {
            log::warn!("no FUSE connection found for {}: no watchdog", mountpoint.display());
            return None;
        };
        // SAFETY: getpid has no preconditions.
        let daemon = unsafe { libc::getpid() };
        let stat_path = CString::new(format!("/proc/{daemon}/stat")).ok()?;
        let abort_path = CString::new(format!("/sys/fs/fuse/connections/{conn}/abort")).ok()?;
        let mut buf = [0u8; 1024];
        let n = read_raw(&stat_path, &mut buf)?;
        let start = parse_stat(&buf[..n])?.start;
        // SAFETY: after fork the child only makes async-signal-safe system calls on data
        // prepared above (no allocation, no lock), and ends with _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            log::warn!("fork of the watchdog failed: {}", std::io::Error::last_os_error());
            return None;
        }
        if pid == 0 {
            // SAFETY: see above.
            unsafe { watch(&stat_path, &abort_path, start) }
        }
        Some(Watchdog { pid })
    }

    /// End the watchdog (a clean unmount): before the connection is released, so that it can
    /// never abort a later mount that got the same connection number.
    pub fn stop(self) {
        // SAFETY: our own child; kill and reap it.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// The child's loop. Never returns.
///
/// # Safety
/// Only in the child of a fork: it closes every descriptor it inherited.
unsafe fn watch(stat_path: &CString, abort_path: &CString, start: u64) -> ! {
    // No descriptor of the daemon's: not /dev/fuse (it would keep the connection up), not the
    // store's lock file (it would keep the store locked).
    libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
    // Its command line is the daemon's: the name tells `msgfs umount` it is not the daemon.
    libc::prctl(libc::PR_SET_NAME, WATCHDOG_NAME.as_ptr());
    let pause = libc::timespec { tv_sec: 0, tv_nsec: POLL_MS * 1_000_000 };
    let mut buf = [0u8; 1024];
    loop {
        libc::nanosleep(&pause, std::ptr::null_mut());
        let st = match read_raw(stat_path, &mut buf).and_then(|n| parse_stat(&buf[..n])) {
            Some(st) if st.start == start => st,
            // Gone whole (its descriptors closed), or another process by now.
            _ => libc::_exit(0),
        };
        if st.state == b'Z' || st.state == b'X' {
            if st.threads > 1 {
                let fd = libc::open(abort_path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd >= 0 {
                    libc::write(fd, b"1".as_ptr().cast(), 1);
                    libc::close(fd);
                }
            }
            libc::_exit(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = b"4242 (msgfs (work) x) Z 1 4242 4242 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 3 0 987654 0 0";
        assert_eq!(parse_stat(line), Some(ProcStat { state: b'Z', threads: 3, start: 987654 }));
        assert_eq!(parse_stat(b"garbage"), None);
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape(r"/tmp/a\040b\134c"), r"/tmp/a b\c");
    }
}

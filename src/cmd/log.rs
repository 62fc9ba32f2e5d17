//! The mount daemon's log: where it goes, how verbose it is, and how much of it is kept
//! (a log file is rotated at [`LIMIT`], keeping one older file, so it never fills a disk).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Size past which a log file is renamed to `NAME.1` (replacing the one before) and
/// started afresh.
pub const LIMIT: u64 = 4 << 20;

/// Where a background daemon logs without `--log-file`: `$XDG_STATE_HOME/msgfs/msgfs.log`,
/// else `~/.local/state/msgfs/msgfs.log`.
pub fn default_path() -> PathBuf {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => {
            std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp")).join(".local/state")
        }
    };
    base.join("msgfs/msgfs.log")
}

/// Open `path` for appending (its directory created), rotated first if it is over `limit`.
/// The log names messages (recovered drafts, conflicts): it is as private as the store.
pub fn open(path: &Path, limit: u64) -> Result<File, String> {
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() > limit) {
        let _ = std::fs::rename(path, rotated(path));
    }
    let f = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(|e| {
        format!(
            "cannot open the log {}: {e} (set --log-file, XDG_STATE_HOME or HOME to a place you can write)",
            path.display()
        )
    })?;
    // One made by an older msgfs may be 0644; narrowing it is all we want, so a failure
    // (someone else's file) changes nothing else.
    let _ = crate::store::vfs::fix_file_mode(&f);
    Ok(f)
}

fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// The level for `-v` given `verbose` times, or `debug` (`-d`, `-o debug`): warnings by
/// default, info with one `-v`, debug with two or with debug.
pub fn level(verbose: u8, debug: bool) -> log::LevelFilter {
    match (verbose, debug) {
        (_, true) | (2.., _) => log::LevelFilter::Debug,
        (1, _) => log::LevelFilter::Info,
        (0, _) => log::LevelFilter::Warn,
    }
}

/// Start logging to stderr at `level` (RUST_LOG, when set, decides instead). With `file`,
/// stderr becomes that file first, and is rotated as it grows, so that panics and anything
/// else written to stderr land in the same bounded log.
pub fn init(level: log::LevelFilter, file: Option<&Path>) -> Result<(), String> {
    let mut logger = env_logger::Builder::new();
    logger.filter_level(level);
    // fuser's one warning is "Failed to umount filesystem" when its session ends after an
    // unmount made outside the daemon (`fusermount3 -u`, `umount`): the mount is already
    // gone, so its own unmount at the end fails with EINVAL, which is no failure. Our own
    // unmount (at SIGTERM) goes through `SessionUnmounter` and logs its errors itself. A
    // RUST_LOG that names fuser shows everything it asks for.
    let rust_log = std::env::var("RUST_LOG").unwrap_or_default();
    if !rust_log.contains("fuser") {
        logger.filter_module("fuser::session", log::LevelFilter::Error);
    }
    if !rust_log.is_empty() {
        logger.parse_filters(&rust_log);
    }
    if let Some(path) = file {
        let f = open(path, LIMIT)?;
        // SAFETY: dup2 of a descriptor we own onto stderr.
        if unsafe { libc::dup2(f.as_raw_fd(), 2) } < 0 {
            return Err(format!("log to {}: {}", path.display(), std::io::Error::last_os_error()));
        }
        logger.target(env_logger::Target::Pipe(Box::new(Rotating { path: path.to_path_buf(), fd: 2, limit: LIMIT })));
    }
    let _ = logger.try_init();
    Ok(())
}

/// Writes to descriptor `fd`, the log file at `path`; once the file passes `limit` it is
/// renamed to `path.1` and `fd` becomes a new, empty file at `path`.
struct Rotating {
    path: PathBuf,
    fd: RawFd,
    limit: u64,
}

impl Rotating {
    fn rotate_if_full(&self) {
        // SAFETY: fstat into a zeroed struct we own.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(self.fd, &mut st) } != 0 || (st.st_size as u64) <= self.limit {
            return;
        }
        // Logging must not fail the daemon: when the new file cannot be made, go on
        // writing to the old one.
        if let Ok(f) = open(&self.path, self.limit) {
            // SAFETY: dup2 of a descriptor we own onto the log's descriptor.
            unsafe { libc::dup2(f.as_raw_fd(), self.fd) };
        }
    }
}

impl Write for Rotating {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // SAFETY: write(2) of a valid buffer of its own length.
        let n = unsafe { libc::write(self.fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        self.rotate_if_full();
        Ok(n as usize)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_file_past_its_limit_is_rotated_keeping_one_older_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/msgfs/msgfs.log");
        let f = open(&path, 100).unwrap();
        // Our own descriptor stands in for the daemon's stderr.
        let fd = f.as_raw_fd();
        let mut log = Rotating { path: path.clone(), fd, limit: 100 };
        for i in 0..30 {
            writeln!(log, "line {i:02} of the log").unwrap();
        }
        let now = std::fs::read_to_string(&path).unwrap();
        let old = std::fs::read_to_string(rotated(&path)).unwrap();
        assert!(now.len() as u64 <= 100 + 20 && old.len() as u64 <= 100 + 20, "{now}\n{old}");
        assert!(now.ends_with("line 29 of the log\n"), "{now}");
        assert!(!std::fs::read_dir(path.parent().unwrap()).unwrap().any(|e| e.unwrap().file_name() == "msgfs.log.2"));
        // A file found over the limit at open is rotated too.
        std::fs::write(&path, vec![b'x'; 200]).unwrap();
        drop(open(&path, 100).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert_eq!(std::fs::metadata(rotated(&path)).unwrap().len(), 200);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn verbosity_counts_up_from_warnings() {
        assert_eq!(level(0, false), log::LevelFilter::Warn);
        assert_eq!(level(1, false), log::LevelFilter::Info);
        assert_eq!(level(2, false), log::LevelFilter::Debug);
        assert_eq!(level(0, true), log::LevelFilter::Debug);
    }
}

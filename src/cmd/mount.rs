//! `msgfs mount` and `msgfs umount`: start the daemon in the background (or the
//! foreground), unmount and wait until everything is saved.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::CmdResult;
use crate::fs::{serve, MountConfig};
use crate::store::{Options, Store, LOCK_FILE};

fn parse_options(opts: &[String]) -> Result<MountConfig, String> {
    let mut c = MountConfig::default();
    for o in opts.iter().flat_map(|s| s.split(',')).filter(|s| !s.is_empty()) {
        match o.split_once('=') {
            None if o == "ro" => c.read_only = true,
            None if o == "rw" => c.read_only = false,
            None if o == "allow_other" => c.allow_other = true,
            Some(("snapshot_timeout_ms", v)) => {
                c.snapshot_timeout_ms =
                    v.parse().map_err(|_| format!("-o snapshot_timeout_ms={v}: not a number of milliseconds"))?
            }
            Some(("threads", v)) => c.threads = v.parse().map_err(|_| format!("-o threads={v}: not a number"))?,
            _ => {
                return Err(format!(
                    "unknown mount option {o:?} (known: ro, rw, allow_other, threads=N, snapshot_timeout_ms=N)"
                ))
            }
        }
    }
    Ok(c)
}

/// Refuse a mount point that cannot work, with what to do about it.
fn check_mountpoint(mp: &Path) -> Result<(), String> {
    let md =
        std::fs::metadata(mp).map_err(|e| format!("mount point {}: {e} (create it with mkdir first)", mp.display()))?;
    if !md.is_dir() {
        return Err(format!("mount point {} is not a directory", mp.display()));
    }
    let mut entries = std::fs::read_dir(mp).map_err(|e| format!("mount point {}: {e}", mp.display()))?;
    if entries.next().is_some() {
        return Err(format!("mount point {} is not empty (is something already mounted there?)", mp.display()));
    }
    if !Path::new("/dev/fuse").exists() {
        return Err(
            "/dev/fuse is missing: install fuse3 (apt-get install fuse3) and load the module (modprobe fuse)".into()
        );
    }
    // A normal user needs read-write access to /dev/fuse even with fusermount3: the setuid
    // helper mounts, but opens the device as the calling user (libfuse drops its privileges
    // for that open), so the device's mode says who may use FUSE.
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        return Err(format!(
            "cannot open /dev/fuse: {e} (a normal user needs read-write access to it: Debian's udev rule makes it \
             mode 0666; without udev, as root: chmod 0666 /dev/fuse, or setfacl -m u:$USER:rw /dev/fuse; or mount as root)"
        ));
    }
    if !is_root() && !on_path("fusermount3") {
        return Err("fusermount3 is missing: a normal user mounts through it (apt-get install fuse3)".into());
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| d.join(program).is_file())
}

/// Where the background daemon logs.
fn log_path() -> PathBuf {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => {
            std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp")).join(".local/state")
        }
    };
    base.join("msgfs/msgfs.log")
}

pub fn run(store: &Path, mp: &Path, foreground: bool, options: &[String], ready_fd: Option<RawFd>) -> CmdResult {
    let cfg = parse_options(options)?;
    check_mountpoint(mp)?;
    if !foreground {
        return spawn_daemon(store, mp, options);
    }
    // Signals are taken by one thread with sigwait; block them before any thread starts.
    let sigs = block_signals();
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).try_init();
    let mut ready = ready_fd.map(|fd| {
        // SAFETY: the parent passed us this descriptor for our exclusive use.
        unsafe { File::from_raw_fd(fd) }
    });
    if crate::pstfs::is_pst(store) {
        return serve_pst(store, mp, &cfg, sigs, ready);
    }
    // An absolute path: `msgfs umount` and `msgfs backup` find the store from the mount table.
    let _ = std::fs::create_dir_all(store);
    let store = &std::fs::canonicalize(store).unwrap_or_else(|_| store.to_path_buf());
    // A read-only mount changes nothing: no lock, no recovery, no creation.
    let opts = if cfg.read_only {
        Options { read_only: true, ..Default::default() }
    } else {
        Options { create: true, ..Default::default() }
    };
    let st = match Store::open(store, opts) {
        Ok(s) => s,
        Err(e) => {
            if let Some(r) = ready.as_mut() {
                let _ = writeln!(r, "{e}");
            }
            return Err(e.into());
        }
    };
    let mp_abs = std::fs::canonicalize(mp).unwrap_or_else(|_| mp.to_path_buf());
    let res = serve(st, &mp_abs, &cfg, |unmounter| {
        unmount_on_signal(sigs, unmounter);
        if let Some(mut r) = ready.take() {
            let _ = writeln!(r, "ok");
        }
    });
    if let Err(e) = res {
        if let Some(r) = ready.as_mut() {
            let _ = writeln!(r, "mount {}: {e}", mp.display());
        }
        return Err(format!("mount {}: {e}", mp.display()).into());
    }
    Ok(0)
}

/// A thread that unmounts on the first of the signals blocked by [`block_signals`].
fn unmount_on_signal(sigs: libc::sigset_t, mut unmounter: crate::fs::Unmounter) {
    std::thread::Builder::new()
        .name("msgfs-signals".into())
        .spawn(move || {
            let mut sig = 0;
            // SAFETY: sigwait on the set we blocked; it writes the signal number to `sig`.
            unsafe { libc::sigwait(&sigs, &mut sig) };
            log::info!("signal {sig}: unmounting");
            // A file closed a moment ago may still hold the mount (a process forked at that
            // moment keeps its descriptor until it execs): retry a busy unmount for 5 s.
            for attempt in 0.. {
                match unmounter.unmount() {
                    Ok(()) => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 50 => {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                    Err(e) => {
                        log::warn!("unmount after signal {sig}: {e} (close the files open there, then unmount again)");
                        break;
                    }
                }
            }
        })
        .expect("spawn the signal thread");
}

/// Serve a PST file read-only (the daemon side of `msgfs mount FILE.pst MOUNTPOINT`).
fn serve_pst(path: &Path, mp: &Path, cfg: &MountConfig, sigs: libc::sigset_t, mut ready: Option<File>) -> CmdResult {
    let path = &std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mp_abs = std::fs::canonicalize(mp).unwrap_or_else(|_| mp.to_path_buf());
    let res = crate::pstfs::serve(path, &mp_abs, cfg.allow_other, |unmounter| {
        unmount_on_signal(sigs, unmounter);
        if let Some(mut r) = ready.take() {
            let _ = writeln!(r, "ok");
        }
    });
    if let Err(e) = res {
        if let Some(r) = ready.as_mut() {
            let _ = writeln!(r, "{e}");
        }
        return Err(format!("mount {}: {e}", mp.display()).into());
    }
    Ok(0)
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: plain signal-set manipulation on a local set, then blocking it in this thread
    // (inherited by every thread started afterwards).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Start `msgfs mount -f` as a detached daemon and wait until it says the mount is ready.
fn spawn_daemon(store: &Path, mp: &Path, options: &[String]) -> CmdResult {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let (rfd, wfd) = (fds[0], fds[1]);
    let log = log_path();
    if let Some(d) = log.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let logf = std::fs::OpenOptions::new().create(true).append(true).open(&log).map_err(|e| {
        format!(
            "cannot open the daemon's log {}: {e} (set XDG_STATE_HOME or HOME to a directory you can write)",
            log.display()
        )
    })?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("mount").arg("-f").arg("--ready-fd").arg(wfd.to_string());
    for o in options {
        cmd.arg("-o").arg(o);
    }
    // Absolute paths: `msgfs umount` recognizes its daemon by the mount point in its command line.
    let mp_abs = std::fs::canonicalize(mp).unwrap_or_else(|_| mp.to_path_buf());
    cmd.arg(store).arg(&mp_abs).stdin(Stdio::null()).stdout(Stdio::null()).stderr(logf);
    // SAFETY: between fork and exec we only call async-signal-safe functions (setsid, close).
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            libc::close(rfd);
            Ok(())
        });
    }
    let child = cmd.spawn();
    // SAFETY: our copy of the write end; the child has its own.
    unsafe { libc::close(wfd) };
    let mut child = child?;
    // SAFETY: the read end is ours alone.
    let mut r = unsafe { File::from_raw_fd(rfd) };
    let mut msg = String::new();
    let _ = r.read_to_string(&mut msg);
    let msg = msg.trim();
    if msg.starts_with("ok") {
        return Ok(0);
    }
    let _ = child.wait();
    if msg.is_empty() {
        return Err(format!("the mount daemon exited before the mount was ready; see {}", log.display()).into());
    }
    Err(msg.lines().last().unwrap_or(msg).to_string().into())
}

/// Undo mountinfo's octal escapes (`\040` for a space, and tab, newline, backslash).
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

/// The store directory behind a msgfs mount, from /proc/self/mountinfo.
pub fn store_of(mp: &Path) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mp.to_str()?;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else { continue };
        if fields.get(4).map(|f| unescape(f)) == Some(want.to_string()) {
            let source = fields.get(dash + 2)?;
            let path = source.strip_prefix("msgfs:").or_else(|| source.strip_prefix("msgfs-pst:"));
            return path.map(|s| PathBuf::from(unescape(s)));
        }
    }
    None
}

/// The daemon serving `mp`: the holder named in the store's lock file, if that process is a
/// `msgfs mount` of this mount point (a read-only mount takes no lock and has nothing to save).
fn daemon_pid(store: &Path, mp: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(store.join(LOCK_FILE)).ok()?;
    let pid: i32 = text.strip_prefix("process ")?.split_whitespace().next()?.parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let ours = args.contains(&&b"mount"[..]) && args.contains(&mp.as_os_str().as_encoded_bytes());
    ours.then_some(pid)
}

pub fn umount(mp: &Path) -> CmdResult {
    let mp = std::fs::canonicalize(mp).map_err(|e| format!("{}: {e}", mp.display()))?;
    let store = store_of(&mp).ok_or_else(|| format!("{} is not a msgfs mount", mp.display()))?;
    let pid = daemon_pid(&store, &mp);
    if is_root() {
        let c = std::ffi::CString::new(mp.as_os_str().as_encoded_bytes())?;
        // SAFETY: umount2 on a valid C string path.
        if unsafe { libc::umount2(c.as_ptr(), 0) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(format!("unmount {}: {e} (close the files open there first)", mp.display()).into());
        }
    } else {
        // The kernel lets only root unmount; the setuid helper unmounts for the user who mounted.
        let out = Command::new("fusermount3")
            .arg("-u")
            .arg(&mp)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("fusermount3: {e} (install fuse3: apt-get install fuse3)"))?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            return Err(
                format!("fusermount3 -u {}: {} (close the files open there first)", mp.display(), why.trim()).into()
            );
        }
    }
    // Wait for the daemon to finish saving and close the store.
    if let Some(pid) = pid {
        let start = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists() && start.elapsed() < Duration::from_secs(120) {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.split(' ').nth(2) == Some("Z") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if Path::new(&format!("/proc/{pid}")).exists() && stat.split(' ').nth(2) != Some("Z") {
            return Err(format!(
                "unmounted {}, but its daemon (process {pid}) is still saving after 2 minutes; see its log",
                mp.display()
            )
            .into());
        }
    }
    Ok(0)
}

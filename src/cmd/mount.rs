//! `msgfs mount` and `msgfs umount`: start the daemon in the background (or the
//! foreground), unmount and wait until everything is saved.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::log as daemon_log;
use super::CmdResult;
use crate::fs::serve;
use crate::pst::view::PstView;
use crate::store::{Options, Store, FORMAT_FILE, LOCK_FILE};

/// Refuse a STORE that is a file but no PST (an mbox, say): opening it as a store directory
/// would fail with "File exists", which says nothing of what to do.
fn check_store(store: &Path) -> Result<(), String> {
    let Ok(md) = std::fs::metadata(store) else { return Ok(()) };
    if md.is_dir() || crate::pst::is_pst(store) {
        return Ok(());
    }
    let p = store.display();
    let looks_mbox = std::fs::File::open(store)
        .and_then(|mut f| {
            let mut head = [0u8; 5];
            f.read_exact(&mut head).map(|()| &head == b"From ")
        })
        .unwrap_or(false);
    if looks_mbox {
        Err(format!("{p} is an mbox file, not a store: import it with `msgfs import {p}`, then mount the store"))
    } else {
        Err(format!(
            "{p} is a file, not a store directory or an Outlook PST: import mail with `msgfs import {p}`, then mount the store"
        ))
    }
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

/// `msgfs mount`, as parsed.
pub struct Args {
    pub store: PathBuf,
    pub mountpoint: PathBuf,
    pub foreground: bool,
    /// `-o`, as given (each may hold several, comma-separated).
    pub options: Vec<String>,
    /// How many `-v`.
    pub verbose: u8,
    /// `-d`: debug log, in the foreground.
    pub debug: bool,
    pub log_file: Option<PathBuf>,
}

/// The descriptor on which a daemon started by [`spawn_daemon`] says whether the mount is
/// ready: given in the environment, not as an option, so that no completion or --help
/// shows users an option that is not theirs.
const READY_FD_VAR: &str = "MSGFS_READY_FD";

pub fn run(args: Args) -> CmdResult {
    let (store, mp) = (&args.store, &args.mountpoint);
    let opts = super::mount_options::parse(&args.options)?;
    let cfg = &opts.config;
    check_mountpoint(mp)?;
    check_store(store)?;
    // Said by the command the user ran; the daemon's log gets it too (foreground).
    if store.join(FORMAT_FILE).is_file() && super::readable_by_others(store) {
        eprintln!("{}", super::readable_warning(store));
    }
    if !args.foreground && !args.debug {
        return spawn_daemon(&args);
    }
    // Signals are taken by one thread with sigwait; block them before any thread starts.
    let sigs = block_signals();
    daemon_log::init(daemon_log::level(args.verbose, args.debug || opts.debug), args.log_file.as_deref())?;
    for note in &opts.notes {
        log::info!("{note}");
    }
    let ready_fd: Option<RawFd> = std::env::var(READY_FD_VAR).ok().and_then(|v| v.parse().ok());
    // Still one thread (the signal thread and fuser's start later): removing it is safe
    // here, and keeps it from the programs the daemon runs (pass_cmd, rsync).
    std::env::remove_var(READY_FD_VAR);
    let mut ready = ready_fd.map(|fd| {
        // SAFETY: the parent passed us this descriptor for our exclusive use.
        unsafe { File::from_raw_fd(fd) }
    });
    // Open what is mounted: a PST file, or a store.
    let source = if crate::pst::is_pst(store) {
        let path = std::fs::canonicalize(store).map_err(|e| format!("{}: {e}", store.display()))?;
        PstView::open(&path).map(Source::Pst).map_err(|e| e.to_string())
    } else {
        // An absolute path: `msgfs umount` and `msgfs backup` find the store from the mount table.
        let _ = std::fs::create_dir_all(store);
        let store = &std::fs::canonicalize(store).unwrap_or_else(|_| store.to_path_buf());
        // A read-only mount changes nothing: no lock, no recovery, no creation.
        let opts = if cfg.read_only {
            Options { read_only: true, ..Default::default() }
        } else {
            Options {
                create: true,
                lazy: cfg.lazy_ms.is_some(),
                lazy_delay: Duration::from_millis(cfg.lazy_ms.unwrap_or(crate::store::lazy::DEFAULT_DELAY_MS)),
                ..Default::default()
            }
        };
        Store::open(store, opts).map(Source::Store).map_err(|e| e.to_string())
    };
    let source = match source {
        Ok(s) => s,
        Err(e) => {
            if let Some(r) = ready.as_mut() {
                let _ = writeln!(r, "{e}");
            }
            return Err(e.into());
        }
    };
    let mp_abs = std::fs::canonicalize(mp).unwrap_or_else(|_| mp.to_path_buf());
    let on_ready = |unmounter| {
        unmount_on_signal(sigs, unmounter, mp_abs.clone());
        if let Some(mut r) = ready.take() {
            let _ = writeln!(r, "ok");
        }
        // A `Type=notify` unit (msgfs@.service) starts what depends on the mount only now.
        if let Err(e) = super::notify::notify("READY=1") {
            log::warn!("tell systemd the mount is ready (NOTIFY_SOCKET): {e}");
        }
    };
    let res = match source {
        Source::Store(st) => serve(st, &mp_abs, cfg, on_ready),
        Source::Pst(view) => crate::pst::view::serve(view, &mp_abs, cfg, on_ready),
    };
    if let Err(e) = res {
        if let Some(r) = ready.as_mut() {
            let _ = writeln!(r, "mount {}: {e}", mp.display());
        }
        return Err(format!("mount {}: {e}", mp.display()).into());
    }
    Ok(0)
}

/// What `msgfs mount` serves.
enum Source {
    Store(Store),
    Pst(PstView),
}

/// A thread that unmounts on SIGTERM, SIGINT or SIGHUP (blocked by [`block_signals`]);
/// `msgfs umount` sends SIGTERM.
///
/// The daemon unmounts, not `msgfs umount`: fuser 0.18 unmounts again when its session
/// ends unless its own unmounter did it, and its check "still mounted?" reads the device's
/// POLLERR (which the kernel sets once the mount is gone) as mounted, so every unmount done
/// from outside ended in a second umount(2), EINVAL, and "Failed to umount filesystem:
/// Invalid argument" in the log. The unmounter hands fuser's mount over to us and usually
/// unmounts; when it does not (it skips the unmount while a request is queued on the device,
/// and gives the mount up when the unmount fails), we unmount the point ourselves.
fn unmount_on_signal(sigs: libc::sigset_t, mut unmounter: crate::fs::Unmounter, mp: PathBuf) {
    std::thread::Builder::new()
        .name("msgfs-signals".into())
        .spawn(move || {
            let mut handed_over = false;
            loop {
                let mut sig = 0;
                // SAFETY: sigwait on the set we blocked; it writes the signal number to `sig`.
                unsafe { libc::sigwait(&sigs, &mut sig) };
                log::info!("signal {sig}: unmounting");
                let _ = super::notify::notify("STOPPING=1");
                if !handed_over {
                    handed_over = true;
                    if let Err(e) = unmounter.unmount() {
                        log::debug!("unmount through fuser: {e}; unmounting directly");
                    }
                }
                // A file closed a moment ago may still hold the mount (a process forked at
                // that moment keeps its descriptor until it execs): retry a busy unmount for 5 s.
                for attempt in 0.. {
                    if !is_mounted_here(&mp) {
                        break;
                    }
                    match unmount_point(&mp) {
                        Ok(()) => break,
                        Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 50 => {
                            std::thread::sleep(std::time::Duration::from_millis(100));
                        }
                        Err(e) => {
                            log::warn!(
                                "unmount {} after signal {sig}: {e} (close the files open there, then unmount again)",
                                mp.display()
                            );
                            break;
                        }
                    }
                }
            }
        })
        .expect("spawn the signal thread");
}

/// Whether the topmost mount at `mp` is a msgfs mount.
fn is_mounted_here(mp: &Path) -> bool {
    mount_table().into_iter().rev().find(|m| m.point == mp).is_some_and(|m| m.is_msgfs())
}

/// Unmount `mp`: umount(2) as root, else through the setuid helper (the kernel lets only
/// root unmount). A failure of the helper counts as busy, the usual reason.
fn unmount_point(mp: &Path) -> std::io::Result<()> {
    if is_root() {
        let c = std::ffi::CString::new(mp.as_os_str().as_encoded_bytes())?;
        // SAFETY: umount2 on a valid C string path.
        if unsafe { libc::umount2(c.as_ptr(), 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        return Ok(());
    }
    let ok = Command::new("fusermount3").arg("-u").arg("-q").arg(mp).stdin(Stdio::null()).status()?.success();
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(libc::EBUSY))
    }
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
fn spawn_daemon(args: &Args) -> CmdResult {
    let (store, mp) = (&args.store, &args.mountpoint);
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let (rfd, wfd) = (fds[0], fds[1]);
    let log = std::path::absolute(args.log_file.clone().unwrap_or_else(daemon_log::default_path))?;
    // Opened here too, so that a log that cannot be written is said by the command the
    // user ran; the daemon logs to the same file (and rotates it) through --log-file.
    let logf = daemon_log::open(&log, daemon_log::LIMIT)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("mount").arg("-f").arg("--log-file").arg(&log).env(READY_FD_VAR, wfd.to_string());
    for _ in 0..args.verbose {
        cmd.arg("-v");
    }
    for o in &args.options {
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

/// One line of /proc/self/mountinfo: where, what type, and the source (our fs name).
struct MountEntry {
    point: PathBuf,
    fstype: String,
    source: String,
}

impl MountEntry {
    /// Ours: a FUSE mount (type `fuse`, or `fuse.msgfs` where the subtype is recorded, as
    /// through fusermount3) whose fs name is `msgfs:STORE` or `msgfs-pst:FILE`.
    fn is_msgfs(&self) -> bool {
        (self.fstype == "fuse" || self.fstype == "fuse.msgfs")
            && (self.source.starts_with("msgfs:") || self.source.starts_with("msgfs-pst:"))
    }
}

/// The mount table, in mount order (a later mount on the same point hides an earlier one).
fn mount_table() -> Vec<MountEntry> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else { continue };
        let (Some(point), Some(fstype), Some(source)) = (fields.get(4), fields.get(dash + 1), fields.get(dash + 2))
        else {
            continue;
        };
        out.push(MountEntry {
            point: PathBuf::from(unescape(point)),
            fstype: unescape(fstype),
            source: unescape(source),
        });
    }
    out
}

/// The FUSE superblock magic, as statfs(2) reports it for every FUSE mount.
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// Whether the filesystem at `path` is FUSE. A FUSE mount whose daemon died answers
/// nothing (ENOTCONN); it counts, so that `msgfs umount` can remove it.
fn is_fuse(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: statfs writes into the zeroed struct we own, given a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOTCONN);
    }
    st.f_type as i64 == FUSE_SUPER_MAGIC
}

/// `mp` (canonical) if it is the root of a msgfs mount: the filesystem there is FUSE, and
/// the mount table's topmost mount at exactly that point is a msgfs one. Commands
/// that set `user.msgfs.*` xattrs or delete files ask this first: on an ordinary directory
/// those xattrs would simply be stored, and the command would seem to work.
pub fn msgfs_root(mp: &Path) -> Result<PathBuf, String> {
    let not = || format!("{} is not a msgfs mount", mp.display());
    let abs = match std::fs::canonicalize(mp) {
        Ok(abs) => abs,
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            // A mount whose daemon died cannot be looked at, but the mount table still
            // names it: ours if its source says so (then `msgfs umount` can remove it).
            let abs = std::path::absolute(mp).map_err(|e| format!("{}: {e}", mp.display()))?;
            let top = mount_table().into_iter().rev().find(|m| m.point == abs);
            return match top {
                Some(m) if m.is_msgfs() => Ok(abs),
                _ => Err(format!("{}: {e}", mp.display())),
            };
        }
        Err(e) => return Err(format!("{}: {e}", mp.display())),
    };
    let top = mount_table().into_iter().rev().find(|m| m.point == abs);
    match top {
        Some(m) if m.is_msgfs() && is_fuse(&abs) => Ok(abs),
        _ => Err(not()),
    }
}

/// The msgfs mount `path` lies in (at any depth), if any: the mount with the longest mount
/// point that is an ancestor of `path`'s nearest existing ancestor (made canonical).
pub fn msgfs_mount_containing(path: &Path) -> Option<PathBuf> {
    let mut p = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().ok()?.join(path) };
    let abs = loop {
        if let Ok(c) = std::fs::canonicalize(&p) {
            break c;
        }
        p = p.parent()?.to_path_buf();
    };
    let mut best: Option<MountEntry> = None;
    for m in mount_table() {
        if abs.starts_with(&m.point)
            && best.as_ref().is_none_or(|b| m.point.components().count() >= b.point.components().count())
        {
            best = Some(m);
        }
    }
    best.filter(MountEntry::is_msgfs).map(|m| m.point)
}

/// The mount point of a read-write msgfs mount of `store`, from /proc/self/mountinfo.
pub fn mount_of(store: &Path) -> Option<PathBuf> {
    let want = std::fs::canonicalize(store).ok()?;
    mount_table()
        .into_iter()
        .rev()
        .filter(|m| m.is_msgfs())
        .find(|m| m.source.strip_prefix("msgfs:").and_then(|p| std::fs::canonicalize(p).ok()).as_deref() == Some(&want))
        .map(|m| m.point)
}

/// The store directory behind a msgfs mount, from /proc/self/mountinfo.
pub fn store_of(mp: &Path) -> Option<PathBuf> {
    let m = mount_table().into_iter().rev().find(|m| m.point == mp && m.is_msgfs())?;
    let path = m.source.strip_prefix("msgfs:").or_else(|| m.source.strip_prefix("msgfs-pst:"));
    path.map(PathBuf::from)
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

/// The `msgfs mount -f` process serving `mp` when it holds no store lock (a read-only
/// mount, a PST): found by its command line, whose last argument is the mount point.
fn daemon_by_cmdline(mp: &Path) -> Option<i32> {
    let me = std::process::id() as i32;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        // The daemon's watchdog has its command line (it is a fork), not its name.
        let comm = std::fs::read(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.strip_suffix(b"\n").unwrap_or(&comm) == &crate::fs::WATCHDOG_NAME[..crate::fs::WATCHDOG_NAME.len() - 1]
        {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
        let is_daemon = args.get(1) == Some(&&b"mount"[..]) && args.contains(&&b"-f"[..]);
        if is_daemon && args.last() == Some(&mp.as_os_str().as_encoded_bytes()) {
            return Some(pid);
        }
    }
    None
}

pub fn umount(mp: &Path) -> CmdResult {
    let mp = msgfs_root(mp)?;
    let store = store_of(&mp).ok_or_else(|| format!("{} is not a msgfs mount", mp.display()))?;
    let pid = daemon_pid(&store, &mp).or_else(|| daemon_by_cmdline(&mp));
    let busy = |mp: &Path| format!("unmount {}: the mount is busy (close the files open there first)", mp.display());
    match pid {
        Some(pid) => {
            // The daemon unmounts (see `unmount_on_signal`). Root can first learn whether
            // the mount is busy without unmounting it: MNT_EXPIRE fails with EBUSY then, and
            // with EAGAIN (only marking it) when it is not.
            if is_root() {
                let c = std::ffi::CString::new(mp.as_os_str().as_encoded_bytes())?;
                // SAFETY: umount2 on a valid C string path.
                let r = unsafe { libc::umount2(c.as_ptr(), libc::MNT_EXPIRE) };
                if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBUSY) {
                    return Err(busy(&mp).into());
                }
            }
            // SAFETY: a signal to the daemon process we identified above.
            if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
                return Err(format!(
                    "signal the daemon of {} (process {pid}): {}",
                    mp.display(),
                    std::io::Error::last_os_error()
                )
                .into());
            }
            // It retries a busy unmount for 5 s, then gives up and keeps serving.
            let start = Instant::now();
            while is_mounted_here(&mp) && alive(pid) {
                if start.elapsed() > Duration::from_secs(10) {
                    return Err(busy(&mp).into());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        None => unmount_point(&mp)
            .map_err(|e| format!("unmount {}: {e} (close the files open there first)", mp.display()))?,
    }
    // Wait for the daemon to finish saving and close the store.
    if let Some(pid) = pid {
        let start = Instant::now();
        while alive(pid) && start.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if alive(pid) {
            return Err(format!(
                "unmounted {}, but its daemon (process {pid}) is still saving after 2 minutes; see its log",
                mp.display()
            )
            .into());
        }
    }
    Ok(0)
}

/// Whether process `pid` is running (a zombie has finished).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may hold spaces.
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

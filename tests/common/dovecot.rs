//! A throwaway Dovecot IMAP server for tests: its own temporary directory, free loopback
//! ports, a self-signed certificate, one test user; stopped by pid on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use msgfs::sync::config::{Account, MaxDeletes, Password, Tls};
use msgfs::sync::imap::Connection;

pub const USER: &str = "tester";
pub const PASS: &str = "s3cret pass";
/// A second user whose name and password need quoting and literals: `"`, `\`, non-ASCII.
pub const USER2: &str = "zoë";
pub const PASS2: &str = "q\"uo\\te pässwörd ✓";

/// True when a test needing Dovecot should return early (printing why). Under CI a missing
/// binary is a failure naming the package, as for the mount tests' programs.
pub fn should_skip() -> bool {
    let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    for (prog, pkg) in [("dovecot", "dovecot-imapd"), ("openssl", "openssl")] {
        if find(prog).is_none() {
            assert!(!ci, "program {prog} is missing: apt-get install {pkg}");
            // Straight to fd 2: eprintln! is captured by the test harness and a passing
            // test's capture is never shown, so the skip would be invisible.
            let _ = writeln!(std::io::stderr(), "skipped: program {prog} is missing (apt-get install {pkg})");
            return true;
        }
    }
    false
}

/// A program on PATH or in /usr/sbin, /sbin: dovecot lives in /usr/sbin, which an ordinary
/// user's PATH often lacks.
fn find(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// What the server offers; the default is everything Dovecot has, with TLS.
#[derive(Clone, Default)]
pub struct Options {
    /// No TLS at all: the plain port then offers no STARTTLS.
    pub no_ssl: bool,
    /// Replaces the capabilities announced after login (`imap_capability`), to play a
    /// server without QRESYNC, CONDSTORE and the like.
    pub capability: Option<String>,
}

pub struct Dovecot {
    pub dir: tempfile::TempDir,
    /// Plain-text port (STARTTLS offered unless `no_ssl`).
    pub port: u16,
    /// Implicit-TLS port (0 with `no_ssl`).
    pub tls_port: u16,
    /// The CA that signed the server's certificate (for the client's `ca_file`).
    pub ca_file: PathBuf,
    pub started_in: Duration,
    child: Child,
    /// Reaped already: its pid (and group id) may belong to someone else now.
    exited: bool,
}

/// Identity the server runs as: ourselves, or `nobody` when we are root (Dovecot refuses
/// to run its login processes as root without its privilege separation set up).
struct RunAs {
    user: String,
    group: String,
    uid: u32,
    gid: u32,
    root: bool,
}

/// Looked up once per process: tests run on parallel threads, and getpwnam and friends
/// return static storage that a concurrent call would overwrite.
fn run_as() -> &'static RunAs {
    static WHO: OnceLock<RunAs> = OnceLock::new();
    WHO.get_or_init(look_up_run_as)
}

fn look_up_run_as() -> RunAs {
    // SAFETY: called once, under OnceLock, so no other thread of ours is inside getpw*/getgr*;
    // the strings are copied out before the next such call.
    unsafe {
        let root = libc::geteuid() == 0;
        let pw = if root { libc::getpwnam(c"nobody".as_ptr()) } else { libc::getpwuid(libc::geteuid()) };
        assert!(!pw.is_null(), "no passwd entry for the test user");
        let user = std::ffi::CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned();
        let (uid, gid) = ((*pw).pw_uid, (*pw).pw_gid);
        let gr = libc::getgrgid(gid);
        let group = if gr.is_null() {
            gid.to_string()
        } else {
            std::ffi::CStr::from_ptr((*gr).gr_name).to_string_lossy().into_owned()
        };
        RunAs { user, group, uid, gid, root }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Writes `ca.pem`, `cert.pem` and `key.pem` into `dir`: made once per test process (three
/// openssl runs cost more than the rest of a start), then copied.
fn install_certs(dir: &Path) {
    static CERTS: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
    let certs = CERTS.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        make_certs(tmp.path());
        ["ca.pem", "cert.pem", "key.pem"].into_iter().map(|f| (f, std::fs::read(tmp.path().join(f)).unwrap())).collect()
    });
    for (name, bytes) in certs {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// A CA and a leaf for 127.0.0.1/localhost signed by it (rustls refuses a CA certificate
/// as the server's own, so a lone self-signed certificate would not do).
fn make_certs(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=msgfs test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca);
    let mut req = vec!["req", "-subj", "/CN=localhost"];
    req.extend(ec);
    req.extend(["-keyout", "key.pem", "-out", "req.csr"]);
    openssl(dir, &req);
    std::fs::write(dir.join("ext.cnf"), "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
        .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "req.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ],
    );
}

impl Dovecot {
    /// An account of the test user on this server, trusting its CA, over `tls`.
    pub fn account(&self, tls: Tls) -> Account {
        Account {
            name: "test".into(),
            host: "127.0.0.1".into(),
            port: if tls == Tls::Implicit { self.tls_port } else { self.port },
            tls,
            user: USER.into(),
            pass_cmd: None,
            ca_file: Some(self.ca_file.clone()),
            store: self.dir.path().join("store"),
            folders: vec!["*".into()],
            max_deletes: MaxDeletes::Percent(10),
        }
    }

    /// A connection over `tls`, logged in as the test user.
    pub fn login(&self, tls: Tls) -> Connection {
        let mut conn = Connection::connect(&self.account(tls)).unwrap_or_else(|e| panic!("{tls:?}: {e}"));
        conn.login(USER, &Password::new(PASS.into())).unwrap_or_else(|e| panic!("{tls:?}: {e}"));
        conn
    }

    pub fn start() -> Dovecot {
        Dovecot::start_with(Options::default())
    }

    /// Starts a server; a port taken between our probe and Dovecot's bind is retried with
    /// fresh ports.
    pub fn start_with(opts: Options) -> Dovecot {
        for attempt in 1.. {
            match Dovecot::try_start(&opts) {
                Ok(server) => return server,
                Err(log) if attempt < 3 && log.contains("Address already in use") => continue,
                Err(log) => panic!("dovecot did not start: {log}"),
            }
        }
        unreachable!()
    }

    fn try_start(opts: &Options) -> Result<Dovecot, String> {
        let t0 = Instant::now();
        let who = run_as();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["run", "state", "mail", "home"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        if !opts.no_ssl {
            install_certs(d);
        }
        let users = format!("{USER}:{{PLAIN}}{PASS}\n{USER2}:{{PLAIN}}{PASS2}\n");
        std::fs::write(d.join("passwd"), users).unwrap();
        let (port, tls_port) = (free_port(), if opts.no_ssl { 0 } else { free_port() });
        let p = d.display();
        let ssl = if opts.no_ssl {
            "ssl = no\n".to_string()
        } else {
            format!("ssl = yes\nssl_cert = <{p}/cert.pem\nssl_key = <{p}/key.pem\n")
        };
        let caps = match &opts.capability {
            Some(c) => format!("imap_capability = {c}\n"),
            None => String::new(),
        };
        let imaps = if opts.no_ssl {
            String::new()
        } else {
            format!("  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {tls_port}\n    ssl = yes\n  }}\n")
        };
        // auth_username_chars empty: Dovecot's default set is ASCII only, and USER2 is not.
        // LAYOUT=index keeps any name (a '/' inside one included) out of the file system's
        // way, so the separator '.' is the only hierarchy character.
        let conf = format!(
            "protocols = imap\nlisten = 127.0.0.1\nbase_dir = {p}/run\nstate_dir = {p}/state\n\
             log_path = {p}/dovecot.log\nmail_fsync = never\n\
             default_login_user = {u}\ndefault_internal_user = {u}\ndefault_internal_group = {g}\n\
             auth_mechanisms = plain login\ndisable_plaintext_auth = no\nauth_failure_delay = 0\nauth_username_chars =\n{ssl}{caps}\
             mail_location = sdbox:{p}/mail/%u:LAYOUT=index\n\
             passdb {{\n  driver = passwd-file\n  args = {p}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={p}/home/%u\n}}\n\
             namespace inbox {{\n  inbox = yes\n  separator = .\n\
               mailbox Sent {{\n    special_use = \\Sent\n  }}\n\
               mailbox Trash {{\n    special_use = \\Trash\n  }}\n\
               mailbox Drafts {{\n    special_use = \\Drafts\n  }}\n\
               mailbox Junk {{\n    special_use = \\Junk\n  }}\n}}\n\
             service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n{imaps}}}\n\
             service anvil {{\n  chroot =\n}}\n\
             service stats {{\n  unix_listener stats-reader {{\n    user = {u}\n  }}\n  unix_listener stats-writer {{\n    user = {u}\n  }}\n}}\n",
            u = who.user,
            g = who.group,
            uid = who.uid,
            gid = who.gid,
        );
        std::fs::write(d.join("dovecot.conf"), conf).unwrap();
        if who.root {
            chown_tree(d, who.uid, who.gid);
        }
        let child = spawn_master(d);
        let ca_file = d.join("ca.pem");
        let started_in = Duration::ZERO;
        let mut server = Dovecot { dir, port, tls_port, ca_file, started_in, child, exited: false };
        server.wait_ready(&[port, tls_port])?;
        server.started_in = t0.elapsed();
        eprintln!("dovecot started in {:?} on port {port}", server.started_in);
        Ok(server)
    }

    fn wait_ready(&mut self, ports: &[u16]) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        for &port in ports.iter().filter(|&&p| p != 0) {
            loop {
                if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                    // A connect alone can reach the master before imap-login is up; the
                    // greeting on the plain port proves the whole chain is.
                    if port == self.port {
                        let mut line = String::new();
                        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                        let _ = BufReader::new(s).read_line(&mut line);
                        if line.starts_with("* OK") {
                            break;
                        }
                    } else {
                        break;
                    }
                }
                if let Ok(Some(st)) = self.child.try_wait() {
                    self.exited = true;
                    return Err(format!("dovecot exited ({st}): {}", self.log()));
                }
                if Instant::now() > deadline {
                    return Err(format!("not ready after 10 s: {}", self.log()));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    }

    /// Dovecot's own log and stderr, for failure messages.
    pub fn log(&self) -> String {
        let d = self.dir.path();
        let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
        format!("{}{}", read("stderr"), read("dovecot.log"))
    }

    /// A logged-in plain-text session for seeding, outside the client under test.
    pub fn raw(&self) -> RawSession {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut r = RawSession { reader: BufReader::new(s.try_clone().unwrap()), writer: s, next: 0 };
        let mut greeting = String::new();
        r.reader.read_line(&mut greeting).unwrap();
        r.cmd(&format!("LOGIN {USER} \"{PASS}\"")).unwrap();
        r
    }
}

/// Start the master of the server configured in `d` (as nobody when we are root).
fn spawn_master(d: &Path) -> Child {
    let who = run_as();
    let conf = d.join("dovecot.conf");
    let dovecot = find("dovecot").expect("should_skip checked it");
    let mut cmd = if who.root {
        let mut c = Command::new("setpriv");
        c.args([&format!("--reuid={}", who.uid), &format!("--regid={}", who.gid), "--clear-groups"]);
        c.arg(&dovecot);
        c
    } else {
        Command::new(&dovecot)
    };
    cmd.process_group(0);
    cmd.arg("-F").arg("-c").arg(&conf).stdin(Stdio::null()).stdout(Stdio::null());
    cmd.stderr(std::fs::OpenOptions::new().create(true).append(true).open(d.join("stderr")).unwrap());
    cmd.spawn().expect("start dovecot")
}

// Used by some of the test binaries that include this file.
#[allow(dead_code)]
impl Dovecot {
    /// Kill the server (every process of it) at once, as a crash or a dropped network would
    /// end a session.
    pub fn stop(&mut self) {
        if !self.exited {
            // SAFETY: kill(2) on the process group of a child we spawned and have not reaped.
            unsafe {
                libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = self.child.wait();
            self.exited = true;
        }
    }

    /// Start it again on the same ports with the same mail.
    pub fn restart(&mut self) {
        self.stop();
        for attempt in 1.. {
            self.child = spawn_master(self.dir.path());
            self.exited = false;
            match self.wait_ready(&[self.port, self.tls_port]) {
                Ok(()) => return,
                Err(log) if attempt < 20 && log.contains("Address already in use") => {
                    self.stop();
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(log) => panic!("dovecot did not restart: {log}"),
            }
        }
    }
}

fn chown_tree(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
    if p.is_dir() {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).unwrap();
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // The master was started as the leader of its own process group, so the group id is
        // its pid and holds only it and its children. SIGKILL to that group: SIGTERM to
        // the master alone costs a second of its shutdown timer per test, and a test
        // server has nothing to save.
        // SAFETY: kill(2) on the process group of a child we spawned and have not yet reaped
        // (so the id cannot have been reused).
        if self.exited {
            return;
        }
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// One raw IMAP connection: commands written as text, responses read up to the tagged line.
pub struct RawSession {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next: u32,
}

impl RawSession {
    /// Sends `line` with a fresh tag; returns the untagged lines, or the tagged line on NO/BAD.
    pub fn cmd(&mut self, line: &str) -> Result<String, String> {
        let tag = self.send(line.as_bytes());
        self.finish(&tag)
    }

    fn send(&mut self, body: &[u8]) -> String {
        self.next += 1;
        let tag = format!("s{}", self.next);
        let mut buf = format!("{tag} ").into_bytes();
        buf.extend_from_slice(body);
        buf.extend_from_slice(b"\r\n");
        self.writer.write_all(&buf).unwrap();
        tag
    }

    fn finish(&mut self, tag: &str) -> Result<String, String> {
        let mut out = String::new();
        loop {
            let mut line = String::new();
            assert!(self.reader.read_line(&mut line).unwrap() > 0, "server closed");
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                return if rest.starts_with("OK") { Ok(out) } else { Err(line) };
            }
            // Skip literals inside untagged data so their lines are not taken for tags.
            if let Some(n) = line.trim_end().strip_suffix('}').and_then(|l| l.rsplit_once('{')) {
                if let Ok(n) = n.1.parse::<usize>() {
                    let mut lit = vec![0; n];
                    self.reader.read_exact(&mut lit).unwrap();
                }
            }
            out.push_str(&line);
        }
    }

    /// Appends `messages` (flags, bytes) to `mailbox` in one MULTIAPPEND with LITERAL+ literals:
    /// one round trip however many there are.
    pub fn multiappend(&mut self, mailbox: &str, messages: &[(&str, Vec<u8>)]) {
        let mut body = format!("APPEND {mailbox}").into_bytes();
        for (flags, msg) in messages {
            body.extend_from_slice(format!(" ({flags}) {{{}+}}\r\n", msg.len()).as_bytes());
            body.extend_from_slice(msg);
        }
        let tag = self.send(&body);
        self.finish(&tag).unwrap_or_else(|e| panic!("MULTIAPPEND to {mailbox}: {e}"));
    }
}

/// A small valid message, numbered so each is distinct.
pub fn message(n: usize) -> Vec<u8> {
    format!(
        "From: a@example.org\r\nTo: b@example.org\r\nSubject: test {n}\r\n\
         Message-ID: <{n}@msgfs.test>\r\nDate: Thu, 3 Dec 2026 05:00:00 +0000\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

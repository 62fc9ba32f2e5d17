//! Under systemd (msgfs@.service, Type=notify): the foreground daemon sends READY=1 to
//! NOTIFY_SOCKET once the mount is in place, and on SIGTERM (systemctl stop) sends
//! STOPPING=1, unmounts, closes the store cleanly and exits 0. The test binds the socket
//! systemd would.

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

fn mounted(mp: &std::path::Path) -> bool {
    let want = format!(" {} ", mp.display());
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.contains(&want))
}

#[test]
fn the_daemon_tells_notify_socket_ready_once_mounted_and_stops_cleanly_on_sigterm() {
    if should_skip() {
        return;
    }
    let dir = tempfile::Builder::new().prefix("msgfs-test").tempdir_in(test_tmp()).unwrap();
    let (store, mp, sock) = (dir.path().join("store"), dir.path().join("mnt"), dir.path().join("notify"));
    std::fs::create_dir(&mp).unwrap();
    let rx = UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut daemon = msgfs_command()
        .args(["mount", "-f"])
        .arg(&store)
        .arg(&mp)
        .env("NOTIFY_SOCKET", &sock)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = daemon.id() as i32;
    // Whatever happens, the daemon ends and the mount goes with it.
    struct Stop(i32, std::path::PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            // SAFETY: a signal to the daemon this test started.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.1).status();
        }
    }
    let stop = Stop(pid, mp.clone());

    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).expect("no READY=1 within 30 s");
    assert_eq!(String::from_utf8_lossy(&buf[..n]), "READY=1");
    // Ready means usable: mounted already, and serving.
    assert!(mounted(&mp), "READY=1 before the mount was in place");
    std::fs::write(mp.join("Inbox/ready.eml"), b"Subject: ready\n\nx\n").unwrap();

    // SAFETY: SIGTERM to the daemon this test started, as systemctl stop sends.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let n = rx.recv(&mut buf).expect("no STOPPING=1 within 30 s");
    assert_eq!(String::from_utf8_lossy(&buf[..n]), "STOPPING=1");
    let status = daemon.wait().unwrap();
    assert!(status.success(), "the daemon ended with {status} on SIGTERM");
    std::mem::forget(stop);
    assert!(!mounted(&mp), "still mounted after SIGTERM");
    assert!(store.join("clean").exists(), "the store was not closed cleanly");
    let check = run(msgfs_command().arg("check").arg(&store));
    assert!(check.status.success());
}

/// The unit as `make install` writes it passes systemd's own checks.
#[test]
fn the_msgfs_unit_template_passes_systemd_analyze_verify() {
    require(&["systemd-analyze"]);
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dist/msgfs@.service.in")).unwrap();
    let bin = std::path::Path::new(MSGFS).parent().unwrap();
    // systemd-analyze needs the instance and the program to exist.
    let path = dir.path().join("msgfs@home-alice-mail.service");
    std::fs::write(&path, unit.replace("@BINDIR@", &bin.display().to_string())).unwrap();
    // Checked as a system unit: --user needs a user session, which tests do not have; the
    // syntax is the same. --man=no: the man page is not installed here.
    let out = std::process::Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&path).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    // It exits 0 after a line it ignores (a misspelt Type=, say): any line is a failure.
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
}

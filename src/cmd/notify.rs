//! systemd's readiness protocol (sd_notify): a `Type=notify` unit's daemon sends
//! `READY=1` in one datagram to the unix socket named by `NOTIFY_SOCKET` once it serves,
//! and `STOPPING=1` when it begins to stop. A few lines instead of a crate.

use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;

/// Send `state` (such as "READY=1") to the service manager, if there is one. Returns
/// whether it was sent: false without NOTIFY_SOCKET; an error when the socket is named but
/// cannot be reached (the caller logs it: the mount works all the same).
pub fn notify(state: &str) -> std::io::Result<bool> {
    let Some(addr) = std::env::var_os("NOTIFY_SOCKET").filter(|v| !v.is_empty()) else { return Ok(false) };
    send(&addr, state)?;
    Ok(true)
}

/// One datagram to the socket `addr` names: a path, or `@name` in the abstract namespace.
fn send(addr: &OsStr, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = addr.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        // "@name": a socket in the abstract namespace (Linux), as systemd names its own.
        use std::os::linux::net::SocketAddrExt;
        let a = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &a)?;
    } else {
        sock.send_to(state.as_bytes(), addr)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_datagram_goes_to_a_socket_path_or_an_abstract_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut buf = [0u8; 64];
        send(path.as_os_str(), "READY=1").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("msgfs-test-notify-{}", std::process::id());
        let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&a).unwrap();
        send(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}

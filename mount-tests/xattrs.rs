//! Extended attributes: user.* stored and round-tripped; user.msgfs.* computed, hidden from
//! listings, refused for writing.

use std::process::Command;

use crate::common::*;

const MSG: &[u8] = b"From: =?UTF-8?B?w4lsaXNl?= <elise@example.com>\r\nSubject: =?ISO-8859-1?Q?Caf=E9?= plans\r\nDate: Tue, 1 Mar 2022 10:00:00 +0000\r\nMessage-ID: <abc@example.com>\r\n\r\nbody\r\n";

#[test]
fn user_xattrs_round_trip_with_setfattr_getfattr_and_cp() {
    if should_skip() {
        return;
    }
    require(&["setfattr", "getfattr"]);
    let m = Mount::with(&[], |st| put(st, "Inbox", &[("m.eml", MSG)]));
    let p = m.p("Inbox/m.eml");
    run(Command::new("setfattr").args(["-n", "user.color", "-v", "blue"]).arg(&p));
    let out = run(Command::new("getfattr").args(["-d", "--absolute-names"]).arg(&p));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("user.color=\"blue\""), "{text}");
    assert!(!text.contains("user.msgfs"), "computed attributes must not be listed: {text}");
    let copy = m.dir.path().join("copy.eml");
    run(Command::new("cp").arg("--preserve=xattr").arg(&p).arg(&copy));
    assert_eq!(getxattr(&copy, "user.color").unwrap(), b"blue");
    run(Command::new("cp").arg("--preserve=xattr").arg(&copy).arg(m.p("Drafts/back.eml")));
    assert_eq!(getxattr(&m.p("Drafts/back.eml"), "user.color").unwrap(), b"blue");
    run(Command::new("setfattr").args(["-x", "user.color"]).arg(&p));
    assert_eq!(getxattr(&p, "user.color"), Err(libc::ENODATA));
}

#[test]
fn computed_properties_are_readable_not_listed_and_not_writable() {
    if should_skip() {
        return;
    }
    let m = Mount::with(&[], |st| put(st, "Inbox", &[("m.eml", MSG)]));
    let p = m.p("Inbox/m.eml");
    assert_eq!(String::from_utf8(getxattr(&p, "user.msgfs.subject").unwrap()).unwrap(), "Café plans");
    assert!(String::from_utf8(getxattr(&p, "user.msgfs.from").unwrap()).unwrap().contains("elise@example.com"));
    assert!(!getxattr(&p, "user.msgfs.date").unwrap().is_empty());
    assert!(String::from_utf8(getxattr(&p, "user.msgfs.message_id").unwrap()).unwrap().contains("abc@example.com"));
    assert_eq!(entry_id(&p).len(), 48);
    assert!(version(&p) > 0);
    let c = cpath(&p);
    let n = std::ffi::CString::new("user.msgfs.subject").unwrap();
    // SAFETY: setxattr with valid strings and buffer.
    let r = unsafe { libc::setxattr(c.as_ptr(), n.as_ptr(), b"x".as_ptr().cast(), 1, 0) };
    assert_eq!((r, errno()), (-1, libc::EPERM));
    // SAFETY: listxattr into a buffer of the size passed.
    let mut buf = [0u8; 1024];
    let len = unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(len, 0);
}

/// A message's flags through `user.msgfs.flags`: read and set with getfattr/setfattr, kept
/// across a remount, exported as Maildir flags; bad letters are refused.
#[test]
fn flags_are_read_and_set_through_user_msgfs_flags() {
    if should_skip() {
        return;
    }
    require(&["setfattr", "getfattr"]);
    let mut m = Mount::with(&[], |st| put(st, "Inbox", &[("m.eml", MSG)]));
    let p = m.p("Inbox/m.eml");
    assert_eq!(getxattr(&p, "user.msgfs.flags").unwrap(), b"");
    // In any order; spelled back in Maildir's order.
    run(Command::new("setfattr").args(["-n", "user.msgfs.flags", "-v", "SF"]).arg(&p));
    let out = run(Command::new("getfattr").args(["--only-values", "-n", "user.msgfs.flags"]).arg(&p));
    assert_eq!(out.stdout, b"FS");
    let bad = Command::new("setfattr").args(["-n", "user.msgfs.flags", "-v", "SX"]).arg(&p).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Invalid argument"), "{:?}", bad);
    assert_eq!(getxattr(&p, "user.msgfs.flags").unwrap(), b"FS");
    // IMAP keywords after a space, kept sorted; a keyword with a control character is refused.
    run(Command::new("setfattr").args(["-n", "user.msgfs.flags", "-v", "SF work $Label1"]).arg(&p));
    assert_eq!(getxattr(&p, "user.msgfs.flags").unwrap(), b"FS $Label1 work");
    let bad = Command::new("setfattr").args(["-n", "user.msgfs.flags", "-v", "0x53206101"]).arg(&p).output().unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Invalid argument"), "{:?}", bad);
    m.remount(&[]);
    assert_eq!(getxattr(&m.p("Inbox/m.eml"), "user.msgfs.flags").unwrap(), b"FS $Label1 work");
    m.unmount();
    let out_dir = m.dir.path().join("exported");
    run(msgfs_command().arg("export").arg("--store").arg(&m.store).args(["--format", "maildir"]).arg(&out_dir));
    let names = names(&out_dir.join(".Inbox/cur"));
    assert!(names.len() == 1 && names[0].ends_with(":2,FS"), "{names:?}");
    m.mount(&[]);
    // Removing the attribute clears the flags and the keywords.
    run(Command::new("setfattr").args(["-x", "user.msgfs.flags"]).arg(m.p("Inbox/m.eml")));
    assert_eq!(getxattr(&m.p("Inbox/m.eml"), "user.msgfs.flags").unwrap(), b"");
}

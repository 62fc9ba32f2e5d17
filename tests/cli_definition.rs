//! The command line as users meet it: `--version`, `msgfs mount --help`, and the clap
//! definition against msgfs(1), so that the man page and `--help` cannot drift apart.

use std::process::Command;

fn msgfs(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_msgfs")).args(args).output().unwrap();
    assert!(out.status.success(), "msgfs {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn version_names_the_fuse_protocol_and_the_store_formats() {
    let v = msgfs(&["--version"]);
    let (major, minor) = msgfs::fs::FUSE_PROTOCOL;
    assert!(v.starts_with(&format!("msgfs {}\n", env!("CARGO_PKG_VERSION"))), "{v}");
    assert!(v.contains(&format!("FUSE kernel protocol {major}.{minor}")), "{v}");
    let (newest, oldest) = (msgfs::store::FORMAT_VERSION, msgfs::store::FORMAT_OLDEST);
    assert!(v.contains(&format!("store format {newest} (reads formats {oldest} to {newest}")), "{v}");
}

/// FUSE_PROTOCOL copies a private constant of fuser 0.18: another fuser must be looked at.
#[test]
fn the_fuse_protocol_said_is_the_one_of_the_fuser_in_cargo_lock() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
    let after = lock.split("name = \"fuser\"\nversion = \"").nth(1).expect("fuser in Cargo.lock");
    let version = after.split('"').next().unwrap();
    assert!(version.starts_with("0.18."), "fuser {version}: check its FUSE_KERNEL_MINOR_VERSION, then FUSE_PROTOCOL");
    assert_eq!(msgfs::fs::FUSE_PROTOCOL, (7, 40));
}

#[test]
fn mount_help_shows_the_optional_store_and_two_examples() {
    let help = msgfs(&["mount", "--help"]);
    assert!(help.contains("Usage: msgfs mount [OPTIONS] [STORE] MOUNTPOINT\n"), "{help}");
    let examples = help.split("Examples:\n").nth(1).expect("an Examples section");
    let lines: Vec<&str> = examples.lines().filter(|l| l.trim_start().starts_with("msgfs mount ")).collect();
    assert_eq!(lines.len(), 2, "{examples}");
}

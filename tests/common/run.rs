//! Running a program from a test: its output, or a panic that shows the command, its exit
//! status and everything it printed.

use std::process::{Command, Output};

/// Run `cmd` to the end; it must exit 0.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

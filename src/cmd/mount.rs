//! `msgfs mount` and `msgfs umount`.

use std::path::Path;

use super::CmdResult;

pub fn run(_store: &Path, _mountpoint: &Path, _foreground: bool, _options: &[String]) -> CmdResult {
    Err("mount is not built yet".into())
}

pub fn umount(_mountpoint: &Path) -> CmdResult {
    Err("umount is not built yet".into())
}

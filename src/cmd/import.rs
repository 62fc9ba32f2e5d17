//! `msgfs import`: bring mbox, Maildir and .eml sources into a store.

use std::path::{Path, PathBuf};

use super::CmdResult;

pub fn run(_store: &Path, _sources: &[PathBuf], _into: Option<&str>) -> CmdResult {
    Err("import is not built yet".into())
}

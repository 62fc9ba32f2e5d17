//! `msgfs export`: write the store out as Maildir or mbox.

use std::path::Path;

use super::CmdResult;

pub enum Format {
    Maildir,
    Mbox,
}

pub fn run(_store: &Path, _format: Format, _folder: Option<&str>, _dest: &Path) -> CmdResult {
    Err("export is not built yet".into())
}

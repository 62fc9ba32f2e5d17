//! `msgfs parts FILE...`: the part tree of a message file (a `.eml` anywhere, or a message
//! in a mount), one line per part: decoded size, type indented by depth, and the name the
//! part has in the message's `.parts` folder. Embedded messages' parts follow them, one
//! level deeper, as in `NAME.eml.parts/NAME.eml.parts`.

use std::io::Write;
use std::path::Path;

use super::CmdResult;
use crate::mime::parts::{Kind, PartTree};

/// How deep embedded messages are shown (as deep as a mount's `.parts` folders go).
const MAX_NESTING: usize = 32;

pub fn run(files: &[impl AsRef<Path>]) -> CmdResult {
    let mut out = std::io::stdout().lock();
    for (n, file) in files.iter().enumerate() {
        let file = file.as_ref();
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        if files.len() > 1 {
            if n > 0 {
                writeln!(out)?;
            }
            writeln!(out, "{}:", file.display())?;
        }
        write_tree(&mut out, &bytes, 0, 0)?;
    }
    Ok(0)
}

/// The lines of `msg`'s parts, indented from `indent` levels on.
fn write_tree(out: &mut impl Write, msg: &[u8], indent: usize, nesting: usize) -> std::io::Result<()> {
    let tree = PartTree::parse(msg);
    for (i, p) in tree.parts.iter().enumerate() {
        let pad = "  ".repeat(indent + p.depth as usize);
        match &p.name {
            Some(name) => writeln!(out, "{:>12}  {pad}{}  {name}", p.size, p.mimetype)?,
            // A container: its parts follow.
            None => writeln!(out, "{:>12}  {pad}{}", "-", p.mimetype)?,
        }
        if p.kind == Kind::Message && nesting < MAX_NESTING {
            write_tree(out, &tree.decode(msg, i), indent + p.depth as usize + 1, nesting + 1)?;
        }
    }
    Ok(())
}

//! `msgfs init`: create a store.

use std::path::Path;

use super::CmdResult;
use crate::store::{Options, Store};

pub fn run(store: &Path) -> CmdResult {
    let st = Store::open(store, Options { create: true, ..Default::default() })?;
    let folders = st.index().folder_count();
    st.close()?;
    println!("store ready at {} ({})", store.display(), crate::plural::count(folders as u64, "folder", "folders"));
    Ok(0)
}

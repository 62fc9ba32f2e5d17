//! The server side of the IOSTX LR_SYNC state: which folders of an account are synced, where
//! each lives in the store, and its STATUS (the cursors the later states compare against).

use std::collections::BTreeMap;

use super::config::{folder_selected, Account};
use super::imap::{Connection, Folder, FolderStatus, ImapError};

/// One synced server folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFolder {
    pub folder: Folder,
    pub store_path: Vec<String>,
    pub status: FolderStatus,
}

/// Two server folders that the mapping rule sends to one store folder (e.g. a plain folder
/// named `Sent Items` beside the `\Sent` one). Neither is synced until the user excludes one
/// with a `!` pattern: guessing could merge two folders' messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collision {
    pub store_path: Vec<String>,
    pub server_names: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Survey {
    pub folders: Vec<ServerFolder>,
    pub collisions: Vec<Collision>,
    /// Server names with no store folder (an empty, `.` or `..` level), not synced.
    pub unmappable: Vec<String>,
}

/// LIST, keep the selectable folders the account's patterns select, map them, STATUS each.
/// The patterns apply to the server's names in UTF-8.
pub fn survey(conn: &mut Connection, account: &Account) -> Result<Survey, ImapError> {
    let mut by_path: BTreeMap<Vec<String>, Vec<Folder>> = BTreeMap::new();
    let mut out = Survey::default();
    for f in conn.list()? {
        if f.selectable() && folder_selected(&account.folders, &f.name, f.delimiter) {
            match f.store_path() {
                Some(path) => by_path.entry(path).or_default().push(f),
                None => out.unmappable.push(f.name),
            }
        }
    }
    for (store_path, mut folders) in by_path {
        if folders.len() > 1 {
            let server_names = folders.iter().map(|f| f.name.clone()).collect();
            out.collisions.push(Collision { store_path, server_names });
            continue;
        }
        let folder = folders.pop().expect("entries are never empty");
        let status = conn.status(&folder)?;
        out.folders.push(ServerFolder { folder, store_path, status });
    }
    Ok(out)
}

//! Which messages an import leaves out as already there: a message is a duplicate when its
//! target folder holds a message with the same Message-ID and the same bytes, so importing
//! the same mbox (Maildir, tree) twice adds nothing the second time. A message without a
//! Message-ID is never a duplicate: nothing says two equal ones are one message.
//!
//! The folder's committed messages are compared byte for byte (read only when the size
//! matches); messages staged earlier in the same run, whose bytes are no longer at hand,
//! by Message-ID, size and CRC32C.

use std::collections::{HashMap, HashSet};

use crate::store::{Child, Id, Store};

#[derive(Default)]
pub(crate) struct Duplicates {
    /// Per folder, its committed messages by size; filled the first time the folder is asked
    /// about (an import into a new folder reads nothing).
    committed: HashMap<Id, HashMap<u64, Vec<Id>>>,
    /// (folder, Message-ID, size, CRC32C) of each message this run has added.
    added: HashSet<(Id, String, u64, u32)>,
}

impl Duplicates {
    /// Is `content` (with `message_id`) already in `folder`? If not, it is remembered as added
    /// by this run, so a second copy later in the same run is a duplicate too.
    pub(crate) fn seen(&mut self, store: &Store, folder: Id, message_id: Option<&str>, content: &[u8]) -> bool {
        let Some(mid) = message_id.filter(|m| !m.is_empty()) else { return false };
        let size = content.len() as u64;
        let key = (folder, mid.to_string(), size, crc32c::crc32c(content));
        if self.added.contains(&key) {
            return true;
        }
        let by_size = self.committed.entry(folder).or_insert_with(|| {
            let mut m: HashMap<u64, Vec<Id>> = HashMap::new();
            if let Ok(children) = store.index().children(folder) {
                for (_, c) in children {
                    if let Child::Message(id, msg) = c {
                        m.entry(msg.size()).or_default().push(id);
                    }
                }
            }
            m
        });
        // Equal bytes mean an equal Message-ID too; a message that cannot be read is no match.
        let committed = by_size
            .get(&size)
            .is_some_and(|ids| ids.iter().any(|&id| store.read_message(id).is_ok_and(|c| c == content)));
        if !committed {
            self.added.insert(key);
        }
        committed
    }
}

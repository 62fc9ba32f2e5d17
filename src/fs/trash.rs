//! `-o trash`: removing a message outside `Deleted Items` moves it there, keeping its entry
//! id, with the path it had (folder and name) in the hidden xattr `user.msgfs.origin` (for
//! `msgfs restore`); removing it inside `Deleted Items` (or a folder below) deletes it.
//!
//! Only unlink goes through here. A rename over a message replaces it with a new version,
//! and a file renamed or deleted under a scratch name (an editor's backup, rsync's
//! temporary) was never a message: so editors and rsync leave nothing in the trash.

use super::errno::FsResult;
use super::store_fs::*;
use crate::control::XATTR_ORIGIN;
use crate::store::XattrChange;

/// The folder at the top of the store that removed messages go to.
pub const TRASH_FOLDER: &str = "Deleted Items";

impl StoreFs {
    /// What removing message `id` commits: its move to the trash (made first if missing),
    /// the origin set before the move so that no message lands there without one; or a
    /// deletion, without `-o trash` or inside the trash.
    pub(super) fn removal_ops(&self, ov: &Overlay, id: Id) -> FsResult<Vec<Op>> {
        let delete = vec![Op::MessageDelete { id }];
        if !self.trash {
            return Ok(delete);
        }
        let (folder, name, trash, origin, attrs) = {
            let ix = self.store.index();
            let m = ix.message(id)?;
            let trash = match ix.lookup(ROOT, TRASH_FOLDER) {
                Some(Entry::Folder(t)) => Some(t),
                // A message of that name at the top: there is no trash to move to.
                Some(Entry::Message(_)) => return Ok(delete),
                None => None,
            };
            let attrs = ix.folder(m.folder())?.attrs();
            let dir = ix.folder_path(m.folder());
            let origin = if dir.is_empty() { m.name().to_string() } else { format!("{dir}/{}", m.name()) };
            (m.folder(), m.name().to_string(), trash, origin, attrs)
        };
        if trash.is_some_and(|t| self.is_within(folder, t)) {
            return Ok(delete);
        }
        let mut ops = Vec::new();
        let trash = match trash {
            Some(t) => t,
            None => {
                let t = self.store.alloc_id();
                // Made like the folder the message leaves (mode and owner).
                let attrs = Self::new_attrs(attrs.mode, libc::S_IFDIR, attrs.uid, attrs.gid);
                ops.push(Op::FolderCreate { id: t, parent: ROOT, name: TRASH_FOLDER.into(), attrs });
                t
            }
        };
        let name = crate::mime::unique_name(&name, |n| self.name_taken(ov, trash, n));
        let set =
            XattrChange::Set { name: XATTR_ORIGIN.into(), value: origin.into_bytes(), create: false, replace: false };
        ops.push(Op::MessageMeta { id, change: AttrChange { xattrs: vec![set], ..Default::default() } });
        ops.push(Op::MessageMove { id, folder: trash, name });
        Ok(ops)
    }

    /// What moving message `id` to `folder` under `name` commits: the move, and once it
    /// leaves the trash (`msgfs restore`, or `mv` out of it) the removal of its origin.
    pub(super) fn move_ops(&self, id: Id, folder: Id, name: String) -> Vec<Op> {
        let mut ops = vec![Op::MessageMove { id, folder, name }];
        let has_origin = self.store.index().message(id).is_ok_and(|m| m.xattr(XATTR_ORIGIN).is_some());
        let trash = match self.store.index().lookup(ROOT, TRASH_FOLDER) {
            Some(Entry::Folder(t)) => Some(t),
            _ => None,
        };
        if has_origin && !trash.is_some_and(|t| self.is_within(folder, t)) {
            let remove = XattrChange::Remove { name: XATTR_ORIGIN.into() };
            ops.push(Op::MessageMeta { id, change: AttrChange { xattrs: vec![remove], ..Default::default() } });
        }
        ops
    }

    /// Whether `folder` is `top` or below it.
    fn is_within(&self, mut folder: Id, top: Id) -> bool {
        let ix = self.store.index();
        loop {
            if folder == top {
                return true;
            }
            match ix.folder(folder) {
                Ok(f) if f.parent() != folder => folder = f.parent(),
                _ => return false,
            }
        }
    }
}

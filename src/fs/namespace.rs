//! The namespace: mkdir, unlink, rmdir and rename, over stored folders and messages and this
//! mount's overlay of scratch files, new files and shadows.

use fuser::Errno;

use super::errno::{err, FsError, FsResult};
use super::store_fs::*;

impl StoreFs {
    pub fn mkdir(&self, parent: u64, name: &str, mode: u32, uid: u32, gid: u32) -> FsResult<Attr> {
        self.writable()?;
        let folder = self.folder_of(parent)?;
        if self.name_taken(&self.overlay(), folder, name) {
            return err(Errno::EEXIST);
        }
        let id = self.store.create_folder(folder, name, Self::new_attrs(mode, libc::S_IFDIR, uid, gid))?;
        self.inodes.remember(id, InodeRef::Folder(id));
        self.folder_attr(id)
    }

    pub fn unlink(&self, parent: u64, name: &str) -> FsResult<()> {
        self.writable()?;
        let folder = self.folder_of(parent)?;
        let mut ov = self.overlay();
        let found = self.find(&ov, folder, name).ok_or(FsError::Errno(Errno::ENOENT))?;
        match found {
            Found::Folder(_) => err(Errno::EISDIR),
            Found::Node(n) => {
                ov.names.remove(&(folder, name.to_string()));
                if let Some(node) = ov.nodes.get_mut(&n) {
                    node.unlinked = true;
                }
                Self::node_closed_if_idle(&mut ov, n, &self.store);
                Ok(())
            }
            Found::Shadow(s) => {
                ov.names.remove(&(folder, name.to_string()));
                if s.attached {
                    // The message was only renamed away in this mount: deleting it under its
                    // scratch name deletes it.
                    ov.hidden.retain(|_, m| *m != s.msg);
                    drop(ov);
                    match self.store.delete_message(s.msg) {
                        Ok(()) | Err(Error::NotFound) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(())
            }
            Found::Message(m) => {
                drop(ov);
                self.store.delete_message(m)?;
                Ok(())
            }
        }
    }

    fn node_closed_if_idle(ov: &mut Overlay, n: u64, store: &Store) {
        if ov.nodes.get(&n).map(|x| x.open == 0).unwrap_or(false) {
            if let Some(x) = ov.nodes.get_mut(&n) {
                x.open = 1;
            }
            Self::node_closed(ov, n, store);
        }
    }

    pub fn rmdir(&self, parent: u64, name: &str) -> FsResult<()> {
        self.writable()?;
        let folder = self.folder_of(parent)?;
        let ov = self.overlay();
        match self.find(&ov, folder, name) {
            Some(Found::Folder(f)) => {
                if ov.in_folder(f).next().is_some() {
                    return err(Errno::ENOTEMPTY);
                }
                drop(ov);
                Ok(self.store.delete_folder(f)?)
            }
            Some(_) => err(Errno::ENOTDIR),
            None => err(Errno::ENOENT),
        }
    }

    pub fn rename(&self, parent: u64, name: &str, newparent: u64, newname: &str, flags: u32) -> FsResult<()> {
        self.writable()?;
        if flags & libc::RENAME_EXCHANGE != 0 {
            return err(Errno::EINVAL);
        }
        let sf = self.folder_of(parent)?;
        let df = self.folder_of(newparent)?;
        if sf == df && name == newname {
            return Ok(());
        }
        crate::store::index::check_name(newname)?;
        let mut ov = self.overlay();
        let src = self.find(&ov, sf, name).ok_or(FsError::Errno(Errno::ENOENT))?;
        let dst = self.find(&ov, df, newname);
        if flags & libc::RENAME_NOREPLACE != 0 && dst.is_some() {
            return err(Errno::EEXIST);
        }
        let skey = (sf, name.to_string());
        let dkey = (df, newname.to_string());
        match src {
            Found::Folder(id) => {
                match dst {
                    None => {}
                    Some(Found::Folder(t)) => {
                        let empty = self.store.index().folders.get(&t).map(|f| f.children.is_empty()).unwrap_or(false);
                        if !empty || ov.in_folder(t).next().is_some() {
                            return err(Errno::ENOTEMPTY);
                        }
                        drop(ov);
                        self.store.delete_folder(t)?;
                        return Ok(self.store.move_folder(id, df, newname)?);
                    }
                    Some(_) => return err(Errno::ENOTDIR),
                }
                drop(ov);
                Ok(self.store.move_folder(id, df, newname)?)
            }
            Found::Message(id) => {
                if is_scratch(newname) {
                    // An editor's backup step: show the message under the scratch name, hide
                    // its own name; the store does not change.
                    self.drop_overlaid(&mut ov, &dkey, dst)?;
                    ov.names.insert(dkey, Overlaid::Shadow(Shadow { msg: id, attached: true }));
                    ov.hidden.insert(skey, id);
                    return Ok(());
                }
                match dst {
                    None => {
                        drop(ov);
                        Ok(self.store.move_message(id, df, newname)?)
                    }
                    Some(Found::Message(t)) => {
                        drop(ov);
                        self.rename_over(id, t, df, newname)
                    }
                    Some(Found::Folder(_)) => err(Errno::EISDIR),
                    Some(d @ Found::Node(_)) | Some(d @ Found::Shadow(_)) => {
                        self.drop_overlaid(&mut ov, &dkey, Some(d))?;
                        drop(ov);
                        Ok(self.store.move_message(id, df, newname)?)
                    }
                }
            }
            Found::Shadow(s) => {
                if is_scratch(newname) {
                    self.drop_overlaid(&mut ov, &dkey, dst)?;
                    ov.names.remove(&skey);
                    ov.names.insert(dkey, Overlaid::Shadow(s));
                    return Ok(());
                }
                let home = ov.hidden.iter().find(|(_, m)| **m == s.msg).map(|(k, _)| k.clone());
                if s.attached && home.as_ref() == Some(&dkey) {
                    // Moved back where it came from.
                    ov.names.remove(&skey);
                    ov.hidden.remove(&dkey);
                    return Ok(());
                }
                match dst {
                    None if s.attached => {
                        ov.names.remove(&skey);
                        if let Some(h) = home {
                            ov.hidden.remove(&h);
                        }
                        drop(ov);
                        Ok(self.store.move_message(s.msg, df, newname)?)
                    }
                    Some(Found::Message(t)) => {
                        ov.names.remove(&skey);
                        if let Some(h) = home {
                            ov.hidden.remove(&h);
                        }
                        drop(ov);
                        self.rename_over(s.msg, t, df, newname)
                    }
                    // A backup whose message has a new version since: let mv copy it.
                    _ => err(Errno::EXDEV),
                }
            }
            Found::Node(n) => {
                let is_new_message = matches!(ov.nodes.get(&n).map(|x| &x.kind), Some(NodeKind::NewMessage));
                if is_scratch(newname) || is_new_message {
                    if is_new_message && (is_scratch(newname) || dst.is_some()) {
                        return err(Errno::EXDEV);
                    }
                    self.drop_overlaid(&mut ov, &dkey, dst)?;
                    ov.names.remove(&skey);
                    ov.names.insert(dkey, Overlaid::Node(n));
                    if let Some(node) = ov.nodes.get_mut(&n) {
                        node.folder = df;
                        node.name = newname.to_string();
                    }
                    return Ok(());
                }
                self.commit_scratch(ov, n, skey, dkey, dst)
            }
        }
    }

    /// Message `src` renamed over message `dst`: `dst` gets `src`'s content as a new
    /// version and keeps its entry id.
    fn rename_over(&self, src: Id, dst: Id, df: Id, newname: &str) -> FsResult<()> {
        self.store.rename_over(src, dst)?;
        // The kernel moved the source's inode to the target's name: not necessarily its
        // current version's (a save's invalidation of the source's name may not have reached
        // the kernel, or missed it after a rename), so every inode of the source now leads to
        // the target.
        self.inodes.retarget_message(src, InodeRef::Message(dst));
        self.expire_entry(df, newname);
        Ok(())
    }

    /// Remove whatever the overlay shows at a name about to be replaced.
    fn drop_overlaid(&self, ov: &mut Overlay, key: &(Id, String), dst: Option<Found>) -> FsResult<()> {
        match dst {
            None => Ok(()),
            Some(Found::Node(n)) => {
                ov.names.remove(key);
                if let Some(node) = ov.nodes.get_mut(&n) {
                    node.unlinked = true;
                }
                Self::node_closed_if_idle(ov, n, &self.store);
                Ok(())
            }
            Some(Found::Shadow(_)) => {
                ov.names.remove(key);
                Ok(())
            }
            Some(Found::Folder(_)) => err(Errno::EISDIR),
            // A stored message with a scratch name (only from outside this mount): the store
            // must drop it for the name to be reused.
            Some(Found::Message(m)) => {
                self.store.delete_message(m)?;
                Ok(())
            }
        }
    }

    /// A scratch file renamed to a message name becomes that message's new version (rsync,
    /// editors that write a temporary file), or a new message.
    fn commit_scratch(
        &self,
        mut ov: MutexGuard<'_, Overlay>,
        n: u64,
        skey: (Id, String),
        dkey: (Id, String),
        dst: Option<Found>,
    ) -> FsResult<()> {
        let hidden = ov.hidden.get(&dkey).copied();
        let target = match dst {
            None => hidden,
            Some(Found::Message(t)) => Some(t),
            Some(Found::Folder(_)) => return err(Errno::EISDIR),
            Some(d) => {
                self.drop_overlaid(&mut ov, &dkey, Some(d))?;
                None
            }
        };
        let node = ov.nodes.get(&n).ok_or(FsError::Errno(Errno::ENOENT))?;
        let NodeKind::Scratch { path } = &node.kind else { return err(Errno::EXDEV) };
        let (path, open, attrs, xattrs) = (path.clone(), node.open, node.attrs, node.xattrs.clone());
        drop(ov);
        // A scratch file still open by someone keeps being written through its descriptor:
        // commit a copy, so the committed object stays immutable.
        let staged: PathBuf = if open > 0 {
            let copy = self.store.staging_path("c");
            let vfs = self.store.vfs();
            let from = io(vfs.open(&path, OpenMode::Read), "open a scratch file")?;
            let to = io(vfs.open(&copy, OpenMode::CreateNew), "copy a scratch file")?;
            let data = io(from.read_all(), "read a scratch file")?;
            io(to.write_all_at(&data, 0), "copy a scratch file")?;
            copy
        } else {
            path.clone()
        };
        let out = self.store.commit_file(&staged, target, Some((dkey.0, dkey.1.clone())), attrs, xattrs)?;
        let mut ov = self.overlay();
        ov.names.remove(&skey);
        if open > 0 {
            if let Some(node) = ov.nodes.get_mut(&n) {
                node.unlinked = true;
            }
        } else {
            ov.nodes.remove(&n);
        }
        if hidden.is_some() {
            ov.hidden.remove(&dkey);
            for o in ov.names.values_mut() {
                if let Overlaid::Shadow(s) = o {
                    if s.msg == out.id {
                        s.attached = false;
                    }
                }
            }
        }
        drop(ov);
        self.inodes.retarget(n, InodeRef::Message(out.id));
        self.expire_entry(dkey.0, &dkey.1);
        Ok(())
    }
}

//! The namespace: mkdir, unlink, rmdir and rename, over stored folders and messages and this
//! mount's overlay of scratch files, new files and shadows.

use fuser::Errno;

use super::errno::{err, FsError, FsResult};
use std::sync::Arc;

use super::store_fs::*;

impl StoreFs {
    pub fn mkdir(self: &Arc<Self>, parent: u64, name: &str, mode: u32, uid: u32, gid: u32, done: Done<Attr>) {
        or_answer!(done, self.writable());
        let folder = or_answer!(done, self.folder_of(parent));
        if self.name_taken(&self.overlay(), folder, name) {
            return done(err(Errno::EEXIST));
        }
        or_answer!(done, crate::store::index::check_name(name));
        let id = self.store.alloc_id();
        let attrs = Self::new_attrs(mode, libc::S_IFDIR, uid, gid);
        let op = Op::FolderCreate { id, parent: folder, name: name.to_string(), attrs };
        self.commit(
            vec![op],
            move |fs, _| {
                fs.inodes.remember(id, InodeRef::Folder(id));
                fs.folder_attr(id)
            },
            done,
        );
    }

    pub fn unlink(self: &Arc<Self>, parent: u64, name: &str, done: Done<()>) {
        or_answer!(done, self.writable());
        let folder = or_answer!(done, self.folder_of(parent));
        let mut ov = self.overlay();
        let Some(found) = self.find(&ov, folder, name) else { return done(err(Errno::ENOENT)) };
        match found {
            Found::Folder(_) => done(err(Errno::EISDIR)),
            Found::Node(n) => {
                ov.names.remove(&(folder, name.to_string()));
                if let Some(node) = ov.nodes.get_mut(&n) {
                    node.unlinked = true;
                }
                Self::node_closed_if_idle(&mut ov, n, &self.store);
                drop(ov);
                done(Ok(()))
            }
            Found::Shadow(s) => {
                ov.names.remove(&(folder, name.to_string()));
                if !s.attached {
                    return done(Ok(()));
                }
                // The message was only renamed away in this mount: deleting it under its
                // scratch name deletes it (unless it is gone already).
                ov.hidden.retain(|_, m| *m != s.msg);
                drop(ov);
                self.store.submit(
                    Op::MessageDelete { id: s.msg },
                    Box::new(move |r| match r {
                        Ok(_) | Err(Error::NotFound) => done(Ok(())),
                        Err(e) => done(Err(e.into())),
                    }),
                );
            }
            Found::Message(m) => {
                drop(ov);
                self.commit(vec![Op::MessageDelete { id: m }], |_, _| Ok(()), done);
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

    pub fn rmdir(self: &Arc<Self>, parent: u64, name: &str, done: Done<()>) {
        or_answer!(done, self.writable());
        let folder = or_answer!(done, self.folder_of(parent));
        let ov = self.overlay();
        match self.find(&ov, folder, name) {
            Some(Found::Folder(f)) => {
                if ov.in_folder(f).next().is_some() {
                    return done(err(Errno::ENOTEMPTY));
                }
                drop(ov);
                self.commit(vec![Op::FolderDelete { id: f }], |_, _| Ok(()), done);
            }
            Some(_) => done(err(Errno::ENOTDIR)),
            None => done(err(Errno::ENOENT)),
        }
    }

    pub fn rename(
        self: &Arc<Self>,
        parent: u64,
        name: &str,
        newparent: u64,
        newname: &str,
        flags: u32,
        done: Done<()>,
    ) {
        match self.plan_rename(parent, name, newparent, newname, flags) {
            Err(e) => done(Err(e)),
            Ok(Renamed::Done) => done(Ok(())),
            Ok(Renamed::Commit(ops, then)) => self.commit(ops, move |fs, out| then(fs, out), done),
        }
    }

    /// What a rename does: the overlay's part is done here and now; what the store must do
    /// comes back as operations, with the step that follows their commit.
    fn plan_rename(&self, parent: u64, name: &str, newparent: u64, newname: &str, flags: u32) -> FsResult<Renamed> {
        self.writable()?;
        if flags & libc::RENAME_EXCHANGE != 0 {
            return err(Errno::EINVAL);
        }
        let sf = self.folder_of(parent)?;
        let df = self.folder_of(newparent)?;
        if sf == df && name == newname {
            return Ok(Renamed::Done);
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
        let newname = newname.to_string();
        let nothing_after = || -> Box<Then> { Box::new(|_, _| Ok(())) };
        match src {
            Found::Folder(id) => {
                let mv = Op::FolderMove { id, parent: df, name: newname };
                match dst {
                    None => Ok(Renamed::Commit(vec![mv], nothing_after())),
                    Some(Found::Folder(t)) => {
                        let empty = self.store.index().is_empty_folder(t);
                        if !empty || ov.in_folder(t).next().is_some() {
                            return err(Errno::ENOTEMPTY);
                        }
                        Ok(Renamed::Commit(vec![Op::FolderDelete { id: t }, mv], nothing_after()))
                    }
                    Some(_) => err(Errno::ENOTDIR),
                }
            }
            Found::Message(id) => {
                if is_scratch(&newname) {
                    // An editor's backup step: show the message under the scratch name, hide
                    // its own name; the store does not change (but for a stored message of
                    // that scratch name, which must go first).
                    let first = self.drop_overlaid(&mut ov, &dkey, dst)?;
                    ov.names.insert(dkey, Overlaid::Shadow(Shadow { msg: id, attached: true }));
                    ov.hidden.insert(skey, id);
                    return Ok(first.map_or(Renamed::Done, |op| Renamed::Commit(vec![op], nothing_after())));
                }
                match dst {
                    None => {
                        Ok(Renamed::Commit(vec![Op::MessageMove { id, folder: df, name: newname }], nothing_after()))
                    }
                    Some(Found::Message(t)) => self.rename_over(id, t, df, newname),
                    Some(Found::Folder(_)) => err(Errno::EISDIR),
                    Some(d @ Found::Node(_)) | Some(d @ Found::Shadow(_)) => {
                        self.drop_overlaid(&mut ov, &dkey, Some(d))?;
                        Ok(Renamed::Commit(vec![Op::MessageMove { id, folder: df, name: newname }], nothing_after()))
                    }
                }
            }
            Found::Shadow(s) => {
                if is_scratch(&newname) {
                    let first = self.drop_overlaid(&mut ov, &dkey, dst)?;
                    ov.names.remove(&skey);
                    ov.names.insert(dkey, Overlaid::Shadow(s));
                    return Ok(first.map_or(Renamed::Done, |op| Renamed::Commit(vec![op], nothing_after())));
                }
                let home = ov.hidden.iter().find(|(_, m)| **m == s.msg).map(|(k, _)| k.clone());
                if s.attached && home.as_ref() == Some(&dkey) {
                    // Moved back where it came from.
                    ov.names.remove(&skey);
                    ov.hidden.remove(&dkey);
                    return Ok(Renamed::Done);
                }
                match dst {
                    None if s.attached => {
                        ov.names.remove(&skey);
                        if let Some(h) = home {
                            ov.hidden.remove(&h);
                        }
                        let mv = Op::MessageMove { id: s.msg, folder: df, name: newname };
                        Ok(Renamed::Commit(vec![mv], nothing_after()))
                    }
                    Some(Found::Message(t)) => {
                        ov.names.remove(&skey);
                        if let Some(h) = home {
                            ov.hidden.remove(&h);
                        }
                        self.rename_over(s.msg, t, df, newname)
                    }
                    // A backup whose message has a new version since: let mv copy it.
                    _ => err(Errno::EXDEV),
                }
            }
            Found::Node(n) => {
                let is_new_message = matches!(ov.nodes.get(&n).map(|x| &x.kind), Some(NodeKind::NewMessage));
                if is_scratch(&newname) || is_new_message {
                    if is_new_message && (is_scratch(&newname) || dst.is_some()) {
                        return err(Errno::EXDEV);
                    }
                    let first = self.drop_overlaid(&mut ov, &dkey, dst)?;
                    ov.names.remove(&skey);
                    ov.names.insert(dkey, Overlaid::Node(n));
                    if let Some(node) = ov.nodes.get_mut(&n) {
                        node.folder = df;
                        node.name = newname;
                    }
                    return Ok(first.map_or(Renamed::Done, |op| Renamed::Commit(vec![op], nothing_after())));
                }
                self.commit_scratch(ov, n, skey, dkey, dst)
            }
        }
    }

    /// Message `src` renamed over message `dst`: `dst` gets `src`'s content as a new
    /// version and keeps its entry id.
    fn rename_over(&self, src: Id, dst: Id, df: Id, newname: String) -> FsResult<Renamed> {
        let op = self.store.rename_over_op(src, dst)?;
        Ok(Renamed::Commit(
            vec![op],
            Box::new(move |fs, _| {
                // The kernel moved the source's inode to the target's name: not necessarily
                // its current version's (a save's expiry of the source's name may not have
                // reached the kernel, or missed it after a rename), so every inode of the
                // source now leads to the target.
                fs.inodes.retarget_message(src, InodeRef::Message(dst));
                fs.expire_entry(df, &newname);
                Ok(())
            }),
        ))
    }

    /// Remove whatever the overlay shows at a name about to be replaced. A stored message
    /// there (with a scratch name: only from outside this mount) must be deleted from the
    /// store for the name to be reused: that deletion is returned, to commit first.
    fn drop_overlaid(&self, ov: &mut Overlay, key: &(Id, String), dst: Option<Found>) -> FsResult<Option<Op>> {
        match dst {
            None => Ok(None),
            Some(Found::Node(n)) => {
                ov.names.remove(key);
                if let Some(node) = ov.nodes.get_mut(&n) {
                    node.unlinked = true;
                }
                Self::node_closed_if_idle(ov, n, &self.store);
                Ok(None)
            }
            Some(Found::Shadow(_)) => {
                ov.names.remove(key);
                Ok(None)
            }
            Some(Found::Folder(_)) => err(Errno::EISDIR),
            Some(Found::Message(m)) => Ok(Some(Op::MessageDelete { id: m })),
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
    ) -> FsResult<Renamed> {
        let hidden = ov.hidden.get(&dkey).copied();
        let mut ops = Vec::new();
        let target = match dst {
            None => hidden,
            Some(Found::Message(t)) => Some(t),
            Some(Found::Folder(_)) => return err(Errno::EISDIR),
            Some(d) => {
                ops.extend(self.drop_overlaid(&mut ov, &dkey, Some(d))?);
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
        ops.push(self.store.commit_file_op(&staged, target, Some((dkey.0, dkey.1.clone())), attrs, xattrs)?);
        Ok(Renamed::Commit(
            ops,
            Box::new(move |fs, out| {
                let Some(out) = out else { return Ok(()) };
                let mut ov = fs.overlay();
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
                fs.inodes.retarget(n, InodeRef::Message(out.id));
                fs.expire_entry(dkey.0, &dkey.1);
                Ok(())
            }),
        ))
    }
}

/// The step after a rename's operations are durable (the last one's outcome).
type Then = dyn FnOnce(&Arc<StoreFs>, Option<Outcome>) -> FsResult<()> + Send;

/// A rename: done in the overlay alone, or operations for the store and what follows them.
enum Renamed {
    Done,
    Commit(Vec<Op>, Box<Then>),
}
